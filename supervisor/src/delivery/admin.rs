//! Operator and shutdown support: intake, the unfinished report, cancel, the dead-letter queue.

use super::options::DlqError;
use super::table::{Delivery, State, Task};
use super::types::{
    DeliveryAction, DlqEntry, DlqSelect, FinalOutcome, TaskId, TaskState, Unfinished,
};
use std::time::{Duration, Instant};

fn public_state(state: &State) -> TaskState {
    match state {
        State::Queued => TaskState::Queued,
        State::InFlight { unit, since, .. } => TaskState::InFlight {
            unit: *unit,
            since: *since,
        },
        State::RetryWait { at } => TaskState::WaitingRetry { at: *at },
        State::DeadLettered { reason, .. } => TaskState::DeadLettered {
            reason: reason.clone(),
        },
    }
}

impl Delivery {
    /// Refuses every later [`Delivery::submit`] ([`super::SubmitError::IntakeStopped`]) and
    /// [`Delivery::dlq_retry`]; tasks already accepted carry on. First step of a graceful
    /// shutdown.
    pub fn stop_intake(&mut self) {
        self.intake_open = false;
    }

    /// Whether submissions are accepted.
    #[must_use]
    pub const fn intake_open(&self) -> bool {
        self.intake_open
    }

    /// Where task `id` is, if it is not done.
    #[must_use]
    pub fn task_state(&self, id: TaskId) -> Option<TaskState> {
        self.key_of(id).map(|k| public_state(&self.tasks[k].state))
    }

    /// Every task that is not done (queued, in flight, waiting for retry, dead-lettered), by
    /// id: the shutdown report of what was left, so nothing disappears silently.
    #[must_use]
    pub fn unfinished(&self) -> Vec<Unfinished> {
        let mut out: Vec<Unfinished> = self
            .tasks
            .iter()
            .map(|(_, t)| Unfinished {
                id: t.id,
                kind: t.kind,
                class: t.class,
                attempt: t.attempt,
                answered: t.answered,
                state: public_state(&t.state),
            })
            .collect();
        out.sort_unstable_by_key(|u| u.id);
        out
    }

    /// Ends task `id` with [`FinalOutcome::Cancelled`] unless it is done or dead-lettered
    /// (empty then). A task in flight is answered now; [`DeliveryAction::Abandoned`] follows
    /// and its completion will be dropped.
    #[must_use = "the actions must be carried out"]
    pub fn cancel(&mut self, id: TaskId, reason: &str) -> Vec<DeliveryAction> {
        let mut out = Vec::new();
        if let Some(key) = self.key_of(id) {
            self.cancel_key(key, reason, &mut out);
        }
        out
    }

    /// [`Delivery::cancel`] for every task not done and not dead-lettered, by id: the last step
    /// of a shutdown that ran out of time, so every waiting submitter gets an answer.
    #[must_use = "the actions must be carried out"]
    pub fn cancel_all(&mut self, reason: &str) -> Vec<DeliveryAction> {
        let mut keys: Vec<(TaskId, usize)> = self
            .tasks
            .iter()
            .filter(|(_, t)| !matches!(t.state, State::DeadLettered { .. }))
            .map(|(key, t)| (t.id, key))
            .collect();
        keys.sort_unstable();
        let mut out = Vec::new();
        for (_, key) in keys {
            self.cancel_key(key, reason, &mut out);
        }
        out
    }

    fn cancel_key(&mut self, key: usize, reason: &str, out: &mut Vec<DeliveryAction>) {
        let t = &self.tasks[key];
        let in_flight_on = match t.state {
            State::DeadLettered { .. } => return,
            State::InFlight { unit, .. } => Some(unit),
            State::Queued | State::RetryWait { .. } => None,
        };
        let id = t.id;
        let reason = reason.to_owned();
        self.finish(key, FinalOutcome::Cancelled { reason }, out);
        if let Some(unit) = in_flight_on {
            out.push(DeliveryAction::Abandoned { id, unit });
        }
    }

    /// The dead-letter queue, by id.
    #[must_use]
    pub fn dlq_list(&self) -> Vec<DlqEntry> {
        let mut out: Vec<DlqEntry> = self
            .dlq
            .iter()
            .filter_map(|&(_, id)| self.key_of(id).map(|k| &self.tasks[k]))
            .filter_map(|t| match &t.state {
                State::DeadLettered { reason, at } => Some(DlqEntry {
                    id: t.id,
                    kind: t.kind,
                    class: t.class,
                    attempts: t.tries(),
                    reason: reason.clone(),
                    payload_len: t.payload.len(),
                    at: *at,
                    submitted_at: t.submitted_at,
                    parent: t.parent(),
                }),
                _ => None,
            })
            .collect();
        out.sort_unstable_by_key(|e| e.id);
        out
    }

    /// The selected dead-letter entries (by id).
    fn dlq_select(&self, select: DlqSelect) -> Result<Vec<usize>, DlqError> {
        let is_dlq = |t: &Task| matches!(t.state, State::DeadLettered { .. });
        match select {
            DlqSelect::One(id) => match self.key_of(id) {
                Some(k) if is_dlq(&self.tasks[k]) => Ok(vec![k]),
                _ => Err(DlqError::NotFound { id }),
            },
            DlqSelect::All => {
                let mut keys: Vec<(TaskId, usize)> = self
                    .dlq
                    .iter()
                    .filter_map(|&(_, id)| self.key_of(id).map(|k| (id, k)))
                    .collect();
                keys.sort_unstable();
                Ok(keys.into_iter().map(|(_, k)| k).collect())
            }
        }
    }

    /// Runs dead-lettered tasks again: each goes to the back of its queue with a fresh count
    /// of attempts, worker deaths and loopbacks, and no deadline (its submitters were answered
    /// [`FinalOutcome::DeadLettered`] already, so nobody waits for it). The attempt number on
    /// the wire keeps increasing, so completions from before cannot be mistaken for the
    /// re-run's. How the re-run ends is reported as [`DeliveryAction::RerunFinished`] (or it
    /// is dead-lettered again).
    ///
    /// # Errors
    /// [`DlqError::NotFound`] if `One(id)` is not in the dead-letter queue;
    /// [`DlqError::IntakeStopped`] during shutdown.
    pub fn dlq_retry(&mut self, select: DlqSelect) -> Result<Vec<DeliveryAction>, DlqError> {
        if !self.intake_open {
            return Err(DlqError::IntakeStopped);
        }
        let keys = self.dlq_select(select)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let t = &mut self.tasks[key];
            t.attempt += 1;
            t.first_attempt = t.attempt;
            t.deaths = 0;
            t.exposures = 0;
            t.loops = 0;
            t.deadline = None;
            let (id, kind, class) = (t.id, t.kind, t.class);
            self.set_state(key, State::Queued);
            self.stats.bump(kind, |c| c.dlq_retried += 1);
            out.push(DeliveryAction::Requeue {
                id,
                kind,
                class,
                front: false,
            });
        }
        Ok(out)
    }

    /// Forgets dead-lettered tasks (their submitters were answered when they were
    /// dead-lettered); returns the ids purged.
    ///
    /// # Errors
    /// [`DlqError::NotFound`] if `One(id)` is not in the dead-letter queue.
    pub fn dlq_purge(&mut self, select: DlqSelect) -> Result<Vec<TaskId>, DlqError> {
        let keys = self.dlq_select(select)?;
        Ok(keys
            .into_iter()
            .map(|key| {
                let task = self.remove(key);
                self.stats.bump(task.kind, |c| c.dlq_purged += 1);
                task.id
            })
            .collect())
    }

    /// Checks the core's bookkeeping and panics with a description of the first
    /// inconsistency. A test and debugging helper (O(tasks)); the properties are:
    /// - every task ever submitted is in exactly one [`super::Census`] bucket, and the buckets
    ///   match the table (`census().total() == stats().total.submitted`);
    /// - the in-flight table, the retry and run-timeout timers, the per-kind queued counts and
    ///   the id and idempotency-key indices agree with the tasks' states;
    /// - every accepted submission has been answered exactly once or is still owed an answer by
    ///   an unanswered task (`answers + awaiting == submitted + joined`).
    ///
    /// # Panics
    /// When a property does not hold (a bug in the core).
    pub fn check_invariants(&self) {
        super::invariants::check(self);
    }

    /// `Deliver` actions emitted so far and accepted submissions still owed one.
    #[must_use]
    pub const fn answer_counts(&self) -> (u64, u64) {
        (self.answers, self.awaiting)
    }

    /// Sets the run timeout of kind `kind` for tasks dispatched from now on (tasks already in
    /// flight keep the deadline they were dispatched with); `None` removes it. What happens when
    /// it fires stays the kind's `on_timeout`. Returns the timeout that was in force, or `None`
    /// for an unknown kind id as well.
    pub fn set_run_timeout(&mut self, kind: u32, timeout: Option<Duration>) -> Option<Duration> {
        let k = self.kinds.get_mut(kind as usize)?;
        std::mem::replace(&mut k.timeout, timeout)
    }

    /// The run timeout of kind `kind` in force (`None`: none, or an unknown kind).
    #[must_use]
    pub fn kind_run_timeout(&self, kind: u32) -> Option<Duration> {
        self.kinds.get(kind as usize).and_then(|k| k.timeout)
    }

    /// When task `id` was submitted; `None` once it is done (so not any more when its
    /// `Deliver` actions are carried out).
    #[must_use]
    pub fn submitted_at(&self, id: TaskId) -> Option<Instant> {
        self.key_of(id).map(|k| self.tasks[k].submitted_at)
    }
}
