//! ACL and its subcommands (SETUSER, GETUSER, DELUSER, LIST, USERS, WHOAMI, CAT, GENPASS,
//! LOG, DRYRUN, SAVE, LOAD, HELP), with Redis 7.0's replies. The users, the rule language and
//! the checks live in `crate::acl`.

use std::path::PathBuf;

use bytes::Bytes;
use rand::RngCore as _;

use super::meta::{Gate, KeySpec, flags};
use super::subcommands::{arity_ok, help_reply, run_subcommand};
use super::{Command, Ctx, eq_ignore_case, lookup, parse_i64};
use crate::acl::catalog::{CATALOG, CATEGORIES, category_bit};
use crate::acl::user::{Selector, User, has_spaces, merge_selector_args};
use crate::acl::{Denied, check_user, file, kill_clients_of, kill_pubsub_clients_if_needed};

#[rustfmt::skip] // One row per command reads as a table.
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "acl", arity: -2, flags: flags!(SENTINEL), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["slow"], summary: "A container for Access List Control commands ", since: "6.0.0", group: "server", handler: acl },
];

/// ACL: resolves the subcommand (arity checked as Redis does) and runs its row's handler.
fn acl(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    run_subcommand(ctx, argv);
}

pub(super) fn whoami(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    let name = ctx.client.acl.name();
    ctx.out.bulk(&name);
}

pub(super) fn users(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    list_users(ctx, true);
}

pub(super) fn list(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    list_users(ctx, false);
}

/// Redis's reply to a subcommand given more arguments than its own parser takes.
fn syntax_error(ctx: &mut Ctx<'_>, sub: &str) {
    ctx.out.error(&format!(
        "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try ACL HELP."
    ));
}

pub(super) fn setuser(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let Some((name, rules)) = args.split_first() else {
        return;
    };
    if has_spaces(name) {
        ctx.out
            .error("ERR Usernames can't contain spaces or null characters");
        return;
    }
    let rules = match merge_selector_args(rules) {
        Ok(rules) => rules,
        Err(start) => {
            ctx.out.error(&format!(
                "ERR Unmatched parenthesis in acl selector starting at '{}'.",
                String::from_utf8_lossy(&start)
            ));
            return;
        }
    };
    let acl = &ctx.server.acl;
    let pubsub_default_all = acl.pubsub_default_all();
    let existing = acl.get(name);
    let mut user = existing
        .as_deref()
        .cloned()
        .unwrap_or_else(|| User::new(name.clone(), pubsub_default_all));
    for rule in &rules {
        if let Err(err) = user.apply(rule, pubsub_default_all) {
            ctx.out.error(&one_line(&format!(
                "ERR Error in ACL SETUSER modifier '{}': {err}",
                String::from_utf8_lossy(rule)
            )));
            return;
        }
    }
    if let Some(existing) = &existing {
        kill_pubsub_clients_if_needed(ctx.server, existing, &user);
    }
    acl.put(ctx.server, user);
    ctx.out.ok();
}

fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

pub(super) fn getuser(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let Some(user) = args.first().and_then(|name| ctx.server.acl.get(name)) else {
        ctx.out.null();
        return;
    };
    ctx.out.map_len(6);
    ctx.out.bulk(b"flags");
    let flags = user.flag_names();
    ctx.out.set_len(flags.len());
    for flag in flags {
        ctx.out.bulk(flag.as_bytes());
    }
    ctx.out.bulk(b"passwords");
    ctx.out.array_len(user.passwords.len());
    for hash in &user.passwords {
        ctx.out.bulk(hash.as_bytes());
    }
    describe_selector(ctx, &user.root);
    ctx.out.bulk(b"selectors");
    ctx.out.array_len(user.selectors.len());
    for selector in &user.selectors {
        ctx.out.map_len(3);
        describe_selector(ctx, selector);
    }
}

/// `aclAddReplySelectorDescription`: commands, keys, channels.
fn describe_selector(ctx: &mut Ctx<'_>, selector: &Selector) {
    ctx.out.bulk(b"commands");
    ctx.out.bulk(&selector.describe_commands());
    ctx.out.bulk(b"keys");
    ctx.out.bulk(&selector.keys_text());
    ctx.out.bulk(b"channels");
    ctx.out.bulk(&selector.channels_text());
}

pub(super) fn deluser(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    if args.iter().any(|name| &name[..] == b"default") {
        ctx.out.error("ERR The 'default' user cannot be removed");
        return;
    }
    let removed = ctx.server.acl.remove(ctx.server, args);
    let names: Vec<Bytes> = removed.iter().map(|user| user.name.clone()).collect();
    if kill_clients_of(ctx.server, &names, ctx.client.id) {
        ctx.client.close_after_reply = true;
    }
    ctx.out
        .int(i64::try_from(removed.len()).unwrap_or(i64::MAX));
}

fn list_users(ctx: &mut Ctx<'_>, names_only: bool) {
    let users = ctx.server.acl.users();
    ctx.out.array_len(users.len());
    for user in users {
        if names_only {
            ctx.out.bulk(&user.name);
        } else {
            ctx.out.bulk(&user.line());
        }
    }
}

pub(super) fn cat(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    if args.len() > 1 {
        syntax_error(ctx, "CAT");
        return;
    }
    match args.first() {
        None => {
            ctx.out.array_len(CATEGORIES.len());
            for category in CATEGORIES {
                ctx.out.bulk(category.as_bytes());
            }
        }
        Some(name) => {
            let Some(bit) = category_bit(name) else {
                let shown = String::from_utf8_lossy(name);
                ctx.out.error(&format!(
                    "ERR Unknown category '{}'",
                    shown.chars().take(128).collect::<String>()
                ));
                return;
            };
            let names: Vec<&str> = CATALOG
                .entries
                .iter()
                .filter(|entry| entry.categories & bit != 0)
                .map(|entry| entry.name)
                .collect();
            ctx.out.array_len(names.len());
            for name in names {
                ctx.out.bulk(name.as_bytes());
            }
        }
    }
}

/// The most bits ACL GENPASS generates.
const GENPASS_MAX_BITS: i64 = 4096;

pub(super) fn genpass(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    if args.len() > 1 {
        syntax_error(ctx, "GENPASS");
        return;
    }
    let bits = match args.first() {
        None => 256,
        Some(arg) => match parse_i64(arg) {
            Some(bits) => bits,
            None => {
                ctx.out.error(super::reply::NOT_INTEGER);
                return;
            }
        },
    };
    if bits <= 0 || bits > GENPASS_MAX_BITS {
        ctx.out.error(&format!(
            "ERR ACL GENPASS argument must be the number of bits for the output password, a \
             positive number up to {GENPASS_MAX_BITS}"
        ));
        return;
    }
    let chars = usize::try_from((bits + 3) / 4).unwrap_or(0);
    let mut random = vec![0u8; chars.div_ceil(2)];
    rand::rng().fill_bytes(&mut random);
    let mut hex: Vec<u8> = random
        .iter()
        .flat_map(|byte| {
            let digits = b"0123456789abcdef";
            [
                digits.get(usize::from(byte >> 4)).copied().unwrap_or(b'0'),
                digits.get(usize::from(byte & 15)).copied().unwrap_or(b'0'),
            ]
        })
        .collect();
    hex.truncate(chars);
    ctx.out.bulk(&hex);
}

pub(super) fn log(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    if args.len() > 1 {
        syntax_error(ctx, "LOG");
        return;
    }
    let mut count = 10usize;
    if let Some(arg) = args.first() {
        if eq_ignore_case(arg, "reset") {
            ctx.server.acl.log.reset();
            ctx.out.ok();
            return;
        }
        match parse_i64(arg) {
            Some(n) => count = usize::try_from(n.max(0)).unwrap_or(usize::MAX),
            None => {
                ctx.out.error(super::reply::NOT_INTEGER);
                return;
            }
        }
    }
    let entries = ctx.server.acl.log.newest(count);
    let now = crate::server::unix_ms();
    ctx.out.array_len(entries.len());
    for entry in entries {
        ctx.out.map_len(7);
        ctx.out.bulk(b"count");
        ctx.out.int(i64::try_from(entry.count).unwrap_or(i64::MAX));
        ctx.out.bulk(b"reason");
        ctx.out.bulk(entry.reason.name().as_bytes());
        ctx.out.bulk(b"context");
        ctx.out.bulk(entry.context.name().as_bytes());
        ctx.out.bulk(b"object");
        ctx.out.bulk(&entry.object);
        ctx.out.bulk(b"username");
        ctx.out.bulk(&entry.username);
        ctx.out.bulk(b"age-seconds");
        #[expect(
            clippy::cast_precision_loss,
            reason = "an age in ms fits a double's mantissa"
        )]
        let age = now.saturating_sub(entry.ctime_ms) as f64 / 1000.0;
        ctx.out.double(age);
        ctx.out.bulk(b"client-info");
        ctx.out.bulk(entry.client_info.as_bytes());
    }
}

pub(super) fn dryrun(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let (Some(name), Some(command_argv)) = (args.first(), args.get(1..)) else {
        return;
    };
    let Some(user) = ctx.server.acl.get(name) else {
        ctx.out.error(&format!(
            "ERR User '{}' not found",
            String::from_utf8_lossy(name)
        ));
        return;
    };
    let command_name = command_argv.first().cloned().unwrap_or_default();
    let not_found = || {
        format!(
            "ERR Command '{}' not found",
            String::from_utf8_lossy(&command_name)
        )
    };
    let Some((idx, command)) = lookup(&command_name) else {
        ctx.out.error(&not_found());
        return;
    };
    let id = CATALOG.id_for_call(idx, command_argv);
    let Some(entry) = CATALOG.get(id) else {
        ctx.out.error(&not_found());
        return;
    };
    // A container named without a known subcommand is not a command Redis can look up.
    if !entry.children.is_empty() && command_argv.len() >= 2 {
        ctx.out.error(&not_found());
        return;
    }
    let arity = if entry.parent.is_some() {
        super::subcommands::find_subcommand(
            &command_name,
            command_argv.get(1).map_or(&b""[..], |sub| sub),
        )
        .map_or(command.arity, |sub| sub.arity)
    } else {
        command.arity
    };
    if !arity_ok(arity, command_argv.len()) {
        ctx.out.error(&format!(
            "ERR wrong number of arguments for '{}' command",
            entry.name
        ));
        return;
    }
    match check_user(&user, id, command_argv) {
        Ok(()) => ctx.out.ok(),
        Err(denied) => {
            let arg = |pos: usize| {
                command_argv
                    .get(pos)
                    .map_or_else(String::new, |arg| String::from_utf8_lossy(arg).into_owned())
            };
            let text = match denied {
                Denied::Command => {
                    format!(
                        "This user has no permissions to run the '{}' command",
                        entry.name
                    )
                }
                Denied::Key(pos) => {
                    format!(
                        "This user has no permissions to access the '{}' key",
                        arg(pos)
                    )
                }
                Denied::Channel(pos) => format!(
                    "This user has no permissions to access the '{}' channel",
                    arg(pos)
                ),
            };
            ctx.out.bulk(text.as_bytes());
        }
    }
}

const NO_ACL_FILE: &str = "ERR This Redis instance is not configured to use an ACL file. You may \
    want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming \
    you have a Redis configuration file set) in order to store users in the Redis configuration.";

/// The configured `aclfile` as given, and its path: a relative path is relative to `dir`, as
/// it is in Redis, which works inside `dir`.
fn acl_file(ctx: &Ctx<'_>) -> Option<(String, PathBuf)> {
    let config = ctx.server.config();
    let shown = String::from_utf8_lossy(&config.stored_text("aclfile")).into_owned();
    if shown.is_empty() {
        return None;
    }
    let path = config.dir.join(&shown);
    Some((shown, path))
}

pub(super) fn save(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    let Some((_, path)) = acl_file(ctx) else {
        ctx.out.error(NO_ACL_FILE);
        return;
    };
    match file::save(&path, &ctx.server.acl.users()) {
        Ok(()) => ctx.out.ok(),
        Err(err) => {
            tracing::warn!(
                "Saving ACL file {}: {}",
                path.display(),
                crate::config::strerror(&err)
            );
            ctx.out.error(
                "ERR There was an error trying to save the ACLs. Please check the server logs \
                 for more information",
            );
        }
    }
}

pub(super) fn load(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    let Some((shown, path)) = acl_file(ctx) else {
        ctx.out.error(NO_ACL_FILE);
        return;
    };
    match file::load(&path, &shown, ctx.server.acl.pubsub_default_all()) {
        Ok(users) => {
            // Every old user but the default is gone, with its connections, as in Redis.
            let old: Vec<Bytes> = ctx
                .server
                .acl
                .users()
                .iter()
                .map(|user| user.name.clone())
                .filter(|name| &name[..] != b"default")
                .collect();
            ctx.server.acl.replace_all(ctx.server, users);
            if kill_clients_of(ctx.server, &old, ctx.client.id) {
                ctx.client.close_after_reply = true;
            }
            ctx.out.ok();
        }
        Err(errors) => ctx.out.error(&one_line(&format!("ERR {errors}"))),
    }
}

pub(super) fn help(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    help_reply(
        ctx.out,
        "ACL",
        &[
            "CAT [<category>]",
            "    List all commands that belong to <category>, or all command categories",
            "    when no category is specified.",
            "DELUSER <username> [<username> ...]",
            "    Delete a list of users.",
            "DRYRUN <username> <command> [<arg> ...]",
            "    Returns whether the user can execute the given command without executing the command.",
            "GETUSER <username>",
            "    Get the user's details.",
            "GENPASS [<bits>]",
            "    Generate a secure 256-bit user password. The optional `bits` argument can",
            "    be used to specify a different size.",
            "LIST",
            "    Show users details in config file format.",
            "LOAD",
            "    Reload users from the ACL file.",
            "LOG [<count> | RESET]",
            "    Show the ACL log entries.",
            "SAVE",
            "    Save the current config to the ACL file.",
            "SETUSER <username> <attribute> [<attribute> ...]",
            "    Create or modify a user with the specified attributes.",
            "USERS",
            "    List all the registered usernames.",
            "WHOAMI",
            "    Return the current connection username.",
            "HELP",
            "    Prints this help.",
        ],
    );
}
