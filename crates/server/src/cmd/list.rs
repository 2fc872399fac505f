//! List commands: LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LLEN LRANGE LINDEX LSET LREM LTRIM LINSERT
//! LPOS LMOVE RPOPLPUSH LMPOP.
//!
//! Each follows Redis 7.0's `t_list.c` in the order of its checks, because that order is visible
//! to clients: LRANGE and LTRIM parse their indexes before looking the key up, LINDEX and LSET
//! look the key up first; LPOP with a count answers a missing key with a null array and a count
//! of 0 with an empty one. Reads (LLEN, LRANGE, LINDEX, LPOS) count keyspace hits and misses;
//! writes do not. A command that empties a list removes the key, and one that changes nothing
//! (LREM without a match, LINSERT without the pivot, LTRIM keeping everything) leaves the entry
//! untouched, so a snapshot never has to copy the list for it.
//!
//! The blocking forms (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP) are not here: they need
//! connection-level waiting.

use std::sync::Arc;

use bytes::Bytes;
use forkless_storage::types::list::{End, List};
use forkless_storage::{Value, WriteGuard};

use super::access::{Collection, Reply, len_i64, reply_int};
use super::meta::{Gate, KeySpec, flags};
use super::{Command, Ctx, eq_ignore_case, parse_i64, reply};
use crate::blocking::{BlockRequest, TimeoutReply};
use crate::notify::{LIST, list_events, notify, notify_del_if_gone};

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "blpop", arity: -3, flags: flags!(WRITE, NOSCRIPT, BLOCKING), keys: KeySpec::new(1, -2, 1), gate: Gate::Shared, categories: &["write", "list", "slow", "blocking"], summary: "Removes and returns the first element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", since: "2.0.0", group: "list", handler: blpop },
    Command { name: "brpop", arity: -3, flags: flags!(WRITE, NOSCRIPT, BLOCKING), keys: KeySpec::new(1, -2, 1), gate: Gate::Shared, categories: &["write", "list", "slow", "blocking"], summary: "Removes and returns the last element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", since: "2.0.0", group: "list", handler: brpop },
    Command { name: "blmove", arity: 6, flags: flags!(WRITE, DENYOOM, NOSCRIPT, BLOCKING), keys: KeySpec::new(1, 2, 1), gate: Gate::Shared, categories: &["write", "list", "slow", "blocking"], summary: "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise. Deletes the list if the last element was moved.", since: "6.2.0", group: "list", handler: blmove },
    Command { name: "brpoplpush", arity: 4, flags: flags!(WRITE, DENYOOM, NOSCRIPT, BLOCKING), keys: KeySpec::new(1, 2, 1), gate: Gate::Shared, categories: &["write", "list", "slow", "blocking"], summary: "Pops an element from a list, pushes it to another list and returns it. Block until an element is available otherwise. Deletes the list if the last element was popped.", since: "2.2.0", group: "list", handler: brpoplpush },
    Command { name: "blmpop", arity: -5, flags: flags!(WRITE, BLOCKING, MOVABLEKEYS), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["write", "list", "slow", "blocking"], summary: "Pops the first element from one of multiple lists. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", since: "7.0.0", group: "list", handler: blmpop },
    Command { name: "lpush", arity: -3, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "list", "fast"], summary: "Prepend one or multiple elements to a list", since: "1.0.0", group: "list", handler: lpush },
    Command { name: "rpush", arity: -3, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "list", "fast"], summary: "Append one or multiple elements to a list", since: "1.0.0", group: "list", handler: rpush },
    Command { name: "lpushx", arity: -3, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "list", "fast"], summary: "Prepend an element to a list, only if the list exists", since: "2.2.0", group: "list", handler: lpushx },
    Command { name: "rpushx", arity: -3, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "list", "fast"], summary: "Append an element to a list, only if the list exists", since: "2.2.0", group: "list", handler: rpushx },
    Command { name: "lpop", arity: -2, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "list", "fast"], summary: "Remove and get the first elements in a list", since: "1.0.0", group: "list", handler: lpop },
    Command { name: "rpop", arity: -2, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "list", "fast"], summary: "Remove and get the last elements in a list", since: "1.0.0", group: "list", handler: rpop },
    Command { name: "llen", arity: 2, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "list", "fast"], summary: "Get the length of a list", since: "1.0.0", group: "list", handler: llen },
    Command { name: "lrange", arity: 4, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "list", "slow"], summary: "Get a range of elements from a list", since: "1.0.0", group: "list", handler: lrange },
    Command { name: "lindex", arity: 3, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "list", "slow"], summary: "Get an element from a list by its index", since: "1.0.0", group: "list", handler: lindex },
    Command { name: "lset", arity: 4, flags: flags!(WRITE, DENYOOM), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "list", "slow"], summary: "Set the value of an element in a list by its index", since: "1.0.0", group: "list", handler: lset },
    Command { name: "lrem", arity: 4, flags: flags!(WRITE), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "list", "slow"], summary: "Remove elements from a list", since: "1.0.0", group: "list", handler: lrem },
    Command { name: "ltrim", arity: 4, flags: flags!(WRITE), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "list", "slow"], summary: "Trim a list to the specified range", since: "1.0.0", group: "list", handler: ltrim },
    Command { name: "linsert", arity: 5, flags: flags!(WRITE, DENYOOM), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "list", "slow"], summary: "Insert an element before or after another element in a list", since: "2.2.0", group: "list", handler: linsert },
    Command { name: "lpos", arity: -3, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "list", "slow"], summary: "Return the index of matching elements on a list", since: "6.0.6", group: "list", handler: lpos },
    Command { name: "lmove", arity: 5, flags: flags!(WRITE, DENYOOM), keys: KeySpec::new(1, 2, 1), gate: Gate::Shared, categories: &["write", "list", "slow"], summary: "Pop an element from a list, push it to another list and return it", since: "6.2.0", group: "list", handler: lmove },
    Command { name: "rpoplpush", arity: 3, flags: flags!(WRITE, DENYOOM), keys: KeySpec::new(1, 2, 1), gate: Gate::Shared, categories: &["write", "list", "slow"], summary: "Remove the last element in a list, prepend it to another list and return it", since: "1.2.0", group: "list", handler: rpoplpush },
    Command { name: "lmpop", arity: -4, flags: flags!(WRITE, MOVABLEKEYS), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["write", "list", "slow"], summary: "Pop elements from a list", since: "7.0.0", group: "list", handler: lmpop },
];

const INDEX_OUT_OF_RANGE: &str = "ERR index out of range";
const MUST_BE_POSITIVE: &str = "ERR value is out of range, must be positive";
const RANK_ZERO: &str = "ERR RANK can't be zero: use 1 to start from the first match, 2 from the \
                         second ... or use negative to start from the end of the list";
const COUNT_NEGATIVE: &str = "ERR COUNT can't be negative";
const MAXLEN_NEGATIVE: &str = "ERR MAXLEN can't be negative";
const NUMKEYS_NOT_POSITIVE: &str = "ERR numkeys should be greater than 0";
const COUNT_NOT_POSITIVE: &str = "ERR count should be greater than 0";

/// Argument `idx`; arity checks guarantee the fixed positions, and a missing one reads as empty.
fn arg(argv: &[Bytes], idx: usize) -> &[u8] {
    argv.get(idx).map_or(&[], |arg| arg)
}

/// An element to store: a copy, never the argv bytes (which pin the connection's read buffer).
fn element(arg: &[u8]) -> Bytes {
    Bytes::copy_from_slice(arg)
}

/// `LEFT` or `RIGHT` (Redis's `getListPositionFromObjectOrReply`).
fn parse_end(arg: &[u8]) -> Reply<End> {
    if eq_ignore_case(arg, "right") {
        Ok(End::Tail)
    } else if eq_ignore_case(arg, "left") {
        Ok(End::Head)
    } else {
        Err(reply::SYNTAX)
    }
}

/// A non-negative integer argument as Redis's `getPositiveLongFromObjectOrReply` parses it: both
/// a non-integer and a negative number give `error`.
fn parse_non_negative(arg: &[u8], error: &'static str) -> Reply<usize> {
    parse_i64(arg)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or(error)
}

/// A strictly positive integer argument (Redis's `getRangeLongFromObjectOrReply` from 1): a
/// non-integer, zero or a negative number gives `error`.
fn parse_positive(arg: &[u8], error: &'static str) -> Reply<usize> {
    parse_non_negative(arg, error).and_then(|n| if n == 0 { Err(error) } else { Ok(n) })
}

/// An index argument (Redis's `getLongFromObjectOrReply` with the default error).
fn parse_index(arg: &[u8]) -> Reply<i64> {
    parse_i64(arg).ok_or(reply::NOT_INTEGER)
}

/// Pushes `items` one by one at `end` of the list at `key`, creating the list if the key is
/// absent; WRONGTYPE for another type. Returns the new length.
fn push_items<'a>(
    guard: &mut WriteGuard<'_>,
    key: &[u8],
    end: End,
    items: impl IntoIterator<Item = &'a Bytes>,
) -> Reply<usize> {
    let push_all = |list: &mut List| {
        for item in items {
            list.push(end, element(item));
        }
        list.len()
    };
    if List::at_key(guard, key)?.is_some() {
        return List::change_key(guard, key, push_all).ok_or(reply::WRONGTYPE);
    }
    let mut list = List::new();
    let len = push_all(&mut list);
    guard.set(key, Value::List(Arc::new(list)), None);
    Ok(len)
}

/// The notifications of a pop at `end` of `key`: `lpop`/`rpop`, then `del` if that emptied it.
fn notify_popped(ctx: &Ctx<'_>, guard: &mut WriteGuard<'_>, key: &[u8], end: End) {
    notify(ctx, LIST, list_events(end).1, key);
    notify_del_if_gone(ctx, guard, key);
}

/// Writes `items` as an array of bulk strings.
fn reply_items(ctx: &mut Ctx<'_>, items: &[Bytes]) {
    ctx.out.array_len(items.len());
    for item in items {
        ctx.out.bulk(item);
    }
}

fn reply_ok(ctx: &mut Ctx<'_>, result: Reply<()>) {
    match result {
        Ok(()) => ctx.out.ok(),
        Err(msg) => ctx.out.error(msg),
    }
}

// ---------------------------------------------------------------------------------------------
// Pushes and pops.

fn lpush(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    push(ctx, argv, End::Head, false);
}

fn rpush(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    push(ctx, argv, End::Tail, false);
}

fn lpushx(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    push(ctx, argv, End::Head, true);
}

fn rpushx(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    push(ctx, argv, End::Tail, true);
}

/// [LR]PUSH[X] key element [element ...]: the new length; the X forms do nothing (and answer 0)
/// when the key is absent.
fn push(ctx: &mut Ctx<'_>, argv: &[Bytes], end: End, only_if_exists: bool) {
    let key = arg(argv, 1);
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let result = match List::at_key(&mut guard, key) {
        Err(msg) => Err(msg),
        Ok(None) if only_if_exists => Ok(0),
        Ok(_) => push_items(&mut guard, key, end, argv.get(2..).unwrap_or_default()).map(len_i64),
    };
    if matches!(result, Ok(len) if len > 0) {
        notify(ctx, LIST, list_events(end).0, key);
    }
    reply_int(ctx, result);
}

fn lpop(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    pop(ctx, argv, End::Head);
}

fn rpop(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    pop(ctx, argv, End::Tail);
}

/// [LR]POP key [count]: one element as a bulk string, or with a count an array of up to `count`
/// elements (a null array for a missing key, an empty array for a count of 0).
fn pop(ctx: &mut Ctx<'_>, argv: &[Bytes], end: End) {
    if argv.len() > 3 {
        let name = String::from_utf8_lossy(arg(argv, 0)).to_ascii_lowercase();
        let msg = format!("ERR wrong number of arguments for '{name}' command");
        return ctx.out.error(&msg);
    }
    let count = match argv
        .get(2)
        .map(|arg| parse_non_negative(arg, MUST_BE_POSITIVE))
    {
        Some(Err(msg)) => return ctx.out.error(msg),
        Some(Ok(count)) => Some(count),
        None => None,
    };
    let key = arg(argv, 1);
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    match (List::at_key(&mut guard, key), count) {
        (Err(msg), _) => ctx.out.error(msg),
        (Ok(None), None) => ctx.out.null(),
        (Ok(None), Some(_)) => ctx.out.null_array(),
        (Ok(Some(_)), Some(0)) => ctx.out.array_len(0),
        (Ok(Some(_)), None) => {
            match List::change_key(&mut guard, key, |list| list.pop(end)).flatten() {
                Some(item) => {
                    notify_popped(ctx, &mut guard, key, end);
                    ctx.out.bulk(&item);
                }
                None => ctx.out.null(),
            }
        }
        (Ok(Some(_)), Some(count)) => {
            let popped = List::change_key(&mut guard, key, |list| list.pop_many(end, count));
            notify_popped(ctx, &mut guard, key, end);
            reply_items(ctx, &popped.unwrap_or_default());
        }
    }
}

/// LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]: `[key, [elements]]` from the first key
/// holding a list, or a null array when none does. WRONGTYPE stops the scan at that key.
fn lmpop(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    match parse_lmpop(argv) {
        Ok((keys, end, count)) => {
            if !mpop(ctx, keys, end, count) {
                ctx.out.null_array();
            }
        }
        Err(msg) => ctx.out.error(msg),
    }
}

/// Pops up to `count` elements at `end` of the first of `keys` holding a list and replies
/// `[key, [elements]]` (or WRONGTYPE). Returns false, writing nothing, when no key holds a list.
fn mpop(ctx: &mut Ctx<'_>, keys: &[Bytes], end: End, count: usize) -> bool {
    let keys: Vec<&[u8]> = keys.iter().map(|key| &key[..]).collect();
    let mut guard = ctx.db().write(&keys, ctx.now_ms);
    for key in keys {
        match List::at_key(&mut guard, key) {
            // BLMPOP once blocked: a key of another type is no list to pop from.
            Err(_) if ctx.client.block_retry => continue,
            Err(msg) => {
                ctx.out.error(msg);
                return true;
            }
            Ok(None) => continue,
            Ok(Some(_)) => {}
        }
        let popped = List::change_key(&mut guard, key, |list| list.pop_many(end, count));
        notify_popped(ctx, &mut guard, key, end);
        ctx.out.array_len(2);
        ctx.out.bulk(key);
        reply_items(ctx, &popped.unwrap_or_default());
        return true;
    }
    false
}

/// LMPOP's arguments as Redis's `lmpopGenericCommand` checks them: numkeys, then the direction
/// after the keys, then COUNT (once).
fn parse_lmpop(argv: &[Bytes]) -> Reply<(&[Bytes], End, usize)> {
    let numkeys = parse_positive(arg(argv, 1), NUMKEYS_NOT_POSITIVE)?;
    let end_idx = numkeys.checked_add(2).ok_or(reply::SYNTAX)?;
    let keys = argv.get(2..end_idx).ok_or(reply::SYNTAX)?;
    let end = parse_end(argv.get(end_idx).ok_or(reply::SYNTAX)?)?;
    let mut count = None;
    let mut rest = argv.get(end_idx + 1..).unwrap_or_default();
    while let Some((word, tail)) = rest.split_first() {
        match tail.split_first() {
            Some((value, tail)) if count.is_none() && eq_ignore_case(word, "count") => {
                count = Some(parse_positive(value, COUNT_NOT_POSITIVE)?);
                rest = tail;
            }
            _ => return Err(reply::SYNTAX),
        }
    }
    Ok((keys, end, count.unwrap_or(1)))
}

fn lmove(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    match (parse_end(arg(argv, 3)), parse_end(arg(argv, 4))) {
        (Ok(from), Ok(to)) => move_element(ctx, argv, from, to),
        (Err(msg), _) | (_, Err(msg)) => ctx.out.error(msg),
    }
}

fn rpoplpush(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    move_element(ctx, argv, End::Tail, End::Head);
}

/// LMOVE / RPOPLPUSH: pops at `from` of the source and pushes at `to` of the destination (the
/// same list when the keys are equal: a rotation), both under one guard. Null when the source
/// is absent; WRONGTYPE, changing nothing, when either key holds another type.
fn move_element(ctx: &mut Ctx<'_>, argv: &[Bytes], from: End, to: End) {
    match move_item(ctx, arg(argv, 1), arg(argv, 2), from, to) {
        Ok(Some(item)) => ctx.out.bulk(&item),
        Ok(None) => ctx.out.null(),
        Err(msg) => ctx.out.error(msg),
    }
}

/// The move itself: the element moved, None if the source holds no list.
fn move_item(
    ctx: &Ctx<'_>,
    source: &[u8],
    destination: &[u8],
    from: End,
    to: End,
) -> Reply<Option<Bytes>> {
    let mut guard = ctx.db().write(&[source, destination], ctx.now_ms);
    if List::at_key(&mut guard, source)?.is_none() {
        return Ok(None);
    }
    List::at_key(&mut guard, destination)?;
    if source == destination {
        let item = List::change_key(&mut guard, source, |list| {
            let item = list.pop(from)?;
            list.push(to, item.clone());
            Some(item)
        })
        .flatten();
        if item.is_some() {
            notify(ctx, LIST, list_events(to).0, destination);
            notify(ctx, LIST, list_events(from).1, source);
        }
        return Ok(item);
    }
    let item = List::change_key(&mut guard, source, |list| list.pop(from)).flatten();
    if let Some(item) = &item {
        push_items(&mut guard, destination, to, [item])?;
        // Redis's order: the push on the destination, then the pop on the source.
        notify(ctx, LIST, list_events(to).0, destination);
        notify_popped(ctx, &mut guard, source, from);
    }
    Ok(item)
}

// ---------------------------------------------------------------------------------------------
// Reads.

fn llen(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let key = arg(argv, 1);
    let guard = ctx.db().read(&[key], ctx.now_ms);
    let entry = guard.get(key);
    ctx.hit_or_miss(entry.is_some(), key);
    match entry.map(|entry| List::from_value(entry.value())) {
        None => ctx.out.int(0),
        Some(Some(list)) => ctx.out.int(len_i64(list.len())),
        Some(None) => ctx.out.error(reply::WRONGTYPE),
    }
}

/// LRANGE key start stop: the indexes are parsed before the key is looked up.
fn lrange(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let (start, stop) = match (parse_index(arg(argv, 2)), parse_index(arg(argv, 3))) {
        (Ok(start), Ok(stop)) => (start, stop),
        (Err(msg), _) | (_, Err(msg)) => return ctx.out.error(msg),
    };
    let key = arg(argv, 1);
    let guard = ctx.db().read(&[key], ctx.now_ms);
    let entry = guard.get(key);
    ctx.hit_or_miss(entry.is_some(), key);
    match entry.map(|entry| List::from_value(entry.value())) {
        None => ctx.out.array_len(0),
        Some(Some(list)) => {
            let range = list.range(start, stop);
            ctx.out.array_len(range.len());
            for item in list.slice(range) {
                ctx.out.bulk(&item);
            }
        }
        Some(None) => ctx.out.error(reply::WRONGTYPE),
    }
}

/// LINDEX key index: the key is looked up before the index is parsed.
fn lindex(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let key = arg(argv, 1);
    let guard = ctx.db().read(&[key], ctx.now_ms);
    let entry = guard.get(key);
    ctx.hit_or_miss(entry.is_some(), key);
    let list = match entry.map(|entry| List::from_value(entry.value())) {
        None => return ctx.out.null(),
        Some(None) => return ctx.out.error(reply::WRONGTYPE),
        Some(Some(list)) => list,
    };
    match parse_index(arg(argv, 2)) {
        Ok(index) => match list.index(index).and_then(|pos| list.get(pos)) {
            Some(item) => ctx.out.bulk(&item),
            None => ctx.out.null(),
        },
        Err(msg) => ctx.out.error(msg),
    }
}

/// LPOS's options.
#[derive(Debug)]
struct LposOptions {
    /// Which end the scan starts from (a negative RANK scans from the tail).
    from: End,
    /// How many matches to skip before the first reported one.
    skip: usize,
    /// COUNT: None when not given (reply with one integer); Some(0) means every match.
    count: Option<usize>,
    /// MAXLEN: how many elements to look at; 0 means all.
    max_scanned: usize,
}

/// LPOS's options as Redis 7.0's `lposCommand` parses them, error by error.
fn parse_lpos(args: &[Bytes]) -> Reply<LposOptions> {
    let mut rank: i64 = 1;
    let mut count = None;
    let mut max_scanned = 0;
    let mut rest = args;
    while let Some((word, tail)) = rest.split_first() {
        let Some((value, tail)) = tail.split_first() else {
            return Err(reply::SYNTAX);
        };
        rest = tail;
        if eq_ignore_case(word, "rank") {
            rank = parse_index(value)?;
            if rank == 0 {
                return Err(RANK_ZERO);
            }
        } else if eq_ignore_case(word, "count") {
            count = Some(parse_non_negative(value, COUNT_NEGATIVE)?);
        } else if eq_ignore_case(word, "maxlen") {
            max_scanned = parse_non_negative(value, MAXLEN_NEGATIVE)?;
        } else {
            return Err(reply::SYNTAX);
        }
    }
    let skip = if rank == i64::MIN {
        // Redis 7.0 negates RANK in a C `long`: -LONG_MIN stays LONG_MIN, so that rank takes the
        // first match from the tail and, its COUNT test overflowing too, never stops early.
        count = count.map(|_| 0);
        0
    } else {
        usize::try_from(rank.unsigned_abs() - 1).unwrap_or(usize::MAX)
    };
    Ok(LposOptions {
        from: if rank < 0 { End::Tail } else { End::Head },
        skip,
        count,
        max_scanned,
    })
}

/// LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]: the index of the rank-th
/// match (null if none), or with COUNT an array of up to that many indexes.
fn lpos(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let options = match parse_lpos(argv.get(3..).unwrap_or_default()) {
        Ok(options) => options,
        Err(msg) => return ctx.out.error(msg),
    };
    let key = arg(argv, 1);
    let guard = ctx.db().read(&[key], ctx.now_ms);
    let entry = guard.get(key);
    ctx.hit_or_miss(entry.is_some(), key);
    let list = match entry.map(|entry| List::from_value(entry.value())) {
        None if options.count.is_some() => return ctx.out.array_len(0),
        None => return ctx.out.null(),
        Some(None) => return ctx.out.error(reply::WRONGTYPE),
        Some(Some(list)) => list,
    };
    let mut matches = list
        .positions(arg(argv, 2), options.from, options.max_scanned)
        .skip(options.skip);
    match options.count {
        None => match matches.next() {
            Some(pos) => ctx.out.int(len_i64(pos)),
            None => ctx.out.null(),
        },
        Some(count) => {
            let limit = if count == 0 { usize::MAX } else { count };
            let found: Vec<usize> = matches.take(limit).collect();
            ctx.out.array_len(found.len());
            for pos in found {
                ctx.out.int(len_i64(pos));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Changes in the middle.

/// LSET key index element: the key is looked up before the index is parsed.
fn lset(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let key = arg(argv, 1);
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let result = (|| {
        let list = List::at_key(&mut guard, key)?.ok_or(reply::NO_SUCH_KEY)?;
        let index = parse_index(arg(argv, 2))?;
        let pos = list.index(index).ok_or(INDEX_OUT_OF_RANGE)?;
        List::change_key(&mut guard, key, |list| list.set(pos, element(arg(argv, 3))));
        notify(ctx, LIST, "lset", key);
        Ok(())
    })();
    reply_ok(ctx, result);
}

/// LREM key count element: removes the first `count` matches from the head (from the tail for
/// a negative count; all for 0) and answers how many were removed.
fn lrem(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let (key, item) = (arg(argv, 1), arg(argv, 3));
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let result = (|| {
        let count = parse_index(arg(argv, 2))?;
        let Some(list) = List::at_key(&mut guard, key)? else {
            return Ok(0);
        };
        if !list.iter().any(|entry| entry.as_ref() == item) {
            return Ok(0);
        }
        let from = if count < 0 { End::Tail } else { End::Head };
        let limit = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
        let removed = List::change_key(&mut guard, key, |list| list.remove(item, limit, from));
        notify(ctx, LIST, "lrem", key);
        notify_del_if_gone(ctx, &mut guard, key);
        Ok(len_i64(removed.unwrap_or(0)))
    })();
    reply_int(ctx, result);
}

/// LTRIM key start stop: the indexes are parsed before the key is looked up; a range that keeps
/// nothing removes the key.
fn ltrim(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let key = arg(argv, 1);
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let result = (|| {
        let start = parse_index(arg(argv, 2))?;
        let stop = parse_index(arg(argv, 3))?;
        if let Some(list) = List::at_key(&mut guard, key)? {
            if list.range(start, stop).len() < list.len() {
                List::change_key(&mut guard, key, |list| list.trim(start, stop));
            }
            // Redis notifies `ltrim` whenever the list exists, even if nothing was trimmed.
            notify(ctx, LIST, "ltrim", key);
            notify_del_if_gone(ctx, &mut guard, key);
        }
        Ok(())
    })();
    reply_ok(ctx, result);
}

/// LINSERT key BEFORE|AFTER pivot element: the new length, 0 for a missing key, -1 when the
/// pivot is not in the list.
fn linsert(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let (key, pivot, item) = (arg(argv, 1), arg(argv, 3), arg(argv, 4));
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let result = (|| {
        let where_arg = arg(argv, 2);
        let before = if eq_ignore_case(where_arg, "before") {
            true
        } else if eq_ignore_case(where_arg, "after") {
            false
        } else {
            return Err(reply::SYNTAX);
        };
        let Some(list) = List::at_key(&mut guard, key)? else {
            return Ok(0);
        };
        if !list.iter().any(|entry| entry.as_ref() == pivot) {
            return Ok(-1);
        }
        let len = List::change_key(&mut guard, key, |list| {
            list.insert(pivot, before, element(item));
            list.len()
        });
        notify(ctx, LIST, "linsert", key);
        Ok(len_i64(len.unwrap_or(0)))
    })();
    reply_int(ctx, result);
}

// ---------------------------------------------------------------------------------------------
// Blocking variants: try once; when there is nothing to pop, set `ctx.client.blocked` and let
// the connection wait (see `crate::blocking`). Inside EXEC they never block: the timeout reply
// comes at once, as in Redis.

/// Parses a blocking timeout in seconds (fractions allowed) into a deadline; 0 waits forever.
pub(crate) fn parse_timeout(
    arg: &[u8],
    now: std::time::Instant,
) -> Reply<Option<std::time::Instant>> {
    let secs: f64 = std::str::from_utf8(arg)
        .ok()
        .and_then(|text| text.parse().ok())
        .filter(|secs: &f64| secs.is_finite())
        .ok_or("ERR timeout is not a float or out of range")?;
    if secs < 0.0 {
        return Err("ERR timeout is negative");
    }
    if secs == 0.0 {
        return Ok(None);
    }
    let timeout =
        std::time::Duration::try_from_secs_f64(secs).map_err(|_| "ERR timeout is out of range")?;
    Ok(now.checked_add(timeout))
}

/// Blocks the client on `keys`, or replies the timeout reply at once inside EXEC.
pub(crate) fn block(
    ctx: &mut Ctx<'_>,
    keys: &[Bytes],
    deadline: Option<std::time::Instant>,
    on_timeout: TimeoutReply,
) {
    if ctx.client.in_exec {
        match on_timeout {
            TimeoutReply::NullArray => ctx.out.null_array(),
            TimeoutReply::Null => ctx.out.null(),
        }
        return;
    }
    ctx.client.blocked = Some(BlockRequest {
        db: ctx.client.db,
        keys: keys.to_vec(),
        deadline,
        on_timeout,
        retry_argv: None,
    });
}

fn blpop(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    blocking_pop(ctx, argv, End::Head);
}

fn brpop(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    blocking_pop(ctx, argv, End::Tail);
}

/// BLPOP/BRPOP key [key ...] timeout: `[key, element]` from the first key holding a list.
fn blocking_pop(ctx: &mut Ctx<'_>, argv: &[Bytes], end: End) {
    let Some((timeout, keys)) = argv.get(1..).and_then(<[Bytes]>::split_last) else {
        return;
    };
    let deadline = match parse_timeout(timeout, std::time::Instant::now()) {
        Ok(deadline) => deadline,
        Err(msg) => return ctx.out.error(msg),
    };
    let key_refs = ctx.key_args(argv);
    let mut guard = ctx.db().write(&key_refs, ctx.now_ms);
    for key in &key_refs {
        match List::at_key(&mut guard, key) {
            // Once blocked, a key of another type is no list to pop from (as in Redis).
            Err(_) if ctx.client.block_retry => continue,
            Err(msg) => return ctx.out.error(msg),
            Ok(None) => continue,
            Ok(Some(_)) => {}
        }
        if let Some(item) = List::change_key(&mut guard, key, |list| list.pop(end)).flatten() {
            notify_popped(ctx, &mut guard, key, end);
            drop(guard);
            // The non-blocking form on the key it popped from, as Redis propagates it.
            let pop: &[u8] = match end {
                End::Head => b"LPOP",
                End::Tail => b"RPOP",
            };
            ctx.rewrite_effect(|| crate::effects::argv(&[pop, key]));
            ctx.out.array_len(2);
            ctx.out.bulk(key);
            ctx.out.bulk(&item);
            return;
        }
    }
    drop(guard);
    block(ctx, keys, deadline, TimeoutReply::NullArray);
}

fn blmove(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    match (parse_end(arg(argv, 3)), parse_end(arg(argv, 4))) {
        (Ok(from), Ok(to)) => blocking_move(ctx, argv, b"LMOVE", from, to, arg(argv, 5)),
        (Err(msg), _) | (_, Err(msg)) => ctx.out.error(msg),
    }
}

fn brpoplpush(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    blocking_move(ctx, argv, b"RPOPLPUSH", End::Tail, End::Head, arg(argv, 3));
}

/// BLMOVE / BRPOPLPUSH; `nonblocking` names the form without the timeout (LMOVE / RPOPLPUSH),
/// which is the effect of a move that happened.
fn blocking_move(
    ctx: &mut Ctx<'_>,
    argv: &[Bytes],
    nonblocking: &'static [u8],
    from: End,
    to: End,
    timeout: &[u8],
) {
    let deadline = match parse_timeout(timeout, std::time::Instant::now()) {
        Ok(deadline) => deadline,
        Err(msg) => return ctx.out.error(msg),
    };
    // Once blocked, a source of another type is no list to pop from: keep waiting (a
    // destination of another type still ends the block with WRONGTYPE, as in Redis).
    let source_not_list = ctx.client.block_retry && {
        let source = arg(argv, 1);
        let guard = ctx.db().read(&[source], ctx.now_ms);
        guard
            .get(source)
            .is_some_and(|entry| List::from_value(entry.value()).is_none())
    };
    let moved = if source_not_list {
        Ok(None)
    } else {
        move_item(ctx, arg(argv, 1), arg(argv, 2), from, to)
    };
    match moved {
        Ok(Some(item)) => {
            ctx.rewrite_effect(|| {
                let mut effect = argv.get(..argv.len() - 1).unwrap_or_default().to_vec();
                if let Some(name) = effect.first_mut() {
                    *name = Bytes::from_static(nonblocking);
                }
                effect
            });
            ctx.out.bulk(&item);
        }
        Ok(None) => {
            let source = argv.get(1).cloned().unwrap_or_default();
            block(ctx, &[source], deadline, TimeoutReply::Null);
        }
        Err(msg) => ctx.out.error(msg),
    }
}

/// BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count].
fn blmpop(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let deadline = match parse_timeout(arg(argv, 1), std::time::Instant::now()) {
        Ok(deadline) => deadline,
        Err(msg) => return ctx.out.error(msg),
    };
    // LMPOP's parser reads numkeys at index 1: skip the timeout.
    let (keys, end, count) = match parse_lmpop(argv.get(1..).unwrap_or_default()) {
        Ok(parsed) => parsed,
        Err(msg) => return ctx.out.error(msg),
    };
    if !mpop(ctx, keys, end, count) {
        block(ctx, keys, deadline, TimeoutReply::NullArray);
        return;
    }
    // LMPOP with the same keys, direction and count pops what BLMPOP popped.
    ctx.rewrite_effect(|| {
        let mut effect = vec![Bytes::from_static(b"LMPOP")];
        effect.extend(argv.iter().skip(2).cloned());
        effect
    });
}
