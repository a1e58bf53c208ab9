//! Cron schedules for `[[trigger]] cron = "..."`, evaluated in **UTC**.
//!
//! A small, dependency-free subset of cron (a maintained crate, `croner`, needs `chrono`, which
//! nothing else here uses):
//!
//! - 5 fields `minute hour day-of-month month day-of-week` (fires at second 0), or 6 fields
//!   `second minute hour day-of-month month day-of-week`;
//! - each field is a comma-separated list of `*`, `N`, `A-B`, `*/S`, `A-B/S` or `N/S` (from `N`
//!   to the field's maximum, every `S`); `?` means `*` in the two day fields;
//! - months may be written `JAN`..`DEC`, days of the week `SUN`..`SAT` (any case); day of week
//!   is 0..=7 with both 0 and 7 meaning Sunday;
//! - when both day fields are restricted, a day matches if **either** matches (Vixie cron);
//!   when one is `*`, only the other counts;
//! - the macros `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`) and
//!   `@hourly`.
//!
//! ```
//! use amp_supervisor::pipeline::cron::CronSchedule;
//! use std::time::{Duration, UNIX_EPOCH};
//! let every_5s = CronSchedule::parse("*/5 * * * * *")?;
//! let t = UNIX_EPOCH + Duration::from_secs(1_700_000_002);
//! assert_eq!(every_5s.next_after(t), Some(UNIX_EPOCH + Duration::from_secs(1_700_000_005)));
//! // 09:30 on weekdays.
//! let s = CronSchedule::parse("30 9 * * MON-FRI")?;
//! assert!(s.next_after(t).is_some());
//! # Ok::<(), String>(())
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days searched for the next match before giving up: the 400-year Gregorian cycle, after
/// which every calendar pattern repeats.
const SEARCH_DAYS: i64 = 146_097;

/// A parsed cron schedule (see the [module documentation](self) for the syntax).
#[derive(Clone, PartialEq, Eq)]
pub struct CronSchedule {
    source: String,
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Day-of-month field was `*` or `?`.
    any_day: bool,
    /// Day-of-week field was `*` or `?`.
    any_weekday: bool,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?})", self.source)
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// One field's name, range and word aliases.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    words: &'static [&'static str],
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    words: &[],
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    words: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    words: &[],
};
const DAY: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    words: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    words: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
const WEEKDAY: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
    words: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};

impl CronSchedule {
    /// Parses a 5- or 6-field expression or a macro.
    ///
    /// # Errors
    /// A message naming the bad field and what it accepts, or saying the schedule never fires
    /// (e.g. `0 0 31 2 *`, February 31st).
    pub fn parse(text: &str) -> Result<Self, String> {
        let expanded = match text.trim().to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 0 1 1 *",
            "@monthly" => "0 0 0 1 * *",
            "@weekly" => "0 0 0 * * 0",
            "@daily" | "@midnight" => "0 0 0 * * *",
            "@hourly" => "0 0 * * * *",
            other if other.starts_with('@') => {
                return Err(format!(
                    "unknown cron macro {text:?}: use @yearly, @monthly, @weekly, @daily or @hourly"
                ))
            }
            _ => text,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(format!(
                "cron expression {text:?} has {n} fields: write 5 (minute hour day month weekday) \
                     or 6 (second minute hour day month weekday), e.g. \"*/5 * * * * *\""
            ))
            }
        };
        let mut weekdays = parse_field(rest[4], &WEEKDAY)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        let wild = |f: &str| f == "*" || f == "?";
        let schedule = Self {
            source: text.to_owned(),
            seconds: parse_field(sec, &SECOND)?,
            minutes: parse_field(rest[0], &MINUTE)?,
            hours: parse_field(rest[1], &HOUR)?,
            days: parse_field(rest[2], &DAY)?,
            months: parse_field(rest[3], &MONTH)?,
            weekdays,
            any_day: wild(rest[2]),
            any_weekday: wild(rest[4]),
        };
        if schedule.next_after(UNIX_EPOCH).is_none() {
            return Err(format!(
                "cron expression {text:?} never fires (no such date): check the day and month fields"
            ));
        }
        Ok(schedule)
    }

    /// The expression as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The first time the schedule fires strictly after `after` (whole seconds, UTC), or
    /// `None` if it never does (or `after` is before 1970 or beyond the year 9999).
    #[must_use]
    pub fn next_after(&self, after: SystemTime) -> Option<SystemTime> {
        let secs = match after.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).ok()?,
            Err(_) => return None,
        };
        let start = secs.checked_add(1)?;
        let first = start.div_euclid(86_400);
        let mut sod = start.rem_euclid(86_400);
        for day in first..=first + SEARCH_DAYS {
            let (y, m, d) = civil_from_days(day);
            if y > 9999 {
                return None;
            }
            if self.day_matches(m, d, weekday_of(day)) {
                if let Some(s) = self.time_at_or_after(sod) {
                    let total = day * 86_400 + s;
                    return Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(total).ok()?));
                }
            }
            sod = 0;
        }
        None
    }

    fn day_matches(&self, month: u32, day: u32, weekday: u32) -> bool {
        if self.months & (1 << month) == 0 {
            return false;
        }
        let dom = self.days & (1 << day) != 0;
        let dow = self.weekdays & (1 << weekday) != 0;
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// The first second of the day at or after `sod` that matches, if any.
    fn time_at_or_after(&self, sod: i64) -> Option<i64> {
        let (h0, m0, s0) = (sod / 3600, (sod / 60) % 60, sod % 60);
        for h in h0..24 {
            if self.hours & (1 << h) == 0 {
                continue;
            }
            let m_start = if h == h0 { m0 } else { 0 };
            for m in m_start..60 {
                if self.minutes & (1 << m) == 0 {
                    continue;
                }
                let s_start = if h == h0 && m == m0 { s0 } else { 0 };
                if let Some(s) = (s_start..60).find(|s| self.seconds & (1 << s) != 0) {
                    return Some(h * 3600 + m * 60 + s);
                }
            }
        }
        None
    }
}

/// Parses one field into a bit set (bit `v` set when value `v` matches).
fn parse_field(text: &str, field: &Field) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    format!(
                        "invalid {} step {s:?} in {text:?}: write a positive number, as in \"*/5\"",
                        field.name
                    )
                })?;
                (r, step)
            }
            None => (part, 1),
        };
        let day_field = field.name == DAY.name || field.name == WEEKDAY.name;
        let (lo, hi) = if range == "*" || (range == "?" && day_field) {
            (field.min, field.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, field, text)?, value(b, field, text)?)
        } else {
            let v = value(range, field, text)?;
            // `N/S` runs from N to the maximum.
            (v, if part.contains('/') { field.max } else { v })
        };
        if lo > hi {
            return Err(format!(
                "invalid {} range {range:?} in {text:?}: the start is after the end",
                field.name
            ));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

/// One value of a field: a number in range or one of the field's words.
fn value(text: &str, field: &Field, whole: &str) -> Result<u32, String> {
    let upper = text.to_ascii_uppercase();
    if let Some(i) = field.words.iter().position(|w| *w == upper) {
        let i = u32::try_from(i).unwrap_or(0);
        return Ok(if field.min == 1 { i + 1 } else { i });
    }
    match text.parse::<u32>() {
        Ok(v) if (field.min..=field.max).contains(&v) => Ok(v),
        _ => {
            let words = if field.words.is_empty() {
                String::new()
            } else {
                format!(
                    " or {}..{}",
                    field.words[0],
                    field.words[field.words.len() - 1]
                )
            };
            Err(format!(
                "invalid {} {text:?} in {whole:?}: expected {}..={}{words}, `*`, a range `A-B` or a step `*/S`",
                field.name, field.min, field.max
            ))
        }
    }
}

/// Day of the week of a day number since 1970-01-01 (a Thursday): 0 = Sunday.
fn weekday_of(day: i64) -> u32 {
    u32::try_from((day + 4).rem_euclid(7)).unwrap_or(0)
}

/// (year, month 1..=12, day 1..=31) of a day number since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// Day number since 1970-01-01 of a civil date (inverse of [`civil_from_days`]); used by
/// tests to write dates readably.
#[cfg(test)]
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
