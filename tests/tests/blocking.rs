//! Blocking list and sorted-set commands end to end: served by pushes from other connections in the order the
//! clients blocked, timeouts with fractional seconds, the right null per command, WRONGTYPE, and
//! never blocking inside EXEC.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::time::{Duration, Instant};

use forkless_tests::TestServer;
use forkless_tests::resp::{cmd, reply, send, wait_blocked};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

#[test]
fn clients_are_served_in_the_order_they_blocked() {
    let server = TestServer::start(BIN, &[]);
    let mut admin = server.raw();
    let mut first = server.raw();
    let mut second = server.raw();
    send(&mut first, "BLPOP queue other 0");
    wait_blocked(&mut admin, 1);
    send(&mut second, "BRPOP queue 0");
    wait_blocked(&mut admin, 2);
    // One push of two elements serves both, oldest blocker first.
    assert_eq!(cmd(&mut admin, "RPUSH queue a b"), ":2\r\n");
    assert_eq!(reply(&mut first), "*2\r\n$5\r\nqueue\r\n$1\r\na\r\n");
    assert_eq!(reply(&mut second), "*2\r\n$5\r\nqueue\r\n$1\r\nb\r\n");
    wait_blocked(&mut admin, 0);
    assert_eq!(cmd(&mut admin, "EXISTS queue"), ":0\r\n");
    // A pipelined command after the blocking one runs once it is served.
    send(&mut first, "BLPOP q2 0");
    send(&mut first, "PING");
    wait_blocked(&mut admin, 1);
    assert_eq!(cmd(&mut admin, "LPUSH q2 x"), ":1\r\n");
    assert_eq!(reply(&mut first), "*2\r\n$2\r\nq2\r\n$1\r\nx\r\n");
    assert_eq!(reply(&mut first), "+PONG\r\n");
}

#[test]
fn timeouts_reply_the_commands_null() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    let started = Instant::now();
    assert_eq!(cmd(&mut conn, "BLPOP nothing 0.1"), "*-1\r\n");
    assert!(
        started.elapsed() >= Duration::from_millis(90),
        "returned before its timeout"
    );
    assert_eq!(
        cmd(&mut conn, "BLMOVE nothing dst LEFT RIGHT 0.05"),
        "$-1\r\n"
    );
    assert_eq!(cmd(&mut conn, "BRPOPLPUSH nothing dst 0.05"), "$-1\r\n");
    assert_eq!(cmd(&mut conn, "BLMPOP 0.05 2 a b LEFT"), "*-1\r\n");
    assert!(cmd(&mut conn, "HELLO 3").starts_with('%'));
    assert_eq!(cmd(&mut conn, "BLPOP nothing 0.05"), "_\r\n");
    assert_eq!(
        cmd(&mut conn, "BLMOVE nothing dst LEFT RIGHT 0.05"),
        "_\r\n"
    );
}

#[test]
fn errors_and_immediate_answers() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    assert_eq!(cmd(&mut conn, "SET s v"), "+OK\r\n");
    assert_eq!(
        cmd(&mut conn, "BLPOP s 0"),
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    );
    assert_eq!(cmd(&mut conn, "BLPOP k -1"), "-ERR timeout is negative\r\n");
    assert_eq!(
        cmd(&mut conn, "BLPOP k abc"),
        "-ERR timeout is not a float or out of range\r\n"
    );
    assert_eq!(cmd(&mut conn, "RPUSH l 1 2 3"), ":3\r\n");
    assert_eq!(cmd(&mut conn, "BRPOP l 0"), "*2\r\n$1\r\nl\r\n$1\r\n3\r\n");
    assert_eq!(cmd(&mut conn, "BLMOVE l dst RIGHT LEFT 0"), "$1\r\n2\r\n");
    assert_eq!(
        cmd(&mut conn, "BLMPOP 0 1 l LEFT COUNT 5"),
        "*2\r\n$1\r\nl\r\n*1\r\n$1\r\n1\r\n"
    );
    // Inside EXEC a blocking command never blocks.
    assert_eq!(cmd(&mut conn, "MULTI"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "BLPOP empty 0"), "+QUEUED\r\n");
    assert_eq!(cmd(&mut conn, "EXEC"), "*1\r\n*-1\r\n");
}

#[test]
fn blmove_is_served_by_a_push_and_a_vanished_client_takes_nothing() {
    let server = TestServer::start(BIN, &[]);
    let mut admin = server.raw();
    let mut mover = server.raw();
    send(&mut mover, "BLMOVE src dst LEFT RIGHT 0");
    wait_blocked(&mut admin, 1);
    assert_eq!(cmd(&mut admin, "LPUSH src job"), ":1\r\n");
    assert_eq!(reply(&mut mover), "$3\r\njob\r\n");
    assert_eq!(cmd(&mut admin, "LRANGE dst 0 -1"), "*1\r\n$3\r\njob\r\n");
    // A client that disconnects while blocked is forgotten: the element stays.
    let mut gone = server.raw();
    send(&mut gone, "BLPOP later 0");
    wait_blocked(&mut admin, 1);
    drop(gone);
    wait_blocked(&mut admin, 0);
    assert_eq!(cmd(&mut admin, "RPUSH later kept"), ":1\r\n");
    assert_eq!(cmd(&mut admin, "LLEN later"), ":1\r\n");
}

#[test]
fn sorted_set_pops_block_and_match_redis() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    // Replies taken from Redis 7.0.15 for the same sequence.
    assert_eq!(cmd(&mut conn, "ZADD z 1 a 2 b"), ":2\r\n");
    assert_eq!(
        cmd(&mut conn, "BZPOPMIN z 0"),
        "*3\r\n$1\r\nz\r\n$1\r\na\r\n$1\r\n1\r\n"
    );
    assert_eq!(
        cmd(&mut conn, "BZPOPMAX none z 0"),
        "*3\r\n$1\r\nz\r\n$1\r\nb\r\n$1\r\n2\r\n"
    );
    assert_eq!(cmd(&mut conn, "BZPOPMIN z 0.05"), "*-1\r\n");
    assert_eq!(cmd(&mut conn, "BZMPOP 0.05 1 z MIN"), "*-1\r\n");
    assert_eq!(cmd(&mut conn, "ZADD z 3 c"), ":1\r\n");
    assert_eq!(
        cmd(&mut conn, "BZMPOP 0 1 z MAX COUNT 2"),
        "*2\r\n$1\r\nz\r\n*1\r\n*2\r\n$1\r\nc\r\n$1\r\n3\r\n"
    );
    assert_eq!(cmd(&mut conn, "SET s v"), "+OK\r\n");
    assert_eq!(
        cmd(&mut conn, "BZPOPMIN s 0"),
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    );
    // Blocked until another connection adds a member.
    let mut admin = server.raw();
    send(&mut conn, "BZPOPMAX scores 0");
    wait_blocked(&mut admin, 1);
    assert_eq!(cmd(&mut admin, "ZADD scores 5 five 7 seven"), ":2\r\n");
    assert_eq!(
        reply(&mut conn),
        "*3\r\n$6\r\nscores\r\n$5\r\nseven\r\n$1\r\n7\r\n"
    );
}

/// A primary that starts following another server (REPLICAOF) ends every command blocked on
/// keys with Redis's UNBLOCKED error and closes those connections; other clients stay.
#[test]
fn becoming_a_replica_ends_blocked_commands() {
    let master = TestServer::start(BIN, &[]);
    let server = TestServer::start(BIN, &[]);
    let mut blocked = server.raw();
    let mut admin = server.raw();
    send(&mut blocked, "BLPOP q 0");
    wait_blocked(&mut admin, 1);
    let replicaof = format!("REPLICAOF 127.0.0.1 {}", master.port());
    assert_eq!(cmd(&mut admin, &replicaof), "+OK\r\n");
    assert_eq!(
        String::from_utf8(blocked.read_to_close()).unwrap(),
        "-UNBLOCKED force unblock from blocking operation, instance state changed \
         (master -> replica?)\r\n"
    );
    assert_eq!(cmd(&mut admin, "PING"), "+PONG\r\n");
    assert!(cmd(&mut admin, "INFO errorstats").contains("errorstat_UNBLOCKED:count=1\r\n"));
    wait_blocked(&mut admin, 0);
}
