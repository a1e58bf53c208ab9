//! One `[workers.NAME]` table, and the list of them in file order.

use super::{Checker, Pending};
use crate::config::model::{Program, SupervisorConfig, WorkerConfig};
use crate::config::raw::{RawDeps, RawWorker};
use crate::spec::{DependencyCondition, Intensity, RestartPolicy};
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, BTreeSet};
use toml::Spanned;

/// Most replicas of one worker.
pub(super) const MAX_REPLICAS: u32 = 1024;

impl Checker<'_> {
    pub(super) fn workers(
        &mut self,
        raw: Option<Spanned<BTreeMap<Spanned<String>, Spanned<RawWorker>>>>,
        sup: &SupervisorConfig,
    ) -> Vec<WorkerConfig> {
        let (span, map) = match raw {
            Some(m) => (m.span(), m.into_inner()),
            None => (0..0, BTreeMap::new()),
        };
        if map.is_empty() {
            self.error(
                span,
                "workers",
                "no workers: add at least one [workers.NAME] table with a `command`",
            );
            return Vec::new();
        }
        let mut entries: Vec<_> = map.into_iter().collect();
        entries.sort_by_key(|(name, _)| name.span().start);
        let mut workers = Vec::with_capacity(entries.len());
        let mut pending = Vec::with_capacity(entries.len());
        for (name, raw) in entries {
            let (w, p) = self.worker(name, raw.into_inner(), sup);
            workers.push(w);
            pending.push(p);
        }
        self.dependencies(&mut workers, &pending);
        workers
    }

    fn worker(
        &mut self,
        name: Spanned<String>,
        mut raw: RawWorker,
        sup: &SupervisorConfig,
    ) -> (WorkerConfig, Pending) {
        self.name(&name, &format!("workers.{}", name.get_ref()), "worker");
        let n = name.get_ref().clone();
        let f = |key: &str| format!("workers.{n}.{key}");
        // ipc-only keys or the probe, taken out of `raw` first.
        let mode = self.mode(&mut raw, &n, sup);

        // command, args, env, cwd
        self.no_nul(&raw.command, &f("command"));
        let cmd = raw.command.get_ref();
        let command = if cmd.contains('/') {
            Program::Path(self.resolve(cmd))
        } else {
            if cmd.trim().is_empty() {
                self.error(
                    raw.command.span(),
                    f("command"),
                    "is empty: give a program name or path",
                );
            } else if cmd.contains(char::is_whitespace) {
                self.error(
                    raw.command.span(),
                    f("command"),
                    format!("{cmd:?} contains whitespace: put the program in `command` and its arguments in `args`"),
                );
            }
            Program::Name(cmd.clone())
        };
        for arg in &raw.args {
            self.no_nul(arg, &f("args"));
        }
        let args = raw.args.into_iter().map(Spanned::into_inner).collect();
        let mut env = BTreeMap::new();
        for (key, value) in raw.env {
            let k = key.get_ref();
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                self.error(
                    key.span(),
                    f("env"),
                    format!("invalid variable name {k:?}: it must be non-empty without '=' or NUL"),
                );
            }
            self.no_nul(&value, &f(&format!("env.{k}")));
            env.insert(key.into_inner(), value.into_inner());
        }
        let cwd = raw.cwd.map(|c| {
            self.no_nul(&c, &f("cwd"));
            if c.get_ref().is_empty() {
                self.error(
                    c.span(),
                    f("cwd"),
                    "is empty: give a directory or remove the key",
                );
            }
            self.resolve(c.get_ref())
        });

        // replicas and dependencies
        let replicas = match raw.replicas {
            None => 1,
            Some(r) => {
                let v = *r.get_ref();
                if v == 0 {
                    self.error(
                        r.span(),
                        f("replicas"),
                        "must be at least 1 (to disable a worker, remove its table)",
                    );
                } else if v > MAX_REPLICAS {
                    self.error(
                        r.span(),
                        f("replicas"),
                        format!("{v} is too many: at most {MAX_REPLICAS}"),
                    );
                }
                v
            }
        };
        let deps = match raw.depends_on.map(Spanned::into_inner) {
            None => Vec::new(),
            Some(RawDeps::List(names)) => {
                let mut seen = BTreeSet::new();
                let mut out = Vec::new();
                for d in names {
                    if !seen.insert(d.get_ref().clone()) {
                        self.error(
                            d.span(),
                            f("depends_on"),
                            format!("{:?} is listed twice", d.get_ref()),
                        );
                        continue;
                    }
                    out.push((d, DependencyCondition::Ready));
                }
                out
            }
            Some(RawDeps::Table(entries)) => entries
                .into_iter()
                .map(|(d, c)| (d, c.into_inner()))
                .collect(),
        };

        // timing and restart policy
        let ready_timeout = self.nonzero(
            raw.ready_timeout.as_ref(),
            &f("ready_timeout"),
            sup.ready_timeout,
        );
        let stop_timeout = self.nonzero(
            raw.stop_timeout.as_ref(),
            &f("stop_timeout"),
            sup.stop_timeout,
        );
        let restart = raw.restart.unwrap_or(RestartPolicy::OnFailure);
        let backoff = self.backoff(raw.backoff, &f("backoff"));
        let intensity = match raw.intensity.map(Spanned::into_inner) {
            None => Intensity::default(),
            Some(i) => {
                let d = Intensity::default();
                Intensity {
                    max_restarts: i.max_restarts.unwrap_or(d.max_restarts),
                    window: self.nonzero(i.window.as_ref(), &f("intensity.window"), d.window),
                    on_exceeded: i.on_exceeded.unwrap_or(d.on_exceeded),
                }
            }
        };
        let stop_signal = raw.stop_signal.map_or(Signal::SIGTERM, |s| s.0);

        // process attributes
        let user = self.principal(raw.user.as_ref(), &f("user"));
        let group = self.principal(raw.group.as_ref(), &f("group"));
        let rlimits = raw.rlimits.map(|r| {
            if r.get_ref().nofile == Some(0) {
                self.error(
                    r.span(),
                    f("rlimits.nofile"),
                    "0 leaves the worker unable to open any file; raise it or remove it",
                );
            }
            r.into_inner()
        });
        let nice = raw.nice.map(|v| {
            let x = *v.get_ref();
            match i32::try_from(x) {
                Ok(x) if (-20..=19).contains(&x) => x,
                _ => {
                    self.error(v.span(), f("nice"), format!("{x} is outside -20..=19"));
                    0
                }
            }
        });
        let cpu_affinity = self.cpu_affinity(raw.cpu_affinity, &f("cpu_affinity"));
        let log = self.log(raw.log_file, raw.log_max_size, raw.log_keep, &n);

        let worker = WorkerConfig {
            name: n.clone(),
            command,
            args,
            env,
            cwd,
            replicas,
            depends_on: Vec::new(),
            ready_timeout,
            restart,
            backoff,
            intensity,
            stop_signal,
            stop_timeout,
            user,
            group,
            rlimits: rlimits.unwrap_or_default(),
            nice,
            cpu_affinity,
            log,
            mode,
        };
        (worker, Pending { name, deps })
    }
}
