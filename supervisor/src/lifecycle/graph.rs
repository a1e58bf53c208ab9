//! The dependency graph: workers expanded into units, validated, topologically ordered.

use super::event::UnitId;
use super::worker::WorkerSpec;
use crate::spec::{DependencyCondition, RestartPolicy};
use std::collections::HashMap;
use std::ops::Range;

/// Why a set of [`WorkerSpec`]s was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A worker name is empty or contains `#`.
    #[error("worker name {name:?} is invalid: use a non-empty name without '#' ('#' separates replica numbers)")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// Two workers share a name.
    #[error("worker {name:?} is defined twice; give each worker a unique name")]
    DuplicateWorker {
        /// The name.
        name: String,
    },
    /// A worker has no replicas.
    #[error("worker {worker:?} has replicas = 0; use at least 1 (or remove the worker)")]
    ZeroReplicas {
        /// The worker.
        worker: String,
    },
    /// A dependency names a worker that does not exist.
    #[error("worker {worker:?} depends on {dependency:?}, which is not defined; check the spelling or define that worker")]
    UnknownDependency {
        /// The worker with the dependency.
        worker: String,
        /// The missing worker.
        dependency: String,
    },
    /// A worker depends on itself.
    #[error("worker {worker:?} depends on itself; remove it from its own depends_on")]
    SelfDependency {
        /// The worker.
        worker: String,
    },
    /// The dependencies form a cycle.
    #[error("dependency cycle {}: remove one of these dependencies", cycle.join(" -> "))]
    Cycle {
        /// The workers on the cycle, each depending on the next; the first is repeated at the end.
        cycle: Vec<String>,
    },
    /// A worker waits for a dependency to complete, but that dependency is always restarted.
    #[error("worker {worker:?} waits for {dependency:?} to complete successfully, but {dependency:?} has restart = \"always\" and so never completes; give {dependency:?} restart = \"on-failure\" or \"never\"")]
    NeverCompletes {
        /// The waiting worker.
        worker: String,
        /// The dependency.
        dependency: String,
    },
    /// A backoff setting is out of range.
    #[error("worker {worker:?}: invalid backoff: {problem}")]
    InvalidBackoff {
        /// The worker.
        worker: String,
        /// What is wrong and what is accepted.
        problem: &'static str,
    },
}

/// One unit: a replica of a worker.
#[derive(Debug, Clone)]
pub(super) struct UnitNode {
    /// `NAME` or `NAME#i`.
    pub(super) name: String,
    /// Index of its worker.
    pub(super) worker: usize,
    /// Replica number.
    pub(super) replica: u32,
}

/// Validated workers and units with their dependency edges.
#[derive(Debug, Clone)]
pub(super) struct Graph {
    /// The workers, in input order.
    pub(super) workers: Vec<WorkerSpec>,
    /// The units, indexed by [`UnitId`]; each worker's units are contiguous.
    pub(super) units: Vec<UnitNode>,
    /// Units of each worker.
    pub(super) worker_units: Vec<Range<usize>>,
    /// Direct dependencies of each worker (worker index, condition).
    pub(super) deps: Vec<Vec<(usize, DependencyCondition)>>,
    /// Direct dependents of each worker.
    pub(super) dependents: Vec<Vec<usize>>,
    /// All units, dependencies before dependents (stable: input order among independent ones).
    pub(super) order: Vec<usize>,
    /// Worker index by name.
    worker_by_name: HashMap<String, usize>,
    /// Unit index by unit name.
    unit_by_name: HashMap<String, usize>,
}

impl Graph {
    /// Validates `workers` and builds the graph.
    pub(super) fn new(workers: Vec<WorkerSpec>) -> Result<Self, SpecError> {
        let mut worker_by_name = HashMap::new();
        for (w, spec) in workers.iter().enumerate() {
            if spec.name.is_empty() || spec.name.contains('#') {
                return Err(SpecError::InvalidName {
                    name: spec.name.clone(),
                });
            }
            if worker_by_name.insert(spec.name.clone(), w).is_some() {
                return Err(SpecError::DuplicateWorker {
                    name: spec.name.clone(),
                });
            }
            if spec.replicas == 0 {
                return Err(SpecError::ZeroReplicas {
                    worker: spec.name.clone(),
                });
            }
            check_backoff(spec)?;
        }
        let mut deps = vec![Vec::new(); workers.len()];
        let mut dependents = vec![Vec::new(); workers.len()];
        for (w, spec) in workers.iter().enumerate() {
            for dep in &spec.depends_on {
                let Some(&d) = worker_by_name.get(&dep.name) else {
                    return Err(SpecError::UnknownDependency {
                        worker: spec.name.clone(),
                        dependency: dep.name.clone(),
                    });
                };
                if d == w {
                    return Err(SpecError::SelfDependency {
                        worker: spec.name.clone(),
                    });
                }
                if dep.condition == DependencyCondition::CompletedSuccessfully
                    && workers[d].restart == RestartPolicy::Always
                {
                    return Err(SpecError::NeverCompletes {
                        worker: spec.name.clone(),
                        dependency: dep.name.clone(),
                    });
                }
                deps[w].push((d, dep.condition));
                if !dependents[d].contains(&w) {
                    dependents[d].push(w);
                }
            }
        }
        let worker_order = topo_order(&workers, &deps)?;
        let mut units = Vec::new();
        let mut worker_units = Vec::with_capacity(workers.len());
        let mut unit_by_name = HashMap::new();
        for (w, spec) in workers.iter().enumerate() {
            let start = units.len();
            for replica in 0..spec.replicas {
                let name = spec.unit_name(replica);
                unit_by_name.insert(name.clone(), units.len());
                units.push(UnitNode {
                    name,
                    worker: w,
                    replica,
                });
            }
            worker_units.push(start..units.len());
        }
        let order = worker_order
            .iter()
            .flat_map(|&w| worker_units[w].clone())
            .collect();
        Ok(Self {
            workers,
            units,
            worker_units,
            deps,
            dependents,
            order,
            worker_by_name,
            unit_by_name,
        })
    }

    /// The units a name designates: one unit by its unit name, else every replica of the worker
    /// of that name.
    pub(super) fn resolve(&self, target: &str) -> Option<Vec<usize>> {
        if let Some(&u) = self.unit_by_name.get(target) {
            return Some(vec![u]);
        }
        self.worker_by_name
            .get(target)
            .map(|&w| self.worker_units[w].clone().collect())
    }

    /// The unit with this name.
    pub(super) fn unit_by_name(&self, name: &str) -> Option<UnitId> {
        self.unit_by_name.get(name).map(|&u| UnitId::from_index(u))
    }

    /// Every worker that depends on worker `w`, directly or not (excluding `w`).
    pub(super) fn transitive_dependents(&self, w: usize) -> Vec<usize> {
        let mut seen = vec![false; self.workers.len()];
        let mut stack = vec![w];
        let mut out = Vec::new();
        while let Some(x) = stack.pop() {
            for &d in &self.dependents[x] {
                if !seen[d] {
                    seen[d] = true;
                    out.push(d);
                    stack.push(d);
                }
            }
        }
        out
    }

    /// Units of workers that directly depend on unit `u`'s worker.
    pub(super) fn dependent_units(&self, u: usize) -> impl Iterator<Item = usize> + '_ {
        self.dependents[self.units[u].worker]
            .iter()
            .flat_map(|&w| self.worker_units[w].clone())
    }
}

/// Backoff values the restart arithmetic can use.
fn check_backoff(spec: &WorkerSpec) -> Result<(), SpecError> {
    let b = &spec.backoff;
    let problem = if !(b.multiplier.is_finite() && b.multiplier >= 1.0) {
        Some("multiplier must be a finite number >= 1")
    } else if !(0.0..=1.0).contains(&b.jitter) {
        Some("jitter must be between 0.0 and 1.0")
    } else if b.initial > b.max {
        Some("initial must not exceed max")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(SpecError::InvalidBackoff {
            worker: spec.name.clone(),
            problem,
        }),
        None => Ok(()),
    }
}

/// Kahn's algorithm, taking the lowest-index ready worker each time so the order is stable.
fn topo_order(
    workers: &[WorkerSpec],
    deps: &[Vec<(usize, DependencyCondition)>],
) -> Result<Vec<usize>, SpecError> {
    let n = workers.len();
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let next = (0..n).find(|&w| !placed[w] && deps[w].iter().all(|&(d, _)| placed[d]));
        match next {
            Some(w) => {
                placed[w] = true;
                order.push(w);
            }
            None => return Err(find_cycle(workers, deps, &placed)),
        }
    }
    Ok(order)
}

/// Every unplaced worker has an unplaced dependency, so walking those edges must revisit a worker.
fn find_cycle(
    workers: &[WorkerSpec],
    deps: &[Vec<(usize, DependencyCondition)>],
    placed: &[bool],
) -> SpecError {
    let start = placed.iter().position(|p| !p).unwrap_or(0);
    let mut path = vec![start];
    let mut current = start;
    while let Some(&(next, _)) = deps[current].iter().find(|&&(d, _)| !placed[d]) {
        if let Some(pos) = path.iter().position(|&w| w == next) {
            let mut cycle: Vec<String> = path[pos..]
                .iter()
                .map(|&w| workers[w].name.clone())
                .collect();
            cycle.push(workers[next].name.clone());
            return SpecError::Cycle { cycle };
        }
        path.push(next);
        current = next;
    }
    // Unreachable for a graph Kahn's algorithm got stuck on; report what we have.
    SpecError::Cycle {
        cycle: path.iter().map(|&w| workers[w].name.clone()).collect(),
    }
}
