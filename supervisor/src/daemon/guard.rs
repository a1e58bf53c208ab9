//! The cleanup guard: a tiny process (`ampd --guard`) that outlives a SIGKILLed ampd just long
//! enough to clean up after it.
//!
//! Workers die with ampd through `PR_SET_PDEATHSIG`, but what *they* spawned does not. ampd
//! tells the guard, over a pipe on the guard's stdin, every process group it creates (`+PGID`)
//! and forgets (`-PGID`). If the pipe reaches EOF without a final `done` line, ampd died: the
//! guard SIGKILLs every process group it still knows, removes the shared-memory segments ampd
//! created (they carry its pid), and removes the control socket if nobody listens on it. Then it
//! exits. A process that left its process group (setsid) escapes; cgroups would catch it, but
//! they are not available everywhere (see docs).

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use nix::unistd::Pid;

/// ampd's handle on its guard.
#[derive(Debug)]
pub struct Guard {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Guard {
    /// Starts `<current exe> --guard --shm-prefix P --socket S` in its own process group.
    ///
    /// # Errors
    /// When the executable cannot be started.
    pub fn start(shm_prefix: &str, socket: &Path) -> std::io::Result<Self> {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg("--guard")
            .arg("--shm-prefix")
            .arg(shm_prefix)
            .arg("--guard-socket")
            .arg(socket)
            .arg("--guard-pid")
            .arg(std::process::id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take();
        Ok(Self { child, stdin })
    }

    fn send(&mut self, line: &str) {
        if let Some(s) = &mut self.stdin {
            if s.write_all(line.as_bytes()).is_err() {
                tracing::warn!(
                    "cleanup guard is gone; grandchildren will not be cleaned up if ampd is killed"
                );
                self.stdin = None;
            }
        }
    }

    /// Registers a new process group.
    pub fn watch(&mut self, pgid: Pid) {
        self.send(&format!("+{pgid}\n"));
    }

    /// Forgets a process group (its leader exited and was reaped).
    pub fn forget(&mut self, pgid: Pid) {
        self.send(&format!("-{pgid}\n"));
    }

    /// Clean exit: tells the guard all is well and waits for it.
    pub fn finish(mut self) {
        self.send("done\n");
        self.stdin = None;
        let _ = self.child.wait();
    }
}

/// The guard's main loop (`ampd --guard`). Returns the exit code.
pub fn guard_main(shm_prefix: &str, socket: &Path, ampd_pid: u32) -> i32 {
    // The guard must survive the terminal's Ctrl-C and ampd's own signals; it ends on EOF.
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        let _ = signal_hook::flag::register(sig, std::sync::Arc::default());
    }
    let mut groups: BTreeSet<i32> = BTreeSet::new();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if line == "done" {
            return 0;
        }
        if let Some(p) = line.strip_prefix('+').and_then(|p| p.parse().ok()) {
            groups.insert(p);
        } else if let Some(p) = line.strip_prefix('-').and_then(|p| p.parse::<i32>().ok()) {
            groups.remove(&p);
        }
    }
    // ampd is gone without saying done.
    for g in &groups {
        let _ = nix::sys::signal::killpg(Pid::from_raw(*g), nix::sys::signal::Signal::SIGKILL);
    }
    // Wait (bounded) until ampd is really dead, so the sweep sees a dead creator.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let pid = Pid::from_raw(i32::try_from(ampd_pid).unwrap_or(0));
    while nix::sys::signal::kill(pid, None).is_ok() && std::time::Instant::now() < deadline {
        // A zombie still answers kill(0): check /proc state instead.
        match std::fs::read_to_string(format!("/proc/{ampd_pid}/stat")) {
            Ok(s)
                if s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z')) =>
            {
                break
            }
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(_) => break,
        }
    }
    let removed = sweep_creator(shm_prefix, ampd_pid);
    // Remove the socket unless a live listener (a new ampd) answers on it. A connect can
    // briefly succeed while the dead ampd's listener is still being torn down, so ask a few
    // times before deciding someone else owns it.
    let mut socket_removed = false;
    for _ in 0..20 {
        match std::os::unix::net::UnixStream::connect(socket) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(_) => {
                socket_removed = std::fs::remove_file(socket).is_ok();
                break;
            }
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(25)),
        }
    }
    eprintln!(
        "ampd-guard: ampd {ampd_pid} died; killed {} process group(s), removed {removed} segment(s){}",
        groups.len(),
        if socket_removed { " and the control socket" } else { "" }
    );
    1
}

/// Removes `/dev/shm/{prefix}-{pid}-*` (the creator may be a zombie, which `sweep` treats as
/// alive).
fn sweep_creator(prefix: &str, pid: u32) -> usize {
    let want = format!("{prefix}-{pid}-");
    let mut n = 0;
    if let Ok(dir) = std::fs::read_dir(amp_ipc::segment::SHM_DIR) {
        for e in dir.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&want) && std::fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
    }
    n
}
