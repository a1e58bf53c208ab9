//! `learned`: a discounted Thompson-sampling bandit that chooses which of the other policies
//! routes, window by window, rewarded by the window's tail latency.

use super::{derive_seed, Candidate, LeastLoaded, PeakEwma, RoundRobin, Router};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Windows whose tasks are still being measured, beyond which the oldest is scored early.
const MAX_OPEN_WINDOWS: usize = 8;

/// Weight below which an arm counts as unknown (its mean is not trusted).
const MIN_WEIGHT: f64 = 1e-3;

/// Tuning of [`Learned`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearnedConfig {
    /// Dispatches per window: one arm routes a whole window.
    pub window_tasks: u32,
    /// A window also ends once it is this old and has at least `min_tasks` dispatches (so a
    /// quiet kind still switches arms).
    pub window_time: Duration,
    /// Fewest completed tasks for a window to be scored; a smaller one is dropped unscored.
    pub min_tasks: u32,
    /// Discount applied to every arm's statistics each time a window is scored (`0 < γ ≤ 1`):
    /// old evidence fades, so the bandit follows a workload that changes.
    pub discount: f64,
    /// Assumed standard deviation of one window's reward (natural log of its tail latency).
    pub sigma: f64,
    /// The latency quantile a window is scored by (0.95: p95).
    pub quantile: f64,
}

impl Default for LearnedConfig {
    fn default() -> Self {
        Self {
            window_tasks: 256,
            window_time: Duration::from_secs(10),
            min_tasks: 16,
            discount: 0.95,
            sigma: 0.3,
            quantile: 0.95,
        }
    }
}

/// One policy the bandit can choose, with its discounted reward statistics.
#[derive(Debug)]
struct Arm {
    router: Box<dyn Router>,
    /// Discounted sum of rewards.
    sum: f64,
    /// Discounted number of rewards.
    weight: f64,
    /// Windows it was chosen for.
    windows: u64,
    /// Windows scored.
    scored: u64,
    /// Tail latency of its last scored window.
    last_tail: Option<Duration>,
}

/// A run of consecutive dispatches by one arm, and the latencies of those tasks.
#[derive(Debug)]
struct Window {
    seq: u64,
    arm: usize,
    started: Instant,
    dispatched: u32,
    /// Its tasks still in flight.
    outstanding: u32,
    /// No more dispatches: scored once `outstanding` reaches 0.
    closed: bool,
    samples: Vec<Duration>,
}

/// A bandit over policies, not over workers: each *arm* is a whole routing policy (by default
/// `round_robin`, `least_loaded` and `peak_ewma` with the configured decay), and one arm routes
/// every task of a *window* ([`LearnedConfig::window_tasks`] dispatches, or
/// [`LearnedConfig::window_time`]). A window's reward is `−ln(quantile latency)` of the tasks it
/// dispatched (measured dispatch → completion, attributed per worker in dispatch order; the
/// logarithm makes the reward scale-free: halving the tail is worth the same at 1 ms and at
/// 1 s). A window is scored once all its tasks have completed, so late completions of one arm
/// never count against the next.
///
/// Arm choice is discounted Thompson sampling with a Gaussian model: each arm keeps a
/// discounted sum and count of rewards (every scored window multiplies all arms' by
/// [`LearnedConfig::discount`]); the next arm is the one with the largest draw from
/// `N(mean, sigma² / count)`. Every arm is tried once first. Because evidence fades, a
/// neglected arm's draw widens until it is tried again, which lets the bandit follow a
/// workload that changes. Every arm observes every dispatch and completion, so the one chosen
/// next starts with warm estimates.
#[derive(Debug)]
pub struct Learned {
    arms: Vec<Arm>,
    config: LearnedConfig,
    rng: SmallRng,
    /// The arm routing now.
    active: usize,
    /// Windows being dispatched or measured, oldest first; only the last may be open.
    windows: VecDeque<Window>,
    /// Per unit, the window of each of its tasks in flight, in dispatch order.
    in_flight: BTreeMap<usize, VecDeque<u64>>,
    next_seq: u64,
    /// Windows scored / dropped (too few samples).
    scored: u64,
    dropped: u64,
}

impl Learned {
    /// The policy's configuration name.
    pub const NAME: &'static str = "learned";

    /// A bandit over `round_robin`, `least_loaded` and `peak_ewma` (with `decay`), all
    /// randomness from `seed`.
    #[must_use]
    pub fn new(seed: u64, decay: Duration, config: LearnedConfig) -> Self {
        let arms: Vec<Box<dyn Router>> = vec![
            Box::new(RoundRobin::new()),
            Box::new(LeastLoaded::new(derive_seed(seed, 10))),
            Box::new(PeakEwma::new(derive_seed(seed, 11), decay)),
        ];
        Self::with_arms(seed, arms, config)
    }

    /// A bandit over the given policies (tried first in this order).
    ///
    /// # Panics
    /// If `arms` is empty.
    #[must_use]
    pub fn with_arms(seed: u64, arms: Vec<Box<dyn Router>>, config: LearnedConfig) -> Self {
        assert!(!arms.is_empty(), "a bandit needs at least one arm");
        Self {
            arms: arms
                .into_iter()
                .map(|router| Arm {
                    router,
                    sum: 0.0,
                    weight: 0.0,
                    windows: 0,
                    scored: 0,
                    last_tail: None,
                })
                .collect(),
            config,
            rng: SmallRng::seed_from_u64(derive_seed(seed, 3)),
            active: 0,
            windows: VecDeque::new(),
            in_flight: BTreeMap::new(),
            next_seq: 0,
            scored: 0,
            dropped: 0,
        }
    }

    /// The name of the arm routing now.
    #[must_use]
    pub fn active_arm(&self) -> &'static str {
        self.arms[self.active].router.name()
    }

    /// The dispatching window, if one is open.
    fn open_window(&mut self) -> Option<&mut Window> {
        self.windows.back_mut().filter(|w| !w.closed)
    }

    /// Closes the open window if it is due, and opens a new one (choosing its arm) if none is
    /// open.
    fn rotate(&mut self, now: Instant) {
        let config = self.config;
        if let Some(w) = self.open_window() {
            let age = now.saturating_duration_since(w.started);
            let due = w.dispatched >= config.window_tasks
                || (age >= config.window_time && w.dispatched >= config.min_tasks);
            if !due {
                return;
            }
            w.closed = true;
            self.score_finished();
        }
        while self.windows.len() >= MAX_OPEN_WINDOWS {
            // Tasks that never come back must not pin memory: score what the oldest has.
            let w = self.windows.pop_front().expect("len checked");
            self.score(w);
        }
        self.active = self.choose();
        self.arms[self.active].windows += 1;
        self.windows.push_back(Window {
            seq: self.next_seq,
            arm: self.active,
            started: now,
            dispatched: 0,
            outstanding: 0,
            closed: false,
            samples: Vec::new(),
        });
        self.next_seq += 1;
    }

    /// Thompson sampling: an untried arm first, else the largest draw.
    fn choose(&mut self) -> usize {
        if let Some(untried) = self.arms.iter().position(|a| a.windows == 0) {
            return untried;
        }
        let known: Vec<f64> = self
            .arms
            .iter()
            .filter(|a| a.weight >= MIN_WEIGHT)
            .map(|a| a.sum / a.weight)
            .collect();
        #[allow(
            clippy::cast_precision_loss,
            reason = "a handful of arms; exact in f64"
        )]
        let prior = if known.is_empty() {
            0.0
        } else {
            known.iter().sum::<f64>() / known.len() as f64
        };
        let sigma = self.config.sigma;
        let mut best = (0, f64::NEG_INFINITY);
        for i in 0..self.arms.len() {
            let arm = &self.arms[i];
            let weight = arm.weight.max(MIN_WEIGHT);
            let mean = if arm.weight >= MIN_WEIGHT {
                arm.sum / arm.weight
            } else {
                prior
            };
            let draw = mean + sigma / weight.sqrt() * standard_normal(&mut self.rng);
            if draw > best.1 {
                best = (i, draw);
            }
        }
        best.0
    }

    /// Scores (and removes) every closed window with nothing outstanding.
    fn score_finished(&mut self) {
        while let Some(i) = self
            .windows
            .iter()
            .position(|w| w.closed && w.outstanding == 0)
        {
            let w = self.windows.remove(i).expect("index from position");
            self.score(w);
        }
    }

    fn score(&mut self, mut w: Window) {
        if w.samples.len() < self.config.min_tasks.max(1) as usize {
            self.dropped += 1;
            return;
        }
        let tail = quantile(&mut w.samples, self.config.quantile);
        let reward = -tail.as_secs_f64().max(1e-9).ln();
        for arm in &mut self.arms {
            arm.sum *= self.config.discount;
            arm.weight *= self.config.discount;
        }
        let arm = &mut self.arms[w.arm];
        arm.sum += reward;
        arm.weight += 1.0;
        arm.scored += 1;
        arm.last_tail = Some(tail);
        self.scored += 1;
    }

    /// The window a task of `unit` that just left belonged to, if it is still measured.
    fn settle(&mut self, unit: usize) -> Option<&mut Window> {
        let seq = self.in_flight.get_mut(&unit)?.pop_front()?;
        let w = self.windows.iter_mut().find(|w| w.seq == seq)?;
        w.outstanding = w.outstanding.saturating_sub(1);
        Some(w)
    }
}

/// The `q` quantile (nearest rank) of non-empty `samples` (sorted in place).
fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a rank in 1..=len, computed from a window of at most a few thousand samples"
    )]
    let rank = ((q.clamp(0.0, 1.0) * samples.len() as f64).ceil() as usize).max(1);
    samples[rank.min(samples.len()) - 1]
}

/// A standard normal draw (Box–Muller).
fn standard_normal(rng: &mut SmallRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

impl Router for Learned {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn pick(&mut self, now: Instant, candidates: &[Candidate]) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        self.rotate(now);
        self.arms[self.active].router.pick(now, candidates)
    }

    fn on_dispatch(&mut self, unit: usize, now: Instant) {
        if self.open_window().is_none() {
            self.rotate(now);
        }
        let w = self.windows.back_mut().expect("rotate opens a window");
        w.dispatched += 1;
        w.outstanding += 1;
        let seq = w.seq;
        self.in_flight.entry(unit).or_default().push_back(seq);
        for arm in &mut self.arms {
            arm.router.on_dispatch(unit, now);
        }
    }

    fn on_complete(&mut self, unit: usize, latency: Duration, ok: bool, now: Instant) {
        if let Some(w) = self.settle(unit) {
            w.samples.push(latency);
        }
        self.score_finished();
        for arm in &mut self.arms {
            arm.router.on_complete(unit, latency, ok, now);
        }
    }

    fn on_abandoned(&mut self, unit: usize, now: Instant) {
        let _ = self.settle(unit);
        self.score_finished();
        for arm in &mut self.arms {
            arm.router.on_abandoned(unit, now);
        }
    }

    fn on_removed(&mut self, unit: usize) {
        for seq in self.in_flight.remove(&unit).unwrap_or_default() {
            if let Some(w) = self.windows.iter_mut().find(|w| w.seq == seq) {
                w.outstanding = w.outstanding.saturating_sub(1);
            }
        }
        self.score_finished();
        for arm in &mut self.arms {
            arm.router.on_removed(unit);
        }
    }

    fn describe(&self, now: Instant) -> serde_json::Value {
        let arms: Vec<_> = self
            .arms
            .iter()
            .map(|a| {
                json!({
                    "arm": a.router.name(),
                    "mean_reward": (a.weight >= MIN_WEIGHT).then(|| a.sum / a.weight),
                    "weight": a.weight,
                    "windows": a.windows,
                    "scored": a.scored,
                    "last_tail_us": a.last_tail.map(|t| t.as_secs_f64() * 1e6),
                    "state": a.router.describe(now),
                })
            })
            .collect();
        let window = self.windows.back().filter(|w| !w.closed).map(|w| {
            json!({
                "seq": w.seq,
                "dispatched": w.dispatched,
                "age_ms": now.saturating_duration_since(w.started).as_secs_f64() * 1e3,
            })
        });
        json!({
            "policy": Self::NAME,
            "active": self.active_arm(),
            "window": window,
            "window_tasks": self.config.window_tasks,
            "quantile": self.config.quantile,
            "discount": self.config.discount,
            "scored": self.scored,
            "dropped": self.dropped,
            "arms": arms,
        })
    }
}
