//! Worker output capture: split pipe bytes into bounded lines ([`LineBuffer`], [`drain_fd`]),
//! keep a bounded in-memory tail ([`LogTail`]) and optionally a size-rotated file
//! ([`RotatingFile`]).
//!
//! The event loop, on a readable stdout/stderr pipe of worker `w`:
//!
//! ```no_run
//! # use amp_supervisor::sys::{drain_fd, DrainStatus, LineBuffer, LogTail, RotatingFile};
//! # fn on_readable(fd: std::os::fd::BorrowedFd<'_>, lines: &mut LineBuffer, tail: &mut LogTail,
//! #     file: &mut RotatingFile) -> std::io::Result<()> {
//! match drain_fd(fd, lines, 256 * 1024, |line| {
//!     tail.push(line.bytes);
//!     let _ = file.write_line(line.bytes); // a full disk must not stop supervision
//! })? {
//!     DrainStatus::WouldBlock => {}           // wait for the next readiness event
//!     DrainStatus::Budget => { /* more is buffered: drain again on the next loop turn */ }
//!     DrainStatus::Eof => { /* deregister and close the pipe */ }
//! }
//! # Ok(()) }
//! ```

mod line;
mod rotate;
mod tail;

pub use line::{drain_fd, DrainStatus, Line, LineBuffer, LineEnd};
pub use rotate::RotatingFile;
pub use tail::LogTail;

#[cfg(test)]
pub(crate) mod test_dir {
    //! A throwaway directory under the system temp dir, removed on drop.
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    pub(crate) struct TestDir(PathBuf);

    impl TestDir {
        pub(crate) fn new(tag: &str) -> Self {
            // Relaxed: only uniqueness of the returned values matters, not ordering.
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("amp-sys-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("create test dir");
            Self(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
