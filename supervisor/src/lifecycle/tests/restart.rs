//! Restart policy, backoff, intensity escalation, heartbeats, stale events.

use super::*;
use crate::spec::{Backoff, Escalation, Intensity, RestartPolicy};
use DependencyCondition::Ready;

fn backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
        multiplier: 2.0,
        jitter: 0.2,
    }
}

fn crashy(name: &str) -> WorkerSpec {
    let mut s = w(name);
    s.restart = RestartPolicy::Always;
    s.backoff = backoff();
    s.intensity = Intensity {
        max_restarts: 100,
        window: Duration::from_secs(60),
        on_exceeded: Escalation::MarkFailed,
    };
    s
}

/// The delay of the `RestartScheduled` notice in `actions`, with its attempt number.
fn scheduled(actions: &[Action]) -> Option<(Duration, u32, Termination)> {
    H::notices(actions).into_iter().find_map(|n| match n {
        Notice::RestartScheduled {
            delay,
            attempt,
            after,
            ..
        } => Some((*delay, *attempt, after.clone())),
        _ => None,
    })
}

/// Crashes `name` `n` times right after each spawn; returns the delays.
fn crash_loop(h: &mut H, name: &str, n: usize) -> Vec<Duration> {
    let mut delays = Vec::new();
    for _ in 0..n {
        let _ = h.spawned(name);
        let at = h.now;
        let (delay, attempt, _) = scheduled(&h.exit(name, code(1))).expect("restart scheduled");
        assert_eq!(attempt as usize, delays.len() + 1);
        assert_eq!(h.sup.next_deadline(), Some(at + delay));
        assert_eq!(h.sup.unit_status(h.id(name)).next_restart, Some(at + delay));
        assert!(
            h.advance(delay - Duration::from_nanos(1)).is_empty(),
            "not before the delay"
        );
        assert_eq!(h.advance(Duration::from_nanos(1)).spawns(), [name]);
        delays.push(delay);
    }
    delays
}

#[test]
fn backoff_grows_within_jitter_bounds_and_is_capped() {
    let expected_high = [100, 200, 400, 800, 1000, 1000, 1000];
    let mut seen = Vec::new();
    for seed in [1, 2, 3] {
        let mut h = H::with(vec![crashy("a")], Options::default(), seed);
        let _ = h.startup();
        let delays = crash_loop(&mut h, "a", expected_high.len());
        for (k, (delay, high)) in delays.iter().zip(expected_high).enumerate() {
            let high = Duration::from_millis(high);
            let low = high.mul_f64(0.8);
            assert!(
                (low..=high).contains(delay),
                "restart {k}: {delay:?} not in [{low:?}, {high:?}]"
            );
            assert_eq!(backoff_bounds(&backoff(), k as u32), (low, high));
        }
        assert_eq!(h.sup.unit_status(h.id("a")).restarts, 7);
        seen.push(delays);
    }
    assert_ne!(seen[0], seen[1], "jitter draws differ between seeds");
    // Same seed, same delays.
    let mut h = H::with(vec![crashy("a")], Options::default(), 1);
    let _ = h.startup();
    assert_eq!(crash_loop(&mut h, "a", expected_high.len()), seen[0]);
}

#[test]
fn backoff_bounds_and_delay_edge_cases() {
    let mut b = backoff();
    b.jitter = 0.0;
    let mut rng = SmallRng::seed_from_u64(9);
    assert_eq!(backoff_delay(&b, 0, &mut rng), Duration::from_millis(100));
    assert_eq!(backoff_delay(&b, 3, &mut rng), Duration::from_millis(800));
    assert_eq!(backoff_bounds(&b, u32::MAX), (b.max, b.max));
    b.jitter = 1.0;
    assert_eq!(
        backoff_bounds(&b, 1),
        (Duration::ZERO, Duration::from_millis(200))
    );
    b.multiplier = 1.0;
    assert_eq!(backoff_bounds(&b, 50).1, Duration::from_millis(100));
}

#[test]
fn backoff_resets_after_the_unit_stayed_ready_long_enough() {
    let mut h = H::new(vec![crashy("a")]);
    let _ = h.startup();
    let _ = crash_loop(&mut h, "a", 3);
    // Ready for less than backoff.max: the sequence continues.
    let _ = h.up("a");
    let _ = h.advance(999 * MS);
    let (_, attempt, _) = scheduled(&h.exit("a", code(1))).unwrap();
    assert_eq!(attempt, 4);
    let _ = h.jump_to_deadline();
    // Ready for backoff.max: back to the first delay.
    let _ = h.up("a");
    let _ = h.advance(Duration::from_secs(1));
    let (delay, attempt, _) = scheduled(&h.exit("a", code(1))).unwrap();
    assert_eq!(attempt, 1);
    assert!(delay <= Duration::from_millis(100));
}

#[test]
fn restart_policy_decides_what_an_exit_leads_to() {
    use RestartPolicy::{Always, Never, OnFailure};
    use StateKind::{Backoff, Completed, Failed};
    let table = [
        (Always, code(0), Backoff),
        (Always, code(1), Backoff),
        (Always, sig(11), Backoff),
        (OnFailure, code(0), Completed),
        (OnFailure, code(1), Backoff),
        (OnFailure, sig(15), Backoff),
        (Never, code(0), Completed),
        (Never, code(1), Failed),
        (Never, sig(9), Failed),
    ];
    for (policy, exit, expected) in table {
        let mut a = crashy("a");
        a.restart = policy;
        let mut h = H::new(vec![a]);
        let _ = h.startup();
        let _ = h.up("a");
        let actions = h.exit("a", exit);
        assert_eq!(h.state("a"), expected, "{policy:?} after {exit}");
        let st = h.sup.unit_status(h.id("a"));
        assert_eq!(
            st.last_exit.map(|e| (e.reason, e.stop_cause)),
            Some((exit, None))
        );
        match expected {
            Completed => {
                assert!(H::notices(&actions).contains(&&Notice::Completed { unit: st.id }))
            }
            Failed => assert_eq!(
                st.failure,
                Some(&FailureReason::Terminated(Termination::Exited(exit)))
            ),
            _ => assert_eq!(
                scheduled(&actions).map(|s| s.2),
                Some(Termination::Exited(exit))
            ),
        }
        if expected != Backoff {
            assert_eq!(h.sup.next_deadline(), None, "never restarted");
        }
    }
}

/// a → b → c, plus an independent d; a crashes past its intensity limit (2 in 10 s).
fn escalation_setup(on_exceeded: Escalation) -> H {
    let mut a = crashy("a");
    a.intensity = Intensity {
        max_restarts: 2,
        window: Duration::from_secs(10),
        on_exceeded,
    };
    let mut h = H::new(vec![
        a,
        wd("b", &["a"], Ready),
        wd("c", &["b"], Ready),
        w("d"),
    ]);
    let _ = h.startup();
    for name in ["a", "d", "b", "c"] {
        let _ = h.up(name);
    }
    for _ in 0..2 {
        assert!(scheduled(&h.exit("a", code(1))).is_some());
        let _ = h.jump_to_deadline();
        let _ = h.up("a");
    }
    h
}

fn escalated(h: &H, actions: &[Action], escalation: Escalation) {
    let a = h.id("a");
    let notices = H::notices(actions);
    assert!(notices.contains(&&Notice::Escalated {
        unit: a,
        escalation
    }));
    assert!(matches!(
        h.sup.unit_status(a).failure,
        Some(FailureReason::IntensityExceeded {
            max_restarts: 2,
            last: Termination::Exited(ExitReason::Code(1)),
            ..
        })
    ));
    assert_eq!(h.state("a"), StateKind::Failed);
}

#[test]
fn intensity_exceeded_mark_failed_leaves_the_rest_running() {
    let mut h = escalation_setup(Escalation::MarkFailed);
    let actions = h.exit("a", code(1));
    escalated(&h, &actions, Escalation::MarkFailed);
    assert!(h.ops(&actions).is_empty());
    for name in ["b", "c", "d"] {
        assert_eq!(h.state(name), StateKind::Ready);
    }
    assert_eq!(h.sup.next_deadline(), None);
}

#[test]
fn intensity_exceeded_stop_dependents_stops_them_dependents_first() {
    let mut h = escalation_setup(Escalation::StopDependents);
    let actions = h.exit("a", code(1));
    escalated(&h, &actions, Escalation::StopDependents);
    assert_eq!(h.ops(&actions), ["shutdown c"], "b waits for c");
    let a = h.id("a");
    assert_eq!(
        h.sup.unit_status(h.id("c")).stop_cause,
        Some(StopCause::DependencyFailed { dependency: a })
    );
    assert_eq!(h.exit("c", code(0)).ops(), ["shutdown b"]);
    let _ = h.exit("b", code(0));
    assert_eq!(h.state("b"), StateKind::Stopped);
    assert_eq!(h.state("c"), StateKind::Stopped);
    assert_eq!(h.state("d"), StateKind::Ready);
    assert_eq!(*h.sup.phase(), Phase::Running);
}

#[test]
fn intensity_exceeded_shutdown_shuts_everything_down() {
    let mut h = escalation_setup(Escalation::Shutdown);
    let actions = h.exit("a", code(1));
    escalated(&h, &actions, Escalation::Shutdown);
    let a = h.id("a");
    assert_eq!(h.ops(&actions), ["shutdown d", "shutdown c"]);
    assert_eq!(h.exit("c", code(0)).ops(), ["shutdown b"]);
    let _ = h.exit("b", code(0));
    let report = H::report(&h.exit("d", code(0))).cloned().expect("complete");
    assert_eq!(report.cause, ShutdownCause::Escalated { unit: a });
    assert!(report.clean && !report.success());
}

#[test]
fn restarts_outside_the_window_do_not_count() {
    let mut a = crashy("a");
    a.intensity = Intensity {
        max_restarts: 2,
        window: Duration::from_secs(10),
        on_exceeded: Escalation::Shutdown,
    };
    let mut h = H::new(vec![a]);
    let _ = h.startup();
    let _ = h.spawned("a");
    for _ in 0..6 {
        let _ = h.ready("a");
        let _ = h.advance(Duration::from_secs(6)); // > window / 2: at most 2 restarts per window
        assert!(scheduled(&h.exit("a", code(1))).is_some());
        let _ = h.jump_to_deadline();
        let _ = h.spawned("a");
    }
    assert_eq!(h.sup.unit_status(h.id("a")).restarts, 6);
}

#[test]
fn zero_max_restarts_escalates_on_the_first_crash() {
    let mut a = crashy("a");
    a.intensity.max_restarts = 0;
    let mut h = H::new(vec![a]);
    let _ = h.startup();
    let _ = h.up("a");
    let actions = h.exit("a", code(0));
    escalated_zero(&h, &actions);
}

fn escalated_zero(h: &H, actions: &[Action]) {
    assert!(scheduled(actions).is_none());
    assert_eq!(h.state("a"), StateKind::Failed);
}

fn heartbeat_worker(policy: RestartPolicy) -> WorkerSpec {
    let mut a = crashy("a");
    a.restart = policy;
    a.heartbeat_timeout = Some(Duration::from_millis(500));
    a
}

#[test]
fn heartbeats_keep_a_unit_alive_and_silence_kills_and_restarts_it() {
    let mut h = H::new(vec![heartbeat_worker(RestartPolicy::OnFailure)]);
    let _ = h.startup();
    let _ = h.up("a");
    let (unit, pid) = (h.id("a"), h.pid("a"));
    for _ in 0..5 {
        assert!(h.advance(400 * MS).is_empty());
        let _ = h.feed(Event::Heartbeat { unit, pid });
    }
    assert!(h.advance(499 * MS).is_empty());
    let actions = h.advance(MS);
    assert_eq!(h.ops(&actions), ["kill a"]);
    assert!(H::notices(&actions).contains(&&Notice::Stopping {
        unit,
        pid,
        cause: StopCause::HeartbeatTimeout
    }));
    let actions = h.exit("a", sig(9));
    assert!(H::notices(&actions).contains(&&Notice::Exited {
        unit,
        pid,
        reason: sig(9),
        stop_cause: Some(StopCause::HeartbeatTimeout)
    }));
    assert_eq!(
        scheduled(&actions).map(|s| s.2),
        Some(Termination::HeartbeatTimeout)
    );
    let last = h.sup.unit_status(unit).last_exit.unwrap();
    assert_eq!(last.stop_cause, Some(StopCause::HeartbeatTimeout));
    assert_eq!(h.jump_to_deadline().spawns(), ["a"]);
}

#[test]
fn heartbeat_stale_event_kills_at_once_and_never_policy_fails() {
    let mut h = H::new(vec![heartbeat_worker(RestartPolicy::Never)]);
    let _ = h.startup();
    let _ = h.up("a");
    let (unit, pid) = (h.id("a"), h.pid("a"));
    // A stale report about another process is ignored.
    let other = Pid::from_raw(pid.as_raw() + 77);
    assert!(h
        .feed(Event::HeartbeatStale { unit, pid: other })
        .is_empty());
    assert_eq!(
        h.feed(Event::HeartbeatStale { unit, pid }).ops(),
        ["kill a"]
    );
    let _ = h.exit("a", sig(9));
    assert_eq!(
        h.sup.unit_status(unit).failure,
        Some(&FailureReason::Terminated(Termination::HeartbeatTimeout))
    );
}

#[test]
fn ready_timeout_of_a_restart_is_retried_per_policy() {
    let mut h = H::new(vec![crashy("a")]);
    let _ = h.startup();
    let _ = h.up("a");
    let _ = h.exit("a", code(1));
    let _ = h.jump_to_deadline();
    let _ = h.spawned("a");
    assert_eq!(h.advance(Duration::from_secs(1)).ops(), ["kill a"]);
    let actions = h.exit("a", sig(9));
    assert_eq!(
        scheduled(&actions).map(|s| s.2),
        Some(Termination::ReadyTimeout)
    );
    assert_eq!(*h.sup.phase(), Phase::Running);
}

#[test]
fn stale_and_unexpected_process_events_are_handled_safely() {
    let mut h = H::new(vec![crashy("a")]);
    let _ = h.startup();
    let _ = h.up("a");
    let (unit, old) = (h.id("a"), h.pid("a"));
    let _ = h.exit("a", code(1));
    let _ = h.jump_to_deadline();
    let _ = h.spawned("a");
    let new = h.pid("a");
    // Late messages about the old process change nothing.
    for event in [
        Event::Exited {
            unit,
            pid: old,
            reason: code(1),
        },
        Event::Ready { unit, pid: old },
        Event::Drained { unit, pid: old },
    ] {
        assert!(h.feed(event).is_empty());
    }
    assert_eq!(h.state("a"), StateKind::Starting);
    // A duplicate Spawned for the current process is ignored; a process nobody asked for is
    // killed rather than left untracked.
    assert!(h.feed(Event::Spawned { unit, pid: new }).is_empty());
    let stray = Pid::from_raw(4242);
    assert_eq!(
        h.feed(Event::Spawned { unit, pid: stray }),
        vec![Action::Kill { unit, pid: stray }]
    );
    assert_eq!(h.pid("a"), new);
}

#[test]
fn spawn_failures_are_retried_with_backoff() {
    let mut h = H::new(vec![crashy("a")]);
    let _ = h.startup();
    let unit = h.id("a");
    let actions = h.feed(Event::SpawnFailed {
        unit,
        error: "EACCES".into(),
    });
    assert_eq!(
        scheduled(&actions).map(|s| (s.1, s.2)),
        Some((1, Termination::SpawnFailed("EACCES".into())))
    );
    assert_eq!(h.jump_to_deadline().spawns(), ["a"]);
}
