//! Shared vocabulary of the benchmark: results, record stamping, statistics.

use std::time::{Duration, Instant};

/// Result type of the benchmark (a binary: any error ends the run with its message).
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Seconds a benchmark process may run one measurement before `SIGALRM` kills it (a hung peer
/// must not hang the script).
pub const WATCHDOG_SECS: u32 = 120;

/// One-way throughput run: `count` records of `size` bytes, published/released every `batch`.
#[derive(Debug, Clone, Copy)]
pub struct Tput {
    /// Payload bytes per record (a multiple of 8, at least 16).
    pub size: usize,
    /// Records per publish (rings) or per system call (pipe, socket, ipc-channel message).
    pub batch: usize,
    /// Records moved.
    pub count: u64,
}

/// What a throughput run measured on the consumer side.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Records counted (those after the first chunk the consumer received).
    pub msgs: u64,
    /// Time from the first received chunk to the last record.
    pub elapsed: Duration,
}

impl Rate {
    /// Records per second.
    pub fn per_sec(&self) -> f64 {
        self.msgs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Consumer-side clock: starts at the first chunk of records received, so the child's start-up
/// (fork, mapping, connecting) is not counted.
#[derive(Debug, Default)]
pub struct Clock {
    start: Option<(Instant, u64)>,
}

impl Clock {
    /// Call after receiving records; `seen` is the total received so far (including this chunk).
    #[inline]
    pub fn mark(&mut self, seen: u64) {
        if self.start.is_none() {
            self.start = Some((Instant::now(), seen));
        }
    }

    /// Call once all `total` records were received.
    pub fn finish(&self, total: u64) -> Res<Rate> {
        let (t0, base) = self.start.ok_or("no record was received")?;
        let elapsed = t0.elapsed();
        if total <= base {
            return Err("the first chunk held every record; raise the record count".into());
        }
        Ok(Rate {
            msgs: total - base,
            elapsed,
        })
    }
}

/// A payload pattern of `size` bytes that writers copy into each record.
pub fn template(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
        .collect()
}

/// Writes a record: the template, with the sequence number stamped over its first and last
/// 8 bytes (so a torn or stale record is caught, and the writes cannot be optimised away).
#[inline]
pub fn stamp(rec: &mut [u8], template: &[u8], seq: u64) {
    rec.copy_from_slice(template);
    let s = seq.to_le_bytes();
    let n = rec.len();
    rec[..8].copy_from_slice(&s);
    rec[n - 8..].copy_from_slice(&s);
}

/// Whether `rec` carries sequence number `seq` at both ends.
#[inline]
pub fn check(rec: &[u8], seq: u64) -> bool {
    let n = rec.len();
    n >= 16 && rec[..8] == seq.to_le_bytes() && rec[n - 8..] == seq.to_le_bytes()
}

/// Median of a few values (upper median for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Round-trip latencies of one run, in nanoseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    /// Sorted samples.
    sorted: Vec<u64>,
    /// Doorbell wakeups the pinger sent per round trip (`None` when not applicable).
    pub wakeups_per_rtt: Option<f64>,
    /// Other work used the machine during the measurement.
    pub disturbed: bool,
}

impl Latency {
    /// Sorts the samples.
    pub fn new(mut samples: Vec<u64>, wakeups_per_rtt: Option<f64>) -> Self {
        samples.sort_unstable();
        Self {
            sorted: samples,
            wakeups_per_rtt,
            disturbed: false,
        }
    }

    /// The `p`-th percentile (0..=100), nearest rank.
    pub fn pct(&self, p: f64) -> f64 {
        if self.sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1] as f64
    }
}

/// Busy-waits until `until` and returns the time read last (used as the next sample's start).
#[inline]
pub fn busy_until(until: Instant) -> Instant {
    loop {
        let now = Instant::now();
        if now >= until {
            return now;
        }
        std::hint::spin_loop();
    }
}

/// Nanoseconds in `d`, saturating.
#[inline]
pub fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
