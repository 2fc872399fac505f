//! The forkless server: configuration, networking, command dispatch and INFO.
//!
//! # Layout
//! - `config`: redis.conf-syntax options, command-line flags, CONFIG GET/SET/REWRITE.
//! - `server`: state shared by all connections (keyspace, live config, stats, client registry).
//! - `conn`: one connection's read → decode → execute → write loop.
//! - `cmd`: the command table and one module per command group.
//! - `info`: the INFO sections; `errorstats`: error replies counted by code.
//! - `persistence`: SAVE/BGSAVE, save points, loading at startup.
//! - `pubsub`: the subscription registry and message delivery.
//! - `blocking`: clients blocked in BLPOP and friends, woken in arrival order.
//! - `limits`: every limit on clients (admission, protected mode, buffers, descriptors).
//! - `hangup`: clients whose peer has closed, seen before their connections read the close.
//! - `listen`: the TCP and Unix listeners, rebound by CONFIG SET `port`/`bind`.
//! - `replication`: replication IDs and offset; forkless as a replica (`replication::replica`).
//!
//! This is the only crate that reads configuration or the environment, installs signal
//! handlers, or uses `anyhow`.

// The exceptions are `allocator` (the counting `GlobalAlloc`, `mallinfo2` and `mallopt`),
// `limits::release_free_memory` (glibc's `malloc_trim`), `limits::unread_bytes` (the
// `FIONREAD` ioctl), `daemon`'s startup fork and descriptor redirection for
// `daemonize yes`, and `scripting::engine`'s uses of Lua's C API on the scripts' hot path
// (`Engine::run_eval`: KEYS, ARGV and the protected call, in one `Lua::exec_raw`; `redis.call`
// and `redis.pcall` as C functions).
#![deny(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;

mod acl;
mod allocator;
mod aof;
mod blocking;
mod cmd;
pub mod config;
mod conn;
mod daemon;
mod effects;
mod errorstats;
mod evict;
mod evict_pool;
mod fork_mode;
mod hangup;
mod info;
mod limits;
mod listen;
mod notify;
mod persistence;
mod pubsub;
mod replication;
mod scripting;
mod server;

use config::{Config, Invocation};
use server::Server;

/// Runs the server as the `forkless-server` binary does: parses `std::env::args`, serves until
/// SIGTERM/SIGINT/SHUTDOWN, and returns the process exit code.
pub fn cli_main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match Config::from_args(&args) {
        Ok(Invocation::Run(config)) => config,
        Ok(Invocation::Version) => {
            println!("forkless-server v={} bits=64", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Help) => {
            println!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    // Before any thread of the server's exists, so none has an arena of its own yet.
    let arenas_limited = allocator::limit_arenas(config.malloc_arena_max);
    let background = daemon::wants_background(&config);
    if background {
        if let Err(err) = daemon::detach() {
            eprintln!("forkless-server: can't daemonize: {err}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(err) = init_logging(&config) {
        eprintln!("Can't open the log file: {err:#}");
        return ExitCode::FAILURE;
    }
    if !arenas_limited {
        tracing::warn!(
            "malloc-arena-max {}: refused by the C library, its default stays",
            config.malloc_arena_max
        );
    }
    for (name, value) in config.inert_settings() {
        tracing::warn!("{name} {value}: accepted, not in effect (forkless has no such feature)");
    }
    let pid_file = daemon::pid_file(&config, background);
    if let Some(path) = &pid_file {
        daemon::write_pid_file(path);
    }
    let result = run(config);
    if let Some(path) = &pid_file {
        daemon::remove_pid_file(path);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("forkless-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> String {
    "Usage: forkless-server [/path/to/forkless.conf] [options]\n       \
     forkless-server -v or --version\n       forkless-server -h or --help\n\n\
     Examples:\n       forkless-server (run the server with default config)\n       \
     forkless-server /etc/forkless/6379.conf\n       forkless-server --port 7777\n       \
     forkless-server /etc/myforkless.conf --loglevel verbose"
        .to_string()
}

/// Changes the live log level (CONFIG SET loglevel); set up by [`init_logging`].
static LOG_LEVEL: std::sync::OnceLock<
    tracing_subscriber::reload::Handle<
        tracing_subscriber::filter::LevelFilter,
        tracing_subscriber::Registry,
    >,
> = std::sync::OnceLock::new();

/// Applies `level` to the logger from now on.
pub(crate) fn set_log_level(level: config::LogLevel) {
    if let Some(handle) = LOG_LEVEL.get() {
        let filter = tracing_subscriber::filter::LevelFilter::from_level(level.tracing_level());
        if let Err(err) = handle.reload(filter) {
            tracing::warn!("could not change the log level: {err}");
        }
    }
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::prelude::*;
    let level =
        tracing_subscriber::filter::LevelFilter::from_level(config.loglevel.tracing_level());
    let (filter, handle) = tracing_subscriber::reload::Layer::new(level);
    let (writer, ansi) = if config.logfile.is_empty() {
        (
            BoxMakeWriter::new(std::io::stdout),
            std::io::IsTerminal::is_terminal(&std::io::stdout()),
        )
    } else {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.logfile)
            .with_context(|| format!("opening logfile {}", config.logfile))?;
        (BoxMakeWriter::new(std::sync::Mutex::new(file)), false)
    };
    let format = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer);
    tracing_subscriber::registry()
        .with(filter)
        .with(format)
        .try_init()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let _ = LOG_LEVEL.set(handle);
    Ok(())
}

fn run(config: Config) -> anyhow::Result<()> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name("forkless-worker");
    if config.worker_threads > 0 {
        builder.worker_threads(config.worker_threads);
    }
    let runtime = builder.build().context("starting the tokio runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(mut config: Config) -> anyhow::Result<()> {
    limits::adjust_open_files_limit(&mut config).map_err(anyhow::Error::msg)?;
    let server = Server::new(config);
    evict::record_startup();
    acl::load_at_startup(&server)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        pid = std::process::id(),
        "forkless-server starting"
    );
    // Redis warns whenever overcommit is off; forkless only forks in fork mode, so only warns
    // then (a later CONFIG SET snapshot-mode fork does not repeat it).
    if server.config().snapshot_mode == config::SnapshotMode::Fork
        && fork_mode::overcommit_disabled()
    {
        tracing::warn!("{}", fork_mode::OVERCOMMIT_WARNING);
    }
    // Installed before the first client can connect, so a SIGTERM at any time after the
    // "Ready" line is a clean shutdown, never the default action.
    let mut signals = Signals::install().context("installing the SIGTERM/SIGINT handlers")?;
    let bound = {
        let config = server.config();
        listen::bind_at_startup(&config).map_err(anyhow::Error::msg)?
    };
    let local = bound.local_addr();
    *server::lock(&server.local_addr) = local;
    // Clients are served while the dump loads, as in Redis: INFO shows the progress and commands
    // without the `loading` flag get LOADING (`persistence.loading` is set before any accept).
    persistence::prepare_loading(&server);
    listen::start(&server, bound);
    // Its own thread, not tokio's blocking pool: the pool's threads carry the workers' name.
    let (loaded_tx, loader) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("forkless-loader".into())
        .spawn({
            let server = Arc::clone(&server);
            move || {
                let appendonly = server.config().appendonly;
                let loaded = if appendonly {
                    aof::load::load_at_startup(&server)
                } else {
                    persistence::load_at_startup(&server)
                };
                let _ = loaded_tx.send(loaded);
            }
        })
        .context("starting the loader thread")?;
    tokio::select! {
        loaded = loader => {
            let loaded = loaded.context("the loader thread failed");
            if let Err(err) = loaded.and_then(|loaded| loaded) {
                listen::close(&server);
                return Err(err);
            }
        }
        () = wait_for_shutdown(&server, &mut signals) => {
            // An incomplete dataset is never saved: stop the loader and leave.
            server.persistence.loading.active.store(false, Ordering::Release);
            tracing::info!("Shutdown requested while loading the DB: exiting without saving.");
            server.request_shutdown();
            listen::close(&server);
            return Ok(());
        }
    }
    persistence::probe_writer(&server);
    // `replicaof` in the configuration: the link starts once the local dataset is loaded.
    replication::replica::start_from_config(&server);
    if let Some(local) = local {
        tracing::info!("Ready to accept connections tcp on {local}");
    }
    let expiry = spawn_active_expiry(Arc::clone(&server));
    let save_points = persistence::spawn_save_point_timer(Arc::clone(&server))
        .context("starting the save-point timer")?;
    loop {
        wait_for_shutdown(&server, &mut signals).await;
        if shutdown_save(&server) {
            break;
        }
    }
    tracing::info!("Received shutdown request, exiting now. Bye bye...");
    server.request_shutdown();
    let _ = save_points.join();
    listen::close(&server);
    let _ = expiry.join();
    // A running rewrite is stopped (its fork-mode child killed) whether or not a final save
    // ran, as Redis's prepareForShutdown kills its AOF child; then what the AOF has buffered
    // reaches the disk before the exit.
    aof::rewrite::cancel_and_wait(&server);
    aof::stop(&server);
    Ok(())
}

/// The signals that stop the server.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

async fn wait_for_shutdown(server: &Server, signals: &mut Signals) {
    tokio::select! {
        _ = signals.term.recv() => tracing::warn!("Received SIGTERM scheduling shutdown..."),
        _ = signals.int.recv() => tracing::warn!("Received SIGINT scheduling shutdown..."),
        () = server.shutdown.notified() => {}
    }
}

/// The save Redis makes before exiting on SIGTERM/SIGINT when save points are configured
/// (SHUTDOWN makes its own decision and sets `skip_final_save`). Returns true if and only if the
/// server may exit; a failed save keeps it running, as in Redis.
fn shutdown_save(server: &Server) -> bool {
    if server.skip_final_save.load(Ordering::Acquire) || server.config().save.is_empty() {
        return true;
    }
    if server.persistence.loading() {
        // A replica's sync is loading: the dataset is half of one (Redis exits without saving).
        tracing::info!("Shutdown requested while loading the DB: exiting without saving.");
        return true;
    }
    tracing::info!("Saving the final RDB snapshot before exiting.");
    match tokio::task::block_in_place(|| {
        // Not inside a command here: hold the gate as a command does, so the cut is not taken
        // in the middle of a transaction.
        let _gate = server.keyspace.gate().shared();
        persistence::final_save(server)
    }) {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!("Error trying to save the DB, can't exit: {err}");
            server.shutting_down.store(false, Ordering::Release);
            false
        }
    }
}

/// The active expiry cycle runs on its own thread, never on a tokio worker: a cycle may hold
/// shard locks for its whole time budget, `hz` times a second, 25% of each period at most.
fn spawn_active_expiry(server: Arc<Server>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("forkless-expire".into())
        .spawn(move || {
            let mut query_buffer_cursor = 0;
            while !server
                .shutting_down
                .load(std::sync::atomic::Ordering::Acquire)
            {
                let hz = server.config().hz.clamp(1, 500);
                let period = Duration::from_millis(1000 / hz);
                let started = Instant::now();
                // While CLIENT PAUSE holds writes back nothing expires for real (as in Redis):
                // keys past their TTL read as absent until the pause ends. A replica expires
                // nothing itself: it waits for the primary's DEL, and its readers see expired
                // keys as missing meanwhile (Redis's replicas do the same), except the keys a
                // writable replica's own clients gave a TTL (`replication/replica/local_expire.rs`).
                if server
                    .active_expire
                    .load(std::sync::atomic::Ordering::Relaxed)
                    && !server.pause.holds_writes()
                    && !server.replication.replica.is_replica()
                {
                    let tracking = server.tracking.active();
                    let mut expired = Vec::new();
                    effects::active_expire_cycle(
                        &server,
                        server::unix_ms(),
                        started + period / 4,
                        tracking.then_some(&mut expired),
                    );
                    if !expired.is_empty() {
                        cmd::tracking::expired(&server, &expired);
                    }
                    let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    server
                        .latency
                        .add_sample_if_needed(&server.tunables, "expire-cycle", took_ms);
                } else if server
                    .active_expire
                    .load(std::sync::atomic::Ordering::Relaxed)
                    && !server.pause.holds_writes()
                    && server.replication.replica.local_expires.len() > 0
                {
                    // A writable replica's own keys with a TTL (Redis's expireSlaveKeys).
                    replication::replica::local_expire::expire_cycle(
                        &server,
                        server::unix_ms(),
                        started + period / 4,
                    );
                }
                // The server's cron: freed connection memory goes back to the system here, and,
                // while an epoch snapshot runs, what its saved versions and the overwrites
                // around it free (docs/snapshot.md, "Memory goes back").
                let cron_paused = server
                    .cron_paused
                    .load(std::sync::atomic::Ordering::Relaxed);
                if !cron_paused {
                    evict::evict_clients(&server);
                }
                if server.keyspace.snapshot_in_progress() {
                    limits::request_memory_release();
                }
                // Query buffers: a share of the clients each tick (`clientsCron`).
                if !cron_paused {
                    query_buffer_cursor =
                        cmd::client::cron_resize_query_buffers(&server, query_buffer_cursor, hz);
                }
                limits::release_free_memory();
                std::thread::sleep(period.saturating_sub(started.elapsed()));
            }
        })
        .unwrap_or_else(|err| {
            tracing::error!("could not start the active expiry thread: {err}");
            std::thread::spawn(|| {})
        })
}
