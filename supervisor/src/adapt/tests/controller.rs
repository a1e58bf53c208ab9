//! The controller driven directly: AIMD, stalls, warm-up, advise mode, timeouts, batches.

use crate::adapt::{AdaptAction, AdaptConfig, ApplyError, Change, Controller, DecisionState, Mode};
use std::time::{Duration, Instant};

const KIND: &str = "k";

fn config(mode: Mode) -> AdaptConfig {
    let mut c = AdaptConfig::default();
    c.modes.insert(KIND.into(), mode);
    c.window.initial = 8.0;
    c.window.warmup = Duration::ZERO;
    c
}

/// A closed loop on one worker: each round fills its window (as the controller last set it,
/// or `fixed`), reports a waiting queue, completes every task after `latency` (failing those
/// for which `fail(round, i)`), then ticks. Returns every action.
fn rounds(
    c: &mut Controller,
    now: &mut Instant,
    n: usize,
    latency: Duration,
    fixed: Option<u32>,
    fail: impl Fn(usize, u32) -> bool,
) -> Vec<AdaptAction> {
    let mut out = Vec::new();
    for round in 0..n {
        let window = fixed.unwrap_or_else(|| c.window(KIND, 0).unwrap());
        for _ in 0..window {
            c.observe_dispatch(KIND, 0, *now);
        }
        c.observe_queue(KIND, 10, Duration::from_millis(50), *now);
        *now += latency;
        for i in 0..window {
            c.observe_completion(KIND, 0, latency, !fail(round, i), *now);
        }
        *now += Duration::from_millis(100);
        out.extend(c.tick(*now));
    }
    out
}

fn windows(actions: &[AdaptAction]) -> Vec<u32> {
    actions
        .iter()
        .filter_map(|a| match a {
            AdaptAction::SetWindow { window, .. } => Some(*window),
            _ => None,
        })
        .collect()
}

#[test]
fn aimd_backs_off_on_errors_and_grows_back_additively() {
    let mut c = Controller::new(config(Mode::Auto), 1).unwrap();
    let mut now = Instant::now();
    c.observe_worker_added(KIND, 0, "g", now);
    let _ = c.tick(now);
    assert_eq!(c.window(KIND, 0), Some(8));
    // Half of every round fails: each update cuts the limit by 10 %.
    let before = c.limit(KIND, 0).unwrap();
    let actions = rounds(
        &mut c,
        &mut now,
        10,
        Duration::from_millis(5),
        None,
        |_, i| i % 2 == 0,
    );
    let after = c.limit(KIND, 0).unwrap();
    assert!(after <= before * 0.5, "limit {before} -> {after}");
    let w = windows(&actions);
    assert!(
        w.windows(2).all(|p| p[1] < p[0]),
        "windows only go down: {w:?}"
    );
    let aimd: Vec<_> = c
        .decisions()
        .filter(|d| d.evidence.reason.contains("AIMD: error burst"))
        .collect();
    assert!(aimd.len() >= 2, "decisions name the rule");
    for d in aimd {
        let ratio = d.evidence.after["limit"] / d.evidence.before["limit"];
        assert!(
            (ratio - 0.9).abs() < 1e-9,
            "multiplicative decrease x0.9, got {ratio}"
        );
    }
    let d = c
        .decisions()
        .rev()
        .find(|d| matches!(d.change, Change::Window { .. }))
        .unwrap();
    assert!(d.evidence.before.contains_key("error_rate") && d.evidence.after.contains_key("limit"));
    // Errors stop (two rounds flush the last failures); latency stays flat and the window
    // binding: additive increase during the hold (+0.1 per update), not a jump.
    let _ = rounds(
        &mut c,
        &mut now,
        2,
        Duration::from_millis(5),
        None,
        |_, _| false,
    );
    let low = c.limit(KIND, 0).unwrap();
    let _ = rounds(
        &mut c,
        &mut now,
        15,
        Duration::from_millis(5),
        None,
        |_, _| false,
    );
    let grown = c.limit(KIND, 0).unwrap();
    assert!(
        grown > low && grown <= low + 1.0 + 1e-9,
        "limit {low} -> {grown}"
    );
}

#[test]
fn a_stalled_worker_goes_to_the_minimum_window_at_once() {
    let mut c = Controller::new(config(Mode::Auto), 1).unwrap();
    let mut now = Instant::now();
    c.observe_worker_added(KIND, 0, "g", now);
    let _ = rounds(
        &mut c,
        &mut now,
        5,
        Duration::from_millis(5),
        None,
        |_, _| false,
    );
    let start = c.window(KIND, 0).unwrap();
    assert!(start >= 4);
    c.observe_dispatch(KIND, 0, now);
    c.observe_dispatch(KIND, 0, now);
    let mut actions = Vec::new();
    for _ in 0..4 {
        now += Duration::from_millis(100);
        actions.extend(c.tick(now));
    }
    assert!(
        windows(&actions).is_empty(),
        "400 ms without completion is not a stall yet"
    );
    for _ in 0..3 {
        now += Duration::from_millis(100);
        actions.extend(c.tick(now));
    }
    assert_eq!(windows(&actions), [1]);
    let d = c
        .decisions()
        .rev()
        .find(|d| matches!(d.change, Change::Window { .. }))
        .unwrap();
    assert!(
        d.evidence.reason.starts_with("stall"),
        "{}",
        d.evidence.reason
    );
}

#[test]
fn new_workers_warm_up_with_a_reduced_window() {
    let mut cfg = config(Mode::Auto);
    cfg.window.warmup = Duration::from_secs(2);
    let mut c = Controller::new(cfg, 1).unwrap();
    let t0 = Instant::now();
    c.observe_worker_added(KIND, 0, "g", t0);
    assert_eq!(
        c.window_for(KIND, 0),
        Some(4),
        "half of the initial limit 8"
    );
    assert!(windows(&c.tick(t0 + Duration::from_secs(1))).is_empty());
    let w = windows(&c.tick(t0 + Duration::from_millis(2100)));
    assert_eq!(w, [8]);
    assert_eq!(
        c.decisions().last().unwrap().evidence.reason,
        "warm-up over: full window"
    );
}

#[test]
fn advise_mode_changes_nothing_until_applied() {
    let mut c = Controller::new(config(Mode::Advise), 1).unwrap();
    let mut now = Instant::now();
    c.observe_worker_added(KIND, 0, "g", now);
    assert_eq!(
        c.window_for(KIND, 0),
        None,
        "advise: the router keeps its own window"
    );
    let before = c.window(KIND, 0).unwrap();
    // Errors on every round, with the window held fixed (nothing is applied).
    let actions = rounds(
        &mut c,
        &mut now,
        6,
        Duration::from_millis(5),
        Some(before),
        |_, i| i % 2 == 0,
    );
    assert!(
        actions.iter().all(|a| matches!(a, AdaptAction::Event(_))),
        "advise mode emits events only: {actions:?}"
    );
    assert_eq!(c.window(KIND, 0), Some(before), "nothing applied");
    let proposed: Vec<_> = c
        .decisions()
        .filter(|d| d.state == DecisionState::Proposed)
        .collect();
    assert_eq!(
        proposed.len(),
        1,
        "one live proposal per setting; older ones superseded"
    );
    let superseded = c
        .decisions()
        .find(|d| d.state == DecisionState::Superseded)
        .expect("a superseded proposal")
        .id;
    let id = proposed[0].id;
    let Change::Window { to, .. } = proposed[0].change else {
        panic!("a window proposal");
    };
    assert!(to < before);
    assert_eq!(
        c.apply(superseded, now),
        Err(ApplyError::NotProposed {
            id: superseded,
            state: DecisionState::Superseded
        })
    );
    let applied = c.apply(id, now).unwrap();
    assert_eq!(applied.len(), 2);
    assert_eq!(
        applied[0],
        AdaptAction::SetWindow {
            kind: KIND.into(),
            unit: 0,
            window: to
        }
    );
    assert!(matches!(&applied[1], AdaptAction::Event(d) if d.state == DecisionState::Applied));
    assert_eq!(c.window(KIND, 0), Some(to));
    assert_eq!(c.decision(id).unwrap().state, DecisionState::Applied);
    assert!(matches!(
        c.apply(id, now),
        Err(ApplyError::NotProposed { .. })
    ));
    assert_eq!(c.apply(9999, now), Err(ApplyError::Unknown(9999)));
}

#[test]
fn describe_reports_windows_profiles_and_resources() {
    let mut c = Controller::new(config(Mode::Auto), 1).unwrap();
    let mut now = Instant::now();
    c.observe_worker_added(KIND, 0, "g", now);
    let sample = |cpu, ctx| crate::adapt::ResourceSample {
        cpu_percent: cpu,
        rss_bytes: 1 << 20,
        ctx_switches: ctx,
    };
    c.observe_resources(0, sample(50.0, 1000), now);
    let _ = rounds(
        &mut c,
        &mut now,
        10,
        Duration::from_millis(5),
        None,
        |_, _| false,
    );
    c.observe_resources(0, sample(70.0, 1500), now);
    let d = c.describe(now);
    let w = &d["kinds"][KIND]["workers"][0];
    assert_eq!(w["unit"], 0);
    assert_eq!(w["window"], c.window(KIND, 0).unwrap());
    assert!(w["profile"]["long_samples"].as_u64().unwrap() > 0);
    assert_eq!(w["resources"]["last"]["cpu_percent"], 70.0);
    let ctx = w["resources"]["ctx_per_s"].as_f64().unwrap();
    assert!(
        (ctx - 500.0 / 1.05).abs() < 1.0,
        "500 switches over 1.05 s: {ctx}"
    );
    assert_eq!(d["kinds"][KIND]["mode"], "auto");
    assert!(d["decisions"].is_array());
}

#[test]
fn off_mode_only_observes() {
    let mut c = Controller::new(config(Mode::Off), 1).unwrap();
    let mut now = Instant::now();
    c.observe_worker_added(KIND, 0, "g", now);
    let actions = rounds(
        &mut c,
        &mut now,
        10,
        Duration::from_millis(5),
        Some(8),
        |_, _| true,
    );
    assert!(actions.is_empty());
    assert_eq!(c.decisions().count(), 0);
    assert!(
        c.profile(KIND, 0, now).unwrap().error_rate > 0.9,
        "profiles are kept"
    );
}

#[test]
fn the_timeout_follows_the_observed_tail() {
    let mut c = Controller::new(config(Mode::Auto), 1).unwrap();
    let t0 = Instant::now();
    c.observe_worker_added(KIND, 0, "g", t0);
    let now = t0 + Duration::from_millis(500);
    for i in 0..1000u64 {
        c.observe_completion(
            KIND,
            0,
            Duration::from_micros(100 + 100 * (i % 1000)),
            true,
            now,
        );
    }
    let actions = c.tick(now);
    let timeout = actions
        .iter()
        .find_map(|a| match a {
            AdaptAction::SetTimeout { timeout, .. } => Some(*timeout),
            _ => None,
        })
        .expect("a timeout from 1000 samples");
    // p99 of 0.1 ..= 100 ms is 99 ms; ×4 = 396 ms (HdrHistogram keeps 2 significant digits).
    let ms = timeout.as_secs_f64() * 1e3;
    assert!((390.0..=402.0).contains(&ms), "timeout {ms} ms");
    assert_eq!(c.kind_settings(KIND).unwrap().1, Some(timeout));
}

#[test]
fn the_batch_grows_within_the_latency_target_and_halves_above_it() {
    let mut c = Controller::new(config(Mode::Auto), 1).unwrap();
    let mut now = Instant::now();
    c.set_kind(KIND, 10, None, now);
    c.observe_worker_added(KIND, 0, "g", now);
    let batches = |actions: &[AdaptAction]| -> Vec<u32> {
        actions
            .iter()
            .filter_map(|a| match a {
                AdaptAction::SetBatch { batch, .. } => Some(*batch),
                _ => None,
            })
            .collect()
    };
    // 5 ms tasks with a queue: +1 per short window (1 s).
    let fast = batches(&rounds(
        &mut c,
        &mut now,
        40,
        Duration::from_millis(5),
        Some(8),
        |_, _| false,
    ));
    assert!(fast.len() >= 3, "{fast:?}");
    assert!(
        fast.iter().zip(11..).all(|(b, want)| *b == want),
        "+1 each time: {fast:?}"
    );
    // p99 above the 250 ms target: halved.
    let slow = batches(&rounds(
        &mut c,
        &mut now,
        10,
        Duration::from_millis(400),
        Some(8),
        |_, _| false,
    ));
    assert_eq!(slow[0], fast.last().unwrap() / 2, "{slow:?}");
    let d = c
        .decisions()
        .rev()
        .find(|d| matches!(d.change, Change::Batch { .. }))
        .unwrap();
    assert!(d.evidence.before["p99_ms"] > 250.0);
}

#[test]
fn reconfigure_changes_the_modes_the_file_changed_and_keeps_runtime_ones() {
    let mut c = Controller::new(config(Mode::Off), 1).unwrap();
    let now = Instant::now();
    c.observe_worker_added(KIND, 0, "g", now);
    c.observe_worker_added("other", 1, "g", now);
    // A runtime switch of `other`.
    let _ = c.set_mode("other", Mode::Advise, now);
    // The file now says auto for KIND and nothing new for `other`.
    let mut next = config(Mode::Auto);
    next.scale.up_after = Duration::from_secs(7);
    let _ = c.reconfigure(next, now).unwrap();
    assert_eq!(c.mode(KIND), Mode::Auto);
    assert_eq!(c.mode("other"), Mode::Advise);
    assert_eq!(c.config().scale.up_after, Duration::from_secs(7));
    // A setting that cannot work changes nothing.
    let mut bad = config(Mode::Off);
    bad.window.min = 10;
    bad.window.max = 2;
    assert!(c.reconfigure(bad, now).is_err());
    assert_eq!(c.mode(KIND), Mode::Auto);
    assert_eq!(c.config().scale.up_after, Duration::from_secs(7));
}

#[test]
fn costs_follow_each_workers_service_time_in_auto_mode_only() {
    let mut c = Controller::new(config(Mode::Auto), 1).unwrap();
    let mut now = Instant::now();
    let speeds = [10u64, 10, 40, 5];
    for u in 0..speeds.len() {
        c.observe_worker_added(KIND, u, "g", now);
    }
    let mut costs = std::collections::BTreeMap::new();
    for _ in 0..60 {
        // One task at a time per worker: every RTT is un-queued, i.e. the service time.
        for (u, ms) in speeds.iter().enumerate() {
            c.observe_dispatch(KIND, u, now);
            c.observe_completion(KIND, u, Duration::from_millis(*ms), true, now);
        }
        now += Duration::from_millis(100);
        for a in c.tick(now) {
            if let AdaptAction::SetCost { unit, cost, .. } = a {
                costs.insert(unit, cost);
            }
        }
    }
    let cost = |u: usize| costs[&u].unwrap();
    // Median service time 10 ms: 1, 1, 4, 0.5.
    assert!((cost(2) / cost(0) - 4.0).abs() < 0.5, "{costs:?}");
    assert!((cost(3) / cost(0) - 0.5).abs() < 0.1, "{costs:?}");
    assert!((cost(0) - 1.0).abs() < 0.2, "{costs:?}");
    // Leaving auto mode forgets every cost in the router.
    let _ = c.set_mode(KIND, Mode::Advise, now);
    now += Duration::from_millis(100);
    let cleared: Vec<_> = c
        .tick(now)
        .into_iter()
        .filter_map(|a| match a {
            AdaptAction::SetCost { unit, cost, .. } => Some((unit, cost)),
            _ => None,
        })
        .collect();
    assert_eq!(cleared.len(), speeds.len(), "{cleared:?}");
    assert!(cleared.iter().all(|(_, c)| c.is_none()));
    now += Duration::from_millis(100);
    assert!(!c
        .tick(now)
        .iter()
        .any(|a| matches!(a, AdaptAction::SetCost { .. })));
}

#[test]
fn batched_observations_read_like_one_call_per_task() {
    // The event loop reports a dispatch batch and a pass's completions at once: the controller
    // must end in the same state, and decide the same, as when told task by task.
    let mut single = Controller::new(config(Mode::Auto), 7).unwrap();
    let mut batched = Controller::new(config(Mode::Auto), 7).unwrap();
    let mut now = Instant::now();
    for c in [&mut single, &mut batched] {
        c.observe_worker_added(KIND, 0, "g", now);
        c.observe_worker_added(KIND, 1, "g", now);
        let _ = c.tick(now);
    }
    let mut single_actions = Vec::new();
    let mut batched_actions = Vec::new();
    // What is in flight per unit, oldest first: each pass completes about half of it, so
    // completions overlap later dispatches (`ahead` above zero across passes).
    let mut in_flight: [std::collections::VecDeque<(Duration, bool)>; 2] = Default::default();
    for round in 0..40u64 {
        for (unit, flight) in in_flight.iter_mut().enumerate() {
            let count = 1 + u32::try_from((round * 7 + unit as u64 * 3) % 11).unwrap();
            for _ in 0..count {
                single.observe_dispatch(KIND, unit, now);
            }
            batched.observe_dispatches(KIND, unit, count, now);
            // Latencies that vary, some failures: the limiter's samples and `ahead` matter.
            flight.extend((0..count).map(|i| {
                let ms = 1 + (round + u64::from(i) * 5 + unit as u64) % 9;
                (Duration::from_millis(ms), (round + u64::from(i)) % 13 != 0)
            }));
            now += Duration::from_micros(300);
            let done = flight.len().div_ceil(2);
            let samples: Vec<(Duration, bool)> = flight.drain(..done).collect();
            for &(latency, ok) in &samples {
                single.observe_completion(KIND, unit, latency, ok, now);
            }
            batched.observe_completions(KIND, unit, samples.iter().copied(), now);
            // Nothing to report is no report.
            batched.observe_completions(KIND, unit, [], now);
            batched.observe_dispatches(KIND, unit, 0, now);
        }
        for c in [&mut single, &mut batched] {
            c.observe_queue(KIND, 5, Duration::from_millis(20), now);
        }
        now += Duration::from_millis(60);
        single_actions.extend(single.tick(now));
        batched_actions.extend(batched.tick(now));
    }
    assert!(!single_actions.is_empty(), "the rounds move the windows");
    assert_eq!(
        format!("{batched_actions:?}"),
        format!("{single_actions:?}")
    );
    assert_eq!(batched.describe(now), single.describe(now));
}
