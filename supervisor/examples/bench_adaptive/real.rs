//! The `hetero-burst-degrade` scenario over the real rings: one `ampd` per run with ten
//! `amp-sleep` workers, an open-loop client on the shared-memory client API, and speed changes
//! written to each worker's `AMP_SLEEP_CONTROL` file at the phase boundaries.
//!
//! Everything the simulator models is real here: ampd's router, delivery core and adaptive
//! controller, the rings and doorbells, worker processes that really sleep, crash (poison tasks
//! abort their worker, which ampd restarts) and fail (`fail1`: a task's first attempt fails
//! with a retryable error). Latency counts from each task's intended arrival time, so a client
//! that falls behind does not hide queueing. The time to move load off the degraded worker is
//! computed with the simulator's rule from `workers` samples taken every 50 ms over the control
//! socket (dispatches = completions + in flight).

use amp_ipc::client::{Client, ClientError, ResultStatus, Submit, Ticket};
use amp_supervisor::adapt::sim::{Class, SimConfig, SimResult, SpeedChange, TaskRecord};
use amp_supervisor::config::RouterPolicy;
use amp_supervisor::control::client::Client as Control;
use anyhow::{bail, ensure, Context, Result};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The kind every worker serves.
const KIND: &str = "sleep";
/// How often the monitor samples `workers`.
const SAMPLE: Duration = Duration::from_millis(50);
/// How long after the last arrival results are waited for before the rest count as lost.
const DRAIN: Duration = Duration::from_secs(60);

/// One planned task.
#[derive(Debug, Clone)]
struct Arrival {
    at: Duration,
    class: Class,
    phase: usize,
    /// Base service time (ms) before the worker's speed factor.
    ms: f64,
    poison: bool,
    fail_first: bool,
}

/// Start and end of each phase, from the start of the run.
fn phase_bounds(cfg: &SimConfig) -> Vec<(Duration, Duration)> {
    cfg.phases
        .iter()
        .scan(Duration::ZERO, |t, p| {
            let s = *t;
            *t += p.duration;
            Some((s, *t))
        })
        .collect()
}

/// The open-loop arrival plan of `cfg`: the simulator's own draws, in its order, so that the
/// simulated oracle runs on exactly these tasks. Poisson arrivals at `load × capacity` per phase
/// (the memoryless draw restarts at a phase boundary), each arrival drawing its class and size
/// and then the next arrival time; poison tasks at fixed times, each drawing a (batch) size.
/// Which tasks' first attempt fails comes from a separate stream.
fn plan(cfg: &SimConfig) -> Vec<Arrival> {
    let wl = &cfg.workload;
    let capacity = cfg.capacity();
    let mut rng = SmallRng::seed_from_u64(cfg.seed);
    let mut failures = SmallRng::seed_from_u64(cfg.seed ^ 0xfa11);
    let exp = |rng: &mut SmallRng, mean: f64| -> f64 {
        let u: f64 = 1.0 - rng.random::<f64>();
        -u.ln() * mean
    };
    let pareto = |rng: &mut SmallRng| -> f64 {
        let u: f64 = 1.0 - rng.random::<f64>();
        (wl.batch_min.as_secs_f64() * u.powf(-1.0 / wl.batch_alpha)).min(wl.batch_cap.as_secs_f64())
    };
    let bounds = phase_bounds(cfg);
    let total = bounds.last().map_or(Duration::ZERO, |b| b.1);
    let phase_of = |t: Duration| bounds.iter().position(|&(s, e)| t >= s && t < e);
    // The simulator's `next_arrival`.
    let next_arrival = |rng: &mut SmallRng, from: Duration| -> Option<Duration> {
        let mut t = from;
        loop {
            let i = phase_of(t)?;
            let end = bounds[i].1;
            let rate = cfg.phases[i].load * capacity;
            if rate <= 0.0 {
                t = end;
                continue;
            }
            let next = t + sim_duration(exp(rng, 1.0 / rate));
            if next < end {
                return Some(next);
            }
            t = end;
        }
    };
    let n = wl.poison;
    let mut poison: Vec<Duration> = (0..n)
        .map(|k| {
            // The simulator's integer arithmetic on nanoseconds.
            let t = total.as_nanos() * u128::from(2 * k + 1) / u128::from(2 * n);
            Duration::from_nanos(u64::try_from(t).unwrap_or(u64::MAX))
        })
        .collect();
    poison.reverse();
    let mut out = Vec::new();
    let mut next = next_arrival(&mut rng, Duration::ZERO);
    loop {
        let p = poison.last().copied();
        if next.is_none() && p.is_none() {
            break;
        }
        if let Some(p) = p.filter(|&p| next.is_none_or(|t| p < t)) {
            poison.pop();
            let ms = pareto(&mut rng) * 1e3;
            out.push(Arrival {
                at: p,
                class: Class::Batch,
                phase: phase_of(p).unwrap_or(0),
                ms,
                poison: true,
                fail_first: false,
            });
        } else if let Some(t) = next {
            let interactive = rng.random::<f64>() < wl.interactive_share;
            let size = if interactive {
                exp(&mut rng, wl.interactive_mean.as_secs_f64())
            } else {
                pareto(&mut rng)
            };
            out.push(Arrival {
                at: t,
                class: if interactive {
                    Class::Interactive
                } else {
                    Class::Batch
                },
                phase: phase_of(t).unwrap_or(0),
                ms: size * 1e3,
                poison: false,
                fail_first: failures.random::<f64>() < wl.failure,
            });
            next = next_arrival(&mut rng, t);
        }
    }
    out
}

/// Seconds to a duration the way the simulator converts them (truncated to whole ns), so that
/// arrival times match it to the nanosecond.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "non-negative durations far below u64::MAX ns, truncated like the simulator"
)]
fn sim_duration(secs: f64) -> Duration {
    Duration::from_nanos((secs.max(0.0) * 1e9) as u64)
}

/// The ampd config of one run.
fn config(
    cfg: &SimConfig,
    dir: &Path,
    bins: &Path,
    policy: RouterPolicy,
    adaptive: bool,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "[supervisor]\ncontrol_socket = {:?}\nshm_prefix = \"ampbench\"\n\
         retry_backoff = \"{}ms\"\n",
        dir.join("ampd.sock").display().to_string(),
        cfg.retry_base.as_millis().max(1)
    );
    let sleep = bins.join("amp-sleep").display().to_string();
    for (u, w) in cfg.workers.iter().enumerate() {
        let ctl = dir.join(format!("w{u}.ctl")).display().to_string();
        let _ = writeln!(
            s,
            "[workers.w{u}]\ncommand = {sleep:?}\nkinds = [\"{KIND}\"]\n\
             env = {{ AMP_SLEEP_FACTOR = \"{}\", AMP_SLEEP_CONTROL = {ctl:?} }}\n\
             concurrency = {}\nbackoff = {{ initial = \"20ms\", max = \"200ms\" }}\n\
             intensity = {{ max_restarts = 1000, window = \"60s\" }}\n",
            w.speed, cfg.window
        );
    }
    let policy = match policy {
        RouterPolicy::RoundRobin => "round_robin",
        RouterPolicy::LeastLoaded => "least_loaded",
        RouterPolicy::PeakEwma => "peak_ewma",
        RouterPolicy::Learned => "learned",
    };
    let _ = writeln!(
        s,
        "[kinds.{KIND}]\nrouter = \"{policy}\"\nadapt = \"{}\"\nmax_attempts = {}\nqueue_limit = 10000000\n",
        if adaptive { "auto" } else { "off" },
        cfg.max_attempts
    );
    s
}

/// A running ampd, stopped when dropped.
struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Daemon {
    fn start(bins: &Path, config: &Path, log: &Path, units: usize) -> Result<Self> {
        let socket = config.with_file_name("ampd.sock");
        let log = std::fs::File::create(log).context("creating the ampd log")?;
        let child = Command::new(bins.join("ampd"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bins.join("ampd").display()))?;
        let d = Self { child, socket };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(n) = d.ready_units() {
                if n >= units {
                    return Ok(d);
                }
            }
            ensure!(
                Instant::now() < deadline,
                "ampd did not report {units} ready workers within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn control(&self) -> Result<Control> {
        Ok(Control::connect(&self.socket, Duration::from_secs(10))?)
    }

    fn request(&self, req: serde_json::Value) -> Result<serde_json::Value> {
        let r = self.control()?.request(req)?;
        if !r.ok {
            bail!("ampd refused: {}", r.error.unwrap_or_default());
        }
        Ok(r.data.unwrap_or_default())
    }

    fn ready_units(&self) -> Result<usize> {
        let s = self.request(serde_json::json!({"cmd": "status"}))?;
        Ok(s["workers"]
            .as_array()
            .map_or(0, |w| w.iter().filter(|w| w["state"] == "ready").count()))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.request(serde_json::json!({"cmd": "shutdown"}));
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `workers` sample: per unit (in flight, dispatched so far).
type Sample = (Duration, Vec<(u64, u64)>);

/// Samples `workers` every [`SAMPLE`] until `stop`.
fn monitor(socket: PathBuf, units: usize, start: Instant, stop: Arc<AtomicBool>) -> Vec<Sample> {
    let mut out = Vec::new();
    let Ok(mut c) = Control::connect(&socket, Duration::from_secs(5)) else {
        return out;
    };
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(r) = c.request(serde_json::json!({"cmd": "workers"})) {
            let mut v = vec![(0, 0); units];
            if let Some(ws) = r.data.as_ref().and_then(|d| d["workers"].as_array()) {
                for w in ws {
                    let Some(u) = w["name"]
                        .as_str()
                        .and_then(|n| n.strip_prefix('w'))
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|&u| u < units)
                    else {
                        continue;
                    };
                    let n = |k: &str| w[k].as_u64().unwrap_or(0);
                    let in_flight = n("in_flight");
                    v[u].0 += in_flight;
                    v[u].1 += n("completed_ok") + n("completed_err") + in_flight;
                }
            }
            out.push((start.elapsed(), v));
        }
        next += SAMPLE;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    out
}

/// The simulator's `adapt_s` rule on sampled counters: from the watched phase's start, the
/// first second during which the watched unit holds at most two tasks and gets at most 1.5×
/// its capacity share of the dispatches (+1).
fn adapt_s(cfg: &SimConfig, samples: &[Sample]) -> Option<f64> {
    let (unit, name) = cfg.watch.as_ref()?;
    let i = cfg.phases.iter().position(|p| &p.name == name)?;
    let start: Duration = cfg.phases[..i].iter().map(|p| p.duration).sum();
    let end = start + cfg.phases[i].duration;
    let share = cfg.capacity_share(i, *unit);
    let second = Duration::from_secs(1);
    let at = |t: Duration| samples.partition_point(|s| s.0 < t);
    let mut s = start;
    while s + second <= end {
        let (a, b) = (at(s), at(s + second));
        if b <= a || b >= samples.len() {
            s += SAMPLE;
            continue;
        }
        let (first, last) = (&samples[a].1, &samples[b].1);
        let mine = last[*unit].1.saturating_sub(first[*unit].1);
        let all: u64 = last
            .iter()
            .zip(first)
            .map(|(l, f)| l.1.saturating_sub(f.1))
            .sum();
        let held = samples[a..=b]
            .iter()
            .map(|x| x.1[*unit].0)
            .max()
            .unwrap_or(0);
        #[allow(clippy::cast_precision_loss, reason = "dispatch counts")]
        let ok_share = all == 0 || (mine as f64) <= 1.5 * share * all as f64 + 1.0;
        if ok_share && held <= 2 {
            return Some((s - start).as_secs_f64());
        }
        s += SAMPLE;
    }
    None
}

/// Writes each worker's speed file for the start of phase `i`.
fn apply_phase(cfg: &SimConfig, dir: &Path, i: usize) -> Result<()> {
    for &(u, c) in &cfg.phases[i].changes {
        let text = match c {
            SpeedChange::Slow(f) => format!("{f}\n"),
            SpeedChange::Stall(d) => format!("stall {}\n", d.as_secs_f64() * 1e3),
            SpeedChange::Restore => String::new(),
        };
        // Written aside and renamed over: the worker never reads a half-written file.
        let path = dir.join(format!("w{u}.ctl"));
        let tmp = dir.join(format!("w{u}.ctl.tmp"));
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    }
    Ok(())
}

/// One run of the scenario on a real ampd. `bins` holds `ampd` and `amp-sleep`; `dir` is an
/// empty scratch directory.
pub fn run(
    cfg: &SimConfig,
    policy: RouterPolicy,
    adaptive: bool,
    bins: &Path,
    dir: &Path,
) -> Result<SimResult> {
    let units = cfg.workers.len();
    for u in 0..units {
        std::fs::write(dir.join(format!("w{u}.ctl")), "")?;
    }
    let cfg_path = dir.join("amp.toml");
    std::fs::write(&cfg_path, config(cfg, dir, bins, policy, adaptive))?;
    let daemon = Daemon::start(bins, &cfg_path, &dir.join("ampd.log"), units)?;
    let mut client = Client::connect(&daemon.socket).context("attaching to ampd")?;
    let arrivals = plan(cfg);
    let bounds = phase_bounds(cfg);
    let arrivals_end = bounds.last().map_or(Duration::ZERO, |b| b.1);

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let samples = {
        let (socket, stop) = (daemon.socket.clone(), Arc::clone(&stop));
        std::thread::spawn(move || monitor(socket, units, start, stop))
    };
    let mut records: Vec<TaskRecord> = arrivals
        .iter()
        .map(|a| TaskRecord {
            class: a.class,
            phase: a.phase,
            latency: None,
            ok: false,
            dead_lettered: false,
            poison: a.poison,
            attempts: 0,
            unit: None,
            ahead: 0,
            rtt: None,
        })
        .collect();
    let mut tickets: HashMap<Ticket, usize> = HashMap::with_capacity(arrivals.len());
    let (mut next, mut phase, mut open) = (0usize, 0usize, 0usize);
    let mut payload = String::new();
    let deadline = arrivals_end + DRAIN;
    loop {
        let now = start.elapsed();
        while phase < bounds.len() && now >= bounds[phase].0 {
            apply_phase(cfg, dir, phase)?;
            phase += 1;
        }
        // Submit what is due.
        let mut pushed = false;
        while next < arrivals.len() && arrivals[next].at <= now {
            let a = &arrivals[next];
            payload.clear();
            let _ = write!(payload, "{:.3} who", a.ms);
            if a.poison {
                payload.push_str(" crash");
            }
            if a.fail_first {
                payload.push_str(" fail1");
            }
            let _ = write!(payload, " #{next}");
            let opts = Submit {
                kind: KIND,
                class: Some(match a.class {
                    Class::Interactive => "interactive",
                    Class::Batch => "batch",
                }),
                ..Submit::default()
            };
            match client.push(&opts, payload.as_bytes()) {
                Ok(t) => {
                    tickets.insert(t, next);
                    next += 1;
                    open += 1;
                    pushed = true;
                }
                Err(ClientError::Full) => break,
                Err(e) => return Err(e).context("submitting"),
            }
        }
        if pushed {
            client.flush()?;
        }
        // Collect results.
        let mut got = false;
        while let Some(r) = client.try_result()? {
            got = true;
            let Some(i) = tickets.remove(&r.ticket) else {
                continue;
            };
            open -= 1;
            let done = start.elapsed();
            let rec = &mut records[i];
            rec.latency = Some(done.saturating_sub(arrivals[i].at));
            rec.ok = r.status == ResultStatus::Ok;
            rec.dead_lettered = r.status == ResultStatus::DeadLettered;
            rec.attempts = r.attempts;
            rec.unit = std::str::from_utf8(&r.body).ok().and_then(|b| {
                b.rsplit_once(" @w")
                    .and_then(|(_, u)| u.trim().parse::<usize>().ok())
            });
        }
        if next >= arrivals.len() && open == 0 {
            break;
        }
        if now > deadline {
            break;
        }
        if !pushed && !got {
            let wait = arrivals.get(next).map_or(Duration::from_micros(200), |a| {
                a.at.saturating_sub(now).min(Duration::from_micros(200))
            });
            std::thread::sleep(wait);
        }
    }
    let end = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let samples = samples.join().unwrap_or_default();
    let tune = daemon
        .request(serde_json::json!({"cmd": "tune", "op": "show"}))
        .unwrap_or_default();
    drop(client);
    drop(daemon);

    let mut actions = BTreeMap::new();
    let decisions = tune["decisions"].as_array().cloned().unwrap_or_default();
    for d in &decisions {
        if d["state"] != "proposed" {
            let t = d["change"]["type"].as_str().unwrap_or("other").to_owned();
            *actions.entry(t).or_insert(0u64) += 1;
        }
    }
    let kind = &tune["kinds"][KIND];
    let mut windows = vec![0u32; units];
    for w in kind["workers"].as_array().into_iter().flatten() {
        if let (Some(u), Some(win)) = (w["unit"].as_u64(), w["window"].as_u64()) {
            if let Some(slot) = usize::try_from(u).ok().and_then(|u| windows.get_mut(u)) {
                *slot = u32::try_from(win).unwrap_or(u32::MAX);
            }
        }
    }
    let lost = records.iter().filter(|t| t.latency.is_none()).count() as u64;
    let dead_lettered = records.iter().filter(|t| t.dead_lettered).count() as u64;
    Ok(SimResult {
        phases: cfg
            .phases
            .iter()
            .zip(&bounds)
            .map(|(p, b)| (p.name.clone(), b.0.as_secs_f64(), b.1.as_secs_f64()))
            .collect(),
        deadline: cfg.workload.deadline,
        lost,
        dead_lettered,
        poison: u64::from(cfg.workload.poison),
        crashes: 0,
        retries: records
            .iter()
            .map(|r| u64::from(r.attempts.saturating_sub(1)))
            .sum(),
        adapt_s: adapt_s(cfg, &samples),
        decisions: decisions.len() as u64,
        actions,
        windows,
        batch: kind["batch"].as_u64().and_then(|b| u32::try_from(b).ok()),
        timeout: kind["timeout_ms"]
            .as_f64()
            .map(|ms| Duration::from_secs_f64(ms / 1e3)),
        params: BTreeMap::new(),
        replicas: Vec::new(),
        decision_log: Vec::new(),
        adjustments: Vec::new(),
        proposal_errors: Vec::new(),
        end_s: end.as_secs_f64(),
        tasks: records,
    })
}

/// A fresh scratch directory under the system's temporary directory.
pub fn scratch(label: &str) -> Result<PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("amp-bench-adaptive-{}-{label}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
