//! Autoscaling per worker group (`min..=max` replicas): up on sustained backlog (queue wait
//! above target, or a queue growing tick after tick) with high utilisation; down after a
//! cooldown of idleness, draining the slowest replica first. New replicas warm up with a
//! reduced window (see [`super::gradient`]).

use super::config::Mode;
use super::controller::{Controller, Effect, SettingKey};
use super::decision::{AdaptAction, Change, Evidence, Target};
use serde_json::json;
use std::time::Instant;

/// Ticks of uninterrupted queue growth that count as a backlog.
const GROWTH_TICKS: u32 = 5;

/// One worker group's autoscaling state.
#[derive(Debug, Default, Clone)]
pub(super) struct GroupState {
    /// Replicas asked for by the last scaling action.
    pub desired: Option<u32>,
    pub last_action: Option<Instant>,
    /// Backlogged with high utilisation since.
    pub hot_since: Option<Instant>,
    /// Idle since.
    pub idle_since: Option<Instant>,
    /// Last figures (for `describe`).
    pub replicas: u32,
    pub utilisation: f64,
}

impl GroupState {
    pub fn describe(&self) -> serde_json::Value {
        json!({
            "replicas": self.replicas,
            "desired": self.desired,
            "utilisation": self.utilisation,
        })
    }
}

/// A group's figures for one tick.
#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    /// Distinct replicas serving (draining ones excluded).
    replicas: u32,
    /// Mean busy share (or CPU, whichever is higher) of its replicas.
    utilisation: f64,
    /// Longest queue wait (ms) of a kind it serves.
    wait_ms: f64,
    /// Deepest queue of a kind it serves.
    depth: usize,
    /// A kind it serves is backlogged.
    backlogged: bool,
    /// The slowest replica (highest median latency), drained first when scaling down.
    slowest: Option<usize>,
}

impl Controller {
    fn group_figures(&self, group: &str, now: Instant) -> Figures {
        let wait_target = self.config.scale.queue_wait;
        let mut units = std::collections::BTreeMap::<usize, (f64, u64)>::new();
        let mut f = Figures::default();
        let mut util_sum = 0.0;
        let mut util_n = 0.0;
        for k in self.kinds.values() {
            let mut serves = false;
            for (unit, w) in &k.workers {
                if w.group != group || w.draining {
                    continue;
                }
                serves = true;
                let cpu = self
                    .units
                    .get(unit)
                    .map_or(0.0, |u| u.resources.cpu_ewma / 100.0);
                util_sum += w.utilisation.max(cpu).min(1.0);
                util_n += 1.0;
                let p50 = w.profile.summary(now).long_p50_us;
                let e = units.entry(*unit).or_insert((0.0, 0));
                e.1 = e.1.max(p50);
            }
            if serves {
                let q = &k.queue;
                f.wait_ms = f.wait_ms.max(q.max_wait.as_secs_f64() * 1e3);
                f.depth = f.depth.max(q.max_depth);
                f.backlogged |= q.max_wait >= wait_target || q.growth >= GROWTH_TICKS;
            }
        }
        f.replicas = u32::try_from(units.len()).unwrap_or(u32::MAX);
        f.utilisation = if util_n > 0.0 { util_sum / util_n } else { 0.0 };
        f.slowest = units
            .iter()
            .max_by_key(|(u, (_, p50))| (*p50, **u))
            .map(|(u, _)| *u);
        f
    }

    pub(super) fn tick_groups(&mut self, now: Instant, out: &mut Vec<AdaptAction>) {
        let cfg = self.config.scale;
        let groups: Vec<(String, super::config::GroupScale)> = self
            .config
            .groups
            .iter()
            .map(|(g, s)| (g.clone(), *s))
            .collect();
        for (name, bounds) in groups {
            let f = self.group_figures(&name, now);
            let g = self.groups.entry(name.clone()).or_default();
            g.replicas = f.replicas;
            g.utilisation = f.utilisation;
            if bounds.mode == Mode::Off || f.replicas == 0 {
                continue;
            }
            // Replicas asked for but not ready yet count as there.
            let current = f.replicas.max(g.desired.unwrap_or(0));
            let hot = f.backlogged && f.utilisation >= cfg.high_utilisation;
            let idle = !f.backlogged && f.depth == 0 && f.utilisation <= cfg.low_utilisation;
            g.hot_since = if hot { g.hot_since.or(Some(now)) } else { None };
            g.idle_since = if idle {
                g.idle_since.or(Some(now))
            } else {
                None
            };
            let since_action = g.last_action.map(|t| now.saturating_duration_since(t));
            let up = g.hot_since.is_some_and(|t| now >= t + cfg.up_after)
                && since_action.is_none_or(|d| d >= cfg.up_cooldown)
                && current < bounds.max;
            let down = g.idle_since.is_some_and(|t| now >= t + cfg.down_cooldown)
                && since_action.is_none_or(|d| d >= cfg.down_cooldown)
                && f.replicas > bounds.min
                && f.replicas >= current;
            let (to, drain, reason) = if up {
                let to = (current + (current / 4).max(1)).min(bounds.max);
                (to, None, "scale up: backlog and high utilisation sustained")
            } else if down {
                (
                    f.replicas - 1,
                    f.slowest,
                    "scale down: idle through the cooldown; the slowest replica drains first",
                )
            } else {
                continue;
            };
            let ev = Evidence::new(reason)
                .before("replicas", f64::from(current))
                .before("utilisation", f.utilisation)
                .before("queue_wait_ms", f.wait_ms)
                .before("queue_depth", f.depth as f64)
                .after("replicas", f64::from(to));
            let mut actions = Vec::new();
            if let Some(unit) = drain {
                actions.push(AdaptAction::Drain {
                    worker: name.clone(),
                    unit,
                });
            }
            actions.push(AdaptAction::ScaleTo {
                worker: name.clone(),
                replicas: to,
            });
            self.decide(
                now,
                bounds.mode,
                &name,
                SettingKey::Replicas(name.clone()),
                Target::Group {
                    worker: name.clone(),
                },
                Change::Replicas {
                    from: current,
                    to,
                    drain,
                },
                ev,
                actions,
                Effect::None,
                out,
            );
        }
    }
}
