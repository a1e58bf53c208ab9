//! Observability in the loop: Prometheus exposition (control `metrics` request and the optional
//! HTTP listener), per-worker /proc samples on a timer, and anomaly flags.

use std::time::{Duration, Instant};

use mio::Token;

use crate::lifecycle::StateKind;
use crate::metrics::{self, HttpExporter};
use crate::sys;

use super::Daemon;

/// Listener token; connections use the next `max_connections` tokens (below UNIT_BASE).
pub const METRICS_BASE: usize = 16;
/// How often worker resources are sampled.
pub const SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// Metrics state the daemon keeps.
#[derive(Debug)]
pub struct Obs {
    /// The HTTP listener (when `metrics_addr` is set).
    pub exporter: Option<HttpExporter>,
    /// Resource samples per unit.
    pub resources: Vec<metrics::ResourceHistory>,
    /// Failure/restart bookkeeping per unit, for anomaly flags.
    pub health: Vec<metrics::WorkerHealth>,
    /// When to sample /proc next.
    pub next_sample: Instant,
    /// Anomalies flagged at the last sample (to emit an event only for new ones).
    pub flagged: Vec<String>,
}

impl Obs {
    /// Binds the exporter (if configured) and sizes the per-unit tables.
    ///
    /// # Errors
    /// When `metrics_addr` cannot be bound.
    pub fn new(
        addr: Option<std::net::SocketAddr>,
        registry: &mio::Registry,
        unit_names: &[String],
    ) -> anyhow::Result<Self> {
        let exporter = match addr {
            Some(a) => {
                let mut e = HttpExporter::bind(a, metrics::ExporterOptions::default())?;
                e.register(registry, METRICS_BASE)?;
                tracing::info!(addr = %e.local_addr(), "serving metrics at /metrics");
                Some(e)
            }
            None => None,
        };
        Ok(Self {
            exporter,
            resources: unit_names
                .iter()
                .map(|_| metrics::ResourceHistory::default())
                .collect(),
            health: unit_names.iter().map(metrics::WorkerHealth::new).collect(),
            next_sample: Instant::now(),
            flagged: Vec::new(),
        })
    }
}

impl Daemon {
    pub(super) fn owns_metrics_token(&self, token: Token) -> bool {
        self.obs.exporter.as_ref().is_some_and(|m| m.owns(token))
    }

    pub(super) fn on_metrics(&mut self, token: Token) {
        let now = Instant::now();
        let scrape = self
            .obs
            .exporter
            .as_mut()
            .and_then(|m| m.ready(token, self.poll.registry(), now));
        if let Some(s) = scrape {
            let body = metrics::render(&self.metrics_snapshot(now));
            if let Some(m) = self.obs.exporter.as_mut() {
                m.respond(s, &body, self.poll.registry());
            }
        }
    }

    /// In `timers()`.
    pub(super) fn metrics_timers(&mut self, now: Instant) {
        if let Some(m) = self.obs.exporter.as_mut() {
            m.expire(now, self.poll.registry());
        }
        if now >= self.obs.next_sample {
            self.obs.next_sample = now + SAMPLE_PERIOD;
            for (u, unit) in self.units.iter().enumerate() {
                if let Some(s) = unit
                    .proc
                    .as_ref()
                    .and_then(|p| sys::proc_sample(p.pid).ok())
                {
                    let point = self.obs.resources[u].sample(now, s);
                    // The adaptive controller profiles resource use too ("amplitude").
                    let sample = crate::adapt::ResourceSample {
                        cpu_percent: point.cpu_cores.map_or(0.0, |c| c * 100.0),
                        rss_bytes: point.sample.rss_bytes,
                        ctx_switches: point.sample.voluntary_ctxt_switches
                            + point.sample.nonvoluntary_ctxt_switches,
                    };
                    self.plane.adapt.observe_resources(u, sample, now);
                }
            }
            let flags: Vec<String> = self
                .anomaly_flags(now)
                .iter()
                .map(ToString::to_string)
                .collect();
            for f in &flags {
                if !self.obs.flagged.contains(f) {
                    tracing::warn!("anomaly: {f}");
                    self.push_event(String::new(), "anomaly_flagged", f.clone());
                }
            }
            self.obs.flagged = flags;
        }
    }

    /// For the poll timeout in `run()`.
    pub(super) fn metrics_deadline(&self) -> Instant {
        let e = self
            .obs
            .exporter
            .as_ref()
            .and_then(HttpExporter::next_deadline);
        e.map_or(self.obs.next_sample, |d| d.min(self.obs.next_sample))
    }

    pub(super) fn metrics_snapshot(&self, now: Instant) -> metrics::Snapshot {
        // Relaxed: the counters are statistics; they order nothing.
        use std::sync::atomic::Ordering::Relaxed;
        let workers = self
            .life
            .status()
            .iter()
            .map(|s| {
                let u = s.id.index();
                let p = self.units.get(u).and_then(|x| x.proc.as_ref());
                metrics::WorkerRow {
                    worker: s.name.to_owned(),
                    up: s.state == StateKind::Ready,
                    restarts: u64::from(s.restarts),
                    process: self
                        .obs
                        .resources
                        .get(u)
                        .and_then(|h| h.latest())
                        .map(|pt| pt.sample)
                        .filter(|_| p.is_some()),
                    ring: p.and_then(|p| p.ipc.as_ref()).map(|ipc| {
                        let c = ipc.seg.control();
                        metrics::RingCounters {
                            wakeups_to_worker: c.supervisor_wakeups_sent.load(Relaxed),
                            wakeups_to_supervisor: c.wakeups_sent.load(Relaxed),
                            records_to_worker: c.supervisor_records_sent.load(Relaxed),
                            records_to_supervisor: c.records_sent.load(Relaxed),
                        }
                    }),
                }
            })
            .collect();
        let per_kind = &self.plane.delivery.stats().per_kind;
        let kinds = self
            .plane
            .routers
            .iter()
            .zip(&self.plane.kind_names)
            .enumerate()
            .map(|(k, (r, name))| {
                let st = r.stats();
                metrics::KindRow {
                    kind: name.clone(),
                    queued: st
                        .queued
                        .iter()
                        .map(|(c, n)| (c.clone(), *n as u64))
                        .collect(),
                    rejected: self.plane.rejected.get(k).copied().unwrap_or(0),
                    in_flight: st.in_flight,
                    dispatched: st.dispatched,
                    counters: per_kind.get(k).copied().unwrap_or_default(),
                }
            })
            .collect();
        let pairs = self
            .plane
            .pair_stats
            .iter()
            .map(|((k, u), s)| metrics::PairRow {
                kind: self
                    .plane
                    .kind_names
                    .get(*k as usize)
                    .cloned()
                    .unwrap_or_default(),
                worker: self
                    .units
                    .get(*u)
                    .map(|x| x.name.clone())
                    .unwrap_or_default(),
                ok: s.ok,
                error: s.err,
                latency: metrics::LatencyHistogram::from_micros(&s.hist, &metrics::DEFAULT_BUCKETS),
            })
            .collect();
        metrics::Snapshot {
            uptime: now.saturating_duration_since(self.start),
            paused: self.plane.paused,
            malformed_records: self.plane.malformed,
            daemon: sys::proc_sample(nix::unistd::getpid()).ok(),
            census: self.plane.delivery.census(),
            kinds,
            pairs,
            workers,
        }
    }

    /// For `status`/`ampctl`/the TUI.
    pub(super) fn anomaly_flags(&self, now: Instant) -> Vec<metrics::Anomaly> {
        let latencies: Vec<metrics::LatencyRow> = self
            .plane
            .pair_stats
            .iter()
            .map(|((k, u), s)| {
                metrics::LatencyRow::from_micros(
                    self.plane
                        .kind_names
                        .get(*k as usize)
                        .cloned()
                        .unwrap_or_default(),
                    self.units
                        .get(*u)
                        .map(|x| x.name.clone())
                        .unwrap_or_default(),
                    &s.hist,
                )
            })
            .collect();
        metrics::anomalies(&metrics::AnomalyInput {
            now,
            workers: &self.obs.health,
            latencies: &latencies,
            thresholds: &metrics::Thresholds::default(),
        })
    }
}
