//! Supervisor-side preparation for a spawn: validate the spec, look users up, stage the passed
//! descriptors and precompute everything the child hook needs, so the child never allocates.

use super::child::{ChildSetup, Credentials, FdMove, Rlimit};
use super::{IdRef, SpawnError, SpawnSpec};
use nix::unistd::{Gid, Group, Uid, User};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;

/// The result of [`prepare`].
pub(super) struct Prepared {
    /// The program, made absolute if it was a relative path with a `/`.
    pub(super) program: PathBuf,
    /// What the child hook does.
    pub(super) child: ChildSetup,
    /// Supervisor-side copies that must stay open until the fork has happened.
    pub(super) staged: Vec<OwnedFd>,
}

/// Validates `spec` and precomputes the child setup.
pub(super) fn prepare(spec: &SpawnSpec) -> Result<Prepared, SpawnError> {
    let program = program_path(spec)?;
    check_args(spec)?;
    check_env(&spec.env)?;
    if let Some(nice) = spec.nice {
        if !(-20..=19).contains(&nice) {
            return Err(SpawnError::InvalidNice { nice });
        }
    }
    let affinity = cpu_set(&spec.cpu_affinity)?;
    let credentials = credentials(spec.user.as_ref(), spec.group.as_ref())?;
    let fallback_fd_limit = fd_limit()?;
    let (fd_moves, cloexec_ranges, staged) = stage_fds(spec, fallback_fd_limit)?;
    let max_signal = libc::SIGRTMAX();
    // The kernel's signal set has one bit per signal 1..=SIGRTMAX (_NSIG - 1), rounded to bytes.
    let kernel_sigset_size = usize::try_from(max_signal).unwrap_or(64).div_ceil(8);
    Ok(Prepared {
        program,
        child: ChildSetup {
            parent_pid: nix::unistd::getpid().as_raw(),
            max_signal,
            kernel_sigset_size,
            empty_mask: *nix::sys::signal::SigSet::empty().as_ref(),
            rlimits: rlimits(spec),
            nice: spec.nice,
            affinity,
            credentials,
            fd_moves,
            cloexec_ranges,
            fallback_fd_limit,
        },
        staged,
    })
}

fn program_path(spec: &SpawnSpec) -> Result<PathBuf, SpawnError> {
    let program = &spec.program;
    if program.as_os_str().is_empty() {
        return Err(SpawnError::EmptyProgram);
    }
    nul_free(program.as_os_str().as_bytes(), 0)?;
    let has_slash = program.as_os_str().as_bytes().contains(&b'/');
    if has_slash && program.is_relative() {
        let cwd = std::env::current_dir().map_err(|source| SpawnError::Prepare {
            what: "reading the current directory",
            source,
        })?;
        return Ok(cwd.join(program));
    }
    Ok(program.clone())
}

fn nul_free(bytes: &[u8], index: usize) -> Result<(), SpawnError> {
    if bytes.contains(&0) {
        return Err(SpawnError::NulInArgument {
            index,
            arg: String::from_utf8_lossy(bytes).into_owned(),
        });
    }
    Ok(())
}

fn check_args(spec: &SpawnSpec) -> Result<(), SpawnError> {
    for (i, arg) in spec.args.iter().enumerate() {
        nul_free(arg.as_bytes(), i + 1)?;
    }
    Ok(())
}

fn check_env(env: &[(String, String)]) -> Result<(), SpawnError> {
    for (name, value) in env {
        let reason = if name.is_empty() {
            Some("the name is empty")
        } else if name.contains('=') {
            Some("the name contains `=`")
        } else if name.contains('\0') {
            Some("the name contains a NUL byte")
        } else if value.contains('\0') {
            Some("the value contains a NUL byte")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(SpawnError::InvalidEnv {
                name: name.clone(),
                reason,
            });
        }
    }
    Ok(())
}

fn cpu_set(cpus: &[usize]) -> Result<Option<nix::sched::CpuSet>, SpawnError> {
    if cpus.is_empty() {
        return Ok(None);
    }
    let mut set = nix::sched::CpuSet::new();
    for &cpu in cpus {
        set.set(cpu).map_err(|_| SpawnError::InvalidCpu {
            cpu,
            limit: nix::sched::CpuSet::count(),
        })?;
    }
    Ok(Some(set))
}

fn rlimits(spec: &SpawnSpec) -> Vec<Rlimit> {
    let r = &spec.rlimits;
    [
        (libc::RLIMIT_NOFILE, r.nofile),
        (libc::RLIMIT_AS, r.address_space),
        (libc::RLIMIT_CPU, r.cpu),
        (libc::RLIMIT_NPROC, r.nproc),
        (libc::RLIMIT_CORE, r.core),
    ]
    .into_iter()
    .filter_map(|(resource, value)| value.map(|value| Rlimit { resource, value }))
    .collect()
}

fn lookup_err(what: String) -> impl FnOnce(nix::Error) -> SpawnError {
    move |source| SpawnError::IdLookup { what, source }
}

fn find_user(user: &IdRef) -> Result<User, SpawnError> {
    let found = match user {
        IdRef::Name(name) => User::from_name(name),
        IdRef::Id(id) => User::from_uid(Uid::from_raw(*id)),
    }
    .map_err(lookup_err(format!("user {user}")))?;
    found.ok_or_else(|| SpawnError::UnknownUser { user: user.clone() })
}

fn find_group(group: &IdRef) -> Result<Gid, SpawnError> {
    let found = match group {
        IdRef::Name(name) => Group::from_name(name),
        IdRef::Id(id) => Group::from_gid(Gid::from_raw(*id)),
    }
    .map_err(lookup_err(format!("group {group}")))?;
    found
        .map(|g| g.gid)
        .ok_or_else(|| SpawnError::UnknownGroup {
            group: group.clone(),
        })
}

/// Resolves user/group into the ids and the supplementary group list the child will take.
fn credentials(
    user: Option<&IdRef>,
    group: Option<&IdRef>,
) -> Result<Option<Credentials>, SpawnError> {
    let privileged = nix::unistd::geteuid().is_root();
    match (user, group) {
        (None, None) => Ok(None),
        (None, Some(group)) => {
            let gid = find_group(group)?;
            Ok(Some(Credentials {
                uid: None,
                gid: gid.as_raw(),
                groups: privileged.then(|| vec![gid.as_raw()]),
            }))
        }
        (Some(user_ref), group) => {
            let user = find_user(user_ref)?;
            let gid = match group {
                Some(group) => find_group(group)?,
                None => user.gid,
            };
            let groups = if privileged {
                let name =
                    CString::new(user.name.as_bytes()).map_err(|_| SpawnError::UnknownUser {
                        user: user_ref.clone(),
                    })?;
                let list = nix::unistd::getgrouplist(&name, gid)
                    .map_err(lookup_err(format!("the groups of user {user_ref}")))?;
                Some(list.into_iter().map(Gid::as_raw).collect())
            } else {
                None
            };
            Ok(Some(Credentials {
                uid: Some(user.uid.as_raw()),
                gid: gid.as_raw(),
                groups,
            }))
        }
    }
}

/// Moves, close-on-exec ranges, and descriptors to keep open until the fork.
type Staged = (Vec<FdMove>, Vec<(libc::c_uint, libc::c_uint)>, Vec<OwnedFd>);

/// Stages the passed descriptors.
///
/// Each source is duplicated above every target number (so the child's `dup2`s cannot clobber a
/// source still to be moved), and every free target number is occupied by a close-on-exec
/// placeholder until the fork, so that `std` cannot put its exec-error pipe on a target number
/// (the child's `dup2` would then replace that pipe). Returns the moves, the ranges to mark
/// close-on-exec in the child and the descriptors to keep open until the fork.
///
/// Assumes no other thread closes a descriptor on a target number between this call and the
/// fork (the event loop spawns from its one thread).
fn stage_fds(spec: &SpawnSpec, fd_limit: libc::c_uint) -> Result<Staged, SpawnError> {
    let mut targets: Vec<RawFd> = spec.pass_fds.iter().map(|&(_, t)| t).collect();
    targets.sort_unstable();
    for pair in targets.windows(2) {
        if pair[0] == pair[1] {
            return Err(SpawnError::InvalidFdTarget {
                target: pair[0],
                reason: "it is used twice",
            });
        }
    }
    for &t in &targets {
        if t < 3 {
            return Err(SpawnError::InvalidFdTarget {
                target: t,
                reason: "0, 1 and 2 are stdin, stdout and stderr; use 3 or above",
            });
        }
        if let Some(limit) = spec.rlimits.nofile {
            if u64::try_from(t).is_ok_and(|t| t >= limit) {
                return Err(SpawnError::InvalidFdTarget {
                    target: t,
                    reason: "it is not below the configured `nofile` limit",
                });
            }
        } else if libc::c_uint::try_from(t).is_ok_and(|t| t >= fd_limit) {
            return Err(SpawnError::InvalidFdTarget {
                target: t,
                reason:
                    "it is not below the inherited RLIMIT_NOFILE soft limit; set `nofile` higher",
            });
        }
    }
    let mut staged = Vec::new();
    let mut moves = Vec::new();
    if let Some(&max_target) = targets.last() {
        let above = max_target
            .checked_add(1)
            .ok_or(SpawnError::InvalidFdTarget {
                target: max_target,
                reason: "it is too large",
            })?;
        for (source, target) in &spec.pass_fds {
            let copy = dup_cloexec_at_least(source.as_raw_fd(), above).map_err(|source| {
                SpawnError::Prepare {
                    what: "duplicating a passed descriptor",
                    source,
                }
            })?;
            moves.push(FdMove {
                from: copy.as_raw_fd(),
                to: *target,
            });
            staged.push(copy);
        }
        let any = staged[0].as_raw_fd();
        for &t in &targets {
            let placeholder =
                dup_cloexec_at_least(any, t).map_err(|source| SpawnError::Prepare {
                    what: "reserving a target descriptor number",
                    source,
                })?;
            if placeholder.as_raw_fd() == t {
                staged.push(placeholder);
            } // else: `t` is already open in the supervisor; the copy closes here.
        }
    }
    Ok((moves, cloexec_ranges(&targets), staged))
}

/// The ranges of descriptors `>= 3` that are not targets. `targets` is sorted and `>= 3`.
pub(super) fn cloexec_ranges(targets: &[RawFd]) -> Vec<(libc::c_uint, libc::c_uint)> {
    let mut ranges = Vec::with_capacity(targets.len() + 1);
    let mut next: libc::c_uint = 3;
    for &t in targets {
        let t = libc::c_uint::try_from(t).expect("targets are >= 3");
        if t > next {
            ranges.push((next, t - 1));
        }
        next = t + 1;
    }
    ranges.push((next, libc::c_uint::MAX));
    ranges
}

fn dup_cloexec_at_least(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC takes an int argument and does not touch memory; `fd` is a valid
    // descriptor borrowed from the caller's `OwnedFd`.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` was just returned by fcntl, is open, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// The soft `RLIMIT_NOFILE` (capped at 2^20): the bound for target numbers when the spec sets no
/// `nofile`, and for the child's close-on-exec loop when `close_range` is unavailable.
fn fd_limit() -> Result<libc::c_uint, SpawnError> {
    let (soft, _hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_err(|e| SpawnError::Prepare {
            what: "reading RLIMIT_NOFILE",
            source: e.into(),
        })?;
    Ok(libc::c_uint::try_from(soft.min(1 << 20)).unwrap_or(1 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloexec_ranges_skip_targets() {
        assert_eq!(cloexec_ranges(&[]), vec![(3, u32::MAX)]);
        assert_eq!(cloexec_ranges(&[3, 4]), vec![(5, u32::MAX)]);
        assert_eq!(cloexec_ranges(&[3, 5]), vec![(4, 4), (6, u32::MAX)]);
        assert_eq!(cloexec_ranges(&[7]), vec![(3, 6), (8, u32::MAX)]);
    }

    #[test]
    fn env_validation_names_the_problem() {
        let bad = |k: &str, v: &str| {
            check_env(&[(k.to_owned(), v.to_owned())])
                .unwrap_err()
                .to_string()
        };
        assert!(bad("", "x").contains("empty"));
        assert!(bad("A=B", "x").contains("`=`"));
        assert!(bad("A", "x\0y").contains("NUL"));
        assert!(check_env(&[("A".into(), "b=c".into())]).is_ok());
    }

    #[test]
    fn rlimits_keep_only_set_fields() {
        let mut spec = SpawnSpec::new("/bin/true");
        spec.rlimits.nofile = Some(64);
        spec.rlimits.core = Some(0);
        let r = rlimits(&spec);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].resource, r[0].value), (libc::RLIMIT_NOFILE, 64));
        assert_eq!((r[1].resource, r[1].value), (libc::RLIMIT_CORE, 0));
    }
}
