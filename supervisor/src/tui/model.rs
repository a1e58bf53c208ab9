//! The state behind `ampctl top`, built from ampd's control responses: no terminal, no socket,
//! no clock (every update carries the time it was taken), so it can be driven from canned JSON.
//!
//! Derived figures need two samples: a worker's CPU% is the growth of its `cpu_s` between two
//! `workers` responses divided by the time between them, its throughput the growth of its
//! completion counters; a kind's throughput is the growth of the `completed` counters of its
//! `stats` rows. A figure shows as unknown (`None`) until a second sample arrives, and again after
//! a counter went backwards (a new pid, a restarted ampd).
//!
//! The adaptive controller's decisions are merged by id across polls (a decision changes state:
//! proposed → applied, running → adopted), and the newest [`DECISIONS_KEPT`] stay. They start
//! over with another ampd, or when the ids go backwards (a new controller).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use crate::control::proto::{EventRecord, TaskCensus};

pub use super::msg::{Command, Input, Snapshot, StatRow, Update, WorkerSample};
use super::sort::compare;
pub use super::sort::SortKey;
pub use super::tune::{Adaptive, DecisionRow, DECISIONS_KEPT};

/// Samples kept per kind for the sparklines (60 × 0.5 s: the last 30 seconds).
pub const HISTORY: usize = 60;
/// Events kept for the events pane.
pub const EVENTS_KEPT: usize = 200;

/// One line of the worker table.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRow {
    /// Unit name.
    pub name: String,
    /// Lifecycle state.
    pub state: String,
    /// Current pid.
    pub pid: Option<u32>,
    /// Restarts so far.
    pub restarts: u32,
    /// Tasks in flight.
    pub in_flight: u64,
    /// Completions per second over the last poll interval.
    pub throughput: Option<f64>,
    /// Worst p99 latency over its kinds, in ms.
    pub p99_ms: Option<f64>,
    /// CPU use over the last poll interval, in percent of one core.
    pub cpu_pct: Option<f64>,
    /// Resident memory.
    pub rss_bytes: Option<u64>,
    /// Its last exit, in words.
    pub last_exit: Option<String>,
}

/// One kind's queue line, with its recent history.
#[derive(Debug, Clone, PartialEq)]
pub struct KindRow {
    /// Kind name.
    pub kind: String,
    /// Routing policy.
    pub policy: String,
    /// Queued tasks per class.
    pub depth: Vec<(String, usize)>,
    /// Tasks in flight.
    pub in_flight: u64,
    /// Submissions refused because the queue was full.
    pub rejected: u64,
    /// Tasks dispatched so far.
    pub dispatched: u64,
    /// Completions per second over the last poll interval.
    pub throughput: Option<f64>,
    /// Worst p99 latency over its workers, in ms.
    pub p99_ms: Option<f64>,
    /// Recent throughputs, oldest first (at most [`HISTORY`]).
    pub throughput_hist: VecDeque<f64>,
    /// Recent p99 latencies in ms, oldest first (at most [`HISTORY`]).
    pub p99_hist: VecDeque<f64>,
}

impl KindRow {
    /// Tasks queued over every class.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.depth.iter().map(|(_, n)| n).sum()
    }
}

/// ampd-wide figures for the header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// ampd's pid.
    pub pid: u32,
    /// Seconds since ampd started.
    pub uptime_s: f64,
    /// Whether ampd is shutting down.
    pub shutting_down: bool,
    /// Where every task is.
    pub tasks: TaskCensus,
}

/// Whether ampd answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    /// No answer yet.
    Connecting,
    /// The last poll succeeded.
    Up,
    /// The last poll failed; the data shown is from the last success.
    Down {
        /// Why.
        error: String,
        /// How old the data shown is (`None`: there never was any).
        stale_for: Option<Duration>,
    },
}

/// What is known of the adaptive controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Controller {
    /// Not asked yet.
    Unknown,
    /// The last `tune show` failed (an older ampd refuses it); decisions shown are from before.
    Unavailable {
        /// Why, in words.
        reason: String,
    },
    /// The last `tune show` answered.
    Available {
        /// (kind, mode) in ampd's order, e.g. `("sleep", "auto")`.
        modes: Vec<(String, String)>,
    },
}

/// The status line: the last action's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The text.
    pub text: String,
    /// Whether it reports a failure.
    pub error: bool,
}

/// Counters from the previous poll, to derive rates.
#[derive(Debug, Default)]
struct Previous {
    at: Duration,
    ampd_pid: u32,
    /// Per worker: (pid, cpu_s, completions).
    workers: HashMap<String, (Option<u32>, Option<f64>, u64)>,
    /// Per kind: completions.
    kinds: HashMap<String, u64>,
}

/// Everything `top` shows.
#[derive(Debug)]
pub struct Model {
    socket: String,
    header: Option<Header>,
    rows: Vec<WorkerRow>,
    kinds: Vec<KindRow>,
    events: VecDeque<EventRecord>,
    controller: Controller,
    /// Newest last.
    decisions: VecDeque<DecisionRow>,
    sort: SortKey,
    selected: Option<String>,
    /// Where the selection was, to stay near it when its worker disappears.
    selected_at: usize,
    message: Option<Message>,
    link: Link,
    prev: Option<Previous>,
    last_ok: Option<Duration>,
}

impl Model {
    /// An empty model for the ampd at `socket` (shown in the header).
    #[must_use]
    pub fn new(socket: impl Into<String>) -> Self {
        Self {
            socket: socket.into(),
            header: None,
            rows: Vec::new(),
            kinds: Vec::new(),
            events: VecDeque::new(),
            controller: Controller::Unknown,
            decisions: VecDeque::new(),
            sort: SortKey::default(),
            selected: None,
            selected_at: 0,
            message: None,
            link: Link::Connecting,
            prev: None,
            last_ok: None,
        }
    }

    /// The socket path shown.
    #[must_use]
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// ampd-wide figures (`None` before the first successful poll).
    #[must_use]
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Worker rows in display order.
    #[must_use]
    pub fn rows(&self) -> &[WorkerRow] {
        &self.rows
    }

    /// Kinds in ampd's order.
    #[must_use]
    pub fn kinds(&self) -> &[KindRow] {
        &self.kinds
    }

    /// Recent events, oldest first.
    #[must_use]
    pub fn events(&self) -> &VecDeque<EventRecord> {
        &self.events
    }

    /// What is known of the adaptive controller.
    #[must_use]
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// The adaptive controller's newest decisions (at most [`DECISIONS_KEPT`]), newest last.
    #[must_use]
    pub fn decisions(&self) -> &VecDeque<DecisionRow> {
        &self.decisions
    }

    /// The sort column.
    #[must_use]
    pub fn sort(&self) -> SortKey {
        self.sort
    }

    /// The selected worker's name.
    #[must_use]
    pub fn selected(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    /// The selected worker's row index.
    #[must_use]
    pub fn selected_index(&self) -> Option<usize> {
        let name = self.selected.as_deref()?;
        self.rows.iter().position(|r| r.name == name)
    }

    /// The status line.
    #[must_use]
    pub fn message(&self) -> Option<&Message> {
        self.message.as_ref()
    }

    /// Whether ampd answers.
    #[must_use]
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Applies a key press; returns what the shell must do, if anything.
    pub fn handle(&mut self, input: Input) -> Option<Command> {
        match input {
            Input::Quit => return Some(Command::Quit),
            Input::NextSort => {
                self.sort = self.sort.next();
                self.resort();
            }
            Input::Up => self.select_at(self.selected_index().map_or(0, |i| i.saturating_sub(1))),
            Input::Down => self.select_at(self.selected_index().map_or(0, |i| i + 1)),
            Input::Drain | Input::Restart => {
                let Some(name) = self.selected.clone() else {
                    self.message = Some(Message {
                        text: "no worker selected (select one with ↑/↓ or j/k)".into(),
                        error: true,
                    });
                    return None;
                };
                let cmd = if input == Input::Drain {
                    Command::Drain(name.clone())
                } else {
                    Command::Restart(name.clone())
                };
                self.message = Some(Message {
                    text: format!("{} {name}: sent, waiting for ampd…", cmd.verb()),
                    error: false,
                });
                return Some(cmd);
            }
        }
        None
    }

    /// Applies a poll result or an action's answer.
    pub fn update(&mut self, update: Update) {
        match update {
            Update::Snapshot { snap, at } => self.apply(*snap, at),
            Update::Down { error, at } => {
                self.link = Link::Down {
                    error,
                    stale_for: self.last_ok.map(|t| at.saturating_sub(t)),
                };
            }
            Update::Action { verb, name, result } => {
                self.message = Some(match result {
                    Ok(()) => Message {
                        text: format!("{verb} {name}: accepted by ampd"),
                        error: false,
                    },
                    Err(e) => Message {
                        text: format!("{verb} {name} failed: {e}"),
                        error: true,
                    },
                });
            }
        }
    }

    fn apply(&mut self, snap: Snapshot, at: Duration) {
        let st = &snap.status;
        // A different ampd (restarted under the same socket): nothing carries over.
        if self.prev.as_ref().is_some_and(|p| p.ampd_pid != st.pid) {
            self.prev = None;
            self.events.clear();
            self.kinds.clear();
            self.decisions.clear();
        }
        let prev = self.prev.take();
        let dt = prev
            .as_ref()
            .map(|p| at.saturating_sub(p.at).as_secs_f64())
            .filter(|dt| *dt > 0.0);
        let rate = |cur: u64, old: Option<u64>| -> Option<f64> {
            let (old, dt) = (old?, dt?);
            (cur >= old).then(|| (cur - old) as f64 / dt)
        };
        let worst_p99 = |pick: &dyn Fn(&StatRow) -> bool| {
            snap.stats
                .iter()
                .filter(|r| pick(r))
                .map(|r| r.p99_ms)
                .reduce(f64::max)
        };

        let mut next = Previous {
            at,
            ampd_pid: st.pid,
            ..Previous::default()
        };
        self.rows = snap
            .workers
            .iter()
            .map(|w| {
                let done = w.completed_ok + w.completed_err;
                let old = prev.as_ref().and_then(|p| p.workers.get(&w.name));
                let cpu_pct = match (old, w.cpu_s, dt) {
                    (Some((pid, Some(c0), _)), Some(c1), Some(dt))
                        if *pid == w.pid && c1 >= *c0 =>
                    {
                        Some((c1 - c0) / dt * 100.0)
                    }
                    _ => None,
                };
                next.workers.insert(w.name.clone(), (w.pid, w.cpu_s, done));
                WorkerRow {
                    name: w.name.clone(),
                    state: w.state.clone(),
                    pid: w.pid,
                    restarts: w.restarts,
                    in_flight: w.in_flight,
                    throughput: rate(done, old.map(|o| o.2)),
                    p99_ms: worst_p99(&|r| r.worker.as_deref() == Some(&w.name)),
                    cpu_pct,
                    rss_bytes: w.rss_bytes,
                    last_exit: w.last_exit.clone(),
                }
            })
            .collect();

        let mut old_kinds: HashMap<String, KindRow> =
            self.kinds.drain(..).map(|k| (k.kind.clone(), k)).collect();
        self.kinds = st
            .queues
            .iter()
            .map(|q| {
                let of_kind = |r: &StatRow| r.kind.as_deref() == Some(&q.kind);
                let done: u64 = snap
                    .stats
                    .iter()
                    .filter(|r| of_kind(r))
                    .map(|r| r.completed)
                    .sum();
                let throughput = rate(
                    done,
                    prev.as_ref().and_then(|p| p.kinds.get(&q.kind).copied()),
                );
                let p99_ms = worst_p99(&of_kind);
                next.kinds.insert(q.kind.clone(), done);
                let (mut th, mut ph) = old_kinds
                    .remove(&q.kind)
                    .map(|k| (k.throughput_hist, k.p99_hist))
                    .unwrap_or_default();
                if let Some(t) = throughput {
                    push_bounded(&mut th, t);
                }
                push_bounded(&mut ph, p99_ms.unwrap_or(0.0));
                KindRow {
                    kind: q.kind.clone(),
                    policy: q.policy.clone(),
                    depth: q.depth.clone(),
                    in_flight: q.in_flight,
                    rejected: q.rejected,
                    dispatched: q.dispatched,
                    throughput,
                    p99_ms,
                    throughput_hist: th,
                    p99_hist: ph,
                }
            })
            .collect();

        let last_seq = self.events.back().map_or(0, |e| e.seq);
        self.events
            .extend(snap.events.into_iter().filter(|e| e.seq > last_seq));
        while self.events.len() > EVENTS_KEPT {
            self.events.pop_front();
        }

        self.apply_adaptive(snap.adaptive);

        self.header = Some(Header {
            pid: st.pid,
            uptime_s: st.uptime_s,
            shutting_down: st.shutting_down,
            tasks: st.tasks.clone(),
        });
        self.prev = Some(next);
        self.link = Link::Up;
        self.last_ok = Some(at);
        self.resort();
    }

    /// Takes in a `tune show` answer: updated states replace the old ones (by id), new
    /// decisions are added, the oldest beyond [`DECISIONS_KEPT`] dropped.
    fn apply_adaptive(&mut self, adaptive: Result<Adaptive, String>) {
        match adaptive {
            Ok(a) => {
                let newest_seen = self.decisions.back().map(|d| d.id);
                let newest_now = a.decisions.iter().map(|d| d.id).max();
                if newest_now
                    .zip(newest_seen)
                    .is_some_and(|(now, seen)| now < seen)
                {
                    // A new controller (ampd reloaded it): its ids started over.
                    self.decisions.clear();
                }
                let mut by_id: BTreeMap<u64, DecisionRow> =
                    self.decisions.drain(..).map(|d| (d.id, d)).collect();
                by_id.extend(a.decisions.into_iter().map(|d| (d.id, d)));
                let skip = by_id.len().saturating_sub(DECISIONS_KEPT);
                self.decisions = by_id.into_values().skip(skip).collect();
                self.controller = Controller::Available { modes: a.modes };
            }
            Err(reason) => self.controller = Controller::Unavailable { reason },
        }
    }

    /// Sorts the rows by the current key and keeps the selection on the same worker (or, if it
    /// is gone, on the row where it was).
    fn resort(&mut self) {
        let key = self.sort;
        self.rows.sort_by(|a, b| compare(key, a, b));
        match self.selected_index() {
            Some(i) => self.selected_at = i,
            None => self.select_at(self.selected_at),
        }
    }

    fn select_at(&mut self, i: usize) {
        if self.rows.is_empty() {
            self.selected = None;
            self.selected_at = 0;
            return;
        }
        let i = i.min(self.rows.len() - 1);
        self.selected = Some(self.rows[i].name.clone());
        self.selected_at = i;
    }
}

fn push_bounded(h: &mut VecDeque<f64>, v: f64) {
    h.push_back(v);
    while h.len() > HISTORY {
        h.pop_front();
    }
}
