//! The task path: submit → dispatch → completion (result, retry, dead letter, loopback).

use super::options::{retry_delay, SubmitError};
use super::table::{Delivery, Extra, State, Task};
use super::types::{DeliveryAction, DispatchInfo, FinalOutcome, NewTask, Submitted, Take, TaskId};
use amp_ipc::Outcome;
use std::time::Instant;

impl Delivery {
    /// Accepts a task, or joins an unanswered task with the same idempotency key.
    ///
    /// On [`Submitted::Queued`] push the id at the back of its kind's queue for its class. A
    /// joining submitter gets the same final outcome as the original one (each distinct
    /// [`super::Submitter`] once); the original task's payload, deadline and class apply.
    /// Every new task deposits into the retry budget.
    ///
    /// # Errors
    /// [`SubmitError`]: intake stopped, unknown kind or class, a deadline not in the future,
    /// the kind's queue at its `queue_limit` (tasks in state queued), or an idempotency key of
    /// a task that was already answered (and is still remembered). Nothing changes then.
    pub fn submit(&mut self, now: Instant, task: NewTask) -> Result<Submitted, SubmitError> {
        if !self.intake_open {
            return Err(SubmitError::IntakeStopped);
        }
        let Some(kind_config) = self.kinds.get(task.kind as usize) else {
            return Err(SubmitError::UnknownKind { kind: task.kind });
        };
        if task.class >= self.classes {
            return Err(SubmitError::UnknownClass {
                class: task.class,
                classes: self.classes,
            });
        }
        if let Some(&id) = task.idempotency_key.as_ref().and_then(|k| self.keys.get(k)) {
            return self.join(id, &task);
        }
        if task.deadline.is_some_and(|d| d <= now) {
            return Err(SubmitError::DeadlinePassed);
        }
        let limit = kind_config.queue_limit;
        if self.queued_per_kind[task.kind as usize] >= limit {
            return Err(SubmitError::QueueFull {
                kind: task.kind,
                limit,
            });
        }
        let id = TaskId(self.next_id);
        self.next_id += 1;
        self.insert(Task {
            id,
            kind: task.kind,
            class: task.class,
            payload: task.payload,
            deadline: task.deadline,
            chunk: task.chunk,
            attempt: 1,
            first_attempt: 1,
            loops: 0,
            deaths: 0,
            exposures: 0,
            unit_pos: 0,
            submitter: task.submitter,
            extra: (task.idempotency_key.is_some() || task.parent.is_some()).then(|| {
                Box::new(Extra {
                    key: task.idempotency_key,
                    parent: task.parent,
                    joined: Vec::new(),
                })
            }),
            answered: false,
            submitted_at: now,
            state: State::Queued,
        });
        self.budget.deposit(now);
        self.stats.bump(task.kind, |c| c.submitted += 1);
        Ok(Submitted::Queued(id))
    }

    /// Takes back a task [`Delivery::submit`] just accepted that the event loop could not
    /// enqueue (e.g. its router refused it): the task is forgotten as if it had never been
    /// submitted — no answer is emitted (the loop answers the submitter
    /// [`FinalOutcome::Rejected`] itself), its idempotency key is released so a later
    /// submission with it starts afresh, and the `submitted` counters go back down (its id is
    /// not reused). Returns `false` and changes nothing unless `id` is queued, has never
    /// reached a worker, and has no joined submitters.
    pub fn withdraw(&mut self, id: TaskId) -> bool {
        let Some(key) = self.key_of(id) else {
            return false;
        };
        let t = &self.tasks[key];
        let fresh = t.state == State::Queued
            && !t.answered
            && t.joined().is_empty()
            && t.attempt == 1
            && t.loops == 0;
        if !fresh {
            return false;
        }
        self.unindex_state(key);
        let task = self.tasks.remove(key);
        self.index.remove(id.0);
        if let Some(k) = task.key() {
            self.keys.remove(k);
        }
        self.awaiting -= 1;
        self.stats.bump(task.kind, |c| c.submitted -= 1);
        true
    }

    /// A submission (`new`) with the key of task `id`: joins it if it is the same kind of task.
    fn join(&mut self, id: TaskId, new: &NewTask) -> Result<Submitted, SubmitError> {
        let Some(key) = self.key_of(id).filter(|&k| !self.tasks[k].answered) else {
            return Err(SubmitError::AlreadyFinished { id });
        };
        let submitter = new.submitter;
        let t = &mut self.tasks[key];
        let other = if t.kind != new.kind {
            Some("of another kind")
        } else if t.chunk != new.chunk {
            Some(if t.chunk { "a chunk" } else { "not a chunk" })
        } else {
            None
        };
        if let Some(other) = other {
            return Err(SubmitError::KeyConflict { id, other });
        }
        if t.submitter != submitter && !t.joined().contains(&submitter) {
            t.extra_mut().joined.push(submitter);
            self.awaiting += 1;
            self.stats.bump(t.kind, |c| c.joined += 1);
        }
        Ok(Submitted::Joined(id))
    }

    /// The event loop popped `id` from a queue to send it to `unit`: marks it in flight there
    /// (starting its run timeout) and returns what goes into the task record.
    ///
    /// [`Take::Expired`] when its deadline passed while it waited (the returned actions answer
    /// it [`FinalOutcome::DeadlineExceeded`]); [`Take::Skip`] when `id` is not a queued task
    /// (queues may hold ids the core already ended, e.g. by [`Delivery::cancel`] or
    /// [`Delivery::expire_queued`]): pop the next one.
    pub fn take_for_dispatch(&mut self, now: Instant, id: TaskId, unit: usize) -> Take<'_> {
        let Some(key) = self.key_of(id) else {
            return Take::Skip;
        };
        let t = &self.tasks[key];
        if t.state != State::Queued {
            return Take::Skip;
        }
        if t.deadline.is_some_and(|d| d <= now) {
            let mut out = Vec::new();
            self.finish(key, FinalOutcome::DeadlineExceeded, &mut out);
            return Take::Expired(out);
        }
        let timeout_at = self.kinds[t.kind as usize]
            .timeout
            .and_then(|d| now.checked_add(d));
        self.set_state(
            key,
            State::InFlight {
                unit,
                since: now,
                timeout_at,
                kill_sent: false,
            },
        );
        let t = &self.tasks[key];
        Take::Dispatch(DispatchInfo {
            id,
            attempt: t.attempt,
            kind: t.kind,
            class: t.class,
            deadline: t.deadline,
            payload: &t.payload,
            chunk: t.chunk,
        })
    }

    /// A task taken for `unit` could not be handed to it (its ring was full, it went away
    /// before the record was written): back to the head of its queue with the same attempt.
    /// Empty if `id` is not in flight on `unit`.
    #[must_use = "the actions must be carried out"]
    pub fn dispatch_failed(&mut self, id: TaskId, unit: usize) -> Vec<DeliveryAction> {
        let Some(key) = self.key_of(id) else {
            return Vec::new();
        };
        let t = &self.tasks[key];
        if !matches!(t.state, State::InFlight { unit: u, .. } if u == unit) {
            return Vec::new();
        }
        let (kind, class) = (t.kind, t.class);
        self.set_state(key, State::Queued);
        vec![DeliveryAction::Requeue {
            id,
            kind,
            class,
            front: true,
        }]
    }

    /// Worker `unit` reported `outcome` for attempt `attempt` of task `id`.
    ///
    /// A late duplicate is dropped (counted as `late_dropped`, no actions): an id no longer
    /// known (already answered), a task not in flight, in flight on another unit, or with
    /// another attempt. Otherwise:
    /// - `Ok(bytes)` → [`FinalOutcome::Ok`] to every submitter;
    /// - `Err { retryable: false }` → [`FinalOutcome::Failed`] with the worker's message;
    /// - `Err { retryable: true }` → if the run made `max_attempts` attempts already, the task
    ///   is dead-lettered with the last error; else a retry after a full-jitter backoff
    ///   ([`super::retry_delay`] with retry number `attempts - 1`) if the retry budget has a
    ///   token ([`DeliveryAction::ScheduleRetry`]; the task comes back from
    ///   [`Delivery::tick`]), else it is dead-lettered (`budget_exhausted`). A retry that
    ///   would become due at or after the deadline ends [`FinalOutcome::DeadlineExceeded`] now.
    /// - `Loopback { payload, reason }` → the task goes round again with the new payload (same
    ///   attempt, [`DeliveryAction::Requeue`] at the back) while it has taken fewer than
    ///   `max_loops` loopbacks; then [`FinalOutcome::LoopLimit`] with the last payload.
    #[must_use = "the actions must be carried out"]
    pub fn completed(
        &mut self,
        now: Instant,
        unit: usize,
        id: TaskId,
        attempt: u32,
        outcome: Outcome,
    ) -> Vec<DeliveryAction> {
        let mut out = Vec::new();
        self.completed_into(now, unit, id, attempt, outcome, &mut out);
        out
    }

    /// [`Delivery::completed`], appending the actions to `out` (the event loop reuses one
    /// buffer for every completion).
    pub fn completed_into(
        &mut self,
        now: Instant,
        unit: usize,
        id: TaskId,
        attempt: u32,
        outcome: Outcome,
        out: &mut Vec<DeliveryAction>,
    ) {
        let Some(key) = self.key_of(id) else {
            self.stats.total.late_dropped += 1;
            return;
        };
        let t = &self.tasks[key];
        let current =
            t.attempt == attempt && matches!(t.state, State::InFlight { unit: u, .. } if u == unit);
        if !current {
            self.stats.bump(t.kind, |c| c.late_dropped += 1);
            return;
        }
        match outcome {
            Outcome::Ok(bytes) => self.finish(key, FinalOutcome::Ok(bytes), out),
            Outcome::Err {
                retryable: false,
                message,
            } => self.finish(key, FinalOutcome::Failed { message }, out),
            Outcome::Err {
                retryable: true,
                message,
            } => self.retry_or_give_up(now, key, &message, out),
            Outcome::Loopback { payload, reason } => self.loopback(key, payload, reason, out),
        }
    }

    fn retry_or_give_up(
        &mut self,
        now: Instant,
        key: usize,
        message: &str,
        out: &mut Vec<DeliveryAction>,
    ) {
        let t = &self.tasks[key];
        let (id, kind, tries, deadline) = (t.id, t.kind, t.tries(), t.deadline);
        let max = self.kinds[kind as usize].max_attempts;
        if tries >= max {
            let reason =
                format!("{tries} attempts failed (max_attempts = {max}); last error: {message}");
            self.dead_letter(now, key, reason, false, out);
            return;
        }
        let (base, cap) = (self.options.retry_base, self.options.retry_cap);
        let delay = retry_delay(base, cap, tries - 1, &mut self.rng);
        let at = now.checked_add(delay).unwrap_or(now);
        if deadline.is_some_and(|d| at >= d) {
            self.finish(key, FinalOutcome::DeadlineExceeded, out);
            return;
        }
        if !self.budget.withdraw(now) {
            // Retrying now would feed an outage; the task waits in the dead-letter queue, from
            // where `ampctl dlq retry` sends it again once things are better.
            self.stats.bump(kind, |c| c.budget_exhausted += 1);
            let reason = format!(
                "retry budget exhausted (too many retries across ampd), not retried after attempt {tries}; last error: {message}"
            );
            self.dead_letter(now, key, reason, false, out);
            return;
        }
        self.tasks[key].attempt += 1;
        let attempt = self.tasks[key].attempt;
        self.set_state(key, State::RetryWait { at });
        self.stats.bump(kind, |c| c.retried += 1);
        out.push(DeliveryAction::ScheduleRetry { id, attempt, at });
    }

    fn loopback(
        &mut self,
        key: usize,
        payload: Vec<u8>,
        reason: String,
        out: &mut Vec<DeliveryAction>,
    ) {
        let t = &mut self.tasks[key];
        if t.loops >= self.options.max_loops {
            let loops = t.loops;
            let outcome = FinalOutcome::LoopLimit {
                payload,
                reason,
                loops,
            };
            self.finish(key, outcome, out);
            return;
        }
        t.loops += 1;
        let old = std::mem::replace(&mut t.payload, payload);
        self.give_buffer(old);
        let t = &self.tasks[key];
        let (id, kind, class) = (t.id, t.kind, t.class);
        self.set_state(key, State::Queued);
        self.stats.bump(kind, |c| c.loopbacks += 1);
        out.push(DeliveryAction::Requeue {
            id,
            kind,
            class,
            front: false,
        });
    }
}
