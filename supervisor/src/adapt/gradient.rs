//! One worker's concurrency limit: Netflix's Gradient2 with an AIMD fallback.
//!
//! Every update (at most once per control interval, once `min_samples` completions have
//! accumulated), with RTT = dispatch → completion and each completion tagged with how many
//! tasks were in flight on the worker when it was dispatched (`ahead`):
//! - **long RTT** = an EWMA, over `long_window` (following a drop faster, over `long_fall`),
//!   of the RTT of the tasks that found the worker **idle** (`ahead = 0`): the RTT without a
//!   queue. Netflix averages every sample and cuts
//!   its long RTT whenever it exceeds twice the short one, because a plain average drifts up
//!   with the very queue the limit lets build; measuring the baseline on un-queued tasks
//!   removes the drift at its source. A worker that is never idle keeps its last baseline
//!   until it is, unless the baseline exceeds twice the RTT of all the update's tasks: then
//!   it is stale and takes that value (the queued RTT bounds the un-queued one from above).
//! - **short RTT** = the RTT of the tasks that **shared** the worker (`ahead ≥ 1`; they
//!   accumulate over updates until there are `min_shared`), else of all the update's tasks. Shared
//!   tasks are the ones that used the concurrency beyond one: served in parallel, their RTT
//!   is the baseline; queued, it is inflated by what ran before them. Averaging over every
//!   task instead dilutes the signal by the idle ones, so a window that is only sometimes
//!   full looks free while it hurts the tail.
//! - both are summarised by [`RttStatistic`] (the mean by default: by Little's law
//!   `long / short` is then the share of the shared tasks' time spent being served);
//! - **gradient** = `clamp(tolerance · long / short, 0.5, 1)`;
//! - **new limit** = `limit · gradient + allowance · sqrt(limit)` (the queue allowance keeps
//!   probing for capacity), smoothed `limit = limit · (1 − α) + new · α`, bounded
//!   `[min, max]`. It grows only with evidence: tasks waited for this worker's credits during
//!   the interval (*binding*; otherwise it is app-limited) and shared tasks were measured
//!   (at a window of one, where none can be, growing is the probe).
//! - **probe backoff**: when the gradient brings the window down from `w`, the limit stays
//!   below `w` for `probe_hold` (doubling while probes at `w` keep failing, up to
//!   `probe_hold_max`), like TCP's slow-start threshold. Without it a worker whose capacity is
//!   one task (an `amp-sleep`) would spend a good part of its time probing a window of two.
//!
//! **AIMD fallback**: when an update's error share exceeds `error_rate` the limit is cut
//! multiplicatively (`× backoff`) and for `aimd_hold` afterwards it grows only additively
//! (`+additive` per update, when binding and latency is flat) while still shrinking by the
//! gradient. A **stall** — tasks in flight and no completion for `max(stall_min,
//! stall_factor × the kind's p99)` — sets the limit to `min` at once and starts a hold.
//!
//! The window handed to the router is `floor(limit)`: a serial worker settles at 1, one with
//! `c` parallel slots a little above `c`.

use super::config::{RttStatistic, WindowConfig};
use super::stats::quantile;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Which rule set the limit at the last update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Gradient2.
    Gradient,
    /// Gradient2, growth suppressed: the window was not binding.
    AppLimited,
    /// Gradient2, growth capped by the probe backoff.
    ProbeHold,
    /// AIMD: multiplicative decrease after an error burst.
    Errors,
    /// AIMD: additive increase while recovering from errors.
    Additive,
    /// Stall: the limit went to its minimum.
    Stall,
}

/// The figures of one update (for evidence).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UpdateFigures {
    /// Rule applied.
    pub rule: Rule,
    /// Short RTT (ms).
    pub short_ms: f64,
    /// Long RTT (ms).
    pub long_ms: f64,
    /// Gradient.
    pub gradient: f64,
    /// Completions used.
    pub samples: usize,
    /// Of those, tasks that shared the worker.
    pub shared: usize,
    /// Their error share.
    pub error_rate: f64,
    /// Limit before.
    pub from: f64,
    /// Limit after.
    pub to: f64,
}

/// A window below which the limit stays for a while after a failed probe.
#[derive(Debug, Clone, Copy)]
struct Ceiling {
    window: u32,
    until: Instant,
    hold: Duration,
}

/// One worker's Gradient2 limiter (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Limiter {
    limit: f64,
    /// Seconds.
    long_rtt: Option<f64>,
    /// RTTs (s) since the last update: all, those that found the worker idle, those that
    /// shared it.
    samples: Vec<f64>,
    idle: Vec<f64>,
    shared: Vec<f64>,
    errors: u32,
    aimd_until: Option<Instant>,
    ceiling: Option<Ceiling>,
    last_update: Option<Instant>,
    last: Option<UpdateFigures>,
}

impl Limiter {
    /// A limiter starting at `initial`.
    #[must_use]
    pub const fn new(initial: f64) -> Self {
        Self {
            limit: initial,
            long_rtt: None,
            samples: Vec::new(),
            idle: Vec::new(),
            shared: Vec::new(),
            errors: 0,
            aimd_until: None,
            ceiling: None,
            last_update: None,
            last: None,
        }
    }

    /// The current limit (continuous).
    #[must_use]
    pub const fn limit(&self) -> f64 {
        self.limit
    }

    /// The window for the router: `floor(limit)` within `[min, max]`.
    #[must_use]
    pub fn window(&self, config: &WindowConfig) -> u32 {
        clamp_window(self.limit, config)
    }

    /// The long RTT, if measured.
    #[must_use]
    pub fn long_rtt(&self) -> Option<Duration> {
        self.long_rtt.map(Duration::from_secs_f64)
    }

    /// The last update's figures.
    #[must_use]
    pub const fn last(&self) -> Option<UpdateFigures> {
        self.last
    }

    /// A completion `rtt` after its dispatch; failed unless `ok`; `ahead`: tasks in flight on
    /// the worker when it was dispatched.
    pub fn sample(&mut self, rtt: Duration, ok: bool, ahead: u32) {
        if self.samples.len() >= 4096 || self.shared.len() >= 4096 {
            return;
        }
        let s = rtt.as_secs_f64();
        self.samples.push(s);
        if !ok {
            self.errors += 1;
        } else if ahead == 0 {
            self.idle.push(s);
        } else {
            self.shared.push(s);
        }
    }

    fn clear(&mut self, now: Instant, keep_shared: bool) {
        self.samples.clear();
        self.idle.clear();
        if !keep_shared {
            self.shared.clear();
        }
        self.errors = 0;
        self.last_update = Some(now);
    }

    /// The worker stalled: limit to `min`, AIMD hold.
    pub fn stall(&mut self, config: &WindowConfig, now: Instant) -> UpdateFigures {
        let from = self.limit;
        self.limit = f64::from(config.min);
        self.aimd_until = Some(now + config.aimd_hold);
        self.clear(now, false);
        let f = UpdateFigures {
            rule: Rule::Stall,
            short_ms: f64::NAN,
            long_ms: self.long_rtt.map_or(f64::NAN, |l| l * 1e3),
            gradient: f64::NAN,
            samples: 0,
            shared: 0,
            error_rate: 0.0,
            from,
            to: self.limit,
        };
        self.last = Some(f);
        f
    }

    /// Updates the limit if enough completions accumulated. `binding`: tasks waited for this
    /// worker's credits during the interval (the kind's queue was not empty while the worker
    /// had its window full). Returns the update's figures, or `None` while it waits for
    /// samples.
    pub fn update(
        &mut self,
        config: &WindowConfig,
        now: Instant,
        binding: bool,
    ) -> Option<UpdateFigures> {
        let n = self.samples.len();
        if n == 0 || n < config.min_samples as usize {
            return None;
        }
        #[allow(clippy::cast_precision_loss, reason = "at most 4096 samples")]
        let error_rate = f64::from(self.errors) / n as f64;
        let shared = self.shared.len();
        let has_shared = shared >= config.min_shared.max(1) as usize;
        let short = if has_shared {
            summarise(&mut self.shared, config.statistic)
        } else {
            summarise(&mut self.samples, config.statistic)
        }
        .expect("not empty")
        .max(1e-9);
        let dt = self
            .last_update
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        let baseline = summarise(&mut self.idle, config.statistic);
        let mut long = match (self.long_rtt, baseline) {
            (None, b) => b.unwrap_or(short),
            (Some(l), None) => l,
            // An un-queued RTT below half the long one: the worker got much faster (a stall or a
            // slowdown ended); the old baseline says nothing any more.
            (Some(l), Some(b)) if b < l / 2.0 => b,
            (Some(l), Some(b)) => {
                let tau = if b < l {
                    config.long_fall
                } else {
                    config.long_window
                };
                let w = 1.0 - (-dt / tau.as_secs_f64()).exp();
                l + w * (b - l)
            }
        };
        // Every task's RTT, queued or not, bounds the un-queued one from above: a baseline
        // more than twice the update's is stale (Netflix cuts 5 % per update in this case; a
        // worker that stalled for seconds needs the whole cut at once).
        if let Some(all) = summarise(&mut self.samples, config.statistic) {
            if long > 2.0 * all {
                long = all;
            }
        }
        self.long_rtt = Some(long);
        let from = self.limit;
        let window = clamp_window(from, config);
        let gradient = (config.tolerance * long / short).clamp(0.5, 1.0);
        let smooth =
            |limit: f64, new: f64| limit * (1.0 - config.smoothing) + new * config.smoothing;
        let new = self.limit * gradient + config.allowance * self.limit.sqrt();
        // Growth needs evidence that the concurrency beyond one is served in parallel (shared
        // tasks not inflated), except at a window of one, where growing is the only probe.
        let may_grow = binding && (has_shared || window <= config.min.max(1));
        let mut rule;
        if error_rate > config.error_rate {
            self.limit *= config.backoff;
            self.aimd_until = Some(now + config.aimd_hold);
            rule = Rule::Errors;
        } else if self.aimd_until.is_some_and(|t| now < t) {
            // Additive increase only when growth is allowed and latency flat; shrink by the
            // gradient.
            self.limit = if gradient < 1.0 {
                smooth(self.limit, new)
            } else if may_grow {
                self.limit + config.additive
            } else {
                self.limit
            };
            rule = Rule::Additive;
        } else if new > self.limit && !may_grow {
            rule = Rule::AppLimited;
        } else {
            self.limit = smooth(self.limit, new);
            rule = Rule::Gradient;
        }
        self.limit = self
            .limit
            .clamp(f64::from(config.min), f64::from(config.max) + 0.999);
        let (before, after) = (clamp_window(from, config), clamp_window(self.limit, config));
        if after < before && gradient < 1.0 {
            // A failed probe (or a slow-down): hold the limit below the window that queued.
            let hold = match self.ceiling {
                Some(c) if c.window == before => (c.hold * 2).min(config.probe_hold_max),
                _ => config.probe_hold,
            };
            self.ceiling = Some(Ceiling {
                window: before,
                until: now + hold,
                hold,
            });
        }
        if let Some(c) = self.ceiling {
            let cap = f64::from(c.window) - 1e-3;
            if now < c.until && self.limit > cap && self.limit > from.min(cap) {
                self.limit = from.min(cap).max(f64::from(config.min));
                rule = Rule::ProbeHold;
            }
        }
        // Shared tasks are rare while a window is seldom full: they accumulate over updates
        // until there are enough to judge (or the window changes).
        let keep = !has_shared && clamp_window(self.limit, config) == window;
        self.clear(now, keep);
        let f = UpdateFigures {
            rule,
            short_ms: short * 1e3,
            long_ms: long * 1e3,
            gradient,
            samples: n,
            shared,
            error_rate,
            from,
            to: self.limit,
        };
        self.last = Some(f);
        Some(f)
    }
}

/// The mean or quantile of `samples` (`None` if empty).
fn summarise(samples: &mut [f64], statistic: RttStatistic) -> Option<f64> {
    match statistic {
        #[allow(clippy::cast_precision_loss, reason = "at most 4096 samples")]
        RttStatistic::Mean => {
            (!samples.is_empty()).then(|| samples.iter().sum::<f64>() / samples.len() as f64)
        }
        RttStatistic::Quantile(q) => quantile(samples, q),
    }
}

/// `floor(limit)` within the configured bounds.
#[must_use]
pub fn clamp_window(limit: f64, config: &WindowConfig) -> u32 {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "clamped to [min, max] first, both u32"
    )]
    let w = limit
        .floor()
        .clamp(f64::from(config.min), f64::from(config.max)) as u32;
    w
}
