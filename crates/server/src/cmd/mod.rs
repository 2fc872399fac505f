//! The command table and dispatch.
//!
//! Commands are grouped by data type, one file per group, each exporting a `COMMANDS` slice of
//! [`Command`] descriptors. Dispatch looks the name up case-insensitively, checks arity and
//! authentication, runs the handler, and keeps per-command statistics. A handler writes its
//! reply straight into the connection's output buffer; client-visible failures are error
//! replies, never Rust errors.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use forkless_protocol::{Out, RespVersion};
use forkless_storage::Db;

use crate::server::Server;

pub(crate) mod connection;
pub(crate) mod hash;
pub(crate) mod keys;
pub(crate) mod list;
pub(crate) mod persistence;
pub(crate) mod pubsub;
pub(crate) mod scripting;
pub(crate) mod server;
pub(crate) mod set;
pub(crate) mod string;
pub(crate) mod transaction;
pub(crate) mod zset;

/// Replies shared by many commands, with Redis 7.0's exact text.
pub(crate) mod reply {
    pub(crate) const WRONGTYPE: &str =
        "WRONGTYPE Operation against a key holding the wrong kind of value";
    pub(crate) const SYNTAX: &str = "ERR syntax error";
    pub(crate) const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
    pub(crate) const NOT_FLOAT: &str = "ERR value is not a valid float";
    pub(crate) const NO_SUCH_KEY: &str = "ERR no such key";
    pub(crate) const OVERFLOW: &str = "ERR increment or decrement would overflow";
    pub(crate) const NOAUTH: &str = "NOAUTH Authentication required.";
    pub(crate) const DB_INDEX_OUT_OF_RANGE: &str = "ERR DB index is out of range";
}

/// A command handler: reads `argv` (argv[0] is the command name) and writes one reply.
pub(crate) type Handler = fn(&mut Ctx<'_>, &[Bytes]);

/// One row of the command table: what `COMMAND INFO` reports, and the handler.
#[derive(Debug)]
pub(crate) struct Command {
    /// Lower-case name.
    pub(crate) name: &'static str,
    /// Redis arity: N means exactly N arguments including the name, -N means at least N.
    pub(crate) arity: i32,
    /// Redis command flags (`write`, `readonly`, `fast`, `denyoom`, `admin`, `noauth`...).
    pub(crate) flags: &'static [&'static str],
    /// Key positions: first key, last key (negative counts from the end), step.
    pub(crate) keys: (i32, i32, i32),
    /// ACL categories without the `@`.
    pub(crate) categories: &'static [&'static str],
    /// One-line summary for COMMAND DOCS.
    pub(crate) summary: &'static str,
    /// The Redis version that introduced the command, for COMMAND DOCS.
    pub(crate) since: &'static str,
    /// Redis's documentation group (`string`, `generic`, `connection`, `server`...).
    pub(crate) group: &'static str,
    pub(crate) handler: Handler,
}

impl Command {
    /// Returns true if and only if the command carries `flag`.
    pub(crate) fn has_flag(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }

    /// The positions in `argv` that hold keys.
    pub(crate) fn key_positions(&self, argc: usize) -> Vec<usize> {
        let (first, last, step) = self.keys;
        if first <= 0 || step <= 0 {
            return Vec::new();
        }
        let argc = i64::try_from(argc).unwrap_or(i64::MAX);
        let last = if last < 0 {
            argc + i64::from(last)
        } else {
            i64::from(last)
        };
        let mut positions = Vec::new();
        let mut pos = i64::from(first);
        while pos <= last && pos < argc {
            positions.push(usize::try_from(pos).unwrap_or(usize::MAX));
            pos += i64::from(step);
        }
        positions
    }
}

struct Table {
    commands: Vec<&'static Command>,
    by_name: HashMap<&'static [u8], usize>,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let commands: Vec<&'static Command> = [
        connection::COMMANDS,
        keys::COMMANDS,
        persistence::COMMANDS,
        server::COMMANDS,
        string::COMMANDS,
        list::COMMANDS,
        hash::COMMANDS,
        set::COMMANDS,
        zset::COMMANDS,
        pubsub::COMMANDS,
        transaction::COMMANDS,
        scripting::COMMANDS,
    ]
    .into_iter()
    .flatten()
    .collect();
    let by_name = commands
        .iter()
        .enumerate()
        .map(|(idx, cmd)| (cmd.name.as_bytes(), idx))
        .collect();
    Table { commands, by_name }
});

/// Number of commands, the length of the per-command statistics array.
pub(crate) fn table_len() -> usize {
    TABLE.commands.len()
}

/// Every command, in table order.
pub(crate) fn all_commands() -> &'static [&'static Command] {
    &TABLE.commands
}

/// Finds a command by name, ignoring ASCII case, with its index in the table.
pub(crate) fn lookup(name: &[u8]) -> Option<(usize, &'static Command)> {
    let mut lower = [0u8; 32];
    let lower = lower.get_mut(..name.len())?;
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    let idx = *TABLE.by_name.get(&*lower)?;
    TABLE.commands.get(idx).map(|cmd| (idx, *cmd))
}

/// A connection's own state: what it has selected, negotiated and asked for.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) id: u64,
    pub(crate) db: usize,
    pub(crate) authenticated: bool,
    /// Set by QUIT (and CLIENT KILL of self): close after the reply is written.
    pub(crate) close_after_reply: bool,
    pub(crate) handle: std::sync::Arc<crate::server::ClientHandle>,
    /// Channel and pattern subscriptions, and the queue their messages arrive on.
    pub(crate) subs: crate::pubsub::ClientSubscriptions,
    /// Commands queued since MULTI, or None outside a transaction.
    pub(crate) multi: Option<Vec<Vec<Bytes>>>,
    /// Set when a command was refused while queuing: EXEC then aborts (EXECABORT).
    pub(crate) multi_failed: bool,
    /// WATCHed keys, and the flag any change to them sets.
    pub(crate) watched: transaction::Watched,
    /// True while EXEC runs the queue: blocking commands must not block then.
    pub(crate) in_exec: bool,
    /// Set by a blocking command that found nothing: the connection waits, then retries it.
    pub(crate) blocked: Option<crate::blocking::BlockRequest>,
}

/// What a handler works with.
pub(crate) struct Ctx<'a> {
    pub(crate) server: &'a Server,
    pub(crate) client: &'a mut Client,
    pub(crate) out: &'a mut Out,
    /// The time this command runs at, in ms since the Unix epoch (one reading per command).
    pub(crate) now_ms: u64,
}

impl Ctx<'_> {
    /// The selected database.
    pub(crate) fn db(&self) -> &Db {
        self.server.db(self.client.db)
    }

    pub(crate) fn resp3(&self) -> bool {
        self.out.version == RespVersion::Resp3
    }

    pub(crate) fn hit(&self) {
        self.server
            .stats
            .keyspace_hits
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn miss(&self) {
        self.server
            .stats
            .keyspace_misses
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a hit or a miss depending on `found`.
    pub(crate) fn hit_or_miss(&self, found: bool) {
        if found { self.hit() } else { self.miss() }
    }
}

/// Runs one command and writes its reply.
pub(crate) fn execute(server: &Server, client: &mut Client, out: &mut Out, argv: &[Bytes]) {
    let Some(name) = argv.first() else { return };
    let Some((idx, command)) = lookup(name) else {
        out.error(&unknown_command(argv));
        server
            .stats
            .total_error_replies
            .fetch_add(1, Ordering::Relaxed);
        transaction::flag_error(client);
        return;
    };
    let stats = server.command_stats.get(idx);
    if let Some(error) = refusal(server, client, out.version, command, argv.len()) {
        out.error(&error);
        reject(server, stats);
        transaction::flag_error(client);
        return;
    }
    // EXEC and the script commands take the gate exclusively themselves; every other command
    // holds it shared (see `forkless_storage::CommandGate`). While a script runs, commands wait
    // for it, and once it is busy they are refused (`crate::scripting::admit`).
    // The busy check comes before queuing, as in Redis: a command refused while a script is
    // busy aborts the transaction it was meant for.
    let _gate = match crate::scripting::admit(server, command, argv) {
        crate::scripting::Admission::Run(gate) => gate,
        crate::scripting::Admission::Refuse(error) => {
            reject(server, stats);
            if command.name == "exec" && client.multi.is_some() {
                transaction::discard_all(server, client);
                out.error(&format!(
                    "EXECABORT Transaction discarded because of: {error}"
                ));
            } else {
                out.error(error);
                transaction::flag_error(client);
            }
            return;
        }
    };
    if transaction::queue(client, out, command, argv) {
        return;
    }
    dispatch(server, client, out, idx, command, argv);
}

/// Why `command` may not run now, as the error reply, or None if it may.
fn refusal(
    server: &Server,
    client: &Client,
    version: RespVersion,
    command: &Command,
    argc: usize,
) -> Option<String> {
    let argc = i32::try_from(argc).unwrap_or(i32::MAX);
    if (command.arity > 0 && argc != command.arity) || (command.arity < 0 && argc < -command.arity)
    {
        return Some(format!(
            "ERR wrong number of arguments for '{}' command",
            command.name
        ));
    }
    if !client.authenticated
        && !command.has_flag("no_auth")
        && server.tunables.requirepass_set.load(Ordering::Relaxed)
    {
        return Some(reply::NOAUTH.to_string());
    }
    if client.subs.active()
        && version == RespVersion::Resp2
        && !pubsub::allowed_in_subscribed_mode(command.name)
    {
        return Some(format!(
            "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET \
             are allowed in this context",
            command.name
        ));
    }
    if !command.has_flag("loading") && server.persistence.loading() {
        return Some("LOADING Redis is loading the dataset in memory".to_string());
    }
    if client.multi.is_some() && command.has_flag("no_multi") {
        return Some("ERR Command not allowed inside a transaction".to_string());
    }
    if (command.has_flag("write") || command.name == "ping")
        && crate::persistence::writes_refused(server)
    {
        return Some(crate::persistence::MISCONF.to_string());
    }
    None
}

/// Runs a command whose checks have passed, and keeps its statistics. EXEC calls this for each
/// queued command while it holds the gate exclusively.
pub(crate) fn dispatch(
    server: &Server,
    client: &mut Client,
    out: &mut Out,
    idx: usize,
    command: &Command,
    argv: &[Bytes],
) {
    let stats = server.command_stats.get(idx);
    let reply_start = out.len();
    // One clock read gives both the command's time (expiry) and the start of its duration
    // (commandstats): two clock reads per command, as Redis's call() does.
    let started_us = crate::server::unix_us();
    let now_ms = started_us / 1000;
    let mut ctx = Ctx {
        server,
        client,
        out,
        now_ms,
    };
    (command.handler)(&mut ctx, argv);
    // A command that blocked changed nothing: signalling its keys would wake itself.
    if command.has_flag("write") && client.blocked.is_none() && server.blocking.has_waiters() {
        for pos in command.key_positions(argv.len()) {
            if let Some(key) = argv.get(pos) {
                server.blocking.signal(client.db, key);
            }
        }
    }
    // Wall clock: a step back (NTP) reads as 0 µs rather than wrapping.
    let usec = crate::server::unix_us().saturating_sub(started_us);
    server
        .stats
        .total_commands_processed
        .fetch_add(1, Ordering::Relaxed);
    if let Some(stats) = stats {
        stats.calls.fetch_add(1, Ordering::Relaxed);
        stats.usec.fetch_add(usec, Ordering::Relaxed);
        if out.buf.get(reply_start) == Some(&b'-') {
            stats.failed_calls.fetch_add(1, Ordering::Relaxed);
            server
                .stats
                .total_error_replies
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn reject(server: &Server, stats: Option<&crate::server::CommandStats>) {
    server
        .stats
        .total_error_replies
        .fetch_add(1, Ordering::Relaxed);
    if let Some(stats) = stats {
        stats.rejected_calls.fetch_add(1, Ordering::Relaxed);
    }
}

/// Redis 7.0's reply to an unknown command: the name (at most 128 bytes), then quoted arguments
/// while the argument text is shorter than 128 bytes, each cut to what is left of those 128.
fn unknown_command(argv: &[Bytes]) -> String {
    let name = argv.first().map_or(&b""[..], |b| b);
    let mut args = Vec::new();
    for arg in argv.iter().skip(1) {
        if args.len() >= 128 {
            break;
        }
        let room = 128 - args.len();
        args.push(b'\'');
        args.extend_from_slice(truncate(arg, room));
        args.extend_from_slice(b"' ");
    }
    format!(
        "ERR unknown command '{}', with args beginning with: {}",
        String::from_utf8_lossy(truncate(name, 128)),
        String::from_utf8_lossy(&args)
    )
}

/// The reply to an unknown subcommand of a container command (CONFIG, CLIENT, OBJECT...).
pub(crate) fn unknown_subcommand(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let sub = argv
        .get(1)
        .map_or(String::new(), |b| String::from_utf8_lossy(b).into_owned());
    let name = argv.first().map_or(String::new(), |b| {
        String::from_utf8_lossy(b).to_ascii_uppercase()
    });
    ctx.out.error(&format!(
        "ERR unknown subcommand '{}'. Try {name} HELP.",
        truncate_str(&sub, 128)
    ));
}

fn truncate_str(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn truncate(bytes: &[u8], max: usize) -> &[u8] {
    bytes.get(..max).unwrap_or(bytes)
}

/// Parses an integer argument as Redis's `getLongLongFromObject` does.
pub(crate) fn parse_i64(arg: &[u8]) -> Option<i64> {
    forkless_storage::value::parse_canonical_i64(arg)
}

/// Returns true if and only if `arg` equals `word` ignoring ASCII case.
pub(crate) fn eq_ignore_case(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}
