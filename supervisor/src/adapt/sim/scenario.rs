//! The `hetero-burst-degrade` scenario and its comparison of routing policies with the
//! controller off and on, against an oracle (used by `examples/bench_adaptive.rs` and, scaled
//! down, by the tests).
//!
//! Ten sleep-style workers — 2 fast (×0.5), 6 normal, 2 slow (×3) — serve 20 % interactive
//! tasks (exponential, mean 2 ms, deadline 50 ms) and 80 % batch tasks (Pareto α 1.6 from
//! 4 ms, capped at 400 ms), with 1 % transient failures and 3 poison tasks. Phases (at time
//! scale 1): `steady` 10 s at 70 % of nominal capacity → `degrade` 10 s (a normal worker,
//! unit 2, becomes 4× slower) → `stall` 10 s (another, unit 3, takes 2 s per task) → `burst`
//! 5 s at 130 % → `recovery` 10 s at 70 % with both healthy again.

use super::{
    run, Class, Phase, SimConfig, SimPolicy, SimResult, SpeedChange, WorkerSpec, Workload, KIND,
};
use crate::adapt::{AdaptConfig, Mode};
use crate::config::{RouterPolicy, DEFAULT_CONCURRENCY};
use std::fmt::Write as _;
use std::time::Duration;

/// The worker that slows down (4×) in the `degrade` phase.
pub const DEGRADED: usize = 2;
/// The worker that stalls (2 s per task) in the `stall` phase.
pub const STALLED: usize = 3;
/// The phases the headline compares.
pub const HEADLINE_PHASES: [&str; 2] = ["degrade", "stall"];

/// The scenario at `time_scale` (1.0: the full 45 s; phase lengths are multiplied by it),
/// routed by round-robin without a controller. Use [`variant`] for the others.
#[must_use]
pub fn hetero_burst_degrade(time_scale: f64, seed: u64) -> SimConfig {
    let secs = |s: f64| Duration::from_secs_f64(s * time_scale);
    let mut workers = vec![
        WorkerSpec {
            speed: 0.5,
            slots: 1
        };
        2
    ];
    workers.extend(vec![
        WorkerSpec {
            speed: 1.0,
            slots: 1
        };
        6
    ]);
    workers.extend(vec![
        WorkerSpec {
            speed: 3.0,
            slots: 1
        };
        2
    ]);
    let phase = |name: &str, s: f64, load: f64, changes: Vec<(usize, SpeedChange)>| Phase {
        name: name.to_owned(),
        duration: secs(s),
        load,
        changes,
    };
    SimConfig {
        seed,
        workers,
        workload: Workload {
            interactive_share: 0.2,
            interactive_mean: Duration::from_millis(2),
            deadline: Duration::from_millis(50),
            batch_min: Duration::from_millis(4),
            batch_alpha: 1.6,
            batch_cap: Duration::from_millis(400),
            failure: 0.01,
            poison: 3,
        },
        phases: vec![
            phase("steady", 10.0, 0.7, vec![]),
            phase(
                "degrade",
                10.0,
                0.7,
                vec![(DEGRADED, SpeedChange::Slow(4.0))],
            ),
            phase(
                "stall",
                10.0,
                0.7,
                vec![(STALLED, SpeedChange::Stall(Duration::from_secs(2)))],
            ),
            phase("burst", 5.0, 1.3, vec![]),
            phase(
                "recovery",
                10.0,
                0.7,
                vec![
                    (DEGRADED, SpeedChange::Restore),
                    (STALLED, SpeedChange::Restore),
                ],
            ),
        ],
        policy: SimPolicy::Router(RouterPolicy::RoundRobin),
        adapt: None,
        window: DEFAULT_CONCURRENCY,
        dispatch_delay: Duration::from_micros(30),
        restart_delay: Duration::from_millis(200),
        max_attempts: 8,
        poison_deaths: 2,
        retry_base: Duration::from_millis(20),
        drain_limit: Duration::from_secs(600),
        param: None,
        scale: None,
        watch: Some((DEGRADED, "degrade".to_owned())),
        proposals: Vec::new(),
        keep_decisions: false,
    }
}

/// The controller configuration used with the scenario: defaults, mode auto for the kind.
#[must_use]
pub fn adaptive_config() -> AdaptConfig {
    let mut c = AdaptConfig::default();
    c.modes.insert(KIND.to_owned(), Mode::Auto);
    c
}

/// `base` routed by `policy`, with the controller on or off.
#[must_use]
pub fn variant(base: &SimConfig, policy: SimPolicy, adaptive: bool) -> SimConfig {
    let mut c = base.clone();
    c.policy = policy;
    c.adapt = adaptive.then(adaptive_config);
    c
}

/// One run of the comparison.
#[derive(Debug, Clone)]
pub struct ScenarioRun {
    /// `policy` or `policy+adapt`.
    pub label: String,
    /// Who routed.
    pub policy: SimPolicy,
    /// Controller on.
    pub adaptive: bool,
    /// What happened.
    pub result: SimResult,
}

/// The policies compared.
pub const POLICIES: [RouterPolicy; 4] = [
    RouterPolicy::RoundRobin,
    RouterPolicy::LeastLoaded,
    RouterPolicy::PeakEwma,
    RouterPolicy::Learned,
];

/// Runs `base` with every policy of [`POLICIES`], controller off and on, and the oracle.
#[must_use]
pub fn compare(base: &SimConfig) -> Vec<ScenarioRun> {
    let mut runs = Vec::new();
    for adaptive in [false, true] {
        for p in POLICIES {
            let policy = SimPolicy::Router(p);
            let result = run(&variant(base, policy, adaptive));
            let label = format!("{}{}", policy.name(), if adaptive { "+adapt" } else { "" });
            runs.push(ScenarioRun {
                label,
                policy,
                adaptive,
                result,
            });
        }
    }
    let result = run(&variant(base, SimPolicy::Oracle, false));
    runs.push(ScenarioRun {
        label: "oracle".into(),
        policy: SimPolicy::Oracle,
        adaptive: false,
        result,
    });
    runs
}

/// The headline figures of a comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Worst interactive p99 (degrade + stall) over the policies with the controller on,
    /// divided by round-robin's without it.
    pub vs_rr: f64,
    /// The same worst p99 divided by the oracle's.
    pub vs_oracle: f64,
    /// Worst time to move load off the degraded worker with the controller on (`None`: one
    /// never did).
    pub adapt_s: Option<f64>,
    /// Tasks lost over all runs.
    pub lost: u64,
    /// Runs whose dead-lettered count differs from their poison count.
    pub dlq_mismatches: usize,
}

/// Interactive p99 (ms) over the headline phases.
#[must_use]
pub fn headline_p99(r: &SimResult) -> f64 {
    r.stats(&HEADLINE_PHASES, Class::Interactive).p99_ms
}

/// The headline figures of `runs` (as returned by [`compare`]).
///
/// # Panics
/// If `runs` lacks the round-robin run without controller, the oracle, or any run with it.
#[must_use]
pub fn summary(runs: &[ScenarioRun]) -> Summary {
    let rr = runs
        .iter()
        .find(|r| r.policy == SimPolicy::Router(RouterPolicy::RoundRobin) && !r.adaptive)
        .expect("a round-robin run without controller");
    let oracle = runs
        .iter()
        .find(|r| r.policy == SimPolicy::Oracle)
        .expect("an oracle run");
    let on: Vec<&ScenarioRun> = runs.iter().filter(|r| r.adaptive).collect();
    assert!(!on.is_empty(), "a run with the controller on");
    let worst = on
        .iter()
        .map(|r| headline_p99(&r.result))
        .fold(0.0, f64::max);
    let adapt_s = on
        .iter()
        .map(|r| r.result.adapt_s)
        .try_fold(0.0_f64, |acc, a| a.map(|a| acc.max(a)));
    Summary {
        vs_rr: worst / headline_p99(&rr.result),
        vs_oracle: worst / headline_p99(&oracle.result),
        adapt_s,
        lost: runs.iter().map(|r| r.result.lost).sum(),
        dlq_mismatches: runs
            .iter()
            .filter(|r| r.result.dead_lettered != r.result.poison)
            .count(),
    }
}

/// The comparison as text tables: per run the headline, then per phase and class.
#[must_use]
pub fn report(runs: &[ScenarioRun]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<22} {:>12} {:>12} {:>9} {:>10} {:>5} {:>4} {:>8} {:>9}",
        "run",
        "int p99 d+s",
        "int p99 all",
        "int hit%",
        "goodput/s",
        "lost",
        "dlq",
        "adapt_s",
        "decisions"
    );
    let all = runs
        .first()
        .map(|r| r.result.phase_names())
        .unwrap_or_default();
    for r in runs {
        let res = &r.result;
        let everything = res.stats(&all, Class::Interactive);
        let good: f64 = [Class::Interactive, Class::Batch]
            .iter()
            .map(|&c| res.stats(&all, c).goodput)
            .sum();
        let _ = writeln!(
            s,
            "{:<22} {:>12.1} {:>12.1} {:>9.2} {:>10.1} {:>5} {:>4} {:>8} {:>9}",
            r.label,
            headline_p99(res),
            everything.p99_ms,
            everything.hit_rate * 100.0,
            good,
            res.lost,
            res.dead_lettered,
            res.adapt_s
                .map_or_else(|| "never".to_owned(), |a| format!("{a:.2}")),
            res.decisions,
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "per phase: interactive p50/p99 ms (deadline hit %) | batch p50/p99 ms | goodput/s"
    );
    let _ = write!(s, "{:<22}", "run");
    for p in &all {
        let _ = write!(s, " | {p:<39}");
    }
    let _ = writeln!(s);
    for r in runs {
        let _ = write!(s, "{:<22}", r.label);
        for p in &all {
            let i = r.result.stats(&[p], Class::Interactive);
            let b = r.result.stats(&[p], Class::Batch);
            let cell = format!(
                "{:.0}/{:.0} ({:.0}%) | {:.0}/{:.0} | {:.0}",
                i.p50_ms,
                i.p99_ms,
                i.hit_rate * 100.0,
                b.p50_ms,
                b.p99_ms,
                i.goodput + b.goodput
            );
            let _ = write!(s, " | {cell:<39}");
        }
        let _ = writeln!(s);
    }
    s
}
