//! Options kept as their CONFIG GET rendering in [`Config::stored`]: how each kind of value is
//! checked (Redis 7.0's `numericParseString`, `configEnumGetValue`, ...), and the few options
//! with a syntax of their own that live there too.

use super::Config;
use super::lexer::repr;
use super::parse::{format_memory, parse_enum, parse_int, parse_strict_i64, parse_yes_no};
use super::table::Range;

/// The names of an enum option with the value each stands for; several names may share a
/// value (`oom-score-adj yes` and `relative`), and CONFIG GET shows the first.
pub(super) type EnumNames = &'static [(&'static str, u8)];

pub(super) const SUPERVISED: EnumNames = &[("upstart", 0), ("systemd", 1), ("auto", 2), ("no", 3)];
pub(super) const SYSLOG_FACILITY: EnumNames = &[
    ("user", 0),
    ("local0", 1),
    ("local1", 2),
    ("local2", 3),
    ("local3", 4),
    ("local4", 5),
    ("local5", 6),
    ("local6", 7),
    ("local7", 8),
];
pub(super) const REPL_DISKLESS_LOAD: EnumNames =
    &[("disabled", 0), ("on-empty-db", 1), ("swapdb", 2)];
pub(super) const OOM_SCORE_ADJ: EnumNames =
    &[("no", 0), ("yes", 1), ("relative", 1), ("absolute", 2)];
pub(super) const ACL_PUBSUB_DEFAULT: EnumNames = &[("allchannels", 0), ("resetchannels", 1)];
pub(super) const SANITIZE_DUMP_PAYLOAD: EnumNames = &[("no", 0), ("yes", 1), ("clients", 2)];
pub(super) const PROTECTED_ACTION: EnumNames = &[("no", 0), ("yes", 1), ("local", 2)];
pub(super) const ENDPOINT_TYPE: EnumNames = &[("ip", 0), ("hostname", 1), ("unknown-endpoint", 2)];
pub(super) const PROPAGATION_ERROR: EnumNames =
    &[("ignore", 0), ("panic", 1), ("panic-on-replicas", 2)];
pub(super) const TLS_AUTH_CLIENTS: EnumNames = &[("no", 0), ("yes", 1), ("optional", 2)];
/// `shutdown-on-sigint`/`-sigterm`: bit flags; `default` is none of them.
pub(super) const SHUTDOWN_ON_SIG: EnumNames = &[
    ("default", 0),
    ("save", 1),
    ("nosave", 2),
    ("now", 4),
    ("force", 8),
];

/// How a stored option's value is checked and rendered.
pub(super) enum Check {
    /// `yes`/`no`.
    Bool,
    /// An integer within the range.
    Int(Range),
    /// A byte count with memory units (`64mb`), shown in bytes.
    Memory(Range),
    /// A byte count, or a percentage (`10%`, kept as -10) of `maxmemory`.
    MemoryPercent(Range),
    /// An octal integer up to the bound (`unixsocketperm`).
    Octal(u64),
    /// One name of the enum.
    Enum(EnumNames),
    /// Several names of a bit-flag enum (Redis's MULTI_ARG enums).
    Flags(EnumNames),
    /// Any string.
    Text,
}

impl Check {
    /// Checks `args` and returns the value as CONFIG GET shows it.
    pub(super) fn parse(&self, args: &[Vec<u8>]) -> Result<Vec<u8>, String> {
        let single = args.first().map_or(&[][..], Vec::as_slice);
        let rendered = match self {
            Check::Bool => {
                if parse_yes_no(single)? {
                    "yes".to_owned()
                } else {
                    "no".to_owned()
                }
            }
            Check::Int(range) | Check::Memory(range) => {
                let raw = parse_int(single, *range, matches!(self, Check::Memory(_)))?;
                render_int(raw, *range)
            }
            Check::MemoryPercent(range) => match single.strip_suffix(b"%") {
                // Redis reads `N%` with string2ll and keeps it as -N.
                Some(digits) if !digits.is_empty() => match parse_strict_i64(digits) {
                    Some(percent) if percent >= 0 => {
                        let lowest = match range {
                            Range::Signed(min, _) => min.unsigned_abs(),
                            Range::Unsigned(..) => 0,
                        };
                        if percent.unsigned_abs() > lowest {
                            return Err(format!(
                                "percentage argument must be less or equal to {lowest}"
                            ));
                        }
                        format!("{percent}%")
                    }
                    _ => return Err("argument must be a memory or percent value".to_owned()),
                },
                _ => {
                    let raw = parse_int(single, *range, true)
                        .map_err(|_| "argument must be a memory or percent value".to_owned())?;
                    render_int(raw, *range)
                }
            },
            Check::Octal(max) => {
                let text = std::str::from_utf8(single).unwrap_or_default();
                let value = i64::from_str_radix(text, 8)
                    .map_err(|_| "argument couldn't be parsed as an octal number".to_owned())?;
                match u64::try_from(value) {
                    Ok(value) if value <= *max => format!("{value:o}"),
                    _ => return Err(format!("argument must be between 0 and {max:o} inclusive")),
                }
            }
            Check::Enum(names) => {
                let plain: Vec<&str> = names.iter().map(|(name, _)| *name).collect();
                let idx = parse_enum(single, &plain)?;
                let value = names.get(idx).map_or(0, |(_, value)| *value);
                enum_name(names, value).to_owned()
            }
            Check::Flags(names) => return parse_flags(args, names),
            Check::Text => return Ok(single.to_vec()),
        };
        Ok(rendered.into_bytes())
    }

    /// The value as CONFIG REWRITE writes it after the option's name.
    pub(super) fn render_line(&self, value: &[u8]) -> Vec<u8> {
        match self {
            Check::Memory(_) => std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                .map_or_else(|| value.to_vec(), |bytes| format_memory(bytes).into_bytes()),
            Check::Text => repr(value),
            _ => value.to_vec(),
        }
    }
}

fn render_int(raw: u64, range: Range) -> String {
    match range {
        // Two's complement: parse_int returns a signed option's value as its bits.
        Range::Signed(..) => (raw as i64).to_string(),
        Range::Unsigned(..) => raw.to_string(),
    }
}

fn enum_name(names: EnumNames, value: u8) -> &'static str {
    names
        .iter()
        .find(|(_, candidate)| *candidate == value)
        .map_or("", |(name, _)| name)
}

/// Redis's bit-flag enums: every argument must be a name; `save` and `nosave` exclude each
/// other (`isValidShutdownOnSigFlags`). Rendered as the set names in table order, or the name
/// of 0 when none is set.
fn parse_flags(args: &[Vec<u8>], names: EnumNames) -> Result<Vec<u8>, String> {
    let plain: Vec<&str> = names.iter().map(|(name, _)| *name).collect();
    let mut bits = 0u8;
    for arg in args {
        let idx = parse_enum(arg, &plain)?;
        bits |= names.get(idx).map_or(0, |(_, value)| *value);
    }
    if bits & 3 == 3 {
        return Err("shutdown can't have both 'save' and 'nosave' flags".to_owned());
    }
    if bits == 0 {
        return Ok(enum_name(names, 0).as_bytes().to_vec());
    }
    let set: Vec<&str> = names
        .iter()
        .filter(|(_, value)| *value != 0 && bits & value == *value)
        .map(|(name, _)| *name)
        .collect();
    Ok(set.join(" ").into_bytes())
}

// ---------------------------------------------------------------------------------------------
// `notify-keyspace-events`: Redis's class letters, kept as flags in `Config`.

/// Keyspace-notification class flags, Redis 7.0's `NOTIFY_*` bits.
pub mod notify_class {
    /// `K`: publish on `__keyspace@<db>__:<key>`.
    pub const KEYSPACE: u32 = 1 << 0;
    /// `E`: publish on `__keyevent@<db>__:<event>`.
    pub const KEYEVENT: u32 = 1 << 1;
    /// `g`: generic commands (DEL, EXPIRE, RENAME, ...).
    pub const GENERIC: u32 = 1 << 2;
    /// `$`: string commands.
    pub const STRING: u32 = 1 << 3;
    /// `l`: list commands.
    pub const LIST: u32 = 1 << 4;
    /// `s`: set commands.
    pub const SET: u32 = 1 << 5;
    /// `h`: hash commands.
    pub const HASH: u32 = 1 << 6;
    /// `z`: sorted-set commands.
    pub const ZSET: u32 = 1 << 7;
    /// `x`: a key expired.
    pub const EXPIRED: u32 = 1 << 8;
    /// `e`: a key was evicted.
    pub const EVICTED: u32 = 1 << 9;
    /// `t`: stream commands.
    pub const STREAM: u32 = 1 << 10;
    /// `m`: a key was looked up and missing (not part of `A`).
    pub const KEY_MISS: u32 = 1 << 11;
    /// `d`: module events.
    pub const MODULE: u32 = 1 << 13;
    /// `n`: a key was created.
    pub const NEW: u32 = 1 << 14;
    /// `A`: every class but `m` and `n`.
    pub const ALL: u32 =
        GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;
}

/// Redis's `keyspaceEventsStringToFlags`; `None` for a character that names no class.
pub(super) fn notify_flags(classes: &[u8]) -> Option<u32> {
    use notify_class as n;
    classes.iter().try_fold(0, |flags, &c| {
        let class = match c {
            b'A' => n::ALL,
            b'g' => n::GENERIC,
            b'$' => n::STRING,
            b'l' => n::LIST,
            b's' => n::SET,
            b'h' => n::HASH,
            b'z' => n::ZSET,
            b'x' => n::EXPIRED,
            b'e' => n::EVICTED,
            b'K' => n::KEYSPACE,
            b'E' => n::KEYEVENT,
            b't' => n::STREAM,
            b'm' => n::KEY_MISS,
            b'd' => n::MODULE,
            b'n' => n::NEW,
            _ => return None,
        };
        Some(flags | class)
    })
}

/// Redis's `keyspaceEventsFlagsToString`.
pub(super) fn notify_string(flags: u32) -> String {
    use notify_class as n;
    let mut out = String::new();
    if flags & n::ALL == n::ALL {
        out.push('A');
    } else {
        for (class, letter) in [
            (n::GENERIC, 'g'),
            (n::STRING, '$'),
            (n::LIST, 'l'),
            (n::SET, 's'),
            (n::HASH, 'h'),
            (n::ZSET, 'z'),
            (n::EXPIRED, 'x'),
            (n::EVICTED, 'e'),
            (n::STREAM, 't'),
            (n::MODULE, 'd'),
            (n::NEW, 'n'),
        ] {
            if flags & class != 0 {
                out.push(letter);
            }
        }
    }
    for (class, letter) in [(n::KEYSPACE, 'K'), (n::KEYEVENT, 'E'), (n::KEY_MISS, 'm')] {
        if flags & class != 0 {
            out.push(letter);
        }
    }
    out
}

pub(super) fn notify_get(config: &Config) -> Vec<u8> {
    notify_string(config.notify_keyspace_events).into_bytes()
}

pub(super) fn notify_set(config: &mut Config, arg: &[u8]) -> Result<(), String> {
    config.notify_keyspace_events = notify_flags(arg)
        .ok_or_else(|| "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".to_owned())?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Multi-argument options with their own syntax, stored rendered.

const OOM_DEFAULT: &str = "0 200 800";
const PERCENTILES_DEFAULT: &str = "50 99 99.9";

fn stored_or<'a>(config: &'a Config, name: &str, default: &'a str) -> &'a str {
    config
        .stored
        .get(name)
        .and_then(|value| std::str::from_utf8(value).ok())
        .unwrap_or(default)
}

fn store(config: &mut Config, name: &'static str, value: String, default: &str) {
    if value == default {
        config.stored.remove(name);
    } else {
        config.stored.insert(name, value.into_bytes());
    }
}

fn line(name: &str, value: &str) -> Vec<Vec<u8>> {
    vec![format!("{name} {value}").into_bytes()]
}

pub(super) fn oom_values_get(config: &Config) -> String {
    stored_or(config, "oom-score-adj-values", OOM_DEFAULT).to_owned()
}

/// `oom-score-adj-values <master> <replica> <bgchild>`, each -2000..=2000.
pub(super) fn oom_values_set(
    config: &mut Config,
    args: &[Vec<u8>],
    _append: bool,
) -> Result<(), String> {
    if args.len() != 3 {
        return Err("wrong number of arguments".to_owned());
    }
    let mut values = Vec::with_capacity(3);
    for arg in args {
        match parse_strict_i64(arg) {
            Some(value) if (-2000..=2000).contains(&value) => values.push(value.to_string()),
            _ => {
                return Err(
                    "Invalid oom-score-adj-values, elements must be between -2000 and 2000."
                        .to_owned(),
                );
            }
        }
    }
    store(
        config,
        "oom-score-adj-values",
        values.join(" "),
        OOM_DEFAULT,
    );
    Ok(())
}

pub(super) fn oom_values_lines(config: &Config) -> Vec<Vec<u8>> {
    line("oom-score-adj-values", &oom_values_get(config))
}

pub(super) fn latency_percentiles_get(config: &Config) -> String {
    stored_or(
        config,
        "latency-tracking-info-percentiles",
        PERCENTILES_DEFAULT,
    )
    .to_owned()
}

/// `latency-tracking-info-percentiles <p> ...`: doubles in 0..=100, or `""` for none.
pub(super) fn latency_percentiles_set(
    config: &mut Config,
    args: &[Vec<u8>],
    _append: bool,
) -> Result<(), String> {
    let args = if matches!(args, [only] if only.is_empty()) {
        &[][..]
    } else {
        args
    };
    let mut values = Vec::with_capacity(args.len());
    for arg in args {
        let percentile = std::str::from_utf8(arg)
            .ok()
            .filter(|text| !text.is_empty() && !text.starts_with(char::is_whitespace))
            .and_then(|text| text.parse::<f64>().ok())
            .filter(|value| !value.is_nan())
            .ok_or_else(|| "Invalid latency-tracking-info-percentiles parameters".to_owned())?;
        if !(0.0..=100.0).contains(&percentile) {
            return Err(
                "latency-tracking-info-percentiles parameters should sit between [0.0,100.0]"
                    .to_owned(),
            );
        }
        // Redis prints "%f" and trims trailing zeros (and a trailing point).
        let text = format!("{percentile:.6}");
        let text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
        values.push(text);
    }
    store(
        config,
        "latency-tracking-info-percentiles",
        values.join(" "),
        PERCENTILES_DEFAULT,
    );
    Ok(())
}

pub(super) fn latency_percentiles_lines(config: &Config) -> Vec<Vec<u8>> {
    let value = latency_percentiles_get(config);
    if value.is_empty() {
        line("latency-tracking-info-percentiles", "\"\"")
    } else {
        line("latency-tracking-info-percentiles", &value)
    }
}

pub(super) fn replicaof_get(config: &Config) -> String {
    stored_or(config, "replicaof", "").to_owned()
}

/// `replicaof <host> <port>` or `replicaof no one`, checked as Redis does; the server follows
/// the master once its own dataset is loaded (`replication::replica::start_from_config`).
pub(super) fn replicaof_set(
    config: &mut Config,
    args: &[Vec<u8>],
    _append: bool,
) -> Result<(), String> {
    let [host, port] = args else {
        return Err("wrong number of arguments".to_owned());
    };
    if host.eq_ignore_ascii_case(b"no") && port.eq_ignore_ascii_case(b"one") {
        config.stored.remove("replicaof");
        return Ok(());
    }
    let port = super::parse::c_strtoll(port);
    if !(0..=65535).contains(&port.0) || !port.1 {
        return Err("Invalid master port".to_owned());
    }
    let value = format!("{} {}", String::from_utf8_lossy(host), port.0);
    config.stored.insert("replicaof", value.into_bytes());
    Ok(())
}

pub(super) fn replicaof_lines(config: &Config) -> Vec<Vec<u8>> {
    let value = replicaof_get(config);
    if value.is_empty() {
        Vec::new()
    } else {
        line("replicaof", &value)
    }
}
