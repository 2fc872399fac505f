//! Sorted-set commands end to end: exact RESP2 and RESP3 replies (ZSCORE a bulk string or a
//! double, WITHSCORES flat or as pairs, ZPOPMIN's two shapes, ZMPOP's null), Redis 7.0's error
//! strings and option conflicts, WRONGTYPE, removal of emptied keys, OBJECT ENCODING's one-way
//! listpack → skiplist conversion, keyspace hit counting, a large set's ranks and ranges against
//! a model, ZSCAN over a large set, and the atomicity of ZUNIONSTORE under concurrent writers.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use forkless_tests::TestServer;
use forkless_tests::resp::{NIL, WRONGTYPE, bulk, bulks, cmd, err, int};
use redis::Commands;

fn server() -> TestServer {
    TestServer::start(env!("CARGO_BIN_EXE_forkless-server"), &[])
}

const SYNTAX: &str = "-ERR syntax error\r\n";

#[test]
fn zadd_options_and_errors() {
    let server = server();
    let mut conn = server.raw();
    assert_eq!(cmd(&mut conn, "ZADD z 1 a 2 b 3 c"), int(3));
    assert_eq!(cmd(&mut conn, "ZADD z CH 10 a 2 b 4 d"), int(2));
    assert_eq!(cmd(&mut conn, "ZADD z NX 100 a 5 e"), int(1));
    assert_eq!(cmd(&mut conn, "ZADD z XX CH 0 a 6 nosuch"), int(1));
    assert_eq!(cmd(&mut conn, "ZADD z GT CH -1 a 50 b"), int(1));
    assert_eq!(cmd(&mut conn, "ZADD z LT CH 100 c 1 c"), int(1));
    assert_eq!(
        cmd(&mut conn, "ZADD z NX XX 1 a"),
        err("ERR XX and NX options at the same time are not compatible")
    );
    for conflict in ["GT LT", "NX GT", "NX LT"] {
        assert_eq!(
            cmd(&mut conn, &format!("ZADD z {conflict} 1 a")),
            err("ERR GT, LT, and/or NX options at the same time are not compatible")
        );
    }
    assert_eq!(
        cmd(&mut conn, "ZADD z INCR 1 a 2 b"),
        err("ERR INCR option supports a single increment-element pair")
    );
    assert_eq!(cmd(&mut conn, "ZADD z 1 a 2"), SYNTAX);
    for bad in ["x", "nan", "1e400", "", "1 "] {
        assert_eq!(
            String::from_utf8_lossy(&conn.call(&[b"ZADD", b"z", bad.as_bytes(), b"a"])),
            err("ERR value is not a valid float"),
            "{bad:?}"
        );
    }
    assert_eq!(cmd(&mut conn, "ZADD z INCR 2.5 a"), bulk("2.5"));
    assert_eq!(cmd(&mut conn, "ZADD z NX INCR 2.5 a"), NIL);
    assert_eq!(cmd(&mut conn, "ZADD nokey XX 1 a"), int(0));
    assert_eq!(cmd(&mut conn, "EXISTS nokey"), int(0));
    assert_eq!(cmd(&mut conn, "ZADD inf +inf a"), int(1));
    assert_eq!(
        cmd(&mut conn, "ZINCRBY inf -inf a"),
        err("ERR resulting score is not a number (NaN)")
    );
    assert_eq!(cmd(&mut conn, "ZSCORE inf a"), bulk("inf"));
    assert_eq!(
        cmd(&mut conn, "ZINCRBY z 0.1 new"),
        bulk("0.10000000000000001")
    );
    assert_eq!(cmd(&mut conn, "SET s x"), "+OK\r\n");
    for line in [
        "ZADD s 1 a",
        "ZINCRBY s 1 a",
        "ZSCORE s a",
        "ZRANGE s 0 -1",
        "ZREM s a",
    ] {
        assert_eq!(cmd(&mut conn, line), WRONGTYPE, "{line}");
    }
}

#[test]
fn reads_ranks_and_ranges() {
    let server = server();
    let mut conn = server.raw();
    cmd(&mut conn, "ZADD z 1 a 2 b 3 c 4 d 5 e");
    assert_eq!(cmd(&mut conn, "ZCARD z"), int(5));
    assert_eq!(cmd(&mut conn, "ZRANK z c"), int(2));
    assert_eq!(cmd(&mut conn, "ZREVRANK z c"), int(2));
    assert_eq!(cmd(&mut conn, "ZREVRANK z a"), int(4));
    assert_eq!(cmd(&mut conn, "ZRANK z nosuch"), NIL);
    assert_eq!(cmd(&mut conn, "ZCOUNT z (1 3"), int(2));
    assert_eq!(
        cmd(&mut conn, "ZCOUNT z x 3"),
        err("ERR min or max is not a float")
    );
    assert_eq!(cmd(&mut conn, "ZRANGE z 1 2"), bulks(&["b", "c"]));
    assert_eq!(
        cmd(&mut conn, "ZRANGE z 0 0 REV WITHSCORES"),
        bulks(&["e", "5"])
    );
    assert_eq!(
        cmd(&mut conn, "ZRANGE z +inf (1 BYSCORE REV LIMIT 1 2"),
        bulks(&["d", "c"])
    );
    assert_eq!(
        cmd(&mut conn, "ZRANGE z 0 -1 LIMIT 0 1"),
        err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
        )
    );
    assert_eq!(
        cmd(&mut conn, "ZRANGE z - + BYLEX WITHSCORES"),
        err("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
    );
    assert_eq!(
        cmd(&mut conn, "ZRANGEBYLEX z a +"),
        err("ERR min or max not valid string range item")
    );
    assert_eq!(
        cmd(&mut conn, "ZRANGEBYSCORE z 2 3 WITHSCORES"),
        bulks(&["b", "2", "c", "3"])
    );
    assert_eq!(cmd(&mut conn, "ZREVRANGEBYSCORE z 3 2"), bulks(&["c", "b"]));
    cmd(&mut conn, "ZADD lex 0 a 0 b 0 c 0 d");
    assert_eq!(cmd(&mut conn, "ZRANGEBYLEX lex (a [c"), bulks(&["b", "c"]));
    assert_eq!(
        cmd(&mut conn, "ZREVRANGEBYLEX lex + - LIMIT 1 2"),
        bulks(&["c", "b"])
    );
    assert_eq!(cmd(&mut conn, "ZLEXCOUNT lex - +"), int(4));
    assert_eq!(
        cmd(&mut conn, "ZMSCORE z a nosuch"),
        "*2\r\n$1\r\n1\r\n$-1\r\n"
    );
}

#[test]
fn removals_delete_emptied_keys() {
    let server = server();
    let mut conn = server.raw();
    cmd(&mut conn, "ZADD z 1 a 2 b 3 c 4 d 5 e 6 f");
    assert_eq!(cmd(&mut conn, "ZREMRANGEBYRANK z 0 1"), int(2));
    assert_eq!(cmd(&mut conn, "ZREMRANGEBYSCORE z (3 4"), int(1));
    assert_eq!(cmd(&mut conn, "ZRANGE z 0 -1"), bulks(&["c", "e", "f"]));
    assert_eq!(cmd(&mut conn, "ZREM z c nosuch"), int(1));
    assert_eq!(cmd(&mut conn, "ZPOPMAX z"), bulks(&["f", "6"]));
    assert_eq!(cmd(&mut conn, "ZPOPMIN z 5"), bulks(&["e", "5"]));
    assert_eq!(cmd(&mut conn, "EXISTS z"), int(0));
    cmd(&mut conn, "ZADD z 0 a 0 b");
    assert_eq!(cmd(&mut conn, "ZREMRANGEBYLEX z - +"), int(2));
    assert_eq!(cmd(&mut conn, "EXISTS z"), int(0));
    cmd(&mut conn, "ZADD z 1 a 2 b");
    assert_eq!(
        cmd(&mut conn, "ZMPOP 2 nokey z MAX COUNT 5"),
        "*2\r\n$1\r\nz\r\n*2\r\n*2\r\n$1\r\nb\r\n$1\r\n2\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n"
    );
    assert_eq!(cmd(&mut conn, "EXISTS z"), int(0));
    assert_eq!(cmd(&mut conn, "ZMPOP 1 z MIN"), "*-1\r\n");
    assert_eq!(cmd(&mut conn, "ZRANGESTORE dst nokey 0 -1"), int(0));
    assert_eq!(cmd(&mut conn, "EXISTS dst"), int(0));
}

#[test]
fn resp3_replies_use_doubles_and_pairs() {
    let server = server();
    let mut conn = server.raw();
    assert!(cmd(&mut conn, "HELLO 3").starts_with('%'));
    cmd(&mut conn, "ZADD z 1 a 2.5 b");
    assert_eq!(cmd(&mut conn, "ZSCORE z b"), ",2.5\r\n");
    assert_eq!(cmd(&mut conn, "ZSCORE z nosuch"), "_\r\n");
    assert_eq!(cmd(&mut conn, "ZINCRBY z 1 a"), ",2\r\n");
    assert_eq!(cmd(&mut conn, "ZMSCORE z a x"), "*2\r\n,2\r\n_\r\n");
    assert_eq!(
        cmd(&mut conn, "ZRANGE z 0 -1 WITHSCORES"),
        "*2\r\n*2\r\n$1\r\na\r\n,2\r\n*2\r\n$1\r\nb\r\n,2.5\r\n"
    );
    assert_eq!(
        cmd(&mut conn, "ZRANGE z 0 -1"),
        "*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    );
    assert_eq!(cmd(&mut conn, "ZPOPMIN z"), "*2\r\n$1\r\na\r\n,2\r\n");
    assert_eq!(
        cmd(&mut conn, "ZPOPMIN z 1"),
        "*1\r\n*2\r\n$1\r\nb\r\n,2.5\r\n"
    );
    assert_eq!(cmd(&mut conn, "ZMPOP 1 z MIN"), "_\r\n");
    assert_eq!(cmd(&mut conn, "ZRANDMEMBER z"), "_\r\n");
    cmd(&mut conn, "ZADD z 1 a");
    assert_eq!(
        cmd(&mut conn, "ZSCAN z 0"),
        "*2\r\n$1\r\n0\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n"
    );
    assert_eq!(
        cmd(&mut conn, "ZUNION 1 z WITHSCORES"),
        "*1\r\n*2\r\n$1\r\na\r\n,1\r\n"
    );
}

#[test]
fn encoding_converts_to_skiplist_for_good() {
    let server = server();
    let mut conn = server.raw();
    for n in 0..128 {
        cmd(&mut conn, &format!("ZADD z {n} m{n}"));
    }
    assert_eq!(cmd(&mut conn, "OBJECT ENCODING z"), bulk("listpack"));
    cmd(&mut conn, "ZADD z 1000 one-more");
    assert_eq!(cmd(&mut conn, "OBJECT ENCODING z"), bulk("skiplist"));
    assert_eq!(cmd(&mut conn, "ZREMRANGEBYRANK z 0 100"), int(101));
    assert_eq!(cmd(&mut conn, "OBJECT ENCODING z"), bulk("skiplist"));
    let long = "x".repeat(65);
    cmd(&mut conn, &format!("ZADD long 1 {long}"));
    assert_eq!(cmd(&mut conn, "OBJECT ENCODING long"), bulk("skiplist"));
    // A listpack keeps -0 as 0; a skiplist keeps the sign.
    cmd(&mut conn, "ZADD small -0 a");
    assert_eq!(cmd(&mut conn, "ZSCORE small a"), bulk("0"));
    cmd(&mut conn, "ZADD z -0 neg");
    assert_eq!(cmd(&mut conn, "ZSCORE z neg"), bulk("-0"));
    // ZUNIONSTORE builds a fresh set: small results are listpacks again.
    assert_eq!(cmd(&mut conn, "ZUNIONSTORE small2 1 long"), int(1));
    assert_eq!(cmd(&mut conn, "OBJECT ENCODING small2"), bulk("skiplist"));
    assert_eq!(cmd(&mut conn, "ZRANGESTORE few z 0 2"), int(3));
    assert_eq!(cmd(&mut conn, "OBJECT ENCODING few"), bulk("listpack"));
}

#[test]
fn reads_count_keyspace_hits_and_misses() {
    let server = server();
    let mut client = server.client();
    let _: usize = client.zadd("z", "a", 1).unwrap();
    let stats = |client: &mut redis::Connection| -> (u64, u64) {
        let info: String = redis::cmd("INFO").arg("stats").query(client).unwrap();
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|value| value.trim().parse().ok())
                .unwrap()
        };
        (field("keyspace_hits:"), field("keyspace_misses:"))
    };
    let before = stats(&mut client);
    let _: Option<f64> = client.zscore("z", "a").unwrap();
    let _: Option<f64> = client.zscore("nokey", "a").unwrap();
    let _: Vec<String> = client.zrange("z", 0, -1).unwrap();
    let _: usize = client.zadd("z", "b", 2).unwrap();
    let after = stats(&mut client);
    assert_eq!((after.0 - before.0, after.1 - before.1), (2, 1));
}

/// A set far past the listpack limit: ranks, score ranges and removals agree with a model.
#[test]
fn large_set_matches_a_model() {
    let server = server();
    let mut client = server.client();
    let mut model = BTreeMap::new();
    let mut pipe = redis::pipe();
    for n in 0..3000u32 {
        let score = f64::from((n * 7919) % 1000) / 4.0;
        let member = format!("m{n:05}");
        model.insert(member.clone(), score);
        pipe.zadd("big", member, score).ignore();
    }
    let () = pipe.query(&mut client).unwrap();
    let mut sorted: Vec<(String, f64)> = model.into_iter().collect();
    sorted.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    for rank in [0usize, 1, 999, 1500, 2999] {
        let rank_reply: Option<usize> = client.zrank("big", &sorted[rank].0).unwrap();
        assert_eq!(rank_reply, Some(rank));
        let range: Vec<String> = client
            .zrange("big", rank as isize, rank as isize + 2)
            .unwrap();
        let expected: Vec<String> = sorted[rank..(rank + 3).min(3000)]
            .iter()
            .map(|(m, _)| m.clone())
            .collect();
        assert_eq!(range, expected);
    }
    let count: usize = client.zcount("big", 10, "(20").unwrap();
    assert_eq!(
        count,
        sorted
            .iter()
            .filter(|(_, s)| (10.0..20.0).contains(s))
            .count()
    );
    let top: Vec<String> = client.zrevrange("big", 0, 4).unwrap();
    let expected: Vec<String> = sorted
        .iter()
        .rev()
        .take(5)
        .map(|(m, _)| m.clone())
        .collect();
    assert_eq!(top, expected);
    let removed: usize = client.zrembyscore("big", "-inf", "(100").unwrap();
    assert_eq!(removed, sorted.iter().filter(|(_, s)| *s < 100.0).count());
    let card: usize = client.zcard("big").unwrap();
    assert_eq!(card, 3000 - removed);

    // ZSCAN walks the whole skiplist-encoded set, each member at least once.
    let mut seen = HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, items): (u64, Vec<String>) = redis::cmd("ZSCAN")
            .arg("big")
            .arg(cursor)
            .arg("COUNT")
            .arg(100)
            .query(&mut client)
            .unwrap();
        for pair in items.chunks(2) {
            seen.insert(pair[0].clone());
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), card);
}

/// ZUNIONSTORE reads its source and replaces its destination under one guard while another
/// client keeps moving both members of the source together: every stored destination holds
/// both members at one score, never a mix of two states of the source.
#[test]
fn zunionstore_is_atomic_against_concurrent_writers() {
    let server = server();
    let mut setup = server.client();
    let _: usize = setup.zadd_multiple("a", &[(1, "x"), (1, "y")]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let mut conn = server.client();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let _: usize = conn.zadd_multiple("a", &[(n, "x"), (n, "y")]).unwrap();
            }
        })
    };
    let mut conn = server.client();
    for _ in 0..300 {
        let _: usize = redis::cmd("ZUNIONSTORE")
            .arg("d")
            .arg(1)
            .arg("a")
            .query(&mut conn)
            .unwrap();
        let scores: Vec<(String, f64)> = conn.zrange_withscores("d", 0, -1).unwrap();
        assert_eq!(scores.len(), 2);
        assert_eq!(scores[0].1, scores[1].1, "{scores:?}");
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

#[test]
fn arity_errors() {
    let server = server();
    let mut conn = server.raw();
    for (line, name) in [
        ("ZADD z 1", "zadd"),
        ("ZSCORE z", "zscore"),
        ("ZRANGE z 0", "zrange"),
        ("ZMPOP 1 z", "zmpop"),
    ] {
        assert_eq!(
            cmd(&mut conn, line),
            err(&format!(
                "ERR wrong number of arguments for '{name}' command"
            ))
        );
    }
}
