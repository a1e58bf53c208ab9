//! The policies on their own: picks, estimates, the bandit's arm choice.

use super::*;
use crate::config::RouterPolicy;
use std::collections::BTreeMap;

#[test]
fn make_router_builds_every_policy() {
    for (policy, name) in [
        (RouterPolicy::RoundRobin, "round_robin"),
        (RouterPolicy::LeastLoaded, "least_loaded"),
        (RouterPolicy::PeakEwma, "peak_ewma"),
        (RouterPolicy::Learned, "learned"),
    ] {
        let mut r = make_router(policy, 5, DEFAULT_DECAY);
        assert_eq!(r.name(), name);
        assert_eq!(policy_name(policy), name);
        assert_eq!(r.describe(t0())["policy"], name);
        assert_eq!(r.pick(t0(), &[]), None, "{name}: no candidate, no pick");
        assert_eq!(
            r.pick(t0(), &cands(&[(7, 3)])),
            Some(0),
            "{name}: the only one"
        );
    }
    fn send<T: Send>(_: &T) {}
    send(&make_router(RouterPolicy::Learned, 1, DEFAULT_DECAY));
}

#[test]
fn eligibility_is_about_credit() {
    let c = |in_flight, window| Candidate {
        unit: 0,
        in_flight,
        window,
    };
    assert!(c(0, 1).has_credit());
    assert!(c(7, 8).has_credit());
    assert!(!c(8, 8).has_credit());
    assert!(!c(9, 8).has_credit(), "window lowered below in_flight");
    assert!(!c(0, 0).has_credit());
    let mut v = vec![c(8, 8), c(1, 8), c(0, 0)];
    v[1].unit = 4;
    retain_eligible(&mut v);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].unit, 4);
}

#[test]
fn round_robin_takes_turns_and_skips_the_full() {
    let mut r = RoundRobin::new();
    let now = t0();
    let all = cands(&[(0, 0), (1, 0), (2, 0)]);
    let picks: Vec<_> = (0..7)
        .map(|_| all[r.pick(now, &all).unwrap()].unit)
        .collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
    // Unit 2 has no credit (absent from the candidates): 1 is next, then wrap to 0.
    let some = cands(&[(0, 0), (1, 0)]);
    let picks: Vec<_> = (0..3)
        .map(|_| some[r.pick(now, &some).unwrap()].unit)
        .collect();
    assert_eq!(picks, [1, 0, 1]);
    // A new unit joins the rotation in order.
    let more = cands(&[(0, 0), (1, 0), (2, 0), (5, 0)]);
    let picks: Vec<_> = (0..5)
        .map(|_| more[r.pick(now, &more).unwrap()].unit)
        .collect();
    assert_eq!(picks, [2, 5, 0, 1, 2]);
    assert_eq!(r.describe(now)["picks"], 15);
}

#[test]
fn least_loaded_never_picks_the_most_loaded_and_breaks_ties_at_random() {
    let mut r = LeastLoaded::new(9);
    let now = t0();
    // Two candidates: always the less loaded one.
    let two = cands(&[(0, 3), (1, 2)]);
    assert!((0..100).all(|_| r.pick(now, &two) == Some(1)));
    // Power of two choices: the strictly most loaded never wins; the least loaded wins most.
    let four = cands(&[(0, 5), (1, 1), (2, 9), (3, 4)]);
    let mut wins = [0u32; 4];
    for _ in 0..4000 {
        wins[r.pick(now, &four).unwrap()] += 1;
    }
    assert_eq!(wins[2], 0);
    // Unit 1 wins whenever it is drawn: P = 1/2.
    assert!((1800..2200).contains(&wins[1]), "{wins:?}");
    // Ties: all equal, all chosen about equally.
    let equal = cands(&[(0, 2), (1, 2), (2, 2), (3, 2)]);
    let mut wins = [0u32; 4];
    for _ in 0..4000 {
        wins[r.pick(now, &equal).unwrap()] += 1;
    }
    assert!(wins.iter().all(|&w| (850..1150).contains(&w)), "{wins:?}");
}

#[test]
fn seeded_policies_replay() {
    let now = t0();
    let four = cands(&[(0, 1), (1, 1), (2, 1), (3, 1)]);
    for policy in [RouterPolicy::LeastLoaded, RouterPolicy::PeakEwma] {
        let run = |seed| {
            let mut r = make_router(policy, seed, DEFAULT_DECAY);
            (0..200)
                .map(|_| r.pick(now, &four).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}

fn near(a: Duration, b: Duration) -> bool {
    a.abs_diff(b) < Duration::from_micros(1)
}

#[test]
fn peak_ewma_jumps_up_and_decays_down() {
    let decay = Duration::from_secs(10);
    let mut r = PeakEwma::new(1, decay);
    let t = t0();
    assert_eq!(r.estimate(0, t), DEFAULT_RTT, "nothing measured");
    r.on_complete(0, 10 * MS, true, t);
    assert!(near(r.estimate(0, t), 10 * MS));
    // A higher sample replaces the estimate at once (peak-sensitive).
    r.on_complete(0, 50 * MS, true, t + MS);
    assert!(near(r.estimate(0, t + MS), 50 * MS));
    // A lower sample after exactly one decay time: e·w + s·(1 − w) with w = 1/e.
    let t2 = t + MS + decay;
    r.on_complete(0, 10 * MS, true, t2);
    let w = (-1.0f64).exp();
    let want = Duration::from_secs_f64(0.050 * w + 0.010 * (1.0 - w));
    assert!(near(r.estimate(0, t2), want), "{:?}", r.estimate(0, t2));
    // Without samples it decays towards 0 (another decay time: × 1/e).
    let later = r.estimate(0, t2 + decay);
    assert!(near(later, want.mul_f64(w)), "{later:?}");
    // A lower sample right after: almost no weight.
    r.on_complete(0, MS, true, t2 + MS);
    assert!(r.estimate(0, t2 + MS) > want.mul_f64(0.99));
}

#[test]
fn peak_ewma_assumes_unmeasured_workers_are_typical() {
    let mut r = PeakEwma::new(1, DEFAULT_DECAY);
    let t = t0();
    r.on_complete(0, 2 * MS, true, t);
    r.on_complete(1, 4 * MS, true, t);
    r.on_complete(2, 30 * MS, true, t);
    assert!(near(r.estimate(9, t), 4 * MS), "median of 2, 4, 30");
    r.on_complete(3, 6 * MS, true, t);
    assert!(near(r.estimate(9, t), 5 * MS), "median of 2, 4, 6, 30");
    r.on_removed(2);
    r.on_removed(3);
    assert!(near(r.estimate(9, t), 3 * MS));
    assert_eq!(r.describe(t)["units"].as_array().unwrap().len(), 2);
}

#[test]
fn peak_ewma_weighs_latency_by_load() {
    let mut r = PeakEwma::new(1, DEFAULT_DECAY);
    let t = t0();
    r.on_complete(0, MS, true, t);
    r.on_complete(1, 4 * MS, true, t);
    // Equal load: the faster one.
    let c = cands(&[(0, 2), (1, 2)]);
    assert!((0..50).all(|_| r.pick(t, &c) == Some(0)));
    // 1 ms × (4 + 1) = 5 > 4 ms × (0 + 1) = 4: the slower, idle one.
    let c = cands(&[(0, 4), (1, 0)]);
    assert!((0..50).all(|_| r.pick(t, &c) == Some(1)));
    // 1 ms × 3 = 3 < 4: the faster.
    let c = cands(&[(0, 2), (1, 0)]);
    assert!((0..50).all(|_| r.pick(t, &c) == Some(0)));
}

#[test]
fn peak_ewma_does_not_reward_failing_fast() {
    let mut r = PeakEwma::new(1, DEFAULT_DECAY);
    let t = t0();
    r.on_complete(0, 5 * MS, true, t);
    r.on_complete(1, 5 * MS, true, t);
    for k in 1..=3 {
        r.on_complete(1, Duration::from_micros(10), false, t + k * MS);
    }
    assert!(r.estimate(1, t + 3 * MS) >= 39 * MS, "doubled three times");
    let c = cands(&[(0, 0), (1, 0)]);
    assert!((0..50).all(|_| r.pick(t + 3 * MS, &c) == Some(0)));
    assert_eq!(r.describe(t)["units"][1]["failures"], 3);
}

/// A fixed-choice arm: always picks `unit` if it is a candidate.
#[derive(Debug)]
struct Always(usize, &'static str);

impl Router for Always {
    fn name(&self) -> &'static str {
        self.1
    }
    fn pick(&mut self, _: Instant, c: &[Candidate]) -> Option<usize> {
        c.iter().position(|c| c.unit == self.0).or(Some(0))
    }
    fn on_dispatch(&mut self, _: usize, _: Instant) {}
    fn on_complete(&mut self, _: usize, _: Duration, _: bool, _: Instant) {}
    fn on_abandoned(&mut self, _: usize, _: Instant) {}
    fn on_removed(&mut self, _: usize) {}
    fn describe(&self, _: Instant) -> serde_json::Value {
        serde_json::json!({ "policy": self.1 })
    }
}

/// Drives `learned` over units 0..3 whose tasks take `latency[unit]`, completing each task
/// right away; returns the arm chosen for each window (sampled at each dispatch, deduplicated
/// per window by the describe counter).
fn drive(r: &mut Learned, latency: &[Duration], tasks: u32, t: &mut Instant) -> Vec<&'static str> {
    let c = cands(&[(0, 0), (1, 0), (2, 0)]);
    let mut arms = Vec::new();
    for _ in 0..tasks {
        let unit = c[r.pick(*t, &c).unwrap()].unit;
        r.on_dispatch(unit, *t);
        *t += MS;
        r.on_complete(unit, latency[unit], true, *t);
        arms.push(r.active_arm());
    }
    arms
}

fn learned_with_fixed_arms(seed: u64, config: LearnedConfig) -> Learned {
    Learned::with_arms(
        seed,
        vec![
            Box::new(Always(0, "to_0")),
            Box::new(Always(1, "to_1")),
            Box::new(Always(2, "to_2")),
        ],
        config,
    )
}

#[test]
fn learned_tries_every_arm_then_settles_on_the_best() {
    let config = LearnedConfig {
        window_tasks: 50,
        ..LearnedConfig::default()
    };
    let mut r = learned_with_fixed_arms(7, config);
    let mut t = t0();
    let latency = [8 * MS, 2 * MS, 5 * MS];
    let arms = drive(&mut r, &latency, 150, &mut t);
    assert_eq!(&arms[..50], &["to_0"; 50]);
    assert_eq!(&arms[50..100], &["to_1"; 50]);
    assert_eq!(&arms[100..150], &["to_2"; 50]);
    let arms = drive(&mut r, &latency, 50 * 200, &mut t);
    let best = arms.iter().filter(|&&a| a == "to_1").count();
    assert!(
        best * 10 >= arms.len() * 9,
        "best arm {best} of {}",
        arms.len()
    );
    let d = r.describe(t);
    let active = d["arms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["arm"] == r.active_arm())
        .unwrap();
    assert_eq!(active["state"]["policy"], r.active_arm());
    let tails: Vec<_> = d["arms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["last_tail_us"].as_f64().unwrap())
        .collect();
    assert_eq!(tails, [8000.0, 2000.0, 5000.0]);
    assert!(d["scored"].as_u64().unwrap() > 190);
}

#[test]
fn learned_follows_a_change() {
    let config = LearnedConfig {
        window_tasks: 50,
        ..LearnedConfig::default()
    };
    let mut r = learned_with_fixed_arms(11, config);
    let mut t = t0();
    let _ = drive(&mut r, &[8 * MS, 2 * MS, 5 * MS], 50 * 100, &mut t);
    assert_eq!(r.active_arm(), "to_1");
    // Unit 1 turns slow; unit 2 is now the best.
    let arms = drive(&mut r, &[8 * MS, 20 * MS, 3 * MS], 50 * 300, &mut t);
    let late = &arms[arms.len() / 2..];
    let best = late.iter().filter(|&&a| a == "to_2").count();
    assert!(best * 10 >= late.len() * 8, "to_2 {best} of {}", late.len());
}

#[test]
fn learned_scores_a_window_by_its_own_tasks() {
    // Tasks stay in flight across the window boundary; their latency counts for the window
    // that dispatched them, and a window is scored only when its last task is back.
    let config = LearnedConfig {
        window_tasks: 20,
        min_tasks: 20,
        ..LearnedConfig::default()
    };
    let mut r = learned_with_fixed_arms(1, config);
    let t = t0();
    let c = cands(&[(0, 0), (1, 0), (2, 0)]);
    for _ in 0..20 {
        let unit = c[r.pick(t, &c).unwrap()].unit;
        assert_eq!(unit, 0);
        r.on_dispatch(unit, t);
    }
    // The next pick opens window 2 (arm to_1) while window 1's tasks are all in flight.
    let unit = c[r.pick(t, &c).unwrap()].unit;
    assert_eq!(unit, 1);
    r.on_dispatch(unit, t);
    r.on_complete(1, 3 * MS, true, t);
    for k in 0..19 {
        r.on_complete(0, Duration::from_millis(10 + k), true, t);
    }
    assert_eq!(r.describe(t)["scored"], 0, "one task of window 1 still out");
    r.on_complete(0, 100 * MS, true, t);
    let d = r.describe(t);
    assert_eq!(d["scored"], 1);
    // p95 of 20 samples (nearest rank) is the 19th: 28 ms, not the 3 ms of window 2's task.
    assert_eq!(d["arms"][0]["last_tail_us"], 28_000.0);
    assert_eq!(d["arms"][1]["scored"], 0);
}

#[test]
fn learned_does_not_wait_forever_for_a_removed_worker() {
    let config = LearnedConfig {
        window_tasks: 20,
        min_tasks: 5,
        ..LearnedConfig::default()
    };
    let mut r = learned_with_fixed_arms(1, config);
    let t = t0();
    let c = cands(&[(0, 0), (1, 0), (2, 0)]);
    for _ in 0..20 {
        let unit = c[r.pick(t, &c).unwrap()].unit;
        r.on_dispatch(unit, t);
    }
    let _ = r.pick(t, &c); // closes window 1
    for _ in 0..10 {
        r.on_complete(0, MS, true, t);
    }
    r.on_abandoned(0, t);
    assert_eq!(r.describe(t)["scored"], 0);
    r.on_removed(0); // the other 9 will never come back
    let d = r.describe(t);
    assert_eq!(d["scored"], 1, "{d}");
    assert_eq!(d["arms"][0]["scored"], 1);
}

#[test]
fn learned_replays_with_the_same_seed() {
    let run = |seed| {
        let config = LearnedConfig {
            window_tasks: 20,
            ..LearnedConfig::default()
        };
        let mut r = learned_with_fixed_arms(seed, config);
        let mut t = t0();
        drive(&mut r, &[3 * MS, 2 * MS, 2 * MS], 20 * 100, &mut t)
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

#[test]
fn learned_forwards_observations_to_every_arm() {
    let mut r = Learned::new(3, DEFAULT_DECAY, LearnedConfig::default());
    let t = t0();
    let c = cands(&[(0, 0), (1, 0)]);
    assert_eq!(r.active_arm(), "round_robin");
    let mut by_unit = BTreeMap::new();
    for k in 0..10 {
        let unit = c[r.pick(t, &c).unwrap()].unit;
        r.on_dispatch(unit, t);
        r.on_complete(unit, if unit == 0 { MS } else { 9 * MS }, true, t + k * MS);
        *by_unit.entry(unit).or_insert(0) += 1;
    }
    assert_eq!(
        by_unit,
        BTreeMap::from([(0, 5), (1, 5)]),
        "round robin routed"
    );
    // The peak_ewma arm saw the completions although it never routed.
    let d = r.describe(t + 10 * MS);
    assert_eq!(d["active"], "round_robin");
    assert_eq!(d["arms"][2]["arm"], "peak_ewma");
    let units = d["arms"][2]["state"]["units"].as_array().unwrap();
    assert_eq!(units.len(), 2);
    assert!(
        (units[1]["rtt_us"].as_f64().unwrap() - 9000.0).abs() < 5.0,
        "{units:?}"
    );
}
