//! End-to-end task delivery: clients, routing, retries, nothing lost.

use std::time::Duration;

use amp_ipc::client::{Client, ResultStatus, Submit};
use amp_tests::{worker, Ampd};

const T: Duration = Duration::from_secs(20);

#[test]
fn client_round_trip_through_echo_and_hash() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.echo]
command = "amp-echo"
kinds = ["echo"]
replicas = 2
[workers.hash]
command = "amp-hash"
kinds = ["hash"]
"#,
    );
    d.wait_ready(&["echo#0", "echo#1", "hash"], T);
    let mut c = Client::connect(&d.socket).expect("attach");
    let n = 1000u32;
    let mut tickets = Vec::new();
    for i in 0..n {
        tickets.push((i, c.submit("echo", &i.to_le_bytes()).unwrap()));
    }
    for (i, t) in tickets {
        let r = c.wait_for(t, T).unwrap();
        assert_eq!(r.status, ResultStatus::Ok, "{}", r.text());
        assert_eq!(r.body, i.to_le_bytes());
    }
    let t = c.submit("hash", b"abc").unwrap();
    let r = c.wait_for(t, T).unwrap();
    assert_eq!(
        r.body,
        format!("{:016x}", amp_worker::digest(b"abc", 16)).into_bytes()
    );
    // Unknown kind: refused at submit, with the known kinds.
    let e = c.submit("nope", b"").unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("echo"), "{e}");
    let e = c
        .submit_with(
            &Submit {
                kind: "echo",
                class: Some("urgent"),
                ..Submit::default()
            },
            b"",
        )
        .unwrap_err();
    assert!(e.to_string().contains("urgent"), "{e}");
    // No segment name stays in /dev/shm once attached.
    assert!(d.shm_leftovers().is_empty(), "{:?}", d.shm_leftovers());
    drop(c);
    let st = d.shutdown(T);
    assert!(st.success(), "{}", d.log_text());
}

#[test]
fn ampctl_submit_waits_for_the_result() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.echo]
command = "amp-echo"
kinds = ["echo"]
"#,
    );
    d.wait_ready(&["echo"], T);
    let out = std::process::Command::new(amp_tests::bin("ampctl"))
        .arg("--json")
        .arg("--socket")
        .arg(&d.socket)
        .args(["submit", "--kind", "echo", "--json", r#"{"x":1}"#, "--wait"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["data"]["status"], "ok", "{v}");
    assert_eq!(v["data"]["result"], r#"{"x":1}"#);
    let s = d.status();
    assert_eq!(worker(&s, "echo").unwrap().state, "ready");
    let _ = d.shutdown(T);
}

/// ≥ 20 000 tasks while a random worker is SIGKILLed every ~50 ms: every task is accounted for —
/// delivered exactly once (Ok with its own payload) or dead-lettered with a reason.
#[test]
fn kill_storm_loses_nothing_and_delivers_once() {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let mut d = Ampd::start(
        "",
        r#"
[workers.sleep]
command = "amp-sleep"
kinds = ["sleep"]
replicas = 3
restart = "always"
concurrency = 32
backoff = { initial = "10ms", max = "50ms", jitter = 0.0 }
intensity = { max_restarts = 10000, window = "1m" }
[kinds.sleep]
queue_limit = 100000
max_attempts = 10
"#,
    );
    d.wait_ready(&["sleep#0", "sleep#1", "sleep#2"], T);
    let mut c = Client::connect(&d.socket).expect("attach");
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let stop = Arc::clone(&stop);
        let socket = d.socket.clone();
        std::thread::spawn(move || {
            let mut kills = 0u32;
            let mut x = 0x9e37_79b9u64;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                let Ok(r) = amp_supervisor::control::client::request(
                    &socket,
                    serde_json::json!({"cmd": "status"}),
                    Duration::from_secs(5),
                ) else {
                    continue;
                };
                let Some(s) = r.data.and_then(|v| {
                    serde_json::from_value::<amp_supervisor::control::proto::StatusData>(v).ok()
                }) else {
                    continue;
                };
                let pids: Vec<u32> = s
                    .workers
                    .iter()
                    .filter(|w| w.state == "ready")
                    .filter_map(|w| w.pid)
                    .collect();
                if pids.is_empty() {
                    continue;
                }
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let pid = pids[(x % pids.len() as u64) as usize];
                if nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .is_ok()
                {
                    kills += 1;
                }
            }
            kills
        })
    };
    let n = 20_000u32;
    let mut payload_of = HashMap::new();
    for i in 0..n {
        let p = format!("0.2 {i}");
        let t = c
            .submit_blocking(
                &Submit {
                    kind: "sleep",
                    ..Submit::default()
                },
                p.as_bytes(),
                T,
            )
            .expect("submit");
        payload_of.insert(t, p);
    }
    let (mut ok, mut dead) = (0u32, 0u32);
    let mut seen = std::collections::HashSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while seen.len() < n as usize {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} results after 120 s\n{}",
            seen.len(),
            d.log_text()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
        let Ok(r) = c.wait_result(Duration::from_secs(5)) else {
            continue;
        };
        assert!(
            seen.insert(r.ticket),
            "duplicate delivery of ticket {}",
            r.ticket
        );
        match r.status {
            ResultStatus::Ok => {
                assert_eq!(
                    r.body,
                    payload_of[&r.ticket].as_bytes(),
                    "wrong result for ticket {}",
                    r.ticket
                );
                ok += 1;
            }
            ResultStatus::DeadLettered => {
                assert!(!r.body.is_empty(), "dead letter without a reason");
                dead += 1;
            }
            other => panic!("ticket {} ended {other:?}: {}", r.ticket, r.text()),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let kills = killer.join().unwrap();
    // No stray duplicate arrives afterwards.
    assert!(
        c.wait_result(Duration::from_millis(300)).is_err(),
        "a result arrived after all were delivered"
    );
    assert_eq!(ok + dead, n);
    assert!(kills >= 3, "the storm killed only {kills} workers");
    // The storm hit work in flight: tasks were taken back from killed workers and run again.
    let census = d.status().tasks;
    assert!(
        census.requeued_lost > 0,
        "no task was in flight on a killed worker: {census:?}"
    );
    assert_eq!(
        census.done + census.dead_lettered,
        u64::from(n),
        "{census:?}"
    );
    eprintln!(
        "kill storm: {n} tasks, {kills} kills, {ok} ok, {dead} dead-lettered, {} requeued, {} late duplicates dropped",
        census.requeued_lost, census.late_dropped
    );
    drop(c);
    let _ = d.shutdown(T);
}

/// The typed helpers over serde + bincode, through a real ampd: `call` round-trips a value
/// (amp-echo returns the encoded bytes), `push_typed` + `TaskResult::decode` do the same in a
/// batch, a failed task is `TaskFailed` with the worker's message, and a result that is not the
/// asked type is a codec error, not a wrong value.
#[test]
fn typed_calls_round_trip_and_report_failures() {
    use amp_ipc::client::ClientError;
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Order {
        id: u64,
        items: Vec<String>,
        total: f64,
    }
    let mut d = Ampd::start(
        "",
        r#"
[workers.echo]
command = "amp-echo"
kinds = ["echo"]
[workers.flaky]
command = "amp-flaky"
kinds = ["flaky"]
"#,
    );
    d.wait_ready(&["echo", "flaky"], T);
    let mut c = Client::connect(&d.socket).expect("attach");
    let order = Order {
        id: 7,
        items: vec!["tea".into(), "scone".into()],
        total: 4.5,
    };
    let back: Order = c.call("echo", &order, T).unwrap();
    assert_eq!(back, order);

    let opts = Submit {
        kind: "echo",
        ..Submit::default()
    };
    let tickets: Vec<_> = (0..100u64)
        .map(|i| {
            let o = Order {
                id: i,
                ..order.clone()
            };
            (i, c.push_typed(&opts, &o).unwrap())
        })
        .collect();
    c.flush().unwrap();
    for (i, t) in tickets {
        let o: Order = c.wait_for(t, T).unwrap().decode().unwrap();
        assert_eq!(o.id, i);
    }

    // A byte array encodes as its bytes: amp-flaky reads the command `fail`.
    let e = c.call::<_, String>("flaky", b"fail", T).unwrap_err();
    assert!(
        matches!(&e, ClientError::TaskFailed { status: ResultStatus::Failed, message, .. }
            if message.contains("failed as asked")),
        "{e:?}"
    );
    // "hi" encodes as a length then two bytes: read as a u8 it leaves bytes over.
    let e = c.call::<_, u8>("echo", &"hi", T).unwrap_err();
    assert!(matches!(e, ClientError::Codec(_)), "{e:?}");
    drop(c);
    let _ = d.shutdown(T);
}
