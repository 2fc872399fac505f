//! Lists.

use std::collections::VecDeque;

use bytes::Bytes;

/// A list of binary-safe strings. Redis 7.0 reports every list as `quicklist`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct List {
    items: VecDeque<Bytes>,
}

impl List {
    /// An empty list.
    pub fn new() -> List {
        List::default()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Returns true if and only if the list has no element.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Elements from head to tail.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Bytes> {
        self.items.iter()
    }

    /// Appends at the tail.
    pub fn push_back(&mut self, item: Bytes) {
        self.items.push_back(item);
    }

    /// `OBJECT ENCODING`.
    pub fn encoding(&self) -> &'static str {
        "quicklist"
    }

    /// Heap bytes, estimated.
    pub fn heap_size(&self) -> usize {
        self.items
            .iter()
            .map(|item| item.len() + std::mem::size_of::<Bytes>())
            .sum()
    }
}
