//! The typed configuration the rest of ampd uses: every default applied, durations as
//! [`Duration`], paths resolved against the config file's directory.

use crate::spec::{
    Backoff, DependencyCondition, Intensity, ReadinessProbe, RestartPolicy, Rlimits, StartupFailure,
};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default `ready_timeout`: how long a worker may take to become ready.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `stop_timeout`: how long after the stop signal before SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `heartbeat_interval` of amp-ipc workers.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Default `heartbeat_timeout`: silence after which an amp-ipc worker counts as hung.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default capacity of each ring (`ring.tasks`, `ring.completions`): 1 MiB.
pub const DEFAULT_RING_CAPACITY: u64 = 1 << 20;
/// Default `ring.max_record`: 64 KiB.
pub const DEFAULT_MAX_RECORD: u64 = 64 << 10;
/// Default per-worker in-flight credit window (`concurrency`).
pub const DEFAULT_CONCURRENCY: u32 = 64;
/// Default `log_max_size`: 10 MiB.
pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 << 20;
/// Default `log_keep`: rotated files kept.
pub const DEFAULT_LOG_KEEP: u32 = 5;
/// Default `[kinds.NAME] peak_ewma_decay`.
pub const DEFAULT_PEAK_EWMA_DECAY: Duration = Duration::from_secs(10);
/// Default `[kinds.NAME] queue_limit`.
pub const DEFAULT_QUEUE_LIMIT: u64 = 10_000;
/// Default `[kinds.NAME] max_attempts`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default `[kinds.NAME] batch`.
pub const DEFAULT_BATCH: u32 = 32;
/// Default `shm_prefix`.
pub const DEFAULT_SHM_PREFIX: &str = "amp";

/// A parsed, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from (as given).
    pub path: PathBuf,
    /// The `[supervisor]` section.
    pub supervisor: SupervisorConfig,
    /// The `[workers.NAME]` tables, **in file order**. Names are unique; every dependency names
    /// another worker; the dependency graph has no cycle.
    pub workers: Vec<WorkerConfig>,
    /// Every task kind some worker serves, by name, with the `[kinds.NAME]` settings or their
    /// defaults.
    pub kinds: BTreeMap<String, KindConfig>,
    /// Priority classes, in file order (default: `interactive` weight 8, `batch` weight 1).
    pub classes: Vec<ClassConfig>,
    /// Pipelines: the pipeline keys of every kind, `[[route]]` and `[[trigger]]`.
    pub pipeline: super::pipeline::PipelineConfig,
    /// The adaptive controller: `[adapt]`, the kinds' `adapt` modes and the workers'
    /// `min_replicas`/`max_replicas`/`autoscale` (default: every mode `off`).
    pub adapt: crate::adapt::AdaptConfig,
}

/// Output format of ampd's own log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The `[supervisor]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorConfig {
    /// Control socket path; `None` means [`default_control_socket`].
    pub control_socket: Option<PathBuf>,
    /// Prefix of shared-memory segment names.
    pub shm_prefix: String,
    /// Format of ampd's own log.
    pub log_format: LogFormat,
    /// What startup does when a worker does not become ready.
    pub on_startup_failure: StartupFailure,
    /// Default `ready_timeout` of workers.
    pub ready_timeout: Duration,
    /// Default `stop_timeout` of workers.
    pub stop_timeout: Duration,
    /// Default `heartbeat_interval` of amp-ipc workers.
    pub heartbeat_interval: Duration,
    /// Default `heartbeat_timeout` of amp-ipc workers.
    pub heartbeat_timeout: Duration,
    /// Where to serve metrics; `None` disables them.
    pub metrics_addr: Option<SocketAddr>,
    /// Group allowed to use the control socket besides ampd's user; `None`: owner only.
    pub control_group: Option<String>,
    /// Ceiling of the first retry's delay after a retryable error (full jitter; the ceiling
    /// doubles with each retry).
    pub retry_backoff: Duration,
    /// Largest retry delay ceiling.
    pub retry_backoff_max: Duration,
    /// The retry budget: a token bucket every retry of a retryable error draws from, so that
    /// retries cannot multiply the load during an outage.
    pub retry_budget: crate::delivery::RetryBudget,
    /// Worker deaths with a task in flight after which it counts as poison (dead-lettered).
    pub poison_deaths: u32,
    /// Dead-letter entries kept at most (the oldest are dropped beyond it).
    pub dlq_limit: usize,
    /// Seed of ampd's randomness (routing choices, retry jitter, restart jitter); `None`: a
    /// fresh one per run. A fixed seed makes those choices repeat for the same inputs.
    pub seed: Option<u64>,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            control_socket: None,
            shm_prefix: DEFAULT_SHM_PREFIX.to_owned(),
            log_format: LogFormat::Text,
            on_startup_failure: StartupFailure::Abort,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            metrics_addr: None,
            control_group: None,
            retry_backoff: crate::delivery::DEFAULT_RETRY_BASE,
            retry_backoff_max: crate::delivery::DEFAULT_RETRY_CAP,
            retry_budget: crate::delivery::RetryBudget::default(),
            poison_deaths: crate::delivery::DEFAULT_POISON_DEATHS,
            dlq_limit: crate::delivery::DEFAULT_DLQ_LIMIT,
            seed: None,
        }
    }
}

impl SupervisorConfig {
    /// The control socket to use: the configured one, else [`default_control_socket`].
    #[must_use]
    pub fn control_socket_path(&self) -> PathBuf {
        self.control_socket
            .clone()
            .unwrap_or_else(default_control_socket)
    }
}

/// The default control socket: `$XDG_RUNTIME_DIR/amp/ampd.sock` when `XDG_RUNTIME_DIR` is set
/// (and absolute), else `/tmp/amp-$UID/ampd.sock`. ampctl uses the same rule.
#[must_use]
pub fn default_control_socket() -> PathBuf {
    default_control_socket_for(
        std::env::var_os("XDG_RUNTIME_DIR").as_deref(),
        nix::unistd::getuid().as_raw(),
    )
}

/// [`default_control_socket`] for a given `XDG_RUNTIME_DIR` value and uid (pure).
///
/// ```
/// use amp_supervisor::config::default_control_socket_for;
/// use std::path::Path;
/// assert_eq!(default_control_socket_for(Some("/run/user/7".as_ref()), 7), Path::new("/run/user/7/amp/ampd.sock"));
/// assert_eq!(default_control_socket_for(None, 7), Path::new("/tmp/amp-7/ampd.sock"));
/// ```
#[must_use]
pub fn default_control_socket_for(xdg_runtime_dir: Option<&OsStr>, uid: u32) -> PathBuf {
    match xdg_runtime_dir.map(Path::new) {
        Some(dir) if dir.is_absolute() => dir.join("amp").join("ampd.sock"),
        _ => PathBuf::from(format!("/tmp/amp-{uid}/ampd.sock")),
    }
}

/// The program a worker runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Program {
    /// A bare name (no `/`): looked up first in the directory of the ampd executable, then in
    /// `PATH` (see [`Program::resolve`]).
    Name(String),
    /// A path (the command contained a `/`); a relative one was joined to the config file's
    /// directory.
    Path(PathBuf),
}

impl Program {
    /// Resolves the program to a path: a [`Program::Path`] as is; a [`Program::Name`] in
    /// `exe_dir` (ampd's own directory), then in each directory of `path_var` (`PATH`), taking
    /// the first candidate for which `is_executable` returns true.
    ///
    /// ```
    /// use amp_supervisor::config::Program;
    /// use std::path::Path;
    /// let p = Program::Name("amp-echo".into());
    /// let found = p.resolve(Some(Path::new("/opt/amp")), Some("/bin:/usr/bin".as_ref()), |c| c == Path::new("/usr/bin/amp-echo"));
    /// assert_eq!(found.as_deref(), Some(Path::new("/usr/bin/amp-echo")));
    /// ```
    pub fn resolve(
        &self,
        exe_dir: Option<&Path>,
        path_var: Option<&OsStr>,
        is_executable: impl Fn(&Path) -> bool,
    ) -> Option<PathBuf> {
        match self {
            Self::Path(p) => Some(p.clone()),
            Self::Name(name) => exe_dir
                .into_iter()
                .map(Path::to_path_buf)
                .chain(path_var.into_iter().flat_map(std::env::split_paths))
                .filter(|dir| !dir.as_os_str().is_empty())
                .map(|dir| dir.join(name))
                .find(|candidate| is_executable(candidate)),
        }
    }
}

impl std::fmt::Display for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A user or group: a name (resolved at spawn time) or a numeric id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A name to look up in the user/group database when spawning.
    Name(String),
    /// A numeric uid/gid.
    Id(u32),
}

/// One dependency of a worker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dependency {
    /// The worker depended on.
    pub name: String,
    /// When it counts as satisfied.
    pub condition: DependencyCondition,
}

/// Sizes of an amp-ipc worker's two rings (already checked with
/// [`amp_shm_layout::check_ring`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RingConfig {
    /// Tasks ring capacity in bytes (ampd → worker).
    pub tasks: u64,
    /// Completions ring capacity in bytes (worker → ampd).
    pub completions: u64,
    /// Largest record payload either ring carries.
    pub max_record: u64,
}

impl Default for RingConfig {
    fn default() -> Self {
        Self {
            tasks: DEFAULT_RING_CAPACITY,
            completions: DEFAULT_RING_CAPACITY,
            max_record: DEFAULT_MAX_RECORD,
        }
    }
}

/// Settings that exist only for workers speaking amp-ipc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcConfig {
    /// Task kinds the worker serves, in file order (may be empty).
    pub kinds: Vec<String>,
    /// Ring sizes.
    pub ring: RingConfig,
    /// How often the worker must show a sign of life.
    pub heartbeat_interval: Duration,
    /// Silence after which it counts as hung (> `heartbeat_interval`).
    pub heartbeat_timeout: Duration,
    /// In-flight credit window: tasks ampd may have outstanding at one replica.
    pub concurrency: u32,
}

/// How ampd talks to a worker and learns it is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerMode {
    /// `ipc = true` (default): an amp-ipc worker; ready after its handshake.
    Ipc(IpcConfig),
    /// `ipc = false`: a plain process; ready when `probe` passes
    /// ([`ReadinessProbe::Started`] when no probe is given).
    Plain {
        /// The readiness probe.
        probe: ReadinessProbe,
    },
}

/// Output capture with size-based rotation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogFile {
    /// Where stdout and stderr go.
    pub path: PathBuf,
    /// Rotate once the file reaches this many bytes.
    pub max_size: u64,
    /// Rotated files kept (`path.1` … `path.N`).
    pub keep: u32,
}

/// One `[workers.NAME]` table, with every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// The worker's name (`[a-z0-9_-]`, 1..=64 characters).
    pub name: String,
    /// The program.
    pub command: Program,
    /// Arguments after the program name.
    pub args: Vec<String>,
    /// Extra environment variables (added to ampd's environment).
    pub env: BTreeMap<String, String>,
    /// Working directory; `None` inherits ampd's.
    pub cwd: Option<PathBuf>,
    /// Number of processes (>= 1).
    pub replicas: u32,
    /// Dependencies, in file order.
    pub depends_on: Vec<Dependency>,
    /// How long it may take to become ready.
    pub ready_timeout: Duration,
    /// When it is restarted.
    pub restart: RestartPolicy,
    /// Restart backoff.
    pub backoff: Backoff,
    /// Restart intensity limit.
    pub intensity: Intensity,
    /// Signal sent to stop it.
    pub stop_signal: Signal,
    /// Time between the stop signal and SIGKILL.
    pub stop_timeout: Duration,
    /// User to run as; `None` keeps ampd's.
    pub user: Option<Principal>,
    /// Group to run as; `None` keeps the user's (or ampd's).
    pub group: Option<Principal>,
    /// Resource limits.
    pub rlimits: Rlimits,
    /// Nice value (-20..=19); `None` inherits.
    pub nice: Option<i32>,
    /// CPUs the worker may run on; empty inherits ampd's affinity.
    pub cpu_affinity: Vec<usize>,
    /// Output capture; `None` inherits ampd's stdout/stderr.
    pub log: Option<LogFile>,
    /// amp-ipc worker or plain process.
    pub mode: WorkerMode,
}

impl WorkerConfig {
    /// Whether it speaks amp-ipc.
    #[must_use]
    pub const fn is_ipc(&self) -> bool {
        matches!(self.mode, WorkerMode::Ipc(_))
    }

    /// Task kinds it serves (empty for plain processes).
    #[must_use]
    pub fn kinds(&self) -> &[String] {
        match &self.mode {
            WorkerMode::Ipc(ipc) => &ipc.kinds,
            WorkerMode::Plain { .. } => &[],
        }
    }
}

/// How the router picks a worker for a task of a kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouterPolicy {
    /// Each worker in turn.
    RoundRobin,
    /// The worker with the fewest tasks in flight.
    #[default]
    LeastLoaded,
    /// Peak-EWMA latency times load (Finagle-style).
    PeakEwma,
    /// A bandit (discounted Thompson sampling) choosing among the other policies, rewarded
    /// by the window's tail latency.
    Learned,
}

/// What happens to a task that exceeds its kind's `timeout`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnTimeout {
    /// Fail the task (the client gets a timeout error).
    #[default]
    Fail,
    /// Kill the worker running it and queue the task again (counts as an attempt).
    KillAndRequeue,
}

/// Per-kind task routing settings (`[kinds.NAME]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KindConfig {
    /// Queued tasks of this kind beyond which submissions are refused.
    pub queue_limit: u64,
    /// Routing policy.
    pub router: RouterPolicy,
    /// Per-task run timeout; `None`: no limit.
    pub timeout: Option<Duration>,
    /// What a timeout does.
    pub on_timeout: OnTimeout,
    /// Tries per task, the first included (>= 1).
    pub max_attempts: u32,
    /// Most tasks dispatched to one worker in one batch.
    pub batch: u32,
    /// Decay time of the `peak_ewma` latency estimate (also used by `learned` when it picks
    /// `peak_ewma`): how fast a spike is forgotten.
    pub peak_ewma_decay: Duration,
}

impl Default for KindConfig {
    fn default() -> Self {
        Self {
            queue_limit: DEFAULT_QUEUE_LIMIT,
            router: RouterPolicy::LeastLoaded,
            timeout: None,
            on_timeout: OnTimeout::Fail,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            batch: DEFAULT_BATCH,
            peak_ewma_decay: DEFAULT_PEAK_EWMA_DECAY,
        }
    }
}

/// A priority class (`[[class]]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClassConfig {
    /// Its name.
    pub name: String,
    /// Relative share of dispatch (>= 1).
    pub weight: u32,
}

impl ClassConfig {
    /// The classes used when the file declares none: `interactive` (8) and `batch` (1).
    #[must_use]
    pub fn defaults() -> Vec<Self> {
        vec![
            Self {
                name: "interactive".into(),
                weight: 8,
            },
            Self {
                name: "batch".into(),
                weight: 1,
            },
        ]
    }
}
