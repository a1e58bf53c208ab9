//! Rings of a [`Segment`], wired to doorbells: the supervisor's end and the attached process's end.

use std::sync::Arc;

use crate::ring::{Consumer, Producer, RingError, RingMem};
use crate::segment::{RingSide, Segment};
use crate::signal::{Doorbell, Receiver, Sender};

fn ring_mem(seg: &Arc<Segment>, side: RingSide) -> Result<RingMem, RingError> {
    let raw = seg.ring_raw(side);
    let owner: Arc<dyn Send + Sync> = Arc::clone(seg) as Arc<dyn Send + Sync>;
    // SAFETY: `ring_raw` returns pointers into the segment's mapping, valid while the `Segment`
    // lives; `owner` keeps it alive for as long as the ring does. The segment's layout was
    // validated on create/open, so the header is a RingHeader and the data region has
    // `capacity` bytes, 128-aligned. Each side builds one producer and one consumer per ring.
    unsafe { RingMem::new(raw.header, raw.data, raw.capacity, raw.max_record, owner) }
        .map_err(RingError::Layout)
}

/// The producer of `side`'s ring.
///
/// # Errors
/// [`RingError::Corrupt`] if the indices found in the segment are invalid.
pub fn producer(seg: &Arc<Segment>, side: RingSide) -> Result<Producer, RingError> {
    Producer::new(ring_mem(seg, side)?)
}

/// The consumer of `side`'s ring.
///
/// # Errors
/// [`RingError::Corrupt`] if the indices found in the segment are invalid.
pub fn consumer(seg: &Arc<Segment>, side: RingSide) -> Result<Consumer, RingError> {
    Consumer::new(ring_mem(seg, side)?)
}

/// The supervisor's end of a segment: sends tasks, receives completions.
#[derive(Debug)]
pub struct SupervisorEnd {
    /// Producer of the tasks ring, ringing the attached process's tasks doorbell.
    pub tasks: Sender,
    /// Consumer of the completions ring, waiting on the completions doorbell.
    pub completions: Receiver,
}

impl SupervisorEnd {
    /// Wires the supervisor's end. `tasks_bell` is the doorbell the attached process waits on;
    /// `completions_bell` the one the supervisor waits on.
    ///
    /// # Errors
    /// [`RingError::Corrupt`] for invalid indices.
    pub fn new(
        seg: &Arc<Segment>,
        tasks_bell: Doorbell,
        completions_bell: Doorbell,
    ) -> Result<Self, RingError> {
        Ok(Self {
            tasks: Sender::new(producer(seg, RingSide::Tasks)?, tasks_bell),
            completions: Receiver::new(consumer(seg, RingSide::Completions)?, completions_bell),
        })
    }
}

/// The attached process's end: receives tasks, sends completions.
#[derive(Debug)]
pub struct PeerEnd {
    /// Consumer of the tasks ring.
    pub tasks: Receiver,
    /// Producer of the completions ring.
    pub completions: Sender,
}

impl PeerEnd {
    /// Wires the attached process's end. `tasks_bell` is the doorbell it waits on;
    /// `completions_bell` the one it rings.
    ///
    /// # Errors
    /// [`RingError::Corrupt`] for invalid indices.
    pub fn new(
        seg: &Arc<Segment>,
        tasks_bell: Doorbell,
        completions_bell: Doorbell,
    ) -> Result<Self, RingError> {
        Ok(Self {
            tasks: Receiver::new(consumer(seg, RingSide::Tasks)?, tasks_bell),
            completions: Sender::new(producer(seg, RingSide::Completions)?, completions_bell),
        })
    }
}
