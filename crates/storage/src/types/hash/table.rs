//! The big-collection table shared by hashes (`Table<Pair>`) and sets (`Table<Box<[u8]>>`): Redis's
//! `hashtable` encoding.
//!
//! Entries live in a vector of slots that never move while they are present: a removal leaves a
//! hole, which a later insertion fills. A hash index maps each key to its slot. That gives:
//!
//! * O(1) lookup, insertion and removal;
//! * O(1) expected uniform random choice (HRANDFIELD, SRANDMEMBER, SPOP): pick a random slot
//!   until a live one comes up. In a table of 64 slots or more, holes are never more than half
//!   the slots (see below), so that takes at most two tries on average; a smaller table falls
//!   back to a walk of its few slots;
//! * a SCAN cursor that is simply a slot position. Since present entries never move, an entry
//!   present for the whole scan is returned exactly once, however many entries come and go.
//!
//! When holes outnumber live entries the table is compacted: live entries move down, in order,
//! and the index is rebuilt. That is O(n), paid for by the n/2 removals before it, so removal
//! stays O(1) amortised. Compaction moves entries, so it bumps the table's *generation*, which
//! is part of every cursor: a cursor issued before a compaction restarts its scan from the first
//! slot. That may return some entries twice (which SCAN allows) but never misses one.

use hashbrown::HashTable;
use rand::Rng;

use crate::types::MemberHasher;

/// Bits of a cursor that hold the slot position; the generation fills the bits above.
const POSITION_BITS: u32 = 40;
const POSITION_MASK: u64 = (1 << POSITION_BITS) - 1;
/// Generation bits kept in a cursor.
const GENERATION_MASK: u64 = (1 << (64 - POSITION_BITS)) - 1;
/// Tables with fewer slots than this are never compacted (not worth it).
const MIN_COMPACT_SLOTS: usize = 64;
/// Random slot probes before falling back to a walk (reached only by tables too small to be
/// compacted: in the others each probe succeeds with probability ≥ 1/2).
const MAX_RANDOM_PROBES: usize = 64;

/// What a table holds: an entry that knows its key (and so is stored whole, in one piece).
pub(crate) trait TableEntry {
    /// The key the entry is found by.
    fn key(&self) -> &[u8];
    /// Heap bytes of the entry's contents, for [`Table::heap_size`].
    fn payload_len(&self) -> usize;
}

/// A set member: the key alone, inline when short (no allocation of its own, and cloning the
/// table, a snapshot's copy-on-write, allocates nothing for it).
impl TableEntry for crate::compact::CompactBytes {
    fn key(&self) -> &[u8] {
        self
    }

    fn payload_len(&self) -> usize {
        self.heap_size()
    }
}

/// A boxed key alone (the table's own tests use it).
impl TableEntry for Box<[u8]> {
    fn key(&self) -> &[u8] {
        self
    }

    fn payload_len(&self) -> usize {
        self.len()
    }
}

/// Entries of type `E`, in stable slots (`None` is a hole).
#[derive(Clone)]
pub(crate) struct Table<E> {
    slots: Vec<Option<E>>,
    /// Slot index of every live entry, found by the key's hash.
    index: HashTable<usize>,
    /// Holes in `slots`, reused last-in first-out.
    holes: Vec<usize>,
    hasher: MemberHasher,
    /// Bumped by every compaction: cursors from an older generation restart.
    generation: u64,
    /// Bytes of every live entry, kept up to date so `heap_size` is O(1).
    payload_bytes: usize,
}

impl<E: std::fmt::Debug + TableEntry> std::fmt::Debug for Table<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<E: TableEntry> Table<E> {
    /// An empty table with room for `capacity` entries.
    pub(crate) fn with_capacity(capacity: usize) -> Table<E> {
        Table {
            slots: Vec::with_capacity(capacity),
            index: HashTable::with_capacity(capacity),
            holes: Vec::new(),
            hasher: MemberHasher::default(),
            generation: 0,
            payload_bytes: 0,
        }
    }

    fn hash(&self, key: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    /// Number of live entries.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    fn slot_of(&self, key: &[u8]) -> Option<usize> {
        let slots = &self.slots;
        self.index
            .find(self.hash(key), |&idx| key_at(slots, idx) == Some(key))
            .copied()
    }

    /// The entry with `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&E> {
        self.at(self.slot_of(key)?)
    }

    /// Stores `entry`, replacing the entry with the same key if there is one (and returning it;
    /// None if the key is new).
    pub(crate) fn insert(&mut self, entry: E) -> Option<E> {
        let added = entry.payload_len();
        if let Some(idx) = self.slot_of(entry.key()) {
            let slot = self.slots.get_mut(idx).and_then(Option::as_mut)?;
            self.payload_bytes = self.payload_bytes + added - slot.payload_len();
            return Some(std::mem::replace(slot, entry));
        }
        self.payload_bytes += added;
        let hash = self.hash(entry.key());
        let idx = match self.holes.pop() {
            Some(idx) => {
                if let Some(slot) = self.slots.get_mut(idx) {
                    *slot = Some(entry);
                }
                idx
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() - 1
            }
        };
        let Table {
            slots,
            index,
            hasher,
            ..
        } = self;
        index.insert_unique(hash, idx, |&idx| rehash(hasher, slots, idx));
        None
    }

    /// Removes the entry with `key` and returns it, None if it was absent.
    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<E> {
        let hash = self.hash(key);
        let slots = &self.slots;
        let found = self
            .index
            .find_entry(hash, |&idx| key_at(slots, idx) == Some(key))
            .ok()?;
        let (idx, _) = found.remove();
        let removed = self.slots.get_mut(idx).and_then(Option::take);
        if let Some(entry) = &removed {
            self.payload_bytes -= entry.payload_len();
        }
        self.holes.push(idx);
        if self.slots.len() >= MIN_COMPACT_SLOTS && self.holes.len() * 2 > self.slots.len() {
            self.compact();
        }
        removed
    }

    /// Moves live entries down over the holes, in order, and rebuilds the index.
    fn compact(&mut self) {
        self.slots.retain(Option::is_some);
        self.holes.clear();
        self.index.clear();
        let Table {
            slots,
            index,
            hasher,
            ..
        } = self;
        for idx in 0..slots.len() {
            let hash = rehash(hasher, slots, idx);
            index.insert_unique(hash, idx, |&idx| rehash(hasher, slots, idx));
        }
        self.generation = self.generation.wrapping_add(1);
    }

    /// The entry in slot `idx`, if that slot is live.
    pub(crate) fn at(&self, idx: usize) -> Option<&E> {
        self.slots.get(idx).and_then(Option::as_ref)
    }

    /// The slot of a uniformly chosen live entry, None if the table is empty. O(1) expected.
    pub(crate) fn random_slot(&self, rng: &mut impl Rng) -> Option<usize> {
        if self.len() == 0 {
            return None;
        }
        for _ in 0..MAX_RANDOM_PROBES {
            let idx = rng.random_range(0..self.slots.len());
            if self.at(idx).is_some() {
                return Some(idx);
            }
        }
        let start = rng.random_range(0..self.slots.len());
        (start..self.slots.len())
            .chain(0..start)
            .find(|&idx| self.at(idx).is_some())
    }

    /// Live entries in slot order.
    pub(crate) fn iter(&self) -> Iter<'_, E> {
        Iter {
            slots: self.slots.iter(),
            remaining: self.len(),
        }
    }

    /// One SCAN step from `cursor`: calls `emit` for up to `count` live entries (looking at no
    /// more than ten times `count` slots, as Redis bounds empty buckets) and returns the next
    /// cursor, 0 when the scan is complete.
    pub(crate) fn scan(&self, cursor: u64, count: usize, mut emit: impl FnMut(&E)) -> u64 {
        let generation = self.generation & GENERATION_MASK;
        let mut pos = if cursor >> POSITION_BITS == generation {
            usize::try_from(cursor & POSITION_MASK).unwrap_or(usize::MAX)
        } else {
            0
        };
        let count = count.max(1);
        let max_visits = count.saturating_mul(10);
        let (mut found, mut visited) = (0, 0);
        while found < count && visited < max_visits {
            let Some(slot) = self.slots.get(pos) else {
                return 0;
            };
            if let Some(entry) = slot {
                emit(entry);
                found += 1;
            }
            pos += 1;
            visited += 1;
        }
        if pos >= self.slots.len() {
            return 0;
        }
        (generation << POSITION_BITS) | (pos as u64 & POSITION_MASK)
    }

    /// Heap bytes, estimated: entries' contents, slots and index.
    pub(crate) fn heap_size(&self) -> usize {
        self.payload_bytes
            + self.slots.capacity() * std::mem::size_of::<Option<E>>()
            + self.index.capacity() * (std::mem::size_of::<usize>() + 1)
            + self.holes.capacity() * std::mem::size_of::<usize>()
    }
}

fn key_at<E: TableEntry>(slots: &[Option<E>], idx: usize) -> Option<&[u8]> {
    slots.get(idx).and_then(Option::as_ref).map(TableEntry::key)
}

fn rehash<E: TableEntry>(hasher: &MemberHasher, slots: &[Option<E>], idx: usize) -> u64 {
    use std::hash::BuildHasher;
    hasher.hash_one(key_at(slots, idx).unwrap_or_default())
}

/// Live entries of a [`Table`] in slot order.
#[derive(Debug, Clone)]
pub(crate) struct Iter<'a, E> {
    slots: std::slice::Iter<'a, Option<E>>,
    remaining: usize,
}

impl<'a, E> Iterator for Iter<'a, E> {
    type Item = &'a E;

    fn next(&mut self) -> Option<Self::Item> {
        let entry = self.slots.by_ref().find_map(Option::as_ref)?;
        self.remaining = self.remaining.saturating_sub(1);
        Some(entry)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<E> ExactSizeIterator for Iter<'_, E> {}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    fn key(n: u16) -> Box<[u8]> {
        format!("k{n}").into_bytes().into_boxed_slice()
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u32),
        Remove(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u16..200, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            (0u16..200).prop_map(Op::Remove),
        ]
    }

    /// A test entry: a key and a number.
    impl TableEntry for (Box<[u8]>, u32) {
        fn key(&self) -> &[u8] {
            &self.0
        }

        fn payload_len(&self) -> usize {
            self.0.len() + 4
        }
    }

    proptest! {
        #[test]
        fn table_matches_btreemap(ops in proptest::collection::vec(op(), 0..600)) {
            let mut table = Table::with_capacity(0);
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        prop_assert_eq!(table.insert((key(k), v)).map(|(_, v)| v), model.insert(key(k), v));
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(table.remove(&key(k)).map(|(_, v)| v), model.remove(&key(k)));
                    }
                }
                prop_assert_eq!(table.len(), model.len());
                prop_assert!(table.slots.len() < MIN_COMPACT_SLOTS || table.holes.len() * 2 <= table.slots.len());
            }
            prop_assert_eq!(table.payload_bytes, model.keys().map(|k| k.len() + 4).sum::<usize>());
            let listed: BTreeMap<Box<[u8]>, u32> = table.iter().cloned().collect();
            prop_assert_eq!(table.iter().len(), model.len());
            prop_assert_eq!(&listed, &model);
            for (k, v) in &model {
                prop_assert_eq!(table.get(k).map(|(_, v)| v), Some(v));
            }
        }

        /// An entry present for the whole scan is returned, whatever changes in between.
        #[test]
        fn scan_never_misses_a_steady_entry(
            steady in 0u16..100,
            ops in proptest::collection::vec(op(), 0..400),
            count in 1usize..20,
        ) {
            let mut table = Table::with_capacity(0);
            for k in 0..steady {
                table.insert((key(k + 1000), 0u32));
            }
            let mut seen = BTreeSet::new();
            let mut cursor = 0;
            let mut ops = ops.into_iter();
            let mut steps = 0;
            loop {
                cursor = table.scan(cursor, count, |(k, _)| { seen.insert(k.clone()); });
                steps += 1;
                if cursor == 0 || steps > 100_000 {
                    break;
                }
                for op in ops.by_ref().take(3) {
                    match op {
                        Op::Insert(k, v) => { table.insert((key(k), v)); }
                        Op::Remove(k) => { table.remove(&key(k)); }
                    }
                }
            }
            prop_assert_eq!(cursor, 0);
            for k in 0..steady {
                prop_assert!(seen.contains(&key(k + 1000)));
            }
        }
    }

    #[test]
    fn random_slot_finds_live_entries_only() {
        let mut table = Table::with_capacity(0);
        for k in 0..100 {
            table.insert(key(k));
        }
        for k in 0..49 {
            table.remove(&key(k));
        }
        let mut rng = rand::rng();
        let mut seen = BTreeSet::new();
        for _ in 0..5000 {
            let idx = table.random_slot(&mut rng).unwrap();
            seen.insert(table.at(idx).unwrap().clone());
        }
        assert_eq!(seen.len(), 51);
        assert!(
            Table::<Box<[u8]>>::with_capacity(0)
                .random_slot(&mut rng)
                .is_none()
        );
    }
}
