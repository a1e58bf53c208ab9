//! `ampctl`: inspect and steer a running ampd over its control socket.
//!
//! Exit codes: 0 ok, 1 the request failed, 2 usage error, 3 ampd not reachable.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use amp_supervisor::control::client::{self, ClientError};
use amp_supervisor::control::proto::{Response, StatusData};
use amp_supervisor::control::render;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ampctl", version, about = "Inspect and steer a running ampd")]
struct Cli {
    /// Control socket of the ampd to talk to.
    #[arg(long, env = "AMP_SOCKET", global = true)]
    socket: Option<PathBuf>,
    /// Print the raw JSON response (for scripts). Give it before the subcommand
    /// (`ampctl --json status`), or use `--output json` anywhere.
    #[arg(long)]
    json: bool,
    /// Output format.
    #[arg(long, global = true, value_parser = ["text", "json"], default_value = "text")]
    output: String,
    /// Seconds to wait for ampd's answer.
    #[arg(long, default_value_t = 10.0, global = true)]
    timeout: f64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Every worker: state, pid, restarts, last exit, ready time.
    Status,
    /// Stop every worker in reverse dependency order and exit ampd.
    Shutdown,
    /// Start a stopped or failed worker (waits for its dependencies).
    Start {
        /// Worker or unit name.
        name: String,
    },
    /// Stop a worker.
    Stop {
        /// Worker or unit name.
        name: String,
        /// Also stop the workers that depend on it.
        #[arg(long)]
        with_dependents: bool,
    },
    /// Restart a worker.
    Restart {
        /// Worker or unit name.
        name: String,
    },
    /// Stop feeding a worker, let its in-flight tasks finish, then stop it.
    Drain {
        /// Worker or unit name.
        name: String,
    },
    /// Stop taking new submissions.
    Pause,
    /// Take submissions again.
    Resume,
    /// A worker's recent output.
    Logs {
        /// Unit name.
        name: String,
        /// Lines to show.
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: usize,
        /// Keep following new lines.
        #[arg(short, long)]
        follow: bool,
    },
    /// Lifecycle and control events.
    Events {
        /// Keep following new events.
        #[arg(short, long)]
        follow: bool,
    },
    /// Workers with task counters, CPU and memory.
    Workers,
    /// Prometheus text exposition of every metric.
    Metrics,
    /// The adaptive controller: state and decisions with their evidence.
    Tune {
        #[command(subcommand)]
        op: Option<TuneOp>,
    },
    /// Fire the triggers bound to an external event.
    Emit {
        /// Event name.
        event: String,
        /// Payload for the submitted tasks.
        payload: Option<String>,
    },
    /// Result cache of deterministic kinds.
    Cache {
        #[command(subcommand)]
        op: CacheOp,
    },
    /// Pipelines in progress, triggers and loop counters.
    Pipelines,
    /// Set a worker's number of replicas.
    Scale {
        /// Worker name.
        name: String,
        /// Replicas wanted.
        replicas: u32,
    },
    /// Re-read the config: start added workers, stop removed ones after a drain, restart
    /// changed ones; the rest keep running untouched.
    Reload,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Queue depths per kind and class.
    Queues,
    /// Tasks in flight per worker.
    Tasks,
    /// Per kind × worker: throughput, latency percentiles, errors.
    Stats,
    /// Live view: workers, queues with sparklines, events; drain/restart from the keyboard.
    Top,
    /// Show or switch a kind's routing policy.
    Route {
        #[command(subcommand)]
        op: RouteOp,
    },
    /// The dead-letter queue.
    Dlq {
        #[command(subcommand)]
        op: DlqOp,
    },
    /// Submit a task.
    Submit {
        /// Task kind.
        #[arg(long)]
        kind: String,
        /// Priority class (default: the last `[[class]]` of the config, `batch` by default).
        #[arg(long)]
        priority: Option<String>,
        /// Read the payload from this file (binary-safe).
        #[arg(long, conflicts_with = "json")]
        payload_file: Option<PathBuf>,
        /// The payload as JSON text (sent as its UTF-8 bytes).
        #[arg(long)]
        json: Option<String>,
        /// Wait for the task's result and print it.
        #[arg(long)]
        wait: bool,
        /// Deadline in milliseconds after intake.
        #[arg(long)]
        deadline_ms: Option<u64>,
        /// Idempotency key.
        #[arg(long)]
        key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum RouteOp {
    /// Policy and router state of one kind (or all).
    Get {
        /// Kind name.
        kind: Option<String>,
    },
    /// Switch a kind's policy: round_robin, least_loaded, peak_ewma, learned.
    Set {
        /// Kind name.
        kind: String,
        /// New policy.
        policy: String,
    },
}

#[derive(Debug, Subcommand)]
enum TuneOp {
    /// Apply a decision proposed in advise mode.
    Apply {
        /// Decision id.
        id: u64,
    },
    /// Set a kind's mode: off, advise or auto.
    Mode {
        /// Kind name.
        kind: String,
        /// off, advise or auto.
        mode: String,
    },
}

#[derive(Debug, Subcommand)]
enum CacheOp {
    /// Hit/miss/evict counters.
    Stats,
    /// Empty every cache.
    Clear,
}

#[derive(Debug, Subcommand)]
enum DlqOp {
    /// List dead-lettered tasks.
    List,
    /// Re-run one dead-lettered task (or all).
    Retry {
        /// Task id.
        id: Option<u64>,
    },
    /// Drop one dead-lettered task (or all).
    Purge {
        /// Task id.
        id: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(amp_supervisor::config::default_control_socket);
    let req = match &cli.cmd {
        Cmd::Top => {
            return match amp_supervisor::tui::run(&socket) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ampctl: {e}");
                    ExitCode::from(1)
                }
            };
        }
        Cmd::Status => serde_json::json!({"cmd": "status"}),
        Cmd::Shutdown => serde_json::json!({"cmd": "shutdown"}),
        Cmd::Start { name } => serde_json::json!({"cmd": "start", "name": name}),
        Cmd::Stop {
            name,
            with_dependents,
        } => {
            serde_json::json!({"cmd": "stop", "name": name, "with_dependents": with_dependents})
        }
        Cmd::Restart { name } => serde_json::json!({"cmd": "restart", "name": name}),
        Cmd::Drain { name } => serde_json::json!({"cmd": "drain", "name": name}),
        Cmd::Pause => serde_json::json!({"cmd": "pause"}),
        Cmd::Resume => serde_json::json!({"cmd": "resume"}),
        Cmd::Logs {
            name,
            lines,
            follow,
        } => {
            serde_json::json!({"cmd": "logs", "name": name, "lines": lines, "follow": follow})
        }
        Cmd::Events { follow } => serde_json::json!({"cmd": "events", "follow": follow}),
        Cmd::Workers => serde_json::json!({"cmd": "workers"}),
        Cmd::Metrics => serde_json::json!({"cmd": "metrics"}),
        Cmd::Tune { op: None } => serde_json::json!({"cmd": "tune", "op": "show"}),
        Cmd::Tune {
            op: Some(TuneOp::Apply { id }),
        } => serde_json::json!({"cmd": "tune", "op": "apply", "id": id}),
        Cmd::Tune {
            op: Some(TuneOp::Mode { kind, mode }),
        } => {
            serde_json::json!({"cmd": "tune", "op": "mode", "kind": kind, "mode": mode})
        }
        Cmd::Emit { event, payload } => {
            serde_json::json!({"cmd": "emit", "event": event, "payload": payload})
        }
        Cmd::Cache { op: CacheOp::Stats } => serde_json::json!({"cmd": "cache_stats"}),
        Cmd::Cache { op: CacheOp::Clear } => serde_json::json!({"cmd": "cache_clear"}),
        Cmd::Pipelines => serde_json::json!({"cmd": "pipelines"}),
        Cmd::Scale { name, replicas } => {
            serde_json::json!({"cmd": "scale", "name": name, "replicas": replicas})
        }
        Cmd::Reload => serde_json::json!({"cmd": "reload"}),
        Cmd::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "ampctl",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Cmd::Queues => serde_json::json!({"cmd": "queues"}),
        Cmd::Tasks => serde_json::json!({"cmd": "tasks"}),
        Cmd::Stats => serde_json::json!({"cmd": "stats"}),
        Cmd::Route {
            op: RouteOp::Get { kind },
        } => serde_json::json!({"cmd": "route_get", "kind": kind}),
        Cmd::Route {
            op: RouteOp::Set { kind, policy },
        } => {
            serde_json::json!({"cmd": "route_set", "kind": kind, "policy": policy})
        }
        Cmd::Dlq { op: DlqOp::List } => serde_json::json!({"cmd": "dlq_list"}),
        Cmd::Dlq {
            op: DlqOp::Retry { id },
        } => serde_json::json!({"cmd": "dlq_retry", "id": id}),
        Cmd::Dlq {
            op: DlqOp::Purge { id },
        } => serde_json::json!({"cmd": "dlq_purge", "id": id}),
        Cmd::Submit {
            kind,
            priority,
            payload_file,
            json,
            wait,
            deadline_ms,
            key,
        } => {
            let mut r = serde_json::json!({"cmd": "submit", "kind": kind, "wait": wait});
            if let Some(p) = priority {
                r["priority"] = p.clone().into();
            }
            if let Some(ms) = deadline_ms {
                r["timeout_ms"] = (*ms).into();
            }
            if let Some(k) = key {
                r["idempotency_key"] = k.clone().into();
            }
            if let Some(j) = json {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(j) {
                    eprintln!("ampctl: --json is not valid JSON: {e}");
                    return ExitCode::from(2);
                }
                r["payload"] = j.clone().into();
            }
            if let Some(f) = payload_file {
                match std::fs::read(f) {
                    Ok(bytes) => {
                        use base64::Engine as _;
                        r["payload_b64"] = base64::engine::general_purpose::STANDARD
                            .encode(bytes)
                            .into();
                    }
                    Err(e) => {
                        eprintln!("ampctl: cannot read {}: {e}", f.display());
                        return ExitCode::from(2);
                    }
                }
            }
            r
        }
    };
    let mut timeout = Duration::from_secs_f64(cli.timeout.max(0.1));
    if matches!(cli.cmd, Cmd::Submit { wait: true, .. }) {
        timeout = timeout.max(Duration::from_secs(300));
    }
    let follow = matches!(
        cli.cmd,
        Cmd::Logs { follow: true, .. } | Cmd::Events { follow: true }
    );
    if follow {
        return stream(&cli, &socket, req, timeout);
    }
    match client::request(&socket, req, timeout) {
        Ok(resp) => print_response(&cli, &resp),
        Err(e @ ClientError::Unreachable { .. }) => {
            eprintln!("ampctl: {e}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("ampctl: {e}");
            ExitCode::from(1)
        }
    }
}

/// Streams a following request until ampd closes the connection (or Ctrl-C).
fn stream(
    cli: &Cli,
    socket: &std::path::Path,
    req: serde_json::Value,
    timeout: Duration,
) -> ExitCode {
    let mut c = match client::Client::connect(socket, timeout) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ampctl: {e}");
            return ExitCode::from(3);
        }
    };
    let first = match c.request(req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ampctl: {e}");
            return ExitCode::from(1);
        }
    };
    let code = print_response(cli, &first);
    if !first.ok {
        return code;
    }
    if let Err(e) = c.set_read_timeout(None) {
        eprintln!("ampctl: {e}");
        return ExitCode::from(1);
    }
    loop {
        match c.read_response() {
            Ok(r) => {
                if cli.json || cli.output == "json" {
                    println!("{}", serde_json::to_string(&r).unwrap_or_default());
                } else if let Some(d) = &r.data {
                    if let Some(line) = d.get("line").and_then(|l| l.as_str()) {
                        println!("{line}");
                    } else if let Some(ev) = d.get("event") {
                        println!("{}", render::event_line(ev));
                    }
                }
            }
            Err(_) => return ExitCode::SUCCESS,
        }
    }
}

fn print_response(cli: &Cli, resp: &Response) -> ExitCode {
    if cli.json || cli.output == "json" {
        println!("{}", serde_json::to_string_pretty(resp).unwrap_or_default());
    } else if let Some(err) = &resp.error {
        eprintln!("ampctl: {err}");
    } else {
        match (&cli.cmd, &resp.data) {
            (Cmd::Status, Some(d)) => match serde_json::from_value::<StatusData>(d.clone()) {
                Ok(s) => print!("{}", render::status_table(&s)),
                Err(e) => eprintln!("ampctl: unexpected status payload: {e}"),
            },
            (Cmd::Dlq { op: DlqOp::List }, Some(d)) => {
                let entries = d
                    .get("entries")
                    .and_then(|e| e.as_array())
                    .cloned()
                    .unwrap_or_default();
                println!("{:>8}  {:<12} {:>8}  REASON", "TASK", "KIND", "ATTEMPTS");
                for e in entries {
                    // Values as strings: `serde_json::Value`'s Display ignores the width.
                    println!(
                        "{:>8}  {:<12} {:>8}  {}",
                        e["id"].to_string(),
                        e["kind"].as_str().unwrap_or("?"),
                        e["attempts"].to_string(),
                        e["reason"].as_str().unwrap_or("")
                    );
                }
            }
            (Cmd::Logs { .. }, Some(d)) => {
                for l in d
                    .get("lines")
                    .and_then(|l| l.as_array())
                    .into_iter()
                    .flatten()
                {
                    println!("{}", l.as_str().unwrap_or(""));
                }
            }
            (Cmd::Events { .. }, Some(d)) => {
                for ev in d
                    .get("events")
                    .and_then(|l| l.as_array())
                    .into_iter()
                    .flatten()
                {
                    println!("{}", render::event_line(ev));
                }
            }
            (Cmd::Stats, Some(d)) => print!("{}", render::stats_table(d)),
            (Cmd::Metrics, Some(d)) => print!("{}", d["text"].as_str().unwrap_or("")),
            (Cmd::Workers, Some(d)) => print!("{}", render::workers_table(d)),
            (
                Cmd::Route { .. }
                | Cmd::Tune { .. }
                | Cmd::Dlq { .. }
                | Cmd::Queues
                | Cmd::Tasks
                | Cmd::Cache { .. }
                | Cmd::Pipelines,
                Some(d),
            ) => {
                println!("{}", serde_json::to_string_pretty(d).unwrap_or_default());
            }
            (Cmd::Submit { .. }, Some(d)) => {
                let status = d.get("status").and_then(|s| s.as_str()).unwrap_or("?");
                let id = d
                    .get("task_id")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0);
                match d.get("result").and_then(|r| r.as_str()) {
                    Some(r) => println!("task {id} {status}: {r}"),
                    None => println!("task {id} {status}"),
                }
                if status != "ok" && status != "queued" {
                    return ExitCode::from(1);
                }
            }
            (_, Some(d)) => println!("{d}"),
            (_, None) => println!("ok"),
        }
    }
    if resp.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
