//! Pipelines: routes between kinds, fan-out/fan-in, feedback loops, event triggers and the
//! result cache of deterministic kinds — pure cores the event loop drives (no clock is read,
//! nothing is submitted or written: calls take the time and return what to do). The only I/O
//! is the cache's optional disk tier.
//!
//! | part | what | config |
//! |---|---|---|
//! | [`routes`] | route table, outcome classes, result tags, chain paths | `[[route]]` |
//! | [`fanout`] | a parent waiting on N children: fan-in rule, failure policy, combined result | `[kinds.X] fan_in`, `child_failure` |
//! | [`loopback`] | loop counting, `max_loops`, `min_improvement`, `refine_kind` | `[kinds.X] max_loops`, … |
//! | [`flow`] | [`Pipeline`]: the three above together, answering the original submitter once | |
//! | [`triggers`] | timers (`every`, [`cron`]), completion, event and file triggers | `[[trigger]]` |
//! | [`cache`] | coalescing of identical tasks in flight, result cache (memory LRU + disk) | `[kinds.X] deterministic`, `cache` |
//!
//! # Driving it (the event loop's contract)
//! Kind ids are indices into `Config::kinds` (name order), as for the router and delivery
//! cores. Build [`Pipeline::new`], [`triggers::Triggers::new`] and one [`cache::Cache`] per
//! deterministic kind ([`cache::Cache::open`]) at startup; give
//! `DeliveryOptions::max_loops = pipeline.max_loops_bound()` so the delivery core never stops a
//! loop before the pipeline decides.
//!
//! **Submitting a task** (a client's, a trigger's, or a [`FlowAction::Submit`]): for a
//! deterministic kind first `cache.lookup(now, wall, &CacheKey::new(kind_name, &payload),
//! submitter)`:
//! - `Lookup::Hit(result)` → answer the submitter `FinalOutcome::Ok(result)` at once (through
//!   step "Answering" below);
//! - `Lookup::Joined` → nothing: the submitter gets the running task's answer;
//! - `Lookup::Execute(key)` → submit to the delivery core, then `cache.started(key, id)`; if
//!   the delivery core or the queue refuses it, `cache.start_failed(&key)` and answer every
//!   submitter it returns as refused too.
//!
//! Submit a [`FlowAction::Submit`] with its `to` as the `Submitter` and its `parent`, then call
//! [`Pipeline::bind`]`(to, id)`. A refusal is answered like any answer (below) with
//! `FinalOutcome::Rejected`.
//!
//! **A worker emits a subtask** while running task P (only while P is in flight):
//! `let to = pipeline.subtask(P, P_kind, kind, class)?` — an error means P already finished:
//! refuse the subtask. Submit it with `to`, then `bind(to, id)`.
//!
//! **A completion arrives** and the delivery core will accept it (P in flight on that unit):
//! for `Outcome::Loopback { payload, reason }` call [`Pipeline::loopback`]`(id, kind,
//! header.score, &reason)`; on [`LoopVerdict::Requeue`] pass the loopback on to
//! `Delivery::completed`, on [`LoopVerdict::Complete`] pass `Outcome::Ok(payload)` instead.
//! Other outcomes go to `Delivery::completed` unchanged.
//!
//! **Delivery actions**: for `Requeue { id, .. }` and `ScheduleRetry { id, .. }` also call
//! [`Pipeline::task_restarted`] (subtasks of the old run are cancelled).
//!
//! **Answering** — every `Deliver { to, id, kind, class, outcome }` of the delivery core:
//! 1. if `id`'s kind is deterministic: `for w in cache.finished(now, wall, id, &outcome)`,
//!    answer `w` with a clone of the outcome the same way (coalesced submitters);
//! 2. `completed` triggers: `triggers.completed(kind, outcome.is_ok(), bytes)` for kinds with
//!    completion triggers ([`triggers::Triggers::watches`]) → submit each fire;
//! 3. [`Pipeline::delivered`]`(to, id, kind, class, outcome, &mut actions)`, then carry out
//!    the [`FlowAction`]s: `Answer` → write the result to the client (as before: `path` is the
//!    chain for `ampctl tasks` / logs); `Submit` → as above; `Cancel { id }` →
//!    `Delivery::cancel(id, "no longer needed")` and carry out its actions (answers to internal
//!    submitters come back here and are ignored).
//!
//! **Timers**: poll no later than `triggers.next_wakeup(now, wall)`, then submit every fire of
//! `triggers.due(now, wall)`. `ampctl emit NAME [payload]` → `triggers.event(NAME, payload)`.
//! `on_file` triggers: list the directory (on a timer, or when inotify says so) and feed the
//! names to `triggers.files(index, names)`.
//!
//! **`ampctl tasks`**: [`Pipeline::chains`] lists the chains in progress with their paths;
//! [`routes::format_path`] renders one.

pub mod cache;
pub mod cron;
pub mod fanout;
pub mod flow;
pub mod loopback;
pub mod routes;
pub mod triggers;

#[cfg(test)]
mod tests;

pub use flow::{ChainView, FlowAction, FlowStats, LoopVerdict, Pipeline, PIPELINE_CLIENT};
