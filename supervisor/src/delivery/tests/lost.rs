//! Lost workers, poison, late duplicates, dispatch failures.

use super::*;

#[test]
fn worker_lost_requeues_every_task_to_the_front_with_the_next_attempt() {
    let mut h = H::new(vec![kind(3), kind(3)], opts());
    let (a, _) = h.submit(0);
    let (b, _) = h.submit(1);
    let (c, _) = h.submit(0);
    let (other, _) = h.submit(0);
    for id in [a, b, c] {
        assert_eq!(h.dispatch(id, 7), 1);
    }
    h.dispatch(other, 8);
    assert_eq!(h.d.in_flight_on(7), 3);
    let out = h.lost(7, LostCause::Exited);
    // Newest first: pushing each to the head leaves the oldest at the head.
    assert_eq!(
        out,
        [
            requeue(c, 0, true),
            requeue(b, 1, true),
            requeue(a, 0, true)
        ]
    );
    assert_eq!(h.d.in_flight_on(7), 0);
    assert_eq!(h.d.in_flight_count(), 1, "unit 8 is untouched");
    for id in [a, b, c] {
        assert_eq!(h.d.task_state(id), Some(TaskState::Queued));
        assert_eq!(h.dispatch(id, 8), 2);
    }
    assert_eq!(h.d.stats().total.requeued_lost, 3);
    assert_eq!(h.d.stats().per_kind[1].requeued_lost, 1);
    // A unit with nothing in flight: nothing to do.
    assert!(h.lost(7, LostCause::Exited).is_empty());
}

#[test]
fn completions_from_the_lost_unit_or_attempt_are_dropped() {
    let mut h = H::new(vec![kind(3)], opts());
    let (id, who) = h.submit(0);
    let a1 = h.dispatch(id, 1);
    let _ = h.lost(1, LostCause::HeartbeatTimeout);
    let a2 = h.dispatch(id, 2);
    assert_eq!(a2, a1 + 1);
    // The hung worker wakes up and completes the old attempt: dropped.
    assert!(h.complete(1, id, a1, ok(b"old")).is_empty());
    // Right attempt, wrong unit: dropped.
    assert!(h.complete(1, id, a2, ok(b"old")).is_empty());
    // Right unit, wrong attempt: dropped.
    assert!(h.complete(2, id, a1, ok(b"old")).is_empty());
    assert_eq!(h.d.stats().total.late_dropped, 3);
    assert_eq!(h.d.stats().per_kind[0].late_dropped, 3);
    assert_eq!(
        h.d.task_state(id),
        Some(TaskState::InFlight {
            unit: 2,
            since: h.now
        })
    );
    let out = h.complete(2, id, a2, ok(b"new"));
    assert_eq!(out, [deliver(who, id, FinalOutcome::Ok(b"new".to_vec()))]);
    // After the final delivery anything else for it is dropped too.
    assert!(h.complete(2, id, a2, ok(b"again")).is_empty());
    assert!(h.complete(1, id, a1, fatal("late")).is_empty());
    assert!(
        h.complete(0, TaskId(999), 1, ok(b"?")).is_empty(),
        "never issued"
    );
    assert_eq!(h.d.stats().total.late_dropped, 6);
    assert_eq!(h.d.answer_counts(), (1, 0));
}

#[test]
fn a_completion_for_a_task_not_in_flight_is_dropped() {
    let mut h = H::new(vec![kind(3)], opts());
    let (id, _) = h.submit(0);
    assert!(
        h.complete(0, id, 1, ok(b"x")).is_empty(),
        "queued, never dispatched"
    );
    let a = h.dispatch(id, 0);
    let _ = h.complete(0, id, a, retryable("x"));
    assert!(
        h.complete(0, id, a, ok(b"x")).is_empty(),
        "waiting for retry"
    );
    assert!(
        h.complete(0, id, a + 1, ok(b"x")).is_empty(),
        "the next attempt is not sent yet"
    );
    assert_eq!(h.d.stats().total.late_dropped, 3);
}

#[test]
fn poison_after_n_worker_deaths_is_dead_lettered_at_once() {
    let mut o = opts();
    o.poison_deaths = 3;
    let mut h = H::new(vec![kind(3)], o);
    let (id, who) = h.submit(0);
    let (bystander, _) = h.submit(0);
    for unit in 0..2 {
        h.dispatch(id, unit);
        assert_eq!(h.lost(unit, LostCause::Exited), [requeue(id, 0, true)]);
    }
    // Quarantine and deliberate stops are not deaths.
    h.dispatch(id, 5);
    assert_eq!(h.lost(5, LostCause::Quarantined), [requeue(id, 0, true)]);
    h.dispatch(id, 5);
    assert_eq!(h.lost(5, LostCause::Stopped), [requeue(id, 0, true)]);
    // The third death, with a bystander on the same unit.
    h.dispatch(id, 6);
    h.dispatch(bystander, 6);
    let out = h.lost(6, LostCause::HeartbeatTimeout);
    let reason = "poison: in flight on 3 worker deaths".to_owned();
    assert_eq!(
        out,
        [
            requeue(bystander, 0, true),
            DeliveryAction::DeadLetter {
                id,
                reason: reason.clone()
            },
            deliver(
                who,
                id,
                FinalOutcome::DeadLettered {
                    reason: reason.clone()
                }
            ),
        ]
    );
    let dlq = h.d.dlq_list();
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].reason, reason);
    assert_eq!(dlq[0].attempts, 6, "every requeue added an attempt");
    let s = h.d.stats().total;
    assert_eq!((s.dead_lettered, s.poisoned, s.requeued_lost), (1, 1, 5));
}

#[test]
fn lost_attempts_count_toward_max_attempts_on_a_later_retryable_error() {
    let mut o = opts();
    o.poison_deaths = 10;
    let mut h = H::new(vec![kind(3)], o);
    let (id, _) = h.submit(0);
    h.dispatch(id, 0);
    let _ = h.lost(0, LostCause::Exited);
    h.dispatch(id, 0);
    let _ = h.lost(0, LostCause::Exited);
    let a = h.dispatch(id, 0);
    assert_eq!(a, 3);
    let out = h.complete(0, id, a, retryable("boom"));
    assert!(
        matches!(&out[0], DeliveryAction::DeadLetter { reason, .. } if reason.contains("last error: boom")),
        "{out:?}"
    );
}

#[test]
fn dispatch_failed_puts_the_task_back_at_the_head_with_the_same_attempt() {
    let mut h = H::new(vec![kind(3)], opts());
    let (id, _) = h.submit(0);
    assert_eq!(h.dispatch(id, 4), 1);
    assert!(
        h.d.dispatch_failed(id, 5).is_empty(),
        "not in flight on unit 5"
    );
    assert_eq!(h.d.dispatch_failed(id, 4), [requeue(id, 0, true)]);
    h.d.check_invariants();
    assert!(h.d.dispatch_failed(id, 4).is_empty(), "already back");
    assert_eq!(h.dispatch(id, 5), 1);
}

#[test]
fn take_for_dispatch_skips_anything_but_a_queued_task() {
    let mut h = H::new(vec![kind(3)], opts());
    assert_eq!(
        h.d.take_for_dispatch(h.now, TaskId(1), 0),
        Take::Skip,
        "unknown"
    );
    let (id, _) = h.submit(0);
    h.dispatch(id, 0);
    assert_eq!(h.d.take_for_dispatch(h.now, id, 1), Take::Skip, "in flight");
    let _ = h.complete(0, id, 1, retryable("x"));
    assert_eq!(
        h.d.take_for_dispatch(h.now, id, 1),
        Take::Skip,
        "waiting for retry"
    );
    h.d.check_invariants();
}

#[test]
fn only_the_task_the_worker_was_running_is_blamed_for_its_death() {
    let mut o = opts();
    o.poison_deaths = 2;
    let mut h = H::new(vec![kind(3)], o);
    let (poison, _) = h.submit(0);
    let (waiting, _) = h.submit(0);
    // Both in flight on unit 1; the worker reports it was running `poison`.
    for _ in 0..3 {
        h.dispatch(poison, 1);
        h.dispatch(waiting, 1);
        let out =
            h.d.worker_lost_blaming(h.now, 1, LostCause::Exited, Blame::Only(poison));
        if out
            .iter()
            .any(|a| matches!(a, DeliveryAction::DeadLetter { .. }))
        {
            break;
        }
    }
    let dlq = h.d.dlq_list();
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].id, poison);
    assert_eq!(h.d.task_state(waiting), Some(TaskState::Queued));
    // Nobody: the worker was between tasks; no death is counted (up to the exposure backstop,
    // 2 x poison_deaths = 4, below).
    let (a, _) = h.submit(0);
    for _ in 0..3 {
        h.dispatch(a, 2);
        let out =
            h.d.worker_lost_blaming(h.now, 2, LostCause::Exited, Blame::Nobody);
        assert_eq!(out, [requeue(a, 0, true)]);
    }
    // A culprit that is not in flight there blames nobody; but every death is an exposure,
    // and twice the poison limit of exposures dead-letters the task whatever the reports say
    // (a worker that misreports can only delay poison detection).
    let (b, _) = h.submit(0);
    let mut dead = None;
    for round in 1..=4 {
        h.dispatch(b, 3);
        let out =
            h.d.worker_lost_blaming(h.now, 3, LostCause::Exited, Blame::Only(TaskId(999_999)));
        if out
            .iter()
            .any(|x| matches!(x, DeliveryAction::DeadLetter { id, .. } if *id == b))
        {
            dead = Some(round);
            break;
        }
    }
    assert_eq!(
        dead,
        Some(4),
        "dead-lettered at 2 x poison_deaths exposures"
    );
    let reason =
        h.d.dlq_list()
            .into_iter()
            .find(|e| e.id == b)
            .unwrap()
            .reason;
    assert!(reason.contains("did not report"), "{reason}");
}
