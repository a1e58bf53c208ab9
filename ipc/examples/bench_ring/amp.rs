//! The amp ring, cross-process through a real segment: the parent creates it, the forked child
//! maps it again by name (`Segment::open`), as an attached process does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use amp_ipc::link::{self, PeerEnd, SupervisorEnd};
use amp_ipc::ring::{Producer, RingError};
use amp_ipc::segment::{RingSide, Segment, SegmentConfig};
use amp_ipc::signal::Doorbell;

use crate::common::{
    busy_until, check, ns, stamp, stamp_template, template, Clock, Fill, Latency, Rate, Res, Tput,
};
use crate::proc::{run_pair, Cpus};

/// Prefix of the benchmark's segment names.
const PREFIX: &str = "amp-bench";

/// Ring bytes used for records of `size` bytes: 256 KiB for 64 B, 1 MiB for 1 KiB (the bare ring
/// gets the same number of bytes).
pub fn ring_bytes(size: usize) -> u64 {
    (size as u64 * 4096).clamp(64 << 10, 1 << 20)
}

/// A segment whose completions ring (child → parent) has `capacity` bytes and whose tasks ring
/// (parent → child) has `tasks` bytes.
fn segment(tasks: u64, capacity: u64, max_record: u64) -> Res<Arc<Segment>> {
    let cfg = SegmentConfig {
        tasks_capacity: tasks,
        tasks_max_record: max_record,
        completions_capacity: capacity,
        completions_max_record: max_record,
    };
    Ok(Arc::new(Segment::create(PREFIX, &cfg, 1)?))
}

/// Runs a pair over `seg` and unlinks it afterwards, whatever the outcome.
fn with_segment<T>(seg: &Arc<Segment>, run: impl FnOnce() -> Res<T>) -> Res<T> {
    let result = run();
    let unlinked = seg.unlink();
    let value = result?;
    unlinked?;
    Ok(value)
}

/// How the amp ring's producer writes in a throughput run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// [`Producer::write_many`], `batch` records per call (one publish per call).
    Many,
    /// `reserve`/`commit` per record, `publish` every `batch`.
    PerRecord,
}

/// What a throughput run's record size counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Footprint {
    /// The payload: each record is the size plus its 8-byte header.
    Payload,
    /// The whole record, header included.
    Record,
}

/// One-way throughput: the child produces on the completions ring, this process consumes.
///
/// `footprint`: [`Footprint::Payload`] — `t.size` payload bytes per record (the ring moves
/// `t.size + 8`); [`Footprint::Record`] — `t.size` bytes per record, header included (payload
/// `t.size - 8`), the same bytes per message as the bare ring's `t.size`-byte slots.
pub fn throughput(cpus: &Cpus, t: Tput, writer: Writer, footprint: Footprint) -> Res<Rate> {
    let ring = ring_bytes(t.size);
    let t = match footprint {
        Footprint::Payload => t,
        Footprint::Record => Tput {
            size: t.size - amp_shm_layout::RECORD_HEADER_SIZE,
            ..t
        },
    };
    let seg = segment(4096, ring, t.size as u64)?;
    with_segment(&seg, || {
        run_pair(
            cpus,
            || {
                let seg = Arc::new(Segment::open(seg.name())?);
                let mut producer = link::producer(&seg, RingSide::Completions)?;
                match (t.fill, writer == Writer::PerRecord) {
                    (Fill::Words, false) => produce(&mut producer, t, stamp),
                    (Fill::Words, true) => produce_reserve(&mut producer, t),
                    (Fill::Memcpy, _) => {
                        let tmpl = template(t.size);
                        produce(&mut producer, t, |buf, seq| stamp_template(buf, &tmpl, seq))
                    }
                }
            },
            || {
                let mut c = link::consumer(&seg, RingSide::Completions)?;
                let mut clock = Clock::default();
                let mut seq = 0;
                let mut ok = true;
                while seq < t.count {
                    // Everything published, `batch` records at most (the bare ring releases every
                    // `batch` too); `read_batch` releases before returning.
                    let n = c.read_batch(t.batch, |rec| {
                        ok = t.fill.check(rec.data(), seq);
                        seq += u64::from(ok);
                        ok
                    })?;
                    if !ok {
                        return Err(format!("amp ring: record {seq} is wrong").into());
                    }
                    if n == 0 {
                        std::hint::spin_loop();
                    } else {
                        clock.mark(seq);
                    }
                }
                clock.finish(seq)
            },
        )
    })
}

/// The producer's loop: `t.count` records of `t.size` bytes, `t.batch` per
/// [`Producer::write_many`] (which publishes once per call), each filled by `fill(buf, seq)`.
fn produce(p: &mut Producer, t: Tput, fill: impl Fn(&mut [u8], u64)) -> Res<()> {
    let (count, batch) = (t.count, t.batch as u64);
    let mut seq = 0;
    while seq < count {
        let n = batch.min(count - seq) as usize;
        let w = p.write_many(n, t.size, 1, |i, buf| {
            fill(buf, seq + i as u64);
            buf.len()
        })?;
        // The consumer never sleeps in this run, so no wakeup is ever owed (`w.wake`).
        seq += w.records as u64;
        if w.records < n {
            // Full: wait for the consumer.
            std::hint::spin_loop();
        }
    }
    Ok(())
}

/// The producer's loop through the per-record API: `reserve`, fill, `commit`, and `publish`
/// every `t.batch` records.
fn produce_reserve(p: &mut Producer, t: Tput) -> Res<()> {
    let batch = t.batch as u64;
    // Records committed since the last publish (the bare ring counts the same way; no division
    // per record).
    let mut pending = 0;
    for seq in 0..t.count {
        loop {
            match p.reserve(t.size, 1) {
                Ok(mut r) => {
                    stamp(&mut r, seq);
                    r.commit();
                    break;
                }
                Err(RingError::Full { .. }) => std::hint::spin_loop(),
                Err(e) => return Err(e.into()),
            }
        }
        pending += 1;
        if pending == batch {
            // The consumer never sleeps in this run, so no wakeup is ever owed.
            let _ = p.publish();
            pending = 0;
        }
    }
    let _ = p.publish();
    Ok(())
}

/// Round trip of a 64-byte record, both sides spinning on their rings (no doorbells).
pub fn rtt_hot(cpus: &Cpus, n: usize, warmup: usize) -> Res<Latency> {
    const SIZE: usize = 64;
    let seg = segment(64 << 10, 64 << 10, SIZE as u64)?;
    let total = (n + warmup) as u64;
    with_segment(&seg, || {
        run_pair(
            cpus,
            || {
                let seg = Arc::new(Segment::open(seg.name())?);
                let mut rx = link::consumer(&seg, RingSide::Tasks)?;
                let mut tx = link::producer(&seg, RingSide::Completions)?;
                for _ in 0..total {
                    loop {
                        if let Some(rec) = rx.read()? {
                            tx.push(1, rec.data())?;
                            break;
                        }
                        std::hint::spin_loop();
                    }
                    // Nobody sleeps in this run.
                    let _ = tx.publish();
                }
                Ok(())
            },
            || {
                let mut tx = link::producer(&seg, RingSide::Tasks)?;
                let mut rx = link::consumer(&seg, RingSide::Completions)?;
                let mut samples = Vec::with_capacity(n);
                let mut start = Instant::now();
                for seq in 0..total {
                    let mut r = tx.reserve(SIZE, 1)?;
                    stamp(&mut r, seq);
                    r.commit();
                    let _ = tx.publish();
                    let ok = loop {
                        if let Some(rec) = rx.read()? {
                            break check(rec.data(), seq);
                        }
                        std::hint::spin_loop();
                    };
                    let now = Instant::now();
                    if !ok {
                        return Err(format!("amp ring echo: reply {seq} is wrong").into());
                    }
                    if seq >= warmup as u64 {
                        samples.push(ns(now - start));
                    }
                    start = now;
                }
                Ok(Latency::new(samples, None))
            },
        )
    })
}

/// Round trip of a 64-byte record through `Sender`/`Receiver` with eventfd doorbells.
///
/// `gap`: idle time (busy-wait of the pinger, not measured) before each ping, so a responder with
/// a spin window falls asleep. `spin`: both sides' spin window (`None`: the default).
/// The result reports how many doorbell wakeups the pinger sent per round trip.
pub fn rtt_woken(
    cpus: &Cpus,
    n: usize,
    warmup: usize,
    gap: Option<Duration>,
    spin: Option<u32>,
) -> Res<Latency> {
    const SIZE: usize = 64;
    let seg = segment(64 << 10, 64 << 10, SIZE as u64)?;
    let tasks_bell = Doorbell::new()?;
    let completions_bell = Doorbell::new()?;
    let child_tasks = tasks_bell.try_clone_fd()?;
    let child_completions = completions_bell.try_clone_fd()?;
    let total = (n + warmup) as u64;
    with_segment(&seg, || {
        run_pair(
            cpus,
            || {
                let seg = Arc::new(Segment::open(seg.name())?);
                let mut end = PeerEnd::new(
                    &seg,
                    Doorbell::from_owned(child_tasks)?,
                    Doorbell::from_owned(child_completions)?,
                )?;
                if let Some(s) = spin {
                    end.tasks.set_spin(s);
                }
                for _ in 0..total {
                    loop {
                        if let Some(rec) = end.tasks.read()? {
                            end.completions.push(1, rec.data())?;
                            break;
                        }
                        end.tasks.wait(None)?;
                    }
                    end.completions.flush()?;
                }
                Ok(())
            },
            || {
                let mut end = SupervisorEnd::new(&seg, tasks_bell, completions_bell)?;
                if let Some(s) = spin {
                    end.completions.set_spin(s);
                }
                let mut samples = Vec::with_capacity(n);
                let mut last = Instant::now();
                let mut wakeups_at_warm = 0;
                for seq in 0..total {
                    if seq == warmup as u64 {
                        wakeups_at_warm = end.tasks.producer().stats().wakeups;
                    }
                    let start = match gap {
                        Some(g) => busy_until(last + g),
                        None => last,
                    };
                    let mut r = end.tasks.reserve(SIZE, 1)?;
                    stamp(&mut r, seq);
                    r.commit();
                    end.tasks.flush()?;
                    let ok = loop {
                        if let Some(rec) = end.completions.read()? {
                            break check(rec.data(), seq);
                        }
                        end.completions.wait(None)?;
                    };
                    let now = Instant::now();
                    if !ok {
                        return Err(
                            format!("amp ring (doorbells) echo: reply {seq} is wrong").into()
                        );
                    }
                    if seq >= warmup as u64 {
                        samples.push(ns(now - start));
                    }
                    last = now;
                }
                let wakeups = end.tasks.producer().stats().wakeups - wakeups_at_warm;
                Ok(Latency::new(samples, Some(wakeups as f64 / n as f64)))
            },
        )
    })
}
