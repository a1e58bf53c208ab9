//! Property tests over random dependency graphs and random event orders.
//!
//! After every step the properties below must hold; at the end a shutdown must complete when
//! every process obeys its stop.
//! - A unit is never spawned while it has a process (except respawn on its own exit).
//! - A unit started from pending is spawned only once each dependency meets its condition.
//! - Nothing is spawned once shutdown has begun.
//! - Signals, kills and control messages name the unit's own process.
//! - In an ordered shutdown, a unit's stop begins only when none of its dependents has a process.
//! - No deadline is left in the past.
//! - Workers are added, removed, scaled and replaced at random: new units get fresh ids
//!   (announced before use), removed ones are never named again, units being removed are never
//!   spawned and do not count for dependencies, every worker has `replicas` units not being
//!   removed, and live unit names are unique.

use super::*;
use crate::spec::{Backoff, RestartPolicy};
use proptest::prelude::*;
use proptest::test_runner::Config;
use DependencyCondition::{CompletedSuccessfully, Ready, Started};

/// A generated worker: dependencies as (raw index, condition), replicas, policy, control
/// channel, heartbeat monitored.
type GenWorker = (Vec<(usize, u8)>, u32, u8, bool, bool);

fn specs(gen: &[GenWorker]) -> Vec<WorkerSpec> {
    let mut out: Vec<WorkerSpec> = Vec::new();
    for (i, (deps, replicas, policy, control, heartbeat)) in gen.iter().enumerate() {
        let mut s = w(&format!("w{i}"));
        s.replicas = *replicas;
        s.restart = [
            RestartPolicy::Always,
            RestartPolicy::OnFailure,
            RestartPolicy::Never,
        ][usize::from(*policy) % 3];
        s.backoff = Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(400),
            multiplier: 2.0,
            jitter: 0.5,
        };
        s.intensity.max_restarts = 3;
        s.intensity.window = Duration::from_secs(5);
        s.shutdown_grace = control.then_some(Duration::from_millis(300));
        s.heartbeat_timeout = heartbeat.then_some(Duration::from_millis(700));
        s.drain_timeout = Some(Duration::from_secs(1));
        if i > 0 {
            for &(raw, cond) in deps {
                let d = raw % i;
                let mut condition = [Started, Ready, CompletedSuccessfully][usize::from(cond) % 3];
                if condition == CompletedSuccessfully && out[d].restart == RestartPolicy::Always {
                    condition = Ready;
                }
                if !s.depends_on.iter().any(|x| x.name == out[d].name) {
                    s.depends_on
                        .push(Dependency::new(out[d].name.clone(), condition));
                }
            }
        }
        out.push(s);
    }
    out
}

/// One generated input: (kind, unit selector, milliseconds / variant).
type GenOp = (u8, usize, u32);

/// What the checker needs to know about a unit before a step.
#[derive(Debug, Clone, Copy)]
struct Before {
    state: StateKind,
    pid: Option<Pid>,
    removing: bool,
}

/// A unit that does not exist (yet, or any more).
const ABSENT: Before = Before {
    state: StateKind::Stopped,
    pid: None,
    removing: false,
};

fn snapshot(sup: &Supervisor) -> Vec<Before> {
    let mut v = vec![ABSENT; sup.unit_count()];
    for s in sup.status() {
        v[s.id.index()] = Before {
            state: s.state,
            pid: s.pid,
            removing: s.removing,
        };
    }
    v
}

/// The snapshot entry of unit index `i` (absent if it did not exist then).
fn at(snap: &[Before], i: usize) -> Before {
    snap.get(i).copied().unwrap_or(ABSENT)
}

/// Structural invariants of the unit set.
fn check_units(sup: &Supervisor) -> Result<(), TestCaseError> {
    let mut names = std::collections::HashSet::new();
    for u in sup.units() {
        prop_assert!(sup.is_live(u));
        prop_assert!(
            names.insert(sup.unit_name(u).to_owned()),
            "two live units named {}",
            sup.unit_name(u)
        );
    }
    for spec in sup.workers() {
        let kept = sup
            .unit_ids_of(&spec.name)
            .unwrap_or_default()
            .into_iter()
            .filter(|&u| !sup.unit_status(u).removing)
            .count();
        prop_assert_eq!(kept, spec.replicas as usize, "units of {}", spec.name);
    }
    Ok(())
}

fn alive(state: StateKind) -> bool {
    matches!(
        state,
        StateKind::Spawning
            | StateKind::Starting
            | StateKind::Ready
            | StateKind::Draining
            | StateKind::Stopping
    )
}

fn meets(state: StateKind, condition: DependencyCondition) -> bool {
    match condition {
        Started => matches!(
            state,
            StateKind::Starting | StateKind::Ready | StateKind::Completed
        ),
        Ready => state == StateKind::Ready,
        CompletedSuccessfully => state == StateKind::Completed,
    }
}

/// Checks one step's actions against the state before and after it.
fn check_step(
    h: &H,
    before: &[Before],
    phase_before: &Phase,
    event: Option<&Event>,
    actions: &[Action],
) -> Result<(), TestCaseError> {
    let sup = &h.sup;
    let after = snapshot(sup);
    let mut spawned = Vec::new();
    let mut announced = Vec::new();
    for action in actions {
        if let Action::Notify(Notice::UnitAdded { unit }) = action {
            announced.push(unit.index());
        }
        if let Some(unit) = named_unit(action) {
            let i = unit.index();
            prop_assert!(
                i < before.len() || announced.contains(&i),
                "{action:?} names a unit not announced"
            );
        }
        match action {
            Action::Notify(Notice::UnitAdded { unit }) => {
                prop_assert!(unit.index() >= before.len(), "id {unit:?} reused");
            }
            Action::Notify(Notice::UnitRemoved { unit }) => {
                prop_assert!(!sup.is_live(*unit), "{unit:?} removed but live");
                prop_assert!(!alive(at(&after, unit.index()).state));
            }
            Action::Spawn { unit } => {
                let i = unit.index();
                let name = sup.unit_name(*unit);
                prop_assert!(!spawned.contains(&i), "{name} spawned twice in one step");
                prop_assert!(sup.is_live(*unit), "{name} spawned after its removal");
                prop_assert!(!after[i].removing, "{name} spawned while being removed");
                spawned.push(i);
                prop_assert!(
                    !matches!(phase_before, Phase::ShuttingDown { .. } | Phase::Done(_)),
                    "{name} spawned during shutdown"
                );
                let own_exit = matches!(event, Some(Event::Exited { unit: u, .. }) if u == unit);
                prop_assert!(
                    !alive(at(before, i).state) || own_exit,
                    "{name} spawned while {}",
                    at(before, i).state
                );
                if i >= before.len()
                    || matches!(
                        before[i].state,
                        StateKind::Pending
                            | StateKind::Stopped
                            | StateKind::Failed
                            | StateKind::Completed
                    )
                {
                    for dep in &sup.worker(*unit).depends_on {
                        for r in sup.unit_ids_of(&dep.name).unwrap() {
                            if after[r.index()].removing {
                                continue;
                            }
                            let st = after[r.index()].state;
                            prop_assert!(
                                meets(st, dep.condition),
                                "{name} spawned while dependency {} is {st} (needs {:?})",
                                sup.unit_name(r),
                                dep.condition
                            );
                        }
                    }
                }
            }
            Action::SendShutdown { unit, pid }
            | Action::SendDrain { unit, pid }
            | Action::Signal { unit, pid, .. }
            | Action::Kill { unit, pid } => {
                let i = unit.index();
                prop_assert!(
                    at(before, i).pid == Some(*pid) || after[i].pid == Some(*pid),
                    "{action:?} names a process that is not the unit's"
                );
            }
            Action::Notify(Notice::Stopping {
                unit,
                cause: StopCause::Shutdown,
                ..
            }) if matches!(sup.phase(), Phase::ShuttingDown { fast: false, .. }) => {
                let me = sup.worker(*unit).name.clone();
                for d in sup.units() {
                    let depends = sup.worker(d).depends_on.iter().any(|x| x.name == me);
                    prop_assert!(
                        !depends || !alive(after[d.index()].state),
                        "{} stopped while its dependent {} is {}",
                        sup.unit_name(*unit),
                        sup.unit_name(d),
                        after[d.index()].state
                    );
                }
            }
            _ => {}
        }
    }
    if let Some(due) = sup.next_deadline() {
        prop_assert!(due > h.now, "deadline left in the past");
    }
    check_units(sup)
}

/// The unit an action names, if any (notices about units included).
fn named_unit(action: &Action) -> Option<UnitId> {
    match action {
        Action::Spawn { unit }
        | Action::SendShutdown { unit, .. }
        | Action::SendDrain { unit, .. }
        | Action::Signal { unit, .. }
        | Action::Kill { unit, .. }
        | Action::Notify(
            Notice::Started { unit, .. }
            | Notice::SpawnFailed { unit, .. }
            | Notice::Ready { unit, .. }
            | Notice::Draining { unit, .. }
            | Notice::Stopping { unit, .. }
            | Notice::Exited { unit, .. }
            | Notice::RestartScheduled { unit, .. }
            | Notice::Completed { unit }
            | Notice::Failed { unit, .. }
            | Notice::Escalated { unit, .. }
            | Notice::Stopped { unit }
            | Notice::UnitAdded { unit }
            | Notice::UnitRemoved { unit },
        ) => Some(*unit),
        Action::Notify(
            Notice::StartupComplete { .. }
            | Notice::ShutdownStarted { .. }
            | Notice::WorkerRemoved { .. },
        )
        | Action::ShutdownComplete(_) => None,
    }
}

/// A random change to the set of workers, built around the worker of `unit` (if any).
fn random_change(h: &H, unit: Option<UnitId>, n: u32) -> Changes {
    let Some(unit) = unit else {
        return Changes {
            add: vec![w(&format!("n{}", h.sup.unit_count()))],
            ..Changes::default()
        };
    };
    let spec = h.sup.worker(unit).clone();
    match n % 5 {
        0 => Changes {
            scale: vec![(spec.name, 1 + n % 3)],
            drain: n % 2 == 0,
            ..Changes::default()
        },
        1 => {
            let mut spec = spec;
            spec.replicas = 1 + (n / 5) % 3;
            spec.shutdown_grace = None;
            Changes {
                replace: vec![spec],
                drain: n % 2 == 0,
                ..Changes::default()
            }
        }
        2 | 3 => {
            let mut new = w(&format!("n{}", h.sup.unit_count()));
            new.replicas = 1 + n % 2;
            let condition = [Started, Ready][(n / 5) as usize % 2];
            new.depends_on.push(Dependency::new(spec.name, condition));
            Changes {
                add: vec![new],
                ..Changes::default()
            }
        }
        _ => Changes {
            remove: vec![spec.name],
            drain: n % 2 == 0,
            ..Changes::default()
        },
    }
}

/// Turns a generated op into an event or command for the current state (or nothing).
fn apply(h: &mut H, (kind, sel, n): GenOp) -> Result<(), TestCaseError> {
    let units: Vec<UnitId> = h.sup.units().collect();
    if kind % 12 == 11 || units.is_empty() {
        let before = snapshot(&h.sup);
        let phase = h.sup.phase().clone();
        let unit = (!units.is_empty()).then(|| units[sel % units.len()]);
        let changes = random_change(h, unit, n);
        match h.change(changes) {
            Ok(actions) => check_step(h, &before, &phase, None, &actions)?,
            Err(e) => prop_assert!(
                !matches!(
                    e,
                    ChangeError::Conflict { .. } | ChangeError::UnknownWorker { .. }
                ),
                "unexpected refusal: {e}"
            ),
        }
        return Ok(());
    }
    let unit = units[sel % units.len()];
    let st = h.sup.unit_status(unit);
    let (state, pid) = (st.state, st.pid);
    let name = h.sup.unit_name(unit).to_owned();
    let before = snapshot(&h.sup);
    let phase = h.sup.phase().clone();
    let event = match (kind % 12, pid) {
        (0 | 1, _) if state == StateKind::Spawning => {
            h.next_pid += 1;
            Some(Event::Spawned {
                unit,
                pid: Pid::from_raw(h.next_pid),
            })
        }
        (2, _) if state == StateKind::Spawning => Some(Event::SpawnFailed {
            unit,
            error: "boom".into(),
        }),
        (0..=2, Some(pid)) => Some(Event::Ready { unit, pid }),
        (3, Some(pid)) => Some(Event::Exited {
            unit,
            pid,
            reason: [code(0), code(1), sig(9)][n as usize % 3],
        }),
        (4, Some(pid)) => Some(Event::HeartbeatStale { unit, pid }),
        (5, Some(pid)) => Some(Event::Drained { unit, pid }),
        (6, _) => {
            h.now += Duration::from_millis(u64::from(n));
            Some(Event::Tick)
        }
        (7, _) => Some(Event::Shutdown { fast: n % 4 == 0 }),
        (8..=10, _) => {
            let target = if n % 2 == 0 {
                name
            } else {
                h.sup.worker(unit).name.clone()
            };
            let command = match kind % 4 {
                0 => Command::Start { target },
                1 => Command::Stop {
                    target,
                    with_dependents: n % 3 == 0,
                },
                2 => Command::Restart { target },
                _ => Command::Drain { target },
            };
            if let Ok(actions) = h.cmd(command) {
                check_step(h, &before, &phase, None, &actions)?;
            }
            None
        }
        _ => None,
    };
    if let Some(event) = event {
        let actions = h.feed(event.clone());
        check_step(h, &before, &phase, Some(&event), &actions)?;
    }
    Ok(())
}

/// Shuts down with every process obeying at once; the report must come, exactly once.
fn finish(h: &mut H) -> Result<(), TestCaseError> {
    let before = snapshot(&h.sup);
    let phase = h.sup.phase().clone();
    let actions = h.feed(Event::Shutdown { fast: false });
    check_step(h, &before, &phase, None, &actions)?;
    for _ in 0..200 {
        if matches!(h.sup.phase(), Phase::Done(_)) {
            break;
        }
        let units: Vec<UnitId> = h.sup.units().collect();
        for unit in units {
            let st = h.sup.unit_status(unit);
            let before = snapshot(&h.sup);
            let phase = h.sup.phase().clone();
            let event = match (st.state, st.pid) {
                (StateKind::Spawning, _) => {
                    h.next_pid += 1;
                    Event::Spawned {
                        unit,
                        pid: Pid::from_raw(h.next_pid),
                    }
                }
                (StateKind::Stopping, Some(pid)) => Event::Exited {
                    unit,
                    pid,
                    reason: code(0),
                },
                _ => continue,
            };
            let actions = h.feed(event.clone());
            check_step(h, &before, &phase, Some(&event), &actions)?;
        }
        if let Some(due) = h.sup.next_deadline() {
            h.now = due;
            let _ = h.feed(Event::Tick);
        }
    }
    prop_assert!(
        matches!(h.sup.phase(), Phase::Done(_)),
        "shutdown never completed"
    );
    let reports = h
        .log
        .iter()
        .filter(|(_, a)| matches!(a, Action::ShutdownComplete(_)))
        .count();
    prop_assert_eq!(reports, 1, "exactly one shutdown report");
    prop_assert!(h.sup.status().iter().all(|s| !alive(s.state)));
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: 300, failure_persistence: None, ..Config::default() })]

    #[test]
    fn random_graphs_and_event_orders_keep_the_invariants(
        gen in prop::collection::vec(
            (prop::collection::vec((any::<usize>(), 0u8..3), 0..3), 1u32..=2, 0u8..3, any::<bool>(), any::<bool>()),
            1..=6,
        ),
        ops in prop::collection::vec((0u8..12, any::<usize>(), 0u32..1500), 0..80),
        abort in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let options = Options {
            startup_failure: if abort { StartupFailure::Abort } else { StartupFailure::Continue },
            ..Options::default()
        };
        let mut h = H::with(specs(&gen), options, seed);
        let before = snapshot(&h.sup);
        let actions = h.startup();
        check_step(&h, &before, &Phase::Idle, Some(&Event::Startup), &actions)?;
        for op in ops {
            apply(&mut h, op)?;
        }
        finish(&mut h)?;
    }
}

use crate::spec::StartupFailure;
