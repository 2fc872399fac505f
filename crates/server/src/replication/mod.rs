//! Replication.
//!
//! MERGE NOTE (branch `replr`): this file is the replica side's minimal version. The primary
//! side (branch `replp`) owns this module; when the two meet, keep `replp`'s `mod.rs` and carry
//! over from here: `pub(crate) mod replica;`, the `replica` field of [`Replication`], and the
//! calls the replica makes into the shared state (`set_ids_from_master`, `advance_offset`,
//! `offset`, `replid`, `shift_replid`, `ids`). The replica side needs nothing else from here.
//!
//! # Layout
//! - `mod.rs`: the replication IDs and offset every role shares (Redis's `server.replid`,
//!   `replid2`, `master_repl_offset`, `second_replid_offset`).
//! - `replica.rs`: forkless as a replica: REPLICAOF / SLAVEOF, ROLE's replica form, INFO's
//!   replica fields, the read-only and stale-data refusals; `replica/link.rs` the handshake,
//!   the RDB transfer and load and the applied stream; `replica/transfer.rs` the RDB's framing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::server::lock;

pub(crate) mod replica;

/// A replication ID: 40 hex characters.
pub(crate) const NO_REPLID: &str = "0000000000000000000000000000000000000000";

/// The IDs of the replication history this server is in, and where the second one ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplIds {
    /// `master_replid`: the history this server's offset counts in.
    pub(crate) replid: String,
    /// `master_replid2`: the history before the last switch (a promotion), valid up to
    /// `second_repl_offset - 1`; [`NO_REPLID`] when there was none.
    pub(crate) replid2: String,
    /// `second_repl_offset`: -1 when there is no second ID.
    pub(crate) second_repl_offset: i64,
}

/// Shared replication state: the IDs and the offset. A std mutex for the IDs (read by INFO,
/// ROLE and the handshake, written on a sync or a promotion: never per command) and an atomic
/// for the offset, which the replica's link advances after every command it applies.
#[derive(Debug)]
pub(crate) struct Replication {
    ids: Mutex<ReplIds>,
    /// `master_repl_offset`: on a replica, the bytes of the primary's stream applied so far
    /// (in the primary's numbering); on a primary, what it has sent into its stream.
    offset: AtomicI64,
    /// The replica side's state.
    pub(crate) replica: replica::Replica,
}

impl Default for Replication {
    fn default() -> Self {
        Replication {
            ids: Mutex::new(ReplIds {
                replid: random_replid(),
                replid2: NO_REPLID.to_owned(),
                second_repl_offset: -1,
            }),
            offset: AtomicI64::new(0),
            replica: replica::Replica::default(),
        }
    }
}

impl Replication {
    pub(crate) fn ids(&self) -> ReplIds {
        lock(&self.ids).clone()
    }

    pub(crate) fn replid(&self) -> String {
        lock(&self.ids).replid.clone()
    }

    pub(crate) fn offset(&self) -> i64 {
        self.offset.load(Ordering::Acquire)
    }

    /// Adds the bytes of one applied command to the offset.
    pub(crate) fn advance_offset(&self, bytes: u64) {
        self.offset
            .fetch_add(i64::try_from(bytes).unwrap_or(i64::MAX), Ordering::AcqRel);
    }

    /// After `+FULLRESYNC <replid> <offset>`: this server's history is the primary's from
    /// now on, with no second ID (Redis's `readSyncBulkPayload`).
    pub(crate) fn set_ids_from_master(&self, replid: &str, offset: i64) {
        let mut ids = lock(&self.ids);
        replid.clone_into(&mut ids.replid);
        NO_REPLID.clone_into(&mut ids.replid2);
        ids.second_repl_offset = -1;
        self.offset.store(offset, Ordering::Release);
    }

    /// After `+CONTINUE <new replid>` from a primary whose ID changed (it was promoted): the
    /// old ID stays valid up to the current offset, as Redis's `slaveTryPartialResynchronization`.
    pub(crate) fn continue_with_new_replid(&self, new_replid: &str) {
        let mut ids = lock(&self.ids);
        if ids.replid == new_replid {
            return;
        }
        ids.replid2 = std::mem::replace(&mut ids.replid, new_replid.to_owned());
        ids.second_repl_offset = self.offset() + 1;
    }

    /// A new history starts here (promotion by REPLICAOF NO ONE): the current ID becomes the
    /// second one, valid up to the current offset, and a fresh ID is drawn, as Redis's
    /// `shiftReplicationId`. MERGE NOTE: the primary side exposes the same operation; keep one.
    pub(crate) fn shift_replid(&self) {
        let mut ids = lock(&self.ids);
        ids.replid2 = std::mem::replace(&mut ids.replid, random_replid());
        ids.second_repl_offset = self.offset() + 1;
    }
}

/// 40 random hex characters, as Redis's `getRandomHexChars`.
pub(crate) fn random_replid() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..40)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_replid_keeps_the_old_history_up_to_the_offset() {
        let replication = Replication::default();
        replication.set_ids_from_master(&"a".repeat(40), 100);
        replication.advance_offset(25);
        replication.shift_replid();
        let ids = replication.ids();
        assert_eq!(ids.replid2, "a".repeat(40));
        assert_eq!(ids.second_repl_offset, 126);
        assert_ne!(ids.replid, "a".repeat(40));
        assert_eq!(ids.replid.len(), 40);
        assert_eq!(replication.offset(), 125);
    }

    #[test]
    fn continue_with_a_new_replid_keeps_the_old_one_second() {
        let replication = Replication::default();
        replication.set_ids_from_master(&"a".repeat(40), 10);
        replication.continue_with_new_replid(&"a".repeat(40));
        assert_eq!(replication.ids().replid2, NO_REPLID);
        replication.continue_with_new_replid(&"b".repeat(40));
        let ids = replication.ids();
        assert_eq!((ids.replid, ids.replid2), ("b".repeat(40), "a".repeat(40)));
        assert_eq!(ids.second_repl_offset, 11);
    }
}
