//! Access to a key's value by type, shared by every command group: the lookups Redis does with
//! `lookupKeyRead` / `lookupKeyWrite` + `checkType`, and the copy-on-write change of a
//! collection that removes the key when the change empties it.

use std::sync::Arc;

use forkless_storage::types::hash::Hash;
use forkless_storage::types::list::List;
use forkless_storage::types::set::Set;
use forkless_storage::types::stream::Stream;
use forkless_storage::types::zset::ZSet;
use forkless_storage::{Entry, Value, WriteGuard};

use super::{Ctx, reply};

/// A handler step's result: the value, or the text of the error reply.
pub(crate) type Reply<T> = Result<T, &'static str>;

/// A length or count as a RESP integer.
pub(crate) fn len_i64(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

/// Writes an integer result, or its error reply.
pub(crate) fn reply_int(ctx: &mut Ctx<'_>, result: Reply<i64>) {
    match result {
        Ok(n) => ctx.out.int(n),
        Err(msg) => ctx.out.error(msg),
    }
}

/// A collection type held in [`Value`] behind an `Arc` (list, hash, set, sorted set), with the
/// typed key access every command of its group uses.
pub(crate) trait Collection: Clone + Sized {
    /// The collection `value` holds, or None for another type.
    fn from_value(value: &Value) -> Option<&Arc<Self>>;

    /// The collection `value` holds, mutably, or None for another type.
    fn from_value_mut(value: &mut Value) -> Option<&mut Arc<Self>>;

    /// `collection` as a value to store.
    fn into_value(collection: Arc<Self>) -> Value;

    /// A new, empty collection.
    fn empty() -> Self;

    /// Returns true if and only if the collection has no elements.
    fn has_no_elements(&self) -> bool;

    /// Runs `read` on the collection at `key` as Redis's `lookupKeyRead` + `checkType` do:
    /// counts a hit or a miss, replies WRONGTYPE for another type, and passes None for an
    /// absent key. The read guard is held while `read` writes the reply.
    fn read_key(ctx: &mut Ctx<'_>, key: &[u8], read: impl FnOnce(&mut Ctx<'_>, Option<&Self>)) {
        let guard = ctx.db().read(&[key], ctx.now_ms);
        let value = guard.get(key).map(Entry::value);
        ctx.hit_or_miss(value.is_some(), key);
        match value.map(Self::from_value) {
            Some(None) => ctx.out.error(reply::WRONGTYPE),
            Some(Some(collection)) => read(ctx, Some(collection)),
            None => read(ctx, None),
        }
    }

    /// The collection at `key` under a write guard (no hit or miss counted, as Redis's
    /// `lookupKeyWrite`): None if absent, WRONGTYPE for another type.
    fn at_key<'g>(guard: &'g mut WriteGuard<'_>, key: &[u8]) -> Reply<Option<&'g Self>> {
        guard
            .get(key)
            .map(|entry| {
                Self::from_value(entry.value())
                    .map(|collection| &**collection)
                    .ok_or(reply::WRONGTYPE)
            })
            .transpose()
    }

    /// Applies `change` to the collection at `key`, creating it if absent, and removes the key
    /// if `change` leaves it empty (an absent key stays absent). Callers check the type with
    /// [`Collection::at_key`] first; a key of another type is never overwritten regardless.
    /// The collection is copied only if a snapshot still holds its pre-change version
    /// (`Arc::make_mut`).
    fn upsert_key<R>(
        guard: &mut WriteGuard<'_>,
        key: &[u8],
        change: impl FnOnce(&mut Self) -> R,
    ) -> R {
        if let Some(mut entry) = guard.get_mut(key) {
            let Some(shared) = Self::from_value_mut(entry.value_mut()) else {
                return change(&mut Self::empty());
            };
            let collection = Arc::make_mut(shared);
            let result = change(collection);
            let emptied = collection.has_no_elements();
            if emptied {
                guard.remove(key);
            }
            return result;
        }
        let mut collection = Self::empty();
        let result = change(&mut collection);
        if !collection.has_no_elements() {
            guard.set(key, Self::into_value(Arc::new(collection)), None);
        }
        result
    }

    /// Applies `change` to the collection at `key` and removes the key if that emptied it.
    /// None, without calling `change`, if `key` holds no collection of this type.
    fn change_key<R>(
        guard: &mut WriteGuard<'_>,
        key: &[u8],
        change: impl FnOnce(&mut Self) -> R,
    ) -> Option<R> {
        let mut entry = guard.get_mut(key)?;
        let collection = Arc::make_mut(Self::from_value_mut(entry.value_mut())?);
        let result = change(collection);
        let emptied = collection.has_no_elements();
        if emptied {
            guard.remove(key);
        }
        Some(result)
    }
}

/// Implements [`Collection`] for a type held in `Value::$variant`.
macro_rules! collection {
    ($ty:ident, $variant:ident) => {
        impl Collection for $ty {
            fn from_value(value: &Value) -> Option<&Arc<$ty>> {
                match value {
                    Value::$variant(collection) => Some(collection),
                    _ => None,
                }
            }

            fn from_value_mut(value: &mut Value) -> Option<&mut Arc<$ty>> {
                match value {
                    Value::$variant(collection) => Some(collection),
                    _ => None,
                }
            }

            fn into_value(collection: Arc<$ty>) -> Value {
                Value::$variant(collection)
            }

            fn empty() -> $ty {
                $ty::new()
            }

            fn has_no_elements(&self) -> bool {
                self.is_empty()
            }
        }
    };
}

collection!(List, List);
collection!(Hash, Hash);
collection!(Set, Set);
collection!(ZSet, ZSet);

/// A stream stays in the keyspace when its last entry goes (Redis removes a stream only by
/// DEL and the like), so it never counts as empty here.
impl Collection for Stream {
    fn from_value(value: &Value) -> Option<&Arc<Stream>> {
        match value {
            Value::Stream(stream) => Some(stream),
            _ => None,
        }
    }

    fn from_value_mut(value: &mut Value) -> Option<&mut Arc<Stream>> {
        match value {
            Value::Stream(stream) => Some(stream),
            _ => None,
        }
    }

    fn into_value(stream: Arc<Stream>) -> Value {
        Value::Stream(stream)
    }

    fn empty() -> Stream {
        Stream::new()
    }

    fn has_no_elements(&self) -> bool {
        false
    }
}
