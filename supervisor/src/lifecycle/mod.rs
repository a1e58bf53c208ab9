//! The lifecycle core: every worker process's state machine and the dependency graph between
//! workers, as pure functions of (state, event, now) → (state, actions).
//!
//! Nothing here spawns, signals or reads a clock: the event loop translates what it observes
//! into [`Event`]s (and `ampctl` requests into [`Command`]s), passes the current time, and carries
//! out the [`Action`]s it gets back. Jitter comes from the seeded [`rand::rngs::SmallRng`] given
//! to [`Supervisor::new`], so every test replays exactly.
//!
//! # Workers, units, replicas
//! A [`WorkerSpec`] with `replicas = 1` becomes one *unit* named like the worker; with
//! `replicas = N > 1` it becomes `N` units named `NAME#0` … `NAME#N-1`. Every unit has its own
//! process, state, backoff and intensity window. A unit's name never changes: units added later
//! by scaling up are named `NAME#k` with the lowest replica number `k >= 1` not held by a live
//! unit of the worker (scaling `api` from 1 to 3 gives `api`, `api#1`, `api#2`), and scaling
//! down removes the highest-numbered units. `NAME#0` also designates replica 0 when it is named
//! `NAME`, and a worker name designates all its units. Dependencies are between workers: a
//! dependency on worker `db` is met when **every** replica of `db` (not being removed) meets
//! the condition:
//! - `started`: spawned and not yet exited (starting or ready), or completed;
//! - `ready`: ready now;
//! - `completed_successfully`: exited 0 and not restarted (restart `on-failure`/`never`; a
//!   dependency on an `always` worker is refused by [`Supervisor::new`]).
//!
//! A unit being stopped (or replaced, see below) never counts as meeting a condition; a worker
//! being removed meets none. Conditions gate a unit's *start*
//! (at startup and after a manual start); automatic restarts of a unit do not wait for its
//! dependencies again, and a dependency restarting does not stop its dependents.
//!
//! # States ([`StateKind`])
//! | from | on | to |
//! |---|---|---|
//! | `Pending` | dependencies met | `Spawning` (+ [`Action::Spawn`]) |
//! | `Spawning` | [`Event::Spawned`] / [`Event::SpawnFailed`] | `Starting` / exit handling |
//! | `Starting` | [`Event::Ready`] / ready timeout | `Ready` / `Stopping` (SIGKILL) |
//! | `Ready` | drain / heartbeat timeout / stop | `Draining` / `Stopping` (SIGKILL) / `Stopping` |
//! | `Draining` | [`Event::Drained`] or drain timeout | `Stopping` |
//! | `Starting`, `Ready` | [`Event::Exited`] by itself | exit handling |
//! | `Stopping` | [`Event::Exited`] | `Stopped`; `Spawning` for a manual restart; exit handling (hung) |
//! | exit handling | policy | `Backoff` → `Spawning` after the delay, `Completed`, or `Failed` |
//! | `Stopped`, `Failed`, `Completed` | [`Command::Start`] | `Pending` |
//! | any, without a process | removed ([`Changes`]) | forgotten ([`Notice::UnitRemoved`]) |
//! | `Ready` | removed with `drain` | `Draining` → (drained) `Stopping` → forgotten |
//! | `Spawning`, `Starting`, `Ready`, `Draining` | removed | `Stopping` → forgotten |
//! | `Starting`, `Ready` | replaced ([`Changes::replace`]) | `Stopping` → `Pending` |
//! | `Backoff`, `Failed`, `Completed` | replaced | `Pending` |
//!
//! When a process ends by itself (or could not be spawned, or was killed as hung):
//! - restart policy `always` restarts; `on-failure` restarts anything but exit code 0 (death by a
//!   signal is a failure); `never` does not. Not restarted: exit 0 → `Completed`, else `Failed`.
//! - A restart waits in `Backoff` for `min(initial * multiplier^n, max)` minus up to `jitter` of
//!   it ([`backoff_bounds`]); `n` counts consecutive restarts and goes back to 0 once the unit had
//!   stayed ready for at least `backoff.max` before it exited.
//! - More than `intensity.max_restarts` automatic restarts within `intensity.window` (per unit):
//!   the unit is `Failed` and the escalation applies: `mark-failed` (nothing else),
//!   `stop-dependents` (every transitive dependent is stopped, dependents first; those without a
//!   process go straight to `Stopped`), `shutdown` (the whole supervisor shuts down).
//!
//! Timeouts:
//! - `ready_timeout` (per spawn attempt): the process group is killed. A unit that was never
//!   ready since it was last started fails outright (`Failed`, its dependents stay pending and
//!   show [`UnitStatus::blocked_by`]); one that was ready before (a restart) is restarted per
//!   policy.
//! - `heartbeat_timeout` (ready and draining units; every [`Event::Heartbeat`] pushes it back,
//!   [`Event::HeartbeatStale`] fires it at once): the process group is killed and the unit is
//!   restarted per policy, with [`Termination::HeartbeatTimeout`] as the recorded cause (its exit
//!   shows [`StopCause::HeartbeatTimeout`], apart from a crash).
//!
//! # Startup
//! [`Event::Startup`] spawns every unit without dependencies in the same step; each later step
//! spawns every pending unit whose dependencies are met, so independent units start together.
//! Startup is complete ([`Notice::StartupComplete`]) once every unit was ready once, completed,
//! failed, stopped, or is blocked by a dependency that cannot be met. A unit that fails during
//! startup before it was ever ready (ready timeout, no restart, or intensity exceeded) applies
//! [`Options::startup_failure`]: `abort` shuts everything down
//! ([`ShutdownCause::StartupAborted`]); `continue` keeps the rest running.
//!
//! # Stopping and shutdown
//! A unit's stop sequence: [`Action::SendShutdown`] over its control channel, then (after
//! [`WorkerSpec::shutdown_grace`]) its `stop_signal` to its process group, then SIGKILL to the
//! group `stop_timeout` after the signal. Without a control channel (`shutdown_grace = None`) the
//! signal goes at once.
//!
//! [`Event::Shutdown`] stops units in reverse dependency order: a unit's sequence begins only
//! once every unit depending on it has exited. Units without a process are stopped at once and
//! nothing is spawned any more. A second request (or `fast: true`) takes the fast path: every
//! remaining process gets its stop signal now and SIGKILL after
//! `min(`[`Options::fast_kill_timeout`]`, stop_timeout)`. When the last process is gone,
//! [`Action::ShutdownComplete`] reports whether it was clean (no SIGKILL needed) and why.
//!
//! # Changing the workers at runtime
//! [`Supervisor::apply_changes`] applies a [`Changes`] (added, replaced, scaled and removed
//! workers) atomically: it is validated against the resulting set of workers first, and on
//! [`ChangeError`] nothing changed. [`Supervisor::add_worker`], [`Supervisor::remove_worker`],
//! [`Supervisor::remove_workers`], [`Supervisor::set_replicas`] and
//! [`Supervisor::replace_worker`] are shorthands. Changes are refused once shutdown began;
//! before [`Event::Startup`] they only reshape what startup will spawn.
//! - **Add**: the new units (new ids, [`Notice::UnitAdded`]) are `Pending` and start like any
//!   unit once their dependencies are met (in the same call if they already are).
//! - **Remove** (a removed worker's units, or a scale-down's surplus): the unit is *removing*
//!   ([`UnitStatus::removing`]): it is never started or restarted again and counts for neither
//!   its worker's replicas nor its dependents. Without a process it is forgotten at once. A ready
//!   one is drained first when asked ([`Action::SendDrain`]; after [`Event::Drained`] or its
//!   `drain_timeout`, the stop sequence with [`StopCause::Removed`]); any other is stopped.
//!   Units of a removed worker stop dependents first, as in a shutdown; a scaled-down replica
//!   stops at once (the others keep serving). Once it exited, [`Notice::UnitRemoved`] (and,
//!   after a removed worker's last unit, [`Notice::WorkerRemoved`]): the id is dead for good.
//! - **Replace**: the new spec applies at once. Every running unit of the worker gets the stop
//!   sequence of its *old* spec ([`StopCause::Replaced`]) and, once it exited, goes back to
//!   `Pending` with fresh restart counters; it starts again when its (new) dependencies are met.
//!   Pending, backing-off, failed and completed units start over at once; stopped units stay
//!   stopped. A stop asked for meanwhile (by hand, by shutdown, by a drain) wins.
//! - Commands skip units being removed, except stop and drain.
//!
//! Unit ids are never reused: [`Supervisor::unit_count`] is the number of ids issued so far
//! and only grows; [`Supervisor::units`] lists the live units; [`Supervisor::is_live`],
//! [`Supervisor::unit_id`] and [`Supervisor::unit_ids_of`] map back.
//!
//! # Driving it (the event loop's contract)
//! 1. [`Supervisor::new`] with the mapped [`WorkerSpec`]s, [`Options`] and a seeded RNG; then
//!    [`Supervisor::handle`] with [`Event::Startup`].
//! 2. Carry out the returned actions in order. [`Action::Spawn`]: fork/exec in a new process
//!    group and feed [`Event::Spawned`] / [`Event::SpawnFailed`] right away. `Signal`/`Kill` go
//!    to the process group (prefer the unit's pidfd to guard against pid reuse).
//!    [`Action::Notify`]: log it; `Ready`/`Draining`/`Stopping`/`Exited` also tell the router
//!    which units may get tasks; [`Notice::UnitAdded`] comes before any action naming the new
//!    unit (grow per-unit tables to [`Supervisor::unit_count`] there);
//!    [`Notice::UnitRemoved`] comes after the unit's last action (free its per-unit state; no
//!    later action names it, and events about it are ignored).
//! 3. Poll with a timeout of [`Supervisor::next_deadline`] `- now` (there are no timer
//!    actions: the core keeps its deadlines and reports the earliest); feed every observation
//!    (`Ready`, `Heartbeat`, `Exited` with the reaped status, `Drained`, `Shutdown` on
//!    SIGTERM/SIGINT) and feed [`Event::Tick`] when the deadline passes. Manual requests go
//!    through [`Supervisor::command`]; `status` reads [`Supervisor::status`]. Reconfiguration
//!    (reload, scale, autoscaler) goes through [`Supervisor::apply_changes`]: update the event
//!    loop's own per-worker configuration first, then carry out the returned actions (a
//!    replaced or added worker may be spawned at once). For a reload, pass every added,
//!    changed (`replace`), re-scaled (`scale`, when only `replicas` changed) and removed worker
//!    in one [`Changes`], so the order does not matter and a bad config changes nothing.
//! 4. Exit after [`Action::ShutdownComplete`], with status 0 iff [`ShutdownReport::success`].
//!
//! ```
//! use amp_supervisor::lifecycle::{Action, Dependency, Event, Options, Supervisor, WorkerSpec};
//! use amp_supervisor::spec::{DependencyCondition, ExitReason};
//! use nix::unistd::Pid;
//! use rand::{rngs::SmallRng, SeedableRng};
//! use std::time::{Duration, Instant};
//!
//! let mut api = WorkerSpec::new("api");
//! api.depends_on.push(Dependency::new("db", DependencyCondition::Ready));
//! let mut sup = Supervisor::new(vec![WorkerSpec::new("db"), api], Options::default(),
//!                               SmallRng::seed_from_u64(7))?;
//! let (db, api) = (sup.lookup("db").unwrap(), sup.lookup("api").unwrap());
//! let t0 = Instant::now();
//!
//! let actions = sup.handle(t0, Event::Startup);
//! assert!(actions.contains(&Action::Spawn { unit: db }));
//! assert!(!actions.contains(&Action::Spawn { unit: api })); // waits for db to be ready
//! let _ = sup.handle(t0, Event::Spawned { unit: db, pid: Pid::from_raw(100) });
//! let actions = sup.handle(t0 + Duration::from_millis(5), Event::Ready { unit: db, pid: Pid::from_raw(100) });
//! assert!(actions.contains(&Action::Spawn { unit: api }));
//!
//! // db crashes: it is restarted after a backoff delay.
//! let t1 = t0 + Duration::from_secs(1);
//! let _ = sup.handle(t1, Event::Exited { unit: db, pid: Pid::from_raw(100), reason: ExitReason::Code(3) });
//! let due = sup.next_deadline().unwrap();
//! assert!(due > t1);
//! assert_eq!(sup.handle(due, Event::Tick), vec![Action::Spawn { unit: db }]);
//! # Ok::<(), amp_supervisor::lifecycle::SpecError>(())
//! ```

mod action;
mod change;
mod control;
mod event;
mod graph;
mod machine;
mod restart;
mod state;
mod status;
mod stop;
mod worker;

#[cfg(test)]
mod tests;

pub use action::{
    Action, ExitRecord, FailureReason, Notice, ShutdownCause, ShutdownReport, StopCause,
    Termination,
};
pub use change::{ChangeError, Changes};
pub use event::{Command, CommandError, Event, UnitId};
pub use graph::SpecError;
pub use machine::Supervisor;
pub use restart::{backoff_bounds, backoff_delay};
pub use state::{Phase, StateKind, UnitStatus};
pub use worker::{Dependency, Options, WorkerSpec};
