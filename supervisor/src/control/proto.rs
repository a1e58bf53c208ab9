//! The control protocol: newline-delimited JSON over a Unix stream socket.
//!
//! Request: `{"v":1,"cmd":"status"}`. Response: `{"v":1,"ok":true,"data":{...}}` or
//! `{"v":1,"ok":false,"error":"..."}`. Unknown commands and unknown fields are refused with an
//! error naming them. See `docs/control-protocol.md`.

use serde::{Deserialize, Serialize};

/// Version of the control protocol.
pub const CONTROL_VERSION: u32 = 1;

/// Commands that take no arguments.
const UNIT_COMMANDS: &[&str] = &[
    "status",
    "shutdown",
    "attach",
    "dlq_list",
    "pause",
    "resume",
    "workers",
    "queues",
    "tasks",
    "stats",
    "metrics",
    "reload",
    "cache_stats",
    "cache_clear",
    "pipelines",
];

/// Longest request line accepted (bytes, without the newline).
pub const MAX_REQUEST_LINE: usize = 1 << 20;

/// Requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Every worker: state, pid, restarts, last exit, ready time.
    Status,
    /// Stop everything and exit.
    Shutdown,
    /// A client asks for its own segment (answered with two doorbell fds via `SCM_RIGHTS`).
    Attach,
    /// The client mapped its segment (ampd unlinks the name).
    Attached {
        /// Client id from the attach answer.
        client: u64,
    },
    /// Starts a stopped/failed worker (name or unit name).
    Start {
        /// Worker or unit name.
        name: String,
    },
    /// Stops a worker (its dependents too with `with_dependents`).
    Stop {
        /// Worker or unit name.
        name: String,
        /// Also stop what depends on it.
        #[serde(default)]
        with_dependents: bool,
    },
    /// Restarts a worker.
    Restart {
        /// Worker or unit name.
        name: String,
    },
    /// Stops feeding a worker, lets its in-flight tasks finish, then stops it.
    Drain {
        /// Worker or unit name.
        name: String,
    },
    /// Stops taking new submissions (queued and in-flight work continues).
    Pause,
    /// Takes submissions again.
    Resume,
    /// The last lines a worker printed.
    Logs {
        /// Unit name.
        name: String,
        /// How many lines (default 100).
        #[serde(default)]
        lines: Option<usize>,
        /// Keep the connection open and stream new lines.
        #[serde(default)]
        follow: bool,
    },
    /// Lifecycle and control events.
    Events {
        /// Keep the connection open and stream new events.
        #[serde(default)]
        follow: bool,
        /// Only events after this sequence number.
        #[serde(default)]
        since: Option<u64>,
    },
    /// Prometheus text exposition of every metric.
    Metrics,
    /// The adaptive controller: `show` its state and decisions, `apply` a proposed decision
    /// (advise mode), or set a kind's `mode` (off, advise, auto).
    Tune {
        /// `show`, `apply` or `mode`.
        op: String,
        /// Kind (for `mode`).
        #[serde(default)]
        kind: Option<String>,
        /// Decision id (for `apply`).
        #[serde(default)]
        id: Option<u64>,
        /// The mode (for `mode`).
        #[serde(default)]
        mode: Option<crate::adapt::Mode>,
    },
    /// Fires the triggers bound to an external event.
    Emit {
        /// Event name.
        event: String,
        /// Payload for the tasks the triggers submit (default: the trigger's own).
        #[serde(default)]
        payload: Option<String>,
    },
    /// Result-cache counters of deterministic kinds.
    CacheStats,
    /// Empties every result cache.
    CacheClear,
    /// Pipelines in progress, triggers and loop counters.
    Pipelines,
    /// Sets a worker's number of replicas (new ones start; surplus ones are drained first).
    Scale {
        /// Worker name.
        name: String,
        /// Replicas wanted.
        replicas: u32,
    },
    /// Re-reads the config file: starts added workers, drains and stops removed ones, restarts
    /// changed ones, scales those whose only change is `replicas`; the rest is untouched.
    Reload,
    /// Workers with their per-worker task counters.
    Workers,
    /// Queues per kind and class.
    Queues,
    /// Tasks in flight, per worker.
    Tasks,
    /// Per kind × worker: throughput, latency percentiles, errors.
    Stats,
    /// A kind's routing policy and router state (`kind` omitted: every kind).
    RouteGet {
        /// Kind name.
        #[serde(default)]
        kind: Option<String>,
    },
    /// Switches a kind's routing policy at runtime (nothing queued or in flight is lost).
    RouteSet {
        /// Kind name.
        kind: String,
        /// `round_robin`, `least_loaded`, `peak_ewma` or `learned`.
        policy: crate::config::RouterPolicy,
    },
    /// Dead-letter queue entries.
    DlqList,
    /// Re-runs dead-lettered tasks (`id` omitted: all).
    DlqRetry {
        /// Task id.
        #[serde(default)]
        id: Option<u64>,
    },
    /// Removes dead-lettered tasks (`id` omitted: all).
    DlqPurge {
        /// Task id.
        #[serde(default)]
        id: Option<u64>,
    },
    /// Submit one task.
    Submit {
        /// Kind name.
        kind: String,
        /// Priority class name (default: the lowest-weight class).
        #[serde(default)]
        priority: Option<String>,
        /// Payload as UTF-8 text.
        #[serde(default)]
        payload: Option<String>,
        /// Payload as base64 (for binary payloads).
        #[serde(default)]
        payload_b64: Option<String>,
        /// Answer only once the task finished (with its result).
        #[serde(default)]
        wait: bool,
        /// Deadline relative to intake, in ms.
        #[serde(default)]
        timeout_ms: Option<u64>,
        /// Idempotency key.
        #[serde(default)]
        idempotency_key: Option<String>,
    },
}

/// One worker's line in `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Unit name (`group` or `group#replica`).
    pub name: String,
    /// Lifecycle state.
    pub state: String,
    /// Current pid, if running.
    pub pid: Option<u32>,
    /// Restarts so far.
    pub restarts: u32,
    /// Last exit, in words (`exited with code 3`, `killed by SIGKILL`, `heartbeat timeout`).
    pub last_exit: Option<String>,
    /// Milliseconds from ampd's start to this worker's (latest) ready report.
    pub ready_ms: Option<u64>,
}

/// Response to `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusData {
    /// ampd's pid.
    pub pid: u32,
    /// Seconds since ampd started.
    pub uptime_s: f64,
    /// Whether ampd is shutting down.
    pub shutting_down: bool,
    /// Workers in dependency order.
    pub workers: Vec<WorkerStatus>,
    /// Events so far (oldest first, bounded), e.g. `ready echo`.
    pub events: Vec<EventRecord>,
    /// Task queues per kind.
    #[serde(default)]
    pub queues: Vec<QueueStatus>,
    /// Where every task is (delivery census).
    #[serde(default)]
    pub tasks: TaskCensus,
    /// Anomalies flagged at the last sample (consecutive failures, restart loops, slow outliers).
    #[serde(default)]
    pub anomalies: Vec<String>,
}

/// One kind's queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// Kind name.
    pub kind: String,
    /// Routing policy.
    pub policy: String,
    /// Queued tasks per class, `(class, depth)`.
    pub depth: Vec<(String, usize)>,
    /// Submissions refused because the queue was full.
    pub rejected: u64,
    /// Tasks dispatched so far.
    pub dispatched: u64,
    /// Tasks in flight.
    pub in_flight: u64,
}

/// Counts of tasks by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCensus {
    /// Waiting in a queue.
    pub queued: u64,
    /// Dispatched, not completed.
    pub in_flight: u64,
    /// Waiting for a retry.
    pub waiting_retry: u64,
    /// In the dead-letter queue.
    pub dead_lettered: u64,
    /// Answered.
    pub done: u64,
    /// Retries so far.
    pub retried: u64,
    /// Late or duplicate completions dropped.
    pub late_dropped: u64,
    /// Tasks put back at the head of their queue because the worker running them was lost
    /// (exited, killed, heartbeat timeout); each counts once per loss.
    #[serde(default)]
    pub requeued_lost: u64,
}

/// One lifecycle event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Sequence number (monotonic per ampd run).
    pub seq: u64,
    /// Milliseconds since ampd started.
    pub at_ms: u64,
    /// Unit concerned (empty for supervisor-wide events).
    pub unit: String,
    /// Event kind: `spawned`, `ready`, `exited`, `restarting`, `failed`, `stopped`, ...
    pub kind: String,
    /// Details in words.
    pub detail: String,
}

/// A response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// [`CONTROL_VERSION`].
    pub v: u32,
    /// Whether the request succeeded.
    pub ok: bool,
    /// Payload on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// Message on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    /// A success carrying `data`.
    #[must_use]
    pub fn ok(data: serde_json::Value) -> Self {
        Self {
            v: CONTROL_VERSION,
            ok: true,
            data: Some(data),
            error: None,
        }
    }

    /// A failure with a message.
    #[must_use]
    pub fn err(msg: impl Into<String>) -> Self {
        Self {
            v: CONTROL_VERSION,
            ok: false,
            data: None,
            error: Some(msg.into()),
        }
    }
}

/// Parses one request line; the error message names what was wrong (unknown command or field,
/// bad version, malformed JSON).
///
/// # Errors
/// A message for the error response.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    if line.len() > MAX_REQUEST_LINE {
        return Err(format!(
            "request line of {} bytes exceeds the {MAX_REQUEST_LINE}-byte limit",
            line.len()
        ));
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("malformed JSON: {e}"))?;
    let obj = value
        .as_object_mut()
        .ok_or("a request must be a JSON object")?;
    match obj.remove("v") {
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(u64::from(CONTROL_VERSION)) => {}
        Some(v) => {
            return Err(format!(
                "control protocol version {v} not supported; ampd speaks {CONTROL_VERSION}"
            ))
        }
        None => {
            return Err(format!(
                "missing field `v` (the protocol version, {CONTROL_VERSION})"
            ))
        }
    }
    let cmd = match obj.get("cmd") {
        Some(serde_json::Value::String(c)) => c.clone(),
        Some(_) => return Err("field `cmd` must be a string".into()),
        None => return Err("missing field `cmd`".into()),
    };
    // Unit commands take no other field; serde would silently ignore extras there.
    if UNIT_COMMANDS.contains(&cmd.as_str()) {
        if let Some(extra) = obj.keys().find(|k| *k != "cmd") {
            return Err(format!("unknown field `{extra}` for command `{cmd}`"));
        }
    }
    serde_json::from_value(value).map_err(|e| format!("bad request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!(
            parse_request(br#"{"v":1,"cmd":"status"}"#),
            Ok(Request::Status)
        );
        let e = parse_request(br#"{"v":1,"cmd":"frobnicate"}"#).unwrap_err();
        assert!(e.contains("frobnicate"), "{e}");
        let e = parse_request(br#"{"v":1,"cmd":"status","extra":1}"#).unwrap_err();
        assert!(e.contains("extra"), "{e}");
        let e = parse_request(br#"{"v":2,"cmd":"status"}"#).unwrap_err();
        assert!(e.contains("version 2"), "{e}");
        assert!(parse_request(br#"{"cmd":"status"}"#)
            .unwrap_err()
            .contains("`v`"));
        assert!(parse_request(b"{not json").is_err());
    }
}
