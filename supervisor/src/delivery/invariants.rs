//! [`Delivery::check_invariants`]: recounts everything from the task table and compares.

use super::stats::Census;
use super::table::{Delivery, State};
use super::types::TaskId;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

pub(super) fn check(d: &Delivery) {
    let mut census = Census {
        done: d.census.done,
        ..Census::default()
    };
    let mut queued_per_kind = vec![0u64; d.kinds.len()];
    let mut by_unit: BTreeMap<usize, BTreeSet<TaskId>> = BTreeMap::new();
    let mut retries: BTreeSet<(Instant, TaskId)> = BTreeSet::new();
    let mut dlq: BTreeSet<(Instant, TaskId)> = BTreeSet::new();
    let mut timeouts: BTreeSet<(Instant, TaskId)> = BTreeSet::new();
    let mut awaiting = 0u64;
    let mut with_keys = 0usize;

    assert_eq!(
        d.index.len(),
        d.tasks.len(),
        "id index and task table differ in size"
    );
    for (key, t) in &d.tasks {
        assert_eq!(
            d.index.get(t.id.0),
            Some(&key),
            "id index does not point at task {}",
            t.id
        );
        assert!(t.id.0 < d.next_id, "task {} has an id not issued yet", t.id);
        assert!(
            t.attempt >= t.first_attempt,
            "task {}: attempt below its run's first",
            t.id
        );
        assert!(
            (t.kind as usize) < d.kinds.len(),
            "task {}: unknown kind",
            t.id
        );
        assert!(t.class < d.classes, "task {}: unknown class", t.id);
        assert!(
            !t.answered || t.joined().is_empty(),
            "answered task {} keeps joined submitters",
            t.id
        );
        awaiting += t.awaiting();
        if let Some(k) = t.key() {
            with_keys += 1;
            assert_eq!(
                d.keys.get(k),
                Some(&t.id),
                "idempotency key of task {} not indexed",
                t.id
            );
        }
        match &t.state {
            State::Queued => {
                census.queued += 1;
                queued_per_kind[t.kind as usize] += 1;
            }
            State::InFlight {
                unit,
                timeout_at,
                kill_sent,
                ..
            } => {
                census.in_flight += 1;
                by_unit.entry(*unit).or_default().insert(t.id);
                if let Some(at) = timeout_at {
                    assert!(!kill_sent, "task {}: timeout pending after its kill", t.id);
                    timeouts.insert((*at, t.id));
                }
            }
            State::RetryWait { at } => {
                census.waiting_retry += 1;
                retries.insert((*at, t.id));
            }
            State::DeadLettered { reason, at } => {
                census.dead_lettered += 1;
                dlq.insert((*at, t.id));
                assert!(t.answered, "dead-lettered task {} was not answered", t.id);
                assert!(
                    !reason.is_empty(),
                    "dead-lettered task {} has no reason",
                    t.id
                );
            }
        }
    }
    assert_eq!(census, d.census, "census does not match the task table");
    assert_eq!(
        census.total(),
        d.stats.total.submitted,
        "a task is in no bucket or in two: census {census:?}"
    );
    assert_eq!(queued_per_kind, d.queued_per_kind, "queued counts per kind");
    let mut table: BTreeMap<usize, BTreeSet<TaskId>> = BTreeMap::new();
    for (&unit, keys) in &d.by_unit {
        for (pos, &key) in keys.iter().enumerate() {
            let t = d.tasks.get(key).expect("in-flight table points at a task");
            assert_eq!(t.unit_pos, pos, "task {}: wrong in-flight position", t.id);
            assert!(
                table.entry(unit).or_default().insert(t.id),
                "task {} twice in the in-flight table",
                t.id
            );
        }
    }
    assert_eq!(by_unit, table, "in-flight table does not match task states");
    assert_eq!(retries, d.retries, "retry timers do not match task states");
    assert_eq!(dlq, d.dlq, "dead-letter order does not match task states");
    assert!(
        d.dlq.len() <= d.options.dlq_limit.max(1),
        "dead-letter queue beyond its limit"
    );
    assert_eq!(
        timeouts, d.timeouts,
        "run-timeout timers do not match task states"
    );
    assert_eq!(awaiting, d.awaiting, "submitters owed an answer");
    let accepted = d.stats.total.submitted + d.stats.total.joined;
    assert_eq!(
        d.answers + d.awaiting,
        accepted,
        "answers given plus answers owed must equal accepted submissions"
    );
    assert!(
        d.retired_keys.len() <= d.options.key_retention,
        "too many retired keys kept"
    );
    assert_eq!(
        d.keys.len(),
        with_keys + d.retired_keys.len(),
        "idempotency keys: live plus retired must equal the index"
    );
    for k in &d.retired_keys {
        let id = d.keys.get(k).expect("retired key is indexed");
        assert!(
            !d.index.contains_key(id.0),
            "retired key {k:?} belongs to a live task"
        );
    }
}
