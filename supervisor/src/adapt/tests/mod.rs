//! Tests of the adaptive controller: the pure parts directly, the behaviour on the simulator.

mod controller;
mod parts;
mod sim;

use super::sim::{Phase, SimConfig, SimPolicy, WorkerSpec, Workload};
use super::{AdaptConfig, Mode};
use crate::config::RouterPolicy;
use std::time::Duration;

/// A light-tailed workload: every task exponential with mean `mean_ms`, no deadline misses
/// expected, no failures, no poison.
pub(super) fn exp_workload(mean_ms: u64) -> Workload {
    Workload {
        interactive_share: 1.0,
        interactive_mean: Duration::from_millis(mean_ms),
        deadline: Duration::from_secs(3600),
        batch_min: Duration::from_millis(1),
        batch_alpha: 2.0,
        batch_cap: Duration::from_millis(1),
        failure: 0.0,
        poison: 0,
    }
}

/// One phase `name` of `secs` at `load`.
pub(super) fn phase(name: &str, secs: f64, load: f64) -> Phase {
    Phase {
        name: name.to_owned(),
        duration: Duration::from_secs_f64(secs),
        load,
        changes: Vec::new(),
    }
}

/// A controller configuration in auto mode for the simulator's kind.
pub(super) fn auto() -> AdaptConfig {
    let mut c = AdaptConfig::default();
    c.modes.insert(super::sim::KIND.to_owned(), Mode::Auto);
    c
}

/// A simulation of `workers` under `phases`, least-loaded routing, controller `adapt`.
pub(super) fn sim(
    workers: Vec<WorkerSpec>,
    phases: Vec<Phase>,
    adapt: Option<AdaptConfig>,
) -> SimConfig {
    SimConfig {
        seed: 7,
        workers,
        workload: exp_workload(10),
        phases,
        policy: SimPolicy::Router(RouterPolicy::LeastLoaded),
        adapt,
        window: 64,
        dispatch_delay: Duration::from_micros(30),
        restart_delay: Duration::from_millis(200),
        max_attempts: 8,
        poison_deaths: 2,
        retry_base: Duration::from_millis(20),
        drain_limit: Duration::from_secs(600),
        param: None,
        scale: None,
        watch: None,
        proposals: Vec::new(),
        keep_decisions: true,
    }
}
