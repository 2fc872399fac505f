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
//! A key's 64-bit hash is used three ways: bits 48..55 pick the shard (clear of the low bits
//! hashbrown uses for buckets and the top 7 bits it uses for tags), the whole hash finds the
//! bucket, and `(shard << 56) | (hash >> 8)` is the key's position in SCAN order (see
//! [`Db::scan`]). A read guard hashes its keys once, when it locks their shards: it remembers
//! each key it was given (the slice itself, borrowed for the guard's life, so its bytes cannot
//! change) with its hash, and a lookup through it with that same slice reuses the hash
//! ([`KeyHashes`]). A write guard hashes a key when it locks it and again for each change:
//! there, carrying the hash through the guard measured slower than hashing a key that is
//! already in cache (see [`Db::write`]).

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;
use hashbrown::hash_table;
use rand::Rng;

use crate::access;
use crate::compact::CompactBytes;
use crate::effect::{self, SeqClock};
use crate::entry::Entry;
use crate::events::EventHook;
use crate::shard::{ExpireIndex, ShardState};
use crate::snapshot::retain::{self, RetainCounters, ShardSnapshot};
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
    /// Numbers the units of change for the effect stream (see `effect.rs`).
    pub(crate) effects: SeqClock,
    hasher: KeyHasher,
    pub(crate) retain: Arc<RetainCounters>,
    /// The server's sink for key creations and expirations (`events.rs`).
    pub(crate) events: EventHook,
}

impl Shared {
    /// Fresh shared state with this one's key hasher (and nothing else of it): a sibling
    /// keyspace's, whose entries fall in the same shards and buckets (`swap.rs`).
    pub(crate) fn sibling(&self) -> Shared {
        Shared {
            hasher: self.hasher.clone(),
            ..Shared::default()
        }
    }

    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        #[cfg(test)]
        tests::HASHED.with(|hashed| hashed.set(hashed.get() + 1));
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

/// What eviction ranks sampled keys by (`Db::eviction_candidates`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionRank {
    /// The access clock, as the policy in force reads it (`access.rs`): LRU or LFU.
    Clock,
    /// The soonest deadline first (`volatile-ttl`).
    Ttl,
    /// At random.
    Random,
}

impl EvictionRank {
    /// The rank of `entry` now, higher is evicted first: its idle time or inverted frequency
    /// under [`EvictionRank::Clock`], the nearness of its deadline under
    /// [`EvictionRank::Ttl`]. None under [`EvictionRank::Random`], whose ranks are drawn anew
    /// for every sample and mean nothing twice.
    pub fn score(self, entry: &Entry, now_ms: u64) -> Option<u64> {
        match self {
            EvictionRank::Clock => Some(access::eviction_score(entry.access_clock(), now_ms)),
            EvictionRank::Ttl => Some(u64::MAX - entry.expire_at_ms().unwrap_or(u64::MAX)),
            EvictionRank::Random => None,
        }
    }
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
    /// This database's number (`SELECT n`), which the effects and key events of its expired
    /// keys carry.
    index: usize,
}

impl Db {
    pub(crate) fn new(shared: Arc<Shared>, index: usize) -> Db {
        let shards = (0..N_SHARDS)
            .map(|_| RwLock::new(ShardState::default()))
            .collect();
        Db {
            shards,
            shared,
            index,
        }
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
    #[inline]
    pub fn read<'a>(&'a self, keys: &[&'a [u8]], now_ms: u64) -> ReadGuard<'a> {
        let hashes = KeyHashes::new(&self.shared, keys);
        let locks = match &hashes {
            KeyHashes::One(_, hash) => {
                let idx = shard_of(*hash);
                Locks::One(idx, sync::read(self.shard_lock(idx)))
            }
            KeyHashes::Many(hashes) => Locks::Many(
                sorted_shards(hashes)
                    .map(|idx| (idx, sync::read(self.shard_lock(idx))))
                    .collect(),
            ),
        };
        ReadGuard {
            shared: &self.shared,
            hashes,
            locks,
            now_ms,
            db_idx: self.index,
        }
    }

    /// Locks the shards of `keys` for writing, in ascending order, and returns the guard through
    /// which all changes to those keys are made.
    ///
    /// Unlike a read guard, a write guard hashes a key again for each change rather than
    /// remembering the hash it locked with: carrying the hash through the guard measured slower
    /// on the write path (a load of the remembered hash after the lock instead of a few
    /// arithmetic instructions on a key already in cache; docs/benchmarks.md).
    pub fn write(&self, keys: &[&[u8]], now_ms: u64) -> WriteGuard<'_> {
        let locks = match keys {
            [key] => {
                let idx = shard_of(self.shared.hash(key));
                Locks::One(idx, sync::write(self.shard_lock(idx)))
            }
            _ => {
                let hashes: Vec<(&[u8], u64)> = keys
                    .iter()
                    .map(|key| (*key, self.shared.hash(key)))
                    .collect();
                Locks::Many(
                    sorted_shards(&hashes)
                        .map(|idx| (idx, sync::write(self.shard_lock(idx))))
                        .collect(),
                )
            }
        };
        WriteGuard {
            shared: &self.shared,
            locks,
            now_ms,
            epoch: self.shared.clock.current(),
            db_idx: self.index,
            deferred: Deferred::default(),
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
            db_idx: self.index,
            deferred: Deferred::default(),
        }
    }

    /// What the database's tables cost beyond their keys and values: every shard's buckets
    /// (each a key and its entry, and hashbrown's control byte) and each TTL's index node, for
    /// INFO's `used_memory_overhead`. Takes each shard's read lock in turn.
    pub fn overhead_bytes(&self) -> u64 {
        const EXPIRE_INDEX_ENTRY: usize = std::mem::size_of::<(u64, CompactBytes)>() + 8;
        let bucket = std::mem::size_of::<(CompactBytes, Entry)>() + 1;
        let total: usize = self
            .shards
            .iter()
            .map(|lock| {
                let shard = sync::read(lock);
                shard.table.capacity() * bucket + shard.expires.len() * EXPIRE_INDEX_ENTRY
            })
            .sum();
        u64::try_from(total).unwrap_or(u64::MAX)
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
            // A random bucket and the first live key from there: O(1) at the table's load
            // factor, where counting to a random index was O(shard) (Redis's
            // dictGetFairRandomKey is no fairer: its keys sit in random buckets too).
            let mut picked = None;
            sample_buckets(&shard.table, 1, &mut rng, |(key, entry), _| {
                if entry.is_expired(now_ms) {
                    return false;
                }
                picked = Some(key.to_bytes());
                true
            });
            if picked.is_some() {
                return picked;
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

    /// Samples up to `n` keys of shard `shard_idx` as eviction candidates, under its read lock,
    /// and hands each to `found` with its rank (higher is evicted first); returns how many it
    /// handed over. Like Redis's `dictGetSomeKeys`, the sample is a run of neighbouring keys
    /// from a random place in the table: the keys' hashes place them at random, so a run is a
    /// random sample without a random probe per key. `volatile` samples only keys with a TTL;
    /// ranked by [`EvictionRank::Ttl`], those are exactly the shard's `n` soonest deadlines.
    /// The key is lent, not copied: a caller that keeps a candidate (the server's eviction
    /// pool) copies it into a buffer of its own, so a sample allocates nothing.
    pub fn eviction_candidates(
        &self,
        shard_idx: usize,
        volatile: bool,
        rank: EvictionRank,
        n: usize,
        now_ms: u64,
        mut found: impl FnMut(u64, &[u8]),
    ) -> usize {
        let Some(lock) = self.shards.get(shard_idx) else {
            return 0;
        };
        let shard = sync::read(lock);
        let mut rng = rand::rng();
        let score = |entry: &Entry, rng: &mut rand::rngs::ThreadRng| {
            rank.score(entry, now_ms).unwrap_or_else(|| rng.random())
        };
        let table = &shard.table;
        if volatile {
            let index = &shard.expires.by_deadline;
            let len = index.len();
            if len == 0 {
                return 0;
            }
            // Where keys with a TTL are a fair share of the shard, a walk of the table's
            // buckets that keeps only those finds them as quickly and as uniformly as the
            // unfiltered walk below. A shard where they are few is sampled from its deadline
            // index, which costs a skip to a random place in it (O(keys with a TTL)); the
            // soonest deadlines are its first keys.
            if rank != EvictionRank::Ttl && len.saturating_mul(4) >= table.len() {
                return sample_buckets(table, n.min(len), &mut rng, |(key, entry), rng| {
                    if entry.expire_at_ms().is_none() {
                        return false;
                    }
                    found(score(entry, rng), key.as_ref());
                    true
                });
            }
            let start = if rank == EvictionRank::Ttl {
                0
            } else {
                rng.random_range(0..len)
            };
            let mut handed = 0;
            for (_, key) in index
                .iter()
                .chain(index.iter())
                .skip(start)
                .take(n.min(len))
            {
                if let Some(entry) = shard.find(self.shared.hash(key), key) {
                    found(score(entry, &mut rng), key.as_ref());
                    handed += 1;
                }
            }
            handed
        } else {
            let len = table.len();
            if len == 0 {
                return 0;
            }
            sample_buckets(table, n.min(len), &mut rng, |(key, entry), rng| {
                found(score(entry, rng), key.as_ref());
                true
            })
        }
    }

    /// Returns true if and only if shard `shard_idx` holds a key (with a TTL, when
    /// `volatile`).
    pub fn shard_has_keys(&self, shard_idx: usize, volatile: bool) -> bool {
        self.shards.get(shard_idx).is_some_and(|lock| {
            let shard = sync::read(lock);
            if volatile {
                shard.expires.len() > 0
            } else {
                shard.len() > 0
            }
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
        // Freed after the lock is released, as a write guard frees what it removes.
        let mut removed = Vec::new();
        let mut more_due = false;
        while removed.len() < max_keys {
            let Some(key) = shard.expires.first_due(now_ms) else {
                break;
            };
            let hash = self.shared.hash(&key);
            let Some(entry) = shard.remove_if_expired(hash, &key, now_ms) else {
                // The index and the table disagree: a bug, but never loop forever on it.
                debug_assert!(false, "expire index names a key that is not expired");
                break;
            };
            effect::expired(&self.shared.effects, self.index, &key);
            self.shared.events.expired(self.index, &key);
            if let Some(expired) = expired.as_deref_mut() {
                expired.push(key);
            }
            removed.push(entry);
            more_due = removed.len() == max_keys && shard.expires.first_due(now_ms).is_some();
        }
        // The keys removed under this one lock hold are one unit of the effect stream.
        effect::finish_expiry_unit();
        drop(shard);
        (removed.len(), more_due)
    }
}

/// The shards of hashed keys, ascending, each once.
fn sorted_shards(hashes: &[(&[u8], u64)]) -> impl Iterator<Item = usize> + use<> {
    let mut idxs: Vec<usize> = hashes.iter().map(|(_, hash)| shard_of(*hash)).collect();
    idxs.sort_unstable();
    idxs.dedup();
    idxs.into_iter()
}

/// The keys a guard was given, each with its hash, so that a lookup through the guard does not
/// hash the key again. Keys are told apart by address and length, not by content: the guard
/// borrows every slice for its whole life, so the same slice always holds the same bytes. A
/// key the guard was not given (an equal key from another buffer) is simply hashed again.
#[derive(Debug)]
enum KeyHashes<'a> {
    /// One key: the common case, no allocation.
    One(&'a [u8], u64),
    /// Several keys (or none), sorted by address and length for a binary search.
    Many(Vec<(&'a [u8], u64)>),
}

impl<'a> KeyHashes<'a> {
    #[inline]
    fn new(shared: &Shared, keys: &[&'a [u8]]) -> KeyHashes<'a> {
        match keys {
            [key] => KeyHashes::One(key, shared.hash(key)),
            _ => {
                let mut hashes: Vec<(&'a [u8], u64)> =
                    keys.iter().map(|key| (*key, shared.hash(key))).collect();
                hashes.sort_unstable_by_key(|(key, _)| slice_id(key));
                KeyHashes::Many(hashes)
            }
        }
    }

    /// The hash of `key`: remembered when it is one of the guard's slices, computed otherwise.
    #[inline]
    fn hash(&self, shared: &Shared, key: &[u8]) -> u64 {
        let known = match self {
            KeyHashes::One(own, hash) => std::ptr::eq(*own, key).then_some(*hash),
            KeyHashes::Many(hashes) => hashes
                .binary_search_by_key(&slice_id(key), |(own, _)| slice_id(own))
                .ok()
                .and_then(|pos| hashes.get(pos))
                .map(|(_, hash)| *hash),
        };
        known.unwrap_or_else(|| shared.hash(key))
    }
}

/// A slice's identity: its address and length.
fn slice_id(key: &[u8]) -> (usize, usize) {
    (key.as_ptr().addr(), key.len())
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
    hashes: KeyHashes<'a>,
    locks: Locks<RwLockReadGuard<'a, ShardState>>,
    now_ms: u64,
    db_idx: usize,
}

impl ReadGuard<'_> {
    /// The live entry of `key`, if any. An expired entry reads as absent and is noted for
    /// [`take_expired_reads`]: a read lock cannot remove it.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        let hash = self.hashes.hash(self.shared, key);
        let Some(shard) = self.locks.get(shard_of(hash)) else {
            not_locked(key);
            return None;
        };
        let entry = shard.find(hash, key)?;
        if entry.is_expired(self.now_ms) {
            note_expired_read(self.db_idx, key);
            return None;
        }
        entry.touch(self.now_ms);
        Some(entry)
    }

    /// The live entry of `key`, if any, without counting an access in its clock (Redis's
    /// `LOOKUP_NOTOUCH`: OBJECT, TYPE, TTL and the like). An expired key is noted for removal
    /// as by [`ReadGuard::get`].
    #[inline]
    pub fn peek(&self, key: &[u8]) -> Option<&Entry> {
        let hash = self.hashes.hash(self.shared, key);
        let Some(shard) = self.locks.get(shard_of(hash)) else {
            not_locked(key);
            return None;
        };
        let entry = shard.find(hash, key)?;
        if entry.is_expired(self.now_ms) {
            note_expired_read(self.db_idx, key);
            return None;
        }
        Some(entry)
    }
}

/// The most expired keys a thread notes between two [`take_expired_reads`]: a thread that
/// reads without taking them (none does today) keeps a bounded list, and a key left out is
/// removed by the active expiry cycle instead.
const MAX_EXPIRED_READS: usize = 128;

std::thread_local! {
    /// Keys (database, key) that reads on this thread found expired.
    static EXPIRED_READS: RefCell<Vec<(usize, CompactBytes)>> = const { RefCell::new(Vec::new()) };
}

#[cold]
fn note_expired_read(db_idx: usize, key: &[u8]) {
    EXPIRED_READS.with(|reads| {
        let mut reads = reads.borrow_mut();
        if reads.len() < MAX_EXPIRED_READS {
            reads.push((db_idx, CompactBytes::from(key)));
        }
    });
}

/// Takes the keys (database, key) that reads on this thread found expired since the last
/// call, so that the caller removes them through a write guard (Redis's lazy expiry on a read,
/// which a read guard cannot do). Empty, without allocating, when there are none.
pub fn take_expired_reads() -> Vec<(usize, CompactBytes)> {
    EXPIRED_READS.with(|reads| {
        let mut reads = reads.borrow_mut();
        if reads.is_empty() {
            Vec::new()
        } else {
            std::mem::take(&mut *reads)
        }
    })
}

/// Write access to the keys a command named: the one path through which commands change
/// entries.
///
/// Every change (insert, overwrite, in-place update through [`EntryMut`], TTL change, removal)
/// stamps the entry with the current epoch and counts one change in the shard's `dirty` counter,
/// and calls the snapshot's "retain the pre-cut value" hook first.
///
/// What a change replaces or removes (an overwritten value, a removed key and its value, a key
/// expired on the way) is not freed under the shard locks: the guard keeps it and frees it when
/// it is dropped, after the locks are released, so that freeing a big value never holds up
/// the other clients of the shard. Callers get nothing back to free; a caller that wants a
/// removed value ([`WriteGuard::take`]) owns it and moves it on.
#[derive(Debug)]
pub struct WriteGuard<'a> {
    shared: &'a Shared,
    // Declared before `deferred`: fields are dropped in declaration order, so the shard locks
    // are released before what the guard deferred is freed.
    locks: Locks<RwLockWriteGuard<'a, ShardState>>,
    now_ms: u64,
    epoch: Epoch,
    /// The database's number, for the effects and key events of what the guard changes.
    db_idx: usize,
    deferred: Deferred,
}

/// What a write guard replaced or removed, freed after its shard locks (see [`WriteGuard`]).
/// The first item is kept inline, so the common single-key overwrite allocates nothing.
#[derive(Debug, Default)]
struct Deferred {
    first: Option<Discarded>,
    more: Vec<Discarded>,
}

/// One thing to free: a value, and the key it was stored under when the key went too (an
/// empty key otherwise, which owns no memory).
type Discarded = (CompactBytes, Value);

impl Deferred {
    fn push(&mut self, item: Discarded) {
        if self.first.is_none() {
            self.first = Some(item);
        } else {
            self.more.push(item);
        }
    }

    fn value(&mut self, value: Value) {
        self.push((CompactBytes::new(), value));
    }

    fn key(&mut self, key: CompactBytes) {
        self.push((key, Value::String(CompactBytes::new())));
    }

    fn entry(&mut self, (key, entry): (CompactBytes, Entry)) {
        self.push((key, entry.into_parts().0));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }
}

impl Drop for WriteGuard<'_> {
    /// Releases the locks, then frees what the guard deferred. A write that retained a version
    /// while its snapshot's retained budget was full waits for room after both
    /// ([`retain::BudgetWait`]); without a running snapshot this costs one look at each locked
    /// shard's snapshot slot, which the guard has in cache.
    fn drop(&mut self) {
        let wait = match &mut self.locks {
            Locks::One(_, guard) => guard
                .snapshot
                .as_mut()
                .and_then(|snapshot| snapshot.take_budget_wait()),
            Locks::Many(guards) => guards.iter_mut().find_map(|(_, guard)| {
                guard
                    .snapshot
                    .as_mut()
                    .and_then(|snapshot| snapshot.take_budget_wait())
            }),
        };
        if let Some(wait) = wait {
            self.locks = Locks::Many(Vec::new());
            drop(std::mem::take(&mut self.deferred));
            wait.wait_for_room();
        }
    }
}

impl WriteGuard<'_> {
    /// The time, in ms since the Unix epoch, this command runs at.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The shard of `key`, its hash, and where to put what a change frees.
    fn shard(&mut self, key: &[u8]) -> Option<(u64, &mut ShardState, &mut Deferred)> {
        let hash = self.shared.hash(key);
        match self.locks.get_mut(shard_of(hash)) {
            Some(guard) => Some((hash, &mut **guard, &mut self.deferred)),
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

    /// The live entry of `key`, if any, without counting this as an access of it (its
    /// access clock is left as it was): eviction's look at a candidate it may yet spare. An
    /// expired entry is removed on the way, as by [`WriteGuard::get`].
    pub fn peek(&mut self, key: &[u8]) -> Option<&Entry> {
        let now_ms = self.now_ms;
        let (shared, db_idx) = (self.shared, self.db_idx);
        let (hash, shard, deferred) = self.shard(key)?;
        if let Some(expired) = shard.remove_if_expired(hash, key, now_ms) {
            deferred.entry(expired);
            effect::expired(&shared.effects, db_idx, key);
            shared.events.expired(db_idx, key);
            return None;
        }
        shard.find(hash, key)
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
        let (shared, db_idx) = (self.shared, self.db_idx);
        let (hash, shard, deferred) = self.shard(key)?;
        if let Some(expired) = shard.remove_if_expired(hash, key, now_ms) {
            deferred.entry(expired);
            effect::expired(&shared.effects, db_idx, key);
            shared.events.expired(db_idx, key);
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
        entry.touch(now_ms);
        Some(EntryMut {
            key: stored_key,
            entry,
            expires,
            dirty,
            snapshot,
            watchers,
            effects: &shared.effects,
            deferred,
            epoch,
            changed: false,
        })
    }

    /// Sets `key` to `value` with the given absolute expiry, replacing any previous entry. The
    /// previous value is freed when the guard is dropped (unless a running snapshot kept it).
    pub fn set(&mut self, key: &[u8], value: Value, expire_at_ms: Option<u64>) {
        let now_ms = self.now_ms;
        let epoch = self.epoch;
        let shared = self.shared;
        let db = self.db_idx;
        let Some((hash, shard, deferred)) = self.shard(key) else {
            return;
        };
        shard.dirty += 1;
        effect::changed(&shared.effects);
        shard.watchers.touch(key);
        let ShardState {
            table,
            expires,
            expired,
            snapshot,
            ..
        } = shard;
        let mut new_entry = Entry::new(value, expire_at_ms, epoch, access::initial(now_ms));
        match table.entry(hash, |(k, _)| k.as_ref() == key, |(k, _)| shared.hash(k)) {
            hash_table::Entry::Occupied(mut occupied) => {
                let (stored_key, entry) = occupied.get_mut();
                // An overwrite keeps the key's LFU counter, counting the write as an access,
                // as Redis's `dbOverwrite` does; under LRU the new value is simply new.
                if access::is_lfu() && !entry.is_expired(now_ms) {
                    new_entry.set_access_clock(access::touched(entry.access_clock(), now_ms));
                }
                if let Some(at) = entry.expire_at_ms() {
                    expires.remove(at, stored_key);
                }
                if let Some(at) = expire_at_ms {
                    expires.insert(at, stored_key.clone());
                }
                let old = std::mem::replace(entry, new_entry);
                if old.is_expired(now_ms) {
                    *expired += 1;
                    shared.events.expired(db, key);
                    shared.events.created(db, key);
                }
                if let Some(old) = retain::preserve_owned(snapshot, stored_key, old) {
                    deferred.value(old.into_parts().0);
                }
            }
            hash_table::Entry::Vacant(vacant) => {
                let stored_key = CompactBytes::from_slice(key);
                if let Some(at) = expire_at_ms {
                    expires.insert(at, stored_key.clone());
                }
                vacant.insert((stored_key, new_entry));
                shared.events.created(db, key);
            }
        }
    }

    /// Removes `key`, freeing it when the guard is dropped. Returns true if and only if it was
    /// live (absent or already expired: false).
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let Some((key, entry)) = self.take_entry(key) else {
            return false;
        };
        self.deferred.push((key, entry.into_parts().0));
        true
    }

    /// Sets the access clock of `key`, if present (RESTORE's IDLETIME / FREQ). Not a change of
    /// the entry: nothing is stamped or counted.
    pub fn set_access_clock(&mut self, key: &[u8], clock: u32) {
        let Some((hash, shard, _)) = self.shard(key) else {
            return;
        };
        if let Some((_, entry)) = shard.table.find_mut(hash, |(k, _)| k.as_ref() == key) {
            entry.set_access_clock(clock);
        }
    }

    /// Gives back the table memory of `key`'s shard when it is mostly empty (under a quarter
    /// full), as Redis's cron resizes a sparse dict: eviction calls it after each removal, so
    /// the memory it frees includes the buckets, not only the keys and values. The threshold
    /// sits well under the half-full a table is left at when it grows: at "under half full" a
    /// shard whose keys hover around a growth step (every insert evicting a key) shrank and
    /// grew again, a rehash of the whole shard each time.
    pub fn shrink_if_sparse(&mut self, key: &[u8]) {
        let shared = self.shared;
        let Some((_, shard, _)) = self.shard(key) else {
            return;
        };
        let (len, capacity) = (shard.table.len(), shard.table.capacity());
        if capacity >= 4 && len.saturating_mul(4) < capacity {
            shard.table.shrink_to(len, |(k, _)| shared.hash(k));
        }
    }

    /// Removes `key` and hands its live entry to the caller, who moves it on (RENAME, MOVE) or
    /// frees it once the guard is gone. None if it was absent or already expired.
    pub fn take(&mut self, key: &[u8]) -> Option<Entry> {
        let (key, entry) = self.take_entry(key)?;
        self.deferred.key(key);
        Some(entry)
    }

    fn take_entry(&mut self, key: &[u8]) -> Option<(CompactBytes, Entry)> {
        let now_ms = self.now_ms;
        let (shared, db_idx) = (self.shared, self.db_idx);
        let (hash, shard, deferred) = self.shard(key)?;
        if let Some(expired) = shard.remove_if_expired(hash, key, now_ms) {
            deferred.entry(expired);
            effect::expired(&shared.effects, db_idx, key);
            shared.events.expired(db_idx, key);
            return None;
        }
        let removed = shard.remove(hash, key)?;
        shard.dirty += 1;
        effect::changed(&shared.effects);
        Some(removed)
    }

    /// Removes every key of the locked shards and returns the removed tables, so the caller may
    /// free a large database off the command path (FLUSHDB ASYNC). Only meaningful on a guard
    /// from [`Db::write_all`]. Returns the number of keys removed.
    pub fn clear(&mut self) -> Flushed {
        // A flush is an effect even of an empty database, as in Redis.
        effect::changed(&self.shared.effects);
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
    effects: &'g SeqClock,
    /// The guard's list of what to free after its locks.
    deferred: &'g mut Deferred,
    epoch: Epoch,
    changed: bool,
}

impl EntryMut<'_> {
    fn mark_changed(&mut self) {
        if !self.changed {
            self.changed = true;
            *self.dirty += 1;
            effect::changed(self.effects);
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

    /// Replaces the value and keeps the TTL. Counts as a change. The old value is freed when
    /// the guard is dropped.
    pub fn replace_value(&mut self, value: Value) {
        let old = std::mem::replace(self.value_mut(), value);
        self.deferred.value(old);
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

/// Visits entries of `table` until `visit` has accepted `n` of them (returned true), taken
/// as a run of neighbouring buckets from a random one, as Redis's `dictGetSomeKeys` does: the
/// keys' hashes place them at random, so a run is a random sample, and it costs the buckets it
/// walks (about two per key at the table's load factor), not a walk from the table's start.
/// Gives up after one lap of the table. Returns how many `visit` accepted.
fn sample_buckets<T>(
    table: &hashbrown::HashTable<T>,
    n: usize,
    rng: &mut rand::rngs::ThreadRng,
    mut visit: impl FnMut(&T, &mut rand::rngs::ThreadRng) -> bool,
) -> usize {
    let buckets = table.num_buckets();
    if buckets == 0 || n == 0 {
        return 0;
    }
    let mut bucket = rng.random_range(0..buckets);
    let mut found = 0;
    for _ in 0..buckets {
        if table
            .get_bucket(bucket)
            .is_some_and(|item| visit(item, rng))
        {
            found += 1;
            if found == n {
                break;
            }
        }
        bucket += 1;
        if bucket == buckets {
            bucket = 0;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::EvictionRank;
    use crate::Keyspace;
    use crate::compact::CompactBytes;
    use crate::types::list::List;
    use crate::value::Value;

    /// Regression test: SET freed the value it replaced while it held the shard lock, against
    /// `WriteGuard::set`'s own contract, so a big overwritten value held up every client of the
    /// shard while it was freed. The guard now keeps what a change replaces or removes, and
    /// frees it only when it is dropped, after its locks (its fields drop in that order).
    /// Eviction samples walk the table's buckets from a random one: `n` distinct keys (all
    /// of them when the shard holds fewer), under `volatile` only keys with a TTL.
    #[test]
    fn eviction_samples_are_distinct_keys_of_the_shard() {
        let keyspace = Keyspace::new(1);
        let db = keyspace.db(0).expect("db 0");
        let keys: Vec<Vec<u8>> = (0..)
            .map(|i| format!("k{i}").into_bytes())
            .filter(|key| db.shard_of_key(key) == 5)
            .take(40)
            .collect();
        let mut guard = db.write(&keys.iter().map(Vec::as_slice).collect::<Vec<_>>(), 0);
        for (i, key) in keys.iter().enumerate() {
            let ttl = (i % 2 == 0).then_some(1_000_000);
            guard.set(key, Value::String(CompactBytes::from_slice(b"v")), ttl);
        }
        drop(guard);
        for _ in 0..50 {
            let mut out = Vec::new();
            db.eviction_candidates(5, false, EvictionRank::Clock, 5, 0, |score, key| {
                out.push((score, key.to_vec()));
            });
            let distinct: std::collections::HashSet<_> = out.iter().map(|(_, key)| key).collect();
            assert_eq!(distinct.len(), 5);
            out.clear();
            db.eviction_candidates(5, true, EvictionRank::Clock, 5, 0, |score, key| {
                out.push((score, key.to_vec()));
            });
            let distinct: std::collections::HashSet<_> = out.iter().map(|(_, key)| key).collect();
            assert_eq!(distinct.len(), 5);
            for (_, key) in &out {
                let idx = keys.iter().position(|k| k == key);
                assert_eq!(idx.map(|idx| idx % 2), Some(0), "a key without a TTL");
            }
        }
        let mut out = Vec::new();
        db.eviction_candidates(5, false, EvictionRank::Random, 100, 0, |score, key| {
            out.push((score, key.to_vec()));
        });
        assert_eq!(out.len(), 40);
        out.clear();
        db.eviction_candidates(5, true, EvictionRank::Random, 100, 0, |score, key| {
            out.push((score, key.to_vec()));
        });
        assert_eq!(out.len(), 20);
    }

    /// Eviction samples: every key with a TTL of a shard under `volatile`, ranked so that
    /// the soonest deadline comes first under `EvictionRank::Ttl`; none without a TTL.
    #[test]
    fn eviction_samples_rank_the_soonest_deadline_first() {
        let keyspace = Keyspace::new(1);
        let db = keyspace.db(0).expect("db 0");
        let keys: Vec<Vec<u8>> = (0..)
            .map(|i| format!("k{i}").into_bytes())
            .filter(|key| db.shard_of_key(key) == 3)
            .take(6)
            .collect();
        let mut guard = db.write(&keys.iter().map(Vec::as_slice).collect::<Vec<_>>(), 0);
        for (i, key) in keys.iter().enumerate() {
            let ttl = (i % 2 == 0).then_some(1_000 * (10 - i as u64));
            guard.set(key, Value::String(CompactBytes::from_slice(b"v")), ttl);
        }
        drop(guard);
        let mut out = Vec::new();
        db.eviction_candidates(3, true, EvictionRank::Ttl, 10, 0, |score, key| {
            out.push((score, key.to_vec()));
        });
        assert_eq!(out.len(), 3);
        let best = out
            .iter()
            .max_by_key(|(score, _)| *score)
            .expect("a sample");
        // k of index 4 has the soonest deadline (6 s).
        assert_eq!(best.1.as_slice(), keys[4].as_slice());
        out.clear();
        db.eviction_candidates(3, false, EvictionRank::Random, 10, 0, |score, key| {
            out.push((score, key.to_vec()));
        });
        assert_eq!(out.len(), 6);
        assert!(db.shard_has_keys(3, true));
        assert!(!db.shard_has_keys(4, true) || db.shard_has_keys(4, false));
    }

    #[test]
    fn replaced_and_removed_values_are_freed_when_the_guard_goes() {
        let keyspace = Keyspace::new(1);
        let db = keyspace.db(0).expect("db 0");
        let list = |weak: &mut Vec<std::sync::Weak<List>>| {
            let list = Arc::new(List::default());
            weak.push(Arc::downgrade(&list));
            Value::List(list)
        };
        let mut weak = Vec::new();
        db.write(&[b"a"], 0).set(b"a", list(&mut weak), None);
        db.write(&[b"b"], 0).set(b"b", list(&mut weak), None);
        db.write(&[b"c"], 0).set(b"c", list(&mut weak), None);

        let mut guard = db.write(&[b"a", b"b", b"c"], 0);
        guard.set(b"a", Value::string(b"new"), None);
        assert!(guard.remove(b"b"));
        if let Some(mut entry) = guard.get_mut(b"c") {
            entry.replace_value(Value::string(b"new"));
        }
        assert_eq!(guard.deferred.len(), 3);
        assert!(
            weak.iter().all(|weak| weak.upgrade().is_some()),
            "freed while the guard holds its locks"
        );
        drop(guard);
        assert!(
            weak.iter().all(|weak| weak.upgrade().is_none()),
            "still alive after the guard was dropped"
        );
    }

    thread_local! {
        /// Keys hashed on this thread (`Shared::hash`).
        pub(super) static HASHED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn hashed() -> usize {
        HASHED.with(std::cell::Cell::get)
    }

    /// Regression test: a read hashed its key once to lock its shard and again for every
    /// lookup through the guard. A read guard now reuses the hash of every key slice it was
    /// given.
    #[test]
    fn a_read_hashes_each_key_once() {
        let keyspace = Keyspace::new(1);
        let db = keyspace.db(0).expect("db 0");
        let (a, b): (&[u8], &[u8]) = (b"a", b"b");
        db.write(&[a], 0).set(a, Value::string(b"1"), None);
        db.write(&[b], 0).set(b, Value::string(b"1"), None);

        let before = hashed();
        let guard = db.read(&[a], 0);
        assert!(guard.get(a).is_some());
        assert!(guard.get(a).is_some());
        drop(guard);
        assert_eq!(hashed() - before, 1, "one key");

        let before = hashed();
        let guard = db.read(&[a, b], 0);
        assert!(guard.get(a).is_some());
        assert!(guard.get(b).is_some());
        drop(guard);
        assert_eq!(hashed() - before, 2, "two keys");

        // An equal key in another buffer is found too, at the cost of one more hash.
        let copy = a.to_vec();
        let before = hashed();
        let guard = db.read(&[a], 0);
        assert!(guard.get(&copy).is_some());
        drop(guard);
        assert_eq!(hashed() - before, 2, "a copy of the key");
    }

    /// A single-key overwrite keeps what it replaced inline: no allocation on the hot path.
    #[test]
    fn one_overwrite_allocates_no_deferred_list() {
        let keyspace = Keyspace::new(1);
        let db = keyspace.db(0).expect("db 0");
        db.write(&[b"k"], 0).set(b"k", Value::string(b"old"), None);
        let mut guard = db.write(&[b"k"], 0);
        guard.set(b"k", Value::string(b"new"), None);
        assert!(guard.deferred.first.is_some());
        assert_eq!(guard.deferred.more.capacity(), 0);
    }
}
