//! Deterministic kinds (`deterministic = true`): identical tasks in flight run **once**
//! (coalescing), and results are kept for reuse (a memory tier, LRU by bytes with a TTL, and
//! an optional size-bounded disk tier).
//!
//! **Key**: [`CacheKey`] is the SHA-256 of a domain tag, the kind name (length-prefixed) and
//! the payload. 256 bits make an accidental collision practically impossible (and a deliberate
//! one infeasible), and the value does not depend on the process or the toolchain, so the disk
//! tier stays valid across restarts. Entries store no payload; the key stands for it.
//!
//! **Coalescing**: [`Cache::lookup`] of a key already running joins the waiter to it
//! ([`Lookup::Joined`]); the first submitter runs it ([`Lookup::Execute`]); when the task's
//! answer comes, [`Cache::finished`] hands back every joined waiter to answer with the same
//! outcome. Only successful results are stored.
//!
//! **Memory tier**: each entry costs its result's length plus [`ENTRY_OVERHEAD`] bytes; the
//! least recently used go first once `max_bytes` is exceeded; a result larger than `max_bytes`
//! is not kept. Entries older than `ttl` are dropped when met.
//!
//! **Disk tier**: one file per result in the directory, named `<64 hex digits>.amp-cache`,
//! written to a temporary name and renamed into place (a reader never sees a half-written
//! file; a crash leaves at most a temporary, deleted at the next open). Files carry their
//! key, length and store time (wall clock, so the TTL holds across restarts), checked on
//! every read. Oldest stored are deleted first beyond `disk_max_bytes`. I/O happens on the
//! caller's thread; I/O errors are counted ([`CacheStats::disk_errors`]), never fatal.
//!
//! ```
//! use amp_supervisor::config::CacheConfig;
//! use amp_supervisor::delivery::{FinalOutcome, TaskId};
//! use amp_supervisor::pipeline::cache::{Cache, CacheKey, Lookup};
//! use std::time::{Instant, SystemTime};
//! let (now, wall) = (Instant::now(), SystemTime::now());
//! let mut cache: Cache<&str> = Cache::open(&CacheConfig::default(), wall)?;
//! let key = CacheKey::new("render", b"page 1");
//! let Lookup::Execute(k) = cache.lookup(now, wall, &key, "alice") else { panic!() };
//! cache.started(k, TaskId(7));
//! assert_eq!(cache.lookup(now, wall, &key, "bob"), Lookup::Joined);
//! let joined = cache.finished(now, wall, TaskId(7), &FinalOutcome::Ok(b"<html>".to_vec()));
//! assert_eq!(joined, ["bob"]);
//! assert_eq!(cache.lookup(now, wall, &key, "carol"), Lookup::Hit(b"<html>".to_vec()));
//! # Ok::<(), amp_supervisor::pipeline::cache::CacheError>(())
//! ```

mod disk;
mod memory;

use crate::config::CacheConfig;
use crate::delivery::{FinalOutcome, TaskId};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

pub use memory::ENTRY_OVERHEAD;

/// The identity of a deterministic task: SHA-256 over a domain tag, the kind name and the
/// payload.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    /// The key of a task of kind `kind` with `payload`.
    #[must_use]
    pub fn new(kind: &str, payload: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"amp-cache-v1\0");
        h.update((kind.len() as u64).to_le_bytes());
        h.update(kind.as_bytes());
        h.update(payload);
        Self(h.finalize().into())
    }

    /// Lower-case hex, 64 digits (the disk tier's file name).
    #[must_use]
    pub fn hex(&self) -> String {
        use std::fmt::Write;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// Parses [`CacheKey::hex`] back.
    #[must_use]
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", &self.hex()[..16])
    }
}

/// What [`Cache::lookup`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A stored result: answer the submitter with it now.
    Hit(Vec<u8>),
    /// The same task is running: the waiter will be returned by [`Cache::finished`].
    Joined,
    /// Not known: submit the task, then [`Cache::started`] with this key.
    Execute(CacheKey),
}

/// Why a cache could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The disk tier's directory cannot be created or listed; fix its permissions or change
    /// `cache.disk_dir`.
    #[error("cache directory {}: {source}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Counters and sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from memory.
    pub hits: u64,
    /// Lookups answered from disk.
    pub disk_hits: u64,
    /// Lookups that ran the task.
    pub misses: u64,
    /// Lookups that joined a running task.
    pub joined: u64,
    /// Results stored in memory.
    pub stored: u64,
    /// Memory entries evicted for room.
    pub evicted: u64,
    /// Entries (either tier) dropped for age.
    pub expired: u64,
    /// Results too large for the memory tier.
    pub too_large: u64,
    /// Files written.
    pub disk_stored: u64,
    /// Files deleted for room.
    pub disk_evicted: u64,
    /// Disk reads or writes that failed (or found a damaged file).
    pub disk_errors: u64,
    /// Bytes held in memory (with [`ENTRY_OVERHEAD`] per entry).
    pub memory_bytes: u64,
    /// Entries in memory.
    pub memory_entries: u64,
    /// Bytes of files on disk.
    pub disk_bytes: u64,
    /// Files on disk.
    pub disk_files: u64,
}

/// One deterministic kind's coalescing table and result cache (see the
/// [module documentation](self)). `W` is whoever waits for an answer (a `Submitter`).
#[derive(Debug)]
pub struct Cache<W> {
    ttl: Duration,
    memory: memory::MemoryTier,
    disk: Option<disk::DiskTier>,
    inflight: HashMap<CacheKey, Vec<W>>,
    running: HashMap<TaskId, CacheKey>,
    stats: CacheStats,
}

impl<W> Cache<W> {
    /// A cache with `config`'s limits; opens (creating it if needed) and indexes the disk
    /// tier's directory, deleting leftover temporaries, expired files (by `wall`) and the
    /// oldest files beyond the size limit.
    ///
    /// # Errors
    /// [`CacheError::Dir`] when the directory cannot be created or listed.
    pub fn open(config: &CacheConfig, wall: SystemTime) -> Result<Self, CacheError> {
        let mut stats = CacheStats::default();
        let disk = match &config.disk {
            None => None,
            Some(d) => Some(disk::DiskTier::open(
                &d.dir,
                d.max_bytes,
                config.ttl,
                wall,
                &mut stats,
            )?),
        };
        let mut cache = Self {
            ttl: config.ttl,
            memory: memory::MemoryTier::new(config.max_bytes),
            disk,
            inflight: HashMap::new(),
            running: HashMap::new(),
            stats,
        };
        cache.refresh_sizes();
        Ok(cache)
    }

    /// Looks `key` up for `waiter` (see [`Lookup`]).
    pub fn lookup(&mut self, now: Instant, wall: SystemTime, key: &CacheKey, waiter: W) -> Lookup {
        if let Some(waiters) = self.inflight.get_mut(key) {
            waiters.push(waiter);
            self.stats.joined += 1;
            return Lookup::Joined;
        }
        match self.memory.get(key, now, self.ttl) {
            memory::Get::Hit(v) => {
                self.stats.hits += 1;
                return Lookup::Hit(v);
            }
            memory::Get::Expired => {
                self.stats.expired += 1;
                self.refresh_sizes();
            }
            memory::Get::Miss => {}
        }
        if let Some(d) = &mut self.disk {
            if let Some(v) = d.get(key, wall, self.ttl, &mut self.stats) {
                self.stats.disk_hits += 1;
                let (stored, evicted) = self.memory.put(*key, v.clone(), now);
                self.count_put(stored, evicted);
                self.refresh_sizes();
                return Lookup::Hit(v);
            }
        }
        self.stats.misses += 1;
        self.inflight.insert(*key, Vec::new());
        Lookup::Execute(*key)
    }

    /// The task for `key` ([`Lookup::Execute`]) was submitted as `id`.
    pub fn started(&mut self, key: CacheKey, id: TaskId) {
        self.running.insert(id, key);
    }

    /// The task for `key` could not be submitted: returns the waiters that joined it meanwhile
    /// (answer them as refused too).
    pub fn start_failed(&mut self, key: &CacheKey) -> Vec<W> {
        self.running.retain(|_, k| k != key);
        self.inflight.remove(key).unwrap_or_default()
    }

    /// Task `id` was answered with `outcome`: stores a success, and returns the waiters that
    /// joined it (answer each with the same outcome). Empty for a task this cache does not
    /// run, and for every call after the first for the same `id`.
    pub fn finished(
        &mut self,
        now: Instant,
        wall: SystemTime,
        id: TaskId,
        outcome: &FinalOutcome,
    ) -> Vec<W> {
        let Some(key) = self.running.remove(&id) else {
            return Vec::new();
        };
        if let FinalOutcome::Ok(bytes) = outcome {
            let (stored, evicted) = self.memory.put(key, bytes.clone(), now);
            self.count_put(stored, evicted);
            if let Some(d) = &mut self.disk {
                d.put(&key, bytes, wall, &mut self.stats);
            }
            self.refresh_sizes();
        }
        self.inflight.remove(&key).unwrap_or_default()
    }

    /// Drops every stored result (memory and disk); tasks in flight are not affected.
    pub fn clear(&mut self) {
        self.memory.clear();
        if let Some(d) = &mut self.disk {
            d.clear(&mut self.stats);
        }
        self.refresh_sizes();
    }

    /// Keys being run.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Waiters joined to the running task of `key`.
    #[must_use]
    pub fn waiters(&self, key: &CacheKey) -> usize {
        self.inflight.get(key).map_or(0, Vec::len)
    }

    /// Counters and sizes.
    #[must_use]
    pub const fn stats(&self) -> CacheStats {
        self.stats
    }

    fn count_put(&mut self, stored: bool, evicted: u64) {
        if stored {
            self.stats.stored += 1;
        } else {
            self.stats.too_large += 1;
        }
        self.stats.evicted += evicted;
    }

    fn refresh_sizes(&mut self) {
        self.stats.memory_bytes = self.memory.bytes();
        self.stats.memory_entries = self.memory.len() as u64;
        if let Some(d) = &self.disk {
            self.stats.disk_bytes = d.bytes();
            self.stats.disk_files = d.len() as u64;
        }
    }
}
