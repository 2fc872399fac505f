//! The snapshot protocol: everything that makes a save see one point in time while clients
//! keep writing, in one place.
//!
//! # The protocol
//! 1. **Claim** ([`Keyspace::claim_save`]): the keyspace's one save slot. [`SaveOwner`] is
//!    the single owner of "a save is running": epoch saves and fork-mode saves alike hold a
//!    [`SaveClaim`] from the moment they are accepted until their outcome is recorded, and a
//!    second claim is refused. The claim carries the caller's record of the save (progress, kind,
//!    a child's pid: storage does not look inside it), which [`Keyspace::running_save`] hands
//!    to readers such as INFO.
//! 2. **Cut** ([`Keyspace::cut`], or [`Keyspace::begin_snapshot`] for claim and cut in one):
//!    with every shard lock held, the epoch advances and every shard gets its
//!    `retain::ShardSnapshot`. O(shards), never O(keys).
//! 3. **Traversal** (`traverse.rs`: [`Keyspace::scan_shard`], [`ShardImage`]): the save walks
//!    each shard in short steps, stamping every entry it saves with the cut epoch.
//! 4. **Retain hook** (`retain.rs`): the first change after the cut to an entry older than the
//!    cut keeps its pre-cut version for the save; the save's sweeper takes those early
//!    ([`Keyspace::take_retained`]).
//! 5. **End** ([`Keyspace::end_snapshot`]): shards not yet traversed drop what they retain;
//!    dropping the claim ([`SaveClaim`]) frees the slot for the next save.
//!
//! Who stamps versions: the write guard (every change, with the current epoch), the traversal
//! step (each entry it saves, with the cut epoch, so no later write retains it), and active
//! expiry (through the same removal path as a write). See `version.rs` for the rule.
//!
//! # Lock order
//! The owner's mutex comes before every shard lock: the cut and the end take it, then the
//! shards. Nothing takes it while holding a shard lock. See docs/ARCHITECTURE.md.

use std::any::Any;
use std::sync::Arc;

use crate::db::{DbStats, N_SHARDS};
use crate::effect::Seq;
use crate::keyspace::Keyspace;
use crate::sync::{self, AtomicBool, Mutex, Ordering};
use crate::version::Epoch;

pub(crate) mod retain;
mod traverse;

use retain::{RetainCounters, RetainSlots, RetainedStats, ShardSnapshot};
pub use traverse::{ShardCursor, ShardImage, Visit};

/// What a save records about itself for readers (the server's progress, kind, child pid).
/// Storage only keeps it and hands it out.
pub type SaveRecord = Arc<dyn Any + Send + Sync>;

/// The single owner of "a save is running": the keyspace's one save slot, and the running
/// save's cut, if it has taken one.
#[derive(Debug, Default)]
pub(crate) struct SaveOwner {
    state: Mutex<OwnerState>,
    /// Returns true if and only if a cut is outstanding: set under the state's lock by
    /// [`Keyspace::cut`] before it locks the shards, cleared by [`Keyspace::end_snapshot`]
    /// once every shard has dropped its retained versions. Lets
    /// [`Keyspace::retained_bytes`] skip the lock while no snapshot runs (eviction reads it
    /// around every removal).
    cut_outstanding: AtomicBool,
}

#[derive(Default)]
struct OwnerState {
    active: Option<ActiveSave>,
    /// Numbers claims, so a stale claim can never release a newer save.
    next_id: u64,
    /// How long the latest cut held the shards' write locks (or, recorded by the caller, a
    /// fork-mode save's freeze and fork): the writers' pause, whatever took the cut.
    last_pause: std::time::Duration,
}

impl std::fmt::Debug for OwnerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerState")
            .field("active", &self.active.as_ref().map(|save| save.id))
            .finish_non_exhaustive()
    }
}

struct ActiveSave {
    id: u64,
    record: SaveRecord,
    /// The retain slots of the save's cut, from the cut until `end_snapshot`.
    slots: Option<Arc<RetainSlots>>,
    /// The claim was dropped while the cut was outstanding: the slot frees at the end.
    released: bool,
}

/// The right to run the one save: held from the moment a save is accepted until its outcome
/// is recorded. Dropping it frees the slot (once the save's cut, if any, has ended).
#[derive(Debug)]
pub struct SaveClaim {
    owner: Arc<SaveOwner>,
    id: u64,
}

impl Drop for SaveClaim {
    fn drop(&mut self) {
        let mut state = sync::lock(&self.owner.state);
        let Some(save) = state.active.as_mut().filter(|save| save.id == self.id) else {
            return;
        };
        if save.slots.is_some() {
            save.released = true;
        } else {
            state.active = None;
        }
    }
}

/// A snapshot's cut: the epoch that splits the keyspace into "before" (saved) and "after".
/// Obtained from [`Keyspace::cut`] or [`Keyspace::begin_snapshot`]; give it back with
/// [`Keyspace::end_snapshot`].
#[derive(Debug)]
pub struct SnapshotCut {
    epoch: Epoch,
    /// The first effect number after the cut: units numbered below it applied before it.
    seq: Seq,
    now_ms: u64,
    db_sizes: Vec<DbStats>,
    /// What each shard retains and still holds.
    slots: Arc<RetainSlots>,
    counters: Arc<RetainCounters>,
    /// The claim [`Keyspace::begin_snapshot`] took for this cut alone, released at its end.
    claim: Option<SaveClaim>,
}

impl SnapshotCut {
    /// The cut epoch: entries with an older version are in the snapshot.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Where the cut splits the effect stream: every unit numbered below this applied wholly
    /// before the cut (it is in the snapshot), every other unit wholly after.
    pub fn seq(&self) -> Seq {
        self.seq
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

    /// Returns true if and only if a write is waiting for room in the retained budget
    /// (`snapshot-max-retained-bytes`): the sweeper should not rest then.
    pub fn writers_waiting(&self) -> bool {
        self.counters.writers_waiting()
    }

    /// Records what is retained now in `snapshot_peak_retained_bytes`. Call it just before
    /// taking retained versions ([`Keyspace::take_retained`]): what is retained only grows
    /// between takes, so the peak is sampled where it is highest.
    pub fn record_retained_peak(&self) {
        self.counters.record_peak(&self.slots);
    }
}

impl Keyspace {
    /// Claims the save slot for a save described by `record`. None if a save (epoch or fork)
    /// is running: one at a time.
    pub fn claim_save(&self, record: SaveRecord) -> Option<SaveClaim> {
        let mut state = sync::lock(&self.saves.state);
        if state.active.is_some() {
            return None;
        }
        let id = state.next_id;
        state.next_id += 1;
        state.active = Some(ActiveSave {
            id,
            record,
            slots: None,
            released: false,
        });
        Some(SaveClaim {
            owner: Arc::clone(&self.saves),
            id,
        })
    }

    /// The record of the running save, if one is running.
    pub fn running_save(&self) -> Option<SaveRecord> {
        sync::lock(&self.saves.state)
            .active
            .as_ref()
            .map(|save| Arc::clone(&save.record))
    }

    /// Returns true if and only if a save holds the slot (with or without a cut).
    pub fn save_running(&self) -> bool {
        sync::lock(&self.saves.state).active.is_some()
    }

    /// Claims the save slot and takes the cut in one go, for a save that records nothing; the
    /// cut holds the claim and [`Keyspace::end_snapshot`] releases it. None if a save runs.
    pub fn begin_snapshot(&self, now_ms: u64) -> Option<SnapshotCut> {
        let claim = self.claim_save(Arc::new(()))?;
        let mut cut = self.cut(&claim, now_ms)?;
        cut.claim = Some(claim);
        Some(cut)
    }

    /// Takes the cut of the save `claim` holds: locks every shard of every database (in lock
    /// order), advances the epoch, and marks every shard as "cut, image not taken".
    /// O(shards), never O(keys): the only per-shard work is installing an empty retain list.
    /// None if the claim is no longer the running save's or its cut was already taken.
    pub fn cut(&self, claim: &SaveClaim, now_ms: u64) -> Option<SnapshotCut> {
        let mut state = sync::lock(&self.saves.state);
        let save = state
            .active
            .as_mut()
            .filter(|save| save.id == claim.id && save.slots.is_none())?;
        self.saves.cut_outstanding.store(true, Ordering::Release);
        let started = std::time::Instant::now();
        let mut guards: Vec<_> = self
            .dbs
            .iter()
            .flat_map(|db| db.shard_locks().iter().map(sync::write))
            .collect();
        let epoch = self.shared.clock.advance();
        let seq = self.shared.effects.peek();
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
        let budget = self.shared.retain.budget();
        let shards_with_keys = db_sizes.iter().filter(|stats| stats.keys > 0).count() * N_SHARDS;
        let budget_share = budget / (shards_with_keys.max(1) as u64);
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
                budget,
                budget_share,
                over_budget: false,
            }));
        }
        drop(guards);
        let pause = started.elapsed();
        save.slots = Some(Arc::clone(&slots));
        state.last_pause = pause;
        Some(SnapshotCut {
            epoch,
            seq,
            now_ms,
            db_sizes,
            slots,
            counters: Arc::clone(&self.shared.retain),
            claim: None,
        })
    }

    /// How long the latest cut paused writers (BGSAVE, an AOF rewrite or a full sync alike),
    /// or what [`Keyspace::record_cut_pause`] recorded since.
    pub fn last_cut_pause(&self) -> std::time::Duration {
        sync::lock(&self.saves.state).last_pause
    }

    /// Records a pause taken outside [`Keyspace::cut`] (a fork-mode save's freeze and fork).
    pub fn record_cut_pause(&self, pause: std::time::Duration) {
        sync::lock(&self.saves.state).last_pause = pause;
    }

    /// Ends the snapshot of `cut`, finished or abandoned: shards whose image was never taken
    /// drop their retained versions. The save slot frees when its claim is dropped (at once
    /// for a cut from [`Keyspace::begin_snapshot`]).
    ///
    /// The cut is a token: ending the snapshot takes it, so it cannot be used again.
    pub fn end_snapshot(&self, cut: SnapshotCut) {
        let epoch = cut.epoch;
        let mut state = sync::lock(&self.saves.state);
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
        self.saves.cut_outstanding.store(false, Ordering::Release);
        if let Some(save) = state.active.as_mut() {
            save.slots = None;
            if save.released {
                state.active = None;
            }
        }
        // The claim, if the cut holds one, takes the owner's lock again when it drops.
        drop(state);
        drop(cut);
    }

    /// Returns true if and only if a snapshot cut is outstanding.
    pub fn snapshot_in_progress(&self) -> bool {
        sync::lock(&self.saves.state)
            .active
            .as_ref()
            .is_some_and(|save| save.slots.is_some())
    }

    /// Sets the retained budget (`snapshot-max-retained-bytes`, 0 for none) of the snapshots
    /// cut from now on: a write that retains a version while the snapshot retains more than
    /// this waits, once its locks are released, until the save has saved and freed enough (at
    /// most [`BUDGET_MAX_WAIT`](crate::BUDGET_MAX_WAIT)). docs/snapshot.md, "The retained budget".
    pub fn set_retained_budget(&self, bytes: u64) {
        self.shared.retain.set_budget(bytes);
    }

    /// The retained budget and how many writes found it full and waited, since the start.
    pub fn retained_budget(&self) -> (u64, u64) {
        (
            self.shared.retain.budget(),
            self.shared.retain.budget_hits(),
        )
    }

    /// Writes that waited [`crate::BUDGET_MAX_WAIT`] for room in the retained budget and then
    /// went on with it still full (the save had fallen behind): each retained one version past
    /// the budget.
    pub fn retained_budget_overruns(&self) -> u64 {
        self.shared.retain.budget_overruns()
    }

    /// What running snapshots retain now, and the peak.
    pub fn retained(&self) -> RetainedStats {
        let state = sync::lock(&self.saves.state);
        let slots = state.active.as_ref().and_then(|save| save.slots.as_deref());
        self.shared.retain.stats(slots)
    }

    /// [`RetainedStats::bytes`] of [`Keyspace::retained`], without taking the save slot's
    /// lock while no cut is outstanding (then only versions handed over by an ended snapshot
    /// and not yet freed are retained, in one counter). The peak is recorded only while a
    /// cut is outstanding. For the eviction check, which reads it around each removal.
    pub fn retained_bytes(&self) -> u64 {
        if self.saves.cut_outstanding.load(Ordering::Acquire) {
            self.retained().bytes
        } else {
            self.shared.retain.handed_over_bytes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;

    /// Every cut records how long it held the shards (the writers' pause), whoever takes it;
    /// a pause recorded from outside (fork mode) replaces it until the next cut.
    #[test]
    fn each_cut_records_its_pause() {
        let keyspace = Keyspace::new(2);
        assert_eq!(keyspace.last_cut_pause(), std::time::Duration::ZERO);
        let cut = keyspace.begin_snapshot(0).expect("no snapshot running");
        let first = keyspace.last_cut_pause();
        assert!(first > std::time::Duration::ZERO);
        keyspace.end_snapshot(cut);
        keyspace.record_cut_pause(std::time::Duration::from_secs(3));
        assert_eq!(keyspace.last_cut_pause(), std::time::Duration::from_secs(3));
        let cut = keyspace.begin_snapshot(0).expect("no snapshot running");
        assert!(keyspace.last_cut_pause() < std::time::Duration::from_secs(3));
        keyspace.end_snapshot(cut);
    }

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

    /// The retained budget: without one nothing waits; with one, a write that retains a
    /// version while the snapshot retains more than the budget waits once its locks are
    /// released, at most `BUDGET_MAX_WAIT` when nothing makes room, and is counted; writes
    /// that retain nothing (a key already retained, a key created after the cut) never wait.
    #[test]
    fn a_write_that_retains_over_the_budget_waits_and_is_counted() {
        let keyspace = Keyspace::new(1);
        let db = keyspace.db(0).expect("db 0");
        let set = |key: &[u8], value: &[u8]| {
            db.write(&[key], 0).set(key, Value::string(value), None);
        };
        for key in [&b"a"[..], b"b"] {
            set(key, &[b'x'; 1000]);
        }
        // No budget: no wait.
        keyspace.set_retained_budget(0);
        let cut = keyspace.begin_snapshot(0).expect("no snapshot running");
        set(b"a", b"new");
        assert_eq!(keyspace.retained_budget(), (0, 0));
        assert_eq!(keyspace.retained_budget_overruns(), 0);
        keyspace.end_snapshot(cut);

        keyspace.set_retained_budget(100);
        let cut = keyspace.begin_snapshot(0).expect("no snapshot running");
        let started = std::time::Instant::now();
        set(b"b", b"new");
        assert!(started.elapsed() >= crate::BUDGET_MAX_WAIT);
        assert_eq!(keyspace.retained_budget(), (100, 1));
        // Nothing made room: the wait ended at its limit, an overrun.
        assert_eq!(keyspace.retained_budget_overruns(), 1);
        // Held, the write went on: its version is still retained, and nothing was lost.
        assert_eq!(keyspace.retained().versions, 1);
        // A key already retained, and a key created after the cut, retain nothing more.
        set(b"b", b"newer");
        set(b"c", b"created");
        assert_eq!(keyspace.retained_budget(), (100, 1));
        // The sweeper's take and drop make room.
        drop(keyspace.take_retained(&cut, 0, db.shard_of_key(b"b")));
        assert_eq!(keyspace.retained().bytes, 0);
        keyspace.end_snapshot(cut);
        assert_eq!(keyspace.retained().bytes, 0);
    }

    /// The save slot has one owner: a claim (with or without a cut) refuses every other save,
    /// hands its record to readers, and frees the slot only when both the claim is dropped and
    /// its cut, if any, has ended.
    #[test]
    fn one_save_at_a_time_whatever_its_kind() {
        let keyspace = Keyspace::new(1);
        // A save without a cut (fork mode's).
        let claim = keyspace.claim_save(Arc::new(7u32)).expect("slot free");
        assert!(keyspace.save_running());
        assert!(!keyspace.snapshot_in_progress());
        assert!(keyspace.begin_snapshot(0).is_none());
        assert!(keyspace.claim_save(Arc::new(8u32)).is_none());
        let record = keyspace.running_save().expect("a save runs");
        assert_eq!(record.downcast_ref::<u32>(), Some(&7));
        drop(claim);
        assert!(!keyspace.save_running());

        // A save with a cut whose claim goes first: the slot stays taken until the cut ends.
        let claim = keyspace.claim_save(Arc::new(())).expect("slot free");
        let cut = keyspace.cut(&claim, 0).expect("the claim's cut");
        assert!(keyspace.cut(&claim, 0).is_none(), "one cut per claim");
        drop(claim);
        assert!(keyspace.save_running());
        assert!(keyspace.begin_snapshot(0).is_none());
        keyspace.end_snapshot(cut);
        assert!(!keyspace.save_running());

        // begin_snapshot's cut holds its own claim.
        let cut = keyspace.begin_snapshot(0).expect("slot free");
        assert!(keyspace.snapshot_in_progress());
        keyspace.end_snapshot(cut);
        assert!(!keyspace.save_running());
        assert!(keyspace.claim_save(Arc::new(())).is_some());
    }
}
