//! The command gate: how a transaction (MULTI/EXEC) runs alone on a multi-threaded server.
//!
//! Every command holds the gate shared for its whole run; EXEC holds it exclusively. A shared
//! hold locks only the calling thread's slot (one cache-padded `RwLock` per slot, slots handed
//! out round-robin to threads), so ordinary commands on different threads never touch the same
//! cache line. An exclusive hold locks every slot in use (each slot some thread has held), in
//! slot order, so it waits for the commands in flight and keeps new ones out until the
//! transaction is done; a thread's first shared hold adds its slot under the mutex exclusive
//! holders keep (see [`CommandGate`]).
//!
//! The snapshot cut is always taken while holding the gate shared (BGSAVE runs as a command; the
//! save-point timer takes the gate itself), so a cut can never fall between two commands of a
//! transaction.
//!
//! Lock order: the gate before any shard lock. A thread never takes the gate twice.

use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};

use crate::sync::{
    self, AtomicU64, Mutex, MutexGuard, Ordering, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

#[cfg(not(forkless_loom))]
const N_SLOTS: usize = 64;
#[cfg(forkless_loom)]
const N_SLOTS: usize = 2;

/// One slot on its own cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(RwLock<()>);

/// The gate. See the module docs.
///
/// An exclusive hold locks only the slots in use (below `in_use`), not all [`N_SLOTS`]: a
/// transaction or a script then pays for the threads that run commands, not for 64 locks
/// (docs/benchmarks.md, "Scripts"). A thread whose slot is not yet below `in_use` raises it
/// while holding `writer`, the mutex an exclusive holder keeps for its whole hold and reads
/// `in_use` under: so no exclusive hold is under way while a slot is added, and every later
/// one sees it.
#[derive(Debug)]
pub struct CommandGate {
    slots: Box<[Slot]>,
    /// One past the highest slot a shared hold has used.
    in_use: AtomicU64,
    /// Held by the exclusive holder for its whole hold (exclusive holders queue here), and by
    /// a thread adding its slot to `in_use`.
    writer: Mutex<()>,
}

/// A shared hold of the gate: ordinary commands.
#[derive(Debug)]
pub struct SharedGate<'a> {
    _guard: RwLockReadGuard<'a, ()>,
}

/// An exclusive hold of the gate: a transaction.
#[derive(Debug)]
pub struct ExclusiveGate<'a> {
    // Dropped in this order: the slots, then `writer`.
    _guards: Vec<RwLockWriteGuard<'a, ()>>,
    _writer: MutexGuard<'a, ()>,
}

impl Default for CommandGate {
    fn default() -> Self {
        CommandGate {
            slots: (0..N_SLOTS).map(|_| Slot::default()).collect(),
            in_use: AtomicU64::new(0),
            writer: Mutex::new(()),
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
        let slot = thread_slot() % N_SLOTS;
        if !self.known(slot) {
            let _writer = sync::lock(&self.writer);
            self.add(slot);
        }
        SharedGate {
            _guard: sync::read(&self.slots[slot].0),
        }
    }

    /// Holds the gate shared if no one holds it exclusively now; None otherwise. A command that
    /// must not sleep behind a long exclusive holder (a busy script) tries this first.
    pub fn try_shared(&self) -> Option<SharedGate<'_>> {
        let slot = thread_slot() % N_SLOTS;
        if !self.known(slot) {
            // Busy `writer`: an exclusive hold (or, rarely, another thread adding its slot).
            let _writer = match self.writer.try_lock() {
                Ok(writer) => writer,
                Err(sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(sync::TryLockError::WouldBlock) => return None,
            };
            self.add(slot);
        }
        match self.slots[slot].0.try_read() {
            Ok(guard) => Some(SharedGate { _guard: guard }),
            Err(sync::TryLockError::Poisoned(poisoned)) => Some(SharedGate {
                _guard: poisoned.into_inner(),
            }),
            Err(sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Returns true if and only if every exclusive hold locks `slot`. Once true it stays true.
    fn known(&self, slot: usize) -> bool {
        u64::try_from(slot).is_ok_and(|slot| slot < self.in_use.load(Ordering::Acquire))
    }

    /// Adds `slot` to the slots exclusive holds lock. The caller holds `writer`.
    fn add(&self, slot: usize) {
        let end = u64::try_from(slot + 1).unwrap_or(u64::MAX);
        if self.in_use.load(Ordering::Relaxed) < end {
            self.in_use.store(end, Ordering::Release);
        }
    }

    /// Holds the gate exclusively for a transaction.
    pub fn exclusive(&self) -> ExclusiveGate<'_> {
        let writer = sync::lock(&self.writer);
        let in_use = usize::try_from(self.in_use.load(Ordering::Acquire)).unwrap_or(N_SLOTS);
        ExclusiveGate {
            _guards: self
                .slots
                .iter()
                .take(in_use)
                .map(|slot| sync::write(&slot.0))
                .collect(),
            _writer: writer,
        }
    }
}

#[cfg(all(test, not(forkless_loom)))]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn an_exclusive_hold_keeps_out_a_thread_that_never_held_the_gate() {
        let gate = CommandGate::default();
        // This thread's slot is in use; a new thread's slot is not yet.
        drop(gate.shared());
        let exclusive = gate.exclusive();
        let entered = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let (tried, tried_rx) = mpsc::channel();
            let (gate, entered) = (&gate, &entered);
            scope.spawn(move || {
                assert!(
                    gate.try_shared().is_none(),
                    "try_shared during an exclusive hold"
                );
                tried.send(()).ok();
                let _shared = gate.shared();
                entered.store(true, StdOrdering::SeqCst);
            });
            tried_rx.recv().ok();
            // The new thread is waiting (or about to): it must not get in while this holds.
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(!entered.load(StdOrdering::SeqCst));
            drop(exclusive);
        });
        assert!(entered.load(StdOrdering::SeqCst));
        // Its slot is known now: the next exclusive hold locks it.
        let _again = gate.exclusive();
        assert!(gate.in_use.load(Ordering::SeqCst) >= 2);
    }

    #[test]
    fn shared_holds_on_many_threads_and_exclusive_holds_alternate() {
        let gate = CommandGate::default();
        let inside = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..200 {
                        let _shared = gate.shared();
                        inside.fetch_add(1, Ordering::SeqCst);
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                });
                scope.spawn(|| {
                    for _ in 0..50 {
                        let _exclusive = gate.exclusive();
                        assert_eq!(inside.load(Ordering::SeqCst), 0);
                    }
                });
            }
        });
    }
}
