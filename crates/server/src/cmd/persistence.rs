//! Persistence commands: SAVE BGSAVE BGREWRITEAOF LASTSAVE.

use bytes::Bytes;

use super::meta::{Gate, KeySpec, flags};
use super::{Command, Ctx, eq_ignore_case, reply};
use crate::persistence::{self, SaveKind};

pub(crate) const COMMANDS: &[Command] = &[
    Command {
        name: "save",
        arity: 1,
        flags: flags!(ADMIN, NOSCRIPT, NO_ASYNC_LOADING, NO_MULTI),
        keys: KeySpec::NONE,
        gate: Gate::Shared,
        categories: &["admin", "slow", "dangerous"],
        summary: "Synchronously saves the database(s) to disk.",
        since: "1.0.0",
        group: "server",
        handler: save,
    },
    Command {
        name: "bgsave",
        arity: -1,
        flags: flags!(ADMIN, NOSCRIPT, NO_ASYNC_LOADING),
        keys: KeySpec::NONE,
        gate: Gate::Shared,
        categories: &["admin", "slow", "dangerous"],
        summary: "Asynchronously saves the database(s) to disk.",
        since: "1.0.0",
        group: "server",
        handler: bgsave,
    },
    Command {
        name: "bgrewriteaof",
        arity: 1,
        flags: flags!(ADMIN, NOSCRIPT, NO_ASYNC_LOADING),
        keys: KeySpec::NONE,
        gate: Gate::Shared,
        categories: &["admin", "slow", "dangerous"],
        summary: "Asynchronously rewrites the append-only file to disk.",
        since: "1.0.0",
        group: "server",
        handler: bgrewriteaof,
    },
    Command {
        name: "lastsave",
        arity: 1,
        flags: flags!(LOADING, STALE, FAST),
        keys: KeySpec::NONE,
        gate: Gate::Shared,
        categories: &["admin", "fast", "dangerous"],
        summary: "Returns the Unix timestamp of the last successful save to disk.",
        since: "1.0.0",
        group: "server",
        handler: lastsave,
    },
];

fn save(ctx: &mut Ctx<'_>, _argv: &[Bytes]) {
    // SAVE blocks this connection for the whole save, as in Redis; block_in_place lets the
    // runtime move this worker's other connections to another thread meanwhile.
    match tokio::task::block_in_place(|| persistence::save_blocking(ctx.server)) {
        Ok(()) => ctx.out.ok(),
        Err(msg) => ctx.out.error(&msg),
    }
}

/// `BGSAVE [SCHEDULE] [FORK|EPOCH|FORKLESS]`. SCHEDULE is Redis's; the mode words are
/// forkless's, picking the kind of this one save whatever `snapshot-mode` says (FORKLESS is
/// another name for EPOCH). Each may appear once, in any order; anything else is Redis's syntax
/// error.
fn bgsave(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let mut schedule = false;
    let mut kind = None;
    for arg in argv.get(1..).unwrap_or_default() {
        // SCHEDULE only differs from BGSAVE while an AOF rewrite runs (below).
        if eq_ignore_case(arg, "schedule") && !schedule {
            schedule = true;
        } else if eq_ignore_case(arg, "fork") && kind.is_none() {
            kind = Some(SaveKind::Fork);
        } else if (eq_ignore_case(arg, "epoch") || eq_ignore_case(arg, "forkless"))
            && kind.is_none()
        {
            kind = Some(SaveKind::Epoch);
        } else {
            ctx.out.error(reply::SYNTAX);
            return;
        }
    }
    // An AOF rewrite holds the keyspace's one cut, as Redis's AOF child blocks a BGSAVE: the
    // save is scheduled for when it ends, or refused with Redis's words.
    let saving = persistence::running(ctx.server).is_some();
    if !saving && ctx.server.aof.state().rewrite_started.is_some() {
        if schedule {
            ctx.server.aof.state().bgsave_scheduled = true;
            ctx.out.simple(b"Background saving scheduled");
        } else {
            ctx.out.error(
                "ERR Another child process is active (AOF?): can't BGSAVE right now. Use \
                 BGSAVE SCHEDULE in order to schedule a BGSAVE whenever possible.",
            );
        }
        return;
    }
    match persistence::bgsave(ctx.server, kind) {
        Ok(()) => ctx.out.simple(b"Background saving started"),
        Err(msg) => ctx.out.error(&msg),
    }
}

/// BGREWRITEAOF: a new base from an epoch cut, no fork (`crate::aof::rewrite`), taken before
/// the reply. While a save holds the keyspace's one cut, or inside EXEC, the rewrite is
/// scheduled and starts when the save (or the transaction) ends, as Redis schedules it while
/// its BGSAVE child runs; asked for then, it also resets the count of consecutive failures,
/// so that the limit on failing rewrites does not hold it back, as Redis's.
fn bgrewriteaof(ctx: &mut Ctx<'_>, _argv: &[Bytes]) {
    use crate::aof::rewrite::{self, Caller, Started};

    match rewrite::start_background(ctx.server, Caller::command(ctx.client.in_exec)) {
        Ok(Started::Scheduled) => {
            ctx.server.aof.state().consecutive_failures = 0;
            ctx.out
                .simple(b"Background append only file rewriting scheduled");
        }
        Ok(Started::Now) => ctx
            .out
            .simple(b"Background append only file rewriting started"),
        Err(msg) => ctx.out.error(&msg),
    }
}

fn lastsave(ctx: &mut Ctx<'_>, _argv: &[Bytes]) {
    let secs = ctx.server.persistence.state().last_save_unix_secs;
    ctx.out.int(i64::try_from(secs).unwrap_or(i64::MAX));
}
