//! The control socket server: a Unix stream listener and its connections, driven by the mio
//! loop. Framing, limits and peer checks live here; what a request does is the daemon's
//! business (it receives parsed requests and hands back responses).
//!
//! * The socket file is created with mode 0600 (under a 0700 directory if ampd creates it).
//! * Each connection's peer is checked with `SO_PEERCRED`: same uid as ampd, or root, or (if
//!   configured) a member of the control group; anyone else is refused with a logged reason.
//! * A request line may be at most [`MAX_REQUEST_LINE`] bytes; a longer one gets an error
//!   response and the connection is closed. Output per connection is bounded too: a client that
//!   never reads its responses is disconnected rather than allowed to grow ampd's memory (what
//!   it had pipelined is then not carried out), and it never blocks the loop or other clients:
//!   all I/O is non-blocking, and at most [`MAX_READ_PER_EVENT`] bytes of a connection are read
//!   per readiness event.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::proto::{parse_request, Request, Response, MAX_REQUEST_LINE};

/// Token of the listener.
pub const LISTENER: Token = Token(2);
/// Connection tokens are `CONN_BASE + slab key`.
pub const CONN_BASE: usize = 1 << 24;
/// Bytes of unsent responses a connection may hold before it is dropped.
pub const MAX_PENDING_OUTPUT: usize = 16 << 20;
/// Bytes read from one connection per readiness event at most (fairness between connections).
pub const MAX_READ_PER_EVENT: usize = 64 << 10;

#[derive(Debug)]
struct Conn {
    stream: UnixStream,
    inbuf: Vec<u8>,
    out: VecDeque<u8>,
    /// Close once `out` is flushed and every request read has been answered.
    closing: bool,
    /// Requests handed to the daemon and not answered yet.
    unanswered: usize,
    uid: u32,
    /// The interest the stream is registered with.
    interest: Interest,
    /// The peer closed its write side (or reading failed): nothing more is read.
    read_eof: bool,
    /// Reading stopped at [`MAX_READ_PER_EVENT`] with input possibly left: `flush` re-registers
    /// to be told again (edge-triggered readiness would not repeat on its own).
    more_input: bool,
}

/// Who may connect.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// A group whose members are allowed besides ampd's uid and root.
    pub group: Option<u32>,
}

/// The listener and its connections.
#[derive(Debug)]
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    conns: Slab<Conn>,
    access: Access,
    my_uid: u32,
    /// Connections closed since the last `take_closed`.
    closed: Vec<usize>,
    /// Connections dropped because they did not read their responses (ids are removed when
    /// reused): what they asked and is not answered yet is not carried out.
    dropped_unread: Vec<usize>,
}

/// A parsed request from connection `conn`, or the error to send back.
pub type Incoming = (usize, u32, Result<Request, String>);

impl ControlServer {
    /// Binds the socket at `path` (creating its directory with mode 0700 if missing; an existing
    /// socket file whose listener is gone is replaced; a live one is an error).
    ///
    /// # Errors
    /// When another ampd listens there, or on any I/O error.
    pub fn bind(path: &Path, registry: &Registry, access: Access) -> io::Result<Self> {
        // Owner only, or owner and the control group when one is configured.
        let (dir_mode, sock_mode) = if access.group.is_some() {
            (0o750, 0o660)
        } else {
            (0o700, 0o600)
        };
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(dir_mode)
                    .create(dir)?;
                if let Some(g) = access.group {
                    std::os::unix::fs::chown(dir, None, Some(g))?;
                }
            }
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{} is in use by a running ampd; stop it or choose another control_socket",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let old =
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o777 & !sock_mode));
        let bound = UnixListener::bind(path);
        nix::sys::stat::umask(old);
        let mut listener = bound?;
        if let Some(g) = access.group {
            std::os::unix::fs::chown(path, None, Some(g))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(sock_mode))?;
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Self {
            listener,
            path: path.to_owned(),
            conns: Slab::new(),
            access,
            my_uid: nix::unistd::getuid().as_raw(),
            closed: Vec::new(),
            dropped_unread: Vec::new(),
        })
    }

    /// The socket path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of open connections.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    fn allowed(&self, uid: u32, gid: u32) -> Result<(), String> {
        if uid == 0 || uid == self.my_uid {
            return Ok(());
        }
        if let Some(g) = self.access.group {
            if gid == g || user_in_group(uid, g) {
                return Ok(());
            }
        }
        Err(format!(
            "uid {uid} is neither ampd's uid {} nor root nor in the control group",
            self.my_uid
        ))
    }

    /// Accepts every pending connection.
    pub fn accept(&mut self, registry: &Registry) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let cred = nix::sys::socket::getsockopt(
                        &stream,
                        nix::sys::socket::sockopt::PeerCredentials,
                    );
                    let (uid, gid, pid) = match cred {
                        Ok(c) => (c.uid(), c.gid(), c.pid()),
                        Err(e) => {
                            tracing::warn!("control connection refused: SO_PEERCRED failed: {e}");
                            continue;
                        }
                    };
                    if let Err(why) = self.allowed(uid, gid) {
                        tracing::warn!(pid, uid, "control connection refused: {why}");
                        let line = serde_json::to_string(&Response::err(format!(
                            "permission denied: {why}"
                        )))
                        .unwrap_or_default();
                        let _ = stream.write_all(format!("{line}\n").as_bytes());
                        continue;
                    }
                    let entry = self.conns.vacant_entry();
                    self.dropped_unread.retain(|&id| id != entry.key());
                    let token = Token(CONN_BASE + entry.key());
                    if registry
                        .register(&mut stream, token, Interest::READABLE)
                        .is_ok()
                    {
                        entry.insert(Conn {
                            stream,
                            inbuf: Vec::new(),
                            out: VecDeque::new(),
                            closing: false,
                            unanswered: 0,
                            uid,
                            interest: Interest::READABLE,
                            read_eof: false,
                            more_input: false,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!("control socket accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Handles readiness of connection `token`; returns the complete requests read.
    pub fn ready(&mut self, token: Token, registry: &Registry) -> Vec<Incoming> {
        let id = token.0 - CONN_BASE;
        let mut out = Vec::new();
        let Some(c) = self.conns.get_mut(id) else {
            return out;
        };
        // After EOF the socket stays readable; reading it again would only find EOF again.
        let mut eof = c.read_eof;
        let mut buf = [0u8; 16 * 1024];
        let mut taken = 0usize;
        while !c.read_eof {
            if taken >= MAX_READ_PER_EVENT {
                // A client writing as fast as we read would keep this loop (and every other
                // client) waiting; the rest is read on the next event, which re-registering
                // the connection (`flush` below) raises while data is left.
                c.more_input = true;
                break;
            }
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    taken += n;
                    c.inbuf.extend_from_slice(&buf[..n]);
                    while let Some(pos) = c.inbuf.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = c.inbuf.drain(..=pos).collect();
                        let line = &line[..line.len() - 1];
                        if line.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        out.push((id, c.uid, parse_request(line)));
                    }
                    if c.inbuf.len() > MAX_REQUEST_LINE {
                        c.inbuf.clear();
                        out.push((
                            id,
                            c.uid,
                            Err(format!(
                                "request line exceeds the {MAX_REQUEST_LINE}-byte limit; closing"
                            )),
                        ));
                        // Nothing after the refused line is read or carried out.
                        c.closing = true;
                        c.read_eof = true;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        if eof && !c.read_eof {
            // A half-written line at EOF is dropped: the client went away mid-request. Complete
            // lines read before it are still answered (a client may half-close after sending).
            c.read_eof = true;
            c.closing = true;
            c.inbuf.clear();
        }
        c.unanswered += out.len();
        self.flush(id, registry);
        out
    }

    /// Queues a response line for connection `id` and tries to send it.
    pub fn respond(&mut self, id: usize, resp: &Response, registry: &Registry) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        c.unanswered = c.unanswered.saturating_sub(1);
        let mut line = serde_json::to_vec(resp)
            .unwrap_or_else(|e| format!("{{\"v\":1,\"ok\":false,\"error\":\"{e}\"}}").into_bytes());
        line.push(b'\n');
        if c.out.len() + line.len() > MAX_PENDING_OUTPUT {
            tracing::warn!(
                conn = id,
                "control client does not read its responses; disconnecting it"
            );
            self.close(id, registry);
            self.dropped_unread.push(id);
            return;
        }
        c.out.extend(line);
        self.flush(id, registry);
    }

    /// Sends a response line together with file descriptors (`SCM_RIGHTS`), e.g. a client's
    /// doorbells. The fds ride on the first byte of the line, so they are sent at once when the
    /// connection has no output queued; otherwise the request fails.
    ///
    /// # Errors
    /// When output is already queued or `sendmsg` fails.
    pub fn respond_with_fds(
        &mut self,
        id: usize,
        resp: &Response,
        fds: &[std::os::fd::RawFd],
        registry: &Registry,
    ) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let c = self
            .conns
            .get_mut(id)
            .ok_or_else(|| io::Error::other("connection gone"))?;
        c.unanswered = c.unanswered.saturating_sub(1);
        if !c.out.is_empty() {
            return Err(io::Error::other(
                "responses are queued on this connection; attach on a fresh one",
            ));
        }
        let mut line = serde_json::to_vec(resp).map_err(io::Error::other)?;
        line.push(b'\n');
        let iov = [io::IoSlice::new(&line)];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(fds)];
        let sent = loop {
            match nix::sys::socket::sendmsg::<()>(
                c.stream.as_raw_fd(),
                &iov,
                &cmsg,
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        };
        c.out.extend(&line[sent..]);
        self.flush(id, registry);
        Ok(())
    }

    /// Whether connection `id` was dropped because it did not read its responses (and not
    /// reused since): the requests it sent before are not worth carrying out — it pipelined
    /// more than it reads. A connection closed for another reason (the client went away) still
    /// has its requests carried out; only their answers are lost.
    #[must_use]
    pub fn dropped_unread(&self, id: usize) -> bool {
        self.dropped_unread.contains(&id)
    }

    /// Whether connection `id` is still open.
    #[must_use]
    pub fn is_open(&self, id: usize) -> bool {
        self.conns.contains(id)
    }

    /// Marks connection `id` to be closed once its output is flushed.
    pub fn close_after_flush(&mut self, id: usize, registry: &Registry) {
        if let Some(c) = self.conns.get_mut(id) {
            c.closing = true;
        }
        self.flush(id, registry);
    }

    fn flush(&mut self, id: usize, registry: &Registry) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        while !c.out.is_empty() {
            let (a, _) = c.out.as_slices();
            match c.stream.write(a) {
                Ok(0) => break,
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(id, registry);
                    return;
                }
            }
        }
        let c = &mut self.conns[id];
        if c.out.is_empty() && c.closing && c.unanswered == 0 {
            self.close(id, registry);
            return;
        }
        let interest = if c.out.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        // Re-registering raises an event at once when the socket is readable (EOF included), so
        // it is done only when the interest changes or input was left unread: a half-closed
        // client waiting for a deferred answer would otherwise spin the loop.
        let more_input = std::mem::take(&mut c.more_input);
        if interest != c.interest || more_input {
            c.interest = interest;
            let _ = registry.reregister(&mut c.stream, Token(CONN_BASE + id), interest);
        }
    }

    fn close(&mut self, id: usize, registry: &Registry) {
        if let Some(mut c) = self.conns.try_remove(id) {
            let _ = registry.deregister(&mut c.stream);
            self.closed.push(id);
        }
    }

    /// Connections closed since the last call (their ids may be reused afterwards).
    pub fn take_closed(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.closed)
    }

    /// Removes the socket file.
    pub fn remove_file(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether `uid`'s supplementary groups include `gid` (via its user record).
fn user_in_group(uid: u32, gid: u32) -> bool {
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else {
        return false;
    };
    if user.gid.as_raw() == gid {
        return true;
    }
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, user.gid).is_ok_and(|gs| gs.iter().any(|g| g.as_raw() == gid))
}

#[cfg(test)]
mod tests;
