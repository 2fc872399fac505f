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
//!
//! Redis serves the clients a command woke before it answers that command, and goes on while
//! serving one makes another's key ready (`handleClientsBlockedOnKeys` loops): after
//! `RPUSH a x` replies, a chain `BLMOVE a b` → `BLMOVE b c` has run to its end. Here the
//! woken clients run on their own connections, so a [`WakeGroup`] ties them to the command
//! that woke them: `signal` adds each waiter it wakes to the group of the command running on
//! this thread (a thread-local, since a command runs from start to end on one thread without
//! yielding), a woken client's retry joins the group that woke it (so the next link of a chain
//! joins it too), and the connection that ran the command waits, before it replies, until
//! every member has run its retry ([`WakeGroup::settled`]).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
    /// The group of the command that woke this waiter, until its retry has run. Set by
    /// `signal` under the registry's lock, so none is set once the waiter is unregistered.
    group: Mutex<Option<Arc<WakeGroup>>>,
}

impl Waiter {
    /// Takes the group that woke this waiter, if one did since the last take. The caller
    /// must [`WakeGroup::complete`] it once it has run its retry (or given up waiting).
    pub(crate) fn take_group(&self) -> Option<Arc<WakeGroup>> {
        lock(&self.group).take()
    }
}

/// The longest a command's reply waits for the clients it woke to run their retries. It only
/// orders replies (a woken client that is slow to be scheduled, or one that ran into a bug,
/// must not hold the writer's reply back for ever).
const SETTLE_LIMIT: Duration = Duration::from_secs(1);

/// The clients one command woke, directly or through a chain of retries, that have not run
/// their retry yet.
#[derive(Debug, Default)]
pub(crate) struct WakeGroup {
    pending: AtomicUsize,
    settled: Notify,
}

impl WakeGroup {
    /// One member has run its retry (or will not run it).
    pub(crate) fn complete(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.settled.notify_waiters();
        }
    }

    /// Waits until every member has run its retry, or [`SETTLE_LIMIT`] has passed.
    pub(crate) async fn settled(&self) {
        let deadline = tokio::time::Instant::now() + SETTLE_LIMIT;
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pending.load(Ordering::Acquire) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

thread_local! {
    /// The group of the command running on this thread, once it has woken someone.
    static CURRENT_GROUP: RefCell<Option<Arc<WakeGroup>>> = const { RefCell::new(None) };
}

/// Takes the group of the command that just ran on this thread: Some if and only if it woke
/// a blocked client. Called after every command, so no group outlives its command.
pub(crate) fn take_woken() -> Option<Arc<WakeGroup>> {
    CURRENT_GROUP.with(|current| current.borrow_mut().take())
}

/// Returns true if and only if the commands run on this thread since the last [`take_woken`]
/// woke blocked clients (the connection must then wait for them before it goes on).
pub(crate) fn has_woken() -> bool {
    CURRENT_GROUP.with(|current| current.borrow().is_some())
}

/// Makes `group` the group of the command about to run on this thread: a woken client's
/// retry, whose own wake-ups belong to the command that woke it.
pub(crate) fn join_group(group: Arc<WakeGroup>) {
    CURRENT_GROUP.with(|current| *current.borrow_mut() = Some(group));
}

/// Adds `waiter` to the running command's group, unless a group already waits for it.
fn attach(waiter: &Waiter) {
    let mut slot = lock(&waiter.group);
    if slot.is_some() {
        return;
    }
    let group = CURRENT_GROUP
        .with(|current| Arc::clone(current.borrow_mut().get_or_insert_with(Arc::default)));
    group.pending.fetch_add(1, Ordering::AcqRel);
    *slot = Some(group);
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

    /// Wakes the waiter that follows `waiter` in the queue of `key` in database `db`, if any:
    /// `waiter` was woken for a write it could not use (its retry blocked again), so the write
    /// may be for the next in line.
    pub(crate) fn signal_next(&self, db: usize, key: &[u8], waiter: &Arc<Waiter>) {
        let waiting = lock(&self.waiting);
        let Some(queue) = waiting.get(&(db, Bytes::copy_from_slice(key))) else {
            return;
        };
        let next = queue
            .iter()
            .skip_while(|queued| !Arc::ptr_eq(queued, waiter))
            .nth(1);
        if let Some(next) = next {
            next.notify.notify_one();
            attach(next);
        }
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
            attach(first);
        }
    }
}
