//! Submitting tasks to a running ampd from another process.
//!
//! [`Client::connect`] attaches over ampd's control socket: ampd creates a segment for this
//! client and passes the two doorbell eventfds with `SCM_RIGHTS`; the client maps the segment and
//! confirms, and ampd unlinks its name. Submissions then travel through shared memory (the
//! segment's "completions" ring), results come back on its "tasks" ring, in any order, matched
//! by ticket. The control connection stays open as the client's lifeline: when it closes, ampd
//! forgets the client.
//!
//! ```no_run
//! use amp_ipc::client::{Client, ResultStatus};
//! use std::time::Duration;
//! let mut c = Client::connect("/run/user/1000/amp/ampd.sock".as_ref())?;
//! let t = c.submit("echo", b"hello")?;
//! let r = c.wait_for(t, Duration::from_secs(5))?;
//! assert_eq!((r.status, &r.body[..]), (ResultStatus::Ok, &b"hello"[..]));
//! # Ok::<(), amp_ipc::client::ClientError>(())
//! ```
//!
//! Backpressure: when the submission ring is full, [`Client::submit`] returns
//! [`ClientError::Full`] at once; when the kind's queue in ampd is at its `queue_limit`, it
//! returns [`ClientError::QueueFull`] at once (ampd flags full kinds in the client's segment,
//! [`amp_shm_layout::ControlBlock::queue_full`]). [`ClientError::is_full`] is true for both, and
//! [`Client::submit_blocking`] waits out both until its deadline. The flag is refreshed as ampd
//! works, so a submission that races past it (one of a batch pushed while the queue filled) is
//! still refused by ampd: its result is [`ResultStatus::Rejected`] with a message saying so.
//! Two kinds of submission always go to ampd, which may answer them from a full queue: one
//! with an idempotency key (it may join a task already accepted), and one of a deterministic
//! (cached) kind, which ampd never flags.

use std::collections::HashMap;
use std::io::{IoSliceMut, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde::de::DeserializeOwned;
use serde::Serialize;

use amp_shm_layout::ControlBlock;

use crate::chunk;
use crate::codec::{Bincode, Codec, CodecError};
use crate::link::PeerEnd;
use crate::ring::RingError;
use crate::segment::{Segment, SegmentError};
use crate::signal::{Doorbell, WaitError};
pub use crate::wire::ResultStatus;
use crate::wire::{
    ResultHeader, SubmitHeader, SUBMIT_HAS_KEY, SUBMIT_HEADER_SIZE, TAG_RESULT, TAG_SUBMIT,
};

/// A submission's handle: results carry it back.
pub type Ticket = u64;

/// Errors of the client API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// ampd's control socket could not be reached.
    #[error("cannot reach ampd at {path}: {source}")]
    Unreachable {
        /// Socket path.
        path: String,
        /// Connect error.
        source: std::io::Error,
    },
    /// The attach exchange failed.
    #[error("attach failed: {0}")]
    Attach(String),
    /// The kind is not served by any worker of this ampd.
    #[error("kind {kind:?} is not served by this ampd (known kinds: {known})")]
    UnknownKind {
        /// The kind asked for.
        kind: String,
        /// The kinds ampd serves.
        known: String,
    },
    /// The priority class does not exist.
    #[error("priority class {class:?} does not exist (classes: {known})")]
    UnknownClass {
        /// The class asked for.
        class: String,
        /// Known classes.
        known: String,
    },
    /// The submission ring is full right now: retry later (or use `submit_blocking`).
    #[error("submission ring full: ampd is not keeping up; retry")]
    Full,
    /// The kind's queue in ampd holds its `queue_limit` tasks: retry later (or use
    /// `submit_blocking`), or raise the limit.
    #[error("the queue of kind {kind:?} in ampd is at its queue_limit; retry later, or raise queue_limit in [kinds.{kind}]")]
    QueueFull {
        /// The kind.
        kind: String,
    },
    /// Payload larger than the ring's record limit.
    #[error("payload of {len} bytes exceeds the {max}-byte record limit")]
    TooLarge {
        /// Payload bytes.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// No result within the timeout.
    #[error("no result within {0:?}")]
    Timeout(Duration),
    /// ampd went away.
    #[error("ampd closed the connection")]
    Disconnected,
    /// Shared-memory errors.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// Ring errors (corrupt ring).
    #[error(transparent)]
    Ring(#[from] RingError),
    /// Waiting failed.
    #[error(transparent)]
    Wait(#[from] WaitError),
    /// Socket or doorbell I/O.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A malformed result record (or a chunk's result body that is not a chunk result).
    #[error("malformed result from ampd: {0}")]
    Wire(#[from] crate::wire::WireError),
    /// [`TaskResult::outcomes`] on the result of a plain task (not pushed as a chunk).
    #[error("ticket {ticket} was not submitted as a chunk: its result has no per-item outcomes")]
    NotAChunk {
        /// The ticket.
        ticket: Ticket,
    },
    /// Typed payload encoding.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A typed call's task did not succeed.
    #[error("task {task_id} ended {status:?}: {message}")]
    TaskFailed {
        /// Task id.
        task_id: u64,
        /// How it ended.
        status: ResultStatus,
        /// Message from ampd or the worker.
        message: String,
    },
}

impl ClientError {
    /// Whether this is backpressure — [`Full`](Self::Full) or [`QueueFull`](Self::QueueFull):
    /// nothing was submitted, and the same submission may succeed later.
    #[must_use]
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full | Self::QueueFull { .. })
    }
}

/// Whether ampd flags kind `kind` as full in `ctl` (see [`ControlBlock::queue_full`]); kinds
/// beyond the bitmap are never flagged (ampd still refuses their submissions when full).
fn kind_flagged_full(ctl: &ControlBlock, kind: u32) -> bool {
    let k = kind as usize;
    ctl.queue_full.get(k / 64).is_some_and(|w| {
        // Relaxed: a hint that orders no other memory (see the field's doc).
        w.load(std::sync::atomic::Ordering::Relaxed) & (1 << (k % 64)) != 0
    })
}

/// The final result of one submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskResult {
    /// The ticket returned by submit.
    pub ticket: Ticket,
    /// ampd's task id (0 if rejected at intake).
    pub task_id: u64,
    /// How it ended.
    pub status: ResultStatus,
    /// Attempts made.
    pub attempts: u32,
    /// Time from intake to result inside ampd.
    pub latency: Duration,
    /// Result bytes (Ok) or a message.
    pub body: Vec<u8>,
    /// Whether the submission was a chunk ([`Client::push_chunk`]): the body (when Ok) holds
    /// one outcome per item, read with [`outcomes`](Self::outcomes).
    pub chunk: bool,
}

impl TaskResult {
    /// The body as text (for messages).
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Decodes a successful result's body as `R` (bincode; the typed side of
    /// [`Client::push_typed`], as [`Client::call`] does for one task).
    ///
    /// # Errors
    /// [`ClientError::TaskFailed`] when the task did not succeed; [`ClientError::Codec`] when
    /// the body is not an `R`.
    pub fn decode<R: DeserializeOwned>(&self) -> Result<R, ClientError> {
        if self.status != ResultStatus::Ok {
            return Err(ClientError::TaskFailed {
                task_id: self.task_id,
                status: self.status,
                message: self.text(),
            });
        }
        Ok(Bincode::decode(&self.body)?)
    }

    /// The per-item outcomes of a chunk's result ([`Client::push_chunk`]), in item order.
    ///
    /// # Errors
    /// [`ClientError::TaskFailed`] when the chunk as a whole did not succeed (rejected,
    /// failed, dead-lettered, past its deadline: every item shares that end);
    /// [`ClientError::NotAChunk`] when the ticket was a plain task; [`ClientError::Wire`]
    /// when the body is not a well-formed chunk result.
    pub fn outcomes(&self) -> Result<chunk::Outcomes<'_>, ClientError> {
        if !self.chunk {
            return Err(ClientError::NotAChunk {
                ticket: self.ticket,
            });
        }
        if self.status != ResultStatus::Ok {
            return Err(ClientError::TaskFailed {
                task_id: self.task_id,
                status: self.status,
                message: self.text(),
            });
        }
        Ok(chunk::outcomes(&self.body)?)
    }
}

/// Options of one submission.
#[derive(Debug, Clone, Default)]
pub struct Submit<'a> {
    /// Kind name.
    pub kind: &'a str,
    /// Priority class name (`None`: the last class, normally `batch`).
    pub class: Option<&'a str>,
    /// Deadline relative to intake.
    pub timeout: Option<Duration>,
    /// Idempotency key: a second submission with the same key while the first is known returns
    /// the first's result.
    pub idempotency_key: Option<&'a str>,
}

/// A client attached to ampd.
#[derive(Debug)]
pub struct Client {
    _control: UnixStream,
    end: PeerEnd,
    seg: Arc<Segment>,
    kinds: HashMap<String, u32>,
    classes: Vec<String>,
    max_record: usize,
    next_ticket: Ticket,
    /// Results read but not yet asked for.
    ready: ReadySet,
    /// The last kind looked up and its id (a client mostly submits one kind; spares hashing
    /// the name per submission).
    last_kind: Option<(String, u32)>,
    /// Tickets of `ready` in arrival order (for `try_result`; may hold tickets already taken).
    arrivals: std::collections::VecDeque<Ticket>,
    /// Submissions pushed but not yet published.
    unflushed: bool,
    /// Tickets of chunks whose result has not arrived yet.
    chunks: std::collections::HashSet<Ticket>,
}

/// Results read but not yet taken, by ticket. Tickets are issued in sequence and results come
/// back in about that order, so they live in a window of slots indexed by `ticket - base`
/// (no hashing, touched in order); a ticket outside the window (far behind or ahead of the
/// others) goes to a map on the side.
#[derive(Debug, Default)]
struct ReadySet {
    /// Ticket of `window[0]`.
    base: Ticket,
    /// Slots for tickets `base .. base + window.len()`; the front one is never empty.
    window: std::collections::VecDeque<Option<TaskResult>>,
    /// Occupied slots in `window`.
    in_window: usize,
    /// Everything else; a ticket is in at most one of `window` and `side`.
    side: HashMap<Ticket, TaskResult>,
}

impl ReadySet {
    /// Slots the window may always span; beyond, it may span 4 per result it holds.
    const MIN_SPAN: usize = 4096;

    fn slot(&self, t: Ticket) -> Option<usize> {
        let off = usize::try_from(t.checked_sub(self.base)?).ok()?;
        (off < self.window.len()).then_some(off)
    }

    fn is_empty(&self) -> bool {
        self.in_window == 0 && self.side.is_empty()
    }

    fn len(&self) -> usize {
        self.in_window + self.side.len()
    }

    fn contains(&self, t: Ticket) -> bool {
        self.slot(t).is_some_and(|s| self.window[s].is_some()) || self.side.contains_key(&t)
    }

    fn insert(&mut self, t: Ticket, r: TaskResult) {
        if !self.side.is_empty() {
            self.side.remove(&t);
        }
        if self.window.is_empty() {
            self.base = t;
        }
        if let Some(s) = self.slot(t) {
            if self.window[s].replace(r).is_none() {
                self.in_window += 1;
            }
            return;
        }
        if t < self.base {
            self.side.insert(t, r);
            return;
        }
        // Ahead of the window: extend it, first moving its oldest results aside while it
        // would grow too sparse (a result nobody takes must not hold it open).
        loop {
            if self.window.is_empty() {
                self.base = t;
            }
            let span = Self::MIN_SPAN.max(4 * (self.in_window + 1));
            let off = usize::try_from(t - self.base).unwrap_or(usize::MAX);
            if off < span {
                self.window.resize_with(off, || None);
                self.window.push_back(Some(r));
                self.in_window += 1;
                return;
            }
            if let Some(Some(old)) = self.window.pop_front() {
                self.in_window -= 1;
                self.side.insert(self.base, old);
            }
            self.base += 1;
            self.pop_empty_front();
        }
    }

    fn pop_empty_front(&mut self) {
        while matches!(self.window.front(), Some(None)) {
            self.window.pop_front();
            self.base += 1;
        }
    }

    fn remove(&mut self, t: Ticket) -> Option<TaskResult> {
        if let Some(s) = self.slot(t) {
            if let Some(r) = self.window[s].take() {
                self.in_window -= 1;
                if s == 0 {
                    self.pop_empty_front();
                }
                return Some(r);
            }
        }
        if self.side.is_empty() {
            None
        } else {
            self.side.remove(&t)
        }
    }
}

fn read_line_with_fds(sock: &UnixStream) -> Result<(String, Vec<OwnedFd>), ClientError> {
    use std::os::fd::AsRawFd;
    let mut line = Vec::new();
    let mut fds = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| ClientError::Io(e.into()))?;
        for c in msg.cmsgs().map_err(|e| ClientError::Io(e.into()))? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                for fd in raw {
                    // SAFETY: the kernel just installed this fd in our table for us (SCM_RIGHTS);
                    // nothing else owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        let n = msg.bytes;
        if n == 0 {
            return Err(ClientError::Disconnected);
        }
        line.extend_from_slice(&buf[..n]);
        if line.contains(&b'\n') {
            break;
        }
    }
    let text = String::from_utf8_lossy(&line).trim().to_owned();
    Ok((text, fds))
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> Result<&'a serde_json::Value, ClientError> {
    v.get(name)
        .ok_or_else(|| ClientError::Attach(format!("attach answer lacks `{name}`: {v}")))
}

impl Client {
    /// Attaches to the ampd listening on `socket`.
    ///
    /// # Errors
    /// [`ClientError::Unreachable`], [`ClientError::Attach`], mapping errors.
    pub fn connect(socket: &Path) -> Result<Self, ClientError> {
        let mut s = UnixStream::connect(socket).map_err(|source| ClientError::Unreachable {
            path: socket.display().to_string(),
            source,
        })?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(b"{\"v\":1,\"cmd\":\"attach\"}\n")?;
        let (line, mut fds) = read_line_with_fds(&s)?;
        let resp: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| ClientError::Attach(format!("{e}: {line}")))?;
        if resp.get("ok") != Some(&serde_json::Value::Bool(true)) {
            let msg = resp
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("unknown error");
            return Err(ClientError::Attach(msg.to_owned()));
        }
        let data = field(&resp, "data")?;
        if fds.len() != 2 {
            return Err(ClientError::Attach(format!(
                "expected 2 doorbell fds, got {}",
                fds.len()
            )));
        }
        let completions_fd = fds.pop().ok_or(ClientError::Disconnected)?;
        let tasks_fd = fds.pop().ok_or(ClientError::Disconnected)?;
        let name = field(data, "segment")?
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let client_id = field(data, "client")?.as_u64().unwrap_or_default();
        let kinds = field(data, "kinds")?
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| {
                        Some((
                            k.get(1)?.as_str()?.to_owned(),
                            u32::try_from(k.get(0)?.as_u64()?).ok()?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let classes = field(data, "classes")?
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let seg = Arc::new(Segment::open(&name)?);
        let end = PeerEnd::new(
            &seg,
            Doorbell::from_owned(tasks_fd)?,
            Doorbell::from_owned(completions_fd)?,
        )?;
        let max_record = usize::try_from(seg.layout().completions.max_record).unwrap_or(usize::MAX);
        s.write_all(
            format!("{{\"v\":1,\"cmd\":\"attached\",\"client\":{client_id}}}\n").as_bytes(),
        )?;
        let (line, _) = read_line_with_fds(&s)?;
        if !line.contains("\"ok\":true") {
            return Err(ClientError::Attach(format!(
                "ampd refused the attach confirmation: {line}"
            )));
        }
        s.set_read_timeout(None)?;
        Ok(Self {
            _control: s,
            end,
            seg,
            kinds,
            classes,
            max_record,
            next_ticket: 1,
            ready: ReadySet::default(),
            last_kind: None,
            arrivals: std::collections::VecDeque::new(),
            unflushed: false,
            chunks: std::collections::HashSet::new(),
        })
    }

    /// Kinds ampd serves.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// Whether ampd flags `kind`'s queue as at its `queue_limit` right now: a submission of it
    /// would return [`ClientError::QueueFull`]. False for a kind ampd does not serve.
    #[must_use]
    pub fn queue_full(&self, kind: &str) -> bool {
        self.kinds
            .get(kind)
            .is_some_and(|&id| kind_flagged_full(self.seg.control(), id))
    }

    /// Priority classes, in the order of the config (the last is the default).
    #[must_use]
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    fn kind_id(&mut self, kind: &str) -> Result<u32, ClientError> {
        if let Some((name, id)) = &self.last_kind {
            if name == kind {
                return Ok(*id);
            }
        }
        let id = self.kinds.get(kind).copied().ok_or_else(|| {
            let mut known: Vec<&str> = self.kinds.keys().map(String::as_str).collect();
            known.sort_unstable();
            ClientError::UnknownKind {
                kind: kind.to_owned(),
                known: known.join(", "),
            }
        })?;
        self.last_kind = Some((kind.to_owned(), id));
        Ok(id)
    }

    fn class_id(&self, class: Option<&str>) -> Result<u32, ClientError> {
        match class {
            None => Ok(u32::try_from(self.classes.len().saturating_sub(1)).unwrap_or(0)),
            Some(c) => self
                .classes
                .iter()
                .position(|k| k == c)
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| ClientError::UnknownClass {
                    class: c.to_owned(),
                    known: self.classes.join(", "),
                }),
        }
    }

    /// Queues a submission without publishing it (call [`flush`](Self::flush), or use
    /// [`submit`](Self::submit)). Returns its ticket.
    ///
    /// # Errors
    /// [`ClientError::UnknownKind`], [`ClientError::UnknownClass`], [`ClientError::Full`],
    /// [`ClientError::TooLarge`].
    pub fn push(&mut self, opts: &Submit<'_>, payload: &[u8]) -> Result<Ticket, ClientError> {
        self.push_with(opts, 0, payload.len(), |out| out.copy_from_slice(payload))
    }

    /// Queues a **chunk** without publishing it: `items` travel as one task, the worker's
    /// handler runs once per item, and the result carries one outcome per item, in order
    /// ([`TaskResult::outcomes`]). Routing, deadline, timeout and retries after a worker death
    /// apply to the chunk as a whole; failed items are not retried (see [`crate::chunk`]).
    ///
    /// For many small tasks this is what `multiprocessing.Pool`'s `chunksize` is: the per-task
    /// cost of a trip through `ampd` is paid once per chunk.
    ///
    /// # Errors
    /// As [`push`](Self::push); [`ClientError::TooLarge`] when the encoded chunk does not fit
    /// the ring's `max_record`.
    pub fn push_chunk<T: AsRef<[u8]>>(
        &mut self,
        opts: &Submit<'_>,
        items: &[T],
    ) -> Result<Ticket, ClientError> {
        self.push_with(
            opts,
            chunk::SUBMIT_CHUNK,
            chunk::encoded_len(items),
            |out| {
                chunk::encode(items, out);
            },
        )
    }

    /// Submits a chunk and publishes it (see [`push_chunk`](Self::push_chunk)).
    ///
    /// # Errors
    /// As [`push_chunk`](Self::push_chunk).
    pub fn submit_chunk<T: AsRef<[u8]>>(
        &mut self,
        opts: &Submit<'_>,
        items: &[T],
    ) -> Result<Ticket, ClientError> {
        let t = self.push_chunk(opts, items)?;
        self.flush()?;
        Ok(t)
    }

    /// Queues a submission whose header carries `flags` as given (but for `SUBMIT_HAS_KEY`,
    /// which follows `opts.idempotency_key`) and whose payload is sent as is: for tests of
    /// ampd's intake (flags it does not know, a malformed chunk). Not for applications:
    /// [`push`](Self::push) and [`push_chunk`](Self::push_chunk) write valid records.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    #[doc(hidden)]
    pub fn push_raw(
        &mut self,
        opts: &Submit<'_>,
        flags: u32,
        payload: &[u8],
    ) -> Result<Ticket, ClientError> {
        self.push_with(opts, flags & !SUBMIT_HAS_KEY, payload.len(), |out| {
            out.copy_from_slice(payload);
        })
    }

    /// Writes a submission record: header with `flags`, the idempotency key if any, and a
    /// payload of `payload_len` bytes written by `write`.
    fn push_with(
        &mut self,
        opts: &Submit<'_>,
        flags: u32,
        payload_len: usize,
        write: impl FnOnce(&mut [u8]),
    ) -> Result<Ticket, ClientError> {
        let kind = self.kind_id(opts.kind)?;
        let class = self.class_id(opts.class)?;
        // A submission with an idempotency key may join a task already accepted, which ampd
        // answers whatever the queue holds: it goes to ampd to decide.
        if opts.idempotency_key.is_none() && kind_flagged_full(self.seg.control(), kind) {
            return Err(ClientError::QueueFull {
                kind: opts.kind.to_owned(),
            });
        }
        let key = opts.idempotency_key.map(str::as_bytes);
        let key_len = key.map_or(0, |k| 2 + k.len());
        let len = SUBMIT_HEADER_SIZE + key_len + payload_len;
        if len > self.max_record || key.is_some_and(|k| k.len() > usize::from(u16::MAX)) {
            return Err(ClientError::TooLarge {
                len: payload_len,
                max: self.max_record.saturating_sub(SUBMIT_HEADER_SIZE + key_len),
            });
        }
        let ticket = self.next_ticket;
        let h = SubmitHeader {
            ticket,
            kind,
            class,
            timeout_ms: opts.timeout.map_or(0, |t| {
                u32::try_from(t.as_millis()).unwrap_or(u32::MAX).max(1)
            }),
            flags: flags | if key.is_some() { SUBMIT_HAS_KEY } else { 0 },
            parent: 0,
        };
        let mut r = match self.end.completions.reserve(len, TAG_SUBMIT) {
            Ok(r) => r,
            Err(RingError::Full { .. }) => {
                self.end.completions.flush()?;
                return Err(ClientError::Full);
            }
            Err(e) => return Err(e.into()),
        };
        h.write(&mut r);
        let mut at = SUBMIT_HEADER_SIZE;
        if let Some(k) = key {
            r[at..at + 2].copy_from_slice(&u16::try_from(k.len()).unwrap_or(0).to_le_bytes());
            r[at + 2..at + 2 + k.len()].copy_from_slice(k);
            at += 2 + k.len();
        }
        write(&mut r[at..]);
        r.commit();
        if flags & chunk::SUBMIT_CHUNK != 0 {
            self.chunks.insert(ticket);
        }
        self.next_ticket += 1;
        self.unflushed = true;
        Ok(ticket)
    }

    /// Publishes queued submissions (one index store) and wakes ampd if it sleeps.
    ///
    /// # Errors
    /// Doorbell errors.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        if std::mem::take(&mut self.unflushed) {
            self.end.completions.flush()?;
        }
        Ok(())
    }

    /// Submits one task (the default class: the last one, `batch` by default) and publishes it.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn submit(&mut self, kind: &str, payload: &[u8]) -> Result<Ticket, ClientError> {
        let t = self.push(
            &Submit {
                kind,
                ..Submit::default()
            },
            payload,
        )?;
        self.flush()?;
        Ok(t)
    }

    /// Submits with options and publishes.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn submit_with(
        &mut self,
        opts: &Submit<'_>,
        payload: &[u8],
    ) -> Result<Ticket, ClientError> {
        let t = self.push(opts, payload)?;
        self.flush()?;
        Ok(t)
    }

    /// Submits, waiting until `timeout` passes for room in the ring and in the kind's queue.
    ///
    /// # Errors
    /// [`ClientError::Full`] or [`ClientError::QueueFull`] if still full at the deadline; as
    /// [`push`](Self::push) otherwise.
    pub fn submit_blocking(
        &mut self,
        opts: &Submit<'_>,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Ticket, ClientError> {
        let deadline = Instant::now() + timeout;
        // A full ring drains within microseconds; a full queue as fast as workers work: back
        // off from a yield to at most a millisecond between looks.
        let mut pause = Duration::ZERO;
        loop {
            match self.submit_with(opts, payload) {
                Err(e) if e.is_full() && Instant::now() < deadline => {
                    // Drain results meanwhile so ampd is never blocked on us.
                    self.poll_results()?;
                    if matches!(e, ClientError::QueueFull { .. }) {
                        pause =
                            (pause * 2).clamp(Duration::from_micros(20), Duration::from_millis(1));
                        std::thread::sleep(
                            pause.min(deadline.saturating_duration_since(Instant::now())),
                        );
                    } else {
                        std::thread::yield_now();
                    }
                }
                other => return other,
            }
        }
    }

    /// Reads every result available now into the ready set; returns how many.
    fn poll_results(&mut self) -> Result<usize, ClientError> {
        let mut n = 0;
        while let Some(rec) = self.end.tasks.read()? {
            if rec.tag() != TAG_RESULT {
                continue;
            }
            let (h, body) = ResultHeader::read(rec.data())?;
            // Tickets taken by `wait_for` stay in `arrivals` until skipped; keep it bounded.
            if self.arrivals.len() > 2 * self.ready.len() + 1024 {
                let ready = &self.ready;
                self.arrivals.retain(|t| ready.contains(*t));
            }
            self.arrivals.push_back(h.ticket);
            self.ready.insert(
                h.ticket,
                TaskResult {
                    ticket: h.ticket,
                    task_id: h.task_id,
                    status: h.status,
                    attempts: h.attempts,
                    latency: Duration::from_nanos(h.latency_ns),
                    body: body.to_vec(),
                    chunk: !self.chunks.is_empty() && self.chunks.remove(&h.ticket),
                },
            );
            n += 1;
        }
        Ok(n)
    }

    /// Any one result available now.
    ///
    /// # Errors
    /// Ring errors.
    pub fn try_result(&mut self) -> Result<Option<TaskResult>, ClientError> {
        if self.ready.is_empty() {
            self.poll_results()?;
        }
        // Oldest first; tickets already taken by `wait_for` are skipped.
        while let Some(t) = self.arrivals.pop_front() {
            if let Some(r) = self.ready.remove(t) {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// Waits for any result, up to `timeout`.
    ///
    /// # Errors
    /// [`ClientError::Timeout`], ring and wait errors.
    pub fn wait_result(&mut self, timeout: Duration) -> Result<TaskResult, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.try_result()? {
                return Ok(r);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout(timeout));
            }
            self.end
                .tasks
                .wait(Some(left.min(Duration::from_millis(100))))?;
        }
    }

    /// Waits for the result of `ticket` (results of other tickets are kept for later).
    ///
    /// # Errors
    /// [`ClientError::Timeout`], ring and wait errors.
    pub fn wait_for(
        &mut self,
        ticket: Ticket,
        timeout: Duration,
    ) -> Result<TaskResult, ClientError> {
        // No clock read while the result is already here (the common case when draining).
        if let Some(r) = self.ready.remove(ticket) {
            return Ok(r);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.ready.remove(ticket) {
                return Ok(r);
            }
            if self.poll_results()? > 0 {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout(timeout));
            }
            self.end
                .tasks
                .wait(Some(left.min(Duration::from_millis(100))))?;
        }
    }

    /// Queues a typed submission without publishing it (encoded with bincode; call
    /// [`flush`](Self::flush)): the batch, non-blocking form of [`call`](Self::call). Decode
    /// each result with [`TaskResult::decode`].
    ///
    /// # Errors
    /// [`ClientError::Codec`] when `input` does not encode; as [`push`](Self::push) otherwise.
    pub fn push_typed<T: Serialize>(
        &mut self,
        opts: &Submit<'_>,
        input: &T,
    ) -> Result<Ticket, ClientError> {
        let bytes = Bincode::encode(input)?;
        self.push(opts, &bytes)
    }

    /// Typed round trip: encodes `input` with bincode, submits (waiting for room up to
    /// `timeout`), waits for the result, decodes it.
    ///
    /// # Errors
    /// Submission and wait errors; [`ClientError::TaskFailed`] if the task did not succeed;
    /// [`ClientError::Codec`] if the result does not decode as `R`.
    pub fn call<T: Serialize, R: DeserializeOwned>(
        &mut self,
        kind: &str,
        input: &T,
        timeout: Duration,
    ) -> Result<R, ClientError> {
        let bytes = Bincode::encode(input)?;
        let t = self.submit_blocking(
            &Submit {
                kind,
                ..Submit::default()
            },
            &bytes,
            timeout,
        )?;
        self.wait_for(t, timeout)?.decode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;

    fn result(ticket: Ticket) -> TaskResult {
        TaskResult {
            ticket,
            task_id: ticket * 10,
            status: ResultStatus::Ok,
            attempts: 1,
            latency: Duration::ZERO,
            body: ticket.to_le_bytes().to_vec(),
            chunk: false,
        }
    }

    /// The ready set behaves like a map under in-order, out-of-order, straggling and repeated
    /// tickets, and keeps its front slot occupied.
    #[test]
    fn ready_set_behaves_like_a_map() {
        for seed in 0..20 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut set = ReadySet::default();
            let mut model: BTreeMap<Ticket, u64> = BTreeMap::new();
            let mut next = 1u64;
            for step in 0..20_000 {
                match rng.random_range(0..10) {
                    0..=4 => {
                        // Mostly the next ticket; sometimes one a little ahead or behind.
                        let t = match rng.random_range(0..20) {
                            0 => next.saturating_sub(rng.random_range(0..50)),
                            1 => next + rng.random_range(0..10_000),
                            _ => next,
                        };
                        next = next.max(t + 1);
                        set.insert(t, result(t));
                        model.insert(t, t * 10);
                    }
                    5..=8 => {
                        let t = if rng.random_bool(0.8) {
                            model.keys().next().copied().unwrap_or(0)
                        } else {
                            rng.random_range(0..next + 5)
                        };
                        let got = set.remove(t).map(|r| r.task_id);
                        assert_eq!(got, model.remove(&t), "step {step} ticket {t}");
                    }
                    _ => {
                        let t = rng.random_range(0..next + 5);
                        assert_eq!(set.contains(t), model.contains_key(&t));
                    }
                }
                assert_eq!(set.len(), model.len());
                assert_eq!(set.is_empty(), model.is_empty());
                assert!(!matches!(set.window.front(), Some(None)));
            }
        }
    }

    /// A result nobody takes does not hold the window open: later ones stay in the window.
    #[test]
    fn an_untaken_result_moves_aside() {
        let mut set = ReadySet::default();
        set.insert(1, result(1));
        for t in 2..100_000 {
            set.insert(t, result(t));
            assert_eq!(set.remove(t).map(|r| r.ticket), Some(t));
        }
        assert!(set.window.len() <= ReadySet::MIN_SPAN);
        assert_eq!(set.remove(1).map(|r| r.ticket), Some(1));
        assert!(set.is_empty());
    }
}
