//! An order-statistic treap over (score, member), kept in an arena of shared chunks.
//!
//! Every node stores the size of its subtree, so rank queries (how many members sort before a
//! key) and selection (the member at rank k) walk one root-to-leaf path: O(log n) expected, as
//! Redis's skiplist. Insertion descends to the new node's place (where its priority outranks the
//! path's) and splits the subtree below around it; removal finds the node and merges its
//! children; each changes the nodes of one search path once. Range removal is split/merge.
//! Priorities come from a randomly seeded per-tree xorshift generator; the treap's expected
//! depth does not depend on the keys.
//!
//! Nodes live at stable slots of the arena: a node keeps its slot while it is in the tree (a
//! score change re-links the same slot), and a freed slot goes to a free list for reuse (linked
//! through the free nodes themselves). ZSCAN walks slots, which is what makes its guarantee hold
//! (see [`Tree::scan`]).
//!
//! The arena is chunks of [`CHUNK_NODES`] nodes, each behind its own `Arc`, so that a snapshot
//! can share it: copying the tree copies one pointer per chunk, and a change then copies the
//! chunks of the nodes it touches (`Arc::make_mut`), the O(log n) nodes on one root-to-leaf path
//! or two. Reads go through one more pointer than a flat arena.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::compact::CompactBytes;

/// The absent child.
const NIL: usize = usize::MAX;
/// Nodes per arena chunk (16 KiB): what a snapshot's first write copies per node it touches.
/// Small in unit tests, so that they build trees of many chunks.
const CHUNK_NODES: usize = if cfg!(test) { 8 } else { 256 };

#[derive(Debug, Clone)]
struct Node {
    /// Inline when short: cloning the tree (a snapshot's copy-on-write) then allocates nothing
    /// per member, and a short member costs no allocation of its own.
    member: CompactBytes,
    score: f64,
    priority: u64,
    /// The left child; for a free slot, the next free slot.
    left: usize,
    right: usize,
    /// Nodes in this subtree, this one included; 0 for a free slot.
    size: usize,
}

/// Compares two (score, member) keys in sorted-set order. Scores are never NaN; `-0` and `0`
/// compare equal, as C's `<` and `==` compare them in Redis.
pub(super) fn cmp_keys(score_a: f64, member_a: &[u8], score_b: f64, member_b: &[u8]) -> Ordering {
    score_a
        .partial_cmp(&score_b)
        .unwrap_or(Ordering::Equal)
        .then_with(|| member_a.cmp(member_b))
}

#[derive(Debug, Clone)]
pub(super) struct Tree {
    /// The arena: slot `idx` is node `idx % CHUNK_NODES` of chunk `idx / CHUNK_NODES`. Chunks
    /// are `CHUNK_NODES` long (the nodes sit right after the reference counts: one pointer to
    /// follow, not two); the slots past `slots` are vacant, and on no free list.
    chunks: Vec<Arc<[Node]>>,
    /// Slots in use, live or free.
    slots: usize,
    /// The first free slot, NIL if none.
    free: usize,
    root: usize,
    rng: u64,
    /// Heap bytes of the live members (0 for inline ones), for `heap_size`.
    member_bytes: usize,
}

impl Default for Tree {
    fn default() -> Tree {
        Tree {
            chunks: Vec::new(),
            slots: 0,
            free: NIL,
            root: NIL,
            // Seeded per tree, so that no client can predict priorities and feed keys in an
            // order that degenerates the treap.
            rng: rand::random::<u64>() | 1,
            member_bytes: 0,
        }
    }
}

impl Tree {
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.size(self.root)
    }

    fn node(&self, idx: usize) -> Option<&Node> {
        self.chunks.get(idx / CHUNK_NODES)?.get(idx % CHUNK_NODES)
    }

    /// Node `idx`, for a change: its chunk is copied first if a snapshot's version shares it.
    fn node_mut(&mut self, idx: usize) -> Option<&mut Node> {
        Arc::make_mut(self.chunks.get_mut(idx / CHUNK_NODES)?).get_mut(idx % CHUNK_NODES)
    }

    /// Slots in use, live or free.
    fn slots(&self) -> usize {
        self.slots
    }

    /// Stores `node` in a new slot at the end of the arena and returns the slot.
    fn push(&mut self, node: Node) -> usize {
        let idx = self.slots;
        if idx == self.chunks.len() * CHUNK_NODES {
            let vacant = Node {
                member: CompactBytes::new(),
                score: 0.0,
                priority: 0,
                left: NIL,
                right: NIL,
                size: 0,
            };
            self.chunks
                .push(std::iter::repeat_n(vacant, CHUNK_NODES).collect());
        }
        if let Some(slot) = self.node_mut(idx) {
            *slot = node;
            self.slots += 1;
        }
        idx
    }

    fn size(&self, idx: usize) -> usize {
        self.node(idx).map_or(0, |node| node.size)
    }

    fn left(&self, idx: usize) -> usize {
        self.node(idx).map_or(NIL, |node| node.left)
    }

    fn right(&self, idx: usize) -> usize {
        self.node(idx).map_or(NIL, |node| node.right)
    }

    fn set_children(&mut self, idx: usize, left: usize, right: usize) {
        let size = 1 + self.size(left) + self.size(right);
        if let Some(node) = self.node_mut(idx) {
            node.left = left;
            node.right = right;
            node.size = size;
        }
    }

    fn next_priority(&mut self) -> u64 {
        // xorshift64*: cheap, and never zero from a non-zero state.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Splits `idx` into (nodes where `goes_left` holds, the rest). `goes_left` must hold for a
    /// prefix of the in-order sequence.
    fn split(&mut self, idx: usize, goes_left: &impl Fn(&Node) -> bool) -> (usize, usize) {
        let Some(node) = self.node(idx) else {
            return (NIL, NIL);
        };
        let (left, right) = (node.left, node.right);
        if goes_left(node) {
            let (a, b) = self.split(right, goes_left);
            self.set_children(idx, left, a);
            (idx, b)
        } else {
            let (a, b) = self.split(left, goes_left);
            self.set_children(idx, b, right);
            (a, idx)
        }
    }

    /// Splits `idx` into (its first `rank` nodes, the rest).
    fn split_at_rank(&mut self, idx: usize, rank: usize) -> (usize, usize) {
        let Some(node) = self.node(idx) else {
            return (NIL, NIL);
        };
        let (left, right) = (node.left, node.right);
        let left_size = self.size(left);
        if rank <= left_size {
            let (a, b) = self.split_at_rank(left, rank);
            self.set_children(idx, b, right);
            (a, idx)
        } else {
            let (a, b) = self.split_at_rank(right, rank - left_size - 1);
            self.set_children(idx, left, a);
            (idx, b)
        }
    }

    /// Joins two treaps, every node of `a` sorting before every node of `b`.
    fn merge(&mut self, a: usize, b: usize) -> usize {
        let (Some(node_a), Some(node_b)) = (self.node(a), self.node(b)) else {
            return if a == NIL { b } else { a };
        };
        if node_a.priority >= node_b.priority {
            let (left, right) = (node_a.left, node_a.right);
            let merged = self.merge(right, b);
            self.set_children(a, left, merged);
            a
        } else {
            let (left, right) = (node_b.left, node_b.right);
            let merged = self.merge(a, left);
            self.set_children(b, merged, right);
            b
        }
    }

    /// Links the detached node `idx` into the tree at its key's place: down the search path
    /// while the path's nodes outrank it, then the rest of the path split around it. Changes
    /// the nodes on that path once each (and the few of the split below), which is what a
    /// snapshot's first write copies.
    fn link(&mut self, idx: usize) {
        // The node is detached, so its member can step out while the tree is searched.
        let Some(node) = self.node_mut(idx) else {
            return;
        };
        let (score, priority, member) =
            (node.score, node.priority, std::mem::take(&mut node.member));
        self.set_children(idx, NIL, NIL);
        self.root = self.link_under(self.root, idx, priority, score, &member);
        if let Some(node) = self.node_mut(idx) {
            node.member = member;
        }
    }

    /// Links node `idx` (key (score, member), detached, childless) into the subtree `root`;
    /// returns the subtree's new root.
    fn link_under(
        &mut self,
        root: usize,
        idx: usize,
        priority: u64,
        score: f64,
        member: &[u8],
    ) -> usize {
        let Some(node) = self.node(root) else {
            return idx;
        };
        let (left, right) = (node.left, node.right);
        if priority > node.priority {
            let (below, above) = self.split(root, &|other: &Node| {
                cmp_keys(other.score, &other.member, score, member) == Ordering::Less
            });
            self.set_children(idx, below, above);
            return idx;
        }
        if cmp_keys(score, member, node.score, &node.member) == Ordering::Less {
            let left = self.link_under(left, idx, priority, score, member);
            self.set_children(root, left, right);
        } else {
            let right = self.link_under(right, idx, priority, score, member);
            self.set_children(root, left, right);
        }
        root
    }

    /// Detaches the node with key (score, member) and returns its slot, still allocated.
    fn unlink(&mut self, score: f64, member: &[u8]) -> Option<usize> {
        // Find it first: the way down changes every node on the path.
        let mut idx = self.root;
        while let Some(node) = self.node(idx) {
            idx = match cmp_keys(score, member, node.score, &node.member) {
                Ordering::Less => node.left,
                Ordering::Greater => node.right,
                Ordering::Equal => break,
            };
        }
        self.node(idx)?;
        self.root = self.unlink_under(self.root, score, member);
        Some(idx)
    }

    /// Removes the node with key (score, member), which is in the subtree `root`; returns the
    /// subtree's new root.
    fn unlink_under(&mut self, root: usize, score: f64, member: &[u8]) -> usize {
        let Some(node) = self.node(root) else {
            return NIL;
        };
        let (left, right) = (node.left, node.right);
        match cmp_keys(score, member, node.score, &node.member) {
            Ordering::Equal => self.merge(left, right),
            Ordering::Less => {
                let left = self.unlink_under(left, score, member);
                self.set_children(root, left, right);
                root
            }
            Ordering::Greater => {
                let right = self.unlink_under(right, score, member);
                self.set_children(root, left, right);
                root
            }
        }
    }

    /// Inserts a member known to be absent; returns its slot, which it keeps while it is in the
    /// tree.
    pub(super) fn insert(&mut self, member: CompactBytes, score: f64) -> usize {
        self.member_bytes += member.heap_size();
        let node = Node {
            member,
            score,
            priority: self.next_priority(),
            left: NIL,
            right: NIL,
            size: 1,
        };
        let free = self.free;
        let idx = match self.node_mut(free) {
            Some(slot) => {
                let next_free = slot.left;
                *slot = node;
                self.free = next_free;
                free
            }
            None => self.push(node),
        };
        self.link(idx);
        idx
    }

    /// The member and score in slot `idx`, if it is live.
    pub(super) fn at(&self, idx: usize) -> Option<(&[u8], f64)> {
        self.node(idx)
            .filter(|node| node.size > 0)
            .map(|node| (&*node.member, node.score))
    }

    /// Moves the member with key (old_score, member) to `new_score`, keeping its slot.
    pub(super) fn rescore(&mut self, member: &[u8], old_score: f64, new_score: f64) {
        if let Some(idx) = self.unlink(old_score, member) {
            if let Some(node) = self.node_mut(idx) {
                node.score = new_score;
            }
            self.link(idx);
        }
    }

    /// Removes the member with key (score, member); returns true if and only if it was there.
    pub(super) fn remove(&mut self, score: f64, member: &[u8]) -> bool {
        match self.unlink(score, member) {
            Some(idx) => {
                self.release(idx);
                self.reset_if_empty();
                true
            }
            None => false,
        }
    }

    /// Frees slot `idx` and returns its member.
    fn release(&mut self, idx: usize) -> CompactBytes {
        let next_free = self.free;
        let Some(node) = self.node_mut(idx) else {
            return CompactBytes::new();
        };
        let member = std::mem::take(&mut node.member);
        node.left = next_free;
        node.right = NIL;
        node.size = 0;
        self.free = idx;
        self.member_bytes -= member.heap_size();
        member
    }

    /// An empty tree gives its arena back.
    fn reset_if_empty(&mut self) {
        if self.root == NIL {
            self.chunks = Vec::new();
            self.slots = 0;
            self.free = NIL;
        }
    }

    /// Removes the members of ranks `start..end` and returns them in order, with the slots
    /// they had.
    pub(super) fn remove_ranks(
        &mut self,
        start: usize,
        end: usize,
    ) -> Vec<(usize, CompactBytes, f64)> {
        if start >= end {
            return Vec::new();
        }
        let (left, rest) = self.split_at_rank(self.root, start);
        let (middle, right) = self.split_at_rank(rest, end - start);
        self.root = self.merge(left, right);
        let mut removed = Vec::with_capacity(self.size(middle));
        let mut slots = Vec::with_capacity(self.size(middle));
        let mut iter = Iter::new(self, middle, 0, usize::MAX, false);
        while let Some(idx) = iter.next_slot(self) {
            slots.push(idx);
        }
        for idx in slots {
            let score = self.node(idx).map_or(0.0, |node| node.score);
            let member = self.release(idx);
            removed.push((idx, member, score));
        }
        self.reset_if_empty();
        removed
    }

    /// How many members satisfy `before`, a predicate that holds for a prefix of the order.
    pub(super) fn count_prefix(&self, before: impl Fn(f64, &[u8]) -> bool) -> usize {
        let mut count = 0;
        let mut idx = self.root;
        while let Some(node) = self.node(idx) {
            if before(node.score, &node.member) {
                count += self.size(node.left) + 1;
                idx = node.right;
            } else {
                idx = node.left;
            }
        }
        count
    }

    /// Members from `rank` on, ascending (or descending from `rank` down when `reverse`), at
    /// most `limit` of them.
    pub(super) fn iter_from(
        &self,
        rank: usize,
        limit: usize,
        reverse: bool,
    ) -> impl Iterator<Item = (&[u8], f64)> {
        let mut iter = Iter::new(self, self.root, rank, limit, reverse);
        std::iter::from_fn(move || {
            let idx = iter.next_slot(self)?;
            self.node(idx).map(|node| (&*node.member, node.score))
        })
    }

    /// Visits live slots from `cursor` until `count` members were visited or the arena ends;
    /// returns the next cursor, 0 at the end. A member in the set for the whole scan keeps its
    /// slot, so some call visits it.
    pub(super) fn scan(
        &self,
        cursor: usize,
        count: usize,
        mut visit: impl FnMut(&[u8], f64),
    ) -> usize {
        let mut seen = 0;
        let mut slot = cursor;
        while let Some(node) = self.node(slot) {
            slot += 1;
            if node.size > 0 {
                visit(&node.member, node.score);
                seen += 1;
                if seen >= count {
                    break;
                }
            }
        }
        if slot >= self.slots() { 0 } else { slot }
    }

    /// Heap bytes of the arena and the members. A chunk still shared with a snapshot's version
    /// counts in both.
    pub(super) fn heap_size(&self) -> usize {
        self.member_bytes
            + self.chunks.capacity() * std::mem::size_of::<Arc<[Node]>>()
            + self.chunks.len()
                * (CHUNK_NODES * std::mem::size_of::<Node>() + 2 * std::mem::size_of::<usize>())
    }

    /// How many chunks, position by position, this tree shares with `other`; and its chunks.
    #[cfg(test)]
    pub(super) fn chunks_shared_with(&self, other: &Tree) -> (usize, usize) {
        let shared = self
            .chunks
            .iter()
            .zip(&other.chunks)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        (shared, self.chunks.len())
    }

    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        fn walk(tree: &Tree, idx: usize) -> usize {
            let Some(node) = tree.node(idx) else { return 0 };
            for child in [node.left, node.right] {
                if let Some(c) = tree.node(child) {
                    assert!(c.priority <= node.priority, "heap order");
                }
            }
            let size = 1 + walk(tree, node.left) + walk(tree, node.right);
            assert_eq!(size, node.size, "subtree size");
            size
        }
        walk(self, self.root);
        let live = (0..self.slots())
            .filter(|&idx| self.node(idx).is_some_and(|node| node.size > 0))
            .count();
        assert_eq!(live, self.len(), "live slots");
        let mut free = 0;
        let mut idx = self.free;
        while let Some(node) = self.node(idx) {
            assert_eq!(node.size, 0, "a free slot in use");
            free += 1;
            idx = node.left;
        }
        assert_eq!(live + free, self.slots(), "every slot live or free");
        assert!(self.chunks.iter().all(|chunk| chunk.len() == CHUNK_NODES));
        assert!(self.slots <= self.chunks.len() * CHUNK_NODES);
        assert!(self.slots + CHUNK_NODES > self.chunks.len() * CHUNK_NODES);
        for idx in self.slots..self.chunks.len() * CHUNK_NODES {
            assert!(self.node(idx).is_some_and(|node| node.size == 0), "vacant");
        }
    }
}

/// An in-order walk with an explicit stack: O(log n) to start at a rank, O(1) amortised a step.
struct Iter {
    stack: Vec<usize>,
    remaining: usize,
    reverse: bool,
}

impl Iter {
    fn new(tree: &Tree, root: usize, mut rank: usize, limit: usize, reverse: bool) -> Iter {
        let mut stack = Vec::new();
        let mut idx = root;
        // Push the path to `rank`, keeping only the nodes still ahead of the walk.
        while let Some(node) = tree.node(idx) {
            let left_size = tree.size(node.left);
            match rank.cmp(&left_size) {
                Ordering::Less => {
                    if !reverse {
                        stack.push(idx);
                    }
                    idx = node.left;
                }
                Ordering::Equal => {
                    stack.push(idx);
                    break;
                }
                Ordering::Greater => {
                    if reverse {
                        stack.push(idx);
                    }
                    rank -= left_size + 1;
                    idx = node.right;
                }
            }
        }
        Iter {
            stack,
            remaining: limit,
            reverse,
        }
    }

    fn next_slot(&mut self, tree: &Tree) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        let idx = self.stack.pop()?;
        self.remaining -= 1;
        let (mut child, reverse) = if self.reverse {
            (tree.left(idx), true)
        } else {
            (tree.right(idx), false)
        };
        while child != NIL {
            self.stack.push(child);
            child = if reverse {
                tree.right(child)
            } else {
                tree.left(child)
            };
        }
        Some(idx)
    }
}
