//! Finding a worker's executable from its configured command.

use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// Why [`resolve_command`] found no executable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The command is empty.
    #[error("the command is empty; set it to a program name or path")]
    Empty,
    /// A path (command containing `/`) does not exist.
    #[error("{path:?} does not exist; check the command's path")]
    NotFound {
        /// The absolute path tried.
        path: PathBuf,
    },
    /// A path exists but is not an executable file.
    #[error("{path:?} is not an executable file (check it is a file with an execute bit)")]
    NotExecutable {
        /// The absolute path tried.
        path: PathBuf,
    },
    /// A bare name was found in none of the searched directories.
    #[error("command `{command}` not found in the supervisor's directory or PATH (searched {searched:?}); give a path or install it")]
    NotInSearchPath {
        /// The command.
        command: String,
        /// The directories searched, in order.
        searched: Vec<PathBuf>,
    },
    /// The current directory could not be read (needed for a relative path).
    #[error("cannot read the current directory to resolve a relative command: {0}")]
    CurrentDir(#[source] io::Error),
}

/// Resolves a worker command to an absolute executable path.
///
/// - containing `/`: used as is, relative to the supervisor's working directory;
/// - otherwise searched, in order, in the directory of the running executable
///   ([`std::env::current_exe`]), its parent if that directory is named `deps` (cargo puts test
///   binaries in `target/<profile>/deps`, binaries in `target/<profile>`), then `PATH`.
///
/// # Errors
///
/// [`ResolveError`] naming what was tried.
pub fn resolve_command(command: &str) -> Result<PathBuf, ResolveError> {
    let cwd = std::env::current_dir().map_err(ResolveError::CurrentDir)?;
    let exe = std::env::current_exe().ok();
    let path_var = std::env::var_os("PATH");
    resolve_command_in(command, &cwd, exe.as_deref(), path_var.as_deref())
}

/// [`resolve_command`] with its inputs given explicitly (working directory, the running
/// executable's path, the `PATH` value), for tests and callers with their own environment.
///
/// # Errors
///
/// As [`resolve_command`].
pub fn resolve_command_in(
    command: &str,
    cwd: &Path,
    current_exe: Option<&Path>,
    path_var: Option<&OsStr>,
) -> Result<PathBuf, ResolveError> {
    if command.is_empty() {
        return Err(ResolveError::Empty);
    }
    if command.contains('/') {
        let path = cwd.join(command);
        return match std::fs::metadata(&path) {
            Err(_) => Err(ResolveError::NotFound { path }),
            Ok(m) if is_executable(&m) => Ok(path),
            Ok(_) => Err(ResolveError::NotExecutable { path }),
        };
    }
    let mut searched = Vec::new();
    if let Some(exe_dir) = current_exe.and_then(Path::parent) {
        searched.push(exe_dir.to_path_buf());
        if exe_dir.file_name() == Some(OsStr::new("deps")) {
            if let Some(up) = exe_dir.parent() {
                searched.push(up.to_path_buf());
            }
        }
    }
    if let Some(path_var) = path_var {
        // Empty PATH entries (meaning "current directory" to a shell) are skipped on purpose.
        searched.extend(
            std::env::split_paths(path_var)
                .filter(|d| !d.as_os_str().is_empty())
                .map(|d| cwd.join(d)),
        );
    }
    for dir in &searched {
        let candidate = dir.join(command);
        if std::fs::metadata(&candidate).is_ok_and(|m| is_executable(&m)) {
            return Ok(candidate);
        }
    }
    Err(ResolveError::NotInSearchPath {
        command: command.to_owned(),
        searched,
    })
}

fn is_executable(m: &std::fs::Metadata) -> bool {
    m.is_file() && m.permissions().mode() & 0o111 != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::output::test_dir::TestDir;

    fn touch(path: &Path, mode: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn search_order_exe_dir_then_parent_of_deps_then_path() {
        let dir = TestDir::new("resolve");
        let root = dir.path();
        let exe = root.join("target/debug/deps/test-bin");
        touch(&exe, 0o755);
        touch(&root.join("target/debug/worker"), 0o755);
        touch(&root.join("bin/other"), 0o755);
        touch(&root.join("bin/worker"), 0o755);
        touch(&root.join("target/debug/deps/near"), 0o755);
        touch(&root.join("bin/near"), 0o755);
        let path_var = std::env::join_paths([root.join("empty"), root.join("bin")]).unwrap();
        let r = |c: &str| resolve_command_in(c, root, Some(&exe), Some(&path_var));
        assert_eq!(r("near").unwrap(), root.join("target/debug/deps/near"));
        assert_eq!(r("worker").unwrap(), root.join("target/debug/worker"));
        assert_eq!(r("other").unwrap(), root.join("bin/other"));
        match r("missing").unwrap_err() {
            ResolveError::NotInSearchPath { searched, .. } => {
                assert_eq!(
                    searched,
                    [
                        root.join("target/debug/deps"),
                        root.join("target/debug"),
                        root.join("empty"),
                        root.join("bin")
                    ]
                );
            }
            e => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn parent_is_not_searched_outside_deps() {
        let dir = TestDir::new("resolve-nodeps");
        let root = dir.path();
        let exe = root.join("target/debug/ampd");
        touch(&root.join("target/worker"), 0o755);
        let err = resolve_command_in("worker", root, Some(&exe), None).unwrap_err();
        assert!(matches!(err, ResolveError::NotInSearchPath { .. }), "{err}");
    }

    #[test]
    fn paths_are_taken_as_is_relative_to_cwd() {
        let dir = TestDir::new("resolve-path");
        let root = dir.path();
        touch(&root.join("sub/run"), 0o755);
        touch(&root.join("sub/data"), 0o644);
        assert_eq!(
            resolve_command_in("sub/run", root, None, None).unwrap(),
            root.join("sub/run")
        );
        assert_eq!(
            resolve_command_in("./sub/run", root, None, None).unwrap(),
            root.join("./sub/run")
        );
        assert!(matches!(
            resolve_command_in("sub/data", root, None, None),
            Err(ResolveError::NotExecutable { .. })
        ));
        assert!(matches!(
            resolve_command_in("sub/none", root, None, None),
            Err(ResolveError::NotFound { .. })
        ));
        assert!(matches!(
            resolve_command_in("sub", root, None, None),
            Err(ResolveError::NotInSearchPath { .. })
        ));
        assert!(matches!(
            resolve_command_in("", root, None, None),
            Err(ResolveError::Empty)
        ));
    }

    #[test]
    fn non_executable_files_in_path_are_skipped() {
        let dir = TestDir::new("resolve-noexec");
        let root = dir.path();
        touch(&root.join("a/tool"), 0o644);
        touch(&root.join("b/tool"), 0o755);
        let path_var = std::env::join_paths([root.join("a"), root.join("b")]).unwrap();
        assert_eq!(
            resolve_command_in("tool", root, None, Some(&path_var)).unwrap(),
            root.join("b/tool")
        );
    }

    #[test]
    fn finds_sh_in_real_path() {
        let p = resolve_command("sh").unwrap();
        assert!(p.is_absolute() && p.ends_with("sh"), "{p:?}");
    }
}
