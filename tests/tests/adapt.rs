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
