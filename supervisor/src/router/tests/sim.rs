//! Simulated runs (virtual time, seeded): four workers, one four times slower, at 70 % of
//! capacity; every policy routes; shares and latencies compared.

use super::super::sim::{run, SimConfig, SimResult};
use crate::config::RouterPolicy::{self, Learned, LeastLoaded, PeakEwma, RoundRobin};

/// Mean service times: three workers at 1 ms, one at 4 ms.
const SERVICE: [u64; 4] = [1, 1, 1, 4];
const SLOW: usize = 3;
const LOAD: f64 = 0.7;

fn sim(policy: RouterPolicy, tasks: u64, seed: u64) -> SimResult {
    let mut c = SimConfig::new(policy, &SERVICE, LOAD, tasks);
    c.seed = seed;
    c.sample_every = 50;
    run(&c)
}

fn p99(r: &SimResult) -> std::time::Duration {
    r.quantile_after(r.latency.len() / 10, 0.99)
}

fn report(name: &str, r: &SimResult) {
    eprintln!(
        "{name:>12}: slow share {:.3}, p50 {:?}, p99 {:?}, completed {:?}",
        r.share(SLOW),
        r.quantile_after(r.latency.len() / 10, 0.5),
        p99(r),
        r.completed_by
    );
}

/// Without a binding credit window round robin is blind: it gives the slow worker a quarter
/// of the tasks (more than it can serve, so its backlog and the tail grow without bound). The
/// load-aware policies send it far fewer and keep the tail short.
#[test]
fn load_aware_policies_spare_the_slow_worker() {
    let run_with = |policy| {
        let mut c = SimConfig::new(policy, &SERVICE, LOAD, 12_000);
        c.window = 1_000_000;
        run(&c)
    };
    let (rr, ll, pe) = (
        run_with(RoundRobin),
        run_with(LeastLoaded),
        run_with(PeakEwma),
    );
    for (name, r) in [
        ("round_robin", &rr),
        ("least_loaded", &ll),
        ("peak_ewma", &pe),
    ] {
        report(name, r);
    }
    assert!((rr.share(SLOW) - 0.25).abs() < 0.01);
    assert!(ll.share(SLOW) < 0.6 * rr.share(SLOW));
    assert!(pe.share(SLOW) < 0.6 * rr.share(SLOW));
    assert!(p99(&ll) < p99(&rr));
    assert!(p99(&pe) < p99(&rr));
}

/// With credits (window 8) round robin skips the slow worker while its window is full, so it
/// already gives it only about its capacity (≈ 11 % of the tasks at this load), and
/// `least_loaded`, which balances tasks in flight, sends it about as many. What they change is
/// the tail: `least_loaded` keeps the slow worker's backlog as short as the others' (about
/// half round robin's p99), `peak_ewma` also weighs its latency and sends it markedly fewer
/// (p99 halved again).
#[test]
fn with_credits_load_aware_policies_cut_the_tail() {
    let (rr, ll, pe) = (
        sim(RoundRobin, 12_000, 1),
        sim(LeastLoaded, 12_000, 1),
        sim(PeakEwma, 12_000, 1),
    );
    for (name, r) in [
        ("round_robin", &rr),
        ("least_loaded", &ll),
        ("peak_ewma", &pe),
    ] {
        report(name, r);
    }
    let capacity_share = 0.25 / (3.25 * LOAD);
    assert!(
        (rr.share(SLOW) - capacity_share).abs() < 0.015,
        "{}",
        rr.share(SLOW)
    );
    assert!(ll.share(SLOW) <= rr.share(SLOW));
    assert!(pe.share(SLOW) < 0.75 * rr.share(SLOW));
    assert!(p99(&ll).as_secs_f64() < 0.7 * p99(&rr).as_secs_f64());
    assert!(p99(&pe).as_secs_f64() < 0.7 * p99(&ll).as_secs_f64());
}

/// `learned` converges to the better policy: after warm-up it routes with the fixed policy of
/// the lowest p99 (here `peak_ewma`, about half `least_loaded`'s) most of the time, and its own
/// tail stays near that policy's.
#[test]
fn learned_converges_to_the_best_policy() {
    let n = 40_000;
    let warm_up = 8_000;
    let learned = sim(Learned, n, 3);
    let fixed: Vec<(&str, std::time::Duration)> = [
        ("round_robin", RoundRobin),
        ("least_loaded", LeastLoaded),
        ("peak_ewma", PeakEwma),
    ]
    .into_iter()
    .map(|(name, p)| (name, sim(p, n, 3).quantile_after(warm_up as usize, 0.99)))
    .collect();
    let &(best_name, best) = fixed.iter().min_by_key(|(_, p99)| *p99).unwrap();
    let chosen = learned.arm_fraction(warm_up, |a| a == best_name);
    let load_aware = learned.arm_fraction(warm_up, |a| a == "least_loaded" || a == "peak_ewma");
    let p99 = learned.quantile_after(warm_up as usize, 0.99);
    eprintln!(
        "learned: {best_name} (best fixed p99 {best:?} of {fixed:?}) {chosen:.2} of the time after warm-up, a load-aware arm {load_aware:.2}; p99 {p99:?}; slow share {:.3}",
        learned.share(SLOW)
    );
    assert_eq!(best_name, "peak_ewma", "{fixed:?}");
    assert!(
        chosen >= 0.8,
        "the best policy only {chosen:.2} of the time"
    );
    assert!(
        load_aware >= 0.95,
        "a load-aware arm only {load_aware:.2} of the time"
    );
    assert!(
        p99.as_secs_f64() <= best.as_secs_f64() * 1.5,
        "learned p99 {p99:?} vs best fixed {best:?}"
    );
}

#[test]
fn switching_policies_and_losing_workers_mid_run_loses_and_duplicates_nothing() {
    let mut c = SimConfig::new(RoundRobin, &SERVICE, LOAD, 6_000);
    c.switches = vec![
        (1_000, PeakEwma),
        (2_000, Learned),
        (3_000, LeastLoaded),
        (4_000, RoundRobin),
        (5_000, PeakEwma),
    ];
    // The slow worker goes away with a full window and comes back; a fast one too.
    c.removals = vec![(1_500, SLOW, 2_500), (3_500, 0, 3_600)];
    let r = run(&c);
    assert!(
        r.completions.iter().all(|&n| n == 1),
        "every task completed exactly once"
    );
    assert_eq!(r.completed_by.iter().sum::<u64>(), 6_000);
    assert!(r.requeued > 0, "removals took tasks back");
}

#[test]
fn the_same_seed_gives_the_same_run() {
    for policy in [RoundRobin, LeastLoaded, PeakEwma, Learned] {
        let a = sim(policy, 3_000, 9);
        assert_eq!(a, sim(policy, 3_000, 9), "{policy:?}");
        assert_ne!(a, sim(policy, 3_000, 10), "{policy:?}: the seed matters");
    }
}
