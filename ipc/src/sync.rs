//! The one place the ring's atomics come from: `core` normally, `loom` under `cfg(loom)` so the
//! ring protocol can be model-checked with threads.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, Ordering};

/// The ring header as the ring code sees it: the shared-memory type normally; under loom a
/// struct of loom atomics with the same field names (loom atomics cannot live in `#[repr(C)]`
/// shared memory, and loom cannot model processes anyway).
#[cfg(not(loom))]
pub(crate) type RingHeader = amp_shm_layout::RingHeader;

/// Loom stand-in for one cache line.
#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct Line<T> {
    pub(crate) value: T,
}

/// Loom stand-in for [`amp_shm_layout::RingHeader`].
#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct RingHeader {
    pub(crate) head: Line<AtomicU64>,
    pub(crate) tail: Line<AtomicU64>,
    pub(crate) sleeping: Line<AtomicU32>,
}
