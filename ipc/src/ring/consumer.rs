//! The consumer side of a ring.

use amp_shm_layout::{record_footprint, MAX_DATA_TAG, RECORD_HEADER_SIZE, TAG_PAD};

use super::{Corruption, RingError, RingMem, DEFAULT_RELEASE_EVERY};
use crate::sync::{fence, Ordering};

/// The reading end of a ring. One per ring; not `Clone`.
#[derive(Debug)]
pub struct Consumer {
    mem: RingMem,
    /// Next index to read.
    tail: u64,
    /// Last value stored to the shared `tail`.
    released: u64,
    /// Last value of the shared `head` seen (validated).
    cached_head: u64,
    /// Records read since the last release.
    unreleased: u32,
    /// Release automatically after this many records.
    release_every: u32,
    /// Last sleep epoch published (odd; the flag holds 0 while awake).
    epoch: u32,
    /// Set once the producer wrote something invalid.
    poisoned: Option<Corruption>,
    /// Records read so far.
    records: u64,
}

/// One record, read in place from the ring. Its bytes stay valid until the consumer releases
/// them, which the borrow on the consumer guarantees cannot happen while the `Record` lives.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    tag: u16,
    data: &'a [u8],
}

impl<'a> Record<'a> {
    /// The record's data tag (1..=65535).
    #[must_use]
    #[inline]
    pub fn tag(&self) -> u16 {
        self.tag
    }

    /// The payload, in shared memory.
    #[must_use]
    #[inline]
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
}

/// What [`Consumer::step`] found at an index.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Padding to the end of the region, `footprint` bytes.
    Padding { footprint: u64 },
    /// A record: payload at `off + 8`, `len` bytes.
    Record {
        off: u64,
        len: usize,
        tag: u16,
        footprint: u64,
    },
}

impl Consumer {
    /// Attaches a consumer to ring memory, picking up the indices found there.
    pub(crate) fn new(mem: RingMem) -> Result<Self, RingError> {
        let h = mem.header();
        // Relaxed: attach-time snapshot, validated below; `refresh_head` re-reads with Acquire
        // before any record is read.
        let tail = h.tail.value.load(Ordering::Relaxed);
        let head = h.head.value.load(Ordering::Relaxed);
        if tail % 8 != 0
            || head % 8 != 0
            || tail > head
            || head - tail > mem.capacity
            || head > super::MAX_INDEX
        {
            return Err(RingError::Corrupt(Corruption::TailInvalid { tail, head }));
        }
        Ok(Self {
            mem,
            tail,
            released: tail,
            cached_head: tail,
            unreleased: 0,
            release_every: DEFAULT_RELEASE_EVERY,
            epoch: 1,
            poisoned: None,
            records: 0,
        })
    }

    /// Sets how many records [`read`](Self::read) hands out before it releases their space
    /// (at least 1).
    pub fn set_release_every(&mut self, n: u32) {
        self.release_every = n.max(1);
    }

    /// Records read so far.
    #[must_use]
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Ring capacity in bytes.
    #[must_use]
    pub fn capacity(&self) -> u64 {
        self.mem.capacity
    }

    fn poison(&mut self, c: Corruption) -> RingError {
        self.poisoned = Some(c);
        RingError::Corrupt(c)
    }

    /// Reloads the producer's index and validates it.
    #[inline]
    fn refresh_head(&mut self) -> Result<(), RingError> {
        // SYNC POINT: Acquire pairs with the producer's Release store of `head` in
        // `Producer::publish_pending`: the bytes of every record before `now` are visible.
        let now = self.mem.header().head.value.load(Ordering::Acquire);
        if now < self.cached_head {
            return Err(self.poison(Corruption::HeadBackwards {
                seen: self.cached_head,
                now,
            }));
        }
        if now % 8 != 0 {
            return Err(self.poison(Corruption::HeadUnaligned { head: now }));
        }
        if now > super::MAX_INDEX {
            let (tail, capacity) = (self.released, self.mem.capacity);
            return Err(self.poison(Corruption::HeadOverrun {
                head: now,
                tail,
                capacity,
            }));
        }
        if now - self.released > self.mem.capacity {
            let (tail, capacity) = (self.released, self.mem.capacity);
            return Err(self.poison(Corruption::HeadOverrun {
                head: now,
                tail,
                capacity,
            }));
        }
        self.cached_head = now;
        Ok(())
    }

    /// Whether a record (or padding) is published and unread. Reloads `head` only when the cached
    /// view is empty.
    ///
    /// # Errors
    /// [`RingError::Corrupt`] if the producer wrote an invalid index.
    #[inline]
    pub fn has_data(&mut self) -> Result<bool, RingError> {
        if let Some(c) = self.poisoned {
            return Err(RingError::Corrupt(c));
        }
        if self.tail == self.cached_head {
            self.refresh_head()?;
        }
        Ok(self.tail != self.cached_head)
    }

    /// Reads the next record in place, or `Ok(None)` when the ring is empty.
    ///
    /// Every `release_every` records, the space of the records read before is released to the
    /// producer (records handed out earlier can no longer be borrowed by then).
    ///
    /// # Errors
    /// [`RingError::Corrupt`] when the producer wrote an invalid index or record header; the
    /// consumer is poisoned and returns the same error from then on.
    #[inline]
    pub fn read(&mut self) -> Result<Option<Record<'_>>, RingError> {
        if let Some(c) = self.poisoned {
            return Err(RingError::Corrupt(c));
        }
        if self.unreleased >= self.release_every {
            self.release();
        }
        loop {
            if self.tail == self.cached_head {
                self.refresh_head()?;
                if self.tail == self.cached_head {
                    return Ok(None);
                }
            }
            match self.step(self.tail, self.cached_head) {
                Ok(Step::Padding { footprint }) => self.tail += footprint,
                Ok(Step::Record {
                    off,
                    len,
                    tag,
                    footprint,
                }) => {
                    self.tail += footprint;
                    self.unreleased += 1;
                    self.records += 1;
                    // SAFETY: `step` checked `off + 8 + len <= capacity` and that the record lies
                    // before `cached_head`: it is published and not yet released, so the producer
                    // does not write it, and the borrow of `self` ends before `release` can hand
                    // the space back.
                    let data = unsafe { self.mem.payload(off, len) };
                    return Ok(Some(Record { tag, data }));
                }
                Err(c) => return Err(self.poison(c)),
            }
        }
    }

    /// Reads up to `max` records in place, calling `f` on each, and releases their space before
    /// returning; returns how many records `f` saw. `f` returns `false` to stop after the record
    /// it was given. Reloads `head` once, only when nothing published is left unread.
    ///
    /// The records are checked exactly as [`read`](Self::read) checks them, but the loop keeps the
    /// indices in registers and releases once, so a batch costs less per record than `read`
    /// (the consumer of a ring moving small records spends most of its time here).
    ///
    /// # Errors
    /// [`RingError::Corrupt`] as for [`read`](Self::read); the records before the corrupt one
    /// were handed to `f` and are released.
    ///
    /// # Panics
    /// Only if `f` panics. The records of this batch are then neither marked read nor released
    /// (the consumer's indices are written back only at the end), so a consumer that catches the
    /// panic and goes on reads the whole batch again: at-least-once, like a crash.
    ///
    /// ```
    /// let (mut tx, mut rx) = amp_ipc::ring::local(4096, 256)?;
    /// for i in 0..3u8 {
    ///     tx.push(1, &[i; 4])?;
    /// }
    /// let _ = tx.publish();
    /// let mut seen = Vec::new();
    /// let n = rx.read_batch(usize::MAX, |rec| {
    ///     seen.push(rec.data()[0]);
    ///     true
    /// })?;
    /// assert_eq!((n, seen), (3, vec![0, 1, 2]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn read_batch<F>(&mut self, max: usize, mut f: F) -> Result<usize, RingError>
    where
        F: FnMut(Record<'_>) -> bool,
    {
        if let Some(c) = self.poisoned {
            return Err(RingError::Corrupt(c));
        }
        if self.tail == self.cached_head {
            self.release();
            self.refresh_head()?;
        }
        let head = self.cached_head;
        let mut tail = self.tail;
        let mut seen = 0;
        let mut failed = None;
        while seen < max && tail != head {
            match self.step(tail, head) {
                Ok(Step::Padding { footprint }) => tail += footprint,
                Ok(Step::Record {
                    off,
                    len,
                    tag,
                    footprint,
                }) => {
                    tail += footprint;
                    seen += 1;
                    // SAFETY: as in `read`: `step` bounded the record inside the region and
                    // before `head`; it is published and released only after this loop, and the
                    // borrow ends with the call to `f`.
                    let data = unsafe { self.mem.payload(off, len) };
                    if !f(Record { tag, data }) {
                        break;
                    }
                }
                Err(c) => {
                    failed = Some(c);
                    break;
                }
            }
        }
        self.tail = tail;
        self.records += seen as u64;
        self.release();
        match failed {
            Some(c) => Err(self.poison(c)),
            None => Ok(seen),
        }
    }

    /// Validates what starts at index `at` (8-aligned, `at < head`, both within the bounds
    /// `refresh_head` checked): padding to the region's end, or a record wholly before `head`
    /// and inside the region, with a data tag and a length within `max_record`.
    #[inline(always)]
    fn step(&self, at: u64, head: u64) -> Result<Step, Corruption> {
        let off = at & self.mem.mask();
        let available = head - at;
        // `at` and `head` are 8-aligned and differ, so at least 8 bytes are published and
        // `off + 8 <= capacity` (capacity is a multiple of 8).
        let hdr = self.mem.read_record_header(off);
        let to_end = self.mem.capacity - off;
        if hdr.tag == TAG_PAD {
            let expected = (to_end - RECORD_HEADER_SIZE as u64) as u32;
            if hdr.len != expected {
                return Err(Corruption::BadPadding {
                    at,
                    len: hdr.len,
                    expected,
                });
            }
            if to_end > available {
                return Err(Corruption::RecordPastHead {
                    at,
                    footprint: to_end,
                    available,
                });
            }
            return Ok(Step::Padding { footprint: to_end });
        }
        if hdr.tag == 0 || hdr.tag > MAX_DATA_TAG {
            return Err(Corruption::BadTag { at, tag: hdr.tag });
        }
        let max = self.mem.max_record;
        if hdr.len > max {
            return Err(Corruption::RecordTooLong {
                at,
                len: hdr.len,
                max,
            });
        }
        let footprint = record_footprint(hdr.len);
        if footprint > available {
            return Err(Corruption::RecordPastHead {
                at,
                footprint,
                available,
            });
        }
        if footprint > to_end {
            return Err(Corruption::RecordStraddles { at, footprint });
        }
        Ok(Step::Record {
            off,
            len: hdr.len as usize,
            // The tag was checked to be in 1..=MAX_DATA_TAG (= u16::MAX).
            tag: u16::try_from(hdr.tag).unwrap_or(u16::MAX),
            footprint,
        })
    }

    /// Hands the space of every record read so far back to the producer (one Release store).
    #[inline]
    pub fn release(&mut self) {
        if self.tail == self.released {
            return;
        }
        // SYNC POINT: Release pairs with the producer's Acquire load of `tail` in
        // `Producer::refresh_tail`: our reads of the released records happen before the producer
        // reuses their space.
        self.mem
            .header()
            .tail
            .value
            .store(self.tail, Ordering::Release);
        self.released = self.tail;
        self.unreleased = 0;
    }

    /// First half of going to sleep: releases what was read, publishes the sleeping flag, and
    /// re-checks the ring.
    ///
    /// Returns `Ok(true)` if data arrived meanwhile: the flag is cleared again and the caller must
    /// not block. Returns `Ok(false)` when the caller may block on its eventfd; after waking (or
    /// timing out) it must call [`finish_sleep`](Self::finish_sleep).
    ///
    /// The same as [`announce_sleep`](Self::announce_sleep), [`sleep_barrier`] and
    /// [`recheck_sleep`](Self::recheck_sleep); a caller with several rings does the first for
    /// each, one barrier, then the last for each.
    ///
    /// # Errors
    /// [`RingError::Corrupt`] if the producer wrote an invalid index (the flag is cleared).
    pub fn prepare_sleep(&mut self) -> Result<bool, RingError> {
        if self.announce_sleep() {
            return Ok(true);
        }
        let barrier = sleep_barrier();
        self.recheck_sleep(&barrier)
    }

    /// Releases what was read and, unless unread records are already known, publishes the
    /// sleeping flag. Returns `true` when there is data (no flag published: do not block).
    /// Follow with [`sleep_barrier`] and [`recheck_sleep`](Self::recheck_sleep).
    pub fn announce_sleep(&mut self) -> bool {
        self.release();
        if self.tail != self.cached_head {
            return true;
        }
        // Odd and nonzero, so it can never read as "awake"; a new value per sleep so the producer
        // wakes each sleep at most once.
        self.epoch = self.epoch.wrapping_add(2) | 1;
        // Relaxed: ordered by the SeqCst fence in `sleep_barrier`, which the caller runs next.
        self.mem
            .header()
            .sleeping
            .value
            .store(self.epoch, Ordering::Relaxed);
        false
    }

    /// After [`announce_sleep`](Self::announce_sleep) returned `false`, with the token of a
    /// [`sleep_barrier`] run after it: re-checks the ring. `Ok(false)`: the caller may block
    /// (then [`finish_sleep`](Self::finish_sleep)); `Ok(true)`: data arrived, the flag is
    /// cleared.
    ///
    /// # Errors
    /// [`RingError::Corrupt`] if the producer wrote an invalid index (the flag is cleared).
    pub fn recheck_sleep(&mut self, _barrier: &SleepBarrier) -> Result<bool, RingError> {
        match self.has_data() {
            Ok(false) => Ok(false),
            other => {
                self.finish_sleep();
                other.map(|_| true)
            }
        }
    }

    /// Second half of sleeping: clears the sleeping flag. Only the consumer clears it.
    pub fn finish_sleep(&mut self) {
        // Relaxed: clearing only suppresses wakeups the producer would send; the next
        // `announce_sleep` republishes the flag behind `sleep_barrier`.
        self.mem.header().sleeping.value.store(0, Ordering::Relaxed);
    }
}

/// Proof that [`sleep_barrier`] ran: [`Consumer::recheck_sleep`] asks for it, so that the
/// barrier cannot be skipped between publishing a flag and re-checking the ring.
#[derive(Debug)]
#[must_use = "pass it to recheck_sleep"]
pub struct SleepBarrier(());

/// The barrier between publishing sleeping flags ([`Consumer::announce_sleep`], any number of
/// rings) and re-checking them ([`Consumer::recheck_sleep`]): a SeqCst fence, one for all the
/// rings a caller announced.
pub fn sleep_barrier() -> SleepBarrier {
    // SYNC POINT: SeqCst fence pairs with the producer's SeqCst fence in
    // `Producer::publish_pending` (Dekker): either the producer sees our flag and wakes us, or
    // the re-check sees its head.
    fence(Ordering::SeqCst);
    SleepBarrier(())
}
