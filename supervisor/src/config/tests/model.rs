//! The typed model: defaults, both `depends_on` forms, paths, topo order, equality.

use super::ok;
use crate::config::*;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[test]
fn defaults_are_applied() {
    let c = ok("[workers.a]\ncommand = \"amp-echo\"\n");
    assert_eq!(c.path, Path::new("amp.toml"));
    assert_eq!(c.supervisor, SupervisorConfig::default());
    assert_eq!(c.supervisor.shm_prefix, "amp");
    assert_eq!(c.supervisor.on_startup_failure, StartupFailure::Abort);
    let w = &c.workers[0];
    assert_eq!(w.name, "a");
    assert_eq!(w.command, Program::Name("amp-echo".into()));
    assert!(w.args.is_empty() && w.env.is_empty() && w.cwd.is_none());
    assert_eq!(w.replicas, 1);
    assert!(w.depends_on.is_empty());
    assert_eq!(w.ready_timeout, DEFAULT_READY_TIMEOUT);
    assert_eq!(w.stop_timeout, DEFAULT_STOP_TIMEOUT);
    assert_eq!(w.restart, RestartPolicy::OnFailure);
    assert_eq!(w.backoff, Backoff::default());
    assert_eq!(w.intensity, Intensity::default());
    assert_eq!(w.stop_signal, Signal::SIGTERM);
    assert_eq!(w.rlimits, Rlimits::default());
    assert_eq!(
        (w.user.as_ref(), w.group.as_ref(), w.nice),
        (None, None, None)
    );
    assert!(w.cpu_affinity.is_empty() && w.log.is_none());
    let WorkerMode::Ipc(ipc) = &w.mode else {
        panic!("ipc is the default")
    };
    assert_eq!(
        ipc.ring,
        RingConfig {
            tasks: 1 << 20,
            completions: 1 << 20,
            max_record: 64 << 10
        }
    );
    assert_eq!(ipc.heartbeat_interval, DEFAULT_HEARTBEAT_INTERVAL);
    assert_eq!(ipc.heartbeat_timeout, DEFAULT_HEARTBEAT_TIMEOUT);
    assert_eq!(ipc.concurrency, DEFAULT_CONCURRENCY);
    assert!(ipc.kinds.is_empty());
    assert!(c.kinds.is_empty());
    assert_eq!(c.classes, ClassConfig::defaults());
    assert_eq!(
        c.classes[0],
        ClassConfig {
            name: "interactive".into(),
            weight: 8
        }
    );
}

#[test]
fn supervisor_defaults_flow_into_workers() {
    let c = ok(r#"
[supervisor]
ready_timeout = "1m30s"
stop_timeout = "2s"
heartbeat_interval = "250ms"
heartbeat_timeout = "1s"
log_format = "json"
on_startup_failure = "continue"
metrics_addr = ":9100"
control_group = "amp"
control_socket = "run/ampd.sock"

[workers.a]
command = "x"

[workers.b]
command = "x"
ready_timeout = "3s"
heartbeat_timeout = "2s"
"#);
    let s = &c.supervisor;
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(s.on_startup_failure, StartupFailure::Continue);
    assert_eq!(s.metrics_addr, Some("127.0.0.1:9100".parse().unwrap()));
    assert_eq!(s.control_group.as_deref(), Some("amp"));
    assert_eq!(
        s.control_socket.as_deref(),
        Some(Path::new("run/ampd.sock"))
    );
    assert_eq!(s.control_socket_path(), PathBuf::from("run/ampd.sock"));
    let (a, b) = (&c.workers[0], &c.workers[1]);
    assert_eq!(
        (a.ready_timeout, a.stop_timeout),
        (Duration::from_secs(90), Duration::from_secs(2))
    );
    assert_eq!(b.ready_timeout, Duration::from_secs(3));
    let (WorkerMode::Ipc(ia), WorkerMode::Ipc(ib)) = (&a.mode, &b.mode) else {
        panic!()
    };
    assert_eq!(
        (ia.heartbeat_interval, ia.heartbeat_timeout),
        (Duration::from_millis(250), Duration::from_secs(1))
    );
    assert_eq!(
        (ib.heartbeat_interval, ib.heartbeat_timeout),
        (Duration::from_millis(250), Duration::from_secs(2))
    );
}

#[test]
fn default_control_socket_rule() {
    assert_eq!(
        default_control_socket_for(Some("/run/user/1000".as_ref()), 1000),
        Path::new("/run/user/1000/amp/ampd.sock")
    );
    assert_eq!(
        default_control_socket_for(Some("relative".as_ref()), 5),
        Path::new("/tmp/amp-5/ampd.sock")
    );
    assert_eq!(
        default_control_socket_for(None, 0),
        Path::new("/tmp/amp-0/ampd.sock")
    );
    assert!(default_control_socket().ends_with("ampd.sock"));
}

#[test]
fn both_depends_on_forms() {
    let c = ok(r#"
[workers.db]
command = "x"
restart = "never"
[workers.cache]
command = "x"
[workers.list]
command = "x"
depends_on = ["db", "cache"]
[workers.table]
command = "x"
depends_on = { db = "completed_successfully", cache = "started" }
"#);
    let dep = |name: &str, condition| Dependency {
        name: name.into(),
        condition,
    };
    assert_eq!(
        c.worker("list").unwrap().depends_on,
        [
            dep("db", DependencyCondition::Ready),
            dep("cache", DependencyCondition::Ready)
        ]
    );
    // File order is kept in the table form too (not the alphabetical order).
    assert_eq!(
        c.worker("table").unwrap().depends_on,
        [
            dep("db", DependencyCondition::CompletedSuccessfully),
            dep("cache", DependencyCondition::Started)
        ]
    );
}

#[test]
fn workers_keep_file_order_and_topo_order_sorts_diamond() {
    let c = ok(r#"
[workers.d]
command = "x"
depends_on = ["c", "b"]
[workers.c]
command = "x"
depends_on = ["a"]
[workers.b]
command = "x"
depends_on = ["a"]
[workers.a]
command = "x"
"#);
    let names = |ws: Vec<&WorkerConfig>| ws.into_iter().map(|w| w.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(c.workers.iter().collect()), ["d", "c", "b", "a"]);
    // a first; c and b are free together and c comes first in the file; d last.
    assert_eq!(names(c.topo_order()), ["a", "c", "b", "d"]);
}

#[test]
fn plain_process_and_probes() {
    let c = ok(r#"
[workers.web]
command = "./bin/web"
ipc = false
probe = { type = "tcp", port = 8080 }
[workers.script]
command = "sh"
args = ["-c", "sleep 100"]
ipc = false
probe = { type = "exec", command = "test -e /tmp/ready" }
[workers.bare]
command = "sleep"
ipc = false
"#);
    assert_eq!(
        c.workers[0].command,
        Program::Path(PathBuf::from("./bin/web"))
    );
    assert_eq!(
        c.workers[0].mode,
        WorkerMode::Plain {
            probe: ReadinessProbe::Tcp {
                host: "127.0.0.1".into(),
                port: 8080
            }
        }
    );
    assert_eq!(
        c.workers[1].mode,
        WorkerMode::Plain {
            probe: ReadinessProbe::Exec {
                command: "test -e /tmp/ready".into()
            }
        }
    );
    assert_eq!(
        c.workers[2].mode,
        WorkerMode::Plain {
            probe: ReadinessProbe::Started
        }
    );
    assert!(!c.workers[2].is_ipc() && c.workers[2].kinds().is_empty());
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let text = r#"
[supervisor]
control_socket = "/run/amp.sock"
[workers.a]
command = "bin/a"
cwd = "data"
log_file = "/var/log/a.log"
[workers.b]
command = "/usr/bin/b"
cwd = "/srv"
log_file = "logs/b.log"
log_max_size = "1MiB"
log_keep = 2
"#;
    let c = parse(text, Path::new("/etc/amp/amp.toml")).unwrap();
    assert_eq!(
        c.supervisor.control_socket.as_deref(),
        Some(Path::new("/run/amp.sock"))
    );
    let (a, b) = (&c.workers[0], &c.workers[1]);
    assert_eq!(a.command, Program::Path("/etc/amp/bin/a".into()));
    assert_eq!(a.cwd.as_deref(), Some(Path::new("/etc/amp/data")));
    assert_eq!(
        a.log,
        Some(LogFile {
            path: "/var/log/a.log".into(),
            max_size: DEFAULT_LOG_MAX_SIZE,
            keep: DEFAULT_LOG_KEEP
        })
    );
    assert_eq!(b.command, Program::Path("/usr/bin/b".into()));
    assert_eq!(b.cwd.as_deref(), Some(Path::new("/srv")));
    assert_eq!(
        b.log,
        Some(LogFile {
            path: "/etc/amp/logs/b.log".into(),
            max_size: 1 << 20,
            keep: 2
        })
    );
}

#[test]
fn every_worker_key() {
    let c = ok(r#"
[workers.full]
command = "amp-hash"
args = ["--fast"]
env = { RUST_LOG = "debug", "A_B" = "1" }
replicas = 3
restart = "always"
backoff = { initial = "50ms", max = "10s", multiplier = 1.5, jitter = 0 }
intensity = { max_restarts = 10, window = "30s", on_exceeded = "stop-dependents" }
stop_signal = "INT"
user = "1000"
group = "staff"
rlimits = { nofile = 4096, as = 1073741824, core = 0 }
nice = -5
cpu_affinity = [1, 0]
ring = { tasks = "4MiB", completions = "256KiB", max_record = 1024 }
kinds = ["hash", "hash-fast"]
concurrency = 8
[kinds.hash]
queue_limit = 500
router = "peak_ewma"
timeout = "1.5s"
on_timeout = "kill-and-requeue"
max_attempts = 5
batch = 4
peak_ewma_decay = "2s"
[[class]]
name = "realtime"
weight = 20
[[class]]
name = "bulk"
"#);
    let w = &c.workers[0];
    assert_eq!(w.args, ["--fast"]);
    assert_eq!(w.env.get("RUST_LOG").map(String::as_str), Some("debug"));
    assert_eq!(w.env.get("A_B").map(String::as_str), Some("1"));
    assert_eq!((w.replicas, w.restart), (3, RestartPolicy::Always));
    assert_eq!(
        w.backoff,
        Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(10),
            multiplier: 1.5,
            jitter: 0.0
        }
    );
    assert_eq!(
        w.intensity,
        Intensity {
            max_restarts: 10,
            window: Duration::from_secs(30),
            on_exceeded: Escalation::StopDependents
        }
    );
    assert_eq!(w.stop_signal, Signal::SIGINT);
    assert_eq!(
        (w.user.clone(), w.group.clone()),
        (
            Some(Principal::Id(1000)),
            Some(Principal::Name("staff".into()))
        )
    );
    assert_eq!(
        w.rlimits,
        Rlimits {
            nofile: Some(4096),
            address_space: Some(1 << 30),
            core: Some(0),
            ..Rlimits::default()
        }
    );
    assert_eq!((w.nice, w.cpu_affinity.as_slice()), (Some(-5), &[1, 0][..]));
    let WorkerMode::Ipc(ipc) = &w.mode else {
        panic!()
    };
    assert_eq!(
        ipc.ring,
        RingConfig {
            tasks: 4 << 20,
            completions: 256 << 10,
            max_record: 1024
        }
    );
    assert_eq!(
        (ipc.kinds.as_slice(), ipc.concurrency),
        (&["hash".to_owned(), "hash-fast".to_owned()][..], 8)
    );
    assert_eq!(
        c.kinds["hash"],
        KindConfig {
            queue_limit: 500,
            router: RouterPolicy::PeakEwma,
            timeout: Some(Duration::from_millis(1500)),
            on_timeout: OnTimeout::KillAndRequeue,
            max_attempts: 5,
            batch: 4,
            peak_ewma_decay: Duration::from_secs(2),
        }
    );
    assert_eq!(
        c.kinds["hash-fast"],
        KindConfig::default(),
        "a served kind without a table gets the defaults"
    );
    assert_eq!(
        c.classes,
        [
            ClassConfig {
                name: "realtime".into(),
                weight: 20
            },
            ClassConfig {
                name: "bulk".into(),
                weight: 1
            }
        ]
    );
}

#[test]
fn changed_worker_is_told_apart_from_unchanged() {
    let before = ok("[workers.a]\ncommand = \"x\"\n[workers.b]\ncommand = \"y\"\n");
    let after = ok("[workers.a]\ncommand = \"x\"\n\n# comment\n[workers.b]\ncommand = \"y\"\nargs = [\"-v\"]\n");
    assert_eq!(before.workers[0], after.workers[0]);
    assert_ne!(before.workers[1], after.workers[1]);
}

#[test]
fn program_resolution_order() {
    let p = Program::Name("amp-echo".into());
    let exists =
        |c: &Path| c == Path::new("/opt/amp/amp-echo") || c == Path::new("/usr/bin/amp-echo");
    let path_var = Some("/bin:/usr/bin".as_ref());
    assert_eq!(
        p.resolve(Some(Path::new("/opt/amp")), path_var, exists),
        Some("/opt/amp/amp-echo".into())
    );
    assert_eq!(
        p.resolve(Some(Path::new("/elsewhere")), path_var, exists),
        Some("/usr/bin/amp-echo".into())
    );
    assert_eq!(p.resolve(None, None, exists), None);
    assert_eq!(
        Program::Path("/x/y".into()).resolve(None, None, |_| false),
        Some("/x/y".into())
    );
}
