//! Key events the write path sees and only it can: a key created where none was (Redis's
//! `new` notification, sent from `dbAdd`), and a key removed because its TTL passed (lazy
//! expiry in a write guard, or the active expiry cycle: Redis's `expired`). The server
//! installs a [`KeyEvents`] sink and says which events it wants; the storage crate knows
//! nothing of what the sink does with them (the server publishes keyspace notifications).
//!
//! The cost when nobody wants an event is one relaxed load of `wanted` where a key is created
//! or expires. The sink is called with the shard's lock held, so it must not touch the
//! keyspace; it may take locks of its own that are never held while taking a shard lock.
//!
//! Plain `std` atomics rather than `crate::sync`'s: the mask is an independent flag that
//! orders nothing, so the loom models have nothing to explore here.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

/// Receives the key events the server asked for.
pub trait KeyEvents: Send + Sync {
    /// `key` of database `db` was removed because its TTL passed.
    fn expired(&self, db: usize, key: &[u8]);
    /// `key` of database `db` was created (it held no live value before this write).
    fn created(&self, db: usize, key: &[u8]);
}

/// [`Keyspace::want_key_events`](crate::Keyspace::want_key_events) bit: report expirations.
pub const EXPIRED: u8 = 1;
/// [`Keyspace::want_key_events`](crate::Keyspace::want_key_events) bit: report creations.
pub const CREATED: u8 = 2;

/// The installed sink and the events it wants.
#[derive(Default)]
pub(crate) struct EventHook {
    wanted: AtomicU8,
    sink: OnceLock<Box<dyn KeyEvents>>,
}

impl fmt::Debug for EventHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventHook")
            .field("wanted", &self.wanted.load(Ordering::Relaxed))
            .field("installed", &self.sink.get().is_some())
            .finish()
    }
}

impl EventHook {
    /// Installs the sink; returns false if one was already installed (it stays).
    pub(crate) fn install(&self, sink: Box<dyn KeyEvents>) -> bool {
        self.sink.set(sink).is_ok()
    }

    pub(crate) fn want(&self, mask: u8) {
        self.wanted.store(mask, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn expired(&self, db: usize, key: &[u8]) {
        if self.wanted.load(Ordering::Relaxed) & EXPIRED != 0 {
            if let Some(sink) = self.sink.get() {
                sink.expired(db, key);
            }
        }
    }

    #[inline]
    pub(crate) fn created(&self, db: usize, key: &[u8]) {
        if self.wanted.load(Ordering::Relaxed) & CREATED != 0 {
            if let Some(sink) = self.sink.get() {
                sink.created(db, key);
            }
        }
    }
}
