//! The ZRANGE family (Redis 7.0's `zrangeGenericCommand`) and ZREMRANGEBY{RANK,SCORE,LEX}.
//!
//! Every query resolves to a run of ascending ranks in O(log n), then walks it: O(log n + m)
//! for m members returned, as Redis's skiplist.

use crate::notify::{ZSET, notify, notify_del_if_gone};
use bytes::Bytes;
use forkless_storage::types::zset::ZSet;

use super::parse::{Range, rank_range};
use super::{Ctx, eq_ignore_case, is_withscores, reply, reply_members, store_zset};
use crate::cmd::access::{Collection, len_i64};
use crate::cmd::parse_i64;

/// How the two range arguments are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// ZRANGE and ZRANGESTORE: BYSCORE or BYLEX may choose, by rank otherwise.
    Auto,
    Rank,
    Score,
    Lex,
}

/// The range a query asks for.
#[derive(Debug)]
enum Bounds {
    Ranks(i64, i64),
    Values(Range),
}

#[derive(Debug)]
struct Query {
    bounds: Bounds,
    reverse: bool,
    withscores: bool,
    offset: i64,
    /// -1: no limit.
    limit: i64,
}

/// Parses `<key> <min> <max> [options]` from `key_idx` on, as `zrangeGenericCommand`: options
/// first, then conflicts, then the range itself.
fn parse_query(
    argv: &[Bytes],
    key_idx: usize,
    mut kind: Kind,
    reverse: Option<bool>,
    store: bool,
) -> Result<Query, &'static str> {
    let mut query = Query {
        bounds: Bounds::Ranks(0, 0),
        reverse: reverse.unwrap_or(false),
        withscores: false,
        offset: 0,
        limit: -1,
    };
    let mut direction_open = reverse.is_none();
    let options = argv.get(key_idx + 3..).unwrap_or_default();
    let mut idx = 0;
    while let Some(option) = options.get(idx) {
        if !store && is_withscores(option) {
            query.withscores = true;
        } else if eq_ignore_case(option, "limit")
            && let (Some(offset), Some(limit)) = (options.get(idx + 1), options.get(idx + 2))
        {
            query.offset = parse_i64(offset).ok_or(reply::NOT_INTEGER)?;
            query.limit = parse_i64(limit).ok_or(reply::NOT_INTEGER)?;
            idx += 2;
        } else if direction_open && eq_ignore_case(option, "rev") {
            query.reverse = true;
            direction_open = false;
        } else if kind == Kind::Auto && eq_ignore_case(option, "bylex") {
            kind = Kind::Lex;
        } else if kind == Kind::Auto && eq_ignore_case(option, "byscore") {
            kind = Kind::Score;
        } else {
            return Err(reply::SYNTAX);
        }
        idx += 1;
    }
    if kind == Kind::Auto {
        kind = Kind::Rank;
    }
    if query.limit != -1 && kind == Kind::Rank {
        return Err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
    }
    if query.withscores && kind == Kind::Lex {
        return Err("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
    }
    let (Some(first), Some(second)) = (argv.get(key_idx + 1), argv.get(key_idx + 2)) else {
        return Err(reply::SYNTAX);
    };
    // A reversed score or lex range is written max first.
    let (min, max) = if query.reverse && kind != Kind::Rank {
        (second, first)
    } else {
        (first, second)
    };
    query.bounds = match kind {
        Kind::Auto | Kind::Rank => Bounds::Ranks(
            parse_i64(min).ok_or(reply::NOT_INTEGER)?,
            parse_i64(max).ok_or(reply::NOT_INTEGER)?,
        ),
        Kind::Score => Bounds::Values(Range::score(min, max)?),
        Kind::Lex => Bounds::Values(Range::lex(min, max)?),
    };
    Ok(query)
}

impl Query {
    /// The members the query selects, in reply order: (first rank, count, descending).
    fn select(&self, zset: &ZSet) -> (usize, usize, bool) {
        let len = zset.len();
        match &self.bounds {
            Bounds::Ranks(start, end) => {
                let (start, end) = rank_range(*start, *end, len);
                if start >= end {
                    (0, 0, false)
                } else if self.reverse {
                    (len - 1 - start, end - start, true)
                } else {
                    (start, end - start, false)
                }
            }
            Bounds::Values(range) => {
                let (start, end) = range.ranks(zset);
                let in_range = end.saturating_sub(start);
                let Ok(offset) = usize::try_from(self.offset) else {
                    return (0, 0, false);
                };
                if offset >= in_range {
                    return (0, 0, false);
                }
                let mut count = in_range - offset;
                if let Ok(limit) = usize::try_from(self.limit) {
                    count = count.min(limit);
                }
                if self.reverse {
                    (end - 1 - offset, count, true)
                } else {
                    (start + offset, count, false)
                }
            }
        }
    }
}

/// Runs a range query read-only and replies with the members.
fn range_command(ctx: &mut Ctx<'_>, argv: &[Bytes], kind: Kind, reverse: Option<bool>) {
    let Some(key) = argv.get(1) else { return };
    let query = match parse_query(argv, 1, kind, reverse, false) {
        Ok(query) => query,
        Err(msg) => return ctx.out.error(msg),
    };
    ZSet::read_key(ctx, key, |ctx, zset| {
        let out = &mut *ctx.out;
        let Some(zset) = zset else {
            return out.array_len(0);
        };
        let (rank, count, descending) = query.select(zset);
        reply_members(
            out,
            count,
            zset.range(rank, count, descending),
            query.withscores,
        );
    });
}

pub(super) fn zrange(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    range_command(ctx, argv, Kind::Auto, None);
}

pub(super) fn zrevrange(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    range_command(ctx, argv, Kind::Rank, Some(true));
}

pub(super) fn zrangebyscore(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    range_command(ctx, argv, Kind::Score, Some(false));
}

pub(super) fn zrevrangebyscore(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    range_command(ctx, argv, Kind::Score, Some(true));
}

pub(super) fn zrangebylex(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    range_command(ctx, argv, Kind::Lex, Some(false));
}

pub(super) fn zrevrangebylex(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    range_command(ctx, argv, Kind::Lex, Some(true));
}

/// ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]: both keys under one
/// guard; an empty result deletes `dst`.
pub(super) fn zrangestore(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let (Some(dst), Some(src)) = (argv.get(1), argv.get(2)) else {
        return;
    };
    let query = match parse_query(argv, 2, Kind::Auto, None, true) {
        Ok(query) => query,
        Err(msg) => return ctx.out.error(msg),
    };
    let db = ctx.db();
    let mut guard = db.write(&[dst, src], ctx.now_ms);
    // Only the selected members are copied out of the source, never the whole set.
    let selected = guard.get(src).map(|entry| {
        ZSet::from_value(entry.value()).map(|zset| {
            let (rank, count, descending) = query.select(zset);
            zset.range(rank, count, descending)
                .map(|(member, score)| (member.to_bytes(), score))
                .collect::<Vec<_>>()
        })
    });
    ctx.hit_or_miss(selected.is_some(), src);
    let mut result = ZSet::new();
    match selected {
        Some(None) => return ctx.out.error(reply::WRONGTYPE),
        Some(Some(members)) => {
            for (member, score) in members {
                result.insert(member, score);
            }
        }
        None => {}
    }
    let stored = store_zset(ctx, &mut guard, dst, result, "zrangestore");
    drop(guard);
    ctx.out.int(len_i64(stored));
}

// ---------------------------------------------------------------------------------------------
// ZREMRANGEBY*.

/// Removes the members of one resolved range; replies with how many went.
fn remove_range(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    event: &str,
    ranks: impl FnOnce(&ZSet) -> (usize, usize),
) {
    let db = ctx.db();
    let mut guard = db.write(&[key], ctx.now_ms);
    let (start, end) = match ZSet::at_key(&mut guard, key) {
        Err(msg) => return ctx.out.error(msg),
        Ok(None) => (0, 0),
        Ok(Some(zset)) => ranks(zset),
    };
    let removed = if start < end {
        ZSet::change_key(&mut guard, key, |zset| zset.remove_ranks(start, end).len()).unwrap_or(0)
    } else {
        0
    };
    if removed > 0 {
        notify(ctx, ZSET, event, key);
        notify_del_if_gone(ctx, &mut guard, key);
    }
    drop(guard);
    ctx.out.int(len_i64(removed));
}

pub(super) fn zremrangebyrank(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let (Some(key), Some(start), Some(end)) = (argv.get(1), argv.get(2), argv.get(3)) else {
        return;
    };
    let (Some(start), Some(end)) = (parse_i64(start), parse_i64(end)) else {
        return ctx.out.error(reply::NOT_INTEGER);
    };
    remove_range(ctx, key, "zremrangebyrank", |zset| {
        rank_range(start, end, zset.len())
    });
}

pub(super) fn zremrangebyscore(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    remove_value_range(ctx, argv, "zremrangebyscore", Range::score);
}

pub(super) fn zremrangebylex(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    remove_value_range(ctx, argv, "zremrangebylex", Range::lex);
}

fn remove_value_range(
    ctx: &mut Ctx<'_>,
    argv: &[Bytes],
    event: &str,
    parse: fn(&[u8], &[u8]) -> Result<Range, &'static str>,
) {
    let (Some(key), Some(min), Some(max)) = (argv.get(1), argv.get(2), argv.get(3)) else {
        return;
    };
    match parse(min, max) {
        Ok(range) => remove_range(ctx, key, event, |zset| range.ranks(zset)),
        Err(msg) => ctx.out.error(msg),
    }
}
