//! Stream commands: XADD XRANGE XREVRANGE XLEN XDEL XTRIM XSETID XREAD, and the consumer-group
//! commands in `stream/group.rs`.
//!
//! Each follows Redis 7.0's `t_stream.c` in the order of its checks, because that order is
//! visible to clients (XADD refuses `0-0` before it looks the key up; XRANGE parses its ids and
//! COUNT before the lookup). A stream stays in the keyspace when its last entry goes (XDEL,
//! XTRIM), as in Redis: only DEL and friends remove it.
//!
//! Effects (`crate::effects`): XADD with a generated id logs the id it generated, and an
//! approximate trim (`~`) logs the exact length or first id it left, as Redis propagates them.

use std::sync::Arc;

use bytes::Bytes;
use forkless_protocol::Out;
use forkless_storage::types::stream::{Fields, Stream, StreamId};
use forkless_storage::{Value, WriteGuard};

use super::access::{Collection, Reply, len_i64};
use super::meta::{Gate, KeySpec, flags};
use super::{Command, Ctx, eq_ignore_case, parse_i64, reply};
use crate::blocking::TimeoutReply;
use crate::notify::{STREAM, notify};

pub(crate) mod group;

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "xadd", arity: -5, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "stream", "fast"], summary: "Appends a new entry to a stream", since: "5.0.0", group: "stream", handler: xadd },
    Command { name: "xrange", arity: -4, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "stream", "slow"], summary: "Return a range of elements in a stream, with IDs matching the specified IDs interval", since: "5.0.0", group: "stream", handler: xrange },
    Command { name: "xrevrange", arity: -4, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "stream", "slow"], summary: "Return a range of elements in a stream, with IDs matching the specified IDs interval, in reverse order (from greater to smaller IDs) compared to XRANGE", since: "5.0.0", group: "stream", handler: xrevrange },
    Command { name: "xlen", arity: 2, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "stream", "fast"], summary: "Return the number of entries in a stream", since: "5.0.0", group: "stream", handler: xlen },
    Command { name: "xdel", arity: -3, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "stream", "fast"], summary: "Removes the specified entries from the stream. Returns the number of items actually deleted, that may be different from the number of IDs passed in case certain IDs do not exist.", since: "5.0.0", group: "stream", handler: xdel },
    Command { name: "xtrim", arity: -4, flags: flags!(WRITE), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "stream", "slow"], summary: "Trims the stream to (approximately if '~' is passed) a certain size", since: "5.0.0", group: "stream", handler: xtrim },
    Command { name: "xsetid", arity: -3, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "stream", "fast"], summary: "An internal command for replicating stream values", since: "5.0.0", group: "stream", handler: xsetid },
    Command { name: "xread", arity: -4, flags: flags!(READONLY, BLOCKING, MOVABLEKEYS), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["read", "stream", "slow", "blocking"], summary: "Return never seen elements in multiple streams, with IDs greater than the ones reported by the caller for each stream. Can block.", since: "5.0.0", group: "stream", handler: xread },
    Command { name: "xreadgroup", arity: -7, flags: flags!(WRITE, BLOCKING, MOVABLEKEYS), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["write", "stream", "slow", "blocking"], summary: "Return new entries from a stream using a consumer group, or access the history of the pending entries for a given consumer. Can block.", since: "5.0.0", group: "stream", handler: group::xreadgroup },
    Command { name: "xack", arity: -4, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "stream", "fast"], summary: "Marks a pending message as correctly processed, effectively removing it from the pending entries list of the consumer group. Return value of the command is the number of messages successfully acknowledged, that is, the IDs we were actually able to resolve in the PEL.", since: "5.0.0", group: "stream", handler: group::xack },
    Command { name: "xpending", arity: -3, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "stream", "slow"], summary: "Return information and entries from a stream consumer group pending entries list, that are messages fetched but never acknowledged.", since: "5.0.0", group: "stream", handler: group::xpending },
    Command { name: "xclaim", arity: -6, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "stream", "fast"], summary: "Changes (or acquires) ownership of a message in a consumer group, as if the message was delivered to the specified consumer.", since: "5.0.0", group: "stream", handler: group::xclaim },
    Command { name: "xautoclaim", arity: -6, flags: flags!(WRITE, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "stream", "fast"], summary: "Changes (or acquires) ownership of messages in a consumer group, as if the messages were delivered to the specified consumer.", since: "6.2.0", group: "stream", handler: group::xautoclaim },
    Command { name: "xgroup", arity: -2, flags: flags!(), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["slow"], summary: "A container for consumer groups commands", since: "5.0.0", group: "stream", handler: group::xgroup },
    Command { name: "xinfo", arity: -2, flags: flags!(), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["slow"], summary: "A container for stream introspection commands", since: "5.0.0", group: "stream", handler: group::xinfo },
];

/// "ERR Invalid stream ID specified as stream command argument".
pub(crate) const INVALID_ID: &str = "ERR Invalid stream ID specified as stream command argument";
const XADD_ID_TOO_SMALL: &str =
    "ERR The ID specified in XADD is equal or smaller than the target stream top item";
const XADD_ID_ZERO: &str = "ERR The ID specified in XADD must be greater than 0-0";
const EXHAUSTED: &str =
    "ERR The stream has exhausted the last possible ID, unable to add more items";
const MAXLEN_MINID: &str =
    "ERR syntax error, MAXLEN and MINID options at the same time are not compatible";
const MAXLEN_NEGATIVE: &str = "ERR The MAXLEN argument must be >= 0.";
const LIMIT_NEGATIVE: &str = "ERR The LIMIT argument must be >= 0.";
const LIMIT_WITHOUT_STRATEGY: &str =
    "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy";
const XTRIM_WITHOUT_STRATEGY: &str =
    "ERR syntax error, XTRIM must be called with a trimming strategy";
const LIMIT_WITHOUT_TILDE: &str =
    "ERR syntax error, LIMIT cannot be used without the special ~ option";
const INVALID_START: &str = "ERR invalid start ID for the interval";
const INVALID_END: &str = "ERR invalid end ID for the interval";

/// Argument `idx`; arity checks guarantee the fixed positions, and a missing one reads as empty.
pub(crate) fn arg(argv: &[Bytes], idx: usize) -> &[u8] {
    argv.get(idx).map_or(&[], |arg| arg)
}

/// An id as a bulk-string argument or reply.
pub(crate) fn id_arg(id: StreamId) -> Bytes {
    Bytes::from(id.to_string())
}

/// `streamGenericParseIDOrReply`: `-` and `+` (unless `strict`), `ms-seq`, or `ms` with
/// `missing_seq`. Longer than 127 bytes is invalid, as Redis's buffer.
pub(crate) fn parse_id(arg: &[u8], missing_seq: u64, strict: bool) -> Reply<StreamId> {
    if arg.len() > 127 {
        return Err(INVALID_ID);
    }
    match arg {
        b"-" if !strict => Ok(StreamId::MIN),
        b"+" if !strict => Ok(StreamId::MAX),
        _ => StreamId::parse(arg, missing_seq).ok_or(INVALID_ID),
    }
}

/// An XADD id: explicit (`ms-seq`), `ms-*` (the sequence generated), or `ms` alone (seq 0).
/// Returns the id and whether the sequence was given.
fn parse_xadd_id(arg: &[u8]) -> Reply<(StreamId, bool)> {
    if let Some(ms) = arg.strip_suffix(b"-*") {
        if arg.len() <= 127 && !ms.is_empty() && !ms.contains(&b'-') {
            let id = StreamId::parse(ms, 0).ok_or(INVALID_ID)?;
            return Ok((id, false));
        }
    }
    parse_id(arg, 0, true).map(|id| (id, true))
}

/// An interval bound as `streamParseIntervalIDOrReply` reads it: `(` makes it exclusive (and
/// strict), stepped to the next (start) or previous (end) id.
fn parse_bound(arg: &[u8], missing_seq: u64, start: bool) -> Reply<StreamId> {
    match arg.strip_prefix(b"(") {
        Some(rest) if arg.len() > 1 => {
            let id = parse_id(rest, missing_seq, true)?;
            if start {
                id.next().ok_or(INVALID_START)
            } else {
                id.prev().ok_or(INVALID_END)
            }
        }
        _ => parse_id(arg, missing_seq, false),
    }
}

/// Writes an id as a bulk string, formatted on the stack.
pub(crate) fn bulk_id(out: &mut Out, id: StreamId) {
    let mut ms = itoa::Buffer::new();
    let mut seq = itoa::Buffer::new();
    let (ms, seq) = (ms.format(id.ms).as_bytes(), seq.format(id.seq).as_bytes());
    // Two u64s of at most 20 digits each and the dash.
    let mut text = [0u8; 41];
    let len = ms.len() + 1 + seq.len();
    text[..ms.len()].copy_from_slice(ms);
    text[ms.len()] = b'-';
    text[ms.len() + 1..len].copy_from_slice(seq);
    out.bulk(&text[..len]);
}

/// Writes one entry as `[id, [field, value, ...]]`.
pub(crate) fn write_entry(out: &mut Out, id: StreamId, fields: Fields<'_>) {
    out.array_len(2);
    bulk_id(out, id);
    out.array_len(fields.len());
    for field in fields {
        out.bulk(field);
    }
}

/// Writes one entry as `[id, [field, value, ...]]`.
pub(crate) fn reply_entry(ctx: &mut Ctx<'_>, id: StreamId, fields: Fields<'_>) {
    write_entry(ctx.out, id, fields);
}

/// The stream at `key` under a write guard: None if absent, WRONGTYPE for another type.
pub(crate) fn stream_at<'g>(
    guard: &'g mut WriteGuard<'_>,
    key: &[u8],
) -> Reply<Option<&'g Stream>> {
    Stream::at_key(guard, key)
}

/// Changes the stream at `key` (which the caller has found), copying it once if a snapshot
/// holds it.
pub(crate) fn change<R>(
    guard: &mut WriteGuard<'_>,
    key: &[u8],
    change: impl FnOnce(&mut Stream) -> R,
) -> Option<R> {
    Stream::change_key(guard, key, change)
}

// ---------------------------------------------------------------------------------------------
// Trimming arguments (XADD and XTRIM).

/// What to trim to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    None,
    MaxLen(usize),
    MinId(StreamId),
}

/// The parsed arguments of XADD / XTRIM (`streamAddTrimArgs`).
#[derive(Debug)]
struct AddTrimArgs {
    strategy: Strategy,
    approx: bool,
    limit: usize,
    no_mkstream: bool,
    /// XADD's id: (id, sequence given), None for `*`.
    id: Option<(StreamId, bool)>,
    /// Where the id is (XADD).
    id_pos: usize,
}

/// `streamParseAddOrTrimArgsOrReply`.
fn parse_add_trim(argv: &[Bytes], xadd: bool) -> Reply<AddTrimArgs> {
    let mut args = AddTrimArgs {
        strategy: Strategy::None,
        approx: false,
        limit: 0,
        no_mkstream: false,
        id: None,
        id_pos: argv.len(),
    };
    let mut limit_given = false;
    let mut i = 2;
    while i < argv.len() {
        let more = argv.len() - 1 - i;
        let opt = arg(argv, i);
        if xadd && opt == b"*" {
            args.id_pos = i;
            break;
        } else if eq_ignore_case(opt, "maxlen") && more > 0 {
            if args.strategy != Strategy::None {
                return Err(MAXLEN_MINID);
            }
            args.approx = false;
            let next = arg(argv, i + 1);
            if more >= 2 && next == b"~" {
                args.approx = true;
                i += 1;
            } else if more >= 2 && next == b"=" {
                i += 1;
            }
            let n = parse_i64(arg(argv, i + 1)).ok_or(reply::NOT_INTEGER)?;
            let n = usize::try_from(n).map_err(|_| MAXLEN_NEGATIVE)?;
            i += 1;
            args.strategy = Strategy::MaxLen(n);
        } else if eq_ignore_case(opt, "minid") && more > 0 {
            if args.strategy != Strategy::None {
                return Err(MAXLEN_MINID);
            }
            args.approx = false;
            let next = arg(argv, i + 1);
            if more >= 2 && next == b"~" {
                args.approx = true;
                i += 1;
            } else if more >= 2 && next == b"=" {
                i += 1;
            }
            let id = parse_id(arg(argv, i + 1), 0, true)?;
            i += 1;
            args.strategy = Strategy::MinId(id);
        } else if eq_ignore_case(opt, "limit") && more > 0 {
            let n = parse_i64(arg(argv, i + 1)).ok_or(reply::NOT_INTEGER)?;
            args.limit = usize::try_from(n).map_err(|_| LIMIT_NEGATIVE)?;
            limit_given = true;
            i += 1;
        } else if xadd && eq_ignore_case(opt, "nomkstream") {
            args.no_mkstream = true;
        } else if xadd {
            args.id = Some(parse_xadd_id(opt)?);
            args.id_pos = i;
            break;
        } else {
            return Err(reply::SYNTAX);
        }
        i += 1;
    }
    if args.limit != 0 && args.strategy == Strategy::None {
        return Err(LIMIT_WITHOUT_STRATEGY);
    }
    if !xadd && args.strategy == Strategy::None {
        return Err(XTRIM_WITHOUT_STRATEGY);
    }
    if limit_given {
        if !args.approx {
            return Err(LIMIT_WITHOUT_TILDE);
        }
    } else if args.approx {
        // Redis caps an approximate trim at 100 nodes' worth of entries, within 10,000 (for a
        // node limit of 0) and 1,000,000.
        let per_node = forkless_storage::types::limits::ENCODING_LIMITS.stream_node_max_entries();
        args.limit = match per_node.saturating_mul(100) {
            0 => 10_000,
            n => n.min(1_000_000),
        };
    }
    Ok(args)
}

/// Trims `stream` as `args` say; returns the number of entries removed.
fn trim(stream: &mut Stream, args: &AddTrimArgs) -> usize {
    match args.strategy {
        Strategy::None => 0,
        Strategy::MaxLen(n) => stream.trim(Some(n), None, args.approx, args.limit),
        Strategy::MinId(id) => stream.trim(None, Some(id), args.approx, args.limit),
    }
}

/// The trimming arguments of an effect: an approximate trim becomes the exact one it did.
fn trim_effect(stream: &Stream, args: &AddTrimArgs) -> Vec<Bytes> {
    let (name, value) = match args.strategy {
        Strategy::None => return Vec::new(),
        Strategy::MaxLen(n) if !args.approx => ("MAXLEN", Bytes::from(n.to_string())),
        Strategy::MaxLen(_) => ("MAXLEN", Bytes::from(stream.len().to_string())),
        Strategy::MinId(id) if !args.approx => ("MINID", id_arg(id)),
        Strategy::MinId(_) => ("MINID", id_arg(stream.first_id())),
    };
    vec![
        Bytes::from_static(name.as_bytes()),
        Bytes::from_static(b"="),
        value,
    ]
}

// ---------------------------------------------------------------------------------------------
// XADD, XLEN, XRANGE, XREVRANGE, XDEL, XTRIM, XSETID.

/// The id XADD gives a new entry (`streamAppendItem`), or its error.
fn next_id(last: StreamId, given: Option<(StreamId, bool)>, now_ms: u64) -> Reply<StreamId> {
    let id = match given {
        Some((id, true)) => id,
        Some((id, false)) if id.ms == last.ms => {
            if last.seq == u64::MAX {
                return Err(XADD_ID_TOO_SMALL);
            }
            StreamId::new(last.ms, last.seq + 1)
        }
        Some((id, false)) => id,
        None if now_ms > last.ms => StreamId::new(now_ms, 0),
        None => last.next().ok_or(EXHAUSTED)?,
    };
    if id <= last {
        return Err(XADD_ID_TOO_SMALL);
    }
    Ok(id)
}

/// XADD key [NOMKSTREAM] [(MAXLEN|MINID) [=|~] threshold [LIMIT count]] (*|id) field value ...
fn xadd(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let args = match parse_add_trim(argv, true) {
        Ok(args) => args,
        Err(msg) => return ctx.out.error(msg),
    };
    let fields = argv.get(args.id_pos + 1..).unwrap_or_default();
    if fields.len() < 2 || fields.len() % 2 == 1 {
        return ctx
            .out
            .error("ERR wrong number of arguments for 'xadd' command");
    }
    if args.id == Some((StreamId::MIN, true)) {
        return ctx.out.error(XADD_ID_ZERO);
    }
    let key = arg(argv, 1);
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let last = match stream_at(&mut guard, key) {
        Err(msg) => return ctx.out.error(msg),
        Ok(None) if args.no_mkstream => return ctx.out.null(),
        Ok(None) => StreamId::MIN,
        Ok(Some(stream)) => stream.last_id(),
    };
    if last == StreamId::MAX {
        return ctx.out.error(EXHAUSTED);
    }
    let id = match next_id(last, args.id, ctx.now_ms) {
        Ok(id) => id,
        Err(msg) => return ctx.out.error(msg),
    };
    let field_refs: Vec<&[u8]> = fields.iter().map(|f| &f[..]).collect();
    if guard.get(key).is_none() {
        guard.set(key, Value::Stream(Arc::new(Stream::new())), None);
    }
    let (trimmed, trim_args) = change(&mut guard, key, |stream| {
        stream.append(id, &field_refs);
        let trimmed = trim(stream, &args);
        (trimmed, trim_effect(stream, &args))
    })
    .unwrap_or_default();
    drop(guard);
    ctx.out.bulk(id.to_string().as_bytes());
    notify(ctx, STREAM, "xadd", key);
    if trimmed > 0 {
        notify(ctx, STREAM, "xtrim", key);
    }
    if args.id.is_none_or(|(_, seq_given)| !seq_given) || args.approx {
        ctx.rewrite_effect(|| {
            let mut effect = vec![Bytes::from_static(b"XADD"), Bytes::copy_from_slice(key)];
            if args.no_mkstream {
                effect.push(Bytes::from_static(b"NOMKSTREAM"));
            }
            effect.extend(trim_args);
            effect.push(id_arg(id));
            effect.extend(fields.iter().cloned());
            effect
        });
    }
}

/// XLEN key.
fn xlen(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    Stream::read_key(ctx, arg(argv, 1), |ctx, stream| {
        ctx.out.int(stream.map_or(0, |s| len_i64(s.len())));
    });
}

fn xrange(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    range(ctx, argv, false);
}

fn xrevrange(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    range(ctx, argv, true);
}

/// XRANGE key start end [COUNT n] / XREVRANGE key end start [COUNT n].
fn range(ctx: &mut Ctx<'_>, argv: &[Bytes], rev: bool) {
    let (start_arg, end_arg) = if rev {
        (arg(argv, 3), arg(argv, 2))
    } else {
        (arg(argv, 2), arg(argv, 3))
    };
    let start = match parse_bound(start_arg, 0, true) {
        Ok(id) => id,
        Err(msg) => return ctx.out.error(msg),
    };
    let end = match parse_bound(end_arg, u64::MAX, false) {
        Ok(id) => id,
        Err(msg) => return ctx.out.error(msg),
    };
    let mut count: Option<usize> = None;
    let mut j = 4;
    while j < argv.len() {
        if eq_ignore_case(arg(argv, j), "count") && j + 1 < argv.len() {
            match parse_i64(arg(argv, j + 1)) {
                Some(n) => count = Some(usize::try_from(n).unwrap_or(0)),
                None => return ctx.out.error(reply::NOT_INTEGER),
            }
            j += 2;
        } else {
            return ctx.out.error(reply::SYNTAX);
        }
    }
    Stream::read_key(ctx, arg(argv, 1), |ctx, stream| {
        let Some(stream) = stream else {
            return ctx.out.array_len(0);
        };
        if count == Some(0) {
            return ctx.out.null_array();
        }
        let limit = count.unwrap_or(usize::MAX);
        let entries: Vec<(StreamId, Fields<'_>)> = if rev {
            stream.range(start, end).rev().take(limit).collect()
        } else {
            stream.range_forward(start, end).take(limit).collect()
        };
        ctx.out.array_len(entries.len());
        for (id, fields) in entries {
            reply_entry(ctx, id, fields);
        }
    });
}

/// XDEL key id [id ...]: the number deleted.
fn xdel(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let mut ids = Vec::with_capacity(argv.len().saturating_sub(2));
    for id_arg in argv.get(2..).unwrap_or_default() {
        match parse_id(id_arg, 0, true) {
            Ok(id) => ids.push(id),
            Err(msg) => return ctx.out.error(msg),
        }
    }
    let key = arg(argv, 1);
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    match stream_at(&mut guard, key) {
        Err(msg) => return ctx.out.error(msg),
        Ok(None) => return ctx.out.int(0),
        Ok(Some(_)) => {}
    }
    let deleted = change(&mut guard, key, |stream| {
        let mut deleted = 0;
        for &id in &ids {
            if stream.delete(id) {
                deleted += 1;
                if id > stream.max_deleted_id() {
                    stream.set_max_deleted_id(id);
                }
            }
        }
        deleted
    })
    .unwrap_or(0);
    drop(guard);
    if deleted > 0 {
        notify(ctx, STREAM, "xdel", key);
    }
    ctx.out.int(deleted);
}

/// XTRIM key (MAXLEN|MINID) [=|~] threshold [LIMIT count]: the number removed.
fn xtrim(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let key = arg(argv, 1);
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    match stream_at(&mut guard, key) {
        Err(msg) => return ctx.out.error(msg),
        Ok(None) => return ctx.out.int(0),
        Ok(Some(_)) => {}
    }
    let args = match parse_add_trim(argv, false) {
        Ok(args) => args,
        Err(msg) => return ctx.out.error(msg),
    };
    let (trimmed, trim_args) = change(&mut guard, key, |stream| {
        let trimmed = trim(stream, &args);
        (trimmed, trim_effect(stream, &args))
    })
    .unwrap_or_default();
    drop(guard);
    if trimmed > 0 {
        notify(ctx, STREAM, "xtrim", key);
        if args.approx {
            ctx.rewrite_effect(|| {
                let mut effect = vec![Bytes::from_static(b"XTRIM"), Bytes::copy_from_slice(key)];
                effect.extend(trim_args);
                effect
            });
        }
    }
    ctx.out.int(len_i64(trimmed));
}

/// XSETID key last-id [ENTRIESADDED n] [MAXDELETEDID id].
fn xsetid(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let id = match parse_id(arg(argv, 2), 0, true) {
        Ok(id) => id,
        Err(msg) => return ctx.out.error(msg),
    };
    let mut entries_added: Option<u64> = None;
    let mut max_deleted: Option<StreamId> = None;
    let mut i = 3;
    while i < argv.len() {
        let more = argv.len() - 1 - i;
        let opt = arg(argv, i);
        if eq_ignore_case(opt, "entriesadded") && more > 0 {
            let Some(n) = parse_i64(arg(argv, i + 1)) else {
                return ctx.out.error(reply::NOT_INTEGER);
            };
            let Ok(n) = u64::try_from(n) else {
                return ctx.out.error("ERR entries_added must be positive");
            };
            entries_added = Some(n);
            i += 2;
        } else if eq_ignore_case(opt, "maxdeletedid") && more > 0 {
            let max = match parse_id(arg(argv, i + 1), 0, true) {
                Ok(max) => max,
                Err(msg) => return ctx.out.error(msg),
            };
            if id < max {
                return ctx.out.error(
                    "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                );
            }
            max_deleted = Some(max);
            i += 2;
        } else {
            return ctx.out.error(reply::SYNTAX);
        }
    }
    let key = arg(argv, 1);
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let stream = match stream_at(&mut guard, key) {
        Err(msg) => return ctx.out.error(msg),
        Ok(None) => return ctx.out.error(reply::NO_SUCH_KEY),
        Ok(Some(stream)) => stream,
    };
    if id < stream.last_id() {
        if let Some((greatest, _)) = stream.last() {
            if id < greatest {
                return ctx.out.error(
                    "ERR The ID specified in XSETID is smaller than the target stream top item",
                );
            }
        }
    }
    if entries_added.is_some_and(|n| n < stream.len() as u64) {
        return ctx.out.error(
            "ERR The entries_added specified in XSETID is smaller than the target stream length",
        );
    }
    change(&mut guard, key, |stream| {
        stream.set_last_id(id);
        if let Some(n) = entries_added {
            stream.set_entries_added(n);
        }
        if let Some(max) = max_deleted {
            stream.set_max_deleted_id(max);
        }
    });
    drop(guard);
    notify(ctx, STREAM, "xsetid", key);
    ctx.out.ok();
}

// ---------------------------------------------------------------------------------------------
// XREAD.

/// The parsed options of XREAD / XREADGROUP.
pub(crate) struct ReadArgs {
    /// BLOCK's timeout in milliseconds (None: not given).
    pub(crate) block_ms: Option<u64>,
    /// COUNT (0: no limit).
    pub(crate) count: usize,
    /// Where the keys start.
    pub(crate) streams_at: usize,
    /// How many streams.
    pub(crate) n_streams: usize,
    /// GROUP's group and consumer.
    pub(crate) group: Option<(Bytes, Bytes)>,
    pub(crate) noack: bool,
}

/// Parses XREAD / XREADGROUP options as `xreadCommand` does.
pub(crate) fn parse_read_args(argv: &[Bytes], xreadgroup: bool) -> Reply<ReadArgs> {
    let mut args = ReadArgs {
        block_ms: None,
        count: 0,
        streams_at: 0,
        n_streams: 0,
        group: None,
        noack: false,
    };
    let mut i = 1;
    while i < argv.len() {
        let more = argv.len() - 1 - i;
        let opt = arg(argv, i);
        if eq_ignore_case(opt, "block") && more > 0 {
            i += 1;
            let ms =
                parse_i64(arg(argv, i)).ok_or("ERR timeout is not an integer or out of range")?;
            if ms < 0 {
                return Err("ERR timeout is negative");
            }
            args.block_ms = Some(ms.unsigned_abs());
        } else if eq_ignore_case(opt, "count") && more > 0 {
            i += 1;
            let n = parse_i64(arg(argv, i)).ok_or(reply::NOT_INTEGER)?;
            args.count = usize::try_from(n).unwrap_or(0);
        } else if eq_ignore_case(opt, "streams") && more > 0 {
            args.streams_at = i + 1;
            let n = argv.len() - args.streams_at;
            if n % 2 != 0 {
                return Err(
                    "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.",
                );
            }
            args.n_streams = n / 2;
            break;
        } else if eq_ignore_case(opt, "group") && more >= 2 {
            if !xreadgroup {
                return Err(
                    "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                );
            }
            args.group = Some((
                Bytes::copy_from_slice(arg(argv, i + 1)),
                Bytes::copy_from_slice(arg(argv, i + 2)),
            ));
            i += 2;
        } else if eq_ignore_case(opt, "noack") {
            if !xreadgroup {
                return Err(
                    "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                );
            }
            args.noack = true;
        } else {
            return Err(reply::SYNTAX);
        }
        i += 1;
    }
    if args.streams_at == 0 {
        return Err(reply::SYNTAX);
    }
    if xreadgroup && args.group.is_none() {
        return Err("ERR Missing GROUP option for XREADGROUP");
    }
    Ok(args)
}

/// The deadline of a BLOCK timeout in milliseconds (0 waits forever).
pub(crate) fn block_deadline(ms: u64) -> Option<std::time::Instant> {
    if ms == 0 {
        return None;
    }
    std::time::Instant::now().checked_add(std::time::Duration::from_millis(ms))
}

/// Blocks on `keys`; the retry runs `retry` (the argv with `$` resolved and the blocked
/// default COUNT), or replies the null array at once inside EXEC.
pub(crate) fn block_on(ctx: &mut Ctx<'_>, keys: &[Bytes], block_ms: u64, retry: Vec<Bytes>) {
    super::list::block(ctx, keys, block_deadline(block_ms), TimeoutReply::NullArray);
    if let Some(request) = ctx.client.blocked.as_mut() {
        request.retry_argv = Some(retry);
    }
}

/// Redis's default COUNT for a blocked XREAD/XREADGROUP that gave none.
pub(crate) const BLOCKED_DEFAULT_COUNT: usize = 1000;

/// The retry argv of a blocked read: `argv` with its ids replaced by `ids` and, without a COUNT,
/// Redis's blocked default.
pub(crate) fn retry_argv(argv: &[Bytes], args: &ReadArgs, ids: &[Bytes]) -> Vec<Bytes> {
    let mut retry: Vec<Bytes> = argv.get(..1).unwrap_or_default().to_vec();
    if args.count == 0 {
        retry.push(Bytes::from_static(b"COUNT"));
        retry.push(Bytes::from(BLOCKED_DEFAULT_COUNT.to_string()));
    }
    retry.extend(
        argv.get(1..args.streams_at + args.n_streams)
            .unwrap_or_default()
            .iter()
            .cloned(),
    );
    retry.extend(ids.iter().cloned());
    retry
}

/// Redis's reply to XREAD/XREADGROUP with BLOCK inside a script: an error, even though a
/// script's commands never block (a script has no reason to ask).
pub(crate) fn block_in_script(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let name = String::from_utf8_lossy(argv.first().map_or(&b""[..], |name| name));
    ctx.out.error(&format!(
        "ERR {name} command is not allowed with BLOCK option from scripts"
    ));
}

/// XREAD [COUNT n] [BLOCK ms] STREAMS key [key ...] id [id ...].
fn xread(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let args = match parse_read_args(argv, false) {
        Ok(args) => args,
        Err(msg) => return ctx.out.error(msg),
    };
    if args.block_ms.is_some() && ctx.client.is_script() {
        return block_in_script(ctx, argv);
    }
    let keys = argv
        .get(args.streams_at..args.streams_at + args.n_streams)
        .unwrap_or_default();
    let id_args = argv
        .get(args.streams_at + args.n_streams..)
        .unwrap_or_default();
    let key_refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    let guard = ctx.db().read(&key_refs, ctx.now_ms);
    let mut ids = Vec::with_capacity(keys.len());
    for (key, id_arg) in keys.iter().zip(id_args) {
        let stream = match guard.get(key).map(forkless_storage::Entry::value) {
            None => None,
            Some(Value::Stream(stream)) => Some(stream),
            // Once blocked, a key of another type is no stream to read (as in Redis).
            Some(_) if ctx.client.block_retry => None,
            Some(_) => return ctx.out.error(reply::WRONGTYPE),
        };
        if &id_arg[..] == b"$" {
            ids.push(stream.map_or(StreamId::MIN, |s| s.last_id()));
            continue;
        }
        if &id_arg[..] == b">" {
            return ctx.out.error(
                "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.",
            );
        }
        match parse_id(id_arg, 0, true) {
            Ok(id) => ids.push(id),
            Err(msg) => return ctx.out.error(msg),
        }
    }
    let limit = if args.count == 0 {
        usize::MAX
    } else {
        args.count
    };
    let mut served = Vec::new();
    for ((key, &after), index) in keys.iter().zip(&ids).zip(0..) {
        let Some(Value::Stream(stream)) = guard.get(key).map(forkless_storage::Entry::value) else {
            continue;
        };
        let Some(start) = after.next() else {
            continue;
        };
        if stream.last().is_some_and(|(last, _)| last > after) {
            served.push((index, Arc::clone(stream), start));
        }
    }
    drop(guard);
    if !served.is_empty() {
        if ctx.resp3() {
            ctx.out.map_len(served.len());
        } else {
            ctx.out.array_len(served.len());
        }
        for (index, stream, start) in served {
            if !ctx.resp3() {
                ctx.out.array_len(2);
            }
            ctx.out.bulk(arg(keys, index));
            let entries: Vec<_> = stream
                .range_forward(start, StreamId::MAX)
                .take(limit)
                .collect();
            ctx.out.array_len(entries.len());
            for (id, fields) in entries {
                reply_entry(ctx, id, fields);
            }
        }
        return;
    }
    match args.block_ms {
        Some(ms) => {
            let resolved: Vec<Bytes> = ids.iter().map(|&id| id_arg(id)).collect();
            let retry = retry_argv(argv, &args, &resolved);
            block_on(ctx, keys, ms, retry);
        }
        None => ctx.out.null_array(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xadd_ids_follow_stream_append_item() {
        let last = StreamId::new(5, 3);
        assert_eq!(next_id(last, None, 4), Ok(StreamId::new(5, 4)));
        assert_eq!(next_id(last, None, 9), Ok(StreamId::new(9, 0)));
        assert_eq!(
            next_id(last, Some((StreamId::new(5, 0), false)), 0),
            Ok(StreamId::new(5, 4))
        );
        assert_eq!(
            next_id(last, Some((StreamId::new(6, 0), false)), 0),
            Ok(StreamId::new(6, 0))
        );
        assert_eq!(
            next_id(last, Some((StreamId::new(5, 3), true)), 0),
            Err(XADD_ID_TOO_SMALL)
        );
        assert_eq!(
            next_id(
                StreamId::new(5, u64::MAX),
                Some((StreamId::new(5, 0), false)),
                0
            ),
            Err(XADD_ID_TOO_SMALL)
        );
        assert_eq!(
            next_id(StreamId::new(u64::MAX, u64::MAX - 1), None, 0),
            Ok(StreamId::MAX)
        );
    }

    #[test]
    fn ids_parse_as_redis() {
        assert_eq!(parse_xadd_id(b"5-*"), Ok((StreamId::new(5, 0), false)));
        assert_eq!(parse_xadd_id(b"5-2"), Ok((StreamId::new(5, 2), true)));
        assert_eq!(parse_xadd_id(b"5"), Ok((StreamId::new(5, 0), true)));
        assert_eq!(parse_xadd_id(b"-"), Err(INVALID_ID));
        assert_eq!(parse_xadd_id(b"*-5"), Err(INVALID_ID));
        assert_eq!(parse_bound(b"(5-0", 0, true), Ok(StreamId::new(5, 1)));
        assert_eq!(
            parse_bound(b"(5", u64::MAX, false),
            Ok(StreamId::new(5, u64::MAX - 1))
        );
        assert_eq!(parse_bound(b"(", 0, true), Err(INVALID_ID));
        assert_eq!(parse_bound(b"(-", 0, true), Err(INVALID_ID));
        assert_eq!(parse_bound(b"(0-0", 0, false), Err(INVALID_END));
        assert_eq!(parse_bound(b"-", 0, true), Ok(StreamId::MIN));
    }
}
