//! The syscall shell: the only place in the supervisor that talks to the kernel directly.
//!
//! Everything above this module (config, lifecycle, router, delivery, adapt) is pure; the event
//! loop calls into `sys` to act on the world and turns what it observes (readable pidfds, pipes,
//! sockets) into events for the pure cores. One file per mechanism:
//!
//! | mechanism | items |
//! |---|---|
//! | [`spawn`](mod@spawn) | [`spawn()`], [`SpawnSpec`], [`Child`], [`SpawnError`] |
//! | [`pidfd`] | [`pidfd_open`], [`wait_readable`] |
//! | [`reap`](mod@reap) | [`set_child_subreaper`], [`reap`](fn@reap), [`reap_all`], [`wait_timeout`], [`decode_wait_status`] |
//! | [`signal`] | [`signal_group`], [`signal_pid`] |
//! | [`output`] | [`LineBuffer`], [`drain_fd`], [`LogTail`], [`RotatingFile`] |
//! | [`procfs`] | [`proc_sample`], [`parse_stat`], [`parse_status`] |
//! | [`clock`] | [`monotonic_ns`] |
//! | [`probe`] | [`tcp_probe`], [`exec_probe`] |
//! | [`resolve`] | [`resolve_command`] |
//! | [`notify`] | [`notify::Notifier`] (systemd `sd_notify`) |
//!
//! # Contract with the event loop
//!
//! - **One thread spawns and reaps.** [`spawn()`] sets `PR_SET_PDEATHSIG`, which the kernel fires
//!   when the *thread* that forked exits, not the process: call it from the long-lived event-loop
//!   thread. [`reap_all`] reaps any child of the process, so nothing else in the process may wait
//!   for children (no `std::process::Command::output` elsewhere in ampd).
//! - **Exit is observed through the pidfd.** Register [`Child::pidfd`] with mio
//!   (`mio::unix::SourceFd`, `Interest::READABLE`); when it fires, call [`reap`](fn@reap) for that
//!   pid (or [`reap_all`] after a `SIGCHLD`, which also collects orphaned descendants when the
//!   supervisor is a subreaper).
//! - **Nothing here blocks for long.** The only calls that wait are [`wait_readable`] and
//!   [`wait_timeout`] (bounded by their timeout; for tests, tools and short shutdown paths) and
//!   [`tcp_probe`] (bounded by its timeout; keep it short and aimed at loopback).
//! - **Captured output is nonblocking.** [`Child::stdout`]/[`Child::stderr`] are `O_NONBLOCK`
//!   read ends; feed them to [`drain_fd`] when mio reports them readable.
#![allow(
    unsafe_code,
    reason = "the syscall shell: fork/exec hooks, prctl, rlimits"
)]

pub mod clock;
pub mod notify;
pub mod output;
pub mod pidfd;
pub mod probe;
pub mod procfs;
pub mod reap;
pub mod resolve;
pub mod signal;
pub mod spawn;

pub use clock::monotonic_ns;
pub use output::{drain_fd, DrainStatus, Line, LineBuffer, LineEnd, LogTail, RotatingFile};
pub use pidfd::{pidfd_open, wait_readable};
pub use probe::{exec_probe, tcp_probe};
pub use procfs::{
    parse_stat, parse_status, proc_sample, ProcParseError, ProcSample, ProcStat, ProcStatus,
};
pub use reap::{decode_wait_status, reap, reap_all, set_child_subreaper, wait_timeout};
pub use resolve::{resolve_command, resolve_command_in, ResolveError};
pub use signal::{signal_group, signal_pid};
pub use spawn::{spawn, Child, IdRef, SpawnError, SpawnSpec, StdioMode};

/// Re-exported so callers need not depend on `nix` for the two types the API speaks.
pub use nix::sys::signal::Signal;
/// Re-exported so callers need not depend on `nix` for the two types the API speaks.
pub use nix::unistd::Pid;
