//! MULTI/EXEC/DISCARD/WATCH end to end: Redis 7.0's replies and errors, WATCH seeing changes
//! from other connections (writes, FLUSHDB, expiry), and EXEC's atomicity against concurrent
//! readers and against the snapshot cut.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use forkless_storage::Value;
use forkless_tests::resp::cmd;
use forkless_tests::{TestServer, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

#[test]
fn exec_runs_the_queue_and_reports_each_reply() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    assert_eq!(cmd(&mut conn, "MULTI"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "SET k 10"), "+QUEUED\r\n");
    assert_eq!(cmd(&mut conn, "INCR k"), "+QUEUED\r\n");
    assert_eq!(cmd(&mut conn, "SET s text"), "+QUEUED\r\n");
    assert_eq!(cmd(&mut conn, "INCR s"), "+QUEUED\r\n");
    assert_eq!(cmd(&mut conn, "GET k"), "+QUEUED\r\n");
    assert_eq!(
        cmd(&mut conn, "EXEC"),
        "*5\r\n+OK\r\n:11\r\n+OK\r\n-ERR value is not an integer or out of range\r\n$2\r\n11\r\n"
    );
    assert_eq!(cmd(&mut conn, "EXEC"), "-ERR EXEC without MULTI\r\n");
    assert_eq!(cmd(&mut conn, "DISCARD"), "-ERR DISCARD without MULTI\r\n");
}

#[test]
fn refused_commands_abort_the_transaction() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    assert_eq!(cmd(&mut conn, "MULTI"), "+OK\r\n");
    assert_eq!(
        cmd(&mut conn, "MULTI"),
        "-ERR MULTI calls can not be nested\r\n"
    );
    assert_eq!(cmd(&mut conn, "SET a 1"), "+QUEUED\r\n");
    assert_eq!(
        cmd(&mut conn, "GET"),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert_eq!(
        cmd(&mut conn, "WATCH a"),
        "-ERR WATCH inside MULTI is not allowed\r\n"
    );
    assert_eq!(
        cmd(&mut conn, "SAVE"),
        "-ERR Command not allowed inside a transaction\r\n"
    );
    assert_eq!(
        cmd(&mut conn, "EXEC"),
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(cmd(&mut conn, "GET a"), "$-1\r\n", "nothing ran");
    assert_eq!(cmd(&mut conn, "MULTI"), "+OK\r\n");
    assert_eq!(
        cmd(&mut conn, "NOSUCHCOMMAND"),
        "-ERR unknown command 'NOSUCHCOMMAND', with args beginning with: \r\n"
    );
    assert_eq!(
        cmd(&mut conn, "EXEC"),
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(cmd(&mut conn, "MULTI"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "SET a 1"), "+QUEUED\r\n");
    assert_eq!(cmd(&mut conn, "DISCARD"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "GET a"), "$-1\r\n");
}

#[test]
fn watch_aborts_exec_on_changes_from_any_connection() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    let mut other = server.raw();
    // A write from another connection.
    assert_eq!(cmd(&mut conn, "WATCH w"), "+OK\r\n");
    assert_eq!(cmd(&mut other, "SET w changed"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "MULTI"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "SET w mine"), "+QUEUED\r\n");
    assert_eq!(cmd(&mut conn, "EXEC"), "*-1\r\n");
    assert_eq!(cmd(&mut conn, "GET w"), "$7\r\nchanged\r\n");
    // FLUSHDB counts as a change to every watched key it removes.
    assert_eq!(cmd(&mut conn, "WATCH w"), "+OK\r\n");
    assert_eq!(cmd(&mut other, "FLUSHDB"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "MULTI"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "SET w mine"), "+QUEUED\r\n");
    assert_eq!(cmd(&mut conn, "EXEC"), "*-1\r\n");
    // Untouched: runs. UNWATCH forgets a change.
    assert_eq!(cmd(&mut conn, "WATCH w"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "MULTI"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "SET w mine"), "+QUEUED\r\n");
    assert_eq!(cmd(&mut conn, "EXEC"), "*1\r\n+OK\r\n");
    assert_eq!(cmd(&mut conn, "WATCH w"), "+OK\r\n");
    assert_eq!(cmd(&mut other, "SET w again"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "UNWATCH"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "MULTI"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "GET w"), "+QUEUED\r\n");
    assert_eq!(cmd(&mut conn, "EXEC"), "*1\r\n$5\r\nagain\r\n");
    // RESP3 clients get a null for an aborted EXEC.
    assert!(cmd(&mut conn, "HELLO 3").starts_with('%'));
    assert_eq!(cmd(&mut conn, "WATCH w"), "+OK\r\n");
    assert_eq!(cmd(&mut other, "DEL w"), ":1\r\n");
    assert_eq!(cmd(&mut conn, "MULTI"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "EXEC"), "_\r\n");
}

/// Regression: FLUSHDB and FLUSHALL fired every watch of every shard, so a WATCH on a key that
/// did not exist aborted EXEC; Redis (`touchAllWatchedKeysInDb`) fires only the watches of keys
/// the flush removed.
#[test]
fn a_flush_fires_only_watches_of_keys_it_removes() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    let mut other = server.raw();
    for flush in ["FLUSHDB", "FLUSHALL", "FLUSHALL ASYNC"] {
        assert_eq!(cmd(&mut other, "SET present x"), "+OK\r\n");
        assert_eq!(cmd(&mut conn, "WATCH absent"), "+OK\r\n");
        assert_eq!(cmd(&mut other, flush), "+OK\r\n");
        assert_eq!(cmd(&mut conn, "MULTI"), "+OK\r\n");
        assert_eq!(cmd(&mut conn, "PING"), "+QUEUED\r\n");
        assert_eq!(cmd(&mut conn, "EXEC"), "*1\r\n+PONG\r\n", "{flush}");
    }
}

#[test]
fn watch_sees_expiry() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    assert_eq!(cmd(&mut conn, "SET e v PX 30"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "WATCH e"), "+OK\r\n");
    let mut other = server.raw();
    assert!(wait_until(Duration::from_secs(5), || cmd(
        &mut other, "EXISTS e"
    ) == ":0\r\n"));
    assert_eq!(cmd(&mut conn, "MULTI"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "SET e new"), "+QUEUED\r\n");
    assert_eq!(cmd(&mut conn, "EXEC"), "*-1\r\n");
}

#[test]
fn exec_is_atomic_to_concurrent_readers() {
    let server = TestServer::start(BIN, &[]);
    let mut setup = server.raw();
    assert_eq!(cmd(&mut setup, "MSET a 0 b 0"), "+OK\r\n");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut conn = server.raw();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            for _ in 0..2_000 {
                assert_eq!(cmd(&mut conn, "MULTI"), "+OK\r\n");
                assert_eq!(cmd(&mut conn, "INCR a"), "+QUEUED\r\n");
                assert_eq!(cmd(&mut conn, "INCR b"), "+QUEUED\r\n");
                assert!(cmd(&mut conn, "EXEC").starts_with("*2\r\n:"));
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    let mut reader = server.raw();
    let mut reads = 0;
    while !stop.load(Ordering::Relaxed) {
        let reply = cmd(&mut reader, "MGET a b");
        let values: Vec<&str> = reply
            .lines()
            .filter(|l| !l.starts_with(['*', '$']))
            .collect();
        assert_eq!(values[0], values[1], "saw half a transaction: {reply:?}");
        reads += 1;
    }
    writer.join().unwrap();
    assert!(reads > 0);
    assert_eq!(
        cmd(&mut reader, "MGET a b"),
        "*2\r\n$4\r\n2000\r\n$4\r\n2000\r\n"
    );
}

#[test]
fn a_snapshot_never_splits_a_transaction() {
    let server = TestServer::start(BIN, &["--save", ""]);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut conn = server.raw();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 100_000 {
                i += 1;
                assert_eq!(cmd(&mut conn, "MULTI"), "+OK\r\n");
                for key in ["x", "y", "z"] {
                    assert_eq!(cmd(&mut conn, &format!("SET {key} {i}")), "+QUEUED\r\n");
                }
                assert!(cmd(&mut conn, "EXEC").starts_with("*3\r\n"));
            }
        })
    };
    let mut admin = server.raw();
    for _ in 0..10 {
        assert_eq!(cmd(&mut admin, "SAVE"), "+OK\r\n");
        let mut saved = HashMap::new();
        let file = File::open(server.dir.join("dump.rdb")).unwrap();
        forkless_snapshot::format::load(BufReader::new(file), "dump.rdb", 0, |entry| {
            if let Value::String(bytes) = entry.value {
                saved.insert(entry.key.to_vec(), bytes.to_vec());
            }
            Ok(())
        })
        .unwrap();
        let values: Vec<Option<&Vec<u8>>> = ["x", "y", "z"]
            .iter()
            .map(|k| saved.get(k.as_bytes()))
            .collect();
        assert!(
            values.windows(2).all(|w| w[0] == w[1]),
            "a transaction was split by the cut: {values:?}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}
