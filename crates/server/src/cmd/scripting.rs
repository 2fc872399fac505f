//! Scripting commands: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, SCRIPT, FUNCTION, FCALL, FCALL_RO.
//!
//! The Lua engine itself lives in `crate::scripting`; this file parses the commands, makes the
//! checks Redis makes before a run, and holds the gate: a script runs with the command gate
//! held exclusively (unless EXEC already holds it), so it is one unit for every other client
//! and for the snapshot cut.

use bytes::Bytes;

use super::meta::{Flags, Gate, KeySpec, flags};
use super::{Command, Ctx, eq_ignore_case, parse_i64, reply, unknown_subcommand};
use crate::scripting::engine::{Engine, RunSpec, ScriptFlags};
use crate::scripting::{PendingGuard, RunGuard};
use crate::server::Server;

const SCRIPT_FLAGS: Flags = flags!(
    NOSCRIPT,
    SKIP_MONITOR,
    MAY_REPLICATE,
    NO_MANDATORY_KEYS,
    STALE,
    MOVABLEKEYS,
    RUNS_SCRIPT
);
const SCRIPT_RO_FLAGS: Flags = flags!(
    NOSCRIPT,
    SKIP_MONITOR,
    NO_MANDATORY_KEYS,
    STALE,
    READONLY,
    MOVABLEKEYS,
    RUNS_SCRIPT
);
const FUNCTION_FLAGS: Flags = flags!(
    NOSCRIPT,
    SKIP_MONITOR,
    MAY_REPLICATE,
    NO_MANDATORY_KEYS,
    STALE,
    MOVABLEKEYS,
    RUNS_FUNCTION
);
const FUNCTION_RO_FLAGS: Flags = flags!(
    NOSCRIPT,
    SKIP_MONITOR,
    NO_MANDATORY_KEYS,
    STALE,
    READONLY,
    MOVABLEKEYS,
    RUNS_FUNCTION
);

#[rustfmt::skip] // One row per command reads as a table.
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "eval", arity: -3, flags: SCRIPT_FLAGS, keys: KeySpec::NONE, gate: Gate::Exclusive, categories: &["slow", "scripting"], summary: "Execute a Lua script server side", since: "2.6.0", group: "scripting", handler: eval },
    Command { name: "evalsha", arity: -3, flags: SCRIPT_FLAGS, keys: KeySpec::NONE, gate: Gate::Exclusive, categories: &["slow", "scripting"], summary: "Execute a Lua script server side", since: "2.6.0", group: "scripting", handler: evalsha },
    Command { name: "eval_ro", arity: -3, flags: SCRIPT_RO_FLAGS, keys: KeySpec::NONE, gate: Gate::Exclusive, categories: &["slow", "scripting"], summary: "Execute a read-only Lua script server side", since: "7.0.0", group: "scripting", handler: eval_ro },
    Command { name: "evalsha_ro", arity: -3, flags: SCRIPT_RO_FLAGS, keys: KeySpec::NONE, gate: Gate::Exclusive, categories: &["slow", "scripting"], summary: "Execute a read-only Lua script server side", since: "7.0.0", group: "scripting", handler: evalsha_ro },
    Command { name: "script", arity: -2, flags: flags!(NOSCRIPT), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["slow"], summary: "A container for Lua scripts management commands", since: "2.6.0", group: "scripting", handler: script },
    Command { name: "function", arity: -2, flags: flags!(NOSCRIPT), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["slow"], summary: "A container for function commands", since: "7.0.0", group: "scripting", handler: function },
    Command { name: "fcall", arity: -3, flags: FUNCTION_FLAGS, keys: KeySpec::NONE, gate: Gate::Exclusive, categories: &["slow", "scripting"], summary: "Invoke a function", since: "7.0.0", group: "scripting", handler: fcall },
    Command { name: "fcall_ro", arity: -3, flags: FUNCTION_RO_FLAGS, keys: KeySpec::NONE, gate: Gate::Exclusive, categories: &["slow", "scripting"], summary: "Invoke a read-only function", since: "7.0.0", group: "scripting", handler: fcall_ro },
];

const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";

fn eval(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    eval_generic(ctx, argv, false, false);
}

fn evalsha(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    eval_generic(ctx, argv, true, false);
}

fn eval_ro(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    eval_generic(ctx, argv, false, true);
}

fn evalsha_ro(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    eval_generic(ctx, argv, true, true);
}

/// Splits `numkeys key... arg...` (argv from index 2), replying Redis's errors.
fn split_keys<'a>(ctx: &mut Ctx<'_>, argv: &'a [Bytes]) -> Option<(&'a [Bytes], &'a [Bytes])> {
    let numkeys = argv.get(2).and_then(|n| parse_i64(n));
    let Some(numkeys) = numkeys else {
        ctx.out.error(reply::NOT_INTEGER);
        return None;
    };
    let rest = argv.get(3..).unwrap_or_default();
    if numkeys > i64::try_from(rest.len()).unwrap_or(i64::MAX) {
        ctx.out
            .error("ERR Number of keys can't be greater than number of args");
        return None;
    }
    let Ok(numkeys) = usize::try_from(numkeys) else {
        ctx.out.error("ERR Number of keys can't be negative");
        return None;
    };
    Some(rest.split_at(numkeys))
}

/// Redis's `scriptPrepareForRun` checks for a script with `flags`. Err is the reply.
fn check_before_run(
    server: &Server,
    flags: ScriptFlags,
    read_only_command: bool,
) -> Result<(), &'static str> {
    if flags.compat || flags.no_writes {
        return Ok(());
    }
    // A script with flags and without allow-oom needs memory as a `denyoom` command does.
    if !flags.allow_oom
        && crate::evict::pre_command_oom()
        && server
            .tunables
            .maxmemory
            .load(std::sync::atomic::Ordering::Relaxed)
            != 0
    {
        return Err(crate::evict::OOM);
    }
    if crate::persistence::writes_refused(server) {
        return Err(
            "MISCONF Redis is configured to save RDB snapshots, but it's currently unable \
                    to persist to disk. Writable scripts are blocked. Use 'no-writes' flag for \
                    read only scripts.",
        );
    }
    // A script that may write is a write command to Redis's processCommand (its flags come from
    // the shebang), so a read-only replica refuses it with the plain READONLY.
    if crate::replication::replica::script_writes_refused(server) {
        return Err(crate::replication::replica::READONLY);
    }
    if read_only_command {
        return Err("ERR Can not execute a script with write flag using *_ro command.");
    }
    Ok(())
}

fn eval_generic(ctx: &mut Ctx<'_>, argv: &[Bytes], by_sha: bool, read_only: bool) {
    super::monitor::feed_script_call(ctx.server, ctx.client, argv);
    let Some(body_or_sha) = argv.get(1) else {
        return;
    };
    if by_sha && body_or_sha.len() != 40 {
        ctx.out.error(NOSCRIPT);
        return;
    }
    let Some((keys, args)) = split_keys(ctx, argv) else {
        return;
    };
    let server = ctx.server;
    let run = &server.scripting.run;
    let _pending = PendingGuard::new(run);
    // Inside EXEC, or in a batch of script commands (`crate::scripting::ScriptBatch`), the
    // gate is held already.
    let _exclusive = (!ctx.client.in_exec && !crate::scripting::batch_held())
        .then(|| server.keyspace.gate().exclusive());
    let threshold = server
        .tunables
        .busy_reply_threshold
        .load(std::sync::atomic::Ordering::Relaxed);
    let client = &*ctx.client;
    let out = &mut *ctx.out;
    // One hold of the interpreter finds the script and runs it (docs/benchmarks.md, "Scripts").
    // The SHA1 is looked up in lower case, from a copy on the stack.
    let mut lower = [0u8; 40];
    let result = server.scripting.with_engine(server, |engine: &mut Engine| {
        let loaded;
        let sha: &str = if by_sha {
            lower.copy_from_slice(body_or_sha);
            lower.make_ascii_lowercase();
            std::str::from_utf8(&lower).map_err(|_| NOSCRIPT.to_string())?
        } else {
            loaded = engine.load_script(body_or_sha)?;
            &loaded
        };
        let Some((flags, function)) = engine.cached(sha) else {
            return Err(NOSCRIPT.to_string());
        };
        check_before_run(server, flags, read_only).map_err(str::to_string)?;
        let spec = RunSpec {
            name: sha,
            flags,
            read_only_command: read_only,
            eval: true,
            keys,
            args,
        };
        let _running = RunGuard::begin(run, sha, argv, true, threshold);
        Ok(in_place(|| {
            engine.run(server, client, out, function, &spec)
        }))
    });
    match result {
        Ok(Ok(outcome)) => after_run(ctx, outcome, keys),
        Ok(Err(message)) | Err(message) => ctx.out.error(&message),
    }
}

/// What a script's run leaves for its command: how its error reply counts, and the keys a
/// tracking caller now tracks.
fn after_run(ctx: &mut Ctx<'_>, outcome: crate::scripting::RunOutcome, keys: &[Bytes]) {
    ctx.error_counted = outcome.error_counted;
    if outcome.read && ctx.server.tracking.active() {
        super::tracking::remember_script_keys(ctx.server, ctx.client, keys);
    }
}

/// Runs a script on the calling worker thread. A script that runs long hands the worker's
/// other connections to another thread from its hook (`crate::scripting::hand_off_worker`).
fn in_place<R>(f: impl FnOnce() -> R) -> R {
    f()
}

const SCRIPT_HELP: &[&str] = &[
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
];

fn help(ctx: &mut Ctx<'_>, lines: &[&str]) {
    ctx.out.array_len(lines.len());
    for line in lines {
        ctx.out.simple(line.as_bytes());
    }
}

fn syntax_error_subcommand(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let name = argv.first().map_or(String::new(), |b| {
        String::from_utf8_lossy(b).to_ascii_uppercase()
    });
    let sub = argv
        .get(1)
        .map_or(String::new(), |b| String::from_utf8_lossy(b).into_owned());
    ctx.out.error(&format!(
        "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try {name} HELP."
    ));
}

fn script(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let sub = argv.get(1).cloned().unwrap_or_default();
    let argc = argv.len();
    if argc == 2 && eq_ignore_case(&sub, "help") {
        help(ctx, SCRIPT_HELP);
    } else if argc >= 2 && eq_ignore_case(&sub, "flush") {
        match argv.get(2) {
            None => {}
            Some(mode)
                if argc == 3 && (eq_ignore_case(mode, "sync") || eq_ignore_case(mode, "async")) => {
            }
            Some(_) => {
                ctx.out
                    .error("ERR SCRIPT FLUSH only support SYNC|ASYNC option");
                return;
            }
        }
        ctx.server.scripting.flush_scripts();
        ctx.out.ok();
    } else if argc >= 2 && eq_ignore_case(&sub, "exists") {
        let shas = argv.get(2..).unwrap_or_default();
        let server = ctx.server;
        let found: Vec<bool> = server
            .scripting
            .with_engine(server, |engine| {
                shas.iter().map(|sha| engine.has_script(sha)).collect()
            })
            .unwrap_or_else(|_| vec![false; shas.len()]);
        ctx.out.array_len(found.len());
        for exists in found {
            ctx.out.int(i64::from(exists));
        }
    } else if argc == 3 && eq_ignore_case(&sub, "load") {
        let body = argv.get(2).cloned().unwrap_or_default();
        let server = ctx.server;
        match server
            .scripting
            .with_engine(server, |engine| engine.load_script(&body))
        {
            Ok(Ok(sha)) => ctx.out.bulk(sha.as_bytes()),
            Ok(Err(message)) | Err(message) => ctx.out.error(&message),
        }
    } else if argc == 2 && eq_ignore_case(&sub, "kill") {
        match ctx.server.scripting.run.kill(true) {
            Ok(()) => ctx.out.ok(),
            Err(message) => ctx.out.error(message),
        }
    } else if argc == 3 && eq_ignore_case(&sub, "debug") {
        ctx.out
            .error("ERR SCRIPT DEBUG is not supported by this server");
    } else {
        syntax_error_subcommand(ctx, argv);
    }
}

const FUNCTION_HELP: &[&str] = &[
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
    "      libraries with the new libraries (notice that even on this option there is a chance of failure",
    "      in case of functions name collision with another library).",
    "HELP",
    "    Prints this help.",
];

/// Redis's arity per FUNCTION subcommand (counting FUNCTION and the subcommand).
fn function_arity(sub: &[u8]) -> Option<i32> {
    const TABLE: &[(&str, i32)] = &[
        ("load", -3),
        ("delete", 3),
        ("list", -2),
        ("dump", 2),
        ("restore", -3),
        ("flush", -2),
        ("kill", 2),
        ("stats", 2),
        ("help", 2),
    ];
    TABLE
        .iter()
        .find(|(name, _)| eq_ignore_case(sub, name))
        .map(|(_, arity)| *arity)
}

fn function(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let sub = argv.get(1).cloned().unwrap_or_default();
    let Some(arity) = function_arity(&sub) else {
        unknown_subcommand(ctx, argv);
        return;
    };
    let argc = i32::try_from(argv.len()).unwrap_or(i32::MAX);
    if (arity > 0 && argc != arity) || argc < -arity {
        ctx.out.error(&format!(
            "ERR wrong number of arguments for 'function|{}' command",
            String::from_utf8_lossy(&sub).to_ascii_lowercase()
        ));
        return;
    }
    let server = ctx.server;
    if eq_ignore_case(&sub, "flush") {
        function_flush(ctx, argv);
    } else if eq_ignore_case(&sub, "kill") {
        match server.scripting.run.kill(false) {
            Ok(()) => ctx.out.ok(),
            Err(message) => ctx.out.error(message),
        }
    } else if eq_ignore_case(&sub, "help") {
        help(ctx, FUNCTION_HELP);
    } else if eq_ignore_case(&sub, "stats") {
        function_stats(ctx);
    } else if eq_ignore_case(&sub, "load") {
        function_load(ctx, argv);
    } else if eq_ignore_case(&sub, "delete") {
        let name = String::from_utf8_lossy(argv.get(2).map_or(&b""[..], |b| b)).into_owned();
        let removed = server.scripting.with_functions(server, |functions| {
            functions.libraries.remove(&name).is_some()
        });
        match removed {
            Ok(true) => {
                server.scripting.refresh_function_counts();
                ctx.out.ok();
            }
            Ok(false) => ctx.out.error("ERR Library not found"),
            Err(message) => ctx.out.error(&message),
        }
    } else if eq_ignore_case(&sub, "list") {
        function_list(ctx, argv);
    } else if eq_ignore_case(&sub, "dump") {
        let payload = server
            .scripting
            .with_functions(server, |functions| crate::scripting::dump::dump(functions));
        match payload {
            Ok(payload) => ctx.out.bulk(&payload),
            Err(message) => ctx.out.error(&message),
        }
    } else if eq_ignore_case(&sub, "restore") {
        function_restore(ctx, argv);
    }
}

fn function_load(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let mut replace = false;
    let mut pos = 2;
    while pos + 1 < argv.len() {
        let arg = argv.get(pos).cloned().unwrap_or_default();
        pos += 1;
        if eq_ignore_case(&arg, "replace") {
            replace = true;
            continue;
        }
        ctx.out.error(&format!(
            "ERR Unknown option given: {}",
            String::from_utf8_lossy(&arg)
        ));
        return;
    }
    let Some(code) = argv.get(pos).cloned() else {
        ctx.out.error("ERR Function code is missing");
        return;
    };
    let server = ctx.server;
    match server
        .scripting
        .with_functions(server, |functions| functions.load(&code, replace))
    {
        Ok(Ok(name)) => {
            server.scripting.refresh_function_counts();
            ctx.out.bulk(name.as_bytes());
        }
        Ok(Err(message)) | Err(message) => ctx.out.error(&message),
    }
}

fn function_stats(ctx: &mut Ctx<'_>) {
    let run = &ctx.server.scripting.run;
    let current = run.current();
    if current.is_some() && run.is_eval() {
        ctx.out.error(crate::scripting::BUSY_EVAL);
        return;
    }
    ctx.out.map_len(2);
    ctx.out.bulk(b"running_script");
    match current {
        None => ctx.out.null(),
        Some(script) => {
            ctx.out.map_len(3);
            ctx.out.bulk(b"name");
            ctx.out.bulk(script.name.as_bytes());
            ctx.out.bulk(b"command");
            ctx.out.array_len(script.argv.len());
            for arg in &script.argv {
                ctx.out.bulk(arg);
            }
            ctx.out.bulk(b"duration_ms");
            ctx.out
                .int(i64::try_from(script.started.elapsed().as_millis()).unwrap_or(i64::MAX));
        }
    }
    let (libraries, functions) = ctx.server.scripting.function_counts();
    ctx.out.bulk(b"engines");
    ctx.out.map_len(1);
    ctx.out.bulk(b"LUA");
    ctx.out.map_len(2);
    ctx.out.bulk(b"libraries_count");
    ctx.out.int(i64::try_from(libraries).unwrap_or(i64::MAX));
    ctx.out.bulk(b"functions_count");
    ctx.out.int(i64::try_from(functions).unwrap_or(i64::MAX));
}

fn function_list(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let mut with_code = false;
    let mut pattern: Option<Bytes> = None;
    let mut pos = 2;
    while let Some(arg) = argv.get(pos) {
        pos += 1;
        if !with_code && eq_ignore_case(arg, "withcode") {
            with_code = true;
            continue;
        }
        if pattern.is_none() && eq_ignore_case(arg, "libraryname") {
            let Some(name) = argv.get(pos) else {
                ctx.out.error("ERR library name argument was not given");
                return;
            };
            pattern = Some(name.clone());
            pos += 1;
            continue;
        }
        let text: String = String::from_utf8_lossy(arg)
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        ctx.out.error(&format!("ERR Unknown argument {text}"));
        return;
    }
    let out = &mut *ctx.out;
    let listed = ctx
        .server
        .scripting
        .with_functions(ctx.server, |functions| {
            let libraries: Vec<_> = functions
                .libraries
                .values()
                .filter(|lib| {
                    pattern.as_ref().is_none_or(|p| {
                        forkless_storage::pattern::glob_match(p, lib.name.as_bytes(), true)
                    })
                })
                .collect();
            out.array_len(libraries.len());
            for lib in libraries {
                out.map_len(if with_code { 4 } else { 3 });
                out.bulk(b"library_name");
                out.bulk(lib.name.as_bytes());
                out.bulk(b"engine");
                out.bulk(b"LUA");
                out.bulk(b"functions");
                out.array_len(lib.functions.len());
                for function in lib.functions.values() {
                    out.map_len(3);
                    out.bulk(b"name");
                    out.bulk(function.name.as_bytes());
                    out.bulk(b"description");
                    match &function.description {
                        Some(text) => out.bulk(text),
                        None => out.null(),
                    }
                    out.bulk(b"flags");
                    let names = function.flags.names();
                    out.set_len(names.len());
                    for name in names {
                        out.simple(name.as_bytes());
                    }
                }
                if with_code {
                    out.bulk(b"library_code");
                    out.bulk(&lib.code);
                }
            }
        });
    if let Err(message) = listed {
        ctx.out.error(&message);
    }
}

fn function_restore(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    if argv.len() > 4 {
        syntax_error_subcommand(ctx, argv);
        return;
    }
    let policy = match argv.get(3) {
        None => crate::scripting::dump::Policy::Append,
        Some(p) if eq_ignore_case(p, "append") => crate::scripting::dump::Policy::Append,
        Some(p) if eq_ignore_case(p, "replace") => crate::scripting::dump::Policy::Replace,
        Some(p) if eq_ignore_case(p, "flush") => crate::scripting::dump::Policy::Flush,
        Some(_) => {
            ctx.out.error(
                "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
            );
            return;
        }
    };
    let payload = argv.get(2).cloned().unwrap_or_default();
    let server = ctx.server;
    match server.scripting.with_functions(server, |functions| {
        crate::scripting::dump::restore(functions, &payload, policy)
    }) {
        Ok(Ok(())) => {
            server.scripting.refresh_function_counts();
            ctx.out.ok();
        }
        Ok(Err(message)) | Err(message) => ctx.out.error(&message),
    }
}

/// FUNCTION FLUSH [ASYNC|SYNC]: Redis's test harness sends it before every test block.
fn function_flush(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    match argv.get(2) {
        _ if argv.len() > 3 => syntax_error_subcommand(ctx, argv),
        Some(mode) if !(eq_ignore_case(mode, "sync") || eq_ignore_case(mode, "async")) => ctx
            .out
            .error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option"),
        _ => {
            ctx.server.scripting.flush_functions();
            ctx.server.scripting.refresh_function_counts();
            ctx.out.ok();
        }
    }
}

fn fcall(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    fcall_generic(ctx, argv, false);
}

fn fcall_ro(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    fcall_generic(ctx, argv, true);
}

fn fcall_generic(ctx: &mut Ctx<'_>, argv: &[Bytes], read_only: bool) {
    super::monitor::feed_script_call(ctx.server, ctx.client, argv);
    let server = ctx.server;
    let run = &server.scripting.run;
    let _pending = PendingGuard::new(run);
    // Inside EXEC, or in a batch of script commands (`crate::scripting::ScriptBatch`), the
    // gate is held already.
    let _exclusive = (!ctx.client.in_exec && !crate::scripting::batch_held())
        .then(|| server.keyspace.gate().exclusive());
    let name = argv.get(1).cloned().unwrap_or_default();
    let found = server
        .scripting
        .with_functions(server, |functions| functions.function(&name).cloned());
    let function = match found {
        Ok(Some(function)) => function,
        Ok(None) => {
            ctx.out.error("ERR Function not found");
            return;
        }
        Err(message) => {
            ctx.out.error(&message);
            return;
        }
    };
    let Some(numkeys) = argv.get(2).and_then(|n| parse_i64(n)) else {
        ctx.out.error("ERR Bad number of keys provided");
        return;
    };
    let rest = argv.get(3..).unwrap_or_default();
    if numkeys > i64::try_from(rest.len()).unwrap_or(i64::MAX) {
        ctx.out
            .error("ERR Number of keys can't be greater than number of args");
        return;
    }
    let Ok(numkeys) = usize::try_from(numkeys) else {
        ctx.out.error("ERR Number of keys can't be negative");
        return;
    };
    let (keys, args) = rest.split_at(numkeys);
    if let Err(message) = check_before_run(server, function.flags, read_only) {
        ctx.out.error(message);
        return;
    }
    let threshold = server
        .tunables
        .busy_reply_threshold
        .load(std::sync::atomic::Ordering::Relaxed);
    let _running = RunGuard::begin(run, &function.name, argv, false, threshold);
    let spec = RunSpec {
        name: &function.name,
        flags: function.flags,
        read_only_command: read_only,
        eval: false,
        keys,
        args,
    };
    let client = &*ctx.client;
    let out = &mut *ctx.out;
    let result = server.scripting.with_functions(server, |functions| {
        in_place(|| {
            functions
                .engine
                .run(server, client, out, &function.callback, &spec)
        })
    });
    match result {
        Ok(outcome) => after_run(ctx, outcome, keys),
        Err(message) => ctx.out.error(&message),
    }
}
