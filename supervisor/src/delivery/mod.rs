//! The delivery core: owns every task from submission to its final outcome — the in-flight
//! table, retries with backoff and a retry budget, the dead-letter queue, and the dropping of
//! late or duplicate completions. Nothing is lost: execution is at least once, and every
//! accepted submission is answered **exactly once**.
//!
//! Pure like the other cores: no clock is read (every call takes `now`), no queue, ring or
//! socket is touched (calls return [`DeliveryAction`]s for the event loop to carry out), and
//! jitter comes from the seeded [`rand::rngs::SmallRng`] given to [`Delivery::new`].
//!
//! # A task's life
//! ```text
//!            submit                 take_for_dispatch            completed: Ok / Err(fatal)
//!  ──────────────────▶ Queued ─────────────────────────▶ InFlight ───────────────────────▶ done
//!                       ▲  ▲ ▲         (deadline passed: done,   │ │ │   (answered)
//!    Requeue{front}     │  │ │          DeadlineExceeded)        │ │ │
//!    worker_lost ───────┘  │ └── Loopback (≤ max_loops) ─────────┘ │ │ run timeout: fail → done
//!    (attempt + 1)         │                                       │ │   kill → KillWorker, then
//!                          └─ tick ◀── WaitingRetry ◀─ Err(retry) ─┘ │   worker_lost requeues
//!                                  (backoff, budget)                 │
//!               dlq_retry ◀── DeadLettered ◀─ attempts used up, or poison (worker deaths)
//!                                  └─ dlq_purge → done
//! ```
//! At every moment each task ever submitted is in exactly one of: queued, in flight, waiting
//! for retry, dead-lettered, done ([`Delivery::census`]; [`Delivery::check_invariants`] checks
//! it and the indices behind it).
//!
//! # Rules
//! - **Ids** are issued in submission order (1, 2, …) and never reused within a run.
//! - **Attempts** start at 1. A retry and a lost worker add one; a loopback does not; a
//!   dead-letter re-run adds one and restarts the count against `max_attempts`. The attempt
//!   on the wire never goes down, so a completion carrying an older attempt is recognised.
//! - **Late duplicates** are dropped and counted ([`Counters::late_dropped`]): a completion for
//!   an id no longer known, for a task not in flight, from another unit, or for another
//!   attempt. Hence a result is delivered once even when a "dead" worker's completion arrives
//!   after its task was requeued and finished elsewhere.
//! - **Retryable errors** ([`Delivery::completed`]): dead-lettered once the run made the
//!   kind's `max_attempts` attempts (reason carries the last error); otherwise retried after a
//!   full-jitter delay uniform in `[0, min(retry_cap, retry_base · 2^(attempts - 1))]`
//!   ([`retry_delay`]), paid for with one token of the [`RetryBudget`]; with the budget empty
//!   the task is dead-lettered instead (`budget_exhausted`; `dlq retry` sends it again later).
//! - **Lost workers** ([`Delivery::worker_lost`]): tasks in flight go to the **head** of their
//!   queue (they did nothing wrong and already waited their turn); a task in flight on
//!   [`DeliveryOptions::poison_deaths`] worker deaths is dead-lettered as poison instead.
//!   Retries whose backoff ended go to the **back** (see [`Delivery::tick`]).
//! - **Run timeouts** follow the kind's `on_timeout`: `fail` answers
//!   [`FinalOutcome::TimedOut`] at once and drops the late completion; `kill-and-requeue`
//!   asks for the worker to be killed and requeues through [`Delivery::worker_lost`].
//! - **Deadlines** are checked when a task is taken for dispatch, when a retry would be due
//!   after it, and by the optional sweep [`Delivery::expire_queued`]; a task already running
//!   is left to its worker (which sees the deadline in the task header) and its kind's timeout.
//! - **Idempotency keys**: a submission whose key belongs to an unanswered task joins it and
//!   gets the same answer; one whose task was already answered is refused
//!   ([`SubmitError::AlreadyFinished`]) while the key is remembered
//!   ([`DeliveryOptions::key_retention`]); one whose task is of another kind, or a chunk where
//!   it is a plain task (or the other way round), is refused ([`SubmitError::KeyConflict`],
//!   checked after `AlreadyFinished`).
//! - **Dead letters** answer their submitters [`FinalOutcome::DeadLettered`] when they enter
//!   the queue (nobody waits on an operator). A re-run ([`Delivery::dlq_retry`]) therefore
//!   reports its end as [`DeliveryAction::RerunFinished`], not as a second answer.
//!
//! # Driving it (the event loop's contract)
//! 1. [`Delivery::new`] with each kind's [`crate::config::KindConfig`] in kind-id order, the
//!    number of priority classes, [`DeliveryOptions`] and a seeded RNG.
//! 2. A client submits: [`Delivery::submit`]. `Ok(Submitted::Queued(id))` → push `id` at the
//!    back of the queue for (kind, class) (if the queue refuses it, [`Delivery::withdraw`] it
//!    and answer `Rejected`); `Ok(Submitted::Joined(_))` → nothing; `Err(e)` → answer the
//!    client [`FinalOutcome::Rejected`] with `e.to_string()`.
//! 3. The router pops an id for `unit`: [`Delivery::take_for_dispatch`]. `Take::Dispatch` →
//!    write the task record (header fields from [`DispatchInfo`], then the payload); if it
//!    cannot be written, [`Delivery::dispatch_failed`]. `Take::Expired(actions)` → carry them
//!    out. `Take::Skip` → pop the next id.
//! 4. A completion record arrives from `unit`: decode it and call [`Delivery::completed`] with
//!    `TaskId(header.id)`, `header.attempt` and the [`amp_ipc::Outcome`]. The unit's credit is
//!    freed for every completion record read, whether the core accepted it or not.
//! 5. A unit exits, misses its heartbeat, is quarantined or stopped: [`Delivery::worker_lost`]
//!    once nothing more can come from it (its credits reset with it).
//! 6. Poll with a timeout no later than [`Delivery::next_deadline`] and call
//!    [`Delivery::tick`] when it passes (calling it early or late is harmless: late ticks
//!    handle everything due).
//! 7. Carry out every returned [`DeliveryAction`] in order: `Requeue` → push to the head
//!    (`front`) or back of the queue; `Deliver` → write the result to that client (if it is
//!    gone, drop it: the core counts it answered); `KillWorker` → SIGKILL the unit's process
//!    group, then report the death with `worker_lost(.., LostCause::Exited)`; `ScheduleRetry`,
//!    `DeadLetter`, `Abandoned`, `RerunFinished` → log (an `Abandoned` unit keeps that slot
//!    busy until its completion arrives or it is lost).
//! 8. Graceful shutdown: [`Delivery::stop_intake`]; keep dispatching and completing until
//!    `census().pending() == 0` or the drain time is up; then report [`Delivery::unfinished`]
//!    and carry out [`Delivery::cancel_all`] so every waiting submitter gets an answer.
//!    Dead-letter entries are in memory only: list them in the report.
//!
//! # Example
//! ```
//! use amp_ipc::Outcome;
//! use amp_supervisor::config::KindConfig;
//! use amp_supervisor::delivery::*;
//! use rand::{rngs::SmallRng, SeedableRng};
//! use std::time::{Duration, Instant};
//!
//! let mut d = Delivery::new(vec![KindConfig::default()], 2, DeliveryOptions::default(),
//!                           SmallRng::seed_from_u64(1))?;
//! let t0 = Instant::now();
//! let client = Submitter { client: 1, tag: 7 };
//! let id = d.submit(t0, NewTask::new(0, 0, b"hello".to_vec(), client)).unwrap().id();
//!
//! // The router chose unit 3: the record carries attempt 1.
//! let Take::Dispatch(info) = d.take_for_dispatch(t0, id, 3) else { unreachable!() };
//! assert_eq!((info.attempt, info.payload), (1, &b"hello"[..]));
//!
//! // Unit 3 dies: the task goes back to the head of its queue as attempt 2.
//! let actions = d.worker_lost(t0, 3, LostCause::Exited);
//! assert_eq!(actions, [DeliveryAction::Requeue { id, kind: 0, class: 0, front: true }]);
//! let Take::Dispatch(info) = d.take_for_dispatch(t0, id, 4) else { unreachable!() };
//! assert_eq!(info.attempt, 2);
//!
//! // The dead unit's late completion is dropped; unit 4's result is delivered once.
//! let t1 = t0 + Duration::from_millis(5);
//! assert!(d.completed(t1, 3, id, 1, Outcome::Ok(b"stale".to_vec())).is_empty());
//! let actions = d.completed(t1, 4, id, 2, Outcome::Ok(b"HELLO".to_vec()));
//! let ok = FinalOutcome::Ok(b"HELLO".to_vec());
//! assert_eq!(actions, [DeliveryAction::Deliver { to: client, id, kind: 0, class: 0, outcome: ok }]);
//! assert_eq!(d.census().done, 1);
//! d.check_invariants();
//! # Ok::<(), OptionsError>(())
//! ```

mod admin;
mod budget;
mod flow;
mod invariants;
mod options;
pub(crate) mod seqmap;
mod stats;
mod table;
mod timers;
mod types;

#[cfg(test)]
mod tests;

pub use options::{
    retry_ceiling, retry_delay, DeliveryOptions, DlqError, OptionsError, RetryBudget, SubmitError,
    DEFAULT_DLQ_LIMIT, DEFAULT_KEY_RETENTION, DEFAULT_MAX_LOOPS, DEFAULT_POISON_DEATHS,
    DEFAULT_RETRY_BASE, DEFAULT_RETRY_CAP,
};
pub use stats::{Census, Counters, Stats};
pub use table::Delivery;
pub use types::{
    Blame, DeliveryAction, DispatchInfo, DlqEntry, DlqSelect, FinalOutcome, LostCause, NewTask,
    Submitted, Submitter, Take, TaskId, TaskState, Unfinished,
};
