//! Time and failure: lost workers, retry timers, run timeouts, queued deadlines.

use super::table::{Delivery, State};
use super::types::{Blame, DeliveryAction, FinalOutcome, LostCause, TaskId};
use crate::config::OnTimeout;
use std::time::Instant;

impl Delivery {
    /// Worker `unit` is gone or out of rotation (exit, heartbeat timeout, quarantine, stop):
    /// every task in flight on it goes back to the **head** of its queue with attempt + 1
    /// ([`DeliveryAction::Requeue`] with `front: true`, newest first so that pushing each to
    /// the head in order restores submission order), except a task that has now been in flight
    /// on `poison_deaths` worker deaths ([`LostCause::is_death`]): it is dead-lettered at once
    /// as poison. Lost-worker requeues do not use the retry budget or `max_attempts` (the
    /// poison limit bounds them); the attempt they add does count toward `max_attempts` if the
    /// task later fails with a retryable error.
    ///
    /// Call it once the unit can no longer complete anything (after its exit is reaped, or
    /// once it is cut off), before it gets new tasks.
    #[must_use = "the actions must be carried out"]
    pub fn worker_lost(
        &mut self,
        now: Instant,
        unit: usize,
        cause: LostCause,
    ) -> Vec<DeliveryAction> {
        self.worker_lost_blaming(now, unit, cause, Blame::All)
    }

    /// As [`worker_lost`](Self::worker_lost), with what the worker reported it was running
    /// (its control block's `running_task` / `tasks_taken`): only the tasks `blame` names count
    /// the death toward their poison threshold, so that tasks that were merely waiting in a
    /// poison task's worker's ring are requeued without being blamed. A [`Blame::Only`] task
    /// that is not in flight on `unit` (one that timed out and was answered, say) blames
    /// nobody. The report is untrusted: every task in flight on a death also counts an
    /// exposure, and a task exposed to twice the poison limit of deaths is dead-lettered
    /// whatever the reports said, so a wrong report only delays poison detection.
    #[must_use = "the actions must be carried out"]
    pub fn worker_lost_blaming(
        &mut self,
        now: Instant,
        unit: usize,
        cause: LostCause,
        blame: Blame,
    ) -> Vec<DeliveryAction> {
        self.killing.remove(&unit);
        let mut ids: Vec<TaskId> = match self.by_unit.get(&unit) {
            Some(keys) => keys.iter().map(|&k| self.tasks[k].id).collect(),
            None => return Vec::new(),
        };
        let blame = match blame {
            Blame::Only(id) if !ids.contains(&id) => Blame::Nobody,
            b => b,
        };
        // Newest first (see above).
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(key) = self.key_of(id) else {
                continue;
            };
            let t = &mut self.tasks[key];
            t.attempt += 1;
            let blamed = match blame {
                Blame::All => true,
                Blame::Only(culprit) => culprit == id,
                Blame::Nobody => false,
            };
            if cause.is_death() {
                t.exposures += 1;
                if blamed {
                    t.deaths += 1;
                }
            }
            let (kind, class, deaths, exposures) = (t.kind, t.class, t.deaths, t.exposures);
            let limit = self.options.poison_deaths;
            if deaths >= limit || exposures >= limit.saturating_mul(2) {
                let reason = if deaths >= limit {
                    format!("poison: in flight on {deaths} worker deaths")
                } else {
                    format!(
                        "poison: in flight on {exposures} worker deaths (the workers did not \
                         report running it)"
                    )
                };
                self.dead_letter(now, key, reason, true, &mut out);
            } else {
                self.set_state(key, State::Queued);
                self.stats.bump(kind, |c| c.requeued_lost += 1);
                out.push(DeliveryAction::Requeue {
                    id,
                    kind,
                    class,
                    front: true,
                });
            }
        }
        out
    }

    /// Handles every timer due at `now`, run timeouts first, each in due order:
    /// - a task that ran past its kind's `timeout`: with `on_timeout = "fail"` it is answered
    ///   [`FinalOutcome::TimedOut`] and [`DeliveryAction::Abandoned`] says its worker still
    ///   holds it (the late completion will be dropped); with `"kill-and-requeue"`,
    ///   [`DeliveryAction::KillWorker`] (once per unit) — report the death with
    ///   [`Delivery::worker_lost`], which requeues the task;
    /// - a retry whose backoff ended goes to the **back** of its queue
    ///   ([`DeliveryAction::Requeue`] `front: false`: it failed, so fresh work is not made to
    ///   wait behind it, and under overload retries are the first to wait), or is answered
    ///   [`FinalOutcome::DeadlineExceeded`] if its deadline passed meanwhile.
    #[must_use = "the actions must be carried out"]
    pub fn tick(&mut self, now: Instant) -> Vec<DeliveryAction> {
        let mut out = Vec::new();
        while let Some(&(at, id)) = self.timeouts.first() {
            if at > now {
                break;
            }
            self.run_timeout(id, &mut out);
        }
        while let Some(&(at, id)) = self.retries.first() {
            if at > now {
                break;
            }
            self.retry_due(now, id, &mut out);
        }
        out
    }

    fn run_timeout(&mut self, id: TaskId, out: &mut Vec<DeliveryAction>) {
        let Some(key) = self.key_of(id) else {
            return;
        };
        let t = &self.tasks[key];
        let State::InFlight {
            unit,
            since,
            timeout_at,
            ..
        } = t.state
        else {
            return;
        };
        let config = self.kinds[t.kind as usize];
        match config.on_timeout {
            OnTimeout::Fail => {
                // The timeout it was dispatched with (adaptive timeouts change the kind's).
                let after = timeout_at
                    .map(|at| at.saturating_duration_since(since))
                    .or(config.timeout)
                    .unwrap_or_default();
                self.finish(key, FinalOutcome::TimedOut { after }, out);
                out.push(DeliveryAction::Abandoned { id, unit });
            }
            OnTimeout::KillAndRequeue => {
                let kind = t.kind;
                self.set_state(
                    key,
                    State::InFlight {
                        unit,
                        since,
                        timeout_at: None,
                        kill_sent: true,
                    },
                );
                self.stats.bump(kind, |c| c.timeout_kills += 1);
                if self.killing.insert(unit) {
                    out.push(DeliveryAction::KillWorker { unit, id });
                }
            }
        }
    }

    fn retry_due(&mut self, now: Instant, id: TaskId, out: &mut Vec<DeliveryAction>) {
        let Some(key) = self.key_of(id) else {
            return;
        };
        let t = &self.tasks[key];
        if t.deadline.is_some_and(|d| d <= now) {
            self.finish(key, FinalOutcome::DeadlineExceeded, out);
            return;
        }
        let (kind, class) = (t.kind, t.class);
        self.set_state(key, State::Queued);
        out.push(DeliveryAction::Requeue {
            id,
            kind,
            class,
            front: false,
        });
    }

    /// The earliest instant at which [`Delivery::tick`] has something to do (a retry or a run
    /// timeout); `None`: nothing scheduled. Queued deadlines are not included: they are found
    /// at dispatch ([`Delivery::take_for_dispatch`]) or by [`Delivery::expire_queued`].
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        let retry = self.retries.first().map(|&(at, _)| at);
        let timeout = self.timeouts.first().map(|&(at, _)| at);
        match (retry, timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Answers [`FinalOutcome::DeadlineExceeded`] for every queued task whose deadline passed
    /// (a sweep over the whole table: call it now and then, e.g. once a second, if queues can
    /// sit still for long). Their ids stay in the event loop's queues and come back as
    /// [`super::Take::Skip`].
    #[must_use = "the actions must be carried out"]
    pub fn expire_queued(&mut self, now: Instant) -> Vec<DeliveryAction> {
        let mut expired: Vec<(TaskId, usize)> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.state == State::Queued && t.deadline.is_some_and(|d| d <= now))
            .map(|(key, t)| (t.id, key))
            .collect();
        expired.sort_unstable();
        let mut out = Vec::new();
        for (_, key) in expired {
            self.finish(key, FinalOutcome::DeadlineExceeded, &mut out);
        }
        out
    }
}
