//! [`SegmentError`]: why creating, opening, unlinking or sweeping a segment failed.

use std::io;
use std::path::PathBuf;

use amp_shm_layout::LayoutError;

/// Why a segment operation failed.
///
/// Every message names the segment (or directory) and says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// The name prefix given to [`Segment::create`](super::Segment::create) or
    /// [`sweep`](super::sweep) is not usable in a shared-memory name.
    #[error(
        "invalid segment name prefix {prefix:?}: {reason}; use 1 to {max} characters from \
         [A-Za-z0-9_.-] (the default is \"amp\")",
        max = super::name::MAX_PREFIX_LEN
    )]
    BadPrefix {
        /// The prefix as given.
        prefix: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The name given to [`Segment::open`](super::Segment::open) is not a POSIX shared-memory
    /// name.
    #[error(
        "invalid segment name {name:?}: {reason}; pass the name exactly as the creator's \
         Segment::name() returned it, e.g. \"/amp-1234-0123456789abcdef\""
    )]
    BadName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The [`SegmentConfig`](super::SegmentConfig) describes rings the layout does not accept.
    #[error(
        "invalid segment configuration: {error}; ring capacities must be powers of two in \
         {min}..={max} bytes and max_record must be between 1 and capacity/2 - 8",
        min = amp_shm_layout::MIN_RING_CAPACITY,
        max = amp_shm_layout::MAX_RING_CAPACITY
    )]
    Config {
        /// What the layout refused (`LayoutError` is not a `std::error::Error`, so it is a field,
        /// not a source).
        error: LayoutError,
    },

    /// Creating, sizing, mapping or setting the mode of a new segment failed.
    #[error(
        "cannot create shared-memory segment {name}: {source}; check that /dev/shm is mounted, \
         writable by this user and not full (df /dev/shm)"
    )]
    Create {
        /// The name that was being created.
        name: String,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },

    /// Opening or mapping an existing segment failed.
    #[error(
        "cannot open shared-memory segment {name}: {source}; check that the name is the one the \
         creator handed over, that the segment still exists in /dev/shm (it is unlinked once both \
         sides mapped it) and that it belongs to this user"
    )]
    Open {
        /// The name that was being opened.
        name: String,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },

    /// The segment is mapped but its header is refused: not initialised yet, not an amp segment,
    /// another layout version, corrupt, or truncated.
    #[error(
        "shared-memory segment {name} refused: {error}; if it is not initialised yet, retry after \
         the creator finished; otherwise make sure both sides run the same amp release"
    )]
    Layout {
        /// The segment's name.
        name: String,
        /// What the header check refused (`LayoutError` is not a `std::error::Error`, so it is a
        /// field, not a source).
        error: LayoutError,
    },

    /// Removing a segment's name failed (for a reason other than "already gone").
    #[error(
        "cannot unlink shared-memory segment {name}: {source}; remove it by hand with \
         `rm /dev/shm/{bare}` once no process needs it",
        bare = .name.trim_start_matches('/')
    )]
    Unlink {
        /// The segment's name.
        name: String,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },

    /// Listing the shared-memory directory during a [`sweep`](super::sweep) failed.
    #[error(
        "cannot list {dir} to sweep stale segments: {source}; check that the directory exists and \
         is readable"
    )]
    Sweep {
        /// The directory that was being listed.
        dir: PathBuf,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },
}

impl SegmentError {
    /// The [`LayoutError`] behind a [`SegmentError::Config`] or [`SegmentError::Layout`], if any.
    #[must_use]
    pub fn layout_error(&self) -> Option<LayoutError> {
        match self {
            Self::Config { error } | Self::Layout { error, .. } => Some(*error),
            _ => None,
        }
    }
}

/// Converts the `shared_memory` crate's error into an `io::Error`, keeping the errno when it
/// carries one (it reports OS failures as a bare `u32` errno).
pub(super) fn shmem_to_io(e: shared_memory::ShmemError) -> io::Error {
    use shared_memory::ShmemError as E;
    match e {
        E::MapCreateFailed(errno) | E::MapOpenFailed(errno) | E::UnknownOsError(errno) => {
            match i32::try_from(errno) {
                Ok(errno) => io::Error::from_raw_os_error(errno),
                Err(_) => io::Error::other(format!("os error {errno}")),
            }
        }
        E::MappingIdExists => io::Error::from(io::ErrorKind::AlreadyExists),
        other => io::Error::other(other),
    }
}
