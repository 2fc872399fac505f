//! Point-in-time serialization of the keyspace.
//!
//! # Layout
//! This crate will own the snapshot cut, the traversal of the keyspace shard by shard, the RDB file
//! format (`format`), and the writer backends (`backend/{uring,std,fork}`). It depends on
//! `forkless-storage` only and never sees sockets or RESP frames.
//!
//! Nothing is implemented yet: the epoch snapshot is the next milestone after the foundation.

pub mod backend;
/// The RDB file format: encoder, loader, CRC-64 and LZF.
pub mod format;
pub mod save;
pub use format::REDIS_VERSION_COMPAT;
