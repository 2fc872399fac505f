//! Sets.

use bytes::Bytes;

/// A set of binary-safe strings. Redis 7.0 encodes small all-integer sets as `intset`, others
/// `hashtable`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set {
    members: hashbrown::HashSet<Bytes, super::MemberHasher>,
}

impl Set {
    /// An empty set.
    pub fn new() -> Set {
        Set::default()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Returns true if and only if the set has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Members in no particular order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Bytes> {
        self.members.iter()
    }

    /// Adds `member`; returns true if and only if it was not there.
    pub fn insert(&mut self, member: Bytes) -> bool {
        self.members.insert(member)
    }

    /// `OBJECT ENCODING`.
    pub fn encoding(&self) -> &'static str {
        "hashtable"
    }

    /// Heap bytes, estimated.
    pub fn heap_size(&self) -> usize {
        self.members
            .iter()
            .map(|m| m.len() + std::mem::size_of::<Bytes>())
            .sum()
    }
}
