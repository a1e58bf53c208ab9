//! Two-process runs: fork, pin parent and child to different CPUs, watchdogs, exit status.

use std::panic::{catch_unwind, AssertUnwindSafe};

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{alarm, fork, ForkResult, Pid};

use crate::common::{Res, WATCHDOG_SECS};

/// CPUs the two processes of a run are pinned to (`None`: not pinned).
#[derive(Debug, Clone, Copy)]
pub struct Cpus {
    /// The measuring process (this one).
    pub parent: Option<usize>,
    /// The forked peer.
    pub child: Option<usize>,
}

impl Cpus {
    /// Picks the first two CPUs this process may run on and pins this process to the first.
    /// With a single CPU nothing is pinned (both processes then share it).
    pub fn pin_self() -> Res<Self> {
        let set = sched_getaffinity(Pid::from_raw(0))?;
        let allowed: Vec<usize> = (0..CpuSet::count())
            .filter(|&i| set.is_set(i).unwrap_or(false))
            .collect();
        match allowed.as_slice() {
            [a, b, ..] => {
                pin(*a)?;
                Ok(Self {
                    parent: Some(*a),
                    child: Some(*b),
                })
            }
            _ => Ok(Self {
                parent: None,
                child: None,
            }),
        }
    }

    /// Human-readable description for the report header.
    pub fn describe(&self) -> String {
        match (self.parent, self.child) {
            (Some(p), Some(c)) => format!("measuring process on CPU {p}, peer on CPU {c}"),
            _ => "not pinned (fewer than 2 CPUs available)".to_owned(),
        }
    }
}

/// Pins the calling process to `cpu`.
fn pin(cpu: usize) -> Res<()> {
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(Pid::from_raw(0), &set)?;
    Ok(())
}

/// Forks; runs `child` in the child (pinned to `cpus.child`) and `parent` here, then reaps the
/// child. Either side failing fails the run. Both processes arm a `SIGALRM` watchdog, and the
/// child dies with its parent, so a hung peer ends the benchmark instead of hanging it.
///
/// The caller must be single-threaded (true for this benchmark: nothing it uses spawns threads).
pub fn run_pair<T>(
    cpus: &Cpus,
    child: impl FnOnce() -> Res<()>,
    parent: impl FnOnce() -> Res<T>,
) -> Res<T> {
    // SAFETY: the benchmark process is single-threaded, so the child inherits no lock held by
    // another thread; it runs ordinary Rust code on state set up before the fork and leaves
    // with `_exit`, never returning into `main`.
    match unsafe { fork() }? {
        ForkResult::Child => {
            alarm::set(WATCHDOG_SECS);
            let code = match catch_unwind(AssertUnwindSafe(|| -> Res<()> {
                set_pdeathsig(Signal::SIGKILL)?;
                if let Some(cpu) = cpus.child {
                    pin(cpu)?;
                }
                child()
            })) {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => {
                    eprintln!("bench_ring: child failed: {e}");
                    1
                }
                Err(_) => 2,
            };
            // SAFETY: `_exit` is always safe to call; it skips destructors and atexit handlers
            // that belong to the parent's state.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            alarm::set(WATCHDOG_SECS);
            let result = parent();
            if result.is_err() {
                // The child may be waiting for a peer that gave up; it has no more work to do.
                let _ = kill(child, Signal::SIGKILL);
            }
            let status = waitpid(child, None);
            alarm::cancel();
            let value = result?;
            match status? {
                WaitStatus::Exited(_, 0) => Ok(value),
                other => Err(format!("the benchmark's child process failed: {other:?}").into()),
            }
        }
    }
}

/// CPU time spent on the machine, for telling whether a measurement was disturbed by other work.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    /// Busy time of all CPUs (user, nice, system, irq, softirq, steal), seconds.
    machine_busy: f64,
    /// CPU time of this process and its reaped children, seconds.
    own: f64,
    at: std::time::Instant,
}

impl CpuSample {
    /// Samples now (`None` when `/proc/stat` cannot be read).
    pub fn now() -> Option<Self> {
        use nix::sys::resource::{getrusage, UsageWho};
        use nix::sys::time::TimeValLike;
        use nix::unistd::{sysconf, SysconfVar};
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let ticks: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let busy: u64 = [0, 1, 2, 5, 6, 7]
            .iter()
            .filter_map(|&i| ticks.get(i))
            .sum();
        let hz = sysconf(SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|&h| h > 0)
            .unwrap_or(100);
        let mut own = 0.0;
        for who in [UsageWho::RUSAGE_SELF, UsageWho::RUSAGE_CHILDREN] {
            let u = getrusage(who).ok()?;
            own += (u.user_time().num_microseconds() + u.system_time().num_microseconds()) as f64
                / 1e6;
        }
        Some(Self {
            machine_busy: busy as f64 / hz as f64,
            own,
            at: std::time::Instant::now(),
        })
    }

    /// Share of the machine's CPU capacity used by *other* processes (and the hypervisor)
    /// between `self` and `later`: 0.0 on an idle machine, up to 1.0.
    pub fn foreign_share(&self, later: &Self, cpus: usize) -> f64 {
        let wall = (later.at - self.at).as_secs_f64().max(1e-3);
        let foreign = (later.machine_busy - self.machine_busy) - (later.own - self.own);
        (foreign / (wall * cpus.max(1) as f64)).max(0.0)
    }
}

/// Online CPUs (from `/proc/cpuinfo`; this process's own affinity shows only the pinned one).
pub fn online_cpus() -> usize {
    std::fs::read_to_string("/proc/cpuinfo").map_or(1, |s| {
        s.lines()
            .filter(|l| l.starts_with("processor"))
            .count()
            .max(1)
    })
}
