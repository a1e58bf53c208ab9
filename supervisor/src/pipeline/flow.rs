//! [`Pipeline`]: chains of tasks across kinds (routes), fan-out groups (subtasks and route
//! fan-outs) and feedback loops (loopbacks, `refine_kind`), answering the **original**
//! submitter exactly once with the chain's path.
//!
//! The pipeline never submits anything itself: it returns [`FlowAction`]s. Tasks it wants run
//! are submitted by the event loop with an *internal* submitter
//! (`Submitter { client: PIPELINE_CLIENT, tag }`), so their answers come back to
//! [`Pipeline::delivered`] whatever way they take (delivery, a coalesced run, a cache hit, a
//! refused submission). See the [module documentation](super) for the calls the event loop
//! makes.

use super::fanout::{FanOutError, Group, GroupStatus};
use super::loopback::{decide, LoopDecision, LoopPolicy, LoopState, LoopStop};
use super::routes::{
    classify, failure_message, status_of, RouteEvent, RouteTable, Step, StepStatus, Via,
};
use crate::config::{Config, FailurePolicy, FanIn};
use crate::delivery::{FinalOutcome, Submitter, TaskId};
use std::collections::HashMap;

/// `Submitter::client` of the tasks the pipeline asks for. No client connection may use it.
pub const PIPELINE_CLIENT: u64 = u64::MAX;

/// What the event loop does for the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum FlowAction {
    /// Write this final answer to a client (as a `Deliver` from the delivery core). `id` is the
    /// task the client submitted; `path` is the chain it went through (`None`: a plain task).
    Answer {
        /// The client.
        to: Submitter,
        /// The task it submitted.
        id: TaskId,
        /// The final outcome of the whole chain.
        outcome: FinalOutcome,
        /// The chain's steps, for a task that went through the pipeline.
        path: Option<Vec<Step>>,
    },
    /// Submit a new task with `to` as its submitter (through the cache for a deterministic
    /// kind), then call [`Pipeline::bind`] with its id. If it cannot be submitted, answer `to`
    /// through [`Pipeline::delivered`] with `FinalOutcome::Rejected`.
    Submit {
        /// The internal submitter to use.
        to: Submitter,
        /// Kind id.
        kind: u32,
        /// Priority class (the chain's).
        class: usize,
        /// Payload.
        payload: Vec<u8>,
        /// The task it comes from (`NewTask::parent`).
        parent: Option<TaskId>,
    },
    /// This task is no longer needed (its group completed or failed, or its parent is running
    /// again): `Delivery::cancel` it. Its answer, if any, is ignored.
    Cancel {
        /// The task.
        id: TaskId,
    },
}

/// What the event loop passes to the delivery core for a loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopVerdict {
    /// Pass `Outcome::Loopback { payload, reason }` on: the task goes round again (same id,
    /// same kind).
    Requeue,
    /// Pass `Outcome::Ok(payload)` instead: the pipeline turns the answer into a loop-limited
    /// result or sends the payload to the kind's `refine_kind`.
    Complete,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Chains started (a root task whose answer the pipeline took over).
    pub chains_started: u64,
    /// Chains answered.
    pub chains_finished: u64,
    /// Tasks asked for ([`FlowAction::Submit`]).
    pub spawned: u64,
    /// Fan-out groups started.
    pub groups: u64,
    /// Groups completed with a combined result.
    pub groups_completed: u64,
    /// Groups failed.
    pub groups_failed: u64,
    /// Tasks cancelled because nothing waited for them any more.
    pub cancelled: u64,
    /// Loopbacks followed.
    pub loops: u64,
    /// Loops stopped by `max_loops` or `min_improvement`.
    pub loop_stops: u64,
    /// Answers for internal submitters nobody waited for (cancelled children, duplicates).
    pub ignored: u64,
}

/// A chain in progress, for `ampctl tasks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainView {
    /// The task the client submitted.
    pub root: TaskId,
    /// Clients waiting for it.
    pub waiters: usize,
    /// Its steps so far.
    pub path: Vec<Step>,
}

/// Where a logical stage's result goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// To the chain's waiters.
    Chain,
    /// Into slot `index` of group `group`.
    Child { group: u64, index: usize },
}

/// A logical stage: whose result is awaited, and what follows it.
#[derive(Debug, Clone)]
struct Stage {
    kind: u32,
    class: usize,
    chain: Option<u64>,
    step: Option<usize>,
    reply: Reply,
    /// Route target with `on_failure = "continue"`: its input, passed on if it fails.
    fallback: Option<Vec<u8>>,
    /// Apply the kind's routes to the result (not for the owner of a route fan-out).
    route: bool,
    /// The task producing the result (for `NewTask::parent`).
    task: Option<TaskId>,
}

/// A task the pipeline asked for.
#[derive(Debug)]
struct Node {
    /// What runs (differs from `stage.kind` for a refine step).
    kind: u32,
    stage: Stage,
    /// `Some(x)`: a refine step whose result re-enters kind `x`.
    refine_of: Option<u32>,
    loops: LoopState,
    task: Option<TaskId>,
}

/// A fan-out group and whom it answers.
#[derive(Debug)]
struct GroupRec {
    group: Group,
    /// `None` until a subtask parent's own answer arrives.
    owner: Option<Stage>,
    /// Internal tags of the children, by index.
    children: Vec<u64>,
    /// The subtask parent, if it is one.
    parent: Option<TaskId>,
    /// A subtask group that failed before its parent answered: the outcome to give it.
    early: Option<FinalOutcome>,
}

#[derive(Debug)]
struct Chain {
    root: TaskId,
    waiters: Vec<Submitter>,
    path: Vec<Step>,
}

/// What a loopback decided, applied when the task's answer arrives.
#[derive(Debug, Clone)]
enum AfterLoop {
    Stop {
        why: LoopStop,
        loops: u32,
        reason: String,
    },
    Refine {
        kind: u32,
        state: LoopState,
    },
}

/// The pipeline core (see the [module documentation](super)).
#[derive(Debug)]
pub struct Pipeline {
    names: Vec<String>,
    routes: RouteTable,
    fan: Vec<(FanIn, FailurePolicy)>,
    loop_policy: Vec<LoopPolicy>,
    nodes: HashMap<u64, Node>,
    task_nodes: HashMap<TaskId, u64>,
    next_tag: u64,
    chains: HashMap<u64, Chain>,
    root_chains: HashMap<TaskId, u64>,
    next_chain: u64,
    groups: HashMap<u64, GroupRec>,
    parent_groups: HashMap<TaskId, u64>,
    next_group: u64,
    loops: HashMap<TaskId, LoopState>,
    after_loop: HashMap<TaskId, AfterLoop>,
    /// The last chain answered: later answers for the same root (joined submitters, which
    /// the delivery core emits right after the first) get the same result.
    last_root: Option<(TaskId, FinalOutcome, Vec<Step>)>,
    stats: FlowStats,
}

impl Pipeline {
    /// The pipeline of `config`. Kind ids are indices into `config.kinds` (its name order), as
    /// everywhere else in ampd.
    #[must_use]
    pub fn new(config: &Config) -> Self {
        let names: Vec<String> = config.kinds.keys().cloned().collect();
        let id = |n: &str| {
            names
                .iter()
                .position(|k| k == n)
                .and_then(|i| u32::try_from(i).ok())
        };
        let flows: Vec<_> = names.iter().map(|n| config.pipeline.kind(n)).collect();
        Self {
            routes: RouteTable::new(config),
            fan: flows.iter().map(|f| (f.fan_in, f.child_failure)).collect(),
            loop_policy: flows
                .iter()
                .map(|f| LoopPolicy::from_config(f, id))
                .collect(),
            names,
            nodes: HashMap::new(),
            task_nodes: HashMap::new(),
            next_tag: 1,
            chains: HashMap::new(),
            root_chains: HashMap::new(),
            next_chain: 1,
            groups: HashMap::new(),
            parent_groups: HashMap::new(),
            next_group: 1,
            loops: HashMap::new(),
            after_loop: HashMap::new(),
            last_root: None,
            stats: FlowStats::default(),
        }
    }

    /// The largest `max_loops` of any kind: give it to `DeliveryOptions::max_loops` so the
    /// delivery core never stops a loop before the pipeline does.
    #[must_use]
    pub fn max_loops_bound(&self) -> u32 {
        self.loop_policy
            .iter()
            .map(|p| p.max_loops)
            .max()
            .unwrap_or(0)
    }

    /// Counters.
    #[must_use]
    pub const fn stats(&self) -> FlowStats {
        self.stats
    }

    /// Chains in progress, by root id.
    #[must_use]
    pub fn chains(&self) -> Vec<ChainView> {
        let mut out: Vec<ChainView> = self
            .chains
            .values()
            .map(|c| ChainView {
                root: c.root,
                waiters: c.waiters.len(),
                path: c.path.clone(),
            })
            .collect();
        out.sort_by_key(|c| c.root);
        out
    }

    /// Tasks the pipeline asked for that have not been answered yet.
    #[must_use]
    pub fn pending_tasks(&self) -> usize {
        self.nodes.len()
    }

    /// The event loop submitted the task asked for with internal submitter `to` as `id`.
    pub fn bind(&mut self, to: Submitter, id: TaskId) {
        let Some(node) = self.nodes.get_mut(&to.tag) else {
            return;
        };
        node.task = Some(id);
        self.task_nodes.insert(id, to.tag);
        if let (Some(c), Some(s)) = (node.stage.chain, node.stage.step) {
            if let Some(step) = self.chains.get_mut(&c).and_then(|c| c.path.get_mut(s)) {
                step.task = Some(id);
            }
        }
    }

    /// A worker running task `parent` (of kind `parent_kind`, class `class`) emitted a subtask
    /// of kind `kind`: submit it with the returned internal submitter, then [`Self::bind`] it.
    /// The parent's answer then waits for its children (its kind's `fan_in`).
    ///
    /// # Errors
    /// [`FanOutError::Sealed`] if the parent's answer already came (refuse the subtask).
    pub fn subtask(
        &mut self,
        parent: TaskId,
        parent_kind: u32,
        kind: u32,
        class: usize,
    ) -> Result<Submitter, FanOutError> {
        let gid = match self.parent_groups.get(&parent) {
            Some(&g) => g,
            None => {
                let (rule, policy) = self.fan_rules(parent_kind);
                let g = self.new_group(Group::new(rule, policy), None, Some(parent));
                self.parent_groups.insert(parent, g);
                g
            }
        };
        let rec = self.groups.get_mut(&gid).ok_or(FanOutError::Sealed)?;
        let index = rec.group.add_child()?;
        // The parent's chain, when the parent is itself a pipeline task.
        let chain = self
            .task_nodes
            .get(&parent)
            .and_then(|t| self.nodes.get(t))
            .and_then(|n| n.stage.chain);
        let stage = Stage {
            kind,
            class,
            chain,
            step: None,
            reply: Reply::Child { group: gid, index },
            fallback: None,
            route: true,
            task: Some(parent),
        };
        let tag = self.add_node(kind, stage, None, LoopState::default(), Via::Subtask);
        if let Some(rec) = self.groups.get_mut(&gid) {
            rec.children.push(tag);
        }
        Ok(Submitter {
            client: PIPELINE_CLIENT,
            tag,
        })
    }

    /// Task `id` goes round again from the start (requeued after a lost worker, a retry, a
    /// loopback): the subtasks it emitted so far are dropped (it will emit them again). Call
    /// it for every `Requeue` and `ScheduleRetry` action.
    pub fn task_restarted(&mut self, id: TaskId, out: &mut Vec<FlowAction>) {
        if let Some(gid) = self.parent_groups.remove(&id) {
            if let Some(rec) = self.groups.remove(&gid) {
                self.cancel_children(&rec, &rec.group.pending(), out);
            }
        }
    }

    /// A worker answered task `id` of kind `kind` with a loopback reporting `score` (NaN =
    /// none) and `reason`. Call it only for a completion the delivery core will accept (the
    /// task is in flight on that unit with that attempt), then pass the outcome the verdict
    /// names to `Delivery::completed`.
    pub fn loopback(&mut self, id: TaskId, kind: u32, score: f64, reason: &str) -> LoopVerdict {
        let Some(policy) = self.loop_policy.get(kind as usize).copied() else {
            return LoopVerdict::Requeue;
        };
        // A node carries its stage's loop count across refine rounds; a refine step's own
        // loopbacks count from zero.
        let initial = self
            .task_nodes
            .get(&id)
            .and_then(|t| self.nodes.get(t))
            .filter(|n| n.refine_of.is_none())
            .map_or_else(LoopState::default, |n| n.loops);
        let state = self.loops.entry(id).or_insert(initial);
        match decide(&policy, kind, state, score) {
            LoopDecision::Again { kind: k } if k == kind => {
                self.stats.loops += 1;
                LoopVerdict::Requeue
            }
            LoopDecision::Again { kind: k } => {
                let state = *state;
                self.loops.remove(&id);
                self.stats.loops += 1;
                self.after_loop
                    .insert(id, AfterLoop::Refine { kind: k, state });
                LoopVerdict::Complete
            }
            LoopDecision::Stop { why, loops } => {
                self.loops.remove(&id);
                self.stats.loop_stops += 1;
                self.after_loop.insert(
                    id,
                    AfterLoop::Stop {
                        why,
                        loops,
                        reason: reason.to_owned(),
                    },
                );
                LoopVerdict::Complete
            }
        }
    }

    /// Whether the final answer of task `id` (kind `kind`) for `to` goes to `to` as it is —
    /// the pipeline has nothing to do with it (no route, chain, fan-in or loop decision) — in
    /// which case the pipeline forgets the task as [`Self::delivered`] would and the caller
    /// answers `to` itself. The event loop's hot path: a plain task's answer skips the
    /// [`FlowAction`] round.
    pub fn take_plain(&mut self, to: Submitter, id: TaskId, kind: u32) -> bool {
        let plain = to.client != PIPELINE_CLIENT
            && (self.root_chains.is_empty() || !self.root_chains.contains_key(&id))
            && !matches!(&self.last_root, Some((root, ..)) if *root == id)
            // The emptiness checks spare the hashing.
            && !self.routes.has_routes(kind)
            && (self.parent_groups.is_empty() || !self.parent_groups.contains_key(&id))
            && (self.after_loop.is_empty() || !self.after_loop.contains_key(&id));
        if plain && !self.loops.is_empty() {
            self.loops.remove(&id);
        }
        plain
    }

    /// The final answer of task `id` (kind `kind`, class `class`) for submitter `to`: every
    /// `Deliver` of the delivery core, every answer a coalesced run or cache hit gives, and
    /// every refusal of a submission the pipeline asked for (`id` may then be `TaskId(0)`).
    /// Appends what to do to `out`; a task the pipeline has nothing to do with comes back as
    /// one [`FlowAction::Answer`] with `path: None` (see [`Self::take_plain`]).
    pub fn delivered(
        &mut self,
        to: Submitter,
        id: TaskId,
        kind: u32,
        class: usize,
        outcome: FinalOutcome,
        out: &mut Vec<FlowAction>,
    ) {
        if self.take_plain(to, id, kind) {
            out.push(FlowAction::Answer {
                to,
                id,
                outcome,
                path: None,
            });
            return;
        }
        let (stage, node_kind, refine_of, loops) = if to.client == PIPELINE_CLIENT {
            let Some(node) = self.nodes.remove(&to.tag) else {
                self.stats.ignored += 1;
                return;
            };
            if let Some(t) = node.task {
                self.task_nodes.remove(&t);
            }
            let own = self.loops.remove(&id);
            let loops = if node.refine_of.is_some() {
                node.loops
            } else {
                own.unwrap_or(node.loops)
            };
            (node.stage, node.kind, node.refine_of, loops)
        } else {
            let joined = if self.root_chains.is_empty() {
                None
            } else {
                self.root_chains.get(&id).copied()
            };
            if let Some(c) = joined {
                if let Some(chain) = self.chains.get_mut(&c) {
                    chain.waiters.push(to);
                }
                return;
            }
            if let Some((root, outcome, path)) = &self.last_root {
                if *root == id {
                    out.push(FlowAction::Answer {
                        to,
                        id,
                        outcome: outcome.clone(),
                        path: Some(path.clone()),
                    });
                    return;
                }
            }
            // Plain tasks were answered above (`take_plain`); unmanaged ones get here with a
            // loop decision (a stop, which changes the outcome).
            let managed = self.routes.has_routes(kind)
                || (!self.parent_groups.is_empty() && self.parent_groups.contains_key(&id))
                || (!self.after_loop.is_empty()
                    && matches!(self.after_loop.get(&id), Some(AfterLoop::Refine { .. })));
            if !managed {
                if !self.loops.is_empty() {
                    self.loops.remove(&id);
                }
                let stop = if self.after_loop.is_empty() {
                    None
                } else {
                    self.after_loop.remove(&id)
                };
                let outcome = match (stop, outcome) {
                    (Some(stop), FinalOutcome::Ok(payload)) => loop_limited(stop, payload),
                    (_, o) => o,
                };
                out.push(FlowAction::Answer {
                    to,
                    id,
                    outcome,
                    path: None,
                });
                return;
            }
            let c = self.next_chain;
            self.next_chain += 1;
            self.chains.insert(
                c,
                Chain {
                    root: id,
                    waiters: vec![to],
                    path: vec![Step {
                        kind: self.name(kind),
                        task: Some(id),
                        via: Via::Submitted,
                        status: StepStatus::Running,
                    }],
                },
            );
            self.root_chains.insert(id, c);
            self.stats.chains_started += 1;
            let stage = Stage {
                kind,
                class,
                chain: Some(c),
                step: Some(0),
                reply: Reply::Chain,
                fallback: None,
                route: true,
                task: Some(id),
            };
            let loops = self.loops.remove(&id).unwrap_or_default();
            (stage, kind, None, loops)
        };
        let mut outcome = outcome;
        let mut stage = stage;
        stage.task = (id != TaskId(0)).then_some(id).or(stage.task);

        // A loopback decided earlier.
        match (self.after_loop.remove(&id), outcome) {
            (Some(stop @ AfterLoop::Stop { .. }), FinalOutcome::Ok(payload)) => {
                outcome = loop_limited(stop, payload);
            }
            (Some(AfterLoop::Refine { kind: r, state }), FinalOutcome::Ok(payload)) => {
                self.set_step(&stage, StepStatus::Refining);
                let parent = stage.task;
                let tag = self.add_node(r, stage, Some(node_kind), state, Via::Refine);
                self.submit(tag, payload, parent, out);
                return;
            }
            (_, o) => outcome = o,
        }
        // A refine step's result re-enters the looping kind.
        if let Some(back) = refine_of {
            if let FinalOutcome::Ok(payload) = outcome {
                self.set_step(&stage, StepStatus::Ok);
                let parent = stage.task;
                let tag = self.add_node(back, stage, None, loops, Via::Loop);
                self.submit(tag, payload, parent, out);
                return;
            }
        }
        // A subtask parent: its answer seals its group (the first answer only: another waiter
        // of the same task, e.g. a coalesced one, gets the task's own result).
        if let Some(&gid) = self.parent_groups.get(&id) {
            if let Some(rec) = self.groups.get_mut(&gid) {
                if rec.owner.is_none() {
                    if let Some(early) = rec.early.take() {
                        // The children failed it already.
                        self.parent_groups.remove(&id);
                        self.groups.remove(&gid);
                        let outcome = if is_success(&outcome) { early } else { outcome };
                        self.finish_stage(stage, outcome, false, out);
                        return;
                    }
                    rec.owner = Some(stage);
                    let status = match &outcome {
                        FinalOutcome::Ok(b) | FinalOutcome::LoopLimit { payload: b, .. } => {
                            rec.group.seal(b.clone())
                        }
                        other => rec.group.parent_failed(&failure_message(other)),
                    };
                    self.group_status(gid, status, Some(outcome), out);
                    return;
                }
            }
        }
        self.finish_stage(stage, outcome, false, out);
    }

    // ---- internals ----

    fn name(&self, kind: u32) -> String {
        self.names
            .get(kind as usize)
            .cloned()
            .unwrap_or_else(|| format!("kind{kind}"))
    }

    fn fan_rules(&self, kind: u32) -> (FanIn, FailurePolicy) {
        self.fan
            .get(kind as usize)
            .copied()
            .unwrap_or((FanIn::All, FailurePolicy::FailParent))
    }

    fn new_group(&mut self, group: Group, owner: Option<Stage>, parent: Option<TaskId>) -> u64 {
        let g = self.next_group;
        self.next_group += 1;
        self.groups.insert(
            g,
            GroupRec {
                group,
                owner,
                children: Vec::new(),
                parent,
                early: None,
            },
        );
        self.stats.groups += 1;
        g
    }

    /// Registers a node running `kind` for `stage`, with a path step when it has a chain.
    fn add_node(
        &mut self,
        kind: u32,
        mut stage: Stage,
        refine_of: Option<u32>,
        loops: LoopState,
        via: Via,
    ) -> u64 {
        if let Some(c) = stage.chain {
            let name = self.name(kind);
            if let Some(chain) = self.chains.get_mut(&c) {
                chain.path.push(Step {
                    kind: name,
                    task: None,
                    via,
                    status: StepStatus::Running,
                });
                stage.step = Some(chain.path.len() - 1);
            }
        }
        let tag = self.next_tag;
        self.next_tag += 1;
        self.nodes.insert(
            tag,
            Node {
                kind,
                stage,
                refine_of,
                loops,
                task: None,
            },
        );
        tag
    }

    fn submit(
        &mut self,
        tag: u64,
        payload: Vec<u8>,
        parent: Option<TaskId>,
        out: &mut Vec<FlowAction>,
    ) {
        let Some(node) = self.nodes.get(&tag) else {
            return;
        };
        self.stats.spawned += 1;
        out.push(FlowAction::Submit {
            to: Submitter {
                client: PIPELINE_CLIENT,
                tag,
            },
            kind: node.kind,
            class: node.stage.class,
            payload,
            parent,
        });
    }

    fn set_step(&mut self, stage: &Stage, status: StepStatus) {
        if let (Some(c), Some(s)) = (stage.chain, stage.step) {
            if let Some(step) = self.chains.get_mut(&c).and_then(|c| c.path.get_mut(s)) {
                step.status = status;
            }
        }
    }

    /// The effective result of a stage: route it, skip a failed optional stage, or hand it to
    /// whoever waits.
    fn finish_stage(
        &mut self,
        stage: Stage,
        outcome: FinalOutcome,
        skipped: bool,
        out: &mut Vec<FlowAction>,
    ) {
        let status = if skipped {
            StepStatus::Skipped
        } else {
            status_of(&outcome)
        };
        self.set_step(&stage, status);
        if stage.route {
            let tags = self.routes.has_tag_routes(stage.kind);
            if let Some((event, payload)) = classify(&outcome, tags) {
                let targets: Vec<(u32, FailurePolicy)> = self
                    .routes
                    .next(stage.kind, event)
                    .iter()
                    .map(|r| (r.to, r.on_failure))
                    .collect();
                if let [(to, on_failure)] = targets[..] {
                    let next = Stage {
                        kind: to,
                        class: stage.class,
                        chain: stage.chain,
                        step: None,
                        reply: stage.reply,
                        fallback: (on_failure == FailurePolicy::Continue).then(|| payload.clone()),
                        route: true,
                        task: None,
                    };
                    let tag = self.add_node(to, next, None, LoopState::default(), Via::Route);
                    self.submit(tag, payload, stage.task, out);
                    return;
                }
                if targets.len() > 1 {
                    self.route_fan_out(stage, &targets, &payload, out);
                    return;
                }
                if event == RouteEvent::Err {
                    if let Some(input) = stage.fallback.clone() {
                        // `on_failure = "continue"`: the failed stage is skipped, its input
                        // passing on as its output (its `ok` routes apply).
                        let skipped = Stage {
                            fallback: None,
                            ..stage
                        };
                        self.finish_stage(skipped, FinalOutcome::Ok(input), true, out);
                        return;
                    }
                }
            }
        }
        self.reply(&stage, outcome, out);
    }

    fn route_fan_out(
        &mut self,
        stage: Stage,
        targets: &[(u32, FailurePolicy)],
        payload: &[u8],
        out: &mut Vec<FlowAction>,
    ) {
        let (rule, policy) = self.fan_rules(stage.kind);
        let parent = stage.task;
        let owner = Stage {
            route: false,
            ..stage.clone()
        };
        let gid = self.new_group(Group::new(rule, policy), Some(owner), None);
        for &(to, on_failure) in targets {
            let Some(rec) = self.groups.get_mut(&gid) else {
                return;
            };
            let Ok(index) = rec.group.add_child() else {
                return;
            };
            let child = Stage {
                kind: to,
                class: stage.class,
                chain: stage.chain,
                step: None,
                reply: Reply::Child { group: gid, index },
                fallback: (on_failure == FailurePolicy::Continue).then(|| payload.to_vec()),
                route: true,
                task: None,
            };
            let tag = self.add_node(to, child, None, LoopState::default(), Via::FanOut);
            if let Some(rec) = self.groups.get_mut(&gid) {
                rec.children.push(tag);
            }
            self.submit(tag, payload.to_vec(), parent, out);
        }
        if let Some(rec) = self.groups.get_mut(&gid) {
            let status = rec.group.seal(Vec::new());
            self.group_status(gid, status, None, out);
        }
    }

    /// Hands a stage's final result to its chain or group.
    fn reply(&mut self, stage: &Stage, outcome: FinalOutcome, out: &mut Vec<FlowAction>) {
        match stage.reply {
            Reply::Chain => {
                let Some(c) = stage.chain else { return };
                let Some(chain) = self.chains.remove(&c) else {
                    return;
                };
                self.root_chains.remove(&chain.root);
                self.stats.chains_finished += 1;
                for to in &chain.waiters {
                    out.push(FlowAction::Answer {
                        to: *to,
                        id: chain.root,
                        outcome: outcome.clone(),
                        path: Some(chain.path.clone()),
                    });
                }
                self.last_root = Some((chain.root, outcome, chain.path));
            }
            Reply::Child { group, index } => {
                let result = match &outcome {
                    FinalOutcome::Ok(b) | FinalOutcome::LoopLimit { payload: b, .. } => {
                        Ok(b.clone())
                    }
                    other => Err(failure_message(other)),
                };
                let Some(rec) = self.groups.get_mut(&group) else {
                    self.stats.ignored += 1;
                    return;
                };
                let status = rec.group.child_done(index, result);
                if status == GroupStatus::Ignored {
                    self.stats.ignored += 1;
                }
                self.group_status(group, status, None, out);
            }
        }
    }

    /// Acts on a group's new status: on completion or failure the group is removed, its
    /// running children cancelled and its owner finished. `own_failure`: the parent's own
    /// failed outcome, answered as is.
    fn group_status(
        &mut self,
        gid: u64,
        status: GroupStatus,
        own: Option<FinalOutcome>,
        out: &mut Vec<FlowAction>,
    ) {
        let outcome = match status {
            GroupStatus::Pending | GroupStatus::Ignored => return,
            GroupStatus::Complete(bytes) => {
                self.stats.groups_completed += 1;
                FinalOutcome::Ok(bytes)
            }
            GroupStatus::Failed(message) => {
                self.stats.groups_failed += 1;
                match own {
                    Some(o) if !is_success(&o) => o,
                    _ => FinalOutcome::Failed { message },
                }
            }
        };
        let Some(mut rec) = self.groups.remove(&gid) else {
            return;
        };
        self.cancel_children(&rec, &rec.group.pending(), out);
        match rec.owner.take() {
            Some(owner) => {
                if let Some(p) = rec.parent {
                    self.parent_groups.remove(&p);
                }
                self.finish_stage(owner, outcome, false, out);
            }
            None => {
                // A subtask parent still running: keep the outcome for its answer.
                rec.early = Some(outcome);
                self.groups.insert(gid, rec);
            }
        }
    }

    fn cancel_children(&mut self, rec: &GroupRec, pending: &[usize], out: &mut Vec<FlowAction>) {
        for &i in pending {
            let Some(&tag) = rec.children.get(i) else {
                continue;
            };
            if let Some(id) = self.nodes.get(&tag).and_then(|n| n.task) {
                self.stats.cancelled += 1;
                out.push(FlowAction::Cancel { id });
            }
        }
    }
}

fn is_success(o: &FinalOutcome) -> bool {
    matches!(o, FinalOutcome::Ok(_) | FinalOutcome::LoopLimit { .. })
}

/// The answer of a loop stopped by the pipeline: the last payload, marked.
fn loop_limited(after: AfterLoop, payload: Vec<u8>) -> FinalOutcome {
    match after {
        AfterLoop::Stop { why, loops, reason } => FinalOutcome::LoopLimit {
            payload,
            reason: format!("{reason} ({why})"),
            loops,
        },
        AfterLoop::Refine { .. } => FinalOutcome::Ok(payload),
    }
}
