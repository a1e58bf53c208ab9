//! Task-delivery benchmark: no-op tasks end to end through a real ampd and `amp-echo` workers,
//! against Python's `multiprocessing.Pool.imap_unordered` and a raw ipc-channel round trip,
//! all measured in one run.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p amp-supervisor --example bench_tasks -- --mp-script scripts/bench_mp_pool.py
//! AMP_BENCH_QUICK=1 cargo run --release -p amp-supervisor --example bench_tasks   # smoke run
//! ```
//! (`scripts/bench-tasks` does both.) Two ampd instances are started from private temporary
//! configs (socket and shared-memory prefix of their own; one with one `amp-echo` process, one
//! with two; 1 MiB rings by default (`--ring`), concurrency = window, `queue_limit` 1 000 000,
//! `batch` 1024) and stay up for the whole run. The measurements are interleaved (amp 1 worker,
//! amp 2 workers, amp 1 worker draining by `try_result`, amp 1 worker in chunks of each Pool
//! chunksize above 1, round trips, Pool; repeated `--runs` times) so that drift on
//! a shared machine hits them alike. The table shows medians and every run; the last line of
//! output is a `key=value` summary. See `docs/benchmarks.md`.
//!
//! - **Throughput**: one client keeps a window of tasks outstanding, queues submissions with
//!   `push` and publishes each batch with one `flush`, and takes results in ticket order
//!   (`wait_for` on the oldest ticket) or, in the comparison row, in arrival order
//!   (`try_result`/`wait_result`). Every result is checked: status Ok, the 8-byte payload
//!   echoed back, the sum of all payloads. The chunked rows submit `Client::push_chunk`s of `c`
//!   8-byte items (`--chunk-window` items outstanding) and check every item's outcome.
//! - **Round trip**: one task at a time (`submit`, then `wait_for`), client clock; ampd's own
//!   intake-to-result latency from the result header beside it.
//! - **Where the time goes**: user + system CPU time of the client, ampd and the workers (from
//!   `/proc`) per task, their voluntary context switches (blocking waits) per task, and the share
//!   of the machine other processes took meanwhile.
//! - **Baselines**: `scripts/bench_mp_pool.py` (Pool of 2 at chunksizes 1, 10, 100 and 1000;
//!   the summary's `vs_mp_pool` is the lowest amp ÷ Pool ratio over the chunksizes, each
//!   compared alike: amp's plain tasks against chunksize 1, amp chunks of `c` against
//!   chunksize `c`), and
//!   ipc-channel between this process and a child (this binary re-executed): 8-byte echo round
//!   trip, one-way messages per second, and a windowed echo with one message per task.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use amp_ipc::client::{Client, ClientError, ResultStatus, Submit, TaskResult, Ticket};
use amp_supervisor::control::client as control;
use amp_supervisor::control::proto::StatusData;
use amp_supervisor::sys::{proc_sample, signal_pid, Pid, Signal};
use anyhow::{anyhow, bail, Context as _, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use ipc_channel::ipc::{self, IpcBytesReceiver, IpcBytesSender, IpcOneShotServer, IpcSender};

/// Command line (defaults are the full run; `AMP_BENCH_QUICK=1` shrinks every count).
#[derive(Debug, Parser)]
#[command(about = "amp task-delivery benchmark (see docs/benchmarks.md)")]
struct Args {
    /// Tasks per throughput run.
    #[arg(long)]
    tasks: Option<u64>,
    /// Throughput runs per configuration (interleaved).
    #[arg(long)]
    runs: Option<usize>,
    /// Tasks outstanding at once in the throughput client.
    #[arg(long, default_value_t = 8192)]
    window: u64,
    /// Submissions per `flush` in the throughput client.
    #[arg(long, default_value_t = 1024)]
    batch: u64,
    /// Items outstanding at once in the chunked runs (`Client::push_chunk`; at least 4 chunks);
    /// each publish carries an eighth of them.
    #[arg(long, default_value_t = 32_768)]
    chunk_window: u64,
    /// Capacity of each worker ring (`ring.tasks` and `ring.completions` in ampd's config; the
    /// default is ampd's own default).
    #[arg(long, default_value = "1MiB")]
    ring: String,
    /// Sequential round trips per configuration (split over the runs).
    #[arg(long)]
    rtt: Option<usize>,
    /// `multiprocessing.Pool` chunksizes measured (comma-separated); amp runs in chunks of each
    /// one above 1, and the summary takes the lowest ratio of amp to Pool chunked alike.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 10, 100, 1000])]
    chunksizes: Vec<u64>,
    /// Profiling aid: only the chunked amp runs (no plain runs, round trips or baselines; no
    /// summary line).
    #[arg(long)]
    chunked_only: bool,
    /// Profiling aid (A/B of two builds): only plain throughput with one worker, alternating
    /// run by run between the ampd and amp-echo of `--bin-dir` (A) and of this directory (B),
    /// both started at once; prints each pair and the median ratio B ÷ A of tasks/s and of
    /// ampd's CPU per task (no summary line). Pairs alternate their order.
    #[arg(long)]
    compare_bin_dir: Option<PathBuf>,
    /// With `--compare-bin-dir`: B's client window (and its ampd's `concurrency`) instead of
    /// `--window` (compare windows with one build in both directories).
    #[arg(long)]
    compare_window: Option<u64>,
    /// With `--compare-bin-dir`: B's submissions per flush instead of `--batch`.
    #[arg(long)]
    compare_batch: Option<u64>,
    /// Path of `bench_mp_pool.py` (the Python baseline is skipped without it).
    #[arg(long)]
    mp_script: Option<PathBuf>,
    /// Python interpreter.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Directory holding `ampd` and `amp-echo` (default: next to this example's directory).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Internal: run as the ipc-channel echo child, connecting to this one-shot server.
    #[arg(long, hide = true)]
    ipc_child: Option<String>,
}

/// Counts for one invocation.
#[derive(Debug, Clone, Copy)]
struct Plan {
    tasks: u64,
    runs: usize,
    window: u64,
    batch: u64,
    chunk_window: u64,
    rtt: usize,
    mp_tasks: u64,
    /// Tasks per Pool run at chunksize 1 (its slowest); chunksize c runs c times as many, up
    /// to `mp_tasks`.
    mp_chunk1_tasks: u64,
    ipc_rtt: usize,
    ipc_oneway: u64,
    ipc_window_tasks: u64,
}

impl Plan {
    fn new(a: &Args, quick: bool) -> Self {
        let tasks = a.tasks.unwrap_or(if quick { 100_000 } else { 2_000_000 });
        Self {
            tasks,
            runs: a.runs.unwrap_or(if quick { 1 } else { 3 }).max(1),
            window: a.window.max(1),
            batch: a.batch.max(1),
            chunk_window: a.chunk_window.max(1),
            rtt: a.rtt.unwrap_or(if quick { 2_000 } else { 30_000 }),
            mp_tasks: tasks,
            mp_chunk1_tasks: if quick { 10_000 } else { 100_000 },
            ipc_rtt: if quick { 2_000 } else { 20_000 },
            ipc_oneway: if quick { 50_000 } else { 300_000 },
            ipc_window_tasks: if quick { 20_000 } else { 200_000 },
        }
    }

    /// Items per amp run in chunks of `chunk` (ten times a plain run's tasks: chunks move them
    /// that much faster).
    fn chunked_items(&self, chunk: u64) -> u64 {
        self.tasks.saturating_mul(chunk.min(10))
    }

    /// Tasks per Pool run at `chunksize` (about the same time per run at every chunksize).
    fn mp_tasks_for(&self, chunksize: u64) -> u64 {
        self.mp_chunk1_tasks
            .saturating_mul(chunksize.max(1))
            .min(self.mp_tasks)
    }
}

/// Payload of the ipc-channel child's one-way mode: this prefix, then the count (u64 LE).
const STREAM_CMD: &[u8; 8] = b"STREAM\0\0";

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(name) = &args.ipc_child {
        return ipc_child(name.clone());
    }
    stop_ampds_on_signals()?;
    let r = run(&args);
    if r.is_err() && INTERRUPTED.load(Ordering::SeqCst) {
        // The failure is the interruption (ampd shutting down under the client): the signal
        // thread is stopping ampd and ends the process.
        loop {
            std::thread::park();
        }
    }
    r
}

fn run(args: &Args) -> Result<()> {
    let quick = std::env::var("AMP_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let plan = Plan::new(args, quick);
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => default_bin_dir()?,
    };
    println!("{}", header(&plan, quick));
    if let Some(b) = &args.compare_bin_dir {
        let mut plan_b = plan;
        plan_b.window = args.compare_window.unwrap_or(plan.window).max(1);
        plan_b.batch = args.compare_batch.unwrap_or(plan.batch).max(1);
        return compare(&plan, &plan_b, &bin_dir, b, &args.ring);
    }

    let mut one = Ampd::start(&bin_dir, "1", 1, plan.window, &args.ring)?;
    let mut two = Ampd::start(&bin_dir, "2", 2, plan.window, &args.ring)?;
    let mut c1 = Client::connect(&one.socket).context("attaching to ampd (1 worker)")?;
    let mut c2 = Client::connect(&two.socket).context("attaching to ampd (2 workers)")?;

    // Warm-up: page in the rings, let the routers see both workers.
    let warm = (plan.tasks / 10).clamp(1_000, 50_000);
    for drain in [Drain::Ticket, Drain::Any] {
        throughput(&mut c1, warm, plan.window, plan.batch, drain).context("warm-up (1 worker)")?;
        throughput(&mut c2, warm, plan.window, plan.batch, drain).context("warm-up (2 workers)")?;
    }

    let mut amp1 = Tput::default();
    let mut amp2 = Tput::default();
    let mut amp1_any = Tput::default();
    let mut chunksizes = args.chunksizes.clone();
    chunksizes.retain(|&c| c > 0);
    chunksizes.sort_unstable();
    chunksizes.dedup();
    let mut mp: Vec<MpPool> = chunksizes
        .iter()
        .map(|&c| MpPool {
            chunksize: c,
            tasks: plan.mp_tasks_for(c),
            rates: Series::default(),
            amp: Tput::default(),
        })
        .collect();
    let mut rtt1 = Rtt::new()?;
    let mut rtt2 = Rtt::new()?;
    let rtt_per_run = plan.rtt.div_ceil(plan.runs);
    let mut mp_note = None;
    if args.chunked_only {
        for run in 0..plan.runs {
            for m in mp.iter_mut().filter(|m| m.chunksize > 1) {
                m.amp.measure_chunked(&mut c1, &one, &plan, m.chunksize)?;
                eprintln!(
                    "# run {}: chunks of {}: {} ({})",
                    run + 1,
                    m.chunksize,
                    m.amp.rates.runs(),
                    m.amp.cpu.describe()
                );
            }
        }
        return Ok(());
    }
    for run in 0..plan.runs {
        eprintln!("# run {}/{}", run + 1, plan.runs);
        amp1.measure(&mut c1, &one, &plan, Drain::Ticket)?;
        amp2.measure(&mut c2, &two, &plan, Drain::Ticket)?;
        amp1_any.measure(&mut c1, &one, &plan, Drain::Any)?;
        rtt1.measure(&mut c1, &one, rtt_per_run)?;
        rtt2.measure(&mut c2, &two, rtt_per_run)?;
        for m in &mut mp {
            if m.chunksize > 1 {
                m.amp.measure_chunked(&mut c1, &one, &plan, m.chunksize)?;
            }
        }
        if let Some(script) = &args.mp_script {
            for m in &mut mp {
                if mp_note.is_some() {
                    break;
                }
                match mp_pool(&args.python, script, m.tasks, m.chunksize) {
                    Ok(r) => m.rates.0.push(r),
                    Err(e) => mp_note = Some(format!("{e:#}")),
                }
            }
        }
    }
    let ipc_res = ipc_baselines(&plan).context("ipc-channel baseline")?;

    drop((c1, c2));
    one.shutdown();
    two.shutdown();

    let report = Report {
        plan,
        amp1,
        amp2,
        amp1_any,
        mp,
        rtt1,
        rtt2,
        ipc: ipc_res,
    };
    print!("{}", report.table());
    if let Some(n) = mp_note {
        println!("note: Python baseline failed: {n}");
    } else if args.mp_script.is_none() {
        println!("note: no --mp-script given: the multiprocessing.Pool baseline was skipped");
    }
    println!("{}", report.summary_note());
    println!("{}", report.summary());
    Ok(())
}

/// `--compare-bin-dir`: plain throughput with one worker, build A (`a`) against build B (`b`),
/// run by run in alternating order so that the host's slow and fast phases hit both alike.
fn compare(plan: &Plan, plan_b: &Plan, a: &Path, b: &Path, ring: &str) -> Result<()> {
    let mut da = Ampd::start(a, "a", 1, plan.window, ring)?;
    let mut db = Ampd::start(b, "b", 1, plan_b.window, ring)?;
    let mut ca = Client::connect(&da.socket).context("attaching to ampd A")?;
    let mut cb = Client::connect(&db.socket).context("attaching to ampd B")?;
    let warm = (plan.tasks / 10).clamp(1_000, 50_000);
    throughput(&mut ca, warm, plan.window, plan.batch, Drain::Ticket).context("warm-up A")?;
    throughput(&mut cb, warm, plan_b.window, plan_b.batch, Drain::Ticket).context("warm-up B")?;
    let (mut rate_ratio, mut cpu_ratio) = (Series::default(), Series::default());
    println!("| pair | A tasks/s | B tasks/s | A ampd ns/task | B ampd ns/task |");
    println!("|---|---|---|---|---|");
    for run in 0..plan.runs {
        let (mut ta, mut tb) = (Tput::default(), Tput::default());
        if run % 2 == 0 {
            ta.measure(&mut ca, &da, plan, Drain::Ticket)?;
            tb.measure(&mut cb, &db, plan_b, Drain::Ticket)?;
        } else {
            tb.measure(&mut cb, &db, plan_b, Drain::Ticket)?;
            ta.measure(&mut ca, &da, plan, Drain::Ticket)?;
        }
        let ampd_ns = |t: &Tput| t.cpu.cpu[1].as_secs_f64() * 1e9 / t.cpu.tasks.max(1) as f64;
        let (ra, rb) = (ta.rates.0[0], tb.rates.0[0]);
        let (na, nb) = (ampd_ns(&ta), ampd_ns(&tb));
        println!(
            "| {} | {} | {} | {na:.0} | {nb:.0} |",
            run + 1,
            rate(ra),
            rate(rb)
        );
        rate_ratio.0.push(rb / ra);
        cpu_ratio.0.push(nb / na);
    }
    drop((ca, cb));
    da.shutdown();
    db.shutdown();
    println!(
        "B/A median over {} pairs: tasks/s {:.3}x, ampd CPU per task {:.3}x",
        plan.runs,
        rate_ratio.median().unwrap_or(f64::NAN),
        cpu_ratio.median().unwrap_or(f64::NAN)
    );
    Ok(())
}

/// `target/<profile>/` when run as `target/<profile>/examples/bench_tasks`.
fn default_bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let mut dir = exe
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("executable has no directory"))?;
    if dir.ends_with("examples") || dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

fn header(p: &Plan, quick: bool) -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "# bench-tasks{}: {cpus} CPUs ({model}), load average {}; {} tasks x {} runs per config, window {}, flush every {}, {} round trips",
        if quick { " (quick)" } else { "" },
        load.join(" "),
        p.tasks,
        p.runs,
        p.window,
        p.batch,
        p.rtt
    )
}

// ---------------------------------------------------------------------------------------------
// ampd under benchmark

/// A running ampd with its scratch directory; killed on drop if still running.
struct Ampd {
    child: Option<Child>,
    dir: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    replicas: usize,
    worker_pids: Vec<u32>,
}

impl Ampd {
    /// `label` tells apart the instances of one benchmark (scratch directory, shm prefix).
    fn start(
        bin_dir: &Path,
        label: &str,
        replicas: usize,
        window: u64,
        ring: &str,
    ) -> Result<Self> {
        let ampd = bin_dir.join("ampd");
        for b in ["ampd", "amp-echo"] {
            if !bin_dir.join(b).exists() {
                bail!("{} not found: run `cargo build --release --workspace --bins` first (scripts/bench-tasks does)", bin_dir.join(b).display());
            }
        }
        let dir =
            std::env::temp_dir().join(format!("amp-bench-tasks-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let socket = dir.join("ampd.sock");
        let config = dir.join("amp.toml");
        let text = format!(
            r#"[supervisor]
control_socket = {socket:?}
shm_prefix = "ampb{pid}x{label}"

[workers.echo]
command = "amp-echo"
replicas = {replicas}
kinds = ["echo"]
ring = {{ tasks = {ring:?}, completions = {ring:?}, max_record = "64KiB" }}
concurrency = {concurrency}

[kinds.echo]
queue_limit = 1000000
batch = 1024
"#,
            socket = socket.display().to_string(),
            pid = std::process::id(),
            concurrency = window.clamp(64, 65_536),
        );
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let log = dir.join("ampd.log");
        let child = Command::new(&ampd)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", ampd.display()))?;
        live(|l| l.push((child.id(), dir.clone())));
        let mut me = Self {
            child: Some(child),
            dir,
            socket,
            log,
            replicas,
            worker_pids: Vec::new(),
        };
        let status = me.wait_ready(Duration::from_secs(20))?;
        me.worker_pids = status.workers.iter().filter_map(|w| w.pid).collect();
        Ok(me)
    }

    fn status(&self) -> Result<StatusData> {
        let r = control::request(
            &self.socket,
            serde_json::json!({"cmd": "status"}),
            Duration::from_secs(5),
        )?;
        let data = r
            .data
            .ok_or_else(|| anyhow!("status answer without data: {:?}", r.error))?;
        Ok(serde_json::from_value(data)?)
    }

    /// Polls `status` until every replica of `echo` is ready.
    fn wait_ready(&mut self, timeout: Duration) -> Result<StatusData> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    bail!(
                        "ampd exited during startup ({st}); log:\n{}",
                        self.log_text()
                    );
                }
            }
            if let Ok(s) = self.status() {
                if s.workers.len() == self.replicas && s.workers.iter().all(|w| w.state == "ready")
                {
                    return Ok(s);
                }
                last = Some(s.workers);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "ampd's workers were not ready within {timeout:?}; last status {last:?}; log:\n{}",
            self.log_text()
        )
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// CPU time and voluntary context switches so far of the client (this process), ampd and
    /// its workers.
    fn cpu_snapshot(&self) -> Result<CpuSnap> {
        let sample = |pid: u32| -> Result<(Duration, u64)> {
            let p = i32::try_from(pid)?;
            let s =
                proc_sample(Pid::from_raw(p)).with_context(|| format!("sampling /proc/{pid}"))?;
            Ok((s.cpu_time, s.voluntary_ctxt_switches))
        };
        let (mut workers, mut worker_sleeps) = (Duration::ZERO, 0);
        for &w in &self.worker_pids {
            let (c, v) = sample(w)?;
            workers += c;
            worker_sleeps += v;
        }
        let (client, client_sleeps) = sample(std::process::id())?;
        let (ampd, ampd_sleeps) = sample(self.pid())?;
        Ok(CpuSnap {
            cpu: [client, ampd, workers],
            sleeps: [client_sleeps, ampd_sleeps, worker_sleeps],
            machine_busy: machine_busy()?,
            at: Instant::now(),
        })
    }

    fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Asks for a shutdown and waits for the exit; kills after 10 s.
    fn shutdown(&mut self) {
        let _ = control::request(
            &self.socket,
            serde_json::json!({"cmd": "shutdown"}),
            Duration::from_secs(5),
        );
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match c.try_wait() {
                    Ok(Some(st)) => {
                        if !st.success() {
                            eprintln!(
                                "warning: ampd ({} workers) exited with {st}; log:\n{}",
                                self.replicas,
                                self.log_text()
                            );
                        }
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        eprintln!("warning: ampd did not exit within 10 s; killing it");
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
    }
}

impl Drop for Ampd {
    fn drop(&mut self) {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return; // The signal thread stops ampd gracefully and removes the directory.
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        live(|l| l.retain(|(_, d)| *d != self.dir));
    }
}

/// The ampd processes (pid, scratch directory) this benchmark runs, for the interrupt handler.
static LIVE: Mutex<Vec<(u32, PathBuf)>> = Mutex::new(Vec::new());
/// Set by the signal thread before it stops ampd.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn live<R>(f: impl FnOnce(&mut Vec<(u32, PathBuf)>) -> R) -> R {
    f(&mut LIVE.lock().unwrap_or_else(PoisonError::into_inner))
}

/// On SIGINT, SIGTERM or SIGHUP: stop the ampd instances (SIGTERM: they stop their workers and
/// unlink their shared memory), remove their scratch directories, exit. Without this an
/// interrupted run would leave ampd running with nobody to stop it.
fn stop_ampds_on_signals() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("bench-signals".into())
        .spawn(move || {
            let Some(sig) = signals.forever().next() else {
                return;
            };
            INTERRUPTED.store(true, Ordering::SeqCst);
            let ampds = live(|l| l.clone());
            for (pid, _) in &ampds {
                if let Ok(p) = i32::try_from(*pid) {
                    let _ = signal_pid(Pid::from_raw(p), Signal::SIGTERM);
                }
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            for (pid, dir) in ampds {
                // Our child: it stays a zombie (state Z) until we exit.
                while Instant::now() < deadline
                    && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
                        !st.rsplit(')')
                            .next()
                            .is_some_and(|r| r.trim_start().starts_with('Z'))
                    })
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = std::fs::remove_dir_all(dir);
            }
            eprintln!("interrupted (signal {sig}): ampd stopped");
            std::process::exit(128 + sig);
        })?;
    Ok(())
}

/// CPU time and voluntary context switches (blocking waits) so far, indexed client, ampd,
/// workers (all replicas).
#[derive(Debug, Clone, Copy)]
struct CpuSnap {
    cpu: [Duration; 3],
    sleeps: [u64; 3],
    /// Busy time of all CPUs together (`/proc/stat`).
    machine_busy: Duration,
    at: Instant,
}

/// Busy CPU time of the whole machine so far: the `cpu` line of `/proc/stat` minus idle and
/// iowait (in `USER_HZ` = 100 ticks per second, the kernel's fixed unit there).
fn machine_busy() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat
        .lines()
        .next()
        .filter(|l| l.starts_with("cpu "))
        .ok_or_else(|| anyhow!("/proc/stat has no cpu line"))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal (guest time is included in user).
    let busy: u64 = f
        .iter()
        .take(8)
        .enumerate()
        .filter(|&(i, _)| i != 3 && i != 4)
        .map(|(_, v)| v)
        .sum();
    Ok(Duration::from_millis(busy * 10))
}

/// One throughput configuration: its rates and the CPU it used.
#[derive(Debug, Default)]
struct Tput {
    rates: Series,
    cpu: CpuUse,
}

impl Tput {
    fn measure(&mut self, c: &mut Client, d: &Ampd, p: &Plan, drain: Drain) -> Result<()> {
        let before = d.cpu_snapshot()?;
        let rate = throughput(c, p.tasks, p.window, p.batch, drain)
            .with_context(|| format!("throughput run ({} workers, {drain:?} drain)", d.replicas))?;
        self.cpu.add(&before, &d.cpu_snapshot()?, p.tasks);
        self.rates.0.push(rate);
        Ok(())
    }
}

impl Tput {
    /// One chunked run: `items` items in chunks of `chunk` (CPU counted per item).
    fn measure_chunked(&mut self, c: &mut Client, d: &Ampd, p: &Plan, chunk: u64) -> Result<()> {
        let items = p.chunked_items(chunk);
        let before = d.cpu_snapshot()?;
        let rate = throughput_chunked(c, items, chunk, p.chunk_window)
            .with_context(|| format!("chunked throughput run (chunks of {chunk})"))?;
        self.cpu.add(&before, &d.cpu_snapshot()?, items);
        self.rates.0.push(rate);
        Ok(())
    }
}

/// CPU time and blocking waits per task, summed over runs.
#[derive(Debug, Default, Clone, Copy)]
struct CpuUse {
    cpu: [Duration; 3],
    sleeps: [u64; 3],
    tasks: u64,
    machine_busy: Duration,
    wall: Duration,
}

impl CpuUse {
    fn add(&mut self, a: &CpuSnap, b: &CpuSnap, tasks: u64) {
        for i in 0..3 {
            self.cpu[i] += b.cpu[i].saturating_sub(a.cpu[i]);
            self.sleeps[i] += b.sleeps[i].saturating_sub(a.sleeps[i]);
        }
        self.tasks += tasks;
        self.machine_busy += b.machine_busy.saturating_sub(a.machine_busy);
        self.wall += b.at.saturating_duration_since(a.at);
    }

    /// Share of the machine's CPUs used by processes other than this benchmark's (others'
    /// builds on a shared machine skew every figure).
    fn others_share(&self) -> f64 {
        let ours: Duration = self.cpu.iter().sum();
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as f64;
        (self.machine_busy.saturating_sub(ours).as_secs_f64()
            / (self.wall.as_secs_f64() * cpus).max(1e-9))
        .min(1.0)
    }

    /// CPU ns per task: client / ampd / workers.
    fn describe(&self) -> String {
        let per = |d: Duration| d.as_secs_f64() * 1e9 / self.tasks.max(1) as f64;
        format!(
            "client {:.0} / ampd {:.0} / workers {:.0}",
            per(self.cpu[0]),
            per(self.cpu[1]),
            per(self.cpu[2])
        )
    }

    /// Blocking waits per task: client / ampd / workers.
    fn describe_sleeps(&self) -> String {
        let per = |v: u64| v as f64 / self.tasks.max(1) as f64;
        format!(
            "client {:.2} / ampd {:.2} / workers {:.2}",
            per(self.sleeps[0]),
            per(self.sleeps[1]),
            per(self.sleeps[2])
        )
    }
}

// ---------------------------------------------------------------------------------------------
// amp measurements

fn check(r: &TaskResult) -> Result<u64> {
    if r.status != ResultStatus::Ok {
        bail!(
            "task (ticket {}) ended {:?}: {}",
            r.ticket,
            r.status,
            r.text()
        );
    }
    let bytes: [u8; 8] = r
        .body
        .as_slice()
        .try_into()
        .map_err(|_| anyhow!("echo returned {} bytes, expected 8", r.body.len()))?;
    Ok(u64::from_le_bytes(bytes))
}

/// How the throughput client takes its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// In ticket order: `wait_for(oldest ticket)` (with a zero timeout while there is other
    /// work); results that arrive early wait in the client's ready set.
    Ticket,
    /// In arrival order: `try_result` until empty, `wait_result` when idle.
    Any,
}

/// Sends `n` no-op tasks keeping up to `window` outstanding, publishing every `batch`
/// submissions; returns tasks per second. Every result is checked.
fn throughput(c: &mut Client, n: u64, window: u64, batch: u64, drain: Drain) -> Result<f64> {
    let opts = Submit {
        kind: "echo",
        ..Submit::default()
    };
    let (mut sent, mut done, mut sum) = (0u64, 0u64, 0u64);
    let batch = batch.min(window);
    let mut pending: VecDeque<Ticket> =
        VecDeque::with_capacity(usize::try_from(window).unwrap_or(0));
    let start = Instant::now();
    while done < n {
        // Refill a whole batch at a time (hysteresis: never a one-task flush while draining).
        let want = batch.min(n - sent);
        let mut pushed = 0;
        if want > 0 && window - (sent - done) >= want {
            while pushed < want {
                match c.push(&opts, &sent.to_le_bytes()) {
                    Ok(t) => {
                        if drain == Drain::Ticket {
                            pending.push_back(t);
                        }
                        sent += 1;
                        pushed += 1;
                    }
                    Err(ClientError::Full) => break,
                    Err(e) => return Err(e.into()),
                }
            }
            c.flush()?;
        }
        let idle = |got: u64| got == 0 && pushed == 0;
        let mut got = 0;
        match drain {
            Drain::Any => {
                while let Some(r) = c.try_result()? {
                    sum = sum.wrapping_add(check(&r)?);
                    got += 1;
                }
                if idle(got) {
                    let r = c
                        .wait_result(Duration::from_secs(30))
                        .with_context(|| format!("waiting for results ({done} of {n} done)"))?;
                    sum = sum.wrapping_add(check(&r)?);
                    got += 1;
                }
            }
            Drain::Ticket => {
                while let Some(&t) = pending.front() {
                    match c.wait_for(t, Duration::ZERO) {
                        Ok(r) => {
                            pending.pop_front();
                            sum = sum.wrapping_add(check(&r)?);
                            got += 1;
                        }
                        Err(ClientError::Timeout(_)) => break,
                        Err(e) => return Err(e.into()),
                    }
                }
                if idle(got) {
                    let t = pending
                        .pop_front()
                        .ok_or_else(|| anyhow!("no task outstanding, {done} of {n} done"))?;
                    let r = c
                        .wait_for(t, Duration::from_secs(30))
                        .with_context(|| format!("waiting for results ({done} of {n} done)"))?;
                    sum = sum.wrapping_add(check(&r)?);
                    got += 1;
                }
            }
        }
        done += got;
    }
    let secs = start.elapsed().as_secs_f64();
    let expected = (u128::from(n) * u128::from(n.saturating_sub(1)) / 2) as u64;
    if sum != expected {
        bail!("payload checksum {sum} != {expected}: a result was lost, duplicated or altered");
    }
    Ok(n as f64 / secs)
}

/// Sends `n` no-op tasks in chunks of `chunk` items ([`Client::push_chunk`]: one task each for
/// ampd, the worker runs its handler per item), keeping about `window` items outstanding (at
/// least 4 chunks) and publishing an eighth of that at a time; results by ticket. Returns items
/// per second; every item's outcome is checked (Ok, its own 8 bytes echoed), and their sum.
fn throughput_chunked(c: &mut Client, n: u64, chunk: u64, window: u64) -> Result<f64> {
    let opts = Submit {
        kind: "echo",
        ..Submit::default()
    };
    let chunk = chunk.max(1);
    let window = (window / chunk).max(4);
    let batch = (window / 8).max(1);
    let (mut sent, mut done, mut sum) = (0u64, 0u64, 0u64);
    let mut pending: VecDeque<Ticket> = VecDeque::new();
    let mut items: Vec<[u8; 8]> = Vec::with_capacity(usize::try_from(chunk).unwrap_or(0));
    let start = Instant::now();
    while done < n {
        let mut pushed = 0;
        while pushed < batch && sent < n && (pending.len() as u64) < window {
            items.clear();
            items.extend((sent..(sent + chunk).min(n)).map(u64::to_le_bytes));
            match c.push_chunk(&opts, &items) {
                Ok(t) => {
                    pending.push_back(t);
                    sent += items.len() as u64;
                    pushed += 1;
                }
                Err(ClientError::Full) => break,
                Err(e) => return Err(e.into()),
            }
        }
        if pushed > 0 {
            c.flush()?;
        }
        let mut got = 0;
        while let Some(&t) = pending.front() {
            // Wait only when nothing else can be done (no room to submit, or all submitted).
            let wait = got == 0 && (pushed == 0 || sent == n);
            let timeout = if wait {
                Duration::from_secs(30)
            } else {
                Duration::ZERO
            };
            match c.wait_for(t, timeout) {
                Ok(r) => {
                    pending.pop_front();
                    for o in r.outcomes()? {
                        let amp_ipc::chunk::ItemOutcome::Ok(b) = o else {
                            bail!("chunk item failed: {o:?}");
                        };
                        let b: [u8; 8] = b
                            .try_into()
                            .map_err(|_| anyhow!("echo returned {} bytes, expected 8", b.len()))?;
                        sum = sum.wrapping_add(u64::from_le_bytes(b));
                        done += 1;
                    }
                    got += 1;
                }
                Err(ClientError::Timeout(_)) if !wait => break,
                Err(e) => {
                    return Err(anyhow::Error::from(e).context(format!(
                        "waiting for chunk results ({done} of {n} items done)"
                    )))
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let expected = (u128::from(n) * u128::from(n.saturating_sub(1)) / 2) as u64;
    if sum != expected {
        bail!("item checksum {sum} != {expected}: an item was lost, duplicated or altered");
    }
    Ok(n as f64 / secs)
}

/// Sequential round trips against one ampd.
#[derive(Debug)]
struct Rtt {
    /// Client-side submit-to-result times (ns).
    client: Histogram<u64>,
    /// ampd's own intake-to-result latency as reported in the result (ns).
    inner: Histogram<u64>,
    /// CPU and blocking waits over the timed round trips.
    cpu: CpuUse,
}

impl Rtt {
    fn new() -> Result<Self> {
        Ok(Self {
            client: hist()?,
            inner: hist()?,
            cpu: CpuUse::default(),
        })
    }

    /// `n` round trips, one task at a time (after a warm-up of n/10).
    fn measure(&mut self, c: &mut Client, d: &Ampd, n: usize) -> Result<()> {
        let warm = (n / 10).max(100) as u64;
        let mut before = None;
        for i in 0..warm + n as u64 {
            if i == warm {
                before = Some(d.cpu_snapshot()?);
            }
            let t0 = Instant::now();
            let t = c.submit("echo", &i.to_le_bytes())?;
            let r = c.wait_for(t, Duration::from_secs(10))?;
            let dt = t0.elapsed();
            if check(&r)? != i {
                bail!("round trip {i}: wrong payload echoed");
            }
            if i >= warm {
                self.client.saturating_record(ns(dt));
                self.inner.saturating_record(ns(r.latency));
            }
        }
        if let Some(b) = before {
            self.cpu.add(&b, &d.cpu_snapshot()?, n as u64);
        }
        Ok(())
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn hist() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000_000, 3)?)
}

// ---------------------------------------------------------------------------------------------
// Python baseline

/// One run of `bench_mp_pool.py`; returns tasks per second.
fn mp_pool(python: &str, script: &Path, tasks: u64, chunksize: u64) -> Result<f64> {
    let out = Command::new(python)
        .arg(script)
        .args([
            "--tasks",
            &tasks.to_string(),
            "--chunksize",
            &chunksize.to_string(),
            "--processes",
            "2",
        ])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {python} {}", script.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}{}",
            script.display(),
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("tasks_per_s="))
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| {
            anyhow!(
                "no tasks_per_s= in the output of {}: {text:?}",
                script.display()
            )
        })
}

// ---------------------------------------------------------------------------------------------
// ipc-channel baseline

/// What the child sends through the one-shot server: the sender of parent → child and the
/// receiver of child → parent.
type Bootstrap = (IpcBytesSender, IpcBytesReceiver);

/// The child: echoes every message; on `STREAM_CMD` + count, sends that many 8-byte messages;
/// exits on an empty message.
fn ipc_child(name: String) -> Result<()> {
    let (to_child_tx, from_parent) = ipc::bytes_channel()?;
    let (to_parent, to_parent_rx) = ipc::bytes_channel()?;
    IpcSender::<Bootstrap>::connect(name)?.send((to_child_tx, to_parent_rx))?;
    loop {
        let msg = from_parent.recv()?;
        if msg.is_empty() {
            return Ok(());
        }
        if msg.len() == 16 && msg[..8] == STREAM_CMD[..] {
            let count = u64::from_le_bytes(msg[8..16].try_into()?);
            for i in 0..count {
                to_parent.send(&i.to_le_bytes())?;
            }
        } else {
            to_parent.send(&msg)?;
        }
    }
}

/// ipc-channel figures.
#[derive(Debug)]
struct IpcRes {
    rtt: Histogram<u64>,
    oneway: f64,
    windowed: f64,
}

fn ipc_baselines(p: &Plan) -> Result<IpcRes> {
    let (server, name) = IpcOneShotServer::<Bootstrap>::new()?;
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("--ipc-child")
        .arg(name)
        .stdin(Stdio::null())
        .spawn()?;
    let result = (|| -> Result<IpcRes> {
        let (_, (to_child, from_child)) = server.accept()?;
        // Round trips, one 8-byte message at a time.
        let mut h = hist()?;
        let warm = (p.ipc_rtt / 10).max(100);
        for i in 0..(warm + p.ipc_rtt) as u64 {
            let t0 = Instant::now();
            to_child.send(&i.to_le_bytes())?;
            let back = from_child.recv()?;
            let dt = t0.elapsed();
            if back != i.to_le_bytes() {
                bail!("ipc-channel echo {i}: wrong reply");
            }
            if i >= warm as u64 {
                h.saturating_record(ns(dt));
            }
        }
        // One-way: the child streams 8-byte messages.
        let mut cmd = STREAM_CMD.to_vec();
        cmd.extend_from_slice(&p.ipc_oneway.to_le_bytes());
        let t0 = Instant::now();
        to_child.send(&cmd)?;
        for i in 0..p.ipc_oneway {
            if from_child.recv()? != i.to_le_bytes() {
                bail!("ipc-channel stream: message {i} is wrong");
            }
        }
        let oneway = p.ipc_oneway as f64 / t0.elapsed().as_secs_f64();
        // Windowed echo: one message per task, 64 outstanding (the socket buffers hold them).
        let window = 64u64.min(p.ipc_window_tasks);
        let t0 = Instant::now();
        let mut sent = 0u64;
        while sent < window {
            to_child.send(&sent.to_le_bytes())?;
            sent += 1;
        }
        for i in 0..p.ipc_window_tasks {
            if from_child.recv()? != i.to_le_bytes() {
                bail!("ipc-channel windowed echo: reply {i} is wrong");
            }
            if sent < p.ipc_window_tasks {
                to_child.send(&sent.to_le_bytes())?;
                sent += 1;
            }
        }
        let windowed = p.ipc_window_tasks as f64 / t0.elapsed().as_secs_f64();
        to_child.send(&[])?;
        Ok(IpcRes {
            rtt: h,
            oneway,
            windowed,
        })
    })();
    if result.is_err() {
        let _ = child.kill();
    }
    let st = child.wait()?;
    let res = result?;
    if !st.success() {
        bail!("ipc-channel child exited with {st}");
    }
    Ok(res)
}

// ---------------------------------------------------------------------------------------------
// Report

/// Per-run rates of one measurement.
#[derive(Debug, Default)]
struct Series(Vec<f64>);

impl Series {
    fn median(&self) -> Option<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(v[n / 2]),
            _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
        }
    }

    fn runs(&self) -> String {
        self.0
            .iter()
            .map(|&r| rate(r))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else {
        format!("{:.0} k/s", r / 1e3)
    }
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e3
}

fn lat(h: &Histogram<u64>) -> String {
    format!("p50 {:.1} µs / p99 {:.1} µs", us(h, 0.5), us(h, 0.99))
}

/// ampd's own latency figure, or why there is none (it reports 0 when it does not know the
/// intake time any more).
fn inner_lat(h: &Histogram<u64>) -> String {
    if h.max() <= 1 {
        "n/a (ampd reported latency 0)".into()
    } else {
        lat(h)
    }
}

/// One `multiprocessing.Pool` configuration and its runs, with amp chunked alike.
#[derive(Debug)]
struct MpPool {
    chunksize: u64,
    tasks: u64,
    rates: Series,
    /// amp, 1 worker, chunks of `chunksize` items (not measured at chunksize 1: that is the
    /// plain run, `Report::amp1`).
    amp: Tput,
}

#[derive(Debug)]
struct Report {
    plan: Plan,
    amp1: Tput,
    amp2: Tput,
    amp1_any: Tput,
    /// By chunksize, ascending.
    mp: Vec<MpPool>,
    rtt1: Rtt,
    rtt2: Rtt,
    ipc: IpcRes,
}

impl Report {
    fn table(&self) -> String {
        let p = &self.plan;
        let med = |s: &Series| s.median().map_or_else(|| "n/a".into(), rate);
        let tput = |label: String, t: &Series| [label, med(t), t.runs()];
        let one = |label: &str, value: String| [label.to_owned(), value, String::new()];
        let rtt = |label: &str, r: &Rtt| {
            [
                label.to_owned(),
                lat(&r.client),
                format!("{} round trips", r.client.len()),
            ]
        };
        let mut rows: Vec<[String; 3]> = vec![
            tput(
                format!(
                    "amp, 1 echo worker: no-op tasks/s ({} tasks, window {}, flush every {}, results by ticket)",
                    p.tasks, p.window, p.batch
                ),
                &self.amp1.rates,
            ),
            tput("amp, 2 echo workers: no-op tasks/s (same)".into(), &self.amp2.rates),
            tput("amp, 1 echo worker, results by try_result/wait_result".into(), &self.amp1_any.rates),
        ];
        for m in self.mp.iter().filter(|m| m.chunksize > 1) {
            rows.push(tput(
                format!(
                    "amp, 1 echo worker, chunks of {} items (Client::push_chunk): no-op tasks/s ({} tasks)",
                    m.chunksize,
                    p.chunked_items(m.chunksize)
                ),
                &m.amp.rates,
            ));
        }
        for m in &self.mp {
            rows.push(tput(
                format!(
                    "multiprocessing.Pool(2).imap_unordered, chunksize {}: tasks/s ({} tasks)",
                    m.chunksize, m.tasks
                ),
                &m.rates,
            ));
        }
        rows.extend([
            one(
                &format!(
                    "ipc-channel echo, 1 message per task, 64 outstanding: tasks/s ({} tasks)",
                    p.ipc_window_tasks
                ),
                rate(self.ipc.windowed),
            ),
            one(
                &format!("ipc-channel one-way 8 B messages/s ({})", p.ipc_oneway),
                rate(self.ipc.oneway),
            ),
            rtt(
                "amp round trip, 1 worker, one task at a time (client clock)",
                &self.rtt1,
            ),
            one(
                "  of which inside ampd (intake to result)",
                inner_lat(&self.rtt1.inner),
            ),
            one(
                "  blocking waits per round trip",
                self.rtt1.cpu.describe_sleeps(),
            ),
            rtt("amp round trip, 2 workers", &self.rtt2),
            one("  of which inside ampd", inner_lat(&self.rtt2.inner)),
            one(
                "  blocking waits per round trip",
                self.rtt2.cpu.describe_sleeps(),
            ),
            one(
                &format!("ipc-channel round trip, 8 B echo ({})", p.ipc_rtt),
                lat(&self.ipc.rtt),
            ),
            one(
                "CPU ns per task, 1 worker, by ticket",
                self.amp1.cpu.describe(),
            ),
            one(
                "CPU ns per task, 2 workers, by ticket",
                self.amp2.cpu.describe(),
            ),
            one(
                "CPU ns per task, 1 worker, by try_result",
                self.amp1_any.cpu.describe(),
            ),
            one(
                "blocking waits per task, 1 worker, by ticket",
                self.amp1.cpu.describe_sleeps(),
            ),
        ]);
        for m in self.mp.iter().filter(|m| m.chunksize > 1) {
            rows.push(one(
                &format!("CPU ns per task, 1 worker, chunks of {}", m.chunksize),
                m.amp.cpu.describe(),
            ));
        }
        rows.extend([one(
            "CPU taken by other processes during the amp throughput runs",
            format!(
                "{:.0}% / {:.0}% / {:.0}% of the machine",
                self.amp1.cpu.others_share() * 100.0,
                self.amp2.cpu.others_share() * 100.0,
                self.amp1_any.cpu.others_share() * 100.0
            ),
        )]);
        for (chunk, ratio) in self.vs_pool() {
            rows.push(one(
                &format!(
                    "amp 1 worker / Pool, both in chunks of {chunk} (medians{})",
                    if chunk == 1 { "; amp plain tasks" } else { "" }
                ),
                format!("{ratio:.2}x"),
            ));
        }
        if let (Some(a), Some((c, r))) = (self.amp1.rates.median(), self.best_mp()) {
            rows.push(one(
                &format!("amp 1 worker, plain tasks / fastest Pool (chunksize {c})"),
                format!("{:.2}x", a / r),
            ));
        }
        let mut s = String::new();
        let _ = writeln!(s, "| measurement | median | runs |");
        let _ = writeln!(s, "|---|---|---|");
        for [a, b, c] in rows {
            let _ = writeln!(s, "| {a} | {b} | {c} |");
        }
        s
    }

    /// amp ÷ Pool at each chunksize measured, both chunking alike (amp's plain tasks at 1):
    /// (chunksize, ratio of medians).
    fn vs_pool(&self) -> Vec<(u64, f64)> {
        self.mp
            .iter()
            .filter_map(|m| {
                let amp = if m.chunksize == 1 {
                    self.amp1.rates.median()
                } else {
                    m.amp.rates.median()
                };
                Some((m.chunksize, amp? / m.rates.median()?))
            })
            .collect()
    }

    /// The fastest Pool configuration measured: (chunksize, median tasks/s).
    fn best_mp(&self) -> Option<(u64, f64)> {
        self.mp
            .iter()
            .filter_map(|m| m.rates.median().map(|r| (m.chunksize, r)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// The line before the last: which chunksize gave the summary's `vs_mp_pool`.
    fn summary_note(&self) -> String {
        match self.lowest_vs_pool() {
            Some((c, _)) => format!(
                "vs_mp_pool is the lowest amp / Pool ratio, chunked alike: at mp_pool_chunksize={c}"
            ),
            None => "vs_mp_pool: no Pool rate measured".to_owned(),
        }
    }

    /// The lowest amp ÷ Pool ratio over the chunksizes measured: (chunksize, ratio).
    fn lowest_vs_pool(&self) -> Option<(u64, f64)> {
        self.vs_pool()
            .into_iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// The last line, in the issue's format: `tasks_per_s` is amp's plain tasks (one worker);
    /// `vs_mp_pool` is the lowest amp ÷ Pool ratio over the chunksizes measured, both chunking
    /// alike (amp's plain tasks against chunksize 1); [`summary_note`](Self::summary_note)
    /// names that chunksize.
    fn summary(&self) -> String {
        let tps = self.amp1.rates.median().unwrap_or(0.0);
        let vs = self
            .lowest_vs_pool()
            .map_or_else(|| "n/a".to_owned(), |(_, r)| format!("{r:.2}"));
        format!(
            "tasks_per_s={tps:.0} vs_mp_pool={vs}x rtt_p50_us={:.1} rtt_p99_us={:.1}",
            us(&self.rtt1.client, 0.5),
            us(&self.rtt1.client, 0.99)
        )
    }
}
