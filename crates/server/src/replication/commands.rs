//! The primary's replication commands: REPLCONF, PSYNC, SYNC, WAIT, ROLE (master form).
//!
//! PSYNC and SYNC reply nothing themselves: they set `ConnState::handover`, and the connection
//! hands its socket to `primary::serve` once the command returns. WAIT sets
//! `ConnState::wait_replicas`, and the connection waits and replies.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::primary::{self, Handover, WaitRequest};
use crate::cmd::meta::{Gate, KeySpec, flags};
use crate::cmd::{Command, Ctx, eq_ignore_case, parse_i64, reply};

pub(crate) const COMMANDS: &[Command] = &[
    Command {
        name: "replconf",
        arity: -1,
        flags: flags!(ADMIN, NOSCRIPT, LOADING, STALE, ALLOW_BUSY),
        keys: KeySpec::NONE,
        gate: Gate::Shared,
        categories: &["admin", "slow", "dangerous"],
        summary: "An internal command for configuring the replication stream",
        since: "3.0.0",
        group: "server",
        handler: replconf,
    },
    Command {
        name: "psync",
        arity: -3,
        flags: flags!(NO_ASYNC_LOADING, ADMIN, NO_MULTI, NOSCRIPT),
        keys: KeySpec::NONE,
        gate: Gate::Shared,
        categories: &["admin", "slow", "dangerous"],
        summary: "Internal command used for replication",
        since: "2.8.0",
        group: "server",
        handler: psync,
    },
    Command {
        name: "sync",
        arity: 1,
        flags: flags!(NO_ASYNC_LOADING, ADMIN, NO_MULTI, NOSCRIPT),
        keys: KeySpec::NONE,
        gate: Gate::Shared,
        categories: &["admin", "slow", "dangerous"],
        summary: "Internal command used for replication",
        since: "1.0.0",
        group: "server",
        handler: sync,
    },
    Command {
        name: "wait",
        arity: 3,
        flags: flags!(NOSCRIPT),
        keys: KeySpec::NONE,
        gate: Gate::Shared,
        categories: &["slow", "connection"],
        summary: "Wait for the synchronous replication of all the write commands sent in the \
                  context of the current connection",
        since: "3.0.0",
        group: "generic",
        handler: wait,
    },
    Command {
        name: "role",
        arity: 1,
        flags: flags!(NOSCRIPT, LOADING, STALE, FAST, SENTINEL),
        keys: KeySpec::NONE,
        gate: Gate::Shared,
        categories: &["admin", "fast", "dangerous"],
        summary: "Return the role of the instance in the context of replication",
        since: "2.8.12",
        group: "server",
        handler: role,
    },
];

/// `REPLCONF <option> <value> ...`, as Redis 7.0's replconfCommand for a primary.
fn replconf(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    if argv.len() % 2 == 0 {
        ctx.out.error(reply::SYNTAX);
        return;
    }
    let mut pairs = argv.get(1..).unwrap_or_default().chunks_exact(2);
    for pair in &mut pairs {
        let [option, value] = pair else { continue };
        if eq_ignore_case(option, "listening-port") {
            match parse_i64(value).and_then(|port| u32::try_from(port).ok()) {
                Some(port) => ctx.client.conn.replconf.listening_port = port,
                None => {
                    ctx.out.error(reply::NOT_INTEGER);
                    return;
                }
            }
        } else if eq_ignore_case(option, "ip-address") {
            if value.len() < 46 {
                ctx.client.conn.replconf.ip = Some(String::from_utf8_lossy(value).into_owned());
            } else {
                ctx.out.error(&format!(
                    "ERR REPLCONF ip-address provided by replica instance is too long: {} bytes",
                    value.len()
                ));
                return;
            }
        } else if eq_ignore_case(option, "capa") {
            if eq_ignore_case(value, "eof") {
                ctx.client.conn.replconf.capa_eof = true;
            } else if eq_ignore_case(value, "psync2") {
                ctx.client.conn.replconf.capa_psync2 = true;
            }
            // Other capabilities are ignored, as Redis does.
        } else if eq_ignore_case(option, "forkless-dual")
            || eq_ignore_case(option, "forkless-dual-stream")
        {
            // A forkless replica's dual-channel sync (docs/replication.md): the token pairs
            // the connection that takes the RDB with the one that takes the stream. Redis
            // answers "Unrecognized REPLCONF option", which tells the replica to sync as usual.
            if value.is_empty() || value.len() > 64 {
                ctx.out
                    .error("ERR REPLCONF forkless-dual token must be 1 to 64 bytes");
                return;
            }
            let token = Some(String::from_utf8_lossy(value).into_owned());
            if eq_ignore_case(option, "forkless-dual") {
                ctx.client.conn.replconf.dual_token = token;
            } else {
                ctx.client.conn.replconf.stream_of = token;
            }
        } else if eq_ignore_case(option, "ack") || eq_ignore_case(option, "fack") {
            // A replica's ACKs arrive on its link (primary.rs); from a normal client, nothing.
            return;
        } else if eq_ignore_case(option, "getack") {
            // Only a replica answers GETACK, on its master's link; never with a reply.
            return;
        } else if eq_ignore_case(option, "rdb-only") {
            match parse_i64(value) {
                Some(0 | 1) => {}
                _ => {
                    ctx.out.error(reply::NOT_INTEGER);
                    return;
                }
            }
        } else {
            ctx.out.error(&format!(
                "ERR Unrecognized REPLCONF option: {}",
                String::from_utf8_lossy(option)
            ));
            return;
        }
    }
    ctx.out.ok();
}

/// Common checks of PSYNC and SYNC. Returns false (having replied) when the sync is refused.
fn sync_allowed(ctx: &mut Ctx<'_>) -> bool {
    // Redis: replicas do not sync with a server that is handing over.
    if ctx.server.replication.failover.active() {
        ctx.out.error("NOMASTERLINK Can't SYNC while failing over");
        return false;
    }
    if !ctx.out.is_empty() {
        ctx.out
            .error("ERR SYNC and PSYNC are invalid with pending output");
        return false;
    }
    true
}

fn replica_name(ctx: &Ctx<'_>) -> String {
    let conf = &ctx.client.conn.replconf;
    let ip = conf
        .ip
        .clone()
        .unwrap_or_else(|| ctx.client.handle.addr.host());
    format!("{ip}:{}", conf.listening_port)
}

/// `PSYNC <replid> <offset>`: +CONTINUE from the backlog, or a full sync. `PSYNC <replid>
/// <offset> FAILOVER`, from the primary of a replica whose replid it names (its FAILOVER chose
/// this server), first makes this server a master, as Redis's syncCommand; the PSYNC then
/// continues from the old ID (now `master_replid2`) as any sibling's would.
fn psync(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    if argv
        .get(3)
        .is_some_and(|word| eq_ignore_case(word, "failover"))
    {
        let asked = argv
            .get(1)
            .map(|id| String::from_utf8_lossy(id).into_owned());
        let asked = asked.unwrap_or_default();
        tracing::warn!("Failover request received for replid {asked}.");
        if !ctx.server.replication.replica.is_replica() {
            ctx.out
                .error("ERR PSYNC FAILOVER can't be sent to a master.");
            return;
        }
        if !asked.eq_ignore_ascii_case(&ctx.server.replication.replid()) {
            ctx.out
                .error("ERR PSYNC FAILOVER replid must match my replid.");
            return;
        }
        super::replica::become_master(ctx.server);
        tracing::info!(
            "MASTER MODE enabled (failover request from '{}')",
            replica_name(ctx)
        );
    }
    if !sync_allowed(ctx) {
        return;
    }
    let name = replica_name(ctx);
    tracing::info!("Replica {name} asks for synchronization");
    let (Some(replid), Some(offset)) = (argv.get(1), argv.get(2)) else {
        return;
    };
    let Some(offset) = parse_i64(offset) else {
        tracing::warn!("Replica {name} asks for synchronization but with a wrong offset");
        ctx.out.error(reply::NOT_INTEGER);
        return;
    };
    if let Some(token) = ctx.client.conn.replconf.stream_of.clone() {
        // The second connection of a dual-channel sync: the stream only, from the crossing.
        match primary::decide_dual_stream(ctx.server, replid, offset, &token) {
            Ok(handover) => ctx.client.conn.handover = Some(handover),
            Err(reason) => ctx.out.error(&reason),
        }
        return;
    }
    let handover = primary::decide_psync(ctx.server, replid, offset, &name);
    ctx.client.conn.handover = Some(handover);
}

/// `SYNC`: the pre-PSYNC full sync (no `+FULLRESYNC` line, always disk-based unless the
/// replica said `capa eof`).
fn sync(ctx: &mut Ctx<'_>, _argv: &[Bytes]) {
    if !sync_allowed(ctx) {
        return;
    }
    tracing::info!("Replica {} asks for synchronization", replica_name(ctx));
    ctx.client.conn.handover = Some(Handover::Full { pre_psync: true });
}

/// `WAIT numreplicas timeout`.
fn wait(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let (Some(count), Some(timeout)) = (argv.get(1), argv.get(2)) else {
        return;
    };
    if ctx.server.replication.state().role_replica {
        ctx.out.error(
            "ERR WAIT cannot be used with replica instances. Please also note that since Redis \
             4.0 if a replica is configured to be writable (which is not the default) writes to \
             replicas are just local and are not propagated.",
        );
        return;
    }
    let Some(numreplicas) = parse_i64(count) else {
        ctx.out.error(reply::NOT_INTEGER);
        return;
    };
    let Some(timeout_ms) = parse_i64(timeout) else {
        ctx.out
            .error("ERR timeout is not an integer or out of range");
        return;
    };
    if timeout_ms < 0 {
        ctx.out.error("ERR timeout is negative");
        return;
    }
    let target = ctx.server.replication.offset();
    let acked = primary::acked_at(ctx.server, target);
    let numreplicas = u64::try_from(numreplicas).unwrap_or(0);
    if acked >= numreplicas || ctx.client.in_exec {
        ctx.out.int(i64::try_from(acked).unwrap_or(i64::MAX));
        return;
    }
    let deadline = (timeout_ms > 0).then(|| {
        Instant::now() + Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(u64::MAX))
    });
    ctx.client.conn.wait_replicas = Some(WaitRequest {
        numreplicas,
        target,
        deadline,
    });
}

/// `ROLE`, master form: `master`, the offset, and each online replica's ip, port and offset.
fn role(ctx: &mut Ctx<'_>, _argv: &[Bytes]) {
    if super::replica::role_replica(ctx) {
        return;
    }
    let state = ctx.server.replication.state();
    let online: Vec<(String, String, String)> = state
        .replicas
        .iter()
        .filter(|link| link.state() == super::LinkState::Online)
        .map(|link| {
            (
                link.ip.clone(),
                link.listening_port
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .to_string(),
                link.ack_offset
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .to_string(),
            )
        })
        .collect();
    let offset = state.stream.end();
    drop(state);
    ctx.out.array_len(3);
    ctx.out.bulk(b"master");
    ctx.out.int(i64::try_from(offset).unwrap_or(i64::MAX));
    ctx.out.array_len(online.len());
    for (ip, port, offset) in online {
        ctx.out.array_len(3);
        ctx.out.bulk(ip.as_bytes());
        ctx.out.bulk(port.as_bytes());
        ctx.out.bulk(offset.as_bytes());
    }
}
