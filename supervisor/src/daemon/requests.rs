//! Control requests beyond the basics: manual lifecycle commands, intake pause, logs and events
//! (optionally streamed), per-worker views and statistics.

use std::time::Instant;

use hdrhistogram::Histogram;

use crate::control::proto::{Request, Response};
use crate::lifecycle::{Command, Event};

use super::Daemon;

/// Latency and outcome counters of one (kind, unit) pair.
#[derive(Debug, Clone)]
pub struct PairStats {
    /// Task latency (dispatch → completion) in µs.
    pub hist: Histogram<u64>,
    /// Successful completions.
    pub ok: u64,
    /// Failed completions.
    pub err: u64,
    /// First and last completion.
    pub first: Instant,
    /// Last completion.
    pub last: Instant,
}

impl PairStats {
    /// Empty counters.
    #[must_use]
    pub fn new(now: Instant) -> Self {
        Self {
            // 1 µs .. 1 h, 3 significant digits; `new_with_bounds` only fails for bad bounds.
            hist: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!())),
            ok: 0,
            err: 0,
            first: now,
            last: now,
        }
    }

    /// Records one completion.
    pub fn record(&mut self, latency_us: u64, ok: bool, now: Instant) {
        let _ = self.hist.record(latency_us.max(1));
        if ok {
            self.ok += 1;
        } else {
            self.err += 1;
        }
        self.last = now;
    }
}

/// Streaming subscriptions.
#[derive(Debug, Default)]
pub struct Followers {
    /// Connections following a unit's log: (conn, unit index).
    pub logs: Vec<(usize, usize)>,
    /// Connections following the event stream.
    pub events: Vec<usize>,
}

impl Daemon {
    /// Handles the requests of this module; `Err(req)` hands anything else back.
    pub(super) fn more_requests(
        &mut self,
        conn: usize,
        req: Request,
    ) -> Result<Option<Response>, Box<Request>> {
        let now = Instant::now();
        let resp = match req {
            Request::Start { name } => self.command(Command::Start { target: name }),
            Request::Stop {
                name,
                with_dependents,
            } => self.command(Command::Stop {
                target: name,
                with_dependents,
            }),
            Request::Restart { name } => self.command(Command::Restart { target: name }),
            Request::Drain { name } => self.command(Command::Drain { target: name }),
            Request::Pause => {
                self.plane.paused = true;
                self.push_event(String::new(), "intake_paused", String::new());
                Response::ok(serde_json::json!({"paused": true}))
            }
            Request::Resume => {
                self.plane.paused = false;
                self.push_event(String::new(), "intake_resumed", String::new());
                Response::ok(serde_json::json!({"paused": false}))
            }
            Request::Logs {
                name,
                lines,
                follow,
            } => {
                let Some(u) = self.units.iter().position(|x| x.name == name) else {
                    let names: Vec<&str> = self.units.iter().map(|x| x.name.as_str()).collect();
                    return Ok(Some(Response::err(format!(
                        "unknown unit {name:?} (units: {})",
                        names.join(", ")
                    ))));
                };
                let n = lines.unwrap_or(100);
                let lines: Vec<&str> = self.units[u].tail.last(n).collect();
                let resp = Response::ok(
                    serde_json::json!({"unit": name, "lines": lines, "follow": follow}),
                );
                if follow {
                    self.followers.logs.push((conn, u));
                }
                resp
            }
            Request::Events { follow, since } => {
                let since = since.unwrap_or(0);
                let evs: Vec<_> = self
                    .events
                    .iter()
                    .filter(|e| e.seq > since)
                    .cloned()
                    .collect();
                if follow {
                    self.followers.events.push(conn);
                }
                Response::ok(serde_json::json!({"events": evs, "follow": follow}))
            }
            Request::Workers => {
                Response::ok(serde_json::json!({"workers": self.workers_view(now)}))
            }
            Request::Queues => Response::ok(serde_json::json!({"queues": self.status().queues})),
            Request::Tasks => Response::ok(self.tasks_view(now)),
            Request::Stats => Response::ok(self.stats_view(now)),
            other => return Err(Box::new(other)),
        };
        Ok(Some(resp))
    }

    fn command(&mut self, cmd: Command) -> Response {
        let what = format!("{cmd:?}");
        match self.life.command(Instant::now(), cmd) {
            Ok(actions) => {
                let mut queue = std::collections::VecDeque::new();
                for a in actions {
                    if let Some(ev) = self.act(a) {
                        queue.push_back(ev);
                    }
                }
                while let Some(ev) = queue.pop_front() {
                    self.feed(ev);
                }
                Response::ok(serde_json::json!({"done": what}))
            }
            Err(e) => Response::err(e.to_string()),
        }
    }

    fn workers_view(&self, now: Instant) -> Vec<serde_json::Value> {
        let st = self.status();
        st.workers
            .iter()
            .enumerate()
            .map(|(u, w)| {
                let in_flight = self.plane.delivery.in_flight_on(u);
                let (ok, err) = self
                    .plane
                    .pair_stats
                    .iter()
                    .filter(|((_, pu), _)| *pu == u)
                    .fold((0, 0), |(o, e), (_, s)| (o + s.ok, e + s.err));
                let sample = self.units[u].proc.as_ref().and_then(|p| crate::sys::proc_sample(p.pid).ok());
                serde_json::json!({
                    "name": w.name,
                    "state": w.state,
                    "pid": w.pid,
                    "restarts": w.restarts,
                    "last_exit": w.last_exit,
                    "in_flight": in_flight,
                    "completed_ok": ok,
                    "completed_err": err,
                    "cpu_s": sample.as_ref().map(|s| s.cpu_time.as_secs_f64()),
                    "rss_bytes": sample.as_ref().map(|s| s.rss_bytes),
                    "uptime_s": self.units[u].proc.as_ref().map(|_| now.saturating_duration_since(self.start).as_secs_f64()),
                })
            })
            .collect()
    }

    fn tasks_view(&self, now: Instant) -> serde_json::Value {
        let mut per_unit: Vec<serde_json::Value> = Vec::new();
        for (u, unit) in self.units.iter().enumerate() {
            let tasks: Vec<serde_json::Value> = self
                .plane
                .flights_on(u)
                .into_iter()
                .map(|(id, kind, since)| {
                    serde_json::json!({
                        "id": id,
                        "kind": self.plane.kind_names.get(kind as usize),
                        "running_ms": now.saturating_duration_since(since).as_millis() as u64,
                    })
                })
                .collect();
            per_unit.push(serde_json::json!({"unit": unit.name, "in_flight": tasks}));
        }
        serde_json::json!({"workers": per_unit, "census": self.status().tasks})
    }

    fn stats_view(&self, now: Instant) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .plane
            .pair_stats
            .iter()
            .map(|((k, u), s)| {
                let secs = now
                    .saturating_duration_since(s.first)
                    .as_secs_f64()
                    .max(1e-3);
                let q = |p: f64| s.hist.value_at_quantile(p) as f64 / 1000.0;
                let per_kind = self
                    .plane
                    .delivery
                    .stats()
                    .per_kind
                    .get(*k as usize)
                    .copied()
                    .unwrap_or_default();
                serde_json::json!({
                    "kind": self.plane.kind_names.get(*k as usize),
                    "worker": self.units.get(*u).map(|x| x.name.clone()),
                    "completed": s.ok + s.err,
                    "errors": s.err,
                    "throughput_per_s": (s.ok + s.err) as f64 / secs,
                    "p50_ms": q(0.5),
                    "p90_ms": q(0.9),
                    "p99_ms": q(0.99),
                    "max_ms": s.hist.max() as f64 / 1000.0,
                    "kind_retries": per_kind.retried,
                })
            })
            .collect();
        serde_json::json!({"stats": rows})
    }

    /// Sends a new output line to the connections following `u`'s log.
    pub(super) fn notify_log(&mut self, u: usize, line: &str) {
        let conns: Vec<usize> = self
            .followers
            .logs
            .iter()
            .filter(|(_, fu)| *fu == u)
            .map(|(c, _)| *c)
            .collect();
        for c in conns {
            let resp = Response::ok(serde_json::json!({"unit": self.units[u].name, "line": line}));
            self.control.respond(c, &resp, self.poll.registry());
        }
    }

    /// Sends the newest event to the connections following the event stream.
    pub(super) fn notify_event(&mut self) {
        if self.followers.events.is_empty() {
            return;
        }
        let Some(ev) = self.events.back().cloned() else {
            return;
        };
        for c in self.followers.events.clone() {
            self.control.respond(
                c,
                &Response::ok(serde_json::json!({"event": ev})),
                self.poll.registry(),
            );
        }
    }

    /// Forgets followers of a closed connection.
    pub(super) fn unfollow(&mut self, conn: usize) {
        self.followers.logs.retain(|(c, _)| *c != conn);
        self.followers.events.retain(|c| *c != conn);
    }

    /// Units being drained report `Drained` once nothing is in flight on them.
    pub(super) fn check_drained(&mut self) {
        let draining: Vec<usize> = self.draining.iter().copied().collect();
        for u in draining {
            if self.plane.delivery.in_flight_on(u) == 0 {
                self.draining.remove(&u);
                if let Some(p) = &self.units[u].proc {
                    let pid = p.pid;
                    self.feed(Event::Drained {
                        unit: self.uid(u),
                        pid,
                    });
                }
            }
        }
    }
}
