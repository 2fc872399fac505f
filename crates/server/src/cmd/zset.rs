//! Sorted-set commands, following Redis 7.0's `t_zset.c`: ZADD ZINCRBY ZREM ZSCORE ZMSCORE
//! ZCARD ZCOUNT ZLEXCOUNT ZRANK ZREVRANK here; the ZRANGE family and ZREMRANGEBY* in
//! `zset/range.rs`; ZPOPMIN ZPOPMAX ZMPOP ZRANDMEMBER ZSCAN in `zset/pop.rs`; ZUNION ZINTER
//! ZDIFF, their STORE forms and ZINTERCARD in `zset/algebra.rs`. Argument parsing (scores as
//! `strtod` reads them, score and lex ranges) is in `zset/parse.rs`.
//!
//! As in Redis, a command parses and checks all its arguments before it looks the key up, so
//! a syntax error wins over WRONGTYPE, and a missing key never hides a syntax error. Reads
//! (`lookupKeyRead`) count keyspace hits and misses; writes do not. A command that removes
//! the last member removes the key.

mod algebra;
pub(crate) mod parse;
mod pop;
mod range;

use crate::notify::{GENERIC, ZSET, notify, notify_del_if_gone};
use std::sync::Arc;

use bytes::Bytes;
use forkless_protocol::Out;
use forkless_storage::types::zset::ZSet;
use forkless_storage::{Value, WriteGuard};

use super::access::{Collection, len_i64};
use super::meta::{Gate, KeySpec, flags};
use super::{Command, Ctx, eq_ignore_case, reply};
use parse::Range;

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "zadd", arity: -4, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "sortedset", "fast"], summary: "Add one or more members to a sorted set, or update their scores", since: "1.2.0", group: "sorted_set", handler: zadd },
    Command { name: "zincrby", arity: 4, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "sortedset", "fast"], summary: "Increment the score of a member in a sorted set", since: "1.2.0", group: "sorted_set", handler: zincrby },
    Command { name: "zrem", arity: -3, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "sortedset", "fast"], summary: "Remove one or more members from a sorted set", since: "1.2.0", group: "sorted_set", handler: zrem },
    Command { name: "zscore", arity: 3, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "sortedset", "fast"], summary: "Get the score associated with the given member in a sorted set", since: "1.2.0", group: "sorted_set", handler: zscore },
    Command { name: "zmscore", arity: -3, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "sortedset", "fast"], summary: "Get the score associated with the given members in a sorted set", since: "6.2.0", group: "sorted_set", handler: zmscore },
    Command { name: "zcard", arity: 2, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "sortedset", "fast"], summary: "Get the number of members in a sorted set", since: "1.2.0", group: "sorted_set", handler: zcard },
    Command { name: "zcount", arity: 4, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "sortedset", "fast"], summary: "Count the members in a sorted set with scores within the given values", since: "2.0.0", group: "sorted_set", handler: zcount },
    Command { name: "zlexcount", arity: 4, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "sortedset", "fast"], summary: "Count the number of members in a sorted set between a given lexicographical range", since: "2.8.9", group: "sorted_set", handler: zlexcount },
    Command { name: "zrank", arity: 3, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "sortedset", "fast"], summary: "Determine the index of a member in a sorted set", since: "2.0.0", group: "sorted_set", handler: zrank },
    Command { name: "zrevrank", arity: 3, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "sortedset", "fast"], summary: "Determine the index of a member in a sorted set, with scores ordered from high to low", since: "2.0.0", group: "sorted_set", handler: zrevrank },
    Command { name: "zrange", arity: -4, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "sortedset", "slow"], summary: "Return a range of members in a sorted set", since: "1.2.0", group: "sorted_set", handler: range::zrange },
    Command { name: "zrangestore", arity: -5, flags: flags!(WRITE, DENYOOM), keys: KeySpec::new(1, 2, 1), gate: Gate::Shared, categories: &["write", "sortedset", "slow"], summary: "Store a range of members from sorted set into another key", since: "6.2.0", group: "sorted_set", handler: range::zrangestore },
    Command { name: "zrevrange", arity: -4, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "sortedset", "slow"], summary: "Return a range of members in a sorted set, by index, with scores ordered from high to low", since: "1.2.0", group: "sorted_set", handler: range::zrevrange },
    Command { name: "zrangebyscore", arity: -4, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "sortedset", "slow"], summary: "Return a range of members in a sorted set, by score", since: "1.0.5", group: "sorted_set", handler: range::zrangebyscore },
    Command { name: "zrevrangebyscore", arity: -4, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "sortedset", "slow"], summary: "Return a range of members in a sorted set, by score, with scores ordered from high to low", since: "2.2.0", group: "sorted_set", handler: range::zrevrangebyscore },
    Command { name: "zrangebylex", arity: -4, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "sortedset", "slow"], summary: "Return a range of members in a sorted set, by lexicographical range", since: "2.8.9", group: "sorted_set", handler: range::zrangebylex },
    Command { name: "zrevrangebylex", arity: -4, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "sortedset", "slow"], summary: "Return a range of members in a sorted set, by lexicographical range, ordered from higher to lower strings", since: "2.8.9", group: "sorted_set", handler: range::zrevrangebylex },
    Command { name: "zremrangebyrank", arity: 4, flags: flags!(WRITE), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "sortedset", "slow"], summary: "Remove all members in a sorted set within the given indexes", since: "2.0.0", group: "sorted_set", handler: range::zremrangebyrank },
    Command { name: "zremrangebyscore", arity: 4, flags: flags!(WRITE), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "sortedset", "slow"], summary: "Remove all members in a sorted set within the given scores", since: "1.2.0", group: "sorted_set", handler: range::zremrangebyscore },
    Command { name: "zremrangebylex", arity: 4, flags: flags!(WRITE), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "sortedset", "slow"], summary: "Remove all members in a sorted set between the given lexicographical range", since: "2.8.9", group: "sorted_set", handler: range::zremrangebylex },
    Command { name: "zpopmin", arity: -2, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "sortedset", "fast"], summary: "Remove and return members with the lowest scores in a sorted set", since: "5.0.0", group: "sorted_set", handler: pop::zpopmin },
    Command { name: "zpopmax", arity: -2, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "sortedset", "fast"], summary: "Remove and return members with the highest scores in a sorted set", since: "5.0.0", group: "sorted_set", handler: pop::zpopmax },
    Command { name: "bzpopmin", arity: -3, flags: flags!(WRITE, NOSCRIPT, FAST, BLOCKING), keys: KeySpec::new(1, -2, 1), gate: Gate::Shared, categories: &["write", "sortedset", "fast", "blocking"], summary: "Remove and return the member with the lowest score from one or more sorted sets, or block until one is available", since: "5.0.0", group: "sorted_set", handler: pop::bzpopmin },
    Command { name: "bzpopmax", arity: -3, flags: flags!(WRITE, NOSCRIPT, FAST, BLOCKING), keys: KeySpec::new(1, -2, 1), gate: Gate::Shared, categories: &["write", "sortedset", "fast", "blocking"], summary: "Remove and return the member with the highest score from one or more sorted sets, or block until one is available", since: "5.0.0", group: "sorted_set", handler: pop::bzpopmax },
    Command { name: "bzmpop", arity: -5, flags: flags!(WRITE, BLOCKING, MOVABLEKEYS), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["write", "sortedset", "slow", "blocking"], summary: "Remove and return members with scores in a sorted set or block until one is available", since: "7.0.0", group: "sorted_set", handler: pop::bzmpop },
    Command { name: "zmpop", arity: -4, flags: flags!(WRITE, MOVABLEKEYS), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["write", "sortedset", "slow"], summary: "Remove and return members with scores in a sorted set", since: "7.0.0", group: "sorted_set", handler: pop::zmpop },
    Command { name: "zrandmember", arity: -2, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "sortedset", "slow"], summary: "Get one or multiple random elements from a sorted set", since: "6.2.0", group: "sorted_set", handler: pop::zrandmember },
    Command { name: "zscan", arity: -3, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "sortedset", "slow"], summary: "Incrementally iterate sorted sets elements and associated scores", since: "2.8.0", group: "sorted_set", handler: pop::zscan },
    Command { name: "zunion", arity: -3, flags: flags!(READONLY, MOVABLEKEYS), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["read", "sortedset", "slow"], summary: "Add multiple sorted sets", since: "6.2.0", group: "sorted_set", handler: algebra::zunion },
    Command { name: "zinter", arity: -3, flags: flags!(READONLY, MOVABLEKEYS), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["read", "sortedset", "slow"], summary: "Intersect multiple sorted sets", since: "6.2.0", group: "sorted_set", handler: algebra::zinter },
    Command { name: "zdiff", arity: -3, flags: flags!(READONLY, MOVABLEKEYS), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["read", "sortedset", "slow"], summary: "Subtract multiple sorted sets", since: "6.2.0", group: "sorted_set", handler: algebra::zdiff },
    Command { name: "zunionstore", arity: -4, flags: flags!(WRITE, DENYOOM, MOVABLEKEYS), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "sortedset", "slow"], summary: "Add multiple sorted sets and store the resulting sorted set in a new key", since: "2.0.0", group: "sorted_set", handler: algebra::zunionstore },
    Command { name: "zinterstore", arity: -4, flags: flags!(WRITE, DENYOOM, MOVABLEKEYS), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "sortedset", "slow"], summary: "Intersect multiple sorted sets and store the resulting sorted set in a new key", since: "2.0.0", group: "sorted_set", handler: algebra::zinterstore },
    Command { name: "zdiffstore", arity: -4, flags: flags!(WRITE, DENYOOM, MOVABLEKEYS), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "sortedset", "slow"], summary: "Subtract multiple sorted sets and store the resulting sorted set in a new key", since: "6.2.0", group: "sorted_set", handler: algebra::zdiffstore },
    Command { name: "zintercard", arity: -3, flags: flags!(READONLY, MOVABLEKEYS), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["read", "sortedset", "slow"], summary: "Intersect multiple sorted sets and return the cardinality of the result", since: "7.0.0", group: "sorted_set", handler: algebra::zintercard },
];

const NAN_RESULT: &str = "ERR resulting score is not a number (NaN)";

/// Stores `zset` at `key` (replacing any value and TTL), or deletes `key` when it is empty, as
/// the STORE commands do, with their notification (`event`, or `del` when an existing key goes).
/// Returns the number of members stored.
fn store_zset(
    ctx: &Ctx<'_>,
    guard: &mut WriteGuard<'_>,
    key: &[u8],
    zset: ZSet,
    event: &str,
) -> usize {
    let len = zset.len();
    if len == 0 {
        if guard.remove(key) {
            notify(ctx, GENERIC, "del", key);
        }
    } else {
        guard.set(key, Value::ZSet(Arc::new(zset)), None);
        notify(ctx, ZSET, event, key);
    }
    len
}

/// Writes `members` as Redis replies a range: an array of members, or with scores a flat
/// member/score array in RESP2 and an array of [member, double] pairs in RESP3.
fn reply_members<M: AsRef<[u8]>>(
    out: &mut Out,
    len: usize,
    members: impl Iterator<Item = (M, f64)>,
    withscores: bool,
) {
    let resp3 = out.version == forkless_protocol::RespVersion::Resp3;
    out.array_len(if withscores && !resp3 { len * 2 } else { len });
    for (member, score) in members {
        if withscores && resp3 {
            out.array_len(2);
        }
        out.bulk(member.as_ref());
        if withscores {
            out.double(score);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ZADD and ZINCRBY.

#[derive(Debug, Default, Clone, Copy)]
struct ZaddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

/// What `zsetAdd` did to one member.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Added,
    Updated,
    /// Processed, but the score was already that.
    Same,
    /// Not processed (NX/XX/GT/LT said no).
    Skipped,
}

/// Redis's `zsetAdd` for one member: the outcome and the member's score afterwards; Err on NaN.
fn zset_add(
    zset: &mut ZSet,
    member: &[u8],
    score: f64,
    flags: ZaddFlags,
) -> Result<(Outcome, f64), ()> {
    match zset.score(member) {
        Some(current) => {
            if flags.nx {
                return Ok((Outcome::Skipped, current));
            }
            let score = if flags.incr { score + current } else { score };
            if score.is_nan() {
                return Err(());
            }
            if (flags.lt && score >= current) || (flags.gt && score <= current) {
                return Ok((Outcome::Skipped, current));
            }
            #[expect(clippy::float_cmp, reason = "Redis compares scores with `!=`")]
            if score != current {
                zset.update_score(member, score);
                Ok((Outcome::Updated, score))
            } else {
                Ok((Outcome::Same, current))
            }
        }
        None if flags.xx => Ok((Outcome::Skipped, score)),
        None => {
            zset.insert(Bytes::copy_from_slice(member), score);
            Ok((Outcome::Added, score))
        }
    }
}

pub(crate) fn zadd(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    zadd_generic(ctx, argv, ZaddFlags::default());
}

fn zincrby(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    zadd_generic(
        ctx,
        argv,
        ZaddFlags {
            incr: true,
            ..ZaddFlags::default()
        },
    );
}

/// Redis's `zaddGenericCommand`, shared by ZADD and ZINCRBY (which parses ZADD's options too).
fn zadd_generic(ctx: &mut Ctx<'_>, argv: &[Bytes], mut flags: ZaddFlags) {
    let Some(key) = argv.get(1) else { return };
    let mut first_score = 2;
    while let Some(option) = argv.get(first_score) {
        let flag = match option.to_ascii_lowercase().as_slice() {
            b"nx" => &mut flags.nx,
            b"xx" => &mut flags.xx,
            b"ch" => &mut flags.ch,
            b"incr" => &mut flags.incr,
            b"gt" => &mut flags.gt,
            b"lt" => &mut flags.lt,
            _ => break,
        };
        *flag = true;
        first_score += 1;
    }
    let pairs = argv.get(first_score..).unwrap_or_default();
    if pairs.is_empty() || pairs.len() % 2 != 0 {
        return ctx.out.error(reply::SYNTAX);
    }
    if flags.nx && flags.xx {
        return ctx
            .out
            .error("ERR XX and NX options at the same time are not compatible");
    }
    if (flags.nx && (flags.gt || flags.lt)) || (flags.gt && flags.lt) {
        return ctx
            .out
            .error("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if flags.incr && pairs.len() > 2 {
        return ctx
            .out
            .error("ERR INCR option supports a single increment-element pair");
    }
    let mut scored = Vec::with_capacity(pairs.len() / 2);
    for pair in pairs.chunks_exact(2) {
        let [score, member] = pair else { continue };
        let Some(score) = parse::parse_score(score) else {
            return ctx.out.error(reply::NOT_FLOAT);
        };
        scored.push((score, member));
    }
    let db = ctx.db();
    let mut guard = db.write(&[key], ctx.now_ms);
    let exists = match ZSet::at_key(&mut guard, key) {
        Err(msg) => return ctx.out.error(msg),
        Ok(found) => found.is_some(),
    };
    let (mut added, mut updated, mut processed, mut last_score) = (0, 0, 0, 0.0);
    if exists || !flags.xx {
        if !exists {
            let first_member_len = scored.first().map_or(0, |(_, member)| member.len());
            // Redis 7.0 picks the encoding from the first member alone, not the pair count.
            let zset = ZSet::with_hint(1, first_member_len);
            guard.set(key, Value::ZSet(Arc::new(zset)), None);
        }
        let result = ZSet::change_key(&mut guard, key, |zset| {
            for &(score, member) in &scored {
                let (outcome, score) = zset_add(zset, member, score, flags)?;
                match outcome {
                    Outcome::Added => added += 1,
                    Outcome::Updated => updated += 1,
                    Outcome::Same | Outcome::Skipped => {}
                }
                if outcome != Outcome::Skipped {
                    processed += 1;
                }
                last_score = score;
            }
            Ok(())
        });
        if let Some(Err(())) = result {
            return ctx.out.error(NAN_RESULT);
        }
        if added + updated > 0 {
            notify(ctx, ZSET, if flags.incr { "zincr" } else { "zadd" }, key);
        }
    }
    drop(guard);
    if flags.incr {
        if processed > 0 {
            ctx.out.double(last_score);
        } else {
            ctx.out.null();
        }
    } else {
        ctx.out.int(if flags.ch { added + updated } else { added });
    }
}

// ---------------------------------------------------------------------------------------------
// Single-member reads and ZREM.

fn zrem(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let (Some(key), Some(members)) = (argv.get(1), argv.get(2..)) else {
        return;
    };
    let db = ctx.db();
    let mut guard = db.write(&[key], ctx.now_ms);
    let any_present = match ZSet::at_key(&mut guard, key) {
        Err(msg) => return ctx.out.error(msg),
        Ok(None) => false,
        Ok(Some(zset)) => members.iter().any(|member| zset.score(member).is_some()),
    };
    let removed = if any_present {
        ZSet::change_key(&mut guard, key, |zset| {
            members
                .iter()
                .filter(|member| zset.remove(member).is_some())
                .count()
        })
        .unwrap_or(0)
    } else {
        0
    };
    if removed > 0 {
        notify(ctx, ZSET, "zrem", key);
        notify_del_if_gone(ctx, &mut guard, key);
    }
    drop(guard);
    ctx.out.int(len_i64(removed));
}

fn zscore(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let (Some(key), Some(member)) = (argv.get(1), argv.get(2)) else {
        return;
    };
    ZSet::read_key(ctx, key, |ctx, zset| {
        let out = &mut *ctx.out;
        match zset.and_then(|zset| zset.score(member)) {
            Some(score) => out.double(score),
            None => out.null(),
        }
    });
}

fn zmscore(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let (Some(key), Some(members)) = (argv.get(1), argv.get(2..)) else {
        return;
    };
    ZSet::read_key(ctx, key, |ctx, zset| {
        let out = &mut *ctx.out;
        out.array_len(members.len());
        for member in members {
            match zset.and_then(|zset| zset.score(member)) {
                Some(score) => out.double(score),
                None => out.null(),
            }
        }
    });
}

fn zcard(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(key) = argv.get(1) else { return };
    ZSet::read_key(ctx, key, |ctx, zset| {
        let out = &mut *ctx.out;
        out.int(len_i64(zset.map_or(0, ZSet::len)));
    });
}

fn zcount(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    count_in_range(ctx, argv, Range::score);
}

fn zlexcount(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    count_in_range(ctx, argv, Range::lex);
}

fn count_in_range(
    ctx: &mut Ctx<'_>,
    argv: &[Bytes],
    parse: fn(&[u8], &[u8]) -> Result<Range, &'static str>,
) {
    let (Some(key), Some(min), Some(max)) = (argv.get(1), argv.get(2), argv.get(3)) else {
        return;
    };
    let range = match parse(min, max) {
        Ok(range) => range,
        Err(msg) => return ctx.out.error(msg),
    };
    ZSet::read_key(ctx, key, |ctx, zset| {
        let out = &mut *ctx.out;
        let count = zset.map_or(0, |zset| {
            let (start, end) = range.ranks(zset);
            end.saturating_sub(start)
        });
        out.int(len_i64(count));
    });
}

fn zrank(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    rank(ctx, argv, false);
}

fn zrevrank(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    rank(ctx, argv, true);
}

fn rank(ctx: &mut Ctx<'_>, argv: &[Bytes], reverse: bool) {
    let (Some(key), Some(member)) = (argv.get(1), argv.get(2)) else {
        return;
    };
    ZSet::read_key(ctx, key, |ctx, zset| {
        let out = &mut *ctx.out;
        let rank = zset.and_then(|zset| {
            let rank = zset.rank(member)?;
            Some(if reverse { zset.len() - 1 - rank } else { rank })
        });
        match rank {
            Some(rank) => out.int(len_i64(rank)),
            None => out.null(),
        }
    });
}

/// Returns true if and only if `arg` is the WITHSCORES option.
fn is_withscores(arg: &[u8]) -> bool {
    eq_ignore_case(arg, "withscores")
}
