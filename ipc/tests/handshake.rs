//! The sleep/wake handshake across processes, with both sides sleeping on every message: a
//! forked child echoes 20 000 pings, and neither side spins (spin window 0), so every message
//! meets a consumer that has just published its sleeping flag or is blocked on its eventfd. A
//! lost wakeup shows as a wait that times out (5 s; a round trip takes ~50 µs), named by round.
//!
//! This is an end-to-end check of the real processes, syscalls and kernel; the protocol itself
//! is checked by the loom model (`scripts/loom`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use amp_ipc::link::{PeerEnd, SupervisorEnd};
use amp_ipc::segment::{Segment, SegmentConfig};
use amp_ipc::signal::Doorbell;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

const ROUNDS: u64 = 20_000;
const WAIT: Duration = Duration::from_secs(5);

/// Child exit codes.
const LOST_WAKEUP: i32 = 2;
const FAILED: i32 = 3;

fn ping_pong() {
    let cfg = SegmentConfig {
        tasks_capacity: 1 << 12,
        tasks_max_record: 64,
        completions_capacity: 1 << 12,
        completions_max_record: 64,
    };
    let prefix = format!("amp-hs-{}", std::process::id());
    let seg = Arc::new(Segment::create(&prefix, &cfg, 1).expect("create segment"));
    let tasks_bell = Doorbell::new().unwrap();
    let completions_bell = Doorbell::new().unwrap();
    let child_tasks = tasks_bell.try_clone_fd().unwrap();
    let child_completions = completions_bell.try_clone_fd().unwrap();

    // SAFETY: the child only uses memory and fds set up before the fork and leaves with `_exit`,
    // never returning into the test harness.
    let forked = unsafe { fork() };
    match forked.expect("fork") {
        ForkResult::Child => {
            let code = std::panic::catch_unwind(|| {
                let opened = Arc::new(Segment::open(seg.name()).expect("child open"));
                let mut end = PeerEnd::new(
                    &opened,
                    Doorbell::from_owned(child_tasks).unwrap(),
                    Doorbell::from_owned(child_completions).unwrap(),
                )
                .unwrap();
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
                        // `false` may also be a spurious wakeup (a ring left over from an
                        // earlier sleep): look again until the deadline.
                        end.tasks.wait(Some(left)).expect("wait");
                    };
                    end.completions.push(1, &ping).expect("echo");
                    end.completions.flush().expect("flush");
                }
                0
            })
            .unwrap_or(FAILED);
            // SAFETY: `_exit` ends the child without running the harness's atexit handlers.
            unsafe { libc::_exit(code) };
        }
        ForkResult::Parent { child } => {
            // Whatever happens below, the child does not outlive the test and the segment's name
            // leaves /dev/shm.
            let mut cleanup = Cleanup {
                child: Some(child),
                seg: Arc::clone(&seg),
            };
            let mut end = SupervisorEnd::new(&seg, tasks_bell, completions_bell).unwrap();
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
            let status = waitpid(child, None).expect("waitpid");
            cleanup.child = None;
            assert_eq!(
                status,
                WaitStatus::Exited(child, 0),
                "child: 0 = ok, {LOST_WAKEUP} = a ping never woke it, {FAILED} = it panicked"
            );
            // The handshake was exercised: most pings found the child asleep.
            let wakeups = end.tasks.producer().stats().wakeups;
            assert!(
                wakeups > ROUNDS / 2,
                "only {wakeups} of {ROUNDS} pings had to wake the child"
            );
        }
    }
}

/// Kills and reaps the child if it was not reaped (a failed assertion), and unlinks the segment.
struct Cleanup {
    child: Option<nix::unistd::Pid>,
    seg: Arc<Segment>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(child) = self.child {
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(child, None);
        }
        let _ = self.seg.unlink();
    }
}

#[test]
fn every_message_wakes_a_sleeping_peer() {
    ping_pong();
}
