//! Outputs: what the event loop must do, and what it should log.

use super::event::UnitId;
use crate::spec::{Escalation, ExitReason};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::fmt;
use std::time::{Duration, Instant};

/// Something the event loop must carry out, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the unit's process (in its own process group) and report
    /// [`super::Event::Spawned`] or [`super::Event::SpawnFailed`], before feeding other events.
    Spawn {
        /// The unit.
        unit: UnitId,
    },
    /// Send `Shutdown` over the unit's control channel (drop it if the channel is not connected:
    /// the stop signal follows after the grace anyway).
    SendShutdown {
        /// The unit.
        unit: UnitId,
        /// Its process.
        pid: Pid,
    },
    /// Send `Drain` over the unit's control channel and tell the router to stop feeding it.
    /// Report [`super::Event::Drained`] when it has nothing in flight.
    SendDrain {
        /// The unit.
        unit: UnitId,
        /// Its process.
        pid: Pid,
    },
    /// Send `signal` to the unit's process group.
    Signal {
        /// The unit.
        unit: UnitId,
        /// Its process (= process group id).
        pid: Pid,
        /// The signal (the worker's `stop_signal`).
        signal: Signal,
    },
    /// Send SIGKILL to the unit's process group.
    Kill {
        /// The unit.
        unit: UnitId,
        /// Its process (= process group id).
        pid: Pid,
    },
    /// Record this in the event log (and forward state changes to whoever cares, e.g. the router
    /// learns from `Ready`/`Draining`/`Stopping`/`Exited` which units may receive tasks).
    Notify(Notice),
    /// Every unit has exited after a shutdown: ampd may exit (non-zero unless
    /// [`ShutdownReport::success`]). Emitted once; later events are ignored.
    ShutdownComplete(ShutdownReport),
}

/// A state change worth logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The process was created.
    Started {
        /// The unit.
        unit: UnitId,
        /// Its process.
        pid: Pid,
    },
    /// A spawn failed.
    SpawnFailed {
        /// The unit.
        unit: UnitId,
        /// What went wrong.
        error: String,
    },
    /// The process reported ready (may receive tasks).
    Ready {
        /// The unit.
        unit: UnitId,
        /// Its process.
        pid: Pid,
        /// Time from spawn to ready.
        after: Duration,
    },
    /// The unit was asked to drain (must receive no new tasks).
    Draining {
        /// The unit.
        unit: UnitId,
        /// Its process.
        pid: Pid,
    },
    /// The stop sequence began (must receive no new tasks).
    Stopping {
        /// The unit.
        unit: UnitId,
        /// Its process.
        pid: Pid,
        /// Why.
        cause: StopCause,
    },
    /// The process ended.
    Exited {
        /// The unit.
        unit: UnitId,
        /// Its process.
        pid: Pid,
        /// Exit code or signal.
        reason: ExitReason,
        /// `None`: it exited by itself; otherwise why we were stopping it.
        stop_cause: Option<StopCause>,
    },
    /// An automatic restart was scheduled.
    RestartScheduled {
        /// The unit.
        unit: UnitId,
        /// What ended the previous attempt.
        after: Termination,
        /// Delay before the spawn.
        delay: Duration,
        /// Consecutive restart number (1 for the first restart since the unit was last stable).
        attempt: u32,
    },
    /// The unit ran to completion (exit 0) and will not be restarted.
    Completed {
        /// The unit.
        unit: UnitId,
    },
    /// The unit failed and will not be restarted automatically.
    Failed {
        /// The unit.
        unit: UnitId,
        /// Why.
        reason: FailureReason,
    },
    /// The restart intensity limit was exceeded; `escalation` is being applied.
    Escalated {
        /// The unit.
        unit: UnitId,
        /// What happens now.
        escalation: Escalation,
    },
    /// The unit is stopped (after a stop, or never started because of shutdown).
    Stopped {
        /// The unit.
        unit: UnitId,
    },
    /// Every unit is ready, completed, failed, stopped, or blocked by a failed dependency.
    StartupComplete {
        /// Units that failed during startup.
        failed: Vec<UnitId>,
    },
    /// Shutdown began (or switched to the fast path).
    ShutdownStarted {
        /// Why.
        cause: ShutdownCause,
        /// Fast path.
        fast: bool,
    },
    /// A new unit exists (a worker was added or scaled up): its id is `>=` every id seen before
    /// and stays valid until [`Notice::UnitRemoved`]. Emitted before any action naming it, so
    /// the event loop can grow its per-unit tables here. The units [`super::Supervisor::new`]
    /// creates are not announced (see [`super::Supervisor::units`]).
    UnitAdded {
        /// The unit.
        unit: UnitId,
    },
    /// A removed unit is gone for good: it has no process, no later action names it and its id
    /// is never reused. The event loop can free its per-unit state.
    UnitRemoved {
        /// The unit.
        unit: UnitId,
    },
    /// A removed worker's last unit is gone: the worker is forgotten (its name may be added
    /// again).
    WorkerRemoved {
        /// The worker's name.
        worker: String,
    },
}

/// Why a unit is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopCause {
    /// `ampctl stop`.
    Command,
    /// `ampctl restart`: it is spawned again once it exited.
    Restart,
    /// It was drained.
    Drain,
    /// A unit it depends on failed and that unit's escalation is
    /// [`Escalation::StopDependents`].
    DependencyFailed {
        /// The failed unit.
        dependency: UnitId,
    },
    /// The supervisor is shutting down.
    Shutdown,
    /// Its heartbeat went stale (killed at once).
    HeartbeatTimeout,
    /// It did not report ready within `ready_timeout` (killed at once).
    ReadyTimeout,
    /// Its worker was removed or scaled down: it is forgotten once it exited.
    Removed,
    /// Its worker's spec was replaced: it starts again with the new spec once it exited.
    Replaced,
}

impl StopCause {
    /// Whether the stop is the unit's fault (hung), as opposed to requested.
    #[must_use]
    pub const fn is_failure(self) -> bool {
        matches!(self, Self::HeartbeatTimeout | Self::ReadyTimeout)
    }
}

/// What ended an attempt to run a unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Termination {
    /// The process ended by itself.
    Exited(ExitReason),
    /// The process could not be created.
    SpawnFailed(String),
    /// It was killed because its heartbeat went stale.
    HeartbeatTimeout,
    /// It was killed because it did not report ready in time.
    ReadyTimeout,
}

impl Termination {
    /// Whether this counts as a failure for [`crate::spec::RestartPolicy::OnFailure`]: anything
    /// but exit code 0.
    #[must_use]
    pub fn is_failure(&self) -> bool {
        !matches!(self, Self::Exited(reason) if reason.is_success())
    }
}

impl fmt::Display for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(reason) => reason.fmt(f),
            Self::SpawnFailed(error) => write!(f, "could not be spawned: {error}"),
            Self::HeartbeatTimeout => f.write_str("killed: heartbeat timed out"),
            Self::ReadyTimeout => f.write_str("killed: not ready within its ready_timeout"),
        }
    }
}

/// Why a unit is [`super::StateKind::Failed`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// It ended (as described) and its restart policy does not restart it; or, for a unit that
    /// never became ready, it did not report ready in time.
    Terminated(Termination),
    /// It would have been restarted more than `max_restarts` times within `window`.
    IntensityExceeded {
        /// The limit.
        max_restarts: u32,
        /// The window.
        window: Duration,
        /// What ended the last attempt.
        last: Termination,
    },
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Terminated(t) => t.fmt(f),
            Self::IntensityExceeded {
                max_restarts,
                window,
                last,
            } => write!(
                f,
                "restarted more than {max_restarts} times within {window:?} (last: {last})"
            ),
        }
    }
}

/// How a process ended, for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitRecord {
    /// Exit code or signal.
    pub reason: ExitReason,
    /// `None`: it exited by itself; otherwise why it was being stopped.
    pub stop_cause: Option<StopCause>,
    /// When the exit was reported.
    pub at: Instant,
}

/// Why the supervisor is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShutdownCause {
    /// A signal or `ampctl shutdown`.
    Requested,
    /// A unit failed during startup and the startup policy is
    /// [`crate::spec::StartupFailure::Abort`].
    StartupAborted {
        /// The unit.
        unit: UnitId,
    },
    /// A unit exceeded its restart intensity and its escalation is [`Escalation::Shutdown`].
    Escalated {
        /// The unit.
        unit: UnitId,
    },
}

/// How shutdown went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Why it happened.
    pub cause: ShutdownCause,
    /// Whether the fast path was taken.
    pub fast: bool,
    /// Every unit exited by itself (after Shutdown or the stop signal): no SIGKILL was needed.
    pub clean: bool,
    /// Units the shutdown had to SIGKILL.
    pub killed: Vec<UnitId>,
    /// Units in the failed state at the end.
    pub failed: Vec<UnitId>,
}

impl ShutdownReport {
    /// Requested and clean: ampd should exit 0. (Units that failed earlier are listed in
    /// `failed` for the log; they do not make a requested, clean shutdown fail.)
    #[must_use]
    pub fn success(&self) -> bool {
        self.cause == ShutdownCause::Requested && self.clean
    }
}
