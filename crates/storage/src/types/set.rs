//! Sets.
//!
//! Two representations, as in Redis 7.0, and `OBJECT ENCODING` names the one in use:
//!
//! * `intset`: members sorted by integer value, for sets of at most [`INTSET_MAX_ENTRIES`]
//!   members that are all canonical 64-bit integers (what Redis's `string2ll` accepts). Sorted
//!   like Redis's intset, so SMEMBERS, SSCAN and the set operations of small integer sets reply
//!   in Redis's order. Lookup is a binary search; insertion and removal shift at most 512
//!   entries, as in Redis.
//! * `hashtable`: a [`Table`] (shared with hashes), once a member is not an integer or the set
//!   grows past the limit, and for good.

use bytes::Bytes;
use rand::Rng;

use super::hash::table::{self, Table};
use super::limits::ENCODING_LIMITS;
use super::packed::{Element, IntSet};
use crate::compact::CompactBytes;
use crate::value::parse_canonical_i64;

/// Redis's `set-max-intset-entries` default; the limit in force is
/// [`super::limits::ENCODING_LIMITS`]'s.
pub const INTSET_MAX_ENTRIES: usize = 512;

/// A set of binary-safe strings.
#[derive(Debug, Clone)]
pub struct Set {
    repr: Repr,
}

#[derive(Debug, Clone)]
enum Repr {
    Intset(IntSet),
    /// Boxed, so that a small set stays small.
    Table(Box<Table<CompactBytes>>),
}

impl Default for Set {
    fn default() -> Set {
        Set {
            repr: Repr::Intset(IntSet::default()),
        }
    }
}

impl PartialEq for Set {
    fn eq(&self, other: &Set) -> bool {
        self.len() == other.len() && self.iter().all(|member| other.contains(&member))
    }
}

impl Eq for Set {}

impl Set {
    /// An empty set.
    pub fn new() -> Set {
        Set::default()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Intset(members) => members.len(),
            Repr::Table(table) => table.len(),
        }
    }

    /// Returns true if and only if the set has no member.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Members: ascending while `intset`, no particular order after.
    pub fn iter(&self) -> Iter<'_> {
        match &self.repr {
            Repr::Intset(members) => Iter(IterRepr::Intset(members, 0..members.len())),
            Repr::Table(table) => Iter(IterRepr::Table(table.iter())),
        }
    }

    /// Returns true if and only if `member` is in the set.
    pub fn contains(&self, member: &[u8]) -> bool {
        match &self.repr {
            Repr::Intset(members) => {
                parse_canonical_i64(member).is_some_and(|n| members.contains(n))
            }
            Repr::Table(table) => table.get(member).is_some(),
        }
    }

    /// Adds `member`; returns true if and only if it was not there.
    pub fn insert(&mut self, member: impl AsRef<[u8]>) -> bool {
        let member = member.as_ref();
        if let Repr::Intset(members) = &mut self.repr {
            if let Some(n) = parse_canonical_i64(member) {
                if !members.insert(n) {
                    return false;
                }
                if members.len() > ENCODING_LIMITS.set_max_entries() {
                    self.convert();
                }
                return true;
            }
            self.convert();
        }
        match &mut self.repr {
            Repr::Table(table) => {
                if table.get(member).is_some() {
                    return false;
                }
                table.insert(CompactBytes::from_slice(member));
                true
            }
            Repr::Intset(_) => false,
        }
    }

    /// Removes `member`; returns true if and only if it was there.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        match &mut self.repr {
            Repr::Intset(members) => parse_canonical_i64(member).is_some_and(|n| members.remove(n)),
            Repr::Table(table) => table.remove(member).is_some(),
        }
    }

    fn convert(&mut self) {
        if let Repr::Intset(members) = &self.repr {
            let mut table = Table::with_capacity(members.len() + 1);
            for n in members.iter() {
                table.insert(CompactBytes::from_slice(Element::from_int(n).as_bytes()));
            }
            self.repr = Repr::Table(Box::new(table));
        }
    }

    /// The position of a uniformly chosen member, for [`Set::at`]; None if the set is empty.
    /// O(1) expected.
    pub fn random_position(&self, rng: &mut impl Rng) -> Option<usize> {
        match &self.repr {
            Repr::Intset(members) if members.len() == 0 => None,
            Repr::Intset(members) => Some(rng.random_range(0..members.len())),
            Repr::Table(table) => table.random_slot(rng),
        }
    }

    /// The member at `position` (see [`Set::random_position`]), valid until the set changes.
    pub fn at(&self, position: usize) -> Option<Element<'_>> {
        match &self.repr {
            Repr::Intset(members) => members.get(position).map(Element::from_int),
            Repr::Table(table) => table.at(position).map(|member| Element::from_bytes(member)),
        }
    }

    /// Removes and returns a uniformly chosen member. O(1) expected for `hashtable` (plus the
    /// shift of at most 512 entries for `intset`, as in Redis).
    pub fn pop_random(&mut self, rng: &mut impl Rng) -> Option<Bytes> {
        let position = self.random_position(rng)?;
        let member = self.at(position)?.to_bytes();
        self.remove(&member);
        Some(member)
    }

    /// One SSCAN step: an `intset` is returned whole with cursor 0, as Redis does; a
    /// `hashtable` `count` members at a time (see [`table`]). Returns the next cursor.
    pub fn scan(&self, cursor: u64, count: usize, mut emit: impl FnMut(&[u8])) -> u64 {
        match &self.repr {
            Repr::Intset(members) => {
                for n in members.iter() {
                    emit(&Element::from_int(n));
                }
                0
            }
            Repr::Table(table) => table.scan(cursor, count, |member| emit(member)),
        }
    }

    /// Builds a set from `members` (duplicates ignored), with the encoding Redis would give it.
    pub fn from_members<M: AsRef<[u8]>>(members: impl IntoIterator<Item = M>) -> Set {
        let mut set = Set::new();
        for member in members {
            set.insert(member);
        }
        set
    }

    /// `OBJECT ENCODING`.
    pub fn encoding(&self) -> &'static str {
        match &self.repr {
            Repr::Intset(_) => "intset",
            Repr::Table(_) => "hashtable",
        }
    }

    /// Heap bytes, estimated.
    pub fn heap_size(&self) -> usize {
        match &self.repr {
            Repr::Intset(members) => members.heap_size(),
            Repr::Table(table) => table.heap_size(),
        }
    }
}

/// The members of a [`Set`].
#[derive(Debug, Clone)]
pub struct Iter<'a>(IterRepr<'a>);

#[derive(Debug, Clone)]
enum IterRepr<'a> {
    Intset(&'a IntSet, std::ops::Range<usize>),
    Table(table::Iter<'a, CompactBytes>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = Element<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            IterRepr::Intset(members, positions) => positions
                .next()
                .and_then(|pos| members.get(pos))
                .map(Element::from_int),
            IterRepr::Table(entries) => entries.next().map(|member| Element::from_bytes(member)),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            IterRepr::Intset(_, positions) => positions.size_hint(),
            IterRepr::Table(entries) => entries.size_hint(),
        }
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn b(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    #[test]
    fn encoding_follows_redis_thresholds() {
        let mut set = Set::new();
        for n in (0..INTSET_MAX_ENTRIES as i64).rev() {
            set.insert(b(&n.to_string()));
        }
        assert_eq!(set.encoding(), "intset");
        let members: Vec<_> = set.iter().take(3).map(|m| m.to_bytes()).collect();
        assert_eq!(members, [b("0"), b("1"), b("2")], "intset is sorted");
        assert_eq!(set.heap_size(), INTSET_MAX_ENTRIES * 2, "16-bit members");
        set.insert(b("100000"));
        assert_eq!(set.encoding(), "hashtable");

        let mut set = Set::from_members(&[b("1"), b("-5")]);
        assert_eq!(set.encoding(), "intset");
        assert!(set.contains(b"-5"));
        assert!(!set.contains(b"-05"));
        set.insert(b("007"));
        assert_eq!(set.encoding(), "hashtable");
        assert!(set.contains(b"-5") && set.contains(b"007"));
        set.remove(b"007");
        assert_eq!(set.encoding(), "hashtable", "never converts back");
    }

    #[test]
    fn pop_random_empties_the_set() {
        let mut rng = rand::rng();
        for members in [vec![b("1"), b("2"), b("3")], vec![b("a"), b("b"), b("c")]] {
            let mut set = Set::from_members(&members);
            let mut popped = BTreeSet::new();
            while let Some(member) = set.pop_random(&mut rng) {
                popped.insert(member);
            }
            assert!(set.is_empty());
            assert_eq!(popped, members.into_iter().collect());
        }
    }

    proptest! {
        #[test]
        fn set_matches_btreeset(ops in proptest::collection::vec(
            (any::<bool>(), 0u16..700, any::<bool>()), 0..900)) {
            let mut set = Set::new();
            let mut model = BTreeSet::new();
            for (insert, n, text) in ops {
                let member = if text { b(&format!("m{n}")) } else { b(&n.to_string()) };
                if insert {
                    prop_assert_eq!(set.insert(member.clone()), model.insert(member));
                } else {
                    prop_assert_eq!(set.remove(&member), model.remove(&member));
                }
            }
            prop_assert_eq!(set.len(), model.len());
            prop_assert_eq!(set.iter().len(), model.len());
            let listed: BTreeSet<Bytes> = set.iter().map(|m| m.to_bytes()).collect();
            prop_assert_eq!(&listed, &model);
            let small = model.len() <= INTSET_MAX_ENTRIES && model.iter().all(|m| parse_canonical_i64(m).is_some());
            if !small {
                prop_assert_eq!(set.encoding(), "hashtable");
            }
            for member in &model {
                prop_assert!(set.contains(member));
            }
            let mut scanned = BTreeSet::new();
            let mut cursor = 0;
            loop {
                cursor = set.scan(cursor, 7, |m| { scanned.insert(Bytes::copy_from_slice(m)); });
                if cursor == 0 { break; }
            }
            prop_assert_eq!(scanned, model);
        }
    }
}
