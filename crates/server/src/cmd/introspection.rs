//! COMMAND and its subcommands (COUNT, LIST, INFO, DOCS, GETKEYS, GETKEYSANDFLAGS): what the command table
//! and the subcommand table say about each command, in Redis 7.0's reply shapes.

use bytes::Bytes;
use forkless_protocol::Out;
use forkless_storage::pattern::glob_match;

use super::meta::{Flags, KeySpec};
use super::subcommands::{
    Subcommand, arity_ok, find_subcommand, help_reply, run_subcommand, subcommands_of,
};
use super::{Command, Ctx, all_commands, eq_ignore_case, lookup, reply};
use crate::acl::catalog::{CATALOG, KeyRef, key_flag, keys_of};

/// What COMMAND INFO and COMMAND DOCS report of a command or a subcommand.
#[derive(Clone, Copy)]
struct CommandMeta {
    name: &'static str,
    arity: i32,
    flags: Flags,
    keys: KeySpec,
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

pub(super) fn command(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    if argv.len() == 1 {
        ctx.out.array_len(all_commands().len());
        for command in all_commands() {
            write_command_info(ctx.out, &CommandMeta::of_command(command));
        }
        return;
    }
    run_subcommand(ctx, argv);
}

/// COMMAND COUNT.
pub(super) fn command_count(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    ctx.out
        .int(i64::try_from(all_commands().len()).unwrap_or(i64::MAX));
}

pub(super) fn command_help(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    help_reply(
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
            "GETKEYSANDFLAGS <full-command>",
            "    Return the keys and the access flags from a full Redis command.",
            "HELP",
            "    Prints this help.",
        ],
    );
}

/// One COMMAND INFO entry, as Redis 7.0: name, arity, flags, first key, last key, key step,
/// ACL categories, tips, key specs, subcommands. forkless keeps no tips or key specs, so
/// those are empty; the legacy key positions are exact.
fn write_command_info(out: &mut Out, meta: &CommandMeta) {
    out.array_len(10);
    out.bulk(meta.name.as_bytes());
    out.int(i64::from(meta.arity));
    out.set_len(meta.flags.reported().count());
    for flag in meta.flags.reported() {
        out.simple(flag.as_bytes());
    }
    out.int(i64::from(meta.keys.first));
    out.int(i64::from(meta.keys.last));
    out.int(i64::from(meta.keys.step));
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
pub(super) fn command_info(ctx: &mut Ctx<'_>, names: &[Bytes]) {
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
pub(super) fn command_docs(ctx: &mut Ctx<'_>, names: &[Bytes]) {
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
pub(super) fn command_list(ctx: &mut Ctx<'_>, args: &[Bytes]) {
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
pub(super) fn command_getkeys(ctx: &mut Ctx<'_>, full: &[Bytes]) {
    write_keys(ctx, full, false);
}

/// COMMAND GETKEYSANDFLAGS command [arg ...]: each key of a full command line with its key
/// specification's flags (`RW`, `access`, `update`, ...), as Redis 7.0 answers.
pub(super) fn command_getkeysandflags(ctx: &mut Ctx<'_>, full: &[Bytes]) {
    write_keys(ctx, full, true);
}

/// The flags Redis reports for a key whose command declares no key specification of its own
/// (its legacy key positions only): read, write and update.
const LEGACY_KEY_FLAGS: u16 = key_flag::RW | key_flag::ACCESS | key_flag::UPDATE;

/// Redis's names of the key specification flags, in Redis's order.
const KEY_FLAG_NAMES: &[(u16, &str)] = &[
    (key_flag::RO, "RO"),
    (key_flag::RW, "RW"),
    (key_flag::OW, "OW"),
    (key_flag::RM, "RM"),
    (key_flag::ACCESS, "access"),
    (key_flag::UPDATE, "update"),
    (key_flag::INSERT, "insert"),
    (key_flag::DELETE, "delete"),
    (key_flag::NOT_KEY, "not_key"),
    (key_flag::INCOMPLETE, "incomplete"),
    (key_flag::VARIABLE_FLAGS, "variable_flags"),
];

fn write_keys(ctx: &mut Ctx<'_>, full: &[Bytes], with_flags: bool) {
    let Some((table_idx, command)) = full.first().and_then(|name| lookup(name)) else {
        ctx.out.error("ERR Invalid command specified");
        return;
    };
    let positions = match key_positions(command, full) {
        Ok(positions) => positions,
        Err(message) => {
            ctx.out.error(message);
            return;
        }
    };
    // The flags come from the key specifications ACL reads (Redis's own for each command);
    // the positions from GETKEYS's rules, which agree with them wherever both know the key.
    let specified: Vec<KeyRef> = if with_flags {
        let id = CATALOG.id_for_call(table_idx, full);
        CATALOG
            .get(id)
            .map(|entry| keys_of(entry, full))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    ctx.out.array_len(positions.len());
    for pos in positions {
        let Some(key) = full.get(pos) else {
            ctx.out.null();
            continue;
        };
        if !with_flags {
            ctx.out.bulk(key);
            continue;
        }
        let flags = specified
            .iter()
            .find(|key_ref| key_ref.pos == pos)
            .map_or(LEGACY_KEY_FLAGS, |key_ref| key_ref.flags);
        ctx.out.array_len(2);
        ctx.out.bulk(key);
        let names: Vec<&str> = KEY_FLAG_NAMES
            .iter()
            .filter(|(bit, _)| flags & bit != 0)
            .map(|(_, name)| *name)
            .collect();
        ctx.out.set_len(names.len());
        for name in names {
            ctx.out.simple(name.as_bytes());
        }
    }
}

/// The positions in `full` of the keys of the command line, or Redis's error for a line whose
/// keys cannot be told.
fn key_positions(command: &Command, full: &[Bytes]) -> Result<Vec<usize>, &'static str> {
    // EVAL and FCALL name their keys with a count, which the (first, last, step) form cannot;
    // they may name none (`no_mandatory_keys`): an empty list, as Redis answers.
    if let Some(keys) = crate::scripting::numkeys_keys(command, full) {
        return match keys {
            Ok(keys) => Ok((3..3 + keys.len()).collect()),
            Err(()) => Err("ERR Invalid arguments specified for command"),
        };
    }
    if command.has_flag(Flags::MOVABLEKEYS)
        && let Some(positions) = movable_key_positions(command.name, full)
    {
        if !arity_ok(command.arity, full.len()) {
            return Err("ERR Invalid number of arguments specified for command");
        }
        let positions: Vec<usize> = positions
            .into_iter()
            .filter(|&pos| pos < full.len())
            .collect();
        if positions.is_empty() {
            return Err("ERR Invalid arguments specified for command");
        }
        return Ok(positions);
    }
    let (mut arity, mut keys) = (command.arity, command.keys);
    if let (true, Some(sub)) = (subcommands_of(command.name).next().is_some(), full.get(1)) {
        let Some(sub) = find_subcommand(command.name.as_bytes(), sub) else {
            return Err("ERR Invalid command specified");
        };
        (arity, keys) = (sub.arity, sub.keys);
    }
    if keys.first <= 0 {
        return Err("ERR The command has no key arguments");
    }
    if !arity_ok(arity, full.len()) {
        return Err("ERR Invalid number of arguments specified for command");
    }
    let positions: Vec<usize> = keys
        .positions(full.len())
        .filter(|&pos| pos < full.len())
        .collect();
    if positions.is_empty() {
        return Err("ERR Invalid arguments specified for command");
    }
    Ok(positions)
}

/// The key positions of a command whose keys move with its other arguments (a count of keys,
/// a STORE option, STREAMS), as Redis's per-command `getkeys_proc` finds them, for COMMAND
/// GETKEYS. None for a command whose declared positions say it all. The handlers parse their
/// own arguments; this table only answers COMMAND GETKEYS, so it is keyed by the table's
/// names, as the subcommand table is.
fn movable_key_positions(name: &str, argv: &[Bytes]) -> Option<Vec<usize>> {
    // `numkeys` at `at`, then that many keys; `prefix` keys come first.
    let counted = |at: usize, prefix: &[usize]| -> Vec<usize> {
        let count = argv
            .get(at)
            .and_then(|n| super::parse_i64(n))
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n >= 1 && at + n < argv.len());
        match count {
            Some(n) => prefix.iter().copied().chain(at + 1..=at + n).collect(),
            None => Vec::new(),
        }
    };
    let word = |idx: usize, expected: &str| {
        argv.get(idx)
            .is_some_and(|arg| eq_ignore_case(arg, expected))
    };
    Some(match name {
        "zunionstore" | "zinterstore" | "zdiffstore" => counted(2, &[1]),
        "zunion" | "zinter" | "zdiff" | "zintercard" | "sintercard" | "lmpop" | "zmpop" => {
            counted(1, &[])
        }
        "blmpop" | "bzmpop" => counted(2, &[]),
        // The key specifications first, Redis's migrateGetKeys where they are incomplete (the
        // KEYS form), as ACL finds them.
        "migrate" => crate::acl::catalog::CATALOG
            .id_of(b"migrate")
            .and_then(|id| crate::acl::catalog::CATALOG.get(id))
            .map(|entry| {
                crate::acl::catalog::keys_of(entry, argv)
                    .into_iter()
                    .map(|key| key.pos)
                    .collect()
            })
            .unwrap_or_default(),
        "sort" | "sort_ro" => {
            // The sorted key, and the last STORE's key (SORT only), skipping the arguments of
            // LIMIT, GET and BY as Redis's sortGetKeys does.
            let mut positions = vec![1];
            let mut store = None;
            let mut idx = 2;
            while idx < argv.len() {
                if word(idx, "limit") {
                    idx += 2;
                } else if word(idx, "get") || word(idx, "by") {
                    idx += 1;
                } else if word(idx, "store") && name == "sort" && idx + 1 < argv.len() {
                    store = Some(idx + 1);
                    idx += 1;
                }
                idx += 1;
            }
            positions.extend(store);
            positions
        }
        "xread" | "xreadgroup" => {
            // The keys are the first half of what follows STREAMS.
            let Some(streams) = (1..argv.len()).find(|&idx| word(idx, "streams")) else {
                return Some(Vec::new());
            };
            let rest = argv.len() - streams - 1;
            if rest == 0 || rest % 2 != 0 {
                return Some(Vec::new());
            }
            (streams + 1..=streams + rest / 2).collect()
        }
        "georadius" | "georadiusbymember" => {
            let mut positions = vec![1];
            let mut store = None;
            for idx in 2..argv.len() {
                if (word(idx, "store") || word(idx, "storedist")) && idx + 1 < argv.len() {
                    store = Some(idx + 1);
                }
            }
            positions.extend(store);
            positions
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
