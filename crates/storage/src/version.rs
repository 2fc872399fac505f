//! Epochs: the logical clock that stamps every write, so a snapshot can tell the entries it must
//! save as they were from the ones changed after its cut.
//!
//! # The clock
//! [`EpochClock`] holds one `AtomicU64`, the *current epoch*, starting at 1. Every entry records
//! the epoch that was current when it was last written ([`crate::Entry::version`]). The epoch is
//! read by writers while they hold the shard lock of the entry they change.
//!
//! # Who advances it
//! Only the snapshot cut advances the epoch, and only while it holds every shard lock of every
//! database (`Keyspace::cut`, in `snapshot/mod.rs`). Because writers read the epoch
//! under a shard lock, and multi-key commands hold all their shard locks at once, every command
//! is stamped entirely with the old epoch or entirely with the new one: the cut is a single
//! instant that splits no command.
//!
//! # The rule for a snapshot
//! A snapshot taken at cut epoch `C` must save each entry as it was before `C`. An entry whose
//! version is `< C` is unchanged since the cut. The first write after the cut to an entry that
//! the traversal has not yet reached (version `< C`, shard not yet serialized) must first retain
//! the old value (moved or shared, never deep-copied for strings) so the traversal can save it;
//! the retained value is released once the traversal has passed the shard. The hook lives in
//! `snapshot/retain.rs`; the write guard calls it for every change, and so does every removal
//! without a guard (active expiry, flushes). Besides writes, the traversal step stamps each
//! entry it saves with the cut epoch, so a later write to it retains nothing.
//!
//! Invariants checked in debug builds: epochs are monotonic, and no entry carries a version newer
//! than the current epoch.

use std::num::NonZeroU64;

use crate::sync::{AtomicU64, Ordering};

/// A point on the logical clock. Newtype so an epoch is never confused with a count or a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(NonZeroU64);

impl Epoch {
    /// The first epoch; every keyspace starts here.
    pub const FIRST: Epoch = Epoch(NonZeroU64::MIN);

    /// The epoch's number, for INFO and logs.
    pub fn get(self) -> u64 {
        self.0.get()
    }

    /// The largest epoch an entry's version word holds (40 bits, `entry.rs`).
    pub const MAX: u64 = (1 << 40) - 1;

    /// The epoch numbered `raw` (an entry's version word's epoch bits); 0, which no entry holds,
    /// reads as the first epoch.
    pub(crate) fn from_raw(raw: u64) -> Epoch {
        Epoch(NonZeroU64::new(raw).unwrap_or(NonZeroU64::MIN))
    }
}

/// The global epoch counter shared by all databases of a keyspace.
#[derive(Debug)]
pub struct EpochClock {
    current: AtomicU64,
}

impl Default for EpochClock {
    fn default() -> Self {
        EpochClock {
            current: AtomicU64::new(Epoch::FIRST.get()),
        }
    }
}

impl EpochClock {
    /// The current epoch. Writers call this while holding the shard lock of what they change.
    pub fn current(&self) -> Epoch {
        let raw = self.current.load(Ordering::Acquire);
        // The counter starts at 1 and only ever increases, so it is never zero.
        Epoch(NonZeroU64::new(raw).unwrap_or(NonZeroU64::MIN))
    }

    /// Moves the clock one step forward and returns the new epoch. Only the snapshot coordinator
    /// calls this, while it holds every shard lock.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn advance(&self) -> Epoch {
        let previous = self.current.fetch_add(1, Ordering::AcqRel);
        debug_assert!(
            previous < Epoch::MAX,
            "epoch counter past what an entry's version word holds"
        );
        Epoch(NonZeroU64::new(previous.saturating_add(1)).unwrap_or(NonZeroU64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_starts_at_first_and_advances_monotonically() {
        let clock = EpochClock::default();
        assert_eq!(clock.current(), Epoch::FIRST);
        let next = clock.advance();
        assert!(next > Epoch::FIRST);
        assert_eq!(clock.current(), next);
        assert_eq!(next.get(), 2);
    }
}
