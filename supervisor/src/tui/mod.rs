//! `ampctl top`: a live terminal view of a running ampd.
//!
//! A background thread polls ampd's control socket every [`POLL_INTERVAL`] (`status`,
//! `workers`, `stats`, `events`, `tune show`) and carries out the drain and restart requests
//! typed at the keyboard; the terminal thread turns key presses into [`model::Input`]s, feeds
//! everything to a pure [`model::Model`] and draws it with [`view::render`].
//!
//! * Per worker: state, pid, restarts, tasks in flight, completions per second, worst p99
//!   latency over its kinds, CPU% (from successive `cpu_s` samples) and resident memory.
//! * Per kind: queue depth per class, in-flight, rejected and dispatched counts, with sparklines
//!   of throughput and p99 latency over the last [`model::HISTORY`] polls. The p99 comes from
//!   ampd's histogram since the first completion, so its sparkline shows how that figure moves,
//!   not a windowed percentile.
//! * The adaptive controller: each kind's mode and its newest decisions, newest first, with
//!   their state (proposed ones, which wait for `ampctl tune apply ID`, stand out), what they
//!   change, why, and the figures before and after. An ampd without a controller (an older
//!   one, which refuses `tune`) shows "adaptive controller: unavailable".
//! * The newest lifecycle events, and a status line with the last action's outcome.
//! * Keys: `s` next sort column, `↑`/`↓` or `k`/`j` select a worker, `d` drain it, `r` restart
//!   it, `q`, `Esc` or `Ctrl-C` quit.
//!
//! When ampd stops answering, the view says so, keeps the last figures, and retries every poll.
//! The terminal is restored on every exit path, a panic included (ratatui's panic hook).

mod app;
pub mod model;
mod msg;
mod sort;
pub mod tune;
pub mod view;

use std::time::Duration;

pub use app::{input_for_key, run};

/// How often ampd is polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Why `top` could not run.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// The terminal could not be set up, read or drawn to.
    #[error("terminal error: {0} (ampctl top needs an interactive terminal)")]
    Terminal(#[from] std::io::Error),
    /// ampd answered a poll with a payload of an unexpected shape.
    #[error(
        "unexpected `{what}` answer from ampd: {detail} (are ampctl and ampd the same version?)"
    )]
    Malformed {
        /// Which request.
        what: &'static str,
        /// What did not fit.
        detail: String,
    },
    /// The polling thread ended (it only does so after a panic).
    #[error("the ampd polling thread stopped unexpectedly")]
    PollerGone,
}
