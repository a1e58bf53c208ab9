//! Inputs: events the event loop observed and commands from the control socket.

use crate::spec::ExitReason;
use nix::unistd::Pid;

/// A unit (one replica of a worker), as issued by [`super::Supervisor`]. Ids are dense
/// (`0..unit_count`, in the order units were created) and never reused within a run, so the
/// event loop can index its own tables with [`UnitId::index`]; a removed unit's index stays
/// unused (see [`super::Supervisor::is_live`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitId(u32);

impl UnitId {
    /// The id's position, `0..unit_count` (see [`super::Supervisor::unit_id`] for the way
    /// back).
    #[must_use]
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    pub(super) fn from_index(index: usize) -> Self {
        Self(u32::try_from(index).expect("fewer than 2^32 units"))
    }
}

/// Something the event loop observed, translated for the lifecycle core.
///
/// Events about a process carry its `pid`; an event whose pid is not the unit's current process
/// (a late message from an earlier incarnation) is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Start every worker in dependency order (sent once, when ampd starts).
    Startup,
    /// Nothing happened but time passed: a deadline from
    /// [`super::Supervisor::next_deadline`] was reached.
    Tick,
    /// The process for a [`super::Action::Spawn`] was created.
    Spawned {
        /// The unit.
        unit: UnitId,
        /// Its process (also its process group).
        pid: Pid,
    },
    /// A [`super::Action::Spawn`] could not create the process.
    SpawnFailed {
        /// The unit.
        unit: UnitId,
        /// What went wrong (for the log and `status`).
        error: String,
    },
    /// The process reported ready (amp-ipc handshake, or its readiness probe passed).
    Ready {
        /// The unit.
        unit: UnitId,
        /// The process.
        pid: Pid,
    },
    /// The process showed a sign of life (its heartbeat advanced).
    Heartbeat {
        /// The unit.
        unit: UnitId,
        /// The process.
        pid: Pid,
    },
    /// The event loop judged the process hung by itself (alternative to
    /// [`super::WorkerSpec::heartbeat_timeout`], which the core tracks from `Heartbeat` events).
    HeartbeatStale {
        /// The unit.
        unit: UnitId,
        /// The process.
        pid: Pid,
    },
    /// The process finished draining (no task in flight) after [`super::Action::SendDrain`].
    Drained {
        /// The unit.
        unit: UnitId,
        /// The process.
        pid: Pid,
    },
    /// The process ended (reaped).
    Exited {
        /// The unit.
        unit: UnitId,
        /// The process.
        pid: Pid,
        /// Exit code or signal.
        reason: ExitReason,
    },
    /// Shut the supervisor down (SIGTERM/SIGINT or `ampctl shutdown`). The first request stops
    /// units in reverse dependency order; a second one, or `fast: true`, takes the fast path.
    Shutdown {
        /// Skip the ordered, graceful sequence.
        fast: bool,
    },
}

impl Event {
    /// The unit the event is about, if any.
    #[must_use]
    pub const fn unit(&self) -> Option<UnitId> {
        match self {
            Self::Spawned { unit, .. }
            | Self::SpawnFailed { unit, .. }
            | Self::Ready { unit, .. }
            | Self::Heartbeat { unit, .. }
            | Self::HeartbeatStale { unit, .. }
            | Self::Drained { unit, .. }
            | Self::Exited { unit, .. } => Some(*unit),
            Self::Startup | Self::Tick | Self::Shutdown { .. } => None,
        }
    }
}

/// A manual control request (from `ampctl`). `target` is a unit name (`api#1`) or a worker name
/// (all its replicas).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Start units that are stopped, failed or completed (they wait for their dependencies
    /// again); a unit waiting in backoff is spawned at once. Running units are left alone.
    Start {
        /// Unit or worker name.
        target: String,
    },
    /// Stop units (graceful sequence); they stay stopped until started.
    Stop {
        /// Unit or worker name.
        target: String,
        /// Also stop every unit that (transitively) depends on them, dependents first.
        with_dependents: bool,
    },
    /// Stop then spawn again at once (no backoff; restart counters reset). Stopped, failed or
    /// completed units are started as by [`Command::Start`].
    Restart {
        /// Unit or worker name.
        target: String,
    },
    /// Ask ready units to drain (the router stops feeding them); once drained they are stopped.
    Drain {
        /// Unit or worker name.
        target: String,
    },
}

impl Command {
    /// The unit or worker name the command is about.
    #[must_use]
    pub fn target(&self) -> &str {
        match self {
            Self::Start { target }
            | Self::Stop { target, .. }
            | Self::Restart { target }
            | Self::Drain { target } => target,
        }
    }
}

/// Why a [`Command`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No unit or worker has that name.
    #[error("no unit or worker named {target:?}; `ampctl status` lists them")]
    UnknownTarget {
        /// The name given.
        target: String,
    },
    /// Startup has not begun.
    #[error("the supervisor has not started its workers yet; retry in a moment")]
    NotStarted,
    /// Shutdown has begun; units are no longer started or stopped one by one.
    #[error("the supervisor is shutting down; no unit can be started or stopped now")]
    ShuttingDown,
}
