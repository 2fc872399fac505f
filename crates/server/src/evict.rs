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

use forkless_storage::EvictionRank;

use crate::allocator;
use crate::cmd::meta::{Flags, Gate};
use crate::cmd::{Client, Command};
use crate::config::MaxmemoryPolicy;
use crate::evict_pool::{Candidate, Pool};
use crate::server::{ClientHandle, Server};

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
    evict_clients_with(server, false)
}

/// [`evict_clients`]; `wait` says whether to wait for a pass that runs already (key eviction
/// does: the clients that pass closes must count as gone before it evicts keys).
fn evict_clients_with(server: &Server, wait: bool) -> usize {
    /// One pass at a time: connections that find the total over the limit together leave it
    /// to the one already evicting. A std mutex, a leaf but for the client registry taken
    /// under it; held for one O(clients) pass.
    static EVICTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let limit = server.tunables.maxmemory_clients.load(Ordering::Relaxed);
    if limit == 0 {
        return 0;
    }
    let _pass = if wait {
        crate::server::lock(&EVICTING)
    } else {
        let Ok(pass) = EVICTING.try_lock() else {
            return 0;
        };
        pass
    };
    let mut clients = server.clients.all();
    let (mut total, mut candidates) = client_figures(&clients);
    // Clients whose peers have closed their connections are not evicted: Redis has freed
    // them (`crate::hangup`).
    if total >= limit && server.clients.close_hung_up() {
        clients = server.clients.all();
        (total, candidates) = client_figures(&clients);
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

/// The memory of the normal and pub/sub clients among `clients` (each one's `tot-mem`,
/// summed), and those of them client eviction may close, with their memory.
fn client_figures(clients: &[std::sync::Arc<ClientHandle>]) -> (u64, Vec<(u64, &ClientHandle)>) {
    let mut total = 0u64;
    let mut candidates = Vec::new();
    for handle in clients {
        if crate::cmd::client::is_replication_link(handle) || handle.killed.load(Ordering::Acquire)
        {
            continue;
        }
        let (memory, evictable) = crate::cmd::client::eviction_figures(handle);
        total = total.saturating_add(memory);
        if evictable {
            candidates.push((memory, &**handle));
        }
    }
    (total, candidates)
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
/// backlog (what replicas pin, in allocated blocks, as Redis counts its shared buffer) and the
/// link tasks' copy buffers, tracking invalidations queued to connections (Redis writes those
/// before its next command; here connections write them concurrently with it), and what
/// clients evicted by `maxmemory-clients` hold until their connections close (Redis frees them
/// at once). Takes the save slot, the AOF state and the replication state in turn, none under
/// a shard lock, and each only while there is something to count (a cut outstanding, a writer
/// attached, replicas): otherwise a relaxed load each, so commands over the limit share no lock.
fn not_counted(server: &Server) -> u64 {
    server
        .keyspace
        .retained_bytes()
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
/// No global stop: each eviction adds a sample of each database (one shard's, under its read
/// lock) to this thread's eviction pool (`evict_pool.rs`), and removes the pool's best
/// candidate under its own shard's write lock, through a write
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
    let mut counted = counted_memory(server);
    // Over the limit: clients whose peers have closed their connections are closed first and
    // no longer count, as Redis has read every close before it runs this command
    // (`crate::hangup`).
    if counted > limit && server.clients.close_hung_up() {
        counted = counted_memory(server);
    }
    // Then client eviction, as Redis's `processCommand` runs `evictClients` before it evicts
    // keys: clients over `maxmemory-clients` go first, even those whose connections have not
    // yet accounted what other clients' commands queued to them (pub/sub messages). Counted
    // again even when this call closed nothing: it may have waited for a pass that closed
    // clients meanwhile (counted before that wait, keys were evicted for clients already gone).
    if counted > limit && server.tunables.maxmemory_clients.load(Ordering::Relaxed) != 0 {
        evict_clients_with(server, true);
        counted = counted_memory(server);
    }
    if counted <= limit {
        return false;
    }
    // As Redis: what to free is fixed here, and each eviction counts only what its own removal
    // freed. What an eviction causes besides (its notification, tracking invalidations queued
    // to clients, the effect stream's DEL) does not make this call evict more, or invalidation
    // messages would feed the eviction of the whole dataset.
    let to_free = counted - limit;
    let policy_code = server.tunables.maxmemory_policy.load(Ordering::Relaxed);
    let policy = policy_of_code(policy_code);
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
    let time_limit = time_limit(tenacity);
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
    let choice = Choice {
        policy: policy_code,
        volatile,
        rank,
        samples,
    };
    // Most calls free what they must with one eviction, so the clocks are read once more only
    // when another follows: the time limit counts from the end of the first eviction.
    let mut now_ms = crate::server::unix_ms();
    let mut started: Option<Instant> = None;
    let mut freed = 0u64;
    loop {
        let Some(bytes) = evict_one(server, choice, now_ms) else {
            return true;
        };
        freed = freed.saturating_add(bytes);
        if freed >= to_free {
            return false;
        }
        let started = *started.get_or_insert_with(Instant::now);
        if time_limit.is_some_and(|limit| started.elapsed() >= limit) {
            return false;
        }
        now_ms = crate::server::unix_ms();
    }
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

/// Sampling rounds one eviction makes before it gives up (every candidate of a round may have
/// been removed by other clients, or used since it was sampled, before it got to them).
const MAX_ROUNDS: usize = 8;

/// How long an eviction's random rounds skip a database it found empty. Sampling an empty
/// database costs a shard lock per sampled shard for nothing, and most of the 16 usually are
/// empty; a database filled meanwhile is sampled again once this has passed, and at once by
/// the walk of every shard that follows a round finding no key at all.
const EMPTY_DB_SKIP_MS: u64 = 100;

thread_local! {
    /// Per database, until when (unix ms) this thread's evictions skip it as empty.
    static EMPTY_UNTIL_MS: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };

    /// This thread's eviction pool (`evict_pool.rs`), taken out while it evicts.
    static POOL: std::cell::Cell<Pool> = const { std::cell::Cell::new(Pool::new()) };
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

/// How one eviction chooses: the policy's code (the pool's ranks hold under it only), which
/// keys, how they rank, and how many keys of each database to sample.
#[derive(Debug, Clone, Copy)]
struct Choice {
    policy: u8,
    volatile: bool,
    rank: EvictionRank,
    samples: usize,
}

/// Evicts one key: the best candidate of this thread's pool once every database has added a
/// sample of `maxmemory-samples` keys to it (as Redis's `performEvictions`; under a random
/// policy one key per database, since a random rank gains nothing from a bigger sample).
/// Returns the bytes its removal freed, or None if there was no key to evict.
fn evict_one(server: &Server, choice: Choice, now_ms: u64) -> Option<u64> {
    let mut pool = POOL.take();
    let freed = evict_from_pool(server, &mut pool, choice, now_ms);
    POOL.set(pool);
    freed
}

fn evict_from_pool(server: &Server, pool: &mut Pool, choice: Choice, now_ms: u64) -> Option<u64> {
    let Choice {
        policy,
        volatile,
        rank,
        samples,
    } = choice;
    pool.use_policy(policy);
    let per_db = if rank == EvictionRank::Random {
        1
    } else {
        samples
    };
    // Random shards first; a round that finds no key at all walks to each database's first
    // non-empty shard (a sparse dataset), and a walk that finds none means there is nothing
    // to evict. Candidates that other clients removed meanwhile only cost another round.
    let mut sparse = false;
    for _round in 0..MAX_ROUNDS {
        let mut sampled = 0;
        for (db_idx, db) in server.keyspace.dbs().iter().enumerate() {
            if sparse {
                sampled += pool.populate_sparse(db_idx, db, volatile, rank, per_db, now_ms);
            } else if !known_empty(db_idx, now_ms) {
                let found = pool.populate(db_idx, db, volatile, rank, per_db, now_ms);
                if found == 0 && db.is_empty() {
                    mark_empty(db_idx, now_ms);
                }
                sampled += found;
            }
        }
        while let Some(candidate) = pool.pop_best() {
            let freed = evict_key(server, &candidate, choice, now_ms);
            pool.recycle(candidate.key);
            if freed.is_some() {
                return freed;
            }
        }
        if sampled == 0 {
            if sparse {
                return None;
            }
            sparse = true;
        }
    }
    None
}

/// Removes a pool's candidate from its database as an eviction. Returns the bytes its removal
/// freed (this thread's allocations before and after, plus what a running snapshot now
/// retains of it, since that leaves the eviction's count), or None if it was spared: not
/// there to remove (another client may have deleted or evicted it since it was sampled),
/// without a TTL under a `volatile-*` policy, or ranked lower now than when it was sampled
/// (used since: its place in the pool is out of date).
fn evict_key(server: &Server, candidate: &Candidate, choice: Choice, now_ms: u64) -> Option<u64> {
    let (db_idx, key) = (candidate.db_idx, candidate.key.as_slice());
    let db = server.keyspace.db(db_idx)?;
    // Read outside the shard lock: the save slot comes before shard locks in the lock order.
    let retained_before = server.keyspace.retained_bytes();
    let own_before = allocator::this_thread_bytes();
    let mut guard = db.write(&[key], now_ms);
    let spare = guard.peek(key).is_none_or(|entry| {
        (choice.volatile && entry.expire_at_ms().is_none())
            || choice
                .rank
                .score(entry, now_ms)
                .is_some_and(|score| score < candidate.score)
    });
    if spare {
        // The look-up may have removed the key as expired: its DEL goes out all the same.
        drop(guard);
        crate::effects::after_eviction(server, db_idx, key);
        return None;
    }
    let removed = guard.remove(key);
    guard.shrink_if_sparse(key);
    drop(guard);
    let own_after = allocator::this_thread_bytes();
    let retained_after = server.keyspace.retained_bytes();
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
