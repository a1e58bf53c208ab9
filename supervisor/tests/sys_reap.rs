//! `reap_all` and the child-subreaper flag. Its own test binary with a single test: `reap_all`
//! reaps every child of the process, which would steal other tests' children.

mod sys_common;

use amp_supervisor::spec::ExitReason;
use amp_supervisor::sys::{
    parse_stat, pidfd_open, reap, reap_all, set_child_subreaper, signal_pid, spawn, wait_readable,
    Pid, Signal, SpawnSpec, StdioMode,
};
use std::collections::BTreeMap;
use std::os::fd::AsFd as _;
use sys_common::{read_line_matching, sh, DEADLINE};

/// Test names carry a `sys::` prefix so `cargo test -p amp-supervisor sys` selects them.
mod sys {
    use super::*;

    #[test]
    fn reap_all_collects_children_and_reparented_orphans() {
        set_child_subreaper().unwrap();
        assert!(reap_all().is_empty(), "no children yet");

        let exits = spawn(&sh("exit 5")).unwrap();
        let mut sleeper = SpawnSpec::new("/usr/bin/sleep").args(["30"]);
        sleeper.stdout = StdioMode::Null;
        let killed = spawn(&sleeper).unwrap();
        // Starts a background sleep, prints its pid and exits: the sleep is orphaned.
        let mut spec = sh("sleep 30 & echo $!");
        spec.stdout = StdioMode::Capture;
        let maker = spawn(&spec).unwrap();
        let line = read_line_matching(maker.stdout.as_ref().unwrap().as_fd(), |l| !l.is_empty());
        let orphan = Pid::from_raw(line.trim().parse().unwrap());
        let orphan_pidfd = pidfd_open(orphan).unwrap();

        assert!(signal_pid(killed.pid, Signal::SIGKILL).unwrap());
        for child in [&exits, &killed, &maker] {
            assert!(
                wait_readable(child.pidfd.as_fd(), DEADLINE).unwrap(),
                "child {} did not exit",
                child.pid
            );
        }
        // The maker has exited, so its orphan was reparented to us, the subreaper.
        let stat =
            parse_stat(&std::fs::read_to_string(format!("/proc/{orphan}/stat")).unwrap()).unwrap();
        assert_eq!(
            stat.ppid,
            nix::unistd::getpid().as_raw(),
            "orphan reparented to the subreaper"
        );
        assert!(signal_pid(orphan, Signal::SIGKILL).unwrap());
        assert!(
            wait_readable(orphan_pidfd.as_fd(), DEADLINE).unwrap(),
            "orphan did not die"
        );

        let reaped: BTreeMap<Pid, ExitReason> = reap_all().into_iter().collect();
        let sigkill = ExitReason::Signal {
            signal: 9,
            core_dumped: false,
        };
        let expected = BTreeMap::from([
            (exits.pid, ExitReason::Code(5)),
            (killed.pid, sigkill),
            (maker.pid, ExitReason::Code(0)),
            (orphan, sigkill),
        ]);
        assert_eq!(reaped, expected);
        assert!(reap_all().is_empty(), "everything was reaped once");
        assert!(reap(exits.pid).is_err(), "reaped by reap_all: ECHILD");
    }
}
