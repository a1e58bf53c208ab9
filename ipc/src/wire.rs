//! The record formats carried by the rings (above the ring's own 8-byte record header).
//!
//! Fixed little-endian headers, decoded with explicit bounds checks: the supervisor decodes
//! completions written by an untrusted worker and refuses anything malformed with
//! [`WireError`].
//!
//! | tag | record | body |
//! |-----|--------|------|
//! | [`TAG_TASK`] (1) | task, `ampd` → worker | [`TaskHeader`] (32 B) + payload |
//! | [`TAG_COMPLETION`] (2) | completion, worker → `ampd` | [`CompletionHeader`] (32 B) + body |
//! | [`TAG_SUBTASK`] (3) | subtask a worker emits while handling a task | [`TaskHeader`] + payload |

use std::fmt;

/// Ring tag of a task record.
pub const TAG_TASK: u16 = 1;
/// Ring tag of a completion record.
pub const TAG_COMPLETION: u16 = 2;
/// Ring tag of a subtask record (a worker fans work out from inside a handler).
pub const TAG_SUBTASK: u16 = 3;

/// Ring tag of a submission record (client → ampd).
pub const TAG_SUBMIT: u16 = 4;
/// Ring tag of a result record (ampd → client).
pub const TAG_RESULT: u16 = 5;

/// Size of the fixed header of a submission record.
pub const SUBMIT_HEADER_SIZE: usize = 32;
/// Size of the fixed header of a result record.
pub const RESULT_HEADER_SIZE: usize = 32;
/// `SubmitHeader::flags` bit: the body starts with a `u16` length and an idempotency key.
pub const SUBMIT_HAS_KEY: u32 = 1;
/// Every `SubmitHeader::flags` bit this protocol version defines; ampd refuses a submission
/// with any other bit set (a newer client's meaning it would otherwise ignore).
pub const SUBMIT_KNOWN_FLAGS: u32 = SUBMIT_HAS_KEY | crate::chunk::SUBMIT_CHUNK;

/// A decoded submission: header, optional idempotency key, payload.
pub type Submission<'a> = (SubmitHeader, Option<&'a [u8]>, &'a [u8]);

/// Fixed header of a submission.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | `ticket` (client-chosen, echoed in the result) |
/// | 8 | 4 | `kind` (kind id from the attach answer) |
/// | 12 | 4 | `class` (priority class index) |
/// | 16 | 4 | `timeout_ms` (deadline relative to arrival; 0 = none) |
/// | 20 | 4 | `flags` ([`SUBMIT_HAS_KEY`], [`crate::chunk::SUBMIT_CHUNK`]) |
/// | 24 | 8 | `parent` (task id; 0 = none) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubmitHeader {
    /// Client-chosen correlation number.
    pub ticket: u64,
    /// Kind id.
    pub kind: u32,
    /// Priority class index.
    pub class: u32,
    /// Deadline in ms after ampd reads the submission; 0 = none.
    pub timeout_ms: u32,
    /// Flags.
    pub flags: u32,
    /// Parent task id; 0 = none.
    pub parent: u64,
}

impl SubmitHeader {
    /// Writes the header into `out[..32]`.
    ///
    /// # Panics
    /// If `out` is shorter than [`SUBMIT_HEADER_SIZE`].
    pub fn write(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.ticket.to_le_bytes());
        out[8..12].copy_from_slice(&self.kind.to_le_bytes());
        out[12..16].copy_from_slice(&self.class.to_le_bytes());
        out[16..20].copy_from_slice(&self.timeout_ms.to_le_bytes());
        out[20..24].copy_from_slice(&self.flags.to_le_bytes());
        out[24..32].copy_from_slice(&self.parent.to_le_bytes());
    }

    /// Splits a submission into header, optional idempotency key, and payload.
    ///
    /// # Errors
    /// [`WireError`] for a short record or a key length past the end.
    pub fn read(record: &[u8]) -> Result<Submission<'_>, WireError> {
        if record.len() < SUBMIT_HEADER_SIZE {
            let (len, need) = (record.len(), SUBMIT_HEADER_SIZE);
            return Err(WireError::Short {
                what: "submission",
                len,
                need,
            });
        }
        let h = Self {
            ticket: u64_at(record, 0),
            kind: u32_at(record, 8),
            class: u32_at(record, 12),
            timeout_ms: u32_at(record, 16),
            flags: u32_at(record, 20),
            parent: u64_at(record, 24),
        };
        let body = &record[SUBMIT_HEADER_SIZE..];
        if h.flags & SUBMIT_HAS_KEY == 0 {
            return Ok((h, None, body));
        }
        if body.len() < 2 {
            return Err(WireError::Short {
                what: "submission key",
                len: body.len(),
                need: 2,
            });
        }
        let n = usize::from(u16::from_le_bytes([body[0], body[1]]));
        let rest = &body[2..];
        if n > rest.len() {
            return Err(WireError::BadLength {
                what: "idempotency key",
                len: n as u64,
                available: rest.len(),
            });
        }
        let (key, payload) = rest.split_at(n);
        Ok((h, Some(key), payload))
    }
}

/// How a task ended, as ampd reports it to its submitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ResultStatus {
    /// Done; the body is the worker's result.
    Ok = 0,
    /// The worker failed it (not retryable, or retries exhausted); the body is the message.
    Failed = 1,
    /// Its deadline passed; the body says where.
    DeadlineExceeded = 2,
    /// Moved to the dead-letter queue; the body is the reason.
    DeadLettered = 3,
    /// Refused at intake (unknown kind, queue full, intake paused); the body is the reason.
    Rejected = 4,
    /// A feedback loop hit its limit; the body is the last result.
    LoopLimit = 5,
}

impl ResultStatus {
    /// Decodes a status byte.
    ///
    /// # Errors
    /// [`WireError::BadValue`] for an unknown value.
    pub fn from_u8(v: u8) -> Result<Self, WireError> {
        Ok(match v {
            0 => Self::Ok,
            1 => Self::Failed,
            2 => Self::DeadlineExceeded,
            3 => Self::DeadLettered,
            4 => Self::Rejected,
            5 => Self::LoopLimit,
            _ => {
                return Err(WireError::BadValue {
                    what: "result status",
                    value: u64::from(v),
                })
            }
        })
    }
}

/// Fixed header of a result.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | `ticket` |
/// | 8 | 8 | `task_id` (0 if rejected before an id was given) |
/// | 16 | 1 | `status` ([`ResultStatus`]) |
/// | 17 | 3 | reserved (0) |
/// | 20 | 4 | `attempts` |
/// | 24 | 8 | `latency_ns` (submission to result, measured by ampd) |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultHeader {
    /// The submission's ticket.
    pub ticket: u64,
    /// The task id ampd gave it.
    pub task_id: u64,
    /// Outcome.
    pub status: ResultStatus,
    /// Attempts made.
    pub attempts: u32,
    /// Time from intake to result inside ampd.
    pub latency_ns: u64,
}

impl ResultHeader {
    /// Writes the header into `out[..32]`.
    ///
    /// # Panics
    /// If `out` is shorter than [`RESULT_HEADER_SIZE`].
    pub fn write(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.ticket.to_le_bytes());
        out[8..16].copy_from_slice(&self.task_id.to_le_bytes());
        out[16] = self.status as u8;
        out[17..20].fill(0);
        out[20..24].copy_from_slice(&self.attempts.to_le_bytes());
        out[24..32].copy_from_slice(&self.latency_ns.to_le_bytes());
    }

    /// Splits a result into header and body.
    ///
    /// # Errors
    /// [`WireError`] for a short record or unknown status.
    pub fn read(record: &[u8]) -> Result<(Self, &[u8]), WireError> {
        if record.len() < RESULT_HEADER_SIZE {
            let (len, need) = (record.len(), RESULT_HEADER_SIZE);
            return Err(WireError::Short {
                what: "result",
                len,
                need,
            });
        }
        let h = Self {
            ticket: u64_at(record, 0),
            task_id: u64_at(record, 8),
            status: ResultStatus::from_u8(record[16])?,
            attempts: u32_at(record, 20),
            latency_ns: u64_at(record, 24),
        };
        Ok((h, &record[RESULT_HEADER_SIZE..]))
    }
}

/// Size of the fixed header of a task or subtask record.
pub const TASK_HEADER_SIZE: usize = 32;
/// Size of the fixed header of a completion record.
pub const COMPLETION_HEADER_SIZE: usize = 32;

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than its fixed header.
    #[error("{what} record of {len} bytes is shorter than its {need}-byte header")]
    Short {
        /// Record kind.
        what: &'static str,
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// An enumerated field holds a value no version defines.
    #[error("{what} has unknown value {value}")]
    BadValue {
        /// Which field.
        what: &'static str,
        /// Value found.
        value: u64,
    },
    /// A length field points past the end of the record.
    #[error("{what} length {len} exceeds the {available} bytes left in the record")]
    BadLength {
        /// Which field.
        what: &'static str,
        /// Length found.
        len: u64,
        /// Bytes available.
        available: usize,
    },
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Fixed header of a task record.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | `id` |
/// | 8 | 4 | `attempt` |
/// | 12 | 4 | `kind` (interned kind id) |
/// | 16 | 4 | `class` (priority class index) |
/// | 20 | 4 | `flags` ([`crate::chunk::TASK_CHUNK`]; other bits reserved, 0) |
/// | 24 | 8 | `deadline_ns` (`CLOCK_MONOTONIC`; 0 = none) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskHeader {
    /// Task id, unique per `ampd` run.
    pub id: u64,
    /// Attempt number, starting at 1.
    pub attempt: u32,
    /// Interned kind id (the worker learns the names in its handshake).
    pub kind: u32,
    /// Priority class index.
    pub class: u32,
    /// Flags: [`crate::chunk::TASK_CHUNK`] (other bits reserved, 0).
    pub flags: u32,
    /// Deadline on `CLOCK_MONOTONIC` in ns; 0 = none.
    pub deadline_ns: u64,
}

impl TaskHeader {
    /// Writes the header into the first [`TASK_HEADER_SIZE`] bytes of `out`.
    ///
    /// # Panics
    /// If `out` is shorter than [`TASK_HEADER_SIZE`] (a caller bug: reserve header + payload).
    pub fn write(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..12].copy_from_slice(&self.attempt.to_le_bytes());
        out[12..16].copy_from_slice(&self.kind.to_le_bytes());
        out[16..20].copy_from_slice(&self.class.to_le_bytes());
        out[20..24].copy_from_slice(&self.flags.to_le_bytes());
        out[24..32].copy_from_slice(&self.deadline_ns.to_le_bytes());
    }

    /// Splits a task record into header and payload.
    ///
    /// # Errors
    /// [`WireError::Short`] if the record is shorter than the header.
    pub fn read(record: &[u8]) -> Result<(Self, &[u8]), WireError> {
        if record.len() < TASK_HEADER_SIZE {
            return Err(WireError::Short {
                what: "task",
                len: record.len(),
                need: TASK_HEADER_SIZE,
            });
        }
        let h = Self {
            id: u64_at(record, 0),
            attempt: u32_at(record, 8),
            kind: u32_at(record, 12),
            class: u32_at(record, 16),
            flags: u32_at(record, 20),
            deadline_ns: u64_at(record, 24),
        };
        Ok((h, &record[TASK_HEADER_SIZE..]))
    }
}

/// How a task ended, as the worker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Success; the body is the result.
    Ok = 0,
    /// Failure that retrying will not fix; the body is a UTF-8 message.
    Failed = 1,
    /// Failure worth retrying; the body is a UTF-8 message.
    Retryable = 2,
    /// Send the task back for refinement; the body is `reason_len: u32` + reason + new payload.
    Loopback = 3,
}

impl Status {
    fn from_u8(v: u8) -> Result<Self, WireError> {
        Ok(match v {
            0 => Self::Ok,
            1 => Self::Failed,
            2 => Self::Retryable,
            3 => Self::Loopback,
            _ => {
                return Err(WireError::BadValue {
                    what: "completion status",
                    value: u64::from(v),
                })
            }
        })
    }
}

/// Fixed header of a completion record.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | `id` |
/// | 8 | 4 | `attempt` |
/// | 12 | 1 | `status` ([`Status`]) |
/// | 13 | 3 | reserved (0) |
/// | 16 | 8 | `busy_ns`: time the handler ran |
/// | 24 | 8 | `score`: `f64` bits, a quality score the worker reports (NaN = none) |
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompletionHeader {
    /// Id of the task this completes.
    pub id: u64,
    /// Attempt this completes (a late completion of an older attempt is dropped).
    pub attempt: u32,
    /// Outcome kind.
    pub status: Status,
    /// Nanoseconds the handler ran.
    pub busy_ns: u64,
    /// Worker-reported quality score (used by loopback thresholds); NaN = none.
    pub score: f64,
}

impl CompletionHeader {
    /// Writes the header into the first [`COMPLETION_HEADER_SIZE`] bytes of `out`.
    ///
    /// # Panics
    /// If `out` is shorter than [`COMPLETION_HEADER_SIZE`].
    pub fn write(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..12].copy_from_slice(&self.attempt.to_le_bytes());
        out[12] = self.status as u8;
        out[13..16].fill(0);
        out[16..24].copy_from_slice(&self.busy_ns.to_le_bytes());
        out[24..32].copy_from_slice(&self.score.to_bits().to_le_bytes());
    }

    /// Splits a completion record into header and body.
    ///
    /// # Errors
    /// [`WireError`] for a short record or an unknown status.
    pub fn read(record: &[u8]) -> Result<(Self, &[u8]), WireError> {
        if record.len() < COMPLETION_HEADER_SIZE {
            let (len, need) = (record.len(), COMPLETION_HEADER_SIZE);
            return Err(WireError::Short {
                what: "completion",
                len,
                need,
            });
        }
        let h = Self {
            id: u64_at(record, 0),
            attempt: u32_at(record, 8),
            status: Status::from_u8(record[12])?,
            busy_ns: u64_at(record, 16),
            score: f64::from_bits(u64_at(record, 24)),
        };
        Ok((h, &record[COMPLETION_HEADER_SIZE..]))
    }
}

/// Splits a loopback body into `(reason, payload)`.
///
/// # Errors
/// [`WireError`] if the reason length is out of bounds.
pub fn split_loopback(body: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    if body.len() < 4 {
        return Err(WireError::Short {
            what: "loopback",
            len: body.len(),
            need: 4,
        });
    }
    let n = u32_at(body, 0) as usize;
    let rest = &body[4..];
    if n > rest.len() {
        return Err(WireError::BadLength {
            what: "loopback reason",
            len: n as u64,
            available: rest.len(),
        });
    }
    Ok(rest.split_at(n))
}

/// What a handler returns.
#[derive(Clone, PartialEq)]
pub enum Outcome {
    /// Success with a result.
    Ok(Vec<u8>),
    /// Failure.
    Err {
        /// Whether retrying may help.
        retryable: bool,
        /// What went wrong.
        message: String,
    },
    /// Send the task back for another round with a refined payload.
    Loopback {
        /// The payload of the next round.
        payload: Vec<u8>,
        /// Why (e.g. "accuracy below threshold").
        reason: String,
    },
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok(b) => write!(f, "Ok({} bytes)", b.len()),
            Self::Err { retryable, message } => {
                write!(f, "Err {{ retryable: {retryable}, message: {message:?} }}")
            }
            Self::Loopback { payload, reason } => {
                write!(
                    f,
                    "Loopback {{ {} bytes, reason: {reason:?} }}",
                    payload.len()
                )
            }
        }
    }
}

impl Outcome {
    /// The wire status of this outcome.
    #[must_use]
    pub fn status(&self) -> Status {
        match self {
            Self::Ok(_) => Status::Ok,
            Self::Err {
                retryable: false, ..
            } => Status::Failed,
            Self::Err {
                retryable: true, ..
            } => Status::Retryable,
            Self::Loopback { .. } => Status::Loopback,
        }
    }

    /// Bytes the body takes on the wire.
    #[must_use]
    pub fn body_len(&self) -> usize {
        match self {
            Self::Ok(b) => b.len(),
            Self::Err { message, .. } => message.len(),
            Self::Loopback { payload, reason } => 4 + reason.len() + payload.len(),
        }
    }

    /// Writes the body into `out` (exactly [`body_len`](Self::body_len) bytes).
    ///
    /// # Panics
    /// If `out` is shorter than `body_len()`.
    pub fn write_body(&self, out: &mut [u8]) {
        match self {
            Self::Ok(b) => out[..b.len()].copy_from_slice(b),
            Self::Err { message, .. } => out[..message.len()].copy_from_slice(message.as_bytes()),
            Self::Loopback { payload, reason } => {
                let n = reason.len();
                out[0..4].copy_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
                out[4..4 + n].copy_from_slice(reason.as_bytes());
                out[4 + n..4 + n + payload.len()].copy_from_slice(payload);
            }
        }
    }

    /// Decodes an outcome from a completion's status and body (copying).
    ///
    /// # Errors
    /// [`WireError`] for a malformed loopback body.
    pub fn decode(status: Status, body: &[u8]) -> Result<Self, WireError> {
        Self::decode_into(status, body, Vec::new())
    }

    /// [`Outcome::decode`], copying an `Ok` body into `buf` (cleared first) instead of a new
    /// allocation: a reader decoding many outcomes passes buffers it recycles.
    ///
    /// # Errors
    /// [`WireError`] for a malformed loopback body.
    pub fn decode_into(status: Status, body: &[u8], mut buf: Vec<u8>) -> Result<Self, WireError> {
        Ok(match status {
            Status::Ok => {
                buf.clear();
                buf.extend_from_slice(body);
                Self::Ok(buf)
            }
            Status::Failed | Status::Retryable => Self::Err {
                retryable: status == Status::Retryable,
                message: String::from_utf8_lossy(body).into_owned(),
            },
            Status::Loopback => {
                let (reason, payload) = split_loopback(body)?;
                Self::Loopback {
                    payload: payload.to_vec(),
                    reason: String::from_utf8_lossy(reason).into_owned(),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_roundtrip_and_short() {
        let h = TaskHeader {
            id: 7,
            attempt: 2,
            kind: 3,
            class: 1,
            flags: 0,
            deadline_ns: 99,
        };
        let mut buf = vec![0u8; TASK_HEADER_SIZE + 3];
        h.write(&mut buf);
        buf[TASK_HEADER_SIZE..].copy_from_slice(b"abc");
        assert_eq!(TaskHeader::read(&buf).unwrap(), (h, &b"abc"[..]));
        assert!(matches!(
            TaskHeader::read(&buf[..31]),
            Err(WireError::Short { .. })
        ));
    }

    #[test]
    fn completion_roundtrip_and_bad_status() {
        for o in [
            Outcome::Ok(b"res".to_vec()),
            Outcome::Err {
                retryable: true,
                message: "later".into(),
            },
            Outcome::Err {
                retryable: false,
                message: "never".into(),
            },
            Outcome::Loopback {
                payload: b"p2".to_vec(),
                reason: "low".into(),
            },
        ] {
            let h = CompletionHeader {
                id: 1,
                attempt: 1,
                status: o.status(),
                busy_ns: 5,
                score: 0.5,
            };
            let mut buf = vec![0u8; COMPLETION_HEADER_SIZE + o.body_len()];
            h.write(&mut buf);
            o.write_body(&mut buf[COMPLETION_HEADER_SIZE..]);
            let (h2, body) = CompletionHeader::read(&buf).unwrap();
            assert_eq!(h2, h);
            assert_eq!(Outcome::decode(h2.status, body).unwrap(), o);
        }
        let mut buf = vec![0u8; COMPLETION_HEADER_SIZE];
        buf[12] = 9;
        assert!(matches!(
            CompletionHeader::read(&buf),
            Err(WireError::BadValue { value: 9, .. })
        ));
        assert!(matches!(
            split_loopback(&[255, 0, 0, 0, 1]),
            Err(WireError::BadLength { .. })
        ));
    }
}
