//! Loading `dir/dbfilename` at startup, while clients are already served (`-LOADING` for
//! commands without the `loading` flag, as Redis does), and the progress INFO shows meanwhile.

use std::fs::File;
use std::io::BufReader;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use forkless_snapshot::format;
use forkless_storage::Value;

use crate::server::{Server, unix_ms};

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

/// The `key-load-delay` debugging option (Redis's `debugDelay`), applied after each key a load
/// reads, so that tests can watch a server while it is loading: a positive value sleeps that
/// many microseconds per key, a negative value `-n` one microsecond every `n` keys (Redis
/// sleeps with probability 1/n), 0 (the default) never. Loads run on their own threads (the
/// startup loader, a replica's loader), never on the runtime's workers.
struct KeyLoadDelay {
    micros: i64,
    n_keys: u64,
}

impl KeyLoadDelay {
    fn new(micros: i64) -> KeyLoadDelay {
        KeyLoadDelay { micros, n_keys: 0 }
    }

    fn after_key(&mut self) {
        if self.micros == 0 {
            return;
        }
        self.n_keys += 1;
        let sleep = match u64::try_from(self.micros) {
            Ok(micros) => micros,
            Err(_) if self.n_keys % self.micros.unsigned_abs() == 0 => 1,
            Err(_) => 0,
        };
        if sleep > 0 {
            std::thread::sleep(std::time::Duration::from_micros(sleep));
        }
    }
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
    // Keys already expired are not loaded; their names are kept, for the DELs a restarted
    // primary puts in its backlog (below).
    let mut expired = Vec::new();
    let on_function = |code: Vec<u8>| {
        server
            .scripting
            .load_library(server, &bytes::Bytes::from(code))
            .map_err(|message| {
                format::LoadError::rejected(format!("a function library: {message}"))
            })
    };
    let summary = load_rdb_into_collecting(
        server,
        &server.keyspace,
        BufReader::with_capacity(1 << 20, reader),
        &name,
        unix_ms(),
        &AtomicBool::new(false),
        on_function,
        Some(&mut expired),
    )?;
    let elapsed = started.elapsed();
    // Redis's loadDataFromDisk: the file's replication ID and offset, when it has them, let
    // a restarted replica or primary resume replication with a partial resync.
    if let Some(fields) = format::ReplAux::from_aux(&summary.aux) {
        let as_replica = crate::replication::replica::configured_master(server).is_some();
        server
            .replication
            .restore_from_dump(server, &fields, as_replica);
        if !as_replica {
            // Redis's RDBFLAGS_FEED_REPL: the replicas that continue drop those keys too.
            server.replication.feed_expired_dels(&expired);
        }
    }
    drop(expired);
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

/// Loads an RDB stream into the server's keyspace, skipping keys that expired before `now_ms`;
/// it stops with an error once `cancel` is set (a replica's load, when REPLICAOF moves on
/// while it runs).
pub(crate) fn load_rdb_cancellable(
    server: &Server,
    reader: impl std::io::Read,
    name: &str,
    now_ms: u64,
    cancel: &AtomicBool,
) -> anyhow::Result<format::LoadSummary> {
    let on_function = |code: Vec<u8>| {
        server
            .scripting
            .load_library(server, &bytes::Bytes::from(code))
            .map_err(|message| {
                format::LoadError::rejected(format!("a function library: {message}"))
            })
    };
    load_rdb_into(
        server,
        &server.keyspace,
        reader,
        name,
        now_ms,
        cancel,
        on_function,
    )
}

/// [`load_rdb_cancellable`] into `keyspace` (the server's, or a sibling a replica loads while
/// the server's serves), with the function libraries handed to `on_function`.
pub(crate) fn load_rdb_into(
    server: &Server,
    keyspace: &forkless_storage::Keyspace,
    reader: impl std::io::Read,
    name: &str,
    now_ms: u64,
    cancel: &AtomicBool,
    on_function: impl FnMut(Vec<u8>) -> Result<(), format::LoadError>,
) -> anyhow::Result<format::LoadSummary> {
    load_rdb_into_collecting(
        server,
        keyspace,
        reader,
        name,
        now_ms,
        cancel,
        on_function,
        None,
    )
}

/// [`load_rdb_into`] that, with `expired`, collects the database and name of each key that
/// expired before `now_ms` (skipped, and counted in `keys_expired_skipped`, as always).
#[expect(
    clippy::too_many_arguments,
    reason = "the load's inputs, each a different concern"
)]
fn load_rdb_into_collecting(
    server: &Server,
    keyspace: &forkless_storage::Keyspace,
    reader: impl std::io::Read,
    name: &str,
    now_ms: u64,
    cancel: &AtomicBool,
    on_function: impl FnMut(Vec<u8>) -> Result<(), format::LoadError>,
    expired: Option<&mut Vec<(u32, bytes::Bytes)>>,
) -> anyhow::Result<format::LoadSummary> {
    load_rdb_typed(
        server,
        keyspace,
        reader,
        name,
        now_ms,
        cancel,
        on_function,
        expired,
    )
    .map_err(|err| anyhow::anyhow!("Fatal error loading the DB: {err}"))
}

/// Loads the RDB at the start of an AOF base (Redis's RDB preamble) into the server's keyspace:
/// unlike [`load_rdb_cancellable`], bytes after the RDB's checksum are allowed. Returns where the RDB
/// ends, for the caller to replay the commands that follow.
pub(crate) fn load_rdb_preamble(
    server: &Server,
    reader: impl std::io::Read,
    name: &str,
) -> anyhow::Result<u64> {
    let on_function = |code: Vec<u8>| {
        server
            .scripting
            .load_library(server, &bytes::Bytes::from(code))
            .map_err(|message| {
                format::LoadError::rejected(format!("a function library: {message}"))
            })
    };
    let cancel = AtomicBool::new(false);
    match load_rdb_typed(
        server,
        &server.keyspace,
        reader,
        name,
        0,
        &cancel,
        on_function,
        None,
    ) {
        Ok(summary) => Ok(summary.bytes_read),
        // Raised once the whole RDB, checksum included, has been read and loaded.
        Err(format::LoadError::TrailingData { offset, .. }) => Ok(offset),
        Err(err) => Err(anyhow::anyhow!("Fatal error loading the DB: {err}")),
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "the load's inputs, each a different concern"
)]
fn load_rdb_typed(
    server: &Server,
    keyspace: &forkless_storage::Keyspace,
    reader: impl std::io::Read,
    name: &str,
    now_ms: u64,
    cancel: &AtomicBool,
    on_function: impl FnMut(Vec<u8>) -> Result<(), format::LoadError>,
    mut expired: Option<&mut Vec<(u32, bytes::Bytes)>>,
) -> Result<format::LoadSummary, format::LoadError> {
    let loading = &server.persistence.loading;
    // When collecting, the loader delivers expired keys too and they are skipped here.
    let (loader_now_ms, skip_before_ms) = if expired.is_some() {
        (0, now_ms)
    } else {
        (now_ms, 0)
    };
    let mut n_collected = 0u64;
    let n_dbs = keyspace.dbs().len();
    let mut delay = KeyLoadDelay::new(server.config().stored_int("key-load-delay", 0));
    let mut summary = format::load_with_functions(
        reader,
        name,
        loader_now_ms,
        |entry| {
            delay.after_key();
            if let Some(expired) = expired.as_deref_mut()
                && entry.expire_at_ms.is_some_and(|at| at < skip_before_ms)
            {
                expired.push((entry.db, entry.key));
                n_collected += 1;
                return Ok(());
            }
            if server.shutting_down.load(Ordering::Relaxed) {
                return Err(format::LoadError::rejected(
                    "the server is shutting down".to_string(),
                ));
            }
            if cancel.load(Ordering::Relaxed) {
                return Err(format::LoadError::rejected(
                    "the load was cancelled".to_string(),
                ));
            }
            let db = usize::try_from(entry.db).ok().and_then(|idx| keyspace.db(idx)).ok_or_else(|| {
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
        },
        on_function,
    )?;
    summary.keys_loaded -= n_collected;
    summary.keys_expired_skipped += n_collected;
    Ok(summary)
}
