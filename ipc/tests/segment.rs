//! Segments across real processes: a creator process that exits without unlinking its segment,
//! under a umask that would leave the object unusable without the mode fix-up.
//!
//! The child is this test binary run again with `--exact` on an ignored helper test (the habit
//! ipc-channel's tests use), so no `fork` in a multi-threaded test harness.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use amp_ipc::segment::{sweep, Segment, SegmentConfig};
use amp_shm_layout::PeerState;
use nix::errno::Errno;
use nix::sys::stat::Mode;
use nix::unistd::Pid;

/// Environment variable carrying the prefix the child creates its segment under.
const CHILD_PREFIX_ENV: &str = "AMP_SEGMENT_TEST_CHILD_PREFIX";
/// Marker before the segment name on the child's stdout.
const NAME_MARKER: &str = "AMP_SEGMENT_NAME=";
/// The child helper's test name.
const CHILD_TEST: &str = "segment_child_creates_and_exits_without_unlinking";

fn small_config() -> SegmentConfig {
    SegmentConfig {
        tasks_capacity: 4096,
        tasks_max_record: 1024,
        completions_capacity: 4096,
        completions_max_record: 1024,
    }
}

/// Child side: create a segment with a umask that strips the owner's write bit, print its name,
/// and exit without unlinking (as a creator that died before the unlink step would).
#[test]
#[ignore = "helper: run as a child process by sweep_removes_segment_left_by_dead_creator_process"]
fn segment_child_creates_and_exits_without_unlinking() {
    let Ok(prefix) = std::env::var(CHILD_PREFIX_ENV) else {
        eprintln!("{CHILD_TEST} does nothing unless run as a child by its parent test");
        return;
    };
    // Only this child process is affected: it runs this one test, on one thread.
    nix::sys::stat::umask(Mode::from_bits_truncate(0o277));
    let segment = Segment::create(&prefix, &small_config(), 4).expect("child: create segment");
    println!("{NAME_MARKER}{}", segment.name());
    // Dropping unmaps but does not unlink: the name outlives this process.
}

/// Removes a shared-memory name when dropped, so a failing test leaves nothing behind.
struct UnlinkGuard(Option<String>);

impl Drop for UnlinkGuard {
    fn drop(&mut self) {
        if let Some(name) = &self.0 {
            let _ = nix::sys::mman::shm_unlink(name.as_str());
        }
    }
}

#[test]
fn sweep_removes_segment_left_by_dead_creator_process() {
    let prefix = format!("amp-itest-{}-sweep", std::process::id());
    let mut live = Segment::create(&prefix, &small_config(), 1).expect("create live segment");
    live.set_unlink_on_drop(true);

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            CHILD_TEST,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_PREFIX_ENV, &prefix)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child test process");
    let child_pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child test process did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    // libtest prints "test <name> ... " before the child's own output, on the same line.
    let name = stdout
        .split_once(NAME_MARKER)
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .map(str::to_owned);
    let _guard = UnlinkGuard(name.clone());
    assert!(
        status.success(),
        "child failed ({status}); stdout:\n{stdout}"
    );
    let name = name.unwrap_or_else(|| panic!("child printed no segment name; stdout:\n{stdout}"));

    // The child is reaped: its PID is gone, its segment is not.
    let path = std::path::Path::new("/dev/shm").join(name.trim_start_matches('/'));
    assert_eq!(
        nix::sys::signal::kill(Pid::from_raw(child_pid as i32), None),
        Err(Errno::ESRCH)
    );
    assert!(
        name.starts_with(&format!("/{prefix}-{child_pid}-")),
        "{name}"
    );
    let mode = std::fs::metadata(&path)
        .expect("child's segment left behind")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o7777,
        0o600,
        "mode {:o} despite umask 0277",
        mode & 0o7777
    );

    // It is a complete segment another process can still map.
    let orphan = Segment::open(&name).expect("open the dead creator's segment");
    assert_eq!((orphan.creator_pid(), orphan.generation()), (child_pid, 4));

    let removed = sweep(&prefix).expect("sweep");
    assert_eq!(removed, vec![name.clone()]);
    assert!(!path.exists(), "sweep left {}", path.display());
    assert!(
        live.fs_path().exists(),
        "sweep removed the live creator's segment"
    );
    assert!(Segment::open(live.name()).is_ok());

    // The mapping made before the sweep still works.
    // Relaxed: `Segment::open` already synchronised with the creator's Release of the magic word.
    let state = orphan
        .control()
        .state
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(PeerState::from_raw(state), Some(PeerState::Created));
}
