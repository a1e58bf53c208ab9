//! `ipc = true` (rings, heartbeats, kinds, credit window) versus `ipc = false` (readiness
//! probe): the keys of one mode are refused in the other.

use super::Checker;
use crate::config::model::{
    IpcConfig, RingConfig, SupervisorConfig, WorkerMode, DEFAULT_CONCURRENCY,
};
use crate::config::raw::RawWorker;
use crate::spec::ReadinessProbe;
use amp_shm_layout::{
    check_ring, max_record_limit, LayoutError, MAX_RING_CAPACITY, MIN_RING_CAPACITY,
};
use toml::Spanned;

impl Checker<'_> {
    pub(super) fn mode(
        &mut self,
        raw: &mut RawWorker,
        n: &str,
        sup: &SupervisorConfig,
    ) -> WorkerMode {
        let f = |key: &str| format!("workers.{n}.{key}");
        let ipc = raw.ipc.as_ref().is_none_or(|b| *b.get_ref());
        let mode = if ipc {
            if let Some(p) = &raw.probe {
                self.error(
                    p.span(),
                    f("probe"),
                    "a probe is only for plain processes (ipc = false); amp-ipc workers report readiness in their handshake",
                );
            }
            let ring = self.ring(raw.ring.take(), n);
            let hb_interval = self.nonzero(
                raw.heartbeat_interval.as_ref(),
                &f("heartbeat_interval"),
                sup.heartbeat_interval,
            );
            let hb_timeout = self.nonzero(
                raw.heartbeat_timeout.as_ref(),
                &f("heartbeat_timeout"),
                sup.heartbeat_timeout,
            );
            let blame = raw
                .heartbeat_timeout
                .as_ref()
                .map(|s| (s.span(), "heartbeat_timeout"));
            let blame = blame.or_else(|| {
                raw.heartbeat_interval
                    .as_ref()
                    .map(|s| (s.span(), "heartbeat_interval"))
            });
            if let Some((span, key)) = blame {
                self.heartbeat_order(span, &f(key), hb_interval, hb_timeout);
            }
            let mut kinds: Vec<String> = Vec::new();
            if let Some(list) = raw.kinds.take() {
                for k in list.into_inner() {
                    self.name(&k, &f("kinds"), "kind");
                    if !kinds.contains(k.get_ref()) {
                        kinds.push(k.into_inner());
                    } else {
                        self.error(
                            k.span(),
                            f("kinds"),
                            format!("kind {:?} is listed twice", k.get_ref()),
                        );
                    }
                }
            }
            let concurrency = match raw.concurrency.take() {
                None => DEFAULT_CONCURRENCY,
                Some(c) => {
                    let v = *c.get_ref();
                    if !(1..=65_536).contains(&v) {
                        self.error(
                            c.span(),
                            f("concurrency"),
                            format!("{v} is outside 1..=65536"),
                        );
                    }
                    v
                }
            };
            WorkerMode::Ipc(IpcConfig {
                kinds,
                ring,
                heartbeat_interval: hb_interval,
                heartbeat_timeout: hb_timeout,
                concurrency,
            })
        } else {
            let ipc_only = [
                ("kinds", raw.kinds.as_ref().map(Spanned::span)),
                ("ring", raw.ring.as_ref().map(Spanned::span)),
                (
                    "heartbeat_interval",
                    raw.heartbeat_interval.as_ref().map(Spanned::span),
                ),
                (
                    "heartbeat_timeout",
                    raw.heartbeat_timeout.as_ref().map(Spanned::span),
                ),
                ("concurrency", raw.concurrency.as_ref().map(Spanned::span)),
            ];
            for (key, span) in ipc_only {
                if let Some(span) = span {
                    let hint = if key == "kinds" {
                        ": a plain process cannot serve tasks"
                    } else {
                        ""
                    };
                    self.error(
                        span,
                        f(key),
                        format!(
                            "only amp-ipc workers take `{key}`, and this one has ipc = false{hint}"
                        ),
                    );
                }
            }
            let probe = match raw.probe.take() {
                None => ReadinessProbe::Started,
                Some(p) => {
                    match p.get_ref() {
                        ReadinessProbe::Tcp { port: 0, .. } => {
                            self.error(p.span(), f("probe.port"), "port 0 cannot be connected to: give the port the process listens on");
                        }
                        ReadinessProbe::Tcp { host, .. } if host.is_empty() => {
                            self.error(
                                p.span(),
                                f("probe.host"),
                                "is empty: give a host name or address",
                            );
                        }
                        ReadinessProbe::Exec { command } if command.trim().is_empty() => {
                            self.error(
                                p.span(),
                                f("probe.command"),
                                "is empty: give a shell command that exits 0 once ready",
                            );
                        }
                        _ => {}
                    }
                    p.into_inner()
                }
            };
            WorkerMode::Plain { probe }
        };
        mode
    }

    pub(super) fn ring(
        &mut self,
        raw: Option<Spanned<crate::config::raw::RawRing>>,
        worker: &str,
    ) -> RingConfig {
        let d = RingConfig::default();
        let Some(raw) = raw else { return d };
        let table = raw.span();
        let raw = raw.into_inner();
        let out = RingConfig {
            tasks: raw.tasks.as_ref().map_or(d.tasks, |s| s.get_ref().0),
            completions: raw
                .completions
                .as_ref()
                .map_or(d.completions, |s| s.get_ref().0),
            max_record: raw
                .max_record
                .as_ref()
                .map_or(d.max_record, |s| s.get_ref().0),
        };
        for (ring, capacity, span) in [
            ("tasks", out.tasks, &raw.tasks),
            ("completions", out.completions, &raw.completions),
        ] {
            match check_ring(ring, capacity, out.max_record) {
                Ok(()) => {}
                Err(LayoutError::BadCapacity { found, .. }) => self.error(
                    span.as_ref().map_or(table.clone(), Spanned::span),
                    format!("workers.{worker}.ring.{ring}"),
                    format!(
                        "{found} bytes is not a power of two in {MIN_RING_CAPACITY}..={MAX_RING_CAPACITY}; \
                         use e.g. \"64KiB\" or \"1MiB\""
                    ),
                ),
                Err(LayoutError::BadMaxRecord { found, .. }) => {
                    let limit = max_record_limit(capacity);
                    let (blame, key) = match (&raw.max_record, span) {
                        (Some(m), _) => (m.span(), "max_record"),
                        (None, Some(s)) => (s.span(), ring),
                        (None, None) => (table.clone(), "max_record"),
                    };
                    let default = if raw.max_record.is_none() { " (the default)" } else { "" };
                    let message = if found == 0 {
                        "max_record is 0: a ring must carry records of at least 1 byte".to_owned()
                    } else {
                        format!(
                            "max_record {found} bytes{default} does not fit the {ring} ring of {capacity} bytes \
                             (at most {limit}): raise ring.{ring} or lower ring.max_record"
                        )
                    };
                    self.error(blame, format!("workers.{worker}.ring.{key}"), message);
                }
                Err(other) => self.error(table.clone(), format!("workers.{worker}.ring"), other.to_string()),
            }
        }
        out
    }
}
