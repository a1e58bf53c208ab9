//! `reload`, `scale` and `metrics` end to end.

use std::time::Duration;

use amp_tests::{worker, Ampd};

const T: Duration = Duration::from_secs(15);

fn write_config(d: &Ampd, workers: &str) {
    let text = std::fs::read_to_string(&d.config).unwrap();
    let head = text.split("\n\n").next().unwrap().to_owned();
    std::fs::write(&d.config, format!("{head}\n\n{workers}\n")).unwrap();
}

#[test]
fn reload_adds_removes_and_changes_workers_without_touching_the_rest() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.keep]
command = "amp-echo"
kinds = ["echo"]
[workers.change]
command = "amp-echo"
kinds = ["echo"]
[workers.gone]
command = "amp-echo"
kinds = ["echo"]
[workers.grow]
command = "amp-echo"
kinds = ["echo"]
"#,
    );
    let before = d.wait_ready(&["keep", "change", "gone", "grow"], T);
    let pid =
        |s: &amp_supervisor::control::proto::StatusData, n: &str| worker(s, n).and_then(|w| w.pid);
    write_config(
        &d,
        r#"
[workers.keep]
command = "amp-echo"
kinds = ["echo"]
[workers.change]
command = "amp-echo"
kinds = ["echo"]
env = { CHANGED = "1" }
[workers.grow]
command = "amp-echo"
kinds = ["echo"]
replicas = 3
[workers.new]
command = "amp-echo"
kinds = ["echo"]
depends_on = ["keep"]
"#,
    );
    let r = d.request(serde_json::json!({"cmd": "reload"})).unwrap();
    assert!(r.ok, "{r:?}");
    let data = r.data.unwrap();
    assert_eq!(data["added"], serde_json::json!(["new"]));
    assert_eq!(data["removed"], serde_json::json!(["gone"]));
    assert_eq!(data["changed"], serde_json::json!(["change"]));
    assert_eq!(data["scaled"], serde_json::json!(["grow"]));
    let after = d.wait_for("reload applied", T, |s| {
        ["keep", "change", "grow", "grow#1", "grow#2", "new"]
            .iter()
            .all(|n| worker(s, n).is_some_and(|w| w.state == "ready"))
            && worker(s, "gone").is_none_or(|w| w.state == "stopped")
            && pid(s, "change") != pid(&before, "change")
    });
    assert_eq!(
        pid(&after, "keep"),
        pid(&before, "keep"),
        "an unchanged worker was restarted"
    );
    assert_eq!(
        pid(&after, "grow"),
        pid(&before, "grow"),
        "scaling restarted the existing replica"
    );
    assert!(after.events.iter().any(|e| e.kind == "reloaded"));
    // A broken config is refused and changes nothing.
    std::fs::write(&d.config, "this is [not toml").unwrap();
    let r = d.request(serde_json::json!({"cmd": "reload"})).unwrap();
    assert!(
        !r.ok && r.error.as_deref().unwrap_or("").contains("nothing changed"),
        "{r:?}"
    );
    assert_eq!(pid(&d.status(), "keep"), pid(&before, "keep"));
    let _ = d.shutdown(T);
}

#[test]
fn scale_up_and_down_and_metrics_exposition() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.e]
command = "amp-echo"
kinds = ["echo"]
"#,
    );
    d.wait_ready(&["e"], T);
    let r = d
        .request(serde_json::json!({"cmd": "scale", "name": "e", "replicas": 3}))
        .unwrap();
    assert!(r.ok, "{r:?}");
    d.wait_ready(&["e", "e#1", "e#2"], T);
    let r = d
        .request(serde_json::json!({"cmd": "scale", "name": "e", "replicas": 1}))
        .unwrap();
    assert!(r.ok, "{r:?}");
    d.wait_for("scaled down", T, |s| {
        s.workers.iter().filter(|w| w.state == "ready").count() == 1
    });
    let r = d
        .request(serde_json::json!({"cmd": "scale", "name": "nope", "replicas": 2}))
        .unwrap();
    assert!(!r.ok);
    // Some traffic, then the exposition.
    let mut c = amp_ipc::Client::connect(&d.socket).unwrap();
    for i in 0..50u32 {
        let t = c.submit("echo", &i.to_le_bytes()).unwrap();
        c.wait_for(t, T).unwrap();
    }
    let r = d.request(serde_json::json!({"cmd": "metrics"})).unwrap();
    let text = r.data.unwrap()["text"].as_str().unwrap().to_owned();
    for needle in [
        "amp_tasks_total{kind=\"echo\",worker=\"e\",outcome=\"ok\"} 50",
        "amp_task_duration_seconds_bucket{",
        "amp_queue_depth{kind=\"echo\",class=\"batch\"} 0",
        "amp_worker_restarts_total{worker=\"e\"}",
        "amp_ring_wakeups_total{",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    drop(c);
    let _ = d.shutdown(T);
}
