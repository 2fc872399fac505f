//! The crossing of a full sync: effects held while the cut is taken are rendered on the right
//! side of it, the replicas start at the first byte after it, and that byte is a SELECT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use forkless_storage::effect::Seq;

use super::{DETACHED, Link, LinkState};
use crate::config::Config;
use crate::effects::{Effect, Op};
use crate::server::{ClientHandle, Server};

fn link() -> Arc<Link> {
    link_with(None)
}

fn link_with(dual_token: Option<String>) -> Arc<Link> {
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    let (push, _pushes) = tokio::sync::mpsc::unbounded_channel();
    let handle = Arc::new(ClientHandle {
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
        fd: -1,
        info: Default::default(),
        push,
        awaiting_seq: Default::default(),
        user: std::sync::Mutex::new(bytes::Bytes::from_static(b"default")),
    });
    Arc::new(Link {
        handle,
        ip: "127.0.0.1".into(),
        listening_port: AtomicU32::new(0),
        state: AtomicU8::new(LinkState::WaitBgsave as u8),
        position: AtomicU64::new(DETACHED),
        ack_offset: AtomicU64::new(0),
        ack_unix_ms: AtomicU64::new(0),
        soft_over_since_ms: AtomicU64::new(0),
        dropped: AtomicBool::new(false),
        capa_eof: true,
        dual_token,
        pre_psync: false,
        arrived: Instant::now(),
    })
}

fn set(seq: Seq, db: usize, key: &'static str) -> Effect {
    Effect {
        seq,
        transaction: false,
        ops: vec![Op {
            db,
            argv: vec![
                Bytes::from_static(b"SET"),
                Bytes::from_static(key.as_bytes()),
                Bytes::from_static(b"v"),
            ],
        }],
    }
}

fn stream_from(server: &Server, from: u64) -> String {
    let mut out = Vec::new();
    let state = server.replication.state();
    state.stream.copy_from(from, usize::MAX, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn effects_held_during_the_cut_fall_on_their_side_of_the_crossing() {
    let server = Server::new(Config::default());
    server.replication.ensure_backlog(&server);
    let seq1 = Seq::FIRST;
    let (seq2, seq3) = (seq1.next(), seq1.next().next());
    server.effects.publish(set(seq1, 2, "a"));
    let before = server.replication.offset();
    assert_eq!(
        stream_from(&server, 0),
        "*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\nv\r\n"
    );
    // The cut is being taken: 2 is before it, 3 after it; both arrive meanwhile.
    server.replication.hold_effects();
    server.effects.publish(set(seq2, 2, "b"));
    server.effects.publish(set(seq3, 2, "c"));
    assert_eq!(server.replication.offset(), before, "held, not rendered");
    let replica = link();
    server.replication.add_link(Arc::clone(&replica));
    server
        .replication
        .release_effects(Some((seq3, vec![Arc::clone(&replica)])));
    let crossing = server
        .replication
        .crossing(server.effects.next())
        .expect("crossed");
    assert_eq!(replica.position.load(Ordering::Relaxed), crossing);
    // b (same db as a: no SELECT) before the crossing; from it on, a SELECT first.
    assert_eq!(
        stream_from(&server, before),
        "*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$1\r\nv\r\n\
         *2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n*3\r\n$3\r\nSET\r\n$1\r\nc\r\n$1\r\nv\r\n"
    );
    assert!(stream_from(&server, crossing).starts_with("*2\r\n$6\r\nSELECT"));
    server.replication.clear_boundary();
}

#[test]
fn with_no_write_after_the_cut_the_crossing_is_the_end() {
    let server = Server::new(Config::default());
    server.replication.ensure_backlog(&server);
    server.effects.publish(set(Seq::FIRST, 0, "a"));
    server.replication.hold_effects();
    let replica = link();
    server.replication.add_link(Arc::clone(&replica));
    let cut_seq = Seq::FIRST.next();
    server
        .replication
        .release_effects(Some((cut_seq, vec![Arc::clone(&replica)])));
    let end = server.replication.offset();
    assert_eq!(
        server.replication.crossing(server.effects.next()),
        Some(end)
    );
    assert_eq!(replica.position.load(Ordering::Relaxed), end);
    // The next write selects its database again.
    server.replication.clear_boundary();
    server.effects.publish(set(cut_seq, 0, "b"));
    assert!(stream_from(&server, end).starts_with("*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n"));
}

#[test]
fn a_replica_over_its_hard_limit_is_dropped_and_unpins_the_stream() {
    let server = Server::new(Config::default());
    server.replication.ensure_backlog(&server);
    server.replication.state().obuf_limits = (1000, 0, 0);
    let replica = link();
    replica.position.store(0, Ordering::Relaxed);
    server.replication.add_link(Arc::clone(&replica));
    server.replication.append_raw(&[b'x'; 600]);
    assert_eq!(server.replication.mem_clients_slaves(), 600);
    server.replication.append_raw(&[b'x'; 600]);
    assert!(replica.dropped.load(Ordering::Relaxed));
    assert!(replica.handle.killed.load(Ordering::Relaxed));
    assert_eq!(server.replication.replica_count(), 0);
    assert_eq!(server.replication.mem_clients_slaves(), 0);
}

#[test]
fn shift_replid_keeps_the_old_id_valid_up_to_the_offset() {
    let server = Server::new(Config::default());
    server.replication.ensure_backlog(&server);
    server.replication.append_raw(b"*1\r\n$4\r\nPING\r\n");
    let old = server.replication.replid();
    server.replication.shift_replid();
    let state = server.replication.state();
    assert_eq!(state.replid2, old);
    assert_ne!(state.replid, old);
    assert_eq!(state.second_repl_offset, 15);
}

#[test]
fn a_replica_over_its_soft_limit_for_its_seconds_is_dropped() {
    let server = Server::new(Config::default());
    server.replication.ensure_backlog(&server);
    // Soft limit 500 bytes, for 0 seconds: over it at all is too long.
    server.replication.state().obuf_limits = (0, 500, 0);
    let replica = link();
    replica.position.store(0, Ordering::Relaxed);
    server.replication.add_link(Arc::clone(&replica));
    server.replication.append_raw(&[b'x'; 400]);
    assert!(!replica.dropped.load(Ordering::Relaxed));
    server.replication.append_raw(&[b'x'; 200]);
    assert!(replica.dropped.load(Ordering::Relaxed));
    // With time allowed, a replica over the soft limit stays until the time has passed.
    server.replication.state().obuf_limits = (0, 500, 60);
    let patient = link();
    patient
        .position
        .store(server.replication.offset(), Ordering::Relaxed);
    server.replication.add_link(Arc::clone(&patient));
    server.replication.append_raw(&[b'x'; 600]);
    server.replication.append_raw(&[b'x'; 600]);
    assert!(!patient.dropped.load(Ordering::Relaxed));
    assert_eq!(server.replication.mem_clients_slaves(), 1200);
}

#[test]
fn on_a_replica_the_stream_is_the_masters_bytes_and_a_cut_crosses_at_its_end() {
    let server = Server::new(Config::default());
    server.replication.set_role_replica();
    server
        .replication
        .reset_after_full_sync(&server, &"a".repeat(40), 1000);
    assert_eq!(server.replication.offset(), 1000);
    server.replication.feed_from_master(b"*1\r\n$4\r\nPING\r\n");
    // Effects of applying the master's commands are not rendered on a replica.
    server.effects.publish(set(Seq::FIRST, 0, "a"));
    assert_eq!(server.replication.offset(), 1014);
    let replica = link();
    server.replication.add_link(Arc::clone(&replica));
    let guard = server.replication.cut_guard();
    assert!(guard.is_some());
    server.replication.hold_effects();
    server
        .replication
        .release_effects(Some((Seq::FIRST.next(), vec![Arc::clone(&replica)])));
    server.replication.cross_at_end();
    drop(guard);
    assert_eq!(replica.position.load(Ordering::Relaxed), 1014);
    server.replication.clear_boundary();
    // Promotion: the master's ID stays valid for its siblings up to here.
    server.replication.shift_replid();
    server.replication.set_role_master();
    let state = server.replication.state();
    assert_eq!(state.replid2, "a".repeat(40));
    assert_eq!(state.second_repl_offset, 1015);
}

#[test]
fn a_dual_channel_stream_continues_only_at_its_full_syncs_pinned_crossing() {
    use super::primary::{Handover, decide_dual_stream};
    let server = Server::new(Config::default());
    server.replication.ensure_backlog(&server);
    server.replication.append_raw(&[b'x'; 100]);
    let rdb_link = link_with(Some("token".into()));
    rdb_link.position.store(40, Ordering::Relaxed);
    server.replication.add_link(Arc::clone(&rdb_link));
    let replid = server.replication.replid();
    let decide = |replid: &str, offset: i64, token: &str| {
        decide_dual_stream(&server, replid.as_bytes(), offset, token)
    };
    assert!(matches!(
        decide(&replid, 41, "token"),
        Ok(Handover::Continue { from: 40, dual_of: Some(token) }) if token == "token"
    ));
    assert!(decide(&replid, 41, "other").is_err());
    assert!(decide(&replid, 42, "token").is_err());
    assert!(decide(super::NO_REPLID, 41, "token").is_err());
    server.replication.remove_link(&rdb_link);
    assert!(decide(&replid, 41, "token").is_err());
}
