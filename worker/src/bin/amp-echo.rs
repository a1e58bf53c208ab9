//! `amp-echo`: returns every payload unchanged (written in place: no allocation per task).
use std::process::ExitCode;

fn main() -> ExitCode {
    amp_worker::serve_reply(|t, reply| {
        reply.extend_from_slice(t.payload);
        Ok(())
    })
}
