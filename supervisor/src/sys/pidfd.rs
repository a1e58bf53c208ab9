//! pidfds: a process's exit as a pollable descriptor.

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::unistd::Pid;
use std::io;
use std::os::fd::{BorrowedFd, FromRawFd as _, OwnedFd};
use std::time::{Duration, Instant};

/// Opens a pidfd for `pid` (`pidfd_open(2)`, Linux 5.3+).
///
/// The descriptor is close-on-exec and becomes readable (`POLLIN`) once the process has
/// exited, whether or not it has been reaped yet; register it with mio through
/// `mio::unix::SourceFd`. It refers to that exact process even if the pid is later reused.
/// Works for any process we may see, not only children; only a child can then be reaped.
///
/// # Errors
///
/// `ESRCH` if no such process exists, `ENOSYS` on kernels before 5.3.
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    let flags: libc::c_uint = 0;
    // SAFETY: pidfd_open takes a pid and a flags word and does not touch our memory.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits until `fd` is readable (for a pidfd: the process exited) or `timeout` passes.
///
/// Blocks the calling thread for up to `timeout`: for tests, tools and short shutdown paths;
/// the event loop polls descriptors through mio instead. Retries after `EINTR` with the
/// remaining time.
///
/// Returns `true` if readable (or hung up), `false` on timeout.
///
/// # Errors
///
/// Any `poll(2)` error other than `EINTR`; `EBADF` if `fd` is not an open descriptor.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Round up so a sub-millisecond remainder still waits instead of spinning.
        let ms = u32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(u32::MAX);
        let ms = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, ms) {
            Ok(0) => {
                if Instant::now() >= deadline {
                    return Ok(false);
                }
            }
            Ok(_) => {
                let revents = fds[0].revents().unwrap_or(PollFlags::empty());
                if revents.contains(PollFlags::POLLNVAL) {
                    return Err(io::Error::from_raw_os_error(libc::EBADF));
                }
                return Ok(true);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}
