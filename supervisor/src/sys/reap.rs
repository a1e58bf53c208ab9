//! Collecting exit statuses: `waitpid`, the child-subreaper flag.

use super::spawn::Child;
use crate::spec::ExitReason;
use nix::unistd::Pid;
use std::io;
use std::os::fd::AsFd as _;
use std::time::Duration;

/// Makes this process a child subreaper (`PR_SET_CHILD_SUBREAPER`): descendants orphaned by a
/// worker (a daemonising worker, a crashed worker's children) are reparented to us instead of
/// init, so [`reap_all`] collects them and nothing escapes supervision.
///
/// # Errors
///
/// The `prctl` error (`EINVAL` on kernels before 3.4).
pub fn set_child_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)?;
    Ok(())
}

/// Decodes a raw `waitpid` status. `None` for stop/continue reports (not requested by this
/// module, so not expected).
///
/// ```
/// use amp_supervisor::{spec::ExitReason, sys::decode_wait_status};
/// assert_eq!(decode_wait_status(3 << 8), Some(ExitReason::Code(3)));
/// assert_eq!(decode_wait_status(9), Some(ExitReason::Signal { signal: 9, core_dumped: false }));
/// assert_eq!(decode_wait_status(0x80 | 6), Some(ExitReason::Signal { signal: 6, core_dumped: true }));
/// ```
#[must_use]
pub const fn decode_wait_status(status: i32) -> Option<ExitReason> {
    if libc::WIFEXITED(status) {
        Some(ExitReason::Code(libc::WEXITSTATUS(status)))
    } else if libc::WIFSIGNALED(status) {
        Some(ExitReason::Signal {
            signal: libc::WTERMSIG(status),
            core_dumped: libc::WCOREDUMP(status),
        })
    } else {
        None
    }
}

/// One `waitpid(pid, WNOHANG)`, retrying `EINTR`. `pid` may be -1 (any child).
/// Decodes the raw status itself so real-time signals (which `nix::sys::wait` rejects) are kept.
fn waitpid_nohang(pid: libc::pid_t) -> io::Result<Option<(Pid, ExitReason)>> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid, writable c_int on the stack; WNOHANG never blocks.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r > 0 {
            // Stop/continue reports are not requested (no WUNTRACED/WCONTINUED); skip them if seen.
            if let Some(reason) = decode_wait_status(status) {
                return Ok(Some((Pid::from_raw(r), reason)));
            }
            continue;
        }
        if r == 0 {
            return Ok(None);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Reaps `pid` if it has exited, without blocking.
///
/// `Ok(None)`: still running. Call it when the child's pidfd becomes readable.
///
/// # Errors
///
/// `ECHILD` if `pid` is not our child or was already reaped (for instance by [`reap_all`]).
pub fn reap(pid: Pid) -> io::Result<Option<ExitReason>> {
    Ok(waitpid_nohang(pid.as_raw())?.map(|(_, reason)| reason))
}

/// Reaps every child that has exited (`waitpid(-1, WNOHANG)` until none is left), including
/// descendants reparented to us as [subreaper](set_child_subreaper). Never blocks.
///
/// Call it after `SIGCHLD` (or periodically): a reparented orphan has no pidfd of ours, so this is
/// the only way it gets reaped. Pids not known to the caller are orphans; log and drop them.
/// `ECHILD` (no children at all) simply ends the loop.
#[must_use]
pub fn reap_all() -> Vec<(Pid, ExitReason)> {
    let mut reaped = Vec::new();
    while let Ok(Some(entry)) = waitpid_nohang(-1) {
        reaped.push(entry);
    }
    reaped
}

/// Waits up to `timeout` for `child` to exit (polling its pidfd), then reaps it.
///
/// `Ok(None)` on timeout: the child is still running and unreaped. Blocks the calling thread;
/// meant for tests, tools, short exec probes run off the event loop, and the final shutdown path.
///
/// # Errors
///
/// A `poll` error, or `ECHILD` if someone else reaped the child first.
pub fn wait_timeout(child: &Child, timeout: Duration) -> io::Result<Option<ExitReason>> {
    if !super::wait_readable(child.pidfd.as_fd(), timeout)? {
        return Ok(None);
    }
    // Readable means exited: the zombie is there, so this WNOHANG call finds it.
    reap(child.pid)
}
