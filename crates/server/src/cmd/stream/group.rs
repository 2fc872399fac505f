//! Consumer groups: XGROUP (CREATE, SETID, DESTROY, CREATECONSUMER, DELCONSUMER, HELP),
//! XREADGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM, and XINFO (STREAM [FULL], GROUPS,
//! CONSUMERS, HELP), as Redis 7.0's `t_stream.c`, with its entries-read and lag bookkeeping.
//!
//! Effects: what a delivery or a claim changes depends on the clock, so these commands log what
//! Redis propagates for them: an `XCLAIM ... TIME t RETRYCOUNT n FORCE JUSTID LASTID id` per
//! entry delivered or claimed, and `XGROUP SETID ... ENTRIESREAD n` for the group's position.

use bytes::Bytes;
use forkless_protocol::{Out, RespVersion};
use forkless_storage::Value;
use forkless_storage::types::stream::{Group, Stream, StreamId};

use super::super::access::{Collection, len_i64};
use super::super::subcommands::help_reply;
use super::super::{Ctx, eq_ignore_case, parse_i64, reply};
use super::{
    arg, block_on, bulk_id, change, id_arg, parse_bound, parse_id, parse_read_args, reply_entry,
    retry_argv, stream_at, write_entry,
};
use crate::notify::{STREAM, notify};

/// `-NOGROUP No such key '<key>' or consumer group '<group>'` (XPENDING, XCLAIM, XAUTOCLAIM).
fn no_key_or_group(key: &[u8], group: &[u8]) -> String {
    format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    )
}

/// `-NOGROUP No such consumer group '<group>' for key name '<key>'` (XGROUP, XINFO).
fn no_group_for_key(key: &[u8], group: &[u8]) -> String {
    format!(
        "NOGROUP No such consumer group '{}' for key name '{}'",
        String::from_utf8_lossy(group),
        String::from_utf8_lossy(key)
    )
}

/// `addReplySubcommandSyntaxError`.
fn subcommand_syntax_error(ctx: &mut Ctx<'_>, container: &str, sub: &[u8]) {
    ctx.out.error(&format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try {container} HELP.",
        String::from_utf8_lossy(sub)
    ));
}

/// Entries-read as an argument: -1 when unknown.
fn entries_read_arg(entries_read: Option<u64>) -> Bytes {
    Bytes::from(entries_read.map_or_else(|| "-1".to_string(), |n| n.to_string()))
}

/// `XGROUP SETID key group last-id ENTRIESREAD n`: the group's position as an effect.
fn setid_effect(key: &[u8], name: &[u8], group: &Group) -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"XGROUP"),
        Bytes::from_static(b"SETID"),
        Bytes::copy_from_slice(key),
        Bytes::copy_from_slice(name),
        id_arg(group.last_id),
        Bytes::from_static(b"ENTRIESREAD"),
        entries_read_arg(group.entries_read),
    ]
}

/// `streamPropagateXCLAIM`: the pending entry `id` as it now is, replayed exactly.
fn xclaim_effect(key: &[u8], name: &[u8], group: &Group, id: StreamId) -> Vec<Bytes> {
    let (consumer, time, count) = group.pending.get(&id).map_or_else(
        || (Bytes::new(), 0, 0),
        |p| (p.consumer.clone(), p.delivery_time, p.delivery_count),
    );
    vec![
        Bytes::from_static(b"XCLAIM"),
        Bytes::copy_from_slice(key),
        Bytes::copy_from_slice(name),
        consumer,
        Bytes::from_static(b"0"),
        id_arg(id),
        Bytes::from_static(b"TIME"),
        Bytes::from(time.to_string()),
        Bytes::from_static(b"RETRYCOUNT"),
        Bytes::from(count.to_string()),
        Bytes::from_static(b"FORCE"),
        Bytes::from_static(b"JUSTID"),
        Bytes::from_static(b"LASTID"),
        id_arg(group.last_id),
    ]
}

/// Looks up consumer `name` in `group` as `streamLookupConsumer(SLC_DEFAULT)`, creating it
/// (`streamCreateConsumer`) if missing; refreshes its seen time. Returns true if it was created.
fn touch_consumer(group: &mut Group, name: &Bytes, now_ms: u64) -> bool {
    let (consumer, created) = match group.consumers.get_mut(name) {
        Some(consumer) => (consumer, false),
        None => (group.consumers.entry(name.clone()).or_default(), true),
    };
    consumer.seen_time = now_ms;
    consumer.active_time = Some(now_ms);
    created
}

/// Redis 7.0's `streamReplyWithCGLag`: the group's lag, when it can be known.
fn lag(stream: &Stream, group: &Group) -> Option<u64> {
    if stream.entries_added() == 0 {
        return Some(0);
    }
    let read = match group.entries_read {
        Some(n) if !stream.range_has_tombstones(group.last_id, StreamId::MAX) => Some(n),
        _ => stream.estimate_distance(group.last_id),
    }?;
    Some(stream.entries_added().saturating_sub(read))
}

/// Writes an optional integer: the integer or a null.
fn int_or_null(ctx: &mut Ctx<'_>, n: Option<u64>) {
    match n {
        Some(n) => ctx.out.int(i64::try_from(n).unwrap_or(i64::MAX)),
        None => ctx.out.null(),
    }
}

/// Milliseconds as a reply integer.
fn ms(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------------
// XGROUP.

/// XGROUP: resolves the subcommand (arity from its row) and runs it with the arguments after
/// its name; a syntax error quotes the subcommand as the client spelled it.
pub(crate) fn xgroup(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(sub) = super::super::subcommands::subcommand(ctx, argv) else {
        return;
    };
    let spelled = arg(argv, 1);
    let args = argv.get(2..).unwrap_or_default();
    let which = match sub.name {
        "xgroup|create" => Sub::Create,
        "xgroup|setid" => Sub::SetId,
        "xgroup|destroy" => Sub::Destroy,
        "xgroup|createconsumer" => Sub::CreateConsumer,
        "xgroup|delconsumer" => Sub::DelConsumer,
        _ => return xgroup_help(ctx, args),
    };
    xgroup_run(ctx, args, which, spelled);
}

fn xgroup_help(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    help_reply(
        ctx.out,
        "XGROUP",
        &[
            "CREATE <key> <groupname> <id|$> [option]",
            "    Create a new consumer group. Options are:",
            "    * MKSTREAM",
            "      Create the empty stream if it does not exist.",
            "    * ENTRIESREAD entries_read",
            "      Set the group's entries_read counter (internal use).",
            "CREATECONSUMER <key> <groupname> <consumer>",
            "    Create a new consumer in the specified group.",
            "DELCONSUMER <key> <groupname> <consumer>",
            "    Remove the specified consumer.",
            "DESTROY <key> <groupname>",
            "    Remove the specified group.",
            "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
            "    Set the current group ID and entries_read counter.",
            "HELP",
            "    Prints this help.",
        ],
    );
}

/// Which XGROUP subcommand runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    Create,
    SetId,
    Destroy,
    CreateConsumer,
    DelConsumer,
}

/// `xgroupCommand`; `args` are the arguments after the subcommand: key, group, ...
fn xgroup_run(ctx: &mut Ctx<'_>, args: &[Bytes], sub: Sub, spelled: &[u8]) {
    let mut mkstream = false;
    let mut entries_read: Option<u64> = None;
    let mut i = 3;
    while i < args.len() {
        let opt = arg(args, i);
        if sub == Sub::Create && eq_ignore_case(opt, "mkstream") {
            mkstream = true;
            i += 1;
        } else if matches!(sub, Sub::Create | Sub::SetId)
            && eq_ignore_case(opt, "entriesread")
            && i + 1 < args.len()
        {
            let Some(n) = parse_i64(arg(args, i + 1)) else {
                return ctx.out.error(reply::NOT_INTEGER);
            };
            if n < -1 {
                return ctx
                    .out
                    .error("ERR value for ENTRIESREAD must be positive or -1");
            }
            entries_read = u64::try_from(n).ok();
            i += 2;
        } else {
            return subcommand_syntax_error(ctx, "XGROUP", spelled);
        }
    }
    let key = arg(args, 0);
    let name = Bytes::copy_from_slice(arg(args, 1));
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let exists = match stream_at(&mut guard, key) {
        Err(msg) => return ctx.out.error(msg),
        Ok(stream) => stream.map(|s| (s.last_id(), s.group(&name).is_some())),
    };
    if !mkstream {
        let Some((_, has_group)) = exists else {
            return ctx.out.error(
                "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
            );
        };
        if !has_group && matches!(sub, Sub::SetId | Sub::CreateConsumer | Sub::DelConsumer) {
            return ctx.out.error(&no_group_for_key(key, &name));
        }
    }
    let last_id = exists.map_or(StreamId::MIN, |(last, _)| last);
    let id_text = arg(args, 2);
    match sub {
        Sub::Create => {
            if args.len() > 6 {
                return subcommand_syntax_error(ctx, "XGROUP", spelled);
            }
            let id = if id_text == b"$" {
                last_id
            } else {
                match parse_id(id_text, 0, true) {
                    Ok(id) => id,
                    Err(msg) => return ctx.out.error(msg),
                }
            };
            if exists.is_none() {
                guard.set(key, Value::Stream(std::sync::Arc::new(Stream::new())), None);
            }
            let created = change(&mut guard, key, |stream| {
                if stream.group(&name).is_some() {
                    return false;
                }
                stream
                    .groups_mut()
                    .insert(name.clone(), Group::new(id, entries_read));
                true
            })
            .unwrap_or(false);
            drop(guard);
            if created {
                ctx.out.ok();
                notify(ctx, STREAM, "xgroup-create", key);
            } else {
                ctx.out
                    .error("BUSYGROUP Consumer Group name already exists");
            }
        }
        Sub::SetId => {
            if args.len() != 3 && args.len() != 5 {
                return subcommand_syntax_error(ctx, "XGROUP", spelled);
            }
            let id = if id_text == b"$" {
                last_id
            } else {
                match parse_id(id_text, 0, false) {
                    Ok(id) => id,
                    Err(msg) => return ctx.out.error(msg),
                }
            };
            change(&mut guard, key, |stream| {
                if let Some(group) = stream.group_mut(&name) {
                    group.last_id = id;
                    group.entries_read = entries_read;
                }
            });
            drop(guard);
            ctx.out.ok();
            notify(ctx, STREAM, "xgroup-setid", key);
        }
        Sub::Destroy => {
            if args.len() != 2 {
                return subcommand_syntax_error(ctx, "XGROUP", spelled);
            }
            let destroyed = change(&mut guard, key, |stream| {
                stream.groups().contains_key(&name) && stream.groups_mut().remove(&name).is_some()
            })
            .unwrap_or(false);
            drop(guard);
            if destroyed {
                ctx.out.int(1);
                notify(ctx, STREAM, "xgroup-destroy", key);
                // Clients blocked in XREADGROUP on this group get their error now.
                ctx.server.blocking.signal(ctx.client.db, key);
            } else {
                ctx.out.int(0);
            }
        }
        Sub::CreateConsumer => {
            if args.len() != 3 {
                return subcommand_syntax_error(ctx, "XGROUP", spelled);
            }
            let consumer = Bytes::copy_from_slice(arg(args, 2));
            let now = ctx.now_ms;
            let created = change(&mut guard, key, |stream| {
                let Some(group) = stream.group(&name) else {
                    return false;
                };
                if group.consumers.contains_key(&consumer) {
                    return false;
                }
                stream
                    .group_mut(&name)
                    .is_some_and(|group| touch_consumer(group, &consumer, now))
            })
            .unwrap_or(false);
            drop(guard);
            ctx.out.int(i64::from(created));
            if created {
                notify(ctx, STREAM, "xgroup-createconsumer", key);
            }
        }
        Sub::DelConsumer => {
            if args.len() != 3 {
                return subcommand_syntax_error(ctx, "XGROUP", spelled);
            }
            let consumer = Bytes::copy_from_slice(arg(args, 2));
            let pending = change(&mut guard, key, |stream| {
                let owned = stream
                    .group(&name)?
                    .consumers
                    .get(&consumer)?
                    .pending
                    .clone();
                let group = stream.group_mut(&name)?;
                for id in &owned {
                    group.pending.remove(id);
                }
                group.consumers.remove(&consumer);
                Some(owned.len())
            })
            .flatten();
            drop(guard);
            ctx.out.int(pending.map_or(0, len_i64));
            if pending.is_some() {
                notify(ctx, STREAM, "xgroup-delconsumer", key);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// XREADGROUP.

/// XREADGROUP GROUP group consumer [COUNT n] [BLOCK ms] [NOACK] STREAMS key [key ...] id [id ...]
pub(crate) fn xreadgroup(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let args = match parse_read_args(argv, true) {
        Ok(args) => args,
        Err(msg) => return ctx.out.error(msg),
    };
    if args.block_ms.is_some() && ctx.client.is_script() {
        return super::block_in_script(ctx, argv);
    }
    let Some((group_name, consumer_name)) = args.group.clone() else {
        return;
    };
    let keys = argv
        .get(args.streams_at..args.streams_at + args.n_streams)
        .unwrap_or_default();
    let id_args = argv
        .get(args.streams_at + args.n_streams..)
        .unwrap_or_default();
    let key_refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    let mut guard = ctx.db().write(&key_refs, ctx.now_ms);
    // None is `>`.
    let mut ids: Vec<Option<StreamId>> = Vec::with_capacity(keys.len());
    for (key, id_text) in keys.iter().zip(id_args) {
        let has_group = match stream_at(&mut guard, key) {
            Err(_) | Ok(None) if ctx.client.block_retry => {
                return ctx.out.error("UNBLOCKED the stream key no longer exists");
            }
            Err(msg) => return ctx.out.error(msg),
            Ok(stream) => stream.is_some_and(|s| s.group(&group_name).is_some()),
        };
        if !has_group {
            if ctx.client.block_retry {
                return ctx.out.error(
                    "NOGROUP the consumer group this client was blocked on no longer exists",
                );
            }
            return ctx.out.error(&format!(
                "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(&group_name)
            ));
        }
        match &id_text[..] {
            b"$" => {
                return ctx.out.error(
                    "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.",
                );
            }
            b">" => ids.push(None),
            _ => match parse_id(id_text, 0, true) {
                Ok(id) => ids.push(Some(id)),
                Err(msg) => return ctx.out.error(msg),
            },
        }
    }
    let now = ctx.now_ms;
    let count = if args.count == 0 {
        usize::MAX
    } else {
        args.count
    };
    let version = ctx.out.version;
    let mut served: Vec<(usize, Delivery)> = Vec::new();
    let mut effects: Vec<Vec<Bytes>> = Vec::new();
    let mut created_consumers: Vec<usize> = Vec::new();
    for (index, (key, &id)) in keys.iter().zip(&ids).enumerate() {
        let serve = match id {
            Some(_) => true,
            None => stream_at(&mut guard, key).ok().flatten().is_some_and(|s| {
                let last = s.group(&group_name).map_or(StreamId::MAX, |g| g.last_id);
                s.last().is_some_and(|(greatest, _)| greatest > last)
            }),
        };
        if !serve {
            continue;
        }
        let outcome = change(&mut guard, key, |stream| {
            deliver(
                stream,
                key,
                &group_name,
                &consumer_name,
                id,
                count,
                args.noack,
                now,
                version,
            )
        })
        .flatten();
        if let Some(mut delivery) = outcome {
            if delivery.created {
                created_consumers.push(index);
                effects.push(vec![
                    Bytes::from_static(b"XGROUP"),
                    Bytes::from_static(b"CREATECONSUMER"),
                    key.clone(),
                    group_name.clone(),
                    consumer_name.clone(),
                ]);
            }
            effects.append(&mut delivery.effects);
            served.push((index, delivery));
        }
    }
    drop(guard);
    for &index in &created_consumers {
        notify(ctx, STREAM, "xgroup-createconsumer", arg(keys, index));
    }
    if !effects.is_empty() {
        ctx.rewrite_effects(|| effects);
    }
    if !served.is_empty() {
        if ctx.resp3() {
            ctx.out.map_len(served.len());
        } else {
            ctx.out.array_len(served.len());
        }
        for (index, delivery) in served {
            if !ctx.resp3() {
                ctx.out.array_len(2);
            }
            ctx.out.bulk(arg(keys, index));
            ctx.out.array_len(delivery.n_entries);
            ctx.out.buf.extend_from_slice(&delivery.entries.buf);
        }
        return;
    }
    match args.block_ms {
        Some(ms) => {
            let retry = retry_argv(argv, &args, id_args);
            block_on(ctx, keys, ms, retry);
        }
        None => ctx.out.null_array(),
    }
}

/// What one stream gives an XREADGROUP.
struct Delivery {
    /// How many entries it delivers.
    n_entries: usize,
    /// Their reply, written while the stream is at hand (no copy of their strings): each
    /// `[id, [field, value, ...]]`, or `[id, nil]` for a pending entry since deleted (history).
    entries: Out,
    /// Whether the consumer was created.
    created: bool,
    /// What to propagate (empty when no consumer of effects is attached).
    effects: Vec<Vec<Bytes>>,
}

/// Serves one stream of an XREADGROUP (`streamReplyWithRange` with a group): new entries after
/// the group's last id for `>` (None), else the consumer's pending entries after `after`.
#[allow(
    clippy::too_many_arguments,
    reason = "the parts of one XREADGROUP stream"
)]
fn deliver(
    stream: &mut Stream,
    key: &Bytes,
    group_name: &Bytes,
    consumer: &Bytes,
    after: Option<StreamId>,
    count: usize,
    noack: bool,
    now: u64,
    version: RespVersion,
) -> Option<Delivery> {
    // `change` has marked the key changed before calling us, so the unit has its number by now
    // if a consumer of effects is attached: without one the XCLAIM effects are not built.
    let record = forkless_storage::effect::unit_open();
    let mut effects = Vec::new();
    let mut entries = Out::new(version);
    let Some(after) = after else {
        let start = stream.group(group_name)?.last_id.next()?;
        // Each entry's id, and what its delivery does to entries-read (which depends on the
        // stream, not the group, so it is judged before the group is borrowed for changing).
        let mut steps: Vec<(StreamId, bool, Option<u64>)> = Vec::new();
        for (id, fields) in stream.range_forward(start, StreamId::MAX).take(count) {
            write_entry(&mut entries, id, fields);
            steps.push((
                id,
                !stream.range_has_tombstones(id, StreamId::MAX),
                stream.estimate_distance(id),
            ));
        }
        let entries_added = stream.entries_added();
        let group = stream.group_mut(group_name)?;
        let created = touch_consumer(group, consumer, now);
        for &(id, no_tombstones, estimate) in &steps {
            match group.entries_read {
                Some(n) if no_tombstones => group.entries_read = Some(n + 1),
                _ if entries_added > 0 => group.entries_read = estimate,
                _ => {}
            }
            group.last_id = id;
            if !noack {
                group.assign(id, consumer, now, 1);
                if record {
                    effects.push(xclaim_effect(key, group_name, group, id));
                }
            }
        }
        if record && !steps.is_empty() {
            effects.push(setid_effect(key, group_name, group));
        }
        return Some(Delivery {
            n_entries: steps.len(),
            entries,
            created,
            effects,
        });
    };
    let start = after.next()?;
    let group = stream.group(group_name)?;
    let owned: Vec<StreamId> = group
        .consumers
        .get(consumer)
        .map(|c| c.pending.range(start..).take(count).copied().collect())
        .unwrap_or_default();
    // Whether each is still in the stream.
    let mut live = Vec::with_capacity(owned.len());
    for &id in &owned {
        match stream.get(id) {
            Some(fields) => {
                write_entry(&mut entries, id, fields);
                live.push(true);
            }
            None => {
                entries.array_len(2);
                bulk_id(&mut entries, id);
                entries.null_array();
                live.push(false);
            }
        }
    }
    let group = stream.group_mut(group_name)?;
    let created = touch_consumer(group, consumer, now);
    for (&id, &live) in owned.iter().zip(&live) {
        if live {
            if let Some(pending) = group.pending.get_mut(&id) {
                pending.delivery_time = now;
                pending.delivery_count += 1;
            }
            if record {
                effects.push(xclaim_effect(key, group_name, group, id));
            }
        }
    }
    Some(Delivery {
        n_entries: owned.len(),
        entries,
        created,
        effects,
    })
}

// ---------------------------------------------------------------------------------------------
// XACK, XPENDING.

/// XACK key group id [id ...]: how many were pending.
pub(crate) fn xack(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let key = arg(argv, 1);
    let name = arg(argv, 2);
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    match stream_at(&mut guard, key) {
        Err(msg) => return ctx.out.error(msg),
        Ok(Some(stream)) if stream.group(name).is_some() => {}
        Ok(_) => return ctx.out.int(0),
    }
    let mut ids = Vec::with_capacity(argv.len().saturating_sub(3));
    for text in argv.get(3..).unwrap_or_default() {
        match parse_id(text, 0, true) {
            Ok(id) => ids.push(id),
            Err(msg) => return ctx.out.error(msg),
        }
    }
    let pending = stream_at(&mut guard, key)
        .ok()
        .flatten()
        .and_then(|s| s.group(name))
        .is_some_and(|g| ids.iter().any(|id| g.pending.contains_key(id)));
    let acked = if pending {
        change(&mut guard, key, |stream| {
            let group = stream.group_mut(name)?;
            Some(ids.iter().filter(|&&id| group.ack(id)).count())
        })
        .flatten()
        .unwrap_or(0)
    } else {
        0
    };
    ctx.out.int(len_i64(acked));
}

/// XPENDING key group [[IDLE min-idle] start end count [consumer]].
pub(crate) fn xpending(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let just_info = argv.len() == 3;
    if argv.len() != 3 && !(6..=9).contains(&argv.len()) {
        return ctx.out.error(reply::SYNTAX);
    }
    let mut min_idle: i64 = 0;
    let mut range = (StreamId::MIN, StreamId::MAX, 0usize, None::<Bytes>);
    if !just_info {
        let mut at = 3;
        if eq_ignore_case(arg(argv, 3), "idle") {
            let Some(n) = parse_i64(arg(argv, 4)) else {
                return ctx.out.error(reply::NOT_INTEGER);
            };
            min_idle = n;
            if argv.len() < 8 {
                return ctx.out.error(reply::SYNTAX);
            }
            at += 2;
        }
        let Some(count) = parse_i64(arg(argv, at + 2)) else {
            return ctx.out.error(reply::NOT_INTEGER);
        };
        let start = match parse_bound(arg(argv, at), 0, true) {
            Ok(id) => id,
            Err(msg) => return ctx.out.error(msg),
        };
        let end = match parse_bound(arg(argv, at + 1), u64::MAX, false) {
            Ok(id) => id,
            Err(msg) => return ctx.out.error(msg),
        };
        let consumer = argv.get(at + 3).cloned();
        range = (start, end, usize::try_from(count).unwrap_or(0), consumer);
    }
    let key = arg(argv, 1);
    let name = arg(argv, 2);
    let now = ctx.now_ms;
    Stream::read_key(ctx, key, |ctx, stream| {
        let Some(group) = stream.and_then(|s| s.group(name)) else {
            return ctx.out.error(&no_key_or_group(key, name));
        };
        if just_info {
            ctx.out.array_len(4);
            ctx.out.int(len_i64(group.pending.len()));
            let (Some((first, _)), Some((last, _))) = (
                group.pending.first_key_value(),
                group.pending.last_key_value(),
            ) else {
                ctx.out.null();
                ctx.out.null();
                return ctx.out.null_array();
            };
            ctx.out.bulk(first.to_string().as_bytes());
            ctx.out.bulk(last.to_string().as_bytes());
            let owners: Vec<(&Bytes, usize)> = group
                .consumers
                .iter()
                .filter(|(_, c)| !c.pending.is_empty())
                .map(|(name, c)| (name, c.pending.len()))
                .collect();
            ctx.out.array_len(owners.len());
            for (name, n) in owners {
                ctx.out.array_len(2);
                ctx.out.bulk(name);
                ctx.out.bulk(n.to_string().as_bytes());
            }
            return;
        }
        let (start, end, count, consumer) = &range;
        let ids: Vec<StreamId> = match consumer {
            Some(name) => match group.consumers.get(name) {
                Some(c) if start <= end => c.pending.range(*start..=*end).copied().collect(),
                Some(_) => Vec::new(),
                None => return ctx.out.array_len(0),
            },
            None if start <= end => group
                .pending
                .range(*start..=*end)
                .map(|(id, _)| *id)
                .collect(),
            None => Vec::new(),
        };
        let rows: Vec<_> = ids
            .iter()
            .filter_map(|id| group.pending.get(id).map(|p| (id, p)))
            .filter(|(_, p)| {
                min_idle == 0 || ms(now).saturating_sub(ms(p.delivery_time)) >= min_idle
            })
            .take(*count)
            .collect();
        ctx.out.array_len(rows.len());
        for (id, p) in rows {
            ctx.out.array_len(4);
            ctx.out.bulk(id.to_string().as_bytes());
            ctx.out.bulk(&p.consumer);
            ctx.out
                .int(ms(now).saturating_sub(ms(p.delivery_time)).max(0));
            ctx.out.int(ms(p.delivery_count));
        }
    });
}

// ---------------------------------------------------------------------------------------------
// XCLAIM, XAUTOCLAIM.

/// XCLAIM key group consumer min-idle-time id [id ...] [IDLE ms] [TIME ms] [RETRYCOUNT n]
/// [FORCE] [JUSTID] [LASTID id].
pub(crate) fn xclaim(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let key = arg(argv, 1);
    let name = Bytes::copy_from_slice(arg(argv, 2));
    let consumer = Bytes::copy_from_slice(arg(argv, 3));
    let now = ctx.now_ms;
    let mut guard = ctx.db().write(&[key], now);
    match stream_at(&mut guard, key) {
        Err(msg) => return ctx.out.error(msg),
        Ok(Some(stream)) if stream.group(&name).is_some() => {}
        Ok(_) => return ctx.out.error(&no_key_or_group(key, &name)),
    }
    let Some(min_idle) = parse_i64(arg(argv, 4)) else {
        return ctx
            .out
            .error("ERR Invalid min-idle-time argument for XCLAIM");
    };
    let min_idle = min_idle.max(0);
    let mut j = 5;
    let mut ids = Vec::new();
    while let Some(text) = argv.get(j) {
        match parse_id(text, 0, true) {
            Ok(id) => ids.push(id),
            Err(_) => break,
        }
        j += 1;
    }
    let (mut force, mut justid) = (false, false);
    let mut delivery_time: Option<i64> = None;
    let mut retry_count: Option<i64> = None;
    let mut last_id = StreamId::MIN;
    while j < argv.len() {
        let more = argv.len() - 1 - j;
        let opt = arg(argv, j);
        if eq_ignore_case(opt, "force") {
            force = true;
        } else if eq_ignore_case(opt, "justid") {
            justid = true;
        } else if eq_ignore_case(opt, "idle") && more > 0 {
            j += 1;
            let Some(idle) = parse_i64(arg(argv, j)) else {
                return ctx.out.error("ERR Invalid IDLE option argument for XCLAIM");
            };
            delivery_time = Some(ms(now).saturating_sub(idle));
        } else if eq_ignore_case(opt, "time") && more > 0 {
            j += 1;
            let Some(time) = parse_i64(arg(argv, j)) else {
                return ctx.out.error("ERR Invalid TIME option argument for XCLAIM");
            };
            delivery_time = Some(time);
        } else if eq_ignore_case(opt, "retrycount") && more > 0 {
            j += 1;
            let Some(n) = parse_i64(arg(argv, j)) else {
                return ctx
                    .out
                    .error("ERR Invalid RETRYCOUNT option argument for XCLAIM");
            };
            retry_count = Some(n);
        } else if eq_ignore_case(opt, "lastid") && more > 0 {
            j += 1;
            match parse_id(arg(argv, j), 0, true) {
                Ok(id) => last_id = id,
                Err(msg) => return ctx.out.error(msg),
            }
        } else {
            return ctx.out.error(&format!(
                "ERR Unrecognized XCLAIM option '{}'",
                String::from_utf8_lossy(opt)
            ));
        }
        j += 1;
    }
    let delivery_time = match delivery_time {
        Some(t) if t >= 0 && t <= ms(now) => t.unsigned_abs(),
        _ => now,
    };
    let outcome = change(&mut guard, key, |stream| {
        let exists: Vec<bool> = ids.iter().map(|&id| stream.get(id).is_some()).collect();
        let mut claimed: Vec<StreamId> = Vec::new();
        let mut effects: Vec<Vec<Bytes>> = Vec::new();
        let mut created = false;
        let group = stream.group_mut(&name)?;
        let mut propagate_last_id = false;
        if last_id > group.last_id {
            group.last_id = last_id;
            propagate_last_id = true;
        }
        let mut touched = false;
        for (&id, &exists) in ids.iter().zip(&exists) {
            if !exists {
                if group.pending.contains_key(&id) {
                    effects.push(xclaim_effect(
                        &Bytes::copy_from_slice(key),
                        &name,
                        group,
                        id,
                    ));
                    group.ack(id);
                    propagate_last_id = false;
                }
                continue;
            }
            if force && !group.pending.contains_key(&id) {
                group.pending.insert(
                    id,
                    forkless_storage::types::stream::Pending {
                        delivery_time: 0,
                        delivery_count: 0,
                        consumer: Bytes::new(),
                    },
                );
            }
            let Some((owned, delivered_at, delivery_count)) = group
                .pending
                .get(&id)
                .map(|p| (!p.consumer.is_empty(), p.delivery_time, p.delivery_count))
            else {
                continue;
            };
            if owned && min_idle > 0 && ms(now).saturating_sub(ms(delivered_at)) < min_idle {
                continue;
            }
            if !touched {
                created = touch_consumer(group, &consumer, now);
                touched = true;
            }
            let count = match retry_count {
                Some(n) if n >= 0 => n.unsigned_abs(),
                _ if !justid => delivery_count + 1,
                _ => delivery_count,
            };
            group.assign(id, &consumer, delivery_time, count);
            claimed.push(id);
            effects.push(xclaim_effect(
                &Bytes::copy_from_slice(key),
                &name,
                group,
                id,
            ));
            propagate_last_id = false;
        }
        if propagate_last_id {
            effects.push(setid_effect(key, &name, group));
        }
        let entries: Vec<(StreamId, Vec<Bytes>)> = if justid {
            claimed.iter().map(|&id| (id, Vec::new())).collect()
        } else {
            claimed
                .iter()
                .filter_map(|&id| {
                    stream
                        .get(id)
                        .map(|f| (id, f.map(Bytes::copy_from_slice).collect()))
                })
                .collect()
        };
        Some((entries, created, effects))
    })
    .flatten();
    drop(guard);
    let Some((entries, created, effects)) = outcome else {
        return ctx.out.array_len(0);
    };
    if created {
        notify(ctx, STREAM, "xgroup-createconsumer", key);
    }
    if !effects.is_empty() {
        ctx.rewrite_effects(|| effects);
    }
    ctx.out.array_len(entries.len());
    for (id, fields) in entries {
        if justid {
            ctx.out.bulk(id.to_string().as_bytes());
        } else {
            ctx.out.array_len(2);
            ctx.out.bulk(id.to_string().as_bytes());
            ctx.out.array_len(fields.len());
            for field in &fields {
                ctx.out.bulk(field);
            }
        }
    }
}

/// XAUTOCLAIM key group consumer min-idle-time start [COUNT count] [JUSTID]:
/// `[next-start, claimed, deleted-ids]`.
pub(crate) fn xautoclaim(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(min_idle) = parse_i64(arg(argv, 4)) else {
        return ctx
            .out
            .error("ERR Invalid min-idle-time argument for XAUTOCLAIM");
    };
    let min_idle = min_idle.max(0);
    let start = match parse_bound(arg(argv, 5), 0, true) {
        Ok(id) => id,
        Err(msg) => return ctx.out.error(msg),
    };
    let mut count: usize = 100;
    let mut justid = false;
    let mut j = 6;
    while j < argv.len() {
        let more = argv.len() - 1 - j;
        let opt = arg(argv, j);
        if eq_ignore_case(opt, "count") && more > 0 {
            match parse_i64(arg(argv, j + 1)) {
                Some(n) if (1..=i64::MAX / 16).contains(&n) => {
                    count = usize::try_from(n).unwrap_or(usize::MAX);
                }
                Some(_) => return ctx.out.error("ERR COUNT must be > 0"),
                None => return ctx.out.error(reply::NOT_INTEGER),
            }
            j += 1;
        } else if eq_ignore_case(opt, "justid") {
            justid = true;
        } else {
            return ctx.out.error(reply::SYNTAX);
        }
        j += 1;
    }
    let key = arg(argv, 1);
    let name = Bytes::copy_from_slice(arg(argv, 2));
    let consumer = Bytes::copy_from_slice(arg(argv, 3));
    let now = ctx.now_ms;
    let mut guard = ctx.db().write(&[key], now);
    match stream_at(&mut guard, key) {
        Err(msg) => return ctx.out.error(msg),
        Ok(Some(stream)) if stream.group(&name).is_some() => {}
        Ok(_) => return ctx.out.error(&no_key_or_group(key, &name)),
    }
    let key_bytes = Bytes::copy_from_slice(key);
    let outcome = change(&mut guard, key, |stream| {
        let candidates: Vec<(StreamId, bool)> = stream
            .group(&name)?
            .pending
            .range(start..)
            .take(count.saturating_mul(10))
            .map(|(id, _)| (*id, stream.get(*id).is_some()))
            .collect();
        let mut left = count;
        let mut claimed = Vec::new();
        let mut deleted = Vec::new();
        let mut effects = Vec::new();
        let mut created = false;
        let mut touched = false;
        // Where the loop stopped (count reached) and the last id it looked at, for the cursor.
        let mut stopped_at = None;
        let mut visited_last = None;
        let group = stream.group_mut(&name)?;
        for &(id, exists) in &candidates {
            if left == 0 {
                stopped_at = Some(id);
                break;
            }
            visited_last = Some(id);
            if !exists {
                effects.push(xclaim_effect(&key_bytes, &name, group, id));
                group.ack(id);
                deleted.push(id);
                left -= 1;
                continue;
            }
            let Some((delivered_at, delivery_count)) = group
                .pending
                .get(&id)
                .map(|p| (p.delivery_time, p.delivery_count))
            else {
                continue;
            };
            if min_idle > 0 && ms(now).saturating_sub(ms(delivered_at)) < min_idle {
                continue;
            }
            if !touched {
                created = touch_consumer(group, &consumer, now);
                touched = true;
            }
            let count = delivery_count + u64::from(!justid);
            group.assign(id, &consumer, now, count);
            claimed.push(id);
            effects.push(xclaim_effect(&key_bytes, &name, group, id));
            left -= 1;
        }
        // `raxNext` after the loop: the next pending id, or 0-0 at the end.
        let next = stopped_at
            .or_else(|| {
                let from = visited_last?.next()?;
                group.pending.range(from..).next().map(|(id, _)| *id)
            })
            .unwrap_or(StreamId::MIN);
        let entries: Vec<(StreamId, Vec<Bytes>)> = claimed
            .iter()
            .map(|&id| {
                let fields = if justid {
                    Vec::new()
                } else {
                    stream
                        .get(id)
                        .map(|f| f.map(Bytes::copy_from_slice).collect())
                        .unwrap_or_default()
                };
                (id, fields)
            })
            .collect();
        Some((next, entries, deleted, created, effects))
    })
    .flatten();
    drop(guard);
    let Some((next, entries, deleted, created, effects)) = outcome else {
        return ctx.out.error(&no_key_or_group(key, &name));
    };
    if created {
        notify(ctx, STREAM, "xgroup-createconsumer", key);
    }
    if !effects.is_empty() {
        ctx.rewrite_effects(|| effects);
    }
    ctx.out.array_len(3);
    ctx.out.bulk(next.to_string().as_bytes());
    ctx.out.array_len(entries.len());
    for (id, fields) in entries {
        if justid {
            ctx.out.bulk(id.to_string().as_bytes());
        } else {
            ctx.out.array_len(2);
            ctx.out.bulk(id.to_string().as_bytes());
            ctx.out.array_len(fields.len());
            for field in &fields {
                ctx.out.bulk(field);
            }
        }
    }
    ctx.out.array_len(deleted.len());
    for id in deleted {
        ctx.out.bulk(id.to_string().as_bytes());
    }
}

// ---------------------------------------------------------------------------------------------
// XINFO.

/// XINFO: as [`xgroup`].
pub(crate) fn xinfo(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(sub) = super::super::subcommands::subcommand(ctx, argv) else {
        return;
    };
    let spelled = arg(argv, 1);
    let args = argv.get(2..).unwrap_or_default();
    match sub.name {
        "xinfo|stream" => xinfo_stream(ctx, args, spelled),
        "xinfo|groups" => xinfo_groups(ctx, args),
        "xinfo|consumers" => xinfo_consumers(ctx, args),
        _ => xinfo_help(ctx, args),
    }
}

fn xinfo_help(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    help_reply(
        ctx.out,
        "XINFO",
        &[
            "CONSUMERS <key> <groupname>",
            "    Show consumers of <groupname>.",
            "GROUPS <key>",
            "    Show the stream consumer groups.",
            "STREAM <key> [FULL [COUNT <count>]",
            "    Show information about the stream.",
            "HELP",
            "    Prints this help.",
        ],
    );
}

/// Runs `read` on the stream at `key`, or replies `ERR no such key` / WRONGTYPE.
fn with_stream(ctx: &mut Ctx<'_>, key: &[u8], read: impl FnOnce(&mut Ctx<'_>, &Stream)) {
    Stream::read_key(ctx, key, |ctx, stream| match stream {
        Some(stream) => read(ctx, stream),
        None => ctx.out.error(reply::NO_SUCH_KEY),
    });
}

/// XINFO CONSUMERS key group.
fn xinfo_consumers(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let key = arg(args, 0);
    let name = arg(args, 1);
    let now = ctx.now_ms;
    with_stream(ctx, key, |ctx, stream| {
        let Some(group) = stream.group(name) else {
            return ctx.out.error(&no_group_for_key(key, name));
        };
        ctx.out.array_len(group.consumers.len());
        for (consumer_name, consumer) in &group.consumers {
            ctx.out.map_len(3);
            ctx.out.bulk(b"name");
            ctx.out.bulk(consumer_name);
            ctx.out.bulk(b"pending");
            ctx.out.int(len_i64(consumer.pending.len()));
            ctx.out.bulk(b"idle");
            ctx.out
                .int(ms(now).saturating_sub(ms(consumer.seen_time)).max(0));
        }
    });
}

/// XINFO GROUPS key.
fn xinfo_groups(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    with_stream(ctx, arg(args, 0), |ctx, stream| {
        ctx.out.array_len(stream.groups().len());
        for (name, group) in stream.groups() {
            ctx.out.map_len(6);
            ctx.out.bulk(b"name");
            ctx.out.bulk(name);
            ctx.out.bulk(b"consumers");
            ctx.out.int(len_i64(group.consumers.len()));
            ctx.out.bulk(b"pending");
            ctx.out.int(len_i64(group.pending.len()));
            ctx.out.bulk(b"last-delivered-id");
            ctx.out.bulk(group.last_id.to_string().as_bytes());
            ctx.out.bulk(b"entries-read");
            int_or_null(ctx, group.entries_read);
            ctx.out.bulk(b"lag");
            int_or_null(ctx, lag(stream, group));
        }
    });
}

/// XINFO STREAM key [FULL [COUNT count]].
fn xinfo_stream(ctx: &mut Ctx<'_>, args: &[Bytes], spelled: &[u8]) {
    let options = args.get(1..).unwrap_or_default();
    let mut count: usize = 10;
    let full = !options.is_empty();
    if full {
        if options.len() != 1 && options.len() != 3 {
            return subcommand_syntax_error(ctx, "XINFO", spelled);
        }
        if !eq_ignore_case(arg(options, 0), "full") {
            return subcommand_syntax_error(ctx, "XINFO", spelled);
        }
        if options.len() == 3 {
            if !eq_ignore_case(arg(options, 1), "count") {
                return subcommand_syntax_error(ctx, "XINFO", spelled);
            }
            let Some(n) = parse_i64(arg(options, 2)) else {
                return ctx.out.error(reply::NOT_INTEGER);
            };
            count = usize::try_from(n).unwrap_or(10);
        }
    }
    let limit = if count == 0 { usize::MAX } else { count };
    with_stream(ctx, arg(args, 0), |ctx, stream| {
        ctx.out.map_len(if full { 9 } else { 10 });
        ctx.out.bulk(b"length");
        ctx.out.int(len_i64(stream.len()));
        ctx.out.bulk(b"radix-tree-keys");
        ctx.out.int(len_i64(stream.node_count()));
        ctx.out.bulk(b"radix-tree-nodes");
        // A radix tree of n keys of 16 bytes has about this many nodes; forkless keeps a
        // B-tree instead, so the figure is Redis's shape, not a count.
        ctx.out.int(len_i64(stream.node_count() * 2 + 1));
        ctx.out.bulk(b"last-generated-id");
        ctx.out.bulk(stream.last_id().to_string().as_bytes());
        ctx.out.bulk(b"max-deleted-entry-id");
        ctx.out.bulk(stream.max_deleted_id().to_string().as_bytes());
        ctx.out.bulk(b"entries-added");
        ctx.out.int(ms(stream.entries_added()));
        ctx.out.bulk(b"recorded-first-entry-id");
        ctx.out.bulk(stream.first_id().to_string().as_bytes());
        if !full {
            ctx.out.bulk(b"groups");
            ctx.out.int(len_i64(stream.groups().len()));
            ctx.out.bulk(b"first-entry");
            match stream.first() {
                Some((id, fields)) => reply_entry(ctx, id, fields),
                None => ctx.out.null(),
            }
            ctx.out.bulk(b"last-entry");
            match stream.last() {
                Some((id, fields)) => reply_entry(ctx, id, fields),
                None => ctx.out.null(),
            }
            return;
        }
        ctx.out.bulk(b"entries");
        let entries: Vec<_> = stream.iter().take(limit).collect();
        ctx.out.array_len(entries.len());
        for (id, fields) in entries {
            reply_entry(ctx, id, fields);
        }
        ctx.out.bulk(b"groups");
        ctx.out.array_len(stream.groups().len());
        for (name, group) in stream.groups() {
            ctx.out.map_len(7);
            ctx.out.bulk(b"name");
            ctx.out.bulk(name);
            ctx.out.bulk(b"last-delivered-id");
            ctx.out.bulk(group.last_id.to_string().as_bytes());
            ctx.out.bulk(b"entries-read");
            int_or_null(ctx, group.entries_read);
            ctx.out.bulk(b"lag");
            int_or_null(ctx, lag(stream, group));
            ctx.out.bulk(b"pel-count");
            ctx.out.int(len_i64(group.pending.len()));
            ctx.out.bulk(b"pending");
            let pending: Vec<_> = group.pending.iter().take(limit).collect();
            ctx.out.array_len(pending.len());
            for (id, p) in pending {
                ctx.out.array_len(4);
                ctx.out.bulk(id.to_string().as_bytes());
                ctx.out.bulk(&p.consumer);
                ctx.out.int(ms(p.delivery_time));
                ctx.out.int(ms(p.delivery_count));
            }
            ctx.out.bulk(b"consumers");
            ctx.out.array_len(group.consumers.len());
            for (consumer_name, consumer) in &group.consumers {
                ctx.out.map_len(4);
                ctx.out.bulk(b"name");
                ctx.out.bulk(consumer_name);
                ctx.out.bulk(b"seen-time");
                ctx.out.int(ms(consumer.seen_time));
                ctx.out.bulk(b"pel-count");
                ctx.out.int(len_i64(consumer.pending.len()));
                ctx.out.bulk(b"pending");
                let owned: Vec<_> = consumer.pending.iter().take(limit).collect();
                ctx.out.array_len(owned.len());
                for id in owned {
                    let (time, n) = group
                        .pending
                        .get(id)
                        .map_or((0, 0), |p| (p.delivery_time, p.delivery_count));
                    ctx.out.array_len(3);
                    ctx.out.bulk(id.to_string().as_bytes());
                    ctx.out.int(ms(time));
                    ctx.out.int(ms(n));
                }
            }
        }
    });
}
