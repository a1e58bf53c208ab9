//! The worker runtime: what a worker process is written against.
//!
//! ```no_run
//! use amp_ipc::{Outcome, Worker};
//! let mut w = Worker::from_env()?;      // handshake with ampd, map the segment
//! w.ready()?;                           // dependents may start now
//! w.run(|task| Outcome::Ok(task.payload.to_vec()))?; // until ampd says Shutdown
//! # Ok::<(), amp_ipc::WorkerError>(())
//! ```
//!
//! The runtime is blocking and needs no async runtime. A background thread writes the heartbeat
//! into the control block every `heartbeat_interval` and listens on the control channel for
//! Shutdown (the current task finishes, then [`Worker::next_task`] returns `None`), Drain and
//! Adjust (new [`WorkerParams`], readable with [`Worker::params`]).

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use amp_shm_layout::PeerState;
use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::chunk;
use crate::codec::{Bincode, Codec, CodecError};
use crate::link::PeerEnd;
use crate::proto::{self, FromWorker, ToWorker, WorkerParams, PROTOCOL_VERSION};
use crate::ring::RingError;
use crate::segment::{Segment, SegmentError};
use crate::signal::{Doorbell, WaitError};
use crate::wire::{
    CompletionHeader, Outcome, TaskHeader, COMPLETION_HEADER_SIZE, TAG_COMPLETION, TAG_TASK,
};

/// How long a worker waits for ampd's answer to its Hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong in a worker's runtime.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The process was not started by ampd (or the environment is incomplete).
    #[error("{var} is not set or invalid: this program must be started by ampd (worker with ipc = true)")]
    NotSupervised {
        /// The variable missing.
        var: &'static str,
    },
    /// The control channel failed.
    #[error("control channel to ampd failed: {0}")]
    Channel(String),
    /// ampd refused the handshake.
    #[error("ampd refused this worker: {0}")]
    Rejected(String),
    /// ampd did not answer the Hello in time.
    #[error("ampd did not answer the handshake within {0:?}")]
    HandshakeTimeout(Duration),
    /// Mapping the segment failed.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// A ring failed (corrupt, or a result larger than the ring's max_record).
    #[error(transparent)]
    Ring(#[from] RingError),
    /// Waiting for tasks failed.
    #[error(transparent)]
    Wait(#[from] WaitError),
    /// A doorbell write failed.
    #[error("doorbell: {0}")]
    Io(#[from] std::io::Error),
    /// A task record from ampd was malformed.
    #[error("malformed task record: {0}")]
    Wire(#[from] crate::wire::WireError),
    /// A payload could not be encoded/decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// A task, owned (returned by [`Worker::next_task`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Task id.
    pub id: u64,
    /// Attempt number (1 for the first).
    pub attempt: u32,
    /// Kind id; see [`Worker::kind_name`].
    pub kind: u32,
    /// Priority class index.
    pub class: u32,
    /// Deadline (`CLOCK_MONOTONIC` ns; 0 = none).
    pub deadline_ns: u64,
    /// The payload is a chunk of items ([`crate::chunk`]): parse it with
    /// [`chunk::items`] and answer with a [`chunk::Results`] body as an `Ok` outcome
    /// ([`Worker::run`] does this itself).
    pub chunk: bool,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Task {
    /// Decodes the payload as a typed value (bincode).
    ///
    /// # Errors
    /// [`CodecError::Decode`].
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        Bincode::decode(&self.payload)
    }
}

/// A task borrowed in place from the ring (handed to [`Worker::run`]'s handler).
#[derive(Debug, Clone, Copy)]
pub struct TaskRef<'a> {
    /// Task id.
    pub id: u64,
    /// Attempt number.
    pub attempt: u32,
    /// Kind id.
    pub kind: u32,
    /// Priority class index.
    pub class: u32,
    /// Deadline (`CLOCK_MONOTONIC` ns; 0 = none).
    pub deadline_ns: u64,
    /// When the task is a chunk ([`crate::chunk`]): which item of it this is (the handler
    /// runs once per item, `payload` being the item); `None` for a plain task.
    pub item: Option<u32>,
    /// The payload, in shared memory.
    pub payload: &'a [u8],
}

impl TaskRef<'_> {
    /// Decodes the payload as a typed value (bincode).
    ///
    /// # Errors
    /// [`CodecError::Decode`].
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        Bincode::decode(self.payload)
    }
}

/// Collects the subtasks a handler emits (fan-out); the runtime sends them before the task's
/// completion, and ampd answers the parent once its children are done (its kind's `fan_in`).
#[derive(Debug, Default)]
pub struct Emitter {
    subtasks: Vec<(String, Vec<u8>)>,
}

impl Emitter {
    /// Emits a subtask of kind `kind` with `payload`.
    pub fn subtask(&mut self, kind: &str, payload: impl Into<Vec<u8>>) {
        self.subtasks.push((kind.to_owned(), payload.into()));
    }

    /// Subtasks emitted so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.subtasks.len()
    }

    /// Whether none was emitted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.subtasks.is_empty()
    }
}

/// Encodes a typed result as an `Ok` outcome (bincode).
///
/// # Errors
/// [`CodecError::Encode`].
pub fn ok_typed<T: Serialize>(value: &T) -> Result<Outcome, CodecError> {
    Ok(Outcome::Ok(Bincode::encode(value)?))
}

/// State shared with the heartbeat/control thread.
#[derive(Debug)]
struct Shared {
    shutdown: AtomicBool,
    draining: AtomicBool,
    params: Mutex<WorkerParams>,
    params_version: AtomicU64,
    stop_thread: AtomicBool,
}

/// A connected worker. See the [module docs](self).
#[derive(Debug)]
pub struct Worker {
    name: String,
    seg: Arc<Segment>,
    end: PeerEnd,
    to_ampd: IpcSender<FromWorker>,
    shared: Arc<Shared>,
    kinds: Vec<(u32, String)>,
    thread: Option<JoinHandle<()>>,
    /// Completions committed but not yet published.
    unflushed: u32,
    publish_every: u32,
    wait_timeout: Duration,
    /// `params_version` last applied to the rings.
    applied_version: u64,
}

fn monotonic_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .unwrap_or_else(|_| nix::sys::time::TimeSpec::new(0, 0));
    u64::try_from(ts.tv_sec())
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec()).unwrap_or(0))
}

static TAKEN: AtomicBool = AtomicBool::new(false);

fn env(var: &'static str) -> Result<String, WorkerError> {
    std::env::var(var).map_err(|_| WorkerError::NotSupervised { var })
}

impl Worker {
    /// Connects to the ampd that started this process: reads [`proto::ENV_CONTROL`],
    /// [`proto::ENV_DOORBELLS`] and [`proto::ENV_WORKER`], does the handshake and maps the
    /// segment. Call it once per process.
    ///
    /// # Errors
    /// [`WorkerError::NotSupervised`] when not started by ampd; handshake and mapping errors.
    pub fn from_env() -> Result<Self, WorkerError> {
        Self::from_env_with_protocol(PROTOCOL_VERSION)
    }

    /// As [`from_env`](Self::from_env) but announcing another protocol version (for testing how
    /// a version mismatch is refused).
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    #[doc(hidden)]
    pub fn from_env_with_protocol(protocol: u32) -> Result<Self, WorkerError> {
        let control = env(proto::ENV_CONTROL)?;
        let name = env(proto::ENV_WORKER)?;
        let bells = env(proto::ENV_DOORBELLS)?;
        let mut fds = bells.split(',').map(str::parse::<i32>);
        let (Some(Ok(t)), Some(Ok(c)), None) = (fds.next(), fds.next(), fds.next()) else {
            return Err(WorkerError::NotSupervised {
                var: proto::ENV_DOORBELLS,
            });
        };
        // SeqCst: a one-time process-wide latch; the strongest ordering costs nothing here.
        if t < 3 || c < 3 || t == c || TAKEN.swap(true, Ordering::SeqCst) {
            return Err(WorkerError::NotSupervised {
                var: proto::ENV_DOORBELLS,
            });
        }
        // SAFETY: ampd passes two eventfds at these numbers (dup2'd before exec, without
        // CLOEXEC) and nothing else in this process owns them; `TAKEN` makes sure they are taken
        // over only once.
        let (tfd, cfd) = unsafe { (OwnedFd::from_raw_fd(t), OwnedFd::from_raw_fd(c)) };
        Self::connect(&control, &name, tfd, cfd, protocol)
    }

    /// Connects with explicit parameters (what [`from_env`](Self::from_env) does).
    ///
    /// # Errors
    /// Handshake and mapping errors.
    pub fn connect(
        control: &str,
        name: &str,
        tasks_bell: OwnedFd,
        completions_bell: OwnedFd,
        protocol: u32,
    ) -> Result<Self, WorkerError> {
        let chan = |e: &dyn std::fmt::Display| WorkerError::Channel(e.to_string());
        let to_ampd = IpcSender::<FromWorker>::connect(control.to_owned()).map_err(|e| chan(&e))?;
        let (reply, from_ampd): (IpcSender<ToWorker>, IpcReceiver<ToWorker>) =
            ipc::channel().map_err(|e| chan(&e))?;
        let pid = std::process::id();
        to_ampd
            .send(FromWorker::Hello {
                protocol,
                pid,
                name: name.to_owned(),
                reply,
            })
            .map_err(|e| chan(&e))?;
        let answer = match from_ampd.try_recv_timeout(HANDSHAKE_TIMEOUT) {
            Ok(m) => m,
            Err(ipc_channel::TryRecvError::Empty) => return Err(WorkerError::HandshakeTimeout(HANDSHAKE_TIMEOUT)),
            Err(e) => {
                return Err(WorkerError::Channel(format!(
                    "{e} (if ampd is a different amp release, rebuild both; this worker speaks protocol {protocol})"
                )))
            }
        };
        let (segment, generation, params, kinds) = match answer {
            ToWorker::Welcome {
                segment,
                generation,
                params,
                kinds,
            } => (segment, generation, params, kinds),
            ToWorker::Reject { reason } => return Err(WorkerError::Rejected(reason)),
            other => {
                return Err(WorkerError::Channel(format!(
                    "expected Welcome, got {other:?}"
                )))
            }
        };
        let seg = Arc::new(Segment::open(&segment)?);
        if seg.generation() != generation {
            return Err(WorkerError::Rejected(format!(
                "segment {segment} has generation {}, ampd announced {generation}",
                seg.generation()
            )));
        }
        let end = PeerEnd::new(
            &seg,
            Doorbell::from_owned(tasks_bell)?,
            Doorbell::from_owned(completions_bell)?,
        )?;
        let ctl = seg.control();
        // Relaxed: informational fields; ampd reads them as untrusted snapshots.
        ctl.pid.store(pid, Ordering::Relaxed);
        ctl.heartbeat_ns.store(monotonic_ns(), Ordering::Relaxed);
        ctl.state
            .store(PeerState::Attached as u32, Ordering::Release);
        to_ampd.send(FromWorker::Attached).map_err(|e| chan(&e))?;
        let wait_timeout = Duration::from_millis(params.heartbeat_interval_ms.max(1));
        let publish_every = params.publish_every.max(1);
        let shared = Arc::new(Shared {
            shutdown: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            params: Mutex::new(params),
            params_version: AtomicU64::new(0),
            stop_thread: AtomicBool::new(false),
        });
        let wake = end.tasks.bell_clone()?;
        let thread = spawn_control_thread(
            Arc::clone(&shared),
            Arc::clone(&seg),
            from_ampd,
            to_ampd.clone(),
            wake,
            wait_timeout,
        )?;
        Ok(Self {
            name: name.to_owned(),
            seg,
            end,
            to_ampd,
            shared,
            kinds,
            thread: Some(thread),
            unflushed: 0,
            publish_every,
            wait_timeout,
            applied_version: 0,
        })
    }

    /// This worker's name (`group` or `group#replica`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of a kind id, as configured.
    #[must_use]
    pub fn kind_name(&self, id: u32) -> Option<&str> {
        self.kinds
            .iter()
            .find(|(k, _)| *k == id)
            .map(|(_, n)| n.as_str())
    }

    /// The current parameters (updated by ampd's Adjust messages).
    #[must_use]
    pub fn params(&self) -> WorkerParams {
        self.shared
            .params
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many Adjust messages have been applied (to notice a change cheaply).
    #[must_use]
    pub fn params_version(&self) -> u64 {
        // Acquire: pairs with the control thread's AcqRel increment after it stored new params.
        self.shared.params_version.load(Ordering::Acquire)
    }

    /// Whether ampd asked this worker to shut down.
    #[must_use]
    pub fn shutdown_requested(&self) -> bool {
        // Acquire: pairs with the control thread's Release store when Shutdown arrives.
        self.shared.shutdown.load(Ordering::Acquire)
    }

    /// Tells ampd this worker is ready for tasks (dependents waiting for `ready` may start).
    ///
    /// # Errors
    /// [`WorkerError::Channel`].
    pub fn ready(&mut self) -> Result<(), WorkerError> {
        // Release: pairs with ampd's Acquire load of the state word.
        self.seg
            .control()
            .state
            .store(PeerState::Ready as u32, Ordering::Release);
        self.to_ampd
            .send(FromWorker::Ready)
            .map_err(|e| WorkerError::Channel(e.to_string()))
    }

    /// Applies parameters an Adjust message changed (spin window, publish batch).
    fn refresh_params(&mut self) {
        let v = self.params_version();
        if v != self.applied_version {
            self.applied_version = v;
            let p = self.params();
            self.end.tasks.set_spin(p.spin);
            self.publish_every = p.publish_every.max(1);
        }
    }

    /// Publishes pending completions and wakes ampd if it sleeps.
    fn flush(&mut self) -> Result<(), WorkerError> {
        self.refresh_params();
        self.unflushed = 0;
        self.end.completions.flush()?;
        let st = self.end.completions.producer().stats();
        let ctl = self.seg.control();
        // Relaxed: counters for observers; they order nothing.
        ctl.wakeups_sent.store(st.wakeups, Ordering::Relaxed);
        ctl.records_sent.store(st.records, Ordering::Relaxed);
        Ok(())
    }

    /// Waits for the next task (copying its payload out of the ring). Returns `None` once ampd
    /// asked for shutdown and the tasks already sent to this worker are done.
    ///
    /// # Errors
    /// Ring corruption, a malformed task record, or a failed wait.
    pub fn next_task(&mut self) -> Result<Option<Task>, WorkerError> {
        loop {
            if let Some(rec) = self.end.tasks.read()? {
                if rec.tag() != TAG_TASK {
                    continue;
                }
                let (h, payload) = TaskHeader::read(rec.data())?;
                mark_taken(&self.seg, h.id);
                return Ok(Some(Task {
                    id: h.id,
                    attempt: h.attempt,
                    kind: h.kind,
                    class: h.class,
                    deadline_ns: h.deadline_ns,
                    chunk: h.flags & chunk::TASK_CHUNK != 0,
                    payload: payload.to_vec(),
                }));
            }
            // Space first, then the completions whose doorbell wakes ampd: it may be waiting
            // for room in this ring to dispatch more.
            self.end.tasks.release();
            self.flush()?;
            // Shutdown: the tasks already in the ring (in flight for ampd) are finished first.
            if self.shutdown_requested() {
                return Ok(None);
            }
            self.end.tasks.wait(Some(self.wait_timeout))?;
        }
    }

    /// Reports the outcome of `task` to ampd.
    ///
    /// # Errors
    /// Ring errors. A result that does not fit the completions ring's `max_record` is sent as
    /// a non-retryable failure saying so.
    pub fn complete(&mut self, task: &Task, outcome: &Outcome) -> Result<(), WorkerError> {
        self.complete_raw(task.id, task.attempt, outcome, 0, f64::NAN)
    }

    /// Reports an outcome with its handler time and a quality score (NaN = none).
    ///
    /// # Errors
    /// As [`complete`](Self::complete).
    pub fn complete_raw(
        &mut self,
        id: u64,
        attempt: u32,
        outcome: &Outcome,
        busy_ns: u64,
        score: f64,
    ) -> Result<(), WorkerError> {
        let max = self.end.completions.producer().max_record() as usize;
        let too_large;
        let outcome = if COMPLETION_HEADER_SIZE + outcome.body_len() > max {
            // The task is answered (a failure naming why) rather than the worker stopping with
            // a ring error and the task being retried into the same wall.
            too_large = Outcome::Err {
                retryable: false,
                message: too_large_message(outcome.body_len(), max),
            };
            &too_large
        } else {
            outcome
        };
        let h = CompletionHeader {
            id,
            attempt,
            status: outcome.status(),
            busy_ns,
            score,
        };
        let len = COMPLETION_HEADER_SIZE + outcome.body_len();
        // The 60 s limit on waiting for room starts at the first full ring (no clock read per
        // task).
        let mut deadline = None;
        loop {
            match self.end.completions.reserve(len, TAG_COMPLETION) {
                Ok(mut r) => {
                    h.write(&mut r);
                    outcome.write_body(&mut r[COMPLETION_HEADER_SIZE..]);
                    r.commit();
                    break;
                }
                // Acquire on `shutdown`: pairs with the control thread's Release store.
                Err(RingError::Full { .. })
                    if Instant::now()
                        < *deadline
                            .get_or_insert_with(|| Instant::now() + Duration::from_secs(60))
                        && !self.shared.shutdown.load(Ordering::Acquire) =>
                {
                    self.end.completions.flush()?;
                    std::thread::yield_now();
                }
                Err(e) => return Err(e.into()),
            }
        }
        let ctl = self.seg.control();
        // Relaxed: statistics.
        match outcome {
            Outcome::Ok(_) | Outcome::Loopback { .. } => {
                ctl.tasks_ok.fetch_add(1, Ordering::Relaxed)
            }
            Outcome::Err { .. } => ctl.tasks_failed.fetch_add(1, Ordering::Relaxed),
        };
        ctl.busy_ns.fetch_add(busy_ns, Ordering::Relaxed);
        // Relaxed: read by ampd only after this process died (see `taken`).
        let _ = ctl.running_task.compare_exchange(
            id.wrapping_add(1),
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.unflushed += 1;
        if self.unflushed >= self.publish_every || busy_ns >= 10_000 {
            self.flush()?;
        }
        Ok(())
    }

    /// Runs `handler` on every task, in place (zero-copy payloads), until ampd asks for shutdown.
    /// Completions are published in batches while tasks keep coming and at once when the ring
    /// runs dry.
    ///
    /// A chunk ([`crate::chunk`]) runs `handler` once per item, in order ([`TaskRef::item`]
    /// says which), and answers with one outcome per item; a `Loopback` is not possible for an
    /// item and is answered as a failed item. A result larger than the completions ring's
    /// `max_record` is answered as a failure saying so (the task is not lost, the worker goes on).
    ///
    /// # Errors
    /// Ring, wire or wait errors; the handler's own failures are outcomes, not errors.
    pub fn run<F>(self, mut handler: F) -> Result<(), WorkerError>
    where
        F: FnMut(&TaskRef<'_>) -> Outcome,
    {
        self.run_with(move |t, _| handler(t))
    }

    /// As [`run`](Self::run), with an [`Emitter`] through which the handler emits subtasks
    /// (fan-out): they are sent before the task's completion, and ampd answers the task's
    /// submitter once the children are done, per the kind's `fan_in` rule.
    ///
    /// # Errors
    /// As [`run`](Self::run); a subtask of a kind ampd does not serve ends the run with
    /// [`WorkerError::Rejected`].
    pub fn run_with<F>(mut self, mut handler: F) -> Result<(), WorkerError>
    where
        F: FnMut(&TaskRef<'_>, &mut Emitter) -> Outcome,
    {
        self.serve(|t, chunk, spare, emitter| {
            if chunk {
                run_chunk(t, std::mem::take(spare), |t| handler(t, emitter))
            } else {
                handler(t, emitter)
            }
        })
    }

    /// As [`run`](Self::run), for handlers that write their result in place: `handler` appends
    /// the result to a [`Reply`] (a buffer the runtime reuses, or the chunk's result itself)
    /// and returns `Ok(())`, or returns a [`Failure`]. No allocation per task or item: for
    /// tasks that do little work this is noticeably cheaper than returning an
    /// [`Outcome::Ok`] vector.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), amp_ipc::WorkerError> {
    /// let mut w = amp_ipc::Worker::from_env()?;
    /// w.ready()?;
    /// w.run_reply(|t, reply| {
    ///     reply.extend_from_slice(t.payload); // echo
    ///     Ok(())
    /// })
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn run_reply<F>(mut self, mut handler: F) -> Result<(), WorkerError>
    where
        F: FnMut(&TaskRef<'_>, &mut Reply<'_>) -> Result<(), Failure>,
    {
        self.serve(|t, chunk, spare, _| {
            if chunk {
                return run_chunk_reply(t, std::mem::take(spare), &mut handler);
            }
            spare.clear();
            // On a failure the buffer stays the next task's spare.
            match handler(t, &mut Reply::new(spare)) {
                Ok(()) => Outcome::Ok(std::mem::take(spare)),
                Err(f) => Outcome::Err {
                    retryable: f.retryable,
                    message: f.message,
                },
            }
        })
    }

    /// The task loop under `run_with` and `run_reply`: `handle(task, is_chunk, spare buffer,
    /// emitter)` makes each task's outcome, taking the spare buffer for an `Ok` outcome; that
    /// buffer comes back as the next task's spare (dropped if it grew past twice `max_record`,
    /// the most a result can be, with room for `Vec`'s doubling).
    fn serve<F>(&mut self, mut handle: F) -> Result<(), WorkerError>
    where
        F: FnMut(&TaskRef<'_>, bool, &mut Vec<u8>, &mut Emitter) -> Outcome,
    {
        let max = self.end.completions.producer().max_record() as usize;
        let mut emitter = Emitter::default();
        let mut spare = Vec::new();
        loop {
            let done = {
                let Some(rec) = self.end.tasks.read()? else {
                    // Space first, then the completions whose doorbell wakes ampd: it may be
                    // waiting for room in this ring to dispatch more.
                    self.end.tasks.release();
                    self.flush()?;
                    // Shutdown: the tasks already in the ring are finished first.
                    if self.shutdown_requested() {
                        return Ok(());
                    }
                    self.end.tasks.wait(Some(self.wait_timeout))?;
                    continue;
                };
                if rec.tag() != TAG_TASK {
                    continue;
                }
                let (h, payload) = TaskHeader::read(rec.data())?;
                mark_taken(&self.seg, h.id);
                let t = TaskRef {
                    id: h.id,
                    attempt: h.attempt,
                    kind: h.kind,
                    class: h.class,
                    deadline_ns: h.deadline_ns,
                    item: None,
                    payload,
                };
                let start = Instant::now();
                let chunk = h.flags & chunk::TASK_CHUNK != 0;
                let outcome = handle(&t, chunk, &mut spare, &mut emitter);
                let busy = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                (h, outcome, busy)
            };
            let (h, outcome, busy) = done;
            for (kind, payload) in std::mem::take(&mut emitter.subtasks) {
                self.send_subtask(&h, &kind, &payload)?;
            }
            self.complete_raw(h.id, h.attempt, &outcome, busy, f64::NAN)?;
            if let Outcome::Ok(buf) = outcome {
                spare = buf;
            }
            // Whatever the outcome: a buffer that grew well past the largest result allowed
            // (a handler that wrote too much, then failed or was refused) is not kept.
            if spare.capacity() > max.saturating_mul(2) {
                spare = Vec::new();
            }
        }
    }

    /// Writes one subtask record (header: the parent's id and attempt, the child's kind).
    fn send_subtask(
        &mut self,
        parent: &TaskHeader,
        kind: &str,
        payload: &[u8],
    ) -> Result<(), WorkerError> {
        let Some(kid) = self.kinds.iter().find(|(_, n)| n == kind).map(|(k, _)| *k) else {
            return Err(WorkerError::Rejected(format!(
                "subtask kind {kind:?} is not served by this ampd"
            )));
        };
        // A subtask is a plain task whatever its parent was (flags: not a chunk).
        let h = TaskHeader {
            kind: kid,
            flags: 0,
            ..*parent
        };
        let len = crate::wire::TASK_HEADER_SIZE + payload.len();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.end.completions.reserve(len, crate::wire::TAG_SUBTASK) {
                Ok(mut r) => {
                    h.write(&mut r);
                    r[crate::wire::TASK_HEADER_SIZE..].copy_from_slice(payload);
                    r.commit();
                    return Ok(());
                }
                Err(RingError::Full { .. }) if Instant::now() < deadline => {
                    self.end.completions.flush()?;
                    std::thread::yield_now();
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Where a [`Worker::run_reply`] handler writes its result: append-only. Inside a chunk it
/// appends to the chunk's result, so [`len`](Self::len) counts only this result's bytes.
///
/// ```
/// use std::io::Write;
/// let mut buf = b"earlier".to_vec();
/// let mut reply = amp_ipc::Reply::new(&mut buf);
/// assert!(reply.is_empty());
/// write!(reply, "{}", 42).unwrap();
/// reply.push(b'!');
/// assert_eq!(reply.len(), 3);
/// assert_eq!(buf, b"earlier42!");
/// ```
#[derive(Debug)]
pub struct Reply<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Reply<'a> {
    /// A reply appending to `buf` (what `buf` holds already is not part of it). The runtime
    /// makes these; this is for testing a handler on its own.
    #[inline]
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        let start = buf.len();
        Self { buf, start }
    }

    /// Appends bytes to the result.
    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends one byte.
    #[inline]
    pub fn push(&mut self, byte: u8) {
        self.buf.push(byte);
    }

    /// Bytes of this result written so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether nothing of this result was written yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::io::Write for Reply<'_> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A [`Worker::run_reply`] handler's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Whether retrying may help.
    pub retryable: bool,
    /// What went wrong.
    pub message: String,
}

/// A chunk item's `TaskRef`: the chunk's fields, the item's payload and index.
#[inline]
fn item_ref<'a>(t: &TaskRef<'_>, i: u32, payload: &'a [u8]) -> TaskRef<'a> {
    TaskRef {
        id: t.id,
        attempt: t.attempt,
        kind: t.kind,
        class: t.class,
        deadline_ns: t.deadline_ns,
        item: Some(i),
        payload,
    }
}

/// The failure of a chunk whose payload is malformed.
fn malformed_chunk(e: &crate::wire::WireError) -> Outcome {
    Outcome::Err {
        retryable: false,
        message: format!("malformed chunk: {e}"),
    }
}

/// [`run_chunk`] for a [`Worker::run_reply`] handler: each item's result is written straight
/// into the chunk's result.
#[inline]
fn run_chunk_reply<F>(t: &TaskRef<'_>, buf: Vec<u8>, handler: &mut F) -> Outcome
where
    F: FnMut(&TaskRef<'_>, &mut Reply<'_>) -> Result<(), Failure>,
{
    let items = match chunk::items(t.payload) {
        Ok(items) => items,
        Err(e) => return malformed_chunk(&e),
    };
    let mut results = chunk::Results::new(buf);
    for (i, payload) in (0u32..).zip(items) {
        let item = item_ref(t, i, payload);
        results.push_with(|out| {
            handler(&item, &mut Reply::new(out)).map_err(|f| (f.retryable, f.message))
        });
    }
    Outcome::Ok(results.finish())
}

/// Runs `handler` on each item of the chunk task `t` and builds the chunk's result in `buf`.
fn run_chunk(
    t: &TaskRef<'_>,
    buf: Vec<u8>,
    mut handler: impl FnMut(&TaskRef<'_>) -> Outcome,
) -> Outcome {
    let items = match chunk::items(t.payload) {
        Ok(items) => items,
        Err(e) => return malformed_chunk(&e),
    };
    let mut results = chunk::Results::new(buf);
    for (i, payload) in (0u32..).zip(items) {
        match handler(&item_ref(t, i, payload)) {
            Outcome::Ok(bytes) => results.push_ok(&bytes),
            Outcome::Err { retryable, message } => results.push_err(retryable, message.as_bytes()),
            Outcome::Loopback { .. } => {
                results.push_err(false, b"an item of a chunk cannot loop back");
            }
        }
    }
    Outcome::Ok(results.finish())
}

/// The failure message for a result of `len` bytes that does not fit a completion record of at
/// most `max` bytes, cut so that it fits itself (ASCII, so any cut is a char boundary).
fn too_large_message(len: usize, max: usize) -> String {
    let mut m = format!(
        "the result of {len} bytes exceeds the completions ring's max_record of {max} bytes \
         (with its {COMPLETION_HEADER_SIZE}-byte header)"
    );
    m.truncate(max.saturating_sub(COMPLETION_HEADER_SIZE));
    m
}

/// Publishes that task `id` is being run (`running_task`, `tasks_taken` in the control block):
/// if this process dies now, ampd blames that task only. Relaxed: ampd reads these only after
/// the process died, when every store is visible.
fn mark_taken(seg: &Segment, id: u64) {
    let ctl = seg.control();
    ctl.running_task
        .store(id.wrapping_add(1), Ordering::Relaxed);
    ctl.tasks_taken.fetch_add(1, Ordering::Relaxed);
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.end.completions.flush();
        // Release: pairs with ampd's Acquire load of the state word.
        self.seg
            .control()
            .state
            .store(PeerState::Exiting as u32, Ordering::Release);
        let _ = self.to_ampd.send(FromWorker::Goodbye {
            reason: "worker exiting".into(),
        });
        // The thread notices the flag within one heartbeat interval; it is not joined, so
        // that dropping a worker (and exiting) never waits for that interval.
        self.shared.stop_thread.store(true, Ordering::Release);
        drop(self.thread.take());
    }
}

/// The heartbeat and control-channel thread.
fn spawn_control_thread(
    shared: Arc<Shared>,
    seg: Arc<Segment>,
    rx: IpcReceiver<ToWorker>,
    tx: IpcSender<FromWorker>,
    wake: Doorbell,
    interval: Duration,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("amp-heartbeat".into())
        .spawn(move || {
            let mut interval = interval;
            // Acquire: pairs with the Release store in `Worker::drop`.
            while !shared.stop_thread.load(Ordering::Acquire) {
                // Relaxed: a heartbeat orders nothing; ampd compares it with its own clock.
                seg.control()
                    .heartbeat_ns
                    .store(monotonic_ns(), Ordering::Relaxed);
                match rx.try_recv_timeout(interval) {
                    Ok(ToWorker::Shutdown) => {
                        // Release: pairs with the Acquire in `shutdown_requested`.
                        shared.shutdown.store(true, Ordering::Release);
                        let _ = wake.ring();
                    }
                    Ok(ToWorker::Drain) => {
                        shared.draining.store(true, Ordering::Release);
                        seg.control()
                            .state
                            .store(PeerState::Draining as u32, Ordering::Release);
                        let _ = tx.send(FromWorker::Draining);
                    }
                    Ok(ToWorker::Adjust { params }) => {
                        interval = Duration::from_millis(params.heartbeat_interval_ms.max(1));
                        *shared.params.lock().unwrap_or_else(PoisonError::into_inner) = params;
                        // AcqRel: publishes the params stored above to `params_version` readers.
                        shared.params_version.fetch_add(1, Ordering::AcqRel);
                    }
                    Ok(ToWorker::Welcome { .. } | ToWorker::Reject { .. }) => {}
                    Err(ipc_channel::TryRecvError::Empty) => {}
                    Err(_) => {
                        // ampd is gone: stop (PR_SET_PDEATHSIG normally kills us first).
                        shared.shutdown.store(true, Ordering::Release);
                        let _ = wake.ring();
                        return;
                    }
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk_task(payload: &[u8]) -> TaskRef<'_> {
        TaskRef {
            id: 7,
            attempt: 1,
            kind: 0,
            class: 0,
            deadline_ns: 0,
            item: None,
            payload,
        }
    }

    /// Inside a chunk each item's `Reply` counts only its own bytes, each item sees its index,
    /// and a failed item's partial writes are dropped.
    #[test]
    fn chunk_items_get_their_own_reply_and_index() {
        let items: [&[u8]; 3] = [b"a", b"bcd", b"fail"];
        let mut payload = vec![0; chunk::encoded_len(&items)];
        chunk::encode(&items, &mut payload);
        let mut seen = Vec::new();
        let outcome = run_chunk_reply(&chunk_task(&payload), Vec::new(), &mut |t, reply| {
            assert!(
                reply.is_empty(),
                "item {:?} starts with an empty reply",
                t.item
            );
            reply.extend_from_slice(t.payload);
            reply.push(b'.');
            seen.push((t.item, reply.len()));
            if t.payload == b"fail" {
                return Err(Failure {
                    retryable: true,
                    message: "no".into(),
                });
            }
            Ok(())
        });
        assert_eq!(seen, [(Some(0), 2), (Some(1), 4), (Some(2), 5)]);
        let Outcome::Ok(body) = outcome else {
            panic!("a chunk is answered Ok: {outcome:?}");
        };
        let got: Vec<_> = chunk::outcomes(&body).unwrap().collect();
        assert_eq!(
            got,
            [
                chunk::ItemOutcome::Ok(b"a."),
                chunk::ItemOutcome::Ok(b"bcd."),
                chunk::ItemOutcome::Err {
                    retryable: true,
                    message: b"no"
                },
            ]
        );
    }

    /// A malformed chunk is one non-retryable failure naming it.
    #[test]
    fn a_malformed_chunk_fails_as_a_whole() {
        let outcome = run_chunk_reply(&chunk_task(&[9, 0, 0, 0]), Vec::new(), &mut |_, _| {
            panic!("no item of a malformed chunk is run")
        });
        assert!(
            matches!(&outcome, Outcome::Err { retryable: false, message } if message.starts_with("malformed chunk")),
            "{outcome:?}"
        );
    }

    /// The too-large message names both sizes and always fits the record it travels in.
    #[test]
    fn the_too_large_message_fits() {
        let m = too_large_message(70_000, 65_536);
        assert_eq!(
            m,
            format!(
                "the result of 70000 bytes exceeds the completions ring's max_record of 65536 \
                 bytes (with its {COMPLETION_HEADER_SIZE}-byte header)"
            )
        );
        for max in [
            0,
            1,
            COMPLETION_HEADER_SIZE,
            COMPLETION_HEADER_SIZE + 10,
            100,
            200,
        ] {
            assert!(
                COMPLETION_HEADER_SIZE + too_large_message(1 << 20, max).len()
                    <= max.max(COMPLETION_HEADER_SIZE)
            );
        }
    }
}
