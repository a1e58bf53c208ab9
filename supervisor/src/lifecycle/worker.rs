//! Input: what the lifecycle core needs to know about each worker, and supervisor-wide options.

use crate::spec::{Backoff, DependencyCondition, Intensity, RestartPolicy, StartupFailure};
use nix::sys::signal::Signal;
use std::time::Duration;

/// One worker as the lifecycle core sees it: a name, how many processes (replicas), what it waits
/// for, and its restart and stop policy. The config module maps each `[workers.NAME]` table into
/// one of these; nothing here is about *how* to run the process.
///
/// A worker with `replicas = 1` becomes one unit named like the worker; with `replicas = N > 1`
/// it becomes `N` units named `NAME#0` … `NAME#N-1`; units added by scaling up later are named
/// `NAME#k` (see [`super`] for the replica rules).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSpec {
    /// The worker's name; non-empty, without `#` (which separates replica numbers).
    pub name: String,
    /// Number of processes (>= 1).
    pub replicas: u32,
    /// Workers this one waits for before its first start, with the condition each must meet.
    pub depends_on: Vec<Dependency>,
    /// When an exited process is started again.
    pub restart: RestartPolicy,
    /// Delay before each automatic restart.
    pub backoff: Backoff,
    /// Restart intensity limit (per unit, i.e. per replica) and what happens beyond it.
    pub intensity: Intensity,
    /// How long a spawned process may take to report ready (per attempt).
    pub ready_timeout: Duration,
    /// Time between the stop signal and SIGKILL (both sent to the process group).
    pub stop_timeout: Duration,
    /// The signal that asks the process to stop (usually SIGTERM).
    pub stop_signal: Signal,
    /// `Some(grace)`: the worker has a control channel; a stop first sends it `Shutdown` and waits
    /// `grace` before sending `stop_signal`. `None`: no control channel (a plain process);
    /// `stop_signal` is sent at once. The recommended mapping for amp-ipc workers is
    /// `Some(stop_timeout / 2)`.
    pub shutdown_grace: Option<Duration>,
    /// Silence after which a ready worker counts as hung and is killed; `None`: not monitored.
    /// Sign-of-life is reported with [`super::Event::Heartbeat`].
    pub heartbeat_timeout: Option<Duration>,
    /// How long a draining worker may take to report drained before it is stopped anyway;
    /// `None`: wait for as long as it takes.
    pub drain_timeout: Option<Duration>,
}

impl WorkerSpec {
    /// A worker with one replica, no dependencies and default policies: restart on failure,
    /// [`Backoff::default`], [`Intensity::default`], ready timeout 10 s, stop timeout 5 s,
    /// SIGTERM, a control channel with a 2.5 s shutdown grace, no heartbeat or drain timeout.
    ///
    /// ```
    /// use amp_supervisor::lifecycle::{Dependency, WorkerSpec};
    /// use amp_supervisor::spec::DependencyCondition;
    /// let mut api = WorkerSpec::new("api");
    /// api.replicas = 2;
    /// api.depends_on.push(Dependency::new("db", DependencyCondition::Ready));
    /// assert_eq!(api.unit_name(1), "api#1");
    /// ```
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            replicas: 1,
            depends_on: Vec::new(),
            restart: RestartPolicy::OnFailure,
            backoff: Backoff::default(),
            intensity: Intensity::default(),
            ready_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(5),
            stop_signal: Signal::SIGTERM,
            shutdown_grace: Some(Duration::from_millis(2500)),
            heartbeat_timeout: None,
            drain_timeout: None,
        }
    }

    /// The name replica `replica` gets when the worker is created from this spec: the worker's
    /// name when it has one replica, `NAME#i` otherwise. (Units added by scaling up later are
    /// always `NAME#i`; names never change.)
    #[must_use]
    pub fn unit_name(&self, replica: u32) -> String {
        if self.replicas == 1 {
            self.name.clone()
        } else {
            format!("{}#{replica}", self.name)
        }
    }
}

/// One dependency of a worker: the worker depended on (a worker name, so all its replicas) and
/// when it counts as satisfied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dependency {
    /// The worker depended on.
    pub name: String,
    /// When it counts as satisfied.
    pub condition: DependencyCondition,
}

impl Dependency {
    /// A dependency on `name` with `condition`.
    #[must_use]
    pub fn new(name: impl Into<String>, condition: DependencyCondition) -> Self {
        Self {
            name: name.into(),
            condition,
        }
    }
}

/// Supervisor-wide options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// What startup does when a unit fails before it was ever ready.
    pub startup_failure: StartupFailure,
    /// On a fast shutdown (second request), time between the stop signal and SIGKILL (capped at
    /// each worker's `stop_timeout`).
    pub fast_kill_timeout: Duration,
}

impl Default for Options {
    /// Abort on startup failure; 1 s fast kill timeout.
    fn default() -> Self {
        Self {
            startup_failure: StartupFailure::Abort,
            fast_kill_timeout: Duration::from_secs(1),
        }
    }
}
