//! Table-style tests of the delivery core: synthetic instants, a seeded RNG, no processes.

mod admin;
mod lost;
mod props;
mod retry;
mod timeouts;

use super::*;
use crate::config::{KindConfig, OnTimeout};
use amp_ipc::Outcome;
use rand::{rngs::SmallRng, SeedableRng};
use std::time::{Duration, Instant};

pub(super) const MS: Duration = Duration::from_millis(1);

/// A kind with `max_attempts` and otherwise default settings.
pub(super) fn kind(max_attempts: u32) -> KindConfig {
    KindConfig {
        max_attempts,
        ..KindConfig::default()
    }
}

/// A kind with a run timeout.
pub(super) fn timed_kind(timeout: Duration, on_timeout: OnTimeout) -> KindConfig {
    KindConfig {
        timeout: Some(timeout),
        on_timeout,
        ..KindConfig::default()
    }
}

/// Options with round retry delays (base 100 ms, cap 1 s) and a budget that never runs dry
/// unless a test says so.
pub(super) fn opts() -> DeliveryOptions {
    DeliveryOptions {
        retry_base: Duration::from_millis(100),
        retry_cap: Duration::from_secs(1),
        budget: RetryBudget {
            ratio: 0.0,
            min_per_sec: 0.0,
            capacity: 1e9,
        },
        ..DeliveryOptions::default()
    }
}

/// A test driver: virtual time and a fresh submitter per submission.
pub(super) struct H {
    pub(super) d: Delivery,
    pub(super) t0: Instant,
    pub(super) now: Instant,
    next_tag: u64,
}

impl H {
    pub(super) fn new(kinds: Vec<KindConfig>, options: DeliveryOptions) -> Self {
        Self::seeded(kinds, options, 1)
    }

    pub(super) fn seeded(kinds: Vec<KindConfig>, options: DeliveryOptions, seed: u64) -> Self {
        let d = Delivery::new(kinds, 2, options, SmallRng::seed_from_u64(seed))
            .expect("valid test options");
        let t0 = Instant::now();
        Self {
            d,
            t0,
            now: t0,
            next_tag: 0,
        }
    }

    pub(super) fn submitter(&mut self) -> Submitter {
        self.next_tag += 1;
        Submitter {
            client: 1,
            tag: self.next_tag,
        }
    }

    /// Submits a task of `kind` in class 0 with payload `p`; returns its id and submitter.
    pub(super) fn submit(&mut self, kind: u32) -> (TaskId, Submitter) {
        self.submit_with(kind, |_| {})
    }

    pub(super) fn submit_with(
        &mut self,
        kind: u32,
        f: impl FnOnce(&mut NewTask),
    ) -> (TaskId, Submitter) {
        let who = self.submitter();
        let mut task = NewTask::new(kind, 0, b"p".to_vec(), who);
        f(&mut task);
        let id = match self.d.submit(self.now, task) {
            Ok(Submitted::Queued(id)) => id,
            other => panic!("expected a new task, got {other:?}"),
        };
        self.d.check_invariants();
        (id, who)
    }

    /// Takes `id` for `unit`; returns the attempt number.
    pub(super) fn dispatch(&mut self, id: TaskId, unit: usize) -> u32 {
        let attempt = match self.d.take_for_dispatch(self.now, id, unit) {
            Take::Dispatch(info) => {
                assert_eq!(info.id, id);
                info.attempt
            }
            other => panic!("expected {id} to dispatch, got {other:?}"),
        };
        self.d.check_invariants();
        attempt
    }

    pub(super) fn complete(
        &mut self,
        unit: usize,
        id: TaskId,
        attempt: u32,
        o: Outcome,
    ) -> Vec<DeliveryAction> {
        let out = self.d.completed(self.now, unit, id, attempt, o);
        self.d.check_invariants();
        out
    }

    pub(super) fn lost(&mut self, unit: usize, cause: LostCause) -> Vec<DeliveryAction> {
        let out = self.d.worker_lost(self.now, unit, cause);
        self.d.check_invariants();
        out
    }

    pub(super) fn tick(&mut self) -> Vec<DeliveryAction> {
        let out = self.d.tick(self.now);
        self.d.check_invariants();
        out
    }

    pub(super) fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    pub(super) fn at(&mut self, since_t0: Duration) {
        self.now = self.t0 + since_t0;
    }
}

pub(super) fn ok(b: &[u8]) -> Outcome {
    Outcome::Ok(b.to_vec())
}

pub(super) fn retryable(m: &str) -> Outcome {
    Outcome::Err {
        retryable: true,
        message: m.into(),
    }
}

pub(super) fn fatal(m: &str) -> Outcome {
    Outcome::Err {
        retryable: false,
        message: m.into(),
    }
}

/// A [`DeliveryAction::Deliver`] of a task of kind 0, class 0 (what most tests submit).
pub(super) fn deliver(to: Submitter, id: TaskId, outcome: FinalOutcome) -> DeliveryAction {
    DeliveryAction::Deliver {
        to,
        id,
        kind: 0,
        class: 0,
        outcome,
    }
}

pub(super) fn requeue(id: TaskId, kind: u32, front: bool) -> DeliveryAction {
    DeliveryAction::Requeue {
        id,
        kind,
        class: 0,
        front,
    }
}
