//! The life of snapshots, end to end against the real binary: one save at a time (BGSAVE,
//! BGSAVE SCHEDULE and SAVE while one runs get Redis's exact error), LASTSAVE and
//! `rdb_changes_since_last_save`, `save <secs> <changes>` points, the final save of SHUTDOWN
//! and SIGTERM with absolute expiry times surviving the restart, retained versions all released
//! after each of 100 BGSAVEs under writes with no memory growth, versions overwritten during a
//! save saved ahead of their shard with the dump still at the cut, big hashes, sets and sorted
//! sets written throughout a save dumped as they were at the cut, zstd-compressed dumps that
//! `zstd -d` turns into a file `redis-check-rdb` accepts, and real Redis loading our BGSAVE
//! output with the same keys, values and expiry times; `snapshot-nice` lowering only the save's
//! threads; clients served while the dump loads at startup (LOADING, INFO's loading_* fields),
//! and a SIGTERM during loading that never saves the partial dataset.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use forkless_snapshot::format;
use forkless_storage::Value;
use forkless_tests::{
    ChildGuard, TestDir, TestServer, free_port, info_section as info, noise, populate, redis_tool,
    start_real_redis_on, wait_until,
};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

const ALREADY: &str = "-ERR Background save already in progress\r\n";

/// Sends a command on a raw connection; returns the reply's bytes as text.
fn call(raw: &mut forkless_tests::RawConn, args: &[&[u8]]) -> String {
    String::from_utf8_lossy(&raw.call(args)).into_owned()
}

/// One field of INFO persistence; panics when the server does not print it.
fn persistence_field(conn: &mut redis::Connection, field: &str) -> String {
    info(conn, "persistence")
        .remove(field)
        .unwrap_or_else(|| panic!("INFO persistence has no {field}"))
}

fn numeric_field(conn: &mut redis::Connection, field: &str) -> u64 {
    persistence_field(conn, field)
        .parse()
        .expect("a numeric INFO field")
}

/// Waits (up to 30 s) until no save is running.
fn wait_save_done(conn: &mut redis::Connection) {
    assert!(
        wait_until(Duration::from_secs(30), || persistence_field(
            conn,
            "rdb_bgsave_in_progress"
        ) == "0"),
        "the background save did not finish"
    );
}

fn bgsave(conn: &mut redis::Connection) {
    let reply: String = redis::cmd("BGSAVE").query(conn).expect("BGSAVE");
    assert_eq!(reply, "Background saving started");
}

fn dbsize(conn: &mut redis::Connection) -> u64 {
    redis::cmd("DBSIZE").query(conn).expect("DBSIZE")
}

fn pexpiretime(conn: &mut redis::Connection, key: &[u8]) -> i64 {
    redis::cmd("PEXPIRETIME")
        .arg(key)
        .query(conn)
        .expect("PEXPIRETIME")
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn unix_ms() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis();
    u64::try_from(ms).expect("ms fit u64")
}

/// The dump's (db, key) → (value, expiry).
type Dump = HashMap<(u32, Vec<u8>), (Vec<u8>, Option<u64>)>;

fn load_dump(path: &Path) -> Dump {
    let mut keys = HashMap::new();
    let file = File::open(path).expect("dump exists");
    format::load(BufReader::new(file), "dump.rdb", 0, |entry| {
        let Value::String(bytes) = entry.value else {
            panic!("only strings are written here");
        };
        keys.insert(
            (entry.db, entry.key.to_vec()),
            (bytes.to_vec(), entry.expire_at_ms),
        );
        Ok(())
    })
    .expect("dump loads");
    keys
}

// ---------------------------------------------------------------------------------------------
// One save at a time, LASTSAVE, changes since the last save.

#[test]
fn bgsave_schedule_and_save_are_refused_while_a_bgsave_runs() {
    // 1 MB/s over 1.5 MB: the save takes about 1.5 s.
    let server = TestServer::start(BIN, &["--save", "", "--snapshot-max-bytes-per-sec", "1mb"]);
    let mut conn = server.client();
    populate(&mut conn, "k", 1500, 1000);
    let mut raw = server.raw();
    assert_eq!(
        call(&mut raw, &[b"BGSAVE"]),
        "+Background saving started\r\n"
    );
    assert_eq!(call(&mut raw, &[b"BGSAVE"]), ALREADY);
    assert_eq!(call(&mut raw, &[b"BGSAVE", b"SCHEDULE"]), ALREADY);
    assert_eq!(call(&mut raw, &[b"SAVE"]), ALREADY);
    assert_eq!(persistence_field(&mut conn, "rdb_bgsave_in_progress"), "1");
    // Commands keep being served during the save.
    assert_eq!(call(&mut raw, &[b"SET", b"during", b"save"]), "+OK\r\n");
    wait_save_done(&mut conn);
    assert_eq!(persistence_field(&mut conn, "rdb_last_bgsave_status"), "ok");
    assert_eq!(numeric_field(&mut conn, "rdb_saves"), 1);
    assert_eq!(numeric_field(&mut conn, "snapshot_last_keys_saved"), 1500);
    // The key written during the save is after the cut.
    let dump = load_dump(&server.dir.join("dump.rdb"));
    assert_eq!(dump.len(), 1500);
    assert!(!dump.contains_key(&(0, b"during".to_vec())));
    // Done: the next BGSAVE is accepted.
    assert_eq!(
        call(&mut raw, &[b"BGSAVE"]),
        "+Background saving started\r\n"
    );
}

/// The dump holds exactly keys `k0..k{keys}`, each with the value `populate` gave it.
fn assert_dump_holds_the_populated_values(server: &TestServer, keys: usize) {
    let dump = load_dump(&server.dir.join("dump.rdb"));
    assert_eq!(dump.len(), keys);
    for i in 0..keys {
        let (value, _) = &dump[&(0, format!("k{i}").into_bytes())];
        assert_eq!(
            value,
            &noise(i as u64, 1000),
            "k{i} is not its pre-cut value"
        );
    }
}

#[test]
fn versions_overwritten_during_a_save_are_saved_early_and_the_dump_stays_at_the_cut() {
    // 20 MB at 10 MB/s: about 2 s. Two serializers, so the chunk channel (2 per serializer)
    // holds a fraction of the dataset and most shards are still unreached when the overwrites
    // land.
    let server = TestServer::start(
        BIN,
        &[
            "--save",
            "",
            "--snapshot-max-bytes-per-sec",
            "10mb",
            "--snapshot-threads",
            "2",
        ],
    );
    let mut conn = server.client();
    const KEYS: usize = 20_000;
    populate(&mut conn, "k", KEYS, 1000);
    bgsave(&mut conn);
    // Overwrite every key right away: each first overwrite retains the pre-cut value, and the
    // serializers sweep those from the shards they have not reached.
    for start in (0..KEYS).step_by(500) {
        let mut cmd = redis::cmd("MSET");
        for i in start..KEYS.min(start + 500) {
            cmd.arg(format!("k{i}")).arg("after the cut");
        }
        let () = cmd.query(&mut conn).expect("MSET");
    }
    wait_save_done(&mut conn);
    assert_eq!(persistence_field(&mut conn, "rdb_last_bgsave_status"), "ok");
    assert_eq!(
        numeric_field(&mut conn, "snapshot_last_keys_saved"),
        KEYS as u64
    );
    let early = numeric_field(&mut conn, "snapshot_last_keys_saved_early");
    assert!(
        early > 0 && early <= KEYS as u64,
        "{early} keys saved early: the sweep never took a retained version"
    );
    assert_eq!(numeric_field(&mut conn, "snapshot_retained_bytes"), 0);
    // Saved early or with its shard, every key is in the dump once, as it was at the cut.
    assert_dump_holds_the_populated_values(&server, KEYS);
}

/// `snapshot-max-retained-bytes`, set with CONFIG SET: overwrites during a slow save wait for
/// room instead of piling up old versions (without it this run retains most of its 20 MB), INFO
/// shows the budget and the writes that waited, and the dump is still the cut.
#[test]
fn a_retained_budget_set_at_runtime_bounds_what_a_save_under_overwrites_retains() {
    let server = TestServer::start(
        BIN,
        &[
            "--save",
            "",
            "--snapshot-max-bytes-per-sec",
            "10mb",
            "--snapshot-threads",
            "2",
        ],
    );
    let mut conn = server.client();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("snapshot-max-retained-bytes")
        .arg("256kb")
        .query(&mut conn)
        .expect("CONFIG SET");
    assert_eq!(
        numeric_field(&mut conn, "snapshot_retained_budget"),
        262_144
    );
    const KEYS: usize = 20_000;
    populate(&mut conn, "k", KEYS, 1000);
    bgsave(&mut conn);
    for start in (0..KEYS).step_by(100) {
        let mut cmd = redis::cmd("MSET");
        for i in start..KEYS.min(start + 100) {
            cmd.arg(format!("k{i}")).arg(noise(i as u64 + 1, 1000));
        }
        let () = cmd.query(&mut conn).expect("MSET");
    }
    wait_save_done(&mut conn);
    assert_eq!(persistence_field(&mut conn, "rdb_last_bgsave_status"), "ok");
    let hits = numeric_field(&mut conn, "snapshot_retained_budget_hits");
    assert!(hits > 0, "no write waited for room in the budget");
    // The budget plus one MSET's worth (100 versions of about 1.1 KB) over it, and one more
    // for each wait that gave up with the budget still full (a save starved on a loaded
    // machine); far below the 20 MB overwritten.
    let overruns = numeric_field(&mut conn, "snapshot_retained_budget_overruns");
    assert!(overruns <= hits, "{overruns} overruns of {hits} waits");
    let peak = numeric_field(&mut conn, "snapshot_peak_retained_bytes");
    let bound = (256 << 10) + (1 + overruns) * 100 * 1500;
    assert!(
        peak < bound,
        "retained peak {peak} B with a 256 KiB budget and {overruns} overruns"
    );
    assert_eq!(numeric_field(&mut conn, "snapshot_retained_bytes"), 0);
    assert_dump_holds_the_populated_values(&server, KEYS);
}

#[test]
fn the_sweeper_saves_overwritten_versions_while_the_traversal_has_not_started() {
    // The traversal threads are held for 3 s (a test hook); the sweeper is not. Every version
    // overwritten in that time must be saved, and freed, by the sweeper: memory must not wait
    // for the traversal, however slow it is (under SCHED_IDLE on a busy server it crawls).
    const KEYS: usize = 2_000;
    let server = TestServer::start_with_env(
        BIN,
        &["--save", ""],
        &[("FORKLESS_FAULT_INJECT", "traversal_hold_ms=3000")],
    );
    let mut conn = server.client();
    populate(&mut conn, "k", KEYS, 1000);
    bgsave(&mut conn);
    let () = redis::cmd("MSET")
        .arg(
            (0..KEYS)
                .flat_map(|i| [format!("k{i}"), "after the cut".to_string()])
                .collect::<Vec<_>>(),
        )
        .query(&mut conn)
        .expect("MSET");
    // Every pre-cut value is saved and freed while the traversal still waits.
    assert!(
        wait_until(Duration::from_secs(2), || {
            numeric_field(&mut conn, "current_save_keys_processed") == KEYS as u64
                && numeric_field(&mut conn, "snapshot_retained_bytes") == 0
        }),
        "the sweeper did not save the overwritten versions: {} keys processed, {} bytes retained",
        numeric_field(&mut conn, "current_save_keys_processed"),
        numeric_field(&mut conn, "snapshot_retained_bytes"),
    );
    assert_eq!(numeric_field(&mut conn, "rdb_bgsave_in_progress"), 1);
    wait_save_done(&mut conn);
    assert_eq!(persistence_field(&mut conn, "rdb_last_bgsave_status"), "ok");
    assert_eq!(
        numeric_field(&mut conn, "snapshot_last_keys_saved_early"),
        KEYS as u64
    );
    assert_dump_holds_the_populated_values(&server, KEYS);
}

/// What a big collection holds, as sorted text: hash fields and values, set members, sorted-set
/// members and scores.
fn collection_contents(value: &Value) -> Vec<String> {
    let mut items: Vec<String> = match value {
        Value::Hash(hash) => hash
            .iter()
            .map(|(f, v)| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(&f),
                    String::from_utf8_lossy(&v)
                )
            })
            .collect(),
        Value::Set(set) => set
            .iter()
            .map(|m| String::from_utf8_lossy(&m).into_owned())
            .collect(),
        Value::ZSet(zset) => zset
            .iter()
            .map(|(m, s)| format!("{}={s}", String::from_utf8_lossy(&m)))
            .collect(),
        other => panic!("not a big collection: {other:?}"),
    };
    items.sort();
    items
}

/// Big hashes, sets and sorted sets written throughout a slow save (adds, removals, score
/// changes): each write copies a few parts of its collection while the save still shares the
/// rest, and the dump holds every collection exactly as it was at the cut.
#[test]
fn big_collections_written_during_the_save_are_saved_as_they_were_at_the_cut() {
    // Big enough to span many parts (1024 entries, 256 treap nodes each).
    const N: usize = 10_000;
    let server = TestServer::start(BIN, &["--save", "", "--snapshot-max-bytes-per-sec", "1mb"]);
    let mut conn = server.client();
    for start in (0..N).step_by(1000) {
        let mut hset = redis::cmd("HSET");
        let mut sadd = redis::cmd("SADD");
        let mut zadd = redis::cmd("ZADD");
        hset.arg("hash");
        sadd.arg("set");
        zadd.arg("zset");
        for i in start..start + 1000 {
            hset.arg(format!("f{i}")).arg(format!("v{i}"));
            sadd.arg(format!("m{i}"));
            zadd.arg(i).arg(format!("m{i}"));
        }
        for cmd in [hset, sadd, zadd] {
            let _: u64 = cmd.query(&mut conn).expect("fill");
        }
    }
    // About 3 MB at 1 MB/s: the save lasts through every write below.
    populate(&mut conn, "pad", 3000, 1000);
    let read = |conn: &mut redis::Connection| -> HashMap<String, Vec<String>> {
        let hash: Vec<(String, String)> = redis::cmd("HGETALL").arg("hash").query(conn).unwrap();
        let set: Vec<String> = redis::cmd("SMEMBERS").arg("set").query(conn).unwrap();
        let zset: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg("zset")
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query(conn)
            .unwrap();
        let mut contents = HashMap::from([
            (
                "hash".to_string(),
                hash.iter()
                    .map(|(f, v)| format!("{f}={v}"))
                    .collect::<Vec<_>>(),
            ),
            ("set".to_string(), set),
            (
                "zset".to_string(),
                zset.iter().map(|(m, s)| format!("{m}={s}")).collect(),
            ),
        ]);
        contents.values_mut().for_each(|items| items.sort());
        contents
    };
    let at_cut = read(&mut conn);
    bgsave(&mut conn);
    for i in (0..N).step_by(37) {
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg("hash")
            .arg(format!("f{i}"))
            .arg("changed")
            .ignore();
        pipe.cmd("HDEL")
            .arg("hash")
            .arg(format!("f{}", i + 1))
            .ignore();
        pipe.cmd("HSET")
            .arg("hash")
            .arg(format!("new{i}"))
            .arg("x")
            .ignore();
        pipe.cmd("SREM").arg("set").arg(format!("m{i}")).ignore();
        pipe.cmd("SADD").arg("set").arg(format!("new{i}")).ignore();
        pipe.cmd("ZINCRBY")
            .arg("zset")
            .arg(0.5)
            .arg(format!("m{i}"))
            .ignore();
        pipe.cmd("ZREM")
            .arg("zset")
            .arg(format!("m{}", i + 1))
            .ignore();
        pipe.cmd("ZADD")
            .arg("zset")
            .arg(-1)
            .arg(format!("new{i}"))
            .ignore();
        pipe.query::<()>(&mut conn).expect("writes during the save");
    }
    let after = read(&mut conn);
    assert_eq!(
        persistence_field(&mut conn, "rdb_bgsave_in_progress"),
        "1",
        "the writes ran during the save"
    );
    wait_save_done(&mut conn);
    assert_eq!(persistence_field(&mut conn, "rdb_last_bgsave_status"), "ok");
    assert_eq!(numeric_field(&mut conn, "snapshot_retained_bytes"), 0);
    let mut saved = HashMap::new();
    let file = File::open(server.dir.join("dump.rdb")).expect("dump exists");
    format::load(BufReader::new(file), "dump.rdb", 0, |entry| {
        let key = String::from_utf8_lossy(&entry.key).into_owned();
        if !key.starts_with("pad") {
            saved.insert(key, collection_contents(&entry.value));
        }
        Ok(())
    })
    .expect("dump loads");
    assert_eq!(saved, at_cut, "the collections as they were at the cut");
    assert_ne!(after, at_cut);
    assert_eq!(
        read(&mut conn),
        after,
        "the live collections keep the writes"
    );
}

#[test]
fn lastsave_and_changes_since_last_save_follow_saves() {
    let server = TestServer::start(BIN, &["--save", ""]);
    let mut conn = server.client();
    let mut raw = server.raw();
    let started: u64 = redis::cmd("LASTSAVE").query(&mut conn).expect("LASTSAVE");
    assert!(started <= unix_secs() && started + 60 > unix_secs());
    assert_eq!(numeric_field(&mut conn, "rdb_changes_since_last_save"), 0);
    assert_eq!(call(&mut raw, &[b"SET", b"a", b"1"]), "+OK\r\n");
    assert_eq!(call(&mut raw, &[b"SET", b"b", b"2"]), "+OK\r\n");
    assert_eq!(
        call(&mut raw, &[b"MSET", b"c", b"3", b"d", b"4"]),
        "+OK\r\n"
    );
    assert_eq!(numeric_field(&mut conn, "rdb_changes_since_last_save"), 4);

    // LASTSAVE has one-second granularity: let the clock pass the current one first.
    assert!(wait_until(Duration::from_secs(3), || unix_secs() > started));
    assert_eq!(call(&mut raw, &[b"SAVE"]), "+OK\r\n");
    let first: u64 = redis::cmd("LASTSAVE").query(&mut conn).expect("LASTSAVE");
    assert!(
        first > started && first <= unix_secs(),
        "LASTSAVE {first} after a save, {started} before"
    );
    assert_eq!(numeric_field(&mut conn, "rdb_changes_since_last_save"), 0);
    assert_eq!(numeric_field(&mut conn, "rdb_saves"), 1);

    assert_eq!(call(&mut raw, &[b"SET", b"x", b"1"]), "+OK\r\n");
    assert_eq!(call(&mut raw, &[b"DEL", b"a"]), ":1\r\n");
    assert_eq!(call(&mut raw, &[b"DEL", b"nothing"]), ":0\r\n");
    assert_eq!(numeric_field(&mut conn, "rdb_changes_since_last_save"), 2);

    assert!(wait_until(Duration::from_secs(3), || unix_secs() > first));
    assert_eq!(
        call(&mut raw, &[b"BGSAVE", b"SCHEDULE"]),
        "+Background saving started\r\n"
    );
    wait_save_done(&mut conn);
    assert_eq!(persistence_field(&mut conn, "rdb_last_bgsave_status"), "ok");
    let second: u64 = redis::cmd("LASTSAVE").query(&mut conn).expect("LASTSAVE");
    assert!(second > first && second <= unix_secs());
    assert_eq!(numeric_field(&mut conn, "rdb_changes_since_last_save"), 0);
    assert_eq!(numeric_field(&mut conn, "rdb_saves"), 2);
    assert_eq!(numeric_field(&mut conn, "rdb_last_save_time"), second);

    let dump = load_dump(&server.dir.join("dump.rdb"));
    let mut keys: Vec<&[u8]> = dump.keys().map(|(_, key)| key.as_slice()).collect();
    keys.sort_unstable();
    assert_eq!(keys, [b"b", b"c", b"d", b"x"]);
    // Changes after the save count again.
    assert_eq!(call(&mut raw, &[b"SET", b"y", b"1"]), "+OK\r\n");
    assert_eq!(numeric_field(&mut conn, "rdb_changes_since_last_save"), 1);
}

// ---------------------------------------------------------------------------------------------
// Save points, SHUTDOWN and SIGTERM.

#[test]
fn save_point_starts_a_background_save() {
    let server = TestServer::start(BIN, &["--save", "1 1"]);
    let mut conn = server.client();
    let dump_path = server.dir.join("dump.rdb");
    assert!(!dump_path.exists());
    let () = redis::cmd("SET")
        .arg("point")
        .arg("reached")
        .query(&mut conn)
        .expect("SET");
    // Due once more than 1 s has passed since startup (the last save) with 1 change.
    assert!(
        wait_until(Duration::from_secs(10), || dump_path.exists()),
        "the save point did not write a dump"
    );
    wait_save_done(&mut conn);
    assert_eq!(persistence_field(&mut conn, "rdb_last_bgsave_status"), "ok");
    assert_eq!(numeric_field(&mut conn, "rdb_changes_since_last_save"), 0);
    assert_eq!(numeric_field(&mut conn, "rdb_saves"), 1);
    let dump = load_dump(&dump_path);
    assert_eq!(
        dump.get(&(0, b"point".to_vec())),
        Some(&(b"reached".to_vec(), None))
    );
    assert_eq!(dump.len(), 1);
}

/// Keys with every kind of expiry, and their PEXPIRETIME on the server that set them.
fn write_expiring_keys(conn: &mut redis::Connection) -> Vec<(Vec<u8>, Vec<u8>, i64)> {
    let now = unix_ms();
    let keys: Vec<(Vec<u8>, Vec<u8>, Vec<String>)> = vec![
        (b"plain".to_vec(), b"v".to_vec(), vec![]),
        (
            b"ex".to_vec(),
            noise(1, 300),
            vec!["EX".into(), "1000".into()],
        ),
        (
            b"pxat".to_vec(),
            b"far".to_vec(),
            vec!["PXAT".into(), "4102444800123".into()],
        ),
        (
            b"px".to_vec(),
            b"12345".to_vec(),
            vec!["PX".into(), "600000".into()],
        ),
        (
            b"bin\x00\xff\r\n".to_vec(),
            noise(2, 5000),
            vec!["PXAT".into(), (now + 3_600_123).to_string()],
        ),
    ];
    let mut out = Vec::new();
    for (key, value, options) in keys {
        let () = redis::cmd("SET")
            .arg(&key)
            .arg(&value)
            .arg(&options)
            .query(conn)
            .expect("SET");
        let at = pexpiretime(conn, &key);
        out.push((key, value, at));
    }
    assert_eq!(out[0].2, -1);
    assert_eq!(out[2].2, 4_102_444_800_123);
    assert!(out.iter().skip(1).all(|(_, _, at)| *at > 0));
    out
}

/// Restarts on `dir` and checks the keys, values and absolute expiry times are all back.
fn assert_restart_has(dir: &TestDir, expected: &[(Vec<u8>, Vec<u8>, i64)]) {
    let server = TestServer::start_in(BIN, &dir.0, &["--save", ""], &[]);
    let mut conn = server.client();
    assert_eq!(dbsize(&mut conn), expected.len() as u64);
    for (key, value, at) in expected {
        let got: Vec<u8> = redis::cmd("GET").arg(key).query(&mut conn).expect("GET");
        assert!(got == *value, "value of {key:?} after the restart");
        assert_eq!(
            pexpiretime(&mut conn, key),
            *at,
            "PEXPIRETIME of {key:?} after the restart"
        );
    }
    assert_eq!(
        numeric_field(&mut conn, "rdb_last_load_keys_loaded"),
        expected.len() as u64
    );
}

#[test]
fn shutdown_with_save_points_saves_and_the_restart_keeps_absolute_expiry() {
    let dir = TestDir::new("shutdown");
    let mut server = TestServer::start_in(BIN, &dir.0, &["--save", "3600 1"], &[]);
    let mut conn = server.client();
    let expected = write_expiring_keys(&mut conn);
    assert!(!dir.dump().exists());
    let mut raw = server.raw();
    raw.send_command(&[b"SHUTDOWN"]);
    assert_eq!(
        raw.read_to_close(),
        b"",
        "SHUTDOWN replies nothing on success"
    );
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0));
    assert!(dir.dump().exists(), "SHUTDOWN with save points must save");
    drop(server);
    assert_restart_has(&dir, &expected);
}

#[test]
fn sigterm_with_save_points_saves_then_exits_0() {
    let dir = TestDir::new("sigterm");
    let server = TestServer::start_in(BIN, &dir.0, &["--save", "3600 1"], &[]);
    let mut conn = server.client();
    let expected = write_expiring_keys(&mut conn);
    assert!(!dir.dump().exists());
    let status = server.terminate();
    assert_eq!(status.code(), Some(0));
    assert!(dir.dump().exists(), "SIGTERM with save points must save");
    assert_restart_has(&dir, &expected);
}

/// SIGTERM while a BGSAVE runs: the running save is cancelled and the final save takes a new
/// cut, so the dump holds the writes made after the BGSAVE started, and the process exits 0.
#[test]
fn sigterm_during_a_bgsave_saves_everything_then_exits_0() {
    let dir = TestDir::new("sigterm-bgsave");
    let server = TestServer::start_in(
        BIN,
        &dir.0,
        &["--save", "3600 1", "--snapshot-max-bytes-per-sec", "1mb"],
        &[],
    );
    let mut conn = server.client();
    populate(&mut conn, "k", 1500, 1000);
    bgsave(&mut conn);
    let () = redis::cmd("SET")
        .arg("after")
        .arg("cut")
        .query(&mut conn)
        .expect("SET");
    assert_eq!(persistence_field(&mut conn, "rdb_bgsave_in_progress"), "1");
    let status = server.terminate();
    assert_eq!(status.code(), Some(0));
    let dump = load_dump(&dir.dump());
    assert_eq!(dump.len(), 1501);
    assert_eq!(
        dump.get(&(0, b"after".to_vec())),
        Some(&(b"cut".to_vec(), None))
    );
    let entries: Vec<String> = fs::read_dir(&dir.0)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        entries,
        ["dump.rdb"],
        "the cancelled save's temp file is removed"
    );
}

#[test]
fn shutdown_nosave_and_shutdown_without_save_points_write_no_dump() {
    for (args, shutdown) in [
        (
            ["--save", "3600 1"],
            &[b"SHUTDOWN".as_slice(), b"NOSAVE"][..],
        ),
        (["--save", ""], &[b"SHUTDOWN".as_slice()][..]),
    ] {
        let mut server = TestServer::start(BIN, &args);
        let mut raw = server.raw();
        assert_eq!(call(&mut raw, &[b"SET", b"k", b"v"]), "+OK\r\n");
        raw.send_command(shutdown);
        assert_eq!(raw.read_to_close(), b"");
        assert_eq!(server.wait_exit().code(), Some(0));
        assert!(
            !server.dir.join("dump.rdb").exists(),
            "{args:?} then {shutdown:?} wrote a dump"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Retained versions and memory across many saves.

#[test]
fn hundred_bgsaves_under_writes_release_every_retained_version() {
    const KEYS: usize = 2000;
    let server = TestServer::start(BIN, &["--save", ""]);
    let mut conn = server.client();
    populate(&mut conn, "k", KEYS, 100);
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, writes) = (Arc::clone(&stop), Arc::clone(&writes));
        let mut conn = server.client();
        std::thread::spawn(move || {
            let mut n = 0u64;
            // Bounded whatever happens: at most 2M writes.
            while !stop.load(Ordering::Relaxed) && n < 2_000_000 {
                let () = redis::cmd("SET")
                    .arg(format!("k{}", (n * 7919) % KEYS as u64))
                    .arg(noise(n, 100))
                    .query(&mut conn)
                    .expect("SET");
                n += 1;
                writes.store(n, Ordering::Relaxed);
            }
        })
    };
    let rss = |conn: &mut redis::Connection| -> u64 {
        info(conn, "memory")["used_memory"]
            .parse()
            .expect("used_memory")
    };
    let mut rss_after_10 = 0;
    let mut writes_during_saves = 0;
    for round in 1..=100u64 {
        let before = writes.load(Ordering::Relaxed);
        bgsave(&mut conn);
        wait_save_done(&mut conn);
        writes_during_saves += writes.load(Ordering::Relaxed) - before;
        let fields = info(&mut conn, "persistence");
        assert_eq!(fields["rdb_last_bgsave_status"], "ok", "save {round}");
        assert_eq!(fields["snapshot_retained_bytes"], "0", "save {round}");
        assert_eq!(fields["snapshot_retained_versions"], "0", "save {round}");
        assert_eq!(fields["rdb_saves"], round.to_string());
        assert_eq!(fields["snapshot_last_keys_saved"], KEYS.to_string());
        if round == 10 {
            rss_after_10 = rss(&mut conn);
        }
    }
    let rss_after_100 = rss(&mut conn);
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let total_writes = writes.load(Ordering::Relaxed);
    let peak: u64 = numeric_field(&mut conn, "snapshot_peak_retained_bytes");
    eprintln!(
        "writes: {total_writes} ({writes_during_saves} while a save ran); peak retained: \
         {peak} B; used_memory after save 10: {rss_after_10}, after save 100: {rss_after_100}"
    );
    // Every save's traversal leaves most of its 128 shards unvisited for a while: with
    // hundreds of overwrites landing while saves run, at least one must have hit an unvisited
    // shard and retained its old version. (Only asserted when the writer really did overlap
    // the saves; the writer runs flat out, so on any machine it does.)
    if writes_during_saves >= 500 {
        assert!(
            peak > 0,
            "{writes_during_saves} overwrites during saves retained nothing"
        );
    } else {
        eprintln!("!!!!! only {writes_during_saves} writes overlapped the saves: peak not checked");
    }
    // A leak of one dataset copy per save would be 100 × ~300 KB; twice the RSS plus 20 MB
    // leaves room for allocator noise but not for that.
    assert!(
        rss_after_100 < 2 * rss_after_10 + 20_000_000,
        "used_memory grew from {rss_after_10} to {rss_after_100}"
    );
    assert_eq!(numeric_field(&mut conn, "snapshot_retained_bytes"), 0);
}

// ---------------------------------------------------------------------------------------------
// zstd and real Redis.

/// The `zstd` binary, or None with a loud skip line.
fn zstd_tool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("zstd"))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        eprintln!("!!!!! SKIPPING: zstd not found on PATH (apt-get install zstd) !!!!!");
    }
    found
}

/// Keys of every shape: binary keys and values, integers, long compressible values, empty
/// values, TTLs (relative and absolute), and a few keys in database 3.
fn write_mixed(server: &TestServer) {
    let mut conn = server.client();
    for start in (0..600).step_by(100) {
        let mut cmd = redis::cmd("MSET");
        for i in start..start + 100 {
            cmd.arg(format!("str:{i}"))
                .arg(noise(i, (i as usize * 7) % 2000));
        }
        let () = cmd.query(&mut conn).expect("MSET");
    }
    let ints = [
        "0",
        "-1",
        "12345",
        "-2147483648",
        "9223372036854775807",
        "007",
        "1e3",
    ];
    for i in 0..100 {
        let value = ints[i % ints.len()];
        let () = redis::cmd("SET")
            .arg(format!("int:{i}"))
            .arg(value)
            .query(&mut conn)
            .expect("SET");
    }
    for i in 0..100 {
        let () = redis::cmd("SET")
            .arg(format!("lzf:{i}"))
            .arg(format!("{}{i}", "abc".repeat(1000 + i)))
            .query(&mut conn)
            .expect("SET");
    }
    let now = unix_ms();
    for i in 0..180u64 {
        let expiry = if i % 2 == 0 {
            vec!["PX".to_string(), (100_000 + i * 10_007).to_string()]
        } else {
            vec!["PXAT".to_string(), (now + 1_000_000 + i).to_string()]
        };
        let () = redis::cmd("SET")
            .arg(format!("ttl:{i}").as_bytes())
            .arg(noise(i + 1000, 64))
            .arg(expiry)
            .query(&mut conn)
            .expect("SET");
    }
    for i in 0..20u8 {
        let key = [b'b', b'i', b'n', 0, 0xff, b'\r', b'\n', i];
        let () = redis::cmd("SET")
            .arg(&key[..])
            .arg(&[0u8, 0xff, b'\r', b'\n', i][..])
            .query(&mut conn)
            .expect("SET");
    }
    let () = redis::cmd("SET")
        .arg("empty")
        .arg("")
        .query(&mut conn)
        .expect("SET");
    let () = redis::cmd("SELECT")
        .arg(3)
        .query(&mut conn)
        .expect("SELECT");
    populate(&mut conn, "db3:", 10, 50);
}

/// Every key of databases 0 and 3 with its value and PEXPIRETIME, through `conn`.
fn contents(conn: &mut redis::Connection) -> HashMap<(u8, Vec<u8>), (Vec<u8>, i64)> {
    let mut out = HashMap::new();
    for db in [0u8, 3] {
        let () = redis::cmd("SELECT").arg(db).query(conn).expect("SELECT");
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(conn).expect("KEYS");
        for key in keys {
            let value: Vec<u8> = redis::cmd("GET").arg(&key).query(conn).expect("GET");
            let at = pexpiretime(conn, &key);
            out.insert((db, key), (value, at));
        }
    }
    let () = redis::cmd("SELECT").arg(0).query(conn).expect("SELECT");
    out
}

const MIXED_DB0: u64 = 600 + 100 + 100 + 180 + 20 + 1;

#[test]
fn zstd_dump_decompresses_to_a_valid_rdb_and_reloads() {
    let dir = TestDir::new("zstd");
    let server = TestServer::start_in(
        BIN,
        &dir.0,
        &["--save", "", "--snapshot-compression", "zstd"],
        &[],
    );
    write_mixed(&server);
    let mut conn = server.client();
    let before = contents(&mut conn);
    assert_eq!(before.len() as u64, MIXED_DB0 + 10);
    bgsave(&mut conn);
    wait_save_done(&mut conn);
    assert_eq!(persistence_field(&mut conn, "rdb_last_bgsave_status"), "ok");
    drop(server);
    let dump = fs::read(dir.dump()).expect("dump");
    assert_eq!(dump.get(..4), Some(&format::ZSTD_MAGIC[..]));
    // The loader reads the compressed file directly.
    assert_eq!(load_dump(&dir.dump()).len() as u64, MIXED_DB0 + 10);

    if let Some(zstd) = zstd_tool() {
        let plain = dir.0.join("plain.rdb");
        let status = Command::new(zstd)
            .args(["-d", "-q", "-f"])
            .arg(dir.dump())
            .arg("-o")
            .arg(&plain)
            .status()
            .expect("run zstd");
        assert!(status.success(), "zstd -d failed: {status:?}");
        let bytes = fs::read(&plain).expect("plain dump");
        assert_eq!(bytes.get(..9), Some(&b"REDIS0010"[..]));
        assert_eq!(load_dump(&plain), load_dump(&dir.dump()));
        if let Some(check) = redis_tool("redis-check-rdb") {
            let output = Command::new(check)
                .arg(&plain)
                .output()
                .expect("run redis-check-rdb");
            let text = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success() && text.contains("RDB looks OK"),
                "redis-check-rdb: {text}"
            );
        }
        fs::remove_file(&plain).expect("remove plain.rdb");
    }

    // forkless restarts from the zstd dump (the loader detects it, whatever the setting).
    let server = TestServer::start_in(BIN, &dir.0, &["--save", ""], &[]);
    let mut conn = server.client();
    assert_eq!(contents(&mut conn), before);
}

#[test]
fn real_redis_loads_our_bgsave() {
    let Some(redis_server) = redis_tool("redis-server") else {
        return;
    };
    let Some(check) = redis_tool("redis-check-rdb") else {
        return;
    };
    let dir = TestDir::new("real-redis");
    let server = TestServer::start_in(BIN, &dir.0, &["--save", ""], &[]);
    write_mixed(&server);
    let mut conn = server.client();
    bgsave(&mut conn);
    wait_save_done(&mut conn);
    assert_eq!(persistence_field(&mut conn, "rdb_last_bgsave_status"), "ok");
    let ours = contents(&mut conn);
    assert_eq!(ours.len() as u64, MIXED_DB0 + 10);

    let output = Command::new(check)
        .arg(dir.dump())
        .output()
        .expect("run redis-check-rdb");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains("RDB looks OK"),
        "redis-check-rdb: {text}"
    );

    let (redis, mut real) = start_real_redis_on(&redis_server, &dir.0);
    let loaded: String = redis::cmd("INFO")
        .arg("persistence")
        .query(&mut real)
        .expect("INFO");
    assert!(loaded.contains("rdb_last_load_keys_loaded:"), "{loaded}");
    assert_eq!(dbsize(&mut real), MIXED_DB0);
    let theirs = contents(&mut real);
    assert_eq!(theirs.len(), ours.len());
    for (key, (value, at)) in &ours {
        let Some((their_value, their_at)) = theirs.get(key) else {
            panic!("redis-server lacks {key:?}");
        };
        assert!(their_value == value, "value of {key:?} differs");
        assert_eq!(their_at, at, "PEXPIRETIME of {key:?} differs");
    }
    drop(redis);
}

// ---------------------------------------------------------------------------------------------
// The save's traversal threads yield to the threads serving clients (snapshot-idle-priority,
// snapshot-nice); the sweeper and the writer do not.

/// Linux's `SCHED_IDLE` policy number, as /proc shows it.
const SCHED_IDLE: i64 = 5;

/// (thread name, nice value, scheduling policy) of every thread of process `pid`.
fn thread_scheduling(pid: u32) -> Vec<(String, i64, i64)> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| {
            let path = task.ok()?.path();
            let comm = fs::read_to_string(path.join("comm")).ok()?;
            let stat = fs::read_to_string(path.join("stat")).ok()?;
            // Fields after the parenthesised name start at field 3 (state); nice is field 19,
            // policy field 41.
            let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
            let nice = fields.get(16)?.parse().ok()?;
            let policy = fields.get(38)?.parse().ok()?;
            Some((comm.trim().to_string(), nice, policy))
        })
        .collect()
}

/// Starts a throttled BGSAVE with `args` and returns the scheduling of the server's threads
/// while its traversal threads run.
fn scheduling_during_a_save(args: &[&str]) -> Vec<(String, i64, i64)> {
    // 1 MB/s over 15 MB: the save runs long enough to look at its threads (the chunk channel
    // holds a few MB, so the traversal threads are still there).
    let mut all = vec!["--save", "", "--snapshot-max-bytes-per-sec", "1mb"];
    all.extend_from_slice(args);
    let server = TestServer::start(BIN, &all);
    let mut conn = server.client();
    populate(&mut conn, "k", 15_000, 1000);
    bgsave(&mut conn);
    let mut seen = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            seen = thread_scheduling(server.pid());
            seen.iter()
                .any(|(name, ..)| name.starts_with("forkless-snap"))
                && seen.iter().any(|(name, ..)| name == "forkless-sweep")
        }),
        "no snapshot threads seen: {seen:?}"
    );
    assert!(seen.iter().any(|(name, ..)| name == "forkless-worker"));
    seen
}

#[test]
fn by_default_only_the_traversal_threads_run_under_sched_idle() {
    for (name, nice, policy) in scheduling_during_a_save(&[]) {
        if name.starts_with("forkless-snap") {
            assert_eq!(policy, SCHED_IDLE, "{name} runs under policy {policy}");
        } else {
            // The sweeper, the writer, the workers: the server's own scheduling.
            assert_eq!(
                (nice, policy),
                (0, 0),
                "{name} runs at nice {nice}, policy {policy}"
            );
        }
    }
}

#[test]
fn snapshot_nice_lowers_only_the_traversal_threads() {
    let seen =
        scheduling_during_a_save(&["--snapshot-idle-priority", "no", "--snapshot-nice", "19"]);
    for (name, nice, policy) in seen {
        let expected = if name.starts_with("forkless-snap") {
            19
        } else {
            0
        };
        assert_eq!(
            (nice, policy),
            (expected, 0),
            "{name} runs at nice {nice}, policy {policy}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Loading at startup while serving clients.

/// Starts the server on `port` without waiting for it to be ready (the harness waits for the
/// "Ready" line, which comes after loading).
fn spawn_on_port(dir: &TestDir, port: u16, args: &[&str]) -> ChildGuard {
    ChildGuard(
        Command::new(BIN)
            .env_remove("FORKLESS_FAULT_INJECT")
            .args(["--port", &port.to_string(), "--dir"])
            .arg(&dir.0)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn forkless-server"),
    )
}

/// A dump big enough that loading it takes a while in a debug build: 40,000 keys × 2000 B.
fn big_dump(tag: &str) -> TestDir {
    let dir = TestDir::new(tag);
    let server = TestServer::start_in(BIN, &dir.0, &["--save", ""], &[]);
    let mut conn = server.client();
    populate(&mut conn, "k", 40_000, 2000);
    let reply: String = redis::cmd("SAVE").query(&mut conn).expect("SAVE");
    assert_eq!(reply, "OK");
    drop(conn);
    server.terminate();
    dir
}

/// Connects as soon as the port accepts.
fn connect_when_listening(port: u16) -> redis::Connection {
    let url = format!("redis://127.0.0.1:{port}/");
    let mut conn = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            conn = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .ok();
            conn.is_some()
        }),
        "nothing listening on {port}"
    );
    conn.expect("connected")
}

#[test]
fn clients_are_served_while_the_dump_loads_and_info_shows_progress() {
    let dir = big_dump("loading");
    let size = fs::metadata(dir.dump()).expect("dump").len();
    let port = free_port();
    let _server = spawn_on_port(&dir, port, &["--save", ""]);
    let mut conn = connect_when_listening(port);
    // Listening starts before loading: the first INFO sees it in progress.
    let persistence = info(&mut conn, "persistence");
    assert_eq!(persistence["loading"], "1", "{persistence:?}");
    assert_eq!(persistence["loading_total_bytes"], size.to_string());
    let loaded: u64 = persistence["loading_loaded_bytes"]
        .parse()
        .expect("a number");
    assert!(loaded <= size);
    for field in [
        "loading_start_time",
        "loading_rdb_used_mem",
        "loading_loaded_perc",
        "loading_eta_seconds",
    ] {
        assert!(persistence.contains_key(field), "{field} missing");
    }
    // Commands without the `loading` flag are refused, as Redis does.
    let err = redis::cmd("GET")
        .arg("k1")
        .query::<Option<Vec<u8>>>(&mut conn)
        .expect_err("GET while loading");
    assert_eq!(err.code(), Some("LOADING"), "{err:?}");
    // Then the dataset is complete, and the fields are gone.
    assert!(wait_until(Duration::from_secs(60), || {
        persistence_field(&mut conn, "loading") == "0"
    }));
    assert_eq!(dbsize(&mut conn), 40_000);
    assert!(!info(&mut conn, "persistence").contains_key("loading_total_bytes"));
    let value: Vec<u8> = redis::cmd("GET").arg("k7").query(&mut conn).expect("GET");
    assert!(value == noise(7, 2000));
}

#[test]
fn sigterm_while_loading_exits_without_saving_the_partial_dataset() {
    let dir = big_dump("loading-sigterm");
    let before = fs::read(dir.dump()).expect("dump");
    let port = free_port();
    // Save points on: a SIGTERM would normally save. Not with half the data loaded.
    let mut server = spawn_on_port(&dir, port, &["--save", "3600 1"]);
    let mut conn = connect_when_listening(port);
    assert_eq!(persistence_field(&mut conn, "loading"), "1");
    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let mut exited = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            exited = server.0.try_wait().expect("try_wait");
            exited.is_some()
        }),
        "the server did not exit"
    );
    assert!(exited.expect("exited").success());
    assert!(
        fs::read(dir.dump()).expect("dump") == before,
        "the dump changed"
    );
    let leftovers: Vec<_> = fs::read_dir(&dir.0)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("temp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// `rdb-key-save-delay` (Redis's debugging option, which Redis's own replication tests use to
/// make a save last) makes each key wait; set back to 0, the running save ends at once.
#[test]
fn rdb_key_save_delay_makes_a_save_last_until_it_is_lifted() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.client();
    forkless_tests::populate(&mut conn, "k:", 100, 10);
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("rdb-key-save-delay")
        .arg(1_000_000)
        .query(&mut conn)
        .unwrap();
    let _: String = redis::cmd("BGSAVE").query(&mut conn).unwrap();
    let in_progress = |conn: &mut redis::Connection| {
        forkless_tests::info_section(conn, "persistence")["rdb_bgsave_in_progress"].clone()
    };
    // One second per key: still saving after the first key.
    assert!(forkless_tests::wait_until(Duration::from_secs(5), || {
        in_progress(&mut conn) == "1"
    }));
    // Without the delay 100 keys take milliseconds; with it, about 100 s.
    assert_eq!(in_progress(&mut conn), "1");
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("rdb-key-save-delay")
        .arg(0)
        .query(&mut conn)
        .unwrap();
    assert!(forkless_tests::wait_until(Duration::from_secs(10), || {
        in_progress(&mut conn) == "0"
    }));
    assert_eq!(
        forkless_tests::info_section(&mut conn, "persistence")["rdb_last_bgsave_status"],
        "ok"
    );
}
