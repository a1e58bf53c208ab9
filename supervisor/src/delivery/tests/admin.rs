//! Intake (validation, idempotency keys, queue limits), shutdown support, the dead-letter
//! queue, option validation.

use super::*;

fn keyed(h: &mut H, key: &str) -> (Result<Submitted, SubmitError>, Submitter) {
    let who = h.submitter();
    let mut t = NewTask::new(0, 0, b"k".to_vec(), who);
    t.idempotency_key = Some(key.into());
    let r = h.d.submit(h.now, t);
    h.d.check_invariants();
    (r, who)
}

#[test]
fn a_duplicate_key_joins_the_task_and_every_submitter_is_answered_once() {
    let mut h = H::new(vec![kind(3)], opts());
    let (r1, w1) = keyed(&mut h, "order-17");
    let id = r1.clone().unwrap().id();
    assert_eq!(r1, Ok(Submitted::Queued(id)));
    let (r2, w2) = keyed(&mut h, "order-17");
    assert_eq!(r2, Ok(Submitted::Joined(id)));
    let (other, _) = keyed(&mut h, "order-18");
    assert_ne!(other.unwrap().id(), id);
    assert_eq!(h.d.census().total(), 2, "the join made no new task");
    // The key of a plain task does not join a chunk (another kind: the next test).
    let mut chunk = NewTask::new(0, 0, vec![0; 4], h.submitter());
    chunk.chunk = true;
    chunk.idempotency_key = Some("order-17".into());
    assert_eq!(
        h.d.submit(h.now, chunk),
        Err(SubmitError::KeyConflict {
            id,
            other: "not a chunk"
        })
    );
    let a = h.dispatch(id, 0);
    // Still unanswered while in flight: a third submitter joins too.
    let (r3, w3) = keyed(&mut h, "order-17");
    assert_eq!(r3, Ok(Submitted::Joined(id)));
    // The original submitter resubmitting with the same tag is not answered twice.
    let mut again = NewTask::new(0, 0, vec![], w1);
    again.idempotency_key = Some("order-17".into());
    assert_eq!(h.d.submit(h.now, again), Ok(Submitted::Joined(id)));
    let out = h.complete(0, id, a, ok(b"r"));
    let r = FinalOutcome::Ok(b"r".to_vec());
    assert_eq!(
        out,
        [
            deliver(w1, id, r.clone()),
            deliver(w2, id, r.clone()),
            deliver(w3, id, r)
        ]
    );
    let s = h.d.stats().total;
    assert_eq!((s.submitted, s.joined, s.delivered_ok), (2, 2, 1));
    // Answered and remembered: a resubmission is refused, not run again.
    let (r4, _) = keyed(&mut h, "order-17");
    assert_eq!(r4, Err(SubmitError::AlreadyFinished { id }));
}

/// Every `Deliver` of a task names its kind and class, the joined submitters' too: the event
/// loop routes each answer by them (cache, triggers, pipeline routes) after the task has left the
/// table, and once took kind 0 for every answer after the first.
#[test]
fn every_answer_names_the_task_kind_and_class() {
    let mut h = H::new(vec![kind(3), kind(3)], opts());
    let submit = |h: &mut H| {
        let who = h.submitter();
        let mut t = NewTask::new(1, 1, b"k".to_vec(), who);
        t.idempotency_key = Some("order-9".into());
        let r = h.d.submit(h.now, t).unwrap();
        (r.id(), who)
    };
    let (id, w1) = submit(&mut h);
    let (joined, w2) = submit(&mut h);
    assert_eq!(joined, id);
    let a = h.dispatch(id, 0);
    let out = h.complete(0, id, a, ok(b"r"));
    let answer = |to| DeliveryAction::Deliver {
        to,
        id,
        kind: 1,
        class: 1,
        outcome: FinalOutcome::Ok(b"r".to_vec()),
    };
    assert_eq!(out, [answer(w1), answer(w2)]);
}

#[test]
fn a_key_does_not_join_a_task_of_another_kind_or_shape() {
    let mut h = H::new(vec![kind(1), kind(1)], opts());
    let (r, _) = keyed(&mut h, "k");
    let id = r.unwrap().id();
    let mut other_kind = NewTask::new(1, 0, b"k".to_vec(), h.submitter());
    other_kind.idempotency_key = Some("k".into());
    let e = h.d.submit(h.now, other_kind).unwrap_err();
    assert_eq!(
        e,
        SubmitError::KeyConflict {
            id,
            other: "of another kind"
        }
    );
    assert!(e.to_string().contains(&format!("task {id}")), "{e}");
    h.d.check_invariants();
    assert_eq!(h.d.census().total(), 1, "nothing was queued or joined");
    assert_eq!(h.d.stats().total.joined, 0);
}

#[test]
fn a_dead_lettered_key_is_already_answered() {
    let mut h = H::new(vec![kind(1)], opts());
    let (r, _) = keyed(&mut h, "k");
    let id = r.unwrap().id();
    let a = h.dispatch(id, 0);
    let _ = h.complete(0, id, a, retryable("x"));
    assert_eq!(
        keyed(&mut h, "k").0,
        Err(SubmitError::AlreadyFinished { id })
    );
}

#[test]
fn finished_keys_are_forgotten_beyond_the_retention() {
    let mut o = opts();
    o.key_retention = 2;
    let mut h = H::new(vec![kind(3)], o);
    let mut ids = Vec::new();
    for key in ["a", "b", "c"] {
        let id = keyed(&mut h, key).0.unwrap().id();
        let at = h.dispatch(id, 0);
        let _ = h.complete(0, id, at, ok(b""));
        ids.push(id);
    }
    // "a" was forgotten (oldest), "b" and "c" are remembered.
    let again = keyed(&mut h, "a").0.unwrap();
    assert!(matches!(again, Submitted::Queued(id) if id > ids[2]));
    assert_eq!(
        keyed(&mut h, "b").0,
        Err(SubmitError::AlreadyFinished { id: ids[1] })
    );
    assert_eq!(
        keyed(&mut h, "c").0,
        Err(SubmitError::AlreadyFinished { id: ids[2] })
    );
}

#[test]
fn submit_refuses_bad_input_and_full_queues() {
    let mut o = opts();
    o.key_retention = 0;
    let kinds = vec![KindConfig {
        queue_limit: 2,
        ..KindConfig::default()
    }];
    let mut h = H::new(kinds, o);
    let who = h.submitter();
    let mut bad = NewTask::new(1, 0, vec![], who);
    assert_eq!(
        h.d.submit(h.now, bad.clone()),
        Err(SubmitError::UnknownKind { kind: 1 })
    );
    bad.kind = 0;
    bad.class = 2;
    assert_eq!(
        h.d.submit(h.now, bad),
        Err(SubmitError::UnknownClass {
            class: 2,
            classes: 2
        })
    );
    let (a, _) = h.submit(0);
    assert!(!h.d.queue_full(0));
    let (_b, _) = h.submit(0);
    assert!(h.d.queue_full(0) && !h.d.queue_full(1));
    let full = NewTask::new(0, 1, vec![], who);
    assert_eq!(
        h.d.submit(h.now, full.clone()),
        Err(SubmitError::QueueFull { kind: 0, limit: 2 })
    );
    // A reload raising the limit makes room at once; lowering it back refuses again.
    let raised = KindConfig {
        queue_limit: 3,
        ..KindConfig::default()
    };
    h.d.set_kind_config(0, raised);
    assert!(!h.d.queue_full(0));
    h.d.set_kind_config(
        0,
        KindConfig {
            queue_limit: 2,
            ..raised
        },
    );
    assert!(h.d.queue_full(0));
    // The run timeout is not the reload's to change: set_run_timeout owns it (the adaptive
    // controller may have set it).
    let _ =
        h.d.set_run_timeout(0, Some(std::time::Duration::from_secs(7)));
    h.d.set_kind_config(
        0,
        KindConfig {
            queue_limit: 2,
            timeout: Some(std::time::Duration::from_secs(1)),
            ..raised
        },
    );
    assert_eq!(
        h.d.kind_run_timeout(0),
        Some(std::time::Duration::from_secs(7))
    );
    // A dispatched task no longer counts against the limit.
    h.dispatch(a, 0);
    assert!(!h.d.queue_full(0));
    assert!(h.d.submit(h.now, full).is_ok());
    assert!(h.d.queue_full(0));
    // Requeues never count against it: losing the worker puts `a` back over the limit.
    assert_eq!(h.lost(0, LostCause::Exited).len(), 1);
    assert_eq!(h.d.census().queued, 3);
    for e in [
        SubmitError::QueueFull { kind: 0, limit: 2 },
        SubmitError::IntakeStopped,
        SubmitError::AlreadyFinished { id: TaskId(3) },
    ] {
        assert!(!e.to_string().is_empty());
    }
    assert!(SubmitError::QueueFull { kind: 0, limit: 2 }
        .to_string()
        .contains("queue_limit"));
}

#[test]
fn stop_intake_refuses_new_work_but_finishes_what_was_accepted() {
    let mut h = H::new(vec![kind(3)], opts());
    let (a, wa) = h.submit(0);
    let (b, _) = h.submit(0);
    let (c, _) = h.submit(0);
    let ta = h.dispatch(a, 0);
    h.dispatch(b, 1);
    h.d.stop_intake();
    assert!(!h.d.intake_open());
    let who = h.submitter();
    assert_eq!(
        h.d.submit(h.now, NewTask::new(0, 0, vec![], who)),
        Err(SubmitError::IntakeStopped)
    );
    assert_eq!(
        h.complete(0, a, ta, ok(b"r")),
        [deliver(wa, a, FinalOutcome::Ok(b"r".to_vec()))]
    );
    assert_eq!(h.d.in_flight_count(), 1);
    let left = h.d.unfinished();
    assert_eq!(left.len(), 2);
    assert_eq!(
        (left[0].id, &left[0].state),
        (
            b,
            &TaskState::InFlight {
                unit: 1,
                since: h.now
            }
        )
    );
    assert_eq!((left[1].id, &left[1].state), (c, &TaskState::Queued));
    assert_eq!(h.d.census().pending(), 2);
}

#[test]
fn cancel_all_answers_every_waiting_submitter_and_leaves_the_dlq() {
    let mut h = H::new(vec![kind(1), kind(3)], opts());
    let (queued, wq) = h.submit(0);
    let (running, wr) = h.submit(0);
    let (retrying, wt) = h.submit(1);
    let (dead, _) = h.submit(0);
    let ar = h.dispatch(running, 4);
    let at = h.dispatch(retrying, 5);
    let _ = h.complete(5, retrying, at, retryable("x")); // kind 1: waits for its retry
    let ad = h.dispatch(dead, 5);
    let _ = h.complete(5, dead, ad, retryable("x")); // kind 0, max_attempts 1: dead-lettered
    assert_eq!(h.d.census().waiting_retry, 1);
    let out = h.d.cancel_all("ampd shutting down");
    h.d.check_invariants();
    let c = FinalOutcome::Cancelled {
        reason: "ampd shutting down".into(),
    };
    assert_eq!(
        out,
        [
            deliver(wq, queued, c.clone()),
            deliver(wr, running, c.clone()),
            DeliveryAction::Abandoned {
                id: running,
                unit: 4
            },
            DeliveryAction::Deliver {
                to: wt,
                id: retrying,
                kind: 1,
                class: 0,
                outcome: c
            },
        ]
    );
    assert_eq!(h.d.census().pending(), 0);
    assert_eq!(h.d.next_deadline(), None, "the retry timer went with it");
    assert_eq!(h.d.census().dead_lettered, 1);
    assert_eq!(h.d.unfinished().len(), 1);
    assert!(h.complete(4, running, ar, ok(b"")).is_empty());
    assert_eq!(h.d.stats().total.cancelled, 3);
    assert!(
        h.d.cancel(dead, "no").is_empty(),
        "dead letters are purged, not cancelled"
    );
    let (_, awaiting) = h.d.answer_counts();
    assert_eq!(awaiting, 0);
}

#[test]
fn cancel_of_a_task_waiting_for_retry() {
    let mut h = H::new(vec![kind(3)], opts());
    let (id, who) = h.submit(0);
    let a = h.dispatch(id, 0);
    let _ = h.complete(0, id, a, retryable("x"));
    let c = FinalOutcome::Cancelled {
        reason: "client gone".into(),
    };
    assert_eq!(h.d.cancel(id, "client gone"), [deliver(who, id, c)]);
    h.d.check_invariants();
    assert_eq!(h.d.next_deadline(), None);
    assert!(h.d.cancel(id, "again").is_empty());
}

/// Puts `n` tasks into the dead-letter queue (max_attempts 1, one retryable failure each).
fn dead_letters(h: &mut H, n: usize) -> Vec<(TaskId, Submitter)> {
    (0..n)
        .map(|_| {
            let (id, who) = h.submit(0);
            let a = h.dispatch(id, 0);
            let out = h.complete(0, id, a, retryable("db down"));
            assert!(matches!(out[0], DeliveryAction::DeadLetter { .. }));
            (id, who)
        })
        .collect()
}

#[test]
fn dlq_retry_reruns_with_fresh_attempts_and_reports_the_rerun_not_a_second_answer() {
    let mut h = H::new(vec![kind(1)], opts());
    let dl = dead_letters(&mut h, 3);
    let (id, _) = dl[1];
    assert_eq!(
        h.d.dlq_retry(DlqSelect::One(TaskId(99))),
        Err(DlqError::NotFound { id: TaskId(99) })
    );
    assert_eq!(
        h.d.dlq_retry(DlqSelect::One(id)),
        Ok(vec![requeue(id, 0, false)])
    );
    h.d.check_invariants();
    assert_eq!(h.d.dlq_list().len(), 2);
    assert_eq!(
        h.d.dlq_retry(DlqSelect::One(id)),
        Err(DlqError::NotFound { id }),
        "not in the DLQ now"
    );
    // A fresh run: max_attempts 1 allows one attempt again; the wire attempt keeps going up.
    let a = h.dispatch(id, 1);
    assert_eq!(a, 2);
    assert!(h.complete(0, id, 1, ok(b"stale")).is_empty());
    let out = h.complete(1, id, a, ok(b"fixed"));
    assert_eq!(
        out,
        [DeliveryAction::RerunFinished {
            id,
            outcome: FinalOutcome::Ok(b"fixed".to_vec())
        }]
    );
    let s = h.d.stats().total;
    assert_eq!(
        (s.dlq_retried, s.reruns_finished, s.delivered_ok),
        (1, 1, 0)
    );
    assert_eq!(
        h.d.answer_counts(),
        (3, 0),
        "each submitter answered once (DeadLettered)"
    );
    // Retry all: the remaining two, in id order.
    let out = h.d.dlq_retry(DlqSelect::All).unwrap();
    assert_eq!(
        out,
        [requeue(dl[0].0, 0, false), requeue(dl[2].0, 0, false)]
    );
    // A rerun that fails again goes back to the DLQ without a second answer.
    let a = h.dispatch(dl[0].0, 0);
    let out = h.complete(0, dl[0].0, a, retryable("still down"));
    assert!(
        matches!(&out[..], [DeliveryAction::DeadLetter { reason, .. }] if reason.ends_with("still down")),
        "{out:?}"
    );
    assert_eq!(h.d.dlq_list().len(), 1);
}

#[test]
fn dlq_retry_clears_the_deadline_and_is_refused_during_shutdown() {
    let mut h = H::new(vec![kind(1)], opts());
    let deadline = h.now + Duration::from_secs(1);
    let (id, _) = h.submit_with(0, |t| t.deadline = Some(deadline));
    let a = h.dispatch(id, 0);
    let _ = h.complete(0, id, a, retryable("x"));
    h.now = deadline + Duration::from_secs(1);
    assert!(h.d.dlq_retry(DlqSelect::One(id)).is_ok());
    let Take::Dispatch(info) = h.d.take_for_dispatch(h.now, id, 0) else {
        panic!("a rerun has no deadline");
    };
    assert_eq!(info.deadline, None);
    h.d.stop_intake();
    assert_eq!(h.d.dlq_retry(DlqSelect::All), Err(DlqError::IntakeStopped));
}

#[test]
fn dlq_purge_forgets_entries() {
    let mut h = H::new(vec![kind(1)], opts());
    let dl = dead_letters(&mut h, 3);
    assert_eq!(h.d.dlq_purge(DlqSelect::One(dl[0].0)), Ok(vec![dl[0].0]));
    h.d.check_invariants();
    assert_eq!(
        h.d.dlq_purge(DlqSelect::One(dl[0].0)),
        Err(DlqError::NotFound { id: dl[0].0 })
    );
    assert_eq!(h.d.dlq_purge(DlqSelect::All), Ok(vec![dl[1].0, dl[2].0]));
    h.d.check_invariants();
    assert!(h.d.dlq_list().is_empty());
    assert_eq!(h.d.census().done, 3);
    assert_eq!(h.d.stats().total.dlq_purged, 3);
    assert_eq!(h.d.dlq_purge(DlqSelect::All), Ok(vec![]));
}

#[test]
fn census_counts_each_state() {
    let mut h = H::new(vec![kind(1), kind(3)], opts());
    let _dead = dead_letters(&mut h, 1);
    let (_queued, _) = h.submit(0);
    let (running, _) = h.submit(0);
    h.dispatch(running, 2);
    let (retry, _) = h.submit(1);
    let a = h.dispatch(retry, 2);
    let _ = h.complete(2, retry, a, retryable("x"));
    let (done, _) = h.submit(1);
    let a = h.dispatch(done, 2);
    let _ = h.complete(2, done, a, ok(b""));
    let c = h.d.census();
    assert_eq!(
        c,
        Census {
            queued: 1,
            in_flight: 1,
            waiting_retry: 1,
            dead_lettered: 1,
            done: 1
        }
    );
    assert_eq!(c.total(), 5);
    assert_eq!(c.pending(), 3);
}

#[test]
fn new_refuses_bad_options() {
    let rng = || SmallRng::seed_from_u64(0);
    let ok_kinds = || vec![kind(3)];
    assert_eq!(
        Delivery::new(vec![kind(3), kind(0)], 1, opts(), rng()).unwrap_err(),
        OptionsError::ZeroMaxAttempts { kind: 1 }
    );
    assert_eq!(
        Delivery::new(ok_kinds(), 0, opts(), rng()).unwrap_err(),
        OptionsError::NoClasses
    );
    let mut o = opts();
    o.poison_deaths = 0;
    assert_eq!(
        Delivery::new(ok_kinds(), 1, o, rng()).unwrap_err(),
        OptionsError::ZeroPoisonDeaths
    );
    for (field, set) in [
        (
            "ratio",
            (|b: &mut RetryBudget| b.ratio = -0.1) as fn(&mut RetryBudget),
        ),
        ("min_per_sec", |b| b.min_per_sec = f64::NAN),
        ("capacity", |b| b.capacity = f64::INFINITY),
    ] {
        let mut o = opts();
        set(&mut o.budget);
        let err = Delivery::new(ok_kinds(), 1, o, rng()).unwrap_err();
        assert!(
            matches!(err, OptionsError::InvalidBudget { field: f, .. } if f == field),
            "{err}"
        );
        assert!(err.to_string().contains(field));
    }
    assert!(Delivery::new(ok_kinds(), 1, DeliveryOptions::default(), rng()).is_ok());
}

#[test]
fn withdraw_forgets_a_fresh_task_as_if_never_submitted() {
    let mut h = H::new(vec![kind(3)], opts());
    let (r, _) = keyed(&mut h, "k");
    let id = r.unwrap().id();
    assert!(h.d.withdraw(id));
    h.d.check_invariants();
    assert_eq!(h.d.census().total(), 0);
    assert_eq!(h.d.stats().total.submitted, 0);
    assert_eq!(h.d.answer_counts(), (0, 0));
    assert_eq!(h.d.take_for_dispatch(h.now, id, 0), Take::Skip);
    assert!(!h.d.withdraw(id), "already gone");
    // The key is free again: a new task with a new id.
    let again = keyed(&mut h, "k").0.unwrap();
    assert!(matches!(again, Submitted::Queued(new) if new > id));

    // Not once it reached a worker, or has a joined submitter.
    let (a, _) = h.submit(0);
    h.dispatch(a, 0);
    assert!(!h.d.withdraw(a), "in flight");
    let _ = h.lost(0, LostCause::Exited);
    assert!(!h.d.withdraw(a), "requeued after running");
    let joined = again.id();
    assert_eq!(keyed(&mut h, "k").0, Ok(Submitted::Joined(joined)));
    assert!(
        !h.d.withdraw(joined),
        "a joined submitter is owed an answer"
    );
    h.d.check_invariants();
}

#[test]
fn the_dead_letter_queue_keeps_its_newest_entries_within_its_limit() {
    let mut o = opts();
    o.dlq_limit = 2;
    let mut h = H::new(vec![kind(1)], o);
    let mut ids = Vec::new();
    for _ in 0..4 {
        let (id, _) = h.submit(0);
        let a = h.dispatch(id, 0);
        let out = h.complete(0, id, a, retryable("down"));
        ids.push(id);
        h.now += std::time::Duration::from_millis(1);
        // The third and fourth dead letters each push the oldest out.
        let evicted: Vec<TaskId> = out
            .iter()
            .filter_map(|a| match a {
                DeliveryAction::DlqEvicted { id, kind: 0 } => Some(*id),
                _ => None,
            })
            .collect();
        let want: Vec<TaskId> = if ids.len() > 2 {
            vec![ids[ids.len() - 3]]
        } else {
            vec![]
        };
        assert_eq!(evicted, want, "{out:?}");
    }
    let kept: Vec<TaskId> = h.d.dlq_list().iter().map(|e| e.id).collect();
    assert_eq!(kept, ids[2..]);
    let s = h.d.stats().total;
    assert_eq!((s.dead_lettered, s.dlq_evicted), (4, 2));
    assert_eq!(h.d.census().dead_lettered, 2);
    // A retried entry leaves the order; dead-lettered again, it is the newest.
    let out = h.d.dlq_retry(DlqSelect::One(ids[2])).unwrap();
    assert_eq!(out.len(), 1);
    let a = h.dispatch(ids[2], 0);
    let out = h.complete(0, ids[2], a, retryable("down"));
    assert!(
        out.iter()
            .all(|a| !matches!(a, DeliveryAction::DlqEvicted { .. })),
        "{out:?}"
    );
    h.d.check_invariants();
    let (id, _) = h.submit(0);
    let a = h.dispatch(id, 0);
    let out = h.complete(0, id, a, retryable("down"));
    assert!(
        out.contains(&DeliveryAction::DlqEvicted {
            id: ids[3],
            kind: 0
        }),
        "the oldest is now the fourth: {out:?}"
    );
    h.d.check_invariants();
}
