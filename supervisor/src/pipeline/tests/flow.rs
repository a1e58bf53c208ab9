//! Chains across routes, route fan-out, subtask fan-in, and answers to the original submitter.

use super::{config, Harness};
use crate::delivery::{FinalOutcome, Submitter, TaskId};
use crate::pipeline::fanout::{decode_combined, ChildResult};
use crate::pipeline::routes::{format_path, tag_result, StepStatus, Via};
use crate::pipeline::{FlowAction, PIPELINE_CLIENT};

const CHAIN: &str = r#"
[[route]]
from = "validate"
to = "transform"
[[route]]
from = "transform"
to = "store"
"#;

#[test]
fn three_stage_chain_answers_the_original_submitter_with_its_path() {
    let c = config(&["validate", "transform", "store"], CHAIN);
    let mut h = Harness::new(&c);
    let root = h.submit("validate", b"raw");
    let client = h.tasks[&root].to;
    h.ok(root, b"valid");
    assert!(h.answers.is_empty(), "the chain goes on");
    let t = h.one("transform");
    assert_eq!(h.payload(t), b"valid", "the payload is the previous result");
    assert_eq!(h.tasks[&t].parent, Some(root));
    assert_eq!(h.tasks[&t].to.client, PIPELINE_CLIENT);
    // ampctl tasks shows the chain in progress.
    let chains = h.p.chains();
    assert_eq!(chains.len(), 1);
    assert_eq!(chains[0].root, root);
    assert_eq!(
        format_path(&chains[0].path),
        format!("validate{root} ok -> transform{t} running")
    );
    h.ok(t, b"transformed");
    let s = h.one("store");
    assert_eq!(h.payload(s), b"transformed");
    assert_eq!(h.tasks[&s].parent, Some(t));
    h.ok(s, b"stored");
    assert_eq!(h.answers.len(), 1);
    let a = &h.answers[0];
    assert_eq!(
        (a.to, a.id),
        (client, root),
        "answered to the submitter of the root"
    );
    assert_eq!(a.outcome, FinalOutcome::Ok(b"stored".to_vec()));
    let path = a.path.as_ref().expect("a chain has a path");
    assert_eq!(
        path.iter()
            .map(|s| (s.kind.as_str(), s.task, s.via, s.status))
            .collect::<Vec<_>>(),
        [
            ("validate", Some(root), Via::Submitted, StepStatus::Ok),
            ("transform", Some(t), Via::Route, StepStatus::Ok),
            ("store", Some(s), Via::Route, StepStatus::Ok),
        ]
    );
    assert!(h.p.chains().is_empty() && h.p.pending_tasks() == 0);
    let st = h.p.stats();
    assert_eq!(
        (st.chains_started, st.chains_finished, st.spawned),
        (1, 1, 2)
    );
}

#[test]
fn a_failed_stage_fails_the_chain_by_default() {
    let c = config(&["validate", "transform", "store"], CHAIN);
    let mut h = Harness::new(&c);
    let root = h.submit("validate", b"raw");
    h.ok(root, b"valid");
    let t = h.one("transform");
    h.fail(t, "cannot parse");
    assert!(h.running("store").is_empty());
    assert_eq!(h.answers.len(), 1);
    assert_eq!(
        h.answers[0].outcome,
        FinalOutcome::Failed {
            message: "cannot parse".into()
        }
    );
    assert_eq!(h.answers[0].id, root);
    let path = h.answers[0].path.clone().unwrap();
    assert_eq!(path[1].status, StepStatus::Failed);
    assert_eq!(path.len(), 2);
}

#[test]
fn plain_tasks_pass_through_untouched() {
    let c = config(&["validate", "transform", "store"], CHAIN);
    let mut h = Harness::new(&c);
    let id = h.submit("store", b"x");
    h.ok(id, b"y");
    assert_eq!(h.answers.len(), 1);
    assert_eq!(h.answers[0].path, None);
    assert_eq!(h.answers[0].outcome, FinalOutcome::Ok(b"y".to_vec()));
    assert_eq!(h.p.stats().chains_started, 0);
}

#[test]
fn err_routes_take_failures_with_the_message_as_payload() {
    let c = config(
        &["a", "fix", "b"],
        "[[route]]\nfrom = \"a\"\nto = \"fix\"\non = \"err\"\n[[route]]\nfrom = \"a\"\nto = \"b\"\n",
    );
    let mut h = Harness::new(&c);
    // Failure → fix, with the message.
    let r1 = h.submit("a", b"1");
    h.answer(
        r1,
        FinalOutcome::TimedOut {
            after: std::time::Duration::from_secs(2),
        },
    );
    let f = h.one("fix");
    assert_eq!(h.payload(f), b"timed out after 2s");
    assert!(h.running("b").is_empty(), "ok routes do not take failures");
    h.ok(f, b"repaired");
    assert_eq!(h.answers[0].outcome, FinalOutcome::Ok(b"repaired".to_vec()));
    assert_eq!(h.answers[0].id, r1);
    // Success → b, not fix.
    let r2 = h.submit("a", b"2");
    h.ok(r2, b"fine");
    assert_eq!(h.payload(h.one("b")), b"fine");
    assert_eq!(h.running("fix"), []);
    // A cancelled task is never routed.
    let r3 = h.submit("a", b"3");
    h.answer(
        r3,
        FinalOutcome::Cancelled {
            reason: "shutdown".into(),
        },
    );
    assert_eq!(h.running("fix"), []);
    assert!(matches!(
        h.answers.last().unwrap().outcome,
        FinalOutcome::Cancelled { .. }
    ));
}

#[test]
fn on_failure_continue_skips_the_failed_stage() {
    let c = config(
        &["a", "enrich", "store"],
        "[[route]]\nfrom = \"a\"\nto = \"enrich\"\non_failure = \"continue\"\n\
         [[route]]\nfrom = \"enrich\"\nto = \"store\"\n",
    );
    let mut h = Harness::new(&c);
    let root = h.submit("a", b"x");
    h.ok(root, b"A");
    let e = h.one("enrich");
    h.fail(e, "enricher down");
    let s = h.one("store");
    assert_eq!(h.payload(s), b"A", "the skipped stage's input passes on");
    h.ok(s, b"S");
    let a = &h.answers[0];
    assert_eq!(a.outcome, FinalOutcome::Ok(b"S".to_vec()));
    let statuses: Vec<StepStatus> = a.path.as_ref().unwrap().iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [StepStatus::Ok, StepStatus::Skipped, StepStatus::Ok]
    );
}

#[test]
fn tagged_results_follow_tag_routes() {
    let c = config(
        &["a", "big", "small"],
        "[[route]]\nfrom = \"a\"\nto = \"big\"\non = \"tag:big\"\n\
         [[route]]\nfrom = \"a\"\nto = \"small\"\n",
    );
    let mut h = Harness::new(&c);
    let r = h.submit("a", b"");
    h.ok(r, &tag_result("big", b"payload"));
    let b = h.one("big");
    assert_eq!(h.payload(b), b"payload", "the tag is removed");
    assert!(h.running("small").is_empty());
    let r = h.submit("a", b"");
    h.ok(r, b"plain");
    assert_eq!(h.payload(h.one("small")), b"plain");
    // A tag no route takes follows the ok routes, tag removed.
    let r = h.submit("a", b"");
    h.ok(r, &tag_result("other", b"o"));
    assert_eq!(h.running("small").len(), 2);
    assert_eq!(h.payload(*h.running("small").last().unwrap()), b"o");
}

#[test]
fn route_fan_out_and_fan_in_all() {
    let c = config(
        &["a", "b", "c"],
        "[[route]]\nfrom = \"a\"\nto = \"b\"\n[[route]]\nfrom = \"a\"\nto = \"c\"\n",
    );
    let mut h = Harness::new(&c);
    let root = h.submit("a", b"in");
    h.ok(root, b"A");
    let (b, cc) = (h.one("b"), h.one("c"));
    assert_eq!((h.payload(b), h.payload(cc)), (&b"A"[..], &b"A"[..]));
    h.ok(cc, b"C");
    assert!(h.answers.is_empty(), "fan_in all waits for b");
    h.ok(b, b"B");
    assert_eq!(h.answers.len(), 1);
    let FinalOutcome::Ok(bytes) = &h.answers[0].outcome else {
        panic!("{:?}", h.answers[0].outcome)
    };
    let combined = decode_combined(bytes).unwrap();
    assert!(combined.own.is_empty());
    assert_eq!(
        combined.children,
        [
            ChildResult::Ok(b"B".to_vec()),
            ChildResult::Ok(b"C".to_vec())
        ],
        "children in route order"
    );
    let vias: Vec<Via> = h.answers[0]
        .path
        .as_ref()
        .unwrap()
        .iter()
        .map(|s| s.via)
        .collect();
    assert_eq!(vias, [Via::Submitted, Via::FanOut, Via::FanOut]);
}

#[test]
fn route_fan_out_any_cancels_the_rest() {
    let c = config(
        &["a", "b", "c", "d"],
        "[kinds.a]\nfan_in = \"any\"\n\
         [[route]]\nfrom = \"a\"\nto = \"b\"\n[[route]]\nfrom = \"a\"\nto = \"c\"\n[[route]]\nfrom = \"a\"\nto = \"d\"\n",
    );
    let mut h = Harness::new(&c);
    let root = h.submit("a", b"in");
    h.ok(root, b"A");
    let (b, cc, d) = (h.one("b"), h.one("c"), h.one("d"));
    h.fail(b, "nope");
    assert!(h.answers.is_empty());
    h.ok(d, b"D");
    assert_eq!(h.answers.len(), 1, "the first success completes the parent");
    assert_eq!(h.cancelled, [cc], "the child still running is cancelled");
    let FinalOutcome::Ok(bytes) = &h.answers[0].outcome else {
        panic!()
    };
    assert_eq!(
        decode_combined(bytes).unwrap().children,
        [
            ChildResult::Failed("nope".into()),
            ChildResult::Cancelled,
            ChildResult::Ok(b"D".to_vec())
        ]
    );
    assert_eq!(
        h.p.stats().ignored,
        1,
        "the cancelled child's answer is ignored"
    );
    assert_eq!(h.p.pending_tasks(), 0);
}

/// A parent of kind `map` emitting `n` subtasks of kind `part`.
fn fan_out(fan_in: &str, child_failure: &str, n: usize) -> (Harness, TaskId, Vec<TaskId>) {
    let c = config(
        &["map", "part"],
        &format!("[kinds.map]\nfan_in = {fan_in}\nchild_failure = \"{child_failure}\"\n"),
    );
    let mut h = Harness::new(&c);
    let parent = h.submit("map", b"job");
    let children = (0..n)
        .map(|i| h.subtask(parent, "part", format!("piece {i}").as_bytes()))
        .collect();
    (h, parent, children)
}

#[test]
fn subtask_fan_in_all_completes_exactly_once() {
    let (mut h, parent, kids) = fan_out("\"all\"", "fail_parent", 5);
    let client = h.tasks[&parent].to;
    for &k in &kids[..2] {
        h.ok(k, b"r");
    }
    h.ok(parent, b"own");
    assert!(h.answers.is_empty(), "3 children still run");
    // Child 3's worker crashes: the delivery core requeues it (same id). Only that child runs
    // again: nothing is cancelled, the group keeps waiting.
    h.p.task_restarted(kids[2], &mut Vec::new());
    let mut actions = Vec::new();
    h.p.task_restarted(kids[2], &mut actions);
    assert!(actions.is_empty() && h.cancelled.is_empty());
    h.ok(kids[3], b"r3");
    h.ok(kids[4], b"r4");
    assert!(h.answers.is_empty());
    h.ok(kids[2], b"r2 (second run)");
    assert_eq!(h.answers.len(), 1);
    let a = &h.answers[0];
    assert_eq!((a.to, a.id), (client, parent));
    let FinalOutcome::Ok(bytes) = &a.outcome else {
        panic!("{:?}", a.outcome)
    };
    let combined = decode_combined(bytes).unwrap();
    assert_eq!(combined.own, b"own");
    assert_eq!(combined.children.len(), 5);
    assert_eq!(
        combined.children[2],
        ChildResult::Ok(b"r2 (second run)".to_vec())
    );
    // A late duplicate of a child's answer changes nothing.
    let mut out = Vec::new();
    h.p.delivered(
        h.tasks[&kids[0]].to,
        kids[0],
        h.kind("part"),
        0,
        FinalOutcome::Ok(b"dup".to_vec()),
        &mut out,
    );
    assert!(out.is_empty());
    assert_eq!(h.answers.len(), 1);
    assert_eq!(h.p.stats().groups_completed, 1);
}

#[test]
fn subtask_fan_in_all_fails_on_the_first_child_failure() {
    let (mut h, parent, kids) = fan_out("\"all\"", "fail_parent", 3);
    h.ok(kids[0], b"r");
    h.fail(kids[1], "bad piece");
    assert!(h.answers.is_empty(), "the parent still runs");
    assert_eq!(
        h.cancelled,
        [kids[2]],
        "the remaining child is cancelled at once"
    );
    h.ok(parent, b"own");
    assert_eq!(h.answers.len(), 1);
    assert_eq!(
        h.answers[0].outcome,
        FinalOutcome::Failed {
            message: "child 2 of 3 failed: bad piece".into()
        }
    );
    assert_eq!(h.p.pending_tasks(), 0);
}

#[test]
fn subtask_fan_in_continue_records_failures() {
    let (mut h, parent, kids) = fan_out("\"all\"", "continue", 3);
    h.ok(parent, b"");
    h.fail(kids[0], "x");
    h.ok(kids[1], b"1");
    h.answer(kids[2], FinalOutcome::DeadlineExceeded);
    let FinalOutcome::Ok(bytes) = &h.answers[0].outcome else {
        panic!("{:?}", h.answers[0].outcome)
    };
    assert_eq!(
        decode_combined(bytes).unwrap().children,
        [
            ChildResult::Failed("x".into()),
            ChildResult::Ok(b"1".to_vec()),
            ChildResult::Failed("deadline exceeded".into())
        ]
    );
}

#[test]
fn subtask_fan_in_at_least() {
    // 2 of 4 needed: completes at the second success, cancelling the others.
    let (mut h, parent, kids) = fan_out("{ at_least = 2 }", "fail_parent", 4);
    h.ok(kids[3], b"3");
    h.ok(kids[0], b"0");
    assert!(h.answers.is_empty(), "waits for the parent's own answer");
    h.ok(parent, b"own");
    assert_eq!(h.answers.len(), 1);
    assert_eq!(h.cancelled, [kids[1], kids[2]]);
    assert!(matches!(h.answers[0].outcome, FinalOutcome::Ok(_)));

    // 3 of 4 needed and 2 fail: impossible, fails.
    let (mut h, parent, kids) = fan_out("{ at_least = 3 }", "fail_parent", 4);
    h.ok(parent, b"own");
    h.fail(kids[0], "a");
    assert!(h.answers.is_empty());
    h.fail(kids[1], "b");
    assert_eq!(h.answers.len(), 1);
    let FinalOutcome::Failed { message } = &h.answers[0].outcome else {
        panic!()
    };
    assert!(
        message.contains("needs 3 to succeed, and only 2 can"),
        "{message}"
    );
    assert_eq!(h.cancelled, [kids[2], kids[3]]);
}

#[test]
fn a_failed_parent_fails_and_cancels_its_children() {
    let (mut h, parent, kids) = fan_out("\"all\"", "fail_parent", 2);
    h.ok(kids[0], b"r");
    h.fail(parent, "parent crashed");
    assert_eq!(h.cancelled, [kids[1]]);
    assert_eq!(
        h.answers[0].outcome,
        FinalOutcome::Failed {
            message: "parent crashed".into()
        }
    );
}

#[test]
fn a_restarted_parent_drops_its_old_children() {
    let (mut h, parent, kids) = fan_out("\"all\"", "fail_parent", 2);
    let mut out = Vec::new();
    h.p.task_restarted(parent, &mut out);
    assert_eq!(
        out,
        [
            FlowAction::Cancel { id: kids[0] },
            FlowAction::Cancel { id: kids[1] }
        ]
    );
    h.carry_out(out);
    // The second run emits one subtask and finishes.
    let k = h.subtask(parent, "part", b"again");
    h.ok(k, b"R");
    h.ok(parent, b"own");
    let FinalOutcome::Ok(bytes) = &h.answers[0].outcome else {
        panic!()
    };
    assert_eq!(
        decode_combined(bytes).unwrap().children,
        [ChildResult::Ok(b"R".to_vec())]
    );
    assert_eq!(h.answers.len(), 1);
}

#[test]
fn subtasks_after_the_parent_finished_are_refused() {
    let (mut h, parent, kids) = fan_out("\"all\"", "fail_parent", 1);
    h.ok(parent, b"own");
    let (pk, ck) = (h.kind("map"), h.kind("part"));
    assert!(h.p.subtask(parent, pk, ck, 0).is_err(), "sealed");
    h.ok(kids[0], b"r");
    assert_eq!(h.answers.len(), 1);
}

#[test]
fn joined_submitters_of_a_chain_root_get_the_same_answer() {
    let c = config(&["a", "b"], "[[route]]\nfrom = \"a\"\nto = \"b\"\n");
    let mut h = Harness::new(&c);
    let root = h.submit("a", b"x");
    let (first, second) = (h.tasks[&root].to, Submitter { client: 9, tag: 9 });
    let ka = h.kind("a");
    let mut out = Vec::new();
    h.p.delivered(
        first,
        root,
        ka,
        0,
        FinalOutcome::Ok(b"A".to_vec()),
        &mut out,
    );
    h.p.delivered(
        second,
        root,
        ka,
        0,
        FinalOutcome::Ok(b"A".to_vec()),
        &mut out,
    );
    h.tasks.get_mut(&root).unwrap().done = true;
    h.carry_out(out);
    let b = h.one("b");
    h.ok(b, b"B");
    let to: Vec<Submitter> = h.answers.iter().map(|a| a.to).collect();
    assert_eq!(to, [first, second]);
    assert!(h
        .answers
        .iter()
        .all(|a| a.id == root && a.outcome == FinalOutcome::Ok(b"B".to_vec())));
    assert_eq!(h.p.stats().spawned, 1, "one chain, not two");
}

#[test]
fn a_refused_stage_fails_the_chain() {
    let c = config(&["a", "b"], "[[route]]\nfrom = \"a\"\nto = \"b\"\n");
    let mut h = Harness::new(&c);
    let root = h.submit("a", b"x");
    h.ok(root, b"A");
    let b = h.one("b");
    h.answer(
        b,
        FinalOutcome::Rejected {
            reason: "queue of kind b is full".into(),
        },
    );
    assert_eq!(
        h.answers[0].outcome,
        FinalOutcome::Rejected {
            reason: "queue of kind b is full".into()
        }
    );
}
