//! SORT and SORT_RO end to end, beyond what the differential case file (tests/cases/sort.txt)
//! replays against redis-server: STORE wakes a client blocked on the destination and fires a
//! WATCH on it, BY/GET patterns over a large list agree with a sort done here, sets left
//! unsorted come back whole, pattern lookups count keyspace hits and misses, and SORT_RO has no
//! STORE.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use forkless_tests::resp::{bulks, cmd, err, int, wait_blocked};
use forkless_tests::{RawConn, TestServer};
use redis::Commands;

fn server() -> TestServer {
    TestServer::start(env!("CARGO_BIN_EXE_forkless-server"), &[])
}

const OK: &str = "+OK\r\n";

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

/// SORT ... STORE writes a key that is not SORT's first argument, so the dispatcher's key
/// positions do not cover it: a client blocked on that key must still be woken.
#[test]
fn store_wakes_a_client_blocked_on_the_destination() {
    let server = server();
    let mut admin = server.raw();
    let mut blocked = server.raw();
    assert_eq!(cmd(&mut admin, "RPUSH src 3 1 2"), int(3));
    blocked.send_command(&[b"BLPOP", b"dst", b"0"]);
    wait_blocked(&mut admin, 1);
    assert_eq!(cmd(&mut admin, "SORT src STORE dst"), int(3));
    assert_eq!(
        String::from_utf8(blocked.read_reply()).unwrap(),
        bulks(&["dst", "1"])
    );
    assert_eq!(cmd(&mut admin, "LRANGE dst 0 -1"), bulks(&["2", "3"]));
}

#[test]
fn store_fires_a_watch_on_the_destination() {
    let server = server();
    let mut watcher = server.raw();
    let mut other = server.raw();
    assert_eq!(cmd(&mut other, "RPUSH src b a"), int(2));
    assert_eq!(cmd(&mut watcher, "WATCH dst"), OK);
    assert_eq!(cmd(&mut other, "SORT src ALPHA STORE dst"), int(2));
    assert_eq!(cmd(&mut watcher, "MULTI"), OK);
    assert_eq!(cmd(&mut watcher, "PING"), "+QUEUED\r\n");
    assert_eq!(cmd(&mut watcher, "EXEC"), "*-1\r\n");
    // Reading it is no change.
    assert_eq!(cmd(&mut watcher, "WATCH src"), OK);
    assert_eq!(cmd(&mut other, "SORT src ALPHA"), bulks(&["a", "b"]));
    assert_eq!(cmd(&mut watcher, "MULTI"), OK);
    assert_eq!(cmd(&mut watcher, "PING"), "+QUEUED\r\n");
    assert_eq!(cmd(&mut watcher, "EXEC"), "*1\r\n+PONG\r\n");
}

/// BY with a hash-field pattern and GET with string and `#` patterns over 2,000 elements give
/// exactly the order a stable sort by (weight, element) gives here.
#[test]
fn patterns_over_a_large_list_match_a_reference_sort() {
    let server = server();
    let mut conn = server.client();
    let n = 2000u64;
    let mut expected = Vec::new();
    for idx in 0..n {
        let element = format!("e{idx}");
        // A weight with many ties, so the tie-break on the element's bytes matters.
        let weight = (idx * 7919) % 97;
        let _: () = conn.rpush("list", &element).unwrap();
        let _: () = conn.hset(format!("h_{element}"), "w", weight).unwrap();
        let _: () = conn.set(format!("v_{element}"), idx * 2).unwrap();
        expected.push((weight, element, idx * 2));
    }
    expected.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let sorted: Vec<Option<String>> = redis::cmd("SORT")
        .arg("list")
        .arg("BY")
        .arg("h_*->w")
        .arg("GET")
        .arg("#")
        .arg("GET")
        .arg("v_*")
        .arg("GET")
        .arg("missing_*")
        .arg("LIMIT")
        .arg(10)
        .arg(500)
        .query(&mut conn)
        .unwrap();
    let want: Vec<Option<String>> = expected
        .iter()
        .skip(10)
        .take(500)
        .flat_map(|(_, element, value)| [Some(element.clone()), Some(value.to_string()), None])
        .collect();
    assert_eq!(sorted, want);
    let stored: i64 = redis::cmd("SORT_RO")
        .arg("list")
        .arg("BY")
        .arg("h_*->w")
        .arg("DESC")
        .query::<Vec<String>>(&mut conn)
        .unwrap()
        .len()
        .try_into()
        .unwrap();
    assert_eq!(stored, 2000);
}

/// A set has no order of its own: BY nosort returns every member (in the set's order), and
/// with STORE Redis sorts them (ALPHA) so the stored list does not depend on the set's layout.
#[test]
fn unsorted_sets_come_back_whole() {
    let server = server();
    let mut conn = server.client();
    let members: Vec<String> = (0..300).map(|idx| format!("m{idx}")).collect();
    let _: () = conn.sadd("set", &members).unwrap();
    let mut got: Vec<String> = redis::cmd("SORT")
        .arg("set")
        .arg("BY")
        .arg("nosort")
        .query(&mut conn)
        .unwrap();
    got.sort();
    let mut want = members.clone();
    want.sort();
    assert_eq!(got, want);
    let n: i64 = redis::cmd("SORT")
        .arg("set")
        .arg("BY")
        .arg("nosort")
        .arg("STORE")
        .arg("dst")
        .query(&mut conn)
        .unwrap();
    assert_eq!(n, 300);
    let stored: Vec<String> = conn.lrange("dst", 0, -1).unwrap();
    assert_eq!(stored, want);
}

/// Every BY and GET lookup is a keyspace read, counted as Redis's `lookupKeyRead` counts it.
#[test]
fn pattern_lookups_count_hits_and_misses() {
    let server = server();
    let mut conn = server.raw();
    assert_eq!(cmd(&mut conn, "RPUSH l 1 2 3"), int(3));
    assert_eq!(cmd(&mut conn, "MSET w_1 3 w_2 2"), OK);
    assert_eq!(
        cmd(&mut conn, "SORT l BY w_* GET # GET w_*"),
        bulks_with_nil()
    );
    // The sorted key (1 hit), BY (2 hits, 1 miss), GET w_* (2 hits, 1 miss); `#` reads nothing.
    assert_eq!(info_stat(&mut conn, "keyspace_hits"), 5);
    assert_eq!(info_stat(&mut conn, "keyspace_misses"), 2);
}

/// The reply of `SORT l BY w_* GET # GET w_*` above: 3 (no weight, so 0) first, then 2, 1.
fn bulks_with_nil() -> String {
    "*6\r\n$1\r\n3\r\n$-1\r\n$1\r\n2\r\n$1\r\n2\r\n$1\r\n1\r\n$1\r\n3\r\n".to_owned()
}

#[test]
fn sort_ro_refuses_store_and_sort_refuses_other_types() {
    let server = server();
    let mut conn = server.raw();
    assert_eq!(cmd(&mut conn, "RPUSH l 2 1"), int(2));
    assert_eq!(
        cmd(&mut conn, "SORT_RO l STORE dst"),
        err("ERR syntax error")
    );
    assert_eq!(cmd(&mut conn, "EXISTS dst"), int(0));
    assert_eq!(cmd(&mut conn, "SET s x"), OK);
    assert_eq!(
        cmd(&mut conn, "SORT s"),
        err("WRONGTYPE Operation against a key holding the wrong kind of value")
    );
    assert_eq!(cmd(&mut conn, "RPUSH bad 1 x"), int(2));
    assert_eq!(
        cmd(&mut conn, "SORT bad STORE dst"),
        err("ERR One or more scores can't be converted into double")
    );
    assert_eq!(cmd(&mut conn, "EXISTS dst"), int(0));
}
