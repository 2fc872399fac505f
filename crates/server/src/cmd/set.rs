//! Set commands: SADD SREM SCARD SISMEMBER SMISMEMBER SMEMBERS SPOP SRANDMEMBER SMOVE SSCAN, and
//! the set algebra SINTER SUNION SDIFF, their STORE forms and SINTERCARD.
//!
//! They follow Redis 7.0's `t_set.c`: reads (including the source keys of the STORE forms)
//! count keyspace hits and misses, writes do not; argument errors come before or after the key
//! lookup exactly where Redis checks them. A command that removes the last member removes the
//! key. Multi-key commands take all their keys in one guard: SINTER/SUNION/SDIFF/SINTERCARD a
//! read guard, the STORE forms and SMOVE one write guard over destination and sources, so each
//! is atomic to other clients and to the snapshot cut.
//!
//! Random members (SPOP, SRANDMEMBER) cost O(1) expected each, whatever the set's size: the
//! storage picks a random slot of its table (see `forkless_storage::types::hash::table`).

use std::sync::Arc;

use bytes::Bytes;
use forkless_storage::types::Element;
use forkless_storage::types::set::Set;
use forkless_storage::{Value, WriteGuard};

use super::hash::{
    check_repeat_limit, parse_random_count, parse_scan_options, sample_distinct, scan_reply_header,
    selected_db,
};
use super::keys::parse_scan_cursor;
use super::{Command, Ctx, eq_ignore_case, parse_i64, reply};

#[rustfmt::skip] // One row per command reads as a table.
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "sadd", arity: -3, flags: &["write", "denyoom", "fast"], keys: (1, 1, 1), categories: &["write", "set", "fast"], summary: "Add one or more members to a set", since: "1.0.0", group: "set", handler: sadd },
    Command { name: "srem", arity: -3, flags: &["write", "fast"], keys: (1, 1, 1), categories: &["write", "set", "fast"], summary: "Remove one or more members from a set", since: "1.0.0", group: "set", handler: srem },
    Command { name: "scard", arity: 2, flags: &["readonly", "fast"], keys: (1, 1, 1), categories: &["read", "set", "fast"], summary: "Get the number of members in a set", since: "1.0.0", group: "set", handler: scard },
    Command { name: "sismember", arity: 3, flags: &["readonly", "fast"], keys: (1, 1, 1), categories: &["read", "set", "fast"], summary: "Determine if a given value is a member of a set", since: "1.0.0", group: "set", handler: sismember },
    Command { name: "smismember", arity: -3, flags: &["readonly", "fast"], keys: (1, 1, 1), categories: &["read", "set", "fast"], summary: "Returns the membership associated with the given elements for a set", since: "6.2.0", group: "set", handler: smismember },
    Command { name: "smembers", arity: 2, flags: &["readonly"], keys: (1, 1, 1), categories: &["read", "set", "slow"], summary: "Get all the members in a set", since: "1.0.0", group: "set", handler: sinter },
    Command { name: "spop", arity: -2, flags: &["write", "fast"], keys: (1, 1, 1), categories: &["write", "set", "fast"], summary: "Remove and return one or multiple random members from a set", since: "1.0.0", group: "set", handler: spop },
    Command { name: "srandmember", arity: -2, flags: &["readonly"], keys: (1, 1, 1), categories: &["read", "set", "slow"], summary: "Get one or multiple random members from a set", since: "1.0.0", group: "set", handler: srandmember },
    Command { name: "sinter", arity: -2, flags: &["readonly"], keys: (1, -1, 1), categories: &["read", "set", "slow"], summary: "Intersect multiple sets", since: "1.0.0", group: "set", handler: sinter },
    Command { name: "sunion", arity: -2, flags: &["readonly"], keys: (1, -1, 1), categories: &["read", "set", "slow"], summary: "Add multiple sets", since: "1.0.0", group: "set", handler: sunion },
    Command { name: "sdiff", arity: -2, flags: &["readonly"], keys: (1, -1, 1), categories: &["read", "set", "slow"], summary: "Subtract multiple sets", since: "1.0.0", group: "set", handler: sdiff },
    Command { name: "sinterstore", arity: -3, flags: &["write", "denyoom"], keys: (1, -1, 1), categories: &["write", "set", "slow"], summary: "Intersect multiple sets and store the resulting set in a key", since: "1.0.0", group: "set", handler: sinterstore },
    Command { name: "sunionstore", arity: -3, flags: &["write", "denyoom"], keys: (1, -1, 1), categories: &["write", "set", "slow"], summary: "Add multiple sets and store the resulting set in a key", since: "1.0.0", group: "set", handler: sunionstore },
    Command { name: "sdiffstore", arity: -3, flags: &["write", "denyoom"], keys: (1, -1, 1), categories: &["write", "set", "slow"], summary: "Subtract multiple sets and store the resulting set in a key", since: "1.0.0", group: "set", handler: sdiffstore },
    Command { name: "sintercard", arity: -3, flags: &["readonly", "movablekeys"], keys: (0, 0, 0), categories: &["read", "set", "slow"], summary: "Intersect multiple sets and return the cardinality of the result", since: "7.0.0", group: "set", handler: sintercard },
    Command { name: "smove", arity: 4, flags: &["write", "fast"], keys: (1, 2, 1), categories: &["write", "set", "fast"], summary: "Move a member from one set to another", since: "1.0.0", group: "set", handler: smove },
    Command { name: "sscan", arity: -3, flags: &["readonly"], keys: (1, 1, 1), categories: &["read", "set", "slow"], summary: "Incrementally iterate Set elements", since: "2.8.0", group: "set", handler: sscan },
];

const MUST_BE_POSITIVE: &str = "ERR value is out of range, must be positive";
const NUMKEYS_NOT_POSITIVE: &str = "ERR numkeys should be greater than 0";
const TOO_MANY_NUMKEYS: &str = "ERR Number of keys can't be greater than number of args";
const NEGATIVE_LIMIT: &str = "ERR LIMIT can't be negative";

/// An error reply's text.
type Reply<T> = Result<T, &'static str>;

fn len_i64(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

fn as_set(value: &Value) -> Option<&Arc<Set>> {
    match value {
        Value::Set(set) => Some(set),
        Value::String(_) | Value::List(_) | Value::Hash(_) | Value::ZSet(_) => None,
    }
}

fn copy(arg: &[u8]) -> Bytes {
    Bytes::copy_from_slice(arg)
}

/// Runs `read` on the set at `key` as Redis's `lookupKeyRead` + `checkType` do: counts a hit or
/// a miss, replies WRONGTYPE for another type, and passes None for an absent key.
fn read_set(ctx: &mut Ctx<'_>, key: &[u8], read: impl FnOnce(&mut Ctx<'_>, Option<&Set>)) {
    let guard = selected_db(ctx).read(&[key], ctx.now_ms);
    let value = guard.get(key).map(forkless_storage::Entry::value);
    ctx.hit_or_miss(value.is_some());
    match value.map(as_set) {
        Some(None) => ctx.out.error(reply::WRONGTYPE),
        Some(Some(set)) => read(ctx, Some(set)),
        None => read(ctx, None),
    }
}

/// The set at `key` under a write guard (no hit/miss counted): None if absent, WRONGTYPE for
/// another type.
fn set_at<'g>(guard: &'g mut WriteGuard<'_>, key: &[u8]) -> Reply<Option<&'g Set>> {
    match guard.get(key) {
        None => Ok(None),
        Some(entry) => as_set(entry.value())
            .map(|set| Some(&**set))
            .ok_or(reply::WRONGTYPE),
    }
}

/// Applies `change` to the set at `key`, creating it if absent (callers check the type with
/// [`set_at`] first), and removes the key if `change` leaves the set empty.
fn update<R>(guard: &mut WriteGuard<'_>, key: &[u8], change: impl FnOnce(&mut Set) -> R) -> R {
    let (result, emptied) = match guard.get_mut(key) {
        Some(mut entry) if matches!(entry.value(), Value::Set(_)) => {
            let Value::Set(set) = entry.value_mut() else {
                return change(&mut Set::new());
            };
            let set = Arc::make_mut(set);
            let result = change(set);
            (result, set.is_empty())
        }
        // Callers check the type first; never overwrite another type regardless.
        Some(_) => (change(&mut Set::new()), false),
        None => {
            let mut set = Set::new();
            let result = change(&mut set);
            if !set.is_empty() {
                guard.set(key, Value::Set(Arc::new(set)), None);
            }
            (result, false)
        }
    };
    if emptied {
        guard.remove(key);
    }
    result
}

fn sadd(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, members @ ..] = argv else { return };
    let mut guard = selected_db(ctx).write(&[key], ctx.now_ms);
    let changes = match set_at(&mut guard, key) {
        Err(msg) => return ctx.out.error(msg),
        Ok(None) => true,
        Ok(Some(set)) => members.iter().any(|member| !set.contains(member)),
    };
    let added = if changes {
        update(&mut guard, key, |set| {
            members
                .iter()
                .filter(|member| set.insert(copy(member)))
                .count()
        })
    } else {
        0
    };
    drop(guard);
    ctx.out.int(len_i64(added));
}

fn srem(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, members @ ..] = argv else { return };
    let mut guard = selected_db(ctx).write(&[key], ctx.now_ms);
    let changes = match set_at(&mut guard, key) {
        Err(msg) => return ctx.out.error(msg),
        Ok(None) => false,
        Ok(Some(set)) => members.iter().any(|member| set.contains(member)),
    };
    let removed = if changes {
        update(&mut guard, key, |set| {
            members.iter().filter(|member| set.remove(member)).count()
        })
    } else {
        0
    };
    drop(guard);
    ctx.out.int(len_i64(removed));
}

fn scard(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key] = argv else { return };
    read_set(ctx, key, |ctx, set| {
        ctx.out.int(len_i64(set.map_or(0, Set::len)));
    });
}

fn sismember(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, member] = argv else { return };
    read_set(ctx, key, |ctx, set| {
        ctx.out
            .int(i64::from(set.is_some_and(|set| set.contains(member))));
    });
}

fn smismember(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, members @ ..] = argv else { return };
    read_set(ctx, key, |ctx, set| {
        ctx.out.array_len(members.len());
        for member in members {
            ctx.out
                .int(i64::from(set.is_some_and(|set| set.contains(member))));
        }
    });
}

/// Writes `members` as a set reply (`~` in RESP3).
fn reply_set<M: AsRef<[u8]>>(ctx: &mut Ctx<'_>, members: impl ExactSizeIterator<Item = M>) {
    ctx.out.set_len(members.len());
    for member in members {
        ctx.out.bulk(member.as_ref());
    }
}

// ---------------------------------------------------------------------------------------------
// Random members.

/// SPOP key [count].
fn spop(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let key = argv.get(1).map_or(&b""[..], |key| key);
    let count = match argv.get(2..).unwrap_or_default() {
        [] => None,
        [count] => match parse_i64(count).and_then(|n| usize::try_from(n).ok()) {
            Some(count) => Some(count),
            None => return ctx.out.error(MUST_BE_POSITIVE),
        },
        _ => return ctx.out.error(reply::SYNTAX),
    };
    let mut guard = selected_db(ctx).write(&[key], ctx.now_ms);
    let size = match set_at(&mut guard, key) {
        Err(msg) => return ctx.out.error(msg),
        Ok(set) => set.map_or(0, Set::len),
    };
    let Some(count) = count else {
        let popped = (size > 0)
            .then(|| update(&mut guard, key, |set| set.pop_random(&mut rand::rng())))
            .flatten();
        drop(guard);
        return match popped {
            Some(member) => ctx.out.bulk(&member),
            None => ctx.out.null(),
        };
    };
    if size == 0 || count == 0 {
        drop(guard);
        return ctx.out.set_len(0);
    }
    if count >= size {
        let removed = guard.take(key);
        drop(guard);
        if let Some(set) = removed.as_ref().and_then(|entry| as_set(entry.value())) {
            reply_set(ctx, set.iter());
        }
        return;
    }
    let popped: Vec<Bytes> = update(&mut guard, key, |set| {
        let mut rng = rand::rng();
        (0..count)
            .filter_map(|_| set.pop_random(&mut rng))
            .collect()
    });
    drop(guard);
    reply_set(ctx, popped.iter());
}

/// SRANDMEMBER key [count].
fn srandmember(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let key = argv.get(1).map_or(&b""[..], |key| key);
    let parsed = match argv.get(2..).unwrap_or_default() {
        [] => None,
        [count] => match parse_random_count(count) {
            Ok(parsed) => Some(parsed),
            Err(msg) => return ctx.out.error(msg),
        },
        _ => return ctx.out.error(reply::SYNTAX),
    };
    read_set(ctx, key, |ctx, set| {
        let mut rng = rand::rng();
        let Some((count, distinct)) = parsed else {
            return match set.and_then(|set| set.at(set.random_position(&mut rng)?)) {
                Some(member) => ctx.out.bulk(&member),
                None => ctx.out.null(),
            };
        };
        let Some(set) = set.filter(|_| count > 0) else {
            return ctx.out.array_len(0);
        };
        if let Err(msg) = check_repeat_limit(count, distinct) {
            return ctx.out.error(msg);
        }
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let members: Vec<Element<'_>> = if !distinct {
            (0..count)
                .filter_map(|_| set.at(set.random_position(&mut rng)?))
                .collect()
        } else if count >= set.len() {
            set.iter().collect()
        } else {
            sample_distinct(
                set.len(),
                count,
                &mut rng,
                set.iter(),
                |rng| set.random_position(rng),
                |position| set.at(position),
            )
        };
        ctx.out.array_len(members.len());
        for member in members {
            ctx.out.bulk(&member);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Set algebra.

/// The sets named by `keys`, looked up as Redis's `lookupKeyRead` (a hit or a miss each) with
/// `get`; None for an absent key; WRONGTYPE if any key holds another type.
fn lookup_sets(
    ctx: &Ctx<'_>,
    keys: &[Bytes],
    mut get: impl FnMut(&[u8]) -> Option<Value>,
) -> Reply<Vec<Option<Arc<Set>>>> {
    let mut sets = Vec::with_capacity(keys.len());
    let mut wrong_type = false;
    for key in keys {
        let value = get(key);
        ctx.hit_or_miss(value.is_some());
        match value {
            None => sets.push(None),
            Some(Value::Set(set)) => sets.push(Some(set)),
            Some(_) => wrong_type = true,
        }
    }
    if wrong_type {
        Err(reply::WRONGTYPE)
    } else {
        Ok(sets)
    }
}

/// Members of every set, in the order of the smallest (as Redis iterates it), stopping after
/// `limit` members if given. Empty if any key is absent.
fn intersection(sets: &[Option<Arc<Set>>], limit: Option<usize>) -> Vec<Element<'_>> {
    let Some(mut present) = sets.iter().map(Option::as_ref).collect::<Option<Vec<_>>>() else {
        return Vec::new();
    };
    present.sort_by_key(|set| set.len());
    let Some((smallest, others)) = present.split_first() else {
        return Vec::new();
    };
    smallest
        .iter()
        .filter(|member| {
            others
                .iter()
                .all(|set| Arc::ptr_eq(set, smallest) || set.contains(member.as_bytes()))
        })
        .take(limit.unwrap_or(usize::MAX))
        .collect()
}

/// Every member of any set, as the set Redis builds (its encoding decides the reply's order).
fn union(sets: &[Option<Arc<Set>>]) -> Set {
    Set::from_members(sets.iter().flatten().flat_map(|set| set.iter()))
}

/// Members of the first set in none of the others.
fn difference(sets: &[Option<Arc<Set>>]) -> Set {
    let Some((Some(first), others)) = sets.split_first() else {
        return Set::new();
    };
    Set::from_members(first.iter().filter(|member| {
        others
            .iter()
            .flatten()
            .all(|set| !Arc::ptr_eq(set, first) && !set.contains(member.as_bytes()))
    }))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Inter,
    Union,
    Diff,
}

/// SINTER, SUNION, SDIFF (and SMEMBERS, which is SINTER of one key, as in Redis).
fn algebra(ctx: &mut Ctx<'_>, argv: &[Bytes], op: Op) {
    let keys = argv.get(1..).unwrap_or_default();
    let key_refs: Vec<&[u8]> = keys.iter().map(AsRef::as_ref).collect();
    let guard = selected_db(ctx).read(&key_refs, ctx.now_ms);
    let sets = match lookup_sets(ctx, keys, |key| guard.get(key).map(|e| e.value().clone())) {
        Ok(sets) => sets,
        Err(msg) => return ctx.out.error(msg),
    };
    match op {
        Op::Inter => reply_set(ctx, intersection(&sets, None).into_iter()),
        Op::Union => reply_set(ctx, union(&sets).iter()),
        Op::Diff => reply_set(ctx, difference(&sets).iter()),
    }
    // The Arc clones go before the guard, so no writer waiting on it copies a set for nothing.
    drop(sets);
    drop(guard);
}

fn sinter(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    algebra(ctx, argv, Op::Inter);
}

fn sunion(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    algebra(ctx, argv, Op::Union);
}

fn sdiff(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    algebra(ctx, argv, Op::Diff);
}

/// SINTERSTORE, SUNIONSTORE, SDIFFSTORE: one write guard over the destination and the
/// sources. An empty result deletes the destination; any other replaces it, TTL cleared.
fn algebra_store(ctx: &mut Ctx<'_>, argv: &[Bytes], op: Op) {
    let [_, dest, keys @ ..] = argv else { return };
    let key_refs: Vec<&[u8]> = argv.iter().skip(1).map(AsRef::as_ref).collect();
    let mut guard = selected_db(ctx).write(&key_refs, ctx.now_ms);
    let sets = match lookup_sets(ctx, keys, |key| guard.get(key).map(|e| e.value().clone())) {
        Ok(sets) => sets,
        Err(msg) => return ctx.out.error(msg),
    };
    let result = match op {
        Op::Inter => Set::from_members(intersection(&sets, None)),
        Op::Union => union(&sets),
        Op::Diff => difference(&sets),
    };
    drop(sets);
    let len = result.len();
    if result.is_empty() {
        guard.remove(dest);
    } else {
        guard.set(dest, Value::Set(Arc::new(result)), None);
    }
    drop(guard);
    ctx.out.int(len_i64(len));
}

fn sinterstore(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    algebra_store(ctx, argv, Op::Inter);
}

fn sunionstore(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    algebra_store(ctx, argv, Op::Union);
}

fn sdiffstore(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    algebra_store(ctx, argv, Op::Diff);
}

/// SINTERCARD numkeys key [key ...] [LIMIT limit].
fn sintercard(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let numkeys = match argv.get(1).and_then(|arg| parse_i64(arg)) {
        Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
        _ => return ctx.out.error(NUMKEYS_NOT_POSITIVE),
    };
    let Some(keys) = argv.get(2..).and_then(|rest| rest.get(..numkeys)) else {
        return ctx.out.error(TOO_MANY_NUMKEYS);
    };
    let mut limit = None;
    let mut options = argv.get(2 + numkeys..).unwrap_or_default().iter();
    while let Some(option) = options.next() {
        match options.as_slice().first() {
            Some(value) if eq_ignore_case(option, "limit") => {
                options.next();
                match parse_i64(value).and_then(|n| usize::try_from(n).ok()) {
                    Some(0) => limit = None,
                    Some(n) => limit = Some(n),
                    None => return ctx.out.error(NEGATIVE_LIMIT),
                }
            }
            _ => return ctx.out.error(reply::SYNTAX),
        }
    }
    let key_refs: Vec<&[u8]> = keys.iter().map(AsRef::as_ref).collect();
    let guard = selected_db(ctx).read(&key_refs, ctx.now_ms);
    let sets = match lookup_sets(ctx, keys, |key| guard.get(key).map(|e| e.value().clone())) {
        Ok(sets) => sets,
        Err(msg) => return ctx.out.error(msg),
    };
    let cardinality = intersection(&sets, limit).len();
    drop(sets);
    drop(guard);
    ctx.out.int(len_i64(cardinality));
}

/// SMOVE source destination member.
fn smove(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, src, dst, member] = argv else { return };
    let mut guard = selected_db(ctx).write(&[src, dst], ctx.now_ms);
    let in_src = match set_at(&mut guard, src) {
        Ok(None) => {
            drop(guard);
            return ctx.out.int(0);
        }
        Ok(Some(set)) => set.contains(member),
        Err(msg) => return ctx.out.error(msg),
    };
    if let Err(msg) = set_at(&mut guard, dst) {
        return ctx.out.error(msg);
    }
    if in_src && src != dst {
        update(&mut guard, src, |set| set.remove(member));
        let in_dst = matches!(set_at(&mut guard, dst), Ok(Some(set)) if set.contains(member));
        if !in_dst {
            update(&mut guard, dst, |set| set.insert(copy(member)));
        }
    }
    drop(guard);
    // Moved, or (source and destination being the same key) already there.
    ctx.out.int(i64::from(in_src));
}

/// SSCAN key cursor [MATCH pattern] [COUNT count].
fn sscan(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, cursor, options @ ..] = argv else {
        return;
    };
    let Some(cursor) = parse_scan_cursor(cursor) else {
        return ctx.out.error("ERR invalid cursor");
    };
    read_set(ctx, key, |ctx, set| {
        let Some(set) = set else {
            scan_reply_header(ctx, 0);
            return ctx.out.array_len(0);
        };
        let options = match parse_scan_options(options) {
            Ok(options) => options,
            Err(msg) => return ctx.out.error(msg),
        };
        let mut found = Vec::new();
        let next = set.scan(cursor, options.count, |member| {
            if options.matches(member) {
                found.push(Bytes::copy_from_slice(member));
            }
        });
        scan_reply_header(ctx, next);
        ctx.out.array_len(found.len());
        for member in &found {
            ctx.out.bulk(member);
        }
    });
}
