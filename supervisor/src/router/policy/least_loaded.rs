//! `least_loaded`: power of two choices on tasks in flight.

use super::{derive_seed, two_choices, Candidate, Router};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde_json::json;
use std::time::{Duration, Instant};

/// Power of two choices (Mitzenmacher): two distinct candidates at random, the one with fewer
/// tasks in flight wins, a tie is a coin toss. Sampling two instead of scanning all keeps
/// simultaneous decisions from herding onto the same idle worker and costs O(1); the in-flight
/// counts come from the caller, so there are no statistics to warm up.
#[derive(Debug, Clone)]
pub struct LeastLoaded {
    rng: SmallRng,
    picks: u64,
}

impl LeastLoaded {
    /// The policy's configuration name.
    pub const NAME: &'static str = "least_loaded";

    /// A policy whose random choices come from `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(derive_seed(seed, 1)),
            picks: 0,
        }
    }
}

impl Router for LeastLoaded {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn pick(&mut self, _now: Instant, candidates: &[Candidate]) -> Option<usize> {
        let chosen = two_choices(&mut self.rng, candidates.len(), |i| candidates[i].in_flight)?;
        self.picks += 1;
        Some(chosen)
    }

    fn on_dispatch(&mut self, _unit: usize, _now: Instant) {}

    fn on_complete(&mut self, _unit: usize, _latency: Duration, _ok: bool, _now: Instant) {}

    fn on_abandoned(&mut self, _unit: usize, _now: Instant) {}

    fn on_removed(&mut self, _unit: usize) {}

    fn describe(&self, _now: Instant) -> serde_json::Value {
        json!({ "policy": Self::NAME, "picks": self.picks })
    }
}
