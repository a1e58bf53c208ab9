//! The adaptive controller ("resonance"): per-(kind, worker) profiles and the controllers that
//! act on them — concurrency windows (Gradient2 with an AIMD fallback), dispatch batch sizes,
//! run timeouts, worker-applied parameters through canaries with rollback, and autoscaling of
//! worker groups — plus a deterministic simulator ([`sim`]) that drives it against the real
//! [`KindRouter`](crate::router::KindRouter).
//!
//! Pure like the other cores: no clock (every call takes `now`), no I/O, randomness only from
//! the seed given to [`Controller::new`]; the same inputs give the same decisions.
//!
//! # What it decides
//! | output | rule | input |
//! |---|---|---|
//! | [`AdaptAction::SetWindow`] per worker | Gradient2: `gradient = clamp(tolerance·long/short RTT, 0.5, 1)`, `limit = limit·gradient + allowance·√limit`, smoothed, bounded; AIMD (× `backoff`, then +1) on error bursts; `min` at once on a stall; reduced during warm-up ([`gradient`]) | completions (RTT from dispatch), dispatches, queue depth |
//! | [`AdaptAction::SetCost`] per worker (a measurement, not a decision: no event) | the worker's un-queued RTT over the long window — or the age of a task it holds past the stall threshold — over the kind's median; sent in `auto` mode when it moves by > 10 %, forgotten in other modes and during a canary. The router then keeps only candidates whose `(in_flight + 1) × cost` is within 1.5× of the best (`KindRouter::set_cost`): the fastest idle worker first | completions, dispatches |
//! | [`AdaptAction::SetBatch`] per kind | AIMD: +1 while the kind's short-window p99 is within `batch.latency_target` and tasks waited, × `decrease` when above. A slow worker's chunk is bounded by its (smaller) window, since a worker never gets more than its free credits in one dispatch pass | the kind's profile |
//! | [`AdaptAction::SetTimeout`] per kind | `clamp(factor · p99 over the long window, min, max)`, changed beyond a hysteresis | the kind's profile |
//! | [`AdaptAction::Adjust`] per worker | canary of a parameter set on ~20 % of the workers (speed-stratified) against a same-size control; Mann–Whitney U + p99 margin + error rate; adopt (rolled out in steps of at most `max_change_fraction`) or roll back (see `canary.rs`) | completions of canary and control |
//! | [`AdaptAction::ScaleTo`] / [`AdaptAction::Drain`] per group | up on sustained backlog with high utilisation; down after an idle cooldown, draining the slowest replica first (`scale.rs`) | queue wait/depth, busy share, CPU |
//!
//! Profiles ([`Profile`]) keep latencies in rings of per-slot HdrHistograms — a short window
//! (`short_slots` × `interval`) for control and a long one (`long_slots` × `long_slot`) for
//! baselines and timeouts — merged on demand, so a percentile is always computed from the
//! samples of its whole window and never averaged.
//!
//! # Modes and decisions
//! Each kind (and each autoscaled group) has a [`Mode`]: `off` (profiles only), `advise` (every
//! decision is emitted as an [`AdaptAction::Event`] in state [`DecisionState::Proposed`] and
//! changes nothing until [`Controller::apply`] is called with its id; a newer proposal for the
//! same setting supersedes it) or `auto` (decisions are carried out at once). Every
//! [`Decision`] carries its [`Evidence`] (the figures before and after) and is kept for
//! [`Controller::decisions`] / [`Controller::describe`] (`ampctl tune`); it serialises with
//! serde.
//!
//! # Driving it (the event loop's contract)
//! 1. [`Controller::new`] with the [`AdaptConfig`] and a seed; [`Controller::set_kind`] with
//!    each kind's configured `batch` and `timeout`.
//! 2. A unit serving a kind becomes ready: [`Controller::observe_worker_added`], then
//!    `KindRouter::worker_added(unit, controller.window_for(kind, unit).unwrap_or(concurrency))`
//!    so it starts with its warm-up window. Lost or stopped: [`Controller::observe_worker_removed`].
//! 3. For every dispatch, completion record and abandoned task the router sees:
//!    [`Controller::observe_dispatch`], [`Controller::observe_completion`] (latency from the
//!    dispatch; `ok = false` for error results and run timeouts),
//!    [`Controller::observe_abandoned`].
//! 4. After handling a wakeup's events, per kind touched: [`Controller::observe_queue`] with
//!    the queued count and the age of the oldest queued task. Resource samples from `/proc`:
//!    [`Controller::observe_resources`].
//! 5. Poll with a timeout no later than [`Controller::next_tick`]; call [`Controller::tick`]
//!    and carry out its actions in order: `SetWindow` → `KindRouter::set_window`; `SetCost` →
//!    `KindRouter::set_cost`; `SetBatch` →
//!    `KindRouter::set_batch`; `SetTimeout` → the kind's run timeout for new dispatches;
//!    `Adjust` → `ToWorker::Adjust { params: action.worker_params(&current) }`; `Drain` →
//!    `KindRouter::set_draining` on each of the unit's kinds and control `Drain`, then stop it
//!    once idle; `ScaleTo` → the lifecycle's replica count; `Event` → log it.
//! 6. `ampctl tune` reads [`Controller::describe`]; `tune apply ID` calls
//!    [`Controller::apply`] and carries out the returned actions; `tune mode KIND MODE` calls
//!    [`Controller::set_mode`]; `tune propose KIND k=v…` calls [`Controller::propose_params`].
//!
//! ```
//! use amp_supervisor::adapt::{AdaptAction, AdaptConfig, Controller, Mode};
//! use std::time::{Duration, Instant};
//!
//! let mut config = AdaptConfig::default();
//! config.default_mode = Mode::Auto;
//! config.window.initial = 8.0;
//! let mut c = Controller::new(config, 7)?;
//! let t0 = Instant::now();
//! c.observe_worker_added("resize", 0, "resizer", t0);
//! assert_eq!(c.window_for("resize", 0), Some(4)); // warming up: half the initial limit
//! // For a second the worker fails every task: the AIMD fallback cuts its limit by 10 % per
//! // update (one per 100 ms interval).
//! let mut t = t0;
//! let mut actions = Vec::new();
//! for _ in 0..200 {
//!     c.observe_dispatch("resize", 0, t);
//!     t += Duration::from_millis(5);
//!     c.observe_completion("resize", 0, Duration::from_millis(5), false, t);
//!     actions.extend(c.tick(t));
//! }
//! assert!(c.limit("resize", 0).unwrap() < 8.0 * 0.9_f64.powi(5));
//! assert!(actions.iter().any(|a| matches!(a, AdaptAction::SetWindow { unit: 0, .. })));
//! // Every change is a decision with its evidence, serialisable for `ampctl tune`.
//! let d = c.decisions().find(|d| d.evidence.reason.contains("AIMD")).unwrap();
//! assert!(serde_json::to_string(d)?.contains("error_rate"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod canary;
mod config;
mod controller;
mod decision;
pub mod gradient;
mod profile;
mod scale;
pub mod sim;
mod stats;
mod tick;

#[cfg(test)]
mod tests;

pub use config::{
    AdaptConfig, AdaptConfigError, BatchConfig, CanaryConfig, GroupScale, Mode, ParamSpec,
    RttStatistic, ScaleConfig, TimeoutConfig, WindowConfig,
};
pub use controller::{ApplyError, Controller, ProposeError};
pub use decision::{AdaptAction, Change, Decision, DecisionId, DecisionState, Evidence, Target};
pub use profile::{Profile, ProfileSummary, ResourceSample, Resources, WindowedHistogram};
pub use stats::{mann_whitney, normal_cdf, quantile, MannWhitney};
