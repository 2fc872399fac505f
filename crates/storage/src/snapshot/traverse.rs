//! The traversal: one shard at a time, in short steps under the shard lock, every entry still
//! older than the cut handed to the save and stamped with the cut epoch; and the images of
//! what a shard retained, taken early by the save's sweeper or when the shard is done.

use std::sync::Arc;

use super::SnapshotCut;
use super::retain::{RetainCounters, ShardSnapshot};
use crate::compact::CompactBytes;
use crate::entry::Entry;
use crate::keyspace::Keyspace;
use crate::shard::ShardState;
use crate::sync;

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
/// enough of those misses in flight that the copy rarely waits (docs/benchmarks.md,
/// "Prefetching the values a save copies").
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

/// The longest string a sweep hands back to its shard's writers to free
/// ([`ShardImage::into_saved_strings`]). Handing back is for small values, which glibc keeps in
/// per-thread caches (a value freed by the sweeper cannot be reused by the writer that
/// allocates the next one). A big value is freed to its arena's bins wherever it is freed, and
/// handed back it would wait, uncounted, for one retaining write of its shard: with a retained
/// budget the handed-back big values came to about another budget's worth of memory.
pub(crate) const HAND_BACK_MAX_BYTES: usize = 16 << 10;

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

    /// Once the image is saved: its string entries of at most [`HAND_BACK_MAX_BYTES`], to
    /// hand back to their shard with [`Keyspace::take_retained_handing_back`] so that the
    /// shard's writers free them. They no longer count as retained. Collections and bigger
    /// strings are freed here.
    pub fn into_saved_strings(mut self) -> Vec<(CompactBytes, Entry)> {
        let mut entries = std::mem::take(&mut self.entries);
        drop(self);
        entries.retain(|(_, entry)| {
            matches!(entry.value(), crate::Value::String(bytes) if bytes.len() <= HAND_BACK_MAX_BYTES)
        });
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
}
