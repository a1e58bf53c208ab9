//! Coalescing, the memory tier (LRU by bytes, TTL) and the disk tier.

use crate::config::{CacheConfig, DiskCacheConfig};
use crate::delivery::{FinalOutcome, TaskId};
use crate::pipeline::cache::{Cache, CacheKey, Lookup, ENTRY_OVERHEAD};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("amp-cache-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mem(max_bytes: u64, ttl: Duration) -> CacheConfig {
    CacheConfig {
        max_bytes,
        ttl,
        disk: None,
    }
}

fn key(p: &str) -> CacheKey {
    CacheKey::new("k", p.as_bytes())
}

/// Runs `payload` to completion through the cache as task `id`.
fn fill(c: &mut Cache<u32>, now: Instant, wall: SystemTime, payload: &str, id: u64, result: &[u8]) {
    let Lookup::Execute(k) = c.lookup(now, wall, &key(payload), 0) else {
        panic!("{payload} should run")
    };
    c.started(k, TaskId(id));
    c.finished(now, wall, TaskId(id), &FinalOutcome::Ok(result.to_vec()));
}

#[test]
fn keys() {
    let a = CacheKey::new("hash", b"payload");
    assert_eq!(a, CacheKey::new("hash", b"payload"), "stable");
    assert_ne!(a, CacheKey::new("hash", b"payloaD"));
    assert_ne!(
        a,
        CacheKey::new("echo", b"payload"),
        "the kind is part of the key"
    );
    // The length prefix separates kind and payload.
    assert_ne!(CacheKey::new("ab", b"c"), CacheKey::new("a", b"bc"));
    assert_eq!(a.hex().len(), 64);
    assert_eq!(CacheKey::from_hex(&a.hex()), Some(a));
    assert_eq!(CacheKey::from_hex("xyz"), None);
    // SHA-256 known answer: the key does not depend on the process or the toolchain, so the
    // disk tier stays valid across restarts.
    assert_eq!(
        a.hex(),
        "781a16bbd445035354096c32cc222042a0183f06b8ad4d816b3f0951b78a7d21"
    );
}

#[test]
fn coalescing_1000_identical_submissions_runs_once() {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let mut c: Cache<u32> = Cache::open(&CacheConfig::default(), wall).unwrap();
    let k = CacheKey::new("render", b"same payload");
    let mut executes = Vec::new();
    let mut joined = 0;
    for submitter in 0..1000u32 {
        match c.lookup(now, wall, &k, submitter) {
            Lookup::Execute(key) => executes.push((submitter, key)),
            Lookup::Joined => joined += 1,
            Lookup::Hit(_) => panic!("nothing stored yet"),
        }
    }
    assert_eq!(executes, [(0, k)], "one execution, by the first submitter");
    assert_eq!((joined, c.in_flight(), c.waiters(&k)), (999, 1, 999));
    c.started(k, TaskId(42));
    let waiters = c.finished(now, wall, TaskId(42), &FinalOutcome::Ok(b"r".to_vec()));
    // The first submitter is answered by the delivery core, the 999 others from here.
    assert_eq!(waiters, (1..1000).collect::<Vec<u32>>());
    assert!(c
        .finished(now, wall, TaskId(42), &FinalOutcome::Ok(b"r".to_vec()))
        .is_empty());
    assert_eq!(c.in_flight(), 0);
    let s = c.stats();
    assert_eq!((s.misses, s.joined, s.stored), (1, 999, 1));
    // Resubmission: a hit, nothing runs.
    assert_eq!(c.lookup(now, wall, &k, 1000), Lookup::Hit(b"r".to_vec()));
    assert_eq!(c.stats().hits, 1);
}

#[test]
fn failures_are_shared_but_not_stored() {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let mut c: Cache<u32> = Cache::open(&CacheConfig::default(), wall).unwrap();
    let k = key("x");
    let Lookup::Execute(_) = c.lookup(now, wall, &k, 1) else {
        panic!()
    };
    c.started(k, TaskId(1));
    assert_eq!(c.lookup(now, wall, &k, 2), Lookup::Joined);
    let failed = FinalOutcome::Failed {
        message: "boom".into(),
    };
    assert_eq!(c.finished(now, wall, TaskId(1), &failed), [2]);
    assert!(
        matches!(c.lookup(now, wall, &k, 3), Lookup::Execute(_)),
        "runs again"
    );
    // A submission that could not start hands back its joined waiters.
    assert_eq!(c.lookup(now, wall, &k, 4), Lookup::Joined);
    assert_eq!(c.start_failed(&k), [4]);
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn memory_evicts_least_recently_used_by_bytes() {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let entry = 100 + ENTRY_OVERHEAD;
    let mut c: Cache<u32> = Cache::open(&mem(3 * entry, Duration::from_secs(60)), wall).unwrap();
    let v = [7u8; 100];
    fill(&mut c, now, wall, "a", 1, &v);
    fill(&mut c, now, wall, "b", 2, &v);
    fill(&mut c, now, wall, "c", 3, &v);
    assert_eq!(
        (c.stats().memory_bytes, c.stats().memory_entries),
        (3 * entry, 3)
    );
    // Touch a: b is now the least recently used.
    assert!(matches!(c.lookup(now, wall, &key("a"), 0), Lookup::Hit(_)));
    fill(&mut c, now, wall, "d", 4, &v);
    assert_eq!(c.stats().evicted, 1);
    assert!(matches!(c.lookup(now, wall, &key("a"), 0), Lookup::Hit(_)));
    assert!(matches!(c.lookup(now, wall, &key("c"), 0), Lookup::Hit(_)));
    assert!(matches!(c.lookup(now, wall, &key("d"), 0), Lookup::Hit(_)));
    assert!(
        matches!(c.lookup(now, wall, &key("b"), 0), Lookup::Execute(_)),
        "evicted"
    );
    // A 250-byte result needs two slots: evicts the two least recently used (a, c).
    c.start_failed(&key("b"));
    fill(&mut c, now, wall, "big", 5, &[1u8; 250]);
    assert_eq!(c.stats().evicted, 3);
    assert!(c.stats().memory_bytes <= 3 * entry);
    assert!(matches!(c.lookup(now, wall, &key("d"), 0), Lookup::Hit(_)));
    // Larger than the whole tier: not kept.
    fill(&mut c, now, wall, "huge", 6, &[0u8; 1000]);
    assert_eq!(c.stats().too_large, 1);
    assert!(matches!(
        c.lookup(now, wall, &key("huge"), 0),
        Lookup::Execute(_)
    ));
}

#[test]
fn memory_entries_expire() {
    let (t0, wall) = (Instant::now(), SystemTime::now());
    let mut c: Cache<u32> = Cache::open(&mem(1 << 20, Duration::from_secs(10)), wall).unwrap();
    fill(&mut c, t0, wall, "a", 1, b"r");
    assert!(matches!(
        c.lookup(t0 + Duration::from_millis(9999), wall, &key("a"), 0),
        Lookup::Hit(_)
    ));
    assert!(matches!(
        c.lookup(t0 + Duration::from_secs(10), wall, &key("a"), 0),
        Lookup::Execute(_)
    ));
    assert_eq!((c.stats().expired, c.stats().memory_entries), (1, 0));
}

fn disk(dir: &TempDir, memory: u64, disk_max: u64) -> CacheConfig {
    CacheConfig {
        max_bytes: memory,
        ttl: Duration::from_secs(600),
        disk: Some(DiskCacheConfig {
            dir: dir.0.clone(),
            max_bytes: disk_max,
        }),
    }
}

#[test]
fn disk_tier_survives_a_new_cache() {
    let dir = TempDir::new("survives");
    let (now, wall) = (Instant::now(), SystemTime::now());
    let cfg = disk(&dir, 1 << 20, 1 << 20);
    {
        let mut c: Cache<u32> = Cache::open(&cfg, wall).unwrap();
        fill(&mut c, now, wall, "a", 1, b"result a");
        assert_eq!((c.stats().disk_stored, c.stats().disk_files), (1, 1));
    }
    let file = dir.0.join(format!("{}.amp-cache", key("a").hex()));
    assert!(file.is_file(), "named by the key's hash");
    // No temporary left behind.
    let names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let mut c: Cache<u32> = Cache::open(&cfg, wall).unwrap();
    assert_eq!(c.stats().disk_files, 1);
    assert_eq!(
        c.lookup(now, wall, &key("a"), 0),
        Lookup::Hit(b"result a".to_vec())
    );
    assert_eq!((c.stats().disk_hits, c.stats().hits), (1, 0));
    // Promoted to memory: the next hit does not read the disk.
    assert_eq!(
        c.lookup(now, wall, &key("a"), 0),
        Lookup::Hit(b"result a".to_vec())
    );
    assert_eq!((c.stats().disk_hits, c.stats().hits), (1, 1));
    // Expired by wall time when reopened later.
    let later = wall + Duration::from_secs(601);
    let c2: Cache<u32> = Cache::open(&cfg, later).unwrap();
    assert_eq!((c2.stats().disk_files, c2.stats().expired), (0, 1));
    assert!(!file.exists());
}

#[test]
fn disk_tier_evicts_oldest_and_refuses_damage() {
    let dir = TempDir::new("evicts");
    let (now, wall) = (Instant::now(), SystemTime::now());
    // Each file: 64-byte header + 100 bytes. Room for three.
    let cfg = disk(&dir, 0, 3 * 164);
    let mut c: Cache<u32> = Cache::open(&cfg, wall).unwrap();
    for (i, p) in ["a", "b", "c", "d"].iter().enumerate() {
        let w = wall + Duration::from_secs(i as u64);
        fill(&mut c, now, w, p, i as u64 + 1, &[i as u8; 100]);
    }
    let s = c.stats();
    assert_eq!(
        (s.disk_files, s.disk_bytes, s.disk_evicted),
        (3, 3 * 164, 1)
    );
    assert_eq!(s.memory_entries, 0, "max_bytes = 0: no memory tier");
    let w = wall + Duration::from_secs(10);
    assert!(
        matches!(c.lookup(now, w, &key("a"), 0), Lookup::Execute(_)),
        "oldest evicted"
    );
    c.start_failed(&key("a"));
    assert_eq!(c.lookup(now, w, &key("d"), 0), Lookup::Hit(vec![3u8; 100]));
    // A damaged file is a miss, counted, and removed.
    let file = dir.0.join(format!("{}.amp-cache", key("b").hex()));
    std::fs::write(&file, b"AMPCACHE garbage").unwrap();
    assert!(matches!(c.lookup(now, w, &key("b"), 0), Lookup::Execute(_)));
    assert_eq!(c.stats().disk_errors, 1);
    assert!(!file.exists());
    c.start_failed(&key("b"));
    // Leftover temporaries and damaged files are cleaned up at open.
    std::fs::write(dir.0.join(".deadbeef.1.1.tmp"), b"partial").unwrap();
    std::fs::write(
        dir.0.join(format!("{}.amp-cache", key("z").hex())),
        b"short",
    )
    .unwrap();
    let c2: Cache<u32> = Cache::open(&cfg, w).unwrap();
    assert_eq!(c2.stats().disk_files, 2, "c and d");
    assert_eq!(c2.stats().disk_errors, 1);
    assert!(!dir.0.join(".deadbeef.1.1.tmp").exists());
    // clear() empties both tiers.
    let mut c3 = c2;
    c3.clear();
    assert_eq!((c3.stats().disk_files, c3.stats().disk_bytes), (0, 0));
    assert!(std::fs::read_dir(&dir.0).unwrap().next().is_none());
}

#[test]
fn clear_drops_memory_but_not_running_tasks() {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let mut c: Cache<u32> = Cache::open(&CacheConfig::default(), wall).unwrap();
    fill(&mut c, now, wall, "a", 1, b"r");
    let Lookup::Execute(k) = c.lookup(now, wall, &key("b"), 1) else {
        panic!()
    };
    c.started(k, TaskId(2));
    c.clear();
    assert_eq!(c.stats().memory_entries, 0);
    assert!(matches!(
        c.lookup(now, wall, &key("a"), 0),
        Lookup::Execute(_)
    ));
    assert_eq!(c.lookup(now, wall, &key("b"), 2), Lookup::Joined);
}

#[test]
fn open_fails_on_an_unusable_directory() {
    let dir = TempDir::new("notadir");
    std::fs::write(&dir.0, b"a file").unwrap();
    let e = Cache::<u32>::open(&disk(&dir, 0, 1 << 20), SystemTime::now()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("cache directory {}: ", dir.0.display())),
        "{e}"
    );
    let _ = std::fs::remove_file(&dir.0);
}
