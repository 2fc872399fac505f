//! Hash commands end to end: exact replies and error strings of HSET HSETNX HMSET HGET HMGET
//! HDEL HLEN HEXISTS HSTRLEN HKEYS HVALS HGETALL HINCRBY HINCRBYFLOAT HRANDFIELD HSCAN as Redis
//! 7.0 gives them, RESP3 reply types, the listpack → hashtable conversion, HSCAN's guarantee
//! on a big hash that changes during the scan, and a SAVE / restart round trip.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::{HashMap, HashSet};

use forkless_tests::resp::{NIL, WRONGTYPE, bulk, bulks, cmd, err, int};
use forkless_tests::{RawConn, TestServer};
use redis::Commands;

fn server() -> TestServer {
    TestServer::start(env!("CARGO_BIN_EXE_forkless-server"), &[])
}

#[test]
fn set_get_and_friends() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "HSET h f1 v1 f2 v2"), int(2));
    assert_eq!(cmd(&mut c, "HSET h f1 new f3 v3"), int(1));
    assert_eq!(
        cmd(&mut c, "HSET h f4"),
        err("ERR wrong number of arguments for 'hset' command")
    );
    assert_eq!(
        cmd(&mut c, "HMSET h f4"),
        err("ERR wrong number of arguments for 'hmset' command")
    );
    assert_eq!(cmd(&mut c, "HMSET h f4 v4"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "HGET h f1"), bulk("new"));
    assert_eq!(cmd(&mut c, "HGET h nofield"), NIL);
    assert_eq!(cmd(&mut c, "HGET nokey f1"), NIL);
    assert_eq!(
        cmd(&mut c, "HMGET h f1 nofield f4"),
        format!("*3\r\n{}{NIL}{}", bulk("new"), bulk("v4"))
    );
    assert_eq!(cmd(&mut c, "HMGET nokey a b"), format!("*2\r\n{NIL}{NIL}"));
    assert_eq!(cmd(&mut c, "HSETNX h f1 other"), int(0));
    assert_eq!(cmd(&mut c, "HSETNX h f5 v5"), int(1));
    assert_eq!(cmd(&mut c, "HLEN h"), int(5));
    assert_eq!(cmd(&mut c, "HLEN nokey"), int(0));
    assert_eq!(cmd(&mut c, "HEXISTS h f2"), int(1));
    assert_eq!(cmd(&mut c, "HEXISTS h nofield"), int(0));
    assert_eq!(cmd(&mut c, "HSTRLEN h f1"), int(3));
    assert_eq!(cmd(&mut c, "HSTRLEN h nofield"), int(0));
    // A small hash keeps insertion order; an update keeps the field's place.
    assert_eq!(
        cmd(&mut c, "HGETALL h"),
        bulks(&["f1", "new", "f2", "v2", "f3", "v3", "f4", "v4", "f5", "v5"])
    );
    assert_eq!(
        cmd(&mut c, "HKEYS h"),
        bulks(&["f1", "f2", "f3", "f4", "f5"])
    );
    assert_eq!(
        cmd(&mut c, "HVALS h"),
        bulks(&["new", "v2", "v3", "v4", "v5"])
    );
    assert_eq!(cmd(&mut c, "HGETALL nokey"), "*0\r\n");
    assert_eq!(cmd(&mut c, "TYPE h"), "+hash\r\n");
    assert_eq!(cmd(&mut c, "OBJECT ENCODING h"), bulk("listpack"));

    assert_eq!(cmd(&mut c, "HDEL h f1 f1 nofield"), int(1));
    assert_eq!(cmd(&mut c, "HDEL nokey f"), int(0));
    assert_eq!(cmd(&mut c, "HDEL h f2 f3 f4 f5"), int(4));
    assert_eq!(
        cmd(&mut c, "EXISTS h"),
        int(0),
        "the last HDEL removes the key"
    );
}

#[test]
fn a_write_keeps_the_ttl() {
    let server = server();
    let mut c = server.raw();
    cmd(&mut c, "HSET h a 1");
    cmd(&mut c, "EXPIRE h 100");
    cmd(&mut c, "HSET h b 2");
    cmd(&mut c, "HINCRBY h c 1");
    cmd(&mut c, "HDEL h a");
    assert_eq!(cmd(&mut c, "TTL h"), int(100));
}

#[test]
fn hincrby_and_hincrbyfloat() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "HINCRBY h n 5"), int(5));
    assert_eq!(cmd(&mut c, "HINCRBY h n -10"), int(-5));
    assert_eq!(
        cmd(&mut c, "HINCRBY h n x"),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(
        cmd(&mut c, "HINCRBY h max 9223372036854775807"),
        int(i64::MAX)
    );
    assert_eq!(
        cmd(&mut c, "HINCRBY h max 1"),
        err("ERR increment or decrement would overflow")
    );
    cmd(&mut c, "HSET h s hello z 012");
    assert_eq!(
        cmd(&mut c, "HINCRBY h s 1"),
        err("ERR hash value is not an integer")
    );
    assert_eq!(
        cmd(&mut c, "HINCRBY h z 1"),
        err("ERR hash value is not an integer")
    );

    assert_eq!(cmd(&mut c, "HINCRBYFLOAT h f 10.5"), bulk("10.5"));
    // long double arithmetic: 10.6, not 10.59999999999999964.
    assert_eq!(cmd(&mut c, "HINCRBYFLOAT h f 0.1"), bulk("10.6"));
    // ...and 10.6 + 1e3 in long double, printed with %.17Lf like Redis.
    assert_eq!(
        cmd(&mut c, "HINCRBYFLOAT h f 1e3"),
        bulk("1010.59999999999999998")
    );
    assert_eq!(cmd(&mut c, "HINCRBYFLOAT h n 1.5"), bulk("-3.5"));
    assert_eq!(
        cmd(&mut c, "HINCRBYFLOAT h f x"),
        err("ERR value is not a valid float")
    );
    assert_eq!(
        cmd(&mut c, "HINCRBYFLOAT h f inf"),
        err("ERR value is NaN or Infinity")
    );
    assert_eq!(
        cmd(&mut c, "HINCRBYFLOAT h s 1"),
        err("ERR hash value is not a float")
    );
    cmd(&mut c, "HSET h big 1.7976931348623157e308");
    // The sum is finite in long double: printed in full with %.17Lf, as Redis does.
    let sum = cmd(&mut c, "HINCRBYFLOAT h big 1.7976931348623157e308");
    assert!(sum.starts_with("$309\r\n359538626972463139"), "{sum}");
    assert_eq!(
        cmd(&mut c, "OBJECT ENCODING h"),
        bulk("hashtable"),
        "a value over 64 bytes"
    );
}

#[test]
fn every_command_refuses_another_type() {
    let server = server();
    let mut c = server.raw();
    cmd(&mut c, "SET str value");
    for line in [
        "HSET str f v",
        "HSETNX str f v",
        "HMSET str f v",
        "HGET str f",
        "HMGET str f",
        "HDEL str f",
        "HLEN str",
        "HEXISTS str f",
        "HSTRLEN str f",
        "HKEYS str",
        "HVALS str",
        "HGETALL str",
        "HINCRBY str f 1",
        "HINCRBYFLOAT str f 1",
        "HRANDFIELD str",
        "HRANDFIELD str 2 WITHVALUES",
        "HSCAN str 0",
    ] {
        assert_eq!(cmd(&mut c, line), WRONGTYPE, "{line}");
    }
    assert_eq!(cmd(&mut c, "GET str"), bulk("value"));
    // Argument errors found before the key lookup win over WRONGTYPE, as in Redis.
    assert_eq!(
        cmd(&mut c, "HINCRBY str f x"),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(cmd(&mut c, "HSCAN str x"), err("ERR invalid cursor"));
}

#[test]
fn resp3_reply_types() {
    let server = server();
    let mut c = server.raw();
    assert!(cmd(&mut c, "HELLO 3").starts_with('%'));
    cmd(&mut c, "HSET h a 1 b 2");
    assert_eq!(
        cmd(&mut c, "HGETALL h"),
        format!("%2\r\n{}{}{}{}", bulk("a"), bulk("1"), bulk("b"), bulk("2"))
    );
    assert_eq!(cmd(&mut c, "HGETALL nokey"), "%0\r\n");
    assert_eq!(cmd(&mut c, "HKEYS nokey"), "*0\r\n");
    assert_eq!(cmd(&mut c, "HGET h nofield"), "_\r\n");
    assert_eq!(cmd(&mut c, "HRANDFIELD nokey"), "_\r\n");
    assert_eq!(cmd(&mut c, "HRANDFIELD nokey 3"), "*0\r\n");
    assert_eq!(
        cmd(&mut c, "HRANDFIELD h 5 WITHVALUES"),
        format!(
            "*2\r\n*2\r\n{}{}*2\r\n{}{}",
            bulk("a"),
            bulk("1"),
            bulk("b"),
            bulk("2")
        )
    );
    let reply = cmd(&mut c, "HRANDFIELD h -3 WITHVALUES");
    assert!(reply.starts_with("*3\r\n*2\r\n"), "{reply}");
    assert_eq!(reply.matches("*2\r\n").count(), 3, "{reply}");
    assert_eq!(
        cmd(&mut c, "HSCAN h 0"),
        format!("*2\r\n{}{}", bulk("0"), bulks(&["a", "1", "b", "2"]))
    );
    assert_eq!(
        cmd(&mut c, "HMGET h a nofield"),
        format!("*2\r\n{}_\r\n", bulk("1"))
    );
}

#[test]
fn hrandfield_counts() {
    let server = server();
    let mut con = server.client();
    let fields: Vec<(String, String)> = (0..300)
        .map(|n| (format!("field{n}"), format!("value{n}")))
        .collect();
    let _: () = con.hset_multiple("h", &fields).unwrap();
    let all: HashMap<String, String> = fields.iter().cloned().collect();
    for count in [1usize, 2, 50, 99, 100, 101, 299, 300, 1000] {
        let picked: Vec<String> = redis::cmd("HRANDFIELD")
            .arg("h")
            .arg(count)
            .query(&mut con)
            .unwrap();
        let distinct: HashSet<&String> = picked.iter().collect();
        assert_eq!(picked.len(), count.min(300), "count {count}");
        assert_eq!(distinct.len(), picked.len(), "count {count}: repeats");
        assert!(picked.iter().all(|f| all.contains_key(f)));
    }
    let pairs: Vec<String> = redis::cmd("HRANDFIELD")
        .arg("h")
        .arg(-500)
        .arg("WITHVALUES")
        .query(&mut con)
        .unwrap();
    assert_eq!(pairs.len(), 1000);
    for pair in pairs.chunks(2) {
        assert_eq!(all.get(&pair[0]), Some(&pair[1]));
    }
    let mut raw = server.raw();
    assert_eq!(
        cmd(&mut raw, "HRANDFIELD h -9223372036854775808"),
        err(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
        )
    );
    assert_eq!(
        cmd(&mut raw, "HRANDFIELD h -9223372036854775807 WITHVALUES"),
        err("ERR value is out of range")
    );
    assert_eq!(
        cmd(&mut raw, "HRANDFIELD h 1 WITHVALUE"),
        err("ERR syntax error")
    );
    // Every field comes up.
    let mut seen = HashSet::new();
    for _ in 0..100 {
        let picked: Vec<String> = redis::cmd("HRANDFIELD")
            .arg("h")
            .arg(-100)
            .query(&mut con)
            .unwrap();
        seen.extend(picked);
    }
    assert_eq!(seen.len(), 300);
}

#[test]
fn encoding_converts_once_past_redis_limits() {
    let server = server();
    let mut c = server.raw();
    let mut con = server.client();
    let fields: Vec<(String, u32)> = (0..512).map(|n| (format!("f{n}"), n)).collect();
    let _: () = con.hset_multiple("h", &fields).unwrap();
    assert_eq!(cmd(&mut c, "OBJECT ENCODING h"), bulk("listpack"));
    cmd(&mut c, "HSET h one-more 1");
    assert_eq!(cmd(&mut c, "OBJECT ENCODING h"), bulk("hashtable"));
    cmd(&mut c, "HDEL h one-more");
    assert_eq!(cmd(&mut c, "OBJECT ENCODING h"), bulk("hashtable"));

    cmd(&mut c, &format!("HSET long f {}", "x".repeat(64)));
    assert_eq!(cmd(&mut c, "OBJECT ENCODING long"), bulk("listpack"));
    cmd(&mut c, &format!("HSET long g {}", "x".repeat(65)));
    assert_eq!(cmd(&mut c, "OBJECT ENCODING long"), bulk("hashtable"));
    cmd(&mut c, "HSET inc f 1");
    cmd(&mut c, "HINCRBYFLOAT inc f 0.00000000000000001");
    assert_eq!(cmd(&mut c, "OBJECT ENCODING inc"), bulk("listpack"));
}

fn hscan_step(
    con: &mut redis::Connection,
    key: &str,
    cursor: u64,
    count: usize,
) -> (u64, Vec<String>) {
    let (next, flat): (String, Vec<String>) = redis::cmd("HSCAN")
        .arg(key)
        .arg(cursor)
        .arg("COUNT")
        .arg(count)
        .query(con)
        .expect("HSCAN reply");
    (next.parse().expect("numeric cursor"), flat)
}

/// HSCAN of a big hash returns every field present for the whole scan at least once, while
/// other fields come and go between the steps, and even when most of the hash is deleted at
/// once (which compacts the table and restarts older cursors).
#[test]
fn hscan_of_a_changing_big_hash_misses_nothing() {
    let server = server();
    let mut con = server.client();
    let steady: Vec<(String, String)> = (0..2000)
        .map(|n| (format!("s{n}"), format!("v{n}")))
        .collect();
    let _: () = con.hset_multiple("h", &steady).unwrap();
    // Fields removed all at once after a few steps: the table compacts mid-scan.
    let bulk_fields: Vec<String> = (0..3000).map(|n| format!("x{n}")).collect();
    let _: () = con
        .hset_multiple("h", &bulk_fields.iter().map(|f| (f, 1)).collect::<Vec<_>>())
        .unwrap();
    let mut churn = 0u32;
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut cursor = 0;
    let mut steps = 0;
    loop {
        let (next, flat) = hscan_step(&mut con, "h", cursor, 37);
        for pair in flat.chunks(2) {
            seen.insert(pair[0].clone(), pair[1].clone());
        }
        steps += 1;
        if steps == 3 {
            let _: () = con.hdel("h", &bulk_fields).unwrap();
        }
        // Add 30 fields and remove 40 of the transient ones, which makes the table compact.
        for _ in 0..30 {
            let _: () = con.hset("h", format!("t{churn}"), churn).unwrap();
            churn += 1;
        }
        for n in churn.saturating_sub(60)..churn.saturating_sub(20) {
            let _: () = con.hdel("h", format!("t{n}")).unwrap();
        }
        if next == 0 {
            break;
        }
        assert!(steps < 10_000, "the scan does not end");
        cursor = next;
    }
    for (field, value) in &steady {
        assert_eq!(seen.get(field), Some(value), "{field} missed");
    }
    // A small hash comes back whole with cursor 0, whatever COUNT says.
    let _: () = con
        .hset_multiple("small", &[("a", "1"), ("b", "2")])
        .unwrap();
    assert_eq!(
        hscan_step(&mut con, "small", 0, 1),
        (0, vec!["a".into(), "1".into(), "b".into(), "2".into()])
    );
    let matched: (String, Vec<String>) = redis::cmd("HSCAN")
        .arg("h")
        .arg(0)
        .arg("MATCH")
        .arg("s1?")
        .arg("COUNT")
        .arg(100_000)
        .query(&mut con)
        .unwrap();
    assert_eq!(matched.0, "0");
    assert_eq!(matched.1.len(), 20);
}

#[test]
fn reads_count_keyspace_hits_and_misses() {
    let server = server();
    let mut c = server.raw();
    cmd(&mut c, "HSET h a 1");
    let stat = |c: &mut RawConn, name: &str| -> u64 {
        let info = cmd(c, "INFO stats");
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    let (hits, misses) = (
        stat(&mut c, "keyspace_hits"),
        stat(&mut c, "keyspace_misses"),
    );
    cmd(&mut c, "HGET h a");
    cmd(&mut c, "HGET nokey a");
    cmd(&mut c, "HLEN nokey");
    cmd(&mut c, "HSET h b 2");
    cmd(&mut c, "HINCRBY nokey2 f 1");
    assert_eq!(stat(&mut c, "keyspace_hits"), hits + 1);
    assert_eq!(stat(&mut c, "keyspace_misses"), misses + 2);
}

/// Hashes written, saved with SAVE and loaded by a fresh server on the same directory come back
/// field for field, in both encodings, with binary data and the key's TTL.
#[test]
fn hashes_survive_save_and_restart() {
    let bin = env!("CARGO_BIN_EXE_forkless-server");
    let dir = forkless_tests::unique_dir("hashes-snapshot");
    let big: Vec<(String, String)> = (0..3000)
        .map(|n| (format!("f{n}"), format!("v{n}")))
        .collect();
    let binary: Vec<u8> = (0..=255u8).collect();
    {
        let server = TestServer::start_in(bin, &dir, &["--save", ""], &[]);
        let mut con = server.client();
        let _: () = con.hset_multiple("big", &big).unwrap();
        let _: () = con
            .hset_multiple("small", &[("c", "3"), ("a", "1"), ("b", "")])
            .unwrap();
        let _: () = con.hset("bin", &binary, &binary).unwrap();
        let _: () = con.hset("ttl", "f", "v").unwrap();
        let _: bool = con.expire("ttl", 1000).unwrap();
        let reply: String = redis::cmd("SAVE").query(&mut con).unwrap();
        assert_eq!(reply, "OK");
    }
    let server = TestServer::start_in(bin, &dir, &["--save", ""], &[]);
    let mut con = server.client();
    let loaded: HashMap<String, String> = con.hgetall("big").unwrap();
    assert_eq!(loaded, big.into_iter().collect::<HashMap<_, _>>());
    let small: Vec<String> = redis::cmd("HGETALL").arg("small").query(&mut con).unwrap();
    assert_eq!(
        small,
        ["c", "3", "a", "1", "b", ""],
        "listpack order survives"
    );
    let value: Vec<u8> = con.hget("bin", &binary).unwrap();
    assert_eq!(value, binary);
    let ttl: i64 = con.ttl("ttl").unwrap();
    assert!((990..=1000).contains(&ttl), "ttl {ttl}");
    let encoding: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg("big")
        .query(&mut con)
        .unwrap();
    assert_eq!(encoding, "hashtable");
    let encoding: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg("small")
        .query(&mut con)
        .unwrap();
    assert_eq!(encoding, "listpack");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
