//! Generic key commands: DEL UNLINK EXISTS TYPE TOUCH; the EXPIRE, TTL and EXPIRETIME families
//! and PERSIST; RENAME RENAMENX COPY MOVE; KEYS SCAN RANDOMKEY; OBJECT.
//!
//! Every command that names several keys locks them all through one guard (one `Db::write` or
//! `Db::read` call), so it is atomic to other clients and to the snapshot cut. COPY ... DB and
//! MOVE span two databases: they lock the lower-numbered database first (see [`lock_two_dbs`]),
//! the global lock order that `Keyspace::flush_all` and the snapshot cut follow.

use bytes::Bytes;
use forkless_storage::pattern::{glob_match, is_literal};
use forkless_storage::{Value, WriteGuard};

use super::meta::{Gate, KeySpec, flags};
use super::{Command, Ctx, eq_ignore_case, parse_i64, reply, unknown_subcommand};
use crate::config::MaxmemoryPolicy;
use crate::notify::{GENERIC, notify, notify_db};
use crate::server::Server;

#[rustfmt::skip] // One row per command reads as a table.
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "del", arity: -2, flags: flags!(WRITE), keys: KeySpec::ALL, gate: Gate::Shared, categories: &["keyspace", "write", "slow"], summary: "Delete a key", since: "1.0.0", group: "generic", handler: del },
    Command { name: "unlink", arity: -2, flags: flags!(WRITE, FAST), keys: KeySpec::ALL, gate: Gate::Shared, categories: &["keyspace", "write", "fast"], summary: "Delete a key asynchronously in another thread. Otherwise it is just as DEL, but non blocking.", since: "4.0.0", group: "generic", handler: unlink },
    Command { name: "exists", arity: -2, flags: flags!(READONLY, FAST), keys: KeySpec::ALL, gate: Gate::Shared, categories: &["keyspace", "read", "fast"], summary: "Determine if a key exists", since: "1.0.0", group: "generic", handler: exists },
    Command { name: "type", arity: 2, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["keyspace", "read", "fast"], summary: "Determine the type stored at key", since: "1.0.0", group: "generic", handler: type_ },
    Command { name: "touch", arity: -2, flags: flags!(READONLY, FAST), keys: KeySpec::ALL, gate: Gate::Shared, categories: &["keyspace", "read", "fast"], summary: "Alters the last access time of a key(s). Returns the number of existing keys specified.", since: "3.2.1", group: "generic", handler: touch },
    Command { name: "expire", arity: -3, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["keyspace", "write", "fast"], summary: "Set a key's time to live in seconds", since: "1.0.0", group: "generic", handler: expire },
    Command { name: "pexpire", arity: -3, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["keyspace", "write", "fast"], summary: "Set a key's time to live in milliseconds", since: "2.6.0", group: "generic", handler: pexpire },
    Command { name: "expireat", arity: -3, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["keyspace", "write", "fast"], summary: "Set the expiration for a key as a UNIX timestamp", since: "1.2.0", group: "generic", handler: expireat },
    Command { name: "pexpireat", arity: -3, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["keyspace", "write", "fast"], summary: "Set the expiration for a key as a UNIX timestamp specified in milliseconds", since: "2.6.0", group: "generic", handler: pexpireat },
    Command { name: "ttl", arity: 2, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["keyspace", "read", "fast"], summary: "Get the time to live for a key in seconds", since: "1.0.0", group: "generic", handler: ttl },
    Command { name: "pttl", arity: 2, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["keyspace", "read", "fast"], summary: "Get the time to live for a key in milliseconds", since: "2.6.0", group: "generic", handler: pttl },
    Command { name: "expiretime", arity: 2, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["keyspace", "read", "fast"], summary: "Get the expiration Unix timestamp for a key", since: "7.0.0", group: "generic", handler: expiretime },
    Command { name: "pexpiretime", arity: 2, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["keyspace", "read", "fast"], summary: "Get the expiration Unix timestamp for a key in milliseconds", since: "7.0.0", group: "generic", handler: pexpiretime },
    Command { name: "persist", arity: 2, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["keyspace", "write", "fast"], summary: "Remove the expiration from a key", since: "2.2.0", group: "generic", handler: persist },
    Command { name: "rename", arity: 3, flags: flags!(WRITE), keys: KeySpec::new(1, 2, 1), gate: Gate::Shared, categories: &["keyspace", "write", "slow"], summary: "Rename a key", since: "1.0.0", group: "generic", handler: rename },
    Command { name: "renamenx", arity: 3, flags: flags!(WRITE, FAST), keys: KeySpec::new(1, 2, 1), gate: Gate::Shared, categories: &["keyspace", "write", "fast"], summary: "Rename a key, only if the new key does not exist", since: "1.0.0", group: "generic", handler: renamenx },
    Command { name: "copy", arity: -3, flags: flags!(WRITE, DENYOOM), keys: KeySpec::new(1, 2, 1), gate: Gate::Shared, categories: &["keyspace", "write", "slow"], summary: "Copy a key", since: "6.2.0", group: "generic", handler: copy },
    Command { name: "move", arity: 3, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["keyspace", "write", "fast"], summary: "Move a key to another database", since: "1.0.0", group: "generic", handler: move_ },
    Command { name: "keys", arity: 2, flags: flags!(READONLY), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["keyspace", "read", "slow", "dangerous"], summary: "Find all keys matching the given pattern", since: "1.0.0", group: "generic", handler: keys },
    Command { name: "scan", arity: -2, flags: flags!(READONLY), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["keyspace", "read", "slow"], summary: "Incrementally iterate the keys space", since: "2.8.0", group: "generic", handler: scan },
    Command { name: "randomkey", arity: 1, flags: flags!(READONLY), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["keyspace", "read", "slow"], summary: "Return a random key from the keyspace", since: "1.0.0", group: "generic", handler: randomkey },
    Command { name: "object", arity: -2, flags: flags!(), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["slow"], summary: "A container for object introspection commands", since: "2.2.3", group: "generic", handler: object },
];

const SAME_OBJECT: &str = "ERR source and destination objects are the same";

/// Converts a count to a RESP integer.
fn count_reply(ctx: &mut Ctx<'_>, count: usize) {
    ctx.out.int(i64::try_from(count).unwrap_or(i64::MAX));
}

/// DEL and UNLINK: one guard over every key; a key named twice is removed (and counted) once.
/// forkless frees a removed value when the guard is gone, off the locks, so UNLINK needs no
/// background thread to stay cheap for the shard.
fn del(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let keys = ctx.key_args(argv);
    let mut guard = ctx.db().write(&keys, ctx.now_ms);
    let removed = keys
        .iter()
        .filter(|key| {
            let removed = guard.remove(key);
            if removed {
                notify(ctx, GENERIC, "del", key);
            }
            removed
        })
        .count();
    drop(guard);
    count_reply(ctx, removed);
}

/// Redis's `LAZYFREE_THRESHOLD`: a value that takes more allocations than this to free is
/// freed in the background by UNLINK.
const LAZYFREE_THRESHOLD: usize = 64;

/// UNLINK: DEL, with each value that is costly to free (more than [`LAZYFREE_THRESHOLD`]
/// allocations, as Redis's `lazyfreeGetFreeEffort` counts them) freed on a background thread
/// and counted in `lazyfreed_objects`; small ones are freed at once, as in Redis.
fn unlink(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let keys = ctx.key_args(argv);
    let mut guard = ctx.db().write(&keys, ctx.now_ms);
    let mut removed = 0;
    let mut costly = Vec::new();
    let mut cheap = Vec::new();
    for key in &keys {
        let Some(entry) = guard.take(key) else {
            continue;
        };
        removed += 1;
        notify(ctx, GENERIC, "del", key);
        if free_effort(entry.value()) > LAZYFREE_THRESHOLD {
            costly.push(entry);
        } else {
            cheap.push(entry);
        }
    }
    drop(guard);
    // Values are never freed under the shard locks.
    drop(cheap);
    for entry in costly {
        super::server::free_in_background(entry, 1);
    }
    count_reply(ctx, removed);
}

/// How many allocations freeing `value` takes, as Redis's `lazyfreeGetFreeEffort` estimates
/// it: a packed encoding is one; a list counts its chunks, a table or skiplist its elements,
/// a stream its nodes and its groups with their pending entries (the first group's PEL size
/// standing for every group's).
fn free_effort(value: &Value) -> usize {
    match value {
        Value::String(_) => 1,
        Value::List(list) => list.n_chunks(),
        Value::Set(set) if set.encoding() == "hashtable" => set.len(),
        Value::ZSet(zset) if zset.encoding() == "skiplist" => zset.len(),
        Value::Hash(hash) if hash.encoding() == "hashtable" => hash.len(),
        Value::Set(_) | Value::ZSet(_) | Value::Hash(_) => 1,
        Value::Stream(stream) => {
            let groups = stream.groups();
            let pel = groups
                .values()
                .next()
                .map_or(0, |group| group.pending.len());
            stream.node_count() + groups.len() * (1 + pel)
        }
    }
}

/// EXISTS and TOUCH: the number of named keys that exist, counting a key named twice twice.
/// TOUCH's access is the read itself, which updates the key's access clock.
/// EXISTS key [key ...]: not an access of the keys (Redis's LOOKUP_NOTOUCH, as TYPE and TTL).
fn exists(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    count_existing(ctx, argv, false);
}

/// TOUCH key [key ...]: EXISTS that counts as an access of each key.
fn touch(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    count_existing(ctx, argv, true);
}

fn count_existing(ctx: &mut Ctx<'_>, argv: &[Bytes], touching: bool) {
    let keys = ctx.key_args(argv);
    let guard = ctx.db().read(&keys, ctx.now_ms);
    let mut found = 0;
    for key in &keys {
        let hit = if touching {
            guard.get(key).is_some()
        } else {
            guard.peek(key).is_some()
        };
        ctx.hit_or_miss(hit, key);
        found += usize::from(hit);
    }
    drop(guard);
    count_reply(ctx, found);
}

fn type_(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(key) = argv.get(1) else { return };
    let guard = ctx.db().read(&[key], ctx.now_ms);
    let type_name = guard.peek(key).map(|entry| entry.value().type_name());
    drop(guard);
    ctx.hit_or_miss(type_name.is_some(), key);
    ctx.out.simple(type_name.unwrap_or("none").as_bytes());
}

// ---------------------------------------------------------------------------------------------
// Expiry.

/// The NX / XX / GT / LT condition of the EXPIRE family.
#[derive(Debug, Default, Clone, Copy)]
struct ExpireCondition {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

/// Why the options of an EXPIRE-family command are refused. Display gives Redis 7.0's reply.
#[derive(Debug, PartialEq, Eq)]
enum ExpireOptionError {
    /// An option other than NX, XX, GT, LT (as the client spelled it).
    Unsupported(String),
    /// NX together with XX, GT or LT.
    NxWithOthers,
    /// GT together with LT.
    GtWithLt,
}

impl std::fmt::Display for ExpireOptionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpireOptionError::Unsupported(option) => write!(f, "ERR Unsupported option {option}"),
            ExpireOptionError::NxWithOthers => {
                f.write_str("ERR NX and XX, GT or LT options at the same time are not compatible")
            }
            ExpireOptionError::GtWithLt => {
                f.write_str("ERR GT and LT options at the same time are not compatible")
            }
        }
    }
}

impl ExpireCondition {
    /// Parses the options after the time, as Redis 7.0's `parseExtendedExpireArgumentsOrReply`.
    fn parse(options: &[Bytes]) -> Result<ExpireCondition, ExpireOptionError> {
        let mut cond = ExpireCondition::default();
        for option in options {
            let flag = match option.to_ascii_lowercase().as_slice() {
                b"nx" => &mut cond.nx,
                b"xx" => &mut cond.xx,
                b"gt" => &mut cond.gt,
                b"lt" => &mut cond.lt,
                _ => {
                    return Err(ExpireOptionError::Unsupported(
                        String::from_utf8_lossy(option).into_owned(),
                    ));
                }
            };
            *flag = true;
        }
        if cond.nx && (cond.xx || cond.gt || cond.lt) {
            return Err(ExpireOptionError::NxWithOthers);
        }
        if cond.gt && cond.lt {
            return Err(ExpireOptionError::GtWithLt);
        }
        Ok(cond)
    }

    /// Returns true if and only if a key whose deadline is `current` (None: no TTL, which GT
    /// and LT treat as infinite) may get the deadline `when`.
    fn allows(self, current: Option<i64>, when: i64) -> bool {
        match current {
            None => !(self.xx || self.gt),
            Some(current) => {
                !(self.nx || (self.gt && when <= current) || (self.lt && when >= current))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Seconds,
    Millis,
}

fn expire(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    expire_generic(ctx, argv, "expire", true, Unit::Seconds);
}

fn pexpire(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    expire_generic(ctx, argv, "pexpire", true, Unit::Millis);
}

fn expireat(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    expire_generic(ctx, argv, "expireat", false, Unit::Seconds);
}

fn pexpireat(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    expire_generic(ctx, argv, "pexpireat", false, Unit::Millis);
}

/// The EXPIRE family, as Redis 7.0's `expireGenericCommand`: options are checked first, then the
/// time (its overflow is an error), then the key. A deadline not in the future deletes the key.
fn expire_generic(ctx: &mut Ctx<'_>, argv: &[Bytes], name: &str, relative: bool, unit: Unit) {
    let Some(key) = argv.get(1) else { return };
    let condition = match ExpireCondition::parse(argv.get(3..).unwrap_or_default()) {
        Ok(condition) => condition,
        Err(err) => return ctx.out.error(&err.to_string()),
    };
    let Some(time) = argv.get(2).and_then(|arg| parse_i64(arg)) else {
        return ctx.out.error(reply::NOT_INTEGER);
    };
    let now = i64::try_from(ctx.now_ms).unwrap_or(i64::MAX);
    let when = match unit {
        Unit::Seconds => time.checked_mul(1000),
        Unit::Millis => Some(time),
    };
    let Some(when) = when.and_then(|when| when.checked_add(if relative { now } else { 0 })) else {
        return ctx
            .out
            .error(&format!("ERR invalid expire time in '{name}' command"));
    };
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    // The new deadline, or None when it is not in the future and the key goes at once.
    let deadline = u64::try_from(when).ok().filter(|_| when > now);
    let changed = match guard.get_mut(key) {
        None => false,
        Some(mut entry) => {
            let current = entry
                .entry()
                .expire_at_ms()
                .map(|at| i64::try_from(at).unwrap_or(i64::MAX));
            let allowed = condition.allows(current, when);
            match deadline {
                Some(at) if allowed => {
                    entry.set_expire_at_ms(Some(at));
                    notify(ctx, GENERIC, "expire", key);
                }
                None if allowed => {
                    guard.remove(key);
                    notify(ctx, GENERIC, "del", key);
                }
                _ => {}
            }
            allowed
        }
    };
    drop(guard);
    // The effect states the outcome, not the arithmetic: the absolute deadline (the condition
    // held), or the deletion of a key whose deadline had passed.
    if changed {
        ctx.rewrite_effect(|| match deadline {
            Some(at) => crate::effects::argv(&[b"PEXPIREAT", key, at.to_string().as_bytes()]),
            None => crate::effects::argv(&[b"DEL", key]),
        });
    }
    ctx.out.int(i64::from(changed));
}

fn ttl(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    ttl_generic(ctx, argv, Unit::Seconds, false);
}

fn pttl(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    ttl_generic(ctx, argv, Unit::Millis, false);
}

fn expiretime(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    ttl_generic(ctx, argv, Unit::Seconds, true);
}

fn pexpiretime(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    ttl_generic(ctx, argv, Unit::Millis, true);
}

/// TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 for a missing key, -1 for a key without TTL, else the
/// remaining time (or the deadline when `absolute`), rounded to the nearest second in seconds.
fn ttl_generic(ctx: &mut Ctx<'_>, argv: &[Bytes], unit: Unit, absolute: bool) {
    let Some(key) = argv.get(1) else { return };
    let guard = ctx.db().read(&[key], ctx.now_ms);
    let found = guard.peek(key).map(forkless_storage::Entry::expire_at_ms);
    drop(guard);
    ctx.hit_or_miss(found.is_some(), key);
    let ms = match found {
        None => return ctx.out.int(-2),
        Some(None) => return ctx.out.int(-1),
        Some(Some(at)) if absolute => at,
        Some(Some(at)) => at.saturating_sub(ctx.now_ms),
    };
    // Rounded as Redis's `(ttl + 500) / 1000`, which its compiler evaluates without overflow even
    // for a deadline near i64::MAX.
    let value = match unit {
        Unit::Millis => ms,
        Unit::Seconds => ms / 1000 + u64::from(ms % 1000 >= 500),
    };
    ctx.out.int(i64::try_from(value).unwrap_or(i64::MAX));
}

fn persist(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(key) = argv.get(1) else { return };
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let persisted = match guard.get_mut(key) {
        Some(mut entry) if entry.entry().expire_at_ms().is_some() => {
            entry.set_expire_at_ms(None);
            notify(ctx, GENERIC, "persist", key);
            true
        }
        _ => false,
    };
    drop(guard);
    ctx.out.int(i64::from(persisted));
}

// ---------------------------------------------------------------------------------------------
// Renaming and copying.

fn rename(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    match rename_generic(ctx, argv, false) {
        Ok(_) => ctx.out.ok(),
        Err(msg) => ctx.out.error(msg),
    }
}

fn renamenx(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    match rename_generic(ctx, argv, true) {
        Ok(renamed) => ctx.out.int(i64::from(renamed)),
        Err(msg) => ctx.out.error(msg),
    }
}

/// RENAME and RENAMENX under one guard over both keys. The destination gets the source's value
/// and TTL (none if the source has none). Returns whether the key was renamed.
fn rename_generic(ctx: &Ctx<'_>, argv: &[Bytes], nx: bool) -> Result<bool, &'static str> {
    let (Some(src), Some(dst)) = (argv.get(1), argv.get(2)) else {
        return Ok(false);
    };
    let mut guard = ctx.db().write(&[src, dst], ctx.now_ms);
    if !guard.contains(src) {
        return Err(reply::NO_SUCH_KEY);
    }
    if src == dst || (nx && guard.contains(dst)) {
        return Ok(false);
    }
    let Some(entry) = guard.take(src) else {
        return Err(reply::NO_SUCH_KEY);
    };
    let (value, expire_at_ms) = entry.into_parts();
    // Redis deletes the destination before adding the key (`dbDelete`, `dbAdd`), so the
    // destination is always a new key (`new` notification).
    guard.remove(dst);
    guard.set(dst, value, expire_at_ms);
    notify(ctx, GENERIC, "rename_from", src);
    notify(ctx, GENERIC, "rename_to", dst);
    drop(guard);
    Ok(true)
}

/// Parses a database index argument as Redis's `getIntFromObjectOrReply` then `selectDb` do.
fn parse_db_index(ctx: &Ctx<'_>, arg: &[u8]) -> Result<usize, &'static str> {
    let index = parse_i64(arg).ok_or(reply::NOT_INTEGER)?;
    if i32::try_from(index).is_err() {
        return Err("ERR value is out of range, value must between -2147483648 and 2147483647");
    }
    usize::try_from(index)
        .ok()
        .filter(|index| ctx.server.keyspace.db(*index).is_some())
        .ok_or(reply::DB_INDEX_OUT_OF_RANGE)
}

/// Locks `keys_a` in database `a` and `keys_b` in database `b` (`a != b`), the lower-numbered
/// database first: the global lock order (`Keyspace::flush_all`, the snapshot cut), so two
/// cross-database commands cannot deadlock. The cut takes every shard lock, so it cannot fall
/// between the two guards: both are stamped with the same epoch and the pair is one instant.
/// Returns the guards in argument order.
pub(crate) fn lock_two_dbs<'s>(
    server: &'s Server,
    (a, keys_a): (usize, &[&[u8]]),
    (b, keys_b): (usize, &[&[u8]]),
    now_ms: u64,
) -> (WriteGuard<'s>, WriteGuard<'s>) {
    debug_assert_ne!(a, b, "two guards on one database deadlock");
    if a < b {
        let guard_a = server.db(a).write(keys_a, now_ms);
        (guard_a, server.db(b).write(keys_b, now_ms))
    } else {
        let guard_b = server.db(b).write(keys_b, now_ms);
        (server.db(a).write(keys_a, now_ms), guard_b)
    }
}

/// COPY source destination [DB index] [REPLACE].
fn copy(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let (Some(src), Some(dst)) = (argv.get(1), argv.get(2)) else {
        return;
    };
    let mut replace = false;
    let mut dst_db = ctx.client.db;
    let mut options = argv.get(3..).unwrap_or_default().iter();
    while let Some(option) = options.next() {
        if eq_ignore_case(option, "replace") {
            replace = true;
        } else if let Some(index) = options
            .as_slice()
            .first()
            .filter(|_| eq_ignore_case(option, "db"))
        {
            options.next();
            match parse_db_index(ctx, index) {
                Ok(index) => dst_db = index,
                Err(msg) => return ctx.out.error(msg),
            }
        } else {
            return ctx.out.error(reply::SYNTAX);
        }
    }
    let src_db = ctx.client.db;
    if src_db == dst_db && src == dst {
        return ctx.out.error(SAME_OBJECT);
    }
    let (src, dst): (&[u8], &[u8]) = (src, dst);
    let copied = if src_db == dst_db {
        let mut guard = ctx.db().write(&[src, dst], ctx.now_ms);
        copy_entry(&mut guard, None, src, dst, replace)
    } else {
        let (mut src_guard, mut dst_guard) =
            lock_two_dbs(ctx.server, (src_db, &[src]), (dst_db, &[dst]), ctx.now_ms);
        copy_entry(&mut src_guard, Some(&mut dst_guard), src, dst, replace)
    };
    if copied == Some(true) {
        notify_db(ctx.server, GENERIC, "copy_to", dst, dst_db);
    }
    ctx.hit_or_miss(copied.is_some(), src);
    // `dispatch` wakes the waiters of this database's keys; another database's are ours to wake.
    if copied == Some(true) && dst_db != src_db {
        ctx.server.blocking.signal(dst_db, dst);
    }
    ctx.out.int(i64::from(copied.unwrap_or(false)));
}

/// Copies `src` (value and TTL) to `dst` in the database of `dst_guard`, or of `src_guard` when
/// there is none. Returns None if `src` does not exist, else whether it was copied.
fn copy_entry<'g>(
    src_guard: &mut WriteGuard<'g>,
    dst_guard: Option<&mut WriteGuard<'g>>,
    src: &[u8],
    dst: &[u8],
    replace: bool,
) -> Option<bool> {
    let entry = src_guard.get(src)?.clone();
    let dst_guard = dst_guard.unwrap_or(src_guard);
    if !replace && dst_guard.contains(dst) {
        return Some(false);
    }
    let (value, expire_at_ms) = entry.into_parts();
    // As Redis's `dbDelete` + `dbAdd`: the destination is always a new key (`new`).
    dst_guard.remove(dst);
    dst_guard.set(dst, value, expire_at_ms);
    Some(true)
}

/// MOVE key db: the key, with its TTL, leaves this database for `db` unless `db` already has it.
fn move_(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let (Some(key), Some(index)) = (argv.get(1), argv.get(2)) else {
        return;
    };
    let dst_db = match parse_db_index(ctx, index) {
        Ok(index) => index,
        Err(msg) => return ctx.out.error(msg),
    };
    let src_db = ctx.client.db;
    if src_db == dst_db {
        return ctx.out.error(SAME_OBJECT);
    }
    let key: &[u8] = key;
    let (mut src_guard, mut dst_guard) =
        lock_two_dbs(ctx.server, (src_db, &[key]), (dst_db, &[key]), ctx.now_ms);
    let moved = src_guard.contains(key) && !dst_guard.contains(key);
    if moved && let Some(entry) = src_guard.take(key) {
        let (value, expire_at_ms) = entry.into_parts();
        dst_guard.set(key, value, expire_at_ms);
        notify_db(ctx.server, GENERIC, "move_from", key, src_db);
        notify_db(ctx.server, GENERIC, "move_to", key, dst_db);
    }
    drop((src_guard, dst_guard));
    // The key gained data in `dst_db`, whose waiters `dispatch` does not know about.
    if moved {
        ctx.server.blocking.signal(dst_db, key);
    }
    ctx.out.int(i64::from(moved));
}

// ---------------------------------------------------------------------------------------------
// Iteration.

/// KEYS pattern: one consistent view under every shard lock. A pattern without metacharacters
/// can only match itself, so it is looked up directly instead of walking the database.
fn keys(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(pattern) = argv.get(1) else { return };
    let db = ctx.db();
    let found = if is_literal(pattern) {
        let guard = db.read(&[pattern], ctx.now_ms);
        let found = guard.get(pattern).is_some();
        drop(guard);
        if found {
            vec![Bytes::copy_from_slice(pattern)]
        } else {
            Vec::new()
        }
    } else if pattern.as_ref() == b"*" {
        // As in Redis, `*` matches every key, even the empty one that the matcher would reject.
        db.keys(ctx.now_ms, |_| true)
    } else {
        db.keys(ctx.now_ms, |key| glob_match(pattern, key, false))
    };
    ctx.out.array_len(found.len());
    for key in &found {
        ctx.out.bulk(key);
    }
}

/// Parses a SCAN cursor as Redis's `parseScanCursorOrReply`, which uses `strtoul`: an optional
/// sign (a minus negates modulo 2^64), decimal digits (none at all reads as 0), nothing after
/// them, no leading space, and no overflow.
pub(crate) fn parse_scan_cursor(arg: &[u8]) -> Option<u64> {
    let (negative, digits) = match arg.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, arg),
    };
    // A lone sign is no number: strtoul leaves its end pointer on the sign.
    if digits.is_empty() && digits.len() != arg.len() {
        return None;
    }
    let mut cursor: u64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        cursor = cursor
            .checked_mul(10)?
            .checked_add(u64::from(byte - b'0'))?;
    }
    Some(if negative {
        cursor.wrapping_neg()
    } else {
        cursor
    })
}

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]. The cursor is the storage's scan
/// position (see `Db::scan`), sent as a bulk string as Redis does.
fn scan(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(cursor) = argv.get(1).and_then(|arg| parse_scan_cursor(arg)) else {
        return ctx.out.error("ERR invalid cursor");
    };
    let mut count = 10;
    let mut pattern: Option<&[u8]> = None;
    let mut type_filter: Option<&[u8]> = None;
    let mut options = argv.get(2..).unwrap_or_default().chunks(2);
    for pair in &mut options {
        let [option, value] = pair else {
            return ctx.out.error(reply::SYNTAX);
        };
        if eq_ignore_case(option, "count") {
            match parse_i64(value) {
                Some(n) if n >= 1 => count = usize::try_from(n).unwrap_or(usize::MAX),
                Some(_) => return ctx.out.error(reply::SYNTAX),
                None => return ctx.out.error(reply::NOT_INTEGER),
            }
        } else if eq_ignore_case(option, "match") {
            // The pattern `*` is not used at all, so it matches the empty key too.
            pattern = Some(value)
                .filter(|pattern| pattern.as_ref() != b"*")
                .map(|p| &p[..]);
        } else if eq_ignore_case(option, "type") {
            type_filter = Some(value);
        } else {
            return ctx.out.error(reply::SYNTAX);
        }
    }
    // As in Redis, COUNT is how many keys to look at (before MATCH and TYPE filter them), and
    // one call goes on until it has looked at that many or the scan is over. `Db::scan` stops at
    // the end of a shard, so the steps are repeated; each one moves the cursor forward.
    let db = ctx.db();
    let mut n_looked_at = 0usize;
    let mut found = Vec::new();
    let mut next = cursor;
    loop {
        let wanted = count.saturating_sub(n_looked_at);
        let (step_next, keys) = db.scan(next, wanted, ctx.now_ms, |key, entry| {
            n_looked_at += 1;
            pattern.is_none_or(|pattern| glob_match(pattern, key, false))
                && type_filter
                    .is_none_or(|wanted| eq_ignore_case(wanted, entry.value().type_name()))
        });
        found.extend(keys);
        let moved_on = step_next > next;
        next = step_next;
        if next == 0 || n_looked_at >= count || !moved_on {
            break;
        }
    }
    ctx.out.array_len(2);
    let mut digits = itoa::Buffer::new();
    ctx.out.bulk(digits.format(next).as_bytes());
    ctx.out.array_len(found.len());
    for key in &found {
        ctx.out.bulk(key);
    }
}

fn randomkey(ctx: &mut Ctx<'_>, _argv: &[Bytes]) {
    match ctx.db().random_key(ctx.now_ms) {
        Some(key) => ctx.out.bulk(&key),
        None => ctx.out.null(),
    }
}

// ---------------------------------------------------------------------------------------------
// OBJECT.

const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

/// Redis's `OBJ_SHARED_REFCOUNT`: the refcount reported for shared integer objects.
const SHARED_REFCOUNT: i64 = i32::MAX as i64;
/// Redis shares the integer objects 0..OBJ_SHARED_INTEGERS.
const SHARED_INTEGERS: i64 = 10_000;

fn object(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(sub) = argv.get(1) else { return };
    let sub = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let wanted_argc = match sub.as_str() {
        "help" => 2,
        "encoding" | "freq" | "idletime" | "refcount" => 3,
        _ => return unknown_subcommand(ctx, argv),
    };
    if argv.len() != wanted_argc {
        return ctx.out.error(&format!(
            "ERR wrong number of arguments for 'object|{sub}' command"
        ));
    }
    let Some(key) = argv.get(2) else {
        ctx.out.array_len(OBJECT_HELP.len());
        for line in OBJECT_HELP {
            ctx.out.simple(line.as_bytes());
        }
        return;
    };
    // OBJECT reads without touching the key's access clock (Redis's LOOKUP_NOTOUCH).
    let guard = ctx.db().read(&[key], ctx.now_ms);
    let Some((value, clock)) = guard
        .peek(key)
        .map(|entry| (entry.value().clone(), entry.access_clock()))
    else {
        drop(guard);
        ctx.miss(key);
        return ctx.out.null();
    };
    drop(guard);
    ctx.hit();
    let (policy, maxmemory) = {
        let config = ctx.server.config();
        (config.maxmemory_policy, config.maxmemory)
    };
    let lfu = matches!(
        policy,
        MaxmemoryPolicy::AllkeysLfu | MaxmemoryPolicy::VolatileLfu
    );
    match sub.as_str() {
        "encoding" => ctx.out.bulk(value.encoding().as_bytes()),
        "refcount" => ctx.out.int(refcount(&value, policy, maxmemory)),
        // The key's access clock (`forkless_storage::access`) counts seconds under LRU and the
        // logarithmic counter under LFU; each subcommand is Redis's error under the other.
        "idletime" if lfu => ctx.out.error(
            "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when \
             switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ),
        "freq" if !lfu => ctx.out.error(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note \
             that when switching between policies at runtime LRU and LFU data will take some time \
             to adjust.",
        ),
        "idletime" => ctx.out.int(
            i64::try_from(forkless_storage::access::idle_secs(clock, ctx.now_ms)).unwrap_or(0),
        ),
        "freq" => ctx.out.int(i64::from(forkless_storage::access::decayed_counter(
            clock, ctx.now_ms,
        ))),
        _ => ctx.out.int(0),
    }
}

/// What Redis 7.0 reports as a value's refcount: integers 0..10000 stored as `int` are shared
/// objects (refcount `INT_MAX`) unless maxmemory is set with an LRU/LFU policy, which disables
/// sharing; every other value has one reference. Redis decides this when the value is stored;
/// forkless decides from the current configuration.
fn refcount(value: &Value, policy: MaxmemoryPolicy, maxmemory: u64) -> i64 {
    let sharing = maxmemory == 0
        || !matches!(
            policy,
            MaxmemoryPolicy::AllkeysLru
                | MaxmemoryPolicy::AllkeysLfu
                | MaxmemoryPolicy::VolatileLru
                | MaxmemoryPolicy::VolatileLfu
        );
    let shared_int = match value {
        Value::String(bytes) => {
            value.encoding() == "int"
                && parse_i64(bytes).is_some_and(|n| (0..SHARED_INTEGERS).contains(&n))
        }
        Value::List(_) | Value::Hash(_) | Value::Set(_) | Value::ZSet(_) | Value::Stream(_) => {
            false
        }
    };
    if sharing && shared_int {
        SHARED_REFCOUNT
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_cursor_parses_like_strtoul() {
        assert_eq!(parse_scan_cursor(b"0"), Some(0));
        assert_eq!(parse_scan_cursor(b""), Some(0));
        assert_eq!(parse_scan_cursor(b"+7"), Some(7));
        assert_eq!(parse_scan_cursor(b"-0"), Some(0));
        assert_eq!(parse_scan_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_scan_cursor(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_scan_cursor(b"-18446744073709551615"), Some(1));
        for bad in [
            &b"18446744073709551616"[..],
            b" 0",
            b"0 ",
            b"abc",
            b"1x",
            b"--1",
            b"0x10",
            b"-",
            b"+",
        ] {
            assert_eq!(
                parse_scan_cursor(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn expire_conditions_follow_redis_7_0() {
        let cond = |opts: &[&str]| {
            let opts: Vec<Bytes> = opts
                .iter()
                .map(|o| Bytes::copy_from_slice(o.as_bytes()))
                .collect();
            ExpireCondition::parse(&opts)
        };
        let none = cond(&[]).unwrap();
        assert!(none.allows(None, 5) && none.allows(Some(10), 5));
        let nx = cond(&["nx"]).unwrap();
        assert!(nx.allows(None, 5) && !nx.allows(Some(10), 5));
        let xx = cond(&["XX"]).unwrap();
        assert!(!xx.allows(None, 5) && xx.allows(Some(10), 5));
        let gt = cond(&["gt"]).unwrap();
        assert!(!gt.allows(None, 5) && !gt.allows(Some(10), 10) && gt.allows(Some(10), 11));
        let lt = cond(&["lt"]).unwrap();
        assert!(lt.allows(None, 5) && !lt.allows(Some(10), 10) && lt.allows(Some(10), 9));
        let xx_gt = cond(&["xx", "gt"]).unwrap();
        assert!(!xx_gt.allows(None, 5) && xx_gt.allows(Some(1), 5));
        assert_eq!(
            cond(&["nx", "lt"]).unwrap_err().to_string(),
            "ERR NX and XX, GT or LT options at the same time are not compatible"
        );
        assert_eq!(
            cond(&["gt", "lt"]).unwrap_err().to_string(),
            "ERR GT and LT options at the same time are not compatible"
        );
        assert_eq!(
            cond(&["nx", "foo"]).unwrap_err().to_string(),
            "ERR Unsupported option foo"
        );
    }

    #[test]
    fn refcount_reports_shared_integers() {
        let noeviction = MaxmemoryPolicy::Noeviction;
        assert_eq!(
            refcount(&Value::string(b"100"), noeviction, 0),
            SHARED_REFCOUNT
        );
        assert_eq!(
            refcount(&Value::string(b"9999"), noeviction, 0),
            SHARED_REFCOUNT
        );
        assert_eq!(refcount(&Value::string(b"10000"), noeviction, 0), 1);
        assert_eq!(refcount(&Value::string(b"-1"), noeviction, 0), 1);
        assert_eq!(refcount(&Value::string(b"00"), noeviction, 0), 1);
        assert_eq!(
            refcount(&Value::string(b"5"), MaxmemoryPolicy::AllkeysLru, 1 << 20),
            1
        );
        assert_eq!(
            refcount(&Value::string(b"5"), MaxmemoryPolicy::AllkeysLru, 0),
            SHARED_REFCOUNT
        );
    }
}
