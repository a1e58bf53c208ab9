//! Adaptive-controller benchmark: the seeded `hetero-burst-degrade` scenario, routed by
//! `round_robin`, `least_loaded`, `peak_ewma` and `learned`, each with the adaptive controller
//! off (windows at the default `concurrency`, 64) and on (mode auto), against an oracle that
//! knows the true worker speeds.
//!
//! ```text
//! scripts/bench-adaptive                  # real rings: 8 ampd runs of 45 s each, ~6 min
//! scripts/bench-adaptive --sim            # the deterministic simulator only (45 s virtual, ~1 s)
//! scripts/bench-adaptive --sim --seeds 4  # ... and the headline of seeds 2..4
//! AMP_BENCH_QUICK=1 scripts/bench-adaptive   # shorter (real: scale 0.33, ~2.5 min; sim: 0.2)
//! ```
//!
//! **Real rings** (default, `real.rs`): each run starts an `ampd` with ten `amp-sleep` workers
//! (2 × 0.5, 6 × 1, 2 × 3 via `AMP_SLEEP_FACTOR`), submits the scenario open-loop through the
//! shared-memory client API and changes worker speeds through `AMP_SLEEP_CONTROL` files at the
//! phase boundaries. The oracle cannot run on a real ampd (it would need the true speeds inside
//! the router), so its figures come from the simulator on the same scenario and seed — an
//! optimistic reference: the simulator has no sleep overshoot or scheduling noise.
//!
//! **Simulator** (`--sim`): the real `KindRouter` and `Controller` in virtual time; workers are
//! modelled as `amp-sleep` processes (one task at a time) with a 30 µs dispatch and completion
//! delay each way. It also runs, scaled down, in CI (`adapt::sim` tests).
//!
//! The scenario: 10 workers (2 × 0.5, 6 × 1, 2 × 3), 20 % interactive (exponential, mean 2 ms,
//! deadline 50 ms) and 80 % batch (Pareto α 1.6 from 4 ms, capped at 400 ms) tasks, 1 %
//! transient failures and 3 poison tasks; `steady` 70 % of capacity → `degrade` (unit 2 4×
//! slower) → `stall` (unit 3 takes 2 s per task) → `burst` 130 % → `recovery`. Latency counts
//! from each task's intended arrival. See `docs/benchmarks.md`.
//!
//! Output: a table per run (interactive p99 over degrade+stall and over everything, deadline
//! hit rate, goodput, lost, dead-lettered, time to move load off the degraded worker,
//! decisions), a table per phase and class, the headline ratios per policy, and as the very
//! last line `interactive_p99_vs_rr=…x vs_oracle=…x adapt_s=… lost=…` (worst policy with the
//! controller on vs round-robin without it and vs the oracle).

mod real;

use amp_supervisor::adapt::sim::scenario::{
    compare, headline_p99, hetero_burst_degrade, report, summary, variant, ScenarioRun, POLICIES,
};
use amp_supervisor::adapt::sim::{SimConfig, SimPolicy};
use anyhow::{ensure, Context, Result};
use clap::Parser;
use std::time::Instant;

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "amp adaptive-controller benchmark (see docs/benchmarks.md)")]
struct Args {
    /// Run the deterministic simulator only (no processes).
    #[arg(long)]
    sim: bool,
    /// Phase lengths × this (1.0: 45 s per run). Default: real 1.0 (0.33 with
    /// `AMP_BENCH_QUICK=1`), simulator 1.0 (0.2).
    #[arg(long)]
    scale: Option<f64>,
    /// Directory holding the `ampd` and `amp-sleep` binaries (real runs; default: this
    /// example's target directory, e.g. target/release).
    #[arg(long)]
    bins: Option<std::path::PathBuf>,
    /// Real runs: only these (e.g. `--only round_robin --only least_loaded+adapt`); the
    /// summary needs `round_robin` and at least one `+adapt` run.
    #[arg(long)]
    only: Vec<String>,
    /// Real runs: print the slowest interactive tasks of each run (unit, size, latency).
    #[arg(long)]
    slowest: Option<usize>,
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
    if !args.sim {
        return real_runs(&args, quick);
    }
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
    println!("# phases: {}", phases_line(&base));
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

/// The scenario over the real rings: every policy with the controller off and on, each on its
/// own ampd; the oracle from the simulator.
fn real_runs(args: &Args, quick: bool) -> Result<()> {
    let scale = args.scale.unwrap_or(if quick { 0.33 } else { 1.0 });
    ensure!(
        scale > 0.0 && scale.is_finite(),
        "--scale must be a positive number, got {scale}"
    );
    let bins = match &args.bins {
        Some(b) => b.clone(),
        None => {
            let exe = std::env::current_exe()?;
            // target/<profile>/examples/bench_adaptive → target/<profile>
            exe.parent()
                .and_then(std::path::Path::parent)
                .map(std::path::Path::to_path_buf)
                .ok_or_else(|| anyhow::anyhow!("cannot locate the target directory"))?
        }
    };
    for b in ["ampd", "amp-sleep"] {
        ensure!(
            bins.join(b).is_file(),
            "{} not found: build the binaries first (cargo build --release --bins) or pass --bins DIR",
            bins.join(b).display()
        );
    }
    ensure!(
        args.only.is_empty()
            || (args.only.iter().any(|o| o == "round_robin")
                && args.only.iter().any(|o| o.ends_with("+adapt"))),
        "--only must include round_robin and at least one +adapt run (the summary compares them)"
    );
    let started = Instant::now();
    let base = hetero_burst_degrade(scale, args.seed);
    let secs: f64 = base.phases.iter().map(|p| p.duration.as_secs_f64()).sum();
    println!(
        "# hetero-burst-degrade over the real rings, seed {}, time scale {scale}: {secs:.1} s of \
         arrivals per run, nominal capacity {:.0} tasks/s, binaries from {}",
        args.seed,
        base.capacity(),
        bins.display()
    );
    println!("# phases: {}", phases_line(&base));
    let mut runs = Vec::new();
    for adaptive in [false, true] {
        for p in POLICIES {
            let label = format!(
                "{}{}",
                SimPolicy::Router(p).name(),
                if adaptive { "+adapt" } else { "" }
            );
            if !args.only.is_empty() && !args.only.iter().any(|o| o == &label) {
                continue;
            }
            let dir = real::scratch(&label)?;
            let t = Instant::now();
            let result = real::run(&base, p, adaptive, &bins, &dir).with_context(|| {
                format!("run {label} (ampd log: {})", dir.join("ampd.log").display())
            })?;
            eprintln!(
                "# {label}: {:.1} s, {} tasks, lost {}, dead-lettered {}",
                t.elapsed().as_secs_f64(),
                result.tasks.len(),
                result.lost,
                result.dead_lettered
            );
            if let Some(n) = args.slowest {
                let mut slow: Vec<_> = result
                    .tasks
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.class == amp_supervisor::adapt::sim::Class::Interactive)
                    .filter_map(|(i, t)| t.latency.map(|l| (l, i, t)))
                    .collect();
                slow.sort_by_key(|s| std::cmp::Reverse(s.0));
                for (l, i, t) in slow.into_iter().take(n) {
                    eprintln!(
                        "#   task {i} phase {} unit {:?} attempts {} latency {:.1} ms",
                        t.phase,
                        t.unit,
                        t.attempts,
                        l.as_secs_f64() * 1e3
                    );
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
            runs.push(ScenarioRun {
                label,
                policy: SimPolicy::Router(p),
                adaptive,
                result,
            });
        }
    }
    ensure!(
        runs.iter().any(|r| r.label == "round_robin") && runs.iter().any(|r| r.adaptive),
        "the summary needs the round_robin run and at least one +adapt run (see --only)"
    );
    let oracle = amp_supervisor::adapt::sim::run(&variant(&base, SimPolicy::Oracle, false));
    // The real runs replay the simulator's draws: the oracle saw the same tasks (same
    // sequence of classes, phases and poison flags; sizes and times come from the same draws).
    if let Some(first) = runs.first() {
        let key = |r: &amp_supervisor::adapt::sim::SimResult| -> Vec<_> {
            r.tasks
                .iter()
                .map(|t| (t.class, t.phase, t.poison))
                .collect()
        };
        let same = key(&first.result) == key(&oracle);
        println!(
            "# tasks: real runs {}, simulated oracle {} — {}",
            first.result.tasks.len(),
            oracle.tasks.len(),
            if same {
                "the same sequence of classes and phases"
            } else {
                "MISMATCH: the oracle saw other tasks"
            }
        );
    }
    runs.push(ScenarioRun {
        label: "oracle (simulated)".into(),
        policy: SimPolicy::Oracle,
        adaptive: false,
        result: oracle,
    });
    println!();
    print!("{}", report(&runs));
    println!();
    println!("windows at the end and controller actions:");
    for r in runs.iter().filter(|r| r.adaptive) {
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
    let dlq = summary(&runs).dlq_mismatches;
    println!();
    println!("runs whose dead-lettered count differs from the poison count: {dlq}");
    eprintln!("# took {:.1} s", started.elapsed().as_secs_f64());
    println!("{}", headline(&runs));
    Ok(())
}

/// The scenario's phases in one line: name, length and load of each.
fn phases_line(cfg: &SimConfig) -> String {
    cfg.phases
        .iter()
        .map(|p| {
            format!(
                "{} {:.1} s at {:.0} %",
                p.name,
                p.duration.as_secs_f64(),
                p.load * 100.0
            )
        })
        .collect::<Vec<_>>()
        .join(" → ")
}
