//! Sorted sets.

use bytes::Bytes;

/// Members with scores, ordered by (score, member). Redis 7.0 encodes small sorted sets as
/// `listpack`, others `skiplist`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZSet {
    /// Placeholder representation: (member, score) in (score, member) order.
    entries: Vec<(Bytes, f64)>,
}

impl ZSet {
    /// An empty sorted set.
    pub fn new() -> ZSet {
        ZSet::default()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns true if and only if the sorted set has no member.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `(member, score)` in ascending (score, member) order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Bytes, f64)> {
        self.entries.iter().map(|(member, score)| (member, *score))
    }

    /// Adds or updates `member`; returns true if and only if it was new.
    pub fn insert(&mut self, member: Bytes, score: f64) -> bool {
        let existed = self
            .entries
            .iter()
            .position(|(m, _)| *m == member)
            .map(|pos| self.entries.remove(pos));
        let pos = self
            .entries
            .partition_point(|(m, s)| (*s, m.as_ref()) < (score, member.as_ref()));
        self.entries.insert(pos, (member, score));
        existed.is_none()
    }

    /// `OBJECT ENCODING`.
    pub fn encoding(&self) -> &'static str {
        "skiplist"
    }

    /// Heap bytes, estimated.
    pub fn heap_size(&self) -> usize {
        self.entries
            .iter()
            .map(|(m, _)| m.len() + std::mem::size_of::<(Bytes, f64)>())
            .sum()
    }
}
