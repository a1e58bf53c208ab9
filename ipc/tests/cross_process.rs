//! Cross-process ring test: a forked child produces ≥ 10 M records of random sizes (each with a
//! sequence number and a checksum) through a real shared-memory segment; the parent consumes and
//! verifies them — no loss, duplication, reordering or corruption. Eventfd doorbells are used in
//! both directions, so the sleep/wake handshake is exercised across processes too.

use std::time::{Duration, Instant};

use amp_ipc::segment::SegmentConfig;
use nix::sys::wait::WaitStatus;

mod common;

const RECORDS: u64 = 10_000_000;

/// xorshift64*: deterministic sizes and contents on both sides.
fn next(x: &mut u64) -> u64 {
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Fills `out` (≥ 16 bytes) with: seq (8 B), checksum of the rest (8 B), pseudo-random bytes.
fn fill(out: &mut [u8], seq: u64) {
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for chunk in out[16..].chunks_mut(8) {
        let v = next(&mut x).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    let c = checksum(&out[16..]);
    out[0..8].copy_from_slice(&seq.to_le_bytes());
    out[8..16].copy_from_slice(&c.to_le_bytes());
}

#[test]
fn ten_million_records_across_processes() {
    let cfg = SegmentConfig {
        tasks_capacity: 1 << 16,
        tasks_max_record: 1024,
        completions_capacity: 1 << 20,
        completions_max_record: 4096,
    };
    let prefix = format!("amp-xproc-{}", std::process::id());
    let (mut peer, mut end) = common::fork_peer(&prefix, &cfg, |end| {
        let mut sizes = 0x1234_5678_u64;
        let deadline = Instant::now() + Duration::from_secs(120);
        for seq in 0..RECORDS {
            let len = 16 + (next(&mut sizes) % 497) as usize;
            loop {
                match end.completions.reserve(len, 1 + (seq % 1000) as u16) {
                    Ok(mut r) => {
                        fill(&mut r, seq);
                        r.commit();
                        break;
                    }
                    Err(amp_ipc::ring::RingError::Full { .. }) => {
                        end.completions.flush().unwrap();
                        assert!(Instant::now() < deadline, "producer stuck");
                        std::hint::spin_loop();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            if seq % 32 == 31 {
                end.completions.flush().unwrap();
            }
        }
        end.completions.flush().unwrap();
        // Wait for the parent's "done" ping on the tasks ring so the segment outlives
        // the reads.
        end.tasks.wait(Some(Duration::from_secs(60))).unwrap();
        let wakeups = end.completions.producer().stats().wakeups;
        // More than 1% of the records needed a wakeup: exit 2.
        if wakeups * 100 < RECORDS {
            0
        } else {
            2
        }
    });
    let mut sizes = 0x1234_5678_u64;
    let mut expect = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while expect < RECORDS {
        assert!(Instant::now() < deadline, "consumer stuck at {expect}");
        let mut progressed = false;
        while let Some(rec) = end.completions.read().unwrap() {
            let d = rec.data();
            let len = 16 + (next(&mut sizes) % 497) as usize;
            assert_eq!(d.len(), len, "record {expect}: length");
            assert_eq!(
                rec.tag(),
                1 + (expect % 1000) as u16,
                "record {expect}: tag"
            );
            let seq = u64::from_le_bytes(d[0..8].try_into().unwrap());
            assert_eq!(seq, expect, "lost, duplicated or reordered record");
            let sum = u64::from_le_bytes(d[8..16].try_into().unwrap());
            assert_eq!(
                sum,
                checksum(&d[16..]),
                "record {expect}: corrupted payload"
            );
            expect += 1;
            progressed = true;
        }
        if !progressed {
            end.completions.wait(Some(Duration::from_secs(5))).unwrap();
        }
    }
    assert!(
        end.completions.read().unwrap().is_none(),
        "extra records after the last"
    );
    end.tasks.push(1, b"done").unwrap();
    end.tasks.flush().unwrap();
    match peer.wait() {
        WaitStatus::Exited(_, 0) => {}
        WaitStatus::Exited(_, 2) => {
            panic!("child sent wakeups for more than 1% of records")
        }
        other => panic!("child failed: {other:?}"),
    }
}
