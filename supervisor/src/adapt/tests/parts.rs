//! Statistics, profiles, configuration, decisions.

use crate::adapt::{
    mann_whitney, normal_cdf, AdaptConfig, AdaptConfigError, Change, Decision, DecisionState,
    Evidence, Profile, Target, WindowedHistogram,
};
use std::time::{Duration, Instant};

#[test]
fn mann_whitney_matches_the_textbook_values() {
    // Completely separated samples of 5: U = 0; normal approximation with continuity
    // correction: z = (0 - 12.5 + 0.5) / sqrt(25 * 11 / 12) = -2.5067, p = 0.01219 (SciPy's
    // `mannwhitneyu(a, b, method="asymptotic")` gives the same).
    let a = [1.0, 2.0, 3.0, 4.0, 5.0];
    let b = [6.0, 7.0, 8.0, 9.0, 10.0];
    let t = mann_whitney(&a, &b).unwrap();
    assert_eq!(t.u, 0.0);
    assert_eq!(t.prob_greater, 0.0);
    assert!((t.z + 2.5067).abs() < 1e-3, "z = {}", t.z);
    assert!((t.p - 0.012_19).abs() < 1e-4, "p = {}", t.p);
    // Symmetric the other way round.
    let r = mann_whitney(&b, &a).unwrap();
    assert_eq!(r.u, 25.0);
    assert!((r.p - t.p).abs() < 1e-12);
    // Ties count half: identical samples give U = n²/2 and no evidence.
    let same = mann_whitney(&[1.0, 1.0, 2.0], &[1.0, 1.0, 2.0]).unwrap();
    assert_eq!(same.u, 4.5);
    assert!(same.p > 0.99);
    // All equal: variance zero, p = 1.
    assert_eq!(mann_whitney(&[3.0; 4], &[3.0; 6]).unwrap().p, 1.0);
    assert!(mann_whitney(&[], &[1.0]).is_none());
}

#[test]
fn normal_cdf_is_accurate() {
    for (x, want) in [
        (0.0, 0.5),
        (1.0, 0.841_344_7),
        (-1.959_964, 0.025),
        (3.0, 0.998_650_1),
    ] {
        assert!(
            (normal_cdf(x) - want).abs() < 1e-6,
            "Φ({x}) = {}",
            normal_cdf(x)
        );
    }
}

#[test]
fn windowed_histogram_merges_slots_and_forgets_old_ones() {
    let t0 = Instant::now();
    let mut w = WindowedHistogram::new(Duration::from_secs(1), 3, t0);
    let at = |s: f64| t0 + Duration::from_secs_f64(s);
    for i in 0..100 {
        w.record(at(0.5), Duration::from_millis(10 + i % 10), true); // slot 0: 10..19 ms
    }
    w.record(at(1.5), Duration::from_millis(500), false); // slot 1
    let h = w.merged(at(1.9), 3);
    assert_eq!(h.len(), 101);
    assert!(h.value_at_quantile(0.5) >= 14_000 && h.value_at_quantile(0.5) <= 15_100);
    assert!(h.max() >= 495_000, "the 500 ms sample is in the window");
    assert_eq!(w.counts(at(1.9), 3), (101, 1));
    assert_eq!(w.counts(at(1.9), 1), (1, 1), "the last slot alone");
    // At t = 3.2 s slot 0 is out of the 3-slot window; at 4.6 s slot 1 too.
    assert_eq!(w.counts(at(3.2), 3), (1, 1));
    w.record(at(4.6), Duration::from_millis(1), true);
    assert_eq!(w.counts(at(4.6), 3), (1, 0));
}

#[test]
fn profile_percentiles_come_from_the_merged_window() {
    let t0 = Instant::now();
    let mut p = Profile::new(
        Duration::from_millis(100),
        10,
        Duration::from_secs(1),
        10,
        t0,
    );
    // Interval A: 100 × 1 ms. Interval B: 98 × 1 ms and 2 × 900 ms. Averaging the intervals'
    // p99s would say 450 ms; the p99 of the 200 samples is 1 ms (only 1 % is above).
    for _ in 0..100 {
        p.record(
            t0 + Duration::from_millis(10),
            Duration::from_millis(1),
            true,
        );
    }
    for i in 0..100 {
        let l = if i < 2 { 900 } else { 1 };
        p.record(
            t0 + Duration::from_millis(150),
            Duration::from_millis(l),
            i != 0,
        );
    }
    let s = p.summary(t0 + Duration::from_millis(190));
    assert_eq!(s.short_samples, 200);
    assert!(s.short_p99_us <= 1_100, "p99 {} µs", s.short_p99_us);
    assert!(s.long_p99_us <= 1_100);
    assert_eq!(s.error_rate, 1.0 / 200.0);
}

#[test]
fn invalid_configurations_are_refused_with_the_field_named() {
    assert!(AdaptConfig::default().validate().is_ok());
    let mut c = AdaptConfig::default();
    c.window.min = 10;
    c.window.max = 5;
    let e = c.validate().unwrap_err();
    assert!(matches!(e, AdaptConfigError::Bounds { .. }));
    assert!(e.to_string().contains("window"), "{e}");
    let c = AdaptConfig {
        interval: Duration::ZERO,
        ..AdaptConfig::default()
    };
    assert_eq!(
        c.validate().unwrap_err(),
        AdaptConfigError::ZeroDuration { field: "interval" }
    );
    let mut c = AdaptConfig::default();
    c.canary.fraction = 0.9;
    let e = c.validate().unwrap_err();
    assert!(e.to_string().contains("canary.fraction"), "{e}");
    assert!(crate::adapt::Controller::new(c, 1).is_err());
}

#[test]
fn decisions_serialise_for_ampctl_tune() {
    let d = Decision {
        id: 3,
        at_s: 1.5,
        kind: "resize".into(),
        target: Target::Worker { unit: 4 },
        change: Change::Window { from: 8, to: 4 },
        evidence: Evidence::new("Gradient2")
            .before("short_rtt_ms", 20.0)
            .after("window", 4.0),
        state: DecisionState::Proposed,
    };
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["target"]["type"], "worker");
    assert_eq!(json["change"]["type"], "window");
    assert_eq!(json["change"]["to"], 4);
    assert_eq!(json["state"], "proposed");
    assert_eq!(json["evidence"]["before"]["short_rtt_ms"], 20.0);
    let back: Decision = serde_json::from_value(json).unwrap();
    assert_eq!(back, d);
}
