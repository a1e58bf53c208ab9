//! `[adapt]`, the kinds' `adapt` modes and the workers' `min_replicas` / `max_replicas` /
//! `autoscale`: the adaptive controller's settings ([`AdaptConfig`]).

use super::worker::MAX_REPLICAS;
use super::Checker;
use crate::adapt::{AdaptConfig, GroupScale, Mode, ParamSpec};
use crate::config::model::{KindConfig, WorkerConfig};
use crate::config::raw::{RawAdapt, RawWorker};
use std::collections::BTreeMap;
use toml::Spanned;

/// A worker's autoscaling keys, taken out of its table before the worker is checked.
pub(super) struct RawGroup {
    name: Spanned<String>,
    min: Option<Spanned<u32>>,
    max: Option<Spanned<u32>>,
    mode: Option<Mode>,
    /// Where `replicas` was written (`None`: not given).
    replicas: Option<std::ops::Range<usize>>,
}

/// Takes the autoscaling keys out of every `[workers.NAME]` table (the worker checks do not
/// see them).
pub(super) fn take_groups(
    workers: &mut Option<Spanned<BTreeMap<Spanned<String>, Spanned<RawWorker>>>>,
) -> Vec<RawGroup> {
    let Some(map) = workers.as_mut() else {
        return Vec::new();
    };
    map.get_mut()
        .iter_mut()
        .filter_map(|(name, w)| {
            let w = w.get_mut();
            let g = RawGroup {
                name: name.clone(),
                min: w.min_replicas.take(),
                max: w.max_replicas.take(),
                mode: w.autoscale.take(),
                replicas: w.replicas.as_ref().map(Spanned::span),
            };
            (g.min.is_some() || g.max.is_some() || g.mode.is_some()).then_some(g)
        })
        .collect()
}

impl Checker<'_> {
    /// The controller's settings: `[adapt]` over the defaults, the kinds' modes
    /// (`kind_modes`: `[kinds.NAME] adapt`) and the autoscaled worker groups.
    pub(super) fn adapt(
        &mut self,
        raw: Option<Spanned<RawAdapt>>,
        kind_modes: Vec<(Spanned<String>, Mode)>,
        groups: Vec<RawGroup>,
        kinds: &BTreeMap<String, KindConfig>,
        workers: &mut [WorkerConfig],
    ) -> AdaptConfig {
        let mut c = AdaptConfig::default();
        let span = raw.as_ref().map_or(0..0, Spanned::span);
        if let Some(raw) = raw.map(Spanned::into_inner) {
            self.adapt_table(raw, &mut c, kinds);
        }
        for (kind, mode) in kind_modes {
            c.modes.insert(kind.into_inner(), mode);
        }
        for g in groups {
            self.group(g, &mut c, workers);
        }
        if let Err(e) = c.validate() {
            self.error(span, "adapt", e.to_string());
        }
        c
    }

    fn adapt_table(
        &mut self,
        raw: RawAdapt,
        c: &mut AdaptConfig,
        kinds: &BTreeMap<String, KindConfig>,
    ) {
        if let Some(m) = raw.mode {
            c.default_mode = m;
        }
        if let Some(d) = raw.interval.as_ref() {
            c.interval = self.nonzero(Some(d), "adapt.interval", c.interval);
        }
        if let Some(w) = raw.window.map(Spanned::into_inner) {
            let o = &mut c.window;
            set(&mut o.initial, w.initial);
            set(&mut o.min, w.min);
            set(&mut o.max, w.max);
            set(&mut o.tolerance, w.tolerance);
            set(&mut o.smoothing, w.smoothing);
            set(&mut o.allowance, w.allowance);
            set(&mut o.backoff, w.backoff);
            set(&mut o.error_rate, w.error_rate);
            set(&mut o.long_window, w.long_window.map(|d| d.0));
            set(&mut o.stall_factor, w.stall_factor);
            set(&mut o.stall_min, w.stall_min.map(|d| d.0));
            set(&mut o.warmup, w.warmup.map(|d| d.0));
            set(&mut o.warmup_fraction, w.warmup_fraction);
        }
        if let Some(b) = raw.batch.map(Spanned::into_inner) {
            let o = &mut c.batch;
            set(&mut o.latency_target, b.latency_target.map(|d| d.0));
            set(&mut o.min, b.min);
            set(&mut o.max, b.max);
            set(&mut o.decrease, b.decrease);
        }
        if let Some(t) = raw.timeout.map(Spanned::into_inner) {
            let o = &mut c.timeout;
            set(&mut o.factor, t.factor);
            set(&mut o.min, t.min.map(|d| d.0));
            set(&mut o.max, t.max.map(|d| d.0));
            set(&mut o.hysteresis, t.hysteresis);
            set(&mut o.min_samples, t.min_samples);
        }
        if let Some(k) = raw.canary.map(Spanned::into_inner) {
            let o = &mut c.canary;
            set(&mut o.fraction, k.fraction);
            set(&mut o.max_change_fraction, k.max_change_fraction);
            set(&mut o.settle, k.settle.map(|d| d.0));
            set(&mut o.window, k.window.map(|d| d.0));
            set(&mut o.min_samples, k.min_samples.map(|n| n as usize));
            set(&mut o.alpha, k.alpha);
            set(&mut o.p99_margin, k.p99_margin);
            set(&mut o.error_margin, k.error_margin);
            set(&mut o.rollout_step, k.rollout_step.map(|d| d.0));
            set(&mut o.cooldown, k.cooldown.map(|d| d.0));
        }
        if let Some(s) = raw.scale.map(Spanned::into_inner) {
            let o = &mut c.scale;
            set(&mut o.queue_wait, s.queue_wait.map(|d| d.0));
            set(&mut o.high_utilisation, s.high_utilisation);
            set(&mut o.low_utilisation, s.low_utilisation);
            set(&mut o.up_after, s.up_after.map(|d| d.0));
            set(&mut o.down_cooldown, s.down_cooldown.map(|d| d.0));
            set(&mut o.up_cooldown, s.up_cooldown.map(|d| d.0));
        }
        for p in raw.param.unwrap_or_default() {
            let span = p.span();
            let p = p.into_inner();
            let kind = p.kind.get_ref();
            if !kinds.contains_key(kind) {
                let known: Vec<&str> = kinds.keys().map(String::as_str).collect();
                self.error(
                    p.kind.span(),
                    "adapt.param.kind",
                    format!(
                        "kind {kind:?} is not served by any worker (served: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                continue;
            }
            let name = p.name.get_ref();
            if name.is_empty() {
                self.error(
                    p.name.span(),
                    "adapt.param.name",
                    "is empty: name the parameter",
                );
                continue;
            }
            let specs = c.params.entry(kind.clone()).or_default();
            if specs.iter().any(|s| &s.name == name) {
                self.error(
                    span,
                    "adapt.param",
                    format!("parameter {name:?} of kind {kind:?} is declared twice"),
                );
                continue;
            }
            specs.push(ParamSpec {
                name: name.clone(),
                initial: p.initial,
                min: p.min,
                max: p.max,
                step: p.step,
            });
        }
    }

    fn group(&mut self, g: RawGroup, c: &mut AdaptConfig, workers: &mut [WorkerConfig]) {
        let name = g.name.get_ref();
        let f = |key: &str| format!("workers.{name}.{key}");
        let Some(w) = workers.iter_mut().find(|w| &w.name == name) else {
            // The worker's own table had an error, reported already.
            return;
        };
        if w.kinds().is_empty() {
            self.error(
                g.name.span(),
                f("max_replicas"),
                "autoscaling follows the queues of the kinds a worker serves; this worker \
                 serves none (a plain process or an amp-ipc worker without `kinds`)",
            );
            return;
        }
        let Some(max) = g.max.as_ref() else {
            self.error(
                g.name.span(),
                f("max_replicas"),
                "is missing: `min_replicas` / `autoscale` need `max_replicas` as well",
            );
            return;
        };
        let max_v = *max.get_ref();
        let min_v = g.min.as_ref().map_or(1, |m| *m.get_ref());
        let min_span = g.min.as_ref().map_or_else(|| max.span(), Spanned::span);
        if min_v == 0 {
            self.error(
                min_span,
                f("min_replicas"),
                "must be at least 1 (scaling to zero is not supported)",
            );
            return;
        }
        if max_v > MAX_REPLICAS {
            self.error(
                max.span(),
                f("max_replicas"),
                format!("{max_v} is too many: at most {MAX_REPLICAS}"),
            );
            return;
        }
        if min_v > max_v {
            self.error(
                min_span,
                f("min_replicas"),
                format!("{min_v} is above max_replicas = {max_v}"),
            );
            return;
        }
        if g.replicas.is_none() {
            // Not given: an autoscaled worker starts with its minimum.
            w.replicas = min_v;
        }
        if !(min_v..=max_v).contains(&w.replicas) {
            self.error(
                g.replicas.clone().unwrap_or_else(|| max.span()),
                f("replicas"),
                format!(
                    "replicas = {} is outside min_replicas..=max_replicas = {min_v}..={max_v}",
                    w.replicas
                ),
            );
            return;
        }
        c.groups.insert(
            name.clone(),
            GroupScale {
                min: min_v,
                max: max_v,
                mode: g.mode.unwrap_or(c.default_mode),
            },
        );
    }
}

/// Overrides `slot` with a value given in the file.
fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}
