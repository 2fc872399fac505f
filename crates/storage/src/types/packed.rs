//! Packed element buffers, the small encodings of Redis: [`Packed`] is a listpack (entries back
//! to back in one allocation), [`IntSet`] an intset (a sorted array of integers as narrow as
//! its widest member needs).
//!
//! A packed entry is
//!
//! ```text
//! header: varint   even: a byte string of (header >> 1) bytes follows
//!                  odd:  an integer of (header >> 1) bytes (0..=8) follows, little-endian,
//!                        two's complement, sign-extended; 0 bytes is the integer 0
//! payload
//! back length: the varint of len(header) + len(payload), bytes in reverse order, so that the
//!              buffer can be walked backwards from any entry's end
//! ```
//!
//! A byte string that is a canonical 64-bit integer (see [`crate::value::parse_canonical_i64`])
//! is stored as the integer ([`Item::text`]); its text is exactly reproducible, so readers get
//! the same bytes back, as with Redis's listpack. Lookups are linear scans, as in Redis, over
//! buffers bounded by the same `*-max-listpack-*` thresholds.
//!
//! The buffers are only ever written by this module, so a malformed entry cannot occur; the
//! readers still never index out of bounds, and treat one as the end of the buffer.

use std::ops::Deref;

use bytes::Bytes;

use crate::value::parse_canonical_i64;

/// The longest decimal text of an `i64` (`-9223372036854775808`).
const MAX_INT_TEXT: usize = 20;

/// An element as a collection hands it out: bytes borrowed from the collection, or the decimal
/// text of an integer the collection stores as an integer. Derefs to the bytes either way.
#[derive(Clone, Copy)]
pub struct Element<'a>(ElementRepr<'a>);

#[derive(Clone, Copy)]
enum ElementRepr<'a> {
    Bytes(&'a [u8]),
    Int { text: [u8; MAX_INT_TEXT], len: u8 },
}

impl<'a> Element<'a> {
    /// The element whose bytes are `bytes`.
    pub fn from_bytes(bytes: &'a [u8]) -> Element<'a> {
        Element(ElementRepr::Bytes(bytes))
    }

    /// The element whose bytes are the decimal text of `n`.
    pub fn from_int(n: i64) -> Element<'static> {
        let mut formatter = itoa::Buffer::new();
        let digits = formatter.format(n).as_bytes();
        let mut text = [0u8; MAX_INT_TEXT];
        let len = digits.len().min(MAX_INT_TEXT);
        if let (Some(dst), Some(src)) = (text.get_mut(..len), digits.get(..len)) {
            dst.copy_from_slice(src);
        }
        Element(ElementRepr::Int {
            text,
            len: len as u8,
        })
    }

    /// The element's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            ElementRepr::Bytes(bytes) => bytes,
            ElementRepr::Int { text, len } => text.get(..usize::from(*len)).unwrap_or_default(),
        }
    }

    /// The element's bytes, owned.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

impl Deref for Element<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Element<'_> {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for Element<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl PartialEq for Element<'_> {
    fn eq(&self, other: &Element<'_>) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Element<'_> {}

impl PartialEq<[u8]> for Element<'_> {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_bytes() == other
    }
}

impl<'a> From<Item<'a>> for Element<'a> {
    fn from(item: Item<'a>) -> Element<'a> {
        match item {
            Item::Bytes(bytes) => Element::from_bytes(bytes),
            Item::Int(n) => Element::from_int(n),
        }
    }
}

/// One entry's content as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item<'a> {
    Bytes(&'a [u8]),
    Int(i64),
}

impl<'a> Item<'a> {
    /// How a packed buffer stores the byte string `bytes`: a canonical integer as the integer.
    pub(crate) fn text(bytes: &'a [u8]) -> Item<'a> {
        if bytes.len() <= MAX_INT_TEXT {
            if let Some(n) = parse_canonical_i64(bytes) {
                return Item::Int(n);
            }
        }
        Item::Bytes(bytes)
    }

    /// Bytes this item takes in a packed buffer.
    pub(crate) fn encoded_len(&self) -> usize {
        let body = match self {
            Item::Bytes(bytes) => varint_len(header(*self)) + bytes.len(),
            Item::Int(n) => varint_len(header(*self)) + int_width(*n),
        };
        body + varint_len(body as u64)
    }
}

/// A byte string to compare entries with, parsed once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe<'a> {
    bytes: &'a [u8],
    int: Option<i64>,
}

impl<'a> Probe<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Probe<'a> {
        let int = match Item::text(bytes) {
            Item::Int(n) => Some(n),
            Item::Bytes(_) => None,
        };
        Probe { bytes, int }
    }

    /// Returns true if and only if `item` stores the probe's bytes.
    pub(crate) fn matches(&self, item: Item<'_>) -> bool {
        match item {
            Item::Bytes(bytes) => bytes == self.bytes,
            Item::Int(n) => self.int == Some(n),
        }
    }
}

fn header(item: Item<'_>) -> u64 {
    match item {
        Item::Bytes(bytes) => (bytes.len() as u64) << 1,
        Item::Int(n) => ((int_width(n) as u64) << 1) | 1,
    }
}

/// The fewest little-endian bytes whose sign extension is `n`.
fn int_width(n: i64) -> usize {
    (0..8)
        .find(|&width| sign_extend(n, width) == n)
        .unwrap_or(8)
}

fn sign_extend(n: i64, width: usize) -> i64 {
    if width == 0 {
        return 0;
    }
    let shift = 64 - 8 * width as u32;
    n.wrapping_shl(shift).wrapping_shr(shift)
}

pub(crate) fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

pub(crate) fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The varint at `at`: (value, bytes it takes).
pub(crate) fn read_varint(buf: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in buf.get(at..)?.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i as u32);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The reversed varint that ends at `end`: (value, bytes it takes).
fn read_back_varint(buf: &[u8], end: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for i in 0..10 {
        let byte = *buf.get(end.checked_sub(i + 1)?)?;
        value |= u64::from(byte & 0x7f) << (7 * i as u32);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn encode(out: &mut Vec<u8>, item: Item<'_>) {
    let start = out.len();
    push_varint(out, header(item));
    match item {
        Item::Bytes(bytes) => out.extend_from_slice(bytes),
        Item::Int(n) => out.extend_from_slice(n.to_le_bytes().get(..int_width(n)).unwrap_or(&[])),
    }
    let body = (out.len() - start) as u64;
    let back_start = out.len();
    push_varint(out, body);
    if let Some(back) = out.get_mut(back_start..) {
        back.reverse();
    }
}

/// Entries back to back in one buffer: Redis's listpack.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Packed {
    buf: Vec<u8>,
    len: usize,
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Packed {
    /// An empty buffer.
    pub(crate) const fn new() -> Packed {
        Packed {
            buf: Vec::new(),
            len: 0,
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the encoded entries.
    pub(crate) fn byte_len(&self) -> usize {
        self.buf.len()
    }

    /// Heap bytes.
    pub(crate) fn heap_size(&self) -> usize {
        self.buf.capacity()
    }

    /// The entry that starts at `at` and the offset of the next one.
    pub(crate) fn item(&self, at: usize) -> Option<(Item<'_>, usize)> {
        let (header, header_len) = read_varint(&self.buf, at)?;
        let start = at + header_len;
        let width = usize::try_from(header >> 1).ok()?;
        let end = start.checked_add(width)?;
        let payload = self.buf.get(start..end)?;
        let item = if header & 1 == 0 {
            Item::Bytes(payload)
        } else {
            let mut le = [0u8; 8];
            le.get_mut(..width)?.copy_from_slice(payload);
            Item::Int(sign_extend(i64::from_le_bytes(le), width))
        };
        Some((item, end + varint_len((end - at) as u64)))
    }

    /// The entry that ends at `end` and the offset where it starts.
    pub(crate) fn item_before(&self, end: usize) -> Option<(Item<'_>, usize)> {
        let (body, back_len) = read_back_varint(&self.buf, end)?;
        let start = end
            .checked_sub(back_len)?
            .checked_sub(usize::try_from(body).ok()?)?;
        let (item, _) = self.item(start)?;
        Some((item, start))
    }

    /// The offset of the entry at position `index`, or the end offset when `index == len`.
    pub(crate) fn offset_of(&self, index: usize) -> Option<usize> {
        if index > self.len {
            return None;
        }
        if index == self.len {
            return Some(self.buf.len());
        }
        if index > self.len / 2 {
            let mut end = self.buf.len();
            for _ in index..self.len {
                end = self.item_before(end)?.1;
            }
            return Some(end);
        }
        let mut at = 0;
        for _ in 0..index {
            at = self.item(at)?.1;
        }
        Some(at)
    }

    /// Makes room for `additional` bytes: exactly for small buffers, with an eighth to spare
    /// for bigger ones so a run of appends does not reallocate every time.
    fn reserve(&mut self, additional: usize) {
        let spare = self.buf.capacity() - self.buf.len();
        if spare < additional {
            self.buf.reserve_exact(additional.max(self.buf.len() / 8));
        }
    }

    /// Inserts `item` as the entry at offset `at` (an entry boundary or the end).
    pub(crate) fn insert(&mut self, at: usize, item: Item<'_>) {
        self.insert_many(at, &[item]);
    }

    /// Inserts `items`, in order, at offset `at` (an entry boundary or the end).
    pub(crate) fn insert_many(&mut self, at: usize, items: &[Item<'_>]) {
        let at = at.min(self.buf.len());
        let added: usize = items.iter().map(Item::encoded_len).sum();
        self.reserve(added);
        if at == self.buf.len() {
            for item in items {
                encode(&mut self.buf, *item);
            }
        } else {
            let mut encoded = Vec::with_capacity(added);
            for item in items {
                encode(&mut encoded, *item);
            }
            self.buf.splice(at..at, encoded);
        }
        self.len += items.len();
    }

    /// Appends `item`.
    pub(crate) fn push(&mut self, item: Item<'_>) {
        self.insert(self.buf.len(), item);
    }

    /// Removes `count` entries from offset `at` on.
    pub(crate) fn remove(&mut self, at: usize, count: usize) {
        let mut end = at;
        let mut removed = 0;
        while removed < count {
            match self.item(end) {
                Some((_, next)) => end = next,
                None => break,
            }
            removed += 1;
        }
        self.buf.drain(at..end);
        self.len -= removed;
        self.shrink();
    }

    /// Removes the last `count` entries.
    pub(crate) fn remove_back(&mut self, count: usize) {
        let mut start = self.buf.len();
        let mut removed = 0;
        while removed < count {
            match self.item_before(start) {
                Some((_, before)) => start = before,
                None => break,
            }
            removed += 1;
        }
        self.buf.truncate(start);
        self.len -= removed;
        self.shrink();
    }

    /// Replaces the entry at offset `at` with `item`.
    pub(crate) fn replace(&mut self, at: usize, item: Item<'_>) {
        let Some((_, end)) = self.item(at) else {
            return;
        };
        let mut encoded = Vec::with_capacity(item.encoded_len());
        encode(&mut encoded, item);
        if encoded.len() > end - at {
            self.reserve(encoded.len() - (end - at));
        }
        self.buf.splice(at..end, encoded);
        self.shrink();
    }

    /// Splits off the entries from position `index` on into a new buffer.
    pub(crate) fn split_off(&mut self, index: usize) -> Packed {
        let Some(at) = self.offset_of(index) else {
            return Packed::default();
        };
        let tail = self.buf.split_off(at);
        let tail_len = self.len - index;
        self.len = index;
        self.buf.shrink_to_fit();
        Packed {
            buf: tail,
            len: tail_len,
        }
    }

    /// Gives back capacity beyond an eighth of spare.
    fn shrink(&mut self) {
        if self.buf.capacity() > self.buf.len() + self.buf.len() / 8 + 16 {
            self.buf.shrink_to_fit();
        }
    }

    /// Entries from first to last.
    pub(crate) fn iter(&self) -> Iter<'_> {
        Iter {
            packed: self,
            front: 0,
            back: self.buf.len(),
            remaining: self.len,
        }
    }

    /// Entries from position `start` on, `count` of them at most.
    pub(crate) fn iter_range(&self, start: usize, count: usize) -> Iter<'_> {
        let start = start.min(self.len);
        let count = count.min(self.len - start);
        let front = self.offset_of(start).unwrap_or(self.buf.len());
        let back = self.offset_of(start + count).unwrap_or(self.buf.len());
        Iter {
            packed: self,
            front,
            back,
            remaining: count,
        }
    }
}

/// The items of a [`Packed`], as stored.
#[derive(Debug, Clone)]
pub(crate) struct Iter<'a> {
    packed: &'a Packed,
    front: usize,
    back: usize,
    remaining: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        if self.remaining == 0 || self.front >= self.back {
            return None;
        }
        let (item, next) = self.packed.item(self.front)?;
        self.front = next;
        self.remaining -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 || self.front >= self.back {
            return None;
        }
        let (item, start) = self.packed.item_before(self.back)?;
        self.back = start;
        self.remaining -= 1;
        Some(item)
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// A sorted array of distinct integers, each as wide as the widest needs: Redis's intset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IntSet {
    I16(Box<[i16]>),
    I32(Box<[i32]>),
    I64(Box<[i64]>),
}

impl Default for IntSet {
    fn default() -> IntSet {
        IntSet::I16(Box::default())
    }
}

fn search<T: Ord + Copy>(
    items: &[T],
    n: i64,
    narrow: impl Fn(i64) -> Option<T>,
) -> Result<usize, usize> {
    match narrow(n) {
        Some(n) => items.binary_search(&n),
        // Wider than every member: below or above all of them.
        None if n < 0 => Err(0),
        None => Err(items.len()),
    }
}

/// Inserts at `pos`, reallocating to exactly one more slot, as Redis's intset does.
fn insert_exact<T: Copy>(items: &mut Box<[T]>, pos: usize, item: T) {
    let mut grown = Vec::with_capacity(items.len() + 1);
    grown.extend_from_slice(items.get(..pos).unwrap_or_default());
    grown.push(item);
    grown.extend_from_slice(items.get(pos..).unwrap_or_default());
    *items = grown.into_boxed_slice();
}

/// Removes the item at `pos`, reallocating to exactly one slot less.
fn remove_exact<T: Copy>(items: &mut Box<[T]>, pos: usize) {
    let mut shrunk = Vec::with_capacity(items.len().saturating_sub(1));
    shrunk.extend_from_slice(items.get(..pos).unwrap_or_default());
    shrunk.extend_from_slice(items.get(pos + 1..).unwrap_or_default());
    *items = shrunk.into_boxed_slice();
}

impl IntSet {
    pub(crate) fn len(&self) -> usize {
        match self {
            IntSet::I16(items) => items.len(),
            IntSet::I32(items) => items.len(),
            IntSet::I64(items) => items.len(),
        }
    }

    /// Where `n` is (`Ok`) or would go (`Err`).
    fn search(&self, n: i64) -> Result<usize, usize> {
        match self {
            IntSet::I16(items) => search(items, n, |n| i16::try_from(n).ok()),
            IntSet::I32(items) => search(items, n, |n| i32::try_from(n).ok()),
            IntSet::I64(items) => search(items, n, Some),
        }
    }

    pub(crate) fn contains(&self, n: i64) -> bool {
        self.search(n).is_ok()
    }

    /// The member at position `pos` (ascending).
    pub(crate) fn get(&self, pos: usize) -> Option<i64> {
        match self {
            IntSet::I16(items) => items.get(pos).map(|&n| i64::from(n)),
            IntSet::I32(items) => items.get(pos).map(|&n| i64::from(n)),
            IntSet::I64(items) => items.get(pos).copied(),
        }
    }

    /// Adds `n`; returns true if and only if it was not there.
    pub(crate) fn insert(&mut self, n: i64) -> bool {
        let Err(pos) = self.search(n) else {
            return false;
        };
        self.widen_for(n);
        match self {
            IntSet::I16(items) => {
                if let Ok(n) = i16::try_from(n) {
                    insert_exact(items, pos, n);
                }
            }
            IntSet::I32(items) => {
                if let Ok(n) = i32::try_from(n) {
                    insert_exact(items, pos, n);
                }
            }
            IntSet::I64(items) => insert_exact(items, pos, n),
        }
        true
    }

    /// Upgrades the encoding so that it holds `n`, as Redis's `intsetUpgradeAndAdd`.
    fn widen_for(&mut self, n: i64) {
        let needs_64 = i32::try_from(n).is_err();
        let needs_32 = i16::try_from(n).is_err();
        match self {
            IntSet::I16(items) if needs_64 => {
                *self = IntSet::I64(items.iter().map(|&n| i64::from(n)).collect());
            }
            IntSet::I16(items) if needs_32 => {
                *self = IntSet::I32(items.iter().map(|&n| i32::from(n)).collect());
            }
            IntSet::I32(items) if needs_64 => {
                *self = IntSet::I64(items.iter().map(|&n| i64::from(n)).collect());
            }
            _ => {}
        }
    }

    /// Removes `n`; returns true if and only if it was there.
    pub(crate) fn remove(&mut self, n: i64) -> bool {
        let Ok(pos) = self.search(n) else {
            return false;
        };
        match self {
            IntSet::I16(items) => remove_exact(items, pos),
            IntSet::I32(items) => remove_exact(items, pos),
            IntSet::I64(items) => remove_exact(items, pos),
        }
        true
    }

    /// Members, ascending.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = i64> + Clone + '_ {
        (0..self.len()).map(|pos| self.get(pos).unwrap_or_default())
    }

    pub(crate) fn heap_size(&self) -> usize {
        match self {
            IntSet::I16(items) => items.len() * 2,
            IntSet::I32(items) => items.len() * 4,
            IntSet::I64(items) => items.len() * 8,
        }
    }

    #[cfg(test)]
    pub(crate) fn encoding_width(&self) -> usize {
        match self {
            IntSet::I16(_) => 2,
            IntSet::I32(_) => 4,
            IntSet::I64(_) => 8,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn text_of(item: Item<'_>) -> Vec<u8> {
        Element::from(item).as_bytes().to_vec()
    }

    #[test]
    fn integers_are_stored_as_integers_and_read_back_as_text() {
        for text in [
            &b"0"[..],
            b"-1",
            b"127",
            b"-9223372036854775808",
            b"9223372036854775807",
        ] {
            assert!(matches!(Item::text(text), Item::Int(_)));
            let mut packed = Packed::default();
            packed.push(Item::text(text));
            let items: Vec<_> = packed.iter().map(text_of).collect();
            assert_eq!(items, [text.to_vec()]);
        }
        for text in [&b"01"[..], b"-0", b"+1", b"99999999999999999999", b""] {
            assert_eq!(Item::text(text), Item::Bytes(text));
        }
        let mut packed = Packed::default();
        packed.push(Item::text(b"5"));
        assert_eq!(packed.byte_len(), 3, "header, one byte, back length");
        assert_eq!(
            Element::from_int(i64::MIN).as_bytes(),
            b"-9223372036854775808"
        );
    }

    #[test]
    fn probe_matches_by_text() {
        let probe = Probe::new(b"12");
        assert!(probe.matches(Item::Int(12)));
        assert!(!probe.matches(Item::Int(13)));
        assert!(Probe::new(b"012").matches(Item::Bytes(b"012")));
        assert!(!Probe::new(b"012").matches(Item::Int(12)));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(usize, Vec<u8>),
        Remove(usize, usize),
        RemoveBack(usize),
        Replace(usize, Vec<u8>),
        SplitAndJoin(usize),
    }

    fn text() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string().into_bytes()),
            (-300i64..300).prop_map(|n| n.to_string().into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..200),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<usize>(), text()).prop_map(|(at, t)| Op::Insert(at, t)),
            (any::<usize>(), 0..4usize).prop_map(|(at, n)| Op::Remove(at, n)),
            (0..4usize).prop_map(Op::RemoveBack),
            (any::<usize>(), text()).prop_map(|(at, t)| Op::Replace(at, t)),
            any::<usize>().prop_map(Op::SplitAndJoin),
        ]
    }

    proptest! {
        #[test]
        fn packed_matches_a_vec(ops in proptest::collection::vec(op(), 0..80)) {
            let mut packed = Packed::default();
            let mut model: Vec<Vec<u8>> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(at, t) => {
                        let index = at % (model.len() + 1);
                        let offset = packed.offset_of(index).unwrap();
                        packed.insert(offset, Item::text(&t));
                        model.insert(index, t);
                    }
                    Op::Remove(at, n) => {
                        if !model.is_empty() {
                            let index = at % model.len();
                            let n = n.min(model.len() - index);
                            packed.remove(packed.offset_of(index).unwrap(), n);
                            model.drain(index..index + n);
                        }
                    }
                    Op::RemoveBack(n) => {
                        let n = n.min(model.len());
                        packed.remove_back(n);
                        model.truncate(model.len() - n);
                    }
                    Op::Replace(at, t) => {
                        if !model.is_empty() {
                            let index = at % model.len();
                            packed.replace(packed.offset_of(index).unwrap(), Item::text(&t));
                            model[index] = t;
                        }
                    }
                    Op::SplitAndJoin(at) => {
                        let index = at % (model.len() + 1);
                        let tail = packed.split_off(index);
                        prop_assert_eq!(packed.len(), index);
                        let items: Vec<Item<'_>> = tail.iter().collect();
                        let end = packed.byte_len();
                        packed.insert_many(end, &items);
                    }
                }
                prop_assert_eq!(packed.len(), model.len());
                let forward: Vec<Vec<u8>> = packed.iter().map(text_of).collect();
                prop_assert_eq!(&forward, &model);
                let mut backward: Vec<Vec<u8>> = packed.iter().rev().map(text_of).collect();
                backward.reverse();
                prop_assert_eq!(&backward, &model);
            }
            for start in 0..=model.len() {
                for count in [0, 1, 3, usize::MAX] {
                    let got: Vec<Vec<u8>> = packed.iter_range(start, count).map(text_of).collect();
                    let want: Vec<Vec<u8>> = model.iter().skip(start).take(count).cloned().collect();
                    prop_assert_eq!(got, want);
                }
            }
        }

        #[test]
        fn intset_matches_a_btreeset(ops in proptest::collection::vec(
            (any::<bool>(), prop_oneof![-40_000i64..40_000, any::<i64>(), -5i64..5]), 0..300)) {
            let mut set = IntSet::default();
            let mut model = std::collections::BTreeSet::new();
            for (insert, n) in ops {
                if insert {
                    prop_assert_eq!(set.insert(n), model.insert(n));
                } else {
                    prop_assert_eq!(set.remove(n), model.remove(&n));
                }
                prop_assert_eq!(set.iter().collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
            }
            for n in -10..10 {
                prop_assert_eq!(set.contains(n), model.contains(&n));
            }
            let widest = model.iter().map(|&n| if i16::try_from(n).is_ok() { 2 } else if i32::try_from(n).is_ok() { 4 } else { 8 }).max().unwrap_or(2);
            prop_assert!(set.encoding_width() >= widest);
        }
    }
}
