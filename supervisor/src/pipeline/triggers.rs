//! `[[trigger]]`: tasks submitted by ampd itself — on a timer (`every`, `cron`), when a task
//! of a kind completes (`on_complete`), on a named event (`ampctl emit`), or when a file
//! appears in a directory (`on_file`).
//!
//! Deterministic under injected time: every call takes `now` ([`Instant`], for `every`) and
//! `wall` ([`SystemTime`], for `cron`, which is calendar time in UTC).
//!
//! - `every = P` fires first at start + P, then every P. A late call fires **once** and the
//!   next fire is one period after the missed one, or one period after `now` if more than a
//!   period was missed (no burst of catch-up fires).
//! - `cron` fires at the first matching second after start, then after each fire at the next
//!   one after `wall`; missed ones are skipped the same way. If the wall clock is set back,
//!   the next fire is recomputed from the new time.
//! - `on_complete = K` fires for every successful task of kind K (or, with
//!   `on_failure = true`, every failed one); the payload defaults to the result (or error
//!   message).
//! - `on_event = E` fires for every `ampctl emit E [payload]`; the payload defaults to the
//!   event's.
//! - `on_file = { dir, pattern }` fires once per file name matching `pattern` seen by
//!   [`Triggers::files`] that was not there in the previous listing (files present at the
//!   first listing fire too: a backlog is processed); the payload defaults to the file's
//!   path. Watching the directory (a periodic listing, or inotify) is the event loop's job.
//!
//! ```
//! use amp_supervisor::config::parse;
//! use amp_supervisor::pipeline::triggers::Triggers;
//! use std::path::Path;
//! use std::time::{Duration, Instant, SystemTime};
//! let config = parse(r#"
//!     [workers.w]
//!     command = "x"
//!     kinds = ["tick"]
//!     [[trigger]]
//!     name = "t"
//!     every = "5s"
//!     submit = { kind = "tick", payload = "hi" }
//! "#, Path::new("amp.toml")).unwrap();
//! let (t0, w0) = (Instant::now(), SystemTime::now());
//! let mut triggers = Triggers::new(&config, t0, w0);
//! assert_eq!(triggers.next_wakeup(t0, w0), Some(t0 + Duration::from_secs(5)));
//! assert!(triggers.due(t0 + Duration::from_secs(4), w0).is_empty());
//! let fires = triggers.due(t0 + Duration::from_secs(5), w0);
//! assert_eq!(fires.len(), 1);
//! assert_eq!(fires[0].payload, b"hi");
//! ```

use super::cron::CronSchedule;
use crate::config::{Config, TriggerWhen};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// A trigger fired: submit a task of `kind` in `class` with `payload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerFire {
    /// Index of the trigger (file order).
    pub trigger: usize,
    /// Kind id to submit.
    pub kind: u32,
    /// Priority class index.
    pub class: usize,
    /// The payload.
    pub payload: Vec<u8>,
}

/// One trigger's state, for `ampctl status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerInfo {
    /// Its name.
    pub name: String,
    /// What fires it, as written (`every 5s`, `cron */5 * * * * *`, `on_complete kind`...).
    pub when: String,
    /// Times it fired.
    pub fired: u64,
}

#[derive(Debug, Clone)]
enum When {
    Every {
        period: Duration,
        next: Instant,
    },
    Cron {
        schedule: CronSchedule,
        next: Option<SystemTime>,
    },
    Complete {
        kind: u32,
        on_failure: bool,
    },
    Event(String),
    File {
        dir: PathBuf,
        pattern: String,
        seen: BTreeSet<String>,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    when: When,
    kind: u32,
    class: usize,
    payload: Option<Vec<u8>>,
    fired: u64,
}

/// Every trigger of a config (see the [module documentation](self)).
#[derive(Debug, Clone)]
pub struct Triggers {
    entries: Vec<Entry>,
    /// Per kind id: whether a completion trigger watches it.
    watched: Vec<bool>,
    /// Kind names by id, for [`Triggers::infos`].
    kind_names: Vec<String>,
}

impl Triggers {
    /// The triggers of `config`, timers starting at `now` / `wall`.
    #[must_use]
    pub fn new(config: &Config, now: Instant, wall: SystemTime) -> Self {
        let names: Vec<&str> = config.kinds.keys().map(String::as_str).collect();
        let id = |n: &str| {
            names
                .iter()
                .position(|k| *k == n)
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or(u32::MAX)
        };
        let mut watched = vec![false; names.len()];
        let entries = config
            .pipeline
            .triggers
            .iter()
            .map(|t| {
                let when = match &t.when {
                    TriggerWhen::Every(period) => When::Every {
                        period: *period,
                        next: now + *period,
                    },
                    TriggerWhen::Cron(schedule) => When::Cron {
                        next: schedule.next_after(wall),
                        schedule: schedule.clone(),
                    },
                    TriggerWhen::Complete { kind, on_failure } => {
                        let kind = id(kind);
                        if let Some(w) = watched.get_mut(kind as usize) {
                            *w = true;
                        }
                        When::Complete {
                            kind,
                            on_failure: *on_failure,
                        }
                    }
                    TriggerWhen::Event(e) => When::Event(e.clone()),
                    TriggerWhen::File { dir, pattern } => When::File {
                        dir: dir.clone(),
                        pattern: pattern.clone(),
                        seen: BTreeSet::new(),
                    },
                };
                Entry {
                    name: t.name.clone(),
                    when,
                    kind: id(&t.submit.kind),
                    class: t.submit.class,
                    payload: t.submit.payload.clone(),
                    fired: 0,
                }
            })
            .collect();
        Self {
            entries,
            watched,
            kind_names: names.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    /// Number of triggers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Name, description and fire count of every trigger, in file order.
    #[must_use]
    pub fn infos(&self) -> Vec<TriggerInfo> {
        self.entries
            .iter()
            .map(|e| TriggerInfo {
                name: e.name.clone(),
                when: match &e.when {
                    When::Every { period, .. } => format!("every {period:?}"),
                    When::Cron { schedule, .. } => format!("cron {schedule}"),
                    When::Complete { kind, on_failure } => format!(
                        "on_complete {}{}",
                        self.kind_names
                            .get(*kind as usize)
                            .map_or("?", String::as_str),
                        if *on_failure { " (failures)" } else { "" }
                    ),
                    When::Event(name) => format!("on_event {name}"),
                    When::File { dir, pattern, .. } => {
                        format!("on_file {}/{pattern}", dir.display())
                    }
                },
                fired: e.fired,
            })
            .collect()
    }

    /// When [`Triggers::due`] next has something to fire (`None`: no timer trigger).
    #[must_use]
    pub fn next_wakeup(&self, now: Instant, wall: SystemTime) -> Option<Instant> {
        self.entries
            .iter()
            .filter_map(|e| match &e.when {
                When::Every { next, .. } => Some(*next),
                When::Cron {
                    next: Some(next), ..
                } => Some(now + next.duration_since(wall).unwrap_or(Duration::ZERO)),
                _ => None,
            })
            .min()
    }

    /// The timer triggers due at `now` / `wall`, each fired once.
    pub fn due(&mut self, now: Instant, wall: SystemTime) -> Vec<TriggerFire> {
        let mut out = Vec::new();
        for (i, e) in self.entries.iter_mut().enumerate() {
            let fire = match &mut e.when {
                When::Every { period, next } => {
                    if now < *next {
                        false
                    } else {
                        *next += *period;
                        if *next <= now {
                            *next = now + *period;
                        }
                        true
                    }
                }
                When::Cron { schedule, next } => {
                    let upcoming = schedule.next_after(wall);
                    match *next {
                        Some(n) if wall >= n => {
                            *next = upcoming;
                            true
                        }
                        // The clock was set back: count from the new time.
                        Some(n) if upcoming.is_some_and(|u| u < n) => {
                            *next = upcoming;
                            false
                        }
                        _ => false,
                    }
                }
                _ => false,
            };
            if fire {
                out.push(fire_of(i, e, None));
            }
        }
        out
    }

    /// Whether a completion trigger watches kind `kind` (skip [`Triggers::completed`] if not).
    #[must_use]
    pub fn watches(&self, kind: u32) -> bool {
        self.watched.get(kind as usize).copied().unwrap_or(false)
    }

    /// A task of `kind` finished, successfully (`ok`) or not; `body` is its result or error
    /// message (the default payload).
    pub fn completed(&mut self, kind: u32, ok: bool, body: &[u8]) -> Vec<TriggerFire> {
        let mut out = Vec::new();
        for (i, e) in self.entries.iter_mut().enumerate() {
            if matches!(e.when, When::Complete { kind: k, on_failure } if k == kind && on_failure != ok)
            {
                out.push(fire_of(i, e, Some(body)));
            }
        }
        out
    }

    /// `ampctl emit name [payload]`: the triggers listening to event `name` (empty when none
    /// does: tell the caller).
    pub fn event(&mut self, name: &str, payload: Option<&[u8]>) -> Vec<TriggerFire> {
        let mut out = Vec::new();
        for (i, e) in self.entries.iter_mut().enumerate() {
            if matches!(&e.when, When::Event(n) if n == name) {
                out.push(fire_of(i, e, Some(payload.unwrap_or_default())));
            }
        }
        out
    }

    /// The `on_file` triggers: `(index, directory, pattern)`, for the watcher.
    #[must_use]
    pub fn file_watches(&self) -> Vec<(usize, &Path, &str)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match &e.when {
                When::File { dir, pattern, .. } => Some((i, dir.as_path(), pattern.as_str())),
                _ => None,
            })
            .collect()
    }

    /// The current listing of `on_file` trigger `trigger`'s directory: fires once for each
    /// matching name not in the previous listing. Names gone from the listing are forgotten,
    /// so a file created again fires again. Not an `on_file` trigger: nothing.
    pub fn files<'a>(
        &mut self,
        trigger: usize,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Vec<TriggerFire> {
        let Some(e) = self.entries.get_mut(trigger) else {
            return Vec::new();
        };
        let When::File { dir, pattern, seen } = &mut e.when else {
            return Vec::new();
        };
        let now: BTreeSet<String> = names
            .into_iter()
            .filter(|n| glob_match(pattern, n))
            .map(str::to_owned)
            .collect();
        let new: Vec<PathBuf> = now.difference(seen).map(|n| dir.join(n)).collect();
        *seen = now;
        new.into_iter()
            .map(|path| {
                let bytes = path.as_os_str().as_encoded_bytes().to_vec();
                fire_of(trigger, e, Some(&bytes))
            })
            .collect()
    }
}

fn fire_of(trigger: usize, e: &mut Entry, default: Option<&[u8]>) -> TriggerFire {
    e.fired += 1;
    TriggerFire {
        trigger,
        kind: e.kind,
        class: e.class,
        payload: e
            .payload
            .clone()
            .unwrap_or_else(|| default.unwrap_or_default().to_vec()),
    }
}

/// Whether file name `name` matches glob `pattern`: `*` any run of characters, `?` one
/// character, anything else itself.
///
/// ```
/// use amp_supervisor::pipeline::triggers::glob_match;
/// assert!(glob_match("*.json", "a.json"));
/// assert!(glob_match("job-??.txt", "job-42.txt"));
/// assert!(!glob_match("*.json", "a.json.tmp"));
/// ```
#[must_use]
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Position after the last `*` and the name position it matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi + 1, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}
