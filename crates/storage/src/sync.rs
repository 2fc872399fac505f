//! The one place `storage` takes its synchronisation primitives from.
//!
//! Under `--cfg forkless_loom` these are loom's model-checked types, so the loom models in
//! `tests/loom.rs` exercise the same code the server runs. The cfg is namespaced so that loom
//! code in dependencies stays off.

#[cfg(forkless_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(forkless_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
/// loom's locks report `try_*` failures with std's error type too.
pub(crate) use std::sync::TryLockError;

#[cfg(not(forkless_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(forkless_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Takes a read lock, ignoring poisoning: no code in this crate panics while holding a shard lock
/// (every mutation is a few infallible map operations), so a poisoned lock still guards
/// consistent data.
pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Takes a write lock, ignoring poisoning for the reason given on [`read`].
pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Locks a mutex, ignoring poisoning for the reason given on [`read`].
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
