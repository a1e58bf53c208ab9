//! The sleep/wake handshake across processes, with both sides sleeping on every message: a
//! forked child echoes 20 000 pings, and neither side spins (spin window 0), so every message
//! meets a consumer that has just published its sleeping flag or is blocked on its eventfd. A
//! lost wakeup shows as a wait that times out (5 s; a round trip takes ~50 µs), named by round.
//!
//! This is an end-to-end check of the real processes, syscalls and kernel; the protocol itself
//! is checked by the loom model (`scripts/loom`).

use std::time::{Duration, Instant};

use amp_ipc::segment::SegmentConfig;
use nix::sys::wait::WaitStatus;

mod common;

const ROUNDS: u64 = 20_000;
const WAIT: Duration = Duration::from_secs(5);

/// Exit code of a child that a ping never woke.
const LOST_WAKEUP: i32 = 2;

fn ping_pong() {
    let cfg = SegmentConfig {
        tasks_capacity: 1 << 12,
        tasks_max_record: 64,
        completions_capacity: 1 << 12,
        completions_max_record: 64,
    };
    let prefix = format!("amp-hs-{}", std::process::id());
    let (mut peer, mut end) = common::fork_peer(&prefix, &cfg, |end| {
        end.tasks.set_spin(0);
        for _ in 0..ROUNDS {
            let deadline = Instant::now() + WAIT;
            let ping = loop {
                if let Some(rec) = end.tasks.read().expect("tasks ring") {
                    break rec.data().to_vec();
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return LOST_WAKEUP;
                }
                // `false` may also be a spurious wakeup (a ring left over from an earlier
                // sleep): look again until the deadline.
                end.tasks.wait(Some(left)).expect("wait");
            };
            end.completions.push(1, &ping).expect("echo");
            end.completions.flush().expect("flush");
        }
        0
    });
    end.completions.set_spin(0);
    for round in 0..ROUNDS {
        end.tasks.push(1, &round.to_le_bytes()).expect("ping");
        end.tasks.flush().expect("flush");
        let deadline = Instant::now() + WAIT;
        let pong = loop {
            if let Some(rec) = end.completions.read().expect("completions ring") {
                break rec.data().to_vec();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "round {round}: no reply within {WAIT:?} (a lost wakeup, or the child died)"
            );
            end.completions.wait(Some(left)).expect("wait");
        };
        assert_eq!(pong, round.to_le_bytes(), "round {round}: wrong reply");
    }
    match peer.wait() {
        WaitStatus::Exited(_, 0) => {}
        WaitStatus::Exited(_, LOST_WAKEUP) => panic!("a ping never woke the child"),
        other => panic!("child failed: {other:?}"),
    }
    // The handshake was exercised: most pings found the child asleep.
    let wakeups = end.tasks.producer().stats().wakeups;
    assert!(
        wakeups > ROUNDS / 2,
        "only {wakeups} of {ROUNDS} pings had to wake the child"
    );
}

#[test]
fn every_message_wakes_a_sleeping_peer() {
    ping_pong();
}
