//! Single-producer/single-consumer byte rings with variable-length records, zero-copy on both
//! sides, and a sleep/wake handshake for eventfd signalling.
//!
//! # Protocol
//!
//! The shared state of one ring is a [`amp_shm_layout::RingHeader`] — producer index `head`,
//! consumer index `tail`, consumer `sleeping` flag, each on its own cache line — and a
//! power-of-two data region. Indices are free-running byte counts; the position of index `i` is
//! `i & (capacity - 1)`.
//!
//! * The producer [`reserve`](Producer::reserve)s space, writes the payload in place, and
//!   [`commit`](Reservation::commit)s it (which writes the 8-byte record header). Committed records
//!   become visible to the consumer only when the producer [`publish`](Producer::publish)es: one
//!   Release store of `head` for the whole batch.
//! * A record never straddles the end of the region: when the next record does not fit before the
//!   end, the producer fills the rest with a padding record (tag [`amp_shm_layout::TAG_PAD`]) and
//!   starts the record at position 0.
//! * The consumer [`read`](Consumer::read)s records in place and frees their space with
//!   [`release`](Consumer::release): one Release store of `tail` for a batch (reads auto-release
//!   every `release_every` records).
//! * Each side caches the other side's index in process-local memory and reloads it only when the
//!   cached view says "full" (producer) or "empty" (consumer).
//!
//! # Untrusted peer
//!
//! Whatever bytes the other process writes, the consumer only reads inside its data region: it
//! checks that `head` is monotonic, 8-aligned and at most `capacity` ahead of its released tail,
//! and that every record header has a known tag, a length within `max_record`, lies before `head`
//! and does not cross the end of the region. The producer checks that `tail` is monotonic and
//! never ahead of what it published. A violation is reported as [`RingError::Corrupt`] and
//! poisons the endpoint (every later call reports it again); nothing is read or written out of
//! bounds and nothing panics.
//!
//! Payload bytes handed out by [`Consumer::read`] live in shared memory: a malicious producer
//! could change them while they are being read. Their *bounds* never depend on such bytes, so the
//! worst a misbehaving peer can do is feed garbage payloads, which the decoder above the ring
//! rejects.
//!
//! # Sleep/wake handshake (why no wakeup is lost)
//!
//! ```text
//!   consumer (prepare_sleep)                producer (publish)
//!   C1 sleeping.store(epoch)                P1 head.store(h, Release)
//!   C2 fence(SeqCst)                        P2 fence(SeqCst)
//!   C3 head.load(Acquire) — data? stay up   P3 sleeping.load() — nonzero? wake the consumer
//! ```
//! The two SeqCst fences are totally ordered. If C2 comes first, P3 sees the epoch written by C1
//! (or a later value) and the producer writes the eventfd. If P2 comes first, C3 sees `h` and the
//! consumer does not block. Either way a published record is never left behind a sleeping
//! consumer. Only the consumer (the waiter) clears its flag, after it wakes; the producer
//! remembers the epoch it last woke and does not write the eventfd twice for one sleep.

mod consumer;
#[cfg(all(test, loom))]
mod loom_tests;
mod producer;
#[cfg(all(test, not(loom)))]
mod tests;

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use amp_shm_layout::{check_ring, LayoutError, RecordHeader, RECORD_HEADER_SIZE};

pub use consumer::{sleep_barrier, Consumer, Record, SleepBarrier};
pub use producer::{Producer, ProducerStats, Reservation, Written};

use crate::sync::RingHeader;

/// Largest index accepted from shared memory (2^62 bytes: decades of traffic at 10 GB/s).
/// Anything above it is refused as corrupt, so index arithmetic can never overflow.
pub const MAX_INDEX: u64 = 1 << 62;

/// Default number of records a consumer reads before it stores its `tail` (see
/// `shared/MEASUREMENTS.md`: releasing every ~32 records keeps the producer fed).
pub const DEFAULT_RELEASE_EVERY: u32 = 32;

/// Why a ring operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// Not enough free space now. Nothing was written: the caller still owns its message and can
    /// retry once the consumer has released space (anything committed before was published, so
    /// the consumer can make progress).
    #[error("ring full: need {needed} bytes, {free} free")]
    Full {
        /// Bytes the record needs (including header, alignment, and padding to the region end).
        needed: u64,
        /// Bytes free when the ring was checked.
        free: u64,
    },
    /// The payload is larger than this ring's `max_record`; it can never be sent on this ring.
    #[error("record of {len} bytes exceeds this ring's max_record of {max} bytes")]
    TooLarge {
        /// Payload length requested.
        len: usize,
        /// The ring's limit.
        max: u32,
    },
    /// Tag 0 is reserved (it is what zeroed memory reads as); data tags are `1..=65535`.
    #[error("record tag 0 is reserved; use a tag in 1..=65535")]
    InvalidTag,
    /// The ring's capacity or record limit is invalid (a segment that failed validation).
    #[error("invalid ring geometry: {0}")]
    Layout(LayoutError),
    /// The peer wrote something the protocol does not allow. The endpoint is poisoned.
    #[error("ring corrupt: {0}")]
    Corrupt(Corruption),
}

/// What exactly was wrong in shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// The producer index went backwards.
    HeadBackwards {
        /// Previously seen head.
        seen: u64,
        /// Head read now.
        now: u64,
    },
    /// The producer index is not 8-aligned.
    HeadUnaligned {
        /// Head read.
        head: u64,
    },
    /// The producer index is more than `capacity` ahead of the released consumer index.
    HeadOverrun {
        /// Head read.
        head: u64,
        /// Consumer index released.
        tail: u64,
        /// Ring capacity.
        capacity: u64,
    },
    /// The consumer index went backwards.
    TailBackwards {
        /// Previously seen tail.
        seen: u64,
        /// Tail read now.
        now: u64,
    },
    /// The consumer index is ahead of what the producer published, or not 8-aligned.
    TailInvalid {
        /// Tail read.
        tail: u64,
        /// Head published.
        head: u64,
    },
    /// A record header carries a tag that is neither a data tag nor padding.
    BadTag {
        /// Index of the record.
        at: u64,
        /// Tag found.
        tag: u32,
    },
    /// A record's length exceeds `max_record`.
    RecordTooLong {
        /// Index of the record.
        at: u64,
        /// Length found.
        len: u32,
        /// The ring's limit.
        max: u32,
    },
    /// A record extends past the published head.
    RecordPastHead {
        /// Index of the record.
        at: u64,
        /// Bytes the record occupies.
        footprint: u64,
        /// Published bytes available from `at`.
        available: u64,
    },
    /// A data record crosses the end of the region.
    RecordStraddles {
        /// Index of the record.
        at: u64,
        /// Bytes the record occupies.
        footprint: u64,
    },
    /// A padding record does not end exactly at the end of the region.
    BadPadding {
        /// Index of the record.
        at: u64,
        /// Length found.
        len: u32,
        /// Length a padding record at this position must have.
        expected: u32,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::HeadBackwards { seen, now } => {
                write!(f, "head went backwards from {seen} to {now}")
            }
            Self::HeadUnaligned { head } => write!(f, "head {head} is not 8-aligned"),
            Self::HeadOverrun {
                head,
                tail,
                capacity,
            } => {
                write!(
                    f,
                    "head {head} is more than capacity {capacity} ahead of tail {tail}"
                )
            }
            Self::TailBackwards { seen, now } => {
                write!(f, "tail went backwards from {seen} to {now}")
            }
            Self::TailInvalid { tail, head } => {
                write!(
                    f,
                    "tail {tail} is unaligned or ahead of published head {head}"
                )
            }
            Self::BadTag { at, tag } => write!(f, "record at {at} has unknown tag {tag:#x}"),
            Self::RecordTooLong { at, len, max } => {
                write!(f, "record at {at} has length {len} above max_record {max}")
            }
            Self::RecordPastHead {
                at,
                footprint,
                available,
            } => write!(
                f,
                "record at {at} needs {footprint} bytes but only {available} are published"
            ),
            Self::RecordStraddles { at, footprint } => {
                write!(
                    f,
                    "record at {at} of {footprint} bytes crosses the end of the region"
                )
            }
            Self::BadPadding { at, len, expected } => {
                write!(
                    f,
                    "padding record at {at} has length {len}, expected {expected}"
                )
            }
        }
    }
}

/// Raw parts of one ring in memory some owner keeps mapped.
pub(crate) struct RingMem {
    /// The shared header.
    header: NonNull<RingHeader>,
    /// First byte of the data region (128-aligned in a segment, 8-aligned at least).
    data: NonNull<u8>,
    /// Region size, a power of two.
    capacity: u64,
    /// Largest payload accepted.
    max_record: u32,
    /// Keeps the memory behind `header` and `data` alive.
    _owner: Arc<dyn Send + Sync>,
}

impl fmt::Debug for RingMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingMem")
            .field("capacity", &self.capacity)
            .field("max_record", &self.max_record)
            .finish_non_exhaustive()
    }
}

// SAFETY: `RingMem` is a handle to memory kept alive by `_owner` (itself Send + Sync); the
// header is only accessed through atomics and the data region through the SPSC protocol, in
// which each byte range has one writer at a time. Moving the handle to another thread is fine.
unsafe impl Send for RingMem {}

impl RingMem {
    /// Wraps raw ring memory.
    ///
    /// # Safety
    /// `header` must point to a valid, initialised `RingHeader` and `data` to `capacity` bytes,
    /// 8-aligned, both valid for reads and writes for as long as `owner` lives. Nothing other than
    /// one `Producer` and one `Consumer` (possibly in another process) may write them.
    pub(crate) unsafe fn new(
        header: NonNull<RingHeader>,
        data: NonNull<u8>,
        capacity: u64,
        max_record: u64,
        owner: Arc<dyn Send + Sync>,
    ) -> Result<Self, LayoutError> {
        check_ring("ring", capacity, max_record)?;
        debug_assert_eq!(data.as_ptr() as usize % 8, 0, "ring data must be 8-aligned");
        // check_ring bounds max_record by capacity/2 <= 2^29, so it fits in u32.
        let max_record = u32::try_from(max_record).unwrap_or(u32::MAX);
        Ok(Self {
            header,
            data,
            capacity,
            max_record,
            _owner: owner,
        })
    }

    #[inline]
    fn header(&self) -> &RingHeader {
        // SAFETY: `new`'s contract: the header is valid for the lifetime of `_owner`, which `self`
        // holds; it is only accessed through shared references to atomics.
        unsafe { self.header.as_ref() }
    }

    #[inline]
    fn mask(&self) -> u64 {
        self.capacity - 1
    }

    /// Reads the record header at region offset `off` (8-aligned, `off + 8 <= capacity`) with
    /// one 8-byte load.
    #[inline]
    fn read_record_header(&self, off: u64) -> RecordHeader {
        debug_assert!(off % 8 == 0 && off + RECORD_HEADER_SIZE as u64 <= self.capacity);
        // SAFETY: `off` is 8-aligned and `off + 8 <= capacity` (callers mask an 8-aligned index),
        // and the region starts 8-aligned, so the 8 bytes are inside the region and aligned for
        // u64. A volatile read copies them once: the value may be garbage if the peer misbehaves,
        // but every bit pattern is a valid u64, and the header is validated before use.
        let word = unsafe {
            self.data
                .as_ptr()
                .add(off as usize)
                .cast::<u64>()
                .read_volatile()
        };
        RecordHeader::from_word(word)
    }

    /// The `len` payload bytes of the record whose header is at region offset `off`.
    ///
    /// # Safety
    /// `off + 8 + len <= capacity`, and the range must be published and not yet released (the
    /// producer does not write it while the returned borrow lives).
    #[inline(always)]
    unsafe fn payload(&self, off: u64, len: usize) -> &[u8] {
        debug_assert!(off + (RECORD_HEADER_SIZE + len) as u64 <= self.capacity);
        // SAFETY: the caller guarantees the range lies inside the data region (kept mapped by
        // `_owner` for as long as `self` lives) and that nobody writes it meanwhile.
        unsafe {
            std::slice::from_raw_parts(
                self.data.as_ptr().add(off as usize + RECORD_HEADER_SIZE),
                len,
            )
        }
    }

    /// Writes a record header at region offset `off` (8-aligned, `off + 8 <= capacity`).
    #[inline]
    fn write_record_header(&self, off: u64, header: RecordHeader) {
        debug_assert!(off % 8 == 0 && off + RECORD_HEADER_SIZE as u64 <= self.capacity);
        // SAFETY: in bounds and aligned as in `read_record_header`; the producer owns this range
        // (it is beyond the published head and within `capacity` of the released tail).
        unsafe { write_header_word(self.data, off, header) }
    }
}

/// Writes `header` at region offset `off` of the data region starting at `data`, as one 8-byte
/// store (a record costs the producer one store for its header, not one per field).
///
/// # Safety
/// `data` must be 8-aligned, and the 8 bytes at `off` (8-aligned) inside the region, in space this
/// producer owns: reserved, not yet published.
#[inline]
pub(crate) unsafe fn write_header_word(data: NonNull<u8>, off: u64, header: RecordHeader) {
    // SAFETY: the caller guarantees that the 8 bytes at `off` are in bounds, aligned for u64 and
    // owned by this producer.
    unsafe {
        data.as_ptr()
            .add(off as usize)
            .cast::<u64>()
            .write_volatile(header.to_word());
    }
}

/// Memory of an in-process ring (tests, loom models, benchmarks).
struct LocalRing {
    header: NonNull<RingHeader>,
    data: NonNull<u64>,
    words: usize,
}

// SAFETY: the allocation is plain memory shared through atomics and the SPSC protocol; see
// `RingMem`.
unsafe impl Send for LocalRing {}
// SAFETY: as above; `LocalRing` itself only frees the memory on drop.
unsafe impl Sync for LocalRing {}

impl Drop for LocalRing {
    fn drop(&mut self) {
        // SAFETY: both pointers came from `Box::into_raw` in `local` with these exact types and
        // lengths, and every `RingMem` borrowing them held an `Arc` to `self`, so none is alive.
        unsafe {
            drop(Box::from_raw(self.header.as_ptr()));
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.data.as_ptr(),
                self.words,
            )));
        }
    }
}

/// Creates an in-process ring of `capacity` bytes (a power of two, 256 B ..= 1 GiB) accepting
/// records of up to `max_record` bytes (at most `capacity / 2 - 8`).
///
/// ```
/// let (mut tx, mut rx) = amp_ipc::ring::local(4096, 1024)?;
/// tx.push(7, b"hello")?;
/// tx.publish();
/// let rec = rx.read()?.expect("a record");
/// assert_eq!((rec.tag(), rec.data()), (7, &b"hello"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// A [`LayoutError`] when the capacity or record limit is out of range.
pub fn local(capacity: u64, max_record: u64) -> Result<(Producer, Consumer), LayoutError> {
    check_ring("ring", capacity, max_record)?;
    let words = usize::try_from(capacity / 8).map_err(|_| LayoutError::BadCapacity {
        ring: "ring",
        found: capacity,
    })?;
    let header = NonNull::from(Box::leak(Box::new(RingHeader::default())));
    let data = NonNull::from(Box::leak(vec![0u64; words].into_boxed_slice())).cast::<u64>();
    let owner: Arc<dyn Send + Sync> = Arc::new(LocalRing {
        header,
        data,
        words,
    });
    // SAFETY: fresh, zeroed, 8-aligned allocations of the right sizes, kept alive by `owner`;
    // only the producer and consumer built here access them.
    let (p, c) = unsafe {
        (
            RingMem::new(
                header,
                data.cast(),
                capacity,
                max_record,
                Arc::clone(&owner),
            )?,
            RingMem::new(header, data.cast(), capacity, max_record, owner)?,
        )
    };
    // Fresh zeroed indices always validate; the error arm cannot be taken.
    let producer = Producer::new(p).map_err(|_| LayoutError::NotInitialised)?;
    let consumer = Consumer::new(c).map_err(|_| LayoutError::NotInitialised)?;
    Ok((producer, consumer))
}
