//! Persistence: SAVE, BGSAVE, save points, LASTSAVE, MISCONF and the final save; loading at
//! startup is in `load.rs`, INFO's `# Persistence` section in `info.rs`.
//!
//! A save always starts with the cut on the thread that asked for it (the command's thread or
//! the save-point timer), so the snapshot is the dataset at the moment the command ran. BGSAVE
//! then hands the cut to a `forkless-bgsave` thread; SAVE runs the same save on its own
//! thread and waits, as Redis's SAVE does. In fork mode (`snapshot-mode fork`, or
//! `BGSAVE FORK`) background saves fork a child instead: see `fork_mode.rs`. SAVE and the
//! final save are epoch saves in both modes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use forkless_snapshot::backend::{Target, WriterKind, WriterUsed};
use forkless_snapshot::save::{
    self, ClientActivity, Compression, Progress, SaveError, SaveOptions, SaveReport,
    TraversalPriority,
};
use forkless_storage::{SaveClaim, SnapshotCut};

use crate::config::{Config, SnapshotCompression, SnapshotMode, SnapshotWriter};
use crate::server::{Server, lock, unix_ms};

mod info;
mod load;

pub(crate) use info::info_section;
pub(crate) use load::{
    Loading, load_at_startup, load_rdb_cancellable, load_rdb_into, load_rdb_preamble,
    prepare_loading,
};

/// Redis waits this long after a failed background save before a save point may retry.
const BGSAVE_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Redis's reply when a save is requested while one runs.
pub(crate) const ALREADY_IN_PROGRESS: &str = "ERR Background save already in progress";

/// Redis's reply to a command that cannot run while the dataset loads.
pub(crate) const LOADING: &str = "LOADING Redis is loading the dataset in memory";

/// Redis's MISCONF error, given to writes while the last background save failed.
pub(crate) const MISCONF: &str = "MISCONF Redis is configured to save RDB snapshots, but it's \
currently unable to persist to disk. Commands that may modify the data set are disabled, \
because this instance is configured to report errors during writes if RDB snapshotting fails \
(stop-writes-on-bgsave-error option). Please check the Redis logs for details about the RDB \
error.";

/// How a background save takes its point in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SaveKind {
    /// Versioned entries, in this process (the default).
    Epoch,
    /// A `fork()`ed child.
    Fork,
}

impl SaveKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SaveKind::Epoch => "epoch",
            SaveKind::Fork => "fork",
        }
    }
}

/// What the server records about the save that is running: the record its save claim carries
/// (`Keyspace::claim_save`). The keyspace's save slot is the one place that says whether a
/// save runs; this is what INFO shows of it.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) started: Instant,
    pub(crate) progress: Arc<Progress>,
    /// `keyspace.dirty()` just before the cut: on success, changes up to here are saved.
    pub(crate) dirty_at_cut: u64,
    pub(crate) kind: SaveKind,
    /// The child's pid while a fork-mode save runs and has not been reaped.
    pub(crate) fork_pid: Option<i32>,
}

/// The running save's record, if a save runs.
pub(crate) fn running(server: &Server) -> Option<Arc<Running>> {
    server
        .keyspace
        .running_save()
        .and_then(|record| record.downcast::<Running>().ok())
}

/// What INFO persistence shows of past saves. A std mutex: taken briefly by commands, the
/// save-point timer and the save thread at its start and end, never across an await or during
/// a save. A save's claim is taken and released with it held, so that readers of both see a
/// save's end and its outcome together.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) last_save_unix_secs: u64,
    pub(crate) last_bgsave_ok: bool,
    pub(crate) last_bgsave_time_sec: i64,
    pub(crate) last_try_unix_ms: u64,
    pub(crate) dirty_at_last_save: u64,
    pub(crate) saves: u64,
    pub(crate) last_error: Option<String>,
    pub(crate) writer: Option<&'static str>,
    pub(crate) writer_fallback_reason: Option<String>,
    pub(crate) last_bytes_written: u64,
    pub(crate) last_keys_saved: u64,
    /// Keys the last epoch save took ahead of their shard (retained versions swept early).
    pub(crate) last_keys_saved_early: u64,
    pub(crate) last_load_keys_loaded: u64,
    pub(crate) last_load_keys_expired: u64,
    pub(crate) loading_time_ms: u64,
    /// The kind of the last background save that finished, for `rdb_last_bgsave_type`.
    pub(crate) last_bgsave_type: Option<SaveKind>,
    /// Fork mode figures, named as Redis's INFO fields.
    pub(crate) latest_fork_usec: u64,
    pub(crate) total_forks: u64,
    pub(crate) current_cow_bytes: u64,
    pub(crate) current_cow_peak: u64,
    pub(crate) current_cow_updated: Option<Instant>,
    pub(crate) last_cow_bytes: u64,
}

/// The server's persistence state.
#[derive(Debug)]
pub(crate) struct Persistence {
    pub(crate) state: Mutex<State>,
    pub(crate) loading: Loading,
    /// Notified whenever a save finishes, for the final save to wait on a running one.
    pub(crate) finished: Condvar,
    /// Mirrors `!state.last_bgsave_ok` so the per-command MISCONF check takes no lock.
    pub(crate) last_save_failed: AtomicBool,
    /// Numbers each temp file name, as Redis's `temp-<pid>.rdb` but unique per save.
    temp_counter: AtomicU64,
}

impl Persistence {
    pub(crate) fn new(started_unix_secs: u64) -> Persistence {
        Persistence {
            state: Mutex::new(State {
                last_save_unix_secs: started_unix_secs,
                last_bgsave_ok: true,
                last_bgsave_time_sec: -1,
                last_try_unix_ms: 0,
                dirty_at_last_save: 0,
                saves: 0,
                last_error: None,
                writer: None,
                writer_fallback_reason: None,
                last_bytes_written: 0,
                last_keys_saved: 0,
                last_keys_saved_early: 0,
                last_load_keys_loaded: 0,
                last_load_keys_expired: 0,
                loading_time_ms: 0,
                last_bgsave_type: None,
                latest_fork_usec: 0,
                total_forks: 0,
                current_cow_bytes: 0,
                current_cow_peak: 0,
                current_cow_updated: None,
                last_cow_bytes: 0,
            }),
            loading: Loading::default(),
            finished: Condvar::new(),
            last_save_failed: AtomicBool::new(false),
            temp_counter: AtomicU64::new(0),
        }
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Returns true if and only if the dump is still being loaded at startup.
    pub(crate) fn loading(&self) -> bool {
        self.loading.active.load(Ordering::Acquire)
    }
}

/// With `snapshot-writer auto`, finds out at startup which writer saves will use, so that INFO's
/// `snapshot_writer` and the log say it before the first save (each save decides again).
pub(crate) fn probe_writer(server: &Server) {
    if server.config().snapshot_writer != SnapshotWriter::Auto {
        return;
    }
    let mut state = server.persistence.state();
    match forkless_snapshot::backend::probe_io_uring() {
        Ok(()) => {
            state.writer = Some(WriterUsed::IoUring.as_str());
            tracing::info!("Snapshots will be written with io_uring");
        }
        Err(err) => {
            state.writer = Some(WriterUsed::Blocking.as_str());
            tracing::warn!("Snapshots will be written with the blocking writer: {err}");
            state.writer_fallback_reason = Some(err.to_string());
        }
    }
}

/// Returns true if and only if writes must be refused with MISCONF: the last background save
/// failed, save points are configured and `stop-writes-on-bgsave-error` is on (Redis's rule).
pub(crate) fn writes_refused(server: &Server) -> bool {
    if !server.persistence.last_save_failed.load(Ordering::Relaxed) {
        return false;
    }
    let config = server.config();
    config.stop_writes_on_bgsave_error && !config.save.is_empty()
}

/// Redis's `REDIS_AUTOSYNC_BYTES`: the fsync interval of `rdb-save-incremental-fsync` and
/// `aof-rewrite-incremental-fsync`.
const AUTOSYNC_BYTES: u64 = 4 << 20;

/// `SaveOptions::fsync_every` for the yes/no option `name` (default yes).
pub(crate) fn incremental_fsync(config: &Config, name: &str) -> u64 {
    if config.stored_text(name) == b"no" {
        0
    } else {
        AUTOSYNC_BYTES
    }
}

pub(crate) fn save_options(server: &Server, config: &Config) -> SaveOptions {
    let n = server
        .persistence
        .temp_counter
        .fetch_add(1, Ordering::Relaxed);
    SaveOptions {
        target: Target::new(
            config.dir.clone(),
            config.dbfilename.clone(),
            format!("temp-{}-{n}.rdb", std::process::id()),
        ),
        writer: match config.snapshot_writer {
            SnapshotWriter::Auto => WriterKind::Auto,
            SnapshotWriter::IoUring => WriterKind::IoUring,
            SnapshotWriter::Blocking => WriterKind::Blocking,
        },
        compress_strings: config.rdbcompression,
        checksum: config.rdbchecksum,
        compression: match config.snapshot_compression {
            SnapshotCompression::None => Compression::None,
            SnapshotCompression::Zstd => Compression::Zstd {
                level: config.snapshot_compression_level,
            },
        },
        threads: if config.snapshot_threads == 0 {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        } else {
            config.snapshot_threads
        },
        max_bytes_per_sec: config.snapshot_max_bytes_per_sec,
        fsync_every: incremental_fsync(config, "rdb-save-incremental-fsync"),
        priority: if config.snapshot_idle_priority {
            TraversalPriority::Idle
        } else {
            TraversalPriority::Nice(config.snapshot_nice)
        },
        activity: server.arc().map(|owner| {
            let server = Arc::downgrade(&owner);
            ClientActivity::new(move || {
                server.upgrade().map_or(0, |server| {
                    server
                        .stats
                        .total_commands_processed
                        .load(Ordering::Relaxed)
                })
            })
        }),
        used_mem: crate::info::rss_bytes(),
        ctime_unix_secs: unix_ms() / 1000,
        functions: server.scripting.library_codes(),
        repl: None,
        key_delay: Some(Arc::clone(&server.tunables.rdb_key_save_delay)),
    }
}

/// Takes the cut and registers the save as running. Err is the reply for the client.
///
/// The options are read from the configuration before the state lock is taken: the server's
/// lock order (docs/ARCHITECTURE.md) puts the configuration before the persistence state, and
/// INFO takes them in that order.
fn begin(server: &Server) -> Result<Begun, &'static str> {
    let options = save_options(server, &server.config());
    // Where the cut falls in the replication stream (the dump's `repl-offset`): taken before
    // the state lock, as the replica's master link takes it before any command's locks.
    let repl_cut = server.replication.before_save_cut();
    let mut state = server.persistence.state();
    if server.keyspace.save_running() {
        return Err(ALREADY_IN_PROGRESS);
    }
    let dirty_at_cut = server.keyspace.dirty();
    let progress = Arc::new(Progress::default());
    let record = Arc::new(Running {
        started: Instant::now(),
        progress: Arc::clone(&progress),
        dirty_at_cut,
        kind: SaveKind::Epoch,
        fork_pid: None,
    });
    let claim = server
        .keyspace
        .claim_save(record)
        .ok_or(ALREADY_IN_PROGRESS)?;
    let cut = server.keyspace.cut(&claim, unix_ms());
    let repl = repl_cut.after(cut.as_ref().map(SnapshotCut::seq));
    let cut = cut.ok_or(ALREADY_IN_PROGRESS)?;
    state.last_try_unix_ms = unix_ms();
    Ok(Begun {
        claim,
        cut,
        options,
        progress,
        repl,
    })
}

/// A save that [`begin`] accepted: its claim on the save slot, its cut, and how to run it.
struct Begun {
    claim: SaveClaim,
    cut: SnapshotCut,
    options: SaveOptions,
    progress: Arc<Progress>,
    /// The replication fields, once the stream has reached the cut.
    repl: crate::replication::SaveRepl,
}

impl Begun {
    /// Fills in the replication fields; a primary's wait for its stream to reach the cut.
    fn resolve_repl(&mut self, server: &Server) {
        let repl = std::mem::replace(&mut self.repl, crate::replication::SaveRepl::None);
        self.options.repl = server.replication.save_aux(server, repl);
    }
}

/// Records the outcome of a save, logs it, and releases its claim.
fn finish(
    server: &Server,
    result: &Result<SaveReport, SaveError>,
    background: bool,
    claim: SaveClaim,
) {
    // What the save freed (old versions, chunk buffers, the sweeper's batches) went back to
    // the allocator's arenas, which keep it mapped: the cron gives it back to the system
    // (`limits::release_free_memory`), so RSS returns to where it was before the save.
    crate::limits::request_memory_release();
    let mut state = server.persistence.state();
    let running = running(server);
    // Released with the state held, so no reader sees the save ended without its outcome.
    drop(claim);
    server.persistence.finished.notify_all();
    let Some(running) = running else {
        return;
    };
    state.last_bgsave_time_sec =
        i64::try_from(running.started.elapsed().as_secs()).unwrap_or(i64::MAX);
    if background {
        state.last_bgsave_type = Some(SaveKind::Epoch);
    }
    match result {
        Ok(report) => {
            record_success(
                server,
                &mut state,
                running.dirty_at_cut,
                report.writer.as_str(),
                report.fallback_reason.clone(),
                (report.bytes_written, report.keys_saved),
            );
            state.last_keys_saved_early = report.keys_saved_early;
            if let Some(reason) = &report.fallback_reason {
                tracing::warn!(
                    "Snapshot written with the blocking writer: io_uring unavailable ({reason})"
                );
            }
            let secs = report.duration.as_secs_f64();
            let mb_per_sec = report.bytes_written as f64 / 1e6 / secs.max(1e-9);
            if background {
                tracing::info!(
                    keys = report.keys_saved,
                    bytes = report.bytes_written,
                    writer = report.writer.as_str(),
                    "Background saving terminated with success ({secs:.3} s, {mb_per_sec:.0} MB/s)"
                );
            } else {
                tracing::info!(
                    keys = report.keys_saved,
                    bytes = report.bytes_written,
                    "DB saved on disk"
                );
            }
        }
        Err(err) => {
            // As in Redis, only a failed background save sets the status that MISCONF follows:
            // a failed SAVE (or final save) leaves it alone (`rdbSave`), and a save the server
            // cancelled itself is no failure (Redis kills its child with SIGUSR1 for that).
            if background && !matches!(err, SaveError::Cancelled) {
                record_failure(server, &mut state, err.to_string());
            } else {
                state.last_error = Some(err.to_string());
            }
            if background {
                tracing::warn!("Background saving error: {err}");
            } else {
                tracing::warn!("Failed saving the DB: {err}");
            }
        }
    }
}

/// Records a successful save (epoch or fork): the dump on disk now holds the changes up to
/// `dirty_at_cut`, and MISCONF is lifted. `written` is (bytes, keys).
pub(crate) fn record_success(
    server: &Server,
    state: &mut State,
    dirty_at_cut: u64,
    writer: &'static str,
    fallback_reason: Option<String>,
    written: (u64, u64),
) {
    server
        .persistence
        .last_save_failed
        .store(false, Ordering::Relaxed);
    state.last_bgsave_ok = true;
    state.last_error = None;
    state.last_save_unix_secs = unix_ms() / 1000;
    state.dirty_at_last_save = dirty_at_cut;
    state.saves += 1;
    state.writer = Some(writer);
    state.writer_fallback_reason = fallback_reason;
    (state.last_bytes_written, state.last_keys_saved) = written;
    state.last_keys_saved_early = 0;
}

/// Records a failed background save: `rdb_last_bgsave_status:err`, and MISCONF for writes
/// while the save points and `stop-writes-on-bgsave-error` ask for it.
pub(crate) fn record_failure(server: &Server, state: &mut State, error: String) {
    server
        .persistence
        .last_save_failed
        .store(true, Ordering::Relaxed);
    state.last_bgsave_ok = false;
    state.last_error = Some(error);
}

/// BGSAVE: a background save of the kind asked for (`None`: `snapshot-mode` decides). Err is
/// the reply for the client.
pub(crate) fn bgsave(server: &Server, kind: Option<SaveKind>) -> Result<(), String> {
    let kind = kind.unwrap_or(match server.config().snapshot_mode {
        SnapshotMode::Epoch => SaveKind::Epoch,
        SnapshotMode::Fork => SaveKind::Fork,
    });
    match kind {
        SaveKind::Epoch => bgsave_epoch(server),
        SaveKind::Fork => crate::fork_mode::bgsave_fork(server),
    }
}

/// An epoch BGSAVE: cut now, save on a background thread.
fn bgsave_epoch(server: &Server) -> Result<(), String> {
    let begun = begin(server).map_err(str::to_string)?;
    let Some(owner) = server.arc() else {
        server.keyspace.end_snapshot(begun.cut);
        drop(begun.claim);
        return Err("ERR server is shutting down".into());
    };
    let (begun_tx, begun_rx) = std::sync::mpsc::channel::<Begun>();
    let spawned = std::thread::Builder::new()
        .name("forkless-bgsave".into())
        .spawn(move || {
            let Ok(mut begun) = begun_rx.recv() else {
                return;
            };
            begun.resolve_repl(&owner);
            // The writer runs on this thread at the clients' priority (so does the sweeper it
            // starts): only the traversal threads take `snapshot-nice`.
            let result = save::save(&owner.keyspace, begun.cut, &begun.options, &begun.progress);
            finish(&owner, &result, true, begun.claim);
        });
    match spawned {
        Ok(_) => {
            tracing::info!("Background saving started");
            // The thread is alive and waiting for the save: the send cannot fail.
            let _ = begun_tx.send(begun);
            Ok(())
        }
        Err(err) => {
            server.keyspace.end_snapshot(begun.cut);
            let result = Err(SaveError::Spawn(err));
            finish(server, &result, true, begun.claim);
            Err("ERR Can't save in background: could not start the save thread".into())
        }
    }
}

/// SAVE (and the save before shutdown): cut now, save, wait. Err is the reply for the client.
pub(crate) fn save_blocking(server: &Server) -> Result<(), String> {
    let mut begun = begin(server).map_err(str::to_string)?;
    // Someone waits for this save (a client, or the exit), so its traversal does not yield.
    begun.options.priority = TraversalPriority::Nice(0);
    begun.resolve_repl(server);
    let result = save::save(&server.keyspace, begun.cut, &begun.options, &begun.progress);
    finish(server, &result, false, begun.claim);
    result.map(drop).map_err(|_| "ERR".to_string())
}

/// The save before exiting (SHUTDOWN SAVE, or a signal with save points configured): a running
/// background save is cancelled and awaited, then a foreground save runs, as Redis kills its
/// child and saves in the foreground.
pub(crate) fn final_save(server: &Server) -> Result<(), String> {
    crate::aof::rewrite::cancel_and_wait(server);
    let mut state = server.persistence.state();
    while let Some(running) = running(server) {
        running.progress.cancel.store(true, Ordering::Relaxed);
        if let Some(pid) = running.fork_pid {
            // As Redis's killRDBChild: SIGUSR1, which the reaper counts as a cancelled save,
            // not a failed one, and it removes the temp file.
            tracing::warn!("There is a child saving an .rdb. Killing it!");
            crate::fork_mode::kill_child(pid, crate::fork_mode::SIGNAL_CANCEL);
        }
        state = server
            .persistence
            .finished
            .wait(state)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
    drop(state);
    // No write lands after the cut: the dump, and the replication offset it records, are
    // the last state clients and replicas saw.
    server.pause.pause_writes_for_shutdown();
    let saved = save_blocking(server);
    if saved.is_err() {
        server.pause.end_shutdown_pause();
    }
    saved
}

/// SHUTDOWN's decision: `save` is Some(true) for SAVE, Some(false) for NOSAVE, None to follow
/// the save points. On success the server is asked to stop; Err is the reply for the client.
pub(crate) fn shutdown(server: &Server, save: Option<bool>) -> Result<(), String> {
    // A dataset still loading is incomplete: never saved, whatever was asked (as Redis).
    let save =
        save.unwrap_or_else(|| !server.config().save.is_empty()) && !server.persistence.loading();
    if save {
        tracing::info!("Saving the final RDB snapshot before exiting.");
        tokio::task::block_in_place(|| final_save(server)).map_err(|_| {
            tracing::warn!("Error trying to save the DB, can't exit.");
            "ERR Errors trying to SHUTDOWN. Check logs.".to_string()
        })?;
    }
    server.skip_final_save.store(true, Ordering::Release);
    server.request_shutdown();
    Ok(())
}

/// The save-point timer: once a second, starts a BGSAVE when a `save <secs> <changes>` point is
/// due, as Redis's serverCron does (and not within 5 s of a failed attempt).
pub(crate) fn spawn_save_point_timer(
    server: Arc<Server>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("forkless-savepoints".into())
        .spawn(move || {
            while !server.shutting_down.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(100));
                crate::aof::auto_rewrite(&server);
                if save_point_due(&server) {
                    // The cut must not fall inside a transaction: hold the gate as a command
                    // does.
                    let _gate = server.keyspace.gate().shared();
                    if let Err(err) = bgsave(&server, None) {
                        tracing::debug!("save point: {err}");
                    }
                }
            }
        })
}

fn save_point_due(server: &Server) -> bool {
    let now_ms = unix_ms();
    let changes = {
        let state = server.persistence.state();
        // A dataset loading (a replica's sync) is not saved half-way.
        if server.keyspace.save_running() || server.persistence.loading() {
            return false;
        }
        let retry_ok = state.last_bgsave_ok
            || now_ms.saturating_sub(state.last_try_unix_ms)
                > BGSAVE_RETRY_DELAY.as_millis() as u64;
        if !retry_ok {
            return false;
        }
        let since_secs = (now_ms / 1000).saturating_sub(state.last_save_unix_secs);
        let dirty = server
            .keyspace
            .dirty()
            .saturating_sub(state.dirty_at_last_save);
        (since_secs, dirty)
    };
    let (since_secs, dirty) = changes;
    server
        .config()
        .save
        .iter()
        .any(|point| dirty >= point.changes && since_secs > point.seconds)
}
