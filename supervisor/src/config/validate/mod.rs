//! Raw schema → typed model: applies defaults, resolves paths, and collects every impossible
//! value as a [`Diagnostic`] pointing at the offending key.

mod adapt;
mod deps;
mod mode;
mod parts;
mod pipeline;
mod routing;
mod supervisor;
mod worker;

use crate::config::error::Diagnostic;
use crate::config::model::{Config, Principal};
use crate::config::raw::RawConfig;
use crate::config::units::Dur;
use crate::spec::DependencyCondition;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Longest worker / kind / class name.
const MAX_NAME_LEN: usize = 64;

/// Validates `raw` (parsed from `text`, read from `origin`).
pub(super) fn build(raw: RawConfig, text: &str, origin: &Path) -> Result<Config, Vec<Diagnostic>> {
    let mut c = Checker {
        text,
        origin,
        base: origin.parent().unwrap_or(Path::new("")).to_path_buf(),
        errors: Vec::new(),
    };
    let mut raw = raw;
    let supervisor = c.supervisor(raw.supervisor);
    let groups = adapt::take_groups(&mut raw.workers);
    let mut workers = c.workers(raw.workers, &supervisor);
    let (kinds, kind_tables) = c.kinds(raw.kinds, &workers);
    let kind_modes = kind_tables
        .iter()
        .filter_map(|(name, k)| k.adapt.map(|m| (name.clone(), m)))
        .collect();
    let classes = c.classes(raw.class);
    let pipeline = c.pipeline(
        pipeline::RawPipeline {
            kinds: kind_tables,
            routes: raw.route,
            triggers: raw.trigger,
        },
        &kinds,
        &classes,
    );
    let adapt = c.adapt(raw.adapt, kind_modes, groups, &kinds, &mut workers);
    if c.errors.is_empty() {
        Ok(Config {
            path: origin.to_path_buf(),
            supervisor,
            workers,
            kinds,
            classes,
            pipeline,
            adapt,
        })
    } else {
        c.errors.sort_by_key(|d| (d.line, d.column));
        Err(c.errors)
    }
}

/// Collects diagnostics while building the model.
struct Checker<'a> {
    text: &'a str,
    origin: &'a Path,
    /// Directory relative paths are resolved against.
    base: PathBuf,
    errors: Vec<Diagnostic>,
}

/// Spanned facts about a worker kept for the checks across workers.
struct Pending {
    name: Spanned<String>,
    deps: Vec<(Spanned<String>, DependencyCondition)>,
}

impl Checker<'_> {
    fn error(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Diagnostic::at(
            self.text,
            self.origin,
            span,
            field.into(),
            message.into(),
        ));
    }

    fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// Checks a worker, kind or class name.
    fn name(&mut self, name: &Spanned<String>, field: &str, what: &str) {
        let n = name.get_ref();
        let ok = (1..=MAX_NAME_LEN).contains(&n.len())
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            self.error(
                name.span(),
                field,
                format!("invalid {what} name {n:?}: use 1 to {MAX_NAME_LEN} characters from a-z, 0-9, '_' and '-'"),
            );
        }
    }

    /// A duration that must not be zero.
    fn nonzero(&mut self, d: Option<&Spanned<Dur>>, field: &str, default: Duration) -> Duration {
        match d {
            None => default,
            Some(d) => {
                if d.get_ref().0.is_zero() {
                    self.error(
                        d.span(),
                        field,
                        "must be longer than zero, e.g. \"500ms\" or \"5s\"",
                    );
                }
                d.get_ref().0
            }
        }
    }

    /// A string that becomes part of a process's argv/env/paths: no NUL bytes.
    fn no_nul(&mut self, s: &Spanned<String>, field: &str) {
        if s.get_ref().contains('\0') {
            self.error(
                s.span(),
                field,
                "contains a NUL character, which cannot be passed to a process",
            );
        }
    }

    fn principal(&mut self, s: Option<&Spanned<String>>, field: &str) -> Option<Principal> {
        let s = s?;
        let v = s.get_ref();
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(id) = v.parse::<u32>() {
                return Some(Principal::Id(id));
            }
        }
        let body = v.strip_suffix('$').unwrap_or(v);
        let ok = (1..=32).contains(&v.len())
            && body
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            self.error(
                s.span(),
                field,
                format!(
                    "invalid name {v:?}: expected a user/group name (a letter or '_', then letters, digits, \
                     '_', '.', '-', at most 32) or a numeric id"
                ),
            );
        }
        Some(Principal::Name(v.clone()))
    }

    /// An optional number that must be finite and at least 0.
    fn non_negative(&mut self, v: Option<&Spanned<f64>>, field: &str, default: f64) -> f64 {
        v.map_or(default, |v| {
            let x = *v.get_ref();
            if !x.is_finite() || x < 0.0 {
                self.error(v.span(), field, format!("{x} must be a finite number >= 0"));
            }
            x
        })
    }

    /// An optional integer that must lie in `range`.
    fn in_range(
        &mut self,
        v: Option<&Spanned<u64>>,
        field: String,
        range: std::ops::RangeInclusive<u64>,
        default: u64,
    ) -> u64 {
        v.map_or(default, |v| {
            let x = *v.get_ref();
            if !range.contains(&x) {
                self.error(
                    v.span(),
                    field,
                    format!("{x} is outside {}..={}", range.start(), range.end()),
                );
            }
            x
        })
    }

    fn heartbeat_order(
        &mut self,
        span: Range<usize>,
        field: &str,
        interval: Duration,
        timeout: Duration,
    ) {
        if timeout <= interval {
            self.error(
                span,
                field,
                format!(
                    "heartbeat_timeout ({timeout:?}) must be longer than heartbeat_interval ({interval:?}), \
                     e.g. 3 to 5 intervals"
                ),
            );
        }
    }
}
