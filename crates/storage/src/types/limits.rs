//! The thresholds at which a small collection leaves its compact encoding, as Redis 7.0's
//! `hash-max-listpack-entries`/`-value`, `zset-max-listpack-entries`/`-value`,
//! `set-max-intset-entries`, `list-max-listpack-size` and `stream-node-max-entries`/`-bytes`. The server sets them from its
//! configuration ([`EncodingLimits::set`]); every collection reads them when it grows, as Redis
//! reads `server.*` there. A change applies to later writes only: a collection already
//! converted stays converted, and a small one converts at its next write past the new limit,
//! as in Redis.
//!
//! Process-wide, like Redis's globals: the keyspace is one per process, and passing the limits
//! down every insert would widen every collection API for a value that changes only on CONFIG
//! SET. They are plain `std` atomics read with `Relaxed` (not `crate::sync`'s): each is an
//! independent number that orders nothing, so the loom models have nothing to explore here.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

/// The thresholds; one instance, [`ENCODING_LIMITS`].
#[derive(Debug)]
pub struct EncodingLimits {
    hash_max_listpack_entries: AtomicUsize,
    hash_max_listpack_value: AtomicUsize,
    zset_max_listpack_entries: AtomicUsize,
    zset_max_listpack_value: AtomicUsize,
    set_max_intset_entries: AtomicUsize,
    list_max_listpack_size: AtomicI64,
    stream_node_max_entries: AtomicUsize,
    stream_node_max_bytes: AtomicUsize,
}

/// The limits in force, Redis 7.0's defaults until the server sets them.
pub static ENCODING_LIMITS: EncodingLimits = EncodingLimits {
    hash_max_listpack_entries: AtomicUsize::new(512),
    hash_max_listpack_value: AtomicUsize::new(64),
    zset_max_listpack_entries: AtomicUsize::new(128),
    zset_max_listpack_value: AtomicUsize::new(64),
    set_max_intset_entries: AtomicUsize::new(512),
    list_max_listpack_size: AtomicI64::new(-2),
    stream_node_max_entries: AtomicUsize::new(100),
    stream_node_max_bytes: AtomicUsize::new(4096),
};

/// The values to set, one per option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// `hash-max-listpack-entries`.
    pub hash_max_listpack_entries: usize,
    /// `hash-max-listpack-value`.
    pub hash_max_listpack_value: usize,
    /// `zset-max-listpack-entries`.
    pub zset_max_listpack_entries: usize,
    /// `zset-max-listpack-value`.
    pub zset_max_listpack_value: usize,
    /// `set-max-intset-entries`.
    pub set_max_intset_entries: usize,
    /// `list-max-listpack-size`: entries per list node when positive, a node size (-1 4 KiB
    /// ... -5 64 KiB) when negative.
    pub list_max_listpack_size: i64,
    /// `stream-node-max-entries`: entries a stream node receives (0: no limit).
    pub stream_node_max_entries: usize,
    /// `stream-node-max-bytes`: bytes a stream node holds (0: no limit).
    pub stream_node_max_bytes: usize,
}

/// Redis's `SIZE_SAFETY_LIMIT`: a list node limited by count still holds at most 8 KiB.
const COUNT_NODE_MAX_BYTES: usize = 8192;
/// Node sizes for `list-max-listpack-size` -1 to -5 (Redis's `optimization_level`).
const NODE_BYTES: [usize; 5] = [4096, 8192, 16384, 32768, 65536];

impl EncodingLimits {
    /// Sets every threshold (the server calls this at startup and after CONFIG SET).
    pub fn set(&self, limits: Thresholds) {
        let store = |atomic: &AtomicUsize, value| atomic.store(value, Ordering::Relaxed);
        store(
            &self.hash_max_listpack_entries,
            limits.hash_max_listpack_entries,
        );
        store(
            &self.hash_max_listpack_value,
            limits.hash_max_listpack_value,
        );
        store(
            &self.zset_max_listpack_entries,
            limits.zset_max_listpack_entries,
        );
        store(
            &self.zset_max_listpack_value,
            limits.zset_max_listpack_value,
        );
        store(&self.set_max_intset_entries, limits.set_max_intset_entries);
        self.list_max_listpack_size
            .store(limits.list_max_listpack_size, Ordering::Relaxed);
        store(
            &self.stream_node_max_entries,
            limits.stream_node_max_entries,
        );
        store(&self.stream_node_max_bytes, limits.stream_node_max_bytes);
    }

    /// `stream-node-max-entries` (0: no limit).
    pub fn stream_node_max_entries(&self) -> usize {
        self.stream_node_max_entries.load(Ordering::Relaxed)
    }

    /// `stream-node-max-bytes` (0: no limit).
    pub(crate) fn stream_node_max_bytes(&self) -> usize {
        self.stream_node_max_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn hash_max_entries(&self) -> usize {
        self.hash_max_listpack_entries.load(Ordering::Relaxed)
    }

    pub(crate) fn hash_max_value(&self) -> usize {
        self.hash_max_listpack_value.load(Ordering::Relaxed)
    }

    pub(crate) fn zset_max_entries(&self) -> usize {
        self.zset_max_listpack_entries.load(Ordering::Relaxed)
    }

    pub(crate) fn zset_max_value(&self) -> usize {
        self.zset_max_listpack_value.load(Ordering::Relaxed)
    }

    pub(crate) fn set_max_entries(&self) -> usize {
        self.set_max_intset_entries.load(Ordering::Relaxed)
    }

    /// Returns true if and only if a list node of `bytes` encoded bytes and `count` entries is
    /// over `list-max-listpack-size` (Redis's `quicklistNodeExceedsLimit`, with Redis's
    /// clamping of the option to -5..=32767).
    pub(crate) fn list_node_over(&self, bytes: usize, count: usize) -> bool {
        let fill = self.list_max_listpack_size.load(Ordering::Relaxed);
        if fill >= 0 {
            let max_count = usize::try_from(fill.min(32_767)).unwrap_or(0);
            count > max_count || bytes > COUNT_NODE_MAX_BYTES
        } else {
            let level = usize::try_from(fill.unsigned_abs() - 1).unwrap_or(usize::MAX);
            let max_bytes = NODE_BYTES
                .get(level)
                .or(NODE_BYTES.last())
                .copied()
                .unwrap_or(COUNT_NODE_MAX_BYTES);
            bytes > max_bytes
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private instance, so that the other tests keep the defaults in [`ENCODING_LIMITS`].
    fn with_list_size(fill: i64) -> EncodingLimits {
        let limits = EncodingLimits {
            hash_max_listpack_entries: AtomicUsize::new(512),
            hash_max_listpack_value: AtomicUsize::new(64),
            zset_max_listpack_entries: AtomicUsize::new(128),
            zset_max_listpack_value: AtomicUsize::new(64),
            set_max_intset_entries: AtomicUsize::new(512),
            list_max_listpack_size: AtomicI64::new(0),
            stream_node_max_entries: AtomicUsize::new(100),
            stream_node_max_bytes: AtomicUsize::new(4096),
        };
        limits.list_max_listpack_size.store(fill, Ordering::Relaxed);
        limits
    }

    #[test]
    fn list_node_limits_follow_quicklist() {
        let default = with_list_size(-2);
        assert!(!default.list_node_over(8192, 10_000));
        assert!(default.list_node_over(8193, 1));
        let small = with_list_size(-1);
        assert!(small.list_node_over(4097, 1));
        // Below -5 Redis uses the largest size.
        let huge = with_list_size(-100);
        assert!(!huge.list_node_over(65536, 1));
        assert!(huge.list_node_over(65537, 1));
        // A count limit, and the 8 KiB safety limit on top of it.
        let three = with_list_size(3);
        assert!(!three.list_node_over(30, 3));
        assert!(three.list_node_over(30, 4));
        assert!(three.list_node_over(8193, 2));
        assert!(with_list_size(0).list_node_over(1, 1));
    }
}
