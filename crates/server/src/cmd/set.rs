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
use forkless_storage::Value;
use forkless_storage::types::Element;
use forkless_storage::types::set::Set;

use super::access::{Collection, Reply, len_i64};
use super::hash::{
    check_repeat_limit, parse_random_count, parse_scan_options, sample_distinct, scan_reply_header,
};
use super::keys::parse_scan_cursor;
use super::meta::{Gate, KeySpec, flags};
use super::{Command, Ctx, eq_ignore_case, parse_i64, reply};
use crate::notify::{GENERIC, SET, notify, notify_del_if_gone};

#[rustfmt::skip] // One row per command reads as a table.
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "sadd", arity: -3, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "set", "fast"], summary: "Add one or more members to a set", since: "1.0.0", group: "set", handler: sadd },
    Command { name: "srem", arity: -3, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "set", "fast"], summary: "Remove one or more members from a set", since: "1.0.0", group: "set", handler: srem },
    Command { name: "scard", arity: 2, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "set", "fast"], summary: "Get the number of members in a set", since: "1.0.0", group: "set", handler: scard },
    Command { name: "sismember", arity: 3, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "set", "fast"], summary: "Determine if a given value is a member of a set", since: "1.0.0", group: "set", handler: sismember },
    Command { name: "smismember", arity: -3, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "set", "fast"], summary: "Returns the membership associated with the given elements for a set", since: "6.2.0", group: "set", handler: smismember },
    Command { name: "smembers", arity: 2, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "set", "slow"], summary: "Get all the members in a set", since: "1.0.0", group: "set", handler: sinter },
    Command { name: "spop", arity: -2, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "set", "fast"], summary: "Remove and return one or multiple random members from a set", since: "1.0.0", group: "set", handler: spop },
    Command { name: "srandmember", arity: -2, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "set", "slow"], summary: "Get one or multiple random members from a set", since: "1.0.0", group: "set", handler: srandmember },
    Command { name: "sinter", arity: -2, flags: flags!(READONLY), keys: KeySpec::ALL, gate: Gate::Shared, categories: &["read", "set", "slow"], summary: "Intersect multiple sets", since: "1.0.0", group: "set", handler: sinter },
    Command { name: "sunion", arity: -2, flags: flags!(READONLY), keys: KeySpec::ALL, gate: Gate::Shared, categories: &["read", "set", "slow"], summary: "Add multiple sets", since: "1.0.0", group: "set", handler: sunion },
    Command { name: "sdiff", arity: -2, flags: flags!(READONLY), keys: KeySpec::ALL, gate: Gate::Shared, categories: &["read", "set", "slow"], summary: "Subtract multiple sets", since: "1.0.0", group: "set", handler: sdiff },
    Command { name: "sinterstore", arity: -3, flags: flags!(WRITE, DENYOOM), keys: KeySpec::ALL, gate: Gate::Shared, categories: &["write", "set", "slow"], summary: "Intersect multiple sets and store the resulting set in a key", since: "1.0.0", group: "set", handler: sinterstore },
    Command { name: "sunionstore", arity: -3, flags: flags!(WRITE, DENYOOM), keys: KeySpec::ALL, gate: Gate::Shared, categories: &["write", "set", "slow"], summary: "Add multiple sets and store the resulting set in a key", since: "1.0.0", group: "set", handler: sunionstore },
    Command { name: "sdiffstore", arity: -3, flags: flags!(WRITE, DENYOOM), keys: KeySpec::ALL, gate: Gate::Shared, categories: &["write", "set", "slow"], summary: "Subtract multiple sets and store the resulting set in a key", since: "1.0.0", group: "set", handler: sdiffstore },
    Command { name: "sintercard", arity: -3, flags: flags!(READONLY, MOVABLEKEYS), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["read", "set", "slow"], summary: "Intersect multiple sets and return the cardinality of the result", since: "7.0.0", group: "set", handler: sintercard },
    Command { name: "smove", arity: 4, flags: flags!(WRITE, FAST), keys: KeySpec::new(1, 2, 1), gate: Gate::Shared, categories: &["write", "set", "fast"], summary: "Move a member from one set to another", since: "1.0.0", group: "set", handler: smove },
    Command { name: "sscan", arity: -3, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "set", "slow"], summary: "Incrementally iterate Set elements", since: "2.8.0", group: "set", handler: sscan },
];

const MUST_BE_POSITIVE: &str = "ERR value is out of range, must be positive";
const NUMKEYS_NOT_POSITIVE: &str = "ERR numkeys should be greater than 0";
const TOO_MANY_NUMKEYS: &str = "ERR Number of keys can't be greater than number of args";
const NEGATIVE_LIMIT: &str = "ERR LIMIT can't be negative";

fn copy(arg: &[u8]) -> Bytes {
    Bytes::copy_from_slice(arg)
}

fn sadd(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, members @ ..] = argv else { return };
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let changes = match Set::at_key(&mut guard, key) {
        Err(msg) => return ctx.out.error(msg),
        Ok(None) => true,
        Ok(Some(set)) => members.iter().any(|member| !set.contains(member)),
    };
    let added = if changes {
        Set::upsert_key(&mut guard, key, |set| {
            members
                .iter()
                .filter(|member| set.insert(copy(member)))
                .count()
        })
    } else {
        0
    };
    if added > 0 {
        notify(ctx, SET, "sadd", key);
    }
    drop(guard);
    ctx.out.int(len_i64(added));
}

fn srem(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, members @ ..] = argv else { return };
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let changes = match Set::at_key(&mut guard, key) {
        Err(msg) => return ctx.out.error(msg),
        Ok(None) => false,
        Ok(Some(set)) => members.iter().any(|member| set.contains(member)),
    };
    let removed = if changes {
        Set::upsert_key(&mut guard, key, |set| {
            members.iter().filter(|member| set.remove(member)).count()
        })
    } else {
        0
    };
    if removed > 0 {
        notify(ctx, SET, "srem", key);
        notify_del_if_gone(ctx, &mut guard, key);
    }
    drop(guard);
    ctx.out.int(len_i64(removed));
}

fn scard(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key] = argv else { return };
    Set::read_key(ctx, key, |ctx, set| {
        ctx.out.int(len_i64(set.map_or(0, Set::len)));
    });
}

fn sismember(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, member] = argv else { return };
    Set::read_key(ctx, key, |ctx, set| {
        ctx.out
            .int(i64::from(set.is_some_and(|set| set.contains(member))));
    });
}

fn smismember(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, members @ ..] = argv else { return };
    Set::read_key(ctx, key, |ctx, set| {
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
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let size = match Set::at_key(&mut guard, key) {
        Err(msg) => return ctx.out.error(msg),
        Ok(set) => set.map_or(0, Set::len),
    };
    let Some(count) = count else {
        let popped = (size > 0)
            .then(|| Set::upsert_key(&mut guard, key, |set| set.pop_random(&mut rand::rng())))
            .flatten();
        if popped.is_some() {
            notify(ctx, SET, "spop", key);
            notify_del_if_gone(ctx, &mut guard, key);
        }
        drop(guard);
        return match popped {
            Some(member) => {
                ctx.rewrite_effect(|| crate::effects::argv(&[b"SREM", key, &member]));
                ctx.out.bulk(&member);
            }
            None => ctx.out.null(),
        };
    };
    if size == 0 || count == 0 {
        drop(guard);
        return ctx.out.set_len(0);
    }
    if count >= size {
        let removed = guard.take(key);
        notify(ctx, SET, "spop", key);
        notify(ctx, GENERIC, "del", key);
        drop(guard);
        ctx.rewrite_effect(|| crate::effects::argv(&[b"DEL", key]));
        if let Some(set) = removed
            .as_ref()
            .and_then(|entry| Set::from_value(entry.value()))
        {
            reply_set(ctx, set.iter());
        }
        return;
    }
    let popped: Vec<Bytes> = Set::upsert_key(&mut guard, key, |set| {
        let mut rng = rand::rng();
        (0..count)
            .filter_map(|_| set.pop_random(&mut rng))
            .collect()
    });
    notify(ctx, SET, "spop", key);
    drop(guard);
    // The members the random picks removed, so a replay removes the same ones.
    ctx.rewrite_effect(|| {
        let mut effect = crate::effects::argv(&[b"SREM", key]);
        effect.extend(popped.iter().cloned());
        effect
    });
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
    Set::read_key(ctx, key, |ctx, set| {
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
        ctx.hit_or_miss(value.is_some(), key);
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
    let key_refs = ctx.key_args(argv);
    let guard = ctx.db().read(&key_refs, ctx.now_ms);
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
    let key_refs = ctx.key_args(argv);
    let mut guard = ctx.db().write(&key_refs, ctx.now_ms);
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
        if guard.remove(dest) {
            notify(ctx, GENERIC, "del", dest);
        }
    } else {
        guard.set(dest, Value::Set(Arc::new(result)), None);
        let event = match op {
            Op::Inter => "sinterstore",
            Op::Union => "sunionstore",
            Op::Diff => "sdiffstore",
        };
        notify(ctx, SET, event, dest);
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
    let guard = ctx.db().read(&key_refs, ctx.now_ms);
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
    let mut guard = ctx.db().write(&[src, dst], ctx.now_ms);
    let in_src = match Set::at_key(&mut guard, src) {
        Ok(None) => {
            drop(guard);
            return ctx.out.int(0);
        }
        Ok(Some(set)) => set.contains(member),
        Err(msg) => return ctx.out.error(msg),
    };
    if let Err(msg) = Set::at_key(&mut guard, dst) {
        return ctx.out.error(msg);
    }
    if in_src && src != dst {
        Set::upsert_key(&mut guard, src, |set| set.remove(member));
        notify(ctx, SET, "srem", src);
        notify_del_if_gone(ctx, &mut guard, src);
        let in_dst = matches!(Set::at_key(&mut guard, dst), Ok(Some(set)) if set.contains(member));
        if !in_dst {
            Set::upsert_key(&mut guard, dst, |set| set.insert(copy(member)));
            notify(ctx, SET, "sadd", dst);
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
    Set::read_key(ctx, key, |ctx, set| {
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
