//! Counters for `ampctl stats` and the census of where every task is.

/// Event counts since start. Outcomes are counted once per task (not per joined submitter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// New tasks accepted.
    pub submitted: u64,
    /// Submissions that joined an unanswered task with the same idempotency key.
    pub joined: u64,
    /// Tasks answered [`super::FinalOutcome::Ok`].
    pub delivered_ok: u64,
    /// Tasks answered [`super::FinalOutcome::Failed`] (a non-retryable error).
    pub failed: u64,
    /// Retries scheduled after a retryable error.
    pub retried: u64,
    /// Retryable errors that could not be retried because the retry budget was empty (the
    /// task was dead-lettered: also counted in `dead_lettered`).
    pub budget_exhausted: u64,
    /// Tasks moved to the dead-letter queue (including poison).
    pub dead_lettered: u64,
    /// Of those, tasks dead-lettered as poison (in flight on too many worker deaths).
    pub poisoned: u64,
    /// Tasks answered [`super::FinalOutcome::DeadlineExceeded`].
    pub deadline_exceeded: u64,
    /// Tasks answered [`super::FinalOutcome::TimedOut`].
    pub timed_out: u64,
    /// Run timeouts that asked for the worker to be killed.
    pub timeout_kills: u64,
    /// Requeues to the head after a worker was lost.
    pub requeued_lost: u64,
    /// Loopbacks taken (task sent round again).
    pub loopbacks: u64,
    /// Tasks answered [`super::FinalOutcome::LoopLimit`].
    pub loop_limited: u64,
    /// Tasks answered [`super::FinalOutcome::Cancelled`].
    pub cancelled: u64,
    /// Completions dropped as late duplicates (unknown id, wrong attempt, wrong unit, or the
    /// task not in flight). Those for ids no longer known count only in the total.
    pub late_dropped: u64,
    /// Dead-letter entries requeued by an operator.
    pub dlq_retried: u64,
    /// Dead-letter entries purged by an operator.
    pub dlq_purged: u64,
    /// Dead-letter entries dropped, oldest first, to keep the queue within its limit.
    pub dlq_evicted: u64,
    /// Dead-letter re-runs that ended ([`super::DeliveryAction::RerunFinished`]).
    pub reruns_finished: u64,
}

/// All counters: the total and one set per kind (indexed by kind id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Over all kinds.
    pub total: Counters,
    /// Per kind id.
    pub per_kind: Vec<Counters>,
}

impl Stats {
    pub(super) fn new(kinds: usize) -> Self {
        Self {
            total: Counters::default(),
            per_kind: vec![Counters::default(); kinds],
        }
    }

    /// Applies `f` to the total and to `kind`'s counters.
    pub(super) fn bump(&mut self, kind: u32, f: impl Fn(&mut Counters)) {
        f(&mut self.total);
        if let Some(c) = self.per_kind.get_mut(kind as usize) {
            f(c);
        }
    }
}

/// Where every task ever submitted is now. Each task is in exactly one bucket, so
/// [`Census::total`] equals [`Counters::submitted`] at every moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// Waiting in a queue.
    pub queued: u64,
    /// Dispatched to a worker.
    pub in_flight: u64,
    /// Waiting for a retry backoff to end.
    pub waiting_retry: u64,
    /// In the dead-letter queue.
    pub dead_lettered: u64,
    /// Final and forgotten: answered and gone (delivered, failed, expired, cancelled, …, or
    /// purged from the dead-letter queue).
    pub done: u64,
}

impl Census {
    /// Sum of all buckets.
    #[must_use]
    pub const fn total(&self) -> u64 {
        self.queued + self.in_flight + self.waiting_retry + self.dead_lettered + self.done
    }

    /// Tasks not done yet (everything but `done` and `dead_lettered`).
    #[must_use]
    pub const fn pending(&self) -> u64 {
        self.queued + self.in_flight + self.waiting_retry
    }
}
