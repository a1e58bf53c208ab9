//! In-crate tests of the ring.
//!
//! * [`model`]: property test of a producer/consumer pair against a `VecDeque` model (order,
//!   content, exact `Full`/`TooLarge` decisions, wakeup decisions, stats).
//! * [`corruption`]: each kind of invalid shared state a peer can produce, and the exact
//!   [`Corruption`] it must be reported as (sticky, never a panic).
//! * [`fuzz`]: the fuzz target — a proptest harness over arbitrary ring bytes and indices.
//!
//! The helper [`Shm`] owns the ring memory itself (instead of going through [`local`]), so a
//! test can play the misbehaving peer and poke at the shared header and data region.

mod corruption;
mod fuzz;
mod model;

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use amp_shm_layout::{RecordHeader, RECORD_HEADER_SIZE};

use super::*;

/// Ring memory held by the test, shared with the producer and consumer built on it.
struct Shm {
    header: NonNull<RingHeader>,
    data: NonNull<u8>,
    capacity: u64,
    max_record: u64,
    owner: Arc<LocalRing>,
}

impl Shm {
    /// Zeroed ring memory. `capacity` and `max_record` are not checked here (the endpoints'
    /// constructors check them).
    fn new(capacity: u64, max_record: u64) -> Self {
        let words = usize::try_from(capacity / 8).expect("capacity fits in usize");
        let header = NonNull::from(Box::leak(Box::new(RingHeader::default())));
        let data = NonNull::from(Box::leak(vec![0u64; words].into_boxed_slice())).cast::<u64>();
        let owner = Arc::new(LocalRing {
            header,
            data,
            words,
        });
        Self {
            header,
            data: data.cast(),
            capacity,
            max_record,
            owner,
        }
    }

    /// Zeroed ring memory with the shared indices set before any endpoint attaches.
    fn with_indices(capacity: u64, max_record: u64, head: u64, tail: u64) -> Self {
        let shm = Self::new(capacity, max_record);
        shm.set_head(head);
        shm.set_tail(tail);
        shm
    }

    fn mem(&self) -> RingMem {
        let owner: Arc<dyn Send + Sync> = Arc::clone(&self.owner) as Arc<dyn Send + Sync>;
        // SAFETY: `header` and `data` come from the allocations `owner` frees on drop (a
        // `RingHeader` and `capacity` zeroed, 8-aligned bytes); the test builds at most one
        // producer and one consumer per `Shm`, and its own writes (playing a corrupt peer) happen
        // on the same thread, never while an endpoint holds a borrow into the region.
        unsafe {
            RingMem::new(
                self.header,
                self.data,
                self.capacity,
                self.max_record,
                owner,
            )
        }
        .expect("valid ring geometry")
    }

    /// A producer attached to this memory (validates the indices found there).
    fn producer(&self) -> Result<Producer, RingError> {
        Producer::new(self.mem())
    }

    /// A consumer attached to this memory (validates the indices found there).
    fn consumer(&self) -> Result<Consumer, RingError> {
        Consumer::new(self.mem())
    }

    /// Both endpoints; panics if the indices are invalid.
    fn pair(&self) -> (Producer, Consumer) {
        (
            self.producer().expect("producer attaches"),
            self.consumer().expect("consumer attaches"),
        )
    }

    fn hdr(&self) -> &RingHeader {
        // SAFETY: `header` points to a live `RingHeader` owned by `self.owner`, only accessed
        // through shared references to atomics.
        unsafe { self.header.as_ref() }
    }

    fn head(&self) -> u64 {
        self.hdr().head.value.load(Ordering::SeqCst)
    }

    fn set_head(&self, v: u64) {
        self.hdr().head.value.store(v, Ordering::SeqCst);
    }

    fn tail(&self) -> u64 {
        self.hdr().tail.value.load(Ordering::SeqCst)
    }

    fn set_tail(&self, v: u64) {
        self.hdr().tail.value.store(v, Ordering::SeqCst);
    }

    fn sleeping(&self) -> u32 {
        self.hdr().sleeping.value.load(Ordering::SeqCst)
    }

    fn set_sleeping(&self, v: u32) {
        self.hdr().sleeping.value.store(v, Ordering::SeqCst);
    }

    /// Address range of the data region, to check that handed-out slices stay inside it.
    fn region(&self) -> std::ops::Range<usize> {
        let start = self.data.as_ptr() as usize;
        start..start + self.capacity as usize
    }

    /// Copies `bytes` into the region at offset `off`.
    fn write(&self, off: u64, bytes: &[u8]) {
        let off = usize::try_from(off).expect("offset fits in usize");
        assert!(
            off + bytes.len() <= self.capacity as usize,
            "test write out of the region"
        );
        let dst = self.data.as_ptr().wrapping_add(off);
        // SAFETY: `off + bytes.len() <= capacity` (asserted), so `dst` and the range after it lie
        // inside the data region; `bytes` is test-owned memory, so they do not overlap; no
        // endpoint holds a borrow into the region while the (single-threaded) test writes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) }
    }

    /// A copy of `len` bytes of the region at offset `off`.
    fn read(&self, off: u64, len: usize) -> Vec<u8> {
        let off = usize::try_from(off).expect("offset fits in usize");
        assert!(
            off + len <= self.capacity as usize,
            "test read out of the region"
        );
        let mut out = vec![0u8; len];
        let src = self.data.as_ptr().wrapping_add(off).cast_const();
        // SAFETY: in bounds as asserted above; `out` is a distinct allocation of `len` bytes.
        unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), len) }
        out
    }

    /// The record header at region offset `off` (the position of index `off & (capacity-1)`).
    fn record_header(&self, index: u64) -> RecordHeader {
        let b = self.read(index & (self.capacity - 1), RECORD_HEADER_SIZE);
        RecordHeader {
            len: u32::from_ne_bytes(b[0..4].try_into().expect("4 bytes")),
            tag: u32::from_ne_bytes(b[4..8].try_into().expect("4 bytes")),
        }
    }

    /// Overwrites the record header at index `index`.
    fn set_record_header(&self, index: u64, h: RecordHeader) {
        let mut b = [0u8; RECORD_HEADER_SIZE];
        b[0..4].copy_from_slice(&h.len.to_ne_bytes());
        b[4..8].copy_from_slice(&h.tag.to_ne_bytes());
        self.write(index & (self.capacity - 1), &b);
    }
}

impl fmt::Debug for Shm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shm")
            .field("capacity", &self.capacity)
            .field("head", &self.head())
            .field("tail", &self.tail())
            .finish_non_exhaustive()
    }
}

/// FNV-1a, the checksum carried by test payloads.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Deterministic test payload of `len` bytes for sequence number `seq`: when `len >= 16`, the
/// sequence number (8 bytes) and the checksum of the rest (8 bytes) followed by bytes derived
/// from `seq`; shorter payloads are only the derived bytes.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    if len >= 16 {
        let c = checksum(&out[16..]);
        out[0..8].copy_from_slice(&seq.to_le_bytes());
        out[8..16].copy_from_slice(&c.to_le_bytes());
    }
    out
}

/// Checks a received payload carries `seq` and a valid checksum (payloads of 16 bytes or more).
fn check_payload(bytes: &[u8], seq: u64) {
    if bytes.len() >= 16 {
        assert_eq!(
            u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes")),
            seq,
            "sequence number"
        );
        let c = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        assert_eq!(c, checksum(&bytes[16..]), "checksum of record {seq}");
    }
    assert_eq!(bytes, payload(seq, bytes.len()), "content of record {seq}");
}

#[test]
fn push_read_wrap() {
    let (mut tx, mut rx) = local(256, 64).unwrap();
    let mut next_read = 0u64;
    for i in 0..1000u64 {
        let p = payload(i, (i % 50) as usize);
        loop {
            match tx.push(1 + (i % 7) as u16, &p) {
                Ok(()) => break,
                Err(RingError::Full { .. }) => {
                    let _ = tx.publish();
                    let rec = rx
                        .read()
                        .unwrap()
                        .expect("a full ring has a record to read");
                    assert_eq!(rec.tag(), 1 + (next_read % 7) as u16);
                    check_payload(rec.data(), next_read);
                    next_read += 1;
                    rx.release();
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    let _ = tx.publish();
    while let Some(rec) = rx.read().unwrap() {
        check_payload(rec.data(), next_read);
        next_read += 1;
    }
    assert_eq!(next_read, 1000);
}

/// The test harness itself: indices and bytes written through `Shm` are what the endpoints see.
#[test]
fn shm_helpers_see_the_endpoints_bytes() {
    let shm = Shm::new(256, 64);
    let (mut tx, mut rx) = shm.pair();
    tx.push(9, b"abc").unwrap();
    assert_eq!(shm.head(), 0, "nothing published before publish");
    let _ = tx.publish();
    assert_eq!(shm.head(), 16);
    assert_eq!(shm.record_header(0), RecordHeader { len: 3, tag: 9 });
    assert_eq!(shm.read(8, 3), b"abc");
    shm.write(8, b"xyz");
    let rec = rx.read().unwrap().unwrap();
    assert_eq!(rec.data(), b"xyz");
    assert!(shm.region().contains(&(rec.data().as_ptr() as usize)));
    rx.release();
    assert_eq!(shm.tail(), 16);
    assert_eq!(shm.sleeping(), 0);
    shm.set_sleeping(5);
    assert_eq!(shm.sleeping(), 5);
}
