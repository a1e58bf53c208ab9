//! The typed pipeline settings: the new keys of `[kinds.NAME]` (loops, determinism and cache,
//! fan-in), `[[route]]` and `[[trigger]]`. Kept apart from [`super::KindConfig`] so that stays
//! a small `Copy` value for the router and delivery cores.

use crate::pipeline::cron::CronSchedule;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

/// Default `[kinds.NAME] max_loops`.
pub const DEFAULT_KIND_MAX_LOOPS: u32 = 10;
/// Default `cache.max_bytes` of a deterministic kind: 64 MiB.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 64 << 20;
/// Default `cache.ttl`: 10 minutes.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(600);
/// Default `cache.disk_max_bytes`: 1 GiB.
pub const DEFAULT_DISK_CACHE_MAX_BYTES: u64 = 1 << 30;

/// Everything pipeline-related in the file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PipelineConfig {
    /// The pipeline settings of every served kind (defaults where `[kinds.NAME]` says nothing),
    /// by name; the same key set as [`super::Config::kinds`].
    pub kinds: BTreeMap<String, KindFlow>,
    /// `[[route]]` tables in file order. Both ends are served kinds; the routes form no cycle.
    pub routes: Vec<RouteConfig>,
    /// `[[trigger]]` tables in file order, names unique.
    pub triggers: Vec<TriggerConfig>,
}

impl PipelineConfig {
    /// The settings of kind `name` (the defaults for a name not in the table).
    #[must_use]
    pub fn kind(&self, name: &str) -> &KindFlow {
        static DEFAULT: LazyLock<KindFlow> = LazyLock::new(KindFlow::default);
        self.kinds.get(name).unwrap_or(&DEFAULT)
    }
}

/// The pipeline keys of one `[kinds.NAME]` table, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct KindFlow {
    /// Loopbacks one task (one logical stage, across refine rounds) may take; at the limit the
    /// last payload is delivered marked `loop_limit`. 0 = no loopback is followed.
    pub max_loops: u32,
    /// The kind a loopback of this kind is sent to instead of this kind; its result comes
    /// back to this kind as the next round's payload. `None`: loop back into this kind.
    pub refine_kind: Option<String>,
    /// Stop looping when the worker-reported score improved by less than this since the
    /// previous round. `None`: loop until the worker stops asking or `max_loops`.
    pub min_improvement: Option<f64>,
    /// The same payload always gives the same result: identical tasks in flight are run once
    /// (coalesced) and results are cached ([`KindFlow::cache`]).
    pub deterministic: bool,
    /// The result cache; `Some` exactly when `deterministic`.
    pub cache: Option<CacheConfig>,
    /// When a parent with children (subtasks, or a route fan-out) completes.
    pub fan_in: FanIn,
    /// What a failed child does to its parent.
    pub child_failure: FailurePolicy,
}

impl Default for KindFlow {
    fn default() -> Self {
        Self {
            max_loops: DEFAULT_KIND_MAX_LOOPS,
            refine_kind: None,
            min_improvement: None,
            deterministic: false,
            cache: None,
            fan_in: FanIn::All,
            child_failure: FailurePolicy::FailParent,
        }
    }
}

/// `cache = { ... }` of a deterministic kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Bytes of results kept in memory (least recently used evicted first); 0: no memory tier.
    pub max_bytes: u64,
    /// How long a result stays valid (both tiers).
    pub ttl: Duration,
    /// The optional disk tier.
    pub disk: Option<DiskCacheConfig>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_CACHE_MAX_BYTES,
            ttl: DEFAULT_CACHE_TTL,
            disk: None,
        }
    }
}

/// The disk tier of a cache: a directory of files named by key hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskCacheConfig {
    /// The directory (resolved against the config file's directory; created when missing).
    pub dir: PathBuf,
    /// Bytes of files kept; the oldest are deleted beyond it.
    pub max_bytes: u64,
}

/// `fan_in`: when a parent completes from its children's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FanIn {
    /// Every child has finished.
    #[default]
    All,
    /// One child succeeded (the others are cancelled).
    Any,
    /// This many children succeeded (the others are cancelled).
    AtLeast(u32),
}

/// What a failure does to whatever waits on it (`child_failure`, `[[route]] on_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Fail the parent (or the chain).
    #[default]
    FailParent,
    /// Carry on: a failed child is recorded as failed in the combined result; a failed route
    /// target is skipped (its input passes on as its output).
    Continue,
}

/// Which outcome a route follows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum RouteOn {
    /// Success (an untagged result, or a tagged one no `tag:` route of the kind takes).
    #[default]
    Ok,
    /// Failure; the next task's payload is the error message.
    Err,
    /// A result tagged with this name (see `pipeline::routes::split_tag`).
    Tag(String),
}

impl std::fmt::Display for RouteOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ok => f.write_str("ok"),
            Self::Err => f.write_str("err"),
            Self::Tag(t) => write!(f, "tag:{t}"),
        }
    }
}

/// One `[[route]]`: a finished task of kind `from` becomes a task of kind `to`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteConfig {
    /// The kind whose outcome is routed.
    pub from: String,
    /// The kind of the next task.
    pub to: String,
    /// Which outcome it follows.
    pub on: RouteOn,
    /// What a failure of the `to` task does to the chain.
    pub on_failure: FailurePolicy,
}

/// One `[[trigger]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerConfig {
    /// Its unique name.
    pub name: String,
    /// What fires it.
    pub when: TriggerWhen,
    /// The task it submits.
    pub submit: TriggerSubmit,
}

/// What fires a trigger.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerWhen {
    /// `every = "5s"`: periodically, first one period after start.
    Every(Duration),
    /// `cron = "..."`: on a cron schedule (UTC).
    Cron(CronSchedule),
    /// `on_complete = "KIND"`: when a task of that kind finishes successfully, or with
    /// `on_failure = true` when one fails.
    Complete {
        /// The kind watched.
        kind: String,
        /// Fire on failures instead of successes.
        on_failure: bool,
    },
    /// `on_event = "NAME"`: when `ampctl emit NAME [payload]` is run.
    Event(String),
    /// `on_file = { dir, pattern }`: when a file matching `pattern` appears in `dir`.
    File {
        /// The watched directory (resolved against the config file's directory).
        dir: PathBuf,
        /// A glob on the file name (`*` and `?`).
        pattern: String,
    },
}

/// `submit = { kind, payload, priority }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerSubmit {
    /// The kind submitted (served by some worker).
    pub kind: String,
    /// The payload; `None`: the default of the trigger type (a completed task's result or
    /// error message, an event's payload, a file's path, empty for timers).
    pub payload: Option<Vec<u8>>,
    /// Priority class index into [`super::Config::classes`].
    pub class: usize,
}
