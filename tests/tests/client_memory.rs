//! Regression test for issue 20's pinned client memory: a connection kept the size of its
//! largest request until it closed (eight idle connections that each SET and DEL a 100 MiB
//! value held 813 MB with an empty database), and memory freed after a burst of partial big
//! requests was not given back to the system. Idle buffers are shrunk as Redis's `clientsCron`
//! does, and freed memory is returned; the test bounds the server's resident set size.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::io::Write;
use std::time::Duration;

use forkless_tests::resp::cmd;
use forkless_tests::{RawConn, TestServer, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

const MIB: u64 = 1 << 20;

/// The resident set size of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Waits until the server's RSS is at most `bound`; returns the last reading.
fn settles_below(server: &TestServer, bound: u64) -> (bool, u64) {
    let mut last = 0;
    let settled = wait_until(Duration::from_secs(15), || {
        last = rss(server.pid());
        last <= bound
    });
    (settled, last)
}

#[test]
fn idle_connections_give_back_what_their_largest_request_took() {
    let server = TestServer::start(BIN, &["--save", ""]);
    let mut admin = server.raw();
    assert_eq!(cmd(&mut admin, "PING"), "+PONG\r\n");
    let baseline = rss(server.pid());

    // Eight connections each SET and DEL a 32 MiB value, then stay connected and idle.
    let value = vec![b'v'; usize::try_from(32 * MIB).unwrap()];
    let mut idle: Vec<RawConn> = Vec::new();
    for i in 0..8 {
        let mut conn = server.raw();
        let key = format!("big{i}");
        assert_eq!(conn.call(&[b"SET", key.as_bytes(), &value]), b"+OK\r\n");
        assert_eq!(conn.call(&[b"DEL", key.as_bytes()]), b":1\r\n");
        idle.push(conn);
    }
    assert_eq!(cmd(&mut admin, "DBSIZE"), ":0\r\n");
    let bound = baseline + 48 * MIB;
    let (settled, last) = settles_below(&server, bound);
    assert!(
        settled,
        "RSS {} MiB with an empty database and idle clients (baseline {} MiB)",
        last / MIB,
        baseline / MIB
    );
    // The connections still work.
    for conn in &mut idle {
        assert_eq!(cmd(conn, "PING"), "+PONG\r\n");
    }

    // A burst of connections that each send half of a 4 MiB argument and close.
    let half = vec![b'x'; usize::try_from(2 * MIB).unwrap()];
    let mut burst = Vec::new();
    for _ in 0..50 {
        let mut conn = server.raw();
        conn.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4194304\r\n");
        conn.stream().write_all(&half).unwrap();
        burst.push(conn);
    }
    // Every partial request has arrived once the server's ping comes back after them all.
    assert_eq!(cmd(&mut admin, "PING"), "+PONG\r\n");
    drop(burst);
    let (settled, last) = settles_below(&server, bound);
    assert!(
        settled,
        "RSS {} MiB after the burst closed (baseline {} MiB)",
        last / MIB,
        baseline / MIB
    );
}
