//! Per-unit runtime state and the supervisor's phase.

use super::action::{ExitRecord, FailureReason, ShutdownCause, ShutdownReport, StopCause};
use super::restart::RestartHistory;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde::Serialize;
use std::fmt;
use std::time::Instant;

/// The state of one unit, as shown by `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    /// Waiting for its dependencies (or blocked by one: see [`UnitStatus::blocked_by`]).
    Pending,
    /// Spawn requested, process not yet reported.
    Spawning,
    /// Running, not yet ready.
    Starting,
    /// Running and ready.
    Ready,
    /// Ready but being emptied before a stop.
    Draining,
    /// Stop sequence in progress (Shutdown → stop signal → SIGKILL).
    Stopping,
    /// Exited; waiting before an automatic restart.
    Backoff,
    /// Ran to completion (exit 0) and is not restarted.
    Completed,
    /// Failed; not restarted until started by hand.
    Failed,
    /// Stopped on request.
    Stopped,
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pending => "pending",
            Self::Spawning => "spawning",
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Draining => "draining",
            Self::Stopping => "stopping",
            Self::Backoff => "backoff",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        })
    }
}

/// The supervisor as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Built, [`super::Event::Startup`] not yet received.
    Idle,
    /// Starting units in dependency order.
    Starting,
    /// Startup is complete.
    Running,
    /// Stopping everything.
    ShuttingDown {
        /// Why.
        cause: ShutdownCause,
        /// Fast path.
        fast: bool,
    },
    /// Every unit has exited; [`super::Action::ShutdownComplete`] was emitted.
    Done(ShutdownReport),
}

/// The detailed state, with the data each state needs.
#[derive(Debug, Clone)]
pub(super) enum UnitState {
    Pending,
    Spawning,
    Starting {
        pid: Pid,
        ready_deadline: Instant,
    },
    Ready {
        pid: Pid,
        heartbeat_deadline: Option<Instant>,
    },
    Draining {
        pid: Pid,
        heartbeat_deadline: Option<Instant>,
        drain_deadline: Option<Instant>,
    },
    Stopping {
        pid: Pid,
        cause: StopCause,
        /// The stop signal (the worker's `stop_signal` when the stop began: a replaced worker's
        /// old process is stopped the way its old spec said).
        signal: Signal,
        /// When to send the stop signal; `None` once sent.
        signal_at: Option<Instant>,
        /// When to send SIGKILL; `None` once sent.
        kill_at: Option<Instant>,
    },
    Backoff {
        until: Instant,
    },
    Completed,
    Failed,
    Stopped,
}

impl UnitState {
    /// The current process, if any.
    pub(super) const fn pid(&self) -> Option<Pid> {
        match *self {
            Self::Starting { pid, .. }
            | Self::Ready { pid, .. }
            | Self::Draining { pid, .. }
            | Self::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// Whether a process exists or is being created.
    pub(super) const fn is_alive(&self) -> bool {
        matches!(
            self,
            Self::Spawning
                | Self::Starting { .. }
                | Self::Ready { .. }
                | Self::Draining { .. }
                | Self::Stopping { .. }
        )
    }

    pub(super) const fn kind(&self) -> StateKind {
        match self {
            Self::Pending => StateKind::Pending,
            Self::Spawning => StateKind::Spawning,
            Self::Starting { .. } => StateKind::Starting,
            Self::Ready { .. } => StateKind::Ready,
            Self::Draining { .. } => StateKind::Draining,
            Self::Stopping { .. } => StateKind::Stopping,
            Self::Backoff { .. } => StateKind::Backoff,
            Self::Completed => StateKind::Completed,
            Self::Failed => StateKind::Failed,
            Self::Stopped => StateKind::Stopped,
        }
    }

    /// The earliest deadline this state waits for.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match *self {
            Self::Starting { ready_deadline, .. } => Some(ready_deadline),
            Self::Ready {
                heartbeat_deadline, ..
            } => heartbeat_deadline,
            Self::Draining {
                heartbeat_deadline,
                drain_deadline,
                ..
            } => min_opt(heartbeat_deadline, drain_deadline),
            Self::Stopping {
                signal_at, kill_at, ..
            } => min_opt(signal_at, kill_at),
            Self::Backoff { until } => Some(until),
            _ => None,
        }
    }
}

/// The earlier of two optional instants.
pub(super) fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What a reconfiguration ([`super::Changes`]) wants done with a unit, beyond its normal course.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    /// Nothing special.
    Keep,
    /// Its worker's spec changed: once its current process is gone (stopped with
    /// [`StopCause::Replaced`]), it goes back to `Pending` and starts with the new spec. A stop
    /// asked for meanwhile (by hand, shutdown, drain) wins: it then stays down.
    Replace,
    /// Its worker was removed or scaled down: it is stopped (drained first if asked) and never
    /// restarted; once it has no process it is forgotten.
    Remove,
}

/// Everything the core remembers about one unit.
#[derive(Debug, Clone)]
pub(super) struct UnitRt {
    pub(super) state: UnitState,
    /// A stop was asked for and has not finished: the unit is not restarted when it exits, does
    /// not count as satisfying its dependents, and (in an ordered stop) waits for its dependents.
    pub(super) stop_wanted: Option<StopCause>,
    /// It became ready since it was last started (by startup or by hand).
    pub(super) ever_ready: bool,
    /// Consecutive automatic restarts (drives the backoff delay).
    pub(super) attempt: u32,
    /// Automatic restarts within the intensity window.
    pub(super) history: RestartHistory,
    /// Automatic restarts since the supervisor started (for `status`).
    pub(super) restarts: u32,
    pub(super) last_exit: Option<ExitRecord>,
    pub(super) started_at: Option<Instant>,
    pub(super) ready_at: Option<Instant>,
    pub(super) failure: Option<FailureReason>,
    pub(super) spawn_error: Option<String>,
    /// What a reconfiguration wants done with it.
    pub(super) fate: Fate,
}

impl UnitRt {
    pub(super) fn new() -> Self {
        Self {
            state: UnitState::Pending,
            stop_wanted: None,
            ever_ready: false,
            attempt: 0,
            history: RestartHistory::default(),
            restarts: 0,
            last_exit: None,
            started_at: None,
            ready_at: None,
            failure: None,
            spawn_error: None,
            fate: Fate::Keep,
        }
    }

    /// The earliest deadline this unit waits for. A running unit waiting for its turn in an
    /// ordered stop has none: its ready, heartbeat and drain timers are suspended (the stop order
    /// governs it now).
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.state {
            UnitState::Starting { .. } | UnitState::Ready { .. } | UnitState::Draining { .. }
                if self.stop_wanted.is_some() =>
            {
                None
            }
            _ => self.state.deadline(),
        }
    }

    /// Forget the previous incarnation's restart bookkeeping (a start by hand).
    pub(super) fn reset_for_manual_start(&mut self) {
        self.stop_wanted = None;
        self.ever_ready = false;
        self.attempt = 0;
        self.history.clear();
        self.failure = None;
    }
}

/// A read-only view of one unit for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitStatus<'a> {
    /// The unit.
    pub id: super::UnitId,
    /// `NAME` or `NAME#i`.
    pub name: &'a str,
    /// The worker it is a replica of.
    pub worker: &'a str,
    /// Replica number.
    pub replica: u32,
    /// Its state.
    pub state: StateKind,
    /// Its process, while it has one.
    pub pid: Option<Pid>,
    /// Automatic restarts so far.
    pub restarts: u32,
    /// How its last process ended.
    pub last_exit: Option<ExitRecord>,
    /// When its current (or last) process was spawned.
    pub started_at: Option<Instant>,
    /// When its current process became ready (`None` if it is not ready yet).
    pub ready_at: Option<Instant>,
    /// Why it failed (when [`StateKind::Failed`]).
    pub failure: Option<&'a FailureReason>,
    /// When it will be spawned again (when [`StateKind::Backoff`]).
    pub next_restart: Option<Instant>,
    /// Why it is stopping (when [`StateKind::Stopping`]).
    pub stop_cause: Option<StopCause>,
    /// For a pending unit: the dependency (worker name) that cannot be satisfied without
    /// intervention (failed, stopped, completed instead of ready, or itself blocked).
    pub blocked_by: Option<&'a str>,
    /// The last spawn error, if its last spawn failed.
    pub spawn_error: Option<&'a str>,
    /// It is being removed (its worker was removed or scaled down): it gets no new work, is not
    /// restarted, and is forgotten once its process is gone. It does not count towards its
    /// worker's replicas or its dependents' conditions.
    pub removing: bool,
}
