//! String commands: GET SET SETNX SETEX PSETEX MGET MSET MSETNX GETSET GETDEL GETEX APPEND STRLEN
//! GETRANGE SUBSTR SETRANGE INCR DECR INCRBY DECRBY INCRBYFLOAT.
//!
//! Each follows Redis 7.0's `t_string.c` step for step, because the order of its checks is
//! visible to clients: which error wins when several apply, whether a failed command still
//! counted a keyspace hit, whether a TTL survives. In short:
//!
//! * Reads (GET, MGET, STRLEN, GETRANGE, and the read half of SET..GET, GETSET, GETDEL, GETEX)
//!   count keyspace hits and misses; pure writes (INCR, APPEND, SETRANGE...) do not.
//! * SET, GETSET, MSET, SETEX clear the TTL unless told otherwise (KEEPTTL); INCR*, APPEND and
//!   SETRANGE change the value in place and keep it.
//! * A multi-key command locks all its keys with one guard, so other clients see all of it or
//!   none of it.
//!
//! INCRBYFLOAT's `long double` arithmetic lives in `string/long_double.rs`.

pub(crate) mod long_double;

use std::ops::Range;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use forkless_storage::{CompactBytes, Value, WriteGuard};

use super::access::{Reply, len_i64, reply_int};
use super::meta::{Gate, KeySpec, flags};
use super::{Command, Ctx, eq_ignore_case, parse_i64, reply};
use crate::notify::{GENERIC, STRING, notify};

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "get", arity: 2, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "string", "fast"], summary: "Get the value of a key", since: "1.0.0", group: "string", handler: get },
    Command { name: "set", arity: -3, flags: flags!(WRITE, DENYOOM), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "string", "slow"], summary: "Set the string value of a key", since: "1.0.0", group: "string", handler: set },
    Command { name: "setnx", arity: 3, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "string", "fast"], summary: "Set the value of a key, only if the key does not exist", since: "1.0.0", group: "string", handler: setnx },
    Command { name: "setex", arity: 4, flags: flags!(WRITE, DENYOOM), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "string", "slow"], summary: "Set the value and expiration of a key", since: "2.0.0", group: "string", handler: setex },
    Command { name: "psetex", arity: 4, flags: flags!(WRITE, DENYOOM), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "string", "slow"], summary: "Set the value and expiration in milliseconds of a key", since: "2.6.0", group: "string", handler: psetex },
    Command { name: "mget", arity: -2, flags: flags!(READONLY, FAST), keys: KeySpec::ALL, gate: Gate::Shared, categories: &["read", "string", "fast"], summary: "Get the values of all the given keys", since: "1.0.0", group: "string", handler: mget },
    Command { name: "mset", arity: -3, flags: flags!(WRITE, DENYOOM), keys: KeySpec::new(1, -1, 2), gate: Gate::Shared, categories: &["write", "string", "slow"], summary: "Set multiple keys to multiple values", since: "1.0.1", group: "string", handler: mset },
    Command { name: "msetnx", arity: -3, flags: flags!(WRITE, DENYOOM), keys: KeySpec::new(1, -1, 2), gate: Gate::Shared, categories: &["write", "string", "slow"], summary: "Set multiple keys to multiple values, only if none of the keys exist", since: "1.0.1", group: "string", handler: msetnx },
    Command { name: "getset", arity: 3, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "string", "fast"], summary: "Set the string value of a key and return its old value", since: "1.0.0", group: "string", handler: getset },
    Command { name: "getdel", arity: 2, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "string", "fast"], summary: "Get the value of a key and delete the key", since: "6.2.0", group: "string", handler: getdel },
    Command { name: "getex", arity: -2, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "string", "fast"], summary: "Get the value of a key and optionally set its expiration", since: "6.2.0", group: "string", handler: getex },
    Command { name: "append", arity: 3, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "string", "fast"], summary: "Append a value to a key", since: "2.0.0", group: "string", handler: append },
    Command { name: "strlen", arity: 2, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "string", "fast"], summary: "Get the length of the value stored in a key", since: "2.2.0", group: "string", handler: strlen },
    Command { name: "getrange", arity: 4, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "string", "slow"], summary: "Get a substring of the string stored at a key", since: "2.4.0", group: "string", handler: getrange },
    Command { name: "substr", arity: 4, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "string", "slow"], summary: "Get a substring of the string stored at a key", since: "1.0.0", group: "string", handler: getrange },
    Command { name: "setrange", arity: 4, flags: flags!(WRITE, DENYOOM), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "string", "slow"], summary: "Overwrite part of a string at key starting at the specified offset", since: "2.2.0", group: "string", handler: setrange },
    Command { name: "incr", arity: 2, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "string", "fast"], summary: "Increment the integer value of a key by one", since: "1.0.0", group: "string", handler: incr },
    Command { name: "decr", arity: 2, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "string", "fast"], summary: "Decrement the integer value of a key by one", since: "1.0.0", group: "string", handler: decr },
    Command { name: "incrby", arity: 3, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "string", "fast"], summary: "Increment the integer value of a key by the given amount", since: "1.0.0", group: "string", handler: incrby },
    Command { name: "decrby", arity: 3, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "string", "fast"], summary: "Decrement the integer value of a key by the given number", since: "1.0.0", group: "string", handler: decrby },
    Command { name: "incrbyfloat", arity: 3, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "string", "fast"], summary: "Increment the float value of a key by the given amount", since: "2.6.0", group: "string", handler: incrbyfloat },
];

const OFFSET_OUT_OF_RANGE: &str = "ERR offset is out of range";
const TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
const NAN_OR_INFINITY: &str = "ERR increment would produce NaN or Infinity";
const DECREMENT_OVERFLOW: &str = "ERR decrement would overflow";
const INVALID_EXPIRE_SET: &str = "ERR invalid expire time in 'set' command";
const INVALID_EXPIRE_SETEX: &str = "ERR invalid expire time in 'setex' command";
const INVALID_EXPIRE_PSETEX: &str = "ERR invalid expire time in 'psetex' command";
const INVALID_EXPIRE_GETEX: &str = "ERR invalid expire time in 'getex' command";

/// The bytes of a string value, or None for a value of another type.
pub(crate) fn string_bytes(value: &Value) -> Option<&CompactBytes> {
    match value {
        Value::String(bytes) => Some(bytes),
        Value::List(_) | Value::Hash(_) | Value::Set(_) | Value::ZSet(_) | Value::Stream(_) => None,
    }
}

/// The bytes of a string value for changing, or None for a value of another type.
fn string_bytes_mut(value: &mut Value) -> Option<&mut CompactBytes> {
    match value {
        Value::String(bytes) => Some(bytes),
        Value::List(_) | Value::Hash(_) | Value::Set(_) | Value::ZSet(_) | Value::Stream(_) => None,
    }
}

/// Adds to the keyspace hit and miss counters in one go.
fn count_lookups(ctx: &Ctx<'_>, hits: u64, misses: u64) {
    let stats = &ctx.server.stats;
    if hits > 0 {
        stats.keyspace_hits.fetch_add(hits, Ordering::Relaxed);
    }
    if misses > 0 {
        stats.keyspace_misses.fetch_add(misses, Ordering::Relaxed);
    }
}

/// Reads `key` as Redis's `lookupKeyRead` + `checkType` do: counts a hit or a miss, then gives
/// the string (None if absent) or WRONGTYPE.
fn read_string(ctx: &Ctx<'_>, key: &[u8]) -> Reply<Option<CompactBytes>> {
    let found = {
        let guard = ctx.db().read(&[key], ctx.now_ms);
        guard
            .get(key)
            .map(|entry| string_bytes(entry.value()).cloned())
    };
    ctx.hit_or_miss(found.is_some(), key);
    found.map(|bytes| bytes.ok_or(reply::WRONGTYPE)).transpose()
}

/// The string at `key` under a write guard (an expired key is dropped on the way): None if
/// absent, WRONGTYPE for another type.
fn string_at(guard: &mut WriteGuard<'_>, key: &[u8]) -> Reply<Option<CompactBytes>> {
    guard
        .get(key)
        .map(|entry| string_bytes(entry.value()).cloned().ok_or(reply::WRONGTYPE))
        .transpose()
}

/// Replaces the value at `key` keeping its TTL, or creates the key without one: Redis's
/// `dbOverwrite` / `dbAdd` pair, used by the commands that compute a new value from the old.
fn overwrite(guard: &mut WriteGuard<'_>, key: &[u8], value: Value) {
    match guard.get_mut(key) {
        Some(mut entry) => {
            entry.replace_value(value);
        }
        None => {
            guard.set(key, value, None);
        }
    }
}

/// Redis's `checkStringLength`: a string may grow to `proto-max-bulk-len` bytes, no more.
fn check_length(ctx: &Ctx<'_>, size: usize, append: usize) -> Reply<usize> {
    let limit = ctx
        .server
        .tunables
        .proto_max_bulk_len
        .load(Ordering::Relaxed);
    size.checked_add(append)
        .filter(|total| u64::try_from(*total).is_ok_and(|total| total <= limit))
        .ok_or(TOO_LONG)
}

fn reply_value(ctx: &mut Ctx<'_>, value: Reply<Option<impl AsRef<[u8]>>>) {
    match value {
        Ok(Some(bytes)) => ctx.out.bulk(bytes.as_ref()),
        Ok(None) => ctx.out.null(),
        Err(msg) => ctx.out.error(msg),
    }
}

// ---------------------------------------------------------------------------------------------
// SET and its relatives.

/// How an EX/PX/EXAT/PXAT argument counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExpireUnit {
    Seconds,
    Millis,
    UnixSeconds,
    UnixMillis,
}

impl ExpireUnit {
    fn from_option(word: &[u8]) -> Option<ExpireUnit> {
        [
            ("ex", Self::Seconds),
            ("px", Self::Millis),
            ("exat", Self::UnixSeconds),
            ("pxat", Self::UnixMillis),
        ]
        .into_iter()
        .find_map(|(name, unit)| eq_ignore_case(word, name).then_some(unit))
    }
}

/// The options of SET and GETEX (Redis's `parseExtendedStringArgumentsOrReply`).
#[derive(Debug, Default)]
struct SetOptions<'a> {
    /// NX.
    if_absent: bool,
    /// XX.
    if_present: bool,
    /// GET: reply with the old value.
    get: bool,
    keep_ttl: bool,
    /// GETEX's PERSIST.
    persist: bool,
    expire: Option<(ExpireUnit, &'a [u8])>,
}

/// Parses SET's options (`for_set`) or GETEX's, with Redis's conflict rules: NX/XX exclude each
/// other, the four expiry forms exclude each other (repeating one is allowed, the last wins),
/// and KEEPTTL/PERSIST exclude any expiry. None means "ERR syntax error".
fn parse_options(args: &[Bytes], for_set: bool) -> Option<SetOptions<'_>> {
    let mut opts = SetOptions::default();
    let mut rest = args;
    while let Some((word, tail)) = rest.split_first() {
        rest = tail;
        let unit = ExpireUnit::from_option(word);
        let other_expiry = opts.expire.is_some_and(|(set, _)| Some(set) != unit);
        if for_set && eq_ignore_case(word, "nx") && !opts.if_present {
            opts.if_absent = true;
        } else if for_set && eq_ignore_case(word, "xx") && !opts.if_absent {
            opts.if_present = true;
        } else if for_set && eq_ignore_case(word, "get") {
            opts.get = true;
        } else if for_set && eq_ignore_case(word, "keepttl") && opts.expire.is_none() {
            opts.keep_ttl = true;
        } else if !for_set && eq_ignore_case(word, "persist") && opts.expire.is_none() {
            opts.persist = true;
        } else if let Some(unit) = unit
            && !opts.keep_ttl
            && !opts.persist
            && !other_expiry
            && let Some((value, tail)) = rest.split_first()
        {
            opts.expire = Some((unit, value));
            rest = tail;
        } else {
            return None;
        }
    }
    Some(opts)
}

/// The absolute expiry an EX/PX/EXAT/PXAT argument names, checked as Redis's
/// `getExpireMillisecondsOrReply` does: positive, and no overflow on the way to milliseconds.
/// `invalid` is the command's "invalid expire time" error.
fn expire_at_ms(unit: ExpireUnit, arg: &[u8], now_ms: u64, invalid: &'static str) -> Reply<u64> {
    let n = parse_i64(arg).ok_or(reply::NOT_INTEGER)?;
    let in_seconds = matches!(unit, ExpireUnit::Seconds | ExpireUnit::UnixSeconds);
    if n <= 0 || (in_seconds && n > i64::MAX / 1000) {
        return Err(invalid);
    }
    let ms = if in_seconds { n * 1000 } else { n };
    let at = match unit {
        ExpireUnit::Seconds | ExpireUnit::Millis => ms
            .checked_add(i64::try_from(now_ms).unwrap_or(i64::MAX))
            .ok_or(invalid)?,
        ExpireUnit::UnixSeconds | ExpireUnit::UnixMillis => ms,
    };
    u64::try_from(at).map_err(|_| invalid)
}

/// What [`set_generic`] did.
#[derive(Debug)]
struct SetOutcome {
    /// False when NX or XX stopped the write.
    written: bool,
    /// The old value, read only when the options asked for GET.
    old: Option<CompactBytes>,
}

/// Redis's `setGenericCommand` after option parsing: SET, SETNX, SETEX, PSETEX and GETSET.
/// An expiry at or before now is stored as it is, so the key is gone for every later reader,
/// as in Redis 7.0.
fn set_generic(
    ctx: &Ctx<'_>,
    key: &[u8],
    value: &[u8],
    opts: &SetOptions<'_>,
    expire_at_ms: Option<u64>,
) -> Reply<SetOutcome> {
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    // The old value is read only for GET: a plain SET never touches its memory (a cache miss
    // for a big value; during a snapshot the retained copy is then moved, not shared).
    let previous = guard.get(key).map(|entry| {
        let bytes = opts.get.then(|| string_bytes(entry.value()).cloned());
        (bytes, entry.expire_at_ms())
    });
    let mut old = None;
    if opts.get {
        ctx.hit_or_miss(previous.is_some(), key);
        if let Some((Some(bytes), _)) = &previous {
            old = Some(bytes.clone().ok_or(reply::WRONGTYPE)?);
        }
    }
    let found = previous.is_some();
    if (opts.if_absent && found) || (opts.if_present && !found) {
        return Ok(SetOutcome {
            written: false,
            old,
        });
    }
    let ttl = if opts.keep_ttl {
        previous.and_then(|(_, at)| at)
    } else {
        expire_at_ms
    };
    guard.set(key, Value::string(value), ttl);
    notify(ctx, STRING, "set", key);
    if expire_at_ms.is_some() && !opts.keep_ttl {
        notify(ctx, GENERIC, "expire", key);
    }
    Ok(SetOutcome { written: true, old })
}

fn get(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key] = argv else { return };
    let value = read_string(ctx, key);
    reply_value(ctx, value);
}

fn set(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, value, options @ ..] = argv else {
        return;
    };
    let Some(opts) = parse_options(options, true) else {
        ctx.out.error(reply::SYNTAX);
        return;
    };
    let expire_at = opts
        .expire
        .map(|(unit, arg)| expire_at_ms(unit, arg, ctx.now_ms, INVALID_EXPIRE_SET))
        .transpose();
    let outcome = expire_at.and_then(|at| {
        let outcome = set_generic(ctx, key, value, &opts, at)?;
        if let Some(at) = at {
            ctx.rewrite_effect(|| set_pxat(key, value, at));
        } else if opts.get {
            // Replicated without GET, as Redis's setGenericCommand propagates it.
            ctx.rewrite_effect(|| {
                argv.iter()
                    .enumerate()
                    .filter(|(idx, arg)| *idx < 3 || !eq_ignore_case(arg, "get"))
                    .map(|(_, arg)| arg.clone())
                    .collect()
            });
        }
        Ok(outcome)
    });
    match outcome {
        Ok(SetOutcome { old, .. }) if opts.get => reply_value(ctx, Ok(old)),
        Ok(SetOutcome { written: true, .. }) => ctx.out.ok(),
        Ok(SetOutcome { written: false, .. }) => ctx.out.null(),
        Err(msg) => ctx.out.error(msg),
    }
}

fn setnx(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, value] = argv else { return };
    let opts = SetOptions {
        if_absent: true,
        ..SetOptions::default()
    };
    let outcome = set_generic(ctx, key, value, &opts, None);
    reply_int(ctx, outcome.map(|outcome| i64::from(outcome.written)));
}

fn setex(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    set_with_expiry(ctx, argv, ExpireUnit::Seconds, INVALID_EXPIRE_SETEX);
}

fn psetex(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    set_with_expiry(ctx, argv, ExpireUnit::Millis, INVALID_EXPIRE_PSETEX);
}

/// SETEX and PSETEX: `<cmd> key ttl value`.
fn set_with_expiry(ctx: &mut Ctx<'_>, argv: &[Bytes], unit: ExpireUnit, invalid: &'static str) {
    let [_, key, ttl, value] = argv else { return };
    let outcome = expire_at_ms(unit, ttl, ctx.now_ms, invalid).and_then(|at| {
        set_generic(ctx, key, value, &SetOptions::default(), Some(at))?;
        ctx.rewrite_effect(|| set_pxat(key, value, at));
        Ok(())
    });
    match outcome {
        Ok(_) => ctx.out.ok(),
        Err(msg) => ctx.out.error(msg),
    }
}

/// The effect of a SET with an expiry: the absolute deadline, whatever form the command used,
/// so a replay at another time sets the same one (as Redis propagates it).
fn set_pxat(key: &[u8], value: &[u8], at: u64) -> Vec<Bytes> {
    crate::effects::argv(&[b"SET", key, value, b"PXAT", at.to_string().as_bytes()])
}

fn getset(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, value] = argv else { return };
    let opts = SetOptions {
        get: true,
        ..SetOptions::default()
    };
    let outcome = set_generic(ctx, key, value, &opts, None);
    // Replicated as SET, as Redis's getsetCommand propagates it.
    ctx.rewrite_effect(|| vec![Bytes::from_static(b"SET"), key.clone(), value.clone()]);
    reply_value(ctx, outcome.map(|outcome| outcome.old));
}

fn getdel(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key] = argv else { return };
    let value = {
        let mut guard = ctx.db().write(&[key], ctx.now_ms);
        let value = string_at(&mut guard, key);
        ctx.hit_or_miss(!matches!(value, Ok(None)), key);
        if let Ok(Some(_)) = value {
            guard.remove(key);
            notify(ctx, GENERIC, "del", key);
        }
        value
    };
    reply_value(ctx, value);
}

fn getex(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, options @ ..] = argv else { return };
    let Some(opts) = parse_options(options, false) else {
        ctx.out.error(reply::SYNTAX);
        return;
    };
    let value = getex_apply(ctx, key, &opts);
    // The effect, if GETEX changed anything: the deadline made absolute, or its removal.
    if opts.persist {
        ctx.rewrite_effect(|| crate::effects::argv(&[b"PERSIST", key]));
    } else if let Some((unit, arg)) = opts.expire
        && let Ok(at) = expire_at_ms(unit, arg, ctx.now_ms, INVALID_EXPIRE_GETEX)
    {
        let now_ms = ctx.now_ms;
        ctx.rewrite_effect(|| {
            if at <= now_ms {
                crate::effects::argv(&[b"DEL", key])
            } else {
                crate::effects::argv(&[b"PEXPIREAT", key, at.to_string().as_bytes()])
            }
        });
    }
    reply_value(ctx, value);
}

/// GETEX after option parsing. Like Redis, it looks the key up before validating the expiry,
/// so a missing key answers nil even to a bad expiry, and an EXAT/PXAT in the past deletes the
/// key after reading it.
fn getex_apply(ctx: &Ctx<'_>, key: &[u8], opts: &SetOptions<'_>) -> Reply<Option<CompactBytes>> {
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let value = string_at(&mut guard, key);
    ctx.hit_or_miss(!matches!(value, Ok(None)), key);
    let Some(value) = value? else { return Ok(None) };
    if let Some((unit, arg)) = opts.expire {
        let at = expire_at_ms(unit, arg, ctx.now_ms, INVALID_EXPIRE_GETEX)?;
        if at <= ctx.now_ms {
            guard.remove(key);
            notify(ctx, GENERIC, "del", key);
        } else if let Some(mut entry) = guard.get_mut(key) {
            entry.set_expire_at_ms(Some(at));
            notify(ctx, GENERIC, "expire", key);
        }
    } else if opts.persist
        && let Some(mut entry) = guard.get_mut(key)
        && entry.entry().expire_at_ms().is_some()
    {
        entry.set_expire_at_ms(None);
        notify(ctx, GENERIC, "persist", key);
    }
    Ok(Some(value))
}

// ---------------------------------------------------------------------------------------------
// Multi-key reads and writes.

fn mget(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let keys = ctx.key_args(argv);
    let found: Vec<Option<Option<CompactBytes>>> = {
        let guard = ctx.db().read(&keys, ctx.now_ms);
        keys.iter()
            .map(|key| {
                guard
                    .get(key)
                    .map(|entry| string_bytes(entry.value()).cloned())
            })
            .collect()
    };
    let hits = found.iter().filter(|value| value.is_some()).count() as u64;
    count_lookups(ctx, hits, found.len() as u64 - hits);
    ctx.out.array_len(found.len());
    for value in found {
        // A key of another type reads as nil, as in Redis.
        match value.flatten() {
            Some(bytes) => ctx.out.bulk(&bytes),
            None => ctx.out.null(),
        }
    }
}

/// The key/value pairs of MSET and MSETNX, or None when an argument is missing its partner.
fn pairs(argv: &[Bytes]) -> Option<Vec<(&[u8], &[u8])>> {
    let args = argv.get(1..).unwrap_or_default();
    if args.len() % 2 != 0 {
        return None;
    }
    Some(
        args.chunks_exact(2)
            .filter_map(|pair| match pair {
                [key, value] => Some((key.as_ref(), value.as_ref())),
                _ => None,
            })
            .collect(),
    )
}

/// MSET (`only_if_none_exist` false) and MSETNX. All keys are locked by one guard, so no client
/// sees some keys set and others not. Duplicate keys are set in order: the last value wins.
/// Returns false when MSETNX found a key already there.
fn mset_generic(ctx: &Ctx<'_>, pairs: &[(&[u8], &[u8])], only_if_none_exist: bool) -> bool {
    let keys: Vec<&[u8]> = pairs.iter().map(|(key, _)| *key).collect();
    let mut guard = ctx.db().write(&keys, ctx.now_ms);
    if only_if_none_exist && keys.iter().any(|key| guard.contains(key)) {
        return false;
    }
    for (key, value) in pairs {
        guard.set(key, Value::string(value), None);
        notify(ctx, STRING, "set", key);
    }
    true
}

fn mset(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(pairs) = pairs(argv) else {
        ctx.out
            .error("ERR wrong number of arguments for 'mset' command");
        return;
    };
    mset_generic(ctx, &pairs, false);
    ctx.out.ok();
}

fn msetnx(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(pairs) = pairs(argv) else {
        ctx.out
            .error("ERR wrong number of arguments for 'msetnx' command");
        return;
    };
    let written = mset_generic(ctx, &pairs, true);
    ctx.out.int(i64::from(written));
}

// ---------------------------------------------------------------------------------------------
// Substrings and in-place edits.

fn append(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, suffix] = argv else { return };
    let len = append_to(ctx, key, suffix);
    reply_int(ctx, len);
}

fn append_to(ctx: &Ctx<'_>, key: &[u8], suffix: &[u8]) -> Reply<i64> {
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let Some(mut entry) = guard.get_mut(key) else {
        // A new key takes the argument as it is; the protocol already bounded its length.
        guard.set(key, Value::string(suffix), None);
        notify(ctx, STRING, "append", key);
        return Ok(len_i64(suffix.len()));
    };
    let current_len = string_bytes(entry.value()).ok_or(reply::WRONGTYPE)?.len();
    let total = check_length(ctx, current_len, suffix.len())?;
    if let Some(bytes) = string_bytes_mut(entry.value_mut()) {
        bytes.edit(|buf| buf.extend_from_slice(suffix));
    }
    notify(ctx, STRING, "append", key);
    Ok(len_i64(total))
}

fn setrange(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, offset, patch] = argv else {
        return;
    };
    let len = match parse_i64(offset).map(usize::try_from) {
        None => Err(reply::NOT_INTEGER),
        Some(Err(_)) => Err(OFFSET_OUT_OF_RANGE),
        Some(Ok(offset)) => setrange_at(ctx, key, offset, patch),
    };
    reply_int(ctx, len);
}

/// SETRANGE with a valid offset: writes `patch` at `offset`, zero-padding as needed. An empty
/// patch changes nothing (and creates no key) but still reports the length.
fn setrange_at(ctx: &Ctx<'_>, key: &[u8], offset: usize, patch: &[u8]) -> Reply<i64> {
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let Some(mut entry) = guard.get_mut(key) else {
        if patch.is_empty() {
            return Ok(0);
        }
        let total = check_length(ctx, offset, patch.len())?;
        // Sized exactly, as Redis's new string: growing a zeroed prefix would double it.
        let mut buf = Vec::with_capacity(total);
        buf.resize(offset, 0);
        buf.extend_from_slice(patch);
        guard.set(key, Value::String(buf.into()), None);
        notify(ctx, STRING, "setrange", key);
        return Ok(len_i64(total));
    };
    let current_len = string_bytes(entry.value()).ok_or(reply::WRONGTYPE)?.len();
    if patch.is_empty() {
        return Ok(len_i64(current_len));
    }
    let end = check_length(ctx, offset, patch.len())?;
    let new_len = current_len.max(end);
    if let Some(bytes) = string_bytes_mut(entry.value_mut()) {
        bytes.edit(|buf| {
            buf.resize(new_len, 0);
            if let Some(target) = buf.get_mut(offset..end) {
                target.copy_from_slice(patch);
            }
        });
    }
    notify(ctx, STRING, "setrange", key);
    Ok(len_i64(new_len))
}

fn strlen(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key] = argv else { return };
    let len = read_string(ctx, key).map(|value| value.map_or(0, |bytes| len_i64(bytes.len())));
    reply_int(ctx, len);
}

/// GETRANGE and SUBSTR. A missing key reads as the empty string.
fn getrange(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, start, end] = argv else { return };
    let (Some(start), Some(end)) = (parse_i64(start), parse_i64(end)) else {
        ctx.out.error(reply::NOT_INTEGER);
        return;
    };
    match read_string(ctx, key) {
        Ok(value) => {
            let value = value.unwrap_or_default();
            let range = byte_range(value.len(), start, end);
            ctx.out
                .bulk(range.and_then(|range| value.get(range)).unwrap_or_default());
        }
        Err(msg) => ctx.out.error(msg),
    }
}

/// The bytes `start..=end` (negative counts from the end) of a string of `len` bytes, clamped
/// as Redis's `getrangeCommand` does; None when empty.
fn byte_range(len: usize, start: i64, end: i64) -> Option<Range<usize>> {
    if start < 0 && end < 0 && start > end {
        return None;
    }
    let len = len_i64(len);
    let start = if start < 0 { start + len } else { start }.max(0);
    let end = if end < 0 { end + len } else { end }.max(0).min(len - 1);
    if start > end || len == 0 {
        return None;
    }
    Some(usize::try_from(start).ok()?..usize::try_from(end).ok()? + 1)
}

// ---------------------------------------------------------------------------------------------
// Counters.

fn incr(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key] = argv else { return };
    let value = incr_by(ctx, key, 1);
    reply_int(ctx, value);
}

fn decr(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key] = argv else { return };
    let value = incr_by(ctx, key, -1);
    reply_int(ctx, value);
}

fn incrby(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, delta] = argv else { return };
    let value = parse_i64(delta)
        .ok_or(reply::NOT_INTEGER)
        .and_then(|delta| incr_by(ctx, key, delta));
    reply_int(ctx, value);
}

fn decrby(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, delta] = argv else { return };
    let value = parse_i64(delta)
        .ok_or(reply::NOT_INTEGER)
        .and_then(|delta| delta.checked_neg().ok_or(DECREMENT_OVERFLOW))
        .and_then(|delta| incr_by(ctx, key, delta));
    reply_int(ctx, value);
}

/// Adds `delta` to the integer at `key` (0 if absent), keeping its TTL. The stored text must be
/// a canonical 64-bit integer, as Redis's `string2ll` demands.
fn incr_by(ctx: &Ctx<'_>, key: &[u8], delta: i64) -> Reply<i64> {
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let current = match string_at(&mut guard, key)? {
        Some(bytes) => parse_i64(&bytes).ok_or(reply::NOT_INTEGER)?,
        None => 0,
    };
    let value = current.checked_add(delta).ok_or(reply::OVERFLOW)?;
    overwrite(
        &mut guard,
        key,
        Value::String(CompactBytes::from_slice(
            itoa::Buffer::new().format(value).as_bytes(),
        )),
    );
    notify(ctx, STRING, "incrby", key);
    Ok(value)
}

fn incrbyfloat(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, delta] = argv else { return };
    let value = incr_by_float(ctx, key, delta);
    // The sum's text, not the increment: replaying the arithmetic could round differently.
    if let Ok(text) = &value {
        ctx.rewrite_effect(|| crate::effects::argv(&[b"SET", key, text, b"KEEPTTL"]));
    }
    reply_value(ctx, value.map(Some));
}

/// Adds `delta` to the number at `key` in x87 `long double` arithmetic and stores Redis's text
/// for the result, keeping the TTL.
fn incr_by_float(ctx: &Ctx<'_>, key: &[u8], delta: &[u8]) -> Reply<Bytes> {
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let current = match string_at(&mut guard, key)? {
        Some(bytes) => long_double::parse(&bytes).ok_or(reply::NOT_FLOAT)?,
        None => long_double::LongDouble::from_i64(0),
    };
    let delta = long_double::parse(delta).ok_or(reply::NOT_FLOAT)?;
    let sum = current.add(delta);
    if !sum.is_finite() {
        return Err(NAN_OR_INFINITY);
    }
    let text = Bytes::from(sum.to_human());
    overwrite(&mut guard, key, Value::String(text.clone().into()));
    notify(ctx, STRING, "incrbyfloat", key);
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(words: &[&str], for_set: bool) -> Option<String> {
        let args: Vec<Bytes> = words
            .iter()
            .map(|word| Bytes::copy_from_slice(word.as_bytes()))
            .collect();
        parse_options(&args, for_set).map(|opts| format!("{opts:?}"))
    }

    #[test]
    fn option_conflicts_follow_redis() {
        for ok in [
            &["nx", "get"][..],
            &["xx", "xx"],
            &["ex", "1", "ex", "2"],
            &["keepttl", "nx"],
            &["GET", "get"],
        ] {
            assert!(opts(ok, true).is_some(), "{ok:?}");
        }
        for bad in [
            &["nx", "xx"][..],
            &["ex", "1", "px", "1"],
            &["keepttl", "ex", "1"],
            &["ex", "1", "keepttl"],
            &["ex"],
            &["persist"],
            &["exat", "1", "pxat", "1"],
            &["bogus"],
        ] {
            assert_eq!(opts(bad, true), None, "{bad:?}");
        }
        assert!(opts(&["persist"], false).is_some());
        for bad in [
            &["persist", "ex", "1"][..],
            &["ex", "1", "persist"],
            &["nx"],
            &["get"],
            &["keepttl"],
        ] {
            assert_eq!(opts(bad, false), None, "{bad:?}");
        }
    }

    #[test]
    fn expiry_arithmetic_matches_redis() {
        const BAD: &str = "bad";
        let now = 1_700_000_000_000;
        assert_eq!(
            expire_at_ms(ExpireUnit::Seconds, b"10", now, BAD),
            Ok(now + 10_000)
        );
        assert_eq!(expire_at_ms(ExpireUnit::UnixMillis, b"5", now, BAD), Ok(5));
        assert_eq!(expire_at_ms(ExpireUnit::Millis, b"0", now, BAD), Err(BAD));
        assert_eq!(expire_at_ms(ExpireUnit::Millis, b"-1", now, BAD), Err(BAD));
        assert_eq!(
            expire_at_ms(ExpireUnit::Millis, b"x", now, BAD),
            Err(reply::NOT_INTEGER)
        );
        assert_eq!(
            expire_at_ms(
                ExpireUnit::Millis,
                i64::MAX.to_string().as_bytes(),
                now,
                BAD
            ),
            Err(BAD)
        );
        assert_eq!(
            expire_at_ms(ExpireUnit::Seconds, b"9223372036854776", now, BAD),
            Err(BAD)
        );
        assert_eq!(
            expire_at_ms(ExpireUnit::UnixSeconds, b"9223372036854775", now, BAD),
            Ok(9_223_372_036_854_775_000)
        );
    }

    #[test]
    fn byte_ranges_clamp_like_getrange() {
        assert_eq!(byte_range(5, 0, -1), Some(0..5));
        assert_eq!(byte_range(5, -3, -1), Some(2..5));
        assert_eq!(byte_range(5, -1, -5), None);
        assert_eq!(byte_range(5, 0, -100), Some(0..1));
        assert_eq!(byte_range(5, 5, 10), None);
        assert_eq!(byte_range(0, 0, -1), None);
        assert_eq!(byte_range(5, i64::MIN, i64::MAX), Some(0..5));
    }
}
