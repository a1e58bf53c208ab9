//! The `ampd --config amp.toml` file: parsed with serde, validated, and turned into a typed
//! [`Config`] with every default applied. No I/O happens here beyond reading the file.
//!
//! Every problem is reported as `FILE:LINE:COLUMN: FIELD: MESSAGE` (see [`Diagnostic`]); all
//! validation problems of a file are reported together ([`ConfigError::Invalid`]). The reference
//! of every key is `docs/config.md`.
//!
//! ```
//! use amp_supervisor::config::{parse, DependencyCondition};
//! use std::path::Path;
//! let config = parse(
//!     r#"
//!     [workers.db]
//!     command = "/usr/bin/postgres"
//!     ipc = false
//!     probe = { type = "tcp", port = 5432 }
//!
//!     [workers.api]
//!     command = "amp-echo"
//!     kinds = ["echo"]
//!     depends_on = { db = "ready" }
//!     "#,
//!     Path::new("amp.toml"),
//! )?;
//! assert_eq!(config.workers[1].depends_on[0].condition, DependencyCondition::Ready);
//! let order: Vec<&str> = config.topo_order().iter().map(|w| w.name.as_str()).collect();
//! assert_eq!(order, ["db", "api"]);
//! # Ok::<(), amp_supervisor::config::ConfigError>(())
//! ```
//!
//! Inside: `raw` is the serde schema (unknown keys refused, spans kept), `validate` turns it
//! into the typed `model` collecting every problem, `graph` finds cycles and a dependency order,
//! `units` parses durations, sizes and signal names, `error` turns spans into diagnostics,
//! `pipeline` holds the typed `[[route]]`, `[[trigger]]` and pipeline `[kinds.NAME]` keys.
//!
//! Workers keep their file order in [`Config::workers`]; [`Config::topo_order`] gives a
//! dependency order. Relative paths in the file are resolved against the file's directory.

mod error;
mod graph;
mod model;
mod pipeline;
mod raw;
mod units;
mod validate;

#[cfg(test)]
mod tests;

pub use crate::spec::{
    Backoff, DependencyCondition, Escalation, Intensity, ReadinessProbe, RestartPolicy, Rlimits,
    StartupFailure,
};
pub use error::{ConfigError, Diagnostic};
pub use model::{
    default_control_socket, default_control_socket_for, ClassConfig, Config, Dependency, IpcConfig,
    KindConfig, LogFile, LogFormat, OnTimeout, Principal, Program, RingConfig, RouterPolicy,
    SupervisorConfig, WorkerConfig, WorkerMode, DEFAULT_BATCH, DEFAULT_CONCURRENCY,
    DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_TIMEOUT, DEFAULT_LOG_KEEP, DEFAULT_LOG_MAX_SIZE,
    DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_RECORD, DEFAULT_QUEUE_LIMIT, DEFAULT_READY_TIMEOUT,
    DEFAULT_RING_CAPACITY, DEFAULT_SHM_PREFIX, DEFAULT_STOP_TIMEOUT,
};
pub use pipeline::{
    CacheConfig, DiskCacheConfig, FailurePolicy, FanIn, KindFlow, PipelineConfig, RouteConfig,
    RouteOn, TriggerConfig, TriggerSubmit, TriggerWhen, DEFAULT_CACHE_MAX_BYTES, DEFAULT_CACHE_TTL,
    DEFAULT_DISK_CACHE_MAX_BYTES, DEFAULT_KIND_MAX_LOOPS,
};
pub use units::{parse_duration, parse_signal, parse_size};

use serde::Deserialize;
use std::path::Path;

/// Reads and parses the config file at `path`.
///
/// # Errors
/// [`ConfigError::Read`] when the file cannot be read; otherwise as [`parse`].
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses config `text`; `origin` names the file in diagnostics, is stored as
/// [`Config::path`], and its directory is what relative paths in the file are resolved against.
///
/// # Errors
/// [`ConfigError::Syntax`] for invalid TOML, [`ConfigError::Schema`] for an unknown key, a
/// missing `command`, or a value of the wrong type or format, and [`ConfigError::Invalid`] with
/// every impossible value found (unknown or cyclic dependencies, out-of-range numbers...).
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let doc = toml::de::DeTable::parse(text)
        .map_err(|e| ConfigError::Syntax(error::from_toml(text, origin, &e, true)))?;
    let raw = raw::RawConfig::deserialize(toml::de::Deserializer::from(doc))
        .map_err(|e| ConfigError::Schema(error::from_toml(text, origin, &e, false)))?;
    validate::build(raw, text, origin).map_err(ConfigError::Invalid)
}

impl Config {
    /// Workers in a dependency order: each after everything it depends on, ties broken by file
    /// order. Start them in this order; stop them in the reverse.
    #[must_use]
    pub fn topo_order(&self) -> Vec<&WorkerConfig> {
        let index: std::collections::HashMap<&str, usize> = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| (w.name.as_str(), i))
            .collect();
        let deps: Vec<Vec<usize>> = self
            .workers
            .iter()
            .map(|w| {
                w.depends_on
                    .iter()
                    .filter_map(|d| index.get(d.name.as_str()).copied())
                    .collect()
            })
            .collect();
        graph::topo_order(&deps)
            .into_iter()
            .map(|i| &self.workers[i])
            .collect()
    }

    /// The worker called `name`.
    #[must_use]
    pub fn worker(&self, name: &str) -> Option<&WorkerConfig> {
        self.workers.iter().find(|w| w.name == name)
    }
}
