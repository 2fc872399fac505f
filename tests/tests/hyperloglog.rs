//! HyperLogLog end to end, beyond the differential case file (tests/cases/hyperloglog.txt):
//! estimates and the stored bytes equal redis-server's for large sets, sparse and dense; HLL
//! values move both ways through DUMP/RESTORE; corrupt HLL strings (random bytes after a valid
//! header) get Redis's errors and never take the server down; a PFADD that changes no register
//! does not touch the key (WATCH survives it).
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use forkless_tests::resp::{call, cmd, int};
use forkless_tests::{TestDir, TestServer, redis_tool, start_real_redis_on};
use proptest::prelude::*;

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");
const INVALIDOBJ: &str = "-INVALIDOBJ Corrupted HLL object detected\r\n";
const NOT_HLL: &str = "-WRONGTYPE Key is not a valid HyperLogLog string value.\r\n";

fn elements(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|idx| format!("{prefix}:{idx}")).collect()
}

fn pfadd(conn: &mut redis::Connection, key: &str, elements: &[String]) {
    for chunk in elements.chunks(1000) {
        let _: i64 = redis::cmd("PFADD").arg(key).arg(chunk).query(conn).unwrap();
    }
}

#[test]
fn estimates_and_bytes_equal_redis_and_values_move_both_ways() {
    let Some(redis_server) = redis_tool("redis-server") else {
        return;
    };
    let dir = TestDir::new("hll-real-redis");
    let (_redis, mut real) = start_real_redis_on(&redis_server, &dir.0);
    let server = TestServer::start(BIN, &[]);
    let mut ours = server.client();
    let sizes = [("tiny", 3), ("small", 200), ("edge", 700), ("big", 30_000)];
    for (key, n) in sizes {
        for conn in [&mut real, &mut ours] {
            pfadd(conn, key, &elements(key, n));
        }
    }
    for conn in [&mut real, &mut ours] {
        pfadd(conn, "other", &elements("big", 50_000));
    }
    for (key, _) in sizes {
        let theirs: Vec<u8> = redis::cmd("GET").arg(key).query(&mut real).unwrap();
        let mine: Vec<u8> = redis::cmd("GET").arg(key).query(&mut ours).unwrap();
        assert_eq!(theirs, mine, "{key}: the stored HLL differs");
        let theirs: i64 = redis::cmd("PFCOUNT").arg(key).query(&mut real).unwrap();
        let mine: i64 = redis::cmd("PFCOUNT").arg(key).query(&mut ours).unwrap();
        assert_eq!(theirs, mine, "{key}: the estimate differs");
    }
    let union = |conn: &mut redis::Connection| -> i64 {
        redis::cmd("PFCOUNT")
            .arg(&["tiny", "small", "edge", "big", "other"])
            .query(conn)
            .unwrap()
    };
    assert_eq!(union(&mut real), union(&mut ours));
    for conn in [&mut real, &mut ours] {
        let () = redis::cmd("PFMERGE")
            .arg(&["merged", "small", "big", "other"])
            .query(conn)
            .unwrap();
    }
    let theirs: Vec<u8> = redis::cmd("GET").arg("merged").query(&mut real).unwrap();
    let mine: Vec<u8> = redis::cmd("GET").arg("merged").query(&mut ours).unwrap();
    assert_eq!(theirs, mine, "PFMERGE's result differs");

    // DUMP payloads both ways: the restored HLL counts the same on the other server.
    for (key, _) in sizes {
        let payload: Vec<u8> = redis::cmd("DUMP").arg(key).query(&mut real).unwrap();
        let () = redis::cmd("RESTORE")
            .arg(format!("{key}:from-redis"))
            .arg(0)
            .arg(&payload)
            .query(&mut ours)
            .unwrap();
        let payload: Vec<u8> = redis::cmd("DUMP").arg(key).query(&mut ours).unwrap();
        let () = redis::cmd("RESTORE")
            .arg(format!("{key}:from-forkless"))
            .arg(0)
            .arg(&payload)
            .query(&mut real)
            .unwrap();
        let count = |conn: &mut redis::Connection, key: String| -> i64 {
            redis::cmd("PFCOUNT").arg(key).query(conn).unwrap()
        };
        let expected = count(&mut real, key.to_owned());
        assert_eq!(count(&mut ours, format!("{key}:from-redis")), expected);
        assert_eq!(count(&mut real, format!("{key}:from-forkless")), expected);
    }
}

#[test]
fn unchanged_registers_leave_the_key_untouched() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    assert_eq!(cmd(&mut conn, "PFADD h a b c"), int(1));
    assert_eq!(cmd(&mut conn, "PFCOUNT h"), int(3));
    assert_eq!(cmd(&mut conn, "WATCH h"), "+OK\r\n");
    let mut other = server.raw();
    assert_eq!(cmd(&mut other, "PFADD h a b"), int(0));
    // The cached cardinality is still valid, so PFCOUNT changes nothing either.
    assert_eq!(cmd(&mut other, "PFCOUNT h"), int(3));
    assert_eq!(cmd(&mut conn, "MULTI"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "PING"), "+QUEUED\r\n");
    assert_eq!(cmd(&mut conn, "EXEC"), "*1\r\n+PONG\r\n");
    // A new register does touch it.
    assert_eq!(cmd(&mut conn, "WATCH h"), "+OK\r\n");
    assert_eq!(cmd(&mut other, "PFADD h d"), int(1));
    assert_eq!(cmd(&mut conn, "MULTI"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "PING"), "+QUEUED\r\n");
    assert_eq!(cmd(&mut conn, "EXEC"), "*-1\r\n");
}

#[test]
fn self_test_passes() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    assert_eq!(cmd(&mut conn, "PFSELFTEST"), "+OK\r\n");
}

/// Every reply a command on a corrupt HLL may give: a number, OK, or one of Redis's two errors.
fn acceptable(reply: &str) -> bool {
    reply.starts_with(':')
        || reply == "+OK\r\n"
        || reply == INVALIDOBJ
        || reply == NOT_HLL
        || reply.starts_with('*')
        || reply.starts_with('$')
        || reply.starts_with('+')
        || reply.starts_with("-ERR HLL encoding is not sparse")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random bytes after a valid sparse or dense header: every HLL command answers, with
    /// Redis's errors where it finds the value corrupt, and the server stays up.
    #[test]
    fn corrupt_hlls_get_errors_never_a_crash(
        body in proptest::collection::vec(any::<u8>(), 0..64),
        dense in any::<bool>(),
        fill in any::<u8>(),
    ) {
        let server = TestServer::start(BIN, &[]);
        let mut conn = server.raw();
        let mut value = b"HYLL".to_vec();
        value.push(u8::from(!dense));
        value.extend_from_slice(&[0; 10]);
        value.push(0x80);
        value.extend_from_slice(&body);
        if dense {
            value.resize(16 + 12288, fill);
        }
        prop_assert_eq!(call(&mut conn, &[b"SET", b"bad", &value]), "+OK\r\n");
        prop_assert_eq!(cmd(&mut conn, "PFADD good x y"), int(1));
        for line in [
            "PFCOUNT bad",
            "PFCOUNT bad good",
            "PFADD bad a b c d e f g h i j k l",
            "PFMERGE dest good bad",
            "PFMERGE bad good",
            "PFDEBUG DECODE bad",
            "PFDEBUG GETREG bad",
            "PFDEBUG TODENSE bad",
            "PFCOUNT bad",
        ] {
            let reply = cmd(&mut conn, line);
            prop_assert!(acceptable(&reply), "{}: {}", line, reply);
        }
        prop_assert_eq!(cmd(&mut conn, "PING"), "+PONG\r\n");
    }
}

/// Waits until a freshly started server has loaded its dump (it answers -LOADING before).
fn wait_loaded(conn: &mut redis::Connection) {
    assert!(forkless_tests::wait_until(
        std::time::Duration::from_secs(20),
        || redis::cmd("DBSIZE").query::<i64>(conn).is_ok()
    ));
}

#[test]
fn hlls_move_both_ways_in_rdb_files() {
    let Some(redis_server) = redis_tool("redis-server") else {
        return;
    };
    let keys = ["sparse", "dense", "empty"];
    let fill = |conn: &mut redis::Connection| {
        pfadd(conn, "sparse", &elements("s", 300));
        pfadd(conn, "dense", &elements("d", 20_000));
        let _: i64 = redis::cmd("PFADD").arg("empty").query(conn).unwrap();
        let _: i64 = redis::cmd("PFCOUNT").arg("dense").query(conn).unwrap();
        let () = redis::cmd("SAVE").query(conn).unwrap();
    };
    let snapshot = |conn: &mut redis::Connection| -> Vec<(Vec<u8>, i64)> {
        keys.iter()
            .map(|key| {
                let bytes: Vec<u8> = redis::cmd("GET").arg(key).query(conn).unwrap();
                let count: i64 = redis::cmd("PFCOUNT").arg(key).query(conn).unwrap();
                (bytes, count)
            })
            .collect()
    };

    // forkless writes, redis-server loads.
    let dir = TestDir::new("hll-rdb-to-redis");
    let server = TestServer::start_in(BIN, &dir.0, &["--save", ""], &[]);
    let mut ours = server.client();
    fill(&mut ours);
    let written = snapshot(&mut ours);
    drop(ours);
    drop(server);
    let (_redis, mut real) = start_real_redis_on(&redis_server, &dir.0);
    assert_eq!(snapshot(&mut real), written);

    // redis-server writes, forkless loads.
    let dir = TestDir::new("hll-rdb-from-redis");
    let (redis_guard, mut real) = start_real_redis_on(&redis_server, &dir.0);
    fill(&mut real);
    let written = snapshot(&mut real);
    drop(real);
    drop(redis_guard);
    let server = TestServer::start_in(BIN, &dir.0, &["--save", ""], &[]);
    let mut ours = server.client();
    wait_loaded(&mut ours);
    assert_eq!(snapshot(&mut ours), written);
}
