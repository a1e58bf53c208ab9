//! Per-worker resource history: a short ring of `/proc` samples with the rates derived between
//! them (CPU use, context-switch rates), for the TUI and the adaptive controller.
//!
//! The daemon samples each worker on a timer ([`crate::sys::proc_sample`]) and feeds
//! [`ResourceHistory::sample`]. When the worker's process changes (restart), it calls
//! [`ResourceHistory::new_process`] so that no rate is derived across two processes; a counter
//! that goes backwards is treated the same way even without that call.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::sys::ProcSample;

/// Samples kept by [`ResourceHistory::default`].
pub const DEFAULT_CAPACITY: usize = 120;

/// One sample and what follows from the one before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResourcePoint {
    /// When it was taken.
    pub at: Instant,
    /// The raw counters.
    pub sample: ProcSample,
    /// Which process it belongs to: increases with each process change.
    pub epoch: u64,
    /// CPU use since the previous sample of the same process, in cores (1.0 = one core busy
    /// the whole interval; may exceed 1 for a multi-threaded process). `None` for the first
    /// sample of a process.
    pub cpu_cores: Option<f64>,
    /// Voluntary context switches per second since the previous sample (`None` as above).
    pub voluntary_per_s: Option<f64>,
    /// Involuntary context switches per second since the previous sample (`None` as above).
    pub involuntary_per_s: Option<f64>,
}

impl ResourcePoint {
    /// Resident set size in bytes.
    #[must_use]
    pub fn rss_bytes(&self) -> u64 {
        self.sample.rss_bytes
    }
}

/// The last [`capacity`](Self::capacity) samples of one worker. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct ResourceHistory {
    points: VecDeque<ResourcePoint>,
    capacity: usize,
    epoch: u64,
    /// The next sample starts a new process.
    fresh: bool,
}

impl Default for ResourceHistory {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl ResourceHistory {
    /// Keeps at most `capacity` samples (at least 2, so that a rate can be derived).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(2);
        Self {
            points: VecDeque::with_capacity(capacity),
            capacity,
            epoch: 0,
            fresh: true,
        }
    }

    /// Samples kept at most.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The worker's process changed: the next sample derives no rates from the previous one.
    pub fn new_process(&mut self) {
        self.fresh = true;
    }

    /// Adds a sample taken at `now`; returns the derived point. A sample not later than the
    /// previous one, or whose CPU time or switch counters went backwards, starts a new epoch
    /// (no rates) as if [`new_process`](Self::new_process) had been called.
    pub fn sample(&mut self, now: Instant, s: ProcSample) -> ResourcePoint {
        let prev = self.points.back().copied();
        let continues = !self.fresh
            && prev.is_some_and(|p| {
                now > p.at
                    && s.cpu_time >= p.sample.cpu_time
                    && s.voluntary_ctxt_switches >= p.sample.voluntary_ctxt_switches
                    && s.nonvoluntary_ctxt_switches >= p.sample.nonvoluntary_ctxt_switches
            });
        if !continues && prev.is_some() {
            self.epoch += 1;
        }
        self.fresh = false;
        let (cpu, vol, invol) = match prev.filter(|_| continues) {
            Some(p) => {
                let dt = now.saturating_duration_since(p.at).as_secs_f64();
                (
                    Some((s.cpu_time - p.sample.cpu_time).as_secs_f64() / dt),
                    Some(
                        (s.voluntary_ctxt_switches - p.sample.voluntary_ctxt_switches) as f64 / dt,
                    ),
                    Some(
                        (s.nonvoluntary_ctxt_switches - p.sample.nonvoluntary_ctxt_switches) as f64
                            / dt,
                    ),
                )
            }
            None => (None, None, None),
        };
        let point = ResourcePoint {
            at: now,
            sample: s,
            epoch: self.epoch,
            cpu_cores: cpu,
            voluntary_per_s: vol,
            involuntary_per_s: invol,
        };
        if self.points.len() == self.capacity {
            self.points.pop_front();
        }
        self.points.push_back(point);
        point
    }

    /// The newest point.
    #[must_use]
    pub fn latest(&self) -> Option<&ResourcePoint> {
        self.points.back()
    }

    /// All kept points, oldest first.
    pub fn series(&self) -> impl DoubleEndedIterator<Item = &ResourcePoint> + ExactSizeIterator {
        self.points.iter()
    }

    /// Points kept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether nothing has been sampled yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Average CPU use (cores) of the current process over about the last `window`: from the
    /// oldest kept sample of the current epoch taken within `window` before the newest, to the
    /// newest. `None` with fewer than two such samples.
    ///
    /// ```
    /// use amp_supervisor::metrics::ResourceHistory;
    /// use amp_supervisor::sys::ProcSample;
    /// use std::time::{Duration, Instant};
    /// let mut h = ResourceHistory::default();
    /// let t = Instant::now();
    /// let s = |cpu_ms| ProcSample { cpu_time: Duration::from_millis(cpu_ms), rss_bytes: 1 << 20,
    ///     voluntary_ctxt_switches: 0, nonvoluntary_ctxt_switches: 0 };
    /// h.sample(t, s(0));
    /// h.sample(t + Duration::from_secs(1), s(500));
    /// h.sample(t + Duration::from_secs(2), s(500));
    /// assert_eq!(h.cpu_over(Duration::from_secs(10)), Some(0.25));
    /// ```
    #[must_use]
    pub fn cpu_over(&self, window: Duration) -> Option<f64> {
        let last = self.points.back()?;
        let first = self
            .points
            .iter()
            .find(|p| p.epoch == last.epoch && last.at.saturating_duration_since(p.at) <= window)?;
        let dt = last.at.saturating_duration_since(first.at).as_secs_f64();
        (dt > 0.0).then(|| (last.sample.cpu_time - first.sample.cpu_time).as_secs_f64() / dt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(cpu_ms: u64, rss: u64, vol: u64, invol: u64) -> ProcSample {
        ProcSample {
            cpu_time: Duration::from_millis(cpu_ms),
            rss_bytes: rss,
            voluntary_ctxt_switches: vol,
            nonvoluntary_ctxt_switches: invol,
        }
    }

    #[test]
    fn metrics_rates_between_samples() {
        let t = Instant::now();
        let mut h = ResourceHistory::new(10);
        let first = h.sample(t, s(1000, 100, 10, 1));
        assert_eq!(
            (
                first.cpu_cores,
                first.voluntary_per_s,
                first.involuntary_per_s
            ),
            (None, None, None)
        );
        let p = h.sample(t + Duration::from_millis(500), s(1250, 200, 60, 3));
        assert_eq!(p.cpu_cores, Some(0.5));
        assert_eq!(p.voluntary_per_s, Some(100.0));
        assert_eq!(p.involuntary_per_s, Some(4.0));
        assert_eq!(p.rss_bytes(), 200);
        assert_eq!(h.latest(), Some(&p));
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn metrics_ring_keeps_the_newest() {
        let t = Instant::now();
        let mut h = ResourceHistory::new(3);
        for i in 0..5u64 {
            h.sample(t + Duration::from_secs(i), s(i * 100, i, 0, 0));
        }
        let rss: Vec<u64> = h.series().map(ResourcePoint::rss_bytes).collect();
        assert_eq!(rss, [2, 3, 4]);
        assert!(h.series().all(|p| p.cpu_cores == Some(0.1)));
        assert_eq!(ResourceHistory::new(0).capacity(), 2);
    }

    #[test]
    fn metrics_no_rate_across_processes() {
        let t = Instant::now();
        let mut h = ResourceHistory::new(10);
        h.sample(t, s(5000, 1, 100, 100));
        // Counters went backwards: a new process, detected without being told.
        let p = h.sample(t + Duration::from_secs(1), s(10, 1, 1, 1));
        assert_eq!((p.cpu_cores, p.epoch), (None, 1));
        // Told explicitly, even though the counters grew.
        h.new_process();
        let p = h.sample(t + Duration::from_secs(2), s(20, 1, 2, 2));
        assert_eq!((p.cpu_cores, p.epoch), (None, 2));
        let p = h.sample(t + Duration::from_secs(3), s(520, 1, 2, 2));
        assert_eq!((p.cpu_cores, p.epoch), (Some(0.5), 2));
        // A sample at the same instant derives nothing (no division by zero).
        let p = h.sample(t + Duration::from_secs(3), s(530, 1, 2, 2));
        assert_eq!(p.cpu_cores, None);
    }

    #[test]
    fn metrics_cpu_over_a_window_stays_in_one_process() {
        let t = Instant::now();
        let mut h = ResourceHistory::new(10);
        assert_eq!(h.cpu_over(Duration::from_secs(5)), None);
        h.sample(t, s(0, 1, 0, 0));
        h.sample(t + Duration::from_secs(1), s(1000, 1, 0, 0));
        h.sample(t + Duration::from_secs(2), s(1000, 1, 0, 0));
        h.sample(t + Duration::from_secs(3), s(1000, 1, 0, 0));
        assert_eq!(h.cpu_over(Duration::from_secs(10)), Some(1.0 / 3.0));
        // Only the last second: idle.
        assert_eq!(h.cpu_over(Duration::from_secs(1)), Some(0.0));
        h.new_process();
        h.sample(t + Duration::from_secs(4), s(50, 1, 0, 0));
        assert_eq!(h.cpu_over(Duration::from_secs(10)), None);
        h.sample(t + Duration::from_secs(6), s(1050, 1, 0, 0));
        assert_eq!(h.cpu_over(Duration::from_secs(10)), Some(0.5));
    }
}
