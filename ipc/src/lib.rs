//! amp's data plane: shared-memory SPSC rings, eventfd signalling, segments, and the worker and
//! client API.
//!
//! A segment (see [`amp_shm_layout`]) holds two rings: tasks (`ampd` → attached process) and
//! completions (attached process → `ampd`). Each ring has exactly one producer and one consumer,
//! in two different processes. The consumer spins briefly when it runs dry, then publishes a
//! "sleeping" flag and blocks on an eventfd; the producer writes that eventfd only when the flag
//! is set ([`signal`]).
//!
//! The peer process is **untrusted**: everything read from shared memory is bounds-checked before
//! use and a violation surfaces as an error ([`ring::RingError::Corrupt`]), never as undefined
//! behaviour or a panic.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod chunk;
#[cfg(not(loom))]
pub mod client;
pub mod codec;
#[cfg(not(loom))]
pub mod link;
pub mod proto;
pub mod ring;
pub mod segment;
pub mod signal;
pub(crate) mod sync;
pub mod wire;
#[cfg(not(loom))]
pub mod worker;

#[cfg(not(loom))]
pub use client::Client;
pub use codec::{Bincode, Codec, CodecError};
pub use wire::Outcome;
#[cfg(not(loom))]
pub use worker::{Emitter, Failure, Reply, Task, TaskRef, Worker, WorkerError};
