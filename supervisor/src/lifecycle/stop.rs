//! Stopping units: the graceful sequence, kills, ordered and fast shutdown.

use super::action::{Action, Notice, ShutdownCause, ShutdownReport, StopCause};
use super::machine::Supervisor;
use super::state::{Fate, Phase, UnitState};
use std::time::Instant;

impl Supervisor {
    /// Begins the stop sequence of a unit that has a process and is not stopping yet.
    ///
    /// Graceful: `Shutdown` over the control channel, the stop signal after `shutdown_grace`,
    /// SIGKILL `stop_timeout` after the signal (without a control channel: the signal at once).
    /// Fast: the stop signal at once, SIGKILL after `min(fast_kill_timeout, stop_timeout)`.
    pub(super) fn begin_stop(
        &mut self,
        now: Instant,
        i: usize,
        cause: StopCause,
        fast: bool,
        out: &mut Vec<Action>,
    ) {
        let unit = self.id(i);
        let spec = self.spec(i);
        let Some(pid) = self.units[i].state.pid() else {
            return;
        };
        if matches!(self.units[i].state, UnitState::Stopping { .. }) {
            return;
        }
        out.push(Action::Notify(Notice::Stopping { unit, pid, cause }));
        let (signal_at, kill_at) = match spec.shutdown_grace {
            Some(grace) if !fast => {
                out.push(Action::SendShutdown { unit, pid });
                let signal_at = now + grace;
                (Some(signal_at), signal_at + spec.stop_timeout)
            }
            _ => {
                out.push(Action::Signal {
                    unit,
                    pid,
                    signal: spec.stop_signal,
                });
                let timeout = if fast {
                    self.options.fast_kill_timeout.min(spec.stop_timeout)
                } else {
                    spec.stop_timeout
                };
                (None, now + timeout)
            }
        };
        let signal = spec.stop_signal;
        self.units[i].state = UnitState::Stopping {
            pid,
            cause,
            signal,
            signal_at,
            kill_at: Some(kill_at),
        };
    }

    /// SIGKILLs a hung unit's process group at once.
    pub(super) fn kill_now(&mut self, i: usize, cause: StopCause, out: &mut Vec<Action>) {
        let unit = self.id(i);
        let Some(pid) = self.units[i].state.pid() else {
            return;
        };
        out.push(Action::Notify(Notice::Stopping { unit, pid, cause }));
        out.push(Action::Kill { unit, pid });
        let signal = self.spec(i).stop_signal;
        self.units[i].state = UnitState::Stopping {
            pid,
            cause,
            signal,
            signal_at: None,
            kill_at: None,
        };
    }

    /// The unit has no process and stays down until started (a unit being removed is
    /// forgotten instead).
    pub(super) fn mark_stopped(&mut self, i: usize, out: &mut Vec<Action>) {
        if self.units[i].fate == Fate::Remove {
            return self.forget(i, out);
        }
        let u = &mut self.units[i];
        u.fate = Fate::Keep;
        u.state = UnitState::Stopped;
        u.stop_wanted = None;
        out.push(Action::Notify(Notice::Stopped { unit: self.id(i) }));
    }

    /// Asks a unit to stop for `cause`: one without a process stops now; one with a process is
    /// stopped by `settle` once no dependent that is also being stopped has a process.
    pub(super) fn stop_unit(&mut self, i: usize, cause: StopCause, out: &mut Vec<Action>) {
        match self.units[i].state {
            UnitState::Pending | UnitState::Backoff { .. } => self.mark_stopped(i, out),
            UnitState::Spawning
            | UnitState::Starting { .. }
            | UnitState::Ready { .. }
            | UnitState::Draining { .. }
            | UnitState::Stopping { .. } => self.units[i].stop_wanted = Some(cause),
            UnitState::Completed | UnitState::Failed | UnitState::Stopped => {}
        }
    }

    /// A shutdown request: the first one starts an ordered (or fast) shutdown; a later one
    /// switches to the fast path.
    pub(super) fn request_shutdown(&mut self, now: Instant, fast: bool, out: &mut Vec<Action>) {
        match self.phase {
            Phase::ShuttingDown { fast: true, .. } | Phase::Done(_) => {}
            Phase::ShuttingDown { fast: false, cause } => {
                self.phase = Phase::ShuttingDown { cause, fast: true };
                out.push(Action::Notify(Notice::ShutdownStarted {
                    cause,
                    fast: true,
                }));
                self.stop_all_fast(now, out);
            }
            Phase::Idle | Phase::Starting | Phase::Running => {
                self.begin_shutdown(now, ShutdownCause::Requested, fast, out);
            }
        }
    }

    /// Enters the shutdown phase: nothing is started any more; units without a process are
    /// stopped; units with one are stopped dependents first (all at once when `fast`).
    pub(super) fn begin_shutdown(
        &mut self,
        now: Instant,
        cause: ShutdownCause,
        fast: bool,
        out: &mut Vec<Action>,
    ) {
        if matches!(self.phase, Phase::ShuttingDown { .. } | Phase::Done(_)) {
            return;
        }
        self.phase = Phase::ShuttingDown { cause, fast };
        out.push(Action::Notify(Notice::ShutdownStarted { cause, fast }));
        for k in 0..self.graph.order.len() {
            let i = self.graph.order[k];
            self.stop_unit(i, StopCause::Shutdown, out);
        }
        if fast {
            self.stop_all_fast(now, out);
        }
    }

    /// Fast path: every unit with a process gets the stop signal now (unless it already had it)
    /// and SIGKILL after the fast timeout (or its earlier SIGKILL deadline).
    fn stop_all_fast(&mut self, now: Instant, out: &mut Vec<Action>) {
        for k in 0..self.graph.order.len() {
            let i = self.graph.order[k];
            let unit = self.id(i);
            let spec = self.spec(i);
            let fast_kill = now + self.options.fast_kill_timeout.min(spec.stop_timeout);
            let state = &mut self.units[i].state;
            if let UnitState::Stopping {
                pid,
                signal,
                signal_at,
                kill_at,
                ..
            } = state
            {
                if signal_at.take().is_some() {
                    out.push(Action::Signal {
                        unit,
                        pid: *pid,
                        signal: *signal,
                    });
                }
                if let Some(k) = kill_at {
                    *k = (*k).min(fast_kill);
                }
            } else if matches!(
                state,
                UnitState::Starting { .. } | UnitState::Ready { .. } | UnitState::Draining { .. }
            ) {
                self.begin_stop(now, i, StopCause::Shutdown, true, out);
            }
        }
    }

    /// Emits [`Action::ShutdownComplete`] once no unit has a process.
    pub(super) fn check_shutdown_complete(&mut self, out: &mut Vec<Action>) {
        let Phase::ShuttingDown { cause, fast } = self.phase else {
            return;
        };
        if self.units.iter().any(|u| u.state.is_alive()) {
            return;
        }
        let report = ShutdownReport {
            cause,
            fast,
            clean: self.killed.is_empty(),
            killed: self.killed.clone(),
            failed: self.failed_units(),
        };
        self.phase = Phase::Done(report.clone());
        out.push(Action::ShutdownComplete(report));
    }
}
