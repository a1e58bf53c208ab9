//! Canaries of worker-applied parameters: a new parameter set goes to a random, speed-
//! stratified subset of a kind's workers, a same-size control subset keeps the parameters in
//! force, and after a window the two are compared (Mann–Whitney U on latencies, p99 with a
//! margin, error rates). Better: adopted, rolled out to the rest in bounded steps. Worse or
//! inconclusive: rolled back. A small coordinate-search tuner proposes the parameter sets
//! when [`AdaptConfig::params`](super::AdaptConfig::params) names some.

use super::config::{CanaryConfig, Mode, ParamSpec};
use super::controller::{Controller, Effect, ProposeError, SettingKey};
use super::decision::{AdaptAction, Change, DecisionId, DecisionState, Evidence, Target};
use super::stats::{mann_whitney, quantile};
use rand::rngs::SmallRng;
use rand::Rng;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Most latency samples kept per side.
const MAX_SAMPLES: usize = 4000;

/// One side of a canary comparison.
#[derive(Debug, Clone, Default)]
pub(super) struct Side {
    pub units: Vec<usize>,
    /// Latencies (ms) after the settle time.
    pub samples: Vec<f64>,
    pub completed: u64,
    pub failed: u64,
}

impl Side {
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    fn error_rate(&self) -> f64 {
        if self.completed == 0 {
            0.0
        } else {
            self.failed as f64 / self.completed as f64
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Phase {
    /// Canary and control are being measured.
    Running,
    /// The verdict is out; an adopt or rollback decision is pending (advise mode).
    Judged,
    /// Adopted: the rest of the workers get the parameters, a bounded step at a time.
    Rollout {
        adopt: DecisionId,
        remaining: Vec<usize>,
        next_at: Instant,
        done: usize,
    },
}

/// A canary in progress.
#[derive(Debug, Clone)]
pub(super) struct Canary {
    pub id: DecisionId,
    pub from: BTreeMap<String, f64>,
    pub to: BTreeMap<String, f64>,
    pub canary: Side,
    pub control: Side,
    pub started: Option<Instant>,
    pub judge_at: Option<Instant>,
    pub extensions: u32,
    pub phase: Phase,
}

/// The outcome of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Better,
    Worse,
    Inconclusive,
}

impl Canary {
    fn new(
        from: BTreeMap<String, f64>,
        to: BTreeMap<String, f64>,
        canary: Vec<usize>,
        control: Vec<usize>,
    ) -> Self {
        Self {
            id: 0,
            from,
            to,
            canary: Side {
                units: canary,
                ..Side::default()
            },
            control: Side {
                units: control,
                ..Side::default()
            },
            started: None,
            judge_at: None,
            extensions: 0,
            phase: Phase::Running,
        }
    }

    /// The parameters reached the canary workers (the decision `id` was carried out).
    pub fn start(&mut self, id: DecisionId, now: Instant, config: &CanaryConfig) {
        self.id = id;
        self.started = Some(now);
        self.judge_at = Some(now + config.settle + config.window);
    }

    /// A completion on `unit`.
    pub fn record(
        &mut self,
        unit: usize,
        latency: Duration,
        ok: bool,
        now: Instant,
        settle: Duration,
    ) {
        if self.phase != Phase::Running || self.started.is_none_or(|s| now < s + settle) {
            return;
        }
        let side = if self.canary.units.contains(&unit) {
            &mut self.canary
        } else if self.control.units.contains(&unit) {
            &mut self.control
        } else {
            return;
        };
        side.completed += 1;
        if !ok {
            side.failed += 1;
        }
        if side.samples.len() < MAX_SAMPLES {
            side.samples.push(latency.as_secs_f64() * 1e3);
        }
    }

    /// `unit` went away.
    pub fn forget(&mut self, unit: usize) {
        self.canary.units.retain(|&u| u != unit);
        self.control.units.retain(|&u| u != unit);
        if let Phase::Rollout { remaining, .. } = &mut self.phase {
            remaining.retain(|&u| u != unit);
        }
    }

    /// Compares canary and control; the verdict and its figures.
    fn judge(&self, config: &CanaryConfig) -> (Verdict, Evidence) {
        let (mut a, mut b) = (self.canary.samples.clone(), self.control.samples.clone());
        let mut ev = Evidence::default();
        let Some(test) = mann_whitney(&a, &b) else {
            ev.reason = "inconclusive: a side has no samples".into();
            return (Verdict::Inconclusive, ev);
        };
        let (p50_a, p50_b) = (quantile(&mut a, 0.5), quantile(&mut b, 0.5));
        let (p99_a, p99_b) = (quantile(&mut a, 0.99), quantile(&mut b, 0.99));
        let (p50_a, p50_b) = (p50_a.unwrap_or(0.0), p50_b.unwrap_or(0.0));
        let (p99_a, p99_b) = (p99_a.unwrap_or(0.0), p99_b.unwrap_or(0.0));
        let (err_a, err_b) = (self.canary.error_rate(), self.control.error_rate());
        #[allow(clippy::cast_precision_loss, reason = "sample counts")]
        let (na, nb) = (a.len() as f64, b.len() as f64);
        ev = ev
            .after("canary_samples", na)
            .after("control_samples", nb)
            .after("canary_p50_ms", p50_a)
            .after("control_p50_ms", p50_b)
            .after("canary_p99_ms", p99_a)
            .after("control_p99_ms", p99_b)
            .after("canary_error_rate", err_a)
            .after("control_error_rate", err_b)
            .after("mann_whitney_p", test.p)
            .after("prob_canary_slower", test.prob_greater);
        // A p99 from fewer than 100 samples is the maximum give or take: not compared.
        let tails = a.len() >= 100 && b.len() >= 100;
        let tail_worse = tails && p99_a > p99_b * (1.0 + config.p99_margin);
        let errors_worse = err_a > err_b + config.error_margin;
        let significant = test.p < config.alpha;
        let (verdict, reason) = if errors_worse {
            (
                Verdict::Worse,
                "worse: the canary's error rate exceeds the control's by more than the margin",
            )
        } else if significant && test.prob_greater > 0.5 {
            (
                Verdict::Worse,
                "worse: canary latencies significantly higher (Mann-Whitney U)",
            )
        } else if tail_worse {
            (
                Verdict::Worse,
                "worse: the canary's p99 exceeds the control's by more than the margin",
            )
        } else if significant {
            (Verdict::Better, "better: canary latencies significantly lower (Mann-Whitney U), tail and errors within margins")
        } else {
            (
                Verdict::Inconclusive,
                "inconclusive: no significant difference; the parameters in force stay",
            )
        };
        ev.reason = reason.into();
        (verdict, ev)
    }

    /// For `ampctl tune`.
    pub fn describe(&self) -> serde_json::Value {
        json!({
            "decision": self.id,
            "from": self.from,
            "to": self.to,
            "canary": self.canary.units,
            "control": self.control.units,
            "canary_samples": self.canary.samples.len(),
            "control_samples": self.control.samples.len(),
            "phase": match &self.phase {
                Phase::Running => "running",
                Phase::Judged => "judged",
                Phase::Rollout { .. } => "rollout",
            },
        })
    }
}

/// Chooses a canary and a control subset: `fraction` of the workers each (at least one, at
/// most `max_change` of them, at most half), stratified by speed: the workers sorted by
/// `speed` (their median latency, lower is faster) are cut into as many strata as the canary
/// has members, and each stratum gives one random canary and one random control member.
pub(super) fn select(
    workers: &mut [(usize, f64)],
    fraction: f64,
    max_change: f64,
    rng: &mut SmallRng,
) -> Option<(Vec<usize>, Vec<usize>)> {
    let n = workers.len();
    if n < 2 {
        return None;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "worker counts"
    )]
    let k = ((n as f64 * fraction).round() as usize)
        .min((n as f64 * max_change).floor() as usize)
        .max(1)
        .min(n / 2);
    workers.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let (mut canary, mut control) = (Vec::with_capacity(k), Vec::with_capacity(k));
    let mut start = 0;
    for s in 0..k {
        let len = n / k + usize::from(s < n % k);
        let stratum = &workers[start..start + len];
        start += len;
        let i = rng.random_range(0..len);
        let j = (i + rng.random_range(1..len)) % len;
        canary.push(stratum[i].0);
        control.push(stratum[j].0);
    }
    canary.sort_unstable();
    control.sort_unstable();
    Some((canary, control))
}

/// Coordinate search over [`ParamSpec`]s: one parameter at a time, a step in one direction;
/// an adopted step is followed by another in the same direction, a rejected one by the other
/// direction, and two rejections move on to the next parameter.
#[derive(Debug, Default, Clone)]
pub(super) struct Tuner {
    index: usize,
    down: bool,
    rejections: u8,
}

impl Tuner {
    fn reject(&mut self, len: usize) {
        if self.rejections == 0 {
            self.rejections = 1;
            self.down = !self.down;
        } else {
            self.rejections = 0;
            self.down = false;
            self.index = (self.index + 1) % len.max(1);
        }
    }

    /// The next candidate from `current`, or `None` if no step changes anything.
    fn candidate(
        &mut self,
        specs: &[ParamSpec],
        current: &BTreeMap<String, f64>,
    ) -> Option<BTreeMap<String, f64>> {
        for _ in 0..2 * specs.len() {
            let p = &specs[self.index % specs.len()];
            let cur = current.get(&p.name).copied().unwrap_or(p.initial);
            let step = if self.down { -p.step } else { p.step };
            let v = (cur + step).clamp(p.min, p.max);
            if (v - cur).abs() > f64::EPSILON {
                let mut next = current.clone();
                next.insert(p.name.clone(), v);
                return Some(next);
            }
            self.reject(specs.len());
        }
        None
    }

    fn verdict(&mut self, adopted: bool, len: usize) {
        if adopted {
            self.rejections = 0;
        } else {
            self.reject(len);
        }
    }
}

impl Controller {
    /// Starts a canary of worker parameters `params` (merged into those in force) on `kind`'s
    /// workers. In advise mode it is only proposed: [`apply`](Self::apply) starts it. Returns
    /// the canary decision's id and the actions (the `Adjust`s of the canary subset in auto
    /// mode, and the event).
    ///
    /// # Errors
    /// [`ProposeError`] when the kind is unknown or off, already has a canary, has fewer than
    /// two workers ready, a parameter's value in force is unknown (see
    /// [`set_params`](Self::set_params)), or the parameters are already in force.
    pub fn propose_params(
        &mut self,
        kind: &str,
        params: BTreeMap<String, f64>,
        now: Instant,
    ) -> Result<(DecisionId, Vec<AdaptAction>), ProposeError> {
        self.epoch(now);
        let mut out = Vec::new();
        let id = self.start_canary(kind, params, "proposed by the operator", now, &mut out)?;
        Ok((id, out))
    }

    fn start_canary(
        &mut self,
        kind: &str,
        params: BTreeMap<String, f64>,
        reason: &str,
        now: Instant,
        out: &mut Vec<AdaptAction>,
    ) -> Result<DecisionId, ProposeError> {
        let cfg = self.config.canary;
        let k = self
            .kinds
            .get(kind)
            .filter(|k| !k.workers.is_empty())
            .ok_or_else(|| ProposeError::UnknownKind(kind.to_owned()))?;
        if k.mode == Mode::Off {
            return Err(ProposeError::Off(kind.to_owned()));
        }
        if let Some(c) = &k.canary {
            return Err(ProposeError::Busy(kind.to_owned(), c.id));
        }
        if let Some(id) = self.proposals.get(&SettingKey::Params(kind.to_owned())) {
            return Err(ProposeError::Busy(kind.to_owned(), *id));
        }
        let mut workers: Vec<(usize, f64)> = k
            .workers
            .iter()
            .filter(|(_, w)| !w.draining && !w.warming)
            .map(|(u, w)| {
                let s = w.profile.summary(now);
                #[allow(clippy::cast_precision_loss, reason = "µs figures")]
                let speed = if s.long_samples > 0 {
                    s.long_p50_us as f64
                } else {
                    f64::MAX
                };
                (*u, speed)
            })
            .collect();
        let ready = workers.len();
        if let Some(param) = params.keys().find(|p| !k.params.contains_key(*p)) {
            return Err(ProposeError::UnknownBaseline {
                kind: kind.to_owned(),
                param: param.clone(),
            });
        }
        let mut to = k.params.clone();
        to.extend(params);
        if to == k.params {
            return Err(ProposeError::NoChange(kind.to_owned()));
        }
        let (mode, from) = (k.mode, k.params.clone());
        let (canary, control) = select(
            &mut workers,
            cfg.fraction,
            cfg.max_change_fraction,
            &mut self.rng,
        )
        .ok_or_else(|| ProposeError::TooFewWorkers {
            kind: kind.to_owned(),
            workers: ready,
        })?;
        #[allow(clippy::cast_precision_loss, reason = "worker counts")]
        let ev = Evidence::new(format!(
            "canary ({reason}): {} of {ready} workers try the parameters, {} keep them as control",
            canary.len(),
            control.len()
        ))
        .before("workers", ready as f64)
        .before("canary", canary.len() as f64)
        .before("window_s", (cfg.settle + cfg.window).as_secs_f64());
        let actions = canary
            .iter()
            .map(|&unit| AdaptAction::Adjust {
                unit,
                extra: to.clone(),
            })
            .collect();
        let plan = Canary::new(from.clone(), to.clone(), canary.clone(), control.clone());
        Ok(self.decide(
            now,
            mode,
            kind,
            SettingKey::Params(kind.to_owned()),
            Target::Workers { units: canary },
            Change::Canary { from, to, control },
            ev,
            actions,
            Effect::StartCanary(kind.to_owned(), Box::new(plan)),
            out,
        ))
    }

    /// Canary judgement, rollout steps, parameters for new workers, tuner proposals.
    pub(super) fn tick_params(
        &mut self,
        kind: &str,
        mode: Mode,
        now: Instant,
        out: &mut Vec<AdaptAction>,
    ) {
        let cfg = self.config.canary;
        let k = self.kinds.get_mut(kind).expect("kind exists");
        let n_workers = k.workers.len();
        let Some(c) = &mut k.canary else {
            self.tick_tuner(kind, now, out);
            return;
        };
        match &mut c.phase {
            Phase::Running => {
                if c.judge_at.is_some_and(|t| now >= t) {
                    let short = c.canary.samples.len() < cfg.min_samples
                        || c.control.samples.len() < cfg.min_samples;
                    let gone = c.canary.units.is_empty() || c.control.units.is_empty();
                    if short && !gone && c.extensions < 4 {
                        c.extensions += 1;
                        c.judge_at = Some(now + cfg.window);
                        return;
                    }
                    let (verdict, ev) = c.judge(&cfg);
                    c.phase = Phase::Judged;
                    let (id, from, to, units) =
                        (c.id, c.from.clone(), c.to.clone(), c.canary.units.clone());
                    self.judged(kind, mode, now, verdict, ev, id, from, to, units, out);
                }
            }
            Phase::Judged => {}
            Phase::Rollout {
                adopt,
                remaining,
                next_at,
                done,
            } => {
                if now < *next_at {
                    return;
                }
                #[allow(
                    clippy::cast_precision_loss,
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "worker counts"
                )]
                let step = ((n_workers as f64 * cfg.max_change_fraction).floor() as usize).max(1);
                let batch: Vec<usize> = remaining.drain(..step.min(remaining.len())).collect();
                *done += batch.len();
                *next_at = now + cfg.rollout_step;
                let (adopt, done, finished) = (*adopt, *done, remaining.is_empty());
                let to = c.to.clone();
                for unit in batch {
                    let a = AdaptAction::Adjust {
                        unit,
                        extra: to.clone(),
                    };
                    self.units
                        .entry(unit)
                        .or_default()
                        .params
                        .extend(to.clone());
                    out.push(a);
                }
                if let Some(d) = self.update_decision(adopt, DecisionState::Applied, |e| {
                    #[allow(clippy::cast_precision_loss, reason = "worker counts")]
                    e.after.insert("rolled_out".into(), done as f64);
                }) {
                    out.push(AdaptAction::Event(d));
                }
                if finished {
                    let k = self.kinds.get_mut(kind).expect("kind exists");
                    k.params = to;
                    self.end_canary(kind, now);
                }
            }
        }
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the verdict and the canary's parts"
    )]
    fn judged(
        &mut self,
        kind: &str,
        mode: Mode,
        now: Instant,
        verdict: Verdict,
        ev: Evidence,
        canary_id: DecisionId,
        from: BTreeMap<String, f64>,
        to: BTreeMap<String, f64>,
        units: Vec<usize>,
        out: &mut Vec<AdaptAction>,
    ) {
        let better = verdict == Verdict::Better;
        let len = self.config.params.get(kind).map_or(0, Vec::len);
        if let Some(t) = self.kinds.get_mut(kind).and_then(|k| k.tuner.as_mut()) {
            t.verdict(better, len);
        }
        let state = if better {
            DecisionState::Adopted
        } else {
            DecisionState::RolledBack
        };
        let figures = ev.clone();
        if let Some(d) = self.update_decision(canary_id, state, |e| {
            e.after.extend(figures.after);
            e.reason = format!("{} | {}", e.reason, figures.reason);
        }) {
            out.push(AdaptAction::Event(d));
        }
        if better {
            self.decide(
                now,
                mode,
                kind,
                SettingKey::Params(kind.to_owned()),
                Target::Kind,
                Change::Adopt {
                    canary: canary_id,
                    params: to,
                },
                ev,
                Vec::new(),
                Effect::Adopt(kind.to_owned()),
                out,
            );
        } else {
            let actions = units
                .iter()
                .map(|&unit| AdaptAction::Adjust {
                    unit,
                    extra: from.clone(),
                })
                .collect();
            self.decide(
                now,
                mode,
                kind,
                SettingKey::Params(kind.to_owned()),
                Target::Workers { units },
                Change::Rollback {
                    canary: canary_id,
                    params: from,
                },
                ev,
                actions,
                Effect::Rollback(kind.to_owned()),
                out,
            );
        }
    }

    /// Starts rolling out an adopted canary's parameters to the kind's other workers.
    pub(super) fn start_rollout(&mut self, kind: &str, adopt: DecisionId, now: Instant) {
        let Some(k) = self.kinds.get_mut(kind) else {
            return;
        };
        let Some(c) = &mut k.canary else {
            return;
        };
        let remaining: Vec<usize> = k
            .workers
            .iter()
            .filter(|(u, w)| !w.draining && !c.canary.units.contains(u))
            .map(|(u, _)| *u)
            .collect();
        c.phase = Phase::Rollout {
            adopt,
            remaining,
            next_at: now,
            done: c.canary.units.len(),
        };
    }

    /// The kind's canary is over.
    pub(super) fn end_canary(&mut self, kind: &str, now: Instant) {
        if let Some(k) = self.kinds.get_mut(kind) {
            k.canary = None;
            k.canary_ended = Some(now);
        }
    }

    fn tick_tuner(&mut self, kind: &str, now: Instant, out: &mut Vec<AdaptAction>) {
        let cfg = self.config.canary;
        let Some(specs) = self.config.params.get(kind).cloned() else {
            return;
        };
        let k = self.kinds.get_mut(kind).expect("kind exists");
        let ready = k.canary_ended.is_none_or(|t| now >= t + cfg.cooldown)
            && k.workers
                .values()
                .filter(|w| !w.warming && !w.draining)
                .count()
                >= 2;
        if !ready || specs.is_empty() {
            return;
        }
        let current = k.params.clone();
        let Some(candidate) = k.tuner.as_mut().and_then(|t| t.candidate(&specs, &current)) else {
            return;
        };
        let _ = self.start_canary(kind, candidate, "tuner step", now, out);
    }
}
