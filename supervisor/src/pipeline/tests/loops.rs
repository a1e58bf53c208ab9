//! Feedback loops: max_loops, min_improvement, refine_kind, through the pipeline.

use super::{config, Harness};
use crate::delivery::FinalOutcome;
use crate::pipeline::loopback::{decide, LoopDecision, LoopPolicy, LoopState, LoopStop};
use crate::pipeline::routes::{StepStatus, Via};
use crate::pipeline::LoopVerdict;

#[test]
fn decide_stops_at_max_loops() {
    let p = LoopPolicy {
        max_loops: 3,
        refine_kind: None,
        min_improvement: None,
    };
    let mut s = LoopState::default();
    for i in 1..=3 {
        assert_eq!(
            decide(&p, 4, &mut s, f64::NAN),
            LoopDecision::Again { kind: 4 }
        );
        assert_eq!(s.loops, i);
    }
    assert_eq!(
        decide(&p, 4, &mut s, f64::NAN),
        LoopDecision::Stop {
            why: LoopStop::Limit,
            loops: 3
        }
    );
    // max_loops = 0: no loopback is followed.
    let p0 = LoopPolicy { max_loops: 0, ..p };
    assert!(matches!(
        decide(&p0, 4, &mut LoopState::default(), 1.0),
        LoopDecision::Stop {
            why: LoopStop::Limit,
            loops: 0
        }
    ));
}

#[test]
fn decide_stops_early_without_improvement() {
    let p = LoopPolicy {
        max_loops: 100,
        refine_kind: Some(9),
        min_improvement: Some(0.1),
    };
    let mut s = LoopState::default();
    assert_eq!(
        decide(&p, 1, &mut s, 0.2),
        LoopDecision::Again { kind: 9 },
        "to refine_kind"
    );
    // No score this round: no verdict on improvement, the reference stays 0.2.
    assert_eq!(
        decide(&p, 1, &mut s, f64::NAN),
        LoopDecision::Again { kind: 9 }
    );
    assert_eq!(s.last_score, Some(0.2));
    assert_eq!(decide(&p, 1, &mut s, 0.5), LoopDecision::Again { kind: 9 });
    // +0.05 < 0.1.
    assert_eq!(
        decide(&p, 1, &mut s, 0.55),
        LoopDecision::Stop {
            why: LoopStop::NoImprovement {
                previous: 0.5,
                score: 0.55
            },
            loops: 3
        }
    );
    // A worse score stops too.
    let mut s = LoopState {
        loops: 1,
        last_score: Some(0.9),
    };
    assert!(matches!(
        decide(&p, 1, &mut s, 0.3),
        LoopDecision::Stop { .. }
    ));
}

#[test]
fn same_kind_loops_end_in_loop_limit() {
    let c = config(&["score", "other"], "[kinds.score]\nmax_loops = 2\n");
    let mut h = Harness::new(&c);
    let id = h.submit("score", b"v0");
    let k = h.kind("score");
    assert_eq!(h.p.loopback(id, k, f64::NAN, "again"), LoopVerdict::Requeue);
    assert_eq!(h.p.loopback(id, k, f64::NAN, "again"), LoopVerdict::Requeue);
    assert_eq!(
        h.p.loopback(id, k, f64::NAN, "still bad"),
        LoopVerdict::Complete
    );
    // The event loop passes Outcome::Ok(payload) to the delivery core instead.
    h.ok(id, b"v2");
    assert_eq!(h.answers.len(), 1);
    assert_eq!(
        h.answers[0].outcome,
        FinalOutcome::LoopLimit {
            payload: b"v2".to_vec(),
            reason: "still bad (max_loops reached)".into(),
            loops: 2
        }
    );
    assert_eq!(h.answers[0].path, None, "a plain task");
    let st = h.p.stats();
    assert_eq!((st.loops, st.loop_stops), (2, 1));
    assert_eq!(
        h.p.max_loops_bound(),
        10,
        "the other kinds keep the default"
    );
}

#[test]
fn min_improvement_stops_early_through_the_pipeline() {
    let c = config(
        &["score"],
        "[kinds.score]\nmax_loops = 50\nmin_improvement = 0.05\n",
    );
    let mut h = Harness::new(&c);
    let id = h.submit("score", b"v0");
    let k = h.kind("score");
    let mut verdicts = Vec::new();
    for score in [0.1, 0.3, 0.5, 0.52, 0.9] {
        let v = h.p.loopback(id, k, score, "improve");
        verdicts.push(v);
        if v == LoopVerdict::Complete {
            break;
        }
    }
    assert_eq!(
        verdicts,
        [
            LoopVerdict::Requeue,
            LoopVerdict::Requeue,
            LoopVerdict::Requeue,
            LoopVerdict::Complete
        ]
    );
    h.ok(id, b"best");
    let FinalOutcome::LoopLimit {
        payload,
        reason,
        loops,
    } = &h.answers[0].outcome
    else {
        panic!("{:?}", h.answers[0].outcome)
    };
    assert_eq!((payload.as_slice(), *loops), (&b"best"[..], 3));
    assert!(reason.contains("min_improvement"), "{reason}");
}

#[test]
fn refine_kind_loops_through_the_refiner_and_counts_across_rounds() {
    let c = config(
        &["draft", "refine", "publish"],
        "[kinds.draft]\nmax_loops = 2\nrefine_kind = \"refine\"\n\
         [[route]]\nfrom = \"draft\"\nto = \"publish\"\n",
    );
    let mut h = Harness::new(&c);
    let root = h.submit("draft", b"d0");
    let client = h.tasks[&root].to;
    let (kd, _) = (h.kind("draft"), h.kind("refine"));
    // Round 1: the draft asks for refinement → the payload goes to `refine`.
    assert_eq!(h.p.loopback(root, kd, 0.1, "rough"), LoopVerdict::Complete);
    h.ok(root, b"d0-notes");
    let r1 = h.one("refine");
    assert_eq!(h.payload(r1), b"d0-notes");
    assert!(h.running("publish").is_empty());
    // The refiner's result re-enters `draft`.
    h.ok(r1, b"d1");
    let d1 = h.one("draft");
    assert_eq!(h.payload(d1), b"d1");
    // Round 2, then the limit (2 loops taken across two task ids).
    assert_eq!(h.p.loopback(d1, kd, 0.2, "better"), LoopVerdict::Complete);
    h.ok(d1, b"d1-notes");
    let r2 = h.one("refine");
    h.ok(r2, b"d2");
    let d2 = h.one("draft");
    assert_eq!(h.p.loopback(d2, kd, 0.3, "almost"), LoopVerdict::Complete);
    h.ok(d2, b"d2-final");
    // Loop-limited results still follow ok routes.
    let p = h.one("publish");
    assert_eq!(h.payload(p), b"d2-final");
    h.ok(p, b"published");
    assert_eq!(h.answers.len(), 1);
    let a = &h.answers[0];
    assert_eq!((a.to, a.id), (client, root));
    assert_eq!(a.outcome, FinalOutcome::Ok(b"published".to_vec()));
    let path: Vec<(&str, Via, StepStatus)> = a
        .path
        .as_ref()
        .unwrap()
        .iter()
        .map(|s| (s.kind.as_str(), s.via, s.status))
        .collect();
    assert_eq!(
        path,
        [
            ("draft", Via::Submitted, StepStatus::Refining),
            ("refine", Via::Refine, StepStatus::Ok),
            ("draft", Via::Loop, StepStatus::Refining),
            ("refine", Via::Refine, StepStatus::Ok),
            ("draft", Via::Loop, StepStatus::LoopLimit),
            ("publish", Via::Route, StepStatus::Ok),
        ]
    );
}

#[test]
fn a_refiner_failure_ends_the_loop_with_the_error() {
    let c = config(
        &["draft", "refine"],
        "[kinds.draft]\nrefine_kind = \"refine\"\n",
    );
    let mut h = Harness::new(&c);
    let root = h.submit("draft", b"d0");
    let kd = h.kind("draft");
    assert_eq!(
        h.p.loopback(root, kd, f64::NAN, "rough"),
        LoopVerdict::Complete
    );
    h.ok(root, b"notes");
    let r = h.one("refine");
    h.fail(r, "refiner crashed");
    assert_eq!(
        h.answers[0].outcome,
        FinalOutcome::Failed {
            message: "refiner crashed".into()
        }
    );
    assert_eq!(h.answers[0].id, root);
}
