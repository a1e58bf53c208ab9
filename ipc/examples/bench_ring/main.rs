//! Ring benchmark: the amp SPSC ring against a bare minimal SPSC ring and kernel IPC baselines,
//! all measured cross-process in one run.
//!
//! ```text
//! cargo run --release -p amp-ipc --example bench_ring       # full run, about two minutes
//! AMP_BENCH_QUICK=1 cargo run --release -p amp-ipc --example bench_ring   # smoke run, seconds
//! AMP_BENCH_ONLY=ring,pipe ...   # only mechanisms whose label contains one of these words
//! AMP_BENCH_SIZES=64 AMP_BENCH_REPS=9 ...   # only 64-byte records, 9 repetitions
//! ```
//! (`scripts/bench-ring` does the same.) Each measurement forks a peer process; the two are pinned
//! to different CPUs when two are available. Throughput: the child writes `count` records, each
//! written as 8-byte words `seq + i` (one store per word), the parent reads and checks every
//! word of every record.
//! Round trips: the parent sends a 64-byte message, the child echoes it.
//!
//! Every configuration is repeated (5 times, 3 in quick mode) with the mechanisms interleaved;
//! tables show medians and each run, and ratios are medians of per-repetition ratios. A
//! measurement during which other processes used more than 10% of the CPUs is repeated after the
//! machine calms down (at most 3 attempts, 90 s of waiting per run) and marked `*` if it stays
//! disturbed (`AMP_BENCH_DEBUG=1` prints that share for every measurement). The last line of
//! output is a `key=value` summary. See `docs/benchmarks.md`.

mod amp;
mod bare;
mod baselines;
mod common;
mod proc;

use std::fmt::Write as _;
use std::time::Duration;

use amp::Footprint;
use baselines::Stream;
use common::{median, Fill, Latency, Res, Tput};
use proc::Cpus;

/// A one-way transport under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mech {
    Amp,
    Bare,
    AmpRecord,
    AmpReserve,
    AmpMemcpy,
    BareMemcpy,
    BareStride8,
    BareFence,
    Pipe,
    Unix,
    Ipc,
}

impl Mech {
    const ALL: [Self; 11] = [
        Self::Amp,
        Self::Bare,
        Self::AmpRecord,
        Self::AmpReserve,
        Self::AmpMemcpy,
        Self::BareMemcpy,
        Self::BareStride8,
        Self::BareFence,
        Self::Pipe,
        Self::Unix,
        Self::Ipc,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Amp => "amp ring (segment)",
            Self::Bare => "bare SPSC ring",
            Self::AmpRecord => "amp ring, record = slot (8 B header + payload)",
            Self::AmpReserve => "amp ring, reserve/commit per record",
            Self::AmpMemcpy => "amp ring, payload memcpy'd",
            Self::BareMemcpy => "bare ring, payload memcpy'd",
            Self::BareStride8 => "bare ring, slot = record + 8 B",
            Self::BareFence => "bare ring + SeqCst fence per publish",
            Self::Pipe => "pipe",
            Self::Unix => "Unix stream socket",
            Self::Ipc => "ipc-channel (bytes)",
        }
    }

    /// Records moved per run in full mode: sized so one run takes roughly 0.2–1 s here.
    fn count(self, size: usize, batch: usize) -> u64 {
        match (self, size > 64, batch > 1) {
            (Self::Pipe | Self::Unix, false, false) => 1_000_000,
            (Self::Pipe | Self::Unix, false, true) => 10_000_000,
            (Self::Pipe | Self::Unix, true, false) => 500_000,
            (Self::Pipe | Self::Unix, true, true) => 2_000_000,
            (Self::Ipc, false, false) | (Self::Ipc, true, false) => 300_000,
            (Self::Ipc, false, true) => 4_000_000,
            (Self::Ipc, true, true) => 1_000_000,
            // Every shared-memory ring (amp and bare, all variants).
            (_, false, _) => 10_000_000,
            (_, true, _) => 3_000_000,
        }
    }

    fn run(self, cpus: &Cpus, t: Tput) -> Res<f64> {
        let rate = match self {
            Self::Amp => amp::throughput(cpus, t, amp::Writer::Many, Footprint::Payload)?,
            Self::AmpRecord => amp::throughput(cpus, t, amp::Writer::Many, Footprint::Record)?,
            Self::Bare => bare::throughput(cpus, t, bare::Variant::Plain)?,
            Self::AmpReserve => {
                amp::throughput(cpus, t, amp::Writer::PerRecord, Footprint::Payload)?
            }
            Self::AmpMemcpy => amp::throughput(
                cpus,
                Tput {
                    fill: Fill::Memcpy,
                    ..t
                },
                amp::Writer::Many,
                Footprint::Payload,
            )?,
            Self::BareMemcpy => bare::throughput(
                cpus,
                Tput {
                    fill: Fill::Memcpy,
                    ..t
                },
                bare::Variant::Plain,
            )?,
            Self::BareStride8 => bare::throughput(cpus, t, bare::Variant::Stride8)?,
            Self::BareFence => bare::throughput(cpus, t, bare::Variant::Fence)?,
            Self::Pipe => baselines::stream_throughput(cpus, Stream::Pipe, t)?,
            Self::Unix => baselines::stream_throughput(cpus, Stream::Unix, t)?,
            Self::Ipc => baselines::ipc_throughput(cpus, t)?,
        };
        Ok(rate.per_sec())
    }
}

/// A round-trip measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rtt {
    AmpHot,
    BareHot,
    AmpWoken,
    AmpBlocking,
    Eventfd,
    Pipe,
    Unix,
    Ipc,
}

impl Rtt {
    const ALL: [Self; 8] = [
        Self::AmpHot,
        Self::BareHot,
        Self::AmpWoken,
        Self::AmpBlocking,
        Self::Eventfd,
        Self::Pipe,
        Self::Unix,
        Self::Ipc,
    ];

    /// Idle gap before each ping in the woken run: longer than the ~25 µs spin window, so the
    /// responder is asleep on its eventfd when the ping arrives.
    const WOKEN_GAP: Duration = Duration::from_micros(100);

    fn label(self) -> (&'static str, &'static str) {
        match self {
            Self::AmpHot => ("amp ring (segment)", "hot: both sides spin"),
            Self::BareHot => ("bare SPSC ring", "hot: both sides spin"),
            Self::AmpWoken => (
                "amp ring + doorbells",
                "woken: 100 µs idle gap, responder asleep, default spin-then-eventfd wait",
            ),
            Self::AmpBlocking => (
                "amp ring + doorbells",
                "blocking: spin 0, both sides sleep on eventfd",
            ),
            Self::Eventfd => ("eventfd (8 B counter)", "blocking read on both sides"),
            Self::Pipe => ("pipe (two)", "blocking read on both sides"),
            Self::Unix => ("Unix stream socket", "blocking read on both sides"),
            Self::Ipc => ("ipc-channel (bytes)", "blocking recv on both sides"),
        }
    }

    fn hot(self) -> bool {
        matches!(self, Self::AmpHot | Self::BareHot)
    }

    fn run(self, cpus: &Cpus, n: usize, warmup: usize) -> Res<Latency> {
        match self {
            Self::AmpHot => amp::rtt_hot(cpus, n, warmup),
            Self::BareHot => bare::rtt_hot(cpus, n, warmup),
            Self::AmpWoken => amp::rtt_woken(cpus, n, warmup, Some(Self::WOKEN_GAP), None),
            Self::AmpBlocking => amp::rtt_woken(cpus, n, warmup, None, Some(0)),
            Self::Eventfd => baselines::eventfd_rtt(cpus, n, warmup),
            Self::Pipe => baselines::stream_rtt(cpus, Stream::Pipe, n, warmup),
            Self::Unix => baselines::stream_rtt(cpus, Stream::Unix, n, warmup),
            Self::Ipc => baselines::ipc_rtt(cpus, n, warmup),
        }
    }
}

const SIZES: [usize; 2] = [64, 1024];
const BATCHES: [usize; 2] = [1, 32];

/// Run sizes: full, or scaled down by `AMP_BENCH_QUICK=1`.
#[derive(Debug, Clone)]
struct Plan {
    quick: bool,
    reps: usize,
    /// Divides every throughput record count.
    scale: u64,
    hot_rtts: usize,
    woken_rtts: usize,
    /// `AMP_BENCH_ONLY`: comma-separated substrings; only mechanisms whose label contains one
    /// of them run (the summary then shows NaN for what was skipped).
    only: Vec<String>,
    /// `AMP_BENCH_DEBUG=1`: print the share of CPU time other work used during each measurement.
    debug: bool,
    /// `AMP_BENCH_SIZES`: comma-separated record sizes to measure (default: all of [`SIZES`]).
    sizes: Vec<usize>,
}

impl Plan {
    fn from_env() -> Self {
        let quick = std::env::var("AMP_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let only = std::env::var("AMP_BENCH_ONLY")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let (scale, hot_rtts, woken_rtts) = if quick {
            (40, 10_000, 300)
        } else {
            (1, 100_000, 5_000)
        };
        let sizes = std::env::var("AMP_BENCH_SIZES")
            .unwrap_or_default()
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .filter(|s| SIZES.contains(s))
            .collect::<Vec<usize>>();
        let reps = std::env::var("AMP_BENCH_REPS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .filter(|&n: &usize| n > 0);
        Self {
            quick,
            reps: reps.unwrap_or(if quick { 3 } else { 5 }),
            scale,
            hot_rtts,
            woken_rtts,
            only,
            debug: std::env::var("AMP_BENCH_DEBUG").is_ok_and(|v| !v.is_empty() && v != "0"),
            sizes: if sizes.is_empty() {
                SIZES.to_vec()
            } else {
                sizes
            },
        }
    }

    fn selected(&self, label: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| label.contains(o.as_str()))
    }
}

/// Results of every repetition.
#[derive(Debug, Default)]
struct Results {
    /// (mechanism, size, batch) → msgs/s per repetition.
    tput: Vec<((Mech, usize, usize), Vec<Run>)>,
    /// mechanism → latencies per repetition.
    rtt: Vec<(Rtt, Vec<Latency>)>,
    /// Load average when the run started (other work on the machine skews every figure).
    load_before: Option<f64>,
    /// Measurements kept although other work used the machine meanwhile.
    disturbed: usize,
    /// Measurements kept.
    measurements: usize,
    /// Measurements repeated because other work used the machine meanwhile.
    retried: usize,
    /// Time left for waiting for a quiet machine before repeating a measurement.
    wait_budget: Duration,
}

/// One throughput measurement.
#[derive(Debug, Clone, Copy)]
struct Run {
    msgs_per_s: f64,
    /// Other processes used more than [`DISTURBED`] of the machine during it.
    disturbed: bool,
}

/// Share of the machine's CPU time used by other processes above which a measurement counts as
/// disturbed and is run again (at most [`ATTEMPTS`] attempts in full mode).
const DISTURBED: f64 = 0.10;
const ATTEMPTS: usize = 3;

/// Longest total wait for a quiet machine over a whole run.
const WAIT_BUDGET: Duration = Duration::from_secs(90);

/// Waits (from `budget`) until other work leaves the machine alone for half a second.
fn wait_quiet(budget: &mut Duration, cpus: usize) {
    let start = std::time::Instant::now();
    while !budget.is_zero() {
        let before = proc::CpuSample::now();
        std::thread::sleep(Duration::from_millis(500));
        let after = proc::CpuSample::now();
        let quiet = match (before, after) {
            (Some(b), Some(a)) => b.foreign_share(&a, cpus) < DISTURBED / 2.0,
            _ => true,
        };
        *budget = budget.saturating_sub(Duration::from_millis(500));
        if quiet {
            break;
        }
    }
    let waited = start.elapsed();
    if waited > Duration::from_secs(1) {
        eprintln!(
            "  waited {:.0} s for the machine to calm down",
            waited.as_secs_f64()
        );
    }
}

/// Runs `f` until no other work disturbed it (or the attempts run out); returns its value and
/// whether the kept attempt was disturbed. Quick mode does not repeat (its runs are too short to
/// judge).
fn measure<T>(
    plan: &Plan,
    r: &mut Results,
    what: &str,
    mut f: impl FnMut() -> Res<T>,
) -> Res<(T, bool)> {
    let cpus = proc::online_cpus();
    let attempts = if plan.quick { 1 } else { ATTEMPTS };
    let mut attempt = 1;
    loop {
        let before = proc::CpuSample::now();
        let value = f()?;
        let after = proc::CpuSample::now();
        let foreign = match (before, after) {
            (Some(b), Some(a)) => b.foreign_share(&a, cpus),
            _ => 0.0,
        };
        if plan.debug {
            eprintln!("  {what}: other work {:.1}% of the CPUs", foreign * 100.0);
        }
        let disturbed = !plan.quick && foreign > DISTURBED;
        if !disturbed || attempt >= attempts {
            r.measurements += 1;
            r.disturbed += usize::from(disturbed);
            return Ok((value, disturbed));
        }
        eprintln!(
            "  {what}: other work used {:.0}% of the CPUs meanwhile; repeating",
            foreign * 100.0
        );
        r.retried += 1;
        wait_quiet(&mut r.wait_budget, cpus);
        attempt += 1;
    }
}

impl Results {
    fn tput_runs(&mut self, key: (Mech, usize, usize)) -> &mut Vec<Run> {
        if let Some(i) = self.tput.iter().position(|(k, _)| *k == key) {
            return &mut self.tput[i].1;
        }
        self.tput.push((key, Vec::new()));
        &mut self.tput.last_mut().expect("just pushed").1
    }

    fn rtt_runs(&mut self, key: Rtt) -> &mut Vec<Latency> {
        if let Some(i) = self.rtt.iter().position(|(k, _)| *k == key) {
            return &mut self.rtt[i].1;
        }
        self.rtt.push((key, Vec::new()));
        &mut self.rtt.last_mut().expect("just pushed").1
    }

    fn tput_median(&self, key: (Mech, usize, usize)) -> f64 {
        self.tput
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(f64::NAN, |(_, v)| {
                median(&v.iter().map(|r| r.msgs_per_s).collect::<Vec<_>>())
            })
    }

    /// Median over repetitions of `a ÷ b`, each ratio taken within one repetition (the two ran
    /// back to back, so they share the host's placement of the two vCPUs, which can change
    /// between repetitions and moves every figure by up to 3×).
    fn ratio(&self, a: (Mech, usize, usize), b: (Mech, usize, usize)) -> f64 {
        let runs = |key| self.tput.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
        match (runs(a), runs(b)) {
            (Some(a), Some(b)) => median(
                &a.iter()
                    .zip(b)
                    .map(|(x, y)| x.msgs_per_s / y.msgs_per_s)
                    .collect::<Vec<_>>(),
            ),
            _ => f64::NAN,
        }
    }

    fn rtt_median(&self, key: Rtt, p: f64) -> f64 {
        self.rtt
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(f64::NAN, |(_, v)| {
                median(&v.iter().map(|l| l.pct(p)).collect::<Vec<_>>())
            })
    }
}

fn mark(disturbed: bool) -> &'static str {
    if disturbed {
        "*"
    } else {
        ""
    }
}

fn fmt_ns(v: f64) -> String {
    if v < 10_000.0 {
        format!("{v:.0} ns")
    } else {
        format!("{:.1} µs", v / 1000.0)
    }
}

fn fmt_ratio(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}×")
    } else {
        format!("{v:.2}×")
    }
}

fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    // Counted from /proc/cpuinfo: this process is pinned, so its own affinity shows one CPU.
    let cpus = std::fs::read_to_string("/proc/cpuinfo").map_or(0, |s| {
        s.lines().filter(|l| l.starts_with("processor")).count()
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cpus} online CPUs, Linux {}", kernel.trim())
}

/// The 1-minute load average (`None` if unreadable).
fn load_1min() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn report(plan: &Plan, cpus: &Cpus, r: &Results) -> String {
    let mut out = String::new();
    let mode = if plan.quick {
        "QUICK (AMP_BENCH_QUICK=1: small counts, figures are rough)"
    } else {
        "full"
    };
    let _ = writeln!(out, "# bench_ring — {}", machine());
    let _ = writeln!(
        out,
        "# mode: {mode}; {} repetitions, medians shown; {}",
        plan.reps,
        cpus.describe()
    );
    if r.disturbed > 0 {
        let _ = writeln!(
            out,
            "# WARNING: {} of {} measurements ran while other work used more than {:.0}% of the CPUs \
             (marked * below, even after {} repeats in all): those figures are unreliable",
            r.disturbed,
            r.measurements,
            DISTURBED * 100.0,
            r.retried,
        );
    } else if r.retried > 0 {
        let _ = writeln!(
            out,
            "# {} measurements were repeated because other work used the CPUs",
            r.retried
        );
    }
    if let Some(load) = r.load_before {
        let _ = writeln!(
            out,
            "# 1-minute load average before the run: {load:.2} (it lags; each measurement is \
             checked for other work on its own)"
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "One-way throughput, child → parent, every word of every record checked (word i = seq + i)."
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| mechanism | record | batch | M msg/s | GB/s | amp ring ÷ this (per-run median) | runs (M msg/s) |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---|");
    for size in SIZES {
        for batch in BATCHES {
            for mech in Mech::ALL {
                let Some((_, runs)) = r.tput.iter().find(|(k, _)| *k == (mech, size, batch)) else {
                    continue;
                };
                let m = r.tput_median((mech, size, batch));
                let runs: Vec<String> = runs
                    .iter()
                    .map(|v| format!("{:.2}{}", v.msgs_per_s / 1e6, mark(v.disturbed)))
                    .collect();
                let ratio = if mech == Mech::Amp {
                    "–".to_owned()
                } else {
                    fmt_ratio(r.ratio((Mech::Amp, size, batch), (mech, size, batch)))
                };
                let _ = writeln!(
                    out,
                    "| {} | {} B | {batch} | {:.2} | {:.2} | {ratio} | {} |",
                    mech.label(),
                    size,
                    m / 1e6,
                    m * size as f64 / 1e9,
                    runs.join(" / "),
                );
            }
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Round trip of a 64-byte message (parent → child → parent)."
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| mechanism | mode | p50 | p99 | wakeups/RTT | runs p50 |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---|");
    for (key, runs) in &r.rtt {
        let (name, mode) = key.label();
        let p50s: Vec<String> = runs
            .iter()
            .map(|l| format!("{}{}", fmt_ns(l.pct(50.0)), mark(l.disturbed)))
            .collect();
        let wake = runs
            .iter()
            .filter_map(|l| l.wakeups_per_rtt)
            .map(|w| format!("{w:.2}"))
            .collect::<Vec<_>>();
        let wake = if wake.is_empty() {
            "–".to_owned()
        } else {
            wake.join(" / ")
        };
        let _ = writeln!(
            out,
            "| {name} | {mode} | {} | {} | {wake} | {} |",
            fmt_ns(r.rtt_median(*key, 50.0)),
            fmt_ns(r.rtt_median(*key, 99.0)),
            p50s.join(" / "),
        );
    }
    let ring = r.tput_median((Mech::Amp, 64, 32));
    let vs_bare = r.ratio((Mech::Amp, 64, 32), (Mech::Bare, 64, 32));
    let vs_ipc = r.ratio((Mech::Amp, 64, 32), (Mech::Ipc, 64, 1));
    let hot = r.rtt_median(Rtt::AmpHot, 50.0);
    let woken = r.rtt_median(Rtt::AmpWoken, 50.0);
    let worst_vs_bare = SIZES
        .iter()
        .flat_map(|&s| BATCHES.iter().map(move |&b| (s, b)))
        .map(|(s, b)| (r.ratio((Mech::Amp, s, b), (Mech::Bare, s, b)), s, b))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let _ = writeln!(out);
    let _ = writeln!(out, "Summary: amp ring 64 B batch 32 vs bare ring 64 B batch 32 and vs ipc-channel one 64 B message per send.");
    let _ = writeln!(
        out,
        "- ring ≥ 0.8× bare: {} ({})",
        verdict(vs_bare >= 0.8),
        fmt_ratio(vs_bare)
    );
    if let Some((w, s, b)) = worst_vs_bare {
        let _ = writeln!(
            out,
            "  (lowest ratio over all four configurations: {} at {s} B batch {b})",
            fmt_ratio(w)
        );
    }
    let _ = writeln!(
        out,
        "- ring ≥ 50× ipc-channel: {} ({})",
        verdict(vs_ipc >= 50.0),
        fmt_ratio(vs_ipc)
    );
    let _ = writeln!(
        out,
        "- hot RTT p50 ≤ 1 µs: {} ({})",
        verdict(hot <= 1000.0),
        fmt_ns(hot)
    );
    let _ = write!(
        out,
        "ring_msgs_per_s={ring:.0} ring_vs_bare={vs_bare:.2}x ring_vs_ipc_channel={vs_ipc:.1}x \
         rtt_hot_p50_ns={hot:.0} rtt_woken_p50_ns={woken:.0}"
    );
    out
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_ring: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let plan = Plan::from_env();
    let cpus = Cpus::pin_self()?;
    eprintln!(
        "bench_ring: {} mode, {}",
        if plan.quick { "quick" } else { "full" },
        cpus.describe()
    );
    let mut results = Results {
        load_before: load_1min(),
        wait_budget: WAIT_BUDGET,
        ..Results::default()
    };
    for rep in 1..=plan.reps {
        for &size in &plan.sizes {
            for batch in BATCHES {
                for mech in Mech::ALL {
                    if !plan.selected(mech.label()) {
                        continue;
                    }
                    let count = (mech.count(size, batch) / plan.scale).max(1000);
                    let what = format!("{} {size} B batch {batch}", mech.label());
                    let (rate, disturbed) = measure(&plan, &mut results, &what, || {
                        mech.run(
                            &cpus,
                            Tput {
                                size,
                                batch,
                                count,
                                fill: Fill::Words,
                            },
                        )
                        .map_err(|e| format!("{what}: {e}").into())
                    })?;
                    eprintln!(
                        "  rep {rep}/{}: {:<20} {size:>4} B batch {batch:>2}: {:>8.2} M msg/s",
                        plan.reps,
                        mech.label(),
                        rate / 1e6
                    );
                    results.tput_runs((mech, size, batch)).push(Run {
                        msgs_per_s: rate,
                        disturbed,
                    });
                }
            }
        }
        for key in Rtt::ALL {
            if !plan.selected(key.label().0) {
                continue;
            }
            let n = if key.hot() {
                plan.hot_rtts
            } else {
                plan.woken_rtts
            };
            let what = format!("{} RTT ({})", key.label().0, key.label().1);
            let (mut lat, disturbed) = measure(&plan, &mut results, &what, || {
                key.run(&cpus, n, (n / 10).max(100))
                    .map_err(|e| format!("{what}: {e}").into())
            })?;
            lat.disturbed = disturbed;
            eprintln!(
                "  rep {rep}/{}: RTT {:<22} {:<12} p50 {:>9}  p99 {:>9}",
                plan.reps,
                key.label().0,
                key.label().1.split(':').next().unwrap_or(""),
                fmt_ns(lat.pct(50.0)),
                fmt_ns(lat.pct(99.0)),
            );
            results.rtt_runs(key).push(lat);
        }
    }
    println!("{}", report(&plan, &cpus, &results));
    Ok(())
}
