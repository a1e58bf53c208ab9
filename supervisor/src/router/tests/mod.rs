//! Tests of the router core: queues and DRR, the policies, `KindRouter`, and simulated runs
//! (virtual time, seeded randomness, no processes).

mod kind;
mod policy;
mod queue;
mod sim;

use super::*;
use crate::config::ClassConfig;
use std::time::{Duration, Instant};

pub(super) const MS: Duration = Duration::from_millis(1);

/// Classes from `(name, weight)` pairs.
pub(super) fn classes(spec: &[(&str, u32)]) -> Vec<ClassConfig> {
    spec.iter()
        .map(|&(name, weight)| ClassConfig {
            name: name.into(),
            weight,
        })
        .collect()
}

/// Candidates `(unit, in_flight)` with window 100.
pub(super) fn cands(spec: &[(usize, u32)]) -> Vec<Candidate> {
    spec.iter()
        .map(|&(unit, in_flight)| Candidate {
            unit,
            in_flight,
            window: 100,
        })
        .collect()
}

pub(super) fn t0() -> Instant {
    Instant::now()
}
