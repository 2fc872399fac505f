//! Collection values: lists, hashes, sets, sorted sets and streams.
//!
//! Each lives behind an `Arc` in [`crate::Value`], so the snapshot's retain hook copies a
//! collection in O(1). A command changes a collection through `Arc::make_mut`: in-place when no
//! snapshot holds the old version, otherwise one copy, once per key per snapshot (the first
//! write after the cut to a key the traversal has not reached). Lists, hashes, sets and streams are made of
//! parts behind `Arc`s of their own, so that copy is one pointer per part, and the write then
//! copies the one part it changes; a big sorted set is still copied whole, which is why the
//! snapshot saves those first (docs/snapshot.md, "Big collections").

pub mod hash;
pub mod limits;
pub(crate) mod linear;
pub mod list;
pub(crate) mod packed;
pub mod set;
pub mod stream;
pub mod zset;

pub use self::packed::Element;

/// The hasher of collection members: foldhash, randomly seeded per collection.
pub(crate) type MemberHasher = foldhash::fast::RandomState;
