//! Tests across the metrics module: the rendered exposition checked by a strict parser, and the
//! HTTP endpoint driven by a real mio poll with real TCP clients.

mod http;
mod prom;

use std::time::Duration;

use hdrhistogram::Histogram;

use super::*;
use crate::delivery::{Census, Counters};
use crate::sys::ProcSample;

fn hist(values_us: &[u64]) -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    for &v in values_us {
        h.record(v).unwrap();
    }
    h
}

/// A daemon-like snapshot: two kinds, three workers (one down, one with awkward characters in
/// its name), latency spread over the buckets.
pub(super) fn sample_snapshot() -> Snapshot {
    // 52 µs .. 2.05 ms: below 2048 µs HdrHistogram (3 digits) is exact, so buckets are too.
    let fast: Vec<u64> = (1..=1000).map(|i| 50 + i * 2).collect();
    let slow = [900_000, 1_500_000, 30_000_000]; // 0.9 s, 1.5 s, 30 s
    Snapshot {
        uptime: Duration::from_millis(12_345),
        paused: true,
        malformed_records: 2,
        daemon: Some(ProcSample {
            cpu_time: Duration::from_millis(1500),
            rss_bytes: 8 << 20,
            voluntary_ctxt_switches: 10,
            nonvoluntary_ctxt_switches: 1,
        }),
        census: Census {
            queued: 7,
            in_flight: 3,
            waiting_retry: 1,
            dead_lettered: 4,
            done: 1000,
        },
        kinds: vec![
            KindRow {
                kind: "resize".into(),
                queued: vec![("interactive".into(), 2), ("batch".into(), 5)],
                rejected: 9,
                in_flight: 3,
                dispatched: 1010,
                counters: Counters {
                    submitted: 1011,
                    delivered_ok: 990,
                    failed: 6,
                    retried: 12,
                    dead_lettered: 4,
                    ..Counters::default()
                },
            },
            KindRow {
                kind: "echo".into(),
                queued: vec![("interactive".into(), 0), ("batch".into(), 0)],
                ..KindRow::default()
            },
        ],
        pairs: vec![
            PairRow {
                kind: "resize".into(),
                worker: "resize#0".into(),
                ok: 997,
                error: 3,
                latency: LatencyHistogram::from_micros(&hist(&fast), &DEFAULT_BUCKETS),
            },
            PairRow {
                kind: "resize".into(),
                worker: "odd \"name\"\\x".into(),
                ok: 3,
                error: 0,
                latency: LatencyHistogram::from_micros(&hist(&slow), &DEFAULT_BUCKETS),
            },
            PairRow {
                kind: "echo".into(),
                worker: "resize#0".into(),
                ok: 0,
                error: 0,
                latency: LatencyHistogram::default(),
            },
        ],
        workers: vec![
            WorkerRow {
                worker: "resize#0".into(),
                up: true,
                restarts: 2,
                process: Some(ProcSample {
                    cpu_time: Duration::from_millis(2250),
                    rss_bytes: 3 << 20,
                    voluntary_ctxt_switches: 500,
                    nonvoluntary_ctxt_switches: 20,
                }),
                ring: Some(RingCounters {
                    wakeups_to_worker: 40,
                    wakeups_to_supervisor: 41,
                    records_to_worker: 1000,
                    records_to_supervisor: 1001,
                }),
            },
            WorkerRow {
                worker: "odd \"name\"\\x".into(),
                up: true,
                restarts: 0,
                process: None,
                ring: None,
            },
            WorkerRow {
                worker: "down".into(),
                up: false,
                restarts: 7,
                process: None,
                ring: None,
            },
        ],
    }
}

#[test]
fn metrics_exposition_parses_and_carries_the_snapshot() {
    let snap = sample_snapshot();
    let text = render(&snap);
    let e = prom::parse(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));

    // Families have the expected types and every family has help.
    for (name, kind) in [
        ("amp_tasks_total", "counter"),
        ("amp_task_duration_seconds", "histogram"),
        ("amp_queue_depth", "gauge"),
        ("amp_queue_rejected_total", "counter"),
        ("amp_worker_restarts_total", "counter"),
        ("amp_worker_cpu_seconds_total", "counter"),
        ("amp_worker_resident_bytes", "gauge"),
        ("amp_worker_context_switches_total", "counter"),
        ("amp_ring_wakeups_total", "counter"),
        ("amp_tasks_in_flight", "gauge"),
        ("amp_tasks_dead_lettered", "gauge"),
        ("process_cpu_seconds_total", "counter"),
    ] {
        assert_eq!(e.family(name).kind, kind, "{name}");
    }
    assert!(e.families.iter().all(|f| f.help.is_some()));
    for f in &e.families {
        if f.kind == "counter" {
            assert!(
                f.name.ends_with("_total"),
                "counter {} lacks _total",
                f.name
            );
        }
    }

    let odd = "odd \"name\"\\x";
    assert_eq!(
        e.value(
            "amp_tasks_total",
            &[
                ("kind", "resize"),
                ("worker", "resize#0"),
                ("outcome", "error")
            ]
        ),
        3.0
    );
    assert_eq!(
        e.value(
            "amp_tasks_total",
            &[("kind", "resize"), ("worker", odd), ("outcome", "ok")]
        ),
        3.0
    );
    assert_eq!(
        e.value("amp_queue_depth", &[("kind", "resize"), ("class", "batch")]),
        5.0
    );
    assert_eq!(
        e.value("amp_queue_rejected_total", &[("kind", "resize")]),
        9.0
    );
    assert_eq!(e.value("amp_tasks_in_flight", &[("kind", "resize")]), 3.0);
    assert_eq!(
        e.value(
            "amp_task_results_total",
            &[("kind", "resize"), ("result", "failed")]
        ),
        6.0
    );
    assert_eq!(e.value("amp_tasks_dead_lettered", &[]), 4.0);
    assert_eq!(e.value("amp_tasks", &[("state", "queued")]), 7.0);
    assert_eq!(e.value("amp_intake_paused", &[]), 1.0);
    assert_eq!(e.value("amp_uptime_seconds", &[]), 12.345);
    assert_eq!(e.value("amp_worker_up", &[("worker", "down")]), 0.0);
    assert_eq!(
        e.value("amp_worker_restarts_total", &[("worker", "down")]),
        7.0
    );
    assert_eq!(
        e.value("amp_worker_cpu_seconds_total", &[("worker", "resize#0")]),
        2.25
    );
    assert_eq!(
        e.value("amp_worker_resident_bytes", &[("worker", "resize#0")]),
        f64::from(3u32 << 20)
    );
    assert_eq!(
        e.value(
            "amp_worker_context_switches_total",
            &[("worker", "resize#0"), ("type", "involuntary")]
        ),
        20.0
    );
    assert_eq!(
        e.value(
            "amp_ring_wakeups_total",
            &[("worker", "resize#0"), ("direction", "to_supervisor")]
        ),
        41.0
    );
    // Workers without a process or segment have no such series (rather than a fake zero).
    let cpu = e.family("amp_worker_cpu_seconds_total");
    assert_eq!(cpu.samples.len(), 1);
    assert_eq!(e.family("amp_ring_records_total").samples.len(), 2);

    // The histogram: buckets agree with a direct count of the recorded values.
    let fast: Vec<u64> = (1..=1000).map(|i| 50 + i * 2).collect();
    let pair = [("kind", "resize"), ("worker", "resize#0")];
    for (le, want) in [
        ("0.0001", 25.0),
        ("0.00025", 100.0),
        ("0.0005", 225.0),
        ("0.001", 475.0),
        ("0.0025", 1000.0),
    ] {
        let direct = fast
            .iter()
            .filter(|&&v| v as f64 <= le.parse::<f64>().unwrap() * 1e6)
            .count() as f64;
        assert_eq!(direct, want, "test arithmetic for le={le}");
        assert_eq!(
            e.value(
                "amp_task_duration_seconds_bucket",
                &[pair[0], pair[1], ("le", le)]
            ),
            want,
            "le={le}"
        );
    }
    assert_eq!(e.value("amp_task_duration_seconds_count", &pair), 1000.0);
    let sum = e.value("amp_task_duration_seconds_sum", &pair);
    let exact = fast.iter().sum::<u64>() as f64 / 1e6;
    assert!((sum - exact).abs() / exact < 1e-3, "{sum} vs {exact}");
    // The 30 s value is only in +Inf.
    let slow = [("kind", "resize"), ("worker", odd)];
    assert_eq!(
        e.value(
            "amp_task_duration_seconds_bucket",
            &[slow[0], slow[1], ("le", "10")]
        ),
        2.0
    );
    assert_eq!(
        e.value(
            "amp_task_duration_seconds_bucket",
            &[slow[0], slow[1], ("le", "+Inf")]
        ),
        3.0
    );
}

#[test]
fn metrics_empty_snapshot_is_valid() {
    let text = render(&Snapshot::default());
    let e = prom::parse(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
    assert!(e.family("amp_tasks_total").samples.is_empty());
    assert!(e
        .families
        .iter()
        .all(|f| f.name != "process_cpu_seconds_total"));
}

#[test]
fn metrics_render_is_deterministic() {
    let s = sample_snapshot();
    assert_eq!(render(&s), render(&s.clone()));
}
