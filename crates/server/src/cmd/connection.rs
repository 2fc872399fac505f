//! Connection commands: PING ECHO QUIT SELECT HELLO AUTH RESET, and READONLY/READWRITE (which
//! answer as Redis outside cluster mode); CLIENT is in `client.rs`.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use forkless_protocol::RespVersion;

use super::meta::{Gate, KeySpec, flags};
use super::{Command, Ctx, eq_ignore_case, parse_i64, reply};
use crate::server::lock;

pub(crate) const COMMANDS: &[Command] = &[
    Command {
        name: "ping",
        arity: -1,
        flags: flags!(FAST, SENTINEL, IN_SUBSCRIBED_MODE, REFUSED_ON_MISCONF),
        keys: KeySpec::NONE,
        gate: Gate::Shared,
        categories: &["fast", "connection"],
        summary: "Returns the server's liveliness response.",
        since: "1.0.0",
        group: "connection",
        handler: ping,
    },
    Command {
        name: "echo",
        arity: 2,
        flags: flags!(LOADING, STALE, FAST),
        keys: KeySpec::NONE,
        gate: Gate::Shared,
        categories: &["fast", "connection"],
        summary: "Returns the given string.",
        since: "1.0.0",
        group: "connection",
        handler: echo,
    },
    Command {
        name: "quit",
        arity: -1,
        flags: flags!(
            ALLOW_BUSY,
            NOSCRIPT,
            LOADING,
            STALE,
            FAST,
            NO_AUTH,
            RUNS_IN_MULTI,
            IN_SUBSCRIBED_MODE
        ),
        keys: KeySpec::NONE,
        gate: Gate::Shared,
        categories: &["fast", "connection"],
        summary: "Closes the connection.",
        since: "1.0.0",
        group: "connection",
        handler: quit,
    },
    Command {
        name: "select",
        arity: 2,
        flags: flags!(LOADING, STALE, FAST),
        keys: KeySpec::NONE,
        gate: Gate::Shared,
        categories: &["fast", "connection"],
        summary: "Changes the selected database.",
        since: "1.0.0",
        group: "connection",
        handler: select,
    },
    Command {
        name: "hello",
        arity: -1,
        flags: flags!(
            NOSCRIPT, LOADING, STALE, FAST, NO_AUTH, SENTINEL, ALLOW_BUSY
        ),
        keys: KeySpec::NONE,
        gate: Gate::Shared,
        categories: &["fast", "connection"],
        summary: "Handshakes with the Redis server.",
        since: "6.0.0",
        group: "connection",
        handler: hello,
    },
    Command {
        name: "auth",
        arity: -2,
        flags: flags!(
            NOSCRIPT, LOADING, STALE, FAST, NO_AUTH, SENTINEL, ALLOW_BUSY
        ),
        keys: KeySpec::NONE,
        gate: Gate::Shared,
        categories: &["fast", "connection"],
        summary: "Authenticates the connection.",
        since: "1.0.0",
        group: "connection",
        handler: auth,
    },
    Command {
        name: "client",
        arity: -2,
        flags: flags!(SENTINEL),
        keys: KeySpec::NONE,
        gate: Gate::Shared,
        categories: &["slow"],
        summary: "A container for client connection commands",
        since: "2.4.0",
        group: "connection",
        handler: super::client::client,
    },
    Command {
        name: "reset",
        arity: 1,
        flags: flags!(
            NOSCRIPT,
            LOADING,
            STALE,
            FAST,
            NO_AUTH,
            ALLOW_BUSY,
            RUNS_IN_MULTI,
            IN_SUBSCRIBED_MODE
        ),
        keys: KeySpec::NONE,
        gate: Gate::Shared,
        categories: &["fast", "connection"],
        summary: "Resets the connection.",
        since: "6.2.0",
        group: "connection",
        handler: reset,
    },
    Command {
        name: "readonly",
        arity: 1,
        flags: flags!(FAST, LOADING, STALE),
        keys: KeySpec::NONE,
        gate: Gate::Shared,
        categories: &["fast", "connection"],
        summary: "Enables read queries for a connection to a cluster replica node",
        since: "3.0.0",
        group: "cluster",
        handler: cluster_disabled,
    },
    Command {
        name: "readwrite",
        arity: 1,
        flags: flags!(FAST, LOADING, STALE),
        keys: KeySpec::NONE,
        gate: Gate::Shared,
        categories: &["fast", "connection"],
        summary: "Disables read queries for a connection to a cluster replica node",
        since: "3.0.0",
        group: "cluster",
        handler: cluster_disabled,
    },
];

/// READONLY and READWRITE outside cluster mode, as Redis answers them.
fn cluster_disabled(ctx: &mut Ctx<'_>, _argv: &[Bytes]) {
    ctx.out
        .error("ERR This instance has cluster support disabled");
}

fn ping(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    if argv.len() > 2 {
        ctx.out
            .error("ERR wrong number of arguments for 'ping' command");
        return;
    }
    // A RESP2 connection in subscribed mode gets ["pong", message] (Redis's rule).
    if ctx.client.subs.active() && !ctx.resp3() {
        ctx.out.array_len(2);
        ctx.out.bulk(b"pong");
        ctx.out.bulk(argv.get(1).map_or(&b""[..], |m| m));
        return;
    }
    match argv.get(1) {
        Some(message) => ctx.out.bulk(message),
        None => ctx.out.simple(b"PONG"),
    }
}

fn echo(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    if let Some(message) = argv.get(1) {
        ctx.out.bulk(message);
    }
}

fn quit(ctx: &mut Ctx<'_>, _argv: &[Bytes]) {
    ctx.out.ok();
    ctx.client.close_after_reply = true;
}

fn select(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(idx) = argv.get(1).and_then(|arg| parse_i64(arg)) else {
        ctx.out.error(reply::NOT_INTEGER);
        return;
    };
    match usize::try_from(idx)
        .ok()
        .filter(|idx| ctx.server.keyspace.db(*idx).is_some())
    {
        Some(idx) => {
            ctx.client.db = idx;
            ctx.client.handle.db.store(idx, Ordering::Relaxed);
            ctx.out.ok();
        }
        None => ctx.out.error(reply::DB_INDEX_OUT_OF_RANGE),
    }
}

/// Authenticates the client as `username` when the password matches an enabled user
/// (`ACLAuthenticateUser`); a failure is logged in the ACL log. Returns true if and only if it
/// succeeded.
fn authenticate(ctx: &mut Ctx<'_>, argv: &[Bytes], username: &[u8], password: &[u8]) -> bool {
    match ctx.server.acl.credentials(username, password) {
        Some(user) => {
            crate::acl::log_in(ctx.server, ctx.client, user);
            true
        }
        None => {
            crate::acl::log::record_auth_failure(ctx.server, ctx.client, argv, username);
            false
        }
    }
}

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

fn auth(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let (username, password): (&[u8], &Bytes) = match argv {
        [_, password] => (b"default", password),
        [_, username, password] => (username, password),
        _ => {
            ctx.out.error(reply::SYNTAX);
            return;
        }
    };
    if argv.len() == 2 && !ctx.server.tunables.requirepass_set.load(Ordering::Relaxed) {
        ctx.out.error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        );
        return;
    }
    if authenticate(ctx, argv, username, password) {
        ctx.out.ok();
    } else {
        ctx.out.error(WRONGPASS);
    }
}

fn hello(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let mut version = None;
    let mut rest = argv.get(1..).unwrap_or_default();
    if let Some((protover, tail)) = rest.split_first() {
        let Some(number) = parse_i64(protover) else {
            ctx.out
                .error("ERR Protocol version is not an integer or out of range");
            return;
        };
        if !(2..=3).contains(&number) {
            ctx.out.error("NOPROTO unsupported protocol version");
            return;
        }
        version = Some(if number == 3 {
            RespVersion::Resp3
        } else {
            RespVersion::Resp2
        });
        rest = tail;
    }
    let mut credentials = None;
    let mut setname = None;
    while let Some((option, tail)) = rest.split_first() {
        match tail {
            [username, password, after @ ..] if eq_ignore_case(option, "auth") => {
                credentials = Some((username, password));
                rest = after;
            }
            [name, after @ ..] if eq_ignore_case(option, "setname") => {
                setname = Some(name);
                rest = after;
            }
            _ => {
                ctx.out.error(&format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(option)
                ));
                return;
            }
        }
    }
    if let Some((username, password)) = credentials
        && !authenticate(ctx, argv, username, password)
    {
        ctx.out.error(WRONGPASS);
        return;
    }
    if !ctx.client.authenticated {
        ctx.out.error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO AUTH <user> <pass> option can be used to authenticate the client and \
             select the RESP protocol version at the same time",
        );
        return;
    }
    if let Some(name) = setname {
        if let Err(msg) = validate_client_name(name) {
            ctx.out.error(msg);
            return;
        }
        *lock(&ctx.client.handle.name) = (!name.is_empty()).then(|| name.clone());
    }
    if let Some(version) = version {
        ctx.out.version = version;
        ctx.client.handle.resp.store(
            if version == RespVersion::Resp3 { 3 } else { 2 },
            Ordering::Relaxed,
        );
    }
    let proto = if ctx.resp3() { 3 } else { 2 };
    ctx.out.map_len(7);
    ctx.out.bulk(b"server");
    ctx.out.bulk(b"redis");
    ctx.out.bulk(b"version");
    ctx.out.bulk(crate::info::REDIS_VERSION.as_bytes());
    ctx.out.bulk(b"proto");
    ctx.out.int(proto);
    ctx.out.bulk(b"id");
    ctx.out
        .int(i64::try_from(ctx.client.id).unwrap_or(i64::MAX));
    ctx.out.bulk(b"mode");
    ctx.out.bulk(b"standalone");
    ctx.out.bulk(b"role");
    if ctx.server.replication.replica.is_replica() {
        ctx.out.bulk(b"replica");
    } else {
        ctx.out.bulk(b"master");
    }
    ctx.out.bulk(b"modules");
    ctx.out.array_len(0);
}

/// RESET: Redis's `clearClientConnectionState`: MONITOR off, transaction and watches
/// dropped, database 0, RESP2, no name, authentication reset, subscriptions dropped, CLIENT
/// REPLY on and NO-EVICT off.
fn reset(ctx: &mut Ctx<'_>, _argv: &[Bytes]) {
    super::client::reset(ctx.server, ctx.client);
    super::transaction::discard_all(ctx.server, ctx.client);
    ctx.client.db = 0;
    ctx.client.handle.db.store(0, Ordering::Relaxed);
    ctx.out.version = RespVersion::Resp2;
    ctx.client.handle.resp.store(2, Ordering::Relaxed);
    *lock(&ctx.client.handle.name) = None;
    crate::acl::log_out(ctx.server, ctx.client);
    ctx.server
        .pubsub
        .remove_client(&mut ctx.client.subs, ctx.client.id);
    ctx.out.simple(b"RESET");
}

/// Redis accepts client names of printable ASCII without spaces.
pub(super) fn validate_client_name(name: &[u8]) -> Result<(), &'static str> {
    if name.iter().all(|&byte| (b'!'..=b'~').contains(&byte)) {
        Ok(())
    } else {
        Err("ERR Client names cannot contain spaces, newlines or special characters.")
    }
}
