//! The router core: per-kind task queues by priority class, the scheduling discipline between
//! classes, per-worker credit windows, and interchangeable worker-selection policies.
//!
//! Pure like the other cores: no I/O, no clock (every call that needs time takes `now`), and
//! randomness only from seeded [`rand::rngs::SmallRng`]s, so a run replays exactly. The router
//! knows tasks only by [`TaskId`]; payloads, attempts and deadlines belong to the delivery
//! core.
//!
//! # Queues and classes ([`KindQueues`])
//! Each kind has one FIFO per priority class (`[[class]]`, default `interactive` weight 8 and
//! `batch` weight 1) and a `queue_limit` on their total: [`KindQueues::push_back`] refuses a
//! new task beyond it ([`QueueFull`]), while [`KindQueues::push_front`] (retries, tasks taken
//! back from a worker that went away) ignores the limit and puts the task at the head of its
//! class, because a task accepted once is never refused later.
//!
//! Between classes the discipline is **deficit round-robin** (Shreedhar & Varghese) with unit
//! cost per task: classes take turns in a fixed cycle; a class's turn lets it take up to
//! `weight` tasks; a class that runs empty ends its turn early and loses the rest (no credit
//! is banked while idle); an empty class is skipped, so the discipline is work-conserving.
//! Two guarantees follow:
//! - **Interactive latency stays low under a batch flood.** While both classes are backlogged
//!   interactive gets `8 / (8 + 1)` of dispatch slots, far more than a trickle of interactive
//!   tasks needs, so its queue stays short (usually empty). A newly queued interactive task
//!   waits for at most the rest of the current batch turn (`weight(batch)` = 1 task) plus the
//!   interactive tasks already ahead of it — about one round, however many batch tasks are
//!   queued. (FIFO would make it wait behind the whole flood.)
//! - **Batch keeps its share under an interactive flood.** Every round gives batch its turn,
//!   so it gets at least `1 / (8 + 1)` of dispatch slots however many interactive tasks are
//!   queued. (Strict priority would starve it.)
//!
//! The slots are dispatch slots: how fast they come is bounded by the workers' credits.
//!
//! # Credits
//! Every worker has an in-flight window (`concurrency`, or an adaptive controller's value): a
//! worker with `in_flight >= window` is simply not eligible ([`Candidate::has_credit`],
//! [`retain_eligible`]) — not an error — so tasks wait in the kind's queue, where the class
//! discipline still applies, instead of piling up in one worker's ring.
//!
//! # Policies ([`Router`])
//! A policy only chooses a worker among the eligible candidates; it never holds tasks.
//!
//! | policy | choice | state |
//! |---|---|---|
//! | [`RoundRobin`] | each worker in turn (a worker without credit is skipped) | a cursor |
//! | [`LeastLoaded`] | power of two choices on tasks in flight, ties random | none |
//! | [`PeakEwma`] | power of two choices on Peak-EWMA latency × (in flight + 1) | an estimate per worker, decaying over `decay` ([`DEFAULT_DECAY`] 10 s) |
//! | [`Learned`] | a discounted Thompson-sampling bandit choosing one of the three above per window of tasks, rewarded by the window's tail latency | per-arm reward statistics + the arms' own state |
//!
//! [`make_router`] builds one from the configured [`RouterPolicy`](crate::config::RouterPolicy).
//!
//! # One kind ([`KindRouter`])
//! [`KindRouter`] combines a kind's queues, its policy and its workers' credits and counters.
//! Because the queues and the in-flight counts live there and not in the policy,
//! [`KindRouter::set_policy`] can switch policies at any moment without losing or duplicating
//! a task; the new policy starts with fresh statistics (see there).
//!
//! # Driving it (the event loop's contract)
//! The router decides *where and when*; the delivery core decides *what* (which ids are
//! live, attempts, retries). Per kind:
//! 1. [`KindRouter::new`] with the kind's settings, the class list, a seed and the Peak-EWMA
//!    decay ([`DEFAULT_DECAY`]).
//! 2. A unit serving the kind becomes ready: [`KindRouter::worker_added`] with its
//!    `concurrency`. It starts draining: [`KindRouter::set_draining`]. It is lost (exited,
//!    hung, stopped): [`KindRouter::worker_removed`] — its credits go with it; the delivery
//!    core's `worker_lost` says which tasks go back (step 6).
//! 3. A submission the delivery core accepted: [`KindRouter::submit`]; on [`QueueFull`]
//!    answer the client with that error (and tell the delivery core it was not queued). A
//!    cancellation of a queued task: [`KindRouter::cancel`].
//! 4. At most once per wakeup, after handling the readiness events, while
//!    [`KindRouter::ready`]: [`KindRouter::dispatch_batch`] with a total limit. For each
//!    [`Dispatch`] ask the delivery core for the task (`take_for_dispatch`); write it to the
//!    unit's tasks ring, and ring each unit's doorbell once at the end. A task the delivery
//!    core no longer wants (expired, finished) or that cannot be written (ring full; tell the
//!    delivery core `dispatch_failed`): [`KindRouter::abandoned`] frees its credit without a
//!    latency sample. Anything that frees a credit or queues a task (steps 2, 3, 5, 6,
//!    [`KindRouter::set_window`]) makes the next wakeup worth a dispatch pass.
//! 5. A completion record from a unit: [`KindRouter::completed`] with the time since that
//!    task's dispatch, for every record read (the credit is the worker's, whether the delivery
//!    core accepts the result or drops it as a late duplicate); if the dispatch time is not
//!    known any more, [`KindRouter::abandoned`].
//! 6. The delivery core's `Requeue` actions: [`KindRouter::requeue`] (head of the class;
//!    several at once in order: [`KindRouter::requeue_all`]) or
//!    [`KindRouter::requeue_back`] (a retry after its backoff); neither is refused by the
//!    limit.
//! 7. `ampctl route get` reads [`KindRouter::describe`]; `route set` calls
//!    [`KindRouter::set_policy`]; an adaptive controller calls [`KindRouter::set_window`].
//!
//! ```
//! use amp_supervisor::config::{ClassConfig, KindConfig, RouterPolicy};
//! use amp_supervisor::router::KindRouter;
//! use std::time::{Duration, Instant};
//!
//! let mut r = KindRouter::new(&KindConfig::default(), &ClassConfig::defaults(), 42,
//!                             Duration::from_secs(10))?;
//! let interactive = r.queues().class_id("interactive").unwrap();
//! r.worker_added(3, 1)?;              // one worker, one credit
//! r.submit(1, interactive)?;
//! r.submit(2, interactive)?;
//! let t0 = Instant::now();
//! let d = r.next_dispatch(t0).unwrap();
//! assert_eq!((d.task, d.unit), (1, 3));
//! assert!(r.next_dispatch(t0).is_none()); // no credit left: task 2 stays queued
//! r.completed(3, Duration::from_millis(2), true, t0 + Duration::from_millis(2))?;
//! r.set_policy(RouterPolicy::PeakEwma);   // nothing queued or in flight is lost
//! assert_eq!(r.next_dispatch(t0 + Duration::from_millis(2)).map(|d| d.task), Some(2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod kind;
mod policy;
mod queue;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

pub use kind::{Dispatch, KindRouter, KindStats, UnitError, WorkerSlot, COST_SLACK};
pub use policy::{
    make_router, policy_name, retain_eligible, Candidate, Learned, LearnedConfig, LeastLoaded,
    PeakEwma, RoundRobin, Router, DEFAULT_DECAY, DEFAULT_RTT,
};
pub use queue::{ClassId, ClassesError, KindQueues, QueueFull};

/// A task's id, unique within ampd (assigned by the delivery core).
pub type TaskId = u64;
