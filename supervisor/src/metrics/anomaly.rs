//! Anomaly flags: a pure function over what the daemon knows about its workers.
//!
//! | flag | raised when (defaults in [`Thresholds::default`]) |
//! |---|---|
//! | [`Anomaly::ConsecutiveFailures`] | a worker's last `n ≥ 5` task attempts all failed |
//! | [`Anomaly::RestartLoop`] | a worker restarted `≥ 3` times within the last 60 s |
//! | [`Anomaly::SlowOutlier`] | a worker's p99 latency for a kind is more than 3× the median p99 of the kind's other workers, and at least 1 ms above it; the worker and at least 2 peers each have ≥ 100 samples |
//!
//! The daemon keeps one [`WorkerHealth`] per unit (calling [`WorkerHealth::task_done`] on each
//! completion and [`WorkerHealth::restarted`] on each restart) and builds [`LatencyRow`]s from
//! its latency histograms when it evaluates.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

/// Restart times a [`WorkerHealth`] keeps (more than any sensible restart-loop threshold).
const MAX_RESTARTS_KEPT: usize = 64;

/// When a flag is raised. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Consecutive failed attempts that raise [`Anomaly::ConsecutiveFailures`] (default 5).
    pub consecutive_failures: u64,
    /// Restarts within [`restart_window`](Self::restart_window) that raise
    /// [`Anomaly::RestartLoop`] (default 3).
    pub restarts: usize,
    /// The restart-loop window (default 60 s).
    pub restart_window: Duration,
    /// How many times the peers' median p99 a worker's p99 must exceed (default 3.0).
    pub slow_factor: f64,
    /// How far above the peers' median p99 it must also be (default 1 ms), so that
    /// microsecond-scale noise is not flagged.
    pub slow_min_excess: Duration,
    /// Samples a worker (and each counted peer) needs for its p99 to count (default 100).
    pub min_samples: u64,
    /// Peers with enough samples needed to judge a worker (default 2).
    pub min_peers: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            restarts: 3,
            restart_window: Duration::from_secs(60),
            slow_factor: 3.0,
            slow_min_excess: Duration::from_millis(1),
            min_samples: 100,
            min_peers: 2,
        }
    }
}

/// What the daemon tracks per worker for [`anomalies`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerHealth {
    /// Unit name.
    pub worker: String,
    /// Task attempts that failed in a row, up to now.
    pub consecutive_failures: u64,
    /// Recent restart times, oldest first (at most 64 kept).
    pub restarts: VecDeque<Instant>,
}

impl WorkerHealth {
    /// A worker with a clean record.
    #[must_use]
    pub fn new(worker: impl Into<String>) -> Self {
        Self {
            worker: worker.into(),
            ..Self::default()
        }
    }

    /// Records one completed attempt.
    pub fn task_done(&mut self, ok: bool) {
        if ok {
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures += 1;
        }
    }

    /// Records a restart at `now`.
    pub fn restarted(&mut self, now: Instant) {
        if self.restarts.len() == MAX_RESTARTS_KEPT {
            self.restarts.pop_front();
        }
        self.restarts.push_back(now);
    }

    /// Restarts within `window` before `now`.
    #[must_use]
    pub fn restarts_within(&self, now: Instant, window: Duration) -> usize {
        self.restarts
            .iter()
            .filter(|&&t| now.saturating_duration_since(t) <= window)
            .count()
    }
}

/// A worker's p99 latency for one kind.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyRow {
    /// Kind name.
    pub kind: String,
    /// Unit name.
    pub worker: String,
    /// 99th-percentile latency.
    pub p99: Duration,
    /// Samples behind it.
    pub samples: u64,
}

impl LatencyRow {
    /// The row for a histogram of microsecond values (the daemon's `PairStats::hist`).
    #[must_use]
    pub fn from_micros(
        kind: impl Into<String>,
        worker: impl Into<String>,
        hist: &hdrhistogram::Histogram<u64>,
    ) -> Self {
        Self {
            kind: kind.into(),
            worker: worker.into(),
            p99: Duration::from_micros(hist.value_at_quantile(0.99)),
            samples: hist.len(),
        }
    }
}

/// Everything [`anomalies`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct AnomalyInput<'a> {
    /// Now (restart windows end here).
    pub now: Instant,
    /// Per worker.
    pub workers: &'a [WorkerHealth],
    /// Per (kind, worker).
    pub latencies: &'a [LatencyRow],
    /// When to flag.
    pub thresholds: &'a Thresholds,
}

/// Something worth a look.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Anomaly {
    /// The worker's last `n` attempts failed.
    ConsecutiveFailures {
        /// Unit name.
        worker: String,
        /// Failures in a row.
        n: u64,
    },
    /// The worker keeps restarting.
    RestartLoop {
        /// Unit name.
        worker: String,
        /// Restarts within `window`.
        restarts: usize,
        /// The window.
        window: Duration,
    },
    /// The worker is much slower at a kind than its peers.
    SlowOutlier {
        /// Unit name.
        worker: String,
        /// Kind name.
        kind: String,
        /// Its p99.
        p99: Duration,
        /// The median of its peers' p99s.
        peer_median_p99: Duration,
    },
}

impl Anomaly {
    /// The worker it concerns.
    #[must_use]
    pub fn worker(&self) -> &str {
        match self {
            Self::ConsecutiveFailures { worker, .. }
            | Self::RestartLoop { worker, .. }
            | Self::SlowOutlier { worker, .. } => worker,
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConsecutiveFailures { worker, n } => {
                write!(f, "{worker}: last {n} task attempts failed; check its log")
            }
            Self::RestartLoop {
                worker,
                restarts,
                window,
            } => write!(
                f,
                "{worker}: restarted {restarts} times in {window:?}; check its log and exit reasons"
            ),
            Self::SlowOutlier {
                worker,
                kind,
                p99,
                peer_median_p99,
            } => write!(
                f,
                "{worker}: p99 for kind {kind} is {p99:?}, peers' median p99 is {peer_median_p99:?}"
            ),
        }
    }
}

/// Flags what stands out; ordered by worker, then failures, restarts, slowness (by kind).
///
/// ```
/// use amp_supervisor::metrics::{anomalies, Anomaly, AnomalyInput, Thresholds, WorkerHealth};
/// use std::time::Instant;
/// let mut w = WorkerHealth::new("resize#0");
/// for _ in 0..6 { w.task_done(false); }
/// let input = AnomalyInput { now: Instant::now(), workers: &[w], latencies: &[],
///     thresholds: &Thresholds::default() };
/// assert_eq!(anomalies(&input),
///     [Anomaly::ConsecutiveFailures { worker: "resize#0".into(), n: 6 }]);
/// ```
#[must_use]
pub fn anomalies(input: &AnomalyInput<'_>) -> Vec<Anomaly> {
    let t = input.thresholds;
    let mut out = Vec::new();
    for w in input.workers {
        if t.consecutive_failures > 0 && w.consecutive_failures >= t.consecutive_failures {
            out.push(Anomaly::ConsecutiveFailures {
                worker: w.worker.clone(),
                n: w.consecutive_failures,
            });
        }
        let restarts = w.restarts_within(input.now, t.restart_window);
        if t.restarts > 0 && restarts >= t.restarts {
            out.push(Anomaly::RestartLoop {
                worker: w.worker.clone(),
                restarts,
                window: t.restart_window,
            });
        }
    }
    out.extend(slow_outliers(input.latencies, t));
    // Stable sort: per worker, the order pushed above (failures, restarts, then slow by kind).
    out.sort_by(|a, b| a.worker().cmp(b.worker()));
    out
}

fn slow_outliers(rows: &[LatencyRow], t: &Thresholds) -> Vec<Anomaly> {
    let mut by_kind: BTreeMap<&str, Vec<&LatencyRow>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.samples >= t.min_samples) {
        by_kind.entry(&r.kind).or_default().push(r);
    }
    let mut out = Vec::new();
    for (kind, eligible) in by_kind {
        for (i, r) in eligible.iter().enumerate() {
            let mut peers: Vec<Duration> = eligible
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, p)| p.p99)
                .collect();
            if peers.len() < t.min_peers.max(1) {
                continue;
            }
            let median = median(&mut peers);
            if r.p99.as_secs_f64() > t.slow_factor * median.as_secs_f64()
                && r.p99.saturating_sub(median) >= t.slow_min_excess
            {
                out.push(Anomaly::SlowOutlier {
                    worker: r.worker.clone(),
                    kind: kind.to_owned(),
                    p99: r.p99,
                    peer_median_p99: median,
                });
            }
        }
    }
    out
}

/// Median of a non-empty list (mean of the middle two for an even count).
fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn row(kind: &str, worker: &str, p99_ms: u64, samples: u64) -> LatencyRow {
        LatencyRow {
            kind: kind.into(),
            worker: worker.into(),
            p99: ms(p99_ms),
            samples,
        }
    }

    fn run(workers: &[WorkerHealth], latencies: &[LatencyRow], now: Instant) -> Vec<Anomaly> {
        anomalies(&AnomalyInput {
            now,
            workers,
            latencies,
            thresholds: &Thresholds::default(),
        })
    }

    #[test]
    fn metrics_consecutive_failures_reset_on_success() {
        let now = Instant::now();
        let mut w = WorkerHealth::new("a");
        for _ in 0..4 {
            w.task_done(false);
        }
        assert!(run(&[w.clone()], &[], now).is_empty(), "4 < 5");
        w.task_done(false);
        assert_eq!(
            run(&[w.clone()], &[], now),
            [Anomaly::ConsecutiveFailures {
                worker: "a".into(),
                n: 5
            }]
        );
        w.task_done(true);
        w.task_done(false);
        assert!(run(&[w], &[], now).is_empty());
    }

    #[test]
    fn metrics_restart_loop_counts_only_the_window() {
        let t0 = Instant::now();
        let mut w = WorkerHealth::new("a");
        w.restarted(t0);
        w.restarted(t0 + Duration::from_secs(30));
        let now = t0 + Duration::from_secs(70);
        w.restarted(now - Duration::from_secs(1));
        // The first restart is 70 s old: only 2 in the window.
        assert!(run(&[w.clone()], &[], now).is_empty());
        w.restarted(now);
        assert_eq!(
            run(&[w.clone()], &[], now),
            [Anomaly::RestartLoop {
                worker: "a".into(),
                restarts: 3,
                window: Duration::from_secs(60)
            }]
        );
        for _ in 0..100 {
            w.restarted(now);
        }
        assert_eq!(w.restarts.len(), MAX_RESTARTS_KEPT);
    }

    #[test]
    fn metrics_slow_outlier_against_the_peer_median() {
        let now = Instant::now();
        let rows = [
            row("k", "a", 10, 500),
            row("k", "b", 12, 500),
            row("k", "c", 11, 500),
            row("k", "slow", 40, 500),
            // Another kind where nobody stands out.
            row("j", "a", 100, 500),
            row("j", "b", 120, 500),
            row("j", "c", 250, 500),
        ];
        assert_eq!(
            run(&[], &rows, now),
            [Anomaly::SlowOutlier {
                worker: "slow".into(),
                kind: "k".into(),
                p99: ms(40),
                peer_median_p99: ms(11)
            }]
        );
    }

    #[test]
    fn metrics_latency_row_from_a_histogram() {
        let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let r = LatencyRow::from_micros("k", "w", &h);
        assert_eq!((r.p99, r.samples), (Duration::from_micros(990), 1000));
    }

    #[test]
    fn metrics_slow_outlier_needs_samples_peers_and_excess() {
        let now = Instant::now();
        // Too few samples on the slow one.
        let rows = [
            row("k", "a", 10, 500),
            row("k", "b", 10, 500),
            row("k", "s", 90, 99),
        ];
        assert!(run(&[], &rows, now).is_empty());
        // Only one peer with enough samples.
        let rows = [
            row("k", "a", 10, 500),
            row("k", "b", 10, 5),
            row("k", "s", 90, 500),
        ];
        assert!(run(&[], &rows, now).is_empty());
        // 4× but only 0.3 ms above: noise.
        let rows = [
            LatencyRow {
                p99: Duration::from_micros(100),
                ..row("k", "a", 0, 500)
            },
            LatencyRow {
                p99: Duration::from_micros(100),
                ..row("k", "b", 0, 500)
            },
            LatencyRow {
                p99: Duration::from_micros(400),
                ..row("k", "s", 0, 500)
            },
        ];
        assert!(run(&[], &rows, now).is_empty());
        // Exactly 3× is not more than 3×.
        let rows = [
            row("k", "a", 10, 500),
            row("k", "b", 10, 500),
            row("k", "s", 30, 500),
        ];
        assert!(run(&[], &rows, now).is_empty());
        let rows = [
            row("k", "a", 10, 500),
            row("k", "b", 10, 500),
            row("k", "s", 31, 500),
        ];
        assert_eq!(run(&[], &rows, now).len(), 1);
    }

    #[test]
    fn metrics_thresholds_are_configurable_and_output_ordered() {
        let now = Instant::now();
        let mut a = WorkerHealth::new("a");
        a.task_done(false);
        a.restarted(now);
        let mut b = WorkerHealth::new("b");
        b.task_done(false);
        let t = Thresholds {
            consecutive_failures: 1,
            restarts: 1,
            ..Thresholds::default()
        };
        let rows = [
            row("k", "a", 100, 500),
            row("k", "b", 1, 500),
            row("k", "c", 1, 500),
        ];
        let got = anomalies(&AnomalyInput {
            now,
            workers: &[b, a],
            latencies: &rows,
            thresholds: &t,
        });
        let kinds: Vec<(String, &str)> = got
            .iter()
            .map(|x| {
                (
                    x.worker().to_owned(),
                    match x {
                        Anomaly::ConsecutiveFailures { .. } => "fail",
                        Anomaly::RestartLoop { .. } => "restart",
                        Anomaly::SlowOutlier { .. } => "slow",
                    },
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("a".to_owned(), "fail"),
                ("a".to_owned(), "restart"),
                ("a".to_owned(), "slow"),
                ("b".to_owned(), "fail")
            ]
        );
        assert!(
            got[2].to_string().contains("peers' median p99 is 1ms"),
            "{}",
            got[2]
        );
        let json = serde_json::to_value(&got[0]).unwrap();
        assert_eq!(json["type"], "consecutive_failures");
    }
}
