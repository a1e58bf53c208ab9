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
//! - A producer skips its fence only when its own process registered successfully. Without
//!   kernel support nobody registers and both sides use SeqCst fences. `AMP_MEMBARRIER=0` in a
//!   process's environment keeps its producers on fences (its consumers still issue the
//!   membarrier, which other processes' producers may rely on).
//! - If the membarrier call itself fails where the kernel said it is supported (a seccomp filter
//!   on that one command, say), the consumer does not block: it reports "data may be there" and
//!   spins instead, which can cost CPU but never a wakeup.
//!
//! Registration belongs to the process's address space: a child made by `fork` inherits it, as it
//! inherits this module's cached decision (checked with `MEMBARRIER_CMD_GET_REGISTRATIONS` on
//! Linux 6.18), and `exec` resets both.
//!
//! Under `cfg(loom)` both sides use SeqCst fences: loom cannot model another process's CPU being
//! interrupted, so the loom tests check the symmetric protocol, and the argument above extends it.

#[cfg(not(loom))]
use std::sync::OnceLock;

/// `MEMBARRIER_CMD_QUERY` (`linux/membarrier.h`).
#[cfg(not(loom))]
const CMD_QUERY: libc::c_int = 0;
/// `MEMBARRIER_CMD_GLOBAL_EXPEDITED`.
#[cfg(not(loom))]
const CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
/// `MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`.
#[cfg(not(loom))]
const CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

/// What this process found out about `membarrier(2)`, once.
#[cfg(not(loom))]
#[derive(Debug, Clone, Copy)]
struct Support {
    /// The kernel supports `MEMBARRIER_CMD_GLOBAL_EXPEDITED`: consumers must issue it.
    global_expedited: bool,
    /// This process registered: its producers may skip their fence.
    registered: bool,
}

#[cfg(not(loom))]
static SUPPORT: OnceLock<Support> = OnceLock::new();

/// Calls `membarrier(cmd, 0, 0)`.
#[cfg(not(loom))]
fn membarrier(cmd: libc::c_int) -> libc::c_long {
    // SAFETY: membarrier takes three integers and touches no memory of ours; any return value
    // (including -1 with errno) is a plain integer.
    unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            cmd,
            0 as libc::c_uint,
            0 as libc::c_int,
        )
    }
}

#[cfg(not(loom))]
fn support() -> Support {
    *SUPPORT.get_or_init(|| {
        let query = membarrier(CMD_QUERY);
        let global_expedited = query >= 0
            && query & libc::c_long::from(CMD_GLOBAL_EXPEDITED) != 0
            && query & libc::c_long::from(CMD_REGISTER_GLOBAL_EXPEDITED) != 0;
        let wanted = std::env::var_os("AMP_MEMBARRIER").is_none_or(|v| v != "0");
        let registered =
            global_expedited && wanted && membarrier(CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
        Support {
            global_expedited,
            registered,
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
        support().registered
    }
    #[cfg(loom)]
    {
        false
    }
}

/// The consumer's half, after its SeqCst fence and before its re-check: forces a full barrier on
/// every CPU running a registered process. Returns `false` when that could not be done although
/// the kernel supports it; the consumer must then not block.
#[must_use]
pub(crate) fn consumer_barrier() -> bool {
    #[cfg(not(loom))]
    {
        !support().global_expedited || membarrier(CMD_GLOBAL_EXPEDITED) == 0
    }
    #[cfg(loom)]
    {
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The decision is consistent: a process registers only where the kernel supports expedited
    /// global membarriers, and then the consumer's barrier succeeds. (On this project's
    /// machines, Linux 6.x, both are on; the figures in `docs/benchmarks.md` depend on it.)
    #[test]
    fn membarrier_decision_is_consistent() {
        let s = support();
        if s.registered {
            assert!(s.global_expedited);
            assert!(producer_may_skip_fence());
        }
        if s.global_expedited && std::env::var_os("AMP_MEMBARRIER").is_none() {
            assert!(s.registered, "supported but registration failed");
        }
        assert!(consumer_barrier(), "the consumer's membarrier failed");
        if !s.global_expedited {
            eprintln!("membarrier GLOBAL_EXPEDITED unsupported here: fences on both sides");
        }
    }
}
