//! One key's record: its value, its expiry and the epoch of its last write.

use std::num::NonZeroU64;

use crate::value::Value;
use crate::version::Epoch;

/// A key's record. Fields are private so that every change goes through `WriteGuard`, the single
/// place that stamps [`Entry::version`] (and, with the snapshot, preserves pre-cut values).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    value: Value,
    /// Absolute expiry, ms since the Unix epoch. A deadline of 0 is kept as 1: both are long
    /// past, and the niche keeps the field one word.
    expire_at_ms: Option<NonZeroU64>,
    version: Epoch,
}

fn pack_expiry(expire_at_ms: Option<u64>) -> Option<NonZeroU64> {
    expire_at_ms.map(|at| NonZeroU64::new(at).unwrap_or(NonZeroU64::MIN))
}

impl Entry {
    pub(crate) fn new(value: Value, expire_at_ms: Option<u64>, version: Epoch) -> Entry {
        Entry {
            value,
            expire_at_ms: pack_expiry(expire_at_ms),
            version,
        }
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
        self.version
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
        debug_assert!(self.version <= epoch, "entry version ahead of the clock");
        self.version = epoch;
    }
}
