//! `peak_ewma`: power of two choices on PeakEWMA latency × (in flight + 1) (Finagle, tower).

use super::{derive_seed, two_choices, Candidate, Router};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Latency assumed for a worker without samples while no worker has any.
pub const DEFAULT_RTT: Duration = Duration::from_millis(1);

/// Ceiling of an estimate (one hour), so failure penalties cannot grow without bound.
const MAX_RTT_NS: f64 = 3_600e9;

/// One worker's latency estimate.
#[derive(Debug, Clone, Copy)]
struct Estimate {
    /// The estimate in nanoseconds as of `at`.
    rtt_ns: f64,
    /// When it was last updated.
    at: Instant,
    /// Completions observed.
    samples: u64,
    /// Of which failures.
    failures: u64,
}

impl Estimate {
    /// Weight of the old estimate after `elapsed`: `exp(-elapsed / decay)`.
    fn weight(&self, now: Instant, decay_ns: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64() * 1e9;
        (-elapsed / decay_ns).exp()
    }

    /// The estimate at `now`: it decays towards 0 while no sample arrives, so an idle worker
    /// (or one that stopped being picked because it was slow) is tried again eventually.
    fn current(&self, now: Instant, decay_ns: f64) -> f64 {
        self.rtt_ns * self.weight(now, decay_ns)
    }
}

/// Peak-EWMA (Finagle's `PeakEwma`, tower's `load::PeakEwma`): each worker's latency estimate
/// jumps straight up to a sample above it (so a worker that turns slow is avoided at once) and
/// moves towards a lower sample with an exponentially time-weighted average,
/// `e' = e·w + s·(1 − w)` with `w = exp(−elapsed / decay)` (`elapsed` since its last update;
/// without samples it decays towards 0, see above). A pick is a power of two choices on
/// `cost = estimate × (in_flight + 1)`: latency times the work already queued there.
///
/// A worker without samples is assumed to be typical: the median of the measured workers'
/// estimates, or [`DEFAULT_RTT`] when none is measured. A failed completion counts as a sample
/// of at least twice the worker's estimate, so a worker failing fast does not attract traffic.
#[derive(Debug, Clone)]
pub struct PeakEwma {
    rng: SmallRng,
    decay_ns: f64,
    units: BTreeMap<usize, Estimate>,
}

impl PeakEwma {
    /// The policy's configuration name.
    pub const NAME: &'static str = "peak_ewma";

    /// A policy with no samples, `decay` as its decay time (a zero decay is taken as 1 ns: the
    /// estimate is then simply the last sample), random choices from `seed`.
    #[must_use]
    pub fn new(seed: u64, decay: Duration) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(derive_seed(seed, 2)),
            decay_ns: (decay.as_secs_f64() * 1e9).max(1.0),
            units: BTreeMap::new(),
        }
    }

    /// The decay time.
    #[must_use]
    pub fn decay(&self) -> Duration {
        Duration::from_secs_f64(self.decay_ns / 1e9)
    }

    /// `unit`'s latency estimate at `now` (the unmeasured default if it has no samples).
    #[must_use]
    pub fn estimate(&self, unit: usize, now: Instant) -> Duration {
        let ns = self
            .units
            .get(&unit)
            .map_or_else(|| self.unmeasured(now), |e| e.current(now, self.decay_ns));
        Duration::from_secs_f64(ns / 1e9)
    }

    /// The estimate used for a worker without samples: the median of the others, else
    /// [`DEFAULT_RTT`].
    fn unmeasured(&self, now: Instant) -> f64 {
        unmeasured(&self.units, now, self.decay_ns)
    }
}

/// The median of the estimates in `units` at `now`, or [`DEFAULT_RTT`] if there are none.
fn unmeasured(units: &BTreeMap<usize, Estimate>, now: Instant, decay_ns: f64) -> f64 {
    let mut known: Vec<f64> = units.values().map(|e| e.current(now, decay_ns)).collect();
    if known.is_empty() {
        return DEFAULT_RTT.as_secs_f64() * 1e9;
    }
    known.sort_by(f64::total_cmp);
    let mid = known.len() / 2;
    if known.len() % 2 == 1 {
        known[mid]
    } else {
        (known[mid - 1] + known[mid]) / 2.0
    }
}

impl Router for PeakEwma {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn pick(&mut self, now: Instant, candidates: &[Candidate]) -> Option<usize> {
        let (units, decay_ns) = (&self.units, self.decay_ns);
        let mut default = None;
        let mut cost = |i: usize| {
            let c: &Candidate = &candidates[i];
            let rtt = match units.get(&c.unit) {
                Some(e) => e.current(now, decay_ns),
                None => *default.get_or_insert_with(|| unmeasured(units, now, decay_ns)),
            };
            rtt * (f64::from(c.in_flight) + 1.0)
        };
        two_choices(&mut self.rng, candidates.len(), &mut cost)
    }

    fn on_dispatch(&mut self, _unit: usize, _now: Instant) {}

    fn on_complete(&mut self, unit: usize, latency: Duration, ok: bool, now: Instant) {
        let decay_ns = self.decay_ns;
        let unmeasured = if self.units.contains_key(&unit) {
            0.0
        } else {
            self.unmeasured(now)
        };
        let e = self.units.entry(unit).or_insert(Estimate {
            rtt_ns: unmeasured,
            at: now,
            samples: 0,
            failures: 0,
        });
        let current = e.current(now, decay_ns);
        let mut sample = latency.as_secs_f64() * 1e9;
        if !ok {
            sample = sample.max(2.0 * current);
            e.failures += 1;
        }
        let sample = sample.min(MAX_RTT_NS);
        e.rtt_ns = if e.samples == 0 || sample > current {
            sample
        } else {
            let w = e.weight(now, decay_ns);
            e.rtt_ns * w + sample * (1.0 - w)
        };
        e.samples += 1;
        e.at = now;
    }

    fn on_abandoned(&mut self, _unit: usize, _now: Instant) {}

    fn on_removed(&mut self, unit: usize) {
        self.units.remove(&unit);
    }

    fn describe(&self, now: Instant) -> serde_json::Value {
        let units: Vec<_> = self
            .units
            .iter()
            .map(|(unit, e)| {
                json!({
                    "unit": unit,
                    "rtt_us": e.current(now, self.decay_ns) / 1e3,
                    "updated_ms_ago": now.saturating_duration_since(e.at).as_secs_f64() * 1e3,
                    "samples": e.samples,
                    "failures": e.failures,
                })
            })
            .collect();
        json!({
            "policy": Self::NAME,
            "decay_ms": self.decay_ns / 1e6,
            "unmeasured_rtt_us": self.unmeasured(now) / 1e3,
            "units": units,
        })
    }
}
