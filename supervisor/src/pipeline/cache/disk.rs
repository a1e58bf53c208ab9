//! The disk tier: one file per result, named by key, written atomically (temporary + rename),
//! oldest deleted first beyond the size bound.
//!
//! File layout (little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `AMPCACHE` |
//! | 8 | 4 | version (1) |
//! | 12 | 4 | reserved (0) |
//! | 16 | 32 | the key |
//! | 48 | 8 | store time, ns since the Unix epoch |
//! | 56 | 8 | result length |
//! | 64 | … | the result |

use super::{CacheError, CacheKey, CacheStats};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 8] = b"AMPCACHE";
const VERSION: u32 = 1;
const HEADER: usize = 64;
const SUFFIX: &str = ".amp-cache";
const TMP_SUFFIX: &str = ".tmp";

#[derive(Debug, Clone, Copy)]
struct FileEntry {
    size: u64,
    stored: SystemTime,
    seq: u64,
}

#[derive(Debug)]
pub(super) struct DiskTier {
    dir: PathBuf,
    max_bytes: u64,
    bytes: u64,
    files: HashMap<CacheKey, FileEntry>,
    /// Store order: (time, sequence) → key, oldest first.
    order: BTreeMap<(SystemTime, u64), CacheKey>,
    seq: u64,
}

impl DiskTier {
    pub(super) fn open(
        dir: &Path,
        max_bytes: u64,
        ttl: Duration,
        wall: SystemTime,
        stats: &mut CacheStats,
    ) -> Result<Self, CacheError> {
        let err = |source| CacheError::Dir {
            dir: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(err)?;
        let mut tier = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            bytes: 0,
            files: HashMap::new(),
            order: BTreeMap::new(),
            seq: 0,
        };
        let mut found = Vec::new();
        for entry in fs::read_dir(dir).map_err(err)? {
            let Ok(entry) = entry else {
                stats.disk_errors += 1;
                continue;
            };
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(TMP_SUFFIX) && name.starts_with('.') {
                // A write interrupted by a crash.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(key) = name.strip_suffix(SUFFIX).and_then(CacheKey::from_hex) else {
                continue;
            };
            match read_header(&entry.path(), &key) {
                Some((stored, size)) => found.push((stored, key, size)),
                None => {
                    stats.disk_errors += 1;
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        found.sort();
        for (stored, key, size) in found {
            if expired(stored, wall, ttl) {
                stats.expired += 1;
                let _ = fs::remove_file(tier.path(&key));
                continue;
            }
            tier.index(key, size, stored);
        }
        tier.evict(0, stats);
        Ok(tier)
    }

    pub(super) const fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(super) fn len(&self) -> usize {
        self.files.len()
    }

    fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}{SUFFIX}", key.hex()))
    }

    fn index(&mut self, key: CacheKey, size: u64, stored: SystemTime) {
        self.unindex(&key);
        self.seq += 1;
        self.files.insert(
            key,
            FileEntry {
                size,
                stored,
                seq: self.seq,
            },
        );
        self.order.insert((stored, self.seq), key);
        self.bytes += size;
    }

    fn unindex(&mut self, key: &CacheKey) {
        if let Some(e) = self.files.remove(key) {
            self.order.remove(&(e.stored, e.seq));
            self.bytes -= e.size;
        }
    }

    fn remove(&mut self, key: &CacheKey) {
        self.unindex(key);
        let _ = fs::remove_file(self.path(key));
    }

    /// Deletes the oldest files until `extra` more bytes fit.
    fn evict(&mut self, extra: u64, stats: &mut CacheStats) {
        while self.bytes + extra > self.max_bytes {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some(e) = self.files.remove(&key) {
                self.bytes -= e.size;
            }
            let _ = fs::remove_file(self.path(&key));
            stats.disk_evicted += 1;
        }
    }

    pub(super) fn get(
        &mut self,
        key: &CacheKey,
        wall: SystemTime,
        ttl: Duration,
        stats: &mut CacheStats,
    ) -> Option<Vec<u8>> {
        let e = *self.files.get(key)?;
        if expired(e.stored, wall, ttl) {
            stats.expired += 1;
            self.remove(key);
            return None;
        }
        match read_file(&self.path(key), key) {
            Some(v) => Some(v),
            None => {
                // Deleted or damaged behind our back.
                stats.disk_errors += 1;
                self.remove(key);
                None
            }
        }
    }

    pub(super) fn put(
        &mut self,
        key: &CacheKey,
        value: &[u8],
        wall: SystemTime,
        stats: &mut CacheStats,
    ) {
        let size = (HEADER + value.len()) as u64;
        if size > self.max_bytes {
            return;
        }
        self.remove(key);
        self.evict(size, stats);
        let stored_ns = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let mut header = [0u8; HEADER];
        header[0..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        header[16..48].copy_from_slice(&key.0);
        header[48..56].copy_from_slice(&stored_ns.to_le_bytes());
        header[56..64].copy_from_slice(&(value.len() as u64).to_le_bytes());
        self.seq += 1;
        let tmp = self.dir.join(format!(
            ".{}.{}.{}{TMP_SUFFIX}",
            key.hex(),
            std::process::id(),
            self.seq
        ));
        let written = (|| -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&header)?;
            f.write_all(value)?;
            drop(f);
            fs::rename(&tmp, self.path(key))
        })();
        match written {
            Ok(()) => {
                stats.disk_stored += 1;
                self.index(*key, size, UNIX_EPOCH + Duration::from_nanos(stored_ns));
            }
            Err(_) => {
                stats.disk_errors += 1;
                let _ = fs::remove_file(&tmp);
            }
        }
    }

    pub(super) fn clear(&mut self, stats: &mut CacheStats) {
        let keys: Vec<CacheKey> = self.files.keys().copied().collect();
        for key in keys {
            if fs::remove_file(self.path(&key)).is_err() {
                stats.disk_errors += 1;
            }
            self.unindex(&key);
        }
    }
}

fn expired(stored: SystemTime, wall: SystemTime, ttl: Duration) -> bool {
    wall.duration_since(stored).unwrap_or(Duration::ZERO) >= ttl
}

/// Checks a header against `key`; returns the store time and the expected file size.
fn parse_header(h: &[u8; HEADER], key: &CacheKey) -> Option<(SystemTime, u64)> {
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let ok = &h[0..8] == MAGIC && h[8..12] == VERSION.to_le_bytes() && h[16..48] == key.0;
    let len = u64_at(56);
    ok.then(|| {
        (
            UNIX_EPOCH + Duration::from_nanos(u64_at(48)),
            HEADER as u64 + len,
        )
    })
}

fn read_header(path: &Path, key: &CacheKey) -> Option<(SystemTime, u64)> {
    let mut f = fs::File::open(path).ok()?;
    let mut h = [0u8; HEADER];
    f.read_exact(&mut h).ok()?;
    let (stored, size) = parse_header(&h, key)?;
    (f.metadata().ok()?.len() == size).then_some((stored, size))
}

fn read_file(path: &Path, key: &CacheKey) -> Option<Vec<u8>> {
    let bytes = fs::read(path).ok()?;
    let h: &[u8; HEADER] = bytes.get(..HEADER)?.try_into().ok()?;
    let (_, size) = parse_header(h, key)?;
    (bytes.len() as u64 == size).then(|| bytes[HEADER..].to_vec())
}
