//! The reference: a bare, minimal SPSC ring of fixed-size slots over an anonymous `MAP_SHARED`
//! mapping, with Release/Acquire indices, cached remote indices and the same batching as the amp
//! ring — and nothing else (no record headers, no validation, no sleep/wake handshake). It is
//! created before `fork`, so both processes see the same memory.

use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

use crate::common::{
    check, ns, stamp, stamp_template, template, Clock, Fill, Latency, Rate, Res, Tput,
};
use crate::proc::{run_pair, Cpus};

/// Offset of the consumer index (its own 128-byte line pair, away from the producer index at 0).
const TAIL_OFFSET: usize = 128;
/// Offset of a flag word only the diagnostic [`Variant::Fence`] reads (never written).
const FLAG_OFFSET: usize = 256;
/// Offset of the first slot.
const SLOTS_OFFSET: usize = 384;

/// Diagnostic variants of the bare ring, to show where the amp ring's extra cost comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The reference: slots exactly the record size, a plain Release store per publish.
    Plain,
    /// Slots 8 bytes larger than the record (the amp ring's footprint: 8-byte header + payload),
    /// so records are no longer cache-line aligned.
    Stride8,
    /// Each publish is followed by a SeqCst fence and a load of a flag word, as the amp ring's
    /// sleep/wake handshake does.
    Fence,
}

/// The shared mapping: producer index, consumer index, `slots` slots of `stride` bytes, each
/// holding one record of `size` bytes.
#[derive(Debug)]
pub struct BareRing {
    base: NonNull<u8>,
    len: usize,
    slots: u64,
    size: usize,
    stride: usize,
    fence: bool,
}

impl BareRing {
    /// Maps a ring of `slots` (a power of two) slots for records of `size` bytes, zeroed and
    /// pre-faulted.
    pub fn new(slots: u64, size: usize, variant: Variant) -> Res<Self> {
        assert!(slots.is_power_of_two() && size % 8 == 0);
        let stride = if variant == Variant::Stride8 {
            size + 8
        } else {
            size
        };
        let len = SLOTS_OFFSET + slots as usize * stride;
        let nz = NonZeroUsize::new(len).ok_or("empty ring")?;
        // SAFETY: a fresh anonymous mapping at an address the kernel picks; it aliases nothing.
        let base = unsafe {
            mmap_anonymous(
                None,
                nz,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }?
        .cast::<u8>();
        // SAFETY: `len` bytes at `base` were just mapped read/write; writing zeros faults the pages
        // in before the measurement (anonymous memory is zero already; this only touches it).
        unsafe { base.as_ptr().write_bytes(0, len) };
        Ok(Self {
            base,
            len,
            slots,
            size,
            stride,
            fence: variant == Variant::Fence,
        })
    }

    fn index(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: offsets 0, 128 and 256 are inside the mapping and 8-aligned (the mapping is
        // page-aligned); these words are only ever accessed atomically, by both processes.
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(offset).cast::<u64>()) }
    }

    fn slot(&self, i: u64) -> *mut u8 {
        let at = SLOTS_OFFSET + (i & (self.slots - 1)) as usize * self.stride;
        // SAFETY: `at + stride <= len`: the masked slot number is below `slots`.
        unsafe { self.base.as_ptr().add(at) }
    }

    /// The producer end (use in one process only).
    pub fn tx(&self, batch: u64) -> Tx<'_> {
        Tx {
            ring: self,
            head: 0,
            published: 0,
            cached_tail: 0,
            batch,
        }
    }

    /// The consumer end (use in one process only).
    pub fn rx(&self, batch: u64) -> Rx<'_> {
        Rx {
            ring: self,
            tail: 0,
            released: 0,
            cached_head: 0,
            batch,
        }
    }
}

impl Drop for BareRing {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` describe the mapping made in `new`; every `Tx`/`Rx` borrows `self`,
        // so none is alive.
        let _ = unsafe { munmap(self.base.cast(), self.len) };
    }
}

/// Producer end.
#[derive(Debug)]
pub struct Tx<'a> {
    ring: &'a BareRing,
    head: u64,
    published: u64,
    cached_tail: u64,
    batch: u64,
}

impl Tx<'_> {
    /// Writes one record with `fill`, spinning while the ring is full; publishes every `batch`.
    #[inline]
    pub fn push(&mut self, fill: impl FnOnce(&mut [u8])) {
        if self.head - self.cached_tail == self.ring.slots {
            self.publish();
            loop {
                // SYNC POINT: Acquire pairs with the Release store of the tail in `Rx::release`:
                // the consumer is done with the slots before the new tail.
                self.cached_tail = self.ring.index(TAIL_OFFSET).load(Ordering::Acquire);
                if self.head - self.cached_tail < self.ring.slots {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        // SAFETY: slot `head` is free (fewer than `slots` records are unreleased) and only this
        // producer writes it until it is published.
        let slot =
            unsafe { std::slice::from_raw_parts_mut(self.ring.slot(self.head), self.ring.size) };
        fill(slot);
        self.head += 1;
        if self.head - self.published >= self.batch {
            self.publish();
        }
    }

    /// Makes every written record visible.
    #[inline]
    pub fn publish(&mut self) {
        if self.head != self.published {
            // SYNC POINT: Release pairs with the Acquire load of the head in `Rx::pop`: the slot
            // bytes written before are visible to a consumer that sees the new head.
            self.ring.index(0).store(self.head, Ordering::Release);
            self.published = self.head;
            if self.ring.fence {
                // The amp ring's Dekker handshake: StoreLoad between publishing and reading the
                // consumer's sleeping flag (which nobody sets here).
                std::sync::atomic::fence(Ordering::SeqCst);
                // Relaxed: ordered by the fence; the value is only kept alive (nobody sleeps).
                std::hint::black_box(self.ring.index(FLAG_OFFSET).load(Ordering::Relaxed));
            }
        }
    }
}

/// Consumer end.
#[derive(Debug)]
pub struct Rx<'a> {
    ring: &'a BareRing,
    tail: u64,
    released: u64,
    cached_head: u64,
    batch: u64,
}

impl Rx<'_> {
    /// Reads the next record with `read`, or returns `None` when the ring is empty (releasing
    /// what was read, so a producer waiting for space can go on). Releases every `batch`.
    #[inline]
    pub fn pop<R>(&mut self, read: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if self.tail == self.cached_head {
            self.release();
            // SYNC POINT: Acquire pairs with the Release store of the head in `Tx::publish`.
            self.cached_head = self.ring.index(0).load(Ordering::Acquire);
            if self.tail == self.cached_head {
                return None;
            }
        }
        // SAFETY: slot `tail` is published (before `cached_head`) and not yet released, so the
        // producer does not write it while we read.
        let slot = unsafe { std::slice::from_raw_parts(self.ring.slot(self.tail), self.ring.size) };
        let r = read(slot);
        self.tail += 1;
        if self.tail - self.released >= self.batch {
            self.release();
        }
        Some(r)
    }

    /// Hands the slots read so far back to the producer.
    #[inline]
    pub fn release(&mut self) {
        if self.tail != self.released {
            // SYNC POINT: Release pairs with the Acquire load of the tail in `Tx::push`.
            self.ring
                .index(TAIL_OFFSET)
                .store(self.tail, Ordering::Release);
            self.released = self.tail;
        }
    }
}

/// Slots of the bare ring for records of `size` bytes: the same byte capacity as the amp ring.
fn slots_for(size: usize) -> u64 {
    (crate::amp::ring_bytes(size) / size as u64).next_power_of_two()
}

/// One-way throughput: the child writes, this process reads and checks.
pub fn throughput(cpus: &Cpus, t: Tput, variant: Variant) -> Res<Rate> {
    let ring = BareRing::new(slots_for(t.size), t.size, variant)?;
    let batch = t.batch as u64;
    run_pair(
        cpus,
        || {
            let mut tx = ring.tx(batch);
            match t.fill {
                Fill::Words => {
                    for seq in 0..t.count {
                        tx.push(|slot| stamp(slot, seq));
                    }
                }
                Fill::Memcpy => {
                    let tmpl = template(t.size);
                    for seq in 0..t.count {
                        tx.push(|slot| stamp_template(slot, &tmpl, seq));
                    }
                }
            }
            tx.publish();
            Ok(())
        },
        || {
            let mut rx = ring.rx(batch);
            let mut clock = Clock::default();
            let mut seq = 0;
            while seq < t.count {
                match rx.pop(|rec| t.fill.check(rec, seq)) {
                    Some(true) => {
                        seq += 1;
                        clock.mark(seq);
                    }
                    Some(false) => return Err(format!("bare ring: record {seq} is wrong").into()),
                    None => std::hint::spin_loop(),
                }
            }
            clock.finish(seq)
        },
    )
}

/// Round trip of a 64-byte record over two bare rings, both sides spinning.
pub fn rtt_hot(cpus: &Cpus, n: usize, warmup: usize) -> Res<Latency> {
    const SIZE: usize = 64;
    let ping = BareRing::new(64, SIZE, Variant::Plain)?;
    let pong = BareRing::new(64, SIZE, Variant::Plain)?;
    let total = (n + warmup) as u64;
    run_pair(
        cpus,
        || {
            let (mut rx, mut tx) = (ping.rx(1), pong.tx(1));
            let mut buf = [0u8; SIZE];
            for _ in 0..total {
                while rx.pop(|rec| buf.copy_from_slice(rec)).is_none() {
                    std::hint::spin_loop();
                }
                tx.push(|slot| slot.copy_from_slice(&buf));
            }
            Ok(())
        },
        || {
            let (mut tx, mut rx) = (ping.tx(1), pong.rx(1));
            let mut samples = Vec::with_capacity(n);
            let mut start = Instant::now();
            for seq in 0..total {
                tx.push(|slot| stamp(slot, seq));
                let ok = loop {
                    if let Some(ok) = rx.pop(|rec| check(rec, seq)) {
                        break ok;
                    }
                    std::hint::spin_loop();
                };
                let now = Instant::now();
                if !ok {
                    return Err(format!("bare ring echo: reply {seq} is wrong").into());
                }
                if seq >= warmup as u64 {
                    samples.push(ns(now - start));
                }
                start = now;
            }
            Ok(Latency::new(samples, None))
        },
    )
}
