//! Read-only views for `status`.

use super::event::UnitId;
use super::machine::Supervisor;
use super::state::{UnitState, UnitStatus};
use crate::spec::DependencyCondition;

impl Supervisor {
    /// Every unit's status, in dependency order.
    #[must_use]
    pub fn status(&self) -> Vec<UnitStatus<'_>> {
        let blocked = self.blocked_by();
        self.graph
            .order
            .iter()
            .map(|&i| self.status_of(i, blocked[i]))
            .collect()
    }

    /// One unit's status.
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
            worker: &self.graph.workers[node.worker].name,
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
            blocked_by: blocked_by.map(|w| self.graph.workers[w].name.as_str()),
            spawn_error: u.spawn_error.as_deref(),
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
            blocked[i] = self.graph.deps[w]
                .iter()
                .find(|&&(d, condition)| {
                    self.graph.worker_units[d].clone().any(|r| {
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
