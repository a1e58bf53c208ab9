//! Readiness probes for plain (non-amp-ipc) processes.
//!
//! - **TCP**: [`tcp_probe`] is one connect attempt bounded by its timeout. Against loopback it
//!   answers at once (connected or refused), so the event loop may call it on a timer tick with a
//!   short timeout (tens of milliseconds). For remote hosts, keep the timeout short as well.
//! - **Exec**: [`exec_probe`] only *starts* `/bin/sh -c command` and returns the [`Child`]; the
//!   event loop registers its pidfd like a worker's, reaps it when readable (exit code 0 = ready),
//!   and on the probe timeout kills its group with
//!   [`signal_group`](super::signal_group)`(probe.pid, SIGKILL)` and reaps it on the next pidfd
//!   event. Nothing waits. Code off the event loop (tests, tools) may use
//!   [`wait_timeout`](super::wait_timeout) instead.

use super::spawn::{spawn, Child, SpawnError, SpawnSpec};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::{Duration, Instant};

/// Whether a TCP connection to `host:port` can be opened within `timeout` (nonblocking connect
/// plus poll, per resolved address, sharing the timeout). The connection is closed at once.
///
/// `host` is an IP literal or a name; a name is resolved with the system resolver, which may
/// itself take time — use IP literals (the default `127.0.0.1`) from the event loop.
#[must_use]
pub fn tcp_probe(host: &str, port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        if TcpStream::connect_timeout(&addr, left).is_ok() {
            return true;
        }
    }
    false
}

/// Starts the exec probe `/bin/sh -c command` (stdout/stderr to `/dev/null`, own process group,
/// dies with the supervisor) and returns it; the probe passed if it exits with code 0. See the
/// [module docs](self) for how the event loop waits for it without blocking.
///
/// To run the probe as the worker runs (user, env, cwd), build [`SpawnSpec::shell`] yourself,
/// set those fields and call [`spawn`].
///
/// # Errors
///
/// As [`spawn`].
pub fn exec_probe(command: &str) -> Result<Child, SpawnError> {
    spawn(&SpawnSpec::shell(command))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ExitReason;
    use std::net::TcpListener;

    #[test]
    fn tcp_probe_sees_listener_and_refusal() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(tcp_probe("127.0.0.1", port, Duration::from_secs(2)));
        drop(listener);
        // The port was just released; nobody listens there now.
        assert!(!tcp_probe("127.0.0.1", port, Duration::from_secs(2)));
    }

    #[test]
    fn exec_probe_reports_exit_code() {
        let ok = exec_probe("test 1 = 1").unwrap();
        let bad = exec_probe("exit 4").unwrap();
        let t = Duration::from_secs(10);
        assert_eq!(
            crate::sys::wait_timeout(&ok, t).unwrap(),
            Some(ExitReason::Code(0))
        );
        assert_eq!(
            crate::sys::wait_timeout(&bad, t).unwrap(),
            Some(ExitReason::Code(4))
        );
    }
}
