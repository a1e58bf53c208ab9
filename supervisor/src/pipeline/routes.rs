//! `[[route]]` as a lookup table, the outcome classes routes follow, result tags, and the
//! chain path reported to the original submitter.
//!
//! A finished task of kind A becomes a task of kind B per route `A -> B`. The outcome class of
//! a result ([`RouteEvent`]) picks the routes:
//! - a failure (failed, dead-lettered, timed out, deadline passed, refused) takes the
//!   `on = "err"` routes; the next task's payload is the error message;
//! - a success tagged `NAME` (see [`split_tag`]) takes the `on = "tag:NAME"` routes, or the
//!   `on = "ok"` routes when the kind has none for that tag;
//! - any other success (including a loop-limited result) takes the `on = "ok"` routes.
//!
//! A cancelled task is never routed. No route: the result is final. One route: the chain
//! goes on. Several: a fan-out (see [`super::fanout`]).
//!
//! # Result tags
//! Only for a kind with some `on = "tag:..."` route, a successful result that starts with
//! `#!tag:NAME\n` (NAME a [name](crate::config) in `a-z 0-9 _ -`) is tagged `NAME`; the prefix
//! is removed before the result goes on. [`tag_result`] builds such a result. Results of other
//! kinds are never looked at.
//!
//! ```
//! use amp_supervisor::pipeline::routes::{split_tag, tag_result};
//! let r = tag_result("big", b"data");
//! assert_eq!(split_tag(&r), Some(("big", &b"data"[..])));
//! assert_eq!(split_tag(b"data"), None);
//! ```

use crate::config::{Config, FailurePolicy, RouteOn};
use crate::delivery::{FinalOutcome, TaskId};
use std::fmt;

/// What starts a tagged result.
pub const TAG_PREFIX: &[u8] = b"#!tag:";

/// Builds a result tagged `tag` (see the [module documentation](self)).
#[must_use]
pub fn tag_result(tag: &str, result: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(TAG_PREFIX.len() + tag.len() + 1 + result.len());
    out.extend_from_slice(TAG_PREFIX);
    out.extend_from_slice(tag.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(result);
    out
}

/// Splits a tagged result into `(tag, rest)`; `None` when it is not tagged.
#[must_use]
pub fn split_tag(result: &[u8]) -> Option<(&str, &[u8])> {
    let rest = result.strip_prefix(TAG_PREFIX)?;
    let end = rest.iter().take(65).position(|&b| b == b'\n')?;
    let tag = std::str::from_utf8(&rest[..end]).ok()?;
    let valid = !tag.is_empty()
        && tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    valid.then(|| (tag, &rest[end + 1..]))
}

/// The outcome class routes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteEvent<'a> {
    /// Success, possibly tagged.
    Ok {
        /// The result's tag.
        tag: Option<&'a str>,
    },
    /// Failure.
    Err,
}

/// One route out of a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Kind id of the next task.
    pub to: u32,
    /// The outcome class it follows.
    pub on: RouteOn,
    /// What a failure of the next task does.
    pub on_failure: FailurePolicy,
}

/// The routes of every kind, by kind id (the index of the kind in [`Config::kinds`]).
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    out: Vec<Vec<Route>>,
    tagged: Vec<bool>,
}

impl RouteTable {
    /// The table of `config`'s `[[route]]`s.
    #[must_use]
    pub fn new(config: &Config) -> Self {
        let names: Vec<&str> = config.kinds.keys().map(String::as_str).collect();
        let id = |n: &str| names.iter().position(|k| *k == n);
        let mut out = vec![Vec::new(); names.len()];
        for r in &config.pipeline.routes {
            if let (Some(from), Some(to)) = (id(&r.from), id(&r.to)) {
                out[from].push(Route {
                    to: u32::try_from(to).unwrap_or(u32::MAX),
                    on: r.on.clone(),
                    on_failure: r.on_failure,
                });
            }
        }
        let tagged = out
            .iter()
            .map(|rs| rs.iter().any(|r| matches!(r.on, RouteOn::Tag(_))))
            .collect();
        Self { out, tagged }
    }

    /// Whether any route leaves `kind`.
    #[must_use]
    pub fn has_routes(&self, kind: u32) -> bool {
        self.out.get(kind as usize).is_some_and(|r| !r.is_empty())
    }

    /// Whether a `tag:` route leaves `kind` (only then are its results looked at for tags).
    #[must_use]
    pub fn has_tag_routes(&self, kind: u32) -> bool {
        self.tagged.get(kind as usize).copied().unwrap_or(false)
    }

    /// The routes a result of `kind` in class `event` follows, in file order.
    #[must_use]
    pub fn next(&self, kind: u32, event: RouteEvent<'_>) -> Vec<&Route> {
        let Some(routes) = self.out.get(kind as usize) else {
            return Vec::new();
        };
        let pick = |on: &RouteOn| routes.iter().filter(|r| r.on == *on).collect::<Vec<_>>();
        match event {
            RouteEvent::Err => pick(&RouteOn::Err),
            RouteEvent::Ok { tag: Some(tag) } => {
                let tagged: Vec<&Route> = routes
                    .iter()
                    .filter(|r| matches!(&r.on, RouteOn::Tag(t) if t == tag))
                    .collect();
                if tagged.is_empty() {
                    pick(&RouteOn::Ok)
                } else {
                    tagged
                }
            }
            RouteEvent::Ok { tag: None } => pick(&RouteOn::Ok),
        }
    }
}

/// The route class and the payload a next task would get, for a final outcome; `None` for a
/// cancelled task (never routed). `tags`: whether to look for a result tag.
#[must_use]
pub fn classify(outcome: &FinalOutcome, tags: bool) -> Option<(RouteEvent<'_>, Vec<u8>)> {
    fn ok(bytes: &[u8], tags: bool) -> (RouteEvent<'_>, Vec<u8>) {
        if tags {
            if let Some((tag, rest)) = split_tag(bytes) {
                return (RouteEvent::Ok { tag: Some(tag) }, rest.to_vec());
            }
        }
        (RouteEvent::Ok { tag: None }, bytes.to_vec())
    }
    match outcome {
        FinalOutcome::Ok(bytes) => Some(ok(bytes, tags)),
        FinalOutcome::LoopLimit { payload, .. } => Some(ok(payload, tags)),
        FinalOutcome::Cancelled { .. } => None,
        other => Some((RouteEvent::Err, failure_message(other).into_bytes())),
    }
}

/// A one-line description of a failed outcome (the payload of an `on = "err"` route, the
/// message of a failed child).
#[must_use]
pub fn failure_message(outcome: &FinalOutcome) -> String {
    match outcome {
        FinalOutcome::Ok(_) => "ok".to_owned(),
        FinalOutcome::Failed { message } => message.clone(),
        FinalOutcome::DeadlineExceeded => "deadline exceeded".to_owned(),
        FinalOutcome::TimedOut { after } => format!("timed out after {after:?}"),
        FinalOutcome::DeadLettered { reason } => format!("dead-lettered: {reason}"),
        FinalOutcome::LoopLimit { reason, loops, .. } => {
            format!("loop limit after {loops} loops: {reason}")
        }
        FinalOutcome::Cancelled { reason } => format!("cancelled: {reason}"),
        FinalOutcome::Rejected { reason } => format!("rejected: {reason}"),
    }
}

/// How a step of a chain came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The original submission.
    Submitted,
    /// A route from the previous step.
    Route,
    /// One branch of a route fan-out.
    FanOut,
    /// A subtask a worker emitted.
    Subtask,
    /// A loopback sent to the kind's `refine_kind`.
    Refine,
    /// A refined payload re-entering the looping kind.
    Loop,
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    /// Submitted or running.
    Running,
    /// Succeeded.
    Ok,
    /// Failed.
    Failed,
    /// Failed, skipped by `on_failure = "continue"`.
    Skipped,
    /// Stopped at the loop limit (or for lack of improvement).
    LoopLimit,
    /// Cancelled.
    Cancelled,
    /// Handed its payload to a refine step.
    Refining,
}

/// One step of a chain, for `ampctl tasks` and the final answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Kind name.
    pub kind: String,
    /// The task, once known.
    pub task: Option<TaskId>,
    /// How it came to be.
    pub via: Via,
    /// Where it stands.
    pub status: StepStatus,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if let Some(id) = self.task {
            write!(f, "{id}")?;
        }
        let status = match self.status {
            StepStatus::Running => "running",
            StepStatus::Ok => "ok",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::LoopLimit => "loop_limit",
            StepStatus::Cancelled => "cancelled",
            StepStatus::Refining => "refining",
        };
        write!(f, " {status}")
    }
}

/// `validate#1 ok -> transform#4 ok -> store#7 running`.
#[must_use]
pub fn format_path(steps: &[Step]) -> String {
    steps
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// The step status a final outcome gives.
#[must_use]
pub const fn status_of(outcome: &FinalOutcome) -> StepStatus {
    match outcome {
        FinalOutcome::Ok(_) => StepStatus::Ok,
        FinalOutcome::LoopLimit { .. } => StepStatus::LoopLimit,
        FinalOutcome::Cancelled { .. } => StepStatus::Cancelled,
        _ => StepStatus::Failed,
    }
}
