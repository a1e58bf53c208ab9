//! Helpers shared by amp's end-to-end tests: start a real `ampd` on a config written into a
//! private temporary directory, observe it through its control socket, and tear it down.
//!
//! Every wait is a poll of a condition with a deadline; a timed-out wait panics with the last
//! status and the tail of ampd's log, so a failing test says why.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use amp_supervisor::control::client;
use amp_supervisor::control::proto::{QueueStatus, Response, StatusData, WorkerStatus};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Path of a binary built by this workspace (`ampd`, `ampctl`, `amp-echo`, …), next to the test
/// executable's directory (`target/<profile>/deps/..`).
#[must_use]
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace --bins` first (scripts/test does)",
        p.display()
    );
    p
}

/// A private scratch directory, removed on drop.
#[derive(Debug)]
pub struct Scratch {
    /// Its path.
    pub path: PathBuf,
}

impl Scratch {
    /// Creates `/tmp/amp-t-<pid>-<n>`.
    #[must_use]
    pub fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("amp-t-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("scratch dir");
        Self { path }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A running ampd under test.
#[derive(Debug)]
pub struct Ampd {
    /// The process.
    pub child: Option<Child>,
    /// Its control socket.
    pub socket: PathBuf,
    /// Its config file.
    pub config: PathBuf,
    /// Its shared-memory prefix (unique per test).
    pub shm_prefix: String,
    /// stderr log file.
    pub log: PathBuf,
    /// The scratch directory (config, socket, log).
    pub scratch: Scratch,
    /// Exit status, once seen.
    pub exited: Option<ExitStatus>,
}

impl Ampd {
    /// Writes a config (`[supervisor]` with a private socket and shm prefix, then
    /// `supervisor_lines`, then `rest`) and starts ampd on it.
    #[must_use]
    pub fn start(supervisor_lines: &str, rest: &str) -> Self {
        let scratch = Scratch::new();
        let socket = scratch.path.join("ampd.sock");
        let shm_prefix = format!(
            "ampt{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let config = scratch.path.join("amp.toml");
        let text = format!(
            "[supervisor]\ncontrol_socket = {:?}\nshm_prefix = {:?}\n{supervisor_lines}\n\n{rest}\n",
            socket.display().to_string(),
            shm_prefix
        );
        std::fs::write(&config, text).expect("write config");
        let log = scratch.path.join("ampd.log");
        let child = Command::new(bin("ampd"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn ampd");
        let mut me = Self {
            child: Some(child),
            socket,
            config,
            shm_prefix,
            log,
            scratch,
            exited: None,
        };
        me.wait_socket(Duration::from_secs(10));
        me
    }

    fn wait_socket(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            // It may already have come and gone (a startup that aborts at once).
            if self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "ampd did not open its control socket within {timeout:?}\n{}",
            self.log_text()
        );
    }

    /// ampd's pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends a raw request (`{"cmd": ...}`), returns the response.
    ///
    /// # Errors
    /// When ampd cannot be reached.
    pub fn request(&self, req: serde_json::Value) -> Result<Response, client::ClientError> {
        client::request(&self.socket, req, Duration::from_secs(10))
    }

    /// The current status.
    ///
    /// # Panics
    /// When the request fails.
    #[must_use]
    pub fn status(&self) -> StatusData {
        let r = self
            .request(serde_json::json!({"cmd": "status"}))
            .expect("status request");
        serde_json::from_value(r.data.expect("status data")).expect("status payload")
    }

    /// Polls `status` until `cond` holds; panics with the last status and the log after
    /// `timeout`.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&StatusData) -> bool,
    ) -> StatusData {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(r) = self.request(serde_json::json!({"cmd": "status"})) {
                if let Some(s) = r
                    .data
                    .and_then(|d| serde_json::from_value::<StatusData>(d).ok())
                {
                    if cond(&s) {
                        return s;
                    }
                    last = Some(s);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}\nlast status: {last:#?}\nlog:\n{}",
            self.log_text()
        );
    }

    /// Waits until every named unit is ready.
    pub fn wait_ready(&self, units: &[&str], timeout: Duration) -> StatusData {
        self.wait_for(&format!("{units:?} ready"), timeout, |s| {
            units
                .iter()
                .all(|u| worker(s, u).is_some_and(|w| w.state == "ready"))
        })
    }

    /// Requests shutdown and waits for ampd to exit.
    pub fn shutdown(&mut self, timeout: Duration) -> ExitStatus {
        let _ = self.request(serde_json::json!({"cmd": "shutdown"}));
        self.wait_exit(timeout)
    }

    /// Waits for ampd to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        if let Some(st) = self.exited {
            return st;
        }
        let child = self.child.as_mut().expect("ampd running");
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                self.child = None;
                self.exited = Some(st);
                return st;
            }
            if Instant::now() > deadline {
                panic!("ampd did not exit within {timeout:?}\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILLs ampd and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// ampd's log so far.
    #[must_use]
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Entries of /dev/shm made with this ampd's prefix.
    #[must_use]
    pub fn shm_leftovers(&self) -> Vec<String> {
        shm_with_prefix(&self.shm_prefix)
    }
}

impl Drop for Ampd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// /dev/shm entries starting with `prefix`.
#[must_use]
pub fn shm_with_prefix(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// A worker's status line by unit name.
#[must_use]
pub fn worker<'a>(s: &'a StatusData, name: &str) -> Option<&'a WorkerStatus> {
    s.workers.iter().find(|w| w.name == name)
}

/// A kind's queue line.
///
/// # Panics
/// When no queue of that kind is in the status (a test asking for it expects one).
#[must_use]
pub fn queue<'a>(s: &'a StatusData, kind: &str) -> &'a QueueStatus {
    s.queues
        .iter()
        .find(|q| q.kind == kind)
        .unwrap_or_else(|| panic!("no queue of kind {kind:?} in {:?}", s.queues))
}

/// Sequence number of the first event of `kind` for `unit`.
#[must_use]
pub fn event_seq(s: &StatusData, unit: &str, kind: &str) -> Option<u64> {
    s.events
        .iter()
        .find(|e| e.unit == unit && e.kind == kind)
        .map(|e| e.seq)
}

/// Whether a process exists (and is not a zombie).
#[must_use]
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Pids of all processes whose process group is `pgid`.
#[must_use]
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(d) = std::fs::read_dir("/proc") {
        for e in d.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                if let Some(rest) = stat.rsplit(')').next() {
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    // fields after comm: state ppid pgrp ...
                    if f.first() != Some(&"Z")
                        && f.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
                    {
                        out.push(pid);
                    }
                }
            }
        }
    }
    out
}

/// Path of a file in the scratch dir.
#[must_use]
pub fn in_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
