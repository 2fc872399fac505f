//! Lists.
//!
//! A [`List`] is Redis's quicklist: a deque of packed chunks (see `types::packed`), each at
//! most [`CHUNK_MAX_BYTES`] of encoded elements (an element bigger than that gets a chunk of its
//! own), as Redis 7.0's default `list-max-listpack-size -2`. Pushes and pops at either end are
//! O(1) plus the shift within the end chunk, as in Redis; access by index walks chunks from the
//! nearer end and then entries within a chunk: O(N), as Redis's LINDEX/LSET. The operations that
//! are O(N) in Redis (LREM, LINSERT, LPOS, LRANGE from the middle) are O(N) here too.
//!
//! Indexes follow Redis: a negative index counts from the tail (-1 is the last element). The
//! methods that take Redis indexes ([`List::index`], [`List::range`], [`List::trim`]) do the
//! clamping Redis does, so the commands only parse and reply.
//!
//! The list keeps a running total of its chunks' encoded bytes, so [`List::heap_size`] is O(1):
//! the snapshot's retain hook asks for it on every retained value.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use super::limits::ENCODING_LIMITS;
use super::packed::{self, Element, Item, Packed, Probe};

/// The most encoded bytes a chunk holds, unless one element alone is bigger, at Redis's default
/// `list-max-listpack-size -2` (8 KiB); the limit in force is
/// [`super::limits::ENCODING_LIMITS`]'s.
pub const CHUNK_MAX_BYTES: usize = 8192;

/// Returns true if and only if `chunk` cannot take another element of `size` encoded bytes
/// within `list-max-listpack-size`. An empty chunk takes any one element, so an element bigger
/// than the limit gets a chunk of its own (Redis's plain node).
fn chunk_full(chunk: &Packed, size: usize) -> bool {
    !chunk.is_empty() && ENCODING_LIMITS.list_node_over(chunk.byte_len() + size, chunk.len() + 1)
}

/// What one chunk's `Arc` allocation holds: the two reference counts and the `Packed`.
type ArcInner = (usize, usize, Packed);

/// The chunk an empty list's iterators walk.
static NO_CHUNK: Packed = Packed::new();

/// A list of binary-safe strings. Redis 7.0 reports every list as `quicklist`.
#[derive(Debug, Clone, Default)]
pub struct List {
    /// Each chunk behind its own `Arc`: cloning a list (what the first write after a snapshot
    /// cut does while the snapshot holds the pre-cut version) copies one pointer per chunk, and
    /// a write then copies only the chunk it changes (`Arc::make_mut`), never the whole list.
    chunks: VecDeque<Arc<Packed>>,
    /// Number of elements.
    len: usize,
    /// The sum of the chunks' encoded bytes, kept in step with every change.
    packed_bytes: usize,
}

impl PartialEq for List {
    fn eq(&self, other: &List) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for List {}

/// Which end of a list an operation works at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The head: index 0, LPUSH/LPOP, `LEFT`.
    Head,
    /// The tail: index -1, RPUSH/RPOP, `RIGHT`.
    Tail,
}

impl List {
    /// An empty list.
    pub fn new() -> List {
        List::default()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns true if and only if the list has no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements from head to tail.
    pub fn iter(&self) -> Iter<'_> {
        self.slice(0..self.len)
    }

    /// Appends at the tail.
    pub fn push_back(&mut self, item: impl AsRef<[u8]>) {
        self.push(End::Tail, item);
    }

    /// Changes the chunk at `chunk_idx` with `change`, keeping the byte count in step and
    /// dropping the chunk if it ends up empty.
    fn change_chunk<R>(
        &mut self,
        chunk_idx: usize,
        change: impl FnOnce(&mut Packed) -> R,
    ) -> Option<R> {
        let chunk = Arc::make_mut(self.chunks.get_mut(chunk_idx)?);
        let (len_before, bytes_before) = (chunk.len(), chunk.byte_len());
        let result = change(chunk);
        self.len = self.len + chunk.len() - len_before;
        self.packed_bytes = self.packed_bytes + chunk.byte_len() - bytes_before;
        if chunk.is_empty() {
            self.chunks.remove(chunk_idx);
        }
        Some(result)
    }

    /// Adds `item` at `end`.
    pub fn push(&mut self, end: End, item: impl AsRef<[u8]>) {
        let item = Item::text(item.as_ref());
        match end {
            End::Head => {
                let size = item.encoded_len();
                if self
                    .chunks
                    .front()
                    .is_none_or(|chunk| chunk_full(chunk, size))
                {
                    self.reserve_chunk();
                    self.chunks.push_front(Arc::new(Packed::new()));
                }
                self.change_chunk(0, |chunk| chunk.insert(0, item));
            }
            End::Tail => self.push_item(item),
        }
    }

    /// Removes and returns the element at `end`.
    pub fn pop(&mut self, end: End) -> Option<Bytes> {
        self.pop_many(end, 1).pop()
    }

    /// Removes up to `count` elements at `end` and returns them in the order they were popped
    /// (from the tail backwards for [`End::Tail`]), as Redis's `LPOP/RPOP key count` replies.
    pub fn pop_many(&mut self, end: End, count: usize) -> Vec<Bytes> {
        let count = count.min(self.len);
        let mut popped = Vec::with_capacity(count);
        while popped.len() < count {
            let wanted = count - popped.len();
            let chunk_idx = match end {
                End::Head => 0,
                End::Tail => self.chunks.len().saturating_sub(1),
            };
            let taken = self.change_chunk(chunk_idx, |chunk| {
                let n = wanted.min(chunk.len());
                match end {
                    End::Head => {
                        popped.extend(
                            chunk
                                .iter()
                                .take(n)
                                .map(|item| Element::from(item).to_bytes()),
                        );
                        chunk.remove(0, n);
                    }
                    End::Tail => {
                        popped.extend(
                            chunk
                                .iter()
                                .rev()
                                .take(n)
                                .map(|item| Element::from(item).to_bytes()),
                        );
                        chunk.remove_back(n);
                    }
                }
                n
            });
            if taken.unwrap_or(0) == 0 {
                break;
            }
        }
        popped
    }

    /// Drops `count` elements at `end`.
    fn drop_many(&mut self, end: End, mut count: usize) {
        while count > 0 {
            // Whole chunks go without being copied (a snapshot may share them).
            let whole = match end {
                End::Head => self.chunks.front(),
                End::Tail => self.chunks.back(),
            }
            .filter(|chunk| chunk.len() <= count)
            .map(|chunk| (chunk.len(), chunk.byte_len()));
            if let Some((n, bytes)) = whole {
                match end {
                    End::Head => self.chunks.pop_front(),
                    End::Tail => self.chunks.pop_back(),
                };
                self.len -= n;
                self.packed_bytes -= bytes;
                count -= n;
                continue;
            }
            let chunk_idx = match end {
                End::Head => 0,
                End::Tail => self.chunks.len().saturating_sub(1),
            };
            let dropped = self.change_chunk(chunk_idx, |chunk| {
                let n = count.min(chunk.len());
                if n == chunk.len() {
                    *chunk = Packed::new();
                } else if end == End::Head {
                    chunk.remove(0, n);
                } else {
                    chunk.remove_back(n);
                }
                n
            });
            match dropped {
                Some(n) if n > 0 => count -= n,
                _ => break,
            }
        }
    }

    /// The position a Redis index names (negative counts from the tail), if it is in range.
    pub fn index(&self, index: i64) -> Option<usize> {
        let len = i64::try_from(self.len()).ok()?;
        let index = if index < 0 {
            len.checked_add(index)?
        } else {
            index
        };
        if index < 0 || index >= len {
            return None;
        }
        usize::try_from(index).ok()
    }

    /// The chunk holding position `pos` and the position within it, walking from the nearer
    /// end.
    fn locate(&self, pos: usize) -> Option<(usize, usize)> {
        if pos >= self.len {
            return None;
        }
        if pos < self.len / 2 {
            let mut before = 0;
            for (chunk_idx, chunk) in self.chunks.iter().enumerate() {
                if pos < before + chunk.len() {
                    return Some((chunk_idx, pos - before));
                }
                before += chunk.len();
            }
            None
        } else {
            let mut after = self.len;
            for (chunk_idx, chunk) in self.chunks.iter().enumerate().rev() {
                after -= chunk.len();
                if pos >= after {
                    return Some((chunk_idx, pos - after));
                }
            }
            None
        }
    }

    /// The element at position `pos` (0 is the head).
    pub fn get(&self, pos: usize) -> Option<Element<'_>> {
        let (chunk_idx, idx) = self.locate(pos)?;
        self.chunks
            .get(chunk_idx)?
            .iter_range(idx, 1)
            .next()
            .map(Element::from)
    }

    /// Replaces the element at position `pos`; returns false (changing nothing) if and only if
    /// `pos` is out of range.
    pub fn set(&mut self, pos: usize, item: impl AsRef<[u8]>) -> bool {
        let Some((chunk_idx, idx)) = self.locate(pos) else {
            return false;
        };
        let item = Item::text(item.as_ref());
        self.change_chunk(chunk_idx, |chunk| {
            if let Some(at) = chunk.offset_of(idx) {
                chunk.replace(at, item);
            }
        });
        self.split_if_big(chunk_idx);
        true
    }

    /// Splits the chunk at `chunk_idx` in two if it outgrew [`CHUNK_MAX_BYTES`].
    fn split_if_big(&mut self, chunk_idx: usize) {
        let Some(chunk) = self.chunks.get_mut(chunk_idx) else {
            return;
        };
        if chunk.len() > 1 && ENCODING_LIMITS.list_node_over(chunk.byte_len(), chunk.len()) {
            let chunk = Arc::make_mut(chunk);
            let tail = chunk.split_off(chunk.len() / 2);
            self.chunks.insert(chunk_idx + 1, Arc::new(tail));
        }
    }

    /// The positions LRANGE `start` `stop` covers, clamped as Redis's `addListRangeReply` does:
    /// negative indexes count from the tail, a start before the head is the head, a stop past
    /// the tail is the tail. Empty when nothing is covered.
    pub fn range(&self, start: i64, stop: i64) -> Range<usize> {
        let len = i64::try_from(self.len()).unwrap_or(i64::MAX);
        let start = if start < 0 {
            len.saturating_add(start)
        } else {
            start
        }
        .max(0);
        let stop = if stop < 0 {
            len.saturating_add(stop)
        } else {
            stop
        };
        if start >= len || start > stop {
            return 0..0;
        }
        let stop = stop.min(len - 1);
        let to_usize = |n: i64| usize::try_from(n).unwrap_or(0);
        to_usize(start)..to_usize(stop) + 1
    }

    /// The elements at the positions of `range`, head to tail.
    pub fn slice(&self, range: Range<usize>) -> Iter<'_> {
        let end = range.end.min(self.len());
        let start = range.start.min(end);
        let empty = Iter {
            chunks: &self.chunks,
            front_chunk: 0,
            front: NO_CHUNK.iter(),
            back_chunk: 0,
            back: NO_CHUNK.iter(),
            remaining: 0,
        };
        let (Some((front_chunk, front_idx)), Some((back_chunk, back_idx))) = (
            self.locate(start),
            end.checked_sub(1).and_then(|last| self.locate(last)),
        ) else {
            return empty;
        };
        let (Some(front), Some(back)) = (self.chunks.get(front_chunk), self.chunks.get(back_chunk))
        else {
            return empty;
        };
        Iter {
            chunks: &self.chunks,
            front_chunk,
            front: front.iter_range(front_idx, usize::MAX),
            back_chunk,
            back: back.iter_range(0, back_idx + 1),
            remaining: end - start,
        }
    }

    /// Keeps only the elements LTRIM `start` `stop` names (the same clamping as [`List::range`];
    /// an empty range empties the list). Returns how many elements were removed.
    pub fn trim(&mut self, start: i64, stop: i64) -> usize {
        let keep = self.range(start, stop);
        let len = self.len();
        if keep.is_empty() {
            *self = List::new();
            return len;
        }
        self.drop_many(End::Tail, len - keep.end);
        self.drop_many(End::Head, keep.start);
        len - self.len()
    }

    /// Removes the elements equal to `element`: the first `limit` of them scanning from `from`
    /// (all of them when `limit` is 0), as LREM does. Returns how many were removed.
    pub fn remove(&mut self, element: &[u8], limit: usize, from: End) -> usize {
        let probe = Probe::new(element);
        let n_matches = self.raw_items().filter(|item| probe.matches(*item)).count();
        let n_remove = if limit == 0 {
            n_matches
        } else {
            limit.min(n_matches)
        };
        if n_remove == 0 {
            return 0;
        }
        // Scanning head to tail, the matches to remove are the first `n_remove` ones, or, from
        // the tail, the ones after the first `n_matches - n_remove`.
        let first_removed = match from {
            End::Head => 0,
            End::Tail => n_matches - n_remove,
        };
        let mut seen = 0;
        let mut rebuilt = List::new();
        for item in self.raw_items() {
            if probe.matches(item) {
                seen += 1;
                if seen > first_removed && seen <= first_removed + n_remove {
                    continue;
                }
            }
            rebuilt.push_item(item);
        }
        *self = rebuilt;
        n_remove
    }

    /// Makes room for one more chunk: exactly one for the first (most lists are one chunk, and
    /// a deque would otherwise start with room for four), doubling after that.
    fn reserve_chunk(&mut self) {
        if self.chunks.capacity() == 0 {
            self.chunks.reserve_exact(1);
        }
    }

    /// Appends an item as stored, in a new chunk if the last one is full.
    fn push_item(&mut self, item: Item<'_>) {
        let size = item.encoded_len();
        if self
            .chunks
            .back()
            .is_none_or(|chunk| chunk_full(chunk, size))
        {
            self.reserve_chunk();
            self.chunks.push_back(Arc::new(Packed::new()));
        }
        let last = self.chunks.len() - 1;
        self.change_chunk(last, |chunk| chunk.push(item));
    }

    /// Items as stored, head to tail.
    fn raw_items(&self) -> impl Iterator<Item = Item<'_>> {
        self.chunks.iter().flat_map(|chunk| chunk.iter())
    }

    /// Inserts `item` next to the first element (from the head) equal to `pivot`: before it when
    /// `before`, otherwise after. Returns false (changing nothing) if and only if no element
    /// equals `pivot`.
    pub fn insert(&mut self, pivot: &[u8], before: bool, item: impl AsRef<[u8]>) -> bool {
        let probe = Probe::new(pivot);
        let found = self
            .chunks
            .iter()
            .enumerate()
            .find_map(|(chunk_idx, chunk)| {
                chunk
                    .iter()
                    .position(|entry| probe.matches(entry))
                    .map(|idx| (chunk_idx, idx))
            });
        let Some((chunk_idx, idx)) = found else {
            return false;
        };
        let item = Item::text(item.as_ref());
        self.change_chunk(chunk_idx, |chunk| {
            let idx = if before { idx } else { idx + 1 };
            if let Some(at) = chunk.offset_of(idx) {
                chunk.insert(at, item);
            }
        });
        self.split_if_big(chunk_idx);
        true
    }

    /// The positions (counted from the head) of the elements equal to `element`, in scan order
    /// from `from`, looking at no more than `max_scanned` elements (all when 0), as LPOS scans.
    pub fn positions<'a>(
        &'a self,
        element: &'a [u8],
        from: End,
        max_scanned: usize,
    ) -> impl Iterator<Item = usize> + 'a {
        let len = self.len();
        let n_scanned = if max_scanned == 0 {
            len
        } else {
            max_scanned.min(len)
        };
        let probe = Probe::new(element);
        let items = self.chunks.iter().flat_map(|chunk| chunk.iter());
        let scan: Box<dyn Iterator<Item = (usize, Item<'a>)> + 'a> = match from {
            End::Head => Box::new(items.enumerate()),
            End::Tail => Box::new(
                items
                    .rev()
                    .enumerate()
                    .map(move |(step, item)| (len - 1 - step, item)),
            ),
        };
        scan.take(n_scanned)
            .filter(move |(_, item)| probe.matches(*item))
            .map(|(pos, _)| pos)
    }

    /// `OBJECT ENCODING`.
    pub fn encoding(&self) -> &'static str {
        "quicklist"
    }

    /// The number of chunks (quicklist nodes), for DEBUG OBJECT's `ql_nodes`.
    pub fn n_chunks(&self) -> usize {
        self.chunks.len()
    }

    /// Heap bytes, estimated: the chunks' encoded bytes, their `Arc` allocations and the
    /// deque's slots. O(1).
    pub fn heap_size(&self) -> usize {
        self.packed_bytes
            + self.chunks.len() * std::mem::size_of::<ArcInner>()
            + self.chunks.capacity() * std::mem::size_of::<Arc<Packed>>()
    }
}

/// Elements of a [`List`], or of a slice of it.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    chunks: &'a VecDeque<Arc<Packed>>,
    front_chunk: usize,
    front: packed::Iter<'a>,
    back_chunk: usize,
    back: packed::Iter<'a>,
    /// Elements between the front and the back; the two may walk the same chunk, and this
    /// count is what stops them where they meet.
    remaining: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = Element<'a>;

    fn next(&mut self) -> Option<Element<'a>> {
        if self.remaining == 0 {
            return None;
        }
        loop {
            if let Some(item) = self.front.next() {
                self.remaining -= 1;
                return Some(item.into());
            }
            self.front_chunk += 1;
            self.front = self.chunks.get(self.front_chunk)?.iter();
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        loop {
            if let Some(item) = self.back.next_back() {
                self.remaining -= 1;
                return Some(item.into());
            }
            self.back_chunk = self.back_chunk.checked_sub(1)?;
            self.back = self.chunks.get(self.back_chunk)?.iter();
        }
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn list_of(items: &[&str]) -> List {
        let mut list = List::new();
        for item in items {
            list.push_back(Bytes::copy_from_slice(item.as_bytes()));
        }
        list
    }

    fn contents(list: &List) -> Vec<String> {
        assert_eq!(list.iter().len(), list.len());
        list.iter()
            .map(|item| String::from_utf8_lossy(&item).into_owned())
            .collect()
    }

    #[test]
    fn range_clamps_as_redis_lrange() {
        let list = list_of(&["a", "b", "c", "d"]);
        assert_eq!(list.range(0, -1), 0..4);
        assert_eq!(list.range(-100, 100), 0..4);
        assert_eq!(list.range(1, 2), 1..3);
        assert_eq!(list.range(-2, -1), 2..4);
        assert_eq!(list.range(2, 1), 0..0);
        assert_eq!(list.range(4, 10), 0..0);
        assert_eq!(list.range(0, -5), 0..0);
        assert_eq!(list.range(i64::MIN, i64::MAX), 0..4);
        assert_eq!(list.range(i64::MAX, i64::MIN), 0..0);
        assert_eq!(List::new().range(0, -1), 0..0);
    }

    #[test]
    fn index_counts_negative_from_the_tail() {
        let list = list_of(&["a", "b", "c"]);
        assert_eq!(list.index(0), Some(0));
        assert_eq!(list.index(-1), Some(2));
        assert_eq!(list.index(-3), Some(0));
        assert_eq!(list.index(-4), None);
        assert_eq!(list.index(3), None);
        assert_eq!(list.index(i64::MIN), None);
        assert_eq!(list.index(i64::MAX), None);
    }

    #[test]
    fn a_clone_shares_chunks_until_one_is_written() {
        let mut list = List::new();
        for i in 0..100_000 {
            list.push_back(format!("element:{i:08}"));
        }
        let n_chunks = list.chunks.len();
        assert!(n_chunks > 100);
        let mut copy = list.clone();
        let shared = |a: &List, b: &List| {
            a.chunks
                .iter()
                .zip(&b.chunks)
                .filter(|(x, y)| Arc::ptr_eq(x, y))
                .count()
        };
        assert_eq!(shared(&list, &copy), n_chunks);
        // A write copies only the chunk it touches; the original is untouched.
        copy.push_back("new");
        assert!(copy.set(50_000, "changed"));
        assert_eq!(shared(&list, &copy), n_chunks - 2);
        assert_eq!(list.len(), 100_000);
        assert_eq!(
            list.get(50_000).map(|e| e.to_bytes()),
            Some(Bytes::from("element:00050000"))
        );
        assert_eq!(
            copy.get(50_000).map(|e| e.to_bytes()),
            Some(Bytes::from("changed"))
        );
        // Dropping whole chunks from a shared list copies nothing.
        copy.trim(10_000, -1);
        assert_eq!(copy.len(), 90_001);
        assert_eq!(list.len(), 100_000);
    }

    #[test]
    fn pop_many_from_the_tail_comes_back_reversed() {
        let mut list = list_of(&["a", "b", "c", "d"]);
        let popped = list.pop_many(End::Tail, 3);
        assert_eq!(popped, vec!["d", "c", "b"]);
        assert_eq!(contents(&list), ["a"]);
        assert_eq!(list.pop_many(End::Head, 10), vec!["a"]);
        assert!(list.is_empty());
        assert_eq!(
            list.heap_size(),
            list.chunks.capacity() * size_of::<Arc<Packed>>()
        );
    }

    #[test]
    fn remove_from_the_tail_removes_the_last_matches() {
        let mut list = list_of(&["x", "a", "x", "b", "x"]);
        assert_eq!(list.remove(b"x", 2, End::Tail), 2);
        assert_eq!(contents(&list), ["x", "a", "b"]);
        assert_eq!(list.remove(b"nope", 0, End::Head), 0);
        assert_eq!(list.remove(b"x", 0, End::Head), 1);
        assert_eq!(contents(&list), ["a", "b"]);
    }

    #[test]
    fn positions_scan_from_either_end_within_maxlen() {
        let list = list_of(&["a", "b", "a", "c", "a"]);
        let from_head: Vec<usize> = list.positions(b"a", End::Head, 0).collect();
        assert_eq!(from_head, [0, 2, 4]);
        let from_tail: Vec<usize> = list.positions(b"a", End::Tail, 0).collect();
        assert_eq!(from_tail, [4, 2, 0]);
        let limited: Vec<usize> = list.positions(b"a", End::Tail, 2).collect();
        assert_eq!(limited, [4]);
        assert_eq!(list.positions(b"a", End::Head, 100).count(), 3);
    }

    /// One operation of the model test.
    #[derive(Debug, Clone)]
    enum Op {
        Push(bool, u8),
        Pop(bool),
        PopMany(bool, usize),
        Set(i64, u8),
        Trim(i64, i64),
        Remove(u8, usize, bool),
        Insert(u8, bool, u8),
    }

    fn end(head: bool) -> End {
        if head { End::Head } else { End::Tail }
    }

    fn element(byte: u8) -> Bytes {
        // Few distinct values so that LREM/LINSERT find matches; varied lengths for heap_size;
        // canonical integers, which chunks store as integers; and elements big enough that a
        // few fill a chunk, so chunks are added, dropped and split.
        match byte % 8 {
            0 => Bytes::from(format!("{}", i64::from(byte % 3) * 1000 - 1000)),
            1 => Bytes::from(vec![b'x' + byte % 2; 3000 + usize::from(byte % 3)]),
            _ => Bytes::from(vec![b'a' + byte % 4; usize::from(byte % 3) + 1]),
        }
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<bool>(), any::<u8>()).prop_map(|(h, b)| Op::Push(h, b)),
            any::<bool>().prop_map(Op::Pop),
            (any::<bool>(), 0..5usize).prop_map(|(h, n)| Op::PopMany(h, n)),
            (-8..8i64, any::<u8>()).prop_map(|(i, b)| Op::Set(i, b)),
            (-8..8i64, -8..8i64).prop_map(|(s, e)| Op::Trim(s, e)),
            (any::<u8>(), 0..3usize, any::<bool>()).prop_map(|(b, n, h)| Op::Remove(b, n, h)),
            (any::<u8>(), any::<bool>(), any::<u8>()).prop_map(|(p, b, e)| Op::Insert(p, b, e)),
        ]
    }

    /// The model's view of a Redis index.
    fn model_index(model: &[Bytes], index: i64) -> Option<usize> {
        let len = model.len() as i64;
        let index = if index < 0 { len + index } else { index };
        (0..len).contains(&index).then_some(index as usize)
    }

    /// Redis's LTRIM/LRANGE clamping, written out over a Vec.
    fn model_range(len: usize, start: i64, stop: i64) -> Vec<usize> {
        let len = len as i64;
        let start = if start < 0 {
            (len + start).max(0)
        } else {
            start
        };
        let stop = if stop < 0 {
            len + stop
        } else {
            stop.min(len - 1)
        };
        (start..=stop).map(|i| i as usize).collect()
    }

    proptest! {
        #[test]
        fn list_matches_a_vec_model(ops in proptest::collection::vec(op(), 0..120)) {
            let mut list = List::new();
            let mut model: Vec<Bytes> = Vec::new();
            for op in ops {
                match op {
                    Op::Push(head, b) => {
                        list.push(end(head), element(b));
                        if head { model.insert(0, element(b)) } else { model.push(element(b)) }
                    }
                    Op::Pop(head) => {
                        let expected = if head {
                            (!model.is_empty()).then(|| model.remove(0))
                        } else {
                            model.pop()
                        };
                        prop_assert_eq!(list.pop(end(head)), expected);
                    }
                    Op::PopMany(head, n) => {
                        let n = n.min(model.len());
                        let expected: Vec<Bytes> = if head {
                            model.drain(..n).collect()
                        } else {
                            model.drain(model.len() - n..).rev().collect()
                        };
                        prop_assert_eq!(list.pop_many(end(head), n), expected);
                    }
                    Op::Set(index, b) => {
                        let pos = model_index(&model, index);
                        prop_assert_eq!(list.index(index), pos);
                        if let Some(pos) = pos {
                            prop_assert!(list.set(pos, element(b)));
                            model[pos] = element(b);
                        }
                    }
                    Op::Trim(start, stop) => {
                        let keep = model_range(model.len(), start, stop);
                        let range = list.range(start, stop);
                        prop_assert_eq!(range.clone().collect::<Vec<_>>(), keep.clone());
                        let sliced: Vec<Bytes> = list.slice(range.clone()).map(|e| e.to_bytes()).collect();
                        let mut sliced_back: Vec<Bytes> = list.slice(range).rev().map(|e| e.to_bytes()).collect();
                        sliced_back.reverse();
                        prop_assert_eq!(&sliced_back, &sliced);
                        let kept: Vec<Bytes> = keep.iter().map(|&i| model[i].clone()).collect();
                        prop_assert_eq!(&sliced, &kept);
                        let removed = list.trim(start, stop);
                        prop_assert_eq!(removed, model.len() - kept.len());
                        model = kept;
                    }
                    Op::Remove(b, limit, head) => {
                        let target = element(b);
                        let mut matches: Vec<usize> =
                            (0..model.len()).filter(|&i| model[i] == target).collect();
                        if !head {
                            matches.reverse();
                        }
                        if limit > 0 {
                            matches.truncate(limit);
                        }
                        let expected = matches.len();
                        matches.sort_unstable();
                        for &i in matches.iter().rev() {
                            model.remove(i);
                        }
                        prop_assert_eq!(list.remove(&target, limit, end(head)), expected);
                    }
                    Op::Insert(pivot, before, b) => {
                        let pivot = element(pivot);
                        let found = model.iter().position(|item| *item == pivot);
                        prop_assert_eq!(list.insert(&pivot, before, element(b)), found.is_some());
                        if let Some(pos) = found {
                            model.insert(if before { pos } else { pos + 1 }, element(b));
                        }
                    }
                }
                prop_assert_eq!(list.iter().map(|e| e.to_bytes()).collect::<Vec<_>>(), model.clone());
                let mut backward: Vec<Bytes> = list.iter().rev().map(|e| e.to_bytes()).collect();
                backward.reverse();
                prop_assert_eq!(&backward, &model);
                prop_assert_eq!(list.len(), model.len());
                prop_assert_eq!(list.packed_bytes, list.chunks.iter().map(|chunk| chunk.byte_len()).sum::<usize>());
                prop_assert!(list.chunks.iter().all(|chunk| !chunk.is_empty()));
                prop_assert!(list.chunks.iter().all(|chunk| chunk.len() == 1 || chunk.byte_len() <= 2 * CHUNK_MAX_BYTES));
                for (pos, item) in model.iter().enumerate() {
                    prop_assert_eq!(list.get(pos).map(|e| e.to_bytes()), Some(item.clone()));
                }
                let from_tail: Vec<usize> = list.positions(&element(0), End::Tail, 0).collect();
                let expected: Vec<usize> = (0..model.len()).rev().filter(|&i| model[i] == element(0)).collect();
                prop_assert_eq!(from_tail, expected);
            }
        }
    }
}
