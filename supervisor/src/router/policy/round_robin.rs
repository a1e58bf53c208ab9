//! `round_robin`: each eligible worker in turn, by unit order.

use super::{Candidate, Router};
use serde_json::json;
use std::time::{Duration, Instant};

/// Each worker in turn: the first candidate whose unit is at or after the cursor (wrapping
/// around), then the cursor moves past it. A worker without credit is skipped, not waited for,
/// so the rotation survives workers coming, going and filling up. No statistics, no randomness.
#[derive(Debug, Clone, Default)]
pub struct RoundRobin {
    /// The lowest unit that may be picked next.
    next: usize,
    /// Picks so far.
    picks: u64,
}

impl RoundRobin {
    /// The policy's configuration name.
    pub const NAME: &'static str = "round_robin";

    /// A rotation starting at unit 0.
    #[must_use]
    pub const fn new() -> Self {
        Self { next: 0, picks: 0 }
    }
}

impl Router for RoundRobin {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn pick(&mut self, _now: Instant, candidates: &[Candidate]) -> Option<usize> {
        let next = self.next;
        let chosen = candidates
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| (c.unit < next, c.unit))
            .map(|(i, _)| i)?;
        self.next = candidates[chosen].unit.wrapping_add(1);
        self.picks += 1;
        Some(chosen)
    }

    fn on_dispatch(&mut self, _unit: usize, _now: Instant) {}

    fn on_complete(&mut self, _unit: usize, _latency: Duration, _ok: bool, _now: Instant) {}

    fn on_abandoned(&mut self, _unit: usize, _now: Instant) {}

    fn on_removed(&mut self, _unit: usize) {}

    fn describe(&self, _now: Instant) -> serde_json::Value {
        json!({ "policy": Self::NAME, "next_unit": self.next, "picks": self.picks })
    }
}
