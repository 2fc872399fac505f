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
//! exactly once, under the shard lock, either early or when the traversal finishes the shard;
//! `pending` counts the bytes of a database's shards still waiting, so the sweeper knows when
//! a sweep is worth it.
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

/// Live and peak figures of what snapshots retain, for INFO.
#[derive(Debug, Default)]
pub(crate) struct RetainCounters {
    versions: AtomicU64,
    bytes: AtomicU64,
    peak_bytes: AtomicU64,
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
    fn add(&self, bytes: u64) {
        self.versions.fetch_add(1, Ordering::Relaxed);
        let now = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak_bytes.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn sub(&self, versions: u64, bytes: u64) {
        self.versions.fetch_sub(versions, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> RetainedStats {
        RetainedStats {
            versions: self.versions.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            peak_bytes: self.peak_bytes.load(Ordering::Relaxed),
        }
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
    /// Live entries of the shard still older than the cut: neither saved by the traversal
    /// (which stamps them with the cut epoch) nor retained. The traversal of the shard is done
    /// when this reaches 0.
    pub(crate) unsaved: usize,
    pub(crate) counters: Arc<RetainCounters>,
    /// Bytes retained, and not yet taken, in every shard of this shard's database: shared by
    /// those shards and the snapshot's cut.
    pub(crate) pending: Arc<AtomicU64>,
}

impl ShardSnapshot {
    /// Takes the versions retained so far (and their byte count), leaving the list empty and
    /// the shard still cut.
    pub(crate) fn take_retained(&mut self) -> (Vec<(CompactBytes, Entry)>, u64) {
        let bytes = std::mem::take(&mut self.retained_bytes);
        self.pending.fetch_sub(bytes, Ordering::Relaxed);
        (std::mem::take(&mut self.retained), bytes)
    }
}

/// The on-write hook: call before changing or removing `entry` (stored under `key`). Retains a
/// copy of the entry if and only if a snapshot has cut this shard, has not finished traversing it,
/// and the entry predates the cut.
pub(crate) fn preserve(snapshot: &mut Option<ShardSnapshot>, key: &CompactBytes, entry: &Entry) {
    let Some(snapshot) = snapshot else { return };
    if entry.version() >= snapshot.cut {
        return;
    }
    let bytes = entry_bytes(key, entry);
    snapshot.unsaved = snapshot.unsaved.saturating_sub(1);
    snapshot.retained.push((key.clone(), entry.clone()));
    snapshot.retained_bytes += bytes;
    snapshot.pending.fetch_add(bytes, Ordering::Relaxed);
    snapshot.counters.add(bytes);
}
