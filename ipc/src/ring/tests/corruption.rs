//! Deterministic corruption tests: a ring is filled through the real producer (or set up at
//! chosen indices), then one shared field is overwritten the way a buggy or malicious peer could,
//! and the endpoint must report exactly that [`Corruption`], keep reporting it, and not panic.
//!
//! Covered fields: the shared `head` (backwards, unaligned, overrun) and record headers (`tag`:
//! 0, between `MAX_DATA_TAG` and `TAG_PAD`; `len`: above `max_record`, past the published head,
//! across the end of the region; padding with a wrong `len` or past the head) as the consumer
//! sees them; the shared `tail` (backwards, ahead of the published head, unaligned) as the
//! producer sees it; both indices at attach time.

use amp_shm_layout::{RecordHeader, MAX_DATA_TAG, TAG_PAD};

use super::*;

/// The consumer reports `c` now and on every later call, and never lets its caller block.
#[track_caller]
fn assert_consumer_poisoned(shm: &Shm, rx: &mut Consumer, c: Corruption) {
    assert_eq!(
        rx.read().map(|r| r.map(|r| r.tag())),
        Err(RingError::Corrupt(c))
    );
    assert_eq!(
        rx.read().map(|r| r.is_some()),
        Err(RingError::Corrupt(c)),
        "sticky on read"
    );
    assert_eq!(
        rx.has_data(),
        Err(RingError::Corrupt(c)),
        "sticky on has_data"
    );
    // A poisoned consumer may say "data" (its caller then reads and gets the error) or report
    // the error; it must never tell its caller to block, and leaves the sleeping flag clear.
    assert_ne!(
        rx.prepare_sleep(),
        Ok(false),
        "a poisoned consumer must not go to sleep"
    );
    assert_eq!(shm.sleeping(), 0, "sleeping flag left clear");
    // Repairing the shared state does not un-poison the endpoint.
    assert_eq!(
        rx.read().map(|r| r.is_some()),
        Err(RingError::Corrupt(c)),
        "sticky after prepare_sleep"
    );
}

/// The producer reports `c` now and on every later reservation.
#[track_caller]
fn assert_producer_poisoned(tx: &mut Producer, c: Corruption) {
    assert_eq!(
        tx.reserve(8, 1).map(|r| r.len()),
        Err(RingError::Corrupt(c)),
        "sticky on reserve"
    );
    assert_eq!(
        tx.push(1, b"x"),
        Err(RingError::Corrupt(c)),
        "sticky on push"
    );
    // The poison check comes before argument checks: even a valid-looking small request fails.
    assert_eq!(
        tx.reserve(0, 1).map(|r| r.len()),
        Err(RingError::Corrupt(c))
    );
}

/// Pushes one record of `len` bytes with tag `tag`, panicking on error.
fn push(tx: &mut Producer, tag: u16, len: usize) {
    tx.push(tag, &payload(u64::from(tag), len)).expect("push");
}

/// Pushes 8-byte records (16 bytes each in the ring) until the ring is full; returns how many.
fn fill(tx: &mut Producer) -> u32 {
    let mut n = 0;
    loop {
        match tx.push(1, &[7; 8]) {
            Ok(()) => n += 1,
            Err(RingError::Full { .. }) => return n,
            Err(e) => panic!("fill: {e}"),
        }
        assert!(n <= 1 << 20, "ring never filled");
    }
}

/// Reads `n` records, panicking if any is missing.
fn read_n(rx: &mut Consumer, n: u32) {
    for i in 0..n {
        assert!(rx.read().expect("read").is_some(), "record {i} missing");
    }
}

/// A 256-byte ring (max_record 64) with three 8-byte records published at 0, 16, 32; all read.
fn three_read() -> (Shm, Producer, Consumer) {
    let shm = Shm::new(256, 64);
    let (mut tx, mut rx) = shm.pair();
    for tag in 1..=3 {
        push(&mut tx, tag, 8);
    }
    let _ = tx.publish();
    read_n(&mut rx, 3);
    assert!(rx.read().unwrap().is_none());
    (shm, tx, rx)
}

// --- consumer: the shared head ---

#[test]
fn head_backwards() {
    let (shm, _tx, mut rx) = three_read();
    shm.set_head(40);
    assert_consumer_poisoned(
        &shm,
        &mut rx,
        Corruption::HeadBackwards { seen: 48, now: 40 },
    );
}

#[test]
fn head_backwards_seen_by_has_data() {
    let (shm, _tx, mut rx) = three_read();
    shm.set_head(0);
    assert_eq!(
        rx.has_data(),
        Err(RingError::Corrupt(Corruption::HeadBackwards {
            seen: 48,
            now: 0
        }))
    );
    assert_consumer_poisoned(
        &shm,
        &mut rx,
        Corruption::HeadBackwards { seen: 48, now: 0 },
    );
}

#[test]
fn head_unaligned() {
    for head in [52, 49, 55, 48 + 256 + 4] {
        let (shm, _tx, mut rx) = three_read();
        shm.set_head(head);
        assert_consumer_poisoned(&shm, &mut rx, Corruption::HeadUnaligned { head });
    }
}

#[test]
fn head_overrun_counts_from_the_released_tail() {
    // Nothing released yet (release_every is 32): head may be at most 0 + 256.
    let (shm, _tx, mut rx) = three_read();
    shm.set_head(264);
    assert_consumer_poisoned(
        &shm,
        &mut rx,
        Corruption::HeadOverrun {
            head: 264,
            tail: 0,
            capacity: 256,
        },
    );

    let (shm, _tx, mut rx) = three_read();
    shm.set_head(u64::MAX - 7);
    assert_consumer_poisoned(
        &shm,
        &mut rx,
        Corruption::HeadOverrun {
            head: u64::MAX - 7,
            tail: 0,
            capacity: 256,
        },
    );

    // After a release at 48, the limit moves to 48 + 256.
    let (shm, _tx, mut rx) = three_read();
    rx.release();
    shm.set_head(312);
    assert_consumer_poisoned(
        &shm,
        &mut rx,
        Corruption::HeadOverrun {
            head: 312,
            tail: 48,
            capacity: 256,
        },
    );
}

#[test]
fn head_at_exactly_capacity_is_an_index_not_an_error() {
    // head = released + capacity is a full ring; the (zeroed) bytes after 48 then fail as a
    // record, not as an index.
    let (shm, _tx, mut rx) = three_read();
    rx.release();
    shm.set_head(48 + 256);
    assert_eq!(rx.has_data(), Ok(true));
    assert_consumer_poisoned(&shm, &mut rx, Corruption::BadTag { at: 48, tag: 0 });
}

// --- consumer: record headers ---

/// `read_batch` hands out the records before a corrupt header, releases them, then reports the
/// corruption (and keeps reporting it).
#[test]
fn read_batch_stops_at_a_corrupt_header() {
    let shm = Shm::new(256, 64);
    let (mut tx, mut rx) = shm.pair();
    for tag in 1..=3 {
        push(&mut tx, tag, 8);
    }
    let _ = tx.publish();
    // Record 3 (at 32, each record 16 bytes) gets tag 0.
    shm.set_record_header(32, RecordHeader { len: 8, tag: 0 });
    let mut tags = Vec::new();
    let r = rx.read_batch(10, |rec| {
        tags.push(rec.tag());
        true
    });
    assert_eq!(
        r,
        Err(RingError::Corrupt(Corruption::BadTag { at: 32, tag: 0 }))
    );
    assert_eq!(tags, [1, 2], "the two good records were handed out");
    assert_eq!(shm.tail(), 32, "and released");
    assert_consumer_poisoned(&shm, &mut rx, Corruption::BadTag { at: 32, tag: 0 });
    assert_eq!(
        rx.read_batch(10, |_| true),
        Err(RingError::Corrupt(Corruption::BadTag { at: 32, tag: 0 })),
        "sticky on read_batch"
    );
}

/// A 256-byte ring (max_record 64) with records of 8 and 24 bytes published at 0 and 16.
fn two_published() -> (Shm, Producer, Consumer) {
    let shm = Shm::new(256, 64);
    let (mut tx, rx) = shm.pair();
    push(&mut tx, 1, 8);
    push(&mut tx, 2, 24);
    let _ = tx.publish();
    assert_eq!(shm.head(), 48);
    (shm, tx, rx)
}

#[test]
fn record_tag_zero() {
    let (shm, _tx, mut rx) = two_published();
    shm.set_record_header(0, RecordHeader { len: 8, tag: 0 });
    assert_consumer_poisoned(&shm, &mut rx, Corruption::BadTag { at: 0, tag: 0 });
}

#[test]
fn record_tag_between_data_and_padding() {
    for tag in [MAX_DATA_TAG + 1, MAX_DATA_TAG + 2, 0x8000_0000, TAG_PAD - 1] {
        let (shm, _tx, mut rx) = two_published();
        shm.set_record_header(16, RecordHeader { len: 24, tag });
        assert_eq!(
            rx.read().unwrap().map(|r| r.tag()),
            Some(1),
            "the record before is intact"
        );
        assert_consumer_poisoned(&shm, &mut rx, Corruption::BadTag { at: 16, tag });
    }
}

#[test]
fn record_len_above_max_record() {
    for len in [65, 1000, u32::MAX] {
        let (shm, _tx, mut rx) = two_published();
        shm.set_record_header(0, RecordHeader { len, tag: 1 });
        assert_consumer_poisoned(
            &shm,
            &mut rx,
            Corruption::RecordTooLong {
                at: 0,
                len,
                max: 64,
            },
        );
    }
}

#[test]
fn record_past_published_head() {
    // The second record at 16 grows from 24 bytes (footprint 32) to 40 (footprint 48): only 32
    // bytes are published from there.
    let (shm, _tx, mut rx) = two_published();
    shm.set_record_header(16, RecordHeader { len: 40, tag: 2 });
    read_n(&mut rx, 1);
    assert_consumer_poisoned(
        &shm,
        &mut rx,
        Corruption::RecordPastHead {
            at: 16,
            footprint: 48,
            available: 32,
        },
    );

    // A record written (committed) but not published is invisible, not an error; claiming its
    // bytes from the published record before it is.
    let (shm, mut tx, mut rx) = two_published();
    push(&mut tx, 3, 8);
    shm.set_record_header(16, RecordHeader { len: 48, tag: 2 });
    read_n(&mut rx, 1);
    assert_consumer_poisoned(
        &shm,
        &mut rx,
        Corruption::RecordPastHead {
            at: 16,
            footprint: 56,
            available: 32,
        },
    );
}

#[test]
fn record_straddling_the_end() {
    // Both sides attach at 240: 16 bytes before the end of a 256-byte region.
    let shm = Shm::with_indices(256, 64, 240, 240);
    let (mut tx, mut rx) = shm.pair();
    push(&mut tx, 1, 8); // [240, 256): fits exactly
    push(&mut tx, 2, 56); // [256, 320)
    let _ = tx.publish();
    // Claiming 40 bytes at 240 stays within what is published (80) but crosses the end.
    shm.set_record_header(240, RecordHeader { len: 40, tag: 1 });
    assert_consumer_poisoned(
        &shm,
        &mut rx,
        Corruption::RecordStraddles {
            at: 240,
            footprint: 48,
        },
    );
}

/// A ring attached at 240 with a 20-byte record that wraps: padding [240, 256), record at 256.
fn padded() -> (Shm, Producer, Consumer) {
    let shm = Shm::with_indices(256, 64, 240, 240);
    let (mut tx, rx) = shm.pair();
    push(&mut tx, 1, 20);
    let _ = tx.publish();
    assert_eq!(shm.head(), 256 + 32);
    assert_eq!(
        shm.record_header(240),
        RecordHeader {
            len: 8,
            tag: TAG_PAD
        }
    );
    (shm, tx, rx)
}

#[test]
fn padding_is_skipped() {
    let (_shm, _tx, mut rx) = padded();
    let rec = rx.read().unwrap().expect("the record behind the padding");
    assert_eq!((rec.tag(), rec.data().len()), (1, 20));
    check_payload(rec.data(), 1);
}

#[test]
fn padding_with_wrong_len() {
    for len in [0, 16, 24, 7, u32::MAX] {
        let (shm, _tx, mut rx) = padded();
        shm.set_record_header(240, RecordHeader { len, tag: TAG_PAD });
        assert_consumer_poisoned(
            &shm,
            &mut rx,
            Corruption::BadPadding {
                at: 240,
                len,
                expected: 8,
            },
        );
    }
}

#[test]
fn padding_past_head() {
    // A 24-byte record (footprint 32) at 200 turned into padding: to the end is 56 bytes, but only
    // 32 are published.
    let shm = Shm::with_indices(256, 64, 200, 200);
    let (mut tx, mut rx) = shm.pair();
    push(&mut tx, 1, 24);
    let _ = tx.publish();
    shm.set_record_header(
        200,
        RecordHeader {
            len: 48,
            tag: TAG_PAD,
        },
    );
    assert_consumer_poisoned(
        &shm,
        &mut rx,
        Corruption::RecordPastHead {
            at: 200,
            footprint: 56,
            available: 32,
        },
    );
}

#[test]
fn payload_scribbles_are_not_corruption() {
    // Payload bytes are the peer's business: the ring hands them out as they are.
    let (shm, _tx, mut rx) = two_published();
    shm.write(8, &[0xEE; 8]);
    assert_eq!(
        rx.read().unwrap().map(|r| r.data().to_vec()),
        Some(vec![0xEE; 8])
    );
    assert_eq!(rx.read().unwrap().map(|r| r.tag()), Some(2));
}

// --- producer: the shared tail ---

/// A 256-byte ring filled with 16 records (16 bytes each), of which the consumer read and
/// released 4, and the producer refilled those 64 bytes: its cached tail is 64, published 256,
/// committed 320 (4 unpublished records). The next reservation has to reload the tail.
fn producer_needing_tail() -> (Shm, Producer, Consumer) {
    let shm = Shm::new(256, 64);
    let (mut tx, mut rx) = shm.pair();
    assert_eq!(fill(&mut tx), 16);
    assert_eq!(shm.head(), 256, "Full published the batch");
    read_n(&mut rx, 4);
    rx.release();
    assert_eq!(shm.tail(), 64);
    for _ in 0..4 {
        tx.push(2, &[1; 8]).expect("space released by the consumer");
    }
    assert_eq!(
        (tx.unpublished_bytes(), tx.free_cached(), shm.head()),
        (64, 0, 256)
    );
    (shm, tx, rx)
}

#[test]
fn producer_honest_tail_is_accepted() {
    let (shm, mut tx, mut rx) = producer_needing_tail();
    read_n(&mut rx, 12);
    rx.release();
    assert_eq!(shm.tail(), 256);
    tx.push(3, b"ok").unwrap();
}

#[test]
fn tail_backwards() {
    let (shm, mut tx, _rx) = producer_needing_tail();
    shm.set_tail(56);
    let c = Corruption::TailBackwards { seen: 64, now: 56 };
    assert_eq!(tx.push(1, b"x"), Err(RingError::Corrupt(c)));
    shm.set_tail(64);
    assert_producer_poisoned(&mut tx, c);
}

#[test]
fn tail_ahead_of_published_head() {
    // 264 is below the producer's own (unpublished) head of 320, but above the 256 it published:
    // the consumer cannot have read bytes it was never shown.
    for tail in [264, 320, 1 << 40, u64::MAX - 7] {
        let (shm, mut tx, _rx) = producer_needing_tail();
        shm.set_tail(tail);
        let c = Corruption::TailInvalid { tail, head: 256 };
        assert_eq!(tx.push(1, b"x"), Err(RingError::Corrupt(c)));
        assert_producer_poisoned(&mut tx, c);
        assert_eq!(
            shm.head(),
            256,
            "a corrupt tail does not make the producer publish"
        );
    }
}

#[test]
fn tail_unaligned() {
    for tail in [68, 65, 255, u64::MAX] {
        let (shm, mut tx, _rx) = producer_needing_tail();
        shm.set_tail(tail);
        let c = Corruption::TailInvalid { tail, head: 256 };
        assert_eq!(tx.push(1, b"x"), Err(RingError::Corrupt(c)));
        assert_producer_poisoned(&mut tx, c);
    }
}

#[test]
fn tail_is_only_read_when_the_cached_view_is_full() {
    // The producer reloads `tail` lazily: a scribble is reported on the first reservation that
    // needs to look at it (the cached view says full), not before.
    let shm = Shm::new(256, 64);
    let (mut tx, _rx) = shm.pair();
    shm.set_tail(12345);
    for i in 0..16 {
        tx.push(1, b"x")
            .unwrap_or_else(|e| panic!("push {i} fits by the cached view: {e}"));
    }
    let c = Corruption::TailInvalid {
        tail: 12345,
        head: 0,
    };
    assert_eq!(tx.push(1, b"x"), Err(RingError::Corrupt(c)));
    assert_producer_poisoned(&mut tx, c);
}

// --- the sleeping flag (written by the consumer, read by the producer) ---

#[test]
fn sleeping_flag_garbage_costs_at_most_one_wakeup_per_value() {
    let shm = Shm::new(256, 64);
    let (mut tx, _rx) = shm.pair();
    for (flag, expect) in [
        (2u32, true),
        (2, false),
        (u32::MAX, true),
        (u32::MAX, false),
        (0, false),
        (2, true),
    ] {
        shm.set_sleeping(flag);
        tx.push(1, b"x").unwrap();
        assert_eq!(tx.publish(), expect, "flag {flag:#x}");
        let mut rx = shm.consumer().unwrap();
        while rx.read().unwrap().is_some() {}
        rx.release();
    }
    assert_eq!(tx.stats().wakeups, 3);
}

// --- attach time ---

#[test]
fn attach_refuses_invalid_indices() {
    // (head, tail): unaligned either, tail ahead of head, more than capacity apart.
    for (head, tail) in [
        (4, 0),
        (8, 4),
        (0, 8),
        (16, 24),
        (264, 0),
        (u64::MAX - 7, 0),
        (u64::MAX, u64::MAX),
    ] {
        let shm = Shm::with_indices(256, 64, head, tail);
        let c = RingError::Corrupt(Corruption::TailInvalid { tail, head });
        assert_eq!(
            shm.producer().map(|_| ()),
            Err(c),
            "producer at head {head} tail {tail}"
        );
        assert_eq!(
            shm.consumer().map(|_| ()),
            Err(c),
            "consumer at head {head} tail {tail}"
        );
    }
}

#[test]
fn attach_accepts_a_full_ring() {
    let shm = Shm::with_indices(256, 64, 256, 0);
    let (mut tx, mut rx) = shm.pair();
    assert!(matches!(
        tx.push(1, b"x"),
        Err(RingError::Full {
            needed: 16,
            free: 0
        })
    ));
    // The region is zeroed: the first "record" the consumer finds is invalid.
    assert_eq!(
        rx.read().map(|r| r.is_some()),
        Err(RingError::Corrupt(Corruption::BadTag { at: 0, tag: 0 }))
    );
}
