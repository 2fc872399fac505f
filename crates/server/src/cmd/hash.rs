//! Hash commands: HSET HSETNX HMSET HGET HMGET HDEL HLEN HEXISTS HSTRLEN HKEYS HVALS HGETALL
//! HINCRBY HINCRBYFLOAT HRANDFIELD HSCAN.
//!
//! They follow Redis 7.0's `t_hash.c`: reads count keyspace hits and misses, writes do not; the
//! order of checks (argument parsing before the key lookup or after) is Redis's, because it
//! decides which error a client sees. A command that removes the last field removes the key.
//! A change goes through `Arc::make_mut` on the value of a write guard's entry, and only once
//! the command knows it changes something (a no-op never stamps the key or copies a hash a
//! snapshot retains).
//!
//! Helpers shared with the other collection groups: [`parse_scan_options`],
//! [`scan_reply_header`], [`parse_random_count`], [`check_repeat_limit`], [`sample_distinct`].

use bytes::Bytes;
use forkless_storage::pattern::glob_match;
use forkless_storage::types::Element;
use forkless_storage::types::hash::Hash;
use rand::Rng;

use super::access::{Collection, Reply, len_i64};
use super::keys::parse_scan_cursor;
use super::meta::{Gate, KeySpec, flags};
use super::string::long_double;
use super::{Command, Ctx, eq_ignore_case, parse_i64, reply};

#[rustfmt::skip] // One row per command reads as a table.
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "hset", arity: -4, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "hash", "fast"], summary: "Set the string value of a hash field", since: "2.0.0", group: "hash", handler: hset },
    Command { name: "hsetnx", arity: 4, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "hash", "fast"], summary: "Set the value of a hash field, only if the field does not exist", since: "2.0.0", group: "hash", handler: hsetnx },
    Command { name: "hget", arity: 3, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "hash", "fast"], summary: "Get the value of a hash field", since: "2.0.0", group: "hash", handler: hget },
    Command { name: "hmget", arity: -3, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "hash", "fast"], summary: "Get the values of all the given hash fields", since: "2.0.0", group: "hash", handler: hmget },
    Command { name: "hmset", arity: -4, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "hash", "fast"], summary: "Set multiple hash fields to multiple values", since: "2.0.0", group: "hash", handler: hset },
    Command { name: "hdel", arity: -3, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "hash", "fast"], summary: "Delete one or more hash fields", since: "2.0.0", group: "hash", handler: hdel },
    Command { name: "hlen", arity: 2, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "hash", "fast"], summary: "Get the number of fields in a hash", since: "2.0.0", group: "hash", handler: hlen },
    Command { name: "hexists", arity: 3, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "hash", "fast"], summary: "Determine if a hash field exists", since: "2.0.0", group: "hash", handler: hexists },
    Command { name: "hkeys", arity: 2, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "hash", "slow"], summary: "Get all the fields in a hash", since: "2.0.0", group: "hash", handler: hkeys },
    Command { name: "hvals", arity: 2, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "hash", "slow"], summary: "Get all the values in a hash", since: "2.0.0", group: "hash", handler: hvals },
    Command { name: "hgetall", arity: 2, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "hash", "slow"], summary: "Get all the fields and values in a hash", since: "2.0.0", group: "hash", handler: hgetall },
    Command { name: "hincrby", arity: 4, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "hash", "fast"], summary: "Increment the integer value of a hash field by the given number", since: "2.0.0", group: "hash", handler: hincrby },
    Command { name: "hincrbyfloat", arity: 4, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "hash", "fast"], summary: "Increment the float value of a hash field by the given amount", since: "2.6.0", group: "hash", handler: hincrbyfloat },
    Command { name: "hstrlen", arity: 3, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "hash", "fast"], summary: "Get the length of the value of a hash field", since: "3.2.0", group: "hash", handler: hstrlen },
    Command { name: "hrandfield", arity: -2, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "hash", "slow"], summary: "Get one or multiple random fields from a hash", since: "6.2.0", group: "hash", handler: hrandfield },
    Command { name: "hscan", arity: -3, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "hash", "slow"], summary: "Incrementally iterate hash fields and associated values", since: "2.8.0", group: "hash", handler: hscan },
];

const NOT_INTEGER_FIELD: &str = "ERR hash value is not an integer";
const NOT_FLOAT_FIELD: &str = "ERR hash value is not a float";
const NAN_OR_INFINITY_INCREMENT: &str = "ERR value is NaN or Infinity";
const NAN_OR_INFINITY_RESULT: &str = "ERR increment would produce NaN or Infinity";
const RANDOM_COUNT_RANGE: &str =
    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807";
const OUT_OF_RANGE: &str = "ERR value is out of range";
/// The most elements a negative-count HRANDFIELD or SRANDMEMBER replies with. Redis has no
/// limit and builds the whole reply in memory (a count near -2^62 takes it down); forkless
/// refuses counts whose reply could not fit in memory with Redis's "out of range" error.
pub(crate) const MAX_REPEATED_RANDOM: u64 = 1 << 24;

fn copy(arg: &[u8]) -> Bytes {
    Bytes::copy_from_slice(arg)
}

/// HSET and HMSET: pairs after the key; HSET replies with the number of new fields, HMSET OK.
fn hset(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [name, key, pairs @ ..] = argv else {
        return;
    };
    if pairs.len() % 2 != 0 {
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        return ctx.out.error(&format!(
            "ERR wrong number of arguments for '{name}' command"
        ));
    }
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    if let Err(msg) = Hash::at_key(&mut guard, key) {
        return ctx.out.error(msg);
    }
    let created = Hash::upsert_key(&mut guard, key, |hash| {
        pairs
            .chunks_exact(2)
            .filter(|pair| match pair {
                [field, value] => hash.insert(copy(field), copy(value)),
                _ => false,
            })
            .count()
    });
    drop(guard);
    if eq_ignore_case(name, "hmset") {
        ctx.out.ok();
    } else {
        ctx.out.int(len_i64(created));
    }
}

fn hsetnx(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, field, value] = argv else { return };
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let exists = match Hash::at_key(&mut guard, key) {
        Err(msg) => return ctx.out.error(msg),
        Ok(hash) => hash.is_some_and(|hash| hash.contains(field)),
    };
    if !exists {
        Hash::upsert_key(&mut guard, key, |hash| {
            hash.insert(copy(field), copy(value))
        });
    }
    drop(guard);
    ctx.out.int(i64::from(!exists));
}

fn hget(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, field] = argv else { return };
    Hash::read_key(ctx, key, |ctx, hash| {
        match hash.and_then(|hash| hash.get(field)) {
            Some(value) => ctx.out.bulk(&value),
            None => ctx.out.null(),
        }
    });
}

fn hmget(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, fields @ ..] = argv else { return };
    Hash::read_key(ctx, key, |ctx, hash| {
        ctx.out.array_len(fields.len());
        for field in fields {
            match hash.and_then(|hash| hash.get(field)) {
                Some(value) => ctx.out.bulk(&value),
                None => ctx.out.null(),
            }
        }
    });
}

fn hdel(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, fields @ ..] = argv else { return };
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let any = match Hash::at_key(&mut guard, key) {
        Err(msg) => return ctx.out.error(msg),
        Ok(None) => false,
        Ok(Some(hash)) => fields.iter().any(|field| hash.contains(field)),
    };
    let deleted = if any {
        // Removing the last field removes the key.
        Hash::change_key(&mut guard, key, |hash| {
            fields.iter().filter(|field| hash.remove(field)).count()
        })
        .unwrap_or(0)
    } else {
        0
    };
    drop(guard);
    ctx.out.int(len_i64(deleted));
}

fn hlen(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key] = argv else { return };
    Hash::read_key(ctx, key, |ctx, hash| {
        ctx.out.int(len_i64(hash.map_or(0, Hash::len)));
    });
}

fn hexists(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, field] = argv else { return };
    Hash::read_key(ctx, key, |ctx, hash| {
        ctx.out
            .int(i64::from(hash.is_some_and(|hash| hash.contains(field))));
    });
}

fn hstrlen(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, field] = argv else { return };
    Hash::read_key(ctx, key, |ctx, hash| {
        let len = hash
            .and_then(|hash| hash.get(field))
            .map_or(0, |value| value.len());
        ctx.out.int(len_i64(len));
    });
}

/// What HKEYS, HVALS and HGETALL reply with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parts {
    Fields,
    Values,
    Both,
}

fn hgetall_generic(ctx: &mut Ctx<'_>, argv: &[Bytes], parts: Parts) {
    let [_, key] = argv else { return };
    Hash::read_key(ctx, key, |ctx, hash| {
        let len = hash.map_or(0, Hash::len);
        if parts == Parts::Both {
            ctx.out.map_len(len);
        } else {
            ctx.out.array_len(len);
        }
        for (field, value) in hash.into_iter().flat_map(Hash::iter) {
            if parts != Parts::Values {
                ctx.out.bulk(&field);
            }
            if parts != Parts::Fields {
                ctx.out.bulk(&value);
            }
        }
    });
}

fn hkeys(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    hgetall_generic(ctx, argv, Parts::Fields);
}

fn hvals(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    hgetall_generic(ctx, argv, Parts::Values);
}

fn hgetall(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    hgetall_generic(ctx, argv, Parts::Both);
}

fn hincrby(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, field, delta] = argv else { return };
    let Some(delta) = parse_i64(delta) else {
        return ctx.out.error(reply::NOT_INTEGER);
    };
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let sum = Hash::at_key(&mut guard, key).and_then(|hash| {
        let current = match hash.and_then(|hash| hash.get(field)) {
            Some(text) => parse_i64(&text).ok_or(NOT_INTEGER_FIELD)?,
            None => 0,
        };
        current.checked_add(delta).ok_or(reply::OVERFLOW)
    });
    match sum {
        Ok(sum) => {
            let mut digits = itoa::Buffer::new();
            let text = copy(digits.format(sum).as_bytes());
            Hash::upsert_key(&mut guard, key, |hash| hash.insert(copy(field), text));
            drop(guard);
            ctx.out.int(sum);
        }
        Err(msg) => ctx.out.error(msg),
    }
}

/// HINCRBYFLOAT in Redis's x87 `long double` arithmetic (shared with INCRBYFLOAT).
fn hincrbyfloat(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, field, delta] = argv else { return };
    let Some(delta) = long_double::parse(delta) else {
        return ctx.out.error(reply::NOT_FLOAT);
    };
    if !delta.is_finite() {
        return ctx.out.error(NAN_OR_INFINITY_INCREMENT);
    }
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let sum = Hash::at_key(&mut guard, key).and_then(|hash| {
        let current = match hash.and_then(|hash| hash.get(field)) {
            Some(text) => long_double::parse(&text).ok_or(NOT_FLOAT_FIELD)?,
            None => long_double::LongDouble::from_i64(0),
        };
        let sum = current.add(delta);
        if sum.is_finite() {
            Ok(Bytes::from(sum.to_human()))
        } else {
            Err(NAN_OR_INFINITY_RESULT)
        }
    });
    match sum {
        Ok(text) => {
            Hash::upsert_key(&mut guard, key, |hash| {
                hash.insert(copy(field), text.clone())
            });
            drop(guard);
            // The sum's text, as Redis propagates it: replaying the arithmetic could round
            // differently.
            ctx.rewrite_effect(|| crate::effects::argv(&[b"HSET", key, field, &text]));
            ctx.out.bulk(&text);
        }
        Err(msg) => ctx.out.error(msg),
    }
}

// ---------------------------------------------------------------------------------------------
// Random fields.

/// Parses the count of HRANDFIELD and SRANDMEMBER: an integer in ±(2^63 - 1), as Redis's
/// `getRangeLongFromObjectOrReply(.., -LONG_MAX, LONG_MAX, ..)`. Returns `(count, distinct)`:
/// a negative count asks for that many picks with repetition. Call [`check_repeat_limit`] once
/// the other arguments are checked.
pub(crate) fn parse_random_count(arg: &[u8]) -> Reply<(u64, bool)> {
    match parse_i64(arg) {
        None => Err(reply::NOT_INTEGER),
        Some(i64::MIN) => Err(RANDOM_COUNT_RANGE),
        Some(n) => Ok((n.unsigned_abs(), n >= 0)),
    }
}

/// Refuses a negative count beyond [`MAX_REPEATED_RANDOM`] (checked once the key is found:
/// for a missing key Redis replies with an empty array whatever the count).
pub(crate) fn check_repeat_limit(count: u64, distinct: bool) -> Reply<()> {
    if distinct || count <= MAX_REPEATED_RANDOM {
        Ok(())
    } else {
        Err(OUT_OF_RANGE)
    }
}

/// `count` distinct items out of `len` (with `count < len`), chosen uniformly, as Redis's
/// HRANDFIELD/SRANDMEMBER do: when `count` is a large part of `len` (3·count > len), list every
/// item and draw `count` of them; otherwise draw random positions until `count` distinct ones
/// came up (expected O(count)).
pub(crate) fn sample_distinct<T, R: Rng>(
    len: usize,
    count: usize,
    rng: &mut R,
    all: impl Iterator<Item = T>,
    mut random_position: impl FnMut(&mut R) -> Option<usize>,
    at: impl Fn(usize) -> Option<T>,
) -> Vec<T> {
    if count.saturating_mul(3) > len {
        let mut items: Vec<Option<T>> = all.map(Some).collect();
        rand::seq::index::sample(rng, items.len(), count.min(items.len()))
            .into_iter()
            .filter_map(|idx| items.get_mut(idx).and_then(Option::take))
            .collect()
    } else {
        let mut seen = std::collections::HashSet::with_capacity(count);
        let mut picked = Vec::with_capacity(count);
        while picked.len() < count {
            let Some(position) = random_position(rng) else {
                break;
            };
            if seen.insert(position)
                && let Some(item) = at(position)
            {
                picked.push(item);
            }
        }
        picked
    }
}

/// HRANDFIELD key [count [WITHVALUES]].
fn hrandfield(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let key = argv.get(1).map_or(&b""[..], |key| key);
    let Some(count_arg) = argv.get(2) else {
        return Hash::read_key(ctx, key, |ctx, hash| {
            let mut rng = rand::rng();
            match hash.and_then(|hash| hash.at(hash.random_position(&mut rng)?)) {
                Some((field, _)) => ctx.out.bulk(&field),
                None => ctx.out.null(),
            }
        });
    };
    let (count, distinct) = match parse_random_count(count_arg) {
        Ok(parsed) => parsed,
        Err(msg) => return ctx.out.error(msg),
    };
    let with_values = match argv.get(3..).unwrap_or_default() {
        [] => false,
        [word] if eq_ignore_case(word, "withvalues") => true,
        _ => return ctx.out.error(reply::SYNTAX),
    };
    // Redis refuses what would overflow its reply length (count × 2).
    if with_values && count > i64::MAX.unsigned_abs() / 2 {
        return ctx.out.error(OUT_OF_RANGE);
    }
    Hash::read_key(ctx, key, |ctx, hash| {
        let Some(hash) = hash.filter(|_| count > 0) else {
            return ctx.out.array_len(0);
        };
        if let Err(msg) = check_repeat_limit(count, distinct) {
            return ctx.out.error(msg);
        }
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let mut rng = rand::rng();
        let pairs: Vec<(Element<'_>, Element<'_>)> = if !distinct && hash.encoding() == "listpack" {
            // A listpack finds a position by walking it: list its (at most 512) fields once.
            let all: Vec<_> = hash.iter().collect();
            (0..count)
                .filter_map(|_| all.get(rng.random_range(0..all.len().max(1))).copied())
                .collect()
        } else if !distinct {
            (0..count)
                .filter_map(|_| hash.at(hash.random_position(&mut rng)?))
                .collect()
        } else if count >= hash.len() {
            hash.iter().collect()
        } else {
            sample_distinct(
                hash.len(),
                count,
                &mut rng,
                hash.iter(),
                |rng| hash.random_position(rng),
                |position| hash.at(position),
            )
        };
        let resp3 = ctx.resp3();
        ctx.out.array_len(if with_values && !resp3 {
            pairs.len() * 2
        } else {
            pairs.len()
        });
        for (field, value) in pairs {
            if with_values && resp3 {
                ctx.out.array_len(2);
            }
            ctx.out.bulk(&field);
            if with_values {
                ctx.out.bulk(&value);
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// HSCAN.

/// The options of HSCAN, SSCAN and ZSCAN: COUNT (at least 1, default 10) and MATCH.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanOptions<'a> {
    pub(crate) count: usize,
    /// None when every element matches (no MATCH, or MATCH `*`).
    pub(crate) pattern: Option<&'a [u8]>,
}

impl ScanOptions<'_> {
    /// Returns true if and only if `element` passes MATCH.
    pub(crate) fn matches(&self, element: &[u8]) -> bool {
        self.pattern
            .is_none_or(|pattern| glob_match(pattern, element, false))
    }
}

/// Parses the options after the cursor as Redis's `scanGenericCommand` does for a key's
/// elements (TYPE is SCAN's alone). Redis parses them only once the key is found and has the
/// right type, so a missing key ignores bad options: call this after the lookup.
pub(crate) fn parse_scan_options(args: &[Bytes]) -> Reply<ScanOptions<'_>> {
    let mut options = ScanOptions {
        count: 10,
        pattern: None,
    };
    for pair in args.chunks(2) {
        let [option, value] = pair else {
            return Err(reply::SYNTAX);
        };
        if eq_ignore_case(option, "count") {
            match parse_i64(value) {
                Some(n) if n >= 1 => options.count = usize::try_from(n).unwrap_or(usize::MAX),
                Some(_) => return Err(reply::SYNTAX),
                None => return Err(reply::NOT_INTEGER),
            }
        } else if eq_ignore_case(option, "match") {
            options.pattern = Some(&value[..]).filter(|pattern| *pattern != b"*");
        } else {
            return Err(reply::SYNTAX);
        }
    }
    Ok(options)
}

/// Writes the head of a SCAN-family reply: the two-element array and the next cursor.
pub(crate) fn scan_reply_header(ctx: &mut Ctx<'_>, cursor: u64) {
    ctx.out.array_len(2);
    let mut digits = itoa::Buffer::new();
    ctx.out.bulk(digits.format(cursor).as_bytes());
}

/// HSCAN key cursor [MATCH pattern] [COUNT count].
fn hscan(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, cursor, options @ ..] = argv else {
        return;
    };
    let Some(cursor) = parse_scan_cursor(cursor) else {
        return ctx.out.error("ERR invalid cursor");
    };
    Hash::read_key(ctx, key, |ctx, hash| {
        let Some(hash) = hash else {
            scan_reply_header(ctx, 0);
            return ctx.out.array_len(0);
        };
        let options = match parse_scan_options(options) {
            Ok(options) => options,
            Err(msg) => return ctx.out.error(msg),
        };
        let mut found = Vec::new();
        let next = hash.scan(cursor, options.count, |field, value| {
            if options.matches(field) {
                found.push((Bytes::copy_from_slice(field), Bytes::copy_from_slice(value)));
            }
        });
        scan_reply_header(ctx, next);
        ctx.out.array_len(found.len() * 2);
        for (field, value) in &found {
            ctx.out.bulk(field);
            ctx.out.bulk(value);
        }
    });
}
