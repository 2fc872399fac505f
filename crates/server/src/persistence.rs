//! Persistence: SAVE, BGSAVE, save points, LASTSAVE, MISCONF, loading at startup, and the
//! figures INFO persistence reports.
//!
//! A save always starts with the cut on the thread that asked for it (the command's thread or
//! the save-point timer), so the snapshot is the dataset at the moment the command ran. BGSAVE
//! then hands the cut to a `forkless-bgsave` thread; SAVE runs the same save on its own
//! thread and waits, as Redis's SAVE does. In fork mode (`snapshot-mode fork`, or
//! `BGSAVE FORK`) background saves fork a child instead: see `fork_mode.rs`. SAVE and the
//! final save are epoch saves in both modes.

use std::fs::File;
use std::io::BufReader;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use forkless_snapshot::backend::{Target, WriterKind, WriterUsed};
use forkless_snapshot::format;
use forkless_snapshot::save::{
    self, ClientActivity, Compression, Progress, SaveError, SaveOptions, SaveReport,
    TraversalPriority,
};
use forkless_storage::{SnapshotCut, Value};

use crate::config::{Config, SnapshotCompression, SnapshotMode, SnapshotWriter};
use crate::server::{Server, lock, unix_ms};

/// Redis waits this long after a failed background save before a save point may retry.
const BGSAVE_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Redis's reply when a save is requested while one runs.
pub(crate) const ALREADY_IN_PROGRESS: &str = "ERR Background save already in progress";

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

/// A save that is running.
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

/// What INFO persistence shows. A std mutex: taken briefly by commands, the save-point timer
/// and the save thread at its start and end, never across an await or during a save.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) running: Option<Running>,
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
    /// How long the last cut took (`begin_snapshot`, or freezing plus `fork()` in fork mode):
    /// the pause a save adds to the server.
    pub(crate) last_cut_usec: u64,
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

/// Progress of the load at startup, for INFO while it runs (clients are served meanwhile, and
/// get LOADING for every command without the `loading` flag, as in Redis).
#[derive(Debug, Default)]
pub(crate) struct Loading {
    /// True from before the listeners accept until the dump is loaded.
    pub(crate) active: AtomicBool,
    pub(crate) start_unix_secs: AtomicU64,
    /// Size of the file on disk, and how much of it the loader has read.
    pub(crate) total_bytes: AtomicU64,
    pub(crate) loaded_bytes: AtomicU64,
    pub(crate) keys_loaded: AtomicU64,
}

/// Counts the bytes read through it into `Loading::loaded_bytes`.
struct CountingReader<'a, R> {
    inner: R,
    loaded: &'a AtomicU64,
}

impl<R: std::io::Read> std::io::Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.loaded.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
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
                running: None,
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
                last_cut_usec: 0,
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
    }
}

/// Takes the cut and registers the save as running. Err is the reply for the client.
fn begin(server: &Server) -> Result<(SnapshotCut, SaveOptions, Arc<Progress>), &'static str> {
    let mut state = server.persistence.state();
    if state.running.is_some() {
        return Err(ALREADY_IN_PROGRESS);
    }
    let dirty_at_cut = server.keyspace.dirty();
    let cut_started = Instant::now();
    let cut = server
        .keyspace
        .begin_snapshot(unix_ms())
        .ok_or(ALREADY_IN_PROGRESS)?;
    state.last_cut_usec = u64::try_from(cut_started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let options = save_options(server, &server.config());
    let progress = Arc::new(Progress::default());
    state.running = Some(Running {
        started: Instant::now(),
        progress: Arc::clone(&progress),
        dirty_at_cut,
        kind: SaveKind::Epoch,
        fork_pid: None,
    });
    state.last_try_unix_ms = unix_ms();
    Ok((cut, options, progress))
}

/// Records the outcome of a save and logs it.
fn finish(server: &Server, result: &Result<SaveReport, SaveError>, background: bool) {
    let mut state = server.persistence.state();
    let Some(running) = state.running.take() else {
        return;
    };
    server.persistence.finished.notify_all();
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
    let (cut, options, progress) = begin(server).map_err(str::to_string)?;
    let Some(owner) = server.arc() else {
        server.keyspace.end_snapshot(cut);
        server.persistence.state().running = None;
        return Err("ERR server is shutting down".into());
    };
    let (cut_tx, cut_rx) = std::sync::mpsc::channel::<SnapshotCut>();
    let spawned = std::thread::Builder::new()
        .name("forkless-bgsave".into())
        .spawn(move || {
            let Ok(cut) = cut_rx.recv() else { return };
            // The writer runs on this thread at the clients' priority (so does the sweeper it
            // starts): only the traversal threads take `snapshot-nice`.
            let result = save::save(&owner.keyspace, cut, &options, &progress);
            finish(&owner, &result, true);
        });
    match spawned {
        Ok(_) => {
            tracing::info!("Background saving started");
            // The thread is alive and waiting for the cut: the send cannot fail.
            let _ = cut_tx.send(cut);
            Ok(())
        }
        Err(err) => {
            server.keyspace.end_snapshot(cut);
            let result = Err(SaveError::Spawn(err));
            finish(server, &result, true);
            Err("ERR Can't save in background: could not start the save thread".into())
        }
    }
}

/// SAVE (and the save before shutdown): cut now, save, wait. Err is the reply for the client.
pub(crate) fn save_blocking(server: &Server) -> Result<(), String> {
    let (cut, mut options, progress) = begin(server).map_err(str::to_string)?;
    // Someone waits for this save (a client, or the exit), so its traversal does not yield.
    options.priority = TraversalPriority::Nice(0);
    let result = save::save(&server.keyspace, cut, &options, &progress);
    finish(server, &result, false);
    result.map(drop).map_err(|_| "ERR".to_string())
}

/// The save before exiting (SHUTDOWN SAVE, or a signal with save points configured): a running
/// background save is cancelled and awaited, then a foreground save runs, as Redis kills its
/// child and saves in the foreground.
pub(crate) fn final_save(server: &Server) -> Result<(), String> {
    crate::aof::rewrite::cancel_and_wait(server);
    let mut state = server.persistence.state();
    while let Some(running) = &state.running {
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
    save_blocking(server)
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
        if state.running.is_some() {
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

/// Loads `dir/dbfilename` into the keyspace, if it exists. Any problem with the file stops
/// startup with an error naming the file, the offset and what was wrong.
/// Marks the server as loading when there is a dump to load, with the figures INFO shows from
/// the first client on. Called before the listeners accept, so no client sees a half-loaded
/// dataset without `loading:1`.
pub(crate) fn prepare_loading(server: &Server) {
    let config = server.config();
    let total = if config.appendonly {
        // The AOF loader always runs (it creates the AOF when there is none): its files' sizes.
        let dir = crate::aof::Names::of(&config).dir;
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .filter_map(|entry| entry.ok()?.metadata().ok())
                .map(|metadata| metadata.len())
                .sum()
        })
    } else {
        let Ok(metadata) = std::fs::metadata(config.rdb_path()) else {
            return;
        };
        metadata.len()
    };
    drop(config);
    let loading = &server.persistence.loading;
    loading.total_bytes.store(total, Ordering::Relaxed);
    loading
        .start_unix_secs
        .store(unix_ms() / 1000, Ordering::Relaxed);
    loading.active.store(true, Ordering::Release);
}

/// Loads `dir/dbfilename` (after [`prepare_loading`]), then clears the loading flag.
pub(crate) fn load_at_startup(server: &Server) -> anyhow::Result<()> {
    for stale in forkless_snapshot::backend::remove_stale_temp_files(&server.config().dir) {
        tracing::info!(
            "Removed the temp file of an interrupted save: {}",
            stale.display()
        );
    }
    let path = server.config().rdb_path();
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            server
                .persistence
                .loading
                .active
                .store(false, Ordering::Release);
            return Ok(());
        }
        Err(err) => {
            return Err(anyhow::anyhow!(
                "Fatal error loading the DB: {}: {err}",
                path.display()
            ));
        }
    };
    let loading = &server.persistence.loading;
    let started = Instant::now();
    let name = path.display().to_string();
    let reader = CountingReader {
        inner: file,
        loaded: &loading.loaded_bytes,
    };
    let summary = load_rdb_at(
        server,
        BufReader::with_capacity(1 << 20, reader),
        &name,
        unix_ms(),
    )?;
    let elapsed = started.elapsed();
    let mut state = server.persistence.state();
    state.last_load_keys_loaded = summary.keys_loaded;
    state.last_load_keys_expired = summary.keys_expired_skipped;
    state.loading_time_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    // Loading is not a change: a restart must not trigger a save point by itself.
    state.dirty_at_last_save = server.keyspace.dirty();
    drop(state);
    loading.active.store(false, Ordering::Release);
    tracing::info!(
        keys = summary.keys_loaded,
        expired_skipped = summary.keys_expired_skipped,
        "DB loaded from disk: {:.3} seconds",
        elapsed.as_secs_f64()
    );
    Ok(())
}

/// Loads an RDB stream into the keyspace (the dump, or an AOF's base). Keys that expired
/// before `now_ms` are skipped; the AOF's base passes 0, as Redis loads a preamble's keys
/// whatever their expiry (the incr files carry their DELs).
pub(crate) fn load_rdb_at(
    server: &Server,
    reader: impl std::io::Read,
    name: &str,
    now_ms: u64,
) -> anyhow::Result<format::LoadSummary> {
    let loading = &server.persistence.loading;
    let n_dbs = server.keyspace.dbs().len();
    format::load(reader, name, now_ms, |entry| {
        if server.shutting_down.load(Ordering::Relaxed) {
            return Err(format::LoadError::rejected("the server is shutting down".to_string()));
        }
        let db = usize::try_from(entry.db).ok().and_then(|idx| server.keyspace.db(idx)).ok_or_else(|| {
            format::LoadError::rejected(format!(
                "the file has keys in database {} but this server is configured with {n_dbs} databases",
                entry.db
            ))
        })?;
        let value: Value = entry.value;
        let mut guard = db.write(&[&entry.key], 0);
        // Two entries for one key: Redis 7.0 refuses the file (rdbLoadRioWithLoadingCtx).
        if guard.contains(&entry.key) {
            return Err(format::LoadError::rejected(format!(
                "RDB has duplicated key '{}' in DB {}: Duplicated key found in RDB file",
                String::from_utf8_lossy(&entry.key),
                entry.db
            )));
        }
        guard.set(&entry.key, value, entry.expire_at_ms);
        loading.keys_loaded.fetch_add(1, Ordering::Relaxed);
        Ok(())
    })
    // The error names the file and carries the OS error in its own text: as a plain message,
    // so neither is printed twice (its source would be, by `{:#}`).
    .map_err(|err| anyhow::anyhow!("Fatal error loading the DB: {err}"))
}

/// The `# Persistence` section of INFO: Redis 7.0's fields in Redis's order, then forkless's
/// snapshot fields.
pub(crate) fn info_section(server: &Server, text: &mut String) {
    use std::fmt::Write as _;
    let mut field = |name: &str, value: &dyn std::fmt::Display| {
        let _ = write!(text, "{name}:{value}\r\n");
    };
    let config = server.config();
    let state = server.persistence.state();
    let retained = server.keyspace.retained();
    let running = state.running.as_ref();
    let progress = running.map(|r| &r.progress);
    let load = |counter: Option<&AtomicU64>| counter.map_or(0, |c| c.load(Ordering::Relaxed));
    let keys_processed = load(progress.map(|p| &p.keys_processed));
    let keys_total = load(progress.map(|p| &p.keys_total));
    let shards_done = progress.map_or(0, |p| p.shards_done.load(Ordering::Relaxed));
    let shards_total = progress.map_or(0, |p| p.shards_total.load(Ordering::Relaxed));
    let bytes_written = progress.map_or(state.last_bytes_written, |p| {
        p.bytes_written.load(Ordering::Relaxed)
    });
    let current_secs = running.map_or(-1, |r| {
        i64::try_from(r.started.elapsed().as_secs()).unwrap_or(i64::MAX)
    });
    let fork_running = running.is_some_and(|r| r.kind == SaveKind::Fork);
    let fork_perc = if fork_running && keys_total > 0 {
        keys_processed as f64 * 100.0 / keys_total as f64
    } else {
        0.0
    };
    let cow_age = match (fork_running, state.current_cow_updated) {
        (true, Some(at)) => at.elapsed().as_secs(),
        _ => 0,
    };
    let loading = &server.persistence.loading;
    let is_loading = server.persistence.loading();
    field("loading", &u8::from(is_loading));
    field("async_loading", &0);
    field("current_cow_peak", &state.current_cow_peak);
    field("current_cow_size", &state.current_cow_bytes);
    field("current_cow_size_age", &cow_age);
    field("current_fork_perc", &format_args!("{fork_perc:.2}"));
    field("current_save_keys_processed", &keys_processed);
    field("current_save_keys_total", &keys_total);
    field(
        "rdb_changes_since_last_save",
        &server
            .keyspace
            .dirty()
            .saturating_sub(state.dirty_at_last_save),
    );
    field("rdb_bgsave_in_progress", &u8::from(running.is_some()));
    field("rdb_last_save_time", &state.last_save_unix_secs);
    field(
        "rdb_last_bgsave_status",
        &if state.last_bgsave_ok { "ok" } else { "err" },
    );
    field("rdb_last_bgsave_time_sec", &state.last_bgsave_time_sec);
    field("rdb_current_bgsave_time_sec", &current_secs);
    field("rdb_saves", &state.saves);
    field("rdb_last_cow_size", &state.last_cow_bytes);
    field("rdb_last_load_keys_expired", &state.last_load_keys_expired);
    field(
        "rdb_last_load_keys_loaded",
        &if is_loading {
            loading.keys_loaded.load(Ordering::Relaxed)
        } else {
            state.last_load_keys_loaded
        },
    );
    crate::aof::info_fields(server, &mut field);
    if is_loading {
        let start = loading.start_unix_secs.load(Ordering::Relaxed);
        let total = loading.total_bytes.load(Ordering::Relaxed);
        let loaded = loading.loaded_bytes.load(Ordering::Relaxed).min(total);
        let elapsed = (unix_ms() / 1000).saturating_sub(start);
        // Redis's estimate: the time so far, scaled to the bytes left; 1 until a second passed.
        let eta = if elapsed == 0 || loaded == 0 {
            1
        } else {
            (total - loaded) * elapsed / loaded
        };
        field("loading_start_time", &start);
        field("loading_total_bytes", &total);
        // The file's `used-mem` aux field is only known to the loader; 0 until then.
        field("loading_rdb_used_mem", &0);
        field("loading_loaded_bytes", &loaded);
        field(
            "loading_loaded_perc",
            &format!(
                "{:.2}",
                if total == 0 {
                    0.0
                } else {
                    loaded as f64 * 100.0 / total as f64
                }
            ),
        );
        field("loading_eta_seconds", &eta);
    }
    field("snapshot_mode", &config.snapshot_mode.as_str());
    field(
        "rdb_last_bgsave_type",
        &state.last_bgsave_type.map_or("none", SaveKind::as_str),
    );
    field(
        "rdb_current_bgsave_type",
        &running.map_or("none", |r| r.kind.as_str()),
    );
    field(
        "snapshot_fork_child_pid",
        &running.and_then(|r| r.fork_pid).unwrap_or(-1),
    );
    field(
        "snapshot_writer",
        &state.writer.unwrap_or(config.snapshot_writer.as_str()),
    );
    if let Some(reason) = &state.writer_fallback_reason {
        field(
            "snapshot_writer_fallback_reason",
            &reason.replace(['\r', '\n'], " "),
        );
    }
    let percent = if fork_running {
        fork_perc
    } else if shards_total == 0 {
        0.0
    } else {
        shards_done as f64 * 100.0 / shards_total as f64
    };
    field("snapshot_progress", &format_args!("{percent:.2}"));
    field("snapshot_last_cut_usec", &state.last_cut_usec);
    field("snapshot_bytes_written", &bytes_written);
    field("snapshot_last_keys_saved", &state.last_keys_saved);
    field(
        "snapshot_last_keys_saved_early",
        &state.last_keys_saved_early,
    );
    field("snapshot_retained_versions", &retained.versions);
    field("snapshot_retained_bytes", &retained.bytes);
    field("snapshot_peak_retained_bytes", &retained.peak_bytes);
    if let Some(err) = &state.last_error {
        field("snapshot_last_error", &err.replace(['\r', '\n'], " "));
    }
}
