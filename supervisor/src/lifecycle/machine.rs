//! The supervisor core: owns every unit's state and turns events into actions.

use super::action::{Action, Notice, StopCause, Termination};
use super::event::{Event, UnitId};
use super::graph::{Graph, SpecError};
use super::state::{Fate, Phase, UnitRt, UnitState};
use super::worker::{Options, WorkerSpec};
use crate::spec::{DependencyCondition, ExitReason};
use nix::unistd::Pid;
use rand::rngs::SmallRng;
use std::time::Instant;

/// The lifecycle core: every unit's state, the dependency graph, and the rules that move them.
///
/// Pure: it never reads a clock (every call takes `now`), never spawns or signals (it returns
/// [`Action`]s), and draws jitter only from the seeded RNG it was given.
#[derive(Debug)]
pub struct Supervisor {
    pub(super) graph: Graph,
    pub(super) units: Vec<UnitRt>,
    pub(super) options: Options,
    pub(super) rng: SmallRng,
    pub(super) phase: Phase,
    /// Units the current shutdown had to SIGKILL.
    pub(super) killed: Vec<UnitId>,
}

impl Supervisor {
    /// Validates `workers` and builds the core; every unit starts [`super::StateKind::Pending`]
    /// and nothing happens until [`Event::Startup`].
    ///
    /// # Errors
    /// A [`SpecError`] naming the first problem: a bad or duplicate name, zero replicas, an
    /// unknown dependency, a cycle, a `completed_successfully` dependency on a worker that is
    /// always restarted, or an out-of-range backoff.
    pub fn new(
        workers: Vec<WorkerSpec>,
        options: Options,
        rng: SmallRng,
    ) -> Result<Self, SpecError> {
        let graph = Graph::new(workers)?;
        let units = (0..graph.units.len()).map(|_| UnitRt::new()).collect();
        Ok(Self {
            graph,
            units,
            options,
            rng,
            phase: Phase::Idle,
            killed: Vec::new(),
        })
    }

    /// Feeds one event at time `now` and returns what to do, in order. Deadlines that passed by
    /// `now` are handled too (after the event), so a late `Tick` loses nothing.
    ///
    /// An event about a removed unit (see [`Supervisor::is_live`]) is ignored, except
    /// [`Event::Spawned`], whose process nobody waits for any more: it is killed.
    ///
    /// # Panics
    /// If the event names a [`UnitId`] this supervisor did not issue.
    #[must_use = "the actions must be carried out"]
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        if matches!(self.phase, Phase::Done(_)) {
            return out;
        }
        if let Some(unit) = event.unit() {
            if !self.graph.units[self.index(unit)].live {
                if let Event::Spawned { unit, pid } = event {
                    out.push(Action::Kill { unit, pid });
                }
                self.step(now, &mut out);
                return out;
            }
        }
        match event {
            Event::Startup => {
                if self.phase == Phase::Idle {
                    self.phase = Phase::Starting;
                }
            }
            Event::Tick => {}
            Event::Spawned { unit, pid } => self.on_spawned(now, self.index(unit), pid, &mut out),
            Event::SpawnFailed { unit, error } => {
                self.on_spawn_failed(now, self.index(unit), error, &mut out);
            }
            Event::Ready { unit, pid } => self.on_ready(now, self.index(unit), pid, &mut out),
            Event::Heartbeat { unit, pid } => self.on_heartbeat(now, self.index(unit), pid),
            Event::HeartbeatStale { unit, pid } => {
                let i = self.index(unit);
                if self.units[i].state.pid() == Some(pid) {
                    self.heartbeat_stale(i, &mut out);
                }
            }
            Event::Drained { unit, pid } => {
                let i = self.index(unit);
                if let UnitState::Draining { pid: p, .. } = self.units[i].state {
                    if p == pid {
                        self.drained(now, i, &mut out);
                    }
                }
            }
            Event::Exited { unit, pid, reason } => {
                self.on_exited(now, self.index(unit), pid, reason, &mut out);
            }
            Event::Shutdown { fast } => self.request_shutdown(now, fast, &mut out),
        }
        self.step(now, &mut out);
        out
    }

    /// The earliest instant at which something is due; call [`Supervisor::handle`] with
    /// [`Event::Tick`] then (or earlier). `None`: nothing is scheduled.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        if matches!(self.phase, Phase::Done(_)) {
            return None;
        }
        self.units.iter().filter_map(UnitRt::deadline).min()
    }

    /// The supervisor's phase.
    #[must_use]
    pub const fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The options it was built with.
    #[must_use]
    pub const fn options(&self) -> &Options {
        &self.options
    }

    /// The spec of unit `i`'s worker.
    pub(super) fn spec(&self, i: usize) -> &WorkerSpec {
        &self.graph.workers[self.graph.units[i].worker].spec
    }

    pub(super) fn index(&self, unit: UnitId) -> usize {
        let i = unit.index();
        assert!(
            i < self.units.len(),
            "{unit:?} was not issued by this supervisor"
        );
        i
    }

    pub(super) fn id(&self, i: usize) -> UnitId {
        debug_assert!(i < self.units.len());
        UnitId::from_index(i)
    }

    /// Runs everything that follows from the current state: due deadlines, then starts and
    /// ordered stops, then phase changes.
    pub(super) fn step(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.graph.refresh_order();
        self.expire(now, out);
        self.settle(now, out);
        self.graph.refresh_order();
    }

    fn on_spawned(&mut self, now: Instant, i: usize, pid: Pid, out: &mut Vec<Action>) {
        let unit = self.id(i);
        let ready_timeout = self.spec(i).ready_timeout;
        let u = &mut self.units[i];
        if !matches!(u.state, UnitState::Spawning) {
            if u.state.pid() != Some(pid) {
                // A process nobody is waiting for: do not leave it running untracked.
                out.push(Action::Kill { unit, pid });
            }
            return;
        }
        u.state = UnitState::Starting {
            pid,
            ready_deadline: now + ready_timeout,
        };
        u.started_at = Some(now);
        u.ready_at = None;
        u.spawn_error = None;
        out.push(Action::Notify(Notice::Started { unit, pid }));
    }

    fn on_spawn_failed(&mut self, now: Instant, i: usize, error: String, out: &mut Vec<Action>) {
        if !matches!(self.units[i].state, UnitState::Spawning) {
            return;
        }
        let unit = self.id(i);
        self.units[i].spawn_error = Some(error.clone());
        out.push(Action::Notify(Notice::SpawnFailed {
            unit,
            error: error.clone(),
        }));
        match self.units[i].fate {
            Fate::Remove => return self.forget(i, out),
            // The attempt was for the old spec; the new one is in place already, so the normal
            // course (with the new policy) follows.
            Fate::Replace => self.units[i].fate = Fate::Keep,
            Fate::Keep => {}
        }
        if self.units[i].stop_wanted.is_some() {
            self.mark_stopped(i, out);
        } else {
            self.after_termination(now, i, Termination::SpawnFailed(error), out);
        }
    }

    fn on_ready(&mut self, now: Instant, i: usize, pid: Pid, out: &mut Vec<Action>) {
        let heartbeat = self.spec(i).heartbeat_timeout;
        let unit = self.id(i);
        let u = &mut self.units[i];
        let UnitState::Starting { pid: p, .. } = u.state else {
            return;
        };
        if p != pid {
            return;
        }
        u.state = UnitState::Ready {
            pid,
            heartbeat_deadline: heartbeat.map(|t| now + t),
        };
        u.ready_at = Some(now);
        u.ever_ready = true;
        let after = now.saturating_duration_since(u.started_at.unwrap_or(now));
        out.push(Action::Notify(Notice::Ready { unit, pid, after }));
    }

    fn on_heartbeat(&mut self, now: Instant, i: usize, pid: Pid) {
        let Some(timeout) = self.spec(i).heartbeat_timeout else {
            return;
        };
        match &mut self.units[i].state {
            UnitState::Ready {
                pid: p,
                heartbeat_deadline,
            }
            | UnitState::Draining {
                pid: p,
                heartbeat_deadline,
                ..
            } if *p == pid => *heartbeat_deadline = Some(now + timeout),
            _ => {}
        }
    }

    /// A ready or draining unit stopped showing signs of life: kill it; it is restarted per
    /// policy (a draining one is not: it fails).
    fn heartbeat_stale(&mut self, i: usize, out: &mut Vec<Action>) {
        let u = &mut self.units[i];
        match u.state {
            UnitState::Ready { .. } if u.stop_wanted.is_none() => {}
            UnitState::Draining { .. } if u.stop_wanted.is_none() => {
                u.stop_wanted = Some(StopCause::Drain);
            }
            _ => return,
        }
        self.kill_now(i, StopCause::HeartbeatTimeout, out);
    }

    fn on_exited(
        &mut self,
        now: Instant,
        i: usize,
        pid: Pid,
        reason: ExitReason,
        out: &mut Vec<Action>,
    ) {
        let unit = self.id(i);
        let u = &mut self.units[i];
        if u.state.pid() != Some(pid) {
            return; // stale: not the current process
        }
        let stop_cause = match u.state {
            UnitState::Stopping { cause, .. } => Some(cause),
            _ => None,
        };
        let was_draining = matches!(u.state, UnitState::Draining { .. });
        u.last_exit = Some(super::ExitRecord {
            reason,
            stop_cause,
            at: now,
        });
        out.push(Action::Notify(Notice::Exited {
            unit,
            pid,
            reason,
            stop_cause,
        }));
        let shutting_down = matches!(self.phase, Phase::ShuttingDown { .. });
        match u.fate {
            Fate::Remove => return self.forget(i, out),
            Fate::Replace => {
                u.fate = Fate::Keep;
                let down = u.stop_wanted.is_some()
                    || shutting_down
                    || was_draining
                    || stop_cause == Some(StopCause::Drain);
                if !down {
                    // Back to pending: it starts with the new spec once its dependencies are met.
                    u.reset_for_manual_start();
                    u.state = UnitState::Pending;
                    return;
                }
            }
            Fate::Keep => {}
        }
        let u = &self.units[i];
        match stop_cause {
            None if u.stop_wanted.is_some() || was_draining => self.mark_stopped(i, out),
            None => self.after_termination(now, i, Termination::Exited(reason), out),
            Some(cause) if cause.is_failure() => {
                let how = if cause == StopCause::ReadyTimeout {
                    Termination::ReadyTimeout
                } else {
                    Termination::HeartbeatTimeout
                };
                let never_ready = cause == StopCause::ReadyTimeout && !u.ever_ready;
                let stop_wanted = u.stop_wanted.is_some();
                if stop_wanted || shutting_down || never_ready {
                    // Never-ready units fail outright; the startup policy was applied when the
                    // timeout fired.
                    let u = &mut self.units[i];
                    u.state = UnitState::Failed;
                    u.stop_wanted = None;
                    let reason = super::FailureReason::Terminated(how);
                    u.failure = Some(reason.clone());
                    out.push(Action::Notify(Notice::Failed { unit, reason }));
                } else {
                    self.after_termination(now, i, how, out);
                }
            }
            Some(StopCause::Restart) if self.units[i].stop_wanted.is_none() && !shutting_down => {
                self.spawn(i, out);
            }
            Some(_) => self.mark_stopped(i, out),
        }
    }

    /// A draining unit has nothing in flight (or its drain timeout passed): a unit being
    /// removed waits for its turn to stop (see `settle`); any other unit is stopped now.
    fn drained(&mut self, now: Instant, i: usize, out: &mut Vec<Action>) {
        if self.units[i].fate == Fate::Remove {
            self.units[i].stop_wanted.get_or_insert(StopCause::Removed);
        } else {
            self.begin_stop(now, i, StopCause::Drain, false, out);
        }
    }

    /// Handles every deadline that passed by `now`, in dependency order.
    fn expire(&mut self, now: Instant, out: &mut Vec<Action>) {
        for k in 0..self.graph.order.len() {
            let i = self.graph.order[k];
            let unit = self.id(i);
            if self.units[i].deadline().is_none_or(|d| d > now) {
                continue;
            }
            match self.units[i].state {
                UnitState::Starting { ready_deadline, .. } if ready_deadline <= now => {
                    self.kill_now(i, StopCause::ReadyTimeout, out);
                    if !self.units[i].ever_ready {
                        self.startup_failure_check(now, i, out);
                    }
                }
                UnitState::Ready {
                    heartbeat_deadline: Some(d),
                    ..
                } if d <= now => self.heartbeat_stale(i, out),
                UnitState::Draining {
                    heartbeat_deadline,
                    drain_deadline,
                    ..
                } => {
                    if heartbeat_deadline.is_some_and(|d| d <= now) {
                        self.heartbeat_stale(i, out);
                    } else if drain_deadline.is_some_and(|d| d <= now) {
                        self.drained(now, i, out);
                    }
                }
                UnitState::Stopping {
                    pid,
                    signal,
                    signal_at,
                    kill_at,
                    cause,
                } => {
                    let mut signal_at = signal_at;
                    let mut kill_at = kill_at;
                    if signal_at.is_some_and(|t| t <= now) {
                        signal_at = None;
                        out.push(Action::Signal { unit, pid, signal });
                    }
                    if kill_at.is_some_and(|t| t <= now) {
                        kill_at = None;
                        out.push(Action::Kill { unit, pid });
                        if matches!(self.phase, Phase::ShuttingDown { .. }) {
                            self.killed.push(unit);
                        }
                    }
                    self.units[i].state = UnitState::Stopping {
                        pid,
                        cause,
                        signal,
                        signal_at,
                        kill_at,
                    };
                }
                UnitState::Backoff { until } if until <= now => {
                    if matches!(self.phase, Phase::Starting | Phase::Running) {
                        self.units[i].restarts = self.units[i].restarts.saturating_add(1);
                        self.spawn(i, out);
                    }
                }
                _ => {}
            }
        }
    }

    /// Starts pending units whose dependencies are met, begins ordered stops whose dependents
    /// are gone (a replica removed by a scale-down does not wait, the others serve; during
    /// shutdown it does, like every unit), begins the
    /// stops of replaced units that got their process meanwhile, and moves the phase on.
    fn settle(&mut self, now: Instant, out: &mut Vec<Action>) {
        if matches!(self.phase, Phase::Starting | Phase::Running) {
            for k in 0..self.graph.order.len() {
                let i = self.graph.order[k];
                if matches!(self.units[i].state, UnitState::Pending) && self.deps_satisfied(i) {
                    self.spawn(i, out);
                }
            }
        }
        let fast = matches!(self.phase, Phase::ShuttingDown { fast: true, .. });
        let active = matches!(self.phase, Phase::Starting | Phase::Running);
        for k in (0..self.graph.order.len()).rev() {
            let i = self.graph.order[k];
            let u = &self.units[i];
            let Some(cause) = u.stop_wanted else {
                if active
                    && u.fate == Fate::Replace
                    && matches!(
                        u.state,
                        UnitState::Starting { .. } | UnitState::Ready { .. }
                    )
                {
                    self.begin_stop(now, i, StopCause::Replaced, false, out);
                }
                continue;
            };
            let running = matches!(
                u.state,
                UnitState::Starting { .. } | UnitState::Ready { .. } | UnitState::Draining { .. }
            );
            let scaled_down = active
                && u.fate == Fate::Remove
                && !self.graph.workers[self.graph.units[i].worker].removing;
            if running && (fast || scaled_down || !self.has_dependent_being_stopped(i)) {
                self.begin_stop(now, i, cause, fast, out);
            }
        }
        if self.phase == Phase::Starting && self.startup_settled() {
            self.phase = Phase::Running;
            let failed = self.failed_units();
            out.push(Action::Notify(Notice::StartupComplete { failed }));
        }
        self.check_shutdown_complete(out);
    }

    /// Requests a spawn.
    pub(super) fn spawn(&mut self, i: usize, out: &mut Vec<Action>) {
        self.units[i].state = UnitState::Spawning;
        out.push(Action::Spawn { unit: self.id(i) });
    }

    /// Whether every dependency of unit `i` meets its condition now: every replica of the
    /// dependency that is not being removed meets it (a worker being removed meets nothing).
    pub(super) fn deps_satisfied(&self, i: usize) -> bool {
        let w = self.graph.units[i].worker;
        self.graph.workers[w].deps.iter().all(|&(d, condition)| {
            !self.graph.workers[d].removing
                && self.counted_units(d).all(|r| self.satisfies(r, condition))
        })
    }

    /// Worker `w`'s live units that are not being removed (its replicas as dependents see them).
    pub(super) fn counted_units(&self, w: usize) -> impl Iterator<Item = usize> + '_ {
        self.graph.workers[w]
            .units
            .iter()
            .copied()
            .filter(|&r| self.units[r].fate != Fate::Remove)
    }

    /// Whether unit `r` meets `condition` for its dependents now. A unit about to be stopped
    /// (asked to stop, or replaced and still running its old spec) meets nothing.
    pub(super) fn satisfies(&self, r: usize, condition: DependencyCondition) -> bool {
        let u = &self.units[r];
        if u.stop_wanted.is_some() || u.fate == Fate::Replace {
            return false;
        }
        match condition {
            DependencyCondition::Started => matches!(
                u.state,
                UnitState::Starting { .. } | UnitState::Ready { .. } | UnitState::Completed
            ),
            DependencyCondition::Ready => matches!(u.state, UnitState::Ready { .. }),
            DependencyCondition::CompletedSuccessfully => matches!(u.state, UnitState::Completed),
        }
    }

    /// Whether some unit depending on `i` still has a process and is being stopped or removed
    /// too.
    fn has_dependent_being_stopped(&self, i: usize) -> bool {
        self.graph.dependent_units(i).any(|d| {
            let u = &self.units[d];
            u.state.is_alive() && (u.stop_wanted.is_some() || u.fate == Fate::Remove)
        })
    }

    pub(super) fn failed_units(&self) -> Vec<UnitId> {
        self.graph
            .order
            .iter()
            .filter(|&&i| matches!(self.units[i].state, UnitState::Failed))
            .map(|&i| self.id(i))
            .collect()
    }

    /// Startup is over when every unit became ready once, completed, failed, stopped, or is
    /// pending behind a dependency that cannot be satisfied.
    fn startup_settled(&self) -> bool {
        let blocked = self.blocked_by();
        self.graph.order.iter().all(|&i| {
            let u = &self.units[i];
            u.ever_ready
                || matches!(
                    u.state,
                    UnitState::Ready { .. }
                        | UnitState::Draining { .. }
                        | UnitState::Completed
                        | UnitState::Failed
                        | UnitState::Stopped
                )
                || blocked[i].is_some()
        })
    }
}
