//! The server's configuration: redis.conf syntax, `--name value` flags, CONFIG GET, CONFIG SET
//! and CONFIG REWRITE, all following Redis 7.0 (`src/config.c`, `src/server.c` `main()`).
//!
//! # Layout
//! - [`Config`]: typed fields the server reads directly (`config.port`, `config.save`, ...).
//! - `OPTIONS` (`table.rs`): the one table of option descriptors (name, flags, kind with its
//!   parser and renderer; the parsers in `parse.rs`, options with their own syntax in
//!   `special.rs`). File loading, command-line flags, CONFIG GET/SET/REWRITE all go through it; an
//!   option is added by adding a field and one table row.
//! - Loading (`load.rs`): the command line is turned into the lines of a virtual config file appended to
//!   the real one, exactly as `redis-server` does, so line numbers and the `>>> '...'` echo in
//!   fatal errors match Redis.
//! - CONFIG REWRITE (`rewrite.rs`): the file rewritten in place and replaced atomically.
//! - Lexing (`lexer.rs`): `split_args` and `repr` are ports of `sdssplitargs` and `sdscatrepr`.
//! - Stored options (`stored.rs`): every other option of Redis 7.0's table, kept as its CONFIG
//!   GET rendering in [`Config::stored`] after Redis's checks (`Check`), plus
//!   `notify-keyspace-events` and the multi-argument options with their own syntax. Old names
//!   (`hash-max-ziplist-entries`, `slaveof`, ...) are `ALIASES` of the current ones.
//!
//! # Redis 7.0 behaviour that surprises
//! - `dir` and `dbfilename` are protected: CONFIG SET refuses them unless
//!   `enable-protected-configs` is `yes` (or `local`, for local clients). The default is `no`.
//! - `rdbchecksum`, `databases`, `logfile`, `daemonize` and `io-threads` are immutable.
//! - `hz` accepts any non-negative int and clamps it to 1..=500.
//! - CONFIG SET splits `save`, `bind` and `client-output-buffer-limit` values on single
//!   spaces, so `" 900 1"` is invalid there while a config file accepts it.
//!
//! # Differences from Redis 7.0
//! - Default `bind` is `127.0.0.1` (Redis: `* -::*`).
//! - `port 0` picks a free port (Redis: no TCP listener at all). CONFIG SET `port` and `bind`
//!   rebind the listeners as Redis does (`listen.rs`), new ones bound before old ones close.
//! - Options forkless does not act on (flag `INERT`) are stored and shown, and logged once at
//!   startup as "accepted, not in effect" when set to other than the default.
//! - Options whose absence would lose data or weaken security are refused (`check_supported`
//!   in `table.rs`): `appendonly yes`, `aclfile`, `tls-port`, `replicaof`,
//!   `cluster-enabled yes`, and the `user`, `rename-command`,
//!   `loadmodule` and `sentinel` directives (`load.rs`).
//! - forkless does not `chdir` into `dir`; it stores the canonical absolute path instead, and
//!   CONFIG GET dir shows it as Redis shows its working directory.
//! - Values that end up in file names or addresses (and `requirepass`) must be UTF-8.
//! - Only the options in `OPTIONS` (every option of Redis 7.0's table, and forkless's own)
//!   exist; other names are a startup error.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use forkless_storage::pattern::glob_match;

pub use self::stored::notify_class;
use self::table::{
    ALIASES, HIDDEN, IMMUTABLE, INERT, OPTIONS, PROTECTED, SAME_VALUE_OK, Spec, lookup,
};

/// The version shown in fatal configuration errors.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The most addresses `bind` takes (Redis's `CONFIG_BINDADDR_MAX`).
pub const MAX_BIND_ADDRESSES: usize = 16;

/// The help text for `-h`/`--help`.
pub const USAGE: &str = "\
Usage: forkless-server [/path/to/forkless.conf] [options] [-]
       forkless-server - (read config from stdin)
       forkless-server -v or --version
       forkless-server -h or --help

Examples:
       forkless-server (run the server with default conf)
       echo 'maxmemory 128mb' | forkless-server -
       forkless-server /etc/forkless/6379.conf
       forkless-server --port 7777
       forkless-server --port 7777 --save \"\" --snapshot-mode fork
       forkless-server /etc/myforkless.conf --loglevel verbose";

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "built once at startup, moved once"
)]
pub enum Invocation {
    /// Run the server with this configuration.
    Run(Config),
    /// Print the version and exit (`-v`, `--version`).
    Version,
    /// Print [`USAGE`] and exit (`-h`, `--help`).
    Help,
}

/// A configuration that cannot be loaded. Display gives the text Redis prints before exiting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A line of the config file, or of the virtual file made of the command-line options, was
    /// rejected.
    Directive {
        /// 1-based line number; command-line options count after the file's lines.
        line_number: usize,
        /// The offending line, trimmed, as Redis echoes it.
        line: String,
        /// Why, in Redis's words (e.g. `argument must be 'yes' or 'no'`).
        reason: String,
    },
    /// The config file (or an included file) could not be read.
    Open {
        /// The file, as an absolute path for the main config file.
        path: PathBuf,
        /// The OS error text (`strerror`), e.g. `No such file or directory`.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Directive {
                line_number,
                line,
                reason,
            } => write!(
                f,
                "\n*** FATAL CONFIG FILE ERROR (forkless {VERSION}) ***\n\
                 Reading the configuration file, at line {line_number}\n>>> '{line}'\n{reason}"
            ),
            ConfigError::Open { path, reason } => {
                write!(
                    f,
                    "Fatal error, can't open config file '{}': {reason}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Defines a configuration enum whose values have fixed config-file spellings.
macro_rules! config_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// The accepted spellings, in the order Redis lists them in its error message.
            pub const NAMES: &'static [&'static str] = &[$($text,)+];
            const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The config-file spelling of this value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            fn index(self) -> usize {
                self as usize
            }

            fn from_index(idx: usize) -> Option<$name> {
                $name::ALL.get(idx).copied()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

config_enum! {
    /// `loglevel`: the least severe message that is logged.
    LogLevel {
        /// Everything, for development.
        Debug = "debug",
        /// Many rarely useful messages.
        Verbose = "verbose",
        /// Moderately verbose, what production wants (the default).
        Notice = "notice",
        /// Only very important or critical messages.
        Warning = "warning",
    }
}

impl LogLevel {
    /// The most verbose `tracing` level this Redis log level lets through: Redis's debug,
    /// verbose, notice and warning map to TRACE, DEBUG, INFO and WARN.
    pub fn tracing_level(self) -> tracing::Level {
        match self {
            LogLevel::Debug => tracing::Level::TRACE,
            LogLevel::Verbose => tracing::Level::DEBUG,
            LogLevel::Notice => tracing::Level::INFO,
            LogLevel::Warning => tracing::Level::WARN,
        }
    }
}

config_enum! {
    /// `snapshot-mode`: how BGSAVE takes its point-in-time view.
    SnapshotMode {
        /// Versioned entries, no fork (the default).
        Epoch = "epoch",
        /// `fork()` and copy-on-write, as Redis does.
        Fork = "fork",
    }
}

config_enum! {
    /// `snapshot-writer`: how snapshot bytes reach the file.
    SnapshotWriter {
        /// io_uring when the kernel allows it, else a blocking writer thread.
        Auto = "auto",
        /// io_uring only, without the fallback.
        IoUring = "io_uring",
        /// A blocking writer thread.
        Blocking = "blocking",
    }
}

config_enum! {
    /// `snapshot-compression`: compression of the whole snapshot stream.
    SnapshotCompression {
        /// A plain RDB file (the default).
        None = "none",
        /// A zstd frame around the RDB stream; `zstd -d` yields a valid RDB file.
        Zstd = "zstd",
    }
}

config_enum! {
    /// `maxmemory-policy`: which keys eviction removes (`evict.rs`).
    MaxmemoryPolicy {
        /// Approximate LRU among keys with an expiry.
        VolatileLru = "volatile-lru",
        /// Approximate LFU among keys with an expiry.
        VolatileLfu = "volatile-lfu",
        /// Random keys with an expiry.
        VolatileRandom = "volatile-random",
        /// Keys with the nearest expiry.
        VolatileTtl = "volatile-ttl",
        /// Approximate LRU among all keys.
        AllkeysLru = "allkeys-lru",
        /// Approximate LFU among all keys.
        AllkeysLfu = "allkeys-lfu",
        /// Random keys.
        AllkeysRandom = "allkeys-random",
        /// Refuse writes that need memory (the default).
        Noeviction = "noeviction",
    }
}

config_enum! {
    /// `appendfsync`: when the append-only file is fsynced.
    AppendFsync {
        /// fsync once a second (the default).
        Everysec = "everysec",
        /// fsync after every write.
        Always = "always",
        /// Let the OS decide.
        No = "no",
    }
}

config_enum! {
    /// `enable-protected-configs`: who may CONFIG SET the protected options (`dir`, `dbfilename`).
    ProtectedConfigs {
        /// Nobody (the Redis 7.0 default).
        No = "no",
        /// Every client.
        Yes = "yes",
        /// Clients connected over loopback or a Unix socket.
        Local = "local",
    }
}

/// One `save <seconds> <changes>` point: snapshot when at least `changes` writes happened and
/// `seconds` passed since the last successful save.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SavePoint {
    /// Seconds since the last save, at least 1.
    pub seconds: u64,
    /// Writes since the last save.
    pub changes: u64,
}

/// One class's `client-output-buffer-limit`: disconnect a client when its pending output
/// exceeds the hard limit, or stays above the soft limit for the given seconds; 0 disables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputBufferLimit {
    /// Bytes above which the client is closed at once.
    pub hard_limit_bytes: u64,
    /// Bytes above which the client is closed after `soft_limit_seconds`.
    pub soft_limit_bytes: u64,
    /// How long the soft limit may be exceeded.
    pub soft_limit_seconds: u64,
}

/// `client-output-buffer-limit` for the three client classes Redis lets you configure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputBufferLimits {
    /// Ordinary clients (class `normal`).
    pub normal: OutputBufferLimit,
    /// Replicas (class `replica`, shown as `slave` as Redis 7.0 does).
    pub replica: OutputBufferLimit,
    /// Pub/Sub subscribers (class `pubsub`).
    pub pubsub: OutputBufferLimit,
}

impl Default for OutputBufferLimits {
    fn default() -> OutputBufferLimits {
        let limit = |hard, soft, secs| OutputBufferLimit {
            hard_limit_bytes: hard,
            soft_limit_bytes: soft,
            soft_limit_seconds: secs,
        };
        OutputBufferLimits {
            normal: limit(0, 0, 0),
            replica: limit(256 << 20, 64 << 20, 60),
            pubsub: limit(32 << 20, 8 << 20, 60),
        }
    }
}

/// The server configuration. Field names follow the Redis option names (`-` becomes `_`);
/// sizes are bytes, durations seconds. Build one with [`Config::from_args`] or
/// [`Config::default`], change it with [`Config::set`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Absolute path of the config file given on the command line, if any (CONFIG REWRITE
    /// target). Not a symlink-resolved path, like Redis's.
    pub config_file: Option<PathBuf>,
    /// `bind`: addresses to listen on; a leading `-` marks an address that may be unavailable.
    /// Default `127.0.0.1`. Immutable at runtime.
    pub bind: Vec<String>,
    /// `port`: TCP port, 0 to let the OS pick a free one. Default 6379. Immutable at runtime.
    pub port: u16,
    /// `protected-mode`: while yes and no password is set, only clients from 127.0.0.1 and ::1
    /// are served (see `limits.rs`). Default yes.
    pub protected_mode: bool,
    /// `requirepass`: the `default` user's password; `None` when empty (no AUTH needed).
    pub requirepass: Option<String>,
    /// The config file's `user` lines, in order: the user's name, then its rules (selectors
    /// spread over several words merged into one), loaded into the ACL at startup.
    pub acl_users: Vec<Vec<Vec<u8>>>,
    /// `databases`: number of logical databases, at least 1. Default 16. Immutable.
    pub databases: usize,
    /// `dir`: canonical absolute directory for the snapshot file (and a relative `logfile`).
    /// Default: the working directory at startup. Protected.
    pub dir: PathBuf,
    /// `dbfilename`: snapshot file name inside `dir`, never a path. Default `dump.rdb`.
    /// Protected.
    pub dbfilename: String,
    /// `maxclients`: most simultaneous clients. Default 10000.
    pub maxclients: u64,
    /// `timeout`: close a client idle this many seconds; 0 never. Default 0.
    pub timeout: u64,
    /// `tcp-keepalive`: SO_KEEPALIVE interval in seconds; 0 off. Default 300.
    pub tcp_keepalive: u64,
    /// `tcp-backlog`: the listen() backlog (the kernel caps it at `somaxconn`). Default 511.
    /// Immutable.
    pub tcp_backlog: u32,
    /// `loglevel`. Default notice.
    pub loglevel: LogLevel,
    /// `logfile`: empty for standard output; relative paths are relative to `dir` (where
    /// Redis would have `chdir`ed). Immutable.
    pub logfile: String,
    /// `daemonize`: always false; `yes` is refused. Immutable.
    pub daemonize: bool,
    /// `proto-max-bulk-len`: largest bulk string a client may send. Default 512 MiB.
    pub proto_max_bulk_len: u64,
    /// `client-query-buffer-limit`: largest pending input per client. Default 1 GiB.
    pub client_query_buffer_limit: u64,
    /// `hll-sparse-max-bytes`: the size (header included) past which a sparse HyperLogLog
    /// turns dense. Default 3000.
    pub hll_sparse_max_bytes: u64,
    /// `save`: automatic snapshot points; empty disables them. Default 3600 1, 300 100,
    /// 60 10000.
    pub save: Vec<SavePoint>,
    /// `rdbcompression`: LZF-compress strings in the snapshot. Default yes.
    pub rdbcompression: bool,
    /// `rdbchecksum`: write and verify the CRC64 trailer. Default yes. Immutable.
    pub rdbchecksum: bool,
    /// `stop-writes-on-bgsave-error`: refuse writes after a failed background save. Default yes.
    pub stop_writes_on_bgsave_error: bool,
    /// `appendonly`: the append-only file (`crate::aof`). Default no.
    pub appendonly: bool,
    /// `appendfsync`: when the AOF is fsynced. Default everysec.
    pub appendfsync: AppendFsync,
    /// `hz`: background task frequency, clamped to 1..=500 as Redis does. Default 10.
    pub hz: u64,
    /// `maxmemory`: the limit eviction keeps `used_memory` under; 0 is unlimited.
    pub maxmemory: u64,
    /// `maxmemory-policy`. Default noeviction.
    pub maxmemory_policy: MaxmemoryPolicy,
    /// `io-threads`: stored. Default 1. Immutable.
    pub io_threads: u64,
    /// `client-output-buffer-limit`.
    pub client_output_buffer_limit: OutputBufferLimits,
    /// `latency-tracking`: stored. Default yes.
    pub latency_tracking: bool,
    /// `lazyfree-lazy-user-del`: stored. Default no.
    pub lazyfree_lazy_user_del: bool,
    /// `busy-reply-threshold` (alias `lua-time-limit`): milliseconds a script runs before other
    /// clients get `-BUSY` and SCRIPT KILL may stop it. Default 5000; 0 never.
    pub busy_reply_threshold: u64,
    /// `script-memory-limit`: bytes the Lua interpreter may hold; a script that allocates past it
    /// fails with an error instead of taking the server's memory. forkless's own. Default 1gb;
    /// 0 no limit.
    pub script_memory_limit: u64,
    /// `slowlog-log-slower-than`: microseconds from which a command is logged in the slow
    /// log; negative disables it, 0 logs every command. Default 10000.
    pub slowlog_log_slower_than: i64,
    /// `slowlog-max-len`: entries the slow log keeps. Default 128.
    pub slowlog_max_len: u64,
    /// `latency-monitor-threshold`: milliseconds from which the latency monitor records an
    /// event; 0 disables it. Default 0.
    pub latency_monitor_threshold: u64,
    /// `tracking-table-max-keys`: most keys CLIENT TRACKING remembers; beyond it keys are
    /// invalidated and forgotten. 0 is no limit. Default 1000000.
    pub tracking_table_max_keys: u64,
    /// `enable-debug-command`: who may run DEBUG (`no`, `yes`, or `local`: loopback clients
    /// only). Default no. Immutable.
    pub enable_debug_command: ProtectedConfigs,
    /// `enable-protected-configs`: who may CONFIG SET `dir` and `dbfilename`. Default no.
    /// Immutable.
    pub enable_protected_configs: ProtectedConfigs,
    /// `snapshot-mode`. Default epoch.
    pub snapshot_mode: SnapshotMode,
    /// `snapshot-writer`. Default auto.
    pub snapshot_writer: SnapshotWriter,
    /// `snapshot-compression`. Default none.
    pub snapshot_compression: SnapshotCompression,
    /// `snapshot-compression-level`: zstd level, 1..=22. Default 1.
    pub snapshot_compression_level: i32,
    /// `snapshot-max-bytes-per-sec`: write rate limit; 0 is unlimited. Default 0.
    pub snapshot_max_bytes_per_sec: u64,
    /// `snapshot-threads`: serialisation threads; 0 means one per core. Default 0.
    pub snapshot_threads: usize,
    /// `snapshot-nice`: nice value of the snapshot's traversal threads, 0..=19, when
    /// `snapshot-idle-priority` is off. Default 0.
    pub snapshot_nice: i32,
    /// `snapshot-idle-priority`: the snapshot's traversal threads run under `SCHED_IDLE`, on
    /// CPU time no other thread wants, and pace themselves while clients are busy. Default yes.
    pub snapshot_idle_priority: bool,
    /// `snapshot-max-retained-bytes`: the most old versions an epoch snapshot retains before a
    /// write that would retain another waits for the save to catch up; 0 is no limit.
    /// Default 16 MiB. A change applies from the next snapshot.
    pub snapshot_max_retained_bytes: u64,
    /// `client-output-buffer-backpressure`: the replies waiting to be written to a normal
    /// client at which the server stops reading that client's commands until the client has
    /// read enough of them; 0 never stops (Redis's behaviour: only `client-output-buffer-limit`
    /// and `maxmemory-clients` bound a client that does not read). Default 64 MiB.
    pub client_output_buffer_backpressure: u64,
    /// `snapshot-max-retained-percent`: with `maxmemory` set, the retained budget is also at
    /// most this percentage of it (never under [`MIN_SCALED_RETAINED_BUDGET`]), so that a small
    /// server's snapshot keeps its old versions in proportion; 0 leaves the budget to
    /// `snapshot-max-retained-bytes` alone. Default 1. See [`Config::snapshot_retained_budget`].
    pub snapshot_max_retained_percent: u64,
    /// `malloc-arena-max`: the most arenas glibc's allocator may create (its `M_ARENA_MAX`);
    /// 0 leaves glibc's default (8 per core). Default 1. Immutable: set at startup, before the
    /// threads that would create arenas (`allocator::limit_arenas`).
    pub malloc_arena_max: usize,
    /// `worker-threads`: threads serving clients; 0 means one per core. Default 0. Immutable.
    pub worker_threads: usize,
    /// `notify-keyspace-events`: the classes of keyspace notifications published, as
    /// [`notify_class`] bits. Default none.
    pub notify_keyspace_events: u32,
    /// The options without a field of their own (`Kind::Stored` rows and a few multi-argument
    /// ones), as CONFIG GET renders them, keyed by option name; an option at its default is
    /// absent. Read with [`Config::stored_int`] and [`Config::stored_text`].
    pub stored: BTreeMap<&'static str, Vec<u8>>,
}

impl Default for Config {
    /// Redis 7.0's defaults, except `bind` (`127.0.0.1`). `dir` is the current working directory.
    fn default() -> Config {
        Config {
            config_file: None,
            bind: vec!["127.0.0.1".to_owned()],
            port: 6379,
            protected_mode: true,
            requirepass: None,
            acl_users: Vec::new(),
            databases: 16,
            dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            dbfilename: "dump.rdb".to_owned(),
            maxclients: 10_000,
            timeout: 0,
            tcp_keepalive: 300,
            tcp_backlog: 511,
            loglevel: LogLevel::Notice,
            logfile: String::new(),
            daemonize: false,
            proto_max_bulk_len: 512 << 20,
            client_query_buffer_limit: 1 << 30,
            hll_sparse_max_bytes: 3000,
            save: vec![
                SavePoint {
                    seconds: 3600,
                    changes: 1,
                },
                SavePoint {
                    seconds: 300,
                    changes: 100,
                },
                SavePoint {
                    seconds: 60,
                    changes: 10_000,
                },
            ],
            rdbcompression: true,
            rdbchecksum: true,
            stop_writes_on_bgsave_error: true,
            appendonly: false,
            appendfsync: AppendFsync::Everysec,
            hz: 10,
            maxmemory: 0,
            maxmemory_policy: MaxmemoryPolicy::Noeviction,
            io_threads: 1,
            client_output_buffer_limit: OutputBufferLimits::default(),
            latency_tracking: true,
            slowlog_log_slower_than: 10_000,
            slowlog_max_len: 128,
            latency_monitor_threshold: 0,
            tracking_table_max_keys: 1_000_000,
            enable_debug_command: ProtectedConfigs::No,
            lazyfree_lazy_user_del: false,
            busy_reply_threshold: 5000,
            script_memory_limit: 1 << 30,
            enable_protected_configs: ProtectedConfigs::No,
            snapshot_mode: SnapshotMode::Epoch,
            snapshot_writer: SnapshotWriter::Auto,
            snapshot_compression: SnapshotCompression::None,
            snapshot_compression_level: 1,
            snapshot_max_bytes_per_sec: 0,
            snapshot_threads: 0,
            snapshot_nice: 0,
            snapshot_max_retained_bytes: 16 << 20,
            client_output_buffer_backpressure: 64 << 20,
            snapshot_max_retained_percent: 1,
            malloc_arena_max: 1,
            snapshot_idle_priority: true,
            worker_threads: 0,
            notify_keyspace_events: 0,
            stored: BTreeMap::new(),
        }
    }
}

mod lexer;
pub(crate) use lexer::repr;
pub(crate) use lexer::split_args;
pub(crate) use parse::parse_memory;
mod load;
pub(crate) use self::load::strerror;
mod parse;
mod rewrite;
pub(crate) use self::rewrite::write_atomically;
mod special;
mod stored;
mod table;
#[cfg(test)]
mod tests;

/// The least retained budget `snapshot-max-retained-percent` scales down to: below a few
/// values' worth, nearly every write during a save would wait for the sweeper.
pub const MIN_SCALED_RETAINED_BUDGET: u64 = 1 << 20;

impl Config {
    /// The retained budget a snapshot cut now gets (0 for none): `snapshot-max-retained-bytes`,
    /// and with `maxmemory` and `snapshot-max-retained-percent` set, at most that share of
    /// `maxmemory` (at least [`MIN_SCALED_RETAINED_BUDGET`]). Retained versions are not counted
    /// for eviction (`evict.rs`), so this is how far past `maxmemory` a save may take the
    /// server: a fixed 16 MiB is noise at 16 GiB and a sizeable share of a 256 MiB container.
    pub fn snapshot_retained_budget(&self) -> u64 {
        let scaled = (self.maxmemory > 0 && self.snapshot_max_retained_percent > 0).then(|| {
            (self.maxmemory / 100)
                .saturating_mul(self.snapshot_max_retained_percent)
                .max(MIN_SCALED_RETAINED_BUDGET)
        });
        match (self.snapshot_max_retained_bytes, scaled) {
            (0, scaled) => scaled.unwrap_or(0),
            (bytes, Some(scaled)) => bytes.min(scaled),
            (bytes, None) => bytes,
        }
    }

    /// CONFIG GET: every option whose name matches one of `patterns` (globs, case-insensitive)
    /// with its value as Redis renders it. A pattern without `*`, `?` or `[` is an exact
    /// case-insensitive name and is echoed as given, as Redis does. Each option appears once.
    pub fn get(&self, patterns: &[&[u8]]) -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = Vec::new();
        let mut matched: Vec<&'static str> = Vec::new();
        for pattern in patterns {
            if !pattern.iter().any(|b| matches!(b, b'[' | b'*' | b'?')) {
                if let Some(spec) = lookup(pattern).filter(|spec| !matched.contains(&spec.name)) {
                    matched.push(spec.name);
                    found.push((
                        String::from_utf8_lossy(pattern).into_owned(),
                        self.value_of(spec),
                    ));
                }
                continue;
            }
            // Hidden options need their exact name. An old name is an entry of its own, as
            // in Redis's dictionary of configs.
            for spec in OPTIONS.iter().filter(|spec| spec.flags & HIDDEN == 0) {
                if !matched.contains(&spec.name) && glob_match(pattern, spec.name.as_bytes(), true)
                {
                    matched.push(spec.name);
                    found.push((spec.name.to_owned(), self.value_of(spec)));
                }
            }
            for (alias, target) in ALIASES {
                if !found.iter().any(|(name, _)| name == alias)
                    && glob_match(pattern, alias.as_bytes(), true)
                {
                    if let Some(spec) = lookup(target.as_bytes()) {
                        found.push(((*alias).to_owned(), self.value_of(spec)));
                    }
                }
            }
        }
        found
    }

    /// The value of a stored integer option (`list-max-listpack-size`, ...), or `default` when
    /// the name is not a stored integer option.
    pub fn stored_int(&self, name: &str, default: i64) -> i64 {
        lookup(name.as_bytes())
            .map(|spec| spec.value(self))
            .and_then(|value| std::str::from_utf8(&value).ok()?.parse().ok())
            .unwrap_or(default)
    }

    /// `appendfilename`: the prefix of the AOF's file names.
    pub fn appendfilename(&self) -> &str {
        self.stored
            .get("appendfilename")
            .and_then(|value| std::str::from_utf8(value).ok())
            .unwrap_or("appendonly.aof")
    }

    /// `appenddirname`: the AOF's directory, under `dir`.
    pub fn appenddirname(&self) -> &str {
        self.stored
            .get("appenddirname")
            .and_then(|value| std::str::from_utf8(value).ok())
            .unwrap_or("appendonlydir")
    }

    /// `aof-load-truncated`: load an AOF whose last command is cut short (default yes).
    pub fn aof_load_truncated(&self) -> bool {
        self.stored_text("aof-load-truncated") != b"no"
    }

    /// `aof-timestamp-enabled`: `#TS:` annotations in the AOF (default no).
    pub fn aof_disable_auto_gc(&self) -> bool {
        self.stored_text("aof-disable-auto-gc") == b"yes"
    }

    pub fn aof_timestamp_enabled(&self) -> bool {
        self.stored_text("aof-timestamp-enabled") == b"yes"
    }

    /// `aof-use-rdb-preamble`: the AOF's base is an RDB (default yes) or commands.
    pub fn aof_use_rdb_preamble(&self) -> bool {
        self.stored_text("aof-use-rdb-preamble") != b"no"
    }

    /// `no-appendfsync-on-rewrite`: no AOF fsync while a rewrite runs (default no).
    pub fn no_appendfsync_on_rewrite(&self) -> bool {
        self.stored_text("no-appendfsync-on-rewrite") == b"yes"
    }

    /// The value of a stored option as CONFIG GET shows it; empty for an unknown name.
    pub fn stored_text(&self, name: &str) -> Vec<u8> {
        lookup(name.as_bytes())
            .map(|spec| spec.value(self))
            .unwrap_or_default()
    }

    /// The options forkless accepts but does not act on that have a value other than Redis's
    /// default, with that value: what startup logs as "accepted, not in effect".
    pub fn inert_settings(&self) -> Vec<(&'static str, String)> {
        let defaults = Config::default();
        OPTIONS
            .iter()
            .filter(|spec| spec.flags & INERT != 0 && spec.is_changed(self, &defaults))
            .map(|spec| (spec.name, self.value_of(spec)))
            .collect()
    }

    fn value_of(&self, spec: &Spec) -> String {
        String::from_utf8_lossy(&spec.value(self)).into_owned()
    }

    /// CONFIG SET for a client that is not local; see [`Config::set_from_client`].
    pub fn set(&mut self, pairs: &[(&[u8], &[u8])]) -> Result<Vec<&'static str>, String> {
        self.set_from_client(pairs, false)
    }

    /// CONFIG SET name value [name value ...], all or nothing as in Redis 7.0. `client_is_local`
    /// says whether the client came over loopback or a Unix socket (for
    /// `enable-protected-configs local`). Returns the names of the options whose value changed,
    /// so that the server can apply side effects. The error is Redis's reply text without the
    /// leading `-`.
    pub fn set_from_client(
        &mut self,
        pairs: &[(&[u8], &[u8])],
        client_is_local: bool,
    ) -> Result<Vec<&'static str>, String> {
        let failed = |name: &[u8], reason: &str| {
            format!(
                "ERR CONFIG SET failed (possibly related to argument '{}') - {reason}",
                String::from_utf8_lossy(name)
            )
        };
        let protected_allowed = match self.enable_protected_configs {
            ProtectedConfigs::Yes => true,
            ProtectedConfigs::Local => client_is_local,
            ProtectedConfigs::No => false,
        };
        // First pass, like configSetCommand: the first unknown, immutable, protected or
        // duplicate name wins, before any value is parsed.
        let mut specs: Vec<&'static Spec> = Vec::with_capacity(pairs.len());
        let mut first_error = None;
        for (name, value) in pairs {
            let Some(spec) = lookup(name) else {
                first_error.get_or_insert_with(|| {
                    format!(
                        "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                        String::from_utf8_lossy(name)
                    )
                });
                continue;
            };
            if first_error.is_some() {
                continue;
            }
            let unchanged = spec.flags & SAME_VALUE_OK != 0 && spec.value(self) == *value;
            if spec.flags & IMMUTABLE != 0 && !unchanged {
                first_error = Some(failed(name, "can't set immutable config"));
            } else if spec.flags & PROTECTED != 0 && !protected_allowed {
                first_error = Some(failed(name, "can't set protected config"));
            } else if specs.iter().any(|seen| std::ptr::eq(*seen, spec)) {
                first_error = Some(failed(name, "duplicate parameter"));
            }
            specs.push(spec);
        }
        if let Some(err) = first_error {
            return Err(err);
        }

        let mut candidate = self.clone();
        for (spec, (_, value)) in specs.iter().zip(pairs) {
            // Multi-argument values split on single spaces (Redis's sdssplitlen), so "" is no
            // arguments at all.
            let args: Vec<Vec<u8>> = if !spec.is_multi() {
                vec![value.to_vec()]
            } else if value.is_empty() {
                Vec::new()
            } else {
                value.split(|&b| b == b' ').map(<[u8]>::to_vec).collect()
            };
            spec.apply(&mut candidate, &args, false)
                .map_err(|reason| failed(spec.name.as_bytes(), &reason))?;
        }
        let changed = specs
            .iter()
            .filter(|spec| spec.value(self) != spec.value(&candidate))
            .map(|spec| spec.name)
            .collect();
        *self = candidate;
        Ok(changed)
    }

    /// Where snapshots are written: `dbfilename` inside `dir`.
    pub fn rdb_path(&self) -> PathBuf {
        self.dir.join(&self.dbfilename)
    }
}
