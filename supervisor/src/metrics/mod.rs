//! Observability: Prometheus exposition of the daemon's state, a scrape endpoint the event loop
//! drives, per-worker resource history, and anomaly flags. Everything here is plain data and pure
//! functions except [`HttpExporter`], which does non-blocking socket I/O under the daemon's
//! `mio` poll.
//!
//! * [`Snapshot`] — what one scrape shows; the daemon fills it from its own state (no
//!   references into daemon types) and [`render`] turns it into text exposition format 0.0.4
//!   ([`CONTENT_TYPE`]). The metric families are listed on [`render`].
//! * [`HttpExporter`] — `GET /metrics` on [`metrics_addr`](crate::config::SupervisorConfig),
//!   one request per connection, bounded buffers, a timeout per connection.
//! * [`ResourceHistory`] — the last samples of a worker's `/proc` counters with CPU use and
//!   context-switch rates derived between them.
//! * [`anomalies`] — consecutive failures, restart loops and slow outliers, with documented
//!   [`Thresholds`].
//!
//! # Why the text format is written by hand
//!
//! The official client, `prometheus-client` (0.25), was considered. It fits poorly here: it
//! encodes OpenMetrics text (`# EOF`, `application/openmetrics-text`) rather than format 0.0.4;
//! its metric types are live, atomically updated objects in a registry, whereas ampd already
//! keeps its own counters and rebuilds a snapshot per scrape; and a histogram built from
//! pre-aggregated HdrHistogram buckets needs its custom `Collector` API (`Send + Sync +
//! 'static`, changed between releases), i.e. a registry and a copy of the snapshot per scrape.
//! The 0.0.4 format itself is a few lines of code: `# HELP`/`# TYPE` lines, then
//! `name{label="value"} number` samples, with three escapes in label values. The tests check the
//! output with a strict parser of that format.
//!
//! # Driving it from the daemon
//!
//! ```text
//! new():       exporter = HttpExporter::bind(addr, ExporterOptions::default())?;
//!              exporter.register(poll.registry(), 16)?;   // tokens 16..=32, below UNIT_BASE
//! dispatch():  t if exporter.owns(t) => {                  // before the other arms
//!                  if let Some(s) = exporter.ready(t, registry, now) {
//!                      let body = render(&self.metrics_snapshot(now));
//!                      exporter.respond(s, &body, registry);
//!                  }
//!              }
//! run():       deadline = deadline.min(exporter.next_deadline())
//! timers():    exporter.expire(now, registry);
//!              every second: history[u].sample(now, proc_sample(pid)?)
//!              (history[u].new_process() when the unit's process changes)
//! completions: health[u].task_done(ok);   restarts: health[u].restarted(now)
//! ```
//!
//! `ready` and `respond` are separate so that the snapshot can be built from `&self` while the
//! exporter (a field of the daemon) is not borrowed.

mod anomaly;
mod exposition;
mod http;
mod resources;
mod snapshot;

pub use anomaly::{anomalies, Anomaly, AnomalyInput, LatencyRow, Thresholds, WorkerHealth};
pub use exposition::{render, CONTENT_TYPE};
pub use http::{ExporterError, ExporterOptions, HttpExporter, Scrape};
pub use resources::{ResourceHistory, ResourcePoint, DEFAULT_CAPACITY};
pub use snapshot::{
    KindRow, LatencyHistogram, PairRow, RingCounters, Snapshot, WorkerRow, DEFAULT_BUCKETS,
};

#[cfg(test)]
mod tests;
