//! End-to-end task delivery: clients, routing, retries, nothing lost.

use std::time::Duration;

use amp_ipc::client::{Client, ResultStatus, Submit};
use amp_tests::{worker, Ampd};

const T: Duration = Duration::from_secs(20);

#[test]
fn client_round_trip_through_echo_and_hash() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.echo]
command = "amp-echo"
kinds = ["echo"]
replicas = 2
[workers.hash]
command = "amp-hash"
kinds = ["hash"]
"#,
    );
    d.wait_ready(&["echo#0", "echo#1", "hash"], T);
    let mut c = Client::connect(&d.socket).expect("attach");
    let n = 1000u32;
    let mut tickets = Vec::new();
    for i in 0..n {
        tickets.push((i, c.submit("echo", &i.to_le_bytes()).unwrap()));
    }
    for (i, t) in tickets {
        let r = c.wait_for(t, T).unwrap();
        assert_eq!(r.status, ResultStatus::Ok, "{}", r.text());
        assert_eq!(r.body, i.to_le_bytes());
    }
    let t = c.submit("hash", b"abc").unwrap();
    let r = c.wait_for(t, T).unwrap();
    assert_eq!(r.body, format!("{:016x}", amp_worker::digest(b"abc", 16)).into_bytes());
    // Unknown kind: refused at submit, with the known kinds.
    let e = c.submit("nope", b"").unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("echo"), "{e}");
    let e = c.submit_with(&Submit { kind: "echo", class: Some("urgent"), ..Submit::default() }, b"").unwrap_err();
    assert!(e.to_string().contains("urgent"), "{e}");
    // No segment name stays in /dev/shm once attached.
    assert!(d.shm_leftovers().is_empty(), "{:?}", d.shm_leftovers());
    drop(c);
    let st = d.shutdown(T);
    assert!(st.success(), "{}", d.log_text());
}

#[test]
fn ampctl_submit_waits_for_the_result() {
    let mut d = Ampd::start(
        "",
        r#"
[workers.echo]
command = "amp-echo"
kinds = ["echo"]
"#,
    );
    d.wait_ready(&["echo"], T);
    let out = std::process::Command::new(amp_tests::bin("ampctl"))
        .arg("--json")
        .arg("--socket")
        .arg(&d.socket)
        .args(["submit", "--kind", "echo", "--json", r#"{"x":1}"#, "--wait"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["data"]["status"], "ok", "{v}");
    assert_eq!(v["data"]["result"], r#"{"x":1}"#);
    let s = d.status();
    assert_eq!(worker(&s, "echo").unwrap().state, "ready");
    let _ = d.shutdown(T);
}
