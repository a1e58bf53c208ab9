//! Adaptive-controller benchmark: the seeded `hetero-burst-degrade` scenario in the
//! deterministic simulator (`amp_supervisor::adapt::sim`), routed by `round_robin`,
//! `least_loaded`, `peak_ewma` and `learned`, each with the adaptive controller off (windows
//! at the default `concurrency`, 64) and on (mode auto), and by an oracle that knows the true
//! worker speeds.
//!
//! ```text
//! scripts/bench-adaptive                         # full run: 45 s of virtual time per run, ~1 s
//! cargo run --release -p amp-supervisor --example bench_adaptive -- --seeds 4
//! AMP_BENCH_QUICK=1 scripts/bench-adaptive       # the scenario at a fifth of its length
//! ```
//! The simulator runs the real `KindRouter` and `Controller` in virtual time; workers are
//! modelled as `amp-sleep` processes (one task at a time, `AMP_SLEEP_FACTOR`-style speed
//! factors) with a 30 µs dispatch and completion delay each way. Arrivals are open-loop and
//! latency counts from each task's intended arrival. The scenario: 10 workers (2 × 0.5,
//! 6 × 1, 2 × 3), 20 % interactive (exponential, mean 2 ms, deadline 50 ms) and 80 % batch
//! (Pareto α 1.6 from 4 ms, capped at 400 ms) tasks, 1 % transient failures, 3 poison tasks;
//! `steady` 70 % of capacity → `degrade` (unit 2 4× slower) → `stall` (unit 3 takes 2 s per
//! task) → `burst` 130 % → `recovery`. See `docs/benchmarks.md`.
//!
//! Output: a table per run (interactive p99 over degrade+stall and over everything, deadline
//! hit rate, goodput, lost, dead-lettered, time to move load off the degraded worker,
//! decisions), a table per phase and class, the headline ratios per policy, and as the very
//! last line `interactive_p99_vs_rr=…x vs_oracle=…x adapt_s=… lost=…` (worst policy with the
//! controller on vs round-robin without it and vs the oracle).

use amp_supervisor::adapt::sim::scenario::{
    compare, headline_p99, hetero_burst_degrade, report, summary, ScenarioRun,
};
use amp_supervisor::adapt::sim::SimPolicy;
use anyhow::{ensure, Result};
use clap::Parser;
use std::time::Instant;

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "amp adaptive-controller benchmark (simulated; see docs/benchmarks.md)")]
struct Args {
    /// Phase lengths × this (1.0: 45 s of virtual time per run; `AMP_BENCH_QUICK=1`: 0.2).
    #[arg(long)]
    scale: Option<f64>,
    /// Seed of the first run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of seeds (seed, seed+1, …): the headline of each is printed; the tables and the
    /// last line are those of the first.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
}

fn headline(runs: &[ScenarioRun]) -> String {
    let s = summary(runs);
    format!(
        "interactive_p99_vs_rr={:.3}x vs_oracle={:.2}x adapt_s={} lost={}",
        s.vs_rr,
        s.vs_oracle,
        s.adapt_s
            .map_or_else(|| "never".to_owned(), |a| format!("{a:.2}")),
        s.lost
    )
}

fn main() -> Result<()> {
    let args = Args::parse();
    let quick = std::env::var_os("AMP_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0");
    let scale = args.scale.unwrap_or(if quick { 0.2 } else { 1.0 });
    ensure!(
        scale > 0.0 && scale.is_finite(),
        "--scale must be a positive number, got {scale}"
    );
    ensure!(args.seeds >= 1, "--seeds must be at least 1");
    let started = Instant::now();
    let base = hetero_burst_degrade(scale, args.seed);
    let virtual_s: f64 = base.phases.iter().map(|p| p.duration.as_secs_f64()).sum();
    println!(
        "# hetero-burst-degrade, seed {}, time scale {scale}: {virtual_s:.1} s of virtual time per run, \
         nominal capacity {:.0} tasks/s",
        args.seed,
        base.capacity()
    );
    println!(
        "# phases: {}",
        base.phases
            .iter()
            .map(|p| format!(
                "{} {:.1} s at {:.0} %",
                p.name,
                p.duration.as_secs_f64(),
                p.load * 100.0
            ))
            .collect::<Vec<_>>()
            .join(" → ")
    );
    let runs = compare(&base);
    println!();
    print!("{}", report(&runs));
    println!();
    println!("windows at the end and controller actions:");
    for r in runs
        .iter()
        .filter(|r| r.adaptive || r.policy == SimPolicy::Oracle)
    {
        println!(
            "  {:<22} windows {:?} batch {} timeout {} actions {:?}",
            r.label,
            r.result.windows,
            r.result
                .batch
                .map_or_else(|| "-".to_owned(), |b| b.to_string()),
            r.result.timeout.map_or_else(
                || "-".to_owned(),
                |t| format!("{:.0} ms", t.as_secs_f64() * 1e3)
            ),
            r.result.actions
        );
    }
    println!();
    println!(
        "interactive p99 over degrade+stall, controller on, vs round_robin off and vs the oracle:"
    );
    let rr = runs
        .iter()
        .find(|r| r.label == "round_robin")
        .map(|r| headline_p99(&r.result));
    let oracle = runs
        .iter()
        .find(|r| r.label == "oracle")
        .map(|r| headline_p99(&r.result));
    if let (Some(rr), Some(oracle)) = (rr, oracle) {
        for r in runs.iter().filter(|r| r.adaptive) {
            let p = headline_p99(&r.result);
            println!(
                "  {:<22} {:>7.1} ms  vs_rr={:.4}x  vs_oracle={:.2}x",
                r.label,
                p,
                p / rr,
                p / oracle
            );
        }
    }
    for seed in args.seed + 1..args.seed + args.seeds {
        let runs = compare(&hetero_burst_degrade(scale, seed));
        println!("seed {seed}: {}", headline(&runs));
    }
    eprintln!(
        "# took {:.2} s of real time",
        started.elapsed().as_secs_f64()
    );
    println!("{}", headline(&runs));
    Ok(())
}
