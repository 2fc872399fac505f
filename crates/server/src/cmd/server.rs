//! Server commands: DBSIZE FLUSHDB FLUSHALL TIME INFO CONFIG SHUTDOWN (COMMAND's handler is in
//! `introspection.rs`, the subcommand table in `subcommands.rs`).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use forkless_storage::Flushed;

use super::meta::{Gate, KeySpec, flags};
use super::subcommands::{help_reply, run_subcommand};
use super::{Command, Ctx, eq_ignore_case, introspection, reply};
use crate::info::{self, LAZYFREE_PENDING, LAZYFREED};
use crate::persistence;

#[rustfmt::skip] // One row per command reads as a table.
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "dbsize", arity: 1, flags: flags!(READONLY, FAST), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["keyspace", "read", "fast"], summary: "Return the number of keys in the selected database", since: "1.0.0", group: "server", handler: dbsize },
    Command { name: "flushdb", arity: -1, flags: flags!(WRITE), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["keyspace", "write", "slow", "dangerous"], summary: "Remove all keys from the current database", since: "1.0.0", group: "server", handler: flushdb },
    Command { name: "flushall", arity: -1, flags: flags!(WRITE), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["keyspace", "write", "slow", "dangerous"], summary: "Remove all keys from all databases", since: "1.0.0", group: "server", handler: flushall },
    Command { name: "time", arity: 1, flags: flags!(LOADING, STALE, FAST), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["fast"], summary: "Return the current server time", since: "2.6.0", group: "server", handler: time },
    Command { name: "lolwut", arity: -1, flags: flags!(READONLY, FAST), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["read", "fast"], summary: "Display some computer art and the Redis version", since: "5.0.0", group: "server", handler: super::lolwut::lolwut },
    Command { name: "info", arity: -1, flags: flags!(LOADING, STALE), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["slow", "dangerous"], summary: "Get information and statistics about the server", since: "1.0.0", group: "server", handler: info },
    Command { name: "config", arity: -2, flags: flags!(), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["slow"], summary: "A container for server configuration commands", since: "2.0.0", group: "server", handler: config },
    Command { name: "cluster", arity: -2, flags: flags!(), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["slow"], summary: "A container for cluster commands", since: "3.0.0", group: "cluster", handler: cluster },
    Command { name: "command", arity: -1, flags: flags!(LOADING, STALE), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["slow", "connection"], summary: "Get array of Redis command details", since: "2.8.13", group: "server", handler: introspection::command },
    Command { name: "shutdown", arity: -1, flags: flags!(ADMIN, NOSCRIPT, LOADING, STALE, NO_MULTI, ALLOW_BUSY), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["admin", "slow", "dangerous"], summary: "Synchronously save the dataset to disk and then shut down the server", since: "1.0.0", group: "server", handler: shutdown },
];

fn dbsize(ctx: &mut Ctx<'_>, _argv: &[Bytes]) {
    let n_keys = ctx.db().len();
    ctx.out.int(i64::try_from(n_keys).unwrap_or(i64::MAX));
}

/// How FLUSHDB/FLUSHALL free what they removed: `[ASYNC|SYNC]`, default SYNC (forkless has no
/// `lazyfree-lazy-user-flush`). Any other argument, or more than one, is a syntax error.
fn flush_is_async(argv: &[Bytes]) -> Option<bool> {
    match argv {
        [_] => Some(false),
        [_, mode] if eq_ignore_case(mode, "async") => Some(true),
        [_, mode] if eq_ignore_case(mode, "sync") => Some(false),
        _ => None,
    }
}

/// Frees `value` on a background thread and counts its `n_objects` in INFO's
/// `lazyfree_pending_objects` until it is gone (`lazyfreed_objects` after). If no thread can be
/// started, frees it inline. For FLUSHDB/FLUSHALL ASYNC and any other command that drops a
/// large value (UNLINK).
pub(crate) fn free_in_background<T: Send + 'static>(value: T, n_objects: u64) {
    LAZYFREE_PENDING.fetch_add(n_objects, Ordering::Relaxed);
    let spawned = std::thread::Builder::new()
        .name("forkless-lazyfree".into())
        .spawn(move || {
            drop(value);
            LAZYFREE_PENDING.fetch_sub(n_objects, Ordering::Relaxed);
            LAZYFREED.fetch_add(n_objects, Ordering::Relaxed);
        });
    if let Err(err) = spawned {
        // The closure, and the value with it, was dropped by the failed spawn.
        LAZYFREE_PENDING.fetch_sub(n_objects, Ordering::Relaxed);
        tracing::warn!("could not start a lazyfree thread, freed inline: {err}");
    }
}

fn free_flushed(flushed: Flushed, is_async: bool) {
    if is_async {
        let n_keys = u64::try_from(flushed.n_keys()).unwrap_or(u64::MAX);
        free_in_background(flushed, n_keys);
    } else {
        drop(flushed);
    }
}

fn flushdb(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(is_async) = flush_is_async(argv) else {
        ctx.out.error(reply::SYNTAX);
        return;
    };
    let flushed = ctx.db().write_all(ctx.now_ms).clear();
    free_flushed(flushed, is_async);
    wake_flushed(ctx, ctx.client.db);
    super::tracking::flushed(ctx.server);
    ctx.out.ok();
}

/// Wakes the clients blocked on keys of database `db` after a flush, as Redis's
/// `signalFlushedDb`: a blocked XREADGROUP learns that its stream is gone; the others find
/// nothing and wait on.
fn wake_flushed(ctx: &Ctx<'_>, db: usize) {
    for key in ctx.server.blocking.waiting_keys(db) {
        ctx.server.blocking.signal(db, &key);
    }
}

fn flushall(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(is_async) = flush_is_async(argv) else {
        ctx.out.error(reply::SYNTAX);
        return;
    };
    let flushed = ctx.server.keyspace.flush_all(ctx.now_ms);
    free_flushed(flushed, is_async);
    ctx.server.replication.replica.local_expires.clear();
    let mut db = 0;
    while ctx.server.keyspace.db(db).is_some() {
        wake_flushed(ctx, db);
        db += 1;
    }
    super::tracking::flushed(ctx.server);
    ctx.out.ok();
}

fn time(ctx: &mut Ctx<'_>, _argv: &[Bytes]) {
    let now_us = crate::server::unix_us();
    ctx.out.array_len(2);
    ctx.out
        .bulk(itoa::Buffer::new().format(now_us / 1_000_000).as_bytes());
    ctx.out
        .bulk(itoa::Buffer::new().format(now_us % 1_000_000).as_bytes());
}

fn info(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let text = info::render(ctx.server, argv.get(1..).unwrap_or_default(), ctx.now_ms);
    ctx.out.verbatim(b"txt", text.as_bytes());
}

// ---------------------------------------------------------------------------------------------
// CONFIG

fn config(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    run_subcommand(ctx, argv);
}

pub(super) fn config_help(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    help_reply(
        ctx.out,
        "CONFIG",
        &[
            "GET <pattern>",
            "    Return parameters matching the glob-like <pattern> and their values.",
            "SET <directive> <value>",
            "    Set the configuration <directive> to <value>.",
            "RESETSTAT",
            "    Reset statistics reported by the INFO command.",
            "REWRITE",
            "    Rewrite the configuration file.",
            "HELP",
            "    Prints this help.",
        ],
    );
}

pub(super) fn config_resetstat(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    info::reset_stats(ctx.server);
    ctx.server.latency.reset_histograms();
    ctx.out.ok();
}

/// CONFIG GET pattern [pattern ...]: a map of name to value (a flat array in RESP2).
pub(super) fn config_get(ctx: &mut Ctx<'_>, patterns: &[Bytes]) {
    let patterns: Vec<&[u8]> = patterns.iter().map(|pattern| &pattern[..]).collect();
    let found = ctx.server.config().get(&patterns);
    ctx.out.map_len(found.len());
    for (name, value) in &found {
        ctx.out.bulk(name.as_bytes());
        ctx.out.bulk(value.as_bytes());
    }
}

/// CONFIG SET name value [name value ...]: all or nothing. The hot-path copies of the changed
/// values are refreshed under the same write lock, so no command sees one without the other.
pub(super) fn config_set(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    if args.len() % 2 != 0 {
        ctx.out.error(reply::SYNTAX);
        return;
    }
    let pairs: Vec<(&[u8], &[u8])> = args
        .chunks_exact(2)
        .filter_map(|pair| match pair {
            [name, value] => Some((&name[..], &value[..])),
            _ => None,
        })
        .collect();
    // Redis's DENY_LOADING_CONFIG options, refused while a dataset loads (a replica's sync,
    // async loading included), with the loading error in precedence over any other.
    let loading = ctx
        .server
        .persistence
        .loading
        .active
        .load(Ordering::Acquire)
        || ctx
            .server
            .replication
            .replica
            .async_loading
            .load(Ordering::Relaxed);
    if loading
        && pairs.iter().any(|(name, _)| {
            ["appendonly", "repl-diskless-load", "dir"]
                .iter()
                .any(|denied| name.eq_ignore_ascii_case(denied.as_bytes()))
        })
    {
        ctx.out.error(crate::persistence::LOADING);
        return;
    }
    let client_is_local = (ctx.client.handle.addr.ip()).is_none_or(|ip| ip.is_loopback());
    let mut config = ctx.server.config_mut();
    let mut candidate = config.clone();
    let result = candidate
        .set_from_client(&pairs, client_is_local)
        .and_then(|changed| {
            crate::limits::check_maxclients_raise(config.maxclients, &candidate)?;
            // Last, as it is the one check with an effect: the new listeners are bound, and
            // the old ones closed, only if everything else is valid.
            crate::listen::config_changed(ctx.server, &candidate, &changed)?;
            Ok(changed)
        });
    match result {
        Ok(changed) => {
            let previous = std::mem::replace(&mut *config, candidate);
            drop(config);
            apply_config(ctx.server, &changed);
            if let Err(message) =
                crate::aof::config_changed(ctx.server, &changed, ctx.client.in_exec)
            {
                // Redis's restoreBackupConfig: the values before this CONFIG SET come back.
                *ctx.server.config_mut() = previous;
                apply_config(ctx.server, &changed);
                ctx.out.error(&message);
                return;
            }
            if !changed.is_empty() {
                tracing::debug!(options = ?changed, "CONFIG SET");
            }
            ctx.out.ok();
        }
        Err(message) => ctx.out.error(&message),
    }
}

/// Puts the server's configuration into effect after CONFIG SET changed `changed` (or put
/// them back): the tunables the hot paths read, the retained budget, notifications, ACL
/// options, the default user's password and the log level.
fn apply_config(server: &crate::server::Server, changed: &[&str]) {
    let config = server.config();
    server.tunables.refresh(&config);
    server
        .keyspace
        .set_retained_budget(config.snapshot_retained_budget());
    let loglevel = config.loglevel;
    let requirepass = config.requirepass.clone();
    server.acl.configure_options(&config);
    drop(config);
    crate::notify::configure(server);
    if changed.contains(&"requirepass") {
        server
            .acl
            .set_default_password(server, requirepass.as_deref());
    }
    if changed.contains(&"loglevel") {
        crate::set_log_level(loglevel);
    }
}

pub(super) fn config_rewrite(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    let config = ctx.server.config();
    // The users go in as `user` lines, unless an ACL file keeps them.
    let users: Vec<Vec<u8>> = if config.stored_text("aclfile").is_empty() {
        ctx.server
            .acl
            .users()
            .iter()
            .map(|user| user.line())
            .collect()
    } else {
        Vec::new()
    };
    match config.rewrite_with_users(Some(&users)) {
        Ok(()) => {
            tracing::info!("CONFIG REWRITE executed with success.");
            ctx.out.ok();
        }
        Err(message) => {
            tracing::warn!("CONFIG REWRITE failed: {message}");
            ctx.out.error(&message);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SHUTDOWN

/// SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] | SHUTDOWN ABORT. A failed final save is an error reply
/// and the server keeps running, unless FORCE says to stop anyway. On success the connection is
/// closed with no reply, as in Redis.
fn shutdown(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let (mut nosave, mut save, mut now, mut force, mut abort) = (false, false, false, false, false);
    for arg in argv.iter().skip(1) {
        if eq_ignore_case(arg, "nosave") {
            nosave = true;
        } else if eq_ignore_case(arg, "save") {
            save = true;
        } else if eq_ignore_case(arg, "now") {
            now = true;
        } else if eq_ignore_case(arg, "force") {
            force = true;
        } else if eq_ignore_case(arg, "abort") {
            abort = true;
        } else {
            ctx.out.error(reply::SYNTAX);
            return;
        }
    }
    if (abort && (nosave || save || now || force)) || (nosave && save) {
        ctx.out.error(reply::SYNTAX);
        return;
    }
    if abort {
        // A SHUTDOWN here never waits for replicas, so none is ever in progress.
        ctx.out.error("ERR No shutdown in progress.");
        return;
    }
    tracing::warn!("User requested shutdown...");
    // SAVE saves, NOSAVE does not, neither follows the save points (`persistence::shutdown`).
    // While a dataset loads (a replica's sync), never save: the dump would be half of it
    // (Redis's shutdownCommand forces NOSAVE while loading).
    let save = if ctx.server.persistence.loading() {
        Some(false)
    } else if save {
        Some(true)
    } else if nosave {
        Some(false)
    } else {
        None
    };
    if let Err(message) = persistence::shutdown(ctx.server, save) {
        if !force {
            ctx.out.error(&message);
            return;
        }
        // FORCE: exit even though the final save failed.
        ctx.server.skip_final_save.store(true, Ordering::Release);
        ctx.server.request_shutdown();
    }
    // Redis exits without replying; the client sees the connection close.
    ctx.client.close_after_reply = true;
}

/// CLUSTER: forkless runs as a Redis started with `cluster-enabled no`. The subcommands exist
/// (COMMAND reports them, scripts and ACL see their flags) and each answers Redis's error for
/// a server without cluster support, once its name and arity are checked.
fn cluster(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    super::subcommands::run_subcommand(ctx, argv);
}

pub(super) fn cluster_disabled(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    ctx.out
        .error("ERR This instance has cluster support disabled");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_modes() {
        let argv = |words: &[&str]| -> Vec<Bytes> {
            words
                .iter()
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect()
        };
        assert_eq!(flush_is_async(&argv(&["flushdb"])), Some(false));
        assert_eq!(flush_is_async(&argv(&["flushdb", "ASYNC"])), Some(true));
        assert_eq!(flush_is_async(&argv(&["flushdb", "sync"])), Some(false));
        assert_eq!(flush_is_async(&argv(&["flushdb", "now"])), None);
        assert_eq!(flush_is_async(&argv(&["flushdb", "async", "sync"])), None);
    }
}
