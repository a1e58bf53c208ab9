//! Worker-selection policies: the [`Router`] trait, its [`Candidate`]s and [`make_router`].

mod learned;
mod least_loaded;
mod peak_ewma;
mod round_robin;

pub use learned::{Learned, LearnedConfig};
pub use least_loaded::LeastLoaded;
pub use peak_ewma::{PeakEwma, DEFAULT_RTT};
pub use round_robin::RoundRobin;

use crate::config::RouterPolicy;
use rand::rngs::SmallRng;
use rand::Rng;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Default decay time of [`PeakEwma`] (Finagle's and tower's default).
pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);

/// A worker that may receive a task now, as seen by a [`Router`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Candidate {
    /// The unit (the lifecycle's `UnitId::index()`).
    pub unit: usize,
    /// Tasks dispatched to it and not yet completed.
    pub in_flight: u32,
    /// Its in-flight credit window.
    pub window: u32,
}

impl Candidate {
    /// Whether it has a free credit (`in_flight < window`). A worker without one is simply not
    /// eligible; that is not an error.
    #[must_use]
    pub const fn has_credit(&self) -> bool {
        self.in_flight < self.window
    }
}

/// Keeps only the candidates with a free credit ([`Candidate::has_credit`]), in order.
///
/// ```
/// use amp_supervisor::router::{retain_eligible, Candidate};
/// let mut c = vec![
///     Candidate { unit: 0, in_flight: 4, window: 4 },
///     Candidate { unit: 1, in_flight: 3, window: 4 },
/// ];
/// retain_eligible(&mut c);
/// assert_eq!(c.iter().map(|c| c.unit).collect::<Vec<_>>(), [1]);
/// ```
pub fn retain_eligible(candidates: &mut Vec<Candidate>) {
    candidates.retain(Candidate::has_credit);
}

/// A worker-selection policy for one kind.
///
/// A router sees only workers and outcomes, never tasks or queues: [`super::KindRouter`] pops
/// the task, asks [`pick`](Router::pick) where it goes, and reports what happens to it. So a
/// policy can be replaced at any moment without losing or duplicating a task.
///
/// Contract for callers: every candidate passed to `pick` has a free credit and candidates are
/// in ascending unit order; every [`on_dispatch`](Router::on_dispatch) is later matched by one
/// [`on_complete`](Router::on_complete) or [`on_abandoned`](Router::on_abandoned) for that
/// unit, unless [`on_removed`](Router::on_removed) reports the unit gone first. Time is given,
/// never read: `now` must not go backwards.
pub trait Router: Send + std::fmt::Debug {
    /// The policy's name as in the configuration (`round_robin`, …).
    fn name(&self) -> &'static str;

    /// Chooses a worker among `candidates`: an index into it, `None` only when it is empty.
    /// The caller dispatches one task to the chosen worker right after (and reports it with
    /// [`on_dispatch`](Router::on_dispatch)).
    fn pick(&mut self, now: Instant, candidates: &[Candidate]) -> Option<usize>;

    /// A task was dispatched to `unit`.
    fn on_dispatch(&mut self, unit: usize, now: Instant);

    /// A task dispatched to `unit` completed `latency` after its dispatch; `ok` is false when
    /// the worker reported a failure.
    fn on_complete(&mut self, unit: usize, latency: Duration, ok: bool, now: Instant);

    /// A task dispatched to `unit` will not complete there (it could not be delivered, or was
    /// given up on): forget it without a latency sample.
    fn on_abandoned(&mut self, unit: usize, now: Instant);

    /// `unit` is gone; whatever it had in flight will never complete. Forget its statistics.
    fn on_removed(&mut self, unit: usize);

    /// The policy's internal state for `ampctl route get` (estimates, counters, chosen arm).
    fn describe(&self, now: Instant) -> serde_json::Value;
}

/// The configuration name of a policy (`round_robin`, `least_loaded`, `peak_ewma`, `learned`).
#[must_use]
pub const fn policy_name(policy: RouterPolicy) -> &'static str {
    match policy {
        RouterPolicy::RoundRobin => RoundRobin::NAME,
        RouterPolicy::LeastLoaded => LeastLoaded::NAME,
        RouterPolicy::PeakEwma => PeakEwma::NAME,
        RouterPolicy::Learned => Learned::NAME,
    }
}

/// A new router for `policy`, with fresh statistics. `seed` drives all its randomness (the
/// same seed and the same calls give the same picks); `decay` is the [`PeakEwma`] decay time
/// (also used by the `peak_ewma` arm of [`Learned`]; [`DEFAULT_DECAY`] is a good default).
///
/// ```
/// use amp_supervisor::config::RouterPolicy;
/// use amp_supervisor::router::{make_router, Candidate, DEFAULT_DECAY};
/// use std::time::Instant;
/// let mut r = make_router(RouterPolicy::LeastLoaded, 1, DEFAULT_DECAY);
/// let c = [Candidate { unit: 0, in_flight: 5, window: 8 }, Candidate { unit: 1, in_flight: 0, window: 8 }];
/// assert_eq!(r.pick(Instant::now(), &c), Some(1)); // two candidates: both compared
/// assert_eq!(r.name(), "least_loaded");
/// ```
#[must_use]
pub fn make_router(policy: RouterPolicy, seed: u64, decay: Duration) -> Box<dyn Router> {
    match policy {
        RouterPolicy::RoundRobin => Box::new(RoundRobin::new()),
        RouterPolicy::LeastLoaded => Box::new(LeastLoaded::new(seed)),
        RouterPolicy::PeakEwma => Box::new(PeakEwma::new(seed, decay)),
        RouterPolicy::Learned => Box::new(Learned::new(seed, decay, LearnedConfig::default())),
    }
}

/// A well-mixed 64-bit value derived from `seed` and `stream` (splitmix64), so that related
/// seeds (`seed`, `seed + 1`, …) give unrelated random streams.
#[must_use]
pub(crate) const fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed
        .wrapping_add(stream.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Power of two choices: two distinct candidates drawn at random, the one with the lower
/// `cost` wins, a tie is decided by a coin. With one candidate it is chosen; with none, `None`.
pub(crate) fn two_choices<K: PartialOrd>(
    rng: &mut SmallRng,
    n: usize,
    mut cost: impl FnMut(usize) -> K,
) -> Option<usize> {
    match n {
        0 => None,
        1 => Some(0),
        _ => {
            let a = rng.random_range(0..n);
            let b = (a + rng.random_range(1..n)) % n;
            let (ca, cb) = (cost(a), cost(b));
            Some(if ca < cb {
                a
            } else if cb < ca {
                b
            } else if rng.random_bool(0.5) {
                a
            } else {
                b
            })
        }
    }
}
