//! Sorted sets: a member → score hash map for O(1) ZSCORE, and an order-statistic treap over
//! (score, member) (`zset/tree.rs`) for O(log n) ranks, range starts and updates, as Redis's
//! dict + skiplist pair.

mod tree;

use bytes::Bytes;

use self::tree::Tree;

/// Redis 7.0's `zset-max-listpack-entries` default.
const LISTPACK_MAX_ENTRIES: usize = 128;
/// Redis 7.0's `zset-max-listpack-value` default.
const LISTPACK_MAX_VALUE: usize = 64;

/// Members with scores, ordered by (score, member). Scores are never NaN.
#[derive(Debug, Clone, Default)]
pub struct ZSet {
    scores: hashbrown::HashMap<Bytes, f64, super::MemberHasher>,
    tree: Tree,
    /// Whether Redis would have converted this set to `skiplist` (one-way).
    skiplist: bool,
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

impl ZSet {
    /// An empty sorted set.
    pub fn new() -> ZSet {
        ZSet::default()
    }

    /// An empty sorted set that Redis would create as `skiplist` when told to expect
    /// `size_hint` members of which the longest is `max_member_len` bytes (ZADD's first step).
    pub fn with_hint(size_hint: usize, max_member_len: usize) -> ZSet {
        ZSet {
            skiplist: size_hint > LISTPACK_MAX_ENTRIES || max_member_len > LISTPACK_MAX_VALUE,
            ..ZSet::default()
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// Returns true if and only if the sorted set has no member.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// `(member, score)` in ascending (score, member) order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Bytes, f64)> {
        let len = self.len();
        ExactLen {
            inner: self.tree.iter_from(0, len, false),
            remaining: len,
        }
    }

    /// Adds `member` or changes its score; returns true if and only if it was new.
    /// `score` must not be NaN (commands reject NaN before they get here).
    pub fn insert(&mut self, member: Bytes, score: f64) -> bool {
        if self.scores.contains_key(&member) {
            self.update_score(&member, score);
            return false;
        }
        if member.len() > LISTPACK_MAX_VALUE || self.len() + 1 > LISTPACK_MAX_ENTRIES {
            self.skiplist = true;
        }
        let score = self.stored_score(score);
        self.scores.insert(member.clone(), score);
        self.tree.insert(member, score);
        true
    }

    /// Sets the score of an existing `member`; returns its old score, or None (and changes
    /// nothing) if it is absent. `score` must not be NaN.
    pub fn update_score(&mut self, member: &[u8], score: f64) -> Option<f64> {
        let score = self.stored_score(score);
        let slot = self.scores.get_mut(member)?;
        let old_score = *slot;
        *slot = score;
        if old_score.to_bits() != score.to_bits() {
            self.tree.rescore(member, old_score, score);
        }
        Some(old_score)
    }

    /// The score as this encoding keeps it: a listpack stores `-0` as the integer 0, a
    /// skiplist keeps the double's sign (what ZSCORE then shows).
    fn stored_score(&self, score: f64) -> f64 {
        if !self.skiplist && score == 0.0 {
            0.0
        } else {
            score
        }
    }

    /// The score of `member`.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// Removes `member`; returns its score if it was there.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let score = self.scores.remove(member)?;
        self.tree.remove(score, member);
        Some(score)
    }

    /// The 0-based ascending rank of `member`.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let score = self.score(member)?;
        Some(
            self.tree
                .count_prefix(|s, m| tree::cmp_keys(s, m, score, member).is_lt()),
        )
    }

    /// How many members have a score below `score` (at most `score` when `inclusive`).
    pub fn count_score_below(&self, score: f64, inclusive: bool) -> usize {
        if inclusive {
            self.tree.count_prefix(|s, _| s <= score)
        } else {
            self.tree.count_prefix(|s, _| s < score)
        }
    }

    /// How many members sort before `member` (at most `member` when `inclusive`), comparing
    /// members only: meaningful when all scores are equal, as Redis's lex commands assume.
    pub fn count_member_below(&self, member: &[u8], inclusive: bool) -> usize {
        if inclusive {
            self.tree.count_prefix(|_, m| m <= member)
        } else {
            self.tree.count_prefix(|_, m| m < member)
        }
    }

    /// The member at ascending `rank`.
    pub fn get_by_rank(&self, rank: usize) -> Option<(&Bytes, f64)> {
        self.tree.select(rank)
    }

    /// Up to `limit` members from ascending `rank` on, ascending; or, when `reverse`, from
    /// `rank` down to rank 0, descending. `rank` must be below `len()` for a reverse walk.
    pub fn range(
        &self,
        rank: usize,
        limit: usize,
        reverse: bool,
    ) -> impl Iterator<Item = (&Bytes, f64)> {
        self.tree.iter_from(rank, limit, reverse)
    }

    /// Removes the members of ascending ranks `start..end`; returns them in ascending order.
    pub fn remove_ranks(&mut self, start: usize, end: usize) -> Vec<(Bytes, f64)> {
        let end = end.min(self.len());
        let removed = self.tree.remove_ranks(start, end);
        for (member, _) in &removed {
            self.scores.remove(member);
        }
        removed
    }

    /// One step of ZSCAN: visits about `count` members from `cursor`; returns the next cursor,
    /// 0 when done. A member present for the whole scan is visited at least once.
    pub fn scan(&self, cursor: u64, count: usize, visit: impl FnMut(&Bytes, f64)) -> u64 {
        let cursor = usize::try_from(cursor).unwrap_or(usize::MAX);
        u64::try_from(self.tree.scan(cursor, count.max(1), visit)).unwrap_or(0)
    }

    /// `OBJECT ENCODING`: `listpack` while Redis would keep it there (at most 128 members,
    /// each at most 64 bytes), then `skiplist` for good.
    pub fn encoding(&self) -> &'static str {
        if self.skiplist {
            "skiplist"
        } else {
            "listpack"
        }
    }

    /// Returns true if and only if Redis would hold this set as a listpack.
    pub fn is_listpack(&self) -> bool {
        !self.skiplist
    }

    /// Heap bytes, estimated: members (shared by map and tree), the map and the tree arena.
    pub fn heap_size(&self) -> usize {
        let members: usize = self.scores.keys().map(Bytes::len).sum();
        members
            + self.scores.capacity() * std::mem::size_of::<(Bytes, f64)>()
            + self.tree.heap_size()
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        self.tree.check_invariants();
        assert_eq!(self.tree.len(), self.scores.len());
        for (member, score) in self.iter() {
            assert_eq!(
                self.scores.get(member).map(|s| s.to_bits()),
                Some(score.to_bits())
            );
        }
    }
}

struct ExactLen<I> {
    inner: I,
    remaining: usize,
}

impl<'a, I: Iterator<Item = (&'a Bytes, f64)>> Iterator for ExactLen<I> {
    type Item = (&'a Bytes, f64);

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.inner.next()?;
        self.remaining = self.remaining.saturating_sub(1);
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<'a, I: Iterator<Item = (&'a Bytes, f64)>> ExactSizeIterator for ExactLen<I> {}

#[cfg(test)]
mod tests;
