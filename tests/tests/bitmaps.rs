//! Bitmap commands end to end, beyond what the differential case file (tests/cases/bitmaps.txt)
//! replays against redis-server: bit offsets bounded by `proto-max-bulk-len` (so no argument
//! makes the server allocate more than a string it would accept), absurd offsets and widths
//! refused with Redis's errors, writes that change nothing leaving WATCH alone, RESP3 nulls
//! for BITFIELD's OVERFLOW FAIL, and keyspace hit/miss counting.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use forkless_tests::resp::{NIL, bulk, call, cmd, err, int};
use forkless_tests::{RawConn, TestServer};

fn server() -> TestServer {
    TestServer::start(env!("CARGO_BIN_EXE_forkless-server"), &[])
}

const OK: &str = "+OK\r\n";
const BAD_OFFSET: &str = "ERR bit offset is not an integer or out of range";
const BAD_TYPE: &str = "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";

fn array_of(items: &[String]) -> String {
    let mut out = format!("*{}\r\n", items.len());
    for item in items {
        out.push_str(item);
    }
    out
}

/// One numeric field of `INFO stats`.
fn info_stat(conn: &mut RawConn, field: &str) -> u64 {
    let info = cmd(conn, "INFO stats");
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn bit_offsets_are_bounded_by_proto_max_bulk_len() {
    let server = server();
    let mut conn = server.raw();
    assert_eq!(cmd(&mut conn, "CONFIG SET proto-max-bulk-len 1mb"), OK);
    let last_bit = 1024 * 1024 * 8 - 1;
    assert_eq!(cmd(&mut conn, &format!("SETBIT k {last_bit} 1")), int(0));
    assert_eq!(cmd(&mut conn, "STRLEN k"), int(1024 * 1024));
    assert_eq!(cmd(&mut conn, &format!("GETBIT k {last_bit}")), int(1));
    for line in [
        format!("SETBIT k {} 1", last_bit + 1),
        format!("GETBIT k {}", last_bit + 1),
        "BITFIELD k GET u8 #1048576".to_owned(),
        format!("BITFIELD k SET u8 {} 1", last_bit + 1),
        format!("BITFIELD_RO k GET i64 {}", last_bit + 1),
    ] {
        assert_eq!(cmd(&mut conn, &line), err(BAD_OFFSET), "{line}");
    }
    // A field may start at the last addressable bit and run past it, as in Redis. Its old
    // value is that one set bit followed by zeros.
    assert_eq!(
        cmd(&mut conn, &format!("BITFIELD k SET i64 {last_bit} -1")),
        array_of(&[int(i64::MIN)])
    );
    assert_eq!(cmd(&mut conn, "STRLEN k"), int(1024 * 1024 + 8));
    assert_eq!(cmd(&mut conn, "BITCOUNT k"), int(64));
}

/// Offsets and widths that would overflow or ask for exabytes are refused before any
/// allocation, and the server keeps serving.
#[test]
fn absurd_offsets_and_widths_are_refused() {
    let server = server();
    let mut conn = server.raw();
    for line in [
        "SETBIT k 9223372036854775807 1",
        "SETBIT k 18446744073709551616 1",
        "GETBIT k -9223372036854775808",
        // `#N` multiplies by the width; a product that wraps is refused like any bad offset.
        "BITFIELD k SET i64 #9223372036854775807 1",
        "BITFIELD k SET i64 #144115188075855872 1",
        "BITFIELD k GET u8 #-1",
        "BITFIELD k INCRBY u8 #1152921504606846976 1",
    ] {
        assert_eq!(cmd(&mut conn, line), err(BAD_OFFSET), "{line}");
    }
    for line in [
        "BITFIELD k GET i99999999999999999999 0",
        "BITFIELD k GET u64 0",
        "BITFIELD k GET i65 0",
        "BITFIELD k SET i-1 0 1",
        "BITFIELD_RO k GET u0 0",
    ] {
        assert_eq!(cmd(&mut conn, line), err(BAD_TYPE), "{line}");
    }
    assert_eq!(cmd(&mut conn, "EXISTS k"), int(0));
    assert_eq!(cmd(&mut conn, "PING"), "+PONG\r\n");
}

/// Redis signals a key as modified only when a bit write changed it: SETBIT of a bit already
/// so and BITFIELD SET of the value already there leave a WATCH intact.
#[test]
fn bit_writes_that_change_nothing_keep_watch() {
    let server = server();
    let mut watcher = server.raw();
    let mut other = server.raw();
    assert_eq!(cmd(&mut other, "SETBIT k 3 1"), int(0));
    assert_eq!(cmd(&mut watcher, "WATCH k"), OK);
    assert_eq!(cmd(&mut other, "SETBIT k 3 1"), int(1));
    assert_eq!(cmd(&mut other, "SETBIT k 7 0"), int(0));
    assert_eq!(
        cmd(&mut other, "BITFIELD k SET u4 0 1 GET u8 0"),
        array_of(&[int(1), int(16)])
    );
    assert_eq!(
        cmd(&mut other, "BITFIELD k OVERFLOW FAIL INCRBY u4 0 100"),
        array_of(&[NIL.to_owned()])
    );
    assert_eq!(cmd(&mut watcher, "MULTI"), OK);
    assert_eq!(cmd(&mut watcher, "GET k"), "+QUEUED\r\n");
    assert_eq!(cmd(&mut watcher, "EXEC"), array_of(&[bulk("\u{10}")]));

    // A write that changes a bit, or only grows the string, does abort the transaction.
    for change in ["SETBIT k 3 0", "SETBIT k 20 0", "BITFIELD k INCRBY u4 0 1"] {
        assert_eq!(cmd(&mut watcher, "WATCH k"), OK);
        cmd(&mut other, change);
        assert_eq!(cmd(&mut watcher, "MULTI"), OK);
        assert_eq!(cmd(&mut watcher, "GET k"), "+QUEUED\r\n");
        assert_eq!(cmd(&mut watcher, "EXEC"), "*-1\r\n", "{change}");
    }
}

#[test]
fn bitfield_fail_is_a_null_in_resp3() {
    let server = server();
    let mut conn = server.raw();
    assert!(cmd(&mut conn, "HELLO 3").starts_with('%'));
    assert_eq!(
        cmd(&mut conn, "BITFIELD k OVERFLOW FAIL SET u2 0 7 SET u2 0 3"),
        "*2\r\n_\r\n:0\r\n"
    );
    assert_eq!(cmd(&mut conn, "BITFIELD_RO k GET u2 0"), "*1\r\n:3\r\n");
}

/// Reads count keyspace hits and misses as Redis's `lookupKeyRead` does; SETBIT and BITFIELD
/// writes do not.
#[test]
fn reads_count_keyspace_hits_and_misses() {
    let server = server();
    let mut conn = server.raw();
    assert_eq!(cmd(&mut conn, "SETBIT k 1 1"), int(0));
    assert_eq!(cmd(&mut conn, "BITFIELD k SET u8 8 1"), array_of(&[int(0)]));
    let (hits, misses) = (
        info_stat(&mut conn, "keyspace_hits"),
        info_stat(&mut conn, "keyspace_misses"),
    );
    assert_eq!((hits, misses), (0, 0));
    for line in [
        "GETBIT k 1",
        "BITCOUNT k",
        "BITPOS k 1",
        "BITFIELD_RO k GET u8 0",
        "GETBIT nokey 1",
        "BITCOUNT nokey",
        "BITPOS nokey 1",
        "BITFIELD nokey GET u8 0",
    ] {
        cmd(&mut conn, line);
    }
    // BITOP reads each source: one hit, one miss.
    assert_eq!(cmd(&mut conn, "BITOP OR dest k nokey"), int(2));
    assert_eq!(info_stat(&mut conn, "keyspace_hits"), 5);
    assert_eq!(info_stat(&mut conn, "keyspace_misses"), 5);
}

/// BITOP reads a binary value exactly and stores its result without a TTL.
#[test]
fn bitop_combines_binary_values() {
    let server = server();
    let mut conn = server.raw();
    assert_eq!(call(&mut conn, &[b"SET", b"a", b"\xff\x00\x0f"]), OK);
    assert_eq!(call(&mut conn, &[b"SET", b"b", b"\x0f"]), OK);
    assert_eq!(cmd(&mut conn, "SET dest x EX 100"), OK);
    assert_eq!(cmd(&mut conn, "BITOP XOR dest a b"), int(3));
    assert_eq!(conn.call(&[b"GET", b"dest"]), b"$3\r\n\xf0\x00\x0f\r\n");
    assert_eq!(cmd(&mut conn, "TTL dest"), int(-1));
    assert_eq!(cmd(&mut conn, "BITOP NOT dest b"), int(1));
    assert_eq!(conn.call(&[b"GET", b"dest"]), b"$1\r\n\xf0\r\n");
    assert_eq!(cmd(&mut conn, "BITOP AND dest nokey1 nokey2"), int(0));
    assert_eq!(cmd(&mut conn, "EXISTS dest"), int(0));
}
