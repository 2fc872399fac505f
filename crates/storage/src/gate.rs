//! The command gate: how a transaction (MULTI/EXEC) runs alone on a multi-threaded server.
//!
//! Every command holds the gate shared for its whole run; EXEC holds it exclusively. A shared
//! hold locks only the calling thread's slot (one cache-padded `RwLock` per slot, slots handed
//! out round-robin to threads), so ordinary commands on different threads never touch the same
//! cache line. An exclusive hold locks every slot, in slot order, so it waits for the commands
//! in flight and keeps new ones out until the transaction is done.
//!
//! The snapshot cut is always taken while holding the gate shared (BGSAVE runs as a command; the
//! save-point timer takes the gate itself), so a cut can never fall between two commands of a
//! transaction.
//!
//! Lock order: the gate before any shard lock. A thread never takes the gate twice.

use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};

use crate::sync::{self, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[cfg(not(forkless_loom))]
const N_SLOTS: usize = 64;
#[cfg(forkless_loom)]
const N_SLOTS: usize = 2;

/// One slot on its own cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(RwLock<()>);

/// The gate. See the module docs.
#[derive(Debug)]
pub struct CommandGate {
    slots: Box<[Slot]>,
}

/// A shared hold of the gate: ordinary commands.
#[derive(Debug)]
pub struct SharedGate<'a> {
    _guard: RwLockReadGuard<'a, ()>,
}

/// An exclusive hold of the gate: a transaction.
#[derive(Debug)]
pub struct ExclusiveGate<'a> {
    _guards: Vec<RwLockWriteGuard<'a, ()>>,
}

impl Default for CommandGate {
    fn default() -> Self {
        CommandGate {
            slots: (0..N_SLOTS).map(|_| Slot::default()).collect(),
        }
    }
}

fn thread_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, StdOrdering::Relaxed) % N_SLOTS;
    }
    SLOT.with(|slot| *slot)
}

impl CommandGate {
    /// Holds the gate shared for one command.
    pub fn shared(&self) -> SharedGate<'_> {
        let slot = &self.slots[thread_slot() % N_SLOTS];
        SharedGate {
            _guard: sync::read(&slot.0),
        }
    }

    /// Holds the gate shared if no one holds it exclusively now; None otherwise. A command that
    /// must not sleep behind a long exclusive holder (a busy script) tries this first.
    pub fn try_shared(&self) -> Option<SharedGate<'_>> {
        let slot = &self.slots[thread_slot() % N_SLOTS];
        match slot.0.try_read() {
            Ok(guard) => Some(SharedGate { _guard: guard }),
            Err(sync::TryLockError::Poisoned(poisoned)) => Some(SharedGate {
                _guard: poisoned.into_inner(),
            }),
            Err(sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Holds the gate exclusively for a transaction.
    pub fn exclusive(&self) -> ExclusiveGate<'_> {
        ExclusiveGate {
            _guards: self.slots.iter().map(|slot| sync::write(&slot.0)).collect(),
        }
    }
}
