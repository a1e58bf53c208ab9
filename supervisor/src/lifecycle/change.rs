//! Changing the set of workers and units at runtime: add, remove, scale, replace.

use super::action::{Action, Notice, StopCause};
use super::event::UnitId;
use super::graph::{validate, SpecError};
use super::machine::Supervisor;
use super::state::{Fate, Phase, UnitRt, UnitState};
use super::worker::WorkerSpec;
use std::collections::HashSet;
use std::time::Instant;

/// Changes to the set of workers, applied together by [`Supervisor::apply_changes`]: all are
/// validated against the resulting set of workers before anything changes, so the order of
/// the entries does not matter (a reload passes everything it found in one `Changes`).
///
/// ```
/// use amp_supervisor::lifecycle::{Changes, WorkerSpec};
/// let reload = Changes {
///     add: vec![WorkerSpec::new("cache")],
///     scale: vec![("api".into(), 4)],
///     remove: vec!["legacy".into()],
///     drain: true,
///     ..Changes::default()
/// };
/// assert!(reload.replace.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// New workers (names not in use). Their units get new ids ([`Notice::UnitAdded`]) and
    /// start once their dependencies are met.
    pub add: Vec<WorkerSpec>,
    /// New specs for existing workers (matched by name), e.g. because their definition changed
    /// in a reload. Every running unit is stopped gracefully ([`StopCause::Replaced`]) and
    /// started again with the new spec once it exited and its (new) dependencies are met;
    /// pending, failed, completed and backing-off units start over at once; stopped units stay
    /// stopped. A different `replicas` scales as [`Changes::scale`] does. A replacement equal to
    /// the current spec still restarts the worker (its process definition may have changed
    /// outside the [`WorkerSpec`]).
    pub replace: Vec<WorkerSpec>,
    /// New replica counts (worker name, `replicas >= 1`). Scaling up adds units with the lowest
    /// replica numbers not in use (named `NAME#k`, `k >= 1`); scaling down removes the units with
    /// the highest replica numbers. Units of other workers are not touched.
    pub scale: Vec<(String, u32)>,
    /// Workers to remove (every unit is stopped, then forgotten with [`Notice::UnitRemoved`] and
    /// the worker with [`Notice::WorkerRemoved`]). A worker that a remaining worker depends on
    /// cannot be removed unless that dependent is removed in the same `Changes` (or changed to
    /// no longer depend on it); units of removed workers stop dependents first.
    pub remove: Vec<String>,
    /// Units removed (by `remove` or a scale-down) that are ready are drained first
    /// ([`Action::SendDrain`]) and stopped once [`super::Event::Drained`] is reported or their
    /// `drain_timeout` passed; without `drain` they are stopped at once.
    pub drain: bool,
}

/// Why [`Changes`] were refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// The resulting set of workers is invalid (a bad spec, an unknown dependency, a cycle, ...).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Replacing, scaling or removing a worker that does not exist.
    #[error("no worker named {name:?}; `ampctl status` lists them")]
    UnknownWorker {
        /// The name given.
        name: String,
    },
    /// Adding a worker whose name is in use.
    #[error("worker {name:?} already exists; replace it instead of adding it")]
    WorkerExists {
        /// The name.
        name: String,
    },
    /// The worker is still being removed (its units have not all exited yet).
    #[error("worker {name:?} is being removed; retry once its units have exited")]
    BeingRemoved {
        /// The name.
        name: String,
    },
    /// Removing a worker that a remaining worker depends on.
    #[error("worker {worker:?} cannot be removed: {dependent:?} depends on it; remove {dependent:?} in the same change or drop the dependency")]
    HasDependents {
        /// The worker to remove.
        worker: String,
        /// A remaining worker that depends on it.
        dependent: String,
    },
    /// A new or replaced spec depends on a worker that is being removed.
    #[error("worker {worker:?} depends on {dependency:?}, which is being removed; retry once it is gone and add it again, or drop the dependency")]
    DependsOnRemoved {
        /// The worker with the dependency.
        worker: String,
        /// The worker being removed.
        dependency: String,
    },
    /// A worker appears more than once in one [`Changes`].
    #[error("worker {name:?} appears more than once in one change; give each worker at most one add, replace, scale or remove")]
    Conflict {
        /// The name.
        name: String,
    },
    /// Shutdown has begun.
    #[error("the supervisor is shutting down; workers can no longer be added, removed or changed")]
    ShuttingDown,
}

impl Supervisor {
    /// Applies `changes` at time `now` and returns what to do, in order: [`Notice::UnitAdded`]
    /// for every new unit (before any action naming it), then spawns, drains and stops.
    ///
    /// Allowed before [`super::Event::Startup`] (nothing is spawned until then), during startup
    /// and while running. Carry out the actions only after the event loop's own per-worker
    /// configuration matches the changes (a replaced worker's units may be spawned at once).
    ///
    /// # Errors
    /// [`ChangeError::ShuttingDown`] once shutdown has begun; otherwise the first problem found
    /// (a name listed twice, an unknown, existing or departing worker, a remaining dependent of a
    /// removed worker, or a [`SpecError`] of the resulting set of workers). On error nothing
    /// changed.
    pub fn apply_changes(
        &mut self,
        now: Instant,
        changes: Changes,
    ) -> Result<Vec<Action>, ChangeError> {
        if matches!(self.phase, Phase::ShuttingDown { .. } | Phase::Done(_)) {
            return Err(ChangeError::ShuttingDown);
        }
        self.check_changes(&changes)?;
        let Changes {
            add,
            replace,
            scale,
            remove,
            drain,
        } = changes;
        let mut out = Vec::new();
        let added: Vec<usize> = add
            .into_iter()
            .map(|spec| self.graph.insert_worker(spec))
            .collect();
        for w in added {
            self.graph.link(w);
        }
        self.sync_units(&mut out);
        for spec in replace {
            let w = self.existing(&spec.name);
            self.replace(now, w, spec, drain, &mut out);
        }
        for (name, replicas) in scale {
            let w = self.existing(&name);
            let kept: Vec<usize> = self.counted_units(w).collect();
            self.graph.workers[w].spec.replicas = replicas;
            self.resize(now, w, &kept, drain, &mut out);
        }
        for name in remove {
            let w = self.existing(&name);
            self.graph.workers[w].removing = true;
            for i in self.graph.workers[w].units.clone().into_iter().rev() {
                self.retire(now, i, drain, &mut out);
            }
        }
        self.step(now, &mut out);
        Ok(out)
    }

    /// Adds a worker; its units start once their dependencies are met (spawned in the returned
    /// actions if they already are and startup has begun). See [`Changes::add`].
    ///
    /// # Errors
    /// As [`Supervisor::apply_changes`]: e.g. [`ChangeError::WorkerExists`], or
    /// [`ChangeError::Spec`] for a bad name, an unknown dependency or an invalid backoff.
    pub fn add_worker(
        &mut self,
        now: Instant,
        spec: WorkerSpec,
    ) -> Result<Vec<Action>, ChangeError> {
        self.apply_changes(
            now,
            Changes {
                add: vec![spec],
                ..Changes::default()
            },
        )
    }

    /// Removes a worker: its units are drained first (if `drain`) and stopped, and forgotten
    /// once they exited. See [`Changes::remove`].
    ///
    /// # Errors
    /// As [`Supervisor::apply_changes`]: e.g. [`ChangeError::UnknownWorker`], or
    /// [`ChangeError::HasDependents`] when a remaining worker depends on it (use
    /// [`Supervisor::remove_workers`] to remove it together with its dependents).
    pub fn remove_worker(
        &mut self,
        now: Instant,
        name: &str,
        drain: bool,
    ) -> Result<Vec<Action>, ChangeError> {
        self.remove_workers(now, &[name], drain)
    }

    /// Removes several workers at once (dependents are stopped before their dependencies).
    ///
    /// # Errors
    /// As [`Supervisor::remove_worker`].
    pub fn remove_workers<S: AsRef<str>>(
        &mut self,
        now: Instant,
        names: &[S],
        drain: bool,
    ) -> Result<Vec<Action>, ChangeError> {
        self.apply_changes(
            now,
            Changes {
                remove: names.iter().map(|n| n.as_ref().to_owned()).collect(),
                drain,
                ..Changes::default()
            },
        )
    }

    /// Sets a worker's number of units: scaling up adds units `NAME#k` with the lowest free
    /// `k >= 1`; scaling down drains and stops the units with the highest replica numbers and
    /// forgets them once they exited. The same number is a no-op. See [`Changes::scale`].
    ///
    /// ```
    /// use amp_supervisor::lifecycle::{Action, Event, Notice, Options, Supervisor, WorkerSpec};
    /// use rand::{rngs::SmallRng, SeedableRng};
    /// use std::time::Instant;
    ///
    /// let specs = vec![WorkerSpec::new("api")];
    /// let mut sup = Supervisor::new(specs, Options::default(), SmallRng::seed_from_u64(1))?;
    /// let now = Instant::now();
    /// let _ = sup.handle(now, Event::Startup);
    /// let actions = sup.set_replicas(now, "api", 2)?;
    /// let added = sup.lookup("api#1").unwrap();
    /// assert_eq!(actions, vec![
    ///     Action::Notify(Notice::UnitAdded { unit: added }),
    ///     Action::Spawn { unit: added },
    /// ]);
    /// assert_eq!((added.index(), sup.unit_count()), (1, 2));
    /// assert_eq!(sup.unit_name(sup.unit_id(0).unwrap()), "api"); // names never change
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Supervisor::apply_changes`]: e.g. [`ChangeError::UnknownWorker`], or
    /// [`SpecError::ZeroReplicas`] for `replicas = 0`.
    pub fn set_replicas(
        &mut self,
        now: Instant,
        name: &str,
        replicas: u32,
    ) -> Result<Vec<Action>, ChangeError> {
        self.apply_changes(
            now,
            Changes {
                scale: vec![(name.to_owned(), replicas)],
                drain: true,
                ..Changes::default()
            },
        )
    }

    /// Gives an existing worker (found by `spec.name`) a new spec: its running units are stopped
    /// gracefully and started again with the new spec; other workers are not touched. Surplus
    /// units (fewer replicas) are drained and removed. See [`Changes::replace`].
    ///
    /// # Errors
    /// As [`Supervisor::apply_changes`]: e.g. [`ChangeError::UnknownWorker`], or
    /// [`ChangeError::Spec`] when the new spec is invalid or makes a cycle.
    pub fn replace_worker(
        &mut self,
        now: Instant,
        spec: WorkerSpec,
    ) -> Result<Vec<Action>, ChangeError> {
        self.apply_changes(
            now,
            Changes {
                replace: vec![spec],
                drain: true,
                ..Changes::default()
            },
        )
    }

    /// Validates `c` against the workers as they would be afterwards.
    fn check_changes(&self, c: &Changes) -> Result<(), ChangeError> {
        let mut seen = HashSet::new();
        let names = c
            .add
            .iter()
            .chain(&c.replace)
            .map(|s| s.name.as_str())
            .chain(c.scale.iter().map(|(n, _)| n.as_str()))
            .chain(c.remove.iter().map(String::as_str));
        for name in names {
            if !seen.insert(name) {
                return Err(ChangeError::Conflict {
                    name: name.to_owned(),
                });
            }
        }
        for spec in &c.add {
            if let Some(w) = self.graph.worker_index(&spec.name) {
                let name = spec.name.clone();
                return Err(if self.graph.workers[w].removing {
                    ChangeError::BeingRemoved { name }
                } else {
                    ChangeError::WorkerExists { name }
                });
            }
        }
        let changed = c
            .replace
            .iter()
            .map(|s| s.name.as_str())
            .chain(c.scale.iter().map(|(n, _)| n.as_str()))
            .chain(c.remove.iter().map(String::as_str));
        for name in changed {
            match self.graph.worker_index(name) {
                None => {
                    return Err(ChangeError::UnknownWorker {
                        name: name.to_owned(),
                    })
                }
                Some(w) if self.graph.workers[w].removing => {
                    return Err(ChangeError::BeingRemoved {
                        name: name.to_owned(),
                    })
                }
                Some(_) => {}
            }
        }
        let mut next = Vec::new();
        for node in self.graph.workers.iter().filter(|n| n.live && !n.removing) {
            let name = &node.spec.name;
            if c.remove.contains(name) {
                continue;
            }
            let mut spec = match c.replace.iter().find(|s| &s.name == name) {
                Some(s) => s.clone(),
                None => node.spec.clone(),
            };
            if let Some((_, replicas)) = c.scale.iter().find(|(n, _)| n == name) {
                spec.replicas = *replicas;
            }
            next.push(spec);
        }
        next.extend(c.add.iter().cloned());
        validate(&next).map_err(|e| match e {
            SpecError::UnknownDependency { worker, dependency } => {
                if c.remove.contains(&dependency) {
                    ChangeError::HasDependents {
                        worker: dependency,
                        dependent: worker,
                    }
                } else if self.graph.worker_index(&dependency).is_some() {
                    ChangeError::DependsOnRemoved { worker, dependency }
                } else {
                    ChangeError::Spec(SpecError::UnknownDependency { worker, dependency })
                }
            }
            e => ChangeError::Spec(e),
        })
    }

    /// The index of a worker `check_changes` found.
    fn existing(&self, name: &str) -> usize {
        self.graph
            .worker_index(name)
            .unwrap_or_else(|| unreachable!("worker {name:?} was checked"))
    }

    /// Gives every unit the graph gained its runtime state and announces it.
    fn sync_units(&mut self, out: &mut Vec<Action>) {
        while self.units.len() < self.graph.units.len() {
            let unit = UnitId::from_index(self.units.len());
            self.units.push(UnitRt::new());
            out.push(Action::Notify(Notice::UnitAdded { unit }));
        }
    }

    /// Worker `w` replaced: its kept units restart (their stops begin under the old spec), then
    /// the spec changes and the unit count follows the new `replicas`.
    fn replace(
        &mut self,
        now: Instant,
        w: usize,
        spec: WorkerSpec,
        drain: bool,
        out: &mut Vec<Action>,
    ) {
        let kept: Vec<usize> = self.counted_units(w).collect();
        let n = spec.replicas as usize;
        for &i in kept.iter().take(n) {
            self.replace_unit(now, i, out);
        }
        self.graph.set_spec(w, spec);
        self.resize(now, w, &kept, drain, out);
    }

    /// Brings worker `w`'s units (`kept`: those not being removed, by replica number) to
    /// `spec.replicas`: adds units with the lowest free replica numbers, or retires the highest.
    fn resize(
        &mut self,
        now: Instant,
        w: usize,
        kept: &[usize],
        drain: bool,
        out: &mut Vec<Action>,
    ) {
        let n = self.graph.workers[w].spec.replicas as usize;
        if n > kept.len() {
            for replica in self.graph.free_replicas(w, n - kept.len()) {
                self.graph.add_replica(w, replica);
            }
            self.sync_units(out);
        } else {
            for &i in kept[n..].iter().rev() {
                self.retire(now, i, drain, out);
            }
        }
    }

    /// Unit `i`'s worker got a new spec: a down unit starts over (a stopped one stays stopped);
    /// a running one is stopped gracefully now and goes back to pending once it exited.
    fn replace_unit(&mut self, now: Instant, i: usize, out: &mut Vec<Action>) {
        let u = &mut self.units[i];
        match u.state {
            UnitState::Pending
            | UnitState::Backoff { .. }
            | UnitState::Completed
            | UnitState::Failed => {
                u.reset_for_manual_start();
                u.state = UnitState::Pending;
                u.fate = Fate::Keep;
            }
            UnitState::Stopped => u.fate = Fate::Keep,
            UnitState::Starting { .. } | UnitState::Ready { .. } if u.stop_wanted.is_none() => {
                u.fate = Fate::Replace;
                self.begin_stop(now, i, StopCause::Replaced, false, out);
            }
            // Spawning: stopped by `settle` once it has its process. Draining, stopping or
            // waiting for an ordered stop: it comes back (or stays down) when it exited.
            UnitState::Spawning
            | UnitState::Starting { .. }
            | UnitState::Ready { .. }
            | UnitState::Draining { .. }
            | UnitState::Stopping { .. } => u.fate = Fate::Replace,
        }
    }

    /// Unit `i` is to be removed: without a process it is forgotten now; a ready one drains
    /// first if `drain`; any other is stopped (by `settle`, in order) and forgotten once it
    /// exited.
    fn retire(&mut self, now: Instant, i: usize, drain: bool, out: &mut Vec<Action>) {
        let u = &mut self.units[i];
        u.fate = Fate::Remove;
        match u.state {
            UnitState::Pending
            | UnitState::Backoff { .. }
            | UnitState::Completed
            | UnitState::Failed
            | UnitState::Stopped => self.forget(i, out),
            UnitState::Ready { .. } if drain && u.stop_wanted.is_none() => {
                self.begin_drain(now, i, out);
            }
            UnitState::Draining { .. } if drain => {}
            UnitState::Stopping { .. } => {}
            UnitState::Spawning
            | UnitState::Starting { .. }
            | UnitState::Ready { .. }
            | UnitState::Draining { .. } => {
                u.stop_wanted.get_or_insert(StopCause::Removed);
            }
        }
    }

    /// Unit `i` (without a process) is removed for good; its worker too if it was being removed
    /// and this was its last unit.
    pub(super) fn forget(&mut self, i: usize, out: &mut Vec<Action>) {
        let u = &mut self.units[i];
        u.state = UnitState::Stopped;
        u.stop_wanted = None;
        u.history.clear();
        u.failure = None;
        u.spawn_error = None;
        let w = self.graph.forget_unit(i);
        out.push(Action::Notify(Notice::UnitRemoved { unit: self.id(i) }));
        let node = &self.graph.workers[w];
        if node.removing && node.units.is_empty() {
            let worker = node.spec.name.clone();
            self.graph.forget_worker(w);
            out.push(Action::Notify(Notice::WorkerRemoved { worker }));
        }
    }
}
