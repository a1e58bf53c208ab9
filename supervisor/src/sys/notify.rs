//! systemd's notify protocol (`sd_notify`): when `NOTIFY_SOCKET` is set, ampd sends `READY=1`
//! after sequenced startup, `STATUS=…` lines as things change, and `STOPPING=1` when shutdown
//! begins. Without `NOTIFY_SOCKET` every call is a no-op.

use std::io;
use std::os::unix::net::UnixDatagram;

/// A connection to the service manager's notify socket.
#[derive(Debug)]
pub struct Notifier {
    sock: UnixDatagram,
    addr: std::os::unix::net::SocketAddr,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace); `None` when unset.
    ///
    /// # Errors
    /// When the variable is set but the socket cannot be used.
    pub fn from_env() -> io::Result<Option<Self>> {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        // The notify socket is ampd's, not its workers': they must not inherit it. Called from
        // `Daemon::new` before ampd starts any other thread.
        std::env::remove_var("NOTIFY_SOCKET");
        let path = path.to_string_lossy().into_owned();
        let addr = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?
        } else {
            std::os::unix::net::SocketAddr::from_pathname(&path)?
        };
        let sock = UnixDatagram::unbound()?;
        Ok(Some(Self { sock, addr }))
    }

    /// Sends one notify message (newline-separated `KEY=value` assignments).
    ///
    /// # Errors
    /// The `sendto` error.
    pub fn send(&self, msg: &str) -> io::Result<()> {
        self.sock
            .send_to_addr(msg.as_bytes(), &self.addr)
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_the_notify_socket() {
        let dir = std::env::temp_dir().join(format!("amp-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let addr = std::os::unix::net::SocketAddr::from_pathname(&path).unwrap();
        let n = Notifier {
            sock: UnixDatagram::unbound().unwrap(),
            addr,
        };
        n.send("READY=1\nSTATUS=4 workers ready").unwrap();
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=4 workers ready");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
