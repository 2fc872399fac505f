//! Memory accounting: the process's allocator is glibc's `malloc` (std's `System`), wrapped to
//! count the bytes in use, which INFO reports as `used_memory` and eviction compares with
//! `maxmemory` (`crate::evict`).
//!
//! # How it counts
//! Each allocation is charged what glibc's chunk for it costs (the request plus its 8-byte
//! header, rounded up to 16, at least 32): a figure computed from the size alone, so a free is
//! charged back exactly what its allocation was (Rust hands `dealloc` and `realloc` the layout
//! the block was allocated with, so no `malloc_usable_size` call is needed to balance).
//! Allocations made by C code straight through `malloc` (Lua's, zstd's) are not counted here;
//! `allocator_allocated` (mallinfo2, read at INFO time) counts everything.
//!
//! # Why not one atomic
//! A shared counter updated by every allocation would bounce one cache line between all cores
//! on every command. Each thread instead owns a slot (one cache line) holding its net
//! allocations, which only it writes, with a plain relaxed load and store: the exact total is
//! the sum of the slots ([`allocated_bytes`], for INFO and for eviction once the server is near
//! its limit). For the check before every command, each thread also adds its changes to one
//! shared approximate total once they pass [`APPROX_STEP`] either way
//! ([`approx_allocated_bytes`], off by at most `APPROX_STEP` per thread). A slot is never
//! reused: an exited thread's slot keeps its net contribution, which the sum needs (what it
//! allocated may be freed by another thread). Threads beyond [`N_SLOTS`] share one atomic,
//! correct but contended; the server's threads are few and long-lived.
//!
//! # Arenas
//! glibc gives threads arenas of their own (up to 8 per core), and a block freed by another
//! thread goes back to the arena it came from. Under eviction one thread frees what others
//! allocated, so every arena keeps free chunks its own thread may never reuse: the process's
//! memory rose well above `used_memory` that way, unseen by eviction (docs/benchmarks.md, "Why
//! 0.9 L failed at 256 MiB, and what fixed it"). Counting that free space would not help:
//! eviction frees into it, so `used_memory` plus free space would not fall however much it
//! evicted. So [`limit_arenas`] caps the arenas instead (`malloc-arena-max`, 1 by default);
//! the threads' caches (glibc's tcache) keep most allocations off the shared arena's lock.
//!
//! The one place in the server crate with an `unsafe impl`: `GlobalAlloc` is an unsafe trait.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

/// The counting wrapper around glibc's allocator.
struct Counting;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Threads with a slot of their own.
const N_SLOTS: usize = 64;

/// Bytes a thread may keep out of [`APPROX`] either way.
pub(crate) const APPROX_STEP: i64 = 4 * 1024;

/// One thread's net allocated bytes, on a cache line of its own.
#[repr(align(64))]
struct Slot(AtomicI64);

static SLOTS: [Slot; N_SLOTS] = [const { Slot(AtomicI64::new(0)) }; N_SLOTS];
/// Slots handed out so far (may pass `N_SLOTS`: those threads use [`SHARED`]).
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
/// The net allocations of threads without a slot.
static SHARED: AtomicI64 = AtomicI64::new(0);
/// The approximate total: every thread's changes, added in steps of [`APPROX_STEP`].
static APPROX: AtomicI64 = AtomicI64::new(0);

/// A thread's slot index before it has one.
const UNASSIGNED: usize = usize::MAX;

thread_local! {
    /// This thread's slot (an index into [`SLOTS`], or `N_SLOTS` and beyond for none) and its
    /// changes not yet added to [`APPROX`]. Const-initialised and without a destructor, so
    /// reading it never allocates and works at any point of a thread's life.
    static LOCAL: Cell<(usize, i64)> = const { Cell::new((UNASSIGNED, 0)) };
}

/// What glibc's chunk for a request of `size` bytes costs.
#[inline]
fn charge(size: usize) -> i64 {
    let chunk = (size.saturating_add(8 + 15) & !15).max(32);
    i64::try_from(chunk).unwrap_or(i64::MAX)
}

#[inline]
fn note(delta: i64) {
    let kept = LOCAL.try_with(|local| {
        let (mut slot, pending) = local.get();
        if slot == UNASSIGNED {
            slot = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
        }
        match SLOTS.get(slot) {
            // Only this thread writes its slot: a load and a store, no read-modify-write.
            Some(own) => own
                .0
                .store(own.0.load(Ordering::Relaxed) + delta, Ordering::Relaxed),
            None => {
                SHARED.fetch_add(delta, Ordering::Relaxed);
            }
        }
        let mut pending = pending + delta;
        if pending.abs() >= APPROX_STEP {
            APPROX.fetch_add(pending, Ordering::Relaxed);
            pending = 0;
        }
        local.set((slot, pending));
    });
    if kept.is_err() {
        SHARED.fetch_add(delta, Ordering::Relaxed);
        APPROX.fetch_add(delta, Ordering::Relaxed);
    }
}

#[allow(unsafe_code)]
// SAFETY: every method forwards to `System` with the caller's own arguments, so it keeps
// `System`'s guarantees; the bookkeeping around it neither allocates nor touches the block.
unsafe impl GlobalAlloc for Counting {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        let block = unsafe { System.alloc(layout) };
        if !block.is_null() {
            note(charge(layout.size()));
        }
        block
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let block = unsafe { System.alloc_zeroed(layout) };
        if !block.is_null() {
            note(charge(layout.size()));
        }
        block
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a block this allocator (that is, `System`) returned with
        // this layout.
        unsafe { System.dealloc(block, layout) };
        note(-charge(layout.size()));
    }

    #[inline]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a block `System` returned with `layout`, and a valid size.
        let moved = unsafe { System.realloc(block, layout, new_size) };
        if !moved.is_null() {
            note(charge(new_size) - charge(layout.size()));
        }
        moved
    }
}

/// The bytes the process has allocated through Rust: the sum of every thread's slot (a load
/// per slot handed out). For INFO and for eviction near the limit, not every command.
pub(crate) fn allocated_bytes() -> u64 {
    let n_slots = NEXT_SLOT.load(Ordering::Relaxed).min(N_SLOTS);
    let total = SLOTS
        .iter()
        .take(n_slots)
        .map(|slot| slot.0.load(Ordering::Relaxed))
        .fold(SHARED.load(Ordering::Relaxed), i64::wrapping_add);
    u64::try_from(total).unwrap_or(0)
}

/// This thread's net allocated bytes (its slot; for a thread without one, the shared figure):
/// the difference across a removal is what the removal freed, whatever other threads did
/// meanwhile.
pub(crate) fn this_thread_bytes() -> i64 {
    let slot = LOCAL.try_with(|local| local.get().0).unwrap_or(UNASSIGNED);
    SLOTS.get(slot).map_or_else(
        || SHARED.load(Ordering::Relaxed),
        |own| own.0.load(Ordering::Relaxed),
    )
}

/// [`allocated_bytes`] within [`approx_error_bytes`]: one relaxed load, for the check before
/// every command.
pub(crate) fn approx_allocated_bytes() -> u64 {
    u64::try_from(APPROX.load(Ordering::Relaxed)).unwrap_or(0)
}

/// How far [`approx_allocated_bytes`] may be from the exact figure: one step per thread.
pub(crate) fn approx_error_bytes() -> u64 {
    let threads = NEXT_SLOT.load(Ordering::Relaxed).saturating_add(1);
    u64::try_from(threads)
        .unwrap_or(u64::MAX)
        .saturating_mul(APPROX_STEP.unsigned_abs())
}

/// Caps the arenas glibc's allocator may create at `max` (`mallopt(M_ARENA_MAX)`); 0 leaves
/// glibc's default. Called once at startup, before the runtime's threads exist: arenas already
/// created stay. Returns false if and only if glibc refused the setting.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn limit_arenas(max: usize) -> bool {
    let Ok(max) = libc::c_int::try_from(max) else {
        return false;
    };
    if max == 0 {
        return true;
    }
    #[allow(unsafe_code)]
    // SAFETY: `mallopt` takes two integers and changes a setting under glibc's own lock; it
    // touches no memory of the caller's and is safe to call at any time.
    let accepted = unsafe { libc::mallopt(libc::M_ARENA_MAX, max) };
    accepted == 1
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn limit_arenas(_max: usize) -> bool {
    true
}

/// glibc's own figures (`mallinfo2`), which count C allocations too. Costs a walk of the
/// arenas under their locks: INFO and MEMORY STATS only, never per command.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MallocFigures {
    /// Bytes in blocks handed out (`uordblks + hblkhd`).
    pub(crate) allocated: u64,
    /// Bytes in the arenas less the free top that `malloc_trim` could return (`keepcost`).
    pub(crate) active: u64,
    /// Bytes the allocator holds from the kernel (`arena + hblkhd`).
    pub(crate) resident: u64,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn malloc_figures() -> MallocFigures {
    #[allow(unsafe_code)]
    // SAFETY: `mallinfo2` takes no arguments and returns a plain struct by value; glibc
    // documents it as thread-safe (it takes each arena's lock in turn).
    let info = unsafe { libc::mallinfo2() };
    let to_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    MallocFigures {
        allocated: to_u64(info.uordblks).saturating_add(to_u64(info.hblkhd)),
        active: to_u64(info.arena)
            .saturating_sub(to_u64(info.keepcost))
            .saturating_add(to_u64(info.hblkhd)),
        resident: to_u64(info.arena).saturating_add(to_u64(info.hblkhd)),
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn malloc_figures() -> MallocFigures {
    MallocFigures::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_costs_what_glibc_gives() {
        assert_eq!(charge(0), 32);
        assert_eq!(charge(24), 32);
        assert_eq!(charge(25), 48);
        assert_eq!(charge(100), 112);
    }

    #[test]
    fn allocations_show_in_the_total_and_leave_it_when_freed() {
        let before = allocated_bytes();
        // Other tests allocate at the same time: a big block keeps their share in the noise.
        let big: Vec<u8> = vec![7; 64 << 20];
        let during = allocated_bytes();
        assert!(during >= before + (56 << 20), "{before} -> {during}");
        let approx = approx_allocated_bytes();
        assert!(approx.abs_diff(during) <= approx_error_bytes() + (8 << 20));
        drop(big);
        let after = allocated_bytes();
        assert!(after + (56 << 20) < during, "{during} -> {after}");
    }
}
