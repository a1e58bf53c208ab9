//! Human-readable rendering of control responses (ampctl's default output).

use std::fmt::Write as _;

use super::proto::StatusData;

/// Renders `status` as a table.
#[must_use]
pub fn status_table(s: &StatusData) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ampd pid {}  up {:.1}s{}",
        s.pid,
        s.uptime_s,
        if s.shutting_down {
            "  (shutting down)"
        } else {
            ""
        }
    );
    let w = s
        .workers
        .iter()
        .map(|w| w.name.len())
        .max()
        .unwrap_or(4)
        .max(6);
    let _ = writeln!(
        out,
        "{:<w$}  {:<12} {:>8} {:>8} {:>9}  LAST EXIT",
        "WORKER", "STATE", "PID", "RESTARTS", "READY"
    );
    for wk in &s.workers {
        let pid = wk.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let ready = wk
            .ready_ms
            .map_or_else(|| "-".to_owned(), |m| format!("{:.2}s", m as f64 / 1000.0));
        let last = wk.last_exit.clone().unwrap_or_else(|| "-".to_owned());
        let _ = writeln!(
            out,
            "{:<w$}  {:<12} {:>8} {:>8} {:>9}  {}",
            wk.name, wk.state, pid, wk.restarts, ready, last
        );
    }
    if !s.queues.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<w$}  {:<13} {:>10} {:>9} {:>11}  QUEUED",
            "KIND", "POLICY", "IN FLIGHT", "REJECTED", "DISPATCHED"
        );
        for q in &s.queues {
            let depth: Vec<String> = q.depth.iter().map(|(c, n)| format!("{c}={n}")).collect();
            let _ = writeln!(
                out,
                "{:<w$}  {:<13} {:>10} {:>9} {:>11}  {}",
                q.kind,
                q.policy,
                q.in_flight,
                q.rejected,
                q.dispatched,
                depth.join(" ")
            );
        }
        let t = &s.tasks;
        let _ = writeln!(
            out,
            "\ntasks: {} queued, {} in flight, {} waiting retry, {} dead-lettered, {} done ({} retries, {} requeued from lost workers, {} late duplicates dropped)",
            t.queued, t.in_flight, t.waiting_retry, t.dead_lettered, t.done, t.retried, t.requeued_lost, t.late_dropped
        );
    }
    out
}

/// One event as a log-like line.
#[must_use]
pub fn event_line(ev: &serde_json::Value) -> String {
    format!(
        "{:>8.3}s #{:<5} {:<10} {:<18} {}",
        ev["at_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
        ev["seq"].as_u64().unwrap_or(0),
        ev["unit"].as_str().unwrap_or(""),
        ev["kind"].as_str().unwrap_or(""),
        ev["detail"].as_str().unwrap_or("")
    )
}

/// The `stats` table.
#[must_use]
pub fn stats_table(d: &serde_json::Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:<12} {:>10} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "KIND", "WORKER", "COMPLETED", "ERRORS", "TASKS/S", "P50 ms", "P90 ms", "P99 ms", "MAX ms"
    );
    for r in d["stats"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<12} {:<12} {:>10} {:>7} {:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            r["kind"].as_str().unwrap_or("?"),
            r["worker"].as_str().unwrap_or("?"),
            r["completed"].as_u64().unwrap_or(0),
            r["errors"].as_u64().unwrap_or(0),
            r["throughput_per_s"].as_f64().unwrap_or(0.0),
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p90_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["max_ms"].as_f64().unwrap_or(0.0),
        );
    }
    out
}

/// The `workers` table.
#[must_use]
pub fn workers_table(d: &serde_json::Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:<10} {:>8} {:>8} {:>9} {:>9} {:>7} {:>8} {:>10}",
        "WORKER", "STATE", "PID", "RESTARTS", "IN FLIGHT", "OK", "ERR", "CPU s", "RSS MiB"
    );
    for w in d["workers"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<12} {:<10} {:>8} {:>8} {:>9} {:>9} {:>7} {:>8.2} {:>10.1}",
            w["name"].as_str().unwrap_or("?"),
            w["state"].as_str().unwrap_or("?"),
            w["pid"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), |p| p.to_string()),
            w["restarts"].as_u64().unwrap_or(0),
            w["in_flight"].as_u64().unwrap_or(0),
            w["completed_ok"].as_u64().unwrap_or(0),
            w["completed_err"].as_u64().unwrap_or(0),
            w["cpu_s"].as_f64().unwrap_or(0.0),
            w["rss_bytes"].as_f64().unwrap_or(0.0) / 1_048_576.0,
        );
    }
    out
}
