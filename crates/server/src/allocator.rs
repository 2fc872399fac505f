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
//! on every command. Each thread instead sums its changes in a thread-local cell and adds the sum
//! to the shared total only once it passes [`FLUSH_BYTES`] either way: the total is exact up to
//! `FLUSH_BYTES` per thread, and a command on the hot path pays a thread-local add. A thread
//! that exits leaves what it had not flushed out of the total (at most `FLUSH_BYTES`); the
//! server's threads are long-lived, so the drift stays in the noise.
//!
//! The one place in the server crate with an `unsafe impl`: `GlobalAlloc` is an unsafe trait.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, Ordering};

/// The counting wrapper around glibc's allocator.
struct Counting;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes a thread may hold back from [`FLUSHED`] either way.
const FLUSH_BYTES: i64 = 64 * 1024;

/// The sum of what every thread has flushed: the process's allocated bytes, up to
/// [`FLUSH_BYTES`] per thread.
static FLUSHED: AtomicI64 = AtomicI64::new(0);

thread_local! {
    /// This thread's changes not yet added to [`FLUSHED`]. Const-initialised and without a
    /// destructor, so reading it never allocates and works at any point of a thread's life.
    static PENDING: Cell<i64> = const { Cell::new(0) };
}

/// What glibc's chunk for a request of `size` bytes costs.
#[inline]
fn charge(size: usize) -> i64 {
    let chunk = (size.saturating_add(8 + 15) & !15).max(32);
    i64::try_from(chunk).unwrap_or(i64::MAX)
}

#[inline]
fn note(delta: i64) {
    let kept = PENDING.try_with(|pending| {
        let sum = pending.get() + delta;
        if sum.abs() >= FLUSH_BYTES {
            FLUSHED.fetch_add(sum, Ordering::Relaxed);
            pending.set(0);
        } else {
            pending.set(sum);
        }
    });
    if kept.is_err() {
        FLUSHED.fetch_add(delta, Ordering::Relaxed);
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

/// The bytes the process has allocated through Rust, as far as the threads have flushed them.
pub(crate) fn allocated_bytes() -> u64 {
    u64::try_from(FLUSHED.load(Ordering::Relaxed)).unwrap_or(0)
}

/// [`allocated_bytes`] with what this thread has not flushed yet: exact for this thread's own
/// allocations and frees, so a thread that frees memory sees it gone at once.
pub(crate) fn allocated_bytes_with_this_thread() -> u64 {
    let pending = PENDING.try_with(Cell::get).unwrap_or(0);
    u64::try_from(FLUSHED.load(Ordering::Relaxed) + pending).unwrap_or(0)
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
        drop(big);
        let after = allocated_bytes();
        assert!(after + (56 << 20) < during, "{during} -> {after}");
    }
}
