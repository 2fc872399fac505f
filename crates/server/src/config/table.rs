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
    opt("bind",                        IMMUTABLE, multi!(bind_get, bind_set, bind_lines)),
    opt("port",                        IMMUTABLE, int!(port, u16, Signed(0, 65535))),
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
    opt("save",                        ALWAYS,    multi!(save_get, save_set, save_lines)),
    opt("rdbcompression",              MUTABLE,   flag!(rdbcompression)),
    opt("rdbchecksum",                 IMMUTABLE, flag!(rdbchecksum)),
    opt("stop-writes-on-bgsave-error", MUTABLE,   flag!(stop_writes_on_bgsave_error)),
    opt("appendonly",                  MUTABLE,   flag!(appendonly)),
    opt("appendfsync",                 MUTABLE,   choice!(appendfsync, AppendFsync)),
    // Redis accepts any non-negative int and clamps it to CONFIG_MIN_HZ..CONFIG_MAX_HZ.
    opt("hz",                          MUTABLE,   Kind::Int {
        range: Signed(0, INT_MAX), memory: false, get: |c| c.hz, set: |c, v| c.hz = v.clamp(1, 500),
    }),
    opt("maxmemory",                   MUTABLE,   mem!(maxmemory, Unsigned(0, u64::MAX))),
    opt("maxmemory-policy",            MUTABLE,   choice!(maxmemory_policy, MaxmemoryPolicy)),
    opt("io-threads",                  IMMUTABLE, int!(io_threads, u64, Signed(1, 128))),
    opt("client-output-buffer-limit",  MUTABLE,   multi!(obuf_get, obuf_set, obuf_lines)),
    opt("latency-tracking",            MUTABLE,   flag!(latency_tracking)),
    opt("lazyfree-lazy-user-del",      MUTABLE,   flag!(lazyfree_lazy_user_del)),
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
    opt("worker-threads",              IMMUTABLE, int!(worker_threads, usize, Signed(0, 1024))),
];

/// The option called `name`, compared case-insensitively as Redis does.
pub(super) fn lookup(name: &[u8]) -> Option<&'static Spec> {
    OPTIONS
        .iter()
        .find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
}

impl Spec {
    pub(super) fn is_multi(&self) -> bool {
        matches!(self.kind, Kind::Multi { .. })
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
            Kind::Bool { .. } | Kind::Int { .. } | Kind::Enum { .. } => {
                vec![line(&self.value(config))]
            }
        }
    }
}

/// Cross-option checks run after every change, at load time and on CONFIG SET.
pub(super) fn check_supported(config: &Config) -> Result<(), String> {
    if config.daemonize {
        return Err(
            "daemonize yes is not supported by forkless: run it in the foreground \
                    under a process supervisor"
                .to_owned(),
        );
    }
    // Options whose absence would lose data or break a promise are refused until forkless acts
    // on them (these two checks go when AOF and maxmemory land).
    if config.appendonly {
        return Err(
            "appendonly yes is not supported by forkless yet: the append-only file \
                    (AOF) is not implemented, so writes would not be durable"
                .to_owned(),
        );
    }
    if config.maxmemory > 0 {
        return Err(
            "maxmemory is not supported by forkless yet: memory limits and eviction \
                    are not implemented, so the limit would not be enforced"
                .to_owned(),
        );
    }
    Ok(())
}
