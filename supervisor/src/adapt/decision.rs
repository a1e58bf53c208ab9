//! What the controller outputs: [`AdaptAction`]s for the event loop, and [`Decision`]s — every
//! change with its evidence — for the log and `ampctl tune`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A decision's id, unique within one controller (1, 2, …).
pub type DecisionId = u64;

/// What a decision changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Target {
    /// One worker's setting for the kind.
    Worker {
        /// The unit.
        unit: usize,
    },
    /// The kind as a whole (batch, timeout).
    Kind,
    /// Several workers of the kind (a canary, a rollout step, a rollback).
    Workers {
        /// The units.
        units: Vec<usize>,
    },
    /// A worker group (autoscaling).
    Group {
        /// The group's name (`[workers.NAME]`).
        worker: String,
    },
}

/// The change itself, before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Change {
    /// A worker's in-flight credit window.
    Window {
        /// In force before.
        from: u32,
        /// Proposed.
        to: u32,
    },
    /// The kind's dispatch batch.
    Batch {
        /// In force before.
        from: u32,
        /// Proposed.
        to: u32,
    },
    /// The kind's run timeout (ms).
    Timeout {
        /// In force before (`None`: none).
        from_ms: Option<f64>,
        /// Proposed.
        to_ms: f64,
    },
    /// Worker-applied parameters tried on a canary subset, compared with a control subset.
    Canary {
        /// Parameters in force.
        from: BTreeMap<String, f64>,
        /// Parameters tried.
        to: BTreeMap<String, f64>,
        /// The control subset.
        control: Vec<usize>,
    },
    /// A canary's parameters rolled out to the rest of the kind's workers.
    Adopt {
        /// The canary decision.
        canary: DecisionId,
        /// Parameters adopted.
        params: BTreeMap<String, f64>,
    },
    /// A canary's workers put back on the parameters in force.
    Rollback {
        /// The canary decision.
        canary: DecisionId,
        /// Parameters restored.
        params: BTreeMap<String, f64>,
    },
    /// A worker group's replica count.
    Replicas {
        /// Before.
        from: u32,
        /// Proposed.
        to: u32,
        /// The replica drained first when scaling down.
        drain: Option<usize>,
    },
}

/// Why: a sentence and the figures before and after (names are self-describing, with units).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The rule that fired, in words.
    pub reason: String,
    /// Figures that motivated the decision.
    pub before: BTreeMap<String, f64>,
    /// Figures expected or measured after it (e.g. the new limit, the canary's result).
    pub after: BTreeMap<String, f64>,
}

impl Evidence {
    /// Evidence with a reason and no figures yet.
    #[must_use]
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            ..Self::default()
        }
    }

    /// Adds a "before" figure.
    #[must_use]
    pub fn before(mut self, name: &str, value: f64) -> Self {
        self.before.insert(name.to_owned(), value);
        self
    }

    /// Adds an "after" figure.
    #[must_use]
    pub fn after(mut self, name: &str, value: f64) -> Self {
        self.after.insert(name.to_owned(), value);
        self
    }
}

/// Where a decision stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionState {
    /// Advise mode: waiting for [`Controller::apply`](super::Controller::apply).
    Proposed,
    /// Carried out (auto mode, or applied).
    Applied,
    /// A newer decision about the same setting replaced it before it was applied.
    Superseded,
    /// A canary: its parameters are on the canary subset, the comparison is running.
    Running,
    /// A canary judged better; its parameters are (being) rolled out.
    Adopted,
    /// A canary judged worse or inconclusive; its workers went back.
    RolledBack,
}

/// One decision: what changes, where, why, and its state. Emitted as
/// [`AdaptAction::Event`] whenever it is made or its state changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Its id.
    pub id: DecisionId,
    /// When (seconds since the controller started).
    pub at_s: f64,
    /// The kind it concerns (for autoscaling: the worker group).
    pub kind: String,
    /// What it changes.
    pub target: Target,
    /// The change.
    pub change: Change,
    /// Why.
    pub evidence: Evidence,
    /// Where it stands.
    pub state: DecisionState,
}

/// Something for the event loop to carry out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum AdaptAction {
    /// `KindRouter::set_window(unit, window)` on the kind's router.
    SetWindow {
        /// The kind.
        kind: String,
        /// The unit.
        unit: usize,
        /// The new window.
        window: u32,
    },
    /// `KindRouter::set_batch(batch)` on the kind's router.
    SetBatch {
        /// The kind.
        kind: String,
        /// The new per-worker batch.
        batch: u32,
    },
    /// `KindRouter::set_cost(unit, cost)` on the kind's router: the worker's measured
    /// service-time factor relative to the kind's other workers, so that dispatch prefers the
    /// workers expected to finish a task soonest. A measurement kept up to date every tick (in
    /// auto mode), not a decision: it makes no event. `None` forgets it.
    SetCost {
        /// The kind.
        kind: String,
        /// The unit.
        unit: usize,
        /// The factor (1.0: the kind's median worker), or `None`.
        cost: Option<f64>,
    },
    /// The kind's run timeout for tasks dispatched from now on.
    SetTimeout {
        /// The kind.
        kind: String,
        /// The timeout.
        timeout: Duration,
    },
    /// Merge `extra` into the unit's `WorkerParams.extra` and send it
    /// `ToWorker::Adjust { params }` (see [`AdaptAction::worker_params`]).
    Adjust {
        /// The unit.
        unit: usize,
        /// Parameter values to set.
        extra: BTreeMap<String, f64>,
    },
    /// Run `replicas` replicas of the worker group (start new ones, or stop the drained one).
    ScaleTo {
        /// The group (`[workers.NAME]`).
        worker: String,
        /// The replica count.
        replicas: u32,
    },
    /// Stop giving `unit` new tasks (`KindRouter::set_draining` on all its kinds, control
    /// `Drain`); stop it once nothing is in flight. Precedes a scale-down.
    Drain {
        /// The group.
        worker: String,
        /// The unit.
        unit: usize,
    },
    /// A decision made or changed: log it and keep it for `ampctl tune`.
    Event(Decision),
}

impl AdaptAction {
    /// For [`AdaptAction::Adjust`]: `base` with `extra` merged in, ready for
    /// `ToWorker::Adjust`. `None` for other actions.
    #[must_use]
    pub fn worker_params(
        &self,
        base: &amp_ipc::proto::WorkerParams,
    ) -> Option<amp_ipc::proto::WorkerParams> {
        match self {
            Self::Adjust { extra, .. } => {
                let mut params = base.clone();
                params
                    .extra
                    .extend(extra.iter().map(|(k, v)| (k.clone(), *v)));
                Some(params)
            }
            _ => None,
        }
    }
}
