//! `amp-hash`: CPU-bound digest of the payload (`AMP_HASH_ROUNDS` rounds, default 16); the result
//! is the 16-hex-digit digest.
use std::process::ExitCode;

fn main() -> ExitCode {
    let rounds = std::env::var("AMP_HASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    amp_worker::serve(move |t| {
        amp_ipc::Outcome::Ok(format!("{:016x}", amp_worker::digest(t.payload, rounds)).into_bytes())
    })
}
