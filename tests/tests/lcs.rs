//! LCS end to end, beyond the differential case file (tests/cases/lcs.txt): its transient table
//! is bounded by `proto-max-bulk-len` as in Redis, so two large strings get Redis's error at
//! once instead of an allocation of terabytes, and IDX is a map in RESP3.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::time::{Duration, Instant};

use forkless_tests::TestServer;
use forkless_tests::resp::{call, cmd, err, int};

fn server() -> TestServer {
    TestServer::start(env!("CARGO_BIN_EXE_forkless-server"), &[])
}

const TABLE_TOO_BIG: &str =
    "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len";

#[test]
fn large_strings_are_refused_before_allocating() {
    let server = server();
    let mut conn = server.raw();
    let big = vec![b'x'; 8 << 20];
    assert_eq!(call(&mut conn, &[b"SET", b"a", &big]), "+OK\r\n");
    assert_eq!(call(&mut conn, &[b"SET", b"b", &big]), "+OK\r\n");
    let started = Instant::now();
    for line in ["LCS a b", "LCS a b LEN", "LCS a b IDX WITHMATCHLEN"] {
        assert_eq!(cmd(&mut conn, line), err(TABLE_TOO_BIG), "{line}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the refusals took {:?}",
        started.elapsed()
    );
    // The limit is the configured one: a 1001 x 1001 table takes 4,008,004 bytes.
    assert_eq!(
        cmd(&mut conn, "CONFIG SET proto-max-bulk-len 4008004"),
        "+OK\r\n"
    );
    let thousand = vec![b'y'; 1000];
    assert_eq!(call(&mut conn, &[b"SET", b"c", &thousand]), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "LCS c c LEN"), int(1000));
    assert_eq!(
        cmd(&mut conn, "CONFIG SET proto-max-bulk-len 4008003"),
        "+OK\r\n"
    );
    assert_eq!(cmd(&mut conn, "LCS c c LEN"), err(TABLE_TOO_BIG));
}

#[test]
fn idx_is_a_map_in_resp3() {
    let server = server();
    let mut conn = server.raw();
    assert_eq!(cmd(&mut conn, "MSET k1 ohmytext k2 mynewtext"), "+OK\r\n");
    assert!(cmd(&mut conn, "HELLO 3").starts_with('%'));
    assert_eq!(
        cmd(&mut conn, "LCS k1 k2 IDX MINMATCHLEN 4 WITHMATCHLEN"),
        "%2\r\n$7\r\nmatches\r\n*1\r\n*3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n$3\r\nlen\r\n:6\r\n"
    );
}
