//! The byte layout of an amp shared-memory segment.
//!
//! This crate is the **one place** that defines bytes shared between `ampd` and an attached process
//! (a worker or a client). It performs no syscalls and contains no `unsafe`: it only declares
//! `#[repr(C)]` types, constants, and the pure arithmetic that places regions inside a segment.
//! `docs/shm-layout.md` describes the same layout in prose for implementers in other languages.
//!
//! # Segment
//!
//! One segment per attached process. All offsets are from the start of the mapping; all integers
//! are native-endian (the two sides always run on the same machine).
//!
//! | region                     | offset                               | size                         |
//! |----------------------------|--------------------------------------|------------------------------|
//! | [`SegmentHeader`]          | 0                                    | 256                          |
//! | [`ControlBlock`]           | 256                                  | 256                          |
//! | tasks [`RingHeader`]       | 512                                  | 384                          |
//! | completions [`RingHeader`] | 896                                  | 384                          |
//! | tasks data                 | 1280                                 | `tasks.capacity`             |
//! | completions data           | 1280 + `tasks.capacity`              | `completions.capacity`       |
//!
//! [`Layout::new`] computes these offsets; a reader recomputes them from the capacities it finds in
//! the header and refuses the segment when anything differs ([`Layout::validate_header`]).
//!
//! # Rings
//!
//! Each ring is single-producer/single-consumer over a power-of-two byte region. Indices are
//! free-running `u64` byte counts (they never wrap in practice: 2^64 bytes at 100 GB/s is 5 years);
//! the position in the region is `index & (capacity - 1)`. A record is a [`RecordHeader`] followed by
//! `len` payload bytes, padded to [`RECORD_ALIGN`]. A record never straddles the end of the region:
//! when it would, the producer writes a padding record ([`TAG_PAD`]) that fills the rest of the
//! region, and the data record starts at position 0.
#![no_std]
#![forbid(unsafe_code)]

use core::mem::{align_of, offset_of, size_of};
use core::sync::atomic::{AtomicU32, AtomicU64};

/// The magic number in the top 32 bits of [`SegmentHeader::magic_version`]: ASCII `"AMP1"`.
pub const MAGIC: u32 = u32::from_be_bytes(*b"AMP1");

/// The layout version in the low 32 bits of [`SegmentHeader::magic_version`].
///
/// Bump it on any change to the bytes described in this crate, or to the protocol over them.
pub const LAYOUT_VERSION: u32 = 1;

/// The word [`SegmentHeader::magic_version`] holds once a segment is fully initialised.
pub const MAGIC_VERSION: u64 = ((MAGIC as u64) << 32) | LAYOUT_VERSION as u64;

/// Size of the cache-line padding unit. 128 bytes, not 64: adjacent-line prefetch on x86 and the
/// 128-byte lines of some ARM cores pull pairs of 64-byte lines together (the reason
/// crossbeam's `CachePadded` uses 128 on x86_64 and aarch64).
pub const CACHE_LINE: usize = 128;

/// Alignment of every record in a ring, and of every record header.
pub const RECORD_ALIGN: usize = 8;

/// Smallest ring capacity accepted (bytes).
pub const MIN_RING_CAPACITY: u64 = 256;

/// Largest ring capacity accepted (bytes): 1 GiB.
pub const MAX_RING_CAPACITY: u64 = 1 << 30;

/// Record tag of a padding record: the consumer skips it and the rest of the region with it.
pub const TAG_PAD: u32 = u32::MAX;

/// Largest tag a data record may carry. Tags `1..=MAX_DATA_TAG` are data records whose meaning is
/// up to the protocol above the ring; `0` and anything in `MAX_DATA_TAG+1..TAG_PAD` are invalid.
pub const MAX_DATA_TAG: u32 = 0xFFFF;

/// Header of one ring record. 8 bytes, 8-aligned, followed by `len` payload bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Payload length in bytes (not counting this header or padding). For a [`TAG_PAD`] record:
    /// the number of bytes skipped after this header (to the end of the region).
    pub len: u32,
    /// [`TAG_PAD`], or a data tag in `1..=`[`MAX_DATA_TAG`].
    pub tag: u32,
}

impl RecordHeader {
    /// The header's 8 bytes read as one native-endian word: what a single aligned 8-byte store
    /// writes (rings write and read a header with one access, not one per field).
    #[must_use]
    pub const fn to_word(self) -> u64 {
        let l = self.len.to_ne_bytes();
        let t = self.tag.to_ne_bytes();
        u64::from_ne_bytes([l[0], l[1], l[2], l[3], t[0], t[1], t[2], t[3]])
    }

    /// The header whose bytes are those of `word` (inverse of [`to_word`](Self::to_word)).
    #[must_use]
    pub const fn from_word(word: u64) -> Self {
        let b = word.to_ne_bytes();
        Self {
            len: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            tag: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// Size of [`RecordHeader`] in bytes.
pub const RECORD_HEADER_SIZE: usize = size_of::<RecordHeader>();

/// Space a record with `len` payload bytes occupies in a ring: header plus payload, rounded up
/// to [`RECORD_ALIGN`].
#[must_use]
pub const fn record_footprint(len: u32) -> u64 {
    let raw = RECORD_HEADER_SIZE as u64 + len as u64;
    (raw + (RECORD_ALIGN as u64 - 1)) & !(RECORD_ALIGN as u64 - 1)
}

/// An atomic value alone on its own [`CACHE_LINE`]-sized, -aligned line.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct CacheLine<T> {
    /// The value.
    pub value: T,
}

/// Shared header of one SPSC ring. Three cache lines, so that the producer's writes, the
/// consumer's writes, and the sleeping flag never share a line.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RingHeader {
    /// Producer index: total bytes the producer has published. Written only by the producer
    /// (Release, after the record bytes); read by the consumer (Acquire).
    pub head: CacheLine<AtomicU64>,
    /// Consumer index: total bytes the consumer has released. Written only by the consumer
    /// (Release, after it finished reading the records); read by the producer (Acquire).
    pub tail: CacheLine<AtomicU64>,
    /// The consumer's sleeping flag: `0` while the consumer is awake; otherwise the (odd, nonzero)
    /// sleep epoch the consumer set just before blocking on its eventfd. Written only by the
    /// consumer (Relaxed, followed by a SeqCst fence, then a re-check of `head`); read by the
    /// producer (Relaxed, after its Release store of `head` and a SeqCst fence). The two fences
    /// make the Dekker handshake: see `docs/shm-layout.md`.
    pub sleeping: CacheLine<AtomicU32>,
}

/// Where a ring lives inside the segment.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RingDescriptor {
    /// Offset of this ring's [`RingHeader`].
    pub header_offset: u64,
    /// Offset of this ring's data region.
    pub data_offset: u64,
    /// Size of the data region in bytes: a power of two in
    /// [`MIN_RING_CAPACITY`]`..=`[`MAX_RING_CAPACITY`].
    pub capacity: u64,
    /// Largest payload a record may carry (bytes); at most
    /// [`max_record_limit`].
    pub max_record: u64,
}

/// Largest `max_record` a ring of `capacity` bytes accepts: a record plus a worst-case padding
/// record must fit in the region, so a record may use at most half of it.
#[must_use]
pub const fn max_record_limit(capacity: u64) -> u64 {
    capacity / 2 - RECORD_HEADER_SIZE as u64
}

/// The segment header, at offset 0.
///
/// The creator fills every other field first, then stores [`MAGIC_VERSION`] into `magic_version`
/// with Release. A reader loads `magic_version` with Acquire (pairing with that Release) and only
/// then reads the other fields; a half-initialised segment therefore reads as "not ready".
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct SegmentHeader {
    /// [`MAGIC_VERSION`] once initialised; `0` before. Written last, with Release.
    pub magic_version: AtomicU64,
    /// `size_of::<SegmentHeader>()` as the creator saw it.
    pub header_size: u32,
    /// PID of the process that created the segment (`ampd`), for the sweep of stale segments.
    pub creator_pid: u32,
    /// Total bytes of the segment; a reader refuses a mapping shorter than this.
    pub total_size: u64,
    /// Incremented each time the creator hands this segment to a new process (restart epoch).
    pub generation: u64,
    /// Offset of the [`ControlBlock`].
    pub control_offset: u64,
    /// Size of the [`ControlBlock`].
    pub control_size: u64,
    /// The tasks ring (`ampd` → attached process).
    pub tasks: RingDescriptor,
    /// The completions ring (attached process → `ampd`).
    pub completions: RingDescriptor,
    /// Reserved, zero.
    pub reserved: [u64; 14],
}

/// Lifecycle state a worker publishes in [`ControlBlock::state`].
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Segment created, no process attached yet.
    Created = 0,
    /// A process mapped the segment.
    Attached = 1,
    /// The process is ready for tasks.
    Ready = 2,
    /// The process stopped taking new tasks and finishes what it has.
    Draining = 3,
    /// The process is exiting; it will publish nothing more.
    Exiting = 4,
}

impl PeerState {
    /// Decodes a raw state word; `None` for a value no version of the layout defines.
    #[must_use]
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Created),
            1 => Some(Self::Attached),
            2 => Some(Self::Ready),
            3 => Some(Self::Draining),
            4 => Some(Self::Exiting),
            _ => None,
        }
    }
}

/// Per-segment control block: what the attached process publishes about itself.
///
/// Every field is written only by the attached process (except where noted) and read by `ampd`,
/// which treats each value as untrusted.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct ControlBlock {
    /// [`PeerState`] as a `u32`.
    pub state: AtomicU32,
    /// PID of the attached process.
    pub pid: AtomicU32,
    /// Last heartbeat: `CLOCK_MONOTONIC` in nanoseconds. Relaxed: a heartbeat orders nothing.
    pub heartbeat_ns: AtomicU64,
    /// Tasks completed successfully.
    pub tasks_ok: AtomicU64,
    /// Tasks that ended in an error.
    pub tasks_failed: AtomicU64,
    /// Eventfd wakeups the attached process sent (it is the completions producer).
    pub wakeups_sent: AtomicU64,
    /// Nanoseconds the attached process spent inside task handlers.
    pub busy_ns: AtomicU64,
    /// Records the attached process published on the completions ring.
    pub records_sent: AtomicU64,
    /// Eventfd wakeups `ampd` sent to this process (written by `ampd`, the tasks producer).
    pub supervisor_wakeups_sent: AtomicU64,
    /// Records `ampd` published on the tasks ring (written by `ampd`).
    pub supervisor_records_sent: AtomicU64,
    /// Task records the attached process has taken from the tasks ring (to run them). With
    /// `tasks_ok + tasks_failed` it tells `ampd`, after the process died, how many tasks were
    /// being run rather than still waiting in the ring. 0 also for a process that predates the
    /// field (`ampd` then treats the count as unknown).
    pub tasks_taken: AtomicU64,
    /// `id + 1` of the task the attached process took last and has not completed yet; 0: none.
    /// A hint for poison detection: when a process dies running exactly one task, only that
    /// task is blamed for the death.
    pub running_task: AtomicU64,
    /// Kinds whose queue in `ampd` is at its `queue_limit` (written by `ampd` into an attached
    /// client's segment): kind id `k` below [`QUEUE_FULL_KINDS`] is bit `k % 64` of word
    /// `k / 64`. The client refuses a submission of a flagged kind at once instead of sending
    /// it to be rejected. A hint, refreshed on every pass of `ampd`'s loop: a submission that
    /// races past it is answered `Rejected` as before. Relaxed on both sides:
    /// it orders no other memory. Zero (nothing full) where `ampd` predates the field.
    pub queue_full: [AtomicU64; 4],
    /// Reserved, zero.
    pub reserved: [u64; 16],
}

/// Kinds [`ControlBlock::queue_full`] has a bit for (ids from 0).
pub const QUEUE_FULL_KINDS: usize = 4 * 64;

/// Offset of the [`ControlBlock`].
pub const CONTROL_OFFSET: u64 = size_of::<SegmentHeader>() as u64;
/// Offset of the tasks [`RingHeader`].
pub const TASKS_HEADER_OFFSET: u64 = CONTROL_OFFSET + size_of::<ControlBlock>() as u64;
/// Offset of the completions [`RingHeader`].
pub const COMPLETIONS_HEADER_OFFSET: u64 = TASKS_HEADER_OFFSET + size_of::<RingHeader>() as u64;
/// Offset of the first data region (the tasks ring's).
pub const DATA_OFFSET: u64 = COMPLETIONS_HEADER_OFFSET + size_of::<RingHeader>() as u64;

// Compile-time checks: the documented sizes and offsets are the real ones.
const _: () = {
    assert!(size_of::<RecordHeader>() == 8);
    assert!(align_of::<RecordHeader>() == 4);
    assert!(offset_of!(RecordHeader, len) == 0);
    assert!(offset_of!(RecordHeader, tag) == 4);
    assert!(size_of::<CacheLine<AtomicU64>>() == CACHE_LINE);
    assert!(size_of::<RingHeader>() == 3 * CACHE_LINE);
    assert!(offset_of!(RingHeader, head) == 0);
    assert!(offset_of!(RingHeader, tail) == 128);
    assert!(offset_of!(RingHeader, sleeping) == 256);
    assert!(size_of::<RingDescriptor>() == 32);
    assert!(size_of::<SegmentHeader>() == 256);
    assert!(offset_of!(SegmentHeader, magic_version) == 0);
    assert!(offset_of!(SegmentHeader, header_size) == 8);
    assert!(offset_of!(SegmentHeader, creator_pid) == 12);
    assert!(offset_of!(SegmentHeader, total_size) == 16);
    assert!(offset_of!(SegmentHeader, generation) == 24);
    assert!(offset_of!(SegmentHeader, control_offset) == 32);
    assert!(offset_of!(SegmentHeader, control_size) == 40);
    assert!(offset_of!(SegmentHeader, tasks) == 48);
    assert!(offset_of!(SegmentHeader, completions) == 80);
    assert!(offset_of!(SegmentHeader, reserved) == 112);
    assert!(size_of::<ControlBlock>() == 256);
    assert!(offset_of!(ControlBlock, state) == 0);
    assert!(offset_of!(ControlBlock, pid) == 4);
    assert!(offset_of!(ControlBlock, heartbeat_ns) == 8);
    assert!(offset_of!(ControlBlock, tasks_ok) == 16);
    assert!(offset_of!(ControlBlock, tasks_failed) == 24);
    assert!(offset_of!(ControlBlock, wakeups_sent) == 32);
    assert!(offset_of!(ControlBlock, busy_ns) == 40);
    assert!(offset_of!(ControlBlock, records_sent) == 48);
    assert!(offset_of!(ControlBlock, supervisor_wakeups_sent) == 56);
    assert!(offset_of!(ControlBlock, supervisor_records_sent) == 64);
    assert!(offset_of!(ControlBlock, tasks_taken) == 72);
    assert!(offset_of!(ControlBlock, running_task) == 80);
    assert!(offset_of!(ControlBlock, queue_full) == 88);
    assert!(offset_of!(ControlBlock, reserved) == 120);
    assert!(CONTROL_OFFSET == 256);
    assert!(TASKS_HEADER_OFFSET == 512);
    assert!(COMPLETIONS_HEADER_OFFSET == 896);
    assert!(DATA_OFFSET == 1280);
    assert!(DATA_OFFSET % CACHE_LINE as u64 == 0);
};

/// Why a header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// `magic_version` is 0: the creator has not finished initialising the segment.
    NotInitialised,
    /// The top 32 bits are not [`MAGIC`]: this is not an amp segment.
    BadMagic {
        /// What was found.
        found: u32,
    },
    /// The layout version differs from this build's [`LAYOUT_VERSION`].
    VersionMismatch {
        /// Version in the segment.
        found: u32,
        /// Version this build understands.
        expected: u32,
    },
    /// A ring capacity is not a power of two in the accepted range.
    BadCapacity {
        /// Which ring.
        ring: &'static str,
        /// What was found.
        found: u64,
    },
    /// A ring's `max_record` exceeds [`max_record_limit`] or is zero.
    BadMaxRecord {
        /// Which ring.
        ring: &'static str,
        /// What was found.
        found: u64,
    },
    /// A size or offset in the header differs from the layout its capacities imply.
    Mismatch {
        /// Which field.
        field: &'static str,
        /// What the header says.
        found: u64,
        /// What the layout requires.
        expected: u64,
    },
    /// The mapping is shorter than the segment's `total_size`.
    MappingTooSmall {
        /// Bytes mapped.
        mapped: u64,
        /// Bytes the segment needs.
        needed: u64,
    },
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotInitialised => write!(f, "segment not initialised (magic word is 0)"),
            Self::BadMagic { found } => {
                write!(
                    f,
                    "not an amp segment: magic {found:#010x}, expected {MAGIC:#010x}"
                )
            }
            Self::VersionMismatch { found, expected } => write!(
                f,
                "segment layout version {found} but this build speaks version {expected}: \
                 rebuild the worker and ampd from the same amp release"
            ),
            Self::BadCapacity { ring, found } => write!(
                f,
                "{ring} ring capacity {found} is not a power of two in \
                 {MIN_RING_CAPACITY}..={MAX_RING_CAPACITY}"
            ),
            Self::BadMaxRecord { ring, found } => {
                write!(
                    f,
                    "{ring} ring max_record {found} is zero or above capacity/2 - 8"
                )
            }
            Self::Mismatch {
                field,
                found,
                expected,
            } => {
                write!(
                    f,
                    "segment header field {field} is {found}, layout requires {expected}"
                )
            }
            Self::MappingTooSmall { mapped, needed } => {
                write!(
                    f,
                    "mapping is {mapped} bytes but the segment needs {needed}"
                )
            }
        }
    }
}

impl core::error::Error for LayoutError {}

/// Checks a ring capacity and record limit.
///
/// # Errors
/// [`LayoutError::BadCapacity`] or [`LayoutError::BadMaxRecord`].
pub const fn check_ring(
    ring: &'static str,
    capacity: u64,
    max_record: u64,
) -> Result<(), LayoutError> {
    if !capacity.is_power_of_two() || capacity < MIN_RING_CAPACITY || capacity > MAX_RING_CAPACITY {
        return Err(LayoutError::BadCapacity {
            ring,
            found: capacity,
        });
    }
    if max_record == 0 || max_record > max_record_limit(capacity) {
        return Err(LayoutError::BadMaxRecord {
            ring,
            found: max_record,
        });
    }
    Ok(())
}

/// The computed placement of every region of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The tasks ring.
    pub tasks: RingDescriptor,
    /// The completions ring.
    pub completions: RingDescriptor,
    /// Total bytes of the segment.
    pub total_size: u64,
}

impl Layout {
    /// Places a segment with the given ring capacities and record limits.
    ///
    /// ```
    /// let l = amp_shm_layout::Layout::new(4096, 1024, 4096, 1024).unwrap();
    /// assert_eq!(l.tasks.data_offset, amp_shm_layout::DATA_OFFSET);
    /// assert_eq!(l.total_size, amp_shm_layout::DATA_OFFSET + 8192);
    /// ```
    ///
    /// # Errors
    /// When a capacity or record limit is out of range (see [`check_ring`]).
    pub const fn new(
        tasks_capacity: u64,
        tasks_max_record: u64,
        completions_capacity: u64,
        completions_max_record: u64,
    ) -> Result<Self, LayoutError> {
        if let Err(e) = check_ring("tasks", tasks_capacity, tasks_max_record) {
            return Err(e);
        }
        if let Err(e) = check_ring("completions", completions_capacity, completions_max_record) {
            return Err(e);
        }
        let tasks = RingDescriptor {
            header_offset: TASKS_HEADER_OFFSET,
            data_offset: DATA_OFFSET,
            capacity: tasks_capacity,
            max_record: tasks_max_record,
        };
        let completions = RingDescriptor {
            header_offset: COMPLETIONS_HEADER_OFFSET,
            data_offset: DATA_OFFSET + tasks_capacity,
            capacity: completions_capacity,
            max_record: completions_max_record,
        };
        Ok(Self {
            tasks,
            completions,
            total_size: DATA_OFFSET + tasks_capacity + completions_capacity,
        })
    }

    /// Validates a header read from a mapping of `mapped` bytes, whose `magic_version` word the
    /// caller loaded (with Acquire) as `magic_version`, and returns the layout it describes.
    ///
    /// Every field is checked against the layout recomputed from the header's own capacities, so
    /// the returned offsets are safe to use for a mapping of `mapped` bytes.
    ///
    /// # Errors
    /// The first [`LayoutError`] found.
    pub fn validate_header(
        magic_version: u64,
        header: &SegmentHeader,
        mapped: u64,
    ) -> Result<Self, LayoutError> {
        if magic_version == 0 {
            return Err(LayoutError::NotInitialised);
        }
        let magic = (magic_version >> 32) as u32;
        if magic != MAGIC {
            return Err(LayoutError::BadMagic { found: magic });
        }
        let version = magic_version as u32;
        if version != LAYOUT_VERSION {
            return Err(LayoutError::VersionMismatch {
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        let expect = |field, found: u64, expected: u64| {
            if found == expected {
                Ok(())
            } else {
                Err(LayoutError::Mismatch {
                    field,
                    found,
                    expected,
                })
            }
        };
        expect(
            "header_size",
            u64::from(header.header_size),
            size_of::<SegmentHeader>() as u64,
        )?;
        expect("control_offset", header.control_offset, CONTROL_OFFSET)?;
        expect(
            "control_size",
            header.control_size,
            size_of::<ControlBlock>() as u64,
        )?;
        let layout = Self::new(
            header.tasks.capacity,
            header.tasks.max_record,
            header.completions.capacity,
            header.completions.max_record,
        )?;
        expect(
            "tasks.header_offset",
            header.tasks.header_offset,
            layout.tasks.header_offset,
        )?;
        expect(
            "tasks.data_offset",
            header.tasks.data_offset,
            layout.tasks.data_offset,
        )?;
        expect(
            "completions.header_offset",
            header.completions.header_offset,
            layout.completions.header_offset,
        )?;
        expect(
            "completions.data_offset",
            header.completions.data_offset,
            layout.completions.data_offset,
        )?;
        expect("total_size", header.total_size, layout.total_size)?;
        if mapped < layout.total_size {
            return Err(LayoutError::MappingTooSmall {
                mapped,
                needed: layout.total_size,
            });
        }
        Ok(layout)
    }

    /// Fills every field of `header` except `magic_version`, which the creator stores last.
    pub fn fill_header(&self, header: &mut SegmentHeader, creator_pid: u32, generation: u64) {
        header.header_size = size_of::<SegmentHeader>() as u32;
        header.creator_pid = creator_pid;
        header.total_size = self.total_size;
        header.generation = generation;
        header.control_offset = CONTROL_OFFSET;
        header.control_size = size_of::<ControlBlock>() as u64;
        header.tasks = self.tasks;
        header.completions = self.completions;
        header.reserved = [0; 14];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(l: &Layout) -> SegmentHeader {
        let mut h = SegmentHeader::default();
        l.fill_header(&mut h, 42, 1);
        h
    }

    #[test]
    fn roundtrip_validates() {
        let l = Layout::new(1 << 16, 1024, 1 << 12, 512).unwrap();
        let h = filled(&l);
        assert_eq!(
            Layout::validate_header(MAGIC_VERSION, &h, l.total_size),
            Ok(l)
        );
    }

    #[test]
    fn refuses_bad_words() {
        let l = Layout::new(1 << 16, 1024, 1 << 12, 512).unwrap();
        let h = filled(&l);
        assert_eq!(
            Layout::validate_header(0, &h, l.total_size),
            Err(LayoutError::NotInitialised)
        );
        assert!(matches!(
            Layout::validate_header(MAGIC_VERSION + 1, &h, l.total_size),
            Err(LayoutError::VersionMismatch {
                found,
                expected: LAYOUT_VERSION
            }) if found == LAYOUT_VERSION + 1
        ));
        assert!(matches!(
            Layout::validate_header(1 << 40, &h, l.total_size),
            Err(LayoutError::BadMagic { .. })
        ));
        assert!(matches!(
            Layout::validate_header(MAGIC_VERSION, &h, l.total_size - 1),
            Err(LayoutError::MappingTooSmall { .. })
        ));
    }

    #[test]
    fn refuses_each_mutated_field() {
        let l = Layout::new(1 << 16, 1024, 1 << 12, 512).unwrap();
        let mutations: [fn(&mut SegmentHeader); 12] = [
            |h| h.header_size += 8,
            |h| h.control_offset += 8,
            |h| h.control_size = 0,
            |h| h.total_size += 1,
            |h| h.tasks.capacity = 3000,
            |h| h.tasks.max_record = 1 << 20,
            |h| h.tasks.header_offset = 0,
            |h| h.tasks.data_offset = u64::MAX,
            |h| h.completions.capacity = 1 << 40,
            |h| h.completions.max_record = 0,
            |h| h.completions.header_offset += 128,
            |h| h.completions.data_offset -= 8,
        ];
        for (i, m) in mutations.iter().enumerate() {
            let mut h = filled(&l);
            m(&mut h);
            assert!(
                Layout::validate_header(MAGIC_VERSION, &h, u64::MAX).is_err(),
                "mutation {i} accepted"
            );
        }
    }

    #[test]
    fn record_header_word_has_the_struct_bytes() {
        let h = RecordHeader {
            len: 0x0102_0304,
            tag: 0x0A0B_0C0D,
        };
        // The bytes of the word are the bytes of the repr(C) struct: len first, then tag, each
        // in native byte order.
        let mut expected = [0u8; 8];
        expected[..4].copy_from_slice(&h.len.to_ne_bytes());
        expected[4..].copy_from_slice(&h.tag.to_ne_bytes());
        assert_eq!(h.to_word().to_ne_bytes(), expected);
        assert_eq!(RecordHeader::from_word(h.to_word()), h);
        assert_eq!(RecordHeader::from_word(u64::MAX).len, u32::MAX);
    }

    #[test]
    fn footprint_is_aligned() {
        assert_eq!(record_footprint(0), 8);
        assert_eq!(record_footprint(1), 16);
        assert_eq!(record_footprint(8), 16);
        assert_eq!(record_footprint(9), 24);
        assert_eq!(record_footprint(u32::MAX), 8 + (u32::MAX as u64 + 1));
    }
}
