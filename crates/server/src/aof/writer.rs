//! The AOF writer: an effect consumer that renders each effect as RESP commands into a buffer,
//! the connections that wait for their effects to be written, and a `forkless-aof` thread that
//! fsyncs the incr file as `appendfsync` asks.
//!
//! A write's reply waits (in `conn`) until the effect's number is published as durable. With
//! `everysec` and `no` that means written, as Redis writes its AOF buffer before the replies
//! go out: a kill -9 loses no acknowledged write. The waiting connections write the buffer
//! themselves (a leader/follower group write): the first one that finds no write in progress
//! takes everything buffered, writes it with one write(2) on its own worker thread and
//! publishes the highest number the batch held; the others are answered by that write or, if
//! their effects arrived after it took the buffer, one of them leads the next. No thread
//! hand-off sits between a command and its reply. The thread fsyncs (`everysec`: it hands an
//! fsync to its fsync thread when a second has passed since the last one), retries failed
//! writes, writes a batch postponed behind a running fsync once it ends, and writes what no
//! connection waits for (the active expiry's DELs) when no leader took it within [`GRACE`].
//!
//! With `always` the thread does every write, and fsyncs once per batch before it publishes
//! it, so that all the connections whose effects arrived meanwhile are answered by one fsync
//! (group commit).

use std::fs::File;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::waiters::{Key, Waiters};
use crate::config::AppendFsync;
use crate::effects::{Effect, EffectConsumer, Renderer};
use crate::server::lock;
use forkless_storage::effect::Seq;

/// What the writers of one server share across rewrites: the errors that refuse writes
/// (MISCONF) and Redis's `aof_delayed_fsync` count.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shared {
    /// The OS error of the last failed write, 0 once a write succeeds.
    pub(crate) write_errno: Arc<AtomicI32>,
    /// The OS error of the last failed background fsync (`everysec`), 0 once one succeeds:
    /// Redis's `aof_bio_fsync_status` and `aof_bio_fsync_errno`.
    pub(crate) fsync_errno: Arc<AtomicI32>,
    /// `everysec` writes that went ahead after waiting 2 s for a running fsync: Redis's
    /// `aof_delayed_fsync`.
    pub(crate) delayed_fsync: Arc<AtomicU64>,
    /// `DEBUG AOF-FLUSH-SLEEP`: microseconds the writer sleeps before each write (tests).
    pub(crate) flush_sleep_us: Arc<AtomicU64>,
}

/// How long an `everysec` write waits for the running fsync before it goes ahead, as Redis's
/// `flushAppendOnlyFile` (`server.unixtime - server.aof_flush_postponed_start < 2`).
const POSTPONE_AT_MOST: Duration = Duration::from_secs(2);

/// How long the thread leaves buffered effects to the waiting connections before it writes
/// them itself (`everysec` and `no`): effects no connection waits for (the active expiry's,
/// a replica's stream) reach the file within about this long.
const GRACE: Duration = Duration::from_millis(10);

/// How often the thread retries a failed write.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// The writer keeps the buffer of its last batch for the next one up to this capacity.
const SPARE_AT_MOST: usize = 4 << 20;

/// Test-only: each background fsync sleeps this many milliseconds first (a slow disk), read by
/// each writer thread.
const FSYNC_DELAY_ENV: &str = "FORKLESS_AOF_FSYNC_DELAY_MS";

/// What the effect stream has handed the writer and nobody has taken yet.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    renderer: Renderer,
    /// The number of the last effect in `buf`.
    last_seq: u64,
    /// Effects numbered below this are in the base already (the cut the base was saved from);
    /// None until the cut is taken, while effects wait in `early`.
    skip_below: Option<u64>,
    /// Effects that arrived before the cut was known, rendered once it is.
    early: Vec<Effect>,
    /// Effects numbered from here on belong to the next incr file (a rewrite's cut).
    end: u64,
    /// The second of the last `#TS:` annotation.
    last_timestamp: u64,
    stop: bool,
    /// Batches taken from `buf` so far: the thread sees from it whether a leader took what it
    /// saw buffered.
    taken: u64,
    /// True while the thread sleeps until an effect arrives.
    wake_thread: bool,
    /// True while a connection waits for an effect not handed over yet (held back by the
    /// stream behind a lower number): the next effect wakes it to lead.
    wake_leaders: bool,
}

/// The file and what is known about it. Whoever holds this lock may write (a leading
/// connection, or the thread), and holds it until the write has returned and the batch is
/// published: batches reach the file in the order they were taken, which is the stream's.
/// A std mutex: held across one write(2) (and with `always`, the fsync), never an await; a
/// connection only ever tries it (`try_lock`) and waits for the holder's notification instead
/// of blocking on it.
struct Output {
    /// None until the thread starts, and again once it has stopped.
    file: Option<File>,
    /// The file's length after the last complete write, to cut a short write off again.
    len: u64,
    /// Test-only write failures (`FORKLESS_AOF_FAULT`).
    fault: Option<Fault>,
    /// The buffer of the last batch, emptied, for the next one: a busy writer allocates
    /// nothing.
    spare: Vec<u8>,
    /// True while something written has not been fsynced.
    unsynced: bool,
    /// When an `everysec` write began to wait for the running fsync.
    postponed_since: Option<Instant>,
}

/// What one [`Writer::flush`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flushed {
    /// Nothing was buffered: every effect up to this number is written.
    Empty(u64),
    /// The batch up to this number was written.
    Wrote(u64),
    /// Not written (postponed behind a running fsync, or failed), but its replies may go out
    /// as Redis sends them: published up to this number.
    Released(u64),
}

/// The writer shared by the consumer, the thread and the connections that wait on it.
pub(crate) struct Writer {
    pending: Mutex<Pending>,
    /// Wakes the thread: an effect into an empty buffer while it sleeps, an fsync's end, stop.
    wake: Condvar,
    output: Mutex<Output>,
    /// The highest effect number known to be on disk (with `always`: fsynced).
    durable: AtomicU64,
    /// The connections waiting for a number to be published: woken when it is, or to lead.
    waiters: Waiters,
    /// The numbers this writer logs: `[start, end)`. `start` is `u64::MAX` until known.
    start: AtomicU64,
    end: AtomicU64,
    fsync: AtomicU8,
    stopped: AtomicBool,
    /// Bytes in the current incr file.
    pub(crate) incr_size: AtomicU64,
    /// Bytes in the base file.
    pub(crate) base_size: AtomicU64,
    pub(crate) last_write_ok: AtomicBool,
    /// The server's record of failed writes and fsyncs, and of delayed fsyncs.
    shared: Shared,
    /// True while an `everysec` fsync runs on the `forkless-aof-fsync` thread: INFO's
    /// `aof_pending_bio_fsync`.
    pub(crate) fsync_in_progress: AtomicBool,
    /// `aof-timestamp-enabled`: a `#TS:<unix secs>` annotation before the first command of
    /// each second.
    pub(crate) timestamps: AtomicBool,
    /// Set while a rewrite runs with `no-appendfsync-on-rewrite yes`: no fsync meanwhile.
    pub(crate) no_fsync: AtomicBool,
    /// True while an `everysec` write waits for the running fsync: the thread writes it when
    /// the fsync ends.
    postponed: AtomicBool,
    /// fsyncs done, for the test of group commit.
    fsyncs: AtomicU64,
    /// Batches written by a waiting connection, and by the thread, for the tests.
    leader_writes: AtomicU64,
    thread_writes: AtomicU64,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

fn fsync_code(policy: AppendFsync) -> u8 {
    match policy {
        AppendFsync::Everysec => 0,
        AppendFsync::Always => 1,
        AppendFsync::No => 2,
    }
}

impl Writer {
    /// A writer whose first effect is not known yet: it keeps what it gets until
    /// [`Writer::set_start`].
    pub(crate) fn new(
        policy: AppendFsync,
        base_size: u64,
        incr_size: u64,
        shared: Shared,
    ) -> Writer {
        Writer {
            pending: Mutex::new(Pending {
                end: u64::MAX,
                ..Pending::default()
            }),
            wake: Condvar::new(),
            output: Mutex::new(Output {
                file: None,
                len: 0,
                fault: None,
                spare: Vec::new(),
                unsynced: false,
                postponed_since: None,
            }),
            durable: AtomicU64::new(0),
            waiters: Waiters::default(),
            start: AtomicU64::new(u64::MAX),
            end: AtomicU64::new(u64::MAX),
            fsync: AtomicU8::new(fsync_code(policy)),
            stopped: AtomicBool::new(false),
            incr_size: AtomicU64::new(incr_size),
            base_size: AtomicU64::new(base_size),
            last_write_ok: AtomicBool::new(true),
            shared,
            fsync_in_progress: AtomicBool::new(false),
            timestamps: AtomicBool::new(false),
            no_fsync: AtomicBool::new(false),
            postponed: AtomicBool::new(false),
            fsyncs: AtomicU64::new(0),
            leader_writes: AtomicU64::new(0),
            thread_writes: AtomicU64::new(0),
        }
    }

    /// Logs the effects numbered `start` and above: those below are in the base. Effects
    /// kept meanwhile are rendered now.
    pub(crate) fn set_start(&self, start: u64) {
        let mut pending = lock(&self.pending);
        pending.skip_below = Some(start);
        pending.last_seq = start.saturating_sub(1);
        self.durable
            .store(start.saturating_sub(1), Ordering::Release);
        self.start.store(start, Ordering::Release);
        for effect in std::mem::take(&mut pending.early) {
            if effect.seq.get() >= start {
                self.append(&mut pending, &effect);
            }
        }
        drop(pending);
        self.wake.notify_one();
        self.waiters.wake_all();
    }

    /// Stops logging at `end`: effects numbered from there on go to the next writer.
    pub(crate) fn set_end(&self, end: u64) {
        lock(&self.pending).end = end;
        self.end.store(end, Ordering::Release);
        self.waiters.wake_all();
    }

    /// Returns true if and only if the writer does not know its first number yet.
    pub(crate) fn starting(&self) -> bool {
        self.start.load(Ordering::Acquire) == u64::MAX && !self.stopped.load(Ordering::Acquire)
    }

    /// Returns true if and only if the effect numbered `seq` is this writer's to log.
    pub(crate) fn owns(&self, seq: u64) -> bool {
        self.start.load(Ordering::Acquire) <= seq && seq < self.end.load(Ordering::Acquire)
    }

    /// Returns true if and only if every effect below `end` (set by [`Writer::set_end`]) has
    /// been handed to this writer.
    pub(crate) fn reached_end(&self) -> bool {
        let pending = lock(&self.pending);
        pending.last_seq.saturating_add(1) >= pending.end
    }

    pub(crate) fn set_policy(&self, policy: AppendFsync) {
        self.fsync.store(fsync_code(policy), Ordering::Relaxed);
        let _pending = lock(&self.pending);
        self.wake.notify_one();
    }

    /// Bytes rendered and not taken by a write yet: INFO's `aof_buffer_length` (Redis's
    /// `aof_buf`). Read under the buffer's lock rather than kept in an atomic that every
    /// effect would update from every worker.
    pub(crate) fn buffered(&self) -> u64 {
        lock(&self.pending).buf.len() as u64
    }

    pub(crate) fn always(&self) -> bool {
        self.fsync.load(Ordering::Relaxed) == 1
    }

    /// Waits until the effect numbered `seq` is on disk, the writer stopped, or the number
    /// turned out not to be this writer's (a rewrite moved it to the next one). With
    /// `everysec` and `no` the waiting connection writes the buffer itself when no write is
    /// in progress ([`Writer::lead`]).
    pub(crate) fn wait_durable(&self, seq: u64) -> WaitDurable<'_> {
        WaitDurable {
            writer: self,
            key: self.waiters.key(seq),
            registered: false,
        }
    }

    /// Returns true if and only if a connection waiting for `seq` may go on: the number is
    /// published, this writer stopped, or the number is the next writer's.
    pub(crate) fn answered(&self, seq: u64) -> bool {
        self.durable.load(Ordering::Acquire) >= seq
            || self.stopped.load(Ordering::Acquire)
            || seq >= self.end.load(Ordering::Acquire)
    }

    /// A waiting connection's turn at the write (`everysec`, `no`): when no one holds the
    /// file, writes what is buffered with one write(2) on the caller's thread, as Redis writes
    /// its AOF buffer on its one thread before replying. Returns true if and only if it
    /// published something (the caller looks again); false: someone else writes, or the
    /// caller's effect has not been handed over yet, and the caller waits for their
    /// notification.
    fn lead(&self, seq: u64) -> bool {
        if self.always() {
            // Group commit: the thread writes and fsyncs each batch.
            return false;
        }
        let mut output = match self.output.try_lock() {
            Ok(output) => output,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return false,
        };
        if output.file.is_none() {
            // The thread has not started yet, or has stopped.
            return false;
        }
        let flushed = self.flush(&mut output, Some(seq));
        let (Flushed::Empty(last) | Flushed::Wrote(last) | Flushed::Released(last)) = flushed;
        let wrote = matches!(flushed, Flushed::Wrote(_));
        if wrote {
            self.leader_writes.fetch_add(1, Ordering::Relaxed);
        }
        // Looks again after a write (the buffer was emptied) or when the number moved;
        // otherwise waits: for the effect to be handed over (`wake_leaders`), for the thread
        // (a postponed or failed write), or for whoever holds the file.
        // A read first: the number is read by every waiting connection, and a read-modify-write
        // of it when nothing moved would take its cache line from them.
        let published = (self.durable.load(Ordering::Acquire) < last
            && self.durable.fetch_max(last, Ordering::AcqRel) < last)
            || wrote;
        self.release(output);
        published
    }

    /// Wakes the waiting connections that what is published answers, and (`everysec`, `no`)
    /// the first of the others, to lead the next write.
    fn release_waiters(&self) {
        if self.stopped.load(Ordering::Acquire) {
            self.waiters.wake_all();
        } else {
            self.waiters
                .wake_up_to(self.durable.load(Ordering::Acquire), !self.always());
        }
    }

    /// Lets go of the file and wakes the waiting connections that what is published answers,
    /// and (`everysec`, `no`) the first of the others, to lead the next write.
    fn release(&self, output: MutexGuard<'_, Output>) {
        drop(output);
        self.release_waiters();
    }

    /// Renders `effect` into the buffer.
    fn append(&self, pending: &mut Pending, effect: &Effect) {
        self.append_taken(pending, Taken::Effect(effect));
    }

    /// Renders what the stream handed over into the buffer.
    fn append_taken(&self, pending: &mut Pending, taken: Taken<'_>) {
        if self.timestamps.load(Ordering::Relaxed) {
            let now = crate::server::unix_ms() / 1000;
            if now > pending.last_timestamp {
                pending.last_timestamp = now;
                let annotation = format!("#TS:{now}\r\n");
                pending.buf.extend_from_slice(annotation.as_bytes());
            }
        }
        let Pending { buf, renderer, .. } = &mut *pending;
        match taken {
            Taken::Effect(effect) => renderer.render_each(effect, |argv| encode(buf, argv)),
            Taken::Command { db, argv, .. } => {
                renderer.render_command(db, argv, |argv| encode(buf, argv));
            }
        }
        pending.last_seq = taken.seq().get();
    }

    /// Asks the thread to write what is buffered, fsync and stop.
    pub(crate) fn stop(&self) {
        lock(&self.pending).stop = true;
        self.wake.notify_one();
    }

    /// Starts the thread that appends to `file` (opened for append at its end).
    pub(crate) fn spawn(
        self: &Arc<Self>,
        file: File,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let writer = Arc::clone(self);
        std::thread::Builder::new()
            .name("forkless-aof".into())
            .spawn(move || writer.run(file))
    }

    /// The thread's body: hands `file` to the writers, runs the thread's loop with the
    /// `everysec` fsyncs on a scoped `forkless-aof-fsync` thread (Redis's bio fsync job), so
    /// a slow fsync does not hold the writes back for more than [`POSTPONE_AT_MOST`].
    fn run(&self, file: File) {
        std::thread::scope(|scope| {
            let requests = match file.try_clone() {
                Ok(clone) => {
                    let (requests, received) = std::sync::mpsc::channel::<()>();
                    let spawned = std::thread::Builder::new()
                        .name("forkless-aof-fsync".into())
                        .spawn_scoped(scope, move || self.background_fsyncs(&clone, &received));
                    match spawned {
                        Ok(_) => Some(requests),
                        Err(err) => {
                            tracing::warn!(
                                "Can't start the AOF fsync thread, fsyncing inline: {err}"
                            );
                            None
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(
                        "Can't duplicate the AOF file descriptor, fsyncing inline: {err}"
                    );
                    None
                }
            };
            {
                let mut output = lock(&self.output);
                output.len = file.metadata().map_or(0, |metadata| metadata.len());
                output.fault = Fault::from_env();
                output.file = Some(file);
            }
            self.thread_loop(requests.as_ref());
            // Dropping the sender ends the fsync thread; the scope waits for it.
        });
    }

    /// The `forkless-aof-fsync` thread: one fsync per request, recorded as Redis's bio job
    /// records it (a failure refuses writes with MISCONF until an fsync succeeds again).
    fn background_fsyncs(&self, file: &File, requests: &std::sync::mpsc::Receiver<()>) {
        let delay = std::env::var(FSYNC_DELAY_ENV)
            .ok()
            .and_then(|ms| ms.parse::<u64>().ok())
            .map(Duration::from_millis);
        while requests.recv().is_ok() {
            if let Some(delay) = delay {
                std::thread::sleep(delay);
            }
            match file.sync_data() {
                Ok(()) => {
                    self.shared.fsync_errno.store(0, Ordering::Relaxed);
                    self.fsyncs.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => {
                    let errno = err.raw_os_error().unwrap_or(libc::EIO);
                    if self.shared.fsync_errno.swap(errno, Ordering::Relaxed) == 0 {
                        tracing::warn!("Fail to fsync the AOF file: {err}");
                    }
                }
            }
            self.fsync_in_progress.store(false, Ordering::Release);
            // A write postponed behind this fsync goes now.
            let _pending = lock(&self.pending);
            self.wake.notify_one();
        }
    }

    /// The thread's loop. With `always` it writes every batch as soon as there is one and
    /// fsyncs it before publishing it. Otherwise it leaves the writes to the waiting
    /// connections and writes only what none took within [`GRACE`] (or, after a failed
    /// write, every [`RETRY_EVERY`]; after a postponing fsync, at once); it requests the
    /// `everysec` fsync once a second. On stop it writes what is left, fsyncs, and closes the
    /// file.
    fn thread_loop(&self, requests: Option<&std::sync::mpsc::Sender<()>>) {
        let mut last_fsync = Instant::now();
        // What waited for the thread to start is written at once.
        let mut write_now = true;
        // The batches taken when the thread last looked.
        let mut seen_taken = 0;
        loop {
            let stop = {
                let mut pending = lock(&self.pending);
                let policy = self.fsync.load(Ordering::Relaxed);
                // `everysec` and `no`: while the connections write (batches were taken since
                // the thread last looked) the thread looks every GRACE instead of being woken
                // by each effect into an empty buffer, which cost a futex wake per batch.
                let idle = pending.buf.is_empty() && (policy == 1 || pending.taken == seen_taken);
                seen_taken = pending.taken;
                if !write_now && !pending.stop && idle {
                    // Asleep until an effect arrives, and at least once a second (`everysec`
                    // fsyncs what was written).
                    pending.wake_thread = true;
                    let (guard, _) = self
                        .wake
                        .wait_timeout(pending, Duration::from_millis(1000))
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    pending = guard;
                    pending.wake_thread = false;
                    // `always`: written at once; otherwise the arriving effect's connection
                    // writes it, the thread looks again after GRACE.
                    write_now = policy == 1 && !pending.buf.is_empty();
                } else if !write_now && !pending.stop {
                    if policy == 1 {
                        write_now = true;
                    } else {
                        let fsync_ended = || {
                            self.postponed.load(Ordering::Relaxed)
                                && !self.fsync_in_progress.load(Ordering::Acquire)
                        };
                        let taken = pending.taken;
                        let wait = if self.last_write_ok.load(Ordering::Relaxed)
                            && !self.postponed.load(Ordering::Relaxed)
                        {
                            GRACE
                        } else {
                            RETRY_EVERY
                        };
                        if !fsync_ended() {
                            let (guard, _) = self
                                .wake
                                .wait_timeout(pending, wait)
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            pending = guard;
                        }
                        write_now =
                            !pending.buf.is_empty() && (pending.taken == taken || fsync_ended());
                    }
                }
                pending.stop
            };
            let mut output = lock(&self.output);
            let mut written = None;
            if write_now || stop {
                match self.flush(&mut output, None) {
                    Flushed::Empty(last) => written = Some(last),
                    Flushed::Wrote(last) => {
                        self.thread_writes.fetch_add(1, Ordering::Relaxed);
                        written = Some(last);
                    }
                    Flushed::Released(last) => {
                        self.durable.fetch_max(last, Ordering::AcqRel);
                    }
                }
            }
            write_now = false;
            // `no-appendfsync-on-rewrite yes` during a rewrite: as `no` until it ends.
            let policy = if self.no_fsync.load(Ordering::Relaxed) {
                2
            } else {
                self.fsync.load(Ordering::Relaxed)
            };
            let fsync_now = output.unsynced
                && (stop
                    || policy == 1
                    || (policy == 0 && last_fsync.elapsed() >= Duration::from_secs(1)));
            // `everysec` hands the fsync to the fsync thread, unless one runs already (then
            // the next round tries again), as Redis's `aof_background_fsync`.
            let background = policy == 0 && !stop && requests.is_some();
            if fsync_now && background {
                if !self.fsync_in_progress.swap(true, Ordering::AcqRel) {
                    if requests.is_some_and(|requests| requests.send(()).is_ok()) {
                        last_fsync = Instant::now();
                        output.unsynced = false;
                    } else {
                        self.fsync_in_progress.store(false, Ordering::Release);
                    }
                }
            } else if fsync_now {
                let synced = output.file.as_ref().map(File::sync_data);
                match synced {
                    Some(Err(err)) => {
                        if policy == 1 {
                            tracing::warn!(
                                "Can't persist AOF for fsync error when the AOF fsync policy \
                                 is 'always': {err}. Exiting..."
                            );
                            std::process::exit(1);
                        }
                        tracing::warn!("Error syncing the AOF file: {err}");
                    }
                    Some(Ok(())) => {
                        last_fsync = Instant::now();
                        output.unsynced = false;
                        self.fsyncs.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {}
                }
            }
            // With `always` a batch is published once it is fsynced (or when no fsync is due:
            // `no-appendfsync-on-rewrite`); with the others once it is written.
            if let Some(last) = written
                && (policy != 1 || !output.unsynced)
            {
                self.durable.fetch_max(last, Ordering::AcqRel);
            }
            if stop {
                output.file = None;
                // A stopped writer may stay referenced a while (a worker's cached owner in
                // `aof::Aof::owner`): it keeps no buffer.
                output.spare = Vec::new();
                self.stopped.store(true, Ordering::Release);
                self.release(output);
                break;
            }
            self.release(output);
        }
    }

    /// Takes what is buffered and writes it with one write(2), the caller holding the file
    /// (`output`). A leading connection passes the number it waits for: if that effect has
    /// not been handed over yet, the next effect that is wakes the waiting connections.
    ///
    /// `everysec` while the background fsync runs: as Redis's `flushAppendOnlyFile`, the write
    /// waits for it (a write to a file being fsynced can block) for at most 2 s, then goes
    /// ahead and counts in `aof_delayed_fsync`; meanwhile the replies go out (Redis's
    /// `beforeSleep` sends them although the write was postponed). After a failed write a
    /// leading connection does not retry (the thread does): the replies go out as Redis sends
    /// those of commands whose write failed, and MISCONF refuses the next writes.
    fn flush(&self, output: &mut Output, leader: Option<u64>) -> Flushed {
        let (buf, last_seq) = {
            let mut pending = lock(&self.pending);
            if let Some(seq) = leader
                && pending.last_seq < seq
            {
                pending.wake_leaders = true;
            }
            if pending.buf.is_empty() {
                return Flushed::Empty(pending.last_seq);
            }
            if !pending.stop
                && self.fsync.load(Ordering::Relaxed) == 0
                && self.fsync_in_progress.load(Ordering::Acquire)
            {
                let since = *output.postponed_since.get_or_insert_with(Instant::now);
                if since.elapsed() < POSTPONE_AT_MOST {
                    self.postponed.store(true, Ordering::Relaxed);
                    return Flushed::Released(pending.last_seq);
                }
                self.shared.delayed_fsync.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    "Asynchronous AOF fsync is taking too long (disk is busy?). Writing the \
                     AOF buffer without waiting for fsync to complete, this may slow down \
                     Redis."
                );
            }
            if leader.is_some() && !self.last_write_ok.load(Ordering::Relaxed) {
                return Flushed::Released(pending.last_seq);
            }
            output.postponed_since = None;
            if self.postponed.load(Ordering::Relaxed) {
                self.postponed.store(false, Ordering::Relaxed);
            }
            pending.taken += 1;
            (
                std::mem::replace(&mut pending.buf, std::mem::take(&mut output.spare)),
                pending.last_seq,
            )
        };
        let sleep_us = self.shared.flush_sleep_us.load(Ordering::Relaxed);
        if sleep_us > 0 {
            std::thread::sleep(Duration::from_micros(sleep_us));
        }
        let Output {
            file, len, fault, ..
        } = output;
        let Some(file) = file.as_mut() else {
            // Not reached: callers hold a file. Kept for the next write.
            self.put_back(buf);
            return Flushed::Released(last_seq);
        };
        let injected = fault.as_mut().and_then(|fault| fault.next(*len));
        let written = match injected {
            Some((err, short)) => {
                // A short write first, when the plan asks for one.
                let part = buf.get(..short.min(buf.len())).unwrap_or_default();
                match write_counting(file, part) {
                    Ok(()) => Err((err, part.len())),
                    Err(failed) => Err(failed),
                }
            }
            None => write_counting(file, &buf),
        };
        if let Err((err, partial)) = written {
            let mut buf = buf;
            if partial > 0 {
                // As Redis's flushAppendOnlyFile: a short write is cut off again, so the
                // retry does not leave half a command in the file; if it cannot be, what
                // reached the file stays and leaves the buffer.
                tracing::warn!(
                    "Short write while writing to the AOF file: (nwritten={partial}, \
                     expected={})",
                    buf.len()
                );
                if let Err(truncate) = file.set_len(*len) {
                    tracing::warn!(
                        "Could not remove short write from the append-only file. Redis may \
                         refuse to load the AOF the next time it starts. ftruncate: {truncate}"
                    );
                    *len += partial as u64;
                    self.incr_size.fetch_add(partial as u64, Ordering::Relaxed);
                    buf.drain(..partial.min(buf.len()));
                }
            }
            self.write_failed(&err, buf);
            // As Redis, which sends the replies of the commands whose write failed (and
            // refuses the next writes with MISCONF): they are released.
            return Flushed::Released(last_seq);
        }
        if !self.last_write_ok.load(Ordering::Relaxed) {
            self.last_write_ok.store(true, Ordering::Relaxed);
            self.shared.write_errno.store(0, Ordering::Relaxed);
            tracing::warn!("AOF write error looks solved, Redis can write again.");
        }
        *len += buf.len() as u64;
        self.incr_size
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        output.unsynced = true;
        // Kept for the next batch, unless a burst made it big.
        if buf.capacity() <= SPARE_AT_MOST {
            let mut spare = buf;
            spare.clear();
            output.spare = spare;
        }
        Flushed::Wrote(last_seq)
    }

    /// Redis 7.0 (aof.c `flushAppendOnlyFile`): with `always` a write that could not be
    /// persisted ends the process rather than be acknowledged; otherwise the error is recorded
    /// (INFO's `aof_last_write_status`) and the write retried.
    fn write_failed(&self, err: &std::io::Error, buf: Vec<u8>) {
        if self.always() {
            tracing::warn!(
                "Can't recover from AOF write error when the AOF fsync policy is 'always'. \
                 Exiting... ({err})"
            );
            std::process::exit(1);
        }
        self.shared
            .write_errno
            .store(err.raw_os_error().unwrap_or(5), Ordering::Relaxed);
        if self.last_write_ok.swap(false, Ordering::Relaxed) {
            tracing::warn!("Error writing to the AOF file: {err}");
        }
        self.put_back(buf);
    }

    /// Puts a batch that was not written back in front of what arrived since.
    fn put_back(&self, buf: Vec<u8>) {
        let mut pending = lock(&self.pending);
        let mut rest = std::mem::replace(&mut pending.buf, buf);
        pending.buf.append(&mut rest);
    }
}

/// The future of [`Writer::wait_durable`].
pub(crate) struct WaitDurable<'a> {
    writer: &'a Writer,
    key: Key,
    /// True while `key` may be in the writer's waiters.
    registered: bool,
}

impl WaitDurable<'_> {
    fn finish(&mut self) -> Poll<()> {
        if std::mem::take(&mut self.registered) {
            self.writer.waiters.remove(self.key);
        }
        Poll::Ready(())
    }
}

impl std::future::Future for WaitDurable<'_> {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let writer = this.writer;
        let seq = this.key.0;
        loop {
            if writer.answered(seq) {
                return this.finish();
            }
            if writer.lead(seq) {
                continue;
            }
            // Registered, then checked again: whoever held the file or publishes the number
            // next sees the registration when it lets go.
            writer.waiters.register(this.key, cx.waker());
            this.registered = true;
            if writer.answered(seq) {
                return this.finish();
            }
            if writer.lead(seq) {
                continue;
            }
            return Poll::Pending;
        }
    }
}

impl Drop for WaitDurable<'_> {
    fn drop(&mut self) {
        if self.registered {
            // Dropped while waiting (its connection ended): if it was woken to lead the next
            // write, another waiter is.
            self.writer.waiters.remove(self.key);
            self.writer.release_waiters();
        }
    }
}

/// What the effect stream hands the writer: an effect, or one command's effect borrowed
/// from its connection (`EffectStream::publish_command`).
#[derive(Clone, Copy)]
enum Taken<'a> {
    Effect(&'a Effect),
    Command {
        seq: Seq,
        db: usize,
        argv: &'a [Bytes],
    },
}

impl Taken<'_> {
    fn seq(self) -> Seq {
        match self {
            Taken::Effect(effect) => effect.seq,
            Taken::Command { seq, .. } => seq,
        }
    }
}

impl Writer {
    /// Takes what the stream handed over into the buffer, and wakes whoever needs it.
    fn take(&self, taken: Taken<'_>) {
        let mut pending = lock(&self.pending);
        let seq = taken.seq().get();
        let Some(start) = pending.skip_below else {
            pending.early.push(match taken {
                Taken::Effect(effect) => effect.clone(),
                Taken::Command { seq, db, argv } => Effect::command(seq, db, argv),
            });
            return;
        };
        if seq >= pending.end {
            // The next writer's; what this one logs is complete.
            pending.last_seq = pending.last_seq.max(pending.end.saturating_sub(1));
            return;
        }
        if seq < start {
            return;
        }
        let was_empty = pending.buf.is_empty();
        self.append_taken(&mut pending, taken);
        // The thread only when it sleeps on an empty buffer (with `always` it writes every
        // batch; otherwise it gives the waiting connections GRACE first); connections only
        // when one waits for an effect not handed over before.
        let wake_thread = was_empty && std::mem::take(&mut pending.wake_thread);
        let wake_leaders = std::mem::take(&mut pending.wake_leaders);
        drop(pending);
        if wake_thread {
            self.wake.notify_one();
        }
        if wake_leaders {
            // One leader writes what arrived for all of them: the first waiter (and those the
            // published number answers), not every waiter.
            self.release_waiters();
        }
    }
}

impl EffectConsumer for Writer {
    fn consume(&self, effect: &Effect) {
        self.take(Taken::Effect(effect));
    }

    /// Renders the command straight from the connection's argv: no copy of it.
    fn consume_command(&self, seq: Seq, db: usize, argv: &[Bytes]) {
        self.take(Taken::Command { seq, db, argv });
    }
}

/// Writes all of `buf`; on an error, also how many bytes reached the file before it.
fn write_counting(file: &mut File, buf: &[u8]) -> Result<(), (std::io::Error, usize)> {
    let mut done = 0;
    while let Some(rest) = buf.get(done..) {
        if rest.is_empty() {
            break;
        }
        match file.write(rest) {
            Ok(0) => return Err((std::io::ErrorKind::WriteZero.into(), done)),
            Ok(n) => done += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err((err, done)),
        }
    }
    Ok(())
}

/// Test-only: write failures to inject
/// (`FORKLESS_AOF_FAULT=after=<bytes>,errno=<n>,times=<k>[,short=<s>]`: once the incr file holds
/// `after` bytes, the next `k` writes fail with OS error `n`, each after writing its first `s`
/// bytes), for the tests of Redis's disk-full behaviour. Read once per writer; unset in
/// production.
#[derive(Debug)]
struct Fault {
    after: u64,
    errno: i32,
    times: u64,
    short: usize,
}

impl Fault {
    const ENV: &'static str = "FORKLESS_AOF_FAULT";

    fn from_env() -> Option<Fault> {
        let spec = std::env::var(Self::ENV).ok()?;
        let mut fault = Fault {
            after: 0,
            errno: 28,
            times: u64::MAX,
            short: 0,
        };
        for part in spec.split(',') {
            let (key, value) = part.split_once('=')?;
            match key {
                "after" => fault.after = value.parse().ok()?,
                "errno" => fault.errno = value.parse().ok()?,
                "times" => fault.times = value.parse().ok()?,
                "short" => fault.short = value.parse().ok()?,
                _ => return None,
            }
        }
        Some(fault)
    }

    /// The error the next write gets, if any, with `size` bytes in the file, and how many
    /// bytes it writes first.
    fn next(&mut self, size: u64) -> Option<(std::io::Error, usize)> {
        if size < self.after || self.times == 0 {
            return None;
        }
        self.times -= 1;
        Some((std::io::Error::from_raw_os_error(self.errno), self.short))
    }
}

/// Appends `argv` as a RESP array of bulk strings, as Redis's `catAppendOnlyGenericCommand`.
pub(crate) fn encode(buf: &mut Vec<u8>, argv: &[Bytes]) {
    header(buf, b'*', argv.len());
    for arg in argv {
        header(buf, b'$', arg.len());
        buf.extend_from_slice(arg);
        buf.extend_from_slice(b"\r\n");
    }
}

/// Appends `<kind><n>\r\n` without allocating.
fn header(buf: &mut Vec<u8>, kind: u8, n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        if let Some(digit) = digits.get_mut(at) {
            // `rest % 10` is below 10.
            *digit = b'0' + (rest % 10) as u8;
        }
        rest /= 10;
        if rest == 0 || at == 0 {
            break;
        }
    }
    buf.push(kind);
    buf.extend_from_slice(digits.get(at..).unwrap_or_default());
    buf.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::Op;
    use forkless_storage::effect::Seq;

    fn effect(seq: Seq, key: &str) -> Effect {
        Effect {
            seq,
            transaction: false,
            ops: vec![Op {
                db: 0,
                argv: vec![
                    Bytes::from_static(b"SET"),
                    Bytes::from(key.to_owned()),
                    Bytes::from_static(b"v"),
                ],
            }],
        }
    }

    #[test]
    fn encode_writes_resp_arrays_of_bulk_strings() {
        let mut buf = Vec::new();
        encode(
            &mut buf,
            &[Bytes::from_static(b"SET"), Bytes::from(vec![b'x'; 1234])],
        );
        let mut expected = b"*2\r\n$3\r\nSET\r\n$1234\r\n".to_vec();
        expected.extend_from_slice(&[b'x'; 1234]);
        expected.extend_from_slice(b"\r\n");
        assert_eq!(buf, expected);
        for n in [0, 9, 10, 99, 100, 1 << 20, usize::MAX] {
            let mut buf = Vec::new();
            header(&mut buf, b'$', n);
            assert_eq!(buf, format!("${n}\r\n").into_bytes());
        }
    }

    /// A fresh directory for one test's incr file.
    fn test_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("forkless-aof-writer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    /// The commands in an incr file.
    fn count_commands(path: &std::path::Path) -> usize {
        let data = std::fs::read(path).expect("read");
        let mut commands = 0;
        let ending = super::super::load::parse_commands(&data, |_, _| {
            commands += 1;
            Ok(())
        })
        .expect("parse");
        assert!(matches!(ending, Ok(super::super::load::Ending::Clean)));
        commands
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    }

    /// A writer for `everysec` holding `path` as if its thread had started, without the
    /// thread: only waiting connections write.
    fn writer_without_thread(path: &std::path::Path) -> Writer {
        let writer = Writer::new(AppendFsync::Everysec, 0, 0, Shared::default());
        lock(&writer.output).file = Some(File::create(path).expect("file"));
        writer.set_start(0);
        writer
    }

    /// Leader/follower group write: with `everysec` a waiting connection writes everything
    /// buffered itself, with one write(2), and the number it waits for is published; no
    /// thread takes part.
    #[test]
    fn everysec_a_waiting_connection_writes_the_buffer_itself() {
        let dir = test_dir("leader");
        let path = dir.join("incr.aof");
        let writer = writer_without_thread(&path);
        let mut seq = Seq::FIRST;
        for i in 0..500 {
            writer.consume(&effect(seq, &format!("k{i}")));
            seq = seq.next();
        }
        let last = seq.get() - 1;
        runtime().block_on(writer.wait_durable(last));
        assert_eq!(writer.durable.load(Ordering::Relaxed), last);
        assert_eq!(writer.leader_writes.load(Ordering::Relaxed), 1);
        assert_eq!(writer.buffered(), 0);
        // One SELECT, then the 500 SETs.
        assert_eq!(count_commands(&path), 501);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A command handed over borrowed (`consume_command`, the command path's common case) is
    /// written byte for byte as the same command handed over as an owned effect, SELECTs
    /// included.
    #[test]
    fn a_borrowed_command_is_written_as_its_owned_effect() {
        let dir = test_dir("borrowed");
        let mut files = Vec::new();
        for borrowed in [false, true] {
            let path = dir.join(format!("incr-{borrowed}.aof"));
            let writer = writer_without_thread(&path);
            let mut seq = Seq::FIRST;
            for i in 0..20usize {
                let db = i / 3 % 3;
                let argv = [
                    Bytes::from_static(b"SET"),
                    Bytes::from(format!("k{i}")),
                    Bytes::from(vec![b'v'; i * 7]),
                ];
                if borrowed {
                    writer.consume_command(seq, db, &argv);
                } else {
                    writer.consume(&Effect::command(seq, db, &argv));
                }
                seq = seq.next();
            }
            runtime().block_on(writer.wait_durable(seq.get() - 1));
            files.push(std::fs::read(&path).expect("read"));
        }
        assert_eq!(files[0], files[1]);
        // 20 SETs and a SELECT at each of the 7 changes of database (the first included).
        assert_eq!(count_commands(&dir.join("incr-true.aof")), 27);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A connection whose effect the stream has not handed over yet (held back behind a lower
    /// number) writes what is there, then is woken by its effect's arrival and leads again.
    #[test]
    fn a_waiter_whose_effect_arrives_later_is_woken_by_it_and_writes_it() {
        let dir = test_dir("later");
        let path = dir.join("incr.aof");
        let writer = writer_without_thread(&path);
        let mut seq = Seq::FIRST;
        for i in 0..10 {
            writer.consume(&effect(seq, &format!("k{i}")));
            seq = seq.next();
        }
        let late = seq;
        runtime().block_on(async {
            let wait = writer.wait_durable(late.get());
            let arrive = async {
                tokio::task::yield_now().await;
                writer.consume(&effect(late, "late"));
            };
            tokio::join!(wait, arrive);
        });
        assert_eq!(writer.durable.load(Ordering::Relaxed), late.get());
        assert_eq!(writer.leader_writes.load(Ordering::Relaxed), 2);
        assert_eq!(count_commands(&path), 12);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A model of the effect stream: numbers reserved in any order, handed to the writer in
    /// number order, each held back until every lower one is published.
    #[derive(Default)]
    struct Stream {
        next: Option<Seq>,
        handover: Option<Seq>,
        held: std::collections::BTreeSet<Seq>,
    }

    impl Stream {
        fn reserve(&mut self) -> Seq {
            let seq = self.next.unwrap_or(Seq::FIRST);
            self.next = Some(seq.next());
            seq
        }

        fn publish(&mut self, writer: &Writer, seq: Seq) {
            self.held.insert(seq);
            let mut handover = self.handover.unwrap_or(Seq::FIRST);
            while self.held.remove(&handover) {
                writer.consume(&effect(handover, &format!("k{}", handover.get())));
                handover = handover.next();
            }
            self.handover = Some(handover);
        }
    }

    /// The leader/follower hand-off under contention, without the thread (whose periodic
    /// release would hide a lost wakeup): 6 OS threads, each a runtime of 5 connections, each
    /// publishing 1 to 3 effects then waiting for the last; some effects are published a yield
    /// after they are numbered, so others wait for numbers held back behind them. Every wait
    /// must end (a lost wakeup hangs a connection: the test fails at its deadline), end only
    /// once its number is written, and the file must hold every effect once.
    #[test]
    fn many_connections_leading_and_following_lose_no_wakeup_and_no_effect() {
        const THREADS: usize = 6;
        const CONNECTIONS: usize = 5;
        const ROUNDS: usize = 300;
        let dir = test_dir("stress");
        let path = dir.join("incr.aof");
        let writer = Arc::new(writer_without_thread(&path));
        // Slow writes, so that connections find the file taken and queue behind its holder.
        writer.shared.flush_sleep_us.store(20, Ordering::Relaxed);
        let stream = Arc::new(Mutex::new(Stream::default()));
        let (done, finished) = std::sync::mpsc::channel();
        for thread in 0..THREADS {
            let writer = Arc::clone(&writer);
            let stream = Arc::clone(&stream);
            let done = done.clone();
            std::thread::spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime(), async {
                    let tasks: Vec<_> = (0..CONNECTIONS)
                        .map(|connection| {
                            let writer = Arc::clone(&writer);
                            let stream = Arc::clone(&stream);
                            tokio::task::spawn_local(async move {
                                let mut published = 0u64;
                                for round in 0..ROUNDS {
                                    let effects = 1 + (thread + connection + round) % 3;
                                    let mut last = Seq::FIRST;
                                    for n in 0..effects {
                                        let seq = lock(&stream).reserve();
                                        if (round + n + connection) % 7 == 0 {
                                            // Numbered now, handed over a yield later.
                                            tokio::task::yield_now().await;
                                        }
                                        lock(&stream).publish(&writer, seq);
                                        last = seq;
                                        published += 1;
                                    }
                                    if round % 2 == 0 {
                                        tokio::task::yield_now().await;
                                    }
                                    writer.wait_durable(last.get()).await;
                                    assert!(writer.durable.load(Ordering::Acquire) >= last.get());
                                }
                                published
                            })
                        })
                        .collect();
                    let mut published = 0;
                    for task in tasks {
                        published += task.await.expect("connection");
                    }
                    let _ = done.send(published);
                });
            });
        }
        drop(done);
        let mut published = 0;
        for _ in 0..THREADS {
            published += finished
                .recv_timeout(Duration::from_secs(60))
                .expect("a connection never got its wakeup");
        }
        let written = lock(&stream).handover.map_or(0, |seq| seq.get() - 1);
        assert_eq!(written, published);
        assert_eq!(writer.durable.load(Ordering::Acquire), written);
        assert!(writer.leader_writes.load(Ordering::Relaxed) >= 1);
        // One SELECT, then every effect once.
        assert_eq!(
            count_commands(&path),
            1 + usize::try_from(published).expect("count")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Effects no connection waits for (the active expiry's DELs) reach the file through the
    /// thread once no leader took them.
    #[test]
    fn effects_nobody_waits_for_are_written_by_the_thread() {
        let dir = test_dir("backstop");
        let path = dir.join("incr.aof");
        let writer = Arc::new(Writer::new(AppendFsync::Everysec, 0, 0, Shared::default()));
        writer.set_start(0);
        let thread = writer
            .spawn(File::create(&path).expect("file"))
            .expect("spawn");
        let mut seq = Seq::FIRST;
        for i in 0..10 {
            writer.consume(&effect(seq, &format!("k{i}")));
            seq = seq.next();
        }
        let last = seq.get() - 1;
        let deadline = Instant::now() + Duration::from_secs(20);
        while writer.durable.load(Ordering::Acquire) < last {
            assert!(
                Instant::now() < deadline,
                "the thread never wrote the effects"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(writer.thread_writes.load(Ordering::Relaxed) >= 1);
        assert_eq!(writer.leader_writes.load(Ordering::Relaxed), 0);
        writer.stop();
        thread.join().expect("join");
        assert_eq!(count_commands(&path), 11);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Group commit: with `always`, the effects that arrived while the thread was busy (here:
    /// before it started) are written and made durable by one fsync, not one each.
    #[test]
    fn always_shares_one_fsync_among_the_waiting_effects() {
        let dir = std::env::temp_dir().join(format!("forkless-aof-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("incr.aof");
        let file = File::create(&path).expect("file");
        let writer = Arc::new(Writer::new(AppendFsync::Always, 0, 0, Shared::default()));
        writer.set_start(0);
        let mut seq = Seq::FIRST;
        for i in 0..500 {
            writer.consume(&effect(seq, &format!("k{i}")));
            seq = seq.next();
        }
        let last = seq.get() - 1;
        let thread = writer.spawn(file).expect("spawn");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        runtime.block_on(writer.wait_durable(last));
        assert_eq!(writer.fsyncs.load(Ordering::Relaxed), 1);
        writer.stop();
        thread.join().expect("join");
        let data = std::fs::read(&path).expect("read");
        let mut commands = 0;
        let ending = super::super::load::parse_commands(&data, |_, _| {
            commands += 1;
            Ok(())
        })
        .expect("parse");
        assert!(matches!(ending, Ok(super::super::load::Ending::Clean)));
        // One SELECT, then the 500 SETs.
        assert_eq!(commands, 501);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
