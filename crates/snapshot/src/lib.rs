//! Point-in-time serialization of the keyspace.
//!
//! # Layout
//! - `save`: one epoch snapshot: parallel serializers over the shards of a cut taken by
//!   `forkless_storage::Keyspace::cut`, the checksum, optional zstd frames, throttle, and the
//!   stream fed to one or more sinks (`save_to_sinks`); and `save_frozen`, the
//!   single-threaded save of a frozen keyspace that a fork child runs.
//! - `format`: the RDB file format (Redis 7.0, version 10): encoder, validating loader, CRC64,
//!   LZF.
//! - `backend`: where the bytes go: the io_uring writer, the blocking fallback, fault injection,
//!   the temp file + fsync + rename commit protocol, and `fork` (fork mode: forking with the
//!   keyspace frozen, the child's writer, reaping).
//!
//! It depends on `forkless-storage` only and never sees sockets or RESP frames: a sink is any
//! `backend::Sink`, and a socket sink belongs to the server. See
//! docs/snapshot.md for the design and its correctness argument.

pub mod backend;
/// The RDB file format: encoder, loader, CRC-64 and LZF.
pub mod format;
pub mod save;
pub use format::REDIS_VERSION_COMPAT;
