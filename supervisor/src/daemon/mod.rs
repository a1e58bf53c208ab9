//! The event loop: one `mio` poll that turns readiness (signals, pidfds, output pipes, doorbells,
//! the control socket, control-channel messages) into events for the lifecycle core and carries
//! out the actions it returns. No thread per worker: besides this loop there is one bridge thread
//! for ipc-channel messages and a short-lived thread per handshake.

pub mod bridge;
pub mod clients;
mod dataplane;
pub mod guard;
mod obs;
mod requests;
pub mod unit;

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amp_ipc::proto::{FromWorker, ToWorker, WorkerParams, PROTOCOL_VERSION};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::signal::Signal;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};

use crate::config::{Config, WorkerConfig, WorkerMode};
use crate::control::proto::{EventRecord, Request, Response, StatusData, WorkerStatus};
use crate::control::server::{Access, ControlServer, CONN_BASE, LISTENER};
use crate::lifecycle::{self, Action, Event, Notice, Supervisor, UnitId};
use crate::spec::ReadinessProbe;
use crate::sys;

use bridge::{Bridge, BridgeMsg};
use unit::UnitRt;

const SIGNALS: Token = Token(0);
const WAKER: Token = Token(1);
const UNIT_BASE: usize = 1024;
const SLOTS: usize = 8;
const SLOT_PIDFD: usize = 0;
const SLOT_STDOUT: usize = 1;
const SLOT_STDERR: usize = 2;
const SLOT_COMPLETIONS: usize = 3;
const SLOT_PROBE: usize = 4;
/// Client submission doorbells: `CLIENT_BASE + client key`.
const CLIENT_BASE: usize = 1 << 20;
/// How long the loop keeps polling without sleeping after the last moved task.
const SPIN_WINDOW: Duration = Duration::from_micros(200);
/// How soon ampd looks again for room in a client's ring while results wait for it.
const BACKLOG_RETRY: Duration = Duration::from_millis(1);
/// How soon ampd tries again to dispatch to a worker whose tasks ring was full.
const RING_FULL_RETRY: Duration = Duration::from_millis(2);
/// Events kept for `status`.
const MAX_EVENTS: usize = 1000;
/// How often plain processes are probed for readiness.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);

fn unit_token(unit: usize, slot: usize) -> Token {
    Token(UNIT_BASE + unit * SLOTS + slot)
}

/// Maps the config onto the lifecycle core's input.
pub(crate) fn worker_spec(w: &WorkerConfig) -> lifecycle::WorkerSpec {
    let mut s = lifecycle::WorkerSpec::new(w.name.clone());
    s.replicas = w.replicas;
    s.depends_on = w
        .depends_on
        .iter()
        .map(|d| lifecycle::Dependency::new(d.name.clone(), d.condition))
        .collect();
    s.restart = w.restart;
    s.backoff = w.backoff;
    s.intensity = w.intensity;
    s.ready_timeout = w.ready_timeout;
    s.stop_timeout = w.stop_timeout;
    s.stop_signal = w.stop_signal;
    match &w.mode {
        WorkerMode::Ipc(ic) => {
            s.shutdown_grace = Some(w.stop_timeout / 2);
            s.heartbeat_timeout = Some(ic.heartbeat_timeout);
        }
        WorkerMode::Plain { .. } => {
            s.shutdown_grace = None;
            s.heartbeat_timeout = None;
        }
    }
    s
}

/// The running daemon.
pub struct Daemon {
    poll: Poll,
    cfg: Config,
    life: Supervisor,
    units: Vec<UnitRt>,
    bridge: Bridge,
    control: ControlServer,
    signals: signal_hook_mio::v1_0::Signals,
    guard: Option<guard::Guard>,
    start: Instant,
    events: VecDeque<EventRecord>,
    event_seq: u64,
    next_gen: u64,
    kind_ids: BTreeMap<String, u32>,
    shutting_down: bool,
    finished: Option<lifecycle::ShutdownReport>,
    next_heartbeat_check: Instant,
    heartbeat_period: Duration,
    plane: dataplane::Plane,
    last_activity: Instant,
    followers: requests::Followers,
    draining: std::collections::BTreeSet<usize>,
    notify: Option<sys::notify::Notifier>,
    obs: obs::Obs,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("units", &self.units.len())
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Sets up the loop: control socket, signals, bridge, guard; sweeps stale segments.
    ///
    /// # Errors
    /// When the socket cannot be bound or the lifecycle core refuses the config.
    pub fn new(cfg: Config) -> anyhow::Result<Self> {
        let notify = match sys::notify::Notifier::from_env() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET is set but unusable: {e}");
                None
            }
        };
        let poll = Poll::new()?;
        if let Err(e) = sys::set_child_subreaper() {
            tracing::warn!("cannot become a child subreaper ({e}); orphaned grandchildren will not be reaped by ampd");
        }
        match amp_ipc::segment::sweep(&cfg.supervisor.shm_prefix) {
            Ok(removed) if !removed.is_empty() => {
                tracing::warn!(
                    count = removed.len(),
                    "removed shared-memory segments left by a dead ampd: {removed:?}"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("sweep of stale segments failed: {e}"),
        }
        let socket = cfg.supervisor.control_socket_path();
        let access = Access {
            group: match &cfg.supervisor.control_group {
                Some(g) => Some(
                    nix::unistd::Group::from_name(g)?
                        .ok_or_else(|| anyhow::anyhow!("control_group {g:?} does not exist"))?
                        .gid
                        .as_raw(),
                ),
                None => None,
            },
        };
        let control = ControlServer::bind(&socket, poll.registry(), access).map_err(|e| {
            anyhow::anyhow!("cannot listen on control socket {}: {e}", socket.display())
        })?;
        let mut signals = signal_hook_mio::v1_0::Signals::new([SIGTERM, SIGINT, SIGCHLD, SIGHUP])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let bridge = Bridge::start(waker)?;
        let specs: Vec<_> = cfg.workers.iter().map(worker_spec).collect();
        let opts = lifecycle::Options {
            startup_failure: cfg.supervisor.on_startup_failure,
            ..Default::default()
        };
        let seed = cfg.supervisor.seed.unwrap_or_else(|| {
            // A fresh seed per run: the pid and the clock's nanoseconds.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            (u64::from(std::process::id()) << 32 | u64::from(nanos)) ^ 0x9e37_79b9_7f4a_7c15
        });
        tracing::debug!(seed, "randomness seeded");
        let life = Supervisor::new(specs, opts, SmallRng::seed_from_u64(seed))?;
        let plane = dataplane::Plane::new(&cfg, seed)?;
        let unit_names: Vec<String> = life.units().map(|u| life.unit_name(u).to_owned()).collect();
        let obs = obs::Obs::new(cfg.supervisor.metrics_addr, poll.registry(), &unit_names)?;
        let mut units = Vec::with_capacity(life.unit_count());
        for u in life.units() {
            let wname = life.worker(u).name.clone();
            let widx = cfg
                .workers
                .iter()
                .position(|w| w.name == wname)
                .unwrap_or(0);
            let logfile = match &cfg.workers[widx].log {
                Some(l) => {
                    let path = if life.worker(u).replicas > 1 {
                        l.path.with_extension(format!("{}.log", life.replica(u)))
                    } else {
                        l.path.clone()
                    };
                    match sys::RotatingFile::open(path, l.max_size, l.keep as usize) {
                        Ok(f) => Some(f),
                        Err(e) => {
                            tracing::warn!(worker = %wname, "cannot open log file: {e}");
                            None
                        }
                    }
                }
                None => None,
            };
            units.push(UnitRt {
                name: life.unit_name(u).to_owned(),
                worker: widx,
                proc: None,
                tail: sys::LogTail::new(1000, 1 << 20),
                logfile,
                blame: None,
            });
        }
        let kind_ids = cfg
            .kinds
            .keys()
            .enumerate()
            .map(|(i, k)| (k.clone(), u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        let heartbeat_period = cfg
            .workers
            .iter()
            .filter_map(|w| match &w.mode {
                WorkerMode::Ipc(ic) => Some(ic.heartbeat_interval),
                WorkerMode::Plain { .. } => None,
            })
            .min()
            .unwrap_or(Duration::from_millis(100))
            .clamp(Duration::from_millis(10), Duration::from_millis(500));
        let guard = match guard::Guard::start(&cfg.supervisor.shm_prefix, control.path()) {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!("cannot start the cleanup guard ({e}); if ampd is killed, grandchildren may survive");
                None
            }
        };
        Ok(Self {
            poll,
            cfg,
            life,
            units,
            bridge,
            control,
            signals,
            guard,
            start: Instant::now(),
            events: VecDeque::new(),
            event_seq: 0,
            next_gen: 1,
            kind_ids,
            shutting_down: false,
            finished: None,
            next_heartbeat_check: Instant::now(),
            heartbeat_period,
            plane,
            last_activity: Instant::now(),
            followers: requests::Followers::default(),
            draining: std::collections::BTreeSet::new(),
            obs,
            notify,
        })
    }

    /// Runs until shutdown completes; returns whether it was clean.
    ///
    /// # Errors
    /// Fatal poll errors.
    pub fn run(mut self) -> anyhow::Result<bool> {
        tracing::info!(socket = %self.control.path().display(), units = self.units.len(), "ampd starting");
        self.feed(Event::Startup);
        let mut events = Events::with_capacity(256);
        while self.finished.is_none() {
            let now = Instant::now();
            let mut deadline = self.next_heartbeat_check.min(self.metrics_deadline());
            if let Some(d) = self.life.next_deadline() {
                deadline = deadline.min(d);
            }
            if let Some(d) = self.plane.delivery.next_deadline() {
                deadline = deadline.min(d);
            }
            if let Some(d) = self.plane.adapt.next_tick() {
                deadline = deadline.min(d);
            }
            // A client makes room for its waiting results by reading its ring, which does not
            // wake ampd (only a sleeping consumer is woken): look again soon.
            if self.plane.clients.any_backlog() {
                deadline = deadline.min(now + BACKLOG_RETRY);
            }
            // A worker's tasks ring was full: its space comes back without waking ampd when
            // the worker frees it after its last completion (or holds tasks it took).
            if self.plane.ring_full {
                deadline = deadline.min(now + RING_FULL_RETRY);
            }
            if !self.plane.triggers.file_watches().is_empty() {
                deadline = deadline.min(now + Duration::from_millis(500));
            }
            if let Some(d) = self
                .plane
                .triggers
                .next_wakeup(now, std::time::SystemTime::now())
            {
                deadline = deadline.min(d);
            }
            for u in &self.units {
                if let Some(p) = &u.proc {
                    if !p.ready && p.ipc.is_none() && p.probe.is_none() {
                        deadline = deadline.min(p.next_probe);
                    }
                }
            }
            // Busy: keep polling without blocking for a short window after the last task moved
            // (a wakeup costs ~60 µs here; a spin pass far less). Idle: publish the sleeping
            // flags and block unless a ring already has data.
            let spinning = now.saturating_duration_since(self.last_activity) < SPIN_WINDOW;
            let sleeping = !spinning && !self.prepare_sleep();
            let timeout = if sleeping {
                deadline.saturating_duration_since(now)
            } else {
                Duration::ZERO
            };
            let polled = self.poll.poll(&mut events, Some(timeout));
            if sleeping {
                self.finish_sleep();
            }
            match polled {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            let tokens: Vec<Token> = events.iter().map(mio::event::Event::token).collect();
            for token in tokens {
                self.dispatch(token);
            }
            for conn in self.control.take_closed() {
                self.conn_closed(conn);
                self.unfollow(conn);
            }
            if self.pump() {
                self.last_activity = Instant::now();
            } else if spinning {
                std::thread::yield_now();
            }
            self.timers();
            // Timers may have queued or dispatched work (restarts, adaptive actions).
            self.publish_full_kinds();
        }
        self.unfinished_report();
        let report = self.finished.take();
        self.cleanup();
        let clean = report
            .as_ref()
            .is_some_and(lifecycle::ShutdownReport::success);
        tracing::info!(?report, "ampd stopped");
        Ok(clean)
    }

    fn dispatch(&mut self, token: Token) {
        match token {
            t if self.owns_metrics_token(t) => self.on_metrics(t),
            SIGNALS => self.on_signals(),
            WAKER => self.on_bridge(),
            LISTENER => self.control.accept(self.poll.registry()),
            Token(t) if t >= CONN_BASE => {
                let incoming = self.control.ready(token, self.poll.registry());
                for (conn, _uid, req) in incoming {
                    if self.control.dropped_unread(conn) {
                        // Dropped for not reading its responses: the rest of what it pipelined
                        // is not carried out (answering thousands of `logs` requests nobody
                        // reads kept the loop busy for seconds). A client that merely went
                        // away still has its requests carried out.
                        continue;
                    }
                    let resp = match req {
                        Ok(r) => self.conn_request(conn, r),
                        Err(msg) => Some(Response::err(msg)),
                    };
                    if let Some(resp) = resp {
                        self.control.respond(conn, &resp, self.poll.registry());
                    }
                }
            }
            Token(t) if t >= CLIENT_BASE => {}
            Token(t) if t >= UNIT_BASE => {
                let (unit, slot) = ((t - UNIT_BASE) / SLOTS, (t - UNIT_BASE) % SLOTS);
                if unit < self.units.len() {
                    self.on_unit(unit, slot);
                }
            }
            _ => {}
        }
    }

    fn on_signals(&mut self) {
        let pending: Vec<i32> = self.signals.pending().collect();
        for sig in pending {
            match sig {
                SIGTERM | SIGINT => {
                    tracing::info!(signal = sig, "shutdown requested by signal");
                    self.feed(Event::Shutdown { fast: false });
                }
                SIGCHLD => {
                    // Orphaned descendants reparented to us (we are a subreaper); our own
                    // workers are reaped through their pidfds, so keep their statuses.
                    self.reap_orphans();
                }
                SIGHUP => tracing::info!("SIGHUP ignored (reload arrives with the control issue)"),
                _ => {}
            }
        }
    }

    fn reap_orphans(&mut self) {
        // waitpid(-1) would also reap our workers before their pidfd handler sees them; reap
        // only pids that are not a current worker or probe.
        let ours: Vec<i32> = self
            .units
            .iter()
            .filter_map(|u| u.proc.as_ref())
            .flat_map(|p| {
                std::iter::once(p.pid.as_raw())
                    .chain(p.probe.as_ref().map(|pr| pr.child.pid.as_raw()))
            })
            .collect();
        // Children list of every thread of ampd: /proc/self/task/*/children.
        let mut children = Vec::new();
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for t in tasks.flatten() {
                if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                    children.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
                }
            }
        }
        for pid in children {
            if !ours.contains(&pid) {
                if let Ok(Some(reason)) = sys::reap(nix::unistd::Pid::from_raw(pid)) {
                    tracing::debug!(pid, %reason, "reaped an orphaned descendant");
                }
            }
        }
    }

    fn on_bridge(&mut self) {
        let msgs: Vec<BridgeMsg> = self.bridge.drain().collect();
        for m in msgs {
            match m {
                BridgeMsg::Accepted((u, gen), first) => self.on_hello(u, gen, first),
                BridgeMsg::Message((u, gen), msg) => self.on_worker_msg(u, gen, msg),
                BridgeMsg::AcceptFailed((u, gen), e) => {
                    if self.current(u, gen) {
                        tracing::warn!(unit = %self.units[u].name, "handshake failed: {e}");
                    }
                }
                BridgeMsg::Closed(_) => {}
            }
        }
    }

    fn current(&self, u: usize, gen: u64) -> bool {
        self.units
            .get(u)
            .and_then(|x| x.proc.as_ref())
            .is_some_and(|p| p.gen == gen)
    }

    fn on_hello(&mut self, u: usize, gen: u64, first: FromWorker) {
        if !self.current(u, gen) {
            return;
        }
        let FromWorker::Hello {
            protocol,
            pid,
            name,
            reply,
        } = first
        else {
            tracing::warn!(unit = %self.units[u].name, "worker spoke before saying Hello: {first:?}");
            return;
        };
        let uname = self.units[u].name.clone();
        let wcfg = &self.cfg.workers[self.units[u].worker];
        let Some(p) = self.units[u].proc.as_mut() else {
            return;
        };
        if protocol != PROTOCOL_VERSION {
            let reason = format!(
                "worker {name} speaks amp protocol {protocol} but ampd speaks {PROTOCOL_VERSION}: rebuild it against the same amp-ipc"
            );
            tracing::error!(unit = %uname, "{reason}");
            // The worker reports the refusal and exits by itself; if it does not, its
            // ready_timeout kills it.
            let _ = reply.send(ToWorker::Reject {
                reason: reason.clone(),
            });
            self.record(u, "rejected", reason);
            return;
        }
        if pid != u32::try_from(p.pid.as_raw()).unwrap_or(0) {
            tracing::debug!(unit = %uname, hello_pid = pid, "Hello from a pid other than the spawned one (a wrapper?)");
        }
        let Some(ipc) = p.ipc.as_mut() else { return };
        let WorkerMode::Ipc(ic) = &wcfg.mode else {
            return;
        };
        let params = WorkerParams {
            heartbeat_interval_ms: u64::try_from(ic.heartbeat_interval.as_millis()).unwrap_or(100),
            ..WorkerParams::default()
        };
        // Every kind (not only the ones it serves): a worker may emit subtasks of any kind.
        let kinds = self
            .kind_ids
            .iter()
            .map(|(k, &id)| (id, k.clone()))
            .collect();
        let welcome = ToWorker::Welcome {
            segment: ipc.seg.name().to_owned(),
            generation: ipc.seg.generation(),
            params,
            kinds,
        };
        if let Err(e) = reply.send(welcome) {
            tracing::warn!(unit = %uname, "cannot answer Hello: {e}");
        }
        ipc.reply = Some(reply);
    }

    fn on_worker_msg(&mut self, u: usize, gen: u64, msg: FromWorker) {
        if !self.current(u, gen) {
            return;
        }
        let name = self.units[u].name.clone();
        let Some(p) = self.units[u].proc.as_mut() else {
            return;
        };
        match msg {
            FromWorker::Attached => {
                if let Some(ipc) = p.ipc.as_mut() {
                    ipc.attached = true;
                    if let Err(e) = ipc.seg.unlink() {
                        tracing::warn!(unit = %name, "cannot unlink segment: {e}");
                    }
                }
            }
            FromWorker::Ready => {
                let pid = p.pid;
                p.ready = true;
                self.feed(Event::Ready {
                    unit: self.uid(u),
                    pid,
                });
            }
            FromWorker::Draining => tracing::debug!(unit = %name, "worker draining"),
            FromWorker::Goodbye { reason } => {
                tracing::debug!(unit = %name, "worker says goodbye: {reason}")
            }
            FromWorker::Hello { .. } => tracing::warn!(unit = %name, "second Hello ignored"),
        }
    }

    fn uid(&self, u: usize) -> UnitId {
        self.life.unit_id(u).unwrap_or_else(|| {
            unreachable!("unit index {u} was never issued by the lifecycle core")
        })
    }

    /// Grows the per-unit tables for a unit the lifecycle core added at runtime.
    fn add_unit_rt(&mut self, unit: UnitId) {
        let u = unit.index();
        let name = self.life.unit_name(unit).to_owned();
        let wname = self.life.worker(unit).name.clone();
        let widx = self
            .cfg
            .workers
            .iter()
            .position(|w| w.name == wname)
            .unwrap_or(0);
        while self.units.len() <= u {
            self.units.push(UnitRt {
                name: name.clone(),
                worker: widx,
                proc: None,
                tail: sys::LogTail::new(1000, 1 << 20),
                logfile: None,
                blame: None,
            });
            self.obs
                .resources
                .push(crate::metrics::ResourceHistory::default());
            self.obs
                .health
                .push(crate::metrics::WorkerHealth::new(name.clone()));
        }
        self.units[u].worker = widx;
        self.units[u].name = name;
    }

    fn on_unit(&mut self, u: usize, slot: usize) {
        match slot {
            SLOT_PIDFD => self.on_exit(u),
            SLOT_STDOUT | SLOT_STDERR => self.on_output(u, slot),
            // The pump after the poll reads every ring; the doorbell only woke us.
            SLOT_COMPLETIONS => {}
            SLOT_PROBE => self.on_probe_exit(u),
            _ => {}
        }
    }

    fn on_output(&mut self, u: usize, slot: usize) {
        let unit = &mut self.units[u];
        let Some(p) = unit.proc.as_mut() else { return };
        let (stream, pipe) = if slot == SLOT_STDOUT {
            ("stdout", &mut p.stdout)
        } else {
            ("stderr", &mut p.stderr)
        };
        let Some((fd, lines)) = pipe.as_mut() else {
            return;
        };
        let mut collected: Vec<Vec<u8>> = Vec::new();
        let status = sys::drain_fd(std::os::fd::AsFd::as_fd(fd), lines, 1 << 20, |l| {
            collected.push(l.bytes.to_vec())
        });
        let eof = matches!(status, Ok(sys::DrainStatus::Eof) | Err(_));
        if eof {
            let raw = fd.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&raw));
            *pipe = None;
        }
        for l in &collected {
            unit.output_line(stream, l);
        }
        if self.followers.logs.iter().any(|(_, fu)| *fu == u) {
            for l in collected {
                self.notify_log(u, &String::from_utf8_lossy(&l));
            }
        }
    }

    fn on_exit(&mut self, u: usize) {
        let Some(p) = self.units[u].proc.as_ref() else {
            return;
        };
        let pid = p.pid;
        let reason = match sys::reap(pid) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(unit = %self.units[u].name, "waitpid failed: {e}");
                return;
            }
        };
        // Flush the rest of its output and read its last completions before forgetting it.
        self.on_output(u, SLOT_STDOUT);
        self.on_output(u, SLOT_STDERR);
        self.read_unit_completions_to_end(u, Instant::now());
        self.drop_proc(u);
        self.feed(Event::Exited {
            unit: self.uid(u),
            pid,
            reason,
        });
    }

    fn drop_proc(&mut self, u: usize) {
        let Some(mut p) = self.units[u].proc.take() else {
            return;
        };
        let reg = self.poll.registry();
        let _ = reg.deregister(&mut SourceFd(&p.pidfd.as_raw_fd()));
        for (fd, mut lines) in [p.stdout.take(), p.stderr.take()].into_iter().flatten() {
            let _ = reg.deregister(&mut SourceFd(&fd.as_raw_fd()));
            lines.finish(|_| {});
        }
        if let Some(ipc) = &p.ipc {
            // What it was running, for poison detection. Relaxed: the process is gone (or about
            // to be) and the figures are a hint, bounded by the delivery core.
            let c = ipc.seg.control();
            let r = std::sync::atomic::Ordering::Relaxed;
            self.units[u].blame = Some(unit::blame_from_counters(
                c.tasks_taken.load(r),
                c.tasks_ok.load(r).saturating_add(c.tasks_failed.load(r)),
                c.running_task.load(r),
            ));
            let _ = reg.deregister(&mut SourceFd(&ipc.end.completions.fd().as_raw_fd()));
            if !ipc.attached {
                Bridge::abandon(&ipc.server_name);
                let _ = ipc.seg.unlink();
            }
        }
        if let Some(pr) = p.probe.take() {
            let _ = reg.deregister(&mut SourceFd(&pr.child.pidfd.as_raw_fd()));
            let _ = sys::signal_pid(pr.child.pid, Signal::SIGKILL);
            let _ = sys::wait_timeout(&pr.child, Duration::from_millis(200));
        }
        if let Some(g) = &mut self.guard {
            g.forget(p.pid);
        }
    }

    fn on_probe_exit(&mut self, u: usize) {
        let Some(p) = self.units[u].proc.as_mut() else {
            return;
        };
        let Some(pr) = p.probe.take() else { return };
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&pr.child.pidfd.as_raw_fd()));
        let ok = matches!(sys::reap(pr.child.pid), Ok(Some(r)) if r.is_success());
        p.next_probe = Instant::now() + PROBE_INTERVAL;
        if ok && !p.ready {
            p.ready = true;
            let pid = p.pid;
            self.feed(Event::Ready {
                unit: self.uid(u),
                pid,
            });
        }
    }

    fn timers(&mut self) {
        let now = Instant::now();
        if self.life.next_deadline().is_some_and(|d| d <= now) {
            self.feed(Event::Tick);
        }
        if now >= self.next_heartbeat_check {
            self.next_heartbeat_check = now + self.heartbeat_period;
            for u in 0..self.units.len() {
                let Some(p) = self.units[u].proc.as_mut() else {
                    continue;
                };
                if p.ready && p.heartbeat_advanced() {
                    let pid = p.pid;
                    self.feed(Event::Heartbeat {
                        unit: self.uid(u),
                        pid,
                    });
                }
            }
        }
        for u in 0..self.units.len() {
            self.probe(u, now);
        }
        self.check_drained();
        self.metrics_timers(now);
        self.trigger_timers(now);
        self.adapt_tick(now);
    }

    fn probe(&mut self, u: usize, now: Instant) {
        let wcfg = &self.cfg.workers[self.units[u].worker];
        let WorkerMode::Plain { probe } = &wcfg.mode else {
            return;
        };
        let probe = probe.clone();
        let uname = self.units[u].name.clone();
        let Some(p) = self.units[u].proc.as_mut() else {
            return;
        };
        if p.ready || p.probe.is_some() || now < p.next_probe {
            return;
        }
        p.next_probe = now + PROBE_INTERVAL;
        let ready = match &probe {
            ReadinessProbe::Started => true,
            ReadinessProbe::Tcp { host, port } => {
                sys::tcp_probe(host, *port, Duration::from_millis(50))
            }
            ReadinessProbe::Exec { command } => {
                match sys::exec_probe(command) {
                    Ok(child) => {
                        let raw = child.pidfd.as_raw_fd();
                        let _ = self.poll.registry().register(
                            &mut SourceFd(&raw),
                            unit_token(u, SLOT_PROBE),
                            Interest::READABLE,
                        );
                        p.probe = Some(unit::ProbeRt { child });
                    }
                    Err(e) => tracing::warn!(unit = %uname, "exec probe failed to start: {e}"),
                }
                false
            }
        };
        if ready {
            p.ready = true;
            let pid = p.pid;
            self.feed(Event::Ready {
                unit: self.uid(u),
                pid,
            });
        }
    }

    /// Feeds an event to the lifecycle core and carries out the resulting actions (which may
    /// feed more events: `Spawn` reports `Spawned`/`SpawnFailed` at once).
    fn feed(&mut self, event: Event) {
        let mut queue = VecDeque::from([event]);
        while let Some(ev) = queue.pop_front() {
            let actions = self.life.handle(Instant::now(), ev);
            for a in actions {
                if let Some(next) = self.act(a) {
                    queue.push_back(next);
                }
            }
        }
    }

    fn act(&mut self, action: Action) -> Option<Event> {
        match action {
            Action::Spawn { unit } => Some(self.spawn(unit)),
            Action::SendShutdown { unit, .. } => {
                if let Some(p) = &self.units[unit.index()].proc {
                    p.send(ToWorker::Shutdown);
                }
                None
            }
            Action::SendDrain { unit, .. } => {
                if let Some(p) = &self.units[unit.index()].proc {
                    p.send(ToWorker::Drain);
                }
                self.unit_draining(unit.index());
                self.draining.insert(unit.index());
                None
            }
            Action::Signal { pid, signal, .. } => {
                let _ = sys::signal_group(pid, signal);
                None
            }
            Action::Kill { pid, .. } => {
                let _ = sys::signal_group(pid, Signal::SIGKILL);
                None
            }
            Action::Notify(n) => {
                self.notice(&n);
                None
            }
            Action::ShutdownComplete(report) => {
                self.finished = Some(report);
                None
            }
        }
    }

    fn spawn(&mut self, unit: UnitId) -> Event {
        let u = unit.index();
        let gen = self.next_gen;
        self.next_gen += 1;
        let wcfg = &self.cfg.workers[self.units[u].worker];
        let server_name = if wcfg.is_ipc() {
            match self.bridge.expect((u, gen)) {
                Ok(n) => Some(n),
                Err(e) => {
                    return Event::SpawnFailed {
                        unit,
                        error: format!("cannot create the handshake server: {e}"),
                    }
                }
            }
        } else {
            None
        };
        let plan = unit::SpawnPlan {
            sup: &self.cfg.supervisor,
            worker: wcfg,
            unit: &self.units[u].name,
            gen,
            server_name: server_name.clone(),
        };
        match unit::spawn(&plan) {
            Ok(p) => {
                let reg = self.poll.registry();
                let _ = reg.register(
                    &mut SourceFd(&p.pidfd.as_raw_fd()),
                    unit_token(u, SLOT_PIDFD),
                    Interest::READABLE,
                );
                if let Some((fd, _)) = &p.stdout {
                    let _ = reg.register(
                        &mut SourceFd(&fd.as_raw_fd()),
                        unit_token(u, SLOT_STDOUT),
                        Interest::READABLE,
                    );
                }
                if let Some((fd, _)) = &p.stderr {
                    let _ = reg.register(
                        &mut SourceFd(&fd.as_raw_fd()),
                        unit_token(u, SLOT_STDERR),
                        Interest::READABLE,
                    );
                }
                if let Some(ipc) = &p.ipc {
                    let _ = reg.register(
                        &mut SourceFd(&ipc.end.completions.fd().as_raw_fd()),
                        unit_token(u, SLOT_COMPLETIONS),
                        Interest::READABLE,
                    );
                }
                if let Some(g) = &mut self.guard {
                    g.watch(p.pid);
                }
                let pid = p.pid;
                self.units[u].proc = Some(p);
                // A report left by an earlier incarnation whose exit was not processed.
                self.units[u].blame = None;
                Event::Spawned { unit, pid }
            }
            Err(error) => {
                if let Some(n) = server_name {
                    Bridge::abandon(&n);
                }
                Event::SpawnFailed { unit, error }
            }
        }
    }

    fn record(&mut self, u: usize, kind: &str, detail: String) {
        let unit = self
            .units
            .get(u)
            .map(|x| x.name.clone())
            .unwrap_or_default();
        self.push_event(unit, kind, detail);
    }

    fn push_event(&mut self, unit: String, kind: &str, detail: String) {
        self.event_seq += 1;
        let at_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(EventRecord {
            seq: self.event_seq,
            at_ms,
            unit,
            kind: kind.to_owned(),
            detail,
        });
        self.notify_event();
    }

    fn notice(&mut self, n: &Notice) {
        match n {
            Notice::Ready { unit, .. } => self.unit_ready(unit.index()),
            Notice::Started { unit, .. } => {
                if let Some(r) = self.obs.resources.get_mut(unit.index()) {
                    r.new_process();
                }
            }
            Notice::RestartScheduled { unit, .. } => {
                if let Some(h) = self.obs.health.get_mut(unit.index()) {
                    h.restarted(Instant::now());
                }
            }
            Notice::Draining { unit, .. } | Notice::Stopping { unit, .. } => {
                self.unit_draining(unit.index())
            }
            Notice::Exited {
                unit, stop_cause, ..
            } => {
                let cause = match stop_cause {
                    Some(lifecycle::StopCause::HeartbeatTimeout) => {
                        crate::delivery::LostCause::HeartbeatTimeout
                    }
                    Some(
                        lifecycle::StopCause::Command
                        | lifecycle::StopCause::Shutdown
                        | lifecycle::StopCause::Drain
                        | lifecycle::StopCause::Removed
                        | lifecycle::StopCause::Replaced,
                    ) => crate::delivery::LostCause::Stopped,
                    _ => crate::delivery::LostCause::Exited,
                };
                self.unit_lost(unit.index(), cause);
            }
            Notice::ShutdownStarted { .. } => {
                self.plane.delivery.stop_intake();
                self.sd_notify("STOPPING=1\nSTATUS=shutting down");
            }
            Notice::StartupComplete { failed } => {
                let msg = format!(
                    "READY=1\nSTATUS={} units started, {} failed",
                    self.units.len() - failed.len(),
                    failed.len()
                );
                self.sd_notify(&msg);
            }
            Notice::Failed { unit, reason } => {
                let msg = format!(
                    "STATUS=worker {} failed: {reason}",
                    self.units[unit.index()].name
                );
                self.sd_notify(&msg);
            }
            _ => {}
        }
        let name = |s: &Self, u: UnitId| {
            s.units
                .get(u.index())
                .map(|x| x.name.clone())
                .unwrap_or_default()
        };
        let (unit, kind, detail) = match n {
            Notice::Started { unit, pid } => (name(self, *unit), "started", format!("pid {pid}")),
            Notice::SpawnFailed { unit, error } => {
                (name(self, *unit), "spawn_failed", error.clone())
            }
            Notice::Ready { unit, pid, after } => (
                name(self, *unit),
                "ready",
                format!("pid {pid} after {after:?}"),
            ),
            Notice::Draining { unit, pid } => (name(self, *unit), "draining", format!("pid {pid}")),
            Notice::Stopping { unit, pid, cause } => (
                name(self, *unit),
                "stopping",
                format!("pid {pid}: {cause:?}"),
            ),
            Notice::Exited {
                unit,
                pid,
                reason,
                stop_cause,
            } => (
                name(self, *unit),
                "exited",
                match stop_cause {
                    Some(c) => format!("pid {pid} {reason} ({c:?})"),
                    None => format!("pid {pid} {reason}"),
                },
            ),
            Notice::RestartScheduled {
                unit,
                after,
                delay,
                attempt,
            } => (
                name(self, *unit),
                "restarting",
                format!("attempt {attempt} in {delay:?} after: {after}"),
            ),
            Notice::Completed { unit } => (name(self, *unit), "completed", String::new()),
            Notice::Failed { unit, reason } => (name(self, *unit), "failed", reason.to_string()),
            Notice::Escalated { unit, escalation } => {
                (name(self, *unit), "escalated", format!("{escalation:?}"))
            }
            Notice::Stopped { unit } => (name(self, *unit), "stopped", String::new()),
            Notice::StartupComplete { failed } => (
                String::new(),
                "startup_complete",
                format!(
                    "failed: {:?}",
                    failed.iter().map(|u| name(self, *u)).collect::<Vec<_>>()
                ),
            ),
            Notice::ShutdownStarted { cause, fast } => {
                self.shutting_down = true;
                (
                    String::new(),
                    "shutdown_started",
                    format!("{cause:?} fast={fast}"),
                )
            }
            Notice::UnitAdded { unit } => {
                self.add_unit_rt(*unit);
                (name(self, *unit), "unit_added", String::new())
            }
            Notice::UnitRemoved { unit } => (name(self, *unit), "unit_removed", String::new()),
            Notice::WorkerRemoved { worker } => (String::new(), "worker_removed", worker.clone()),
        };
        match kind {
            "failed" | "spawn_failed" | "escalated" => {
                tracing::error!(unit = %unit, "{kind}: {detail}")
            }
            "exited" | "restarting" => tracing::warn!(unit = %unit, "{kind}: {detail}"),
            _ => tracing::info!(unit = %unit, "{kind} {detail}"),
        }
        self.push_event(unit, kind, detail);
    }

    fn sd_notify(&self, msg: &str) {
        if let Some(n) = &self.notify {
            if let Err(e) = n.send(msg) {
                tracing::warn!("sd_notify failed: {e}");
            }
        }
    }

    fn status(&self) -> StatusData {
        let workers = self
            .life
            .status()
            .into_iter()
            .map(|s| WorkerStatus {
                name: s.name.to_owned(),
                state: s.state.to_string(),
                pid: s.pid.and_then(|p| u32::try_from(p.as_raw()).ok()),
                restarts: s.restarts,
                last_exit: match (s.failure, s.last_exit) {
                    (Some(f), _) => Some(f.to_string()),
                    (None, Some(e)) => Some(match e.stop_cause {
                        Some(c) => format!("{} ({c:?})", e.reason),
                        None => e.reason.to_string(),
                    }),
                    (None, None) => s.spawn_error.map(|e| format!("spawn failed: {e}")),
                },
                ready_ms: s.ready_at.map(|t| {
                    u64::try_from(t.saturating_duration_since(self.start).as_millis()).unwrap_or(0)
                }),
            })
            .collect();
        let queues = self
            .plane
            .routers
            .iter()
            .zip(&self.plane.kind_names)
            .zip(&self.plane.rejected)
            .map(|((r, k), rejected)| {
                let st = r.stats();
                crate::control::proto::QueueStatus {
                    kind: k.clone(),
                    policy: st.policy.to_owned(),
                    depth: st.queued,
                    rejected: *rejected,
                    dispatched: st.dispatched,
                    in_flight: st.in_flight,
                }
            })
            .collect();
        let c = self.plane.delivery.census();
        let totals = &self.plane.delivery.stats().total;
        let tasks = crate::control::proto::TaskCensus {
            queued: c.queued,
            in_flight: c.in_flight,
            waiting_retry: c.waiting_retry,
            dead_lettered: c.dead_lettered,
            done: c.done,
            retried: totals.retried,
            late_dropped: totals.late_dropped,
            requeued_lost: totals.requeued_lost,
        };
        StatusData {
            pid: std::process::id(),
            uptime_s: self.start.elapsed().as_secs_f64(),
            shutting_down: self.shutting_down,
            workers,
            events: self.events.iter().cloned().collect(),
            queues,
            tasks,
            anomalies: self.obs.flagged.clone(),
        }
    }

    /// Answers a control request; the bool says whether to close the connection after.
    fn request(&mut self, req: Request) -> (Response, bool) {
        match req {
            Request::Status => (
                Response::ok(serde_json::to_value(self.status()).unwrap_or_default()),
                false,
            ),
            Request::Shutdown => {
                self.feed(Event::Shutdown { fast: false });
                (
                    Response::ok(serde_json::json!({"shutting_down": true})),
                    false,
                )
            }
            Request::RouteGet { kind } => {
                let now = Instant::now();
                let mut out = serde_json::Map::new();
                for (r, k) in self.plane.routers.iter().zip(&self.plane.kind_names) {
                    if kind.as_ref().is_none_or(|want| want == k) {
                        out.insert(k.clone(), r.describe(now));
                    }
                }
                if out.is_empty() {
                    return (
                        Response::err(format!(
                            "unknown kind {:?} (kinds: {})",
                            kind.unwrap_or_default(),
                            self.plane.kind_names.join(", ")
                        )),
                        false,
                    );
                }
                (Response::ok(serde_json::Value::Object(out)), false)
            }
            Request::RouteSet { kind, policy } => {
                match self.plane.kind_names.iter().position(|k| *k == kind) {
                    Some(i) => {
                        let old = self.plane.routers[i].stats().policy;
                        self.plane.routers[i].set_policy(policy);
                        let new = self.plane.routers[i].stats().policy;
                        self.push_event(
                            String::new(),
                            "policy_changed",
                            format!("kind {kind}: {old} -> {new}"),
                        );
                        (
                            Response::ok(
                                serde_json::json!({"kind": kind, "policy": new, "was": old}),
                            ),
                            false,
                        )
                    }
                    None => (
                        Response::err(format!(
                            "unknown kind {kind:?} (kinds: {})",
                            self.plane.kind_names.join(", ")
                        )),
                        false,
                    ),
                }
            }
            Request::DlqList => {
                let now = Instant::now();
                let list: Vec<serde_json::Value> = self
                    .plane
                    .delivery
                    .dlq_list()
                    .into_iter()
                    .map(|e| {
                        serde_json::json!({
                            "id": e.id.0,
                            "kind": self.plane.kind_names.get(e.kind as usize),
                            "class": self.plane.class_names.get(e.class),
                            "attempts": e.attempts,
                            "reason": e.reason,
                            "payload_len": e.payload_len,
                            "age_ms": now.saturating_duration_since(e.at).as_millis() as u64,
                        })
                    })
                    .collect();
                (Response::ok(serde_json::json!({ "entries": list })), false)
            }
            Request::DlqRetry { id } => {
                let sel = id.map_or(crate::delivery::DlqSelect::All, |i| {
                    crate::delivery::DlqSelect::One(crate::delivery::TaskId(i))
                });
                match self.plane.delivery.dlq_retry(sel) {
                    Ok(actions) => {
                        let n = actions
                            .iter()
                            .filter(|a| {
                                matches!(a, crate::delivery::DeliveryAction::Requeue { .. })
                            })
                            .count();
                        self.carry_out(Instant::now(), actions);
                        self.pump();
                        (Response::ok(serde_json::json!({ "requeued": n })), false)
                    }
                    Err(e) => (Response::err(e.to_string()), false),
                }
            }
            Request::DlqPurge { id } => {
                let sel = id.map_or(crate::delivery::DlqSelect::All, |i| {
                    crate::delivery::DlqSelect::One(crate::delivery::TaskId(i))
                });
                match self.plane.delivery.dlq_purge(sel) {
                    Ok(ids) => (
                        Response::ok(
                            serde_json::json!({ "purged": ids.iter().map(|i| i.0).collect::<Vec<_>>() }),
                        ),
                        false,
                    ),
                    Err(e) => (Response::err(e.to_string()), false),
                }
            }
            // Handled in `conn_request` / `more_requests` (they need the connection id).
            _ => (Response::err("internal: request routed wrongly"), false),
        }
    }

    /// Requests that need the connection: attach (fd passing), attached, submit (may answer
    /// later). Returns `None` when the response is sent later or already sent.
    fn conn_request(&mut self, conn: usize, req: Request) -> Option<Response> {
        match req {
            Request::Attach => {
                let cfg = amp_ipc::segment::SegmentConfig::default();
                match self
                    .plane
                    .clients
                    .attach(conn, &self.cfg.supervisor.shm_prefix, &cfg)
                {
                    Ok(a) => {
                        let serial = self.plane.client_attached(a.id);
                        self.show_full_kinds(a.id);
                        let kinds: Vec<(u32, String)> = self
                            .kind_ids
                            .iter()
                            .map(|(k, &id)| (id, k.clone()))
                            .collect();
                        let resp = Response::ok(serde_json::json!({
                            "client": a.id,
                            "serial": serial,
                            "segment": a.segment,
                            "kinds": kinds,
                            "classes": self.plane.class_names,
                        }));
                        let fds = [a.fds.0.as_raw_fd(), a.fds.1.as_raw_fd()];
                        if let Err(e) =
                            self.control
                                .respond_with_fds(conn, &resp, &fds, self.poll.registry())
                        {
                            self.drop_client(a.id);
                            return Some(Response::err(format!("attach failed: {e}")));
                        }
                        let c = &self.plane.clients.slab[a.id];
                        let raw = c.end.completions.fd().as_raw_fd();
                        let _ = self.poll.registry().register(
                            &mut SourceFd(&raw),
                            Token(CLIENT_BASE + a.id),
                            Interest::READABLE,
                        );
                        None
                    }
                    Err(e) => Some(Response::err(format!("attach failed: {e}"))),
                }
            }
            Request::Attached { client } => Some(match self.plane.clients.attached(conn, client) {
                Ok(()) => Response::ok(serde_json::json!({"attached": client})),
                Err(e) => Response::err(e),
            }),
            Request::Submit {
                kind,
                priority,
                payload,
                payload_b64,
                wait,
                timeout_ms,
                idempotency_key,
            } => {
                let bytes = match (payload, payload_b64) {
                    (Some(_), Some(_)) => {
                        return Some(Response::err(
                            "give either `payload` or `payload_b64`, not both",
                        ))
                    }
                    (Some(p), None) => p.into_bytes(),
                    (None, Some(b)) => {
                        use base64::Engine as _;
                        match base64::engine::general_purpose::STANDARD.decode(b) {
                            Ok(v) => v,
                            Err(e) => {
                                return Some(Response::err(format!(
                                    "payload_b64 is not valid base64: {e}"
                                )))
                            }
                        }
                    }
                    (None, None) => Vec::new(),
                };
                self.control_submit(
                    conn,
                    &kind,
                    priority.as_deref(),
                    bytes,
                    wait,
                    timeout_ms.map(Duration::from_millis),
                    idempotency_key,
                )
            }
            other => match self.more_requests(conn, other) {
                Ok(resp) => resp,
                Err(other) => Some(self.request(*other).0),
            },
        }
    }

    fn cleanup(&mut self) {
        for u in 0..self.units.len() {
            if let Some(p) = &self.units[u].proc {
                let _ = sys::signal_group(p.pid, Signal::SIGKILL);
                let _ = sys::wait_readable(p.pidfd(), Duration::from_secs(1));
                let _ = sys::reap(p.pid);
            }
            self.drop_proc(u);
        }
        self.control.remove_file();
        if let Some(g) = self.guard.take() {
            g.finish();
        }
    }
}

/// Loads nothing, spawns everything: the body of `ampd --config FILE`. Returns whether the
/// shutdown was clean.
///
/// # Errors
/// Setup errors (socket in use, invalid lifecycle spec).
pub fn run(cfg: Config) -> anyhow::Result<bool> {
    Daemon::new(cfg)?.run()
}
