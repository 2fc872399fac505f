//! Set commands end to end: exact replies and error strings of SADD SREM SCARD SISMEMBER
//! SMISMEMBER SMEMBERS SPOP SRANDMEMBER SINTER SUNION SDIFF (and STORE forms) SINTERCARD SMOVE
//! SSCAN as Redis 7.0 gives them, RESP3 reply types, the intset → hashtable conversion,
//! random-member counts on big sets, SSCAN's guarantee on a changing set, SMOVE atomicity as
//! concurrent clients see it, and a SAVE / restart round trip.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use forkless_tests::TestServer;
use forkless_tests::resp::{NIL, WRONGTYPE, bulk, cmd, err, int};
use redis::Commands;

fn server() -> TestServer {
    TestServer::start(env!("CARGO_BIN_EXE_forkless-server"), &[])
}

/// An aggregate of bulk strings with the given type byte (`*` array, `~` set).
fn aggregate(kind: char, values: &[&str]) -> String {
    let mut out = format!("{kind}{}\r\n", values.len());
    for value in values {
        out.push_str(&bulk(value));
    }
    out
}

fn bulks(values: &[&str]) -> String {
    aggregate('*', values)
}

#[test]
fn add_remove_and_membership() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "SADD s 3 1 2"), int(3));
    assert_eq!(cmd(&mut c, "SADD s 2 4 4"), int(1));
    // An intset replies in ascending order, as in Redis.
    assert_eq!(cmd(&mut c, "SMEMBERS s"), bulks(&["1", "2", "3", "4"]));
    assert_eq!(cmd(&mut c, "SCARD s"), int(4));
    assert_eq!(cmd(&mut c, "SCARD nokey"), int(0));
    assert_eq!(cmd(&mut c, "SISMEMBER s 1"), int(1));
    assert_eq!(cmd(&mut c, "SISMEMBER s 01"), int(0));
    assert_eq!(cmd(&mut c, "SISMEMBER nokey 1"), int(0));
    assert_eq!(
        cmd(&mut c, "SMISMEMBER s 1 x 4"),
        format!("*3\r\n{}{}{}", int(1), int(0), int(1))
    );
    assert_eq!(
        cmd(&mut c, "SMISMEMBER nokey a"),
        format!("*1\r\n{}", int(0))
    );
    assert_eq!(cmd(&mut c, "SMEMBERS nokey"), "*0\r\n");
    assert_eq!(cmd(&mut c, "OBJECT ENCODING s"), bulk("intset"));
    assert_eq!(cmd(&mut c, "TYPE s"), "+set\r\n");
    assert_eq!(cmd(&mut c, "SREM s 1 1 x"), int(1));
    assert_eq!(cmd(&mut c, "SREM nokey x"), int(0));
    assert_eq!(cmd(&mut c, "SADD s abc"), int(1));
    assert_eq!(cmd(&mut c, "OBJECT ENCODING s"), bulk("hashtable"));
    assert_eq!(cmd(&mut c, "SREM s abc 2 3 4"), int(4));
    assert_eq!(
        cmd(&mut c, "EXISTS s"),
        int(0),
        "the last SREM removes the key"
    );
    assert_eq!(
        cmd(&mut c, "SADD s"),
        err("ERR wrong number of arguments for 'sadd' command")
    );
}

#[test]
fn set_algebra() {
    let server = server();
    let mut c = server.raw();
    cmd(&mut c, "SADD a 1 2 3 4 5");
    cmd(&mut c, "SADD b 4 5 6 7");
    cmd(&mut c, "SADD c 5 7 9");
    assert_eq!(cmd(&mut c, "SINTER a b"), bulks(&["4", "5"]));
    assert_eq!(cmd(&mut c, "SINTER a b c"), bulks(&["5"]));
    assert_eq!(cmd(&mut c, "SINTER a nokey"), "*0\r\n");
    assert_eq!(
        cmd(&mut c, "SUNION a b c nokey"),
        bulks(&["1", "2", "3", "4", "5", "6", "7", "9"])
    );
    assert_eq!(cmd(&mut c, "SDIFF a b c"), bulks(&["1", "2", "3"]));
    assert_eq!(cmd(&mut c, "SDIFF a a"), "*0\r\n");
    assert_eq!(cmd(&mut c, "SDIFF nokey a"), "*0\r\n");

    cmd(&mut c, "SET dst string");
    cmd(&mut c, "EXPIRE dst 100");
    assert_eq!(cmd(&mut c, "SINTERSTORE dst a b"), int(2));
    assert_eq!(cmd(&mut c, "SMEMBERS dst"), bulks(&["4", "5"]));
    assert_eq!(cmd(&mut c, "TTL dst"), int(-1), "STORE clears the TTL");
    assert_eq!(cmd(&mut c, "SUNIONSTORE dst a b"), int(7));
    assert_eq!(cmd(&mut c, "SDIFFSTORE dst a b"), int(3));
    assert_eq!(cmd(&mut c, "SMEMBERS dst"), bulks(&["1", "2", "3"]));
    assert_eq!(cmd(&mut c, "SINTERSTORE dst a nokey"), int(0));
    assert_eq!(
        cmd(&mut c, "EXISTS dst"),
        int(0),
        "an empty result deletes the destination"
    );
    // The destination may be one of the sources.
    assert_eq!(cmd(&mut c, "SDIFFSTORE a a b"), int(3));
    assert_eq!(cmd(&mut c, "SMEMBERS a"), bulks(&["1", "2", "3"]));

    assert_eq!(cmd(&mut c, "SINTERCARD 2 b c"), int(2));
    assert_eq!(cmd(&mut c, "SINTERCARD 2 b c LIMIT 1"), int(1));
    assert_eq!(cmd(&mut c, "SINTERCARD 2 b c LIMIT 0"), int(2));
    assert_eq!(cmd(&mut c, "SINTERCARD 2 b nokey"), int(0));
    assert_eq!(
        cmd(&mut c, "SINTERCARD 0 b"),
        err("ERR numkeys should be greater than 0")
    );
    assert_eq!(
        cmd(&mut c, "SINTERCARD x b"),
        err("ERR numkeys should be greater than 0")
    );
    assert_eq!(
        cmd(&mut c, "SINTERCARD 3 b c"),
        err("ERR Number of keys can't be greater than number of args")
    );
    assert_eq!(
        cmd(&mut c, "SINTERCARD 2 b c LIMIT -1"),
        err("ERR LIMIT can't be negative")
    );
    assert_eq!(
        cmd(&mut c, "SINTERCARD 2 b c LIMIT"),
        err("ERR syntax error")
    );

    // Mixed members: results as sets.
    cmd(&mut c, "SADD m x y 4");
    let union: HashSet<String> = server.client().sunion(&["m", "b"]).unwrap();
    assert_eq!(
        union,
        ["x", "y", "4", "5", "6", "7"].map(String::from).into()
    );
    assert_eq!(cmd(&mut c, "SINTER m b"), bulks(&["4"]));
}

#[test]
fn smove() {
    let server = server();
    let mut c = server.raw();
    cmd(&mut c, "SADD x 1 2 3");
    cmd(&mut c, "SADD y 3");
    assert_eq!(cmd(&mut c, "SMOVE x y 1"), int(1));
    assert_eq!(cmd(&mut c, "SMOVE x y 3"), int(1));
    assert_eq!(cmd(&mut c, "SMEMBERS x"), bulks(&["2"]));
    assert_eq!(cmd(&mut c, "SMEMBERS y"), bulks(&["1", "3"]));
    assert_eq!(cmd(&mut c, "SMOVE x y nothere"), int(0));
    assert_eq!(cmd(&mut c, "SMOVE nokey y 1"), int(0));
    assert_eq!(cmd(&mut c, "SMOVE x x 2"), int(1));
    assert_eq!(cmd(&mut c, "SMOVE x x 9"), int(0));
    assert_eq!(cmd(&mut c, "SMOVE x fresh 2"), int(1));
    assert_eq!(
        cmd(&mut c, "EXISTS x"),
        int(0),
        "the source's last member moved"
    );
    assert_eq!(cmd(&mut c, "SMEMBERS fresh"), bulks(&["2"]));
    cmd(&mut c, "SET str v");
    assert_eq!(cmd(&mut c, "SMOVE str y 1"), WRONGTYPE);
    assert_eq!(cmd(&mut c, "SMOVE y str 1"), WRONGTYPE);
    assert_eq!(
        cmd(&mut c, "SMOVE nokey str 1"),
        int(0),
        "a missing source wins"
    );
    assert_eq!(
        cmd(&mut c, "SMEMBERS y"),
        bulks(&["1", "3"]),
        "nothing moved on error"
    );
}

#[test]
fn every_command_refuses_another_type() {
    let server = server();
    let mut c = server.raw();
    cmd(&mut c, "SET str value");
    cmd(&mut c, "SADD a 1");
    for line in [
        "SADD str a",
        "SREM str a",
        "SCARD str",
        "SISMEMBER str a",
        "SMISMEMBER str a",
        "SMEMBERS str",
        "SPOP str",
        "SPOP str 2",
        "SRANDMEMBER str",
        "SRANDMEMBER str 2",
        "SINTER a str",
        "SINTER nokey str",
        "SUNION a str",
        "SDIFF nokey str",
        "SINTERSTORE d a str",
        "SUNIONSTORE d str",
        "SDIFFSTORE d a str",
        "SINTERCARD 2 a str",
        "SSCAN str 0",
    ] {
        assert_eq!(cmd(&mut c, line), WRONGTYPE, "{line}");
    }
    assert_eq!(cmd(&mut c, "GET str"), bulk("value"));
    assert_eq!(cmd(&mut c, "EXISTS d"), int(0));
}

#[test]
fn resp3_reply_types() {
    let server = server();
    let mut c = server.raw();
    assert!(cmd(&mut c, "HELLO 3").starts_with('%'));
    cmd(&mut c, "SADD a 1 2 3");
    cmd(&mut c, "SADD b 2 3 4");
    assert_eq!(cmd(&mut c, "SMEMBERS a"), aggregate('~', &["1", "2", "3"]));
    assert_eq!(cmd(&mut c, "SMEMBERS nokey"), "~0\r\n");
    assert_eq!(cmd(&mut c, "SINTER a b"), aggregate('~', &["2", "3"]));
    assert_eq!(cmd(&mut c, "SINTER a nokey"), "~0\r\n");
    assert_eq!(
        cmd(&mut c, "SUNION a b"),
        aggregate('~', &["1", "2", "3", "4"])
    );
    assert_eq!(cmd(&mut c, "SDIFF a b"), aggregate('~', &["1"]));
    assert_eq!(
        cmd(&mut c, "SRANDMEMBER a 5"),
        bulks(&["1", "2", "3"]),
        "an array, not a set"
    );
    assert_eq!(cmd(&mut c, "SRANDMEMBER nokey 5"), "*0\r\n");
    assert_eq!(cmd(&mut c, "SRANDMEMBER nokey"), "_\r\n");
    assert_eq!(cmd(&mut c, "SPOP nokey"), "_\r\n");
    assert_eq!(cmd(&mut c, "SPOP nokey 2"), "~0\r\n");
    assert_eq!(cmd(&mut c, "SPOP a 0"), "~0\r\n");
    assert!(cmd(&mut c, "SPOP a 2").starts_with("~2\r\n"));
    assert_eq!(cmd(&mut c, "SPOP b 10"), aggregate('~', &["2", "3", "4"]));
    assert_eq!(cmd(&mut c, "EXISTS b"), int(0));
    assert_eq!(
        cmd(&mut c, "SSCAN nokey 0"),
        format!("*2\r\n{}*0\r\n", bulk("0"))
    );
}

#[test]
fn random_members_of_a_big_set() {
    let server = server();
    let mut con = server.client();
    let members: Vec<String> = (0..1000).map(|n| format!("m{n}")).collect();
    let _: usize = con.sadd("s", &members).unwrap();
    let all: HashSet<&String> = members.iter().collect();
    for count in [1isize, 2, 100, 333, 334, 999, 1000, 5000] {
        let picked: Vec<String> = con.srandmember_multiple("s", count).unwrap();
        let distinct: HashSet<&String> = picked.iter().collect();
        assert_eq!(picked.len() as isize, count.min(1000), "count {count}");
        assert_eq!(distinct.len(), picked.len(), "count {count}: repeats");
        assert!(picked.iter().all(|m| all.contains(m)));
    }
    let repeated: Vec<String> = redis::cmd("SRANDMEMBER")
        .arg("s")
        .arg(-3000)
        .query(&mut con)
        .unwrap();
    assert_eq!(repeated.len(), 3000);
    let seen: HashSet<&String> = repeated.iter().collect();
    assert!(
        seen.len() > 900,
        "uniform picks cover the set: {}",
        seen.len()
    );

    let mut popped: HashSet<String> = HashSet::new();
    for _ in 0..100 {
        let member: String = con.spop("s").unwrap();
        assert!(popped.insert(member));
    }
    let batch: Vec<String> = redis::cmd("SPOP")
        .arg("s")
        .arg(850)
        .query(&mut con)
        .unwrap();
    assert_eq!(batch.len(), 850);
    popped.extend(batch);
    assert_eq!(popped.len(), 950);
    let rest: Vec<String> = redis::cmd("SPOP")
        .arg("s")
        .arg(100)
        .query(&mut con)
        .unwrap();
    assert_eq!(rest.len(), 50);
    popped.extend(rest);
    assert_eq!(popped.len(), 1000);
    assert!(!con.exists::<_, bool>("s").unwrap());
    let mut c = server.raw();
    assert_eq!(
        cmd(&mut c, "SPOP s -1"),
        err("ERR value is out of range, must be positive")
    );
    assert_eq!(
        cmd(&mut c, "SRANDMEMBER s -9223372036854775808"),
        err(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
        )
    );
    assert_eq!(cmd(&mut c, "SRANDMEMBER s 1 2"), err("ERR syntax error"));
}

#[test]
fn encoding_converts_once_past_redis_limits() {
    let server = server();
    let mut con = server.client();
    let mut c = server.raw();
    let ints: Vec<i64> = (0..512).collect();
    let _: usize = con.sadd("s", &ints).unwrap();
    assert_eq!(cmd(&mut c, "OBJECT ENCODING s"), bulk("intset"));
    cmd(&mut c, "SADD s 512");
    assert_eq!(cmd(&mut c, "OBJECT ENCODING s"), bulk("hashtable"));
    cmd(&mut c, "SREM s 512");
    assert_eq!(cmd(&mut c, "OBJECT ENCODING s"), bulk("hashtable"));
    for (member, encoding) in [
        ("9223372036854775807", "intset"),
        ("9223372036854775808", "hashtable"),
        ("-0", "hashtable"),
        ("007", "hashtable"),
    ] {
        cmd(&mut c, "DEL t");
        cmd(&mut c, &format!("SADD t {member}"));
        assert_eq!(cmd(&mut c, "OBJECT ENCODING t"), bulk(encoding), "{member}");
    }
}

/// SSCAN of a big set returns every member present for the whole scan, while other members
/// come and go between the steps.
#[test]
fn sscan_of_a_changing_big_set_misses_nothing() {
    let server = server();
    let mut con = server.client();
    let steady: Vec<String> = (0..3000).map(|n| format!("s{n}")).collect();
    let _: usize = con.sadd("s", &steady).unwrap();
    let mut seen = HashSet::new();
    let mut cursor = 0u64;
    let mut churn = 0u32;
    for step in 0.. {
        let (next, members): (String, Vec<String>) = redis::cmd("SSCAN")
            .arg("s")
            .arg(cursor)
            .arg("COUNT")
            .arg(25)
            .query(&mut con)
            .unwrap();
        seen.extend(members);
        let added: Vec<String> = (churn..churn + 20).map(|n| format!("t{n}")).collect();
        let _: usize = con.sadd("s", &added).unwrap();
        if churn >= 40 {
            let removed: Vec<String> = (churn - 40..churn - 10).map(|n| format!("t{n}")).collect();
            let _: usize = con.srem("s", &removed).unwrap();
        }
        churn += 20;
        cursor = next.parse().unwrap();
        if cursor == 0 {
            break;
        }
        assert!(step < 10_000, "the scan does not end");
    }
    for member in &steady {
        assert!(seen.contains(member), "{member} missed");
    }
}

/// SMOVE takes both keys under one guard: a reader that sees both sets at once (SUNION) always
/// finds every member in exactly one of them.
#[test]
fn smove_is_atomic_to_concurrent_readers() {
    let server = server();
    let mut con = server.client();
    let members: Vec<String> = (0..50).map(|n| format!("m{n}")).collect();
    let _: usize = con.sadd("left", &members).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let movers: Vec<_> = (0..2)
        .map(|idx| {
            let mut con = server.client();
            let stop = Arc::clone(&stop);
            let members = members.clone();
            std::thread::spawn(move || {
                let (from, to) = if idx == 0 {
                    ("left", "right")
                } else {
                    ("right", "left")
                };
                while !stop.load(Ordering::Relaxed) {
                    for member in &members {
                        let _: bool = con.smove(from, to, member).unwrap();
                    }
                }
            })
        })
        .collect();
    for _ in 0..300 {
        let union: Vec<String> = con.sunion(&["left", "right"]).unwrap();
        let card = redis::cmd("SINTERCARD")
            .arg(2)
            .arg("left")
            .arg("right")
            .query::<i64>(&mut con)
            .unwrap();
        assert_eq!(union.len(), 50);
        assert_eq!(card, 0);
    }
    stop.store(true, Ordering::Relaxed);
    for mover in movers {
        mover.join().unwrap();
    }
}

/// Sets written, saved with SAVE and loaded by a fresh server on the same directory come back
/// member for member, in both encodings, with binary members and the key's TTL.
#[test]
fn sets_survive_save_and_restart() {
    let bin = env!("CARGO_BIN_EXE_forkless-server");
    let dir = forkless_tests::unique_dir("sets-snapshot");
    let big: HashSet<String> = (0..3000).map(|n| format!("m{n}")).collect();
    let binary: Vec<u8> = (0..=255u8).collect();
    {
        let server = TestServer::start_in(bin, &dir, &["--save", ""], &[]);
        let mut con = server.client();
        let _: usize = con.sadd("big", &big).unwrap();
        let _: usize = con.sadd("ints", &[5, -3, 100]).unwrap();
        let _: usize = con.sadd("bin", &binary).unwrap();
        let _: usize = con.sadd("ttl", "x").unwrap();
        let _: bool = con.expire("ttl", 1000).unwrap();
        let reply: String = redis::cmd("SAVE").query(&mut con).unwrap();
        assert_eq!(reply, "OK");
    }
    let server = TestServer::start_in(bin, &dir, &["--save", ""], &[]);
    let mut con = server.client();
    let loaded: HashSet<String> = con.smembers("big").unwrap();
    assert_eq!(loaded, big);
    let ints: Vec<String> = con.smembers("ints").unwrap();
    assert_eq!(ints, ["-3", "5", "100"]);
    let encoding: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg("ints")
        .query(&mut con)
        .unwrap();
    assert_eq!(encoding, "intset");
    assert!(con.sismember::<_, _, bool>("bin", &binary).unwrap());
    let ttl: i64 = con.ttl("ttl").unwrap();
    assert!((990..=1000).contains(&ttl), "ttl {ttl}");
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "SRANDMEMBER nokey"), NIL);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
