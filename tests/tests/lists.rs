//! List commands end to end: exact replies and error strings of LPUSH RPUSH LPUSHX RPUSHX LPOP
//! RPOP LLEN LRANGE LINDEX LSET LREM LTRIM LINSERT LPOS LMOVE RPOPLPUSH LMPOP as Redis 7.0 gives
//! them, WRONGTYPE, key removal when a list empties, RESP3 null replies, keyspace hit/miss
//! counting, binary-safe elements, and LMOVE atomicity as concurrent clients see it.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::sync::{Arc, Barrier};

use forkless_tests::resp::{NIL, WRONGTYPE, bulk, bulks, cmd, err, int};
use forkless_tests::{RawConn, TestServer};
use redis::Commands;

fn server() -> TestServer {
    TestServer::start(env!("CARGO_BIN_EXE_forkless-server"), &[])
}

/// An array of integers.
fn ints(items: &[i64]) -> String {
    let mut out = format!("*{}\r\n", items.len());
    for item in items {
        out.push_str(&int(*item));
    }
    out
}

const OK: &str = "+OK\r\n";
const NIL_ARRAY: &str = "*-1\r\n";
const EMPTY: &str = "*0\r\n";
const SYNTAX: &str = "-ERR syntax error\r\n";
const NOT_INTEGER: &str = "-ERR value is not an integer or out of range\r\n";

fn arity(name: &str) -> String {
    err(&format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// One numeric field of `INFO stats`.
fn info_stat(conn: &mut RawConn, field: &str) -> u64 {
    let info = cmd(conn, "INFO stats");
    let line = info
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")));
    line.unwrap_or_else(|| panic!("no {field} in INFO"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn pushes_build_the_list_in_redis_order() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "LPUSH l a b c"), int(3));
    assert_eq!(cmd(&mut c, "RPUSH l x y"), int(5));
    assert_eq!(
        cmd(&mut c, "LRANGE l 0 -1"),
        bulks(&["c", "b", "a", "x", "y"])
    );
    assert_eq!(cmd(&mut c, "LPUSHX l h"), int(6));
    assert_eq!(cmd(&mut c, "RPUSHX l t1 t2"), int(8));
    assert_eq!(cmd(&mut c, "LPUSHX none a"), int(0));
    assert_eq!(cmd(&mut c, "RPUSHX none a"), int(0));
    assert_eq!(cmd(&mut c, "EXISTS none"), int(0));
    assert_eq!(cmd(&mut c, "LLEN l"), int(8));
    assert_eq!(cmd(&mut c, "LLEN none"), int(0));
    assert_eq!(cmd(&mut c, "TYPE l"), "+list\r\n");
    assert_eq!(cmd(&mut c, "OBJECT ENCODING l"), bulk("quicklist"));
    assert_eq!(cmd(&mut c, "LPUSH l"), arity("lpush"));
    assert_eq!(cmd(&mut c, "RPUSHX l"), arity("rpushx"));
    assert_eq!(cmd(&mut c, "LLEN"), arity("llen"));
}

#[test]
fn every_list_command_refuses_other_types() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "SET s v"), OK);
    for line in [
        "LPUSH s a",
        "RPUSH s a",
        "LPUSHX s a",
        "RPUSHX s a",
        "LPOP s",
        "RPOP s 2",
        "LLEN s",
        "LRANGE s 0 -1",
        "LINDEX s 0",
        "LSET s 0 a",
        "LREM s 0 a",
        "LTRIM s 0 1",
        "LINSERT s BEFORE a b",
        "LPOS s a",
        "LMOVE s d LEFT RIGHT",
        "RPOPLPUSH s d",
        "LMPOP 1 s LEFT",
    ] {
        assert_eq!(cmd(&mut c, line), WRONGTYPE, "{line}");
    }
    assert_eq!(cmd(&mut c, "GET s"), bulk("v"));
    // The string commands refuse a list the same way.
    assert_eq!(cmd(&mut c, "RPUSH l a"), int(1));
    assert_eq!(cmd(&mut c, "GET l"), WRONGTYPE);
    assert_eq!(cmd(&mut c, "APPEND l x"), WRONGTYPE);
}

#[test]
fn lrange_and_lindex_clamp_and_count_from_the_tail() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "RPUSH l a b c d e"), int(5));
    assert_eq!(cmd(&mut c, "LRANGE l 1 3"), bulks(&["b", "c", "d"]));
    assert_eq!(cmd(&mut c, "LRANGE l -2 -1"), bulks(&["d", "e"]));
    assert_eq!(
        cmd(&mut c, "LRANGE l -100 100"),
        bulks(&["a", "b", "c", "d", "e"])
    );
    assert_eq!(cmd(&mut c, "LRANGE l 3 1"), EMPTY);
    assert_eq!(cmd(&mut c, "LRANGE l 5 10"), EMPTY);
    assert_eq!(
        cmd(&mut c, "LRANGE l -9223372036854775808 9223372036854775807"),
        bulks(&["a", "b", "c", "d", "e"])
    );
    assert_eq!(cmd(&mut c, "LRANGE none 0 -1"), EMPTY);
    // LRANGE parses its indexes before looking the key up.
    assert_eq!(cmd(&mut c, "LRANGE none x 1"), NOT_INTEGER);
    assert_eq!(cmd(&mut c, "LINDEX l 0"), bulk("a"));
    assert_eq!(cmd(&mut c, "LINDEX l -1"), bulk("e"));
    assert_eq!(cmd(&mut c, "LINDEX l 5"), NIL);
    assert_eq!(cmd(&mut c, "LINDEX l -6"), NIL);
    assert_eq!(cmd(&mut c, "LINDEX l -9223372036854775808"), NIL);
    assert_eq!(cmd(&mut c, "LINDEX l x"), NOT_INTEGER);
    // LINDEX looks the key up first.
    assert_eq!(cmd(&mut c, "LINDEX none x"), NIL);
}

#[test]
fn lset_replaces_by_index() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "RPUSH l a b c"), int(3));
    assert_eq!(cmd(&mut c, "LSET l 0 A"), OK);
    assert_eq!(cmd(&mut c, "LSET l -1 C"), OK);
    assert_eq!(cmd(&mut c, "LRANGE l 0 -1"), bulks(&["A", "b", "C"]));
    assert_eq!(cmd(&mut c, "LSET l 3 x"), err("ERR index out of range"));
    assert_eq!(cmd(&mut c, "LSET l -4 x"), err("ERR index out of range"));
    assert_eq!(cmd(&mut c, "LSET l x x"), NOT_INTEGER);
    assert_eq!(cmd(&mut c, "LSET none 0 x"), err("ERR no such key"));
    assert_eq!(cmd(&mut c, "LSET none x x"), err("ERR no such key"));
}

#[test]
fn pops_with_and_without_count() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "RPUSH l a b c d e f"), int(6));
    assert_eq!(cmd(&mut c, "LPOP l"), bulk("a"));
    assert_eq!(cmd(&mut c, "RPOP l"), bulk("f"));
    assert_eq!(cmd(&mut c, "LPOP l 2"), bulks(&["b", "c"]));
    assert_eq!(cmd(&mut c, "RPOP l 1"), bulks(&["e"]));
    assert_eq!(cmd(&mut c, "LPOP l 0"), EMPTY);
    assert_eq!(cmd(&mut c, "RPOP l 10"), bulks(&["d"]));
    assert_eq!(cmd(&mut c, "EXISTS l"), int(0));
    assert_eq!(cmd(&mut c, "LPOP l"), NIL);
    assert_eq!(cmd(&mut c, "LPOP l 1"), NIL_ARRAY);
    assert_eq!(cmd(&mut c, "RPOP l 0"), NIL_ARRAY);
    let positive = err("ERR value is out of range, must be positive");
    assert_eq!(cmd(&mut c, "LPOP l -1"), positive);
    assert_eq!(cmd(&mut c, "LPOP l abc"), positive);
    assert_eq!(cmd(&mut c, "LPOP l 1 2"), arity("lpop"));
    assert_eq!(cmd(&mut c, "rpop l 1 2"), arity("rpop"));
    assert_eq!(cmd(&mut c, "RPUSH l a b c"), int(3));
    assert_eq!(
        cmd(&mut c, "RPOP l 9223372036854775807"),
        bulks(&["c", "b", "a"])
    );
}

#[test]
fn lrem_ltrim_and_linsert() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "RPUSH l x a x b x c x"), int(7));
    assert_eq!(cmd(&mut c, "LREM l 2 x"), int(2));
    assert_eq!(
        cmd(&mut c, "LRANGE l 0 -1"),
        bulks(&["a", "b", "x", "c", "x"])
    );
    assert_eq!(cmd(&mut c, "LREM l -1 x"), int(1));
    assert_eq!(cmd(&mut c, "LRANGE l 0 -1"), bulks(&["a", "b", "x", "c"]));
    assert_eq!(cmd(&mut c, "LREM l 0 nothere"), int(0));
    assert_eq!(cmd(&mut c, "LREM l -9223372036854775808 x"), int(1));
    assert_eq!(cmd(&mut c, "LREM none 0 x"), int(0));
    assert_eq!(cmd(&mut c, "LREM none x x"), NOT_INTEGER);

    assert_eq!(cmd(&mut c, "LTRIM l 1 -1"), OK);
    assert_eq!(cmd(&mut c, "LRANGE l 0 -1"), bulks(&["b", "c"]));
    assert_eq!(cmd(&mut c, "LTRIM l 0 100"), OK);
    assert_eq!(cmd(&mut c, "LLEN l"), int(2));
    assert_eq!(cmd(&mut c, "LTRIM l 2 1"), OK);
    assert_eq!(cmd(&mut c, "EXISTS l"), int(0));
    assert_eq!(cmd(&mut c, "LTRIM none 0 1"), OK);
    assert_eq!(cmd(&mut c, "LTRIM none a 1"), NOT_INTEGER);

    assert_eq!(cmd(&mut c, "RPUSH l a b c"), int(3));
    assert_eq!(cmd(&mut c, "LINSERT l BEFORE b x"), int(4));
    assert_eq!(cmd(&mut c, "LINSERT l after c y"), int(5));
    assert_eq!(
        cmd(&mut c, "LRANGE l 0 -1"),
        bulks(&["a", "x", "b", "c", "y"])
    );
    assert_eq!(cmd(&mut c, "LINSERT l BEFORE nothere q"), int(-1));
    assert_eq!(cmd(&mut c, "LINSERT none BEFORE a q"), int(0));
    assert_eq!(cmd(&mut c, "LINSERT l MIDDLE a q"), SYNTAX);
    assert_eq!(cmd(&mut c, "LINSERT none MIDDLE a q"), SYNTAX);
    assert_eq!(cmd(&mut c, "LREM l 0 a"), int(1));
    assert_eq!(cmd(&mut c, "LREM l 0 x"), int(1));
    assert_eq!(cmd(&mut c, "LREM l 0 b"), int(1));
    assert_eq!(cmd(&mut c, "LREM l 0 c"), int(1));
    assert_eq!(cmd(&mut c, "LREM l 0 y"), int(1));
    assert_eq!(
        cmd(&mut c, "EXISTS l"),
        int(0),
        "LREM of the last element removes the key"
    );
}

#[test]
fn lpos_rank_count_and_maxlen() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "RPUSH l a b c a b c a"), int(7));
    assert_eq!(cmd(&mut c, "LPOS l c"), int(2));
    assert_eq!(cmd(&mut c, "LPOS l a RANK 2"), int(3));
    assert_eq!(cmd(&mut c, "LPOS l a RANK -1"), int(6));
    assert_eq!(cmd(&mut c, "LPOS l a RANK -3"), int(0));
    assert_eq!(cmd(&mut c, "LPOS l a RANK 4"), NIL);
    assert_eq!(cmd(&mut c, "LPOS l a COUNT 0"), ints(&[0, 3, 6]));
    assert_eq!(cmd(&mut c, "LPOS l a COUNT 2 RANK -1"), ints(&[6, 3]));
    assert_eq!(cmd(&mut c, "LPOS l a COUNT 0 MAXLEN 4"), ints(&[0, 3]));
    assert_eq!(cmd(&mut c, "LPOS l a MAXLEN 1 RANK 2"), NIL);
    assert_eq!(cmd(&mut c, "LPOS l zz COUNT 1"), EMPTY);
    assert_eq!(
        cmd(&mut c, "LPOS l a RANK -9223372036854775808 COUNT 1"),
        ints(&[6, 3, 0]),
        "Redis 7.0's overflowing RANK"
    );
    assert_eq!(
        cmd(&mut c, "LPOS l a RANK 0"),
        err(
            "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... \
             or use negative to start from the end of the list"
        )
    );
    assert_eq!(
        cmd(&mut c, "LPOS l a COUNT -1"),
        err("ERR COUNT can't be negative")
    );
    assert_eq!(
        cmd(&mut c, "LPOS l a MAXLEN x"),
        err("ERR MAXLEN can't be negative")
    );
    assert_eq!(cmd(&mut c, "LPOS l a RANK x"), NOT_INTEGER);
    assert_eq!(cmd(&mut c, "LPOS l a COUNT"), SYNTAX);
    assert_eq!(cmd(&mut c, "LPOS l a FOO 1"), SYNTAX);
    assert_eq!(cmd(&mut c, "LPOS none a"), NIL);
    assert_eq!(cmd(&mut c, "LPOS none a COUNT 1"), EMPTY);
}

#[test]
fn lmove_and_rpoplpush_move_and_rotate() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "RPUSH src a b c"), int(3));
    assert_eq!(cmd(&mut c, "LMOVE src dst LEFT RIGHT"), bulk("a"));
    assert_eq!(cmd(&mut c, "LMOVE src dst RIGHT LEFT"), bulk("c"));
    assert_eq!(cmd(&mut c, "RPOPLPUSH src dst"), bulk("b"));
    assert_eq!(cmd(&mut c, "EXISTS src"), int(0));
    assert_eq!(cmd(&mut c, "LRANGE dst 0 -1"), bulks(&["b", "c", "a"]));
    assert_eq!(cmd(&mut c, "RPOPLPUSH dst dst"), bulk("a"));
    assert_eq!(cmd(&mut c, "LRANGE dst 0 -1"), bulks(&["a", "b", "c"]));
    assert_eq!(cmd(&mut c, "LMOVE dst dst LEFT RIGHT"), bulk("a"));
    assert_eq!(cmd(&mut c, "LRANGE dst 0 -1"), bulks(&["b", "c", "a"]));
    assert_eq!(cmd(&mut c, "LMOVE src dst LEFT RIGHT"), NIL);
    assert_eq!(cmd(&mut c, "LMOVE dst dst UP LEFT"), SYNTAX);
    assert_eq!(cmd(&mut c, "LMOVE src dst LEFT DOWN"), SYNTAX);
    assert_eq!(cmd(&mut c, "SET s v"), OK);
    assert_eq!(cmd(&mut c, "LMOVE dst s LEFT RIGHT"), WRONGTYPE);
    assert_eq!(
        cmd(&mut c, "LLEN dst"),
        int(3),
        "a refused move pops nothing"
    );
    assert_eq!(cmd(&mut c, "RPOPLPUSH none s"), NIL);
    assert_eq!(cmd(&mut c, "RPUSH one x"), int(1));
    assert_eq!(cmd(&mut c, "RPOPLPUSH one one"), bulk("x"));
    assert_eq!(cmd(&mut c, "LRANGE one 0 -1"), bulks(&["x"]));
}

#[test]
fn lmpop_pops_from_the_first_non_empty_list() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "RPUSH l2 a b c d e"), int(5));
    let pair = |key: &str, items: &[&str]| format!("*2\r\n{}{}", bulk(key), bulks(items));
    assert_eq!(cmd(&mut c, "LMPOP 2 l1 l2 LEFT"), pair("l2", &["a"]));
    assert_eq!(
        cmd(&mut c, "LMPOP 2 l1 l2 RIGHT COUNT 2"),
        pair("l2", &["e", "d"])
    );
    assert_eq!(
        cmd(&mut c, "LMPOP 1 l2 left count 10"),
        pair("l2", &["b", "c"])
    );
    assert_eq!(cmd(&mut c, "EXISTS l2"), int(0));
    assert_eq!(cmd(&mut c, "LMPOP 2 l1 l2 LEFT"), NIL_ARRAY);
    assert_eq!(cmd(&mut c, "SET s v"), OK);
    assert_eq!(cmd(&mut c, "RPUSH l3 x"), int(1));
    assert_eq!(cmd(&mut c, "LMPOP 3 none s l3 LEFT"), WRONGTYPE);
    assert_eq!(cmd(&mut c, "LMPOP 3 none l3 s LEFT"), pair("l3", &["x"]));
    let numkeys = err("ERR numkeys should be greater than 0");
    assert_eq!(cmd(&mut c, "LMPOP 0 l LEFT"), numkeys);
    assert_eq!(cmd(&mut c, "LMPOP x l LEFT"), numkeys);
    assert_eq!(cmd(&mut c, "LMPOP 2 l LEFT"), SYNTAX);
    assert_eq!(cmd(&mut c, "LMPOP 9223372036854775807 l LEFT"), SYNTAX);
    assert_eq!(cmd(&mut c, "LMPOP 1 l MIDDLE"), SYNTAX);
    let count = err("ERR count should be greater than 0");
    assert_eq!(cmd(&mut c, "LMPOP 1 l LEFT COUNT 0"), count);
    assert_eq!(cmd(&mut c, "LMPOP 1 l LEFT COUNT -1"), count);
    assert_eq!(cmd(&mut c, "LMPOP 1 l LEFT COUNT 1 COUNT 1"), SYNTAX);
    assert_eq!(cmd(&mut c, "LMPOP 1 l"), arity("lmpop"));
}

#[test]
fn resp3_nulls_and_types() {
    let server = server();
    let mut c = server.raw();
    assert!(cmd(&mut c, "HELLO 3").starts_with('%'));
    assert_eq!(cmd(&mut c, "LPOP none"), "_\r\n");
    assert_eq!(cmd(&mut c, "LPOP none 1"), "_\r\n");
    assert_eq!(cmd(&mut c, "LINDEX none 0"), "_\r\n");
    assert_eq!(cmd(&mut c, "LPOS none a"), "_\r\n");
    assert_eq!(cmd(&mut c, "LMPOP 1 none LEFT"), "_\r\n");
    assert_eq!(cmd(&mut c, "LMOVE none d LEFT LEFT"), "_\r\n");
    assert_eq!(cmd(&mut c, "RPUSH l a b"), int(2));
    assert_eq!(cmd(&mut c, "LRANGE l 0 -1"), bulks(&["a", "b"]));
    assert_eq!(cmd(&mut c, "LPOS l a COUNT 0"), ints(&[0]));
    assert_eq!(cmd(&mut c, "LINDEX l 5"), "_\r\n");
    assert_eq!(cmd(&mut c, "LPOS l zz"), "_\r\n");
}

#[test]
fn reads_count_keyspace_hits_and_misses_writes_do_not() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "RPUSH l a b"), int(2));
    let (hits, misses) = (
        info_stat(&mut c, "keyspace_hits"),
        info_stat(&mut c, "keyspace_misses"),
    );
    for line in ["LLEN l", "LRANGE l 0 -1", "LINDEX l 0", "LPOS l a"] {
        cmd(&mut c, line);
    }
    for line in ["LLEN n", "LRANGE n 0 -1", "LINDEX n 0", "LPOS n a"] {
        cmd(&mut c, line);
    }
    // Errors before the lookup count nothing; writes count nothing.
    cmd(&mut c, "LRANGE n x 1");
    cmd(&mut c, "LPOS n a RANK 0");
    cmd(&mut c, "RPUSH l c");
    cmd(&mut c, "LPOP n");
    assert_eq!(info_stat(&mut c, "keyspace_hits"), hits + 4);
    assert_eq!(info_stat(&mut c, "keyspace_misses"), misses + 4);
}

#[test]
fn elements_are_binary_safe() {
    let server = server();
    let mut conn = server.client();
    let element: Vec<u8> = (0..=255u8).collect();
    let len: usize = conn.rpush("bin", &element).unwrap();
    assert_eq!(len, 1);
    let _: usize = conn.lpush("bin", b"").unwrap();
    let items: Vec<Vec<u8>> = conn.lrange("bin", 0, -1).unwrap();
    assert_eq!(items, vec![Vec::new(), element.clone()]);
    let pos: Option<usize> = redis::cmd("LPOS")
        .arg("bin")
        .arg(&element)
        .query(&mut conn)
        .unwrap();
    assert_eq!(pos, Some(1));
}

#[test]
fn expired_list_reads_as_absent_and_ttl_survives_changes() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "RPUSH l a b"), int(2));
    assert_eq!(cmd(&mut c, "EXPIRE l 100"), int(1));
    assert_eq!(cmd(&mut c, "RPUSH l c"), int(3));
    assert_eq!(cmd(&mut c, "LPOP l"), bulk("a"));
    assert_eq!(cmd(&mut c, "LSET l 0 B"), OK);
    assert_eq!(cmd(&mut c, "TTL l"), int(100));
    // An absolute expiry in the past removes the key at once.
    assert_eq!(cmd(&mut c, "PEXPIREAT l 1"), int(1));
    assert_eq!(cmd(&mut c, "LLEN l"), int(0));
    assert_eq!(cmd(&mut c, "RPUSHX l a"), int(0));
}

/// Several clients move elements back and forth between two lists with LMOVE at once. Each move
/// locks both keys in one guard, so afterwards every element is in exactly one of the lists:
/// none lost, none duplicated.
#[test]
fn concurrent_lmoves_lose_and_duplicate_nothing() {
    const N_ELEMENTS: usize = 50;
    const N_CLIENTS: usize = 4;
    const N_MOVES: usize = 300;
    let server = server();
    let mut conn = server.client();
    let elements: Vec<String> = (0..N_ELEMENTS).map(|n| format!("e{n}")).collect();
    let _: usize = conn.rpush("left", &elements).unwrap();
    let barrier = Arc::new(Barrier::new(N_CLIENTS));
    let workers: Vec<_> = (0..N_CLIENTS)
        .map(|worker| {
            let mut c = server.raw();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                for n in 0..N_MOVES {
                    let (src, dst) = if (n + worker) % 2 == 0 {
                        ("left", "right")
                    } else {
                        ("right", "left")
                    };
                    let line = format!("LMOVE {src} {dst} LEFT RIGHT");
                    cmd(&mut c, &line);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let mut all: Vec<String> = conn.lrange("left", 0, -1).unwrap();
    all.extend(conn.lrange::<_, Vec<String>>("right", 0, -1).unwrap());
    all.sort();
    let mut expected = elements;
    expected.sort();
    assert_eq!(all, expected);
}

/// Lists written, saved with SAVE and loaded by a fresh server on the same directory come back
/// element for element, including a big one, binary elements and the key's TTL.
#[test]
fn lists_survive_save_and_restart() {
    let bin = env!("CARGO_BIN_EXE_forkless-server");
    let dir = forkless_tests::unique_dir("lists-snapshot");
    let big: Vec<String> = (0..5000).map(|n| format!("element-{n}")).collect();
    let binary: Vec<u8> = (0..=255u8).collect();
    {
        let server = TestServer::start_in(bin, &dir, &["--save", ""], &[]);
        let mut conn = server.client();
        let _: usize = conn.rpush("big", &big).unwrap();
        let _: usize = conn.rpush("small", &["a", "", "1", "-2"]).unwrap();
        let _: usize = conn.rpush("bin", &binary).unwrap();
        let _: usize = conn.rpush("ttl", "x").unwrap();
        let _: bool = conn.expire("ttl", 1000).unwrap();
        let reply: String = redis::cmd("SAVE").query(&mut conn).unwrap();
        assert_eq!(reply, "OK");
    }
    let server = TestServer::start_in(bin, &dir, &["--save", ""], &[]);
    let mut conn = server.client();
    let loaded: Vec<String> = conn.lrange("big", 0, -1).unwrap();
    assert_eq!(loaded, big);
    let small: Vec<String> = conn.lrange("small", 0, -1).unwrap();
    assert_eq!(small, ["a", "", "1", "-2"]);
    let loaded_binary: Vec<Vec<u8>> = conn.lrange("bin", 0, -1).unwrap();
    assert_eq!(loaded_binary, [binary]);
    let ttl: i64 = conn.ttl("ttl").unwrap();
    assert!((990..=1000).contains(&ttl), "ttl {ttl}");
    let kind: String = redis::cmd("TYPE").arg("small").query(&mut conn).unwrap();
    assert_eq!(kind, "list");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
