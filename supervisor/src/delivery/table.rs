//! The core's state: the task table, its indices, and the state transitions every operation
//! goes through (so the indices and the census cannot drift apart).

use super::budget::Bucket;
use super::options::{DeliveryOptions, OptionsError};
use super::seqmap::SeqMap;
use super::stats::{Census, Counters, Stats};
use super::types::{DeliveryAction, FinalOutcome, Submitter, TaskId};
use crate::config::KindConfig;
use rand::rngs::SmallRng;
use slab::Slab;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Instant;

/// Where a task in the table is. A task answered for good is removed from the table (it is
/// then `done` in the [`Census`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
    /// In its kind's queue (as far as the core knows: the event loop holds the queue).
    Queued,
    /// Dispatched to `unit`.
    InFlight {
        /// The unit.
        unit: usize,
        /// Dispatch time.
        since: Instant,
        /// When the kind's run timeout fires; `None`: no timeout, or it already fired.
        timeout_at: Option<Instant>,
        /// A [`DeliveryAction::KillWorker`] was issued for this task's run timeout.
        kill_sent: bool,
    },
    /// Waiting for its retry backoff.
    RetryWait {
        /// When it is requeued.
        at: Instant,
    },
    /// In the dead-letter queue.
    DeadLettered {
        /// Why.
        reason: String,
        /// Since when.
        at: Instant,
    },
}

/// One task in the table.
#[derive(Debug, Clone)]
pub(super) struct Task {
    pub(super) id: TaskId,
    pub(super) kind: u32,
    pub(super) class: usize,
    pub(super) payload: Vec<u8>,
    pub(super) deadline: Option<Instant>,
    /// The payload is a chunk of items.
    pub(super) chunk: bool,
    /// Attempt number of the current (or next) dispatch; what the worker echoes. Never goes
    /// down, so a completion of an earlier attempt can always be told apart.
    pub(super) attempt: u32,
    /// The attempt at which the current run started (1, or the attempt a dead-letter retry
    /// started at): attempts counted against `max_attempts` are `attempt - first_attempt + 1`.
    pub(super) first_attempt: u32,
    /// Loopbacks taken.
    pub(super) loops: u32,
    /// Worker deaths it was blamed for (poison detection): in flight on a worker that died and,
    /// as far as the worker reported, running it.
    pub(super) deaths: u32,
    /// Worker deaths it was in flight on, blamed or not: the backstop of poison detection when
    /// a worker's report is wrong (dead-lettered at twice the poison limit).
    pub(super) exposures: u32,
    /// While in flight: its position in its unit's list in [`Delivery::by_unit`].
    pub(super) unit_pos: usize,
    pub(super) submitter: Submitter,
    /// Idempotency key, parent and joined submitters: most tasks have none, so they live
    /// behind a pointer (a smaller `Task` is cheaper to move in and out of the slab).
    pub(super) extra: Option<Box<Extra>>,
    /// Its submitters were given their final outcome (it was dead-lettered); any later end is a
    /// [`DeliveryAction::RerunFinished`].
    pub(super) answered: bool,
    pub(super) submitted_at: Instant,
    pub(super) state: State,
}

/// The rarely used parts of a [`Task`].
#[derive(Debug, Clone, Default)]
pub(super) struct Extra {
    pub(super) key: Option<String>,
    pub(super) parent: Option<TaskId>,
    /// Further submitters that joined through the idempotency key.
    pub(super) joined: Vec<Submitter>,
}

impl Task {
    /// Its idempotency key.
    pub(super) fn key(&self) -> Option<&String> {
        self.extra.as_ref().and_then(|e| e.key.as_ref())
    }

    /// The task that spawned it.
    pub(super) fn parent(&self) -> Option<TaskId> {
        self.extra.as_ref().and_then(|e| e.parent)
    }

    /// Further submitters that joined through the idempotency key.
    pub(super) fn joined(&self) -> &[Submitter] {
        self.extra.as_ref().map_or(&[], |e| &e.joined)
    }

    /// Takes the joined submitters out.
    pub(super) fn take_joined(&mut self) -> Vec<Submitter> {
        self.extra
            .as_mut()
            .map(|e| std::mem::take(&mut e.joined))
            .unwrap_or_default()
    }

    /// The extra parts, created if missing.
    pub(super) fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// Attempts made in the current run (counted against `max_attempts`).
    pub(super) const fn tries(&self) -> u32 {
        self.attempt - self.first_attempt + 1
    }

    /// Submitters still owed an answer.
    pub(super) fn awaiting(&self) -> u64 {
        if self.answered {
            0
        } else {
            1 + self.joined().len() as u64
        }
    }
}

/// The delivery core: owns every task from [`Delivery::submit`] to its final outcome.
///
/// Pure: it never reads a clock (every call takes `now`), never touches a queue, ring or
/// socket (it returns [`DeliveryAction`]s), and draws jitter only from the seeded RNG it was
/// given. See the [module documentation](super) for how the event loop drives it.
#[derive(Debug)]
pub struct Delivery {
    pub(super) kinds: Vec<KindConfig>,
    pub(super) classes: usize,
    pub(super) options: DeliveryOptions,
    pub(super) rng: SmallRng,
    /// The task table (queued, in flight, waiting for retry, dead-lettered).
    pub(super) tasks: Slab<Task>,
    /// Task id → slab key (ids are sequential: a window indexed by id, see [`SeqMap`]).
    pub(super) index: SeqMap<usize>,
    /// The in-flight table: slab keys of the tasks in flight per unit, in no particular order
    /// (each task knows its position: `Task::unit_pos`; removal swaps the last one in).
    pub(super) by_unit: rustc_hash::FxHashMap<usize, Vec<usize>>,
    /// Retry timers.
    pub(super) retries: BTreeSet<(Instant, TaskId)>,
    /// Run-timeout timers.
    pub(super) timeouts: BTreeSet<(Instant, TaskId)>,
    /// The dead-letter queue, oldest first (for [`DeliveryOptions::dlq_limit`]).
    pub(super) dlq: BTreeSet<(Instant, TaskId)>,
    /// Units a [`DeliveryAction::KillWorker`] was issued for and not yet reported lost.
    pub(super) killing: BTreeSet<usize>,
    /// Idempotency key → task, for tasks in the table and the most recent finished ones.
    pub(super) keys: HashMap<String, TaskId>,
    /// Keys of finished tasks, oldest first (forgotten beyond `key_retention`).
    pub(super) retired_keys: VecDeque<String>,
    pub(super) queued_per_kind: Vec<u64>,
    pub(super) census: Census,
    pub(super) stats: Stats,
    pub(super) budget: Bucket,
    pub(super) next_id: u64,
    pub(super) intake_open: bool,
    /// Accepted submissions (new and joined) not answered yet.
    pub(super) awaiting: u64,
    /// [`DeliveryAction::Deliver`]s emitted.
    pub(super) answers: u64,
    /// Emptied payload buffers of finished tasks, handed out again by
    /// [`Delivery::take_buffer`] (spares the allocator two calls per task).
    pub(super) spare: Vec<Vec<u8>>,
    /// Capacity of the buffers in `spare`, in bytes.
    pub(super) spare_bytes: usize,
}

/// Buffers kept for reuse at most (see [`Delivery::take_buffer`]).
const SPARE_BUFFERS: usize = 16_384;
/// Largest buffer kept for reuse, in bytes (larger ones are freed).
const SPARE_BUFFER_BYTES: usize = 4096;
/// Bytes kept in spare buffers at most, all together.
const SPARE_TOTAL_BYTES: usize = 4 << 20;

impl Delivery {
    /// Builds the core. `kinds[i]` holds the settings of kind id `i` (the event loop interns
    /// kind names in this order); `classes` is the number of priority classes.
    ///
    /// # Errors
    /// [`OptionsError`] naming the first bad setting.
    pub fn new(
        kinds: Vec<KindConfig>,
        classes: usize,
        options: DeliveryOptions,
        rng: SmallRng,
    ) -> Result<Self, OptionsError> {
        if u32::try_from(kinds.len()).is_err() {
            return Err(OptionsError::TooManyKinds { count: kinds.len() });
        }
        if let Some(i) = kinds.iter().position(|k| k.max_attempts == 0) {
            let kind = u32::try_from(i).unwrap_or(u32::MAX);
            return Err(OptionsError::ZeroMaxAttempts { kind });
        }
        if classes == 0 {
            return Err(OptionsError::NoClasses);
        }
        if options.poison_deaths == 0 {
            return Err(OptionsError::ZeroPoisonDeaths);
        }
        let b = options.budget;
        for (field, value) in [
            ("ratio", b.ratio),
            ("min_per_sec", b.min_per_sec),
            ("capacity", b.capacity),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(OptionsError::InvalidBudget { field, value });
            }
        }
        Ok(Self {
            queued_per_kind: vec![0; kinds.len()],
            stats: Stats::new(kinds.len()),
            kinds,
            classes,
            options,
            rng,
            tasks: Slab::new(),
            index: SeqMap::default(),
            by_unit: rustc_hash::FxHashMap::default(),
            retries: BTreeSet::new(),
            dlq: BTreeSet::new(),
            timeouts: BTreeSet::new(),
            killing: BTreeSet::new(),
            keys: HashMap::new(),
            retired_keys: VecDeque::new(),
            census: Census::default(),
            budget: Bucket::new(b),
            next_id: 1,
            intake_open: true,
            awaiting: 0,
            answers: 0,
            spare: Vec::new(),
            spare_bytes: 0,
        })
    }

    /// The options it was built with.
    #[must_use]
    pub const fn options(&self) -> &DeliveryOptions {
        &self.options
    }

    /// Counters since start (total and per kind).
    #[must_use]
    pub const fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Tokens left in the retry budget.
    #[must_use]
    pub const fn budget_tokens(&self) -> f64 {
        self.budget.tokens()
    }

    /// Where every task ever submitted is now (each in exactly one bucket).
    #[must_use]
    pub const fn census(&self) -> Census {
        self.census
    }

    /// Tasks dispatched and not yet completed (or lost).
    #[must_use]
    pub const fn in_flight_count(&self) -> u64 {
        self.census.in_flight
    }

    /// Whether kind `kind`'s queue holds its `queue_limit` tasks (a submission of it would be
    /// refused with [`super::SubmitError::QueueFull`]); false for an unknown kind.
    #[must_use]
    pub fn queue_full(&self, kind: usize) -> bool {
        self.kinds
            .get(kind)
            .is_some_and(|k| self.queued_per_kind[kind] >= k.queue_limit)
    }

    /// Replaces kind `kind`'s settings (a config reload) but for its run timeout, which
    /// [`set_run_timeout`](Self::set_run_timeout) owns (the adaptive controller may have set
    /// it): the queue limit applies to the next submission, the attempts limit and
    /// `on_timeout` to the next failure or timeout. Tasks already queued beyond a lower limit
    /// stay queued. Unknown kinds and `max_attempts` 0 are ignored.
    pub fn set_kind_config(&mut self, kind: usize, config: KindConfig) {
        if config.max_attempts == 0 {
            return;
        }
        if let Some(k) = self.kinds.get_mut(kind) {
            *k = KindConfig {
                timeout: k.timeout,
                ..config
            };
        }
    }

    /// Tasks in flight on `unit`.
    #[must_use]
    pub fn in_flight_on(&self, unit: usize) -> usize {
        self.by_unit.get(&unit).map_or(0, Vec::len)
    }

    /// An empty buffer for a payload or a result, reusing one a finished task left behind
    /// when there is one. Pass it back with [`Delivery::give_buffer`] once done with it.
    #[must_use]
    pub fn take_buffer(&mut self) -> Vec<u8> {
        let buf = self.spare.pop().unwrap_or_default();
        self.spare_bytes -= buf.capacity();
        buf
    }

    /// Keeps `buf` for [`Delivery::take_buffer`] (emptied; large buffers, and any beyond a
    /// bounded number or total size, are freed).
    pub fn give_buffer(&mut self, mut buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap > 0
            && cap <= SPARE_BUFFER_BYTES
            && self.spare.len() < SPARE_BUFFERS
            && self.spare_bytes + cap <= SPARE_TOTAL_BYTES
        {
            buf.clear();
            self.spare_bytes += cap;
            self.spare.push(buf);
        }
    }

    /// The slab key of `id`, if it is in the table.
    pub(super) fn key_of(&self, id: TaskId) -> Option<usize> {
        self.index.get(id.0).copied()
    }

    /// Adds a new task (its state already set) to the table and its state's indices.
    pub(super) fn insert(&mut self, task: Task) -> usize {
        let id = task.id;
        if let Some(k) = task.key() {
            self.keys.insert(k.clone(), id);
        }
        self.awaiting += task.awaiting();
        let key = self.tasks.insert(task);
        self.index.insert(id.0, key);
        self.index_state(key);
        key
    }

    /// Moves task `key` to `state`, keeping every index and the census in step.
    pub(super) fn set_state(&mut self, key: usize, state: State) {
        self.unindex_state(key);
        self.tasks[key].state = state;
        self.index_state(key);
    }

    /// Takes task `key` out of the table for good: it is `done`. Its idempotency key is kept
    /// for `key_retention` more finished tasks.
    pub(super) fn remove(&mut self, key: usize) -> Task {
        self.unindex_state(key);
        let task = self.tasks.remove(key);
        self.index.remove(task.id.0);
        self.census.done += 1;
        if let Some(k) = task.key() {
            self.retired_keys.push_back(k.clone());
            while self.retired_keys.len() > self.options.key_retention {
                if let Some(old) = self.retired_keys.pop_front() {
                    self.keys.remove(&old);
                }
            }
        }
        task
    }

    fn index_state(&mut self, key: usize) {
        let t = &self.tasks[key];
        match &t.state {
            State::Queued => {
                self.census.queued += 1;
                self.queued_per_kind[t.kind as usize] += 1;
            }
            State::InFlight {
                unit, timeout_at, ..
            } => {
                self.census.in_flight += 1;
                if let Some(at) = timeout_at {
                    self.timeouts.insert((*at, t.id));
                }
                let on_unit = self.by_unit.entry(*unit).or_default();
                let pos = on_unit.len();
                on_unit.push(key);
                self.tasks[key].unit_pos = pos;
            }
            State::RetryWait { at } => {
                self.census.waiting_retry += 1;
                self.retries.insert((*at, t.id));
            }
            State::DeadLettered { at, .. } => {
                self.census.dead_lettered += 1;
                self.dlq.insert((*at, t.id));
            }
        }
    }

    pub(super) fn unindex_state(&mut self, key: usize) {
        let t = &self.tasks[key];
        match &t.state {
            State::Queued => {
                self.census.queued -= 1;
                self.queued_per_kind[t.kind as usize] -= 1;
            }
            State::InFlight {
                unit, timeout_at, ..
            } => {
                self.census.in_flight -= 1;
                if let Some(at) = timeout_at {
                    self.timeouts.remove(&(*at, t.id));
                }
                let pos = t.unit_pos;
                if let Some(on_unit) = self.by_unit.get_mut(unit) {
                    debug_assert_eq!(on_unit.get(pos), Some(&key), "in-flight position");
                    on_unit.swap_remove(pos);
                    // The one moved into the hole learns its new position.
                    if let Some(&moved) = on_unit.get(pos) {
                        self.tasks[moved].unit_pos = pos;
                    }
                }
            }
            State::RetryWait { at } => {
                self.census.waiting_retry -= 1;
                self.retries.remove(&(*at, t.id));
            }
            State::DeadLettered { at, .. } => {
                self.census.dead_lettered -= 1;
                self.dlq.remove(&(*at, t.id));
            }
        }
    }

    /// Ends task `key` with `outcome`: removes it and answers its submitters (or, for a
    /// dead-letter re-run, reports [`DeliveryAction::RerunFinished`]).
    pub(super) fn finish(
        &mut self,
        key: usize,
        outcome: FinalOutcome,
        out: &mut Vec<DeliveryAction>,
    ) {
        let mut task = self.remove(key);
        self.give_buffer(std::mem::take(&mut task.payload));
        if task.answered {
            self.stats.bump(task.kind, |c| c.reruns_finished += 1);
            out.push(DeliveryAction::RerunFinished {
                id: task.id,
                outcome,
            });
            return;
        }
        let count: fn(&mut Counters) = match &outcome {
            FinalOutcome::Ok(_) => |c| c.delivered_ok += 1,
            FinalOutcome::Failed { .. } => |c| c.failed += 1,
            FinalOutcome::DeadlineExceeded => |c| c.deadline_exceeded += 1,
            FinalOutcome::TimedOut { .. } => |c| c.timed_out += 1,
            FinalOutcome::LoopLimit { .. } => |c| c.loop_limited += 1,
            FinalOutcome::Cancelled { .. } => |c| c.cancelled += 1,
            // Counted where they happen (dead_letter) or never produced here (Rejected).
            FinalOutcome::DeadLettered { .. } | FinalOutcome::Rejected { .. } => |_| {},
        };
        self.stats.bump(task.kind, count);
        let to = (task.submitter, task.joined());
        self.answer(task.id, (task.kind, task.class), to, outcome, out);
    }

    /// Emits one [`DeliveryAction::Deliver`] per submitter (the original first) of task `id`
    /// of `(kind, class)`; `to` is the original submitter and the joined ones.
    fn answer(
        &mut self,
        id: TaskId,
        (kind, class): (u32, usize),
        (submitter, joined): (Submitter, &[Submitter]),
        outcome: FinalOutcome,
        out: &mut Vec<DeliveryAction>,
    ) {
        let n = joined.len() as u64 + 1;
        let deliver = |to, outcome| DeliveryAction::Deliver {
            to,
            id,
            kind,
            class,
            outcome,
        };
        match joined.split_last() {
            None => out.push(deliver(submitter, outcome)),
            Some((&last, rest)) => {
                for &to in std::iter::once(&submitter).chain(rest) {
                    out.push(deliver(to, outcome.clone()));
                }
                out.push(deliver(last, outcome));
            }
        }
        self.answers += n;
        self.awaiting -= n;
    }

    /// Moves task `key` to the dead-letter queue, answering its submitters with
    /// [`FinalOutcome::DeadLettered`] unless they were answered already.
    pub(super) fn dead_letter(
        &mut self,
        now: Instant,
        key: usize,
        reason: String,
        poison: bool,
        out: &mut Vec<DeliveryAction>,
    ) {
        let t = &mut self.tasks[key];
        let (id, kind, class) = (t.id, t.kind, t.class);
        let first = !t.answered;
        let joined = t.take_joined();
        let submitter = t.submitter;
        t.answered = true;
        self.stats.bump(kind, |c| {
            c.dead_lettered += 1;
            c.poisoned += u64::from(poison);
        });
        out.push(DeliveryAction::DeadLetter {
            id,
            reason: reason.clone(),
        });
        if first {
            let outcome = FinalOutcome::DeadLettered {
                reason: reason.clone(),
            };
            self.answer(id, (kind, class), (submitter, &joined), outcome, out);
        }
        self.set_state(key, State::DeadLettered { reason, at: now });
        // Within its limit: the oldest entries go (their submitters were answered).
        while self.dlq.len() > self.options.dlq_limit.max(1) {
            let Some((_, old)) = self.dlq.first().copied() else {
                break;
            };
            let Some(k) = self.key_of(old) else {
                break;
            };
            let task = self.remove(k);
            self.stats.bump(task.kind, |c| c.dlq_evicted += 1);
            out.push(DeliveryAction::DlqEvicted {
                id: old,
                kind: task.kind,
            });
        }
    }
}

#[cfg(test)]
mod buffer_tests {
    use super::*;
    use crate::delivery::{NewTask, Take};
    use rand::SeedableRng;

    /// A finished task's payload buffer comes back, emptied, from `take_buffer`; buffers too
    /// large to keep do not.
    #[test]
    fn payload_buffers_are_reused() {
        let mut d = Delivery::new(
            vec![KindConfig::default()],
            1,
            DeliveryOptions::default(),
            SmallRng::seed_from_u64(1),
        )
        .expect("valid options");
        let now = Instant::now();
        let to = Submitter { client: 1, tag: 1 };
        assert_eq!(d.take_buffer().capacity(), 0, "nothing to reuse yet");
        let mut payload = Vec::with_capacity(64);
        payload.extend_from_slice(b"abc");
        let id = d.submit(now, NewTask::new(0, 0, payload, to)).unwrap().id();
        assert!(matches!(d.take_for_dispatch(now, id, 0), Take::Dispatch(_)));
        let actions = d.completed(now, 0, id, 1, amp_ipc::Outcome::Ok(b"r".to_vec()));
        assert_eq!(actions.len(), 1);
        let buf = d.take_buffer();
        assert!(buf.is_empty() && buf.capacity() >= 64, "{}", buf.capacity());
        assert_eq!(d.take_buffer().capacity(), 0, "handed out once");
        d.give_buffer(Vec::with_capacity(SPARE_BUFFER_BYTES + 1));
        assert_eq!(d.take_buffer().capacity(), 0, "too large to keep");
        for _ in 0..SPARE_BUFFERS {
            d.give_buffer(Vec::with_capacity(SPARE_BUFFER_BYTES));
        }
        assert_eq!(
            d.spare.len(),
            SPARE_TOTAL_BYTES / SPARE_BUFFER_BYTES,
            "bounded in bytes"
        );
        assert_eq!(d.spare_bytes, SPARE_TOTAL_BYTES);
        let _ = d.take_buffer();
        assert_eq!(d.spare_bytes, SPARE_TOTAL_BYTES - SPARE_BUFFER_BYTES);
        d.check_invariants();
    }
}
