//! SWAPDB: two databases exchange their contents in one step.
//!
//! Every shard of both databases is locked (the lower database first, shard by shard: the global
//! lock order), then shard `i` of one and shard `i` of the other exchange their tables and
//! expiry indexes. Both databases share one key hasher, so an entry sits in the same shard and
//! bucket in either. Without a snapshot the swap is O(shards): pointer exchanges.
//!
//! What stays in place: the watcher lists (a client watching key K of database 0 keeps watching
//! K of database 0, as in Redis, where `watched_keys` is not swapped) and each shard's counters.
//!
//! # A snapshot under way
//! A snapshot that has cut a shard but not finished it must still save that shard's contents as
//! of the cut, under its own database. So, for such a shard only, every entry leaving it goes
//! through the on-write hook first (a pre-cut entry is retained, as FLUSHDB does), and every
//! entry arriving is stamped with the current epoch, which tells the traversal it was written
//! after the cut and is none of its business. That costs O(entries) of the shards still cut,
//! once; the cut itself stays O(shards).

use crate::db::Db;
use crate::effect;
use crate::keyspace::Keyspace;
use crate::shard::ShardState;
use crate::snapshot::retain;
use crate::sync;
use crate::version::Epoch;

impl Keyspace {
    /// Exchanges the contents of databases `a` and `b` (SWAPDB), firing the WATCHes that Redis
    /// fires: a watched key that exists in its database before the swap, or in the other one
    /// (and is not expired there), counts as changed. Returns false, changing nothing, if either
    /// index is out of range.
    pub fn swap_dbs(&self, a: usize, b: usize, now_ms: u64) -> bool {
        let (lo, hi) = (a.min(b), a.max(b));
        let (Some(lo_db), Some(hi_db)) = (self.db(lo), self.db(hi)) else {
            return false;
        };
        if lo == hi {
            return true;
        }
        let mut lo_shards: Vec<_> = lo_db.shard_locks().iter().map(sync::write).collect();
        let mut hi_shards: Vec<_> = hi_db.shard_locks().iter().map(sync::write).collect();
        let epoch = self.epoch();
        for (x, y) in lo_shards.iter_mut().zip(hi_shards.iter_mut()) {
            swap_shards(lo_db, x, y, epoch, now_ms);
        }
        // One change, as Redis counts it, and one effect, numbered while every shard of both
        // databases is locked.
        if let Some(first) = lo_shards.first_mut() {
            first.dirty += 1;
        }
        effect::changed(&self.shared.effects);
        true
    }
}

impl Keyspace {
    /// Exchanges the contents of every database with `sibling`'s (made by
    /// [`Keyspace::sibling`]) in one step: every shard of this keyspace is locked in the global
    /// lock order, then every shard of the sibling (which no command ever locks), and shard `i`
    /// of database `d` trades tables and expiry indexes with the sibling's. WATCHes fire as
    /// for SWAPDB; a running snapshot still saves this keyspace as it was at its cut (entries
    /// leaving a shard it has not finished are retained, entries arriving there stamped with
    /// the current epoch). Elsewhere the arriving entries keep the versions the sibling's own
    /// clock gave them, which never passes its first epoch (a sibling is never cut), so they
    /// read as older than any later cut, as they should. O(shards) without a snapshot.
    /// Returns false, changing nothing, if the two differ in databases or key hasher.
    pub fn swap_contents(&self, sibling: &Keyspace, now_ms: u64) -> bool {
        if sibling.dbs.len() != self.dbs.len()
            || sibling.shared.hash(b"forkless") != self.shared.hash(b"forkless")
        {
            return false;
        }
        let epoch = self.epoch();
        let mut mine: Vec<Vec<_>> = self
            .dbs
            .iter()
            .map(|db| db.shard_locks().iter().map(sync::write).collect())
            .collect();
        let mut theirs: Vec<Vec<_>> = sibling
            .dbs
            .iter()
            .map(|db| db.shard_locks().iter().map(sync::write).collect())
            .collect();
        for ((db, my_shards), their_shards) in self.dbs.iter().zip(&mut mine).zip(&mut theirs) {
            for (x, y) in my_shards.iter_mut().zip(their_shards.iter_mut()) {
                touch_watched(db, x, y, now_ms);
                preserve_leaving(x);
                std::mem::swap(&mut x.table, &mut y.table);
                std::mem::swap(&mut x.expires, &mut y.expires);
                stamp_arriving(x, epoch);
            }
        }
        if let Some(first) = mine.first_mut().and_then(|shards| shards.first_mut()) {
            first.dirty += 1;
        }
        effect::changed(&self.shared.effects);
        true
    }
}

/// Exchanges the contents of two shards of the same index.
fn swap_shards(db: &Db, x: &mut ShardState, y: &mut ShardState, epoch: Epoch, now_ms: u64) {
    touch_watched(db, x, y, now_ms);
    touch_watched(db, y, x, now_ms);
    preserve_leaving(x);
    preserve_leaving(y);
    std::mem::swap(&mut x.table, &mut y.table);
    std::mem::swap(&mut x.expires, &mut y.expires);
    stamp_arriving(x, epoch);
    stamp_arriving(y, epoch);
}

/// Redis's `touchAllWatchedKeysInDb(emptied, replaced_with)` for one shard. `db` is either
/// database: both hash keys alike.
fn touch_watched(db: &Db, emptied: &ShardState, replaced_with: &ShardState, now_ms: u64) {
    emptied.watchers.touch_where(|key| {
        let hash = db.key_hash(key);
        emptied.find(hash, key).is_some()
            || replaced_with
                .find(hash, key)
                .is_some_and(|entry| !entry.is_expired(now_ms))
    });
}

/// Retains, for a snapshot that still has this shard to save, every pre-cut entry about to
/// leave it.
fn preserve_leaving(shard: &mut ShardState) {
    let ShardState {
        table, snapshot, ..
    } = shard;
    if snapshot.is_none() {
        return;
    }
    for (key, entry) in table.iter() {
        retain::preserve(snapshot, key, entry);
    }
}

/// Marks every entry that just arrived in a shard a snapshot still has to save as written now,
/// after the cut, so the traversal skips it.
fn stamp_arriving(shard: &mut ShardState, epoch: Epoch) {
    if shard.snapshot.is_none() {
        return;
    }
    for (_, entry) in shard.table.iter_mut() {
        entry.stamp(epoch);
    }
}

#[cfg(test)]
mod tests {
    use crate::keyspace::Keyspace;
    use crate::value::Value;
    use crate::watch::WatchFlag;

    fn set(keyspace: &Keyspace, db: usize, key: &[u8], value: &[u8], expire_at_ms: Option<u64>) {
        let db = keyspace.db(db).expect("db");
        db.write(&[key], 0)
            .set(key, Value::string(value), expire_at_ms);
    }

    fn get(
        keyspace: &Keyspace,
        db: usize,
        key: &[u8],
        now_ms: u64,
    ) -> Option<(Vec<u8>, Option<u64>)> {
        let db = keyspace.db(db).expect("db");
        let guard = db.read(&[key], now_ms);
        guard.get(key).map(|entry| match entry.value() {
            Value::String(bytes) => (bytes.to_vec(), entry.expire_at_ms()),
            _ => panic!("not a string"),
        })
    }

    #[test]
    fn contents_and_ttls_change_places() {
        let keyspace = Keyspace::new(3);
        set(&keyspace, 0, b"a", b"zero", Some(5_000));
        set(&keyspace, 2, b"b", b"two", None);
        assert!(keyspace.swap_dbs(2, 0, 1_000));
        assert_eq!(get(&keyspace, 0, b"a", 1_000), None);
        assert_eq!(
            get(&keyspace, 0, b"b", 1_000),
            Some((b"two".to_vec(), None))
        );
        assert_eq!(
            get(&keyspace, 2, b"a", 1_000),
            Some((b"zero".to_vec(), Some(5_000)))
        );
        assert_eq!(keyspace.db(2).expect("db").stats(1_000).expires, 1);
        assert!(keyspace.swap_dbs(1, 1, 1_000));
        assert!(!keyspace.swap_dbs(0, 3, 1_000));
        assert!(keyspace.db(2).expect("db").stats(1_000).keys == 1);
    }

    #[test]
    fn a_sibling_swaps_in_whole() {
        let keyspace = Keyspace::new(2);
        set(&keyspace, 0, b"old", b"x", None);
        set(&keyspace, 1, b"old1", b"x", None);
        let sibling = keyspace.sibling();
        for i in 0..1000u32 {
            let key = format!("new{i}");
            set(&sibling, 0, key.as_bytes(), b"y", Some(9_000));
        }
        set(&sibling, 1, b"new-in-1", b"z", None);
        let watched = WatchFlag::default();
        keyspace.db(0).expect("db").watch(b"old", &watched);
        assert!(keyspace.swap_contents(&sibling, 1_000));
        assert!(watched.is_set());
        assert_eq!(get(&keyspace, 0, b"old", 1_000), None);
        assert_eq!(
            get(&keyspace, 0, b"new999", 1_000),
            Some((b"y".to_vec(), Some(9_000)))
        );
        assert_eq!(keyspace.db(0).expect("db").stats(1_000).keys, 1000);
        assert_eq!(keyspace.db(0).expect("db").stats(1_000).expires, 1000);
        assert_eq!(
            get(&keyspace, 1, b"new-in-1", 1_000),
            Some((b"z".to_vec(), None))
        );
        // The sibling holds the old contents, to be dropped by the caller.
        assert_eq!(get(&sibling, 0, b"old", 1_000), Some((b"x".to_vec(), None)));
        // Not a sibling: another hasher, or another number of databases.
        assert!(!keyspace.swap_contents(&Keyspace::new(2), 1_000));
        assert!(!keyspace.swap_contents(&Keyspace::new(3), 1_000));
    }

    #[test]
    fn watches_fire_as_in_redis() {
        let keyspace = Keyspace::new(2);
        set(&keyspace, 0, b"here", b"x", None);
        set(&keyspace, 1, b"there", b"x", None);
        set(&keyspace, 1, b"stale", b"x", Some(10));
        let db0 = keyspace.db(0).expect("db");
        let flags: Vec<WatchFlag> = (0..4).map(|_| WatchFlag::default()).collect();
        for (key, flag) in [&b"here"[..], b"there", b"stale", b"nowhere"]
            .iter()
            .zip(&flags)
        {
            db0.watch(key, flag);
        }
        assert!(keyspace.swap_dbs(0, 1, 1_000));
        let fired: Vec<bool> = flags.iter().map(WatchFlag::is_set).collect();
        // Present before; present after; arriving only as an expired key; absent from both.
        assert_eq!(fired, [true, true, false, false]);
    }
}
