//! Typed values.
//!
//! Code outside this crate matches on [`Value`] exhaustively, so adding a type makes the compiler
//! point at every command and serializer that must learn about it. Collections sit behind `Arc`
//! (see `types`): a snapshot retains them by reference count.

use std::sync::Arc;

use crate::compact::CompactBytes;
use crate::types::{hash::Hash, list::List, set::Set, stream::Stream, zset::ZSet};

/// Strings up to this length are `embstr` in Redis's `OBJECT ENCODING`.
const EMBSTR_MAX_LEN: usize = 44;

/// A value stored under a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A binary-safe string: inline when short, else shared, so a snapshot retains an
    /// overwritten string by copying 24 bytes or a reference count, never the string.
    String(CompactBytes),
    /// A list.
    List(Arc<List>),
    /// A hash.
    Hash(Arc<Hash>),
    /// A set.
    Set(Arc<Set>),
    /// A sorted set.
    ZSet(Arc<ZSet>),
    /// A stream.
    Stream(Arc<Stream>),
}

impl Value {
    /// Builds a string value, copying `bytes` so that the value owns exactly its bytes (a slice of
    /// a connection's read buffer must never be kept alive by the keyspace).
    pub fn string(bytes: &[u8]) -> Value {
        Value::String(CompactBytes::from_slice(bytes))
    }

    /// Returns true if and only if `other` is this very value, not merely an equal one: the
    /// same shared allocation, or the same bytes for strings short enough to be stored inline.
    /// Meant for a caller that cloned a value out and still holds that clone (so its allocation
    /// cannot have been freed and reused): every write copies a shared value before changing
    /// it, so a value written since the clone was taken is never the same. O(1) but for the
    /// inline bytes.
    pub fn is_same_as(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::String(a), Value::String(b)) => {
                if a.is_inline() && b.is_inline() {
                    a.as_bytes() == b.as_bytes()
                } else {
                    std::ptr::eq(a.as_bytes(), b.as_bytes())
                }
            }
            (Value::List(a), Value::List(b)) => Arc::ptr_eq(a, b),
            (Value::Hash(a), Value::Hash(b)) => Arc::ptr_eq(a, b),
            (Value::Set(a), Value::Set(b)) => Arc::ptr_eq(a, b),
            (Value::ZSet(a), Value::ZSet(b)) => Arc::ptr_eq(a, b),
            (Value::Stream(a), Value::Stream(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The name `TYPE` replies with.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::List(_) => "list",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
            Value::Stream(_) => "stream",
        }
    }

    /// The name `OBJECT ENCODING` replies with, following Redis's rules for strings: a canonical
    /// 64-bit integer is `int`, a short string `embstr`, anything else `raw`.
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::String(bytes) => {
                if bytes.len() <= 20 && parse_canonical_i64(bytes).is_some() {
                    "int"
                } else if bytes.len() <= EMBSTR_MAX_LEN {
                    "embstr"
                } else {
                    "raw"
                }
            }
            Value::List(list) => list.encoding(),
            Value::Hash(hash) => hash.encoding(),
            Value::Set(set) => set.encoding(),
            Value::ZSet(zset) => zset.encoding(),
            Value::Stream(stream) => stream.encoding(),
        }
    }

    /// An estimate of the heap bytes this value holds, for memory accounting and for the bytes a
    /// snapshot retains.
    pub fn heap_size(&self) -> usize {
        match self {
            Value::String(bytes) => bytes.heap_size(),
            Value::List(list) => list.heap_size(),
            Value::Hash(hash) => hash.heap_size(),
            Value::Set(set) => set.heap_size(),
            Value::ZSet(zset) => zset.heap_size(),
            Value::Stream(stream) => stream.heap_size(),
        }
    }
}

/// Parses `bytes` as a signed 64-bit decimal integer in canonical form (what Redis's `string2ll`
/// accepts): optional `-`, no leading zeros, no `+`, no spaces, fits in `i64`.
pub fn parse_canonical_i64(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some(_) => (false, bytes),
        None => return None,
    };
    match digits {
        [] => return None,
        [b'0'] => return if negative { None } else { Some(0) },
        [b'0', ..] => return None,
        _ => {}
    }
    if digits.len() > 19 {
        return None;
    }
    let mut magnitude: u64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(byte - b'0'))?;
    }
    if negative {
        if magnitude == 1u64 << 63 {
            Some(i64::MIN)
        } else {
            i64::try_from(magnitude).ok().map(|m| -m)
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_value_is_identity_not_equality() {
        let long = Value::string(&[b'x'; 200]);
        let clone = long.clone();
        assert!(long.is_same_as(&clone));
        // Equal bytes in another allocation are not the same value.
        assert!(!long.is_same_as(&Value::string(&[b'x'; 200])));
        // Inline strings have no allocation: their bytes decide.
        assert!(Value::string(b"ab").is_same_as(&Value::string(b"ab")));
        assert!(!Value::string(b"ab").is_same_as(&Value::string(b"ac")));
        let mut list = List::new();
        list.push_back("a");
        let list = Value::List(Arc::new(list));
        let held = list.clone();
        assert!(list.is_same_as(&held));
        // A write copies the shared list first (the clone keeps it shared).
        let Value::List(mut written) = list else {
            unreachable!()
        };
        Arc::make_mut(&mut written).push_back("b");
        assert!(!Value::List(written).is_same_as(&held));
        assert!(!held.is_same_as(&Value::string(b"a")));
    }

    #[test]
    fn canonical_integers_match_redis_string2ll() {
        assert_eq!(parse_canonical_i64(b"0"), Some(0));
        assert_eq!(parse_canonical_i64(b"-1"), Some(-1));
        assert_eq!(parse_canonical_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_canonical_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"012",
            b"+1",
            b" 1",
            b"1 ",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"1.0",
            b"99999999999999999999",
        ] {
            assert_eq!(
                parse_canonical_i64(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Every key pays for an `Entry`, and every collection for its struct behind the `Arc`:
    /// keep them small (see docs/benchmarks.md, memory per type).
    #[test]
    fn values_stay_small() {
        use crate::types::{hash::Hash, list::List, set::Set, zset::ZSet};
        assert_eq!(size_of::<Value>(), 24);
        assert_eq!(size_of::<crate::Entry>(), 40);
        assert!(size_of::<Set>() <= 24);
        assert!(size_of::<Hash>() <= 32);
        assert!(size_of::<ZSet>() <= 32);
        assert!(size_of::<List>() <= 48);
    }

    #[test]
    fn string_encodings_follow_redis_thresholds() {
        assert_eq!(Value::string(b"12345").encoding(), "int");
        assert_eq!(Value::string(b"012").encoding(), "embstr");
        assert_eq!(Value::string(&[b'a'; 44]).encoding(), "embstr");
        assert_eq!(Value::string(&[b'a'; 45]).encoding(), "raw");
        assert_eq!(Value::string(b"x").type_name(), "string");
    }
}
