//! Lists.
//!
//! A [`List`] is a `VecDeque` of elements: O(1) at both ends and O(1) by index, which covers
//! Redis's O(1) commands (pushes, pops, LINDEX/LSET near either end, LLEN) with a tighter bound
//! than its quicklist. The operations that are O(N) in Redis (LREM, LINSERT, LPOS, LTRIM's
//! removals) are O(N) here too.
//!
//! Indexes follow Redis: a negative index counts from the tail (-1 is the last element). The
//! methods that take Redis indexes ([`List::index`], [`List::range`], [`List::trim`]) do the
//! clamping Redis does, so the commands only parse and reply.
//!
//! The list keeps a running total of its elements' bytes, so [`List::heap_size`] is O(1): the
//! snapshot's retain hook asks for it on every retained value.

use std::collections::VecDeque;
use std::ops::Range;

use bytes::Bytes;

/// A list of binary-safe strings. Redis 7.0 reports every list as `quicklist`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct List {
    items: VecDeque<Bytes>,
    /// The sum of the lengths of `items`, kept in step with every change.
    element_bytes: usize,
}

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
        self.items.len()
    }

    /// Returns true if and only if the list has no element.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Elements from head to tail.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Bytes> + ExactSizeIterator {
        self.items.iter()
    }

    /// Appends at the tail.
    pub fn push_back(&mut self, item: Bytes) {
        self.push(End::Tail, item);
    }

    /// Adds `item` at `end`.
    pub fn push(&mut self, end: End, item: Bytes) {
        self.element_bytes += item.len();
        match end {
            End::Head => self.items.push_front(item),
            End::Tail => self.items.push_back(item),
        }
    }

    /// Removes and returns the element at `end`.
    pub fn pop(&mut self, end: End) -> Option<Bytes> {
        let item = match end {
            End::Head => self.items.pop_front(),
            End::Tail => self.items.pop_back(),
        }?;
        self.element_bytes -= item.len();
        Some(item)
    }

    /// Removes up to `count` elements at `end` and returns them in the order they were popped
    /// (from the tail backwards for [`End::Tail`]), as Redis's `LPOP/RPOP key count` replies.
    pub fn pop_many(&mut self, end: End, count: usize) -> Vec<Bytes> {
        let count = count.min(self.len());
        let popped: Vec<Bytes> = match end {
            End::Head => self.items.drain(..count).collect(),
            End::Tail => {
                let first = self.len() - count;
                self.items.drain(first..).rev().collect()
            }
        };
        self.element_bytes -= popped.iter().map(Bytes::len).sum::<usize>();
        popped
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

    /// The element at position `pos` (0 is the head).
    pub fn get(&self, pos: usize) -> Option<&Bytes> {
        self.items.get(pos)
    }

    /// Replaces the element at position `pos`; returns false (changing nothing) if and only if
    /// `pos` is out of range.
    pub fn set(&mut self, pos: usize, item: Bytes) -> bool {
        let Some(slot) = self.items.get_mut(pos) else {
            return false;
        };
        self.element_bytes = self.element_bytes - slot.len() + item.len();
        *slot = item;
        true
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
    pub fn slice(&self, range: Range<usize>) -> impl DoubleEndedIterator<Item = &Bytes> {
        let end = range.end.min(self.len());
        let start = range.start.min(end);
        self.items.range(start..end)
    }

    /// Keeps only the elements LTRIM `start` `stop` names (the same clamping as [`List::range`];
    /// an empty range empties the list). Returns how many elements were removed.
    pub fn trim(&mut self, start: i64, stop: i64) -> usize {
        let keep = self.range(start, stop);
        let len = self.len();
        if keep.is_empty() {
            self.items.clear();
            self.element_bytes = 0;
            return len;
        }
        let dropped_bytes: usize = self
            .items
            .range(keep.end..)
            .chain(self.items.range(..keep.start))
            .map(Bytes::len)
            .sum();
        self.items.truncate(keep.end);
        self.items.drain(..keep.start);
        self.element_bytes -= dropped_bytes;
        len - self.len()
    }

    /// Removes the elements equal to `element`: the first `limit` of them scanning from `from`
    /// (all of them when `limit` is 0), as LREM does. Returns how many were removed.
    pub fn remove(&mut self, element: &[u8], limit: usize, from: End) -> usize {
        let n_matches = self
            .items
            .iter()
            .filter(|item| item.as_ref() == element)
            .count();
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
        let mut dropped_bytes = 0;
        self.items.retain(|item| {
            if item.as_ref() != element {
                return true;
            }
            seen += 1;
            let remove = seen > first_removed && seen <= first_removed + n_remove;
            if remove {
                dropped_bytes += item.len();
            }
            !remove
        });
        self.element_bytes -= dropped_bytes;
        n_remove
    }

    /// Inserts `item` next to the first element (from the head) equal to `pivot`: before it when
    /// `before`, otherwise after. Returns false (changing nothing) if and only if no element
    /// equals `pivot`.
    pub fn insert(&mut self, pivot: &[u8], before: bool, item: Bytes) -> bool {
        let Some(pos) = self.items.iter().position(|entry| entry.as_ref() == pivot) else {
            return false;
        };
        self.element_bytes += item.len();
        self.items.insert(if before { pos } else { pos + 1 }, item);
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
        (0..n_scanned)
            .map(move |step| match from {
                End::Head => step,
                End::Tail => len - 1 - step,
            })
            .filter(move |&pos| {
                self.items
                    .get(pos)
                    .is_some_and(|item| item.as_ref() == element)
            })
    }

    /// `OBJECT ENCODING`.
    pub fn encoding(&self) -> &'static str {
        "quicklist"
    }

    /// Heap bytes, estimated: the elements' bytes plus the deque's slots. O(1).
    pub fn heap_size(&self) -> usize {
        self.element_bytes + self.items.capacity() * std::mem::size_of::<Bytes>()
    }
}

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
        list.iter()
            .map(|item| String::from_utf8_lossy(item).into_owned())
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
    fn pop_many_from_the_tail_comes_back_reversed() {
        let mut list = list_of(&["a", "b", "c", "d"]);
        let popped = list.pop_many(End::Tail, 3);
        assert_eq!(popped, vec!["d", "c", "b"]);
        assert_eq!(contents(&list), ["a"]);
        assert_eq!(list.pop_many(End::Head, 10), vec!["a"]);
        assert!(list.is_empty());
        assert_eq!(list.heap_size(), list.items.capacity() * size_of::<Bytes>());
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
        // Few distinct values so that LREM/LINSERT find matches; varied lengths for heap_size.
        Bytes::from(vec![b'a' + byte % 4; usize::from(byte % 3) + 1])
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
        fn list_matches_a_vec_model(ops in proptest::collection::vec(op(), 0..60)) {
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
                        let sliced: Vec<Bytes> = list.slice(range).cloned().collect();
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
                prop_assert_eq!(list.iter().cloned().collect::<Vec<_>>(), model.clone());
                let bytes: usize = model.iter().map(Bytes::len).sum();
                prop_assert_eq!(list.element_bytes, bytes);
            }
        }
    }
}
