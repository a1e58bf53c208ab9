//! Loom models of the ring protocol (threads stand in for the two processes).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p amp-ipc --release --lib loom` (see
//! `scripts/loom`); `LOOM_MAX_PREEMPTIONS` bounds the search so it fits in CI.

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

use super::*;

/// An eventfd stand-in: a counter guarded by a mutex, with a condvar to block on.
#[derive(Default)]
struct Bell {
    rung: Mutex<bool>,
    cv: Condvar,
}

impl Bell {
    fn ring(&self) {
        *self.rung.lock().unwrap() = true;
        self.cv.notify_one();
    }
    fn wait(&self) {
        let mut rung = self.rung.lock().unwrap();
        while !*rung {
            rung = self.cv.wait(rung).unwrap();
        }
        *rung = false;
    }
}

/// How a model's consumer reads.
#[derive(Clone, Copy)]
enum Reads {
    /// `read`, releasing after each record.
    One,
    /// `read_batch` of everything published (it releases at the end of each batch).
    Batch,
}

/// Reads one record per entry of `sizes`: record `i` has `sizes[i]` bytes, all `i + 1`. Returns
/// the tags.
fn consume(rx: &mut Consumer, sizes: &[usize], how: Reads) -> Vec<u16> {
    let mut tags = Vec::new();
    let check = |tags: &mut Vec<u16>, r: Record<'_>| {
        let i = tags.len();
        assert_eq!(r.data().len(), sizes[i]);
        assert!(r.data().iter().all(|&b| b as usize == i + 1));
        tags.push(r.tag());
    };
    while tags.len() < sizes.len() {
        let got = match how {
            Reads::One => match rx.read().unwrap() {
                Some(r) => {
                    check(&mut tags, r);
                    rx.release();
                    true
                }
                None => false,
            },
            Reads::Batch => {
                let left = sizes.len() - tags.len();
                rx.read_batch(left, |r| {
                    check(&mut tags, r);
                    true
                })
                .unwrap()
                    > 0
            }
        };
        if !got {
            thread::yield_now();
        }
    }
    tags
}

/// Records of sizes that force a padding record and a wrap, through a ring that fills up:
/// every record arrives once, in order, intact.
#[test]
fn loom_order_wrap_full_empty() {
    order_wrap_full_empty(Reads::One);
}

/// The same, the consumer reading with `read_batch` (one release per batch).
#[test]
fn loom_read_batch_wrap_full() {
    order_wrap_full_empty(Reads::Batch);
}

fn order_wrap_full_empty(how: Reads) {
    loom::model(move || {
        // 256-byte region; 3 records of 100 bytes (112 each with header and alignment) cannot all
        // fit, and the third has to wrap behind a padding record.
        let (mut tx, mut rx) = local(256, 120).unwrap();
        let sizes = [100usize, 100, 100];
        let p = thread::spawn(move || {
            for (i, &n) in sizes.iter().enumerate() {
                let payload = vec![i as u8 + 1; n];
                loop {
                    match tx.push(i as u16 + 1, &payload) {
                        Ok(()) => break,
                        Err(RingError::Full { .. }) => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
                let _ = tx.publish();
            }
        });
        assert_eq!(consume(&mut rx, &sizes, how), [1, 2, 3]);
        p.join().unwrap();
        assert!(rx.read().unwrap().is_none());
    });
}

/// The same through `write_many`: three 100-byte records asked for at once, of which only two
/// fit; the rest are written after the consumer frees space (the third behind a padding record).
#[test]
fn loom_write_many_wrap_full() {
    loom::model(|| {
        let (mut tx, mut rx) = local(256, 120).unwrap();
        let p = thread::spawn(move || {
            let mut sent = 0usize;
            while sent < 3 {
                let w = tx
                    .write_many(3 - sent, 100, 1, |i, buf| {
                        buf.fill((sent + i) as u8 + 1);
                        buf.len()
                    })
                    .unwrap();
                sent += w.records;
                if sent < 3 {
                    thread::yield_now();
                }
            }
        });
        assert_eq!(consume(&mut rx, &[100; 3], Reads::One), [1, 1, 1]);
        p.join().unwrap();
        assert!(rx.read().unwrap().is_none());
    });
}

/// The sleep/wake handshake: the consumer sleeps on a bell whenever `prepare_sleep` says it may;
/// the producer rings only when `publish` says so. A lost wakeup leaves the consumer blocked
/// forever, which loom reports as a deadlock.
#[test]
fn loom_no_lost_wakeup() {
    loom::model(|| {
        let (mut tx, mut rx) = local(256, 64).unwrap();
        let bell = Arc::new(Bell::default());
        let bell2 = Arc::clone(&bell);
        let p = thread::spawn(move || {
            for i in 0..2u8 {
                tx.push(1, &[i]).unwrap();
                if tx.publish() {
                    bell2.ring();
                }
            }
            tx.stats().wakeups
        });
        let mut got = 0u8;
        while got < 2 {
            if let Some(r) = rx.read().unwrap() {
                assert_eq!(r.data(), &[got]);
                got += 1;
                continue;
            }
            if rx.prepare_sleep().unwrap() {
                continue;
            }
            bell.wait();
            rx.finish_sleep();
        }
        let wakeups = p.join().unwrap();
        assert!(wakeups <= 2);
    });
}
