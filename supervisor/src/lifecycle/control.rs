//! Manual control: start, stop, restart, drain by name.

use super::action::{Action, Notice, StopCause};
use super::event::{Command, CommandError};
use super::machine::Supervisor;
use super::state::{Fate, Phase, UnitState};
use std::time::Instant;

impl Supervisor {
    /// Carries out a manual [`Command`] at time `now` and returns what to do.
    ///
    /// Units being removed are not started or restarted (a worker name leaves them out); they
    /// can be stopped (which skips the rest of their drain) or drained.
    ///
    /// # Errors
    /// [`CommandError::UnknownTarget`] when the target names no unit or worker;
    /// [`CommandError::NotStarted`] before [`super::Event::Startup`];
    /// [`CommandError::ShuttingDown`] once shutdown has begun.
    pub fn command(&mut self, now: Instant, command: Command) -> Result<Vec<Action>, CommandError> {
        match self.phase {
            Phase::Idle => return Err(CommandError::NotStarted),
            Phase::ShuttingDown { .. } | Phase::Done(_) => return Err(CommandError::ShuttingDown),
            Phase::Starting | Phase::Running => {}
        }
        let targets: Vec<usize> = self
            .resolve(command.target())?
            .into_iter()
            .map(|u| u.index())
            .collect();
        let mut out = Vec::new();
        let kept: Vec<usize> = targets
            .iter()
            .copied()
            .filter(|&i| self.units[i].fate != Fate::Remove)
            .collect();
        match command {
            Command::Start { .. } => {
                for i in kept {
                    self.start_unit(i, &mut out);
                }
            }
            Command::Stop {
                with_dependents, ..
            } => {
                let mut set = targets;
                if with_dependents {
                    let mut workers: Vec<usize> =
                        set.iter().map(|&i| self.graph.units[i].worker).collect();
                    workers.dedup();
                    for w in workers {
                        for d in self.graph.transitive_dependents(w) {
                            set.extend(self.graph.workers[d].units.iter().copied());
                        }
                    }
                    set.sort_unstable();
                    set.dedup();
                }
                for i in set {
                    self.stop_unit(i, StopCause::Command, &mut out);
                }
            }
            Command::Restart { .. } => {
                for i in kept {
                    self.restart_unit(now, i, &mut out);
                }
            }
            Command::Drain { .. } => {
                for i in targets {
                    self.drain_unit(now, i, &mut out);
                }
            }
        }
        self.step(now, &mut out);
        Ok(out)
    }

    /// Start: a down unit waits for its dependencies again; one in backoff spawns now; one being
    /// stopped comes back after it exited; anything else is left alone.
    fn start_unit(&mut self, i: usize, out: &mut Vec<Action>) {
        let u = &mut self.units[i];
        match &mut u.state {
            UnitState::Completed | UnitState::Failed | UnitState::Stopped => {
                u.reset_for_manual_start();
                u.state = UnitState::Pending;
            }
            UnitState::Backoff { .. } => {
                u.reset_for_manual_start();
                self.spawn(i, out);
            }
            UnitState::Stopping { cause, .. } => {
                if !cause.is_failure() {
                    *cause = StopCause::Restart;
                }
                u.stop_wanted = None;
            }
            UnitState::Pending
            | UnitState::Spawning
            | UnitState::Starting { .. }
            | UnitState::Ready { .. }
            | UnitState::Draining { .. } => u.stop_wanted = None,
        }
    }

    /// Restart: a running unit is stopped gracefully and spawned again once it exited; a down
    /// unit is started as by [`Self::start_unit`].
    fn restart_unit(&mut self, now: Instant, i: usize, out: &mut Vec<Action>) {
        match self.units[i].state {
            UnitState::Starting { .. } | UnitState::Ready { .. } | UnitState::Draining { .. } => {
                self.units[i].reset_for_manual_start();
                self.begin_stop(now, i, StopCause::Restart, false, out);
            }
            _ => self.start_unit(i, out),
        }
    }

    /// Drain: a ready unit is told to drain and stopped once drained (or after its
    /// `drain_timeout`); a unit not ready yet is simply stopped.
    fn drain_unit(&mut self, now: Instant, i: usize, out: &mut Vec<Action>) {
        match self.units[i].state {
            UnitState::Ready { .. } if self.units[i].stop_wanted.is_none() => {
                self.begin_drain(now, i, out);
            }
            UnitState::Draining { .. } | UnitState::Ready { .. } => {}
            _ => self.stop_unit(i, StopCause::Drain, out),
        }
    }

    /// A ready unit starts draining: the router stops feeding it and it is told to drain.
    pub(super) fn begin_drain(&mut self, now: Instant, i: usize, out: &mut Vec<Action>) {
        let UnitState::Ready {
            pid,
            heartbeat_deadline,
        } = self.units[i].state
        else {
            return;
        };
        let drain_timeout = self.spec(i).drain_timeout;
        let unit = self.id(i);
        self.units[i].state = UnitState::Draining {
            pid,
            heartbeat_deadline,
            drain_deadline: drain_timeout.map(|t| now + t),
        };
        out.push(Action::Notify(Notice::Draining { unit, pid }));
        out.push(Action::SendDrain { unit, pid });
    }
}
