//! Segment tests against the real `/dev/shm`. Every test uses its own prefix
//! (`amp-test-{pid}-{n}`) and removes what it created, also when it fails (unlink-on-drop).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use amp_shm_layout::{
    LayoutError, PeerState, SegmentHeader, CONTROL_OFFSET, DATA_OFFSET, LAYOUT_VERSION, MAGIC,
    MAGIC_VERSION,
};
use nix::fcntl::OFlag;
use nix::sys::mman::{shm_open, shm_unlink};
use nix::sys::stat::Mode;

use super::*;

static NEXT_PREFIX: AtomicU32 = AtomicU32::new(0);

/// A prefix no other test (or test run) uses.
fn unique_prefix() -> String {
    // Relaxed: only uniqueness matters, which the atomic RMW gives at any ordering.
    format!(
        "amp-test-{}-{}",
        std::process::id(),
        NEXT_PREFIX.fetch_add(1, Ordering::Relaxed)
    )
}

fn small_config() -> SegmentConfig {
    SegmentConfig {
        tasks_capacity: 4096,
        tasks_max_record: 1024,
        completions_capacity: 8192,
        completions_max_record: 512,
    }
}

/// A fresh segment that removes its name when dropped, so a failing test leaves nothing behind.
fn create_segment(generation: u64) -> Segment {
    let mut segment =
        Segment::create(&unique_prefix(), &small_config(), generation).expect("create segment");
    segment.set_unlink_on_drop(true);
    segment
}

/// Writes a plain header field through the creator's mapping.
fn mutate_header(segment: &Segment, f: impl FnOnce(&mut SegmentHeader)) {
    let header = segment.ptr_at::<SegmentHeader>(0).as_ptr();
    // SAFETY: the header lies inside the live mapping (`ptr_at` checked it), no other reference to
    // it is live in this test, and no other thread or process touches this segment.
    f(unsafe { &mut *header });
}

fn layout_error_of(result: Result<Segment, SegmentError>) -> LayoutError {
    match result {
        Err(SegmentError::Layout { error, .. }) => error,
        other => panic!("expected a layout error, got {other:?}"),
    }
}

/// A PID that belonged to a process which has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn `true`");
    let pid = child.id();
    child.wait().expect("reap `true`");
    assert_eq!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None),
        Err(Errno::ESRCH),
        "reaped child {pid} still exists (PID reused?)"
    );
    pid
}

#[test]
fn segment_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Segment>();
}

#[test]
fn create_then_open_by_name_shares_bytes_both_ways() {
    let creator = create_segment(5);
    let peer = Segment::open(creator.name()).expect("open by name");
    assert!(creator.is_creator() && !peer.is_creator());
    assert_eq!(peer.layout(), creator.layout());
    assert_eq!(peer.mapped_len(), creator.mapped_len());

    let tasks_c = creator.ring_raw(RingSide::Tasks);
    let tasks_p = peer.ring_raw(RingSide::Tasks);
    assert_ne!(
        tasks_c.data, tasks_p.data,
        "two handles must be two mappings"
    );
    let message = b"task through the creator";
    // SAFETY: `data` addresses `capacity` (4096) bytes of the live mapping; no reference to them
    // exists; nothing else writes this segment.
    unsafe {
        tasks_c
            .data
            .as_ptr()
            .copy_from_nonoverlapping(message.as_ptr(), message.len())
    };
    // SAFETY: as above, in the peer's mapping of the same object; read only.
    let seen = unsafe { std::slice::from_raw_parts(tasks_p.data.as_ptr(), message.len()) };
    assert_eq!(seen, message);

    let comps_p = peer.ring_raw(RingSide::Completions);
    let comps_c = creator.ring_raw(RingSide::Completions);
    // The completions region starts right after the tasks region: a write to its first byte
    // through the peer shows up there in the creator's mapping, and not at the tasks region's end.
    // SAFETY: byte 0 of the peer's completions region (8192 bytes); nothing else writes.
    unsafe { comps_p.data.as_ptr().write(0xC5) };
    // SAFETY: byte 0 of the creator's completions region; read only.
    assert_eq!(unsafe { comps_c.data.as_ptr().read() }, 0xC5);
    let tasks_last = tasks_c.data.as_ptr().wrapping_add(4095);
    // SAFETY: the last byte of the creator's tasks region (4096 bytes); read only.
    assert_eq!(unsafe { tasks_last.read() }, 0);

    // Atomics in the rings' headers and the control block are shared too.
    // Relaxed here and below: one thread reads back what it stored, nothing else is ordered.
    peer.control().tasks_ok.store(41, Ordering::Relaxed);
    assert_eq!(creator.control().tasks_ok.load(Ordering::Relaxed), 41);
    // SAFETY: the header pointer is valid while `creator` lives; shared reference to atomics.
    let head_c = unsafe { &tasks_c.header.as_ref().head.value };
    // SAFETY: the header pointer is valid while `peer` lives; shared reference to atomics.
    let head_p = unsafe { &tasks_p.header.as_ref().head.value };
    head_c.store(77, Ordering::Relaxed);
    assert_eq!(head_p.load(Ordering::Relaxed), 77);

    // A segment handle can move to another thread (Relaxed: `spawn` orders the earlier store).
    let from_thread = std::thread::spawn(move || peer.control().tasks_ok.load(Ordering::Relaxed))
        .join()
        .unwrap();
    assert_eq!(from_thread, 41);
}

#[test]
fn created_segment_carries_name_header_and_initial_state() {
    let prefix = unique_prefix();
    let mut creator = Segment::create(&prefix, &small_config(), 9).expect("create");
    creator.set_unlink_on_drop(true);
    let pid = std::process::id();

    let name = creator.name();
    let expected_start = format!("/{prefix}-{pid}-");
    assert!(name.starts_with(&expected_start), "{name}");
    assert_eq!(name::creator_pid_of(&prefix, &name[1..]), Some(pid));
    assert_eq!(creator.fs_path(), Path::new("/dev/shm").join(&name[1..]));

    let peer = Segment::open(name).unwrap();
    assert_eq!((peer.creator_pid(), peer.generation()), (pid, 9));
    let header = peer.header();
    // Relaxed: checked by open.
    assert_eq!(header.magic_version.load(Ordering::Relaxed), MAGIC_VERSION);
    assert_eq!(header.total_size, DATA_OFFSET + 4096 + 8192);
    assert_eq!(peer.layout().total_size, header.total_size);
    assert!(peer.mapped_len() as u64 >= header.total_size);
    assert_eq!(header.control_offset, CONTROL_OFFSET);
    assert_eq!(
        (header.tasks.capacity, header.tasks.max_record),
        (4096, 1024)
    );
    assert_eq!(
        (header.completions.capacity, header.completions.max_record),
        (8192, 512)
    );

    let control = peer.control();
    // Relaxed: `open` already synchronised with the creator's Release of the magic word.
    assert_eq!(
        PeerState::from_raw(control.state.load(Ordering::Relaxed)),
        Some(PeerState::Created)
    );
    assert_eq!(control.pid.load(Ordering::Relaxed), 0);

    for side in [RingSide::Tasks, RingSide::Completions] {
        let ring = peer.ring_raw(side);
        assert_eq!(
            ring.header.as_ptr() as usize % 128,
            0,
            "{side:?} header misaligned"
        );
        assert_eq!(
            ring.data.as_ptr() as usize % 128,
            0,
            "{side:?} data misaligned"
        );
        // SAFETY: valid while `peer` lives; shared reference to atomics.
        let h = unsafe { ring.header.as_ref() };
        // Relaxed: single-threaded reads of values `open` already synchronised with.
        assert_eq!(
            (
                h.head.value.load(Ordering::Relaxed),
                h.tail.value.load(Ordering::Relaxed)
            ),
            (0, 0)
        );
        assert_eq!(h.sleeping.value.load(Ordering::Relaxed), 0);
        let data_end = ring.data.as_ptr() as usize + ring.capacity as usize;
        assert!(data_end <= peer.base.as_ptr() as usize + peer.mapped_len());
    }
}

#[test]
fn created_segment_file_mode_is_0600() {
    let creator = create_segment(1);
    let mode = std::fs::metadata(creator.fs_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
}

#[test]
fn open_refuses_half_initialised_segment() {
    let creator = create_segment(1);
    // Put the segment back into the state it has while the creator is still filling it in.
    // Release, like the creator's store of the word; pairs with the Acquire load in `open`.
    creator.header().magic_version.store(0, Ordering::Release);
    let e = Segment::open(creator.name()).unwrap_err();
    assert!(e.to_string().contains("not initialised"), "{e}");
    assert_eq!(e.layout_error(), Some(LayoutError::NotInitialised));

    // An object created but not sized yet (size 0) reads the same way.
    let name = format!("/{}-1-0000000000000000", unique_prefix());
    let fd = shm_open(
        name.as_str(),
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )
    .expect("create empty object");
    let result = Segment::open(&name);
    drop(fd);
    shm_unlink(name.as_str()).expect("remove empty object");
    assert_eq!(layout_error_of(result), LayoutError::NotInitialised);
}

#[test]
fn open_refuses_other_layout_version_naming_both_versions() {
    let creator = create_segment(1);
    let other = LAYOUT_VERSION + 1;
    let word = (u64::from(MAGIC) << 32) | u64::from(other);
    // Release, like the creator's store of the word; pairs with the Acquire load in `open`.
    creator
        .header()
        .magic_version
        .store(word, Ordering::Release);
    let e = Segment::open(creator.name()).unwrap_err();
    assert_eq!(
        e.layout_error(),
        Some(LayoutError::VersionMismatch {
            found: other,
            expected: LAYOUT_VERSION
        })
    );
    let message = e.to_string();
    assert!(message.contains(creator.name()), "{message}");
    assert!(message.contains(&format!("version {other}")), "{message}");
    assert!(
        message.contains(&format!("version {LAYOUT_VERSION}")),
        "{message}"
    );
}

#[test]
fn open_refuses_foreign_magic() {
    let creator = create_segment(1);
    // Release, like the creator's store of the word; pairs with the Acquire load in `open`.
    creator
        .header()
        .magic_version
        .store(0x1234_5678_0000_0001, Ordering::Release);
    let e = layout_error_of(Segment::open(creator.name()));
    assert_eq!(e, LayoutError::BadMagic { found: 0x1234_5678 });
}

#[test]
fn open_refuses_truncated_object() {
    let creator = create_segment(1);
    let total = creator.layout().total_size;
    let fd = shm_open(creator.name(), OFlag::O_RDWR, Mode::empty()).expect("reopen for truncation");
    // The creator's mapping now extends past the end of the object: it must not touch those
    // pages any more (it does not; dropping only unmaps).
    nix::unistd::ftruncate(&fd, (total - 1) as i64).unwrap();
    let e = layout_error_of(Segment::open(creator.name()));
    assert_eq!(
        e,
        LayoutError::MappingTooSmall {
            mapped: total - 1,
            needed: total
        }
    );

    nix::unistd::ftruncate(&fd, 100).unwrap();
    let e = layout_error_of(Segment::open(creator.name()));
    assert_eq!(
        e,
        LayoutError::MappingTooSmall {
            mapped: 100,
            needed: 256
        }
    );
}

#[test]
fn open_refuses_each_mutated_header_field() {
    type Mutation = (&'static str, fn(&mut SegmentHeader));
    let mutations: [Mutation; 9] = [
        ("header_size", |h| h.header_size += 8),
        ("control_offset", |h| h.control_offset += 128),
        ("control_size", |h| h.control_size = 0),
        ("total_size", |h| h.total_size += 4096),
        ("tasks.capacity", |h| h.tasks.capacity = 3000),
        ("tasks.max_record", |h| h.tasks.max_record = 1 << 20),
        ("tasks.data_offset", |h| h.tasks.data_offset = u64::MAX),
        ("completions.header_offset", |h| {
            h.completions.header_offset = 0
        }),
        ("completions.capacity", |h| h.completions.capacity = 1 << 40),
    ];
    for (field, mutate) in mutations {
        let creator = create_segment(1);
        mutate_header(&creator, mutate);
        let result = Segment::open(creator.name());
        assert!(
            matches!(result, Err(SegmentError::Layout { .. })),
            "mutated {field} not refused: {result:?}"
        );
    }
}

#[test]
fn unlink_removes_the_name_and_keeps_existing_mappings() {
    let creator = create_segment(1);
    let peer = Segment::open(creator.name()).unwrap();
    let path = creator.fs_path();
    assert!(path.exists());

    peer.unlink().expect("unlink from the peer side");
    assert!(!path.exists(), "{} still exists", path.display());
    match Segment::open(creator.name()) {
        Err(e @ SegmentError::Open { .. }) => {
            let source = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<io::Error>());
            assert_eq!(
                source.map(io::Error::kind),
                Some(io::ErrorKind::NotFound),
                "{e}"
            );
        }
        other => panic!("open after unlink: {other:?}"),
    }
    // Unlinking again, from either side, is fine.
    creator.unlink().unwrap();
    peer.unlink().unwrap();

    // Both mappings still share memory.
    // Relaxed: same-thread read below.
    creator.control().busy_ns.store(123, Ordering::Relaxed);
    assert_eq!(peer.control().busy_ns.load(Ordering::Relaxed), 123);
}

#[test]
fn drop_keeps_the_name_unless_asked_to_unlink() {
    let creator = Segment::create(&unique_prefix(), &small_config(), 1).unwrap();
    assert!(!creator.unlink_on_drop());
    let (name, path) = (creator.name().to_owned(), creator.fs_path());
    drop(creator);
    let still_there = path.exists();
    // Reopen to check it is intact, and let that handle remove it.
    let reopened = Segment::open(&name).map(|mut segment| {
        segment.set_unlink_on_drop(true);
        segment
    });
    assert!(still_there, "dropping the creator removed {name}");
    let reopened = reopened.expect("reopen after the creator dropped");
    drop(reopened);
    assert!(!path.exists(), "unlink_on_drop did not remove {name}");
}

#[test]
fn open_of_missing_or_malformed_name_says_what_is_wrong() {
    let missing = format!("/{}-1-0123456789abcdef", unique_prefix());
    let e = Segment::open(&missing).unwrap_err();
    assert!(matches!(e, SegmentError::Open { .. }), "{e}");
    assert!(e.to_string().contains(&missing), "{e}");

    for bad in ["amp-1-0123456789abcdef", "/a/b", "/"] {
        assert!(
            matches!(Segment::open(bad), Err(SegmentError::BadName { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn create_refuses_bad_prefix_and_config() {
    assert!(matches!(
        Segment::create("a/b", &small_config(), 1),
        Err(SegmentError::BadPrefix { .. })
    ));
    let cfg = SegmentConfig {
        tasks_capacity: 3000,
        ..small_config()
    };
    let e = Segment::create(&unique_prefix(), &cfg, 1).unwrap_err();
    assert_eq!(
        e.layout_error(),
        Some(LayoutError::BadCapacity {
            ring: "tasks",
            found: 3000
        })
    );
    assert!(e.to_string().contains("3000"), "{e}");
    let cfg = SegmentConfig {
        completions_max_record: 0,
        ..small_config()
    };
    assert!(matches!(
        Segment::create(&unique_prefix(), &cfg, 1),
        Err(SegmentError::Config { .. })
    ));
    assert!(SegmentConfig::default().layout().is_ok());
}

/// A scratch directory under the system temp dir, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique_prefix());
        std::fs::create_dir(&dir).unwrap();
        Self(dir)
    }
    fn touch(&self, name: &str) {
        std::fs::write(self.0.join(name), b"").unwrap();
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn sweep_in_removes_only_well_formed_entries_of_dead_creators() {
    let dir = ScratchDir::new();
    let (dead, alive) = (dead_pid(), std::process::id());
    let hex = "0123456789abcdef";
    let stale = format!("amp-{dead}-{hex}");
    let keep = [
        format!("amp-{alive}-{hex}"),     // live creator
        format!("amp-{dead}-{hex}x"),     // not our shape
        format!("amp-{dead}-0123"),       // not our shape
        format!("ampx-{dead}-{hex}"),     // other prefix
        format!("amp-test-{dead}-{hex}"), // other (longer) prefix
        format!("amp-1-{hex}"),           // init is alive
    ];
    dir.touch(&stale);
    for k in &keep {
        dir.touch(k);
    }

    let removed = sweep_in(&dir.0, "amp").unwrap();
    assert_eq!(removed, vec![format!("/{stale}")]);
    assert!(!dir.0.join(&stale).exists());
    for k in &keep {
        assert!(dir.0.join(k).exists(), "{k} was removed");
    }
    // Nothing left to sweep.
    assert_eq!(sweep_in(&dir.0, "amp").unwrap(), Vec::<String>::new());

    let e = sweep_in(&dir.0.join("missing"), "amp").unwrap_err();
    assert!(matches!(e, SegmentError::Sweep { .. }), "{e}");
    assert!(matches!(
        sweep_in(&dir.0, ""),
        Err(SegmentError::BadPrefix { .. })
    ));
}

#[test]
fn sweep_of_dev_shm_removes_dead_creators_segment_and_keeps_live_one() {
    let prefix = unique_prefix();
    let mut live = Segment::create(&prefix, &small_config(), 1).unwrap();
    live.set_unlink_on_drop(true);
    let stale = name::generate(&prefix, dead_pid());
    let fd = shm_open(
        stale.as_str(),
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )
    .expect("create stale object");
    drop(fd);

    let result = sweep(&prefix);
    // Clean up before asserting, so a failure leaves nothing behind.
    let _ = shm_unlink(stale.as_str());
    assert_eq!(result.unwrap(), vec![stale]);
    assert!(
        live.fs_path().exists(),
        "sweep removed the live creator's segment"
    );
    assert!(Segment::open(live.name()).is_ok());
}
