//! [`SeqMap`]: a map keyed by task ids, which ampd issues in sequence (1, 2, 3, …) and which
//! mostly finish in about the order they were issued. The ids alive at any moment then form a
//! narrow band, so they live in a window (a ring of slots indexed by `id - base`) that is
//! touched in order and stays in cache, instead of a hash table probed at random. Ids outside
//! the window (one that stays alive long after its neighbours, or one far ahead) go to a
//! hash map on the side; lookups check the window first.

use std::collections::VecDeque;

/// The window never grows past this many slots per live entry in it (plus [`MIN_SPAN`]):
/// beyond that, its oldest entries move to the side map.
const SPARSENESS: usize = 4;
/// Slots the window may always span, however few entries it holds.
const MIN_SPAN: usize = 4096;

/// A map from sequential `u64` ids to `V` (see the [module documentation](self)).
#[derive(Debug, Clone)]
pub(crate) struct SeqMap<V> {
    /// Id of `window[0]`.
    base: u64,
    /// Slots for ids `base .. base + window.len()`; the front slot is never empty.
    window: VecDeque<Option<V>>,
    /// Occupied slots in `window`.
    in_window: usize,
    /// Everything else. An id is in at most one of `window` and `side`.
    side: rustc_hash::FxHashMap<u64, V>,
}

impl<V> Default for SeqMap<V> {
    fn default() -> Self {
        Self {
            base: 0,
            window: VecDeque::new(),
            in_window: 0,
            side: rustc_hash::FxHashMap::default(),
        }
    }
}

impl<V> SeqMap<V> {
    /// The window slot of `id`, if `id` is in the window's range.
    #[inline]
    fn slot(&self, id: u64) -> Option<usize> {
        let off = id.checked_sub(self.base)?;
        usize::try_from(off).ok().filter(|&o| o < self.window.len())
    }

    /// The largest span the window may have.
    fn max_span(&self) -> usize {
        MIN_SPAN.max(SPARSENESS * (self.in_window + 1))
    }

    /// Entries.
    pub(crate) fn len(&self) -> usize {
        self.in_window + self.side.len()
    }

    /// Whether `id` has an entry.
    pub(crate) fn contains_key(&self, id: u64) -> bool {
        self.get(id).is_some()
    }

    /// The entry of `id`.
    #[inline]
    pub(crate) fn get(&self, id: u64) -> Option<&V> {
        if let Some(s) = self.slot(id) {
            if let Some(v) = self.window[s].as_ref() {
                return Some(v);
            }
        }
        if self.side.is_empty() {
            None
        } else {
            self.side.get(&id)
        }
    }

    /// The entry of `id`, mutably.
    #[inline]
    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut V> {
        if let Some(s) = self.slot(id) {
            if self.window[s].is_some() {
                return self.window[s].as_mut();
            }
        }
        if self.side.is_empty() {
            None
        } else {
            self.side.get_mut(&id)
        }
    }

    /// Sets the entry of `id`; returns the one it replaces.
    pub(crate) fn insert(&mut self, id: u64, v: V) -> Option<V> {
        let old = if self.side.is_empty() {
            None
        } else {
            self.side.remove(&id)
        };
        if self.window.is_empty() {
            self.base = id;
        }
        if let Some(s) = self.slot(id) {
            let prev = self.window[s].replace(v);
            if prev.is_none() {
                self.in_window += 1;
            }
            return prev.or(old);
        }
        let fits = id
            .checked_sub(self.base)
            .and_then(|o| usize::try_from(o).ok())
            .filter(|&o| o < self.max_span());
        match fits {
            Some(off) => {
                // Ahead of the window, within reach: extend it (the gap becomes empty slots).
                self.window.resize_with(off, || None);
                self.window.push_back(Some(v));
                self.in_window += 1;
                self.shrink();
            }
            None => {
                self.side.insert(id, v);
            }
        }
        old
    }

    /// Removes the entry of `id`.
    #[inline]
    pub(crate) fn remove(&mut self, id: u64) -> Option<V> {
        if let Some(s) = self.slot(id) {
            if let Some(v) = self.window[s].take() {
                self.in_window -= 1;
                if s == 0 {
                    self.pop_empty_front();
                }
                return Some(v);
            }
        }
        if self.side.is_empty() {
            None
        } else {
            self.side.remove(&id)
        }
    }

    /// Drops empty slots at the front, so that the front slot is occupied (or none is left).
    fn pop_empty_front(&mut self) {
        while matches!(self.window.front(), Some(None)) {
            self.window.pop_front();
            self.base += 1;
        }
    }

    /// Moves the oldest entries to the side map while the window is too sparse.
    fn shrink(&mut self) {
        while self.window.len() > self.max_span() {
            if let Some(Some(v)) = self.window.pop_front() {
                self.in_window -= 1;
                self.side.insert(self.base, v);
            }
            self.base += 1;
            self.pop_empty_front();
        }
    }

    /// Every entry (window in id order, then the side map in no particular order).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        let base = self.base;
        self.window
            .iter()
            .zip(base..)
            .filter_map(|(v, id)| v.as_ref().map(|v| (id, v)))
            .chain(self.side.iter().map(|(id, v)| (*id, v)))
    }

    /// Keeps only the entries for which `keep` is true.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(u64, &mut V) -> bool) {
        for (v, id) in self.window.iter_mut().zip(self.base..) {
            if let Some(x) = v {
                if !keep(id, x) {
                    *v = None;
                    self.in_window -= 1;
                }
            }
        }
        self.pop_empty_front();
        self.side.retain(|id, v| keep(*id, v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;

    fn check(m: &SeqMap<u64>, model: &BTreeMap<u64, u64>) {
        assert_eq!(m.len(), model.len());
        let mut all: Vec<(u64, u64)> = m.iter().map(|(k, v)| (k, *v)).collect();
        all.sort_unstable();
        let want: Vec<(u64, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(all, want);
        assert!(!matches!(m.window.front(), Some(None)), "empty front slot");
        for id in m.side.keys() {
            assert!(
                m.slot(*id).is_none_or(|s| m.window[s].is_none()),
                "{id} in both"
            );
        }
    }

    /// Random operations in the patterns ampd produces (sequential inserts, mostly-FIFO removals,
    /// stragglers, re-inserts, far jumps) against a `BTreeMap`.
    #[test]
    fn behaves_like_a_map() {
        for seed in 0..20 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut m = SeqMap::default();
            let mut model = BTreeMap::new();
            let mut next = 1u64;
            for step in 0..20_000u64 {
                match rng.random_range(0..100) {
                    0..=44 => {
                        let id = if rng.random_range(0..200) == 0 {
                            next + rng.random_range(0..100_000)
                        } else {
                            next
                        };
                        next = next.max(id) + 1;
                        assert_eq!(m.insert(id, step), model.insert(id, step));
                    }
                    45..=84 => {
                        // Mostly the oldest, sometimes any.
                        let id = if rng.random_bool(0.7) {
                            model.keys().next().copied()
                        } else {
                            let k: Vec<u64> = model.keys().copied().collect();
                            (!k.is_empty()).then(|| k[rng.random_range(0..k.len())])
                        }
                        .unwrap_or(rng.random_range(0..next + 10));
                        assert_eq!(m.remove(id), model.remove(&id));
                    }
                    85..=89 => {
                        // Re-insert an existing or an old id.
                        let id = rng.random_range(0..next + 10);
                        assert_eq!(m.insert(id, step), model.insert(id, step));
                    }
                    90..=97 => {
                        let id = rng.random_range(0..next + 10);
                        assert_eq!(m.get(id), model.get(&id));
                        assert_eq!(m.contains_key(id), model.contains_key(&id));
                        if let (Some(a), Some(b)) = (m.get_mut(id), model.get_mut(&id)) {
                            *a += 1;
                            *b += 1;
                        }
                    }
                    _ => {
                        let r = rng.random_range(1..5u64);
                        m.retain(|id, v| (id + *v) % r != 0);
                        model.retain(|id, v| (id + *v) % r != 0);
                    }
                }
                if step % 997 == 0 {
                    check(&m, &model);
                }
            }
            check(&m, &model);
        }
    }

    /// FIFO traffic keeps everything in the window, which stays about as wide as the live set.
    #[test]
    fn fifo_traffic_stays_in_the_window() {
        let mut m = SeqMap::default();
        for id in 1..=100_000u64 {
            m.insert(id, id);
            if id > 8192 {
                assert_eq!(m.remove(id - 8192), Some(id - 8192));
            }
        }
        assert_eq!(m.len(), 8192);
        assert!(m.side.is_empty());
        assert_eq!(m.window.len(), 8192);
    }

    /// A straggler far behind moves to the side map instead of holding the window open.
    #[test]
    fn a_straggler_moves_aside() {
        let mut m = SeqMap::default();
        m.insert(1, 1);
        for id in 2..=200_000u64 {
            m.insert(id, id);
            m.remove(id);
        }
        assert_eq!(m.get(1), Some(&1));
        assert!(m.window.len() <= MIN_SPAN);
        assert_eq!(m.remove(1), Some(1));
        assert_eq!(m.len(), 0);
    }
}
