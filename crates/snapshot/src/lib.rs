//! Point-in-time serialization of the keyspace.
//!
//! # Layout
//! - `save`: one epoch snapshot from cut to rename (parallel serializers, one writer), and
//!   `save_frozen`, the single-threaded save of a frozen keyspace that a fork child runs.
//! - `format`: the RDB file format (encoder, validating loader, CRC64, LZF).
//! - `backend`: the writer backends (`uring`, `std`) behind the `Sink` trait, fault injection,
//!   and `fork` (fork mode: forking with the keyspace frozen, the child's writer, reaping).
//!
//! It depends on `forkless-storage` only and never sees sockets or RESP frames.

pub mod backend;
/// The RDB file format: encoder, loader, CRC-64 and LZF.
pub mod format;
pub mod save;
pub use format::REDIS_VERSION_COMPAT;
