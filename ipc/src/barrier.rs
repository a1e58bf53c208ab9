//! The StoreLoad barrier of the sleep/wake handshake, made asymmetric with `membarrier(2)`.
//!
//! The handshake (see [`crate::ring`]) needs a full barrier between the producer's store of
//! `head` and its load of the consumer's `sleeping` flag, and between the consumer's store of the
//! flag and its re-check of `head`. The producer passes that point on every publish, the consumer
//! only when it is about to block. A SeqCst fence on the producer's side waits for every store it
//! has in flight to reach the cache — stores to ring lines the consumer's core holds, so a
//! cross-core round trip per publish (`docs/benchmarks.md`, "Ring").
//!
//! `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` moves that cost to the rare side: when it returns,
//! every thread of every process registered with `MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED` has
//! executed a full memory barrier (an IPI on the CPUs running one; a context switch for the
//! others). A producer in a registered process therefore needs only a compiler barrier:
//!
//! ```text
//!   consumer (prepare_sleep)                  producer (publish), registered process
//!   C1 sleeping.store(epoch)                  P1 head.store(h, Release)
//!   C2 fence(SeqCst); membarrier(GLOBAL_EXP)  P2 compiler_fence(SeqCst)
//!   C3 head.load(Acquire)                     P3 sleeping.load()
//! ```
//! The barrier that C2 forces on the producer's CPU falls somewhere in its program: if after P1,
//! `h` is visible to C3 once membarrier returns; if before P1, then also before P3, so P3 runs
//! after C1 is visible and sees the flag. Either way a published record is never left behind a
//! sleeping consumer — the same guarantee as two SeqCst fences.
//!
//! Which side does what:
//! - A consumer issues the membarrier whenever the kernel supports it, whatever its own process
//!   does, since it cannot know how the producer in the other process publishes.
//! - A producer skips its fence only when its own process registered successfully (registration
//!   happens at the first producer a process creates; processes that only consume never
//!   register, so they are not interrupted by other consumers' membarriers). Without kernel
//!   support nobody registers and both sides use SeqCst fences. `AMP_MEMBARRIER=0` in a
//!   process's environment keeps its producers on fences (its consumers still issue the
//!   membarrier, which other processes' producers may rely on).
//! - Where this process cannot be sure — `membarrier(MEMBARRIER_CMD_QUERY)` failed with anything
//!   but `ENOSYS` (a seccomp filter, say: another process may well have registered), or a
//!   membarrier call failed although the kernel said it is supported — a consumer never blocks
//!   longer than [`sleep_bound`] (1 ms) before re-checking its ring: a wakeup it could miss is
//!   delayed by at most that, never lost. Callers that block (`Receiver::wait`, ampd's poll
//!   loop) cap their timeouts with it. The first failure is logged.
//!
//! Cost: the membarrier interrupts every CPU currently running a thread of a registered process
//! (on the 2-vCPU machines here: at most the other one), once per consumer going to sleep — that
//! is, only when a consumer has been idle for its spin window.
//!
//! Registration belongs to the process's address space: a child made by `fork` inherits it, as it
//! inherits this module's cached decision (checked with `MEMBARRIER_CMD_GET_REGISTRATIONS` on
//! Linux 6.18), and `exec` resets both.
//!
//! Under `cfg(loom)` both sides use SeqCst fences: loom cannot model another process's CPU being
//! interrupted, so the loom tests check the symmetric protocol, and the argument above extends it
//! on the strength of the kernel's documented guarantee. No test on real CPUs can show the
//! barrier is needed: the membarrier takes microseconds, long after the producer's store buffer
//! has drained by itself, so a store-buffering litmus test passes with or without it (as
//! `ipc/tests/handshake.rs` does with both barriers removed); the race it closes is nanoseconds
//! wide and rare.

#[cfg(not(loom))]
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(loom))]
use std::sync::OnceLock;
use std::time::Duration;

/// How long a consumer that cannot be sure of the barrier may block before re-checking.
pub const UNSURE_SLEEP: Duration = Duration::from_millis(1);

/// `MEMBARRIER_CMD_QUERY` (`linux/membarrier.h`).
#[cfg(not(loom))]
const CMD_QUERY: libc::c_int = 0;
/// `MEMBARRIER_CMD_GLOBAL_EXPEDITED`.
#[cfg(not(loom))]
const CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
/// `MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`.
#[cfg(not(loom))]
const CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

/// What `MEMBARRIER_CMD_QUERY` told this process, once.
#[cfg(not(loom))]
#[derive(Debug, Clone, Copy)]
struct Kernel {
    /// `MEMBARRIER_CMD_GLOBAL_EXPEDITED` (and its registration) is supported: consumers must
    /// issue it.
    global_expedited: bool,
    /// The query failed with something other than `ENOSYS`: other processes may see support this
    /// one cannot use, so consumers bound their sleeps.
    unsure: bool,
}

#[cfg(not(loom))]
static KERNEL: OnceLock<Kernel> = OnceLock::new();
/// This process registered (decided at its first producer).
#[cfg(not(loom))]
static REGISTERED: OnceLock<bool> = OnceLock::new();
/// A consumer's membarrier failed once: bound every later sleep.
#[cfg(not(loom))]
static FAILED: AtomicBool = AtomicBool::new(false);

/// Calls `membarrier(cmd, 0, 0)`; `Err(errno)` on failure.
#[cfg(not(loom))]
fn membarrier(cmd: libc::c_int) -> Result<libc::c_long, i32> {
    // SAFETY: membarrier takes three integers and touches no memory of ours; any return value
    // (including -1 with errno) is a plain integer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            cmd,
            0 as libc::c_uint,
            0 as libc::c_int,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r)
    }
}

#[cfg(not(loom))]
fn kernel() -> Kernel {
    *KERNEL.get_or_init(|| match membarrier(CMD_QUERY) {
        Ok(query) => {
            let need = libc::c_long::from(CMD_GLOBAL_EXPEDITED | CMD_REGISTER_GLOBAL_EXPEDITED);
            Kernel {
                global_expedited: query & need == need,
                unsure: false,
            }
        }
        Err(errno) => {
            let unsure = errno != libc::ENOSYS;
            if unsure {
                tracing::warn!(
                    errno,
                    "membarrier(QUERY) failed: consumers will re-check their rings every {:?} \
                     while they sleep",
                    UNSURE_SLEEP
                );
            }
            Kernel {
                global_expedited: false,
                unsure,
            }
        }
    })
}

/// Whether producers in this process may publish with a compiler barrier instead of a SeqCst
/// fence (the process registered for expedited global membarriers). Decided once per process;
/// the first call registers.
#[must_use]
pub fn producer_may_skip_fence() -> bool {
    #[cfg(not(loom))]
    {
        *REGISTERED.get_or_init(|| {
            kernel().global_expedited
                && std::env::var_os("AMP_MEMBARRIER").is_none_or(|v| v != "0")
                && membarrier(CMD_REGISTER_GLOBAL_EXPEDITED).is_ok()
        })
    }
    #[cfg(loom)]
    {
        false
    }
}

/// The consumer's half, after its SeqCst fence and before its re-check: forces a full barrier on
/// every CPU running a registered process. A failure is remembered: from then on
/// [`sleep_bound`] bounds this process's sleeps.
pub(crate) fn consumer_barrier() {
    #[cfg(not(loom))]
    if kernel().global_expedited {
        if let Err(errno) = membarrier(CMD_GLOBAL_EXPEDITED) {
            if !FAILED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    errno,
                    "membarrier(GLOBAL_EXPEDITED) failed: consumers will re-check their rings \
                     every {:?} while they sleep",
                    UNSURE_SLEEP
                );
            }
        }
    }
}

/// The longest a consumer of this process may block after publishing its sleeping flag:
/// `None` (no bound) normally, [`UNSURE_SLEEP`] when this process cannot be sure its barrier
/// reaches the producers (see the module docs).
#[must_use]
pub fn sleep_bound() -> Option<Duration> {
    #[cfg(not(loom))]
    {
        (kernel().unsure || FAILED.load(Ordering::Relaxed)).then_some(UNSURE_SLEEP)
    }
    #[cfg(loom)]
    {
        None
    }
}

/// `timeout` capped by [`sleep_bound`] (`None`: forever).
#[must_use]
pub fn bounded(timeout: Option<Duration>) -> Option<Duration> {
    match (timeout, sleep_bound()) {
        (Some(t), Some(b)) => Some(t.min(b)),
        (t, None) => t,
        (None, b) => b,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The decision is consistent: a process registers only where the kernel supports expedited
    /// global membarriers, and then the consumer's barrier succeeds and sleeps are unbounded.
    /// (On this project's machines, Linux 6.x, all of it is on; the figures in
    /// `docs/benchmarks.md` depend on it.)
    #[test]
    fn membarrier_decision_is_consistent() {
        let k = kernel();
        let registered = producer_may_skip_fence();
        if registered {
            assert!(k.global_expedited);
        }
        if k.global_expedited && std::env::var_os("AMP_MEMBARRIER").is_none() {
            assert!(registered, "supported but registration failed");
        }
        consumer_barrier();
        if k.global_expedited && !k.unsure {
            assert_eq!(sleep_bound(), None, "the consumer's membarrier failed");
            assert_eq!(bounded(None), None);
        } else {
            eprintln!("membarrier GLOBAL_EXPEDITED not usable here: {k:?}");
        }
    }

    #[test]
    fn bounded_caps_timeouts() {
        let cap = sleep_bound();
        let t = Duration::from_secs(5);
        assert_eq!(bounded(Some(t)), Some(cap.map_or(t, |c| c.min(t))));
        assert_eq!(bounded(Some(Duration::ZERO)), Some(Duration::ZERO));
    }
}
