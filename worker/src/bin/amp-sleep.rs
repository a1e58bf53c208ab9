//! `amp-sleep`: sleeps for the time the payload asks (ms as text, or 8-byte LE µs), scaled by
//! `AMP_SLEEP_FACTOR` (default 1.0: a slow worker is simulated with e.g. 3.0), and echoes the
//! payload.
use std::process::ExitCode;

fn main() -> ExitCode {
    let factor: f64 = std::env::var("AMP_SLEEP_FACTOR")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    amp_worker::serve(move |t| match amp_worker::parse_sleep(t.payload) {
        Ok(d) => {
            std::thread::sleep(d.mul_f64(factor.max(0.0)));
            amp_ipc::Outcome::Ok(t.payload.to_vec())
        }
        Err(message) => amp_ipc::Outcome::Err {
            retryable: false,
            message,
        },
    })
}
