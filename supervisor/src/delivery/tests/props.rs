//! A kill storm: random interleavings of submit / dispatch / complete / late duplicates /
//! worker loss / time passing / dead-letter retries against a simulated event loop (queues and
//! workers), then a drain.
//!
//! After every step: [`Delivery::check_invariants`] holds, no submitter was answered twice,
//! every task the core calls queued is in the simulated queues, and every task it calls in
//! flight is held by that simulated worker with that attempt. After the drain: nothing is
//! pending, every accepted submission was answered exactly once, and every dead letter has a
//! reason.

use super::*;
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::collections::{BTreeMap, HashMap, VecDeque};

const UNITS: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Submit {
        kind: u8,
        class: u8,
        deadline_ms: Option<u16>,
        key: Option<u8>,
    },
    Dispatch {
        unit: u8,
        queue: u8,
        fail: bool,
    },
    Complete {
        unit: u8,
        pick: u8,
        how: u8,
    },
    Replay {
        pick: u16,
    },
    Lose {
        unit: u8,
        cause: u8,
    },
    Advance {
        ms: u16,
    },
    DlqRetryAll,
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8, 0..2u8, proptest::option::weighted(0.3, 1..400u16), proptest::option::weighted(0.3, 0..4u8))
            .prop_map(|(kind, class, deadline_ms, key)| Op::Submit { kind, class, deadline_ms, key }),
        4 => (0..UNITS as u8, any::<u8>(), proptest::bool::weighted(0.1))
            .prop_map(|(unit, queue, fail)| Op::Dispatch { unit, queue, fail }),
        4 => (0..UNITS as u8, any::<u8>(), 0..4u8).prop_map(|(unit, pick, how)| Op::Complete { unit, pick, how }),
        1 => any::<u16>().prop_map(|pick| Op::Replay { pick }),
        2 => (0..UNITS as u8, 0..4u8).prop_map(|(unit, cause)| Op::Lose { unit, cause }),
        2 => (0..500u16).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::DlqRetryAll),
        1 => Just(Op::Expire),
    ]
}

/// The simulated event loop: queues, workers, and what each submitter received.
struct Sim {
    d: Delivery,
    now: Instant,
    queues: BTreeMap<(u32, usize), VecDeque<TaskId>>,
    /// What each worker holds: (task, attempt) as dispatched, until it completes or dies.
    units: Vec<Vec<(TaskId, u32)>>,
    /// Every dispatch ever made (for replaying late duplicates).
    history: Vec<(usize, TaskId, u32)>,
    accepted: Vec<Submitter>,
    answers: HashMap<Submitter, u32>,
    next_tag: u64,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let kinds = vec![
            kind(3),
            KindConfig {
                max_attempts: 2,
                ..timed_kind(Duration::from_millis(300), OnTimeout::Fail)
            },
            KindConfig {
                max_attempts: 4,
                ..timed_kind(Duration::from_millis(300), OnTimeout::KillAndRequeue)
            },
        ];
        let options = DeliveryOptions {
            retry_base: Duration::from_millis(50),
            retry_cap: Duration::from_millis(400),
            budget: RetryBudget {
                ratio: 0.2,
                min_per_sec: 1.0,
                capacity: 5.0,
            },
            max_loops: 2,
            poison_deaths: 3,
            key_retention: 3,
            // Small, so that runs evict dead letters among everything else.
            dlq_limit: 4,
        };
        let d = Delivery::new(kinds, 2, options, SmallRng::seed_from_u64(seed)).expect("valid");
        Self {
            d,
            now: Instant::now(),
            queues: BTreeMap::new(),
            units: vec![Vec::new(); UNITS],
            history: Vec::new(),
            accepted: Vec::new(),
            answers: HashMap::new(),
            next_tag: 0,
        }
    }

    /// Carries out the core's actions the way the event loop would.
    fn apply(&mut self, actions: Vec<DeliveryAction>) {
        let mut kills = Vec::new();
        for a in actions {
            match a {
                DeliveryAction::Requeue {
                    id,
                    kind,
                    class,
                    front,
                } => {
                    let q = self.queues.entry((kind, class)).or_default();
                    if front {
                        q.push_front(id);
                    } else {
                        q.push_back(id);
                    }
                }
                DeliveryAction::Deliver { to, .. } => {
                    let n = self.answers.entry(to).or_default();
                    *n += 1;
                    assert_eq!(*n, 1, "{to:?} answered twice");
                }
                DeliveryAction::DeadLetter { reason, .. } => assert!(!reason.is_empty()),
                DeliveryAction::KillWorker { unit, .. } => kills.push(unit),
                DeliveryAction::ScheduleRetry { at, .. } => assert!(at >= self.now),
                DeliveryAction::Abandoned { .. }
                | DeliveryAction::RerunFinished { .. }
                | DeliveryAction::DlqEvicted { .. } => {}
            }
        }
        for unit in kills {
            self.lose(unit, LostCause::Exited);
        }
    }

    fn lose(&mut self, unit: usize, cause: LostCause) {
        self.units[unit].clear();
        let out = self.d.worker_lost(self.now, unit, cause);
        self.apply(out);
    }

    /// Pops the first id of a non-empty queue (chosen by `pick`) and dispatches it to `unit`.
    fn dispatch(&mut self, unit: usize, pick: usize, fail: bool) {
        let keys: Vec<(u32, usize)> = self
            .queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, _)| *k)
            .collect();
        if keys.is_empty() {
            return;
        }
        let q = keys[pick % keys.len()];
        let id = self
            .queues
            .get_mut(&q)
            .and_then(VecDeque::pop_front)
            .expect("non-empty");
        match self.d.take_for_dispatch(self.now, id, unit) {
            Take::Dispatch(info) => {
                assert_eq!((info.kind, info.class), q, "task in the wrong queue");
                let attempt = info.attempt;
                if fail {
                    let out = self.d.dispatch_failed(id, unit);
                    assert_eq!(out.len(), 1);
                    self.apply(out);
                } else {
                    self.units[unit].push((id, attempt));
                    self.history.push((unit, id, attempt));
                }
            }
            Take::Expired(out) => self.apply(out),
            Take::Skip => {}
        }
    }

    fn complete(&mut self, unit: usize, id: TaskId, attempt: u32, how: u8) {
        let outcome = match how {
            0 => ok(b"r"),
            1 => retryable("flaky"),
            2 => fatal("broken"),
            _ => Outcome::Loopback {
                payload: b"again".to_vec(),
                reason: "refine".into(),
            },
        };
        let out = self.d.completed(self.now, unit, id, attempt, outcome);
        self.apply(out);
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Submit {
                kind,
                class,
                deadline_ms,
                key,
            } => {
                self.next_tag += 1;
                let who = Submitter {
                    client: 7,
                    tag: self.next_tag,
                };
                let mut t = NewTask::new(u32::from(kind), usize::from(class), vec![kind], who);
                t.deadline = deadline_ms.map(|ms| self.now + Duration::from_millis(u64::from(ms)));
                t.idempotency_key = key.map(|k| format!("k{k}"));
                match self.d.submit(self.now, t) {
                    Ok(Submitted::Queued(id)) => {
                        self.accepted.push(who);
                        let q = (u32::from(kind), usize::from(class));
                        self.queues.entry(q).or_default().push_back(id);
                    }
                    Ok(Submitted::Joined(_)) => self.accepted.push(who),
                    Err(SubmitError::AlreadyFinished { .. } | SubmitError::KeyConflict { .. }) => {}
                    Err(e) => panic!("unexpected refusal: {e}"),
                }
            }
            Op::Dispatch { unit, queue, fail } => {
                self.dispatch(usize::from(unit), usize::from(queue), fail);
            }
            Op::Complete { unit, pick, how } => {
                let unit = usize::from(unit);
                if !self.units[unit].is_empty() {
                    let i = usize::from(pick) % self.units[unit].len();
                    let (id, attempt) = self.units[unit].remove(i);
                    self.complete(unit, id, attempt, how);
                }
            }
            Op::Replay { pick } => {
                if !self.history.is_empty() {
                    let (unit, id, attempt) = self.history[usize::from(pick) % self.history.len()];
                    // Only a true duplicate: the worker no longer holds that dispatch.
                    if !self.units[unit].contains(&(id, attempt)) {
                        let before = self.d.stats().total.late_dropped;
                        self.complete(unit, id, attempt, 0);
                        assert_eq!(
                            self.d.stats().total.late_dropped,
                            before + 1,
                            "duplicate accepted"
                        );
                    }
                }
            }
            Op::Lose { unit, cause } => {
                let cause = [
                    LostCause::Exited,
                    LostCause::HeartbeatTimeout,
                    LostCause::Quarantined,
                    LostCause::Stopped,
                ][usize::from(cause) % 4];
                self.lose(usize::from(unit), cause);
            }
            Op::Advance { ms } => {
                self.now += Duration::from_millis(u64::from(ms));
                let out = self.d.tick(self.now);
                self.apply(out);
            }
            Op::DlqRetryAll => {
                let out = self.d.dlq_retry(DlqSelect::All).expect("intake open");
                self.apply(out);
            }
            Op::Expire => {
                let out = self.d.expire_queued(self.now);
                self.apply(out);
            }
        }
    }

    /// The core's view agrees with the simulated loop's.
    fn check(&self) {
        self.d.check_invariants();
        for u in self.d.unfinished() {
            match u.state {
                TaskState::Queued => assert!(
                    self.queues
                        .get(&(u.kind, u.class))
                        .is_some_and(|q| q.contains(&u.id)),
                    "queued task {} is in no queue: lost",
                    u.id
                ),
                TaskState::InFlight { unit, .. } => assert!(
                    self.units[unit].contains(&(u.id, u.attempt)),
                    "task {} in flight on unit {unit} that does not hold it",
                    u.id
                ),
                TaskState::WaitingRetry { .. } | TaskState::DeadLettered { .. } => {}
            }
        }
    }

    /// Runs everything to its end with healthy workers that succeed at once.
    fn drain(&mut self) {
        for _ in 0..100_000 {
            if self.queues.values().any(|q| !q.is_empty()) {
                self.dispatch(0, 0, false);
            } else if let Some(unit) = self.units.iter().position(|u| !u.is_empty()) {
                let (id, attempt) = self.units[unit].remove(0);
                self.complete(unit, id, attempt, 0);
            } else if let Some(at) = self.d.next_deadline() {
                self.now = self.now.max(at);
                let out = self.d.tick(self.now);
                self.apply(out);
            } else {
                return;
            }
            self.check();
        }
        panic!("the drain did not converge");
    }
}

proptest! {
    #![proptest_config(Config::with_cases(256))]

    #[test]
    fn kill_storm_loses_nothing_and_answers_everyone_exactly_once(
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let mut sim = Sim::new(seed);
        for op in &ops {
            sim.step(op);
            sim.check();
        }
        sim.drain();
        let c = sim.d.census();
        prop_assert_eq!(c.pending(), 0, "census after drain: {:?}", c);
        prop_assert_eq!(c.total(), sim.d.stats().total.submitted);
        for who in &sim.accepted {
            prop_assert_eq!(sim.answers.get(who).copied(), Some(1), "{:?} not answered once", who);
        }
        prop_assert_eq!(sim.answers.len(), sim.accepted.len(), "an answer to nobody who asked");
        prop_assert_eq!(sim.d.answer_counts(), (sim.accepted.len() as u64, 0));
        for e in sim.d.dlq_list() {
            prop_assert!(!e.reason.is_empty());
        }
        prop_assert_eq!(c.dead_lettered, sim.d.dlq_list().len() as u64);
    }
}
