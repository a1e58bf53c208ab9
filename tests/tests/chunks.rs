//! End-to-end chunks: many items as one task (`Client::push_chunk`), one outcome per item.

use std::time::Duration;

use amp_ipc::chunk::ItemOutcome;
use amp_ipc::client::{Client, ClientError, ResultStatus, Submit};
use amp_tests::Ampd;

const T: Duration = Duration::from_secs(20);

/// One amp-echo worker whose rings take records of up to 64 KiB.
const ECHO_64K: &str = r#"
[workers.echo]
command = "amp-echo"
kinds = ["echo"]
ring = { tasks = "1MiB", completions = "1MiB", max_record = "64KiB" }
"#;

fn opts(kind: &str) -> Submit<'_> {
    Submit {
        kind,
        ..Submit::default()
    }
}

/// ampd with the workers of `config`, once `units` are ready, and a client attached to it.
fn start(config: &str, units: &[&str]) -> (Ampd, Client) {
    let d = Ampd::start("", config);
    d.wait_ready(units, T);
    let c = Client::connect(&d.socket).expect("attach");
    (d, c)
}

/// Detaches the client and shuts ampd down, which must go cleanly.
fn stop(mut d: Ampd, c: Client) {
    drop(c);
    let st = d.shutdown(T);
    assert!(st.success(), "{}", d.log_text());
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
    let (d, mut c) = start(
        r#"
[workers.echo]
command = "amp-echo"
kinds = ["echo"]
replicas = 2
ring = { tasks = "1MiB", completions = "1MiB", max_record = "64KiB" }
"#,
        &["echo#0", "echo#1"],
    );
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
        assert!(r.chunk);
        let want: Vec<_> = items.iter().cloned().map(Ok).collect();
        assert_eq!(outcomes(&r), want, "chunk of {} items", items.len());
    }
    let r = c.wait_for(plain, T).unwrap();
    assert_eq!(r.body, b"plain");
    assert!(!r.chunk);
    assert!(
        matches!(r.outcomes(), Err(ClientError::NotAChunk { ticket }) if ticket == plain),
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
    stop(d, c);
}

/// Each item's own outcome: ok, failed, retryable (not retried by ampd: one attempt), and a
/// loopback (impossible for an item) answered as a failed item.
#[test]
fn item_failures_come_back_per_item() {
    let (mut d, mut c) = start(
        r#"
[workers.flaky]
command = "amp-flaky"
kinds = ["flaky"]
"#,
        &["flaky"],
    );
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

/// The in-place runtime (`Worker::run_reply`, amp-flaky --reply): a handler's failure answers
/// a plain task or an item with it, and the tasks and items after it are answered with their
/// own bytes (the reused buffer holds nothing of the failure or of earlier results).
#[test]
fn run_reply_failures_for_tasks_and_items() {
    let (d, mut c) = start(
        r#"
[workers.flaky]
command = "amp-flaky"
args = ["--reply"]
kinds = ["flaky"]
"#,
        &["flaky"],
    );
    let mut plain = Vec::new();
    for p in [&b"first"[..], b"fail", b"retry", b"x", b"loop", b"after"] {
        plain.push((c.push(&opts("flaky"), p).unwrap(), p));
    }
    let items: [&[u8]; 4] = [b"fail", b"ok", b"retry", b"last"];
    let chunk = c.push_chunk(&opts("flaky"), &items).unwrap();
    c.flush().unwrap();
    for (t, p) in plain {
        let r = c.wait_for(t, T).unwrap();
        let want = match p {
            b"fail" => (ResultStatus::Failed, "failed as asked".to_owned(), 1),
            b"loop" => (
                ResultStatus::Failed,
                "loop and fanout need amp-flaky without --reply".to_owned(),
                1,
            ),
            b"retry" => (
                ResultStatus::DeadLettered,
                "transient failure as asked".to_owned(),
                3,
            ),
            _ => (ResultStatus::Ok, String::from_utf8_lossy(p).into_owned(), 1),
        };
        assert_eq!((r.status, r.attempts), (want.0, want.2), "payload {p:?}");
        if r.status == ResultStatus::Ok {
            assert_eq!(r.body, p, "exactly the task's own bytes");
        } else {
            assert!(r.text().ends_with(&want.1), "payload {p:?}: {}", r.text());
        }
    }
    let r = c.wait_for(chunk, T).unwrap();
    assert_eq!(
        outcomes(&r),
        [
            Err((false, "failed as asked".to_owned())),
            Ok(b"ok".to_vec()),
            Err((true, "transient failure as asked".to_owned())),
            Ok(b"last".to_vec()),
        ]
    );
    stop(d, c);
}

/// ampd checks what a client wrote: a chunk whose framing is wrong and a submission with flags
/// this protocol does not define are rejected with a reason, counted, and nothing reaches a
/// worker; the client's next valid task runs.
#[test]
fn malformed_chunks_and_unknown_flags_are_rejected_at_intake() {
    let (d, mut c) = start(
        r#"
[workers.echo]
command = "amp-echo"
kinds = ["echo"]
"#,
        &["echo"],
    );
    // Claims 9 items, holds none.
    let bad_count = c
        .push_raw(&opts("echo"), amp_ipc::chunk::SUBMIT_CHUNK, &[9, 0, 0, 0])
        .unwrap();
    // One item whose length runs past the end.
    let bad_len = c
        .push_raw(
            &opts("echo"),
            amp_ipc::chunk::SUBMIT_CHUNK,
            &[1, 0, 0, 0, 200, 0, 0, 0, b'x'],
        )
        .unwrap();
    let unknown = c.push_raw(&opts("echo"), 0x80, b"x").unwrap();
    let good = c.push(&opts("echo"), b"fine").unwrap();
    c.flush().unwrap();
    for t in [bad_count, bad_len] {
        let r = c.wait_for(t, T).unwrap();
        assert_eq!(r.status, ResultStatus::Rejected, "{}", r.text());
        assert!(r.text().starts_with("malformed chunk"), "{}", r.text());
    }
    let r = c.wait_for(unknown, T).unwrap();
    assert_eq!(r.status, ResultStatus::Rejected, "{}", r.text());
    assert!(
        r.text().contains("unknown submission flags 0x80"),
        "{}",
        r.text()
    );
    assert_eq!(c.wait_for(good, T).unwrap().body, b"fine");
    let s = d.status();
    let q = amp_tests::queue(&s, "echo");
    assert_eq!((q.rejected, q.dispatched), (3, 1), "{q:?}");
    stop(d, c);
}

/// A deterministic kind caches results per payload, but a chunk's result is one per item, not
/// the kind's result for that payload: chunks are neither answered from the cache nor cached.
#[test]
fn chunks_bypass_the_result_cache() {
    let (d, mut c) = start(
        r#"
[workers.echo]
command = "amp-echo"
kinds = ["echo"]
[kinds.echo]
deterministic = true
"#,
        &["echo"],
    );
    let items: [&[u8]; 2] = [b"a", b"b"];
    let payload = {
        let mut p = vec![0; amp_ipc::chunk::encoded_len(&items)];
        amp_ipc::chunk::encode(&items, &mut p);
        p
    };
    // The plain task with the chunk's bytes as payload runs and is cached ...
    let t = c.submit("echo", &payload).unwrap();
    assert_eq!(c.wait_for(t, T).unwrap().body, payload);
    // ... yet the chunk runs (item by item), twice.
    for _ in 0..2 {
        let t = c.submit_chunk(&opts("echo"), &items).unwrap();
        let r = c.wait_for(t, T).unwrap();
        assert_eq!(outcomes(&r), [Ok(b"a".to_vec()), Ok(b"b".to_vec())]);
    }
    // And the plain task is still a hit: dispatched = 1 plain + 2 chunks.
    let t = c.submit("echo", &payload).unwrap();
    assert_eq!(c.wait_for(t, T).unwrap().body, payload);
    let s = d.status();
    let q = amp_tests::queue(&s, "echo");
    assert_eq!(q.dispatched, 3, "{q:?}");
    stop(d, c);
}

/// A worker dying in the middle of a chunk: the whole chunk runs again on the restarted
/// worker and its result is delivered once, every item answered; a chunk that kills every
/// worker is poison, dead-lettered as a whole.
#[test]
fn a_chunk_is_retried_whole_after_a_worker_death() {
    let (mut d, mut c) = start(
        r#"
[workers.flaky]
command = "amp-flaky"
kinds = ["flaky"]
restart = "always"
backoff = { initial = "10ms", max = "20ms", jitter = 0.0 }
intensity = { max_restarts = 100, window = "1m" }
"#,
        &["flaky"],
    );
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
    let (d, mut c) = start(ECHO_64K, &["echo"]);
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
    let w = d.status();
    let echo = amp_tests::worker(&w, "echo").unwrap();
    assert_eq!(echo.restarts, 0, "the worker did not stop: {echo:?}");
    stop(d, c);
}

/// Results that do not fit the client's ring wait in ampd and are written as the client makes
/// room: the client reading its ring is the only thing that happens (no status requests, no
/// other traffic), so ampd must notice the room by itself. Chunks make results large enough to
/// overflow the ring with a few dozen tasks.
#[test]
fn results_beyond_the_client_ring_arrive_as_the_client_reads() {
    let (d, mut c) = start(ECHO_64K, &["echo"]);
    // 1000 items of 8 bytes: a 12 004-byte chunk, a 13 004-byte result.
    let chunk =
        |n: u64| -> Vec<[u8; 8]> { (n * 1000..(n + 1) * 1000).map(u64::to_le_bytes).collect() };
    let mut tickets = Vec::new();
    for n in 0..70 {
        tickets.push(c.push_chunk(&opts("echo"), &chunk(n)).unwrap());
    }
    c.flush().unwrap();
    // 70 results (~0.9 MiB) fill most of the client's 1 MiB ring, unread.
    d.wait_for("70 chunks answered", T, |s| s.tasks.done >= 70);
    // 40 more: most of their results find the ring full and wait in ampd.
    for n in 70..110 {
        tickets.push(c.push_chunk(&opts("echo"), &chunk(n)).unwrap());
    }
    c.flush().unwrap();
    // All answered as far as ampd's delivery goes; then nothing happens until the client reads
    // (ampd goes to sleep).
    d.wait_for("110 chunks answered", T, |s| s.tasks.done >= 110);
    for (n, t) in (0u64..).zip(&tickets) {
        let r = c
            .wait_for(*t, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("chunk {n}: {e}"));
        let got = outcomes(&r);
        assert_eq!(got.len(), 1000);
        assert_eq!(got[999], Ok((n * 1000 + 999).to_le_bytes().to_vec()));
    }
    stop(d, c);
}
