//! Blocking commands (BLPOP and friends): who waits on which key, and waking them in arrival
//! order.
//!
//! A blocking handler that finds nothing to pop sets `Client::blocked` instead of replying. The
//! connection then registers a [`Waiter`] at the back of the queue of every key it waits on and
//! sleeps until woken, timed out, or killed; when woken it runs the command again, which either
//! replies or blocks again. After any write command, `cmd::dispatch` signals the keys it touched:
//! the first waiter of each key is woken. A waiter that got what it waited for signals its keys
//! again, so further elements reach the next waiter in line: clients are served in the order
//! they blocked, as in Redis.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::server::lock;

/// What a blocked client replies when its timeout passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeoutReply {
    /// A null array (BLPOP, BRPOP, BLMPOP, BZPOPMIN...).
    NullArray,
    /// A null bulk string (BLMOVE, BRPOPLPUSH).
    Null,
}

/// A command waiting for data.
#[derive(Debug, Clone)]
pub(crate) struct BlockRequest {
    pub(crate) db: usize,
    pub(crate) keys: Vec<Bytes>,
    /// None waits forever (timeout 0).
    pub(crate) deadline: Option<Instant>,
    pub(crate) on_timeout: TimeoutReply,
    /// The argv a retry runs instead of the command's own, when blocking fixed something the
    /// first run resolved (XREAD's `$` becomes the last id it saw).
    pub(crate) retry_argv: Option<Vec<Bytes>>,
}

/// One blocked connection.
#[derive(Debug, Default)]
pub(crate) struct Waiter {
    pub(crate) notify: Notify,
}

/// The clients waiting on one key, oldest first.
type Queue = VecDeque<Arc<Waiter>>;

/// Waiters per (database, key), oldest first. A std mutex, held for map operations only.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    waiting: Mutex<HashMap<(usize, Bytes), Queue>>,
    /// Number of registered (key, waiter) pairs, so writes skip the mutex when nobody waits.
    n_waiting: AtomicUsize,
    /// Clients blocked right now, for INFO `blocked_clients`.
    n_blocked: AtomicUsize,
}

impl Registry {
    /// Returns true if and only if some client is blocked.
    pub(crate) fn has_waiters(&self) -> bool {
        self.n_waiting.load(Ordering::Acquire) > 0
    }

    /// Clients blocked right now.
    pub(crate) fn blocked_clients(&self) -> usize {
        self.n_blocked.load(Ordering::Relaxed)
    }

    pub(crate) fn register(&self, request: &BlockRequest, waiter: &Arc<Waiter>) {
        self.n_blocked.fetch_add(1, Ordering::Relaxed);
        let mut waiting = lock(&self.waiting);
        for key in &request.keys {
            waiting
                .entry((request.db, key.clone()))
                .or_default()
                .push_back(Arc::clone(waiter));
            self.n_waiting.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn unregister(&self, request: &BlockRequest, waiter: &Arc<Waiter>) {
        self.n_blocked.fetch_sub(1, Ordering::Relaxed);
        let mut waiting = lock(&self.waiting);
        for key in &request.keys {
            let slot = (request.db, key.clone());
            if let Some(queue) = waiting.get_mut(&slot) {
                let before = queue.len();
                queue.retain(|w| !Arc::ptr_eq(w, waiter));
                self.n_waiting
                    .fetch_sub(before - queue.len(), Ordering::AcqRel);
                if queue.is_empty() {
                    waiting.remove(&slot);
                }
            }
        }
    }

    /// The keys of database `db` that some client waits on.
    pub(crate) fn waiting_keys(&self, db: usize) -> Vec<Bytes> {
        if !self.has_waiters() {
            return Vec::new();
        }
        lock(&self.waiting)
            .keys()
            .filter(|(waiter_db, _)| *waiter_db == db)
            .map(|(_, key)| key.clone())
            .collect()
    }

    /// Wakes the oldest waiter of `key` in database `db`, if any.
    pub(crate) fn signal(&self, db: usize, key: &[u8]) {
        if !self.has_waiters() {
            return;
        }
        let waiting = lock(&self.waiting);
        if let Some(first) = waiting
            .get(&(db, Bytes::copy_from_slice(key)))
            .and_then(VecDeque::front)
        {
            first.notify.notify_one();
        }
    }
}
