//! ZUNION ZINTER ZDIFF, their STORE forms, and ZINTERCARD: Redis 7.0's
//! `zunionInterDiffGenericCommand`.
//!
//! Inputs may be sorted sets or plain sets (every member scoring 1). The sources are taken as
//! `Arc` clones of their values under the command's one guard (O(1) each), so the work reads
//! a consistent view and the STORE forms write the destination under that same guard.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use forkless_storage::types::zset::ZSet;
use forkless_storage::{Value, WriteGuard};

use super::parse::parse_score;
use super::{Ctx, eq_ignore_case, is_withscores, reply, reply_members, store_zset};
use crate::cmd::access::len_i64;
use crate::cmd::parse_i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Union,
    Inter,
    Diff,
}

#[derive(Debug, Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

impl Aggregate {
    /// Redis's `zunionInterAggregate`: a NaN sum (inf + -inf) becomes 0.
    fn apply(self, target: &mut f64, value: f64) {
        match self {
            Aggregate::Sum => {
                *target += value;
                if target.is_nan() {
                    *target = 0.0;
                }
            }
            Aggregate::Min => {
                if value < *target {
                    *target = value;
                }
            }
            Aggregate::Max => {
                if value > *target {
                    *target = value;
                }
            }
        }
    }
}

/// One input: absent, a sorted set, or a plain set's members (score 1).
#[derive(Debug)]
enum Source {
    Missing,
    Sorted(Arc<ZSet>),
    Plain(HashSet<Bytes>),
}

impl Source {
    fn from_value(value: Option<&Value>) -> Result<Source, &'static str> {
        match value {
            None => Ok(Source::Missing),
            Some(Value::ZSet(zset)) => Ok(Source::Sorted(Arc::clone(zset))),
            Some(Value::Set(set)) => Ok(Source::Plain(set.iter().map(|m| m.to_bytes()).collect())),
            Some(Value::String(_) | Value::List(_) | Value::Hash(_) | Value::Stream(_)) => {
                Err(reply::WRONGTYPE)
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Source::Missing => 0,
            Source::Sorted(zset) => zset.len(),
            Source::Plain(set) => set.len(),
        }
    }

    fn score(&self, member: &[u8]) -> Option<f64> {
        match self {
            Source::Missing => None,
            Source::Sorted(zset) => zset.score(member),
            Source::Plain(set) => set.contains(member).then_some(1.0),
        }
    }

    fn for_each(&self, mut visit: impl FnMut(&[u8], f64)) {
        match self {
            Source::Missing => {}
            Source::Sorted(zset) => zset
                .iter()
                .for_each(|(member, score)| visit(&member, score)),
            Source::Plain(set) => set.iter().for_each(|member| visit(member, 1.0)),
        }
    }
}

/// `weight * score`, with NaN (0 * inf) read as 0 as Redis does.
fn weighted(weight: f64, score: f64) -> f64 {
    let value = weight * score;
    if value.is_nan() { 0.0 } else { value }
}

#[derive(Debug)]
struct Options {
    weights: Vec<f64>,
    aggregate: Aggregate,
    withscores: bool,
    /// ZINTERCARD's LIMIT; 0 is no limit.
    limit: usize,
}

/// Parses the options after the keys, as Redis does once the keys are looked up.
fn parse_options(
    args: &[Bytes],
    n_sources: usize,
    op: Op,
    store: bool,
    card_only: bool,
) -> Result<Options, &'static str> {
    let mut options = Options {
        weights: vec![1.0; n_sources],
        aggregate: Aggregate::Sum,
        withscores: false,
        limit: 0,
    };
    let mut idx = 0;
    while let Some(word) = args.get(idx) {
        let remaining = args.len() - idx;
        let algebra_option = op != Op::Diff && !card_only;
        if algebra_option && remaining > n_sources && eq_ignore_case(word, "weights") {
            for (weight, arg) in options.weights.iter_mut().zip(args.iter().skip(idx + 1)) {
                *weight = parse_score(arg).ok_or("ERR weight value is not a float")?;
            }
            idx += 1 + n_sources;
        } else if algebra_option && remaining >= 2 && eq_ignore_case(word, "aggregate") {
            let name = args.get(idx + 1).map_or(&b""[..], |arg| &arg[..]);
            options.aggregate = if eq_ignore_case(name, "sum") {
                Aggregate::Sum
            } else if eq_ignore_case(name, "min") {
                Aggregate::Min
            } else if eq_ignore_case(name, "max") {
                Aggregate::Max
            } else {
                return Err(reply::SYNTAX);
            };
            idx += 2;
        } else if !store && !card_only && is_withscores(word) {
            options.withscores = true;
            idx += 1;
        } else if card_only && remaining >= 2 && eq_ignore_case(word, "limit") {
            let limit = args.get(idx + 1).and_then(|arg| parse_i64(arg));
            options.limit = match limit {
                None => return Err("ERR LIMIT can't be negative"),
                Some(n) if n < 0 => return Err("ERR LIMIT can't be negative"),
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            };
            idx += 2;
        } else {
            return Err(reply::SYNTAX);
        }
    }
    Ok(options)
}

/// Computes the result of `op` over `sources` with their weights.
fn compute(op: Op, mut sources: Vec<(Source, f64)>, aggregate: Aggregate) -> ZSet {
    let mut result = ZSet::new();
    match op {
        Op::Union => {
            sources.sort_by_key(|(source, _)| source.len());
            let mut scores: HashMap<Bytes, f64> = HashMap::new();
            for (source, weight) in &sources {
                source.for_each(|member, score| {
                    let value = weighted(*weight, score);
                    match scores.get_mut(member) {
                        Some(target) => aggregate.apply(target, value),
                        None => {
                            scores.insert(Bytes::copy_from_slice(member), value);
                        }
                    }
                });
            }
            for (member, score) in scores {
                result.insert(member, score);
            }
        }
        Op::Inter => {
            sources.sort_by_key(|(source, _)| source.len());
            let Some(((first, first_weight), others)) = sources.split_first() else {
                return result;
            };
            first.for_each(|member, score| {
                let mut total = weighted(*first_weight, score);
                for (other, weight) in others {
                    let Some(score) = other.score(member) else {
                        return;
                    };
                    aggregate.apply(&mut total, weighted(*weight, score));
                }
                result.insert(member, total);
            });
        }
        Op::Diff => {
            let Some(((first, _), others)) = sources.split_first() else {
                return result;
            };
            first.for_each(|member, score| {
                if others
                    .iter()
                    .all(|(other, _)| other.score(member).is_none())
                {
                    result.insert(member, score);
                }
            });
        }
    }
    result
}

/// Why the `numkeys` and source keys of a ZUNION-family command are refused. Display gives
/// Redis 7.0's reply.
#[derive(Debug)]
enum SourceKeysError<'a> {
    /// `numkeys` is not an integer.
    NotInteger,
    /// `numkeys` is below 1; the command's name as the client sent it.
    NoKeys { command: &'a [u8] },
    /// Fewer keys than `numkeys`.
    Syntax,
}

impl std::fmt::Display for SourceKeysError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceKeysError::NotInteger => f.write_str(reply::NOT_INTEGER),
            SourceKeysError::NoKeys { command } => write!(
                f,
                "ERR at least 1 input key is needed for '{}' command",
                String::from_utf8_lossy(command).to_ascii_lowercase()
            ),
            SourceKeysError::Syntax => f.write_str(reply::SYNTAX),
        }
    }
}

/// Parses `numkeys` at `numkeys_idx`: the source keys, or why they are refused.
fn source_keys(argv: &[Bytes], numkeys_idx: usize) -> Result<&[Bytes], SourceKeysError<'_>> {
    let n_keys = argv
        .get(numkeys_idx)
        .and_then(|arg| parse_i64(arg))
        .ok_or(SourceKeysError::NotInteger)?;
    if n_keys < 1 {
        let command = argv.first().map_or(&b""[..], |name| name);
        return Err(SourceKeysError::NoKeys { command });
    }
    let n_keys = usize::try_from(n_keys).unwrap_or(usize::MAX);
    argv.get(numkeys_idx + 1..)
        .and_then(|rest| rest.get(..n_keys))
        .ok_or(SourceKeysError::Syntax)
}

/// ZUNION / ZINTER / ZDIFF / ZINTERCARD: read-only, counting a hit or miss per source.
fn read_command(ctx: &mut Ctx<'_>, argv: &[Bytes], op: Op, card_only: bool) {
    let keys = match source_keys(argv, 1) {
        Ok(keys) => keys,
        Err(err) => return ctx.out.error(&err.to_string()),
    };
    let key_refs: Vec<&[u8]> = keys.iter().map(|key| &key[..]).collect();
    let db = ctx.db();
    let guard = db.read(&key_refs, ctx.now_ms);
    let mut sources = Vec::with_capacity(keys.len());
    for key in &key_refs {
        let value = guard.get(key).map(forkless_storage::Entry::value);
        ctx.hit_or_miss(value.is_some(), key);
        match Source::from_value(value) {
            Ok(source) => sources.push(source),
            Err(msg) => return ctx.out.error(msg),
        }
    }
    drop(guard);
    let options_args = argv.get(2 + keys.len()..).unwrap_or_default();
    let options = match parse_options(options_args, keys.len(), op, false, card_only) {
        Ok(options) => options,
        Err(msg) => return ctx.out.error(msg),
    };
    if card_only {
        return ctx
            .out
            .int(len_i64(inter_card(&mut sources, options.limit)));
    }
    let weighted_sources = sources.into_iter().zip(options.weights).collect();
    let result = compute(op, weighted_sources, options.aggregate);
    reply_members(ctx.out, result.len(), result.iter(), options.withscores);
}

/// The size of the intersection, counting up to `limit` (0: no limit).
fn inter_card(sources: &mut [Source], limit: usize) -> usize {
    sources.sort_by_key(Source::len);
    let Some((first, others)) = sources.split_first() else {
        return 0;
    };
    let mut count = 0;
    let mut done = false;
    first.for_each(|member, _| {
        if !done && others.iter().all(|other| other.score(member).is_some()) {
            count += 1;
            done = limit != 0 && count >= limit;
        }
    });
    count
}

/// ZUNIONSTORE / ZINTERSTORE / ZDIFFSTORE: destination and sources under one guard.
fn store_command(ctx: &mut Ctx<'_>, argv: &[Bytes], op: Op) {
    let Some(dst) = argv.get(1) else { return };
    let keys = match source_keys(argv, 2) {
        Ok(keys) => keys,
        Err(err) => return ctx.out.error(&err.to_string()),
    };
    let mut key_refs: Vec<&[u8]> = vec![dst];
    key_refs.extend(keys.iter().map(|key| &key[..]));
    let db = ctx.db();
    let mut guard = db.write(&key_refs, ctx.now_ms);
    match store_result(
        ctx,
        &mut guard,
        dst,
        keys,
        argv.get(3 + keys.len()..).unwrap_or_default(),
        op,
    ) {
        Ok(stored) => {
            drop(guard);
            ctx.out.int(len_i64(stored));
        }
        Err(msg) => {
            drop(guard);
            ctx.out.error(msg);
        }
    }
}

fn store_result(
    ctx: &Ctx<'_>,
    guard: &mut WriteGuard<'_>,
    dst: &[u8],
    keys: &[Bytes],
    options_args: &[Bytes],
    op: Op,
) -> Result<usize, &'static str> {
    let mut sources = Vec::with_capacity(keys.len());
    for key in keys {
        sources.push(Source::from_value(
            guard.get(key).map(forkless_storage::Entry::value),
        )?);
    }
    let options = parse_options(options_args, keys.len(), op, true, false)?;
    let weighted_sources = sources.into_iter().zip(options.weights).collect();
    let result = compute(op, weighted_sources, options.aggregate);
    let event = match op {
        Op::Union => "zunionstore",
        Op::Inter => "zinterstore",
        Op::Diff => "zdiffstore",
    };
    Ok(store_zset(ctx, guard, dst, result, event))
}

pub(super) fn zunion(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    read_command(ctx, argv, Op::Union, false);
}

pub(super) fn zinter(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    read_command(ctx, argv, Op::Inter, false);
}

pub(super) fn zdiff(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    read_command(ctx, argv, Op::Diff, false);
}

pub(super) fn zintercard(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    read_command(ctx, argv, Op::Inter, true);
}

pub(super) fn zunionstore(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    store_command(ctx, argv, Op::Union);
}

pub(super) fn zinterstore(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    store_command(ctx, argv, Op::Inter);
}

pub(super) fn zdiffstore(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    store_command(ctx, argv, Op::Diff);
}
