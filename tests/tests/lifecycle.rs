//! End-to-end lifecycle tests: real ampd, real worker processes.

use std::time::Duration;

use amp_tests::{alive, event_seq, eventually, group_members, worker, Ampd};

const T: Duration = Duration::from_secs(15);

#[test]
fn diamond_starts_in_dependency_order_and_stops_in_reverse() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.a]
command = "amp-echo"
[workers.b]
command = "amp-echo"
depends_on = ["a"]
[workers.c]
command = "amp-echo"
depends_on = ["a"]
[workers.d]
command = "amp-echo"
depends_on = ["b", "c"]
"#,
    );
    let s = d.wait_ready(&["a", "b", "c", "d"], T);
    let seq = |u: &str, k: &str| {
        event_seq(&s, u, k).unwrap_or_else(|| panic!("no {k} event for {u}: {:#?}", s.events))
    };
    // Nothing starts before its dependencies are ready.
    assert!(seq("a", "ready") < seq("b", "started"));
    assert!(seq("a", "ready") < seq("c", "started"));
    assert!(seq("b", "ready") < seq("d", "started"));
    assert!(seq("c", "ready") < seq("d", "started"));
    // b and c start together: both are spawned before either of them reports ready.
    assert!(seq("b", "started") < seq("c", "ready") && seq("c", "started") < seq("b", "ready"));
    let st = d.shutdown(T);
    assert!(
        st.success(),
        "clean shutdown expected: {st:?}\n{}",
        d.log_text()
    );
    // Reverse order: d is stopped before b and c exit; a exits last.
    let log = d.log_text();
    let pos = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in log:\n{log}"))
    };
    assert!(pos("exited: pid") > 0);
    let exited = |u: &str| {
        log.lines()
            .position(|l| l.contains("exited:") && l.trim_end().ends_with(&format!("unit={u}")))
    };
    let (ea, eb, ec, ed) = (exited("a"), exited("b"), exited("c"), exited("d"));
    assert!(
        ed < eb && ed < ec && eb < ea && ec < ea,
        "exit order a={ea:?} b={eb:?} c={ec:?} d={ed:?}\n{log}"
    );
    assert!(
        d.shm_leftovers().is_empty(),
        "leftover segments: {:?}",
        d.shm_leftovers()
    );
    assert!(!d.socket.exists(), "control socket left behind");
}

#[test]
fn crash_restarts_with_backoff_then_intensity_marks_failed() {
    let d = Ampd::start(
        "",
        r#"
[workers.f]
command = "amp-flaky"
args = ["--exit-after-ready", "3"]
restart = "on-failure"
backoff = { initial = "50ms", max = "400ms", multiplier = 2.0, jitter = 0.0 }
intensity = { max_restarts = 3, window = "30s", on_exceeded = "mark-failed" }
"#,
    );
    let s = d.wait_for("f failed", T, |s| {
        worker(s, "f").is_some_and(|w| w.state == "failed")
    });
    let w = worker(&s, "f").unwrap();
    assert_eq!(w.restarts, 3, "{w:?}");
    assert!(
        w.last_exit
            .as_deref()
            .unwrap_or("")
            .contains("restarted more than 3"),
        "{w:?}"
    );
    let restarts: Vec<_> = s.events.iter().filter(|e| e.kind == "restarting").collect();
    assert_eq!(restarts.len(), 3, "{:#?}", s.events);
    // Exponential backoff: 50, 100, 200 ms (jitter 0).
    for (r, ms) in restarts.iter().zip([50, 100, 200]) {
        assert!(r.detail.contains(&format!("{ms}ms")), "{r:?}");
    }
    assert!(s
        .events
        .iter()
        .any(|e| e.kind == "exited" && e.detail.contains("exited with code 3")));
}

#[test]
fn death_by_signal_is_reported_apart_and_stop_dependents_escalates() {
    let d = Ampd::start(
        "",
        r#"
[workers.base]
command = "amp-flaky"
args = ["--crash-after", "0"]
restart = "always"
backoff = { initial = "20ms", max = "50ms", jitter = 0.0 }
intensity = { max_restarts = 1, window = "30s", on_exceeded = "stop-dependents" }
[workers.dep]
command = "amp-echo"
depends_on = { base = "started" }
"#,
    );
    let s = d.wait_ready(&["base", "dep"], T);
    let pid = worker(&s, "base").unwrap().pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let s = d.wait_for("base restarted", T, |s| {
        worker(s, "base").is_some_and(|w| w.restarts >= 1 && w.state == "ready")
    });
    assert!(
        s.events.iter().any(|e| e.unit == "base"
            && e.kind == "exited"
            && e.detail.contains("killed by SIGKILL")),
        "{:#?}",
        s.events
    );
    let pid = worker(&s, "base").unwrap().pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let s = d.wait_for("base failed and dep stopped", T, |s| {
        worker(s, "base").is_some_and(|w| w.state == "failed")
            && worker(s, "dep").is_some_and(|w| w.state == "stopped")
    });
    assert!(
        s.events.iter().any(|e| e.kind == "escalated"),
        "{:#?}",
        s.events
    );
}

#[test]
fn ready_timeout_fails_the_worker_and_its_dependents_do_not_start() {
    let mut d = Ampd::start(
        "on_startup_failure = \"continue\"",
        r#"
[workers.slow]
command = "amp-flaky"
args = ["--no-ready"]
ready_timeout = "300ms"
restart = "never"
[workers.after]
command = "amp-echo"
depends_on = ["slow"]
[workers.other]
command = "amp-echo"
"#,
    );
    let s = d.wait_for("slow failed", T, |s| {
        worker(s, "slow").is_some_and(|w| w.state == "failed")
    });
    assert!(
        worker(&s, "slow")
            .unwrap()
            .last_exit
            .as_deref()
            .unwrap_or("")
            .contains("ready"),
        "{s:#?}"
    );
    let s = d.wait_ready(&["other"], T);
    let after = worker(&s, "after").unwrap();
    assert_eq!(after.state, "pending", "{after:?}");
    assert!(after.pid.is_none());
    assert!(event_seq(&s, "after", "started").is_none());
    let _ = d.shutdown(T);
}

#[test]
fn ready_timeout_with_abort_shuts_everything_down() {
    let mut d = Ampd::start(
        "on_startup_failure = \"abort\"",
        r#"
[workers.slow]
command = "amp-flaky"
args = ["--no-ready"]
ready_timeout = "300ms"
restart = "never"
[workers.other]
command = "amp-echo"
"#,
    );
    let st = d.wait_exit(T);
    assert!(!st.success(), "an aborted startup must exit non-zero");
    assert!(d.shm_leftovers().is_empty());
}

#[test]
fn sigstopped_worker_is_detected_by_heartbeat_killed_and_restarted() {
    let d = Ampd::start(
        "",
        r#"
[workers.w]
command = "amp-echo"
heartbeat_interval = "50ms"
heartbeat_timeout = "400ms"
restart = "always"
backoff = { initial = "20ms", max = "100ms", jitter = 0.0 }
"#,
    );
    let s = d.wait_ready(&["w"], T);
    let pid = worker(&s, "w").unwrap().pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let s = d.wait_for("w restarted", T, |s| {
        worker(s, "w").is_some_and(|w| w.restarts >= 1 && w.state == "ready" && w.pid != Some(pid))
    });
    assert!(
        s.events
            .iter()
            .any(|e| e.unit == "w" && e.kind == "exited" && e.detail.contains("HeartbeatTimeout")),
        "{:#?}",
        s.events
    );
    assert!(
        eventually(Duration::from_secs(2), || !alive(pid)),
        "stopped worker still alive"
    );
}

#[test]
fn worker_ignoring_sigterm_and_its_grandchild_are_killed_after_stop_timeout() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.stubborn]
command = "amp-flaky"
args = ["--ignore-sigterm", "--spawn-grandchild", "--hang"]
ready_timeout = "30s"
stop_timeout = "400ms"
[workers.ok]
command = "amp-echo"
"#,
    );
    let s = d.wait_ready(&["stubborn"], T);
    let pgid = worker(&s, "stubborn").unwrap().pid.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || group_members(pgid).len() >= 2),
        "grandchild not seen"
    );
    let members = group_members(pgid);
    d.wait_ready(&["ok"], T);
    let st = d.shutdown(T);
    assert!(!st.success(), "a SIGKILLed worker makes shutdown unclean");
    assert!(
        eventually(Duration::from_secs(2), || members
            .iter()
            .all(|&p| !alive(p))),
        "group members survived: {members:?}"
    );
    assert!(d.log_text().contains("SIGKILL"), "{}", d.log_text());
}

#[test]
fn kill9_of_ampd_leaves_no_process_segment_or_socket() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.gc]
command = "amp-flaky"
args = ["--spawn-grandchild"]
[workers.e]
command = "amp-echo"
replicas = 2
"#,
    );
    let s = d.wait_ready(&["gc", "e#0", "e#1"], T);
    let pgids: Vec<u32> = s.workers.iter().filter_map(|w| w.pid).collect();
    assert!(eventually(Duration::from_secs(5), || group_members(
        worker(&s, "gc").unwrap().pid.unwrap()
    )
    .len()
        >= 2));
    let everyone: Vec<u32> = pgids.iter().flat_map(|&g| group_members(g)).collect();
    assert!(everyone.len() >= 4, "{everyone:?}");
    d.kill9();
    assert!(
        eventually(Duration::from_secs(1), || everyone
            .iter()
            .all(|&p| !alive(p))),
        "survivors after 1 s: {:?}",
        everyone.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
    );
    assert!(
        eventually(Duration::from_secs(2), || d.shm_leftovers().is_empty()),
        "{:?}",
        d.shm_leftovers()
    );
    assert!(
        eventually(Duration::from_secs(2), || !d.socket.exists()),
        "socket left behind\n{}",
        d.log_text()
    );
}

#[test]
fn protocol_mismatch_is_refused_with_a_clear_error() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.old]
command = "amp-flaky"
args = ["--protocol", "99"]
restart = "never"
"#,
    );
    // The worker is refused, exits, and startup aborts (the default on_startup_failure).
    let st = d.wait_exit(T);
    assert!(!st.success());
    let log = d.log_text();
    assert!(
        log.contains(&format!(
            "worker old speaks amp protocol 99 but ampd speaks {}",
            amp_ipc::proto::PROTOCOL_VERSION
        )),
        "{log}"
    );
    assert!(
        log.contains("ampd refused this worker: worker old speaks amp protocol 99"),
        "worker side message missing:\n{log}"
    );
}

#[test]
fn sigterm_shuts_down_gracefully_and_a_second_one_takes_the_fast_path() {
    // A worker that ignores Shutdown and SIGTERM: the graceful path would wait for its
    // stop_timeout (20 s); the second SIGTERM takes the fast path (SIGKILL after ~1 s).
    let mut d = Ampd::start(
        "",
        r#"
[workers.stubborn]
command = "amp-flaky"
args = ["--ignore-sigterm", "--hang"]
stop_timeout = "20s"
[workers.ok]
command = "amp-echo"
"#,
    );
    d.wait_ready(&["stubborn", "ok"], T);
    let pid = nix::unistd::Pid::from_raw(d.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    d.wait_for("shutdown started", T, |s| s.shutting_down);
    let start = std::time::Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let st = d.wait_exit(T);
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "fast path took {:?}",
        start.elapsed()
    );
    assert!(
        !st.success(),
        "a SIGKILLed worker makes the shutdown unclean"
    );
    let log = d.log_text();
    assert!(
        log.contains("fast=true") || log.contains("fast: true"),
        "{log}"
    );
}
