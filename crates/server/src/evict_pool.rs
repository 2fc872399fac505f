//! The eviction pool: the best eviction candidates seen so far, kept across evictions (Redis's
//! `EvictionPoolLRU`), so that each eviction samples `maxmemory-samples` keys per database
//! rather than enough to rank well on its own.
//!
//! Each worker thread keeps its own pool (a thread-local taken out for the length of one
//! eviction), so evicting takes no lock beyond the sampled shard's read lock and the chosen
//! key's write lock, and two threads evicting at once share nothing. A pooled key is a copy of
//! its bytes in a buffer the pool keeps for reuse, so sampling allocates nothing once a pool
//! has warmed up.
//!
//! A candidate's rank is the one it had when it was sampled. Before a candidate is evicted the
//! caller ranks it again (`evict.rs`): a key used since it was sampled ranks lower and is
//! spared, which Redis does not check; a key removed meanwhile (by another thread's eviction,
//! a DEL) is simply skipped. Candidates are ranked under one policy: a pool that finds another
//! in force empties itself.

use forkless_storage::{Db, EvictionRank, N_SHARDS};
use rand::Rng;

/// Candidates a pool keeps (Redis's `EVPOOL_SIZE`).
pub(crate) const POOL_SIZE: usize = 16;

/// The longest key buffer a pool keeps for reuse once its candidate is gone (Redis's
/// `EVPOOL_CACHED_SDS_SIZE`): a longer key is copied into a buffer of its own, freed with it.
const KEPT_KEY_CAPACITY: usize = 255;

/// Shards of a database one sampling visits at most, from a random one onwards, to find its
/// `maxmemory-samples` keys: one, unless the database is sparse.
pub(crate) const SHARDS_PER_SAMPLE: usize = 4;

/// One candidate: its rank when it was sampled (higher is evicted first), its database and
/// its key.
#[derive(Debug)]
pub(crate) struct Candidate {
    pub(crate) score: u64,
    pub(crate) db_idx: usize,
    pub(crate) key: Vec<u8>,
}

/// A thread's eviction pool.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    /// The `maxmemory-policy` code the ranks were taken under.
    policy: Option<u8>,
    /// At most [`POOL_SIZE`], in ascending order of score: the best candidate is last.
    candidates: Vec<Candidate>,
    /// Key buffers of candidates that left the pool, for the next ones.
    spare: Vec<Vec<u8>>,
}

impl Pool {
    /// An empty pool, for a `const` thread-local.
    pub(crate) const fn new() -> Pool {
        Pool {
            policy: None,
            candidates: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// Empties the pool if its candidates were ranked under a policy other than `policy`.
    pub(crate) fn use_policy(&mut self, policy: u8) {
        if self.policy != Some(policy) {
            while let Some(candidate) = self.candidates.pop() {
                self.recycle(candidate.key);
            }
            self.policy = Some(policy);
        }
    }

    /// The number of candidates held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.candidates.len()
    }

    /// Offers a sampled key. It joins the pool if the pool has room or it ranks above the
    /// worst candidate (which then leaves), and it is not there already.
    pub(crate) fn offer(&mut self, score: u64, db_idx: usize, key: &[u8]) {
        let full = self.candidates.len() >= POOL_SIZE;
        if full
            && self
                .candidates
                .first()
                .is_some_and(|worst| score <= worst.score)
        {
            return;
        }
        if self
            .candidates
            .iter()
            .any(|candidate| candidate.db_idx == db_idx && candidate.key == key)
        {
            return;
        }
        let mut buffer = if full {
            self.candidates.remove(0).key
        } else {
            self.spare.pop().unwrap_or_default()
        };
        buffer.clear();
        buffer.extend_from_slice(key);
        // Before candidates of the same rank: those sampled earlier go first.
        let at = self
            .candidates
            .partition_point(|candidate| candidate.score < score);
        self.candidates.insert(
            at,
            Candidate {
                score,
                db_idx,
                key: buffer,
            },
        );
    }

    /// Takes the best candidate out of the pool; hand its key back with [`Pool::recycle`].
    pub(crate) fn pop_best(&mut self) -> Option<Candidate> {
        self.candidates.pop()
    }

    /// Keeps the buffer of a candidate that left the pool, if it is small, for the next one.
    pub(crate) fn recycle(&mut self, key: Vec<u8>) {
        if key.capacity() <= KEPT_KEY_CAPACITY && self.spare.len() < POOL_SIZE {
            self.spare.push(key);
        }
    }

    /// Samples `n` keys of database `db_idx` into the pool (Redis's `evictionPoolPopulate`):
    /// a run of neighbouring keys of a random shard, continued into the next shards while
    /// fewer than `n` were found, up to [`SHARDS_PER_SAMPLE`] shards. Returns how many keys
    /// it sampled.
    pub(crate) fn populate(
        &mut self,
        db_idx: usize,
        db: &Db,
        volatile: bool,
        rank: EvictionRank,
        n: usize,
        now_ms: u64,
    ) -> usize {
        let first = rand::rng().random_range(0..N_SHARDS);
        let mut sampled = 0;
        for step in 0..SHARDS_PER_SAMPLE {
            let shard = (first + step) % N_SHARDS;
            sampled +=
                db.eviction_candidates(shard, volatile, rank, n - sampled, now_ms, |score, key| {
                    self.offer(score, db_idx, key);
                });
            if sampled >= n {
                break;
            }
        }
        sampled
    }

    /// Samples the first shard of database `db_idx` that holds a key (with a TTL, under
    /// `volatile`): the fallback for a database so sparse that random shards miss its keys.
    /// Returns how many keys it sampled.
    pub(crate) fn populate_sparse(
        &mut self,
        db_idx: usize,
        db: &Db,
        volatile: bool,
        rank: EvictionRank,
        n: usize,
        now_ms: u64,
    ) -> usize {
        (0..N_SHARDS)
            .find(|&shard| db.shard_has_keys(shard, volatile))
            .map_or(0, |shard| {
                db.eviction_candidates(shard, volatile, rank, n, now_ms, |score, key| {
                    self.offer(score, db_idx, key);
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use forkless_storage::{CompactBytes, EvictionRank, Keyspace, Value, access};

    use super::{POOL_SIZE, Pool};

    #[test]
    fn the_best_candidate_comes_out_first_and_a_full_pool_keeps_the_best() {
        let mut pool = Pool::new();
        pool.use_policy(1);
        for i in 0..40u64 {
            // Scores in a scrambled order.
            let score = (i * 17) % 40;
            pool.offer(score, 0, format!("k{score}").as_bytes());
        }
        assert_eq!(pool.len(), POOL_SIZE);
        // The same key again changes nothing.
        pool.offer(39, 0, b"k39");
        assert_eq!(pool.len(), POOL_SIZE);
        let mut popped = Vec::new();
        while let Some(candidate) = pool.pop_best() {
            popped.push(candidate.score);
            pool.recycle(candidate.key);
        }
        let expected: Vec<u64> = (40 - POOL_SIZE as u64..40).rev().collect();
        assert_eq!(popped, expected);
        // A pool ranked under another policy starts afresh.
        pool.offer(5, 0, b"a");
        pool.use_policy(2);
        assert_eq!(pool.len(), 0);
    }

    /// allkeys-lru through the pool, in a deterministic setting: keys of one shard, each
    /// idle for a different time, sampled in two rounds; the keys come out oldest first, and
    /// an old key sampled in the first round is still preferred to the fresher keys of the
    /// second (the pool keeps the best across rounds).
    #[test]
    fn the_pool_evicts_the_older_keys_first() {
        let keyspace = Keyspace::new(1);
        let db = keyspace.db(0).expect("db 0");
        let now_ms = 1_000_000_000;
        let keys: Vec<Vec<u8>> = (0..)
            .map(|i| format!("key:{i}").into_bytes())
            .filter(|key| db.shard_of_key(key) == 7)
            .take(12)
            .collect();
        let mut guard = db.write(&keys.iter().map(Vec::as_slice).collect::<Vec<_>>(), now_ms);
        for (idx, key) in keys.iter().enumerate() {
            guard.set(key, Value::String(CompactBytes::from_slice(b"v")), None);
            // Key i has been idle for 100 + i seconds (or, under an LFU policy set by another
            // test's server, is as much rarer): the last key is the oldest.
            let idle = 100 + idx as u64;
            let clock = access::clock_from(Some(idle), Some(200 - idx as u8), now_ms);
            guard.set_access_clock(key, clock.expect("a clock for the policy in force"));
        }
        drop(guard);
        let mut pool = Pool::new();
        pool.use_policy(1);
        // Round one sees every key of the shard.
        let sampled = db.eviction_candidates(7, false, EvictionRank::Clock, 64, now_ms, |s, k| {
            pool.offer(s, 0, k);
        });
        assert_eq!(sampled, keys.len());
        let oldest = pool.pop_best().expect("a candidate");
        assert_eq!(oldest.key, keys[11]);
        // Round two: a fresh key (never idle) is offered; the pooled old keys still come
        // first, oldest first.
        pool.offer(0, 0, b"fresh");
        let order: Vec<Vec<u8>> = std::iter::from_fn(|| pool.pop_best().map(|c| c.key)).collect();
        let mut expected: Vec<Vec<u8>> = keys[..11].iter().rev().cloned().collect();
        expected.push(b"fresh".to_vec());
        assert_eq!(order, expected);
    }
}
