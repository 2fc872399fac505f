//! Coordinated failover: `FAILOVER [TO host port [FORCE]] [ABORT] [TIMEOUT ms]`, Redis 7.0's
//! `failoverCommand`, `updateFailoverStatus` and `abortFailover`.
//!
//! ```text
//! FAILOVER ─► checks ─► writes paused (Pause::start_failover) ─► waiting-for-sync
//!   watch (a tokio task, on every ACK and every 100 ms):
//!     TIMEOUT passed: FORCE ─► failover-in-progress; else abort ("Replica never caught up
//!                     before timeout")
//!     the target (or, without TO, any replica) acknowledged master_repl_offset:
//!                     ─► failover-in-progress
//!   failover-in-progress: this server follows the target (replica::follow), whose link sends
//!     PSYNC <our replid> <our offset + 1> FAILOVER; the target, a replica with our replid,
//!     promotes itself and answers +CONTINUE <its new replid>
//!     ─► link.rs calls psync_answered: accepted ─► no-failover, writes unpaused (they get
//!        READONLY now); refused or no answer ─► abort: master again (replica::unfollow)
//! FAILOVER ABORT ─► abort ("Failover manually aborted")
//! ```
//!
//! The target side (`PSYNC ... FAILOVER` on a replica) is in `commands.rs`.
//!
//! Lock order: the command gate, then [`Failover::plan`], then the replica's link state and
//! the replication state. The switch to replica is made with the gate held exclusively and
//! the caught-up check under the replication state's lock, so no write runs between the
//! check and the switch.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::LinkState;
use super::replica::MasterAddr;
use crate::cmd::meta::{KeySpec, flags};
use crate::cmd::{Command, Ctx, eq_ignore_case, parse_i64, reply};
use crate::server::{Server, lock};

pub(crate) const COMMANDS: &[Command] = &[Command {
    name: "failover",
    arity: -1,
    flags: flags!(ADMIN, NOSCRIPT, STALE),
    keys: KeySpec::NONE,
    gate: crate::cmd::meta::Gate::Shared,
    categories: &["admin", "slow", "dangerous"],
    summary: "Start a coordinated failover between this server and one of its replicas.",
    since: "6.2.0",
    group: "server",
    handler: failover,
}];

/// How often the watcher looks again when no ACK came.
const WATCH_PERIOD: Duration = Duration::from_millis(100);

/// Where a failover is (INFO's `master_failover_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    None = 0,
    /// Writes are paused; waiting for a replica to acknowledge the whole stream.
    WaitForSync = 1,
    /// This server follows the target and sends it PSYNC ... FAILOVER.
    InProgress = 2,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::None => "no-failover",
            Phase::WaitForSync => "waiting-for-sync",
            Phase::InProgress => "failover-in-progress",
        }
    }
}

/// One failover's parameters.
#[derive(Debug)]
struct Plan {
    /// `TO host port`, or the replica chosen once it caught up.
    target: Option<MasterAddr>,
    /// `TIMEOUT`: when waiting ends.
    end: Option<Instant>,
    force: bool,
}

/// The failover state of a server (`Replication::failover`).
#[derive(Debug, Default)]
pub(crate) struct Failover {
    /// The phase, read without a lock (INFO, PSYNC, REPLICAOF, the cron); written under `plan`.
    phase: AtomicU8,
    /// A std mutex, held for a decision and the switch it makes (the watcher holds it across
    /// `replica::follow`, so an ABORT never comes between the two); taken after the command
    /// gate, before the replica's and the replication state's locks.
    plan: Mutex<Option<Plan>>,
}

impl Failover {
    pub(crate) fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            1 => Phase::WaitForSync,
            2 => Phase::InProgress,
            _ => Phase::None,
        }
    }

    /// Returns true if and only if a failover is under way (either phase).
    pub(crate) fn active(&self) -> bool {
        self.phase() != Phase::None
    }

    /// Returns true if and only if this server is handing over to its target (its link sends
    /// `PSYNC ... FAILOVER`).
    pub(crate) fn in_progress(&self) -> bool {
        self.phase() == Phase::InProgress
    }

    /// INFO's `master_failover_state`.
    pub(crate) fn state_name(&self) -> &'static str {
        self.phase().as_str()
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }
}

/// The failover ended (Redis's `clearFailoverState`): no plan, writes flow again. Called with
/// the plan's lock held.
fn clear(server: &Server, plan: &mut Option<Plan>) {
    *plan = None;
    server.replication.failover.set_phase(Phase::None);
    server.pause.end_failover();
}

/// Aborts the failover if one runs (Redis's `abortFailover`): a server that already follows
/// its target becomes a master again.
pub(crate) fn abort(server: &Server, reason: &str) {
    let failover = &server.replication.failover;
    let mut plan = lock(&failover.plan);
    let Some(current) = plan.as_ref() else {
        return;
    };
    match &current.target {
        Some(target) => tracing::info!(
            "FAILOVER to {}:{} aborted: {reason}",
            target.host,
            target.port
        ),
        None => tracing::info!("FAILOVER to any replica aborted: {reason}"),
    }
    if failover.phase() == Phase::InProgress {
        super::replica::become_master(server);
    }
    clear(server, &mut plan);
}

/// The link to the target got its answer to `PSYNC ... FAILOVER` (link.rs): `accepted` when
/// it was `+CONTINUE` or `+FULLRESYNC` (the failover is done), else the failover is aborted.
pub(crate) fn psync_answered(server: &Server, accepted: bool) {
    if accepted {
        let mut plan = lock(&server.replication.failover.plan);
        if server.replication.failover.in_progress() {
            clear(server, &mut plan);
        }
    } else {
        abort(server, "Failover target rejected psync request");
    }
}

/// `FAILOVER [TO host port [FORCE]] [ABORT] [TIMEOUT ms]`.
fn failover(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let server = ctx.server;
    if let [_, word] = argv
        && eq_ignore_case(word, "abort")
    {
        if !server.replication.failover.active() {
            ctx.out.error("ERR No failover in progress.");
            return;
        }
        abort(server, "Failover manually aborted");
        ctx.out.ok();
        return;
    }
    let mut timeout_ms: i64 = 0;
    let mut force = false;
    let mut target: Option<(Bytes, i64)> = None;
    let args = argv.get(1..).unwrap_or_default();
    let mut idx = 0;
    while let Some(word) = args.get(idx) {
        if eq_ignore_case(word, "timeout") && idx + 1 < args.len() && timeout_ms == 0 {
            let Some(value) = args.get(idx + 1).and_then(|v| parse_i64(v)) else {
                ctx.out.error(reply::NOT_INTEGER);
                return;
            };
            if value <= 0 {
                ctx.out.error("ERR FAILOVER timeout must be greater than 0");
                return;
            }
            timeout_ms = value;
            idx += 2;
        } else if eq_ignore_case(word, "to") && idx + 2 < args.len() && target.is_none() {
            let Some(port) = args.get(idx + 2).and_then(|v| parse_i64(v)) else {
                ctx.out.error(reply::NOT_INTEGER);
                return;
            };
            let host = args.get(idx + 1).cloned().unwrap_or_default();
            target = Some((host, port));
            idx += 3;
        } else if eq_ignore_case(word, "force") && !force {
            force = true;
            idx += 1;
        } else {
            ctx.out.error(reply::SYNTAX);
            return;
        }
    }
    let failover = &server.replication.failover;
    // Checked and set under the plan's lock, so two FAILOVERs never both start.
    let mut plan = lock(&failover.plan);
    if plan.is_some() {
        ctx.out.error("ERR FAILOVER already in progress.");
        return;
    }
    if server.replication.replica.is_replica() {
        ctx.out
            .error("ERR FAILOVER is not valid when server is a replica.");
        return;
    }
    if server.replication.replica_count() == 0 {
        ctx.out.error("ERR FAILOVER requires connected replicas.");
        return;
    }
    if force && (timeout_ms == 0 || target.is_none()) {
        ctx.out.error(
            "ERR FAILOVER with force option requires both a timeout and target HOST and IP.",
        );
        return;
    }
    let target = match target {
        Some((host, port)) => {
            let host = String::from_utf8_lossy(&host).into_owned();
            let link_state = {
                let state = server.replication.state();
                state
                    .replicas
                    .iter()
                    .find(|link| is_at(link, &host, port))
                    .map(|link| link.state())
            };
            match link_state {
                None => {
                    ctx.out
                        .error("ERR FAILOVER target HOST and PORT is not a replica.");
                    return;
                }
                Some(state) if state != LinkState::Online => {
                    ctx.out.error("ERR FAILOVER target replica is not online.");
                    return;
                }
                Some(_) => {}
            }
            tracing::info!("FAILOVER requested to {host}:{port}.");
            // `is_at` matched a listening port, which fits a u16.
            Some(MasterAddr {
                host,
                port: u16::try_from(port).unwrap_or(0),
            })
        }
        None => {
            tracing::info!("FAILOVER requested to any replica.");
            None
        }
    };
    let (Some(owner), Ok(runtime)) = (server.arc(), tokio::runtime::Handle::try_current()) else {
        ctx.out.error("ERR FAILOVER can't start here");
        return;
    };
    let end = (timeout_ms > 0).then(|| {
        Instant::now() + Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(u64::MAX))
    });
    *plan = Some(Plan { target, end, force });
    failover.set_phase(Phase::WaitForSync);
    server.pause.start_failover();
    drop(plan);
    runtime.spawn(watch(owner));
    ctx.out.ok();
}

/// Returns true if and only if `link` is the replica at `host`:`port` (Redis's
/// `findReplica`: its announced or peer address, and its listening port).
fn is_at(link: &super::Link, host: &str, port: i64) -> bool {
    link.ip.eq_ignore_ascii_case(host)
        && i64::from(link.listening_port.load(Ordering::Relaxed)) == port
}

/// Waits for the failover's target to catch up (or its timeout), as Redis's
/// `updateFailoverStatus` runs before every event loop sleep: here on every ACK, and every
/// 100 ms. Ends once the failover leaves `waiting-for-sync`.
async fn watch(server: Arc<Server>) {
    let shared = Arc::clone(&server.replication.shared);
    loop {
        let acked = shared.acked.notified();
        tokio::pin!(acked);
        acked.as_mut().enable();
        if !update_status(&server) {
            return;
        }
        tokio::select! {
            () = acked => {}
            () = tokio::time::sleep(WATCH_PERIOD) => {}
        }
    }
}

/// One look at a waiting failover; returns true if and only if it still waits.
fn update_status(server: &Arc<Server>) -> bool {
    let failover = &server.replication.failover;
    if failover.phase() != Phase::WaitForSync {
        return false;
    }
    if !due(server) {
        return true;
    }
    // The gate first (lock order), exclusively: no command runs between the check and the
    // switch, and the paused writes stay paused after it.
    let _gate = server.keyspace.gate().exclusive();
    let mut plan = lock(&failover.plan);
    if failover.phase() != Phase::WaitForSync {
        return false;
    }
    let Some(current) = plan.as_mut() else {
        return false;
    };
    if current.end.is_some_and(|end| Instant::now() >= end) {
        if current.force
            && let Some(target) = current.target.clone()
        {
            tracing::info!(
                "FAILOVER to {}:{} time out exceeded, failing over.",
                target.host,
                target.port
            );
            switch(server, &target);
            return false;
        }
        drop(plan);
        abort(server, "Replica never caught up before timeout");
        return false;
    }
    let caught_up = {
        let mut state = server.replication.state();
        let end = state.stream.end();
        let found = state
            .replicas
            .iter()
            .find(|link| {
                link.ack_offset.load(Ordering::Relaxed) == end
                    && current
                        .target
                        .as_ref()
                        .is_none_or(|target| is_at(link, &target.host, i64::from(target.port)))
            })
            .map(|link| MasterAddr {
                host: link.ip.clone(),
                port: u16::try_from(link.listening_port.load(Ordering::Relaxed)).unwrap_or(0),
            });
        if found.is_some() {
            // From here on this server renders nothing more into the stream: the target has
            // all of it.
            state.role_replica = true;
        }
        found
    };
    let Some(target) = caught_up else {
        return true;
    };
    current.target = Some(target.clone());
    tracing::info!(
        "Failover target {}:{} is synced, failing over.",
        target.host,
        target.port
    );
    switch(server, &target);
    false
}

/// Returns true if and only if the failover may have something to do: its timeout passed, or
/// a replica acknowledged the stream's end. A cheap look without the gate; `update_status`
/// decides under it.
fn due(server: &Server) -> bool {
    let plan = lock(&server.replication.failover.plan);
    let Some(current) = plan.as_ref() else {
        return false;
    };
    if current.end.is_some_and(|end| Instant::now() >= end) {
        return true;
    }
    let target = current.target.clone();
    drop(plan);
    let state = server.replication.state();
    let end = state.stream.end();
    state.replicas.iter().any(|link| {
        link.ack_offset.load(Ordering::Relaxed) == end
            && target
                .as_ref()
                .is_none_or(|target| is_at(link, &target.host, i64::from(target.port)))
    })
}

/// `failover-in-progress`: this server follows the target, whose link sends `PSYNC ...
/// FAILOVER` (Redis's `replicationSetMaster`). Called with the plan's lock held.
fn switch(server: &Arc<Server>, target: &MasterAddr) {
    server.replication.failover.set_phase(Phase::InProgress);
    super::replica::become_replica_of(server, target);
}
