//! Table-driven tests of the lifecycle core: synthetic instants, a seeded RNG, no processes.

mod change;
mod control;
mod props;
mod restart;
mod shutdown;
mod startup;

use super::*;
use crate::spec::{DependencyCondition, ExitReason};
use nix::unistd::Pid;
use rand::{rngs::SmallRng, SeedableRng};
use std::ops::Deref;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub(super) const MS: Duration = Duration::from_millis(1);

/// A worker with short, round timeouts so tests can compute instants by hand.
pub(super) fn w(name: &str) -> WorkerSpec {
    let mut spec = WorkerSpec::new(name);
    spec.ready_timeout = Duration::from_secs(1);
    spec.stop_timeout = Duration::from_secs(2);
    spec.shutdown_grace = Some(Duration::from_secs(1));
    spec
}

/// `w(name)` depending on `deps` (all with `condition`).
pub(super) fn wd(name: &str, deps: &[&str], condition: DependencyCondition) -> WorkerSpec {
    let mut spec = w(name);
    spec.depends_on = deps
        .iter()
        .map(|d| Dependency::new(*d, condition))
        .collect();
    spec
}

pub(super) const fn code(c: i32) -> ExitReason {
    ExitReason::Code(c)
}

pub(super) const fn sig(signal: i32) -> ExitReason {
    ExitReason::Signal {
        signal,
        core_dumped: false,
    }
}

/// A test driver: keeps virtual time, hands out pids, records every action.
pub(super) struct H {
    pub(super) sup: Supervisor,
    pub(super) t0: Instant,
    pub(super) now: Instant,
    pub(super) next_pid: i32,
    /// Unit names by id (removed units keep theirs).
    names: Rc<Vec<String>>,
    /// Every action so far, with its time since `t0`.
    pub(super) log: Vec<(Duration, Action)>,
}

impl H {
    pub(super) fn new(workers: Vec<WorkerSpec>) -> Self {
        Self::with(workers, Options::default(), 1)
    }

    pub(super) fn with(workers: Vec<WorkerSpec>, options: Options, seed: u64) -> Self {
        let sup = Supervisor::new(workers, options, SmallRng::seed_from_u64(seed))
            .expect("valid test specs");
        let t0 = Instant::now();
        let mut h = Self {
            sup,
            t0,
            now: t0,
            next_pid: 1000,
            names: Rc::new(Vec::new()),
            log: Vec::new(),
        };
        h.learn_names();
        h
    }

    /// Records the names of units added since the last call.
    fn learn_names(&mut self) {
        let names = Rc::make_mut(&mut self.names);
        names.resize(self.sup.unit_count(), String::new());
        for u in self.sup.units() {
            names[u.index()] = self.sup.unit_name(u).to_owned();
        }
    }

    pub(super) fn id(&self, name: &str) -> UnitId {
        self.sup
            .lookup(name)
            .unwrap_or_else(|| panic!("no unit {name}"))
    }

    pub(super) fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    fn record(&mut self, actions: &[Action]) {
        self.learn_names();
        let at = self.elapsed();
        self.log.extend(actions.iter().map(|a| (at, a.clone())));
    }

    fn step(&self, actions: Vec<Action>) -> Step {
        Step {
            actions,
            names: Rc::clone(&self.names),
        }
    }

    pub(super) fn feed(&mut self, event: Event) -> Step {
        let actions = self.sup.handle(self.now, event);
        self.record(&actions);
        self.step(actions)
    }

    pub(super) fn cmd(&mut self, command: Command) -> Result<Step, CommandError> {
        let result = self.sup.command(self.now, command);
        if let Ok(actions) = &result {
            self.record(actions);
        }
        result.map(|actions| self.step(actions))
    }

    pub(super) fn change(&mut self, changes: Changes) -> Result<Step, ChangeError> {
        let result = self.sup.apply_changes(self.now, changes);
        if let Ok(actions) = &result {
            self.record(actions);
        }
        result.map(|actions| self.step(actions))
    }

    /// Calls one of the change methods (`add_worker`, `set_replicas`, ...) at the current time.
    pub(super) fn alter(
        &mut self,
        f: impl FnOnce(&mut Supervisor, Instant) -> Result<Vec<Action>, ChangeError>,
    ) -> Result<Step, ChangeError> {
        let result = f(&mut self.sup, self.now);
        if let Ok(actions) = &result {
            self.record(actions);
        }
        result.map(|actions| self.step(actions))
    }

    pub(super) fn startup(&mut self) -> Step {
        self.feed(Event::Startup)
    }

    pub(super) fn spawned(&mut self, name: &str) -> Step {
        let unit = self.id(name);
        self.next_pid += 1;
        let pid = Pid::from_raw(self.next_pid);
        self.feed(Event::Spawned { unit, pid })
    }

    pub(super) fn pid(&self, name: &str) -> Pid {
        self.sup
            .unit_status(self.id(name))
            .pid
            .unwrap_or_else(|| panic!("{name} has no process"))
    }

    pub(super) fn ready(&mut self, name: &str) -> Step {
        let unit = self.id(name);
        let pid = self.pid(name);
        self.feed(Event::Ready { unit, pid })
    }

    /// Spawned then ready.
    pub(super) fn up(&mut self, name: &str) -> Step {
        let mut step = self.spawned(name);
        step.actions.extend(self.ready(name).actions);
        step
    }

    pub(super) fn exit(&mut self, name: &str, reason: ExitReason) -> Step {
        let unit = self.id(name);
        let pid = self.pid(name);
        self.feed(Event::Exited { unit, pid, reason })
    }

    pub(super) fn advance(&mut self, by: Duration) -> Step {
        self.now += by;
        self.feed(Event::Tick)
    }

    /// Jumps to the next deadline and ticks.
    pub(super) fn jump_to_deadline(&mut self) -> Step {
        let due = self.sup.next_deadline().expect("a deadline");
        assert!(due >= self.now, "deadline in the past");
        self.now = due;
        self.feed(Event::Tick)
    }

    pub(super) fn state(&self, name: &str) -> StateKind {
        self.sup.unit_status(self.id(name)).state
    }

    /// Names of the units `actions` spawn, in order.
    pub(super) fn spawns(&self, actions: &[Action]) -> Vec<String> {
        spawns(&self.names, actions)
    }

    /// See [`ops`].
    pub(super) fn ops(&self, actions: &[Action]) -> Vec<String> {
        ops(&self.names, actions)
    }

    /// The notices in `actions`.
    pub(super) fn notices(actions: &[Action]) -> Vec<&Notice> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Notify(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    /// The shutdown report in `actions`, if any.
    pub(super) fn report(actions: &[Action]) -> Option<&ShutdownReport> {
        actions.iter().find_map(|a| match a {
            Action::ShutdownComplete(r) => Some(r),
            _ => None,
        })
    }
}

/// The actions of one call, with the unit names to describe them.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Step {
    pub(super) actions: Vec<Action>,
    names: Rc<Vec<String>>,
}

impl Deref for Step {
    type Target = Vec<Action>;
    fn deref(&self) -> &Vec<Action> {
        &self.actions
    }
}

impl PartialEq<Vec<Action>> for Step {
    fn eq(&self, other: &Vec<Action>) -> bool {
        self.actions == *other
    }
}

impl Step {
    /// See [`ops`].
    pub(super) fn ops(&self) -> Vec<String> {
        ops(&self.names, &self.actions)
    }

    /// Names of the units spawned.
    pub(super) fn spawns(&self) -> Vec<String> {
        spawns(&self.names, &self.actions)
    }
}

fn spawns(names: &[String], actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Spawn { unit } => Some(names[unit.index()].clone()),
            _ => None,
        })
        .collect()
}

/// Process-affecting actions (spawn, shutdown, drain, signal, kill) as short strings like
/// `"spawn a"`, `"shutdown a"`, `"signal a SIGTERM"`, `"kill a"`.
pub(super) fn ops(names: &[String], actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| {
            let name = |u: &UnitId| names[u.index()].as_str();
            match a {
                Action::Spawn { unit } => Some(format!("spawn {}", name(unit))),
                Action::SendShutdown { unit, .. } => Some(format!("shutdown {}", name(unit))),
                Action::SendDrain { unit, .. } => Some(format!("drain {}", name(unit))),
                Action::Signal { unit, signal, .. } => {
                    Some(format!("signal {} {}", name(unit), signal.as_str()))
                }
                Action::Kill { unit, .. } => Some(format!("kill {}", name(unit))),
                Action::Notify(_) | Action::ShutdownComplete(_) => None,
            }
        })
        .collect()
}
