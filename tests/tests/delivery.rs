//! End-to-end task delivery semantics through a real ampd and real workers: priority classes
//! (deficit round-robin under a batch flood and under an interactive flood), retries with
//! backoff up to `max_attempts` and the dead-letter queue, poison tasks, deadlines before
//! dispatch and run timeouts (`fail` and `kill-and-requeue`), backpressure at `queue_limit`,
//! runtime routing-policy switches under load, and `ampctl submit` / `ampctl dlq list`.
//!
//! Every wait has a deadline; synchronisation is by results or by polling `status`.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use amp_ipc::client::{Client, ClientError, ResultStatus, Submit, TaskResult, Ticket};
use amp_supervisor::control::proto::StatusData;
use amp_tests::{worker, Ampd};

const T: Duration = Duration::from_secs(20);

/// Waits for `n` results and returns them in the order they were read.
///
/// Results that arrive together in one read of the ring are handed out in no particular
/// order, so an arrival position is exact up to the few results ampd published at once.
fn collect(c: &mut Client, d: &Ampd, n: usize, within: Duration) -> Vec<TaskResult> {
    let deadline = Instant::now() + within;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.wait_result(left.max(Duration::from_millis(1))) {
            Ok(r) => out.push(r),
            Err(e) => panic!(
                "only {} of {n} results within {within:?} ({e})\nlog tail:\n{}",
                out.len(),
                tail(d)
            ),
        }
    }
    out
}

/// The last 30 lines of ampd's log.
fn tail(d: &Ampd) -> String {
    let log = d.log_text();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Sends a control request that must succeed; returns its data.
fn ok(d: &Ampd, req: serde_json::Value) -> serde_json::Value {
    let r = d.request(req.clone()).expect("control request");
    assert!(r.ok, "{req} failed: {:?}", r.error);
    r.data.unwrap_or_default()
}

/// The dead-letter queue's entries.
fn dlq(d: &Ampd) -> Vec<serde_json::Value> {
    ok(d, serde_json::json!({"cmd": "dlq_list"}))["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Runs `ampctl --socket SOCK ARGS…` to completion.
fn ampctl(d: &Ampd, args: &[&str]) -> Output {
    Command::new(amp_tests::bin("ampctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .env_remove("AMP_SOCKET")
        .stdin(Stdio::null())
        .output()
        .expect("run ampctl")
}

/// Sum of the restarts of every unit whose name starts with `prefix`.
fn restarts(s: &StatusData, prefix: &str) -> u32 {
    s.workers
        .iter()
        .filter(|w| w.name.starts_with(prefix))
        .map(|w| w.restarts)
        .sum()
}

/// Whether nothing is queued, running or waiting for a retry.
fn idle(s: &StatusData) -> bool {
    s.tasks.queued == 0 && s.tasks.in_flight == 0 && s.tasks.waiting_retry == 0
}

/// Submission options for kind `sleep` in `class`.
fn in_class(class: &'static str) -> Submit<'static> {
    Submit {
        kind: "sleep",
        class: Some(class),
        ..Submit::default()
    }
}

const ONE_SLEEPER: &str = r#"
[workers.sleep]
command = "amp-sleep"
kinds = ["sleep"]
concurrency = 1
"#;

/// DRR under a batch flood: 10 interactive tasks submitted behind 200 queued batch tasks are all
/// done after a handful of batch completions, not after the whole flood (FIFO).
#[test]
fn interactive_overtakes_a_batch_flood() {
    let mut d = Ampd::start("", ONE_SLEEPER);
    d.wait_ready(&["sleep"], T);
    let mut c = Client::connect(&d.socket).expect("attach");
    assert_eq!(c.classes(), ["interactive", "batch"]);
    let mut class_of: HashMap<Ticket, (&str, usize)> = HashMap::new();
    for i in 0..200 {
        let t = c
            .push(&in_class("batch"), format!("2 b{i}").as_bytes())
            .unwrap();
        class_of.insert(t, ("batch", i));
    }
    c.flush().unwrap();
    // Make sure the flood is queued in ampd before the interactive tasks arrive.
    let before = d.wait_for("the batch flood queued", T, |s| {
        s.tasks.queued + s.tasks.in_flight + s.tasks.done == 200
    });
    let done_before = before.tasks.done;
    for i in 0..10 {
        let t = c
            .push(&in_class("interactive"), format!("2 i{i}").as_bytes())
            .unwrap();
        class_of.insert(t, ("interactive", i));
    }
    c.flush().unwrap();
    let results = collect(&mut c, &d, 210, T);
    let mut batch_seen = 0usize;
    let mut interactive_seen = Vec::new();
    let mut batch_done_at_last_interactive = None;
    for r in &results {
        assert_eq!(r.status, ResultStatus::Ok, "{}", r.text());
        let (class, i) = class_of[&r.ticket];
        assert_eq!(
            r.text(),
            format!("2 {}{i}", &class[..1]),
            "ticket {} got another task's result",
            r.ticket
        );
        if class == "batch" {
            batch_seen += 1;
        } else {
            interactive_seen.push(i);
            if interactive_seen.len() == 10 {
                batch_done_at_last_interactive = Some(batch_seen);
            }
        }
    }
    let batch_done = batch_done_at_last_interactive.expect("all 10 interactive results");
    // Batch tasks completed after the interactive ones were queued, before the last of them.
    let overtaken_by = batch_done.saturating_sub(usize::try_from(done_before).unwrap());
    eprintln!("interactive flood-overtake: {done_before} batch done before, last interactive after {batch_done} batch");
    assert!(
        overtaken_by < 40,
        "interactive tasks waited for {overtaken_by} batch completions (FIFO would be ~{}): DRR does not favour interactive",
        200 - done_before
    );
    // FIFO within a class (up to results read together, which come out in no particular order).
    assert!(
        interactive_seen.windows(2).filter(|w| w[0] > w[1]).count() <= 2,
        "{interactive_seen:?}"
    );
    drop(c);
    let _ = d.shutdown(T);
}

/// DRR under an interactive flood: batch keeps about 1/9 of the dispatch slots instead of
/// starving behind 300 interactive tasks.
#[test]
fn batch_is_not_starved_by_an_interactive_flood() {
    let mut d = Ampd::start("", ONE_SLEEPER);
    d.wait_ready(&["sleep"], T);
    let mut c = Client::connect(&d.socket).expect("attach");
    let mut batch = HashSet::new();
    // A first task keeps the worker busy while the rest is queued.
    let first = c.submit_with(&in_class("interactive"), b"50").unwrap();
    d.wait_for("the first task in flight", T, |s| s.tasks.in_flight == 1);
    for i in 0..30 {
        batch.insert(
            c.push(&in_class("batch"), format!("1 b{i}").as_bytes())
                .unwrap(),
        );
    }
    for i in 0..300 {
        c.push(&in_class("interactive"), format!("1 i{i}").as_bytes())
            .unwrap();
    }
    c.flush().unwrap();
    let results = collect(&mut c, &d, 331, T);
    assert!(
        results.iter().all(|r| r.status == ResultStatus::Ok),
        "a task failed"
    );
    let order: Vec<bool> = results
        .iter()
        .filter(|r| r.ticket != first)
        .map(|r| batch.contains(&r.ticket))
        .collect();
    let batch_in_first_99 = order[..99].iter().filter(|b| **b).count();
    let last_batch = order.iter().rposition(|b| *b).unwrap();
    eprintln!("interactive flood: {batch_in_first_99} batch in the first 99 completions, last batch at {last_batch}");
    assert!(
        batch_in_first_99 >= 6,
        "batch got {batch_in_first_99} of the first 99 slots (share 1/9 ≈ 11): starved"
    );
    // Strict priority would finish batch last (position 329); DRR finishes it after ~30 rounds of 9.
    assert!(
        last_batch < 310,
        "the last batch task completed at position {last_batch} of 330"
    );
    drop(c);
    let _ = d.shutdown(T);
}

const FLAKY: &str = r#"
[workers.flaky]
command = "amp-flaky"
kinds = ["flaky"]
[kinds.flaky]
max_attempts = 3
"#;

/// One amp-flaky worker serving kind `flaky` with a window of `concurrency` tasks, and the
/// kind's settings `kind` (TOML lines).
fn flaky(concurrency: u32, kind: &str) -> String {
    format!(
        r#"
[workers.flaky]
command = "amp-flaky"
kinds = ["flaky"]
concurrency = {concurrency}
[kinds.flaky]
{kind}
"#
    )
}

/// A retryable error is retried with backoff up to `max_attempts`, then dead-lettered with the
/// last error; the DLQ lists it, a DLQ retry runs it again (and it lands there again), a purge
/// removes it. A non-retryable error fails at once. The worker has a window of one, so the
/// task after all that runs only if every attempt, the re-run's too, freed its place.
#[test]
fn retries_then_dead_letter_then_dlq_retry_and_purge() {
    let mut d = Ampd::start("", &flaky(1, "max_attempts = 3"));
    d.wait_ready(&["flaky"], T);
    let mut c = Client::connect(&d.socket).expect("attach");

    // Non-retryable: failed at once, no retry.
    let t = c.submit("flaky", b"fail").unwrap();
    let r = c.wait_for(t, T).unwrap();
    assert_eq!(r.status, ResultStatus::Failed, "{}", r.text());
    assert!(r.text().contains("failed as asked"), "{}", r.text());
    assert_eq!(d.status().tasks.retried, 0);

    // Retryable: 3 attempts, then the DLQ.
    let started = Instant::now();
    let t = c.submit("flaky", b"retry").unwrap();
    let r = c.wait_for(t, T).unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, ResultStatus::DeadLettered, "{}", r.text());
    let reason = r.text();
    assert!(
        reason.contains("transient failure as asked"),
        "reason lacks the last error: {reason}"
    );
    assert!(
        reason.contains("3 attempts") && reason.contains("max_attempts = 3"),
        "{reason}"
    );
    // Two backoffs of at most 100 ms and 200 ms (full jitter).
    assert!(
        took < Duration::from_secs(3),
        "three attempts took {took:?}"
    );
    let s = d.wait_for("the dead letter counted", T, |s| s.tasks.dead_lettered == 1);
    assert_eq!(s.tasks.retried, 2, "{:?}", s.tasks);
    assert!(idle(&s), "{:?}", s.tasks);
    assert!(
        s.events
            .iter()
            .any(|e| e.kind == "dead_lettered" && e.detail.contains("transient failure")),
        "no dead_lettered event"
    );
    let list = dlq(&d);
    assert_eq!(list.len(), 1, "{list:?}");
    let entry = &list[0];
    assert_eq!(entry["id"], r.task_id, "{entry}");
    assert_eq!(entry["kind"], "flaky", "{entry}");
    assert_eq!(entry["attempts"], 3, "{entry}");
    assert_eq!(entry["payload_len"], 5, "{entry}");
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .contains("transient failure as asked"),
        "{entry}"
    );

    // A re-run: three more attempts, back in the DLQ; the submitter got its one answer already.
    let unknown = d
        .request(serde_json::json!({"cmd": "dlq_retry", "id": 999_999}))
        .unwrap();
    assert!(
        !unknown.ok && unknown.error.as_deref().unwrap_or("").contains("999999"),
        "{unknown:?}"
    );
    let re = ok(&d, serde_json::json!({"cmd": "dlq_retry", "id": r.task_id}));
    assert_eq!(re["requeued"], 1, "{re}");
    let s = d.wait_for("the re-run dead-lettered again", T, |s| {
        s.tasks.retried >= 4 && s.tasks.dead_lettered == 1 && idle(s)
    });
    assert_eq!(s.tasks.retried, 4, "{:?}", s.tasks);
    let list = dlq(&d);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        (&list[0]["id"], &list[0]["attempts"]),
        (&serde_json::json!(r.task_id), &serde_json::json!(3)),
        "{list:?}"
    );
    assert!(
        c.wait_result(Duration::from_millis(200)).is_err(),
        "a dead-letter re-run answered the submitter a second time"
    );

    // Purge: gone.
    let p = ok(&d, serde_json::json!({"cmd": "dlq_purge", "id": r.task_id}));
    assert_eq!(p["purged"], serde_json::json!([r.task_id]), "{p}");
    assert!(dlq(&d).is_empty());
    let s = d.status();
    assert_eq!(s.tasks.dead_lettered, 0, "{:?}", s.tasks);
    assert_eq!(s.tasks.done, 2, "{:?}", s.tasks);
    let t = c.submit("flaky", b"ok").unwrap();
    assert_eq!(c.wait_for(t, T).unwrap().status, ResultStatus::Ok);
    drop(c);
    let _ = d.shutdown(T);
}

/// A task that kills every worker it reaches is dead-lettered as poison after 3 worker deaths,
/// while other tasks keep being served.
#[test]
fn poison_task_is_dead_lettered_after_three_worker_deaths() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.flaky]
command = "amp-flaky"
kinds = ["flaky"]
replicas = 2
concurrency = 1
restart = "always"
backoff = { initial = "10ms", max = "20ms", jitter = 0.0 }
intensity = { max_restarts = 100, window = "1m" }
"#,
    );
    d.wait_ready(&["flaky#0", "flaky#1"], T);
    let mut c = Client::connect(&d.socket).expect("attach");
    let poison = c.submit("flaky", b"crash").unwrap();
    let mut oks = Vec::new();
    for i in 0..20 {
        oks.push((
            c.submit("flaky", format!("sleep:5 {i}").as_bytes())
                .unwrap(),
            i,
        ));
    }
    let r = c.wait_for(poison, T).unwrap();
    assert_eq!(r.status, ResultStatus::DeadLettered, "{}", r.text());
    assert!(
        r.text().contains("poison") && r.text().contains("3 worker deaths"),
        "{}",
        r.text()
    );
    for (t, i) in oks {
        let r = c.wait_for(t, T).unwrap();
        assert_eq!(
            (r.status, r.text()),
            (ResultStatus::Ok, format!("sleep:5 {i}"))
        );
    }
    let s = d.wait_for("3 restarts", T, |s| restarts(s, "flaky") >= 3);
    assert_eq!(restarts(&s, "flaky"), 3, "{:?}", s.workers);
    // Served after the poison too.
    d.wait_ready(&["flaky#0", "flaky#1"], T);
    let t = c.submit("flaky", b"ok").unwrap();
    let r = c.wait_for(t, T).unwrap();
    assert_eq!((r.status, r.text()), (ResultStatus::Ok, "ok".to_owned()));
    let list = dlq(&d);
    assert_eq!(list.len(), 1, "{list:?}");
    assert!(
        list[0]["reason"].as_str().unwrap().contains("poison"),
        "{list:?}"
    );
    drop(c);
    let _ = d.shutdown(T);
}

/// Tasks that were only waiting in the ring of a worker a poison task crashed are not blamed:
/// the worker's control block says which task it was running. With 30 tasks queued behind the
/// poison on one worker (window 64), the old rule (every task in flight counts the death) would
/// dead-letter all 31 after three crashes.
#[test]
fn tasks_waiting_behind_a_poison_task_are_not_blamed() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.flaky]
command = "amp-flaky"
kinds = ["flaky"]
concurrency = 64
restart = "always"
backoff = { initial = "10ms", max = "20ms", jitter = 0.0 }
intensity = { max_restarts = 100, window = "1m" }
"#,
    );
    d.wait_ready(&["flaky"], T);
    let mut c = Client::connect(&d.socket).expect("attach");
    let opts = Submit {
        kind: "flaky",
        ..Submit::default()
    };
    let poison = c.push(&opts, b"crash").unwrap();
    let waiting: Vec<_> = (0..30)
        .map(|i| (c.push(&opts, format!("sleep:1 {i}").as_bytes()).unwrap(), i))
        .collect();
    c.flush().unwrap();
    let r = c.wait_for(poison, T).unwrap();
    assert_eq!(r.status, ResultStatus::DeadLettered, "{}", r.text());
    for (t, i) in waiting {
        let r = c.wait_for(t, T).unwrap();
        assert_eq!(
            (r.status, r.text()),
            (ResultStatus::Ok, format!("sleep:1 {i}"))
        );
    }
    assert_eq!(dlq(&d).len(), 1);
    drop(c);
    let _ = d.shutdown(T);
}

/// A task whose deadline passes while it waits behind a busy worker ends DeadlineExceeded
/// (checked when it is taken for dispatch) and never runs.
#[test]
fn deadline_passes_before_dispatch() {
    let mut d = Ampd::start("", ONE_SLEEPER);
    d.wait_ready(&["sleep"], T);
    let mut c = Client::connect(&d.socket).expect("attach");
    let busy = c.submit("sleep", b"500").unwrap();
    d.wait_for("the busy task in flight", T, |s| s.tasks.in_flight == 1);
    let late = c
        .submit_with(
            &Submit {
                kind: "sleep",
                timeout: Some(Duration::from_millis(50)),
                ..Submit::default()
            },
            b"1",
        )
        .unwrap();
    let r = c.wait_for(late, T).unwrap();
    assert_eq!(r.status, ResultStatus::DeadlineExceeded, "{}", r.text());
    let r = c.wait_for(busy, T).unwrap();
    assert_eq!(r.status, ResultStatus::Ok);
    let s = d.wait_for("idle", T, idle);
    // The worker completed only the busy task: the expired one never reached it.
    let g = ok(&d, serde_json::json!({"cmd": "route_get", "kind": "sleep"}));
    assert_eq!(g["sleep"]["workers"][0]["completed"], 1, "{g}");
    assert_eq!(s.tasks.done, 2);
    drop(c);
    let _ = d.shutdown(T);
}

/// `on_timeout = "fail"`: a task running past its kind's timeout is answered Failed (timed
/// out) at the timeout; its late completion is dropped, not delivered a second time, and frees
/// the worker's place (a window of one: the next task runs only if it does).
#[test]
fn run_timeout_fail_answers_once_and_drops_the_late_completion() {
    let mut d = Ampd::start("", &flaky(1, "timeout = \"200ms\"\non_timeout = \"fail\""));
    d.wait_ready(&["flaky"], T);
    let pid = worker(&d.status(), "flaky").unwrap().pid;
    let mut c = Client::connect(&d.socket).expect("attach");
    let started = Instant::now();
    let t = c.submit("flaky", b"sleep:700").unwrap();
    let r = c.wait_for(t, T).unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, ResultStatus::Failed, "{}", r.text());
    assert!(r.text().contains("timed out"), "{}", r.text());
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_secs(1),
        "timed out after {took:?}"
    );
    // The worker finishes at ~700 ms: its completion is dropped.
    let s = d.wait_for("the late completion dropped", T, |s| {
        s.tasks.late_dropped >= 1
    });
    assert_eq!(s.tasks.late_dropped, 1);
    assert!(
        c.wait_result(Duration::from_millis(200)).is_err(),
        "a second result for a timed-out task"
    );
    // The worker was not killed and serves again.
    let s = d.status();
    assert_eq!(worker(&s, "flaky").unwrap().pid, pid);
    assert_eq!(worker(&s, "flaky").unwrap().restarts, 0);
    let t = c.submit("flaky", b"ok").unwrap();
    assert_eq!(c.wait_for(t, T).unwrap().status, ResultStatus::Ok);
    drop(c);
    let _ = d.shutdown(T);
}

/// `on_timeout = "kill-and-requeue"`: the worker running a task past its timeout is killed and
/// the task requeued (at the head); the death counts toward the poison limit, so a task that
/// always hangs is dead-lettered as poison after 3 kills (lost-worker requeues are bounded by
/// `poison_deaths`, not by `max_attempts` — see `delivery::Delivery::worker_lost`).
#[test]
fn run_timeout_kill_and_requeue_kills_and_retries() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.flaky]
command = "amp-flaky"
kinds = ["flaky"]
restart = "always"
backoff = { initial = "10ms", max = "20ms", jitter = 0.0 }
intensity = { max_restarts = 100, window = "1m" }
[kinds.flaky]
timeout = "200ms"
on_timeout = "kill-and-requeue"
max_attempts = 2
"#,
    );
    d.wait_ready(&["flaky"], T);
    let mut c = Client::connect(&d.socket).expect("attach");
    let started = Instant::now();
    let t = c.submit("flaky", b"hang").unwrap();
    // First kill: the worker restarts and the task runs again.
    let s = d.wait_for("the worker killed once", T, |s| {
        worker(s, "flaky").is_some_and(|w| w.restarts >= 1)
    });
    assert!(
        worker(&s, "flaky")
            .unwrap()
            .last_exit
            .as_deref()
            .unwrap_or("")
            .contains("SIGKILL"),
        "{:?}",
        s.workers
    );
    let r = c.wait_for(t, T).unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, ResultStatus::DeadLettered, "{}", r.text());
    assert!(r.text().contains("poison"), "{}", r.text());
    assert!(
        took >= Duration::from_millis(580) && took < Duration::from_secs(5),
        "3 timeouts took {took:?}"
    );
    let s = d.wait_for("3 kills", T, |s| restarts(s, "flaky") >= 3);
    assert_eq!(restarts(&s, "flaky"), 3, "{:?}", s.workers);
    assert_eq!(
        s.tasks.retried, 0,
        "a kill is a requeue, not a retry: {:?}",
        s.tasks
    );
    // A task that finishes in time is served by the restarted worker.
    d.wait_ready(&["flaky"], T);
    let t = c.submit("flaky", b"sleep:10").unwrap();
    assert_eq!(c.wait_for(t, T).unwrap().status, ResultStatus::Ok);
    drop(c);
    let _ = d.shutdown(T);
}

/// Starts one slow worker behind `queue_limit = 5`, submits 20 tasks of 100 ms at once and
/// collects their results. Returns ampd (idle again) and the results.
fn flood_a_small_queue() -> (Ampd, Vec<TaskResult>) {
    let d = Ampd::start(
        "",
        r#"
[workers.sleep]
command = "amp-sleep"
kinds = ["sleep"]
concurrency = 1
[kinds.sleep]
queue_limit = 5
"#,
    );
    d.wait_ready(&["sleep"], T);
    let mut c = Client::connect(&d.socket).expect("attach");
    for i in 0..20 {
        c.push(
            &Submit {
                kind: "sleep",
                ..Submit::default()
            },
            format!("100 {i}").as_bytes(),
        )
        .unwrap();
    }
    c.flush().unwrap();
    let results = collect(&mut c, &d, 20, T);
    d.wait_for("idle", T, idle);
    (d, results)
}

/// `queue_limit`: submissions beyond it are Rejected at once with a message saying the queue is
/// full; the accepted ones run.
#[test]
fn queue_limit_rejects_beyond_the_limit() {
    let (mut d, results) = flood_a_small_queue();
    let rejected: Vec<&TaskResult> = results
        .iter()
        .filter(|r| r.status == ResultStatus::Rejected)
        .collect();
    let ok = results
        .iter()
        .filter(|r| r.status == ResultStatus::Ok)
        .count();
    assert_eq!(ok + rejected.len(), 20, "{results:?}");
    // At most 5 queued + 1 running are accepted (ampd may read all 20 before dispatching one).
    assert!(
        (14..=15).contains(&rejected.len()),
        "{} rejected",
        rejected.len()
    );
    for r in &rejected {
        assert!(
            r.text().contains("full") && r.text().contains("queue_limit"),
            "rejection does not say the queue is full: {}",
            r.text()
        );
        assert_eq!(r.task_id, 0, "a rejected submission got a task id");
    }
    let s = d.status();
    assert_eq!(s.tasks.done, ok as u64, "{:?}", s.tasks);
    let _ = d.shutdown(T);
}

/// Backpressure at the client: once a kind's queue is at its `queue_limit`, ampd flags it in the
/// client's segment, `submit` returns `QueueFull` at once (nothing is sent, nothing rejected),
/// `submit_blocking` gives up with `QueueFull` at a deadline shorter than a task, and waits for
/// room with a longer one; what it then submits runs.
#[test]
fn a_full_queue_makes_submit_return_queue_full_and_submit_blocking_wait() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.sleep]
command = "amp-sleep"
kinds = ["sleep"]
concurrency = 1
[kinds.sleep]
queue_limit = 3
"#,
    );
    d.wait_ready(&["sleep"], T);
    let mut c = Client::connect(&d.socket).expect("attach");
    assert!(!c.queue_full("sleep"));
    // One running for 1.5 s (the rest of the test happens while it runs), then three queued
    // (ampd takes in what it reads before it dispatches, so the first must be running before
    // the others arrive).
    let mut tickets = vec![c.submit("sleep", b"1500 0").unwrap()];
    d.wait_for("the first task running", T, |s| {
        amp_tests::queue(s, "sleep").in_flight == 1
    });
    for i in 1..4 {
        tickets.push(c.submit("sleep", format!("10 {i}").as_bytes()).unwrap());
    }
    let end = Instant::now() + T;
    while !c.queue_full("sleep") {
        assert!(
            Instant::now() < end,
            "the kind was never flagged full: {:?}",
            amp_tests::queue(&d.status(), "sleep")
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let e = c.submit("sleep", b"10 x").unwrap_err();
    assert!(
        matches!(&e, ClientError::QueueFull { kind } if kind == "sleep") && e.is_full(),
        "{e:?}"
    );
    assert!(e.to_string().contains("queue_limit"), "{e}");
    let opts = Submit {
        kind: "sleep",
        ..Submit::default()
    };
    let e = c
        .submit_blocking(&opts, b"10 y", Duration::from_millis(30))
        .unwrap_err();
    assert!(matches!(e, ClientError::QueueFull { .. }), "{e:?}");
    // Room appears when the first task ends and the next leaves the queue.
    let t = c
        .submit_blocking(&opts, b"10 z", Duration::from_secs(10))
        .expect("submit_blocking did not wait for room");
    tickets.push(t);
    let results = collect(&mut c, &d, tickets.len(), T);
    assert!(
        results.iter().all(|r| r.status == ResultStatus::Ok),
        "{results:?}"
    );
    let s = d.status();
    let q = amp_tests::queue(&s, "sleep");
    assert_eq!(
        q.rejected, 0,
        "a submission was sent only to be rejected: {q:?}"
    );
    let _ = d.shutdown(T);
}

/// `status` counts the submissions refused at `queue_limit` (`queues[].rejected`).
#[test]
fn status_counts_queue_limit_rejections() {
    let (mut d, results) = flood_a_small_queue();
    let rejected = results
        .iter()
        .filter(|r| r.status == ResultStatus::Rejected)
        .count();
    assert!(rejected > 0);
    let s = d.status();
    let q = amp_tests::queue(&s, "sleep");
    assert_eq!(q.rejected, rejected as u64, "status rejected count: {q:?}");
    let _ = d.shutdown(T);
}

/// A result's header reports the attempts the task took and its time inside ampd.
#[test]
fn result_reports_attempts_and_latency() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.flaky]
command = "amp-flaky"
kinds = ["flaky"]
[kinds.flaky]
max_attempts = 3
"#,
    );
    d.wait_ready(&["flaky"], T);
    let mut c = Client::connect(&d.socket).expect("attach");
    let t = c.submit("flaky", b"sleep:50").unwrap();
    let r = c.wait_for(t, T).unwrap();
    let t = c.submit("flaky", b"retry").unwrap();
    let r2 = c.wait_for(t, T).unwrap();
    assert_eq!(r.status, ResultStatus::Ok);
    assert_eq!(r.attempts, 1);
    assert!(
        r.latency >= Duration::from_millis(50),
        "latency {:?} of a 50 ms task",
        r.latency
    );
    assert_eq!(r2.status, ResultStatus::DeadLettered);
    assert_eq!(
        r2.attempts, 3,
        "a task dead-lettered after 3 attempts reports {} attempts",
        r2.attempts
    );
    drop(c);
    let _ = d.shutdown(T);
}

/// The routing policy is switched four times while 5000 tasks flow over 3 workers: nothing is
/// lost or duplicated, `route_get` reports the last policy, and every switch is an event.
#[test]
fn route_set_under_load_loses_nothing() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.sleep]
command = "amp-sleep"
kinds = ["sleep"]
replicas = 3
[kinds.sleep]
router = "round_robin"
"#,
    );
    d.wait_ready(&["sleep#0", "sleep#1", "sleep#2"], T);
    let g = ok(&d, serde_json::json!({"cmd": "route_get", "kind": "sleep"}));
    assert_eq!(g["sleep"]["stats"]["policy"], "round_robin", "{g}");
    let bad = d
        .request(serde_json::json!({"cmd": "route_set", "kind": "nope", "policy": "learned"}))
        .unwrap();
    assert!(
        !bad.ok && bad.error.as_deref().unwrap_or("").contains("sleep"),
        "{bad:?}"
    );
    let bad = d
        .request(serde_json::json!({"cmd": "route_set", "kind": "sleep", "policy": "fastest"}))
        .unwrap();
    assert!(
        !bad.ok && bad.error.as_deref().unwrap_or("").contains("fastest"),
        "{bad:?}"
    );

    let mut c = Client::connect(&d.socket).expect("attach");
    let n = 5000usize;
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
    let switches = [
        (1000, "peak_ewma"),
        (2000, "learned"),
        (3000, "least_loaded"),
    ];
    let mut next = 0;
    let mut pending_at_switch = Vec::new();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < n {
        if next < switches.len() && seen.len() >= switches[next].0 {
            let (_, policy) = switches[next];
            let r = ok(
                &d,
                serde_json::json!({"cmd": "route_set", "kind": "sleep", "policy": policy}),
            );
            assert_eq!(r["policy"], policy, "{r}");
            let s = d.status();
            pending_at_switch.push(s.tasks.queued + s.tasks.in_flight);
            next += 1;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let r = c
            .wait_result(left.max(Duration::from_millis(1)))
            .unwrap_or_else(|e| panic!("{} of {n} results: {e}\n{}", seen.len(), tail(&d)));
        assert!(
            seen.insert(r.ticket),
            "duplicate delivery of ticket {}",
            r.ticket
        );
        assert_eq!(r.status, ResultStatus::Ok, "{}", r.text());
        assert_eq!(
            r.body,
            payload_of[&r.ticket].as_bytes(),
            "wrong result for ticket {}",
            r.ticket
        );
    }
    assert_eq!(next, switches.len());
    eprintln!("route switches with {pending_at_switch:?} tasks pending");
    assert!(
        pending_at_switch[0] > 0,
        "the first switch happened with nothing pending: not under load"
    );
    assert!(
        c.wait_result(Duration::from_millis(300)).is_err(),
        "a result arrived after all were delivered"
    );
    let s = d.wait_for("idle", T, idle);
    assert_eq!(s.tasks.done, n as u64);
    assert_eq!(s.tasks.late_dropped, 0);
    let g = ok(&d, serde_json::json!({"cmd": "route_get", "kind": "sleep"}));
    assert_eq!(g["sleep"]["stats"]["policy"], "least_loaded", "{g}");
    let changes: Vec<&str> = s
        .events
        .iter()
        .filter(|e| e.kind == "policy_changed")
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(
        changes,
        [
            "kind sleep: round_robin -> peak_ewma",
            "kind sleep: peak_ewma -> learned",
            "kind sleep: learned -> least_loaded"
        ],
    );
    // Every worker got a share.
    let workers = &g["sleep"]["workers"];
    assert!(
        workers.as_array().is_some_and(|w| w.len() == 3),
        "{workers}"
    );
    drop(c);
    let _ = d.shutdown(T);
}

/// `ampctl submit` without `--wait` answers at once with a task id and "queued"; an unknown
/// kind fails with exit code 1 and lists the known kinds; `ampctl dlq list` prints a table.
#[test]
fn ampctl_submit_queued_unknown_kind_and_dlq_list() {
    let mut d = Ampd::start("", FLAKY);
    d.wait_ready(&["flaky"], T);
    let out = ampctl(
        &d,
        &[
            "--json",
            "submit",
            "--kind",
            "flaky",
            "--json",
            r#"{"a":1}"#,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["data"]["status"], "queued", "{v}");
    assert!(
        v["data"]["task_id"].as_u64().is_some_and(|id| id > 0),
        "{v}"
    );
    // Text form.
    let out = ampctl(&d, &["submit", "--kind", "flaky", "--json", r#""ok""#]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("task ") && text.trim_end().ends_with(" queued"),
        "{text}"
    );
    d.wait_for("both done", T, |s| s.tasks.done == 2);

    // Unknown kind.
    let out = ampctl(&d, &["submit", "--kind", "nope", "--json", "1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"nope\"") && err.contains("known kinds: flaky"),
        "{err}"
    );

    // Waiting on a task that fails: exit 1 with the status.
    let out = ampctl(
        &d,
        &["submit", "--kind", "flaky", "--json", r#""fail""#, "--wait"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("failed"),
        "{out:?}"
    );

    // DLQ list: empty table, then one entry.
    let out = ampctl(&d, &["dlq", "list"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let header = text.lines().next().unwrap_or("");
    assert!(
        ["TASK", "KIND", "ATTEMPTS", "REASON"]
            .iter()
            .all(|h| header.contains(h)),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
    let out = ampctl(
        &d,
        &[
            "--json",
            "submit",
            "--kind",
            "flaky",
            "--json",
            r#""retry""#,
            "--wait",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["data"]["status"], "dead_lettered", "{v}");
    let id = v["data"]["task_id"].as_u64().unwrap();
    let out = ampctl(&d, &["dlq", "list"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{text}");
    let cols: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(
        &cols[..3],
        [id.to_string().as_str(), "flaky", "3"],
        "{text}"
    );
    assert!(rows[0].contains("transient failure as asked"), "{text}");
    // Purge through ampctl.
    let out = ampctl(&d, &["dlq", "purge", &id.to_string()]);
    assert!(out.status.success(), "{out:?}");
    assert!(dlq(&d).is_empty());
    let _ = d.shutdown(T);
}

/// The fields of `/proc/<pid>/stat` after the command (the first is the state, field 3 in
/// man 5 proc); `None` once the process is gone.
fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit_once(") ")?
            .1
            .split(' ')
            .map(str::to_owned)
            .collect(),
    )
}

/// The state letter of process `pid` (R running, S sleeping, T stopped…).
fn proc_state(pid: u32) -> Option<char> {
    proc_stat(pid)?.first()?.chars().next()
}

/// CPU time (user + system) process `pid` has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let f = proc_stat(pid).expect("the process is alive");
    // utime and stime are fields 14 and 15 (man 5 proc), 11 and 12 after the state.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Sends `sig` to process `pid`, which must exist.
fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

/// A worker's tasks ring holds fewer tasks than its credit window allows (big payloads, small
/// ring): while the ring stays full (the worker is stopped), ampd waits for it instead of
/// retrying the write in a busy loop; once the worker runs again, every task completes once.
#[test]
fn a_full_tasks_ring_does_not_spin_ampd() {
    use nix::sys::signal::Signal;
    const N: usize = 40;
    let mut d = Ampd::start(
        "",
        r#"
[workers.echo]
command = "amp-echo"
kinds = ["echo"]
concurrency = 64
ring = { tasks = "16KiB", completions = "64KiB", max_record = "4KiB" }
"#,
    );
    d.wait_ready(&["echo"], T);
    let wpid = worker(&d.status(), "echo").unwrap().pid.unwrap();
    signal(wpid, Signal::SIGSTOP);
    let mut c = Client::connect(&d.socket).expect("attach");
    let payload = vec![b'x'; 2048];
    let tickets: Vec<Ticket> = (0..N)
        .map(|_| c.submit("echo", &payload).unwrap())
        .collect();
    d.wait_for("the ring full with tasks queued behind it", T, |s| {
        s.tasks.in_flight > 0 && s.tasks.queued > 0
    });
    let ampd = d.pid();
    let before = cpu_ticks(ampd);
    std::thread::sleep(Duration::from_millis(500));
    let used = cpu_ticks(ampd) - before;
    signal(wpid, Signal::SIGCONT);
    // A busy loop would use all 50 ticks of the half second (clock ticks are 10 ms here).
    assert!(
        used < 15,
        "ampd used {used} clock ticks of CPU in 500 ms waiting for a full ring"
    );
    let results = collect(&mut c, &d, N, T);
    let mut seen: HashSet<Ticket> = HashSet::new();
    for r in &results {
        assert_eq!(r.status, ResultStatus::Ok, "{r:?}");
        assert_eq!(r.body, payload);
        assert!(seen.insert(r.ticket), "ticket {} answered twice", r.ticket);
    }
    assert_eq!(seen, tickets.into_iter().collect());
    let _ = d.shutdown(T);
}

/// A worker that dies with more completions unread on its ring than ampd reads from one ring in
/// a pass: ampd reads them all before it requeues what was in flight, so every finished task is
/// answered once from its first attempt — none runs again or counts as exposed to the death.
/// (The worker is stopped while all the tasks are written to its ring, then ampd is stopped
/// while the worker runs them; the worker is killed once it sleeps with its ring empty.)
#[test]
fn completions_left_on_a_dead_worker_ring_are_all_read() {
    use nix::sys::signal::Signal;
    const N: usize = 2000;
    let mut d = Ampd::start("", &flaky(4096, ""));
    d.wait_ready(&["flaky"], T);
    let wpid = worker(&d.status(), "flaky").unwrap().pid.unwrap();
    signal(wpid, Signal::SIGSTOP);
    let mut c = Client::connect(&d.socket).expect("attach");
    let tickets: Vec<Ticket> = (0..N).map(|_| c.submit("flaky", b"ok").unwrap()).collect();
    d.wait_for("every task written to the stopped worker's ring", T, |s| {
        s.tasks.in_flight == N as u64
    });
    let ampd = d.pid();
    signal(ampd, Signal::SIGSTOP);
    signal(wpid, Signal::SIGCONT);
    // The worker runs the 2000 no-op tasks in milliseconds, then blocks with its ring empty.
    let deadline = Instant::now() + T;
    let mut sleeping = 0;
    while sleeping < 5 {
        assert!(Instant::now() < deadline, "the worker never went to sleep");
        sleeping = if proc_state(wpid) == Some('S') {
            sleeping + 1
        } else {
            0
        };
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(wpid, Signal::SIGKILL);
    signal(ampd, Signal::SIGCONT);
    for t in tickets {
        let r = c.wait_for(t, T).unwrap();
        assert_eq!(r.status, ResultStatus::Ok, "{}", r.text());
        assert_eq!(
            r.attempts, 1,
            "task {} ran again after the death",
            r.task_id
        );
    }
    let s = d.wait_for("the worker restarted", T, |s| {
        worker(s, "flaky").is_some_and(|w| w.state == "ready" && w.pid != Some(wpid))
    });
    assert_eq!(s.tasks.in_flight, 0, "{:?}", s.tasks);
    drop(c);
    let _ = d.shutdown(T);
}

/// Graceful shutdown, end to end: intake stops (a submission after the request is refused),
/// the task running when it was asked finishes and is delivered, and the queued tasks that never
/// ran are each answered once as cancelled by the shutdown and counted in ampd's log — nothing is
/// dropped silently.
#[test]
fn graceful_shutdown_finishes_in_flight_work_and_answers_the_rest() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.sleep]
command = "amp-sleep"
kinds = ["sleep"]
concurrency = 1
stop_timeout = "10s"
"#,
    );
    d.wait_ready(&["sleep"], T);
    let mut c = Client::connect(&d.socket).expect("attach");
    // Long enough for the rest of the setup to happen while it runs.
    let running = c.submit("sleep", b"2000 running").unwrap();
    d.wait_for("the first task running", T, |s| {
        amp_tests::queue(s, "sleep").in_flight == 1
    });
    let queued: Vec<Ticket> = (0..3)
        .map(|i| c.submit("sleep", format!("600 q{i}").as_bytes()).unwrap())
        .collect();
    d.wait_for("three tasks queued", T, |s| s.tasks.queued == 3);
    ok(&d, serde_json::json!({"cmd": "shutdown"}));
    let late = c.submit("sleep", b"1 late").unwrap();
    let results = collect(&mut c, &d, 5, T);
    let by_ticket: HashMap<Ticket, &TaskResult> = results.iter().map(|r| (r.ticket, r)).collect();
    assert_eq!(by_ticket.len(), 5, "a ticket answered twice: {results:?}");
    let r = by_ticket[&late];
    assert_eq!(r.status, ResultStatus::Rejected, "{r:?}");
    assert!(r.text().contains("shutting down"), "{}", r.text());
    let r = by_ticket[&running];
    assert_eq!(
        (r.status, r.text().as_str()),
        (ResultStatus::Ok, "2000 running")
    );
    for t in &queued {
        let r = by_ticket[t];
        assert_eq!(r.status, ResultStatus::Failed, "{r:?}");
        assert_eq!(r.text(), "cancelled: ampd shut down before the task ran");
    }
    let status = d.wait_exit(T);
    assert!(status.success(), "{status:?}");
    let log = d.log_text();
    let report = log
        .lines()
        .find(|l| l.contains("tasks not done at shutdown"))
        .unwrap_or_else(|| panic!("no report of unfinished tasks:\n{log}"));
    assert!(report.contains("count=3"), "{report}");
    assert!(d.shm_leftovers().is_empty(), "{:?}", d.shm_leftovers());
}

/// A worker that stops answering (SIGSTOP: no heartbeat, no completions) with tasks in flight:
/// after `heartbeat_timeout` ampd gives up on it, kills it, and its tasks go to the other
/// replica; every task is delivered once, Ok, and the loss is counted.
#[test]
fn a_hung_worker_loses_its_tasks_to_another_after_the_heartbeat_timeout() {
    use nix::sys::signal::Signal;
    // Enough 100 ms tasks to keep both windows of 4 full for about half a second.
    const N: usize = 40;
    let mut d = Ampd::start(
        "",
        r#"
[workers.sleep]
command = "amp-sleep"
kinds = ["sleep"]
replicas = 2
concurrency = 4
heartbeat_interval = "50ms"
heartbeat_timeout = "400ms"
stop_timeout = "200ms"
"#,
    );
    d.wait_ready(&["sleep#0", "sleep#1"], T);
    let victim = worker(&d.status(), "sleep#0").unwrap().pid.unwrap();
    let mut c = Client::connect(&d.socket).expect("attach");
    let tickets: Vec<Ticket> = (0..N)
        .map(|i| c.submit("sleep", format!("100 {i}").as_bytes()).unwrap())
        .collect();
    d.wait_for("tasks in flight on both replicas", T, |s| {
        amp_tests::queue(s, "sleep").in_flight == 8
    });
    signal(victim, Signal::SIGSTOP);
    let results = collect(&mut c, &d, N, T);
    let mut seen = HashSet::new();
    for r in &results {
        assert_eq!(r.status, ResultStatus::Ok, "{r:?}");
        assert!(seen.insert(r.ticket), "ticket {} answered twice", r.ticket);
    }
    assert_eq!(seen, tickets.iter().copied().collect());
    let s = d.status();
    assert!(s.tasks.requeued_lost > 0, "{:?}", s.tasks);
    assert!(
        s.events
            .iter()
            .any(|e| e.unit == "sleep#0" && e.detail.to_lowercase().contains("heartbeat")),
        "no heartbeat event for sleep#0: {:?}",
        s.events
    );
    // The hung process was killed; a fresh one replaces it.
    let end = Instant::now() + T;
    while amp_tests::alive(victim) && proc_state(victim) != Some('Z') {
        assert!(
            Instant::now() < end,
            "the hung worker {victim} was not killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = d.shutdown(T);
}

/// The ampctl paths scripts use, through the binary: `submit --payload-file` (binary-safe) with
/// `--priority`, an unknown priority, `route set` then `route get`, and `dlq retry` re-running a
/// dead-lettered task until it succeeds (the DLQ table's columns line up).
#[test]
fn ampctl_payload_file_priority_route_set_and_dlq_retry() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.sleep]
command = "amp-sleep"
kinds = ["sleep"]
[kinds.sleep]
max_attempts = 1
"#,
    );
    d.wait_ready(&["sleep"], T);
    let stdout = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let file = d.scratch.path.join("payload.bin");
    std::fs::write(&file, b"5 from-a-file").unwrap();
    let out = ampctl(
        &d,
        &[
            "--json",
            "submit",
            "--kind",
            "sleep",
            "--priority",
            "interactive",
            "--payload-file",
            file.to_str().unwrap(),
            "--wait",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["data"]["status"], "ok", "{v}");
    assert_eq!(v["data"]["result"], "5 from-a-file", "{v}");

    let out = ampctl(
        &d,
        &[
            "submit",
            "--kind",
            "sleep",
            "--priority",
            "urgent",
            "--json",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"urgent\"") && err.contains("interactive, batch"),
        "{err}"
    );

    let out = ampctl(&d, &["--json", "route", "set", "sleep", "peak_ewma"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&v["data"]["was"], &v["data"]["policy"]),
        (&"least_loaded".into(), &"peak_ewma".into()),
        "{v}"
    );
    let out = ampctl(&d, &["--json", "route", "get", "sleep"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["data"]["sleep"]["router"]["policy"], "peak_ewma", "{v}");
    let out = ampctl(&d, &["route", "set", "sleep", "random"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // `fail1` fails the first attempt (retryable); with max_attempts = 1 it is dead-lettered,
    // and a DLQ retry (attempt 2) succeeds.
    std::fs::write(&file, b"5 fail1").unwrap();
    let out = ampctl(
        &d,
        &[
            "submit",
            "--kind",
            "sleep",
            "--payload-file",
            file.to_str().unwrap(),
            "--wait",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout(&out).contains("dead_lettered"), "{out:?}");
    let list = stdout(&ampctl(&d, &["dlq", "list"]));
    let rows: Vec<&str> = list.lines().collect();
    assert_eq!(rows.len(), 2, "{list}");
    assert_eq!(
        rows[0].find("KIND"),
        rows[1].find("sleep"),
        "columns do not line up:\n{list}"
    );
    let id = rows[1].split_whitespace().next().unwrap().to_owned();
    let done_before = d.status().tasks.done;
    let out = ampctl(&d, &["--json", "dlq", "retry", &id]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["data"]["requeued"], 1, "{v}");
    d.wait_for("the re-run to succeed", T, |s| {
        s.tasks.done == done_before + 1 && s.tasks.dead_lettered == 0
    });
    assert!(dlq(&d).is_empty());
    let _ = d.shutdown(T);
}

/// `[supervisor] poison_deaths` is honoured: with 1, a task whose worker dies running it is
/// dead-lettered at the first death instead of being tried again.
#[test]
fn poison_deaths_setting_dead_letters_at_the_first_death() {
    let mut d = Ampd::start(
        "poison_deaths = 1",
        r#"
[workers.flaky]
command = "amp-flaky"
kinds = ["flaky"]
concurrency = 1
restart = "always"
backoff = { initial = "10ms", max = "20ms", jitter = 0.0 }
"#,
    );
    d.wait_ready(&["flaky"], T);
    let mut c = Client::connect(&d.socket).expect("attach");
    let t = c.submit("flaky", b"crash").unwrap();
    let r = c.wait_for(t, T).unwrap();
    assert_eq!(r.status, ResultStatus::DeadLettered, "{}", r.text());
    assert!(
        r.text().contains("poison") && r.text().contains("1 worker deaths"),
        "{}",
        r.text()
    );
    let s = d.wait_for("the restart", T, |s| restarts(s, "flaky") >= 1);
    assert_eq!(restarts(&s, "flaky"), 1, "{:?}", s.workers);
    let _ = d.shutdown(T);
}
