//! The `[supervisor]` section.

use super::Checker;
use crate::config::model::{Principal, SupervisorConfig};
use crate::config::raw::RawSupervisor;
use std::net::SocketAddr;
use toml::Spanned;

/// Longest Unix socket path (`sun_path` holds 108 bytes including the NUL).
const MAX_SOCKET_PATH: usize = 107;

impl Checker<'_> {
    pub(super) fn supervisor(&mut self, raw: Option<Spanned<RawSupervisor>>) -> SupervisorConfig {
        let mut out = SupervisorConfig::default();
        let Some(raw) = raw else { return out };
        let raw = raw.into_inner();
        if let Some(sock) = &raw.control_socket {
            self.no_nul(sock, "supervisor.control_socket");
            let path = self.resolve(sock.get_ref());
            let len = path.as_os_str().len();
            if sock.get_ref().is_empty() {
                self.error(
                    sock.span(),
                    "supervisor.control_socket",
                    "is empty: give a path or remove the key",
                );
            } else if len > MAX_SOCKET_PATH {
                self.error(
                    sock.span(),
                    "supervisor.control_socket",
                    format!("path is {len} bytes but Unix socket paths are limited to {MAX_SOCKET_PATH}"),
                );
            }
            out.control_socket = Some(path);
        }
        if let Some(prefix) = raw.shm_prefix {
            let p = prefix.get_ref();
            let ok = (1..=32).contains(&p.len())
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                self.error(
                    prefix.span(),
                    "supervisor.shm_prefix",
                    format!("invalid prefix {p:?}: use 1 to 32 characters from A-Z, a-z, 0-9, '_' and '-'"),
                );
            }
            out.shm_prefix = prefix.into_inner();
        }
        out.log_format = raw.log_format.unwrap_or(out.log_format);
        out.on_startup_failure = raw.on_startup_failure.unwrap_or(out.on_startup_failure);
        out.ready_timeout = self.nonzero(
            raw.ready_timeout.as_ref(),
            "supervisor.ready_timeout",
            out.ready_timeout,
        );
        out.stop_timeout = self.nonzero(
            raw.stop_timeout.as_ref(),
            "supervisor.stop_timeout",
            out.stop_timeout,
        );
        out.heartbeat_interval = self.nonzero(
            raw.heartbeat_interval.as_ref(),
            "supervisor.heartbeat_interval",
            out.heartbeat_interval,
        );
        out.heartbeat_timeout = self.nonzero(
            raw.heartbeat_timeout.as_ref(),
            "supervisor.heartbeat_timeout",
            out.heartbeat_timeout,
        );
        out.retry_backoff = self.nonzero(
            raw.retry_backoff.as_ref(),
            "supervisor.retry_backoff",
            out.retry_backoff,
        );
        out.retry_backoff_max = self.nonzero(
            raw.retry_backoff_max.as_ref(),
            "supervisor.retry_backoff_max",
            out.retry_backoff_max,
        );
        if let Some(b) = raw.retry_budget.as_ref() {
            let b = b.get_ref();
            let d = out.retry_budget;
            out.retry_budget = crate::delivery::RetryBudget {
                ratio: self.non_negative(
                    b.ratio.as_ref(),
                    "supervisor.retry_budget.ratio",
                    d.ratio,
                ),
                min_per_sec: self.non_negative(
                    b.min_per_sec.as_ref(),
                    "supervisor.retry_budget.min_per_sec",
                    d.min_per_sec,
                ),
                capacity: self.non_negative(
                    b.capacity.as_ref(),
                    "supervisor.retry_budget.capacity",
                    d.capacity,
                ),
            };
        }
        let poison = self.in_range(
            raw.poison_deaths.as_ref(),
            "supervisor.poison_deaths".to_owned(),
            1..=100,
            out.poison_deaths.into(),
        );
        out.poison_deaths = u32::try_from(poison).unwrap_or(out.poison_deaths);
        let dlq_limit = self.in_range(
            raw.dlq_limit.as_ref(),
            "supervisor.dlq_limit".to_owned(),
            1..=100_000_000,
            out.dlq_limit as u64,
        );
        out.dlq_limit = usize::try_from(dlq_limit).unwrap_or(out.dlq_limit);
        out.seed = raw.seed.as_ref().map(|s| *s.get_ref());
        if out.retry_backoff > out.retry_backoff_max {
            match (raw.retry_backoff.as_ref(), raw.retry_backoff_max.as_ref()) {
                // Only the maximum given: the default first delay follows it down.
                (None, Some(_)) => out.retry_backoff = out.retry_backoff_max,
                (Some(s), _) => self.error(
                    s.span(),
                    "supervisor.retry_backoff",
                    format!(
                        "{:?} is above retry_backoff_max = {:?}",
                        out.retry_backoff, out.retry_backoff_max
                    ),
                ),
                (None, None) => {}
            }
        }
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
            self.heartbeat_order(
                span,
                &format!("supervisor.{key}"),
                out.heartbeat_interval,
                out.heartbeat_timeout,
            );
        }
        if let Some(addr) = raw.metrics_addr {
            match parse_metrics_addr(addr.get_ref()) {
                Ok(a) => out.metrics_addr = Some(a),
                Err(e) => self.error(addr.span(), "supervisor.metrics_addr", e),
            }
        }
        if let Some(group) = &raw.control_group {
            match self.principal(Some(group), "supervisor.control_group") {
                Some(Principal::Id(_)) => self.error(
                    group.span(),
                    "supervisor.control_group",
                    "expected a group name, not a numeric id",
                ),
                Some(Principal::Name(n)) => out.control_group = Some(n),
                None => {}
            }
        }
        out
    }
}

/// `"127.0.0.1:9090"`, `"[::1]:9090"`, or a bare port (`"9090"`, `":9090"`) on loopback.
fn parse_metrics_addr(s: &str) -> Result<SocketAddr, String> {
    let addr = s.parse::<SocketAddr>().ok().or_else(|| {
        let port = s.strip_prefix(':').unwrap_or(s).parse::<u16>().ok()?;
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    });
    match addr {
        Some(a) if a.port() != 0 => Ok(a),
        Some(_) => Err("port 0 is not allowed: pick the port to serve metrics on".to_owned()),
        None => Err(format!("invalid address {s:?}: expected \"HOST:PORT\" (e.g. \"127.0.0.1:9090\") or a port (\"9090\", on loopback)")),
    }
}
