//! `ampctl`: inspect and steer a running ampd over its control socket.
//!
//! Exit codes: 0 ok, 1 the request failed, 2 usage error, 3 ampd not reachable.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use amp_supervisor::control::client::{self, ClientError};
use amp_supervisor::control::proto::{Response, StatusData};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ampctl", version, about = "Inspect and steer a running ampd")]
struct Cli {
    /// Control socket of the ampd to talk to.
    #[arg(long, env = "AMP_SOCKET", global = true)]
    socket: Option<PathBuf>,
    /// Print the raw JSON response (for scripts).
    #[arg(long, global = true)]
    json: bool,
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
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let socket = cli.socket.clone().unwrap_or_else(amp_supervisor::config::default_control_socket);
    let req = match cli.cmd {
        Cmd::Status => serde_json::json!({"cmd": "status"}),
        Cmd::Shutdown => serde_json::json!({"cmd": "shutdown"}),
    };
    let timeout = Duration::from_secs_f64(cli.timeout.max(0.1));
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

fn print_response(cli: &Cli, resp: &Response) -> ExitCode {
    if cli.json {
        println!("{}", serde_json::to_string_pretty(resp).unwrap_or_default());
    } else if let Some(err) = &resp.error {
        eprintln!("ampctl: {err}");
    } else {
        match (&cli.cmd, &resp.data) {
            (Cmd::Status, Some(d)) => match serde_json::from_value::<StatusData>(d.clone()) {
                Ok(s) => print!("{}", amp_supervisor::control::render::status_table(&s)),
                Err(e) => eprintln!("ampctl: unexpected status payload: {e}"),
            },
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
