//! The save's serializer threads: traversal threads that claim shards and walk them in steps,
//! and the sweeper that saves retained versions early.

use super::output::{BufferPool, Chunk, FrameCompressor};
use super::pace::{BUSY_RECHECK, LoadGate, Pace, thread_cpu_time};
use super::*;

/// Sets the flag when dropped by a panicking thread.
pub(super) struct StopOnPanic<'a>(pub(super) &'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// Counts a traversal thread out when it ends, however it ends.
pub(super) struct Traverser<'a>(pub(super) &'a AtomicUsize);

impl Drop for Traverser<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// How the workers of one database share out the work.
#[derive(Default)]
pub(super) struct Claims {
    /// The next shard to traverse.
    pub(super) next_shard: AtomicUsize,
    /// Traversal threads still running; the sweeper stops when none is.
    pub(super) traversers_left: AtomicUsize,
    /// Test hook (`FORKLESS_FAULT_INJECT=serializer_panic`): traversal threads panic when
    /// they start.
    pub(super) panic_injected: bool,
    /// Test hook (`FORKLESS_FAULT_INJECT=traversal_hold_ms=<ms>`): traversal threads wait this
    /// long before their first shard.
    pub(super) traversal_hold: Option<Duration>,
}
/// A sweep that found less than this waits [`SWEEP_IDLE`] before the next one, so that a
/// trickle of overwrites is batched instead of spinning the sweeper on the shard locks.
pub(super) const SWEEP_BATCH_BYTES: usize = 256 << 10;

/// The sweeper's pause between sweeps that found little.
pub(super) const SWEEP_IDLE: Duration = Duration::from_millis(1);

/// A string value this long or longer is not copied into a chunk: the chunk shares it
/// ([`Chunk::with_value`]), so a big value never has a second full copy in the writer queue,
/// and no chunk buffer grows past its capacity to hold one. Shorter values are copied, which
/// keeps the chunks few and full.
pub(super) const SHARE_VALUE_BYTES: usize = CHUNK_BYTES / 4;

/// The sweeper's pause after a sweep that found nothing while writers wait for room in the
/// retained budget: what they wait for is being saved by a traversal thread or in the writer
/// queue.
pub(super) const SWEEP_BUSY: Duration = Duration::from_micros(50);

/// How many entries ahead of the one it encodes [`Worker::encode_image`] prefetches a string
/// value's bytes.
pub(super) const PREFETCH_AHEAD_ENTRIES: usize = 8;

/// One serializer thread (traversal or sweeper) with its share of the save's context.
pub(super) struct Worker<'a> {
    pub(super) keyspace: &'a Keyspace,
    pub(super) cut: &'a SnapshotCut,
    pub(super) db_idx: usize,
    pub(super) encode: &'a EncodeOptions,
    pub(super) options: &'a SaveOptions,
    pub(super) progress: &'a Progress,
    pub(super) pool: &'a BufferPool,
    pub(super) claims: &'a Claims,
    pub(super) failed: &'a AtomicBool,
    pub(super) tx: mpsc::SyncSender<Result<Chunk, SaveError>>,
    /// The chunk being filled: whole entries only.
    pub(super) buf: Vec<u8>,
    /// Bytes encoded from images so far (the sweeper's measure of a sweep's yield).
    pub(super) encoded: usize,
    /// This thread's zstd context.
    pub(super) zstd: FrameCompressor,
    /// Traversal threads: their number, 0 for the first (the sweeper's is unused).
    pub(super) index: usize,
}

impl Worker<'_> {
    /// Whether to stop: another worker failed, or the save was cancelled (reported once here).
    pub(super) fn should_stop(&self) -> bool {
        if self.progress.cancel.load(Ordering::Relaxed) {
            let _ = self.tx.send(Err(SaveError::Cancelled));
            return true;
        }
        self.failed.load(Ordering::Relaxed)
    }

    /// Sends the chunk when it is full. False when the save must stop.
    pub(super) fn send_if_full(&mut self) -> bool {
        self.buf.len() < CHUNK_BYTES || self.send()
    }

    /// Sends the chunk so far (if any). False when the save must stop.
    pub(super) fn send(&mut self) -> bool {
        if self.buf.is_empty() {
            return true;
        }
        let full = std::mem::replace(&mut self.buf, self.pool.take());
        let chunk = Chunk::new(full, self.options, self.pool, &mut self.zstd);
        let stop = chunk.is_err();
        self.tx.send(chunk).is_ok() && !stop
    }

    /// Sends the chunk so far, whose last entry's head is followed in the stream by `value`
    /// (shared, not copied: [`Chunk::with_value`]). False when the save must stop.
    pub(super) fn send_with_value(&mut self, value: forkless_storage::CompactBytes) -> bool {
        let full = std::mem::replace(&mut self.buf, self.pool.take());
        let chunk = Chunk::with_value(full, value, self.options, self.pool, &mut self.zstd);
        let stop = chunk.is_err();
        self.tx.send(chunk).is_ok() && !stop
    }

    /// Encodes an image's live-at-cut entries, sending every full chunk. Returns the keys
    /// encoded, or None when the save must stop. Dropping the image then frees the retained
    /// versions it holds.
    pub(super) fn encode_image(&mut self, image: &ShardImage) -> Option<u64> {
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
            if let Value::String(bytes) = entry.value() {
                if bytes.len() >= SHARE_VALUE_BYTES
                    && format::write_string_entry_head(
                        &mut self.buf,
                        key,
                        bytes,
                        entry.expire_at_ms(),
                        self.encode,
                    )
                    .is_some()
                {
                    // The value goes to the writer as it is, after the chunk so far.
                    self.encoded += self.buf.len() - at + bytes.len();
                    keys += 1;
                    self.progress
                        .keys_processed
                        .fetch_add(keys, Ordering::Relaxed);
                    total += keys;
                    keys = 0;
                    if !self.send_with_value(bytes.clone()) {
                        return None;
                    }
                    continue;
                }
                if self.buf.len() + bytes.len() > CHUNK_CAPACITY && !self.send() {
                    // A big value the encoder copies (LZF): into a buffer of its own rather
                    // than one it would make grow.
                    return None;
                }
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
    pub(super) fn traverse(mut self) {
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
                // With `rdb-key-save-delay`, a step saves one key, and waits after it.
                let delayed = self.key_delay_micros() > 0;
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
                                if delayed
                                    || buf.len() - step_start >= STEP_BYTES
                                    || buf.len() >= CHUNK_BYTES
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
                if !self.delay_keys(keys + encoded.unwrap_or(0)) {
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

    /// `rdb-key-save-delay`: microseconds per key, 0 when off.
    fn key_delay_micros(&self) -> u64 {
        self.options.key_delay.as_ref().map_or(0, |delay| {
            u64::try_from(delay.load(Ordering::Relaxed)).unwrap_or(0)
        })
    }

    /// Waits `rdb-key-save-delay` for each of `n_keys` keys, in slices of at most 10 ms that
    /// read the option again (a change acts at once) and watch for the save's end. False
    /// when the save must stop.
    fn delay_keys(&self, n_keys: u64) -> bool {
        let mut left = self.key_delay_micros().saturating_mul(n_keys);
        while left > 0 {
            if self.should_stop() {
                return false;
            }
            if self.key_delay_micros() == 0 {
                return true;
            }
            let slice = left.min(10_000);
            std::thread::sleep(Duration::from_micros(slice));
            left -= slice;
        }
        true
    }

    /// Between two steps of a traversal thread under [`TraversalPriority::Idle`]: sleeps
    /// when this thread has worked for [`PACE_ACTIVE`], the clients are busy and it competes
    /// with them for CPU ([`Pace`]).
    pub(super) fn pace(&self, pace: &mut Pace) {
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
    pub(super) fn wait_while_clients_busy(&self, gate: &mut LoadGate) -> bool {
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
    pub(super) fn sweep_until_traversed(mut self) {
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
            // Writers waiting for room in the retained budget wait for this thread: it rests
            // only when a sweep found nothing, and then briefly.
            let found = self.encoded - encoded_before;
            if self.cut.writers_waiting() {
                if found == 0 {
                    std::thread::sleep(SWEEP_BUSY);
                }
            } else if found < SWEEP_BATCH_BYTES {
                std::thread::sleep(SWEEP_IDLE);
            }
        }
        self.send();
    }
}

/// Sets the calling thread's scheduling (Linux: per thread). A failure only costs fairness to
/// the clients, so it is logged, not returned.
pub(super) fn lower_thread_priority(priority: TraversalPriority) {
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
