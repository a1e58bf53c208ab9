//! A minimal HTTP/1.x endpoint for scrapes, driven by the daemon's mio loop.
//!
//! * One listener and at most [`ExporterOptions::max_connections`] connections, all
//!   non-blocking and registered under tokens the daemon chooses
//!   (`token_base ..= token_base + max_connections`, see [`HttpExporter::register`]).
//!   Connections beyond the limit are accepted and closed at once.
//! * A connection sends one request; the head (request line and headers) may be at most
//!   [`ExporterOptions::max_request_bytes`] long. `GET /metrics` (or `HEAD`) is answered
//!   `200` with the body the daemon renders; another path gets `404`, another method `405`,
//!   a malformed or oversized head `400`/`431`. After the response the exporter shuts its write
//!   side and closes once the peer has closed too (or at the timeout), so that a close never
//!   resets a response away.
//! * Each connection has [`ExporterOptions::timeout`] for the whole exchange; the daemon includes
//!   [`HttpExporter::next_deadline`] in its poll timeout and calls [`HttpExporter::expire`].
//! * There is no authentication: bind to loopback unless the network is trusted.
//!
//! Scrapes are answered in two steps so that the daemon can render from its own state while the
//! exporter is borrowed mutably: [`HttpExporter::ready`] returns a [`Scrape`] when a connection
//! asks for metrics, and [`HttpExporter::respond`] sends the body.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::exposition::CONTENT_TYPE;

/// Limits of the exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExporterOptions {
    /// Connections open at once (default 16).
    pub max_connections: usize,
    /// Bytes of request head accepted (default 8 KiB).
    pub max_request_bytes: usize,
    /// Time a connection may take from accept to the last byte of the response (default 5 s).
    pub timeout: Duration,
}

impl Default for ExporterOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            max_request_bytes: 8 * 1024,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    /// The address could not be bound.
    #[error("cannot listen for metrics on {addr}: {source}; free the port or change metrics_addr")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The listener could not be registered with the poll.
    #[error("cannot register the metrics listener with the event loop: {0}")]
    Register(#[source] io::Error),
    /// `max_connections` is zero.
    #[error("metrics exporter max_connections must be at least 1")]
    NoConnections,
}

/// A connection that asked for the metrics; hand it to [`HttpExporter::respond`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the connection waits (until its timeout) for `respond`"]
pub struct Scrape {
    key: usize,
    /// The connection's serial: a slab key is reused, a serial never.
    serial: u64,
    head_only: bool,
}

#[derive(Debug)]
enum Phase {
    /// Reading the request head.
    Reading,
    /// Waiting for the daemon's body.
    Waiting,
    /// Writing `out[written..]`.
    Writing,
    /// Response sent and write side shut: discarding input until the peer closes, so that
    /// unread request bytes do not turn the close into a reset that loses the response.
    Draining,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    serial: u64,
    deadline: Instant,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    written: usize,
    phase: Phase,
}

/// What a request head asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Metrics { head_only: bool },
    Status(u16, &'static str),
}

/// The metrics listener and its connections. See the [module docs](self).
#[derive(Debug)]
pub struct HttpExporter {
    listener: TcpListener,
    local: SocketAddr,
    conns: Slab<Conn>,
    base: Option<usize>,
    opts: ExporterOptions,
    next_serial: u64,
}

impl HttpExporter {
    /// Binds `addr` (non-blocking). Port 0 picks a free port; see [`local_addr`](Self::local_addr).
    ///
    /// # Errors
    /// [`ExporterError::Bind`] when the address is in use or not local;
    /// [`ExporterError::NoConnections`] for `max_connections == 0`.
    pub fn bind(addr: SocketAddr, opts: ExporterOptions) -> Result<Self, ExporterError> {
        if opts.max_connections == 0 {
            return Err(ExporterError::NoConnections);
        }
        let listener =
            TcpListener::bind(addr).map_err(|source| ExporterError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ExporterError::Bind { addr, source })?;
        if !local.ip().is_loopback() {
            tracing::warn!(%local, "metrics are served on a non-loopback address without authentication");
        }
        Ok(Self {
            listener,
            local,
            conns: Slab::with_capacity(opts.max_connections),
            base: None,
            opts,
            next_serial: 0,
        })
    }

    /// The bound address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Registers the listener as `Token(token_base)`; connection `i` will use
    /// `Token(token_base + 1 + i)`, `i < max_connections`.
    ///
    /// # Errors
    /// [`ExporterError::Register`] if the poll refuses the listener.
    pub fn register(
        &mut self,
        registry: &Registry,
        token_base: usize,
    ) -> Result<(), ExporterError> {
        registry
            .register(&mut self.listener, Token(token_base), Interest::READABLE)
            .map_err(ExporterError::Register)?;
        self.base = Some(token_base);
        Ok(())
    }

    /// The tokens this exporter uses once registered (`None` before [`register`](Self::register)).
    #[must_use]
    pub fn tokens(&self) -> Option<std::ops::RangeInclusive<usize>> {
        self.base.map(|b| b..=b + self.opts.max_connections)
    }

    /// Whether `token` is one of this exporter's.
    #[must_use]
    pub fn owns(&self, token: Token) -> bool {
        self.tokens().is_some_and(|r| r.contains(&token.0))
    }

    /// Open connections.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Response bytes accepted for sending but not yet taken by the sockets.
    #[must_use]
    pub fn unsent_bytes(&self) -> usize {
        self.conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Writing))
            .map(|(_, c)| c.out.len() - c.written)
            .sum()
    }

    /// Handles readiness of one of [`tokens`](Self::tokens). Returns a [`Scrape`] when a
    /// connection has asked for the metrics; answer it with [`respond`](Self::respond).
    pub fn ready(&mut self, token: Token, registry: &Registry, now: Instant) -> Option<Scrape> {
        let base = self.base?;
        if token.0 == base {
            self.accept(registry, now);
            return None;
        }
        let key = token.0.checked_sub(base + 1)?;
        let conn = self.conns.get_mut(key)?;
        match conn.phase {
            Phase::Reading => match read_head(conn, self.opts.max_request_bytes) {
                ReadOutcome::More => None,
                ReadOutcome::Closed => {
                    self.close(key, registry);
                    None
                }
                ReadOutcome::Head(route) => match route {
                    Route::Metrics { head_only } => {
                        conn.phase = Phase::Waiting;
                        Some(Scrape {
                            key,
                            serial: conn.serial,
                            head_only,
                        })
                    }
                    Route::Status(code, reason) => {
                        let body = format!("{code} {reason}; metrics are served at GET /metrics\n");
                        let extra = if code == 405 {
                            "Allow: GET, HEAD\r\n"
                        } else {
                            ""
                        };
                        conn.out = response(
                            code,
                            reason,
                            "text/plain; charset=utf-8",
                            extra,
                            body.as_bytes(),
                            false,
                        );
                        conn.phase = Phase::Writing;
                        self.write(key, registry);
                        None
                    }
                },
            },
            Phase::Waiting => None,
            Phase::Writing => {
                self.write(key, registry);
                None
            }
            Phase::Draining => {
                self.drain(key, registry);
                None
            }
        }
    }

    /// Sends `body` (rendered exposition text) to a connection that asked for it. A connection
    /// that timed out or closed meanwhile is skipped.
    pub fn respond(&mut self, scrape: Scrape, body: &str, registry: &Registry) {
        let Some(conn) = self.conns.get_mut(scrape.key) else {
            return;
        };
        if conn.serial != scrape.serial || !matches!(conn.phase, Phase::Waiting) {
            return;
        }
        conn.out = response(
            200,
            "OK",
            CONTENT_TYPE,
            "",
            body.as_bytes(),
            scrape.head_only,
        );
        conn.phase = Phase::Writing;
        self.write(scrape.key, registry);
    }

    /// The earliest connection deadline, for the loop's poll timeout.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conns.iter().map(|(_, c)| c.deadline).min()
    }

    /// Closes connections whose deadline has passed; returns how many.
    pub fn expire(&mut self, now: Instant, registry: &Registry) -> usize {
        let late: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(k, _)| k)
            .collect();
        for &k in &late {
            self.close(k, registry);
        }
        late.len()
    }

    /// Closes every connection and deregisters the listener (for shutdown).
    pub fn shutdown(&mut self, registry: &Registry) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for k in keys {
            self.close(k, registry);
        }
        let _ = registry.deregister(&mut self.listener);
        self.base = None;
    }

    fn accept(&mut self, registry: &Registry, now: Instant) {
        let Some(base) = self.base else { return };
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.conns.len() >= self.opts.max_connections {
                        tracing::debug!(%peer, "metrics connection refused: too many open");
                        continue;
                    }
                    let entry = self.conns.vacant_entry();
                    let token = Token(base + 1 + entry.key());
                    if let Err(e) = registry.register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        tracing::warn!(%peer, "cannot register a metrics connection: {e}");
                        continue;
                    }
                    self.next_serial += 1;
                    entry.insert(Conn {
                        stream,
                        serial: self.next_serial,
                        deadline: now + self.opts.timeout,
                        inbuf: Vec::new(),
                        out: Vec::new(),
                        written: 0,
                        phase: Phase::Reading,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!("metrics accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Writes what the socket takes; once everything is sent, shuts the write side and drains.
    /// A write error closes the connection.
    fn write(&mut self, key: usize, registry: &Registry) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        while c.written < c.out.len() {
            match c.stream.write(&c.out[c.written..]) {
                Ok(0) => {
                    self.close(key, registry);
                    return;
                }
                Ok(n) => c.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(key, registry);
                    return;
                }
            }
        }
        c.out = Vec::new();
        c.inbuf = Vec::new();
        if c.stream.shutdown(Shutdown::Write).is_err() {
            self.close(key, registry);
            return;
        }
        c.phase = Phase::Draining;
        self.drain(key, registry);
    }

    /// Discards input until the peer closes (then closes) or nothing is left to read for now.
    fn drain(&mut self, key: usize, registry: &Registry) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let mut buf = [0u8; 1024];
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.close(key, registry);
    }

    fn close(&mut self, key: usize, registry: &Registry) {
        if let Some(mut c) = self.conns.try_remove(key) {
            let _ = registry.deregister(&mut c.stream);
        }
    }
}

enum ReadOutcome {
    /// The head is incomplete; wait for more.
    More,
    /// The peer closed or failed before a complete head.
    Closed,
    /// A complete head (or an oversized one, answered with an error status).
    Head(Route),
}

fn read_head(c: &mut Conn, max: usize) -> ReadOutcome {
    let mut buf = [0u8; 2048];
    loop {
        if let Some(end) = head_end(&c.inbuf) {
            return ReadOutcome::Head(route(&c.inbuf[..end]));
        }
        if c.inbuf.len() >= max {
            return ReadOutcome::Head(Route::Status(431, "Request Header Fields Too Large"));
        }
        let room = (max - c.inbuf.len()).min(buf.len());
        match c.stream.read(&mut buf[..room]) {
            Ok(0) => return ReadOutcome::Closed,
            Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::More,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return ReadOutcome::Closed,
        }
    }
}

/// End of the request head: the empty line (`\r\n\r\n`, or a bare `\n\n`).
fn head_end(b: &[u8]) -> Option<usize> {
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = b.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Routes a request head by its request line.
fn route(head: &[u8]) -> Route {
    const BAD: Route = Route::Status(400, "Bad Request");
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return BAD;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return BAD;
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return BAD;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if path != "/metrics" {
        return Route::Status(404, "Not Found");
    }
    match method {
        "GET" => Route::Metrics { head_only: false },
        "HEAD" => Route::Metrics { head_only: true },
        _ => Route::Status(405, "Method Not Allowed"),
    }
}

fn response(
    code: u16,
    reason: &str,
    content_type: &str,
    extra_headers: &str,
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra_headers}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_http_routes_request_lines() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            route(b"HEAD /metrics?x=1 HTTP/1.0"),
            Route::Metrics { head_only: true }
        );
        assert_eq!(route(b"GET / HTTP/1.1"), Route::Status(404, "Not Found"));
        assert_eq!(
            route(b"GET /metricsx HTTP/1.1"),
            Route::Status(404, "Not Found")
        );
        assert_eq!(
            route(b"POST /metrics HTTP/1.1"),
            Route::Status(405, "Method Not Allowed")
        );
        for bad in [
            &b"GET /metrics"[..],
            b"GET  /metrics HTTP/1.1",
            b"GET /metrics HTTP/2",
            b"GET metrics HTTP/1.1",
            b"GET /metrics HTTP/1.1 extra",
            b"\xff /metrics HTTP/1.1",
        ] {
            assert_eq!(route(bad), Route::Status(400, "Bad Request"), "{bad:?}");
        }
    }

    #[test]
    fn metrics_http_finds_the_end_of_the_head() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest"), Some(20));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }
}
