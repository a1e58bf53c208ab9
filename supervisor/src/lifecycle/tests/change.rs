//! Changing the set of workers at runtime: add, remove (with and without drain), scale,
//! replace; id stability; refusals.

use super::*;
use crate::spec::RestartPolicy;
use nix::sys::signal::Signal;
use DependencyCondition::Ready;

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

/// Names of the units announced by `UnitAdded`, in order.
fn added(step: &Step) -> Vec<String> {
    H::notices(step)
        .into_iter()
        .filter_map(|n| match n {
            Notice::UnitAdded { unit } => Some(step.names[unit.index()].clone()),
            _ => None,
        })
        .collect()
}

/// The removal notices in `step`: `"unit NAME"` / `"worker NAME"`, in order.
fn removed(step: &Step) -> Vec<String> {
    H::notices(step)
        .into_iter()
        .filter_map(|n| match n {
            Notice::UnitRemoved { unit } => Some(format!("unit {}", step.names[unit.index()])),
            Notice::WorkerRemoved { worker } => Some(format!("worker {worker}")),
            _ => None,
        })
        .collect()
}

fn drained(h: &mut H, name: &str) -> Step {
    let (unit, pid) = (h.id(name), h.pid(name));
    h.feed(Event::Drained { unit, pid })
}

/// Names of the live units of `worker`, by replica number.
fn unit_names(h: &H, worker: &str) -> Vec<String> {
    h.sup
        .unit_ids_of(worker)
        .unwrap_or_default()
        .into_iter()
        .map(|u| h.sup.unit_name(u).to_owned())
        .collect()
}

/// Every action logged since `from` that names `unit`.
fn actions_naming(h: &H, from: usize, unit: UnitId) -> Vec<Action> {
    h.log[from..]
        .iter()
        .map(|(_, a)| a.clone())
        .filter(|a| format!("{a:?}").contains(&format!("{unit:?}")))
        .collect()
}

#[test]
fn an_added_worker_spawns_at_once_when_its_dependencies_are_met() {
    let mut h = all_up(vec![w("a")], &["a"]);
    let step = h
        .alter(|s, now| s.add_worker(now, wd("b", &["a"], Ready)))
        .unwrap();
    let b = h.id("b");
    assert_eq!(b.index(), 1, "the next id");
    assert_eq!(
        step.actions,
        vec![
            Action::Notify(Notice::UnitAdded { unit: b }),
            Action::Spawn { unit: b }
        ],
        "announced before anything names it"
    );
    assert_eq!(h.sup.unit_count(), 2);
    assert_eq!(h.sup.unit_id(1), Some(b));
    let _ = h.up("b");
    assert_eq!(h.state("b"), StateKind::Ready);
}

#[test]
fn an_added_worker_waits_for_unmet_dependencies() {
    let mut h = H::new(vec![w("a")]);
    let _ = h.startup();
    let _ = h.spawned("a");
    let mut c = wd("c", &["b"], Ready);
    c.replicas = 2;
    // b depends on a (starting, not ready); c on b, which is added in the same change.
    let step = h
        .change(Changes {
            add: vec![c, wd("b", &["a"], Ready)],
            ..Changes::default()
        })
        .unwrap();
    assert_eq!(added(&step), ["c#0", "c#1", "b"]);
    assert!(step.spawns().is_empty());
    assert_eq!(h.state("b"), StateKind::Pending);
    assert_eq!(h.ready("a").spawns(), ["b"]);
    assert_eq!(h.up("b").spawns(), ["c#0", "c#1"]);
}

#[test]
fn changes_before_startup_only_reshape_what_startup_spawns() {
    let mut h = H::new(vec![w("a"), w("b")]);
    assert!(h
        .alter(|s, now| s.add_worker(now, w("c")))
        .unwrap()
        .spawns()
        .is_empty());
    let step = h.alter(|s, now| s.remove_worker(now, "b", true)).unwrap();
    assert_eq!(
        removed(&step),
        ["unit b", "worker b"],
        "no process: at once"
    );
    let _ = h.alter(|s, now| s.set_replicas(now, "a", 2)).unwrap();
    assert_eq!(h.startup().spawns(), ["a", "a#1", "c"]);
}

#[test]
fn removal_with_drain_drains_then_stops_then_forgets() {
    let mut h = all_up(vec![w("a"), wd("b", &["a"], Ready)], &["a", "b"]);
    let (b, pid) = (h.id("b"), h.pid("b"));
    let step = h.alter(|s, now| s.remove_worker(now, "b", true)).unwrap();
    assert_eq!(step.ops(), ["drain b"]);
    assert!(H::notices(&step).contains(&&Notice::Draining { unit: b, pid }));
    let st = h.sup.unit_status(b);
    assert_eq!((st.state, st.removing), (StateKind::Draining, true));
    assert_eq!(h.sup.next_deadline(), None, "no drain timeout configured");

    let step = drained(&mut h, "b");
    assert_eq!(step.ops(), ["shutdown b"]);
    assert_eq!(h.sup.unit_status(b).stop_cause, Some(StopCause::Removed));
    assert_eq!(
        h.advance(Duration::from_secs(1)).ops(),
        ["signal b SIGTERM"]
    );
    let step = h.exit("b", code(0));
    let tail: Vec<&Notice> = H::notices(&step);
    assert_eq!(
        tail,
        [
            &Notice::Exited {
                unit: b,
                pid,
                reason: code(0),
                stop_cause: Some(StopCause::Removed)
            },
            &Notice::UnitRemoved { unit: b },
            &Notice::WorkerRemoved { worker: "b".into() },
        ]
    );
    assert!(step.ops().is_empty(), "never restarted");

    // Forgotten: the id stays issued but dead; the name is free again.
    assert!(!h.sup.is_live(b));
    assert_eq!(h.sup.lookup("b"), None);
    assert_eq!(h.sup.unit_ids_of("b"), None);
    assert_eq!(h.sup.unit_id(b.index()), None);
    assert_eq!(h.sup.unit_count(), 2);
    assert_eq!(h.sup.units().collect::<Vec<_>>(), [h.id("a")]);
    assert_eq!(h.sup.status().len(), 1);
    assert_eq!(
        h.sup.workers().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(
        h.cmd(Command::Stop {
            target: "b".into(),
            with_dependents: false
        }),
        Err(CommandError::UnknownTarget { target: "b".into() })
    );
    // Late news about the old process is ignored; a process nobody waits for is killed.
    assert!(h.feed(Event::Heartbeat { unit: b, pid }).is_empty());
    let stray = Pid::from_raw(4242);
    assert_eq!(
        h.feed(Event::Spawned {
            unit: b,
            pid: stray
        })
        .actions,
        vec![Action::Kill {
            unit: b,
            pid: stray
        }]
    );

    // Added again: a new id, never the old one.
    let step = h.alter(|s, now| s.add_worker(now, w("b"))).unwrap();
    let b2 = h.id("b");
    assert_eq!(b2.index(), 2);
    assert_eq!(step.spawns(), ["b"]);
}

#[test]
fn removal_without_drain_stops_at_once_and_units_without_a_process_go_at_once() {
    let mut f = w("f");
    f.restart = RestartPolicy::Never;
    let mut h = all_up(vec![w("a"), f], &["a", "f"]);
    let _ = h.exit("f", code(1));
    assert_eq!(h.state("f"), StateKind::Failed);
    let step = h
        .alter(|s, now| s.remove_workers(now, &["a", "f"], false))
        .unwrap();
    assert_eq!(step.ops(), ["shutdown a"]);
    assert_eq!(removed(&step), ["unit f", "worker f"]);
    let step = h.exit("a", sig(15));
    assert_eq!(removed(&step), ["unit a", "worker a"]);
    assert_eq!(h.sup.units().count(), 0);
}

#[test]
fn removal_is_refused_while_a_dependent_remains_and_a_batch_stops_dependents_first() {
    let mut h = all_up(
        vec![w("a"), wd("b", &["a"], Ready), w("c")],
        &["a", "b", "c"],
    );
    let before = format!("{:?}", h.sup.status());
    let err = h
        .alter(|s, now| s.remove_worker(now, "a", true))
        .unwrap_err();
    assert_eq!(
        err,
        ChangeError::HasDependents {
            worker: "a".into(),
            dependent: "b".into()
        }
    );
    assert!(err.to_string().contains("\"b\" depends on it"));
    assert_eq!(format!("{:?}", h.sup.status()), before, "nothing changed");

    // Both at once: both drain now, but a stops only once b has exited.
    let step = h
        .alter(|s, now| s.remove_workers(now, &["a", "b"], true))
        .unwrap();
    assert_eq!(step.ops(), ["drain a", "drain b"]);
    assert!(drained(&mut h, "a").ops().is_empty(), "b still runs");
    assert_eq!(drained(&mut h, "b").ops(), ["shutdown b"]);
    let step = h.exit("b", code(0));
    assert_eq!(removed(&step), ["unit b", "worker b"]);
    assert_eq!(step.ops(), ["shutdown a"]);
    let step = h.exit("a", code(0));
    assert_eq!(removed(&step), ["unit a", "worker a"]);
    assert_eq!(h.state("c"), StateKind::Ready);
}

#[test]
fn scaling_2_4_1_3_adds_and_retires_the_right_units_and_never_reuses_ids() {
    let mut x = w("x");
    x.replicas = 2;
    let mut h = all_up(vec![x, w("y")], &["x#0", "x#1", "y"]);
    let (y, y_pid) = (h.id("y"), h.pid("y"));
    let from = h.log.len();

    let step = h.alter(|s, now| s.set_replicas(now, "x", 4)).unwrap();
    assert_eq!(added(&step), ["x#2", "x#3"]);
    assert_eq!(step.ops(), ["spawn x#2", "spawn x#3"]);
    assert_eq!((h.id("x#2").index(), h.id("x#3").index()), (3, 4));
    let _ = h.up("x#2");
    let _ = h.up("x#3");

    let step = h.alter(|s, now| s.set_replicas(now, "x", 1)).unwrap();
    assert_eq!(step.ops(), ["drain x#3", "drain x#2", "drain x#1"]);
    assert_eq!(h.sup.worker_spec("x").unwrap().replicas, 1);
    let removing: Vec<(&str, bool)> = h
        .sup
        .status()
        .into_iter()
        .map(|s| (s.name, s.removing))
        .collect();
    assert_eq!(
        removing,
        [
            ("x#0", false),
            ("x#1", true),
            ("x#2", true),
            ("x#3", true),
            ("y", false)
        ]
    );
    // A scaled-down replica stops as soon as it drained; the others keep serving.
    assert_eq!(drained(&mut h, "x#3").ops(), ["shutdown x#3"]);
    assert_eq!(removed(&h.exit("x#3", code(0))), ["unit x#3"]);
    assert_eq!(drained(&mut h, "x#2").ops(), ["shutdown x#2"]);
    assert_eq!(removed(&h.exit("x#2", code(0))), ["unit x#2"]);

    // Up again while x#1 still drains: the lowest free numbers, brand-new ids.
    let step = h.alter(|s, now| s.set_replicas(now, "x", 3)).unwrap();
    assert_eq!(added(&step), ["x#2", "x#3"]);
    assert_eq!(step.ops(), ["spawn x#2", "spawn x#3"]);
    assert_eq!((h.id("x#2").index(), h.id("x#3").index()), (5, 6));
    assert_eq!(h.sup.unit_count(), 7);
    assert_eq!(unit_names(&h, "x"), ["x#0", "x#1", "x#2", "x#3"]);
    assert_eq!(drained(&mut h, "x#1").ops(), ["shutdown x#1"]);
    assert_eq!(removed(&h.exit("x#1", code(0))), ["unit x#1"]);
    assert_eq!(unit_names(&h, "x"), ["x#0", "x#2", "x#3"]);
    // Same number: nothing to do.
    assert!(h
        .alter(|s, now| s.set_replicas(now, "x", 3))
        .unwrap()
        .is_empty());

    // The other worker was never touched.
    assert!(actions_naming(&h, from, y).is_empty());
    assert_eq!(h.pid("y"), y_pid);
}

#[test]
fn a_single_replica_keeps_its_name_when_scaled_and_the_worker_name_targets_all() {
    let mut h = all_up(vec![w("s")], &["s"]);
    let step = h.alter(|s, now| s.set_replicas(now, "s", 2)).unwrap();
    assert_eq!(step.spawns(), ["s#1"]);
    assert_eq!(unit_names(&h, "s"), ["s", "s#1"]);
    assert_eq!(
        h.sup.lookup("s#0"),
        Some(h.id("s")),
        "NAME#0 finds replica 0"
    );
    let _ = h.up("s#1");
    let step = h.cmd(Command::Restart { target: "s".into() }).unwrap();
    assert_eq!(step.ops(), ["shutdown s", "shutdown s#1"]);
    let _ = h.exit("s", code(0));
    let _ = h.exit("s#1", code(0));
    let _ = h.up("s");
    let _ = h.up("s#1");
    assert_eq!(
        h.alter(|s, now| s.set_replicas(now, "s", 1)).unwrap().ops(),
        ["drain s#1"]
    );
}

#[test]
fn scaled_down_replicas_do_not_count_for_dependents_and_new_ones_do() {
    let mut h = all_up(vec![w("x"), wd("d", &["x"], Ready)], &["x", "d"]);
    let stop_d = || Command::Stop {
        target: "d".into(),
        with_dependents: false,
    };
    let _ = h.cmd(stop_d()).unwrap();
    let _ = h.exit("d", code(0));
    let _ = h.alter(|s, now| s.set_replicas(now, "x", 2)).unwrap();
    let _ = h.spawned("x#1");
    assert!(
        h.cmd(Command::Start { target: "d".into() })
            .unwrap()
            .spawns()
            .is_empty(),
        "x#1 is not ready yet"
    );
    assert_eq!(h.ready("x#1").spawns(), ["d"]);

    let _ = h.up("d");
    let _ = h.cmd(stop_d()).unwrap();
    let _ = h.exit("d", code(0));
    let _ = h.alter(|s, now| s.set_replicas(now, "x", 1)).unwrap();
    assert_eq!(h.state("x#1"), StateKind::Draining);
    assert_eq!(
        h.cmd(Command::Start { target: "d".into() })
            .unwrap()
            .spawns(),
        ["d"],
        "the draining x#1 no longer counts"
    );
}

#[test]
fn replace_restarts_only_that_worker_stopping_the_old_process_the_old_way() {
    let mut h = all_up(
        vec![w("a"), wd("b", &["a"], Ready), w("c")],
        &["a", "b", "c"],
    );
    let (a, c) = (h.id("a"), h.id("c"));
    let pids = (h.pid("a"), h.pid("c"));
    let from = h.log.len();
    let mut new_b = wd("b", &["a"], Ready);
    new_b.stop_signal = Signal::SIGINT;
    new_b.shutdown_grace = None;

    let step = h
        .alter(|s, now| s.replace_worker(now, new_b.clone()))
        .unwrap();
    assert_eq!(step.ops(), ["shutdown b"]);
    assert_eq!(
        h.sup.unit_status(h.id("b")).stop_cause,
        Some(StopCause::Replaced)
    );
    assert_eq!(
        h.advance(Duration::from_secs(1)).ops(),
        ["signal b SIGTERM"],
        "the old spec's grace and signal"
    );
    assert_eq!(h.exit("b", code(0)).ops(), ["spawn b"]);
    let _ = h.up("b");
    assert_eq!(h.sup.worker(h.id("b")).stop_signal, Signal::SIGINT);
    let stop_b = Command::Stop {
        target: "b".into(),
        with_dependents: false,
    };
    assert_eq!(h.cmd(stop_b).unwrap().ops(), ["signal b SIGINT"]);

    assert!(actions_naming(&h, from, a).is_empty());
    assert!(actions_naming(&h, from, c).is_empty());
    assert_eq!((h.pid("a"), h.pid("c")), pids);
}

#[test]
fn replace_waits_for_new_dependencies_and_restarts_down_units_but_not_stopped_ones() {
    let mut f = w("f");
    f.restart = RestartPolicy::Never;
    let mut h = all_up(vec![w("a"), w("b"), f, w("g")], &["a", "b", "f", "g"]);
    let _ = h.exit("f", code(1));
    let _ = h
        .cmd(Command::Stop {
            target: "g".into(),
            with_dependents: false,
        })
        .unwrap();
    let _ = h.exit("g", code(0));

    // b now depends on d, added in the same change.
    let step = h
        .change(Changes {
            add: vec![w("d")],
            replace: vec![wd("b", &["a", "d"], Ready), w("f"), w("g")],
            ..Changes::default()
        })
        .unwrap();
    assert_eq!(added(&step), ["d"]);
    assert_eq!(step.ops(), ["shutdown b", "spawn f", "spawn d"]);
    assert_eq!(
        h.state("g"),
        StateKind::Stopped,
        "stopped by hand: stays so"
    );
    assert!(h.exit("b", code(0)).spawns().is_empty(), "waits for d");
    assert_eq!(h.state("b"), StateKind::Pending);
    assert_eq!(h.up("d").spawns(), ["b"]);
}

#[test]
fn replace_with_fewer_replicas_restarts_the_kept_and_drains_the_rest() {
    let mut x = w("x");
    x.replicas = 3;
    let mut h = all_up(vec![x.clone()], &["x#0", "x#1", "x#2"]);
    x.replicas = 1;
    let step = h.alter(|s, now| s.replace_worker(now, x)).unwrap();
    assert_eq!(step.ops(), ["shutdown x#0", "drain x#2", "drain x#1"]);
    assert_eq!(h.exit("x#0", code(0)).ops(), ["spawn x#0"]);
    assert_eq!(unit_names(&h, "x"), ["x#0", "x#1", "x#2"]);
}

#[test]
fn a_unit_removed_while_spawning_is_stopped_once_it_has_its_process() {
    let mut h = H::new(vec![w("a"), w("b")]);
    let _ = h.startup();
    let _ = h.alter(|s, now| s.remove_workers(now, &["a", "b"], true));
    assert_eq!(h.spawned("a").ops(), ["shutdown a"], "not ready: no drain");
    let b = h.id("b");
    let step = h.feed(Event::SpawnFailed {
        unit: b,
        error: "no such file".into(),
    });
    assert_eq!(removed(&step), ["unit b", "worker b"]);
    assert_eq!(removed(&h.exit("a", code(0))), ["unit a", "worker a"]);
}

#[test]
fn commands_leave_units_being_removed_alone_except_stop() {
    let mut x = w("x");
    x.replicas = 2;
    let mut h = all_up(vec![x], &["x#0", "x#1"]);
    let _ = h.alter(|s, now| s.set_replicas(now, "x", 1)).unwrap();
    assert!(h
        .cmd(Command::Restart { target: "x".into() })
        .unwrap()
        .ops()
        .contains(&"shutdown x#0".to_owned()));
    assert_eq!(h.state("x#1"), StateKind::Draining, "not restarted");
    let step = h
        .cmd(Command::Stop {
            target: "x#1".into(),
            with_dependents: false,
        })
        .unwrap();
    assert_eq!(step.ops(), ["shutdown x#1"], "the drain is cut short");
    assert_eq!(removed(&h.exit("x#1", code(0))), ["unit x#1"]);
}

#[test]
fn a_drain_timeout_ends_the_drain_of_a_removed_unit() {
    let mut a = w("a");
    a.drain_timeout = Some(Duration::from_secs(3));
    let mut h = all_up(vec![a], &["a"]);
    assert_eq!(
        h.alter(|s, now| s.remove_worker(now, "a", true))
            .unwrap()
            .ops(),
        ["drain a"]
    );
    assert!(h.advance(2999 * MS).is_empty());
    assert_eq!(h.advance(MS).ops(), ["shutdown a"]);
}

#[test]
fn bad_changes_are_refused_with_the_problem_named_and_change_nothing() {
    let mut h = all_up(vec![w("a"), wd("b", &["a"], Ready)], &["a", "b"]);
    let _ = h.alter(|s, now| s.remove_worker(now, "b", true)).unwrap();
    let mut always = w("a");
    always.restart = RestartPolicy::Always;
    let table: Vec<(Changes, ChangeError)> = vec![
        (
            Changes {
                add: vec![w("a")],
                ..Changes::default()
            },
            ChangeError::WorkerExists { name: "a".into() },
        ),
        (
            Changes {
                add: vec![w("b")],
                ..Changes::default()
            },
            ChangeError::BeingRemoved { name: "b".into() },
        ),
        (
            Changes {
                add: vec![w("x#1")],
                ..Changes::default()
            },
            ChangeError::Spec(SpecError::InvalidName { name: "x#1".into() }),
        ),
        (
            Changes {
                add: vec![wd("n", &["nope"], Ready)],
                ..Changes::default()
            },
            ChangeError::Spec(SpecError::UnknownDependency {
                worker: "n".into(),
                dependency: "nope".into(),
            }),
        ),
        (
            Changes {
                add: vec![wd("n", &["b"], Ready)],
                ..Changes::default()
            },
            ChangeError::DependsOnRemoved {
                worker: "n".into(),
                dependency: "b".into(),
            },
        ),
        (
            Changes {
                replace: vec![w("nope")],
                ..Changes::default()
            },
            ChangeError::UnknownWorker {
                name: "nope".into(),
            },
        ),
        (
            Changes {
                scale: vec![("b".into(), 2)],
                ..Changes::default()
            },
            ChangeError::BeingRemoved { name: "b".into() },
        ),
        (
            Changes {
                scale: vec![("a".into(), 0)],
                ..Changes::default()
            },
            ChangeError::Spec(SpecError::ZeroReplicas { worker: "a".into() }),
        ),
        (
            Changes {
                add: vec![wd("n", &["a"], Ready)],
                replace: vec![wd("a", &["n"], Ready)],
                ..Changes::default()
            },
            ChangeError::Spec(SpecError::Cycle {
                cycle: vec!["a".into(), "n".into(), "a".into()],
            }),
        ),
        (
            Changes {
                add: vec![wd("n", &["a"], DependencyCondition::CompletedSuccessfully)],
                ..Changes::default()
            },
            ChangeError::Spec(SpecError::NeverCompletes {
                worker: "n".into(),
                dependency: "a".into(),
            }),
        ),
        (
            Changes {
                replace: vec![w("a")],
                remove: vec!["a".into()],
                ..Changes::default()
            },
            ChangeError::Conflict { name: "a".into() },
        ),
    ];
    // NeverCompletes needs `a` to be always restarted: make it so first.
    let _ = h.alter(|s, now| s.replace_worker(now, always)).unwrap();
    let _ = h.exit("a", code(0));
    let _ = h.up("a");
    let status = format!("{:?}", h.sup.status());
    let count = h.sup.unit_count();
    for (changes, expected) in table {
        let err = h.change(changes).expect_err("must be refused");
        assert_eq!(err, expected);
        assert!(!err.to_string().is_empty());
        assert_eq!(format!("{:?}", h.sup.status()), status, "{expected:?}");
        assert_eq!(h.sup.unit_count(), count);
    }
}

#[test]
fn changes_are_refused_once_shutdown_began_and_removals_in_flight_finish() {
    let mut h = all_up(vec![w("a"), w("b")], &["a", "b"]);
    let _ = h.alter(|s, now| s.remove_worker(now, "a", true)).unwrap();
    assert_eq!(h.state("a"), StateKind::Draining);
    let step = h.feed(Event::Shutdown { fast: false });
    assert_eq!(step.ops(), ["shutdown b", "shutdown a"]);
    type Change = fn(&mut Supervisor, Instant) -> Result<Vec<Action>, ChangeError>;
    let changes: [Change; 4] = [
        |s, now| s.add_worker(now, w("c")),
        |s, now| s.remove_worker(now, "b", false),
        |s, now| s.set_replicas(now, "b", 2),
        |s, now| s.replace_worker(now, w("b")),
    ];
    for f in changes {
        assert_eq!(h.alter(f).unwrap_err(), ChangeError::ShuttingDown);
    }
    let _ = h.exit("b", code(0));
    let step = h.exit("a", code(0));
    assert_eq!(removed(&step), ["unit a", "worker a"]);
    assert!(H::report(&step).is_some_and(ShutdownReport::success));
    assert_eq!(
        h.alter(|s, now| s.add_worker(now, w("c"))).unwrap_err(),
        ChangeError::ShuttingDown
    );
}
