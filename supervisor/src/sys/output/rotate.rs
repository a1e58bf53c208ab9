//! A log file that rotates by size.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// An append-only log file rotated by size: when a write would take it past `max_size`, `path`
/// becomes `path.1`, `path.1` becomes `path.2`, ..., keeping `keep` old files (the oldest is
/// deleted), and a fresh `path` is started.
///
/// Lines are written unbuffered (one `write` per line) so a supervisor crash loses nothing
/// already handed over. A single line larger than `max_size` is written whole into a fresh file.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("amp-rotate-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// use amp_supervisor::sys::RotatingFile;
/// let mut log = RotatingFile::open(dir.join("w.log"), 8, 2)?;
/// log.write_line(b"first")?;  // 6 bytes
/// log.write_line(b"second")?; // would make 13 > 8: rotate first
/// assert_eq!(std::fs::read_to_string(dir.join("w.log.1"))?, "first\n");
/// assert_eq!(std::fs::read_to_string(dir.join("w.log"))?, "second\n");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_size: u64,
    keep: usize,
    file: File,
    size: u64,
}

impl RotatingFile {
    /// Opens (appending to) or creates `path`. `max_size` is in bytes (0 means rotate before
    /// every line); `keep` is the number of rotated files kept (0: none, the file is just
    /// restarted).
    ///
    /// # Errors
    ///
    /// Opening the file failed (missing directory, permissions).
    pub fn open(path: impl Into<PathBuf>, max_size: u64, keep: usize) -> io::Result<Self> {
        let path = path.into();
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path,
            max_size,
            keep,
            file,
            size,
        })
    }

    /// The live file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the live file.
    #[must_use]
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// Appends `line` and a `\n`, rotating first if the file would exceed `max_size`.
    ///
    /// # Errors
    ///
    /// Renaming, reopening or writing failed. The caller should report it and carry on:
    /// a full disk must not stop supervision.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let len = u64::try_from(line.len())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        if self.size > 0 && self.size.saturating_add(len) > self.max_size {
            self.rotate()?;
        }
        let mut record = Vec::with_capacity(line.len() + 1);
        record.extend_from_slice(line);
        record.push(b'\n');
        self.file.write_all(&record)?;
        self.size += len;
        Ok(())
    }

    /// Rotates now: `path.{keep-1}` → `path.{keep}`, ..., `path` → `path.1`, then starts a fresh
    /// `path`.
    ///
    /// # Errors
    ///
    /// A rename (other than of a missing file) or reopening failed.
    pub fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            remove_if_present(&self.path)?;
        } else {
            remove_if_present(&self.numbered(self.keep))?;
            for i in (1..self.keep).rev() {
                rename_if_present(&self.numbered(i), &self.numbered(i + 1))?;
            }
            rename_if_present(&self.path, &self.numbered(1))?;
        }
        self.file = open_append(&self.path)?;
        self.size = self.file.metadata()?.len();
        Ok(())
    }

    fn numbered(&self, i: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{i}"));
        PathBuf::from(name)
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_dir::TestDir;
    use super::*;

    fn read(p: &Path) -> Option<String> {
        std::fs::read_to_string(p).ok()
    }

    #[test]
    fn rotates_and_keeps_n() {
        let dir = TestDir::new("rotate");
        let path = dir.path().join("w.log");
        let mut f = RotatingFile::open(&path, 10, 2).unwrap();
        for l in ["l1-aaaa", "l2-bbbb", "l3-cccc", "l4-dddd"] {
            f.write_line(l.as_bytes()).unwrap(); // 8 bytes each: one per file
        }
        assert_eq!(read(&path).as_deref(), Some("l4-dddd\n"));
        assert_eq!(
            read(&dir.path().join("w.log.1")).as_deref(),
            Some("l3-cccc\n")
        );
        assert_eq!(
            read(&dir.path().join("w.log.2")).as_deref(),
            Some("l2-bbbb\n")
        );
        assert_eq!(
            read(&dir.path().join("w.log.3")),
            None,
            "only `keep` old files"
        );
        assert_eq!(f.size(), 8);
    }

    #[test]
    fn fills_up_to_max_before_rotating() {
        let dir = TestDir::new("rotate-fill");
        let path = dir.path().join("w.log");
        let mut f = RotatingFile::open(&path, 6, 1).unwrap();
        f.write_line(b"ab").unwrap();
        f.write_line(b"cd").unwrap(); // exactly 6
        assert_eq!(read(&path).as_deref(), Some("ab\ncd\n"));
        f.write_line(b"e").unwrap();
        assert_eq!(read(&path).as_deref(), Some("e\n"));
        assert_eq!(
            read(&dir.path().join("w.log.1")).as_deref(),
            Some("ab\ncd\n")
        );
    }

    #[test]
    fn oversized_line_goes_whole_into_a_fresh_file() {
        let dir = TestDir::new("rotate-big");
        let path = dir.path().join("w.log");
        let mut f = RotatingFile::open(&path, 4, 1).unwrap();
        f.write_line(b"0123456789").unwrap();
        assert_eq!(read(&path).as_deref(), Some("0123456789\n"));
        f.write_line(b"x").unwrap();
        assert_eq!(read(&path).as_deref(), Some("x\n"));
        assert_eq!(
            read(&dir.path().join("w.log.1")).as_deref(),
            Some("0123456789\n")
        );
    }

    #[test]
    fn reopening_appends_and_counts_existing_size() {
        let dir = TestDir::new("rotate-reopen");
        let path = dir.path().join("w.log");
        std::fs::write(&path, "old\n").unwrap();
        let mut f = RotatingFile::open(&path, 100, 1).unwrap();
        assert_eq!(f.size(), 4);
        f.write_line(b"new").unwrap();
        assert_eq!(read(&path).as_deref(), Some("old\nnew\n"));
    }

    #[test]
    fn keep_zero_restarts_the_file() {
        let dir = TestDir::new("rotate-zero");
        let path = dir.path().join("w.log");
        let mut f = RotatingFile::open(&path, 3, 0).unwrap();
        f.write_line(b"ab").unwrap();
        f.write_line(b"cd").unwrap();
        assert_eq!(read(&path).as_deref(), Some("cd\n"));
        assert_eq!(read(&dir.path().join("w.log.1")), None);
    }

    #[test]
    fn open_in_missing_directory_fails() {
        let dir = TestDir::new("rotate-missing");
        let err = RotatingFile::open(dir.path().join("nope/w.log"), 10, 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
