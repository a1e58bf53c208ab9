//! The scrape endpoint under a real mio poll, with real TCP clients on threads. Every wait is on a
//! condition with a deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use super::super::{render, ExporterOptions, HttpExporter, Scrape, CONTENT_TYPE};
use super::prom;

const BASE: usize = 16;
const LIMIT: Duration = Duration::from_secs(5);

/// A stand-in for the daemon's loop: one poll, the exporter, a body to serve.
struct Loop {
    poll: Poll,
    events: Events,
    ex: HttpExporter,
    body: String,
    scrapes: usize,
    /// When set, scrapes are kept here instead of answered.
    held: Option<Vec<Scrape>>,
}

impl Loop {
    fn new(opts: ExporterOptions, body: String) -> Self {
        let poll = Poll::new().unwrap();
        let mut ex = HttpExporter::bind("127.0.0.1:0".parse().unwrap(), opts).unwrap();
        ex.register(poll.registry(), BASE).unwrap();
        assert_eq!(ex.tokens(), Some(BASE..=BASE + opts.max_connections));
        Self {
            poll,
            events: Events::with_capacity(64),
            ex,
            body,
            scrapes: 0,
            held: None,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.ex.local_addr()
    }

    /// One pass of the loop, as the daemon would run it.
    fn turn(&mut self) {
        let now = Instant::now();
        let timeout = self
            .ex
            .next_deadline()
            .map_or(Duration::from_millis(20), |d| {
                d.saturating_duration_since(now)
                    .min(Duration::from_millis(20))
            });
        self.poll.poll(&mut self.events, Some(timeout)).unwrap();
        let tokens: Vec<mio::Token> = self.events.iter().map(|e| e.token()).collect();
        for t in tokens {
            assert!(
                self.ex.owns(t),
                "event for a token the exporter does not own: {t:?}"
            );
            if let Some(s) = self.ex.ready(t, self.poll.registry(), Instant::now()) {
                self.scrapes += 1;
                match &mut self.held {
                    Some(h) => h.push(s),
                    None => self.ex.respond(s, &self.body, self.poll.registry()),
                }
            }
        }
        self.ex.expire(Instant::now(), self.poll.registry());
    }

    /// Runs the loop until `cond` holds; panics after [`LIMIT`].
    fn until(&mut self, what: &str, mut cond: impl FnMut(&HttpExporter) -> bool) {
        let end = Instant::now() + LIMIT;
        while !cond(&self.ex) {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            self.turn();
        }
    }

    /// Runs the loop until the client thread ends; returns what it read, which must have ended
    /// in an orderly close.
    fn finish(&mut self, client: JoinHandle<Reply>) -> Vec<u8> {
        let r = self.finish_raw(client);
        assert_eq!(
            r.error,
            None,
            "client read failed after {:?}",
            String::from_utf8_lossy(&r.bytes)
        );
        r.bytes
    }

    fn finish_raw(&mut self, client: JoinHandle<Reply>) -> Reply {
        self.until("the client to finish", |_| client.is_finished());
        client.join().unwrap()
    }

    /// Sends `request`, returns the raw response.
    fn exchange(&mut self, request: &[u8]) -> Vec<u8> {
        let c = client(self.addr(), request.to_vec(), None);
        self.finish(c)
    }
}

/// What a client read, and the error that ended its reading, if any.
#[derive(Debug)]
struct Reply {
    bytes: Vec<u8>,
    error: Option<std::io::ErrorKind>,
}

/// A client thread: connects, sends `request` (then the rest after `go`, if given), reads to EOF.
fn client(
    addr: SocketAddr,
    request: Vec<u8>,
    rest: Option<(Vec<u8>, mpsc::Receiver<()>)>,
) -> JoinHandle<Reply> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        // Longer than the loop's limit: the loop gives up first, with a clearer message.
        s.set_read_timeout(Some(2 * LIMIT)).unwrap();
        s.write_all(&request).unwrap();
        if let Some((more, go)) = rest {
            go.recv_timeout(LIMIT).unwrap();
            s.write_all(&more).unwrap();
        }
        let mut bytes = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Reply { bytes, error: None },
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Reply {
                        bytes,
                        error: Some(e.kind()),
                    }
                }
            }
        }
    })
}

/// Splits a response into status line, headers (lowercased names) and body.
fn split(resp: &[u8]) -> (String, Vec<(String, String)>, Vec<u8>) {
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(resp)));
    let head = std::str::from_utf8(&resp[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k.to_ascii_lowercase(), v.to_owned())
        })
        .collect();
    (status, headers, resp[end + 4..].to_vec())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
    h.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no header {name} in {h:?}"))
}

#[test]
fn metrics_http_get_serves_the_rendered_snapshot() {
    let body = render(&super::sample_snapshot());
    let mut l = Loop::new(ExporterOptions::default(), body.clone());
    let resp = l.exchange(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n");
    let (status, headers, got) = split(&resp);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(header(&headers, "content-type"), CONTENT_TYPE);
    assert_eq!(header(&headers, "content-length"), body.len().to_string());
    assert_eq!(header(&headers, "connection"), "close");
    assert_eq!(String::from_utf8(got).unwrap(), body);
    prom::parse(&body).unwrap();
    assert_eq!(l.scrapes, 1);
    // The client closed after reading: the exporter lets the connection go.
    l.until("the connection to close", |ex| ex.connections() == 0);
}

#[test]
fn metrics_http_other_requests_get_errors_without_rendering() {
    let mut l = Loop::new(ExporterOptions::default(), "m 1\n".to_owned());
    for (req, want) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], "HTTP/1.1 404 Not Found"),
        (b"GET /metrics/x HTTP/1.0\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 405 Method Not Allowed",
        ),
        (b"hello there\r\n\r\n", "HTTP/1.1 400 Bad Request"),
    ] {
        let (status, headers, body) = split(&l.exchange(req));
        assert_eq!(status, want, "{:?}", String::from_utf8_lossy(req));
        assert_eq!(header(&headers, "content-length"), body.len().to_string());
        if want.contains("405") {
            assert_eq!(header(&headers, "allow"), "GET, HEAD");
        }
    }
    assert_eq!(l.scrapes, 0);
    // HEAD is a scrape without a body.
    let (status, headers, body) = split(&l.exchange(b"HEAD /metrics HTTP/1.1\r\n\r\n"));
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(header(&headers, "content-length"), "4");
    assert!(body.is_empty());
    assert_eq!(l.scrapes, 1);
    l.until("every connection to close", |ex| ex.connections() == 0);
}

#[test]
fn metrics_http_large_body_and_split_request() {
    // Larger than the socket buffers of a client that does not read yet: the response must go
    // out over several writable events.
    let body: String = (0..300_000)
        .map(|i| format!("m{{i=\"{i}\"}} {i}\n"))
        .collect();
    assert!(body.len() > 4 << 20);
    let mut l = Loop::new(ExporterOptions::default(), body.clone());
    let (go_tx, go_rx) = mpsc::channel();
    let (read_tx, read_rx) = mpsc::channel::<()>();
    let addr = l.addr();
    let c = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(2 * LIMIT)).unwrap();
        s.write_all(b"GET /metr").unwrap();
        go_rx.recv_timeout(LIMIT).unwrap();
        s.write_all(b"ics HTTP/1.1\r\n\r\n").unwrap();
        read_rx.recv_timeout(LIMIT).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        Reply {
            bytes: out,
            error: None,
        }
    });
    l.until("the connection to be accepted", |ex| ex.connections() == 1);
    // Give the first half a chance to be read on its own before sending the rest.
    for _ in 0..3 {
        l.turn();
    }
    assert_eq!(l.scrapes, 0, "answered before the head was complete");
    go_tx.send(()).unwrap();
    l.until("the scrape", |ex| ex.unsent_bytes() > 0);
    // The socket is full and the loop goes on (nothing blocks); now let the client read.
    l.turn();
    assert!(l.ex.unsent_bytes() > 0);
    read_tx.send(()).unwrap();
    let (status, _, got) = split(&l.finish(c));
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(got.len(), body.len());
    assert!(got == body.as_bytes());
    assert_eq!(l.ex.unsent_bytes(), 0);
}

#[test]
fn metrics_http_idle_connections_time_out() {
    let opts = ExporterOptions {
        timeout: Duration::from_millis(200),
        ..ExporterOptions::default()
    };
    let mut l = Loop::new(opts, String::new());
    let start = Instant::now();
    let resp = l.exchange(b"GET /metrics HTTP/1.1\r\n"); // never finished
    assert!(resp.is_empty(), "{:?}", String::from_utf8_lossy(&resp));
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!(l.ex.connections(), 0);
    assert_eq!(l.ex.next_deadline(), None);
}

#[test]
fn metrics_http_connection_limit_and_oversized_head() {
    let opts = ExporterOptions {
        max_connections: 1,
        max_request_bytes: 64,
        ..ExporterOptions::default()
    };
    let mut l = Loop::new(opts, "m 1\n".to_owned());
    // A holds the only slot.
    let (go_tx, go_rx) = mpsc::channel();
    let a = client(
        l.addr(),
        Vec::new(),
        Some((b"GET /metrics HTTP/1.1\r\n\r\n".to_vec(), go_rx)),
    );
    l.until("A to be accepted", |ex| ex.connections() == 1);
    // B is accepted and closed at once (a reset if its request arrived before the close).
    let b = client(l.addr(), b"GET /metrics HTTP/1.1\r\n\r\n".to_vec(), None);
    let b = l.finish_raw(b);
    assert!(
        b.bytes.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&b.bytes)
    );
    assert!(
        matches!(b.error, None | Some(std::io::ErrorKind::ConnectionReset)),
        "{b:?}"
    );
    assert_eq!(l.scrapes, 0);
    go_tx.send(()).unwrap();
    let (status, _, body) = split(&l.finish(a));
    assert_eq!(
        (status.as_str(), body.as_slice()),
        ("HTTP/1.1 200 OK", &b"m 1\n"[..])
    );
    l.until("A's connection to close", |ex| ex.connections() == 0);
    // A head longer than the limit.
    let mut big = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 100));
    let (status, _, _) = split(&l.exchange(&big));
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");
    assert_eq!(l.scrapes, 1);
}

#[test]
fn metrics_http_bind_errors_are_clear() {
    let l = Loop::new(ExporterOptions::default(), String::new());
    let err = HttpExporter::bind(l.addr(), ExporterOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&l.addr().to_string()) && msg.contains("metrics_addr"),
        "{msg}"
    );
    let zero = ExporterOptions {
        max_connections: 0,
        ..ExporterOptions::default()
    };
    assert!(HttpExporter::bind("127.0.0.1:0".parse().unwrap(), zero).is_err());
}

#[test]
fn metrics_http_a_stale_scrape_never_answers_a_newer_connection() {
    let opts = ExporterOptions {
        max_connections: 1,
        timeout: Duration::from_millis(300),
        ..ExporterOptions::default()
    };
    let mut l = Loop::new(opts, String::new());
    l.held = Some(Vec::new());
    // A asks, is never answered, and times out.
    let a = client(l.addr(), b"GET /metrics HTTP/1.1\r\n\r\n".to_vec(), None);
    let a = l.finish(a);
    assert!(a.is_empty(), "{:?}", String::from_utf8_lossy(&a));
    assert_eq!(l.scrapes, 1);
    l.until("A's connection to go", |ex| ex.connections() == 0);
    // B gets the same slot (the only one) and asks too.
    let b = client(l.addr(), b"GET /metrics HTTP/1.1\r\n\r\n".to_vec(), None);
    let end = Instant::now() + LIMIT;
    while l.scrapes < 2 {
        assert!(Instant::now() < end, "timed out waiting for B's scrape");
        l.turn();
    }
    let held = l.held.take().unwrap();
    assert_eq!(held.len(), 2);
    assert_ne!(held[0], held[1]);
    // A's scrape must not answer B.
    l.ex.respond(held[0], "stale\n", l.poll.registry());
    l.ex.respond(held[1], "fresh\n", l.poll.registry());
    let (status, _, body) = split(&l.finish(b));
    assert_eq!(
        (status.as_str(), body.as_slice()),
        ("HTTP/1.1 200 OK", &b"fresh\n"[..])
    );
}
