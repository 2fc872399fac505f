//! SWAPDB: two databases exchange their contents (Redis 7.0's `swapdbCommand`).
//!
//! The exchange itself, with WATCH and a running snapshot handled, is
//! `forkless_storage::Keyspace::swap_dbs`. Clients stay in the database they selected, and so
//! do their WATCHes and blocked commands: a client blocked on a key of either database that now
//! holds a list or a sorted set is woken to look again (Redis's `scanDatabaseForReadyKeys`),
//! and one whose key holds anything else stays blocked.

use bytes::Bytes;
use forkless_storage::Value;

use super::meta::{Gate, KeySpec, flags};
use super::{Command, Ctx, parse_i64, reply};

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "swapdb", arity: 3, flags: flags!(WRITE, FAST), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["keyspace", "write", "fast", "dangerous"], summary: "Swaps two Redis databases", since: "4.0.0", group: "server", handler: swapdb },
];

/// A database index as `getIntFromObjectOrReply` reads it: a 32-bit integer, else `invalid`.
fn parse_index(arg: &[u8], invalid: &'static str) -> Result<i64, &'static str> {
    parse_i64(arg)
        .filter(|index| i32::try_from(*index).is_ok())
        .ok_or(invalid)
}

fn swapdb(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, first, second] = argv else { return };
    let indexes = parse_index(first, "ERR invalid first DB index").and_then(|first| {
        parse_index(second, "ERR invalid second DB index").map(|second| (first, second))
    });
    let (first, second) = match indexes {
        Ok(pair) => pair,
        Err(msg) => return ctx.out.error(msg),
    };
    let (Ok(first), Ok(second)) = (usize::try_from(first), usize::try_from(second)) else {
        return ctx.out.error(reply::DB_INDEX_OUT_OF_RANGE);
    };
    if !ctx.server.keyspace.swap_dbs(first, second, ctx.now_ms) {
        return ctx.out.error(reply::DB_INDEX_OUT_OF_RANGE);
    }
    if first != second {
        wake_ready(ctx, first);
        wake_ready(ctx, second);
    }
    ctx.out.ok();
}

/// Wakes the clients blocked on keys of database `db` that now hold a list, a sorted set or a
/// stream.
fn wake_ready(ctx: &Ctx<'_>, db_idx: usize) {
    let Some(db) = ctx.server.keyspace.db(db_idx) else {
        return;
    };
    for key in ctx.server.blocking.waiting_keys(db_idx) {
        let ready = db.read(&[&key], ctx.now_ms).get(&key).is_some_and(|entry| {
            matches!(
                entry.value(),
                Value::List(_) | Value::ZSet(_) | Value::Stream(_)
            )
        });
        if ready {
            ctx.server.blocking.signal(db_idx, &key);
        }
    }
}
