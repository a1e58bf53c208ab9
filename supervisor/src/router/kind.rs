//! [`KindRouter`]: one kind's queues, its policy and its workers' credits, together.

use super::policy::{derive_seed, make_router, policy_name, Candidate, Router};
use super::queue::{ClassId, ClassesError, KindQueues, QueueFull};
use super::TaskId;
use crate::config::{ClassConfig, KindConfig, RouterPolicy};
use serde::Serialize;
use serde_json::json;
use std::time::{Duration, Instant};

/// One task sent to one worker by [`KindRouter::next_dispatch`] or
/// [`KindRouter::dispatch_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Dispatch {
    /// The task.
    pub task: TaskId,
    /// Its class (needed to requeue it).
    pub class: ClassId,
    /// The worker it goes to.
    pub unit: usize,
}

/// How much later than the best candidate's a candidate's expected finish may be for it to
/// stay in the choice once the adaptive controller measured worker costs (see
/// [`KindRouter::set_cost`]).
pub const COST_SLACK: f64 = 1.5;

/// A worker serving the kind: its credits and counters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WorkerSlot {
    /// The unit (the lifecycle's `UnitId::index()`).
    pub unit: usize,
    /// Tasks dispatched and not yet completed or abandoned.
    pub in_flight: u32,
    /// Its credit window: it gets a task only while `in_flight < window`.
    pub window: u32,
    /// Draining: no new tasks, completions still accepted.
    pub draining: bool,
    /// Tasks dispatched to it.
    pub dispatched: u64,
    /// Tasks it completed (successfully or not).
    pub completed: u64,
    /// Of those, failures.
    pub failed: u64,
    /// Tasks abandoned after dispatch (undeliverable or given up on).
    pub abandoned: u64,
    /// Its measured service-time factor relative to the kind's other workers (1.0: typical,
    /// 3.0: three times slower), set by the adaptive controller; `None`: not measured.
    pub cost: Option<f64>,
}

impl WorkerSlot {
    const fn new(unit: usize, window: u32) -> Self {
        Self {
            unit,
            in_flight: 0,
            window,
            draining: false,
            dispatched: 0,
            completed: 0,
            failed: 0,
            abandoned: 0,
            cost: None,
        }
    }

    /// Whether it may get a task now: not draining and a free credit.
    #[must_use]
    pub const fn eligible(&self) -> bool {
        !self.draining && self.in_flight < self.window
    }
}

/// A worker event the [`KindRouter`] cannot account for (a bug in the caller, or an event that
/// arrived after the worker was removed: log it and carry on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The unit does not serve this kind (never added, or already removed).
    #[error("unit {unit} does not serve this kind (not added, or already removed)")]
    Unknown {
        /// The unit.
        unit: usize,
    },
    /// A completion or abandonment for a unit with nothing in flight.
    #[error("unit {unit} has no task of this kind in flight; the event is ignored")]
    NothingInFlight {
        /// The unit.
        unit: usize,
    },
    /// [`KindRouter::worker_added`] for a unit already serving this kind.
    #[error("unit {unit} already serves this kind; remove it first")]
    AlreadyAdded {
        /// The unit.
        unit: usize,
    },
}

/// Totals of a kind for status output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KindStats {
    /// The policy routing now.
    pub policy: &'static str,
    /// Queued tasks per class, by class name, in class order.
    pub queued: Vec<(String, usize)>,
    /// Submissions refused because the queue was full.
    pub rejected: u64,
    /// Tasks dispatched (requeued ones count again).
    pub dispatched: u64,
    /// Tasks in flight over all workers.
    pub in_flight: u64,
}

/// One kind's router: its [`KindQueues`], its policy ([`Router`]) and the credits of the
/// workers serving it. Pure: time comes in as `now`, randomness from the seed.
///
/// See the [module docs](super#driving-it-the-event-loops-contract) for how the event loop
/// drives it.
///
/// ```
/// use amp_supervisor::config::{ClassConfig, KindConfig, RouterPolicy};
/// use amp_supervisor::router::KindRouter;
/// use std::time::{Duration, Instant};
///
/// let mut kind = KindConfig::default();
/// kind.router = RouterPolicy::RoundRobin;
/// let mut r = KindRouter::new(&kind, &ClassConfig::defaults(), 7, Duration::from_secs(10))?;
/// let batch = r.queues().class_id("batch").unwrap();
/// r.worker_added(0, 2)?;
/// r.worker_added(1, 2)?;
/// for id in 0..10 { r.submit(id, batch)?; }
/// let now = Instant::now();
/// let mut out = Vec::new();
/// assert_eq!(r.dispatch_batch(now, 100, &mut out), 4); // 2 workers x window 2
/// assert_eq!(r.queued(), 6);
/// r.completed(out[0].unit, Duration::from_millis(3), true, now)?;
/// assert_eq!(r.next_dispatch(now).map(|d| d.unit), Some(out[0].unit));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct KindRouter {
    queues: KindQueues,
    policy: Box<dyn Router>,
    policy_kind: RouterPolicy,
    seed: u64,
    /// Policies created so far (each gets its own seed stream).
    generation: u64,
    decay: Duration,
    /// Most tasks one worker gets in one [`dispatch_batch`](Self::dispatch_batch).
    batch: u32,
    /// Sorted by unit.
    workers: Vec<WorkerSlot>,
    /// Tasks given to each worker (same index as `workers`) in the current batch.
    batch_taken: Vec<u32>,
    rejected: u64,
    dispatched: u64,
    /// Reused candidate list, and the `workers` index of each candidate.
    scratch: Vec<Candidate>,
    scratch_slots: Vec<usize>,
    /// Some worker has a measured [`WorkerSlot::cost`].
    costs_known: bool,
}

impl KindRouter {
    /// A router for a kind with settings `kind` (its `queue_limit`, `router` and `batch`),
    /// priority `classes`, randomness from `seed` and `decay` for Peak-EWMA. No workers yet.
    ///
    /// # Errors
    /// [`ClassesError`] when `classes` cannot be scheduled (see [`KindQueues::new`]).
    pub fn new(
        kind: &KindConfig,
        classes: &[ClassConfig],
        seed: u64,
        decay: Duration,
    ) -> Result<Self, ClassesError> {
        Ok(Self {
            queues: KindQueues::new(classes, kind.queue_limit)?,
            policy: make_router(kind.router, derive_seed(seed, 0), decay),
            policy_kind: kind.router,
            seed,
            generation: 0,
            decay,
            batch: kind.batch.max(1),
            workers: Vec::new(),
            batch_taken: Vec::new(),
            rejected: 0,
            dispatched: 0,
            scratch: Vec::new(),
            scratch_slots: Vec::new(),
            costs_known: false,
        })
    }

    // ---- tasks ----

    /// Queues a new task at the tail of its class.
    ///
    /// # Errors
    /// [`QueueFull`] (counted in [`rejected`](Self::rejected)) when `queue_limit` tasks are
    /// queued: fail the submission back to the client.
    ///
    /// # Panics
    /// If `class` is not one of the kind's classes.
    pub fn submit(&mut self, id: TaskId, class: ClassId) -> Result<(), QueueFull> {
        self.queues.push_back(id, class).inspect_err(|_| {
            self.rejected += 1;
        })
    }

    /// Puts a task back at the head of its class (a retry), ignoring the limit.
    ///
    /// # Panics
    /// If `class` is not one of the kind's classes.
    pub fn requeue(&mut self, id: TaskId, class: ClassId) {
        self.queues.push_front(id, class);
    }

    /// Queues an already accepted task at the tail of its class, ignoring the limit (a retry
    /// whose backoff ended).
    ///
    /// # Panics
    /// If `class` is not one of the kind's classes.
    pub fn requeue_back(&mut self, id: TaskId, class: ClassId) {
        self.queues.readmit(id, class);
    }

    /// Puts several tasks back at the heads of their classes, keeping their order (e.g. the
    /// in-flight tasks of a removed worker, oldest first).
    ///
    /// # Panics
    /// If a class is not one of the kind's classes.
    pub fn requeue_all(&mut self, tasks: &[(TaskId, ClassId)]) {
        self.queues.push_front_all(tasks);
    }

    /// Removes a queued task (cancellation); its class, or `None` if it is not queued (it may
    /// be in flight: that is the delivery core's business).
    pub fn cancel(&mut self, id: TaskId) -> Option<ClassId> {
        self.queues.remove(id)
    }

    // ---- dispatch ----

    /// Whether [`next_dispatch`](Self::next_dispatch) would dispatch something now: a task is
    /// queued and some worker is eligible.
    #[must_use]
    pub fn ready(&self) -> bool {
        !self.queues.is_empty() && self.workers.iter().any(WorkerSlot::eligible)
    }

    /// Dispatches one task if one is queued and a worker is eligible: pops by DRR, lets the
    /// policy pick among the eligible workers, takes a credit. A task is popped only when it
    /// can go somewhere. Ignores the per-batch limit.
    pub fn next_dispatch(&mut self, now: Instant) -> Option<Dispatch> {
        self.dispatch_one(now, u32::MAX)
    }

    /// Drains what is ready: dispatches until `limit` tasks, the queue is empty, or no worker
    /// is eligible, giving each worker at most the kind's `batch` tasks in this call. Appends
    /// to `out` (so the caller can group by worker and ring each doorbell once) and returns
    /// how many were appended.
    pub fn dispatch_batch(&mut self, now: Instant, limit: usize, out: &mut Vec<Dispatch>) -> usize {
        self.batch_taken.iter_mut().for_each(|t| *t = 0);
        let mut n = 0;
        while n < limit {
            let Some(d) = self.dispatch_one(now, self.batch) else {
                break;
            };
            out.push(d);
            n += 1;
        }
        n
    }

    /// Speed-aware narrowing of the candidates (only when the adaptive controller measured
    /// costs): keeps the candidates whose expected finish, `(in_flight + 1) × cost` (an
    /// unmeasured worker counts as 1.0), is within [`COST_SLACK`] of the best; the policy picks
    /// among those. With windows of one this sends a task to the fastest idle worker, as an
    /// oracle that knew the speeds would, and never to a slow one while a fast one idles.
    fn keep_fastest(&mut self) {
        let finish =
            |c: &Candidate, cost: Option<f64>| (f64::from(c.in_flight) + 1.0) * cost.unwrap_or(1.0);
        let best = self
            .scratch
            .iter()
            .zip(&self.scratch_slots)
            .map(|(c, &slot)| finish(c, self.workers[slot].cost))
            .fold(f64::INFINITY, f64::min);
        if !best.is_finite() {
            return;
        }
        let mut keep = 0;
        for i in 0..self.scratch.len() {
            let slot = self.scratch_slots[i];
            if finish(&self.scratch[i], self.workers[slot].cost) <= best * COST_SLACK {
                self.scratch.swap(keep, i);
                self.scratch_slots.swap(keep, i);
                keep += 1;
            }
        }
        self.scratch.truncate(keep);
        self.scratch_slots.truncate(keep);
    }

    fn dispatch_one(&mut self, now: Instant, per_worker: u32) -> Option<Dispatch> {
        if self.queues.is_empty() {
            return None;
        }
        self.scratch.clear();
        self.scratch_slots.clear();
        for (i, w) in self.workers.iter().enumerate() {
            if w.eligible() && self.batch_taken[i] < per_worker {
                self.scratch.push(Candidate {
                    unit: w.unit,
                    in_flight: w.in_flight,
                    window: w.window,
                });
                self.scratch_slots.push(i);
            }
        }
        if self.costs_known {
            self.keep_fastest();
        }
        let chosen = self.policy.pick(now, &self.scratch)?;
        let slot = *self.scratch_slots.get(chosen)?;
        let (task, class) = self.queues.pop()?;
        let w = &mut self.workers[slot];
        w.in_flight += 1;
        w.dispatched += 1;
        self.batch_taken[slot] = self.batch_taken[slot].saturating_add(1);
        self.dispatched += 1;
        self.policy.on_dispatch(w.unit, now);
        Some(Dispatch {
            task,
            class,
            unit: w.unit,
        })
    }

    // ---- outcomes ----

    /// A task dispatched to `unit` completed after `latency` (measured from its dispatch);
    /// frees a credit.
    ///
    /// # Errors
    /// [`UnitError`] (nothing changes) when `unit` is unknown or has nothing in flight.
    pub fn completed(
        &mut self,
        unit: usize,
        latency: Duration,
        ok: bool,
        now: Instant,
    ) -> Result<(), UnitError> {
        let w = self.in_flight_slot(unit)?;
        w.in_flight -= 1;
        w.completed += 1;
        if !ok {
            w.failed += 1;
        }
        self.policy.on_complete(unit, latency, ok, now);
        Ok(())
    }

    /// A task dispatched to `unit` will not complete there (it could not be written to the
    /// worker's ring, or the delivery core gave up on it): frees a credit without a latency
    /// sample. Requeue the task yourself if it should run.
    ///
    /// # Errors
    /// [`UnitError`] (nothing changes) when `unit` is unknown or has nothing in flight.
    pub fn abandoned(&mut self, unit: usize, now: Instant) -> Result<(), UnitError> {
        let w = self.in_flight_slot(unit)?;
        w.in_flight -= 1;
        w.abandoned += 1;
        self.policy.on_abandoned(unit, now);
        Ok(())
    }

    fn in_flight_slot(&mut self, unit: usize) -> Result<&mut WorkerSlot, UnitError> {
        let i = self.index(unit)?;
        let w = &mut self.workers[i];
        if w.in_flight == 0 {
            return Err(UnitError::NothingInFlight { unit });
        }
        Ok(w)
    }

    // ---- workers ----

    /// `unit` (ready) serves this kind from now on with a credit window of `window`.
    ///
    /// # Errors
    /// [`UnitError::AlreadyAdded`] if it already does.
    pub fn worker_added(&mut self, unit: usize, window: u32) -> Result<(), UnitError> {
        match self.workers.binary_search_by_key(&unit, |w| w.unit) {
            Ok(_) => Err(UnitError::AlreadyAdded { unit }),
            Err(i) => {
                self.workers.insert(i, WorkerSlot::new(unit, window));
                self.batch_taken.insert(i, 0);
                Ok(())
            }
        }
    }

    /// `unit` stopped serving this kind (it exited or was stopped). Returns its final slot:
    /// its `in_flight` tasks will never complete, so the caller (the delivery core knows which
    /// tasks they are) requeues them with [`requeue_all`](Self::requeue_all) or fails them.
    ///
    /// # Errors
    /// [`UnitError::Unknown`] if it was not serving this kind.
    pub fn worker_removed(&mut self, unit: usize) -> Result<WorkerSlot, UnitError> {
        let i = self.index(unit)?;
        self.batch_taken.remove(i);
        let slot = self.workers.remove(i);
        self.costs_known = self.workers.iter().any(|w| w.cost.is_some());
        self.policy.on_removed(unit);
        Ok(slot)
    }

    /// Sets `unit`'s measured service-time factor (see [`WorkerSlot::cost`]); `None` forgets
    /// it. While any worker of the kind has one, dispatch prefers the workers expected to
    /// finish a task soonest (see the module docs).
    ///
    /// # Errors
    /// [`UnitError`] when `unit` does not serve the kind.
    pub fn set_cost(&mut self, unit: usize, cost: Option<f64>) -> Result<(), UnitError> {
        let cost = cost.filter(|c| c.is_finite() && *c > 0.0);
        let i = self.index(unit)?;
        self.workers[i].cost = cost;
        self.costs_known = self.workers.iter().any(|w| w.cost.is_some());
        Ok(())
    }

    /// Sets `unit`'s credit window (`concurrency`, or an adaptive controller's value). A window
    /// below its current `in_flight` takes nothing back; it just gets no task until it is below.
    ///
    /// # Errors
    /// [`UnitError::Unknown`] if it is not serving this kind.
    pub fn set_window(&mut self, unit: usize, window: u32) -> Result<(), UnitError> {
        let i = self.index(unit)?;
        self.workers[i].window = window;
        Ok(())
    }

    /// Marks `unit` draining (no new tasks; completions still count) or not.
    ///
    /// # Errors
    /// [`UnitError::Unknown`] if it is not serving this kind.
    pub fn set_draining(&mut self, unit: usize, draining: bool) -> Result<(), UnitError> {
        let i = self.index(unit)?;
        self.workers[i].draining = draining;
        Ok(())
    }

    fn index(&self, unit: usize) -> Result<usize, UnitError> {
        self.workers
            .binary_search_by_key(&unit, |w| w.unit)
            .map_err(|_| UnitError::Unknown { unit })
    }

    // ---- settings ----

    /// Switches the policy. Queued tasks stay queued and in-flight counts are kept (they live
    /// here, not in the policy), so nothing is lost or dispatched twice. The new policy starts
    /// with **fresh statistics** (its latency estimates fill from the next completions; a
    /// worker without samples is assumed typical) and its own seed stream. Setting the policy
    /// in force is a no-op that keeps its statistics.
    pub fn set_policy(&mut self, policy: RouterPolicy) {
        if policy == self.policy_kind {
            return;
        }
        self.generation += 1;
        self.policy = make_router(policy, derive_seed(self.seed, self.generation), self.decay);
        self.policy_kind = policy;
    }

    /// Changes the Peak-EWMA decay time. A `peak_ewma` or `learned` policy in force starts
    /// over with it (what it learned is dropped, as on [`set_policy`](Self::set_policy));
    /// other policies keep running and use it when switched to.
    pub fn set_decay(&mut self, decay: Duration) {
        if decay == self.decay {
            return;
        }
        self.decay = decay;
        if matches!(
            self.policy_kind,
            RouterPolicy::PeakEwma | RouterPolicy::Learned
        ) {
            self.generation += 1;
            self.policy = make_router(
                self.policy_kind,
                derive_seed(self.seed, self.generation),
                decay,
            );
        }
    }

    /// The Peak-EWMA decay time in force.
    #[must_use]
    pub const fn decay(&self) -> Duration {
        self.decay
    }

    /// Replaces the policy with a custom [`Router`] (same guarantees as
    /// [`set_policy`](Self::set_policy); `policy` is what [`policy`](Self::policy) reports).
    pub fn set_router(&mut self, policy: RouterPolicy, router: Box<dyn Router>) {
        self.generation += 1;
        self.policy = router;
        self.policy_kind = policy;
    }

    /// The policy in force.
    #[must_use]
    pub const fn policy(&self) -> RouterPolicy {
        self.policy_kind
    }

    /// Changes the `queue_limit` (see [`KindQueues::set_limit`]).
    pub fn set_queue_limit(&mut self, limit: u64) {
        self.queues.set_limit(limit);
    }

    /// Changes the per-worker batch limit (at least 1).
    pub fn set_batch(&mut self, batch: u32) {
        self.batch = batch.max(1);
    }

    // ---- queries ----

    /// The queues (depths per class, class names and ids).
    #[must_use]
    pub const fn queues(&self) -> &KindQueues {
        &self.queues
    }

    /// Queued tasks over all classes.
    #[must_use]
    pub const fn queued(&self) -> usize {
        self.queues.len()
    }

    /// The task at the head of each class's queue (see [`KindQueues::fronts`]).
    pub fn queue_fronts(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.queues.fronts()
    }

    /// Queued tasks of `class`.
    ///
    /// # Panics
    /// If `class` is not one of the kind's classes.
    #[must_use]
    pub fn queued_class(&self, class: ClassId) -> usize {
        self.queues.len_class(class)
    }

    /// Submissions refused because the queue was full.
    #[must_use]
    pub const fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Tasks dispatched so far (a requeued task counts each time).
    #[must_use]
    pub const fn dispatched(&self) -> u64 {
        self.dispatched
    }

    /// Tasks in flight over all workers.
    #[must_use]
    pub fn in_flight(&self) -> u64 {
        self.workers.iter().map(|w| u64::from(w.in_flight)).sum()
    }

    /// The workers serving the kind, by unit.
    #[must_use]
    pub fn workers(&self) -> &[WorkerSlot] {
        &self.workers
    }

    /// One worker's slot.
    #[must_use]
    pub fn worker(&self, unit: usize) -> Option<&WorkerSlot> {
        self.index(unit).ok().map(|i| &self.workers[i])
    }

    /// Totals for status output.
    #[must_use]
    pub fn stats(&self) -> KindStats {
        KindStats {
            policy: policy_name(self.policy_kind),
            queued: self
                .queues
                .class_ids()
                .map(|c| {
                    (
                        self.queues.class_name(c).to_owned(),
                        self.queues.len_class(c),
                    )
                })
                .collect(),
            rejected: self.rejected,
            dispatched: self.dispatched,
            in_flight: self.in_flight(),
        }
    }

    /// Everything for `ampctl route get`: [`stats`](Self::stats), the workers, the queue limit
    /// and the policy's own state ([`Router::describe`]).
    #[must_use]
    pub fn describe(&self, now: Instant) -> serde_json::Value {
        json!({
            "stats": self.stats(),
            "queue_limit": self.queues.limit(),
            "batch": self.batch,
            "workers": self.workers,
            "router": self.policy.describe(now),
        })
    }
}
