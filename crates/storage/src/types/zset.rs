//! Sorted sets. Two representations, as in Redis 7.0, and `OBJECT ENCODING` names the one in
//! use:
//!
//! * `listpack`: one packed buffer of member, score pairs in (score, member) order, scanned
//!   linearly, for sets of at most 128 members of at most 64 bytes;
//! * `skiplist`: an order-statistic treap over (score, member) (`zset/tree.rs`) for O(log n)
//!   ranks, range starts and updates, plus an index from member to treap slot for O(1) ZSCORE
//!   (`zset/index.rs`), as Redis's dict + skiplist pair. Both are cut into parts behind `Arc`s
//!   of their own, so a snapshot's copy shares them and a write copies only the parts it
//!   changes.

mod index;
mod tree;

use std::hash::BuildHasher;

use bytes::Bytes;

use self::index::SlotIndex;
use self::tree::Tree;
use super::limits::ENCODING_LIMITS;
use super::packed::{self, Element, Item, Packed, Probe};
use crate::compact::CompactBytes;

/// Integral scores up to this magnitude are packed as integers (every such integer is exact).
const MAX_PACKED_INT_SCORE: f64 = 9_007_199_254_740_992.0;

/// Members with scores, ordered by (score, member). Scores are never NaN.
#[derive(Debug, Clone)]
pub struct ZSet {
    repr: Repr,
}

#[derive(Debug, Clone)]
enum Repr {
    /// Member, score, member, score, ... in (score, member) order, as Redis's listpack. A
    /// score is packed as an integer when it is one, else as the 8 bytes of the double.
    Listpack(Packed),
    /// Boxed, so that a small sorted set stays small.
    Skiplist(Box<Skiplist>),
}

/// Redis's dict + skiplist pair: the order-statistic treap for ranks and ranges, and an index
/// from member to the treap slot that holds it (slots are stable) for O(1) ZSCORE. Each member
/// is stored once, in its treap node.
#[derive(Clone)]
struct Skiplist {
    index: SlotIndex,
    hasher: super::MemberHasher,
    tree: Tree,
}

impl std::fmt::Debug for Skiplist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Skiplist")
            .field("tree", &self.tree)
            .finish_non_exhaustive()
    }
}

impl Skiplist {
    fn new(capacity: usize) -> Skiplist {
        Skiplist {
            index: SlotIndex::with_capacity(capacity),
            hasher: super::MemberHasher::default(),
            tree: Tree::default(),
        }
    }

    fn hash(&self, member: &[u8]) -> u64 {
        self.hasher.hash_one(member)
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    /// The slot of `member`.
    fn find(&self, member: &[u8]) -> Option<usize> {
        let tree = &self.tree;
        self.index.find(self.hash(member), |idx| {
            tree.at(idx).is_some_and(|(m, _)| m == member)
        })
    }

    fn score(&self, member: &[u8]) -> Option<f64> {
        self.tree.at(self.find(member)?).map(|(_, score)| score)
    }

    /// Inserts a member known to be absent.
    fn insert(&mut self, member: &[u8], score: f64) {
        let hash = self.hash(member);
        let idx = self.tree.insert(CompactBytes::from_slice(member), score);
        let Skiplist {
            index,
            hasher,
            tree,
        } = self;
        index.insert(hash, idx, |idx| slot_hash(hasher, tree, idx));
    }

    fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let hash = self.hash(member);
        let tree = &self.tree;
        let idx = self
            .index
            .remove(hash, |idx| tree.at(idx).is_some_and(|(m, _)| m == member))?;
        let score = self.tree.at(idx).map(|(_, score)| score);
        if let Some(score) = score {
            self.tree.remove(score, member);
        }
        self.shrink_index_if_sparse();
        score
    }

    fn remove_ranks(&mut self, start: usize, end: usize) -> Vec<(Bytes, f64)> {
        let removed = self.tree.remove_ranks(start, end);
        for (slot, member, _) in &removed {
            // The slot is free now, so the index entry is found by its slot, not its member.
            self.index
                .remove(self.hasher.hash_one(&**member), |idx| idx == *slot);
        }
        self.shrink_index_if_sparse();
        removed
            .into_iter()
            .map(|(_, member, score)| (member.to_bytes(), score))
            .collect()
    }

    /// After removals: every indexed slot is live in the tree again, so the index may rehash.
    fn shrink_index_if_sparse(&mut self) {
        let Skiplist {
            index,
            hasher,
            tree,
        } = self;
        index.shrink_if_sparse(|idx| slot_hash(hasher, tree, idx));
    }

    fn heap_size(&self) -> usize {
        self.tree.heap_size() + self.index.heap_size()
    }
}

/// The hash of the member in slot `idx` of `tree` (of nothing if the slot is free).
fn slot_hash(hasher: &super::MemberHasher, tree: &Tree, idx: usize) -> u64 {
    hasher.hash_one(tree.at(idx).map_or(&[][..], |(m, _)| m))
}

impl Default for ZSet {
    fn default() -> ZSet {
        ZSet {
            repr: Repr::Listpack(Packed::default()),
        }
    }
}

impl PartialEq for ZSet {
    fn eq(&self, other: &ZSet) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .zip(other.iter())
                .all(|((ma, sa), (mb, sb))| ma == mb && sa.to_bits() == sb.to_bits())
    }
}

/// How a listpack packs `score`, using `buf` for the bytes of a double.
fn score_item(score: f64, buf: &mut [u8; 8]) -> Item<'_> {
    if score == score.trunc() && score.abs() <= MAX_PACKED_INT_SCORE {
        Item::Int(score as i64)
    } else {
        *buf = score.to_le_bytes();
        Item::Bytes(buf)
    }
}

fn score_of(item: Item<'_>) -> f64 {
    match item {
        Item::Int(n) => n as f64,
        Item::Bytes(bytes) => <[u8; 8]>::try_from(bytes).map_or(0.0, f64::from_le_bytes),
    }
}

/// (member, score) pairs of a listpack, in either direction.
#[derive(Debug, Clone)]
struct Pairs<'a>(packed::Iter<'a>);

impl<'a> Iterator for Pairs<'a> {
    type Item = (Element<'a>, f64);

    fn next(&mut self) -> Option<Self::Item> {
        let member = self.0.next()?;
        let score = self.0.next()?;
        Some((member.into(), score_of(score)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.0.len() / 2;
        (len, Some(len))
    }
}

impl DoubleEndedIterator for Pairs<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let score = self.0.next_back()?;
        let member = self.0.next_back()?;
        Some((member.into(), score_of(score)))
    }
}

impl ExactSizeIterator for Pairs<'_> {}

/// Where a member is in a listpack.
struct Found {
    /// Offset of the member's entry.
    at: usize,
    rank: usize,
    score: f64,
}

fn find(pairs: &Packed, member: &[u8]) -> Option<Found> {
    let probe = Probe::new(member);
    let mut at = 0;
    let mut rank = 0;
    loop {
        let (item, score_at) = pairs.item(at)?;
        let (score, next) = pairs.item(score_at)?;
        if probe.matches(item) {
            return Some(Found {
                at,
                rank,
                score: score_of(score),
            });
        }
        at = next;
        rank += 1;
    }
}

/// A range walk over either encoding.
enum RangeIter<'a, T> {
    Forward(Pairs<'a>),
    Backward(std::iter::Rev<Pairs<'a>>),
    Tree(T),
}

impl<'a, T: Iterator<Item = (&'a [u8], f64)>> Iterator for RangeIter<'a, T> {
    type Item = (Element<'a>, f64);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            RangeIter::Forward(pairs) => pairs.next(),
            RangeIter::Backward(pairs) => pairs.next(),
            RangeIter::Tree(nodes) => nodes.next().map(|(m, s)| (Element::from_bytes(m), s)),
        }
    }
}

impl ZSet {
    /// An empty sorted set.
    pub fn new() -> ZSet {
        ZSet::default()
    }

    /// An empty sorted set that Redis would create as `skiplist` when told to expect
    /// `size_hint` members of which the longest is `max_member_len` bytes (ZADD's first step).
    pub fn with_hint(size_hint: usize, max_member_len: usize) -> ZSet {
        let mut zset = ZSet::default();
        if size_hint > ENCODING_LIMITS.zset_max_entries()
            || max_member_len > ENCODING_LIMITS.zset_max_value()
        {
            zset.convert();
        }
        zset
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Listpack(pairs) => pairs.len() / 2,
            Repr::Skiplist(skiplist) => skiplist.len(),
        }
    }

    /// Returns true if and only if the sorted set has no member.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(member, score)` in ascending (score, member) order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (Element<'_>, f64)> {
        let len = self.len();
        ExactLen {
            inner: self.range(0, len, false),
            remaining: len,
        }
    }

    /// Converts to `skiplist`, for good.
    fn convert(&mut self) {
        let Repr::Listpack(pairs) = &self.repr else {
            return;
        };
        let mut skiplist = Skiplist::new(pairs.len() / 2);
        for (member, score) in Pairs(pairs.iter()) {
            skiplist.insert(&member, score);
        }
        self.repr = Repr::Skiplist(Box::new(skiplist));
    }

    /// Adds `member` or changes its score; returns true if and only if it was new.
    /// `score` must not be NaN (commands reject NaN before they get here).
    pub fn insert(&mut self, member: impl AsRef<[u8]>, score: f64) -> bool {
        let member = member.as_ref();
        if self.update_score(member, score).is_some() {
            return false;
        }
        self.insert_absent(member, score);
        true
    }

    /// Inserts a member known to be absent.
    fn insert_absent(&mut self, member: &[u8], score: f64) {
        if member.len() > ENCODING_LIMITS.zset_max_value()
            || self.len() + 1 > ENCODING_LIMITS.zset_max_entries()
        {
            self.convert();
        }
        let score = self.stored_score(score);
        match &mut self.repr {
            Repr::Listpack(pairs) => {
                let mut at = 0;
                while let Some((item, score_at)) = pairs.item(at) {
                    let Some((other, next)) = pairs.item(score_at) else {
                        break;
                    };
                    let other_member = Element::from(item);
                    if tree::cmp_keys(score_of(other), &other_member, score, member).is_gt() {
                        break;
                    }
                    at = next;
                }
                let mut buf = [0u8; 8];
                pairs.insert_many(at, &[Item::text(member), score_item(score, &mut buf)]);
            }
            Repr::Skiplist(skiplist) => skiplist.insert(member, score),
        }
    }

    /// Sets the score of an existing `member`; returns its old score, or None (and changes
    /// nothing) if it is absent. `score` must not be NaN.
    pub fn update_score(&mut self, member: &[u8], score: f64) -> Option<f64> {
        let score = self.stored_score(score);
        match &mut self.repr {
            Repr::Listpack(pairs) => {
                let found = find(pairs, member)?;
                if found.score.to_bits() != score.to_bits() {
                    // Remove and re-insert at the new place: O(n), as Redis's listpack.
                    pairs.remove(found.at, 2);
                    self.insert_absent(member, score);
                }
                Some(found.score)
            }
            Repr::Skiplist(skiplist) => {
                let old_score = skiplist.score(member)?;
                if old_score.to_bits() != score.to_bits() {
                    skiplist.tree.rescore(member, old_score, score);
                }
                Some(old_score)
            }
        }
    }

    /// The score as this encoding keeps it: a listpack stores `-0` as the integer 0, a
    /// skiplist keeps the double's sign (what ZSCORE then shows).
    fn stored_score(&self, score: f64) -> f64 {
        if self.is_listpack() && score == 0.0 {
            0.0
        } else {
            score
        }
    }

    /// The score of `member`.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        match &self.repr {
            Repr::Listpack(pairs) => find(pairs, member).map(|found| found.score),
            Repr::Skiplist(skiplist) => skiplist.score(member),
        }
    }

    /// Removes `member`; returns its score if it was there.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        match &mut self.repr {
            Repr::Listpack(pairs) => {
                let found = find(pairs, member)?;
                pairs.remove(found.at, 2);
                Some(found.score)
            }
            Repr::Skiplist(skiplist) => skiplist.remove(member),
        }
    }

    /// How many members satisfy `before`, a predicate that holds for a prefix of the order.
    fn count_prefix(&self, before: impl Fn(f64, &[u8]) -> bool) -> usize {
        match &self.repr {
            Repr::Listpack(pairs) => Pairs(pairs.iter())
                .take_while(|(member, score)| before(*score, member))
                .count(),
            Repr::Skiplist(skiplist) => skiplist.tree.count_prefix(before),
        }
    }

    /// The 0-based ascending rank of `member`.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        match &self.repr {
            Repr::Listpack(pairs) => find(pairs, member).map(|found| found.rank),
            Repr::Skiplist(skiplist) => {
                let score = skiplist.score(member)?;
                Some(
                    skiplist
                        .tree
                        .count_prefix(|s, m| tree::cmp_keys(s, m, score, member).is_lt()),
                )
            }
        }
    }

    /// How many members have a score below `score` (at most `score` when `inclusive`).
    pub fn count_score_below(&self, score: f64, inclusive: bool) -> usize {
        if inclusive {
            self.count_prefix(|s, _| s <= score)
        } else {
            self.count_prefix(|s, _| s < score)
        }
    }

    /// How many members sort before `member` (at most `member` when `inclusive`), comparing
    /// members only: meaningful when all scores are equal, as Redis's lex commands assume.
    pub fn count_member_below(&self, member: &[u8], inclusive: bool) -> usize {
        if inclusive {
            self.count_prefix(|_, m| m <= member)
        } else {
            self.count_prefix(|_, m| m < member)
        }
    }

    /// The member at ascending `rank`.
    pub fn get_by_rank(&self, rank: usize) -> Option<(Element<'_>, f64)> {
        self.range(rank, 1, false).next()
    }

    /// Up to `limit` members from ascending `rank` on, ascending; or, when `reverse`, from
    /// `rank` down to rank 0, descending. `rank` must be below `len()` for a reverse walk.
    pub fn range(
        &self,
        rank: usize,
        limit: usize,
        reverse: bool,
    ) -> impl Iterator<Item = (Element<'_>, f64)> {
        match &self.repr {
            Repr::Listpack(pairs) if reverse => {
                let first = rank.saturating_add(1).saturating_sub(limit);
                let count = rank.saturating_add(1) - first;
                RangeIter::Backward(
                    Pairs(pairs.iter_range(first.saturating_mul(2), count.saturating_mul(2))).rev(),
                )
            }
            Repr::Listpack(pairs) => RangeIter::Forward(Pairs(
                pairs.iter_range(rank.saturating_mul(2), limit.saturating_mul(2)),
            )),
            Repr::Skiplist(skiplist) => {
                RangeIter::Tree(skiplist.tree.iter_from(rank, limit, reverse))
            }
        }
    }

    /// Removes the members of ascending ranks `start..end`; returns them in ascending order.
    pub fn remove_ranks(&mut self, start: usize, end: usize) -> Vec<(Bytes, f64)> {
        let end = end.min(self.len());
        match &mut self.repr {
            Repr::Listpack(pairs) => {
                if start >= end {
                    return Vec::new();
                }
                let removed: Vec<(Bytes, f64)> =
                    Pairs(pairs.iter_range(start * 2, (end - start) * 2))
                        .map(|(member, score)| (member.to_bytes(), score))
                        .collect();
                if let Some(at) = pairs.offset_of(start * 2) {
                    pairs.remove(at, (end - start) * 2);
                }
                removed
            }
            Repr::Skiplist(skiplist) => skiplist.remove_ranks(start, end),
        }
    }

    /// One step of ZSCAN: a `listpack` is visited whole with cursor 0, as Redis does; a
    /// `skiplist` about `count` members from `cursor`. Returns the next cursor, 0 when done. A
    /// member present for the whole scan is visited at least once.
    pub fn scan(&self, cursor: u64, count: usize, mut visit: impl FnMut(&[u8], f64)) -> u64 {
        match &self.repr {
            Repr::Listpack(pairs) => {
                for (member, score) in Pairs(pairs.iter()) {
                    visit(&member, score);
                }
                0
            }
            Repr::Skiplist(skiplist) => {
                let tree = &skiplist.tree;
                let cursor = usize::try_from(cursor).unwrap_or(usize::MAX);
                u64::try_from(tree.scan(cursor, count.max(1), |member, score| {
                    visit(member, score);
                }))
                .unwrap_or(0)
            }
        }
    }

    /// `OBJECT ENCODING`: `listpack` while Redis would keep it there (at most 128 members,
    /// each at most 64 bytes), then `skiplist` for good.
    pub fn encoding(&self) -> &'static str {
        match &self.repr {
            Repr::Listpack(_) => "listpack",
            Repr::Skiplist(_) => "skiplist",
        }
    }

    /// Returns true if and only if Redis would hold this set as a listpack.
    pub fn is_listpack(&self) -> bool {
        matches!(self.repr, Repr::Listpack(_))
    }

    /// Heap bytes, estimated: a listpack's buffer; or the members (shared by map and tree),
    /// the map and the tree arena.
    pub fn heap_size(&self) -> usize {
        match &self.repr {
            Repr::Listpack(pairs) => pairs.heap_size(),
            Repr::Skiplist(skiplist) => skiplist.heap_size(),
        }
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        match &self.repr {
            Repr::Listpack(pairs) => {
                let members: Vec<_> = Pairs(pairs.iter()).collect();
                assert!(
                    members
                        .windows(2)
                        .all(|w| tree::cmp_keys(w[0].1, &w[0].0, w[1].1, &w[1].0).is_lt()),
                    "listpack order"
                );
            }
            Repr::Skiplist(skiplist) => {
                skiplist.tree.check_invariants();
                assert_eq!(skiplist.tree.len(), skiplist.len());
                skiplist
                    .index
                    .check_invariants(|idx| slot_hash(&skiplist.hasher, &skiplist.tree, idx));
                for (member, score) in self.iter() {
                    assert_eq!(
                        skiplist.score(&member).map(f64::to_bits),
                        Some(score.to_bits())
                    );
                }
            }
        }
    }
}

struct ExactLen<I> {
    inner: I,
    remaining: usize,
}

impl<'a, I: Iterator<Item = (Element<'a>, f64)>> Iterator for ExactLen<I> {
    type Item = (Element<'a>, f64);

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.inner.next()?;
        self.remaining = self.remaining.saturating_sub(1);
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<'a, I: Iterator<Item = (Element<'a>, f64)>> ExactSizeIterator for ExactLen<I> {}

#[cfg(test)]
mod tests;
