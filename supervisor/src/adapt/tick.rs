//! [`Controller::tick`]: the periodic work — windows, batch, timeouts, parameters and groups.

use super::config::{Mode, WindowConfig};
use super::controller::{Controller, Effect, SettingKey};
use super::decision::{AdaptAction, Change, Evidence, Target};
use super::gradient::{Rule, UpdateFigures};
use super::profile::Profile;
use std::time::{Duration, Instant};

/// Relative change of a worker's cost that is sent to the router.
pub const COST_HYSTERESIS: f64 = 0.1;
/// Smallest cost sent.
const COST_MIN: f64 = 0.01;
/// Largest cost sent.
const COST_MAX: f64 = 1000.0;

/// How long a worker may hold tasks without a completion before it counts as stalled:
/// `max(stall_min, stall_factor × the kind's p99.9 RTT over the long window)`.
fn stall_after(cfg: &WindowConfig, profile: &Profile, now: Instant) -> Duration {
    let h = profile.long_merged(now);
    let tail = (!h.is_empty()).then(|| Duration::from_micros(h.value_at_quantile(0.999)));
    cfg.stall_min
        .max(tail.unwrap_or(cfg.stall_min).mul_f64(cfg.stall_factor))
}

impl Controller {
    /// When the next [`tick`](Self::tick) has work to do (`None` before the first).
    #[must_use]
    pub const fn next_tick(&self) -> Option<Instant> {
        self.next_tick
    }

    /// Does the periodic work if an interval has passed since the last time (calling it more
    /// often is harmless): updates every worker's window, each kind's batch and timeout,
    /// progresses canaries, and scales groups. Returns the actions to carry out, in order
    /// (every decision also as an [`AdaptAction::Event`]).
    pub fn tick(&mut self, now: Instant) -> Vec<AdaptAction> {
        self.epoch(now);
        if self.next_tick.is_some_and(|t| now < t) {
            return Vec::new();
        }
        self.next_tick = Some(now + self.config.interval);
        let mut out = Vec::new();
        let kinds: Vec<String> = self.kinds.keys().cloned().collect();
        for kind in &kinds {
            self.close_interval(kind, now);
        }
        for kind in &kinds {
            let mode = self.kinds[kind].mode;
            self.tick_costs(kind, mode, now, &mut out);
            if mode == Mode::Off {
                continue;
            }
            self.tick_windows(kind, mode, now, &mut out);
            self.tick_batch(kind, mode, now, &mut out);
            self.tick_timeout(kind, mode, now, &mut out);
            self.tick_params(kind, mode, now, &mut out);
        }
        self.tick_groups(now, &mut out);
        for kind in &kinds {
            self.reset_interval(kind);
        }
        out
    }

    /// Utilisation of each worker over the interval that ends now.
    fn close_interval(&mut self, kind: &str, now: Instant) {
        let interval = self.config.interval.as_secs_f64();
        let Some(k) = self.kinds.get_mut(kind) else {
            return;
        };
        for w in k.workers.values_mut() {
            if let Some(since) = w.busy_since {
                w.busy += now.saturating_duration_since(since);
                w.busy_since = Some(now);
            }
            w.utilisation = (w.busy.as_secs_f64() / interval).clamp(0.0, 1.0);
        }
    }

    fn reset_interval(&mut self, kind: &str) {
        let Some(k) = self.kinds.get_mut(kind) else {
            return;
        };
        for w in k.workers.values_mut() {
            w.busy = Duration::ZERO;
            w.in_flight_max = w.in_flight;
            w.binding = false;
        }
        let q = &mut k.queue;
        if q.depth > q.last_depth && q.depth > 0 {
            q.growth += 1;
        } else if q.depth < q.last_depth || q.depth == 0 {
            q.growth = 0;
        }
        if q.max_depth > 0 {
            q.backlog_ticks += 1;
        }
        q.last_depth = q.depth;
        q.max_depth = q.depth;
        q.max_wait = q.wait;
    }

    /// Keeps the router's per-worker cost (service-time factor) up to date in auto mode, and
    /// forgets it in the other modes and while a canary runs on the kind. A worker's service time is its un-queued RTT over the
    /// long window (its limiter's long RTT) — or, while it holds a task longer than the stall
    /// threshold, that task's age; its cost is that over the median of the kind's workers.
    /// A cost is sent when it moves by more than [`COST_HYSTERESIS`].
    fn tick_costs(&mut self, kind: &str, mode: Mode, now: Instant, out: &mut Vec<AdaptAction>) {
        let Some(k) = self.kinds.get_mut(kind) else {
            return;
        };
        // During a canary, canary and control groups must see the same traffic for their
        // latencies to be comparable: no cost-based preference then.
        if mode != Mode::Auto || k.canary.is_some() {
            for (unit, w) in &mut k.workers {
                if w.cost.take().is_some() {
                    out.push(AdaptAction::SetCost {
                        kind: kind.to_owned(),
                        unit: *unit,
                        cost: None,
                    });
                }
            }
            return;
        }
        let stall_after = stall_after(&self.config.window, &k.profile, now);
        let estimates: Vec<(usize, f64)> = k
            .workers
            .iter()
            .filter(|(_, w)| !w.draining)
            .filter_map(|(unit, w)| {
                let rtt = w.limiter.long_rtt()?.as_secs_f64();
                let age = now.saturating_duration_since(w.last_progress);
                let held = if w.in_flight > 0 && age >= stall_after {
                    age.as_secs_f64()
                } else {
                    0.0
                };
                Some((*unit, rtt.max(held)))
            })
            .collect();
        if estimates.len() < 2 {
            return;
        }
        let mut sorted: Vec<f64> = estimates.iter().map(|e| e.1).collect();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        if !(median > 0.0 && median.is_finite()) {
            return;
        }
        for (unit, est) in estimates {
            let cost = (est / median).clamp(COST_MIN, COST_MAX);
            let Some(w) = k.workers.get_mut(&unit) else {
                continue;
            };
            let moved = w
                .cost
                .is_none_or(|c| (cost - c).abs() > COST_HYSTERESIS * c);
            if moved {
                w.cost = Some(cost);
                out.push(AdaptAction::SetCost {
                    kind: kind.to_owned(),
                    unit,
                    cost: Some(cost),
                });
            }
        }
    }

    fn tick_windows(&mut self, kind: &str, mode: Mode, now: Instant, out: &mut Vec<AdaptAction>) {
        let cfg = self.config.window;
        let stall_after = stall_after(&cfg, &self.kinds[kind].profile, now);
        let units: Vec<usize> = self.kinds[kind].workers.keys().copied().collect();
        for unit in units {
            let Some(w) = self.worker_mut(kind, unit) else {
                continue;
            };
            if w.draining {
                continue;
            }
            let mut warm_done = false;
            if w.warming && now >= w.added + cfg.warmup {
                w.warming = false;
                warm_done = true;
            }
            let stalled = w.in_flight > 0
                && now.saturating_duration_since(w.last_progress) >= stall_after
                && w.limiter.limit() >= f64::from(cfg.min) + 1.0;
            let figures = if stalled {
                Some(w.limiter.stall(&cfg, now))
            } else {
                w.limiter.update(&cfg, now, w.binding)
            };
            let (from, in_flight_max, utilisation) = (w.window, w.in_flight_max, w.utilisation);
            let Some(to) = self.target_window(kind, unit, now) else {
                continue;
            };
            if to == from || self.proposed_window(kind, unit) == Some(to) {
                continue;
            }
            let reason = match figures.map(|f| f.rule) {
                _ if stalled => format!(
                    "stall: tasks in flight and no completion for {:.0} ms",
                    stall_after.as_secs_f64() * 1e3
                ),
                _ if warm_done => "warm-up over: full window".to_owned(),
                Some(Rule::Errors) => "AIMD: error burst, multiplicative decrease".to_owned(),
                Some(Rule::Additive) => "AIMD: additive increase after errors".to_owned(),
                Some(Rule::Gradient | Rule::AppLimited | Rule::ProbeHold) => {
                    "Gradient2: limit = limit·gradient + allowance·sqrt(limit)".to_owned()
                }
                _ => "window follows the limit".to_owned(),
            };
            let mut ev = Evidence::new(reason)
                .before("window", f64::from(from))
                .before("in_flight_max", f64::from(in_flight_max))
                .before("utilisation", utilisation)
                .after("window", f64::from(to));
            if let Some(f) = figures {
                ev = with_figures(ev, &f);
            }
            self.decide(
                now,
                mode,
                kind,
                SettingKey::Window(kind.to_owned(), unit),
                Target::Worker { unit },
                Change::Window { from, to },
                ev,
                vec![AdaptAction::SetWindow {
                    kind: kind.to_owned(),
                    unit,
                    window: to,
                }],
                Effect::None,
                out,
            );
        }
    }

    /// The window of a pending proposal for `unit`, if any.
    fn proposed_window(&self, kind: &str, unit: usize) -> Option<u32> {
        let id = self
            .proposals
            .get(&SettingKey::Window(kind.to_owned(), unit))?;
        match self.decision(*id)?.change {
            Change::Window { to, .. } => Some(to),
            _ => None,
        }
    }

    fn tick_batch(&mut self, kind: &str, mode: Mode, now: Instant, out: &mut Vec<AdaptAction>) {
        let cfg = self.config.batch;
        let period = self.config.interval * u32::try_from(self.config.short_slots).unwrap_or(1);
        let k = self.kinds.get_mut(kind).expect("kind exists");
        if k.batch_next.is_some_and(|t| now < t) {
            return;
        }
        k.batch_next = Some(now + period);
        let h = k.profile.short().merged(now, k.profile.short().slots());
        let waited = std::mem::take(&mut k.queue.backlog_ticks) > 0 || k.queue.max_depth > 0;
        if h.len() < 20 {
            return;
        }
        let p99 = Duration::from_micros(h.value_at_quantile(0.99));
        let from = k.batch;
        let (to, reason) = if p99 > cfg.latency_target {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a batch size between min and max"
            )]
            let to = ((f64::from(from) * cfg.decrease).floor() as u32).max(cfg.min);
            (to, "AIMD: p99 above the latency target, batch decreased")
        } else if waited {
            (
                (from + 1).min(cfg.max),
                "AIMD: p99 within the latency target and tasks waited, batch increased",
            )
        } else {
            (from, "")
        };
        if to == from {
            return;
        }
        let ev = Evidence::new(reason)
            .before("batch", f64::from(from))
            .before("p99_ms", p99.as_secs_f64() * 1e3)
            .before("target_ms", cfg.latency_target.as_secs_f64() * 1e3)
            .before("samples", h.len() as f64)
            .after("batch", f64::from(to));
        self.decide(
            now,
            mode,
            kind,
            SettingKey::Batch(kind.to_owned()),
            Target::Kind,
            Change::Batch { from, to },
            ev,
            vec![AdaptAction::SetBatch {
                kind: kind.to_owned(),
                batch: to,
            }],
            Effect::None,
            out,
        );
    }

    fn tick_timeout(&mut self, kind: &str, mode: Mode, now: Instant, out: &mut Vec<AdaptAction>) {
        let cfg = self.config.timeout;
        let period = self.config.long_slot;
        let k = self.kinds.get_mut(kind).expect("kind exists");
        if k.timeout_next.is_some_and(|t| now < t) {
            return;
        }
        k.timeout_next = Some(now + period);
        let h = k.profile.long_merged(now);
        if h.len() < cfg.min_samples {
            return;
        }
        let p99 = Duration::from_micros(h.value_at_quantile(0.99));
        let to = p99.mul_f64(cfg.factor).clamp(cfg.min, cfg.max);
        let from = k.timeout;
        if let Some(cur) = from {
            let rel = (to.as_secs_f64() - cur.as_secs_f64()).abs() / cur.as_secs_f64().max(1e-9);
            if rel <= cfg.hysteresis {
                return;
            }
        }
        let ev = Evidence::new(format!(
            "timeout = clamp({} x p99 over {:.0} s, min, max)",
            cfg.factor,
            k.profile.long_window().as_secs_f64()
        ))
        .before("p99_ms", p99.as_secs_f64() * 1e3)
        .before("samples", h.len() as f64)
        .before(
            "timeout_ms",
            from.map_or(f64::NAN, |t| t.as_secs_f64() * 1e3),
        )
        .after("timeout_ms", to.as_secs_f64() * 1e3);
        self.decide(
            now,
            mode,
            kind,
            SettingKey::Timeout(kind.to_owned()),
            Target::Kind,
            Change::Timeout {
                from_ms: from.map(|t| t.as_secs_f64() * 1e3),
                to_ms: to.as_secs_f64() * 1e3,
            },
            ev,
            vec![AdaptAction::SetTimeout {
                kind: kind.to_owned(),
                timeout: to,
            }],
            Effect::None,
            out,
        );
    }
}

fn with_figures(ev: Evidence, f: &UpdateFigures) -> Evidence {
    #[allow(clippy::cast_precision_loss, reason = "a sample count")]
    let samples = f.samples as f64;
    ev.before("short_rtt_ms", f.short_ms)
        .before("long_rtt_ms", f.long_ms)
        .before("gradient", f.gradient)
        .before("samples", samples)
        .before("error_rate", f.error_rate)
        .before("limit", f.from)
        .after("limit", f.to)
}
