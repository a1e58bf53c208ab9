//! Sampling a process from `/proc`: CPU time, resident memory, context switches.
//!
//! The parsers are pure functions over the file text, tested on canned input; [`proc_sample`]
//! reads the files.

use nix::unistd::{sysconf, Pid, SysconfVar};
use std::io;
use std::time::Duration;

/// Resource usage of one process at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// User + system CPU time consumed so far (`utime + stime`).
    pub cpu_time: Duration,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// Times it gave up the CPU voluntarily (blocked, slept).
    pub voluntary_ctxt_switches: u64,
    /// Times it was preempted.
    pub nonvoluntary_ctxt_switches: u64,
}

/// The fields of `/proc/PID/stat` this module uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// Executable name (field 2, without the parentheses; may contain spaces and `)`).
    pub comm: String,
    /// State letter (field 3): `R`, `S`, `D`, `Z`, ...
    pub state: char,
    /// Parent pid (field 4).
    pub ppid: i32,
    /// Process group (field 5).
    pub pgrp: i32,
    /// User-mode CPU time in clock ticks (field 14).
    pub utime_ticks: u64,
    /// Kernel-mode CPU time in clock ticks (field 15).
    pub stime_ticks: u64,
    /// Niceness (field 19).
    pub nice: i64,
    /// Thread count (field 20).
    pub num_threads: i64,
    /// Start time after boot in clock ticks (field 22).
    pub start_time_ticks: u64,
    /// Resident set size in pages (field 24).
    pub rss_pages: u64,
}

/// The fields of `/proc/PID/status` this module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStatus {
    /// `voluntary_ctxt_switches`.
    pub voluntary_ctxt_switches: u64,
    /// `nonvoluntary_ctxt_switches`.
    pub nonvoluntary_ctxt_switches: u64,
    /// `VmRSS` in KiB; absent for zombies and kernel threads.
    pub vm_rss_kib: Option<u64>,
}

/// `/proc` text that does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcParseError {
    /// `/proc/PID/stat` has no `(comm)` field.
    #[error("/proc/PID/stat has no `(comm)` field; is this a stat file?")]
    NoComm,
    /// A field is missing.
    #[error("{file}: field `{field}` is missing")]
    MissingField {
        /// `stat` or `status`.
        file: &'static str,
        /// The field name.
        field: &'static str,
    },
    /// A field is not a number of the expected kind.
    #[error("{file}: field `{field}` has unexpected value {value:?}")]
    BadValue {
        /// `stat` or `status`.
        file: &'static str,
        /// The field name.
        field: &'static str,
        /// What was there.
        value: String,
    },
}

fn number<T: std::str::FromStr>(
    file: &'static str,
    field: &'static str,
    value: Option<&str>,
) -> Result<T, ProcParseError> {
    let value = value.ok_or(ProcParseError::MissingField { file, field })?;
    value.parse().map_err(|_| ProcParseError::BadValue {
        file,
        field,
        value: value.to_owned(),
    })
}

/// Parses `/proc/PID/stat`.
///
/// `comm` may contain spaces and parentheses, so it spans from the first `(` to the **last** `)`;
/// the numbered fields follow the last `)`.
///
/// # Errors
///
/// [`ProcParseError`] naming the field that is missing or malformed.
///
/// # Examples
///
/// ```
/// let s = amp_supervisor::sys::parse_stat(
///     "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 1234 1000 250 184467")?;
/// assert_eq!(s.comm, "a) b");
/// assert_eq!((s.utime_ticks, s.stime_ticks, s.rss_pages), (7, 3, 250));
/// # Ok::<(), amp_supervisor::sys::ProcParseError>(())
/// ```
pub fn parse_stat(text: &str) -> Result<ProcStat, ProcParseError> {
    const F: &str = "stat";
    let open = text.find('(').ok_or(ProcParseError::NoComm)?;
    let close = text
        .rfind(')')
        .filter(|&c| c > open)
        .ok_or(ProcParseError::NoComm)?;
    let comm = text[open + 1..close].to_owned();
    // Fields after `)`, numbered from 3 (state).
    let rest: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).copied();
    let state_str = field(3).ok_or(ProcParseError::MissingField {
        file: F,
        field: "state",
    })?;
    let mut chars = state_str.chars();
    let state = match (chars.next(), chars.next()) {
        (Some(c), None) => c,
        _ => {
            return Err(ProcParseError::BadValue {
                file: F,
                field: "state",
                value: state_str.to_owned(),
            })
        }
    };
    Ok(ProcStat {
        comm,
        state,
        ppid: number(F, "ppid", field(4))?,
        pgrp: number(F, "pgrp", field(5))?,
        utime_ticks: number(F, "utime", field(14))?,
        stime_ticks: number(F, "stime", field(15))?,
        nice: number(F, "nice", field(19))?,
        num_threads: number(F, "num_threads", field(20))?,
        start_time_ticks: number(F, "starttime", field(22))?,
        rss_pages: number(F, "rss", field(24))?,
    })
}

/// Parses `/proc/PID/status` (`Key:\tvalue` lines).
///
/// # Errors
///
/// [`ProcParseError`] if a context-switch counter is missing or malformed, or `VmRSS` is malformed.
pub fn parse_status(text: &str) -> Result<ProcStatus, ProcParseError> {
    const F: &str = "status";
    let mut voluntary = None;
    let mut nonvoluntary = None;
    let mut rss = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "voluntary_ctxt_switches" => voluntary = Some(value),
            "nonvoluntary_ctxt_switches" => nonvoluntary = Some(value),
            "VmRSS" => rss = Some(value),
            _ => {}
        }
    }
    let vm_rss_kib = match rss {
        None => None,
        Some(v) => Some(number(F, "VmRSS", v.strip_suffix("kB").map(str::trim_end))?),
    };
    Ok(ProcStatus {
        voluntary_ctxt_switches: number(F, "voluntary_ctxt_switches", voluntary)?,
        nonvoluntary_ctxt_switches: number(F, "nonvoluntary_ctxt_switches", nonvoluntary)?,
        vm_rss_kib,
    })
}

impl ProcSample {
    /// Combines parsed files. `clock_ticks_per_sec` is `sysconf(_SC_CLK_TCK)` (must be > 0),
    /// `page_size` is `sysconf(_SC_PAGESIZE)`.
    #[must_use]
    pub fn from_parts(
        stat: &ProcStat,
        status: &ProcStatus,
        clock_ticks_per_sec: u64,
        page_size: u64,
    ) -> Self {
        let hz = clock_ticks_per_sec.max(1);
        let ticks = stat.utime_ticks.saturating_add(stat.stime_ticks);
        let nanos = (ticks % hz) * 1_000_000_000 / hz;
        Self {
            cpu_time: Duration::from_secs(ticks / hz) + Duration::from_nanos(nanos),
            rss_bytes: stat.rss_pages.saturating_mul(page_size),
            voluntary_ctxt_switches: status.voluntary_ctxt_switches,
            nonvoluntary_ctxt_switches: status.nonvoluntary_ctxt_switches,
        }
    }
}

fn sysconf_u64(var: SysconfVar, fallback: u64) -> u64 {
    match sysconf(var) {
        Ok(Some(v)) => u64::try_from(v).ok().filter(|&v| v > 0).unwrap_or(fallback),
        _ => fallback,
    }
}

/// Samples `pid` from `/proc/PID/stat` and `/proc/PID/status`.
///
/// # Errors
///
/// `NotFound` if the process is gone (it can vanish between the two reads), or `InvalidData`
/// wrapping a [`ProcParseError`].
pub fn proc_sample(pid: Pid) -> io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let invalid = |e: ProcParseError| io::Error::new(io::ErrorKind::InvalidData, e);
    let stat = parse_stat(&stat).map_err(invalid)?;
    let status = parse_status(&status).map_err(invalid)?;
    Ok(ProcSample::from_parts(
        &stat,
        &status,
        sysconf_u64(SysconfVar::CLK_TCK, 100),
        sysconf_u64(SysconfVar::PAGE_SIZE, 4096),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "1234 (my (weird) name) S 1 1234 1234 0 -1 4194560 1523 0 0 0 250 125 0 0 20 5 3 0 98765 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

    const STATUS: &str = "Name:\tmy (weird) name\nState:\tS (sleeping)\nVmRSS:\t    8192 kB\nThreads:\t3\nvoluntary_ctxt_switches:\t150\nnonvoluntary_ctxt_switches:\t7\n";

    #[test]
    fn stat_splits_at_the_last_paren() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.comm, "my (weird) name");
        assert_eq!(s.state, 'S');
        assert_eq!((s.ppid, s.pgrp), (1, 1234));
        assert_eq!((s.utime_ticks, s.stime_ticks), (250, 125));
        assert_eq!((s.nice, s.num_threads), (5, 3));
        assert_eq!(s.start_time_ticks, 98765);
        assert_eq!(s.rss_pages, 2048);
    }

    #[test]
    fn stat_comm_with_space_then_paren_and_digits() {
        let s = parse_stat("7 () 1 2 3) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 9").unwrap();
        assert_eq!(s.comm, ") 1 2 3");
        assert_eq!(s.state, 'R');
        assert_eq!(s.rss_pages, 9);
    }

    #[test]
    fn stat_errors_name_the_field() {
        assert_eq!(parse_stat("12 no parens S 1"), Err(ProcParseError::NoComm));
        assert_eq!(parse_stat("12 )x( S"), Err(ProcParseError::NoComm));
        let short = parse_stat("1 (a) S 1 1").unwrap_err();
        assert_eq!(
            short,
            ProcParseError::MissingField {
                file: "stat",
                field: "utime"
            }
        );
        let bad = parse_stat("1 (a) S x 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 9").unwrap_err();
        assert!(
            matches!(bad, ProcParseError::BadValue { field: "ppid", .. }),
            "{bad}"
        );
        let state = parse_stat("1 (a) SS 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 9").unwrap_err();
        assert!(matches!(
            state,
            ProcParseError::BadValue { field: "state", .. }
        ));
    }

    #[test]
    fn status_reads_switches_and_rss() {
        let s = parse_status(STATUS).unwrap();
        assert_eq!(
            s,
            ProcStatus {
                voluntary_ctxt_switches: 150,
                nonvoluntary_ctxt_switches: 7,
                vm_rss_kib: Some(8192)
            }
        );
        let zombie =
            parse_status("Name:\tz\nvoluntary_ctxt_switches:\t1\nnonvoluntary_ctxt_switches:\t2\n")
                .unwrap();
        assert_eq!(zombie.vm_rss_kib, None);
        let missing = parse_status("Name:\tz\nvoluntary_ctxt_switches:\t1\n").unwrap_err();
        assert_eq!(
            missing,
            ProcParseError::MissingField {
                file: "status",
                field: "nonvoluntary_ctxt_switches"
            }
        );
        let bad = parse_status(
            "VmRSS:\tlots kB\nvoluntary_ctxt_switches:\t1\nnonvoluntary_ctxt_switches:\t2\n",
        )
        .unwrap_err();
        assert!(matches!(
            bad,
            ProcParseError::BadValue { field: "VmRSS", .. }
        ));
    }

    #[test]
    fn sample_converts_ticks_and_pages() {
        let s = ProcSample::from_parts(
            &parse_stat(STAT).unwrap(),
            &parse_status(STATUS).unwrap(),
            100,
            4096,
        );
        assert_eq!(s.cpu_time, Duration::from_millis(3750));
        assert_eq!(s.rss_bytes, 2048 * 4096);
        assert_eq!(
            (s.voluntary_ctxt_switches, s.nonvoluntary_ctxt_switches),
            (150, 7)
        );
        let odd = ProcSample::from_parts(
            &parse_stat(STAT).unwrap(),
            &parse_status(STATUS).unwrap(),
            300,
            1,
        );
        assert_eq!(odd.cpu_time, Duration::from_millis(1250));
    }

    #[test]
    fn samples_this_process() {
        let s = proc_sample(nix::unistd::getpid()).unwrap();
        assert!(s.rss_bytes > 0);
        let stat = parse_stat(&std::fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
        assert_eq!(stat.ppid, nix::unistd::getppid().as_raw());
    }
}
