//! Ordering the worker table.

use std::cmp::Ordering;

use super::model::WorkerRow;

/// The column the worker table is sorted by (`s` cycles through them in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// Name, A→Z.
    #[default]
    Name,
    /// State, troubled ones (failed, backoff, stopping…) first, ready last.
    State,
    /// Restarts, most first.
    Restarts,
    /// Tasks in flight, most first.
    InFlight,
    /// Completions per second, most first.
    Throughput,
    /// p99 latency, slowest first.
    P99,
    /// CPU%, busiest first.
    Cpu,
    /// Resident memory, largest first.
    Rss,
}

impl SortKey {
    /// Every key, in cycling order.
    pub const ALL: [Self; 8] = [
        Self::Name,
        Self::State,
        Self::Restarts,
        Self::InFlight,
        Self::Throughput,
        Self::P99,
        Self::Cpu,
        Self::Rss,
    ];

    /// The next key in the cycle.
    #[must_use]
    pub fn next(self) -> Self {
        let i = Self::ALL.iter().position(|k| *k == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    /// Short name for the header.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::State => "state",
            Self::Restarts => "restarts",
            Self::InFlight => "in-flight",
            Self::Throughput => "throughput",
            Self::P99 => "p99",
            Self::Cpu => "cpu",
            Self::Rss => "rss",
        }
    }

    /// Whether the order is ascending (name, state) rather than largest first.
    #[must_use]
    pub fn ascending(self) -> bool {
        matches!(self, Self::Name | Self::State)
    }
}

/// Troubled states first, ready last.
fn state_rank(s: &str) -> u8 {
    match s {
        "failed" => 0,
        "backoff" => 1,
        "stopping" => 2,
        "draining" => 3,
        "spawning" => 4,
        "starting" => 5,
        "pending" => 6,
        "stopped" => 7,
        "completed" => 8,
        "ready" => 9,
        _ => 10,
    }
}

/// Largest first, unknown last.
fn desc<T: PartialOrd>(a: Option<T>, b: Option<T>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// The display order of two rows under `key`; ties go by name.
pub(super) fn compare(key: SortKey, a: &WorkerRow, b: &WorkerRow) -> Ordering {
    let primary = match key {
        SortKey::Name => Ordering::Equal,
        SortKey::State => state_rank(&a.state).cmp(&state_rank(&b.state)),
        SortKey::Restarts => b.restarts.cmp(&a.restarts),
        SortKey::InFlight => b.in_flight.cmp(&a.in_flight),
        SortKey::Throughput => desc(a.throughput, b.throughput),
        SortKey::P99 => desc(a.p99_ms, b.p99_ms),
        SortKey::Cpu => desc(a.cpu_pct, b.cpu_pct),
        SortKey::Rss => desc(a.rss_bytes, b.rss_bytes),
    };
    primary.then_with(|| a.name.cmp(&b.name))
}
