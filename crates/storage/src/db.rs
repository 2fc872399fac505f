//! One logical database: a fixed array of shards, and the guards through which every command
//! reads and writes it.
//!
//! # Locking
//! Each shard is a `std::sync::RwLock` around a [`ShardState`]. Critical sections are a few hash
//! table operations and never await, so a blocking lock is right (a tokio mutex would cost a
//! future per command for no benefit). A command locks every shard its keys live in *before*
//! touching any of them, always in ascending shard order, and holds them until it is done: that
//! makes multi-key commands (MSET, RENAME, DEL k1 k2) atomic to every other command and to the
//! snapshot cut, and the fixed order rules out deadlock. Whole-database operations (FLUSHDB,
//! KEYS) lock every shard, again in ascending order.
//!
//! # Hashing
//! A key's 64-bit hash is computed once per access and used three ways: bits 48..55 pick the
//! shard (clear of the low bits hashbrown uses for buckets and the top 7 bits it uses for tags),
//! the whole hash finds the bucket, and `(shard << 56) | (hash >> 8)` is the key's position in
//! SCAN order (see [`Db::scan`]).

use std::sync::Arc;

use bytes::Bytes;
use hashbrown::hash_table;
use rand::Rng;

use crate::compact::CompactBytes;
use crate::entry::Entry;
use crate::retain::{self, RetainCounters, ShardSnapshot};
use crate::shard::{ExpireIndex, ShardState};
use crate::sync::{self, RwLock, RwLockReadGuard, RwLockWriteGuard};
use crate::value::Value;
use crate::version::{Epoch, EpochClock};

/// Shards per database, a power of two. Also the unit of parallel snapshot work.
pub const N_SHARDS: usize = 1 << SHARD_BITS;
#[cfg(not(forkless_loom))]
const SHARD_BITS: u32 = 7;
/// Loom explores every interleaving of every lock operation: keep the model small.
#[cfg(forkless_loom)]
const SHARD_BITS: u32 = 1;
const SHARD_SHIFT: u32 = 48;
/// Bits of a key's hash kept in its SCAN position (the shard index fills the other 8).
const SCAN_HASH_BITS: u32 = 56;

/// State shared by every database of a keyspace.
/// The key hasher: seeded at random per keyspace (hash flooding), except under loom, whose
/// models must replay identically.
#[cfg(not(forkless_loom))]
type KeyHasher = foldhash::fast::RandomState;
#[cfg(forkless_loom)]
type KeyHasher = foldhash::fast::FixedState;

#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) clock: EpochClock,
    hasher: KeyHasher,
    pub(crate) retain: Arc<RetainCounters>,
}

impl Shared {
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }
}

fn shard_of(hash: u64) -> usize {
    // Truncation is intended: the mask keeps SHARD_BITS bits.
    (hash >> SHARD_SHIFT) as usize & (N_SHARDS - 1)
}

fn scan_position(hash: u64) -> u64 {
    ((shard_of(hash) as u64) << SCAN_HASH_BITS) | (hash >> (64 - SCAN_HASH_BITS))
}

/// Per-database figures for `INFO keyspace` and `DBSIZE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DbStats {
    /// Keys, including expired ones not yet reclaimed (as Redis counts them).
    pub keys: usize,
    /// Keys with a TTL.
    pub expires: usize,
    /// Average remaining TTL in milliseconds of the keys with a TTL, 0 if none.
    pub avg_ttl_ms: u64,
}

/// One logical database (`SELECT n`).
#[derive(Debug)]
pub struct Db {
    shards: Box<[RwLock<ShardState>]>,
    shared: Arc<Shared>,
}

impl Db {
    pub(crate) fn new(shared: Arc<Shared>) -> Db {
        let shards = (0..N_SHARDS)
            .map(|_| RwLock::new(ShardState::default()))
            .collect();
        Db { shards, shared }
    }

    /// The index of the shard that holds `key`.
    pub fn shard_of_key(&self, key: &[u8]) -> usize {
        shard_of(self.shared.hash(key))
    }

    /// The hash of `key`, as the shards' tables index it.
    pub(crate) fn key_hash(&self, key: &[u8]) -> u64 {
        self.shared.hash(key)
    }

    /// Every shard lock, in lock order.
    pub(crate) fn shard_locks(&self) -> &[RwLock<ShardState>] {
        &self.shards
    }

    pub(crate) fn shard_lock(&self, idx: usize) -> &RwLock<ShardState> {
        // `idx` always comes from `shard_of`, which masks it below N_SHARDS == shards.len().
        &self.shards[idx & (N_SHARDS - 1)]
    }

    /// Locks the shards of `keys` for reading, in ascending order, and returns a guard through
    /// which those keys (and only those) can be read consistently.
    pub fn read(&self, keys: &[&[u8]], now_ms: u64) -> ReadGuard<'_> {
        let locks = match keys {
            [key] => {
                let idx = shard_of(self.shared.hash(key));
                Locks::One(idx, sync::read(self.shard_lock(idx)))
            }
            _ => Locks::Many(
                self.sorted_shards(keys)
                    .map(|idx| (idx, sync::read(self.shard_lock(idx))))
                    .collect(),
            ),
        };
        ReadGuard {
            shared: &self.shared,
            locks,
            now_ms,
        }
    }

    /// Locks the shards of `keys` for writing, in ascending order, and returns the guard through
    /// which all changes to those keys are made.
    pub fn write(&self, keys: &[&[u8]], now_ms: u64) -> WriteGuard<'_> {
        let locks = match keys {
            [key] => {
                let idx = shard_of(self.shared.hash(key));
                Locks::One(idx, sync::write(self.shard_lock(idx)))
            }
            _ => Locks::Many(
                self.sorted_shards(keys)
                    .map(|idx| (idx, sync::write(self.shard_lock(idx))))
                    .collect(),
            ),
        };
        WriteGuard {
            shared: &self.shared,
            locks,
            now_ms,
            epoch: self.shared.clock.current(),
        }
    }

    /// Locks every shard for writing: the guard for whole-database operations.
    pub fn write_all(&self, now_ms: u64) -> WriteGuard<'_> {
        let locks = Locks::Many(
            self.shards
                .iter()
                .enumerate()
                .map(|(idx, lock)| (idx, sync::write(lock)))
                .collect(),
        );
        WriteGuard {
            shared: &self.shared,
            locks,
            now_ms,
            epoch: self.shared.clock.current(),
        }
    }

    fn sorted_shards(&self, keys: &[&[u8]]) -> impl Iterator<Item = usize> + use<> {
        let mut idxs: Vec<usize> = keys
            .iter()
            .map(|key| shard_of(self.shared.hash(key)))
            .collect();
        idxs.sort_unstable();
        idxs.dedup();
        idxs.into_iter()
    }

    /// WATCH: `flag` is set by every later change to `key`, from any client.
    pub fn watch(&self, key: &[u8], flag: &crate::watch::WatchFlag) {
        let idx = shard_of(self.shared.hash(key));
        sync::write(self.shard_lock(idx)).watchers.add(key, flag);
    }

    /// Stops `flag` watching `key`.
    pub fn unwatch(&self, key: &[u8], flag: &crate::watch::WatchFlag) {
        let idx = shard_of(self.shared.hash(key));
        sync::write(self.shard_lock(idx)).watchers.remove(key, flag);
    }

    /// Number of keys (including expired keys not yet reclaimed).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|lock| sync::read(lock).len()).sum()
    }

    /// Returns true if and only if the database holds no key.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|lock| sync::read(lock).len() == 0)
    }

    /// Key count, TTL count and average TTL.
    pub fn stats(&self, now_ms: u64) -> DbStats {
        let mut stats = DbStats::default();
        let mut deadline_sum: u128 = 0;
        for lock in &self.shards {
            let shard = sync::read(lock);
            stats.keys += shard.len();
            stats.expires += shard.expires.len();
            deadline_sum += shard.expires.deadline_sum_ms();
        }
        if stats.expires > 0 {
            let avg_deadline = deadline_sum / stats.expires as u128;
            let avg_ttl = avg_deadline.saturating_sub(u128::from(now_ms));
            stats.avg_ttl_ms = u64::try_from(avg_ttl).unwrap_or(u64::MAX);
        }
        stats
    }

    /// Changes made to this database since it was created.
    pub fn dirty(&self) -> u64 {
        self.shards.iter().map(|lock| sync::read(lock).dirty).sum()
    }

    /// Keys of this database removed because their TTL passed.
    pub fn expired_keys(&self) -> u64 {
        self.shards
            .iter()
            .map(|lock| sync::read(lock).expired)
            .sum()
    }

    /// Every live key for which `keep` returns true, read under all shard locks at once so the
    /// answer is one consistent view (as KEYS is in Redis).
    pub fn keys(&self, now_ms: u64, mut keep: impl FnMut(&[u8]) -> bool) -> Vec<Bytes> {
        let guards: Vec<_> = self.shards.iter().map(sync::read).collect();
        let mut out = Vec::new();
        for shard in &guards {
            for (key, entry) in &shard.table {
                if !entry.is_expired(now_ms) && keep(key) {
                    out.push(Bytes::copy_from_slice(key));
                }
            }
        }
        out
    }

    /// One step of SCAN.
    ///
    /// Keys are visited in the order of their *scan position*, `(shard << 56) | (hash >> 8)`,
    /// which depends only on the key, never on table size or insertion order. The cursor is the
    /// position to resume from, so a key present for the whole scan is returned exactly once
    /// however the table grows or shrinks in between, and keys sharing a position are always
    /// returned together. A call returns at least `count` positions' keys (fewer when the shard
    /// runs out) and at least an eighth of the shard's remaining keys, so a full scan costs
    /// O(keys) shard-walk work overall. Returns the next cursor (0 when done) and the keys for
    /// which `keep` returns true.
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        now_ms: u64,
        mut keep: impl FnMut(&[u8], &Entry) -> bool,
    ) -> (u64, Vec<Bytes>) {
        let mut shard_idx = (cursor >> SCAN_HASH_BITS) as usize;
        let mut from = cursor;
        // Bound the number of empty shards walked in one call, as Redis bounds empty buckets.
        let mut empty_visits = 0usize;
        while shard_idx < N_SHARDS {
            let shard = sync::read(self.shard_lock(shard_idx));
            let mut candidates: Vec<(u64, &CompactBytes, &Entry)> = shard
                .table
                .iter()
                .map(|(key, entry)| (scan_position(self.shared.hash(key)), key, entry))
                .filter(|(position, _, _)| *position >= from)
                .collect();
            let next_shard_cursor = ((shard_idx as u64) + 1) << SCAN_HASH_BITS;
            if candidates.is_empty() {
                shard_idx += 1;
                from = next_shard_cursor;
                empty_visits += 1;
                if empty_visits >= count.max(1).saturating_mul(10) && shard_idx < N_SHARDS {
                    return (from, Vec::new());
                }
                continue;
            }
            candidates.sort_unstable_by_key(|(position, _, _)| *position);
            let take = count.max(1).max(candidates.len() / 8);
            let mut end = take.min(candidates.len());
            // Keep every key of the last position in this batch, so the cursor can move past it.
            while let (Some(last), Some(next)) = (candidates.get(end - 1), candidates.get(end)) {
                if last.0 != next.0 {
                    break;
                }
                end += 1;
            }
            let next_cursor = match candidates.get(end) {
                Some(_) => candidates
                    .get(end - 1)
                    .map_or(next_shard_cursor, |last| last.0 + 1),
                None if shard_idx + 1 < N_SHARDS => next_shard_cursor,
                None => 0,
            };
            let keys = candidates
                .iter()
                .take(end)
                .filter(|(_, key, entry)| !entry.is_expired(now_ms) && keep(key, entry))
                .map(|(_, key, _)| Bytes::copy_from_slice(key))
                .collect();
            return (next_cursor, keys);
        }
        (0, Vec::new())
    }

    /// A random live key, or None if the database has none.
    pub fn random_key(&self, now_ms: u64) -> Option<Bytes> {
        let mut rng = rand::rng();
        // Random shards first (cheap, and fair enough for a uniform hash); fall back to a full
        // walk so a sparse database still finds its keys.
        for _ in 0..N_SHARDS {
            let shard = sync::read(self.shard_lock(rng.random_range(0..N_SHARDS)));
            if shard.len() == 0 {
                continue;
            }
            let pick = rng.random_range(0..shard.len());
            if let Some((key, entry)) = shard.table.iter().nth(pick)
                && !entry.is_expired(now_ms)
            {
                return Some(key.to_bytes());
            }
        }
        self.shards.iter().find_map(|lock| {
            let shard = sync::read(lock);
            shard
                .table
                .iter()
                .find(|(_, entry)| !entry.is_expired(now_ms))
                .map(|(key, _)| key.to_bytes())
        })
    }

    /// Removes up to `max_keys` expired keys of shard `shard_idx`. Returns how many were removed
    /// and whether more are already due.
    pub(crate) fn expire_shard(
        &self,
        shard_idx: usize,
        now_ms: u64,
        max_keys: usize,
        mut expired: Option<&mut Vec<CompactBytes>>,
    ) -> (usize, bool) {
        let mut shard = sync::write(self.shard_lock(shard_idx));
        let mut removed = 0;
        while removed < max_keys {
            let Some(key) = shard.expires.first_due(now_ms) else {
                return (removed, false);
            };
            let hash = self.shared.hash(&key);
            if !shard.remove_if_expired(hash, &key, now_ms) {
                // The index and the table disagree: a bug, but never loop forever on it.
                debug_assert!(false, "expire index names a key that is not expired");
                return (removed, false);
            }
            if let Some(expired) = expired.as_deref_mut() {
                expired.push(key);
            }
            removed += 1;
        }
        (removed, shard.expires.first_due(now_ms).is_some())
    }
}

/// The shard locks a guard holds: one (the common single-key case, no allocation) or several in
/// ascending shard order.
#[derive(Debug)]
enum Locks<G> {
    One(usize, G),
    Many(Vec<(usize, G)>),
}

impl<G> Locks<G> {
    fn get(&self, idx: usize) -> Option<&G> {
        match self {
            Locks::One(held, guard) => (*held == idx).then_some(guard),
            Locks::Many(guards) => guards
                .binary_search_by_key(&idx, |(held, _)| *held)
                .ok()
                .and_then(|pos| guards.get(pos))
                .map(|(_, guard)| guard),
        }
    }

    fn get_mut(&mut self, idx: usize) -> Option<&mut G> {
        match self {
            Locks::One(held, guard) => (*held == idx).then_some(guard),
            Locks::Many(guards) => match guards.binary_search_by_key(&idx, |(held, _)| *held) {
                Ok(pos) => guards.get_mut(pos).map(|(_, guard)| guard),
                Err(_) => None,
            },
        }
    }
}

fn not_locked(key: &[u8]) {
    debug_assert!(
        false,
        "key {:?} accessed through a guard that did not lock it",
        Bytes::copy_from_slice(key)
    );
}

/// Read access to the keys a command named. Expired keys read as absent.
#[derive(Debug)]
pub struct ReadGuard<'a> {
    shared: &'a Shared,
    locks: Locks<RwLockReadGuard<'a, ShardState>>,
    now_ms: u64,
}

impl ReadGuard<'_> {
    /// The live entry of `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        let hash = self.shared.hash(key);
        let Some(shard) = self.locks.get(shard_of(hash)) else {
            not_locked(key);
            return None;
        };
        shard
            .find(hash, key)
            .filter(|entry| !entry.is_expired(self.now_ms))
    }
}

/// Write access to the keys a command named: the one path through which entries change.
///
/// Every change (insert, overwrite, in-place update through [`EntryMut`], TTL change, removal)
/// stamps the entry with the current epoch and counts one change in the shard's `dirty` counter.
/// The snapshot's "retain the pre-cut value" hook belongs here and nowhere else.
#[derive(Debug)]
pub struct WriteGuard<'a> {
    shared: &'a Shared,
    locks: Locks<RwLockWriteGuard<'a, ShardState>>,
    now_ms: u64,
    epoch: Epoch,
}

impl WriteGuard<'_> {
    /// The time, in ms since the Unix epoch, this command runs at.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn shard(&mut self, key: &[u8]) -> Option<(u64, &mut ShardState)> {
        let hash = self.shared.hash(key);
        match self.locks.get_mut(shard_of(hash)) {
            Some(guard) => Some((hash, &mut **guard)),
            None => {
                not_locked(key);
                None
            }
        }
    }

    /// The live entry of `key`, if any. An expired entry is removed on the way (lazy expiry).
    pub fn get(&mut self, key: &[u8]) -> Option<&Entry> {
        self.get_mut(key).map(|entry| &*entry.entry)
    }

    /// Returns true if and only if `key` holds a live entry.
    pub fn contains(&mut self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Mutable access to the live entry of `key`. Nothing is stamped until the caller actually
    /// changes something through the returned [`EntryMut`].
    pub fn get_mut(&mut self, key: &[u8]) -> Option<EntryMut<'_>> {
        let now_ms = self.now_ms;
        let epoch = self.epoch;
        let (hash, shard) = self.shard(key)?;
        if shard.remove_if_expired(hash, key, now_ms) {
            return None;
        }
        let ShardState {
            table,
            expires,
            dirty,
            snapshot,
            watchers,
            ..
        } = shard;
        let (stored_key, entry) = table.find_mut(hash, |(k, _)| k.as_ref() == key)?;
        Some(EntryMut {
            key: stored_key,
            entry,
            expires,
            dirty,
            snapshot,
            watchers,
            epoch,
            changed: false,
        })
    }

    /// Sets `key` to `value` with the given absolute expiry, replacing any previous entry.
    /// Returns the previous live entry, for the caller to drop (outside the lock if it may be
    /// big), unless a running snapshot kept it.
    pub fn set(&mut self, key: &[u8], value: Value, expire_at_ms: Option<u64>) -> Option<Entry> {
        let now_ms = self.now_ms;
        let epoch = self.epoch;
        let shared = self.shared;
        let (hash, shard) = self.shard(key)?;
        shard.dirty += 1;
        shard.watchers.touch(key);
        let ShardState {
            table,
            expires,
            expired,
            snapshot,
            ..
        } = shard;
        let new_entry = Entry::new(value, expire_at_ms, epoch);
        match table.entry(hash, |(k, _)| k.as_ref() == key, |(k, _)| shared.hash(k)) {
            hash_table::Entry::Occupied(mut occupied) => {
                let (stored_key, entry) = occupied.get_mut();
                if let Some(at) = entry.expire_at_ms() {
                    expires.remove(at, stored_key);
                }
                if let Some(at) = expire_at_ms {
                    expires.insert(at, stored_key.clone());
                }
                let old = std::mem::replace(entry, new_entry);
                let was_expired = old.is_expired(now_ms);
                if was_expired {
                    *expired += 1;
                }
                let old = retain::preserve_owned(snapshot, stored_key, old)?;
                (!was_expired).then_some(old)
            }
            hash_table::Entry::Vacant(vacant) => {
                let stored_key = CompactBytes::from_slice(key);
                if let Some(at) = expire_at_ms {
                    expires.insert(at, stored_key.clone());
                }
                vacant.insert((stored_key, new_entry));
                None
            }
        }
    }

    /// Removes `key`. Returns its live entry, or None if it was absent or already expired.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let now_ms = self.now_ms;
        let (hash, shard) = self.shard(key)?;
        if shard.remove_if_expired(hash, key, now_ms) {
            return None;
        }
        let removed = shard.remove(hash, key)?;
        shard.dirty += 1;
        Some(removed)
    }

    /// Removes every key of the locked shards and returns the removed tables, so the caller may
    /// free a large database off the command path (FLUSHDB ASYNC). Only meaningful on a guard
    /// from [`Db::write_all`]. Returns the number of keys removed.
    pub fn clear(&mut self) -> Flushed {
        let mut tables = Vec::new();
        let mut n_keys = 0;
        let guards: Vec<&mut ShardState> = match &mut self.locks {
            Locks::One(_, guard) => vec![&mut **guard],
            Locks::Many(guards) => guards.iter_mut().map(|(_, guard)| &mut **guard).collect(),
        };
        for shard in guards {
            n_keys += shard.len();
            shard.dirty += shard.len() as u64;
            tables.push(shard.clear(|key| self.shared.hash(key)));
        }
        Flushed { n_keys, tables }
    }
}

/// The contents removed by a flush. Dropping it frees them; the caller chooses where.
#[derive(Debug, Default)]
pub struct Flushed {
    n_keys: usize,
    tables: Vec<hashbrown::HashTable<(CompactBytes, Entry)>>,
}

impl Flushed {
    /// How many keys were removed.
    pub fn n_keys(&self) -> usize {
        self.n_keys
    }

    pub(crate) fn absorb(&mut self, other: Flushed) {
        self.n_keys += other.n_keys;
        self.tables.extend(other.tables);
    }
}

/// A live entry borrowed for change. The first change made through it stamps the entry with the
/// current epoch and counts one change; reading alone changes nothing.
#[derive(Debug)]
pub struct EntryMut<'g> {
    key: &'g CompactBytes,
    entry: &'g mut Entry,
    expires: &'g mut ExpireIndex,
    dirty: &'g mut u64,
    snapshot: &'g mut Option<Box<ShardSnapshot>>,
    watchers: &'g crate::watch::Watchers,
    epoch: Epoch,
    changed: bool,
}

impl EntryMut<'_> {
    fn mark_changed(&mut self) {
        if !self.changed {
            self.changed = true;
            *self.dirty += 1;
            retain::preserve(self.snapshot, self.key, self.entry);
            self.watchers.touch(self.key);
            self.entry.stamp(self.epoch);
        }
    }

    /// The entry as it is now.
    pub fn entry(&self) -> &Entry {
        self.entry
    }

    /// The value, for reading.
    pub fn value(&self) -> &Value {
        self.entry.value()
    }

    /// The value, for changing in place. Counts as a change.
    pub fn value_mut(&mut self) -> &mut Value {
        self.mark_changed();
        self.entry.value_mut()
    }

    /// Replaces the value and keeps the TTL. Counts as a change.
    pub fn replace_value(&mut self, value: Value) -> Value {
        std::mem::replace(self.value_mut(), value)
    }

    /// Sets or clears the absolute expiry. Counts as a change.
    pub fn set_expire_at_ms(&mut self, expire_at_ms: Option<u64>) {
        self.mark_changed();
        if let Some(at) = self.entry.expire_at_ms() {
            self.expires.remove(at, self.key);
        }
        if let Some(at) = expire_at_ms {
            self.expires.insert(at, self.key.clone());
        }
        self.entry.set_expire_at_ms(expire_at_ms);
    }
}
