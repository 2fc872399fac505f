//! Keeping pre-cut versions alive while a snapshot runs.
//!
//! From the cut until the traversal of a shard is done, the shard carries a
//! [`ShardSnapshot`]. The first change after the cut to an entry that existed before it (its
//! version is older than the cut epoch) first moves a copy of the old entry into
//! `ShardSnapshot::retained`. A copy of an entry is cheap: keys and string values are
//! [`CompactBytes`], so the copy is 24 inline bytes or shares the bytes (a reference-count
//! increment), whatever the value's size; collections are behind `Arc`. Once the
//! traversal is done with the shard it has no `ShardSnapshot` any more, so later
//! writes retain nothing, and the retained versions are freed when the serializer drops the
//! image.
//!
//! The retained list of a shard whose traversal is not done can also be taken early
//! ([`ShardSnapshot::take_retained`]): the save's sweeper thread does that about every
//! millisecond, so a version overwritten early in a long snapshot is saved and freed at once
//! instead of living until the traversal reaches its shard. Each retained version is taken
//! exactly once, under the shard lock, either early or when the traversal finishes the shard.
//!
//! A retaining write touches no memory shared with other writers: what a shard holds and has
//! not handed over is published in its own [`RetainSlot`] (a cache line of its own, written
//! with plain stores under the shard lock), which the sweeper sums to know when a sweep is worth
//! it and INFO sums for `snapshot_retained_*`. The shared [`RetainCounters`] change only when a
//! list is handed over (a sweep, a finished shard) and when it is freed. (Four shared atomic
//! read-modify-writes per retained version, the first design, showed in the request threads'
//! profile under full-speed overwrites: docs/benchmarks.md, "Figures behind code decisions".)
//!
//! Why at most once per entry: retaining stamps nothing, but the change that follows stamps the
//! entry with the current epoch, which is at least the cut. From then on `version < cut` is false
//! for that key, and a key created after the cut starts with `version >= cut`. An entry the
//! traversal has already saved is stamped with the cut itself, so it is not retained either.

use std::sync::Arc;

use crate::compact::CompactBytes;

use crate::entry::Entry;
use crate::sync::{AtomicU64, Ordering};
use crate::version::Epoch;

/// Retained versions handed over by their shards (to a sweep or a finished shard's image) and
/// not freed yet, and the peak of everything retained, for INFO.
#[derive(Debug, Default)]
pub(crate) struct RetainCounters {
    versions: AtomicU64,
    bytes: AtomicU64,
    peak_bytes: AtomicU64,
    /// `snapshot-max-retained-bytes`: 0 for no budget. Read at each cut, so a change applies
    /// from the next snapshot on.
    budget: AtomicU64,
    /// Writes that found the budget full and waited for room (INFO
    /// `snapshot_retained_budget_hits`).
    budget_hits: AtomicU64,
    /// Waits for room that ended at [`BUDGET_MAX_WAIT`] with the budget still full: each let
    /// one more version past the budget.
    budget_overruns: AtomicU64,
    /// Writers waiting for room right now: while any does, the save's sweeper does not rest.
    waiting: AtomicU64,
}

/// One shard's retained versions that it still holds (not handed over), published for readers
/// that do not take the shard lock. Only the holder of the shard lock writes it, with plain
/// stores; aligned so that no two shards' slots share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct RetainSlot {
    versions: AtomicU64,
    bytes: AtomicU64,
}

impl RetainSlot {
    fn publish(&self, versions: usize, bytes: u64) {
        self.versions.store(versions as u64, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
    }
}

/// The slots of one snapshot, database by database. A database with no keys at the cut has
/// none: its shards cannot retain (only an entry older than the cut is retained), so readers
/// sum only the databases that hold data.
#[derive(Debug)]
pub(crate) struct RetainSlots {
    dbs: Box<[Box<[RetainSlot]>]>,
}

impl RetainSlots {
    /// Slots for `shards_per_db` shards of every database whose entry in `keys_at_cut` is not 0.
    pub(crate) fn new(
        keys_at_cut: impl Iterator<Item = usize>,
        shards_per_db: usize,
    ) -> RetainSlots {
        let dbs = keys_at_cut
            .map(|keys| {
                let shards = if keys == 0 { 0 } else { shards_per_db };
                (0..shards).map(|_| RetainSlot::default()).collect()
            })
            .collect();
        RetainSlots { dbs }
    }

    fn slot(&self, db_idx: usize, shard_idx: usize) -> Option<&RetainSlot> {
        self.dbs.get(db_idx)?.get(shard_idx)
    }

    /// Bytes held by the shards of database `db_idx`.
    pub(crate) fn db_bytes(&self, db_idx: usize) -> u64 {
        self.dbs.get(db_idx).map_or(0, |db| {
            db.iter()
                .map(|slot| slot.bytes.load(Ordering::Relaxed))
                .sum()
        })
    }

    /// Versions and bytes held by every shard.
    pub(crate) fn held(&self) -> (u64, u64) {
        self.dbs
            .iter()
            .flat_map(|db| db.iter())
            .fold((0, 0), |(versions, bytes), slot| {
                (
                    versions + slot.versions.load(Ordering::Relaxed),
                    bytes + slot.bytes.load(Ordering::Relaxed),
                )
            })
    }
}

/// Retained versions and bytes right now, and the peak since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetainedStats {
    /// Old versions held for a running snapshot.
    pub versions: u64,
    /// Bytes those versions keep alive.
    pub bytes: u64,
    /// The highest `bytes` has been.
    pub peak_bytes: u64,
}

impl RetainCounters {
    fn hand_over(&self, versions: u64, bytes: u64) {
        self.versions.fetch_add(versions, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn sub(&self, versions: u64, bytes: u64) {
        self.versions.fetch_sub(versions, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Everything retained now: what the shards of the running snapshot (if any) hold plus
    /// what they handed over and is not freed yet. Also records it in the peak.
    ///
    /// The peak is sampled: here (every INFO) and, through [`RetainCounters::record_peak`],
    /// just before every hand-over (each sweep, each finished shard, the end of a save). What is
    /// retained only grows between hand-overs, so those are the moments it is highest, give or
    /// take the versions retained while one sweep runs.
    pub(crate) fn stats(&self, slots: Option<&RetainSlots>) -> RetainedStats {
        let (held_versions, held_bytes) = slots.map_or((0, 0), RetainSlots::held);
        let bytes = self.bytes.load(Ordering::Relaxed) + held_bytes;
        let peak = self
            .peak_bytes
            .fetch_max(bytes, Ordering::Relaxed)
            .max(bytes);
        RetainedStats {
            versions: self.versions.load(Ordering::Relaxed) + held_versions,
            bytes,
            peak_bytes: peak,
        }
    }

    /// Bytes of versions handed over and not freed yet: all that is retained while no cut is
    /// outstanding.
    pub(crate) fn handed_over_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Records what is retained now in the peak (see [`RetainCounters::stats`]).
    pub(crate) fn record_peak(&self, slots: &RetainSlots) {
        self.stats(Some(slots));
    }

    /// Bytes retained now for the snapshot whose shards publish in `slots`: what they hold and
    /// what they handed over and is not freed yet. Sums every slot: only for the slow path.
    fn total_bytes(&self, slots: &RetainSlots) -> u64 {
        slots.held().1 + self.bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn set_budget(&self, bytes: u64) {
        self.budget.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn budget(&self) -> u64 {
        self.budget.load(Ordering::Relaxed)
    }

    pub(crate) fn budget_overruns(&self) -> u64 {
        self.budget_overruns.load(Ordering::Relaxed)
    }

    pub(crate) fn budget_hits(&self) -> u64 {
        self.budget_hits.load(Ordering::Relaxed)
    }

    /// Returns true if and only if a writer is waiting for room in the budget.
    pub(crate) fn writers_waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }
}

/// The longest a write waits for room in the retained budget. A save that stalls (a stuck
/// disk, a replica that stops reading) must not stop the clients: after this a write goes on,
/// and what it retained counts over the budget until the save catches up or ends.
pub const BUDGET_MAX_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// How long a waiting writer sleeps between two looks at the retained total.
const BUDGET_POLL: std::time::Duration = std::time::Duration::from_micros(50);

/// A write that found the retained budget full, to wait for room once its locks are released
/// ([`crate::WriteGuard`]'s drop).
#[derive(Debug)]
pub(crate) struct BudgetWait {
    slots: Arc<RetainSlots>,
    counters: Arc<RetainCounters>,
    budget: u64,
}

impl BudgetWait {
    /// Waits, holding no lock, until what the snapshot retains is within the budget again (the
    /// sweeper saved and freed enough), the snapshot ended (it then retains nothing), or
    /// [`BUDGET_MAX_WAIT`] passed.
    pub(crate) fn wait_for_room(self) {
        self.counters.budget_hits.fetch_add(1, Ordering::Relaxed);
        self.counters.waiting.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        while self.counters.total_bytes(&self.slots) > self.budget {
            if started.elapsed() >= BUDGET_MAX_WAIT {
                self.counters
                    .budget_overruns
                    .fetch_add(1, Ordering::Relaxed);
                break;
            }
            #[cfg(forkless_loom)]
            loom::thread::yield_now();
            #[cfg(not(forkless_loom))]
            std::thread::sleep(BUDGET_POLL);
        }
        self.counters.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The memory an entry keeps alive, as counted for retained versions.
pub(crate) fn entry_bytes(key: &CompactBytes, entry: &Entry) -> u64 {
    let total =
        key.heap_size() + entry.value().heap_size() + std::mem::size_of::<(CompactBytes, Entry)>();
    u64::try_from(total).unwrap_or(u64::MAX)
}

/// A shard's part of a running snapshot, from the cut until its traversal is done.
#[derive(Debug)]
pub(crate) struct ShardSnapshot {
    pub(crate) cut: Epoch,
    /// Pre-cut versions of entries changed or removed since the cut.
    pub(crate) retained: Vec<(CompactBytes, Entry)>,
    pub(crate) retained_bytes: u64,
    /// Where `retained` is published ([`RetainSlot`]): this shard's slot, `slot` as (database,
    /// shard), of `slots`.
    pub(crate) slots: Arc<RetainSlots>,
    pub(crate) slot: (usize, usize),
    /// Live entries of the shard still older than the cut: neither saved by the traversal
    /// (which stamps them with the cut epoch) nor retained. The traversal of the shard is done
    /// when this reaches 0.
    pub(crate) unsaved: usize,
    /// Where handed-over versions are counted until they are freed.
    pub(crate) counters: Arc<RetainCounters>,
    /// Strings of this shard that the sweeper has saved and handed back, for the shard's
    /// writers to free, one for each version they retain ([`ShardSnapshot::retain`]).
    pub(crate) saved: Vec<(CompactBytes, Entry)>,
    /// The retained budget of this snapshot (0: none), and this shard's even share of it: a
    /// retaining write sums every shard's bytes only once its own shard holds its share.
    pub(crate) budget: u64,
    pub(crate) budget_share: u64,
    /// Set by a retaining write that found the budget full; the write guard takes it when it
    /// is dropped and waits for room once its locks are released ([`BudgetWait`]).
    pub(crate) over_budget: bool,
}

impl ShardSnapshot {
    /// Hands over the versions retained so far (and their byte count), leaving the list empty
    /// and the shard still cut. They count in the shared counters until the caller gives them
    /// back with [`RetainCounters::sub`] (a [`crate::ShardImage`] does that when dropped).
    pub(crate) fn take_retained(&mut self) -> (Vec<(CompactBytes, Entry)>, u64) {
        // The next list starts as long as this one was, so the writers that fill it do not
        // reallocate it on the way (the sweeper takes the lists about every millisecond).
        let fresh = Vec::with_capacity(self.retained.len());
        self.hand_over(fresh)
    }

    /// [`ShardSnapshot::take_retained`] for a shard whose traversal is done or abandoned.
    pub(crate) fn into_retained(mut self) -> (Vec<(CompactBytes, Entry)>, u64) {
        self.hand_over(Vec::new())
    }

    /// Swaps `fresh` in for the retained list and hands the list over to the counters.
    fn hand_over(
        &mut self,
        fresh: Vec<(CompactBytes, Entry)>,
    ) -> (Vec<(CompactBytes, Entry)>, u64) {
        let bytes = std::mem::take(&mut self.retained_bytes);
        let taken = std::mem::replace(&mut self.retained, fresh);
        self.counters.hand_over(taken.len() as u64, bytes);
        self.publish();
        (taken, bytes)
    }

    /// The wait a write that found the budget full owes, taken once.
    pub(crate) fn take_budget_wait(&mut self) -> Option<BudgetWait> {
        if !std::mem::take(&mut self.over_budget) {
            return None;
        }
        Some(BudgetWait {
            slots: Arc::clone(&self.slots),
            counters: Arc::clone(&self.counters),
            budget: self.budget,
        })
    }

    fn publish(&self) {
        if let Some(slot) = self.slots.slot(self.slot.0, self.slot.1) {
            slot.publish(self.retained.len(), self.retained_bytes);
        }
    }
}

/// The on-write hook: call before changing or removing `entry` (stored under `key`). Retains a
/// copy of the entry if and only if a snapshot has cut this shard, has not finished traversing it,
/// and the entry predates the cut.
pub(crate) fn preserve(
    snapshot: &mut Option<Box<ShardSnapshot>>,
    key: &CompactBytes,
    entry: &Entry,
) {
    let Some(snapshot) = snapshot else { return };
    if entry.version() < snapshot.cut {
        snapshot.retain(key.clone(), entry.clone());
    }
}

/// [`preserve`] for an entry the write has already taken out of the table (an overwrite):
/// a retained entry is moved into the list rather than copied, so the writer never touches the
/// old value's memory (for a big string that is a cache miss on its reference count, then
/// another to drop the copy). Returns the entry if it was not retained, for the caller to drop.
pub(crate) fn preserve_owned(
    snapshot: &mut Option<Box<ShardSnapshot>>,
    key: &CompactBytes,
    entry: Entry,
) -> Option<Entry> {
    match snapshot {
        Some(snapshot) if entry.version() < snapshot.cut => {
            snapshot.retain(key.clone(), entry);
            None
        }
        _ => Some(entry),
    }
}

impl ShardSnapshot {
    /// Keeps `entry`, the pre-cut version of `key`, for the image, and frees one string the
    /// sweeper has saved, if it handed one back.
    ///
    /// Why the writer frees it: a write that retains the old value allocates the new one
    /// without freeing anything, so the allocator cannot hand it the memory the last value it
    /// freed (glibc's per-thread cache); and a value the sweeper frees goes back to the arena of
    /// the thread that allocated it, which may not be the one allocating now. Freeing one saved
    /// string here for each one retained keeps every writer's free/allocate pairs as they are
    /// without a snapshot: with the sweeper freeing them, the heap grew by a few percent of the
    /// dataset during a long save under full-speed overwrites (docs/benchmarks.md).
    fn retain(&mut self, key: CompactBytes, entry: Entry) {
        let bytes = entry_bytes(&key, &entry);
        self.unsaved = self.unsaved.saturating_sub(1);
        self.retained.push((key, entry));
        self.retained_bytes += bytes;
        self.publish();
        drop(self.saved.pop());
        // The budget: summing every shard's slot costs a cache miss each, so only a shard that
        // holds at least its even share looks. If none does, the total is within the budget.
        if self.budget != 0
            && self.retained_bytes >= self.budget_share
            && self.counters.total_bytes(&self.slots) > self.budget
        {
            self.over_budget = true;
        }
    }
}
