//! The plain-data [`Snapshot`] the daemon fills for a scrape, and [`LatencyHistogram`], the
//! fixed-bucket view of an HdrHistogram that Prometheus needs.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::delivery::{Census, Counters};
use crate::sys::ProcSample;

/// Default latency bucket bounds in seconds: 100 µs to 10 s in a 1–2.5–5 series.
pub const DEFAULT_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Everything one scrape exposes. The daemon builds it from its own state (no references into
/// daemon types are kept) and hands it to [`super::render`].
///
/// Rows must be unique by their labels (one [`PairRow`] per (kind, worker), one [`KindRow`] per
/// kind, one [`WorkerRow`] per worker); a duplicate would render as a duplicate series.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Time since ampd started.
    pub uptime: Duration,
    /// Whether intake is paused (`ampctl pause`).
    pub paused: bool,
    /// Records from shared memory refused as malformed.
    pub malformed_records: u64,
    /// ampd's own resource usage (`/proc/self`), if sampled.
    pub daemon: Option<ProcSample>,
    /// Where every task is now.
    pub census: Census,
    /// Per kind: queues and delivery counters.
    pub kinds: Vec<KindRow>,
    /// Per (kind, worker): outcomes and latency.
    pub pairs: Vec<PairRow>,
    /// Per worker (unit): lifecycle, resources, ring counters.
    pub workers: Vec<WorkerRow>,
}

/// One kind's queues and counters.
#[derive(Debug, Clone, Default)]
pub struct KindRow {
    /// Kind name.
    pub kind: String,
    /// Queued tasks per class: (class name, depth), in class order.
    pub queued: Vec<(String, u64)>,
    /// Submissions refused (queue full, paused, too large, unknown class).
    pub rejected: u64,
    /// Tasks in flight over all of the kind's workers.
    pub in_flight: u64,
    /// Tasks dispatched (a requeued task counts again).
    pub dispatched: u64,
    /// The delivery core's counters for this kind.
    pub counters: Counters,
}

/// Outcomes and latency of one (kind, worker) pair.
#[derive(Debug, Clone)]
pub struct PairRow {
    /// Kind name.
    pub kind: String,
    /// Worker (unit) name.
    pub worker: String,
    /// Successful completions.
    pub ok: u64,
    /// Failed completions.
    pub error: u64,
    /// Dispatch → completion latency.
    pub latency: LatencyHistogram,
}

/// One worker (unit): lifecycle and the counters of its current process.
#[derive(Debug, Clone, Default)]
pub struct WorkerRow {
    /// Unit name (`NAME` or `NAME#i`).
    pub worker: String,
    /// Whether its process is running and ready.
    pub up: bool,
    /// Automatic restarts so far.
    pub restarts: u64,
    /// Its current process's resource usage, if it has a process and the sample succeeded.
    pub process: Option<ProcSample>,
    /// Its segment's ring counters, if it is an IPC worker with a live segment.
    pub ring: Option<RingCounters>,
}

/// Counters of one worker's segment (from its `ControlBlock`). They restart from zero with each
/// new process, which Prometheus treats as a counter reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingCounters {
    /// Eventfd wakeups ampd sent to the worker (`supervisor_wakeups_sent`).
    pub wakeups_to_worker: u64,
    /// Eventfd wakeups the worker sent to ampd (`wakeups_sent`).
    pub wakeups_to_supervisor: u64,
    /// Records ampd published on the tasks ring (`supervisor_records_sent`).
    pub records_to_worker: u64,
    /// Records the worker published on the completions ring (`records_sent`).
    pub records_to_supervisor: u64,
}

/// A latency distribution as cumulative counts at fixed upper bounds (seconds), the shape of a
/// Prometheus histogram. Always consistent: bounds ascending and finite, counts monotone and at
/// most [`count`](Self::count).
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyHistogram {
    bounds: Vec<f64>,
    cumulative: Vec<u64>,
    count: u64,
    sum_seconds: f64,
}

impl LatencyHistogram {
    /// An empty histogram with the given bounds (non-finite or non-positive bounds are dropped,
    /// the rest sorted and deduplicated).
    #[must_use]
    pub fn empty(bounds: &[f64]) -> Self {
        let bounds = clean_bounds(bounds);
        Self {
            cumulative: vec![0; bounds.len()],
            bounds,
            count: 0,
            sum_seconds: 0.0,
        }
    }

    /// Buckets a histogram of microsecond values (the daemon's `PairStats::hist`).
    ///
    /// A recorded value counts towards bound `b` when the lowest value of its HdrHistogram
    /// equivalence range is ≤ `b` (the rule of `Histogram::count_between`), so a count can be
    /// off by values within the histogram's precision of a bound (0.1% at 3 significant
    /// digits). The sum is `mean × count`, exact to the same precision.
    ///
    /// ```
    /// use amp_supervisor::metrics::LatencyHistogram;
    /// let mut h = hdrhistogram::Histogram::<u64>::new(3)?;
    /// h.record(150)?; // 150 µs
    /// h.record(2_000_000)?; // 2 s
    /// let l = LatencyHistogram::from_micros(&h, &[0.0001, 0.001, 1.0, 10.0]);
    /// assert_eq!(l.buckets().map(|(_, n)| n).collect::<Vec<_>>(), [0, 1, 1, 2]);
    /// assert_eq!(l.count(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn from_micros(hist: &Histogram<u64>, bounds: &[f64]) -> Self {
        let mut out = Self::empty(bounds);
        if hist.is_empty() {
            return out;
        }
        // Bound in µs, rounded down: a value v (integer µs) is ≤ b s iff v ≤ floor(b·1e6).
        let limits: Vec<u64> = out
            .bounds
            .iter()
            .map(|b| {
                let us = (b * 1e6).floor();
                if us >= u64::MAX as f64 {
                    u64::MAX
                } else {
                    us as u64
                }
            })
            .collect();
        let mut per_bucket = vec![0u64; limits.len()];
        for v in hist.iter_recorded() {
            let low = hist.lowest_equivalent(v.value_iterated_to());
            // First bound the value fits under; values above the last go only to +Inf.
            let i = limits.partition_point(|&l| l < low);
            if let Some(slot) = per_bucket.get_mut(i) {
                *slot += v.count_at_value();
            }
        }
        let mut acc = 0u64;
        for (c, n) in out.cumulative.iter_mut().zip(per_bucket) {
            acc += n;
            *c = acc;
        }
        out.count = hist.len();
        out.sum_seconds = hist.mean() * hist.len() as f64 / 1e6;
        out
    }

    /// Upper bounds (seconds) with the cumulative count of values ≤ each; `+Inf` is not
    /// included (its count is [`count`](Self::count)).
    pub fn buckets(&self) -> impl ExactSizeIterator<Item = (f64, u64)> + '_ {
        self.bounds
            .iter()
            .copied()
            .zip(self.cumulative.iter().copied())
    }

    /// Number of values.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the values in seconds.
    #[must_use]
    pub fn sum_seconds(&self) -> f64 {
        self.sum_seconds
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::empty(&DEFAULT_BUCKETS)
    }
}

fn clean_bounds(bounds: &[f64]) -> Vec<f64> {
    let mut b: Vec<f64> = bounds
        .iter()
        .copied()
        .filter(|x| x.is_finite() && *x > 0.0)
        .collect();
    b.sort_by(f64::total_cmp);
    b.dedup();
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values_us: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for &v in values_us {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn metrics_buckets_count_values_at_or_below_each_bound() {
        // Exactly on a bound counts in it; one µs above does not.
        let h = hist(&[100, 101, 1000, 1000, 5000, 20_000_000]);
        let l = LatencyHistogram::from_micros(&h, &DEFAULT_BUCKETS);
        let got: Vec<(f64, u64)> = l.buckets().collect();
        assert_eq!(got[0], (0.0001, 1));
        assert_eq!(got[1], (0.00025, 2));
        assert_eq!(got[3], (0.001, 4));
        assert_eq!(got[4], (0.0025, 4));
        assert_eq!(got[5], (0.005, 5));
        // 20 s is above the last bound: only in +Inf (the count).
        assert_eq!(got.last().copied(), Some((10.0, 5)));
        assert_eq!(l.count(), 6);
        let exact = (100 + 101 + 1000 + 1000 + 5000 + 20_000_000) as f64 / 1e6;
        assert!(
            (l.sum_seconds() - exact).abs() / exact < 1e-3,
            "{} vs {exact}",
            l.sum_seconds()
        );
    }

    #[test]
    fn metrics_buckets_are_monotone_for_spread_values() {
        let values: Vec<u64> = (0..2000u64).map(|i| 1 + i * i * 37 % 9_000_000).collect();
        let h = hist(&values);
        let l = LatencyHistogram::from_micros(&h, &DEFAULT_BUCKETS);
        let counts: Vec<u64> = l.buckets().map(|(_, n)| n).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        assert!(counts.last().copied().unwrap() <= l.count());
        // Within HdrHistogram precision, each bucket matches a direct count.
        for (b, n) in l.buckets() {
            let direct = values.iter().filter(|&&v| v as f64 <= b * 1e6).count() as u64;
            let slack = values
                .iter()
                .filter(|&&v| (v as f64 - b * 1e6).abs() <= b * 1e6 * 1e-3)
                .count() as u64;
            assert!(n.abs_diff(direct) <= slack, "bound {b}: {n} vs {direct}");
        }
    }

    #[test]
    fn metrics_bounds_are_cleaned() {
        let l = LatencyHistogram::empty(&[1.0, f64::NAN, 0.5, -1.0, 1.0, f64::INFINITY, 0.0]);
        assert_eq!(l.buckets().collect::<Vec<_>>(), [(0.5, 0), (1.0, 0)]);
        assert_eq!(l.count(), 0);
        let e = LatencyHistogram::from_micros(&hist(&[]), &[1.0]);
        assert_eq!((e.count(), e.sum_seconds()), (0, 0.0));
    }
}
