//! [`Controller`]: the state per kind, worker and group, the `observe_*` inputs, decisions and
//! [`Controller::apply`]. The periodic work is in `tick.rs`, canaries in `canary.rs`,
//! autoscaling in `scale.rs`.

use super::canary::{Canary, Tuner};
use super::config::{AdaptConfig, AdaptConfigError, Mode};
use super::decision::{AdaptAction, Change, Decision, DecisionId, DecisionState, Evidence, Target};
use super::gradient::{clamp_window, Limiter};
use super::profile::{Profile, ProfileSummary, ResourceSample, Resources};
use super::scale::GroupState;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// The setting a decision is about: a newer proposal for the same one supersedes an older.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum SettingKey {
    Window(String, usize),
    Batch(String),
    Timeout(String),
    Params(String),
    Replicas(String),
}

/// What applying a decision does besides its actions.
#[derive(Debug)]
pub(super) enum Effect {
    None,
    StartCanary(String, Box<Canary>),
    Adopt(String),
    Rollback(String),
}

#[derive(Debug)]
pub(super) struct Pending {
    pub actions: Vec<AdaptAction>,
    pub effect: Effect,
    pub key: SettingKey,
}

/// One worker serving one kind.
#[derive(Debug)]
pub(super) struct WorkerState {
    pub group: String,
    pub profile: Profile,
    pub limiter: Limiter,
    /// The window in force (as far as the controller knows).
    pub window: u32,
    pub in_flight: u32,
    /// For each task in flight, in dispatch order, how many were in flight before it.
    pub ahead: VecDeque<u32>,
    pub in_flight_max: u32,
    /// Tasks waited for this worker's credits since the last tick.
    pub binding: bool,
    /// Last completion, or the dispatch that made it busy.
    pub last_progress: Instant,
    pub added: Instant,
    pub warming: bool,
    pub draining: bool,
    pub busy_since: Option<Instant>,
    pub busy: Duration,
    /// Utilisation (busy share) over the last interval.
    pub utilisation: f64,
    /// The service-time factor last sent to the router (`AdaptAction::SetCost`).
    pub cost: Option<f64>,
}

/// The kind's queue as last reported.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct QueueState {
    pub depth: usize,
    pub wait: Duration,
    /// Deepest / longest since the last tick.
    pub max_depth: usize,
    pub max_wait: Duration,
    /// Depth at the last tick and consecutive ticks it grew.
    pub last_depth: usize,
    pub growth: u32,
    /// Ticks with tasks queued since the last batch update.
    pub backlog_ticks: u32,
}

#[derive(Debug)]
pub(super) struct KindState {
    pub mode: Mode,
    pub profile: Profile,
    pub workers: BTreeMap<usize, WorkerState>,
    pub batch: u32,
    pub batch_next: Option<Instant>,
    pub timeout: Option<Duration>,
    pub timeout_next: Option<Instant>,
    pub queue: QueueState,
    /// Worker parameters in force on the kind's workers (adopted ones).
    pub params: BTreeMap<String, f64>,
    pub canary: Option<Canary>,
    pub tuner: Option<Tuner>,
    pub canary_ended: Option<Instant>,
}

#[derive(Debug, Default)]
pub(super) struct UnitState {
    pub resources: Resources,
    pub params: BTreeMap<String, f64>,
}

/// The adaptive controller: pure (time comes in as `now`, randomness from the seed), driven by
/// `observe_*` calls and [`tick`](Self::tick). See the [module docs](super).
#[derive(Debug)]
pub struct Controller {
    pub(super) config: AdaptConfig,
    pub(super) rng: SmallRng,
    pub(super) epoch: Option<Instant>,
    pub(super) next_tick: Option<Instant>,
    pub(super) next_id: DecisionId,
    pub(super) kinds: BTreeMap<String, KindState>,
    pub(super) units: BTreeMap<usize, UnitState>,
    pub(super) groups: BTreeMap<String, GroupState>,
    pub(super) log: VecDeque<Decision>,
    pub(super) pending: BTreeMap<DecisionId, Pending>,
    pub(super) proposals: BTreeMap<SettingKey, DecisionId>,
}

/// Why [`Controller::apply`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// No decision has this id, or it is no longer kept.
    #[error("decision {0} is unknown (see `ampctl tune` for the current ones)")]
    Unknown(DecisionId),
    /// The decision is not waiting to be applied.
    #[error("decision {id} is {state:?}, not proposed: only proposed decisions can be applied")]
    NotProposed {
        /// The decision.
        id: DecisionId,
        /// Its state.
        state: DecisionState,
    },
}

/// Why [`Controller::propose_params`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// The kind has no workers the controller knows of.
    #[error("kind `{0}` has no workers yet; propose once its workers are ready")]
    UnknownKind(String),
    /// The kind's mode is off.
    #[error("kind `{0}` is in mode off; set it to advise or auto first")]
    Off(String),
    /// A canary is already running or rolling out for the kind.
    #[error("kind `{0}` already has a canary in progress (decision {1}); wait for its verdict")]
    Busy(String, DecisionId),
    /// Too few workers for a canary and a control group.
    #[error("kind `{kind}` has {workers} worker(s) ready; a canary needs at least 2")]
    TooFewWorkers {
        /// The kind.
        kind: String,
        /// Its workers not draining or warming up.
        workers: usize,
    },
    /// The parameters are already in force.
    #[error("kind `{0}`: these parameters are already in force")]
    NoChange(String),
    /// A parameter whose value in force is unknown, so it could not be rolled back.
    #[error(
        "kind `{kind}`: the value in force of parameter `{param}` is unknown; \
         tell the controller with set_params (or list it in the adapt params) first"
    )]
    UnknownBaseline {
        /// The kind.
        kind: String,
        /// The parameter.
        param: String,
    },
}

impl Controller {
    /// A controller with `config`; `seed` drives its random choices (canary subsets).
    ///
    /// # Errors
    /// [`AdaptConfigError`] when a setting cannot work.
    pub fn new(config: AdaptConfig, seed: u64) -> Result<Self, AdaptConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            rng: SmallRng::seed_from_u64(seed),
            epoch: None,
            next_tick: None,
            next_id: 1,
            kinds: BTreeMap::new(),
            units: BTreeMap::new(),
            groups: BTreeMap::new(),
            log: VecDeque::new(),
            pending: BTreeMap::new(),
            proposals: BTreeMap::new(),
        })
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &AdaptConfig {
        &self.config
    }

    /// Replaces the configuration (a reloaded config file). A kind whose mode in the file
    /// changed takes the new mode (as [`set_mode`](Self::set_mode)); a mode set at runtime for
    /// a kind whose mode in the file did not change is kept. Groups, bounds and thresholds
    /// apply from the next tick; window lengths apply to profiles created from now on.
    ///
    /// # Errors
    /// [`AdaptConfigError`] when a setting cannot work; nothing is changed then.
    pub fn reconfigure(
        &mut self,
        config: AdaptConfig,
        now: Instant,
    ) -> Result<Vec<AdaptAction>, AdaptConfigError> {
        config.validate()?;
        let changed: Vec<(String, Mode)> = self
            .kinds
            .keys()
            .filter(|k| self.config.mode(k) != config.mode(k))
            .map(|k| (k.clone(), config.mode(k)))
            .collect();
        self.config = config;
        let mut out = Vec::new();
        for (kind, mode) in changed {
            out.extend(self.set_mode(&kind, mode, now));
        }
        Ok(out)
    }

    pub(super) fn epoch(&mut self, now: Instant) -> Instant {
        *self.epoch.get_or_insert(now)
    }

    pub(super) fn new_profile(&self, now: Instant) -> Profile {
        let c = &self.config;
        Profile::new(c.interval, c.short_slots, c.long_slot, c.long_slots, now)
    }

    fn kind_mut(&mut self, kind: &str, now: Instant) -> &mut KindState {
        if !self.kinds.contains_key(kind) {
            let state = KindState {
                mode: self.config.mode(kind),
                profile: self.new_profile(now),
                workers: BTreeMap::new(),
                batch: crate::config::DEFAULT_BATCH,
                batch_next: None,
                timeout: None,
                timeout_next: None,
                queue: QueueState::default(),
                params: self
                    .config
                    .params
                    .get(kind)
                    .map(|specs| specs.iter().map(|p| (p.name.clone(), p.initial)).collect())
                    .unwrap_or_default(),
                canary: None,
                tuner: self.config.params.get(kind).map(|_| Tuner::default()),
                canary_ended: None,
            };
            self.kinds.insert(kind.to_owned(), state);
        }
        self.kinds.get_mut(kind).expect("inserted above")
    }

    // ---- inputs ----

    /// The settings in force for `kind` (its configured `batch` and `timeout`), so decisions
    /// start from them. Optional: without it the batch is taken as the default and no timeout.
    pub fn set_kind(&mut self, kind: &str, batch: u32, timeout: Option<Duration>, now: Instant) {
        self.epoch(now);
        let k = self.kind_mut(kind, now);
        k.batch = batch.max(1);
        k.timeout = timeout;
    }

    /// The worker parameters in force on `kind`'s workers (`WorkerParams.extra` as
    /// configured), so that a canary can be rolled back to them. Keys named in
    /// [`AdaptConfig::params`] start at their `initial` value without it.
    pub fn set_params(&mut self, kind: &str, params: BTreeMap<String, f64>, now: Instant) {
        self.epoch(now);
        self.kind_mut(kind, now).params.extend(params);
    }

    /// Changes `kind`'s mode. Proposals of a kind leaving advise mode are superseded.
    pub fn set_mode(&mut self, kind: &str, mode: Mode, now: Instant) -> Vec<AdaptAction> {
        self.epoch(now);
        self.kind_mut(kind, now).mode = mode;
        let stale: Vec<DecisionId> = self
            .pending
            .iter()
            .filter(|(_, p)| mode != Mode::Advise && setting_kind(&p.key) == Some(kind))
            .map(|(id, _)| *id)
            .collect();
        stale
            .into_iter()
            .filter_map(|id| self.supersede(id))
            .collect()
    }

    /// The windows of `kind`'s workers are no longer the controller's (the kind left auto mode
    /// and the event loop put the configured ones back): it forgets what it set, so that it sets
    /// every window again if the kind returns to auto mode.
    pub fn release_windows(&mut self, kind: &str) {
        if let Some(k) = self.kinds.get_mut(kind) {
            for w in k.workers.values_mut() {
                w.window = 0;
            }
        }
    }

    /// The mode of `kind`.
    #[must_use]
    pub fn mode(&self, kind: &str) -> Mode {
        self.kinds
            .get(kind)
            .map_or_else(|| self.config.mode(kind), |k| k.mode)
    }

    /// `unit` (ready, of worker group `group`) serves `kind` from now on. It warms up: see
    /// [`window_for`](Self::window_for).
    pub fn observe_worker_added(&mut self, kind: &str, unit: usize, group: &str, now: Instant) {
        self.epoch(now);
        let profile = self.new_profile(now);
        let initial = self.config.window.initial;
        self.groups.entry(group.to_owned()).or_default();
        self.units.entry(unit).or_default();
        let k = self.kind_mut(kind, now);
        let w = WorkerState {
            group: group.to_owned(),
            profile,
            limiter: Limiter::new(initial),
            window: 0,
            in_flight: 0,
            ahead: VecDeque::new(),
            in_flight_max: 0,
            binding: false,
            last_progress: now,
            added: now,
            warming: true,
            draining: false,
            busy_since: None,
            busy: Duration::ZERO,
            utilisation: 0.0,
            cost: None,
        };
        k.workers.insert(unit, w);
        let window = self.target_window(kind, unit, now).unwrap_or(1);
        if let Some(w) = self.worker_mut(kind, unit) {
            w.window = window;
        }
    }

    /// `unit` stopped serving `kind` (exited, stopped, drained).
    pub fn observe_worker_removed(&mut self, kind: &str, unit: usize, now: Instant) {
        self.epoch(now);
        if let Some(k) = self.kinds.get_mut(kind) {
            k.workers.remove(&unit);
            if let Some(c) = &mut k.canary {
                c.forget(unit);
            }
        }
        if !self.kinds.values().any(|k| k.workers.contains_key(&unit)) {
            self.units.remove(&unit);
        }
    }

    /// A task of `kind` was dispatched to `unit`.
    pub fn observe_dispatch(&mut self, kind: &str, unit: usize, now: Instant) {
        self.observe_dispatches(kind, unit, 1, now);
    }

    /// `count` tasks of `kind` were dispatched to `unit`, one after the other, at `now`: the
    /// same as `count` calls of [`Self::observe_dispatch`], with one lookup (the event loop
    /// reports a dispatch batch at once).
    pub fn observe_dispatches(&mut self, kind: &str, unit: usize, count: u32, now: Instant) {
        if count == 0 {
            return;
        }
        if let Some(w) = self.worker_mut(kind, unit) {
            for _ in 0..count {
                if w.in_flight == 0 {
                    w.last_progress = now;
                    w.busy_since = Some(now);
                }
                if w.ahead.len() < 1 << 16 {
                    w.ahead.push_back(w.in_flight);
                }
                w.in_flight += 1;
            }
            w.in_flight_max = w.in_flight_max.max(w.in_flight);
        }
    }

    /// A task of `kind` dispatched to `unit` completed `latency` after its dispatch; failed
    /// (an error result or a run timeout) unless `ok`.
    pub fn observe_completion(
        &mut self,
        kind: &str,
        unit: usize,
        latency: Duration,
        ok: bool,
        now: Instant,
    ) {
        self.observe_completions(kind, unit, [(latency, ok)], now);
    }

    /// Tasks of `kind` dispatched to `unit` completed at `now`, in this order, each `(latency,
    /// ok)`: the same as one [`Self::observe_completion`] per sample, with one lookup (the
    /// event loop reports what it read from a completions ring at once).
    pub fn observe_completions<I>(&mut self, kind: &str, unit: usize, samples: I, now: Instant)
    where
        I: IntoIterator<Item = (Duration, bool)>,
        I::IntoIter: Clone,
    {
        let samples = samples.into_iter();
        if samples.clone().next().is_none() {
            // Nothing completed: nothing changes (as with no call of `observe_completion`).
            return;
        }
        self.epoch(now);
        let settle = self.config.canary.settle;
        let Some(k) = self.kinds.get_mut(kind) else {
            return;
        };
        k.profile.record_all(now, samples.clone());
        if let Some(c) = &mut k.canary {
            for (latency, ok) in samples.clone() {
                c.record(unit, latency, ok, now, settle);
            }
        }
        if let Some(w) = k.workers.get_mut(&unit) {
            w.profile.record_all(now, samples.clone());
            for (latency, ok) in samples {
                // Completions are taken in dispatch order (exact for a worker serving one task
                // at a time, an approximation for one serving several).
                let ahead = w.ahead.pop_front().unwrap_or(0);
                w.limiter.sample(latency, ok, ahead);
                w.last_progress = now;
                w.task_left(now);
            }
        }
    }

    /// A task of `kind` dispatched to `unit` will not complete there (undeliverable, given up
    /// on): frees its place without a sample.
    pub fn observe_abandoned(&mut self, kind: &str, unit: usize, now: Instant) {
        if let Some(w) = self.worker_mut(kind, unit) {
            w.ahead.pop_front();
            w.task_left(now);
        }
    }

    /// The kind's queue: `depth` tasks waiting, the oldest for `wait`. Call it whenever
    /// convenient (each wakeup that changed it, or at least before each tick).
    pub fn observe_queue(&mut self, kind: &str, depth: usize, wait: Duration, now: Instant) {
        self.epoch(now);
        let k = self.kind_mut(kind, now);
        k.queue.depth = depth;
        k.queue.wait = wait;
        k.queue.max_depth = k.queue.max_depth.max(depth);
        k.queue.max_wait = k.queue.max_wait.max(wait);
        if depth > 0 {
            for w in k.workers.values_mut() {
                if w.in_flight >= w.window && !w.draining {
                    w.binding = true;
                }
            }
        }
    }

    /// A resource sample of `unit`'s process.
    pub fn observe_resources(&mut self, unit: usize, sample: ResourceSample, now: Instant) {
        self.epoch(now);
        self.units
            .entry(unit)
            .or_default()
            .resources
            .observe(sample, now);
    }

    pub(super) fn worker_mut(&mut self, kind: &str, unit: usize) -> Option<&mut WorkerState> {
        self.kinds.get_mut(kind)?.workers.get_mut(&unit)
    }

    // ---- queries ----

    /// The window `unit` should have for `kind` now, when the controller sets windows for the
    /// kind (mode auto); `None` otherwise. Use it for `KindRouter::worker_added` so a new
    /// worker starts with its warm-up window.
    #[must_use]
    pub fn window_for(&self, kind: &str, unit: usize) -> Option<u32> {
        let k = self.kinds.get(kind)?;
        (k.mode == Mode::Auto).then_some(())?;
        k.workers.get(&unit).map(|w| w.window)
    }

    /// The window the limiter wants for `unit` at `now` (warm-up applied).
    pub(super) fn target_window(&self, kind: &str, unit: usize, now: Instant) -> Option<u32> {
        let cfg = &self.config.window;
        let w = self.kinds.get(kind)?.workers.get(&unit)?;
        let full = w.limiter.window(cfg);
        Some(if w.warming && now < w.added + cfg.warmup {
            clamp_window(w.limiter.limit() * cfg.warmup_fraction, cfg)
        } else {
            full
        })
    }

    /// The profile summary of `unit` for `kind` at `now`.
    #[must_use]
    pub fn profile(&self, kind: &str, unit: usize, now: Instant) -> Option<ProfileSummary> {
        Some(
            self.kinds
                .get(kind)?
                .workers
                .get(&unit)?
                .profile
                .summary(now),
        )
    }

    /// The kind's aggregate profile summary at `now`.
    #[must_use]
    pub fn kind_profile(&self, kind: &str, now: Instant) -> Option<ProfileSummary> {
        Some(self.kinds.get(kind)?.profile.summary(now))
    }

    /// The continuous Gradient2 limit of `unit` for `kind`.
    #[must_use]
    pub fn limit(&self, kind: &str, unit: usize) -> Option<f64> {
        Some(self.kinds.get(kind)?.workers.get(&unit)?.limiter.limit())
    }

    /// The window in force for `unit` (as the controller knows it).
    #[must_use]
    pub fn window(&self, kind: &str, unit: usize) -> Option<u32> {
        Some(self.kinds.get(kind)?.workers.get(&unit)?.window)
    }

    /// The kind's dispatch batch and timeout in force.
    #[must_use]
    pub fn kind_settings(&self, kind: &str) -> Option<(u32, Option<Duration>)> {
        self.kinds.get(kind).map(|k| (k.batch, k.timeout))
    }

    /// Worker parameters in force on `unit` (as sent by the controller).
    #[must_use]
    pub fn params(&self, unit: usize) -> Option<&BTreeMap<String, f64>> {
        self.units.get(&unit).map(|u| &u.params)
    }

    /// The decisions kept (newest last), each in its latest state.
    pub fn decisions(&self) -> std::collections::vec_deque::Iter<'_, Decision> {
        self.log.iter()
    }

    /// One decision.
    #[must_use]
    pub fn decision(&self, id: DecisionId) -> Option<&Decision> {
        self.log.iter().find(|d| d.id == id)
    }

    /// Everything for `ampctl tune`: modes, windows, limits, batches, timeouts, canaries,
    /// groups and the decisions kept.
    #[must_use]
    pub fn describe(&self, now: Instant) -> serde_json::Value {
        let kinds: serde_json::Map<String, serde_json::Value> = self
            .kinds
            .iter()
            .map(|(name, k)| {
                let workers: Vec<_> = k
                    .workers
                    .iter()
                    .map(|(unit, w)| {
                        json!({
                            "unit": unit,
                            "group": w.group,
                            "window": w.window,
                            "limit": w.limiter.limit(),
                            "long_rtt_ms": w.limiter.long_rtt().map(|d| d.as_secs_f64() * 1e3),
                            "last_update": w.limiter.last(),
                            "in_flight": w.in_flight,
                            "warming": w.warming,
                            "draining": w.draining,
                            "utilisation": w.utilisation,
                            "cost": w.cost,
                            "profile": w.profile.summary(now),
                            "resources": self.units.get(unit).map(|u| u.resources),
                        })
                    })
                    .collect();
                let value = json!({
                    "mode": k.mode,
                    "batch": k.batch,
                    "timeout_ms": k.timeout.map(|t| t.as_secs_f64() * 1e3),
                    "queue": { "depth": k.queue.depth, "wait_ms": k.queue.wait.as_secs_f64() * 1e3 },
                    "params": k.params,
                    "canary": k.canary.as_ref().map(Canary::describe),
                    "profile": k.profile.summary(now),
                    "workers": workers,
                });
                (name.clone(), value)
            })
            .collect();
        json!({
            "kinds": kinds,
            "groups": self.groups.iter().map(|(g, s)| (g.clone(), s.describe())).collect::<BTreeMap<_, _>>(),
            "decisions": self.log,
        })
    }

    // ---- decisions ----

    /// Carries out a proposed decision (advise mode): returns its actions for the event loop,
    /// plus the decision's event.
    ///
    /// # Errors
    /// [`ApplyError`] when the decision is unknown or not proposed (applied, superseded …).
    pub fn apply(&mut self, id: DecisionId, now: Instant) -> Result<Vec<AdaptAction>, ApplyError> {
        self.epoch(now);
        let Some(pending) = self.pending.remove(&id) else {
            return Err(match self.decision(id) {
                Some(d) => ApplyError::NotProposed { id, state: d.state },
                None => ApplyError::Unknown(id),
            });
        };
        self.proposals.remove(&pending.key);
        let mut out = Vec::new();
        let state = self.carry_out(id, pending.actions, pending.effect, now, &mut out);
        if let Some(d) = self.set_state(id, state) {
            out.push(AdaptAction::Event(d));
        }
        Ok(out)
    }

    /// Records a decision: in auto mode carries it out (its actions go to `out`), in advise
    /// mode keeps it proposed. Its event goes to `out` either way. Returns its id.
    #[allow(clippy::too_many_arguments, reason = "a decision has this many parts")]
    pub(super) fn decide(
        &mut self,
        now: Instant,
        mode: Mode,
        kind: &str,
        key: SettingKey,
        target: Target,
        change: Change,
        evidence: Evidence,
        actions: Vec<AdaptAction>,
        effect: Effect,
        out: &mut Vec<AdaptAction>,
    ) -> DecisionId {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(old) = self.proposals.remove(&key) {
            if let Some(event) = self.supersede(old) {
                out.push(event);
            }
        }
        let at_s = now.saturating_duration_since(self.epoch(now)).as_secs_f64();
        let mut decision = Decision {
            id,
            at_s,
            kind: kind.to_owned(),
            target,
            change,
            evidence,
            state: DecisionState::Proposed,
        };
        if mode == Mode::Auto {
            decision.state = self.carry_out(id, actions, effect, now, out);
        } else {
            self.pending.insert(
                id,
                Pending {
                    actions,
                    effect,
                    key: key.clone(),
                },
            );
            self.proposals.insert(key, id);
        }
        self.push_log(decision.clone());
        out.push(AdaptAction::Event(decision));
        id
    }

    fn push_log(&mut self, d: Decision) {
        self.log.push_back(d);
        while self.log.len() > self.config.decision_log.max(1) {
            if let Some(old) = self.log.pop_front() {
                self.pending.remove(&old.id);
            }
        }
    }

    /// Sets a logged decision's state; returns the updated decision.
    pub(super) fn set_state(&mut self, id: DecisionId, state: DecisionState) -> Option<Decision> {
        let d = self.log.iter_mut().find(|d| d.id == id)?;
        d.state = state;
        Some(d.clone())
    }

    /// Updates a logged decision's state and evidence; returns it.
    pub(super) fn update_decision(
        &mut self,
        id: DecisionId,
        state: DecisionState,
        f: impl FnOnce(&mut Evidence),
    ) -> Option<Decision> {
        let d = self.log.iter_mut().find(|d| d.id == id)?;
        d.state = state;
        f(&mut d.evidence);
        Some(d.clone())
    }

    fn supersede(&mut self, id: DecisionId) -> Option<AdaptAction> {
        let p = self.pending.remove(&id)?;
        self.proposals.remove(&p.key);
        self.set_state(id, DecisionState::Superseded)
            .map(AdaptAction::Event)
    }

    /// Carries out actions and an effect; returns the state the decision ends in.
    fn carry_out(
        &mut self,
        id: DecisionId,
        actions: Vec<AdaptAction>,
        effect: Effect,
        now: Instant,
        out: &mut Vec<AdaptAction>,
    ) -> DecisionState {
        for a in &actions {
            self.commit(a, now);
        }
        out.extend(actions);
        match effect {
            Effect::None => DecisionState::Applied,
            Effect::StartCanary(kind, mut canary) => {
                canary.start(id, now, &self.config.canary);
                if let Some(k) = self.kinds.get_mut(&kind) {
                    k.canary = Some(*canary);
                }
                DecisionState::Running
            }
            Effect::Adopt(kind) => {
                self.start_rollout(&kind, id, now);
                DecisionState::Applied
            }
            Effect::Rollback(kind) => {
                self.end_canary(&kind, now);
                DecisionState::Applied
            }
        }
    }

    /// Updates the controller's view of what is in force after an action.
    fn commit(&mut self, action: &AdaptAction, now: Instant) {
        match action {
            AdaptAction::SetWindow { kind, unit, window } => {
                if let Some(w) = self.worker_mut(kind, *unit) {
                    w.window = *window;
                }
            }
            AdaptAction::SetBatch { kind, batch } => {
                if let Some(k) = self.kinds.get_mut(kind) {
                    k.batch = *batch;
                }
            }
            AdaptAction::SetCost { kind, unit, cost } => {
                if let Some(w) = self.worker_mut(kind, *unit) {
                    w.cost = *cost;
                }
            }
            AdaptAction::SetTimeout { kind, timeout } => {
                if let Some(k) = self.kinds.get_mut(kind) {
                    k.timeout = Some(*timeout);
                }
            }
            AdaptAction::Adjust { unit, extra } => {
                let u = self.units.entry(*unit).or_default();
                u.params.extend(extra.iter().map(|(k, v)| (k.clone(), *v)));
            }
            AdaptAction::ScaleTo { worker, replicas } => {
                let g = self.groups.entry(worker.clone()).or_default();
                g.desired = Some(*replicas);
                g.last_action = Some(now);
                g.hot_since = None;
                g.idle_since = None;
            }
            AdaptAction::Drain { unit, .. } => {
                for k in self.kinds.values_mut() {
                    if let Some(w) = k.workers.get_mut(unit) {
                        w.draining = true;
                    }
                }
            }
            AdaptAction::Event(_) => {}
        }
    }
}

impl WorkerState {
    /// A task left the worker (completed or abandoned).
    fn task_left(&mut self, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0 {
            if let Some(since) = self.busy_since.take() {
                self.busy += now.saturating_duration_since(since);
            }
        }
    }
}

fn setting_kind(key: &SettingKey) -> Option<&str> {
    match key {
        SettingKey::Window(k, _)
        | SettingKey::Batch(k)
        | SettingKey::Timeout(k)
        | SettingKey::Params(k) => Some(k),
        SettingKey::Replicas(_) => None,
    }
}
