//! Property test: a producer/consumer pair driven by random operation sequences, checked after
//! every operation against a `VecDeque` model with its own byte accounting.
//!
//! The model decides, independently of the ring code, where each record and padding record
//! lands, whether a reservation must fail with `Full` (and with which `needed`/`free`), which
//! record a read returns, where the shared `head`/`tail` stand, and whether `publish` must ask for
//! a wakeup. Payloads carry their sequence number and a checksum.

use std::collections::VecDeque;

use amp_shm_layout::{max_record_limit, record_footprint, RecordHeader, TAG_PAD};
use proptest::prelude::*;

use super::*;

/// How a reservation length is chosen, relative to the ring's `max_record`.
#[derive(Debug, Clone)]
enum Len {
    /// A small absolute length (may still exceed a tiny `max_record`).
    Small(u16),
    /// `frac / 65536` of `max_record + 1`.
    Frac(u16),
    /// Exactly `max_record`.
    Max,
    /// `max_record + 1 + n`: always too large.
    Over(u16),
    /// `usize::MAX`: too large, and does not even fit in a `u32`.
    Huge,
}

impl Len {
    fn resolve(&self, max: u32) -> usize {
        let max = max as usize;
        match *self {
            Self::Small(n) => usize::from(n),
            Self::Frac(f) => usize::from(f) * (max + 1) / 65536,
            Self::Max => max,
            Self::Over(n) => max + 1 + usize::from(n),
            Self::Huge => usize::MAX,
        }
    }
}

/// What happens to a successful reservation.
#[derive(Debug, Clone)]
enum Finish {
    Commit,
    /// `commit_len` with `frac / 256` of the reserved length (above 1: clamped by the ring).
    CommitLen(u16),
    /// Dropped without committing.
    Abandon,
}

#[derive(Debug, Clone)]
enum Op {
    Reserve {
        len: Len,
        tag: u16,
        finish: Finish,
    },
    Publish,
    /// Up to this many reads (stopping at the first `None`).
    Read(u8),
    /// `Consumer::read_batch` of at most `max` records, the callback stopping after `stop_after`
    /// (0: never).
    ReadBatch {
        max: u8,
        stop_after: u8,
    },
    Release,
    PrepareSleep,
    FinishSleep,
    HasData,
    /// Push records of this length until `Full`, publish, drain the consumer completely, release,
    /// and retry: the retry must succeed.
    FillDrain(Len),
    /// `Producer::write_many` of `n` records, each filled with `frac / 256` of its length (above
    /// 1: clamped by the ring).
    WriteMany {
        n: u8,
        len: Len,
        tag: u16,
        frac: u16,
    },
}

fn len_strategy() -> impl Strategy<Value = Len> {
    prop_oneof![
        4 => (0u16..=64).prop_map(Len::Small),
        6 => any::<u16>().prop_map(Len::Frac),
        1 => Just(Len::Max),
        1 => (0u16..=16).prop_map(Len::Over),
        1 => Just(Len::Huge),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let finish = prop_oneof![
        6 => Just(Finish::Commit),
        2 => (0u16..=320).prop_map(Finish::CommitLen),
        1 => Just(Finish::Abandon),
    ];
    // Tag 0 is invalid (InvalidTag); the rest are valid data tags.
    let tag = prop_oneof![1 => Just(0u16), 20 => 1u16..=u16::MAX];
    let tag2 = prop_oneof![1 => Just(0u16), 20 => 1u16..=u16::MAX];
    prop_oneof![
        12 => (len_strategy(), tag, finish).prop_map(|(len, tag, finish)| Op::Reserve { len, tag, finish }),
        4 => Just(Op::Publish),
        6 => (1u8..=8).prop_map(Op::Read),
        3 => (0u8..=40, prop_oneof![3 => Just(0u8), 1 => 1u8..=8])
            .prop_map(|(max, stop_after)| Op::ReadBatch { max, stop_after }),
        2 => Just(Op::Release),
        1 => Just(Op::PrepareSleep),
        1 => Just(Op::FinishSleep),
        1 => Just(Op::HasData),
        1 => len_strategy().prop_map(Op::FillDrain),
        4 => (0u8..=40, len_strategy(), tag2, 0u16..=320)
            .prop_map(|(n, len, tag, frac)| Op::WriteMany { n, len, tag, frac }),
    ]
}

/// Ring geometry: capacity 256 ..= 64 KiB (powers of two), a valid `max_record` (often small
/// relative to the capacity, sometimes the largest allowed), and the consumer's release batch.
fn geometry() -> impl Strategy<Value = (u64, u64, u32)> {
    (
        8u32..=16,
        any::<u16>(),
        prop_oneof![Just(0u16), Just(u16::MAX), any::<u16>()],
        1u32..=40,
    )
        .prop_map(|(shift, small, frac, every)| {
            let cap = 1u64 << shift;
            let limit = max_record_limit(cap);
            let max = if small % 3 == 0 {
                1 + u64::from(small) % 64.min(limit)
            } else {
                1 + u64::from(frac) * (limit - 1) / 65535
            };
            (cap, max, every)
        })
}

/// One entry of the model: a padding record or a data record, at its ring index.
#[derive(Debug, Clone)]
struct Item {
    at: u64,
    size: u64,
    /// `None` for padding; otherwise (sequence number, tag, payload length).
    rec: Option<(u64, u16, u32)>,
}

/// What the model says a reservation must do.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Err(RingError),
    /// Succeeds; a padding record of `pad` bytes is written first when `Some`.
    Ok {
        pad: Option<u64>,
    },
}

/// The reference model of one ring, its producer, and its consumer.
#[derive(Debug)]
struct Model {
    cap: u64,
    max: u32,
    // Producer.
    head: u64,
    published: u64,
    /// Committed, not yet published.
    pending: VecDeque<Item>,
    wake_owed: bool,
    woken_this_sleep: bool,
    next_seq: u64,
    stats: ProducerStats,
    // Published, unread (front: next to read). Contiguous from the consumer's `tail`.
    queue: VecDeque<Item>,
    // Consumer.
    tail: u64,
    released: u64,
    cached_head: u64,
    unreleased: u32,
    release_every: u32,
    sleeping: bool,
    records_read: u64,
}

impl Model {
    fn new(cap: u64, max: u32, release_every: u32) -> Self {
        Self {
            cap,
            max,
            head: 0,
            published: 0,
            pending: VecDeque::new(),
            wake_owed: false,
            woken_this_sleep: false,
            next_seq: 0,
            stats: ProducerStats::default(),
            queue: VecDeque::new(),
            tail: 0,
            released: 0,
            cached_head: 0,
            unreleased: 0,
            release_every,
            sleeping: false,
            records_read: 0,
        }
    }

    /// Bytes the producer may write now: everything not between the released tail and its head.
    fn free(&self) -> u64 {
        self.cap - (self.head - self.released)
    }

    fn expect_reserve(&self, len: usize, tag: u16) -> Expect {
        if tag == 0 {
            return Expect::Err(RingError::InvalidTag);
        }
        if len > self.max as usize {
            return Expect::Err(RingError::TooLarge { len, max: self.max });
        }
        let fp = record_footprint(u32::try_from(len).expect("len <= max"));
        let to_end = self.cap - self.head % self.cap;
        let (needed, pad) = if fp <= to_end {
            (fp, None)
        } else {
            (to_end + fp, Some(to_end))
        };
        if self.free() < needed {
            return Expect::Err(RingError::Full {
                needed,
                free: self.free(),
            });
        }
        Expect::Ok { pad }
    }

    fn pad(&mut self, size: u64) {
        self.pending.push_back(Item {
            at: self.head,
            size,
            rec: None,
        });
        self.head += size;
    }

    /// A committed record: returns its sequence number.
    fn commit(&mut self, tag: u16, len: u32) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let size = record_footprint(len);
        self.pending.push_back(Item {
            at: self.head,
            size,
            rec: Some((seq, tag, len)),
        });
        self.head += size;
        self.stats.records += 1;
        seq
    }

    fn publish_pending(&mut self) {
        if self.head == self.published {
            return;
        }
        self.published = self.head;
        self.queue.extend(self.pending.drain(..));
        self.stats.publishes += 1;
        if self.sleeping && !self.woken_this_sleep {
            self.woken_this_sleep = true;
            self.stats.wakeups += 1;
            self.wake_owed = true;
        }
    }

    fn publish(&mut self) -> bool {
        self.publish_pending();
        std::mem::take(&mut self.wake_owed)
    }

    fn release(&mut self) {
        if self.tail != self.released {
            self.released = self.tail;
            self.unreleased = 0;
        }
    }

    /// The record the next read must return (`None`: the ring reads as empty).
    fn read(&mut self) -> Option<Item> {
        if self.unreleased >= self.release_every {
            self.release();
        }
        loop {
            if self.tail == self.cached_head {
                self.cached_head = self.published;
                if self.tail == self.cached_head {
                    return None;
                }
            }
            let item = self
                .queue
                .pop_front()
                .expect("published bytes hold an item");
            assert_eq!(item.at, self.tail, "model items are contiguous");
            self.tail += item.size;
            if item.rec.is_some() {
                self.unreleased += 1;
                self.records_read += 1;
                return Some(item);
            }
        }
    }

    /// The records `Consumer::read_batch(max, ..)` must hand out when its callback stops after
    /// `stop_after` records; everything read is released afterwards.
    fn read_batch(&mut self, max: usize, stop_after: usize) -> Vec<Item> {
        if self.tail == self.cached_head {
            self.release();
            self.cached_head = self.published;
        }
        let mut out = Vec::new();
        while out.len() < max && self.tail != self.cached_head {
            let item = self
                .queue
                .pop_front()
                .expect("published bytes hold an item");
            assert_eq!(item.at, self.tail, "model items are contiguous");
            self.tail += item.size;
            if item.rec.is_some() {
                self.records_read += 1;
                out.push(item);
                if out.len() == stop_after {
                    break;
                }
            }
        }
        self.release();
        out
    }

    fn has_data(&mut self) -> bool {
        if self.tail == self.cached_head {
            self.cached_head = self.published;
        }
        self.tail != self.cached_head
    }

    fn prepare_sleep(&mut self) -> bool {
        self.release();
        if self.tail != self.cached_head {
            return true;
        }
        self.sleeping = true;
        self.woken_this_sleep = false;
        if self.has_data() {
            self.sleeping = false;
            return true;
        }
        false
    }
}

/// The system under test and its model, side by side.
struct Harness {
    shm: Shm,
    tx: Producer,
    rx: Consumer,
    m: Model,
}

impl Harness {
    fn new(cap: u64, max: u64, every: u32) -> Self {
        let shm = Shm::new(cap, max);
        let (tx, mut rx) = shm.pair();
        rx.set_release_every(every);
        let m = Model::new(cap, u32::try_from(max).expect("max_record fits u32"), every);
        Self { shm, tx, rx, m }
    }

    /// Shared and local state agree with the model.
    fn check_state(&mut self) {
        let m = &self.m;
        assert_eq!(self.shm.head(), m.published, "shared head");
        assert_eq!(self.shm.tail(), m.released, "shared tail");
        assert_eq!(self.shm.sleeping() != 0, m.sleeping, "sleeping flag");
        if m.sleeping {
            assert_eq!(self.shm.sleeping() % 2, 1, "a sleep epoch is odd");
        }
        assert_eq!(
            self.tx.unpublished_bytes(),
            m.head - m.published,
            "unpublished bytes"
        );
        assert!(
            self.tx.free_cached() <= m.free(),
            "the cached free space never overestimates"
        );
        assert_eq!(self.tx.stats(), m.stats, "producer stats");
        assert_eq!(self.rx.records(), m.records_read, "consumer record count");
    }

    /// One reservation, checked against the model; returns the outcome.
    fn reserve(&mut self, len: usize, tag: u16, finish: &Finish) -> Result<(), RingError> {
        let expect = self.m.expect_reserve(len, tag);
        let got = self.tx.reserve(len, tag);
        let mut r = match (got, expect) {
            (Ok(r), Expect::Ok { pad }) => {
                if let Some(size) = pad {
                    let at = self.m.head;
                    self.m.pad(size);
                    // Padding is written at reservation time, before any commit.
                    let h = self.shm.record_header(at);
                    assert_eq!(
                        h,
                        RecordHeader {
                            len: (size - 8) as u32,
                            tag: TAG_PAD
                        },
                        "padding header"
                    );
                }
                r
            }
            (Err(e), Expect::Err(x)) => {
                assert_eq!(e, x, "reserve({len}, {tag}) error");
                if matches!(e, RingError::Full { .. }) {
                    // Full publishes everything committed so the consumer can drain it.
                    self.m.publish_pending();
                    assert!(self.m.pending.is_empty());
                    assert_eq!(
                        self.shm.head(),
                        self.m.head,
                        "Full published the pending records"
                    );
                }
                return Err(e);
            }
            (got, expect) => panic!(
                "reserve({len}, {tag}): got {:?}, model expects {expect:?}",
                got.map(|_| ())
            ),
        };
        assert_eq!(r.len(), len, "reservation length");
        assert_eq!(r.tag(), tag);
        let region = self.shm.region();
        let start = r.as_ptr() as usize;
        assert!(
            start >= region.start && start + len <= region.end,
            "reservation inside the region"
        );
        assert_eq!(
            (start - region.start) as u64,
            (self.m.head % self.m.cap) + 8,
            "reservation offset"
        );
        match *finish {
            Finish::Commit => {
                let seq = self.m.next_seq;
                r.copy_from_slice(&payload(seq, len));
                r.commit();
                self.m.commit(tag, len as u32);
            }
            Finish::CommitLen(frac) => {
                let asked = len * usize::from(frac) / 256;
                let kept = asked.min(len);
                let seq = self.m.next_seq;
                r[..kept].copy_from_slice(&payload(seq, kept));
                r[kept..].fill(0xA5);
                r.commit_len(asked);
                self.m.commit(tag, kept as u32);
            }
            // The reservation goes out of scope uncommitted.
            Finish::Abandon => {}
        }
        Ok(())
    }

    /// One `write_many`, checked against the model: the records, padding, `Full` stop, publish
    /// and wakeup decision are those of `n` reservations followed by a publish.
    fn write_many(&mut self, n: usize, len: usize, tag: u16, frac: u16) {
        let asked = len.saturating_mul(usize::from(frac)) / 256;
        if let Expect::Err(e @ (RingError::InvalidTag | RingError::TooLarge { .. })) =
            self.m.expect_reserve(len, tag)
        {
            let got = self
                .tx
                .write_many(n, len, tag, |_, _| unreachable!("nothing is written"));
            assert_eq!(got, Err(e), "write_many({n}, {len}, {tag}) error");
            return;
        }
        let kept = asked.min(len);
        let base = self.m.next_seq;
        let mut records = 0;
        for _ in 0..n {
            match self.m.expect_reserve(len, tag) {
                Expect::Ok { pad } => {
                    if let Some(size) = pad {
                        self.m.pad(size);
                    }
                    self.m.commit(tag, kept as u32);
                    records += 1;
                }
                Expect::Err(RingError::Full { .. }) => {
                    // Stops, with everything committed published.
                    self.m.publish_pending();
                    break;
                }
                Expect::Err(e) => panic!("model: unexpected {e} inside write_many"),
            }
        }
        let wake = self.m.publish();
        let region = self.shm.region();
        let got = self
            .tx
            .write_many(n, len, tag, |i, buf| {
                assert_eq!(buf.len(), len, "write_many hands out `len` bytes");
                let start = buf.as_ptr() as usize;
                assert!(start >= region.start && start + len <= region.end);
                buf[..kept].copy_from_slice(&payload(base + i as u64, kept));
                buf[kept..].fill(0xA5);
                asked
            })
            .expect("an honest consumer never corrupts the ring");
        assert_eq!(
            got,
            Written { records, wake },
            "write_many({n}, {len}, {tag}): records written and wakeup"
        );
    }

    fn publish(&mut self) {
        assert_eq!(
            self.tx.publish(),
            self.m.publish(),
            "publish's wakeup decision"
        );
    }

    /// One read, checked against the model; returns whether a record was read.
    fn read(&mut self) -> bool {
        let expect = self.m.read();
        let region = self.shm.region();
        let got = self
            .rx
            .read()
            .expect("an honest producer never corrupts the ring");
        match (got, expect) {
            (None, None) => false,
            (Some(rec), Some(item)) => {
                check_record(rec, &item, &region, self.m.cap);
                true
            }
            (got, expect) => panic!(
                "read: got {:?}, model expects {expect:?}",
                got.map(|r| (r.tag(), r.data().len()))
            ),
        }
    }

    /// One `read_batch` of at most `max` records whose callback stops after `stop_after`,
    /// checked against the model.
    fn read_batch(&mut self, max: usize, stop_after: usize) {
        let expect = self.m.read_batch(max, stop_after);
        let region = self.shm.region();
        let (cap, mut i) = (self.m.cap, 0);
        let n = self
            .rx
            .read_batch(max, |rec| {
                let item = expect.get(i).unwrap_or_else(|| {
                    panic!(
                        "read_batch handed out record {i}; the model expects {}",
                        expect.len()
                    )
                });
                check_record(rec, item, &region, cap);
                i += 1;
                stop_after == 0 || i < stop_after
            })
            .expect("an honest producer never corrupts the ring");
        assert_eq!(
            (n, i),
            (expect.len(), expect.len()),
            "read_batch({max}) records"
        );
    }

    fn run(&mut self, op: &Op) {
        match op {
            Op::Reserve { len, tag, finish } => {
                let len = len.resolve(self.m.max);
                let _ = self.reserve(len, *tag, finish);
            }
            Op::Publish => self.publish(),
            Op::Read(n) => {
                for _ in 0..*n {
                    if !self.read() {
                        break;
                    }
                }
            }
            Op::ReadBatch { max, stop_after } => {
                self.read_batch(usize::from(*max), usize::from(*stop_after));
            }
            Op::Release => {
                self.rx.release();
                self.m.release();
            }
            Op::PrepareSleep => {
                assert_eq!(
                    self.rx.prepare_sleep().unwrap(),
                    self.m.prepare_sleep(),
                    "prepare_sleep"
                );
            }
            Op::FinishSleep => {
                self.rx.finish_sleep();
                self.m.sleeping = false;
            }
            Op::HasData => assert_eq!(self.rx.has_data().unwrap(), self.m.has_data(), "has_data"),
            Op::FillDrain(len) => self.fill_drain(len.resolve(self.m.max).min(self.m.max as usize)),
            Op::WriteMany { n, len, tag, frac } => {
                let len = len.resolve(self.m.max);
                self.write_many(usize::from(*n), len, *tag, *frac);
            }
        }
        self.check_state();
    }

    fn fill_drain(&mut self, len: usize) {
        let bound = self.m.cap / 8 + 2;
        let mut full = false;
        for _ in 0..bound {
            match self.reserve(len, 1, &Finish::Commit) {
                Ok(()) => {}
                Err(RingError::Full { .. }) => {
                    full = true;
                    break;
                }
                Err(e) => panic!("fill: {e}"),
            }
        }
        assert!(
            full,
            "{bound} records of {len} bytes never filled a {}-byte ring",
            self.m.cap
        );
        self.publish();
        // Everything committed is published: the consumer drains the model's whole queue.
        let mut reads = 0;
        while self.read() {
            reads += 1;
            assert!(reads <= bound, "drain did not end");
        }
        assert!(
            self.m.queue.is_empty() && self.m.pending.is_empty(),
            "drained everything"
        );
        self.rx.release();
        self.m.release();
        self.check_state();
        self.reserve(len, 2, &Finish::Commit)
            .expect("an empty ring takes any record up to max_record");
    }
}

/// Checks a record the consumer handed out against the model's `item`: tag, length, position in
/// the region, payload.
fn check_record(rec: Record<'_>, item: &Item, region: &std::ops::Range<usize>, cap: u64) {
    let (seq, tag, len) = item.rec.expect("reads return data records");
    assert_eq!(rec.tag(), tag, "tag of record {seq}");
    assert_eq!(rec.data().len(), len as usize, "length of record {seq}");
    let start = rec.data().as_ptr() as usize;
    assert_eq!(
        (start - region.start) as u64,
        item.at % cap + 8,
        "position of record {seq}"
    );
    check_payload(rec.data(), seq);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// No loss, duplication, reordering or corruption; `Full`, `TooLarge` and `InvalidTag`
    /// exactly when the model says so; the shared indices, sleeping flag, wakeup decisions and
    /// counters match the model after every operation.
    #[test]
    fn ring_matches_model(
        (cap, max, every) in geometry(),
        ops in prop::collection::vec(op_strategy(), 1..300),
    ) {
        let mut h = Harness::new(cap, max, every);
        for op in &ops {
            h.run(op);
        }
        // Whatever the history, publishing and draining delivers every committed record.
        h.publish();
        while h.read() {}
        prop_assert!(h.m.queue.is_empty() && h.m.pending.is_empty());
        prop_assert_eq!(h.rx.records(), h.m.next_seq);
        h.rx.release();
        h.m.release();
        h.check_state();
    }
}

/// The model's byte accounting, on a hand-computed wrap: 256-byte ring, records of 100 bytes
/// (112 with header and alignment).
#[test]
fn model_accounting_by_hand() {
    let mut h = Harness::new(256, 120, 32);
    h.reserve(100, 1, &Finish::Commit).unwrap(); // [0, 112)
    h.reserve(100, 2, &Finish::Commit).unwrap(); // [112, 224)
                                                 // 32 bytes to the end: a third record needs 32 (padding) + 112 but only 32 are free.
    assert_eq!(
        h.reserve(100, 3, &Finish::Commit),
        Err(RingError::Full {
            needed: 144,
            free: 32
        })
    );
    assert_eq!(h.shm.head(), 224, "Full published the two records");
    assert!(h.read());
    h.rx.release();
    h.m.release();
    // 112 + 32 free now: the record goes to 0 behind a padding record at 224.
    h.reserve(100, 3, &Finish::Commit).unwrap();
    assert_eq!(
        h.shm.record_header(224),
        RecordHeader {
            len: 24,
            tag: TAG_PAD
        }
    );
    assert_eq!(h.shm.record_header(256), RecordHeader { len: 100, tag: 3 });
    h.publish();
    assert!(h.read() && h.read() && !h.read());
    h.check_state();
    assert_eq!(
        h.shm.tail(),
        112,
        "reads alone release nothing before release_every records"
    );
    h.rx.release();
    assert_eq!(
        h.shm.tail(),
        256 + 112,
        "release covers the padding and the record after it"
    );
}
