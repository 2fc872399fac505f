//! Hashes.

use bytes::Bytes;

/// A map of field → value. Redis 7.0 encodes small hashes as `listpack`, others `hashtable`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hash {
    fields: hashbrown::HashMap<Bytes, Bytes, super::MemberHasher>,
}

impl Hash {
    /// An empty hash.
    pub fn new() -> Hash {
        Hash::default()
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Returns true if and only if the hash has no field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// `(field, value)` pairs in no particular order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Bytes, &Bytes)> {
        self.fields.iter()
    }

    /// Sets `field` to `value`; returns true if and only if the field is new.
    pub fn insert(&mut self, field: Bytes, value: Bytes) -> bool {
        self.fields.insert(field, value).is_none()
    }

    /// `OBJECT ENCODING`.
    pub fn encoding(&self) -> &'static str {
        "hashtable"
    }

    /// Heap bytes, estimated.
    pub fn heap_size(&self) -> usize {
        self.fields
            .iter()
            .map(|(f, v)| f.len() + v.len() + 2 * std::mem::size_of::<Bytes>())
            .sum()
    }
}
