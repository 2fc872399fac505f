//! [`CompactBytes`]: the byte strings the keyspace stores, keys and string values alike.
//!
//! 24 bytes wide. Up to [`INLINE_CAP`] bytes live inline, with no allocation: most keys, short
//! values and the text of every 64-bit integer (at most 20 bytes), which is how forkless keeps
//! "integers as integers" cheap. Longer strings live on the heap behind a reference count, so
//! that a clone (the snapshot retaining an overwritten value, a reader copying a value out
//! before replying) is O(1) and never copies the bytes:
//!
//! * `Shared(Arc<[u8]>)`: what a string is created as (one allocation, 16 bytes of header);
//! * `Growable(Box<Bytes>)`: what APPEND and SETRANGE leave behind, keeping the buffer's spare
//!   capacity so a run of appends costs amortised O(1) per byte, as Redis's sds does.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

/// The longest string kept inline.
pub const INLINE_CAP: usize = 22;

/// A byte string, inline when short, shared by reference count when long.
#[derive(Clone)]
pub struct CompactBytes(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, data: [u8; INLINE_CAP] },
    Shared(Arc<[u8]>),
    Growable(Box<Bytes>),
}

impl CompactBytes {
    /// The empty string.
    pub const fn new() -> CompactBytes {
        CompactBytes(Repr::Inline {
            len: 0,
            data: [0; INLINE_CAP],
        })
    }

    fn inline(bytes: &[u8]) -> Option<CompactBytes> {
        let mut data = [0u8; INLINE_CAP];
        data.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(CompactBytes(Repr::Inline {
            len: bytes.len() as u8,
            data,
        }))
    }

    /// A copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> CompactBytes {
        CompactBytes::inline(bytes).unwrap_or_else(|| CompactBytes(Repr::Shared(Arc::from(bytes))))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, data } => data.get(..usize::from(*len)).unwrap_or_default(),
            Repr::Shared(bytes) => bytes,
            Repr::Growable(bytes) => bytes,
        }
    }

    /// The bytes as `Bytes`: O(1) for a string that was edited in place, a copy otherwise.
    pub fn to_bytes(&self) -> Bytes {
        match &self.0 {
            Repr::Growable(bytes) => Bytes::clone(bytes),
            Repr::Inline { .. } | Repr::Shared(_) => Bytes::copy_from_slice(self.as_bytes()),
        }
    }

    /// Changes the bytes in place through a `BytesMut`: without a copy when this is the only
    /// reference to a string edited before, with one copy otherwise (then the result keeps its
    /// spare capacity for the next edit).
    pub fn edit(&mut self, edit: impl FnOnce(&mut BytesMut)) {
        let mut buf = match std::mem::take(self).0 {
            Repr::Growable(bytes) => (*bytes)
                .try_into_mut()
                .unwrap_or_else(|shared| BytesMut::from(&shared[..])),
            other => BytesMut::from(CompactBytes(other).as_bytes()),
        };
        edit(&mut buf);
        *self = match CompactBytes::inline(&buf) {
            Some(inline) => inline,
            None => CompactBytes(Repr::Growable(Box::new(buf.freeze()))),
        };
    }

    /// Heap bytes this string holds (0 when inline).
    pub fn heap_size(&self) -> usize {
        match &self.0 {
            Repr::Inline { .. } => 0,
            Repr::Shared(bytes) => bytes.len() + 2 * std::mem::size_of::<usize>(),
            Repr::Growable(bytes) => bytes.len() + std::mem::size_of::<Bytes>(),
        }
    }

    /// Returns true if and only if the bytes are inline.
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline { .. })
    }

    /// Asks the CPU to start loading the heap bytes into its caches, for a caller that will
    /// copy them soon: the snapshot's traversal and sweeper, a few entries ahead of the one
    /// they encode, so that the memory latency of one value overlaps the copy of another. A
    /// hint only: it reads nothing and cannot fault. Inline strings have nothing to load, and
    /// `Growable` ones (rare) are skipped because finding their bytes would itself wait on
    /// memory.
    pub fn prefetch(&self) {
        if let Repr::Shared(bytes) = &self.0 {
            prefetch_lines(bytes);
        }
    }
}

/// At most this many cache lines of a string are prefetched (1 KiB); the hardware prefetcher
/// follows a longer string by itself once its copy is under way.
const PREFETCH_MAX_LINES: usize = 16;

/// Prefetches the cache lines of `bytes` (at most [`PREFETCH_MAX_LINES`]) into every cache
/// level. docs/ARCHITECTURE.md lists this as the storage crate's one exception to
/// `deny(unsafe_code)`: stable Rust offers no safe prefetch.
#[cfg(target_arch = "x86_64")]
#[expect(
    unsafe_code,
    reason = "the prefetch intrinsic, the exception docs/ARCHITECTURE.md documents"
)]
fn prefetch_lines(bytes: &[u8]) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    for byte in bytes.iter().step_by(64).take(PREFETCH_MAX_LINES) {
        // SAFETY: `_mm_prefetch` only requires SSE, which is part of the x86-64 baseline, so
        // every CPU this code runs on has it. A prefetch is a hint: it does not dereference
        // the pointer and never faults (and this one points into a live slice anyway).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(byte).cast::<i8>()) };
    }
}

/// No prefetch hint on other architectures (the intrinsics are not stable there).
#[cfg(not(target_arch = "x86_64"))]
fn prefetch_lines(_bytes: &[u8]) {}

impl Default for CompactBytes {
    fn default() -> CompactBytes {
        CompactBytes::new()
    }
}

impl Deref for CompactBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for CompactBytes {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Borrow<[u8]> for CompactBytes {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<&[u8]> for CompactBytes {
    fn from(bytes: &[u8]) -> CompactBytes {
        CompactBytes::from_slice(bytes)
    }
}

impl From<Bytes> for CompactBytes {
    /// Short strings are copied inline; a long one is kept as it is, without a copy.
    fn from(bytes: Bytes) -> CompactBytes {
        CompactBytes::inline(&bytes)
            .unwrap_or_else(|| CompactBytes(Repr::Growable(Box::new(bytes))))
    }
}

/// Longer strings taken from a `Vec` are kept in it rather than copied behind an `Arc`.
const COPY_FROM_VEC_MAX: usize = 4096;

impl From<Vec<u8>> for CompactBytes {
    /// Short and mid-size strings are copied (inline, or shared with a 16-byte header); a long
    /// one keeps its buffer, without a copy.
    fn from(bytes: Vec<u8>) -> CompactBytes {
        if bytes.len() <= COPY_FROM_VEC_MAX {
            CompactBytes::from_slice(&bytes)
        } else {
            CompactBytes(Repr::Growable(Box::new(Bytes::from(bytes))))
        }
    }
}

impl PartialEq for CompactBytes {
    fn eq(&self, other: &CompactBytes) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for CompactBytes {}

impl PartialOrd for CompactBytes {
    fn partial_cmp(&self, other: &CompactBytes) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for CompactBytes {
    fn cmp(&self, other: &CompactBytes) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Hash for CompactBytes {
    /// Hashes as `[u8]` does, so that lookups by `&[u8]` (through `Borrow`) agree.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl std::fmt::Debug for CompactBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&Bytes::copy_from_slice(self.as_bytes()), f)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn prefetch_changes_nothing_in_any_representation() {
        let mut growable = CompactBytes::from_slice(&[b'g'; 40]);
        growable.edit(|buf| buf.extend_from_slice(b"tail"));
        assert!(matches!(growable.0, Repr::Growable(_)));
        let strings = [
            CompactBytes::new(),
            CompactBytes::from_slice(&[b'i'; INLINE_CAP]),
            CompactBytes::from_slice(&[b's'; INLINE_CAP + 1]),
            // Longer than the lines prefetched.
            CompactBytes::from_slice(&[b'l'; 64 * PREFETCH_MAX_LINES + 100]),
            growable,
        ];
        for string in strings {
            let before = string.as_bytes().to_vec();
            string.prefetch();
            assert_eq!(string.as_bytes(), &before[..]);
        }
    }

    #[test]
    fn stays_three_words() {
        assert_eq!(std::mem::size_of::<CompactBytes>(), 24);
        assert_eq!(std::mem::size_of::<crate::Value>(), 24);
    }

    #[test]
    fn short_strings_are_inline_and_long_ones_shared() {
        assert!(CompactBytes::from_slice(b"-9223372036854775808").is_inline());
        assert!(CompactBytes::from_slice(&[b'x'; INLINE_CAP]).is_inline());
        let long = CompactBytes::from_slice(&[b'x'; INLINE_CAP + 1]);
        assert!(!long.is_inline());
        let copy = long.clone();
        assert_eq!(copy.as_ptr(), long.as_ptr(), "a clone shares the bytes");
        assert_eq!(CompactBytes::new().as_bytes(), b"");
    }

    #[test]
    fn edits_keep_spare_capacity_and_never_touch_a_clone() {
        let mut text = CompactBytes::from_slice(b"abc");
        let before = text.clone();
        for _ in 0..100 {
            text.edit(|buf| buf.extend_from_slice(b"0123456789"));
        }
        assert_eq!(text.len(), 1003);
        assert_eq!(before.as_bytes(), b"abc");
        let retained = text.clone();
        text.edit(|buf| buf.truncate(2));
        assert_eq!(text.as_bytes(), b"ab");
        assert!(text.is_inline());
        assert_eq!(retained.len(), 1003);
        let ptr = retained.as_ptr();
        let mut alone = retained;
        alone.edit(|buf| buf.extend_from_slice(b"!"));
        assert_eq!(alone.as_ptr(), ptr, "the only reference is edited in place");
    }

    proptest! {
        #[test]
        fn round_trips_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let compact = CompactBytes::from_slice(&bytes);
            prop_assert_eq!(compact.as_bytes(), &bytes[..]);
            let from_bytes = CompactBytes::from(Bytes::from(bytes.clone()));
            prop_assert_eq!(from_bytes.as_bytes(), &bytes[..]);
            prop_assert_eq!(&compact.to_bytes()[..], &bytes[..]);
            prop_assert_eq!(compact.is_inline(), bytes.len() <= INLINE_CAP);
        }
    }
}
