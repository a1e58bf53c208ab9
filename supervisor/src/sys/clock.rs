//! The clock shared with workers.

use nix::time::{clock_gettime, ClockId};

/// Nanoseconds of `CLOCK_MONOTONIC`, the clock workers stamp heartbeats with; comparable across
/// processes on the same boot.
///
/// ```
/// let a = amp_supervisor::sys::monotonic_ns();
/// let b = amp_supervisor::sys::monotonic_ns();
/// assert!(b >= a);
/// ```
///
/// # Panics
///
/// If the kernel refuses `CLOCK_MONOTONIC`, which Linux never does.
#[must_use]
pub fn monotonic_ns() -> u64 {
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always available");
    let secs = u64::try_from(ts.tv_sec()).expect("monotonic seconds are non-negative");
    let nanos = u64::try_from(ts.tv_nsec()).expect("tv_nsec is in 0..1e9");
    secs * 1_000_000_000 + nanos
}
