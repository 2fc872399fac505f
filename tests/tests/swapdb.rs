//! SWAPDB end to end, beyond the differential case file (tests/cases/swapdb.txt): a client
//! blocked on a key that the swap fills is served, WATCH fires as Redis's
//! `touchAllWatchedKeysInDb` decides (clients and their watches stay in their database), and a
//! BGSAVE running across a swap saves the databases as they were when it started.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::time::Duration;

use forkless_tests::resp::{bulk, bulks, cmd, int, wait_blocked};
use forkless_tests::{TestServer, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");
const OK: &str = "+OK\r\n";

#[test]
fn a_swap_serves_clients_blocked_in_either_database() {
    let server = TestServer::start(BIN, &[]);
    let mut admin = server.raw();
    let mut in_db0 = server.raw();
    let mut in_db1 = server.raw();
    assert_eq!(cmd(&mut in_db1, "SELECT 1"), OK);
    in_db0.send_command(&[b"BLPOP", b"q", b"0"]);
    in_db1.send_command(&[b"BLPOP", b"r", b"0"]);
    wait_blocked(&mut admin, 2);
    // Database 1 gets a list "q", database 0 a list "r": each waiter is in the other one.
    assert_eq!(cmd(&mut admin, "SELECT 1"), OK);
    assert_eq!(cmd(&mut admin, "RPUSH q from-db1"), int(1));
    assert_eq!(cmd(&mut admin, "SELECT 0"), OK);
    assert_eq!(cmd(&mut admin, "RPUSH r from-db0"), int(1));
    wait_blocked(&mut admin, 2);
    assert_eq!(cmd(&mut admin, "SWAPDB 0 1"), OK);
    assert_eq!(
        String::from_utf8(in_db0.read_reply()).unwrap(),
        bulks(&["q", "from-db1"])
    );
    assert_eq!(
        String::from_utf8(in_db1.read_reply()).unwrap(),
        bulks(&["r", "from-db0"])
    );
    wait_blocked(&mut admin, 0);
}

/// A client blocked on a key the swap does not fill with a list stays blocked, as in Redis:
/// neither a string under that name nor a list under another name wakes it.
#[test]
fn a_swap_that_brings_nothing_keeps_clients_blocked() {
    let server = TestServer::start(BIN, &[]);
    let mut admin = server.raw();
    let mut blocked = server.raw();
    blocked.send_command(&[b"BLPOP", b"q", b"0"]);
    wait_blocked(&mut admin, 1);
    assert_eq!(cmd(&mut admin, "SELECT 1"), OK);
    assert_eq!(cmd(&mut admin, "SET q not-a-list"), OK);
    assert_eq!(cmd(&mut admin, "RPUSH other x"), int(1));
    assert_eq!(cmd(&mut admin, "SWAPDB 0 1"), OK);
    // Swap back: now database 0 has nothing under q, and the client is still waiting.
    assert_eq!(cmd(&mut admin, "SWAPDB 0 1"), OK);
    wait_blocked(&mut admin, 1);
    assert_eq!(cmd(&mut admin, "SELECT 0"), OK);
    assert_eq!(cmd(&mut admin, "RPUSH q x"), int(1));
    assert_eq!(
        String::from_utf8(blocked.read_reply()).unwrap(),
        bulks(&["q", "x"])
    );
}

/// Runs WATCH `key` in database 0, then SWAPDB 0 1 from another client, then an empty
/// transaction; returns true if and only if EXEC ran it.
fn exec_survives_swap(server: &TestServer, key: &str) -> bool {
    let mut watcher = server.raw();
    let mut other = server.raw();
    assert_eq!(cmd(&mut watcher, &format!("WATCH {key}")), OK);
    assert_eq!(cmd(&mut other, "SWAPDB 0 1"), OK);
    assert_eq!(cmd(&mut watcher, "MULTI"), OK);
    match cmd(&mut watcher, "EXEC").as_str() {
        "*0\r\n" => true,
        "*-1\r\n" => false,
        other => panic!("EXEC answered {other}"),
    }
}

#[test]
fn watch_fires_when_a_watched_key_exists_on_either_side() {
    let server = TestServer::start(BIN, &[]);
    let mut admin = server.raw();
    assert_eq!(cmd(&mut admin, "SET in0 x"), OK);
    assert_eq!(cmd(&mut admin, "SELECT 1"), OK);
    assert_eq!(cmd(&mut admin, "SET in1 x"), OK);
    // in0 is in database 0 before the first swap; in1 arrives in database 0 with it.
    assert!(!exec_survives_swap(&server, "in0"));
    assert!(!exec_survives_swap(&server, "in0"));
    assert!(!exec_survives_swap(&server, "in1"));
    assert!(exec_survives_swap(&server, "nowhere"));
}

/// The snapshot cut is a point in time: a SWAPDB after BGSAVE started is not in the file,
/// whichever shards the save had reached.
#[test]
fn a_bgsave_across_a_swap_saves_the_databases_as_they_were() {
    let dir = forkless_tests::TestDir::new("swapdb-bgsave");
    let server = TestServer::start_in(BIN, &dir.0, &["--save", ""], &[]);
    let mut conn = server.raw();
    let value = "v".repeat(2000);
    for idx in 0..20_000 {
        conn.send_command(&[b"SET", format!("zero:{idx}").as_bytes(), value.as_bytes()]);
    }
    for _ in 0..20_000 {
        assert_eq!(String::from_utf8(conn.read_reply()).unwrap(), OK);
    }
    assert_eq!(cmd(&mut conn, "SELECT 1"), OK);
    assert_eq!(cmd(&mut conn, "SET one:only x"), OK);
    assert!(cmd(&mut conn, "BGSAVE").starts_with("+Background saving started"));
    assert_eq!(cmd(&mut conn, "SWAPDB 0 1"), OK);
    assert_eq!(cmd(&mut conn, "DBSIZE"), int(20_000));
    assert!(wait_until(Duration::from_secs(60), || {
        cmd(&mut conn, "INFO persistence").contains("rdb_bgsave_in_progress:0")
    }));
    assert!(cmd(&mut conn, "INFO persistence").contains("rdb_last_bgsave_status:ok"));
    drop(conn);
    drop(server);
    let restarted = TestServer::start_in(BIN, &dir.0, &["--save", ""], &[]);
    let mut conn = restarted.raw();
    assert!(wait_until(Duration::from_secs(60), || {
        cmd(&mut conn, "INFO persistence").contains("loading:0")
    }));
    assert_eq!(cmd(&mut conn, "DBSIZE"), int(20_000));
    assert_eq!(cmd(&mut conn, "GET zero:19999"), bulk(&value));
    assert_eq!(cmd(&mut conn, "SELECT 1"), OK);
    assert_eq!(cmd(&mut conn, "DBSIZE"), int(1));
    assert_eq!(cmd(&mut conn, "GET one:only"), bulk("x"));
}
