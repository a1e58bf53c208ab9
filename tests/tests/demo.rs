//! The README's first command, run non-interactively: the demo starts, pushes work, shuts down
//! cleanly and leaves nothing in /dev/shm.

use std::process::Command;

#[test]
fn demo_script_runs_and_shuts_down_cleanly() {
    let bin_dir = amp_tests::bin("ampd").parent().unwrap().to_path_buf();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo");
    let out = Command::new("timeout")
        .arg("120")
        .arg(&script)
        .arg("--once")
        .env("AMP_BIN_DIR", &bin_dir)
        .output()
        .expect("run scripts/demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed: {:?}\n{stdout}\n{stderr}",
        out.status
    );
    for expect in [
        "task 1 ok",
        "hash",
        "dead-lettered",
        "ampd exited with status 0",
        "leftovers in /dev/shm: 0",
    ] {
        assert!(
            stdout.contains(expect),
            "{expect:?} missing from the demo output:\n{stdout}"
        );
    }
}
