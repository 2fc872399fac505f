//! Hashes.
//!
//! Two representations, as in Redis 7.0, and `OBJECT ENCODING` names the one in use:
//!
//! * `listpack`: a vector of `(field, value)` pairs in insertion order, searched linearly, for
//!   hashes of at most [`LISTPACK_MAX_ENTRIES`] fields whose fields and values are all at most
//!   [`LISTPACK_MAX_VALUE`] bytes. Like Redis's listpack it keeps insertion order (an update
//!   keeps the field's place, a removal closes the gap), so HGETALL, HKEYS and HSCAN of a small
//!   hash reply in the same order as Redis.
//! * `hashtable`: a [`Table`], once either limit is crossed, and for good (Redis never converts
//!   back either).

pub(crate) mod table;

use bytes::Bytes;
use rand::Rng;

use self::table::Table;

/// Redis 7.0's `hash-max-listpack-entries` default (512 in both the binary and the shipped
/// redis.conf).
pub const LISTPACK_MAX_ENTRIES: usize = 512;
/// Redis's `hash-max-listpack-value` default.
pub const LISTPACK_MAX_VALUE: usize = 64;

/// A map of field → value.
#[derive(Debug, Clone)]
pub struct Hash {
    repr: Repr,
    /// Bytes of every field and value, kept up to date so `heap_size` is O(1).
    payload_bytes: usize,
}

#[derive(Debug, Clone)]
enum Repr {
    Listpack(Vec<(Bytes, Bytes)>),
    Table(Table<Bytes>),
}

impl Default for Hash {
    fn default() -> Hash {
        Hash {
            repr: Repr::Listpack(Vec::new()),
            payload_bytes: 0,
        }
    }
}

impl PartialEq for Hash {
    fn eq(&self, other: &Hash) -> bool {
        self.len() == other.len() && self.iter().all(|(f, v)| other.get(f) == Some(v))
    }
}

impl Eq for Hash {}

impl Hash {
    /// An empty hash.
    pub fn new() -> Hash {
        Hash::default()
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Listpack(pairs) => pairs.len(),
            Repr::Table(table) => table.len(),
        }
    }

    /// Returns true if and only if the hash has no field.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(field, value)` pairs: insertion order while `listpack`, no particular order after.
    pub fn iter(&self) -> Iter<'_> {
        match &self.repr {
            Repr::Listpack(pairs) => Iter(IterRepr::Listpack(pairs.iter())),
            Repr::Table(table) => Iter(IterRepr::Table(table.iter())),
        }
    }

    /// The value of `field`.
    pub fn get(&self, field: &[u8]) -> Option<&Bytes> {
        match &self.repr {
            Repr::Listpack(pairs) => pairs.iter().find(|(f, _)| f == field).map(|(_, v)| v),
            Repr::Table(table) => table.get(field),
        }
    }

    /// Returns true if and only if `field` is there.
    pub fn contains(&self, field: &[u8]) -> bool {
        self.get(field).is_some()
    }

    /// Sets `field` to `value`; returns true if and only if the field is new. Converts to
    /// `hashtable` when the field or value is too long for a listpack, or the hash too big.
    pub fn insert(&mut self, field: Bytes, value: Bytes) -> bool {
        if field.len() > LISTPACK_MAX_VALUE || value.len() > LISTPACK_MAX_VALUE {
            self.convert();
        }
        let (field_len, value_len) = (field.len(), value.len());
        let old = match &mut self.repr {
            Repr::Listpack(pairs) => {
                if let Some((_, old)) = pairs.iter_mut().find(|(f, _)| *f == field) {
                    Some(std::mem::replace(old, value))
                } else {
                    pairs.push((field, value));
                    if pairs.len() > LISTPACK_MAX_ENTRIES {
                        self.convert();
                    }
                    None
                }
            }
            Repr::Table(table) => table.insert(field, value),
        };
        match old {
            Some(old) => {
                self.payload_bytes = self.payload_bytes - old.len() + value_len;
                false
            }
            None => {
                self.payload_bytes += field_len + value_len;
                true
            }
        }
    }

    /// Removes `field`; returns true if and only if it was there.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        let removed = match &mut self.repr {
            Repr::Listpack(pairs) => pairs
                .iter()
                .position(|(f, _)| f == field)
                .map(|pos| pairs.remove(pos)),
            Repr::Table(table) => table.remove(field),
        };
        removed.is_some_and(|(field, value)| {
            self.payload_bytes -= field.len() + value.len();
            true
        })
    }

    fn convert(&mut self) {
        if let Repr::Listpack(pairs) = &mut self.repr {
            let mut table = Table::with_capacity(pairs.len());
            for (field, value) in pairs.drain(..) {
                table.insert(field, value);
            }
            self.repr = Repr::Table(table);
        }
    }

    /// The position of a uniformly chosen field, for [`Hash::at`]; None if the hash is empty.
    /// O(1) expected.
    pub fn random_position(&self, rng: &mut impl Rng) -> Option<usize> {
        match &self.repr {
            Repr::Listpack(pairs) if pairs.is_empty() => None,
            Repr::Listpack(pairs) => Some(rng.random_range(0..pairs.len())),
            Repr::Table(table) => table.random_slot(rng),
        }
    }

    /// The pair at `position` (see [`Hash::random_position`]), valid until the hash changes.
    pub fn at(&self, position: usize) -> Option<(&Bytes, &Bytes)> {
        match &self.repr {
            Repr::Listpack(pairs) => pairs.get(position).map(|(f, v)| (f, v)),
            Repr::Table(table) => table.at(position),
        }
    }

    /// One HSCAN step. A `listpack` hash is returned whole with cursor 0, as Redis does; a
    /// `hashtable` one `count` fields at a time with a cursor that never misses a field present
    /// for the whole scan (see [`table`]). Returns the next cursor, 0 when done.
    pub fn scan(&self, cursor: u64, count: usize, mut emit: impl FnMut(&Bytes, &Bytes)) -> u64 {
        match &self.repr {
            Repr::Listpack(pairs) => {
                for (field, value) in pairs {
                    emit(field, value);
                }
                0
            }
            Repr::Table(table) => table.scan(cursor, count, emit),
        }
    }

    /// `OBJECT ENCODING`.
    pub fn encoding(&self) -> &'static str {
        match &self.repr {
            Repr::Listpack(_) => "listpack",
            Repr::Table(_) => "hashtable",
        }
    }

    /// Heap bytes, estimated.
    pub fn heap_size(&self) -> usize {
        self.payload_bytes
            + match &self.repr {
                Repr::Listpack(pairs) => pairs.capacity() * std::mem::size_of::<(Bytes, Bytes)>(),
                Repr::Table(table) => table.overhead(),
            }
    }
}

/// The pairs of a [`Hash`].
#[derive(Debug, Clone)]
pub struct Iter<'a>(IterRepr<'a>);

#[derive(Debug, Clone)]
enum IterRepr<'a> {
    Listpack(std::slice::Iter<'a, (Bytes, Bytes)>),
    Table(table::Iter<'a, Bytes>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a Bytes, &'a Bytes);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            IterRepr::Listpack(pairs) => pairs.next().map(|(f, v)| (f, v)),
            IterRepr::Table(entries) => entries.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            IterRepr::Listpack(pairs) => pairs.size_hint(),
            IterRepr::Table(entries) => entries.size_hint(),
        }
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn b(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    #[test]
    fn encoding_follows_redis_thresholds() {
        let mut hash = Hash::new();
        for n in 0..LISTPACK_MAX_ENTRIES {
            hash.insert(b(&format!("f{n}")), b("v"));
        }
        assert_eq!(hash.encoding(), "listpack");
        hash.insert(b("one-more"), b("v"));
        assert_eq!(hash.encoding(), "hashtable");
        for n in 0..LISTPACK_MAX_ENTRIES {
            hash.remove(format!("f{n}").as_bytes());
        }
        assert_eq!(hash.encoding(), "hashtable", "never converts back");

        let mut hash = Hash::new();
        hash.insert(b("f"), Bytes::from(vec![b'x'; LISTPACK_MAX_VALUE]));
        assert_eq!(hash.encoding(), "listpack");
        hash.insert(b("f"), Bytes::from(vec![b'x'; LISTPACK_MAX_VALUE + 1]));
        assert_eq!(hash.encoding(), "hashtable");
        let mut hash = Hash::new();
        hash.insert(Bytes::from(vec![b'x'; LISTPACK_MAX_VALUE + 1]), b("v"));
        assert_eq!(hash.encoding(), "hashtable");
    }

    #[test]
    fn listpack_keeps_insertion_order() {
        let mut hash = Hash::new();
        for field in ["c", "a", "b", "d"] {
            hash.insert(b(field), b(field));
        }
        hash.insert(b("a"), b("new"));
        hash.remove(b"b");
        hash.insert(b("e"), b("e"));
        let pairs: Vec<_> = hash.iter().map(|(f, v)| (f.clone(), v.clone())).collect();
        assert_eq!(
            pairs,
            [
                (b("c"), b("c")),
                (b("a"), b("new")),
                (b("d"), b("d")),
                (b("e"), b("e"))
            ]
        );
        let mut scanned = Vec::new();
        assert_eq!(hash.scan(0, 1, |f, _| scanned.push(f.clone())), 0);
        assert_eq!(scanned, [b("c"), b("a"), b("d"), b("e")]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, usize),
        Remove(u16),
    }

    proptest! {
        #[test]
        fn hash_matches_btreemap(ops in proptest::collection::vec(prop_oneof![
            (0u16..300, 0usize..70).prop_map(|(k, len)| Op::Insert(k, len)),
            (0u16..300).prop_map(Op::Remove),
        ], 0..500)) {
            let mut hash = Hash::new();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, len) => {
                        let field = b(&format!("f{k}"));
                        let value = Bytes::from(vec![b'v'; len]);
                        prop_assert_eq!(hash.insert(field.clone(), value.clone()), model.insert(field, value).is_none());
                    }
                    Op::Remove(k) => {
                        let field = format!("f{k}");
                        prop_assert_eq!(hash.remove(field.as_bytes()), model.remove(field.as_bytes()).is_some());
                    }
                }
            }
            prop_assert_eq!(hash.len(), model.len());
            let listed: BTreeMap<Bytes, Bytes> = hash.iter().map(|(f, v)| (f.clone(), v.clone())).collect();
            prop_assert_eq!(listed, model.clone());
            prop_assert_eq!(hash.payload_bytes, model.iter().map(|(f, v)| f.len() + v.len()).sum::<usize>());
            let small = model.len() <= LISTPACK_MAX_ENTRIES && model.values().all(|v| v.len() <= LISTPACK_MAX_VALUE);
            if !small {
                prop_assert_eq!(hash.encoding(), "hashtable");
            }
            let mut clone = hash.clone();
            prop_assert_eq!(&clone, &hash);
            if let Some((field, _)) = model.iter().next() {
                clone.remove(field);
                prop_assert_ne!(&clone, &hash);
            }
        }
    }
}
