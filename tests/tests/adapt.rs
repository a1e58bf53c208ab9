//! The adaptive controller in ampd: modes switched at runtime, decisions with evidence.

use std::time::Duration;

use amp_ipc::client::{Client, ResultStatus};
use amp_tests::Ampd;

const T: Duration = Duration::from_secs(30);

#[test]
fn auto_mode_makes_decisions_with_evidence_and_off_changes_nothing() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.s]
command = "amp-sleep"
kinds = ["sleep"]
replicas = 2
concurrency = 64
"#,
    );
    d.wait_ready(&["s#0", "s#1"], T);
    let mut c = Client::connect(&d.socket).unwrap();
    let run = |c: &mut Client, n: u32| {
        let mut tickets = Vec::new();
        for i in 0..n {
            tickets.push(c.submit("sleep", format!("2 {i}").as_bytes()).unwrap());
        }
        for t in tickets {
            assert_eq!(c.wait_for(t, T).unwrap().status, ResultStatus::Ok);
        }
    };
    // Off (the default): profiles only, no decision.
    run(&mut c, 200);
    let s = d.status();
    assert!(
        !s.events.iter().any(|e| e.kind == "adjustment"),
        "off mode decided something"
    );
    // Auto: the controller finds that a one-task-at-a-time worker's capacity is far below 64.
    let r = d
        .request(serde_json::json!({"cmd": "tune", "op": "mode", "kind": "sleep", "mode": "auto"}))
        .unwrap();
    assert!(r.ok, "{r:?}");
    run(&mut c, 600);
    let s = d.wait_for("an adjustment event", T, |s| {
        s.events.iter().any(|e| e.kind == "adjustment")
    });
    let adj = s.events.iter().find(|e| e.kind == "adjustment").unwrap();
    assert!(
        adj.detail.contains("evidence"),
        "decision without evidence: {}",
        adj.detail
    );
    let r = d
        .request(serde_json::json!({"cmd": "tune", "op": "show"}))
        .unwrap();
    assert!(r.ok, "{r:?}");
    let r = d
        .request(serde_json::json!({"cmd": "tune", "op": "mode", "kind": "nope", "mode": "auto"}))
        .unwrap();
    assert!(!r.ok);
    drop(c);
    let _ = d.shutdown(T);
}

/// Submits `n` sleep tasks of `ms` milliseconds and waits for every result to be `Ok`.
fn sleep_batch(c: &mut Client, n: u32, ms: u32) {
    let tickets: Vec<_> = (0..n)
        .map(|i| c.submit("sleep", format!("{ms} {i}").as_bytes()).unwrap())
        .collect();
    for t in tickets {
        assert_eq!(c.wait_for(t, T).unwrap().status, ResultStatus::Ok);
    }
}

#[test]
fn config_auto_mode_derives_and_applies_the_run_timeout() {
    // `adapt = "auto"` from the file (no runtime switch); the run timeout follows the tail.
    let mut d = Ampd::start(
        "",
        r#"
[workers.s]
command = "amp-sleep"
kinds = ["sleep"]
replicas = 2
concurrency = 4

[kinds.sleep]
adapt = "auto"

[adapt]
timeout = { factor = 4, min = "200ms", max = "1s", min_samples = 50 }
"#,
    );
    d.wait_ready(&["s#0", "s#1"], T);
    let r = d
        .request(serde_json::json!({"cmd": "tune", "op": "show"}))
        .unwrap();
    assert!(r.ok, "{r:?}");
    assert!(
        serde_json::to_string(&r.data).unwrap().contains("\"auto\""),
        "the file's mode is not in force: {:?}",
        r.data
    );
    let mut c = Client::connect(&d.socket).unwrap();
    // Without a timeout a 3 s task would succeed; after enough fast samples the controller sets
    // a run timeout of at most 1 s.
    let s = d.wait_for("a run-timeout decision", T, |s| {
        let found = s
            .events
            .iter()
            .any(|e| e.kind == "adjustment" && e.detail.contains("timeout"));
        if !found {
            sleep_batch(&mut c, 100, 2);
        }
        found
    });
    let adj = s
        .events
        .iter()
        .find(|e| e.kind == "adjustment" && e.detail.contains("timeout"))
        .unwrap();
    assert!(adj.detail.contains("evidence"), "{}", adj.detail);
    let t = c.submit("sleep", b"3000 long").unwrap();
    let res = c.wait_for(t, T).unwrap();
    assert_eq!(
        res.status,
        ResultStatus::Failed,
        "the adaptive timeout was not applied: {res:?}"
    );
    let body = String::from_utf8_lossy(&res.body);
    assert!(body.contains("timed out"), "{body}");
    let windows = |d: &Ampd| -> Vec<u64> {
        let r = d
            .request(serde_json::json!({"cmd": "route_get", "kind": "sleep"}))
            .unwrap();
        r.data.unwrap()["sleep"]["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["window"].as_u64().unwrap())
            .collect()
    };
    // A one-task-at-a-time worker's capacity is one: the controller has cut the windows.
    let before = windows(&d);
    assert!(before.iter().all(|&w| w < 4), "{before:?}");
    // Leaving auto mode puts the configured settings back: windows at `concurrency` (4) and
    // no run timeout (the same task succeeds).
    let r = d
        .request(serde_json::json!({"cmd": "tune", "op": "mode", "kind": "sleep", "mode": "off"}))
        .unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!(windows(&d), [4, 4]);
    let t = c.submit("sleep", b"1500 long").unwrap();
    let res = c.wait_for(t, T).unwrap();
    assert_eq!(res.status, ResultStatus::Ok, "{res:?}");
    drop(c);
    let _ = d.shutdown(T);
}

#[test]
fn autoscaler_scales_up_under_backlog_and_down_after_cooldown_with_a_drain() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.s]
command = "amp-sleep"
kinds = ["sleep"]
replicas = 1
min_replicas = 1
max_replicas = 3
autoscale = "auto"
concurrency = 2

[adapt.scale]
queue_wait = "50ms"
up_after = "300ms"
up_cooldown = "300ms"
down_cooldown = "1500ms"
"#,
    );
    d.wait_ready(&["s"], T);
    let mut c = Client::connect(&d.socket).unwrap();
    // A backlog: 400 tasks of 10 ms on one serial worker is 4 s of work.
    let tickets: Vec<_> = (0..400)
        .map(|i| c.submit("sleep", format!("10 {i}").as_bytes()).unwrap())
        .collect();
    let up = d.wait_for("a second replica ready", T, |s| {
        s.workers
            .iter()
            .filter(|w| (w.name == "s" || w.name.starts_with("s#")) && w.state == "ready")
            .count()
            >= 2
    });
    assert!(
        up.events
            .iter()
            .any(|e| e.kind == "adjustment" && e.detail.contains("replicas")),
        "scaled without a decision event: {:?}",
        up.events
    );
    for t in tickets {
        assert_eq!(c.wait_for(t, T).unwrap().status, ResultStatus::Ok);
    }
    // Idle: back to min_replicas, the extra replicas drained (not killed with work).
    let down = d.wait_for("back to one replica", T, |s| {
        s.workers
            .iter()
            .filter(|w| (w.name == "s" || w.name.starts_with("s#")) && w.state == "ready")
            .count()
            == 1
    });
    let seq = |kind: &str, needle: &str| {
        down.events
            .iter()
            .find(|e| e.kind == kind && e.detail.contains(needle))
            .map(|e| e.seq)
    };
    // Every replica that stopped was drained first (whichever the autoscaler picked: the
    // slowest), and after the scale-down decision.
    let is_s = |u: &str| u == "s" || u.starts_with("s#");
    let scaled_down = seq("adjustment", "scale down").expect("a scale-down decision");
    let stopped: Vec<_> = down
        .events
        .iter()
        .filter(|e| e.kind == "exited" && is_s(&e.unit))
        .collect();
    assert!(!stopped.is_empty(), "no replica stopped: {:?}", down.events);
    for e in stopped {
        let drained = down
            .events
            .iter()
            .find(|x| x.kind == "draining" && x.unit == e.unit && x.seq < e.seq);
        assert!(
            drained.is_some() && scaled_down < e.seq,
            "{} stopped without a drain after the decision: {:?}",
            e.unit,
            down.events
        );
    }
    drop(c);
    let _ = d.shutdown(T);
}
