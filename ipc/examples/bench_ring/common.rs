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
    /// How the writer fills each record.
    pub fill: Fill,
}

/// How a writer fills a record (the consumer checks accordingly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// [`stamp`]: 8-byte word `i` = `seq + i`, one store per word; every word is checked.
    Words,
    /// A `memcpy` of a fixed template (glibc's vector copy, loads included), then `seq` over the
    /// first and last 8 bytes; those two words are checked ([`stamp_template`]).
    Memcpy,
}

impl Fill {
    /// Whether `rec` is record `seq` as this fill writes it.
    #[inline]
    pub fn check(self, rec: &[u8], seq: u64) -> bool {
        match self {
            Self::Words => check(rec, seq),
            Self::Memcpy => check_ends(rec, seq),
        }
    }
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

/// Writes a record of `rec.len()` bytes (a multiple of 8) for sequence number `seq`: 8-byte word
/// `i` holds `seq + i`, so the reader can check every word of every record (a torn, stale or
/// shifted record fails). On 8-aligned memory (both rings) the words are written as one
/// volatile 8-byte store each, so every ring gets the same instruction stream for the payload —
/// `size / 8` stores — whatever the compiler would otherwise merge or vectorise (how many stores a
/// record takes is what bounds a ring here; see `docs/benchmarks.md`, "Ring").
#[inline]
pub fn stamp(rec: &mut [u8], seq: u64) {
    if rec.as_ptr().align_offset(8) == 0 {
        for (i, c) in rec.chunks_exact_mut(8).enumerate() {
            // SAFETY: `c` is 8 bytes of `rec`, which starts 8-aligned, so `c` is a valid, aligned
            // place for a u64 that nothing else references while `rec` is borrowed mutably.
            unsafe {
                c.as_mut_ptr()
                    .cast::<u64>()
                    .write_volatile(seq.wrapping_add(i as u64).to_le())
            };
        }
    } else {
        stamp_unaligned(rec, seq);
    }
}

/// [`stamp`] for a buffer that is not 8-aligned (kernel baselines), out of the rings' hot loops.
#[cold]
#[inline(never)]
fn stamp_unaligned(rec: &mut [u8], seq: u64) {
    for (i, c) in rec.chunks_exact_mut(8).enumerate() {
        c.copy_from_slice(&seq.wrapping_add(i as u64).to_le_bytes());
    }
}

/// Whether every 8-byte word `i` of `rec` holds `seq + i` (see [`stamp`]).
#[inline]
pub fn check(rec: &[u8], seq: u64) -> bool {
    let mut bad = 0u64;
    for (i, c) in rec.chunks_exact(8).enumerate() {
        bad |= u64::from_le_bytes(c.try_into().unwrap_or_default()) ^ seq.wrapping_add(i as u64);
    }
    rec.len() >= 16 && rec.len() % 8 == 0 && bad == 0
}

/// A payload pattern of `size` bytes for [`Fill::Memcpy`].
pub fn template(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
        .collect()
}

/// [`Fill::Memcpy`]: copies `template` into `rec` and stamps `seq` over its first and last 8 bytes.
#[inline]
pub fn stamp_template(rec: &mut [u8], template: &[u8], seq: u64) {
    rec.copy_from_slice(template);
    let s = seq.to_le_bytes();
    let n = rec.len();
    rec[..8].copy_from_slice(&s);
    rec[n - 8..].copy_from_slice(&s);
}

/// Whether `rec` carries `seq` in its first and last 8 bytes ([`Fill::Memcpy`]).
#[inline]
pub fn check_ends(rec: &[u8], seq: u64) -> bool {
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
