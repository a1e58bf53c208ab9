//! Restart policy: backoff delays, the intensity window, and what happens after a process ends.

use super::action::{Action, FailureReason, Notice, ShutdownCause, StopCause, Termination};
use super::machine::Supervisor;
use super::state::UnitState;
use crate::spec::{Backoff, Escalation, Intensity, RestartPolicy, StartupFailure};
use rand::Rng;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The range the delay before restart number `attempt` (0-based) is drawn from:
/// `d = min(initial * multiplier^attempt, max)`, then `[d * (1 - jitter), d]`.
///
/// ```
/// use amp_supervisor::lifecycle::backoff_bounds;
/// use amp_supervisor::spec::Backoff;
/// use std::time::Duration;
/// let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1), multiplier: 2.0, jitter: 0.5 };
/// assert_eq!(backoff_bounds(&b, 2), (Duration::from_millis(200), Duration::from_millis(400)));
/// assert_eq!(backoff_bounds(&b, 10).1, Duration::from_secs(1));
/// ```
#[must_use]
pub fn backoff_bounds(backoff: &Backoff, attempt: u32) -> (Duration, Duration) {
    let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
    let max = backoff.max.as_secs_f64();
    let full = (backoff.initial.as_secs_f64() * backoff.multiplier.powi(exponent)).min(max);
    // NaN (0 * inf) or a negative value cannot come from validated specs; clamp anyway.
    let full = if full.is_finite() { full.max(0.0) } else { max };
    let jitter = backoff.jitter.clamp(0.0, 1.0);
    let high = Duration::from_secs_f64(full);
    let low = Duration::from_secs_f64(full * (1.0 - jitter));
    (low.min(high), high)
}

/// The delay before restart number `attempt` (0-based), drawn uniformly from
/// [`backoff_bounds`] with `rng`.
pub fn backoff_delay(backoff: &Backoff, attempt: u32, rng: &mut impl Rng) -> Duration {
    let (low, high) = backoff_bounds(backoff, attempt);
    if low >= high {
        return high;
    }
    let nanos = rng.random_range(low.as_nanos()..=high.as_nanos());
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Times of automatic restarts still inside the intensity window.
#[derive(Debug, Clone, Default)]
pub(super) struct RestartHistory {
    times: VecDeque<Instant>,
}

impl RestartHistory {
    /// Whether one more restart at `now` stays within `intensity` (at most `max_restarts` in any
    /// `window`); forgets restarts that left the window.
    pub(super) fn allows(&mut self, now: Instant, intensity: &Intensity) -> bool {
        while let Some(&t) = self.times.front() {
            if now.saturating_duration_since(t) >= intensity.window {
                self.times.pop_front();
            } else {
                break;
            }
        }
        self.times.len() < intensity.max_restarts as usize
    }

    pub(super) fn record(&mut self, now: Instant) {
        self.times.push_back(now);
    }

    pub(super) fn clear(&mut self) {
        self.times.clear();
    }
}

impl Supervisor {
    /// A unit's attempt ended (by itself, by a spawn failure, or killed as hung) and nobody asked
    /// it to stop: complete it, fail it, or schedule a restart.
    pub(super) fn after_termination(
        &mut self,
        now: Instant,
        i: usize,
        how: Termination,
        out: &mut Vec<Action>,
    ) {
        let spec = self.spec(i);
        let (policy, backoff, intensity) = (spec.restart, spec.backoff, spec.intensity);
        let failed = how.is_failure();
        let restart = match policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Never => false,
        };
        let unit = self.id(i);
        if !restart {
            if failed {
                self.fail(now, i, FailureReason::Terminated(how), out);
            } else {
                self.units[i].state = UnitState::Completed;
                out.push(Action::Notify(Notice::Completed { unit }));
            }
            return;
        }
        let u = &mut self.units[i];
        // Stable for long enough: the next restart starts from the initial delay again.
        if let Some(ready_at) = u.ready_at {
            if now.saturating_duration_since(ready_at) >= backoff.max {
                u.attempt = 0;
            }
        }
        if !u.history.allows(now, &intensity) {
            let reason = FailureReason::IntensityExceeded {
                max_restarts: intensity.max_restarts,
                window: intensity.window,
                last: how,
            };
            self.units[i].state = UnitState::Failed;
            self.units[i].failure = Some(reason.clone());
            out.push(Action::Notify(Notice::Failed { unit, reason }));
            self.escalate(now, i, intensity.on_exceeded, out);
            self.startup_failure_check(now, i, out);
            return;
        }
        let delay = backoff_delay(&backoff, u.attempt, &mut self.rng);
        u.attempt = u.attempt.saturating_add(1);
        u.history.record(now);
        u.state = UnitState::Backoff { until: now + delay };
        let attempt = u.attempt;
        out.push(Action::Notify(Notice::RestartScheduled {
            unit,
            after: how,
            delay,
            attempt,
        }));
    }

    /// Marks a unit failed (it has no process) and applies the startup policy if it applies.
    pub(super) fn fail(
        &mut self,
        now: Instant,
        i: usize,
        reason: FailureReason,
        out: &mut Vec<Action>,
    ) {
        let u = &mut self.units[i];
        u.state = UnitState::Failed;
        u.stop_wanted = None;
        u.failure = Some(reason.clone());
        out.push(Action::Notify(Notice::Failed {
            unit: self.id(i),
            reason,
        }));
        self.startup_failure_check(now, i, out);
    }

    /// During startup, a unit that fails before it was ever ready aborts startup when the
    /// policy says so.
    pub(super) fn startup_failure_check(&mut self, now: Instant, i: usize, out: &mut Vec<Action>) {
        if self.phase == super::Phase::Starting
            && !self.units[i].ever_ready
            && self.options.startup_failure == StartupFailure::Abort
        {
            let unit = self.id(i);
            self.begin_shutdown(now, ShutdownCause::StartupAborted { unit }, false, out);
        }
    }

    /// Applies an intensity escalation for unit `i` (already failed).
    fn escalate(&mut self, now: Instant, i: usize, escalation: Escalation, out: &mut Vec<Action>) {
        let unit = self.id(i);
        out.push(Action::Notify(Notice::Escalated { unit, escalation }));
        match escalation {
            Escalation::MarkFailed => {}
            Escalation::StopDependents => {
                let cause = StopCause::DependencyFailed { dependency: unit };
                let workers = self.graph.transitive_dependents(self.graph.units[i].worker);
                for w in workers {
                    for d in self.graph.workers[w].units.clone() {
                        self.stop_unit(d, cause, out);
                    }
                }
            }
            Escalation::Shutdown => {
                self.begin_shutdown(now, ShutdownCause::Escalated { unit }, false, out);
            }
        }
    }
}
