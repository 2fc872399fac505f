//! The forkless keyspace: logical databases of typed values with expiry, every entry stamped
//! with the epoch of its last write so that a snapshot can save one point in time while clients
//! keep writing.
//!
//! # Layout
//! - `keyspace`: [`Keyspace`], all databases, the shared epoch clock, the active expiry cycle.
//! - `db`: [`Db`], a fixed array of shards, and the guards ([`ReadGuard`], [`WriteGuard`],
//!   [`EntryMut`]) through which commands lock their keys and read or change them.
//! - `shard`: one lock's data, a hash table of entries and an index of expiry deadlines.
//! - `entry`, `value`: [`Entry`] (value, expiry, version and access clock in one word) and
//!   [`Value`].
//! - `access`: the per-key access clocks (Redis's 24-bit LRU clock or LFU counter) that
//!   eviction, OBJECT IDLETIME and OBJECT FREQ read.
//! - `types`: the collection types (list, hash, set, sorted set).
//! - `version`: [`Epoch`] and the clock, with the versioning rules the snapshot relies on.
//! - `effect`: [`effect::Seq`], the numbering of units of change for the effect stream (AOF,
//!   replicas), and the per-thread recorder through which the server learns a command's number.
//! - `snapshot`: the snapshot protocol in one place: the save slot (the single owner of "a save
//!   is running"), the cut, the traversal step and shard images, and (`snapshot/retain.rs`)
//!   the on-write hook that keeps pre-cut versions for a running snapshot.
//! - `pattern`: Redis glob matching, for KEYS, SCAN and CONFIG GET.
//! - `gate`: [`CommandGate`], which lets a transaction run alone.
//! - `freeze`: [`FrozenKeyspace`], every shard held for reading at once (fork-mode saves).
//! - `watch`: WATCH's per-shard watcher lists, fired from the write path.
//! - `swap`: SWAPDB, two databases exchanging their contents in one step.
//!
//! # Not here
//! No I/O of any kind, no RESP, no file format. Expiry reads no clock: callers pass `now_ms`,
//! which keeps it deterministic under test. (The one clock read is the active expiry cycle's
//! `Instant::now()`, to stop at the deadline its caller gives.) Eviction's policy lives in the
//! server, which samples keys through [`Db::eviction_candidates`] and removes them through
//! the write guard like any other deletion.

#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod access;
pub mod compact;
mod db;
pub mod effect;
mod entry;
pub mod events;
mod freeze;
mod gate;
mod keyspace;
/// Redis glob-style pattern matching.
pub mod pattern;
mod shard;
mod snapshot;
mod swap;
mod sync;
pub mod types;
pub mod value;
pub mod version;
mod watch;

pub use compact::CompactBytes;
pub use db::{
    Db, DbStats, EntryMut, EvictionRank, Flushed, N_SHARDS, ReadGuard, WriteGuard,
    take_expired_reads,
};
pub use entry::Entry;
pub use freeze::FrozenKeyspace;
pub use gate::{CommandGate, ExclusiveGate, SharedGate};
pub use keyspace::{ExpireCycle, Keyspace};
pub use snapshot::retain::{BUDGET_MAX_WAIT, RetainedStats};
pub use snapshot::{SaveClaim, SaveRecord, ShardCursor, ShardImage, SnapshotCut, Visit};
pub use value::Value;
pub use version::Epoch;
pub use watch::WatchFlag;
