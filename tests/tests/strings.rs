//! String commands end to end: exact replies and error strings of GET SET SETNX SETEX PSETEX
//! MGET MSET MSETNX GETSET GETDEL GETEX APPEND STRLEN GETRANGE SUBSTR SETRANGE INCR DECR INCRBY
//! DECRBY INCRBYFLOAT as Redis 7.0 gives them, the SET option matrix, integer and float edge
//! cases, what each command does to a TTL, keyspace hit/miss counting, the proto-max-bulk-len
//! limit, RESP3 nulls, and MSET/INCR atomicity as concurrent clients see it.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use forkless_tests::resp::{NIL, bulk, call, cmd, err, int};
use forkless_tests::{RawConn, TestServer, wait_until};

fn server() -> TestServer {
    TestServer::start(env!("CARGO_BIN_EXE_forkless-server"), &[])
}

/// A bulk string reply of arbitrary bytes.
fn raw_bulk(value: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", value.len()).into_bytes();
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    out
}

const OK: &str = "+OK\r\n";
const SYNTAX: &str = "-ERR syntax error\r\n";
const NOT_INTEGER: &str = "-ERR value is not an integer or out of range\r\n";
const NOT_FLOAT: &str = "-ERR value is not a valid float\r\n";
const OVERFLOW: &str = "-ERR increment or decrement would overflow\r\n";

fn arity(name: &str) -> String {
    err(&format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// The TTL in seconds as the server reports it.
fn ttl(conn: &mut RawConn, key: &str) -> i64 {
    let reply = cmd(conn, &format!("TTL {key}"));
    reply
        .trim_start_matches(':')
        .trim_end()
        .parse()
        .unwrap_or_else(|_| panic!("TTL reply {reply:?}"))
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
        .expect("numeric INFO field")
}

#[test]
fn get_and_set_basics() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "GET k"), NIL);
    assert_eq!(cmd(&mut c, "SET k v"), OK);
    assert_eq!(cmd(&mut c, "GET k"), bulk("v"));
    assert_eq!(
        cmd(&mut c, "set k v2"),
        OK,
        "command names are case-insensitive"
    );
    assert_eq!(cmd(&mut c, "GET k"), bulk("v2"));
    // Binary-safe keys and values, including the empty string.
    assert_eq!(call(&mut c, &[b"SET", b"b\0in\r\n", b"\0\r\n\xff"]), OK);
    assert_eq!(c.call(&[b"GET", b"b\0in\r\n"]), b"$4\r\n\0\r\n\xff\r\n");
    assert_eq!(call(&mut c, &[b"SET", b"empty", b""]), OK);
    assert_eq!(cmd(&mut c, "GET empty"), "$0\r\n\r\n");
    assert_eq!(cmd(&mut c, "GET"), arity("get"));
    assert_eq!(cmd(&mut c, "GET a b"), arity("get"));
    assert_eq!(cmd(&mut c, "SET k"), arity("set"));
    // Through the redis crate as well.
    let mut con = server.client();
    let () = redis::cmd("SET")
        .arg("crate")
        .arg(42)
        .query(&mut con)
        .unwrap();
    let value: i64 = redis::cmd("GET").arg("crate").query(&mut con).unwrap();
    assert_eq!(value, 42);
    let missing: Option<String> = redis::cmd("GET").arg("nope").query(&mut con).unwrap();
    assert_eq!(missing, None);
}

#[test]
fn set_option_matrix() {
    let server = server();
    let mut c = server.raw();
    // (options, key exists beforehand, reply, value afterwards)
    let cases: &[(&str, bool, &str, Option<&str>)] = &[
        ("", false, OK, Some("new")),
        ("", true, OK, Some("new")),
        ("NX", false, OK, Some("new")),
        ("NX", true, NIL, Some("old")),
        ("XX", false, NIL, None),
        ("XX", true, OK, Some("new")),
        ("GET", false, NIL, Some("new")),
        ("GET", true, "$3\r\nold\r\n", Some("new")),
        ("NX GET", false, NIL, Some("new")),
        ("NX GET", true, "$3\r\nold\r\n", Some("old")),
        ("XX GET", false, NIL, None),
        ("XX GET", true, "$3\r\nold\r\n", Some("new")),
        ("nx nx get get", true, "$3\r\nold\r\n", Some("old")),
        ("EX 100 EX 200", true, OK, Some("new")),
        ("KEEPTTL XX", true, OK, Some("new")),
        ("PXAT 99999999999999 NX", false, OK, Some("new")),
        ("NX XX", true, SYNTAX, Some("old")),
        ("XX NX", false, SYNTAX, None),
        ("EX 10 PX 10", true, SYNTAX, Some("old")),
        ("EXAT 10 PXAT 10", true, SYNTAX, Some("old")),
        ("EX 10 EXAT 10", true, SYNTAX, Some("old")),
        ("KEEPTTL EX 10", true, SYNTAX, Some("old")),
        ("PX 10 KEEPTTL", true, SYNTAX, Some("old")),
        ("EX", true, SYNTAX, Some("old")),
        ("PXAT", false, SYNTAX, None),
        ("PERSIST", true, SYNTAX, Some("old")),
        ("BOGUS", true, SYNTAX, Some("old")),
        ("EX abc NX BOGUS", true, SYNTAX, Some("old")),
        ("EX abc", true, NOT_INTEGER, Some("old")),
        ("EX 012", true, NOT_INTEGER, Some("old")),
        ("PX 1.5", true, NOT_INTEGER, Some("old")),
        ("EX 9223372036854775808", true, NOT_INTEGER, Some("old")),
        (
            "EX 0 GET",
            true,
            "-ERR invalid expire time in 'set' command\r\n",
            Some("old"),
        ),
    ];
    for (options, exists, reply, after) in cases {
        cmd(&mut c, "DEL k");
        if *exists {
            cmd(&mut c, "SET k old");
        }
        assert_eq!(
            cmd(&mut c, &format!("SET k new {options}")),
            *reply,
            "SET k new {options}"
        );
        assert_eq!(
            cmd(&mut c, "GET k"),
            after.map_or(NIL.to_owned(), bulk),
            "value after {options}"
        );
    }
    let invalid = err("ERR invalid expire time in 'set' command");
    for options in [
        "EX 0",
        "EX -1",
        "PX 0",
        "PX -100",
        "EXAT 0",
        "PXAT -1",
        "PX 9223372036854775807",
        "EX 9223372036854775",
        "EX 9223372036854776",
        "EXAT 9223372036854776",
    ] {
        assert_eq!(
            cmd(&mut c, &format!("SET k v {options}")),
            invalid,
            "{options}"
        );
    }
    // The largest absolute expiries are fine.
    assert_eq!(cmd(&mut c, "SET k v EXAT 9223372036854775"), OK);
    assert!(ttl(&mut c, "k") > 9_000_000_000_000_000);
    assert_eq!(cmd(&mut c, "SET k v PXAT 9223372036854775807"), OK);
    assert!(ttl(&mut c, "k") > 9_000_000_000_000_000);
}

#[test]
fn ttl_survives_exactly_where_redis_keeps_it() {
    let server = server();
    let mut c = server.raw();
    let with_ttl = |c: &mut RawConn, value: &str| {
        assert_eq!(cmd(c, &format!("SET k {value} EX 1000")), OK);
        assert_eq!(ttl(c, "k"), 1000);
    };
    // Commands that replace the value clear the TTL.
    for replace in [
        "SET k 1",
        "SET k 1 GET",
        "SET k 1 XX",
        "GETSET k 1",
        "MSET k 1",
        "SETEX k 5 1",
    ] {
        with_ttl(&mut c, "7");
        cmd(&mut c, replace);
        let expected = if replace.starts_with("SETEX") { 5 } else { -1 };
        assert_eq!(ttl(&mut c, "k"), expected, "{replace}");
    }
    // Commands that change the value in place keep it.
    for change in [
        "SET k 1 KEEPTTL",
        "SET k 1 KEEPTTL GET",
        "INCR k",
        "DECRBY k 3",
        "INCRBYFLOAT k 0.5",
        "APPEND k 1",
        "SETRANGE k 0 9",
        "GETEX k",
        "GET k",
        "SET k 1 NX",
    ] {
        with_ttl(&mut c, "7");
        cmd(&mut c, change);
        let left = ttl(&mut c, "k");
        assert!((999..=1000).contains(&left), "{change}: TTL {left}");
    }
    // GETEX sets and removes it.
    with_ttl(&mut c, "7");
    assert_eq!(cmd(&mut c, "GETEX k PERSIST"), bulk("7"));
    assert_eq!(ttl(&mut c, "k"), -1);
    assert_eq!(cmd(&mut c, "GETEX k PERSIST"), bulk("7"));
    assert_eq!(cmd(&mut c, "GETEX k EX 50"), bulk("7"));
    assert_eq!(ttl(&mut c, "k"), 50);
    assert_eq!(cmd(&mut c, "GETEX k PX 70000"), bulk("7"));
    assert_eq!(ttl(&mut c, "k"), 70);
    assert_eq!(cmd(&mut c, "GETEX k EXAT 99999999999"), bulk("7"));
    assert!(ttl(&mut c, "k") > 90_000_000_000);
    // A key set to expire in the past is gone for every reader.
    assert_eq!(cmd(&mut c, "SET past v EXAT 1"), OK);
    assert_eq!(cmd(&mut c, "GET past"), NIL);
    assert_eq!(cmd(&mut c, "EXISTS past"), int(0));
    assert_eq!(cmd(&mut c, "SET past v PXAT 1 GET"), NIL);
    // GETEX with a past absolute time returns the value, then deletes the key.
    cmd(&mut c, "SET k v");
    assert_eq!(cmd(&mut c, "GETEX k PXAT 1"), bulk("v"));
    assert_eq!(cmd(&mut c, "EXISTS k"), int(0));
    // Relative expiries really expire.
    assert_eq!(cmd(&mut c, "SET short v PX 30"), OK);
    assert_eq!(cmd(&mut c, "PSETEX short2 30 v"), OK);
    assert!(wait_until(Duration::from_secs(5), || cmd(
        &mut c,
        "MGET short short2"
    ) == "*2\r\n$-1\r\n$-1\r\n"));
}

#[test]
fn setnx_setex_psetex_getset_getdel() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "SETNX n 1"), int(1));
    assert_eq!(cmd(&mut c, "SETNX n 2"), int(0));
    assert_eq!(cmd(&mut c, "GET n"), bulk("1"));
    assert_eq!(cmd(&mut c, "SETNX n"), arity("setnx"));

    assert_eq!(cmd(&mut c, "SETEX e 100 v"), OK);
    assert_eq!(ttl(&mut c, "e"), 100);
    assert_eq!(cmd(&mut c, "PSETEX e 200000 w"), OK);
    assert_eq!(ttl(&mut c, "e"), 200);
    assert_eq!(cmd(&mut c, "GET e"), bulk("w"));
    for (line, name) in [
        ("SETEX e 0 v", "setex"),
        ("SETEX e -1 v", "setex"),
        ("SETEX e 9223372036854775 v", "setex"),
        ("PSETEX e 0 v", "psetex"),
        ("PSETEX e 9223372036854775807 v", "psetex"),
    ] {
        assert_eq!(
            cmd(&mut c, line),
            err(&format!("ERR invalid expire time in '{name}' command")),
            "{line}"
        );
    }
    assert_eq!(cmd(&mut c, "SETEX e x v"), NOT_INTEGER);
    assert_eq!(cmd(&mut c, "PSETEX e 1.0 v"), NOT_INTEGER);
    assert_eq!(cmd(&mut c, "SETEX e 100"), arity("setex"));
    assert_eq!(
        cmd(&mut c, "GET e"),
        bulk("w"),
        "failed SETEX changed nothing"
    );

    assert_eq!(cmd(&mut c, "GETSET g 1"), NIL);
    assert_eq!(cmd(&mut c, "GETSET g 2"), bulk("1"));
    assert_eq!(cmd(&mut c, "GET g"), bulk("2"));
    assert_eq!(cmd(&mut c, "GETSET g"), arity("getset"));

    assert_eq!(cmd(&mut c, "GETDEL g"), bulk("2"));
    assert_eq!(cmd(&mut c, "GETDEL g"), NIL);
    assert_eq!(cmd(&mut c, "EXISTS g"), int(0));
    assert_eq!(cmd(&mut c, "GETDEL a b"), arity("getdel"));
}

#[test]
fn getex_options_and_errors() {
    let server = server();
    let mut c = server.raw();
    // A missing key answers nil even to a bad expiry (the key is looked up first)...
    assert_eq!(cmd(&mut c, "GETEX x"), NIL);
    assert_eq!(cmd(&mut c, "GETEX x EX 0"), NIL);
    assert_eq!(cmd(&mut c, "GETEX x EX abc"), NIL);
    // ...but not to a syntax error.
    assert_eq!(cmd(&mut c, "GETEX x BOGUS"), SYNTAX);
    cmd(&mut c, "SET x v");
    for bad in [
        "PERSIST EX 10",
        "EX 10 PERSIST",
        "EX 10 PX 10",
        "KEEPTTL",
        "NX",
        "XX",
        "GET",
        "EX",
        "PXAT",
    ] {
        assert_eq!(
            cmd(&mut c, &format!("GETEX x {bad}")),
            SYNTAX,
            "GETEX x {bad}"
        );
    }
    let invalid = err("ERR invalid expire time in 'getex' command");
    for bad in [
        "EX 0",
        "EX -1",
        "PX 0",
        "EXAT 0",
        "PXAT -1",
        "EX 9223372036854775",
        "PX 9223372036854775807",
    ] {
        assert_eq!(
            cmd(&mut c, &format!("GETEX x {bad}")),
            invalid,
            "GETEX x {bad}"
        );
    }
    assert_eq!(cmd(&mut c, "GETEX x EX 1.5"), NOT_INTEGER);
    assert_eq!(ttl(&mut c, "x"), -1, "failed GETEX changed nothing");
    assert_eq!(cmd(&mut c, "GETEX x ex 10 ex 20"), bulk("v"));
    assert_eq!(ttl(&mut c, "x"), 20);
    assert_eq!(cmd(&mut c, "GETEX"), arity("getex"));
}

#[test]
fn mget_mset_msetnx() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "MSET a 1 b 2 c 3"), OK);
    assert_eq!(
        cmd(&mut c, "MGET a b nokey c"),
        "*4\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n$1\r\n3\r\n"
    );
    assert_eq!(cmd(&mut c, "MGET a a"), "*2\r\n$1\r\n1\r\n$1\r\n1\r\n");
    assert_eq!(cmd(&mut c, "MSET a x a y a z"), OK);
    assert_eq!(cmd(&mut c, "GET a"), bulk("z"), "the last duplicate wins");
    assert_eq!(cmd(&mut c, "MSET a 1 b"), arity("mset"));
    assert_eq!(cmd(&mut c, "MSET a"), arity("mset"));
    assert_eq!(cmd(&mut c, "MGET"), arity("mget"));

    assert_eq!(cmd(&mut c, "MSETNX m1 1 m2 2"), int(1));
    assert_eq!(cmd(&mut c, "MSETNX m2 x m3 3"), int(0));
    assert_eq!(
        cmd(&mut c, "MGET m1 m2 m3"),
        "*3\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n",
        "MSETNX is all or nothing"
    );
    assert_eq!(cmd(&mut c, "MSETNX m4 1 m4 2"), int(1));
    assert_eq!(cmd(&mut c, "GET m4"), bulk("2"));
    assert_eq!(cmd(&mut c, "MSETNX m5 1 m6"), arity("msetnx"));
    assert_eq!(cmd(&mut c, "EXISTS m5"), int(0));
}

#[test]
fn append_strlen_getrange_setrange() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "APPEND s hello"), int(5));
    assert_eq!(call(&mut c, &[b"APPEND", b"s", b" world"]), int(11));
    assert_eq!(cmd(&mut c, "GET s"), bulk("hello world"));
    assert_eq!(call(&mut c, &[b"APPEND", b"s", b""]), int(11));
    assert_eq!(cmd(&mut c, "STRLEN s"), int(11));
    assert_eq!(cmd(&mut c, "STRLEN nokey"), int(0));
    assert_eq!(cmd(&mut c, "SET num 12"), OK);
    assert_eq!(cmd(&mut c, "APPEND num 34"), int(4));
    assert_eq!(cmd(&mut c, "INCR num"), int(1235));
    // Repeated appends stay correct while the value grows in place.
    for round in 0..200 {
        assert_eq!(cmd(&mut c, "APPEND grow xy"), int(2 * (round + 1)));
    }
    assert_eq!(cmd(&mut c, "GET grow"), bulk(&"xy".repeat(200)));

    let cases = [
        ("0 4", "Hello"),
        ("-5 -1", "World"),
        ("0 -1", "Hello World"),
        ("6 100", "World"),
        ("100 200", ""),
        ("-1 -5", ""),
        ("-100 -200", ""),
        ("-100 4", "Hello"),
        ("0 -100", "H"),
        ("5 3", ""),
        ("3 3", "l"),
        ("-9223372036854775808 9223372036854775807", "Hello World"),
    ];
    assert_eq!(call(&mut c, &[b"SET", b"s", b"Hello World"]), OK);
    for (range, expected) in cases {
        assert_eq!(
            cmd(&mut c, &format!("GETRANGE s {range}")),
            bulk(expected),
            "GETRANGE s {range}"
        );
        assert_eq!(
            cmd(&mut c, &format!("SUBSTR s {range}")),
            bulk(expected),
            "SUBSTR s {range}"
        );
    }
    assert_eq!(cmd(&mut c, "GETRANGE nokey 0 -1"), bulk(""));
    assert_eq!(cmd(&mut c, "GETRANGE s a 1"), NOT_INTEGER);
    assert_eq!(
        cmd(&mut c, "GETRANGE nokey 0 9223372036854775808"),
        NOT_INTEGER
    );
    assert_eq!(cmd(&mut c, "GETRANGE s 0"), arity("getrange"));

    assert_eq!(cmd(&mut c, "SETRANGE r 0 hello"), int(5));
    assert_eq!(cmd(&mut c, "SETRANGE r 1 EL"), int(5));
    assert_eq!(cmd(&mut c, "SETRANGE r 7 xy"), int(9));
    assert_eq!(c.call(&[b"GET", b"r"]), b"$9\r\nhELlo\0\0xy\r\n");
    assert_eq!(
        call(&mut c, &[b"SETRANGE", b"r", b"100", b""]),
        int(9),
        "empty patch: length only"
    );
    assert_eq!(call(&mut c, &[b"SETRANGE", b"nr", b"5", b""]), int(0));
    assert_eq!(
        cmd(&mut c, "EXISTS nr"),
        int(0),
        "empty patch creates no key"
    );
    assert_eq!(cmd(&mut c, "SETRANGE nr 3 ab"), int(5));
    assert_eq!(c.call(&[b"GET", b"nr"]), b"$5\r\n\0\0\0ab\r\n");
    assert_eq!(
        cmd(&mut c, "SETRANGE r -1 x"),
        err("ERR offset is out of range")
    );
    assert_eq!(
        call(&mut c, &[b"SETRANGE", b"r", b"-1", b""]),
        err("ERR offset is out of range")
    );
    assert_eq!(cmd(&mut c, "SETRANGE r x y"), NOT_INTEGER);
    let too_long = err("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    assert_eq!(cmd(&mut c, "SETRANGE r 536870912 x"), too_long);
    assert_eq!(cmd(&mut c, "SETRANGE nr3 9223372036854775807 x"), too_long);
    assert_eq!(cmd(&mut c, "EXISTS nr3"), int(0));
    assert_eq!(cmd(&mut c, "SET i 12345"), OK);
    assert_eq!(cmd(&mut c, "SETRANGE i 1 9"), int(5));
    assert_eq!(cmd(&mut c, "INCR i"), int(19346));
    assert_eq!(cmd(&mut c, "SETRANGE r 0"), arity("setrange"));
}

#[test]
fn string_limits_follow_proto_max_bulk_len() {
    let server = TestServer::start(
        env!("CARGO_BIN_EXE_forkless-server"),
        &["--proto-max-bulk-len", "1mb"],
    );
    let mut c = server.raw();
    let limit = 1024 * 1024;
    let too_long = err("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    assert_eq!(cmd(&mut c, &format!("SETRANGE new {limit} x")), too_long);
    assert_eq!(cmd(&mut c, "EXISTS new"), int(0));
    assert_eq!(
        cmd(&mut c, &format!("SETRANGE k {} x", limit - 1)),
        int(limit)
    );
    assert_eq!(cmd(&mut c, "STRLEN k"), int(limit));
    assert_eq!(cmd(&mut c, &format!("SETRANGE k {limit} x")), too_long);
    assert_eq!(cmd(&mut c, "APPEND k x"), too_long);
    assert_eq!(
        cmd(&mut c, "STRLEN k"),
        int(limit),
        "failed writes changed nothing"
    );
    assert_eq!(
        call(&mut c, &[b"APPEND", b"k", b""]),
        int(limit),
        "appending nothing at the limit is fine"
    );
    let half = "a".repeat(limit as usize / 2);
    assert_eq!(cmd(&mut c, &format!("APPEND h {half}")), int(limit / 2));
    assert_eq!(cmd(&mut c, &format!("APPEND h {half}")), int(limit));
    assert_eq!(cmd(&mut c, "APPEND h b"), too_long);
    assert_eq!(
        cmd(&mut c, "SETRANGE h 0 b"),
        int(limit),
        "overwriting inside the limit is fine"
    );
}

#[test]
fn integer_edge_cases() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "INCR c"), int(1));
    assert_eq!(cmd(&mut c, "DECR c"), int(0));
    assert_eq!(cmd(&mut c, "DECR c"), int(-1));
    assert_eq!(cmd(&mut c, "INCRBY c 10"), int(9));
    assert_eq!(cmd(&mut c, "DECRBY c -100"), int(109));
    assert_eq!(cmd(&mut c, "GET c"), bulk("109"));

    cmd(&mut c, "SET c 9223372036854775806");
    assert_eq!(cmd(&mut c, "INCR c"), int(i64::MAX));
    assert_eq!(cmd(&mut c, "INCR c"), OVERFLOW);
    assert_eq!(cmd(&mut c, "INCRBY c 0"), int(i64::MAX));
    assert_eq!(cmd(&mut c, "INCRBY c -9223372036854775808"), int(-1));
    cmd(&mut c, "SET c -9223372036854775807");
    assert_eq!(cmd(&mut c, "DECR c"), int(i64::MIN));
    assert_eq!(cmd(&mut c, "DECR c"), OVERFLOW);
    assert_eq!(cmd(&mut c, "DECRBY c 1"), OVERFLOW);
    assert_eq!(cmd(&mut c, "INCRBY c -1"), OVERFLOW);
    assert_eq!(cmd(&mut c, "INCRBY c 9223372036854775807"), int(-1));
    assert_eq!(cmd(&mut c, "GET c"), bulk("-1"));
    assert_eq!(
        cmd(&mut c, "DECRBY c -9223372036854775808"),
        err("ERR decrement would overflow")
    );
    assert_eq!(cmd(&mut c, "DECRBY c 9223372036854775807"), int(i64::MIN));

    // Arguments and stored values must be canonical 64-bit integers.
    for bad in [
        "012",
        "+1",
        "1.0",
        "-0",
        "9223372036854775808",
        "-9223372036854775809",
        "1e3",
        "0x10",
        "abc",
    ] {
        assert_eq!(
            cmd(&mut c, &format!("INCRBY c {bad}")),
            NOT_INTEGER,
            "INCRBY c {bad}"
        );
    }
    for bad in [
        &b"012"[..],
        b"+1",
        b" 1",
        b"1 ",
        b"-0",
        b"1.5",
        b"",
        b"9223372036854775808",
        b"1\0",
    ] {
        assert_eq!(call(&mut c, &[b"SET", b"c", bad]), OK);
        for op in ["INCR c", "DECR c", "INCRBY c 1", "DECRBY c 1"] {
            assert_eq!(
                cmd(&mut c, op),
                NOT_INTEGER,
                "{op} on {:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            c.call(&[b"GET", b"c"]),
            raw_bulk(bad),
            "failed INCR changed the value"
        );
    }
    // The order of checks: the increment argument is parsed before the key is read.
    cmd(&mut c, "SET c abc");
    assert_eq!(cmd(&mut c, "INCRBY c x"), NOT_INTEGER);
    assert_eq!(cmd(&mut c, "INCR"), arity("incr"));
    assert_eq!(cmd(&mut c, "INCRBY c"), arity("incrby"));
    assert_eq!(cmd(&mut c, "DECRBY c"), arity("decrby"));
    assert_eq!(cmd(&mut c, "DECR a b"), arity("decr"));
}

#[test]
fn incrbyfloat_formats_like_redis_long_double() {
    let server = server();
    let mut c = server.raw();
    // (stored value, increment, reply): replies taken from Redis 7.0.15 on x86-64.
    let cases = [
        ("10.50", "0.1", "10.6"),
        ("10.6", "5.0e3", "5010.60000000000000009"),
        ("0", "0.1", "0.1"),
        ("0.1", "0.2", "0.3"),
        ("1", "-1", "0"),
        ("5", "-5.5", "-0.5"),
        ("0", "1.5e-20", "0"),
        ("-0.00000000000000000001", "0", "0"),
        ("3", "0x10", "19"),
        ("0", "0x1p-2", "0.25"),
        ("0", "0x1p-18", "0.00000381469726562"),
        ("17", ".5", "17.5"),
        ("17.5", "5.", "22.5"),
        ("1", "+1", "2"),
        ("00012", "1E2", "112"),
        ("1.0e1", "0", "10"),
        ("9223372036854775807", "1", "9223372036854775808"),
        ("-9223372036854775808", "-1.5", "-9223372036854775810"),
        ("3.0e-4950", "1", "1"),
        (
            "0",
            "1e308",
            concat!(
                "9999999999999999999668587965584564566056009984741556720779704799492173486883806187210012692188853932",
                "0446747225054013223152134749593960583597420814430196418767959100019603190778663109604507106667939153",
                "3957889389145605435630612683649016186302170865892534448816237913008557573181424245104527282550463439",
                "28578048",
            ),
        ),
    ];
    for (start, increment, expected) in cases {
        assert_eq!(call(&mut c, &[b"SET", b"f", start.as_bytes()]), OK);
        assert_eq!(
            cmd(&mut c, &format!("INCRBYFLOAT f {increment}")),
            bulk(expected),
            "{start} + {increment}"
        );
        assert_eq!(
            cmd(&mut c, "GET f"),
            bulk(expected),
            "stored text of {start} + {increment}"
        );
    }
    // The largest finite long double prints as its exact 4933-digit integer.
    cmd(&mut c, "SET max 1.18973149535723176502e4932");
    let reply = cmd(&mut c, "INCRBYFLOAT max 0");
    assert!(
        reply.starts_with("$4933\r\n118973149535723176502126385303097020516906332229462420044032"),
        "{reply:.80}"
    );
    assert_eq!(
        cmd(&mut c, "INCRBYFLOAT fresh 1.5"),
        bulk("1.5"),
        "a missing key counts as 0"
    );
    assert_eq!(cmd(&mut c, "INCRBYFLOAT fresh 1.5"), bulk("3"));
    assert_eq!(
        cmd(&mut c, "INCR fresh"),
        int(4),
        "an integral result is a valid integer"
    );
}

#[test]
fn incrbyfloat_errors() {
    let server = server();
    let mut c = server.raw();
    cmd(&mut c, "SET f 1");
    let nan_or_inf = err("ERR increment would produce NaN or Infinity");
    for increment in ["inf", "-INF", "Infinity", "1.2e4932"] {
        let expected = if increment == "1.2e4932" {
            NOT_FLOAT.to_owned()
        } else {
            nan_or_inf.clone()
        };
        assert_eq!(
            cmd(&mut c, &format!("INCRBYFLOAT f {increment}")),
            expected,
            "{increment}"
        );
    }
    for bad in [
        &b"nan"[..],
        b"-nan",
        b" 1",
        b"1 ",
        b"",
        b"-",
        b"e5",
        b"1e",
        b"0x",
        b"0x1p",
        b"1e5000",
        b"1e-5000",
        b"1_0",
        b"1,5",
        b"abc",
        b"1\0",
        b"\0",
    ] {
        assert_eq!(
            call(&mut c, &[b"INCRBYFLOAT", b"f", bad]),
            NOT_FLOAT,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(
        cmd(&mut c, "GET f"),
        bulk("1"),
        "failed INCRBYFLOAT changed nothing"
    );
    cmd(&mut c, "SET big 1.18973149535723176502e4932");
    assert_eq!(
        cmd(&mut c, "INCRBYFLOAT big 1.18973149535723176502e4932"),
        nan_or_inf
    );
    for stored in ["abc", "inf", " 1", "1e5000", "nan"] {
        assert_eq!(call(&mut c, &[b"SET", b"s", stored.as_bytes()]), OK);
        let expected = if stored == "inf" {
            nan_or_inf.clone()
        } else {
            NOT_FLOAT.to_owned()
        };
        assert_eq!(cmd(&mut c, "INCRBYFLOAT s 1"), expected, "stored {stored}");
    }
    assert_eq!(cmd(&mut c, "INCRBYFLOAT f"), arity("incrbyfloat"));
}

#[test]
fn reads_count_keyspace_hits_and_misses() {
    let server = server();
    let mut c = server.raw();
    cmd(&mut c, "MSET a 1 b 2");
    let counts = |c: &mut RawConn| {
        (
            info_stat(c, "keyspace_hits"),
            info_stat(c, "keyspace_misses"),
        )
    };
    let (hits, misses) = counts(&mut c);
    // (command, hits, misses) it adds.
    let steps = [
        ("GET a", 1, 0),
        ("GET nokey", 0, 1),
        ("MGET a b nokey", 2, 1),
        ("STRLEN a", 1, 0),
        ("STRLEN nokey", 0, 1),
        ("GETRANGE a 0 -1", 1, 0),
        ("SUBSTR nokey 0 1", 0, 1),
        ("SET a 5 GET", 1, 0),
        ("SET new 5 GET", 0, 1),
        ("GETSET a 6", 1, 0),
        ("GETEX a", 1, 0),
        ("GETEX nokey EX 10", 0, 1),
        ("GETDEL new", 1, 0),
        ("GETDEL new", 0, 1),
        // Pure writes do not count.
        ("SET a 7", 0, 0),
        ("SETNX z 1", 0, 0),
        ("INCR a", 0, 0),
        ("INCRBYFLOAT a 1", 0, 0),
        ("APPEND a 1", 0, 0),
        ("SETRANGE a 0 1", 0, 0),
        ("MSET a 1", 0, 0),
        ("MSETNX q 1", 0, 0),
    ];
    let (mut want_hits, mut want_misses) = (hits, misses);
    for (line, add_hits, add_misses) in steps {
        cmd(&mut c, line);
        want_hits += add_hits;
        want_misses += add_misses;
        assert_eq!(counts(&mut c), (want_hits, want_misses), "after {line}");
    }
}

#[test]
fn resp3_nulls_and_bulk_replies() {
    let server = server();
    let mut c = server.raw();
    assert!(cmd(&mut c, "HELLO 3").starts_with("%"));
    assert_eq!(cmd(&mut c, "GET nokey"), "_\r\n");
    assert_eq!(cmd(&mut c, "SET k v"), OK);
    assert_eq!(cmd(&mut c, "MGET k nokey"), "*2\r\n$1\r\nv\r\n_\r\n");
    assert_eq!(cmd(&mut c, "SET k v NX"), "_\r\n");
    assert_eq!(cmd(&mut c, "SET k w GET"), bulk("v"));
    assert_eq!(cmd(&mut c, "GETDEL nokey"), "_\r\n");
    assert_eq!(
        cmd(&mut c, "INCRBYFLOAT f 2.5"),
        bulk("2.5"),
        "INCRBYFLOAT replies a bulk string in RESP3 too"
    );
    assert_eq!(cmd(&mut c, "INCR n"), int(1));
}

#[test]
fn command_info_matches_redis() {
    let server = server();
    let mut c = server.raw();
    // The first seven fields of Redis 7.0's COMMAND INFO for each string command:
    // name, arity, flags, first key, last key, key step, ACL categories.
    let rows = "
        get 2 readonly,fast 1 1 1 read,string,fast
        set -3 write,denyoom 1 1 1 write,string,slow
        setnx 3 write,denyoom,fast 1 1 1 write,string,fast
        setex 4 write,denyoom 1 1 1 write,string,slow
        psetex 4 write,denyoom 1 1 1 write,string,slow
        mget -2 readonly,fast 1 -1 1 read,string,fast
        mset -3 write,denyoom 1 -1 2 write,string,slow
        msetnx -3 write,denyoom 1 -1 2 write,string,slow
        getset 3 write,denyoom,fast 1 1 1 write,string,fast
        getdel 2 write,fast 1 1 1 write,string,fast
        getex -2 write,fast 1 1 1 write,string,fast
        append 3 write,denyoom,fast 1 1 1 write,string,fast
        strlen 2 readonly,fast 1 1 1 read,string,fast
        getrange 4 readonly 1 1 1 read,string,slow
        substr 4 readonly 1 1 1 read,string,slow
        setrange 4 write,denyoom 1 1 1 write,string,slow
        incr 2 write,denyoom,fast 1 1 1 write,string,fast
        decr 2 write,denyoom,fast 1 1 1 write,string,fast
        incrby 3 write,denyoom,fast 1 1 1 write,string,fast
        decrby 3 write,denyoom,fast 1 1 1 write,string,fast
        incrbyfloat 3 write,denyoom,fast 1 1 1 write,string,fast";
    for row in rows.lines().map(str::trim).filter(|row| !row.is_empty()) {
        let fields: Vec<&str> = row.split(' ').collect();
        let [name, arity, flags, first, last, step, categories] = fields[..] else {
            panic!("bad row {row}");
        };
        let mut expected = format!("*1\r\n*10\r\n{}:{arity}\r\n", bulk(name));
        expected.push_str(&format!("*{}\r\n", flags.split(',').count()));
        for flag in flags.split(',') {
            expected.push_str(&format!("+{flag}\r\n"));
        }
        expected.push_str(&format!(":{first}\r\n:{last}\r\n:{step}\r\n"));
        expected.push_str(&format!("*{}\r\n", categories.split(',').count()));
        for category in categories.split(',') {
            expected.push_str(&format!("+@{category}\r\n"));
        }
        let reply = cmd(&mut c, &format!("COMMAND INFO {name}"));
        assert!(
            reply.starts_with(&expected),
            "COMMAND INFO {name}: {reply:?}"
        );
    }
}

/// The values of an MGET reply, with "nil" for missing keys.
fn mget_values(reply: &str) -> Vec<String> {
    let mut lines = reply.split("\r\n").skip(1);
    let mut values = Vec::new();
    while let Some(line) = lines.next() {
        match line {
            "$-1" => values.push("nil".to_owned()),
            "" => {}
            _ => values.push(lines.next().expect("bulk string body").to_owned()),
        }
    }
    values
}

#[test]
fn mset_is_atomic_to_concurrent_readers() {
    let server = server();
    let keys: Vec<String> = (0..16).map(|idx| format!("atomic:{idx}")).collect();
    let done = Arc::new(AtomicBool::new(false));
    let started = Arc::new(Barrier::new(2));
    let writer = {
        let mut c = server.raw();
        let keys = keys.clone();
        let (done, started) = (Arc::clone(&done), Arc::clone(&started));
        std::thread::spawn(move || {
            started.wait();
            for round in 0..1500 {
                let value = round.to_string();
                let mut args: Vec<&[u8]> = vec![b"MSET"];
                for key in &keys {
                    args.push(key.as_bytes());
                    args.push(value.as_bytes());
                }
                assert_eq!(c.call(&args), b"+OK\r\n");
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut c = server.raw();
    let mut args: Vec<&[u8]> = vec![b"MGET"];
    args.extend(keys.iter().map(String::as_bytes));
    let mut seen = HashSet::new();
    started.wait();
    for _ in 0..100_000 {
        if done.load(Ordering::SeqCst) {
            break;
        }
        let values = mget_values(&String::from_utf8(c.call(&args)).unwrap());
        assert_eq!(values.len(), keys.len());
        assert!(
            values.iter().all(|value| *value == values[0]),
            "torn MSET seen by MGET: {values:?}"
        );
        seen.insert(values[0].clone());
    }
    writer.join().unwrap();
    assert!(
        seen.len() > 2,
        "the reader hardly overlapped the writer: {seen:?}"
    );
    assert_eq!(
        mget_values(&String::from_utf8(c.call(&args)).unwrap()),
        vec!["1499".to_owned(); keys.len()]
    );
}

#[test]
fn concurrent_incr_loses_no_update() {
    let server = server();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let mut c = server.raw();
            std::thread::spawn(move || {
                for _ in 0..300 {
                    c.call(&[b"INCR", b"counter"]);
                    c.call(&[b"INCRBYFLOAT", b"float", b"0.5"]);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "GET counter"), bulk("1200"));
    assert_eq!(cmd(&mut c, "GET float"), bulk("600"));
}
