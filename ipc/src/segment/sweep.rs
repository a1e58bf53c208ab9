//! Removing segments whose creator died without unlinking them.

use std::fs;
use std::io;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::{name, SegmentError, SHM_DIR};

/// Unlinks every segment in `/dev/shm` named `{prefix}-{pid}-{16 hex}` whose creator `pid` no
/// longer exists, and returns the removed names (in [`Segment::name`](super::Segment::name) form,
/// with the leading `/`), sorted.
///
/// A creator counts as dead only when `kill(pid, 0)` fails with `ESRCH`. A live creator's segment,
/// one whose creator belongs to another user (`EPERM`), a zombie creator's, and any entry that
/// does not have exactly the shape above are left alone. Run it once at startup, before creating
/// segments. It assumes creators live in this process's PID namespace; if a dead creator's PID
/// has been reused, its segment survives until a later sweep (never the other way round).
///
/// Processes that mapped a swept segment keep their mapping; only the name goes.
///
/// # Errors
/// [`SegmentError::BadPrefix`] for an unusable prefix, [`SegmentError::Sweep`] when `/dev/shm`
/// cannot be listed, [`SegmentError::Unlink`] when a stale entry cannot be removed (the sweep stops
/// there; entries another process removed first are skipped silently).
pub fn sweep(prefix: &str) -> Result<Vec<String>, SegmentError> {
    sweep_in(Path::new(SHM_DIR), prefix)
}

/// [`sweep`] over `dir` instead of `/dev/shm`: for tests, and for systems where POSIX shared
/// memory lives elsewhere.
///
/// # Errors
/// As [`sweep`].
pub fn sweep_in(dir: &Path, prefix: &str) -> Result<Vec<String>, SegmentError> {
    name::check_prefix(prefix)?;
    let sweep_err = |source| SegmentError::Sweep {
        dir: dir.to_path_buf(),
        source,
    };
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir).map_err(sweep_err)? {
        let entry = entry.map_err(sweep_err)?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(pid) = name::creator_pid_of(prefix, file_name) else {
            continue;
        };
        if !creator_is_dead(pid) {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => {
                tracing::info!(
                    segment = file_name,
                    creator_pid = pid,
                    "removed stale segment of a dead creator"
                );
                removed.push(format!("/{file_name}"));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SegmentError::Unlink {
                    name: format!("/{file_name}"),
                    source,
                })
            }
        }
    }
    removed.sort();
    Ok(removed)
}

/// `true` only when no process `pid` exists (`kill(pid, 0)` fails with `ESRCH`).
fn creator_is_dead(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        // 0 and negative values address process groups, never one creator.
        return false;
    }
    kill(Pid::from_raw(raw), None) == Err(Errno::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_pid_is_alive_and_group_pids_are_never_dead() {
        assert!(!creator_is_dead(std::process::id()));
        assert!(!creator_is_dead(0));
        assert!(!creator_is_dead(u32::MAX));
    }
}
