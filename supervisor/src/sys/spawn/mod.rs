//! Starting a worker process: `fork`/`exec` through [`std::process::Command`] with a `pre_exec`
//! hook that puts the child in a known state.
//!
//! # What the child gets
//!
//! In this order, between `fork` and `exec` (steps 1–3 are done by `std`, the rest by our hook):
//!
//! 1. stdin is `/dev/null`; stdout/stderr per [`StdioMode`];
//! 2. working directory [`SpawnSpec::cwd`];
//! 3. its own process group (`setpgid(0, 0)`), so [`signal_group`](super::signal_group)`(child.pid)`
//!    reaches everything it starts;
//! 4. an empty signal mask and every signal at `SIG_DFL` (ampd blocks and ignores signals; a child
//!    must not inherit that — `SIG_IGN` survives `exec`, and `std` keeps the parent's mask);
//! 5. resource limits ([`SpawnSpec::rlimits`], soft = hard), niceness, CPU affinity — done while
//!    still privileged, so a root supervisor can raise limits for an unprivileged worker;
//! 6. supplementary groups, gid, uid ([`SpawnSpec::user`], [`SpawnSpec::group`]);
//! 7. `PR_SET_PDEATHSIG(SIGKILL)` — after the uid change, which would clear it — then a check that
//!    the parent did not die before the `prctl` (if it did, the child exits);
//! 8. the [`SpawnSpec::pass_fds`] at their target numbers, without `FD_CLOEXEC`;
//! 9. `FD_CLOEXEC` on every other descriptor `>= 3` (`close_range(.., CLOSE_RANGE_CLOEXEC)`), so
//!    nothing the supervisor holds leaks into the worker.
//!
//! Descriptors are marked close-on-exec rather than closed so that `std`'s own exec-error pipe
//! keeps working: a failed `exec` (or a failed step above) comes back as
//! [`SpawnError::Spawn`] with the errno.
//!
//! # Caveats
//!
//! - `PR_SET_PDEATHSIG` fires when the **thread** that called [`spawn()`] exits. Spawn from the
//!   long-lived event-loop thread only.
//! - Everything the child needs is computed before `fork` (user lookups, fd staging, close ranges):
//!   between `fork` and `exec` only async-signal-safe syscalls run and nothing allocates.
//! - If [`SpawnSpec::program`] has no `/`, `execvp` searches `PATH` (the child's `PATH` if
//!   [`SpawnSpec::env`] sets one). Prefer an absolute path from
//!   [`resolve_command`](super::resolve_command).

mod child;
mod prepare;

use crate::spec::Rlimits;
use nix::unistd::Pid;
use std::ffi::OsString;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A user or group, by name or by numeric id. Both forms must exist in the user database.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdRef {
    /// Looked up with `getpwnam`/`getgrnam`.
    Name(String),
    /// Looked up with `getpwuid`/`getgrgid`.
    Id(u32),
}

impl From<&str> for IdRef {
    fn from(name: &str) -> Self {
        Self::Name(name.to_owned())
    }
}

impl From<u32> for IdRef {
    fn from(id: u32) -> Self {
        Self::Id(id)
    }
}

impl std::fmt::Display for IdRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Name(n) => write!(f, "`{n}`"),
            Self::Id(id) => write!(f, "id {id}"),
        }
    }
}

/// Where a child's stdout or stderr goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StdioMode {
    /// Share the supervisor's descriptor.
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// A pipe; the nonblocking read end is returned in [`Child`].
    Capture,
}

/// Everything [`spawn()`] needs to start one process.
///
/// Not `Clone`: it owns the descriptors in [`pass_fds`](Self::pass_fds). Build one per spawn;
/// dropping it after [`spawn()`] closes the supervisor's copies of the passed descriptors.
#[derive(Debug, Default)]
pub struct SpawnSpec {
    /// The executable. A relative path containing `/` is taken relative to the supervisor's
    /// working directory (not [`cwd`](Self::cwd)); a bare name is searched in `PATH`.
    pub program: PathBuf,
    /// Arguments after `argv[0]` (which is `program`).
    pub args: Vec<OsString>,
    /// Variables to set (added to the inherited environment unless [`clear_env`](Self::clear_env)).
    pub env: Vec<(String, String)>,
    /// Start from an empty environment instead of the supervisor's.
    pub clear_env: bool,
    /// Working directory of the child; `None` inherits the supervisor's.
    pub cwd: Option<PathBuf>,
    /// Run as this user. Its primary group and supplementary groups apply unless
    /// [`group`](Self::group) overrides the primary group. Needs root unless it is the current user.
    pub user: Option<IdRef>,
    /// Run with this primary group.
    pub group: Option<IdRef>,
    /// Resource limits (soft = hard); `None` fields leave the inherited limit.
    pub rlimits: Rlimits,
    /// Niceness in `-20..=19`; `None` inherits. Negative values need root.
    pub nice: Option<i32>,
    /// CPUs the child may run on; empty inherits the supervisor's affinity.
    pub cpu_affinity: Vec<usize>,
    /// Descriptors given to the child at fixed numbers (`>= 3`, distinct), e.g. `(socket, 3)`.
    pub pass_fds: Vec<(OwnedFd, RawFd)>,
    /// Where stdout goes.
    pub stdout: StdioMode,
    /// Where stderr goes.
    pub stderr: StdioMode,
}

impl SpawnSpec {
    /// A spec that runs `program` with everything else at its default (inherit).
    #[must_use]
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            ..Self::default()
        }
    }

    /// A spec that runs `/bin/sh -c command`, stdout and stderr to `/dev/null` (an exec
    /// readiness probe, a hook). Adjust fields before spawning to run it as the worker would run.
    #[must_use]
    pub fn shell(command: &str) -> Self {
        Self {
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), command.into()],
            stdout: StdioMode::Null,
            stderr: StdioMode::Null,
            ..Self::default()
        }
    }

    /// Appends arguments (builder style).
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
}

/// A started process.
///
/// Plain data: dropping it closes the descriptors but neither kills nor reaps the process.
#[derive(Debug)]
pub struct Child {
    /// Process id; also the id of its process group.
    pub pid: Pid,
    /// pidfd for the process: readable once it has exited (register it with mio).
    pub pidfd: OwnedFd,
    /// Read end of the stdout pipe (`O_NONBLOCK`, `FD_CLOEXEC`) when stdout was
    /// [`StdioMode::Capture`].
    pub stdout: Option<OwnedFd>,
    /// Read end of the stderr pipe, as for `stdout`.
    pub stderr: Option<OwnedFd>,
}

/// Why [`spawn()`] failed. Nothing was started unless the variant says otherwise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// [`SpawnSpec::program`] is empty.
    #[error("no program to run: the command is empty")]
    EmptyProgram,
    /// The program path or an argument contains a NUL byte.
    #[error("argument {index} contains a NUL byte ({arg:?}); remove it")]
    NulInArgument {
        /// 0 for the program, 1.. for arguments.
        index: usize,
        /// The offending argument, lossily converted.
        arg: String,
    },
    /// An environment entry cannot be passed to `execve`.
    #[error("environment variable {name:?} is invalid: {reason}")]
    InvalidEnv {
        /// The variable name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The user does not exist.
    #[error("user {user} does not exist; create it or fix the `user` setting")]
    UnknownUser {
        /// The user as configured.
        user: IdRef,
    },
    /// The group does not exist.
    #[error("group {group} does not exist; create it or fix the `group` setting")]
    UnknownGroup {
        /// The group as configured.
        group: IdRef,
    },
    /// Looking a user or group up failed (NSS error, or the name has a NUL byte).
    #[error("could not look up {what}: {source}")]
    IdLookup {
        /// What was being looked up, e.g. "user `svc`".
        what: String,
        /// The lookup error.
        source: nix::Error,
    },
    /// A [`SpawnSpec::pass_fds`] target number is unusable.
    #[error("cannot pass a descriptor as fd {target}: {reason}")]
    InvalidFdTarget {
        /// The target number.
        target: RawFd,
        /// Why it is refused.
        reason: &'static str,
    },
    /// [`SpawnSpec::nice`] is out of range.
    #[error("nice value {nice} is outside -20..=19")]
    InvalidNice {
        /// The configured value.
        nice: i32,
    },
    /// A CPU in [`SpawnSpec::cpu_affinity`] cannot be represented in a CPU set.
    #[error("cpu {cpu} in cpu_affinity is out of range (this system supports cpus 0..{limit})")]
    InvalidCpu {
        /// The configured CPU.
        cpu: usize,
        /// One past the largest CPU number a set can hold.
        limit: usize,
    },
    /// A supervisor-side preparation syscall failed (duplicating a passed fd, reading a limit).
    #[error("could not prepare the spawn ({what}): {source}")]
    Prepare {
        /// The step that failed.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// `fork`, a step of the child setup, or `exec` failed (the errno of the failing step).
    #[error("could not start {program:?}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The OS error reported by the child (e.g. `ENOENT` from `exec`, `EPERM` from `setuid`).
        source: io::Error,
    },
    /// The process started but its pidfd could not be opened; it was killed and reaped again.
    #[error("started pid {pid} but could not open its pidfd: {source}")]
    Pidfd {
        /// The pid that was started (and killed).
        pid: i32,
        /// The OS error.
        source: io::Error,
    },
}

/// Starts a process as described by `spec`; see the [module docs](self) for what the child gets.
///
/// Returns once the child has called `exec` (or failed to). Call from the long-lived event-loop
/// thread: the child is killed when the calling thread exits.
///
/// # Errors
///
/// A [`SpawnError`] naming the invalid setting, or the OS error of the step that failed. On error
/// no process is left running.
///
/// # Examples
///
/// ```
/// use amp_supervisor::sys::{spawn, wait_timeout, SpawnSpec};
/// use std::time::Duration;
///
/// let child = spawn(&SpawnSpec::new("/bin/sh").args(["-c", "exit 3"]))?;
/// let reason = wait_timeout(&child, Duration::from_secs(10))?.expect("exits");
/// assert_eq!(reason, amp_supervisor::spec::ExitReason::Code(3));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn spawn(spec: &SpawnSpec) -> Result<Child, SpawnError> {
    let prepared = prepare::prepare(spec)?;
    let mut cmd = Command::new(&prepared.program);
    cmd.args(&spec.args);
    if spec.clear_env {
        cmd.env_clear();
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    cmd.stdin(Stdio::null());
    cmd.stdout(stdio(spec.stdout));
    cmd.stderr(stdio(spec.stderr));
    cmd.process_group(0);
    let setup = prepared.child;
    // SAFETY: the hook runs in the forked child before `exec`; `ChildSetup::run` only makes
    // async-signal-safe syscalls on data computed before the fork and does not allocate, lock
    // or touch thread-local state (see `child.rs`).
    unsafe {
        cmd.pre_exec(move || setup.run());
    }
    let mut std_child = cmd.spawn().map_err(|source| SpawnError::Spawn {
        program: spec.program.clone(),
        source,
    })?;
    // The staged copies and placeholders of the passed fds are no longer needed.
    drop(prepared.staged);
    let pid = Pid::from_raw(i32::try_from(std_child.id()).expect("pid fits in i32"));
    let stdout = std_child.stdout.take().map(OwnedFd::from);
    let stderr = std_child.stderr.take().map(OwnedFd::from);
    let pidfd = match super::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(source) => {
            // Do not leave an unobservable process behind. It is our child and not yet reaped,
            // so the pid cannot have been reused.
            let _ = std_child.kill();
            let _ = std_child.wait();
            return Err(SpawnError::Pidfd {
                pid: pid.as_raw(),
                source,
            });
        }
    };
    for fd in stdout.iter().chain(stderr.iter()) {
        set_nonblocking(fd).map_err(|source| {
            let _ = std_child.kill();
            let _ = std_child.wait();
            SpawnError::Prepare {
                what: "setting O_NONBLOCK on an output pipe",
                source,
            }
        })?;
    }
    Ok(Child {
        pid,
        pidfd,
        stdout,
        stderr,
    })
}

fn stdio(mode: StdioMode) -> Stdio {
    match mode {
        StdioMode::Inherit => Stdio::inherit(),
        StdioMode::Null => Stdio::null(),
        StdioMode::Capture => Stdio::piped(),
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}
