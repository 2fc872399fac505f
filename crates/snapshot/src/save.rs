//! Running one snapshot: traversal, serialization, compression and writing.
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

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use forkless_storage::{
    FrozenKeyspace, Keyspace, N_SHARDS, ShardCursor, ShardImage, SnapshotCut, Value, Visit,
};

use crate::backend::{self, BackendError, Sink, Target, WriterKind, WriterUsed};
use crate::format::{self, Checksum, EncodeOptions};

/// A serializer sends its chunk once it holds this many bytes (or its shard is done).
const CHUNK_BYTES: usize = 1 << 20;

/// Buckets one traversal step examines under a shard's lock.
///
/// Steps are short because a traversal thread at a low priority can lose its core while it
/// holds the lock, and a client thread that needs that shard then waits for it: 16 buckets and
/// 8 KiB hold the lock for a few microseconds. With 256 buckets and 128 KiB, the clients kept
/// 0.44 and 0.61 of their throughput during a save under `SCHED_IDLE`, against 0.57 and 0.65
/// with these (two rounds, docs/benchmarks.md).
const STEP_BUCKETS: usize = 16;

/// A traversal step ends once it has encoded this many bytes under the lock.
const STEP_BYTES: usize = 8 << 10;

/// Strings up to this size are encoded under the shard lock, straight from the table; bigger
/// values, and every collection, are cloned out (a reference count) and encoded after it.
const ENCODE_UNDER_LOCK_BYTES: usize = 16 << 10;

/// A chunk buffer's capacity: a chunk ends with the entry that crossed `CHUNK_BYTES`.
const CHUNK_CAPACITY: usize = CHUNK_BYTES + CHUNK_BYTES / 4;

/// Chunk buffers the writer has finished with, for the serializers to fill again. A fresh
/// allocation per chunk is mapped fresh by the allocator (glibc serves 1 MiB from `mmap` or
/// trims it back), which costs a page fault and a zeroed page per 4 KiB: 5% of the server's CPU
/// during a save, in perf, before buffers were reused.
struct BufferPool {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
    /// At most this many idle buffers are kept; the rest are freed.
    keep: usize,
}

impl BufferPool {
    fn new(keep: usize) -> BufferPool {
        BufferPool {
            free: std::sync::Mutex::new(Vec::new()),
            keep,
        }
    }

    /// An empty buffer of `CHUNK_CAPACITY`, reused when one is idle.
    fn take(&self) -> Vec<u8> {
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(CHUNK_CAPACITY))
    }

    /// Hands back a spent buffer; small ones (headers, zstd frames) are just freed.
    fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() < CHUNK_CAPACITY {
            return;
        }
        buf.clear();
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if free.len() < self.keep {
            free.push(buf);
        }
    }
}

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

/// One chunk on its way to the writer.
struct Chunk {
    /// What goes to disk: the RDB bytes, or their zstd frame.
    bytes: Vec<u8>,
    /// CRC-64 of the RDB bytes (0 with `rdbchecksum no`), computed by the thread that made the
    /// chunk so that checksumming runs in parallel; the writer chains them in file order.
    crc: u64,
    /// Length of the RDB bytes, for chaining the CRC.
    plain_len: u64,
}

/// Runs the snapshot of `cut` to completion and ends it (`Keyspace::end_snapshot`), whatever the
/// outcome. Blocks the calling thread; serializers run on `options.threads` scoped threads.
pub fn save(
    keyspace: &Keyspace,
    cut: SnapshotCut,
    options: &SaveOptions,
    progress: &Progress,
) -> Result<SaveReport, SaveError> {
    let result = save_inner(keyspace, &cut, options, progress);
    keyspace.end_snapshot(cut);
    result
}

fn save_inner(
    keyspace: &Keyspace,
    cut: &SnapshotCut,
    options: &SaveOptions,
    progress: &Progress,
) -> Result<SaveReport, SaveError> {
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

    let (sink, writer, fallback_reason) = backend::open(options.writer, &options.target)?;
    // Enough for every chunk that can be in flight: the channel's and one per serializer.
    let pool = BufferPool::new(3 * options.threads.max(1) + 1);
    let mut out = Output::new(sink, options, progress, &pool);
    let encode = EncodeOptions {
        compress_strings: options.compress_strings,
    };

    let written = (|| {
        // The header and each SELECTDB: small chunks of their own, on this thread.
        let mut zstd = FrameCompressor::default();
        let mut header = Vec::new();
        format::write_header(&mut header, options.ctime_unix_secs, options.used_mem);
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
    let bytes_written = out.commit(written)?;
    Ok(SaveReport {
        keys_saved: progress.keys_processed.load(Ordering::Relaxed),
        keys_saved_early: progress.keys_saved_early.load(Ordering::Relaxed),
        bytes_written,
        writer,
        fallback_reason,
        duration: started.elapsed(),
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

/// Sets the flag when dropped by a panicking thread.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// Counts a traversal thread out when it ends, however it ends.
struct Traverser<'a>(&'a AtomicUsize);

impl Drop for Traverser<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// How the workers of one database share out the work.
#[derive(Default)]
struct Claims {
    /// The next shard to traverse.
    next_shard: AtomicUsize,
    /// Traversal threads still running; the sweeper stops when none is.
    traversers_left: AtomicUsize,
    /// Test hook (`FORKLESS_FAULT_INJECT=serializer_panic`): traversal threads panic when
    /// they start.
    panic_injected: bool,
    /// Test hook (`FORKLESS_FAULT_INJECT=traversal_hold_ms=<ms>`): traversal threads wait this
    /// long before their first shard.
    traversal_hold: Option<Duration>,
}

/// Clients served at least this many commands per second: the server is busy.
const BUSY_COMMANDS_PER_SEC: f64 = 10_000.0;

/// How long a traversal thread waits before looking at the clients again.
const BUSY_RECHECK: Duration = Duration::from_millis(1);

/// Tells a traversal thread whether the clients are busy, from the rate of commands served
/// since it last asked.
///
/// Why: two `SCHED_IDLE` traversal threads on a loaded server each take whatever moment a core
/// goes idle, and every client thread that wakes then has to preempt one. With one traversal
/// thread the clients kept 0.68-0.76 of their throughput during a 4 GiB save against 0.52-0.65
/// with two (docs/benchmarks.md). So under load only the first traversal thread works; the
/// others wait between shards (never inside one, so the first can always finish the save),
/// and rejoin when the clients go quiet: an idle server still saves with every core.
#[derive(Debug, Default)]
struct LoadGate {
    last: Option<(Instant, u64)>,
}

impl LoadGate {
    /// True if and only if the clients were served at least `BUSY_COMMANDS_PER_SEC` since the
    /// last call (the first call only starts the clock).
    fn clients_busy(&mut self, served: u64, now: Instant) -> bool {
        let busy = self.last.is_some_and(|(at, before)| {
            let secs = now.saturating_duration_since(at).as_secs_f64();
            secs > 0.0 && served.saturating_sub(before) as f64 >= BUSY_COMMANDS_PER_SEC * secs
        });
        self.last = Some((now, served));
        busy
    }
}

/// How long a traversal thread works, under idle priority and busy clients, before it looks
/// at whether it competes for its core ([`Pace`]).
const PACE_ACTIVE: Duration = Duration::from_millis(1);

/// How long a traversal thread that competes with busy clients for its core rests after
/// [`PACE_ACTIVE`] of work: it then takes at most a fifth of one core.
const PACE_PAUSE: Duration = Duration::from_millis(4);

/// A traversal thread that ran for less than this share of a working period competed for its
/// core with other threads; one that ran for more had a core no one else wanted.
const PACE_CONTENDED_SHARE: f64 = 0.5;

/// Paces a traversal thread while the clients are busy and it competes with them for CPU:
/// [`PACE_ACTIVE`] of work, then a pause of [`PACE_PAUSE`], always between steps (never
/// holding a shard lock).
///
/// Why `SCHED_IDLE` is not enough: a traversal thread spends most of its running time inside
/// a step, holding a shard lock, so when a client thread wakes and preempts it, it usually
/// keeps that lock until a core next goes idle. The next command for that shard (one in 128)
/// blocks on it, which idles a core, which runs the traversal again: under full load the idle
/// thread still took 8-20% of the machine, and the clients kept 0.66-0.81 of their throughput
/// during a 4 GiB save. Paced, they kept 0.78-0.85 and the save took 2.5 times as long
/// (docs/benchmarks.md, "Paced traversal").
///
/// Why it also asks whether it competes: a server with busy clients and a spare core (light
/// load, or more cores than the clients use) gives the idle-class thread a whole core and
/// loses nothing to it. The thread's own CPU time tells: over a working period in which it
/// was runnable throughout, it ran for [`PACE_CONTENDED_SHARE`] of the time or more only if no
/// other thread wanted its core. Pacing regardless made a 2 GiB save under a light load
/// (two clients without pipelining, about 30k commands a second) take 7.0 s instead of 1.8 s.
#[derive(Debug)]
struct Pace {
    gate: LoadGate,
    /// Start of the current working period: wall clock and this thread's CPU time.
    since: (Instant, Duration),
}

impl Pace {
    fn new() -> Pace {
        Pace::starting(Instant::now(), thread_cpu_time())
    }

    fn starting(now: Instant, cpu: Duration) -> Pace {
        Pace {
            gate: LoadGate::default(),
            since: (now, cpu),
        }
    }

    /// How long to pause now: None until the thread has worked for [`PACE_ACTIVE`] since it
    /// last resumed, while the clients are quiet, and while it has had a core to itself.
    /// `sample` gives the commands served so far and this thread's CPU time; it is called only
    /// once a working period is over (a thread CPU clock is a system call), not at every step.
    fn pause(
        &mut self,
        now: Instant,
        sample: impl FnOnce() -> (u64, Duration),
    ) -> Option<Duration> {
        let wall = now.saturating_duration_since(self.since.0);
        if wall < PACE_ACTIVE {
            return None;
        }
        let (served, cpu) = sample();
        let ran = cpu.saturating_sub(self.since.1);
        let busy = self.gate.clients_busy(served, now);
        self.since = (now, cpu);
        let contended = ran.as_secs_f64() < PACE_CONTENDED_SHARE * wall.as_secs_f64();
        (busy && contended).then_some(PACE_PAUSE)
    }

    /// Starts the next working period after a pause.
    fn resume(&mut self, now: Instant, cpu: Duration) {
        self.since = (now, cpu);
    }
}

/// The CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos)
}

/// A sweep that found less than this waits [`SWEEP_IDLE`] before the next one, so that a
/// trickle of overwrites is batched instead of spinning the sweeper on the shard locks.
const SWEEP_BATCH_BYTES: usize = 256 << 10;

/// The sweeper's pause between sweeps that found little.
const SWEEP_IDLE: Duration = Duration::from_millis(1);

/// How many entries ahead of the one it encodes [`Worker::encode_image`] prefetches a string
/// value's bytes.
const PREFETCH_AHEAD_ENTRIES: usize = 8;

/// One serializer thread (traversal or sweeper) with its share of the save's context.
struct Worker<'a> {
    keyspace: &'a Keyspace,
    cut: &'a SnapshotCut,
    db_idx: usize,
    encode: &'a EncodeOptions,
    options: &'a SaveOptions,
    progress: &'a Progress,
    pool: &'a BufferPool,
    claims: &'a Claims,
    failed: &'a AtomicBool,
    tx: mpsc::SyncSender<Result<Chunk, SaveError>>,
    /// The chunk being filled: whole entries only.
    buf: Vec<u8>,
    /// Bytes encoded from images so far (the sweeper's measure of a sweep's yield).
    encoded: usize,
    /// This thread's zstd context.
    zstd: FrameCompressor,
    /// Traversal threads: their number, 0 for the first (the sweeper's is unused).
    index: usize,
}

impl Worker<'_> {
    /// Whether to stop: another worker failed, or the save was cancelled (reported once here).
    fn should_stop(&self) -> bool {
        if self.progress.cancel.load(Ordering::Relaxed) {
            let _ = self.tx.send(Err(SaveError::Cancelled));
            return true;
        }
        self.failed.load(Ordering::Relaxed)
    }

    /// Sends the chunk when it is full. False when the save must stop.
    fn send_if_full(&mut self) -> bool {
        self.buf.len() < CHUNK_BYTES || self.send()
    }

    /// Sends the chunk so far (if any). False when the save must stop.
    fn send(&mut self) -> bool {
        if self.buf.is_empty() {
            return true;
        }
        let full = std::mem::replace(&mut self.buf, self.pool.take());
        let chunk = Chunk::new(full, self.options, self.pool, &mut self.zstd);
        let stop = chunk.is_err();
        self.tx.send(chunk).is_ok() && !stop
    }

    /// Encodes an image's live-at-cut entries, sending every full chunk. Returns the keys
    /// encoded, or None when the save must stop. Dropping the image then frees the retained
    /// versions it holds.
    fn encode_image(&mut self, image: &ShardImage) -> Option<u64> {
        let mut keys = 0u64;
        let mut total = 0u64;
        let entries = image.entries();
        for (i, (key, entry)) in entries.iter().enumerate() {
            // Retained versions are cold: start loading a later one while this one is copied
            // (the traversal does the same, `Keyspace::scan_shard`).
            if let Some((_, ahead)) = entries.get(i + PREFETCH_AHEAD_ENTRIES) {
                ahead.prefetch_value();
            }
            if entry.is_expired(self.cut.now_ms()) {
                continue;
            }
            let at = self.buf.len();
            format::write_entry(
                &mut self.buf,
                key,
                entry.value(),
                entry.expire_at_ms(),
                self.encode,
            );
            self.encoded += self.buf.len() - at;
            keys += 1;
            if self.buf.len() >= CHUNK_BYTES {
                self.progress
                    .keys_processed
                    .fetch_add(keys, Ordering::Relaxed);
                total += keys;
                keys = 0;
                if !self.send() {
                    return None;
                }
            }
        }
        self.progress
            .keys_processed
            .fetch_add(keys, Ordering::Relaxed);
        Some(total + keys)
    }

    /// The traversal thread: claims shards until none is left and walks each in steps. Each
    /// step examines up to [`STEP_BUCKETS`] buckets under the shard lock and encodes the
    /// strings it finds there and then, straight from the table; collections and big strings
    /// come back as clones and are encoded after the lock is released. Between steps it may
    /// rest ([`Pace`]).
    fn traverse(mut self) {
        assert!(
            !self.claims.panic_injected,
            "injected serializer panic (FORKLESS_FAULT_INJECT=serializer_panic)"
        );
        if let Some(hold) = self.claims.traversal_hold {
            let until = Instant::now() + hold;
            while Instant::now() < until {
                if self.should_stop() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let (keyspace, cut, db_idx, encode) = (self.keyspace, self.cut, self.db_idx, self.encode);
        let mut gate = LoadGate::default();
        let mut pace = Pace::new();
        loop {
            if self.should_stop() || !self.wait_while_clients_busy(&mut gate) {
                return;
            }
            let shard_idx = self.claims.next_shard.fetch_add(1, Ordering::Relaxed);
            if shard_idx >= N_SHARDS {
                break;
            }
            let mut cursor = ShardCursor::default();
            loop {
                let mut keys = 0u64;
                let buf = &mut self.buf;
                let step_start = buf.len();
                let (later, done) = keyspace.scan_shard(
                    cut,
                    db_idx,
                    shard_idx,
                    &mut cursor,
                    STEP_BUCKETS,
                    &mut |key, entry| {
                        if entry.is_expired(cut.now_ms()) {
                            return Visit::Saved;
                        }
                        match entry.value() {
                            Value::String(bytes) if bytes.len() <= ENCODE_UNDER_LOCK_BYTES => {
                                format::write_entry(
                                    buf,
                                    key,
                                    entry.value(),
                                    entry.expire_at_ms(),
                                    encode,
                                );
                                keys += 1;
                                if buf.len() - step_start >= STEP_BYTES || buf.len() >= CHUNK_BYTES
                                {
                                    Visit::SavedAndPause
                                } else {
                                    Visit::Saved
                                }
                            }
                            _ => Visit::Later,
                        }
                    },
                );
                self.progress
                    .keys_processed
                    .fetch_add(keys, Ordering::Relaxed);
                let encoded = self.encode_image(&later);
                drop(later);
                if encoded.is_none() || !self.send_if_full() {
                    return;
                }
                if done {
                    break;
                }
                self.pace(&mut pace);
            }
            self.progress.shards_done.fetch_add(1, Ordering::Relaxed);
        }
        self.send();
    }

    /// Between two steps of a traversal thread under [`TraversalPriority::Idle`]: sleeps
    /// when this thread has worked for [`PACE_ACTIVE`], the clients are busy and it competes
    /// with them for CPU ([`Pace`]).
    fn pace(&self, pace: &mut Pace) {
        let Some(activity) = &self.options.activity else {
            return;
        };
        if self.options.priority != TraversalPriority::Idle {
            return;
        }
        let sample = || (activity.served(), thread_cpu_time());
        if let Some(pause) = pace.pause(Instant::now(), sample) {
            std::thread::sleep(pause);
            pace.resume(Instant::now(), thread_cpu_time());
        }
    }

    /// For traversal threads after the first, under [`TraversalPriority::Idle`]: waits while
    /// the clients are busy and shards are left to claim ([`LoadGate`]). False when the save
    /// must stop.
    fn wait_while_clients_busy(&self, gate: &mut LoadGate) -> bool {
        let Some(activity) = &self.options.activity else {
            return true;
        };
        if self.index == 0 || self.options.priority != TraversalPriority::Idle {
            return true;
        }
        while gate.clients_busy(activity.served(), Instant::now())
            && self.claims.next_shard.load(Ordering::Relaxed) < N_SHARDS
        {
            if self.should_stop() {
                return false;
            }
            std::thread::sleep(BUSY_RECHECK);
        }
        true
    }

    /// The sweeper: until every traversal thread is done, the versions retained since the
    /// cut, in every shard still being saved. Each is saved and freed within about one sweep of
    /// being overwritten, rather than held until the traversal reaches its shard.
    fn sweep_until_traversed(mut self) {
        // Per shard, the strings saved in the last sweep, handed back in the next one for the
        // shard's writers to free (`Keyspace::take_retained_handing_back`).
        let mut saved: Vec<Vec<_>> = (0..N_SHARDS).map(|_| Vec::new()).collect();
        while self.claims.traversers_left.load(Ordering::Acquire) > 0 {
            if self.should_stop() {
                return;
            }
            let encoded_before = self.encoded;
            if self.cut.pending_retained_bytes(self.db_idx) > 0 {
                self.cut.record_retained_peak();
                for (shard_idx, saved) in saved.iter_mut().enumerate() {
                    let early = self.keyspace.take_retained_handing_back(
                        self.cut,
                        self.db_idx,
                        shard_idx,
                        std::mem::take(saved),
                    );
                    if early.entries().is_empty() {
                        continue;
                    }
                    let Some(keys) = self.encode_image(&early) else {
                        return;
                    };
                    *saved = early.into_saved_strings();
                    self.progress
                        .keys_saved_early
                        .fetch_add(keys, Ordering::Relaxed);
                }
            }
            if self.encoded - encoded_before < SWEEP_BATCH_BYTES {
                std::thread::sleep(SWEEP_IDLE);
            }
        }
        self.send();
    }
}

/// Sets the calling thread's scheduling (Linux: per thread). A failure only costs fairness to
/// the clients, so it is logged, not returned.
fn lower_thread_priority(priority: TraversalPriority) {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let nice = match priority {
        TraversalPriority::Idle => {
            let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
            match set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle) {
                Ok(()) => return,
                Err(err) => {
                    tracing::debug!(
                        "could not set SCHED_IDLE on a snapshot thread ({err:?}); using nice 19"
                    );
                    19
                }
            }
        }
        TraversalPriority::Nice(nice) => nice,
    };
    if nice <= 0 {
        return;
    }
    // On Linux, PRIO_PROCESS with a thread id changes that one thread: here the caller.
    let me = rustix::thread::gettid();
    if let Err(err) = rustix::process::setpriority_process(Some(me), nice) {
        tracing::debug!("could not lower the snapshot thread's priority: {err}");
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
    let mut out = Output::new(sink, options, progress, &pool);
    let encode = EncodeOptions {
        compress_strings: options.compress_strings,
    };
    progress
        .keys_total
        .store(frozen.total_keys(), Ordering::Relaxed);
    let written = (|| {
        let mut buf = pool.take();
        let mut zstd = FrameCompressor::default();
        format::write_header(&mut buf, options.ctime_unix_secs, options.used_mem);
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
    let bytes_written = out.commit(written.map(drop))?;
    Ok((keys_saved, bytes_written))
}

impl Chunk {
    /// Checksums `plain` and, with zstd, compresses it with `zstd` (handing the plain buffer
    /// back to `pool`).
    fn new(
        plain: Vec<u8>,
        options: &SaveOptions,
        pool: &BufferPool,
        zstd: &mut FrameCompressor,
    ) -> Result<Chunk, SaveError> {
        let crc = if options.checksum {
            let mut checksum = Checksum::new();
            checksum.update(&plain);
            checksum.finish()
        } else {
            0
        };
        let plain_len = plain.len() as u64;
        let bytes = match options.compression {
            Compression::None => plain,
            Compression::Zstd { level } => {
                let frame = zstd.compress(&plain, level).map_err(SaveError::Compress)?;
                pool.give(plain);
                frame
            }
        };
        Ok(Chunk {
            bytes,
            crc,
            plain_len,
        })
    }
}

/// One thread's zstd context, made on first use and kept for every chunk after: a fresh
/// context per 1 MiB chunk (`zstd::bulk::compress`) allocated and initialised its tables each
/// time.
#[derive(Default)]
struct FrameCompressor(Option<zstd::bulk::Compressor<'static>>);

impl FrameCompressor {
    /// One independent zstd frame holding `plain`.
    fn compress(&mut self, plain: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
        let compressor = match &mut self.0 {
            Some(compressor) => compressor,
            empty => empty.insert(zstd::bulk::Compressor::new(level)?),
        };
        compressor.compress(plain)
    }
}

/// The writer side: checksum, throttle, sink.
struct Output<'a> {
    sink: Box<dyn Sink>,
    /// CRC-64 of the RDB bytes written so far.
    crc: u64,
    progress: &'a Progress,
    /// Where written chunks' buffers go back to.
    pool: &'a BufferPool,
    max_bytes_per_sec: u64,
    started: Instant,
}

impl<'a> Output<'a> {
    fn new(
        sink: Box<dyn Sink>,
        options: &SaveOptions,
        progress: &'a Progress,
        pool: &'a BufferPool,
    ) -> Output<'a> {
        Output {
            sink,
            crc: 0,
            progress,
            pool,
            max_bytes_per_sec: options.max_bytes_per_sec,
            started: Instant::now(),
        }
    }

    fn write(&mut self, chunk: Chunk) -> Result<(), SaveError> {
        self.crc = Checksum::combine(self.crc, chunk.crc, chunk.plain_len);
        let len = chunk.bytes.len() as u64;
        self.sink.write(&chunk.bytes)?;
        self.pool.give(chunk.bytes);
        self.progress
            .bytes_written
            .fetch_add(len, Ordering::Relaxed);
        self.throttle();
        Ok(())
    }

    /// Ends the stream: the EOF opcode and the CRC-64 of everything before it and of the opcode
    /// (zero with `rdbchecksum no`, as Redis writes it).
    fn write_eof(&mut self, options: &SaveOptions) -> Result<(), SaveError> {
        let mut eof = Vec::new();
        format::write_eof(&mut eof);
        let crc = if options.checksum {
            let mut checksum = Checksum::new();
            checksum.update(&eof);
            Checksum::combine(self.crc, checksum.finish(), eof.len() as u64)
        } else {
            0
        };
        eof.extend_from_slice(&crc.to_le_bytes());
        // Written as is: the CRC covers the stream up to the opcode, not itself.
        let chunk = Chunk::new(eof, options, self.pool, &mut FrameCompressor::default())?;
        let len = chunk.bytes.len() as u64;
        self.sink.write(&chunk.bytes)?;
        self.progress
            .bytes_written
            .fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// After the stream was written (`written` is Ok) commits the file (fsync, rename, directory
    /// fsync) and returns its length; otherwise aborts it (temp file removed) and returns the
    /// error.
    fn commit(self, written: Result<(), SaveError>) -> Result<u64, SaveError> {
        match written {
            Ok(()) => {
                let bytes_written = self.sink.bytes_written();
                self.sink.finish()?;
                Ok(bytes_written)
            }
            Err(err) => {
                self.sink.abort();
                Err(err)
            }
        }
    }

    /// Sleeps as long as the average rate is above `max_bytes_per_sec`.
    fn throttle(&self) {
        if self.max_bytes_per_sec == 0 {
            return;
        }
        let written = self.progress.bytes_written.load(Ordering::Relaxed);
        let due = Duration::from_secs_f64(written as f64 / self.max_bytes_per_sec as f64);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_gate_says_busy_only_above_the_rate() {
        let mut gate = LoadGate::default();
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        // The first look only starts the clock, however much was served before.
        assert!(!gate.clients_busy(1_000_000, at(0)));
        // 1,000 commands in 10 ms: 100k a second.
        assert!(gate.clients_busy(1_001_000, at(10)));
        // 50 in 10 ms: 5k a second, below the line.
        assert!(!gate.clients_busy(1_001_050, at(20)));
        // Nothing for a second: idle.
        assert!(!gate.clients_busy(1_001_050, at(1020)));
        // Exactly the line: busy.
        assert!(gate.clients_busy(1_011_050, at(2020)));
        // No time passed: no rate to judge, so not busy.
        assert!(!gate.clients_busy(2_000_000, at(2020)));
    }

    #[test]
    fn pace_pauses_only_when_clients_are_busy_and_compete_for_the_core() {
        let start = Instant::now();
        let at = |us| start + Duration::from_micros(us);
        let cpu = Duration::from_micros;
        let mut pace = Pace::starting(at(0), cpu(0));
        // Within the first working period: never a pause, and nothing is sampled.
        assert_eq!(
            pace.pause(at(10), || unreachable!("sampled mid-period")),
            None
        );
        assert_eq!(pace.pause(at(10), || (0, cpu(10))), None);
        assert_eq!(pace.pause(at(999), || (500_000, cpu(100))), None);
        // After a period the first load sample only starts the clock.
        assert_eq!(pace.pause(at(1_000), || (0, cpu(100))), None);
        // Busy clients (100 commands in 1 ms) and 0.3 ms of CPU in 1 ms: it competes.
        assert_eq!(pace.pause(at(2_000), || (100, cpu(400))), Some(PACE_PAUSE));
        pace.resume(at(6_000), cpu(400));
        // Back at work: no pause until a whole period has passed since resuming.
        assert_eq!(pace.pause(at(6_500), || (1_000, cpu(500))), None);
        // Busy clients, but it ran 0.9 ms of the period: it had a core to itself.
        assert_eq!(pace.pause(at(7_000), || (10_000, cpu(1_300))), None);
        // Quiet clients (1 command over 1 ms) with little CPU: no pause either.
        assert_eq!(pace.pause(at(8_000), || (10_001, cpu(1_400))), None);
        // Quiet for a long stretch: still no pause.
        assert_eq!(pace.pause(at(20_000), || (10_002, cpu(1_500))), None);
        // Busy and contended again.
        assert_eq!(
            pace.pause(at(21_000), || (20_000, cpu(1_600))),
            Some(PACE_PAUSE)
        );
    }

    #[test]
    fn thread_cpu_time_counts_this_threads_work() {
        let before = thread_cpu_time();
        let mut x = 0u64;
        let deadline = Instant::now() + Duration::from_millis(20);
        while Instant::now() < deadline {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let used = thread_cpu_time().saturating_sub(before);
        assert!(
            used > Duration::ZERO,
            "no CPU time counted after spinning ({x})"
        );
        assert!(
            used <= Duration::from_secs(5),
            "implausible CPU time {used:?}"
        );
    }
}
