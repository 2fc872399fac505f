//! CLIENT TRACKING regressions found by Redis 7.0's tracking unit: a script's write was
//! reported to a NOLOOP caller (the script's commands counted as another client's), a script
//! that read something did not make its caller track the keys it declared, FLUSHALL left the
//! table of a client that had turned tracking off (it was then told about keys it never read
//! again), and a key a read found expired was not removed, so its readers were not told.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::time::Duration;

use forkless_tests::{RawConn, TestServer, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

fn text(reply: Vec<u8>) -> String {
    String::from_utf8(reply).unwrap()
}

fn resp3_tracking(server: &TestServer, options: &[&[u8]]) -> RawConn {
    let mut conn = server.raw();
    conn.call(&[b"HELLO", b"3"]);
    let mut argv: Vec<&[u8]> = vec![b"CLIENT", b"TRACKING", b"ON"];
    argv.extend_from_slice(options);
    assert_eq!(text(conn.call(&argv)), "+OK\r\n");
    conn
}

fn invalidate(key: &str) -> String {
    format!(
        ">2\r\n$10\r\ninvalidate\r\n*1\r\n${}\r\n{key}\r\n",
        key.len()
    )
}

#[test]
fn a_scripts_write_is_its_callers_for_noloop() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = resp3_tracking(&server, &[b"NOLOOP"]);
    conn.call(&[b"SET", b"key1", b"1"]);
    conn.call(&[b"GET", b"key1"]);
    conn.call(&[
        b"EVAL",
        b"return redis.call('set', 'key1', '2')",
        b"1",
        b"key1",
    ]);
    // No invalidation came before the next reply.
    assert_eq!(text(conn.call(&[b"GET", b"key1"])), "$1\r\n2\r\n");
}

#[test]
fn a_script_that_reads_tracks_its_declared_keys() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = resp3_tracking(&server, &[]);
    let mut other = server.raw();
    // A script that reads nothing tracks nothing.
    conn.call(&[
        b"EVAL",
        b"redis.call('set', 'key3', 'bar')",
        b"2",
        b"key1",
        b"key2",
    ]);
    other.call(&[b"MSET", b"key2", b"1", b"key1", b"1"]);
    // One that reads tracks every declared key.
    conn.call(&[
        b"EVAL",
        b"redis.call('get', 'key3')",
        b"2",
        b"key1",
        b"key2",
    ]);
    other.call(&[b"MSET", b"key2", b"2", b"key1", b"2"]);
    assert_eq!(text(conn.read_reply()), invalidate("key2"));
    assert_eq!(text(conn.read_reply()), invalidate("key1"));
    assert_eq!(text(conn.call(&[b"PING"])), "+PONG\r\n");
}

#[test]
fn flushall_empties_the_table_of_clients_that_stopped_tracking() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = resp3_tracking(&server, &[]);
    let mut other = server.raw();
    other.call(&[b"SET", b"key1", b"1"]);
    conn.call(&[b"GET", b"key1"]);
    conn.call(&[b"CLIENT", b"TRACKING", b"OFF"]);
    other.call(&[b"FLUSHALL"]);
    let info = text(other.call(&[b"INFO", b"stats"]));
    assert!(info.contains("tracking_total_keys:0\r\n"), "{info}");
    // Tracking again: the key read before is not reported.
    conn.call(&[b"CLIENT", b"TRACKING", b"ON"]);
    other.call(&[b"SET", b"key1", b"2"]);
    assert_eq!(text(conn.call(&[b"PING"])), "+PONG\r\n");
}

/// A key a read finds expired is removed then and its readers are told, as Redis's lazy
/// expiry does (forkless's reads could not remove a key: only a write or the active expiry
/// cycle did, later).
#[test]
fn a_key_a_read_finds_expired_is_invalidated() {
    let server = TestServer::start(BIN, &["--enable-debug-command", "yes"]);
    let mut other = server.raw();
    other.call(&[b"DEBUG", b"SET-ACTIVE-EXPIRE", b"0"]);
    let mut conn = resp3_tracking(&server, &[]);
    other.call(&[b"SET", b"k", b"v", b"PX", b"50"]);
    assert_eq!(text(conn.call(&[b"GET", b"k"])), "$1\r\nv\r\n");
    assert!(wait_until(Duration::from_secs(5), || {
        text(other.call(&[b"PTTL", b"k"])) == ":-2\r\n"
    }));
    // PTTL found it expired and removed it: the reader is told.
    assert_eq!(text(conn.read_reply()), invalidate("k"));
    let stats = text(other.call(&[b"INFO", b"stats"]));
    assert!(stats.contains("expired_keys:1\r\n"), "{stats}");
}

/// Regression: the invalidation of a key evicted before a command ran reached the reader that
/// sent the command after that command's reply, where Redis writes it first (Redis's
/// tracking unit, "Tracking invalidation message of eviction keys should be before
/// response"; its failure left `maxmemory` set and refused the rest of the unit as OOM).
#[test]
fn eviction_invalidation_precedes_the_reply_of_the_command_that_evicted() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut conn = resp3_tracking(&server, &[]);
    let info = text(conn.call(&[b"INFO", b"memory"]));
    let used: u64 = info
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let limit = (used + 100 * 1024).to_string();
    for args in [
        &[&b"CONFIG"[..], b"SET", b"maxmemory", limit.as_bytes()][..],
        &[b"CONFIG", b"SET", b"maxmemory-policy", b"volatile-random"],
        &[b"SETEX", b"volatile-key", b"10000", b"x"],
    ] {
        assert_eq!(text(conn.call(args)), "+OK\r\n");
    }
    assert_eq!(text(conn.call(&[b"GET", b"volatile-key"])), "$1\r\nx\r\n");
    // 200 KB: the next command finds the server over the limit and evicts the volatile key.
    assert_eq!(
        text(conn.call(&[b"SETBIT", b"big-key", b"1600000", b"0"])),
        ":0\r\n"
    );
    conn.send_command(&[b"GETBIT", b"big-key", b"0"]);
    assert_eq!(text(conn.read_reply()), invalidate("volatile-key"));
    assert_eq!(text(conn.read_reply()), ":0\r\n");
}
