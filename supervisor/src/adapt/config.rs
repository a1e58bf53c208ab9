//! [`AdaptConfig`]: the controller's tuning, with defaults, and its validation.
//!
//! Not wired to the configuration file yet: ampd builds one with [`AdaptConfig::default`] and
//! overrides what `[adapt]` says once that section exists.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How the controller acts for a kind (or a worker group).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Observe only: profiles are kept, no decision is made.
    #[default]
    Off,
    /// Decisions are emitted as events with their evidence and applied only through
    /// [`Controller::apply`](super::Controller::apply).
    Advise,
    /// Decisions are emitted and applied at once.
    Auto,
}

/// How RTT samples are summarised by the window controller.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RttStatistic {
    /// The mean. By Little's law `mean un-queued RTT / mean RTT` is the share of the tasks in
    /// flight that are being served rather than waiting, so the gradient sees any queueing,
    /// also the kind that only hurts the tail.
    Mean,
    /// A quantile (0.5: Netflix's median).
    Quantile(f64),
}

/// Per-worker concurrency windows: Gradient2 with an AIMD fallback (see [`super::gradient`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowConfig {
    /// Limit a worker starts with (before any measurement).
    pub initial: f64,
    /// Smallest window ever set.
    pub min: u32,
    /// Largest window ever set.
    pub max: u32,
    /// Weight of a new limit against the old one (`limit = limit·(1−α) + new·α`).
    pub smoothing: f64,
    /// Latency inflation tolerated before the limit shrinks: the gradient is
    /// `clamp(tolerance · long / short, 0.5, 1)`.
    pub tolerance: f64,
    /// Queue allowance: `allowance · sqrt(limit)` is added to `limit · gradient`.
    pub allowance: f64,
    /// Time constant of the long RTT's EWMA.
    pub long_window: Duration,
    /// Time constant with which the long RTT follows a drop (an un-queued RTT that got
    /// shorter is real: the worker got faster).
    pub long_fall: Duration,
    /// Fewest completions before a worker's limit is updated (they accumulate over intervals).
    pub min_samples: u32,
    /// Fewest completions of tasks that shared the worker (dispatched while others were in
    /// flight there) before they are judged; they accumulate over updates.
    pub min_shared: u32,
    /// How a set of RTTs is summarised for the short RTT (and the un-queued ones for the long
    /// RTT).
    pub statistic: RttStatistic,
    /// Error share of an update's completions that counts as an error burst (AIMD decrease).
    pub error_rate: f64,
    /// Multiplicative decrease on errors, timeouts and stalls.
    pub backoff: f64,
    /// After the gradient brings the window down from `w`, the limit stays below `w` this
    /// long (doubling while probes at `w` keep failing).
    pub probe_hold: Duration,
    /// Longest probe hold.
    pub probe_hold_max: Duration,
    /// After an AIMD decrease the limit only grows additively for this long.
    pub aimd_hold: Duration,
    /// Additive increase per update during `aimd_hold`.
    pub additive: f64,
    /// A worker with tasks in flight and no completion for `max(stall_min, stall_factor ×
    /// the kind's p99.9 RTT over the long window)` is stalled: its window goes to `min` at
    /// once.
    pub stall_factor: f64,
    /// See `stall_factor`.
    pub stall_min: Duration,
    /// A new worker (or one restarted) serves with `warmup_fraction` of its limit for `warmup`.
    pub warmup: Duration,
    /// See `warmup`.
    pub warmup_fraction: f64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            initial: 2.0,
            min: 1,
            max: 256,
            smoothing: 0.2,
            tolerance: 1.2,
            allowance: 0.5,
            long_window: Duration::from_secs(10),
            long_fall: Duration::from_secs(1),
            min_samples: 5,
            min_shared: 8,
            statistic: RttStatistic::Mean,
            error_rate: 0.2,
            backoff: 0.9,
            probe_hold: Duration::from_secs(30),
            probe_hold_max: Duration::from_secs(600),
            aimd_hold: Duration::from_secs(2),
            additive: 0.1,
            stall_factor: 2.0,
            stall_min: Duration::from_millis(500),
            warmup: Duration::from_secs(2),
            warmup_fraction: 0.5,
        }
    }
}

/// Per-kind dispatch batch: AIMD against a latency target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BatchConfig {
    /// The batch grows (+1 per interval) while the kind's p99 over the short window is within
    /// this, and halves when it is not.
    pub latency_target: Duration,
    /// Smallest batch.
    pub min: u32,
    /// Largest batch.
    pub max: u32,
    /// Multiplicative decrease.
    pub decrease: f64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            latency_target: Duration::from_millis(250),
            min: 1,
            max: 256,
            decrease: 0.5,
        }
    }
}

/// Per-kind run timeout from the observed tail: `clamp(factor · p99, min, max)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimeoutConfig {
    /// Multiple of the long-window p99.
    pub factor: f64,
    /// Lower bound.
    pub min: Duration,
    /// Upper bound.
    pub max: Duration,
    /// A new value is set only when it differs from the one in force by more than this share.
    pub hysteresis: f64,
    /// Fewest samples in the long window before a timeout is derived.
    pub min_samples: u64,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            factor: 4.0,
            min: Duration::from_millis(100),
            max: Duration::from_secs(300),
            hysteresis: 0.2,
            min_samples: 200,
        }
    }
}

/// Canary and rollback of worker-applied parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CanaryConfig {
    /// Share of the kind's workers that get a new parameter set first (and as many others form
    /// the control group).
    pub fraction: f64,
    /// Most of the kind's workers changed at once, by a canary or by one rollout step.
    pub max_change_fraction: f64,
    /// Samples are ignored for this long after the parameters are sent (they take effect).
    pub settle: Duration,
    /// Canary and control are compared after this long ...
    pub window: Duration,
    /// ... if each side has at least this many samples (else the window is extended, up to
    /// four times, then the canary is rolled back as inconclusive).
    pub min_samples: usize,
    /// Significance level of the two-sided Mann–Whitney U test.
    pub alpha: f64,
    /// The canary's p99 may exceed the control's by at most this share.
    pub p99_margin: f64,
    /// The canary's error rate may exceed the control's by at most this (absolute).
    pub error_margin: f64,
    /// Time between rollout steps of an adopted parameter set.
    pub rollout_step: Duration,
    /// Time after a canary ends before the tuner proposes the next one.
    pub cooldown: Duration,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        Self {
            fraction: 0.2,
            max_change_fraction: 0.25,
            settle: Duration::from_millis(500),
            window: Duration::from_secs(5),
            min_samples: 50,
            alpha: 0.01,
            p99_margin: 0.1,
            error_margin: 0.02,
            rollout_step: Duration::from_secs(1),
            cooldown: Duration::from_secs(5),
        }
    }
}

/// A worker-applied parameter the tuner may search (by canaries) within bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    /// Key in `WorkerParams.extra`.
    pub name: String,
    /// Value in force at the start.
    pub initial: f64,
    /// Lower bound.
    pub min: f64,
    /// Upper bound.
    pub max: f64,
    /// Step of one proposal.
    pub step: f64,
}

/// Autoscaling bounds and mode of one worker group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupScale {
    /// Fewest replicas.
    pub min: u32,
    /// Most replicas.
    pub max: u32,
    /// How scaling decisions are made.
    pub mode: Mode,
}

/// Autoscaler thresholds (shared by every group).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScaleConfig {
    /// Queue wait (oldest queued task) above which a kind counts as backlogged.
    pub queue_wait: Duration,
    /// Utilisation (busy share of the group's replicas, or CPU) above which scaling up helps.
    pub high_utilisation: f64,
    /// Utilisation below which a replica may go.
    pub low_utilisation: f64,
    /// Backlog and high utilisation must last this long before scaling up.
    pub up_after: Duration,
    /// Idle (empty queue, low utilisation) must last this long, counted from the last scaling
    /// action, before scaling down.
    pub down_cooldown: Duration,
    /// Time after a scale-up before the next one (the new replicas warm up).
    pub up_cooldown: Duration,
}

impl Default for ScaleConfig {
    fn default() -> Self {
        Self {
            queue_wait: Duration::from_millis(100),
            high_utilisation: 0.75,
            low_utilisation: 0.3,
            up_after: Duration::from_secs(2),
            down_cooldown: Duration::from_secs(30),
            up_cooldown: Duration::from_secs(5),
        }
    }
}

/// The adaptive controller's settings. Every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptConfig {
    /// Mode of a kind not named in `modes`.
    pub default_mode: Mode,
    /// Mode per kind name.
    pub modes: BTreeMap<String, Mode>,
    /// Control interval: [`Controller::tick`](super::Controller::tick) does its work at most
    /// this often.
    pub interval: Duration,
    /// Slots of the short latency window (each `interval` long).
    pub short_slots: usize,
    /// Slot length of the long latency window.
    pub long_slot: Duration,
    /// Slots of the long latency window.
    pub long_slots: usize,
    /// Concurrency windows.
    pub window: WindowConfig,
    /// Dispatch batch.
    pub batch: BatchConfig,
    /// Run timeouts.
    pub timeout: TimeoutConfig,
    /// Canaries.
    pub canary: CanaryConfig,
    /// Parameters the tuner searches, per kind name (none: no automatic proposals).
    pub params: BTreeMap<String, Vec<ParamSpec>>,
    /// Autoscaling per worker group name (a group not listed is not scaled).
    pub groups: BTreeMap<String, GroupScale>,
    /// Autoscaler thresholds.
    pub scale: ScaleConfig,
    /// Decisions kept for [`Controller::decisions`](super::Controller::decisions).
    pub decision_log: usize,
}

impl Default for AdaptConfig {
    fn default() -> Self {
        Self {
            default_mode: Mode::Off,
            modes: BTreeMap::new(),
            interval: Duration::from_millis(100),
            short_slots: 10,
            long_slot: Duration::from_secs(1),
            long_slots: 10,
            window: WindowConfig::default(),
            batch: BatchConfig::default(),
            timeout: TimeoutConfig::default(),
            canary: CanaryConfig::default(),
            params: BTreeMap::new(),
            groups: BTreeMap::new(),
            scale: ScaleConfig::default(),
            decision_log: 1000,
        }
    }
}

/// A setting of [`AdaptConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdaptConfigError {
    /// A duration that must be positive is zero.
    #[error("adapt: `{field}` must be longer than zero")]
    ZeroDuration {
        /// The setting.
        field: &'static str,
    },
    /// A number outside its range.
    #[error("adapt: `{field}` = {value} is out of range; it must be {range}")]
    OutOfRange {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: f64,
        /// The allowed range, in words.
        range: &'static str,
    },
    /// A lower bound above its upper bound.
    #[error("adapt: `{field}`: min {min} is above max {max}; swap them or widen the range")]
    Bounds {
        /// The setting.
        field: String,
        /// Its lower bound.
        min: f64,
        /// Its upper bound.
        max: f64,
    },
}

fn positive(field: &'static str, d: Duration) -> Result<(), AdaptConfigError> {
    if d.is_zero() {
        Err(AdaptConfigError::ZeroDuration { field })
    } else {
        Ok(())
    }
}

fn within(
    field: &'static str,
    value: f64,
    lo: f64,
    hi: f64,
    range: &'static str,
) -> Result<(), AdaptConfigError> {
    if value.is_finite() && value >= lo && value <= hi {
        Ok(())
    } else {
        Err(AdaptConfigError::OutOfRange {
            field,
            value,
            range,
        })
    }
}

fn ordered(field: impl Into<String>, min: f64, max: f64) -> Result<(), AdaptConfigError> {
    if min <= max {
        Ok(())
    } else {
        Err(AdaptConfigError::Bounds {
            field: field.into(),
            min,
            max,
        })
    }
}

impl AdaptConfig {
    /// The mode of `kind`.
    #[must_use]
    pub fn mode(&self, kind: &str) -> Mode {
        self.modes.get(kind).copied().unwrap_or(self.default_mode)
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`AdaptConfigError`] naming the first setting that cannot work.
    pub fn validate(&self) -> Result<(), AdaptConfigError> {
        positive("interval", self.interval)?;
        positive("long_slot", self.long_slot)?;
        within(
            "short_slots",
            self.short_slots as f64,
            1.0,
            1e4,
            "1..=10000",
        )?;
        within("long_slots", self.long_slots as f64, 1.0, 1e4, "1..=10000")?;
        let w = &self.window;
        within("window.min", f64::from(w.min), 1.0, 1e6, "at least 1")?;
        ordered("window", f64::from(w.min), f64::from(w.max))?;
        within("window.initial", w.initial, 1.0, 1e6, "at least 1")?;
        within("window.smoothing", w.smoothing, 1e-6, 1.0, "in (0, 1]")?;
        within("window.tolerance", w.tolerance, 1.0, 10.0, "in [1, 10]")?;
        within("window.allowance", w.allowance, 0.0, 100.0, "in [0, 100]")?;
        within("window.backoff", w.backoff, 0.01, 0.999, "in (0, 1)")?;
        within("window.error_rate", w.error_rate, 0.0, 1.0, "in [0, 1]")?;
        within(
            "window.warmup_fraction",
            w.warmup_fraction,
            0.01,
            1.0,
            "in (0, 1]",
        )?;
        within(
            "window.stall_factor",
            w.stall_factor,
            1.0,
            1e6,
            "at least 1",
        )?;
        positive("window.long_window", w.long_window)?;
        if let RttStatistic::Quantile(q) = w.statistic {
            within("window.statistic", q, 0.01, 1.0, "a quantile in (0, 1]")?;
        }
        positive("window.long_fall", w.long_fall)?;
        within("window.additive", w.additive, 0.0, 1e3, "in [0, 1000]")?;
        let b = &self.batch;
        within("batch.min", f64::from(b.min), 1.0, 1e6, "at least 1")?;
        ordered("batch", f64::from(b.min), f64::from(b.max))?;
        within("batch.decrease", b.decrease, 0.01, 0.999, "in (0, 1)")?;
        positive("batch.latency_target", b.latency_target)?;
        let t = &self.timeout;
        within("timeout.factor", t.factor, 1.0, 1e6, "at least 1")?;
        ordered("timeout", t.min.as_secs_f64(), t.max.as_secs_f64())?;
        positive("timeout.min", t.min)?;
        let c = &self.canary;
        within("canary.fraction", c.fraction, 0.01, 0.5, "in (0, 0.5]")?;
        within(
            "canary.max_change_fraction",
            c.max_change_fraction,
            0.01,
            1.0,
            "in (0, 1]",
        )?;
        within("canary.alpha", c.alpha, 1e-9, 0.5, "in (0, 0.5]")?;
        within("canary.p99_margin", c.p99_margin, 0.0, 10.0, "in [0, 10]")?;
        within("canary.error_margin", c.error_margin, 0.0, 1.0, "in [0, 1]")?;
        positive("canary.window", c.window)?;
        for (kind, specs) in &self.params {
            for p in specs {
                ordered(format!("params.{kind}.{}", p.name), p.min, p.max)?;
                if !(p.step > 0.0 && p.step.is_finite()) {
                    return Err(AdaptConfigError::OutOfRange {
                        field: "params.step",
                        value: p.step,
                        range: "a positive number",
                    });
                }
                if !(p.min..=p.max).contains(&p.initial) {
                    return Err(AdaptConfigError::OutOfRange {
                        field: "params.initial",
                        value: p.initial,
                        range: "within the parameter's min..=max",
                    });
                }
            }
        }
        for (group, g) in &self.groups {
            ordered(
                format!("groups.{group}"),
                f64::from(g.min),
                f64::from(g.max),
            )?;
            within("groups.max", f64::from(g.max), 1.0, 1e6, "at least 1")?;
        }
        let s = &self.scale;
        within(
            "scale.low_utilisation",
            s.low_utilisation,
            0.0,
            1.0,
            "in [0, 1]",
        )?;
        within(
            "scale.high_utilisation",
            s.high_utilisation,
            s.low_utilisation,
            1.0,
            "in [low_utilisation, 1]",
        )?;
        Ok(())
    }
}
