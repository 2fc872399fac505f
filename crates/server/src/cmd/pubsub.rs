//! Pub/sub commands: SUBSCRIBE UNSUBSCRIBE PSUBSCRIBE PUNSUBSCRIBE PUBLISH PUBSUB, and the
//! sharded ones: SSUBSCRIBE SUNSUBSCRIBE SPUBLISH.

use bytes::Bytes;

use super::meta::{Gate, KeySpec, flags};
use super::{Command, Ctx, eq_ignore_case, unknown_subcommand};
use crate::pubsub::{Kind, Limits};

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "subscribe", arity: -2, flags: flags!(PUBSUB, NOSCRIPT, LOADING, STALE, IN_SUBSCRIBED_MODE), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["pubsub", "slow"], summary: "Listens for messages published to channels.", since: "2.0.0", group: "pubsub", handler: subscribe },
    Command { name: "unsubscribe", arity: -1, flags: flags!(PUBSUB, NOSCRIPT, LOADING, STALE, IN_SUBSCRIBED_MODE), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["pubsub", "slow"], summary: "Stops listening to messages posted to channels.", since: "2.0.0", group: "pubsub", handler: unsubscribe },
    Command { name: "psubscribe", arity: -2, flags: flags!(PUBSUB, NOSCRIPT, LOADING, STALE, IN_SUBSCRIBED_MODE), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["pubsub", "slow"], summary: "Listens for messages published to channels that match one or more patterns.", since: "2.0.0", group: "pubsub", handler: psubscribe },
    Command { name: "punsubscribe", arity: -1, flags: flags!(PUBSUB, NOSCRIPT, LOADING, STALE, IN_SUBSCRIBED_MODE), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["pubsub", "slow"], summary: "Stops listening to messages published to channels that match one or more patterns.", since: "2.0.0", group: "pubsub", handler: punsubscribe },
    Command { name: "publish", arity: 3, flags: flags!(PUBSUB, LOADING, STALE, FAST, MAY_REPLICATE), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["pubsub", "fast"], summary: "Posts a message to a channel.", since: "2.0.0", group: "pubsub", handler: publish },
    Command { name: "ssubscribe", arity: -2, flags: flags!(PUBSUB, NOSCRIPT, LOADING, STALE, IN_SUBSCRIBED_MODE), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["pubsub", "slow"], summary: "Listen for messages published to the given shard channels", since: "7.0.0", group: "pubsub", handler: ssubscribe },
    Command { name: "sunsubscribe", arity: -1, flags: flags!(PUBSUB, NOSCRIPT, LOADING, STALE, IN_SUBSCRIBED_MODE), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["pubsub", "slow"], summary: "Stop listening for messages posted to the given shard channels", since: "7.0.0", group: "pubsub", handler: sunsubscribe },
    Command { name: "spublish", arity: 3, flags: flags!(PUBSUB, LOADING, STALE, FAST), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["pubsub", "fast"], summary: "Post a message to a shard channel", since: "7.0.0", group: "pubsub", handler: spublish },
    Command { name: "pubsub", arity: -2, flags: flags!(), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["slow"], summary: "A container for Pub/Sub commands.", since: "2.8.0", group: "pubsub", handler: pubsub },
];

/// `[kind, name, count]`, a push in RESP3, an array in RESP2.
fn confirm(ctx: &mut Ctx<'_>, reply: &[u8], kind: Kind, name: Option<&Bytes>) {
    let count = ctx.client.subs.count(kind);
    ctx.out.push_len(3);
    ctx.out.bulk(reply);
    match name {
        Some(name) => ctx.out.bulk(name),
        None => ctx.out.null(),
    }
    ctx.out.int(i64::try_from(count).unwrap_or(i64::MAX));
}

fn subscribe_to(ctx: &mut Ctx<'_>, argv: &[Bytes], kind: Kind) {
    let reply: &[u8] = match kind {
        Kind::Channel => b"subscribe",
        Kind::Pattern => b"psubscribe",
        Kind::Shard => b"ssubscribe",
    };
    for name in argv.iter().skip(1) {
        ctx.server
            .pubsub
            .subscribe(&mut ctx.client.subs, &ctx.client.handle, name, kind);
        confirm(ctx, reply, kind, Some(name));
    }
}

fn unsubscribe_from(ctx: &mut Ctx<'_>, argv: &[Bytes], kind: Kind) {
    let reply: &[u8] = match kind {
        Kind::Channel => b"unsubscribe",
        Kind::Pattern => b"punsubscribe",
        Kind::Shard => b"sunsubscribe",
    };
    let names: Vec<Bytes> = if argv.len() > 1 {
        argv.iter().skip(1).cloned().collect()
    } else {
        ctx.client.subs.of(kind).iter().cloned().collect()
    };
    if names.is_empty() {
        confirm(ctx, reply, kind, None);
        return;
    }
    for name in &names {
        ctx.server
            .pubsub
            .unsubscribe(&mut ctx.client.subs, ctx.client.id, name, kind);
        confirm(ctx, reply, kind, Some(name));
    }
}

fn subscribe(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    subscribe_to(ctx, argv, Kind::Channel);
}

fn psubscribe(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    subscribe_to(ctx, argv, Kind::Pattern);
}

fn ssubscribe(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    subscribe_to(ctx, argv, Kind::Shard);
}

fn unsubscribe(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    unsubscribe_from(ctx, argv, Kind::Channel);
}

fn punsubscribe(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    unsubscribe_from(ctx, argv, Kind::Pattern);
}

fn sunsubscribe(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    unsubscribe_from(ctx, argv, Kind::Shard);
}

fn publish(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    publish_to(ctx, argv, false);
}

fn spublish(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    publish_to(ctx, argv, true);
}

fn publish_to(ctx: &mut Ctx<'_>, argv: &[Bytes], shard: bool) {
    let (Some(channel), Some(payload)) = (argv.get(1), argv.get(2)) else {
        return;
    };
    let limits = {
        let config = ctx.server.config();
        let class = &config.client_output_buffer_limit.pubsub;
        Limits {
            hard_bytes: class.hard_limit_bytes,
            soft_bytes: class.soft_limit_bytes,
            soft_seconds: class.soft_limit_seconds,
        }
    };
    let receivers = if shard {
        ctx.server.pubsub.publish_shard(channel, payload, limits)
    } else {
        ctx.server.pubsub.publish(channel, payload, limits)
    };
    ctx.out.int(i64::try_from(receivers).unwrap_or(i64::MAX));
}

fn pubsub(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(sub) = argv.get(1) else { return };
    let args = argv.get(2..).unwrap_or_default();
    let shard = eq_ignore_case(sub, "shardchannels") || eq_ignore_case(sub, "shardnumsub");
    let kind = if shard { Kind::Shard } else { Kind::Channel };
    if (eq_ignore_case(sub, "channels") || eq_ignore_case(sub, "shardchannels")) && args.len() <= 1
    {
        let channels = ctx
            .server
            .pubsub
            .channels(kind, args.first().map(|p| &p[..]));
        ctx.out.array_len(channels.len());
        for channel in &channels {
            ctx.out.bulk(channel);
        }
    } else if eq_ignore_case(sub, "numsub") || eq_ignore_case(sub, "shardnumsub") {
        ctx.out.array_len(args.len() * 2);
        for channel in args {
            ctx.out.bulk(channel);
            let subscribers = ctx.server.pubsub.numsub(kind, channel);
            ctx.out.int(i64::try_from(subscribers).unwrap_or(i64::MAX));
        }
    } else if eq_ignore_case(sub, "numpat") && args.is_empty() {
        ctx.out
            .int(i64::try_from(ctx.server.pubsub.numpat()).unwrap_or(i64::MAX));
    } else if eq_ignore_case(sub, "help") && args.is_empty() {
        let lines = [
            "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CHANNELS [<pattern>]",
            "    Return the currently active channels matching a <pattern> (default: '*').",
            "NUMPAT",
            "    Return number of subscriptions to patterns.",
            "NUMSUB [<channel> ...]",
            "    Return the number of subscribers for the specified channels, excluding",
            "    pattern subscriptions(default: no channels).",
            "SHARDCHANNELS [<pattern>]",
            "    Return the currently active shard level channels matching a <pattern> (default: '*').",
            "SHARDNUMSUB [<shardchannel> ...]",
            "    Return the number of subscribers for the specified shard level channel(s)",
            "HELP",
            "    Prints this help.",
        ];
        ctx.out.array_len(lines.len());
        for line in lines {
            ctx.out.simple(line.as_bytes());
        }
    } else {
        unknown_subcommand(ctx, argv);
    }
}
