//! Completions: results, retries with full-jitter backoff, max_attempts, the retry budget,
//! loopbacks.

use super::*;

#[test]
fn retry_ceiling_doubles_up_to_the_cap() {
    let (base, cap) = (Duration::from_millis(100), Duration::from_secs(1));
    let table = [
        (0, 100),
        (1, 200),
        (2, 400),
        (3, 800),
        (4, 1000),
        (31, 1000),
        (u32::MAX, 1000),
    ];
    for (retry, ms) in table {
        assert_eq!(
            retry_ceiling(base, cap, retry),
            Duration::from_millis(ms),
            "retry {retry}"
        );
    }
    // A base so large that doubling overflows still yields the cap.
    assert_eq!(retry_ceiling(Duration::MAX, cap, 5), cap);
    assert_eq!(retry_ceiling(Duration::ZERO, cap, 5), Duration::ZERO);
}

#[test]
fn full_jitter_stays_within_zero_and_the_ceiling_and_spreads_over_it() {
    let (base, cap) = (Duration::from_millis(100), Duration::from_secs(1));
    let mut rng = SmallRng::seed_from_u64(42);
    for retry in 0..6 {
        let ceiling = retry_ceiling(base, cap, retry);
        let draws: Vec<Duration> = (0..2000)
            .map(|_| retry_delay(base, cap, retry, &mut rng))
            .collect();
        assert!(
            draws.iter().all(|d| *d <= ceiling),
            "retry {retry}: above {ceiling:?}"
        );
        // Full jitter: the whole window is used, not just its top (equal jitter) or a point.
        let low = draws.iter().filter(|d| **d < ceiling / 4).count();
        let high = draws.iter().filter(|d| **d > ceiling * 3 / 4).count();
        assert!(
            low > 300 && high > 300,
            "retry {retry}: {low} low, {high} high draws"
        );
    }
    assert_eq!(
        retry_delay(Duration::ZERO, cap, 3, &mut rng),
        Duration::ZERO
    );
}

#[test]
fn ok_is_delivered_once_and_the_task_is_done() {
    let mut h = H::new(vec![kind(3)], opts());
    let (id, who) = h.submit(0);
    let a = h.dispatch(id, 0);
    assert_eq!(a, 1);
    let out = h.complete(0, id, a, ok(b"r"));
    assert_eq!(out, [deliver(who, id, FinalOutcome::Ok(b"r".to_vec()))]);
    assert_eq!(h.d.census().done, 1);
    assert_eq!(h.d.task_state(id), None);
    assert_eq!(h.d.stats().total.delivered_ok, 1);
    assert_eq!(h.d.stats().per_kind[0].delivered_ok, 1);
    // The same completion again is a late duplicate.
    assert!(h.complete(0, id, a, ok(b"r")).is_empty());
    assert_eq!(h.d.stats().total.late_dropped, 1);
    assert_eq!(h.d.answer_counts(), (1, 0));
}

#[test]
fn non_retryable_error_fails_at_once() {
    let mut h = H::new(vec![kind(5)], opts());
    let (id, who) = h.submit(0);
    let a = h.dispatch(id, 0);
    let out = h.complete(0, id, a, fatal("bad input"));
    let failed = FinalOutcome::Failed {
        message: "bad input".into(),
    };
    assert_eq!(out, [deliver(who, id, failed)]);
    assert_eq!(h.d.stats().total.failed, 1);
    assert_eq!(h.d.stats().total.retried, 0);
}

#[test]
fn retries_back_off_with_jitter_then_requeue_at_the_back_with_the_next_attempt() {
    let mut h = H::new(vec![kind(4)], opts());
    let (id, _) = h.submit(0);
    for (attempt, ceiling_ms) in [(1u32, 100u64), (2, 200), (3, 400)] {
        assert_eq!(h.dispatch(id, 0), attempt);
        h.advance(10 * MS);
        let failed_at = h.now;
        let out = h.complete(0, id, attempt, retryable("busy"));
        let [DeliveryAction::ScheduleRetry {
            id: rid,
            attempt: next,
            at,
        }] = out[..]
        else {
            panic!("expected a retry, got {out:?}");
        };
        assert_eq!((rid, next), (id, attempt + 1));
        assert!(
            at >= failed_at && at <= failed_at + Duration::from_millis(ceiling_ms),
            "attempt {attempt}: {at:?}"
        );
        assert_eq!(h.d.task_state(id), Some(TaskState::WaitingRetry { at }));
        assert_eq!(h.d.next_deadline(), Some(at));
        // Nothing to do before it is due.
        if at > failed_at {
            h.now = at - Duration::from_nanos(1);
            assert!(h.tick().is_empty());
        }
        h.now = at;
        assert_eq!(h.tick(), [requeue(id, 0, false)]);
        assert_eq!(h.d.task_state(id), Some(TaskState::Queued));
        assert_eq!(h.d.next_deadline(), None);
    }
    assert_eq!(h.d.stats().total.retried, 3);
}

#[test]
fn max_attempts_dead_letters_with_the_last_error() {
    let mut h = H::new(vec![kind(2)], opts());
    let (id, who) = h.submit(0);
    let a = h.dispatch(id, 0);
    assert!(matches!(
        h.complete(0, id, a, retryable("first"))[..],
        [DeliveryAction::ScheduleRetry { .. }]
    ));
    h.advance(Duration::from_secs(1));
    assert_eq!(h.tick(), [requeue(id, 0, false)]);
    let a = h.dispatch(id, 1);
    assert_eq!(a, 2);
    let out = h.complete(1, id, a, retryable("second"));
    let reason = "2 attempts failed (max_attempts = 2); last error: second".to_owned();
    assert_eq!(
        out,
        [
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
    assert_eq!((dlq[0].id, dlq[0].attempts, dlq[0].payload_len), (id, 2, 1));
    assert_eq!(dlq[0].reason, reason);
    assert_eq!(h.d.census().dead_lettered, 1);
    assert_eq!(h.d.stats().total.dead_lettered, 1);
    assert_eq!(h.d.stats().total.poisoned, 0);
}

#[test]
fn max_attempts_one_never_retries() {
    let mut h = H::new(vec![kind(1)], opts());
    let (id, _) = h.submit(0);
    let a = h.dispatch(id, 0);
    let out = h.complete(0, id, a, retryable("x"));
    assert!(
        matches!(out[0], DeliveryAction::DeadLetter { .. }),
        "{out:?}"
    );
    assert_eq!(h.d.stats().total.retried, 0);
}

#[test]
fn an_empty_budget_dead_letters_the_task_instead_of_retrying() {
    let mut o = opts();
    o.budget = RetryBudget {
        ratio: 0.0,
        min_per_sec: 0.0,
        capacity: 2.0,
    };
    let mut h = H::new(vec![kind(10)], o);
    let ids: Vec<_> = (0..3).map(|_| h.submit(0)).collect();
    let mut outs = Vec::new();
    for &(id, _) in &ids {
        let a = h.dispatch(id, 0);
        outs.push(h.complete(0, id, a, retryable("overloaded")));
    }
    assert!(matches!(
        outs[0][..],
        [DeliveryAction::ScheduleRetry { .. }]
    ));
    assert!(matches!(
        outs[1][..],
        [DeliveryAction::ScheduleRetry { .. }]
    ));
    let (id, who) = ids[2];
    let reason = "retry budget exhausted (too many retries across ampd), not retried after attempt 1; last error: overloaded".to_owned();
    assert_eq!(
        outs[2],
        [
            DeliveryAction::DeadLetter {
                id,
                reason: reason.clone()
            },
            deliver(who, id, FinalOutcome::DeadLettered { reason })
        ]
    );
    let s = h.d.stats().total;
    assert_eq!(
        (s.retried, s.budget_exhausted, s.dead_lettered, s.failed),
        (2, 1, 1, 0)
    );
    // It waits in the dead-letter queue, from where it can be sent again.
    let dlq = h.d.dlq_list();
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].id, id);
    assert!(
        dlq[0].reason.contains("retry budget exhausted"),
        "{:?}",
        dlq[0]
    );
}

/// Submits, dispatches and fails one task with a retryable error; whether it was retried.
fn fail_once(h: &mut H) -> bool {
    let (id, _) = h.submit(0);
    let a = h.dispatch(id, 0);
    match h.complete(0, id, a, retryable("x"))[..] {
        [DeliveryAction::ScheduleRetry { .. }] => true,
        [DeliveryAction::DeadLetter { .. }, DeliveryAction::Deliver {
            outcome: FinalOutcome::DeadLettered { .. },
            ..
        }] => false,
        ref other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn the_budget_refills_with_submissions() {
    let mut o = opts();
    o.budget = RetryBudget {
        ratio: 0.5,
        min_per_sec: 0.0,
        capacity: 1.0,
    };
    let mut h = H::new(vec![kind(10)], o);
    assert!(fail_once(&mut h), "the bucket starts full"); // 1 (capped) - 1 = 0
    assert!(!fail_once(&mut h), "one submission earns half a token"); // 0.5
    assert!(
        fail_once(&mut h),
        "the second half arrives with the next submission"
    ); // 1 - 1
    assert!(h.d.budget_tokens().abs() < 1e-9);
    let s = h.d.stats().total;
    assert_eq!((s.retried, s.budget_exhausted), (2, 1));
}

#[test]
fn the_budget_refills_with_time_up_to_its_capacity() {
    let mut o = opts();
    o.budget = RetryBudget {
        ratio: 0.0,
        min_per_sec: 1.0,
        capacity: 1.0,
    };
    let mut h = H::new(vec![kind(10)], o);
    assert!(fail_once(&mut h));
    h.advance(Duration::from_millis(400));
    assert!(!fail_once(&mut h), "0.4 s earns 0.4 tokens");
    h.advance(Duration::from_millis(700));
    assert!(fail_once(&mut h), "1.1 s earn a token (capped at 1)");
    h.advance(Duration::from_secs(60));
    assert!(fail_once(&mut h), "a long pause fills the bucket...");
    assert!(!fail_once(&mut h), "...but only up to its capacity");
}

#[test]
fn lost_worker_requeues_do_not_use_the_budget() {
    let mut o = opts();
    o.budget.capacity = 0.0;
    o.poison_deaths = 100;
    let mut h = H::new(vec![kind(3)], o);
    let (id, _) = h.submit(0);
    for _ in 0..5 {
        h.dispatch(id, 0);
        assert_eq!(h.lost(0, LostCause::Exited), [requeue(id, 0, true)]);
    }
    assert_eq!(h.d.stats().total.budget_exhausted, 0);
}

#[test]
fn a_retry_due_after_the_deadline_ends_deadline_exceeded_now() {
    let mut h = H::new(vec![kind(5)], opts());
    let deadline = h.now + 10 * MS;
    let (id, who) = h.submit_with(0, |t| t.deadline = Some(deadline));
    let a = h.dispatch(id, 0);
    // It completes right at its deadline: any retry would be due at or after it.
    h.now = deadline;
    let out = h.complete(0, id, a, retryable("x"));
    assert_eq!(out, [deliver(who, id, FinalOutcome::DeadlineExceeded)]);
    assert_eq!(h.d.stats().total.deadline_exceeded, 1);
    assert_eq!(h.d.stats().total.retried, 0);
}

#[test]
fn a_deadline_passing_during_the_backoff_ends_the_task_at_its_retry() {
    let mut h = H::new(vec![kind(5)], opts());
    let deadline = h.now + Duration::from_secs(1);
    let (id, who) = h.submit_with(0, |t| t.deadline = Some(deadline));
    let a = h.dispatch(id, 0);
    h.advance(Duration::from_millis(800));
    let out = h.complete(0, id, a, retryable("x"));
    // The first retry waits at most 100 ms: due before the deadline.
    let [DeliveryAction::ScheduleRetry { at, .. }] = out[..] else {
        panic!("expected a retry, got {out:?}");
    };
    assert!(at < deadline);
    h.now = deadline;
    assert_eq!(h.tick(), [deliver(who, id, FinalOutcome::DeadlineExceeded)]);
}

#[test]
fn loopback_goes_round_with_the_new_payload_until_max_loops() {
    let mut o = opts();
    o.max_loops = 2;
    let mut h = H::new(vec![kind(3)], o);
    let (id, who) = h.submit(0);
    for round in 1..=2u8 {
        let a = h.dispatch(id, 0);
        assert_eq!(a, 1, "a loopback keeps the attempt");
        let lb = Outcome::Loopback {
            payload: vec![round],
            reason: format!("round {round}"),
        };
        assert_eq!(h.complete(0, id, a, lb), [requeue(id, 0, false)]);
        let Take::Dispatch(info) = h.d.take_for_dispatch(h.now, id, 0) else {
            panic!("not queued");
        };
        assert_eq!(info.payload, [round]);
        // Put it back so the loop above can take it again.
        assert_eq!(h.d.dispatch_failed(id, 0), [requeue(id, 0, true)]);
    }
    let a = h.dispatch(id, 0);
    let lb = Outcome::Loopback {
        payload: b"last".to_vec(),
        reason: "still low".into(),
    };
    let limit = FinalOutcome::LoopLimit {
        payload: b"last".to_vec(),
        reason: "still low".into(),
        loops: 2,
    };
    assert_eq!(h.complete(0, id, a, lb), [deliver(who, id, limit)]);
    let s = h.d.stats().total;
    assert_eq!((s.loopbacks, s.loop_limited), (2, 1));
}
