//! Streams.
//!
//! A [`Stream`] holds entries keyed by [`StreamId`]s in increasing order, as Redis's radix tree
//! of listpacks does: the entries live in nodes of at most [`NODE_MAX_ENTRIES`] entries, each
//! node behind its own `Arc` and keyed by its first id in a `BTreeMap`, its entries packed
//! back to back in one buffer (see `Node`). Cloning a stream (what
//! the first write after a snapshot cut does while the snapshot holds the pre-cut version)
//! copies one pointer per node, and the write then copies only the node it changes
//! (`Arc::make_mut`), never the whole stream.
//!
//! As in Redis, a node takes appends only until it has received `stream-node-max-entries`
//! entries (deleted ones included) or holds `stream-node-max-bytes`, so that approximate trimming (`~`), which
//! removes only whole nodes, leaves the lengths Redis's does for the same commands.
//!
//! Besides its entries a stream keeps Redis 7.0's bookkeeping: the last id, the number of
//! entries ever added, the greatest deleted id, and its consumer groups, each with its
//! last-delivered id, entries-read counter, pending entries list (PEL) and consumers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use super::packed::{push_varint, read_varint, varint_len};

use super::limits::ENCODING_LIMITS;

/// The most entries a node receives at Redis 7.0's default `stream-node-max-entries`; the
/// limit in force is [`ENCODING_LIMITS`]'s.
pub const NODE_MAX_ENTRIES: usize = 100;

/// A node marks where every this-many-th record it receives starts, so that a read starting
/// inside the node (XREADGROUP `>` after the group's last id, XRANGE from an id, a lookup by id)
/// skips to the mark before its start and decodes at most this many records to get there, not
/// up to a whole node's (docs/benchmarks.md, "Streams").
const MARK_EVERY: usize = 16;

/// A stream entry id: milliseconds and a sequence number, ordered as the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// The milliseconds part.
    pub ms: u64,
    /// The sequence part.
    pub seq: u64,
}

impl StreamId {
    /// The smallest id, `0-0`.
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    /// The greatest id, `18446744073709551615-18446744073709551615`.
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    /// The id `ms-seq`.
    pub const fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// The id right after this one, or None for [`StreamId::MAX`].
    pub fn next(self) -> Option<StreamId> {
        match self.seq.checked_add(1) {
            Some(seq) => Some(StreamId::new(self.ms, seq)),
            None => self.ms.checked_add(1).map(|ms| StreamId::new(ms, 0)),
        }
    }

    /// The id right before this one, or None for [`StreamId::MIN`].
    pub fn prev(self) -> Option<StreamId> {
        match self.seq.checked_sub(1) {
            Some(seq) => Some(StreamId::new(self.ms, seq)),
            None => self.ms.checked_sub(1).map(|ms| StreamId::new(ms, u64::MAX)),
        }
    }

    /// Parses `ms-seq`, or `ms` alone with `missing_seq` as its sequence, as Redis's
    /// `streamParseID` does (both parts unsigned decimal, no sign, no spaces).
    pub fn parse(bytes: &[u8], missing_seq: u64) -> Option<StreamId> {
        match bytes.iter().position(|&b| b == b'-') {
            Some(dash) => {
                let (ms, seq) = bytes.split_at(dash);
                Some(StreamId::new(parse_u64(ms)?, parse_u64(seq.get(1..)?)?))
            }
            None => Some(StreamId::new(parse_u64(bytes)?, missing_seq)),
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// An unsigned decimal as Redis's `string2ull` reads it: digits only, fitting in 64 bits.
fn parse_u64(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 20 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// The encoded size of an entry's record in a node (see [`Node`]).
fn record_len(ms_delta: u64, seq: u64, fields: &[&[u8]]) -> usize {
    varint_len(ms_delta)
        + varint_len(seq)
        + varint_len(fields.len() as u64)
        + fields
            .iter()
            .map(|f| varint_len(f.len() as u64) + f.len())
            .sum::<usize>()
}

/// The strings of one entry: field, value, field, value...
#[derive(Clone)]
pub struct Fields<'a> {
    packed: &'a [u8],
    at: usize,
    left: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        let (len, used) = read_varint(self.packed, self.at)?;
        let start = self.at + used;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        let bytes = self.packed.get(start..end)?;
        self.at = end;
        self.left -= 1;
        Some(bytes)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Fields<'_> {}

impl fmt::Debug for Fields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.clone().map(String::from_utf8_lossy))
            .finish()
    }
}

/// A node: entries in id order, packed back to back in one buffer as Redis packs a node into a
/// listpack. Each record is the id (milliseconds as the difference from the node's base id,
/// then the sequence, both varints), the number of strings, and the strings (varint length,
/// bytes). Lookups scan the node, as Redis's do; a node holds at most
/// `stream-node-max-entries` entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    /// The id the node was keyed by when made: at most its first entry's.
    base: StreamId,
    data: Vec<u8>,
    /// Live entries.
    count: usize,
    /// Entries this node has received, deleted ones included (Redis's master entry counts).
    received: usize,
    /// Where the last record starts in `data` (0 when empty): the stream's last entry is read
    /// without decoding the node from its front, as Redis's reverse listpack iterator starts
    /// at the end (XREADGROUP `>` and XREAD check it on every call).
    last_start: usize,
    /// Where some records start, in increasing order: every [`MARK_EVERY`]-th record received
    /// (a deleted record's mark goes with it). Any record start is a valid mark; reads seek with
    /// them (`Node::records_from`).
    marks: Vec<u32>,
}

/// One record of a node: its id, its strings, and where it sits in the buffer.
struct Record<'a> {
    id: StreamId,
    fields: Fields<'a>,
    start: usize,
    end: usize,
}

impl Node {
    fn new(base: StreamId) -> Node {
        Node {
            base,
            ..Node::default()
        }
    }

    /// `streamAppendItem`'s test: a node takes another entry while under both limits (0 is no
    /// limit); the bytes are forkless's packed bytes, not a listpack's, so a byte-limited node
    /// holds somewhat more than Redis's.
    fn takes(&self, size: usize) -> bool {
        let max_entries = ENCODING_LIMITS.stream_node_max_entries();
        let max_bytes = ENCODING_LIMITS.stream_node_max_bytes();
        (max_entries == 0 || self.received < max_entries)
            && (max_bytes == 0 || self.count == 0 || self.data.len() + size < max_bytes)
    }

    /// Appends a record; the caller has checked `id` is above every id here and not below
    /// `base`.
    fn push(&mut self, id: StreamId, fields: &[&[u8]]) {
        let ms_delta = id.ms.saturating_sub(self.base.ms);
        self.data.reserve(record_len(ms_delta, id.seq, fields));
        self.last_start = self.data.len();
        if self.received > 0 && self.received % MARK_EVERY == 0 {
            // A node so big that offsets pass u32 (no byte limit) just goes unmarked there.
            if let Ok(at) = u32::try_from(self.data.len()) {
                self.marks.push(at);
            }
        }
        push_varint(&mut self.data, ms_delta);
        push_varint(&mut self.data, id.seq);
        push_varint(&mut self.data, fields.len() as u64);
        for field in fields {
            push_varint(&mut self.data, field.len() as u64);
            self.data.extend_from_slice(field);
        }
        self.count += 1;
        self.received += 1;
        let max_entries = ENCODING_LIMITS.stream_node_max_entries();
        if max_entries != 0 && self.received >= max_entries {
            // A full node takes no more appends: drop the growth slack.
            self.data.shrink_to_fit();
        }
    }

    /// The records in order.
    fn records(&self) -> Records<'_> {
        Records { node: self, at: 0 }
    }

    /// The records from the last mark whose record is below `start` (or the first record): the
    /// caller still skips those below `start`, at most [`MARK_EVERY`] of them.
    fn records_from(&self, start: StreamId) -> Records<'_> {
        let id_at = |at: u32| {
            Records {
                node: self,
                at: at as usize,
            }
            .next()
            .map_or(StreamId::MAX, |r| r.id)
        };
        let before = self.marks.partition_point(|&at| id_at(at) < start);
        let at = match before.checked_sub(1) {
            Some(i) => self.marks.get(i).map_or(0, |&at| at as usize),
            None => 0,
        };
        Records { node: self, at }
    }

    /// The live entries with `start <= id <= end`.
    fn entries_in(&self, start: StreamId, end: StreamId) -> Vec<Item<'_>> {
        self.records_from(start)
            .skip_while(|r| r.id < start)
            .take_while(|r| r.id <= end)
            .map(|r| (r.id, r.fields))
            .collect()
    }

    fn find(&self, id: StreamId) -> Option<Record<'_>> {
        self.records_from(id)
            .take_while(|r| r.id <= id)
            .find(|r| r.id == id)
    }

    /// The first record, decoded alone.
    fn first_record(&self) -> Option<Record<'_>> {
        self.records().next()
    }

    /// The last record, decoded alone from where it starts.
    fn last_record(&self) -> Option<Record<'_>> {
        if self.count == 0 {
            return None;
        }
        Records {
            node: self,
            at: self.last_start,
        }
        .next()
    }

    fn last_id(&self) -> Option<StreamId> {
        self.last_record().map(|r| r.id)
    }

    /// Removes the bytes `start..end` (whole records), which hold `n` entries.
    fn remove(&mut self, start: usize, end: usize, n: usize) {
        let removed_tail = end >= self.data.len();
        self.data.drain(start..end);
        self.count -= n;
        let removed = end - start;
        self.marks.retain_mut(|at| {
            let offset = *at as usize;
            if offset < start {
                true
            } else if offset < end {
                false
            } else {
                // Still a record start, `removed` bytes earlier (below u32 as it was).
                *at = u32::try_from(offset - removed).unwrap_or(0);
                true
            }
        });
        if self.count == 0 {
            self.last_start = 0;
        } else if removed_tail {
            // The last record went: find the new last one (deleting the newest entry is rare).
            self.last_start = self.records().last().map_or(0, |r| r.start);
        } else if start < self.last_start {
            self.last_start -= end - start;
        }
    }
}

/// The records of a node, decoded front to back.
struct Records<'a> {
    node: &'a Node,
    at: usize,
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        let data = &self.node.data;
        let start = self.at;
        let (ms_delta, used) = read_varint(data, start)?;
        let mut at = start + used;
        let (seq, used) = read_varint(data, at)?;
        at += used;
        let (n, used) = read_varint(data, at)?;
        at += used;
        let fields = Fields {
            packed: data,
            at,
            left: usize::try_from(n).ok()?,
        };
        let mut end = at;
        for _ in 0..n {
            let (len, used) = read_varint(data, end)?;
            end = end
                .checked_add(used)?
                .checked_add(usize::try_from(len).ok()?)?;
        }
        if end > data.len() {
            return None;
        }
        self.at = end;
        Some(Record {
            id: StreamId::new(self.node.base.ms.wrapping_add(ms_delta), seq),
            fields,
            start,
            end,
        })
    }
}

/// A pending entry of a consumer group: delivered and not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// When it was last delivered, in Unix milliseconds.
    pub delivery_time: u64,
    /// How many times it was delivered.
    pub delivery_count: u64,
    /// The consumer that owns it.
    pub consumer: Bytes,
}

/// A consumer of a group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Consumer {
    /// When it last tried an interaction (read, claim), in Unix milliseconds.
    pub seen_time: u64,
    /// When it last succeeded an interaction, in Unix milliseconds; None if never (Redis's -1).
    pub active_time: Option<u64>,
    /// The ids it owns in its group's PEL.
    pub pending: BTreeSet<StreamId>,
}

/// A consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Group {
    /// The last id delivered to a consumer of the group.
    pub last_id: StreamId,
    /// The number of entries the group has read, when known (Redis's `SCG_INVALID_ENTRIES_READ`
    /// is None).
    pub entries_read: Option<u64>,
    /// The pending entries list, by id.
    pub pending: BTreeMap<StreamId, Pending>,
    /// The consumers, by name.
    pub consumers: BTreeMap<Bytes, Consumer>,
}

impl Group {
    /// A group whose last delivered id is `last_id`.
    pub fn new(last_id: StreamId, entries_read: Option<u64>) -> Group {
        Group {
            last_id,
            entries_read,
            ..Group::default()
        }
    }

    /// Removes `id` from the PEL and from its consumer's PEL; returns true if it was pending.
    pub fn ack(&mut self, id: StreamId) -> bool {
        match self.pending.remove(&id) {
            Some(pending) => {
                if let Some(consumer) = self.consumers.get_mut(&pending.consumer) {
                    consumer.pending.remove(&id);
                }
                true
            }
            None => false,
        }
    }

    /// Hands `id` to `consumer` (created if missing), with the given delivery time and count.
    pub fn assign(&mut self, id: StreamId, consumer: &Bytes, delivery_time: u64, count: u64) {
        if let Some(old) = self.pending.get(&id) {
            if old.consumer != *consumer {
                if let Some(owner) = self.consumers.get_mut(&old.consumer) {
                    owner.pending.remove(&id);
                }
            }
        }
        self.pending.insert(
            id,
            Pending {
                delivery_time,
                delivery_count: count,
                consumer: consumer.clone(),
            },
        );
        // Looked up before inserting: the usual consumer exists, and `entry` would clone (and
        // drop) its name on every delivery.
        match self.consumers.get_mut(consumer) {
            Some(owner) => {
                owner.pending.insert(id);
            }
            None => {
                self.consumers
                    .entry(consumer.clone())
                    .or_default()
                    .pending
                    .insert(id);
            }
        }
    }

    fn heap_size(&self) -> usize {
        self.pending.len() * 64
            + self
                .consumers
                .iter()
                .map(|(name, consumer)| name.len() + 64 + consumer.pending.len() * 24)
                .sum::<usize>()
    }
}

/// A stream. Redis 7.0 reports every stream as `stream`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stream {
    /// The nodes, keyed by the id of their first entry at the time they were made (an entry
    /// deleted from a node's front leaves the key below the node's entries, which keeps the
    /// map's order: every key is at most its node's first id and above the previous node's
    /// last).
    nodes: BTreeMap<StreamId, Arc<Node>>,
    len: usize,
    last_id: StreamId,
    entries_added: u64,
    max_deleted_id: StreamId,
    /// The groups by name, behind an `Arc` so that a clone of the stream shares them.
    groups: Arc<BTreeMap<Bytes, Group>>,
    entry_bytes: usize,
}

/// One entry as the iterators yield it.
pub type Item<'a> = (StreamId, Fields<'a>);

impl Stream {
    /// An empty stream.
    pub fn new() -> Stream {
        Stream::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns true if and only if the stream has no entries (it may still have groups).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The greatest id ever added (or set by XSETID).
    pub fn last_id(&self) -> StreamId {
        self.last_id
    }

    /// Sets the last id (XSETID); the caller checks it is not below the greatest entry's.
    pub fn set_last_id(&mut self, id: StreamId) {
        self.last_id = id;
    }

    /// How many entries were ever added.
    pub fn entries_added(&self) -> u64 {
        self.entries_added
    }

    /// Sets the entries-added counter (XSETID ENTRIESADDED, loading).
    pub fn set_entries_added(&mut self, n: u64) {
        self.entries_added = n;
    }

    /// The greatest id ever deleted.
    pub fn max_deleted_id(&self) -> StreamId {
        self.max_deleted_id
    }

    /// Sets the greatest deleted id (XSETID MAXDELETEDID, loading).
    pub fn set_max_deleted_id(&mut self, id: StreamId) {
        self.max_deleted_id = id;
    }

    /// Redis's `encoding` for OBJECT ENCODING.
    pub fn encoding(&self) -> &'static str {
        "stream"
    }

    /// An estimate of the heap bytes the stream holds.
    pub fn heap_size(&self) -> usize {
        self.entry_bytes
            + self.nodes.len() * (std::mem::size_of::<Node>() + 48)
            + self.groups.values().map(Group::heap_size).sum::<usize>()
    }

    /// The number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The entries node by node, in id order: how the RDB writer groups them into listpacks.
    pub fn nodes(&self) -> impl Iterator<Item = impl Iterator<Item = Item<'_>> + '_> + '_ {
        self.nodes
            .values()
            .filter(|node| node.count > 0)
            .map(|node| node.records().map(|r| (r.id, r.fields)))
    }

    /// The first entry, if any: one record decoded.
    pub fn first(&self) -> Option<Item<'_>> {
        self.nodes
            .values()
            .find_map(|node| node.first_record())
            .map(|r| (r.id, r.fields))
    }

    /// The last entry, if any: one record decoded.
    pub fn last(&self) -> Option<Item<'_>> {
        self.nodes
            .values()
            .rev()
            .find_map(|node| node.last_record())
            .map(|r| (r.id, r.fields))
    }

    /// Every entry in id order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Item<'_>> + '_ {
        self.range(StreamId::MIN, StreamId::MAX)
    }

    /// The entries with `start <= id <= end`, in id order (reversible for XREVRANGE).
    pub fn range(
        &self,
        start: StreamId,
        end: StreamId,
    ) -> impl DoubleEndedIterator<Item = Item<'_>> + '_ {
        // The node that may hold `start` is the last one keyed at or below it.
        let from = self
            .nodes
            .range(..=start)
            .next_back()
            .map_or(start, |(key, _)| *key);
        let nodes = if start <= end {
            self.nodes.range(from..=end)
        } else {
            self.nodes.range(from..from)
        };
        nodes.flat_map(move |(_, node)| node.entries_in(start, end))
    }

    /// [`Stream::range`] forwards only, decoding each record as it is taken: what XRANGE,
    /// XREAD and XREADGROUP use, so a read of COUNT entries decodes about COUNT records rather
    /// than the rest of every node it touches (docs/benchmarks.md, "Streams").
    pub fn range_forward(
        &self,
        start: StreamId,
        end: StreamId,
    ) -> impl Iterator<Item = Item<'_>> + '_ {
        let from = self
            .nodes
            .range(..=start)
            .next_back()
            .map_or(start, |(key, _)| *key);
        let nodes = if start <= end {
            self.nodes.range(from..=end)
        } else {
            self.nodes.range(from..from)
        };
        nodes.flat_map(move |(_, node)| {
            node.records_from(start)
                .skip_while(move |r| r.id < start)
                .take_while(move |r| r.id <= end)
                .map(|r| (r.id, r.fields))
        })
    }

    /// The entry with `id`, if present.
    pub fn get(&self, id: StreamId) -> Option<Fields<'_>> {
        let (_, node) = self.nodes.range(..=id).next_back()?;
        node.find(id).map(|r| r.fields)
    }

    /// Appends an entry with `id`, which the caller has checked is above [`Stream::last_id`].
    /// Counts it in the entries added and makes it the last id.
    pub fn append(&mut self, id: StreamId, fields: &[&[u8]]) {
        self.len += 1;
        self.entries_added = self.entries_added.saturating_add(1);
        self.last_id = self.last_id.max(id);
        if let Some(mut last) = self.nodes.last_entry() {
            let node = last.get_mut();
            let size = record_len(id.ms.saturating_sub(node.base.ms), id.seq, fields);
            if node.takes(size) {
                let node = Arc::make_mut(node);
                let before = node.data.len();
                node.push(id, fields);
                self.entry_bytes += node.data.len() - before;
                return;
            }
        }
        let mut node = Node::new(id);
        node.push(id, fields);
        self.entry_bytes += node.data.len();
        self.nodes.insert(id, Arc::new(node));
    }

    /// Deletes the entry with `id`; returns true if it was present. The caller keeps
    /// the max-deleted id (XDEL does, trimming does too through [`Stream::trim`]).
    pub fn delete(&mut self, id: StreamId) -> bool {
        let Some(key) = self.nodes.range(..=id).next_back().map(|(key, _)| *key) else {
            return false;
        };
        let Some(node) = self.nodes.get_mut(&key) else {
            return false;
        };
        let Some((start, end)) = node.find(id).map(|r| (r.start, r.end)) else {
            return false;
        };
        let node = Arc::make_mut(node);
        node.remove(start, end, 1);
        self.entry_bytes -= end - start;
        self.len -= 1;
        if node.count == 0 {
            // Redis frees a node whose entries are all deleted.
            self.nodes.remove(&key);
        }
        true
    }

    /// Trims the stream as XTRIM/XADD do: removes entries from the front while more than
    /// `maxlen` remain (if given) or while the first id is below `minid` (if given). When
    /// `approx`, only whole nodes go, as Redis's `~`; `limit` (0: none) caps the entries an
    /// approximate trim removes. Returns the number removed. As in Redis 7.0, trimming leaves the
    /// max-deleted id alone (only XDEL moves it).
    pub fn trim(
        &mut self,
        maxlen: Option<usize>,
        minid: Option<StreamId>,
        approx: bool,
        limit: usize,
    ) -> usize {
        let mut removed = 0;
        while let Some(mut first) = self.nodes.first_entry() {
            let over = |len: usize| maxlen.is_some_and(|max| len > max);
            if !over(self.len) && minid.is_none() {
                break;
            }
            let node = first.get();
            let n = node.count;
            let last_in_node = node.last_id().unwrap_or(StreamId::MIN);
            let whole = match (maxlen, minid) {
                (Some(max), _) => self.len - n >= max,
                (None, Some(min)) => last_in_node < min,
                (None, None) => false,
            };
            if whole {
                if limit != 0 && removed + n > limit {
                    break;
                }
                let bytes = node.data.len();
                first.remove();
                self.len -= n;
                self.entry_bytes -= bytes;
                removed += n;
                continue;
            }
            if approx {
                break;
            }
            // Exact trimming deletes entries from the front of this node and stops.
            let cut = match (maxlen, minid) {
                (Some(max), _) => (self.len - max).min(n),
                (None, Some(min)) => node.records().take_while(|r| r.id < min).count(),
                (None, None) => 0,
            };
            if cut == 0 {
                break;
            }
            let bytes = node.records().nth(cut - 1).map_or(0, |r| r.end);
            Arc::make_mut(first.get_mut()).remove(0, bytes, cut);
            self.entry_bytes -= bytes;
            self.len -= cut;
            removed += cut;
            break;
        }
        removed
    }

    /// The consumer groups by name.
    pub fn groups(&self) -> &BTreeMap<Bytes, Group> {
        &self.groups
    }

    /// The consumer groups for changing (copies the groups once if a snapshot shares them).
    pub fn groups_mut(&mut self) -> &mut BTreeMap<Bytes, Group> {
        Arc::make_mut(&mut self.groups)
    }

    /// The group `name`, if present.
    pub fn group(&self, name: &[u8]) -> Option<&Group> {
        self.groups.get(name)
    }

    /// The group `name` for changing, if present.
    pub fn group_mut(&mut self, name: &[u8]) -> Option<&mut Group> {
        if !self.groups.contains_key(name) {
            return None;
        }
        Arc::make_mut(&mut self.groups).get_mut(name)
    }

    /// The number of entries with ids above `after`.
    pub fn count_after(&self, after: StreamId) -> usize {
        match after.next() {
            Some(from) => self.range(from, StreamId::MAX).count(),
            None => 0,
        }
    }

    /// Redis 7.0's `streamRangeHasTombstones`: whether an entry may have been deleted between
    /// `start` and `end` (inclusive), judged from the max-deleted id and the first entry.
    pub fn range_has_tombstones(&self, start: StreamId, end: StreamId) -> bool {
        if self.is_empty() || self.max_deleted_id == StreamId::MIN {
            return false;
        }
        if self.first_id() > self.max_deleted_id {
            return false;
        }
        start <= self.max_deleted_id && self.max_deleted_id <= end
    }

    /// Redis 7.0's `streamEstimateDistanceFromFirstEverEntry`: the entries-read number of
    /// `id` when it can be computed, else None.
    pub fn estimate_distance(&self, id: StreamId) -> Option<u64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if self.is_empty() && id < self.last_id {
            return Some(self.entries_added);
        }
        if id == self.last_id {
            return Some(self.entries_added);
        }
        if id > self.last_id {
            return None;
        }
        if self.max_deleted_id == StreamId::MIN || self.max_deleted_id < self.first_id() {
            // No tombstones in the stream: the first entry is number entries_added - len + 1.
            let first = self.first_id();
            if id < first {
                return Some(self.entries_added - self.len as u64);
            }
            if id == first {
                return Some(self.entries_added - self.len as u64 + 1);
            }
        }
        None
    }

    /// The first entry's id, or 0-0 for an empty stream.
    pub fn first_id(&self) -> StreamId {
        self.first().map_or(StreamId::MIN, |(id, _)| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId::new(ms, seq)
    }

    fn filled(n: u64) -> Stream {
        let mut stream = Stream::new();
        for i in 1..=n {
            let value = i.to_string();
            stream.append(id(i, 0), &[b"f", value.as_bytes()]);
        }
        stream
    }

    fn ids<'a>(items: impl Iterator<Item = Item<'a>>) -> Vec<u64> {
        items.map(|(id, _)| id.ms).collect()
    }

    #[test]
    fn ids_parse_and_step_like_redis() {
        assert_eq!(StreamId::parse(b"5-3", 0), Some(id(5, 3)));
        assert_eq!(StreamId::parse(b"5", 7), Some(id(5, 7)));
        assert_eq!(StreamId::parse(b"-", 0), None);
        assert_eq!(StreamId::parse(b"5-", 0), None);
        assert_eq!(StreamId::parse(b"-5", 0), None);
        assert_eq!(StreamId::parse(b"+5", 0), None);
        assert_eq!(StreamId::parse(b"18446744073709551616", 0), None);
        assert_eq!(id(1, u64::MAX).next(), Some(id(2, 0)));
        assert_eq!(StreamId::MAX.next(), None);
        assert_eq!(id(2, 0).prev(), Some(id(1, u64::MAX)));
        assert_eq!(StreamId::MIN.prev(), None);
        assert_eq!(id(3, 4).to_string(), "3-4");
    }

    #[test]
    fn append_range_and_fields() {
        let mut stream = Stream::new();
        stream.append(id(1, 0), &[b"a", b"1", b"b", b""]);
        stream.append(id(1, 1), &[b"c", b"3"]);
        assert_eq!(stream.len(), 2);
        assert_eq!(stream.last_id(), id(1, 1));
        assert_eq!(stream.entries_added(), 2);
        let fields: Vec<&[u8]> = stream.get(id(1, 0)).expect("present").collect();
        assert_eq!(fields, [&b"a"[..], b"1", b"b", b""]);
        assert!(stream.get(id(1, 2)).is_none());
        assert_eq!(stream.encoding(), "stream");
    }

    #[test]
    fn ranges_cross_nodes_both_ways() {
        let stream = filled(1000);
        assert_eq!(stream.node_count(), 10);
        assert_eq!(
            ids(stream.range(id(95, 0), id(205, 0))),
            (95..=205).collect::<Vec<_>>()
        );
        assert_eq!(
            ids(stream.range(id(95, 0), id(205, 0)).rev().take(3)),
            [205, 204, 203]
        );
        assert_eq!(
            ids(stream.range_forward(id(95, 0), id(205, 0))),
            ids(stream.range(id(95, 0), id(205, 0)))
        );
        assert_eq!(
            ids(stream.range_forward(id(5, 0), id(4, 0))),
            Vec::<u64>::new()
        );
        assert_eq!(ids(stream.range(id(5, 0), id(4, 0))), Vec::<u64>::new());
        assert_eq!(
            ids(stream.range(id(2000, 0), StreamId::MAX)),
            Vec::<u64>::new()
        );
        assert_eq!(stream.first_id(), id(1, 0));
        assert_eq!(stream.last().map(|(id, _)| id), Some(id(1000, 0)));
    }

    /// Seeks through a node's marks, and the first and last entries read alone, agree with a
    /// plain model after deletes (the marks' records, a node's last record) and trims.
    #[test]
    fn seeks_first_and_last_agree_with_a_model_after_deletes() {
        let mut stream = filled(1000);
        let mut model: BTreeSet<u64> = (1..=1000).collect();
        let check = |stream: &Stream, model: &BTreeSet<u64>| {
            assert_eq!(stream.first().map(|(id, _)| id.ms), model.first().copied());
            assert_eq!(stream.last().map(|(id, _)| id.ms), model.last().copied());
            assert_eq!(
                ids(stream.iter()),
                model.iter().copied().collect::<Vec<_>>()
            );
            for ms in 0..=1001 {
                assert_eq!(
                    stream.get(id(ms, 0)).is_some(),
                    model.contains(&ms),
                    "get {ms}"
                );
                let next = model.range(ms..).next().copied();
                assert_eq!(
                    stream
                        .range_forward(id(ms, 0), StreamId::MAX)
                        .next()
                        .map(|(id, _)| id.ms),
                    next,
                    "seek {ms}"
                );
                assert_eq!(
                    stream
                        .range(id(ms, 0), StreamId::MAX)
                        .next()
                        .map(|(id, _)| id.ms),
                    next,
                    "range {ms}"
                );
            }
            if let Some(&ms) = model.iter().nth(50) {
                let fields: Vec<&[u8]> = stream.get(id(ms, 0)).expect("present").collect();
                assert_eq!(fields, [&b"f"[..], ms.to_string().as_bytes()]);
            }
        };
        check(&stream, &model);
        // Marked records (the 17th, 33rd... of a node), the records around them, every node's
        // last record, and a run across a node boundary.
        for ms in [
            17, 16, 18, 33, 49, 100, 200, 300, 299, 298, 1000, 999, 401, 417, 433,
        ]
        .into_iter()
        .chain(590..=615)
        {
            assert!(stream.delete(id(ms, 0)), "delete {ms}");
            model.remove(&ms);
            check(&stream, &model);
        }
        stream.append(id(1001, 0), &[b"f", b"1001"]);
        model.insert(1001);
        check(&stream, &model);
        // Exact trims cut records off a node's front, moving its marks.
        for min in [420, 437, 450] {
            let below = model.range(..min).count();
            assert_eq!(stream.trim(None, Some(id(min, 0)), false, 0), below);
            model.retain(|&ms| ms >= min);
            check(&stream, &model);
        }
    }

    #[test]
    fn delete_keeps_order_and_frees_empty_nodes() {
        let mut stream = filled(300);
        for i in 1..=100 {
            assert!(stream.delete(id(i, 0)));
        }
        assert!(!stream.delete(id(1, 0)));
        assert_eq!(stream.len(), 200);
        assert_eq!(stream.node_count(), 2);
        assert!(stream.delete(id(150, 0)));
        assert_eq!(
            ids(stream.range(id(148, 0), id(152, 0))),
            [148, 149, 151, 152]
        );
        // A node does not take appends past the entries it has received.
        assert!(stream.delete(id(300, 0)));
        stream.append(id(301, 0), &[b"f", b"v"]);
        assert_eq!(stream.node_count(), 3);
    }

    #[test]
    fn trimming_exact_and_approximate() {
        let mut stream = filled(1000);
        assert_eq!(stream.trim(Some(555), None, true, 0), 400);
        assert_eq!(stream.len(), 600);
        assert_eq!(stream.max_deleted_id(), StreamId::MIN);
        assert_eq!(stream.trim(Some(555), None, false, 0), 45);
        assert_eq!(stream.len(), 555);
        assert_eq!(stream.first_id(), id(446, 0));
        assert_eq!(stream.trim(None, Some(id(700, 0)), false, 0), 254);
        assert_eq!(stream.first_id(), id(700, 0));
        let mut limited = filled(1000);
        assert_eq!(limited.trim(Some(0), None, true, 250), 200);
        assert_eq!(limited.trim(None, Some(id(950, 0)), true, 0), 700);
        assert_eq!(limited.len(), 100);
    }

    /// The first write after a snapshot cut to a big stream copies one node, not the stream.
    #[test]
    fn a_write_after_a_clone_copies_one_node() {
        // The last node is half full, so the append changes it rather than starting one.
        let before = filled(10_050);
        let mut after = before.clone();
        after.append(id(10_051, 0), &[b"f", b"v"]);
        assert!(after.delete(id(5_000, 0)));
        let shared = before
            .nodes
            .values()
            .zip(after.nodes.values())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(after.node_count(), before.node_count());
        assert_eq!(shared, before.node_count() - 2);
        assert_eq!(before.len(), 10_050);
        assert_eq!(after.len(), 10_050);
    }

    #[test]
    fn groups_track_pending_entries() {
        let mut stream = filled(3);
        stream
            .groups_mut()
            .insert(Bytes::from_static(b"g"), Group::new(StreamId::MIN, Some(0)));
        let snapshot = stream.clone();
        let group = stream.group_mut(b"g").expect("group");
        let alice = Bytes::from_static(b"alice");
        let bob = Bytes::from_static(b"bob");
        group.assign(id(1, 0), &alice, 10, 1);
        group.assign(id(2, 0), &alice, 10, 1);
        group.assign(id(2, 0), &bob, 20, 2);
        assert_eq!(
            group.consumers.get(&alice).map(|c| c.pending.len()),
            Some(1)
        );
        assert_eq!(group.consumers.get(&bob).map(|c| c.pending.len()), Some(1));
        assert!(group.ack(id(2, 0)));
        assert!(!group.ack(id(2, 0)));
        assert_eq!(group.pending.len(), 1);
        assert!(snapshot.group(b"g").is_some_and(|g| g.pending.is_empty()));
    }

    #[test]
    fn distance_estimates_follow_redis() {
        let mut stream = filled(10);
        assert_eq!(stream.estimate_distance(id(10, 0)), Some(10));
        assert_eq!(stream.estimate_distance(id(1, 0)), Some(1));
        assert_eq!(stream.estimate_distance(id(0, 5)), Some(0));
        assert_eq!(stream.estimate_distance(id(5, 0)), None);
        assert!(stream.delete(id(5, 0)));
        stream.set_max_deleted_id(id(5, 0));
        assert!(stream.range_has_tombstones(id(1, 0), id(6, 0)));
        assert!(!stream.range_has_tombstones(id(6, 0), id(9, 0)));
        assert_eq!(stream.estimate_distance(id(1, 0)), None);
    }
}
