//! The big sorted set's member index: which treap slot holds a member, in parts that a snapshot
//! shares.
//!
//! The index holds slots only; a slot's member lives in the tree. So a lookup takes the member's
//! hash and a test of a slot, and whatever moves entries between parts (growth, shrinking) takes
//! a function from a slot to its member's hash. The slots are spread over parts, each behind its
//! own `Arc`, by linear hashing ([`LinearHash`]), as a hash's table is (`hash/table.rs`): copying
//! the index copies one pointer per part, and a change then copies the one part it touches.

use std::sync::Arc;

use hashbrown::HashTable;

use crate::types::linear::LinearHash;

/// Slots per part on average above which the index grows by a part (small in unit tests, so
/// that they split and shrink small sets).
const PART_TARGET: usize = if cfg!(test) { 4 } else { 1024 };
/// The index is rebuilt with fewer parts once it holds fewer than `PART_TARGET / SHRINK_FACTOR`
/// slots per part.
const SHRINK_FACTOR: usize = 16;

/// Member slots, found by the member's hash.
#[derive(Debug, Clone)]
pub(super) struct SlotIndex {
    /// `linear.parts()` of them, never none.
    parts: Vec<Arc<HashTable<usize>>>,
    linear: LinearHash,
    len: usize,
}

impl SlotIndex {
    /// An empty index with room for `capacity` slots.
    pub(super) fn with_capacity(capacity: usize) -> SlotIndex {
        SlotIndex {
            parts: vec![Arc::new(HashTable::with_capacity(
                capacity.min(2 * PART_TARGET),
            ))],
            linear: LinearHash::default(),
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The slot with hash `hash` for which `is_match` holds.
    pub(super) fn find(&self, hash: u64, is_match: impl Fn(usize) -> bool) -> Option<usize> {
        let part = self.parts.get(self.linear.part_of(hash))?;
        part.find(hash, |&slot| is_match(slot)).copied()
    }

    /// Adds `slot`, whose member hashes to `hash` and is not in the index yet. `rehash` gives
    /// any indexed slot's hash.
    pub(super) fn insert(&mut self, hash: u64, slot: usize, rehash: impl Fn(usize) -> u64) {
        let Some(part) = self.parts.get_mut(self.linear.part_of(hash)) else {
            return;
        };
        Arc::make_mut(part).insert_unique(hash, slot, |&slot| rehash(slot));
        self.len += 1;
        if self.len > self.parts.len() * PART_TARGET {
            self.split_next(&rehash);
        }
    }

    /// Removes and returns the slot with hash `hash` for which `is_match` holds. Call
    /// [`SlotIndex::shrink_if_sparse`] once the removals are done.
    pub(super) fn remove(&mut self, hash: u64, is_match: impl Fn(usize) -> bool) -> Option<usize> {
        let p = self.linear.part_of(hash);
        // Look before `make_mut`: removing an absent member must not copy a shared part.
        self.parts.get(p)?.find(hash, |&slot| is_match(slot))?;
        let part = Arc::make_mut(self.parts.get_mut(p)?);
        let (slot, _) = part.find_entry(hash, |&slot| is_match(slot)).ok()?.remove();
        self.len -= 1;
        Some(slot)
    }

    /// Rebuilds the index with fewer parts if removals left it sparse. `rehash` gives any
    /// indexed slot's hash (so it must not run while the tree holds slots the index still has
    /// but the tree no longer does).
    pub(super) fn shrink_if_sparse(&mut self, rehash: impl Fn(usize) -> u64) {
        if self.parts.len() == 1 || self.len * SHRINK_FACTOR >= self.parts.len() * PART_TARGET {
            return;
        }
        let mut fresh = SlotIndex::with_capacity(self.len);
        for part in &self.parts {
            for &slot in part.iter() {
                fresh.insert(rehash(slot), slot, &rehash);
            }
        }
        *self = fresh;
    }

    /// Splits the next part in turn into itself and a new last part.
    fn split_next(&mut self, rehash: &impl Fn(usize) -> u64) {
        let (p, moves) = self.linear.next_split();
        let Some(old) = self.parts.get(p) else {
            return;
        };
        let (mut stay, mut moved) = (
            HashTable::with_capacity(old.len() / 2),
            HashTable::with_capacity(old.len() / 2),
        );
        for &slot in old.iter() {
            let hash = rehash(slot);
            let to = if moves(hash) { &mut moved } else { &mut stay };
            to.insert_unique(hash, slot, |&slot| rehash(slot));
        }
        if let Some(old) = self.parts.get_mut(p) {
            *old = Arc::new(stay);
        }
        self.parts.push(Arc::new(moved));
        self.linear.advance();
    }

    /// Heap bytes, estimated. A part still shared with a snapshot's version counts in both.
    pub(super) fn heap_size(&self) -> usize {
        self.parts.capacity() * std::mem::size_of::<Arc<HashTable<usize>>>()
            + self
                .parts
                .iter()
                .map(|part| {
                    part.capacity() * (std::mem::size_of::<usize>() + 1)
                        + std::mem::size_of::<HashTable<usize>>()
                        + 2 * std::mem::size_of::<usize>()
                })
                .sum::<usize>()
    }

    /// How many parts, position by position, this index shares with `other`; and its parts.
    #[cfg(test)]
    pub(super) fn parts_shared_with(&self, other: &SlotIndex) -> (usize, usize) {
        let shared = self
            .parts
            .iter()
            .zip(&other.parts)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        (shared, self.parts.len())
    }

    /// Every slot is in the part its hash gives, and `len` counts them.
    #[cfg(test)]
    pub(super) fn check_invariants(&self, rehash: impl Fn(usize) -> u64) {
        assert_eq!(self.parts.len(), self.linear.parts());
        let mut len = 0;
        for (p, part) in self.parts.iter().enumerate() {
            for &slot in part.iter() {
                assert_eq!(
                    self.linear.part_of(rehash(slot)),
                    p,
                    "slot in the wrong part"
                );
                len += 1;
            }
        }
        assert_eq!(len, self.len);
        if self.parts.len() > 1 {
            assert!(self.len * SHRINK_FACTOR >= self.parts.len() * PART_TARGET);
        }
    }
}
