//! The oracle policy: it knows every worker's true speed.

use crate::router::{Candidate, Router};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A [`Router`] that knows each worker's true service-time factor (shared with the simulator,
/// which updates it when a phase changes a speed) and sends each task to the eligible worker
/// with the least expected finish time, `(in_flight + 1) × factor` (ties: lowest unit).
#[derive(Debug, Clone)]
pub struct Oracle {
    speeds: Arc<Mutex<Vec<f64>>>,
}

impl Oracle {
    /// An oracle reading the factors in `speeds` (indexed by unit).
    #[must_use]
    pub const fn new(speeds: Arc<Mutex<Vec<f64>>>) -> Self {
        Self { speeds }
    }
}

impl Router for Oracle {
    fn name(&self) -> &'static str {
        "oracle"
    }

    fn pick(&mut self, _now: Instant, candidates: &[Candidate]) -> Option<usize> {
        let speeds = self
            .speeds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        candidates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let factor = speeds.get(c.unit).copied().unwrap_or(1.0);
                (i, (f64::from(c.in_flight) + 1.0) * factor)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
    }

    fn on_dispatch(&mut self, _unit: usize, _now: Instant) {}

    fn on_complete(&mut self, _unit: usize, _latency: Duration, _ok: bool, _now: Instant) {}

    fn on_abandoned(&mut self, _unit: usize, _now: Instant) {}

    fn on_removed(&mut self, _unit: usize) {}

    fn describe(&self, _now: Instant) -> serde_json::Value {
        let speeds = self
            .speeds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        json!({ "policy": "oracle", "speeds": *speeds })
    }
}
