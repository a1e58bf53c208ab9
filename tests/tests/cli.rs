//! The command lines of `ampd` and `ampctl`: exit codes and messages on bad configs and on an
//! unreachable daemon, `ampd --check` on every shipped example, and `ampctl status` against a
//! running ampd.
//!
//! Exit codes under test: `ampd` 0 ok, 2 config refused; `ampctl` 0 ok, 2 usage error, 3 ampd
//! not reachable.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use amp_tests::{bin, worker, Ampd, Scratch};

const T: Duration = Duration::from_secs(15);

/// Runs a workspace binary to completion with stdin closed and no `AMP_SOCKET` inherited.
fn run(name: &str, args: &[&std::ffi::OsStr]) -> Output {
    Command::new(bin(name))
        .args(args)
        .env_remove("AMP_SOCKET")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"))
}

/// What a finished command printed and returned.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn ran(o: Output) -> Ran {
    Ran {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `ampd --check --config FILE` on an existing file.
fn check_file(path: &Path) -> Ran {
    ran(run(
        "ampd",
        &["--check".as_ref(), "--config".as_ref(), path.as_os_str()],
    ))
}

/// Writes `text` to `amp.toml` in a fresh scratch dir and runs `ampd --check` on it.
fn check(text: &str) -> (Ran, PathBuf, Scratch) {
    let dir = Scratch::new();
    let path = dir.path.join("amp.toml");
    std::fs::write(&path, text).expect("write config");
    (check_file(&path), path, dir)
}

/// Asserts exit code 2, nothing on stdout, and `want` (prefixed by `ampd: FILE:`) on stderr.
fn assert_refused(r: &Ran, path: &Path, want: &str) {
    assert_eq!(r.code, Some(2), "exit code; stderr:\n{}", r.stderr);
    assert!(
        r.stdout.is_empty(),
        "nothing on stdout for a refused config: {}",
        r.stdout
    );
    let expected = format!("ampd: {}:{want}", path.display());
    assert!(
        r.stderr.contains(&expected),
        "stderr lacks {expected:?}:\n{}",
        r.stderr
    );
}

#[test]
fn bad_toml_syntax_exits_2_naming_file_line_and_column() {
    let text = "[workers.a]\ncommand = 'amp-echo\n";
    let (r, path, dir) = check(text);
    assert_refused(&r, &path, "2:20: invalid TOML");
    // Without --check the same file is refused the same way, before anything starts.
    let socket = dir.path.join("ampd.sock");
    let text = format!(
        "[supervisor]\ncontrol_socket = {:?}\n{text}",
        socket.display().to_string()
    );
    std::fs::write(&path, text).expect("write config");
    let r = ran(run("ampd", &["--config".as_ref(), path.as_os_str()]));
    assert_refused(&r, &path, "4:20: invalid TOML");
    assert!(
        !socket.exists(),
        "ampd opened its control socket for a refused config"
    );
}

#[test]
fn dependency_cycle_is_printed_as_a_path() {
    let (r, path, _dir) = check(
        r#"[workers.a]
command = "amp-echo"
depends_on = ["b"]

[workers.b]
command = "amp-echo"
depends_on = ["a"]
"#,
    );
    assert_refused(
        &r,
        &path,
        "3:15: workers.a.depends_on: dependency cycle: a -> b -> a",
    );

    let (r, path, _dir) = check(
        r#"[workers.a]
command = "amp-echo"
depends_on = ["c"]
[workers.b]
command = "amp-echo"
depends_on = ["a"]
[workers.c]
command = "amp-echo"
depends_on = { b = "started" }
"#,
    );
    // The path follows `depends_on` edges: a needs c, c needs b, b needs a.
    assert_refused(
        &r,
        &path,
        "3:15: workers.a.depends_on: dependency cycle: a -> c -> b -> a",
    );
}

#[test]
fn unknown_dependency_is_named_with_the_known_workers() {
    let (r, path, _dir) = check(
        r#"[workers.echo]
command = "amp-echo"

[workers.hash]
command = "amp-hash"
depends_on = ["hsah"]
"#,
    );
    assert_refused(
        &r,
        &path,
        "6:15: workers.hash.depends_on: unknown worker \"hsah\" (known: echo, hash)",
    );
}

#[test]
fn unknown_key_is_named_with_its_path_and_the_known_keys() {
    let (r, path, _dir) = check("[workers.a]\ncommand = \"amp-echo\"\n  replica = 2\n");
    assert_refused(
        &r,
        &path,
        "3:3: workers.a.replica: unknown field `replica`, expected one of",
    );
    assert!(
        r.stderr.contains("`replicas`"),
        "the known keys are listed: {}",
        r.stderr
    );
}

#[test]
fn every_invalid_value_is_reported_not_only_the_first() {
    let (r, path, _dir) = check(
        r#"[workers.a]
command = "amp-echo"
replicas = 0

[workers.b]
command = "amp-echo"
depends_on = ["nobody"]
backoff = { initial = "5s", max = "1s" }
"#,
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains(&format!("{}:", path.display())))
        .collect();
    assert!(
        lines.len() >= 3,
        "one line per problem expected:\n{}",
        r.stderr
    );
    for field in [
        "workers.a.replicas",
        "workers.b.depends_on",
        "workers.b.backoff",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(&format!(": {field}"))),
            "{field} not reported:\n{}",
            r.stderr
        );
    }
    assert!(r.stderr.contains("\"nobody\""), "{}", r.stderr);
}

#[test]
fn missing_config_file_exits_2_with_the_reason() {
    let dir = Scratch::new();
    let path = dir.path.join("nope.toml");
    let r = check_file(&path);
    assert_refused(&r, &path, " cannot read the config file");
}

#[test]
fn every_example_passes_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut examples: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    examples.sort();
    assert!(
        examples.len() >= 4,
        "examples missing in {}: {examples:?}",
        dir.display()
    );
    for ex in &examples {
        let text = std::fs::read_to_string(ex).expect("read example");
        let workers = text.lines().filter(|l| l.starts_with("[workers.")).count();
        let r = check_file(ex);
        assert_eq!(r.code, Some(0), "{} refused:\n{}", ex.display(), r.stderr);
        assert_eq!(
            r.stdout,
            format!("{}: ok ({workers} workers)\n", ex.display()),
            "{}",
            ex.display()
        );
    }
}

#[test]
fn ampctl_without_a_listening_ampd_exits_3() {
    let dir = Scratch::new();
    // No file at all.
    let missing = dir.path.join("missing.sock");
    let r = ran(run(
        "ampctl",
        &["--socket".as_ref(), missing.as_os_str(), "status".as_ref()],
    ));
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(
        r.stderr
            .contains(&format!("cannot reach ampd at {}", missing.display())),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("is ampd running?"), "{}", r.stderr);
    // A stale socket file left by a dead listener: connection refused, same answer.
    let stale = dir.path.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    assert!(stale.exists());
    let r = ran(run(
        "ampctl",
        &[
            "--timeout".as_ref(),
            "2".as_ref(),
            "--socket".as_ref(),
            stale.as_os_str(),
            "status".as_ref(),
        ],
    ));
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("cannot reach ampd at {}", stale.display())),
        "{}",
        r.stderr
    );
}

#[test]
fn ampctl_usage_error_exits_2() {
    let r = ran(run("ampctl", &["frobnicate".as_ref()]));
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("frobnicate"), "{}", r.stderr);
}

#[test]
fn ampctl_status_prints_one_row_per_worker_and_shutdown_stops_ampd() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.front]
command = "amp-echo"
kinds = ["echo"]
[workers.pool]
command = "amp-echo"
kinds = ["echo"]
replicas = 2
depends_on = ["front"]
[workers.idle]
command = "sleep"
args = ["3600"]
ipc = false
"#,
    );
    let units = ["front", "pool#0", "pool#1", "idle"];
    let s = d.wait_ready(&units, T);
    let sock = d.socket.clone();
    let r = ran(run(
        "ampctl",
        &["--socket".as_ref(), sock.as_os_str(), "status".as_ref()],
    ));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // The worker table: title, header, one row per unit, then a blank line before the
    // per-kind queue table (printed because the config has a kind).
    let all: Vec<&str> = r.stdout.lines().collect();
    let blank = all
        .iter()
        .position(|l| l.trim().is_empty())
        .unwrap_or(all.len());
    let lines = &all[..blank];
    assert_eq!(
        lines.len(),
        2 + units.len(),
        "title, header, one row per unit:\n{}",
        r.stdout
    );
    let kinds = &all[(blank + 1).min(all.len())..];
    assert!(
        kinds.first().is_some_and(|l| l.starts_with("KIND")),
        "queue table after the workers:\n{}",
        r.stdout
    );
    assert!(
        kinds
            .iter()
            .any(|l| l.split_whitespace().next() == Some("echo")),
        "a row for kind echo:\n{}",
        r.stdout
    );
    assert!(
        lines[0].starts_with(&format!("ampd pid {}  up ", d.pid())),
        "{}",
        r.stdout
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["WORKER", "STATE", "PID", "RESTARTS", "READY", "LAST", "EXIT"],
        "{}",
        r.stdout
    );
    let mut seen: Vec<&str> = Vec::new();
    for row in &lines[2..] {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols.len(), 6, "row {row:?}");
        let w = worker(&s, cols[0]).unwrap_or_else(|| panic!("row for an unknown worker: {row:?}"));
        assert_eq!(cols[1], "ready", "{row:?}");
        assert_eq!(cols[2], w.pid.expect("pid").to_string(), "{row:?}");
        assert_eq!(cols[3], "0", "{row:?}");
        assert!(
            cols[4].ends_with('s') && cols[4].trim_end_matches('s').parse::<f64>().is_ok(),
            "{row:?}"
        );
        assert_eq!(cols[5], "-", "{row:?}");
        seen.push(cols[0]);
    }
    seen.sort_unstable();
    let mut want = units.to_vec();
    want.sort_unstable();
    assert_eq!(seen, want, "{}", r.stdout);

    // The same request for scripts: JSON, and the socket from AMP_SOCKET.
    let out = Command::new(bin("ampctl"))
        .args(["--json", "status"])
        .env("AMP_SOCKET", &sock)
        .stdin(Stdio::null())
        .output()
        .expect("run ampctl");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("ampctl --json prints JSON");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        v["data"]["workers"].as_array().map(Vec::len),
        Some(units.len()),
        "{v}"
    );

    let r = ran(run(
        "ampctl",
        &["--socket".as_ref(), sock.as_os_str(), "shutdown".as_ref()],
    ));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let st = d.wait_exit(T);
    assert!(
        st.success(),
        "clean shutdown expected: {st:?}\n{}",
        d.log_text()
    );
    let r = ran(run(
        "ampctl",
        &["--socket".as_ref(), sock.as_os_str(), "status".as_ref()],
    ));
    assert_eq!(r.code, Some(3), "ampd is gone: {}", r.stderr);
}
