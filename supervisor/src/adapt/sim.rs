//! A deterministic simulator of one task kind served by a pool of workers, in virtual time,
//! for the controller's tests and for `examples/bench_adaptive.rs`: the real
//! [`KindRouter`](crate::router::KindRouter) (any policy, or an oracle that knows the true
//! speeds) dispatches, the [`Controller`](super::Controller) (on or off) sets windows, batch
//! and parameters, and simulated workers serve. Everything is seeded: the same [`SimConfig`]
//! gives the same [`SimResult`].
//!
//! # Model
//! - **Arrivals** are open-loop Poisson at `load ×` the nominal capacity (the workers'
//!   initial speeds); latency is measured from each task's *intended* arrival, so a slow
//!   system cannot slow the arrivals down (no coordinated omission).
//! - **Classes**: `interactive` (exponential sizes, a deadline) and `batch` (Pareto sizes,
//!   capped), queued in the router's `interactive` / `batch` classes (DRR 8 : 1).
//! - **Workers** are sleep-style: `slots` tasks at a time (1 for `amp-sleep`), FIFO, each
//!   task taking `size × speed × parameter penalty`, fixed when it starts. A dispatch reaches
//!   the worker `dispatch_delay` after it leaves and its completion is seen as long after it
//!   finishes (the ring round trip with a wakeup). A phase can slow a worker down (a
//!   factor) or stall it (a fixed time per task).
//! - **Failures**: each attempt fails with probability `failure` (a retryable error: retried
//!   after a full-jitter backoff, up to `max_attempts`, then dead-lettered); a **poison** task
//!   kills the worker running it (restarted after `restart_delay`, its other tasks requeued at
//!   the head of their class) and is dead-lettered after `poison_deaths` deaths.
//! - **Run timeouts and deadlines are not enforced**: every task runs to completion, so that
//!   latencies of all policies are comparable (ampd would answer a late interactive task
//!   `DeadlineExceeded` at dispatch and apply the kind's timeout).
//! - **Autoscaling** (with a controller whose config lists the group): `ScaleTo` up starts
//!   new workers like the first one after `start_delay`; `Drain` stops dispatching to a worker
//!   and removes it once it is idle.

mod engine;
mod oracle;
pub mod scenario;

use super::config::AdaptConfig;
use super::decision::Decision;
use crate::config::RouterPolicy;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

pub use engine::run;
pub use oracle::Oracle;

/// The kind name the simulator uses.
pub const KIND: &str = "sim";
/// The worker group name the simulator uses.
pub const GROUP: &str = "sleep";

/// Who picks the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SimPolicy {
    /// A router policy.
    Router(RouterPolicy),
    /// Knows every worker's true speed at every moment: windows equal to the workers' slots
    /// (zero for a stalled worker), each task to the eligible worker with the least expected
    /// finish time, `(in flight + 1) × speed`.
    Oracle,
}

impl SimPolicy {
    /// Its name for reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Router(p) => crate::router::policy_name(p),
            Self::Oracle => "oracle",
        }
    }
}

/// One simulated worker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerSpec {
    /// Service-time factor: a task of size `s` takes `s × speed` (0.5: twice as fast).
    pub speed: f64,
    /// Tasks it serves at once.
    pub slots: u32,
}

/// Task priority class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Short tasks with a deadline.
    Interactive,
    /// Heavy-tailed tasks.
    Batch,
}

/// The task mix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workload {
    /// Share of interactive tasks.
    pub interactive_share: f64,
    /// Mean interactive size (exponential).
    pub interactive_mean: Duration,
    /// Interactive deadline (from arrival).
    pub deadline: Duration,
    /// Smallest batch size (Pareto scale).
    pub batch_min: Duration,
    /// Pareto shape of batch sizes.
    pub batch_alpha: f64,
    /// Largest batch size.
    pub batch_cap: Duration,
    /// Probability that an attempt fails with a retryable error.
    pub failure: f64,
    /// Poison tasks (batch class), spread evenly over the phases.
    pub poison: u32,
}

impl Workload {
    /// Mean task size (what `load` is computed from).
    #[must_use]
    pub fn mean_size(&self) -> f64 {
        let (xm, a, cap) = (
            self.batch_min.as_secs_f64(),
            self.batch_alpha,
            self.batch_cap.as_secs_f64(),
        );
        // E[min(X, cap)] for X ~ Pareto(xm, a).
        let batch = if (a - 1.0).abs() < 1e-9 {
            xm + xm * (cap / xm).ln()
        } else {
            xm + xm / (a - 1.0) * (1.0 - (xm / cap).powf(a - 1.0))
        };
        self.interactive_share * self.interactive_mean.as_secs_f64()
            + (1.0 - self.interactive_share) * batch
    }
}

/// A change of a worker's speed at the start of a phase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum SpeedChange {
    /// Its tasks take `factor ×` as long as its base speed says.
    Slow(f64),
    /// Every task takes this long.
    Stall(Duration),
    /// Back to its base speed.
    Restore,
}

/// One phase of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phase {
    /// Its name (in reports).
    pub name: String,
    /// How long arrivals follow it.
    pub duration: Duration,
    /// Arrival rate as a share of nominal capacity.
    pub load: f64,
    /// Speed changes at its start.
    pub changes: Vec<(usize, SpeedChange)>,
}

/// How a worker-applied parameter affects speed (for canary tests): service time is
/// multiplied by `1 + penalty · ((value − optimum) / optimum)²`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamResponse {
    /// The parameter (`WorkerParams.extra` key).
    pub name: String,
    /// Value at start.
    pub initial: f64,
    /// The best value.
    pub optimum: f64,
    /// Penalty scale.
    pub penalty: f64,
}

/// Autoscaling in the simulation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleSim {
    /// A new replica is ready this long after `ScaleTo`.
    pub start_delay: Duration,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of every random choice (arrivals, sizes, failures, router, controller).
    pub seed: u64,
    /// The workers (unit = index).
    pub workers: Vec<WorkerSpec>,
    /// The task mix.
    pub workload: Workload,
    /// The phases, in order.
    pub phases: Vec<Phase>,
    /// Who picks workers.
    pub policy: SimPolicy,
    /// The controller's configuration (its mode for [`KIND`] decides); `None`: no controller.
    pub adapt: Option<AdaptConfig>,
    /// Every worker's window without a controller (`concurrency`).
    pub window: u32,
    /// One-way delay of a dispatch and of a completion.
    pub dispatch_delay: Duration,
    /// Time a crashed worker takes to come back.
    pub restart_delay: Duration,
    /// Attempts before a failing task is dead-lettered.
    pub max_attempts: u32,
    /// Deaths of workers running a task before it is dead-lettered as poison.
    pub poison_deaths: u32,
    /// Cap of the first retry's full-jitter backoff (doubling per attempt).
    pub retry_base: Duration,
    /// After the last phase, time allowed to finish what is left.
    pub drain_limit: Duration,
    /// Parameter response of the workers.
    pub param: Option<ParamResponse>,
    /// Autoscaling.
    pub scale: Option<ScaleSim>,
    /// The unit whose load should move off when the phase named `watch.1` starts (for
    /// [`SimResult::adapt_s`]).
    pub watch: Option<(usize, String)>,
    /// Parameter sets proposed to the controller (`Controller::propose_params`) at these
    /// times.
    pub proposals: Vec<(Duration, BTreeMap<String, f64>)>,
    /// Keep every decision in the result.
    pub keep_decisions: bool,
}

impl SimConfig {
    /// `unit`'s share of the workers' capacity during phase `phase`, with every speed change
    /// up to that phase applied (a stalled worker has none). What `adapt_s` compares a
    /// worker's share of dispatches with.
    #[must_use]
    pub fn capacity_share(&self, phase: usize, unit: usize) -> f64 {
        let mut slow = vec![1.0; self.workers.len()];
        let mut stalled = vec![false; self.workers.len()];
        for p in self.phases.iter().take(phase + 1) {
            for &(u, c) in &p.changes {
                match c {
                    SpeedChange::Slow(f) => slow[u] = f,
                    SpeedChange::Stall(_) => stalled[u] = true,
                    SpeedChange::Restore => {
                        slow[u] = 1.0;
                        stalled[u] = false;
                    }
                }
            }
        }
        let cap: Vec<f64> = self
            .workers
            .iter()
            .enumerate()
            .map(|(u, w)| {
                if stalled[u] {
                    0.0
                } else {
                    f64::from(w.slots) / (w.speed * slow[u])
                }
            })
            .collect();
        let total: f64 = cap.iter().sum();
        cap.get(unit).map_or(0.0, |c| c / total)
    }

    /// Nominal capacity (tasks/s) at the workers' base speeds.
    #[must_use]
    pub fn capacity(&self) -> f64 {
        let mean = self.workload.mean_size();
        self.workers
            .iter()
            .map(|w| f64::from(w.slots) / (mean * w.speed))
            .sum()
    }
}

/// One task's fate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TaskRecord {
    /// Its class.
    pub class: Class,
    /// Index of the phase it arrived in.
    pub phase: usize,
    /// Arrival → result (`None`: never finished, i.e. lost).
    pub latency: Option<Duration>,
    /// Finished successfully.
    pub ok: bool,
    /// Dead-lettered.
    pub dead_lettered: bool,
    /// A poison task.
    pub poison: bool,
    /// Attempts made.
    pub attempts: u32,
    /// The worker that ran its last attempt.
    pub unit: Option<usize>,
    /// Tasks in flight on that worker when it was dispatched there.
    pub ahead: u32,
    /// Time from its last dispatch to its result.
    pub rtt: Option<Duration>,
}

/// Latency and goodput of one class over some phases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ClassStats {
    /// Tasks that arrived.
    pub tasks: u64,
    /// Median latency (ms) of finished tasks.
    pub p50_ms: f64,
    /// p99 (ms).
    pub p99_ms: f64,
    /// Largest (ms).
    pub max_ms: f64,
    /// Share finished successfully within the deadline (interactive) or at all (batch).
    pub hit_rate: f64,
    /// Successful (within deadline for interactive) tasks per second of the phases.
    pub goodput: f64,
}

/// What happened.
#[derive(Debug, Clone, Serialize)]
pub struct SimResult {
    /// Phase names with their start and end (s).
    pub phases: Vec<(String, f64, f64)>,
    /// Every task, by id.
    pub tasks: Vec<TaskRecord>,
    /// The interactive deadline.
    pub deadline: Duration,
    /// Tasks neither finished nor dead-lettered at the end (must be 0).
    pub lost: u64,
    /// Tasks dead-lettered.
    pub dead_lettered: u64,
    /// Poison tasks submitted.
    pub poison: u64,
    /// Worker crashes.
    pub crashes: u64,
    /// Retries after errors.
    pub retries: u64,
    /// Seconds from the watched phase's start until the watched worker holds at most two
    /// tasks and gets at most 1.5× its capacity share of dispatches, for a whole second;
    /// `None` if that never happens within the phase.
    pub adapt_s: Option<f64>,
    /// Decisions made.
    pub decisions: u64,
    /// Actions carried out, by type.
    pub actions: BTreeMap<String, u64>,
    /// Windows at the end, by unit.
    pub windows: Vec<u32>,
    /// Controller's batch and timeout at the end.
    pub batch: Option<u32>,
    /// See `batch`.
    pub timeout: Option<Duration>,
    /// Worker parameters at the end, by unit (present workers).
    pub params: BTreeMap<usize, BTreeMap<String, f64>>,
    /// Present (not draining) workers over time: (s, count).
    pub replicas: Vec<(f64, u32)>,
    /// Every decision, if `keep_decisions`.
    pub decision_log: Vec<Decision>,
    /// Every `Adjust` carried out: (s, unit, parameters).
    pub adjustments: Vec<(f64, usize, BTreeMap<String, f64>)>,
    /// Errors of the scheduled proposals (empty when all were accepted).
    pub proposal_errors: Vec<String>,
    /// Virtual time at the end (s).
    pub end_s: f64,
}

impl SimResult {
    /// Statistics of `class` over the tasks that arrived in the phases named `phases`.
    #[must_use]
    #[allow(clippy::cast_precision_loss, reason = "task counts and µs figures")]
    pub fn stats(&self, phases: &[&str], class: Class) -> ClassStats {
        let idx: Vec<usize> = self
            .phases
            .iter()
            .enumerate()
            .filter(|(_, p)| phases.contains(&p.0.as_str()))
            .map(|(i, _)| i)
            .collect();
        let span: f64 = idx
            .iter()
            .map(|&i| self.phases[i].2 - self.phases[i].1)
            .sum();
        let mut h = Histogram::<u64>::new(3).expect("valid precision");
        let (mut tasks, mut good) = (0u64, 0u64);
        for t in self
            .tasks
            .iter()
            .filter(|t| t.class == class && idx.contains(&t.phase) && !t.poison)
        {
            tasks += 1;
            if let Some(l) = t.latency {
                let v = u64::try_from(l.as_micros())
                    .unwrap_or(u64::MAX)
                    .clamp(1, 1 << 40);
                if h.record(v).is_err() {
                    h.saturating_record(v);
                }
                let in_time = class == Class::Batch || l <= self.deadline;
                if t.ok && in_time {
                    good += 1;
                }
            }
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        ClassStats {
            tasks,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            max_ms: h.max() as f64 / 1e3,
            hit_rate: if tasks == 0 {
                1.0
            } else {
                good as f64 / tasks as f64
            },
            goodput: if span > 0.0 { good as f64 / span } else { 0.0 },
        }
    }

    /// Names of the phases.
    #[must_use]
    pub fn phase_names(&self) -> Vec<&str> {
        self.phases.iter().map(|p| p.0.as_str()).collect()
    }
}
