//! Sending signals to workers and their process groups.

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::io;

fn sent(result: nix::Result<()>) -> io::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Sends `signal` to every process in group `pgid` (`killpg`). A spawned worker leads its own
/// group, so `signal_group(child.pid, ..)` also reaches the processes it started.
///
/// `Ok(false)`: the group no longer exists (everyone already exited) — not an error when
/// stopping.
///
/// # Errors
///
/// `EPERM` if we may not signal a member; `EINVAL` for a bad group id.
pub fn signal_group(pgid: Pid, signal: Signal) -> io::Result<bool> {
    sent(nix::sys::signal::killpg(pgid, signal))
}

/// Sends `signal` to one process (`kill`). `Ok(false)`: it no longer exists.
///
/// Only safe against pid reuse for our own unreaped children (a zombie keeps its pid).
///
/// # Errors
///
/// `EPERM` if we may not signal it.
pub fn signal_pid(pid: Pid, signal: Signal) -> io::Result<bool> {
    sent(nix::sys::signal::kill(pid, signal))
}
