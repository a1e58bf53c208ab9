//! `amp-flaky`: a worker that misbehaves on command, for fault tests.
//!
//! Flags (process level): `--exit-at-start CODE` (exit before the handshake), `--no-ready`
//! (connect but never report ready), `--ready-delay-ms N`, `--ignore-sigterm`,
//! `--spawn-grandchild` (start `sleep 1000` as a child first), `--crash-after N` (exit 3 after N
//! tasks), `--protocol N` (announce another protocol version), `--exit-after-ready CODE`, `--hang` (after
//! ready, never answer and ignore Shutdown).
//!
//! Payload commands (task level): `ok` → Ok(payload); `fail` → non-retryable error; `retry` →
//! retryable error; `crash` → exit 3; `crash1` → exit 3 on the first attempt, else as `ok`;
//! `abort` → SIGABRT; `hang` → never answer; `sleep:MS`; `loop` → a
//! loopback with the same payload (for loop-limit tests); `fanout:N:KIND` → emits N subtasks
//! `piece-i` of KIND and answers `parent`.
use std::process::ExitCode;
use std::time::Duration;

use amp_ipc::{Outcome, Worker};

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn main() -> ExitCode {
    amp_worker::init_tracing();
    let args: Vec<String> = std::env::args().collect();
    let has = |f: &str| args.iter().any(|a| a == f);
    if let Some(code) = arg::<u8>(&args, "--exit-at-start") {
        eprintln!("amp-flaky: exiting at start with code {code} as asked");
        return ExitCode::from(code);
    }
    if has("--ignore-sigterm") {
        if let Err(e) = signal_ignore_term() {
            eprintln!("amp-flaky: cannot ignore SIGTERM: {e}");
        }
    }
    if has("--spawn-grandchild") {
        match std::process::Command::new("sleep").arg("1000").spawn() {
            Ok(c) => eprintln!("amp-flaky: grandchild pid {}", c.id()),
            Err(e) => eprintln!("amp-flaky: cannot spawn grandchild: {e}"),
        }
    }
    let protocol = arg::<u32>(&args, "--protocol").unwrap_or(amp_ipc::proto::PROTOCOL_VERSION);
    let mut w = match Worker::from_env_with_protocol(protocol) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if has("--no-ready") {
        while !w.shutdown_requested() {
            std::thread::sleep(Duration::from_millis(20));
        }
        return ExitCode::SUCCESS;
    }
    if let Some(ms) = arg::<u64>(&args, "--ready-delay-ms") {
        std::thread::sleep(Duration::from_millis(ms));
    }
    if let Err(e) = w.ready() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    if has("--hang") {
        eprintln!("amp-flaky: hanging as asked (ignoring Shutdown)");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    if let Some(code) = arg::<u8>(&args, "--exit-after-ready") {
        eprintln!("amp-flaky: exiting after ready with code {code} as asked");
        std::process::exit(i32::from(code));
    }
    let crash_after = arg::<u64>(&args, "--crash-after");
    let mut done = 0u64;
    let r = w.run_with(move |t, emit| {
        done += 1;
        if crash_after.is_some_and(|n| done > n) {
            eprintln!("amp-flaky: crashing after {} tasks as asked", done - 1);
            std::process::exit(3);
        }
        let cmd = String::from_utf8_lossy(t.payload);
        match cmd.trim().trim_matches('"') {
            "fail" => Outcome::Err {
                retryable: false,
                message: "failed as asked".into(),
            },
            "retry" => Outcome::Err {
                retryable: true,
                message: "transient failure as asked".into(),
            },
            "crash" => std::process::exit(3),
            // Crashes on the first attempt only: the retry after the worker's death succeeds.
            "crash1" if t.attempt == 1 => std::process::exit(3),
            "abort" => std::process::abort(),
            "loop" => Outcome::Loopback {
                payload: t.payload.to_vec(),
                reason: "asked to loop".into(),
            },
            "hang" => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            c if c.starts_with("fanout:") => {
                // fanout:N:KIND emits N subtasks "piece-i" of KIND.
                let mut parts = c[7..].splitn(2, ':');
                let n: usize = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                let kind = parts.next().unwrap_or("");
                for i in 0..n {
                    emit.subtask(kind, format!("piece-{i}").into_bytes());
                }
                Outcome::Ok(b"parent".to_vec())
            }
            c if c.starts_with("sleep:") => {
                let ms: u64 = c[6..].parse().unwrap_or(0);
                std::thread::sleep(Duration::from_millis(ms));
                Outcome::Ok(t.payload.to_vec())
            }
            _ => Outcome::Ok(t.payload.to_vec()),
        }
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn signal_ignore_term() -> std::io::Result<()> {
    // A handler that only sets a flag nobody reads: SIGTERM no longer terminates the process.
    signal_hook::flag::register(signal_hook::consts::SIGTERM, std::sync::Arc::default()).map(|_| ())
}
