//! Shared by the cross-process tests: a forked peer process attached to a fresh segment.

use std::sync::Arc;

use amp_ipc::link::{PeerEnd, SupervisorEnd};
use amp_ipc::segment::{Segment, SegmentConfig};
use amp_ipc::signal::Doorbell;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// Exit code of a child whose closure panicked.
pub const CHILD_PANICKED: i32 = 1;

/// The parent's handle on the forked child. Dropped before [`wait`](Self::wait) (a failed
/// assertion), it kills and reaps the child and unlinks the segment's name.
pub struct Peer {
    child: Option<Pid>,
    seg: Arc<Segment>,
}

impl Peer {
    /// Waits for the child to exit, unlinks the segment's name (which must still be there) and
    /// returns how the child exited.
    pub fn wait(&mut self) -> WaitStatus {
        let child = self.child.take().expect("waited once");
        let status = waitpid(child, None).expect("waitpid");
        self.seg.unlink().expect("unlink the segment");
        status
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            let _ = self.seg.unlink();
        }
    }
}

/// Creates a segment named after `prefix` with doorbells both ways, and forks. The child opens
/// the segment by name, runs `child` on its end and exits with the code it returns
/// ([`CHILD_PANICKED`] if it panicked); the parent gets its own end and the [`Peer`].
pub fn fork_peer(
    prefix: &str,
    cfg: &SegmentConfig,
    child: impl FnOnce(&mut PeerEnd) -> i32,
) -> (Peer, SupervisorEnd) {
    let seg = Arc::new(Segment::create(prefix, cfg, 1).expect("create segment"));
    let tasks_bell = Doorbell::new().unwrap();
    let completions_bell = Doorbell::new().unwrap();
    let child_tasks = tasks_bell.try_clone_fd().unwrap();
    let child_completions = completions_bell.try_clone_fd().unwrap();

    // SAFETY: the child only uses memory and fds set up before the fork and leaves with `_exit`,
    // never returning into the test harness (other harness threads do not exist in the child).
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let opened = Arc::new(Segment::open(seg.name()).expect("child open"));
                let mut end = PeerEnd::new(
                    &opened,
                    Doorbell::from_owned(child_tasks).unwrap(),
                    Doorbell::from_owned(child_completions).unwrap(),
                )
                .unwrap();
                child(&mut end)
            }))
            .unwrap_or(CHILD_PANICKED);
            // SAFETY: `_exit` is always safe to call; it skips the test harness's cleanup.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            let end = SupervisorEnd::new(&seg, tasks_bell, completions_bell).unwrap();
            (
                Peer {
                    child: Some(child),
                    seg,
                },
                end,
            )
        }
    }
}
