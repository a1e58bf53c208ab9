//! A virtual-time simulator of one kind, for the router tests: Poisson arrivals, workers that
//! serve their tasks one at a time in FIFO order with exponential service times, and a
//! [`KindRouter`] dispatching between them. Everything is seeded: the same [`SimConfig`] gives
//! the same [`SimResult`].

use super::{Dispatch, KindRouter, TaskId};
use crate::config::{ClassConfig, KindConfig, RouterPolicy};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

/// What to simulate.
#[derive(Debug, Clone)]
pub(crate) struct SimConfig {
    /// Mean service time of each worker (unit = index).
    pub service: Vec<Duration>,
    /// Every worker's credit window.
    pub window: u32,
    /// Arrival rate as a fraction of the workers' total capacity.
    pub load: f64,
    /// Tasks to submit.
    pub tasks: u64,
    pub seed: u64,
    pub policy: RouterPolicy,
    pub decay: Duration,
    /// After this many arrivals, switch to this policy.
    pub switches: Vec<(u64, RouterPolicy)>,
    /// After `.0` arrivals remove unit `.1` (its tasks are requeued), add it back after `.2`.
    pub removals: Vec<(u64, usize, u64)>,
    /// Record the policy's `describe()["active"]` every this many arrivals (0: never).
    pub sample_every: u64,
}

impl SimConfig {
    /// `tasks` tasks at `load` over workers with these mean service times (ms), window 8.
    pub(crate) fn new(policy: RouterPolicy, service_ms: &[u64], load: f64, tasks: u64) -> Self {
        Self {
            service: service_ms
                .iter()
                .map(|&ms| Duration::from_millis(ms))
                .collect(),
            window: 8,
            load,
            tasks,
            seed: 1,
            policy,
            decay: super::DEFAULT_DECAY,
            switches: Vec::new(),
            removals: Vec::new(),
            sample_every: 0,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SimResult {
    /// Tasks each worker completed.
    pub completed_by: Vec<u64>,
    /// End-to-end latency (arrival → completion) of each task, by task id.
    pub latency: Vec<Duration>,
    /// How many times each task completed (must be exactly 1).
    pub completions: Vec<u32>,
    /// Sampled `active` arm of a `learned` policy, with the arrival count of the sample.
    pub arms: Vec<(u64, String)>,
    /// Virtual time at the end.
    pub end: Duration,
    /// Tasks requeued because their worker was removed.
    pub requeued: u64,
}

impl SimResult {
    /// Share of completions done by `unit`.
    pub(crate) fn share(&self, unit: usize) -> f64 {
        let total: u64 = self.completed_by.iter().sum();
        self.completed_by[unit] as f64 / total as f64
    }

    /// The `q` quantile of end-to-end latency of the tasks after the first `skip`.
    pub(crate) fn quantile_after(&self, skip: usize, q: f64) -> Duration {
        let mut l = self.latency[skip..].to_vec();
        l.sort_unstable();
        let rank = ((q * l.len() as f64).ceil() as usize).clamp(1, l.len());
        l[rank - 1]
    }

    /// Fraction of `arms` samples after arrival `from` that satisfy `f`.
    pub(crate) fn arm_fraction(&self, from: u64, f: impl Fn(&str) -> bool) -> f64 {
        let late: Vec<_> = self.arms.iter().filter(|(n, _)| *n >= from).collect();
        late.iter().filter(|(_, a)| f(a)).count() as f64 / late.len() as f64
    }
}

#[derive(Debug, Default)]
struct SimWorker {
    /// Tasks sent to it, the first in service: (task, dispatched at).
    queue: VecDeque<(TaskId, Duration)>,
    /// Bumped on removal so its pending completion event is ignored.
    generation: u64,
    present: bool,
}

/// Runs the simulation.
pub(crate) fn run(config: &SimConfig) -> SimResult {
    let t0 = Instant::now();
    let mut rng = SmallRng::seed_from_u64(config.seed);
    let kind = KindConfig {
        queue_limit: config.tasks.max(1),
        router: config.policy,
        batch: 1024,
        ..KindConfig::default()
    };
    let mut router = KindRouter::new(&kind, &ClassConfig::defaults(), config.seed, config.decay)
        .expect("default classes");
    let class = router
        .queues()
        .class_id("interactive")
        .expect("default class");
    let n = config.service.len();
    let mut workers: Vec<SimWorker> = (0..n).map(|_| SimWorker::default()).collect();
    for (unit, w) in workers.iter_mut().enumerate() {
        router.worker_added(unit, config.window).expect("new unit");
        w.present = true;
    }
    let capacity: f64 = config.service.iter().map(|s| 1.0 / s.as_secs_f64()).sum();
    let mean_gap = 1.0 / (capacity * config.load);
    let exp = |rng: &mut SmallRng, mean: f64| -> Duration {
        let u: f64 = 1.0 - rng.random::<f64>();
        Duration::from_secs_f64(-u.ln() * mean)
    };

    let mut result = SimResult {
        completed_by: vec![0; n],
        latency: vec![Duration::ZERO; config.tasks as usize],
        completions: vec![0; config.tasks as usize],
        arms: Vec::new(),
        end: Duration::ZERO,
        requeued: 0,
    };
    let mut arrival_at: Vec<Duration> = Vec::with_capacity(config.tasks as usize);
    // Completion events: (time, sequence for ties, unit, worker generation).
    let mut events: BinaryHeap<Reverse<(Duration, u64, usize, u64)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut arrived = 0u64;
    let mut next_arrival = exp(&mut rng, mean_gap);
    let mut done = 0u64;
    let mut out: Vec<Dispatch> = Vec::new();
    let mut now;

    while done < config.tasks {
        let next_event = events.peek().map(|Reverse((t, ..))| *t);
        let arrival_first = arrived < config.tasks && next_event.is_none_or(|t| next_arrival <= t);
        if arrival_first {
            now = next_arrival;
            let id = arrived;
            arrival_at.push(now);
            router
                .submit(id, class)
                .expect("queue_limit is the task count");
            arrived += 1;
            next_arrival = now + exp(&mut rng, mean_gap);
            for &(_, policy) in config.switches.iter().filter(|(at, _)| *at == arrived) {
                router.set_policy(policy);
            }
            for &(at, unit, back) in &config.removals {
                if at == arrived {
                    let w = &mut workers[unit];
                    let slot = router.worker_removed(unit).expect("unit present");
                    assert_eq!(slot.in_flight as usize, w.queue.len());
                    let tasks: Vec<_> = w.queue.drain(..).map(|(t, _)| (t, class)).collect();
                    result.requeued += tasks.len() as u64;
                    router.requeue_all(&tasks);
                    w.generation += 1;
                    w.present = false;
                }
                if back == arrived {
                    router
                        .worker_added(unit, config.window)
                        .expect("unit absent");
                    workers[unit].present = true;
                }
            }
            if config.sample_every > 0 && arrived % config.sample_every == 0 {
                let d = router.describe(t0 + now);
                if let Some(active) = d["router"]["active"].as_str() {
                    result.arms.push((arrived, active.to_owned()));
                }
            }
        } else {
            let Reverse((t, _, unit, generation)) = events.pop().expect("peeked");
            now = t;
            let w = &mut workers[unit];
            if generation != w.generation {
                continue; // the worker was removed; its task was requeued
            }
            let (task, dispatched) = w.queue.pop_front().expect("a task in service");
            router
                .completed(unit, now - dispatched, true, t0 + now)
                .expect("in flight");
            result.completed_by[unit] += 1;
            result.latency[task as usize] = now - arrival_at[task as usize];
            result.completions[task as usize] += 1;
            done += 1;
            if !w.queue.is_empty() {
                events.push(Reverse((
                    now + exp(&mut rng, config.service[unit].as_secs_f64()),
                    seq,
                    unit,
                    w.generation,
                )));
                seq += 1;
            }
        }
        out.clear();
        router.dispatch_batch(t0 + now, usize::MAX, &mut out);
        for d in &out {
            let w = &mut workers[d.unit];
            assert!(w.present, "dispatched to a removed worker");
            w.queue.push_back((d.task, now));
            assert!(w.queue.len() <= config.window as usize, "window exceeded");
            if w.queue.len() == 1 {
                events.push(Reverse((
                    now + exp(&mut rng, config.service[d.unit].as_secs_f64()),
                    seq,
                    d.unit,
                    w.generation,
                )));
                seq += 1;
            }
        }
        result.end = now;
    }
    assert_eq!(router.queued(), 0);
    assert_eq!(router.in_flight(), 0);
    result
}
