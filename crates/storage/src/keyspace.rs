//! The keyspace: every logical database, the epoch clock they share, and the active expiry cycle.
//! The snapshot protocol's part of it (the save slot, the cut, the traversal) is in
//! `snapshot/`.
//!
//! Not quite free of clocks: the active expiry cycle reads `Instant::now()` to stop at its
//! deadline. Expiry itself still goes by the `now_ms` the caller passes.

use std::sync::Arc;
use std::time::Instant;

use crate::compact::CompactBytes;
use crate::db::{Db, Flushed, N_SHARDS, Shared};
use crate::snapshot::SaveOwner;
use crate::sync::{self, Mutex};
use crate::version::Epoch;

/// Keys removed per shard visit of the active expiry cycle, so a shard lock is held briefly.
const EXPIRE_KEYS_PER_VISIT: usize = 64;

/// All databases of one server.
#[derive(Debug)]
pub struct Keyspace {
    pub(crate) dbs: Box<[Db]>,
    pub(crate) shared: Arc<Shared>,
    /// Where the next active expiry cycle resumes, as (db, shard). A mutex because only the one
    /// expiry thread takes it, once per cycle.
    expire_cursor: Mutex<(usize, usize)>,
    /// The one owner of "a save is running" and of the running save's cut (`snapshot/`).
    pub(crate) saves: Arc<SaveOwner>,
    gate: crate::gate::CommandGate,
}

/// What one active expiry cycle did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpireCycle {
    /// Keys removed.
    pub removed: usize,
    /// Returns true if and only if the cycle stopped at its deadline with keys still due.
    pub timed_out: bool,
}

impl Keyspace {
    /// A keyspace with `n_dbs` empty databases (at least one).
    pub fn new(n_dbs: usize) -> Keyspace {
        Keyspace::with_shared(n_dbs, Shared::default())
    }

    /// An empty keyspace with as many databases as this one and the same key hasher, sharing
    /// nothing else (no clock, no effect numbering, no event sink, no save slot): something
    /// can be loaded into it while this one serves, and [`Keyspace::swap_contents`] then
    /// exchanges the two (a replica's `repl-diskless-load swapdb`).
    pub fn sibling(&self) -> Keyspace {
        Keyspace::with_shared(self.dbs.len(), self.shared.sibling())
    }

    fn with_shared(n_dbs: usize, shared: Shared) -> Keyspace {
        let shared = Arc::new(shared);
        let dbs = (0..n_dbs.max(1))
            .map(|index| Db::new(Arc::clone(&shared), index))
            .collect();
        Keyspace {
            dbs,
            shared,
            expire_cursor: Mutex::new((0, 0)),
            saves: Arc::new(SaveOwner::default()),
            gate: crate::gate::CommandGate::default(),
        }
    }

    /// Installs the sink of key events (creations and expirations); returns false if one was
    /// already installed. Nothing is reported until [`Keyspace::want_key_events`] asks.
    pub fn set_key_events(&self, sink: Box<dyn crate::events::KeyEvents>) -> bool {
        self.shared.events.install(sink)
    }

    /// Which key events to report to the sink: a mask of [`crate::events::EXPIRED`] and
    /// [`crate::events::CREATED`]; 0 reports none.
    pub fn want_key_events(&self, mask: u8) {
        self.shared.events.want(mask);
    }

    /// The command gate: shared by every command, exclusive for a transaction.
    pub fn gate(&self) -> &crate::gate::CommandGate {
        &self.gate
    }

    /// Database `idx`, or None if there is no such database.
    pub fn db(&self, idx: usize) -> Option<&Db> {
        self.dbs.get(idx)
    }

    /// All databases, in index order.
    pub fn dbs(&self) -> &[Db] {
        &self.dbs
    }

    /// The current epoch.
    pub fn epoch(&self) -> Epoch {
        self.shared.clock.current()
    }

    /// Changes made to the whole keyspace since it was created (the base of Redis's
    /// `rdb_changes_since_last_save`).
    pub fn dirty(&self) -> u64 {
        self.dbs.iter().map(Db::dirty).sum()
    }

    /// Keys removed because their TTL passed, lazily or by the active cycle.
    pub fn expired_keys(&self) -> u64 {
        self.dbs.iter().map(Db::expired_keys).sum()
    }

    /// Empties every database atomically: all shards of all databases are locked (database by
    /// database, shard by shard, the global lock order) before any is cleared. The removed data
    /// is returned so the caller decides where it is freed.
    pub fn flush_all(&self, now_ms: u64) -> Flushed {
        let mut guards: Vec<_> = self.dbs.iter().map(|db| db.write_all(now_ms)).collect();
        let mut flushed = Flushed::default();
        for guard in &mut guards {
            flushed.absorb(guard.clear());
        }
        flushed
    }

    /// One active expiry cycle: walks shards round-robin from where the last cycle stopped,
    /// removing keys whose deadline is `<= now_ms`, until every shard has been visited with
    /// nothing left due or `deadline` passes. Unlike Redis's sampling, the per-shard deadline
    /// index finds every expired key, so memory of expired keys is reclaimed in bounded time.
    pub fn active_expire_cycle(&self, now_ms: u64, deadline: Instant) -> ExpireCycle {
        self.active_expire_cycle_collecting(now_ms, deadline, None)
    }

    /// [`Keyspace::active_expire_cycle`], also collecting the `(database, key)` of every key
    /// it removed into `expired` when given (for clients told about expired keys, such as
    /// CLIENT TRACKING's).
    pub fn active_expire_cycle_collecting(
        &self,
        now_ms: u64,
        deadline: Instant,
        mut expired: Option<&mut Vec<(usize, CompactBytes)>>,
    ) -> ExpireCycle {
        let mut cursor = sync::lock(&self.expire_cursor);
        let n_slots = self.dbs.len() * N_SHARDS;
        let mut cycle = ExpireCycle::default();
        let mut visited_clean = 0;
        while visited_clean < n_slots {
            let (db_idx, shard_idx) = *cursor;
            let Some(db) = self.dbs.get(db_idx) else {
                *cursor = (0, 0);
                continue;
            };
            let mut keys = Vec::new();
            let collect = expired.is_some().then_some(&mut keys);
            // Each visit holds the command gate shared, as a command does, so no key expires
            // in the middle of a transaction: EXEC's effects are one unit (see `effect.rs`).
            let (removed, more_due) = {
                let _gate = self.gate.shared();
                db.expire_shard(shard_idx, now_ms, EXPIRE_KEYS_PER_VISIT, collect)
            };
            if let Some(expired) = expired.as_deref_mut() {
                expired.extend(keys.into_iter().map(|key| (db_idx, key)));
            }
            cycle.removed += removed;
            if more_due {
                visited_clean = 0;
            } else {
                visited_clean += 1;
                *cursor = if shard_idx + 1 < N_SHARDS {
                    (db_idx, shard_idx + 1)
                } else {
                    ((db_idx + 1) % self.dbs.len(), 0)
                };
            }
            if Instant::now() >= deadline {
                cycle.timed_out = more_due || visited_clean < n_slots;
                break;
            }
        }
        cycle
    }
}
