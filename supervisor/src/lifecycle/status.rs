//! Read-only views: ids, names, specs and `status`.

use super::event::UnitId;
use super::machine::Supervisor;
use super::state::{Fate, UnitState, UnitStatus};
use super::worker::WorkerSpec;
use crate::spec::DependencyCondition;

impl Supervisor {
    /// Number of unit ids issued so far (the largest id's index + 1): every id is
    /// `< unit_count()`, including those of removed units. Ids are never reused, so it only
    /// grows (with [`Notice::UnitAdded`](super::Notice::UnitAdded)); size per-unit tables with
    /// it. The number of live units is `units().count()`.
    #[must_use]
    pub fn unit_count(&self) -> usize {
        self.units.len()
    }

    /// Every live unit (units being removed included, removed ones not), in dependency order
    /// (dependencies first; replicas by replica number).
    pub fn units(&self) -> impl Iterator<Item = UnitId> + '_ {
        self.graph
            .order
            .iter()
            .filter(|&&i| self.graph.units[i].live)
            .map(|&i| UnitId::from_index(i))
    }

    /// The live unit whose id has this index (see [`UnitId::index`]); `None` for an index never
    /// issued or a removed unit.
    #[must_use]
    pub fn unit_id(&self, index: usize) -> Option<UnitId> {
        self.graph
            .units
            .get(index)
            .filter(|u| u.live)
            .map(|_| UnitId::from_index(index))
    }

    /// Whether the unit still exists: `false` once [`Notice::UnitRemoved`](super::Notice::UnitRemoved)
    /// was emitted for it.
    ///
    /// # Panics
    /// If `unit` was not issued by this supervisor.
    #[must_use]
    pub fn is_live(&self, unit: UnitId) -> bool {
        self.graph.units[self.index(unit)].live
    }

    /// The live units of the worker with this name (units being removed included), by replica
    /// number; `None` if no live worker has that name.
    #[must_use]
    pub fn unit_ids_of(&self, worker: &str) -> Option<Vec<UnitId>> {
        self.graph.worker_index(worker).map(|w| {
            self.graph.workers[w]
                .units
                .iter()
                .map(|&i| UnitId::from_index(i))
                .collect()
        })
    }

    /// The specs of the live workers that are not being removed, in the order they were added;
    /// `replicas` is each worker's current wanted number of units.
    pub fn workers(&self) -> impl Iterator<Item = &WorkerSpec> + '_ {
        self.graph
            .workers
            .iter()
            .filter(|w| w.live && !w.removing)
            .map(|w| &w.spec)
    }

    /// The current spec of the live worker with this name (also while it is being removed).
    #[must_use]
    pub fn worker_spec(&self, name: &str) -> Option<&WorkerSpec> {
        self.graph
            .worker_index(name)
            .map(|w| &self.graph.workers[w].spec)
    }

    /// The live unit with this unit name (`NAME` or `NAME#i`; `NAME#0` also finds replica 0
    /// when it is named `NAME`).
    #[must_use]
    pub fn lookup(&self, name: &str) -> Option<UnitId> {
        self.graph.unit_by_name(name)
    }

    /// The live units a worker name (all its units) or unit name designates; a worker name wins
    /// over the unit name it shares with replica 0 of a worker created with one replica.
    ///
    /// # Errors
    /// [`super::CommandError::UnknownTarget`] when the name is neither.
    pub fn resolve(&self, target: &str) -> Result<Vec<UnitId>, super::CommandError> {
        self.graph
            .resolve(target)
            .map(|v| v.into_iter().map(UnitId::from_index).collect())
            .ok_or_else(|| super::CommandError::UnknownTarget {
                target: target.to_owned(),
            })
    }

    /// The unit's name (`NAME` or `NAME#i`); it never changes (a removed unit keeps it).
    ///
    /// # Panics
    /// If `unit` was not issued by this supervisor.
    #[must_use]
    pub fn unit_name(&self, unit: UnitId) -> &str {
        &self.graph.units[self.index(unit)].name
    }

    /// The unit's replica number.
    ///
    /// # Panics
    /// If `unit` was not issued by this supervisor.
    #[must_use]
    pub fn replica(&self, unit: UnitId) -> u32 {
        self.graph.units[self.index(unit)].replica
    }

    /// The spec of the worker the unit is a replica of (its current spec; for a removed unit,
    /// the last one).
    ///
    /// # Panics
    /// If `unit` was not issued by this supervisor.
    #[must_use]
    pub fn worker(&self, unit: UnitId) -> &WorkerSpec {
        &self.graph.workers[self.graph.units[self.index(unit)].worker].spec
    }

    /// Every live unit's status (units being removed included), in dependency order.
    #[must_use]
    pub fn status(&self) -> Vec<UnitStatus<'_>> {
        let blocked = self.blocked_by();
        self.graph
            .order
            .iter()
            .filter(|&&i| self.graph.units[i].live)
            .map(|&i| self.status_of(i, blocked[i]))
            .collect()
    }

    /// One unit's status (a removed unit shows as [`super::StateKind::Stopped`]).
    ///
    /// # Panics
    /// If `unit` was not issued by this supervisor.
    #[must_use]
    pub fn unit_status(&self, unit: UnitId) -> UnitStatus<'_> {
        let i = self.index(unit);
        self.status_of(i, self.blocked_by()[i])
    }

    fn status_of(&self, i: usize, blocked_by: Option<usize>) -> UnitStatus<'_> {
        let node = &self.graph.units[i];
        let u = &self.units[i];
        let ready = matches!(
            u.state,
            UnitState::Ready { .. } | UnitState::Draining { .. }
        );
        UnitStatus {
            id: self.id(i),
            name: &node.name,
            worker: &self.graph.workers[node.worker].spec.name,
            replica: node.replica,
            state: u.state.kind(),
            pid: u.state.pid(),
            restarts: u.restarts,
            last_exit: u.last_exit,
            started_at: u.started_at,
            ready_at: if ready { u.ready_at } else { None },
            failure: if matches!(u.state, UnitState::Failed) {
                u.failure.as_ref()
            } else {
                None
            },
            next_restart: match u.state {
                UnitState::Backoff { until } => Some(until),
                _ => None,
            },
            stop_cause: match u.state {
                UnitState::Stopping { cause, .. } => Some(cause),
                _ => None,
            },
            blocked_by: blocked_by.map(|w| self.graph.workers[w].spec.name.as_str()),
            spawn_error: u.spawn_error.as_deref(),
            removing: u.fate == Fate::Remove,
        }
    }

    /// For each unit: if it is pending behind a dependency that cannot be satisfied without
    /// intervention, that dependency's worker index.
    pub(super) fn blocked_by(&self) -> Vec<Option<usize>> {
        let mut blocked = vec![None; self.units.len()];
        for &i in &self.graph.order {
            if !matches!(self.units[i].state, UnitState::Pending) {
                continue;
            }
            let w = self.graph.units[i].worker;
            blocked[i] = self.graph.workers[w]
                .deps
                .iter()
                .find(|&&(d, condition)| {
                    self.counted_units(d).any(|r| {
                        blocked[r].is_some()
                            || match self.units[r].state {
                                UnitState::Failed | UnitState::Stopped => true,
                                UnitState::Completed => condition == DependencyCondition::Ready,
                                _ => false,
                            }
                    })
                })
                .map(|&(d, _)| d);
        }
        blocked
    }
}
