//! The file's serde schema: every table refuses unknown keys, and the values validation needs
//! to point at are kept [`Spanned`].

use super::model::{LogFormat, OnTimeout, RouterPolicy};
use super::pipeline::FailurePolicy;
use super::units::{Dur, SignalName, Size};
use crate::adapt::Mode;
use crate::spec::{
    DependencyCondition, Escalation, ReadinessProbe, RestartPolicy, Rlimits, StartupFailure,
};
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

/// A spanned map keyed by spanned names (a `[workers]` or `[kinds]` table).
pub(super) type Named<T> = BTreeMap<Spanned<String>, Spanned<T>>;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub supervisor: Option<Spanned<RawSupervisor>>,
    pub workers: Option<Spanned<Named<RawWorker>>>,
    pub kinds: Option<Named<RawKind>>,
    pub class: Option<Spanned<Vec<Spanned<RawClass>>>>,
    pub route: Option<Spanned<Vec<Spanned<RawRoute>>>>,
    pub trigger: Option<Spanned<Vec<Spanned<RawTrigger>>>>,
    pub adapt: Option<Spanned<RawAdapt>>,
}

/// `[supervisor]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSupervisor {
    pub control_socket: Option<Spanned<String>>,
    pub shm_prefix: Option<Spanned<String>>,
    pub log_format: Option<LogFormat>,
    pub on_startup_failure: Option<StartupFailure>,
    pub ready_timeout: Option<Spanned<Dur>>,
    pub stop_timeout: Option<Spanned<Dur>>,
    pub heartbeat_interval: Option<Spanned<Dur>>,
    pub heartbeat_timeout: Option<Spanned<Dur>>,
    pub metrics_addr: Option<Spanned<String>>,
    pub control_group: Option<Spanned<String>>,
    pub retry_backoff: Option<Spanned<Dur>>,
    pub retry_backoff_max: Option<Spanned<Dur>>,
    pub retry_budget: Option<Spanned<RawRetryBudget>>,
    pub poison_deaths: Option<Spanned<u64>>,
    pub dlq_limit: Option<Spanned<u64>>,
    pub seed: Option<Spanned<u64>>,
}

/// `retry_budget = { ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetryBudget {
    pub ratio: Option<Spanned<f64>>,
    pub min_per_sec: Option<Spanned<f64>>,
    pub capacity: Option<Spanned<f64>>,
}

/// `[workers.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorker {
    pub command: Spanned<String>,
    #[serde(default)]
    pub args: Vec<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<Spanned<String>, Spanned<String>>,
    pub cwd: Option<Spanned<String>>,
    pub replicas: Option<Spanned<u32>>,
    pub depends_on: Option<Spanned<RawDeps>>,
    pub ready_timeout: Option<Spanned<Dur>>,
    pub restart: Option<RestartPolicy>,
    pub backoff: Option<Spanned<RawBackoff>>,
    pub intensity: Option<Spanned<RawIntensity>>,
    pub stop_signal: Option<SignalName>,
    pub stop_timeout: Option<Spanned<Dur>>,
    pub user: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub rlimits: Option<Spanned<Rlimits>>,
    pub nice: Option<Spanned<i64>>,
    pub cpu_affinity: Option<Spanned<Vec<Spanned<u64>>>>,
    pub ring: Option<Spanned<RawRing>>,
    pub heartbeat_interval: Option<Spanned<Dur>>,
    pub heartbeat_timeout: Option<Spanned<Dur>>,
    pub kinds: Option<Spanned<Vec<Spanned<String>>>>,
    pub ipc: Option<Spanned<bool>>,
    pub probe: Option<Spanned<ReadinessProbe>>,
    pub log_file: Option<Spanned<String>>,
    pub log_max_size: Option<Spanned<Size>>,
    pub log_keep: Option<Spanned<u32>>,
    pub concurrency: Option<Spanned<u32>>,
    pub min_replicas: Option<Spanned<u32>>,
    pub max_replicas: Option<Spanned<u32>>,
    pub autoscale: Option<Mode>,
}

/// `depends_on`: a list of names (condition `ready`) or a table of name → condition.
#[derive(Debug)]
pub(super) enum RawDeps {
    /// `depends_on = ["a", "b"]`.
    List(Vec<Spanned<String>>),
    /// `depends_on = { a = "started" }`, in file order.
    Table(Vec<(Spanned<String>, Spanned<DependencyCondition>)>),
}

impl<'de> Deserialize<'de> for RawDeps {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawDeps;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "a list of worker names (depends_on = [\"a\", \"b\"]) or a table of conditions \
                     (depends_on = {{ a = \"ready\", b = \"started\" }})"
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawDeps, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<Spanned<String>>()? {
                    names.push(name);
                }
                Ok(RawDeps::List(names))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawDeps, A::Error> {
                let mut entries = Vec::new();
                while let Some(name) = map.next_key::<Spanned<String>>()? {
                    let condition = map.next_value::<Spanned<DependencyCondition>>()?;
                    entries.push((name, condition));
                }
                entries.sort_by_key(|(name, _)| name.span().start);
                Ok(RawDeps::Table(entries))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `backoff = { ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackoff {
    pub initial: Option<Spanned<Dur>>,
    pub max: Option<Spanned<Dur>>,
    pub multiplier: Option<Spanned<f64>>,
    pub jitter: Option<Spanned<f64>>,
}

/// `intensity = { ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIntensity {
    pub max_restarts: Option<u32>,
    pub window: Option<Spanned<Dur>>,
    pub on_exceeded: Option<Escalation>,
}

/// `ring = { ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRing {
    pub tasks: Option<Spanned<Size>>,
    pub completions: Option<Spanned<Size>>,
    pub max_record: Option<Spanned<Size>>,
}

/// `[kinds.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKind {
    pub queue_limit: Option<Spanned<u64>>,
    pub router: Option<RouterPolicy>,
    pub timeout: Option<Spanned<Dur>>,
    pub on_timeout: Option<OnTimeout>,
    pub max_attempts: Option<Spanned<u32>>,
    pub batch: Option<Spanned<u32>>,
    pub peak_ewma_decay: Option<Spanned<Dur>>,
    pub max_loops: Option<Spanned<u32>>,
    pub refine_kind: Option<Spanned<String>>,
    pub min_improvement: Option<Spanned<f64>>,
    pub deterministic: Option<Spanned<bool>>,
    pub cache: Option<Spanned<RawCache>>,
    pub fan_in: Option<Spanned<RawFanIn>>,
    pub child_failure: Option<FailurePolicy>,
    pub adapt: Option<Mode>,
}

/// `cache = { ... }` of a kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    pub max_bytes: Option<Spanned<Size>>,
    pub ttl: Option<Spanned<Dur>>,
    pub disk_dir: Option<Spanned<String>>,
    pub disk_max_bytes: Option<Spanned<Size>>,
}

/// `fan_in = "all" | "any" | { at_least = N }`.
#[derive(Debug)]
pub(super) enum RawFanIn {
    All,
    Any,
    AtLeast(u64),
}

impl<'de> Deserialize<'de> for RawFanIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawFanIn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "\"all\", \"any\" or {{ at_least = N }}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawFanIn, E> {
                match v {
                    "all" => Ok(RawFanIn::All),
                    "any" => Ok(RawFanIn::Any),
                    _ => Err(E::unknown_variant(v, &["all", "any", "{ at_least = N }"])),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFanIn, A::Error> {
                let mut n = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "at_least" {
                        return Err(serde::de::Error::unknown_field(&key, &["at_least"]));
                    }
                    n = Some(map.next_value::<u64>()?);
                }
                n.map(RawFanIn::AtLeast)
                    .ok_or_else(|| serde::de::Error::missing_field("at_least"))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    pub on: Option<Spanned<String>>,
    pub on_failure: Option<FailurePolicy>,
}

/// `[[trigger]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrigger {
    pub name: Spanned<String>,
    pub every: Option<Spanned<Dur>>,
    pub cron: Option<Spanned<String>>,
    pub on_complete: Option<Spanned<String>>,
    pub on_failure: Option<Spanned<bool>>,
    pub on_event: Option<Spanned<String>>,
    pub on_file: Option<Spanned<RawOnFile>>,
    pub submit: Spanned<RawSubmit>,
}

/// `on_file = { dir, pattern }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOnFile {
    pub dir: Spanned<String>,
    pub pattern: Option<Spanned<String>>,
}

/// `submit = { kind, payload, priority }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubmit {
    pub kind: Spanned<String>,
    pub payload: Option<Spanned<String>>,
    pub priority: Option<Spanned<String>>,
}

/// `[[class]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClass {
    pub name: Spanned<String>,
    pub weight: Option<Spanned<u32>>,
}

/// `[adapt]`: the adaptive controller (every key optional).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdapt {
    pub mode: Option<Mode>,
    pub interval: Option<Spanned<Dur>>,
    pub window: Option<Spanned<RawAdaptWindow>>,
    pub batch: Option<Spanned<RawAdaptBatch>>,
    pub timeout: Option<Spanned<RawAdaptTimeout>>,
    pub canary: Option<Spanned<RawAdaptCanary>>,
    pub scale: Option<Spanned<RawAdaptScale>>,
    pub param: Option<Vec<Spanned<RawAdaptParam>>>,
}

/// `[adapt.window]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdaptWindow {
    pub initial: Option<f64>,
    pub min: Option<u32>,
    pub max: Option<u32>,
    pub tolerance: Option<f64>,
    pub smoothing: Option<f64>,
    pub allowance: Option<f64>,
    pub backoff: Option<f64>,
    pub error_rate: Option<f64>,
    pub long_window: Option<Dur>,
    pub stall_factor: Option<f64>,
    pub stall_min: Option<Dur>,
    pub warmup: Option<Dur>,
    pub warmup_fraction: Option<f64>,
}

/// `[adapt.batch]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdaptBatch {
    pub latency_target: Option<Dur>,
    pub min: Option<u32>,
    pub max: Option<u32>,
    pub decrease: Option<f64>,
}

/// `[adapt.timeout]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdaptTimeout {
    pub factor: Option<f64>,
    pub min: Option<Dur>,
    pub max: Option<Dur>,
    pub hysteresis: Option<f64>,
    pub min_samples: Option<u64>,
}

/// `[adapt.canary]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdaptCanary {
    pub fraction: Option<f64>,
    pub max_change_fraction: Option<f64>,
    pub settle: Option<Dur>,
    pub window: Option<Dur>,
    pub min_samples: Option<u32>,
    pub alpha: Option<f64>,
    pub p99_margin: Option<f64>,
    pub error_margin: Option<f64>,
    pub rollout_step: Option<Dur>,
    pub cooldown: Option<Dur>,
}

/// `[adapt.scale]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdaptScale {
    pub queue_wait: Option<Dur>,
    pub high_utilisation: Option<f64>,
    pub low_utilisation: Option<f64>,
    pub up_after: Option<Dur>,
    pub down_cooldown: Option<Dur>,
    pub up_cooldown: Option<Dur>,
}

/// `[[adapt.param]]`: a worker-applied parameter the tuner searches by canaries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdaptParam {
    pub kind: Spanned<String>,
    pub name: Spanned<String>,
    pub initial: f64,
    pub min: f64,
    pub max: f64,
    pub step: f64,
}
