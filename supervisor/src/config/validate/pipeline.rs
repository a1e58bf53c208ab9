//! The pipeline keys: `[kinds.NAME]` loops / determinism / cache / fan-in, `[[route]]` and
//! `[[trigger]]`.

use super::Checker;
use crate::config::graph;
use crate::config::model::{ClassConfig, KindConfig};
use crate::config::pipeline::{
    CacheConfig, DiskCacheConfig, FailurePolicy, FanIn, KindFlow, PipelineConfig, RouteConfig,
    RouteOn, TriggerConfig, TriggerSubmit, TriggerWhen, DEFAULT_DISK_CACHE_MAX_BYTES,
};
use crate::config::raw::{RawCache, RawFanIn, RawKind, RawRoute, RawTrigger};
use crate::pipeline::cron::CronSchedule;
use std::collections::BTreeMap;
use std::ops::Range;
use toml::Spanned;

/// Largest `max_loops`.
const MAX_LOOPS: u32 = 10_000;
/// Largest `fan_in = { at_least = N }`.
const MAX_AT_LEAST: u64 = 65_536;

/// Raw pipeline input gathered by `build`.
pub(super) struct RawPipeline {
    pub kinds: Vec<(Spanned<String>, RawKind)>,
    pub routes: Option<Spanned<Vec<Spanned<RawRoute>>>>,
    pub triggers: Option<Spanned<Vec<Spanned<RawTrigger>>>>,
}

impl Checker<'_> {
    pub(super) fn pipeline(
        &mut self,
        raw: RawPipeline,
        kinds: &BTreeMap<String, KindConfig>,
        classes: &[ClassConfig],
    ) -> PipelineConfig {
        let served = Served::new(kinds);
        let mut flows: BTreeMap<String, KindFlow> = kinds
            .keys()
            .map(|k| (k.clone(), KindFlow::default()))
            .collect();
        for (name, kind) in raw.kinds {
            let flow = self.kind_flow(&name, kind, &served);
            flows.insert(name.into_inner(), flow);
        }
        let (routes, route_spans) = self.routes(raw.routes, &served);
        let route_cycle = self.route_cycles(&routes, &route_spans, &served);
        let (triggers, trigger_spans) = self.triggers(raw.triggers, &served, classes);
        if !route_cycle {
            self.trigger_cycles(&routes, &triggers, &trigger_spans, &served);
        }
        PipelineConfig {
            kinds: flows,
            routes,
            triggers,
        }
    }

    fn kind_flow(
        &mut self,
        name: &Spanned<String>,
        kind: RawKind,
        served: &Served<'_>,
    ) -> KindFlow {
        let n = name.get_ref();
        let f = |key: &str| format!("kinds.{n}.{key}");
        let d = KindFlow::default();
        let max_loops = kind.max_loops.as_ref().map_or(d.max_loops, |v| {
            let x = *v.get_ref();
            if x > MAX_LOOPS {
                self.error(
                    v.span(),
                    f("max_loops"),
                    format!("{x} is outside 0..={MAX_LOOPS}"),
                );
            }
            x
        });
        let refine_kind = kind.refine_kind.map(|r| {
            if r.get_ref() == n {
                self.error(
                    r.span(),
                    f("refine_kind"),
                    format!("{n:?} is this kind itself: a loopback re-enters its own kind by default, so remove refine_kind"),
                );
            } else {
                served.check(self, &r, &f("refine_kind"));
            }
            r.into_inner()
        });
        let min_improvement = kind.min_improvement.map(|m| {
            let x = *m.get_ref();
            if !(x.is_finite() && x >= 0.0) {
                self.error(
                    m.span(),
                    f("min_improvement"),
                    format!("{x} must be a finite number >= 0 (the least score gain that keeps a loop going)"),
                );
            }
            x
        });
        let deterministic = kind.deterministic.as_ref().is_some_and(|b| *b.get_ref());
        let cache = match kind.cache {
            Some(c) if !deterministic => {
                self.error(
                    c.span(),
                    f("cache"),
                    "a cache is only for deterministic kinds: add `deterministic = true` or remove `cache`",
                );
                None
            }
            Some(c) => Some(self.cache(c.into_inner(), &f("cache"))),
            None => deterministic.then(CacheConfig::default),
        };
        let fan_in = match kind.fan_in {
            None => d.fan_in,
            Some(fi) => match fi.get_ref() {
                RawFanIn::All => FanIn::All,
                RawFanIn::Any => FanIn::Any,
                RawFanIn::AtLeast(k) => {
                    if !(1..=MAX_AT_LEAST).contains(k) {
                        self.error(
                            fi.span(),
                            f("fan_in.at_least"),
                            format!("{k} is outside 1..={MAX_AT_LEAST}"),
                        );
                    }
                    FanIn::AtLeast(u32::try_from(*k).unwrap_or(u32::MAX))
                }
            },
        };
        KindFlow {
            max_loops,
            refine_kind,
            min_improvement,
            deterministic,
            cache,
            fan_in,
            child_failure: kind.child_failure.unwrap_or(d.child_failure),
        }
    }

    fn cache(&mut self, raw: RawCache, field: &str) -> CacheConfig {
        let d = CacheConfig::default();
        let ttl = self.nonzero(raw.ttl.as_ref(), &format!("{field}.ttl"), d.ttl);
        let disk = match raw.disk_dir {
            None => {
                if let Some(m) = &raw.disk_max_bytes {
                    self.error(
                        m.span(),
                        format!("{field}.disk_max_bytes"),
                        "`disk_max_bytes` needs `disk_dir`: set disk_dir or remove disk_max_bytes",
                    );
                }
                None
            }
            Some(dir) => {
                self.no_nul(&dir, &format!("{field}.disk_dir"));
                if dir.get_ref().is_empty() {
                    self.error(
                        dir.span(),
                        format!("{field}.disk_dir"),
                        "is empty: give a directory or remove the key",
                    );
                }
                let max = raw
                    .disk_max_bytes
                    .as_ref()
                    .map_or(DEFAULT_DISK_CACHE_MAX_BYTES, |m| {
                        let v = m.get_ref().0;
                        if v < 4096 {
                            self.error(
                                m.span(),
                                format!("{field}.disk_max_bytes"),
                                format!("{v} bytes is too small: at least \"4KiB\""),
                            );
                        }
                        v
                    });
                Some(DiskCacheConfig {
                    dir: self.resolve(dir.get_ref()),
                    max_bytes: max,
                })
            }
        };
        CacheConfig {
            max_bytes: raw.max_bytes.map_or(d.max_bytes, |m| m.get_ref().0),
            ttl,
            disk,
        }
    }

    fn routes(
        &mut self,
        raw: Option<Spanned<Vec<Spanned<RawRoute>>>>,
        served: &Served<'_>,
    ) -> (Vec<RouteConfig>, Vec<Range<usize>>) {
        let mut out: Vec<RouteConfig> = Vec::new();
        let mut spans = Vec::new();
        let Some(raw) = raw else {
            return (out, spans);
        };
        for (i, r) in raw.into_inner().into_iter().enumerate() {
            let r = r.into_inner();
            let f = |key: &str| format!("route[{i}].{key}");
            let from_ok = served.check(self, &r.from, &f("from"));
            let to_ok = served.check(self, &r.to, &f("to"));
            let on = match &r.on {
                None => RouteOn::Ok,
                Some(on) => match on.get_ref().as_str() {
                    "ok" => RouteOn::Ok,
                    "err" => RouteOn::Err,
                    other => match other.strip_prefix("tag:") {
                        Some(tag) => {
                            let tag = Spanned::new(on.span(), tag.to_owned());
                            self.name(&tag, &f("on"), "tag");
                            RouteOn::Tag(tag.into_inner())
                        }
                        None => {
                            self.error(
                                on.span(),
                                f("on"),
                                format!("{other:?} is not an outcome: write \"ok\", \"err\" or \"tag:NAME\""),
                            );
                            RouteOn::Ok
                        }
                    },
                },
            };
            let route = RouteConfig {
                from: r.from.get_ref().clone(),
                to: r.to.get_ref().clone(),
                on,
                on_failure: r.on_failure.unwrap_or(FailurePolicy::FailParent),
            };
            if from_ok && to_ok && route.from == route.to {
                self.error(
                    r.to.span(),
                    f("to"),
                    format!(
                        "a route cannot lead from kind {:?} back to itself: use a loopback (max_loops, refine_kind) for loops",
                        route.from
                    ),
                );
            } else if out
                .iter()
                .any(|o| o.from == route.from && o.to == route.to && o.on == route.on)
            {
                self.error(
                    r.to.span(),
                    f("to"),
                    format!(
                        "route {} -> {} on {} is declared twice",
                        route.from, route.to, route.on
                    ),
                );
            }
            out.push(route);
            spans.push(r.from.span());
        }
        (out, spans)
    }

    /// Reports every cycle among the routes; true when there was one.
    fn route_cycles(
        &mut self,
        routes: &[RouteConfig],
        spans: &[Range<usize>],
        served: &Served<'_>,
    ) -> bool {
        let edges: Vec<(usize, usize, usize)> = routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((served.index(&r.from)?, served.index(&r.to)?, i)))
            .filter(|(a, b, _)| a != b)
            .collect();
        let cycles = served.cycles(edges.iter().map(|(a, b, _)| (*a, *b)));
        for cycle in &cycles {
            // Blame the first route of the cycle: from cycle[0] to cycle[1].
            let next = cycle.get(1).copied().unwrap_or(cycle[0]);
            let Some(&(_, _, i)) = edges.iter().find(|(a, b, _)| *a == cycle[0] && *b == next)
            else {
                continue;
            };
            self.error(
                spans[i].clone(),
                format!("route[{i}].from"),
                format!(
                    "route cycle: {}: routes may not form a loop; use a loopback (max_loops, refine_kind) for feedback loops",
                    served.path(cycle)
                ),
            );
        }
        !cycles.is_empty()
    }

    fn triggers(
        &mut self,
        raw: Option<Spanned<Vec<Spanned<RawTrigger>>>>,
        served: &Served<'_>,
        classes: &[ClassConfig],
    ) -> (Vec<TriggerConfig>, Vec<Range<usize>>) {
        let mut out: Vec<TriggerConfig> = Vec::new();
        let mut spans = Vec::new();
        let Some(raw) = raw else {
            return (out, spans);
        };
        for (i, t) in raw.into_inner().into_iter().enumerate() {
            let table = t.span();
            let t = t.into_inner();
            let f = |key: &str| format!("trigger[{i}].{key}");
            self.name(&t.name, &f("name"), "trigger");
            if out.iter().any(|o| o.name == *t.name.get_ref()) {
                self.error(
                    t.name.span(),
                    f("name"),
                    format!("trigger {:?} is declared twice", t.name.get_ref()),
                );
            }
            let when = self.trigger_when(&t, table, i, served);
            spans.push(
                t.on_complete
                    .as_ref()
                    .map_or_else(|| t.name.span(), Spanned::span),
            );
            let submit = t.submit.into_inner();
            served.check(self, &submit.kind, &f("submit.kind"));
            let class = match &submit.priority {
                None => classes.len().saturating_sub(1),
                Some(p) => classes
                    .iter()
                    .position(|c| c.name == *p.get_ref())
                    .unwrap_or_else(|| {
                        let known: Vec<&str> = classes.iter().map(|c| c.name.as_str()).collect();
                        self.error(
                            p.span(),
                            f("submit.priority"),
                            format!(
                                "unknown class {:?} (classes: {})",
                                p.get_ref(),
                                known.join(", ")
                            ),
                        );
                        0
                    }),
            };
            out.push(TriggerConfig {
                name: t.name.into_inner(),
                when: when.unwrap_or(TriggerWhen::Event(String::new())),
                submit: TriggerSubmit {
                    kind: submit.kind.into_inner(),
                    payload: submit.payload.map(|p| p.into_inner().into_bytes()),
                    class,
                },
            });
        }
        (out, spans)
    }

    fn trigger_when(
        &mut self,
        t: &RawTrigger,
        table: Range<usize>,
        i: usize,
        served: &Served<'_>,
    ) -> Option<TriggerWhen> {
        let f = |key: &str| format!("trigger[{i}].{key}");
        let given: Vec<(&str, Range<usize>)> = [
            ("every", t.every.as_ref().map(Spanned::span)),
            ("cron", t.cron.as_ref().map(Spanned::span)),
            ("on_complete", t.on_complete.as_ref().map(Spanned::span)),
            ("on_event", t.on_event.as_ref().map(Spanned::span)),
            ("on_file", t.on_file.as_ref().map(Spanned::span)),
        ]
        .into_iter()
        .filter_map(|(k, s)| Some((k, s?)))
        .collect();
        if given.is_empty() {
            self.error(
                table,
                format!("trigger[{i}]"),
                "says nothing about when it fires: give one of every, cron, on_complete, on_event or on_file",
            );
            return None;
        }
        for (key, span) in given.iter().skip(1) {
            self.error(
                span.clone(),
                f(key),
                format!(
                    "a trigger fires on one thing: it already has `{}`, so remove `{key}` (or split it into two triggers)",
                    given[0].0
                ),
            );
        }
        if t.on_complete.is_none() {
            if let Some(b) = &t.on_failure {
                self.error(
                    b.span(),
                    f("on_failure"),
                    "`on_failure` only goes with `on_complete`",
                );
            }
        }
        if let Some(every) = &t.every {
            let d = self.nonzero(Some(every), &f("every"), every.get_ref().0);
            return Some(TriggerWhen::Every(d));
        }
        if let Some(cron) = &t.cron {
            return match CronSchedule::parse(cron.get_ref()) {
                Ok(s) => Some(TriggerWhen::Cron(s)),
                Err(e) => {
                    self.error(cron.span(), f("cron"), e);
                    None
                }
            };
        }
        if let Some(kind) = &t.on_complete {
            served.check(self, kind, &f("on_complete"));
            return Some(TriggerWhen::Complete {
                kind: kind.get_ref().clone(),
                on_failure: t.on_failure.as_ref().is_some_and(|b| *b.get_ref()),
            });
        }
        if let Some(event) = &t.on_event {
            self.name(event, &f("on_event"), "event");
            return Some(TriggerWhen::Event(event.get_ref().clone()));
        }
        let file = t.on_file.as_ref()?.get_ref();
        self.no_nul(&file.dir, &f("on_file.dir"));
        if file.dir.get_ref().is_empty() {
            self.error(
                file.dir.span(),
                f("on_file.dir"),
                "is empty: give the directory to watch",
            );
        }
        let pattern = file.pattern.as_ref().map_or_else(
            || "*".to_owned(),
            |p| {
                let v = p.get_ref();
                if v.is_empty() || v.contains('/') || v.contains('\0') {
                    self.error(
                        p.span(),
                        f("on_file.pattern"),
                        format!(
                            "invalid pattern {v:?}: a file-name glob such as \"*.json\" (no '/')"
                        ),
                    );
                }
                v.clone()
            },
        );
        Some(TriggerWhen::File {
            dir: self.resolve(file.dir.get_ref()),
            pattern,
        })
    }

    /// Completion triggers that would fire themselves again, alone or through routes.
    fn trigger_cycles(
        &mut self,
        routes: &[RouteConfig],
        triggers: &[TriggerConfig],
        spans: &[Range<usize>],
        served: &Served<'_>,
    ) {
        let route_edges = routes
            .iter()
            .filter_map(|r| Some((served.index(&r.from)?, served.index(&r.to)?)));
        let trigger_edges: Vec<(usize, usize, usize)> = triggers
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match &t.when {
                TriggerWhen::Complete { kind, .. } => {
                    Some((served.index(kind)?, served.index(&t.submit.kind)?, i))
                }
                _ => None,
            })
            .collect();
        let mut blamed = vec![false; triggers.len()];
        for &(a, b, i) in &trigger_edges {
            if a == b {
                blamed[i] = true;
                let path = format!("{} -> {}", served.name(a), served.name(a));
                self.trigger_loop(i, &triggers[i], spans[i].clone(), path);
            }
        }
        let edges: Vec<(usize, usize)> = route_edges
            .chain(trigger_edges.iter().map(|(a, b, _)| (*a, *b)))
            .filter(|(a, b)| a != b)
            .collect();
        for cycle in served.cycles(edges.into_iter()) {
            let steps = cycle
                .iter()
                .zip(cycle.iter().cycle().skip(1))
                .map(|(a, b)| (*a, *b));
            let culprit = steps.into_iter().find_map(|(a, b)| {
                trigger_edges
                    .iter()
                    .find(|(x, y, i)| *x == a && *y == b && !blamed[*i])
                    .map(|e| e.2)
            });
            if let Some(i) = culprit {
                blamed[i] = true;
                self.trigger_loop(i, &triggers[i], spans[i].clone(), served.path(&cycle));
            }
        }
    }

    fn trigger_loop(&mut self, i: usize, t: &TriggerConfig, span: Range<usize>, path: String) {
        self.error(
            span,
            format!("trigger[{i}].on_complete"),
            format!(
                "trigger {:?} would fire itself again ({path}), forever: completion triggers and routes may not form a loop",
                t.name
            ),
        );
    }
}

/// The served kinds, with indices for the cycle search.
struct Served<'a> {
    names: Vec<&'a str>,
}

impl<'a> Served<'a> {
    fn new(kinds: &'a BTreeMap<String, KindConfig>) -> Self {
        Self {
            names: kinds.keys().map(String::as_str).collect(),
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.names.binary_search(&name).ok()
    }

    fn name(&self, i: usize) -> &str {
        self.names[i]
    }

    /// Checks that `kind` is served; reports it otherwise. True when served.
    fn check(&self, c: &mut Checker<'_>, kind: &Spanned<String>, field: &str) -> bool {
        if self.index(kind.get_ref()).is_some() {
            return true;
        }
        let served = if self.names.is_empty() {
            "none".to_owned()
        } else {
            self.names.join(", ")
        };
        c.error(
            kind.span(),
            field,
            format!(
                "no worker serves kind {:?} (served: {served}); add it to a worker's `kinds`",
                kind.get_ref()
            ),
        );
        false
    }

    fn cycles(&self, edges: impl Iterator<Item = (usize, usize)>) -> Vec<Vec<usize>> {
        let mut adj = vec![Vec::new(); self.names.len()];
        for (a, b) in edges {
            if !adj[a].contains(&b) {
                adj[a].push(b);
            }
        }
        graph::cycles(&adj)
    }

    /// `a -> b -> a`.
    fn path(&self, cycle: &[usize]) -> String {
        let mut names: Vec<&str> = cycle.iter().map(|&i| self.names[i]).collect();
        names.push(self.names[cycle[0]]);
        names.join(" -> ")
    }
}
