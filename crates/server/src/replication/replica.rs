//! forkless as a replica: REPLICAOF / SLAVEOF, the state of the link to the primary, what
//! INFO and ROLE show of it, and the refusals a replica gives its own clients (READONLY,
//! MASTERDOWN).
//!
//! ```text
//! REPLICAOF host port ─► Replica::follow ─► tokio task link::run (one per master, generation)
//!   connect ─► handshake (PING, AUTH, REPLCONF listening-port, REPLCONF capa eof capa psync2,
//!   PSYNC <replid> <offset+1> | PSYNC ? -1)
//!     +FULLRESYNC ─► transfer.rs: $<len> or $EOF:<mark> framing ─► forkless-repl-load thread:
//!                    temp file then load, straight from the socket (on-empty-db), or into a
//!                    sibling keyspace swapped in at the end (swapdb)
//!                    ─► Replication::reset_after_full_sync
//!     +CONTINUE   ─► keep the dataset and the offset (Replication::shift_replid_to on a new ID)
//!   ─► the stream: each command through cmd::execute as the master client (replay: exempt
//!      from LOADING, READONLY and expiry by time), its bytes fed verbatim to
//!      Replication::feed_from_master (offset, backlog, this server's own replicas);
//!      REPLCONF GETACK answered, REPLCONF ACK every second
//!   on any failure: log, link down, reconnect after a backoff (link.rs)
//! ```

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;

use crate::cmd::meta::{Flags, KeySpec};
use crate::cmd::{Command, Ctx, eq_ignore_case};
use crate::server::{Server, lock, unix_ms};

pub(crate) mod link;
pub(crate) mod local_expire;
pub(crate) mod transfer;

/// Redis 7.0's replies to a client of a replica.
pub(crate) const READONLY: &str = "READONLY You can't write against a read only replica.";
pub(crate) const MASTERDOWN: &str =
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.";

/// Where the link to the primary is (Redis's `repl_state`, without the handshake's sub-steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum LinkState {
    /// Not a replica.
    None = 0,
    /// Waiting to connect (first attempt, or after a failure).
    Connect = 1,
    /// The TCP connection is being made.
    Connecting = 2,
    /// PING, AUTH, REPLCONF, PSYNC.
    Handshake = 3,
    /// Receiving (and loading) the primary's RDB.
    Transfer = 4,
    /// Applying the primary's stream.
    Connected = 5,
}

impl LinkState {
    fn from_u8(value: u8) -> LinkState {
        match value {
            1 => LinkState::Connect,
            2 => LinkState::Connecting,
            3 => LinkState::Handshake,
            4 => LinkState::Transfer,
            5 => LinkState::Connected,
            _ => LinkState::None,
        }
    }

    /// ROLE's word for the state.
    fn role_name(self) -> &'static str {
        match self {
            LinkState::None => "none",
            LinkState::Connect => "connect",
            LinkState::Connecting => "connecting",
            LinkState::Handshake => "handshake",
            LinkState::Transfer => "sync",
            LinkState::Connected => "connected",
        }
    }
}

/// The primary this server follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MasterAddr {
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// The running link task of one REPLICAOF.
#[derive(Debug)]
struct Following {
    master: MasterAddr,
    /// Set to stop the link: the task and a loader thread check it.
    cancel: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The replica side's state. Hot-path readers (the READONLY and MASTERDOWN refusals, INFO)
/// use the atomics; the mutex holds the master's address and the link task, taken by
/// REPLICAOF, INFO and ROLE only, never across an await.
#[derive(Debug, Default)]
pub(crate) struct Replica {
    following: Mutex<Option<Following>>,
    /// True if and only if this server is a replica (REPLICAOF host port in effect).
    is_replica: AtomicBool,
    state: AtomicU8,
    /// True when the link may resume with PSYNC <replid> <offset+1>: the dataset is the
    /// primary's up to `Replication::offset` (a sync completed, or this server was a primary
    /// itself: Redis's cached master). False after a failed load emptied the dataset.
    pub(crate) psync_possible: AtomicBool,
    /// `slave_read_repl_offset`: the offset up to which the stream has been read.
    pub(crate) read_offset: AtomicI64,
    /// Unix seconds of the last byte from the primary (`master_last_io_seconds_ago`).
    pub(crate) last_io_secs: AtomicU64,
    /// Unix seconds the link went down; 0 when it never was up (INFO prints -1).
    pub(crate) down_since_secs: AtomicU64,
    /// The RDB transfer: its size (-1 with EOF framing, where it is unknown), bytes read.
    pub(crate) transfer_size: AtomicI64,
    pub(crate) transfer_read: AtomicU64,
    pub(crate) transfer_last_io_secs: AtomicU64,
    /// A dual-channel sync: the stream bytes read on the second connection and held until
    /// the RDB has loaded (INFO `replica_buffered_stream_bytes`), and the most the last such
    /// sync held (`replica_buffered_stream_peak_bytes`).
    pub(crate) stream_buffered: AtomicU64,
    pub(crate) stream_buffered_peak: AtomicU64,
    /// Dual-channel syncs that completed (`replica_dual_channel_syncs`).
    pub(crate) dual_syncs: AtomicU64,
    /// The master client's id while the link is up, for CLIENT KILL TYPE master; 0 for none.
    pub(crate) master_client_id: AtomicU64,
    /// The database the master client has selected: kept across a dropped link, since the
    /// primary's stream goes on after a PSYNC without a new SELECT (Redis keeps the cached
    /// master client, and its db, for the same reason).
    pub(crate) master_db: AtomicUsize,
    /// True while a `swapdb` sync loads beside the served data (INFO `async_loading`; the
    /// commands flagged `no_async_loading` get LOADING meanwhile, as in Redis).
    pub(crate) async_loading: AtomicBool,
    /// Keys this writable replica's own clients gave a TTL (`local_expire.rs`).
    pub(crate) local_expires: local_expire::LocalExpires,
}

impl Replica {
    /// Returns true if and only if this server is a replica.
    pub(crate) fn is_replica(&self) -> bool {
        self.is_replica.load(Ordering::Acquire)
    }

    pub(crate) fn state(&self) -> LinkState {
        LinkState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_state(&self, state: LinkState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// The primary, when this server is a replica.
    pub(crate) fn master(&self) -> Option<MasterAddr> {
        lock(&self.following).as_ref().map(|f| f.master.clone())
    }

    /// Returns true if and only if `cancel` is the current link's flag and it is not set:
    /// the link task still owns the replica state.
    pub(crate) fn is_current(&self, cancel: &Arc<AtomicBool>) -> bool {
        !cancel.load(Ordering::Acquire)
            && lock(&self.following)
                .as_ref()
                .is_some_and(|f| Arc::ptr_eq(&f.cancel, cancel))
    }

    /// Marks the link down (after it was up, or an attempt failed). Only a link that was up
    /// starts `master_link_down_since_seconds`; before that it stays -1 ("down since ever"),
    /// as Redis's `repl_down_since`.
    pub(crate) fn link_down(&self) {
        if self.state() == LinkState::Connected {
            self.down_since_secs
                .store(unix_ms() / 1000, Ordering::Relaxed);
        }
        self.master_client_id.store(0, Ordering::Release);
        self.set_state(LinkState::Connect);
    }

    fn stop_link(following: &mut Option<Following>) {
        if let Some(mut old) = following.take() {
            old.cancel.store(true, Ordering::Release);
            if let Some(task) = old.task.take() {
                task.abort();
            }
        }
    }
}

/// Starts following `master` (REPLICAOF host port), replacing any link to another primary.
pub(crate) fn follow(server: &Arc<Server>, master: MasterAddr) {
    let replica = &server.replication.replica;
    let was_master = !replica.is_replica();
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let mut following = lock(&replica.following);
        Replica::stop_link(&mut following);
        // Clients blocked on keys here will be served by the master's writes, if at all.
        crate::cmd::client::disconnect_blocked(server);
        if was_master {
            // Redis's replicationCacheMasterUsingMyself: our own history may continue with
            // the new primary's (it was our replica, or shares our ID after a failover).
            replica.psync_possible.store(true, Ordering::Release);
        }
        replica.is_replica.store(true, Ordering::Release);
        server.replication.set_role_replica();
        replica.set_state(LinkState::Connect);
        replica.master_client_id.store(0, Ordering::Release);
        let task = tokio::spawn(link::run(
            Arc::clone(server),
            master.clone(),
            Arc::clone(&cancel),
        ));
        *following = Some(Following {
            master,
            cancel,
            task: Some(task),
        });
    }
}

/// REPLICAOF NO ONE: the link stops and this server becomes a primary with a new history
/// (Redis's `replicationUnsetMaster`).
pub(crate) fn unfollow(server: &Server) {
    let replica = &server.replication.replica;
    {
        let mut following = lock(&replica.following);
        if following.is_none() {
            return;
        }
        Replica::stop_link(&mut following);
        replica.is_replica.store(false, Ordering::Release);
        replica.set_state(LinkState::None);
        replica.master_client_id.store(0, Ordering::Release);
        replica.down_since_secs.store(0, Ordering::Relaxed);
    }
    // A primary expires every key itself.
    replica.local_expires.clear();
    // The data so far stays; the offset continues in a new history, and the old ID stays
    // valid for the siblings' PSYNC up to here. Writes flow from the effect stream again, and
    // this server's own replicas reconnect to learn the new ID (Redis's disconnectSlaves).
    server.replication.shift_replid();
    server.replication.set_role_master();
    server.replication.disconnect_replicas();
}

/// FAILOVER's switch to following its target (Redis's `replicationSetMaster`): as REPLICAOF
/// host port, the live `replicaof` included.
pub(crate) fn become_replica_of(server: &Arc<Server>, master: &MasterAddr) {
    follow(server, master.clone());
    set_config_master(server, Some(master));
}

/// A master again, as REPLICAOF NO ONE (Redis's `replicationUnsetMaster`): after a failed
/// FAILOVER, or on a replica that receives `PSYNC ... FAILOVER`.
pub(crate) fn become_master(server: &Server) {
    unfollow(server);
    set_config_master(server, None);
}

/// Why a normal client's command is refused on a replica, or None (Redis's processCommand:
/// READONLY for a write, then MASTERDOWN while the link is down with
/// `replica-serve-stale-data no`, for commands without the `stale` flag). The master client
/// and the AOF's replay client (`replay`) are obeyed and never refused.
pub(crate) fn refusal(
    server: &Server,
    command: &Command,
    argv: &[Bytes],
    replay: bool,
) -> Option<&'static str> {
    let replica = &server.replication.replica;
    if replay || !replica.is_replica() {
        return None;
    }
    // A container's subcommand carries the flags (CONFIG SET is `stale`, CONFIG is not).
    let command_flags = match (argv.first(), argv.get(1)) {
        (Some(name), Some(sub)) => crate::cmd::subcommands::find_subcommand(name, sub)
            .map_or(command.flags, |sub| sub.flags),
        _ => command.flags,
    };
    if command_flags.contains(Flags::WRITE)
        && server.tunables.replica_read_only.load(Ordering::Relaxed)
    {
        return Some(READONLY);
    }
    if replica.state() != LinkState::Connected
        && !server
            .tunables
            .replica_serve_stale_data
            .load(Ordering::Relaxed)
        && !command_flags.contains(Flags::STALE)
    {
        return Some(MASTERDOWN);
    }
    if command_flags.contains(Flags::NO_ASYNC_LOADING)
        && replica.async_loading.load(Ordering::Relaxed)
    {
        return Some(crate::persistence::LOADING);
    }
    None
}

/// Returns true if and only if a script's writes are refused: this server is a read-only
/// replica (Redis's scriptVerifyWriteCommandAllow and scriptPrepareForRun). Scripts run by a
/// normal client only: a primary sends its scripts' effects, never EVAL.
pub(crate) fn script_writes_refused(server: &Server) -> bool {
    server.replication.replica.is_replica()
        && server.tunables.replica_read_only.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// Commands.

const fn row(name: &'static str, handler: crate::cmd::Handler) -> Command {
    Command {
        name,
        arity: 3,
        flags: Flags::ADMIN
            .union(Flags::NOSCRIPT)
            .union(Flags::STALE)
            .union(Flags::NO_ASYNC_LOADING),
        keys: KeySpec::NONE,
        gate: crate::cmd::meta::Gate::Shared,
        categories: &["admin", "slow", "dangerous"],
        summary: "Configure a Redis server as replica of another, or promote it as a master.",
        since: "5.0.0",
        group: "server",
        handler,
    }
}

/// REPLICAOF and SLAVEOF (ROLE is in `commands.rs`, which asks [`role_replica`]).
pub(crate) static COMMANDS: &[Command] = &[
    row("replicaof", replicaof),
    Command {
        summary: "Sets a Redis server as a replica of another, or promotes it to being a master.",
        since: "1.0.0",
        ..row("slaveof", replicaof)
    },
];

fn replicaof(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, host, port] = argv else {
        return;
    };
    let Some(server) = ctx.server.arc() else {
        return;
    };
    if server.replication.failover.active() {
        ctx.out
            .error("ERR REPLICAOF not allowed while failing over.");
        return;
    }
    if eq_ignore_case(host, "no") && eq_ignore_case(port, "one") {
        if server.replication.replica.is_replica() {
            unfollow(&server);
            set_config_master(&server, None);
            tracing::info!(
                "MASTER MODE enabled (user request from 'id={}')",
                ctx.client.id
            );
        }
        ctx.out.ok();
        return;
    }
    if server.replication.is_replica(ctx.client.id) {
        // It would be dropped with every replica when this server follows its master.
        ctx.out
            .error("ERR Command is not valid when client is a replica.");
        return;
    }
    let Some(port) = crate::cmd::parse_i64(port).and_then(|port| u16::try_from(port).ok()) else {
        ctx.out.error("ERR Invalid master port");
        return;
    };
    let host = String::from_utf8_lossy(host).into_owned();
    if server
        .replication
        .replica
        .master()
        .is_some_and(|master| master.host.eq_ignore_ascii_case(&host) && master.port == port)
    {
        tracing::info!(
            "REPLICAOF would result into synchronization with the master we are already \
             connected with. No operation performed."
        );
        ctx.out.simple(b"OK Already connected to specified master");
        return;
    }
    let master = MasterAddr { host, port };
    follow(&server, master.clone());
    set_config_master(&server, Some(&master));
    tracing::info!(
        "REPLICAOF {}:{} enabled (user request from 'id={}')",
        master.host,
        master.port,
        ctx.client.id
    );
    ctx.out.ok();
}

/// Keeps `replicaof` in the live configuration in step (CONFIG GET / REWRITE show it).
fn set_config_master(server: &Server, master: Option<&MasterAddr>) {
    let mut config = server.config_mut();
    match master {
        Some(master) => {
            config.stored.insert(
                "replicaof",
                format!("{} {}", master.host, master.port).into_bytes(),
            );
        }
        None => {
            config.stored.remove("replicaof");
        }
    }
}

/// ROLE's replica form, `slave host port state offset`; false (nothing written) on a
/// primary, which answers the master form.
pub(crate) fn role_replica(ctx: &mut Ctx<'_>) -> bool {
    let replica = &ctx.server.replication.replica;
    let Some(master) = replica.master().filter(|_| replica.is_replica()) else {
        return false;
    };
    ctx.out.array_len(5);
    ctx.out.bulk(b"slave");
    ctx.out.bulk(master.host.as_bytes());
    ctx.out.int(i64::from(master.port));
    ctx.out.bulk(replica.state().role_name().as_bytes());
    let offset = if replica.state() == LinkState::Connected {
        i64::try_from(ctx.server.replication.offset()).unwrap_or(i64::MAX)
    } else {
        -1
    };
    ctx.out.int(offset);
    true
}

// ---------------------------------------------------------------------------------------------
// INFO.

/// INFO replication's replica fields, from `master_host` to `replica_announced`, as Redis
/// 7.0 prints them between `role:slave` and `connected_slaves`. Empty on a primary.
pub(crate) fn info_fields(server: &Server, text: &mut String) {
    use std::fmt::Write as _;

    let replica = &server.replication.replica;
    let Some(master) = replica.master().filter(|_| replica.is_replica()) else {
        return;
    };
    let now = unix_ms() / 1000;
    let since = |secs: u64| i64::try_from(now.saturating_sub(secs)).unwrap_or(i64::MAX);
    let state = replica.state();
    let connected = state == LinkState::Connected;
    let applied = i64::try_from(server.replication.offset()).unwrap_or(i64::MAX);
    let read = replica.read_offset.load(Ordering::Relaxed).max(applied);
    let last_io = if connected {
        since(replica.last_io_secs.load(Ordering::Relaxed))
    } else {
        -1
    };
    let _ = write!(
        text,
        "master_host:{}\r\nmaster_port:{}\r\nmaster_link_status:{}\r\n\
         master_last_io_seconds_ago:{last_io}\r\nmaster_sync_in_progress:{}\r\n\
         slave_read_repl_offset:{read}\r\nslave_repl_offset:{applied}\r\n",
        master.host,
        master.port,
        if connected { "up" } else { "down" },
        u8::from(state == LinkState::Transfer),
    );
    if state == LinkState::Transfer {
        let size = replica.transfer_size.load(Ordering::Relaxed);
        let done = i64::try_from(replica.transfer_read.load(Ordering::Relaxed)).unwrap_or(0);
        // Redis counts an unknown size (EOF framing) as 0.
        let size = size.max(0);
        #[expect(
            clippy::cast_precision_loss,
            reason = "a percentage printed with two decimals"
        )]
        let perc = if size > 0 {
            done as f64 / size as f64 * 100.0
        } else {
            0.0
        };
        let _ = write!(
            text,
            "master_sync_total_bytes:{size}\r\nmaster_sync_read_bytes:{done}\r\n\
             master_sync_left_bytes:{}\r\nmaster_sync_perc:{perc:.2}\r\n\
             master_sync_last_io_seconds_ago:{}\r\n",
            size - done,
            since(replica.transfer_last_io_secs.load(Ordering::Relaxed)),
        );
    }
    if !connected {
        let down = replica.down_since_secs.load(Ordering::Relaxed);
        let down = if down == 0 { -1 } else { since(down) };
        let _ = write!(text, "master_link_down_since_seconds:{down}\r\n");
    }
    let config = server.config();
    let _ = write!(
        text,
        "slave_priority:{}\r\nslave_read_only:{}\r\nreplica_announced:{}\r\n",
        config.stored_int("replica-priority", 100),
        u8::from(config.stored_text("replica-read-only") != b"no"),
        u8::from(config.stored_text("replica-announced") != b"no"),
    );
    // forkless's own, after Redis's: the dual-channel sync's buffered stream.
    let _ = write!(
        text,
        "replica_buffered_stream_bytes:{}\r\nreplica_buffered_stream_peak_bytes:{}\r\n\
         replica_dual_channel_syncs:{}\r\n",
        replica.stream_buffered.load(Ordering::Relaxed),
        replica.stream_buffered_peak.load(Ordering::Relaxed),
        replica.dual_syncs.load(Ordering::Relaxed),
    );
}

/// The primary `replicaof` in the configuration names, if any.
pub(crate) fn configured_master(server: &Server) -> Option<MasterAddr> {
    let value = server.config().stored_text("replicaof");
    let text = String::from_utf8_lossy(&value);
    let mut parts = text.split_whitespace();
    let (Some(host), Some(port)) = (parts.next(), parts.next()) else {
        return None;
    };
    let port = port.parse::<u16>().ok()?;
    Some(MasterAddr {
        host: host.to_owned(),
        port,
    })
}

/// Starts the link named by `replicaof` in the configuration, once the dataset is loaded.
pub(crate) fn start_from_config(server: &Arc<Server>) {
    let Some(master) = configured_master(server) else {
        return;
    };
    let replica = &server.replication.replica;
    let mut following = lock(&replica.following);
    if following.is_some() {
        // A REPLICAOF came first: it decides.
        return;
    }
    // Redis starts without a cached master (the first PSYNC is `? -1`) unless the dump had
    // the replication fields (`psync_possible` was set as it loaded).
    replica.is_replica.store(true, Ordering::Release);
    server.replication.set_role_replica();
    replica.set_state(LinkState::Connect);
    let cancel = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(link::run(
        Arc::clone(server),
        master.clone(),
        Arc::clone(&cancel),
    ));
    *following = Some(Following {
        master,
        cancel,
        task: Some(task),
    });
}
