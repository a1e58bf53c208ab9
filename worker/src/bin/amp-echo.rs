//! `amp-echo`: returns every payload unchanged.
use std::process::ExitCode;

fn main() -> ExitCode {
    amp_worker::serve(|t| amp_ipc::Outcome::Ok(t.payload.to_vec()))
}
