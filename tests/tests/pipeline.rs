//! Pipelines, loopback limits, triggers and coalescing, end to end.

use std::time::Duration;

use amp_ipc::client::{Client, ResultStatus};
use amp_tests::Ampd;

const T: Duration = Duration::from_secs(20);

#[test]
fn three_stage_pipeline_answers_each_input_once_with_the_last_stage_result() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.front]
command = "amp-echo"
kinds = ["validate", "transform"]
replicas = 2
[workers.compute]
command = "amp-hash"
kinds = ["compute"]
[workers.strict]
command = "amp-flaky"
kinds = ["check"]
[[route]]
from = "validate"
to = "transform"
[[route]]
from = "transform"
to = "compute"
[[route]]
from = "check"
to = "compute"
"#,
    );
    d.wait_ready(&["front#0", "front#1", "compute", "strict"], T);
    let mut c = Client::connect(&d.socket).unwrap();
    let mut want = std::collections::HashMap::new();
    for i in 0..200u32 {
        let p = format!("record-{i}");
        let t = c.submit("validate", p.as_bytes()).unwrap();
        want.insert(t, format!("{:016x}", amp_worker::digest(p.as_bytes(), 16)));
    }
    let mut seen = std::collections::HashSet::new();
    while seen.len() < want.len() {
        let r = c.wait_result(T).unwrap();
        assert!(seen.insert(r.ticket), "ticket {} answered twice", r.ticket);
        assert_eq!(r.status, ResultStatus::Ok, "{}", r.text());
        assert_eq!(
            r.text(),
            want[&r.ticket],
            "wrong final result for ticket {}",
            r.ticket
        );
    }
    assert!(
        c.wait_result(Duration::from_millis(200)).is_err(),
        "an extra answer arrived"
    );
    // A failure mid-pipeline (default policy: fail the chain) reaches the submitter as Failed.
    let t = c.submit("check", b"fail").unwrap();
    let r = c.wait_for(t, T).unwrap();
    assert_eq!(r.status, ResultStatus::Failed, "{}", r.text());
    drop(c);
    let _ = d.shutdown(T);
}

#[test]
fn loopback_stops_at_max_loops() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.looper]
command = "amp-flaky"
kinds = ["refine"]
[kinds.refine]
max_loops = 3
"#,
    );
    d.wait_ready(&["looper"], T);
    let mut c = Client::connect(&d.socket).unwrap();
    let t = c.submit("refine", b"loop").unwrap();
    let r = c.wait_for(t, T).unwrap();
    assert_eq!(r.status, ResultStatus::LoopLimit, "{}", r.text());
    assert_eq!(r.body, b"loop");
    let s = d.status();
    let q = amp_tests::queue(&s, "refine");
    // The first run plus max_loops = 3 loopbacks.
    assert_eq!(q.dispatched, 4, "four rounds ran: {q:?}");
    drop(c);
    let _ = d.shutdown(T);
}

#[test]
fn timer_completion_and_event_triggers_fire() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.e]
command = "amp-echo"
kinds = ["tick", "after", "ping"]
[[trigger]]
name = "every200"
every = "200ms"
submit = { kind = "tick", payload = "t" }
[[trigger]]
name = "chain"
on_complete = "tick"
submit = { kind = "after" }
[[trigger]]
name = "deploy"
on_event = "deploy"
submit = { kind = "ping", payload = "p" }
"#,
    );
    d.wait_ready(&["e"], T);
    let count = |s: &amp_supervisor::control::proto::StatusData, name: &str| {
        s.events
            .iter()
            .filter(|e| e.kind == "trigger_fired" && e.detail.starts_with(name))
            .count()
    };
    let s = d.wait_for("timer fired 3 times", T, |s| count(s, "every200") >= 3);
    // Generous bounds: at most one fire per 200 ms since start (+1 for the first).
    assert!(
        count(&s, "every200") as f64 <= s.uptime_s / 0.2 + 2.0,
        "{} fires in {:.1}s",
        count(&s, "every200"),
        s.uptime_s
    );
    d.wait_for("completion trigger fired", T, |s| count(s, "chain") >= 2);
    let r = d
        .request(serde_json::json!({"cmd": "emit", "event": "deploy"}))
        .unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!(r.data.unwrap()["fired"], 1);
    d.wait_for("event trigger fired", T, |s| count(s, "deploy") == 1);
    let r = d
        .request(serde_json::json!({"cmd": "emit", "event": "nobody-listens"}))
        .unwrap();
    assert!(!r.ok);
    let _ = d.shutdown(T);
}

#[test]
fn identical_deterministic_tasks_run_once_and_hit_the_cache_after() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.h]
command = "amp-sleep"
kinds = ["slowhash"]
[kinds.slowhash]
deterministic = true
cache = { max_bytes = "1MiB", ttl = "10m" }
"#,
    );
    d.wait_ready(&["h"], T);
    let mut c = Client::connect(&d.socket).unwrap();
    let mut tickets = Vec::new();
    for _ in 0..1000 {
        let t = amp_ipc::client::Submit {
            kind: "slowhash",
            ..Default::default()
        };
        tickets.push(c.submit_blocking(&t, b"50 same", T).unwrap());
    }
    for t in tickets {
        let r = c.wait_for(t, T).unwrap();
        assert_eq!(
            (r.status, r.body.as_slice()),
            (ResultStatus::Ok, &b"50 same"[..])
        );
    }
    let dispatched = |d: &Ampd| {
        d.status()
            .queues
            .iter()
            .find(|q| q.kind == "slowhash")
            .unwrap()
            .dispatched
    };
    assert_eq!(
        dispatched(&d),
        1,
        "1000 identical submissions must run once"
    );
    let t = c.submit("slowhash", b"50 same").unwrap();
    assert_eq!(c.wait_for(t, T).unwrap().body, b"50 same");
    assert_eq!(dispatched(&d), 1, "a resubmission must be a cache hit");
    let r = d
        .request(serde_json::json!({"cmd": "cache_stats"}))
        .unwrap();
    assert!(r.ok, "{r:?}");
    drop(c);
    let _ = d.shutdown(T);
}

#[test]
fn fan_out_subtasks_and_fan_in_combined_result() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.mapper]
command = "amp-flaky"
kinds = ["map"]
[workers.pieces]
command = "amp-echo"
kinds = ["piece"]
replicas = 2
[kinds.map]
fan_in = "all"
"#,
    );
    d.wait_ready(&["mapper", "pieces#0", "pieces#1"], T);
    let mut c = Client::connect(&d.socket).unwrap();
    let t = c.submit("map", b"fanout:5:piece").unwrap();
    let r = c.wait_for(t, T).unwrap();
    assert_eq!(r.status, ResultStatus::Ok, "{}", r.text());
    let combined = amp_supervisor::pipeline::fanout::decode_combined(&r.body).unwrap();
    assert_eq!(combined.own, b"parent");
    assert_eq!(combined.children.len(), 5);
    for (i, child) in combined.children.iter().enumerate() {
        let want =
            amp_supervisor::pipeline::fanout::ChildResult::Ok(format!("piece-{i}").into_bytes());
        assert_eq!(child, &want, "child {i}");
    }
    let s = d.status();
    let q = amp_tests::queue(&s, "piece");
    assert_eq!(q.dispatched, 5, "{q:?}");
    drop(c);
    let _ = d.shutdown(T);
}

#[test]
fn a_new_file_in_a_watched_directory_fires_its_trigger_once() {
    let inbox = amp_tests::Scratch::new();
    let mut d = Ampd::start(
        "",
        &format!(
            r#"
[workers.e]
command = "amp-echo"
kinds = ["ingest"]
[[trigger]]
name = "inbox"
on_file = {{ dir = {:?}, pattern = "*.json" }}
submit = {{ kind = "ingest" }}
"#,
            inbox.path.display().to_string()
        ),
    );
    d.wait_ready(&["e"], T);
    std::fs::write(inbox.path.join("a.json"), b"{}").unwrap();
    std::fs::write(inbox.path.join("ignored.txt"), b"x").unwrap();
    let fired = |s: &amp_supervisor::control::proto::StatusData| {
        s.events
            .iter()
            .filter(|e| e.kind == "trigger_fired" && e.detail.starts_with("inbox"))
            .count()
    };
    d.wait_for("the file trigger fired", T, |s| fired(s) == 1);
    std::fs::write(inbox.path.join("b.json"), b"{}").unwrap();
    let s = d.wait_for("the second file fired", T, |s| fired(s) == 2);
    assert_eq!(fired(&s), 2, "a file must fire exactly once");
    let _ = d.shutdown(T);
}
