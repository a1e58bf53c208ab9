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
        if s.shutting_down { "  (shutting down)" } else { "" }
    );
    let w = s.workers.iter().map(|w| w.name.len()).max().unwrap_or(4).max(6);
    let _ = writeln!(out, "{:<w$}  {:<12} {:>8} {:>8} {:>9}  LAST EXIT", "WORKER", "STATE", "PID", "RESTARTS", "READY");
    for wk in &s.workers {
        let pid = wk.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let ready = wk.ready_ms.map_or_else(|| "-".to_owned(), |m| format!("{:.2}s", m as f64 / 1000.0));
        let last = wk.last_exit.clone().unwrap_or_else(|| "-".to_owned());
        let _ = writeln!(out, "{:<w$}  {:<12} {:>8} {:>8} {:>9}  {}", wk.name, wk.state, pid, wk.restarts, ready, last);
    }
    if !s.queues.is_empty() {
        let _ = writeln!(out, "\n{:<w$}  {:<13} {:>10} {:>9} {:>11}  QUEUED", "KIND", "POLICY", "IN FLIGHT", "REJECTED", "DISPATCHED");
        for q in &s.queues {
            let depth: Vec<String> = q.depth.iter().map(|(c, n)| format!("{c}={n}")).collect();
            let _ = writeln!(out, "{:<w$}  {:<13} {:>10} {:>9} {:>11}  {}", q.kind, q.policy, q.in_flight, q.rejected, q.dispatched, depth.join(" "));
        }
        let t = &s.tasks;
        let _ = writeln!(
            out,
            "\ntasks: {} queued, {} in flight, {} waiting retry, {} dead-lettered, {} done ({} retries, {} late duplicates dropped)",
            t.queued, t.in_flight, t.waiting_retry, t.dead_lettered, t.done, t.retried, t.late_dropped
        );
    }
    out
}
