//! Manual control (start, stop, restart, drain) and the status view.

use super::*;
use crate::spec::RestartPolicy;
use DependencyCondition::Ready;

fn start(t: &str) -> Command {
    Command::Start { target: t.into() }
}
fn stop(t: &str) -> Command {
    Command::Stop {
        target: t.into(),
        with_dependents: false,
    }
}
fn restart(t: &str) -> Command {
    Command::Restart { target: t.into() }
}
fn drain(t: &str) -> Command {
    Command::Drain { target: t.into() }
}

fn chain() -> H {
    let mut h = H::new(vec![w("a"), wd("b", &["a"], Ready), wd("c", &["b"], Ready)]);
    let _ = h.startup();
    for name in ["a", "b", "c"] {
        let _ = h.up(name);
    }
    h
}

#[test]
fn commands_are_refused_before_startup_and_for_unknown_names() {
    let mut h = H::new(vec![w("a")]);
    assert_eq!(h.cmd(start("a")), Err(CommandError::NotStarted));
    let _ = h.startup();
    let err = h.cmd(stop("nope")).unwrap_err();
    assert_eq!(
        err,
        CommandError::UnknownTarget {
            target: "nope".into()
        }
    );
    assert!(err.to_string().contains("nope"));
}

#[test]
fn stop_one_unit_leaves_its_dependents_and_start_brings_it_back() {
    let mut h = chain();
    assert_eq!(h.cmd(stop("a")).unwrap().ops(), ["shutdown a"]);
    let _ = h.exit("a", code(0));
    assert_eq!(h.state("a"), StateKind::Stopped);
    assert_eq!(h.state("b"), StateKind::Ready);
    assert!(h.cmd(stop("a")).unwrap().is_empty(), "already stopped");
    assert_eq!(h.cmd(start("a")).unwrap().ops(), ["spawn a"]);
    assert!(h.cmd(start("a")).unwrap().is_empty(), "already starting");
}

#[test]
fn stop_with_dependents_goes_dependents_first() {
    let mut h = chain();
    let actions = h
        .cmd(Command::Stop {
            target: "a".into(),
            with_dependents: true,
        })
        .unwrap();
    assert_eq!(h.ops(&actions), ["shutdown c"]);
    assert_eq!(h.exit("c", code(0)).ops(), ["shutdown b"]);
    assert_eq!(h.exit("b", code(0)).ops(), ["shutdown a"]);
    let _ = h.exit("a", code(0));
    // Starting c alone: it waits behind the stopped b.
    assert!(h.cmd(start("c")).unwrap().ops().is_empty());
    assert_eq!(h.sup.unit_status(h.id("c")).blocked_by, Some("b"));
    assert_eq!(h.cmd(start("a")).unwrap().ops(), ["spawn a"]);
    assert!(h.up("a").spawns().is_empty(), "b is stopped, not pending");
    assert_eq!(h.cmd(start("b")).unwrap().ops(), ["spawn b"]);
    assert_eq!(h.up("b").spawns(), ["c"]);
}

#[test]
fn restart_stops_gracefully_then_spawns_at_once() {
    let mut h = chain();
    let unit = h.id("b");
    let actions = h.cmd(restart("b")).unwrap();
    assert_eq!(h.ops(&actions), ["shutdown b"]);
    assert_eq!(h.sup.unit_status(unit).stop_cause, Some(StopCause::Restart));
    assert_eq!(h.exit("b", code(0)).ops(), ["spawn b"]);
    assert_eq!(
        h.sup.unit_status(unit).restarts,
        0,
        "manual restarts are not counted"
    );
    let _ = h.up("b");
    assert_eq!(h.state("c"), StateKind::Ready, "dependents are left alone");
}

#[test]
fn restart_and_start_revive_failed_and_backoff_units() {
    let mut a = w("a");
    a.restart = RestartPolicy::Never;
    let mut b = w("b");
    b.restart = RestartPolicy::Always;
    b.backoff.initial = Duration::from_secs(5);
    let mut h = H::new(vec![a, b]);
    let _ = h.startup();
    let _ = h.up("a");
    let _ = h.up("b");
    let _ = h.exit("a", code(1));
    let _ = h.exit("b", code(1));
    assert_eq!(h.state("a"), StateKind::Failed);
    assert_eq!(h.state("b"), StateKind::Backoff);
    assert_eq!(h.cmd(restart("a")).unwrap().ops(), ["spawn a"]);
    assert_eq!(h.sup.unit_status(h.id("a")).failure, None);
    assert_eq!(
        h.cmd(start("b")).unwrap().ops(),
        ["spawn b"],
        "no waiting out the backoff"
    );
}

#[test]
fn start_while_being_stopped_brings_the_unit_back_after_it_exits() {
    let mut h = chain();
    let _ = h.cmd(stop("c")).unwrap();
    assert!(h.cmd(start("c")).unwrap().ops().is_empty());
    assert_eq!(h.exit("c", code(0)).ops(), ["spawn c"]);
}

#[test]
fn drain_then_drained_stops_the_unit() {
    let mut h = chain();
    let (unit, pid) = (h.id("c"), h.pid("c"));
    let actions = h.cmd(drain("c")).unwrap();
    assert_eq!(h.ops(&actions), ["drain c"]);
    assert!(H::notices(&actions).contains(&&Notice::Draining { unit, pid }));
    assert_eq!(h.state("c"), StateKind::Draining);
    assert_eq!(h.sup.next_deadline(), None, "no drain timeout configured");
    assert_eq!(h.feed(Event::Drained { unit, pid }).ops(), ["shutdown c"]);
    assert_eq!(h.sup.unit_status(unit).stop_cause, Some(StopCause::Drain));
    let _ = h.exit("c", code(0));
    assert_eq!(h.state("c"), StateKind::Stopped);
}

#[test]
fn drain_timeout_stops_anyway_and_a_crash_while_draining_is_not_restarted() {
    let mut c = wd("c", &["b"], Ready);
    c.drain_timeout = Some(Duration::from_secs(3));
    c.replicas = 2;
    let mut h = H::new(vec![w("a"), wd("b", &["a"], Ready), c]);
    let _ = h.startup();
    for name in ["a", "b", "c#0", "c#1"] {
        let _ = h.up(name);
    }
    assert_eq!(h.cmd(drain("c")).unwrap().ops(), ["drain c#0", "drain c#1"]);
    let _ = h.exit("c#1", code(1));
    assert_eq!(h.state("c#1"), StateKind::Stopped);
    assert!(h.advance(2999 * MS).is_empty());
    assert_eq!(h.advance(MS).ops(), ["shutdown c#0"]);
}

#[test]
fn drain_of_a_unit_not_ready_yet_just_stops_it() {
    let mut h = H::new(vec![w("a"), wd("b", &["a"], Ready)]);
    let _ = h.startup();
    let _ = h.spawned("a");
    assert_eq!(h.cmd(drain("a")).unwrap().ops(), ["shutdown a"]);
    let _ = h.cmd(drain("b")).unwrap();
    assert_eq!(h.state("b"), StateKind::Stopped);
}

#[test]
fn a_replica_can_be_targeted_alone() {
    let mut a = w("a");
    a.replicas = 3;
    let mut h = H::new(vec![a]);
    let _ = h.startup();
    for r in ["a#0", "a#1", "a#2"] {
        let _ = h.up(r);
    }
    assert_eq!(h.cmd(stop("a#1")).unwrap().ops(), ["shutdown a#1"]);
    assert_eq!(
        h.cmd(restart("a")).unwrap().ops(),
        ["shutdown a#0", "shutdown a#2"],
        "a#1 is already stopping"
    );
}

#[test]
fn status_reports_pids_times_restarts_and_failures() {
    let mut a = w("a");
    a.restart = RestartPolicy::OnFailure;
    a.intensity.max_restarts = 1;
    let mut h = H::new(vec![a, wd("b", &["a"], Ready)]);
    let _ = h.startup();
    let _ = h.advance(10 * MS);
    let _ = h.spawned("a");
    let t_spawn = h.now;
    let _ = h.advance(20 * MS);
    let _ = h.ready("a");
    let st = h.sup.unit_status(h.id("a"));
    assert_eq!(st.state, StateKind::Ready);
    assert_eq!(st.state.to_string(), "ready");
    assert_eq!((st.started_at, st.ready_at), (Some(t_spawn), Some(h.now)));
    assert!(st.pid.is_some());
    let _ = h.exit("a", sig(6));
    let st = h.sup.unit_status(h.id("a"));
    assert_eq!(
        (st.state, st.pid, st.ready_at),
        (StateKind::Backoff, None, None)
    );
    let _ = h.jump_to_deadline();
    let _ = h.spawned("a");
    let _ = h.exit("a", code(7));
    let all = h.sup.status();
    assert_eq!(all.iter().map(|s| s.name).collect::<Vec<_>>(), ["a", "b"]);
    let a = &all[0];
    assert_eq!((a.state, a.restarts), (StateKind::Failed, 1));
    assert_eq!(a.last_exit.map(|e| e.reason), Some(code(7)));
    let failure = a.failure.expect("a failure reason");
    assert_eq!(
        failure.to_string(),
        "restarted more than 1 times within 60s (last: exited with code 7)"
    );
    assert_eq!(
        all[1].state,
        StateKind::Spawning,
        "b started while a was ready"
    );
}
