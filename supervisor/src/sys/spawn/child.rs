//! The part of a spawn that runs in the forked child, between `fork` and `exec`.
//!
//! Rules for this file: only async-signal-safe calls (the signal-safety(7) list, plus `prctl`,
//! `sched_setaffinity`, `setpriority`, `setrlimit`, `rt_sigaction`, `close_range`: plain syscalls), no
//! allocation, no locks, no panics on the success path. All data was computed before the fork by
//! `prepare.rs`; errors are raw errnos (`io::Error::last_os_error` does not allocate).

use std::io;
use std::os::fd::RawFd;

/// A resource limit to set (soft = hard).
#[derive(Debug, Clone, Copy)]
pub(super) struct Rlimit {
    /// `RLIMIT_*`.
    pub(super) resource: libc::__rlimit_resource_t,
    /// Soft and hard value.
    pub(super) value: u64,
}

/// Identity to take.
#[derive(Debug, Clone)]
pub(super) struct Credentials {
    /// `setuid` to this, if set.
    pub(super) uid: Option<libc::uid_t>,
    /// `setgid` to this.
    pub(super) gid: libc::gid_t,
    /// `setgroups` to this list, if set (only when the supervisor is privileged).
    pub(super) groups: Option<Vec<libc::gid_t>>,
}

/// Move a staged descriptor to its target number.
#[derive(Debug, Clone, Copy)]
pub(super) struct FdMove {
    /// The staged copy (close-on-exec, above every target).
    pub(super) from: RawFd,
    /// The number the child sees.
    pub(super) to: RawFd,
}

/// Everything the child hook does, precomputed.
pub(super) struct ChildSetup {
    /// `getpid()` of the supervisor, compared with the child's `getppid()`.
    pub(super) parent_pid: libc::pid_t,
    /// Highest signal number to reset.
    pub(super) max_signal: libc::c_int,
    /// The kernel's `sizeof(sigset_t)` (`_NSIG / 8`), as `rt_sigaction` requires.
    pub(super) kernel_sigset_size: usize,
    /// An empty signal set.
    pub(super) empty_mask: libc::sigset_t,
    /// Limits to set.
    pub(super) rlimits: Vec<Rlimit>,
    /// Niceness to set.
    pub(super) nice: Option<i32>,
    /// CPU affinity to set.
    pub(super) affinity: Option<nix::sched::CpuSet>,
    /// Identity to take.
    pub(super) credentials: Option<Credentials>,
    /// Descriptors to move into place.
    pub(super) fd_moves: Vec<FdMove>,
    /// Inclusive ranges to mark close-on-exec.
    pub(super) cloexec_ranges: Vec<(libc::c_uint, libc::c_uint)>,
    /// Upper bound for the close-on-exec loop when `close_range` is unavailable.
    pub(super) fallback_fd_limit: libc::c_uint,
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl ChildSetup {
    /// Runs in the child. Each step's errno is reported to the parent by `std`, which then fails
    /// the spawn.
    pub(super) fn run(&self) -> io::Result<()> {
        self.reset_signals()?;
        self.limits()?;
        self.identity()?;
        self.die_with_parent()?;
        self.move_fds()?;
        self.cloexec_the_rest()
    }

    fn reset_signals(&self) -> io::Result<()> {
        // The raw syscall, not glibc's `sigaction`: glibc refuses the signals it reserves for
        // itself (32, 33), yet those can arrive ignored from our own parent, and SIG_IGN survives
        // `exec`. An all-zero kernel `struct sigaction` is SIG_DFL, no flags, empty mask, whatever
        // the architecture's field order; the buffer is larger than any architecture's struct.
        let default_action = [0u64; 8];
        for sig in 1..=self.max_signal {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            // SAFETY: rt_sigaction reads a kernel sigaction from `default_action` (valid, zeroed,
            // large enough) and is not asked for the old action. Errors are ignored: every
            // signal in 1..=SIGRTMAX except KILL/STOP is valid, so none are expected.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    default_action.as_ptr(),
                    std::ptr::null_mut::<libc::c_void>(),
                    self.kernel_sigset_size,
                )
            };
        }
        // SAFETY: `empty_mask` is a valid, initialised sigset_t; the old mask is not requested.
        check(unsafe {
            libc::sigprocmask(libc::SIG_SETMASK, &self.empty_mask, std::ptr::null_mut())
        })
    }

    fn limits(&self) -> io::Result<()> {
        for r in &self.rlimits {
            let lim = libc::rlimit {
                rlim_cur: r.value,
                rlim_max: r.value,
            };
            // SAFETY: `lim` is a valid rlimit on the stack; setrlimit only reads it.
            check(unsafe { libc::setrlimit(r.resource, &lim) })?;
        }
        if let Some(nice) = self.nice {
            // SAFETY: plain integer arguments; `who = 0` is the calling (only) thread.
            check(unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) })?;
        }
        if let Some(set) = &self.affinity {
            // A thin wrapper over the syscall: no allocation.
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), set)?;
        }
        Ok(())
    }

    fn identity(&self) -> io::Result<()> {
        let Some(c) = &self.credentials else {
            return Ok(());
        };
        if let Some(groups) = &c.groups {
            // SAFETY: `groups` is a live Vec of gid_t; setgroups reads `len` elements from it.
            check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) })?;
        }
        // SAFETY: plain integer argument.
        check(unsafe { libc::setgid(c.gid) })?;
        if let Some(uid) = c.uid {
            // SAFETY: plain integer argument.
            check(unsafe { libc::setuid(uid) })?;
        }
        Ok(())
    }

    /// After the identity change: changing credentials clears the parent-death signal.
    fn die_with_parent(&self) -> io::Result<()> {
        let sigkill = libc::c_ulong::try_from(libc::SIGKILL).unwrap_or(9);
        // SAFETY: PR_SET_PDEATHSIG takes an integer signal number; the unused arguments are 0.
        check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sigkill, 0, 0, 0) })?;
        // If the supervisor died before the prctl, the signal will never come: give up instead
        // of running as an orphan.
        // SAFETY: getppid has no arguments and cannot fail.
        if unsafe { libc::getppid() } != self.parent_pid {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    }

    fn move_fds(&self) -> io::Result<()> {
        for m in &self.fd_moves {
            loop {
                // SAFETY: `from` is a staged descriptor kept open by the parent until after the
                // fork; dup2 replaces `to`, which the child is entitled to. The copy at `to` has
                // FD_CLOEXEC cleared (dup2 never copies it).
                let r = unsafe { libc::dup2(m.from, m.to) };
                if r != -1 {
                    break;
                }
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EINTR) {
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    fn cloexec_the_rest(&self) -> io::Result<()> {
        for &(first, last) in &self.cloexec_ranges {
            // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on descriptors in
            // the range; it takes plain integers.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_close_range,
                    first,
                    last,
                    libc::CLOSE_RANGE_CLOEXEC,
                )
            };
            if r == 0 {
                continue;
            }
            let err = io::Error::last_os_error();
            if !matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL)) {
                return Err(err);
            }
            // Kernel before 5.11: mark each descriptor up to the soft limit.
            for fd in first..=last.min(self.fallback_fd_limit) {
                let Ok(fd) = libc::c_int::try_from(fd) else {
                    break;
                };
                // SAFETY: F_SETFD with an integer flag; EBADF for closed numbers is ignored.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
        Ok(())
    }
}
