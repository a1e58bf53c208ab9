//! A kind's queued tasks: one FIFO per priority class, served by deficit round-robin (DRR).
//!
//! See the [module docs](super) for why DRR and what it guarantees.

use super::TaskId;
use crate::config::ClassConfig;
use serde::Serialize;
use std::collections::VecDeque;

/// A priority class: the index of its `[[class]]` in file order (every kind has the same
/// classes, so one id is valid for every [`KindQueues`] built from the same class list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ClassId(usize);

impl ClassId {
    /// The class at `index` in the class list.
    #[must_use]
    pub const fn new(index: usize) -> Self {
        Self(index)
    }

    /// Its index in the class list.
    #[must_use]
    pub const fn index(self) -> usize {
        self.0
    }
}

/// A submission was refused because the kind already has `queue_limit` tasks queued. The task
/// is handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the kind's queue is full ({limit} tasks queued); retry later, or raise `queue_limit` in \
     the kind's [kinds.NAME] table"
)]
pub struct QueueFull {
    /// The refused task.
    pub id: TaskId,
    /// Its class.
    pub class: ClassId,
    /// The limit in force.
    pub limit: u64,
}

/// The class list given to [`KindQueues::new`] cannot be scheduled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassesError {
    /// No class at all: no task could be queued.
    #[error("no priority classes: declare at least one [[class]] (or none, for the defaults)")]
    Empty,
    /// A class with weight 0 would never be served.
    #[error("class {name:?} has weight 0; give it a weight of at least 1")]
    ZeroWeight {
        /// The class.
        name: String,
    },
    /// Two classes share a name.
    #[error("class {name:?} is declared twice; class names must be unique")]
    Duplicate {
        /// The repeated name.
        name: String,
    },
}

#[derive(Debug, Clone)]
struct ClassQueue {
    name: String,
    /// DRR quantum: tasks this class may take per round.
    weight: u32,
    queue: VecDeque<TaskId>,
}

/// The queued tasks of one kind: a FIFO per class, a limit on their total, and the DRR cursor.
///
/// Task ids are opaque here (the delivery core owns payloads and guarantees ids are unique;
/// nothing checks for duplicates).
///
/// ```
/// use amp_supervisor::config::ClassConfig;
/// use amp_supervisor::router::{ClassId, KindQueues};
///
/// let mut q = KindQueues::new(&ClassConfig::defaults(), 100)?;
/// let (interactive, batch) = (q.class_id("interactive").unwrap(), q.class_id("batch").unwrap());
/// for id in 0..20 { q.push_back(id, batch)?; }
/// q.push_back(100, interactive)?;
/// // The interactive task goes first; batch still gets 1 slot in 9 while both are busy.
/// assert_eq!(q.pop(), Some((100, interactive)));
/// assert_eq!(q.pop(), Some((0, batch)));
/// assert_eq!(q.len(), 19);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct KindQueues {
    classes: Vec<ClassQueue>,
    /// The class whose DRR turn it is.
    current: usize,
    /// Tasks the current class may still take in its turn (its deficit counter; every task
    /// costs 1, so a turn starts at `weight` and a class never carries a deficit into its next
    /// turn).
    remaining: u32,
    /// Queued tasks over all classes.
    len: usize,
    /// Most tasks `push_back` accepts (`queue_limit`).
    limit: u64,
}

impl KindQueues {
    /// Empty queues for `classes` (in order: [`ClassId::new`]`(i)` is `classes[i]`), refusing
    /// new tasks beyond `limit` queued in total.
    ///
    /// # Errors
    /// [`ClassesError`] when `classes` is empty, a weight is 0 or a name repeats (a validated
    /// [`crate::config::Config`] never has these).
    pub fn new(classes: &[ClassConfig], limit: u64) -> Result<Self, ClassesError> {
        if classes.is_empty() {
            return Err(ClassesError::Empty);
        }
        let mut out: Vec<ClassQueue> = Vec::with_capacity(classes.len());
        for class in classes {
            if class.weight == 0 {
                return Err(ClassesError::ZeroWeight {
                    name: class.name.clone(),
                });
            }
            if out.iter().any(|c| c.name == class.name) {
                return Err(ClassesError::Duplicate {
                    name: class.name.clone(),
                });
            }
            out.push(ClassQueue {
                name: class.name.clone(),
                weight: class.weight,
                queue: VecDeque::new(),
            });
        }
        Ok(Self {
            // The first `pop` moves the cursor on to class 0.
            current: out.len() - 1,
            remaining: 0,
            classes: out,
            len: 0,
            limit,
        })
    }

    /// The class named `name`.
    #[must_use]
    pub fn class_id(&self, name: &str) -> Option<ClassId> {
        self.classes
            .iter()
            .position(|c| c.name == name)
            .map(ClassId)
    }

    /// The name of `class`.
    ///
    /// # Panics
    /// If `class` is not one of these queues' classes.
    #[must_use]
    pub fn class_name(&self, class: ClassId) -> &str {
        &self.classes[class.0].name
    }

    /// The weight of `class`.
    ///
    /// # Panics
    /// If `class` is not one of these queues' classes.
    #[must_use]
    pub fn class_weight(&self, class: ClassId) -> u32 {
        self.classes[class.0].weight
    }

    /// Number of classes.
    #[must_use]
    pub fn class_count(&self) -> usize {
        self.classes.len()
    }

    /// Every class id, in order.
    pub fn class_ids(&self) -> impl Iterator<Item = ClassId> {
        (0..self.classes.len()).map(ClassId)
    }

    /// The `queue_limit`.
    #[must_use]
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// Changes the `queue_limit`. Tasks already queued beyond a lower limit stay queued; new
    /// ones are refused until the total drops below it.
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Queued tasks over all classes.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queued tasks of `class`.
    ///
    /// # Panics
    /// If `class` is not one of these queues' classes.
    #[must_use]
    pub fn len_class(&self, class: ClassId) -> usize {
        self.classes[class.0].queue.len()
    }

    /// The task at the head of each class's FIFO (the longest-queued of the class, unless a
    /// requeue put an older one in front), in class order.
    pub fn fronts(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.classes.iter().filter_map(|c| c.queue.front().copied())
    }

    /// Queues a new task at the tail of its class.
    ///
    /// # Errors
    /// [`QueueFull`] (with the task) when `len() >= limit()`.
    ///
    /// # Panics
    /// If `class` is not one of these queues' classes.
    pub fn push_back(&mut self, id: TaskId, class: ClassId) -> Result<(), QueueFull> {
        if self.len as u64 >= self.limit {
            return Err(QueueFull {
                id,
                class,
                limit: self.limit,
            });
        }
        self.classes[class.0].queue.push_back(id);
        self.len += 1;
        Ok(())
    }

    /// Puts a task back at the **head** of its class (a retry, or a task taken back from a
    /// worker that went away). Ignores the limit: a task that was accepted once is never
    /// refused later.
    ///
    /// # Panics
    /// If `class` is not one of these queues' classes.
    pub fn push_front(&mut self, id: TaskId, class: ClassId) {
        self.classes[class.0].queue.push_front(id);
        self.len += 1;
    }

    /// Queues an already accepted task at the **tail** of its class, ignoring the limit (a
    /// retry whose backoff ended: it waits its turn again, but is not refused).
    ///
    /// # Panics
    /// If `class` is not one of these queues' classes.
    pub fn readmit(&mut self, id: TaskId, class: ClassId) {
        self.classes[class.0].queue.push_back(id);
        self.len += 1;
    }

    /// [`push_front`](Self::push_front) for several tasks, so that they end up at the heads of
    /// their classes **in the given order** (the first of a class is popped first).
    ///
    /// # Panics
    /// If a class is not one of these queues' classes.
    pub fn push_front_all(&mut self, tasks: &[(TaskId, ClassId)]) {
        for &(id, class) in tasks.iter().rev() {
            self.push_front(id, class);
        }
    }

    /// Takes the next task by deficit round-robin: the class whose turn it is takes up to
    /// `weight` tasks, then the turn passes to the next class that has any; a class that runs
    /// empty ends its turn and loses what is left of it. `None` when nothing is queued.
    pub fn pop(&mut self) -> Option<(TaskId, ClassId)> {
        if self.len == 0 {
            return None;
        }
        // Terminates: some class is non-empty and every weight is >= 1, so within one pass over
        // the classes a non-empty one gets a turn with `remaining >= 1`.
        loop {
            let class = &mut self.classes[self.current];
            if self.remaining > 0 {
                if let Some(id) = class.queue.pop_front() {
                    self.len -= 1;
                    self.remaining -= 1;
                    if class.queue.is_empty() {
                        self.remaining = 0;
                    }
                    return Some((id, ClassId(self.current)));
                }
            }
            self.current = (self.current + 1) % self.classes.len();
            let next = &self.classes[self.current];
            self.remaining = if next.queue.is_empty() {
                0
            } else {
                next.weight
            };
        }
    }

    /// The class and position (0 = next in its class) of a queued task. O(n).
    #[must_use]
    pub fn position(&self, id: TaskId) -> Option<(ClassId, usize)> {
        self.classes.iter().enumerate().find_map(|(c, class)| {
            class
                .queue
                .iter()
                .position(|&t| t == id)
                .map(|p| (ClassId(c), p))
        })
    }

    /// Removes a queued task (cancellation); returns its class, or `None` if it is not queued.
    /// O(n).
    pub fn remove(&mut self, id: TaskId) -> Option<ClassId> {
        let (class, pos) = self.position(id)?;
        let queue = &mut self.classes[class.0].queue;
        queue.remove(pos);
        self.len -= 1;
        if class.0 == self.current && queue.is_empty() {
            self.remaining = 0;
        }
        Some(class)
    }

    /// Empties every queue (shutdown, kind removed); returns the tasks by class, each class in
    /// FIFO order.
    pub fn drain_all(&mut self) -> Vec<(TaskId, ClassId)> {
        let mut out = Vec::with_capacity(self.len);
        for (c, class) in self.classes.iter_mut().enumerate() {
            out.extend(class.queue.drain(..).map(|id| (id, ClassId(c))));
        }
        self.len = 0;
        self.remaining = 0;
        out
    }
}
