//! Keys a writable replica's own clients gave a TTL (Redis's `slaveKeysWithExpire`,
//! `rememberSlaveKeyWithExpire` and `expireSlaveKeys` in expire.c).
//!
//! A replica expires nothing itself: its primary sends a DEL when a key expires there. A key
//! that a client of a writable replica (`replica-read-only no`) wrote with a TTL is unknown to
//! the primary, so no DEL ever comes for it. `cmd::dispatch` remembers such keys here
//! ([`remember_keys`]), and the active expiry thread, which runs no normal cycle on a replica,
//! removes the remembered keys whose TTL has passed ([`expire_cycle`]). Readers already see an
//! expired key as missing meanwhile, and a local write removes it on the way, as on any
//! replica.
//!
//! As in Redis this is best effort: the set forgets a key once it is gone or has no TTL, and it
//! is cleared when the dataset is replaced by a full sync, by FLUSHALL, and when the replica
//! is promoted (a primary expires every key itself). A key named by the command in the
//! client's selected database is remembered; the target of `MOVE` / `COPY ... DB` in another
//! database is not (it waits for a later write there, or for the primary).
//!
//! Lock order: the command gate, then this set's mutex, then shard locks. `dispatch` holds no
//! shard lock when it calls [`remember_keys`], and the cycle takes the gate before the set.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;

use crate::cmd::Command;
use crate::cmd::meta::Flags;
use crate::server::{Server, lock};

/// How many remembered keys one pass checks before it lets the gate go and looks at the clock.
const KEYS_PER_PASS: usize = 64;

/// The remembered keys, as (database, key), with the cycle's cursor: a cycle resumes after the
/// last key it checked, so every key is looked at however many there are.
#[derive(Debug, Default)]
pub(crate) struct LocalExpires {
    inner: Mutex<Inner>,
    /// The number of remembered keys, read without the lock by the expiry thread's tick.
    len: AtomicUsize,
}

#[derive(Debug, Default)]
struct Inner {
    keys: BTreeSet<(usize, Bytes)>,
    cursor: Option<(usize, Bytes)>,
}

impl LocalExpires {
    /// The number of keys remembered.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Forgets every key (a full sync's load, FLUSHALL, promotion).
    pub(crate) fn clear(&self) {
        let mut inner = lock(&self.inner);
        inner.keys.clear();
        inner.cursor = None;
        self.len.store(0, Ordering::Relaxed);
    }
}

/// Returns true if and only if a normal client's writes are accepted here as a replica's own:
/// this server is a replica with `replica-read-only no`.
fn writable_replica(server: &Server) -> bool {
    server.replication.replica.is_replica()
        && !server.tunables.replica_read_only.load(Ordering::Relaxed)
}

/// After a write command of a client other than the master's (`dispatch`, with no shard lock
/// held): remembers the keys it named that now have a TTL in `db`.
pub(crate) fn remember_keys(server: &Server, db: usize, command: &Command, argv: &[Bytes]) {
    if !command.has_flag(Flags::WRITE) || !writable_replica(server) {
        return;
    }
    let Some(database) = server.keyspace.db(db) else {
        return;
    };
    let mut with_ttl = Vec::new();
    for key in command.keys.keys(argv) {
        // At time 0 nothing reads as expired, so this read notes nothing for lazy expiry.
        let guard = database.read(&[key], 0);
        if guard
            .peek(key)
            .is_some_and(|entry| entry.expire_at_ms().is_some())
        {
            with_ttl.push(Bytes::copy_from_slice(key));
        }
    }
    if with_ttl.is_empty() {
        return;
    }
    let set = &server.replication.replica.local_expires;
    let mut inner = lock(&set.inner);
    for key in with_ttl {
        inner.keys.insert((db, key));
    }
    set.len.store(inner.keys.len(), Ordering::Relaxed);
}

/// One pass of the replica's expiry (the active expiry thread's tick on a replica): checks the
/// remembered keys from where the last pass stopped until `deadline`, removes those whose TTL
/// is past `now_ms` (counted in `expired_keys`, `expired` events, their DELs to the AOF), and
/// forgets those that are gone or have no TTL any more. Returns how many keys it removed.
pub(crate) fn expire_cycle(server: &Server, now_ms: u64, deadline: Instant) -> usize {
    let set = &server.replication.replica.local_expires;
    let mut removed = 0;
    let mut checked = 0;
    let total = set.len();
    while checked < total {
        let _gate = server.keyspace.gate().shared();
        let mut inner = lock(&set.inner);
        let batch: Vec<(usize, Bytes)> = {
            let after = inner.cursor.take();
            let mut range: Box<dyn Iterator<Item = &(usize, Bytes)>> = match &after {
                Some(cursor) => Box::new(
                    inner
                        .keys
                        .range((
                            std::ops::Bound::Excluded(cursor.clone()),
                            std::ops::Bound::Unbounded,
                        ))
                        .chain(inner.keys.iter()),
                ),
                None => Box::new(inner.keys.iter()),
            };
            // A small set wraps round within one pass: never check a key twice in a cycle.
            (&mut range)
                .take(KEYS_PER_PASS.min(total - checked))
                .cloned()
                .collect()
        };
        if batch.is_empty() {
            break;
        }
        let mut expired_keys = Vec::new();
        for (db, key) in &batch {
            checked += 1;
            let Some(database) = server.keyspace.db(*db) else {
                inner.keys.remove(&(*db, key.clone()));
                continue;
            };
            let expire_at = database
                .read(&[&key[..]], 0)
                .peek(key)
                .and_then(forkless_storage::Entry::expire_at_ms);
            match expire_at {
                Some(at) if at > now_ms => {}
                Some(_) => {
                    let mut guard = database.write(&[&key[..]], now_ms);
                    let _ = guard.get(key);
                    drop(guard);
                    crate::effects::after_replica_expiry(server);
                    expired_keys.push((*db, key.clone()));
                    inner.keys.remove(&(*db, key.clone()));
                    removed += 1;
                }
                None => {
                    inner.keys.remove(&(*db, key.clone()));
                }
            }
        }
        inner.cursor = batch.last().cloned();
        set.len.store(inner.keys.len(), Ordering::Relaxed);
        drop(inner);
        if server.tracking.active() && !expired_keys.is_empty() {
            let keys: Vec<&[u8]> = expired_keys.iter().map(|(_, key)| &key[..]).collect();
            crate::cmd::tracking::invalidate(server, 0, &keys);
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    removed
}
