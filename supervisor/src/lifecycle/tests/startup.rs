//! Startup in dependency order, conditions, ready timeouts and the startup policy; spec checks.

use super::*;
use crate::spec::{Backoff, RestartPolicy, StartupFailure};
use DependencyCondition::{CompletedSuccessfully, Ready, Started};

fn diamond() -> Vec<WorkerSpec> {
    vec![
        w("a"),
        wd("b", &["a"], Ready),
        wd("c", &["a"], Ready),
        wd("d", &["b", "c"], Ready),
    ]
}

#[test]
fn diamond_starts_in_dependency_order_with_independent_units_together() {
    let mut h = H::new(diamond());
    assert_eq!(h.startup().spawns(), ["a"]);
    assert!(
        h.spawned("a").spawns().is_empty(),
        "b, c wait for a to be ready"
    );
    assert_eq!(
        h.ready("a").spawns(),
        ["b", "c"],
        "b and c in the same step"
    );
    assert!(h.up("b").spawns().is_empty(), "d waits for c too");
    assert_eq!(h.spawned("c").spawns(), Vec::<String>::new());
    let actions = h.ready("c");
    assert_eq!(h.spawns(&actions), ["d"]);
    assert_eq!(*h.sup.phase(), Phase::Starting);
    let actions = h.up("d");
    assert!(H::notices(&actions).contains(&&Notice::StartupComplete { failed: vec![] }));
    assert_eq!(*h.sup.phase(), Phase::Running);
    // A second Startup changes nothing.
    assert!(h.startup().is_empty());
}

#[test]
fn dependency_conditions_decide_when_the_dependent_spawns() {
    // Step at which b is spawned: 0 = a spawned, 1 = a ready, 2 = a exited 0, None = never.
    let table: [(DependencyCondition, ExitReason, Option<usize>); 5] = [
        (Started, code(0), Some(0)),
        (Ready, code(0), Some(1)),
        (CompletedSuccessfully, code(0), Some(2)),
        (CompletedSuccessfully, code(1), None),
        (CompletedSuccessfully, sig(9), None),
    ];
    for (condition, exit, expected) in table {
        let mut a = w("a");
        a.restart = RestartPolicy::Never;
        let mut h = H::new(vec![a, wd("b", &["a"], condition)]);
        assert_eq!(h.startup().spawns(), ["a"]);
        let steps = [h.spawned("a"), h.ready("a"), h.exit("a", exit)];
        let at = steps.iter().position(|s| h.spawns(s) == ["b"]);
        assert_eq!(at, expected, "{condition:?} with a {exit}");
        if expected.is_none() {
            assert_eq!(h.state("a"), StateKind::Failed);
            let b = h.sup.unit_status(h.id("b"));
            assert_eq!((b.state, b.blocked_by), (StateKind::Pending, Some("a")));
            assert_eq!(
                *h.sup.phase(),
                Phase::Running,
                "blocked units do not hold startup"
            );
        }
    }
}

#[test]
fn completed_on_failure_unit_satisfies_after_a_retry() {
    let mut h = H::new(vec![
        w("migrate"),
        wd("api", &["migrate"], CompletedSuccessfully),
    ]);
    let _ = h.startup();
    let _ = h.spawned("migrate");
    let actions = h.exit("migrate", code(1));
    assert!(h.spawns(&actions).is_empty());
    assert_eq!(h.state("migrate"), StateKind::Backoff);
    assert_eq!(h.jump_to_deadline().spawns(), ["migrate"]);
    let _ = h.spawned("migrate");
    assert_eq!(h.exit("migrate", code(0)).spawns(), ["api"]);
    assert_eq!(h.state("migrate"), StateKind::Completed);
}

#[test]
fn replicas_are_named_and_a_group_is_ready_when_all_replicas_are() {
    let mut a = w("a");
    a.replicas = 3;
    let mut h = H::new(vec![a, wd("b", &["a"], Ready)]);
    assert_eq!(h.startup().spawns(), ["a#0", "a#1", "a#2"]);
    assert!(h.sup.lookup("a").is_none());
    assert_eq!(h.sup.resolve("a").unwrap().len(), 3);
    for r in ["a#0", "a#1", "a#2"] {
        let _ = h.spawned(r);
    }
    assert!(h.ready("a#0").spawns().is_empty());
    assert!(h.ready("a#2").spawns().is_empty());
    assert_eq!(h.ready("a#1").spawns(), ["b"]);
    let st = h.sup.unit_status(h.id("a#2"));
    assert_eq!((st.worker, st.replica), ("a", 2));
}

#[test]
fn started_condition_needs_every_replica_spawned() {
    let mut a = w("a");
    a.replicas = 2;
    let mut h = H::new(vec![a, wd("b", &["a"], Started)]);
    let _ = h.startup();
    assert!(h.spawned("a#0").spawns().is_empty());
    assert_eq!(h.spawned("a#1").spawns(), ["b"]);
}

/// a (times out) → b; c independent and ready.
fn timeout_setup(policy: StartupFailure) -> H {
    let options = Options {
        startup_failure: policy,
        ..Options::default()
    };
    let mut h = H::with(vec![w("a"), wd("b", &["a"], Ready), w("c")], options, 1);
    assert_eq!(h.startup().spawns(), ["a", "c"]);
    let _ = h.spawned("a");
    let _ = h.up("c");
    h
}

#[test]
fn ready_timeout_with_abort_stops_everything_and_never_starts_dependents() {
    let mut h = timeout_setup(StartupFailure::Abort);
    assert!(h.advance(999 * MS).is_empty(), "not yet");
    let actions = h.advance(MS);
    assert_eq!(h.ops(&actions), ["kill a", "shutdown c"]);
    let a = h.id("a");
    assert!(H::notices(&actions).contains(&&Notice::ShutdownStarted {
        cause: ShutdownCause::StartupAborted { unit: a },
        fast: false
    }));
    assert_eq!(h.state("b"), StateKind::Stopped);
    let _ = h.exit("a", sig(9));
    let actions = h.exit("c", code(0));
    let report = H::report(&actions).expect("shutdown complete");
    assert_eq!(report.cause, ShutdownCause::StartupAborted { unit: a });
    assert!(report.clean, "the startup kill is not a shutdown kill");
    assert!(!report.success());
    assert_eq!(report.failed, vec![a]);
    assert_eq!(
        h.sup.unit_status(a).failure,
        Some(&FailureReason::Terminated(Termination::ReadyTimeout))
    );
    assert!(!h
        .log
        .iter()
        .any(|(_, x)| h.ops(std::slice::from_ref(x)) == ["spawn b"]));
}

#[test]
fn ready_timeout_with_continue_keeps_the_rest_and_blocks_dependents() {
    let mut h = timeout_setup(StartupFailure::Continue);
    let actions = h.advance(Duration::from_secs(1));
    assert_eq!(h.ops(&actions), ["kill a"]);
    assert_eq!(h.state("a"), StateKind::Stopping);
    let actions = h.exit("a", sig(9));
    let a = h.id("a");
    assert!(H::notices(&actions).contains(&&Notice::StartupComplete { failed: vec![a] }));
    assert_eq!(h.state("a"), StateKind::Failed);
    assert_eq!(h.state("c"), StateKind::Ready);
    let b = h.sup.unit_status(h.id("b"));
    assert_eq!((b.state, b.blocked_by), (StateKind::Pending, Some("a")));
    assert_eq!(*h.sup.phase(), Phase::Running);
    assert_eq!(h.sup.next_deadline(), None, "nothing left to do");
    assert!(h
        .log
        .iter()
        .all(|(_, x)| h.spawns(std::slice::from_ref(x)) != ["b"]));
}

#[test]
fn blocking_propagates_down_a_chain() {
    let options = Options {
        startup_failure: StartupFailure::Continue,
        ..Options::default()
    };
    let mut a = w("a");
    a.restart = RestartPolicy::Never;
    let mut h = H::with(
        vec![a, wd("b", &["a"], Ready), wd("c", &["b"], Started)],
        options,
        1,
    );
    let _ = h.startup();
    let _ = h.spawned("a");
    let actions = h.exit("a", code(2));
    let a = h.id("a");
    assert!(H::notices(&actions).contains(&&Notice::Failed {
        unit: a,
        reason: FailureReason::Terminated(Termination::Exited(code(2)))
    }));
    assert_eq!(h.sup.unit_status(h.id("c")).blocked_by, Some("b"));
    assert!(H::notices(&actions).contains(&&Notice::StartupComplete { failed: vec![a] }));
}

#[test]
fn spawn_failure_without_restart_fails_startup() {
    let mut a = w("a");
    a.restart = RestartPolicy::Never;
    let mut h = H::new(vec![a, w("b")]);
    let _ = h.startup();
    let unit = h.id("a");
    let actions = h.feed(Event::SpawnFailed {
        unit,
        error: "no such file".into(),
    });
    assert!(H::notices(&actions).contains(&&Notice::ShutdownStarted {
        cause: ShutdownCause::StartupAborted { unit },
        fast: false
    }));
    let st = h.sup.unit_status(unit);
    assert_eq!(st.state, StateKind::Failed);
    assert_eq!(st.spawn_error, Some("no such file"));
    // b is still being spawned: shutdown waits for it, then stops it.
    assert!(H::report(&actions).is_none());
    let actions = h.spawned("b");
    assert_eq!(h.ops(&actions), ["shutdown b"]);
}

#[test]
fn crash_before_ready_on_first_start_is_retried_not_failed() {
    let mut h = H::new(vec![w("a"), wd("b", &["a"], Ready)]);
    let _ = h.startup();
    let _ = h.spawned("a");
    let actions = h.exit("a", code(1));
    assert!(matches!(
        H::notices(&actions)[..],
        [
            Notice::Exited { .. },
            Notice::RestartScheduled { attempt: 1, .. }
        ]
    ));
    assert_eq!(*h.sup.phase(), Phase::Starting);
    assert_eq!(h.jump_to_deadline().spawns(), ["a"]);
    let _ = h.spawned("a");
    assert_eq!(h.ready("a").spawns(), ["b"]);
}

#[test]
fn invalid_specs_are_refused_with_the_problem_named() {
    let mut zero = w("z");
    zero.replicas = 0;
    let mut always = w("m");
    always.restart = RestartPolicy::Always;
    let bad_backoff = |f: fn(&mut Backoff)| {
        let mut s = w("k");
        f(&mut s.backoff);
        vec![s]
    };
    let table: Vec<(Vec<WorkerSpec>, SpecError)> = vec![
        (
            vec![w("")],
            SpecError::InvalidName {
                name: String::new(),
            },
        ),
        (
            vec![w("a#1")],
            SpecError::InvalidName { name: "a#1".into() },
        ),
        (
            vec![w("a"), w("a")],
            SpecError::DuplicateWorker { name: "a".into() },
        ),
        (vec![zero], SpecError::ZeroReplicas { worker: "z".into() }),
        (
            vec![wd("a", &["nope"], Ready)],
            SpecError::UnknownDependency {
                worker: "a".into(),
                dependency: "nope".into(),
            },
        ),
        (
            vec![wd("a", &["a"], Ready)],
            SpecError::SelfDependency { worker: "a".into() },
        ),
        (
            vec![
                w("x"),
                wd("a", &["c"], Ready),
                wd("b", &["a"], Ready),
                wd("c", &["b", "x"], Ready),
            ],
            SpecError::Cycle {
                cycle: vec!["a".into(), "c".into(), "b".into(), "a".into()],
            },
        ),
        (
            vec![always, wd("api", &["m"], CompletedSuccessfully)],
            SpecError::NeverCompletes {
                worker: "api".into(),
                dependency: "m".into(),
            },
        ),
        (
            bad_backoff(|b| b.multiplier = 0.5),
            SpecError::InvalidBackoff {
                worker: "k".into(),
                problem: "multiplier must be a finite number >= 1",
            },
        ),
        (
            bad_backoff(|b| b.jitter = 1.5),
            SpecError::InvalidBackoff {
                worker: "k".into(),
                problem: "jitter must be between 0.0 and 1.0",
            },
        ),
        (
            bad_backoff(|b| b.initial = b.max + MS),
            SpecError::InvalidBackoff {
                worker: "k".into(),
                problem: "initial must not exceed max",
            },
        ),
    ];
    for (workers, expected) in table {
        let err = Supervisor::new(workers, Options::default(), SmallRng::seed_from_u64(0))
            .expect_err("must be refused");
        assert_eq!(err, expected);
        assert!(!err.to_string().is_empty());
    }
    let cycle = SpecError::Cycle {
        cycle: vec!["a".into(), "b".into(), "a".into()],
    };
    assert_eq!(
        cycle.to_string(),
        "dependency cycle a -> b -> a: remove one of these dependencies"
    );
}

#[test]
fn unit_ids_are_dense_and_units_iterate_in_dependency_order() {
    let h = H::new(vec![wd("late", &["early"], Ready), w("early")]);
    let order: Vec<&str> = h.sup.units().map(|u| h.sup.unit_name(u)).collect();
    assert_eq!(order, ["early", "late"]);
    assert_eq!(h.sup.unit_count(), 2);
    assert_eq!(h.id("late").index(), 0);
    assert_eq!(h.sup.worker(h.id("late")).name, "late");
}
