//! Server commands: DBSIZE FLUSHDB FLUSHALL TIME INFO CONFIG COMMAND SHUTDOWN.
//!
//! This module also holds the subcommand table of the container commands (CONFIG, COMMAND,
//! CLIENT), which COMMAND INFO/DOCS/LIST report and [`subcommand`] checks arity against.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use forkless_protocol::Out;
use forkless_storage::Flushed;
use forkless_storage::pattern::glob_match;

use super::{Command, Ctx, all_commands, eq_ignore_case, lookup, reply, unknown_subcommand};
use crate::info::{self, LAZYFREE_PENDING, LAZYFREED};
use crate::persistence;

#[rustfmt::skip] // One row per command reads as a table.
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "dbsize", arity: 1, flags: &["readonly", "fast"], keys: (0, 0, 0), categories: &["keyspace", "read", "fast"], summary: "Return the number of keys in the selected database", since: "1.0.0", group: "server", handler: dbsize },
    Command { name: "flushdb", arity: -1, flags: &["write"], keys: (0, 0, 0), categories: &["keyspace", "write", "slow", "dangerous"], summary: "Remove all keys from the current database", since: "1.0.0", group: "server", handler: flushdb },
    Command { name: "flushall", arity: -1, flags: &["write"], keys: (0, 0, 0), categories: &["keyspace", "write", "slow", "dangerous"], summary: "Remove all keys from all databases", since: "1.0.0", group: "server", handler: flushall },
    Command { name: "time", arity: 1, flags: &["loading", "stale", "fast"], keys: (0, 0, 0), categories: &["fast"], summary: "Return the current server time", since: "2.6.0", group: "server", handler: time },
    Command { name: "info", arity: -1, flags: &["loading", "stale"], keys: (0, 0, 0), categories: &["slow", "dangerous"], summary: "Get information and statistics about the server", since: "1.0.0", group: "server", handler: info },
    Command { name: "config", arity: -2, flags: &[], keys: (0, 0, 0), categories: &["slow"], summary: "A container for server configuration commands", since: "2.0.0", group: "server", handler: config },
    Command { name: "command", arity: -1, flags: &["loading", "stale"], keys: (0, 0, 0), categories: &["slow", "connection"], summary: "Get array of Redis command details", since: "2.8.13", group: "server", handler: command },
    Command { name: "shutdown", arity: -1, flags: &["admin", "noscript", "loading", "stale", "no_multi", "allow_busy"], keys: (0, 0, 0), categories: &["admin", "slow", "dangerous"], summary: "Synchronously save the dataset to disk and then shut down the server", since: "1.0.0", group: "server", handler: shutdown },
];

/// One subcommand of a container command (`config|get`), with what COMMAND INFO and COMMAND
/// DOCS report for it. Subcommands share their container's doc group.
#[derive(Debug)]
pub(crate) struct Subcommand {
    /// Full lower-case name, `container|sub`.
    pub(crate) name: &'static str,
    /// Redis arity, counting the container and the subcommand name.
    pub(crate) arity: i32,
    pub(crate) flags: &'static [&'static str],
    /// Key positions in the full command line: first key, last key, step.
    pub(crate) keys: (i32, i32, i32),
    /// ACL categories without the `@`.
    pub(crate) categories: &'static [&'static str],
    pub(crate) summary: &'static str,
    pub(crate) since: &'static str,
}

impl Subcommand {
    /// The container's name (`config` for `config|get`).
    fn container(&self) -> &'static str {
        self.name
            .split_once('|')
            .map_or(self.name, |(container, _)| container)
    }
}

const NO_KEYS: (i32, i32, i32) = (0, 0, 0);
const OBJECT_KEY: (i32, i32, i32) = (2, 2, 1);
const OBJECT_FLAGS: &[&str] = &["readonly"];
const OBJECT_CATEGORIES: &[&str] = &["keyspace", "read", "slow"];
const ADMIN: &[&str] = &["admin", "noscript", "loading", "stale"];
const ADMIN_CATEGORIES: &[&str] = &["admin", "slow", "dangerous"];
const CLIENT_FLAGS: &[&str] = &["noscript", "loading", "stale"];
const CLIENT_ADMIN_CATEGORIES: &[&str] = &["admin", "slow", "dangerous", "connection"];
const STALE: &[&str] = &["loading", "stale"];
const SLOW_CONNECTION: &[&str] = &["slow", "connection"];
const HELP_SUMMARY: &str = "Show helpful text about the different subcommands";

/// The subcommands forkless implements, grouped by container, with Redis 7.0's metadata.
#[rustfmt::skip] // One row per subcommand reads as a table.
pub(crate) const SUBCOMMANDS: &[Subcommand] = &[
    Subcommand { name: "config|get", arity: -3, flags: ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Get the values of configuration parameters", since: "2.0.0" },
    Subcommand { name: "config|set", arity: -4, flags: ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Set configuration parameters to the given values", since: "2.0.0" },
    Subcommand { name: "config|resetstat", arity: 2, flags: ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Reset the stats returned by INFO", since: "2.0.0" },
    Subcommand { name: "config|rewrite", arity: 2, flags: ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Rewrite the configuration file with the in memory configuration", since: "2.8.0" },
    Subcommand { name: "config|help", arity: 2, flags: STALE, keys: NO_KEYS, categories: &["slow"], summary: HELP_SUMMARY, since: "5.0.0" },
    Subcommand { name: "command|count", arity: 2, flags: STALE, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Get total number of Redis commands", since: "2.8.13" },
    Subcommand { name: "command|docs", arity: -2, flags: STALE, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Get array of specific Redis command documentation", since: "7.0.0" },
    Subcommand { name: "command|getkeys", arity: -4, flags: STALE, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Extract keys given a full Redis command", since: "2.8.13" },
    Subcommand { name: "command|info", arity: -2, flags: STALE, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Get array of specific Redis command details, or all when no argument is given.", since: "2.8.13" },
    Subcommand { name: "command|list", arity: -2, flags: STALE, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Get an array of Redis command names", since: "7.0.0" },
    Subcommand { name: "command|help", arity: 2, flags: STALE, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: HELP_SUMMARY, since: "5.0.0" },
    Subcommand { name: "object|encoding", arity: 3, flags: OBJECT_FLAGS, keys: OBJECT_KEY, categories: OBJECT_CATEGORIES, summary: "Inspect the internal encoding of a Redis object", since: "2.2.3" },
    Subcommand { name: "object|freq", arity: 3, flags: OBJECT_FLAGS, keys: OBJECT_KEY, categories: OBJECT_CATEGORIES, summary: "Get the logarithmic access frequency counter of a Redis object", since: "4.0.0" },
    Subcommand { name: "object|help", arity: 2, flags: STALE, keys: NO_KEYS, categories: &["keyspace", "slow"], summary: HELP_SUMMARY, since: "6.2.0" },
    Subcommand { name: "object|idletime", arity: 3, flags: OBJECT_FLAGS, keys: OBJECT_KEY, categories: OBJECT_CATEGORIES, summary: "Get the time since a Redis object was last accessed", since: "2.2.3" },
    Subcommand { name: "object|refcount", arity: 3, flags: OBJECT_FLAGS, keys: OBJECT_KEY, categories: OBJECT_CATEGORIES, summary: "Get the number of references to the value of the key", since: "2.2.3" },
    Subcommand { name: "client|getname", arity: 2, flags: CLIENT_FLAGS, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Get the current connection name", since: "2.6.9" },
    Subcommand { name: "client|help", arity: 2, flags: STALE, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: HELP_SUMMARY, since: "5.0.0" },
    Subcommand { name: "client|id", arity: 2, flags: CLIENT_FLAGS, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Returns the client ID for the current connection", since: "5.0.0" },
    Subcommand { name: "client|info", arity: 2, flags: CLIENT_FLAGS, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Returns information about the current client connection.", since: "6.2.0" },
    Subcommand { name: "client|kill", arity: -3, flags: ADMIN, keys: NO_KEYS, categories: CLIENT_ADMIN_CATEGORIES, summary: "Kill the connection of a client", since: "2.4.0" },
    Subcommand { name: "client|list", arity: -2, flags: ADMIN, keys: NO_KEYS, categories: CLIENT_ADMIN_CATEGORIES, summary: "Get the list of client connections", since: "2.4.0" },
    Subcommand { name: "client|no-evict", arity: 3, flags: ADMIN, keys: NO_KEYS, categories: CLIENT_ADMIN_CATEGORIES, summary: "Set client eviction mode for the current connection", since: "7.0.0" },
    Subcommand { name: "client|setname", arity: 3, flags: CLIENT_FLAGS, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Set the current connection name", since: "2.6.9" },
];

/// The subcommands of `container`, in table order.
fn subcommands_of(container: &str) -> impl Iterator<Item = &'static Subcommand> + '_ {
    SUBCOMMANDS
        .iter()
        .filter(move |sub| sub.container() == container)
}

/// Finds `container|sub` (any case) in the subcommand table.
fn find_subcommand(container: &[u8], sub: &[u8]) -> Option<&'static Subcommand> {
    SUBCOMMANDS.iter().find(|row| {
        row.name.split_once('|').is_some_and(|(parent, name)| {
            eq_ignore_case(container, parent) && eq_ignore_case(sub, name)
        })
    })
}

/// Resolves the subcommand named by `argv[1]` and checks its arity, replying as Redis does when
/// either fails ("unknown subcommand", "wrong number of arguments for 'config|get' command").
/// Returns the table row only when the handler should go on. For container handlers.
pub(crate) fn subcommand(ctx: &mut Ctx<'_>, argv: &[Bytes]) -> Option<&'static Subcommand> {
    let (Some(container), Some(sub)) = (argv.first(), argv.get(1)) else {
        unknown_subcommand(ctx, argv);
        return None;
    };
    let Some(found) = find_subcommand(container, sub) else {
        unknown_subcommand(ctx, argv);
        return None;
    };
    if !arity_ok(found.arity, argv.len()) {
        ctx.out.error(&format!(
            "ERR wrong number of arguments for '{}' command",
            found.name
        ));
        return None;
    }
    Some(found)
}

/// Returns true if and only if `argc` arguments satisfy Redis arity `arity`.
fn arity_ok(arity: i32, argc: usize) -> bool {
    let argc = i64::try_from(argc).unwrap_or(i64::MAX);
    let arity = i64::from(arity);
    if arity >= 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

/// Writes a HELP reply: one status line per entry, under Redis's header line.
fn help_reply(out: &mut Out, container: &str, lines: &[&str]) {
    out.array_len(lines.len() + 1);
    out.simple(
        format!("{container} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:").as_bytes(),
    );
    for line in lines {
        out.simple(line.as_bytes());
    }
}

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
    ctx.out.ok();
}

fn flushall(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(is_async) = flush_is_async(argv) else {
        ctx.out.error(reply::SYNTAX);
        return;
    };
    let flushed = ctx.server.keyspace.flush_all(ctx.now_ms);
    free_flushed(flushed, is_async);
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
    let Some(sub) = subcommand(ctx, argv) else {
        return;
    };
    let args = argv.get(2..).unwrap_or_default();
    match sub.name {
        "config|get" => config_get(ctx, args),
        "config|set" => config_set(ctx, args),
        "config|resetstat" => {
            info::reset_stats(ctx.server);
            ctx.out.ok();
        }
        "config|rewrite" => config_rewrite(ctx),
        _ => help_reply(
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
        ),
    }
}

/// CONFIG GET pattern [pattern ...]: a map of name to value (a flat array in RESP2).
fn config_get(ctx: &mut Ctx<'_>, patterns: &[Bytes]) {
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
fn config_set(ctx: &mut Ctx<'_>, args: &[Bytes]) {
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
    let client_is_local = ctx.client.handle.addr.ip().is_loopback();
    let mut config = ctx.server.config_mut();
    match config.set_from_client(&pairs, client_is_local) {
        Ok(changed) => {
            ctx.server.tunables.refresh(&config);
            let loglevel = config.loglevel;
            drop(config);
            if changed.contains(&"loglevel") {
                crate::set_log_level(loglevel);
            }
            if !changed.is_empty() {
                tracing::debug!(options = ?changed, "CONFIG SET");
            }
            ctx.out.ok();
        }
        Err(message) => ctx.out.error(&message),
    }
}

fn config_rewrite(ctx: &mut Ctx<'_>) {
    match ctx.server.config().rewrite() {
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
// COMMAND

/// What COMMAND INFO and COMMAND DOCS report of a command or a subcommand.
#[derive(Clone, Copy)]
struct CommandMeta {
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    keys: (i32, i32, i32),
    categories: &'static [&'static str],
    summary: &'static str,
    since: &'static str,
    group: &'static str,
    /// The container whose subcommands to list; None for a subcommand itself.
    container: Option<&'static str>,
}

impl CommandMeta {
    fn of_command(command: &'static Command) -> CommandMeta {
        CommandMeta {
            name: command.name,
            arity: command.arity,
            flags: command.flags,
            keys: command.keys,
            categories: command.categories,
            summary: command.summary,
            since: command.since,
            group: command.group,
            container: Some(command.name),
        }
    }

    fn of_subcommand(sub: &'static Subcommand) -> CommandMeta {
        let group = lookup(sub.container().as_bytes()).map_or("server", |(_, parent)| parent.group);
        CommandMeta {
            name: sub.name,
            arity: sub.arity,
            flags: sub.flags,
            keys: sub.keys,
            categories: sub.categories,
            summary: sub.summary,
            since: sub.since,
            group,
            container: None,
        }
    }

    fn subcommands(&self) -> Vec<CommandMeta> {
        self.container
            .map(|container| {
                subcommands_of(container)
                    .map(CommandMeta::of_subcommand)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Finds a command by name, or a subcommand by its full `container|sub` name, ignoring case.
fn find_meta(name: &[u8]) -> Option<CommandMeta> {
    match name.iter().position(|&b| b == b'|') {
        Some(bar) => {
            let (container, sub) = (name.get(..bar)?, name.get(bar + 1..)?);
            find_subcommand(container, sub).map(CommandMeta::of_subcommand)
        }
        None => lookup(name).map(|(_, command)| CommandMeta::of_command(command)),
    }
}

/// Every command and, after each container, its subcommands (COMMAND LIST's order).
fn all_metas() -> Vec<CommandMeta> {
    let mut metas = Vec::new();
    for command in all_commands() {
        let meta = CommandMeta::of_command(command);
        metas.push(meta);
        metas.extend(meta.subcommands());
    }
    metas
}

fn command(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    if argv.len() == 1 {
        ctx.out.array_len(all_commands().len());
        for command in all_commands() {
            write_command_info(ctx.out, &CommandMeta::of_command(command));
        }
        return;
    }
    let Some(sub) = subcommand(ctx, argv) else {
        return;
    };
    let args = argv.get(2..).unwrap_or_default();
    match sub.name {
        "command|count" => ctx
            .out
            .int(i64::try_from(all_commands().len()).unwrap_or(i64::MAX)),
        "command|info" => command_info(ctx, args),
        "command|docs" => command_docs(ctx, args),
        "command|list" => command_list(ctx, args),
        "command|getkeys" => command_getkeys(ctx, args),
        _ => help_reply(
            ctx.out,
            "COMMAND",
            &[
                "(no subcommand)",
                "    Return details about all Redis commands.",
                "COUNT",
                "    Return the total number of commands in this Redis server.",
                "LIST",
                "    Return a list of all commands in this Redis server.",
                "INFO [<command-name> ...]",
                "    Return details about multiple Redis commands.",
                "    If no command names are given, documentation details for all",
                "    commands are returned.",
                "DOCS [<command-name> ...]",
                "    Return documentation details about multiple Redis commands.",
                "    If no command names are given, documentation details for all",
                "    commands are returned.",
                "GETKEYS <full-command>",
                "    Return the keys from a full Redis command.",
                "HELP",
                "    Prints this help.",
            ],
        ),
    }
}

/// One COMMAND INFO entry, as Redis 7.0: name, arity, flags, first key, last key, key step,
/// ACL categories, tips, key specs, subcommands. forkless keeps no tips or key specs, so
/// those are empty; the legacy key positions are exact.
fn write_command_info(out: &mut Out, meta: &CommandMeta) {
    out.array_len(10);
    out.bulk(meta.name.as_bytes());
    out.int(i64::from(meta.arity));
    out.set_len(meta.flags.len());
    for flag in meta.flags {
        out.simple(flag.as_bytes());
    }
    let (first, last, step) = meta.keys;
    out.int(i64::from(first));
    out.int(i64::from(last));
    out.int(i64::from(step));
    out.set_len(meta.categories.len());
    for category in meta.categories {
        out.simple(format!("@{category}").as_bytes());
    }
    out.set_len(0);
    out.set_len(0);
    let subcommands = meta.subcommands();
    if subcommands.is_empty() {
        // Redis replies an empty set here, and an array when there are subcommands.
        out.set_len(0);
    } else {
        out.array_len(subcommands.len());
        for sub in &subcommands {
            write_command_info(out, sub);
        }
    }
}

/// COMMAND INFO [name ...]: one entry per name, null for an unknown one; all without names.
fn command_info(ctx: &mut Ctx<'_>, names: &[Bytes]) {
    if names.is_empty() {
        ctx.out.array_len(all_commands().len());
        for command in all_commands() {
            write_command_info(ctx.out, &CommandMeta::of_command(command));
        }
        return;
    }
    ctx.out.array_len(names.len());
    for name in names {
        match find_meta(name) {
            Some(meta) => write_command_info(ctx.out, &meta),
            None => ctx.out.null(),
        }
    }
}

/// One COMMAND DOCS map: summary, since, group, and the subcommands' docs when there are any.
/// forkless keeps no complexity, history or argument docs.
fn write_command_docs(out: &mut Out, meta: &CommandMeta) {
    let subcommands = meta.subcommands();
    out.map_len(if subcommands.is_empty() { 3 } else { 4 });
    out.bulk(b"summary");
    out.bulk(meta.summary.as_bytes());
    out.bulk(b"since");
    out.bulk(meta.since.as_bytes());
    out.bulk(b"group");
    out.bulk(meta.group.as_bytes());
    if !subcommands.is_empty() {
        out.bulk(b"subcommands");
        out.map_len(subcommands.len());
        for sub in &subcommands {
            out.bulk(sub.name.as_bytes());
            write_command_docs(out, sub);
        }
    }
}

/// COMMAND DOCS [name ...]: a map of name to docs; unknown names are left out.
fn command_docs(ctx: &mut Ctx<'_>, names: &[Bytes]) {
    let metas: Vec<CommandMeta> = if names.is_empty() {
        all_commands()
            .iter()
            .map(|command| CommandMeta::of_command(command))
            .collect()
    } else {
        names.iter().filter_map(|name| find_meta(name)).collect()
    };
    ctx.out.map_len(metas.len());
    for meta in &metas {
        ctx.out.bulk(meta.name.as_bytes());
        write_command_docs(ctx.out, meta);
    }
}

/// A COMMAND LIST filter.
enum ListFilter {
    All,
    /// `FILTERBY MODULE`: forkless has no modules, so nothing matches.
    Module,
    AclCategory(Bytes),
    Pattern(Bytes),
}

impl ListFilter {
    fn parse(args: &[Bytes]) -> Option<ListFilter> {
        match args {
            [] => Some(ListFilter::All),
            [filterby, kind, value] if eq_ignore_case(filterby, "filterby") => {
                if eq_ignore_case(kind, "module") {
                    Some(ListFilter::Module)
                } else if eq_ignore_case(kind, "aclcat") {
                    Some(ListFilter::AclCategory(value.clone()))
                } else if eq_ignore_case(kind, "pattern") {
                    Some(ListFilter::Pattern(value.clone()))
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// Returns true if and only if the filter keeps `meta`.
    fn keeps(&self, meta: &CommandMeta) -> bool {
        match self {
            ListFilter::All => true,
            ListFilter::Module => false,
            ListFilter::AclCategory(category) => {
                meta.categories.iter().any(|c| eq_ignore_case(category, c))
            }
            ListFilter::Pattern(pattern) => glob_match(pattern, meta.name.as_bytes(), true),
        }
    }
}

/// COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]: command names,
/// subcommands included.
fn command_list(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let Some(filter) = ListFilter::parse(args) else {
        ctx.out.error(reply::SYNTAX);
        return;
    };
    let names: Vec<&str> = all_metas()
        .iter()
        .filter(|meta| filter.keeps(meta))
        .map(|meta| meta.name)
        .collect();
    ctx.out.array_len(names.len());
    for name in names {
        ctx.out.bulk(name.as_bytes());
    }
}

/// COMMAND GETKEYS command [arg ...]: the keys of a full command line, from the key positions
/// of the command or, for a container, of the subcommand it names.
fn command_getkeys(ctx: &mut Ctx<'_>, full: &[Bytes]) {
    let Some((_, mut command)) = full.first().and_then(|name| lookup(name)) else {
        ctx.out.error("ERR Invalid command specified");
        return;
    };
    // EVAL and FCALL name their keys with a count, which the (first, last, step) form cannot.
    if let Some(keys) = crate::scripting::numkeys_keys(command, full) {
        match keys {
            Ok(keys) if !keys.is_empty() => {
                ctx.out.array_len(keys.len());
                for key in keys {
                    ctx.out.bulk(key);
                }
            }
            _ => ctx.out.error("ERR Invalid arguments specified for command"),
        }
        return;
    }
    let resolved;
    if let (true, Some(sub)) = (subcommands_of(command.name).next().is_some(), full.get(1)) {
        let Some(sub) = find_subcommand(command.name.as_bytes(), sub) else {
            ctx.out.error("ERR Invalid command specified");
            return;
        };
        resolved = Command {
            arity: sub.arity,
            keys: sub.keys,
            ..*command
        };
        command = &resolved;
    }
    if command.keys.0 <= 0 {
        ctx.out.error("ERR The command has no key arguments");
        return;
    }
    if !arity_ok(command.arity, full.len()) {
        ctx.out
            .error("ERR Invalid number of arguments specified for command");
        return;
    }
    let positions = command.key_positions(full.len());
    if positions.is_empty() {
        ctx.out.error("ERR Invalid arguments specified for command");
        return;
    }
    ctx.out.array_len(positions.len());
    for pos in positions {
        ctx.out.bulk(full.get(pos).map_or(&b""[..], |key| key));
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
    let save = if save {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_belongs_to_a_known_container() {
        for sub in SUBCOMMANDS {
            let (container, name) = sub.name.split_once('|').expect("container|sub");
            assert!(lookup(container.as_bytes()).is_some(), "{}", sub.name);
            assert!(
                !name.is_empty() && name == name.to_ascii_lowercase(),
                "{}",
                sub.name
            );
            assert!(sub.arity >= 2 || sub.arity <= -2, "{}", sub.name);
        }
    }

    #[test]
    fn subcommands_are_found_in_any_case() {
        assert_eq!(
            find_subcommand(b"CONFIG", b"Get").map(|s| s.name),
            Some("config|get")
        );
        assert!(find_subcommand(b"config", b"nope").is_none());
        assert_eq!(find_meta(b"Config|GET").map(|m| m.name), Some("config|get"));
        assert_eq!(find_meta(b"dbsize").map(|m| m.name), Some("dbsize"));
        assert!(find_meta(b"config|").is_none());
        assert!(find_meta(b"|get").is_none());
    }

    #[test]
    fn arity_follows_redis_rules() {
        assert!(arity_ok(2, 2));
        assert!(!arity_ok(2, 3));
        assert!(arity_ok(-3, 3));
        assert!(arity_ok(-3, 9));
        assert!(!arity_ok(-3, 2));
    }

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
