//! Chunks: many small work items carried as one task.
//!
//! A task costs amp a fixed amount of work per trip (routing, the in-flight table, two ring
//! records each way), about half a microsecond of `ampd`'s CPU. For work items that take less
//! than that, a client sends them in **chunks** — as `multiprocessing.Pool`'s `chunksize` or
//! Celery's `chunks` do: one submission carries `n` items, `ampd` routes, retries and times it
//! out as one task, the worker runtime calls the kind's handler once per item, and the result
//! carries one outcome per item, in order.
//!
//! What is per chunk and what is per item:
//! - routing, the run timeout, the deadline, retries after a worker died, poison detection and
//!   the dead-letter queue are per chunk: if the worker dies, the whole chunk runs again
//!   (at-least-once, like every task), and the submitter gets one result, once;
//! - each item's outcome (`Ok` bytes, or an error with its `retryable` flag) comes back on its
//!   own; items that failed are **not** retried by `ampd` — the submitter sees which ones and
//!   may submit them again;
//! - an item cannot loop back (the runtime answers that item with a failure saying so). A
//!   worker written against the raw rings that answers a whole chunk with `Loopback` sends it
//!   round again still flagged a chunk, the new payload being the chunk's (the worker runtime
//!   checks its framing then and fails a malformed one); subtasks are always plain tasks;
//! - an idempotency key joins only a submission of the same kind and shape (a chunk key does
//!   not join a plain task, nor the other way round).
//!
//! Wire formats (little-endian, no padding):
//!
//! | payload of a chunk task ([`SUBMIT_CHUNK`], [`TASK_CHUNK`]) |
//! |---|
//! | `count: u32`, then `count` × (`len: u32`, `len` bytes) |
//!
//! | body of the `Ok` result of a chunk task |
//! |---|
//! | `count: u32`, then `count` × (`status: u8` ([`ITEM_OK`], [`ITEM_FAILED`], [`ITEM_RETRYABLE`]), `len: u32`, `len` bytes: the result or the message) |
//!
//! Both are parsed with every length bounded by the bytes present ([`WireError`] otherwise):
//! `ampd` checks a chunk's framing at intake and refuses a malformed one.
//!
//! ```
//! use amp_ipc::chunk::{self, ItemOutcome};
//!
//! // What the client writes ...
//! let items: [&[u8]; 3] = [b"a", b"bb", b""];
//! let mut payload = vec![0; chunk::encoded_len(&items)];
//! chunk::encode(&items, &mut payload);
//! // ... what the worker runtime reads and answers ...
//! let mut results = chunk::Results::new(Vec::new());
//! for item in chunk::items(&payload)? {
//!     results.push_ok(&item.repeat(2));
//! }
//! let body = results.finish();
//! // ... and what the client gets back.
//! let got: Vec<_> = chunk::outcomes(&body)?.collect();
//! assert_eq!(got, [ItemOutcome::Ok(b"aa"), ItemOutcome::Ok(b"bbbb"), ItemOutcome::Ok(b"")]);
//! # Ok::<(), amp_ipc::wire::WireError>(())
//! ```

use crate::wire::WireError;

/// `SubmitHeader::flags` bit: the payload is a chunk of items.
pub const SUBMIT_CHUNK: u32 = 2;
/// `TaskHeader::flags` bit: the payload is a chunk of items; the worker runtime runs the
/// handler once per item and answers with one outcome per item.
pub const TASK_CHUNK: u32 = 1;

/// Item status: succeeded; the bytes are its result.
pub const ITEM_OK: u8 = 0;
/// Item status: failed, retrying will not help; the bytes are a UTF-8 message.
pub const ITEM_FAILED: u8 = 1;
/// Item status: failed, worth retrying; the bytes are a UTF-8 message.
pub const ITEM_RETRYABLE: u8 = 2;

/// Bytes of a chunk payload holding `items`.
#[must_use]
#[inline]
pub fn encoded_len<T: AsRef<[u8]>>(items: &[T]) -> usize {
    4 + items.iter().map(|i| 4 + i.as_ref().len()).sum::<usize>()
}

/// Writes the chunk payload of `items` into `out`, which must be [`encoded_len`] bytes long.
///
/// # Panics
/// If `out` has another length, or there are more than `u32::MAX` items or an item of more
/// than `u32::MAX` bytes (neither fits any ring).
#[inline]
pub fn encode<T: AsRef<[u8]>>(items: &[T], out: &mut [u8]) {
    assert_eq!(out.len(), encoded_len(items), "chunk buffer length");
    let count = u32::try_from(items.len()).expect("at most u32::MAX items in a chunk");
    out[..4].copy_from_slice(&count.to_le_bytes());
    let mut at = 4;
    for item in items {
        let item = item.as_ref();
        let len = u32::try_from(item.len()).expect("an item of at most u32::MAX bytes");
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
        out[at + 4..at + 4 + item.len()].copy_from_slice(item);
        at += 4 + item.len();
    }
}

/// Reads the `u32` at `at`, if 4 bytes are there.
#[inline]
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Checks a whole chunk payload: the count, every item's length within the bytes present, and
/// no bytes left over. Returns the number of items.
///
/// # Errors
/// [`WireError`] naming the first thing wrong.
#[inline]
pub fn validate(payload: &[u8]) -> Result<u32, WireError> {
    Ok(items(payload)?.left)
}

/// The items of a chunk payload, checked as they are read: [`items`] checks the whole framing
/// first, so iterating never fails.
#[derive(Debug, Clone)]
pub struct Items<'a> {
    rest: &'a [u8],
    left: u32,
}

/// Parses a chunk payload (see the [module docs](self)).
///
/// # Errors
/// [`WireError::Short`] without a count; [`WireError::BadLength`] when an item's length runs
/// past the end or the count disagrees with the items present (too many, or bytes left over).
#[inline]
pub fn items(payload: &[u8]) -> Result<Items<'_>, WireError> {
    let count = u32_at(payload, 0).ok_or(WireError::Short {
        what: "chunk",
        len: payload.len(),
        need: 4,
    })?;
    let rest = &payload[4..];
    // One pass over the lengths before any item is handed out, so a malformed chunk is refused
    // as a whole (nothing runs on half of it).
    let mut at = 0usize;
    for _ in 0..count {
        let len = u32_at(rest, at).ok_or_else(|| WireError::BadLength {
            what: "chunk item count",
            len: u64::from(count),
            available: rest.len(),
        })?;
        let end = (at + 4)
            .checked_add(len as usize)
            .filter(|&e| e <= rest.len());
        at = end.ok_or_else(|| WireError::BadLength {
            what: "chunk item",
            len: u64::from(len),
            available: rest.len() - (at + 4),
        })?;
    }
    if at != rest.len() {
        return Err(WireError::BadLength {
            what: "chunk (bytes after the last item)",
            len: (rest.len() - at) as u64,
            available: 0,
        });
    }
    Ok(Items { rest, left: count })
}

impl Items<'_> {
    /// Items not yet returned.
    #[must_use]
    pub const fn remaining(&self) -> u32 {
        self.left
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        // `items` checked every length; the `?` only guards against a logic error.
        let len = u32_at(self.rest, 0)? as usize;
        let item = self.rest.get(4..4 + len)?;
        self.rest = &self.rest[4 + len..];
        self.left -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

/// One item's outcome in a chunk's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemOutcome<'a> {
    /// The item's result.
    Ok(&'a [u8]),
    /// The item failed.
    Err {
        /// Whether the worker said a retry may succeed (amp does not retry items itself).
        retryable: bool,
        /// The worker's message (UTF-8 from the amp runtime; raw bytes from another worker).
        message: &'a [u8],
    },
}

impl ItemOutcome<'_> {
    /// Whether the item succeeded.
    #[must_use]
    pub const fn is_ok(&self) -> bool {
        matches!(self, Self::Ok(_))
    }
}

/// Builds the result body of a chunk, one outcome per item, into a reusable buffer.
#[derive(Debug)]
pub struct Results {
    buf: Vec<u8>,
    count: u32,
}

impl Results {
    /// Starts a result body in `buf` (cleared; its capacity is reused).
    #[must_use]
    #[inline]
    pub fn new(mut buf: Vec<u8>) -> Self {
        buf.clear();
        buf.extend_from_slice(&0u32.to_le_bytes());
        Self { buf, count: 0 }
    }

    #[inline]
    fn push(&mut self, status: u8, bytes: &[u8]) {
        // A result body larger than 4 GiB cannot be sent (rings are at most 1 GiB), so the
        // truncated length never reaches a reader: the completion is refused as too large.
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.buf.push(status);
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(bytes);
        self.count += 1;
    }

    /// Appends a successful item's result.
    #[inline]
    pub fn push_ok(&mut self, result: &[u8]) {
        self.push(ITEM_OK, result);
    }

    /// Appends an item whose result `write` appends to the buffer (after the item's status
    /// and length, which are filled in afterwards); when `write` fails, the item is the
    /// failure `(retryable, message)` instead and what it wrote is dropped. `write` must only
    /// append (the worker runtime hands it an append-only [`crate::worker::Reply`]).
    #[inline]
    pub(crate) fn push_with(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), (bool, String)>,
    ) {
        let at = self.buf.len();
        self.buf.push(ITEM_OK);
        self.buf.extend_from_slice(&[0; 4]);
        match write(&mut self.buf) {
            Ok(()) => {
                let len = u32::try_from(self.buf.len() - at - 5).unwrap_or(u32::MAX);
                self.buf[at + 1..at + 5].copy_from_slice(&len.to_le_bytes());
                self.count += 1;
            }
            Err((retryable, message)) => {
                self.buf.truncate(at);
                self.push_err(retryable, message.as_bytes());
            }
        }
    }

    /// Appends a failed item's message.
    #[inline]
    pub fn push_err(&mut self, retryable: bool, message: &[u8]) {
        self.push(
            if retryable {
                ITEM_RETRYABLE
            } else {
                ITEM_FAILED
            },
            message,
        );
    }

    /// Items so far.
    #[must_use]
    pub const fn len(&self) -> u32 {
        self.count
    }

    /// Whether no item was pushed.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The finished body.
    #[must_use]
    #[inline]
    pub fn finish(mut self) -> Vec<u8> {
        self.buf[..4].copy_from_slice(&self.count.to_le_bytes());
        self.buf
    }
}

/// The per-item outcomes of a chunk's `Ok` result body, checked as a whole before the first is
/// returned.
#[derive(Debug, Clone)]
pub struct Outcomes<'a> {
    rest: &'a [u8],
    left: u32,
}

/// Parses a chunk's result body (see the [module docs](self)).
///
/// # Errors
/// [`WireError`] for a short body, an item past the end, an unknown item status or bytes left
/// over.
#[inline]
pub fn outcomes(body: &[u8]) -> Result<Outcomes<'_>, WireError> {
    let count = u32_at(body, 0).ok_or(WireError::Short {
        what: "chunk result",
        len: body.len(),
        need: 4,
    })?;
    let rest = &body[4..];
    let mut at = 0usize;
    for _ in 0..count {
        let (Some(&status), Some(len)) = (rest.get(at), u32_at(rest, at + 1)) else {
            return Err(WireError::BadLength {
                what: "chunk result item count",
                len: u64::from(count),
                available: rest.len(),
            });
        };
        if status > ITEM_RETRYABLE {
            return Err(WireError::BadValue {
                what: "chunk item status",
                value: u64::from(status),
            });
        }
        let end = (at + 5)
            .checked_add(len as usize)
            .filter(|&e| e <= rest.len());
        at = end.ok_or_else(|| WireError::BadLength {
            what: "chunk result item",
            len: u64::from(len),
            available: rest.len() - (at + 5),
        })?;
    }
    if at != rest.len() {
        return Err(WireError::BadLength {
            what: "chunk result (bytes after the last item)",
            len: (rest.len() - at) as u64,
            available: 0,
        });
    }
    Ok(Outcomes { rest, left: count })
}

impl Outcomes<'_> {
    /// Outcomes not yet returned.
    #[must_use]
    pub const fn remaining(&self) -> u32 {
        self.left
    }
}

impl<'a> Iterator for Outcomes<'a> {
    type Item = ItemOutcome<'a>;

    #[inline]
    fn next(&mut self) -> Option<ItemOutcome<'a>> {
        if self.left == 0 {
            return None;
        }
        // `outcomes` checked the framing; the `?`s only guard against a logic error.
        let status = *self.rest.first()?;
        let len = u32_at(self.rest, 1)? as usize;
        let bytes = self.rest.get(5..5 + len)?;
        self.rest = &self.rest[5 + len..];
        self.left -= 1;
        Some(match status {
            ITEM_OK => ItemOutcome::Ok(bytes),
            s => ItemOutcome::Err {
                retryable: s == ITEM_RETRYABLE,
                message: bytes,
            },
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(items: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![0; encoded_len(items)];
        encode(items, &mut out);
        out
    }

    #[test]
    fn empty_chunk() {
        let p = encoded(&[]);
        assert_eq!(p, 0u32.to_le_bytes());
        assert_eq!(validate(&p), Ok(0));
        assert_eq!(items(&p).unwrap().count(), 0);
    }

    #[test]
    fn malformed_chunks_are_refused_with_what_is_wrong() {
        assert_eq!(
            validate(&[1, 0]),
            Err(WireError::Short {
                what: "chunk",
                len: 2,
                need: 4
            })
        );
        // Two items announced, one present.
        let mut p = encoded(&[b"ab".to_vec()]);
        p[0] = 2;
        assert_eq!(
            validate(&p),
            Err(WireError::BadLength {
                what: "chunk item count",
                len: 2,
                available: 6
            })
        );
        // An item longer than the bytes left.
        let mut p = encoded(&[b"ab".to_vec()]);
        p[4] = 3;
        assert_eq!(
            validate(&p),
            Err(WireError::BadLength {
                what: "chunk item",
                len: 3,
                available: 2
            })
        );
        // A length near u32::MAX does not overflow.
        let mut p = encoded(&[b"ab".to_vec()]);
        p[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(validate(&p), Err(WireError::BadLength { .. })));
        // Bytes after the last item.
        let mut p = encoded(&[b"ab".to_vec()]);
        p.push(9);
        assert_eq!(
            validate(&p),
            Err(WireError::BadLength {
                what: "chunk (bytes after the last item)",
                len: 1,
                available: 0
            })
        );
    }

    #[test]
    fn malformed_results_are_refused() {
        let mut r = Results::new(Vec::new());
        r.push_ok(b"x");
        let good = r.finish();
        let mut bad = good.clone();
        bad[4] = 7;
        assert_eq!(
            outcomes(&bad).map(|o| o.count()),
            Err(WireError::BadValue {
                what: "chunk item status",
                value: 7
            })
        );
        let mut bad = good.clone();
        bad[0] = 2;
        assert!(matches!(outcomes(&bad), Err(WireError::BadLength { .. })));
        let mut bad = good;
        bad.pop();
        assert!(matches!(outcomes(&bad), Err(WireError::BadLength { .. })));
    }

    /// `push_with`: a written item gets its length filled in; a failed one drops what it wrote
    /// and carries the failure instead.
    #[test]
    fn push_with_fills_in_the_length_or_the_failure() {
        let mut r = Results::new(Vec::new());
        r.push_with(|out| {
            out.extend_from_slice(b"abc");
            Ok(())
        });
        r.push_with(|out| {
            out.extend_from_slice(b"half-written");
            Err((true, "busy".to_owned()))
        });
        r.push_with(|_| Ok(()));
        let body = r.finish();
        let got: Vec<_> = outcomes(&body).unwrap().collect();
        assert_eq!(
            got,
            [
                ItemOutcome::Ok(b"abc"),
                ItemOutcome::Err {
                    retryable: true,
                    message: b"busy"
                },
                ItemOutcome::Ok(b""),
            ]
        );
    }

    proptest! {
        /// Whatever the items, what is encoded is what is read back, in order.
        #[test]
        fn items_round_trip(items in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..50)) {
            let p = encoded(&items);
            prop_assert_eq!(validate(&p), Ok(items.len() as u32));
            let back: Vec<Vec<u8>> = self::items(&p).unwrap().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(back, items);
        }

        /// Outcomes round-trip with their status.
        #[test]
        fn outcomes_round_trip(rs in prop::collection::vec((0u8..3, prop::collection::vec(any::<u8>(), 0..40)), 0..50)) {
            let mut r = Results::new(vec![1, 2, 3]);
            for (s, b) in &rs {
                match s {
                    0 => r.push_ok(b),
                    s => r.push_err(*s == 2, b),
                }
            }
            prop_assert_eq!(r.len() as usize, rs.len());
            let body = r.finish();
            let back: Vec<(u8, Vec<u8>)> = outcomes(&body).unwrap().map(|o| match o {
                ItemOutcome::Ok(b) => (0, b.to_vec()),
                ItemOutcome::Err { retryable, message } => (1 + u8::from(retryable), message.to_vec()),
            }).collect();
            prop_assert_eq!(back, rs);
        }

        /// Arbitrary bytes: parsing never panics, and what it accepts iterates exactly `count`
        /// items within the input.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(it) = items(&bytes) {
                let n = it.remaining();
                prop_assert_eq!(it.count(), n as usize);
            }
            if let Ok(it) = outcomes(&bytes) {
                let n = it.remaining();
                prop_assert_eq!(it.count(), n as usize);
            }
        }
    }
}
