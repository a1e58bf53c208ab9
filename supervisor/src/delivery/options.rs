//! Delivery-wide settings, the retry backoff, and the errors the core's calls return.

use super::types::TaskId;
use rand::Rng;
use std::time::Duration;

/// Default [`DeliveryOptions::retry_base`].
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_millis(100);
/// Default [`DeliveryOptions::retry_cap`].
pub const DEFAULT_RETRY_CAP: Duration = Duration::from_secs(10);
/// Default [`DeliveryOptions::max_loops`].
pub const DEFAULT_MAX_LOOPS: u32 = 10;
/// Default [`DeliveryOptions::poison_deaths`].
pub const DEFAULT_POISON_DEATHS: u32 = 3;
/// Default [`DeliveryOptions::key_retention`].
pub const DEFAULT_KEY_RETENTION: usize = 10_000;
/// Default [`DeliveryOptions::dlq_limit`].
pub const DEFAULT_DLQ_LIMIT: usize = 100_000;

/// Settings that apply to every kind (per-kind ones come from [`crate::config::KindConfig`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeliveryOptions {
    /// Ceiling of the first retry's delay; the ceiling doubles with each retry
    /// (see [`retry_ceiling`]).
    pub retry_base: Duration,
    /// Largest retry ceiling.
    pub retry_cap: Duration,
    /// The retry budget shared by all kinds.
    pub budget: RetryBudget,
    /// Loopbacks a task may take before its last result is delivered as
    /// [`super::FinalOutcome::LoopLimit`].
    pub max_loops: u32,
    /// Worker deaths a task may be in flight on before it is dead-lettered as poison (>= 1).
    pub poison_deaths: u32,
    /// How many idempotency keys of finished tasks are remembered (oldest forgotten first); a
    /// resubmission of a remembered key is refused with [`SubmitError::AlreadyFinished`], of a
    /// forgotten one creates a new task.
    pub key_retention: usize,
    /// Dead-letter entries kept at most: beyond it the oldest is dropped
    /// ([`super::DeliveryAction::DlqEvicted`]; its submitters were answered when it was
    /// dead-lettered), so an outage cannot grow the queue, payloads included, without bound.
    pub dlq_limit: usize,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        Self {
            retry_base: DEFAULT_RETRY_BASE,
            retry_cap: DEFAULT_RETRY_CAP,
            budget: RetryBudget::default(),
            max_loops: DEFAULT_MAX_LOOPS,
            poison_deaths: DEFAULT_POISON_DEATHS,
            key_retention: DEFAULT_KEY_RETENTION,
            dlq_limit: DEFAULT_DLQ_LIMIT,
        }
    }
}

/// The retry budget: a token bucket that keeps retries a bounded fraction of recent traffic, so
/// a failing dependency cannot turn every submission into `max_attempts` submissions.
///
/// Every new submission deposits `ratio` tokens; time deposits `min_per_sec` tokens per second
/// (so a quiet system can still retry); the balance never exceeds `capacity` (which also bounds
/// how far back "recent" reaches: about `capacity / ratio` submissions). The bucket starts full.
/// Each retry of a retryable error withdraws one token; with less than one token left the task
/// is dead-lettered instead ([`super::FinalOutcome::DeadLettered`], counted as
/// `budget_exhausted`), to be sent again with `dlq retry` once the outage is over.
/// Requeues after a lost worker, loopbacks and dead-letter re-runs do not use the budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    /// Tokens per submission (0.1: retries may add 10 % to the submission rate).
    pub ratio: f64,
    /// Tokens per second regardless of traffic.
    pub min_per_sec: f64,
    /// Most tokens the bucket holds (below 1 disables retries).
    pub capacity: f64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            ratio: 0.1,
            min_per_sec: 10.0,
            capacity: 100.0,
        }
    }
}

/// Why [`super::Delivery::new`] refused its settings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptionsError {
    /// A kind allows no attempt at all.
    #[error("kind {kind}: max_attempts = 0; use at least 1 (1 means no retries)")]
    ZeroMaxAttempts {
        /// Kind id.
        kind: u32,
    },
    /// There is no priority class.
    #[error("no priority classes: declare at least one class")]
    NoClasses,
    /// More kinds than a `u32` kind id can name.
    #[error("{count} kinds: at most 2^32 kinds can be interned")]
    TooManyKinds {
        /// How many were given.
        count: usize,
    },
    /// `poison_deaths` is 0.
    #[error(
        "poison_deaths = 0: use at least 1 (a task is dead-lettered after that many worker deaths)"
    )]
    ZeroPoisonDeaths,
    /// A retry budget setting is negative, NaN or infinite.
    #[error("retry budget {field} = {value}: use a finite number >= 0")]
    InvalidBudget {
        /// Which setting.
        field: &'static str,
        /// Its value.
        value: f64,
    },
}

/// Why [`super::Delivery::submit`] refused a task. The event loop answers the submitter with
/// [`super::FinalOutcome::Rejected`] carrying this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Intake was stopped (`ampd` is shutting down).
    #[error("ampd is shutting down and accepts no new tasks; submit to the next instance")]
    IntakeStopped,
    /// The kind id is not interned.
    #[error("unknown task kind id {kind}: no worker serves it; check the kind name")]
    UnknownKind {
        /// The id given.
        kind: u32,
    },
    /// The class index is out of range.
    #[error("unknown priority class {class}: there are {classes} classes (0..{classes})")]
    UnknownClass {
        /// The index given.
        class: usize,
        /// How many classes exist.
        classes: usize,
    },
    /// The kind's queue holds `queue_limit` tasks already.
    #[error(
        "queue of kind {kind} is full ({limit} tasks queued); retry later or raise queue_limit"
    )]
    QueueFull {
        /// Kind id.
        kind: u32,
        /// Its `queue_limit`.
        limit: u64,
    },
    /// The deadline is not in the future.
    #[error("the task's deadline has already passed; give a later deadline")]
    DeadlinePassed,
    /// The idempotency key belongs to a task that has been answered already; its result is not
    /// kept.
    #[error("a task with this idempotency key ({id}) has already been answered; use a new key to run it again")]
    AlreadyFinished {
        /// That task.
        id: TaskId,
    },
    /// The idempotency key belongs to a task of another kind, or a chunk where this is a
    /// plain task (or the other way round): joining it would answer with another task's result.
    #[error("the idempotency key belongs to task {id}, which is {other}; use another key")]
    KeyConflict {
        /// The task holding the key.
        id: TaskId,
        /// How it differs ("of another kind", "a chunk", "not a chunk").
        other: &'static str,
    },
}

/// Why a dead-letter operation did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DlqError {
    /// The task is not in the dead-letter queue.
    #[error("task {id} is not in the dead-letter queue; list it with `ampctl dlq list`")]
    NotFound {
        /// The id given.
        id: TaskId,
    },
    /// Intake was stopped, so nothing is requeued.
    #[error("ampd is shutting down; dead-letter entries cannot be retried now")]
    IntakeStopped,
}

/// The ceiling of the delay before retry number `retry` (0 for the first retry):
/// `min(cap, base * 2^retry)`.
///
/// ```
/// use amp_supervisor::delivery::retry_ceiling;
/// use std::time::Duration;
/// let (base, cap) = (Duration::from_millis(100), Duration::from_secs(1));
/// assert_eq!(retry_ceiling(base, cap, 0), Duration::from_millis(100));
/// assert_eq!(retry_ceiling(base, cap, 2), Duration::from_millis(400));
/// assert_eq!(retry_ceiling(base, cap, 60), cap);
/// ```
#[must_use]
pub fn retry_ceiling(base: Duration, cap: Duration, retry: u32) -> Duration {
    let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
    base.checked_mul(factor).map_or(cap, |d| d.min(cap))
}

/// The delay before retry number `retry` with full jitter: uniform in
/// `[0, retry_ceiling(base, cap, retry)]` (AWS "full jitter": spreads a burst of failures
/// over the whole window instead of synchronising their retries).
pub fn retry_delay(base: Duration, cap: Duration, retry: u32, rng: &mut impl Rng) -> Duration {
    let ceiling = retry_ceiling(base, cap, retry);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos))
}
