//! The replication fields of a dump, as Redis 7.0 writes and reads them (`repl-stream-db`,
//! `repl-id`, `repl-offset`; Redis's `rdbPopulateSaveInfo` and `loadDataFromDisk`): where a
//! save's cut falls in the replication stream, and, at startup, the replication state restored
//! from the dump, so that a restarted replica resumes its primary's stream with `+CONTINUE`
//! and a restarted primary lets its replicas do the same.
//!
//! Which saves carry them, as in Redis: a primary's while it has a backlog; a replica's once
//! its dataset is the primary's up to its offset (`psync_possible`: after a sync, or with a
//! cached master of its own history). Never the AOF's base.
//!
//! Where the cut falls: on a replica the save's cut is taken with the master link's
//! `apply_lock` held, so the stream's end is exactly what the cut holds. On a primary the
//! effects are held across the cut (as for a full sync) and a [`Mark`] placed at the cut's
//! number: the stream's end when the first effect at or after it is rendered, or when every
//! effect below it has been, is the offset of the dump.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use forkless_snapshot::format::ReplAux;
use forkless_storage::effect::Seq;

use super::{NO_REPLID, Replication, State, backlog, backlog_size, random_replid};
use crate::effects::Renderer;
use crate::server::{Server, lock};

/// A primary's save whose cut is taken and whose offset is not yet known.
#[derive(Debug)]
pub(crate) struct Mark {
    id: u64,
    /// Effects numbered from here on are after the cut.
    seq: Seq,
    /// Set at the crossing: the fields to write (None: the backlog went meanwhile).
    crossed: Option<Option<ReplAux>>,
}

/// What a save writes as its replication fields, decided at its cut.
#[derive(Debug)]
pub(crate) enum SaveRepl {
    /// No replication history: no fields (a primary without a backlog).
    None,
    /// Known at the cut (a replica).
    Ready(ReplAux),
    /// A primary's: known once the stream reaches the cut ([`Replication::save_aux`]).
    Pending(u64),
}

/// Held across a save's cut ([`Replication::before_save_cut`]); [`SaveCut::after`] says what
/// the save writes. Dropped without `after`, it lets held effects go.
pub(crate) struct SaveCut<'a> {
    replication: &'a Replication,
    kind: CutKind<'a>,
}

enum CutKind<'a> {
    None,
    Replica(std::sync::MutexGuard<'a, ()>),
    /// Effects are held until `after` (or the drop).
    Primary,
}

/// The fields as the stream stands: the renderer's database, the ID, the stream's end; None
/// without a backlog or on a replica (whose stream is its master's, not rendered here).
fn fields_now(state: &State) -> Option<ReplAux> {
    (state.backlog_active && !state.role_replica).then(|| ReplAux {
        stream_db: state
            .renderer
            .selected()
            .and_then(|db| u32::try_from(db).ok())
            .unwrap_or(0),
        replid: state.replid.clone(),
        offset: state.stream.end(),
    })
}

/// Called by the propagator before it renders the effect numbered `seq`: the saves whose cut
/// it is the first effect after cross here.
pub(super) fn cross_marks(state: &mut State, seq: Seq) {
    if state.marks.is_empty() {
        return;
    }
    let fields = fields_now(state);
    for mark in &mut state.marks {
        if mark.crossed.is_none() && seq >= mark.seq {
            mark.crossed = Some(fields.clone());
        }
    }
}

impl SaveCut<'_> {
    /// After the cut (numbered `seq`; None when no cut was taken): what the save writes.
    pub(crate) fn after(mut self, seq: Option<Seq>) -> SaveRepl {
        let replication = self.replication;
        match std::mem::replace(&mut self.kind, CutKind::None) {
            CutKind::None => SaveRepl::None,
            CutKind::Replica(applying) => {
                let repl = seq.map_or(SaveRepl::None, |_| {
                    let state = replication.state();
                    SaveRepl::Ready(ReplAux {
                        stream_db: u32::try_from(
                            replication.replica.master_db.load(Ordering::Relaxed),
                        )
                        .unwrap_or(0),
                        replid: state.replid.clone(),
                        offset: state.stream.end(),
                    })
                });
                drop(applying);
                repl
            }
            CutKind::Primary => {
                let Some(seq) = seq else {
                    replication.release_effects(None);
                    return SaveRepl::None;
                };
                let id = {
                    let mut state = replication.state();
                    state.next_mark += 1;
                    let id = state.next_mark;
                    state.marks.push(Mark {
                        id,
                        seq,
                        crossed: None,
                    });
                    id
                };
                // The held effects are rendered now, the first after the cut crossing the mark.
                replication.release_effects(None);
                SaveRepl::Pending(id)
            }
        }
    }
}

impl Drop for SaveCut<'_> {
    fn drop(&mut self) {
        if matches!(self.kind, CutKind::Primary) {
            self.replication.release_effects(None);
        }
    }
}

impl Replication {
    /// Before a save's cut (SAVE, BGSAVE, the save before shutdown): hold the result across
    /// the cut, then call [`SaveCut::after`]. Taken before the persistence state's lock: the
    /// master link takes the apply lock before any command's locks.
    pub(crate) fn before_save_cut(&self) -> SaveCut<'_> {
        let (role_replica, backlog_active) = {
            let state = self.state();
            (state.role_replica, state.backlog_active)
        };
        let kind = if role_replica {
            if self.replica.psync_possible.load(Ordering::Acquire) {
                self.try_apply_lock()
                    .map_or(CutKind::None, CutKind::Replica)
            } else {
                CutKind::None
            }
        } else if backlog_active {
            self.hold_effects();
            CutKind::Primary
        } else {
            CutKind::None
        };
        SaveCut {
            replication: self,
            kind,
        }
    }

    /// The master link's apply lock, for a save's cut on a replica. The caller holds the
    /// command gate (a command, or the final save), and the link takes the gate while it holds
    /// this lock: waiting for it could deadlock behind an exclusive gate the link waits for.
    /// So it is tried for a short while (the link holds it for one command at a time); None
    /// after that, and the save goes without replication fields (a full sync after a restart).
    fn try_apply_lock(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        let deadline = Instant::now() + Duration::from_millis(50);
        loop {
            match self.shared.apply_lock.try_lock() {
                Ok(guard) => return Some(guard),
                Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                    return Some(poisoned.into_inner());
                }
                Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    tracing::warn!(
                        "The save is written without replication info: the master link was \
                         applying a command"
                    );
                    return None;
                }
            }
        }
    }

    /// The fields a save writes, waiting (briefly: the effects below the cut are published
    /// right after their commands) for a primary's stream to reach the cut.
    pub(crate) fn save_aux(&self, server: &Server, repl: SaveRepl) -> Option<ReplAux> {
        let id = match repl {
            SaveRepl::None => return None,
            SaveRepl::Ready(fields) => return Some(fields),
            SaveRepl::Pending(id) => id,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Read before the state lock: the effect stream's lock comes first.
            let effects_next = server.effects.next();
            {
                let mut state = self.state();
                let idx = state.marks.iter().position(|mark| mark.id == id)?;
                let ready = match &state.marks[idx].crossed {
                    Some(fields) => Some(fields.clone()),
                    // Every effect below the cut has been rendered and none after it.
                    None if state.early.is_none() && effects_next >= state.marks[idx].seq => {
                        Some(fields_now(&state))
                    }
                    None => None,
                };
                if let Some(fields) = ready {
                    state.marks.swap_remove(idx);
                    return fields;
                }
                if Instant::now() > deadline {
                    state.marks.swap_remove(idx);
                    tracing::warn!(
                        "The save is written without replication info: the effects before its \
                         cut did not arrive"
                    );
                    return None;
                }
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// At startup, after the dump loaded with valid replication fields (Redis's
    /// `loadDataFromDisk`). A replica (`replicaof` configured) takes the ID and offset as its
    /// own and may resume with `PSYNC <id> <offset+1>`, its master client in the stream's
    /// database; a primary draws a new ID, keeps the file's as `master_replid2` valid up to
    /// `offset + 1`, and starts its backlog at the offset, so its replicas continue.
    pub(crate) fn restore_from_dump(&self, server: &Server, fields: &ReplAux, as_replica: bool) {
        if as_replica {
            self.set_role_replica();
            self.reset_after_full_sync(server, &fields.replid, fields.offset);
            self.replica.master_db.store(
                usize::try_from(fields.stream_db).unwrap_or(0),
                Ordering::Relaxed,
            );
            self.replica.psync_possible.store(true, Ordering::Release);
            tracing::info!(
                "Restored the replication ID {} and offset {} from the RDB file: a partial \
                 resynchronization with the master may be possible",
                fields.replid,
                fields.offset
            );
            return;
        }
        let _switch = lock(&self.shared.backlog_switch);
        let size = backlog_size(server);
        {
            let mut state = self.state();
            state.replid = random_replid();
            state.replid2.clone_from(&fields.replid);
            state.second_repl_offset = i64::try_from(fields.offset)
                .unwrap_or(i64::MAX)
                .saturating_add(1);
            state.stream = backlog::Stream::new(fields.offset, size);
            state.backlog_active = true;
            state.renderer = Renderer::default();
            state.no_replicas_since = Some(Instant::now());
            tracing::info!(
                "Restored the replication info from the RDB file: my new replication IDs are \
                 '{}' and '{}', the second valid up to offset {}",
                state.replid,
                state.replid2,
                state.second_repl_offset
            );
            debug_assert_ne!(state.replid2, NO_REPLID);
        }
        self.attach_consumer(server);
    }

    /// After [`Replication::restore_from_dump`] on a primary: a DEL for each key that had
    /// expired in the dump (and was not loaded), in the backlog, as Redis feeds them while it
    /// loads, so the replicas that continue drop them too. The renderer selects the database
    /// again before the next command.
    pub(crate) fn feed_expired_dels(&self, expired: &[(u32, bytes::Bytes)]) {
        if expired.is_empty() {
            return;
        }
        let mut bytes = Vec::new();
        let mut selected = None;
        for (db, key) in expired {
            if selected != Some(*db) {
                let db_text = db.to_string();
                crate::aof::writer::encode(
                    &mut bytes,
                    &[
                        bytes::Bytes::from_static(b"SELECT"),
                        bytes::Bytes::from(db_text),
                    ],
                );
                selected = Some(*db);
            }
            crate::aof::writer::encode(
                &mut bytes,
                &[bytes::Bytes::from_static(b"DEL"), key.clone()],
            );
        }
        self.append_raw(&bytes);
        self.state().renderer = Renderer::default();
    }
}
