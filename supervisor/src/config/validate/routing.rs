//! `[kinds.NAME]` (per-kind router settings) and `[[class]]` (priority classes).

use super::Checker;
use crate::config::model::{ClassConfig, KindConfig, WorkerConfig};
use crate::config::raw::{RawClass, RawKind};
use std::collections::BTreeMap;
use std::time::Duration;
use toml::Spanned;

/// The `[kinds.NAME]` tables of served kinds, in file order.
pub(super) type KindTables = Vec<(Spanned<String>, RawKind)>;

impl Checker<'_> {
    /// The router settings of every served kind, and the `[kinds.NAME]` tables of served
    /// kinds (in file order) for the pipeline keys, checked later by `pipeline`.
    pub(super) fn kinds(
        &mut self,
        raw: Option<BTreeMap<Spanned<String>, Spanned<RawKind>>>,
        workers: &[WorkerConfig],
    ) -> (BTreeMap<String, KindConfig>, KindTables) {
        let mut out: BTreeMap<String, KindConfig> = workers
            .iter()
            .flat_map(|w| w.kinds().iter().map(|k| (k.clone(), KindConfig::default())))
            .collect();
        let mut tables = Vec::new();
        let Some(raw) = raw else {
            return (out, tables);
        };
        let served: Vec<&str> = out.keys().map(String::as_str).collect();
        let served = if served.is_empty() {
            "none".to_owned()
        } else {
            served.join(", ")
        };
        let mut entries: Vec<_> = raw.into_iter().collect();
        entries.sort_by_key(|(name, _)| name.span().start);
        for (name, kind) in entries {
            let n = name.get_ref().clone();
            self.name(&name, &format!("kinds.{n}"), "kind");
            let kind = kind.into_inner();
            let f = |key: &str| format!("kinds.{n}.{key}");
            let d = KindConfig::default();
            let widen = |v: &Option<Spanned<u32>>| {
                v.as_ref()
                    .map(|s| Spanned::new(s.span(), u64::from(*s.get_ref())))
            };
            let queue_limit = self.in_range(
                kind.queue_limit.as_ref(),
                f("queue_limit"),
                1..=100_000_000,
                d.queue_limit,
            );
            let max_attempts = self.in_range(
                widen(&kind.max_attempts).as_ref(),
                f("max_attempts"),
                1..=100,
                d.max_attempts.into(),
            );
            let batch = self.in_range(
                widen(&kind.batch).as_ref(),
                f("batch"),
                1..=4096,
                d.batch.into(),
            );
            let timeout = kind
                .timeout
                .as_ref()
                .map(|t| self.nonzero(Some(t), &f("timeout"), Duration::ZERO));
            let peak_ewma_decay = self.nonzero(
                kind.peak_ewma_decay.as_ref(),
                &f("peak_ewma_decay"),
                d.peak_ewma_decay,
            );
            let config = KindConfig {
                queue_limit,
                router: kind.router.unwrap_or(d.router),
                timeout,
                on_timeout: kind.on_timeout.unwrap_or(d.on_timeout),
                max_attempts: u32::try_from(max_attempts).unwrap_or(d.max_attempts),
                batch: u32::try_from(batch).unwrap_or(d.batch),
                peak_ewma_decay,
            };
            match out.get_mut(&n) {
                Some(slot) => {
                    *slot = config;
                    tables.push((name, kind));
                }
                None => self.error(
                    name.span(),
                    format!("kinds.{n}"),
                    format!("no worker serves kind {n:?} (served: {served}); add it to a worker's `kinds` or remove this table"),
                ),
            }
        }
        (out, tables)
    }

    pub(super) fn classes(
        &mut self,
        raw: Option<Spanned<Vec<Spanned<RawClass>>>>,
    ) -> Vec<ClassConfig> {
        let Some(raw) = raw else {
            return ClassConfig::defaults();
        };
        if raw.get_ref().is_empty() {
            self.error(
                raw.span(),
                "class",
                "no classes: declare at least one [[class]] or remove the key for the defaults",
            );
        }
        let mut out: Vec<ClassConfig> = Vec::new();
        for (i, class) in raw.into_inner().into_iter().enumerate() {
            let class = class.into_inner();
            let field = format!("class[{i}]");
            self.name(&class.name, &format!("{field}.name"), "class");
            if out.iter().any(|c| c.name == *class.name.get_ref()) {
                self.error(
                    class.name.span(),
                    format!("{field}.name"),
                    format!("class {:?} is declared twice", class.name.get_ref()),
                );
            }
            let weight = class.weight.map_or(1, |w| {
                let v = *w.get_ref();
                if !(1..=1000).contains(&v) {
                    self.error(
                        w.span(),
                        format!("{field}.weight"),
                        format!("{v} is outside 1..=1000"),
                    );
                }
                v
            });
            out.push(ClassConfig {
                name: class.name.into_inner(),
                weight,
            });
        }
        out
    }
}
