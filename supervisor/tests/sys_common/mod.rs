//! Helpers shared by the `sys_*` integration tests: run a child to completion with a deadline,
//! read its captured stdout without blocking forever.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use amp_supervisor::spec::ExitReason;
use amp_supervisor::sys::{
    drain_fd, signal_group, spawn, wait_readable, wait_timeout, Child, DrainStatus, LineBuffer,
    Signal, SpawnSpec, StdioMode,
};
use std::os::fd::{AsFd as _, BorrowedFd};
use std::time::{Duration, Instant};

/// Upper bound for anything a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Reads `fd` (nonblocking) until end of stream or `DEADLINE`; panics on timeout.
pub fn read_to_eof(fd: BorrowedFd<'_>) -> String {
    let deadline = Instant::now() + DEADLINE;
    let mut lines = LineBuffer::new(1 << 16);
    let mut out = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no end of stream within {DEADLINE:?}; got so far: {out:?}"
        );
        wait_readable(fd, left).expect("poll");
        let status = drain_fd(fd, &mut lines, usize::MAX, |l| {
            out.push_str(&String::from_utf8_lossy(l.bytes));
            out.push('\n');
        })
        .expect("read");
        if status == DrainStatus::Eof {
            return out;
        }
    }
}

/// Reads lines from `fd` until one satisfies `pred`, returning it; panics after `DEADLINE`.
pub fn read_line_matching(fd: BorrowedFd<'_>, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + DEADLINE;
    let mut lines = LineBuffer::new(1 << 16);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no matching line within {DEADLINE:?}; saw {seen:?}"
        );
        wait_readable(fd, left).expect("poll");
        let mut found = None;
        let status = drain_fd(fd, &mut lines, usize::MAX, |l| {
            let s = String::from_utf8_lossy(l.bytes).into_owned();
            if found.is_none() && pred(&s) {
                found = Some(s.clone());
            }
            seen.push(s);
        })
        .expect("read");
        if let Some(line) = found {
            return line;
        }
        assert!(
            status != DrainStatus::Eof,
            "end of stream before a matching line; saw {seen:?}"
        );
    }
}

/// Waits for `child` to exit (within `DEADLINE`) and reaps it.
pub fn wait(child: &Child) -> ExitReason {
    wait_timeout(child, DEADLINE)
        .expect("wait")
        .expect("child did not exit in time")
}

/// Kills `child`'s process group and reaps the child.
pub fn kill_and_reap(child: &Child) -> ExitReason {
    signal_group(child.pid, Signal::SIGKILL).expect("killpg");
    wait(child)
}

/// Runs `spec` with stdout captured; returns how it ended and its stdout.
pub fn run(mut spec: SpawnSpec) -> (ExitReason, String) {
    spec.stdout = StdioMode::Capture;
    let child = spawn(&spec).expect("spawn");
    drop(spec);
    let out = read_to_eof(child.stdout.as_ref().expect("captured").as_fd());
    (wait(&child), out)
}

/// `/bin/sh -c script` with stdout captured and stderr inherited (visible on failure).
pub fn sh(script: &str) -> SpawnSpec {
    let mut spec = SpawnSpec::shell(script);
    spec.stderr = StdioMode::Inherit;
    spec
}
