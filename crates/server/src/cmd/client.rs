//! CLIENT and its subcommands, the per-connection state they read and change (reply mode,
//! no-evict, pause, unblock), and the line CLIENT LIST / CLIENT INFO print for a client.
//!
//! A connection's own state lives in its `Client`, which only its task touches. What other
//! connections read (CLIENT LIST of another client, CLIENT UNBLOCK) is published into the
//! shared [`ClientInfo`] of its `ClientHandle` by [`publish`], which the connection calls when it
//! is about to wait (for input, a blocked key or the end of a pause), that is, exactly when
//! another client can see it between commands, as Redis's CLIENT LIST does.

use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

use super::meta::Flags;
use super::{Client, Ctx, eq_ignore_case, parse_i64, reply, unknown_subcommand};
use crate::server::{ClientHandle, Server, lock};

/// `CLIENT REPLY OFF`: no reply is sent until `CLIENT REPLY ON`.
const REPLY_OFF: u8 = 1;
/// The reply of the command running now is dropped (the one after `CLIENT REPLY SKIP`).
const REPLY_SKIP: u8 = 2;
/// Set by `CLIENT REPLY SKIP`: the next command's reply is dropped.
const REPLY_SKIP_NEXT: u8 = 4;

/// A connection's own state for the CLIENT subcommands, MONITOR and CLIENT LIST.
#[derive(Debug)]
pub(crate) struct ConnState {
    /// `REPLY_*` bits: Redis's CLIENT_REPLY_OFF, CLIENT_REPLY_SKIP, CLIENT_REPLY_SKIP_NEXT.
    reply: u8,
    /// The query buffer when the running command was taken from it: its bytes (the command
    /// included, as Redis trims its query buffer only after the command) and free capacity.
    pub(crate) qbuf: usize,
    pub(crate) qbuf_free: usize,
    /// CLIENT NO-EVICT ON.
    no_evict: bool,
    /// Set by MONITOR: other clients' commands arrive as lines on the push channel.
    pub(crate) monitor: bool,
    /// What other clients send this one outside its replies: MONITOR lines, tracking
    /// invalidations (the other end is `ClientHandle::push`).
    pub(crate) pushes: mpsc::UnboundedReceiver<Bytes>,
    /// CLIENT TRACKING and CLIENT CACHING.
    pub(crate) tracking: super::tracking::ConnTracking,
    /// What REPLCONF declared, for a replica's PSYNC.
    pub(crate) replconf: crate::replication::ReplConf,
    /// Set by PSYNC/SYNC: the connection becomes a replica's link after the command.
    pub(crate) handover: Option<crate::replication::Handover>,
    /// Set by WAIT: the connection waits for the replicas' ACKs, then replies.
    pub(crate) wait_replicas: Option<crate::replication::WaitRequest>,
    /// Set by MIGRATE: the connection exchanges the keys with the target, holding nothing,
    /// then finishes the command (`cmd::migrate`).
    pub(crate) migrate: Option<Box<super::migrate::MigrateRequest>>,
    /// True once the connection is a replica's link (flag S, type replica).
    pub(crate) replica: bool,
}

impl ConnState {
    /// A new connection's state, receiving on `pushes`.
    pub(crate) fn new(pushes: mpsc::UnboundedReceiver<Bytes>) -> ConnState {
        ConnState {
            reply: 0,
            qbuf: 0,
            qbuf_free: 0,
            no_evict: false,
            monitor: false,
            pushes,
            tracking: super::tracking::ConnTracking::default(),
            replconf: crate::replication::ReplConf::default(),
            handover: None,
            wait_replicas: None,
            migrate: None,
            replica: false,
        }
    }
}

/// CLIENT LIST's flag letters, as bits of [`ClientInfo::flags`].
const FLAG_MONITOR: u32 = 1 << 0;
const FLAG_PUBSUB: u32 = 1 << 1;
const FLAG_MULTI: u32 = 1 << 2;
const FLAG_BLOCKED: u32 = 1 << 3;
const FLAG_DIRTY_CAS: u32 = 1 << 4;
const FLAG_CLOSE_AFTER_REPLY: u32 = 1 << 5;
const FLAG_NO_EVICT: u32 = 1 << 6;
const FLAG_TRACKING: u32 = 1 << 7;
const FLAG_TRACKING_BCAST: u32 = 1 << 8;
/// A replica's master client (`M`): set by the replication link, see [`mark_master`].
const FLAG_MASTER: u32 = 1 << 10;
/// A replica's link (Redis's CLIENT_SLAVE).
const FLAG_REPLICA: u32 = 1 << 9;
/// A Unix-socket client (`U`): not stored, CLIENT LIST derives it from the address.
const FLAG_UNIX: u32 = 1 << 31;

/// In Redis's order (`catClientInfoString`): the letter of each flag.
const FLAG_LETTERS: &[(u32, char)] = &[
    (FLAG_REPLICA, 'S'),
    (FLAG_MONITOR, 'O'),
    (FLAG_MASTER, 'M'),
    (FLAG_PUBSUB, 'P'),
    (FLAG_MULTI, 'x'),
    (FLAG_BLOCKED, 'b'),
    (FLAG_TRACKING, 't'),
    (FLAG_TRACKING_BCAST, 'B'),
    (FLAG_DIRTY_CAS, 'd'),
    (FLAG_CLOSE_AFTER_REPLY, 'c'),
    (FLAG_UNIX, 'U'),
    (FLAG_NO_EVICT, 'e'),
];

/// What CLIENT UNBLOCK (or a switch to replica) asked a blocked client to do.
const UNBLOCK_NONE: u8 = 0;
const UNBLOCK_TIMEOUT: u8 = 1;
const UNBLOCK_ERROR: u8 = 2;
const UNBLOCK_ROLE_CHANGE: u8 = 3;

/// How a blocked client is told to stop waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unblock {
    /// CLIENT UNBLOCK id [TIMEOUT]: the command's timeout reply.
    Timeout,
    /// CLIENT UNBLOCK id ERROR: [`UNBLOCKED_ERROR`].
    Error,
    /// The server became a replica (Redis's `disconnectAllBlockedClients`):
    /// [`ROLE_CHANGE_ERROR`], then the connection closes.
    RoleChange,
}

/// The part of a client other connections may read, and the CLIENT UNBLOCK request. Relaxed
/// atomics: each figure is independent, and CLIENT LIST is a picture, not a transaction.
#[derive(Debug)]
pub(crate) struct ClientInfo {
    flags: AtomicU32,
    sub: AtomicU32,
    psub: AtomicU32,
    ssub: AtomicU32,
    /// Commands queued in MULTI, or -1 outside a transaction.
    multi: AtomicI64,
    multi_mem: AtomicU64,
    qbuf: AtomicU64,
    qbuf_free: AtomicU64,
    /// Reply bytes waiting to be written.
    pending_out: AtomicU64,
    /// Pub/sub messages queued for the client, not yet taken by its connection.
    pub(crate) pubsub_queued: AtomicU64,
    /// The connection's turns: odd while it waits in its loop for its client's bytes (or
    /// anything else) with every command it had read run, even while it reads or runs them.
    /// Only the connection writes it ([`turn_waiting`], [`turn_reading`]); [`catch_up`]
    /// reads it.
    pub(crate) turns: AtomicU64,
    /// Set while the connection waits on something other than its client's next bytes (its
    /// client reading replies, a pause, WAIT's ACKs, another CLIENT LIST's catch-up): it
    /// will not read soon, so [`catch_up`] does not wait for it. See [`Parked`].
    pub(crate) parked: AtomicBool,
    /// Arguments of a command received in part (`RequestDecoder::pending_argv_bytes`).
    pub(crate) argv_mem: AtomicU64,
    /// The client's share of the WATCH and pub/sub tables (see [`table_overhead`]).
    table_overhead: AtomicU64,
    /// Push bytes (tracking invalidations) the connection took from its queue and has not
    /// written yet: still in `Tracking::queued_bytes` until they are.
    pub(crate) pushes_unwritten: AtomicU64,
    /// Pushes (MONITOR lines, tracking invalidations) queued to the connection, not yet
    /// taken by it: bounded by [`crate::server::Tunables::push_limit`].
    pub(crate) pushes_queued: AtomicU64,
    /// What the client last added to `Clients::memory` (its `tot-mem`, 0 for a replication
    /// link): see [`account_memory`].
    pub(crate) counted: AtomicU64,
    /// What the client held when `maxmemory-clients` evicted it (`Clients::note_dying`).
    pub(crate) dying: AtomicU64,
    /// The tracking redirect target, 0 without one, -1 with tracking off.
    redir: AtomicI64,
    /// `UNBLOCK_*`: set by CLIENT UNBLOCK, taken by the blocked connection.
    unblock: AtomicU8,
    /// Wakes a blocked connection for CLIENT UNBLOCK.
    pub(crate) unblocked: Notify,
    /// The longest the query buffer's content has been since the last query buffer cron
    /// (Redis's `querybuf_peak`): the connection raises it after each read, the cron resets it.
    qbuf_peak: AtomicU64,
    /// The size the cron asks the query buffer to shrink to, `NO_RESIZE` for none; taken by
    /// the connection when `resize` wakes it.
    resize_to: AtomicU64,
    /// Wakes the connection to resize its query buffer.
    pub(crate) resize: Notify,
}

/// `ClientInfo::resize_to` when no resize is asked for.
const NO_RESIZE: u64 = u64::MAX;

/// A query buffer is resized only when it wastes more than this (Redis's 4 KiB).
const QUERY_BUFFER_WASTE: u64 = 4 * 1024;

/// A busy client's query buffer above this that is more than twice its recent peak shrinks
/// to the peak (Redis's `PROTO_RESIZE_THRESHOLD`).
const QUERY_BUFFER_RESIZE_THRESHOLD: u64 = 32 * 1024;

/// A client that has sent nothing for longer than this gives its query buffer's free space
/// back (Redis's `idletime > 2` seconds).
pub(crate) const QUERY_BUFFER_IDLE: Duration = Duration::from_secs(2);

impl Default for ClientInfo {
    fn default() -> ClientInfo {
        ClientInfo {
            flags: AtomicU32::new(0),
            sub: AtomicU32::new(0),
            psub: AtomicU32::new(0),
            ssub: AtomicU32::new(0),
            multi: AtomicI64::new(-1),
            multi_mem: AtomicU64::new(0),
            qbuf: AtomicU64::new(0),
            qbuf_free: AtomicU64::new(0),
            pending_out: AtomicU64::new(0),
            pubsub_queued: AtomicU64::new(0),
            turns: AtomicU64::new(0),
            parked: AtomicBool::new(false),
            argv_mem: AtomicU64::new(0),
            table_overhead: AtomicU64::new(0),
            pushes_unwritten: AtomicU64::new(0),
            pushes_queued: AtomicU64::new(0),
            counted: AtomicU64::new(0),
            dying: AtomicU64::new(0),
            redir: AtomicI64::new(-1),
            unblock: AtomicU8::new(UNBLOCK_NONE),
            unblocked: Notify::new(),
            qbuf_peak: AtomicU64::new(0),
            resize_to: AtomicU64::new(NO_RESIZE),
            resize: Notify::new(),
        }
    }
}

impl ClientInfo {
    /// Records that the query buffer holds `len` bytes after a read.
    pub(crate) fn note_query_len(&self, len: usize) {
        self.qbuf_peak.fetch_max(to_u64(len), Ordering::Relaxed);
    }

    /// Takes the size the cron asked the query buffer to shrink to, if it asked.
    pub(crate) fn take_resize(&self) -> Option<usize> {
        let size = self.resize_to.swap(NO_RESIZE, Ordering::Relaxed);
        (size != NO_RESIZE).then(|| usize::try_from(size).unwrap_or(usize::MAX))
    }

    /// Redis's `clientsCronResizeQueryBuffer`, from the figures the connection published:
    /// a buffer wasting more than 4 KiB shrinks to its content when the client has been idle
    /// for `QUERY_BUFFER_IDLE`, or, past 32 KiB and more than twice the recent peak, to that
    /// peak. The connection does the resize itself (it owns the buffer) when woken; the peak
    /// starts again from the current content.
    pub(crate) fn cron_resize_query_buffer(&self, idle: Duration) {
        let used = self.qbuf.load(Ordering::Relaxed);
        let free = self.qbuf_free.load(Ordering::Relaxed);
        let size = used.saturating_add(free);
        let peak = self.qbuf_peak.swap(used, Ordering::Relaxed);
        if free <= QUERY_BUFFER_WASTE {
            return;
        }
        let target = if idle > QUERY_BUFFER_IDLE {
            used
        } else if size > QUERY_BUFFER_RESIZE_THRESHOLD && size / 2 > peak {
            used.max(peak)
        } else {
            return;
        };
        self.resize_to.store(target, Ordering::Relaxed);
        self.resize.notify_one();
    }

    /// The client's buffers as last published (query buffer, its free part, pending replies,
    /// queued transaction, queued pub/sub messages, a command's arguments received so far):
    /// its share of INFO's `mem_clients_normal`.
    pub(crate) fn buffer_bytes(&self) -> u64 {
        [
            &self.qbuf,
            &self.qbuf_free,
            &self.pending_out,
            &self.multi_mem,
            &self.pubsub_queued,
            &self.argv_mem,
        ]
        .iter()
        .map(|figure| figure.load(Ordering::Relaxed))
        .fold(0, u64::saturating_add)
    }

    /// The replies waiting to be written, as the connection last published them.
    pub(crate) fn pending_out_bytes(&self) -> u64 {
        self.pending_out.load(Ordering::Relaxed)
    }

    /// The connection took `bytes` of pushes from its queue.
    pub(crate) fn pushes_taken(&self, bytes: usize) {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        let _ = self
            .pushes_queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |queued| {
                Some(queued.saturating_sub(bytes))
            });
    }

    /// Takes the unblock request, if one came.
    pub(crate) fn take_unblock(&self) -> Option<Unblock> {
        match self.unblock.swap(UNBLOCK_NONE, Ordering::AcqRel) {
            UNBLOCK_TIMEOUT => Some(Unblock::Timeout),
            UNBLOCK_ERROR => Some(Unblock::Error),
            UNBLOCK_ROLE_CHANGE => Some(Unblock::RoleChange),
            _ => None,
        }
    }
}

/// The error a client unblocked by `CLIENT UNBLOCK id ERROR` gets.
pub(crate) const UNBLOCKED_ERROR: &str = "UNBLOCKED client unblocked via CLIENT UNBLOCK";

/// The error clients blocked on keys get when the server becomes a replica.
pub(crate) const ROLE_CHANGE_ERROR: &str =
    "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)";

/// Ends every blocked command with [`ROLE_CHANGE_ERROR`] and closes its connection after the
/// reply, as Redis does when it starts following a master (REPLICAOF, FAILOVER): what they
/// waited for will now come from the master, if at all. Clients held by CLIENT PAUSE are not
/// blocked on keys and wait on.
pub(crate) fn disconnect_blocked(server: &Server) {
    for handle in server.clients.all() {
        if handle.info.flags.load(Ordering::Relaxed) & FLAG_BLOCKED != 0 {
            handle
                .info
                .unblock
                .store(UNBLOCK_ROLE_CHANGE, Ordering::Release);
            handle.info.unblocked.notify_one();
        }
    }
}

/// The figures of one CLIENT LIST line that differ between the running client and others.
struct Figures {
    flags: u32,
    sub: u32,
    psub: u32,
    ssub: u32,
    multi: i64,
    multi_mem: u64,
    qbuf: u64,
    qbuf_free: u64,
    argv_mem: u64,
    pending_out: u64,
    redir: i64,
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Commands of a long transaction whose size [`multi_mem`] reads; the rest are estimated
/// from them, so publishing a client's figures before every read stays O(1).
const MULTI_MEM_SAMPLE: usize = 64;

/// Queued commands' argument bytes plus a pointer per argument, as Redis's `argv_len_sums`
/// (estimated from the first commands of a long transaction).
fn multi_mem(client: &Client) -> u64 {
    client.multi.as_ref().map_or(0, |queued| {
        let sampled: u64 = queued
            .iter()
            .take(MULTI_MEM_SAMPLE)
            .flatten()
            .map(|arg| to_u64(arg.len() + std::mem::size_of::<usize>()))
            .sum();
        if queued.len() <= MULTI_MEM_SAMPLE {
            return sampled;
        }
        sampled.saturating_mul(to_u64(queued.len())) / to_u64(MULTI_MEM_SAMPLE)
    })
}

fn figures_of(client: &Client, blocked: bool, pending_out: usize) -> Figures {
    let mut flags = 0;
    let mut set = |on: bool, bit: u32| {
        if on {
            flags |= bit;
        }
    };
    let (tracking, bcast, redir) = super::tracking::list_figures(client);
    set(client.conn.monitor, FLAG_MONITOR);
    set(client.conn.replica, FLAG_REPLICA);
    set(tracking, FLAG_TRACKING);
    set(bcast, FLAG_TRACKING_BCAST);
    set(client.subs.active(), FLAG_PUBSUB);
    set(client.multi.is_some(), FLAG_MULTI);
    set(blocked, FLAG_BLOCKED);
    set(client.watched.is_dirty(), FLAG_DIRTY_CAS);
    set(client.close_after_reply, FLAG_CLOSE_AFTER_REPLY);
    set(client.conn.no_evict, FLAG_NO_EVICT);
    Figures {
        flags,
        sub: to_u32(client.subs.count(crate::pubsub::Kind::Channel)),
        psub: to_u32(client.subs.count(crate::pubsub::Kind::Pattern)),
        ssub: to_u32(client.subs.count(crate::pubsub::Kind::Shard)),
        multi: client
            .multi
            .as_ref()
            .map_or(-1, |queued| i64::try_from(queued.len()).unwrap_or(i64::MAX)),
        multi_mem: multi_mem(client),
        qbuf: to_u64(client.conn.qbuf),
        qbuf_free: to_u64(client.conn.qbuf_free),
        argv_mem: 0,
        pending_out: to_u64(pending_out),
        redir,
    }
}

/// Marks `handle` as a replica's master client in CLIENT LIST (`flags=M`), after [`publish`].
pub(crate) fn mark_master(handle: &ClientHandle) {
    handle.info.flags.fetch_or(FLAG_MASTER, Ordering::Relaxed);
}

/// Publishes what other clients' CLIENT LIST shows of `client`: called by the connection
/// before it waits, with its pending output and its query buffer at that moment.
pub(crate) fn publish(client: &Client, blocked: bool, qbuf: usize, qbuf_free: usize) {
    let figures = figures_of(client, blocked, 0);
    let info = &client.handle.info;
    info.flags.store(figures.flags, Ordering::Relaxed);
    info.sub.store(figures.sub, Ordering::Relaxed);
    info.psub.store(figures.psub, Ordering::Relaxed);
    info.ssub.store(figures.ssub, Ordering::Relaxed);
    info.multi.store(figures.multi, Ordering::Relaxed);
    info.multi_mem.store(figures.multi_mem, Ordering::Relaxed);
    info.qbuf.store(to_u64(qbuf), Ordering::Relaxed);
    info.qbuf_free.store(to_u64(qbuf_free), Ordering::Relaxed);
    info.redir.store(figures.redir, Ordering::Relaxed);
    info.table_overhead
        .store(table_overhead(client), Ordering::Relaxed);
}

/// What a client's watched keys and subscriptions cost it in the shared tables, as Redis's
/// `multiStateMemOverhead` and `pubsubMemOverhead` count them (a list node and a
/// `watchedKey` per watched key, a dict entry and bucket per subscription, not the names,
/// which are shared; and the client's BCAST tracking prefixes).
fn table_overhead(client: &Client) -> u64 {
    const PER_WATCHED_KEY: u64 = 48;
    const PER_SUBSCRIPTION: u64 = 32;
    let subscriptions = [
        crate::pubsub::Kind::Channel,
        crate::pubsub::Kind::Pattern,
        crate::pubsub::Kind::Shard,
    ]
    .iter()
    .map(|&kind| to_u64(client.subs.of(kind).len()))
    .fold(0, u64::saturating_add);
    to_u64(client.watched.len())
        .saturating_mul(PER_WATCHED_KEY)
        .saturating_add(subscriptions.saturating_mul(PER_SUBSCRIPTION))
        .saturating_add(super::tracking::prefix_bytes(client))
}

/// Returns true if and only if the client was subscribed to something when it last waited
/// (what decides whether a RESP2 client can receive tracking invalidations).
pub(crate) fn is_subscribed(handle: &ClientHandle) -> bool {
    handle.info.flags.load(Ordering::Relaxed) & FLAG_PUBSUB != 0
}

/// One tick of the query buffer cron, run `hz` times a second: like Redis's `clientsCron`,
/// it visits `n_clients / hz` clients (at least 5) after the one it visited last, so each
/// client is seen about once a second, and every tick when there are few. Each query buffer
/// is resized as `ClientInfo::cron_resize_query_buffer` says. Returns the last id visited.
pub(crate) fn cron_resize_query_buffers(server: &Server, after: u64, hz: u64) -> u64 {
    let n_clients = server.clients.len();
    let count = (n_clients / usize::try_from(hz.max(1)).unwrap_or(1)).max(5);
    let mut last = after;
    for handle in server.clients.batch_after(after, count.min(n_clients)) {
        let since_created = u64::try_from(handle.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        let interaction = handle.last_interaction_ms.load(Ordering::Relaxed);
        let idle = Duration::from_millis(since_created.saturating_sub(interaction));
        handle.info.cron_resize_query_buffer(idle);
        last = handle.id;
    }
    last
}

/// Records how many reply bytes wait to be written to the client (0 once written).
pub(crate) fn publish_pending_out(handle: &ClientHandle, pending: usize) {
    handle
        .info
        .pending_out
        .store(to_u64(pending), Ordering::Relaxed);
}

fn figures_of_other(handle: &ClientHandle) -> Figures {
    let info = &handle.info;
    Figures {
        flags: info.flags.load(Ordering::Relaxed),
        sub: info.sub.load(Ordering::Relaxed),
        psub: info.psub.load(Ordering::Relaxed),
        ssub: info.ssub.load(Ordering::Relaxed),
        multi: info.multi.load(Ordering::Relaxed),
        multi_mem: info.multi_mem.load(Ordering::Relaxed),
        qbuf: info.qbuf.load(Ordering::Relaxed),
        qbuf_free: info.qbuf_free.load(Ordering::Relaxed),
        argv_mem: info.argv_mem.load(Ordering::Relaxed),
        pending_out: info.pending_out.load(Ordering::Relaxed),
        redir: info.redir.load(Ordering::Relaxed),
    }
}

/// What a client costs, as Redis's `getClientMemoryUsage`: its buffers (query buffer, argv,
/// queued transaction, the reply buffer and the reply list, queued pub/sub messages) plus the
/// connection's own state. CLIENT LIST's `tot-mem` and what `maxmemory-clients` evicts by.
fn total_memory(figures: &Figures, handle: &ClientHandle) -> u64 {
    let omem = figures.pending_out.saturating_sub(REPLY_CHUNK);
    [
        figures.qbuf,
        figures.qbuf_free,
        figures.argv_mem,
        figures.multi_mem,
        REPLY_CHUNK,
        omem,
        handle.info.pubsub_queued.load(Ordering::Relaxed),
        handle.info.table_overhead.load(Ordering::Relaxed),
        to_u64(std::mem::size_of::<Client>() + std::mem::size_of::<ClientHandle>()),
    ]
    .into_iter()
    .fold(0, u64::saturating_add)
}

/// The memory a client other than the running one uses (its `tot-mem`), and whether client
/// eviction may close it: not with CLIENT NO-EVICT on, and never a replica or a master link
/// (their memory is not counted either, as in Redis).
pub(crate) fn eviction_figures(handle: &ClientHandle) -> (u64, bool) {
    let figures = figures_of_other(handle);
    (
        total_memory(&figures, handle),
        figures.flags & FLAG_NO_EVICT == 0,
    )
}

/// Brings the client's share of the clients' memory total up to date after it published new
/// figures, and runs client eviction when the total reached `maxmemory-clients`: O(1) unless
/// it did. Redis checks before every command and in `beforeSleep`; a connection here calls
/// this before it waits to read and before it writes.
pub(crate) fn account_memory(server: &Server, handle: &ClientHandle) {
    let now = if is_replication_link(handle) {
        0
    } else {
        total_memory(&figures_of_other(handle), handle)
    };
    let before = handle.info.counted.swap(now, Ordering::Relaxed);
    let total = server.clients.add_memory(now, before);
    let limit = server.tunables.maxmemory_clients.load(Ordering::Relaxed);
    if limit != 0 && total >= limit {
        crate::evict::evict_clients(server);
    }
}

/// Returns true if and only if the client is a replica or a master link (not counted in
/// `maxmemory-clients`). A MONITOR client counts as a normal one.
pub(crate) fn is_replication_link(handle: &ClientHandle) -> bool {
    let flags = handle.info.flags.load(Ordering::Relaxed);
    flags & FLAG_MASTER != 0 || (flags & FLAG_REPLICA != 0 && flags & FLAG_MONITOR == 0)
}

/// Redis's static reply buffer size (`PROTO_REPLY_CHUNK_BYTES`): pending output up to it counts
/// as `obl`, the rest as reply list blocks of the same size (`oll`, `omem`).
const REPLY_CHUNK: u64 = 16 * 1024;

/// One line of CLIENT LIST / CLIENT INFO with Redis 7.0's fields in Redis's order, without the
/// trailing newline. `cmd` is the running client's command for that client, None for others.
fn client_line(handle: &ClientHandle, figures: &Figures, cmd: Option<&str>) -> String {
    let age = handle.created.elapsed().as_secs();
    let idle_ms = u64::try_from(handle.created.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_sub(handle.last_interaction_ms.load(Ordering::Relaxed));
    let name = lock(&handle.name)
        .as_ref()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_default();
    let cmd = cmd.unwrap_or_else(|| {
        super::last_command_name(handle.last_command.load(Ordering::Relaxed)).unwrap_or("NULL")
    });
    let flag_bits = if handle.addr.is_unix() {
        figures.flags | FLAG_UNIX
    } else {
        figures.flags
    };
    let mut flags: String = FLAG_LETTERS
        .iter()
        .filter(|(bit, _)| flag_bits & bit != 0)
        .map(|(_, letter)| *letter)
        .collect();
    if flags.is_empty() {
        flags.push('N');
    }
    let obl = figures.pending_out.min(REPLY_CHUNK);
    let omem = figures.pending_out - obl;
    let oll = omem.div_ceil(REPLY_CHUNK);
    let events = if figures.pending_out > 0 { "rw" } else { "r" };
    let tot_mem = total_memory(figures, handle);
    format!(
        "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub={} psub={} \
         ssub={} multi={} qbuf={} qbuf-free={} argv-mem={} multi-mem={} rbs={} rbp={} obl={} \
         oll={} omem={} tot-mem={} events={} cmd={} user={} redir={} resp={}",
        handle.id,
        handle.addr,
        handle.local_addr,
        handle.fd,
        name,
        age,
        idle_ms / 1000,
        flags,
        handle.db.load(Ordering::Relaxed),
        figures.sub,
        figures.psub,
        figures.ssub,
        figures.multi,
        figures.qbuf,
        figures.qbuf_free,
        figures.argv_mem,
        figures.multi_mem,
        REPLY_CHUNK,
        obl,
        obl,
        oll,
        omem,
        tot_mem,
        events,
        cmd,
        String::from_utf8_lossy(&lock(&handle.user)),
        figures.redir,
        handle.resp.load(Ordering::Relaxed),
    )
}

/// The CLIENT LIST line of a client as others see it (what the ACL log records).
pub(crate) fn handle_line(handle: &ClientHandle) -> String {
    client_line(handle, &figures_of_other(handle), None)
}

/// The running client's own line: its figures read from its state, not from what it last
/// published.
fn own_line(ctx: &Ctx<'_>, argv: &[Bytes], cmd: &str) -> String {
    let mut figures = figures_of(ctx.client, false, ctx.out.len());
    figures.argv_mem = argv.iter().map(|arg| to_u64(arg.len())).sum();
    client_line(&ctx.client.handle, &figures, Some(cmd))
}

/// Runs after every command: drops its reply under CLIENT REPLY OFF or SKIP, and moves a
/// pending SKIP on to the next command, as Redis's `resetClient` does.
pub(crate) fn after_command(client: &mut Client, out: &mut forkless_protocol::Out, start: usize) {
    if client.conn.reply & (REPLY_OFF | REPLY_SKIP) != 0 {
        drop_replies(out, start);
    }
    client.conn.reply &= !REPLY_SKIP;
    if client.conn.reply & REPLY_SKIP_NEXT != 0 {
        client.conn.reply = (client.conn.reply & !REPLY_SKIP_NEXT) | REPLY_SKIP;
    }
}

/// Returns true if and only if the running command's reply is to be dropped (CLIENT REPLY OFF,
/// or SKIP for this command).
pub(crate) fn reply_dropped(client: &Client) -> bool {
    client.conn.reply & (REPLY_OFF | REPLY_SKIP) != 0
}

/// Drops a reply written after its command's turn (MIGRATE's, which comes once the exchange
/// with its target is over) from `start` on, as [`after_command`] would have.
pub(crate) fn drop_reply(out: &mut forkless_protocol::Out, start: usize) {
    drop_replies(out, start);
}

/// Drops what the command wrote from `start` on, except RESP3 push frames (a subscription's
/// confirmation): Redis lets pushes through CLIENT REPLY OFF/SKIP.
fn drop_replies(out: &mut forkless_protocol::Out, start: usize) {
    // Copied out rather than split off: a split would share the buffer's allocation and
    // hide part of it from the client's memory figures (`Out::allocation`).
    let start = start.min(out.buf.len());
    let written = out.buf.get(start..).unwrap_or_default().to_vec();
    out.buf.truncate(start);
    let limits = forkless_protocol::Limits::default();
    let mut rest = &written[..];
    while let Ok(Some((_, used))) = forkless_protocol::decode_frame(rest, &limits) {
        let Some((frame, tail)) = rest.split_at_checked(used) else {
            break;
        };
        if frame.first() == Some(&b'>') {
            out.buf.extend_from_slice(frame);
        }
        rest = tail;
    }
}

/// Returns true if and only if the client's replies are altered by CLIENT REPLY.
pub(crate) fn reply_altered(client: &Client) -> bool {
    client.conn.reply != 0
}

/// RESET's share: reply mode on, no-evict off, MONITOR and tracking off.
pub(crate) fn reset(server: &Server, client: &mut Client) {
    client.conn.reply = 0;
    client.conn.no_evict = false;
    if std::mem::take(&mut client.conn.monitor) {
        server.monitors.remove(client.id);
    }
    super::tracking::disable(server, client);
}

// ---------------------------------------------------------------------------------------------
// CLIENT PAUSE

/// CLIENT PAUSE's state: until when, and whether only writes wait.
#[derive(Debug, Default)]
pub(crate) struct Pause {
    /// True while a pause may be in force: the one load the command path makes.
    active: AtomicBool,
    state: Mutex<PauseState>,
    /// Wakes the paused clients when the pause ends early (UNPAUSE).
    pub(crate) changed: Notify,
    /// Clients whose command waits for the pause's end, for INFO `blocked_clients`.
    waiting: AtomicUsize,
}

/// Counts a client as held back by CLIENT PAUSE while it lives.
pub(crate) struct PauseWait<'a>(&'a Pause);

impl Drop for PauseWait<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct PauseState {
    until: Option<Instant>,
    all: bool,
    /// True while a FAILOVER holds writes back (Redis's `PAUSE_DURING_FAILOVER`): a pause of
    /// its own, with no end time, that CLIENT UNPAUSE leaves alone.
    failover: bool,
}

/// How far ahead a failover's pause (which has no end) says it ends: its end is a
/// notification on `Pause::changed`, never this time.
const FAILOVER_PAUSE_HORIZON: std::time::Duration = std::time::Duration::from_secs(3600);

impl Pause {
    /// Returns true if and only if a pause may be in force (a relaxed load, for the command
    /// path; the details are in [`Pause::deadline_for`]).
    pub(crate) fn maybe_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// When the pause that holds back a command ends: None if it may run now. `writes` is
    /// whether the command may write or replicate (then a WRITE pause holds it too).
    fn deadline_for(&self, writes: bool) -> Option<Instant> {
        let mut state = lock(&self.state);
        let now = Instant::now();
        if state.until.is_some_and(|until| now >= until) {
            state.until = None;
            state.all = false;
            self.active.store(state.failover, Ordering::Relaxed);
        }
        let client_pause = state.until.filter(|_| state.all || writes);
        let failover_pause = (state.failover && writes).then(|| now + FAILOVER_PAUSE_HORIZON);
        match (client_pause, failover_pause) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Clients held back right now.
    pub(crate) fn n_waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Returns true if and only if a pause that holds writes back (WRITE or ALL) is in force.
    pub(crate) fn holds_writes(&self) -> bool {
        self.maybe_active() && self.deadline_for(true).is_some()
    }

    /// Counts the calling client as held back until the returned guard is dropped.
    pub(crate) fn wait(&self) -> PauseWait<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        PauseWait(self)
    }

    fn pause(&self, until: Instant, all: bool) {
        let mut state = lock(&self.state);
        // As Redis's pauseClients: the longer end and the stricter type win.
        state.until = Some(state.until.map_or(until, |old| old.max(until)));
        state.all |= all;
        self.active.store(true, Ordering::Relaxed);
    }

    fn unpause(&self) {
        let mut state = lock(&self.state);
        state.until = None;
        state.all = false;
        self.active.store(state.failover, Ordering::Relaxed);
        drop(state);
        self.changed.notify_waiters();
    }

    /// FAILOVER's pause of writes (Redis's `pauseClients(PAUSE_DURING_FAILOVER, ..., WRITE)`):
    /// in force until [`Pause::end_failover`], whatever CLIENT PAUSE / UNPAUSE do meanwhile.
    pub(crate) fn start_failover(&self) {
        lock(&self.state).failover = true;
        self.active.store(true, Ordering::Relaxed);
    }

    /// Ends FAILOVER's pause; a CLIENT PAUSE still in force stays.
    pub(crate) fn end_failover(&self) {
        let mut state = lock(&self.state);
        state.failover = false;
        self.active.store(state.until.is_some(), Ordering::Relaxed);
        drop(state);
        self.changed.notify_waiters();
    }

    /// Holds writes (and active expiry) back while the final save before an exit runs, as
    /// Redis's shutdown pauses them: what the dump and the replicas' stream hold stays what
    /// clients were told. [`Pause::end_shutdown_pause`] if the shutdown is abandoned.
    pub(crate) fn pause_writes_for_shutdown(&self) {
        self.pause(Instant::now() + std::time::Duration::from_secs(3600), false);
    }

    /// Lifts [`Pause::pause_writes_for_shutdown`] (the final save failed, the server goes on).
    pub(crate) fn end_shutdown_pause(&self) {
        self.unpause();
    }
}

/// When the pause that holds back `argv` ends, or None if it may run now. Commands that may
/// write (the `WRITE` and `MAY_REPLICATE` flags, and EXEC of a transaction holding one) wait
/// under `CLIENT PAUSE WRITE`; every command waits under `ALL`, as in Redis's processCommand.
pub(crate) fn pause_deadline(server: &Server, client: &Client, argv: &[Bytes]) -> Option<Instant> {
    let name = argv.first()?;
    let (_, command) = super::lookup(name)?;
    // A command Redis refuses (here, its arity) gets its error at once, paused or not.
    if !super::subcommands::arity_ok(command.arity, argv.len()) {
        return None;
    }
    let writing = Flags::WRITE.union(Flags::MAY_REPLICATE);
    let writes = crate::scripting::declared_writes(server, command, argv)
        .unwrap_or_else(|| command.flags.intersects(writing))
        // EXEC: the one command that runs in MULTI and takes the gate itself.
        || (command.has_flag(Flags::RUNS_IN_MULTI)
            && command.gate == super::meta::Gate::Exclusive
            && client.multi.as_ref().is_some_and(|queued| {
                queued.iter().any(|argv| {
                    argv.first()
                        .and_then(|name| super::lookup(name))
                        .is_some_and(|(_, command)| {
                            crate::scripting::declared_writes(server, command, argv)
                                .unwrap_or_else(|| command.flags.intersects(writing))
                        })
                })
            }));
    server.pause.deadline_for(writes)
}

// ---------------------------------------------------------------------------------------------
// The CLIENT command

/// CLIENT's handler: each subcommand parses its own arguments.
pub(crate) fn client(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(sub) = super::subcommands::subcommand(ctx, argv) else {
        return;
    };
    let args = argv.get(2..).unwrap_or_default();
    match (sub.name, args) {
        ("client|id", _) => ctx
            .out
            .int(i64::try_from(ctx.client.id).unwrap_or(i64::MAX)),
        ("client|getname", _) => match lock(&ctx.client.handle.name).clone() {
            Some(name) => ctx.out.bulk(&name),
            None => ctx.out.null(),
        },
        ("client|setname", [name]) => match super::connection::validate_client_name(name) {
            Ok(()) => {
                *lock(&ctx.client.handle.name) = (!name.is_empty()).then(|| name.clone());
                ctx.out.ok();
            }
            Err(msg) => ctx.out.error(msg),
        },
        ("client|setinfo", [attr, _value]) => {
            if eq_ignore_case(attr, "lib-name") || eq_ignore_case(attr, "lib-ver") {
                ctx.out.ok();
            } else {
                ctx.out.error(&format!(
                    "ERR Unrecognized option '{}'",
                    String::from_utf8_lossy(attr)
                ));
            }
        }
        ("client|info", _) => {
            let mut line = own_line(ctx, argv, "client|info");
            line.push('\n');
            ctx.out.verbatim(b"txt", line.as_bytes());
        }
        ("client|list", filters) => client_list(ctx, argv, filters),
        ("client|kill", filters) => client_kill(ctx, filters),
        ("client|reply", [mode]) => client_reply(ctx, mode),
        ("client|no-evict", [mode]) => {
            // The flag is published at once: client eviction in another connection reads it.
            let flags = &ctx.client.handle.info.flags;
            if eq_ignore_case(mode, "on") {
                ctx.client.conn.no_evict = true;
                flags.fetch_or(FLAG_NO_EVICT, Ordering::Relaxed);
                ctx.out.ok();
            } else if eq_ignore_case(mode, "off") {
                ctx.client.conn.no_evict = false;
                flags.fetch_and(!FLAG_NO_EVICT, Ordering::Relaxed);
                ctx.out.ok();
            } else {
                ctx.out.error(reply::SYNTAX);
            }
        }
        ("client|pause", [timeout, rest @ ..]) => client_pause(ctx, timeout, rest.first()),
        ("client|unpause", _) => {
            ctx.server.pause.unpause();
            ctx.out.ok();
        }
        ("client|unblock", [id, rest @ ..]) => client_unblock(ctx, id, rest.first()),
        ("client|getredir", _) => super::tracking::client_getredir(ctx),
        ("client|trackinginfo", _) => super::tracking::client_trackinginfo(ctx),
        ("client|tracking", args) => super::tracking::client_tracking(ctx, args),
        ("client|caching", [value]) => super::tracking::client_caching(ctx, value),
        ("client|help", _) => client_help(ctx),
        _ => unknown_subcommand(ctx, argv),
    }
}

fn client_help(ctx: &mut Ctx<'_>) {
    super::subcommands::help_reply(
        ctx.out,
        "CLIENT",
        &[
            "CACHING (YES|NO)",
            "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
            "GETREDIR",
            "    Return the client ID we are redirecting to when tracking is enabled.",
            "GETNAME",
            "    Return the name of the current connection.",
            "ID",
            "    Return the ID of the current connection.",
            "INFO",
            "    Return information about the current client connection.",
            "KILL <ip:port>",
            "    Kill connection made from <ip:port>.",
            "KILL <option> <value> [<option> <value> [...]]",
            "    Kill connections. Options are:",
            "    * ADDR (<ip:port>|<unixsocket>:0)",
            "      Kill connections made from the specified address",
            "    * LADDR (<ip:port>|<unixsocket>:0)",
            "      Kill connections made to specified local address",
            "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
            "      Kill connections by type.",
            "    * USER <username>",
            "      Kill connections authenticated by <username>.",
            "    * SKIPME (YES|NO)",
            "      Skip killing current connection (default: yes).",
            "    * ID <client-id>",
            "      Kill connections by client id.",
            "LIST [options ...]",
            "    Return information about client connections. Options:",
            "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
            "      Return clients of specified type.",
            "UNPAUSE",
            "    Stop the current client pause, resuming traffic.",
            "PAUSE <timeout> [WRITE|ALL]",
            "    Suspend all, or just write, clients for <timeout> milliseconds.",
            "REPLY (ON|OFF|SKIP)",
            "    Control the replies sent to the current connection.",
            "SETNAME <name>",
            "    Assign the name <name> to the current connection.",
            "UNBLOCK <clientid> [TIMEOUT|ERROR]",
            "    Unblock the specified blocked client.",
            "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
            "         [OPTIN] [OPTOUT] [NOLOOP]",
            "    Control server assisted client side caching.",
            "TRACKINGINFO",
            "    Report tracking status for the current connection.",
            "NO-EVICT (ON|OFF)",
            "    Protect current client connection from eviction.",
        ],
    );
}

fn client_reply(ctx: &mut Ctx<'_>, mode: &[u8]) {
    let state = &mut ctx.client.conn;
    if eq_ignore_case(mode, "on") {
        state.reply &= !(REPLY_SKIP | REPLY_OFF);
        ctx.out.ok();
    } else if eq_ignore_case(mode, "off") {
        state.reply |= REPLY_OFF;
    } else if eq_ignore_case(mode, "skip") {
        if state.reply & REPLY_OFF == 0 {
            state.reply |= REPLY_SKIP_NEXT;
        }
    } else {
        ctx.out.error(reply::SYNTAX);
    }
}

fn client_pause(ctx: &mut Ctx<'_>, timeout: &[u8], mode: Option<&Bytes>) {
    let all = match mode {
        None => true,
        Some(mode) if eq_ignore_case(mode, "all") => true,
        Some(mode) if eq_ignore_case(mode, "write") => false,
        Some(_) => {
            ctx.out.error("ERR CLIENT PAUSE mode must be WRITE or ALL");
            return;
        }
    };
    // Redis's getTimeoutFromObjectOrReply, in milliseconds.
    let Some(ms) = parse_i64(timeout) else {
        ctx.out
            .error("ERR timeout is not an integer or out of range");
        return;
    };
    let Ok(ms) = u64::try_from(ms) else {
        ctx.out.error("ERR timeout is negative");
        return;
    };
    // A deadline past what Instant can hold is as good as forever.
    let until = Instant::now()
        .checked_add(Duration::from_millis(ms))
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400));
    ctx.server.pause.pause(until, all);
    ctx.out.ok();
}

fn client_unblock(ctx: &mut Ctx<'_>, id: &[u8], mode: Option<&Bytes>) {
    let error = match mode {
        None => false,
        Some(mode) if eq_ignore_case(mode, "timeout") => false,
        Some(mode) if eq_ignore_case(mode, "error") => true,
        Some(_) => {
            ctx.out
                .error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR");
            return;
        }
    };
    let Some(id) = parse_i64(id) else {
        ctx.out.error(reply::NOT_INTEGER);
        return;
    };
    let target = ctx
        .server
        .clients
        .all()
        .into_iter()
        .find(|handle| i64::try_from(handle.id).is_ok_and(|handle_id| handle_id == id));
    match target {
        Some(handle) if handle.info.flags.load(Ordering::Relaxed) & FLAG_BLOCKED != 0 => {
            let request = if error {
                UNBLOCK_ERROR
            } else {
                UNBLOCK_TIMEOUT
            };
            handle.info.unblock.store(request, Ordering::Release);
            handle.info.unblocked.notify_one();
            ctx.out.int(1);
        }
        _ => ctx.out.int(0),
    }
}

/// Marks a connection parked ([`ClientInfo::parked`]) for as long as it lives.
pub(crate) struct Parked<'a>(&'a ClientInfo);

impl<'a> Parked<'a> {
    pub(crate) fn new(info: &'a ClientInfo) -> Self {
        info.parked.store(true, Ordering::Release);
        Parked(info)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.parked.store(false, Ordering::Release);
    }
}

/// Marks the connection as waiting for its client's bytes with everything it read run
/// ([`ClientInfo::turns`] odd).
pub(crate) fn turn_waiting(info: &ClientInfo) {
    let turns = info.turns.load(Ordering::Relaxed);
    if turns % 2 == 0 {
        info.turns.store(turns + 1, Ordering::Release);
    }
}

/// Marks the connection as reading (or running) ([`ClientInfo::turns`] even): called before
/// each read from the socket, so no byte is taken while the count is odd.
pub(crate) fn turn_reading(info: &ClientInfo) {
    let turns = info.turns.load(Ordering::Relaxed);
    if turns % 2 == 1 {
        info.turns.store(turns + 1, Ordering::Release);
    }
}

/// Returns true if and only if the client's connection waits in its loop with every command
/// the client sent run and nothing unread on its socket: a client that closed the connection
/// is then done (`crate::hangup`), as Redis frees one when its read returns 0 or fails.
pub(crate) fn ran_everything_sent(handle: &ClientHandle) -> bool {
    handle.info.turns.load(Ordering::Acquire) % 2 == 1
        && crate::limits::unread_bytes(handle.fd) == 0
}

/// How long CLIENT LIST waits, at most, for other connections to take in what their clients
/// had already sent ([`catch_up`]): a guard for liveness only (a connection in the middle of a
/// long command, or one whose client sends without pause), not the condition it waits for.
const CATCH_UP_WAIT: Duration = Duration::from_millis(100);

/// True if the command in `argv` is a CLIENT LIST to run now (not queued in MULTI): the
/// connection lets the others catch up first ([`catch_up`]).
pub(crate) fn wants_catch_up(client: &Client, argv: &[Bytes]) -> bool {
    client.multi.is_none()
        && argv.len() >= 2
        && eq_ignore_case(&argv[0], "client")
        && eq_ignore_case(&argv[1], "list")
}

/// One connection [`catch_up`] waits for: its turn count when the wait began.
struct Behind {
    handle: Arc<ClientHandle>,
    start: u64,
}

impl Behind {
    /// True once the connection has nothing left to take in of what had arrived when the wait
    /// began: it has been closed or killed, it parked or blocked (it will not read soon), it
    /// has since read in a turn begun after the wait began and gone back to waiting, or it is
    /// waiting with nothing unread (the count the same on both sides of `FIONREAD`: no read
    /// in between).
    fn caught_up(&self) -> bool {
        let handle = &self.handle;
        if !ready(handle) {
            return true;
        }
        let turns = handle.info.turns.load(Ordering::Acquire);
        if turns % 2 == 0 {
            return false;
        }
        // From an odd count the next reading turn ends at +2; from an even one (a turn under
        // way, whose read may have come before the bytes did) the one after it, at +3.
        let past = self.start + 2 + u64::from(self.start % 2 == 0);
        turns >= past
            || (crate::limits::unread_bytes(handle.fd) == 0
                && handle.info.turns.load(Ordering::Acquire) == turns)
    }
}

/// True if the connection of `handle` may read a client's commands soon: not killed, parked
/// or blocked, and not a replication link (a replica's connection streams from PSYNC on, and
/// never goes back to its turn; a master link reads the stream).
fn ready(handle: &ClientHandle) -> bool {
    !handle.killed.load(Ordering::Acquire)
        && !handle.info.parked.load(Ordering::Acquire)
        && handle.info.flags.load(Ordering::Relaxed) & FLAG_BLOCKED == 0
        && !is_replication_link(handle)
}

/// Lets every other connection that is running commands, or whose socket holds bytes its
/// client sent that it has not read yet, finish its turn (read and run them) before CLIENT
/// LIST describes the clients. Redis's one thread reads whatever has arrived before it serves
/// the next command, so a client that wrote and then asks on another connection finds its
/// bytes counted (Redis's "client evicted due to percentage of maxmemory") or the client its
/// over-limit command closed gone ("... freed by output buffer limit"); here each connection
/// reads on its own task and may not have got there yet.
///
/// The wait is for a condition, not a time ([`Behind::caught_up`]), and runs in the
/// connection's task before the command takes the command gate (an EXEC waiting for the gate
/// is not held up). Connections that will not read soon are not waited for: blocked ones and
/// parked ones (waiting for their client to read replies, for a pause's end, for WAIT's ACKs,
/// or in their own catch-up: two CLIENT LISTs never wait for each other). Only a connection in
/// the middle of a long command (a script, DEBUG SLEEP) or one whose client never stops
/// sending meets the [`CATCH_UP_WAIT`] guard. Costs one `FIONREAD` per connection.
pub(crate) async fn catch_up(server: &Server, me: &ClientHandle) {
    let mut behind: Vec<Behind> = server
        .clients
        .all()
        .into_iter()
        .filter(|handle| handle.id != me.id && ready(handle))
        .filter_map(|handle| {
            let start = handle.info.turns.load(Ordering::Acquire);
            let busy = start % 2 == 0;
            (busy || crate::limits::unread_bytes(handle.fd) > 0).then_some(Behind { handle, start })
        })
        .collect();
    if behind.is_empty() {
        return;
    }
    let _parked = Parked::new(&me.info);
    let deadline = Instant::now() + CATCH_UP_WAIT;
    loop {
        behind.retain(|waiting| !waiting.caught_up());
        if behind.is_empty() || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn client_list(ctx: &mut Ctx<'_>, argv: &[Bytes], filters: &[Bytes]) {
    let mut ids: Option<Vec<u64>> = None;
    let mut kind_filter = None;
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
            kind_filter = Some(client_kind_of_name(kind));
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
        if ids.as_ref().is_some_and(|ids| !ids.contains(&handle.id)) {
            continue;
        }
        // A client killed (CLIENT KILL, evicted, over a limit) is gone for Redis at once; its
        // connection here may take a moment to notice.
        if handle.killed.load(Ordering::Acquire) && handle.id != ctx.client.id {
            continue;
        }
        if kind_filter.is_some_and(|kind| kind != client_kind(&handle)) {
            continue;
        }
        let line = if handle.id == ctx.client.id {
            own_line(ctx, argv, "client|list")
        } else {
            client_line(&handle, &figures_of_other(&handle), None)
        };
        text.push_str(&line);
        text.push('\n');
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
    let mut user = None;
    let mut skipme = true;
    let mut kind_filter = None;
    let mut pairs = filters.chunks_exact(2);
    for pair in &mut pairs {
        let [option, value] = pair else { continue };
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
        } else if eq_ignore_case(option, "type") {
            if ["normal", "master", "replica", "slave", "pubsub"]
                .iter()
                .all(|t| !eq_ignore_case(value, t))
            {
                ctx.out.error(&format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(value)
                ));
                return;
            }
            kind_filter = Some(client_kind_of_name(value));
        } else if eq_ignore_case(option, "user") {
            if ctx.server.acl.get(value).is_none() {
                ctx.out.error(&format!(
                    "ERR No such user '{}'",
                    String::from_utf8_lossy(value)
                ));
                return;
            }
            user = Some(value.clone());
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
            && user
                .as_ref()
                .is_none_or(|user| *lock(&handle.user) == *user)
            && kind_filter.is_none_or(|kind| kind == client_kind(&handle))
            && !(skipme && handle.id == ctx.client.id);
        if matches {
            kill(ctx, &handle);
            killed += 1;
        }
    }
    ctx.out.int(killed);
}

/// Redis's client types, as CLIENT LIST / KILL TYPE select them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientKind {
    Normal,
    Replica,
    Master,
    Pubsub,
}

/// The type a (validated) TYPE argument names.
fn client_kind_of_name(name: &[u8]) -> ClientKind {
    if eq_ignore_case(name, "replica") || eq_ignore_case(name, "slave") {
        ClientKind::Replica
    } else if eq_ignore_case(name, "master") {
        ClientKind::Master
    } else if eq_ignore_case(name, "pubsub") {
        ClientKind::Pubsub
    } else {
        ClientKind::Normal
    }
}

/// A client's type as Redis's getClientType: a replica's link (not a monitor), this
/// replica's master client, a subscriber, or normal.
fn client_kind(handle: &ClientHandle) -> ClientKind {
    let flags = handle.info.flags.load(Ordering::Relaxed);
    if flags & FLAG_REPLICA != 0 && flags & FLAG_MONITOR == 0 {
        ClientKind::Replica
    } else if flags & FLAG_MASTER != 0 {
        ClientKind::Master
    } else if flags & FLAG_PUBSUB != 0 {
        ClientKind::Pubsub
    } else {
        ClientKind::Normal
    }
}

fn kill(ctx: &mut Ctx<'_>, handle: &ClientHandle) {
    if handle.id == ctx.client.id {
        ctx.client.close_after_reply = true;
    } else {
        handle.kill();
        ctx.server.replication.remove_link_of(handle.id);
    }
}

#[cfg(test)]
mod tests {
    use super::Pause;
    use std::time::{Duration, Instant};

    /// FAILOVER's pause and CLIENT PAUSE are two purposes, as Redis's: each ends only its own.
    #[test]
    fn failover_and_client_pauses_end_separately() {
        let pause = Pause::default();
        pause.start_failover();
        assert!(pause.holds_writes());
        assert!(pause.deadline_for(false).is_none(), "reads go on");
        pause.unpause();
        assert!(
            pause.holds_writes(),
            "CLIENT UNPAUSE leaves the failover's pause"
        );
        pause.pause(Instant::now() + Duration::from_secs(60), true);
        pause.end_failover();
        assert!(pause.holds_writes(), "the client's pause stays");
        assert!(
            pause.deadline_for(false).is_some(),
            "PAUSE ALL holds reads too"
        );
        pause.unpause();
        assert!(!pause.maybe_active());
        // An expired client pause under a failover leaves the failover's in force.
        pause.start_failover();
        pause.pause(Instant::now(), true);
        assert!(pause.deadline_for(false).is_none());
        assert!(pause.holds_writes());
        pause.end_failover();
        assert!(!pause.holds_writes());
        assert!(!pause.maybe_active());
    }

    fn handle_on(fd: i32) -> std::sync::Arc<crate::server::ClientHandle> {
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
        let (push, _pushes) = tokio::sync::mpsc::unbounded_channel();
        std::sync::Arc::new(crate::server::ClientHandle {
            id: 1,
            addr: addr.into(),
            local_addr: addr.into(),
            created: Instant::now(),
            last_interaction_ms: Default::default(),
            name: Default::default(),
            db: Default::default(),
            resp: Default::default(),
            last_command: Default::default(),
            killed: Default::default(),
            kill: Default::default(),
            fd,
            info: Default::default(),
            push,
            awaiting_seq: Default::default(),
            user: std::sync::Mutex::new(bytes::Bytes::from_static(b"default")),
        })
    }

    /// CLIENT LIST's catch-up waits for a connection with unread bytes until a turn begun
    /// after the wait has ended (two more counts from a waiting one, three from a busy one,
    /// whose read may have come before the bytes); one waiting with nothing unread is caught
    /// up at once; parked connections and replication links are never waited for.
    #[test]
    fn catch_up_waits_for_the_turn_that_takes_the_unread_bytes() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        use std::sync::atomic::Ordering;
        let (mut client, server_end) = std::os::unix::net::UnixStream::pair().unwrap();
        client.write_all(b"PING\r\n").unwrap();
        let handle = handle_on(server_end.as_raw_fd());
        let turns = &handle.info.turns;
        for (start, done_at) in [(1, 3), (2, 5)] {
            turns.store(start, Ordering::Relaxed);
            let behind = super::Behind {
                handle: std::sync::Arc::clone(&handle),
                start,
            };
            for turn in start..done_at {
                turns.store(turn, Ordering::Relaxed);
                assert!(!behind.caught_up(), "start {start}, turn {turn}");
            }
            turns.store(done_at, Ordering::Relaxed);
            assert!(behind.caught_up(), "start {start}, turn {done_at}");
            // Parked, or a replication link: not waited for.
            turns.store(start + 1, Ordering::Relaxed);
            let parked = super::Parked::new(&handle.info);
            assert!(behind.caught_up());
            drop(parked);
            handle
                .info
                .flags
                .fetch_or(super::FLAG_REPLICA, Ordering::Relaxed);
            assert!(behind.caught_up());
            handle
                .info
                .flags
                .fetch_and(!super::FLAG_REPLICA, Ordering::Relaxed);
            assert!(!behind.caught_up());
        }
        // Waiting with nothing unread: caught up at once.
        let (_client, idle_end) = std::os::unix::net::UnixStream::pair().unwrap();
        let idle = handle_on(idle_end.as_raw_fd());
        idle.info.turns.store(7, Ordering::Relaxed);
        let behind = super::Behind {
            handle: idle,
            start: 7,
        };
        assert!(behind.caught_up());
    }
}
