//! The simulator's event loop.

use super::{oracle::Oracle, Class, SimConfig, SimPolicy, SimResult, SpeedChange, GROUP, KIND};
use crate::adapt::{AdaptAction, Controller};
use crate::config::{ClassConfig, KindConfig, RouterPolicy};
use crate::router::{ClassId, Dispatch, KindRouter};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod measure;

/// A poison task kills its worker this long after starting.
const POISON_KILL_NS: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Phase(usize),
    Arrival,
    Poison(u32),
    Deliver {
        unit: usize,
        gen: u64,
        task: u64,
    },
    Finish {
        unit: usize,
        gen: u64,
        task: u64,
    },
    Seen {
        unit: usize,
        gen: u64,
        task: u64,
        ok: bool,
    },
    Crash {
        unit: usize,
        gen: u64,
    },
    Restart {
        unit: usize,
    },
    Retry {
        task: u64,
    },
    Tick,
    Started {
        unit: usize,
    },
    Propose(usize),
}

#[derive(Debug)]
struct Task {
    class: Class,
    /// Size in seconds (at speed 1).
    size: f64,
    arrival: u64,
    phase: usize,
    poison: bool,
    attempts: u32,
    deaths: u32,
    queued_at: u64,
    dispatched_at: u64,
    unit: Option<usize>,
    ahead: u32,
    done: bool,
    ok: bool,
    dead: bool,
    finished_at: Option<u64>,
}

#[derive(Debug)]
struct Worker {
    speed: f64,
    slots: u32,
    slow: f64,
    stall: Option<f64>,
    present: bool,
    starting: bool,
    draining: bool,
    gen: u64,
    waiting: VecDeque<u64>,
    running: Vec<u64>,
    /// Dispatched, completion not seen yet, in dispatch order.
    outstanding: VecDeque<u64>,
    params: BTreeMap<String, f64>,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[allow(clippy::cast_precision_loss, reason = "virtual times below 2^52 ns")]
fn secs(t: u64) -> f64 {
    t as f64 / 1e9
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "non-negative virtual durations far below u64::MAX ns"
)]
fn from_secs(s: f64) -> u64 {
    (s.max(0.0) * 1e9) as u64
}

fn exp(rng: &mut SmallRng, mean: f64) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    -u.ln() * mean
}

struct Engine<'a> {
    cfg: &'a SimConfig,
    t0: Instant,
    now: u64,
    events: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    seq: u64,
    router: KindRouter,
    classes: [ClassId; 2],
    controller: Option<Controller>,
    oracle: Option<Arc<Mutex<Vec<f64>>>>,
    workers: Vec<Worker>,
    tasks: Vec<Task>,
    /// Tasks submitted and not done.
    open: usize,
    queued: BTreeSet<(u64, u64)>,
    phase: usize,
    phase_bounds: Vec<(u64, u64)>,
    arrivals_end: u64,
    arrivals: SmallRng,
    failures: SmallRng,
    retries_rng: SmallRng,
    capacity: f64,
    out: Vec<Dispatch>,
    // Measurements.
    dispatches: Vec<(u64, usize)>,
    watch_outstanding: Vec<(u64, u32)>,
    crashes: u64,
    retries: u64,
    decisions: u64,
    actions: BTreeMap<String, u64>,
    replicas: Vec<(f64, u32)>,
    decision_log: Vec<crate::adapt::Decision>,
    adjustments: Vec<(f64, usize, BTreeMap<String, f64>)>,
    proposal_errors: Vec<String>,
    timeout: Option<Duration>,
}

/// Runs the simulation.
///
/// # Panics
/// If the configuration is inconsistent (no workers, no phases, an invalid [`AdaptConfig`](
/// crate::adapt::AdaptConfig), a speed change naming an unknown worker) or an invariant of
/// the router breaks (a bug).
#[must_use]
pub fn run(cfg: &SimConfig) -> SimResult {
    assert!(
        !cfg.workers.is_empty() && !cfg.phases.is_empty(),
        "a simulation needs workers and phases"
    );
    let mut e = Engine::new(cfg);
    e.run();
    e.finish()
}

impl<'a> Engine<'a> {
    fn new(cfg: &'a SimConfig) -> Self {
        let policy = match cfg.policy {
            SimPolicy::Router(p) => p,
            SimPolicy::Oracle => RouterPolicy::LeastLoaded,
        };
        let kind = KindConfig {
            queue_limit: u64::MAX,
            router: policy,
            ..KindConfig::default()
        };
        let mut router = KindRouter::new(
            &kind,
            &ClassConfig::defaults(),
            cfg.seed,
            crate::router::DEFAULT_DECAY,
        )
        .expect("default classes");
        let interactive = router
            .queues()
            .class_id("interactive")
            .expect("default class");
        let batch = router.queues().class_id("batch").expect("default class");
        let oracle = (cfg.policy == SimPolicy::Oracle).then(|| {
            let speeds = Arc::new(Mutex::new(cfg.workers.iter().map(|w| w.speed).collect()));
            router.set_router(
                RouterPolicy::LeastLoaded,
                Box::new(Oracle::new(Arc::clone(&speeds))),
            );
            speeds
        });
        let controller = cfg.adapt.clone().map(|c| {
            let mut c =
                Controller::new(c, cfg.seed ^ 0x5eed_ada9).expect("a valid adapt configuration");
            if let Some(p) = &cfg.param {
                c.set_params(
                    KIND,
                    BTreeMap::from([(p.name.clone(), p.initial)]),
                    Instant::now(),
                );
            }
            c
        });
        let mut bounds = Vec::new();
        let mut t = 0;
        for p in &cfg.phases {
            bounds.push((t, t + ns(p.duration)));
            t += ns(p.duration);
        }
        let params = cfg
            .param
            .as_ref()
            .map(|p| BTreeMap::from([(p.name.clone(), p.initial)]))
            .unwrap_or_default();
        let workers = cfg
            .workers
            .iter()
            .map(|s| Worker {
                speed: s.speed,
                slots: s.slots.max(1),
                slow: 1.0,
                stall: None,
                present: false,
                starting: false,
                draining: false,
                gen: 0,
                waiting: VecDeque::new(),
                running: Vec::new(),
                outstanding: VecDeque::new(),
                params: params.clone(),
            })
            .collect();
        Self {
            cfg,
            t0: Instant::now(),
            now: 0,
            events: BinaryHeap::new(),
            seq: 0,
            router,
            classes: [interactive, batch],
            controller,
            oracle,
            workers,
            tasks: Vec::new(),
            open: 0,
            queued: BTreeSet::new(),
            phase: 0,
            phase_bounds: bounds,
            arrivals_end: t,
            arrivals: SmallRng::seed_from_u64(cfg.seed),
            failures: SmallRng::seed_from_u64(cfg.seed ^ 0xfa11),
            retries_rng: SmallRng::seed_from_u64(cfg.seed ^ 0x2e72),
            capacity: cfg.capacity(),
            out: Vec::new(),
            dispatches: Vec::new(),
            watch_outstanding: vec![(0, 0)],
            crashes: 0,
            retries: 0,
            decisions: 0,
            actions: BTreeMap::new(),
            replicas: Vec::new(),
            decision_log: Vec::new(),
            adjustments: Vec::new(),
            proposal_errors: Vec::new(),
            timeout: None,
        }
    }

    fn instant(&self) -> Instant {
        self.t0 + Duration::from_nanos(self.now)
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.events.push(Reverse((at, self.seq, ev)));
        self.seq += 1;
    }

    fn class_id(&self, class: Class) -> ClassId {
        match class {
            Class::Interactive => self.classes[0],
            Class::Batch => self.classes[1],
        }
    }

    fn unfinished(&self) -> bool {
        self.now < self.arrivals_end || self.open > 0
    }

    fn run(&mut self) {
        for unit in 0..self.workers.len() {
            self.workers[unit].present = true;
            self.add_worker(unit);
        }
        for i in 0..self.cfg.phases.len() {
            self.push(self.phase_bounds[i].0, Ev::Phase(i));
        }
        let first = self.next_arrival(0);
        if let Some(t) = first {
            self.push(t, Ev::Arrival);
        }
        let poison = self.cfg.workload.poison;
        for k in 0..poison {
            let at = (u128::from(self.arrivals_end) * u128::from(2 * k + 1)
                / u128::from(2 * poison)) as u64;
            self.push(at, Ev::Poison(k));
        }
        if self.controller.is_some() {
            self.push(0, Ev::Tick);
            for (i, (at, _)) in self.cfg.proposals.iter().enumerate() {
                self.push(ns(*at), Ev::Propose(i));
            }
        }
        let limit = self.arrivals_end + ns(self.cfg.drain_limit);
        while let Some(Reverse((t, _, ev))) = self.events.pop() {
            if t > limit {
                break;
            }
            self.now = t;
            self.handle(ev);
            self.dispatch();
            if !self.unfinished() {
                break;
            }
        }
    }

    /// The next arrival after `from` (Poisson with the rate of the phase it falls in; the
    /// memoryless draw restarts at each phase boundary).
    fn next_arrival(&mut self, from: u64) -> Option<u64> {
        let mut t = from;
        loop {
            let i = self
                .phase_bounds
                .iter()
                .position(|&(s, e)| t >= s && t < e)?;
            let (_, end) = self.phase_bounds[i];
            let rate = self.cfg.phases[i].load * self.capacity;
            if rate <= 0.0 {
                t = end;
                continue;
            }
            let next = t + from_secs(exp(&mut self.arrivals, 1.0 / rate));
            if next < end {
                return Some(next);
            }
            t = end;
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Phase(i) => self.start_phase(i),
            Ev::Arrival => {
                self.arrive(false);
                if let Some(t) = self.next_arrival(self.now) {
                    self.push(t, Ev::Arrival);
                }
            }
            Ev::Poison(_) => self.arrive(true),
            Ev::Deliver { unit, gen, task } => {
                let w = &mut self.workers[unit];
                if w.gen == gen && w.present {
                    w.waiting.push_back(task);
                    self.start_tasks(unit);
                }
            }
            Ev::Finish { unit, gen, task } => self.finish_task(unit, gen, task),
            Ev::Seen {
                unit,
                gen,
                task,
                ok,
            } => self.seen(unit, gen, task, ok),
            Ev::Crash { unit, gen } => self.crash(unit, gen),
            Ev::Restart { unit } => {
                self.workers[unit].present = true;
                self.add_worker(unit);
            }
            Ev::Retry { task } => {
                let class = self.class_id(self.tasks[task as usize].class);
                self.tasks[task as usize].queued_at = self.now;
                self.queued.insert((self.now, task));
                self.router.requeue_back(task, class);
            }
            Ev::Tick => {
                self.tick();
                if self.unfinished() {
                    let interval = self
                        .controller
                        .as_ref()
                        .map_or(Duration::from_millis(100), |c| c.config().interval);
                    self.push(self.now + ns(interval), Ev::Tick);
                }
            }
            Ev::Propose(i) => {
                let now = self.instant();
                let params = self.cfg.proposals[i].1.clone();
                let c = self
                    .controller
                    .as_mut()
                    .expect("proposals need a controller");
                match c.propose_params(KIND, params, now) {
                    Ok((_, actions)) => {
                        for a in actions {
                            self.carry_out(a);
                        }
                    }
                    Err(e) => self.proposal_errors.push(e.to_string()),
                }
            }
            Ev::Started { unit } => {
                let w = &mut self.workers[unit];
                w.starting = false;
                w.present = true;
                self.add_worker(unit);
            }
        }
    }

    fn start_phase(&mut self, i: usize) {
        self.phase = i;
        for &(unit, change) in &self.cfg.phases[i].changes {
            let w = &mut self.workers[unit];
            match change {
                SpeedChange::Slow(f) => {
                    w.slow = f;
                    w.stall = None;
                }
                SpeedChange::Stall(d) => w.stall = Some(d.as_secs_f64()),
                SpeedChange::Restore => {
                    w.slow = 1.0;
                    w.stall = None;
                }
            }
        }
        self.update_oracle();
    }

    /// The oracle's view: true factors, and windows equal to slots (0 when stalled).
    fn update_oracle(&mut self) {
        let Some(speeds) = self.oracle.clone() else {
            return;
        };
        let mean = self.cfg.workload.mean_size();
        let factors: Vec<f64> = (0..self.workers.len())
            .map(|u| self.factor(u, mean))
            .collect();
        let best = factors.iter().copied().fold(f64::INFINITY, f64::min);
        for (unit, f) in factors.iter().enumerate() {
            let w = &self.workers[unit];
            if w.present && !w.draining {
                let window = if *f > 20.0 * best { 0 } else { w.slots };
                let _ = self.router.set_window(unit, window);
            }
        }
        *speeds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = factors;
    }

    /// The expected service-time factor of `unit` for a task of mean size `mean`.
    fn factor(&self, unit: usize, mean: f64) -> f64 {
        let w = &self.workers[unit];
        w.stall
            .map_or_else(|| w.speed * w.slow * self.penalty(unit), |s| s / mean)
    }

    fn penalty(&self, unit: usize) -> f64 {
        self.cfg.param.as_ref().map_or(1.0, |p| {
            let v = self.workers[unit]
                .params
                .get(&p.name)
                .copied()
                .unwrap_or(p.initial);
            let d = (v - p.optimum) / p.optimum;
            1.0 + p.penalty * d * d
        })
    }

    fn arrive(&mut self, poison: bool) {
        let wl = &self.cfg.workload;
        let interactive = !poison && self.arrivals.random::<f64>() < wl.interactive_share;
        let size = if interactive {
            exp(&mut self.arrivals, wl.interactive_mean.as_secs_f64())
        } else {
            let u: f64 = 1.0 - self.arrivals.random::<f64>();
            (wl.batch_min.as_secs_f64() * u.powf(-1.0 / wl.batch_alpha))
                .min(wl.batch_cap.as_secs_f64())
        };
        let class = if interactive {
            Class::Interactive
        } else {
            Class::Batch
        };
        let id = self.tasks.len() as u64;
        self.tasks.push(Task {
            class,
            size,
            arrival: self.now,
            phase: self.phase,
            poison,
            attempts: 0,
            deaths: 0,
            queued_at: self.now,
            dispatched_at: 0,
            unit: None,
            ahead: 0,
            done: false,
            ok: false,
            dead: false,
            finished_at: None,
        });
        self.queued.insert((self.now, id));
        self.open += 1;
        self.router
            .submit(id, self.class_id(class))
            .expect("the queue has no limit");
    }

    fn add_worker(&mut self, unit: usize) {
        let now = self.instant();
        let mut window = self.cfg.window;
        if let Some(c) = &mut self.controller {
            c.observe_worker_added(KIND, unit, GROUP, now);
            window = c.window_for(KIND, unit).unwrap_or(window);
        }
        if self.oracle.is_some() {
            window = self.workers[unit].slots;
        }
        self.router
            .worker_added(unit, window)
            .expect("unit not serving yet");
        self.update_oracle();
        self.record_replicas();
    }

    fn remove_worker(&mut self, unit: usize) -> Vec<u64> {
        let now = self.instant();
        let slot = self.router.worker_removed(unit).expect("unit serving");
        let w = &mut self.workers[unit];
        assert_eq!(
            slot.in_flight as usize,
            w.outstanding.len(),
            "router and simulator agree on tasks in flight"
        );
        if let Some(c) = &mut self.controller {
            c.observe_worker_removed(KIND, unit, now);
        }
        w.present = false;
        w.gen += 1;
        w.waiting.clear();
        w.running.clear();
        let lost: Vec<u64> = w.outstanding.drain(..).collect();
        self.record_outstanding(unit);
        self.record_replicas();
        lost
    }

    fn record_replicas(&mut self) {
        let n = self
            .workers
            .iter()
            .filter(|w| w.present && !w.draining)
            .count();
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        if self.replicas.last().is_none_or(|r| r.1 != n) {
            self.replicas.push((secs(self.now), n));
        }
    }

    fn record_outstanding(&mut self, unit: usize) {
        if self.cfg.watch.as_ref().is_some_and(|w| w.0 == unit) {
            let n = u32::try_from(self.workers[unit].outstanding.len()).unwrap_or(u32::MAX);
            self.watch_outstanding.push((self.now, n));
        }
    }

    fn start_tasks(&mut self, unit: usize) {
        let mean = self.cfg.workload.mean_size();
        while self.workers[unit].running.len() < self.workers[unit].slots as usize {
            let Some(task) = self.workers[unit].waiting.pop_front() else {
                break;
            };
            let (gen, stall) = (self.workers[unit].gen, self.workers[unit].stall);
            self.workers[unit].running.push(task);
            let t = &self.tasks[task as usize];
            if t.poison {
                self.push(self.now + POISON_KILL_NS, Ev::Crash { unit, gen });
                continue;
            }
            let service = match stall {
                Some(s) => s,
                None => t.size * self.factor(unit, mean),
            };
            self.push(
                self.now + from_secs(service),
                Ev::Finish { unit, gen, task },
            );
        }
    }

    fn finish_task(&mut self, unit: usize, gen: u64, task: u64) {
        let w = &mut self.workers[unit];
        if w.gen != gen {
            return;
        }
        w.running.retain(|&t| t != task);
        let ok = self.failures.random::<f64>() >= self.cfg.workload.failure;
        self.push(
            self.now + ns(self.cfg.dispatch_delay),
            Ev::Seen {
                unit,
                gen,
                task,
                ok,
            },
        );
        self.start_tasks(unit);
    }

    fn seen(&mut self, unit: usize, gen: u64, task: u64, ok: bool) {
        if self.workers[unit].gen != gen {
            return; // the worker died: the task was requeued
        }
        let now = self.instant();
        let w = &mut self.workers[unit];
        let pos = w
            .outstanding
            .iter()
            .position(|&t| t == task)
            .expect("an outstanding task");
        w.outstanding.remove(pos);
        self.record_outstanding(unit);
        let rtt = Duration::from_nanos(self.now - self.tasks[task as usize].dispatched_at);
        self.router
            .completed(unit, rtt, ok, now)
            .expect("in flight");
        if let Some(c) = &mut self.controller {
            c.observe_completion(KIND, unit, rtt, ok, now);
        }
        let t = &mut self.tasks[task as usize];
        if ok {
            t.done = true;
            self.open -= 1;
            t.ok = true;
            t.finished_at = Some(self.now);
        } else if t.attempts >= self.cfg.max_attempts {
            t.done = true;
            self.open -= 1;
            t.dead = true;
            t.finished_at = Some(self.now);
        } else {
            self.retries += 1;
            let cap =
                self.cfg.retry_base.as_secs_f64() * f64::from(1u32 << (t.attempts - 1).min(10));
            let delay = self.retries_rng.random::<f64>() * cap;
            self.push(self.now + from_secs(delay), Ev::Retry { task });
        }
        let w = &self.workers[unit];
        if w.draining && w.outstanding.is_empty() {
            let _ = self.remove_worker(unit);
        }
    }

    fn crash(&mut self, unit: usize, gen: u64) {
        let w = &self.workers[unit];
        if w.gen != gen || !w.present {
            return;
        }
        self.crashes += 1;
        for &t in &w.running.clone() {
            self.tasks[t as usize].deaths += 1;
        }
        let lost = self.remove_worker(unit);
        let mut requeue = Vec::new();
        for id in lost {
            let t = &mut self.tasks[id as usize];
            if t.deaths >= self.cfg.poison_deaths {
                t.done = true;
                self.open -= 1;
                t.dead = true;
                t.finished_at = Some(self.now);
            } else {
                t.queued_at = self.now;
                requeue.push((id, self.class_id(self.tasks[id as usize].class)));
                self.queued.insert((self.now, id));
            }
        }
        self.router.requeue_all(&requeue);
        self.push(self.now + ns(self.cfg.restart_delay), Ev::Restart { unit });
    }

    fn dispatch(&mut self) {
        let now = self.instant();
        self.out.clear();
        let mut out = std::mem::take(&mut self.out);
        self.router.dispatch_batch(now, usize::MAX, &mut out);
        for d in &out {
            let t = &mut self.tasks[d.task as usize];
            self.queued.remove(&(t.queued_at, d.task));
            t.dispatched_at = self.now;
            t.attempts += 1;
            t.unit = Some(d.unit);
            let w = &mut self.workers[d.unit];
            t.ahead = u32::try_from(w.outstanding.len()).unwrap_or(u32::MAX);
            assert!(
                w.present && !w.draining,
                "dispatched to a worker that is not serving"
            );
            w.outstanding.push_back(d.task);
            let gen = w.gen;
            self.record_outstanding(d.unit);
            self.dispatches.push((self.now, d.unit));
            if let Some(c) = &mut self.controller {
                c.observe_dispatch(KIND, d.unit, now);
            }
            self.push(
                self.now + ns(self.cfg.dispatch_delay),
                Ev::Deliver {
                    unit: d.unit,
                    gen,
                    task: d.task,
                },
            );
        }
        self.out = out;
        if let Some(c) = &mut self.controller {
            let wait = self
                .queued
                .first()
                .map_or(Duration::ZERO, |&(t, _)| Duration::from_nanos(self.now - t));
            c.observe_queue(KIND, self.router.queued(), wait, now);
        }
    }

    fn tick(&mut self) {
        let now = self.instant();
        let Some(c) = &mut self.controller else {
            return;
        };
        let actions = c.tick(now);
        for a in actions {
            let name = match &a {
                AdaptAction::SetWindow { .. } => "set_window",
                AdaptAction::SetBatch { .. } => "set_batch",
                AdaptAction::SetCost { .. } => "set_cost",
                AdaptAction::SetTimeout { .. } => "set_timeout",
                AdaptAction::Adjust { .. } => "adjust",
                AdaptAction::ScaleTo { .. } => "scale_to",
                AdaptAction::Drain { .. } => "drain",
                AdaptAction::Event(_) => "event",
            };
            *self.actions.entry(name.to_owned()).or_default() += 1;
            self.carry_out(a);
        }
    }

    fn carry_out(&mut self, a: AdaptAction) {
        match a {
            AdaptAction::SetWindow { unit, window, .. } => {
                if self.oracle.is_none() {
                    let _ = self.router.set_window(unit, window);
                }
            }
            AdaptAction::SetBatch { batch, .. } => self.router.set_batch(batch),
            AdaptAction::SetCost { unit, cost, .. } => {
                if self.oracle.is_none() {
                    let _ = self.router.set_cost(unit, cost);
                }
            }
            AdaptAction::SetTimeout { timeout, .. } => self.timeout = Some(timeout),
            AdaptAction::Adjust { unit, extra } => {
                self.adjustments.push((secs(self.now), unit, extra.clone()));
                if let Some(w) = self.workers.get_mut(unit) {
                    w.params.extend(extra);
                }
                self.update_oracle();
            }
            AdaptAction::ScaleTo { replicas, .. } => {
                let serving = self
                    .workers
                    .iter()
                    .filter(|w| (w.present || w.starting) && !w.draining)
                    .count();
                let Some(scale) = &self.cfg.scale else {
                    return;
                };
                let template = self.cfg.workers[0].clone();
                for _ in serving..replicas as usize {
                    let unit = self.workers.len();
                    let params = self.workers[0].params.clone();
                    self.workers.push(Worker {
                        speed: template.speed,
                        slots: template.slots.max(1),
                        slow: 1.0,
                        stall: None,
                        present: false,
                        starting: true,
                        draining: false,
                        gen: 0,
                        waiting: VecDeque::new(),
                        running: Vec::new(),
                        outstanding: VecDeque::new(),
                        params,
                    });
                    self.push(self.now + ns(scale.start_delay), Ev::Started { unit });
                }
            }
            AdaptAction::Drain { unit, .. } => {
                if self.workers.get(unit).is_some_and(|w| w.present) {
                    let _ = self.router.set_draining(unit, true);
                    self.workers[unit].draining = true;
                    self.record_replicas();
                    if self.workers[unit].outstanding.is_empty() {
                        let _ = self.remove_worker(unit);
                    }
                }
            }
            AdaptAction::Event(d) => {
                self.decisions += 1;
                if self.cfg.keep_decisions {
                    self.decision_log.push(d);
                }
            }
        }
    }
}
