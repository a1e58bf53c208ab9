//! `sys::spawn` against real processes: process group, parent-death signal, descriptors,
//! environment, limits, identity, signal state, exit reasons, group signalling.

mod sys_common;

use amp_supervisor::spec::ExitReason;
use amp_supervisor::sys::{
    parse_stat, pidfd_open, proc_sample, reap, signal_group, signal_pid, spawn, wait_readable, Pid,
    Signal, SpawnError, SpawnSpec, StdioMode,
};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::collections::BTreeSet;
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::time::Duration;
use sys_common::{kill_and_reap, read_line_matching, read_to_eof, run, sh, wait, DEADLINE};

/// Test names carry a `sys::` prefix so `cargo test -p amp-supervisor sys` selects them.
mod sys {
    use super::*;

    fn sleeper() -> SpawnSpec {
        let mut spec = SpawnSpec::new("/usr/bin/sleep").args(["30"]);
        spec.stdout = StdioMode::Null;
        spec
    }

    #[test]
    fn child_leads_its_own_process_group() {
        let child = spawn(&sleeper()).unwrap();
        let pgid = nix::unistd::getpgid(Some(child.pid)).unwrap();
        assert_eq!(pgid, child.pid);
        assert_ne!(
            pgid,
            nix::unistd::getpgrp(),
            "not in the supervisor's group"
        );
        // Cheap place to exercise proc_sample on a live child.
        // (Just after exec nothing is resident yet, so only check that sampling works.)
        proc_sample(child.pid).unwrap();
        let stat =
            parse_stat(&std::fs::read_to_string(format!("/proc/{}/stat", child.pid)).unwrap())
                .unwrap();
        assert_eq!(
            (stat.comm.as_str(), stat.pgrp),
            ("sleep", child.pid.as_raw())
        );
        assert_eq!(
            kill_and_reap(&child),
            ExitReason::Signal {
                signal: 9,
                core_dumped: false
            }
        );
    }

    const ROLE_VAR: &str = "AMP_SYS_TEST_ROLE";

    /// Outer: runs this test binary again as an intermediate process that spawns `sleep 30` with
    /// `spawn()`, SIGKILLs the intermediate, and checks the grandchild dies within a second.
    #[test]
    fn grandchild_dies_when_its_spawner_is_killed() {
        if std::env::var_os(ROLE_VAR).is_some() {
            // Intermediate role: spawn, report, then stay alive (on this thread: PDEATHSIG follows
            // the spawning thread) until killed.
            let child = spawn(&sleeper()).unwrap();
            println!("GRANDCHILD {}", child.pid);
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        let mut spec = SpawnSpec::new(std::env::current_exe().unwrap()).args([
            "--exact",
            "sys::grandchild_dies_when_its_spawner_is_killed",
            "--nocapture",
            "--test-threads=1",
        ]);
        spec.env.push((ROLE_VAR.into(), "intermediate".into()));
        spec.stdout = StdioMode::Capture;
        let middle = spawn(&spec).unwrap();
        let line = read_line_matching(middle.stdout.as_ref().unwrap().as_fd(), |l| {
            l.contains("GRANDCHILD ")
        });
        // (libtest may print "test <name> ... " on the same line)
        let pid = line.rsplit("GRANDCHILD ").next().unwrap().trim();
        let grandchild = Pid::from_raw(pid.parse().unwrap());
        let gpidfd = pidfd_open(grandchild).unwrap();
        assert!(
            !wait_readable(gpidfd.as_fd(), Duration::ZERO).unwrap(),
            "grandchild alive before the kill"
        );
        assert!(signal_pid(middle.pid, Signal::SIGKILL).unwrap());
        assert!(
            wait_readable(gpidfd.as_fd(), Duration::from_secs(1)).unwrap(),
            "grandchild {grandchild} still alive 1 s after its parent was killed"
        );
        assert_eq!(
            wait(&middle),
            ExitReason::Signal {
                signal: 9,
                core_dumped: false
            }
        );
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap()
    }

    #[test]
    fn child_gets_exactly_the_passed_descriptors() {
        // A descriptor without FD_CLOEXEC in the parent: a plain fork/exec would leak it.
        let leak_path = std::env::temp_dir().join(format!("amp-sys-leak-{}", std::process::id()));
        let leaked = nix::fcntl::open(
            &leak_path,
            OFlag::O_RDWR | OFlag::O_CREAT,
            Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let flags = nix::fcntl::fcntl(&leaked, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_eq!(
            flags & libc::FD_CLOEXEC,
            0,
            "the leak candidate is inheritable"
        );

        let (r3, w3) = pipe();
        let (r5, w5) = pipe();
        let mut spec = sh("echo three >&3; echo five >&5; exec /usr/bin/ls -ln /proc/self/fd");
        spec.env.push(("LC_ALL".into(), "C".into()));
        spec.pass_fds = vec![(w3, 3), (w5, 5)];
        let (reason, listing) = run(spec); // `run` drops the spec: our write ends close
        assert_eq!(reason, ExitReason::Code(0), "{listing}");

        let mut fds = BTreeSet::new();
        for line in listing.lines().filter(|l| l.contains(" -> ")) {
            let (left, target) = line.split_once(" -> ").unwrap();
            let fd: i32 = left.rsplit(' ').next().unwrap().parse().unwrap();
            assert!(!target.contains("amp-sys-leak"), "parent fd leaked: {line}");
            if !target.starts_with("/proc/") {
                // (ls's own directory descriptor points into /proc)
                fds.insert(fd);
            }
        }
        assert_eq!(fds, BTreeSet::from([0, 1, 2, 3, 5]), "{listing}");
        assert_eq!(
            read_to_eof(r3.as_fd()),
            "three\n",
            "fd 3 is the first pipe, closed in the parent"
        );
        assert_eq!(read_to_eof(r5.as_fd()), "five\n");
        drop(leaked);
        let _ = std::fs::remove_file(leak_path);
    }

    /// A duplicate of `fd` at the lowest free number `>= min` (close-on-exec).
    fn dup_at_least(fd: &OwnedFd, min: i32) -> OwnedFd {
        use std::os::fd::FromRawFd as _;
        let raw = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(min)).unwrap();
        // SAFETY: fcntl just returned this new descriptor and nothing else owns it.
        unsafe { OwnedFd::from_raw_fd(raw) }
    }

    #[test]
    fn passed_fds_may_sit_on_each_others_target_numbers() {
        // Source a sits at x and goes to y; source b sits at y and goes to x. A naive dup2 sequence
        // would overwrite b with a before moving b.
        let (ra, wa) = pipe();
        let (rb, wb) = pipe();
        let (wa, wb) = {
            let a = dup_at_least(&wa, 200);
            let b = dup_at_least(&wb, a.as_raw_fd() + 1);
            drop((wa, wb)); // only the high copies stay open
            (a, b)
        };
        let (x, y) = (wa.as_raw_fd(), wb.as_raw_fd());
        let mut spec = sh(&format!(
            "echo to-a >/proc/self/fd/{y}; echo to-b >/proc/self/fd/{x}"
        ));
        spec.pass_fds = vec![(wa, y), (wb, x)];
        let (reason, _) = run(spec);
        assert_eq!(reason, ExitReason::Code(0));
        assert_eq!(read_to_eof(ra.as_fd()), "to-a\n");
        assert_eq!(read_to_eof(rb.as_fd()), "to-b\n");
    }

    #[test]
    fn environment_and_working_directory_are_applied() {
        let mut spec = SpawnSpec::new("/usr/bin/env");
        spec.clear_env = true;
        spec.env = vec![("A".into(), "1".into()), ("B".into(), "two words".into())];
        assert_eq!(
            run(spec),
            (ExitReason::Code(0), "A=1\nB=two words\n".to_owned())
        );

        let dir = std::env::temp_dir().join(format!("amp-sys-cwd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut spec = sh(r#"printf '%s|%s\n' "$FOO" "${PATH:+inherited}"; pwd -P"#);
        spec.env.push(("FOO".into(), "bar".into()));
        spec.cwd = Some(dir.clone());
        let (reason, out) = run(spec);
        assert_eq!(reason, ExitReason::Code(0));
        assert_eq!(
            out,
            format!("bar|inherited\n{}\n", dir.canonicalize().unwrap().display())
        );
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn rlimits_nice_and_affinity_are_applied() {
        let mut spec = sh("ulimit -n; ulimit -c; nice; grep Cpus_allowed_list /proc/self/status");
        spec.rlimits.nofile = Some(123);
        spec.rlimits.core = Some(0);
        spec.nice = Some(7);
        let allowed = nix::sched::sched_getaffinity(Pid::from_raw(0)).unwrap();
        let cpu = (0..nix::sched::CpuSet::count())
            .rev()
            .find(|&c| allowed.is_set(c).unwrap())
            .unwrap();
        spec.cpu_affinity = vec![cpu];
        let (reason, out) = run(spec);
        assert_eq!(reason, ExitReason::Code(0));
        assert_eq!(out, format!("123\n0\n7\nCpus_allowed_list:\t{cpu}\n"));
    }

    #[test]
    fn child_starts_with_default_signal_state() {
        use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
        // SAFETY: installs SIG_IGN (no handler code runs); SIGUSR1 is not used elsewhere in this
        // test binary.
        let old = unsafe {
            nix::sys::signal::signal(Signal::SIGUSR1, nix::sys::signal::SigHandler::SigIgn)
        }
        .unwrap();
        let mut blocked = SigSet::empty();
        blocked.add(Signal::SIGUSR2);
        let mut old_mask = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), Some(&mut old_mask)).unwrap();

        let (reason, status) = run(SpawnSpec::new("/usr/bin/cat").args(["/proc/self/status"]));

        pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None).unwrap();
        // SAFETY: restores the previous disposition returned above.
        unsafe { nix::sys::signal::signal(Signal::SIGUSR1, old) }.unwrap();

        assert_eq!(reason, ExitReason::Code(0));
        let field = |name: &str| {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            u64::from_str_radix(line[name.len()..].trim(), 16).unwrap()
        };
        assert_eq!(field("SigBlk:"), 0, "signal mask inherited");
        assert_eq!(field("SigIgn:"), 0, "ignored signals inherited");
    }

    #[test]
    fn exit_codes_and_signals_are_reported() {
        let child = spawn(&sh("exit 7")).unwrap();
        assert_eq!(wait(&child), ExitReason::Code(7));

        let child = spawn(&sleeper()).unwrap();
        assert!(
            !wait_readable(child.pidfd.as_fd(), Duration::from_millis(50)).unwrap(),
            "pidfd not readable while running"
        );
        assert_eq!(reap(child.pid).unwrap(), None, "still running");
        assert!(signal_pid(child.pid, Signal::SIGKILL).unwrap());
        assert!(
            wait_readable(child.pidfd.as_fd(), DEADLINE).unwrap(),
            "pidfd readable after exit"
        );
        assert_eq!(
            reap(child.pid).unwrap(),
            Some(ExitReason::Signal {
                signal: 9,
                core_dumped: false
            })
        );
        assert!(reap(child.pid).is_err(), "already reaped: ECHILD");
        // The process and its group are gone. (SIGCONT: harmless should the pid have been reused.)
        assert!(!signal_pid(child.pid, Signal::SIGCONT).unwrap());
        assert!(!signal_group(child.pid, Signal::SIGCONT).unwrap());
    }

    #[test]
    fn signal_group_reaches_grandchildren() {
        let mut spec = sh("sleep 30 & echo $!; wait");
        spec.stdout = StdioMode::Capture;
        let child = spawn(&spec).unwrap();
        let line = read_line_matching(child.stdout.as_ref().unwrap().as_fd(), |l| !l.is_empty());
        let grandchild = Pid::from_raw(line.trim().parse().unwrap());
        let stat =
            parse_stat(&std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap())
                .unwrap();
        assert_eq!(
            stat.pgrp,
            child.pid.as_raw(),
            "grandchild is in the child's group"
        );
        let gpidfd = pidfd_open(grandchild).unwrap();

        assert!(signal_group(child.pid, Signal::SIGTERM).unwrap());
        assert!(
            wait_readable(gpidfd.as_fd(), DEADLINE).unwrap(),
            "grandchild survived killpg"
        );
        assert_eq!(
            wait(&child),
            ExitReason::Signal {
                signal: 15,
                core_dumped: false
            }
        );
    }

    #[test]
    fn drops_to_nobody_when_root() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED drops_to_nobody_when_root: needs root to change uid");
            return;
        }
        let nobody = nix::unistd::User::from_name("nobody")
            .unwrap()
            .expect("user nobody exists");
        let groups =
            nix::unistd::getgrouplist(&std::ffi::CString::new("nobody").unwrap(), nobody.gid)
                .unwrap();
        let mut expected_groups: Vec<u32> = groups.iter().map(|g| g.as_raw()).collect();
        expected_groups.sort_unstable();
        expected_groups.dedup();

        let mut spec = sh("id -u; id -g; id -G; nice; ulimit -n");
        spec.user = Some("nobody".into());
        // Privileged settings are applied before the uid change: a negative nice and a raised limit.
        spec.nice = Some(-3);
        let (_, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        let raised = hard.min(1 << 20);
        spec.rlimits.nofile = Some(raised);
        let (reason, out) = run(spec);
        assert_eq!(reason, ExitReason::Code(0), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], nobody.uid.to_string());
        assert_eq!(lines[1], nobody.gid.to_string());
        let mut got: Vec<u32> = lines[2]
            .split_whitespace()
            .map(|g| g.parse().unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(
            got, expected_groups,
            "supplementary groups are nobody's, not root's"
        );
        assert_eq!(lines[3], "-3");
        assert_eq!(lines[4], raised.to_string());

        // Group override by numeric id.
        let mut spec = sh("id -u; id -g");
        spec.user = Some(nobody.uid.as_raw().into());
        spec.group = Some(0u32.into());
        let (_, out) = run(spec);
        assert_eq!(out, format!("{}\n0\n", nobody.uid));
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        let err = |spec: SpawnSpec| spawn(&spec).unwrap_err();

        assert!(matches!(
            err(SpawnSpec::default()),
            SpawnError::EmptyProgram
        ));
        let e = err(SpawnSpec::new("/nonexistent/amp-worker"));
        match &e {
            SpawnError::Spawn { source, .. } => {
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
            }
            other => panic!("unexpected {other}"),
        }
        assert!(e.to_string().contains("/nonexistent/amp-worker"), "{e}");

        let mut spec = sleeper();
        spec.user = Some("amp-no-such-user".into());
        let e = err(spec);
        assert!(
            matches!(e, SpawnError::UnknownUser { .. })
                && e.to_string().contains("amp-no-such-user"),
            "{e}"
        );
        let mut spec = sleeper();
        spec.group = Some(4_000_000_000u32.into());
        assert!(matches!(err(spec), SpawnError::UnknownGroup { .. }));

        let (_, w) = pipe();
        let mut spec = sleeper();
        spec.pass_fds = vec![(w, 2)];
        assert!(matches!(
            err(spec),
            SpawnError::InvalidFdTarget { target: 2, .. }
        ));
        let (_, w1) = pipe();
        let (_, w2) = pipe();
        let mut spec = sleeper();
        spec.pass_fds = vec![(w1, 4), (w2, 4)];
        assert!(matches!(
            err(spec),
            SpawnError::InvalidFdTarget { target: 4, .. }
        ));
        let (_, w) = pipe();
        let mut spec = sleeper();
        spec.rlimits.nofile = Some(10);
        spec.pass_fds = vec![(w, 10)];
        assert!(matches!(
            err(spec),
            SpawnError::InvalidFdTarget { target: 10, .. }
        ));

        let (_, w) = pipe();
        let mut spec = sleeper();
        spec.pass_fds = vec![(w, (1 << 20) + 5)];
        let e = err(spec);
        assert!(e.to_string().contains("RLIMIT_NOFILE"), "{e}");

        let mut spec = sleeper();
        spec.nice = Some(20);
        assert!(matches!(err(spec), SpawnError::InvalidNice { nice: 20 }));
        let mut spec = sleeper();
        spec.cpu_affinity = vec![1 << 20];
        assert!(matches!(err(spec), SpawnError::InvalidCpu { .. }));
        let mut spec = sleeper();
        spec.env.push(("A=B".into(), "x".into()));
        assert!(matches!(err(spec), SpawnError::InvalidEnv { .. }));
        let mut spec = sleeper();
        spec.args.push("a\0b".into());
        assert!(matches!(
            err(spec),
            SpawnError::NulInArgument { index: 2, .. }
        ));
    }

    #[test]
    fn exec_failure_is_reported_even_when_targets_are_the_lowest_free_numbers() {
        // std reports exec errors through a pipe it creates just before forking, at the lowest free
        // descriptor numbers. If those were target numbers, the child's dup2 would replace the pipe
        // and a failed exec would look like a successful spawn. spawn() keeps target numbers
        // occupied until the fork; check with targets starting at the lowest free number.
        // Sources far above the targets, so that the targets really are free numbers.
        let sources: Vec<OwnedFd> = (0..8).map(|_| dup_at_least(&pipe().1, 300)).collect();
        let lowest = dup_at_least(&sources[0], 3).as_raw_fd(); // closed again at once
        let mut spec = SpawnSpec::new("/nonexistent/amp-worker");
        spec.pass_fds = sources.into_iter().zip(lowest..).collect();
        match spawn(&spec) {
            Err(SpawnError::Spawn { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            Ok(child) => panic!("exec failure went unnoticed; child {} started", child.pid),
            Err(other) => panic!("unexpected {other}"),
        }
    }
}
