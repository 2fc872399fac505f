//! The big-collection table shared by hashes (`Table<Pair>`) and sets (`Table<CompactBytes>`):
//! Redis's `hashtable` encoding, cut into parts so that a snapshot can share it.
//!
//! # Parts, and why
//!
//! A collection lives behind an `Arc` in [`crate::Value`]; the first write to it after a
//! snapshot's cut, before the snapshot has saved it, goes through `Arc::make_mut` and copies it
//! (docs/snapshot.md). A table in one piece would make that write copy every entry: 15-50 ms for a
//! million of them. So the table is a vector of parts, each behind its own `Arc`: copying the
//! table copies only the part pointers, and a write then copies the one part it changes
//! (`Arc::make_mut` again). The first write to each part after the cut pays O(parts + part size)
//! (about [`PART_TARGET`] entries), whatever the table's size; the parts nobody writes stay shared
//! with the snapshot's version and are never copied.
//!
//! Keys are spread over the parts by linear hashing ([`LinearHash`]). Once the table holds more
//! than [`PART_TARGET`] entries per part on average, the insertion that crossed the line splits
//! the next part in turn: some of its entries move to a new part appended at the end. So growth
//! costs one part's worth of work at a time and never rehashes the whole table. When
//! removals leave fewer than 1/[`SHRINK_FACTOR`] of that, the table is rebuilt with fewer parts
//! (O(n), paid for by the removals before it).
//!
//! # Inside a part
//!
//! Entries live in a vector of slots that never move while they are present: a removal leaves a
//! hole, which a later insertion fills. A hash index maps each key to its slot. When holes
//! outnumber live entries the part is compacted: live entries move down, in order, and the index
//! is rebuilt, O(part) paid for by the removals before it. Compaction and splitting move entries,
//! so each bumps the part's *generation*; a rebuild bumps the table's *layout*.
//!
//! That gives:
//!
//! * O(1) lookup, insertion and removal (amortised);
//! * O(1) expected uniform random choice (HRANDFIELD, SRANDMEMBER, SPOP): pick a part and a slot
//!   below the longest part's length at random until a live entry comes up (every entry is as
//!   likely as any other); after [`MAX_RANDOM_PROBES`] misses, an exact draw weighted by the
//!   parts' sizes;
//! * a SCAN cursor that is a part and a slot. Present entries never move within a layout except
//!   by a compaction or split of their part (the cursor then restarts that part: it carries the
//!   part's generation) or by a split moving them to the new part at the end, which the scan has
//!   not reached yet. So an entry present for the whole scan is returned at least once, however
//!   many entries come and go; a rebuild (the layout in the cursor) restarts the scan from the
//!   beginning. Some entries may come twice, which SCAN allows.

use std::sync::Arc;

use hashbrown::HashTable;
use rand::Rng;

use crate::types::MemberHasher;
use crate::types::linear::LinearHash;

/// Entries per part on average above which the table grows by a part. A snapshot's first write
/// to a part copies about this many entries (twice as many in a part not yet split this round).
const PART_TARGET: usize = 1024;
/// The table is rebuilt with fewer parts once it holds fewer than `PART_TARGET / SHRINK_FACTOR`
/// entries per part.
const SHRINK_FACTOR: usize = 16;
/// Parts are compacted only from this many slots (not worth it below).
const MIN_COMPACT_SLOTS: usize = 64;
/// Random probes before the exact draw of [`Table::random_slot`].
const MAX_RANDOM_PROBES: usize = 64;

/// A SCAN cursor, from its low bits up: the slot, the part's generation, the part, the layout.
const CURSOR_SLOT_BITS: u32 = 24;
const CURSOR_GENERATION_BITS: u32 = 12;
const CURSOR_PART_BITS: u32 = 22;
const CURSOR_LAYOUT_BITS: u32 = 64 - CURSOR_SLOT_BITS - CURSOR_GENERATION_BITS - CURSOR_PART_BITS;
/// The table stops adding parts here (so a part number fits its cursor bits); parts then grow
/// instead. Their slots fit the cursor's 24 bits up to 2^46 entries, far beyond any memory.
const MAX_PARTS: usize = 1 << CURSOR_PART_BITS;
/// A position ([`Table::at`]) is `part << POSITION_SLOT_BITS | slot`.
const POSITION_SLOT_BITS: u32 = 32;

/// The `bits` lowest bits set.
const fn mask(bits: u32) -> u64 {
    (1 << bits) - 1
}

/// What a table holds: an entry that knows its key (and so is stored whole, in one piece).
pub(crate) trait TableEntry: Clone {
    /// The key the entry is found by.
    fn key(&self) -> &[u8];
    /// Heap bytes of the entry's contents, for [`Table::heap_size`].
    fn payload_len(&self) -> usize;
}

/// A set member: the key alone, inline when short (no allocation of its own, and copying a part,
/// a snapshot's copy-on-write, allocates nothing for it).
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

/// Entries of type `E` in parts shared copy-on-write (see the module documentation).
#[derive(Clone)]
pub(crate) struct Table<E> {
    /// `linear.parts()` of them.
    parts: Vec<Arc<Part<E>>>,
    hasher: MemberHasher,
    linear: LinearHash,
    len: usize,
    /// Bytes of every live entry, kept up to date so `heap_size` does not visit them.
    payload_bytes: usize,
    /// Bumped by every rebuild: cursors from an older layout restart the scan.
    layout: u64,
    /// At least the slot count of every part, for the random draw.
    max_slots: usize,
    /// [`PART_TARGET`], or smaller in tests so that they split and shrink small tables.
    part_target: usize,
}

/// Entries in stable slots (`None` is a hole), with their index.
#[derive(Clone)]
struct Part<E> {
    slots: Vec<Option<E>>,
    /// Slot of every live entry, found by the key's hash.
    index: HashTable<usize>,
    /// Holes in `slots`, reused last-in first-out.
    holes: Vec<usize>,
    /// Bumped whenever entries move: cursors into an older generation restart the part.
    generation: u64,
}

impl<E: std::fmt::Debug + TableEntry> std::fmt::Debug for Table<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<E: TableEntry> Part<E> {
    fn with_capacity(capacity: usize) -> Part<E> {
        Part {
            slots: Vec::with_capacity(capacity),
            index: HashTable::with_capacity(capacity),
            holes: Vec::new(),
            generation: 0,
        }
    }

    /// A part holding `entries`, in order, without holes.
    fn from_entries(hasher: &MemberHasher, entries: Vec<E>, generation: u64) -> Part<E> {
        let mut part = Part {
            slots: Vec::new(),
            index: HashTable::with_capacity(entries.len()),
            holes: Vec::new(),
            generation,
        };
        part.slots = entries.into_iter().map(Some).collect();
        part.reindex(hasher);
        part
    }

    /// Rebuilds the index from the slots.
    fn reindex(&mut self, hasher: &MemberHasher) {
        let Part { slots, index, .. } = self;
        index.clear();
        for (idx, slot) in slots.iter().enumerate() {
            if let Some(entry) = slot {
                let hash = hash_of(hasher, entry.key());
                index.insert_unique(hash, idx, |&idx| rehash(hasher, slots, idx));
            }
        }
    }

    fn live(&self) -> usize {
        self.index.len()
    }

    /// The slot of `key`, whose hash is `hash`.
    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        let slots = &self.slots;
        self.index
            .find(hash, |&idx| key_at(slots, idx) == Some(key))
            .copied()
    }

    /// Stores `entry`, whose key is not in the part and hashes to `hash`.
    fn push(&mut self, hasher: &MemberHasher, hash: u64, entry: E) {
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
        let Part { slots, index, .. } = self;
        index.insert_unique(hash, idx, |&idx| rehash(hasher, slots, idx));
    }

    /// Removes `key`, whose hash is `hash`, and returns its entry; compacts the part if holes
    /// outnumber live entries.
    fn remove(&mut self, hasher: &MemberHasher, hash: u64, key: &[u8]) -> Option<E> {
        let slots = &self.slots;
        let found = self
            .index
            .find_entry(hash, |&idx| key_at(slots, idx) == Some(key))
            .ok()?;
        let (idx, _) = found.remove();
        let removed = self.slots.get_mut(idx).and_then(Option::take);
        self.holes.push(idx);
        if self.slots.len() >= MIN_COMPACT_SLOTS && self.holes.len() * 2 > self.slots.len() {
            self.slots.retain(Option::is_some);
            self.holes.clear();
            self.reindex(hasher);
            self.generation = self.generation.wrapping_add(1);
        }
        removed
    }

    /// Heap bytes of the slots, index and holes (not the entries' contents).
    fn heap_size(&self) -> usize {
        std::mem::size_of::<Part<E>>()
            + self.slots.capacity() * std::mem::size_of::<Option<E>>()
            + self.index.capacity() * (std::mem::size_of::<usize>() + 1)
            + self.holes.capacity() * std::mem::size_of::<usize>()
    }
}

/// The live entries of `part`: moved out when no one else holds it, cloned when a snapshot's
/// version still shares it.
fn into_entries<E: TableEntry>(part: Arc<Part<E>>) -> Vec<E> {
    match Arc::try_unwrap(part) {
        Ok(part) => part.slots.into_iter().flatten().collect(),
        Err(shared) => shared.slots.iter().flatten().cloned().collect(),
    }
}

impl<E: TableEntry> Table<E> {
    /// An empty table with room for `capacity` entries.
    pub(crate) fn with_capacity(capacity: usize) -> Table<E> {
        Table::with_part_target(capacity, PART_TARGET, MemberHasher::default(), 0)
    }

    fn with_part_target(
        capacity: usize,
        part_target: usize,
        hasher: MemberHasher,
        layout: u64,
    ) -> Table<E> {
        Table {
            parts: vec![Arc::new(Part::with_capacity(capacity.min(2 * part_target)))],
            hasher,
            linear: LinearHash::default(),
            len: 0,
            payload_bytes: 0,
            layout,
            max_slots: 0,
            part_target: part_target.max(1),
        }
    }

    fn hash(&self, key: &[u8]) -> u64 {
        hash_of(&self.hasher, key)
    }

    /// The part of a key with hash `hash`, below `parts.len()`.
    fn part_index(&self, hash: u64) -> usize {
        self.linear.part_of(hash)
    }

    /// Number of live entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The entry with `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&E> {
        let hash = self.hash(key);
        let part = self.parts.get(self.part_index(hash))?;
        part.slots.get(part.find(hash, key)?)?.as_ref()
    }

    /// Stores `entry`, replacing the entry with the same key if there is one (and returning it;
    /// None if the key is new).
    pub(crate) fn insert(&mut self, entry: E) -> Option<E> {
        let hash = self.hash(entry.key());
        let added = entry.payload_len();
        let p = self.part_index(hash);
        let Table { parts, hasher, .. } = self;
        // `part_index` is below `parts.len()`.
        let part = Arc::make_mut(&mut parts[p]);
        if let Some(idx) = part.find(hash, entry.key()) {
            let slot = part.slots.get_mut(idx).and_then(Option::as_mut)?;
            let old = std::mem::replace(slot, entry);
            self.payload_bytes = self.payload_bytes + added - old.payload_len();
            return Some(old);
        }
        part.push(hasher, hash, entry);
        self.max_slots = self.max_slots.max(part.slots.len());
        self.len += 1;
        self.payload_bytes += added;
        if self.len > self.parts.len().saturating_mul(self.part_target)
            && self.parts.len() < MAX_PARTS
        {
            self.split_next();
        }
        None
    }

    /// Removes the entry with `key` and returns it, None if it was absent.
    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<E> {
        let hash = self.hash(key);
        let p = self.part_index(hash);
        // Look before `make_mut`: removing an absent key must not copy a shared part.
        self.parts.get(p)?.find(hash, key)?;
        let Table { parts, hasher, .. } = self;
        let part = Arc::make_mut(&mut parts[p]);
        let generation = part.generation;
        let removed = part.remove(hasher, hash, key)?;
        let compacted = part.generation != generation;
        self.len -= 1;
        self.payload_bytes -= removed.payload_len();
        if self.parts.len() > 1
            && self.len.saturating_mul(SHRINK_FACTOR) < self.parts.len() * self.part_target
        {
            self.rebuild();
        } else if compacted {
            self.recount_max_slots();
        }
        Some(removed)
    }

    /// Splits the next part in turn into itself and a new last part.
    fn split_next(&mut self) {
        let (p, moves) = self.linear.next_split();
        let Some(slot) = self.parts.get_mut(p) else {
            return;
        };
        let old = std::mem::replace(slot, Arc::new(Part::with_capacity(0)));
        let generation = old.generation.wrapping_add(1);
        let (moved, stay): (Vec<E>, Vec<E>) = into_entries(old)
            .into_iter()
            .partition(|entry| moves(self.hash(entry.key())));
        let stay = Part::from_entries(&self.hasher, stay, generation);
        let moved = Part::from_entries(&self.hasher, moved, 0);
        if let Some(slot) = self.parts.get_mut(p) {
            *slot = Arc::new(stay);
        }
        self.parts.push(Arc::new(moved));
        self.linear.advance();
        self.recount_max_slots();
    }

    /// Rebuilds the table with as many parts as its entries need, in a new layout.
    fn rebuild(&mut self) {
        let mut fresh = Table::with_part_target(
            self.len,
            self.part_target,
            self.hasher.clone(),
            self.layout.wrapping_add(1),
        );
        for part in std::mem::take(&mut self.parts) {
            for entry in into_entries(part) {
                fresh.insert(entry);
            }
        }
        *self = fresh;
    }

    fn recount_max_slots(&mut self) {
        self.max_slots = self
            .parts
            .iter()
            .map(|part| part.slots.len())
            .max()
            .unwrap_or(0);
    }

    /// The entry at `position` (from [`Table::random_slot`]), if it is live.
    pub(crate) fn at(&self, position: usize) -> Option<&E> {
        let position = u64::try_from(position).ok()?;
        let part = usize::try_from(position >> POSITION_SLOT_BITS).ok()?;
        let slot = usize::try_from(position & mask(POSITION_SLOT_BITS)).ok()?;
        self.parts.get(part)?.slots.get(slot)?.as_ref()
    }

    /// The position of a uniformly chosen live entry, None if the table is empty. O(1)
    /// expected.
    pub(crate) fn random_slot(&self, rng: &mut impl Rng) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        // Every (part, slot) pair below `max_slots` is equally likely, so a live one that
        // comes up is a uniform choice among the live entries.
        for _ in 0..MAX_RANDOM_PROBES {
            let part = rng.random_range(0..self.parts.len());
            let slot = rng.random_range(0..self.max_slots.max(1));
            let live = self
                .parts
                .get(part)
                .and_then(|p| p.slots.get(slot))
                .is_some_and(Option::is_some);
            if live {
                return position(part, slot);
            }
        }
        // Exact: the n-th live entry, n uniform, found part by part.
        let mut nth = rng.random_range(0..self.len);
        for (p, part) in self.parts.iter().enumerate() {
            if nth < part.live() {
                let slot = part
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(_, slot)| slot.is_some())
                    .nth(nth)?
                    .0;
                return position(p, slot);
            }
            nth -= part.live();
        }
        None
    }

    /// Live entries, part by part in slot order.
    pub(crate) fn iter(&self) -> Iter<'_, E> {
        Iter {
            parts: self.parts.iter(),
            slots: [].iter(),
            remaining: self.len,
        }
    }

    /// One SCAN step from `cursor`: calls `emit` for up to `count` live entries (looking at no
    /// more than ten times `count` slots, as Redis bounds empty buckets) and returns the next
    /// cursor, 0 when the scan is complete.
    pub(crate) fn scan(&self, cursor: u64, count: usize, mut emit: impl FnMut(&E)) -> u64 {
        let (mut p, mut slot) = self.resume(cursor);
        let count = count.max(1);
        let max_visits = count.saturating_mul(10);
        let (mut found, mut visited) = (0, 0);
        while found < count && visited < max_visits {
            let Some(part) = self.parts.get(p) else {
                return 0;
            };
            match part.slots.get(slot) {
                Some(entry) => {
                    if let Some(entry) = entry {
                        emit(entry);
                        found += 1;
                    }
                    slot += 1;
                    visited += 1;
                }
                None => (p, slot) = (p + 1, 0),
            }
        }
        // Never hand out a cursor at the end of a part: its next split or compaction would
        // restart the part for nothing.
        loop {
            let Some(part) = self.parts.get(p) else {
                return 0;
            };
            if slot < part.slots.len() {
                return cursor_of(self.layout, p, part.generation, slot);
            }
            (p, slot) = (p + 1, 0);
        }
    }

    /// Where a scan goes on from `cursor`: its part and slot, the part's start if the part's
    /// entries moved since, the table's start if the layout changed (or for cursor 0).
    fn resume(&self, cursor: u64) -> (usize, usize) {
        let field = |shift: u32, bits: u32| (cursor >> shift) & mask(bits);
        let generation_shift = CURSOR_SLOT_BITS;
        let part_shift = generation_shift + CURSOR_GENERATION_BITS;
        let layout_shift = part_shift + CURSOR_PART_BITS;
        if cursor == 0
            || field(layout_shift, CURSOR_LAYOUT_BITS) != self.layout & mask(CURSOR_LAYOUT_BITS)
        {
            return (0, 0);
        }
        let p = usize::try_from(field(part_shift, CURSOR_PART_BITS)).unwrap_or(usize::MAX);
        let slot = usize::try_from(field(0, CURSOR_SLOT_BITS)).unwrap_or(usize::MAX);
        match self.parts.get(p) {
            Some(part)
                if part.generation & mask(CURSOR_GENERATION_BITS)
                    == field(generation_shift, CURSOR_GENERATION_BITS) =>
            {
                (p, slot)
            }
            _ => (p, 0),
        }
    }

    /// Heap bytes, estimated: entries' contents, parts' slots and indexes. A part still shared
    /// with a snapshot's version counts in both.
    pub(crate) fn heap_size(&self) -> usize {
        self.payload_bytes
            + self.parts.capacity() * std::mem::size_of::<Arc<Part<E>>>()
            + self
                .parts
                .iter()
                .map(|part| part.heap_size() + 2 * std::mem::size_of::<usize>())
                .sum::<usize>()
    }
}

/// The position [`Table::at`] reads back.
fn position(part: usize, slot: usize) -> Option<usize> {
    let (part, slot) = (u64::try_from(part).ok()?, u64::try_from(slot).ok()?);
    if slot > mask(POSITION_SLOT_BITS) {
        return None;
    }
    usize::try_from(part << POSITION_SLOT_BITS | slot).ok()
}

/// The SCAN cursor of `slot` in part `part`, read back by [`Table::resume`].
fn cursor_of(layout: u64, part: usize, generation: u64, slot: usize) -> u64 {
    let mut cursor = layout & mask(CURSOR_LAYOUT_BITS);
    cursor = cursor << CURSOR_PART_BITS | (part as u64 & mask(CURSOR_PART_BITS));
    cursor = cursor << CURSOR_GENERATION_BITS | (generation & mask(CURSOR_GENERATION_BITS));
    cursor << CURSOR_SLOT_BITS | (slot as u64 & mask(CURSOR_SLOT_BITS))
}

fn hash_of(hasher: &MemberHasher, key: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    hasher.hash_one(key)
}

fn key_at<E: TableEntry>(slots: &[Option<E>], idx: usize) -> Option<&[u8]> {
    slots.get(idx).and_then(Option::as_ref).map(TableEntry::key)
}

fn rehash<E: TableEntry>(hasher: &MemberHasher, slots: &[Option<E>], idx: usize) -> u64 {
    hash_of(hasher, key_at(slots, idx).unwrap_or_default())
}

/// Live entries of a [`Table`], part by part in slot order.
#[derive(Debug, Clone)]
pub(crate) struct Iter<'a, E> {
    parts: std::slice::Iter<'a, Arc<Part<E>>>,
    slots: std::slice::Iter<'a, Option<E>>,
    remaining: usize,
}

impl<E> std::fmt::Debug for Part<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field("slots", &self.slots.len())
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl<'a, E> Iterator for Iter<'a, E> {
    type Item = &'a E;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.slots.by_ref().find_map(Option::as_ref) {
                self.remaining = self.remaining.saturating_sub(1);
                return Some(entry);
            }
            self.slots = self.parts.next()?.slots.iter();
        }
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
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn key(n: u16) -> Box<[u8]> {
        format!("k{n}").into_bytes().into_boxed_slice()
    }

    /// A table whose parts split every `part_target` entries, so that small tests split and
    /// shrink.
    fn table<E: TableEntry>(part_target: usize) -> Table<E> {
        Table::with_part_target(0, part_target, MemberHasher::default(), 0)
    }

    /// Everything the table keeps up to date, recomputed.
    fn check_invariants<E: TableEntry>(table: &Table<E>) {
        assert_eq!(table.parts.len(), table.linear.parts());
        let mut len = 0;
        let mut payload = 0;
        for (p, part) in table.parts.iter().enumerate() {
            assert!(part.slots.len() <= table.max_slots);
            assert!(
                part.slots.len() < MIN_COMPACT_SLOTS || part.holes.len() * 2 <= part.slots.len()
            );
            assert_eq!(part.live() + part.holes.len(), part.slots.len());
            for (idx, entry) in part.slots.iter().enumerate() {
                let Some(entry) = entry else { continue };
                let hash = table.hash(entry.key());
                assert_eq!(table.part_index(hash), p, "entry in the wrong part");
                assert_eq!(part.find(hash, entry.key()), Some(idx));
                len += 1;
                payload += entry.payload_len();
            }
        }
        assert_eq!(table.len, len);
        assert_eq!(table.payload_bytes, payload);
        if table.parts.len() > 1 {
            assert!(table.len * SHRINK_FACTOR >= table.parts.len() * table.part_target);
        }
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

    /// Part targets to test with: tiny (splits and rebuilds all the time) and the real one.
    fn part_target() -> impl Strategy<Value = usize> {
        prop_oneof![1usize..8, Just(PART_TARGET)]
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
        fn table_matches_btreemap(
            ops in proptest::collection::vec(op(), 0..600),
            part_target in part_target(),
        ) {
            let mut table = table(part_target);
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
            }
            check_invariants(&table);
            let listed: BTreeMap<Box<[u8]>, u32> = table.iter().cloned().collect();
            prop_assert_eq!(table.iter().len(), model.len());
            prop_assert_eq!(&listed, &model);
            for (k, v) in &model {
                prop_assert_eq!(table.get(k).map(|(_, v)| v), Some(v));
            }
        }

        /// An entry present for the whole scan is returned, whatever changes in between (splits,
        /// compactions and rebuilds included).
        #[test]
        fn scan_never_misses_a_steady_entry(
            steady in 0u16..100,
            ops in proptest::collection::vec(op(), 0..400),
            count in 1usize..20,
            part_target in part_target(),
        ) {
            let mut table = table(part_target);
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

        /// Any cursor a client makes up is safe: the scan goes on from somewhere and ends.
        #[test]
        fn scan_from_any_cursor_ends(cursor in any::<u64>(), count in 1usize..50) {
            let mut table = table(4);
            for k in 0..100 {
                table.insert(key(k));
            }
            let mut cursor = cursor;
            let mut steps = 0;
            loop {
                cursor = table.scan(cursor, count, |_| {});
                steps += 1;
                if cursor == 0 {
                    break;
                }
                prop_assert!(steps <= 200, "the scan does not end");
            }
        }

        /// A copy (what a snapshot keeps) shares every part but those written since, and does
        /// not see the writes.
        #[test]
        fn a_copy_shares_the_parts_not_written(
            ops in proptest::collection::vec(op(), 1..20),
        ) {
            let mut table = table(8);
            for k in 0..200 {
                table.insert((key(k), 0u32));
            }
            let copy = table.clone();
            let before: BTreeMap<Box<[u8]>, u32> = copy.iter().cloned().collect();
            let mut written = BTreeSet::new();
            for op in ops {
                let (k, changed) = match op {
                    Op::Insert(k, v) => (k, table.insert((key(k), v)).is_some()),
                    Op::Remove(k) => (k, table.remove(&key(k)).is_some()),
                };
                if changed {
                    written.insert(copy.part_index(copy.hash(&key(k))));
                }
            }
            prop_assume!(table.parts.len() == copy.parts.len());
            let copied: BTreeSet<usize> = (0..copy.parts.len())
                .filter(|&p| !Arc::ptr_eq(&table.parts[p], &copy.parts[p]))
                .collect();
            prop_assert_eq!(copied, written);
            let after: BTreeMap<Box<[u8]>, u32> = copy.iter().cloned().collect();
            prop_assert_eq!(after, before);
            check_invariants(&table);
        }
    }

    #[test]
    fn growth_splits_one_part_at_a_time() {
        let mut table = table(16);
        for k in 0..5000 {
            table.insert(key(k));
            assert!(table.len() <= table.parts.len() * 16);
            assert!(table.len() > (table.parts.len() - 1) * 16);
        }
        check_invariants(&table);
        let layout = table.layout;
        for k in 0..4990 {
            table.remove(&key(k));
        }
        check_invariants(&table);
        assert!(table.layout > layout, "the table was rebuilt");
        assert!(table.parts.len() < 5000 / 16, "with fewer parts");
    }

    #[test]
    fn random_slot_finds_live_entries_only() {
        let mut table = table(8);
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

    /// Every live entry is drawn about equally often, though the parts are unequal (some split,
    /// some not, some with holes).
    #[test]
    fn random_slot_is_uniform() {
        let mut table = table(8);
        for k in 0..300 {
            table.insert(key(k));
        }
        for k in (0..300).step_by(3) {
            table.remove(&key(k));
        }
        check_invariants(&table);
        let mut rng = StdRng::seed_from_u64(7);
        let draws = 200 * 1000;
        let mut counts: BTreeMap<Box<[u8]>, usize> = BTreeMap::new();
        for _ in 0..draws {
            let position = table.random_slot(&mut rng).unwrap();
            *counts
                .entry(table.at(position).unwrap().clone())
                .or_default() += 1;
        }
        assert_eq!(counts.len(), 200);
        // 1000 expected each, standard deviation about 32: six of them either way.
        for (k, n) in counts {
            assert!((800..1200).contains(&n), "{k:?} drawn {n} times");
        }
    }
}
