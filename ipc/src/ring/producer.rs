//! The producer side of a ring.

use std::ops::{Deref, DerefMut};

use amp_shm_layout::{record_footprint, RecordHeader, RECORD_HEADER_SIZE, TAG_PAD};

use super::{Corruption, RingError, RingMem};
use crate::sync::{fence, Ordering};

/// Counters a producer keeps (process-local; the owner may publish them in the control block).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStats {
    /// Records committed.
    pub records: u64,
    /// Stores of `head` (batches published).
    pub publishes: u64,
    /// Times [`Producer::publish`] told the caller to wake the consumer.
    pub wakeups: u64,
}

/// What [`Producer::write_many`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "when `wake` is true, the consumer sleeps and must be woken through its eventfd"]
pub struct Written {
    /// Records written and published (fewer than asked when the ring filled up).
    pub records: usize,
    /// The consumer sleeps and must be woken, as [`Producer::publish`] returns.
    pub wake: bool,
}

/// The writing end of a ring. One per ring; not `Clone`.
#[derive(Debug)]
pub struct Producer {
    mem: RingMem,
    /// Next index to write (committed records included, published or not).
    head: u64,
    /// Last value stored to the shared `head`.
    published: u64,
    /// Last value of the shared `tail` seen (validated).
    cached_tail: u64,
    /// Sleep epoch of the consumer this producer last asked to wake.
    last_woken: u32,
    /// Set once the consumer wrote an impossible `tail`.
    poisoned: Option<Corruption>,
    /// A publish done inside `reserve` found the consumer asleep: the next `publish` returns
    /// `true` even if it has nothing new to publish.
    wake_owed: bool,
    stats: ProducerStats,
}

/// Space reserved for one record: write the payload through `DerefMut`, then
/// [`commit`](Self::commit). Dropping it without committing abandons the record.
#[derive(Debug)]
pub struct Reservation<'a> {
    producer: &'a mut Producer,
    /// Region offset of the record header.
    off: u64,
    len: u32,
    tag: u16,
}

impl Producer {
    /// Attaches a producer to ring memory, picking up the indices found there.
    pub(crate) fn new(mem: RingMem) -> Result<Self, RingError> {
        let h = mem.header();
        // Relaxed: at attach time nothing is being published yet; the values are validated below
        // and only used as starting points.
        let head = h.head.value.load(Ordering::Relaxed);
        let tail = h.tail.value.load(Ordering::Relaxed);
        // Indices start at 0 and grow by bytes moved: 2^62 is decades of traffic, so anything
        // above it is garbage (and would overflow the additions below).
        if head % 8 != 0
            || tail > head
            || tail % 8 != 0
            || head - tail > mem.capacity
            || head > super::MAX_INDEX
        {
            return Err(RingError::Corrupt(Corruption::TailInvalid { tail, head }));
        }
        Ok(Self {
            mem,
            head,
            published: head,
            cached_tail: tail,
            last_woken: 0,
            poisoned: None,
            wake_owed: false,
            stats: ProducerStats::default(),
        })
    }

    /// Ring capacity in bytes.
    #[must_use]
    pub fn capacity(&self) -> u64 {
        self.mem.capacity
    }

    /// Largest payload a record may carry.
    #[must_use]
    pub fn max_record(&self) -> u32 {
        self.mem.max_record
    }

    /// Counters so far.
    #[must_use]
    pub fn stats(&self) -> ProducerStats {
        self.stats
    }

    /// Records committed but not yet published.
    #[must_use]
    pub fn unpublished_bytes(&self) -> u64 {
        self.head - self.published
    }

    /// Free bytes according to the cached consumer index (may underestimate).
    #[must_use]
    #[inline]
    pub fn free_cached(&self) -> u64 {
        self.mem.capacity - (self.head - self.cached_tail)
    }

    /// Reloads the consumer's index.
    #[inline]
    fn refresh_tail(&mut self) -> Result<(), RingError> {
        // SYNC POINT: Acquire pairs with the consumer's Release store of `tail` in
        // `Consumer::release`: once we see the new tail, the consumer has finished reading the
        // bytes before it, so we may overwrite them.
        let now = self.mem.header().tail.value.load(Ordering::Acquire);
        if now < self.cached_tail {
            return Err(self.poison(Corruption::TailBackwards {
                seen: self.cached_tail,
                now,
            }));
        }
        if now > self.published || now % 8 != 0 {
            return Err(self.poison(Corruption::TailInvalid {
                tail: now,
                head: self.published,
            }));
        }
        self.cached_tail = now;
        Ok(())
    }

    fn poison(&mut self, c: Corruption) -> RingError {
        self.poisoned = Some(c);
        RingError::Corrupt(c)
    }

    /// Reserves space for a record of `len` payload bytes with data tag `tag` (1..=65535).
    ///
    /// Write the payload through the returned [`Reservation`] and commit it. The record is
    /// visible to the consumer after the next [`publish`](Self::publish).
    ///
    /// # Errors
    /// [`RingError::TooLarge`] if `len` exceeds `max_record`; [`RingError::InvalidTag`] for tag 0;
    /// [`RingError::Full`] when there is no room now (pending commits are published first, so the
    /// consumer can free space); [`RingError::Corrupt`] if the consumer wrote an invalid index.
    #[inline]
    pub fn reserve(&mut self, len: usize, tag: u16) -> Result<Reservation<'_>, RingError> {
        let len32 = self.check_record(len, tag)?;
        let off = self.make_room(record_footprint(len32))?;
        // The header goes first, with the full length (`commit_len` rewrites it if the record
        // ends up shorter), so that the record's bytes are written in address order: on this
        // kind of machine a store back into an earlier line costs the producer measurably
        // (`docs/benchmarks.md`, "Ring"). Unpublished space: the consumer does not read it.
        self.mem.write_record_header(
            off,
            RecordHeader {
                len: len32,
                tag: u32::from(tag),
            },
        );
        Ok(Reservation {
            producer: self,
            off,
            len: len32,
            tag,
        })
    }

    /// The checks every record passes before any byte is written: the producer is not poisoned,
    /// the tag is a data tag, the length fits `max_record`. Returns the length as `u32`.
    #[inline]
    fn check_record(&self, len: usize, tag: u16) -> Result<u32, RingError> {
        if let Some(c) = self.poisoned {
            return Err(RingError::Corrupt(c));
        }
        if tag == 0 {
            return Err(RingError::InvalidTag);
        }
        let max = self.mem.max_record;
        match u32::try_from(len) {
            Ok(l) if l <= max => Ok(l),
            _ => Err(RingError::TooLarge { len, max }),
        }
    }

    /// Finds room for a record of `footprint` bytes at `head`: reloads the consumer's index when
    /// the cached one says there is not enough free space, and fills the rest of the region with
    /// a padding record when the record would cross its end. Returns the region offset of the
    /// record's header.
    ///
    /// # Errors
    /// [`RingError::Full`] (after publishing what was committed) or [`RingError::Corrupt`].
    #[inline]
    fn make_room(&mut self, footprint: u64) -> Result<u64, RingError> {
        let off = self.head & self.mem.mask();
        let to_end = self.mem.capacity - off;
        let needed = if footprint <= to_end {
            footprint
        } else {
            to_end + footprint
        };
        if self.free_cached() < needed {
            self.refresh_tail()?;
            if self.free_cached() < needed {
                let free = self.free_cached();
                // Make everything committed so far visible, so the consumer can drain it; a
                // needed wakeup is owed to the caller's next `publish`.
                self.publish_pending();
                return Err(RingError::Full { needed, free });
            }
        }
        Ok(if footprint > to_end {
            // Fill the rest of the region with a padding record; the record starts at offset 0.
            let pad_len = (to_end - RECORD_HEADER_SIZE as u64) as u32;
            self.mem.write_record_header(
                off,
                RecordHeader {
                    len: pad_len,
                    tag: TAG_PAD,
                },
            );
            self.head += to_end;
            0
        } else {
            off
        })
    }

    /// Copies `bytes` into a new record with data tag `tag` and commits it (not yet published).
    ///
    /// # Errors
    /// As [`reserve`](Self::reserve); on error nothing was written and `bytes` can be retried.
    #[inline]
    pub fn push(&mut self, tag: u16, bytes: &[u8]) -> Result<(), RingError> {
        let mut r = self.reserve(bytes.len(), tag)?;
        r.copy_from_slice(bytes);
        r.commit();
        Ok(())
    }

    /// Writes up to `n` records of up to `len` payload bytes with data tag `tag`, each filled in
    /// place by `fill(i, payload)` (which returns how many of the `len` bytes it used, like
    /// [`Reservation::commit_len`]), then publishes them with one store of `head`.
    ///
    /// The same records as `n` calls of [`reserve`](Self::reserve) + commit and one
    /// [`publish`](Self::publish), written faster: the ring's index lives in a local variable
    /// for the whole run instead of in the producer, which the compiler must otherwise store and
    /// reload around every write into shared memory (it cannot tell the two apart). On this kind
    /// of machine such reloads wait behind the stores to lines the consumer's core holds
    /// (`docs/benchmarks.md`, "Ring").
    ///
    /// Stops early, with what it wrote published, when the ring is full; returns how many records
    /// it wrote and whether the consumer must be woken. If `fill` panics, the record it was
    /// filling is abandoned, and so are the ones written since the last time this call had to
    /// look for room (the others stay committed and go out with the next publish); no record is
    /// ever published half-written.
    ///
    /// ```
    /// use amp_ipc::ring;
    ///
    /// let (mut tx, mut rx) = ring::local(4096, 64).unwrap();
    /// let w = tx
    ///     .write_many(10, 8, 1, |i, buf| {
    ///         buf.copy_from_slice(&(i as u64).to_le_bytes());
    ///         buf.len()
    ///     })
    ///     .unwrap();
    /// assert_eq!(w.records, 10);
    /// assert_eq!(rx.read().unwrap().unwrap().data(), &0u64.to_le_bytes());
    /// ```
    ///
    /// # Errors
    /// [`RingError::TooLarge`], [`RingError::InvalidTag`] (nothing written), or
    /// [`RingError::Corrupt`] if the consumer wrote an invalid index.
    #[inline]
    pub fn write_many<F>(
        &mut self,
        n: usize,
        len: usize,
        tag: u16,
        mut fill: F,
    ) -> Result<Written, RingError>
    where
        F: FnMut(usize, &mut [u8]) -> usize,
    {
        let len32 = self.check_record(len, tag)?;
        let footprint = record_footprint(len32);
        let data = self.mem.data;
        let mask = self.mem.mask();
        let mut head = self.head;
        let mut limit = self.cached_tail + self.mem.capacity;
        let mut written = 0;
        while written < n {
            let mut off = head & mask;
            // `off <= mask`, so `mask + 1 - off` (bytes to the region end) cannot underflow;
            // indices stay below 2^62 + capacity, so the sum cannot overflow.
            if footprint > mask + 1 - off || head + footprint > limit {
                self.head = head;
                match self.make_room_cold(footprint) {
                    Ok(at) => off = at,
                    Err(RingError::Full { .. }) => break,
                    Err(e) => {
                        // Corrupt: what was written is committed (`head` was handed over above).
                        self.stats.records += written as u64;
                        return Err(e);
                    }
                }
                head = self.head;
                limit = self.cached_tail + self.mem.capacity;
            }
            // SAFETY: `off + 8 + len <= off + footprint <= capacity` (checked above or by
            // `make_room`), the range is free space that only this producer writes until it is
            // published, and the slice is dropped before the next record is placed.
            let buf = unsafe {
                std::slice::from_raw_parts_mut(
                    data.as_ptr().add(off as usize + RECORD_HEADER_SIZE),
                    len,
                )
            };
            // The header goes first, with the full length, so that the record's bytes are written
            // in address order; it is rewritten in the rare case `fill` used fewer bytes.
            let header = RecordHeader {
                len: len32,
                tag: u32::from(tag),
            };
            // SAFETY: the header's 8 bytes at `off` are in the same reserved range.
            unsafe { super::write_header_word(data, off, header) };
            let used = u32::try_from(fill(written, buf))
                .unwrap_or(u32::MAX)
                .min(len32);
            if used != len32 {
                let header = RecordHeader {
                    len: used,
                    ..header
                };
                // SAFETY: as above.
                unsafe { super::write_header_word(data, off, header) };
            }
            head += record_footprint(used);
            written += 1;
        }
        self.head = head;
        self.stats.records += written as u64;
        Ok(Written {
            records: written,
            wake: self.publish(),
        })
    }

    /// [`make_room`](Self::make_room) out of line, for loops that keep their state in registers.
    #[cold]
    #[inline(never)]
    fn make_room_cold(&mut self, footprint: u64) -> Result<u64, RingError> {
        self.make_room(footprint)
    }

    /// Publishes every committed record with one Release store of `head`.
    ///
    /// Returns `true` when the consumer is asleep and must be woken (write its eventfd); the
    /// producer counts it in [`ProducerStats::wakeups`]. Returns `false` when the consumer is awake
    /// (or was already woken for its current sleep). After [`RingError::Full`], call `publish`
    /// before waiting for space: `reserve` published what was pending and the wakeup it may need
    /// is returned here.
    #[must_use = "when true, the consumer sleeps and must be woken through its eventfd"]
    #[inline]
    pub fn publish(&mut self) -> bool {
        self.publish_pending();
        // Written only when set: a store per publish costs, on a producer whose ring stores wait
        // for lines the consumer holds (`write_many`).
        if self.wake_owed {
            self.wake_owed = false;
            true
        } else {
            false
        }
    }

    /// Stores `head` if anything is pending and records in `wake_owed` whether the consumer must
    /// be woken.
    #[inline]
    fn publish_pending(&mut self) {
        if self.head == self.published {
            return;
        }
        // SYNC POINT: Release pairs with the consumer's Acquire load of `head` in
        // `Consumer::refresh_head`: the record bytes written before this store are visible to a
        // consumer that sees the new head.
        self.mem
            .header()
            .head
            .value
            .store(self.head, Ordering::Release);
        self.published = self.head;
        self.stats.publishes += 1;
        // SYNC POINT: SeqCst fence pairs with the consumer's SeqCst fence in `sleep_barrier`
        // (Dekker): either the consumer's re-check sees our head, or we see its sleeping flag
        // below.
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence above (see the handshake in the module docs).
        let epoch = self.mem.header().sleeping.value.load(Ordering::Relaxed);
        if epoch != 0 && epoch != self.last_woken {
            self.last_woken = epoch;
            self.stats.wakeups += 1;
            self.wake_owed = true;
        }
    }
}

impl Reservation<'_> {
    /// Commits the record with its full reserved length.
    #[inline]
    pub fn commit(self) {
        let len = self.len;
        self.commit_len(len as usize);
    }

    /// Commits the record with only the first `len` bytes (e.g. after encoding into a
    /// worst-case-sized reservation). `len` is clamped to the reserved length.
    #[inline]
    pub fn commit_len(self, len: usize) {
        let len = u32::try_from(len).unwrap_or(u32::MAX).min(self.len);
        let p = self.producer;
        if len != self.len {
            // `reserve` wrote the header with the full length.
            p.mem.write_record_header(
                self.off,
                RecordHeader {
                    len,
                    tag: u32::from(self.tag),
                },
            );
        }
        p.head += record_footprint(len);
        p.stats.records += 1;
    }

    /// The data tag of this record.
    #[must_use]
    pub fn tag(&self) -> u16 {
        self.tag
    }
}

impl Deref for Reservation<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        let mem = &self.producer.mem;
        // SAFETY: `reserve` checked that header + `len` bytes at `off` lie inside the region
        // (no straddling) and within the free space, which only this producer writes and the
        // consumer does not read until it is published.
        unsafe {
            std::slice::from_raw_parts(
                mem.data
                    .as_ptr()
                    .add((self.off as usize) + RECORD_HEADER_SIZE),
                self.len as usize,
            )
        }
    }
}

impl DerefMut for Reservation<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        let mem = &self.producer.mem;
        // SAFETY: as in `deref`; `&mut self` makes this the only live view of the range.
        unsafe {
            std::slice::from_raw_parts_mut(
                mem.data
                    .as_ptr()
                    .add((self.off as usize) + RECORD_HEADER_SIZE),
                self.len as usize,
            )
        }
    }
}
