//! End-to-end chunks: many items as one task (`Client::push_chunk`), one outcome per item.

use std::time::Duration;

use amp_ipc::chunk::ItemOutcome;
use amp_ipc::client::{Client, ClientError, ResultStatus, Submit};
use amp_tests::Ampd;

const T: Duration = Duration::from_secs(20);

fn opts(kind: &str) -> Submit<'_> {
    Submit {
        kind,
        ..Submit::default()
    }
}

/// Owned copies of a chunk result's outcomes.
fn outcomes(r: &amp_ipc::client::TaskResult) -> Vec<Result<Vec<u8>, (bool, String)>> {
    r.outcomes()
        .unwrap_or_else(|e| panic!("ticket {}: {e}", r.ticket))
        .map(|o| match o {
            ItemOutcome::Ok(b) => Ok(b.to_vec()),
            ItemOutcome::Err { retryable, message } => {
                Err((retryable, String::from_utf8_lossy(message).into_owned()))
            }
        })
        .collect()
}

/// Chunks of every shape through amp-echo, mixed with plain tasks: each item's result comes
/// back in order; a plain task's result is not a chunk result; a chunk too large for the ring
/// is refused at push.
#[test]
fn chunks_round_trip_item_by_item() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.echo]
command = "amp-echo"
kinds = ["echo"]
replicas = 2
ring = { tasks = "1MiB", completions = "1MiB", max_record = "64KiB" }
"#,
    );
    d.wait_ready(&["echo#0", "echo#1"], T);
    let mut c = Client::connect(&d.socket).expect("attach");
    let mut sent = Vec::new();
    for n in [0usize, 1, 7, 1000, 3000] {
        // Items of varying length (0..=16 bytes), empty ones included.
        let items: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let len = (i * 7 + n) % 17;
                (0..len).map(|b| (i + b) as u8).collect()
            })
            .collect();
        sent.push((c.push_chunk(&opts("echo"), &items).unwrap(), items));
    }
    let plain = c.push(&opts("echo"), b"plain").unwrap();
    c.flush().unwrap();
    for (t, items) in &sent {
        let r = c.wait_for(*t, T).unwrap();
        assert_eq!(r.status, ResultStatus::Ok, "{}", r.text());
        assert_eq!(r.attempts, 1);
        let want: Vec<_> = items.iter().cloned().map(Ok).collect();
        assert_eq!(outcomes(&r), want, "chunk of {} items", items.len());
    }
    let r = c.wait_for(plain, T).unwrap();
    assert_eq!(r.body, b"plain");
    assert!(
        matches!(r.outcomes(), Err(ClientError::Wire(_))),
        "a plain result is not read as a chunk"
    );
    // 20 000 items of 4 bytes: 160 004 bytes, more than the 64 KiB a record may hold.
    let big = vec![[0u8; 4]; 20_000];
    assert!(
        matches!(
            c.push_chunk(&opts("echo"), &big),
            Err(ClientError::TooLarge { .. })
        ),
        "an oversized chunk is refused before it is sent"
    );
    let s = d.status();
    assert_eq!(
        s.tasks.done, 6,
        "ampd counts a chunk as one task: {:?}",
        s.tasks
    );
    drop(c);
    let st = d.shutdown(T);
    assert!(st.success(), "{}", d.log_text());
}

/// Each item's own outcome: ok, failed, retryable (not retried by ampd: one attempt), and a
/// loopback (impossible for an item) answered as a failed item.
#[test]
fn item_failures_come_back_per_item() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.flaky]
command = "amp-flaky"
kinds = ["flaky"]
"#,
    );
    d.wait_ready(&["flaky"], T);
    let mut c = Client::connect(&d.socket).expect("attach");
    let items: [&[u8]; 5] = [b"ok", b"fail", b"retry", b"loop", b"x"];
    let t = c.submit_chunk(&opts("flaky"), &items).unwrap();
    let r = c.wait_for(t, T).unwrap();
    assert_eq!(
        (r.status, r.attempts),
        (ResultStatus::Ok, 1),
        "{}",
        r.text()
    );
    let got = outcomes(&r);
    assert_eq!(got[0], Ok(b"ok".to_vec()));
    assert_eq!(got[1], Err((false, "failed as asked".to_owned())));
    assert_eq!(got[2], Err((true, "transient failure as asked".to_owned())));
    assert!(
        matches!(&got[3], Err((false, m)) if m.contains("cannot loop back")),
        "{:?}",
        got[3]
    );
    assert_eq!(got[4], Ok(b"x".to_vec()));
    assert_eq!(got.len(), 5);
    drop(c);
    let _ = d.shutdown(T);
}

/// A worker dying in the middle of a chunk: the whole chunk runs again on the restarted
/// worker and its result is delivered once, every item answered; a chunk that kills every
/// worker is poison, dead-lettered as a whole.
#[test]
fn a_chunk_is_retried_whole_after_a_worker_death() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.flaky]
command = "amp-flaky"
kinds = ["flaky"]
restart = "always"
backoff = { initial = "10ms", max = "20ms", jitter = 0.0 }
intensity = { max_restarts = 100, window = "1m" }
"#,
    );
    d.wait_ready(&["flaky"], T);
    let mut c = Client::connect(&d.socket).expect("attach");
    // The third item crashes the worker on the chunk's first attempt.
    let items: [&[u8]; 5] = [b"a", b"b", b"crash1", b"d", b"e"];
    let t = c.submit_chunk(&opts("flaky"), &items).unwrap();
    let r = c.wait_for(t, T).unwrap();
    assert_eq!(r.status, ResultStatus::Ok, "{}", r.text());
    assert_eq!(r.attempts, 2, "one retry after the death");
    let want: Vec<_> = items.iter().map(|i| Ok(i.to_vec())).collect();
    assert_eq!(outcomes(&r), want);
    assert!(
        matches!(
            c.wait_for(t, Duration::from_millis(200)),
            Err(ClientError::Timeout(_))
        ),
        "delivered once"
    );

    let items: [&[u8]; 3] = [b"a", b"crash", b"c"];
    let t = c.submit_chunk(&opts("flaky"), &items).unwrap();
    let r = c.wait_for(t, T).unwrap();
    assert_eq!(r.status, ResultStatus::DeadLettered, "{}", r.text());
    assert!(r.text().contains("poison"), "{}", r.text());
    assert!(
        matches!(
            r.outcomes(),
            Err(ClientError::TaskFailed {
                status: ResultStatus::DeadLettered,
                ..
            })
        ),
        "the chunk's end is every item's end"
    );
    drop(c);
    let _ = d.shutdown(T);
}

/// A chunk whose results do not fit the worker's completions ring is answered with a failure
/// naming max_record; the worker keeps serving.
#[test]
fn an_oversized_chunk_result_fails_the_chunk_not_the_worker() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.echo]
command = "amp-echo"
kinds = ["echo"]
ring = { tasks = "1MiB", completions = "1MiB", max_record = "64KiB" }
"#,
    );
    d.wait_ready(&["echo"], T);
    let mut c = Client::connect(&d.socket).expect("attach");
    // 13 200 empty items: the 52 804-byte payload fits a 64 KiB record, the 66 004-byte result
    // (5 bytes per item) does not.
    let items = vec![[0u8; 0]; 13_200];
    let t = c.submit_chunk(&opts("echo"), &items).unwrap();
    let r = c.wait_for(t, T).unwrap();
    assert_eq!(r.status, ResultStatus::Failed, "{}", r.text());
    assert!(r.text().contains("max_record"), "{}", r.text());
    let t = c.submit("echo", b"still here").unwrap();
    let r = c.wait_for(t, T).unwrap();
    assert_eq!(r.body, b"still here");
    drop(c);
    let st = d.shutdown(T);
    assert!(st.success(), "{}", d.log_text());
}
