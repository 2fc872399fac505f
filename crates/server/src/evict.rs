//! `maxmemory`: what the server counts as its memory, and eviction when it is over the limit.
//!
//! # Accounting
//! `used_memory` is what the counting allocator (`allocator.rs`) has handed out. Versions a
//! running snapshot retains are part of it, and are also shown on their own
//! (`mem_snapshot_retained`); like Redis's AOF buffer they are *not counted for eviction*
//! (`mem_not_counted_for_evict`): evicting a key the snapshot has not saved yet moves its value
//! into the retained versions and frees nothing until the snapshot has saved it, so counting
//! them would evict the dataset to pay for the snapshot. The limit the operator sets therefore
//! holds for the dataset, and the server runs past it by no more than the retained versions.
//!
//! The peak and the startup figure are kept here; the peak is sampled at INFO, at every
//! eviction check that finds the server over its limit, and by the server's cron.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::allocator;
use crate::server::Server;

/// `used_memory_peak`: the highest `used_memory` sampled.
static PEAK: AtomicU64 = AtomicU64::new(0);
/// `used_memory_startup`: `used_memory` once the server was built, before loading.
static STARTUP: AtomicU64 = AtomicU64::new(0);

/// The bytes the process has allocated, recorded in the peak.
pub(crate) fn used_memory() -> u64 {
    let used = allocator::allocated_bytes();
    PEAK.fetch_max(used, Ordering::Relaxed);
    used
}

/// Records `used_memory_startup`: called once, when the server is built.
pub(crate) fn record_startup() {
    STARTUP.store(used_memory(), Ordering::Relaxed);
}

/// What INFO's `# Memory` and MEMORY STATS report.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Figures {
    pub(crate) used: u64,
    pub(crate) peak: u64,
    pub(crate) startup: u64,
    /// Startup, client buffers and the keyspace's tables: what the dataset does not account for.
    pub(crate) overhead: u64,
    pub(crate) dataset: u64,
    pub(crate) clients_normal: u64,
    /// Versions a running snapshot retains.
    pub(crate) retained: u64,
    /// What the eviction check leaves out of `used` (the retained versions).
    pub(crate) not_counted_for_evict: u64,
    pub(crate) allocator: allocator::MallocFigures,
}

impl Figures {
    /// `used_memory_dataset_perc`: the dataset's share of what the server allocated since
    /// startup.
    pub(crate) fn dataset_percent(&self) -> f64 {
        percent(self.dataset, self.used.saturating_sub(self.startup))
    }

    /// `used_memory_peak_perc`.
    pub(crate) fn peak_percent(&self) -> f64 {
        percent(self.used, self.peak)
    }
}

#[expect(clippy::cast_precision_loss, reason = "a percentage for display")]
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Takes the figures: reads the allocator's statistics and each shard's table size, so it is
/// for INFO and MEMORY STATS, not the command path.
pub(crate) fn figures(server: &Server) -> Figures {
    let used = used_memory();
    let startup = STARTUP.load(Ordering::Relaxed);
    let clients_normal: u64 = server
        .clients
        .all()
        .iter()
        .map(|client| client.info.buffer_bytes())
        .sum();
    let keyspace_overhead: u64 = server
        .keyspace
        .dbs()
        .iter()
        .map(forkless_storage::Db::overhead_bytes)
        .sum();
    let retained = server.keyspace.retained().bytes;
    let overhead = startup
        .saturating_add(clients_normal)
        .saturating_add(keyspace_overhead);
    Figures {
        used,
        peak: PEAK.load(Ordering::Relaxed).max(used),
        startup,
        overhead,
        dataset: used.saturating_sub(overhead),
        clients_normal,
        retained,
        not_counted_for_evict: retained,
        allocator: allocator::malloc_figures(),
    }
}
