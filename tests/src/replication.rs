//! Helpers the replication tests share: waiting for a replica to catch up, writes of every
//! type, and comparing two servers' datasets key by key (type, value, expiry).
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;

use crate::{info_section, wait_until};

/// How long a sync, or the link's recovery, may take.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

pub fn info(conn: &mut redis::Connection, section: &str, field: &str) -> String {
    info_section(conn, section)
        .get(field)
        .cloned()
        .unwrap_or_default()
}

/// Waits until the replica's link is up and it has applied everything the primary sent.
pub fn wait_synced(primary: &mut redis::Connection, replica: &mut redis::Connection) {
    let mut last = (String::new(), String::new(), String::new());
    let synced = wait_until(SYNC_TIMEOUT, || {
        let ours = info_section(replica, "replication");
        let theirs = info(primary, "replication", "master_repl_offset");
        last = (
            ours.get("master_link_status").cloned().unwrap_or_default(),
            ours.get("slave_repl_offset").cloned().unwrap_or_default(),
            theirs.clone(),
        );
        last.0 == "up" && last.1 == last.2
    });
    assert!(
        synced,
        "replica not in sync (link, replica offset, primary offset): {last:?}"
    );
}

/// Every key of every database with its type, value and absolute expiry, in a form that
/// compares equal when the data is equal (unordered collections sorted).
pub fn dataset(conn: &mut redis::Connection) -> BTreeMap<(u8, Vec<u8>), (String, String, i64)> {
    let mut all = BTreeMap::new();
    for db in 0..16u8 {
        let () = redis::cmd("SELECT").arg(db).query(conn).unwrap();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query(conn)
                .unwrap();
            for key in keys {
                let kind: String = redis::cmd("TYPE").arg(&key).query(conn).unwrap();
                let value = match kind.as_str() {
                    "string" => format!(
                        "{:?}",
                        redis::cmd("GET").arg(&key).query::<Vec<u8>>(conn).unwrap()
                    ),
                    "list" => format!(
                        "{:?}",
                        redis::cmd("LRANGE")
                            .arg(&key)
                            .arg(0)
                            .arg(-1)
                            .query::<Vec<Vec<u8>>>(conn)
                            .unwrap()
                    ),
                    "hash" => {
                        let map: BTreeMap<Vec<u8>, Vec<u8>> =
                            redis::cmd("HGETALL").arg(&key).query(conn).unwrap();
                        format!("{map:?}")
                    }
                    "set" => {
                        let mut members: Vec<Vec<u8>> =
                            redis::cmd("SMEMBERS").arg(&key).query(conn).unwrap();
                        members.sort();
                        format!("{members:?}")
                    }
                    "zset" => format!(
                        "{:?}",
                        redis::cmd("ZRANGE")
                            .arg(&key)
                            .arg(0)
                            .arg(-1)
                            .arg("WITHSCORES")
                            .query::<Vec<Vec<u8>>>(conn)
                            .unwrap()
                    ),
                    "stream" => format!(
                        "{:?}",
                        redis::cmd("XRANGE")
                            .arg(&key)
                            .arg("-")
                            .arg("+")
                            .query::<redis::Value>(conn)
                            .unwrap()
                    ),
                    // Gone between SCAN and TYPE (it expired).
                    "none" => continue,
                    other => panic!("unexpected type {other}"),
                };
                let expire: i64 = redis::cmd("PEXPIRETIME").arg(&key).query(conn).unwrap();
                all.insert((db, key), (kind, value, expire));
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    let () = redis::cmd("SELECT").arg(0).query(conn).unwrap();
    all
}

/// Asserts the two datasets are equal, naming the first keys that differ.
pub fn assert_same_data(primary: &mut redis::Connection, replica: &mut redis::Connection) {
    let theirs = dataset(primary);
    let ours = dataset(replica);
    let differing: Vec<_> = theirs
        .iter()
        .filter(|(key, value)| ours.get(*key) != Some(*value))
        .map(|(key, value)| (key.clone(), value.clone(), ours.get(key).cloned()))
        .take(5)
        .collect();
    let extra: Vec<_> = ours
        .keys()
        .filter(|key| !theirs.contains_key(*key))
        .take(5)
        .collect();
    assert!(
        differing.is_empty() && extra.is_empty(),
        "datasets differ ({} keys on the primary, {} on the replica); \
         (key, primary's, replica's): {differing:?}; only on the replica: {extra:?}",
        theirs.len(),
        ours.len()
    );
    assert!(!theirs.is_empty());
}

/// Writes of every type, in pipelines of 50: strings (some with a TTL, some expiring within
/// milliseconds, so the primary's expiry DELs reach the replica), counters, lists, hashes,
/// sets, sorted sets, streams, relative expiries, transactions, a script, other databases.
pub fn write_round(conn: &mut redis::Connection, rng: &mut rand::rngs::StdRng) {
    let mut pipe = redis::pipe();
    for _ in 0..50 {
        let i = rng.random_range(0..200u32);
        let value = format!("v{}", rng.random::<u32>());
        match rng.random_range(0..20u32) {
            0 => pipe.cmd("SET").arg(format!("str:{i}")).arg(&value),
            1 => pipe
                .cmd("SET")
                .arg(format!("str:{i}"))
                .arg(&value)
                .arg("EX")
                .arg(rng.random_range(1000..100_000u32)),
            2 => pipe
                .cmd("SET")
                .arg(format!("short:{i}"))
                .arg(&value)
                .arg("PX")
                .arg(rng.random_range(1..150u32)),
            3 => pipe.cmd("INCRBY").arg(format!("ctr:{i}")).arg(i),
            4 => pipe.cmd("APPEND").arg(format!("str:{i}")).arg(&value),
            5 => pipe
                .cmd("RPUSH")
                .arg(format!("list:{}", i % 20))
                .arg(&value)
                .arg(i),
            6 => pipe.cmd("LPOP").arg(format!("list:{}", i % 20)),
            7 => pipe
                .cmd("HSET")
                .arg(format!("hash:{}", i % 20))
                .arg(format!("f{i}"))
                .arg(&value),
            8 => pipe
                .cmd("HINCRBY")
                .arg(format!("hash:{}", i % 20))
                .arg("n")
                .arg(1),
            9 => pipe.cmd("SADD").arg(format!("set:{}", i % 20)).arg(&value),
            10 => pipe.cmd("SPOP").arg(format!("set:{}", i % 20)),
            11 => pipe
                .cmd("ZADD")
                .arg(format!("zset:{}", i % 20))
                .arg(f64::from(rng.random_range(0..1000u32)) / 7.0)
                .arg(format!("m{i}")),
            12 => pipe
                .cmd("ZINCRBY")
                .arg(format!("zset:{}", i % 20))
                .arg(1.5)
                .arg(format!("m{i}")),
            13 => pipe
                .cmd("XADD")
                .arg(format!("stream:{}", i % 10))
                .arg("MAXLEN")
                .arg("~")
                .arg(100)
                .arg("*")
                .arg("f")
                .arg(&value),
            14 => pipe
                .cmd("EXPIRE")
                .arg(format!("hash:{}", i % 20))
                .arg(rng.random_range(1000..100_000u32)),
            15 => pipe.cmd("DEL").arg(format!("str:{i}")),
            16 => pipe
                .cmd("MULTI")
                .cmd("INCR")
                .arg(format!("ctr:{i}"))
                .cmd("RPUSH")
                .arg(format!("list:{}", i % 20))
                .arg("in-multi")
                .cmd("EXEC"),
            17 => pipe
                .cmd("EVAL")
                .arg("redis.call('set', KEYS[1], ARGV[1]) return redis.call('incr', KEYS[2])")
                .arg(2)
                .arg(format!("lua:{i}"))
                .arg(format!("ctr:{i}"))
                .arg(&value),
            18 => pipe
                .cmd("SELECT")
                .arg(1 + i % 3)
                .cmd("SET")
                .arg(format!("other:{i}"))
                .arg(&value)
                .cmd("SADD")
                .arg(format!("oset:{}", i % 5))
                .arg(&value)
                .cmd("SELECT")
                .arg(0),
            _ => pipe.cmd("ZPOPMIN").arg(format!("zset:{}", i % 20)),
        };
    }
    let _: redis::Value = pipe.query(conn).unwrap();
}

/// After the writes: waits until every short-lived key has expired on the primary and been
/// removed, so its DEL is in the stream (EXISTS removes a key it finds expired, as Redis's
/// lazy expiry does; SCAN only skips it, and active expiry could then remove it, and grow the
/// stream, at any later moment), then until the replica has applied all of it.
pub fn settle(primary: &mut redis::Connection, replica: &mut redis::Connection) {
    let names: Vec<String> = (0..200).map(|i| format!("short:{i}")).collect();
    assert!(wait_until(SYNC_TIMEOUT, || {
        (0..4).all(|db| {
            let () = redis::cmd("SELECT").arg(db).query(primary).unwrap();
            let live: u64 = redis::cmd("EXISTS").arg(&names).query(primary).unwrap();
            live == 0
        })
    }));
    let () = redis::cmd("SELECT").arg(0).query(primary).unwrap();
    wait_synced(primary, replica);
}
