//! **The ring's fuzz target**: a proptest harness over arbitrary ring bytes.
//!
//! The peer of an endpoint is untrusted, so everything it can write is input: the whole data
//! region, the shared `head` and `tail` (at attach time and at any moment after), and the
//! `sleeping` flag. These tests generate that input — random bytes, plausible-looking record
//! streams with random damage, index values anywhere in `u64` (near `u64::MAX`, unaligned, equal,
//! huge) — and drive the endpoint through it:
//!
//! * [`fuzz_consumer`]: attach a consumer, then read (and release, sleep, …) in a bounded loop
//!   while the "producer" rewrites `head` and scribbles over the region. Every outcome must be
//!   `Ok(Some(record))` with the record's bytes inside the region and its header as found in
//!   memory, `Ok(None)`, or `Err(Corrupt(_))`, which must then be sticky.
//! * [`fuzz_producer`]: attach a producer, then reserve/commit/publish while the "consumer"
//!   rewrites `tail` and `sleeping`. Every outcome must be `Ok` with the reservation inside the
//!   region, `Full`, or `Err(Corrupt(_))`, which must then be sticky.
//!
//! Nothing may panic (debug builds check integer overflow too). The case count is fixed at
//! [`FUZZ_CASES`] per target so the suite stays fast; raise it locally for a longer session.

use amp_shm_layout::{record_footprint, RecordHeader, MAX_DATA_TAG, RECORD_HEADER_SIZE, TAG_PAD};
use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;

/// Cases per fuzz test.
const FUZZ_CASES: u32 = 2000;

/// An index value a misbehaving peer might write.
fn index(cap: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => any::<u64>(),
        2 => (0u64..512).prop_map(|d| u64::MAX - d),
        3 => 0..4 * cap,
        3 => (0..cap / 2).prop_map(|w| w * 8),
        1 => (1u64..=64).prop_map(|s| 1u64 << s.min(63)),
    ]
}

/// A new `head` or `tail` chosen relative to the current state: mostly plausible values, so that
/// the endpoint gets past the index checks and into the records.
#[derive(Debug, Clone)]
enum IndexSel {
    /// Any value.
    Abs(u64),
    /// `reference + delta` (wrapping), any delta up to a bit more than the capacity.
    Ahead(u64),
    /// `reference - delta` (wrapping).
    Behind(u64),
    /// The `k`-th record boundary of the stream laid by [`fill_region`] (falls back to an
    /// 8-aligned offset when the fill laid no stream).
    Boundary(u16),
    /// `reference` itself.
    Same,
}

impl IndexSel {
    /// `reference`: the current index; `start`: where the laid stream begins; `bounds`: the
    /// stream's record boundaries as offsets from `start`.
    fn resolve(&self, reference: u64, start: u64, bounds: &[u64], cap: u64) -> u64 {
        match *self {
            Self::Abs(v) => v,
            Self::Ahead(d) => reference.wrapping_add(d),
            Self::Behind(d) => reference.wrapping_sub(d),
            Self::Boundary(k) if bounds.is_empty() => {
                start.wrapping_add(8 * (u64::from(k) % (cap / 8 + 1)))
            }
            Self::Boundary(k) => start.wrapping_add(bounds[usize::from(k) % bounds.len()]),
            Self::Same => reference,
        }
    }
}

/// A head as a producer might store it: mostly at record boundaries.
fn head_sel(cap: u64) -> impl Strategy<Value = IndexSel> {
    prop_oneof![
        1 => index(cap).prop_map(IndexSel::Abs),
        1 => (0..=cap + 16).prop_map(IndexSel::Ahead),
        2 => (0..=cap / 8 + 1).prop_map(|w| IndexSel::Ahead(w * 8)),
        1 => (0u64..=64).prop_map(IndexSel::Behind),
        8 => any::<u16>().prop_map(IndexSel::Boundary),
    ]
}

/// A tail as a consumer might store it, relative to the published head: mostly "caught up" or
/// a little behind.
fn tail_sel(cap: u64) -> impl Strategy<Value = IndexSel> {
    prop_oneof![
        1 => index(cap).prop_map(IndexSel::Abs),
        1 => (0u64..=64).prop_map(IndexSel::Ahead),
        3 => (0..=cap / 8).prop_map(|w| IndexSel::Behind(w * 8)),
        1 => (0u64..=64).prop_map(IndexSel::Behind),
        4 => Just(IndexSel::Same),
    ]
}

/// How the data region is filled.
#[derive(Debug, Clone, Copy)]
enum Fill {
    /// Uniformly random bytes.
    Random,
    /// Every 8-aligned slot holds a record header built from interesting values (valid and
    /// invalid tags and lengths, correct and wrong padding lengths).
    Headers,
    /// A valid stream of records and padding starting at the consumer's position, with a few
    /// random bytes damaged.
    Stream { flips: u8 },
}

fn fill_strategy() -> impl Strategy<Value = Fill> {
    prop_oneof![
        1 => Just(Fill::Random),
        1 => Just(Fill::Headers),
        2 => (0u8..4).prop_map(|flips| Fill::Stream { flips }),
    ]
}

fn header_bytes(h: RecordHeader) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0..4].copy_from_slice(&h.len.to_ne_bytes());
    b[4..8].copy_from_slice(&h.tag.to_ne_bytes());
    b
}

/// A record header with "interesting" fields for a slot at region offset `off`.
fn interesting_header(rng: &mut SmallRng, cap: u64, max: u32, off: u64) -> RecordHeader {
    let to_end = cap - off;
    let tag = match rng.random_range(0..8) {
        0 => 0,
        1 => MAX_DATA_TAG + 1 + rng.random_range(0..4),
        2 => rng.random(),
        3 | 4 => TAG_PAD,
        _ => rng.random_range(1..=MAX_DATA_TAG),
    };
    let len = match rng.random_range(0..8) {
        0 => (to_end - 8) as u32,
        7 => (to_end - 8) as u32 + rng.random_range(1..=16),
        1 => max,
        2 => max + 1,
        3 => rng.random(),
        4 => u32::MAX,
        _ => rng.random_range(0..=max.min(64)),
    };
    RecordHeader { len, tag }
}

/// Fills the region of `shm` as `fill` says, with a valid stream starting at index `from`;
/// returns the stream's record boundaries as offsets from `from` (empty when no stream was laid).
fn fill_region(shm: &Shm, fill: Fill, seed: u64, from: u64) -> Vec<u64> {
    let mut bounds = Vec::new();
    let mut rng = SmallRng::seed_from_u64(seed);
    let (cap, max) = (shm.capacity, shm.max_record as u32);
    let mut bytes = vec![0u8; cap as usize];
    rng.fill(&mut bytes[..]);
    match fill {
        Fill::Random => {}
        Fill::Headers => {
            for off in (0..cap).step_by(RECORD_HEADER_SIZE) {
                if rng.random_bool(0.5) {
                    let h = interesting_header(&mut rng, cap, max, off);
                    bytes[off as usize..off as usize + 8].copy_from_slice(&header_bytes(h));
                }
            }
        }
        Fill::Stream { flips } => {
            // Lay records around the whole region from `from`, as an honest producer would.
            let mut off = from & (cap - 1);
            let mut laid = 0;
            while laid < cap {
                let len = rng.random_range(0..=max);
                let fp = record_footprint(len);
                let to_end = cap - off;
                let h = if fp > to_end {
                    RecordHeader {
                        len: (to_end - 8) as u32,
                        tag: TAG_PAD,
                    }
                } else {
                    RecordHeader {
                        len,
                        tag: rng.random_range(1..=MAX_DATA_TAG),
                    }
                };
                bytes[off as usize..off as usize + 8].copy_from_slice(&header_bytes(h));
                let step = if h.tag == TAG_PAD { to_end } else { fp };
                laid += step;
                if laid <= cap {
                    bounds.push(laid);
                }
                off = (off + step) & (cap - 1);
            }
            for _ in 0..flips {
                let i = rng.random_range(0..cap as usize);
                bytes[i] ^= 1 << rng.random_range(0..8);
            }
        }
    }
    shm.write(0, &bytes);
    bounds
}

/// Whether an endpoint may attach at these indices (the rule both constructors apply).
fn attachable(cap: u64, head: u64, tail: u64) -> bool {
    head % 8 == 0
        && tail % 8 == 0
        && tail <= head
        && head - tail <= cap
        && head <= crate::ring::MAX_INDEX
}

/// Ring geometry for the fuzz: small regions (256 B ..= 4 KiB), so random headers are hit often.
fn geometry() -> impl Strategy<Value = (u64, u64)> {
    (8u32..=12, any::<u16>()).prop_map(|(shift, frac)| {
        let cap = 1u64 << shift;
        let limit = amp_shm_layout::max_record_limit(cap);
        (cap, 1 + u64::from(frac) * (limit - 1) / 65535)
    })
}

/// What the peer or the consumer's owner does between reads.
#[derive(Debug, Clone)]
enum ConsumerEv {
    Read,
    /// `read_batch` of at most this many records.
    ReadBatch(u8),
    Release,
    HasData,
    /// `prepare_sleep` then (unless it said "data") `finish_sleep`.
    Sleep,
    /// The producer stores a new head relative to the current one.
    SetHead(IndexSel),
    /// The producer scribbles `len` random bytes at `off`.
    Scribble {
        off: u64,
        len: u8,
        seed: u64,
    },
    SetReleaseEvery(u32),
}

fn consumer_ev(cap: u64) -> impl Strategy<Value = ConsumerEv> {
    prop_oneof![
        8 => Just(ConsumerEv::Read),
        3 => (0u8..=16).prop_map(ConsumerEv::ReadBatch),
        1 => Just(ConsumerEv::Release),
        1 => Just(ConsumerEv::HasData),
        1 => Just(ConsumerEv::Sleep),
        2 => head_sel(cap).prop_map(ConsumerEv::SetHead),
        2 => (0..cap, 1u8..=16, any::<u64>()).prop_map(|(off, len, seed)| ConsumerEv::Scribble { off, len, seed }),
        1 => (0u32..=40).prop_map(ConsumerEv::SetReleaseEvery),
    ]
}

/// Checks a record the consumer handed out: inside the region, within `max_record`, a data tag,
/// and exactly what its header in the region says.
fn check_handed_out(shm: &Shm, rec: Record<'_>) {
    let region = shm.region();
    let data = rec.data();
    let start = data.as_ptr() as usize;
    assert!(
        start >= region.start + RECORD_HEADER_SIZE && start + data.len() <= region.end,
        "record of {} bytes at {start:#x} outside the region {region:x?}",
        data.len()
    );
    assert!(
        data.len() <= shm.max_record as usize,
        "record longer than max_record"
    );
    assert!(rec.tag() >= 1, "tag 0 handed out");
    let off = (start - region.start - RECORD_HEADER_SIZE) as u64;
    assert_eq!(off % 8, 0, "record header unaligned");
    let h = shm.record_header(off);
    assert_eq!(
        (h.len as usize, h.tag),
        (data.len(), u32::from(rec.tag())),
        "record differs from its header"
    );
    assert!(
        off + record_footprint(h.len) <= shm.capacity,
        "record crosses the end"
    );
}

/// After a `Corrupt(c)`: the consumer stays poisoned with `c` whatever is called next.
fn check_sticky(rx: &mut Consumer, c: Corruption) {
    assert_eq!(
        rx.read().map(|r| r.is_some()),
        Err(RingError::Corrupt(c)),
        "poison is sticky"
    );
    assert_eq!(
        rx.read_batch(8, |_| true),
        Err(RingError::Corrupt(c)),
        "poison is sticky"
    );
    assert_eq!(
        rx.has_data(),
        Err(RingError::Corrupt(c)),
        "poison is sticky"
    );
}

/// Reads once and checks the outcome; returns the corruption when the consumer is poisoned.
fn checked_read(shm: &Shm, rx: &mut Consumer) -> Option<Corruption> {
    match rx.read() {
        Ok(None) => None,
        Ok(Some(rec)) => {
            check_handed_out(shm, rec);
            None
        }
        Err(RingError::Corrupt(c)) => {
            check_sticky(rx, c);
            Some(c)
        }
        Err(e) => panic!("read returned {e:?}"),
    }
}

/// `read_batch` of at most `max` records, each checked; returns the corruption when the consumer
/// is poisoned.
fn checked_read_batch(shm: &Shm, rx: &mut Consumer, max: usize) -> Option<Corruption> {
    let mut seen = 0;
    let r = rx.read_batch(max, |rec| {
        check_handed_out(shm, rec);
        seen += 1;
        true
    });
    assert!(
        seen <= max,
        "read_batch handed out {seen} records, max {max}"
    );
    match r {
        Ok(n) => {
            assert_eq!(n, seen, "read_batch's count");
            None
        }
        Err(RingError::Corrupt(c)) => {
            check_sticky(rx, c);
            Some(c)
        }
        Err(e) => panic!("read_batch returned {e:?}"),
    }
}

/// Checks a `has_data`/`prepare_sleep` style outcome: a value or a corruption.
fn ok_or_corrupt<T: fmt::Debug>(r: Result<T, RingError>) -> Option<Corruption> {
    match r {
        Ok(_) => None,
        Err(RingError::Corrupt(c)) => Some(c),
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: FUZZ_CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Consumer fuzz target: arbitrary region bytes and head/tail values, then a bounded drain.
    #[test]
    fn fuzz_consumer(
        (cap, max, tail0, head0, events) in geometry().prop_flat_map(|(cap, max)| (
            Just(cap),
            Just(max),
            index(cap),
            head_sel(cap),
            prop::collection::vec(consumer_ev(cap), 0..48),
        )),
        (fill, seed) in (fill_strategy(), any::<u64>()),
    ) {
        // The laid stream (if any) starts at the consumer's position (kept attachable: the
        // low bits, hence the region position, are those of `tail0`).
        let start = tail0 & !7 & (crate::ring::MAX_INDEX - 1);
        let shm = Shm::new(cap, max);
        let bounds = fill_region(&shm, fill, seed, start);
        let head_sel = head0;
        let head0 = head_sel.resolve(tail0, start, &bounds, cap);
        shm.set_head(head0);
        shm.set_tail(tail0);
        let mut rx = match shm.consumer() {
            Ok(rx) => {
                prop_assert!(attachable(cap, head0, tail0), "attached at head {} tail {}", head0, tail0);
                rx
            }
            Err(e) => {
                prop_assert!(!attachable(cap, head0, tail0));
                prop_assert_eq!(e, RingError::Corrupt(Corruption::TailInvalid { tail: tail0, head: head0 }));
                // Attach at a valid position instead; the bad head arrives after attaching.
                shm.set_head(start);
                shm.set_tail(start);
                let rx = shm.consumer().expect("equal aligned indices attach");
                shm.set_head(head_sel.resolve(start, start, &bounds, cap));
                rx
            }
        };
        let mut poisoned = None;
        for ev in &events {
            let c = match ev {
                ConsumerEv::Read => checked_read(&shm, &mut rx),
                ConsumerEv::ReadBatch(max) => checked_read_batch(&shm, &mut rx, usize::from(*max)),
                ConsumerEv::Release => {
                    rx.release();
                    None
                }
                ConsumerEv::HasData => ok_or_corrupt(rx.has_data()),
                ConsumerEv::Sleep => {
                    let r = rx.prepare_sleep();
                    if r == Ok(false) {
                        prop_assert!(shm.sleeping() % 2 == 1, "sleeping flag is an odd epoch");
                        rx.finish_sleep();
                    }
                    prop_assert_eq!(shm.sleeping(), 0);
                    ok_or_corrupt(r)
                }
                ConsumerEv::SetHead(sel) => {
                    shm.set_head(sel.resolve(shm.head(), start, &bounds, cap));
                    None
                }
                ConsumerEv::Scribble { off, len, seed } => {
                    let len = u64::from(*len).min(cap - off);
                    let mut b = vec![0u8; len as usize];
                    SmallRng::seed_from_u64(*seed).fill(&mut b[..]);
                    shm.write(*off, &b);
                    None
                }
                ConsumerEv::SetReleaseEvery(n) => {
                    rx.set_release_every(*n);
                    None
                }
            };
            if let Some(c) = c {
                if let Some(p) = poisoned {
                    prop_assert_eq!(p, c, "a poisoned consumer reports its first corruption");
                }
                poisoned = Some(c);
            }
        }
        // Drain: each read consumes at least 8 bytes of at most `capacity` published ones, so
        // the ring reads as empty (or poisoned) within capacity/8 reads.
        let mut empty = false;
        for _ in 0..cap / 8 + 2 {
            if let Some(c) = checked_read(&shm, &mut rx) {
                if let Some(p) = poisoned {
                    prop_assert_eq!(p, c);
                }
                poisoned = Some(c);
                break;
            }
            if poisoned.is_none() && rx.has_data() == Ok(false) {
                empty = true;
                break;
            }
        }
        prop_assert!(empty || poisoned.is_some(), "the drain neither ended nor failed");
    }
}

/// What the consumer's side (the peer of the fuzzed producer) does between reservations.
#[derive(Debug, Clone)]
enum ProducerEv {
    /// Reserve `frac/65536` of `max_record + 1` bytes; then commit, commit a prefix, or abandon.
    Reserve {
        frac: u16,
        tag: u16,
        finish: u8,
    },
    Publish,
    /// `write_many` of `n` records of `frac/65536` of `max_record + 1` bytes.
    WriteMany {
        n: u8,
        frac: u16,
    },
    /// The consumer stores a new tail relative to the shared head.
    SetTail(IndexSel),
    SetSleeping(u32),
    /// The consumer scribbles over `head` (the producer must not care: it only writes it).
    SetHead(u64),
}

fn producer_ev(cap: u64) -> impl Strategy<Value = ProducerEv> {
    prop_oneof![
        8 => (any::<u16>(), 1u16..=u16::MAX, 0u8..4).prop_map(|(frac, tag, finish)| ProducerEv::Reserve { frac, tag, finish }),
        3 => Just(ProducerEv::Publish),
        3 => (0u8..=24, any::<u16>()).prop_map(|(n, frac)| ProducerEv::WriteMany { n, frac }),
        3 => tail_sel(cap).prop_map(ProducerEv::SetTail),
        1 => prop_oneof![Just(0u32), any::<u32>()].prop_map(ProducerEv::SetSleeping),
        1 => index(cap).prop_map(ProducerEv::SetHead),
    ]
}

/// After a publish that had something to publish: the shared head moved forward, 8-aligned.
fn check_published(shm: &Shm, published: &mut u64) -> Result<(), TestCaseError> {
    let now = shm.head();
    prop_assert!(
        now > *published && now % 8 == 0,
        "published head {} after {}",
        now,
        *published
    );
    *published = now;
    Ok(())
}

/// Producer attach indices: anything (often refused), or a plausible pair. Heads are kept below
/// 2^62: see [`producer_attached_near_the_index_limit_overflows`] for what happens above.
fn producer_attach(cap: u64) -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        1 => (index(cap), index(cap)),
        3 => ((0u64..1 << 59), (0..=cap / 8)).prop_map(|(t, d)| (t * 8 + d * 8, t * 8)),
    ]
    .prop_filter("head below 2^62 when attachable", move |&(h, t)| {
        !attachable(cap, h, t) || h < 1 << 62
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: FUZZ_CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Producer fuzz target: arbitrary attach indices, then reservations while the consumer
    /// writes arbitrary `tail` and `sleeping` values.
    #[test]
    fn fuzz_producer(
        (cap, max, (head0, tail0), events) in geometry().prop_flat_map(|(cap, max)| (
            Just(cap),
            Just(max),
            producer_attach(cap),
            prop::collection::vec(producer_ev(cap), 0..64),
        )),
    ) {
        let shm = Shm::with_indices(cap, max, head0, tail0);
        let mut tx = match shm.producer() {
            Ok(tx) => {
                prop_assert!(attachable(cap, head0, tail0));
                tx
            }
            Err(e) => {
                prop_assert!(!attachable(cap, head0, tail0));
                prop_assert_eq!(e, RingError::Corrupt(Corruption::TailInvalid { tail: tail0, head: head0 }));
                let t = (tail0 & !7) % (1 << 62);
                shm.set_head(t);
                shm.set_tail(t);
                shm.producer().expect("equal aligned indices attach")
            }
        };
        let region = shm.region();
        let mut published = shm.head();
        let mut poisoned: Option<Corruption> = None;
        for ev in &events {
            match *ev {
                ProducerEv::Reserve { frac, tag, finish } => {
                    let len = usize::from(frac) * (max as usize + 1) / 65536;
                    let pending = tx.unpublished_bytes();
                    match tx.reserve(len, tag) {
                        Ok(mut r) => {
                            prop_assert!(poisoned.is_none(), "reserve succeeded on a poisoned producer");
                            let start = r.as_ptr() as usize;
                            prop_assert_eq!(r.len(), len);
                            prop_assert!(start >= region.start + RECORD_HEADER_SIZE && start + len <= region.end);
                            let off = (start - region.start - RECORD_HEADER_SIZE) as u64;
                            r.fill(0x5A);
                            // `None`: abandoned, the reservation goes out of scope uncommitted.
                            let kept = match finish {
                                0 => None,
                                1 => Some(len / 2),
                                _ => Some(len),
                            };
                            if let Some(k) = kept {
                                r.commit_len(k);
                                let h = shm.record_header(off);
                                prop_assert_eq!(h, RecordHeader { len: k as u32, tag: u32::from(tag) });
                            }
                        }
                        Err(RingError::Full { needed, free }) => {
                            prop_assert!(poisoned.is_none(), "Full from a poisoned producer");
                            prop_assert!(free < needed);
                            prop_assert!(needed <= cap);
                            // Full publishes what was pending.
                            prop_assert_eq!(tx.unpublished_bytes(), 0);
                            if pending > 0 {
                                check_published(&shm, &mut published)?;
                            }
                        }
                        Err(RingError::Corrupt(c)) => {
                            if let Some(p) = poisoned {
                                prop_assert_eq!(p, c, "a poisoned producer reports its first corruption");
                            }
                            poisoned = Some(c);
                            prop_assert_eq!(tx.push(1, b"x"), Err(RingError::Corrupt(c)), "poison is sticky");
                        }
                        Err(e) => prop_assert!(false, "reserve({}, {}) returned {:?}", len, tag, e),
                    }
                }
                ProducerEv::Publish => {
                    let pending = tx.unpublished_bytes();
                    let _ = tx.publish();
                    prop_assert_eq!(tx.unpublished_bytes(), 0);
                    if pending > 0 {
                        check_published(&shm, &mut published)?;
                    }
                }
                ProducerEv::WriteMany { n, frac } => {
                    let len = usize::from(frac) * (max as usize + 1) / 65536;
                    let pending = tx.unpublished_bytes();
                    let got = tx.write_many(usize::from(n), len, 7, |_, buf| {
                        // Every buffer handed out lies inside the data region, after a header.
                        let start = buf.as_ptr() as usize;
                        assert!(start >= region.start + RECORD_HEADER_SIZE && start + buf.len() <= region.end);
                        buf.fill(0x3C);
                        buf.len()
                    });
                    match got {
                        Ok(w) => {
                            prop_assert!(poisoned.is_none(), "write_many succeeded on a poisoned producer");
                            prop_assert!(w.records <= usize::from(n));
                            // Whatever it wrote is published (also when it stopped at Full).
                            prop_assert_eq!(tx.unpublished_bytes(), 0);
                            if w.records > 0 || pending > 0 {
                                check_published(&shm, &mut published)?;
                            }
                        }
                        Err(RingError::Corrupt(c)) => {
                            if let Some(p) = poisoned {
                                prop_assert_eq!(p, c, "a poisoned producer reports its first corruption");
                            }
                            poisoned = Some(c);
                        }
                        Err(e) => prop_assert!(false, "write_many({}, {}) returned {:?}", n, len, e),
                    }
                }
                ProducerEv::SetTail(ref sel) => shm.set_tail(sel.resolve(published, 0, &[], cap)),
                ProducerEv::SetSleeping(v) => shm.set_sleeping(v),
                ProducerEv::SetHead(v) => shm.set_head(v),
            }
        }
    }
}

/// A producer that attaches where `head` is within a record of `u64::MAX` (the indices are
/// aligned and equal, so `Producer::new` accepts them) overflows its `u64` index on the next
/// reservation: a debug build panics ("attempt to add with overflow" in `Producer::reserve`),
/// a release build wraps and publishes a head that went backwards.
///
/// Free-running indices never get there by counting (2^64 bytes), only by attaching to memory
/// a peer (or a stale segment) left in that state. Fixed: indices above `MAX_INDEX` (2^62)
/// are refused at attach (and as a consumer's head), so the additions cannot overflow.
#[test]
fn producer_attached_near_the_index_limit_overflows() {
    let shm = Shm::with_indices(256, 64, u64::MAX - 7, u64::MAX - 7);
    let attached = shm.producer();
    assert!(
        attached.is_err(),
        "indices near u64::MAX must be refused at attach"
    );
    assert!(
        shm.consumer().is_err(),
        "indices near u64::MAX must be refused at attach"
    );
    if let Ok(mut tx) = attached {
        // Expected: an error (refused attach or Corrupt), never a panic.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tx.push(1, b"12345678")));
        assert!(
            r.is_ok(),
            "reserve panicked on a producer attached at head u64::MAX - 7"
        );
    }
}
