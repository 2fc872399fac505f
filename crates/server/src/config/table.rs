//! The option table: one row per option, with its flags and how it is parsed and rendered.

use self::Range::{Signed, Unsigned};
use super::Config;
use super::lexer::repr;
use super::parse::{format_memory, parse_enum, parse_int, parse_yes_no, yes_no};
use super::special::{
    bind_get, bind_lines, bind_set, dbfilename_get, dbfilename_set, dir_get, dir_set, logfile_get,
    logfile_set, obuf_get, obuf_lines, obuf_set, requirepass_get, requirepass_set, save_get,
    save_lines, save_set,
};
use super::stored::{
    ACL_PUBSUB_DEFAULT, Check, ENDPOINT_TYPE, OOM_SCORE_ADJ, PROPAGATION_ERROR, PROTECTED_ACTION,
    REPL_DISKLESS_LOAD, SANITIZE_DUMP_PAYLOAD, SHUTDOWN_ON_SIG, SUPERVISED, SYSLOG_FACILITY,
    TLS_AUTH_CLIENTS, latency_percentiles_get, latency_percentiles_lines, latency_percentiles_set,
    notify_get, notify_set, oom_values_get, oom_values_lines, oom_values_set, replicaof_get,
    replicaof_lines, replicaof_set,
};
use super::{
    AppendFsync, LogLevel, MaxmemoryPolicy, ProtectedConfigs, SnapshotCompression, SnapshotMode,
    SnapshotWriter,
};

// ---------------------------------------------------------------------------------------------
// The option table.

/// CONFIG SET refuses the option ("can't set immutable config").
pub(super) const IMMUTABLE: u8 = 1;
/// CONFIG SET needs `enable-protected-configs` ("can't set protected config").
pub(super) const PROTECTED: u8 = 2;
/// CONFIG REWRITE writes the option even when it has its default value (Redis does this for
/// `dir` and `save`).
pub(super) const ALWAYS: u8 = 4;
/// forkless accepts and stores the option but does not act on it: a value other than the
/// default is logged once at startup as "accepted, not in effect" (config/forkless.conf says
/// so for each such option).
pub(super) const INERT: u8 = 8;
/// CONFIG GET with a pattern skips the option; only its exact name finds it (Redis's
/// HIDDEN_CONFIG, for test and debugging knobs).
pub(super) const HIDDEN: u8 = 16;
/// With [`IMMUTABLE`], on forkless's own options only: CONFIG SET to the current value is
/// accepted and changes nothing. Redis has no such option; tools (and Redis's "CONFIG sanity"
/// test) that set every `CONFIG GET *` value back skip only Redis's immutable options.
pub(super) const SAME_VALUE_OK: u8 = 32;
/// No flags: an ordinary runtime-mutable option.
const MUTABLE: u8 = 0;

/// Bounds of an integer option, with the signedness of the C type Redis stores it in: that
/// decides whether `-1` reads as "below the minimum" or as a huge unsigned number, and so which
/// error Redis gives.
#[derive(Clone, Copy, Debug)]
pub(super) enum Range {
    Signed(i64, i64),
    Unsigned(u64, u64),
}

/// How an option is parsed, stored and rendered.
pub(super) enum Kind {
    /// `yes`/`no`.
    Bool {
        get: fn(&Config) -> bool,
        set: fn(&mut Config, bool),
    },
    /// An integer; with `memory`, also `1gb`, `512mb`, `100k` and friends.
    Int {
        range: Range,
        memory: bool,
        get: fn(&Config) -> u64,
        set: fn(&mut Config, u64),
    },
    /// One of fixed names, case-insensitive.
    Enum {
        names: &'static [&'static str],
        get: fn(&Config) -> usize,
        set: fn(&mut Config, usize),
    },
    /// A single string argument with option-specific validation.
    Text {
        get: fn(&Config) -> Vec<u8>,
        set: fn(&mut Config, &[u8]) -> Result<(), String>,
    },
    /// Any number of arguments (Redis's MULTI_ARG_CONFIG). `set` gets `append` set when the
    /// option already appeared earlier in the same config load; `lines` renders the option's
    /// config-file lines for CONFIG REWRITE.
    Multi {
        get: fn(&Config) -> String,
        set: MultiSetter,
        lines: fn(&Config) -> Vec<Vec<u8>>,
    },
    /// A value kept in [`Config::stored`] under the option's name, in its CONFIG GET
    /// rendering, checked as Redis checks it; `default` is that rendering of Redis's default.
    /// Options forkless does not act on (flag [`INERT`]) and the few it reads through
    /// [`Config::stored_int`] use it, so that an option needs no field of its own.
    Stored { check: Check, default: &'static str },
}

/// Parses the arguments of a [`Kind::Multi`] option; the flag is `append`.
pub(super) type MultiSetter = fn(&mut Config, &[Vec<u8>], bool) -> Result<(), String>;

/// One configuration option.
pub(super) struct Spec {
    pub(super) name: &'static str,
    pub(super) flags: u8,
    pub(super) kind: Kind,
}

macro_rules! flag {
    ($field:ident) => {
        Kind::Bool {
            get: |c| c.$field,
            set: |c, v| c.$field = v,
        }
    };
}

macro_rules! int {
    ($field:ident, $ty:ty, $range:expr) => {
        int!($field, $ty, $range, false)
    };
    ($field:ident, $ty:ty, $range:expr, $memory:expr) => {
        Kind::Int {
            range: $range,
            memory: $memory,
            get: |c| u64::try_from(c.$field).unwrap_or(u64::MAX),
            // The range check has already run, so the conversion cannot fail.
            set: |c, v| c.$field = <$ty>::try_from(v).unwrap_or(<$ty>::MAX),
        }
    };
}

/// A `u64` byte count that also takes memory units.
macro_rules! mem {
    ($field:ident, $range:expr) => {
        int!($field, u64, $range, true)
    };
}

macro_rules! text {
    ($get:expr, $set:expr) => {
        Kind::Text {
            get: $get,
            set: $set,
        }
    };
}

macro_rules! multi {
    ($get:expr, $set:expr, $lines:expr) => {
        Kind::Multi {
            get: $get,
            set: $set,
            lines: $lines,
        }
    };
}

macro_rules! stored {
    ($check:expr, $default:expr) => {
        Kind::Stored {
            check: $check,
            default: $default,
        }
    };
}

macro_rules! choice {
    ($field:ident, $ty:ident) => {
        Kind::Enum {
            names: $ty::NAMES,
            get: |c| c.$field.index(),
            set: |c, idx| {
                if let Some(value) = $ty::from_index(idx) {
                    c.$field = value;
                }
            },
        }
    };
}

const INT_MAX: i64 = i32::MAX as i64;
const INT_MIN: i64 = i32::MIN as i64;
const LONG_MAX: i64 = i64::MAX;
const LONG_MAX_U: u64 = i64::MAX as u64;
const UINT_MAX: u64 = u32::MAX as u64;
const MB: i64 = 1 << 20;
const MB_U: u64 = 1 << 20;

const fn opt(name: &'static str, flags: u8, kind: Kind) -> Spec {
    Spec { name, flags, kind }
}

/// Every option, in the order CONFIG GET lists them and CONFIG REWRITE appends them. Flags,
/// ranges and value syntax are Redis 7.0's unless the module docs say otherwise; the ranges'
/// signedness is that of the C type Redis stores the option in.
#[rustfmt::skip]
pub(super) static OPTIONS: &[Spec] = &[
    opt("bind",                        MUTABLE, multi!(bind_get, bind_set, bind_lines)),
    opt("port",                        MUTABLE, int!(port, u16, Signed(0, 65535))),
    opt("protected-mode",              MUTABLE,   flag!(protected_mode)),
    opt("requirepass",                 MUTABLE,   text!(requirepass_get, requirepass_set)),
    opt("databases",                   IMMUTABLE, int!(databases, usize, Signed(1, INT_MAX))),
    opt("dir",                         PROTECTED | ALWAYS, text!(dir_get, dir_set)),
    opt("dbfilename",                  PROTECTED, text!(dbfilename_get, dbfilename_set)),
    opt("maxclients",                  MUTABLE,   int!(maxclients, u64, Unsigned(1, UINT_MAX))),
    opt("timeout",                     MUTABLE,   int!(timeout, u64, Signed(0, INT_MAX))),
    opt("tcp-keepalive",               MUTABLE,   int!(tcp_keepalive, u64, Signed(0, INT_MAX))),
    opt("tcp-backlog",                 IMMUTABLE, int!(tcp_backlog, u32, Signed(0, INT_MAX))),
    opt("loglevel",                    MUTABLE,   choice!(loglevel, LogLevel)),
    opt("logfile",                     IMMUTABLE, text!(logfile_get, logfile_set)),
    opt("daemonize",                   IMMUTABLE, flag!(daemonize)),
    opt("proto-max-bulk-len",          MUTABLE,   mem!(proto_max_bulk_len, Signed(MB, LONG_MAX))),
    opt("client-query-buffer-limit",   MUTABLE,
        mem!(client_query_buffer_limit, Unsigned(MB_U, LONG_MAX_U))),
    opt("hll-sparse-max-bytes",        MUTABLE,   mem!(hll_sparse_max_bytes, Unsigned(0, LONG_MAX_U))),
    opt("save",                        ALWAYS,    multi!(save_get, save_set, save_lines)),
    opt("rdbcompression",              MUTABLE,   flag!(rdbcompression)),
    opt("rdbchecksum",                 IMMUTABLE, flag!(rdbchecksum)),
    opt("stop-writes-on-bgsave-error", MUTABLE,   flag!(stop_writes_on_bgsave_error)),
    opt("appendonly",                  MUTABLE,   flag!(appendonly)),
    opt("appendfsync",                 MUTABLE, choice!(appendfsync, AppendFsync)),
    // Redis accepts any non-negative int and clamps it to CONFIG_MIN_HZ..CONFIG_MAX_HZ.
    opt("hz",                          MUTABLE,   Kind::Int {
        range: Signed(0, INT_MAX), memory: false, get: |c| c.hz, set: |c, v| c.hz = v.clamp(1, 500),
    }),
    opt("maxmemory",                   MUTABLE,   mem!(maxmemory, Unsigned(0, u64::MAX))),
    opt("maxmemory-policy",            MUTABLE, choice!(maxmemory_policy, MaxmemoryPolicy)),
    opt("io-threads",                  IMMUTABLE | INERT, int!(io_threads, u64, Signed(1, 128))),
    opt("client-output-buffer-limit",  MUTABLE,   multi!(obuf_get, obuf_set, obuf_lines)),
    opt("latency-tracking",            INERT,   flag!(latency_tracking)),
    opt("lazyfree-lazy-user-del",      INERT,   flag!(lazyfree_lazy_user_del)),
    opt("slowlog-log-slower-than",     MUTABLE,   Kind::Int {
        range: Signed(-1, LONG_MAX), memory: false,
        get: |c| u64::from_ne_bytes(c.slowlog_log_slower_than.to_ne_bytes()),
        set: |c, v| c.slowlog_log_slower_than = i64::from_ne_bytes(v.to_ne_bytes()),
    }),
    opt("slowlog-max-len",             MUTABLE,   int!(slowlog_max_len, u64, Unsigned(0, LONG_MAX_U))),
    opt("latency-monitor-threshold",   MUTABLE,
        int!(latency_monitor_threshold, u64, Signed(0, LONG_MAX))),
    opt("tracking-table-max-keys",     MUTABLE,
        int!(tracking_table_max_keys, u64, Unsigned(0, LONG_MAX_U))),
    opt("enable-debug-command",        IMMUTABLE,
        choice!(enable_debug_command, ProtectedConfigs)),
    opt("busy-reply-threshold",        MUTABLE,   int!(busy_reply_threshold, u64, Signed(0, LONG_MAX))),
    opt("script-memory-limit",         MUTABLE,   mem!(script_memory_limit, Unsigned(0, u64::MAX))),
    opt("enable-protected-configs",    IMMUTABLE,
        choice!(enable_protected_configs, ProtectedConfigs)),
    opt("snapshot-mode",               MUTABLE,   choice!(snapshot_mode, SnapshotMode)),
    opt("snapshot-writer",             MUTABLE,   choice!(snapshot_writer, SnapshotWriter)),
    opt("snapshot-compression",        MUTABLE,
        choice!(snapshot_compression, SnapshotCompression)),
    opt("snapshot-compression-level",  MUTABLE,
        int!(snapshot_compression_level, i32, Signed(1, 22))),
    opt("snapshot-max-bytes-per-sec",  MUTABLE,
        mem!(snapshot_max_bytes_per_sec, Signed(0, LONG_MAX))),
    opt("snapshot-threads",            MUTABLE,   int!(snapshot_threads, usize, Signed(0, 1024))),
    opt("snapshot-nice",               MUTABLE,   int!(snapshot_nice, i32, Signed(0, 19))),
    opt("snapshot-idle-priority",      MUTABLE,   flag!(snapshot_idle_priority)),
    opt("snapshot-max-retained-bytes", MUTABLE,
        mem!(snapshot_max_retained_bytes, Signed(0, LONG_MAX))),
    opt("client-output-buffer-backpressure", MUTABLE,
        mem!(client_output_buffer_backpressure, Signed(0, LONG_MAX))),
    opt("snapshot-max-retained-percent", MUTABLE,
        int!(snapshot_max_retained_percent, u64, Signed(0, 100))),
    opt("malloc-arena-max",            IMMUTABLE | SAME_VALUE_OK, int!(malloc_arena_max, usize, Signed(0, 1024))),
    opt("worker-threads",              IMMUTABLE | SAME_VALUE_OK, int!(worker_threads, usize, Signed(0, 1024))),
    opt("notify-keyspace-events",      MUTABLE,   text!(notify_get, notify_set)),
    opt("oom-score-adj-values",        INERT,
        multi!(oom_values_get, oom_values_set, oom_values_lines)),
    opt("latency-tracking-info-percentiles", INERT,
        multi!(latency_percentiles_get, latency_percentiles_set, latency_percentiles_lines)),
    opt("replicaof",                   IMMUTABLE, multi!(replicaof_get, replicaof_set, replicaof_lines)),
    // The rest of Redis 7.0's options (src/config.c's table, in its order), stored with
    // Redis's checks and defaults. Those without INERT act: the encoding thresholds, `pidfile`
    // (with `daemonize`), and the options `check_supported` refuses in other than their default.
    opt("io-threads-do-reads", IMMUTABLE | INERT, stored!(Check::Bool, "no")),
    opt("always-show-logo", IMMUTABLE, stored!(Check::Bool, "no")),
    opt("rdb-del-sync-files", INERT, stored!(Check::Bool, "no")),
    opt("activerehashing", INERT, stored!(Check::Bool, "yes")),
    opt("set-proc-title", IMMUTABLE | INERT, stored!(Check::Bool, "yes")),
    opt("dynamic-hz", INERT, stored!(Check::Bool, "yes")),
    opt("lazyfree-lazy-eviction", INERT, stored!(Check::Bool, "no")),
    opt("lazyfree-lazy-expire", INERT, stored!(Check::Bool, "no")),
    opt("lazyfree-lazy-server-del", INERT, stored!(Check::Bool, "no")),
    opt("lazyfree-lazy-user-flush", INERT, stored!(Check::Bool, "no")),
    opt("repl-disable-tcp-nodelay", INERT, stored!(Check::Bool, "no")),
    opt("repl-diskless-sync", MUTABLE, stored!(Check::Bool, "yes")),
    // forkless's own: a forkless replica's dual-channel sync (docs/replication.md).
    opt("repl-dual-channel", MUTABLE, stored!(Check::Bool, "yes")),
    opt("aof-rewrite-incremental-fsync", MUTABLE, stored!(Check::Bool, "yes")),
    opt("no-appendfsync-on-rewrite", MUTABLE, stored!(Check::Bool, "no")),
    opt("cluster-require-full-coverage", INERT, stored!(Check::Bool, "yes")),
    opt("rdb-save-incremental-fsync", MUTABLE, stored!(Check::Bool, "yes")),
    opt("aof-load-truncated", MUTABLE, stored!(Check::Bool, "yes")),
    opt("aof-use-rdb-preamble", MUTABLE, stored!(Check::Bool, "yes")),
    opt("aof-timestamp-enabled", MUTABLE, stored!(Check::Bool, "no")),
    opt("cluster-replica-no-failover", INERT, stored!(Check::Bool, "no")),
    opt("replica-lazy-flush", INERT, stored!(Check::Bool, "no")),
    opt("replica-serve-stale-data", MUTABLE, stored!(Check::Bool, "yes")),
    opt("replica-read-only", MUTABLE, stored!(Check::Bool, "yes")),
    opt("replica-ignore-maxmemory", MUTABLE, stored!(Check::Bool, "yes")),
    opt("jemalloc-bg-thread", INERT, stored!(Check::Bool, "yes")),
    opt("activedefrag", INERT, stored!(Check::Bool, "no")),
    opt("syslog-enabled", IMMUTABLE | INERT, stored!(Check::Bool, "no")),
    opt("cluster-enabled", IMMUTABLE, stored!(Check::Bool, "no")),
    opt("cluster-allow-reads-when-down", INERT, stored!(Check::Bool, "no")),
    opt("cluster-allow-pubsubshard-when-down", INERT, stored!(Check::Bool, "yes")),
    opt("crash-log-enabled", INERT, stored!(Check::Bool, "yes")),
    opt("crash-memcheck-enabled", INERT, stored!(Check::Bool, "yes")),
    opt("use-exit-on-panic", HIDDEN | INERT, stored!(Check::Bool, "no")),
    opt("disable-thp", IMMUTABLE | INERT, stored!(Check::Bool, "yes")),
    opt("cluster-allow-replica-migration", INERT, stored!(Check::Bool, "yes")),
    opt("replica-announced", MUTABLE, stored!(Check::Bool, "yes")),
    opt("aof-disable-auto-gc", MUTABLE, stored!(Check::Bool, "no")),
    opt("replica-ignore-disk-write-errors", INERT, stored!(Check::Bool, "no")),
    opt("lua-enable-deprecated-api", IMMUTABLE | HIDDEN | INERT, stored!(Check::Bool, "no")),
    opt("aclfile", IMMUTABLE, stored!(Check::Text, "")),
    opt("unixsocket", IMMUTABLE, stored!(Check::Text, "")),
    opt("pidfile", IMMUTABLE, stored!(Check::Text, "")),
    opt("replica-announce-ip", MUTABLE, stored!(Check::Text, "")),
    opt("masteruser", MUTABLE, stored!(Check::Text, "")),
    opt("cluster-announce-ip", INERT, stored!(Check::Text, "")),
    opt("cluster-config-file", IMMUTABLE | INERT, stored!(Check::Text, "nodes.conf")),
    opt("cluster-announce-hostname", INERT, stored!(Check::Text, "")),
    opt("syslog-ident", IMMUTABLE | INERT, stored!(Check::Text, "redis")),
    opt("appendfilename", IMMUTABLE, stored!(Check::Text, "appendonly.aof")),
    opt("appenddirname", IMMUTABLE, stored!(Check::Text, "appendonlydir")),
    opt("server_cpulist", IMMUTABLE | INERT, stored!(Check::Text, "")),
    opt("bio_cpulist", IMMUTABLE | INERT, stored!(Check::Text, "")),
    opt("aof_rewrite_cpulist", IMMUTABLE | INERT, stored!(Check::Text, "")),
    opt("bgsave_cpulist", IMMUTABLE | INERT, stored!(Check::Text, "")),
    opt("ignore-warnings", INERT, stored!(Check::Text, "")),
    opt("proc-title-template", INERT, stored!(Check::Text, "{title} {listen-addr} {server-mode}")),
    opt("bind-source-addr", MUTABLE, stored!(Check::Text, "")),
    opt("masterauth", MUTABLE, stored!(Check::Text, "")),
    opt("supervised", IMMUTABLE, stored!(Check::Enum(SUPERVISED), "no")),
    opt("syslog-facility", IMMUTABLE | INERT, stored!(Check::Enum(SYSLOG_FACILITY), "local0")),
    opt("repl-diskless-load", MUTABLE, stored!(Check::Enum(REPL_DISKLESS_LOAD), "disabled")),
    opt("oom-score-adj", INERT, stored!(Check::Enum(OOM_SCORE_ADJ), "no")),
    opt("acl-pubsub-default", MUTABLE, stored!(Check::Enum(ACL_PUBSUB_DEFAULT), "resetchannels")),
    opt("sanitize-dump-payload", INERT, stored!(Check::Enum(SANITIZE_DUMP_PAYLOAD), "no")),
    opt("enable-module-command", IMMUTABLE, stored!(Check::Enum(PROTECTED_ACTION), "no")),
    opt("cluster-preferred-endpoint-type", INERT, stored!(Check::Enum(ENDPOINT_TYPE), "ip")),
    opt("propagation-error-behavior", INERT, stored!(Check::Enum(PROPAGATION_ERROR), "ignore")),
    opt("shutdown-on-sigint", INERT, stored!(Check::Flags(SHUTDOWN_ON_SIG), "default")),
    opt("shutdown-on-sigterm", INERT, stored!(Check::Flags(SHUTDOWN_ON_SIG), "default")),
    opt("auto-aof-rewrite-percentage", MUTABLE, stored!(Check::Int(Signed(0, INT_MAX)), "100")),
    opt("cluster-replica-validity-factor", INERT, stored!(Check::Int(Signed(0, INT_MAX)), "10")),
    opt("list-max-listpack-size", MUTABLE, stored!(Check::Int(Signed(INT_MIN, INT_MAX)), "-2")),
    opt("cluster-migration-barrier", INERT, stored!(Check::Int(Signed(0, INT_MAX)), "1")),
    opt("active-defrag-cycle-min", INERT, stored!(Check::Int(Signed(1, 99)), "1")),
    opt("active-defrag-cycle-max", INERT, stored!(Check::Int(Signed(1, 99)), "25")),
    opt("active-defrag-threshold-lower", INERT, stored!(Check::Int(Signed(0, 1000)), "10")),
    opt("active-defrag-threshold-upper", INERT, stored!(Check::Int(Signed(0, 1000)), "100")),
    opt("lfu-log-factor", MUTABLE, stored!(Check::Int(Signed(0, INT_MAX)), "10")),
    opt("lfu-decay-time", MUTABLE, stored!(Check::Int(Signed(0, INT_MAX)), "1")),
    opt("replica-priority", MUTABLE, stored!(Check::Int(Signed(0, INT_MAX)), "100")),
    opt("repl-diskless-sync-delay", MUTABLE, stored!(Check::Int(Signed(0, INT_MAX)), "5")),
    opt("maxmemory-samples", MUTABLE, stored!(Check::Int(Signed(1, INT_MAX)), "5")),
    opt("maxmemory-eviction-tenacity", MUTABLE, stored!(Check::Int(Signed(0, 100)), "10")),
    opt("replica-announce-port", MUTABLE, stored!(Check::Int(Signed(0, 65535)), "0")),
    opt("cluster-port", IMMUTABLE | INERT, stored!(Check::Int(Signed(0, 65535)), "0")),
    opt("cluster-announce-bus-port", INERT, stored!(Check::Int(Signed(0, 65535)), "0")),
    opt("cluster-announce-port", INERT, stored!(Check::Int(Signed(0, 65535)), "0")),
    opt("cluster-announce-tls-port", INERT, stored!(Check::Int(Signed(0, 65535)), "0")),
    opt("repl-timeout", MUTABLE, stored!(Check::Int(Signed(1, INT_MAX)), "60")),
    opt("repl-ping-replica-period", MUTABLE, stored!(Check::Int(Signed(1, INT_MAX)), "10")),
    opt("list-compress-depth", MUTABLE, stored!(Check::Int(Signed(0, INT_MAX)), "0")),
    opt("rdb-key-save-delay", HIDDEN, stored!(Check::Int(Signed(INT_MIN, INT_MAX)), "0")),
    opt("key-load-delay", HIDDEN, stored!(Check::Int(Signed(INT_MIN, INT_MAX)), "0")),
    opt("active-expire-effort", INERT, stored!(Check::Int(Signed(1, 10)), "1")),
    opt("min-replicas-to-write", MUTABLE, stored!(Check::Int(Signed(0, INT_MAX)), "0")),
    opt("min-replicas-max-lag", MUTABLE, stored!(Check::Int(Signed(0, INT_MAX)), "10")),
    opt("watchdog-period", HIDDEN | INERT, stored!(Check::Int(Signed(0, INT_MAX)), "0")),
    opt("shutdown-timeout", INERT, stored!(Check::Int(Signed(0, INT_MAX)), "10")),
    opt("repl-diskless-sync-max-replicas", MUTABLE, stored!(Check::Int(Signed(0, INT_MAX)), "0")),
    opt("unixsocketperm", IMMUTABLE, stored!(Check::Octal(0o777), "0")),
    opt("socket-mark-id", IMMUTABLE | INERT, stored!(Check::Int(Unsigned(0, UINT_MAX)), "0")),
    opt("active-defrag-max-scan-fields", INERT, stored!(Check::Int(Unsigned(1, LONG_MAX_U)), "1000")),
    opt("acllog-max-len", MUTABLE, stored!(Check::Int(Unsigned(0, LONG_MAX_U)), "128")),
    opt("cluster-node-timeout", INERT, stored!(Check::Int(Signed(0, LONG_MAX)), "15000")),
    opt("stream-node-max-entries", MUTABLE, stored!(Check::Int(Signed(0, LONG_MAX)), "100")),
    opt("repl-backlog-size", MUTABLE, stored!(Check::Memory(Signed(1, LONG_MAX)), "1048576")),
    opt("repl-dual-channel-buffer-limit", MUTABLE, stored!(Check::Memory(Signed(0, LONG_MAX)), "1073741824")),
    opt("cluster-link-sendbuf-limit", INERT, stored!(Check::Memory(Unsigned(0, u64::MAX)), "0")),
    opt("hash-max-listpack-entries", MUTABLE, stored!(Check::Int(Unsigned(0, LONG_MAX_U)), "512")),
    opt("set-max-intset-entries", MUTABLE, stored!(Check::Int(Unsigned(0, LONG_MAX_U)), "512")),
    opt("zset-max-listpack-entries", MUTABLE, stored!(Check::Int(Unsigned(0, LONG_MAX_U)), "128")),
    opt("active-defrag-ignore-bytes", INERT, stored!(Check::Memory(Unsigned(1, LONG_MAX_U)), "104857600")),
    opt("hash-max-listpack-value", MUTABLE, stored!(Check::Memory(Unsigned(0, LONG_MAX_U)), "64")),
    opt("stream-node-max-bytes", MUTABLE, stored!(Check::Memory(Unsigned(0, LONG_MAX_U)), "4096")),
    opt("zset-max-listpack-value", MUTABLE, stored!(Check::Memory(Unsigned(0, LONG_MAX_U)), "64")),
    opt("maxmemory-clients", MUTABLE, stored!(Check::MemoryPercent(Signed(-100, LONG_MAX)), "0")),
    opt("repl-backlog-ttl", MUTABLE, stored!(Check::Int(Signed(0, LONG_MAX)), "3600")),
    opt("auto-aof-rewrite-min-size", MUTABLE, stored!(Check::Memory(Signed(0, LONG_MAX)), "67108864")),
    opt("loading-process-events-interval-bytes", HIDDEN | INERT, stored!(Check::Int(Signed(1024, INT_MAX)), "2097152")),
    opt("tls-port", MUTABLE, stored!(Check::Int(Signed(0, 65535)), "0")),
    opt("tls-session-cache-size", INERT, stored!(Check::Int(Signed(0, INT_MAX)), "20480")),
    opt("tls-session-cache-timeout", INERT, stored!(Check::Int(Signed(0, INT_MAX)), "300")),
    opt("tls-cluster", INERT, stored!(Check::Bool, "no")),
    opt("tls-replication", INERT, stored!(Check::Bool, "no")),
    opt("tls-auth-clients", INERT, stored!(Check::Enum(TLS_AUTH_CLIENTS), "yes")),
    opt("tls-prefer-server-ciphers", INERT, stored!(Check::Bool, "no")),
    opt("tls-session-caching", INERT, stored!(Check::Bool, "yes")),
    opt("tls-cert-file", INERT, stored!(Check::Text, "")),
    opt("tls-key-file", INERT, stored!(Check::Text, "")),
    opt("tls-key-file-pass", INERT, stored!(Check::Text, "")),
    opt("tls-client-cert-file", INERT, stored!(Check::Text, "")),
    opt("tls-client-key-file", INERT, stored!(Check::Text, "")),
    opt("tls-client-key-file-pass", INERT, stored!(Check::Text, "")),
    opt("tls-dh-params-file", INERT, stored!(Check::Text, "")),
    opt("tls-ca-cert-file", INERT, stored!(Check::Text, "")),
    opt("tls-ca-cert-dir", INERT, stored!(Check::Text, "")),
    opt("tls-protocols", INERT, stored!(Check::Text, "")),
    opt("tls-ciphers", INERT, stored!(Check::Text, "")),
    opt("tls-ciphersuites", INERT, stored!(Check::Text, "")),
];

/// Redis 7.0's old names of options (`registerConfigValue`'s aliases): each is found by
/// lookup, CONFIG SET and CONFIG GET, and listed by CONFIG GET patterns under its own name.
pub(super) static ALIASES: &[(&str, &str)] = &[
    ("cluster-slave-no-failover", "cluster-replica-no-failover"),
    ("slave-lazy-flush", "replica-lazy-flush"),
    ("slave-serve-stale-data", "replica-serve-stale-data"),
    ("slave-read-only", "replica-read-only"),
    ("slave-ignore-maxmemory", "replica-ignore-maxmemory"),
    ("slave-announce-ip", "replica-announce-ip"),
    (
        "cluster-slave-validity-factor",
        "cluster-replica-validity-factor",
    ),
    ("list-max-ziplist-size", "list-max-listpack-size"),
    ("slave-priority", "replica-priority"),
    ("slave-announce-port", "replica-announce-port"),
    ("repl-ping-slave-period", "repl-ping-replica-period"),
    ("min-slaves-to-write", "min-replicas-to-write"),
    ("min-slaves-max-lag", "min-replicas-max-lag"),
    ("lua-time-limit", "busy-reply-threshold"),
    ("hash-max-ziplist-entries", "hash-max-listpack-entries"),
    ("zset-max-ziplist-entries", "zset-max-listpack-entries"),
    ("hash-max-ziplist-value", "hash-max-listpack-value"),
    ("zset-max-ziplist-value", "zset-max-listpack-value"),
    ("slaveof", "replicaof"),
];

/// The option called `name`, compared case-insensitively as Redis does.
/// An old name (`hash-max-ziplist-entries`) finds the option under its current name.
pub(super) fn lookup(name: &[u8]) -> Option<&'static Spec> {
    let name = ALIASES
        .iter()
        .find(|(alias, _)| alias.as_bytes().eq_ignore_ascii_case(name))
        .map_or(name, |(_, target)| target.as_bytes());
    OPTIONS
        .iter()
        .find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
}

impl Spec {
    pub(super) fn is_multi(&self) -> bool {
        matches!(
            self.kind,
            Kind::Multi { .. }
                | Kind::Stored {
                    check: Check::Flags(_),
                    ..
                }
        )
    }

    /// Returns true if and only if the option has a value other than its default, as CONFIG
    /// GET renders it.
    pub(super) fn is_changed(&self, config: &Config, defaults: &Config) -> bool {
        self.value(config) != self.value(defaults)
    }

    /// Parses `args` into `config`. Single-argument kinds get exactly one argument.
    pub(super) fn apply(
        &self,
        config: &mut Config,
        args: &[Vec<u8>],
        append: bool,
    ) -> Result<(), String> {
        let single = || args.first().map_or(&[][..], Vec::as_slice);
        match &self.kind {
            Kind::Bool { set, .. } => set(config, parse_yes_no(single())?),
            Kind::Int {
                range, memory, set, ..
            } => set(config, parse_int(single(), *range, *memory)?),
            Kind::Enum { names, set, .. } => set(config, parse_enum(single(), names)?),
            Kind::Text { set, .. } => set(config, single())?,
            Kind::Multi { set, .. } => set(config, args, append)?,
            Kind::Stored { check, default } => {
                let value = check.parse(args)?;
                if value == default.as_bytes() {
                    config.stored.remove(self.name);
                } else {
                    config.stored.insert(self.name, value);
                }
            }
        }
        check_supported(config)
    }

    /// The value as CONFIG GET shows it.
    pub(super) fn value(&self, config: &Config) -> Vec<u8> {
        match &self.kind {
            Kind::Bool { get, .. } => yes_no(get(config)).as_bytes().to_vec(),
            // A signed option holds its value in two's complement (see `parse_int`).
            Kind::Int {
                range: Signed(..),
                get,
                ..
            } => i64::from_ne_bytes(get(config).to_ne_bytes())
                .to_string()
                .into_bytes(),
            Kind::Int { get, .. } => get(config).to_string().into_bytes(),
            Kind::Enum { names, get, .. } => names
                .get(get(config))
                .copied()
                .unwrap_or_default()
                .as_bytes()
                .to_vec(),
            Kind::Text { get, .. } => get(config),
            Kind::Multi { get, .. } => get(config).into_bytes(),
            Kind::Stored { default, .. } => config
                .stored
                .get(self.name)
                .cloned()
                .unwrap_or_else(|| default.as_bytes().to_vec()),
        }
    }

    /// The config-file lines CONFIG REWRITE writes for the value, in Redis's format.
    pub(super) fn lines(&self, config: &Config) -> Vec<Vec<u8>> {
        let line = |value: &[u8]| {
            let mut line = self.name.as_bytes().to_vec();
            line.push(b' ');
            line.extend_from_slice(value);
            line
        };
        match &self.kind {
            Kind::Int {
                memory: true, get, ..
            } => vec![line(format_memory(get(config)).as_bytes())],
            Kind::Text { get, .. } => vec![line(&repr(&get(config)))],
            Kind::Multi { lines, .. } => lines(config),
            Kind::Stored { check, .. } => vec![line(&check.render_line(&self.value(config)))],
            Kind::Bool { .. } | Kind::Int { .. } | Kind::Enum { .. } => {
                vec![line(&self.value(config))]
            }
        }
    }
}

/// Cross-option checks run after every change, at load time and on CONFIG SET.
pub(super) fn check_supported(config: &Config) -> Result<(), String> {
    // Redis's isValidAOFfilename / isValidAOFdirname: plain names, under `dir`.
    for (name, value, what) in [
        ("appendfilename", config.appendfilename(), "filename"),
        ("appenddirname", config.appenddirname(), "dirname"),
    ] {
        if value.is_empty() {
            return Err(format!("{name} can't be empty"));
        }
        if value.contains(['/', '\\']) {
            return Err(format!("{name} can't be a path, just a {what}"));
        }
    }
    // Options whose absence would lose data or break a promise are refused until forkless acts
    // on them.
    if config.stored.contains_key("tls-port") {
        return Err(
            "tls-port is not supported by forkless yet: TLS is not implemented, so the \
                    port would not be served encrypted"
                .to_owned(),
        );
    }
    if config.stored.contains_key("cluster-enabled") {
        return Err(
            "cluster-enabled yes is not supported by forkless yet: cluster mode is not \
                    implemented"
                .to_owned(),
        );
    }
    Ok(())
}
