//! Shared-memory segments: create, open, unlink, and sweep stale ones.
//!
//! A [`Segment`] is one POSIX shared-memory object laid out as [`amp_shm_layout`] describes: a
//! header, a control block, and the tasks and completions rings. `ampd` creates one per attached
//! process ([`Segment::create`]), hands its [`name`](Segment::name) over the control channel, and
//! the process maps it ([`Segment::open`]).
//!
//! # Protocol
//!
//! 1. The creator makes the object under an unpredictable name
//!    `/{prefix}-{creator_pid}-{16 random hex digits}`, mode `0600`, zero-fills it, writes the
//!    header, control block and ring headers, and stores [`MAGIC_VERSION`] **last** with Release.
//! 2. The peer opens the name, loads the magic word with Acquire (pairing with that Release) and
//!    validates the whole header against the size it mapped; anything off is refused with a
//!    [`SegmentError::Layout`] naming the problem (not initialised, another layout version, a field
//!    that disagrees with the layout, a truncated object).
//! 3. Once both sides have mapped it, **either side** calls [`Segment::unlink`] (normally `ampd`
//!    after the peer reported that it attached). The mappings stay valid; only the name goes, so
//!    nothing is left in `/dev/shm` when either process dies afterwards.
//! 4. If the creator dies between 1 and 3, the name is left behind. [`sweep`] at the next start
//!    removes segments whose creator PID no longer exists.
//!
//! # Ownership: no implicit unlink
//!
//! Dropping a `Segment` unmaps it and closes its descriptor; it does **not** remove the name
//! unless [`Segment::set_unlink_on_drop`] asked for it (meant for the creator's error paths, e.g.
//! when spawning the peer failed). The name's lifetime is the explicit protocol above, not a
//! destructor: a creator that drops its handle early must not pull the name from under a peer
//! that has not opened it yet.
//!
//! # What the `shared_memory` crate (0.12.4) does, and what this module adds
//!
//! Read from its `src/unix.rs` and `src/lib.rs`:
//! - `create` calls `shm_open(name, O_CREAT | O_EXCL | O_RDWR, S_IRUSR | S_IWUSR)` (glibc adds
//!   `O_NOFOLLOW | O_CLOEXEC`), `ftruncate`s to the size, and maps it `MAP_SHARED`, read/write.
//!   `EEXIST` comes back as `MappingIdExists`; we then retry with a fresh random name.
//! - The requested mode is `0600`, but the process umask applies to it. A umask can only clear
//!   bits, so the object is never more open than `0600`, but a umask such as `0277` would leave it
//!   `0400` and the peer (same user, not root) could not open it read/write. After creation we
//!   therefore check the mode of `/dev/shm/<name>` and `chmod` it to exactly `0600` when it differs
//!   (the crate does not expose its descriptor, so this goes through the path; `/dev/shm` is
//!   sticky, so no other user can swap the entry in between).
//! - `open` calls `shm_open(name, O_RDWR, 0400)`, `fstat`s the object and maps its whole current
//!   size. An object of size 0 (created, not yet sized) fails in `mmap` with `EINVAL`; we report
//!   that as [`LayoutError::NotInitialised`].
//! - The crate keeps the descriptor open for the mapping's lifetime and closes it on drop. Its
//!   `Shmem` is the "owner" after `create`, and an owner's drop calls `shm_unlink`. We call
//!   `set_owner(false)` on every handle right away and never rely on that: removal is
//!   [`Segment::unlink`] (`nix::sys::mman::shm_unlink`, `ENOENT` counted as success) or the opt-in
//!   [`Segment::set_unlink_on_drop`].
//!
//! # Limitations
//!
//! The peer runs as the same user and holds a read/write descriptor, so it can `ftruncate` the
//! object shorter after both sides mapped it; touching the lost pages then raises `SIGBUS` in the
//! other process. POSIX shared-memory objects cannot be sealed against shrinking (only `memfd`s
//! can). Everything else a peer can do to the bytes is caught by validation.
//!
//! Linux-first: the mode fix-up and [`sweep`] use `/dev/shm` directly.

mod error;
mod name;
mod sweep;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs;
use std::io;
use std::mem::size_of;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use amp_shm_layout::{
    ControlBlock, Layout, LayoutError, PeerState, RingDescriptor, RingHeader, SegmentHeader,
    CONTROL_OFFSET, MAGIC_VERSION,
};
use nix::errno::Errno;
use shared_memory::{Shmem, ShmemConf, ShmemError};

pub use error::SegmentError;
pub use name::MAX_PREFIX_LEN;
pub use sweep::{sweep, sweep_in};

/// Where Linux keeps POSIX shared-memory objects: `/dev/shm/<name without its leading '/'>`.
pub const SHM_DIR: &str = "/dev/shm";

/// The default name prefix for `ampd`'s segments.
pub const DEFAULT_PREFIX: &str = "amp";

/// File mode of every created segment: read/write for the owning user only.
pub const SEGMENT_MODE: u32 = 0o600;

/// How many random names [`Segment::create`] tries before giving up on `EEXIST` (a collision of
/// 64 random bits; more than one is practically impossible).
const CREATE_ATTEMPTS: u32 = 8;

/// Ring sizes of a new segment.
///
/// Capacities must be powers of two in
/// [`MIN_RING_CAPACITY`](amp_shm_layout::MIN_RING_CAPACITY)`..=`[`MAX_RING_CAPACITY`](amp_shm_layout::MAX_RING_CAPACITY);
/// a record limit must be in `1..=capacity/2 - 8` ([`amp_shm_layout::max_record_limit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentConfig {
    /// Bytes of the tasks ring (`ampd` → attached process).
    pub tasks_capacity: u64,
    /// Largest task payload in bytes.
    pub tasks_max_record: u64,
    /// Bytes of the completions ring (attached process → `ampd`).
    pub completions_capacity: u64,
    /// Largest completion payload in bytes.
    pub completions_max_record: u64,
}

impl Default for SegmentConfig {
    /// 1 MiB per ring, 64 KiB per record.
    fn default() -> Self {
        Self {
            tasks_capacity: 1 << 20,
            tasks_max_record: 64 << 10,
            completions_capacity: 1 << 20,
            completions_max_record: 64 << 10,
        }
    }
}

impl SegmentConfig {
    /// The layout these sizes produce; use it to check a configuration before creating anything.
    ///
    /// ```
    /// let cfg = amp_ipc::segment::SegmentConfig::default();
    /// assert_eq!(cfg.layout()?.total_size, amp_shm_layout::DATA_OFFSET + (2 << 20));
    /// # Ok::<(), amp_ipc::segment::SegmentError>(())
    /// ```
    ///
    /// # Errors
    /// [`SegmentError::Config`] when a capacity or record limit is out of range.
    pub fn layout(&self) -> Result<Layout, SegmentError> {
        Layout::new(
            self.tasks_capacity,
            self.tasks_max_record,
            self.completions_capacity,
            self.completions_max_record,
        )
        .map_err(|error| SegmentError::Config { error })
    }
}

/// Which of a segment's two rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RingSide {
    /// `ampd` → attached process.
    Tasks,
    /// Attached process → `ampd`.
    Completions,
}

/// Raw location of one ring inside a mapped [`Segment`], for the ring module.
///
/// Both pointers point into the segment's mapping and are valid **only as long as the `Segment`
/// they came from is alive** (dropping it unmaps them). `data` addresses `capacity` bytes; the
/// offsets and sizes were validated against the mapped length when the segment was created or
/// opened, so `header` and `data..data + capacity` lie inside the mapping. The memory is shared
/// with another, untrusted process: every value read through these pointers may change at any
/// time and must be checked before use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRing {
    /// The ring's [`RingHeader`] (128-byte aligned).
    pub header: NonNull<RingHeader>,
    /// The first byte of the ring's data region (128-byte aligned).
    pub data: NonNull<u8>,
    /// Size of the data region in bytes (a power of two).
    pub capacity: u64,
    /// Largest payload a record may carry.
    pub max_record: u64,
}

/// A mapped amp shared-memory segment.
///
/// Created by `ampd` with [`Segment::create`], mapped by the attached process with
/// [`Segment::open`]. Dropping it unmaps it; the name is removed only by [`Segment::unlink`] (or on
/// drop after [`Segment::set_unlink_on_drop`]). See the [module docs](self) for the protocol.
pub struct Segment {
    /// The mapping and its descriptor. `set_owner(false)`: its drop never unlinks.
    shmem: Shmem,
    /// The POSIX name, with its leading `/`.
    name: String,
    /// Start of the mapping (page-aligned).
    base: NonNull<u8>,
    /// Bytes mapped; at least `layout.total_size`.
    len: usize,
    /// The layout validated at create/open time. All offsets come from here, never from the
    /// (peer-writable) header.
    layout: Layout,
    /// `SegmentHeader::creator_pid` as validated.
    creator_pid: u32,
    /// `SegmentHeader::generation` as validated.
    generation: u64,
    /// Whether this handle created the segment.
    is_creator: bool,
    /// Remove the name when dropped (unless already unlinked).
    unlink_on_drop: bool,
    /// Set once `unlink` succeeded, so a drop never removes a name twice (a later object could
    /// have reused it).
    unlinked: AtomicBool,
}

// SAFETY: `Segment` owns a MAP_SHARED mapping and the descriptor behind it (inside `Shmem`, which
// is `!Send` only because it stores a raw pointer). Neither is tied to a thread: `munmap` and
// `close` in `Drop` are valid from any thread, and the mapped bytes are plain memory.
unsafe impl Send for Segment {}

// SAFETY: through `&Segment` a thread gets only shared references to the header, control block and
// ring headers, whose mutable state is atomics (the header's plain fields are written once, before
// the Release store of `magic_version`, and never again by us), and raw pointers (`RawRing`) whose
// dereference is the caller's own `unsafe` obligation. The only mutation behind `&self` is the
// atomic `unlinked` flag and `shm_unlink`, a thread-safe syscall.
unsafe impl Sync for Segment {}

impl Segment {
    /// Creates and initialises a new segment named `/{prefix}-{pid}-{16 random hex digits}`,
    /// mode `0600`, with the rings `cfg` describes and `generation` in its header.
    ///
    /// The control block starts in [`PeerState::Created`]. The returned handle does not remove
    /// the name when dropped; hand [`name`](Self::name) to the peer, then [`unlink`](Self::unlink)
    /// once it mapped the segment.
    ///
    /// ```
    /// use amp_ipc::segment::{Segment, SegmentConfig, SegmentError};
    ///
    /// let creator = Segment::create("amp-doc", &SegmentConfig::default(), 7)?;
    /// let peer = Segment::open(creator.name())?;
    /// assert_eq!(peer.generation(), 7);
    /// assert_eq!(peer.creator_pid(), std::process::id());
    /// assert_eq!(peer.layout(), creator.layout());
    ///
    /// // Both sides mapped it: remove the name. Both mappings stay valid.
    /// creator.unlink()?;
    /// assert!(!creator.fs_path().exists());
    /// assert!(matches!(Segment::open(creator.name()), Err(SegmentError::Open { .. })));
    /// # Ok::<(), SegmentError>(())
    /// ```
    ///
    /// # Errors
    /// [`SegmentError::BadPrefix`] for an unusable prefix, [`SegmentError::Config`] for ring sizes
    /// out of range, [`SegmentError::Create`] when the object cannot be created, sized, mapped or
    /// given mode `0600` (nothing is left behind in that case).
    pub fn create(
        prefix: &str,
        cfg: &SegmentConfig,
        generation: u64,
    ) -> Result<Self, SegmentError> {
        name::check_prefix(prefix)?;
        let layout = cfg.layout()?;
        let pid = std::process::id();
        let mut attempts = 1;
        let (mut shmem, name) = loop {
            let name = name::generate(prefix, pid);
            let Ok(size) = usize::try_from(layout.total_size) else {
                let source = io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "segment larger than the address space",
                );
                return Err(SegmentError::Create { name, source });
            };
            match ShmemConf::new().os_id(&name).size(size).create() {
                Ok(shmem) => break (shmem, name),
                Err(ShmemError::MappingIdExists) if attempts < CREATE_ATTEMPTS => attempts += 1,
                Err(e) => {
                    return Err(SegmentError::Create {
                        name,
                        source: error::shmem_to_io(e),
                    })
                }
            }
        };
        let len = shmem.len();
        let base = match NonNull::new(shmem.as_ptr()) {
            Some(base) if len as u64 >= layout.total_size => base,
            // `shmem` is still the crate's "owner" here, so dropping it removes the name.
            _ => {
                let source =
                    io::Error::other(format!("mapping of {len} bytes at {:p}", shmem.as_ptr()));
                return Err(SegmentError::Create { name, source });
            }
        };
        shmem.set_owner(false);
        let mut segment = Self {
            shmem,
            name,
            base,
            len,
            layout,
            creator_pid: pid,
            generation,
            is_creator: true,
            // Until initialised: any error below removes the name again.
            unlink_on_drop: true,
            unlinked: AtomicBool::new(false),
        };
        segment.enforce_mode()?;
        segment.initialise();
        segment.unlink_on_drop = false;
        Ok(segment)
    }

    /// Maps the existing segment `name` (as [`Segment::name`] returned it on the creator's side)
    /// and validates its header against the mapped size.
    ///
    /// # Errors
    /// [`SegmentError::BadName`] for a malformed name, [`SegmentError::Open`] when it cannot be
    /// opened or mapped (e.g. `ENOENT`: unlinked or never created), [`SegmentError::Layout`] when
    /// the header is refused: [`LayoutError::NotInitialised`] while the creator is still filling it
    /// in, [`LayoutError::VersionMismatch`] for a segment of another amp release, and the other
    /// [`LayoutError`]s for a foreign, corrupt or truncated object.
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        name::check_name(name)?;
        let mut shmem = ShmemConf::new()
            .os_id(name)
            .open()
            .map_err(|e| open_error(name, e))?;
        // An opened `Shmem` is not the owner already; keep it that way explicitly.
        shmem.set_owner(false);
        let len = shmem.len();
        let layout_error = |error| SegmentError::Layout {
            name: name.to_owned(),
            error,
        };
        if len < size_of::<SegmentHeader>() {
            let needed = size_of::<SegmentHeader>() as u64;
            return Err(layout_error(LayoutError::MappingTooSmall {
                mapped: len as u64,
                needed,
            }));
        }
        let Some(base) = NonNull::new(shmem.as_ptr()) else {
            return Err(SegmentError::Open {
                name: name.to_owned(),
                source: io::Error::other("mmap returned null"),
            });
        };
        // SAFETY: `base` starts a live mapping of `len >= size_of::<SegmentHeader>()` bytes that
        // `shmem` keeps mapped while `header` is used (it is not used after this function); mmap
        // returns page-aligned memory, more than `SegmentHeader`'s 128-byte alignment; every field
        // is an integer or atomic integer, valid for any bit pattern; we only read through it.
        let header = unsafe { base.cast::<SegmentHeader>().as_ref() };
        // SYNC POINT (Acquire): pairs with the Release store of `MAGIC_VERSION` at the end of
        // `Segment::initialise` in the creator. Seeing `MAGIC_VERSION` here makes every header,
        // control-block and ring-header write the creator made before it visible to the reads below.
        let magic_version = header.magic_version.load(Ordering::Acquire);
        let layout =
            Layout::validate_header(magic_version, header, len as u64).map_err(layout_error)?;
        let (creator_pid, generation) = (header.creator_pid, header.generation);
        Ok(Self {
            shmem,
            name: name.to_owned(),
            base,
            len,
            layout,
            creator_pid,
            generation,
            is_creator: false,
            unlink_on_drop: false,
            unlinked: AtomicBool::new(false),
        })
    }

    /// Removes the segment's name. Call it once both sides have mapped the segment; existing
    /// mappings (this one included) stay valid, new [`open`](Self::open)s fail with `ENOENT`.
    ///
    /// Either side may call it, any number of times: a name that is already gone counts as
    /// success.
    ///
    /// # Errors
    /// [`SegmentError::Unlink`] when `shm_unlink` fails for another reason than `ENOENT`.
    pub fn unlink(&self) -> Result<(), SegmentError> {
        match nix::sys::mman::shm_unlink(self.name.as_str()) {
            Ok(()) | Err(Errno::ENOENT) => {
                // Relaxed: the flag orders nothing; only `Drop` reads it, and `Drop` has exclusive
                // access to `self`, so it sees every store made through earlier borrows.
                self.unlinked.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(SegmentError::Unlink {
                name: self.name.clone(),
                source: e.into(),
            }),
        }
    }

    /// Whether dropping this handle removes the name (unless [`unlink`](Self::unlink) already
    /// did). Off by default, for the creator too; a creator turns it on to clean up on an error
    /// path (e.g. the peer could not be started) and off again once the name was handed over.
    pub fn set_unlink_on_drop(&mut self, on: bool) {
        self.unlink_on_drop = on;
    }

    /// See [`set_unlink_on_drop`](Self::set_unlink_on_drop).
    #[must_use]
    pub fn unlink_on_drop(&self) -> bool {
        self.unlink_on_drop
    }

    /// The POSIX shared-memory name, with its leading `/` (e.g. `/amp-1234-0123456789abcdef`):
    /// what the peer passes to [`open`](Self::open).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where Linux shows the name: [`SHM_DIR`]`/<name without '/'>`. The path no longer exists
    /// after [`unlink`](Self::unlink).
    #[must_use]
    pub fn fs_path(&self) -> PathBuf {
        PathBuf::from(SHM_DIR).join(self.name.trim_start_matches('/'))
    }

    /// The layout validated when the segment was created or opened. All offsets this handle uses
    /// come from it, never from the live header.
    #[must_use]
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The segment header in shared memory.
    ///
    /// Its plain fields are written once by the creator before `magic_version` and never again
    /// by a well-behaved peer; treat them as untrusted anyway and use [`layout`](Self::layout),
    /// [`generation`](Self::generation) and [`creator_pid`](Self::creator_pid), which hold the
    /// values validated at create/open time.
    #[must_use]
    pub fn header(&self) -> &SegmentHeader {
        // SAFETY: the mapping is at least `size_of::<SegmentHeader>()` bytes (checked in `create`
        // and `open`) and stays mapped while `&self` lives; mmap memory is page-aligned, more than
        // the 128-byte alignment; all fields are integers or atomics, valid for any bit pattern;
        // shared references only (see the `Sync` impl).
        unsafe { self.ptr_at::<SegmentHeader>(0).as_ref() }
    }

    /// The control block in shared memory (see [`ControlBlock`] for who writes which field).
    #[must_use]
    pub fn control(&self) -> &ControlBlock {
        // SAFETY: `ptr_at` checked that the block lies inside the mapping, which stays mapped
        // while `&self` lives; `CONTROL_OFFSET` is a multiple of 128 from a page-aligned base;
        // all fields are atomics or integers, valid for any bit pattern; shared references only.
        unsafe { self.ptr_at::<ControlBlock>(CONTROL_OFFSET).as_ref() }
    }

    /// The generation (restart epoch) the creator stored in the header.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// PID of the process that created the segment, from the header.
    #[must_use]
    pub fn creator_pid(&self) -> u32 {
        self.creator_pid
    }

    /// Whether this handle came from [`create`](Self::create) rather than [`open`](Self::open).
    #[must_use]
    pub fn is_creator(&self) -> bool {
        self.is_creator
    }

    /// Bytes mapped (at least `layout().total_size`).
    #[must_use]
    pub fn mapped_len(&self) -> usize {
        self.len
    }

    /// Raw pointers to one ring, for the ring module. They are valid as long as this `Segment`
    /// is alive; see [`RawRing`] for what they guarantee.
    #[must_use]
    pub fn ring_raw(&self, side: RingSide) -> RawRing {
        let desc = self.descriptor(side);
        RawRing {
            header: self.ptr_at::<RingHeader>(desc.header_offset),
            data: self.region_at(desc.data_offset, desc.capacity),
            capacity: desc.capacity,
            max_record: desc.max_record,
        }
    }

    /// The validated descriptor of one ring.
    fn descriptor(&self, side: RingSide) -> RingDescriptor {
        match side {
            RingSide::Tasks => self.layout.tasks,
            RingSide::Completions => self.layout.completions,
        }
    }

    /// A pointer to a `T` at `offset` in the mapping.
    ///
    /// # Panics
    /// When `offset..offset + size_of::<T>()` is not inside the mapping. Callers pass offsets of
    /// the validated layout, so this is a bug check, not an input check.
    fn ptr_at<T>(&self, offset: u64) -> NonNull<T> {
        self.region_at(offset, size_of::<T>() as u64).cast()
    }

    /// A pointer to `size` bytes at `offset` in the mapping.
    ///
    /// # Panics
    /// As [`ptr_at`](Self::ptr_at).
    fn region_at(&self, offset: u64, size: u64) -> NonNull<u8> {
        let end = offset.checked_add(size);
        assert!(
            end.is_some_and(|end| end <= self.len as u64),
            "segment region {offset}+{size} outside the {}-byte mapping",
            self.len
        );
        // SAFETY: `offset + size <= self.len` (asserted above), so the result stays inside the
        // mapping that starts at `base` (or one past its end for an empty region); the cast cannot
        // truncate because `offset <= self.len`, a `usize`.
        unsafe { self.base.add(offset as usize) }
    }

    /// Checks the object's mode and sets it to exactly [`SEGMENT_MODE`] if the umask changed it
    /// (see the module docs for why).
    fn enforce_mode(&self) -> Result<(), SegmentError> {
        let path = self.fs_path();
        let create_error = |source| SegmentError::Create {
            name: self.name.clone(),
            source,
        };
        let mode = fs::metadata(&path)
            .map_err(create_error)?
            .permissions()
            .mode()
            & 0o7777;
        if mode != SEGMENT_MODE {
            fs::set_permissions(&path, fs::Permissions::from_mode(SEGMENT_MODE))
                .map_err(create_error)?;
        }
        Ok(())
    }

    /// Zero-fills the fresh segment, writes the header, control block and ring headers, and
    /// publishes them by storing `MAGIC_VERSION` last.
    fn initialise(&self) {
        // SAFETY: `base` starts a writable mapping of `len` bytes. The object was just created
        // under a fresh random name and no reference into it exists yet. A fresh object is already
        // zero; writing the zeros also faults every page in now rather than on the task path.
        unsafe { self.base.as_ptr().write_bytes(0, self.len) };

        let mut header = SegmentHeader::default();
        self.layout
            .fill_header(&mut header, self.creator_pid, self.generation);
        debug_assert_eq!(header.magic_version.load(Ordering::Relaxed), 0);
        // SAFETY: `ptr_at` checked the header lies inside the mapping; page-aligned base; no
        // reference into the mapping is live. `magic_version` is still 0: a reader refuses it.
        unsafe { self.ptr_at::<SegmentHeader>(0).write(header) };

        let control = ControlBlock {
            state: AtomicU32::new(PeerState::Created as u32),
            ..ControlBlock::default()
        };
        // SAFETY: as above, at the validated `CONTROL_OFFSET` (128-aligned).
        unsafe { self.ptr_at::<ControlBlock>(CONTROL_OFFSET).write(control) };

        for desc in [self.layout.tasks, self.layout.completions] {
            // SAFETY: as above, at the validated, 128-aligned ring header offset.
            unsafe {
                self.ptr_at::<RingHeader>(desc.header_offset)
                    .write(RingHeader::default())
            };
        }

        // SYNC POINT (Release): publishes every write above. Pairs with the Acquire load of
        // `magic_version` in `Segment::open`; a reader that sees `MAGIC_VERSION` sees a complete
        // header, control block and ring headers.
        self.header()
            .magic_version
            .store(MAGIC_VERSION, Ordering::Release);
    }
}

/// Turns the crate's open error into a [`SegmentError`]; a zero-sized object (created, not yet
/// sized: `mmap` fails with `EINVAL`) reads as [`LayoutError::NotInitialised`].
fn open_error(name: &str, e: ShmemError) -> SegmentError {
    let source = error::shmem_to_io(e);
    if source.raw_os_error() == Some(libc::EINVAL) {
        let path = PathBuf::from(SHM_DIR).join(name.trim_start_matches('/'));
        if fs::metadata(path).is_ok_and(|m| m.len() == 0) {
            return SegmentError::Layout {
                name: name.to_owned(),
                error: LayoutError::NotInitialised,
            };
        }
    }
    SegmentError::Open {
        name: name.to_owned(),
        source,
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.unlink_on_drop && !*self.unlinked.get_mut() {
            if let Err(e) = self.unlink() {
                tracing::warn!(segment = %self.name, error = %e, "could not unlink segment on drop");
            }
        }
        // `self.shmem` drops next: munmap + close, no unlink (not the owner).
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("len", &self.len)
            .field("layout", &self.layout)
            .field("creator_pid", &self.creator_pid)
            .field("generation", &self.generation)
            .field("is_creator", &self.is_creator)
            .field("unlink_on_drop", &self.unlink_on_drop)
            .field("unlinked", &self.unlinked)
            .field("shmem_is_owner", &self.shmem.is_owner())
            .finish()
    }
}
