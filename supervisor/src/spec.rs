//! Policy vocabulary shared by the config parser, the lifecycle core and the syscall shell.
//!
//! These are plain data types (serde-deserialisable, with the spellings the TOML config uses), so
//! `config` can parse into them and `lifecycle`/`sys` can act on them without depending on each
//! other.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// When a dependency counts as satisfied for its dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyCondition {
    /// The dependency's process has been spawned.
    Started,
    /// The dependency reported ready (amp-ipc handshake, or its readiness probe passed).
    Ready,
    /// The dependency ran to completion with exit code 0 (a one-shot job such as a migration).
    CompletedSuccessfully,
}

/// When a worker that exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart whatever the exit status.
    Always,
    /// Restart after a non-zero exit code or death by signal; exit code 0 is final.
    OnFailure,
    /// Never restart.
    Never,
}

/// What happens when a worker restarts more often than its intensity limit allows (OTP-style).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Escalation {
    /// Mark the worker failed and leave it stopped; everything else keeps running.
    MarkFailed,
    /// Mark it failed and stop every worker that (transitively) depends on it.
    StopDependents,
    /// Shut the whole supervisor down (exit status reports the failure).
    Shutdown,
}

/// What startup does when a worker fails to become ready within its `ready_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartupFailure {
    /// Stop everything started so far and exit with an error.
    Abort,
    /// Keep the workers that did start; the failed worker's dependents are not started.
    Continue,
}

/// Exponential restart backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first restart.
    pub initial: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
    /// Multiplier applied per consecutive restart (>= 1).
    pub multiplier: f64,
    /// Jitter fraction in `0.0..=1.0`: the delay is drawn uniformly from
    /// `[d * (1 - jitter), d]`.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

/// Restart intensity limit: at most `max_restarts` within any `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts allowed within `window`.
    pub max_restarts: u32,
    /// The sliding window.
    pub window: Duration,
    /// What to do when the limit is exceeded.
    pub on_exceeded: Escalation,
}

impl Default for Intensity {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            window: Duration::from_secs(60),
            on_exceeded: Escalation::MarkFailed,
        }
    }
}

/// Resource limits applied to a worker before `exec` (soft = hard). `None` leaves the inherited limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rlimits {
    /// `RLIMIT_NOFILE`: open file descriptors.
    pub nofile: Option<u64>,
    /// `RLIMIT_AS`: address space in bytes.
    #[serde(rename = "as")]
    pub address_space: Option<u64>,
    /// `RLIMIT_CPU`: CPU seconds.
    pub cpu: Option<u64>,
    /// `RLIMIT_NPROC`: processes of the user.
    pub nproc: Option<u64>,
    /// `RLIMIT_CORE`: core file size in bytes.
    pub core: Option<u64>,
}

/// How a plain (non-amp-ipc) process shows it is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReadinessProbe {
    /// Ready as soon as it is spawned.
    Started,
    /// Ready once a TCP connect to `host:port` succeeds.
    Tcp {
        /// Host (default `127.0.0.1`).
        #[serde(default = "default_probe_host")]
        host: String,
        /// Port.
        port: u16,
    },
    /// Ready once `command` (run via `/bin/sh -c`) exits 0.
    Exec {
        /// Shell command.
        command: String,
    },
}

fn default_probe_host() -> String {
    "127.0.0.1".to_owned()
}

/// Why a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// It called `exit` with this code.
    Code(i32),
    /// It was killed by this signal number.
    Signal {
        /// The signal number.
        signal: i32,
        /// Whether it dumped core.
        core_dumped: bool,
    },
}

impl ExitReason {
    /// Exit code 0.
    #[must_use]
    pub const fn is_success(self) -> bool {
        matches!(self, Self::Code(0))
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Code(c) => write!(f, "exited with code {c}"),
            Self::Signal {
                signal,
                core_dumped,
            } => {
                let name = nix::sys::signal::Signal::try_from(signal)
                    .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned());
                write!(
                    f,
                    "killed by {name}{}",
                    if core_dumped { " (core dumped)" } else { "" }
                )
            }
        }
    }
}
