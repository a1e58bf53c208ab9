//! The vocabulary of the delivery core: tasks going in, actions and outcomes coming out.

use std::fmt;
use std::time::{Duration, Instant};

/// A task's id: unique per `ampd` run, assigned by [`super::Delivery::submit`] in submission
/// order (1, 2, 3, …). It is the `id` of the task record on the wire, so the event loop builds
/// one from a completion header with `TaskId(header.id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub u64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Who gets a task's final outcome: opaque to the core, chosen by the event loop (typically the
/// client's connection and the request tag the client will match the result with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Submitter {
    /// The client (e.g. its segment or connection number).
    pub client: u64,
    /// The client's own tag for this request.
    pub tag: u64,
}

/// A task as the event loop hands it to [`super::Delivery::submit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// Interned kind id: the index of its [`crate::config::KindConfig`] in the table given to
    /// [`super::Delivery::new`].
    pub kind: u32,
    /// Priority class index (`0..classes`).
    pub class: usize,
    /// The payload, kept until the task is final (every retry sends it again).
    pub payload: Vec<u8>,
    /// When the submitter stops caring; a task not dispatched by then ends
    /// [`FinalOutcome::DeadlineExceeded`].
    pub deadline: Option<Instant>,
    /// Idempotency key: while a task with the same key is known, the submission joins it
    /// instead of creating another (see [`super::Submitted::Joined`]).
    pub idempotency_key: Option<String>,
    /// The task that spawned this one (pipelines), if any.
    pub parent: Option<TaskId>,
    /// Who gets the outcome.
    pub submitter: Submitter,
    /// The payload is a chunk of items (`amp_ipc::chunk`): the worker runs its handler per
    /// item. To the core it is one task.
    pub chunk: bool,
}

impl NewTask {
    /// A task with no deadline, key or parent, not a chunk.
    #[must_use]
    pub const fn new(kind: u32, class: usize, payload: Vec<u8>, submitter: Submitter) -> Self {
        Self {
            kind,
            class,
            payload,
            deadline: None,
            idempotency_key: None,
            parent: None,
            submitter,
            chunk: false,
        }
    }
}

/// What [`super::Delivery::submit`] did with an accepted submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// A new task: push `id` at the **back** of its kind's queue for its class.
    Queued(TaskId),
    /// A task with the same idempotency key is still unanswered: this submitter was added to
    /// it and gets the same final outcome. Nothing to enqueue.
    Joined(TaskId),
}

impl Submitted {
    /// The task's id either way.
    #[must_use]
    pub const fn id(self) -> TaskId {
        match self {
            Self::Queued(id) | Self::Joined(id) => id,
        }
    }
}

/// How a task ended, as its submitter is told (exactly once per accepted submission).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalOutcome {
    /// The worker succeeded; the result bytes.
    Ok(Vec<u8>),
    /// The worker reported a failure that retrying will not fix (its message).
    Failed {
        /// What went wrong.
        message: String,
    },
    /// The deadline passed before the task could be (re)dispatched.
    DeadlineExceeded,
    /// It ran longer than its kind's `timeout` (with `on_timeout = "fail"`).
    TimedOut {
        /// The kind's timeout.
        after: Duration,
    },
    /// It was moved to the dead-letter queue (retries used up, or poison).
    DeadLettered {
        /// Why.
        reason: String,
    },
    /// The worker asked for another round more than `max_loops` times: the last round's
    /// payload and reason, marked as the loop limit.
    LoopLimit {
        /// The payload the last loopback produced.
        payload: Vec<u8>,
        /// The last loopback's reason.
        reason: String,
        /// Loopbacks taken before the limit.
        loops: u32,
    },
    /// Cancelled before it finished (e.g. ampd shut down with it unfinished).
    Cancelled {
        /// Why.
        reason: String,
    },
    /// The submission was refused. Never produced by the core: the event loop answers a
    /// submission [`super::Delivery::submit`] refused with `Rejected { reason: err.to_string() }`.
    Rejected {
        /// Why.
        reason: String,
    },
}

impl FinalOutcome {
    /// Whether the task succeeded.
    #[must_use]
    pub const fn is_ok(&self) -> bool {
        matches!(self, Self::Ok(_))
    }
}

/// Why the event loop reports a worker unit lost to [`super::Delivery::worker_lost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LostCause {
    /// The process exited or was killed (including a kill the core asked for with
    /// [`DeliveryAction::KillWorker`]). Counts as a worker death for poison detection.
    Exited,
    /// It stopped showing signs of life. Counts as a worker death.
    HeartbeatTimeout,
    /// It was taken out of rotation (quarantine); not a death.
    Quarantined,
    /// It was stopped on purpose (shutdown, scale-down, drain timeout); not a death.
    Stopped,
}

impl LostCause {
    /// Whether this loss counts toward a task's poison threshold.
    #[must_use]
    pub const fn is_death(self) -> bool {
        matches!(self, Self::Exited | Self::HeartbeatTimeout)
    }
}

/// Which of a lost worker's in-flight tasks count its death toward their poison threshold
/// (see [`super::Delivery::worker_lost_blaming`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Blame {
    /// Every task in flight on it (nothing is known about what it was running).
    All,
    /// Only this task: the worker reported it was running exactly this one (a task it had not
    /// been given falls back to [`Blame::All`]).
    Only(TaskId),
    /// None: the worker reported it was running nothing (its tasks were waiting in its ring).
    Nobody,
}

/// Something the event loop must carry out (or record), in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryAction {
    /// Put `id` into the queue of `kind` for `class`: at the head when `front`, else at the back.
    /// Several `front` requeues are listed newest first, so pushing each to the head in order
    /// leaves the oldest at the head.
    Requeue {
        /// The task.
        id: TaskId,
        /// Its kind.
        kind: u32,
        /// Its class.
        class: usize,
        /// Head (a worker was lost under it, or it could not be written) or back (a retry whose
        /// backoff ended, a loopback, a dead-letter retry).
        front: bool,
    },
    /// Send `outcome` to `to`. Emitted exactly once per accepted submission.
    Deliver {
        /// The submitter.
        to: Submitter,
        /// The task.
        id: TaskId,
        /// Its kind (the loop needs it for the cache, triggers and routes after the task has
        /// left the table).
        kind: u32,
        /// Its class.
        class: usize,
        /// Its final outcome.
        outcome: FinalOutcome,
    },
    /// A retry was scheduled (for the log): the core requeues the task from
    /// [`super::Delivery::tick`] at `at`.
    ScheduleRetry {
        /// The task.
        id: TaskId,
        /// The attempt the retry will be.
        attempt: u32,
        /// When it becomes due.
        at: Instant,
    },
    /// The task moved to the dead-letter queue (for the log; its submitters get
    /// [`FinalOutcome::DeadLettered`] in the same batch).
    DeadLetter {
        /// The task.
        id: TaskId,
        /// Why.
        reason: String,
    },
    /// Kill worker `unit` (its task `id` ran past its kind's timeout with
    /// `on_timeout = "kill-and-requeue"`), then report it with
    /// [`super::Delivery::worker_lost`] as usual; that requeues the task. Emitted once per
    /// unit until it is reported lost.
    KillWorker {
        /// The unit.
        unit: usize,
        /// The task that timed out.
        id: TaskId,
    },
    /// The task was answered while still running on `unit` (run timeout with
    /// `on_timeout = "fail"`, or a cancel). The worker keeps its slot until its completion
    /// arrives; [`super::Delivery::completed`] will drop that completion.
    Abandoned {
        /// The task.
        id: TaskId,
        /// The unit still running it.
        unit: usize,
    },
    /// The oldest dead-letter entry was dropped to keep the queue within
    /// [`super::DeliveryOptions::dlq_limit`] (its submitters were answered when it was
    /// dead-lettered): log it.
    DlqEvicted {
        /// The task.
        id: TaskId,
        /// Its kind.
        kind: u32,
    },
    /// A task re-run from the dead-letter queue ended. Its submitters were answered when it was
    /// dead-lettered, so nobody gets this: log it (and show it to whoever asked for the re-run).
    RerunFinished {
        /// The task.
        id: TaskId,
        /// How the re-run ended.
        outcome: FinalOutcome,
    },
}

/// What [`super::Delivery::take_for_dispatch`] found for a task id popped off a queue.
#[derive(Debug, PartialEq, Eq)]
pub enum Take<'a> {
    /// Write the task record and send it to the unit.
    Dispatch(DispatchInfo<'a>),
    /// Its deadline passed while queued: nothing to dispatch; carry out these actions (the
    /// [`FinalOutcome::DeadlineExceeded`] deliveries).
    Expired(Vec<DeliveryAction>),
    /// Not a queued task (already answered, cancelled, expired, or a stale duplicate entry in
    /// the queue): drop it and pop the next one.
    Skip,
}

/// What the event loop needs to write a task record (see `amp_ipc::wire::TaskHeader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchInfo<'a> {
    /// The task.
    pub id: TaskId,
    /// The attempt number for the header (the worker's completion must echo it).
    pub attempt: u32,
    /// Kind id.
    pub kind: u32,
    /// Class index.
    pub class: usize,
    /// Deadline, if any.
    pub deadline: Option<Instant>,
    /// The payload to copy into the record.
    pub payload: &'a [u8],
    /// The payload is a chunk (`TASK_CHUNK` in the record's flags).
    pub chunk: bool,
}

/// Where an unfinished task is (see [`super::Delivery::unfinished`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting in its kind's queue.
    Queued,
    /// Dispatched to `unit` at `since`.
    InFlight {
        /// The unit.
        unit: usize,
        /// Dispatch time.
        since: Instant,
    },
    /// Waiting for its retry backoff to end at `at`.
    WaitingRetry {
        /// When it is requeued.
        at: Instant,
    },
    /// In the dead-letter queue.
    DeadLettered {
        /// Why.
        reason: String,
    },
}

/// One task that is not done, for a shutdown report or `ampctl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// The task.
    pub id: TaskId,
    /// Its kind.
    pub kind: u32,
    /// Its class.
    pub class: usize,
    /// Its current (or last) attempt number.
    pub attempt: u32,
    /// Whether its submitters were already answered (a dead-lettered task, or a re-run of one).
    pub answered: bool,
    /// Where it is.
    pub state: TaskState,
}

/// One dead-letter queue entry (see [`super::Delivery::dlq_list`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqEntry {
    /// The task.
    pub id: TaskId,
    /// Its kind.
    pub kind: u32,
    /// Its class.
    pub class: usize,
    /// Attempts made in the run that ended here.
    pub attempts: u32,
    /// Why it was dead-lettered.
    pub reason: String,
    /// Payload size in bytes.
    pub payload_len: usize,
    /// When it was dead-lettered.
    pub at: Instant,
    /// When it was first submitted.
    pub submitted_at: Instant,
    /// Its parent task, if any.
    pub parent: Option<TaskId>,
}

/// Which dead-letter entries a [`super::Delivery::dlq_retry`] or
/// [`super::Delivery::dlq_purge`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlqSelect {
    /// This task.
    One(TaskId),
    /// Every entry.
    All,
}
