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

use rand::Rng;

use self::table::{Table, TableEntry};
use super::limits::ENCODING_LIMITS;
use super::packed::{self, Element, Item, Packed, Probe};

/// Redis 7.0's `hash-max-listpack-entries` default (512 in both the binary and the shipped
/// redis.conf); the limit in force is [`super::limits::ENCODING_LIMITS`]'s.
pub const LISTPACK_MAX_ENTRIES: usize = 512;
/// Redis's `hash-max-listpack-value` default.
pub const LISTPACK_MAX_VALUE: usize = 64;

/// A map of field → value.
#[derive(Debug, Clone)]
pub struct Hash {
    repr: Repr,
}

#[derive(Debug, Clone)]
enum Repr {
    /// Field, value, field, value, ... in insertion order.
    Listpack(Packed),
    /// Boxed, so that a small hash stays small.
    Table(Box<Table<Pair>>),
}

impl Default for Hash {
    fn default() -> Hash {
        Hash {
            repr: Repr::Listpack(Packed::default()),
        }
    }
}

impl PartialEq for Hash {
    fn eq(&self, other: &Hash) -> bool {
        self.len() == other.len() && self.iter().all(|(f, v)| other.get(&f) == Some(v))
    }
}

impl Eq for Hash {}

/// A big hash's field and value in one allocation: the field's length as a varint, the field,
/// the value.
#[derive(Debug, Clone)]
struct Pair(Box<[u8]>);

impl Pair {
    fn new(field: &[u8], value: &[u8]) -> Pair {
        let mut buf =
            Vec::with_capacity(packed::varint_len(field.len() as u64) + field.len() + value.len());
        packed::push_varint(&mut buf, field.len() as u64);
        buf.extend_from_slice(field);
        buf.extend_from_slice(value);
        Pair(buf.into_boxed_slice())
    }

    /// The field and the value.
    fn split(&self) -> (&[u8], &[u8]) {
        let (field_len, header_len) = packed::read_varint(&self.0, 0).unwrap_or_default();
        let field_end = usize::try_from(field_len)
            .unwrap_or(usize::MAX)
            .saturating_add(header_len)
            .min(self.0.len());
        let header_len = header_len.min(field_end);
        (
            self.0.get(header_len..field_end).unwrap_or_default(),
            self.0.get(field_end..).unwrap_or_default(),
        )
    }

    fn field(&self) -> &[u8] {
        self.split().0
    }

    fn value(&self) -> &[u8] {
        self.split().1
    }

    fn elements(&self) -> (Element<'_>, Element<'_>) {
        let (field, value) = self.split();
        (Element::from_bytes(field), Element::from_bytes(value))
    }
}

impl TableEntry for Pair {
    fn key(&self) -> &[u8] {
        self.field()
    }

    fn payload_len(&self) -> usize {
        self.0.len()
    }
}

/// The offsets of `field`'s entry and of its value's entry in a listpack.
fn find(pairs: &Packed, field: &[u8]) -> Option<(usize, usize)> {
    let probe = Probe::new(field);
    let mut at = 0;
    loop {
        let (item, value_at) = pairs.item(at)?;
        if probe.matches(item) {
            return Some((at, value_at));
        }
        at = pairs.item(value_at)?.1;
    }
}

impl Hash {
    /// An empty hash.
    pub fn new() -> Hash {
        Hash::default()
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Listpack(pairs) => pairs.len() / 2,
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
    pub fn get(&self, field: &[u8]) -> Option<Element<'_>> {
        match &self.repr {
            Repr::Listpack(pairs) => {
                let (_, value_at) = find(pairs, field)?;
                pairs.item(value_at).map(|(value, _)| value.into())
            }
            Repr::Table(table) => table
                .get(field)
                .map(|pair| Element::from_bytes(pair.value())),
        }
    }

    /// Returns true if and only if `field` is there.
    pub fn contains(&self, field: &[u8]) -> bool {
        match &self.repr {
            Repr::Listpack(pairs) => find(pairs, field).is_some(),
            Repr::Table(table) => table.get(field).is_some(),
        }
    }

    /// Sets `field` to `value`; returns true if and only if the field is new. Converts to
    /// `hashtable` when the field or value is too long for a listpack, or the hash too big.
    pub fn insert(&mut self, field: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> bool {
        let (field, value) = (field.as_ref(), value.as_ref());
        let max_value = ENCODING_LIMITS.hash_max_value();
        if field.len() > max_value || value.len() > max_value {
            self.convert();
        }
        match &mut self.repr {
            Repr::Listpack(pairs) => {
                if let Some((_, value_at)) = find(pairs, field) {
                    pairs.replace(value_at, Item::text(value));
                    return false;
                }
                let end = pairs.byte_len();
                pairs.insert_many(end, &[Item::text(field), Item::text(value)]);
                if pairs.len() / 2 > ENCODING_LIMITS.hash_max_entries() {
                    self.convert();
                }
                true
            }
            Repr::Table(table) => table.insert(Pair::new(field, value)).is_none(),
        }
    }

    /// Removes `field`; returns true if and only if it was there.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match &mut self.repr {
            Repr::Listpack(pairs) => match find(pairs, field) {
                Some((at, _)) => {
                    pairs.remove(at, 2);
                    true
                }
                None => false,
            },
            Repr::Table(table) => table.remove(field).is_some(),
        }
    }

    fn convert(&mut self) {
        if let Repr::Listpack(pairs) = &self.repr {
            let mut table = Table::with_capacity(pairs.len() / 2 + 1);
            let mut items = pairs.iter().map(Element::from);
            while let (Some(field), Some(value)) = (items.next(), items.next()) {
                table.insert(Pair::new(&field, &value));
            }
            self.repr = Repr::Table(Box::new(table));
        }
    }

    /// The position of a uniformly chosen field, for [`Hash::at`]; None if the hash is empty.
    /// O(1) expected.
    pub fn random_position(&self, rng: &mut impl Rng) -> Option<usize> {
        match &self.repr {
            Repr::Listpack(pairs) if pairs.is_empty() => None,
            Repr::Listpack(pairs) => Some(rng.random_range(0..pairs.len() / 2)),
            Repr::Table(table) => table.random_slot(rng),
        }
    }

    /// The pair at `position` (see [`Hash::random_position`]), valid until the hash changes.
    /// O(n) for a `listpack` (a walk of at most 512 fields, as Redis's), O(1) for a `hashtable`.
    pub fn at(&self, position: usize) -> Option<(Element<'_>, Element<'_>)> {
        match &self.repr {
            Repr::Listpack(pairs) => {
                let mut items = pairs.iter_range(position.checked_mul(2)?, 2);
                Some((items.next()?.into(), items.next()?.into()))
            }
            Repr::Table(table) => table.at(position).map(Pair::elements),
        }
    }

    /// One HSCAN step. A `listpack` hash is returned whole with cursor 0, as Redis does; a
    /// `hashtable` one `count` fields at a time with a cursor that never misses a field present
    /// for the whole scan (see [`table`]). Returns the next cursor, 0 when done.
    pub fn scan(&self, cursor: u64, count: usize, mut emit: impl FnMut(&[u8], &[u8])) -> u64 {
        match &self.repr {
            Repr::Listpack(_) => {
                for (field, value) in self.iter() {
                    emit(&field, &value);
                }
                0
            }
            Repr::Table(table) => {
                table.scan(cursor, count, |pair| emit(pair.field(), pair.value()))
            }
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
        match &self.repr {
            Repr::Listpack(pairs) => pairs.heap_size(),
            Repr::Table(table) => table.heap_size(),
        }
    }
}

/// The pairs of a [`Hash`].
#[derive(Debug, Clone)]
pub struct Iter<'a>(IterRepr<'a>);

#[derive(Debug, Clone)]
enum IterRepr<'a> {
    Listpack(packed::Iter<'a>),
    Table(table::Iter<'a, Pair>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (Element<'a>, Element<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            IterRepr::Listpack(items) => {
                let field = items.next()?;
                let value = items.next()?;
                Some((field.into(), value.into()))
            }
            IterRepr::Table(entries) => entries.next().map(Pair::elements),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = match &self.0 {
            IterRepr::Listpack(items) => items.len() / 2,
            IterRepr::Table(entries) => entries.len(),
        };
        (len, Some(len))
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use bytes::Bytes;

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
        let pairs: Vec<_> = hash
            .iter()
            .map(|(f, v)| (f.to_bytes(), v.to_bytes()))
            .collect();
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
        assert_eq!(
            hash.scan(0, 1, |f, _| scanned.push(Bytes::copy_from_slice(f))),
            0
        );
        assert_eq!(scanned, [b("c"), b("a"), b("d"), b("e")]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, usize),
        Remove(u16),
    }

    /// Fields that are canonical integers (`"3"`) and fields that are not (`"f4"`, `"03"`).
    fn field_name(k: u16) -> Bytes {
        match k % 3 {
            0 => b(&k.to_string()),
            1 => b(&format!("0{k}")),
            _ => b(&format!("f{k}")),
        }
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
                        let field = field_name(k);
                        // Some values are canonical integers, which a listpack stores as such.
                        let value = if len % 4 == 0 { b(&(len as i64 * 1_000_003 - 7).to_string()) } else { Bytes::from(vec![b'v'; len]) };
                        prop_assert_eq!(hash.insert(field.clone(), value.clone()), model.insert(field, value).is_none());
                    }
                    Op::Remove(k) => {
                        let field = field_name(k);
                        prop_assert_eq!(hash.remove(&field), model.remove(&field).is_some());
                    }
                }
            }
            prop_assert_eq!(hash.len(), model.len());
            let listed: BTreeMap<Bytes, Bytes> = hash.iter().map(|(f, v)| (f.to_bytes(), v.to_bytes())).collect();
            prop_assert_eq!(listed, model.clone());
            for (field, value) in &model {
                prop_assert_eq!(hash.get(field).map(|v| v.to_bytes()), Some(value.clone()));
            }
            let mut scanned = BTreeMap::new();
            let mut cursor = 0;
            loop {
                cursor = hash.scan(cursor, 5, |f, v| { scanned.insert(Bytes::copy_from_slice(f), Bytes::copy_from_slice(v)); });
                if cursor == 0 { break; }
            }
            prop_assert_eq!(&scanned, &model);
            if let Some(position) = hash.random_position(&mut rand::rng()) {
                let (field, value) = hash.at(position).unwrap();
                prop_assert_eq!(model.get(field.as_bytes()).map(Bytes::as_ref), Some(value.as_bytes()));
            }
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
