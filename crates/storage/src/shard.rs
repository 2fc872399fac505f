//! A shard: one lock around a hash table of entries and the index of their expiry deadlines.

use std::collections::BTreeSet;

use hashbrown::HashTable;

use crate::compact::CompactBytes;

use crate::entry::Entry;
use crate::snapshot::retain::{self, ShardSnapshot};

/// The keys of a shard that have a TTL, ordered by deadline so the active expiry cycle finds
/// every expired key without sampling, and so INFO can report an exact average TTL.
#[derive(Debug, Default)]
pub(crate) struct ExpireIndex {
    pub(crate) by_deadline: BTreeSet<(u64, CompactBytes)>,
    /// Sum of all deadlines in `by_deadline`, for `avg_ttl`.
    deadline_sum_ms: u128,
}

impl ExpireIndex {
    pub(crate) fn insert(&mut self, at_ms: u64, key: CompactBytes) {
        if self.by_deadline.insert((at_ms, key)) {
            self.deadline_sum_ms += u128::from(at_ms);
        }
    }

    pub(crate) fn remove(&mut self, at_ms: u64, key: &CompactBytes) {
        if self.by_deadline.remove(&(at_ms, key.clone())) {
            self.deadline_sum_ms -= u128::from(at_ms);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_deadline.len()
    }

    pub(crate) fn deadline_sum_ms(&self) -> u128 {
        self.deadline_sum_ms
    }

    /// The key with the earliest deadline, if that deadline is `<= now_ms`.
    pub(crate) fn first_due(&self, now_ms: u64) -> Option<CompactBytes> {
        self.by_deadline
            .first()
            .filter(|(at, _)| *at <= now_ms)
            .map(|(_, key)| key.clone())
    }

    pub(crate) fn clear(&mut self) {
        self.by_deadline.clear();
        self.deadline_sum_ms = 0;
    }
}

/// The data behind one shard lock.
#[derive(Debug, Default)]
pub(crate) struct ShardState {
    /// Key → entry. A `HashTable` because the caller supplies the hash: the same hash picks the
    /// shard, orders SCAN, and finds the bucket (see `db.rs` on how often a key is hashed).
    pub(crate) table: HashTable<(CompactBytes, Entry)>,
    pub(crate) expires: ExpireIndex,
    /// Changes made in this shard, summed over shards for `rdb_changes_since_last_save`. Kept per
    /// shard (under the lock the writer already holds) so writers never share a counter.
    pub(crate) dirty: u64,
    /// Keys removed because their TTL passed, summed for INFO `expired_keys`.
    pub(crate) expired: u64,
    /// Present while a snapshot has cut this shard and not yet taken its image.
    pub(crate) snapshot: Option<Box<ShardSnapshot>>,
    /// Clients watching keys of this shard (WATCH).
    pub(crate) watchers: crate::watch::Watchers,
}

impl ShardState {
    pub(crate) fn find(&self, hash: u64, key: &[u8]) -> Option<&Entry> {
        self.table
            .find(hash, |(k, _)| k.as_ref() == key)
            .map(|(_, entry)| entry)
    }

    /// Removes `key` if present, keeping the expiry index in step. Returns the removed key and
    /// entry, for the caller to free once the shard lock is released.
    pub(crate) fn remove(&mut self, hash: u64, key: &[u8]) -> Option<(CompactBytes, Entry)> {
        let occupied = self
            .table
            .find_entry(hash, |(k, _)| k.as_ref() == key)
            .ok()?;
        let ((key, entry), _) = occupied.remove();
        retain::preserve(&mut self.snapshot, &key, &entry);
        self.watchers.touch(&key);
        if let Some(at) = entry.expire_at_ms() {
            self.expires.remove(at, &key);
        }
        Some((key, entry))
    }

    /// Removes `key` if it is present and expired at `now_ms`, counting it as expired.
    /// Returns the removed key and entry, for the caller to free once the lock is released.
    pub(crate) fn remove_if_expired(
        &mut self,
        hash: u64,
        key: &[u8],
        now_ms: u64,
    ) -> Option<(CompactBytes, Entry)> {
        let expired = self
            .find(hash, key)
            .is_some_and(|entry| entry.is_expired(now_ms));
        if !expired {
            return None;
        }
        self.expired += 1;
        self.dirty += 1;
        self.remove(hash, key)
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Empties the shard (FLUSHDB, FLUSHALL) and returns its table. As in Redis, only the
    /// watched keys that were present count as changed: a watch on a missing key survives a
    /// flush. `hash` is the keyspace's key hash.
    pub(crate) fn clear(
        &mut self,
        hash: impl Fn(&[u8]) -> u64,
    ) -> HashTable<(CompactBytes, Entry)> {
        self.expires.clear();
        let table = &self.table;
        self.watchers
            .touch_where(|key| table.find(hash(key), |(k, _)| k.as_ref() == key).is_some());
        let table = std::mem::take(&mut self.table);
        if self.snapshot.is_some() {
            for (key, entry) in &table {
                retain::preserve(&mut self.snapshot, key, entry);
            }
        }
        table
    }
}
