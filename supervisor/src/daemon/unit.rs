//! The runtime side of one unit: its current process, pipes, segment and control channel.
//!
//! The lifecycle core decides *what* happens to a unit; this module holds the OS resources of its
//! current incarnation and knows how to create them (spawn with a fresh segment, doorbells and
//! one-shot control server) and how to read them (output lines, heartbeats).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use amp_ipc::link::SupervisorEnd;
use amp_ipc::proto::{self, ToWorker};
use amp_ipc::segment::{Segment, SegmentConfig};
use amp_ipc::signal::Doorbell;
use ipc_channel::ipc::IpcSender;
use nix::unistd::Pid;

use crate::config::{Principal, SupervisorConfig, WorkerConfig, WorkerMode};
use crate::sys::{self, IdRef, LineBuffer, LogTail, RotatingFile, SpawnSpec, StdioMode};

/// Longest line kept from a worker's output; longer lines are split.
pub const MAX_LINE: usize = 16 * 1024;

/// The ipc side of an incarnation.
#[derive(Debug)]
pub struct IpcRt {
    /// The unit's segment (unlinked once the worker attached).
    pub seg: Arc<Segment>,
    /// Rings and doorbells, supervisor side.
    pub end: SupervisorEnd,
    /// Name of the one-shot server the worker connects to.
    pub server_name: String,
    /// Where to send control messages, once the worker said Hello.
    pub reply: Option<IpcSender<ToWorker>>,
    /// The worker mapped its segment.
    pub attached: bool,
    /// Last heartbeat value seen.
    pub last_heartbeat: u64,
}

/// An exec readiness probe in flight.
#[derive(Debug)]
pub struct ProbeRt {
    /// The probe process.
    pub child: sys::Child,
}

/// One incarnation (process) of a unit.
#[derive(Debug)]
pub struct Proc {
    /// Process id (= process group id).
    pub pid: Pid,
    /// Spawn generation (to drop messages from older incarnations).
    pub gen: u64,
    /// Exit notification.
    pub pidfd: OwnedFd,
    /// Captured stdout.
    pub stdout: Option<(OwnedFd, LineBuffer)>,
    /// Captured stderr.
    pub stderr: Option<(OwnedFd, LineBuffer)>,
    /// The amp-ipc side (workers with `ipc = true`).
    pub ipc: Option<IpcRt>,
    /// A running exec probe (plain processes).
    pub probe: Option<ProbeRt>,
    /// When the next readiness probe may run.
    pub next_probe: Instant,
    /// Ready was reported to the lifecycle core.
    pub ready: bool,
}

/// A unit and its current incarnation.
#[derive(Debug)]
pub struct UnitRt {
    /// `NAME` or `NAME#i`.
    pub name: String,
    /// Index of its worker in `Config::workers`.
    pub worker: usize,
    /// Current process, if any.
    pub proc: Option<Proc>,
    /// Last lines of output.
    pub tail: LogTail,
    /// Optional log file.
    pub logfile: Option<RotatingFile>,
    /// What its last process reported it was running when it went away (read from its
    /// control block before the segment is dropped; consumed when its tasks are requeued).
    pub blame: Option<crate::delivery::Blame>,
}

/// What a dead worker's control block says it was running (untrusted: see
/// `docs/shm-layout.md`, "ControlBlock"): `tasks_taken − tasks_ok − tasks_failed` tasks, the
/// last of them `running_task − 1`.
#[must_use]
pub fn blame_from_counters(taken: u64, done: u64, running: u64) -> crate::delivery::Blame {
    use crate::delivery::{Blame, TaskId};
    if taken == 0 || done > taken {
        // Not maintained (an older worker), or inconsistent.
        return Blame::All;
    }
    match (taken - done, running) {
        (0, _) => Blame::Nobody,
        (1, r) if r > 0 => Blame::Only(TaskId(r - 1)),
        _ => Blame::All,
    }
}

impl UnitRt {
    /// Writes one line of the unit's output to the log, the tail and the log file.
    pub fn output_line(&mut self, stream: &str, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        tracing::info!(target: "amp::worker", worker = %self.name, stream, "{text}");
        self.tail.push(bytes);
        if let Some(f) = &mut self.logfile {
            if let Err(e) = f.write_line(bytes) {
                tracing::warn!(worker = %self.name, "cannot write log file: {e}");
                self.logfile = None;
            }
        }
    }
}

fn id_ref(p: &Principal) -> IdRef {
    match p {
        Principal::Name(n) => IdRef::Name(n.clone()),
        Principal::Id(i) => IdRef::Id(*i),
    }
}

/// Resolves a worker's program: a name is looked up next to ampd's executable, then in `PATH`.
///
/// # Errors
/// A message naming the command.
pub fn resolve_program(w: &WorkerConfig) -> Result<PathBuf, String> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from));
    // cargo puts test binaries in target/<profile>/deps: look one level up too.
    let mut dirs: Vec<PathBuf> = exe_dir.iter().cloned().collect();
    if let Some(d) = &exe_dir {
        if d.file_name().is_some_and(|n| n == "deps") {
            if let Some(up) = d.parent() {
                dirs.push(up.to_path_buf());
            }
        }
    }
    for d in &dirs {
        if let Some(p) = w.command.resolve(Some(d), None, is_executable) {
            return Ok(p);
        }
    }
    w.command
        .resolve(None, std::env::var_os("PATH").as_deref(), is_executable)
        .ok_or_else(|| format!("command {} not found next to ampd nor in PATH", w.command))
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Everything needed to spawn one incarnation.
#[derive(Debug)]
pub struct SpawnPlan<'a> {
    /// Supervisor settings.
    pub sup: &'a SupervisorConfig,
    /// The worker's settings.
    pub worker: &'a WorkerConfig,
    /// The unit's name.
    pub unit: &'a str,
    /// Spawn generation.
    pub gen: u64,
    /// Server name for the handshake (ipc workers).
    pub server_name: Option<String>,
}

/// Creates the segment and doorbells (ipc workers) and spawns the process.
///
/// # Errors
/// A message for the event log.
pub fn spawn(plan: &SpawnPlan<'_>) -> Result<Proc, String> {
    let w = plan.worker;
    let program = resolve_program(w)?;
    let mut spec = SpawnSpec::new(program);
    spec.args = w.args.iter().map(Into::into).collect();
    spec.env = w
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect();
    spec.env.push(("AMP_WORKER".into(), plan.unit.to_owned()));
    spec.cwd.clone_from(&w.cwd);
    spec.user = w.user.as_ref().map(id_ref);
    spec.group = w.group.as_ref().map(id_ref);
    spec.rlimits = w.rlimits;
    spec.nice = w.nice;
    spec.cpu_affinity.clone_from(&w.cpu_affinity);
    spec.stdout = StdioMode::Capture;
    spec.stderr = StdioMode::Capture;
    let mut ipc = None;
    if let WorkerMode::Ipc(ic) = &w.mode {
        let cfg = SegmentConfig {
            tasks_capacity: ic.ring.tasks,
            tasks_max_record: ic.ring.max_record,
            completions_capacity: ic.ring.completions,
            completions_max_record: ic.ring.max_record,
        };
        let mut seg =
            Segment::create(&plan.sup.shm_prefix, &cfg, plan.gen).map_err(|e| e.to_string())?;
        // Until the worker attached, the segment's name is ours to remove on any error path.
        seg.set_unlink_on_drop(true);
        let seg = Arc::new(seg);
        let tasks_bell = Doorbell::new().map_err(|e| format!("eventfd: {e}"))?;
        let completions_bell = Doorbell::new().map_err(|e| format!("eventfd: {e}"))?;
        spec.pass_fds.push((
            tasks_bell.try_clone_fd().map_err(|e| e.to_string())?,
            proto::TASKS_DOORBELL_FD,
        ));
        spec.pass_fds.push((
            completions_bell.try_clone_fd().map_err(|e| e.to_string())?,
            proto::COMPLETIONS_DOORBELL_FD,
        ));
        let server_name = plan.server_name.clone().ok_or("no handshake server")?;
        spec.env
            .push((proto::ENV_CONTROL.into(), server_name.clone()));
        spec.env.push((
            proto::ENV_DOORBELLS.into(),
            format!(
                "{},{}",
                proto::TASKS_DOORBELL_FD,
                proto::COMPLETIONS_DOORBELL_FD
            ),
        ));
        let end =
            SupervisorEnd::new(&seg, tasks_bell, completions_bell).map_err(|e| e.to_string())?;
        ipc = Some(IpcRt {
            seg,
            end,
            server_name,
            reply: None,
            attached: false,
            last_heartbeat: 0,
        });
    }
    let child = sys::spawn(&spec).map_err(|e| e.to_string())?;
    Ok(Proc {
        pid: child.pid,
        gen: plan.gen,
        pidfd: child.pidfd,
        stdout: child.stdout.map(|fd| (fd, LineBuffer::new(MAX_LINE))),
        stderr: child.stderr.map(|fd| (fd, LineBuffer::new(MAX_LINE))),
        ipc,
        probe: None,
        next_probe: Instant::now(),
        ready: false,
    })
}

impl Proc {
    /// The heartbeat word of an attached worker, if it advanced since last call.
    pub fn heartbeat_advanced(&mut self) -> bool {
        let Some(ipc) = &mut self.ipc else {
            return false;
        };
        if !ipc.attached {
            return false;
        }
        // Relaxed: the value is only compared with the previous one; it orders nothing.
        let hb = ipc
            .seg
            .control()
            .heartbeat_ns
            .load(std::sync::atomic::Ordering::Relaxed);
        if hb != ipc.last_heartbeat {
            ipc.last_heartbeat = hb;
            true
        } else {
            false
        }
    }

    /// Sends a control message if the channel is up.
    pub fn send(&self, msg: ToWorker) -> bool {
        match self.ipc.as_ref().and_then(|i| i.reply.as_ref()) {
            Some(tx) => tx.send(msg).is_ok(),
            None => false,
        }
    }

    /// Borrowed pidfd.
    pub fn pidfd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.pidfd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::blame_from_counters;
    use crate::delivery::{Blame, TaskId};

    #[test]
    fn blame_from_a_dead_workers_counters() {
        // Running exactly one task: that one.
        assert_eq!(blame_from_counters(5, 4, 43), Blame::Only(TaskId(42)));
        // Between tasks: nobody.
        assert_eq!(blame_from_counters(5, 5, 0), Blame::Nobody);
        // Several taken, not maintained, or inconsistent: everyone in flight.
        assert_eq!(blame_from_counters(5, 3, 43), Blame::All);
        assert_eq!(blame_from_counters(0, 0, 0), Blame::All);
        assert_eq!(blame_from_counters(0, 7, 0), Blame::All);
        assert_eq!(blame_from_counters(3, 9, 1), Blame::All);
        assert_eq!(blame_from_counters(5, 4, 0), Blame::All);
    }
}
