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
        if let Ok(stream) = TcpStream::connect_timeout(&addr, left) {
            // A connect to a loopback port nobody listens on can pick that same port as its
            // source and "succeed" by simultaneous open (TCP self-connect); that is not a server.
            let self_connect = stream.local_addr().ok() == Some(addr);
            if !self_connect {
                return true;
            }
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
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

    #[test]
    fn tcp_probe_sees_listener_and_refusal() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(tcp_probe("127.0.0.1", port, Duration::from_secs(2)));

        // A port held by a bound socket that does not listen: connects are refused, and no
        // other socket (nor a self-connect) can take it meanwhile.
        let (_held, port) = bound_not_listening();
        assert!(!tcp_probe("127.0.0.1", port, Duration::from_secs(2)));
    }

    /// A TCP socket bound to an ephemeral loopback port, not listening. (std can only bind
    /// listeners, and nix's socket-address types need a feature this crate does not enable.)
    fn bound_not_listening() -> (OwnedFd, u16) {
        // SAFETY: plain integer arguments; returns a new descriptor or -1.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just returned by socket() and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        addr.sin_family = libc::sa_family_t::try_from(libc::AF_INET).unwrap();
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_in>()).unwrap();
        // SAFETY: `addr` is a valid sockaddr_in of `len` bytes.
        let r = unsafe { libc::bind(fd.as_raw_fd(), std::ptr::from_ref(&addr).cast(), len) };
        assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
        // SAFETY: `addr`/`len` are writable and `len` is its size; getsockname fills them in.
        let r = unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                std::ptr::from_mut(&mut addr).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "getsockname: {}", std::io::Error::last_os_error());
        (fd, u16::from_be(addr.sin_port))
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
