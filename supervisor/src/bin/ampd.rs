//! `ampd`: the amp supervisor daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "ampd",
    version,
    about = "amp supervisor: spawns, sequences, feeds and restarts workers"
)]
struct Cli {
    /// The config file.
    #[arg(long, short, required_unless_present = "guard")]
    config: Option<PathBuf>,
    /// Log format (overrides the config's `log_format`).
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Only check the config and exit (0 if valid).
    #[arg(long)]
    check: bool,
    #[arg(long, hide = true)]
    guard: bool,
    #[arg(long, hide = true)]
    shm_prefix: Option<String>,
    #[arg(long, hide = true)]
    guard_socket: Option<PathBuf>,
    #[arg(long, hide = true)]
    guard_pid: Option<u32>,
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.guard {
        let code = amp_supervisor::daemon::guard::guard_main(
            cli.shm_prefix.as_deref().unwrap_or("amp"),
            cli.guard_socket
                .as_deref()
                .unwrap_or(std::path::Path::new("/nonexistent")),
            cli.guard_pid.unwrap_or(0),
        );
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let Some(path) = cli.config else {
        return ExitCode::from(2);
    };
    let cfg = match amp_supervisor::config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ampd: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!("{}: ok ({} workers)", path.display(), cfg.workers.len());
        return ExitCode::SUCCESS;
    }
    let json = match cli.log_format.as_deref() {
        Some(f) => f == "json",
        None => cfg.supervisor.log_format == amp_supervisor::config::LogFormat::Json,
    };
    init_logging(json);
    match amp_supervisor::daemon::run(cfg) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!(
                "ampd: shutdown was not clean (a worker had to be killed, or startup failed)"
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("ampd: {e:#}");
            ExitCode::from(1)
        }
    }
}
