//! Kernel-mediated baselines measured in the same run: pipe, Unix stream socket, eventfd, and
//! ipc-channel. All of them block in the kernel when there is nothing to read.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use ipc_channel::ipc::{self, IpcBytesReceiver, IpcBytesSender, IpcOneShotServer, IpcSender};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::common::{check, ns, stamp, Clock, Latency, Rate, Res, Tput};
use crate::proc::{run_pair, Cpus};

/// A byte stream between the two processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// `pipe(2)`, default 64 KiB buffer.
    Pipe,
    /// `socketpair(AF_UNIX, SOCK_STREAM)`.
    Unix,
}

/// Both ends of a one-way stream: (reader, writer).
type Ends = (Box<dyn Read>, Box<dyn Write>);

/// A one-way stream from this process to the child (or back).
fn stream_pair(kind: Stream) -> Res<Ends> {
    Ok(match kind {
        Stream::Pipe => {
            let (r, w) = nix::unistd::pipe()?;
            (Box::new(File::from(r)), Box::new(File::from(w)))
        }
        Stream::Unix => {
            let (a, b) = UnixStream::pair()?;
            (Box::new(a), Box::new(b))
        }
    })
}

/// Writes `count` stamped records of `size` bytes, `batch` records per `write(2)`.
fn write_records(w: &mut dyn Write, t: Tput) -> Res<()> {
    let mut buf = vec![0u8; t.batch * t.size];
    let mut seq = 0;
    while seq < t.count {
        let k = (t.count - seq).min(t.batch as u64) as usize;
        for rec in buf[..k * t.size].chunks_exact_mut(t.size) {
            stamp(rec, seq);
            seq += 1;
        }
        w.write_all(&buf[..k * t.size])?;
    }
    Ok(())
}

/// One-way throughput over a stream: the child writes, this process reads (up to 256 KiB per
/// `read(2)`) and checks every record.
pub fn stream_throughput(cpus: &Cpus, kind: Stream, t: Tput) -> Res<Rate> {
    let (mut r, mut w) = stream_pair(kind)?;
    run_pair(
        cpus,
        move || write_records(&mut *w, t),
        move || {
            let mut buf = vec![0u8; 256 << 10];
            let mut filled = 0;
            let mut seq = 0;
            let mut clock = Clock::default();
            while seq < t.count {
                let got = r.read(&mut buf[filled..])?;
                if got == 0 {
                    return Err(format!("{kind:?}: end of stream at record {seq}").into());
                }
                filled += got;
                let whole = filled / t.size * t.size;
                for rec in buf[..whole].chunks_exact(t.size) {
                    if !check(rec, seq) {
                        return Err(format!("{kind:?}: record {seq} is wrong").into());
                    }
                    seq += 1;
                }
                buf.copy_within(whole..filled, 0);
                filled -= whole;
                clock.mark(seq);
            }
            clock.finish(seq)
        },
    )
}

/// Round trip of a 64-byte message over two streams (pipes) or one socket pair, both sides
/// blocking in `read(2)`.
pub fn stream_rtt(cpus: &Cpus, kind: Stream, n: usize, warmup: usize) -> Res<Latency> {
    const SIZE: usize = 64;
    let ((mut ping_r, mut ping_w), (mut pong_r, mut pong_w)): (Ends, Ends) = match kind {
        Stream::Pipe => (stream_pair(kind)?, stream_pair(kind)?),
        Stream::Unix => {
            let (a, b) = UnixStream::pair()?;
            let (a2, b2) = (a.try_clone()?, b.try_clone()?);
            // Parent writes and reads on `a`, the child on `b`.
            ((Box::new(b), Box::new(a)), (Box::new(a2), Box::new(b2)))
        }
    };
    let total = (n + warmup) as u64;
    run_pair(
        cpus,
        move || {
            let mut buf = [0u8; SIZE];
            for _ in 0..total {
                ping_r.read_exact(&mut buf)?;
                pong_w.write_all(&buf)?;
            }
            Ok(())
        },
        move || {
            let (mut out, mut back) = ([0u8; SIZE], [0u8; SIZE]);
            let mut samples = Vec::with_capacity(n);
            let mut start = Instant::now();
            for seq in 0..total {
                stamp(&mut out, seq);
                ping_w.write_all(&out)?;
                pong_r.read_exact(&mut back)?;
                let now = Instant::now();
                if !check(&back, seq) {
                    return Err(format!("{kind:?} echo: reply {seq} is wrong").into());
                }
                if seq >= warmup as u64 {
                    samples.push(ns(now - start));
                }
                start = now;
            }
            Ok(Latency::new(samples, None))
        },
    )
}

/// Round trip over two blocking eventfds (an 8-byte counter each way, no payload).
pub fn eventfd_rtt(cpus: &Cpus, n: usize, warmup: usize) -> Res<Latency> {
    let ping = EventFd::from_flags(EfdFlags::EFD_CLOEXEC)?;
    let pong = EventFd::from_flags(EfdFlags::EFD_CLOEXEC)?;
    let total = (n + warmup) as u64;
    run_pair(
        cpus,
        || {
            for _ in 0..total {
                ping.read()?;
                pong.write(1)?;
            }
            Ok(())
        },
        || {
            let mut samples = Vec::with_capacity(n);
            let mut start = Instant::now();
            for seq in 0..total {
                ping.write(1)?;
                if pong.read()? != 1 {
                    return Err(format!("eventfd: reply {seq} carried a wrong count").into());
                }
                let now = Instant::now();
                if seq >= warmup as u64 {
                    samples.push(ns(now - start));
                }
                start = now;
            }
            Ok(Latency::new(samples, None))
        },
    )
}

/// What the child hands the parent through the one-shot server: the sender of the
/// parent → child channel and the receiver of the child → parent channel.
type Bootstrap = (IpcBytesSender, IpcBytesReceiver);

/// Connects the child to the parent's one-shot server; returns the child's ends
/// (receiver of parent → child, sender of child → parent).
fn ipc_child_connect(name: String) -> Res<(IpcBytesReceiver, IpcBytesSender)> {
    let (to_child_tx, to_child_rx) = ipc::bytes_channel()?;
    let (to_parent_tx, to_parent_rx) = ipc::bytes_channel()?;
    let boot: IpcSender<Bootstrap> = IpcSender::connect(name)?;
    boot.send((to_child_tx, to_parent_rx))?;
    Ok((to_child_rx, to_parent_tx))
}

/// One-way throughput over ipc-channel byte channels: one message per `batch` records.
/// The channels are set up the documented way: the parent's `IpcOneShotServer`, the child
/// connects by name.
pub fn ipc_throughput(cpus: &Cpus, t: Tput) -> Res<Rate> {
    let (server, name) = IpcOneShotServer::<Bootstrap>::new()?;
    run_pair(
        cpus,
        move || {
            let (_to_child, to_parent) = ipc_child_connect(name)?;
            let mut buf = vec![0u8; t.batch * t.size];
            let mut seq = 0;
            while seq < t.count {
                let k = (t.count - seq).min(t.batch as u64) as usize;
                for rec in buf[..k * t.size].chunks_exact_mut(t.size) {
                    stamp(rec, seq);
                    seq += 1;
                }
                to_parent.send(&buf[..k * t.size])?;
            }
            Ok(())
        },
        move || {
            let (_boot, (_to_child, from_child)) = server.accept()?;
            let mut seq = 0;
            let mut clock = Clock::default();
            while seq < t.count {
                let msg = from_child.recv()?;
                if msg.len() % t.size != 0 {
                    return Err(format!("ipc-channel: message of {} bytes", msg.len()).into());
                }
                for rec in msg.chunks_exact(t.size) {
                    if !check(rec, seq) {
                        return Err(format!("ipc-channel: record {seq} is wrong").into());
                    }
                    seq += 1;
                }
                clock.mark(seq);
            }
            clock.finish(seq)
        },
    )
}

/// Round trip of a 64-byte message over ipc-channel byte channels.
pub fn ipc_rtt(cpus: &Cpus, n: usize, warmup: usize) -> Res<Latency> {
    const SIZE: usize = 64;
    let (server, name) = IpcOneShotServer::<Bootstrap>::new()?;
    let total = (n + warmup) as u64;
    run_pair(
        cpus,
        move || {
            let (from_parent, to_parent) = ipc_child_connect(name)?;
            for _ in 0..total {
                let msg = from_parent.recv()?;
                to_parent.send(&msg)?;
            }
            Ok(())
        },
        move || {
            let (_boot, (to_child, from_child)) = server.accept()?;
            let mut out = [0u8; SIZE];
            let mut samples = Vec::with_capacity(n);
            let mut start = Instant::now();
            for seq in 0..total {
                stamp(&mut out, seq);
                to_child.send(&out)?;
                let back = from_child.recv()?;
                let now = Instant::now();
                if !check(&back, seq) {
                    return Err(format!("ipc-channel echo: reply {seq} is wrong").into());
                }
                if seq >= warmup as u64 {
                    samples.push(ns(now - start));
                }
                start = now;
            }
            Ok(Latency::new(samples, None))
        },
    )
}
