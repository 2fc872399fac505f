//! One key's record: its value, its expiry, the epoch of its last write and its access clock.
//!
//! # The version word
//! The epoch and the access clock share one 64-bit word, so that a shard bucket stays 64 bytes
//! (the key's 24 and the entry's 40):
//!
//! ```text
//!  63                                      24 23                     0
//! +------------------------------------------+------------------------+
//! |  epoch of the last write (40 bits)       | access clock (24 bits) |
//! +------------------------------------------+------------------------+
//! ```
//!
//! Forty bits of epoch are 10^12 snapshot cuts (`EpochClock::advance` checks the bound in
//! debug builds). The epoch bits change only through `&mut Entry`, under the shard's write
//! lock. The clock bits (`access.rs`) change on every access, also under a shard *read* lock:
//! the word is an atomic, and a reader stores the word it loaded with new clock bits, relaxed.
//! Readers race only with other readers (a writer holds the lock exclusively), and all of them
//! keep the epoch bits they read, which cannot change while any read lock is held: a read never
//! changes what a snapshot sees of the entry. Two readers racing may lose one of their clock
//! updates, an approximation Redis's own LRU clock makes too.

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::access;
use crate::value::Value;
use crate::version::Epoch;

const CLOCK_MASK: u64 = access::CLOCK_MAX as u64;

/// A key's record. Fields are private so that every change goes through `WriteGuard`, the single
/// place that stamps [`Entry::version`] (and, with the snapshot, preserves pre-cut values).
#[derive(Debug)]
pub struct Entry {
    value: Value,
    /// Absolute expiry, ms since the Unix epoch. A deadline of 0 is kept as 1: both are long
    /// past, and the niche keeps the field one word.
    expire_at_ms: Option<NonZeroU64>,
    /// The epoch and the access clock (see the module's doc). A std atomic, not `crate::sync`'s:
    /// the clock bits order nothing, and the epoch bits are written only under `&mut`.
    version: AtomicU64,
}

impl Clone for Entry {
    fn clone(&self) -> Entry {
        Entry {
            value: self.value.clone(),
            expire_at_ms: self.expire_at_ms,
            version: AtomicU64::new(self.version.load(Ordering::Relaxed)),
        }
    }
}

/// Equal value, expiry and epoch; the access clock is not part of what an entry holds.
impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.value == other.value
            && self.expire_at_ms == other.expire_at_ms
            && self.version() == other.version()
    }
}

fn pack_version(epoch: Epoch, clock: u32) -> u64 {
    (epoch.get() << access::CLOCK_BITS) | (u64::from(clock) & CLOCK_MASK)
}

fn pack_expiry(expire_at_ms: Option<u64>) -> Option<NonZeroU64> {
    expire_at_ms.map(|at| NonZeroU64::new(at).unwrap_or(NonZeroU64::MIN))
}

impl Entry {
    pub(crate) fn new(
        value: Value,
        expire_at_ms: Option<u64>,
        version: Epoch,
        clock: u32,
    ) -> Entry {
        Entry {
            value,
            expire_at_ms: pack_expiry(expire_at_ms),
            version: AtomicU64::new(pack_version(version, clock)),
        }
    }

    pub(crate) fn set_access_clock(&mut self, clock: u32) {
        let word = self.version.get_mut();
        *word = (*word & !CLOCK_MASK) | (u64::from(clock) & CLOCK_MASK);
    }

    /// The value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Starts loading a string value's bytes into the CPU caches
    /// ([`crate::compact::CompactBytes::prefetch`]); does nothing for other types.
    pub fn prefetch_value(&self) {
        if let Value::String(bytes) = &self.value {
            bytes.prefetch();
        }
    }

    /// Absolute expiry time in milliseconds since the Unix epoch, if the key has a TTL.
    pub fn expire_at_ms(&self) -> Option<u64> {
        self.expire_at_ms.map(NonZeroU64::get)
    }

    /// The epoch that was current when this entry was last written.
    pub fn version(&self) -> Epoch {
        let epoch = self.version.load(Ordering::Relaxed) >> access::CLOCK_BITS;
        // Only `pack_version` writes the word, always with a nonzero epoch.
        Epoch::from_raw(epoch)
    }

    /// The access clock (`access.rs`): seconds of the last access (LRU) or the LFU counter and
    /// its decay time.
    pub fn access_clock(&self) -> u32 {
        // The mask keeps 24 bits.
        (self.version.load(Ordering::Relaxed) & CLOCK_MASK) as u32
    }

    /// Records an access at `now_ms` in the clock, through a shared reference (a shard read
    /// lock is enough); the epoch stays as it is. Stores nothing when the clock does not move,
    /// so reading a hot key does not write its cache line on every read.
    pub fn touch(&self, now_ms: u64) {
        let word = self.version.load(Ordering::Relaxed);
        let clock = (word & CLOCK_MASK) as u32;
        let touched = access::touched(clock, now_ms);
        if touched != clock {
            let updated = (word & !CLOCK_MASK) | u64::from(touched);
            self.version.store(updated, Ordering::Relaxed);
        }
    }

    /// Returns true if and only if the entry has a TTL that has passed at `now_ms`. A key whose
    /// deadline equals `now_ms` is expired, as in Redis (`when <= now`).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at_ms().is_some_and(|at| at <= now_ms)
    }

    /// Splits the entry into its value and expiry.
    pub fn into_parts(self) -> (Value, Option<u64>) {
        let expire_at_ms = self.expire_at_ms();
        (self.value, expire_at_ms)
    }

    pub(crate) fn value_mut(&mut self) -> &mut Value {
        &mut self.value
    }

    pub(crate) fn set_expire_at_ms(&mut self, expire_at_ms: Option<u64>) {
        self.expire_at_ms = pack_expiry(expire_at_ms);
    }

    pub(crate) fn stamp(&mut self, epoch: Epoch) {
        debug_assert!(self.version() <= epoch, "entry version ahead of the clock");
        let word = self.version.get_mut();
        *word = pack_version(epoch, (*word & CLOCK_MASK) as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compact::CompactBytes;

    /// A shard bucket is a key and an entry in 64 bytes; the clock lives inside the version
    /// word so that it stays so.
    #[test]
    fn the_clock_does_not_grow_the_bucket() {
        assert_eq!(std::mem::size_of::<Entry>(), 40);
        assert_eq!(std::mem::size_of::<(CompactBytes, Entry)>(), 64);
    }

    /// A read's touch changes the clock bits only: the epoch a snapshot compares stays.
    #[test]
    fn touching_keeps_the_epoch_and_stamping_keeps_the_clock() {
        let epoch = Epoch::from_raw(Epoch::MAX);
        let mut entry = Entry::new(Value::String(CompactBytes::new()), None, epoch, 7);
        assert_eq!(entry.version(), epoch);
        assert_eq!(entry.access_clock(), 7);
        let later_ms = 1_000 * 5_000;
        entry.touch(later_ms);
        assert_eq!(entry.version(), epoch);
        assert_eq!(entry.access_clock(), access::touched(7, later_ms));
        let clock = entry.access_clock();
        let newer = Epoch::from_raw(Epoch::MAX);
        entry.stamp(newer);
        assert_eq!(entry.access_clock(), clock);
        // Equality ignores the clock: it is not part of what the entry holds.
        let mut twin = entry.clone();
        twin.set_access_clock(clock ^ 1);
        assert_eq!(twin, entry);
    }
}
