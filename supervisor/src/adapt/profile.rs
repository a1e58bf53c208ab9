//! Profiles: latency distributions over sliding windows (a ring of per-slot HdrHistograms,
//! merged on demand: percentiles are never averaged), throughput, error rate, and resource
//! samples.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Largest latency recorded (longer ones are recorded as this): one hour, in µs.
const MAX_US: u64 = 3_600_000_000;

/// Significant digits kept by every histogram (1 % resolution).
const SIGFIG: u8 = 2;

fn new_histogram() -> Histogram<u64> {
    Histogram::new(SIGFIG).expect("2 significant digits is a valid precision")
}

/// A latency in µs as recorded (at least 1, at most [`MAX_US`]).
fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros())
        .unwrap_or(MAX_US)
        .clamp(1, MAX_US)
}

#[derive(Debug, Clone)]
struct Slot {
    /// Slot number since the ring's epoch.
    index: u64,
    hist: Histogram<u64>,
    errors: u64,
}

/// Latencies and outcomes over the last `slots` time slots of `slot` each. Recording touches
/// only the newest slot; a window is merged from the slots on demand.
#[derive(Debug, Clone)]
pub struct WindowedHistogram {
    slot: Duration,
    capacity: usize,
    epoch: Instant,
    slots: VecDeque<Slot>,
    /// Histograms of slots that went out of the window, kept for reuse.
    spare: Vec<Histogram<u64>>,
    /// The time span `[from, until)` of the newest slot, once one exists: a `now` inside it
    /// records there directly (no division, nothing to expire). Completions come in bursts
    /// with the same `now`, so this is the common case.
    newest: Option<(Instant, Instant)>,
}

impl WindowedHistogram {
    /// A window of `slots` (at least 1) slots of `slot` (not zero), starting at `epoch`.
    #[must_use]
    pub fn new(slot: Duration, slots: usize, epoch: Instant) -> Self {
        Self {
            slot: slot.max(Duration::from_nanos(1)),
            capacity: slots.max(1),
            epoch,
            slots: VecDeque::new(),
            spare: Vec::new(),
            newest: None,
        }
    }

    fn index(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(elapsed / self.slot.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Drops slots that left the window at `now`.
    fn expire(&mut self, now: u64) {
        while let Some(front) = self.slots.front() {
            if front.index + self.capacity as u64 <= now {
                let mut old = self.slots.pop_front().expect("front exists");
                old.hist.reset();
                self.spare.push(old.hist);
            } else {
                break;
            }
        }
    }

    /// Records one completion `latency` after its dispatch, failed unless `ok`.
    pub fn record(&mut self, now: Instant, latency: Duration, ok: bool) {
        self.record_all(now, [(latency, ok)]);
    }

    /// Records completions that all happened at `now`, each `(latency, ok)`: the same as one
    /// [`Self::record`] per sample, with one slot lookup.
    pub fn record_all(
        &mut self,
        now: Instant,
        samples: impl IntoIterator<Item = (Duration, bool)>,
    ) {
        let mut samples = samples.into_iter().peekable();
        if samples.peek().is_none() {
            // Nothing to record: no slot is opened (as no call of `record` would).
            return;
        }
        let slot = match self.newest {
            Some((from, until)) if now >= from && now < until && !self.slots.is_empty() => {
                self.slots.back_mut().expect("not empty")
            }
            _ => {
                let index = self.index(now);
                self.slot_for(index)
            }
        };
        for (latency, ok) in samples {
            Self::add(slot, latency, ok);
        }
    }

    /// The slot that records at slot index `index` land in: slots that left the window are
    /// dropped, a newer slot is started when `index` is past the newest, and an `index` older
    /// than the newest (time must not go backwards) lands in the newest.
    fn slot_for(&mut self, index: u64) -> &mut Slot {
        self.expire(index);
        if self.slots.back().is_none_or(|s| s.index < index) {
            let hist = self.spare.pop().unwrap_or_else(new_histogram);
            self.slots.push_back(Slot {
                index,
                hist,
                errors: 0,
            });
            self.newest = self.span_of(index);
        }
        self.slots.back_mut().expect("pushed above")
    }

    /// Adds a whole histogram of latencies (µs) and `errors` failures into slot `index` (as if
    /// each had been recorded at a time inside that slot), through [`Self::slot_for`].
    fn add_slot(&mut self, index: u64, hist: &Histogram<u64>, errors: u64) {
        let slot = self.slot_for(index);
        // The same precision on both sides; a histogram that auto-resizes takes any value.
        let _ = slot.hist.add(hist);
        slot.errors += errors;
    }

    /// The newest slot: its index, latencies and failures.
    fn newest_slot(&self) -> Option<&Slot> {
        self.slots.back()
    }

    /// The time span of slot `index` (`None` if it does not fit in an `Instant`).
    fn span_of(&self, index: u64) -> Option<(Instant, Instant)> {
        let nanos = self.slot.as_nanos();
        let at = |i: u64| {
            let off = u64::try_from(u128::from(i).checked_mul(nanos)?).ok()?;
            self.epoch.checked_add(Duration::from_nanos(off))
        };
        Some((at(index)?, at(index.checked_add(1)?)?))
    }

    fn add(slot: &mut Slot, latency: Duration, ok: bool) {
        let us = micros(latency);
        if slot.hist.record(us).is_err() {
            slot.hist.saturating_record(us);
        }
        if !ok {
            slot.errors += 1;
        }
    }

    /// The slot indices of the last `span` slots at `now`: `first..=last`.
    fn recent_range(&self, now: Instant, span: usize) -> (u64, u64) {
        let index = self.index(now);
        (
            (index + 1).saturating_sub(span.min(self.capacity) as u64),
            index,
        )
    }

    /// The slots of the last `span` slots at `now` (the newest, possibly partial, included).
    fn recent(&self, now: Instant, span: usize) -> impl Iterator<Item = &Slot> {
        let (first, last) = self.recent_range(now, span);
        self.slots
            .iter()
            .filter(move |s| s.index >= first && s.index <= last)
    }

    /// Whether slot `index` is among the last `span` slots at `now`.
    fn in_recent(&self, now: Instant, span: usize, index: u64) -> bool {
        let (first, last) = self.recent_range(now, span);
        (first..=last).contains(&index)
    }

    /// The latencies (µs) of the last `span` slots at `now`, merged into one histogram.
    #[must_use]
    pub fn merged(&self, now: Instant, span: usize) -> Histogram<u64> {
        let mut out = new_histogram();
        for s in self.recent(now, span) {
            out.add(&s.hist)
                .expect("an auto-resizing histogram takes any value");
        }
        out
    }

    /// Completions and failures in the last `span` slots at `now`.
    #[must_use]
    pub fn counts(&self, now: Instant, span: usize) -> (u64, u64) {
        self.recent(now, span)
            .fold((0, 0), |(n, e), s| (n + s.hist.len(), e + s.errors))
    }

    /// The whole window at `now`.
    #[must_use]
    pub fn window(&self) -> Duration {
        self.slot * u32::try_from(self.capacity).unwrap_or(u32::MAX)
    }

    /// Slots in the window.
    #[must_use]
    pub const fn slots(&self) -> usize {
        self.capacity
    }

    /// Length of one slot.
    #[must_use]
    pub const fn slot(&self) -> Duration {
        self.slot
    }
}

/// A resource sample of one worker process, fed in by the caller (ampd reads `/proc`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ResourceSample {
    /// CPU use since the previous sample, in % of one core.
    pub cpu_percent: f64,
    /// Resident set size.
    pub rss_bytes: u64,
    /// Context switches so far (voluntary + involuntary; cumulative).
    pub ctx_switches: u64,
}

/// The last resource sample of a worker and the context-switch rate derived from two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Resources {
    /// The last sample.
    pub last: ResourceSample,
    /// Context switches per second between the last two samples.
    pub ctx_per_s: f64,
    /// EWMA of CPU % (time constant of about five samples).
    pub cpu_ewma: f64,
    #[serde(skip)]
    at: Option<Instant>,
}

impl Resources {
    /// Takes a new sample.
    pub fn observe(&mut self, sample: ResourceSample, now: Instant) {
        if let Some(at) = self.at {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            if dt > 0.0 {
                #[allow(
                    clippy::cast_precision_loss,
                    reason = "a context-switch delta; rounding is irrelevant"
                )]
                let delta = sample.ctx_switches.saturating_sub(self.last.ctx_switches) as f64;
                self.ctx_per_s = delta / dt;
            }
            self.cpu_ewma = self.cpu_ewma * 0.8 + sample.cpu_percent * 0.2;
        } else {
            self.cpu_ewma = sample.cpu_percent;
        }
        self.last = sample;
        self.at = Some(now);
    }
}

/// One (kind, worker)'s — or one kind's — latency profile: a short window (for control) and a
/// long one (for baselines and timeouts).
///
/// When a long slot is a whole number of short slots (the default: 1 s and 100 ms), a
/// completion is recorded once, in the short window, and each short slot is added into the
/// long window when the next one starts; reads of the long window add the newest short slot,
/// not added yet. The figures are those of recording every completion in both windows (a
/// test checks it), at one histogram record per completion instead of two.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Short window: `short_slots` slots of the control interval.
    short: WindowedHistogram,
    /// Long window.
    long: WindowedHistogram,
    /// Short slots per long slot, when long slots are made of short ones; `None`: every
    /// completion is recorded in both windows.
    fold: Option<u64>,
    /// Completions ever.
    pub completed: u64,
    /// Failures ever.
    pub failed: u64,
}

/// A profile's figures at one moment, for evidence and `ampctl tune`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProfileSummary {
    /// Completions in the short window.
    pub short_samples: u64,
    /// Median latency over the short window (µs; 0 without samples).
    pub short_p50_us: u64,
    /// p99 over the short window (µs).
    pub short_p99_us: u64,
    /// Completions in the long window.
    pub long_samples: u64,
    /// Median over the long window (µs).
    pub long_p50_us: u64,
    /// p99 over the long window (µs).
    pub long_p99_us: u64,
    /// Completions per second over the long window (lower while the window is still filling).
    pub throughput: f64,
    /// Failed share of the long window's completions.
    pub error_rate: f64,
}

impl Profile {
    /// An empty profile with the given windows.
    #[must_use]
    pub fn new(
        interval: Duration,
        short_slots: usize,
        long_slot: Duration,
        long_slots: usize,
        epoch: Instant,
    ) -> Self {
        let short = WindowedHistogram::new(interval, short_slots, epoch);
        let long = WindowedHistogram::new(long_slot, long_slots, epoch);
        let (s, l) = (short.slot.as_nanos(), long.slot.as_nanos());
        let fold = (l % s == 0).then(|| u64::try_from(l / s).ok()).flatten();
        Self {
            short,
            long,
            fold,
            completed: 0,
            failed: 0,
        }
    }

    /// The same profile recording every completion in both windows (the reference the
    /// folding is tested against).
    #[cfg(test)]
    fn unfolded(mut self) -> Self {
        self.fold = None;
        self
    }

    /// Records a completion.
    pub fn record(&mut self, now: Instant, latency: Duration, ok: bool) {
        self.record_all(now, [(latency, ok)]);
    }

    /// Records completions that all happened at `now`, each `(latency, ok)`: the same as one
    /// [`Self::record`] per sample, with one slot lookup per window.
    pub fn record_all<I>(&mut self, now: Instant, samples: I)
    where
        I: IntoIterator<Item = (Duration, bool)>,
        I::IntoIter: Clone,
    {
        let samples = samples.into_iter();
        let (mut count, mut failed) = (0u64, 0u64);
        for (_, ok) in samples.clone() {
            count += 1;
            failed += u64::from(!ok);
        }
        if count == 0 {
            // Nothing to record: no slot is opened or folded (as no call of `record` would).
            return;
        }
        match self.fold {
            Some(ratio) => {
                let in_newest = self
                    .short
                    .newest
                    .is_some_and(|(from, until)| now >= from && now < until);
                if !in_newest {
                    self.fold_newest(now, ratio);
                }
                self.short.record_all(now, samples);
            }
            None => {
                self.short.record_all(now, samples.clone());
                self.long.record_all(now, samples);
            }
        }
        self.completed += count;
        self.failed += failed;
    }

    /// A record at `now` outside the newest short slot: if it starts a newer one, the newest
    /// goes into the long window first (it is complete). A `now` older than the newest slot
    /// (time went backwards) lands in the newest slot, which is then still open.
    fn fold_newest(&mut self, now: Instant, ratio: u64) {
        let Some(newest) = self.short.newest_slot() else {
            return;
        };
        if self.short.index(now) <= newest.index {
            return;
        }
        self.long
            .add_slot(newest.index / ratio, &newest.hist, newest.errors);
        // Recording in the long window at `now` would drop the slots that left it by then; so
        // does this (a read at an earlier `now` must not see them either).
        let index = self.long.index(now);
        self.long.expire(index);
    }

    /// The short window.
    #[must_use]
    pub const fn short(&self) -> &WindowedHistogram {
        &self.short
    }

    /// The newest short slot, which is never in the long window yet (a slot is added there
    /// when a newer one starts), with its long slot index.
    fn unfolded_tail(&self) -> Option<(u64, &Slot)> {
        let ratio = self.fold?;
        let newest = self.short.newest_slot()?;
        Some((newest.index / ratio, newest))
    }

    /// The latencies (µs) of the whole long window at `now`, merged into one histogram.
    #[must_use]
    pub fn long_merged(&self, now: Instant) -> Histogram<u64> {
        let mut h = self.long.merged(now, self.long.slots());
        if let Some((index, slot)) = self.unfolded_tail() {
            if self.long.in_recent(now, self.long.slots(), index) {
                let _ = h.add(&slot.hist);
            }
        }
        h
    }

    /// Completions and failures in the whole long window at `now`.
    #[must_use]
    pub fn long_counts(&self, now: Instant) -> (u64, u64) {
        let (mut n, mut e) = self.long.counts(now, self.long.slots());
        if let Some((index, slot)) = self.unfolded_tail() {
            if self.long.in_recent(now, self.long.slots(), index) {
                n += slot.hist.len();
                e += slot.errors;
            }
        }
        (n, e)
    }

    /// The long window's length.
    #[must_use]
    pub fn long_window(&self) -> Duration {
        self.long.window()
    }

    /// The figures at `now`.
    #[must_use]
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    pub fn summary(&self, now: Instant) -> ProfileSummary {
        let short = self.short.merged(now, self.short.slots());
        let long = self.long_merged(now);
        let (n, errors) = self.long_counts(now);
        let span = self.long.window().as_secs_f64();
        ProfileSummary {
            short_samples: short.len(),
            short_p50_us: short.value_at_quantile(0.5),
            short_p99_us: short.value_at_quantile(0.99),
            long_samples: long.len(),
            long_p50_us: long.value_at_quantile(0.5),
            long_p99_us: long.value_at_quantile(0.99),
            throughput: n as f64 / span,
            error_rate: if n == 0 {
                0.0
            } else {
                errors as f64 / n as f64
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records land in the slot their `now` falls in, at the exact slot boundaries too, whether
    /// they take the fast path (same slot as the previous record) or not.
    #[test]
    fn records_land_in_their_slot() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = WindowedHistogram::new(ms(10), 3, t0);
        let at = |d: Duration| t0 + d;
        for (now, ok) in [
            (at(ms(0)), true),
            (at(ms(10) - Duration::from_nanos(1)), false),
            (at(ms(10)), true),
            (at(ms(15)), true),
            (at(ms(19)), false),
            (at(ms(5)), true), // older than the newest slot: lands in the newest
            (at(ms(20)), true),
        ] {
            w.record(now, ms(1), ok);
        }
        let now = at(ms(20));
        assert_eq!(w.counts(now, 1), (1, 0), "slot 2");
        assert_eq!(w.counts(now, 2), (5, 1), "slots 1-2");
        assert_eq!(w.counts(now, 3), (7, 2), "slots 0-2");
        // Slot 0 leaves the window when slot 3 starts.
        w.record(at(ms(30)), ms(1), true);
        assert_eq!(w.counts(at(ms(30)), 3), (6, 1));
        assert_eq!(w.merged(at(ms(30)), 3).len(), 6);
    }

    /// A profile folding short slots into the long window reads exactly like one recording
    /// every completion in both windows: random completion times (bursts, gaps longer than
    /// either window, times going backwards), latencies and outcomes, read at random times.
    #[test]
    fn folding_reads_like_recording_twice() {
        use rand::rngs::SmallRng;
        use rand::{Rng, SeedableRng};
        let ms = Duration::from_millis;
        for seed in 0..20 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let t0 = Instant::now();
            let mut folded = Profile::new(ms(100), 10, ms(1000), 10, t0);
            assert!(folded.fold.is_some(), "1 s slots are made of 100 ms slots");
            let mut both = Profile::new(ms(100), 10, ms(1000), 10, t0).unfolded();
            // The same completions, those at one time recorded at once (`record_all`), folded
            // and not.
            let mut batched = Profile::new(ms(100), 10, ms(1000), 10, t0);
            let mut both_batched = Profile::new(ms(100), 10, ms(1000), 10, t0).unfolded();
            let mut pending: Vec<(Duration, bool)> = Vec::new();
            let mut at = t0;
            for _ in 0..3000 {
                let before = at;
                at = match rng.random_range(0..100) {
                    0 => at + ms(rng.random_range(1_000..30_000)),
                    1..=3 => at
                        .checked_sub(ms(rng.random_range(1..300)))
                        .unwrap_or(at)
                        .max(t0),
                    4..=40 => at + Duration::from_micros(rng.random_range(1..200_000)),
                    _ => at,
                };
                let latency = Duration::from_micros(rng.random_range(1..5_000_000));
                let ok = rng.random_range(0..10) > 0;
                if at != before && !pending.is_empty() {
                    batched.record_all(before, pending.iter().copied());
                    both_batched.record_all(before, pending.iter().copied());
                    pending.clear();
                }
                folded.record(at, latency, ok);
                both.record(at, latency, ok);
                pending.push((latency, ok));
                if rng.random_range(0..20) == 0 {
                    batched.record_all(at, pending.iter().copied());
                    both_batched.record_all(at, pending.iter().copied());
                    pending.clear();
                    // Reads after the last record, and before it (a read's clock taken before
                    // a record's, as in ampd's loop).
                    let read = if rng.random_range(0..3) == 0 {
                        at.checked_sub(ms(rng.random_range(0..2_000)))
                            .unwrap_or(at)
                            .max(t0)
                    } else {
                        at + ms(rng.random_range(0..15_000))
                    };
                    assert_eq!(folded.summary(read), both.summary(read), "seed {seed}");
                    assert_eq!(folded.long_counts(read), both.long_counts(read));
                    assert_eq!(folded.long_merged(read), both.long_merged(read));
                    for b in [&batched, &both_batched] {
                        assert_eq!(b.summary(read), both.summary(read), "seed {seed}");
                        assert_eq!(b.long_counts(read), both.long_counts(read));
                        assert_eq!(b.long_merged(read), both.long_merged(read));
                    }
                }
            }
        }
    }

    /// Long slots that are not a whole number of short slots: every completion is recorded in
    /// both windows.
    #[test]
    fn uneven_slots_record_twice() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut p = Profile::new(ms(300), 4, ms(1000), 10, t0);
        assert!(p.fold.is_none());
        for i in 0..50 {
            p.record(t0 + ms(i * 50), ms(2), i % 5 != 0);
        }
        let s = p.summary(t0 + ms(2500));
        assert_eq!(s.long_samples, 50);
        assert_eq!(p.long_counts(t0 + ms(2500)), (50, 10));
    }
}
