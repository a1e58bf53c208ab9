//! `ampctl top`: the model built from canned ampd answers (rates, sorting, selection, events,
//! link state, the adaptive controller's decisions), rendered frames (one compared with a
//! stored snapshot), and the real binary driven in tmux against a real ampd (skipped when tmux
//! is missing).
//!
//! To refresh the stored frame after an intended change of the view:
//! `AMP_UPDATE_SNAPSHOTS=1 cargo test -p amp-supervisor --test tui`, then review the diff.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use amp_supervisor::control::client;
use amp_supervisor::tui::model::{
    Adaptive, Command, Controller, DecisionRow, Input, Link, Model, Snapshot, SortKey, Update,
    DECISIONS_KEPT, EVENTS_KEPT,
};
use amp_supervisor::tui::{input_for_key, view, TopError};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Canned answers, shaped as ampd sends them (`data` of each response).

fn event(seq: u64, at_ms: u64, unit: &str, kind: &str, detail: &str) -> Value {
    json!({"at_ms": at_ms, "detail": detail, "kind": kind, "seq": seq, "unit": unit})
}

fn startup_events() -> Vec<Value> {
    vec![
        event(1, 28, "echo", "started", "pid 25047"),
        event(2, 28, "sleep#0", "started", "pid 25049"),
        event(3, 28, "sleep#1", "started", "pid 25051"),
        event(4, 28, "idle", "started", "pid 25052"),
        event(5, 28, "idle", "ready", "pid 25052 after 122.451µs"),
        event(6, 28, "sleep#0", "ready", "pid 25049 after 421.234µs"),
        event(7, 28, "sleep#1", "ready", "pid 25051 after 638.946µs"),
        event(8, 29, "echo", "ready", "pid 25047 after 1.285293ms"),
        event(9, 29, "", "startup_complete", "failed: []"),
    ]
}

fn restart_events() -> Vec<Value> {
    vec![
        event(
            10,
            61_870,
            "sleep#1",
            "exited",
            "pid 25051 killed by SIGKILL",
        ),
        event(11, 61_871, "sleep#1", "restarting", "in 200ms (restart 1)"),
        event(12, 62_072, "sleep#1", "started", "pid 25160"),
        event(13, 62_073, "sleep#1", "ready", "pid 25160 after 512.3µs"),
    ]
}

fn queue(kind: &str, interactive: u64, batch: u64, dispatched: u64, in_flight: u64) -> Value {
    json!({
        "depth": [["interactive", interactive], ["batch", batch]],
        "dispatched": dispatched,
        "in_flight": in_flight,
        "kind": kind,
        "policy": "least_loaded",
        "rejected": 0
    })
}

/// A `status` answer; `events` is what ampd keeps (the model takes events from `events`).
fn status(pid: u32, uptime_s: f64, sleep_q: (u64, u64), done: u64, restarted: bool) -> Value {
    let w = |name: &str, pid: u32, restarts: u32, last_exit: Value| {
        json!({"last_exit": last_exit, "name": name, "pid": pid, "ready_ms": 29,
               "restarts": restarts, "state": "ready"})
    };
    let (s1_pid, s1_restarts, s1_exit) = if restarted {
        (25160, 1, json!("killed by SIGKILL"))
    } else {
        (25051, 0, Value::Null)
    };
    json!({
        "events": startup_events(),
        "pid": pid,
        "queues": [queue("echo", 0, 0, done, 0), queue("sleep", sleep_q.0, sleep_q.1, 40, 3)],
        "shutting_down": false,
        "tasks": {"dead_lettered": 0, "done": done, "in_flight": 3, "late_dropped": 0,
                  "queued": sleep_q.0 + sleep_q.1, "retried": 1, "waiting_retry": 0},
        "uptime_s": uptime_s,
        "workers": [
            w("echo", 25047, 0, Value::Null),
            w("sleep#0", 25049, 0, Value::Null),
            w("sleep#1", s1_pid, s1_restarts, s1_exit),
            w("idle", 25052, 0, Value::Null),
        ]
    })
}

#[allow(
    clippy::too_many_arguments,
    reason = "one canned `workers` row, field by field"
)]
fn worker(
    name: &str,
    pid: u32,
    restarts: u32,
    in_flight: u64,
    ok: u64,
    err: u64,
    cpu_s: f64,
    rss: u64,
) -> Value {
    json!({"completed_err": err, "completed_ok": ok, "cpu_s": cpu_s, "in_flight": in_flight,
           "last_exit": null, "name": name, "pid": pid, "restarts": restarts,
           "rss_bytes": rss, "state": "ready", "uptime_s": 61.5})
}

fn stat(kind: &str, worker: &str, completed: u64, errors: u64, p99: f64) -> Value {
    json!({"completed": completed, "errors": errors, "kind": kind, "kind_retries": 0,
           "max_ms": p99 * 1.2, "p50_ms": p99 / 2.0, "p90_ms": p99 * 0.9, "p99_ms": p99,
           "throughput_per_s": 84.78, "worker": worker})
}

/// A decision as ampd serializes it (`adapt::Decision`).
fn decision(id: u64, at_s: f64, kind: &str, target: Value, change: Value, state: &str) -> Value {
    json!({"id": id, "at_s": at_s, "kind": kind, "target": target, "change": change,
           "evidence": {"reason": "rule fired", "before": {}, "after": {}}, "state": state})
}

/// The `tune show` answer of poll `i`: sleep in advise mode; a window decision applied at
/// once, a batch decision proposed at the second poll and still waiting, a timeout decision
/// and a scale-up at the third.
fn tune(i: u32) -> Value {
    let mut decisions = vec![json!({
        "id": 1, "at_s": 0.4, "kind": "sleep",
        "target": {"type": "worker", "unit": 1},
        "change": {"type": "window", "from": 64, "to": 12},
        "evidence": {"reason": "Gradient2", "before": {"window": 64.0, "short_rtt_ms": 3.5,
                     "long_rtt_ms": 2.25}, "after": {"window": 12.0}},
        "state": "applied"
    })];
    if i >= 1 {
        decisions.push(json!({
            "id": 2, "at_s": 30.25, "kind": "sleep", "target": {"type": "kind"},
            "change": {"type": "batch", "from": 32, "to": 16},
            "evidence": {"reason": "p99 above target", "before": {"batch": 32.0, "p99_ms": 120.0,
                         "target_ms": 50.0}, "after": {"batch": 16.0}},
            "state": "proposed"
        }));
    }
    if i >= 2 {
        decisions.push(json!({
            "id": 3, "at_s": 31.5, "kind": "sleep", "target": {"type": "kind"},
            "change": {"type": "timeout", "from_ms": 100.0, "to_ms": 400.0},
            "evidence": {"reason": "timeout from p99", "before": {"p99_ms": 133.3},
                         "after": {"timeout_ms": 400.0}},
            "state": "applied"
        }));
        decisions.push(json!({
            "id": 4, "at_s": 32.0, "kind": "sleep", "target": {"type": "group", "worker": "sleep"},
            "change": {"type": "replicas", "from": 2, "to": 3, "drain": null},
            "evidence": {"reason": "scale up: backlog and high utilisation sustained",
                         "before": {"queue_depth": 370.0, "queue_wait_ms": 396.25,
                                    "replicas": 2.0, "utilisation": 0.97},
                         "after": {"replicas": 3.0}},
            "state": "applied"
        }));
    }
    json!({
        "kinds": {
            "echo": {"mode": "off", "batch": 32, "timeout_ms": null, "workers": []},
            "sleep": {"mode": "advise", "batch": 32, "timeout_ms": 400.0,
                      "queue": {"depth": 9, "wait_ms": 12.0}, "workers": []}
        },
        "groups": {"sleep": {"replicas": 2, "desired": 3, "utilisation": 0.97}},
        "decisions": decisions
    })
}

/// Three polls, one second apart: echo does 20 tasks/s at 25% CPU, sleep#0 4/s at 5%,
/// sleep#1 is killed and restarted between the second and third poll.
fn poll(i: u32) -> Snapshot {
    let i64_ = u64::from(i);
    let restarted = i >= 2;
    let (s1_pid, s1_cpu, s1_restarts) = if restarted {
        (25160, 0.01, 1)
    } else {
        (25051, 0.1 + 0.02 * f64::from(i), 0)
    };
    let echo_done = 100 + 20 * i64_;
    let s0_done = 20 + 4 * i64_;
    let s1_done = 18 + 3 * i64_;
    let status = status(
        4242,
        60.5 + f64::from(i),
        (2, 5 + i64_),
        echo_done + s0_done + s1_done + 1,
        restarted,
    );
    let mut workers = json!({"workers": [
        worker("echo", 25047, 0, 0, echo_done, 0, 1.0 + 0.25 * f64::from(i), 3_772_416),
        worker("sleep#0", 25049, 0, 2, s0_done, 0, 0.2 + 0.05 * f64::from(i), 3_784_704),
        worker("sleep#1", s1_pid, s1_restarts, 1, s1_done, 1, s1_cpu, 3_895_296),
        worker("idle", 25052, 0, 0, 0, 0, 0.0, 1_724_416),
    ]});
    if restarted {
        workers["workers"][2]["last_exit"] = json!("killed by SIGKILL");
    }
    let stats = json!({"stats": [
        stat("echo", "echo", echo_done, 0, 0.180 + 0.01 * f64::from(i)),
        stat("sleep", "sleep#0", s0_done, 0, 25.0 + f64::from(i)),
        stat("sleep", "sleep#1", s1_done + 1, 1, 30.0 + 1.5 * f64::from(i)),
    ]});
    let events = match i {
        0 => json!({"events": startup_events(), "follow": false}),
        2 => json!({"events": restart_events(), "follow": false}),
        _ => json!({"events": [], "follow": false}),
    };
    Snapshot::from_data(status, &workers, &stats, &events)
        .expect("canned answers parse")
        .with_tune(Ok(tune(i)))
}

/// A poll with no workers, no stats, no events, and the given `tune show` answer.
fn bare_poll(pid: u32, tune: Result<Value, String>) -> Snapshot {
    Snapshot::from_data(
        status(pid, 1.0, (0, 0), 0, false),
        &json!({"workers": []}),
        &json!({"stats": []}),
        &json!({"events": []}),
    )
    .unwrap()
    .with_tune(tune)
}

fn tune_with(decisions: Vec<Value>) -> Value {
    json!({"kinds": {"k": {"mode": "auto"}}, "decisions": decisions})
}

fn ids(m: &Model) -> Vec<u64> {
    m.decisions().iter().map(|d| d.id).collect()
}

fn snapshot_at(model: &mut Model, snap: Snapshot, secs: f64) {
    model.update(Update::Snapshot {
        snap: Box::new(snap),
        at: Duration::from_secs_f64(secs),
    });
}

/// A model after the three polls.
fn polled_model() -> Model {
    let mut m = Model::new("/run/user/1000/amp/ampd.sock");
    for i in 0..3 {
        snapshot_at(&mut m, poll(i), f64::from(i));
    }
    m
}

fn row<'m>(m: &'m Model, name: &str) -> &'m amp_supervisor::tui::model::WorkerRow {
    m.rows()
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no row {name}"))
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-6)
}

// ---------------------------------------------------------------------------------------------
// The model.

#[test]
fn rates_come_from_successive_samples() {
    let mut m = Model::new("s");
    snapshot_at(&mut m, poll(0), 0.0);
    // One sample: no rate yet.
    assert!(m
        .rows()
        .iter()
        .all(|r| r.cpu_pct.is_none() && r.throughput.is_none()));
    assert!(m.kinds().iter().all(|k| k.throughput.is_none()));
    snapshot_at(&mut m, poll(1), 1.0);
    assert!(
        close(row(&m, "echo").cpu_pct, 25.0),
        "{:?}",
        row(&m, "echo")
    );
    assert!(close(row(&m, "echo").throughput, 20.0));
    assert!(close(row(&m, "sleep#0").cpu_pct, 5.0));
    assert!(close(row(&m, "sleep#1").cpu_pct, 2.0));
    assert!(close(row(&m, "idle").cpu_pct, 0.0));
    assert!(close(row(&m, "sleep#1").p99_ms, 31.5));
    assert_eq!(row(&m, "idle").p99_ms, None);
    let sleep = &m.kinds()[1];
    assert_eq!((sleep.kind.as_str(), sleep.queued()), ("sleep", 8));
    assert!(close(sleep.throughput, 7.0), "{sleep:?}");
    // Worst p99 over the kind's workers.
    assert!(close(sleep.p99_ms, 31.5));
    // Half a second later with the same growth: twice the rate.
    let mut half = Model::new("s");
    snapshot_at(&mut half, poll(0), 0.0);
    snapshot_at(&mut half, poll(1), 0.5);
    assert!(close(row(&half, "echo").throughput, 40.0));
    assert!(close(row(&half, "echo").cpu_pct, 50.0));

    // sleep#1 got a new pid: its CPU counter started over, no CPU% until the next sample.
    snapshot_at(&mut m, poll(2), 2.0);
    assert_eq!(row(&m, "sleep#1").cpu_pct, None);
    assert_eq!(row(&m, "sleep#1").restarts, 1);
    // Its completion counter lives in ampd and keeps growing.
    assert!(close(row(&m, "sleep#1").throughput, 3.0));
    let echo = &m.kinds()[0];
    assert_eq!(
        echo.throughput_hist.iter().copied().collect::<Vec<_>>(),
        [20.0, 20.0]
    );
    assert_eq!(echo.p99_hist.len(), 3);
}

#[test]
fn history_and_events_are_bounded_and_deduplicated() {
    let mut m = Model::new("s");
    for i in 0..200u32 {
        // The same startup events every time: kept once.
        snapshot_at(&mut m, poll(i % 2), f64::from(i));
    }
    assert_eq!(m.events().len(), 9);
    let echo = &m.kinds()[0];
    assert_eq!(echo.p99_hist.len(), amp_supervisor::tui::model::HISTORY);
    assert_eq!(
        echo.throughput_hist.len(),
        amp_supervisor::tui::model::HISTORY
    );

    // Many new events: only the newest EVENTS_KEPT stay, oldest first.
    let evs: Vec<Value> = (10..10 + 2 * EVENTS_KEPT as u64)
        .map(|s| event(s, s, "echo", "ready", "x"))
        .collect();
    let snap = Snapshot::from_data(
        status(4242, 1.0, (0, 0), 0, false),
        &json!({"workers": []}),
        &json!({"stats": []}),
        &json!({"events": evs}),
    )
    .unwrap();
    snapshot_at(&mut m, snap, 1000.0);
    assert_eq!(m.events().len(), EVENTS_KEPT);
    assert_eq!(m.events().back().unwrap().seq, 9 + 2 * EVENTS_KEPT as u64);
    assert!(m
        .events()
        .iter()
        .zip(m.events().iter().skip(1))
        .all(|(a, b)| a.seq < b.seq));

    // Another ampd (new pid) under the same socket: its events start over at 1.
    let snap = Snapshot::from_data(
        status(5555, 0.1, (0, 0), 0, false),
        &json!({"workers": []}),
        &json!({"stats": []}),
        &json!({"events": startup_events()}),
    )
    .unwrap();
    snapshot_at(&mut m, snap, 1001.0);
    assert_eq!(m.events().len(), 9);
    assert_eq!(m.header().unwrap().pid, 5555);
    assert_eq!(m.kinds()[0].p99_hist.len(), 1);
}

#[test]
fn unreachable_ampd_keeps_the_last_figures() {
    let mut m = Model::new("s");
    assert_eq!(m.link(), &Link::Connecting);
    m.update(Update::Down {
        error: "cannot reach ampd".into(),
        at: Duration::from_secs(1),
    });
    assert_eq!(
        m.link(),
        &Link::Down {
            error: "cannot reach ampd".into(),
            stale_for: None
        }
    );
    snapshot_at(&mut m, poll(0), 2.0);
    assert_eq!(m.link(), &Link::Up);
    m.update(Update::Down {
        error: "gone".into(),
        at: Duration::from_millis(5500),
    });
    assert_eq!(
        m.link(),
        &Link::Down {
            error: "gone".into(),
            stale_for: Some(Duration::from_millis(3500))
        }
    );
    assert_eq!(m.rows().len(), 4, "the last figures stay on screen");
    snapshot_at(&mut m, poll(1), 6.0);
    assert_eq!(m.link(), &Link::Up);
}

#[test]
fn malformed_answers_are_named() {
    let err = Snapshot::from_data(
        status(1, 1.0, (0, 0), 0, false),
        &json!({"workers": [{"name": "x"}]}),
        &json!({"stats": []}),
        &json!({"events": []}),
    )
    .unwrap_err();
    assert!(
        matches!(&err, TopError::Malformed { what: "workers", detail } if detail.contains("state")),
        "{err}"
    );
    let err = Snapshot::from_data(
        status(1, 1.0, (0, 0), 0, false),
        &json!({"workers": []}),
        &json!({"rows": []}),
        &json!({"events": []}),
    )
    .unwrap_err();
    assert!(err.to_string().contains("`stats`"), "{err}");
    let err = Snapshot::from_data(
        json!({"pid": 1}),
        &json!({"workers": []}),
        &json!({"stats": []}),
        &json!({"events": []}),
    )
    .unwrap_err();
    assert!(
        matches!(err, TopError::Malformed { what: "status", .. }),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// The adaptive controller.

fn parse(d: Value) -> DecisionRow {
    DecisionRow::from_json(&d).unwrap_or_else(|| panic!("no row from {d}"))
}

#[test]
fn every_change_type_is_summarised() {
    let worker = json!({"type": "worker", "unit": 3});
    let kind = json!({"type": "kind"});
    let cases = [
        (
            worker.clone(),
            json!({"type": "window", "from": 64, "to": 12}),
            "sleep/unit 3: window 64→12",
        ),
        (
            kind.clone(),
            json!({"type": "batch", "from": 32, "to": 16}),
            "sleep: batch 32→16",
        ),
        (
            kind.clone(),
            json!({"type": "timeout", "from_ms": 100.0, "to_ms": 400.0}),
            "sleep: timeout 100ms→400ms",
        ),
        (
            kind.clone(),
            json!({"type": "timeout", "from_ms": null, "to_ms": 12.5}),
            "sleep: timeout none→12.5ms",
        ),
        (
            json!({"type": "workers", "units": [1, 4]}),
            json!({"type": "canary", "from": {"chunk": 8.0, "spin": 2.0},
                   "to": {"chunk": 16.0, "spin": 2.0}, "control": [2, 5]}),
            "sleep/units 1,4: canary chunk 8→16 (control units 2,5)",
        ),
        (
            json!({"type": "workers", "units": [2, 3, 5]}),
            json!({"type": "adopt", "canary": 7, "params": {"chunk": 16.0}}),
            "sleep/units 2,3,5: adopt #7: chunk=16",
        ),
        (
            json!({"type": "workers", "units": [1, 4]}),
            json!({"type": "rollback", "canary": 7, "params": {"chunk": 8.0, "spin": 0.25}}),
            "sleep/units 1,4: roll back #7: chunk=8, spin=0.25",
        ),
        (
            json!({"type": "group", "worker": "s"}),
            json!({"type": "replicas", "from": 1, "to": 2, "drain": null}),
            "s: replicas 1→2",
        ),
        (
            json!({"type": "group", "worker": "s"}),
            json!({"type": "replicas", "from": 3, "to": 2, "drain": 5}),
            "s: replicas 3→2, drain unit 5",
        ),
        // Something a newer ampd might send: named, not refused.
        (
            json!({"type": "cluster"}),
            json!({"type": "affinity", "from": 1}),
            "sleep: affinity",
        ),
    ];
    for (i, (target, change, want)) in cases.into_iter().enumerate() {
        let d = parse(decision(
            i as u64 + 1,
            1.0,
            "sleep",
            target,
            change,
            "applied",
        ));
        assert_eq!(d.summary, want);
        assert_eq!((d.id, d.kind.as_str()), (i as u64 + 1, "sleep"));
    }
}

#[test]
fn evidence_shows_the_figures_before_and_after() {
    let d = parse(json!({
        "id": 9, "at_s": 0.4, "kind": "s", "target": {"type": "group", "worker": "s"},
        "change": {"type": "replicas", "from": 1, "to": 2, "drain": null},
        "evidence": {"reason": "scale up: backlog and high utilisation sustained",
                     "before": {"p": 0.126, "queue_depth": 370.0, "queue_wait_ms": 396.25,
                                "replicas": 1.0, "utilisation": 1.0},
                     "after": {"replicas": 2.0, "samples": 40.0}},
        "state": "proposed"
    }));
    assert_eq!(d.summary, "s: replicas 1→2");
    assert_eq!(d.reason, "scale up: backlog and high utilisation sustained");
    assert_eq!(
        d.evidence,
        "p 0.13, queue_depth 370, queue_wait_ms 396, replicas 1→2, utilisation 1, samples →40"
    );
    assert_eq!((d.state.as_str(), d.is_proposed()), ("proposed", true));
    assert!((d.at_s - 0.4).abs() < 1e-9);

    // Missing members: defaults, not a failure.
    let bare = parse(json!({"id": 3}));
    assert_eq!(
        (
            bare.summary.as_str(),
            bare.state.as_str(),
            bare.reason.as_str(),
            bare.evidence.as_str()
        ),
        ("?: ?", "?", "", "")
    );
    // No id: not a decision.
    assert_eq!(DecisionRow::from_json(&json!({"kind": "s"})), None);
    assert_eq!(DecisionRow::from_json(&json!({"id": "1"})), None);
}

#[test]
fn tune_answers_are_read_leniently() {
    let a = Adaptive::from_data(&tune(2)).unwrap();
    assert_eq!(
        a.modes,
        [
            ("echo".into(), "off".into()),
            ("sleep".into(), "advise".into())
        ]
    );
    assert_eq!(
        a.decisions.iter().map(|d| d.id).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    // Members missing: none of them.
    let a = Adaptive::from_data(&json!({"decisions": [{"id": 1}, {"no": "id"}]})).unwrap();
    assert!(a.modes.is_empty());
    assert_eq!(a.decisions.len(), 1);
    let a = Adaptive::from_data(&json!({"kinds": {"k": {}}})).unwrap();
    assert_eq!(a.modes, [("k".into(), "?".into())]);
    assert!(a.decisions.is_empty());
    // Not a controller description.
    for bad in [json!(null), json!([]), json!({"other": 1})] {
        let err = Adaptive::from_data(&bad).unwrap_err();
        assert!(err.contains("unexpected `tune show` answer"), "{err}");
    }
    // A refusal is passed on as it came.
    let refused = "ampd refused `tune`: bad request: unknown variant `tune`".to_owned();
    assert_eq!(Adaptive::from_answer(Err(refused.clone())), Err(refused));
    // Only the newest are read.
    let many: Vec<Value> = (1..=3 * DECISIONS_KEPT as u64)
        .map(|id| {
            decision(
                id,
                1.0,
                "k",
                json!({"type": "kind"}),
                json!({"type": "batch", "from": 1, "to": 2}),
                "applied",
            )
        })
        .collect();
    let a = Adaptive::from_data(&tune_with(many)).unwrap();
    assert_eq!(a.decisions.len(), DECISIONS_KEPT);
    assert_eq!(a.decisions[0].id, 2 * DECISIONS_KEPT as u64 + 1);
    assert_eq!(a.decisions.last().unwrap().id, 3 * DECISIONS_KEPT as u64);
}

#[test]
fn decisions_are_merged_by_id_and_bounded() {
    let batch = |id: u64, state: &str| {
        decision(
            id,
            id as f64,
            "k",
            json!({"type": "kind"}),
            json!({"type": "batch", "from": 8, "to": 4}),
            state,
        )
    };
    let mut m = Model::new("s");
    assert_eq!(m.controller(), &Controller::Unknown);
    snapshot_at(
        &mut m,
        bare_poll(
            7,
            Ok(tune_with(vec![batch(1, "applied"), batch(2, "proposed")])),
        ),
        0.0,
    );
    assert_eq!(
        m.controller(),
        &Controller::Available {
            modes: vec![("k".into(), "auto".into())]
        }
    );
    assert_eq!(ids(&m), [1, 2]);
    assert!(m.decisions()[1].is_proposed());
    // Applied since, and ampd's own log lost #1: the state changes, #1 stays.
    snapshot_at(
        &mut m,
        bare_poll(
            7,
            Ok(tune_with(vec![batch(2, "applied"), batch(3, "proposed")])),
        ),
        1.0,
    );
    assert_eq!(ids(&m), [1, 2, 3]);
    assert_eq!(m.decisions()[1].state, "applied");
    // Bounded: the newest stay.
    let many: Vec<Value> = (4..4 + 2 * DECISIONS_KEPT as u64)
        .map(|id| batch(id, "applied"))
        .collect();
    snapshot_at(&mut m, bare_poll(7, Ok(tune_with(many))), 2.0);
    assert_eq!(m.decisions().len(), DECISIONS_KEPT);
    assert_eq!(
        m.decisions().back().unwrap().id,
        3 + 2 * DECISIONS_KEPT as u64
    );
    assert_eq!(m.decisions().front().unwrap().id, 4 + DECISIONS_KEPT as u64);
    // The controller goes away (an error): its last decisions stay on screen.
    snapshot_at(
        &mut m,
        bare_poll(7, Err("ampd refused `tune`: busy".into())),
        3.0,
    );
    assert_eq!(
        m.controller(),
        &Controller::Unavailable {
            reason: "ampd refused `tune`: busy".into()
        }
    );
    assert_eq!(m.decisions().len(), DECISIONS_KEPT);
    // A new controller (ids start over): the old decisions go.
    snapshot_at(
        &mut m,
        bare_poll(7, Ok(tune_with(vec![batch(1, "proposed")]))),
        4.0,
    );
    assert_eq!(ids(&m), [1]);
    assert!(m.decisions()[0].is_proposed());
    // Another ampd: nothing carries over, even with higher ids.
    snapshot_at(
        &mut m,
        bare_poll(
            7,
            Ok(tune_with(vec![batch(1, "applied"), batch(5, "applied")])),
        ),
        5.0,
    );
    assert_eq!(ids(&m), [1, 5]);
    snapshot_at(
        &mut m,
        bare_poll(8, Ok(tune_with(vec![batch(6, "applied")]))),
        6.0,
    );
    assert_eq!(ids(&m), [6]);
}

fn names(m: &Model) -> Vec<&str> {
    m.rows().iter().map(|r| r.name.as_str()).collect()
}

/// Four workers whose columns all order differently.
fn sortable() -> Model {
    let w = |name: &str,
             state: &str,
             pid: Option<u32>,
             restarts: u32,
             in_flight: u64,
             ok: u64,
             cpu: f64,
             rss: u64| {
        json!({"completed_err": 0, "completed_ok": ok, "cpu_s": pid.map(|_| cpu),
               "in_flight": in_flight, "last_exit": null, "name": name, "pid": pid,
               "restarts": restarts, "rss_bytes": pid.map(|_| rss), "state": state,
               "uptime_s": 1.0})
    };
    let snap = |k: u64| {
        Snapshot::from_data(
            status(7, 1.0, (0, 0), 0, false),
            &json!({"workers": [
                w("alpha", "ready", Some(11), 0, 5, 10 * k, 0.1 * k as f64, 4_000_000),
                w("bravo", "failed", None, 3, 0, 0, 0.0, 0),
                w("charlie", "backoff", Some(13), 1, 9, 30 * k, 0.05 * k as f64, 9_000_000),
                w("delta", "ready", Some(14), 2, 1, 20 * k, 0.3 * k as f64, 1_000_000),
            ]}),
            &json!({"stats": [
                stat("k", "alpha", 10 * k, 0, 9.0),
                stat("k", "charlie", 30 * k, 0, 1.0),
                stat("k", "delta", 20 * k, 0, 4.0),
            ]}),
            &json!({"events": []}),
        )
        .unwrap()
    };
    let mut m = Model::new("s");
    snapshot_at(&mut m, snap(1), 0.0);
    snapshot_at(&mut m, snap(2), 1.0);
    m
}

#[test]
fn sort_cycles_through_every_column() {
    let mut m = sortable();
    let expected: [(SortKey, [&str; 4]); 9] = [
        (SortKey::Name, ["alpha", "bravo", "charlie", "delta"]),
        // Troubled first: failed, backoff, then ready by name.
        (SortKey::State, ["bravo", "charlie", "alpha", "delta"]),
        (SortKey::Restarts, ["bravo", "delta", "charlie", "alpha"]),
        (SortKey::InFlight, ["charlie", "alpha", "delta", "bravo"]),
        // Unknown (bravo has no process) last.
        (SortKey::Throughput, ["charlie", "delta", "alpha", "bravo"]),
        (SortKey::P99, ["alpha", "delta", "charlie", "bravo"]),
        (SortKey::Cpu, ["delta", "alpha", "charlie", "bravo"]),
        (SortKey::Rss, ["charlie", "alpha", "delta", "bravo"]),
        (SortKey::Name, ["alpha", "bravo", "charlie", "delta"]),
    ];
    for (i, (key, order)) in expected.iter().enumerate() {
        if i > 0 {
            assert_eq!(m.handle(Input::NextSort), None);
        }
        assert_eq!(m.sort(), *key);
        assert_eq!(names(&m), order, "sorted by {}", key.label());
    }
}

#[test]
fn selection_moves_clamps_and_follows_its_worker() {
    let mut m = sortable();
    // The first row is selected once rows exist.
    assert_eq!(m.selected(), Some("alpha"));
    assert_eq!(m.handle(Input::Up), None);
    assert_eq!((m.selected(), m.selected_index()), (Some("alpha"), Some(0)));
    for _ in 0..10 {
        m.handle(Input::Down);
    }
    assert_eq!((m.selected(), m.selected_index()), (Some("delta"), Some(3)));
    m.handle(Input::Up);
    assert_eq!(m.selected(), Some("charlie"));
    // Re-sorting keeps the same worker selected, wherever it lands.
    m.handle(Input::NextSort); // state: bravo, charlie, alpha, delta
    assert_eq!(
        (m.selected(), m.selected_index()),
        (Some("charlie"), Some(1))
    );
    m.handle(Input::Down);
    assert_eq!(m.selected(), Some("alpha"));

    // Drain and restart act on the selected worker.
    let cmd = m.handle(Input::Drain).expect("a drain command");
    assert_eq!(cmd, Command::Drain("alpha".into()));
    assert_eq!(
        cmd.request(),
        Some(json!({"cmd": "drain", "name": "alpha"}))
    );
    assert!(m.message().unwrap().text.contains("drain alpha"));
    let cmd = m.handle(Input::Restart).expect("a restart command");
    assert_eq!(
        cmd.request(),
        Some(json!({"cmd": "restart", "name": "alpha"}))
    );
    m.update(Update::Action {
        verb: "restart",
        name: "alpha".into(),
        result: Err("no unit or worker named \"alpha\"".into()),
    });
    let msg = m.message().unwrap();
    assert!(
        msg.error && msg.text.contains("restart alpha failed: no unit"),
        "{msg:?}"
    );
    assert_eq!(m.handle(Input::Quit), Some(Command::Quit));
    assert_eq!(Command::Quit.request(), None);

    // The selected worker disappears: the selection stays at its place.
    let snap = Snapshot::from_data(
        status(7, 2.0, (0, 0), 0, false),
        &json!({"workers": [
            worker("bravo", 12, 3, 0, 0, 0, 0.0, 1),
            worker("charlie", 13, 1, 0, 0, 0, 0.0, 1),
            worker("delta", 14, 2, 0, 0, 0, 0.0, 1),
        ]}),
        &json!({"stats": []}),
        &json!({"events": []}),
    )
    .unwrap();
    snapshot_at(&mut m, snap, 2.0);
    assert_eq!(names(&m), ["bravo", "charlie", "delta"]);
    assert_eq!((m.selected(), m.selected_index()), (Some("delta"), Some(2)));
}

#[test]
fn no_selection_without_workers() {
    let mut m = Model::new("s");
    m.handle(Input::Down);
    assert_eq!(m.selected(), None);
    assert_eq!(m.handle(Input::Drain), None);
    assert!(m.message().unwrap().error);
}

#[test]
fn keys_map_to_inputs() {
    let key = |code, modifiers| KeyEvent::new(code, modifiers);
    let none = KeyModifiers::NONE;
    for (code, input) in [
        (KeyCode::Char('q'), Input::Quit),
        (KeyCode::Esc, Input::Quit),
        (KeyCode::Char('s'), Input::NextSort),
        (KeyCode::Up, Input::Up),
        (KeyCode::Char('k'), Input::Up),
        (KeyCode::Down, Input::Down),
        (KeyCode::Char('j'), Input::Down),
        (KeyCode::Char('d'), Input::Drain),
        (KeyCode::Char('r'), Input::Restart),
    ] {
        assert_eq!(input_for_key(&key(code, none)), Some(input), "{code:?}");
    }
    assert_eq!(
        input_for_key(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Some(Input::Quit)
    );
    assert_eq!(input_for_key(&key(KeyCode::Char('c'), none)), None);
    assert_eq!(input_for_key(&key(KeyCode::Char('x'), none)), None);
    let mut release = key(KeyCode::Char('q'), none);
    release.kind = KeyEventKind::Release;
    assert_eq!(input_for_key(&release), None);
}

// ---------------------------------------------------------------------------------------------
// One frame.

fn frame_text(model: &Model, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    term.draw(|f| view::render(f, model)).expect("draw");
    let buf = term.backend().buffer();
    let mut out = String::new();
    for y in 0..h {
        let line: String = (0..w).map(|x| buf[(x, y)].symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[test]
fn snapshot_of_one_frame() {
    let mut m = polled_model();
    m.handle(Input::Down);
    m.update(Update::Action {
        verb: "restart",
        name: "idle".into(),
        result: Ok(()),
    });
    let text = frame_text(&m, 120, 30);
    let lines: Vec<&str> = text.lines().collect();

    // What the frame must show, whatever the stored snapshot says.
    assert!(
        lines[0].contains("amp top  ampd pid 4242 · up 1m02s · 4 workers"),
        "{text}"
    );
    assert!(
        lines[1].contains("connected to /run/user/1000/amp/ampd.sock"),
        "{text}"
    );
    let header = lines
        .iter()
        .find(|l| l.contains("NAME▲"))
        .expect("table header");
    for col in [
        "STATE", "PID", "RESTARTS", "IN-FL", "TASKS/S", "P99 ms", "CPU%", "RSS MiB",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let cells = |name: &str| -> Vec<&str> {
        lines
            .iter()
            .find(|l| l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("no row for {name}\n{text}"))
            .split(|c: char| c.is_whitespace() || c == '│')
            .filter(|s| !s.is_empty())
            .collect()
    };
    assert_eq!(
        cells("echo")[..9],
        ["echo", "ready", "25047", "0", "0", "20.0", "0.200", "25.0", "3.6"]
    );
    // Selected (second row by name).
    assert_eq!(
        cells("idle")[..10],
        [">", "idle", "ready", "25052", "0", "0", "0.0", "-", "0.0", "1.6"]
    );
    assert_eq!(
        cells("sleep#1"),
        [
            "sleep#1", "ready", "25160", "1", "1", "3.0", "33.000", "-", "3.7", "killed", "by",
            "SIGKILL"
        ]
    );
    let queue = lines
        .iter()
        .find(|l| l.contains("│sleep "))
        .expect("sleep queue line");
    assert!(
        queue.contains("least_loaded      9     3     0         40  interactive=2 batch=7"),
        "{queue}"
    );
    assert!(
        queue.contains("7.0/s") && queue.contains("33.000ms"),
        "{queue}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("62.072s #12    sleep#1      started          pid 25160")),
        "{text}"
    );
    // The adaptive panel: modes in the title, newest decision first.
    let title = lines
        .iter()
        .position(|l| l.contains("┌ adaptive"))
        .expect("adaptive panel");
    assert!(
        lines[title].contains("1 proposed: ampctl tune apply ID — echo: off, sleep: advise"),
        "{text}"
    );
    let decision_ids: Vec<&str> = lines[title + 1..title + 5]
        .iter()
        .map(|l| l.trim_start_matches('│').split_whitespace().next().unwrap())
        .collect();
    assert_eq!(decision_ids, ["#4", "#3", "#2", "#1"], "{text}");
    assert!(
        lines[title + 3].contains("#2     30.2s proposed    sleep: batch 32→16 ")
            && lines[title + 3].contains("p99 above target · batch 32→16, p99_ms 120"),
        "{text}"
    );
    assert!(
        lines[title + 1].contains("sleep: replicas 2→3")
            && lines[title + 1].ends_with("queue_dep…│"),
        "cut to the width: {text}"
    );
    assert!(
        lines[29].contains("restart idle: accepted by ampd"),
        "{text}"
    );
    assert!(lines[29].contains("q quit"), "{text}");

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/top.txt");
    if std::env::var_os("AMP_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (AMP_UPDATE_SNAPSHOTS=1 writes it)\n{text}",
            path.display()
        )
    });
    assert!(
        text == expected,
        "the frame differs from {} (AMP_UPDATE_SNAPSHOTS=1 rewrites it after an intended change)\n--- got:\n{text}--- expected:\n{expected}",
        path.display()
    );
}

#[test]
fn unreachable_frame_says_so() {
    let mut m = polled_model();
    m.update(Update::Down {
        error: "cannot reach ampd at /x.sock: Connection refused".into(),
        at: Duration::from_millis(4500),
    });
    let text = frame_text(&m, 120, 30);
    let line = text.lines().nth(1).unwrap();
    assert!(
        line.contains("ampd unreachable, retrying every 0.5s (figures below are 2.5s old): cannot reach ampd at /x.sock"),
        "{text}"
    );
    // The last figures stay.
    assert!(text.contains("25047"), "{text}");
    // A tiny terminal does not panic.
    let small = frame_text(&m, 20, 5);
    assert_eq!(small.lines().count(), 5);
}

/// The cell at the first occurrence of `needle` on the screen (by characters).
fn cell_at<'b>(
    buf: &'b ratatui::buffer::Buffer,
    text: &str,
    needle: &str,
) -> &'b ratatui::buffer::Cell {
    let (y, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not on screen:\n{text}"));
    let x = line[..line.find(needle).unwrap()].chars().count();
    &buf[(u16::try_from(x).unwrap(), u16::try_from(y).unwrap())]
}

#[test]
fn a_proposed_decision_stands_out_with_its_id() {
    let mut m = Model::new("s");
    let d = |id: u64, state: &str| {
        decision(
            id,
            2.5 * id as f64,
            "sleep",
            json!({"type": "kind"}),
            json!({"type": "batch", "from": 32, "to": 16}),
            state,
        )
    };
    snapshot_at(
        &mut m,
        bare_poll(7, Ok(tune_with(vec![d(41, "applied"), d(42, "proposed")]))),
        0.0,
    );
    let mut term = Terminal::new(TestBackend::new(100, 20)).unwrap();
    term.draw(|f| view::render(f, &m)).unwrap();
    let buf = term.backend().buffer().clone();
    let text = frame_text(&m, 100, 20);
    assert!(
        text.contains("┌ adaptive · 1 proposed: ampctl tune apply ID — k: auto "),
        "{text}"
    );
    let proposed = text
        .lines()
        .find(|l| l.contains("#42"))
        .unwrap_or_else(|| panic!("no #42\n{text}"));
    assert!(
        proposed.contains("#42    105.0s proposed    sleep: batch 32→16  rule fired"),
        "{text}"
    );
    // Newest first.
    assert!(
        text.find("#42").unwrap() < text.find("#41").unwrap(),
        "{text}"
    );
    let state = cell_at(&buf, &text, "proposed ");
    assert_eq!(state.fg, Color::Yellow);
    assert!(
        state.modifier.contains(Modifier::REVERSED | Modifier::BOLD),
        "{state:?}"
    );
    assert_eq!(cell_at(&buf, &text, "#42").fg, Color::Yellow);
    let applied = cell_at(&buf, &text, "applied ");
    assert_eq!(applied.fg, Color::Green);
    assert!(!applied.modifier.contains(Modifier::REVERSED));

    // Applied since: nothing waits any more.
    snapshot_at(
        &mut m,
        bare_poll(7, Ok(tune_with(vec![d(42, "applied")]))),
        1.0,
    );
    let text = frame_text(&m, 100, 20);
    assert!(!text.contains("proposed"), "{text}");
    assert!(text.contains("┌ adaptive — k: auto "), "{text}");
}

#[test]
fn an_unavailable_controller_is_said_so() {
    let mut m = Model::new("s");
    let refused = "ampd refused `tune`: bad request: unknown variant `tune`";
    snapshot_at(&mut m, bare_poll(7, Err(refused.into())), 0.0);
    let text = frame_text(&m, 120, 20);
    assert!(
        text.contains(&format!("│adaptive controller: unavailable ({refused})")),
        "{text}"
    );
    // The rest of the poll stands.
    assert!(text.contains("connected to s"), "{text}");
    assert!(text.contains("ampd pid 7"), "{text}");

    // Before any poll it waits; with no decisions it says so.
    let text = frame_text(&Model::new("s"), 120, 20);
    assert!(text.contains("│(waiting for ampd)"), "{text}");
    snapshot_at(
        &mut m,
        bare_poll(7, Ok(json!({"kinds": {}, "decisions": []}))),
        1.0,
    );
    let text = frame_text(&m, 120, 20);
    assert!(text.contains("┌ adaptive — no kinds "), "{text}");
    assert!(text.contains("│(no decisions yet)"), "{text}");
}

#[test]
fn the_adaptive_panel_shrinks_then_hides_on_short_terminals() {
    let m = polled_model();
    let decision_lines = |text: &str| {
        text.lines()
            .filter(|l| l.contains("s applied") || l.contains("s proposed"))
            .count()
    };
    let events_lines = |text: &str| text.lines().filter(|l| l.contains("s #")).count();
    // Room for everything: four decisions, and the events get the rest.
    let tall = frame_text(&m, 120, 40);
    assert_eq!(decision_lines(&tall), 4, "{tall}");
    assert_eq!(events_lines(&tall), 13, "{tall}");
    // Less room: the panel shrinks, the events keep three lines (one inside the border).
    let short = frame_text(&m, 120, 22);
    assert_eq!(decision_lines(&short), 2, "{short}");
    assert!(short.contains("#4 "), "the newest stays: {short}");
    assert_eq!(events_lines(&short), 1, "{short}");
    // Too little: the panel goes, nothing else moves.
    let tiny = frame_text(&m, 120, 19);
    assert!(!tiny.contains("adaptive"), "{tiny}");
    assert!(tiny.contains("┌ events"), "{tiny}");
    assert_eq!(tiny.lines().count(), 19);
    assert!(tiny.lines().last().unwrap().contains("q quit"), "{tiny}");
}

// ---------------------------------------------------------------------------------------------
// The real thing in tmux.

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("amp-tui-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Self(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An ampd on a private socket; killed on drop if still running.
struct Ampd {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Ampd {
    fn start(dir: &Path, workers: &str) -> Self {
        let socket = dir.join("ampd.sock");
        let config = dir.join("amp.toml");
        std::fs::write(
            &config,
            format!(
                "[supervisor]\ncontrol_socket = {:?}\nshm_prefix = \"amptui{}\"\n\n{workers}",
                socket.display().to_string(),
                std::process::id()
            ),
        )
        .expect("write config");
        let log = dir.join("ampd.log");
        let child = Process::new(env!("CARGO_BIN_EXE_ampd"))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn ampd");
        let me = Self { child, socket, log };
        me.wait("the control socket", || {
            std::os::unix::net::UnixStream::connect(&me.socket).is_ok()
        });
        me
    }

    fn request(&self, req: Value) -> Option<Value> {
        client::request(&self.socket, req, Duration::from_secs(5))
            .ok()
            .filter(|r| r.ok)
            .and_then(|r| r.data)
    }

    fn pid_of(&self, worker: &str) -> Option<u64> {
        let st = self.request(json!({"cmd": "status"}))?;
        st["workers"]
            .as_array()?
            .iter()
            .find(|w| w["name"] == worker && w["state"] == "ready")?["pid"]
            .as_u64()
    }

    fn wait(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "timed out waiting for {what}; ampd log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Ampd {
    fn wait_exit(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "ampd did not exit after `shutdown`; its log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for Ampd {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A private tmux server (`-L`), killed on drop.
struct Tmux {
    name: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> std::process::Output {
        Process::new("tmux")
            .args(["-L", &self.name, "-f", "/dev/null"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    fn wait_screen(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while Instant::now() < deadline {
            last = self.screen();
            if cond(&last) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}; the pane shows:\n{last}");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn ampctl_top_in_tmux() {
    if !Process::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipping ampctl_top_in_tmux: tmux is not installed");
        return;
    }
    let scratch = Scratch::new("tmux");
    let mut ampd = Ampd::start(
        &scratch.0,
        "[workers.alpha]\ncommand = \"sleep\"\nargs = [\"3600\"]\nipc = false\n\n\
         [workers.beta]\ncommand = \"sleep\"\nargs = [\"3600\"]\nipc = false\n",
    );
    ampd.wait("alpha and beta ready", || {
        ampd.pid_of("alpha").is_some() && ampd.pid_of("beta").is_some()
    });
    let alpha_pid = ampd.pid_of("alpha");

    let tmux = Tmux {
        name: format!("amp-tui-{}", std::process::id()),
    };
    // The shell records ampctl's exit status in a file: tmux's own report of a dead pane's status
    // can lag behind the pane's death arbitrarily on a loaded machine.
    let status_file = scratch.0.join("top.status");
    let cmd = format!(
        "'{}' --socket '{}' top; echo \"exit=$?\" > '{}'",
        env!("CARGO_BIN_EXE_ampctl"),
        ampd.socket.display(),
        status_file.display()
    );
    let out = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "120",
        "-y",
        "30",
        &cmd,
        ";",
        "set-option",
        "-g",
        "remain-on-exit",
        "on",
    ]);
    assert!(
        out.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let screen = tmux.wait_screen("both workers on screen", |s| {
        s.contains("alpha") && s.contains("beta") && s.contains("connected to")
    });
    assert!(screen.contains("amp top  ampd pid"), "{screen}");
    assert!(screen.contains(&alpha_pid.unwrap().to_string()), "{screen}");
    // This ampd answers `tune show` (no kinds: its workers take no tasks).
    tmux.wait_screen("the adaptive panel", |s| {
        s.contains("┌ adaptive — no kinds") && s.contains("(no decisions yet)")
    });

    // `r` restarts the selected worker (alpha: the first by name).
    tmux.run(&["send-keys", "-t", "top", "r"]);
    tmux.wait_screen("the restart's answer", |s| {
        s.contains("restart alpha: accepted by ampd")
    });
    ampd.wait("alpha restarted with a new pid", || {
        ampd.pid_of("alpha").is_some_and(|p| Some(p) != alpha_pid)
    });
    // `j` then `d` drains beta.
    tmux.run(&["send-keys", "-t", "top", "j", "d"]);
    tmux.wait_screen("beta drained", |s| {
        s.contains("drain beta: accepted by ampd") && s.contains("stopped")
    });

    // ampd goes away: top says so and keeps going.
    let _ = ampd.request(json!({"cmd": "shutdown"}));
    ampd.wait_exit();
    tmux.wait_screen("the unreachable notice", |s| {
        s.contains("ampd unreachable, retrying")
    });

    tmux.run(&["send-keys", "-t", "top", "q"]);
    // Generous: on a loaded 2-core machine the exit can take a while; the loop ends as soon as
    // the shell has written the status.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = String::new();
    while Instant::now() < deadline {
        status = std::fs::read_to_string(&status_file).unwrap_or_default();
        if status.ends_with('\n') {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        status.trim(),
        "exit=0",
        "ampctl top should have exited with status 0 after `q`"
    );
    // The alternate screen was left: the pane no longer shows the view.
    let after = tmux.screen();
    assert!(
        !after.contains("amp top"),
        "terminal not restored:\n{after}"
    );
}
