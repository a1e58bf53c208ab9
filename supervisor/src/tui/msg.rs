//! What flows in and out of the model: ampd's answers ([`Snapshot`]), updates from the polling
//! thread ([`Update`]), decoded key presses ([`Input`]) and the requests they lead to
//! ([`Command`]).

use std::time::Duration;

use serde::Deserialize;

use super::tune::Adaptive;
use super::TopError;
use crate::control::proto::{EventRecord, StatusData};

/// One worker as the `workers` response describes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WorkerSample {
    /// Unit name.
    pub name: String,
    /// Lifecycle state.
    pub state: String,
    /// Current pid.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Restarts so far.
    #[serde(default)]
    pub restarts: u32,
    /// Tasks in flight on it.
    #[serde(default)]
    pub in_flight: u64,
    /// Successful completions so far.
    #[serde(default)]
    pub completed_ok: u64,
    /// Failed completions so far.
    #[serde(default)]
    pub completed_err: u64,
    /// CPU time used by its current process, in seconds.
    #[serde(default)]
    pub cpu_s: Option<f64>,
    /// Resident memory of its current process.
    #[serde(default)]
    pub rss_bytes: Option<u64>,
    /// Its last exit, in words.
    #[serde(default)]
    pub last_exit: Option<String>,
}

/// One (kind, worker) row of the `stats` response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StatRow {
    /// Kind name.
    #[serde(default)]
    pub kind: Option<String>,
    /// Worker (unit) name.
    #[serde(default)]
    pub worker: Option<String>,
    /// Completions so far (successes and failures).
    #[serde(default)]
    pub completed: u64,
    /// 99th percentile of the task latency since the first completion, in ms.
    #[serde(default)]
    pub p99_ms: f64,
}

/// One poll of ampd: the `data` of its `status`, `workers`, `stats`, `events` and
/// `tune show` responses.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// `status`.
    pub status: StatusData,
    /// `workers`.
    pub workers: Vec<WorkerSample>,
    /// `stats`.
    pub stats: Vec<StatRow>,
    /// `events` (only those newer than the previous poll's, or all of them).
    pub events: Vec<EventRecord>,
    /// `tune show`, or why the adaptive controller could not be read (an older ampd refuses
    /// the request). [`Snapshot::from_data`] leaves it at "not asked";
    /// [`Snapshot::with_tune`] fills it in.
    pub adaptive: Result<Adaptive, String>,
}

impl Snapshot {
    /// Parses the `data` members of the four responses that must succeed.
    ///
    /// # Errors
    /// [`TopError::Malformed`] naming the response whose shape is not the expected one.
    pub fn from_data(
        status: serde_json::Value,
        workers: &serde_json::Value,
        stats: &serde_json::Value,
        events: &serde_json::Value,
    ) -> Result<Self, TopError> {
        fn field<T: serde::de::DeserializeOwned>(
            what: &'static str,
            v: &serde_json::Value,
            key: &str,
        ) -> Result<T, TopError> {
            let inner = v.get(key).ok_or_else(|| TopError::Malformed {
                what,
                detail: format!("no `{key}` member"),
            })?;
            T::deserialize(inner).map_err(|e| TopError::Malformed {
                what,
                detail: e.to_string(),
            })
        }
        Ok(Self {
            status: serde_json::from_value(status).map_err(|e| TopError::Malformed {
                what: "status",
                detail: e.to_string(),
            })?,
            workers: field("workers", workers, "workers")?,
            stats: field("stats", stats, "stats")?,
            events: field("events", events, "events")?,
            adaptive: Err("`tune show` not asked".to_owned()),
        })
    }

    /// Adds the `tune show` answer: its `data`, or why there is none. Never fails: whatever
    /// does not fit makes the controller "unavailable" in the view, the rest of the poll
    /// stands.
    #[must_use]
    pub fn with_tune(mut self, answer: Result<serde_json::Value, String>) -> Self {
        self.adaptive = Adaptive::from_answer(answer);
        self
    }
}

/// What the model is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// A successful poll, taken `at` (time since `top` started).
    Snapshot {
        /// The poll.
        snap: Box<Snapshot>,
        /// When it was taken.
        at: Duration,
    },
    /// A poll failed (ampd unreachable, or an answer that made no sense).
    Down {
        /// Why, in words.
        error: String,
        /// When.
        at: Duration,
    },
    /// A drain or restart requested from the keyboard was answered.
    Action {
        /// `drain` or `restart`.
        verb: &'static str,
        /// The worker.
        name: String,
        /// ampd's answer: accepted, or why not.
        result: Result<(), String>,
    },
}

/// A key press, already decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Select the row above.
    Up,
    /// Select the row below.
    Down,
    /// Sort by the next column.
    NextSort,
    /// Drain the selected worker.
    Drain,
    /// Restart the selected worker.
    Restart,
    /// Leave.
    Quit,
}

/// What the model asks the shell to do in answer to an [`Input`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send `{"cmd":"drain","name":...}`.
    Drain(String),
    /// Send `{"cmd":"restart","name":...}`.
    Restart(String),
    /// Leave `top`.
    Quit,
}

impl Command {
    /// The control request for a drain or restart (`None` for [`Command::Quit`]).
    #[must_use]
    pub fn request(&self) -> Option<serde_json::Value> {
        match self {
            Self::Drain(name) => Some(serde_json::json!({"cmd": "drain", "name": name})),
            Self::Restart(name) => Some(serde_json::json!({"cmd": "restart", "name": name})),
            Self::Quit => None,
        }
    }

    /// `drain`, `restart` or `quit`.
    #[must_use]
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Drain(_) => "drain",
            Self::Restart(_) => "restart",
            Self::Quit => "quit",
        }
    }
}
