//! DUMP and RESTORE end to end: payloads move between redis-server 7.0 and forkless in both
//! directions for every type and encoding Redis writes (listpacks, intsets, quicklists, hash
//! tables, skiplists, LZF strings); RESTORE's options and errors answer as Redis's; and hostile
//! payloads with a valid footer get "Bad data format", never a crash.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use forkless_snapshot::format::Checksum;
use forkless_tests::resp::{call, cmd, err, int};
use forkless_tests::{TestDir, TestServer, redis_tool, start_real_redis_on};
use proptest::prelude::*;

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");
const OK: &str = "+OK\r\n";
const BAD_PAYLOAD: &str = "ERR DUMP payload version or checksum are wrong";
const BAD_DATA: &str = "ERR Bad data format";

/// Fills `conn` with one key per type and encoding.
fn populate(conn: &mut redis::Connection) {
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg("str:short").arg("bar");
    pipe.cmd("SET").arg("str:int").arg("-123456");
    pipe.cmd("SET").arg("str:bigint").arg("12345678901234");
    pipe.cmd("SET").arg("str:lzf").arg("abc".repeat(500));
    pipe.cmd("SET")
        .arg("str:binary")
        .arg(&[0u8, 255, 10, 13, 0][..]);
    pipe.cmd("RPUSH")
        .arg("list:small")
        .arg(&["a", "1", "-7", "x"]);
    let long: Vec<String> = (0..5000).map(|idx| format!("element-{idx}")).collect();
    pipe.cmd("RPUSH").arg("list:big").arg(&long);
    pipe.cmd("SADD")
        .arg("set:ints")
        .arg(&["1", "-5", "70000", "9000000000"]);
    pipe.cmd("SADD").arg("set:strings").arg(&["a", "b", "c"]);
    pipe.cmd("SADD").arg("set:big").arg(&long);
    pipe.cmd("HSET")
        .arg("hash:small")
        .arg(&["f1", "v1", "f2", "2", "f3", ""]);
    let pairs: Vec<String> = (0..300)
        .flat_map(|idx| [format!("field-{idx}"), "v".repeat(idx % 90)])
        .collect();
    pipe.cmd("HSET").arg("hash:big").arg(&pairs);
    pipe.cmd("ZADD")
        .arg("zset:small")
        .arg(&["1", "a", "2.5", "b", "-inf", "c", "1e300", "d"]);
    let scored: Vec<String> = (0..500)
        .flat_map(|idx| [format!("{}", f64::from(idx) / 7.0), format!("m{idx}")])
        .collect();
    pipe.cmd("ZADD").arg("zset:big").arg(&scored);
    let () = pipe.query(conn).unwrap();
}

const KEYS: [&str; 15] = [
    "str:short",
    "str:int",
    "str:bigint",
    "str:lzf",
    "str:binary",
    "list:small",
    "list:big",
    "set:ints",
    "set:strings",
    "set:big",
    "hash:small",
    "hash:big",
    "zset:small",
    "zset:big",
    "str:short",
];

/// A key's contents in a canonical form, for comparing two servers.
fn contents(conn: &mut redis::Connection, key: &str) -> (String, Vec<Vec<u8>>) {
    let kind: String = redis::cmd("TYPE").arg(key).query(conn).unwrap();
    let mut items: Vec<Vec<u8>> = match kind.as_str() {
        "string" => vec![redis::cmd("GET").arg(key).query(conn).unwrap()],
        "list" => redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query(conn)
            .unwrap(),
        "set" => redis::cmd("SMEMBERS").arg(key).query(conn).unwrap(),
        "hash" => redis::cmd("HGETALL").arg(key).query(conn).unwrap(),
        "zset" => redis::cmd("ZRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query(conn)
            .unwrap(),
        other => panic!("{key} has type {other}"),
    };
    if kind == "set" {
        items.sort();
    }
    if kind == "hash" {
        let mut pairs: Vec<Vec<Vec<u8>>> = items.chunks(2).map(<[_]>::to_vec).collect();
        pairs.sort();
        items = pairs.concat();
    }
    (kind, items)
}

fn dump(conn: &mut redis::Connection, key: &str) -> Vec<u8> {
    redis::cmd("DUMP").arg(key).query(conn).unwrap()
}

fn restore(conn: &mut redis::Connection, key: &str, payload: &[u8]) {
    let () = redis::cmd("RESTORE")
        .arg(key)
        .arg(0)
        .arg(payload)
        .arg("REPLACE")
        .query(conn)
        .unwrap();
}

#[test]
fn payloads_move_between_redis_and_forkless() {
    let Some(redis_server) = redis_tool("redis-server") else {
        return;
    };
    let dir = TestDir::new("dump-real-redis");
    let (_redis, mut real) = start_real_redis_on(&redis_server, &dir.0);
    let server = TestServer::start(BIN, &[]);
    let mut ours = server.client();
    populate(&mut real);
    for key in KEYS {
        let expected = contents(&mut real, key);
        // Redis → forkless.
        restore(&mut ours, key, &dump(&mut real, key));
        assert_eq!(
            contents(&mut ours, key),
            expected,
            "{key} restored from Redis"
        );
        // forkless → Redis, under another name.
        let copy = format!("copy:{key}");
        restore(&mut real, &copy, &dump(&mut ours, key));
        assert_eq!(
            contents(&mut real, &copy),
            expected,
            "{key} restored into Redis"
        );
    }
    // Strings serialize byte for byte as Redis serializes them.
    for key in [
        "str:short",
        "str:int",
        "str:bigint",
        "str:lzf",
        "str:binary",
    ] {
        assert_eq!(dump(&mut ours, key), dump(&mut real, key), "DUMP {key}");
    }
}

#[test]
fn restore_options_and_errors_follow_redis() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    assert_eq!(cmd(&mut conn, "SET foo bar"), OK);
    let payload = conn.call(&[b"DUMP", b"foo"]);
    // The bulk reply's payload: skip "$<len>\r\n" and the final "\r\n".
    let start = payload.iter().position(|byte| *byte == b'\n').unwrap() + 1;
    let payload = payload[start..payload.len() - 2].to_vec();
    let restore = |conn: &mut forkless_tests::RawConn, args: &[&[u8]]| {
        let mut full: Vec<&[u8]> = vec![b"RESTORE"];
        full.extend_from_slice(args);
        call(conn, &full)
    };
    let busy = "-BUSYKEY Target key name already exists.\r\n";
    assert_eq!(restore(&mut conn, &[b"foo", b"0", &payload]), busy);
    // BUSYKEY wins over a bad TTL and a bad payload, as in Redis.
    assert_eq!(restore(&mut conn, &[b"foo", b"-1", b"..."]), busy);
    assert_eq!(
        restore(&mut conn, &[b"new", b"-1", b"..."]),
        err("ERR Invalid TTL value, must be >= 0")
    );
    assert_eq!(
        restore(&mut conn, &[b"new", b"0", b"..."]),
        err(BAD_PAYLOAD)
    );
    assert_eq!(
        restore(&mut conn, &[b"new", b"0", &payload, b"BOGUS"]),
        err("ERR syntax error")
    );
    assert_eq!(
        restore(&mut conn, &[b"new", b"0", &payload, b"FREQ", b"300"]),
        err("ERR Invalid FREQ value, must be >= 0 and <= 255")
    );
    assert_eq!(
        restore(&mut conn, &[b"new", b"0", &payload, b"IDLETIME", b"-1"]),
        err("ERR Invalid IDLETIME value, must be >= 0")
    );
    assert_eq!(
        restore(&mut conn, &[b"new", b"5000", &payload, b"IDLETIME", b"10"]),
        OK
    );
    let pttl: i64 = cmd(&mut conn, "PTTL new")[1..].trim().parse().unwrap();
    assert!((4000..=5000).contains(&pttl), "PTTL {pttl}");
    // ABSTTL in the past with REPLACE: the old key goes, nothing is created.
    assert_eq!(
        restore(
            &mut conn,
            &[b"foo", b"1000", &payload, b"ABSTTL", b"REPLACE"]
        ),
        OK
    );
    assert_eq!(cmd(&mut conn, "EXISTS foo"), int(0));
    let far = b"99999999999999";
    assert_eq!(restore(&mut conn, &[b"foo", far, &payload, b"ABSTTL"]), OK);
    assert_eq!(cmd(&mut conn, "PEXPIRETIME foo"), int(99_999_999_999_999));
    assert_eq!(cmd(&mut conn, "DUMP nokey"), "$-1\r\n");
}

/// A payload ending in the RDB version and a matching CRC-64, so it gets past the checksum to
/// the value decoder.
fn with_footer(body: &[u8]) -> Vec<u8> {
    let mut payload = body.to_vec();
    payload.extend_from_slice(&10u16.to_le_bytes());
    let mut crc = Checksum::new();
    crc.update(&payload);
    payload.extend_from_slice(&crc.finish().to_le_bytes());
    payload
}

#[test]
fn hostile_payloads_are_bad_data() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    for body in [
        &b""[..],
        // A string of 2^64 - 9 bytes.
        b"\x00\x81\xff\xff\xff\xff\xff\xff\xff\xf7",
        // A list of 2^32 elements, none there.
        b"\x01\x80\xff\xff\xff\xff",
        // An empty set.
        b"\x02\x00",
        // A hash listpack whose header claims more bytes than it has.
        b"\x10\x0a\xff\xff\x00\x00\x02\x00\xff",
        // A stream (forkless has none) and an unknown type.
        b"\x0f\x00",
        b"\x63",
    ] {
        let payload = with_footer(body);
        assert_eq!(
            call(&mut conn, &[b"RESTORE", b"k", b"0", &payload]),
            err(BAD_DATA),
            "{body:?}"
        );
    }
    assert_eq!(cmd(&mut conn, "EXISTS k"), int(0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Random bytes behind a type byte, with a valid footer: RESTORE answers (OK or Bad data
    /// format) and the server keeps serving.
    #[test]
    fn random_payloads_never_crash_the_server(
        type_code in prop_oneof![0u8..=7, 9u8..=21],
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        thread_local! {
            static SERVER: TestServer = TestServer::start(BIN, &[]);
        }
        SERVER.with(|server| {
            let mut conn = server.raw();
            let mut raw = vec![type_code];
            raw.extend_from_slice(&body);
            let reply = call(&mut conn, &[b"RESTORE", b"k", b"0", &with_footer(&raw), b"REPLACE"]);
            prop_assert!(reply == OK || reply == err(BAD_DATA), "{reply}");
            prop_assert_eq!(cmd(&mut conn, "PING"), "+PONG\r\n");
            Ok(())
        })?;
    }
}
