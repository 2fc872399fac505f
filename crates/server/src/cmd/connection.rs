//! Connection commands: PING ECHO QUIT SELECT HELLO AUTH CLIENT RESET.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use forkless_protocol::RespVersion;

use super::meta::{Gate, KeySpec, flags};
use super::{Command, Ctx, eq_ignore_case, parse_i64, reply, unknown_subcommand};
use crate::server::{ClientHandle, lock};

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
        categories: &["slow", "connection"],
        summary: "A container for client connection commands.",
        since: "2.4.0",
        group: "connection",
        handler: client,
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
];

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

/// Checks a password against `requirepass` for the `default` user. Returns true if and only if
/// it matches.
fn password_matches(ctx: &Ctx<'_>, username: &[u8], password: &[u8]) -> bool {
    let config = ctx.server.config();
    username == b"default"
        && config
            .requirepass
            .as_deref()
            .is_some_and(|pass| crate::limits::password_matches(pass.as_bytes(), password))
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
    let no_password = !ctx.server.tunables.requirepass_set.load(Ordering::Relaxed);
    if (no_password && username == b"default") || password_matches(ctx, username, password) {
        ctx.client.authenticated = true;
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
    if let Some((username, password)) = credentials {
        let no_password = !ctx.server.tunables.requirepass_set.load(Ordering::Relaxed);
        if (no_password && username.as_ref() == b"default")
            || password_matches(ctx, username, password)
        {
            ctx.client.authenticated = true;
        } else {
            ctx.out.error(WRONGPASS);
            return;
        }
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
    ctx.out.bulk(b"master");
    ctx.out.bulk(b"modules");
    ctx.out.array_len(0);
}

fn reset(ctx: &mut Ctx<'_>, _argv: &[Bytes]) {
    ctx.client.db = 0;
    ctx.client.handle.db.store(0, Ordering::Relaxed);
    ctx.out.version = RespVersion::Resp2;
    ctx.client.handle.resp.store(2, Ordering::Relaxed);
    *lock(&ctx.client.handle.name) = None;
    ctx.client.authenticated = !ctx.server.tunables.requirepass_set.load(Ordering::Relaxed);
    ctx.server
        .pubsub
        .remove_client(&mut ctx.client.subs, ctx.client.id);
    ctx.out.simple(b"RESET");
}

/// Redis accepts client names of printable ASCII without spaces.
fn validate_client_name(name: &[u8]) -> Result<(), &'static str> {
    if name.iter().all(|&byte| (b'!'..=b'~').contains(&byte)) {
        Ok(())
    } else {
        Err("ERR Client names cannot contain spaces, newlines or special characters.")
    }
}

/// One line of CLIENT LIST / CLIENT INFO, with Redis 7.0's fields. Buffer figures forkless
/// does not track per client are reported as 0.
fn client_line(handle: &ClientHandle, current_id: u64, current_command: &str) -> String {
    let age = handle.created.elapsed().as_secs();
    let idle_ms = u64::try_from(handle.created.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_sub(handle.last_interaction_ms.load(Ordering::Relaxed));
    let name = lock(&handle.name)
        .as_ref()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_default();
    let cmd = if handle.id == current_id {
        current_command
    } else {
        super::last_command_name(handle.last_command.load(Ordering::Relaxed)).unwrap_or("NULL")
    };
    format!(
        "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags=N db={} sub=0 psub=0 ssub=0 \
         multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 \
         tot-mem=0 events=r cmd={} user=default redir=-1 resp={}\n",
        handle.id,
        handle.addr,
        handle.local_addr,
        name,
        age,
        idle_ms / 1000,
        handle.db.load(Ordering::Relaxed),
        cmd,
        handle.resp.load(Ordering::Relaxed),
    )
}

fn client(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(sub) = argv.get(1) else { return };
    let sub_lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let args = argv.get(2..).unwrap_or_default();
    match (sub_lower.as_str(), args) {
        ("id", []) => ctx
            .out
            .int(i64::try_from(ctx.client.id).unwrap_or(i64::MAX)),
        ("getname", []) => match lock(&ctx.client.handle.name).clone() {
            Some(name) => ctx.out.bulk(&name),
            None => ctx.out.null(),
        },
        ("setname", [name]) => match validate_client_name(name) {
            Ok(()) => {
                *lock(&ctx.client.handle.name) = (!name.is_empty()).then(|| name.clone());
                ctx.out.ok();
            }
            Err(msg) => ctx.out.error(msg),
        },
        ("setinfo", [attr, _value]) => {
            if eq_ignore_case(attr, "lib-name") || eq_ignore_case(attr, "lib-ver") {
                ctx.out.ok();
            } else {
                ctx.out.error(&format!(
                    "ERR Unrecognized option '{}'",
                    String::from_utf8_lossy(attr)
                ));
            }
        }
        ("info", []) => {
            let line = client_line(&ctx.client.handle, ctx.client.id, "client|info");
            ctx.out.verbatim(b"txt", line.as_bytes());
        }
        ("list", filters) => client_list(ctx, filters),
        ("kill", filters) => client_kill(ctx, filters),
        ("no-evict" | "no-touch", [mode]) => {
            if eq_ignore_case(mode, "on") || eq_ignore_case(mode, "off") {
                ctx.out.ok();
            } else {
                ctx.out.error(reply::SYNTAX);
            }
        }
        ("help", []) => {
            let lines = [
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GETNAME",
                "    Return the name of the current connection.",
                "ID",
                "    Return the ID of the current connection.",
                "INFO",
                "    Return information about the current client connection.",
                "KILL <ip:port>",
                "    Kill connection made from <ip:port>.",
                "KILL <option> <value> [<option> <value> [...]]",
                "    Kill connections. Options are: ID <client-id>, ADDR <ip:port>, LADDR <ip:port>, SKIPME (YES|NO).",
                "LIST [options ...]",
                "    Return information about client connections. Options: TYPE (NORMAL|MASTER|REPLICA|PUBSUB), ID id [id ...].",
                "NO-EVICT (ON|OFF)",
                "    Accepted for compatibility; forkless does not evict.",
                "SETNAME <name>",
                "    Assign the name <name> to the current connection.",
                "HELP",
                "    Print this help.",
            ];
            ctx.out.array_len(lines.len());
            for line in lines {
                ctx.out.simple(line.as_bytes());
            }
        }
        _ => unknown_subcommand(ctx, argv),
    }
}

fn client_list(ctx: &mut Ctx<'_>, filters: &[Bytes]) {
    let mut ids: Option<Vec<u64>> = None;
    let mut rest = filters;
    while let Some((option, tail)) = rest.split_first() {
        if eq_ignore_case(option, "type") {
            let Some((kind, after)) = tail.split_first() else {
                ctx.out.error(reply::SYNTAX);
                return;
            };
            if ["normal", "master", "replica", "slave", "pubsub"]
                .iter()
                .all(|t| !eq_ignore_case(kind, t))
            {
                ctx.out.error(&format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(kind)
                ));
                return;
            }
            if !eq_ignore_case(kind, "normal") {
                ids = Some(Vec::new());
            }
            rest = after;
        } else if eq_ignore_case(option, "id") && !tail.is_empty() {
            let mut wanted = Vec::new();
            for id in tail {
                match parse_i64(id)
                    .and_then(|id| u64::try_from(id).ok())
                    .filter(|id| *id > 0)
                {
                    Some(id) => wanted.push(id),
                    None => {
                        ctx.out.error("ERR Invalid client ID");
                        return;
                    }
                }
            }
            ids = Some(wanted);
            rest = &[];
        } else {
            ctx.out.error(reply::SYNTAX);
            return;
        }
    }
    let mut text = String::new();
    for handle in ctx.server.clients.all() {
        if ids.as_ref().is_none_or(|ids| ids.contains(&handle.id)) {
            text.push_str(&client_line(&handle, ctx.client.id, "client|list"));
        }
    }
    ctx.out.verbatim(b"txt", text.as_bytes());
}

fn client_kill(ctx: &mut Ctx<'_>, filters: &[Bytes]) {
    // Old form: CLIENT KILL ip:port.
    if let [addr] = filters {
        let target = String::from_utf8_lossy(addr);
        match ctx
            .server
            .clients
            .all()
            .into_iter()
            .find(|h| h.addr.to_string() == target)
        {
            Some(handle) => {
                kill(ctx, &handle);
                ctx.out.ok();
            }
            None => ctx.out.error("ERR No such client"),
        }
        return;
    }
    let mut id = None;
    let mut addr = None;
    let mut laddr = None;
    let mut skipme = true;
    let mut pairs = filters.chunks_exact(2);
    for pair in &mut pairs {
        let (option, value) = (&pair[0], &pair[1]);
        if eq_ignore_case(option, "id") {
            match parse_i64(value)
                .and_then(|v| u64::try_from(v).ok())
                .filter(|v| *v > 0)
            {
                Some(v) => id = Some(v),
                None => {
                    ctx.out.error("ERR client-id should be greater than 0");
                    return;
                }
            }
        } else if eq_ignore_case(option, "addr") {
            addr = Some(String::from_utf8_lossy(value).into_owned());
        } else if eq_ignore_case(option, "laddr") {
            laddr = Some(String::from_utf8_lossy(value).into_owned());
        } else if eq_ignore_case(option, "skipme") {
            if eq_ignore_case(value, "yes") {
                skipme = true;
            } else if eq_ignore_case(value, "no") {
                skipme = false;
            } else {
                ctx.out.error(reply::SYNTAX);
                return;
            }
        } else if eq_ignore_case(option, "type") || eq_ignore_case(option, "user") {
            // Only normal clients and the default user exist: these filters select all or none.
            if eq_ignore_case(option, "type") && !eq_ignore_case(value, "normal") {
                id = Some(0);
            }
        } else {
            ctx.out.error(reply::SYNTAX);
            return;
        }
    }
    if !pairs.remainder().is_empty() || filters.is_empty() {
        ctx.out.error(reply::SYNTAX);
        return;
    }
    let mut killed = 0;
    for handle in ctx.server.clients.all() {
        let matches = id.is_none_or(|id| id == handle.id)
            && addr.as_ref().is_none_or(|a| *a == handle.addr.to_string())
            && laddr
                .as_ref()
                .is_none_or(|a| *a == handle.local_addr.to_string())
            && !(skipme && handle.id == ctx.client.id);
        if matches {
            kill(ctx, &handle);
            killed += 1;
        }
    }
    ctx.out.int(killed);
}

fn kill(ctx: &mut Ctx<'_>, handle: &ClientHandle) {
    if handle.id == ctx.client.id {
        ctx.client.close_after_reply = true;
    } else {
        handle.kill();
    }
}
