//! WATCH: which clients watch which keys of a shard, fired by every change.
//!
//! A watching client owns a [`WatchFlag`]. `Db::watch` puts a clone of it in the watcher list of
//! the key's shard; every change to that key (write, delete, expiry, flush) goes through
//! `touch`, which sets the flag of each watcher. EXEC aborts if its flag is set. The list
//! lives in the shard, under the lock the writer already holds, and costs one emptiness check
//! per write when nobody watches.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

/// A client's "a watched key changed" flag.
#[derive(Debug, Clone, Default)]
pub struct WatchFlag(Arc<AtomicBool>);

impl WatchFlag {
    /// Returns true if and only if a watched key changed since the flag was last reset.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Clears the flag (UNWATCH, EXEC, DISCARD).
    pub fn reset(&self) {
        self.0.store(false, Ordering::Release);
    }

    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn same(&self, other: &WatchFlag) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The watcher lists of one shard.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    by_key: HashMap<Bytes, Vec<WatchFlag>>,
}

impl Watchers {
    /// Fires the watchers of `key`.
    pub(crate) fn touch(&self, key: &[u8]) {
        if self.by_key.is_empty() {
            return;
        }
        if let Some(flags) = self.by_key.get(key) {
            flags.iter().for_each(WatchFlag::set);
        }
    }

    /// Fires the watchers of every watched key for which `changed` returns true (SWAPDB, and
    /// FLUSHDB/FLUSHALL for the keys they remove).
    pub(crate) fn touch_where(&self, mut changed: impl FnMut(&[u8]) -> bool) {
        for (key, flags) in &self.by_key {
            if changed(key) {
                flags.iter().for_each(WatchFlag::set);
            }
        }
    }

    pub(crate) fn add(&mut self, key: &[u8], flag: &WatchFlag) {
        let flags = self.by_key.entry(Bytes::copy_from_slice(key)).or_default();
        if !flags.iter().any(|f| f.same(flag)) {
            flags.push(flag.clone());
        }
    }

    pub(crate) fn remove(&mut self, key: &[u8], flag: &WatchFlag) {
        if let Some(flags) = self.by_key.get_mut(key) {
            flags.retain(|f| !f.same(flag));
            if flags.is_empty() {
                self.by_key.remove(key);
            }
        }
    }
}
