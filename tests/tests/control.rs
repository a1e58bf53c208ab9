//! The control socket end to end (see `docs/control-protocol.md`): every implemented request
//! answers `ok` with the documented shape; bad lines get an error naming the problem and leave
//! the connection usable; oversized lines, half-written lines, many concurrent clients and a
//! client that never reads do not disturb ampd; peers of another uid are refused (filesystem
//! mode and `SO_PEERCRED`); `ampctl`'s tables and JSON output; `sd_notify` through
//! `NOTIFY_SOCKET`.

use std::io::{BufRead, BufReader, ErrorKind, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use amp_supervisor::control::client;
use amp_supervisor::control::proto::MAX_REQUEST_LINE;
use amp_tests::{bin, event_seq, worker, Ampd, Scratch};
use serde_json::Value;

/// Deadline of every wait for a state.
const T: Duration = Duration::from_secs(15);
/// Read/write timeout of raw connections: a response later than this is a failure.
const IO: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Raw protocol helpers.

/// A raw connection: lines in, lines out, nothing added.
struct Raw {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Raw {
    fn connect(path: &Path) -> Self {
        let s = UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", path.display()));
        s.set_read_timeout(Some(IO)).expect("read timeout");
        s.set_write_timeout(Some(IO)).expect("write timeout");
        Self {
            writer: s.try_clone().expect("clone socket"),
            reader: BufReader::new(s),
        }
    }

    /// Sends `line` and a newline.
    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .unwrap_or_else(|e| panic!("cannot send {line:?}: {e}"));
    }

    /// Reads one response line; panics on EOF, timeout or non-JSON.
    fn recv(&mut self) -> Value {
        let mut buf = String::new();
        match self.reader.read_line(&mut buf) {
            Ok(n) if n > 0 && buf.ends_with('\n') => serde_json::from_str(&buf)
                .unwrap_or_else(|e| panic!("response is not JSON ({e}): {buf:?}")),
            Ok(_) => panic!("ampd closed the connection instead of answering (read {buf:?})"),
            Err(e) => panic!("no response within {IO:?}: {e}"),
        }
    }

    fn ask(&mut self, line: &str) -> Value {
        self.send(line);
        self.recv()
    }

    /// Whether ampd closes the connection (EOF or reset) within [`IO`]; returns what was still
    /// sent before the close.
    fn closed(&mut self) -> Result<Vec<u8>, std::io::Error> {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => Ok(rest),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(rest),
            Err(e) => Err(e),
        }
    }
}

/// Asserts a success line (`v` 1, `ok` true, no `error`) and returns its `data`.
#[track_caller]
fn ok(v: &Value) -> &Value {
    assert_eq!(v["v"], 1, "every response carries v=1: {v}");
    assert_eq!(v["ok"], true, "expected success: {v}");
    assert!(v.get("error").is_none(), "success with an error: {v}");
    v.get("data")
        .unwrap_or_else(|| panic!("success without data: {v}"))
}

/// Asserts a failure line (`v` 1, `ok` false, no `data`) and returns its message.
#[track_caller]
fn refused(v: &Value) -> String {
    assert_eq!(v["v"], 1, "every response carries v=1: {v}");
    assert_eq!(v["ok"], false, "expected an error response: {v}");
    assert!(v.get("data").is_none(), "error with data: {v}");
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("error without a message: {v}"))
        .to_owned()
}

#[track_caller]
fn u(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("`{key}` is not an unsigned integer in {v}"))
}

#[track_caller]
fn f(v: &Value, key: &str) -> f64 {
    v.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}

#[track_caller]
fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("`{key}` is not a string in {v}"))
}

#[track_caller]
fn arr<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("`{key}` is not an array in {v}"))
}

#[track_caller]
fn b(v: &Value, key: &str) -> bool {
    v.get(key)
        .and_then(Value::as_bool)
        .unwrap_or_else(|| panic!("`{key}` is not a bool in {v}"))
}

/// Asserts that `key` is present and either null or an unsigned integer.
#[track_caller]
fn opt_u(v: &Value, key: &str) {
    let x = v
        .get(key)
        .unwrap_or_else(|| panic!("`{key}` missing in {v}"));
    assert!(
        x.is_null() || x.is_u64(),
        "`{key}` is neither null nor a count in {v}"
    );
}

/// One request on a fresh connection.
fn ask(d: &Ampd, line: &str) -> Value {
    Raw::connect(&d.socket).ask(line)
}

/// Polls `ask(line)` until `cond` holds on the response; panics with the last one.
fn ask_until(d: &Ampd, line: &str, what: &str, mut cond: impl FnMut(&Value) -> bool) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let v = ask(d, line);
        if cond(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last answer to {line}: {v}\nlog:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Receives a line with `SCM_RIGHTS` fds: the `attach` answer.
fn recv_with_fds(sock: &UnixStream) -> (Value, Vec<RawFd>) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut line = Vec::new();
    let mut fds = Vec::new();
    while !line.contains(&b'\n') {
        let mut buf = [0u8; 4096];
        let n = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let mut space = nix::cmsg_space!([RawFd; 4]);
            let msg = recvmsg::<()>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .expect("recvmsg on the control socket");
            for c in msg.cmsgs().expect("control messages") {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    fds.extend(raw);
                }
            }
            msg.bytes
        };
        assert!(n > 0, "ampd closed the connection during attach");
        line.extend_from_slice(&buf[..n]);
    }
    let v = serde_json::from_slice(&line)
        .unwrap_or_else(|e| panic!("attach answer is not JSON ({e}): {line:?}"));
    (v, fds)
}

// ---------------------------------------------------------------------------------------------
// Every request.

const ALL: &str = r#"
[workers.echo]
command = "amp-echo"
kinds = ["echo"]

[workers.flaky]
command = "amp-flaky"
kinds = ["flaky"]

[workers.chatty]
command = "sh"
args = ["-c", "i=0; while :; do i=$((i+1)); echo line-$i; sleep 0.1; done"]
ipc = false

[kinds.flaky]
max_attempts = 1

[[class]]
name = "interactive"
weight = 8

[[class]]
name = "batch"
weight = 1
"#;

#[test]
fn every_request_answers_ok_with_its_documented_shape() {
    let mut d = Ampd::start("", ALL);
    d.wait_ready(&["echo", "flaky", "chatty"], T);
    let mut c = Raw::connect(&d.socket);

    // status
    let v = c.ask(r#"{"v":1,"cmd":"status"}"#);
    let st = ok(&v);
    assert_eq!(u(st, "pid"), u64::from(d.pid()), "{st}");
    assert!(f(st, "uptime_s") > 0.0, "{st}");
    assert!(!b(st, "shutting_down"), "{st}");
    assert!(arr(st, "anomalies").iter().all(Value::is_string), "{st}");
    let names: Vec<&str> = arr(st, "workers").iter().map(|w| s(w, "name")).collect();
    assert_eq!(
        names,
        ["echo", "flaky", "chatty"],
        "dependency (here: config) order"
    );
    for w in arr(st, "workers") {
        assert_eq!(s(w, "state"), "ready", "{w}");
        assert!(u(w, "pid") > 0, "{w}");
        assert_eq!(u(w, "restarts"), 0, "{w}");
        assert!(w["last_exit"].is_null(), "{w}");
        opt_u(w, "ready_ms");
    }
    let evs = arr(st, "events");
    assert!(
        evs.iter().any(|e| s(e, "kind") == "startup_complete"),
        "{st}"
    );
    for e in evs {
        u(e, "seq");
        u(e, "at_ms");
        s(e, "unit");
        s(e, "detail");
    }
    let kinds: Vec<&str> = arr(st, "queues").iter().map(|q| s(q, "kind")).collect();
    assert_eq!(kinds, ["echo", "flaky"], "{st}");
    for q in arr(st, "queues") {
        assert_eq!(s(q, "policy"), "least_loaded", "{q}");
        assert_eq!(
            q["depth"],
            serde_json::json!([["interactive", 0], ["batch", 0]]),
            "{q}"
        );
        for k in ["rejected", "dispatched", "in_flight"] {
            assert_eq!(u(q, k), 0, "{q}");
        }
    }
    for k in [
        "queued",
        "in_flight",
        "waiting_retry",
        "dead_lettered",
        "done",
        "retried",
        "late_dropped",
    ] {
        assert_eq!(u(&st["tasks"], k), 0, "{st}");
    }

    // submit: waiting, queued, failing into the dead-letter queue, refused.
    let v = c.ask(r#"{"v":1,"cmd":"submit","kind":"echo","payload":"hello","wait":true}"#);
    let r = ok(&v);
    assert_eq!((s(r, "status"), s(r, "result")), ("ok", "hello"), "{r}");
    assert_eq!(u(r, "attempts"), 1, "{r}");
    assert!(u(r, "task_id") > 0, "{r}");
    let v = c.ask(
        r#"{"v":1,"cmd":"submit","kind":"echo","priority":"interactive","payload_b64":"AAEC","timeout_ms":5000,"idempotency_key":"k1"}"#,
    );
    let r = ok(&v);
    assert_eq!(s(r, "status"), "queued", "{r}");
    assert!(u(r, "task_id") > 0, "{r}");
    let v = c.ask(r#"{"v":1,"cmd":"submit","kind":"flaky","payload":"retry","wait":true}"#);
    let r = ok(&v);
    assert_eq!(s(r, "status"), "dead_lettered", "{r}");
    assert!(s(r, "result").contains("transient failure"), "{r}");
    let dead = u(r, "task_id");
    let e = refused(&c.ask(r#"{"v":1,"cmd":"submit","kind":"nope"}"#));
    assert!(e.contains("\"nope\"") && e.contains("echo, flaky"), "{e}");
    let e = refused(&c.ask(r#"{"v":1,"cmd":"submit","kind":"echo","priority":"urgent"}"#));
    assert!(
        e.contains("\"urgent\"") && e.contains("interactive, batch"),
        "{e}"
    );
    let e = refused(
        &c.ask(r#"{"v":1,"cmd":"submit","kind":"echo","payload":"a","payload_b64":"AA=="}"#),
    );
    assert!(e.contains("payload_b64"), "{e}");
    let e = refused(&c.ask(r#"{"v":1,"cmd":"submit","kind":"echo","payload_b64":"**"}"#));
    assert!(e.contains("not valid base64"), "{e}");

    // workers
    let v = ask_until(
        &d,
        r#"{"v":1,"cmd":"workers"}"#,
        "echo's 2 completions",
        |v| ok(v)["workers"][0]["completed_ok"] == 2,
    );
    let ws = arr(ok(&v), "workers");
    assert_eq!(ws.len(), 3, "{v}");
    for w in ws {
        s(w, "name");
        assert_eq!(s(w, "state"), "ready", "{w}");
        for k in [
            "pid",
            "restarts",
            "in_flight",
            "completed_ok",
            "completed_err",
        ] {
            u(w, k);
        }
        // Sampled from /proc once a second: null until a unit's first sample.
        for k in ["cpu_s", "started_s_ago"] {
            let x = &w[k];
            assert!(x.is_null() || x.is_f64(), "`{k}` in {w}");
        }
        opt_u(w, "rss_bytes");
        assert!(f(w, "started_s_ago") >= 0.0, "{w}");
    }
    assert_eq!(
        u(&ws[1], "completed_err"),
        1,
        "flaky failed once: {}",
        ws[1]
    );

    // queues
    let v = c.ask(r#"{"v":1,"cmd":"queues"}"#);
    let qs = arr(ok(&v), "queues");
    assert_eq!(qs.len(), 2, "{v}");
    assert_eq!(
        (s(&qs[0], "kind"), u(&qs[0], "dispatched")),
        ("echo", 2),
        "{v}"
    );
    assert_eq!(
        (s(&qs[1], "kind"), u(&qs[1], "dispatched")),
        ("flaky", 1),
        "{v}"
    );

    // tasks
    let v = c.ask(r#"{"v":1,"cmd":"tasks"}"#);
    let t = ok(&v);
    assert_eq!(u(&t["census"], "done"), 2, "dead-lettered is not done: {t}");
    assert_eq!(u(&t["census"], "dead_lettered"), 1, "{t}");
    let units: Vec<&str> = arr(t, "workers").iter().map(|w| s(w, "unit")).collect();
    assert_eq!(units, ["echo", "flaky", "chatty"], "{t}");
    for w in arr(t, "workers") {
        assert!(arr(w, "in_flight").is_empty(), "{w}");
    }

    // stats
    let v = c.ask(r#"{"v":1,"cmd":"stats"}"#);
    let rows = arr(ok(&v), "stats");
    let pairs: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (s(r, "kind"), s(r, "worker")))
        .collect();
    assert_eq!(pairs, [("echo", "echo"), ("flaky", "flaky")], "{v}");
    assert_eq!(
        (u(&rows[0], "completed"), u(&rows[0], "errors")),
        (2, 0),
        "{v}"
    );
    assert_eq!(
        (u(&rows[1], "completed"), u(&rows[1], "errors")),
        (1, 1),
        "{v}"
    );
    for r in rows {
        let q: Vec<f64> = ["p50_ms", "p90_ms", "p99_ms", "max_ms"]
            .iter()
            .map(|k| f(r, k))
            .collect();
        assert!(
            q.windows(2).all(|w| w[0] <= w[1]),
            "percentiles ordered: {r}"
        );
        assert!(f(r, "throughput_per_s") > 0.0, "{r}");
        u(r, "kind_retries");
    }

    // route_get / route_set
    let v = c.ask(r#"{"v":1,"cmd":"route_get","kind":"echo"}"#);
    let rg = ok(&v);
    assert_eq!(
        rg.as_object().map(|o| o.len()),
        Some(1),
        "only the asked kind: {rg}"
    );
    assert_eq!(s(&rg["echo"]["stats"], "policy"), "least_loaded", "{rg}");
    let v = c.ask(r#"{"v":1,"cmd":"route_get"}"#);
    let all = ok(&v);
    assert!(
        all.get("echo").is_some() && all.get("flaky").is_some(),
        "{all}"
    );
    let v = c.ask(r#"{"v":1,"cmd":"route_set","kind":"echo","policy":"round_robin"}"#);
    assert_eq!(
        ok(&v),
        &serde_json::json!({"kind": "echo", "policy": "round_robin", "was": "least_loaded"})
    );
    let v = c.ask(r#"{"v":1,"cmd":"route_get","kind":"echo"}"#);
    assert_eq!(s(&ok(&v)["echo"]["stats"], "policy"), "round_robin", "{v}");
    let e = refused(&c.ask(r#"{"v":1,"cmd":"route_set","kind":"echo","policy":"random"}"#));
    assert!(e.contains("random") && e.contains("peak_ewma"), "{e}");
    let e = refused(&c.ask(r#"{"v":1,"cmd":"route_get","kind":"nope"}"#));
    assert!(e.contains("\"nope\""), "{e}");

    // dlq_list / dlq_retry / dlq_purge
    let v = c.ask(r#"{"v":1,"cmd":"dlq_list"}"#);
    let entries = arr(ok(&v), "entries");
    assert_eq!(entries.len(), 1, "{v}");
    let e0 = &entries[0];
    assert_eq!(
        (u(e0, "id"), s(e0, "kind"), s(e0, "class")),
        (dead, "flaky", "batch")
    );
    assert_eq!((u(e0, "attempts"), u(e0, "payload_len")), (1, 5), "{e0}");
    assert!(s(e0, "reason").contains("max_attempts = 1"), "{e0}");
    u(e0, "age_ms");
    let v = c.ask(&format!(r#"{{"v":1,"cmd":"dlq_retry","id":{dead}}}"#));
    assert_eq!(ok(&v), &serde_json::json!({"requeued": 1}));
    // "retry" fails again: the re-run ends in the dead-letter queue again.
    ask_until(
        &d,
        r#"{"v":1,"cmd":"dlq_list"}"#,
        "the re-run dead-lettered",
        |v| ok(v)["entries"].as_array().is_some_and(|e| e.len() == 1),
    );
    let e = refused(&c.ask(r#"{"v":1,"cmd":"dlq_retry","id":999999}"#));
    assert!(e.contains("999999"), "{e}");
    let v = c.ask(&format!(r#"{{"v":1,"cmd":"dlq_purge","id":{dead}}}"#));
    assert_eq!(ok(&v), &serde_json::json!({"purged": [dead]}));
    let v = c.ask(r#"{"v":1,"cmd":"dlq_list"}"#);
    assert_eq!(ok(&v), &serde_json::json!({"entries": []}));
    let v = c.ask(r#"{"v":1,"cmd":"dlq_retry"}"#);
    assert_eq!(ok(&v), &serde_json::json!({"requeued": 0}));
    let v = c.ask(r#"{"v":1,"cmd":"dlq_purge"}"#);
    assert_eq!(ok(&v), &serde_json::json!({"purged": []}));

    // pause / resume
    let v = c.ask(r#"{"v":1,"cmd":"pause"}"#);
    assert_eq!(ok(&v), &serde_json::json!({"paused": true}));
    let v = c.ask(r#"{"v":1,"cmd":"submit","kind":"echo","payload":"x","wait":true}"#);
    let r = ok(&v);
    assert_eq!(s(r, "status"), "rejected", "{r}");
    assert!(s(r, "result").contains("paused"), "{r}");
    let v = c.ask(r#"{"v":1,"cmd":"resume"}"#);
    assert_eq!(ok(&v), &serde_json::json!({"paused": false}));
    let v = c.ask(r#"{"v":1,"cmd":"submit","kind":"echo","payload":"y","wait":true}"#);
    assert_eq!(s(ok(&v), "status"), "ok", "{v}");

    // events (+ since, + follow)
    let v = c.ask(r#"{"v":1,"cmd":"events"}"#);
    let evs = arr(ok(&v), "events").clone();
    assert!(!b(ok(&v), "follow"));
    let seqs: Vec<u64> = evs.iter().map(|e| u(e, "seq")).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let kinds: Vec<&str> = evs.iter().map(|e| s(e, "kind")).collect();
    for k in [
        "policy_changed",
        "dead_lettered",
        "intake_paused",
        "intake_resumed",
    ] {
        assert!(kinds.contains(&k), "no {k} event: {kinds:?}");
    }
    let last = *seqs.last().expect("events");
    let v = c.ask(&format!(r#"{{"v":1,"cmd":"events","since":{}}}"#, last - 2));
    let tail: Vec<u64> = arr(ok(&v), "events").iter().map(|e| u(e, "seq")).collect();
    // (A sampler event may have been added since.)
    assert_eq!(tail[..2], [last - 1, last], "{v}");
    let mut follower = Raw::connect(&d.socket);
    let v = follower.ask(&format!(
        r#"{{"v":1,"cmd":"events","since":{last},"follow":true}}"#
    ));
    assert!(b(ok(&v), "follow"), "{v}");
    let mut seen = last;
    for e in arr(ok(&v), "events") {
        assert_eq!(u(e, "seq"), seen + 1, "{v}");
        seen += 1;
    }
    ok(&c.ask(r#"{"v":1,"cmd":"pause"}"#));
    ok(&c.ask(r#"{"v":1,"cmd":"resume"}"#));
    // Streamed one by one, without gaps, until both have arrived (a sampler event such as
    // `anomaly_flagged` may come in between).
    let mut wanted = vec!["intake_paused", "intake_resumed"];
    while !wanted.is_empty() {
        let v = follower.recv();
        let ev = &ok(&v)["event"];
        assert_eq!(u(ev, "seq"), seen + 1, "no gap in the stream: {v}");
        seen += 1;
        if s(ev, "kind") == wanted[0] {
            wanted.remove(0);
        }
        assert!(seen < last + 20, "stream lacks {wanted:?}");
    }
    drop(follower);

    // logs (+ follow)
    let v = ask_until(
        &d,
        r#"{"v":1,"cmd":"logs","name":"chatty","lines":2}"#,
        "2 lines",
        |v| ok(v)["lines"].as_array().is_some_and(|l| l.len() == 2),
    );
    let l = ok(&v);
    assert_eq!((s(l, "unit"), b(l, "follow")), ("chatty", false), "{l}");
    let n = |line: &str| -> u64 {
        line.strip_prefix("line-")
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("unexpected output line {line:?}"))
    };
    let got: Vec<u64> = arr(l, "lines")
        .iter()
        .map(|x| n(x.as_str().expect("line")))
        .collect();
    assert_eq!(
        got[0] + 1,
        got[1],
        "the last 2 lines, oldest first: {got:?}"
    );
    let mut tail = Raw::connect(&d.socket);
    let v = tail.ask(r#"{"v":1,"cmd":"logs","name":"chatty","lines":1,"follow":true}"#);
    let first = n(arr(ok(&v), "lines")[0].as_str().expect("line"));
    assert!(b(ok(&v), "follow"), "{v}");
    for k in 1..=2 {
        let v = tail.recv();
        let l = ok(&v);
        assert_eq!(s(l, "unit"), "chatty", "{l}");
        assert_eq!(
            n(s(l, "line")),
            first + k,
            "streamed in order after the tail: {l}"
        );
    }
    drop(tail);
    let e = refused(&c.ask(r#"{"v":1,"cmd":"logs","name":"nope"}"#));
    assert!(
        e.contains("\"nope\"") && e.contains("echo, flaky, chatty"),
        "{e}"
    );

    // restart / stop / start / drain
    let old = worker(&d.status(), "echo")
        .and_then(|w| w.pid)
        .expect("pid");
    let v = c.ask(r#"{"v":1,"cmd":"restart","name":"echo"}"#);
    assert!(s(ok(&v), "done").starts_with("Restart"), "{v}");
    d.wait_for("echo restarted", T, |st| {
        worker(st, "echo").is_some_and(|w| w.state == "ready" && w.pid.is_some_and(|p| p != old))
    });
    let v = c.ask(r#"{"v":1,"cmd":"stop","name":"flaky"}"#);
    assert!(s(ok(&v), "done").starts_with("Stop"), "{v}");
    d.wait_for("flaky stopped", T, |st| {
        worker(st, "flaky").is_some_and(|w| w.state == "stopped" && w.pid.is_none())
    });
    let v = c.ask(r#"{"v":1,"cmd":"start","name":"flaky"}"#);
    assert!(s(ok(&v), "done").starts_with("Start"), "{v}");
    d.wait_ready(&["flaky"], T);
    let v = c.ask(r#"{"v":1,"cmd":"drain","name":"echo"}"#);
    assert!(s(ok(&v), "done").starts_with("Drain"), "{v}");
    d.wait_for("echo drained and stopped", T, |st| {
        worker(st, "echo").is_some_and(|w| w.state == "stopped")
    });
    ok(&c.ask(r#"{"v":1,"cmd":"start","name":"echo"}"#));
    d.wait_ready(&["echo"], T);
    let e = refused(&c.ask(r#"{"v":1,"cmd":"stop","name":"nope","with_dependents":true}"#));
    assert!(e.contains("\"nope\""), "{e}");

    // scale: a replica is added (named `echo#1`), then removed again.
    let v = c.ask(r#"{"v":1,"cmd":"scale","name":"echo","replicas":2}"#);
    assert_eq!(
        ok(&v),
        &serde_json::json!({"worker": "echo", "replicas": 2, "was": 1})
    );
    d.wait_ready(&["echo", "echo#1"], T);
    let v = c.ask(r#"{"v":1,"cmd":"scale","name":"echo","replicas":1}"#);
    assert_eq!(
        ok(&v),
        &serde_json::json!({"worker": "echo", "replicas": 1, "was": 2})
    );
    d.wait_for("echo#1 gone", T, |st| worker(st, "echo#1").is_none());
    let e = refused(&c.ask(r#"{"v":1,"cmd":"scale","name":"nope","replicas":2}"#));
    assert!(e.contains("\"nope\""), "{e}");
    let e = refused(&c.ask(r#"{"v":1,"cmd":"scale","name":"echo","replicas":0}"#));
    assert!(e.contains("1..=1024"), "{e}");

    // reload: the same file changes nothing; an added worker is started; a broken file is
    // refused and changes nothing.
    let v = c.ask(r#"{"v":1,"cmd":"reload"}"#);
    assert_eq!(
        ok(&v),
        &serde_json::json!({"added": [], "removed": [], "changed": [], "scaled": [],
                            "unchanged": ["echo", "flaky", "chatty"]})
    );
    let original = std::fs::read_to_string(&d.config).expect("read config");
    let extra = "\n[workers.extra]\ncommand = \"sleep\"\nargs = [\"3600\"]\nipc = false\n";
    std::fs::write(&d.config, format!("{original}{extra}")).expect("write config");
    let v = c.ask(r#"{"v":1,"cmd":"reload"}"#);
    assert_eq!(
        ok(&v),
        &serde_json::json!({"added": ["extra"], "removed": [], "changed": [], "scaled": [],
                            "unchanged": ["echo", "flaky", "chatty"]})
    );
    d.wait_ready(&["extra"], T);
    std::fs::write(&d.config, format!("{original}\n[workers.broken\n")).expect("write config");
    let e = refused(&c.ask(r#"{"v":1,"cmd":"reload"}"#));
    assert!(e.starts_with("reload refused, nothing changed: "), "{e}");
    assert!(e.contains("invalid TOML"), "{e}");
    assert!(
        worker(&d.status(), "extra").is_some(),
        "a refused reload changed nothing"
    );
    std::fs::write(&d.config, &original).expect("write config");
    let v = c.ask(r#"{"v":1,"cmd":"reload"}"#);
    assert_eq!(ok(&v)["removed"], serde_json::json!(["extra"]), "{v}");
    d.wait_for("extra removed", T, |st| worker(st, "extra").is_none());

    // metrics: Prometheus text; every sample line is `name{labels} value`.
    let v = c.ask(r#"{"v":1,"cmd":"metrics"}"#);
    let m = ok(&v);
    assert!(
        s(m, "content_type").starts_with("text/plain; version=0.0.4"),
        "{m}"
    );
    let text = s(m, "text");
    assert!(text.contains("# TYPE amp_uptime_seconds gauge\n"), "{text}");
    let mut samples = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        assert!(
            name.starts_with("amp_") || name.starts_with("process_"),
            "{line:?}"
        );
        value
            .parse::<f64>()
            .unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"));
        samples += 1;
    }
    assert!(samples > 10, "{text}");
    assert!(
        text.contains(r#"amp_queue_depth{kind="echo",class="interactive"} "#),
        "{text}"
    );

    // attach / attached: two eventfds ride on the answer; the segment name goes once attached.
    let a = UnixStream::connect(&d.socket).expect("connect");
    a.set_read_timeout(Some(IO)).expect("timeout");
    (&a).write_all(b"{\"v\":1,\"cmd\":\"attach\"}\n")
        .expect("send attach");
    let (v, fds) = recv_with_fds(&a);
    let at = ok(&v);
    assert_eq!(fds.len(), 2, "two doorbells via SCM_RIGHTS: {v}");
    for fd in fds {
        let what = std::fs::read_link(format!("/proc/self/fd/{fd}")).expect("fd link");
        assert_eq!(what, Path::new("anon_inode:[eventfd]"), "doorbell fd {fd}");
        nix::unistd::close(fd).expect("close doorbell");
    }
    assert_eq!(
        at["kinds"],
        serde_json::json!([[0, "echo"], [1, "flaky"]]),
        "{at}"
    );
    assert_eq!(
        at["classes"],
        serde_json::json!(["interactive", "batch"]),
        "{at}"
    );
    assert!(u(at, "serial") >= 1, "{at}");
    let client_id = u(at, "client");
    let seg = Path::new("/dev/shm").join(s(at, "segment").trim_start_matches('/'));
    assert!(seg.exists(), "{} exists until attached", seg.display());
    // Only the attaching connection may confirm.
    let e = refused(&c.ask(&format!(
        r#"{{"v":1,"cmd":"attached","client":{client_id}}}"#
    )));
    assert!(e.contains("not attached on this connection"), "{e}");
    (&a).write_all(format!("{{\"v\":1,\"cmd\":\"attached\",\"client\":{client_id}}}\n").as_bytes())
        .expect("send attached");
    let mut ar = BufReader::new(&a);
    let mut line = String::new();
    ar.read_line(&mut line).expect("attached answer");
    let v: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(ok(&v), &serde_json::json!({ "attached": client_id }));
    assert!(!seg.exists(), "{} unlinked once attached", seg.display());
    drop(a);

    // shutdown
    let v = c.ask(r#"{"v":1,"cmd":"shutdown"}"#);
    assert_eq!(ok(&v), &serde_json::json!({"shutting_down": true}));
    let st = d.wait_exit(T);
    assert!(st.success(), "{st:?}\n{}", d.log_text());
    assert!(d.shm_leftovers().is_empty(), "{:?}", d.shm_leftovers());
}

// ---------------------------------------------------------------------------------------------
// Bad input.

const ONE: &str = r#"
[workers.echo]
command = "amp-echo"
kinds = ["echo"]
"#;

#[test]
fn bad_lines_get_an_error_naming_the_problem_and_the_connection_stays_usable() {
    let d = Ampd::start("", ONE);
    d.wait_ready(&["echo"], T);
    let mut c = Raw::connect(&d.socket);
    // (line, words the error must contain)
    let cases: &[(&str, &[&str])] = &[
        ("{not json", &["malformed JSON", "line 1 column 2"]),
        (r#"{"v":1,"cmd":"status""#, &["malformed JSON"]),
        ("[1,2]", &["must be a JSON object"]),
        ("42", &["must be a JSON object"]),
        (
            r#"{"v":1,"cmd":"frobnicate"}"#,
            &["`frobnicate`", "`status`"],
        ),
        (
            r#"{"v":1,"cmd":"restart_all"}"#,
            &["`restart_all`", "`scale`", "`reload`", "`metrics`"],
        ),
        (
            r#"{"v":1,"cmd":"scale","name":"echo"}"#,
            &["missing field `replicas`"],
        ),
        (
            r#"{"v":1,"cmd":"scale","name":"echo","replicas":"2"}"#,
            &["invalid type", "u32"],
        ),
        (
            r#"{"v":1,"cmd":"status","verbose":true}"#,
            &["unknown field `verbose`", "`status`"],
        ),
        (
            r#"{"v":1,"cmd":"pause","now":1}"#,
            &["unknown field `now`", "`pause`"],
        ),
        (
            r#"{"v":1,"cmd":"start","name":"echo","force":true}"#,
            &["unknown field `force`", "`name`"],
        ),
        (
            r#"{"v":1,"cmd":"submit","kind":"echo","prio":"batch"}"#,
            &["unknown field `prio`"],
        ),
        (r#"{"v":1,"cmd":"start"}"#, &["missing field `name`"]),
        (r#"{"v":1,"cmd":"logs","name":"echo","lines":-1}"#, &["-1"]),
        (
            r#"{"v":1,"cmd":"route_set","kind":"echo","policy":"random"}"#,
            &["`random`", "`least_loaded`"],
        ),
        (r#"{"cmd":"status"}"#, &["missing field `v`"]),
        (r#"{"v":2,"cmd":"status"}"#, &["version 2", "speaks 1"]),
        (r#"{"v":"1","cmd":"status"}"#, &["version \"1\""]),
        (r#"{"v":1}"#, &["missing field `cmd`"]),
        (r#"{"v":1,"cmd":7}"#, &["`cmd` must be a string"]),
    ];
    for (line, words) in cases {
        let e = refused(&c.ask(line));
        for w in *words {
            assert!(e.contains(w), "error for {line} lacks {w:?}: {e}");
        }
        // The same connection still answers.
        ok(&c.ask(r#"{"v":1,"cmd":"status"}"#));
    }
    // Blank lines get no answer; the next request's answer comes next.
    c.send("\n   \n");
    let v = c.ask(r#"{"v":1,"cmd":"pause"}"#);
    assert_eq!(ok(&v), &serde_json::json!({"paused": true}));
    // Several requests in one write are answered in order.
    c.send("{\"v\":1,\"cmd\":\"resume\"}\n{bad\n{\"v\":1,\"cmd\":\"queues\"}");
    assert_eq!(ok(&c.recv()), &serde_json::json!({"paused": false}));
    assert!(refused(&c.recv()).contains("malformed JSON"));
    assert!(ok(&c.recv()).get("queues").is_some());
    // None of that disturbed the worker or ampd.
    let st = d.status();
    assert!(!st.shutting_down);
    assert_eq!(worker(&st, "echo").map(|w| w.state.as_str()), Some("ready"));
}

/// Sends more than [`MAX_REQUEST_LINE`] bytes without a newline on `c`; returns everything
/// ampd sent back before closing the connection (panics if it does not close it).
fn send_oversized(c: &mut Raw) -> String {
    // Our write may fail part-way once ampd has closed: that is the point.
    let _ = c
        .writer
        .write_all(&vec![b'x'; MAX_REQUEST_LINE + 256 * 1024]);
    match c.closed() {
        Ok(rest) => String::from_utf8_lossy(&rest).into_owned(),
        Err(e) => panic!("ampd kept the connection open after an oversized line ({e})"),
    }
}

#[test]
fn unknown_fields_are_refused_on_metrics_and_reload_too() {
    let d = Ampd::start("", ONE);
    d.wait_ready(&["echo"], T);
    let mut c = Raw::connect(&d.socket);
    for cmd in ["metrics", "reload"] {
        let e = refused(&c.ask(&format!(r#"{{"v":1,"cmd":"{cmd}","verbose":true}}"#)));
        assert!(
            e.contains("unknown field `verbose`") && e.contains(cmd),
            "{e}"
        );
    }
    let st = d.status();
    assert!(
        !st.events.iter().any(|e| e.kind == "reloaded"),
        "a request with an unknown field was executed: {:?}",
        st.events
    );
}

#[test]
fn an_oversized_line_closes_its_connection_and_spares_the_others() {
    let d = Ampd::start("", ONE);
    d.wait_ready(&["echo"], T);
    let mut bystander = Raw::connect(&d.socket);
    ok(&bystander.ask(r#"{"v":1,"cmd":"status"}"#));

    // A line just under the limit is read and parsed (here: refused for its unknown field).
    let pad = "x".repeat(MAX_REQUEST_LINE - 100);
    let mut c = Raw::connect(&d.socket);
    let e = refused(&c.ask(&format!(r#"{{"v":1,"cmd":"status","pad":"{pad}"}}"#)));
    assert!(
        e.contains("unknown field `pad`"),
        "{}",
        &e[..e.len().min(200)]
    );
    ok(&c.ask(r#"{"v":1,"cmd":"status"}"#));

    // More than the limit without a newline: ampd closes the connection, sending at most the
    // error line (see the ignored test below for why it may be missing today).
    let rest = send_oversized(&mut c);
    if !rest.is_empty() {
        let v: Value = serde_json::from_str(&rest).unwrap_or_else(|e| panic!("{e}: {rest:?}"));
        assert!(refused(&v).contains("exceeds the"), "{v}");
    }
    // Others are unaffected, old and new connections alike.
    ok(&bystander.ask(r#"{"v":1,"cmd":"status"}"#));
    ok(&ask(&d, r#"{"v":1,"cmd":"status"}"#));
    assert_eq!(
        worker(&d.status(), "echo").map(|w| w.state.clone()),
        Some("ready".to_owned())
    );
}

#[test]
fn an_oversized_line_is_answered_with_an_error_before_the_close() {
    let d = Ampd::start("", ONE);
    d.wait_ready(&["echo"], T);
    let mut c = Raw::connect(&d.socket);
    let rest = send_oversized(&mut c);
    let v: Value = serde_json::from_str(&rest)
        .unwrap_or_else(|e| panic!("expected the error line before the close ({e}): {rest:?}"));
    assert_eq!(
        refused(&v),
        format!("request line exceeds the {MAX_REQUEST_LINE}-byte limit; closing")
    );
}

#[test]
fn a_request_then_half_close_is_still_answered() {
    let d = Ampd::start("", ONE);
    d.wait_ready(&["echo"], T);
    let mut unanswered = 0;
    for _ in 0..10 {
        let mut c = Raw::connect(&d.socket);
        c.writer
            .write_all(b"{\"v\":1,\"cmd\":\"pause\"}\n")
            .expect("write");
        c.writer
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        let rest = c.closed().expect("ampd closes after EOF");
        if rest.is_empty() {
            unanswered += 1;
        } else {
            let v: Value = serde_json::from_slice(&rest).expect("one response line");
            ok(&v);
        }
    }
    // Every one was executed (an event each) ...
    let st = d.status();
    let paused = st
        .events
        .iter()
        .filter(|e| e.kind == "intake_paused")
        .count();
    assert_eq!(paused, 10, "{:?}", st.events);
    // ... and should have been answered.
    assert_eq!(unanswered, 0, "requests executed but not answered");
}

#[test]
fn a_half_written_line_then_disconnect_leaves_ampd_unaffected() {
    let d = Ampd::start("", ONE);
    d.wait_ready(&["echo"], T);
    // A complete `shutdown` request without its newline, then end-of-input: it must be
    // dropped, not executed. Half-closing lets us see ampd finish with the connection (it
    // closes its side once it has read the EOF).
    let mut c = Raw::connect(&d.socket);
    c.writer
        .write_all(br#"{"v":1,"cmd":"shutdown"}"#)
        .expect("write");
    c.writer
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    match c.closed() {
        Ok(rest) => assert!(rest.is_empty(), "ampd answered a partial line: {rest:?}"),
        Err(e) => panic!("ampd did not close after EOF ({e})"),
    }
    // Abrupt disconnects mid-line, several times.
    for cut in [1, 7, 15] {
        let mut s = UnixStream::connect(&d.socket).expect("connect");
        s.write_all(&br#"{"v":1,"cmd":"shutdown"}"#[..cut])
            .expect("write");
        drop(s);
    }
    let st = d.status();
    assert!(!st.shutting_down, "a partial line was executed");
    assert!(
        !st.events.iter().any(|e| e.kind == "shutdown_started"),
        "{:?}",
        st.events
    );
    assert_eq!(worker(&st, "echo").map(|w| w.state.as_str()), Some("ready"));
    let v = ask(
        &d,
        r#"{"v":1,"cmd":"submit","kind":"echo","payload":"still here","wait":true}"#,
    );
    assert_eq!(s(ok(&v), "result"), "still here");
}

// ---------------------------------------------------------------------------------------------
// Load and misbehaving clients.

#[test]
fn fifty_concurrent_clients_are_all_answered() {
    let d = Ampd::start("", ONE);
    d.wait_ready(&["echo"], T);
    let clients = 50;
    let rounds = 5;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(clients));
    let pid = u64::from(d.pid());
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let socket = d.socket.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || -> Result<usize, String> {
                let mut c = client::Client::connect(&socket, IO).map_err(|e| e.to_string())?;
                barrier.wait();
                let mut answered = 0;
                for r in 0..rounds {
                    let resp = c
                        .request(serde_json::json!({"cmd": "status"}))
                        .map_err(|e| format!("client {i} round {r}: {e}"))?;
                    let data = resp
                        .data
                        .ok_or_else(|| format!("client {i}: {:?}", resp.error))?;
                    if data["pid"].as_u64() != Some(pid) {
                        return Err(format!("client {i}: wrong status {data}"));
                    }
                    answered += 1;
                }
                Ok(answered)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h
            .join()
            .expect("client thread")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(total, clients * rounds);
    ok(&ask(&d, r#"{"v":1,"cmd":"status"}"#));
}

#[test]
fn a_client_that_never_reads_is_dropped_without_stalling_others() {
    // `chatty` prints 1000 lines of 600 bytes, so each `logs` answer is ~600 KB: the unread
    // answers pile up quickly in ampd's per-connection output queue.
    let d = Ampd::start(
        "",
        r#"
[workers.chatty]
command = "sh"
args = ["-c", "i=0; while [ $i -lt 1000 ]; do printf '%0600d\n' $i; i=$((i+1)); done; exec sleep 3600"]
ipc = false
"#,
    );
    d.wait_ready(&["chatty"], T);
    let req = r#"{"v":1,"cmd":"logs","name":"chatty","lines":1000}"#;
    ask_until(&d, req, "1000 lines of output", |v| {
        ok(v)["lines"].as_array().is_some_and(|l| l.len() == 1000)
    });

    let mut bad = UnixStream::connect(&d.socket).expect("connect");
    bad.set_write_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let line = format!("{req}\n");
    // A few answers (~2.4 MB): more than the kernel buffers hold, less than ampd's cap.
    for _ in 0..4 {
        bad.write_all(line.as_bytes()).expect("ampd reads requests");
    }
    // Another client is answered promptly while the bad one is connected.
    let t0 = Instant::now();
    let r = client::request(
        &d.socket,
        serde_json::json!({"cmd": "status"}),
        Duration::from_secs(5),
    )
    .expect("status while a client does not read");
    assert!(r.ok, "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(5));

    // Keep asking without reading: ampd drops the connection (our write fails) in bounded time.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 4u32;
    let dropped = loop {
        match bad.write_all(line.as_bytes()) {
            Ok(()) => sent += 1,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => break e,
        }
        assert!(
            Instant::now() < deadline,
            "ampd still accepts requests from a client that never reads ({sent} sent)\n{}",
            d.log_text()
        );
    };
    assert!(
        matches!(
            dropped.kind(),
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
        ),
        "{dropped}"
    );
    assert!(
        d.log_text()
            .contains("control client does not read its responses; disconnecting it"),
        "{}",
        d.log_text()
    );
    // ampd is fine afterwards.
    let st = d.status();
    assert_eq!(
        worker(&st, "chatty").map(|w| w.state.as_str()),
        Some("ready")
    );
    let v = ask(&d, r#"{"v":1,"cmd":"logs","name":"chatty","lines":1}"#);
    assert_eq!(arr(ok(&v), "lines").len(), 1);
}

#[test]
fn pipelined_requests_beyond_one_read_are_all_answered() {
    // ampd reads at most MAX_READ_PER_EVENT bytes of a connection per event (fairness); what
    // is left must still be read: 4000 pipelined requests (~90 KB) get 4000 answers, in order.
    let d = Ampd::start(
        "",
        r#"
[workers.a]
command = "sleep"
args = ["3600"]
ipc = false
"#,
    );
    d.wait_ready(&["a"], T);
    let line = "{\"v\":1,\"cmd\":\"status\"}\n";
    let n = 4000;
    let all = line.repeat(n);
    assert!(all.len() > amp_supervisor::control::server::MAX_READ_PER_EVENT);
    let mut c = Raw::connect(&d.socket);
    c.writer.write_all(all.as_bytes()).expect("send");
    for i in 0..n {
        let v = c.recv();
        assert_eq!(v["ok"], true, "answer {i}: {v}");
    }
}

#[test]
fn requests_of_a_client_that_went_away_are_still_carried_out() {
    // A script pipelines two commands and closes its socket at once, without waiting for the
    // answers: writing the first answer fails (the peer is gone) and closes the connection,
    // but the second command still runs — only a client dropped for not reading its answers
    // has the rest of what it sent skipped.
    let d = Ampd::start(
        "",
        r#"
[workers.a]
command = "sleep"
args = ["3600"]
ipc = false

[workers.b]
command = "sleep"
args = ["3600"]
ipc = false
"#,
    );
    d.wait_ready(&["a", "b"], T);
    let mut s = UnixStream::connect(&d.socket).expect("connect");
    s.write_all(
        b"{\"v\":1,\"cmd\":\"stop\",\"name\":\"a\"}\n{\"v\":1,\"cmd\":\"stop\",\"name\":\"b\"}\n",
    )
    .expect("send both");
    drop(s);
    d.wait_for("both workers stopped", T, |st| {
        ["a", "b"]
            .iter()
            .all(|n| worker(st, n).is_some_and(|w| w.state == "stopped"))
    });
}

// ---------------------------------------------------------------------------------------------
// Who may connect.

/// Env var naming the socket [`peer_helper`] talks to; unset in ordinary runs.
const PEER_SOCKET: &str = "AMP_TEST_PEER_SOCKET";

/// Run by [`peers_of_another_uid_are_refused`] as another user (this test binary re-executed
/// with `--ignored --exact`): connects, sends `status`, reports what happened on stdout as one
/// `PEER-RESULT ...` line.
#[test]
#[ignore = "helper: run as another uid by peers_of_another_uid_are_refused"]
fn peer_helper() {
    let path = PathBuf::from(std::env::var_os(PEER_SOCKET).expect("run by the permission tests"));
    let s = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            println!("PEER-RESULT connect-error {:?}", e.kind());
            return;
        }
    };
    s.set_read_timeout(Some(IO)).expect("timeout");
    // A refused peer is answered (and dropped) at accept; our write may then fail, but the
    // refusal is already in our receive queue.
    let _ = (&s).write_all(b"{\"v\":1,\"cmd\":\"status\"}\n");
    let mut line = String::new();
    match BufReader::new(&s).read_line(&mut line) {
        Ok(n) if n > 0 => println!("PEER-RESULT line {}", line.trim_end()),
        Ok(_) => println!("PEER-RESULT eof"),
        Err(e) => println!("PEER-RESULT read-error {:?}", e.kind()),
    }
}

/// Runs [`peer_helper`] as `uid`:`gid` against `socket`; returns its `PEER-RESULT` line.
fn peer(socket: &Path, uid: u32, gid: u32) -> String {
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            "peer_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PEER_SOCKET, socket)
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .output()
        .expect("run the peer helper");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.split_once("PEER-RESULT ").map(|(_, r)| r))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            panic!(
                "peer helper as {uid}:{gid} reported nothing ({:?})\nstdout:\n{stdout}\nstderr:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// The response line a [`peer`] run got.
#[track_caller]
fn peer_line(result: &str) -> Value {
    let line = result
        .strip_prefix("line ")
        .unwrap_or_else(|| panic!("expected a response line, got: {result}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// `nobody`'s (uid, gid), or `None` with the reason the permission tests are skipped.
fn nobody() -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "skipped: needs root to run a client as another uid (running as uid {})",
            nix::unistd::geteuid()
        );
        return None;
    }
    match nix::unistd::User::from_name("nobody") {
        Ok(Some(u)) => Some((u.uid.as_raw(), u.gid.as_raw())),
        _ => {
            eprintln!("skipped: no user `nobody` on this system");
            None
        }
    }
}

/// Lets everyone traverse the scratch dir, so only the socket's own mode stands in the way.
fn open_dir(d: &Ampd) {
    std::fs::set_permissions(&d.scratch.path, std::fs::Permissions::from_mode(0o755))
        .expect("chmod scratch dir");
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn peers_of_another_uid_are_refused() {
    let Some((nuid, ngid)) = nobody() else { return };
    let d = Ampd::start("", ONE);
    d.wait_ready(&["echo"], T);
    open_dir(&d);
    let mode = std::fs::metadata(&d.socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    // 0600: the filesystem refuses the connect itself.
    assert_eq!(
        peer(&d.socket, nuid, ngid),
        "connect-error PermissionDenied"
    );
    let out = Command::new(bin("ampctl"))
        .arg("--socket")
        .arg(&d.socket)
        .arg("status")
        .env_remove("AMP_SOCKET")
        .uid(nuid)
        .gid(ngid)
        .stdin(Stdio::null())
        .output()
        .expect("run ampctl as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");

    // 0666: the connection reaches ampd, which checks SO_PEERCRED and refuses with a reason.
    chmod(&d.socket, 0o666);
    let v = peer_line(&peer(&d.socket, nuid, ngid));
    let e = refused(&v);
    assert_eq!(
        e,
        format!(
            "permission denied: uid {nuid} is neither ampd's uid 0 nor root nor in the control group"
        )
    );
    assert!(
        d.log_text().contains("control connection refused"),
        "{}",
        d.log_text()
    );
    // Root (and ampd's own uid, the same here) is still served; nothing changed.
    let st = d.status();
    assert!(!st.shutting_down);
    assert_eq!(worker(&st, "echo").map(|w| w.state.as_str()), Some("ready"));
}

#[test]
fn control_group_members_pass_the_peer_check_and_others_do_not() {
    let Some((nuid, ngid)) = nobody() else { return };
    let Ok(Some(group)) = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(ngid)) else {
        eprintln!("skipped: nobody's group {ngid} has no name");
        return;
    };
    let d = Ampd::start(&format!("control_group = {:?}", group.name), ONE);
    d.wait_ready(&["echo"], T);
    open_dir(&d);
    // The mode is widened by hand (see `control_group_members_can_reach_the_socket`): this test
    // is about the SO_PEERCRED policy.
    chmod(&d.socket, 0o666);
    let v = peer_line(&peer(&d.socket, nuid, ngid));
    let st = ok(&v);
    assert_eq!(u(st, "pid"), u64::from(d.pid()), "{v}");
    // A uid outside the group (and not root) is still refused.
    let other = nix::unistd::User::from_name("daemon")
        .ok()
        .flatten()
        .filter(|u| u.gid.as_raw() != ngid && !u.uid.is_root());
    if let Some(o) = other {
        let (ouid, ogid) = (o.uid.as_raw(), o.gid.as_raw());
        let e = refused(&peer_line(&peer(&d.socket, ouid, ogid)));
        assert!(
            e.starts_with(&format!("permission denied: uid {ouid} ")),
            "{e}"
        );
    } else {
        eprintln!(
            "no user `daemon` outside {}: refusal of non-members not checked",
            group.name
        );
    }
}

#[test]
fn control_group_members_can_reach_the_socket() {
    let Some((nuid, ngid)) = nobody() else { return };
    let Ok(Some(group)) = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(ngid)) else {
        return;
    };
    let d = Ampd::start(&format!("control_group = {:?}", group.name), ONE);
    d.wait_ready(&["echo"], T);
    open_dir(&d);
    let v = peer_line(&peer(&d.socket, nuid, ngid));
    ok(&v);
}

// ---------------------------------------------------------------------------------------------
// ampctl output.

fn ampctl(d: &Ampd, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(bin("ampctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .env_remove("AMP_SOCKET")
        .stdin(Stdio::null())
        .output()
        .expect("run ampctl");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ampctl_status_and_stats_tables_and_json() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.echo]
command = "amp-echo"
kinds = ["echo"]
replicas = 2
[workers.idle]
command = "sleep"
args = ["3600"]
ipc = false
"#,
    );
    d.wait_ready(&["echo#0", "echo#1", "idle"], T);
    let mut c = amp_ipc::client::Client::connect(&d.socket).expect("attach");
    let n = 20;
    let tickets: Vec<_> = (0..n)
        .map(|i: u32| c.submit("echo", &i.to_le_bytes()).expect("submit"))
        .collect();
    for t in tickets {
        let r = c.wait_for(t, T).expect("result");
        assert_eq!(r.status, amp_ipc::client::ResultStatus::Ok, "{}", r.text());
    }
    drop(c);

    // status: title, worker table, kind table, task census.
    let (code, out, err) = ampctl(&d, &["status"]);
    assert_eq!(code, Some(0), "{err}");
    let blocks: Vec<Vec<&str>> = out.split("\n\n").map(|b| b.lines().collect()).collect();
    assert_eq!(blocks.len(), 3, "workers, kinds, census:\n{out}");
    let w = &blocks[0];
    assert!(
        w[0].starts_with(&format!("ampd pid {}  up ", d.pid())),
        "{out}"
    );
    assert!(w[0].ends_with('s'), "{out}");
    assert_eq!(
        w[1].split_whitespace().collect::<Vec<_>>(),
        ["WORKER", "STATE", "PID", "RESTARTS", "READY", "LAST", "EXIT"],
        "{out}"
    );
    let st = d.status();
    let rows: Vec<Vec<&str>> = w[2..]
        .iter()
        .map(|r| r.split_whitespace().collect())
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(names, ["echo#0", "echo#1", "idle"], "{out}");
    for r in &rows {
        let ws = worker(&st, r[0]).expect("worker");
        assert_eq!(r.len(), 6, "{r:?}");
        assert_eq!(r[1], "ready");
        assert_eq!(r[2], ws.pid.expect("pid").to_string());
        assert_eq!((r[3], r[5]), ("0", "-"));
        assert!(
            r[4].strip_suffix('s')
                .is_some_and(|x| x.parse::<f64>().is_ok()),
            "{r:?}"
        );
    }
    // Columns line up under the header.
    let col = w[1].find("STATE").expect("STATE");
    assert!(
        w[2..].iter().all(|r| r[col..].starts_with("ready")),
        "{out}"
    );
    let k = &blocks[1];
    assert_eq!(
        k[0].split_whitespace().collect::<Vec<_>>(),
        [
            "KIND",
            "POLICY",
            "IN",
            "FLIGHT",
            "REJECTED",
            "DISPATCHED",
            "QUEUED"
        ],
        "{out}"
    );
    assert_eq!(k.len(), 2, "{out}");
    assert_eq!(
        k[1].split_whitespace().collect::<Vec<_>>(),
        [
            "echo",
            "least_loaded",
            "0",
            "0",
            &n.to_string(),
            "interactive=0",
            "batch=0"
        ],
        "{out}"
    );
    assert_eq!(
        blocks[2],
        [format!(
            "tasks: 0 queued, 0 in flight, 0 waiting retry, 0 dead-lettered, {n} done (0 retries, 0 requeued from lost workers, 0 late duplicates dropped)"
        )
        .as_str()],
        "{out}"
    );

    // stats: header, one row per (kind, worker) that served, completions adding up.
    let (code, out, err) = ampctl(&d, &["stats"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "KIND",
            "WORKER",
            "COMPLETED",
            "ERRORS",
            "TASKS/S",
            "P50",
            "ms",
            "P90",
            "ms",
            "P99",
            "ms",
            "MAX",
            "ms"
        ],
        "{out}"
    );
    assert!(
        (2..=3).contains(&lines.len()),
        "one row per serving replica:\n{out}"
    );
    let mut completed = 0;
    for row in &lines[1..] {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols.len(), 9, "{row:?}");
        assert_eq!(cols[0], "echo", "{row:?}");
        assert!(cols[1] == "echo#0" || cols[1] == "echo#1", "{row:?}");
        completed += cols[2].parse::<u32>().expect("COMPLETED");
        assert_eq!(cols[3], "0", "{row:?}");
        let nums: Vec<f64> = cols[4..]
            .iter()
            .map(|x| x.parse().expect("number"))
            .collect();
        assert!(nums[0] > 0.0, "{row:?}");
        assert!(
            nums[1..].windows(2).all(|p| p[0] <= p[1]),
            "p50 ≤ p90 ≤ p99 ≤ max: {row:?}"
        );
    }
    assert_eq!(completed, n, "{out}");

    // JSON for scripts, before the subcommand or as --output json anywhere.
    for args in [
        &["--json", "status"][..],
        &["status", "--output", "json"][..],
    ] {
        let (code, out, err) = ampctl(&d, args);
        assert_eq!(code, Some(0), "{err}");
        let v: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}\n{out}"));
        let data = ok(&v);
        assert_eq!(u(data, "pid"), u64::from(d.pid()));
        assert_eq!(arr(data, "workers").len(), 3);
        assert_eq!(u(&data["tasks"], "done"), u64::from(n));
    }
    let (code, out, _) = ampctl(&d, &["--json", "stats"]);
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).expect("JSON");
    let total: u64 = arr(ok(&v), "stats").iter().map(|r| u(r, "completed")).sum();
    assert_eq!(total, u64::from(n));

    // A failed request: exit 1, the error on stderr, nothing on stdout.
    let (code, out, err) = ampctl(&d, &["stop", "nope"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.starts_with("ampctl: no unit or worker named \"nope\""),
        "{err}"
    );
    // ... and with --json the error response is printed, still exit 1.
    let (code, out, _) = ampctl(&d, &["--json", "stop", "nope"]);
    assert_eq!(code, Some(1));
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert!(refused(&v).contains("\"nope\""));
    let st = d.shutdown(T);
    assert!(st.success(), "{}", d.log_text());
}

// ---------------------------------------------------------------------------------------------
// systemd notify.

/// Receives notify datagrams until one contains `want` (returns it and everything before).
fn recv_until(sock: &UnixDatagram, want: &str, log: impl Fn() -> String) -> Vec<String> {
    let deadline = Instant::now() + T;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = msg.lines().any(|l| l == want);
                got.push(msg);
                if done {
                    return got;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("notify socket: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "no {want} within {T:?}; got {got:?}\nlog:\n{}",
            log()
        );
    }
}

#[test]
fn notify_socket_gets_ready_after_startup_and_stopping_at_shutdown() {
    let scratch = Scratch::new();
    let notify_path = scratch.path.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind notify socket");
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    // The harness's config layout, spawned by hand to set NOTIFY_SOCKET. `slow` reports ready
    // 400 ms after its handshake and depends on `echo`: READY=1 must wait for both.
    let socket = scratch.path.join("ampd.sock");
    let shm_prefix = format!("amptn{}", std::process::id());
    let config = scratch.path.join("amp.toml");
    std::fs::write(
        &config,
        format!(
            r#"[supervisor]
control_socket = {:?}
shm_prefix = {shm_prefix:?}

[workers.echo]
command = "amp-echo"
kinds = ["echo"]

[workers.slow]
command = "amp-flaky"
args = ["--ready-delay-ms", "400"]
kinds = ["flaky"]
depends_on = ["echo"]
"#,
            socket.display().to_string()
        ),
    )
    .expect("write config");
    let log = scratch.path.join("ampd.log");
    let started = Instant::now();
    let child = Command::new(bin("ampd"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn ampd");
    let mut d = Ampd {
        child: Some(child),
        socket,
        config,
        shm_prefix,
        log,
        scratch,
        exited: None,
    };

    let before_ready = recv_until(&notify, "READY=1", || d.log_text());
    let elapsed = started.elapsed();
    let ready_msg = before_ready.last().expect("READY message").clone();
    assert_eq!(
        ready_msg, "READY=1\nSTATUS=2 units started, 0 failed",
        "all before: {before_ready:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(400),
        "READY=1 after {elapsed:?}: before `slow` could be ready"
    );
    // At that moment every worker is ready, and the startup_complete event follows every
    // ready event.
    let st = d.status();
    for w in ["echo", "slow"] {
        assert_eq!(
            worker(&st, w).map(|x| x.state.as_str()),
            Some("ready"),
            "{st:#?}"
        );
    }
    assert!(
        worker(&st, "slow")
            .and_then(|w| w.ready_ms)
            .is_some_and(|ms| ms >= 400),
        "{st:#?}"
    );
    let complete = event_seq(&st, "", "startup_complete").expect("startup_complete event");
    for w in ["echo", "slow"] {
        assert!(
            event_seq(&st, w, "ready").is_some_and(|s| s < complete),
            "{:?}",
            st.events
        );
    }

    let _ = d.request(serde_json::json!({"cmd": "shutdown"}));
    let stopping = recv_until(&notify, "STOPPING=1", || d.log_text());
    assert!(
        !stopping.iter().any(|m| m.contains("READY=1")),
        "a second READY=1: {stopping:?}"
    );
    let st = d.wait_exit(T);
    assert!(st.success(), "{}", d.log_text());
}
