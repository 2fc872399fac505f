//! Collection values: lists, hashes, sets and sorted sets.
//!
//! Each lives behind an `Arc` in [`crate::Value`], so the snapshot's retain hook copies a
//! collection in O(1). A command changes a collection through `Arc::make_mut`: in-place when no
//! snapshot holds the old version, otherwise one copy, once per key per snapshot (the first
//! write after the cut to a key the traversal has not reached). That copy is the bounded, documented
//! cost of a write to a big collection during a snapshot (docs/snapshot.md).

pub mod hash;
pub mod list;
pub(crate) mod packed;
pub mod set;
pub mod zset;

pub use self::packed::Element;

/// The hasher of collection members: foldhash, randomly seeded per collection.
pub(crate) type MemberHasher = foldhash::fast::RandomState;
