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
use std::time::{Duration, Instant};

use bytes::Bytes;
use forkless_storage::{EvictionRank, N_SHARDS};
use rand::Rng;

use crate::allocator;
use crate::cmd::meta::{Flags, Gate};
use crate::cmd::{Client, Command};
use crate::config::MaxmemoryPolicy;
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
    /// Bytes rendered for the AOF, not yet written.
    pub(crate) aof_buffer: u64,
    /// What the eviction check leaves out of `used` (`not_counted`).
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
    let aof_buffer = crate::aof::buffered_bytes(server);
    let overhead = startup
        .saturating_add(clients_normal)
        .saturating_add(keyspace_overhead)
        .saturating_add(aof_buffer);
    Figures {
        used,
        peak: PEAK.load(Ordering::Relaxed).max(used),
        startup,
        overhead,
        dataset: used.saturating_sub(overhead),
        clients_normal,
        retained,
        aof_buffer,
        not_counted_for_evict: retained
            .saturating_add(aof_buffer)
            .saturating_add(server.replication.not_counted_for_evict())
            .saturating_add(server.tracking.queued_bytes())
            .saturating_add(server.clients.dying_bytes()),
        allocator: allocator::malloc_figures(),
    }
}

// ---------------------------------------------------------------------------------------------
// Client eviction (`maxmemory-clients`).

/// `maxmemory-clients` in bytes: an absolute figure, or (stored as `N%`) that percentage of
/// `maxmemory`; 0 is off.
pub(crate) fn client_eviction_limit(setting: &[u8], maxmemory: u64) -> u64 {
    let text = std::str::from_utf8(setting).unwrap_or_default().trim();
    match text.strip_suffix('%') {
        Some(percent) => percent
            .parse::<u64>()
            .map_or(0, |p| maxmemory.saturating_mul(p) / 100),
        None => text.parse().unwrap_or(0),
    }
}

/// Redis 7.0's client eviction, run by the server's cron: while the memory of the normal and
/// pub/sub clients (CLIENT LIST's `tot-mem`, summed) is at or over `maxmemory-clients`, closes
/// the client using the most, skipping those with CLIENT NO-EVICT on. Replicas and a master
/// link are neither counted nor closed. Returns how many clients it closed.
///
/// Redis keeps clients in memory buckets; here a connection whose figures bring the running
/// total (`Clients::memory`) to the limit, and the cron every tick, make one O(clients) pass
/// that finds the same clients, largest first, from their figures as they are now.
pub(crate) fn evict_clients(server: &Server) -> usize {
    /// One pass at a time: connections that find the total over the limit together leave it
    /// to the one already evicting.
    static EVICTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let limit = server.tunables.maxmemory_clients.load(Ordering::Relaxed);
    if limit == 0 {
        return 0;
    }
    let Ok(_pass) = EVICTING.try_lock() else {
        return 0;
    };
    let clients = server.clients.all();
    let mut total = 0u64;
    let mut candidates = Vec::new();
    for handle in &clients {
        if crate::cmd::client::is_replication_link(handle) || handle.killed.load(Ordering::Acquire)
        {
            continue;
        }
        let (memory, evictable) = crate::cmd::client::eviction_figures(handle);
        total = total.saturating_add(memory);
        if evictable {
            candidates.push((memory, handle));
        }
    }
    if total < limit {
        return 0;
    }
    candidates.sort_by_key(|candidate| std::cmp::Reverse(candidate.0));
    let mut evicted = 0;
    for (memory, handle) in candidates {
        if total < limit {
            break;
        }
        tracing::info!(
            client = handle.id,
            addr = %handle.addr,
            memory,
            limit,
            "Evicting client: client memory over maxmemory-clients"
        );
        handle.kill();
        server.clients.note_dying(handle, memory);
        server.stats.evicted_clients.fetch_add(1, Ordering::Relaxed);
        total = total.saturating_sub(memory);
        evicted += 1;
    }
    evicted
}

// ---------------------------------------------------------------------------------------------
// Eviction.

/// `maxmemory-policy` as `Tunables::maxmemory_policy` holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    NoEviction,
    /// Evict among every key (`allkeys-*`) or only those with a TTL (`volatile-*`), ranked so.
    Evict {
        volatile: bool,
        rank: EvictionRank,
    },
}

const POLICIES: [(MaxmemoryPolicy, Policy); 8] = {
    use EvictionRank::{Clock, Random, Ttl};
    const fn evict(volatile: bool, rank: EvictionRank) -> Policy {
        Policy::Evict { volatile, rank }
    }
    [
        (MaxmemoryPolicy::Noeviction, Policy::NoEviction),
        (MaxmemoryPolicy::AllkeysLru, evict(false, Clock)),
        (MaxmemoryPolicy::AllkeysLfu, evict(false, Clock)),
        (MaxmemoryPolicy::AllkeysRandom, evict(false, Random)),
        (MaxmemoryPolicy::VolatileLru, evict(true, Clock)),
        (MaxmemoryPolicy::VolatileLfu, evict(true, Clock)),
        (MaxmemoryPolicy::VolatileRandom, evict(true, Random)),
        (MaxmemoryPolicy::VolatileTtl, evict(true, Ttl)),
    ]
};

/// The code `Tunables::maxmemory_policy` stores for `policy`.
pub(crate) fn policy_code(policy: MaxmemoryPolicy) -> u8 {
    POLICIES
        .iter()
        .position(|(p, _)| *p == policy)
        .and_then(|idx| u8::try_from(idx).ok())
        .unwrap_or(0)
}

fn policy_of_code(code: u8) -> Policy {
    POLICIES
        .get(usize::from(code))
        .map_or(Policy::NoEviction, |(_, policy)| *policy)
}

/// Returns true if and only if `policy` ranks keys by the LFU counter (the access clocks then
/// count frequency, `forkless_storage::access`).
pub(crate) fn policy_is_lfu(policy: MaxmemoryPolicy) -> bool {
    matches!(
        policy,
        MaxmemoryPolicy::AllkeysLfu | MaxmemoryPolicy::VolatileLfu
    )
}

/// Redis 7.0's reply to a command refused for memory.
pub(crate) const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// Redis's `evictionTimeLimitUs`: how long one call may evict, from
/// `maxmemory-eviction-tenacity` (0..=100; 100 is no limit).
fn time_limit(tenacity: u64) -> Option<Duration> {
    if tenacity <= 10 {
        return Some(Duration::from_micros(50 * tenacity));
    }
    if tenacity < 100 {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a bounded time"
        )]
        let micros = (500.0 * 1.15f64.powi(i32::try_from(tenacity - 10).unwrap_or(90))) as u64;
        return Some(Duration::from_micros(micros));
    }
    None
}

/// What counts against `maxmemory` now: `used_memory` less what is not counted for eviction.
fn counted_memory(server: &Server) -> u64 {
    used_memory().saturating_sub(not_counted(server))
}

/// Redis's `freeMemoryGetNotCountedMemory`, with forkless's retained versions: what a running
/// snapshot retains, the AOF's unwritten buffer, the replication stream's memory beyond the
/// backlog (what replicas pin, in allocated blocks, as Redis counts its shared buffer), and tracking invalidations queued to connections (Redis writes those
/// before its next command; here connections write them concurrently with it), and what
/// clients evicted by `maxmemory-clients` hold until their connections close (Redis frees them
/// at once). Takes the save slot, the AOF state and the replication state in turn, none under
/// a shard lock.
fn not_counted(server: &Server) -> u64 {
    server
        .keyspace
        .retained()
        .bytes
        .saturating_add(crate::aof::buffered_bytes(server))
        .saturating_add(server.replication.not_counted_for_evict())
        .saturating_add(server.tracking.queued_bytes())
        .saturating_add(server.clients.dying_bytes())
}

/// Redis's `performEvictions`, called before a command that may need memory: when the server
/// is over `maxmemory`, evicts keys by the policy until it is under, or until the tenacity's
/// time is up (the command then runs and the next one goes on evicting). Returns true if and
/// only if the server is over the limit and nothing could be evicted (or the policy is
/// `noeviction`): the caller refuses the command if it is one that needs memory.
///
/// No global stop: each eviction samples a few shards of each database under their read
/// locks, and removes the best candidate under its own shard's write lock, through a write
/// guard like a DEL, so WATCH, the retain hook of a running snapshot, the effect stream and
/// keyspace notifications see it as any deletion. The caller holds the command gate shared (or
/// nothing that excludes it), so no eviction falls inside a transaction or a script.
fn perform_evictions(server: &Server, gate_held: bool) -> bool {
    let limit = server.tunables.maxmemory.load(Ordering::Relaxed);
    // A replica leaves eviction to its master (`replica-ignore-maxmemory yes`, the default):
    // the master's DELs keep the datasets equal.
    if server
        .tunables
        .replica_ignore_maxmemory
        .load(Ordering::Relaxed)
        && server.replication.replica.is_replica()
    {
        return false;
    }
    // The approximate figure settles most commands with one load; near the limit the exact
    // sum decides.
    if limit == 0
        || allocator::approx_allocated_bytes()
            <= limit.saturating_sub(allocator::approx_error_bytes())
    {
        return false;
    }
    let counted = counted_memory(server);
    if counted <= limit {
        return false;
    }
    // As Redis: what to free is fixed here, and each eviction counts only what its own removal
    // freed. What an eviction causes besides (its notification, tracking invalidations queued
    // to clients, the effect stream's DEL) does not make this call evict more, or invalidation
    // messages would feed the eviction of the whole dataset.
    let to_free = counted - limit;
    let policy = policy_of_code(server.tunables.maxmemory_policy.load(Ordering::Relaxed));
    let Policy::Evict { volatile, rank } = policy else {
        return true;
    };
    let samples = usize::try_from(server.tunables.maxmemory_samples.load(Ordering::Relaxed))
        .unwrap_or(5)
        .clamp(1, 64);
    let tenacity = server
        .tunables
        .maxmemory_eviction_tenacity
        .load(Ordering::Relaxed);
    let deadline = time_limit(tenacity).map(|limit| Instant::now() + limit);
    // A command that takes the gate itself (EXEC, a script) evicts under the gate shared; if a
    // transaction or script holds it now, this command waits for it anyway: evict next time.
    let _gate = if gate_held {
        None
    } else {
        match server.keyspace.gate().try_shared() {
            Some(gate) => Some(gate),
            None => return false,
        }
    };
    let mut candidates = Vec::new();
    let mut freed = 0u64;
    while freed < to_free {
        let now_ms = crate::server::unix_ms();
        let Some(bytes) = evict_one(server, volatile, rank, samples, now_ms, &mut candidates)
        else {
            return true;
        };
        freed = freed.saturating_add(bytes);
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            break;
        }
    }
    false
}

thread_local! {
    /// Redis's `pre_command_oom_state`: whether the command this thread runs found the server
    /// out of memory before it started. A script's `redis.call` of a command that needs memory
    /// is refused when it was, until the script has written something (`scripting/engine.rs`).
    static PRE_COMMAND_OOM: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Returns true if and only if the running command found the server out of memory before it
/// started (see [`PRE_COMMAND_OOM`]).
pub(crate) fn pre_command_oom() -> bool {
    PRE_COMMAND_OOM.with(std::cell::Cell::get)
}

/// The maxmemory step of Redis's `processCommand`, before a command runs with `maxmemory` set:
/// evicts what the policy allows, then returns true if and only if the command must be
/// refused with [`OOM`]: the server is still over the limit and the command needs memory
/// (`denyoom`, EXEC of a queue holding one, or any command queued inside MULTI but EXEC,
/// DISCARD and the others that run there). `gate_held` says whether the caller holds the
/// command gate shared.
pub(crate) fn refuse_for_memory(
    server: &Server,
    client: &Client,
    command: &Command,
    gate_held: bool,
) -> bool {
    let out_of_memory = perform_evictions(server, gate_held);
    PRE_COMMAND_OOM.with(|state| state.set(out_of_memory));
    if !out_of_memory {
        return false;
    }
    if command.has_flag(Flags::DENYOOM) {
        return true;
    }
    match &client.multi {
        Some(_) if !command.has_flag(Flags::RUNS_IN_MULTI) => true,
        // EXEC (runs in MULTI, takes the gate itself): refused if it would run one.
        Some(queue) if command.gate == Gate::Exclusive => queue.iter().any(|argv| {
            argv.first()
                .and_then(|name| crate::cmd::lookup(name))
                .is_some_and(|(_, queued)| queued.has_flag(Flags::DENYOOM))
        }),
        _ => false,
    }
}

/// Shards of each database one eviction samples before it falls back to a walk of every shard.
const SHARDS_PER_ROUND: usize = 4;
/// Sampling rounds one eviction makes before it gives up (every candidate of a round may have
/// been removed by other clients before it got to them).
const MAX_ROUNDS: usize = 8;

/// How long an eviction's random rounds skip a database it found empty. Sampling an empty
/// database costs a shard lock per sampled shard for nothing, and most of the 16 usually are
/// empty; a database filled meanwhile is sampled again once this has passed, and at once by
/// the walk of every shard that follows a round finding no key at all.
const EMPTY_DB_SKIP_MS: u64 = 100;

thread_local! {
    /// Per database, until when (unix ms) this thread's evictions skip it as empty.
    static EMPTY_UNTIL_MS: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn known_empty(db_idx: usize, now_ms: u64) -> bool {
    EMPTY_UNTIL_MS.with_borrow(|until| until.get(db_idx).is_some_and(|&until| now_ms < until))
}

fn mark_empty(db_idx: usize, now_ms: u64) {
    EMPTY_UNTIL_MS.with_borrow_mut(|until| {
        if until.len() <= db_idx {
            until.resize(db_idx + 1, 0);
        }
        if let Some(slot) = until.get_mut(db_idx) {
            *slot = now_ms.saturating_add(EMPTY_DB_SKIP_MS);
        }
    });
}

/// Evicts one key: the best-ranked of a sample from every database. Returns the bytes its
/// removal freed, or None if there was no key to evict.
fn evict_one(
    server: &Server,
    volatile: bool,
    rank: EvictionRank,
    samples: usize,
    now_ms: u64,
    candidates: &mut Vec<(u64, usize, Bytes)>,
) -> Option<u64> {
    let mut rng = rand::rng();
    let mut sampled = Vec::new();
    // Random shards first; a round that finds no key at all walks to each database's first
    // non-empty shard (a sparse dataset), and a walk that finds none means there is nothing
    // to evict. Candidates that other clients removed meanwhile only cost another round.
    let mut sparse = false;
    for _round in 0..MAX_ROUNDS {
        candidates.clear();
        for (db_idx, db) in server.keyspace.dbs().iter().enumerate() {
            sampled.clear();
            if sparse {
                if let Some(shard) = (0..N_SHARDS).find(|&idx| db.shard_has_keys(idx, volatile)) {
                    db.eviction_candidates(shard, volatile, rank, samples, now_ms, &mut sampled);
                }
            } else {
                if known_empty(db_idx, now_ms) {
                    continue;
                }
                for _ in 0..SHARDS_PER_ROUND {
                    let shard = rng.random_range(0..N_SHARDS);
                    db.eviction_candidates(shard, volatile, rank, samples, now_ms, &mut sampled);
                }
                if sampled.is_empty() && db.is_empty() {
                    mark_empty(db_idx, now_ms);
                }
            }
            candidates.extend(sampled.drain(..).map(|(score, key)| (score, db_idx, key)));
        }
        if candidates.is_empty() {
            if sparse {
                return None;
            }
            sparse = true;
            continue;
        }
        candidates.sort_unstable_by_key(|candidate| std::cmp::Reverse(candidate.0));
        for (_, db_idx, key) in candidates.drain(..) {
            if let Some(freed) = evict_key(server, db_idx, &key, volatile, now_ms) {
                return Some(freed);
            }
        }
    }
    None
}

/// Removes `key` from database `db_idx` as an eviction. Returns the bytes its removal freed
/// (this thread's allocations before and after, plus what a running snapshot now retains of
/// it, since that leaves the eviction's count), or None if it was not there to remove
/// (another client may have deleted or evicted it since it was sampled).
fn evict_key(
    server: &Server,
    db_idx: usize,
    key: &[u8],
    volatile: bool,
    now_ms: u64,
) -> Option<u64> {
    let db = server.keyspace.db(db_idx)?;
    // Read outside the shard lock: the save slot comes before shard locks in the lock order.
    let retained_before = server.keyspace.retained().bytes;
    let own_before = allocator::this_thread_bytes();
    let mut guard = db.write(&[key], now_ms);
    if volatile
        && guard
            .get(key)
            .is_none_or(|entry| entry.expire_at_ms().is_none())
    {
        // The look-up may have removed the key as expired: its DEL goes out all the same.
        drop(guard);
        crate::effects::after_eviction(server, db_idx, key);
        return None;
    }
    let removed = guard.remove(key);
    guard.shrink_if_sparse(key);
    drop(guard);
    let own_after = allocator::this_thread_bytes();
    let retained_after = server.keyspace.retained().bytes;
    crate::effects::after_eviction(server, db_idx, key);
    if !removed {
        return None;
    }
    server.stats.evicted_keys.fetch_add(1, Ordering::Relaxed);
    crate::notify::notify_db(
        server,
        crate::config::notify_class::EVICTED,
        "evicted",
        key,
        db_idx,
    );
    if server.tracking.active() {
        crate::cmd::tracking::invalidate(server, 0, &[key]);
    }
    let own_freed = u64::try_from(own_before.saturating_sub(own_after)).unwrap_or(0);
    Some(own_freed.saturating_add(retained_after.saturating_sub(retained_before)))
}
