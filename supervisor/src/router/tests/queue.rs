//! `KindQueues`: limits, requeues at the head, removal, and the DRR guarantees.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, VecDeque};

fn default_queues(limit: u64) -> (KindQueues, ClassId, ClassId) {
    let q = KindQueues::new(&ClassConfig::defaults(), limit).unwrap();
    let (i, b) = (
        q.class_id("interactive").unwrap(),
        q.class_id("batch").unwrap(),
    );
    (q, i, b)
}

#[test]
fn class_list_is_checked() {
    assert_eq!(KindQueues::new(&[], 10).unwrap_err(), ClassesError::Empty);
    assert_eq!(
        KindQueues::new(&classes(&[("a", 1), ("b", 0)]), 10).unwrap_err(),
        ClassesError::ZeroWeight { name: "b".into() }
    );
    assert_eq!(
        KindQueues::new(&classes(&[("a", 1), ("a", 2)]), 10).unwrap_err(),
        ClassesError::Duplicate { name: "a".into() }
    );
    let q = KindQueues::new(&classes(&[("hi", 5), ("lo", 2)]), 10).unwrap();
    assert_eq!(q.class_count(), 2);
    assert_eq!(q.class_id("lo"), Some(ClassId::new(1)));
    assert_eq!(q.class_id("nope"), None);
    assert_eq!(q.class_name(ClassId::new(0)), "hi");
    assert_eq!(q.class_weight(ClassId::new(1)), 2);
    let msg = ClassesError::ZeroWeight { name: "b".into() }.to_string();
    assert!(msg.contains("\"b\"") && msg.contains("at least 1"), "{msg}");
}

#[test]
fn queue_limit_refuses_new_tasks_and_hands_them_back() {
    let (mut q, i, b) = default_queues(3);
    q.push_back(1, b).unwrap();
    q.push_back(2, i).unwrap();
    q.push_back(3, b).unwrap();
    let err = q.push_back(4, i).unwrap_err();
    assert_eq!(
        err,
        QueueFull {
            id: 4,
            class: i,
            limit: 3
        }
    );
    assert!(err.to_string().contains("queue_limit"), "{err}");
    assert_eq!((q.len(), q.len_class(i), q.len_class(b)), (3, 1, 2));
    // A requeue ignores the limit and goes to the head of its class.
    q.push_front(9, b);
    assert_eq!(q.len(), 4);
    assert_eq!(q.position(9), Some((b, 0)));
    assert!(q.push_back(5, b).is_err(), "still over the limit");
    // Interactive's turn first, then batch's turn starts with the requeued task.
    assert_eq!(q.pop(), Some((2, i)));
    assert_eq!(q.pop(), Some((9, b)));
    assert_eq!(q.len(), 2);
    q.push_back(5, b).unwrap(); // below the limit again
    assert!(q.push_back(6, b).is_err());
    // A lower limit keeps what is queued and refuses the rest.
    q.set_limit(1);
    assert_eq!(q.len(), 3);
    assert!(q.push_back(7, i).is_err());
    assert_eq!(q.limit(), 1);
}

#[test]
fn zero_limit_refuses_everything_but_requeues() {
    let (mut q, i, _) = default_queues(0);
    assert!(q.push_back(1, i).is_err());
    q.push_front(1, i);
    assert_eq!(q.pop(), Some((1, i)));
    assert_eq!(q.pop(), None);
}

#[test]
fn push_front_all_keeps_order_at_the_heads() {
    let (mut q, i, b) = default_queues(100);
    q.push_back(10, i).unwrap();
    q.push_back(20, b).unwrap();
    q.push_front_all(&[(1, i), (2, b), (3, i)]);
    assert_eq!(q.position(1), Some((i, 0)));
    assert_eq!(q.position(3), Some((i, 1)));
    assert_eq!(q.position(10), Some((i, 2)));
    assert_eq!(q.position(2), Some((b, 0)));
    assert_eq!(q.position(20), Some((b, 1)));
    let popped: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(id, _)| id).collect();
    assert_eq!(popped, [1, 3, 10, 2, 20]);
}

#[test]
fn remove_cancels_a_queued_task() {
    let (mut q, i, b) = default_queues(100);
    for id in 0..5 {
        q.push_back(id, if id % 2 == 0 { i } else { b }).unwrap();
    }
    assert_eq!(q.remove(2), Some(i));
    assert_eq!(q.remove(2), None);
    assert_eq!(q.remove(42), None);
    assert_eq!((q.len(), q.len_class(i), q.len_class(b)), (4, 2, 2));
    let popped: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
    assert_eq!(popped, [(0, i), (4, i), (1, b), (3, b)]);
}

#[test]
fn drain_all_empties_by_class() {
    let (mut q, i, b) = default_queues(100);
    q.push_back(1, b).unwrap();
    q.push_back(2, i).unwrap();
    q.push_back(3, b).unwrap();
    assert_eq!(q.drain_all(), [(2, i), (1, b), (3, b)]);
    assert!(q.is_empty());
    assert_eq!(q.pop(), None);
}

#[test]
fn an_empty_class_is_skipped() {
    let (mut q, _, b) = default_queues(100);
    for id in 0..20 {
        q.push_back(id, b).unwrap();
    }
    let popped: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(id, _)| id).collect();
    assert_eq!(popped, (0..20).collect::<Vec<_>>(), "work-conserving, FIFO");
}

#[test]
fn drr_order_with_both_classes_backlogged() {
    let (mut q, i, b) = default_queues(1000);
    for id in 0..20 {
        q.push_back(100 + id, b).unwrap();
        q.push_back(id, i).unwrap();
    }
    let classes: String = (0..20)
        .map(|_| if q.pop().unwrap().1 == i { 'I' } else { 'B' })
        .collect();
    assert_eq!(classes, "IIIIIIIIBIIIIIIIIBII");
}

/// Under a flood of batch tasks, a trickle of interactive tasks (bursts of `burst` every
/// `every` pops) waits for at most the batch quantum plus the interactive tasks ahead of it:
/// measured in pops between its push and its pop.
#[test]
fn interactive_waits_about_one_round_under_a_batch_flood() {
    for (batch_weight, burst, every) in [(1, 1, 3), (1, 1, 10), (1, 4, 12), (3, 1, 5), (3, 2, 9)] {
        let cls = classes(&[("interactive", 8), ("batch", batch_weight)]);
        let mut q = KindQueues::new(&cls, 1_000_000).unwrap();
        let (i, b) = (ClassId::new(0), ClassId::new(1));
        for id in 0..50_000 {
            q.push_back(1_000_000 + id, b).unwrap();
        }
        let mut pushed_at = BTreeMap::new();
        let mut worst_other = 0;
        let mut worst_wait = 0;
        let mut next_id = 0;
        let mut batch_pops_since: BTreeMap<u64, u32> = BTreeMap::new();
        for step in 0..6_000u64 {
            if step % every == 0 {
                for _ in 0..burst {
                    q.push_back(next_id, i).unwrap();
                    pushed_at.insert(next_id, step);
                    batch_pops_since.insert(next_id, 0);
                    next_id += 1;
                }
            }
            let (id, class) = q.pop().unwrap();
            if class == b {
                for n in batch_pops_since.values_mut() {
                    *n += 1;
                }
            } else {
                worst_other = worst_other.max(batch_pops_since.remove(&id).unwrap());
                worst_wait = worst_wait.max(step - pushed_at[&id]);
            }
        }
        assert!(next_id > 100);
        assert!(
            batch_pops_since.len() <= burst as usize,
            "interactive keeps up"
        );
        // Batch pops while an interactive task waited: at most one batch turn.
        assert!(
            worst_other <= batch_weight,
            "weights 8:{batch_weight}, burst {burst}/{every}: {worst_other} batch pops"
        );
        // Total wait: the batch turn plus the burst ahead of it — about one round.
        assert!(
            worst_wait < u64::from(batch_weight + burst),
            "weights 8:{batch_weight}, burst {burst}/{every}: waited {worst_wait} pops"
        );
    }
}

/// Under a flood of interactive tasks, batch still gets weight / sum of the pops; likewise for
/// three classes.
#[test]
fn every_class_gets_its_weighted_share_when_backlogged() {
    for weights in [vec![8, 1], vec![1, 1], vec![5, 3, 2], vec![1000, 1]] {
        let names: Vec<String> = (0..weights.len()).map(|c| format!("c{c}")).collect();
        let spec: Vec<(&str, u32)> = names
            .iter()
            .map(String::as_str)
            .zip(weights.iter().copied())
            .collect();
        let mut q = KindQueues::new(&classes(&spec), u64::MAX).unwrap();
        let total: u32 = weights.iter().sum();
        let pops = 20_000u64;
        for c in 0..weights.len() {
            for id in 0..pops {
                q.push_back(id, ClassId::new(c)).unwrap();
            }
        }
        let mut counts = vec![0u64; weights.len()];
        for _ in 0..pops {
            counts[q.pop().unwrap().1.index()] += 1;
        }
        for (c, &w) in weights.iter().enumerate() {
            let want = pops as f64 * f64::from(w) / f64::from(total);
            assert!(
                (counts[c] as f64 - want).abs() <= f64::from(w),
                "weights {weights:?}: class {c} got {} of {pops}, want {want}",
                counts[c]
            );
        }
    }
}

/// A class that runs empty loses the rest of its turn: it cannot bank credit while idle.
#[test]
fn an_idle_class_banks_no_credit() {
    let (mut q, i, b) = default_queues(1000);
    for id in 0..100 {
        q.push_back(100 + id, b).unwrap();
    }
    q.push_back(1, i).unwrap();
    assert_eq!(q.pop(), Some((1, i))); // interactive's turn ends early (emptied)
    assert_eq!(q.pop().unwrap().1, b);
    for id in 2..20 {
        q.push_back(id, i).unwrap();
    }
    // A fresh turn of 8, not 8 + the 7 left unused.
    let order: String = (0..10)
        .map(|_| if q.pop().unwrap().1 == i { 'I' } else { 'B' })
        .collect();
    assert_eq!(order, "IIIIIIIIBI");
}

#[derive(Debug, Clone)]
enum Op {
    Back(usize),
    Front(usize),
    Pop,
    Remove(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize).prop_map(Op::Back),
        1 => (0..3usize).prop_map(Op::Front),
        4 => Just(Op::Pop),
        1 => (0..64u64).prop_map(Op::Remove),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Against a model (a deque per class): every task comes out exactly once, of its class,
    /// in per-class order; lengths agree; the limit holds for `push_back`.
    #[test]
    fn queues_match_a_model(ops in proptest::collection::vec(op(), 1..300)) {
        let mut q = KindQueues::new(&classes(&[("a", 3), ("b", 2), ("c", 1)]), 20).unwrap();
        let mut model: Vec<VecDeque<u64>> = vec![VecDeque::new(); 3];
        let mut next = 0u64;
        for op in ops {
            match op {
                Op::Back(c) => {
                    let full = q.len() >= 20;
                    prop_assert_eq!(q.push_back(next, ClassId::new(c)).is_err(), full);
                    if !full { model[c].push_back(next); }
                    next += 1;
                }
                Op::Front(c) => {
                    q.push_front(next, ClassId::new(c));
                    model[c].push_front(next);
                    next += 1;
                }
                Op::Pop => match q.pop() {
                    None => prop_assert!(model.iter().all(VecDeque::is_empty)),
                    Some((id, c)) => prop_assert_eq!(model[c.index()].pop_front(), Some(id)),
                },
                Op::Remove(id) => {
                    let found = model.iter().position(|m| m.contains(&id));
                    prop_assert_eq!(q.remove(id).map(ClassId::index), found);
                    if let Some(c) = found { model[c].retain(|&t| t != id); }
                }
            }
            prop_assert_eq!(q.len(), model.iter().map(VecDeque::len).sum::<usize>());
            for (c, m) in model.iter().enumerate() {
                prop_assert_eq!(q.len_class(ClassId::new(c)), m.len());
            }
        }
    }
}
