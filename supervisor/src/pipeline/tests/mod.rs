//! Tests of the pipeline cores, deterministic: a small harness plays the event loop and the
//! delivery core (ids in submission order, answers given by the test).

mod cache;
mod fanout;
mod flow;
mod loops;
mod triggers;

use super::flow::{FlowAction, Pipeline};
use super::routes::Step;
use crate::config::{parse, Config};
use crate::delivery::{FinalOutcome, Submitter, TaskId};
use std::collections::BTreeMap;
use std::path::Path;

/// Parses `text` with a worker serving `kinds` prepended.
pub(super) fn config(kinds: &[&str], text: &str) -> Config {
    let list: Vec<String> = kinds.iter().map(|k| format!("{k:?}")).collect();
    let full = format!(
        "[workers.w]\ncommand = \"x\"\nkinds = [{}]\n{text}",
        list.join(", ")
    );
    parse(&full, Path::new("amp.toml")).unwrap_or_else(|e| panic!("{e}\n{full}"))
}

/// A task the harness "submitted".
#[derive(Debug, Clone)]
pub(super) struct Task {
    pub to: Submitter,
    pub kind: u32,
    pub payload: Vec<u8>,
    pub parent: Option<TaskId>,
    pub done: bool,
}

/// An answer written to a client.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Answer {
    pub to: Submitter,
    pub id: TaskId,
    pub outcome: FinalOutcome,
    pub path: Option<Vec<Step>>,
}

/// Plays the event loop: carries out [`FlowAction`]s, issuing task ids in order.
pub(super) struct Harness {
    pub p: Pipeline,
    pub kinds: Vec<String>,
    pub tasks: BTreeMap<TaskId, Task>,
    pub answers: Vec<Answer>,
    pub cancelled: Vec<TaskId>,
    next_id: u64,
    next_client: u64,
}

impl Harness {
    pub fn new(config: &Config) -> Self {
        Self {
            p: Pipeline::new(config),
            kinds: config.kinds.keys().cloned().collect(),
            tasks: BTreeMap::new(),
            answers: Vec::new(),
            cancelled: Vec::new(),
            next_id: 1,
            next_client: 1,
        }
    }

    pub fn kind(&self, name: &str) -> u32 {
        u32::try_from(
            self.kinds
                .iter()
                .position(|k| k == name)
                .expect("known kind"),
        )
        .expect("small")
    }

    fn add(
        &mut self,
        to: Submitter,
        kind: u32,
        payload: Vec<u8>,
        parent: Option<TaskId>,
    ) -> TaskId {
        let id = TaskId(self.next_id);
        self.next_id += 1;
        self.tasks.insert(
            id,
            Task {
                to,
                kind,
                payload,
                parent,
                done: false,
            },
        );
        id
    }

    /// A client submits a task of `kind`.
    pub fn submit(&mut self, kind: &str, payload: &[u8]) -> TaskId {
        let to = Submitter {
            client: 1,
            tag: self.next_client,
        };
        self.next_client += 1;
        let k = self.kind(kind);
        self.add(to, k, payload.to_vec(), None)
    }

    /// The worker running `parent` emits a subtask of `kind`.
    pub fn subtask(&mut self, parent: TaskId, kind: &str, payload: &[u8]) -> TaskId {
        let pk = self.tasks[&parent].kind;
        let k = self.kind(kind);
        let to = self.p.subtask(parent, pk, k, 0).expect("parent running");
        let id = self.add(to, k, payload.to_vec(), Some(parent));
        self.p.bind(to, id);
        id
    }

    /// Task `id` is answered with `outcome` (as the delivery core's `Deliver`).
    pub fn answer(&mut self, id: TaskId, outcome: FinalOutcome) {
        let t = self.tasks.get_mut(&id).expect("known task");
        assert!(!t.done, "task {id} answered twice");
        t.done = true;
        let (to, kind) = (t.to, t.kind);
        let mut out = Vec::new();
        self.p.delivered(to, id, kind, 0, outcome, &mut out);
        self.carry_out(out);
    }

    pub fn ok(&mut self, id: TaskId, result: &[u8]) {
        self.answer(id, FinalOutcome::Ok(result.to_vec()));
    }

    pub fn fail(&mut self, id: TaskId, message: &str) {
        self.answer(
            id,
            FinalOutcome::Failed {
                message: message.to_owned(),
            },
        );
    }

    pub fn carry_out(&mut self, actions: Vec<FlowAction>) {
        let mut queue = std::collections::VecDeque::from(actions);
        while let Some(a) = queue.pop_front() {
            match a {
                FlowAction::Answer {
                    to,
                    id,
                    outcome,
                    path,
                } => self.answers.push(Answer {
                    to,
                    id,
                    outcome,
                    path,
                }),
                FlowAction::Submit {
                    to,
                    kind,
                    payload,
                    parent,
                    ..
                } => {
                    let id = self.add(to, kind, payload, parent);
                    self.p.bind(to, id);
                }
                FlowAction::Cancel { id } => {
                    // As Delivery::cancel: the task is answered Cancelled now.
                    self.cancelled.push(id);
                    let t = self.tasks.get_mut(&id).expect("known task");
                    if !t.done {
                        t.done = true;
                        let (to, kind) = (t.to, t.kind);
                        let mut out = Vec::new();
                        self.p.delivered(
                            to,
                            id,
                            kind,
                            0,
                            FinalOutcome::Cancelled {
                                reason: "no longer needed".into(),
                            },
                            &mut out,
                        );
                        queue.extend(out);
                    }
                }
            }
        }
    }

    /// Tasks not answered yet, of kind `kind`, in id order.
    pub fn running(&self, kind: &str) -> Vec<TaskId> {
        let k = self.kind(kind);
        self.tasks
            .iter()
            .filter(|(_, t)| t.kind == k && !t.done)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The only running task of `kind`.
    pub fn one(&self, kind: &str) -> TaskId {
        let r = self.running(kind);
        assert_eq!(r.len(), 1, "running tasks of {kind}: {r:?}");
        r[0]
    }

    pub fn payload(&self, id: TaskId) -> &[u8] {
        &self.tasks[&id].payload
    }
}
