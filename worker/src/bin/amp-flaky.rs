//! `amp-flaky`: a worker that misbehaves on command, for fault tests.
//!
//! Flags (process level): `--exit-at-start CODE` (exit before the handshake), `--no-ready`
//! (connect but never report ready), `--ready-delay-ms N`, `--ignore-sigterm`,
//! `--spawn-grandchild` (start `sleep 1000` as a child first), `--crash-after N` (exit 3 after N
//! tasks), `--protocol N` (announce another protocol version), `--exit-after-ready CODE`, `--hang` (after
//! ready, never answer and ignore Shutdown), `--reply` (run with `Worker::run_reply`, results
//! written in place; `loop` and `fanout` then fail).
//!
//! Payload commands (task level): `ok` → Ok(payload); `fail` → non-retryable error; `retry` →
//! retryable error; `crash` → exit 3; `crash1` → exit 3 on the first attempt, else as `ok`;
//! `abort` → SIGABRT; `hang` → never answer; `sleep:MS`; `loop` → a
//! loopback with the same payload (for loop-limit tests); `fanout:N:KIND` → emits N subtasks
//! `piece-i` of KIND and answers `parent`.
use std::process::ExitCode;
use std::time::Duration;

use amp_ipc::{Failure, Outcome, TaskRef, Worker};

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
    let mut count = move || {
        done += 1;
        if crash_after.is_some_and(|n| done > n) {
            eprintln!("amp-flaky: crashing after {} tasks as asked", done - 1);
            std::process::exit(3);
        }
    };
    let r = if has("--reply") {
        // The in-place runtime (Worker::run_reply): results written into a Reply.
        w.run_reply(move |t, reply| {
            count();
            match command(t) {
                Command::Answer => {
                    reply.extend_from_slice(t.payload);
                    Ok(())
                }
                Command::Fail(f) => Err(f),
                Command::Loop | Command::Fanout(..) => Err(Failure {
                    retryable: false,
                    message: "loop and fanout need amp-flaky without --reply".into(),
                }),
            }
        })
    } else {
        w.run_with(move |t, emit| {
            count();
            match command(t) {
                Command::Answer => Outcome::Ok(t.payload.to_vec()),
                Command::Fail(f) => Outcome::Err {
                    retryable: f.retryable,
                    message: f.message,
                },
                Command::Loop => Outcome::Loopback {
                    payload: t.payload.to_vec(),
                    reason: "asked to loop".into(),
                },
                Command::Fanout(n, kind) => {
                    for i in 0..n {
                        emit.subtask(&kind, format!("piece-{i}").into_bytes());
                    }
                    Outcome::Ok(b"parent".to_vec())
                }
            }
        })
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What a task's payload asks for, once the commands that act at once (crash, hang, sleep)
/// have acted.
enum Command {
    /// Answer the payload.
    Answer,
    Fail(Failure),
    Loop,
    /// `fanout:N:KIND`.
    Fanout(usize, String),
}

fn command(t: &TaskRef<'_>) -> Command {
    let cmd = String::from_utf8_lossy(t.payload);
    let fail = |retryable, message: &str| {
        Command::Fail(Failure {
            retryable,
            message: message.into(),
        })
    };
    match cmd.trim().trim_matches('"') {
        "fail" => fail(false, "failed as asked"),
        "retry" => fail(true, "transient failure as asked"),
        "crash" => std::process::exit(3),
        // Crashes on the first attempt only: the retry after the worker's death succeeds.
        "crash1" if t.attempt == 1 => std::process::exit(3),
        "abort" => std::process::abort(),
        "loop" => Command::Loop,
        "hang" => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        c if c.starts_with("fanout:") => {
            // fanout:N:KIND emits N subtasks "piece-i" of KIND.
            let mut parts = c[7..].splitn(2, ':');
            let n: usize = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            Command::Fanout(n, parts.next().unwrap_or("").to_owned())
        }
        c if c.starts_with("sleep:") => {
            let ms: u64 = c[6..].parse().unwrap_or(0);
            std::thread::sleep(Duration::from_millis(ms));
            Command::Answer
        }
        _ => Command::Answer,
    }
}

fn signal_ignore_term() -> std::io::Result<()> {
    // A handler that only sets a flag nobody reads: SIGTERM no longer terminates the process.
    signal_hook::flag::register(signal_hook::consts::SIGTERM, std::sync::Arc::default()).map(|_| ())
}
