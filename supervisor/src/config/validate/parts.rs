//! Small worker sub-tables: `backoff`, `cpu_affinity`, and the `log_*` keys.

use super::Checker;
use crate::config::model::{LogFile, DEFAULT_LOG_KEEP, DEFAULT_LOG_MAX_SIZE};
use crate::spec::Backoff;
use toml::Spanned;

/// CPU indices must be below this (`CPU_SETSIZE`).
const MAX_CPUS: u64 = 1024;

impl Checker<'_> {
    pub(super) fn backoff(
        &mut self,
        raw: Option<Spanned<crate::config::raw::RawBackoff>>,
        field: &str,
    ) -> Backoff {
        let d = Backoff::default();
        let Some(raw) = raw else { return d };
        let table_span = raw.span();
        let raw = raw.into_inner();
        let out = Backoff {
            initial: self.nonzero(raw.initial.as_ref(), &format!("{field}.initial"), d.initial),
            max: self.nonzero(raw.max.as_ref(), &format!("{field}.max"), d.max),
            multiplier: raw
                .multiplier
                .as_ref()
                .map_or(d.multiplier, |m| *m.get_ref()),
            jitter: raw.jitter.as_ref().map_or(d.jitter, |j| *j.get_ref()),
        };
        if out.initial > out.max {
            let span = raw
                .initial
                .as_ref()
                .or(raw.max.as_ref())
                .map_or(table_span, Spanned::span);
            self.error(
                span,
                format!("{field}.initial"),
                format!(
                    "initial ({:?}) is longer than max ({:?}): lower initial or raise max",
                    out.initial, out.max
                ),
            );
        }
        if let Some(m) = &raw.multiplier {
            if !(m.get_ref().is_finite() && *m.get_ref() >= 1.0) {
                self.error(
                    m.span(),
                    format!("{field}.multiplier"),
                    format!("{} must be a number >= 1.0", m.get_ref()),
                );
            }
        }
        if let Some(j) = &raw.jitter {
            if !(0.0..=1.0).contains(j.get_ref()) {
                self.error(
                    j.span(),
                    format!("{field}.jitter"),
                    format!("{} is outside 0.0..=1.0", j.get_ref()),
                );
            }
        }
        out
    }

    pub(super) fn cpu_affinity(
        &mut self,
        raw: Option<Spanned<Vec<Spanned<u64>>>>,
        field: &str,
    ) -> Vec<usize> {
        let Some(list) = raw else { return Vec::new() };
        if list.get_ref().is_empty() {
            self.error(
                list.span(),
                field,
                "is empty: list CPU indices (e.g. [0, 1]) or remove the key",
            );
        }
        let mut out: Vec<usize> = Vec::new();
        for cpu in list.into_inner() {
            let v = *cpu.get_ref();
            match usize::try_from(v) {
                Ok(i) if v < MAX_CPUS => {
                    if out.contains(&i) {
                        self.error(cpu.span(), field, format!("CPU {v} is listed twice"));
                    } else {
                        out.push(i);
                    }
                }
                _ => self.error(
                    cpu.span(),
                    field,
                    format!("CPU index {v} is out of range (0..{MAX_CPUS})"),
                ),
            }
        }
        out
    }

    pub(super) fn log(
        &mut self,
        file: Option<Spanned<String>>,
        max_size: Option<Spanned<crate::config::units::Size>>,
        keep: Option<Spanned<u32>>,
        worker: &str,
    ) -> Option<LogFile> {
        let Some(file) = file else {
            for (key, span) in [
                ("log_max_size", max_size.map(|s| s.span())),
                ("log_keep", keep.map(|s| s.span())),
            ] {
                if let Some(span) = span {
                    self.error(
                        span,
                        format!("workers.{worker}.{key}"),
                        format!("`{key}` needs `log_file`: set log_file or remove {key}"),
                    );
                }
            }
            return None;
        };
        self.no_nul(&file, &format!("workers.{worker}.log_file"));
        if file.get_ref().is_empty() {
            self.error(
                file.span(),
                format!("workers.{worker}.log_file"),
                "is empty: give a file path or remove the key",
            );
        }
        let max = max_size.map_or(DEFAULT_LOG_MAX_SIZE, |s| {
            let v = s.get_ref().0;
            if v < 4096 {
                self.error(
                    s.span(),
                    format!("workers.{worker}.log_max_size"),
                    format!("{v} bytes is too small: at least \"4KiB\""),
                );
            }
            v
        });
        let keep = keep.map_or(DEFAULT_LOG_KEEP, |k| {
            let v = *k.get_ref();
            if v > 1000 {
                self.error(
                    k.span(),
                    format!("workers.{worker}.log_keep"),
                    format!("{v} is too many rotated files: at most 1000"),
                );
            }
            v
        });
        Some(LogFile {
            path: self.resolve(file.get_ref()),
            max_size: max,
            keep,
        })
    }
}
