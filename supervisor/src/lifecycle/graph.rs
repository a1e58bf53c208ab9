//! The dependency graph: workers and their units, validated and topologically ordered.
//!
//! Workers and units can be added and forgotten at runtime. Indices are never reused: a forgotten
//! worker or unit keeps its slot (marked dead), so [`UnitId`]s handed out earlier never come to
//! mean another unit.

use super::event::UnitId;
use super::worker::WorkerSpec;
use crate::spec::{DependencyCondition, RestartPolicy};
use std::collections::HashMap;

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

/// One worker: its spec, its units and its dependency edges.
#[derive(Debug, Clone)]
pub(super) struct WorkerNode {
    /// The current spec; `spec.replicas` is the wanted number of units (units being removed by
    /// a scale-down are not counted).
    pub(super) spec: WorkerSpec,
    /// Its live units (including ones being removed), by replica number.
    pub(super) units: Vec<usize>,
    /// Direct dependencies (worker index, condition).
    pub(super) deps: Vec<(usize, DependencyCondition)>,
    /// Direct dependents (worker indices).
    pub(super) dependents: Vec<usize>,
    /// Being removed: every unit is retiring; the worker is forgotten with its last unit.
    pub(super) removing: bool,
    /// Not forgotten.
    pub(super) live: bool,
}

/// One unit: a replica of a worker.
#[derive(Debug, Clone)]
pub(super) struct UnitNode {
    /// `NAME` or `NAME#i`; never changes.
    pub(super) name: String,
    /// Index of its worker.
    pub(super) worker: usize,
    /// Replica number (unique among the worker's live units).
    pub(super) replica: u32,
    /// Not forgotten.
    pub(super) live: bool,
}

/// Workers and units with their dependency edges.
#[derive(Debug, Clone)]
pub(super) struct Graph {
    /// Every worker ever added, by index (dead ones included).
    pub(super) workers: Vec<WorkerNode>,
    /// Every unit ever added, indexed by [`UnitId`] (dead ones included).
    pub(super) units: Vec<UnitNode>,
    /// Live units, dependencies before dependents (stable: lower worker index first among
    /// independent workers, then replica order). May briefly contain units forgotten since the
    /// last [`Graph::refresh_order`]; those are dead and skipped by every rule.
    pub(super) order: Vec<usize>,
    /// `order` needs rebuilding.
    order_dirty: bool,
    /// Live worker index by name.
    worker_by_name: HashMap<String, usize>,
    /// Live unit index by unit name.
    unit_by_name: HashMap<String, usize>,
}

impl Graph {
    /// Validates `workers` and builds the graph; units get ids in input order.
    pub(super) fn new(workers: Vec<WorkerSpec>) -> Result<Self, SpecError> {
        validate(&workers)?;
        let mut graph = Self {
            workers: Vec::with_capacity(workers.len()),
            units: Vec::new(),
            order: Vec::new(),
            order_dirty: true,
            worker_by_name: HashMap::new(),
            unit_by_name: HashMap::new(),
        };
        let indices: Vec<usize> = workers
            .into_iter()
            .map(|spec| graph.insert_worker(spec))
            .collect();
        for w in indices {
            graph.link(w);
        }
        graph.refresh_order();
        Ok(graph)
    }

    /// Adds a worker and its units `0..replicas` (named by [`WorkerSpec::unit_name`]), without
    /// dependency edges: call [`Self::link`] once every worker it depends on is present. The spec
    /// must have been validated together with the workers it joins.
    pub(super) fn insert_worker(&mut self, spec: WorkerSpec) -> usize {
        let w = self.workers.len();
        self.worker_by_name.insert(spec.name.clone(), w);
        let replicas = spec.replicas;
        self.workers.push(WorkerNode {
            spec,
            units: Vec::new(),
            deps: Vec::new(),
            dependents: Vec::new(),
            removing: false,
            live: true,
        });
        for replica in 0..replicas {
            let name = self.workers[w].spec.unit_name(replica);
            self.push_unit(w, replica, name);
        }
        w
    }

    /// Adds replica `replica` (>= 1, not held by a live unit) to worker `w`, named `NAME#replica`;
    /// returns its index.
    pub(super) fn add_replica(&mut self, w: usize, replica: u32) -> usize {
        debug_assert!(replica >= 1);
        let name = format!("{}#{replica}", self.workers[w].spec.name);
        self.push_unit(w, replica, name)
    }

    fn push_unit(&mut self, w: usize, replica: u32, name: String) -> usize {
        let i = self.units.len();
        self.unit_by_name.insert(name.clone(), i);
        self.units.push(UnitNode {
            name,
            worker: w,
            replica,
            live: true,
        });
        let node = &mut self.workers[w];
        let at = node
            .units
            .partition_point(|&u| self.units[u].replica < replica);
        node.units.insert(at, i);
        self.order_dirty = true;
        i
    }

    /// The lowest replica numbers (>= 1) not held by a live unit of worker `w`, `count` of them.
    pub(super) fn free_replicas(&self, w: usize, count: usize) -> Vec<u32> {
        let held: Vec<u32> = self.workers[w]
            .units
            .iter()
            .map(|&u| self.units[u].replica)
            .collect();
        (1..).filter(|r| !held.contains(r)).take(count).collect()
    }

    /// Resolves worker `w`'s dependencies by name (all present) and records the edges in both
    /// directions, replacing earlier ones.
    pub(super) fn link(&mut self, w: usize) {
        self.unlink_deps(w);
        let deps: Vec<(usize, DependencyCondition)> = self.workers[w]
            .spec
            .depends_on
            .iter()
            .filter_map(|dep| {
                let d = self.worker_by_name.get(&dep.name).copied();
                debug_assert!(d.is_some(), "dependencies were validated");
                d.map(|d| (d, dep.condition))
            })
            .collect();
        for &(d, _) in &deps {
            if !self.workers[d].dependents.contains(&w) {
                self.workers[d].dependents.push(w);
            }
        }
        self.workers[w].deps = deps;
        self.order_dirty = true;
    }

    /// Drops worker `w`'s outgoing edges.
    fn unlink_deps(&mut self, w: usize) {
        for (d, _) in std::mem::take(&mut self.workers[w].deps) {
            self.workers[d].dependents.retain(|&x| x != w);
        }
    }

    /// Replaces worker `w`'s spec and dependency edges (validated by the caller).
    pub(super) fn set_spec(&mut self, w: usize, spec: WorkerSpec) {
        self.workers[w].spec = spec;
        self.link(w);
    }

    /// Marks unit `i` dead and drops it from its worker and the name index; returns its worker.
    pub(super) fn forget_unit(&mut self, i: usize) -> usize {
        let node = &mut self.units[i];
        node.live = false;
        let w = node.worker;
        if self.unit_by_name.get(&node.name) == Some(&i) {
            self.unit_by_name.remove(&node.name);
        }
        self.workers[w].units.retain(|&u| u != i);
        self.order_dirty = true;
        w
    }

    /// Marks worker `w` (without live units) dead and drops its edges and name.
    pub(super) fn forget_worker(&mut self, w: usize) {
        debug_assert!(self.workers[w].units.is_empty());
        self.unlink_deps(w);
        for x in std::mem::take(&mut self.workers[w].dependents) {
            self.workers[x].deps.retain(|&(d, _)| d != w);
        }
        let node = &mut self.workers[w];
        node.live = false;
        if self.worker_by_name.get(&node.spec.name) == Some(&w) {
            self.worker_by_name.remove(&node.spec.name);
        }
        self.order_dirty = true;
    }

    /// Rebuilds `order` if workers or units changed: Kahn's algorithm over live workers, taking
    /// the lowest-index ready worker each time.
    pub(super) fn refresh_order(&mut self) {
        if !self.order_dirty {
            return;
        }
        self.order_dirty = false;
        let live: Vec<usize> = (0..self.workers.len())
            .filter(|&w| self.workers[w].live)
            .collect();
        let mut placed = vec![false; self.workers.len()];
        self.order.clear();
        for _ in 0..live.len() {
            let next = live
                .iter()
                .copied()
                .find(|&w| !placed[w] && self.workers[w].deps.iter().all(|&(d, _)| placed[d]));
            // Edges only ever come from validated (acyclic) sets; if that were ever broken,
            // place the rest in index order rather than lose units.
            let next = next.or_else(|| live.iter().copied().find(|&w| !placed[w]));
            let Some(w) = next else { break };
            placed[w] = true;
            self.order.extend(self.workers[w].units.iter().copied());
        }
    }

    /// The live worker with this name.
    pub(super) fn worker_index(&self, name: &str) -> Option<usize> {
        self.worker_by_name.get(name).copied()
    }

    /// The units a name designates: every live unit of the worker of that name, else the unit
    /// of that name (see [`Self::unit_index`]).
    pub(super) fn resolve(&self, target: &str) -> Option<Vec<usize>> {
        if let Some(w) = self.worker_index(target) {
            return Some(self.workers[w].units.clone());
        }
        self.unit_index(target).map(|u| vec![u])
    }

    /// The live unit with this unit name; `NAME#k` also designates replica `k` of worker `NAME`
    /// when that replica is named `NAME` (a worker created with one replica).
    pub(super) fn unit_index(&self, name: &str) -> Option<usize> {
        if let Some(&u) = self.unit_by_name.get(name) {
            return Some(u);
        }
        let (worker, replica) = name.split_once('#')?;
        let replica: u32 = replica.parse().ok()?;
        let w = self.worker_index(worker)?;
        self.workers[w]
            .units
            .iter()
            .copied()
            .find(|&u| self.units[u].replica == replica)
    }

    /// The unit with this name as an id.
    pub(super) fn unit_by_name(&self, name: &str) -> Option<UnitId> {
        self.unit_index(name).map(UnitId::from_index)
    }

    /// Every worker that depends on worker `w`, directly or not (excluding `w`).
    pub(super) fn transitive_dependents(&self, w: usize) -> Vec<usize> {
        let mut seen = vec![false; self.workers.len()];
        let mut stack = vec![w];
        let mut out = Vec::new();
        while let Some(x) = stack.pop() {
            for &d in &self.workers[x].dependents {
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
        self.workers[self.units[u].worker]
            .dependents
            .iter()
            .flat_map(|&w| self.workers[w].units.iter().copied())
    }
}

/// Checks a complete set of workers: names, replicas, backoff, dependencies (existing, not on
/// itself, completable, acyclic). Reports the first problem in input order.
pub(super) fn validate(workers: &[WorkerSpec]) -> Result<(), SpecError> {
    let mut by_name = HashMap::new();
    for (w, spec) in workers.iter().enumerate() {
        if spec.name.is_empty() || spec.name.contains('#') {
            return Err(SpecError::InvalidName {
                name: spec.name.clone(),
            });
        }
        if by_name.insert(spec.name.as_str(), w).is_some() {
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
    for (w, spec) in workers.iter().enumerate() {
        for dep in &spec.depends_on {
            let Some(&d) = by_name.get(dep.name.as_str()) else {
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
            deps[w].push(d);
        }
    }
    check_acyclic(workers, &deps)
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

/// Kahn's algorithm; when it gets stuck, names a cycle.
fn check_acyclic(workers: &[WorkerSpec], deps: &[Vec<usize>]) -> Result<(), SpecError> {
    let n = workers.len();
    let mut placed = vec![false; n];
    for _ in 0..n {
        match (0..n).find(|&w| !placed[w] && deps[w].iter().all(|&d| placed[d])) {
            Some(w) => placed[w] = true,
            None => return Err(find_cycle(workers, deps, &placed)),
        }
    }
    Ok(())
}

/// Every unplaced worker has an unplaced dependency, so walking those edges must revisit a worker.
fn find_cycle(workers: &[WorkerSpec], deps: &[Vec<usize>], placed: &[bool]) -> SpecError {
    let start = placed.iter().position(|p| !p).unwrap_or(0);
    let mut path = vec![start];
    let mut current = start;
    while let Some(&next) = deps[current].iter().find(|&&d| !placed[d]) {
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
