//! Freezing the whole keyspace: every shard of every database held for reading at once.
//!
//! This is what a fork-mode save needs around `fork()`: while the guard is held no command can
//! be half-way through changing any shard (a writer needs its shard's write lock), so the
//! process image the child gets is a consistent point in time, and the child can read every
//! entry through the guard without ever taking a lock itself (its copies of the locks are
//! only memory; another thread's lock in the parent may look held forever in the child).
//!
//! Readers keep running while the keyspace is frozen; writers, lazy and active expiry and
//! FLUSHALL wait until the guard is dropped. Taking the guard is O(databases × shards).

use crate::compact::CompactBytes;

use crate::db::{DbStats, N_SHARDS};
use crate::entry::Entry;
use crate::keyspace::Keyspace;
use crate::shard::ShardState;
use crate::sync::{self, RwLockReadGuard};

/// Every shard of every database, held for reading. See the module docs.
///
/// Dropping it releases the shards in reverse order of acquisition.
#[derive(Debug)]
pub struct FrozenKeyspace<'a> {
    /// `databases × N_SHARDS` guards in lock order: database 0 shard 0 first.
    shards: Vec<RwLockReadGuard<'a, ShardState>>,
    n_dbs: usize,
    /// Where the freeze splits the effect stream, as `SnapshotCut::seq` does for a cut.
    seq: crate::effect::Seq,
}

impl Keyspace {
    /// Holds every shard of every database for reading, in the global lock order (database by
    /// database, shard by shard), and returns the guard. Blocks while any writer holds a
    /// shard. The caller must not hold any shard lock already (it may hold the command gate).
    pub fn freeze_all(&self) -> FrozenKeyspace<'_> {
        let shards = self
            .dbs()
            .iter()
            .flat_map(|db| db.shard_locks().iter().map(sync::read))
            .collect();
        FrozenKeyspace {
            shards,
            n_dbs: self.dbs().len(),
            // Read with every shard held: writers take their numbers under a write lock.
            seq: self.next_seq(),
        }
    }
}

impl FrozenKeyspace<'_> {
    /// The number of databases.
    pub fn n_dbs(&self) -> usize {
        self.n_dbs
    }

    /// Where the freeze splits the effect stream: every unit numbered below this applied wholly
    /// before it (a fork-mode save holds it across `fork()`, so the child saves exactly those).
    pub fn seq(&self) -> crate::effect::Seq {
        self.seq
    }

    fn db_shards(&self, db_idx: usize) -> &[RwLockReadGuard<'_, ShardState>] {
        let start = db_idx.saturating_mul(N_SHARDS).min(self.shards.len());
        let end = start.saturating_add(N_SHARDS).min(self.shards.len());
        self.shards.get(start..end).unwrap_or_default()
    }

    /// Keys and keys with a TTL in database `db_idx` (zero for a database that does not
    /// exist). Keys expired but not yet reclaimed are counted, so these are upper bounds, as
    /// Redis's RESIZEDB figures are. `avg_ttl_ms` is left at 0.
    pub fn db_stats(&self, db_idx: usize) -> DbStats {
        let mut stats = DbStats::default();
        for shard in self.db_shards(db_idx) {
            stats.keys += shard.len();
            stats.expires += shard.expires.len();
        }
        stats
    }

    /// Keys in every database, expired ones included.
    pub fn total_keys(&self) -> u64 {
        self.shards.iter().map(|shard| shard.len() as u64).sum()
    }

    /// Every `(key, entry)` of database `db_idx`, shard by shard, in no particular order
    /// within a shard; empty for a database that does not exist. Includes keys whose TTL has
    /// passed but that are not yet reclaimed: filter them with `entry.is_expired(now_ms)`.
    pub fn entries(&self, db_idx: usize) -> impl Iterator<Item = (&CompactBytes, &Entry)> + '_ {
        self.db_shards(db_idx)
            .iter()
            .flat_map(|shard| shard.table.iter().map(|(key, entry)| (key, entry)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::value::Value;

    fn string(value: &Entry) -> Vec<u8> {
        match value.value() {
            Value::String(bytes) => bytes.to_vec(),
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn frozen_keyspace_lists_every_entry_of_every_db_with_its_expiry() {
        let keyspace = Keyspace::new(4);
        let now = 1_000_000;
        for i in 0..500u32 {
            let key = format!("k{i}");
            let db = keyspace.db((i % 3) as usize).unwrap();
            let expire = (i % 5 == 0).then_some(now + u64::from(i));
            db.write(&[key.as_bytes()], now).set(
                key.as_bytes(),
                Value::string(i.to_string().as_bytes()),
                expire,
            );
        }
        let frozen = keyspace.freeze_all();
        assert_eq!(frozen.n_dbs(), 4);
        assert_eq!(frozen.total_keys(), 500);
        let mut seen = BTreeMap::new();
        for db_idx in 0..4 {
            let stats = frozen.db_stats(db_idx);
            let entries: Vec<_> = frozen.entries(db_idx).collect();
            assert_eq!(entries.len(), stats.keys, "db {db_idx}");
            let with_ttl = entries
                .iter()
                .filter(|(_, e)| e.expire_at_ms().is_some())
                .count();
            assert_eq!(with_ttl, stats.expires, "db {db_idx}");
            for (key, entry) in entries {
                seen.insert(
                    String::from_utf8(key.to_vec()).unwrap(),
                    (db_idx, string(entry), entry.expire_at_ms()),
                );
            }
        }
        assert_eq!(seen.len(), 500);
        for i in 0..500u32 {
            let expire = (i % 5 == 0).then_some(now + u64::from(i));
            assert_eq!(
                seen[&format!("k{i}")],
                ((i % 3) as usize, i.to_string().into_bytes(), expire)
            );
        }
        // Out-of-range databases are empty, not a panic.
        assert_eq!(frozen.entries(4).count(), 0);
        assert_eq!(frozen.entries(usize::MAX).count(), 0);
        assert_eq!(frozen.db_stats(usize::MAX), DbStats::default());
    }

    #[test]
    fn frozen_keyspace_shows_expired_keys_for_the_caller_to_skip() {
        let keyspace = Keyspace::new(1);
        let db = keyspace.db(0).unwrap();
        db.write(&[b"gone"], 100)
            .set(b"gone", Value::string(b"x"), Some(150));
        db.write(&[b"live"], 100)
            .set(b"live", Value::string(b"y"), Some(500));
        let frozen = keyspace.freeze_all();
        let live: Vec<_> = frozen
            .entries(0)
            .filter(|(_, entry)| !entry.is_expired(200))
            .map(|(key, _)| key.to_vec())
            .collect();
        assert_eq!(live, vec![b"live".to_vec()]);
        assert_eq!(frozen.db_stats(0).keys, 2);
    }

    #[test]
    fn frozen_keyspace_blocks_writers_but_not_readers_until_dropped() {
        let keyspace = Keyspace::new(2);
        let db = keyspace.db(1).unwrap();
        db.write(&[b"k"], 0)
            .set(b"k", Value::string(b"before"), None);
        let written = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let frozen = keyspace.freeze_all();
            let writer = scope.spawn(|| {
                keyspace
                    .db(1)
                    .unwrap()
                    .write(&[b"k"], 0)
                    .set(b"k", Value::string(b"after"), None);
                written.store(true, Ordering::SeqCst);
            });
            // A reader on another thread gets through while the keyspace is frozen.
            let read = scope
                .spawn(|| {
                    let guard = keyspace.db(0).unwrap().read(&[b"other"], 0);
                    guard.get(b"other").is_none()
                })
                .join()
                .unwrap();
            assert!(read);
            // The writer cannot have changed the frozen shard: it is still "before" however
            // long we look.
            std::thread::sleep(Duration::from_millis(50));
            assert!(!written.load(Ordering::SeqCst));
            let (_, entry) = frozen.entries(1).next().unwrap();
            assert_eq!(string(entry), b"before");
            drop(frozen);
            writer.join().unwrap();
        });
        assert!(written.load(Ordering::SeqCst));
        let guard = keyspace.db(1).unwrap().read(&[b"k"], 0);
        assert_eq!(string(guard.get(b"k").unwrap()), b"after");
    }
}
