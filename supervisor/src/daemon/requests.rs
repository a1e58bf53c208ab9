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
            Request::Metrics => Response::ok(serde_json::json!({
                "content_type": crate::metrics::CONTENT_TYPE,
                "text": crate::metrics::render(&self.metrics_snapshot(now)),
            })),
            Request::Scale { name, replicas } => self.scale(&name, replicas),
            Request::Tune { op, kind, id, mode } => self.tune(&op, kind.as_deref(), id, mode, now),
            Request::Emit { event, payload } => {
                let fires = self
                    .plane
                    .triggers
                    .event(&event, payload.as_deref().map(str::as_bytes));
                if fires.is_empty() {
                    Response::err(format!("no trigger listens to event {event:?}"))
                } else {
                    let n = fires.len();
                    self.submit_fires(now, fires);
                    self.pump();
                    Response::ok(serde_json::json!({"event": event, "fired": n}))
                }
            }
            Request::CacheStats => {
                let mut out = serde_json::Map::new();
                for (k, c) in self.plane.kind_names.iter().zip(&self.plane.caches) {
                    if let Some(c) = c {
                        out.insert(k.clone(), serde_json::json!(format!("{:?}", c.stats())));
                    }
                }
                Response::ok(serde_json::Value::Object(out))
            }
            Request::CacheClear => {
                let mut n = 0;
                for c in self.plane.caches.iter_mut().flatten() {
                    c.clear();
                    n += 1;
                }
                Response::ok(serde_json::json!({"cleared": n}))
            }
            Request::Pipelines => {
                let chains: Vec<serde_json::Value> = self
                    .plane
                    .pipeline
                    .chains()
                    .iter()
                    .map(|c| serde_json::json!({"root": c.root.0, "path": crate::pipeline::routes::format_path(&c.path)}))
                    .collect();
                let triggers: Vec<serde_json::Value> = self
                    .plane
                    .triggers
                    .infos()
                    .iter()
                    .map(|t| serde_json::json!({"name": t.name, "when": t.when, "fired": t.fired}))
                    .collect();
                Response::ok(serde_json::json!({
                    "chains": chains,
                    "triggers": triggers,
                    "stats": format!("{:?}", self.plane.pipeline.stats()),
                }))
            }
            Request::Reload => self.reload(),
            Request::Queues => Response::ok(serde_json::json!({"queues": self.status().queues})),
            Request::Tasks => Response::ok(self.tasks_view(now)),
            Request::Stats => Response::ok(self.stats_view(now)),
            other => return Err(Box::new(other)),
        };
        Ok(Some(resp))
    }

    fn apply(&mut self, actions: Vec<crate::lifecycle::Action>) {
        let mut queue = std::collections::VecDeque::new();
        for a in actions {
            if let Some(ev) = self.act(a) {
                queue.push_back(ev);
            }
        }
        while let Some(ev) = queue.pop_front() {
            self.feed(ev);
        }
    }

    /// `scale` for the autoscaler.
    pub(super) fn scale_worker(&mut self, name: &str, replicas: u32) -> Response {
        self.scale(name, replicas)
    }

    /// `drain` for the autoscaler.
    pub(super) fn drain_unit(&mut self, name: &str) {
        let r = self.command(Command::Drain {
            target: name.to_owned(),
        });
        if !r.ok {
            tracing::warn!(unit = name, "drain failed: {:?}", r.error);
        }
    }

    fn scale(&mut self, name: &str, replicas: u32) -> Response {
        let Some(w) = self.cfg.workers.iter().position(|w| w.name == name) else {
            return Response::err(format!("unknown worker {name:?}"));
        };
        if replicas == 0 || replicas > 1024 {
            return Response::err(format!("replicas must be in 1..=1024, got {replicas}"));
        }
        let was = self.cfg.workers[w].replicas;
        self.cfg.workers[w].replicas = replicas;
        match self.life.set_replicas(Instant::now(), name, replicas) {
            Ok(actions) => {
                self.apply(actions);
                self.push_event(
                    String::new(),
                    "scaled",
                    format!("{name}: {was} -> {replicas}"),
                );
                Response::ok(serde_json::json!({"worker": name, "replicas": replicas, "was": was}))
            }
            Err(e) => {
                self.cfg.workers[w].replicas = was;
                Response::err(e.to_string())
            }
        }
    }

    fn reload(&mut self) -> Response {
        let new = match crate::config::load(&self.cfg.path) {
            Ok(c) => c,
            Err(e) => return Response::err(format!("reload refused, nothing changed: {e}")),
        };
        if new.kinds.keys().ne(self.cfg.kinds.keys()) || new.classes != self.cfg.classes {
            return Response::err(
                "reload refused, nothing changed: the set of task kinds or priority classes changed; \
                 restart ampd for that",
            );
        }
        let old = &self.cfg.workers;
        let mut changes = crate::lifecycle::Changes {
            drain: true,
            ..Default::default()
        };
        let (mut added, mut removed, mut changed, mut scaled, mut unchanged) =
            (vec![], vec![], vec![], vec![], vec![]);
        for w in &new.workers {
            match old.iter().find(|o| o.name == w.name) {
                None => {
                    changes.add.push(super::worker_spec(w));
                    added.push(w.name.clone());
                }
                Some(o) if o == w => unchanged.push(w.name.clone()),
                Some(o) => {
                    let mut same = o.clone();
                    same.replicas = w.replicas;
                    if &same == w {
                        changes.scale.push((w.name.clone(), w.replicas));
                        scaled.push(w.name.clone());
                    } else {
                        changes.replace.push(super::worker_spec(w));
                        changed.push(w.name.clone());
                    }
                }
            }
        }
        for o in old {
            if !new.workers.iter().any(|w| w.name == o.name)
                && self.life.worker_spec(&o.name).is_some()
            {
                changes.remove.push(o.name.clone());
                removed.push(o.name.clone());
            }
        }
        // The new worker configs first (units added by this reload look them up), then the
        // removed ones, kept so their draining units can still be served.
        let mut workers = new.workers.clone();
        for o in old {
            if removed.contains(&o.name) {
                workers.push(o.clone());
            }
        }
        let previous = std::mem::replace(&mut self.cfg.workers, workers);
        match self.life.apply_changes(Instant::now(), changes) {
            Ok(actions) => {
                for u in 0..self.units.len() {
                    if let Some(id) = self.life.unit_id(u) {
                        let wname = self.life.worker(id).name.clone();
                        if let Some(i) = self.cfg.workers.iter().position(|w| w.name == wname) {
                            self.units[u].worker = i;
                        }
                    }
                }
                for (i, (name, k)) in new.kinds.iter().enumerate() {
                    if self.cfg.kinds.get(name) != Some(k) {
                        let r = &mut self.plane.routers[i];
                        r.set_policy(k.router);
                        r.set_queue_limit(k.queue_limit);
                        r.set_batch(k.batch);
                        r.set_decay(k.peak_ewma_decay);
                        self.plane.delivery.set_kind_config(i, *k);
                    }
                }
                self.publish_full_kinds();
                let changed_kinds: Vec<String> = new
                    .kinds
                    .iter()
                    .filter(|(n, k)| self.cfg.kinds.get(*n) != Some(k))
                    .map(|(n, _)| n.clone())
                    .collect();
                self.cfg.kinds = new.kinds.clone();
                self.apply(actions);
                let now = Instant::now();
                if new.adapt != self.cfg.adapt {
                    match self.plane.adapt.reconfigure(new.adapt.clone(), now) {
                        Ok(actions) => {
                            self.cfg.adapt = new.adapt.clone();
                            self.carry_out_adapt(now, actions);
                        }
                        Err(e) => tracing::warn!("reload: adaptive settings not changed: {e}"),
                    }
                    for name in self.plane.kind_names.clone() {
                        self.restore_kind_settings(&name, now);
                    }
                } else {
                    for name in changed_kinds {
                        self.restore_kind_settings(&name, now);
                    }
                }
                let detail = format!(
                    "added {added:?} removed {removed:?} changed {changed:?} scaled {scaled:?}"
                );
                self.push_event(String::new(), "reloaded", detail);
                Response::ok(serde_json::json!({
                    "added": added, "removed": removed, "changed": changed,
                    "scaled": scaled, "unchanged": unchanged,
                }))
            }
            Err(e) => {
                self.cfg.workers = previous;
                Response::err(format!("reload refused, nothing changed: {e}"))
            }
        }
    }

    fn tune(
        &mut self,
        op: &str,
        kind: Option<&str>,
        id: Option<u64>,
        mode: Option<crate::adapt::Mode>,
        now: Instant,
    ) -> Response {
        match op {
            "show" => Response::ok(self.plane.adapt.describe(now)),
            "apply" => {
                let Some(id) = id else {
                    return Response::err(
                        "tune apply needs `id` (a decision id from `ampctl tune`)",
                    );
                };
                match self.plane.adapt.apply(id, now) {
                    Ok(actions) => {
                        let n = actions.len();
                        self.carry_out_adapt(now, actions);
                        Response::ok(serde_json::json!({"applied": id, "actions": n}))
                    }
                    Err(e) => Response::err(e.to_string()),
                }
            }
            "mode" => {
                let (Some(kind), Some(mode)) = (kind, mode) else {
                    return Response::err(
                        "tune mode needs `kind` and `mode` (off, advise or auto)",
                    );
                };
                if !self.plane.kind_names.iter().any(|k| k == kind) {
                    return Response::err(format!(
                        "unknown kind {kind:?} (kinds: {})",
                        self.plane.kind_names.join(", ")
                    ));
                }
                let actions = self.plane.adapt.set_mode(kind, mode, now);
                self.carry_out_adapt(now, actions);
                self.restore_kind_settings(kind, now);
                self.push_event(String::new(), "tune_mode", format!("{kind}: {mode:?}"));
                Response::ok(serde_json::json!({"kind": kind, "mode": mode}))
            }
            other => Response::err(format!(
                "unknown tune operation {other:?} (show, apply, mode)"
            )),
        }
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
        self.life
            .status()
            .iter()
            .zip(&st.workers)
            .map(|(ls, w)| {
                let u = ls.id.index();
                let in_flight = self.plane.delivery.in_flight_on(u);
                let (ok, err) = self
                    .plane
                    .pair_stats
                    .iter()
                    .filter(|((_, pu), _)| *pu == u)
                    .fold((0, 0), |(o, e), (_, s)| (o + s.ok, e + s.err));
                let sample = self.obs.resources.get(u).and_then(|h| h.latest()).map(|pt| pt.sample);
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
                    "started_s_ago": ls.started_at.map(|t| now.saturating_duration_since(t).as_secs_f64()),
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
        let chains: Vec<serde_json::Value> = self
            .plane
            .pipeline
            .chains()
            .iter()
            .map(|c| serde_json::json!({"root": c.root.0, "path": crate::pipeline::routes::format_path(&c.path)}))
            .collect();
        serde_json::json!({"workers": per_unit, "census": self.status().tasks, "chains": chains})
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
                    "kind_loopbacks": per_kind.loopbacks,
                    "kind_loop_limited": per_kind.loop_limited,
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
