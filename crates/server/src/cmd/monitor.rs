//! MONITOR: every command another client runs, as one status line per command.
//!
//! `cmd::dispatch` calls [`feed`] only while [`Monitors::active`] is set, so without a monitor
//! the command path pays one relaxed load. A line is Redis 7.0's
//! `+<secs>.<usecs> [<db> <addr>] "arg" "arg"...`, each argument quoted as `sdscatrepr` does,
//! and arguments that carry secrets (AUTH, HELLO's AUTH, CONFIG SET of a sensitive option) are
//! shown as `(redacted)`, as in Redis.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::meta::{Flags, Gate, KeySpec, flags};
use super::{Client, Command, Ctx, eq_ignore_case};
use crate::server::{ClientHandle, Server, lock};

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "monitor", arity: 1, flags: flags!(ADMIN, NOSCRIPT, LOADING, STALE), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["admin", "slow", "dangerous"], summary: "Listen for all requests received by the server in real time", since: "1.0.0", group: "server", handler: monitor },
];

/// The attached monitors. A std mutex: taken when a monitor attaches and for each fed line,
/// only while a monitor is attached, and never across an await.
#[derive(Debug, Default)]
pub(crate) struct Monitors {
    /// True while some monitor is attached: the only thing the command path reads otherwise.
    active: AtomicBool,
    senders: Mutex<Vec<Arc<ClientHandle>>>,
}

impl Monitors {
    /// Returns true if and only if some monitor may be attached.
    pub(crate) fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    fn add(&self, handle: Arc<ClientHandle>) {
        let mut senders = lock(&self.senders);
        senders.push(handle);
        self.active.store(true, Ordering::Relaxed);
    }

    /// Detaches client `id` (RESET); a closed connection is detached at the next line.
    pub(crate) fn remove(&self, id: u64) {
        let mut senders = lock(&self.senders);
        senders.retain(|handle| handle.id != id);
        self.active.store(!senders.is_empty(), Ordering::Relaxed);
    }

    /// Queues `line` to every monitor; one over its limit for queued pushes is closed and
    /// detached ([`ClientHandle::send_push`]).
    fn send(&self, line: &Bytes, limit: u64) {
        let mut senders = lock(&self.senders);
        senders.retain(|handle| handle.send_push(line.clone(), limit));
        self.active.store(!senders.is_empty(), Ordering::Relaxed);
    }
}

fn monitor(ctx: &mut Ctx<'_>, _argv: &[Bytes]) {
    // As Redis: a second MONITOR on the same connection is ignored.
    if ctx.client.conn.monitor {
        return;
    }
    ctx.client.conn.monitor = true;
    ctx.server.monitors.add(Arc::clone(&ctx.client.handle));
    ctx.out.ok();
}

/// Returns true if and only if argument `idx` of `argv` carries a secret MONITOR and the slow
/// log must not show: AUTH's arguments, ACL SETUSER's user and rules, HELLO's AUTH username
/// and password, the value of
/// CONFIG SET for `requirepass` and `masterauth`, MIGRATE's AUTH/AUTH2 credentials.
pub(crate) fn is_redacted(argv: &[Bytes], idx: usize) -> bool {
    let Some(name) = argv.first() else {
        return false;
    };
    if eq_ignore_case(name, "auth") {
        return idx >= 1;
    }
    let follows = |word: &str, n: usize| {
        (1..=n).any(|back| {
            idx.checked_sub(back)
                .and_then(|at| argv.get(at))
                .is_some_and(|arg| eq_ignore_case(arg, word))
        })
    };
    if eq_ignore_case(name, "hello") {
        return idx >= 3 && follows("auth", 2);
    }
    if eq_ignore_case(name, "migrate") {
        return idx >= 6 && (follows("auth", 1) || follows("auth2", 2));
    }
    if eq_ignore_case(name, "acl")
        && argv
            .get(1)
            .is_some_and(|sub| eq_ignore_case(sub, "setuser"))
    {
        return idx >= 2;
    }
    if eq_ignore_case(name, "config") && argv.get(1).is_some_and(|sub| eq_ignore_case(sub, "set")) {
        let sensitive =
            |arg: &Bytes| eq_ignore_case(arg, "requirepass") || eq_ignore_case(arg, "masterauth");
        // CONFIG SET name value [name value ...]: values sit at even positions from 3.
        return idx >= 3 && idx % 2 == 1 && argv.get(idx - 1).is_some_and(sensitive);
    }
    false
}

/// Sends the line for `argv`, run by `client` at `now_us`, to every monitor. Commands with the
/// `ADMIN` flag (the command's, or its subcommand's) are not shown, as in Redis; those with
/// `SKIP_MONITOR` (EVAL, FCALL and their variants) showed themselves before they ran, through
/// [`feed_script_call`].
pub(crate) fn feed(server: &Server, client: &Client, flags: Flags, argv: &[Bytes], now_us: u64) {
    if flags.contains(Flags::ADMIN) || flags.contains(Flags::SKIP_MONITOR) {
        return;
    }
    send_line(server, client, argv, now_us);
}

/// Shows a script or function call to the monitors before it runs, so that the commands the
/// script runs (shown as from `lua`) come after it, as Redis's `evalCommand` and
/// `fcallCommandGeneric` feed them.
pub(crate) fn feed_script_call(server: &Server, client: &Client, argv: &[Bytes]) {
    if server.monitors.active() {
        send_line(server, client, argv, crate::server::unix_us());
    }
}

fn send_line(server: &Server, client: &Client, argv: &[Bytes], now_us: u64) {
    let mut line = format!(
        "+{}.{:06} [{} ",
        now_us / 1_000_000,
        now_us % 1_000_000,
        client.db
    )
    .into_bytes();
    if client.is_script() {
        line.extend_from_slice(b"lua]");
    } else if let crate::listen::ClientAddr::Unix(path) = &client.handle.addr {
        // Redis's replicationFeedMonitors names a Unix client `unix:<unixsocket>`.
        line.extend_from_slice(format!("unix:{path}]").as_bytes());
    } else {
        line.extend_from_slice(format!("{}]", client.handle.addr).as_bytes());
    }
    for (idx, arg) in argv.iter().enumerate() {
        line.push(b' ');
        if is_redacted(argv, idx) {
            line.extend_from_slice(b"\"(redacted)\"");
        } else {
            line.extend_from_slice(&crate::config::repr(arg));
        }
    }
    line.extend_from_slice(b"\r\n");
    server
        .monitors
        .send(&Bytes::from(line), server.tunables.push_limit());
}
