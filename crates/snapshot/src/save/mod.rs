//! Running one snapshot: traversal, serialization, compression and writing.
//!
//! # Layout
//! - `mod.rs` (this file): the orchestration: [`save`] (a BGSAVE's file), [`save_to_sinks`]
//!   (one cut to any number of sinks), [`save_frozen`] (a fork child's save), one database's
//!   workers, and the options, progress and errors.
//! - `worker.rs`: the traversal threads and the sweeper.
//! - `pace.rs`: how the traversal yields to busy clients (the load gate and the pace).
//! - `output.rs`: chunks, their buffers and zstd frames, and the writer side that feeds the
//!   sinks.
//!
//! ```text
//!   Keyspace::begin_snapshot (the cut, on the caller's thread)
//!        │
//!        ▼  for each database with keys at the cut, in order:
//!   writer thread ── header / SELECTDB ──────────────────────────────► Sink (backend/*)
//!        ▲                                                              ▲
//!        │ bounded channel of chunks (whole entries, ~1 MiB each)       │
//!   traversal threads (SCHED_IDLE or a nice value): claim a shard → scan_shard steps → write_entry
//!   sweeper (the writer's priority): retained versions → write_entry
//!        each chunk: CRC, [zstd frame] → channel
//! ```
//!
//! Entries of one database may be written in any order, so the workers never wait for one
//! another: each sends a chunk as soon as it holds a MiB of whole entries, and the writer
//! writes chunks in arrival order. Databases are done one after the other, because an RDB file
//! groups keys under their SELECTDB. The CRC64 covers the uncompressed stream in write order: each
//! worker checksums its own chunks, and the writer chains the chunk CRCs in the order it
//! writes them (`Checksum::combine`, O(log n) per chunk), so checksumming runs in parallel and
//! the writer thread only moves bytes. With zstd each chunk is an independent frame, compressed
//! by the worker that produced it, so compression runs in parallel too.
//!
//! Memory: each worker holds at most one step's cloned-out entries and one chunk; the
//! channel holds at most `2 × threads` chunks. When a shard is done, the versions it still
//! retained are encoded and dropped. Meanwhile the sweeper takes the retained lists of every
//! shard still being saved (`Keyspace::take_retained`) whenever some are pending
//! (`SnapshotCut::pending_retained_bytes`), and saves and frees them at once: an old version
//! lives for about one sweep, however far the traversal is from its shard and however slowly
//! the traversal goes. That is what lets the traversal run at a low priority (`SCHED_IDLE`)
//! and yield to the clients under load without costing memory.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use forkless_storage::{
    FrozenKeyspace, Keyspace, N_SHARDS, ShardCursor, ShardImage, SnapshotCut, Value, Visit,
};

use crate::backend::{self, BackendError, Sink, Target, WriterKind, WriterUsed};
use crate::format::{self, Checksum, EncodeOptions};

mod output;
mod pace;
mod worker;

use output::{BufferPool, Chunk, FrameCompressor, Output};
use worker::{Claims, StopOnPanic, Traverser, Worker, lower_thread_priority};

/// A serializer sends its chunk once it holds this many bytes (or its shard is done).
const CHUNK_BYTES: usize = 1 << 20;

/// Buckets one traversal step examines under a shard's lock.
///
/// Steps are short because a traversal thread at a low priority can lose its core while it
/// holds the lock, and a client thread that needs that shard then waits for it: 16 buckets and
/// 8 KiB hold the lock for a few microseconds. Longer steps (256 buckets, 128 KiB) cost the
/// clients a clear share of their throughput during a save under `SCHED_IDLE`
/// (docs/benchmarks.md, "The traversal yields its CPU").
const STEP_BUCKETS: usize = 16;

/// A traversal step ends once it has encoded this many bytes under the lock.
const STEP_BYTES: usize = 8 << 10;

/// Strings up to this size are encoded under the shard lock, straight from the table; bigger
/// values, and every collection, are cloned out (a reference count) and encoded after it.
const ENCODE_UNDER_LOCK_BYTES: usize = 16 << 10;

/// A chunk buffer's capacity: a chunk ends with the entry that crossed `CHUNK_BYTES`.
const CHUNK_CAPACITY: usize = CHUNK_BYTES + CHUNK_BYTES / 4;

/// Whole-stream compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain RDB.
    None,
    /// Every chunk an independent zstd frame at this level.
    Zstd {
        /// zstd level (1..=22).
        level: i32,
    },
}

/// The scheduling of the traversal threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraversalPriority {
    /// `SCHED_IDLE` (`snapshot-idle-priority yes`): they run on CPU time no other thread
    /// wants, and a client thread that wakes up takes their core at once. When the clients are
    /// idle the traversal still gets every core; under full load it crawls, and the save moves
    /// on mostly through the sweeper. Falls back to nice 19 if the policy cannot be set.
    Idle,
    /// A nice value (`snapshot-nice`, 0 = the clients' priority, 19 = lowest).
    Nice(i32),
}

/// How many commands the clients have had served so far (a count that only grows), so that the
/// save can tell a busy server from an idle one.
#[derive(Clone)]
pub struct ClientActivity(Arc<dyn Fn() -> u64 + Send + Sync>);

impl ClientActivity {
    /// `served` returns the count so far.
    pub fn new(served: impl Fn() -> u64 + Send + Sync + 'static) -> ClientActivity {
        ClientActivity(Arc::new(served))
    }

    fn served(&self) -> u64 {
        (self.0)()
    }
}

impl std::fmt::Debug for ClientActivity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ClientActivity")
            .field(&self.served())
            .finish()
    }
}

/// Everything a save needs to know besides the keyspace.
#[derive(Debug, Clone)]
pub struct SaveOptions {
    /// Where the file goes.
    pub target: Target,
    /// Which writer backend to use.
    pub writer: WriterKind,
    /// `rdbcompression`: LZF-compress long strings.
    pub compress_strings: bool,
    /// `rdbchecksum`: write the CRC64 (otherwise zero, as Redis does).
    pub checksum: bool,
    /// Whole-stream compression.
    pub compression: Compression,
    /// Serializer threads (at least 1).
    pub threads: usize,
    /// Throttle for the writer; 0 means unlimited.
    pub max_bytes_per_sec: u64,
    /// Bytes between fsyncs while the file is written through the page cache, so the kernel
    /// never holds much of it dirty (Redis's `rdb-save-incremental-fsync` and
    /// `aof-rewrite-incremental-fsync`: 4 MiB); 0: one fsync, at the commit. The fork
    /// backend's sink acts on it; the epoch writers write with `O_DIRECT`, leaving nothing
    /// dirty to flush.
    pub fsync_every: u64,
    /// How the traversal threads yield to the threads serving clients. The sweeper of
    /// retained versions and the writer keep the calling thread's priority, so that memory
    /// stays bounded however slowly the traversal goes.
    pub priority: TraversalPriority,
    /// With [`TraversalPriority::Idle`]: the clients' command count. While the clients are
    /// busy, every traversal thread but the first waits between shards (see [`LoadGate`]).
    pub activity: Option<ClientActivity>,
    /// The `used-mem` aux field.
    pub used_mem: u64,
    /// The `ctime` aux field, seconds since the Unix epoch.
    pub ctime_unix_secs: u64,
    /// Redis Functions libraries as of the cut, each the code `FUNCTION LOAD` was given;
    /// written after the aux fields.
    pub functions: Vec<Vec<u8>>,
    /// The replication fields (`repl-stream-db`, `repl-id`, `repl-offset`), when the server
    /// has a replication history the cut belongs to.
    pub repl: Option<format::ReplAux>,
    /// Redis's `rdb-key-save-delay`, a debugging option for tests that need a save to last:
    /// microseconds the traversal waits per key saved (0 or less: none). Read as the save
    /// goes, so that a change acts on a running save.
    pub key_delay: Option<Arc<AtomicI64>>,
}

/// Live progress of a save, readable from other threads (INFO).
#[derive(Debug, Default)]
pub struct Progress {
    /// Keys serialized so far.
    pub keys_processed: AtomicU64,
    /// Of those, keys saved ahead of their shard: versions retained because they were
    /// overwritten or deleted after the cut, taken by a sweep before the traversal got there.
    pub keys_saved_early: AtomicU64,
    /// Keys at the cut (an upper bound: includes keys expired but not yet reclaimed).
    pub keys_total: AtomicU64,
    /// Bytes handed to the writer backend so far.
    pub bytes_written: AtomicU64,
    /// Shards whose traversal is done.
    pub shards_done: AtomicUsize,
    /// Shards to serialize.
    pub shards_total: AtomicUsize,
    /// Set to make the save stop early and fail with [`SaveError::Cancelled`].
    pub cancel: AtomicBool,
}

/// What a successful save did.
#[derive(Debug, Clone)]
pub struct SaveReport {
    /// Keys written.
    pub keys_saved: u64,
    /// Of those, keys saved ahead of their shard by a sweep of retained versions.
    pub keys_saved_early: u64,
    /// Bytes in the file.
    pub bytes_written: u64,
    /// Which writer wrote them.
    pub writer: WriterUsed,
    /// Why io_uring was not used, when the automatic choice fell back.
    pub fallback_reason: Option<String>,
    /// Wall time from the cut to the rename.
    pub duration: Duration,
}

/// Why a save failed. The previous snapshot file is untouched in every case.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The writer backend failed (open, write, fsync, rename, directory fsync).
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// zstd compression failed.
    #[error("zstd compression failed: {0}")]
    Compress(#[source] std::io::Error),
    /// A serializer thread could not be started.
    #[error("could not start a serializer thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// A serializer thread panicked (a bug): the file would be incomplete, so the save fails.
    #[error("a serializer thread panicked; the save is abandoned")]
    SerializerPanicked,
    /// The save was cancelled (server shutdown, FLUSHALL with a save running is not one).
    #[error("snapshot cancelled")]
    Cancelled,
}
/// Runs the snapshot of `cut` to completion and ends it (`Keyspace::end_snapshot`), whatever the
/// outcome. Blocks the calling thread; serializers run on `options.threads` scoped threads.
pub fn save(
    keyspace: &Keyspace,
    cut: SnapshotCut,
    options: &SaveOptions,
    progress: &Progress,
) -> Result<SaveReport, SaveError> {
    let opened = backend::open(options.writer, &options.target);
    let (sink, writer, fallback_reason) = match opened {
        Ok(opened) => opened,
        Err(err) => {
            keyspace.end_snapshot(cut);
            return Err(err.into());
        }
    };
    let mut report = save_to_sinks(keyspace, cut, options, progress, vec![sink])?;
    let bytes_written = report.sinks.pop().unwrap_or(Ok(0))?;
    Ok(SaveReport {
        keys_saved: report.keys_saved,
        keys_saved_early: report.keys_saved_early,
        bytes_written,
        writer,
        fallback_reason,
        duration: report.duration,
    })
}

/// What a save to several sinks did ([`save_to_sinks`]).
#[derive(Debug)]
pub struct FanOutReport {
    /// Keys written to every sink that completed.
    pub keys_saved: u64,
    /// Of those, keys saved ahead of their shard by a sweep of retained versions.
    pub keys_saved_early: u64,
    /// Wall time from the start of the save to the last sink's finish.
    pub duration: Duration,
    /// Each sink's outcome, in the order the sinks were given: the bytes it took and finished
    /// ([`Sink::finish`]), or the error that made it drop out (it was aborted then).
    pub sinks: Vec<Result<u64, BackendError>>,
}

/// Runs the snapshot of `cut` into every one of `sinks` with one traversal: each chunk of the
/// stream is encoded, checksummed and compressed once and written to every sink in the same
/// order, so all of them receive the same bytes (a BGSAVE's file, an AOF base file and
/// replicas' sockets asked for at the same time share one cut, as Redis shares one fork
/// between replicas that wait together). A sink that fails is aborted and drops out; the
/// others go on. Ends the snapshot (`Keyspace::end_snapshot`) whatever the outcome.
///
/// Err when the stream itself failed (cancelled, a serializer failed, or every sink dropped
/// out: the last one's error); every sink is aborted then.
pub fn save_to_sinks(
    keyspace: &Keyspace,
    cut: SnapshotCut,
    options: &SaveOptions,
    progress: &Progress,
    sinks: Vec<Box<dyn Sink>>,
) -> Result<FanOutReport, SaveError> {
    let result = save_inner(keyspace, &cut, options, progress, sinks);
    keyspace.end_snapshot(cut);
    result
}

fn save_inner(
    keyspace: &Keyspace,
    cut: &SnapshotCut,
    options: &SaveOptions,
    progress: &Progress,
    sinks: Vec<Box<dyn Sink>>,
) -> Result<FanOutReport, SaveError> {
    let started = Instant::now();
    let dbs_with_keys: Vec<usize> = cut
        .db_sizes()
        .iter()
        .enumerate()
        .filter(|(_, s)| s.keys > 0)
        .map(|(i, _)| i)
        .collect();
    let keys_total: usize = cut.db_sizes().iter().map(|s| s.keys).sum();
    progress
        .keys_total
        .store(keys_total as u64, Ordering::Relaxed);
    progress
        .shards_total
        .store(dbs_with_keys.len() * N_SHARDS, Ordering::Relaxed);

    // Enough for every chunk that can be in flight: the channel's and one per serializer.
    let pool = BufferPool::new(3 * options.threads.max(1) + 1);
    let mut out = Output::new(sinks, options, progress, &pool);
    let encode = EncodeOptions {
        compress_strings: options.compress_strings,
    };

    let written = (|| {
        // The header and each SELECTDB: small chunks of their own, on this thread.
        let mut zstd = FrameCompressor::default();
        let mut header = Vec::new();
        format::write_header(
            &mut header,
            options.ctime_unix_secs,
            options.used_mem,
            options.repl.as_ref(),
        );
        for code in &options.functions {
            format::write_function(&mut header, code);
        }
        out.write(Chunk::new(header, options, &pool, &mut zstd)?)?;
        for &db_idx in &dbs_with_keys {
            let stats = cut.db_sizes().get(db_idx).copied().unwrap_or_default();
            let mut db_header = Vec::new();
            format::write_db_header(
                &mut db_header,
                u32::try_from(db_idx).unwrap_or(u32::MAX),
                stats.keys as u64,
                stats.expires as u64,
            );
            out.write(Chunk::new(db_header, options, &pool, &mut zstd)?)?;
            serialize_db(
                keyspace, cut, db_idx, &encode, options, progress, &pool, &mut out,
            )?;
        }
        out.write_eof(options)
    })();
    let sinks = out.commit(written)?;
    Ok(FanOutReport {
        keys_saved: progress.keys_processed.load(Ordering::Relaxed),
        keys_saved_early: progress.keys_saved_early.load(Ordering::Relaxed),
        duration: started.elapsed(),
        sinks,
    })
}

/// Serializes every shard of one database, writing chunks as they arrive. Returns the first
/// error; on error, the workers stop at their next chunk.
///
/// Two kinds of worker share the database:
/// - `options.threads` traversal threads (`forkless-snap-N`), scheduled as `options.priority`
///   says, claim shards one at a time and walk them in steps;
/// - one sweeper (`forkless-sweep`), at the save thread's priority, saves and frees the versions
///   retained since the cut (`Keyspace::take_retained`) in every shard, until the traversal is
///   done.
///
/// The split is what lets the traversal yield to the clients without costing memory: a
/// traversal that the kernel starves under load only makes the save longer, while what
/// memory depends on (how long an overwritten version waits to be saved) is the sweeper's
/// job, and the sweeper's work is bounded by the rate of overwrites, not by the dataset.
#[expect(
    clippy::too_many_arguments,
    reason = "one database's share of the save's borrowed context"
)]
fn serialize_db(
    keyspace: &Keyspace,
    cut: &SnapshotCut,
    db_idx: usize,
    encode: &EncodeOptions,
    options: &SaveOptions,
    progress: &Progress,
    pool: &BufferPool,
    out: &mut Output,
) -> Result<(), SaveError> {
    let threads = options.threads.max(1);
    let faults = backend::Overrides::from_env()
        .ok()
        .and_then(|overrides| overrides.faults);
    let claims = Claims {
        traversers_left: AtomicUsize::new(threads),
        panic_injected: faults.as_ref().is_some_and(|plan| plan.serializer_panic),
        traversal_hold: faults
            .and_then(|plan| plan.traversal_hold_ms)
            .map(Duration::from_millis),
        ..Claims::default()
    };
    let failed = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Result<Chunk, SaveError>>(2 * threads);
        let mut handles = Vec::with_capacity(threads + 1);
        for role in (0..threads).map(Some).chain([None]) {
            let worker = Worker {
                keyspace,
                cut,
                db_idx,
                encode,
                options,
                progress,
                pool,
                claims: &claims,
                failed: &failed,
                tx: tx.clone(),
                buf: pool.take(),
                encoded: 0,
                zstd: FrameCompressor::default(),
                index: role.unwrap_or(0),
            };
            let name = match role {
                Some(n) => format!("forkless-snap-{n}"),
                None => "forkless-sweep".to_string(),
            };
            let spawned = std::thread::Builder::new()
                .name(name)
                .spawn_scoped(scope, move || {
                    // A panic stops the other workers too (their work would be wasted).
                    let _stop_others = StopOnPanic(worker.failed);
                    match role {
                        Some(_) => {
                            let _done = Traverser(&worker.claims.traversers_left);
                            lower_thread_priority(options.priority);
                            worker.traverse();
                        }
                        None => worker.sweep_until_traversed(),
                    }
                });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(err) => {
                    failed.store(true, Ordering::Relaxed);
                    if role.is_some() {
                        claims.traversers_left.fetch_sub(1, Ordering::Relaxed);
                    }
                    let _ = tx.send(Err(SaveError::Spawn(err)));
                }
            }
        }
        drop(tx);
        let mut result = Ok(());
        // Drain until every worker has hung up, even after an error, so none is left blocked
        // on a full channel.
        for chunk in rx {
            if result.is_ok() {
                result = chunk.and_then(|chunk| out.write(chunk));
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
            }
        }
        // Joined here, not by the scope, so that a worker's panic (a bug) fails this save
        // instead of unwinding through it: the caller still removes the temp file and ends the
        // snapshot, and the server goes on.
        for handle in handles {
            if handle.join().is_err() && result.is_ok() {
                result = Err(SaveError::SerializerPanicked);
            }
        }
        result
    })
}
/// `rdb-key-save-delay` in [`save_frozen`]: sleeps the option's microseconds (none when 0 or
/// less). `nanosleep` is async-signal-safe, so a fork child may call it.
fn key_delay(options: &SaveOptions) {
    let micros = options
        .key_delay
        .as_ref()
        .map_or(0, |delay| delay.load(Ordering::Relaxed));
    if let Ok(micros @ 1..) = u64::try_from(micros) {
        std::thread::sleep(Duration::from_micros(micros));
    }
}

/// How often [`save_frozen`] calls its `tick` hook: once per this many keys.
pub const TICK_EVERY_KEYS: u64 = 1024;

/// Serializes a frozen keyspace (every shard held, see [`FrozenKeyspace`]) into `sink` on the
/// calling thread alone: the fork child's save. It starts no thread and takes no lock, so it is
/// safe in a child forked from a multi-threaded process while the parent's guards are held
/// (the child's copies of those guards are what it reads through). Keys expired at `now_ms`
/// are skipped. The stream is the one [`save`] writes: same header, aux fields, encoder,
/// LZF and zstd options, CRC64 and throttle; only the order of keys within a database differs.
///
/// With `rdb-key-save-delay` ([`SaveOptions::key_delay`]) it sleeps that long after each key,
/// as Redis's child does: the value at the fork, since the child has its own copy (a test that
/// needs a long save kills the child, as Redis's tests do).
///
/// `tick` is called every [`TICK_EVERY_KEYS`] keys with the progress so far (the fork child
/// reports copy-on-write figures from it). On success `sink` is finished (fsync, rename,
/// directory fsync); on failure it is aborted (temp file removed).
pub fn save_frozen(
    frozen: &FrozenKeyspace<'_>,
    now_ms: u64,
    options: &SaveOptions,
    sink: Box<dyn Sink>,
    progress: &Progress,
    tick: &mut dyn FnMut(&Progress),
) -> Result<(u64, u64), SaveError> {
    let pool = BufferPool::new(1);
    let mut out = Output::new(vec![sink], options, progress, &pool);
    let encode = EncodeOptions {
        compress_strings: options.compress_strings,
    };
    progress
        .keys_total
        .store(frozen.total_keys(), Ordering::Relaxed);
    let written = (|| {
        let mut buf = pool.take();
        let mut zstd = FrameCompressor::default();
        format::write_header(
            &mut buf,
            options.ctime_unix_secs,
            options.used_mem,
            options.repl.as_ref(),
        );
        for code in &options.functions {
            format::write_function(&mut buf, code);
        }
        let mut keys_saved = 0u64;
        for db_idx in 0..frozen.n_dbs() {
            let stats = frozen.db_stats(db_idx);
            if stats.keys == 0 {
                continue;
            }
            format::write_db_header(
                &mut buf,
                u32::try_from(db_idx).unwrap_or(u32::MAX),
                stats.keys as u64,
                stats.expires as u64,
            );
            for (key, entry) in frozen.entries(db_idx) {
                if entry.is_expired(now_ms) {
                    continue;
                }
                format::write_entry(&mut buf, key, entry.value(), entry.expire_at_ms(), &encode);
                keys_saved += 1;
                key_delay(options);
                if keys_saved % TICK_EVERY_KEYS == 0 {
                    progress.keys_processed.store(keys_saved, Ordering::Relaxed);
                    tick(progress);
                }
                if buf.len() >= CHUNK_BYTES {
                    let full = std::mem::replace(&mut buf, pool.take());
                    out.write(Chunk::new(full, options, &pool, &mut zstd)?)?;
                }
            }
        }
        progress.keys_processed.store(keys_saved, Ordering::Relaxed);
        if !buf.is_empty() {
            out.write(Chunk::new(buf, options, &pool, &mut zstd)?)?;
        }
        out.write_eof(options)?;
        Ok(keys_saved)
    })();
    let keys_saved = written.as_ref().map_or(0, |keys| *keys);
    let bytes_written = out.commit(written.map(drop))?.pop().unwrap_or(Ok(0))?;
    Ok((keys_saved, bytes_written))
}
