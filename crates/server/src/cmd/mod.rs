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

use self::meta::{Flags, Gate, KeySpec, Refusal};
use crate::server::Server;

pub(crate) mod access;
pub(crate) mod acl;
pub(crate) mod bitmap;
pub(crate) mod client;
pub(crate) mod connection;
pub(crate) mod debug;
pub(crate) mod dump;
pub(crate) mod geo;
pub(crate) mod hash;
pub(crate) mod hyperloglog;
pub(crate) mod introspection;
pub(crate) mod keys;
pub(crate) mod latency;
pub(crate) mod lcs;
pub(crate) mod list;
pub(crate) mod lolwut;
pub(crate) mod memory;
pub(crate) mod meta;
pub(crate) mod migrate;
pub(crate) mod module;
pub(crate) mod monitor;
pub(crate) mod persistence;
pub(crate) mod pubsub;
pub(crate) mod scripting;
pub(crate) mod server;
pub(crate) mod set;
pub(crate) mod slowlog;
pub(crate) mod sort;
pub(crate) mod stream;
pub(crate) mod string;
pub(crate) mod subcommands;
pub(crate) mod swapdb;
pub(crate) mod tracking;
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
    /// Redis command flags (`write`, `readonly`, `fast`, `denyoom`, `admin`, `no_auth`...) and
    /// forkless's own dispatch traits.
    pub(crate) flags: Flags,
    /// Key positions: first key, last key (negative counts from the end), step.
    pub(crate) keys: KeySpec,
    /// How the command holds the command gate.
    pub(crate) gate: Gate,
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
    /// Returns true if and only if the command carries every flag of `flag`.
    pub(crate) fn has_flag(&self, flag: Flags) -> bool {
        self.flags.contains(flag)
    }
}

struct Table {
    commands: Vec<&'static Command>,
    /// Looked up for every command (and every `redis.call`): a fast hash, as the table is
    /// fixed and a lookup inserts nothing.
    by_name: HashMap<&'static [u8], usize, foldhash::fast::FixedState>,
    /// Per command: true if and only if it is a container with rows in `SUBCOMMANDS`.
    is_container: Vec<bool>,
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
        bitmap::COMMANDS,
        sort::COMMANDS,
        lcs::COMMANDS,
        swapdb::COMMANDS,
        dump::COMMANDS,
        migrate::COMMANDS,
        module::COMMANDS,
        hyperloglog::COMMANDS,
        geo::COMMANDS,
        stream::COMMANDS,
        monitor::COMMANDS,
        slowlog::COMMANDS,
        latency::COMMANDS,
        memory::COMMANDS,
        debug::COMMANDS,
        scripting::COMMANDS,
        acl::COMMANDS,
        crate::replication::commands::COMMANDS,
        crate::replication::replica::COMMANDS,
        crate::replication::failover::COMMANDS,
    ]
    .into_iter()
    .flatten()
    .collect();
    let by_name = commands
        .iter()
        .enumerate()
        .map(|(idx, cmd)| (cmd.name.as_bytes(), idx))
        .collect();
    let is_container = commands
        .iter()
        .map(|cmd| subcommands::subcommands_of(cmd.name).next().is_some())
        .collect();
    Table {
        commands,
        by_name,
        is_container,
    }
});

/// Number of commands, the length of the per-command statistics array.
pub(crate) fn table_len() -> usize {
    TABLE.commands.len()
}

/// Every command, in table order.
pub(crate) fn all_commands() -> &'static [&'static Command] {
    &TABLE.commands
}

/// Returns true if and only if the command at `idx` in the table is a container with rows in
/// the subcommand table (CONFIG, CLIENT, OBJECT, ...).
pub(crate) fn is_container(idx: usize) -> bool {
    TABLE.is_container.get(idx).copied().unwrap_or(false)
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
    /// True while a blocked command is retried after a wake-up: a key of the wrong type then
    /// does not end the block (Redis serves a blocked client only from a key of its type).
    pub(crate) block_retry: bool,
    /// True for a client that replays an effect stream (the AOF at load, a replica's link): its
    /// commands run at time 0, so no key expires on its own; the stream's DELs remove them.
    pub(crate) replay: bool,
    /// CLIENT REPLY, NO-EVICT, MONITOR, TRACKING and the query buffer figures of CLIENT LIST.
    pub(crate) conn: client::ConnState,
    /// The client's ACL user, as of the last change it saw.
    pub(crate) acl: crate::acl::ClientAcl,
    /// For a script's client: the connection that runs the script (whose user its commands
    /// are checked as, and which the ACL log names).
    pub(crate) acl_caller: Option<std::sync::Arc<crate::server::ClientHandle>>,
}

/// The id of the client a script's commands run as (no connection has it: ids count up
/// from 1).
pub(crate) const SCRIPT_CLIENT_ID: u64 = u64::MAX;

impl Client {
    /// Returns true if and only if this is the client a script's commands run as.
    pub(crate) fn is_script(&self) -> bool {
        self.id == SCRIPT_CLIENT_ID
    }
}

/// What a handler works with.
pub(crate) struct Ctx<'a> {
    pub(crate) server: &'a Server,
    pub(crate) client: &'a mut Client,
    pub(crate) out: &'a mut Out,
    /// The time this command runs at, in ms since the Unix epoch (one reading per command).
    pub(crate) now_ms: u64,
    /// The running command's declared key positions (its table row's `keys`).
    pub(crate) keys: KeySpec,
    /// The command's effect, when its argv would not replay deterministically (see
    /// `crate::effects`).
    /// Several commands when one is not enough (XREADGROUP: an XCLAIM per delivered entry and
    /// the group's position).
    effect: Option<Vec<Vec<Bytes>>>,
    /// Set by a handler whose error reply was counted already (a script's error that came
    /// from a command the script ran): dispatch then counts only the command's
    /// `failed_calls`, as Redis's `ERR_REPLY_FLAG_NO_STATS_UPDATE`.
    pub(crate) error_counted: bool,
}

impl<'a> Ctx<'a> {
    /// The command's key arguments, at the positions its table row declares, in order: what
    /// a multi-key handler locks with `Db::read`/`Db::write`.
    pub(crate) fn key_args<'v>(&self, argv: &'v [Bytes]) -> Vec<&'v [u8]> {
        self.keys.keys(argv).collect()
    }

    /// The selected database, borrowed from the server rather than from the context, so that
    /// a guard on it may stay alive while the reply is written into `out`.
    pub(crate) fn db(&self) -> &'a Db {
        let server: &'a Server = self.server;
        server.db(self.client.db)
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

    /// Counts a read that found `key` missing, and publishes the `keymiss` keyspace event
    /// (class `m`), as Redis's `lookupKeyRead` does.
    pub(crate) fn miss(&self, key: &[u8]) {
        self.server
            .stats
            .keyspace_misses
            .fetch_add(1, Ordering::Relaxed);
        crate::notify::notify(self, crate::notify::KEY_MISS, "keymiss", key);
    }

    /// Returns true if and only if this command's unit took an effect number (a consumer is
    /// attached, and it changed something or removed an expired key), so its effect will be
    /// published and a rewrite is worth building.
    fn effect_recorded(&self) -> bool {
        forkless_storage::effect::unit_open()
    }

    /// States the command's effect: what a log or a replica must run to make the same change,
    /// when the argv itself would not (a relative expiry, a random pick, a blocking form).
    /// `build` runs only when the effect will be published; the effect is used only if the
    /// command changed something.
    pub(crate) fn rewrite_effect(&mut self, build: impl FnOnce() -> Vec<Bytes>) {
        if self.effect_recorded() {
            self.effect = Some(vec![build()]);
        }
    }

    /// [`Ctx::rewrite_effect`] for a change that takes several commands to replay, run in
    /// order as one unit.
    pub(crate) fn rewrite_effects(&mut self, build: impl FnOnce() -> Vec<Vec<Bytes>>) {
        if self.effect_recorded() {
            self.effect = Some(build());
        }
    }

    /// Counts a hit or a miss of `key` depending on `found`.
    pub(crate) fn hit_or_miss(&self, found: bool, key: &[u8]) {
        if found { self.hit() } else { self.miss(key) }
    }
}

/// Runs one command and writes its reply (none under CLIENT REPLY OFF or SKIP).
pub(crate) fn execute(server: &Server, client: &mut Client, out: &mut Out, argv: &[Bytes]) {
    let reply_start = out.len();
    execute_checked(server, client, out, argv);
    if server.tracking.active() {
        tracking::broadcast(server);
    }
    if client::reply_altered(client) {
        // Subscription confirmations are pushes in Redis whatever the protocol, and pushes go
        // through CLIENT REPLY OFF/SKIP: a (un)subscribe command's replies stay.
        let pushes = argv
            .first()
            .and_then(|name| lookup(name))
            .is_some_and(|(_, command)| {
                command.has_flag(Flags::PUBSUB.union(Flags::IN_SUBSCRIBED_MODE))
            });
        if !pushes {
            client::after_command(client, out, reply_start);
        } else {
            client::after_command(client, out, out.len());
        }
    }
}

fn execute_checked(server: &Server, client: &mut Client, out: &mut Out, argv: &[Bytes]) {
    let Some(name) = argv.first() else { return };
    let Some((idx, command)) = lookup(name) else {
        client.handle.last_command.store(0, Ordering::Relaxed);
        let reply_start = out.len();
        out.error(&unknown_command(argv));
        count_error_reply(server, out, reply_start);
        transaction::flag_error(client);
        return;
    };
    remember_command(client, idx, argv);
    let stats = server.command_stats.get(idx);
    if let Some(refusal) = refusal(server, client, out.version, idx, command, argv) {
        let reply_start = out.len();
        if is_exec(command) {
            // Redis's `rejectCommand` aborts the transaction when EXEC itself is refused.
            transaction::discard_all(server, client);
            out.error(&format!(
                "EXECABORT Transaction discarded because of: {refusal}"
            ));
        } else {
            out.error(&refusal.to_string());
            transaction::flag_error(client);
        }
        reject(server, stats, out, reply_start);
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
            let reply_start = out.len();
            // EXEC (the command that runs inside MULTI and takes the gate itself) refused:
            // the transaction is aborted, as in Redis.
            if is_exec(command) && client.multi.is_some() {
                transaction::discard_all(server, client);
                out.error(&format!(
                    "EXECABORT Transaction discarded because of: {error}"
                ));
            } else {
                out.error(error);
                transaction::flag_error(client);
            }
            reject(server, stats, out, reply_start);
            return;
        }
    };
    if server.tunables.maxmemory.load(Ordering::Relaxed) != 0
        && !client.replay
        && evict_before(server, client, out, command, _gate.is_some())
    {
        let reply_start = out.len();
        out.error(crate::evict::OOM);
        reject(server, stats, out, reply_start);
        transaction::flag_error(client);
        return;
    }
    if transaction::queue(client, out, command, argv) {
        return;
    }
    dispatch(server, client, out, idx, command, argv);
}

/// Runs `finish`, the second half of a command whose handler left network I/O to its
/// connection (MIGRATE), as a command of its own for locking and effects: under the command
/// gate, shared, its effect published as one unit. The command's call, its duration (without
/// the I/O) and a refusal were counted when its handler ran; an error reply here counts as a
/// failed call.
pub(crate) fn resume(
    server: &Server,
    client: &mut Client,
    out: &mut Out,
    argv: &[Bytes],
    finish: impl FnOnce(&mut Ctx<'_>),
) {
    let Some((idx, command)) = argv.first().and_then(|name| lookup(name)) else {
        return;
    };
    let reply_start = out.len();
    let _gate = match crate::scripting::admit(server, command, argv) {
        crate::scripting::Admission::Run(gate) => gate,
        crate::scripting::Admission::Refuse(error) => {
            out.error(error);
            None
        }
    };
    if out.len() == reply_start {
        let now_ms = crate::server::unix_us() / 1000;
        let db = client.db;
        let mut ctx = Ctx {
            server,
            client,
            out,
            now_ms,
            keys: command.keys,
            effect: None,
            error_counted: false,
        };
        finish(&mut ctx);
        let rewrite = ctx.effect.take();
        remove_expired_reads(server, client, now_ms);
        crate::effects::after_command(server, client, db, argv, rewrite);
    }
    if server.tracking.active() {
        tracking::broadcast(server);
    }
    if out.buf.get(reply_start) == Some(&b'-') {
        count_error_reply(server, out, reply_start);
        if let Some(stats) = server.command_stats.get(idx) {
            stats.failed_calls.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Returns true if and only if `command` is EXEC: the command that runs inside MULTI and takes
/// the gate itself.
fn is_exec(command: &Command) -> bool {
    command.gate == Gate::Exclusive && command.has_flag(Flags::RUNS_IN_MULTI)
}

/// Records the command at `idx` (and, for a container, the subcommand `argv[1]` names) as the
/// client's last command, for CLIENT LIST. As in Redis, it is recorded once the command is
/// looked up, before any check, so a refused command counts too; an unknown subcommand
/// records none (`cmd=NULL`), as an unknown command does.
fn remember_command(client: &Client, idx: usize, argv: &[Bytes]) {
    let packed = match (argv.first(), argv.get(1)) {
        (Some(container), Some(sub)) if TABLE.is_container.get(idx).copied().unwrap_or(false) => {
            subcommands::subcommand_index(container, sub)
                .map_or(0, |sub| pack_last_command(idx, Some(sub)))
        }
        _ => pack_last_command(idx, None),
    };
    client.handle.last_command.store(packed, Ordering::Relaxed);
}

/// Packs a command's table index and an optional subcommand index for
/// `ClientHandle::last_command`: each plus one, the command in the low 16 bits.
fn pack_last_command(idx: usize, sub: Option<usize>) -> u32 {
    let plus_one = |idx: usize| u32::try_from(idx + 1).unwrap_or(0) & 0xffff;
    plus_one(idx) | sub.map_or(0, |sub| plus_one(sub) << 16)
}

/// The full name (`get`, `config|get`) of a command packed by [`pack_last_command`], or None
/// before the first command.
pub(crate) fn last_command_name(packed: u32) -> Option<&'static str> {
    let idx = usize::try_from(packed & 0xffff).ok()?.checked_sub(1)?;
    let sub = usize::try_from(packed >> 16).ok()?.checked_sub(1);
    match sub {
        Some(sub) => subcommands::SUBCOMMANDS.get(sub).map(|sub| sub.name),
        None => TABLE.commands.get(idx).map(|command| command.name),
    }
}

/// Why `command` (at `idx` in the table) may not run now, or None if it may. The checks come
/// in Redis's order (`processCommand`): arity, authentication, MULTI, ACL, then the rest.
fn refusal(
    server: &Server,
    client: &mut Client,
    version: RespVersion,
    idx: usize,
    command: &'static Command,
    argv: &[Bytes],
) -> Option<Refusal> {
    let argc = i32::try_from(argv.len()).unwrap_or(i32::MAX);
    if (command.arity > 0 && argc != command.arity) || (command.arity < 0 && argc < -command.arity)
    {
        return Some(Refusal::WrongArity {
            command: command.name,
        });
    }
    if command.has_flag(Flags::PROTECTED) && !debug::allowed_for(server, client) {
        return Some(Refusal::DebugNotAllowed);
    }
    if command.has_flag(Flags::PROTECTED_SUBCOMMANDS)
        && let (Some(name), Some(sub)) = (argv.first(), argv.get(1))
        && let Some(sub) = subcommands::find_subcommand(name, sub)
        && sub.flags.contains(Flags::PROTECTED)
        && subcommands::arity_ok(sub.arity, argv.len())
        && !module::allowed_for(server, client)
    {
        return Some(Refusal::ModuleNotAllowed);
    }
    if !client.authenticated
        && !command.has_flag(Flags::NO_AUTH)
        && server
            .tunables
            .default_auth_required
            .load(Ordering::Relaxed)
    {
        return Some(Refusal::NoAuth);
    }
    if client.multi.is_some() && command.has_flag(Flags::NO_MULTI) {
        return Some(Refusal::NotInMulti);
    }
    let context = if client.multi.is_some() {
        crate::acl::Context::Multi
    } else {
        crate::acl::Context::Toplevel
    };
    if let Err((denied, id)) = crate::acl::check(server, client, idx, argv, context) {
        return Some(match denied {
            crate::acl::Denied::Command => Refusal::NoPermCommand {
                command: crate::acl::catalog::CATALOG
                    .get(id)
                    .map_or(command.name, |entry| entry.name),
            },
            crate::acl::Denied::Key(_) => Refusal::NoPermKey,
            crate::acl::Denied::Channel(_) => Refusal::NoPermChannel,
        });
    }
    // A replica's own clients: READONLY for writes, then MASTERDOWN with the link down and
    // stale data refused (Redis's processCommand order). The master client and the AOF's are obeyed.
    if let Some(reply) = crate::replication::replica::refusal(server, command, argv, client.replay)
    {
        return Some(Refusal::Replica(reply));
    }
    if client.subs.active()
        && version == RespVersion::Resp2
        && !command.has_flag(Flags::IN_SUBSCRIBED_MODE)
    {
        return Some(Refusal::SubscribedMode {
            command: command.name,
        });
    }
    // The AOF's replay client runs while the server loads: that is how it loads.
    if !command.has_flag(Flags::LOADING) && !client.replay && server.persistence.loading() {
        return Some(Refusal::Loading);
    }
    // The master client is obeyed whatever the disk does, as Redis's (a replica that refused
    // its primary's writes would silently diverge from it).
    if command
        .flags
        .intersects(Flags::WRITE.union(Flags::REFUSED_ON_MISCONF))
        && !client.replay
        && crate::persistence::writes_refused(server)
    {
        return Some(Refusal::Misconf);
    }
    if command
        .flags
        .intersects(Flags::WRITE.union(Flags::REFUSED_ON_MISCONF))
        && let Some(errno) = server.aof.write_errno()
    {
        return Some(Refusal::MisconfAof { errno });
    }
    // A script that declares its flags writes unless it declares no-writes (Redis's
    // getCommandFlags); the check runs only when min-replicas-to-write refuses writes.
    if crate::replication::primary::writes_refused(server)
        && crate::scripting::declared_flags(server, command, argv)
            .map_or(command.has_flag(Flags::WRITE), |flags| !flags.no_writes)
    {
        return Some(Refusal::NoReplicas);
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
    // (commandstats). A pipelined command starts when the one before it ended
    // (`crate::server::chain_clock`): one clock read per command.
    let started_us = crate::server::command_start_us();
    let now_ms = if client.replay { 0 } else { started_us / 1000 };
    let db = client.db;
    debug_assert!(
        client.in_exec || !forkless_storage::effect::unit_open(),
        "an effect unit left open by an earlier command"
    );
    let mut ctx = Ctx {
        server,
        client,
        out,
        now_ms,
        keys: command.keys,
        effect: None,
        error_counted: false,
    };
    (command.handler)(&mut ctx, argv);
    let rewrite = ctx.effect.take();
    let error_counted = ctx.error_counted;
    remove_expired_reads(server, client, now_ms);
    crate::effects::after_command(server, client, db, argv, rewrite);
    if !client.replay {
        crate::replication::replica::local_expire::remember_keys(server, db, command, argv);
    }
    // A command that blocked changed nothing: signalling its keys would wake itself.
    if command.has_flag(Flags::WRITE) && client.blocked.is_none() && server.blocking.has_waiters() {
        for key in command.keys.keys(argv) {
            server.blocking.signal(client.db, key);
        }
    }
    // Wall clock: a step back (NTP) reads as 0 µs rather than wrapping.
    let usec = crate::server::command_end_us().saturating_sub(started_us);
    observe(server, client, idx, command, argv, started_us, usec);
    if server.tracking.active() {
        tracking::after_command(server, client, command, argv);
    }
    // A blocked command is counted as a call once, when it first runs (as Redis's call()
    // does); its retries after a wake-up add their time and their errors, not calls.
    let first_run = !client.block_retry;
    if first_run {
        server
            .stats
            .total_commands_processed
            .fetch_add(1, Ordering::Relaxed);
    }
    let failed = out.buf.get(reply_start) == Some(&b'-');
    if failed && !error_counted {
        count_error_reply(server, out, reply_start);
    }
    if let Some(stats) = stats {
        if first_run {
            stats.calls.fetch_add(1, Ordering::Relaxed);
        }
        stats.usec.fetch_add(usec, Ordering::Relaxed);
        if failed {
            stats.failed_calls.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Removes the keys the command's reads found expired, as Redis's lazy expiry on a read
/// removes them (a read guard cannot): through a write guard, so they count in
/// `expired_keys`, fire `expired` events, reach the effect stream as DELs in the command's
/// unit, and invalidate their trackers. Not while CLIENT PAUSE holds writes back (Redis
/// expires nothing then), nor on a replica, nor for a replay client (its clock is 0).
fn remove_expired_reads(server: &Server, client: &Client, now_ms: u64) {
    let expired = forkless_storage::take_expired_reads();
    // A replica removes nothing itself: it waits for its primary's DEL (as Redis's replicas).
    if expired.is_empty()
        || client.replay
        || server.pause.holds_writes()
        || server.replication.replica.is_replica()
    {
        return;
    }
    for (db_idx, key) in &expired {
        let mut guard = server.db(*db_idx).write(&[key], now_ms);
        let _ = guard.get(key);
    }
    if server.tracking.active() {
        let keys: Vec<&[u8]> = expired.iter().map(|(_, key)| &key[..]).collect();
        // By no client: NOLOOP hides none of them (as for the active expiry cycle).
        tracking::invalidate(server, 0, &keys);
    }
}

/// What the introspection commands see of a command that ran: its latency histogram, the
/// latency monitor, the slow log and MONITOR. Without a monitor attached and under the
/// thresholds this is one histogram increment and three relaxed loads.
fn observe(
    server: &Server,
    client: &Client,
    idx: usize,
    command: &Command,
    argv: &[Bytes],
    started_us: u64,
    usec: u64,
) {
    // A command that blocked has not run yet: it is counted when it is served.
    if client.blocked.is_some() {
        return;
    }
    let container = TABLE.is_container.get(idx).copied().unwrap_or(false);
    if let Some(slot) = latency::histogram_slot(idx, container, argv) {
        server.latency.record_command(slot, usec);
    }
    server
        .latency
        .add_sample_if_needed(&server.tunables, latency::event_of(command), usec / 1000);
    if slowlog::is_slow(server, usec) {
        slowlog::record(server, client, command, argv, started_us, usec);
    }
    if server.monitors.active() {
        // A container's subcommand carries the flags (CONFIG GET is an admin command).
        let flags = match (container, argv.first(), argv.get(1)) {
            (true, Some(name), Some(sub)) => {
                subcommands::find_subcommand(name, sub).map_or(command.flags, |sub| sub.flags)
            }
            _ => command.flags,
        };
        monitor::feed(server, client, flags, argv, started_us);
    }
}

/// The maxmemory step before a command (`evict::refuse_for_memory`); returns true if and only
/// if the command must be refused. What the evictions sent this very client (the tracking
/// invalidation of an evicted key it read) goes out before the command's reply, as Redis
/// writes it into the client's buffer when it evicts.
fn evict_before(
    server: &Server,
    client: &mut Client,
    out: &mut Out,
    command: &Command,
    gate_held: bool,
) -> bool {
    let refuse = crate::evict::refuse_for_memory(server, client, command, gate_held);
    if !client.is_script() {
        while let Ok(bytes) = client.conn.pushes.try_recv() {
            out.buf.extend_from_slice(&bytes);
        }
    }
    refuse
}

/// Counts a command refused before it ran, whose error reply starts at `reply_start` in
/// `out`: the error (total and by code) and the command's `rejected_calls`.
fn reject(
    server: &Server,
    stats: Option<&crate::server::CommandStats>,
    out: &Out,
    reply_start: usize,
) {
    count_error_reply(server, out, reply_start);
    if let Some(stats) = stats {
        stats.rejected_calls.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts CLIENT UNBLOCK ERROR's reply to the blocked command `argv`: the error, and the
/// command's `failed_calls` (as Redis's `updateStatsOnUnblock`).
pub(crate) fn count_unblocked_error(
    server: &Server,
    out: &Out,
    reply_start: usize,
    argv: &[Bytes],
) {
    count_error_reply(server, out, reply_start);
    let stats = argv
        .first()
        .and_then(|name| lookup(name))
        .and_then(|(idx, _)| server.command_stats.get(idx));
    if let Some(stats) = stats {
        stats.failed_calls.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts the error reply that starts at `reply_start` in `out` (INFO's
/// `total_error_replies` and errorstats).
pub(crate) fn count_error_reply(server: &Server, out: &Out, reply_start: usize) {
    let reply = out.buf.get(reply_start..).unwrap_or_default();
    server.stats.count_error(reply);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_command_packs_a_command_and_a_subcommand() {
        let (get, _) = lookup(b"GET").expect("get");
        assert_eq!(last_command_name(pack_last_command(get, None)), Some("get"));
        let (config, _) = lookup(b"config").expect("config");
        let sub = subcommands::subcommand_index(b"CONFIG", b"get").expect("config|get");
        assert_eq!(
            last_command_name(pack_last_command(config, Some(sub))),
            Some("config|get")
        );
        assert_eq!(last_command_name(0), None);
        assert!(TABLE.is_container.get(config).copied().unwrap_or(false));
        assert!(!TABLE.is_container.get(get).copied().unwrap_or(true));
    }

    #[test]
    fn dispatch_traits_are_flags_not_names() {
        let flags_of = |name: &[u8]| lookup(name).map(|(_, command)| command.flags);
        let exec = lookup(b"exec").map(|(_, command)| command.gate);
        assert_eq!(exec, Some(Gate::Exclusive));
        assert_eq!(lookup(b"get").map(|(_, c)| c.gate), Some(Gate::Shared));
        for name in [
            &b"exec"[..],
            b"discard",
            b"multi",
            b"watch",
            b"unwatch",
            b"quit",
            b"reset",
        ] {
            assert!(flags_of(name).is_some_and(|f| f.contains(Flags::RUNS_IN_MULTI)));
        }
        assert!(!flags_of(b"get").is_some_and(|f| f.contains(Flags::RUNS_IN_MULTI)));
        assert!(flags_of(b"ping").is_some_and(|f| f.contains(Flags::REFUSED_ON_MISCONF)));
        assert!(flags_of(b"ping").is_some_and(|f| f.contains(Flags::IN_SUBSCRIBED_MODE)));
        assert!(!flags_of(b"echo").is_some_and(|f| f.contains(Flags::IN_SUBSCRIBED_MODE)));
    }
}
