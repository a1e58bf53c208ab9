//! Deadlines before dispatch, run timeouts per `on_timeout`, `next_deadline`.

use super::*;

#[test]
fn a_deadline_passed_before_dispatch_ends_deadline_exceeded() {
    let mut h = H::new(vec![kind(3)], opts());
    let deadline = h.now + 50 * MS;
    let (id, who) = h.submit_with(0, |t| t.deadline = Some(deadline));
    let (fine, _) = h.submit_with(0, |t| t.deadline = Some(deadline + MS));
    h.now = deadline;
    let out = h.d.take_for_dispatch(h.now, id, 0);
    assert_eq!(
        out,
        Take::Expired(vec![deliver(who, id, FinalOutcome::DeadlineExceeded)])
    );
    h.d.check_invariants();
    // The stale queue entry is skipped later.
    assert_eq!(h.d.take_for_dispatch(h.now, id, 0), Take::Skip);
    // A task whose deadline is still ahead is dispatched with it.
    let Take::Dispatch(info) = h.d.take_for_dispatch(h.now, fine, 0) else {
        panic!("not dispatched");
    };
    assert_eq!(info.deadline, Some(deadline + MS));
    assert_eq!(h.d.stats().total.deadline_exceeded, 1);
    assert_eq!(h.d.census().done, 1);
}

#[test]
fn a_deadline_already_passed_at_submit_is_refused() {
    let mut h = H::new(vec![kind(3)], opts());
    let who = h.submitter();
    let mut t = NewTask::new(0, 0, vec![], who);
    t.deadline = Some(h.now);
    assert_eq!(h.d.submit(h.now, t), Err(SubmitError::DeadlinePassed));
    assert_eq!(h.d.census().total(), 0);
}

#[test]
fn expire_queued_sweeps_only_queued_tasks_past_their_deadline() {
    let mut h = H::new(vec![kind(3)], opts());
    let soon = h.now + 10 * MS;
    let (a, wa) = h.submit_with(0, |t| t.deadline = Some(soon));
    let (b, _) = h.submit_with(0, |t| t.deadline = Some(soon));
    let (c, wc) = h.submit_with(0, |t| t.deadline = Some(soon));
    let (d, _) = h.submit(0);
    h.dispatch(b, 0); // in flight: left to its worker
    h.now = soon;
    let out = h.d.expire_queued(h.now);
    assert_eq!(
        out,
        [
            deliver(wa, a, FinalOutcome::DeadlineExceeded),
            deliver(wc, c, FinalOutcome::DeadlineExceeded)
        ]
    );
    h.d.check_invariants();
    assert_eq!(h.d.task_state(d), Some(TaskState::Queued));
    assert!(matches!(
        h.d.task_state(b),
        Some(TaskState::InFlight { .. })
    ));
}

#[test]
fn run_timeout_with_fail_answers_timed_out_and_drops_the_late_completion() {
    let mut h = H::new(
        vec![timed_kind(Duration::from_secs(2), OnTimeout::Fail)],
        opts(),
    );
    let (id, who) = h.submit(0);
    let a = h.dispatch(id, 3);
    let due = h.now + Duration::from_secs(2);
    assert_eq!(h.d.next_deadline(), Some(due));
    h.now = due - MS;
    assert!(h.tick().is_empty());
    h.now = due;
    let timed_out = FinalOutcome::TimedOut {
        after: Duration::from_secs(2),
    };
    assert_eq!(
        h.tick(),
        [
            deliver(who, id, timed_out),
            DeliveryAction::Abandoned { id, unit: 3 }
        ]
    );
    assert_eq!(h.d.next_deadline(), None);
    assert_eq!(h.d.in_flight_on(3), 0);
    assert!(h.complete(3, id, a, ok(b"too late")).is_empty());
    let s = h.d.stats().total;
    assert_eq!((s.timed_out, s.late_dropped, s.delivered_ok), (1, 1, 0));
    // The worker dying afterwards changes nothing.
    assert!(h.lost(3, LostCause::Exited).is_empty());
}

#[test]
fn a_completion_before_the_run_timeout_cancels_it() {
    let mut h = H::new(
        vec![timed_kind(Duration::from_secs(2), OnTimeout::Fail)],
        opts(),
    );
    let (id, _) = h.submit(0);
    let a = h.dispatch(id, 0);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.complete(0, id, a, ok(b"r")).len(), 1);
    assert_eq!(h.d.next_deadline(), None);
    h.advance(Duration::from_secs(5));
    assert!(h.tick().is_empty());
}

#[test]
fn run_timeout_with_kill_and_requeue_kills_the_unit_once_then_requeues_on_its_death() {
    let kinds = vec![timed_kind(
        Duration::from_secs(1),
        OnTimeout::KillAndRequeue,
    )];
    let mut h = H::new(kinds, opts());
    let (a, _) = h.submit(0);
    let (b, _) = h.submit(0);
    let (c, _) = h.submit(0);
    h.dispatch(a, 2);
    h.advance(100 * MS);
    h.dispatch(b, 2);
    h.dispatch(c, 9);
    h.at(Duration::from_secs(1));
    assert_eq!(h.tick(), [DeliveryAction::KillWorker { unit: 2, id: a }]);
    assert_eq!(
        h.d.next_deadline(),
        Some(h.t0 + Duration::from_millis(1100))
    );
    h.at(Duration::from_secs(2));
    // b on the same unit times out too: no second kill for unit 2; c's unit is killed.
    assert_eq!(h.tick(), [DeliveryAction::KillWorker { unit: 9, id: c }]);
    assert_eq!(h.d.next_deadline(), None, "no timer fires twice");
    assert_eq!(h.d.stats().total.timeout_kills, 3);
    // The loop kills unit 2 and reaps it: both its tasks go to the front as attempt 2.
    let out = h.lost(2, LostCause::Exited);
    assert_eq!(out, [requeue(b, 0, true), requeue(a, 0, true)]);
    assert_eq!(h.dispatch(a, 4), 2);
    // The new dispatch gets its own run timeout.
    h.at(Duration::from_secs(3));
    let out = h.tick();
    assert_eq!(out, [DeliveryAction::KillWorker { unit: 4, id: a }]);
}

#[test]
fn a_completion_racing_the_kill_is_accepted() {
    let kinds = vec![timed_kind(
        Duration::from_secs(1),
        OnTimeout::KillAndRequeue,
    )];
    let mut h = H::new(kinds, opts());
    let (id, who) = h.submit(0);
    let a = h.dispatch(id, 2);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.tick(), [DeliveryAction::KillWorker { unit: 2, id }]);
    // It finished just before the kill landed.
    assert_eq!(
        h.complete(2, id, a, ok(b"r")),
        [deliver(who, id, FinalOutcome::Ok(b"r".to_vec()))]
    );
    assert!(h.lost(2, LostCause::Exited).is_empty());
}

#[test]
fn next_deadline_is_the_earliest_retry_or_run_timeout() {
    let kinds = vec![
        kind(5),
        timed_kind(Duration::from_secs(10), OnTimeout::Fail),
    ];
    let mut h = H::new(kinds, opts());
    assert_eq!(h.d.next_deadline(), None);
    let (slow, _) = h.submit(1);
    h.dispatch(slow, 0);
    assert_eq!(h.d.next_deadline(), Some(h.t0 + Duration::from_secs(10)));
    let (flaky, _) = h.submit(0);
    let a = h.dispatch(flaky, 1);
    let out = h.complete(1, flaky, a, retryable("x"));
    let [DeliveryAction::ScheduleRetry { at, .. }] = out[..] else {
        panic!("{out:?}");
    };
    assert_eq!(h.d.next_deadline(), Some(at));
    h.now = at;
    assert_eq!(h.tick(), [requeue(flaky, 0, false)]);
    assert_eq!(h.d.next_deadline(), Some(h.t0 + Duration::from_secs(10)));
}
