//! `ampd`, the amp supervisor, as a library: pure cores (config, lifecycle, router, delivery,
//! adapt) driven by a thin shell (`sys` for syscalls, the event loop, the control socket).
//!
//! `unsafe` is confined to [`sys`], where a syscall needs it.
#![deny(unsafe_code)]

pub mod adapt;
pub mod config;
pub mod control;
pub mod daemon;
pub mod delivery;
pub mod lifecycle;
pub mod metrics;
pub mod pipeline;
pub mod router;
pub mod spec;
pub mod sys;
pub mod tui;
