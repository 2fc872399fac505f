//! The keyspace: every logical database, the epoch clock they share, and the active expiry cycle.

use std::sync::Arc;
use std::time::Instant;

use crate::compact::CompactBytes;

use crate::db::{Db, DbStats, Flushed, N_SHARDS, Shared};
use crate::entry::Entry;
use crate::retain::{RetainCounters, RetainSlots, RetainedStats, ShardSnapshot};
use crate::shard::ShardState;
use crate::sync::{self, Mutex};
use crate::version::Epoch;

/// Keys removed per shard visit of the active expiry cycle, so a shard lock is held briefly.
const EXPIRE_KEYS_PER_VISIT: usize = 64;

/// All databases of one server.
#[derive(Debug)]
pub struct Keyspace {
    dbs: Box<[Db]>,
    shared: Arc<Shared>,
    /// Where the next active expiry cycle resumes, as (db, shard). A mutex because only the one
    /// expiry thread takes it, once per cycle.
    expire_cursor: Mutex<(usize, usize)>,
    /// The running snapshot's retain slots, from `begin_snapshot` until `end_snapshot`: some
    /// while a snapshot runs. A mutex so that begin and end are serialized with each other as a
    /// whole.
    snapshot_active: Mutex<Option<Arc<RetainSlots>>>,
    gate: crate::gate::CommandGate,
}

/// What one active expiry cycle did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpireCycle {
    /// Keys removed.
    pub removed: usize,
    /// Returns true if and only if the cycle stopped at its deadline with keys still due.
    pub timed_out: bool,
}

impl Keyspace {
    /// A keyspace with `n_dbs` empty databases (at least one).
    pub fn new(n_dbs: usize) -> Keyspace {
        let shared = Arc::new(Shared::default());
        let dbs = (0..n_dbs.max(1))
            .map(|_| Db::new(Arc::clone(&shared)))
            .collect();
        Keyspace {
            dbs,
            shared,
            expire_cursor: Mutex::new((0, 0)),
            snapshot_active: Mutex::new(None),
            gate: crate::gate::CommandGate::default(),
        }
    }

    /// The command gate: shared by every command, exclusive for a transaction.
    pub fn gate(&self) -> &crate::gate::CommandGate {
        &self.gate
    }

    /// Database `idx`, or None if there is no such database.
    pub fn db(&self, idx: usize) -> Option<&Db> {
        self.dbs.get(idx)
    }

    /// All databases, in index order.
    pub fn dbs(&self) -> &[Db] {
        &self.dbs
    }

    /// The current epoch.
    pub fn epoch(&self) -> Epoch {
        self.shared.clock.current()
    }

    /// Changes made to the whole keyspace since it was created (the base of Redis's
    /// `rdb_changes_since_last_save`).
    pub fn dirty(&self) -> u64 {
        self.dbs.iter().map(Db::dirty).sum()
    }

    /// Keys removed because their TTL passed, lazily or by the active cycle.
    pub fn expired_keys(&self) -> u64 {
        self.dbs.iter().map(Db::expired_keys).sum()
    }

    /// Empties every database atomically: all shards of all databases are locked (database by
    /// database, shard by shard, the global lock order) before any is cleared. The removed data
    /// is returned so the caller decides where it is freed.
    pub fn flush_all(&self, now_ms: u64) -> Flushed {
        let mut guards: Vec<_> = self.dbs.iter().map(|db| db.write_all(now_ms)).collect();
        let mut flushed = Flushed::default();
        for guard in &mut guards {
            flushed.absorb(guard.clear());
        }
        flushed
    }

    /// One active expiry cycle: walks shards round-robin from where the last cycle stopped,
    /// removing keys whose deadline is `<= now_ms`, until every shard has been visited with
    /// nothing left due or `deadline` passes. Unlike Redis's sampling, the per-shard deadline
    /// index finds every expired key, so memory of expired keys is reclaimed in bounded time.
    pub fn active_expire_cycle(&self, now_ms: u64, deadline: Instant) -> ExpireCycle {
        self.active_expire_cycle_collecting(now_ms, deadline, None)
    }

    /// [`Keyspace::active_expire_cycle`], also collecting the `(database, key)` of every key
    /// it removed into `expired` when given (for clients told about expired keys, such as
    /// CLIENT TRACKING's).
    pub fn active_expire_cycle_collecting(
        &self,
        now_ms: u64,
        deadline: Instant,
        mut expired: Option<&mut Vec<(usize, CompactBytes)>>,
    ) -> ExpireCycle {
        let mut cursor = sync::lock(&self.expire_cursor);
        let n_slots = self.dbs.len() * N_SHARDS;
        let mut cycle = ExpireCycle::default();
        let mut visited_clean = 0;
        while visited_clean < n_slots {
            let (db_idx, shard_idx) = *cursor;
            let Some(db) = self.dbs.get(db_idx) else {
                *cursor = (0, 0);
                continue;
            };
            let mut keys = Vec::new();
            let collect = expired.is_some().then_some(&mut keys);
            let (removed, more_due) =
                db.expire_shard(shard_idx, now_ms, EXPIRE_KEYS_PER_VISIT, collect);
            if let Some(expired) = expired.as_deref_mut() {
                expired.extend(keys.into_iter().map(|key| (db_idx, key)));
            }
            cycle.removed += removed;
            if more_due {
                visited_clean = 0;
            } else {
                visited_clean += 1;
                *cursor = if shard_idx + 1 < N_SHARDS {
                    (db_idx, shard_idx + 1)
                } else {
                    ((db_idx + 1) % self.dbs.len(), 0)
                };
            }
            if Instant::now() >= deadline {
                cycle.timed_out = more_due || visited_clean < n_slots;
                break;
            }
        }
        cycle
    }
}

/// A snapshot's cut: the epoch that splits the keyspace into "before" (saved) and "after".
/// Obtained from [`Keyspace::begin_snapshot`]; give it back with [`Keyspace::end_snapshot`].
#[derive(Debug)]
pub struct SnapshotCut {
    epoch: Epoch,
    now_ms: u64,
    db_sizes: Vec<DbStats>,
    /// What each shard retains and still holds.
    slots: Arc<RetainSlots>,
    counters: Arc<RetainCounters>,
}

impl SnapshotCut {
    /// The cut epoch: entries with an older version are in the snapshot.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The wall-clock time of the cut, ms since the Unix epoch. Keys expired at this time are
    /// not part of the snapshot.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Keys and keys-with-TTL per database at the cut (including keys expired but not yet
    /// reclaimed, so these are upper bounds, as Redis's RESIZEDB figures are).
    pub fn db_sizes(&self) -> &[DbStats] {
        &self.db_sizes
    }

    /// Bytes of versions retained in database `db_idx` since the cut and not yet taken, by an
    /// image or by [`Keyspace::take_retained`]. When it is above zero, a sweep of the shards not
    /// yet imaged finds versions to save and free.
    pub fn pending_retained_bytes(&self, db_idx: usize) -> u64 {
        self.slots.db_bytes(db_idx)
    }

    /// Records what is retained now in `snapshot_peak_retained_bytes`. Call it just before
    /// taking retained versions ([`Keyspace::take_retained`]): what is retained only grows
    /// between takes, so the peak is sampled where it is highest.
    pub fn record_retained_peak(&self) {
        self.counters.record_peak(&self.slots);
    }
}

/// Where the traversal of one shard has got to, between steps of [`Keyspace::scan_shard`].
#[derive(Debug, Default)]
pub struct ShardCursor {
    next_bucket: usize,
    /// Buckets examined since the last unsaved entry, to notice a count that went wrong.
    examined_since_found: usize,
}

/// What [`Keyspace::scan_shard`] does with an entry it hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// The caller saved (or skipped) it under the lock; go on.
    Saved,
    /// Clone it out, to be saved once the lock is released; go on.
    Later,
    /// Saved; end this step here (the caller's buffer is full).
    SavedAndPause,
}

/// How far ahead of the bucket it visits the traversal prefetches a string's bytes. A value
/// lives wherever the allocator put it, so each one the traversal copies is a cache (and TLB)
/// miss; sixteen buckets (about eight to fourteen entries at hashbrown's load factors) keep
/// enough of those misses in flight that the copy rarely waits. Idle BGSAVE with zstd of
/// 1.8M JSON values: 453-454 MB/s without, 546-565 with (docs/benchmarks.md).
const PREFETCH_AHEAD_BUCKETS: usize = 16;

/// One bucket of a traversal step: if bucket `idx` of `table` holds an entry still older than
/// the cut, stamps it with the cut epoch, counts it saved, and hands it to `visit`, cloning it
/// into `later` when `visit` asks for that. None when the bucket holds nothing to save.
fn visit_bucket(
    table: &mut hashbrown::HashTable<(CompactBytes, Entry)>,
    idx: usize,
    state: &mut ShardSnapshot,
    later: &mut Vec<(CompactBytes, Entry)>,
    visit: &mut dyn FnMut(&CompactBytes, &Entry) -> Visit,
) -> Option<Visit> {
    let (key, entry) = table.get_bucket_mut(idx)?;
    if entry.version() >= state.cut {
        return None;
    }
    entry.stamp(state.cut);
    state.unsaved = state.unsaved.saturating_sub(1);
    let visited = visit(key, entry);
    if visited == Visit::Later {
        later.push((key.clone(), entry.clone()));
    }
    Some(visited)
}

/// The entries of one shard as they were at the cut, taken by the traversal. Holds the
/// retained versions until it is dropped, and returns them to the counters then.
#[derive(Debug)]
pub struct ShardImage {
    entries: Vec<(CompactBytes, Entry)>,
    retained_versions: u64,
    retained_bytes: u64,
    counters: Arc<RetainCounters>,
}

impl ShardImage {
    /// `(key, entry)` pairs in no particular order. Includes keys expired at the cut: filter
    /// them with `entry.is_expired(cut.now_ms())`.
    pub fn entries(&self) -> &[(CompactBytes, Entry)] {
        &self.entries
    }

    /// Once the image is saved: its string entries, to hand back to their shard with
    /// [`Keyspace::take_retained_handing_back`] so that the shard's writers free them. They no
    /// longer count as retained. Collections are freed here.
    pub fn into_saved_strings(mut self) -> Vec<(CompactBytes, Entry)> {
        let mut entries = std::mem::take(&mut self.entries);
        drop(self);
        entries.retain(|(_, entry)| matches!(entry.value(), crate::Value::String(_)));
        entries
    }
}

impl Drop for ShardImage {
    fn drop(&mut self) {
        self.counters
            .sub(self.retained_versions, self.retained_bytes);
    }
}

impl Keyspace {
    /// Takes a snapshot cut: locks every shard of every database (in lock order), advances the
    /// epoch, and marks every shard as "cut, image not taken". O(shards), never O(keys): the
    /// only per-shard work is installing an empty retain list. Returns None if a snapshot is
    /// already running.
    pub fn begin_snapshot(&self, now_ms: u64) -> Option<SnapshotCut> {
        let mut active = sync::lock(&self.snapshot_active);
        if active.is_some() {
            return None;
        }
        let mut guards: Vec<_> = self
            .dbs
            .iter()
            .flat_map(|db| db.shard_locks().iter().map(sync::write))
            .collect();
        let epoch = self.shared.clock.advance();
        let mut db_sizes = vec![DbStats::default(); self.dbs.len()];
        for (idx, shard) in guards.iter().enumerate() {
            if let Some(stats) = db_sizes.get_mut(idx / N_SHARDS) {
                stats.keys += shard.len();
                stats.expires += shard.expires.len();
            }
        }
        let slots = Arc::new(RetainSlots::new(
            db_sizes.iter().map(|stats| stats.keys),
            N_SHARDS,
        ));
        for (idx, shard) in guards.iter_mut().enumerate() {
            debug_assert!(
                shard.snapshot.is_none(),
                "a shard still holds an older snapshot"
            );
            shard.snapshot = Some(Box::new(ShardSnapshot {
                cut: epoch,
                retained: Vec::new(),
                retained_bytes: 0,
                slots: Arc::clone(&slots),
                slot: (idx / N_SHARDS, idx % N_SHARDS),
                unsaved: shard.len(),
                counters: Arc::clone(&self.shared.retain),
                saved: Vec::new(),
            }));
        }
        drop(guards);
        *active = Some(Arc::clone(&slots));
        Some(SnapshotCut {
            epoch,
            now_ms,
            db_sizes,
            slots,
            counters: Arc::clone(&self.shared.retain),
        })
    }

    /// An image holding nothing yet.
    fn empty_image(&self) -> ShardImage {
        ShardImage {
            entries: Vec::new(),
            retained_versions: 0,
            retained_bytes: 0,
            counters: Arc::clone(&self.shared.retain),
        }
    }

    /// Takes shard `shard_idx` of database `db_idx` as it was at the cut, whole: its entries
    /// older than the cut plus the versions retained since, cloned out (a reference count each).
    /// From now on writes to that shard retain nothing. A shard's image can be taken once; a
    /// second call returns an empty image. The serializers use [`Keyspace::scan_shard`], which
    /// takes the same entries a few at a time without cloning them.
    pub fn take_shard_image(
        &self,
        cut: &SnapshotCut,
        db_idx: usize,
        shard_idx: usize,
    ) -> ShardImage {
        let mut cursor = ShardCursor::default();
        let (image, done) = self.scan_shard(
            cut,
            db_idx,
            shard_idx,
            &mut cursor,
            usize::MAX,
            &mut |_, _| Visit::Later,
        );
        debug_assert!(done, "an unbounded step finishes its shard");
        image
    }

    /// One step of the traversal of shard `shard_idx` of database `db_idx`: under the shard's
    /// lock, examines up to `max_buckets` buckets from `cursor` and hands every entry still
    /// older than the cut to `visit`, which saves it then and there ([`Visit::Saved`], no copy
    /// made) or asks for it to be cloned out ([`Visit::Later`], for values too big to encode
    /// under the lock). Each visited entry is stamped with the cut epoch, so later writes to it
    /// retain nothing (it is saved) and no later step visits it again.
    ///
    /// Returns the entries to save after the lock is released (the `Later` ones and, when the
    /// shard is done, the versions it still retains) and whether the shard is done: every entry
    /// that was in it at the cut is then saved, retained or returned, and the shard stops
    /// retaining. A resize or an in-place rehash of the table between steps can move unvisited
    /// entries behind the cursor; the shard's count of unsaved entries catches that, and the
    /// cursor goes round again.
    pub fn scan_shard(
        &self,
        cut: &SnapshotCut,
        db_idx: usize,
        shard_idx: usize,
        cursor: &mut ShardCursor,
        max_buckets: usize,
        visit: &mut dyn FnMut(&CompactBytes, &Entry) -> Visit,
    ) -> (ShardImage, bool) {
        let mut image = self.empty_image();
        let Some(db) = self.dbs.get(db_idx) else {
            return (image, true);
        };
        let mut guard = sync::write(db.shard_lock(shard_idx));
        let ShardState {
            table, snapshot, ..
        } = &mut *guard;
        let Some(state) = snapshot.as_mut() else {
            return (image, true);
        };
        debug_assert_eq!(
            state.cut, cut.epoch,
            "traversal with another snapshot's cut"
        );
        let buckets = table.num_buckets();
        let mut examined = 0;
        while state.unsaved > 0 && examined < max_buckets {
            if cursor.next_bucket >= buckets {
                cursor.next_bucket = 0;
            }
            if cursor.examined_since_found >= buckets {
                // A whole round's worth of buckets without an unsaved entry. That proves
                // nothing: a resize or an in-place rehash between steps can move an unvisited
                // entry behind the cursor again and again (the count of examined buckets
                // spans tables of different layouts). So look at the whole table now, under
                // the lock, where nothing moves; whatever is still counted after that was
                // miscounted.
                cursor.examined_since_found = 0;
                for idx in 0..buckets {
                    let _ = visit_bucket(table, idx, state, &mut image.entries, visit);
                }
                debug_assert_eq!(
                    state.unsaved, 0,
                    "unsaved entries counted but not in the table"
                );
                state.unsaved = 0;
                break;
            }
            let idx = cursor.next_bucket;
            if let Some((_, ahead)) = table.get_bucket(idx + PREFETCH_AHEAD_BUCKETS) {
                ahead.prefetch_value();
            }
            cursor.next_bucket += 1;
            cursor.examined_since_found += 1;
            examined += 1;
            let Some(visited) = visit_bucket(table, idx, state, &mut image.entries, visit) else {
                continue;
            };
            cursor.examined_since_found = 0;
            if visited == Visit::SavedAndPause {
                break;
            }
        }
        if state.unsaved > 0 {
            return (image, false);
        }
        if let Some(done) = snapshot.take() {
            cut.record_retained_peak();
            let (retained, bytes) = done.into_retained();
            image.retained_versions = retained.len() as u64;
            image.retained_bytes = bytes;
            image.entries.extend(retained);
        }
        (image, true)
    }

    /// Takes the versions retained so far by shard `shard_idx` of database `db_idx`, whose
    /// traversal is not done (it may be under way), as an image of its own; the shard stays cut and later writes
    /// retain into a fresh list. Saving these early frees them early: the shard's image, when
    /// it is taken, no longer holds them, and holds no live entry for their keys either (a
    /// retained key's live entry is newer than the cut, or gone). Empty if the shard's image
    /// was already taken.
    pub fn take_retained(&self, cut: &SnapshotCut, db_idx: usize, shard_idx: usize) -> ShardImage {
        self.take_retained_handing_back(cut, db_idx, shard_idx, Vec::new())
    }

    /// [`Keyspace::take_retained`], also handing back `saved`: strings taken from the same
    /// shard earlier and saved since ([`ShardImage::into_saved_strings`]). The shard's writers
    /// free them, one for each version they retain, so that the memory goes back through their
    /// own allocator caches (see `retain.rs`). Freed here if the shard is done.
    pub fn take_retained_handing_back(
        &self,
        cut: &SnapshotCut,
        db_idx: usize,
        shard_idx: usize,
        saved: Vec<(CompactBytes, Entry)>,
    ) -> ShardImage {
        let counters = Arc::clone(&self.shared.retain);
        let taken = self.dbs.get(db_idx).and_then(|db| {
            let mut shard = sync::write(db.shard_lock(shard_idx));
            let snapshot = shard.snapshot.as_mut()?;
            debug_assert_eq!(snapshot.cut, cut.epoch, "retained taken with another cut");
            if snapshot.saved.is_empty() {
                snapshot.saved = saved;
            } else {
                snapshot.saved.extend(saved);
            }
            (!snapshot.retained.is_empty()).then(|| snapshot.take_retained())
        });
        let (entries, retained_bytes) = taken.unwrap_or_default();
        ShardImage {
            retained_versions: entries.len() as u64,
            entries,
            retained_bytes,
            counters,
        }
    }

    /// Ends the snapshot of `cut`, finished or abandoned: shards whose image was never taken
    /// drop their retained versions, and a new snapshot may begin.
    #[expect(
        clippy::needless_pass_by_value,
        reason = "the cut is a token: ending the snapshot takes it, so it cannot be used again"
    )]
    pub fn end_snapshot(&self, cut: SnapshotCut) {
        let epoch = cut.epoch;
        let mut active = sync::lock(&self.snapshot_active);
        cut.record_retained_peak();
        for db in self.dbs.iter() {
            for lock in db.shard_locks() {
                let mut shard = sync::write(lock);
                if let Some(snapshot) = shard.snapshot.take() {
                    debug_assert_eq!(snapshot.cut, epoch);
                    let counters = Arc::clone(&snapshot.counters);
                    let (retained, bytes) = snapshot.into_retained();
                    counters.sub(retained.len() as u64, bytes);
                }
            }
        }
        *active = None;
    }

    /// Returns true if and only if a snapshot cut is outstanding.
    pub fn snapshot_in_progress(&self) -> bool {
        sync::lock(&self.snapshot_active).is_some()
    }

    /// What running snapshots retain now, and the peak.
    pub fn retained(&self) -> RetainedStats {
        let active = sync::lock(&self.snapshot_active);
        self.shared.retain.stats(active.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;

    /// The strings a snapshot's sweeper has saved go back to their shard, whose writers free
    /// them one for each version they retain.
    #[test]
    fn handed_back_strings_are_freed_one_per_retained_version() {
        let keyspace = Keyspace::new(1);
        let db = keyspace.db(0).expect("db 0");
        let keys: Vec<Vec<u8>> = (0..)
            .map(|i| format!("k{i}").into_bytes())
            .filter(|key| db.shard_of_key(key) == 0)
            .take(5)
            .collect();
        let set = |key: &[u8], value: &[u8]| {
            db.write(&[key], 0).set(key, Value::string(value), None);
        };
        for key in &keys {
            set(key, &[b'x'; 100]);
        }
        let held = || {
            sync::read(db.shard_lock(0))
                .snapshot
                .as_ref()
                .map_or(0, |snapshot| snapshot.saved.len())
        };
        let cut = keyspace.begin_snapshot(0).expect("no snapshot running");
        for key in &keys[..3] {
            set(key, b"new");
        }
        assert_eq!(cut.pending_retained_bytes(0), keyspace.retained().bytes);
        let image = keyspace.take_retained(&cut, 0, 0);
        assert_eq!(image.entries().len(), 3);
        let saved = image.into_saved_strings();
        assert_eq!(saved.len(), 3);
        assert_eq!(
            keyspace.retained().versions,
            0,
            "saved strings no longer count"
        );
        let image = keyspace.take_retained_handing_back(&cut, 0, 0, saved);
        assert!(image.entries().is_empty());
        assert_eq!(held(), 3);
        // Each version retained frees one saved string.
        set(&keys[3], b"new");
        set(&keys[4], b"new");
        assert_eq!(held(), 1);
        // A key already retained once retains nothing more, so it frees nothing either.
        set(&keys[3], b"newer");
        assert_eq!(held(), 1);
        assert_eq!(keyspace.retained().versions, 2);
        keyspace.end_snapshot(cut);
        assert_eq!(keyspace.retained().versions, 0);
        assert_eq!(keyspace.retained().bytes, 0);
    }
}
