//! The task path through the loop: client submissions → delivery + router → workers' task rings
//! → completions → delivery → client result rings. One [`Daemon::pump`] pass moves everything
//! that is ready, publishing each ring once per pass.

/// Maps keyed by task ids and serials: ampd's own sequential integers, so a fast non-keyed hash
/// (FxHash) is safe, and SipHash would dominate the per-task cost.
type IdMap<V> = rustc_hash::FxHashMap<u64, V>;
use crate::delivery::seqmap::SeqMap;
use std::time::{Duration, Instant};

use amp_ipc::wire::{
    CompletionHeader, Outcome, ResultHeader, ResultStatus, SubmitHeader, TaskHeader,
    TAG_COMPLETION, TAG_SUBMIT, TAG_TASK, TASK_HEADER_SIZE,
};
use amp_shm_layout::QUEUE_FULL_KINDS;
use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::config::{Config, WorkerMode};
use crate::control::proto::Response;
use crate::delivery::{
    Delivery, DeliveryAction, DeliveryOptions, FinalOutcome, LostCause, NewTask, Submitted,
    Submitter, Take, TaskId,
};
use crate::router::{ClassId, Dispatch, KindRouter};

use super::clients::Clients;
use super::Daemon;

/// Submitter id used for tasks submitted through the control socket (`ampctl submit`).
pub const CONTROL_CLIENT: u64 = 0;
/// Records read from one ring (a client's submissions, a worker's completions) per pass at
/// most: fairness between rings, and shorter passes — what a pass dispatches and answers is
/// published at its end, so under load a result waits for at most this many records of work
/// instead of 4096, and a pass dispatches what it read while the tasks' entries are still in
/// cache. Throughput was the same within this host's noise at 256 to 4096 (`bench_tasks
/// --compare-bin-dir`, sides swapped between invocations); at 64 the per-pass work shows.
const READ_BUDGET: usize = 512;

/// What the loop remembers of a task until it is answered, and of its run in flight (one
/// entry per task: one id lookup serves intake, dispatch, completion and answer).
#[derive(Debug, Clone, Copy)]
struct Meta {
    /// Intake time.
    since: Instant,
    /// The latest attempt dispatched (0: never dispatched).
    attempt: u32,
    kind: u32,
    class: usize,
    /// The run in flight: its unit and dispatch time (for the router's and the controller's
    /// latency samples); `None` when not in flight.
    flight: Option<(usize, Instant)>,
    /// Nobody waits on this entry any more (the task was answered while a run was still in
    /// flight, e.g. after a run timeout, or it is a dead-letter re-run, whose submitters were
    /// answered already): kept only for that run's completion, forgotten when the run ends.
    rerun: bool,
}

/// How often `on_file` trigger directories are listed.
const FILE_SCAN: Duration = Duration::from_millis(500);

/// `Submitter::client` of tasks fired by triggers (their answers go nowhere).
pub const TRIGGER_CLIENT: u64 = u64::MAX - 1;

/// An `ampctl submit --wait` waiting for its answer.
#[derive(Debug, Clone, Copy)]
struct Waiter {
    conn: usize,
}

/// Data-plane state of the daemon.
pub struct Plane {
    /// One router per kind id.
    pub routers: Vec<KindRouter>,
    /// Every task's fate.
    pub delivery: Delivery,
    /// Attached clients.
    pub clients: Clients,
    /// Kind names by id.
    pub kind_names: Vec<String>,
    /// Class names by index.
    pub class_names: Vec<String>,
    /// Largest task payload each kind's workers accept (min over them; None = no worker yet).
    pub max_payload: Vec<Option<usize>>,
    /// Client serial → slab key (serials are never reused, keys are).
    client_keys: IdMap<usize>,
    next_client_serial: u64,
    waiters: IdMap<Waiter>,
    next_control_tag: u64,
    dispatch_buf: Vec<Dispatch>,
    /// Reused by every pass to read a client's submissions.
    submission_buf: Vec<OwnedSubmission>,
    /// Reused by every pass to read a worker's completions.
    completion_buf: Vec<FromRing>,
    /// Reused per completion (taken while in use, so nested use allocates its own).
    action_buf: Vec<DeliveryAction>,
    /// Reused per answer, like `action_buf`.
    flow_buf: Vec<crate::pipeline::FlowAction>,
    /// Completions read in a pass, for the observers: `(kind, latency, ok)`; reused.
    observed_buf: Vec<(u32, Duration, bool)>,
    /// Units whose tasks ring has unpublished records.
    dirty_units: Vec<usize>,
    /// Clients whose results ring has unpublished records.
    dirty_clients: Vec<usize>,
    /// Whether the last pass moved anything.
    pub busy: bool,
    /// Kinds flagged full in every client's segment (`ControlBlock::queue_full`), as published.
    full_kinds: [u64; 4],
    /// The last dispatch pass found a worker's tasks ring full: look again soon.
    pub ring_full: bool,
    /// Records the loop refused as malformed (per unit), for the log.
    pub malformed: u64,
    /// Intake paused by `ampctl pause`.
    pub paused: bool,
    /// Submissions refused per kind (queue full, paused, too large), for `status`.
    pub rejected: Vec<u64>,
    /// Per task until it is answered: intake time, latest attempt, kind and class.
    meta: SeqMap<Meta>,
    /// Routes, fan-out/fan-in, loop accounting.
    pub pipeline: crate::pipeline::Pipeline,
    /// Timer, completion and event triggers.
    pub triggers: crate::pipeline::triggers::Triggers,
    /// The adaptive controller (windows, batch, timeouts, parameters, scaling).
    pub adapt: crate::adapt::Controller,
    /// When the `on_file` trigger directories are listed next.
    next_file_scan: Instant,
    /// Coalescing and result cache per deterministic kind (by kind id).
    pub caches: Vec<Option<crate::pipeline::cache::Cache<Submitter>>>,
    /// Latency and outcomes per (kind, unit).
    pub pair_stats: std::collections::BTreeMap<(u32, usize), super::requests::PairStats>,
}

impl std::fmt::Debug for Plane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plane")
            .field("kinds", &self.kind_names)
            .finish_non_exhaustive()
    }
}

impl Plane {
    /// Builds the routers and the delivery core from the config.
    ///
    /// # Errors
    /// Invalid class or kind settings.
    pub fn new(cfg: &Config, seed: u64) -> anyhow::Result<Self> {
        let kind_names: Vec<String> = cfg.kinds.keys().cloned().collect();
        let mut routers = Vec::with_capacity(kind_names.len());
        for (i, k) in cfg.kinds.values().enumerate() {
            routers.push(KindRouter::new(
                k,
                &cfg.classes,
                seed ^ (i as u64 + 1),
                k.peak_ewma_decay,
            )?);
        }
        let pipeline = crate::pipeline::Pipeline::new(cfg);
        let options = DeliveryOptions {
            max_loops: pipeline.max_loops_bound(),
            retry_base: cfg.supervisor.retry_backoff,
            retry_cap: cfg.supervisor.retry_backoff_max,
            budget: cfg.supervisor.retry_budget,
            poison_deaths: cfg.supervisor.poison_deaths,
            dlq_limit: cfg.supervisor.dlq_limit,
            ..DeliveryOptions::default()
        };
        let delivery = Delivery::new(
            cfg.kinds.values().cloned().collect(),
            cfg.classes.len(),
            options,
            SmallRng::seed_from_u64(seed),
        )?;
        let wall = std::time::SystemTime::now();
        let mut caches = Vec::new();
        for name in cfg.kinds.keys() {
            caches.push(
                match cfg.pipeline.kinds.get(name).and_then(|k| k.cache.as_ref()) {
                    Some(c) => Some(crate::pipeline::cache::Cache::open(c, wall)?),
                    None => None,
                },
            );
        }
        let triggers = crate::pipeline::triggers::Triggers::new(cfg, Instant::now(), wall);
        let mut adapt = crate::adapt::Controller::new(cfg.adapt.clone(), seed)?;
        for (name, k) in &cfg.kinds {
            adapt.set_kind(name, k.batch, k.timeout, Instant::now());
        }
        Ok(Self {
            routers,
            delivery,
            clients: Clients::default(),
            class_names: cfg.classes.iter().map(|c| c.name.clone()).collect(),
            max_payload: vec![None; kind_names.len()],
            kind_names,
            client_keys: IdMap::default(),
            next_client_serial: 1,
            waiters: IdMap::default(),
            next_control_tag: 1,
            dispatch_buf: Vec::new(),
            submission_buf: Vec::new(),
            completion_buf: Vec::new(),
            action_buf: Vec::new(),
            flow_buf: Vec::new(),
            observed_buf: Vec::new(),
            dirty_units: Vec::new(),
            dirty_clients: Vec::new(),
            full_kinds: [0; 4],
            ring_full: false,
            busy: false,
            malformed: 0,
            paused: false,
            rejected: vec![0; cfg.kinds.len()],
            meta: SeqMap::default(),
            pipeline,
            triggers,
            adapt,
            next_file_scan: Instant::now(),
            caches,
            pair_stats: std::collections::BTreeMap::new(),
        })
    }

    /// Registers a new client's serial.
    pub fn client_attached(&mut self, key: usize) -> u64 {
        let serial = self.next_client_serial;
        self.next_client_serial += 1;
        self.client_keys.insert(serial, key);
        serial
    }

    /// Forgets a client (its pending results are dropped when delivered).
    pub fn client_gone(&mut self, key: usize) {
        self.client_keys.retain(|_, k| *k != key);
    }

    /// Tasks in flight on `unit`: (id, kind, since).
    #[must_use]
    pub fn flights_on(&self, unit: usize) -> Vec<(u64, u32, Instant)> {
        let mut v: Vec<_> = self
            .meta
            .iter()
            .filter_map(|(id, m)| match m.flight {
                Some((on, since)) if on == unit => Some((id, m.kind, since)),
                _ => None,
            })
            .collect();
        v.sort_unstable_by_key(|x| x.0);
        v
    }

    /// What the loop remembers of task `id`, for its answer. An entry with a run still in
    /// flight stays until that run ends (its completion frees the router's and controller's
    /// place); otherwise it is removed.
    fn take_meta(&mut self, id: u64) -> Option<Meta> {
        match self.meta.get_mut(id) {
            Some(m) if m.flight.is_some() => {
                m.rerun = true;
                Some(*m)
            }
            _ => self.meta.remove(id),
        }
    }

    fn serial_of(&self, key: usize) -> u64 {
        self.client_keys
            .iter()
            .find(|(_, k)| **k == key)
            .map_or(u64::MAX, |(s, _)| *s)
    }
}

/// Reads up to [`READ_BUDGET`] records of `tag` from a ring into `out`, decoding each; stops at
/// the first record that is malformed, carries another tag, or a corrupt ring, and says why.
/// `out` is a buffer the loop reuses pass after pass (no allocation per pass).
fn drain_ring<T>(
    rx: &mut amp_ipc::signal::Receiver,
    tags: &[u16],
    ring: &str,
    out: &mut Vec<T>,
    mut decode: impl FnMut(u16, &[u8]) -> Result<T, amp_ipc::wire::WireError>,
) -> Option<String> {
    for _ in 0..READ_BUDGET {
        match rx.read() {
            Ok(Some(rec)) if tags.contains(&rec.tag()) => match decode(rec.tag(), rec.data()) {
                Ok(x) => out.push(x),
                Err(e) => return Some(e.to_string()),
            },
            Ok(Some(rec)) => {
                return Some(format!(
                    "unexpected record tag {} on a {ring} ring",
                    rec.tag()
                ))
            }
            Ok(None) => break,
            Err(e) => return Some(e.to_string()),
        }
    }
    None
}

/// A submission copied out of a client's ring (the owned form of
/// [`amp_ipc::wire::Submission`]): header, idempotency key, payload.
type OwnedSubmission = (SubmitHeader, Option<String>, Vec<u8>);

/// A record on a worker's completions ring.
enum FromRing {
    /// A task finished.
    Done(CompletionHeader, Outcome),
    /// A running task emitted a subtask (header: parent id/attempt, child kind).
    Sub(TaskHeader, Vec<u8>),
}

fn status_and_body(o: FinalOutcome) -> (ResultStatus, Vec<u8>) {
    match o {
        FinalOutcome::Ok(b) => (ResultStatus::Ok, b),
        FinalOutcome::Failed { message } => (ResultStatus::Failed, message.into_bytes()),
        FinalOutcome::DeadlineExceeded => (
            ResultStatus::DeadlineExceeded,
            b"deadline exceeded before the task was run (queued, or waiting to be retried)"
                .to_vec(),
        ),
        FinalOutcome::TimedOut { after } => (
            ResultStatus::Failed,
            format!("timed out: still running after {after:?}").into_bytes(),
        ),
        FinalOutcome::DeadLettered { reason } => (ResultStatus::DeadLettered, reason.into_bytes()),
        FinalOutcome::LoopLimit { payload, .. } => (ResultStatus::LoopLimit, payload),
        FinalOutcome::Cancelled { reason } => (
            ResultStatus::Failed,
            format!("cancelled: {reason}").into_bytes(),
        ),
        FinalOutcome::Rejected { reason } => (ResultStatus::Rejected, reason.into_bytes()),
    }
}

fn status_name(s: ResultStatus) -> &'static str {
    match s {
        ResultStatus::Ok => "ok",
        ResultStatus::Failed => "failed",
        ResultStatus::DeadlineExceeded => "deadline_exceeded",
        ResultStatus::DeadLettered => "dead_lettered",
        ResultStatus::Rejected => "rejected",
        ResultStatus::LoopLimit => "loop_limit",
    }
}

/// What became of one dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Written into the worker's tasks ring.
    Written,
    /// Not sent, but answered (its deadline had passed).
    Answered,
    /// Not written: the worker's tasks ring was full, or its rings are gone (requeued at the
    /// head).
    RingFull,
    /// Not sent and nothing changed for anyone: stale.
    Nothing,
}

/// Stores `full` in a segment's `queue_full` flags.
fn store_full_kinds(ctl: &amp_shm_layout::ControlBlock, full: [u64; 4]) {
    for (w, v) in ctl.queue_full.iter().zip(full) {
        // Relaxed: a hint that orders no other memory (see `ControlBlock::queue_full`).
        w.store(v, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Daemon {
    /// Moves everything that is ready: submissions in, completions in, dispatches out, results
    /// out. Returns whether anything moved.
    pub(super) fn pump(&mut self) -> bool {
        let now = Instant::now();
        let mut moved = false;
        moved |= self.read_submissions(now);
        moved |= self.read_completions(now);
        if self
            .plane
            .delivery
            .next_deadline()
            .is_some_and(|d| d <= now)
        {
            let actions = self.plane.delivery.tick(now);
            self.carry_out(now, actions);
        }
        moved |= self.dispatch_tasks(now);
        self.publish_full_kinds();
        self.flush_rings();
        self.plane.busy = moved;
        moved
    }

    /// Flags kinds whose queue is at its limit in every client's segment, when that changed:
    /// a client then refuses such a submission itself (`ClientError::QueueFull`). Called every
    /// pass of the loop, and after its timers and a reload.
    pub(super) fn publish_full_kinds(&mut self) {
        let mut full = [0u64; 4];
        for k in 0..self.plane.kind_names.len().min(QUEUE_FULL_KINDS) {
            // Not a cached (deterministic) kind: a known result or a coalesced run is answered
            // whatever its queue holds, so such submissions go to ampd to decide.
            if self.plane.delivery.queue_full(k) && self.plane.caches[k].is_none() {
                full[k / 64] |= 1 << (k % 64);
            }
        }
        if full == self.plane.full_kinds {
            return;
        }
        self.plane.full_kinds = full;
        for (_, c) in &self.plane.clients.slab {
            store_full_kinds(c.seg.control(), full);
        }
    }

    /// Writes the current full-kind flags into a newly attached client's segment.
    pub(super) fn show_full_kinds(&self, client: usize) {
        if let Some(c) = self.plane.clients.slab.get(client) {
            store_full_kinds(c.seg.control(), self.plane.full_kinds);
        }
    }

    fn read_submissions(&mut self, now: Instant) -> bool {
        let keys: Vec<usize> = self
            .plane
            .clients
            .slab
            .iter()
            .filter(|(_, c)| c.attached)
            .map(|(k, _)| k)
            .collect();
        let mut moved = false;
        let mut batch = std::mem::take(&mut self.plane.submission_buf);
        for key in keys {
            let serial = self.plane.serial_of(key);
            let bad = {
                let plane = &mut self.plane;
                let Some(c) = plane.clients.slab.get_mut(key) else {
                    continue;
                };
                let delivery = &mut plane.delivery;
                // Results written from the backlog are published with the pass's flush.
                let drained = c.drain_backlog();
                if drained && !plane.dirty_clients.contains(&key) {
                    plane.dirty_clients.push(key);
                }
                moved |= drained;
                if !drained && !c.backlog.is_empty() {
                    // The client does not read its results: stop taking its submissions until
                    // it does (backpressure), so nothing is dropped.
                    continue;
                }
                let why = drain_ring(
                    &mut c.end.completions,
                    &[TAG_SUBMIT],
                    "submission",
                    &mut batch,
                    |_, d| {
                        SubmitHeader::read(d).map(|(h, key, payload)| {
                            let mut buf = delivery.take_buffer();
                            buf.extend_from_slice(payload);
                            (h, key.map(|k| String::from_utf8_lossy(k).into_owned()), buf)
                        })
                    },
                );
                // Hand the space back now: a producer waiting for room must never wait on us.
                c.end.completions.release();
                why
            };
            if let Some(why) = bad {
                tracing::warn!(client = serial, "dropping client: {why}");
                self.plane.malformed += 1;
                self.drop_client(key);
                for (_, _, payload) in batch.drain(..) {
                    self.plane.delivery.give_buffer(payload);
                }
                continue;
            }
            moved |= !batch.is_empty();
            for (h, key_s, payload) in batch.drain(..) {
                let to = Submitter {
                    client: serial,
                    tag: h.ticket,
                };
                let class = usize::try_from(h.class).unwrap_or(usize::MAX);
                let unknown = h.flags & !amp_ipc::wire::SUBMIT_KNOWN_FLAGS;
                if unknown != 0 {
                    let reason = format!(
                        "unknown submission flags {unknown:#x} (this ampd knows {:#x})",
                        amp_ipc::wire::SUBMIT_KNOWN_FLAGS
                    );
                    self.reject(now, to, h.kind, class, reason);
                    continue;
                }
                let mut t = NewTask::new(h.kind, class, payload, to);
                t.deadline = (h.timeout_ms > 0)
                    .then(|| now + Duration::from_millis(u64::from(h.timeout_ms)));
                t.parent = (h.parent != 0).then_some(TaskId(h.parent));
                t.idempotency_key = key_s;
                t.chunk = h.flags & amp_ipc::chunk::SUBMIT_CHUNK != 0;
                self.intake(now, t);
            }
        }
        self.plane.submission_buf = batch;
        moved
    }

    /// Refuses a submission: counts it and answers its submitter with `reason`.
    fn reject(
        &mut self,
        now: Instant,
        to: Submitter,
        kind: u32,
        class: usize,
        reason: String,
    ) -> Option<TaskId> {
        if let Some(r) = self.plane.rejected.get_mut(kind as usize) {
            *r += 1;
        }
        self.deliver(
            now,
            to,
            TaskId(0),
            kind,
            class,
            FinalOutcome::Rejected { reason },
        );
        None
    }

    /// Accepts one submission (from a client ring, the control socket, a pipeline or a
    /// trigger); answers rejections.
    pub(super) fn intake(&mut self, now: Instant, t: NewTask) -> Option<TaskId> {
        let (to, kind, class) = (t.submitter, t.kind, t.class);
        let reject = |this: &mut Self, reason: String| this.reject(now, to, kind, class, reason);
        if kind as usize >= self.plane.kind_names.len() {
            return reject(self, format!("kind id {kind} is not served by this ampd"));
        }
        if self.plane.paused {
            return reject(
                self,
                "intake is paused (ampctl pause); retry after ampctl resume".to_owned(),
            );
        }
        if class >= self.plane.class_names.len() {
            return reject(self, format!("priority class {class} does not exist"));
        }
        if let Some(max) = self.plane.max_payload[kind as usize] {
            if t.payload.len() > max {
                let kname = &self.plane.kind_names[kind as usize];
                let reason = format!("payload of {} bytes exceeds the {max} bytes kind {kname}'s workers accept (ring max_record)", t.payload.len());
                return reject(self, reason);
            }
        }
        if t.chunk {
            if let Err(e) = amp_ipc::chunk::validate(&t.payload) {
                return reject(self, format!("malformed chunk: {e}"));
            }
        }
        // Deterministic kinds: identical tasks run once (coalesced), known results are reused.
        // Not chunks: their result is one per item, not the kind's result for the payload.
        let mut exec_key = None;
        if let Some(cache) = self.plane.caches[kind as usize]
            .as_mut()
            .filter(|_| !t.chunk)
        {
            let kname = &self.plane.kind_names[kind as usize];
            let key = crate::pipeline::cache::CacheKey::new(kname, &t.payload);
            match cache.lookup(now, std::time::SystemTime::now(), &key, to) {
                crate::pipeline::cache::Lookup::Hit(bytes) => {
                    self.deliver(now, to, TaskId(0), kind, class, FinalOutcome::Ok(bytes));
                    return None;
                }
                crate::pipeline::cache::Lookup::Joined => return None,
                crate::pipeline::cache::Lookup::Execute(k) => exec_key = Some(k),
            }
        }
        let id = self.submit_new(now, t);
        if let Some(k) = exec_key {
            match id {
                Some(id) => {
                    if let Some(c) = self.plane.caches[kind as usize].as_mut() {
                        c.started(k, id);
                    }
                }
                None => {
                    let waiters = self.plane.caches[kind as usize]
                        .as_mut()
                        .map(|c| c.start_failed(&k))
                        .unwrap_or_default();
                    for w in waiters {
                        let reason = "the coalesced run of this task was refused".to_owned();
                        self.deliver(
                            now,
                            w,
                            TaskId(0),
                            kind,
                            class,
                            FinalOutcome::Rejected { reason },
                        );
                    }
                }
            }
        }
        id
    }

    /// Submits to the delivery core and the kind's queue.
    fn submit_new(&mut self, now: Instant, t: NewTask) -> Option<TaskId> {
        let (to, kind, class) = (t.submitter, t.kind, t.class);
        let reject = |this: &mut Self, reason: String| this.reject(now, to, kind, class, reason);
        match self.plane.delivery.submit(now, t) {
            Ok(Submitted::Queued(id)) => {
                self.plane.meta.insert(
                    id.0,
                    Meta {
                        since: now,
                        attempt: 0,
                        kind,
                        class,
                        flight: None,
                        rerun: false,
                    },
                );
                if let Err(full) =
                    self.plane.routers[kind as usize].submit(id.0, ClassId::new(class))
                {
                    // Take it back out of the delivery core as if never submitted (this also
                    // frees its idempotency key), and refuse it.
                    self.plane.delivery.withdraw(id);
                    self.plane.meta.remove(id.0);
                    return reject(self, full.to_string());
                }
                Some(id)
            }
            Ok(Submitted::Joined(id)) => Some(id),
            Err(crate::delivery::SubmitError::QueueFull { limit, .. }) => {
                let kname = &self.plane.kind_names[kind as usize];
                let reason = format!("queue of kind {kname} is full ({limit} tasks queued); retry later or raise queue_limit in [kinds.{kname}]");
                reject(self, reason)
            }
            Err(e) => reject(self, e.to_string()),
        }
    }

    fn read_completions(&mut self, now: Instant) -> bool {
        let mut moved = false;
        for u in 0..self.units.len() {
            moved |= self.read_unit_completions(u, now);
        }
        moved
    }

    /// Reads everything left on one unit's completions ring (its worker exited or is going
    /// away: a pass's [`READ_BUDGET`] would leave finished tasks unread, to be run again and
    /// counted as exposed to the death). Bounded by what a full ring can hold.
    pub(super) fn read_unit_completions_to_end(&mut self, u: usize, now: Instant) {
        let Some(capacity) = self.units[u]
            .proc
            .as_mut()
            .and_then(|p| p.ipc.as_mut())
            .map(|ipc| ipc.end.completions.consumer().capacity())
        else {
            return;
        };
        // A record takes at least 8 bytes.
        let passes = usize::try_from(capacity / 8).unwrap_or(usize::MAX) / READ_BUDGET + 1;
        for _ in 0..passes {
            if !self.read_unit_completions(u, now) {
                break;
            }
        }
    }

    /// Reads one unit's completions ring (at most [`READ_BUDGET`] records).
    pub(super) fn read_unit_completions(&mut self, u: usize, now: Instant) -> bool {
        // Taken while in use (a nested read, e.g. from a flow action, gets a fresh one).
        let mut batch = std::mem::take(&mut self.plane.completion_buf);
        let bad = {
            let Some(ipc) = self.units[u].proc.as_mut().and_then(|p| p.ipc.as_mut()) else {
                self.plane.completion_buf = batch;
                return false;
            };
            let delivery = &mut self.plane.delivery;
            let why = drain_ring(
                &mut ipc.end.completions,
                &[TAG_COMPLETION, amp_ipc::wire::TAG_SUBTASK],
                "completions",
                &mut batch,
                |tag, d| {
                    if tag == amp_ipc::wire::TAG_SUBTASK {
                        return TaskHeader::read(d).map(|(h, p)| FromRing::Sub(h, p.to_vec()));
                    }
                    CompletionHeader::read(d).and_then(|(h, body)| {
                        let buf = delivery.take_buffer();
                        Ok(FromRing::Done(
                            h,
                            Outcome::decode_into(h.status, body, buf)?,
                        ))
                    })
                },
            );
            ipc.end.completions.release();
            why
        };
        let moved = !batch.is_empty();
        // The observers (`ampctl stats`, health, the adaptive controller) learn of the
        // completions after the batch, a lookup per kind instead of per completion; taken like
        // `batch`.
        let mut observed = std::mem::take(&mut self.plane.observed_buf);
        for rec in batch.drain(..) {
            let (h, mut outcome) = match rec {
                FromRing::Done(h, o) => (h, o),
                FromRing::Sub(h, payload) => {
                    self.worker_subtask(now, u, &h, payload);
                    continue;
                }
            };
            let flight = self.plane.meta.get_mut(h.id).and_then(|m| {
                let (_, since) = m.flight.filter(|(on, _)| *on == u)?;
                m.flight = None;
                Some((since, m.kind, m.rerun))
            });
            if let Some((since, kind, rerun)) = flight {
                if rerun {
                    self.plane.meta.remove(h.id);
                }
                if let Outcome::Loopback { payload, reason } = outcome {
                    outcome =
                        match self
                            .plane
                            .pipeline
                            .loopback(TaskId(h.id), kind, h.score, &reason)
                        {
                            crate::pipeline::LoopVerdict::Requeue => {
                                Outcome::Loopback { payload, reason }
                            }
                            crate::pipeline::LoopVerdict::Complete => Outcome::Ok(payload),
                        };
                }
                let ok = matches!(outcome, Outcome::Ok(_) | Outcome::Loopback { .. });
                let latency = now.saturating_duration_since(since);
                let _ = self.plane.routers[kind as usize].completed(u, latency, ok, now);
                observed.push((kind, latency, ok));
            }
            let mut actions = std::mem::take(&mut self.plane.action_buf);
            self.plane.delivery.completed_into(
                now,
                u,
                TaskId(h.id),
                h.attempt,
                outcome,
                &mut actions,
            );
            for a in actions.drain(..) {
                self.carry_out_one(now, a);
            }
            self.plane.action_buf = actions;
        }
        self.plane.completion_buf = batch;
        self.observe_completions(u, &observed, now);
        observed.clear();
        self.plane.observed_buf = observed;
        if let Some(why) = bad {
            // Shared memory written by the worker is untrusted: a malformed ring is the worker's
            // fault; kill it (its tasks are requeued when its exit is seen).
            self.plane.malformed += 1;
            let name = self.units[u].name.clone();
            tracing::error!(unit = %name, "worker wrote a malformed completions ring ({why}); killing it");
            self.record(
                u,
                "quarantined",
                format!("malformed completions ring: {why}"),
            );
            if let Some(p) = &self.units[u].proc {
                let _ = crate::sys::signal_group(p.pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        moved
    }

    /// Tells the observers of `unit`'s completions `observed` — `(kind, latency, ok)` in the
    /// order they were read — one lookup per run of one kind.
    fn observe_completions(&mut self, u: usize, observed: &[(u32, Duration, bool)], now: Instant) {
        for run in observed.chunk_by(|a, b| a.0 == b.0) {
            let kind = run[0].0;
            let pair = self
                .plane
                .pair_stats
                .entry((kind, u))
                .or_insert_with(|| super::requests::PairStats::new(now));
            let health = self.obs.health.get_mut(u);
            for &(_, latency, ok) in run {
                pair.record(
                    u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
                    ok,
                    now,
                );
            }
            if let Some(h) = health {
                for &(_, _, ok) in run {
                    h.task_done(ok);
                }
            }
            let kname = &self.plane.kind_names[kind as usize];
            self.plane.adapt.observe_completions(
                kname,
                u,
                run.iter().map(|&(_, latency, ok)| (latency, ok)),
                now,
            );
        }
    }

    fn dispatch_tasks(&mut self, now: Instant) -> bool {
        let mut moved = false;
        self.plane.ring_full = false;
        for k in 0..self.plane.routers.len() {
            if !self.plane.routers[k].ready() {
                continue;
            }
            let mut buf = std::mem::take(&mut self.plane.dispatch_buf);
            buf.clear();
            let limit = 4096;
            self.plane.routers[k].dispatch_batch(now, limit, &mut buf);
            // The controller learns of the dispatches per run of one unit (one lookup each).
            let mut run: Option<(usize, u32)> = None;
            for d in &buf {
                match self.send_task(now, k, *d) {
                    Sent::Written => moved = true,
                    Sent::Answered => {
                        moved = true;
                        continue;
                    }
                    // A full tasks ring is not progress: the task went back to the head of its
                    // queue (counting it as progress would spin the loop until the worker
                    // drains). The worker's next completion wakes the loop, and the loop looks
                    // again soon anyway (`ring_full`: a worker may free space without a
                    // completion after it).
                    Sent::RingFull => {
                        self.plane.ring_full = true;
                        continue;
                    }
                    Sent::Nothing => continue,
                }
                match &mut run {
                    Some((unit, count)) if *unit == d.unit => *count += 1,
                    _ => {
                        if let Some((unit, count)) = run.replace((d.unit, 1)) {
                            let kname = &self.plane.kind_names[k];
                            self.plane.adapt.observe_dispatches(kname, unit, count, now);
                        }
                    }
                }
            }
            if let Some((unit, count)) = run {
                let kname = &self.plane.kind_names[k];
                self.plane.adapt.observe_dispatches(kname, unit, count, now);
            }
            self.plane.dispatch_buf = buf;
        }
        moved
    }

    /// Writes dispatch `d` into its unit's tasks ring; what became of it (the caller tells the
    /// controller of written ones).
    fn send_task(&mut self, now: Instant, kind: usize, d: Dispatch) -> Sent {
        let id = TaskId(d.task);
        let info = match self.plane.delivery.take_for_dispatch(now, id, d.unit) {
            Take::Dispatch(info) => info,
            Take::Expired(actions) => {
                let _ = self.plane.routers[kind].abandoned(d.unit, now);
                self.carry_out(now, actions);
                return Sent::Answered;
            }
            Take::Skip => {
                let _ = self.plane.routers[kind].abandoned(d.unit, now);
                return Sent::Nothing;
            }
        };
        let header = TaskHeader {
            id: info.id.0,
            attempt: info.attempt,
            kind: info.kind,
            class: u32::try_from(info.class).unwrap_or(0),
            flags: if info.chunk {
                amp_ipc::chunk::TASK_CHUNK
            } else {
                0
            },
            deadline_ns: info.deadline.map_or(0, |dl| {
                let left = dl.saturating_duration_since(now);
                crate::sys::monotonic_ns()
                    .saturating_add(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX))
            }),
        };
        let payload = info.payload;
        let attempt = info.attempt;
        let info_class = info.class;
        let written = match self.units[d.unit]
            .proc
            .as_mut()
            .and_then(|p| p.ipc.as_mut())
        {
            Some(ipc) => match ipc
                .end
                .tasks
                .reserve(TASK_HEADER_SIZE + payload.len(), TAG_TASK)
            {
                Ok(mut r) => {
                    header.write(&mut r);
                    r[TASK_HEADER_SIZE..].copy_from_slice(payload);
                    r.commit();
                    true
                }
                Err(_) => false,
            },
            None => false,
        };
        if written {
            let flight = Some((d.unit, now));
            if let Some(m) = self.plane.meta.get_mut(id.0) {
                m.attempt = attempt;
                m.flight = flight;
            } else {
                self.plane.meta.insert(
                    id.0,
                    Meta {
                        since: now,
                        attempt,
                        kind: u32::try_from(kind).unwrap_or(0),
                        class: info_class,
                        flight,
                        rerun: true,
                    },
                );
            }
            if !self.plane.dirty_units.contains(&d.unit) {
                self.plane.dirty_units.push(d.unit);
            }
        } else {
            let _ = self.plane.routers[kind].abandoned(d.unit, now);
            let actions = self.plane.delivery.dispatch_failed(id, d.unit);
            self.carry_out(now, actions);
            return Sent::RingFull;
        }
        Sent::Written
    }

    fn flush_rings(&mut self) {
        for u in std::mem::take(&mut self.plane.dirty_units) {
            if let Some(ipc) = self.units[u].proc.as_mut().and_then(|p| p.ipc.as_mut()) {
                let _ = ipc.end.tasks.flush();
                // Published for observers (metrics); Relaxed: counters order nothing.
                let st = ipc.end.tasks.producer().stats();
                let ctl = ipc.seg.control();
                ctl.supervisor_wakeups_sent
                    .store(st.wakeups, std::sync::atomic::Ordering::Relaxed);
                ctl.supervisor_records_sent
                    .store(st.records, std::sync::atomic::Ordering::Relaxed);
            }
        }
        for k in std::mem::take(&mut self.plane.dirty_clients) {
            if let Some(c) = self.plane.clients.slab.get_mut(k) {
                let _ = c.end.tasks.flush();
            }
        }
    }

    /// Carries out delivery actions.
    pub(super) fn carry_out(&mut self, now: Instant, actions: Vec<DeliveryAction>) {
        for a in actions {
            self.carry_out_one(now, a);
        }
    }

    /// Carries out one delivery action.
    fn carry_out_one(&mut self, now: Instant, a: DeliveryAction) {
        match a {
            DeliveryAction::Requeue {
                id,
                kind,
                class,
                front,
            } => {
                let mut flow = Vec::new();
                self.plane.pipeline.task_restarted(id, &mut flow);
                let r = &mut self.plane.routers[kind as usize];
                // Accepted once, never refused later: both ignore the queue limit.
                if front {
                    r.requeue(id.0, ClassId::new(class));
                } else {
                    r.requeue_back(id.0, ClassId::new(class));
                }
                self.run_flow(now, flow);
            }
            DeliveryAction::Deliver {
                to,
                id,
                kind,
                class,
                outcome,
            } => {
                if to.client == crate::pipeline::PIPELINE_CLIENT {
                    // A task the pipeline submitted: its answer goes to the pipeline, never
                    // through `answer` under this id, so the loop forgets it here.
                    self.plane.take_meta(id.0);
                }
                self.deliver(now, to, id, kind, class, outcome);
            }
            DeliveryAction::KillWorker { unit, id } => {
                tracing::warn!(unit = %self.units[unit].name, task = id.0, "task ran past its kind's timeout: killing the worker");
                if let Some(p) = &self.units[unit].proc {
                    let _ = crate::sys::signal_group(p.pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
            DeliveryAction::ScheduleRetry { id, attempt, at } => {
                let mut flow = Vec::new();
                self.plane.pipeline.task_restarted(id, &mut flow);
                self.run_flow(now, flow);
                tracing::debug!(
                    task = id.0,
                    attempt,
                    in_ms = at.saturating_duration_since(now).as_millis() as u64,
                    "retry scheduled"
                );
            }
            DeliveryAction::DeadLetter { id, reason } => {
                tracing::warn!(task = id.0, "dead-lettered: {reason}");
                self.push_event(
                    String::new(),
                    "dead_lettered",
                    format!("task {} {reason}", id.0),
                );
            }
            DeliveryAction::DlqEvicted { id, kind } => {
                // Logged at 1, 10, 100… evictions: an outage may evict many.
                let n = self.plane.delivery.stats().total.dlq_evicted;
                if n > 0 && n == 10u64.pow(n.ilog10()) {
                    let kname = self.plane.kind_names.get(kind as usize);
                    tracing::warn!(
                        task = id.0,
                        evicted = n,
                        "dead-letter queue full: dropped its oldest entry (kind {kname:?}); raise [supervisor] dlq_limit to keep more"
                    );
                }
            }
            DeliveryAction::Abandoned { id, unit } => {
                tracing::debug!(task = id.0, unit, "abandoned")
            }
            DeliveryAction::RerunFinished { id, outcome } => {
                tracing::info!(
                    task = id.0,
                    ok = outcome.is_ok(),
                    "dead-letter re-run finished"
                );
            }
        }
    }

    /// A final outcome of task `id` for `to`, through the cache (coalesced waiters), the
    /// completion triggers and the pipeline (routes, fan-in, loops); what comes out is answered.
    pub(super) fn deliver(
        &mut self,
        now: Instant,
        to: Submitter,
        id: TaskId,
        kind: u32,
        class: usize,
        outcome: FinalOutcome,
    ) {
        let waiters = match self
            .plane
            .caches
            .get_mut(kind as usize)
            .and_then(Option::as_mut)
        {
            Some(c) if id.0 != 0 => c.finished(now, std::time::SystemTime::now(), id, &outcome),
            _ => Vec::new(),
        };
        if id.0 != 0 && self.plane.triggers.watches(kind) {
            let (ok, body) = match &outcome {
                FinalOutcome::Ok(b) => (true, b.clone()),
                FinalOutcome::Failed { message } => (false, message.clone().into_bytes()),
                other => (false, format!("{other:?}").into_bytes()),
            };
            let fires = self.plane.triggers.completed(kind, ok, &body);
            self.submit_fires(now, fires);
        }
        for w in waiters {
            let mut flow = Vec::new();
            self.plane
                .pipeline
                .delivered(w, id, kind, class, outcome.clone(), &mut flow);
            self.run_flow(now, flow);
        }
        if self.plane.pipeline.take_plain(to, id, kind) {
            // The hot path: nothing for the pipeline to do.
            self.answer(now, to, id, outcome);
            return;
        }
        // A reused buffer: this runs once per answered task.
        let mut flow = std::mem::take(&mut self.plane.flow_buf);
        self.plane
            .pipeline
            .delivered(to, id, kind, class, outcome, &mut flow);
        self.run_flow_drain(now, &mut flow);
        self.plane.flow_buf = flow;
    }

    /// Carries out what the pipeline asks for.
    fn run_flow(&mut self, now: Instant, mut flow: Vec<crate::pipeline::FlowAction>) {
        self.run_flow_drain(now, &mut flow);
    }

    /// Carries out (and removes) what the pipeline asks for in `flow`.
    fn run_flow_drain(&mut self, now: Instant, flow: &mut Vec<crate::pipeline::FlowAction>) {
        use crate::pipeline::FlowAction;
        for a in flow.drain(..) {
            match a {
                FlowAction::Answer {
                    to,
                    id,
                    outcome,
                    path,
                } => {
                    if let Some(p) = &path {
                        tracing::debug!(task = id.0, path = %crate::pipeline::routes::format_path(p), "chain finished");
                    }
                    self.answer(now, to, id, outcome);
                }
                FlowAction::Submit {
                    to,
                    kind,
                    class,
                    payload,
                    parent,
                } => {
                    let mut t = NewTask::new(kind, class, payload, to);
                    t.parent = parent;
                    if let Some(id) = self.intake(now, t) {
                        self.plane.pipeline.bind(to, id);
                    }
                }
                FlowAction::Cancel { id } => {
                    let actions = self
                        .plane
                        .delivery
                        .cancel(id, "no longer needed by its pipeline");
                    self.carry_out(now, actions);
                }
            }
        }
    }

    /// Feeds queue depths to the adaptive controller and carries out what it decides.
    pub(super) fn adapt_tick(&mut self, now: Instant) {
        if self.plane.adapt.next_tick().is_some_and(|t| t > now) {
            return;
        }
        for (k, r) in self.plane.routers.iter().enumerate() {
            // Queue wait: the age of the longest-waiting task at the head of a class queue.
            let delivery = &self.plane.delivery;
            let wait = r
                .queue_fronts()
                .filter_map(|id| delivery.submitted_at(crate::delivery::TaskId(id)))
                .map(|at| now.saturating_duration_since(at))
                .max()
                .unwrap_or_default();
            self.plane
                .adapt
                .observe_queue(&self.plane.kind_names[k], r.queued(), wait, now);
        }
        let actions = self.plane.adapt.tick(now);
        self.carry_out_adapt(now, actions);
    }

    /// Puts the configured run timeout, batch and worker windows (`concurrency`) of `kind` back
    /// in force unless the controller is in auto mode for it (adaptive settings must not outlive
    /// the mode that derived them), and tells the controller what is in force.
    pub(super) fn restore_kind_settings(&mut self, kind: &str, now: Instant) {
        let Some(k) = self.plane.kind_names.iter().position(|n| n == kind) else {
            return;
        };
        if self.plane.adapt.mode(kind) == crate::adapt::Mode::Auto {
            return;
        }
        let Some(cfg) = self.cfg.kinds.get(kind).copied() else {
            return;
        };
        let _ = self.plane.delivery.set_run_timeout(k as u32, cfg.timeout);
        self.plane.routers[k].set_batch(cfg.batch);
        self.plane.adapt.set_kind(kind, cfg.batch, cfg.timeout, now);
        let units: Vec<usize> = self.plane.routers[k]
            .workers()
            .iter()
            .map(|w| w.unit)
            .collect();
        for u in units {
            let configured = self
                .units
                .get(u)
                .and_then(|x| self.cfg.workers.get(x.worker))
                .and_then(|w| match &w.mode {
                    WorkerMode::Ipc(ic) => Some(ic.concurrency),
                    WorkerMode::Plain { .. } => None,
                });
            if let Some(c) = configured {
                let _ = self.plane.routers[k].set_window(u, c);
            }
        }
        self.plane.adapt.release_windows(kind);
    }

    /// Carries out adaptive decisions.
    pub(super) fn carry_out_adapt(
        &mut self,
        now: Instant,
        actions: Vec<crate::adapt::AdaptAction>,
    ) {
        use crate::adapt::AdaptAction;
        for a in actions {
            let kid = |this: &Self, k: &str| this.plane.kind_names.iter().position(|n| n == k);
            match a {
                AdaptAction::SetWindow { kind, unit, window } => {
                    if let Some(k) = kid(self, &kind) {
                        let _ = self.plane.routers[k].set_window(unit, window);
                    }
                }
                AdaptAction::SetCost { kind, unit, cost } => {
                    if let Some(k) = kid(self, &kind) {
                        let _ = self.plane.routers[k].set_cost(unit, cost);
                    }
                }
                AdaptAction::SetBatch { kind, batch } => {
                    if let Some(k) = kid(self, &kind) {
                        self.plane.routers[k].set_batch(batch);
                    }
                }
                AdaptAction::SetTimeout { kind, timeout } => {
                    // Applies to tasks dispatched from now on; the kind's `on_timeout` decides
                    // what a timeout does.
                    if let Some(k) = kid(self, &kind) {
                        let before = self.plane.delivery.set_run_timeout(k as u32, Some(timeout));
                        tracing::info!(kind, ?before, ?timeout, "adaptive run timeout");
                    }
                }
                AdaptAction::Adjust { unit, .. } => {
                    if let Some(p) = self.units.get(unit).and_then(|x| x.proc.as_ref()) {
                        if let Some(params) =
                            a.worker_params(&amp_ipc::proto::WorkerParams::default())
                        {
                            p.send(amp_ipc::proto::ToWorker::Adjust { params });
                        }
                    }
                }
                AdaptAction::ScaleTo { worker, replicas } => {
                    let r = self.scale_worker(&worker, replicas);
                    tracing::info!(worker, replicas, ok = r.ok, "autoscaler");
                }
                AdaptAction::Drain { worker, unit } => {
                    let name = self
                        .units
                        .get(unit)
                        .map(|x| x.name.clone())
                        .unwrap_or(worker);
                    self.drain_unit(&name);
                }
                AdaptAction::Event(d) => {
                    let detail = serde_json::to_string(&d).unwrap_or_default();
                    self.push_event(String::new(), "adjustment", detail);
                }
            }
        }
        let _ = now;
    }

    /// Submits what triggers fired.
    pub(super) fn submit_fires(
        &mut self,
        now: Instant,
        fires: Vec<crate::pipeline::triggers::TriggerFire>,
    ) {
        for f in fires {
            let name = self
                .plane
                .triggers
                .infos()
                .get(f.trigger)
                .map(|i| i.name.clone())
                .unwrap_or_default();
            self.push_event(
                String::new(),
                "trigger_fired",
                format!(
                    "{name} -> {}",
                    self.plane
                        .kind_names
                        .get(f.kind as usize)
                        .cloned()
                        .unwrap_or_default()
                ),
            );
            let to = Submitter {
                client: TRIGGER_CLIENT,
                tag: f.trigger as u64,
            };
            self.intake(now, NewTask::new(f.kind, f.class, f.payload, to));
        }
    }

    /// Fires due timer triggers and (every `FILE_SCAN` at most) `on_file` triggers whose
    /// directory has new matching files; returns the next timer wakeup.
    pub(super) fn trigger_timers(&mut self, now: Instant) -> Option<Instant> {
        let wall = std::time::SystemTime::now();
        if now >= self.plane.next_file_scan {
            self.plane.next_file_scan = now + FILE_SCAN;
            let watches: Vec<(usize, std::path::PathBuf)> = self
                .plane
                .triggers
                .file_watches()
                .into_iter()
                .map(|(i, d, _)| (i, d.to_path_buf()))
                .collect();
            for (i, dir) in watches {
                // A missing directory lists as empty (it may appear later).
                let names: Vec<String> = std::fs::read_dir(&dir)
                    .map(|rd| {
                        rd.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                let fires = self
                    .plane
                    .triggers
                    .files(i, names.iter().map(String::as_str));
                self.submit_fires(now, fires);
            }
        }
        if self
            .plane
            .triggers
            .next_wakeup(now, wall)
            .is_some_and(|t| t <= now)
        {
            let fires = self.plane.triggers.due(now, wall);
            self.submit_fires(now, fires);
        }
        self.plane.triggers.next_wakeup(now, wall)
    }

    /// A worker running task `h.id` emitted a subtask of kind `h.kind`: it is submitted as a
    /// child of that task (the parent's answer waits for its children, per `fan_in`).
    fn worker_subtask(&mut self, now: Instant, u: usize, h: &TaskHeader, payload: Vec<u8>) {
        let current = self
            .plane
            .meta
            .get(h.id)
            .filter(|m| m.flight.is_some_and(|(on, _)| on == u))
            .map(|m| m.kind);
        let Some(parent_kind) = current else {
            tracing::debug!(unit = %self.units[u].name, task = h.id, "subtask of a task no longer in flight here dropped");
            return;
        };
        let class = self.plane.meta.get(h.id).map_or(0, |m| m.class);
        if self.plane.kind_names.get(h.kind as usize).is_none() {
            tracing::warn!(unit = %self.units[u].name, kind = h.kind, "subtask of an unknown kind id dropped");
            return;
        }
        match self
            .plane
            .pipeline
            .subtask(TaskId(h.id), parent_kind, h.kind, class)
        {
            Ok(to) => {
                let mut t = NewTask::new(h.kind, class, payload, to);
                t.parent = Some(TaskId(h.id));
                if let Some(id) = self.intake(now, t) {
                    self.plane.pipeline.bind(to, id);
                }
            }
            Err(e) => tracing::warn!(task = h.id, "subtask refused: {e}"),
        }
    }

    /// Sends a final outcome to its submitter.
    fn answer(&mut self, now: Instant, to: Submitter, id: TaskId, outcome: FinalOutcome) {
        let (status, body) = status_and_body(outcome);
        if to.client == CONTROL_CLIENT {
            let attempts = self.plane.take_meta(id.0).map_or(0, |m| m.attempt);
            let Some(w) = self.plane.waiters.remove(&to.tag) else {
                return;
            };
            let resp = Response::ok(serde_json::json!({
                "task_id": id.0,
                "status": status_name(status),
                "attempts": attempts,
                "result": String::from_utf8_lossy(&body),
            }));
            self.control.respond(w.conn, &resp, self.poll.registry());
            return;
        }
        let meta = self.plane.take_meta(id.0);
        let Some(&key) = self.plane.client_keys.get(&to.client) else {
            return;
        };
        let Some(c) = self.plane.clients.slab.get_mut(key) else {
            return;
        };
        let (since, attempts) = meta.map_or((now, 0), |m| (m.since, m.attempt));
        let latency =
            u64::try_from(now.saturating_duration_since(since).as_nanos()).unwrap_or(u64::MAX);
        let h = ResultHeader {
            ticket: to.tag,
            task_id: id.0,
            status,
            attempts,
            latency_ns: latency,
        };
        c.push_result(h, &body);
        self.plane.delivery.give_buffer(body);
        if !self.plane.dirty_clients.contains(&key) {
            self.plane.dirty_clients.push(key);
        }
    }

    /// An `ampctl submit`: returns the immediate response, or `None` when it waits.
    #[allow(
        clippy::too_many_arguments,
        reason = "mirrors the fields of the submit request one to one"
    )]
    pub(super) fn control_submit(
        &mut self,
        conn: usize,
        kind: &str,
        priority: Option<&str>,
        payload: Vec<u8>,
        wait: bool,
        timeout: Option<Duration>,
        key: Option<String>,
    ) -> Option<Response> {
        let now = Instant::now();
        let Some(k) = self.plane.kind_names.iter().position(|n| n == kind) else {
            return Some(Response::err(format!(
                "kind {kind:?} is not served by any worker (known kinds: {})",
                self.plane.kind_names.join(", ")
            )));
        };
        let class = match priority {
            None => self.plane.class_names.len().saturating_sub(1),
            Some(p) => match self.plane.class_names.iter().position(|c| c == p) {
                Some(i) => i,
                None => {
                    return Some(Response::err(format!(
                        "priority {p:?} does not exist (classes: {})",
                        self.plane.class_names.join(", ")
                    )))
                }
            },
        };
        let tag = self.plane.next_control_tag;
        self.plane.next_control_tag += 1;
        self.plane.waiters.insert(tag, Waiter { conn });
        let to = Submitter {
            client: CONTROL_CLIENT,
            tag,
        };
        let deadline = timeout.map(|t| now + t);
        // A rejection is answered inside intake (and removes the waiter).
        let mut t = NewTask::new(u32::try_from(k).unwrap_or(0), class, payload, to);
        t.deadline = deadline;
        t.idempotency_key = key;
        let id = self.intake(now, t)?;
        if wait {
            self.pump();
            None
        } else {
            self.plane.waiters.remove(&tag);
            self.pump();
            Some(Response::ok(
                serde_json::json!({"task_id": id.0, "status": "queued"}),
            ))
        }
    }

    /// A unit that serves kinds became ready: it gets credits.
    pub(super) fn unit_ready(&mut self, u: usize) {
        let w = &self.cfg.workers[self.units[u].worker];
        let WorkerMode::Ipc(ic) = &w.mode else { return };
        let Some(ipc) = self.units[u].proc.as_ref().and_then(|p| p.ipc.as_ref()) else {
            return;
        };
        let max = usize::try_from(ipc.seg.layout().tasks.max_record).unwrap_or(usize::MAX)
            - TASK_HEADER_SIZE;
        for kname in &ic.kinds {
            if let Some(k) = self.plane.kind_names.iter().position(|n| n == kname) {
                let now = Instant::now();
                self.plane
                    .adapt
                    .observe_worker_added(kname, u, &w.name, now);
                let window = self
                    .plane
                    .adapt
                    .window_for(kname, u)
                    .unwrap_or(ic.concurrency);
                let _ = self.plane.routers[k].worker_added(u, window);
                let m = &mut self.plane.max_payload[k];
                *m = Some(m.map_or(max, |x| x.min(max)));
            }
        }
    }

    /// A unit stops taking tasks (it is being stopped or drained).
    pub(super) fn unit_draining(&mut self, u: usize) {
        for r in &mut self.plane.routers {
            let _ = r.set_draining(u, true);
        }
    }

    /// A unit is gone: its completions are read one last time, its in-flight tasks requeued.
    pub(super) fn unit_lost(&mut self, u: usize, cause: LostCause) {
        let now = Instant::now();
        self.read_unit_completions_to_end(u, now);
        for (k, r) in self.plane.routers.iter_mut().enumerate() {
            if r.worker_removed(u).is_ok() {
                self.plane
                    .adapt
                    .observe_worker_removed(&self.plane.kind_names[k], u, now);
            }
        }
        self.plane.meta.retain(|_, m| {
            if m.flight.is_some_and(|(on, _)| on == u) {
                m.flight = None;
                return !m.rerun;
            }
            true
        });
        let blame = self.units[u]
            .blame
            .take()
            .unwrap_or(crate::delivery::Blame::All);
        let actions = self
            .plane
            .delivery
            .worker_lost_blaming(now, u, cause, blame);
        self.carry_out(now, actions);
    }

    /// Removes a client (its connection closed or it misbehaved).
    pub(super) fn drop_client(&mut self, key: usize) {
        if let Some(c) = self.plane.clients.slab.try_remove(key) {
            let raw = std::os::fd::AsRawFd::as_raw_fd(&c.end.completions.fd());
            let _ = self
                .poll
                .registry()
                .deregister(&mut mio::unix::SourceFd(&raw));
            let _ = c.seg.unlink();
        }
        self.plane.client_gone(key);
    }

    /// Control-connection closed: forget its clients and waiters.
    pub(super) fn conn_closed(&mut self, conn: usize) {
        let keys: Vec<usize> = self
            .plane
            .clients
            .slab
            .iter()
            .filter(|(_, c)| c.conn == conn)
            .map(|(k, _)| k)
            .collect();
        for k in keys {
            self.drop_client(k);
        }
        self.plane.waiters.retain(|_, w| w.conn != conn);
    }

    /// Consumer rings: publish the sleeping flag on each, one barrier (a SeqCst fence) for all
    /// of them, then re-check each; `true` if any has data (do not sleep: the flags are taken
    /// down again). No ring, no barrier.
    pub(super) fn prepare_sleep(&mut self) -> bool {
        let mut data = false;
        let mut announced = 0;
        for r in self.sleep_rings() {
            data |= r.announce_sleep();
            announced += 1;
        }
        if data {
            for r in self.sleep_rings() {
                r.cancel_sleep();
            }
            return true;
        }
        if announced == 0 {
            return false;
        }
        let barrier = amp_ipc::ring::sleep_barrier();
        for r in self.sleep_rings() {
            data |= r.recheck_sleep(&barrier).unwrap_or(true);
        }
        if data {
            // Not sleeping after all: no producer should ring a doorbell for this round.
            for r in self.sleep_rings() {
                r.cancel_sleep();
            }
        }
        data
    }

    /// The completions rings ampd consumes: attached workers' and attached clients'.
    fn sleep_rings(&mut self) -> impl Iterator<Item = &mut amp_ipc::signal::Receiver> {
        let units = self
            .units
            .iter_mut()
            .filter_map(|u| u.proc.as_mut().and_then(|p| p.ipc.as_mut()))
            .map(|ipc| &mut ipc.end.completions);
        let clients = self
            .plane
            .clients
            .slab
            .iter_mut()
            .filter(|(_, c)| c.attached)
            .map(|(_, c)| &mut c.end.completions);
        units.chain(clients)
    }

    /// After the poll: clear the flags and drain the doorbells.
    pub(super) fn finish_sleep(&mut self) {
        for u in &mut self.units {
            if let Some(ipc) = u.proc.as_mut().and_then(|p| p.ipc.as_mut()) {
                let _ = ipc.end.completions.finish_sleep();
            }
        }
        for (_, c) in &mut self.plane.clients.slab {
            let _ = c.end.completions.finish_sleep();
        }
    }

    /// Work left for shutdown's report.
    pub(super) fn unfinished_report(&mut self) {
        let left = self.plane.delivery.unfinished();
        if !left.is_empty() {
            tracing::warn!(
                count = left.len(),
                "tasks not done at shutdown: {:?}",
                left.iter()
                    .take(20)
                    .map(|t| (t.id.0, &t.state))
                    .collect::<Vec<_>>()
            );
        }
        let actions = self
            .plane
            .delivery
            .cancel_all("ampd shut down before the task ran");
        self.carry_out(Instant::now(), actions);
        self.flush_rings();
    }
}
