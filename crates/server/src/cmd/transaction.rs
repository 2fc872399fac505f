//! Transactions: MULTI EXEC DISCARD WATCH UNWATCH.
//!
//! MULTI queues commands on the connection. EXEC takes the command gate exclusively
//! (`forkless_storage::CommandGate`): it waits for commands in flight on other connections,
//! keeps new ones out, and runs the queue with nothing interleaved, not even a snapshot cut. WATCH
//! registers a flag with the watched keys' shards; any change to them, from any connection,
//! including expiry and FLUSHDB, sets it, and EXEC then replies a null array without running.

use bytes::Bytes;
use forkless_protocol::Out;
use forkless_storage::WatchFlag;

use super::meta::{Flags, Gate, KeySpec, flags};
use super::{Client, Command, Ctx, dispatch, lookup};
use crate::server::Server;

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "multi", arity: 1, flags: flags!(NOSCRIPT, LOADING, STALE, FAST, ALLOW_BUSY, RUNS_IN_MULTI), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["fast", "transaction"], summary: "Starts a transaction.", since: "1.2.0", group: "transactions", handler: multi },
    Command { name: "exec", arity: 1, flags: flags!(NOSCRIPT, LOADING, STALE, SKIP_SLOWLOG, RUNS_IN_MULTI), keys: KeySpec::NONE, gate: Gate::Exclusive, categories: &["slow", "transaction"], summary: "Executes all commands in a transaction.", since: "1.2.0", group: "transactions", handler: exec },
    Command { name: "discard", arity: 1, flags: flags!(NOSCRIPT, LOADING, STALE, FAST, ALLOW_BUSY, RUNS_IN_MULTI), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["fast", "transaction"], summary: "Discards a transaction.", since: "2.0.0", group: "transactions", handler: discard },
    Command { name: "watch", arity: -2, flags: flags!(NOSCRIPT, LOADING, STALE, FAST, ALLOW_BUSY, RUNS_IN_MULTI), keys: KeySpec::ALL, gate: Gate::Shared, categories: &["fast", "transaction"], summary: "Monitors changes to keys to determine the execution of a transaction.", since: "2.2.0", group: "transactions", handler: watch },
    Command { name: "unwatch", arity: 1, flags: flags!(NOSCRIPT, LOADING, STALE, FAST, ALLOW_BUSY, RUNS_IN_MULTI), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["fast", "transaction"], summary: "Forgets about watched keys of a transaction.", since: "2.2.0", group: "transactions", handler: unwatch },
];

/// A connection's watched keys.
#[derive(Debug, Default)]
pub(crate) struct Watched {
    flag: WatchFlag,
    /// (database, key, had a TTL when watched).
    keys: Vec<(usize, Bytes, bool)>,
}

impl Watched {
    /// How many keys are watched.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Returns true if and only if a watched key was changed (CLIENT LIST's `d` flag).
    pub(crate) fn is_dirty(&self) -> bool {
        self.flag.is_set()
    }
}

/// Queues `argv` if the client is inside MULTI. Returns true if and only if it was queued.
pub(crate) fn queue(client: &mut Client, out: &mut Out, command: &Command, argv: &[Bytes]) -> bool {
    let Some(queued) = &mut client.multi else {
        return false;
    };
    if command.has_flag(Flags::RUNS_IN_MULTI) {
        return false;
    }
    queued.push(argv.to_vec());
    out.simple(b"QUEUED");
    true
}

/// A command was refused while queuing: the transaction will abort.
pub(crate) fn flag_error(client: &mut Client) {
    if client.multi.is_some() {
        client.multi_failed = true;
    }
}

/// Forgets every watched key (UNWATCH, EXEC, DISCARD, RESET, disconnect).
pub(crate) fn unwatch_all(server: &Server, client: &mut Client) {
    for (db, key, _) in client.watched.keys.drain(..) {
        server.db(db).unwatch(&key, &client.watched.flag);
    }
    client.watched.flag.reset();
}

/// Leaves MULTI, dropping the queue (DISCARD, RESET).
pub(crate) fn discard_all(server: &Server, client: &mut Client) {
    client.multi = None;
    client.multi_failed = false;
    unwatch_all(server, client);
}

fn multi(ctx: &mut Ctx<'_>, _argv: &[Bytes]) {
    if ctx.client.multi.is_some() {
        ctx.out.error("ERR MULTI calls can not be nested");
        return;
    }
    ctx.client.multi = Some(Vec::new());
    ctx.client.multi_failed = false;
    ctx.out.ok();
}

fn discard(ctx: &mut Ctx<'_>, _argv: &[Bytes]) {
    if ctx.client.multi.is_none() {
        ctx.out.error("ERR DISCARD without MULTI");
        return;
    }
    discard_all(ctx.server, ctx.client);
    ctx.out.ok();
}

fn watch(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    if ctx.client.multi.is_some() {
        ctx.out.error("ERR WATCH inside MULTI is not allowed");
        return;
    }
    let db_idx = ctx.client.db;
    let db = ctx.server.db(db_idx);
    for key in ctx
        .keys
        .positions(argv.len())
        .filter_map(|pos| argv.get(pos))
    {
        db.watch(key, &ctx.client.watched.flag);
        let has_ttl = db
            .read(&[key], ctx.now_ms)
            .get(key)
            .is_some_and(|entry| entry.expire_at_ms().is_some());
        ctx.client.watched.keys.push((db_idx, key.clone(), has_ttl));
    }
    ctx.out.ok();
}

fn unwatch(ctx: &mut Ctx<'_>, _argv: &[Bytes]) {
    unwatch_all(ctx.server, ctx.client);
    ctx.out.ok();
}

/// Returns true if and only if a watched key changed, or expired, since WATCH.
fn watched_key_changed(ctx: &Ctx<'_>) -> bool {
    ctx.client.watched.flag.is_set()
        || ctx.client.watched.keys.iter().any(|(db, key, had_ttl)| {
            // Redis 7.0 aborts when a watched key expired after WATCH, even if nothing has
            // removed it yet.
            *had_ttl
                && ctx
                    .server
                    .db(*db)
                    .read(&[key], ctx.now_ms)
                    .get(key)
                    .is_none()
        })
}

fn exec(ctx: &mut Ctx<'_>, _argv: &[Bytes]) {
    let Some(queued) = ctx.client.multi.take() else {
        ctx.out.error("ERR EXEC without MULTI");
        return;
    };
    if std::mem::take(&mut ctx.client.multi_failed) {
        unwatch_all(ctx.server, ctx.client);
        ctx.out
            .error("EXECABORT Transaction discarded because of previous errors.");
        return;
    }
    let server = ctx.server;
    let _exclusive = server.keyspace.gate().exclusive();
    if watched_key_changed(ctx) {
        unwatch_all(server, ctx.client);
        ctx.out.null_array();
        return;
    }
    ctx.out.array_len(queued.len());
    ctx.client.in_exec = true;
    for argv in &queued {
        let found = argv.first().and_then(|name| lookup(name));
        match found {
            Some((idx, command)) => {
                // Permissions are checked again: they may have changed since queuing.
                match crate::acl::check(server, ctx.client, idx, argv, crate::acl::Context::Multi) {
                    Ok(()) => dispatch(server, ctx.client, ctx.out, idx, command, argv),
                    Err((denied, _)) => ctx.out.error(&format!(
                        "NOPERM ACLs rules changed between the moment the transaction was \
                         accumulated and the EXEC call. This command is no longer allowed for \
                         the following reason: {}",
                        match denied {
                            crate::acl::Denied::Command => {
                                "no permission to execute the command or subcommand"
                            }
                            crate::acl::Denied::Key(_) => {
                                "no permission to touch the specified keys"
                            }
                            crate::acl::Denied::Channel(_) => {
                                "no permission to access one of the channels used as arguments"
                            }
                        }
                    )),
                }
            }
            // Unknown commands were refused while queuing; this cannot happen, but a reply
            // must still be written for every queued command.
            None => ctx.out.error("ERR unknown command"),
        }
    }
    ctx.client.in_exec = false;
    // The queue's effects are one unit, published while the gate still keeps everything out.
    crate::effects::end_transaction(server);
    unwatch_all(server, ctx.client);
}
