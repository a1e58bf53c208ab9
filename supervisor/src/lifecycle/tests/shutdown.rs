//! Shutdown: reverse dependency order, the stop sequence's timing, the fast path, the report.

use super::*;
use crate::spec::RestartPolicy;
use nix::sys::signal::Signal;
use DependencyCondition::{Ready, Started};

fn shutdown(h: &mut H) -> Step {
    h.feed(Event::Shutdown { fast: false })
}

/// Everything started and ready.
fn all_up(workers: Vec<WorkerSpec>, names: &[&str]) -> H {
    let mut h = H::new(workers);
    let _ = h.startup();
    for name in names {
        let _ = h.up(name);
    }
    assert_eq!(*h.sup.phase(), Phase::Running);
    h
}

#[test]
fn shutdown_stops_in_reverse_dependency_order() {
    let mut h = all_up(
        vec![
            w("a"),
            wd("b", &["a"], Ready),
            wd("c", &["a"], Ready),
            wd("d", &["b", "c"], Ready),
            w("e"),
        ],
        &["a", "e", "b", "c", "d"],
    );
    let actions = shutdown(&mut h);
    assert_eq!(h.ops(&actions), ["shutdown e", "shutdown d"]);
    assert!(h.exit("e", code(0)).ops().is_empty());
    assert_eq!(h.exit("d", code(0)).ops(), ["shutdown c", "shutdown b"]);
    assert!(h.exit("b", code(0)).ops().is_empty(), "a waits for c");
    assert_eq!(h.exit("c", code(0)).ops(), ["shutdown a"]);
    let report = H::report(&h.exit("a", code(0))).cloned().expect("complete");
    assert!(report.clean && report.success() && !report.fast);
    assert!(report.killed.is_empty() && report.failed.is_empty());
    assert!(matches!(h.sup.phase(), Phase::Done(r) if *r == report));
    for name in ["a", "b", "c", "d", "e"] {
        assert_eq!(h.state(name), StateKind::Stopped);
    }
    // Over: nothing is due, every later event and command is refused or ignored.
    assert_eq!(h.sup.next_deadline(), None);
    assert!(h.startup().is_empty());
    assert!(shutdown(&mut h).is_empty());
    assert_eq!(
        h.cmd(Command::Start { target: "a".into() }),
        Err(CommandError::ShuttingDown)
    );
}

#[test]
fn a_unit_ignoring_shutdown_gets_the_stop_signal_then_sigkill() {
    let mut h = all_up(vec![w("a")], &["a"]);
    let t = h.now;
    assert_eq!(shutdown(&mut h).ops(), ["shutdown a"]);
    assert_eq!(h.sup.next_deadline(), Some(t + Duration::from_secs(1)));
    assert!(h.advance(999 * MS).is_empty());
    assert_eq!(h.advance(MS).ops(), ["signal a SIGTERM"]);
    assert_eq!(h.sup.next_deadline(), Some(t + Duration::from_secs(3)));
    assert!(h.advance(1999 * MS).is_empty());
    assert_eq!(h.advance(MS).ops(), ["kill a"]);
    assert_eq!(h.sup.next_deadline(), None);
    let a = h.id("a");
    let report = H::report(&h.exit("a", sig(9))).cloned().expect("complete");
    assert_eq!(
        (report.clean, report.killed.clone(), report.success()),
        (false, vec![a], false)
    );
    let last = h.sup.unit_status(a).last_exit.unwrap();
    assert_eq!(last.stop_cause, Some(StopCause::Shutdown));
    assert_eq!(last.at - h.t0, Duration::from_secs(3));
}

#[test]
fn exiting_on_the_stop_signal_is_clean() {
    let mut h = all_up(vec![w("a")], &["a"]);
    let _ = shutdown(&mut h);
    assert_eq!(h.jump_to_deadline().ops(), ["signal a SIGTERM"]);
    let report = H::report(&h.exit("a", sig(15))).cloned().unwrap();
    assert!(report.clean && report.success());
}

#[test]
fn without_a_control_channel_the_stop_signal_goes_at_once() {
    let mut a = w("a");
    a.shutdown_grace = None;
    a.stop_signal = Signal::SIGINT;
    let mut h = all_up(vec![a], &["a"]);
    let t = h.now;
    assert_eq!(shutdown(&mut h).ops(), ["signal a SIGINT"]);
    assert_eq!(h.sup.next_deadline(), Some(t + Duration::from_secs(2)));
    assert_eq!(h.jump_to_deadline().ops(), ["kill a"]);
}

#[test]
fn second_request_takes_the_fast_path() {
    let mut h = all_up(vec![w("a"), wd("b", &["a"], Ready)], &["a", "b"]);
    assert_eq!(shutdown(&mut h).ops(), ["shutdown b"]);
    let _ = h.advance(100 * MS);
    let actions = shutdown(&mut h);
    assert_eq!(h.ops(&actions), ["signal a SIGTERM", "signal b SIGTERM"]);
    assert!(H::notices(&actions).contains(&&Notice::ShutdownStarted {
        cause: ShutdownCause::Requested,
        fast: true
    }));
    let _ = h.advance(500 * MS);
    let _ = h.exit("a", sig(15));
    // SIGKILL fast_kill_timeout (1 s) after the second request.
    assert!(h.advance(499 * MS).is_empty());
    assert_eq!(h.advance(MS).ops(), ["kill b"]);
    let b = h.id("b");
    let report = H::report(&h.exit("b", sig(9))).cloned().unwrap();
    assert_eq!(
        (report.fast, report.clean, report.killed),
        (true, false, vec![b])
    );
    // A third request changes nothing.
    assert!(shutdown(&mut h).is_empty());
}

#[test]
fn fast_request_signals_everyone_at_once_and_caps_the_kill_at_stop_timeout() {
    let mut a = w("a");
    a.stop_timeout = Duration::from_millis(300); // shorter than the fast timeout
    let mut h = all_up(vec![a, wd("b", &["a"], Ready), w("c")], &["a", "b", "c"]);
    let actions = h.feed(Event::Shutdown { fast: true });
    assert_eq!(
        h.ops(&actions),
        ["signal a SIGTERM", "signal b SIGTERM", "signal c SIGTERM"]
    );
    assert_eq!(
        h.sup.next_deadline(),
        Some(h.now + Duration::from_millis(300))
    );
    assert_eq!(h.jump_to_deadline().ops(), ["kill a"]);
    assert_eq!(h.jump_to_deadline().ops(), ["kill b", "kill c"]);
    assert_eq!(h.elapsed(), Duration::from_secs(1));
}

#[test]
fn units_without_a_process_stop_at_once_and_backoff_never_fires() {
    let mut a = w("a");
    a.restart = RestartPolicy::Always;
    let mut h = H::new(vec![a, wd("b", &["a"], Ready)]);
    let _ = h.startup();
    let _ = h.spawned("a");
    let _ = h.exit("a", code(1));
    assert_eq!(h.state("a"), StateKind::Backoff);
    let actions = shutdown(&mut h);
    assert!(h.ops(&actions).is_empty());
    let report = H::report(&actions).expect("nothing to wait for");
    assert!(report.success());
    assert_eq!(h.state("a"), StateKind::Stopped);
    assert_eq!(h.state("b"), StateKind::Stopped);
    assert_eq!(h.sup.next_deadline(), None);
    assert!(h.advance(Duration::from_secs(60)).is_empty());
}

#[test]
fn shutdown_before_startup_completes_at_once() {
    let mut h = H::new(vec![w("a")]);
    let report = H::report(&shutdown(&mut h)).cloned().unwrap();
    assert!(report.success());
    assert!(h.startup().is_empty(), "too late to start");
    assert_eq!(h.state("a"), StateKind::Stopped);
}

#[test]
fn a_dependency_waits_for_a_dependent_that_is_still_spawning() {
    let mut h = H::new(vec![w("a"), wd("b", &["a"], Started)]);
    let _ = h.startup();
    assert_eq!(h.spawned("a").spawns(), ["b"]);
    assert!(
        shutdown(&mut h).ops().is_empty(),
        "a waits for b, b is spawning"
    );
    assert_eq!(h.spawned("b").ops(), ["shutdown b"]);
    assert_eq!(h.exit("b", code(0)).ops(), ["shutdown a"]);
}

#[test]
fn a_unit_that_dies_while_waiting_its_turn_is_not_restarted() {
    let mut a = w("a");
    a.restart = RestartPolicy::Always;
    let mut h = all_up(vec![a, wd("b", &["a"], Ready)], &["a", "b"]);
    let _ = shutdown(&mut h);
    let actions = h.exit("a", code(1));
    assert!(h.ops(&actions).is_empty());
    assert_eq!(h.state("a"), StateKind::Stopped);
    let report = H::report(&h.exit("b", code(0))).cloned().unwrap();
    assert!(report.clean);
}

#[test]
fn a_unit_killed_as_hung_when_shutdown_begins_ends_failed_not_restarted() {
    let mut a = w("a");
    a.heartbeat_timeout = Some(Duration::from_millis(100));
    a.restart = RestartPolicy::Always;
    let mut h = all_up(vec![a], &["a"]);
    assert_eq!(h.advance(100 * MS).ops(), ["kill a"]);
    assert!(shutdown(&mut h).ops().is_empty());
    let a = h.id("a");
    let report = H::report(&h.exit("a", sig(9))).cloned().unwrap();
    assert!(report.clean, "that kill was not the shutdown's");
    assert_eq!(report.failed, vec![a]);
    assert!(report.success(), "requested and clean");
}
