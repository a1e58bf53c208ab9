//! Rendering a [`Snapshot`] in the Prometheus text exposition format, version 0.0.4.
//!
//! Each family is written as `# HELP`, `# TYPE`, then its samples, in a fixed order, so the
//! output is stable for a given snapshot. Label values are escaped (`\\`, `\"`, `\n`); floats
//! use Rust's shortest round-trip decimal form (never an exponent), with `+Inf`, `-Inf` and
//! `NaN` spelled as Prometheus expects.

use std::fmt::Write as _;

use super::snapshot::{LatencyHistogram, Snapshot};

/// `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A sample value: integers print exactly, floats in Prometheus' spelling.
#[derive(Debug, Clone, Copy)]
enum Val {
    U(u64),
    F(f64),
}

impl From<u64> for Val {
    fn from(v: u64) -> Self {
        Self::U(v)
    }
}

impl From<f64> for Val {
    fn from(v: f64) -> Self {
        Self::F(v)
    }
}

impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Self::U(u64::from(v))
    }
}

fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes families into a string.
struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // HELP text escapes `\` and newlines (the help strings here are constants without them).
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Val>) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        match value.into() {
            Val::U(v) => {
                let _ = write!(self.out, "{v}");
            }
            Val::F(v) => write_f64(&mut self.out, v),
        }
        self.out.push('\n');
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &LatencyHistogram) {
        let mut le = String::new();
        let bucket = format!("{name}_bucket");
        for (bound, n) in h.buckets() {
            le.clear();
            write_f64(&mut le, bound);
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, n);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.sample(&bucket, &l, h.count());
        self.sample(&format!("{name}_sum"), labels, h.sum_seconds());
        self.sample(&format!("{name}_count"), labels, h.count());
    }
}

/// Renders `s` as Prometheus text exposition (serve it with [`CONTENT_TYPE`]).
///
/// Families (all prefixed `amp_` except the standard `process_*` ones for ampd itself):
///
/// | name | type | labels |
/// |---|---|---|
/// | `amp_uptime_seconds` | gauge | |
/// | `amp_intake_paused` | gauge | |
/// | `amp_malformed_records_total` | counter | |
/// | `amp_tasks` | gauge | `state` = queued, in_flight, waiting_retry, dead_lettered |
/// | `amp_tasks_dead_lettered` | gauge | (the dead-letter queue's size) |
/// | `amp_tasks_done_total` | counter | |
/// | `amp_queue_depth` | gauge | `kind`, `class` |
/// | `amp_queue_rejected_total` | counter | `kind` |
/// | `amp_tasks_in_flight` | gauge | `kind` |
/// | `amp_tasks_dispatched_total` | counter | `kind` |
/// | `amp_tasks_submitted_total` | counter | `kind` |
/// | `amp_tasks_retried_total` | counter | `kind` |
/// | `amp_tasks_dead_lettered_total` | counter | `kind` |
/// | `amp_task_results_total` | counter | `kind`, `result` = ok, failed, deadline_exceeded, timed_out, loop_limit, cancelled |
/// | `amp_tasks_late_dropped_total` | counter | `kind` |
/// | `amp_tasks_dlq_evicted_total` | counter | `kind` |
/// | `amp_tasks_total` | counter | `kind`, `worker`, `outcome` = ok, error |
/// | `amp_task_duration_seconds` | histogram | `kind`, `worker` |
/// | `amp_worker_up` | gauge | `worker` |
/// | `amp_worker_restarts_total` | counter | `worker` |
/// | `amp_worker_cpu_seconds_total` | counter | `worker` |
/// | `amp_worker_resident_bytes` | gauge | `worker` |
/// | `amp_worker_context_switches_total` | counter | `worker`, `type` = voluntary, involuntary |
/// | `amp_ring_wakeups_total` | counter | `worker`, `direction` = to_worker, to_supervisor |
/// | `amp_ring_records_total` | counter | `worker`, `direction` |
/// | `process_cpu_seconds_total`, `process_resident_memory_bytes` | counter, gauge | (ampd) |
///
/// `amp_tasks_total` counts attempts per worker (a retried task counts on each worker it ran
/// on); `amp_task_results_total` counts each task's final answer once. Process and ring
/// counters restart with each worker process.
///
/// ```
/// use amp_supervisor::metrics::{render, Snapshot};
/// let text = render(&Snapshot::default());
/// assert!(text.contains("# TYPE amp_tasks_total counter\n"));
/// ```
#[must_use]
pub fn render(s: &Snapshot) -> String {
    let mut w = Writer {
        out: String::with_capacity(4096 + 2048 * s.pairs.len() + 1024 * s.workers.len()),
    };
    daemon_families(&mut w, s);
    kind_families(&mut w, s);
    pair_families(&mut w, s);
    worker_families(&mut w, s);
    w.out
}

fn daemon_families(w: &mut Writer, s: &Snapshot) {
    w.family("amp_uptime_seconds", "gauge", "Seconds since ampd started.");
    w.sample("amp_uptime_seconds", &[], s.uptime.as_secs_f64());
    w.family(
        "amp_intake_paused",
        "gauge",
        "1 while intake is paused (ampctl pause), else 0.",
    );
    w.sample("amp_intake_paused", &[], s.paused);
    w.family(
        "amp_malformed_records_total",
        "counter",
        "Records from shared memory refused as malformed.",
    );
    w.sample("amp_malformed_records_total", &[], s.malformed_records);
    w.family(
        "amp_tasks",
        "gauge",
        "Tasks not yet done, by where they are.",
    );
    let c = &s.census;
    for (state, n) in [
        ("queued", c.queued),
        ("in_flight", c.in_flight),
        ("waiting_retry", c.waiting_retry),
        ("dead_lettered", c.dead_lettered),
    ] {
        w.sample("amp_tasks", &[("state", state)], n);
    }
    w.family(
        "amp_tasks_dead_lettered",
        "gauge",
        "Tasks in the dead-letter queue now.",
    );
    w.sample("amp_tasks_dead_lettered", &[], c.dead_lettered);
    w.family(
        "amp_tasks_done_total",
        "counter",
        "Tasks answered and forgotten (any final outcome, or purged from the dead-letter queue).",
    );
    w.sample("amp_tasks_done_total", &[], c.done);
    if let Some(p) = &s.daemon {
        w.family(
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time ampd has used, in seconds.",
        );
        w.sample("process_cpu_seconds_total", &[], p.cpu_time.as_secs_f64());
        w.family(
            "process_resident_memory_bytes",
            "gauge",
            "ampd's resident set size in bytes.",
        );
        w.sample("process_resident_memory_bytes", &[], p.rss_bytes);
    }
}

fn kind_families(w: &mut Writer, s: &Snapshot) {
    w.family(
        "amp_queue_depth",
        "gauge",
        "Tasks waiting in a kind's queue, per priority class.",
    );
    for k in &s.kinds {
        for (class, n) in &k.queued {
            w.sample(
                "amp_queue_depth",
                &[("kind", &k.kind), ("class", class)],
                *n,
            );
        }
    }
    type Get = fn(&super::snapshot::KindRow) -> u64;
    let simple: [(&str, &str, &str, Get); 8] = [
        (
            "amp_queue_rejected_total",
            "counter",
            "Submissions refused (queue full, paused, too large, unknown class).",
            |k| k.rejected,
        ),
        (
            "amp_tasks_in_flight",
            "gauge",
            "Tasks dispatched to a worker and not completed.",
            |k| k.in_flight,
        ),
        (
            "amp_tasks_dispatched_total",
            "counter",
            "Dispatches to workers (a requeued task counts again).",
            |k| k.dispatched,
        ),
        (
            "amp_tasks_submitted_total",
            "counter",
            "New tasks accepted.",
            |k| k.counters.submitted,
        ),
        (
            "amp_tasks_retried_total",
            "counter",
            "Retries scheduled after a retryable error.",
            |k| k.counters.retried,
        ),
        (
            "amp_tasks_dead_lettered_total",
            "counter",
            "Tasks moved to the dead-letter queue (including poison).",
            |k| k.counters.dead_lettered,
        ),
        (
            "amp_tasks_late_dropped_total",
            "counter",
            "Completions dropped as late duplicates.",
            |k| k.counters.late_dropped,
        ),
        (
            "amp_tasks_dlq_evicted_total",
            "counter",
            "Dead-letter entries dropped, oldest first, to keep the queue within dlq_limit.",
            |k| k.counters.dlq_evicted,
        ),
    ];
    for (name, kind, help, get) in simple {
        w.family(name, kind, help);
        for k in &s.kinds {
            w.sample(name, &[("kind", &k.kind)], get(k));
        }
    }
    w.family(
        "amp_task_results_total",
        "counter",
        "Final answers to tasks, by result (each task counted once).",
    );
    for k in &s.kinds {
        let c = &k.counters;
        for (result, n) in [
            ("ok", c.delivered_ok),
            ("failed", c.failed),
            ("deadline_exceeded", c.deadline_exceeded),
            ("timed_out", c.timed_out),
            ("loop_limit", c.loop_limited),
            ("cancelled", c.cancelled),
        ] {
            w.sample(
                "amp_task_results_total",
                &[("kind", &k.kind), ("result", result)],
                n,
            );
        }
    }
}

fn pair_families(w: &mut Writer, s: &Snapshot) {
    w.family(
        "amp_tasks_total",
        "counter",
        "Task attempts completed by a worker, by outcome.",
    );
    for p in &s.pairs {
        let l = [("kind", p.kind.as_str()), ("worker", p.worker.as_str())];
        w.sample("amp_tasks_total", &[l[0], l[1], ("outcome", "ok")], p.ok);
        w.sample(
            "amp_tasks_total",
            &[l[0], l[1], ("outcome", "error")],
            p.error,
        );
    }
    w.family(
        "amp_task_duration_seconds",
        "histogram",
        "Dispatch-to-completion latency of task attempts, in seconds.",
    );
    for p in &s.pairs {
        w.histogram(
            "amp_task_duration_seconds",
            &[("kind", &p.kind), ("worker", &p.worker)],
            &p.latency,
        );
    }
}

fn worker_families(w: &mut Writer, s: &Snapshot) {
    w.family(
        "amp_worker_up",
        "gauge",
        "1 while the worker's process is running and ready, else 0.",
    );
    for r in &s.workers {
        w.sample("amp_worker_up", &[("worker", &r.worker)], r.up);
    }
    w.family(
        "amp_worker_restarts_total",
        "counter",
        "Automatic restarts of the worker.",
    );
    for r in &s.workers {
        w.sample(
            "amp_worker_restarts_total",
            &[("worker", &r.worker)],
            r.restarts,
        );
    }
    w.family(
        "amp_worker_cpu_seconds_total",
        "counter",
        "User and system CPU time of the worker's current process, in seconds.",
    );
    for r in &s.workers {
        if let Some(p) = &r.process {
            w.sample(
                "amp_worker_cpu_seconds_total",
                &[("worker", &r.worker)],
                p.cpu_time.as_secs_f64(),
            );
        }
    }
    w.family(
        "amp_worker_resident_bytes",
        "gauge",
        "Resident set size of the worker's current process, in bytes.",
    );
    for r in &s.workers {
        if let Some(p) = &r.process {
            w.sample(
                "amp_worker_resident_bytes",
                &[("worker", &r.worker)],
                p.rss_bytes,
            );
        }
    }
    w.family(
        "amp_worker_context_switches_total",
        "counter",
        "Context switches of the worker's current process (voluntary: it blocked; involuntary: it was preempted).",
    );
    for r in &s.workers {
        if let Some(p) = &r.process {
            for (t, n) in [
                ("voluntary", p.voluntary_ctxt_switches),
                ("involuntary", p.nonvoluntary_ctxt_switches),
            ] {
                w.sample(
                    "amp_worker_context_switches_total",
                    &[("worker", &r.worker), ("type", t)],
                    n,
                );
            }
        }
    }
    w.family(
        "amp_ring_wakeups_total",
        "counter",
        "Eventfd wakeups sent over the worker's rings, by direction.",
    );
    for r in &s.workers {
        if let Some(c) = &r.ring {
            for (d, n) in [
                ("to_worker", c.wakeups_to_worker),
                ("to_supervisor", c.wakeups_to_supervisor),
            ] {
                w.sample(
                    "amp_ring_wakeups_total",
                    &[("worker", &r.worker), ("direction", d)],
                    n,
                );
            }
        }
    }
    w.family(
        "amp_ring_records_total",
        "counter",
        "Records published on the worker's rings, by direction.",
    );
    for r in &s.workers {
        if let Some(c) = &r.ring {
            for (d, n) in [
                ("to_worker", c.records_to_worker),
                ("to_supervisor", c.records_to_supervisor),
            ] {
                w.sample(
                    "amp_ring_records_total",
                    &[("worker", &r.worker), ("direction", d)],
                    n,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_floats_use_prometheus_spelling() {
        let mut s = String::new();
        for v in [
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            0.00025,
            10.0,
            1e-7,
        ] {
            write_f64(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "+Inf -Inf NaN 0.00025 10 0.0000001 ");
    }

    #[test]
    fn metrics_label_values_are_escaped() {
        let mut w = Writer { out: String::new() };
        w.sample("m", &[("a", "x\"y\\z\nw")], 1u64);
        assert_eq!(w.out, "m{a=\"x\\\"y\\\\z\\nw\"} 1\n");
    }
}
