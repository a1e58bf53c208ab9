//! The fan-in state machine alone, and the combined-result format.

use crate::config::{FailurePolicy, FanIn};
use crate::pipeline::fanout::{
    decode_combined, encode_combined, ChildResult, FanOutError, Group, GroupStatus,
};

fn group(rule: FanIn, policy: FailurePolicy, n: usize) -> Group {
    let mut g = Group::new(rule, policy);
    for i in 0..n {
        assert_eq!(g.add_child(), Ok(i));
    }
    g
}

fn is_complete(s: &GroupStatus) -> bool {
    matches!(s, GroupStatus::Complete(_))
}

#[test]
fn all_completes_once_whatever_the_order() {
    // Every order of 3 children and the seal: exactly one Complete, at the last event.
    let events = [0usize, 1, 2, 3]; // 3 = seal
    let mut orders = vec![];
    for a in events {
        for b in events {
            for c in events {
                for d in events {
                    let o = [a, b, c, d];
                    let mut sorted = o;
                    sorted.sort_unstable();
                    if sorted == events {
                        orders.push(o);
                    }
                }
            }
        }
    }
    assert_eq!(orders.len(), 24);
    for order in orders {
        let mut g = group(FanIn::All, FailurePolicy::FailParent, 3);
        let statuses: Vec<GroupStatus> = order
            .iter()
            .map(|&e| {
                if e == 3 {
                    g.seal(b"own".to_vec())
                } else {
                    g.child_done(e, Ok(vec![b'0' + e as u8]))
                }
            })
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| is_complete(s)).count(),
            1,
            "{order:?}"
        );
        assert!(
            is_complete(&statuses[3]),
            "{order:?}: completes at the last event"
        );
        assert!(g.is_finished() && g.pending().is_empty());
        // Anything after is ignored.
        assert_eq!(g.child_done(0, Ok(vec![])), GroupStatus::Ignored);
        assert_eq!(g.seal(vec![]), GroupStatus::Ignored);
    }
}

#[test]
fn duplicates_and_unknown_children_are_ignored() {
    let mut g = group(FanIn::All, FailurePolicy::FailParent, 2);
    assert_eq!(g.child_done(0, Ok(b"a".to_vec())), GroupStatus::Pending);
    assert_eq!(g.child_done(0, Ok(b"again".to_vec())), GroupStatus::Ignored);
    assert_eq!(g.child_done(7, Ok(vec![])), GroupStatus::Ignored);
    assert_eq!(g.seal(vec![]), GroupStatus::Pending);
    assert_eq!(g.add_child(), Err(FanOutError::Sealed));
    let GroupStatus::Complete(bytes) = g.child_done(1, Ok(b"b".to_vec())) else {
        panic!()
    };
    let c = decode_combined(&bytes).unwrap();
    assert_eq!(
        c.children[0],
        ChildResult::Ok(b"a".to_vec()),
        "the first result counts"
    );
}

#[test]
fn any_and_at_least() {
    let mut g = group(FanIn::Any, FailurePolicy::FailParent, 3);
    assert_eq!(
        g.child_done(1, Ok(b"x".to_vec())),
        GroupStatus::Pending,
        "not sealed yet"
    );
    assert!(is_complete(&g.seal(vec![])));
    assert_eq!(g.pending(), [0, 2]);

    let mut g = group(FanIn::Any, FailurePolicy::FailParent, 2);
    g.seal(vec![]);
    assert_eq!(g.child_done(0, Err("a".into())), GroupStatus::Pending);
    assert!(matches!(
        g.child_done(1, Err("b".into())),
        GroupStatus::Failed(_)
    ));

    let mut g = group(FanIn::AtLeast(2), FailurePolicy::FailParent, 3);
    g.seal(vec![]);
    assert_eq!(g.child_done(0, Ok(vec![])), GroupStatus::Pending);
    assert_eq!(
        g.child_done(1, Err("e".into())),
        GroupStatus::Pending,
        "2 can still succeed"
    );
    assert!(is_complete(&g.child_done(2, Ok(vec![]))));

    // More needed than there are children: fails at the seal.
    let mut g = group(FanIn::AtLeast(5), FailurePolicy::FailParent, 3);
    let GroupStatus::Failed(m) = g.seal(vec![]) else {
        panic!()
    };
    assert!(m.contains("needs 5"), "{m}");
    // ... unless failures are tolerated: completes when all finished.
    let mut g = group(FanIn::AtLeast(5), FailurePolicy::Continue, 2);
    g.seal(vec![]);
    g.child_done(0, Ok(vec![]));
    assert!(is_complete(&g.child_done(1, Err("x".into()))));
}

#[test]
fn all_fail_parent_fails_before_the_seal() {
    let mut g = group(FanIn::All, FailurePolicy::FailParent, 3);
    let GroupStatus::Failed(m) = g.child_done(1, Err("boom".into())) else {
        panic!()
    };
    assert_eq!(m, "child 2 of 3 failed: boom");
    assert_eq!(g.pending(), [0, 2]);
    assert_eq!(g.seal(vec![]), GroupStatus::Ignored);
    // A failed parent fails the group.
    let mut g = group(FanIn::All, FailurePolicy::Continue, 1);
    assert_eq!(g.parent_failed("p"), GroupStatus::Failed("p".into()));
    assert_eq!(g.parent_failed("p"), GroupStatus::Ignored);
}

#[test]
fn combined_format_round_trips_and_refuses_garbage() {
    let children = [
        ChildResult::Ok(b"one".to_vec()),
        ChildResult::Failed("two failed".into()),
        ChildResult::Cancelled,
        ChildResult::Ok(Vec::new()),
    ];
    let bytes = encode_combined(b"own", &children);
    // own_len(4) own(3) count(4) + 4 entries of 5 header bytes + 3 + 10 bytes of data.
    assert_eq!(bytes.len(), 4 + 3 + 4 + 4 * 5 + 3 + 10);
    assert_eq!(&bytes[..4], &3u32.to_le_bytes());
    let d = decode_combined(&bytes).unwrap();
    assert_eq!(d.own, b"own");
    assert_eq!(d.children, children);
    for cut in 0..bytes.len() {
        assert!(decode_combined(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(decode_combined(&extra).is_err());
    let mut bad = bytes;
    bad[11] = 9; // the first child's status
    assert_eq!(
        decode_combined(&bad),
        Err(FanOutError::Malformed("unknown child status"))
    );
}
