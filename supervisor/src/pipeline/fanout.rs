//! Fan-out and fan-in: a parent waiting on N children, completed **exactly once** by its
//! kind's `fan_in` rule and `child_failure` policy.
//!
//! A [`Group`] is a pure state machine. Children are added (a worker emitting subtasks while it
//! runs the parent, or a route with several targets), their results come in one by one in any
//! order, and the parent's own result **seals** the group (no child can be added after it).
//! The group completes when it is sealed and:
//!
//! | `fan_in` | completes with a combined result when | with `child_failure = "fail_parent"` it fails when |
//! |---|---|---|
//! | `all` | every child finished | a child fails (at once, sealed or not) |
//! | `any` | one child succeeded | every child failed |
//! | `{ at_least = N }` | N children succeeded | so many failed that N can no longer succeed |
//!
//! With `child_failure = "continue"` a group never fails because of its children: once every
//! child has finished it completes anyway, failed children marked as such in the combined
//! result. Children still running when the group completes or fails are reported by
//! [`Group::pending`] so the caller can cancel them; their results are ignored afterwards, as
//! are duplicates — a child requeued after a worker crash is just late, and only that child
//! runs again.
//!
//! # The combined result
//! What the parent's submitter receives, little-endian, built by [`encode_combined`] and read
//! back by [`decode_combined`]:
//!
//! ```text
//! u32 own_len | own bytes | u32 count | count × ( u8 status | u32 len | len bytes )
//! ```
//! `own` is the parent's own result (empty for a route fan-out); the children come in the
//! order they were added; `status` is 0 = ok (bytes: its result), 1 = failed (bytes: the UTF-8
//! error message), 2 = cancelled or unfinished (no bytes).
//!
//! ```
//! use amp_supervisor::config::{FailurePolicy, FanIn};
//! use amp_supervisor::pipeline::fanout::{decode_combined, ChildResult, Group, GroupStatus};
//! let mut g = Group::new(FanIn::All, FailurePolicy::FailParent);
//! let (a, b) = (g.add_child().unwrap(), g.add_child().unwrap());
//! assert_eq!(g.child_done(b, Ok(b"B".to_vec())), GroupStatus::Pending);
//! assert_eq!(g.seal(b"own".to_vec()), GroupStatus::Pending);
//! let GroupStatus::Complete(bytes) = g.child_done(a, Ok(b"A".to_vec())) else { panic!() };
//! let combined = decode_combined(&bytes).unwrap();
//! assert_eq!(combined.own, b"own");
//! assert_eq!(combined.children, [ChildResult::Ok(b"A".to_vec()), ChildResult::Ok(b"B".to_vec())]);
//! ```

use crate::config::{FailurePolicy, FanIn};

/// Status byte of a successful child in the combined result.
pub const CHILD_OK: u8 = 0;
/// Status byte of a failed child.
pub const CHILD_FAILED: u8 = 1;
/// Status byte of a child cancelled or unfinished when the parent completed.
pub const CHILD_CANCELLED: u8 = 2;

/// One child's entry in a combined result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildResult {
    /// It succeeded with this result.
    Ok(Vec<u8>),
    /// It failed with this message.
    Failed(String),
    /// It was still running when the parent completed (then cancelled).
    Cancelled,
}

/// A combined result, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Combined {
    /// The parent's own result (empty for a route fan-out).
    pub own: Vec<u8>,
    /// The children, in the order they were added.
    pub children: Vec<ChildResult>,
}

/// Why a combined result could not be decoded or a child not added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FanOutError {
    /// The bytes end early or carry an unknown status: not a combined result.
    #[error("malformed combined result: {0}")]
    Malformed(&'static str),
    /// The parent already finished: a subtask emitted after its parent's completion has
    /// nothing to join; fail it back to its sender.
    #[error("the parent already finished; children can only be added while it runs")]
    Sealed,
}

/// Where a group stands after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupStatus {
    /// Still waiting (for the seal, or for children).
    Pending,
    /// Just completed: the combined result ([`encode_combined`]). Reported once.
    Complete(Vec<u8>),
    /// Just failed: why. Reported once.
    Failed(String),
    /// The event changed nothing: the group had already completed or failed, or the child
    /// had already finished (a duplicate or late result), or the index is unknown.
    Ignored,
}

/// One child slot.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Pending,
    Done(ChildResult),
}

/// A parent and its children (see the [module documentation](self)).
#[derive(Debug, Clone)]
pub struct Group {
    rule: FanIn,
    policy: FailurePolicy,
    own: Option<Vec<u8>>,
    slots: Vec<Slot>,
    ok: usize,
    failed: usize,
    finished: bool,
}

impl Group {
    /// An empty, unsealed group.
    #[must_use]
    pub const fn new(rule: FanIn, policy: FailurePolicy) -> Self {
        Self {
            rule,
            policy,
            own: None,
            slots: Vec::new(),
            ok: 0,
            failed: 0,
            finished: false,
        }
    }

    /// Adds a child; returns its index (0, 1, …).
    ///
    /// # Errors
    /// [`FanOutError::Sealed`] once the parent's own result is in (or the group finished).
    pub fn add_child(&mut self) -> Result<usize, FanOutError> {
        if self.own.is_some() || self.finished {
            return Err(FanOutError::Sealed);
        }
        self.slots.push(Slot::Pending);
        Ok(self.slots.len() - 1)
    }

    /// Children added so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no child was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether the group completed or failed.
    #[must_use]
    pub const fn is_finished(&self) -> bool {
        self.finished
    }

    /// Indices of the children still running: cancel them once the group finished.
    #[must_use]
    pub fn pending(&self) -> Vec<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == Slot::Pending)
            .map(|(i, _)| i)
            .collect()
    }

    /// Child `index` finished: `Ok(result)` or `Err(message)`.
    pub fn child_done(&mut self, index: usize, result: Result<Vec<u8>, String>) -> GroupStatus {
        if self.finished {
            return GroupStatus::Ignored;
        }
        let n = self.slots.len();
        let Some(slot) = self.slots.get_mut(index) else {
            return GroupStatus::Ignored;
        };
        if *slot != Slot::Pending {
            return GroupStatus::Ignored;
        }
        *slot = match result {
            Ok(bytes) => {
                self.ok += 1;
                Slot::Done(ChildResult::Ok(bytes))
            }
            Err(message) => {
                self.failed += 1;
                if self.policy == FailurePolicy::FailParent && self.rule == FanIn::All {
                    self.finished = true;
                    let failed = format!("child {} of {n} failed: {message}", index + 1);
                    *slot = Slot::Done(ChildResult::Failed(message));
                    return GroupStatus::Failed(failed);
                }
                Slot::Done(ChildResult::Failed(message))
            }
        };
        self.evaluate()
    }

    /// The parent's own successful result is in: no more children; completes now if the
    /// children already satisfy the rule.
    pub fn seal(&mut self, own: Vec<u8>) -> GroupStatus {
        if self.finished || self.own.is_some() {
            return GroupStatus::Ignored;
        }
        self.own = Some(own);
        self.evaluate()
    }

    /// The parent itself failed: the group fails with `message` (children are cancelled).
    pub fn parent_failed(&mut self, message: &str) -> GroupStatus {
        if self.finished {
            return GroupStatus::Ignored;
        }
        self.finished = true;
        GroupStatus::Failed(message.to_owned())
    }

    fn evaluate(&mut self) -> GroupStatus {
        let Some(own) = &self.own else {
            return GroupStatus::Pending;
        };
        let n = self.slots.len();
        let needed = match self.rule {
            FanIn::All => n,
            FanIn::Any => 1.min(n),
            FanIn::AtLeast(k) => usize::try_from(k).unwrap_or(usize::MAX),
        };
        let pending = n - self.ok - self.failed;
        let complete = match self.rule {
            FanIn::All => pending == 0,
            FanIn::Any | FanIn::AtLeast(_) => self.ok >= needed,
        };
        if complete || (pending == 0 && self.policy == FailurePolicy::Continue) {
            self.finished = true;
            let children: Vec<ChildResult> = self
                .slots
                .iter()
                .map(|s| match s {
                    Slot::Pending => ChildResult::Cancelled,
                    Slot::Done(r) => r.clone(),
                })
                .collect();
            return GroupStatus::Complete(encode_combined(own, &children));
        }
        if self.policy == FailurePolicy::FailParent && self.ok + pending < needed {
            self.finished = true;
            return GroupStatus::Failed(format!(
                "{} of {n} children failed: fan_in needs {needed} to succeed, and only {} can",
                self.failed,
                self.ok + pending
            ));
        }
        GroupStatus::Pending
    }
}

/// Encodes a combined result (format in the [module documentation](self)).
#[must_use]
pub fn encode_combined(own: &[u8], children: &[ChildResult]) -> Vec<u8> {
    let body: usize = children
        .iter()
        .map(|c| {
            5 + match c {
                ChildResult::Ok(b) => b.len(),
                ChildResult::Failed(m) => m.len(),
                ChildResult::Cancelled => 0,
            }
        })
        .sum();
    let mut out = Vec::with_capacity(8 + own.len() + body);
    push_len(&mut out, own.len());
    out.extend_from_slice(own);
    push_len(&mut out, children.len());
    for c in children {
        let (status, bytes): (u8, &[u8]) = match c {
            ChildResult::Ok(b) => (CHILD_OK, b),
            ChildResult::Failed(m) => (CHILD_FAILED, m.as_bytes()),
            ChildResult::Cancelled => (CHILD_CANCELLED, &[]),
        };
        out.push(status);
        push_len(&mut out, bytes.len());
        out.extend_from_slice(bytes);
    }
    out
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    // Records are bounded by ring sizes (<= 1 GiB), far below u32::MAX.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

/// Decodes a combined result.
///
/// # Errors
/// [`FanOutError::Malformed`] when `bytes` is not a combined result (truncated, unknown
/// status, trailing bytes).
pub fn decode_combined(bytes: &[u8]) -> Result<Combined, FanOutError> {
    let mut rest = bytes;
    let own = take(&mut rest, "own result")?.to_vec();
    let count = read_u32(&mut rest, "child count")? as usize;
    let mut children = Vec::with_capacity(count.min(rest.len() / 5 + 1));
    for _ in 0..count {
        let (&status, tail) = rest
            .split_first()
            .ok_or(FanOutError::Malformed("a child entry is cut short"))?;
        rest = tail;
        let data = take(&mut rest, "child result")?;
        children.push(match status {
            CHILD_OK => ChildResult::Ok(data.to_vec()),
            CHILD_FAILED => ChildResult::Failed(String::from_utf8_lossy(data).into_owned()),
            CHILD_CANCELLED => ChildResult::Cancelled,
            _ => return Err(FanOutError::Malformed("unknown child status")),
        });
    }
    if !rest.is_empty() {
        return Err(FanOutError::Malformed(
            "trailing bytes after the last child",
        ));
    }
    Ok(Combined { own, children })
}

fn read_u32(rest: &mut &[u8], what: &'static str) -> Result<u32, FanOutError> {
    if rest.len() < 4 {
        return Err(FanOutError::Malformed(what));
    }
    let (head, tail) = rest.split_at(4);
    *rest = tail;
    Ok(u32::from_le_bytes([head[0], head[1], head[2], head[3]]))
}

fn take<'a>(rest: &mut &'a [u8], what: &'static str) -> Result<&'a [u8], FanOutError> {
    let n = read_u32(rest, what)? as usize;
    if rest.len() < n {
        return Err(FanOutError::Malformed(what));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}
