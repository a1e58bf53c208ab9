//! The memory tier: results by key, least recently used evicted first, bounded in bytes.

use super::CacheKey;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Bytes an entry costs on top of its result (key, bookkeeping), for the `max_bytes` bound.
pub const ENTRY_OVERHEAD: u64 = 96;

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    stored: Instant,
    tick: u64,
}

/// What a lookup found.
#[derive(Debug)]
pub(super) enum Get {
    Hit(Vec<u8>),
    Expired,
    Miss,
}

#[derive(Debug)]
pub(super) struct MemoryTier {
    max_bytes: u64,
    bytes: u64,
    map: HashMap<CacheKey, Entry>,
    /// Use order: tick → key, oldest first.
    lru: BTreeMap<u64, CacheKey>,
    tick: u64,
}

fn cost(len: usize) -> u64 {
    len as u64 + ENTRY_OVERHEAD
}

impl MemoryTier {
    pub(super) fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            bytes: 0,
            map: HashMap::new(),
            lru: BTreeMap::new(),
            tick: 0,
        }
    }

    pub(super) const fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn get(&mut self, key: &CacheKey, now: Instant, ttl: Duration) -> Get {
        let Some(e) = self.map.get_mut(key) else {
            return Get::Miss;
        };
        if now.saturating_duration_since(e.stored) >= ttl {
            self.remove(key);
            return Get::Expired;
        }
        self.tick += 1;
        self.lru.remove(&e.tick);
        e.tick = self.tick;
        self.lru.insert(self.tick, *key);
        Get::Hit(e.value.clone())
    }

    /// Stores `value`; returns whether it was kept (false: larger than the tier) and how many
    /// entries were evicted for it.
    pub(super) fn put(&mut self, key: CacheKey, value: Vec<u8>, now: Instant) -> (bool, u64) {
        self.remove(&key);
        let c = cost(value.len());
        if c > self.max_bytes {
            return (false, 0);
        }
        let mut evicted = 0;
        while self.bytes + c > self.max_bytes {
            let Some((_, oldest)) = self.lru.pop_first() else {
                break;
            };
            if let Some(e) = self.map.remove(&oldest) {
                self.bytes -= cost(e.value.len());
                evicted += 1;
            }
        }
        self.tick += 1;
        self.bytes += c;
        self.lru.insert(self.tick, key);
        self.map.insert(
            key,
            Entry {
                value,
                stored: now,
                tick: self.tick,
            },
        );
        (true, evicted)
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some(e) = self.map.remove(key) {
            self.lru.remove(&e.tick);
            self.bytes -= cost(e.value.len());
        }
    }

    pub(super) fn clear(&mut self) {
        self.map.clear();
        self.lru.clear();
        self.bytes = 0;
    }
}
