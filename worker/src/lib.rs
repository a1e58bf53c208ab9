//! Worker runtime helpers and the example workers used by amp's demo, tests and benchmarks.
//!
//! The example workers (`amp-echo`, `amp-hash`, `amp-sleep`, `amp-flaky`) are thin binaries over
//! [`amp_ipc::Worker`]; the pure parts of their handlers live here so they are unit-tested.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use amp_ipc::{Failure, Outcome, Reply, TaskRef, Worker, WorkerError};

/// Sets up logging to stderr (ampd captures it and tags it with the worker's name).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .without_time()
        .try_init();
}

/// Connects, reports ready, and serves `handler` until ampd says Shutdown; turns errors into a
/// message on stderr and exit code 1.
pub fn serve<F>(handler: F) -> ExitCode
where
    F: FnMut(&TaskRef<'_>) -> Outcome,
{
    init_tracing();
    match serve_inner(handler) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve_inner<F>(handler: F) -> Result<(), WorkerError>
where
    F: FnMut(&TaskRef<'_>) -> Outcome,
{
    let mut w = Worker::from_env()?;
    w.ready()?;
    w.run(handler)
}

/// [`serve`] for a handler that writes its result in place ([`Worker::run_reply`]: no
/// allocation per task or chunk item).
pub fn serve_reply<F>(handler: F) -> ExitCode
where
    F: FnMut(&TaskRef<'_>, &mut Reply<'_>) -> Result<(), Failure>,
{
    init_tracing();
    let run = || -> Result<(), WorkerError> {
        let mut w = Worker::from_env()?;
        w.ready()?;
        w.run_reply(handler)
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// FNV-1a over the payload, repeated `rounds` times (each round hashes the previous digest and
/// the payload): a CPU-bound digest whose cost scales with payload size × rounds.
#[must_use]
pub fn digest(payload: &[u8], rounds: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for _ in 0..rounds.max(1) {
        for &b in h.to_le_bytes().iter().chain(payload) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Parses a sleep request: the payload is a decimal number of milliseconds (UTF-8, e.g. `"25"`
/// or `"2.5"`, optionally followed by whitespace and anything), or 8 bytes little-endian
/// microseconds. Empty = 0.
///
/// # Errors
/// A message naming what was wrong.
pub fn parse_sleep(payload: &[u8]) -> Result<Duration, String> {
    if payload.is_empty() {
        return Ok(Duration::ZERO);
    }
    if let Ok(text) = std::str::from_utf8(payload) {
        // The first word is the time; anything after it (e.g. a sequence number) is ignored.
        let t = text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_matches('"');
        if let Ok(ms) = t.parse::<f64>() {
            if (0.0..3.6e6).contains(&ms) {
                return Ok(Duration::from_secs_f64(ms / 1000.0));
            }
            return Err(format!("sleep of {ms} ms is out of range 0..3600000"));
        }
    }
    if payload.len() == 8 {
        let mut a = [0u8; 8];
        a.copy_from_slice(payload);
        return Ok(Duration::from_micros(u64::from_le_bytes(a)));
    }
    Err(format!(
        "payload {:?} is neither a number of ms nor 8-byte LE microseconds",
        String::from_utf8_lossy(payload)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_depends_on_input_and_rounds() {
        assert_ne!(digest(b"a", 1), digest(b"b", 1));
        assert_ne!(digest(b"a", 1), digest(b"a", 2));
        assert_eq!(digest(b"abc", 3), digest(b"abc", 3));
    }

    #[test]
    fn sleep_payloads() {
        assert_eq!(parse_sleep(b"25").unwrap(), Duration::from_millis(25));
        assert_eq!(
            parse_sleep(b"\"2.5\"").unwrap(),
            Duration::from_micros(2500)
        );
        assert_eq!(
            parse_sleep(&1500u64.to_le_bytes()).unwrap(),
            Duration::from_micros(1500)
        );
        assert_eq!(parse_sleep(b"").unwrap(), Duration::ZERO);
        assert_eq!(parse_sleep(b"3 seq=17").unwrap(), Duration::from_millis(3));
        assert!(parse_sleep(b"-1").is_err());
        assert!(parse_sleep(b"soon").is_err());
    }
}
