//! The controller on the simulator: convergence, canaries, advise mode, autoscaling, and the
//! scaled-down `hetero-burst-degrade` scenario.

use super::{auto, phase, sim};
use crate::adapt::sim::scenario::{self, headline_p99, HEADLINE_PHASES};
use crate::adapt::sim::{run, Class, ParamResponse, ScaleSim, SimPolicy, WorkerSpec, GROUP};
use crate::adapt::{Change, DecisionState, GroupScale, Mode, ParamSpec, Target};
use crate::config::RouterPolicy;
use std::collections::BTreeMap;
use std::time::Duration;

#[test]
fn gradient2_converges_near_the_true_capacity_of_a_worker() {
    // One worker serving 8 tasks at once, offered 150 % of what it can do: the window settles
    // a little above 8 (Gradient2 keeps a queue allowance of ~0.5·sqrt(limit)).
    let r = run(&sim(
        vec![WorkerSpec {
            speed: 1.0,
            slots: 8,
        }],
        vec![phase("saturated", 30.0, 1.5)],
        Some(auto()),
    ));
    let w = r.windows[0];
    assert!((8..=14).contains(&w), "window {w} for a capacity of 8");
    assert_eq!(r.lost, 0);
    // A worker serving one task at a time settles at 1: any more only queues behind it.
    let r = run(&sim(
        vec![WorkerSpec {
            speed: 1.0,
            slots: 1,
        }],
        vec![phase("saturated", 30.0, 1.5)],
        Some(auto()),
    ));
    assert_eq!(r.windows[0], 1);
    // And one of 3 slots near 3.
    let r = run(&sim(
        vec![WorkerSpec {
            speed: 1.0,
            slots: 3,
        }],
        vec![phase("saturated", 30.0, 1.5)],
        Some(auto()),
    ));
    assert!(
        (3..=6).contains(&r.windows[0]),
        "window {} for a capacity of 3",
        r.windows[0]
    );
}

/// Ten serial workers whose speed depends on a `chunk` parameter (best at 8; at 4 or 16 a
/// task takes 3 × as long), starting at `initial`, with `proposal` proposed at 3 s.
fn canary_sim(initial: f64, proposal: f64) -> crate::adapt::sim::SimResult {
    let mut c = sim(
        vec![
            WorkerSpec {
                speed: 1.0,
                slots: 1
            };
            10
        ],
        vec![phase("steady", 30.0, 0.25)],
        Some(auto()),
    );
    c.param = Some(ParamResponse {
        name: "chunk".into(),
        initial,
        optimum: 8.0,
        penalty: 2.0,
    });
    c.proposals = vec![(
        Duration::from_secs(3),
        BTreeMap::from([("chunk".to_owned(), proposal)]),
    )];
    run(&c)
}

#[test]
fn a_worse_canary_is_rolled_back() {
    let r = canary_sim(8.0, 16.0);
    assert!(r.proposal_errors.is_empty(), "{:?}", r.proposal_errors);
    let canary = r
        .decision_log
        .iter()
        .rev()
        .find(|d| matches!(d.change, Change::Canary { .. }))
        .expect("a canary decision");
    assert_eq!(canary.state, DecisionState::RolledBack);
    let Target::Workers { units } = &canary.target else {
        panic!("a canary targets workers");
    };
    assert_eq!(units.len(), 2, "20 % of 10 workers");
    let Change::Canary { control, .. } = &canary.change else {
        unreachable!()
    };
    assert_eq!(control.len(), 2);
    assert!(units.iter().all(|u| !control.contains(u)));
    assert!(canary.evidence.after["mann_whitney_p"] < 0.01);
    assert!(canary.evidence.after["canary_p50_ms"] > canary.evidence.after["control_p50_ms"]);
    assert!(r
        .decision_log
        .iter()
        .any(|d| matches!(d.change, Change::Rollback { .. }) && d.state == DecisionState::Applied));
    // Every worker ends on the old value; only the two canaries ever had the new one.
    assert!(
        r.params.values().all(|p| p["chunk"] == 8.0),
        "{:?}",
        r.params
    );
    let tried: Vec<usize> = r
        .adjustments
        .iter()
        .filter(|a| a.2["chunk"] == 16.0)
        .map(|a| a.1)
        .collect();
    assert_eq!(&tried, units);
    assert_eq!(r.lost, 0);
}

#[test]
fn a_better_canary_is_adopted_and_rolled_out_in_bounded_steps() {
    let r = canary_sim(16.0, 8.0);
    let canary = r
        .decision_log
        .iter()
        .rev()
        .find(|d| matches!(d.change, Change::Canary { .. }))
        .expect("a canary decision");
    assert_eq!(canary.state, DecisionState::Adopted);
    assert!(canary.evidence.after["canary_p50_ms"] < canary.evidence.after["control_p50_ms"]);
    let adopt = r
        .decision_log
        .iter()
        .rev()
        .find(|d| matches!(d.change, Change::Adopt { .. }))
        .expect("an adopt decision");
    assert_eq!(adopt.evidence.after["rolled_out"], 10.0);
    assert!(
        r.params.values().all(|p| p["chunk"] == 8.0),
        "{:?}",
        r.params
    );
    // Never more than a quarter of the workers changed at once: group Adjusts by time.
    let mut per_step: BTreeMap<u64, usize> = BTreeMap::new();
    for (t, _, p) in &r.adjustments {
        assert_eq!(p["chunk"], 8.0);
        *per_step.entry((t * 1000.0).round() as u64).or_default() += 1;
    }
    assert!(per_step.values().all(|&n| n <= 2), "{per_step:?}");
    assert_eq!(per_step.values().sum::<usize>(), 10);
}

#[test]
fn the_tuner_climbs_to_the_best_parameter_through_canaries() {
    let mut cfg = auto();
    cfg.params.insert(
        crate::adapt::sim::KIND.into(),
        vec![ParamSpec {
            name: "chunk".into(),
            initial: 16.0,
            min: 4.0,
            max: 32.0,
            step: 4.0,
        }],
    );
    let mut c = sim(
        vec![
            WorkerSpec {
                speed: 1.0,
                slots: 1
            };
            10
        ],
        vec![phase("steady", 90.0, 0.25)],
        Some(cfg),
    );
    c.param = Some(ParamResponse {
        name: "chunk".into(),
        initial: 16.0,
        optimum: 8.0,
        penalty: 2.0,
    });
    let r = run(&c);
    // The log holds each event: keep every decision's last state.
    let mut last = BTreeMap::new();
    for d in &r.decision_log {
        if let Change::Canary { to, .. } = &d.change {
            last.insert(d.id, (to["chunk"], d.state));
        }
    }
    let verdicts: Vec<(f64, DecisionState)> = last.into_values().collect();
    // 20 is worse than 16; the other direction: 12 and 8 better, 4 worse again.
    assert!(verdicts.len() >= 4, "{verdicts:?}");
    assert_eq!(
        verdicts[..4],
        [
            (20.0, DecisionState::RolledBack),
            (12.0, DecisionState::Adopted),
            (8.0, DecisionState::Adopted),
            (4.0, DecisionState::RolledBack),
        ]
    );
    assert!(
        r.params.values().all(|p| p["chunk"] == 8.0),
        "{:?}",
        r.params
    );
}

#[test]
fn advise_mode_leaves_the_router_alone() {
    let mut cfg = auto();
    cfg.modes
        .insert(crate::adapt::sim::KIND.into(), Mode::Advise);
    let base = scenario::hetero_burst_degrade(0.2, 1);
    let mut c = scenario::variant(&base, SimPolicy::Router(RouterPolicy::LeastLoaded), false);
    c.adapt = Some(cfg);
    c.keep_decisions = true;
    let r = run(&c);
    assert!(
        r.windows.iter().all(|&w| w == 64),
        "windows untouched: {:?}",
        r.windows
    );
    assert!(!r.actions.contains_key("set_window") && !r.actions.contains_key("set_batch"));
    assert!(r.decisions > 0);
    assert!(r
        .decision_log
        .iter()
        .all(|d| matches!(d.state, DecisionState::Proposed | DecisionState::Superseded)));
}

#[test]
fn the_autoscaler_scales_up_under_backlog_and_down_after_a_cooldown_with_a_drain() {
    let mut cfg = auto();
    cfg.groups.insert(
        GROUP.into(),
        GroupScale {
            min: 2,
            max: 6,
            mode: Mode::Auto,
        },
    );
    cfg.scale.up_after = Duration::from_secs(1);
    cfg.scale.up_cooldown = Duration::from_secs(2);
    cfg.scale.down_cooldown = Duration::from_secs(5);
    let mut c = sim(
        vec![
            WorkerSpec {
                speed: 1.0,
                slots: 1
            };
            2
        ],
        vec![phase("flood", 10.0, 2.2), phase("quiet", 40.0, 0.1)],
        Some(cfg),
    );
    c.scale = Some(ScaleSim {
        start_delay: Duration::from_millis(500),
    });
    let r = run(&c);
    let peak = r.replicas.iter().map(|&(_, n)| n).max().unwrap();
    assert!(peak >= 4, "scaled up: {:?}", r.replicas);
    let first_up = r
        .decision_log
        .iter()
        .find(|d| matches!(d.change, Change::Replicas { from, to, .. } if to > from))
        .expect("a scale-up");
    assert!(
        first_up.at_s >= 1.0 && first_up.at_s < 5.0,
        "after up_after: {}",
        first_up.at_s
    );
    let downs: Vec<_> = r
        .decision_log
        .iter()
        .filter(|d| matches!(d.change, Change::Replicas { from, to, .. } if to < from))
        .collect();
    assert!(!downs.is_empty(), "scaled down");
    // Down only once idle through the cooldown, counted from the flood's end at 10 s.
    assert!(
        downs[0].at_s >= 15.0,
        "first scale-down at {}",
        downs[0].at_s
    );
    for d in &downs {
        let Change::Replicas { drain, .. } = d.change else {
            unreachable!()
        };
        assert!(drain.is_some(), "a scale-down drains a replica first");
    }
    assert!(r.actions["drain"] >= 1);
    let end = r.replicas.last().unwrap().1;
    assert!(end < peak && end >= 2, "{:?}", r.replicas);
    assert_eq!(r.lost, 0);
}

#[test]
fn the_simulation_is_deterministic() {
    let base = scenario::hetero_burst_degrade(0.1, 5);
    let c = scenario::variant(&base, SimPolicy::Router(RouterPolicy::PeakEwma), true);
    let (a, b) = (run(&c), run(&c));
    assert_eq!(a.tasks, b.tasks);
    assert_eq!(a.windows, b.windows);
    assert_eq!(a.decisions, b.decisions);
}

#[test]
fn hetero_burst_degrade_scaled_down() {
    // The benchmark's scenario at a fifth of its length (9 s of virtual time per run).
    let base = scenario::hetero_burst_degrade(0.2, 1);
    let rr = run(&scenario::variant(
        &base,
        SimPolicy::Router(RouterPolicy::RoundRobin),
        false,
    ));
    let oracle = run(&scenario::variant(&base, SimPolicy::Oracle, false));
    for policy in [RouterPolicy::RoundRobin, RouterPolicy::LeastLoaded] {
        let on = run(&scenario::variant(&base, SimPolicy::Router(policy), true));
        let (p_on, p_rr, p_or) = (headline_p99(&on), headline_p99(&rr), headline_p99(&oracle));
        assert!(
            p_on * 3.0 <= p_rr,
            "{policy:?}: interactive p99 {p_on} ms vs round-robin {p_rr} ms"
        );
        assert!(
            p_on <= 2.0 * p_or,
            "{policy:?}: interactive p99 {p_on} ms vs oracle {p_or} ms"
        );
        let adapt = on.adapt_s.expect("load moved off the degraded worker");
        assert!(adapt <= 2.0, "{policy:?}: {adapt} s");
        assert_eq!(on.lost, 0);
        assert_eq!(on.dead_lettered, on.poison, "only poison is dead-lettered");
        let hit = on.stats(&HEADLINE_PHASES, Class::Interactive).hit_rate;
        assert!(hit > 0.98, "deadline hit rate {hit}");
    }
    assert_eq!(rr.lost, 0);
    assert_eq!(rr.dead_lettered, rr.poison);
    assert!(
        rr.adapt_s.is_none(),
        "with a window of 64 round-robin leaves the backlog there"
    );
}
