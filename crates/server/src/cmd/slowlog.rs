//! SLOWLOG: the commands that ran for at least `slowlog-log-slower-than` microseconds, newest
//! first, at most `slowlog-max-len` of them.
//!
//! `cmd::dispatch` already measures every command's duration for INFO commandstats; it compares
//! it with the threshold (one relaxed load) and only a command over it takes the log's mutex.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::meta::{Flags, Gate, KeySpec, flags};
use super::subcommands::{help_reply, run_subcommand};
use super::{Client, Command, Ctx, parse_i64};
use crate::server::{Server, lock};

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "slowlog", arity: -2, flags: flags!(), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["slow"], summary: "A container for slow log commands", since: "2.2.12", group: "server", handler: slowlog },
];

/// Redis's `SLOWLOG_ENTRY_MAX_ARGC` and `SLOWLOG_ENTRY_MAX_STRING`: an entry keeps at most this
/// many arguments, each at most this many bytes.
const MAX_ARGC: usize = 32;
const MAX_STRING: usize = 128;

/// One logged command.
#[derive(Debug)]
struct Entry {
    id: u64,
    unix_secs: u64,
    duration_us: u64,
    argv: Vec<Bytes>,
    addr: String,
    name: Bytes,
}

/// The slow log's entries, newest first, and the next entry's id. A std mutex, taken only to
/// log a slow command, read or reset; the thresholds are `Tunables`, read without a lock.
#[derive(Debug, Default)]
pub(crate) struct SlowLog {
    entries: Mutex<(VecDeque<Entry>, u64)>,
}

/// Returns true if and only if a command that ran `duration_us` belongs in the slow log.
pub(crate) fn is_slow(server: &Server, duration_us: u64) -> bool {
    let threshold = server
        .tunables
        .slowlog_log_slower_than
        .load(Ordering::Relaxed);
    u64::try_from(threshold).is_ok_and(|threshold| duration_us >= threshold)
}

impl SlowLog {
    fn push(&self, max_len: u64, entry_of: impl FnOnce(u64) -> Entry) {
        let max_len = usize::try_from(max_len).unwrap_or(usize::MAX);
        let mut guard = lock(&self.entries);
        let (entries, next_id) = &mut *guard;
        let entry = entry_of(*next_id);
        *next_id += 1;
        entries.push_front(entry);
        entries.truncate(max_len);
    }
}

/// Logs `argv`, run by `client` for `duration_us` from `started_us`, trimmed as Redis trims it.
/// For `cmd::dispatch`, once [`is_slow`] said so.
pub(crate) fn record(
    server: &Server,
    client: &Client,
    command: &Command,
    argv: &[Bytes],
    started_us: u64,
    duration_us: u64,
) {
    if command.has_flag(Flags::SKIP_SLOWLOG) {
        return;
    }
    let kept = argv.len().min(MAX_ARGC);
    let mut logged = Vec::with_capacity(kept);
    for (idx, arg) in argv.iter().take(kept).enumerate() {
        if kept != argv.len() && idx == kept - 1 {
            let more = argv.len() - kept + 1;
            logged.push(Bytes::from(format!("... ({more} more arguments)")));
        } else if super::monitor::is_redacted(argv, idx) {
            logged.push(Bytes::from_static(b"(redacted)"));
        } else if arg.len() > MAX_STRING {
            let mut trimmed = arg.get(..MAX_STRING).unwrap_or(arg).to_vec();
            let more = arg.len() - MAX_STRING;
            trimmed.extend_from_slice(format!("... ({more} more bytes)").as_bytes());
            logged.push(Bytes::from(trimmed));
        } else {
            // A copy: the argument shares the connection's read buffer, which a clone would
            // keep alive (16 KiB or more per entry, counted in `used_memory` and out of
            // eviction's reach) for as long as the entry stays in the log.
            logged.push(Bytes::copy_from_slice(arg));
        }
    }
    let name = lock(&client.handle.name).clone().unwrap_or_default();
    let max_len = server.tunables.slowlog_max_len.load(Ordering::Relaxed);
    server.slowlog.push(max_len, |id| Entry {
        id,
        unix_secs: started_us / 1_000_000,
        duration_us,
        argv: logged,
        addr: client.handle.addr.to_string(),
        name,
    });
}

fn slowlog(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    run_subcommand(ctx, argv);
}

pub(super) fn slowlog_get(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let count = match args.first() {
        None => 10,
        Some(arg) => match parse_i64(arg) {
            Some(-1) => usize::MAX,
            Some(count) if count >= 0 => usize::try_from(count).unwrap_or(usize::MAX),
            Some(_) => {
                ctx.out
                    .error("ERR count should be greater than or equal to -1");
                return;
            }
            None => {
                ctx.out
                    .error("ERR count should be greater than or equal to -1");
                return;
            }
        },
    };
    let guard = lock(&ctx.server.slowlog.entries);
    let entries = &guard.0;
    let n = entries.len().min(count);
    ctx.out.array_len(n);
    for entry in entries.iter().take(n) {
        ctx.out.array_len(6);
        ctx.out.int(i64::try_from(entry.id).unwrap_or(i64::MAX));
        ctx.out
            .int(i64::try_from(entry.unix_secs).unwrap_or(i64::MAX));
        ctx.out
            .int(i64::try_from(entry.duration_us).unwrap_or(i64::MAX));
        ctx.out.array_len(entry.argv.len());
        for arg in &entry.argv {
            ctx.out.bulk(arg);
        }
        ctx.out.bulk(entry.addr.as_bytes());
        ctx.out.bulk(&entry.name);
    }
}

pub(super) fn slowlog_len(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    let n = lock(&ctx.server.slowlog.entries).0.len();
    ctx.out.int(i64::try_from(n).unwrap_or(i64::MAX));
}

pub(super) fn slowlog_reset(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    lock(&ctx.server.slowlog.entries).0.clear();
    ctx.out.ok();
}

pub(super) fn slowlog_help(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    help_reply(
        ctx.out,
        "SLOWLOG",
        &[
            "GET [<count>]",
            "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
            "    Entries are made of:",
            "    id, timestamp, time in microseconds, arguments array, client IP and port,",
            "    client name",
            "LEN",
            "    Return the length of the slowlog.",
            "RESET",
            "    Reset the slowlog.",
            "HELP",
            "    Print this help.",
        ],
    );
}
