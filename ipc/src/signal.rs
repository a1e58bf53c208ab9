//! Eventfd signalling around the rings: a consumer that runs dry spins for a bounded window,
//! then publishes its sleeping flag and blocks on its eventfd; the producer writes the eventfd
//! only when that flag is set (see the handshake in [`crate::ring`]).
//!
//! Under sustained load the consumer never sleeps, so no syscall is made per message. A blocking
//! wakeup costs ~60 µs across cores on this machine class versus ~0.1–0.5 µs for a spinning
//! consumer (`shared/MEASUREMENTS.md`), which is why the spin window exists.
//!
//! The blocking side works both for a plain thread ([`Receiver::wait`]) and for a `mio` loop:
//! register [`Receiver::fd`] for readability, call [`Receiver::prepare_sleep`] before polling and
//! [`Receiver::finish_sleep`] after.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::ring::{Consumer, Producer, Record, Reservation, RingError, SleepBarrier};

/// Default spin window of a consumer that ran dry, in ring checks (~1000 `PAUSE`s ≈ 25 µs on
/// Zen 4: long enough to cover a prompt reply, short enough not to burn a core when idle).
pub const DEFAULT_SPIN: u32 = 1000;

/// A non-blocking, close-on-exec eventfd used as a doorbell.
#[derive(Debug)]
pub struct Doorbell {
    fd: EventFd,
}

impl Doorbell {
    /// Creates a new doorbell (`EFD_NONBLOCK | EFD_CLOEXEC`).
    ///
    /// # Errors
    /// The `eventfd(2)` error (e.g. `EMFILE`).
    pub fn new() -> io::Result<Self> {
        let fd = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        Ok(Self { fd })
    }

    /// Wraps an eventfd received from elsewhere (inherited at spawn, or passed over a socket).
    /// The fd is switched to non-blocking mode.
    ///
    /// # Errors
    /// When the fd's flags cannot be read or set.
    pub fn from_owned(fd: OwnedFd) -> io::Result<Self> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // SAFETY: the caller hands over ownership of `fd`; amp only ever passes eventfds here
        // (created by `Doorbell::new` on the other side). Were it another kind of fd, reads and
        // writes of 8 bytes would fail with an error, not cause undefined behaviour.
        let fd = unsafe { EventFd::from_owned_fd(fd) };
        Ok(Self { fd })
    }

    /// Rings: adds 1 to the counter. A saturated counter (`EAGAIN`) already means "wake up".
    ///
    /// # Errors
    /// Any error but `EAGAIN` from `write(2)`.
    pub fn ring(&self) -> io::Result<()> {
        match self.fd.write(1) {
            Ok(_) | Err(Errno::EAGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Resets the counter; returns how many rings it held (0 if none).
    ///
    /// # Errors
    /// Any error but `EAGAIN` from `read(2)`.
    pub fn drain(&self) -> io::Result<u64> {
        match self.fd.read() {
            Ok(n) => Ok(n),
            Err(Errno::EAGAIN) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Blocks until the doorbell rings or `timeout` passes (`None`: forever); drains it.
    /// Returns whether it rang.
    ///
    /// # Errors
    /// `poll(2)`/`read(2)` errors other than `EINTR` (an interrupted wait returns `Ok(false)`).
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let t = match timeout {
            None => PollTimeout::NONE,
            Some(d) => PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX),
        };
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, t) {
            Ok(0) | Err(Errno::EINTR) => Ok(false),
            Ok(_) => Ok(self.drain()? > 0),
            Err(e) => Err(e.into()),
        }
    }

    /// Duplicates the underlying fd (to hand it to another process).
    ///
    /// # Errors
    /// `dup(2)` errors.
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.as_fd().try_clone_to_owned()
    }
}

impl AsFd for Doorbell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Doorbell {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_fd().as_raw_fd()
    }
}

/// Error of a blocking send.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The ring refused the record (too large, bad tag, corrupt peer, or still full at the
    /// deadline — `RingError::Full`).
    #[error(transparent)]
    Ring(#[from] RingError),
    /// Writing the peer's doorbell failed.
    #[error("waking the consumer failed: {0}")]
    Wake(#[from] io::Error),
}

/// A producer with the consumer's doorbell: publishing wakes the consumer when it sleeps.
#[derive(Debug)]
pub struct Sender {
    producer: Producer,
    peer: Doorbell,
}

impl Sender {
    /// Pairs a producer with the doorbell its consumer waits on.
    #[must_use]
    pub fn new(producer: Producer, peer: Doorbell) -> Self {
        Self { producer, peer }
    }

    /// The underlying producer (for stats and capacity).
    #[must_use]
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Reserves a record in place (see [`Producer::reserve`]); commit it, then [`flush`](Self::flush).
    ///
    /// # Errors
    /// As [`Producer::reserve`]. After `Full`, call [`flush`](Self::flush) before waiting.
    pub fn reserve(&mut self, len: usize, tag: u16) -> Result<Reservation<'_>, RingError> {
        self.producer.reserve(len, tag)
    }

    /// Copies a record in (not yet published). See [`Producer::push`].
    ///
    /// # Errors
    /// As [`Producer::push`].
    pub fn push(&mut self, tag: u16, bytes: &[u8]) -> Result<(), RingError> {
        self.producer.push(tag, bytes)
    }

    /// Publishes what was committed and rings the consumer's doorbell if it sleeps.
    ///
    /// # Errors
    /// The doorbell's write error.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.producer.publish() {
            self.peer.ring()?;
        }
        Ok(())
    }

    /// Pushes a record, waiting (spin, then yield) for space until `deadline`; publishes it.
    ///
    /// # Errors
    /// [`SendError::Ring`] with `Full` if there was still no room at the deadline, or the ring's
    /// other errors; [`SendError::Wake`] if the doorbell could not be written.
    pub fn send_until(
        &mut self,
        tag: u16,
        bytes: &[u8],
        deadline: Instant,
    ) -> Result<(), SendError> {
        let mut spins = 0u32;
        loop {
            match self.producer.push(tag, bytes) {
                Ok(()) => return Ok(self.flush()?),
                Err(RingError::Full { .. }) if Instant::now() < deadline => {
                    self.flush()?;
                    spins = spins.saturating_add(1);
                    if spins < 64 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
                Err(e) => {
                    self.flush()?;
                    return Err(e.into());
                }
            }
        }
    }
}

/// A consumer with its own doorbell: waits by spinning, then sleeping on the eventfd.
#[derive(Debug)]
pub struct Receiver {
    consumer: Consumer,
    bell: Doorbell,
    spin: u32,
}

impl Receiver {
    /// Pairs a consumer with the doorbell its producer rings.
    #[must_use]
    pub fn new(consumer: Consumer, bell: Doorbell) -> Self {
        Self {
            consumer,
            bell,
            spin: DEFAULT_SPIN,
        }
    }

    /// Sets the spin window (ring checks before sleeping; 0 = sleep at once).
    pub fn set_spin(&mut self, spin: u32) {
        self.spin = spin;
    }

    /// The underlying consumer.
    pub fn consumer(&mut self) -> &mut Consumer {
        &mut self.consumer
    }

    /// Reads the next record, if any (see [`Consumer::read`]).
    ///
    /// # Errors
    /// [`RingError::Corrupt`].
    pub fn read(&mut self) -> Result<Option<Record<'_>>, RingError> {
        self.consumer.read()
    }

    /// Releases consumed space (see [`Consumer::release`]).
    pub fn release(&mut self) {
        self.consumer.release();
    }

    /// Waits until a record is available or `timeout` passes (`None`: forever). Spins for the
    /// spin window first, then sleeps on the doorbell. Returns whether data is available.
    ///
    /// # Errors
    /// [`WaitError::Ring`] for a corrupt ring, [`WaitError::Io`] for a failed poll.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<bool, WaitError> {
        for _ in 0..self.spin {
            if self.consumer.has_data()? {
                return Ok(true);
            }
            std::hint::spin_loop();
        }
        if self.consumer.prepare_sleep()? {
            return Ok(true);
        }
        let woke = self.bell.wait(timeout);
        self.consumer.finish_sleep();
        woke?;
        Ok(self.consumer.has_data()?)
    }

    /// For event loops: publishes the sleeping flag and re-checks (see
    /// [`Consumer::prepare_sleep`]). `Ok(true)`: data arrived, do not block.
    ///
    /// # Errors
    /// [`RingError::Corrupt`].
    pub fn prepare_sleep(&mut self) -> Result<bool, RingError> {
        self.consumer.prepare_sleep()
    }

    /// For event loops with several rings: the first step of [`prepare_sleep`](Self::prepare_sleep)
    /// ([`Consumer::announce_sleep`]). After it on every ring: one
    /// [`crate::ring::sleep_barrier`], then [`recheck_sleep`](Self::recheck_sleep) on each.
    /// `true`: data is known, do not block.
    pub fn announce_sleep(&mut self) -> bool {
        self.consumer.announce_sleep()
    }

    /// The last step of [`prepare_sleep`](Self::prepare_sleep) ([`Consumer::recheck_sleep`]).
    /// `Ok(true)`: data arrived, do not block.
    ///
    /// # Errors
    /// [`RingError::Corrupt`].
    pub fn recheck_sleep(&mut self, barrier: &SleepBarrier) -> Result<bool, RingError> {
        self.consumer.recheck_sleep(barrier)
    }

    /// For event loops that announced a sleep and then decided not to block: clears the
    /// sleeping flag (the doorbell is not drained).
    pub fn cancel_sleep(&mut self) {
        self.consumer.finish_sleep();
    }

    /// For event loops: after the poll returned, clears the sleeping flag and drains the
    /// doorbell.
    ///
    /// # Errors
    /// The doorbell's read error.
    pub fn finish_sleep(&mut self) -> io::Result<()> {
        self.consumer.finish_sleep();
        self.bell.drain().map(|_| ())
    }

    /// A second handle on this receiver's doorbell (another thread can ring it to wake a
    /// blocked [`wait`](Self::wait)).
    ///
    /// # Errors
    /// `dup(2)` errors.
    pub fn bell_clone(&self) -> io::Result<Doorbell> {
        Doorbell::from_owned(self.bell.try_clone_fd()?)
    }

    /// The doorbell fd to register with an event loop (readable when rung).
    #[must_use]
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.bell.as_fd()
    }
}

/// Error of [`Receiver::wait`].
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The ring is corrupt.
    #[error(transparent)]
    Ring(#[from] RingError),
    /// Polling the doorbell failed.
    #[error("waiting on the doorbell failed: {0}")]
    Io(#[from] io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring;

    #[test]
    fn doorbell_rings_and_drains() {
        let d = Doorbell::new().unwrap();
        assert!(!d.wait(Some(Duration::from_millis(1))).unwrap());
        d.ring().unwrap();
        d.ring().unwrap();
        assert!(d.wait(Some(Duration::from_secs(5))).unwrap());
        assert_eq!(d.drain().unwrap(), 0);
    }

    /// A consumer thread that sleeps between bursts is woken for every burst, and no burst is
    /// left behind a sleeping consumer (the test would hang until its deadline otherwise).
    #[test]
    fn sleeping_consumer_is_woken() {
        let (p, c) = ring::local(4096, 256).unwrap();
        let bell = Doorbell::new().unwrap();
        let peer = Doorbell::from_owned(bell.try_clone_fd().unwrap()).unwrap();
        let mut tx = Sender::new(p, peer);
        let mut rx = Receiver::new(c, bell);
        rx.set_spin(0);
        let n = 2000u32;
        let t = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut got = 0u32;
            while got < n {
                assert!(Instant::now() < deadline, "consumer starved at {got}");
                if !rx.wait(Some(Duration::from_secs(10))).unwrap() {
                    continue;
                }
                while let Some(r) = rx.read().unwrap() {
                    assert_eq!(r.data(), &got.to_le_bytes());
                    got += 1;
                }
            }
            got
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        for i in 0..n {
            tx.send_until(1, &i.to_le_bytes(), deadline).unwrap();
            if i % 100 == 0 {
                std::thread::yield_now();
            }
        }
        assert_eq!(t.join().unwrap(), n);
    }
}
