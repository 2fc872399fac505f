//! ZPOPMIN ZPOPMAX ZMPOP ZRANDMEMBER ZSCAN.

use std::collections::HashSet;

use bytes::Bytes;
use forkless_storage::pattern::glob_match;
use rand::Rng;
use rand::seq::SliceRandom;

use super::{Ctx, eq_ignore_case, is_withscores, reply, reply_members};
use forkless_storage::types::zset::ZSet;

use crate::blocking::TimeoutReply;
use crate::cmd::access::Collection;
use crate::cmd::keys::parse_scan_cursor;
use crate::cmd::list::{block, parse_timeout};
use crate::cmd::parse_i64;

const NOT_POSITIVE: &str = "ERR value is out of range, must be positive";
const OUT_OF_RANGE: &str = "ERR value is out of range";
const COUNT_RANGE: &str =
    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807";

pub(super) fn zpopmin(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    zpop_command(ctx, argv, false);
}

pub(super) fn zpopmax(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    zpop_command(ctx, argv, true);
}

fn zpop_command(ctx: &mut Ctx<'_>, argv: &[Bytes], max: bool) {
    if argv.len() > 3 {
        return ctx.out.error(reply::SYNTAX);
    }
    let count = match argv.get(2).map(|arg| parse_i64(arg)) {
        None => None,
        Some(None) => return ctx.out.error(NOT_POSITIVE),
        Some(Some(n)) if n < 0 => return ctx.out.error(NOT_POSITIVE),
        Some(Some(n)) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
    };
    let Some(key) = argv.get(1) else { return };
    match pop_first_nonempty(ctx, &[&key[..]], max, count.unwrap_or(1)) {
        Err(msg) => ctx.out.error(msg),
        Ok(None) => ctx.out.array_len(0),
        Ok(Some((_, popped))) if count == Some(0) => {
            debug_assert!(popped.is_empty());
            ctx.out.array_len(0);
        }
        Ok(Some((_, popped))) => {
            if count.is_some() {
                reply_members(
                    ctx.out,
                    popped.len(),
                    popped.iter().map(|(m, s)| (m, *s)),
                    true,
                );
            } else {
                ctx.out.array_len(popped.len() * 2);
                for (member, score) in &popped {
                    ctx.out.bulk(member);
                    ctx.out.double(*score);
                }
            }
        }
    }
}

/// The key popped from and its members in pop order.
type Popped = (Bytes, Vec<(Bytes, f64)>);

/// Pops up to `count` members (the lowest, or the highest when `max`) from the first of `keys`
/// that holds a sorted set, all keys locked by one guard. Returns that key and the members in
/// pop order; None when no key exists; WRONGTYPE for the first key of another type.
fn pop_first_nonempty(
    ctx: &Ctx<'_>,
    keys: &[&[u8]],
    max: bool,
    count: usize,
) -> Result<Option<Popped>, &'static str> {
    let db = ctx.db();
    let mut guard = db.write(keys, ctx.now_ms);
    for &key in keys {
        let zset = match ZSet::at_key(&mut guard, key) {
            Ok(Some(zset)) => zset,
            // Once blocked (BZPOPMIN...), a key of another type is no sorted set to pop from.
            Ok(None) | Err(_) if ctx.client.block_retry => continue,
            Ok(None) => continue,
            Err(msg) => return Err(msg),
        };
        if count == 0 {
            return Ok(Some((Bytes::copy_from_slice(key), Vec::new())));
        }
        let len = zset.len();
        let count = count.min(len);
        let (start, end) = if max { (len - count, len) } else { (0, count) };
        let mut popped = ZSet::change_key(&mut guard, key, |zset| zset.remove_ranks(start, end))
            .unwrap_or_default();
        if max {
            popped.reverse();
        }
        return Ok(Some((Bytes::copy_from_slice(key), popped)));
    }
    Ok(None)
}

/// ZMPOP's arguments after the command name: keys, MAX (true) or MIN, count.
type ZmpopArgs<'a> = (Vec<&'a [u8]>, bool, usize);

/// ZMPOP numkeys key [key ...] MIN|MAX [COUNT count], as Redis checks it (numkeys at index 1).
fn parse_zmpop(argv: &[Bytes]) -> Result<ZmpopArgs<'_>, &'static str> {
    const NUMKEYS: &str = "ERR numkeys should be greater than 0";
    const COUNT: &str = "ERR count should be greater than 0";
    let n_keys = match argv.get(1).and_then(|arg| parse_i64(arg)) {
        Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
        _ => return Err(NUMKEYS),
    };
    let keys = argv
        .get(2..)
        .and_then(|rest| rest.get(..n_keys))
        .ok_or(reply::SYNTAX)?;
    let mut rest = argv.get(2 + n_keys..).unwrap_or_default().iter();
    let max = match rest.next() {
        Some(word) if eq_ignore_case(word, "min") => false,
        Some(word) if eq_ignore_case(word, "max") => true,
        _ => return Err(reply::SYNTAX),
    };
    let mut count = None;
    while let Some(word) = rest.next() {
        if count.is_none() && eq_ignore_case(word, "count") {
            let arg = rest.next().ok_or(reply::SYNTAX)?;
            match parse_i64(arg) {
                Some(n) if n > 0 => count = Some(usize::try_from(n).unwrap_or(usize::MAX)),
                _ => return Err(COUNT),
            }
        } else {
            return Err(reply::SYNTAX);
        }
    }
    Ok((
        keys.iter().map(|key| &key[..]).collect(),
        max,
        count.unwrap_or(1),
    ))
}

/// `[key, [[member, score], ...]]`: ZMPOP nests the pairs in RESP2 too.
fn reply_zmpop(ctx: &mut Ctx<'_>, key: &[u8], popped: &[(Bytes, f64)]) {
    ctx.out.array_len(2);
    ctx.out.bulk(key);
    ctx.out.array_len(popped.len());
    for (member, score) in popped {
        ctx.out.array_len(2);
        ctx.out.bulk(member);
        ctx.out.double(*score);
    }
}

/// ZMPOP numkeys key [key ...] MIN|MAX [COUNT count].
pub(super) fn zmpop(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let (keys, max, count) = match parse_zmpop(argv) {
        Ok(parsed) => parsed,
        Err(msg) => return ctx.out.error(msg),
    };
    match pop_first_nonempty(ctx, &keys, max, count) {
        Err(msg) => ctx.out.error(msg),
        Ok(None) => ctx.out.null_array(),
        Ok(Some((key, popped))) => reply_zmpop(ctx, &key, &popped),
    }
}

pub(super) fn bzpopmin(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    blocking_zpop(ctx, argv, false);
}

pub(super) fn bzpopmax(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    blocking_zpop(ctx, argv, true);
}

/// BZPOPMIN/BZPOPMAX key [key ...] timeout: `[key, member, score]`, or block.
fn blocking_zpop(ctx: &mut Ctx<'_>, argv: &[Bytes], max: bool) {
    let Some((timeout, keys)) = argv.get(1..).and_then(<[Bytes]>::split_last) else {
        return;
    };
    let deadline = match parse_timeout(timeout, std::time::Instant::now()) {
        Ok(deadline) => deadline,
        Err(msg) => return ctx.out.error(msg),
    };
    let key_refs = ctx.key_args(argv);
    match pop_first_nonempty(ctx, &key_refs, max, 1) {
        Err(msg) => ctx.out.error(msg),
        Ok(Some((key, popped))) if !popped.is_empty() => {
            // The non-blocking form on the key it popped from, as Redis propagates it.
            let pop: &[u8] = if max { b"ZPOPMAX" } else { b"ZPOPMIN" };
            ctx.rewrite_effect(|| crate::effects::argv(&[pop, &key]));
            ctx.out.array_len(3);
            ctx.out.bulk(&key);
            for (member, score) in &popped {
                ctx.out.bulk(member);
                ctx.out.double(*score);
            }
        }
        Ok(_) => block(ctx, keys, deadline, TimeoutReply::NullArray),
    }
}

/// BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT count].
pub(super) fn bzmpop(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let deadline = match parse_timeout(
        argv.get(1).map_or(&b""[..], |a| a),
        std::time::Instant::now(),
    ) {
        Ok(deadline) => deadline,
        Err(msg) => return ctx.out.error(msg),
    };
    // ZMPOP's parser reads numkeys at index 1: skip the timeout.
    let rest = argv.get(1..).unwrap_or_default();
    let (keys, max, count) = match parse_zmpop(rest) {
        Ok(parsed) => parsed,
        Err(msg) => return ctx.out.error(msg),
    };
    match pop_first_nonempty(ctx, &keys, max, count) {
        Err(msg) => ctx.out.error(msg),
        Ok(Some((key, popped))) => {
            // ZMPOP with the same keys, direction and count pops what BZMPOP popped.
            ctx.rewrite_effect(|| {
                let mut effect = vec![Bytes::from_static(b"ZMPOP")];
                effect.extend(argv.iter().skip(2).cloned());
                effect
            });
            reply_zmpop(ctx, &key, &popped);
        }
        Ok(None) => {
            let keys: Vec<Bytes> = keys.iter().map(|key| Bytes::copy_from_slice(key)).collect();
            block(ctx, &keys, deadline, TimeoutReply::NullArray);
        }
    }
}

/// ZRANDMEMBER key [count [WITHSCORES]].
pub(super) fn zrandmember(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(key) = argv.get(1) else { return };
    let Some(count_arg) = argv.get(2) else {
        return ZSet::read_key(ctx, key, |ctx, zset| {
            let out = &mut *ctx.out;
            let picked = zset.and_then(|zset| {
                let rank = rand::rng().random_range(0..zset.len().max(1));
                zset.get_by_rank(rank)
            });
            match picked {
                Some((member, _)) => out.bulk(&member),
                None => out.null(),
            }
        });
    };
    let count = match parse_i64(count_arg) {
        None => return ctx.out.error(reply::NOT_INTEGER),
        Some(i64::MIN) => return ctx.out.error(COUNT_RANGE),
        Some(n) => n,
    };
    let withscores = match argv.get(3) {
        _ if argv.len() > 4 => return ctx.out.error(reply::SYNTAX),
        None => false,
        Some(arg) if is_withscores(arg) => true,
        Some(_) => return ctx.out.error(reply::SYNTAX),
    };
    if withscores && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
        return ctx.out.error(OUT_OF_RANGE);
    }
    ZSet::read_key(ctx, key, |ctx, zset| {
        let out = &mut *ctx.out;
        let Some(zset) = zset.filter(|_| count != 0) else {
            return out.array_len(0);
        };
        if count < 0 {
            // Repeats allowed: streamed, never collected, however large the count.
            let wanted = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
            let mut rng = rand::rng();
            if zset.is_listpack() {
                // A listpack finds a rank by walking it: list its (at most 128) members once.
                let all: Vec<_> = zset.iter().collect();
                let picks = (0..wanted)
                    .filter_map(|_| all.get(rng.random_range(0..all.len().max(1))).copied());
                return reply_members(out, wanted, picks, withscores);
            }
            let picks =
                (0..wanted).filter_map(|_| zset.get_by_rank(rng.random_range(0..zset.len())));
            return reply_members(out, wanted, picks, withscores);
        }
        let ranks = distinct_ranks(zset.len(), usize::try_from(count).unwrap_or(usize::MAX));
        reply_members(
            out,
            ranks.len(),
            ranks.iter().filter_map(|&rank| zset.get_by_rank(rank)),
            withscores,
        );
    });
}

/// `wanted` distinct random ranks below `len` for a positive ZRANDMEMBER count; the whole set
/// when `wanted` covers it.
fn distinct_ranks(len: usize, wanted: usize) -> Vec<usize> {
    let mut rng = rand::rng();
    if wanted >= len {
        // Redis replies the whole set from the highest rank down.
        return (0..len).rev().collect();
    }
    if wanted.saturating_mul(3) > len {
        let mut all: Vec<usize> = (0..len).collect();
        let (picked, _) = all.partial_shuffle(&mut rng, wanted);
        return picked.to_vec();
    }
    let mut picked = HashSet::with_capacity(wanted);
    let mut ranks = Vec::with_capacity(wanted);
    while ranks.len() < wanted {
        let rank = rng.random_range(0..len);
        if picked.insert(rank) {
            ranks.push(rank);
        }
    }
    ranks
}

/// ZSCAN key cursor [MATCH pattern] [COUNT count]. A set Redis holds as a listpack comes back
/// whole with cursor 0, as in Redis; a larger one is walked by the tree's stable slots.
pub(super) fn zscan(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(key) = argv.get(1) else { return };
    let Some(cursor) = argv.get(2).and_then(|arg| parse_scan_cursor(arg)) else {
        return ctx.out.error("ERR invalid cursor");
    };
    let options = argv.get(3..).unwrap_or_default();
    ZSet::read_key(ctx, key, |ctx, zset| {
        let out = &mut *ctx.out;
        let Some(zset) = zset else {
            out.array_len(2);
            out.bulk(b"0");
            return out.array_len(0);
        };
        let mut count = 10;
        let mut pattern: Option<&[u8]> = None;
        for pair in options.chunks(2) {
            let [option, value] = pair else {
                return out.error(reply::SYNTAX);
            };
            if eq_ignore_case(option, "count") {
                match parse_i64(value) {
                    Some(n) if n >= 1 => count = usize::try_from(n).unwrap_or(usize::MAX),
                    Some(_) => return out.error(reply::SYNTAX),
                    None => return out.error(reply::NOT_INTEGER),
                }
            } else if eq_ignore_case(option, "match") {
                pattern = Some(value).filter(|p| p.as_ref() != b"*").map(|p| &p[..]);
            } else {
                return out.error(reply::SYNTAX);
            }
        }
        let mut found = Vec::new();
        let mut visit = |member: &[u8], score: f64| {
            if pattern.is_none_or(|pattern| glob_match(pattern, member, false)) {
                found.push((Bytes::copy_from_slice(member), score));
            }
        };
        let next = if zset.is_listpack() {
            zset.iter()
                .for_each(|(member, score)| visit(&member, score));
            0
        } else {
            zset.scan(cursor, count, visit)
        };
        out.array_len(2);
        out.bulk(itoa::Buffer::new().format(next).as_bytes());
        out.array_len(found.len() * 2);
        for (member, score) in &found {
            out.bulk(member);
            out.bulk(forkless_protocol::format_double(*score).as_bytes());
        }
    });
}
