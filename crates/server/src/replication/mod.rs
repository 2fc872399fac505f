//! Replication: the state a primary and a replica share (role, replication IDs, offsets, the
//! stream buffer with its backlog, the list of replicas), the effect consumer that turns the
//! effect stream into the replication stream, and INFO replication / ROLE.
//!
//! # Layout
//! - `mod.rs` (this file): [`Replication`], the shared state and its documented API for both
//!   sides (see "API for the replica side" below).
//! - `backlog.rs`: [`backlog::Stream`], the stream's bytes by offset (backlog plus what replicas
//!   still need, one buffer as Redis 7.0's shared replication buffer).
//! - `primary.rs`: a replica's link on the primary: PSYNC/SYNC decisions, the full sync (an
//!   epoch cut saved into sockets or a file), streaming, ACKs, WAIT, the cron.
//! - `sink.rs`: the snapshot `Sink` that feeds a replica's socket.
//! - `commands.rs`: REPLCONF, PSYNC, SYNC, WAIT, ROLE.
//! - `replica.rs`: forkless as a replica (REPLICAOF / SLAVEOF, ROLE's replica form, INFO's
//!   replica fields, READONLY / MASTERDOWN); `replica/link.rs` the link to the master,
//!   `replica/transfer.rs` the full sync's RDB (docs/replication.md, "forkless as a replica").
//!
//! ```text
//!  EffectStream ──► Propagator::consume ──► Renderer (SELECT, MULTI/EXEC) ──► RESP bytes
//!                   (this file)                                                  │
//!                                  backlog::Stream [start .. end = master_repl_offset]
//!                                                                                │
//!                    each replica's link task (primary.rs) copies from its position,
//!                    writes to its socket; ACKs come back on the same socket
//! ```
//!
//! Offsets are Redis's: the number of bytes of the stream since the replication ID began
//! (`master_repl_offset`), so a Redis replica's `PSYNC <replid> <offset>` is answered from
//! the same numbers.
//!
//! # API for the replica side (`replica.rs`)
//! - [`Replication::set_role_replica`] when this server becomes a replica (REPLICAOF host
//!   port): from then on the effect stream is not rendered into the stream; instead the
//!   replica feeds the bytes it receives from its master, verbatim, with
//!   [`Replication::feed_from_master`], which appends them to the backlog, advances
//!   `master_repl_offset` and forwards them to sub-replicas (Redis's
//!   `replicationFeedStreamFromMasterStream`), so a chain and PSYNC2 keep the master's offsets.
//! - [`Replication::reset_after_full_sync`]`(server, replid, offset)` once a full sync from
//!   the master has loaded: the master's replid and the `+FULLRESYNC` offset become ours, the
//!   backlog restarts there (a replica always keeps one, so its sub-replicas can PSYNC with the
//!   master's ID), and sub-replicas are dropped (their data is stale), as Redis's
//!   `replicationAttachToNewMaster`. After `+CONTINUE <newid>` from a master whose ID changed,
//!   call [`Replication::shift_replid_to`] instead (Redis's `replicationResurrectCachedMaster`
//!   path keeps the offset and moves the old ID to `replid2`).
//! - [`Replication::shift_replid`] on REPLICAOF NO ONE (promotion): the current replid becomes
//!   `master_replid2` valid up to `second_repl_offset = master_repl_offset + 1`, and a new
//!   replid is drawn, so sibling replicas of the old master resume with `+CONTINUE`; then
//!   [`Replication::set_role_master`] makes writes flow from the effect stream again.
//! - [`Replication::apply_guard`]: the master link holds it across applying one command of
//!   the master's stream (`cmd::execute`) and feeding that command's bytes, so that a
//!   sub-replica's full sync (which takes it around its cut) gets the offset that matches its
//!   snapshot. Bytes that are not commands (PING, REPLCONF GETACK) are fed without it.
//! - [`Replication::shift_replid_to`] on `+CONTINUE <newid>` with a new ID;
//!   [`Replication::disconnect_replicas`] where Redis calls `disconnectSlaves`.
//! - [`Replication::offset`] and [`Replication::replid`] for the replica's own PSYNC and INFO.

pub(crate) mod backlog;
pub(crate) mod commands;
pub(crate) mod failover;
pub(crate) mod primary;
pub(crate) mod replica;
mod save_info;
mod sink;

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use forkless_storage::effect::Seq;

use crate::effects::{ConsumerId, Effect, EffectConsumer, Renderer};
use crate::server::{ClientHandle, Server, lock, unix_ms};

pub(crate) use primary::{Handover, ReplConf, WaitRequest};
pub(crate) use save_info::SaveRepl;

/// A replica's state on the primary, as INFO names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum LinkState {
    /// Waiting for a full sync to start (Redis's WAIT_BGSAVE_START / END).
    WaitBgsave = 0,
    /// Receiving the RDB.
    SendBulk = 1,
    /// Receiving the stream.
    Online = 2,
}

impl LinkState {
    fn as_str(self) -> &'static str {
        match self {
            LinkState::WaitBgsave => "wait_bgsave",
            LinkState::SendBulk => "send_bulk",
            LinkState::Online => "online",
        }
    }
}

/// One replica connected to this server.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) handle: Arc<ClientHandle>,
    /// `REPLCONF ip-address`, else the connection's peer address.
    pub(crate) ip: String,
    /// `REPLCONF listening-port`.
    pub(crate) listening_port: AtomicU32,
    state: AtomicU8,
    /// The next stream offset to send it; `u64::MAX` while it is not attached to the stream
    /// (waiting for its full sync's cut). Attached replicas pin the stream from here.
    pub(crate) position: AtomicU64,
    /// The offset of its last `REPLCONF ACK`.
    pub(crate) ack_offset: AtomicU64,
    /// When that ACK came (or when it went online), ms since the Unix epoch.
    pub(crate) ack_unix_ms: AtomicU64,
    /// Since when its pending output has been over the soft limit, ms since the Unix epoch
    /// (0: not over it).
    soft_over_since_ms: AtomicU64,
    /// Set once it has been dropped (output limit, timeout): the link task ends.
    pub(crate) dropped: AtomicBool,
    /// Announced `capa eof`: it can take a diskless sync.
    pub(crate) capa_eof: bool,
    /// `REPLCONF forkless-dual <token>`: a dual-channel full sync, whose stream goes on a
    /// second connection (`primary::decide_dual_stream`).
    pub(crate) dual_token: Option<String>,
    /// Came with the old SYNC: it never sends ACKs, so `repl-timeout` does not apply.
    pub(crate) pre_psync: bool,
    /// When it asked for its full sync.
    pub(crate) arrived: Instant,
}

/// Not attached to the stream.
pub(crate) const DETACHED: u64 = u64::MAX;

impl Link {
    pub(crate) fn state(&self) -> LinkState {
        match self.state.load(Ordering::Relaxed) {
            0 => LinkState::WaitBgsave,
            1 => LinkState::SendBulk,
            _ => LinkState::Online,
        }
    }

    pub(crate) fn set_state(&self, state: LinkState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// Pending output: stream bytes not yet written to it.
    fn pending(&self, end: u64) -> u64 {
        match self.position.load(Ordering::Relaxed) {
            DETACHED => 0,
            position => end.saturating_sub(position),
        }
    }
}

/// The server's replication state (one per server, `Server::replication`).
#[derive(Debug, Default)]
pub(crate) struct Replication {
    pub(crate) shared: Arc<Shared>,
    /// The replica side: the link to this server's master, when it has one.
    pub(crate) replica: replica::Replica,
    /// A coordinated failover (FAILOVER), when one runs.
    pub(crate) failover: failover::Failover,
}

/// What the effect consumer and the link tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// A std mutex: taken by the effect consumer (under the effect stream's lock, so never
    /// the other way round), by link tasks to copy bytes out, and by INFO; never across an
    /// await or a socket write.
    state: Mutex<State>,
    /// Woken (notify_waiters) whenever the stream grows: link tasks wait on it.
    pub(crate) grown: tokio::sync::Notify,
    /// The link tasks' copy buffers, for as long as the tasks hold them (a killed replica's
    /// task may hold its buffer a moment after the link is gone): replicas' output in
    /// flight, left out of eviction with the stream they copy.
    pub(crate) stream_buffers: AtomicU64,
    /// Woken whenever a replica acknowledges an offset: WAIT waits on it.
    pub(crate) acked: tokio::sync::Notify,
    /// Returns true if and only if a full sync's save is running (one at a time).
    pub(crate) sync_running: AtomicBool,
    /// `State::replicas.len()`, stored under the state's lock whenever it changes: the
    /// eviction check before every command reads it without the lock, and needs the lock
    /// (`mem_clients_slaves`) only when there are replicas.
    replica_links: AtomicUsize,
    /// Replicas that are online with a lag within `min-replicas-max-lag` (refreshed by the
    /// cron, and by each write checked against `min-replicas-to-write`).
    pub(crate) good_replicas: AtomicU64,
    /// INFO stats.
    pub(crate) sync_full: AtomicU64,
    pub(crate) sync_partial_ok: AtomicU64,
    pub(crate) sync_partial_err: AtomicU64,
    /// Bytes written to replicas' sockets (`total_net_repl_output_bytes`).
    pub(crate) net_output_bytes: AtomicU64,
    /// Returns true if and only if the cron thread was started.
    pub(crate) cron_started: AtomicBool,
    /// Replicas waiting for a full sync to start. A std mutex, held only to add or take.
    pub(crate) waiting: Mutex<Vec<primary::Waiting>>,
    /// Serializes creating and freeing the backlog (attaching and detaching the effect
    /// consumer). Taken under no other lock; the effect stream's lock is taken under it.
    backlog_switch: Mutex<()>,
    /// On a replica: held by the master link across applying one command of the master's
    /// stream and feeding its bytes ([`Replication::apply_guard`]), and by a sub-replica's
    /// full sync across its cut, so the cut never falls between a command and its bytes.
    /// Taken before the command gate (by both), never under another lock.
    apply_lock: Mutex<()>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            state: Mutex::new(State::default()),
            grown: tokio::sync::Notify::new(),
            stream_buffers: AtomicU64::new(0),
            acked: tokio::sync::Notify::new(),
            sync_running: AtomicBool::new(false),
            replica_links: AtomicUsize::new(0),
            good_replicas: AtomicU64::new(0),
            sync_full: AtomicU64::new(0),
            sync_partial_ok: AtomicU64::new(0),
            sync_partial_err: AtomicU64::new(0),
            net_output_bytes: AtomicU64::new(0),
            cron_started: AtomicBool::new(false),
            waiting: Mutex::new(Vec::new()),
            backlog_switch: Mutex::new(()),
            apply_lock: Mutex::new(()),
        }
    }
}

#[derive(Debug)]
pub(crate) struct State {
    /// True while this server is a replica: the stream is fed from the master's bytes.
    role_replica: bool,
    pub(crate) replid: String,
    pub(crate) replid2: String,
    /// `second_repl_offset`: the last offset (Redis's, 1-based) `replid2` is valid for; -1.
    pub(crate) second_repl_offset: i64,
    pub(crate) stream: backlog::Stream,
    /// Returns true if and only if the backlog exists (`repl_backlog_active`): the effect
    /// stream is consumed, and PSYNC can resume.
    pub(crate) backlog_active: bool,
    consumer: Option<ConsumerId>,
    renderer: Renderer,
    /// Some while a cut is being taken: effects wait here until the cut's number is known.
    early: Option<Vec<Effect>>,
    /// How many cuts hold effects in `early` (a full sync's and a save's may overlap): they
    /// are rendered when the last one lets go.
    holds: u32,
    /// Saves whose cut has been taken and whose replication offset is not yet known
    /// (`save_info.rs`).
    marks: Vec<save_info::Mark>,
    next_mark: u64,
    /// The full sync whose cut has been taken and whose first stream byte is not yet known.
    boundary: Option<Boundary>,
    pub(crate) replicas: Vec<Arc<Link>>,
    /// Since when no replica has been connected, for `repl-backlog-ttl`.
    no_replicas_since: Option<Instant>,
    /// `client-output-buffer-limit replica`: hard, soft, soft seconds.
    pub(crate) obuf_limits: (u64, u64, u64),
}

/// Where a full sync's cut falls in the stream.
#[derive(Debug)]
struct Boundary {
    /// Effects numbered from here on are after the cut.
    seq: Seq,
    /// Set once the first byte after the cut is known: its offset.
    crossed: Option<u64>,
    /// The replicas of this sync, attached to the stream at the crossing.
    links: Vec<Arc<Link>>,
}

impl Default for State {
    fn default() -> Self {
        State {
            role_replica: false,
            replid: random_replid(),
            replid2: NO_REPLID.to_owned(),
            second_repl_offset: -1,
            stream: backlog::Stream::new(0, 1 << 20),
            backlog_active: false,
            consumer: None,
            renderer: Renderer::default(),
            early: None,
            holds: 0,
            marks: Vec::new(),
            next_mark: 0,
            boundary: None,
            replicas: Vec::new(),
            no_replicas_since: None,
            obuf_limits: (256 << 20, 64 << 20, 60),
        }
    }
}

/// Redis's all-zero replication ID (`master_replid2` when there is none).
pub(crate) const NO_REPLID: &str = "0000000000000000000000000000000000000000";

/// A new random 40-character replication ID.
pub(crate) fn random_replid() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..40)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}

/// The effect consumer that renders effects into the replication stream.
struct Propagator(Arc<Shared>);

impl EffectConsumer for Propagator {
    fn consume(&self, effect: &Effect) {
        let mut state = lock(&self.0.state);
        if state.role_replica {
            return;
        }
        if let Some(early) = state.early.as_mut() {
            early.push(effect.clone());
            return;
        }
        propagate(&mut state, effect);
        drop(state);
        self.0.grown.notify_waiters();
    }
}

/// Renders one effect into the stream; first, if it is the first effect after a pending
/// full sync's cut, marks the crossing there.
fn propagate(state: &mut State, effect: &Effect) {
    save_info::cross_marks(state, effect.seq);
    if state
        .boundary
        .as_ref()
        .is_some_and(|b| b.crossed.is_none() && effect.seq >= b.seq)
    {
        cross(state);
    }
    let mut commands = Vec::new();
    state.renderer.render(effect, &mut commands);
    let mut bytes = Vec::new();
    for argv in &commands {
        crate::aof::writer::encode(&mut bytes, argv);
    }
    append(state, &bytes);
}

/// The stream reaches the cut of the pending full sync: its replicas start here, and the
/// database is selected again before the next command (the replica starts in db 0 after
/// loading, as Redis forces a SELECT after a replication save).
fn cross(state: &mut State) {
    let offset = state.stream.end();
    state.renderer = Renderer::default();
    if let Some(boundary) = state.boundary.as_mut() {
        boundary.crossed = Some(offset);
        for link in &boundary.links {
            if !link.dropped.load(Ordering::Relaxed) {
                link.position.store(offset, Ordering::Relaxed);
            }
        }
    }
}

/// Appends bytes to the stream, drops replicas over their output limit, frees what no one
/// needs any more.
fn append(state: &mut State, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    state.stream.append(bytes);
    let end = state.stream.end();
    let (hard, soft, soft_secs) = state.obuf_limits;
    let now_ms = unix_ms();
    let mut dropped = false;
    for link in &state.replicas {
        let pending = link.pending(end);
        let over_hard = hard > 0 && pending >= hard;
        let mut over_soft = false;
        if soft > 0 && pending >= soft {
            let since = link.soft_over_since_ms.load(Ordering::Relaxed);
            if since == 0 {
                link.soft_over_since_ms.store(now_ms, Ordering::Relaxed);
            }
            over_soft = since != 0 && now_ms.saturating_sub(since) >= soft_secs * 1000;
            over_soft |= soft_secs == 0;
        } else {
            link.soft_over_since_ms.store(0, Ordering::Relaxed);
        }
        if over_hard || over_soft {
            tracing::warn!(
                "Client id={} addr={} flags=S scheduled to be closed ASAP for overcoming of \
                 output buffer limits.",
                link.handle.id,
                link.handle.addr
            );
            drop_link(link);
            dropped = true;
        }
    }
    if dropped {
        state
            .replicas
            .retain(|link| !link.dropped.load(Ordering::Relaxed));
        if state.replicas.is_empty() {
            state.no_replicas_since = Some(Instant::now());
        }
    }
    trim(state);
}

fn drop_link(link: &Link) {
    link.dropped.store(true, Ordering::Relaxed);
    link.position.store(DETACHED, Ordering::Relaxed);
    link.handle.kill();
}

fn trim(state: &mut State) {
    let keep_from = state
        .replicas
        .iter()
        .map(|link| link.position.load(Ordering::Relaxed))
        .min()
        .unwrap_or(DETACHED);
    state.stream.trim(keep_from);
}

impl Replication {
    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.shared.state)
    }

    /// `master_repl_offset`.
    pub(crate) fn offset(&self) -> u64 {
        self.state().stream.end()
    }

    /// `master_replid`.
    pub(crate) fn replid(&self) -> String {
        self.state().replid.clone()
    }

    /// Creates the backlog if there is none (the first replica): attaches the effect consumer
    /// and, as Redis, draws a new replication ID and clears the second one.
    pub(crate) fn ensure_backlog(&self, server: &Server) {
        // Held across the attach, so a second caller returns only once effects flow.
        let _switch = lock(&self.shared.backlog_switch);
        let size = backlog_size(server);
        {
            let mut state = self.state();
            if state.backlog_active {
                return;
            }
            state.replid = random_replid();
            state.replid2 = NO_REPLID.to_owned();
            state.second_repl_offset = -1;
            let end = state.stream.end();
            state.stream = backlog::Stream::new(end, size);
            state.backlog_active = true;
            state.renderer = Renderer::default();
            tracing::info!(
                "Replication backlog created, my new replication IDs are '{}' and '{}'",
                state.replid,
                state.replid2
            );
        }
        self.attach_consumer(server);
    }

    /// Attaches the effect consumer if it is not. It renders nothing while this server is a
    /// replica, but stays attached so that a promotion needs no cut to start the stream.
    /// Called with `backlog_switch` held.
    fn attach_consumer(&self, server: &Server) {
        if self.state().consumer.is_some() {
            return;
        }
        // The stream's lock is taken before ours by the consumer: never under ours.
        let consumer: Arc<dyn EffectConsumer> = Arc::new(Propagator(Arc::clone(&self.shared)));
        let id = server.effects.attach(&server.keyspace, consumer);
        self.state().consumer = Some(id);
    }

    /// Frees the backlog (no replica for `repl-backlog-ttl`): the effect stream is no longer
    /// consumed, and a new replication ID is drawn so that no old replica resumes from stale
    /// data, as Redis.
    fn free_backlog(&self, server: &Server, ttl: u64) {
        let _switch = lock(&self.shared.backlog_switch);
        let consumer = {
            let mut state = self.state();
            if !state.backlog_active || !state.replicas.is_empty() || state.role_replica {
                return;
            }
            let end = state.stream.end();
            let size = state.stream.backlog_size();
            state.stream = backlog::Stream::new(end, size);
            state.backlog_active = false;
            state.replid = random_replid();
            state.replid2 = NO_REPLID.to_owned();
            state.second_repl_offset = -1;
            state.consumer.take()
        };
        if let Some(consumer) = consumer {
            server.effects.detach(&server.keyspace, consumer);
        }
        tracing::info!("Replication backlog freed after {ttl} seconds without connected replicas.");
    }

    /// Appends bytes that are not effects (PING, REPLCONF GETACK) to the stream.
    pub(crate) fn append_raw(&self, bytes: &[u8]) {
        let mut state = self.state();
        // A replica's stream is its master's bytes only (a cron PING racing a switch to
        // replica, REPLICAOF or FAILOVER, would put bytes in it the master never sent).
        if !state.backlog_active || state.role_replica {
            return;
        }
        append(&mut state, bytes);
        drop(state);
        self.shared.grown.notify_waiters();
    }

    /// Replica side: the bytes of the master's stream, as received (and applied), appended to
    /// the backlog and forwarded to sub-replicas; `master_repl_offset` advances by their
    /// length. Creates nothing: without a backlog (no sub-replica ever) only the offset moves.
    pub(crate) fn feed_from_master(&self, bytes: &[u8]) {
        let mut state = self.state();
        if state.backlog_active {
            append(&mut state, bytes);
        } else {
            let end = state.stream.end() + bytes.len() as u64;
            let size = state.stream.backlog_size();
            state.stream = backlog::Stream::new(end, size);
        }
        drop(state);
        self.shared.grown.notify_waiters();
    }

    /// Replica side: hold this across applying one command of the master's stream (through
    /// `cmd::execute`) and [`Replication::feed_from_master`] of that command's bytes. A full
    /// sync of a sub-replica takes it around its cut, so the offset it gives the sub-replica
    /// counts exactly the commands its snapshot holds.
    pub(crate) fn apply_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        lock(&self.shared.apply_lock)
    }

    /// Before a full sync's cut: on a replica, the guard that keeps the master link from
    /// applying meanwhile; None on a primary (its crossing comes from the effect numbers).
    fn cut_guard(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        let replica = self.state().role_replica;
        replica.then(|| lock(&self.shared.apply_lock))
    }

    /// On a replica, right after a sub-replica's cut with [`Replication::cut_guard`] held:
    /// every applied command's bytes are in the stream and no other is, so the crossing is
    /// the stream's end.
    fn cross_at_end(&self) {
        let mut state = self.state();
        if state.boundary.as_ref().is_some_and(|b| b.crossed.is_none()) {
            cross(&mut state);
        }
    }

    /// Replica side: this server follows a master; the effect stream is no longer rendered.
    pub(crate) fn set_role_replica(&self) {
        self.state().role_replica = true;
    }

    /// Replica side: this server is a master again (after [`Replication::shift_replid`]).
    pub(crate) fn set_role_master(&self) {
        let mut state = self.state();
        state.role_replica = false;
        state.renderer = Renderer::default();
    }

    /// Replica side, after a full sync from the master loaded: adopt the master's replication
    /// ID and offset (the `+FULLRESYNC` line's), restart the backlog there (a replica always
    /// has one, as Redis's, so its own replicas can PSYNC with the master's ID), and drop this
    /// server's own replicas, whose data no longer matches.
    pub(crate) fn reset_after_full_sync(&self, server: &Server, replid: &str, offset: u64) {
        let _switch = lock(&self.shared.backlog_switch);
        let size = backlog_size(server);
        {
            let mut state = self.state();
            state.replid = replid.to_owned();
            state.replid2 = NO_REPLID.to_owned();
            state.second_repl_offset = -1;
            state.stream = backlog::Stream::new(offset, size);
            state.backlog_active = true;
            for link in std::mem::take(&mut state.replicas) {
                drop_link(&link);
            }
            self.replicas_changed(&state);
            state.no_replicas_since = Some(Instant::now());
        }
        self.attach_consumer(server);
    }

    /// PSYNC2 on promotion (REPLICAOF NO ONE), as Redis's `shiftReplicationId`: the current
    /// ID becomes the second one, valid up to the current offset, and a new ID is drawn. A
    /// replica of the old master that asks `PSYNC <old id> <offset>` with an offset up to
    /// `master_repl_offset + 1` continues partially.
    pub(crate) fn shift_replid(&self) {
        let mut state = self.state();
        state.replid2 = std::mem::replace(&mut state.replid, random_replid());
        // Redis: the replica has processed up to master_repl_offset, so the next byte it can
        // ask for is offset + 1.
        state.second_repl_offset = i64::try_from(state.stream.end())
            .unwrap_or(i64::MAX)
            .saturating_add(1);
        tracing::info!(
            "Setting secondary replication ID to {}, valid up to offset: {}. New replication ID is {}",
            state.replid2,
            state.second_repl_offset,
            state.replid
        );
    }

    /// Replica side, on `+CONTINUE <newid>` where `newid` differs from ours (the master was
    /// itself promoted): our ID becomes `replid2`, valid up to the current offset + 1, and
    /// `newid` becomes ours; the offset and backlog stay, as Redis 7.0 does, so sub-replicas
    /// keep continuing.
    pub(crate) fn shift_replid_to(&self, new_replid: &str) {
        let mut state = self.state();
        state.replid2 = std::mem::replace(&mut state.replid, new_replid.to_owned());
        state.second_repl_offset = i64::try_from(state.stream.end())
            .unwrap_or(i64::MAX)
            .saturating_add(1);
        drop(state);
        // Sub-replicas learn the new ID on their next PSYNC; Redis disconnects them for that.
        self.disconnect_replicas();
    }

    /// Drops every replica's link (they reconnect and PSYNC), as Redis's `disconnectSlaves`.
    pub(crate) fn disconnect_replicas(&self) {
        let mut state = self.state();
        for link in std::mem::take(&mut state.replicas) {
            drop_link(&link);
        }
        self.replicas_changed(&state);
        state.no_replicas_since = Some(Instant::now());
        trim(&mut state);
    }

    /// `mem_clients_slaves`: what replicas' pending output holds, counted per replica as
    /// Redis 7.0 counts a replica's share of the replication buffer.
    pub(crate) fn mem_clients_slaves(&self) -> u64 {
        if self.shared.replica_links.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let state = self.state();
        let end = state.stream.end();
        state.replicas.iter().map(|link| link.pending(end)).sum()
    }

    /// What replicas pin of the stream's memory beyond the backlog
    /// ([`backlog::Stream::beyond_backlog`]) and their links' copy buffers: left out of
    /// eviction.
    /// Without replicas, the stream holds the backlog alone (trimmed as a replica goes): a
    /// relaxed load or two, no lock, as `mem_clients_slaves`.
    pub(crate) fn not_counted_for_evict(&self) -> u64 {
        let buffers = self.shared.stream_buffers.load(Ordering::Relaxed);
        if self.shared.replica_links.load(Ordering::Relaxed) == 0 {
            return buffers;
        }
        self.state().stream.beyond_backlog().saturating_add(buffers)
    }

    /// `mem_replication_backlog`: the stream buffer's bytes.
    pub(crate) fn mem_backlog(&self) -> u64 {
        self.state().stream.held()
    }

    /// The number of replicas (`connected_slaves`).
    pub(crate) fn replica_count(&self) -> usize {
        self.state().replicas.len()
    }

    /// Returns true if and only if `client_id` is a replica's connection.
    pub(crate) fn is_replica(&self, client_id: u64) -> bool {
        self.state()
            .replicas
            .iter()
            .any(|link| link.handle.id == client_id)
    }

    /// Registers a replica.
    pub(crate) fn add_link(&self, link: Arc<Link>) {
        let mut state = self.state();
        state.replicas.push(link);
        self.replicas_changed(&state);
        state.no_replicas_since = None;
    }

    /// Unregisters the replica whose connection is client `client_id`, if it is one: CLIENT
    /// KILL frees what it pinned at once, as Redis frees a killed replica's client, rather
    /// than when its link task next wakes.
    pub(crate) fn remove_link_of(&self, client_id: u64) {
        let link = self
            .state()
            .replicas
            .iter()
            .find(|link| link.handle.id == client_id)
            .cloned();
        if let Some(link) = link {
            self.remove_link(&link);
        }
    }

    /// Publishes the number of replicas after `state.replicas` changed (under its lock).
    pub(crate) fn replicas_changed(&self, state: &State) {
        self.shared
            .replica_links
            .store(state.replicas.len(), Ordering::Relaxed);
    }

    /// Unregisters a replica (its connection ended).
    pub(crate) fn remove_link(&self, link: &Arc<Link>) {
        let mut state = self.state();
        state.replicas.retain(|held| !Arc::ptr_eq(held, link));
        self.replicas_changed(&state);
        if let Some(boundary) = state.boundary.as_mut() {
            boundary.links.retain(|held| !Arc::ptr_eq(held, link));
        }
        link.dropped.store(true, Ordering::Relaxed);
        link.position.store(DETACHED, Ordering::Relaxed);
        if state.replicas.is_empty() {
            state.no_replicas_since = Some(Instant::now());
        }
        trim(&mut state);
    }

    /// Before a full sync's cut: effects wait until the cut's number is known.
    fn hold_effects(&self) {
        let mut state = self.state();
        state.holds += 1;
        state.early.get_or_insert_with(Vec::new);
    }

    /// After the cut numbered `seq` (or after a failed attempt, `None`): the held effects are
    /// rendered, and the crossing is marked at the first one numbered `seq` or above.
    fn release_effects(&self, cut: Option<(Seq, Vec<Arc<Link>>)>) {
        let mut state = self.state();
        if let Some((seq, links)) = cut {
            state.boundary = Some(Boundary {
                seq,
                crossed: None,
                links,
            });
        }
        state.holds = state.holds.saturating_sub(1);
        if state.holds > 0 {
            // Another cut still holds them: it renders them when it lets go.
            return;
        }
        let early = state.early.take().unwrap_or_default();
        for effect in &early {
            propagate(&mut state, effect);
        }
        drop(state);
        self.shared.grown.notify_waiters();
    }

    /// The crossing of the pending full sync, once known; marks it now if every effect below
    /// the cut has been handed over (`effects_next`) and none after it has come.
    fn crossing(&self, effects_next: Seq) -> Option<u64> {
        let mut state = self.state();
        let boundary = state.boundary.as_ref()?;
        if let Some(offset) = boundary.crossed {
            return Some(offset);
        }
        if state.early.is_some() {
            // Effects below the cut may wait there (another cut holds them).
            return None;
        }
        if effects_next >= state.boundary.as_ref()?.seq {
            cross(&mut state);
            return state.boundary.as_ref().and_then(|b| b.crossed);
        }
        None
    }

    fn clear_boundary(&self) {
        self.state().boundary = None;
    }
}

/// `repl-backlog-size`.
fn backlog_size(server: &Server) -> u64 {
    u64::try_from(server.config().stored_int("repl-backlog-size", 1 << 20))
        .unwrap_or(1 << 20)
        .max(1)
}

/// INFO's `# Replication` section: the master form's fields, with the replica form's
/// (`replica::info_fields`) after `role` on a replica.
pub(crate) fn info_section(server: &Server, text: &mut String) {
    let config = server.config();
    let min_to_write = config.stored_int("min-replicas-to-write", 0);
    let max_lag = config.stored_int("min-replicas-max-lag", 10);
    drop(config);
    // The replica form's fields, read before the state lock (they read the offset).
    let mut replica_fields = String::new();
    replica::info_fields(server, &mut replica_fields);
    let state = server.replication.state();
    let line = |text: &mut String, name: &str, value: &dyn std::fmt::Display| {
        text.push_str(name);
        text.push(':');
        text.push_str(&value.to_string());
        text.push_str("\r\n");
    };
    text.push_str("# Replication\r\n");
    line(
        text,
        "role",
        &if state.role_replica {
            "slave"
        } else {
            "master"
        },
    );
    text.push_str(&replica_fields);
    line(text, "connected_slaves", &state.replicas.len());
    if min_to_write > 0 && max_lag > 0 {
        line(
            text,
            "min_slaves_good_slaves",
            &server
                .replication
                .shared
                .good_replicas
                .load(Ordering::Relaxed),
        );
    }
    let now_ms = unix_ms();
    for (idx, link) in state.replicas.iter().enumerate() {
        let link_state = link.state();
        let lag = if link_state == LinkState::Online {
            now_ms.saturating_sub(link.ack_unix_ms.load(Ordering::Relaxed)) / 1000
        } else {
            0
        };
        text.push_str(&format!(
            "slave{idx}:ip={},port={},state={},offset={},lag={}\r\n",
            link.ip,
            link.listening_port.load(Ordering::Relaxed),
            link_state.as_str(),
            link.ack_offset.load(Ordering::Relaxed),
            lag
        ));
    }
    line(
        text,
        "master_failover_state",
        &server.replication.failover.state_name(),
    );
    line(text, "master_replid", &state.replid);
    line(text, "master_replid2", &state.replid2);
    line(text, "master_repl_offset", &state.stream.end());
    line(text, "second_repl_offset", &state.second_repl_offset);
    line(text, "repl_backlog_active", &u8::from(state.backlog_active));
    line(text, "repl_backlog_size", &state.stream.backlog_size());
    let (first, histlen) = if state.backlog_active {
        (state.stream.backlog_start() + 1, state.stream.histlen())
    } else {
        (0, 0)
    };
    line(text, "repl_backlog_first_byte_offset", &first);
    line(text, "repl_backlog_histlen", &histlen);
}

#[cfg(test)]
mod tests;
