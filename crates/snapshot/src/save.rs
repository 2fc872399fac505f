//! Running one snapshot: traversal, serialization, compression and writing.
//!
//! ```text
//!   Keyspace::begin_snapshot (the cut, on the caller's thread)
//!        │
//!        ▼  for each database with keys at the cut, in order:
//!   writer thread ── header / SELECTDB ──────────────────────────────► Sink (backend/*)
//!        ▲                                                              ▲
//!        │ bounded channel of chunks (whole entries, ~1 MiB each)       │
//!   serializer threads: claim a shard → scan_shard steps → format::write_entry → [zstd frame]
//! ```
//!
//! Entries of one database may be written in any order, so serializers never wait for one
//! another: each sends a chunk as soon as it holds a MiB of whole entries, and the writer
//! writes chunks in arrival order. Databases are done one after the other, because an RDB file
//! groups keys under their SELECTDB. The CRC64 covers the uncompressed stream in write order: each
//! serializer checksums its own chunks, and the writer chains the chunk CRCs in the order it
//! writes them (`Checksum::combine`, O(log n) per chunk), so checksumming runs in parallel and
//! the writer thread only moves bytes. With zstd each chunk is an independent frame, compressed
//! by the serializer that produced it, so compression runs in parallel too.
//!
//! Memory: each serializer holds at most one step's cloned-out entries and one chunk; the
//! channel holds at most `2 × threads` chunks. When a shard is done, the versions it still
//! retained are encoded and dropped. Between shards, a serializer that sees versions retained in
//! shards not yet reached (`SnapshotCut::pending_retained_bytes`) sweeps those shards, takes
//! their retained lists (`Keyspace::take_retained`), and saves and frees them at once: so an
//! old version lives for about one shard's time, not until the traversal gets to its shard.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use forkless_storage::{
    FrozenKeyspace, Keyspace, N_SHARDS, ShardCursor, ShardImage, SnapshotCut, Value, Visit,
};

use crate::backend::{self, BackendError, Sink, Target, WriterKind, WriterUsed};
use crate::format::{self, Checksum, EncodeOptions};

/// A serializer sends its chunk once it holds this many bytes (or its shard is done).
const CHUNK_BYTES: usize = 1 << 20;

/// Buckets one traversal step examines under a shard's lock.
const STEP_BUCKETS: usize = 256;

/// A traversal step ends once it has encoded this many bytes under the lock.
const STEP_BYTES: usize = 128 << 10;

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
    /// Nice value for the serializer threads (0 = the clients' priority, 19 = lowest): under
    /// CPU contention the kernel then favours the threads that serve clients, and when the
    /// clients are idle the serializers still get every core.
    pub nice: i32,
    /// The `used-mem` aux field.
    pub used_mem: u64,
    /// The `ctime` aux field, seconds since the Unix epoch.
    pub ctime_unix_secs: u64,
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
        let mut header = Vec::new();
        format::write_header(&mut header, options.ctime_unix_secs, options.used_mem);
        out.write(Chunk::new(header, options, &pool)?)?;
        for &db_idx in &dbs_with_keys {
            let stats = cut.db_sizes().get(db_idx).copied().unwrap_or_default();
            let mut db_header = Vec::new();
            format::write_db_header(
                &mut db_header,
                u32::try_from(db_idx).unwrap_or(u32::MAX),
                stats.keys as u64,
                stats.expires as u64,
            );
            out.write(Chunk::new(db_header, options, &pool)?)?;
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

/// Serializes every shard of one database with the serializer threads, writing chunks as they
/// arrive. Returns the first error; on error, serializers stop at their next chunk.
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
    let claims = Claims {
        panic_injected: backend::Overrides::from_env()
            .ok()
            .and_then(|overrides| overrides.faults)
            .is_some_and(|plan| plan.serializer_panic),
        ..Claims::default()
    };
    let failed = AtomicBool::new(false);
    let threads = options.threads.max(1);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Result<Chunk, SaveError>>(2 * threads);
        let mut handles = Vec::with_capacity(threads);
        for worker in 0..threads {
            let worker_tx = tx.clone();
            let (claims, failed) = (&claims, &failed);
            let spawned = std::thread::Builder::new()
                .name(format!("forkless-snap-{worker}"))
                .spawn_scoped(scope, move || {
                    // A panic stops the other serializers too (their work would be wasted).
                    let _stop_others = StopOnPanic(failed);
                    lower_thread_priority(options.nice);
                    serializer(
                        keyspace, cut, db_idx, encode, options, progress, pool, claims, failed,
                        &worker_tx,
                    );
                });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(err) => {
                    failed.store(true, Ordering::Relaxed);
                    let _ = tx.send(Err(SaveError::Spawn(err)));
                }
            }
        }
        drop(tx);
        let mut result = Ok(());
        // Drain until every serializer has hung up, even after an error, so none is left
        // blocked on a full channel.
        for chunk in rx {
            if result.is_ok() {
                result = chunk.and_then(|chunk| out.write(chunk));
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
            }
        }
        // Joined here, not by the scope, so that a serializer's panic (a bug) fails this save
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

/// How the serializers of one database share out the work.
#[derive(Default)]
struct Claims {
    /// The next shard whose big collections to save (the first pass).
    next_big: AtomicUsize,
    /// The next shard to traverse.
    next_shard: AtomicUsize,
    /// Set while one serializer sweeps retained versions.
    sweeping: AtomicBool,
    /// Test hook (`FORKLESS_FAULT_INJECT=serializer_panic`): serializers panic when they start.
    panic_injected: bool,
}

#[expect(
    clippy::too_many_arguments,
    reason = "one scoped worker's borrowed context"
)]
fn serializer(
    keyspace: &Keyspace,
    cut: &SnapshotCut,
    db_idx: usize,
    encode: &EncodeOptions,
    options: &SaveOptions,
    progress: &Progress,
    pool: &BufferPool,
    claims: &Claims,
    failed: &AtomicBool,
    tx: &mpsc::SyncSender<Result<Chunk, SaveError>>,
) {
    let mut buf = pool.take();
    let send = |buf: Vec<u8>| -> bool {
        let chunk = Chunk::new(buf, options, pool);
        let stop = chunk.is_err();
        tx.send(chunk).is_ok() && !stop
    };
    // Encodes one image's live-at-cut entries into `buf`, sending every full chunk. Returns
    // the keys encoded, or None when the save must stop.
    let encode_image = |image: ShardImage, buf: &mut Vec<u8>| -> Option<u64> {
        let mut keys = 0u64;
        let mut total = 0u64;
        for (key, entry) in image.entries() {
            if entry.is_expired(cut.now_ms()) {
                continue;
            }
            format::write_entry(buf, key, entry.value(), entry.expire_at_ms(), encode);
            keys += 1;
            if buf.len() >= CHUNK_BYTES {
                progress.keys_processed.fetch_add(keys, Ordering::Relaxed);
                total += keys;
                keys = 0;
                let full = std::mem::replace(buf, pool.take());
                if !send(full) {
                    return None;
                }
            }
        }
        progress.keys_processed.fetch_add(keys, Ordering::Relaxed);
        Some(total + keys)
    };
    let Claims {
        next_big,
        next_shard,
        sweeping,
        panic_injected,
    } = claims;
    assert!(
        !panic_injected,
        "injected serializer panic (FORKLESS_FAULT_INJECT=serializer_panic)"
    );
    // First pass: the big collections, whose first write during the save would copy them whole
    // while the save still holds their pre-cut version (Keyspace::take_big_keys).
    loop {
        let shard_idx = next_big.fetch_add(1, Ordering::Relaxed);
        if shard_idx >= N_SHARDS {
            break;
        }
        let big = keyspace.take_big_keys(cut, db_idx, shard_idx);
        if encode_image(big, &mut buf).is_none() {
            return;
        }
    }
    loop {
        if failed.load(Ordering::Relaxed) || progress.cancel.load(Ordering::Relaxed) {
            if progress.cancel.load(Ordering::Relaxed) {
                let _ = tx.send(Err(SaveError::Cancelled));
            }
            return;
        }
        // Versions overwritten in shards nobody has reached yet: save them now, and free them,
        // rather than hold them until their shard's turn. One serializer sweeps at a time.
        if cut.pending_retained_bytes(db_idx) > 0 && !sweeping.swap(true, Ordering::Acquire) {
            let from = next_shard.load(Ordering::Relaxed);
            for shard_idx in from..N_SHARDS {
                let early = keyspace.take_retained(cut, db_idx, shard_idx);
                let Some(keys) = encode_image(early, &mut buf) else {
                    sweeping.store(false, Ordering::Release);
                    return;
                };
                progress.keys_saved_early.fetch_add(keys, Ordering::Relaxed);
            }
            sweeping.store(false, Ordering::Release);
        }
        let shard_idx = next_shard.fetch_add(1, Ordering::Relaxed);
        if shard_idx >= N_SHARDS {
            break;
        }
        // The shard in steps: each examines a few hundred buckets under the shard lock and
        // encodes the strings it finds there and then, straight from the table; collections
        // and big strings come back as clones and are encoded after the lock is released.
        let mut cursor = ShardCursor::default();
        loop {
            let mut keys = 0u64;
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
                                &mut buf,
                                key,
                                entry.value(),
                                entry.expire_at_ms(),
                                encode,
                            );
                            keys += 1;
                            if buf.len() - step_start >= STEP_BYTES || buf.len() >= CHUNK_BYTES {
                                Visit::SavedAndPause
                            } else {
                                Visit::Saved
                            }
                        }
                        _ => Visit::Later,
                    }
                },
            );
            progress.keys_processed.fetch_add(keys, Ordering::Relaxed);
            if encode_image(later, &mut buf).is_none() {
                return;
            }
            if buf.len() >= CHUNK_BYTES {
                let full = std::mem::replace(&mut buf, pool.take());
                if !send(full) {
                    return;
                }
            }
            if done {
                break;
            }
        }
        progress.shards_done.fetch_add(1, Ordering::Relaxed);
    }
    if !buf.is_empty() {
        send(buf);
    }
}

/// Sets the calling thread's nice value (Linux: per thread). A failure only costs fairness to
/// the clients, so it is logged, not returned.
pub fn lower_thread_priority(nice: i32) {
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
        format::write_header(&mut buf, options.ctime_unix_secs, options.used_mem);
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
                    out.write(Chunk::new(full, options, &pool)?)?;
                }
            }
        }
        progress.keys_processed.store(keys_saved, Ordering::Relaxed);
        if !buf.is_empty() {
            out.write(Chunk::new(buf, options, &pool)?)?;
        }
        out.write_eof(options)?;
        Ok(keys_saved)
    })();
    let keys_saved = written.as_ref().map_or(0, |keys| *keys);
    let bytes_written = out.commit(written.map(drop))?;
    Ok((keys_saved, bytes_written))
}

impl Chunk {
    /// Checksums `plain` and, with zstd, compresses it (handing the plain buffer back to
    /// `pool`).
    fn new(plain: Vec<u8>, options: &SaveOptions, pool: &BufferPool) -> Result<Chunk, SaveError> {
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
                let frame = zstd::bulk::compress(&plain, level).map_err(SaveError::Compress)?;
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
        let chunk = Chunk::new(eof, options, self.pool)?;
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
