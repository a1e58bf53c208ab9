//! The control server under a real mio poll with real client sockets. Every wait is on a
//! condition with a deadline.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream as StdStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use super::{Access, ControlServer, Incoming, CONN_BASE, LISTENER, MAX_READ_PER_EVENT};
use crate::control::proto::Response;

const LIMIT: Duration = Duration::from_secs(5);

/// A stand-in for the daemon's loop: one poll and the server.
struct Rig {
    poll: Poll,
    events: Events,
    server: ControlServer,
    dir: PathBuf,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Rig {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "amp-ctl-server-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let poll = Poll::new().unwrap();
        let server =
            ControlServer::bind(&dir.join("ctl.sock"), poll.registry(), Access::default()).unwrap();
        Self {
            poll,
            events: Events::with_capacity(64),
            server,
            dir,
        }
    }

    fn connect(&self) -> StdStream {
        StdStream::connect(self.server.path()).unwrap()
    }

    /// One pass of the loop, as the daemon runs it: accepts, reads. Returns the connection
    /// events seen and the requests read.
    fn turn(&mut self, timeout: Duration) -> (usize, Vec<Incoming>) {
        self.poll.poll(&mut self.events, Some(timeout)).unwrap();
        let tokens: Vec<Token> = self.events.iter().map(mio::event::Event::token).collect();
        let mut conn_events = 0;
        let mut got = Vec::new();
        for t in tokens {
            if t == LISTENER {
                self.server.accept(self.poll.registry());
            } else {
                assert!(t.0 >= CONN_BASE, "unexpected token {t:?}");
                conn_events += 1;
                got.extend(self.server.ready(t, self.poll.registry()));
            }
        }
        (conn_events, got)
    }

    /// Runs the loop until `n` requests have been read; returns them.
    fn requests(&mut self, n: usize) -> Vec<Incoming> {
        let end = Instant::now() + LIMIT;
        let mut got = Vec::new();
        while got.len() < n {
            assert!(
                Instant::now() < end,
                "timed out: {} of {n} requests read",
                got.len()
            );
            got.extend(self.turn(Duration::from_millis(20)).1);
        }
        got
    }
}

const STATUS: &[u8] = b"{\"v\":1,\"cmd\":\"status\"}\n";

#[test]
fn a_half_closed_connection_waiting_for_its_answer_raises_no_further_events() {
    // `printf '…' | socat - UNIX-CONNECT:…` half-closes after its request; a request whose answer
    // comes later (submit --wait) then must not turn the loop into a busy spin on the EOF.
    let mut r = Rig::new();
    let mut client = r.connect();
    client.write_all(STATUS).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let got = r.requests(1);
    let id = got[0].0;
    assert!(got[0].2.is_ok(), "{:?}", got[0].2);

    let mut events = 0;
    let end = Instant::now() + Duration::from_millis(200);
    while Instant::now() < end {
        let (n, more) = r.turn(Duration::from_millis(20));
        assert!(more.is_empty(), "requests after EOF: {more:?}");
        events += n;
    }
    assert!(
        events <= 1,
        "{events} readiness events in 200 ms for a connection with nothing new to read"
    );
    assert!(r.server.is_open(id), "closed before its answer was sent");

    r.server.respond(
        id,
        &Response::ok(serde_json::json!("done")),
        r.poll.registry(),
    );
    assert!(!r.server.is_open(id), "not closed once answered");
    let mut text = String::new();
    client.read_to_string(&mut text).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("\"done\""), "{text}");
}

#[test]
fn input_beyond_one_events_budget_is_read_on_later_events_up_to_the_half_close() {
    // Several budgets' worth of requests are already queued, with the half-close behind them,
    // before ampd reads any: no new data will raise another edge, so every event after the
    // first must come from the server re-arming itself. All are read, answered, then closed.
    let mut r = Rig::new();
    let mut client = r.connect();
    nix::sys::socket::setsockopt(&client, nix::sys::socket::sockopt::SndBuf, &(1 << 20)).unwrap();
    client.set_write_timeout(Some(LIMIT)).unwrap();
    let n = MAX_READ_PER_EVENT * 5 / 2 / STATUS.len();
    client.write_all(&STATUS.repeat(n)).unwrap();
    client.shutdown(Shutdown::Write).unwrap();

    let end = Instant::now() + LIMIT;
    let mut got = Vec::new();
    let mut most_per_turn = 0;
    while got.len() < n {
        assert!(
            Instant::now() < end,
            "timed out: {} of {n} requests read",
            got.len()
        );
        let (_, more) = r.turn(Duration::from_millis(20));
        most_per_turn = most_per_turn.max(more.len());
        got.extend(more);
    }
    // The budget is checked before each read of at most 16 KiB.
    assert!(
        most_per_turn <= (MAX_READ_PER_EVENT + (16 << 10)) / STATUS.len() + 1,
        "{most_per_turn} requests read in one pass"
    );
    assert!(most_per_turn < n, "everything was read in one pass");
    let id = got[0].0;
    for (k, (conn, _, req)) in got.iter().enumerate() {
        assert_eq!(*conn, id);
        assert!(req.is_ok(), "{req:?}");
        r.server
            .respond(id, &Response::ok(serde_json::json!(k)), r.poll.registry());
    }
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        client.read_to_string(&mut text).unwrap();
        text
    });
    let end = Instant::now() + LIMIT;
    while r.server.is_open(id) {
        assert!(Instant::now() < end, "not closed after the last answer");
        r.turn(Duration::from_millis(20));
    }
    let text = reader.join().unwrap();
    assert_eq!(text.lines().count(), n);
}
