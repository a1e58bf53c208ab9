//! End-to-end tests of plain processes (`ipc = false`): readiness probes (tcp, exec, started),
//! one-shot jobs gating their dependents, and shutdown with each process's own stop signal.
//!
//! Every wait polls a condition with a deadline; timing assertions use the event log's
//! `at_ms` stamps (taken by ampd), not the test's own clock.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use amp_supervisor::control::proto::{EventRecord, StatusData};
use amp_tests::{alive, event_seq, eventually, worker, Ampd, Scratch};

const T: Duration = Duration::from_secs(15);

/// A TCP port nobody listens on right now: bind port 0, read the port, drop the listener.
fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A TOML basic string holding `s` (Rust's `Debug` escapes of `"`, `\` and control characters
/// are valid TOML escapes; the paths and scripts used here are ASCII).
fn q(s: impl AsRef<str>) -> String {
    format!("{:?}", s.as_ref())
}

/// `GET path` over HTTP/1.0; the whole response.
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The first event of `kind` for `unit`, or a panic showing every event.
fn event<'a>(s: &'a StatusData, unit: &str, kind: &str) -> &'a EventRecord {
    s.events
        .iter()
        .find(|e| e.unit == unit && e.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} event for {unit:?}: {:#?}", s.events))
}

fn seq(s: &StatusData, unit: &str, kind: &str) -> u64 {
    event(s, unit, kind).seq
}

/// Milliseconds between `unit`'s `started` and `ready` events, by ampd's clock.
fn start_to_ready_ms(s: &StatusData, unit: &str) -> u64 {
    event(s, unit, "ready").at_ms - event(s, unit, "started").at_ms
}

/// The log line of `unit`'s `exited` notice (ampd logs `exited: pid N REASON (CAUSE) unit=NAME`).
fn exit_line(log: &str, unit: &str) -> String {
    log.lines()
        .find(|l| l.contains("exited: pid") && l.trim_end().ends_with(&format!("unit={unit}")))
        .unwrap_or_else(|| panic!("no exit line for {unit} in log:\n{log}"))
        .to_owned()
}

#[test]
fn tcp_probe_holds_the_dependent_until_the_server_answers() {
    let port = free_port();
    let site = Scratch::new();
    std::fs::write(
        site.path.join("hello.txt"),
        "served by amp's plain-process test\n",
    )
    .expect("write hello.txt");
    // The server only starts listening after ~500 ms, so a probe that passed too early would
    // show in the event timestamps, and the dependent would start before the port answers.
    let script = format!(
        "sleep 0.5; exec python3 -m http.server {port} --bind 127.0.0.1 --directory {}",
        site.path.display()
    );
    let mut d = Ampd::start(
        "",
        &format!(
            r#"
[workers.web]
command = "sh"
args = ["-c", {script}]
ipc = false
probe = {{ type = "tcp", port = {port} }}
ready_timeout = "10s"
[workers.api]
command = "amp-echo"
depends_on = {{ web = "ready" }}
"#,
            script = q(&script)
        ),
    );
    let s = d.wait_for("web ready", T, |s| {
        worker(s, "web").is_some_and(|w| w.state == "ready")
    });
    // Reported ready: it answers now, on the first try.
    let resp = http_get(port, "/hello.txt").unwrap_or_else(|e| {
        panic!(
            "GET on port {port} after ready failed: {e}\n{}",
            d.log_text()
        )
    });
    assert!(resp.starts_with("HTTP/1.0 200"), "{resp}");
    assert!(
        resp.contains("served by amp's plain-process test"),
        "{resp}"
    );
    assert!(
        start_to_ready_ms(&s, "web") >= 450,
        "ready before the server could listen: {:#?}",
        s.events
    );
    let s = d.wait_ready(&["web", "api"], T);
    assert!(
        seq(&s, "web", "ready") < seq(&s, "api", "started"),
        "api started before web was ready: {:#?}",
        s.events
    );
    let st = d.shutdown(T);
    assert!(
        st.success(),
        "clean shutdown expected: {st:?}\n{}",
        d.log_text()
    );
    // Stopped in reverse order: api first, then web with SIGTERM (python's default: die).
    let log = d.log_text();
    let (api, web) = (exit_line(&log, "api"), exit_line(&log, "web"));
    assert!(log.find(&api) < log.find(&web), "{log}");
    assert!(web.contains("killed by SIGTERM (Shutdown)"), "{web}");
    assert!(
        http_get(port, "/").is_err(),
        "the server still answers after shutdown"
    );
}

#[test]
fn exec_probe_is_ready_only_once_its_command_succeeds() {
    let dir = Scratch::new();
    let flag = dir.path.join("flag");
    let script = format!("sleep 0.3; touch {}; exec sleep 3600", flag.display());
    let mut d = Ampd::start(
        "",
        &format!(
            r#"
[workers.marker]
command = "sh"
args = ["-c", {script}]
ipc = false
probe = {{ type = "exec", command = {probe} }}
[workers.after]
command = "amp-echo"
depends_on = ["marker"]
"#,
            script = q(&script),
            probe = q(format!("test -f {}", flag.display()))
        ),
    );
    // Every status seen while waiting: whenever marker is reported ready, the file exists.
    let s = d.wait_for("marker ready", T, |s| {
        let ready = worker(s, "marker").is_some_and(|w| w.state == "ready");
        if ready {
            assert!(
                flag.exists(),
                "marker reported ready but {} does not exist",
                flag.display()
            );
        }
        ready
    });
    assert!(
        start_to_ready_ms(&s, "marker") >= 250,
        "ready before the file could exist: {:#?}",
        s.events
    );
    let s = d.wait_ready(&["after"], T);
    assert!(
        seq(&s, "marker", "ready") < seq(&s, "after", "started"),
        "{:#?}",
        s.events
    );
    let st = d.shutdown(T);
    assert!(
        st.success(),
        "clean shutdown expected: {st:?}\n{}",
        d.log_text()
    );
}

#[test]
fn exec_probe_that_never_passes_fails_at_ready_timeout() {
    let mut d = Ampd::start(
        "on_startup_failure = \"continue\"",
        r#"
[workers.never]
command = "sleep"
args = ["3600"]
ipc = false
probe = { type = "exec", command = "exit 1" }
ready_timeout = "600ms"
restart = "never"
[workers.after]
command = "amp-echo"
depends_on = ["never"]
"#,
    );
    let s = d.wait_for("never failed", T, |s| {
        worker(s, "never").is_some_and(|w| w.state == "failed")
    });
    let w = worker(&s, "never").unwrap();
    assert!(
        w.last_exit.as_deref().unwrap_or("").contains("ready"),
        "{w:?}"
    );
    assert!(event_seq(&s, "never", "ready").is_none(), "{:#?}", s.events);
    assert_eq!(worker(&s, "after").unwrap().state, "pending");
    assert!(
        event_seq(&s, "after", "started").is_none(),
        "{:#?}",
        s.events
    );
    let pid = event(&s, "never", "started")
        .detail
        .trim_start_matches("pid ")
        .parse::<u32>()
        .expect("pid in started event");
    assert!(
        eventually(Duration::from_secs(2), || !alive(pid)),
        "the unready process {pid} was not killed"
    );
    // A unit that failed earlier does not make a requested shutdown unclean.
    let st = d.shutdown(T);
    assert!(st.success(), "{st:?}\n{}", d.log_text());
}

#[test]
fn started_probe_and_no_probe_are_ready_at_once() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.explicit]
command = "sleep"
args = ["3600"]
ipc = false
probe = { type = "started" }
ready_timeout = "30s"
[workers.implicit]
command = "sleep"
args = ["3600"]
ipc = false
ready_timeout = "30s"
[workers.after]
command = "amp-echo"
depends_on = ["explicit", "implicit"]
"#,
    );
    let s = d.wait_ready(&["explicit", "implicit", "after"], T);
    for u in ["explicit", "implicit"] {
        // Nothing to wait for: ready right after the spawn (well under one probe interval on an
        // idle machine; generous here for a loaded CI box, and far below ready_timeout).
        let ms = start_to_ready_ms(&s, u);
        assert!(ms < 1000, "{u} took {ms} ms to be ready: {:#?}", s.events);
        let pid = worker(&s, u).unwrap().pid.expect("pid");
        // argv[0] is the resolved program path (e.g. /usr/bin/sleep).
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv: Vec<&str> = cmdline.trim_end_matches('\0').split('\0').collect();
        assert!(
            argv.len() == 2 && argv[0].ends_with("sleep") && argv[1] == "3600",
            "{u}'s pid {pid} runs {argv:?}"
        );
        assert!(seq(&s, u, "ready") < seq(&s, "after", "started"));
    }
    let st = d.shutdown(T);
    assert!(
        st.success(),
        "clean shutdown expected: {st:?}\n{}",
        d.log_text()
    );
}

#[test]
fn one_shot_job_gates_its_dependent_with_completed_successfully() {
    let dir = Scratch::new();
    let out = dir.path.join("migrated");
    let script = format!("sleep 0.3; echo migrated > {}", out.display());
    let mut d = Ampd::start(
        "",
        &format!(
            r#"
[workers.migrate]
command = "sh"
args = ["-c", {script}]
ipc = false
restart = "never"
[workers.api]
command = "amp-echo"
depends_on = {{ migrate = "completed_successfully" }}
"#,
            script = q(&script)
        ),
    );
    let s = d.wait_for("migrate completed and api ready", T, |s| {
        worker(s, "migrate").is_some_and(|w| w.state == "completed")
            && worker(s, "api").is_some_and(|w| w.state == "ready")
    });
    assert_eq!(
        std::fs::read_to_string(&out).expect("the job's output"),
        "migrated\n"
    );
    let job = worker(&s, "migrate").unwrap();
    assert_eq!(job.restarts, 0, "{job:?}");
    assert!(job.pid.is_none(), "{job:?}");
    assert!(
        job.last_exit
            .as_deref()
            .unwrap_or("")
            .contains("exited with code 0"),
        "{job:?}"
    );
    // The job ran first; api was spawned only after it had exited 0.
    assert!(seq(&s, "migrate", "exited") < seq(&s, "migrate", "completed"));
    assert!(
        seq(&s, "migrate", "completed") < seq(&s, "api", "started"),
        "{:#?}",
        s.events
    );
    let st = d.shutdown(T);
    assert!(
        st.success(),
        "clean shutdown expected: {st:?}\n{}",
        d.log_text()
    );
}

#[test]
fn failed_one_shot_job_keeps_its_dependent_pending() {
    let mut d = Ampd::start(
        "on_startup_failure = \"continue\"",
        r#"
[workers.migrate]
command = "sh"
args = ["-c", "echo cannot migrate >&2; exit 4"]
ipc = false
restart = "never"
[workers.api]
command = "amp-echo"
depends_on = { migrate = "completed_successfully" }
[workers.other]
command = "amp-echo"
"#,
    );
    let s = d.wait_for("migrate failed", T, |s| {
        worker(s, "migrate").is_some_and(|w| w.state == "failed")
    });
    assert!(
        worker(&s, "migrate")
            .unwrap()
            .last_exit
            .as_deref()
            .unwrap_or("")
            .contains("code 4"),
        "{s:#?}"
    );
    let s = d.wait_ready(&["other"], T);
    assert_eq!(worker(&s, "api").unwrap().state, "pending", "{s:#?}");
    assert!(event_seq(&s, "api", "started").is_none(), "{:#?}", s.events);
    assert!(
        d.log_text().contains("cannot migrate"),
        "the job's stderr is not in ampd's log:\n{}",
        d.log_text()
    );
    let _ = d.shutdown(T);
}

#[test]
fn shutdown_sends_each_plain_process_its_own_stop_signal() {
    let dir = Scratch::new();
    let armed = dir.path.join("armed");
    // Exits 0 on SIGUSR1 only; SIGTERM (the default stop signal) would kill it instead. The trap
    // is installed before the file the probe waits for is created.
    let trapper = format!(
        "trap 'echo caught-usr1; exit 0' USR1; touch {}; while :; do sleep 0.05 & wait $!; done",
        armed.display()
    );
    let port = free_port();
    let mut d = Ampd::start(
        "",
        &format!(
            r#"
[workers.trapper]
command = "sh"
args = ["-c", {trapper}]
ipc = false
probe = {{ type = "exec", command = {probe} }}
stop_signal = "SIGUSR1"
stop_timeout = "5s"
[workers.web]
command = "python3"
args = ["-m", "http.server", "{port}", "--bind", "127.0.0.1"]
ipc = false
probe = {{ type = "tcp", port = {port} }}
stop_signal = "INT"
stop_timeout = "5s"
"#,
            trapper = q(&trapper),
            probe = q(format!("test -f {}", armed.display()))
        ),
    );
    let s = d.wait_ready(&["trapper", "web"], T);
    let pids: Vec<u32> = ["trapper", "web"]
        .iter()
        .map(|u| worker(&s, u).unwrap().pid.expect("pid"))
        .collect();
    let st = d.shutdown(T);
    assert!(
        st.success(),
        "clean shutdown expected (no SIGKILL): {st:?}\n{}",
        d.log_text()
    );
    let log = d.log_text();
    // Each one handled its own signal and exited 0 by itself.
    assert!(
        log.contains("caught-usr1"),
        "trapper did not get SIGUSR1:\n{log}"
    );
    assert!(
        log.contains("Keyboard interrupt received"),
        "web did not get SIGINT:\n{log}"
    );
    for u in ["trapper", "web"] {
        let line = exit_line(&log, u);
        assert!(line.contains("exited with code 0 (Shutdown)"), "{line}");
    }
    assert!(!log.contains("SIGKILL"), "{log}");
    assert!(pids.iter().all(|&p| !alive(p)), "{pids:?} still alive");
}

#[test]
fn plain_process_ignoring_its_stop_signal_is_killed_after_stop_timeout() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.deaf]
command = "sh"
args = ["-c", "trap '' TERM; while :; do sleep 0.05; done"]
ipc = false
stop_timeout = "300ms"
"#,
    );
    let s = d.wait_ready(&["deaf"], T);
    let pgid = worker(&s, "deaf").unwrap().pid.expect("pid");
    // The trap must be in place before the shutdown: sh sets it before its first `sleep`.
    assert!(
        eventually(Duration::from_secs(5), || amp_tests::group_members(pgid)
            .len()
            >= 2),
        "sh never started its loop"
    );
    let st = d.shutdown(T);
    assert!(
        !st.success(),
        "a SIGKILLed process makes the shutdown unclean"
    );
    let line = exit_line(&d.log_text(), "deaf");
    assert!(line.contains("killed by SIGKILL"), "{line}");
    assert!(
        eventually(Duration::from_secs(2), || amp_tests::group_members(pgid)
            .is_empty()),
        "group {pgid} survived"
    );
}
