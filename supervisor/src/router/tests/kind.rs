//! `KindRouter`: credits, batches, workers coming and going, policy switches, counters.

use super::*;
use crate::config::{KindConfig, RouterPolicy};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn router(policy: RouterPolicy, limit: u64, batch: u32) -> KindRouter {
    let kind = KindConfig {
        queue_limit: limit,
        router: policy,
        batch,
        ..KindConfig::default()
    };
    KindRouter::new(&kind, &ClassConfig::defaults(), 1, DEFAULT_DECAY).unwrap()
}

fn ids(r: &KindRouter) -> (ClassId, ClassId) {
    (
        r.queues().class_id("interactive").unwrap(),
        r.queues().class_id("batch").unwrap(),
    )
}

#[test]
fn nothing_is_popped_without_an_eligible_worker() {
    let mut r = router(RouterPolicy::LeastLoaded, 100, 32);
    let (i, _) = ids(&r);
    let now = t0();
    r.submit(1, i).unwrap();
    assert!(!r.ready());
    assert_eq!(r.next_dispatch(now), None);
    assert_eq!(r.queued(), 1, "the task stays queued");
    r.worker_added(4, 1).unwrap();
    r.set_draining(4, true).unwrap();
    assert_eq!(r.next_dispatch(now), None, "draining: not eligible");
    r.set_draining(4, false).unwrap();
    assert!(r.ready());
    assert_eq!(
        r.next_dispatch(now),
        Some(Dispatch {
            task: 1,
            class: i,
            unit: 4
        })
    );
    assert_eq!(r.queued(), 0);
    assert!(!r.ready());
    assert_eq!(r.next_dispatch(now), None, "empty queue");
}

#[test]
fn a_full_window_makes_a_worker_ineligible_not_an_error() {
    let mut r = router(RouterPolicy::RoundRobin, 100, 32);
    let (i, _) = ids(&r);
    let now = t0();
    r.worker_added(0, 2).unwrap();
    r.worker_added(1, 1).unwrap();
    for id in 0..10 {
        r.submit(id, i).unwrap();
    }
    let mut out = Vec::new();
    assert_eq!(r.dispatch_batch(now, 100, &mut out), 3);
    assert_eq!(r.worker(0).unwrap().in_flight, 2);
    assert_eq!(r.worker(1).unwrap().in_flight, 1);
    assert!(!r.ready());
    assert_eq!(r.next_dispatch(now), None);
    r.completed(1, MS, true, now).unwrap();
    assert_eq!(r.next_dispatch(now).unwrap().unit, 1, "the freed credit");
    // A lower window takes nothing back; a higher one lets more through.
    r.set_window(0, 1).unwrap();
    r.completed(0, MS, true, now).unwrap();
    assert_eq!(r.next_dispatch(now), None, "1 in flight, window 1");
    r.set_window(0, 4).unwrap();
    assert_eq!(r.dispatch_batch(now, 100, &mut out), 3);
    assert_eq!(r.worker(0).unwrap().in_flight, 4);
}

/// Random submits, completions, window changes and dispatches: a dispatch never goes to a
/// worker at or over its window, and every task is accounted for exactly once.
#[test]
fn never_more_than_window_in_flight() {
    for policy in [
        RouterPolicy::RoundRobin,
        RouterPolicy::LeastLoaded,
        RouterPolicy::PeakEwma,
        RouterPolicy::Learned,
    ] {
        let mut r = router(policy, 50, 3);
        let (i, b) = ids(&r);
        let mut rng = SmallRng::seed_from_u64(77);
        let mut now = t0();
        let windows = [1u32, 2, 3, 5];
        for (unit, &w) in windows.iter().enumerate() {
            r.worker_added(unit, w).unwrap();
        }
        let mut in_flight: Vec<Vec<u64>> = vec![Vec::new(); 4];
        let (mut next, mut accepted, mut done) = (0u64, 0u64, 0u64);
        let mut out = Vec::new();
        for _ in 0..3000 {
            now += Duration::from_micros(rng.random_range(1..500));
            match rng.random_range(0..10) {
                0..=3 => {
                    if r.submit(next, if rng.random_bool(0.3) { i } else { b })
                        .is_ok()
                    {
                        accepted += 1;
                    }
                    next += 1;
                }
                4..=6 => {
                    let unit = rng.random_range(0..4);
                    if let Some(_task) = in_flight[unit].pop() {
                        r.completed(unit, MS, rng.random_bool(0.9), now).unwrap();
                        done += 1;
                    } else {
                        assert_eq!(
                            r.completed(unit, MS, true, now),
                            Err(UnitError::NothingInFlight { unit })
                        );
                    }
                }
                7 => {
                    let unit = rng.random_range(0..4);
                    r.set_window(unit, rng.random_range(0..6)).unwrap();
                }
                _ => {
                    let before: Vec<WorkerSlot> = r.workers().to_vec();
                    out.clear();
                    let limit = rng.random_range(1..20);
                    r.dispatch_batch(now, limit, &mut out);
                    let mut given = [0u32; 4];
                    for d in &out {
                        given[d.unit] += 1;
                        in_flight[d.unit].push(d.task);
                    }
                    for (u, w) in before.iter().enumerate() {
                        if given[u] > 0 {
                            assert!(
                                w.in_flight + given[u] <= w.window,
                                "{policy:?}: {w:?} got {}",
                                given[u]
                            );
                            assert!(given[u] <= 3, "batch limit");
                        }
                        assert_eq!(r.workers()[u].in_flight as usize, in_flight[u].len());
                    }
                    // Stopped only for a reason: the limit, an empty queue, or every worker
                    // out of credit or at its batch limit.
                    let stuck = r
                        .workers()
                        .iter()
                        .enumerate()
                        .all(|(u, w)| !w.eligible() || given[u] == 3);
                    assert!(out.len() == limit || r.queued() == 0 || stuck, "{policy:?}");
                }
            }
        }
        let flying: u64 = in_flight.iter().map(|v| v.len() as u64).sum();
        assert_eq!(accepted, done + flying + r.queued() as u64, "{policy:?}");
        assert_eq!(r.in_flight(), flying);
        assert_eq!(r.rejected(), next - accepted);
        assert!(r.rejected() > 0 && done > 100, "{policy:?}: exercised");
    }
}

#[test]
fn dispatch_batch_limits_per_worker_and_in_total() {
    let mut r = router(RouterPolicy::LeastLoaded, 1000, 2);
    let (_, b) = ids(&r);
    let now = t0();
    for unit in 0..3 {
        r.worker_added(unit, 10).unwrap();
    }
    for id in 0..100 {
        r.submit(id, b).unwrap();
    }
    let mut out = Vec::new();
    assert_eq!(
        r.dispatch_batch(now, 100, &mut out),
        6,
        "3 workers x batch 2"
    );
    for unit in 0..3 {
        assert_eq!(out.iter().filter(|d| d.unit == unit).count(), 2);
    }
    let tasks: Vec<_> = out.iter().map(|d| d.task).collect();
    assert_eq!(tasks, [0, 1, 2, 3, 4, 5], "FIFO within the class");
    // The next wakeup gets a fresh batch; the total limit applies too.
    out.clear();
    assert_eq!(r.dispatch_batch(now, 4, &mut out), 4);
    assert_eq!(r.dispatched(), 10);
    // next_dispatch ignores the batch limit, not the window.
    let mut n = 0;
    while r.next_dispatch(now).is_some() {
        n += 1;
    }
    assert_eq!(n, 20, "windows of 10");
    assert_eq!(r.queued(), 70);
}

#[test]
fn removed_workers_get_nothing_and_their_tasks_can_be_requeued_in_order() {
    let mut r = router(RouterPolicy::RoundRobin, 100, 32);
    let (i, b) = ids(&r);
    let now = t0();
    r.worker_added(0, 3).unwrap();
    r.worker_added(1, 3).unwrap();
    for id in 0..6 {
        r.submit(id, i).unwrap();
    }
    r.submit(100, b).unwrap();
    let mut out = Vec::new();
    r.dispatch_batch(now, 6, &mut out);
    let on_1: Vec<_> = out
        .iter()
        .filter(|d| d.unit == 1)
        .map(|d| (d.task, d.class))
        .collect();
    assert_eq!(on_1, [(1, i), (3, i), (5, i)]);
    let slot = r.worker_removed(1).unwrap();
    assert_eq!((slot.in_flight, slot.dispatched), (3, 3));
    r.requeue_all(&on_1);
    assert_eq!(r.queued(), 4);
    assert_eq!(r.worker_removed(1), Err(UnitError::Unknown { unit: 1 }));
    assert_eq!(
        r.completed(1, MS, true, now),
        Err(UnitError::Unknown { unit: 1 })
    );
    assert_eq!(r.set_window(1, 3), Err(UnitError::Unknown { unit: 1 }));
    // Unit 0 frees its credits. Interactive's turn ended when it ran empty, so batch has its
    // turn first; then the requeued tasks, in their order.
    for _ in 0..3 {
        r.completed(0, MS, true, now).unwrap();
    }
    out.clear();
    r.dispatch_batch(now, 10, &mut out);
    let got: Vec<_> = out.iter().map(|d| (d.task, d.unit)).collect();
    assert_eq!(got, [(100, 0), (1, 0), (3, 0)]);
    // It comes back: a fresh slot.
    r.worker_added(1, 3).unwrap();
    assert_eq!(
        r.worker_added(1, 3),
        Err(UnitError::AlreadyAdded { unit: 1 })
    );
    assert_eq!(r.next_dispatch(now).map(|d| (d.task, d.unit)), Some((5, 1)));
    assert_eq!(r.worker(1).unwrap().dispatched, 1);
}

#[test]
fn abandoned_frees_the_credit_without_a_sample() {
    let mut r = router(RouterPolicy::PeakEwma, 100, 32);
    let (i, _) = ids(&r);
    let now = t0();
    r.worker_added(0, 1).unwrap();
    r.submit(1, i).unwrap();
    let d = r.next_dispatch(now).unwrap();
    r.abandoned(d.unit, now).unwrap();
    r.requeue(d.task, d.class);
    assert_eq!(
        r.abandoned(0, now),
        Err(UnitError::NothingInFlight { unit: 0 })
    );
    assert_eq!(r.next_dispatch(now).map(|d| d.task), Some(1));
    let w = r.worker(0).unwrap();
    assert_eq!((w.dispatched, w.abandoned, w.in_flight), (2, 1, 1));
    assert_eq!(
        r.describe(now)["router"]["units"].as_array().unwrap().len(),
        0
    );
}

#[test]
fn counters_and_description() {
    let mut r = router(RouterPolicy::LeastLoaded, 3, 32);
    let (i, b) = ids(&r);
    let now = t0();
    r.worker_added(2, 8).unwrap();
    r.submit(1, i).unwrap();
    r.submit(2, b).unwrap();
    r.submit(3, b).unwrap();
    assert!(r.submit(4, b).is_err());
    assert!(r.submit(5, i).is_err());
    assert_eq!(r.rejected(), 2);
    assert_eq!((r.queued_class(i), r.queued_class(b)), (1, 2));
    assert_eq!(r.cancel(3), Some(b));
    assert_eq!(r.cancel(3), None);
    assert_eq!(r.next_dispatch(now).unwrap().task, 1);
    r.completed(2, MS, false, now).unwrap();
    let s = r.stats();
    assert_eq!(s.policy, "least_loaded");
    assert_eq!(
        s.queued,
        [("interactive".to_owned(), 0), ("batch".to_owned(), 1)]
    );
    assert_eq!((s.rejected, s.dispatched, s.in_flight), (2, 1, 0));
    let w = r.worker(2).unwrap();
    assert_eq!((w.dispatched, w.completed, w.failed), (1, 1, 1));
    let d = r.describe(now);
    assert_eq!(d["stats"]["rejected"], 2);
    assert_eq!(d["queue_limit"], 3);
    assert_eq!(d["workers"][0]["unit"], 2);
    assert_eq!(d["router"]["policy"], "least_loaded");
}

#[test]
fn switching_policy_keeps_queues_and_credits() {
    let mut r = router(RouterPolicy::PeakEwma, 100, 32);
    let (i, b) = ids(&r);
    let now = t0();
    r.worker_added(0, 2).unwrap();
    r.worker_added(1, 2).unwrap();
    for id in 0..10 {
        r.submit(id, if id % 3 == 0 { i } else { b }).unwrap();
    }
    let first: Vec<_> = (0..3).map(|_| r.next_dispatch(now).unwrap()).collect();
    r.completed(first[0].unit, 5 * MS, true, now).unwrap();
    let before = r.describe(now)["router"].clone();
    r.set_policy(RouterPolicy::PeakEwma);
    assert_eq!(
        r.describe(now)["router"],
        before,
        "same policy: statistics kept"
    );
    r.set_policy(RouterPolicy::RoundRobin);
    assert_eq!(r.policy(), RouterPolicy::RoundRobin);
    assert_eq!(r.describe(now)["router"]["policy"], "round_robin");
    assert_eq!((r.queued(), r.in_flight()), (7, 2));
    // Only the remaining credits are used; every task comes out once.
    let mut seen: Vec<_> = first.iter().map(|d| d.task).collect();
    let mut flying: Vec<usize> = first[1..].iter().map(|d| d.unit).collect();
    let mut t = now;
    while seen.len() < 10 {
        while let Some(d) = r.next_dispatch(t) {
            seen.push(d.task);
            flying.push(d.unit);
            assert!(r.worker(d.unit).unwrap().in_flight <= 2);
        }
        let unit = flying.remove(0);
        t += MS;
        r.completed(unit, MS, true, t).unwrap();
        if seen.len() == 6 {
            r.set_policy(RouterPolicy::Learned);
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
    assert_eq!(r.queued(), 0);
}

#[test]
fn changing_the_decay_restarts_peak_ewma_and_keeps_queues_and_credits() {
    let mut r = router(RouterPolicy::PeakEwma, 100, 32);
    let (_, b) = ids(&r);
    let now = t0();
    r.worker_added(0, 2).unwrap();
    for id in 0..4 {
        r.submit(id, b).unwrap();
    }
    let d = r.next_dispatch(now).unwrap();
    r.completed(d.unit, 5 * MS, true, now).unwrap();
    let _flying = r.next_dispatch(now).unwrap();
    assert_eq!(r.describe(now)["router"]["decay_ms"], 10_000.0);
    assert_eq!(r.describe(now)["router"]["units"][0]["samples"], 1);
    r.set_decay(Duration::from_secs(10));
    assert_eq!(
        r.describe(now)["router"]["units"][0]["samples"],
        1,
        "same decay: estimates kept"
    );
    r.set_decay(Duration::from_secs(2));
    assert_eq!(r.decay(), Duration::from_secs(2));
    let desc = r.describe(now);
    assert_eq!(desc["router"]["decay_ms"], 2_000.0);
    assert_eq!(
        desc["router"]["units"],
        serde_json::json!([]),
        "estimates dropped: {desc}"
    );
    assert_eq!((r.queued(), r.in_flight()), (2, 1));
    // Another policy keeps running; it gets the decay when switched to peak_ewma.
    r.set_policy(RouterPolicy::RoundRobin);
    r.set_decay(Duration::from_secs(3));
    assert_eq!(r.describe(now)["router"]["policy"], "round_robin");
    r.set_policy(RouterPolicy::PeakEwma);
    assert_eq!(r.describe(now)["router"]["decay_ms"], 3_000.0);
}

#[test]
fn bad_classes_are_an_error() {
    let err = KindRouter::new(&KindConfig::default(), &[], 1, DEFAULT_DECAY).unwrap_err();
    assert_eq!(err, ClassesError::Empty);
}

#[test]
fn requeues_ignore_the_limit() {
    let mut r = router(RouterPolicy::LeastLoaded, 2, 32);
    let (_, b) = ids(&r);
    r.submit(1, b).unwrap();
    r.submit(2, b).unwrap();
    assert!(r.submit(3, b).is_err());
    r.requeue_back(4, b); // a retry after its backoff: the tail
    r.requeue(5, b); // a lost worker's task: the head
    assert_eq!(r.queued(), 4);
    assert_eq!(r.rejected(), 1);
    r.worker_added(0, 10).unwrap();
    let order: Vec<_> = std::iter::from_fn(|| r.next_dispatch(t0()))
        .map(|d| d.task)
        .collect();
    assert_eq!(order, [5, 1, 2, 4]);
}

#[test]
fn measured_costs_send_tasks_to_the_fastest_idle_worker_whatever_the_policy() {
    for policy in [
        RouterPolicy::RoundRobin,
        RouterPolicy::LeastLoaded,
        RouterPolicy::PeakEwma,
        RouterPolicy::Learned,
    ] {
        let mut r = router(policy, 1000, 32);
        let (i, _) = ids(&r);
        let now = t0();
        for unit in 0..4 {
            r.worker_added(unit, 1).unwrap();
        }
        // Without costs every idle worker gets one.
        for id in 0..4 {
            r.submit(id, i).unwrap();
        }
        let mut units: Vec<usize> = (0..4).map(|_| r.next_dispatch(now).unwrap().unit).collect();
        units.sort_unstable();
        assert_eq!(units, [0, 1, 2, 3], "{policy:?}");
        for unit in 0..4 {
            r.completed(unit, Duration::from_millis(1), true, now)
                .unwrap();
        }
        // Unit 2 is 4x slower, unit 3 twice as fast: with all idle, unit 3 is chosen every
        // time (it finishes first); when it is busy, the 1.0 ones; never unit 2 while a worker
        // expected to finish within 1.5x of the best is free.
        r.set_cost(2, Some(4.0)).unwrap();
        r.set_cost(3, Some(0.5)).unwrap();
        for round in 0..20 {
            r.submit(100 + round, i).unwrap();
            let d = r.next_dispatch(now).unwrap();
            assert_eq!(d.unit, 3, "{policy:?} round {round}");
            r.completed(3, Duration::from_millis(1), true, now).unwrap();
        }
        r.set_window(3, 1).unwrap();
        for id in 200..203 {
            r.submit(id, i).unwrap();
        }
        let mut got: Vec<usize> = (0..3).map(|_| r.next_dispatch(now).unwrap().unit).collect();
        got.sort_unstable();
        // 3 first (0.5), then 0 and 1 (1.0 <= 1.5 x 1.0 once 3 is busy); never 2.
        assert_eq!(got, [0, 1, 3], "{policy:?}");
        // Only the slow one left: it still gets work (nothing is starved of a worker).
        r.submit(300, i).unwrap();
        assert_eq!(r.next_dispatch(now).unwrap().unit, 2, "{policy:?}");
        // Forgetting the costs restores the policy's own choice.
        r.set_cost(2, None).unwrap();
        r.set_cost(3, None).unwrap();
        assert!(r.workers().iter().all(|w| w.cost.is_none()));
        assert!(r.set_cost(9, Some(1.0)).is_err(), "unknown unit");
    }
}
