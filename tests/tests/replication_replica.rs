//! forkless as a replica of Debian's redis-server 7.0: full sync (disk-based and diskless, to
//! a temp file or straight from the socket) under concurrent writes of every type, the stream
//! applied with Redis's offsets (WAIT on the primary counts the replica's ACKs), partial
//! resync after a dropped link from either side, the replica's refusals (READONLY,
//! MASTERDOWN), promotion with REPLICAOF NO ONE, expiry left to the primary, `replicaof` and
//! `masterauth` in the configuration, and a fake primary sending a corrupt RDB, which the
//! replica must drop and retry without ever serving half a dataset.
//!
//! Without `redis-server` on PATH the tests that need it print a loud skip line and pass,
//! unless FORKLESS_REQUIRE_REDIS=1.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use forkless_tests::replication::{
    SYNC_TIMEOUT, assert_same_data, dataset, info, settle, wait_synced, write_round,
};
use forkless_tests::{
    ChildGuard, TestServer, free_port, info_section, redis_tool, unique_dir, wait_until,
};
use rand::{Rng, SeedableRng};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

/// A redis-server 7.0 primary on a free loopback port, persistence off.
struct Primary {
    _process: ChildGuard,
    port: u16,
    dir: PathBuf,
}

impl Primary {
    fn start(extra: &[&str]) -> Option<Primary> {
        let redis_server = redis_tool("redis-server")?;
        let port = free_port();
        let dir = unique_dir("primary");
        let process = ChildGuard(
            Command::new(redis_server)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
                .arg(&dir)
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server"),
        );
        let primary = Primary {
            _process: process,
            port,
            dir,
        };
        // Listening is enough: a primary with requirepass answers PING with NOAUTH.
        assert!(
            wait_until(Duration::from_secs(20), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "redis-server did not start on port {port}"
        );
        Some(primary)
    }

    fn try_client(&self) -> Option<redis::Connection> {
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .ok()?
            .get_connection()
            .ok()?;
        let _: String = redis::cmd("PING").query(&mut conn).ok()?;
        Some(conn)
    }

    fn client(&self) -> redis::Connection {
        let mut conn = None;
        assert!(wait_until(Duration::from_secs(20), || {
            conn = self.try_client();
            conn.is_some()
        }));
        conn.expect("connect to redis-server")
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes rounds into the primary on a thread until stopped; returns the rounds written.
struct Writer {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(primary: &Primary, seed: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicUsize::new(0));
        let mut conn = primary.client();
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            let rounds = Arc::clone(&rounds);
            move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                while !stop.load(Ordering::Relaxed) {
                    write_round(&mut conn, &mut rng);
                    rounds.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Writer {
            stop,
            rounds,
            thread: Some(thread),
        }
    }

    /// Waits until `n` more rounds are written.
    fn wait_rounds(&self, n: usize) {
        let target = self.rounds.load(Ordering::Relaxed) + n;
        assert!(wait_until(SYNC_TIMEOUT, || self
            .rounds
            .load(Ordering::Relaxed)
            >= target));
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("writer thread");
        }
    }
}

/// Seeds the primary, starts a forkless replica with `replica_args`, points it at the
/// primary while writes run, keeps writing after the sync, and compares the datasets.
fn sync_under_writes(primary_args: &[&str], replica_args: &[&str], seed: u64) {
    let Some(primary) = Primary::start(primary_args) else {
        return;
    };
    let mut theirs = primary.client();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for _ in 0..40 {
        write_round(&mut theirs, &mut rng);
    }
    forkless_tests::populate(&mut theirs, "big:", 20_000, 200);
    // A function library travels in the RDB.
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(
            "#!lua name=replib\nredis.register_function{function_name='rf', \
             callback=function() return 7 end, flags={'no-writes'}}",
        )
        .query(&mut theirs)
        .unwrap();
    let replica = TestServer::start(BIN, replica_args);
    let mut ours = replica.client();
    let writer = Writer::start(&primary, seed + 1);
    writer.wait_rounds(5);
    let reply: String = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.port)
        .query(&mut ours)
        .unwrap();
    assert_eq!(reply, "OK");
    // Writes during the transfer and after: wait for the link, then write more.
    assert!(wait_until(SYNC_TIMEOUT, || info(
        &mut ours,
        "replication",
        "master_link_status"
    ) == "up"));
    writer.wait_rounds(20);
    writer.stop();
    settle(&mut theirs, &mut ours);
    assert_same_data(&mut theirs, &mut ours);
    let called: i64 = redis::cmd("FCALL_RO")
        .arg("rf")
        .arg(0)
        .query(&mut ours)
        .unwrap();
    assert_eq!(called, 7);
    // The offsets are Redis's: WAIT counts the replica's ACK of everything sent.
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query(&mut theirs)
        .unwrap();
    assert_eq!(acked, 1, "WAIT on the primary");
    let stats = info_section(&mut theirs, "stats");
    assert_eq!(stats.get("sync_full").map(String::as_str), Some("1"));
}

#[test]
fn disk_based_sync_to_a_temp_file_under_writes() {
    sync_under_writes(&["--repl-diskless-sync", "no"], &[], 11);
}

#[test]
fn diskless_sync_with_eof_framing_to_a_temp_file_under_writes() {
    sync_under_writes(
        &[
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
        ],
        &["--repl-diskless-load", "disabled"],
        22,
    );
}

#[test]
fn diskless_sync_loaded_straight_from_the_socket_under_writes() {
    sync_under_writes(
        &[
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
        ],
        &["--repl-diskless-load", "on-empty-db"],
        33,
    );
}

#[test]
fn disk_based_sync_loaded_straight_from_the_socket_under_writes() {
    sync_under_writes(
        &["--repl-diskless-sync", "no"],
        &["--repl-diskless-load", "on-empty-db"],
        44,
    );
}

/// A dropped link resumes with +CONTINUE whichever side drops it, and the data still matches.
#[test]
fn a_dropped_link_resumes_with_a_partial_resync() {
    let Some(primary) = Primary::start(&[
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
    ]) else {
        return;
    };
    let mut theirs = primary.client();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for _ in 0..20 {
        write_round(&mut theirs, &mut rng);
    }
    let replica = TestServer::start(
        BIN,
        &["--replicaof", "127.0.0.1", &primary.port.to_string()],
    );
    let mut ours = replica.client();
    wait_synced(&mut theirs, &mut ours);
    // Leave database 2 selected in the stream: after the resume the primary sends no SELECT.
    let () = redis::cmd("SELECT").arg(2).query(&mut theirs).unwrap();
    let () = redis::cmd("SET")
        .arg("in-db-2")
        .arg("x")
        .query(&mut theirs)
        .unwrap();
    wait_synced(&mut theirs, &mut ours);
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("master")
        .query(&mut ours)
        .unwrap();
    assert_eq!(killed, 1);
    let () = redis::cmd("SET")
        .arg("after-kill-1")
        .arg("x")
        .query(&mut theirs)
        .unwrap();
    wait_synced(&mut theirs, &mut ours);
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query(&mut theirs)
        .unwrap();
    assert_eq!(killed, 1);
    let () = redis::cmd("SET")
        .arg("after-kill-2")
        .arg("x")
        .query(&mut theirs)
        .unwrap();
    let () = redis::cmd("SELECT").arg(0).query(&mut theirs).unwrap();
    for _ in 0..10 {
        write_round(&mut theirs, &mut rng);
    }
    settle(&mut theirs, &mut ours);
    let stats = info_section(&mut theirs, "stats");
    assert_eq!(stats.get("sync_full").map(String::as_str), Some("1"));
    assert_eq!(stats.get("sync_partial_ok").map(String::as_str), Some("2"));
    assert_same_data(&mut theirs, &mut ours);
    let () = redis::cmd("SELECT").arg(2).query(&mut ours).unwrap();
    let value: Option<String> = redis::cmd("GET")
        .arg("after-kill-2")
        .query(&mut ours)
        .unwrap();
    assert_eq!(value.as_deref(), Some("x"));
}

/// The replica's own clients: READONLY for writes, the replica fields of INFO, ROLE; REPLICAOF
/// to the same primary; BGSAVE on the replica; then REPLICAOF NO ONE promotes it.
#[test]
fn a_replica_refuses_writes_reports_its_link_and_promotes() {
    let Some(primary) = Primary::start(&["--repl-diskless-sync-delay", "0"]) else {
        return;
    };
    let mut theirs = primary.client();
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut theirs)
        .unwrap();
    let replica = TestServer::start(BIN, &[]);
    let mut ours = replica.client();
    let port = primary.port.to_string();
    let mut raw = replica.raw();
    assert_eq!(
        raw.call(&[b"REPLICAOF", b"127.0.0.1", port.as_bytes()]),
        b"+OK\r\n"
    );
    assert_eq!(
        raw.call(&[b"REPLICAOF", b"127.0.0.1", port.as_bytes()]),
        b"+OK Already connected to specified master\r\n"
    );
    assert_eq!(
        raw.call(&[b"SLAVEOF", b"127.0.0.1", b"70000"]),
        b"-ERR Invalid master port\r\n"
    );
    wait_synced(&mut theirs, &mut ours);
    assert_eq!(
        raw.call(&[b"SET", b"x", b"1"]),
        b"-READONLY You can't write against a read only replica.\r\n"
    );
    assert_eq!(raw.call(&[b"GET", b"k"]), b"$1\r\nv\r\n");
    // Scripts: a write inside one, and a script declared writing.
    assert_eq!(
        raw.call(&[b"EVAL", b"return redis.call('set', 'x', '1')", b"0"]),
        b"-READONLY You can't write against a read only replica. script: \
          a22335312368ca3ce990a8254cce543809e8ea73, on @user_script:1.\r\n"
            .to_vec()
    );
    assert_eq!(
        raw.call(&[b"EVAL", b"#!lua\nreturn 1", b"0"]),
        b"-READONLY You can't write against a read only replica.\r\n"
    );
    assert_eq!(
        raw.call(&[
            b"EVAL",
            b"#!lua flags=no-writes\nreturn redis.call('get', 'k')",
            b"0"
        ]),
        b"$1\r\nv\r\n"
    );
    let fields = info_section(&mut ours, "replication");
    for (field, value) in [
        ("role", "slave"),
        ("master_host", "127.0.0.1"),
        ("master_port", port.as_str()),
        ("master_link_status", "up"),
        ("master_sync_in_progress", "0"),
        ("slave_priority", "100"),
        ("slave_read_only", "1"),
        ("replica_announced", "1"),
        ("connected_slaves", "0"),
    ] {
        assert_eq!(
            fields.get(field).map(String::as_str),
            Some(value),
            "{field}"
        );
    }
    assert!(!fields.contains_key("master_link_down_since_seconds"));
    let primary_ids = info_section(&mut theirs, "replication");
    assert_eq!(
        fields.get("master_replid"),
        primary_ids.get("master_replid")
    );
    let role: redis::Value = redis::cmd("ROLE").query(&mut ours).unwrap();
    let offset = info(&mut theirs, "replication", "master_repl_offset");
    assert_eq!(
        role,
        redis::Value::Array(vec![
            redis::Value::BulkString(b"slave".to_vec()),
            redis::Value::BulkString(b"127.0.0.1".to_vec()),
            redis::Value::Int(i64::from(primary.port)),
            redis::Value::BulkString(b"connected".to_vec()),
            redis::Value::Int(offset.parse().unwrap()),
        ])
    );
    // A replica takes its own snapshots.
    let _: String = redis::cmd("BGSAVE").query(&mut ours).unwrap();
    assert!(wait_until(SYNC_TIMEOUT, || {
        let persistence = info_section(&mut ours, "persistence");
        persistence
            .get("rdb_bgsave_in_progress")
            .map(String::as_str)
            == Some("0")
            && persistence
                .get("rdb_last_bgsave_status")
                .map(String::as_str)
                == Some("ok")
            && replica.dir.join("dump.rdb").exists()
    }));
    // Promotion: writes work, the old history is the second ID up to the offset.
    let old_replid = fields.get("master_replid").cloned().unwrap();
    let offset: i64 = info(&mut ours, "replication", "master_repl_offset")
        .parse()
        .unwrap();
    assert_eq!(raw.call(&[b"REPLICAOF", b"NO", b"ONE"]), b"+OK\r\n");
    assert_eq!(raw.call(&[b"SET", b"x", b"1"]), b"+OK\r\n");
    let fields = info_section(&mut ours, "replication");
    assert_eq!(fields.get("role").map(String::as_str), Some("master"));
    assert_eq!(fields.get("master_replid2"), Some(&old_replid));
    assert_ne!(fields.get("master_replid"), Some(&old_replid));
    assert_eq!(
        fields.get("second_repl_offset").map(String::as_str),
        Some((offset + 1).to_string().as_str())
    );
    assert!(!fields.contains_key("master_host"));
    // The primary's later writes no longer arrive.
    let () = redis::cmd("SET")
        .arg("late")
        .arg("1")
        .query(&mut theirs)
        .unwrap();
    assert_eq!(raw.call(&[b"EXISTS", b"late"]), b":0\r\n");
}

/// A replica expires nothing itself: an expired key reads as missing but stays until the
/// primary's DEL arrives.
#[test]
fn a_replica_waits_for_the_primarys_del_of_an_expired_key() {
    let Some(primary) = Primary::start(&[
        "--repl-diskless-sync-delay",
        "0",
        "--enable-debug-command",
        "yes",
    ]) else {
        return;
    };
    let mut theirs = primary.client();
    let _: String = redis::cmd("DEBUG")
        .arg("SET-ACTIVE-EXPIRE")
        .arg(0)
        .query(&mut theirs)
        .unwrap();
    let replica = TestServer::start(
        BIN,
        &["--replicaof", "127.0.0.1", &primary.port.to_string()],
    );
    let mut ours = replica.client();
    wait_synced(&mut theirs, &mut ours);
    let () = redis::cmd("SET")
        .arg("brief")
        .arg("v")
        .arg("PX")
        .arg(100)
        .query(&mut theirs)
        .unwrap();
    wait_synced(&mut theirs, &mut ours);
    assert!(wait_until(SYNC_TIMEOUT, || {
        redis::cmd("GET")
            .arg("brief")
            .query::<Option<String>>(&mut ours)
            .unwrap()
            .is_none()
    }));
    let size: i64 = redis::cmd("DBSIZE").query(&mut ours).unwrap();
    assert_eq!(size, 1, "the replica removed an expired key by itself");
    // The primary's lazy expiry sends the DEL (its clock may lag the replica's by a tick).
    assert!(wait_until(SYNC_TIMEOUT, || {
        redis::cmd("GET")
            .arg("brief")
            .query::<Option<String>>(&mut theirs)
            .unwrap()
            .is_none()
    }));
    wait_synced(&mut theirs, &mut ours);
    let size: i64 = redis::cmd("DBSIZE").query(&mut ours).unwrap();
    assert_eq!(size, 0);
}

/// `masterauth` authenticates the link to a primary with `requirepass`.
#[test]
fn masterauth_authenticates_the_link() {
    let Some(primary) =
        Primary::start(&["--requirepass", "s3cret", "--repl-diskless-sync-delay", "0"])
    else {
        return;
    };
    let mut theirs = redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}/", primary.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut theirs)
        .unwrap();
    let replica = TestServer::start(
        BIN,
        &[
            "--replicaof",
            "127.0.0.1",
            &primary.port.to_string(),
            "--masterauth",
            "s3cret",
        ],
    );
    let mut ours = replica.client();
    wait_synced(&mut theirs, &mut ours);
    let value: Option<String> = redis::cmd("GET").arg("k").query(&mut ours).unwrap();
    assert_eq!(value.as_deref(), Some("v"));
}

/// With the link down and `replica-serve-stale-data no`, commands without the `stale` flag
/// get MASTERDOWN; INFO still answers and shows the link down.
#[test]
fn masterdown_while_the_link_is_down_and_stale_data_is_refused() {
    let nobody = free_port();
    let replica = TestServer::start(
        BIN,
        &[
            "--replicaof",
            "127.0.0.1",
            &nobody.to_string(),
            "--replica-serve-stale-data",
            "no",
        ],
    );
    let mut raw = replica.raw();
    assert_eq!(
        raw.call(&[b"GET", b"k"]),
        b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n"
            .to_vec()
    );
    let mut ours = replica.client();
    let fields = info_section(&mut ours, "replication");
    assert_eq!(fields.get("role").map(String::as_str), Some("slave"));
    assert_eq!(
        fields.get("master_link_status").map(String::as_str),
        Some("down")
    );
    assert_eq!(
        fields.get("master_last_io_seconds_ago").map(String::as_str),
        Some("-1")
    );
    // Never up: down "since ever", as Redis prints it.
    assert_eq!(
        fields
            .get("master_link_down_since_seconds")
            .map(String::as_str),
        Some("-1")
    );
    let _: String = redis::cmd("CONFIG")
        .arg("SET")
        .arg("replica-serve-stale-data")
        .arg("yes")
        .query(&mut ours)
        .unwrap();
    assert_eq!(raw.call(&[b"GET", b"k"]), b"$-1\r\n");
}

/// A fake primary: answers the handshake, announces a full resync and sends `payload` framed
/// by `preamble`, then closes; counts the connections it accepted.
fn fake_primary(preamble: Vec<u8>, payload: Vec<u8>) -> (u16, Arc<AtomicUsize>) {
    fake_primary_then(preamble, payload, Vec::new(), false)
}

/// [`fake_primary`] that also sends `after` once the replica's first REPLCONF ACK arrives,
/// and with `hang_up` closes the connection after the payload.
fn fake_primary_then(
    preamble: Vec<u8>,
    payload: Vec<u8>,
    after: Vec<u8>,
    hang_up: bool,
) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    std::thread::spawn({
        let connections = Arc::clone(&connections);
        move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                connections.fetch_add(1, Ordering::SeqCst);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                // PING, REPLCONF listening-port, REPLCONF capa, PSYNC: one reply each.
                for reply in [
                    &b"+PONG\r\n"[..],
                    b"+OK\r\n",
                    b"+OK\r\n",
                    b"+FULLRESYNC 0123456789abcdef0123456789abcdef01234567 0\r\n",
                ] {
                    if !read_command(&mut reader) {
                        break;
                    }
                    let _ = writer.write_all(reply);
                }
                let _ = writer.write_all(&preamble);
                let _ = writer.write_all(&payload);
                let _ = writer.flush();
                if hang_up {
                    continue;
                }
                if !after.is_empty() && read_command(&mut reader) {
                    let _ = writer.write_all(&after);
                }
                // Leave the connection to the replica to close.
                let mut rest = Vec::new();
                let _ = reader.read_to_end(&mut rest);
            }
        }
    });
    (port, connections)
}

/// A replica of a scripted primary: the script answers Redis 7.0's handshake, one reply per
/// command, and serves one connection at a time, so no dual-channel offer.
const NO_DUAL: [&str; 2] = ["--repl-dual-channel", "no"];

/// Reads one RESP command; false at the end of the stream.
fn read_command(reader: &mut impl BufRead) -> bool {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return false;
    }
    let n: usize = line.trim_end().trim_start_matches('*').parse().unwrap_or(0);
    for _ in 0..n * 2 {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
    }
    true
}

/// An RDB with `n` string keys `key:<i>` in database 0 and a wrong checksum: every entry
/// loads, then the footer fails.
fn rdb_with_bad_checksum(n: usize) -> Vec<u8> {
    let mut rdb = b"REDIS0010".to_vec();
    rdb.extend_from_slice(&[0xFE, 0x00]);
    for i in 0..n {
        let key = format!("key:{i}");
        rdb.push(0x00);
        rdb.push(u8::try_from(key.len()).unwrap());
        rdb.extend_from_slice(key.as_bytes());
        rdb.push(1);
        rdb.push(b'v');
    }
    rdb.push(0xFF);
    rdb.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    rdb
}

fn never_serves_a_corrupt_dataset(preamble: Vec<u8>, payload: Vec<u8>, load: &str) {
    let (port, connections) = fake_primary(preamble, payload);
    let replica = TestServer::start(BIN, &["--repl-diskless-load", load, NO_DUAL[0], NO_DUAL[1]]);
    let mut ours = replica.client();
    if load == "disabled" {
        // Data of its own: flushed before the load (as Redis does), never mixed with it.
        let () = redis::cmd("SET")
            .arg("old")
            .arg("1")
            .query(&mut ours)
            .unwrap();
    }
    let _: String = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(port)
        .query(&mut ours)
        .unwrap();
    let failed = replica.wait_for_log("Failed trying to load the MASTER synchronization DB");
    assert!(failed.is_some(), "no log line for the failed load");
    // It retries.
    assert!(wait_until(SYNC_TIMEOUT, || connections
        .load(Ordering::SeqCst)
        >= 2));
    // None of the corrupt payload's keys is ever served, and the link is down.
    let keys: Vec<String> = redis::cmd("KEYS").arg("key:*").query(&mut ours).unwrap();
    assert!(
        keys.is_empty(),
        "served keys of a corrupt payload: {}",
        keys.len()
    );
    assert_eq!(info(&mut ours, "replication", "master_link_status"), "down");
    // The corrupt payload never became the dump, and no temp file is left.
    assert!(!replica.dir.join("dump.rdb").exists());
    let temps: Vec<_> = std::fs::read_dir(&replica.dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("temp-"))
        .collect();
    assert!(temps.is_empty(), "temp files left: {temps:?}");
}

#[test]
fn a_corrupt_rdb_with_a_length_is_dropped_and_retried() {
    let payload = rdb_with_bad_checksum(1000);
    let preamble = format!("${}\r\n", payload.len()).into_bytes();
    never_serves_a_corrupt_dataset(preamble, payload, "disabled");
}

#[test]
fn a_truncated_diskless_rdb_loaded_from_the_socket_is_dropped_and_retried() {
    let mark = b"abcdefghijabcdefghijabcdefghijabcdefghij";
    let mut payload = rdb_with_bad_checksum(1000);
    // Cut in the middle of the entries, then the EOF mark.
    payload.truncate(payload.len() / 2);
    payload.extend_from_slice(mark);
    let mut preamble = b"$EOF:".to_vec();
    preamble.extend_from_slice(mark);
    preamble.extend_from_slice(b"\r\n");
    never_serves_a_corrupt_dataset(preamble, payload, "on-empty-db");
}

/// Reads one RESP command of bulk strings.
fn read_args(reader: &mut impl BufRead) -> Vec<String> {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let n: usize = line.trim_end().trim_start_matches('*').parse().unwrap();
    let mut args = Vec::new();
    for _ in 0..n {
        line.clear();
        reader.read_line(&mut line).unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        args.push(line.trim_end().to_owned());
    }
    args
}

fn resp_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    out
}

/// A scripted primary: the replica answers `-LOADING` while the RDB is still arriving (loaded
/// straight from the socket), sends the handshake Redis 7.0 sends, ACKs the sync's offset,
/// and counts the stream's bytes exactly as Redis (SELECT included; GETACK answered with what
/// came before it).
#[test]
fn loading_while_the_rdb_arrives_then_offsets_counted_as_redis() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let replica = TestServer::start(
        BIN,
        &[
            "--repl-diskless-load",
            "on-empty-db",
            NO_DUAL[0],
            NO_DUAL[1],
        ],
    );
    let mut raw = replica.raw();
    let port_text = port.to_string();
    assert_eq!(
        raw.call(&[b"REPLICAOF", b"127.0.0.1", port_text.as_bytes()]),
        b"+OK\r\n"
    );
    let (stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    assert_eq!(read_args(&mut reader), ["PING"]);
    writer.write_all(b"+PONG\r\n").unwrap();
    let listening = read_args(&mut reader);
    assert_eq!(listening[..2], ["REPLCONF", "listening-port"]);
    assert_eq!(listening[2], replica.addr.port().to_string());
    writer.write_all(b"+OK\r\n").unwrap();
    assert_eq!(
        read_args(&mut reader),
        ["REPLCONF", "capa", "eof", "capa", "psync2"]
    );
    writer.write_all(b"+OK\r\n").unwrap();
    // A former primary offers its own history, as Redis's replicationCacheMasterUsingMyself.
    let psync = read_args(&mut reader);
    assert_eq!(
        (psync[0].as_str(), psync[1].len(), psync[2].as_str()),
        ("PSYNC", 40, "1")
    );
    writer
        .write_all(b"+FULLRESYNC 0123456789abcdef0123456789abcdef01234567 100\r\n")
        .unwrap();
    // A valid RDB in two halves.
    let rdb = valid_rdb(50);
    let mark = b"abcdefghijabcdefghijabcdefghijabcdefghij";
    writer.write_all(b"\n$EOF:").unwrap();
    writer.write_all(mark).unwrap();
    writer.write_all(b"\r\n").unwrap();
    let (first, second) = rdb.split_at(rdb.len() / 2);
    writer.write_all(first).unwrap();
    assert!(wait_until(SYNC_TIMEOUT, || raw.call(&[b"GET", b"key:1"])
        == b"-LOADING Redis is loading the dataset in memory\r\n"));
    let mut ours = replica.client();
    let fields = info_section(&mut ours, "replication");
    assert_eq!(
        fields.get("master_sync_in_progress").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        fields.get("master_sync_total_bytes").map(String::as_str),
        Some("0")
    );
    writer.write_all(second).unwrap();
    writer.write_all(mark).unwrap();
    assert_eq!(read_args(&mut reader), ["REPLCONF", "ACK", "100"]);
    assert_eq!(raw.call(&[b"GET", b"key:1"]), b"$1\r\nv\r\n");
    // The stream: SELECT, SET, PING, then GETACK.
    let select = resp_command(&["SELECT", "1"]);
    let set = resp_command(&["SET", "x", "y"]);
    let ping = resp_command(&["PING"]);
    let getack = resp_command(&["REPLCONF", "GETACK", "*"]);
    for part in [&select, &set, &ping, &getack] {
        writer.write_all(part).unwrap();
    }
    let expected = 100 + select.len() + set.len() + ping.len();
    let ack = loop {
        let args = read_args(&mut reader);
        assert_eq!(args[..2], ["REPLCONF", "ACK"]);
        let offset: usize = args[2].parse().unwrap();
        if offset > 100 {
            break offset;
        }
    };
    assert_eq!(ack, expected);
    assert_eq!(raw.call(&[b"SELECT", b"1"]), b"+OK\r\n");
    assert_eq!(raw.call(&[b"GET", b"x"]), b"$1\r\ny\r\n");
    // The master client shows in CLIENT LIST with flag M, and no reply ever reached the primary.
    let list = String::from_utf8(raw.call(&[b"CLIENT", b"LIST", b"TYPE", b"master"])).unwrap();
    assert!(list.contains("flags=M"), "{list}");
    let list = String::from_utf8(raw.call(&[b"CLIENT", b"LIST", b"TYPE", b"normal"])).unwrap();
    assert!(!list.contains("flags=M"), "{list}");
    let fields = info_section(&mut ours, "replication");
    let total = (expected + getack.len()).to_string();
    assert_eq!(fields.get("slave_repl_offset"), Some(&total));
    assert_eq!(fields.get("master_repl_offset"), Some(&total));
    assert_eq!(
        fields.get("master_replid").map(String::as_str),
        Some("0123456789abcdef0123456789abcdef01234567")
    );
}

/// A valid RDB of `n` string keys `key:<i>` (a zero checksum is "not computed").
fn valid_rdb(n: usize) -> Vec<u8> {
    let mut rdb = rdb_with_bad_checksum(n);
    let footer = rdb.len() - 8;
    rdb.truncate(footer);
    rdb.extend_from_slice(&[0; 8]);
    rdb
}

/// A primary that closes the link in the middle of a `$<len>` transfer: with
/// `repl-diskless-load disabled` the replica keeps serving its old data (the flush waits for a
/// whole payload), removes the temp file, and retries.
#[test]
fn a_transfer_cut_short_keeps_the_old_data_and_retries() {
    let payload = valid_rdb(1000);
    let preamble = format!("${}\r\n", payload.len() + 100).into_bytes();
    let (port, connections) = fake_primary_then(preamble, payload, Vec::new(), true);
    let replica = TestServer::start(BIN, &NO_DUAL);
    let mut ours = replica.client();
    let () = redis::cmd("SET")
        .arg("old")
        .arg("1")
        .query(&mut ours)
        .unwrap();
    let _: String = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(port)
        .query(&mut ours)
        .unwrap();
    assert!(wait_until(SYNC_TIMEOUT, || connections
        .load(Ordering::SeqCst)
        >= 2));
    let line = replica.wait_for_log("Replication with MASTER 127.0.0.1");
    assert!(
        line.as_ref()
            .is_some_and(|line| line.contains("the MASTER closed the connection")),
        "{line:?}"
    );
    let old: Option<String> = redis::cmd("GET").arg("old").query(&mut ours).unwrap();
    assert_eq!(old.as_deref(), Some("1"));
    let keys: Vec<String> = redis::cmd("KEYS").arg("key:*").query(&mut ours).unwrap();
    assert!(keys.is_empty());
    assert!(!replica.dir.join("dump.rdb").exists());
}

/// A primary whose stream turns to garbage after a good sync: the replica drops the link and
/// reconnects, keeping what it applied.
#[test]
fn garbage_in_the_stream_drops_the_link() {
    let payload = valid_rdb(10);
    let preamble = format!("${}\r\n", payload.len()).into_bytes();
    let mut stream = resp_command(&["SET", "applied", "1"]);
    stream.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$x\r\n");
    let (port, connections) = fake_primary_then(preamble, payload, stream, false);
    let replica = TestServer::start(BIN, &NO_DUAL);
    let mut ours = replica.client();
    let _: String = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(port)
        .query(&mut ours)
        .unwrap();
    assert!(replica.wait_for_log("Protocol error from MASTER").is_some());
    assert!(wait_until(SYNC_TIMEOUT, || connections
        .load(Ordering::SeqCst)
        >= 2));
    assert!(wait_until(SYNC_TIMEOUT, || {
        redis::cmd("GET")
            .arg("applied")
            .query::<Option<String>>(&mut ours)
            .is_ok_and(|value| value.as_deref() == Some("1"))
    }));
}

/// A replica with `appendonly yes`: the sync's load is followed by an AOF rewrite and the
/// stream's commands are appended, so the replica restarted on its own files (no longer a
/// replica) has the primary's data.
#[test]
fn a_replica_with_the_aof_on_restarts_with_the_primarys_data() {
    let Some(primary) = Primary::start(&["--repl-diskless-sync-delay", "0"]) else {
        return;
    };
    let mut theirs = primary.client();
    let mut rng = rand::rngs::StdRng::seed_from_u64(77);
    for _ in 0..10 {
        write_round(&mut theirs, &mut rng);
    }
    let dir = forkless_tests::TestDir::new("replica-aof");
    let replica = TestServer::start_in(
        BIN,
        &dir.0,
        &[
            "--appendonly",
            "yes",
            "--replicaof",
            "127.0.0.1",
            &primary.port.to_string(),
        ],
        &[],
    );
    let mut ours = replica.client();
    wait_synced(&mut theirs, &mut ours);
    for _ in 0..10 {
        write_round(&mut theirs, &mut rng);
    }
    settle(&mut theirs, &mut ours);
    assert!(wait_until(SYNC_TIMEOUT, || {
        info(&mut ours, "persistence", "aof_rewrite_in_progress") == "0"
            && info(&mut ours, "persistence", "aof_last_bgrewrite_status") == "ok"
    }));
    let expected = dataset(&mut ours);
    assert_same_data(&mut theirs, &mut ours);
    drop(ours);
    assert!(replica.terminate().success());
    let restarted = TestServer::start_in(BIN, &dir.0, &["--appendonly", "yes"], &[]);
    let mut again = restarted.client();
    assert!(wait_until(SYNC_TIMEOUT, || {
        redis::cmd("PING").query::<String>(&mut again).is_ok()
    }));
    assert_eq!(dataset(&mut again), expected);
}

/// SIGTERM while a sync loads exits without the final save: the dump would be half a dataset.
#[test]
fn a_shutdown_while_the_sync_loads_saves_nothing() {
    let mark = b"abcdefghijabcdefghijabcdefghijabcdefghij";
    let mut payload = valid_rdb(1000);
    payload.truncate(payload.len() / 2);
    let mut preamble = b"$EOF:".to_vec();
    preamble.extend_from_slice(mark);
    preamble.extend_from_slice(b"\r\n");
    let (port, _) = fake_primary(preamble, payload);
    let dir = forkless_tests::TestDir::new("replica-shutdown");
    let replica = TestServer::start_in(
        BIN,
        &dir.0,
        &[
            "--repl-diskless-load",
            "on-empty-db",
            NO_DUAL[0],
            NO_DUAL[1],
        ],
        &[],
    );
    let mut raw = replica.raw();
    let port = port.to_string();
    assert_eq!(
        raw.call(&[b"REPLICAOF", b"127.0.0.1", port.as_bytes()]),
        b"+OK\r\n"
    );
    assert!(wait_until(SYNC_TIMEOUT, || raw.call(&[b"DBSIZE"])
        == b"-LOADING Redis is loading the dataset in memory\r\n"));
    assert!(replica.terminate().success());
    assert!(dir.0.exists());
    assert!(!dir.dump().exists(), "a half-loaded dataset was saved");
}

/// A save point does not fire while a sync loads (the keys loaded so far count as changes, and
/// the dump would be half a dataset). Waits past `save 1 1`'s due time.
#[test]
fn no_save_point_fires_while_the_sync_loads() {
    let mark = b"abcdefghijabcdefghijabcdefghijabcdefghij";
    let mut payload = valid_rdb(1000);
    payload.truncate(payload.len() / 2);
    let mut preamble = b"$EOF:".to_vec();
    preamble.extend_from_slice(mark);
    preamble.extend_from_slice(b"\r\n");
    let (port, _) = fake_primary(preamble, payload);
    let replica = TestServer::start(
        BIN,
        &[
            "--repl-diskless-load",
            "on-empty-db",
            "--save",
            "1 1",
            NO_DUAL[0],
            NO_DUAL[1],
        ],
    );
    let mut raw = replica.raw();
    let port = port.to_string();
    assert_eq!(
        raw.call(&[b"REPLICAOF", b"127.0.0.1", port.as_bytes()]),
        b"+OK\r\n"
    );
    assert!(wait_until(SYNC_TIMEOUT, || raw.call(&[b"DBSIZE"])
        == b"-LOADING Redis is loading the dataset in memory\r\n"));
    let saved = wait_until(Duration::from_secs(3), || {
        replica.dir.join("dump.rdb").exists()
    });
    assert!(!saved, "a save point saved a half-loaded dataset");
}

#[test]
fn swapdb_sync_loaded_beside_the_served_data_under_writes() {
    sync_under_writes(
        &[
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
        ],
        &["--repl-diskless-load", "swapdb"],
        55,
    );
}

/// Points the swapdb replica `ours` at a scripted primary whose payload of 1000 keys never
/// ends (the loader waits for its end), and waits until the load has started.
fn swapdb_replica_loading(ours: &mut redis::Connection) -> Arc<AtomicUsize> {
    let mut payload = valid_rdb(1000);
    let preamble = format!("${}\r\n", payload.len()).into_bytes();
    payload.truncate(payload.len() - 9);
    let (port, connections) = fake_primary(preamble, payload);
    let _: String = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(port)
        .query(ours)
        .unwrap();
    // The load starts on its own thread once bytes arrive: wait for it, not just the bytes.
    assert!(wait_until(SYNC_TIMEOUT, || {
        info(ours, "replication", "master_sync_in_progress") == "1"
            && info(ours, "replication", "master_sync_read_bytes")
                .parse::<usize>()
                .is_ok_and(|read| read > 1000)
            && (info(ours, "persistence", "async_loading") == "1"
                || info(ours, "persistence", "loading") == "1")
    }));
    connections
}

/// `repl-diskless-load swapdb` of the history this replica already follows (the same
/// replication ID): while the payload loads, clients read the old data (no LOADING,
/// `async_loading:1`), and commands flagged `no_async_loading` get LOADING.
#[test]
fn swapdb_serves_the_old_data_while_loading() {
    let replica = TestServer::start(
        BIN,
        &["--repl-diskless-load", "swapdb", NO_DUAL[0], NO_DUAL[1]],
    );
    let mut ours = replica.client();
    // A first sync gives the replica the scripted primaries' replication ID.
    let payload = valid_rdb(5);
    let preamble = format!("${}\r\n", payload.len()).into_bytes();
    let (first, _) = fake_primary(preamble, payload);
    let _: String = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(first)
        .query(&mut ours)
        .unwrap();
    assert!(wait_until(SYNC_TIMEOUT, || info(
        &mut ours,
        "replication",
        "master_link_status"
    ) == "up"));
    let connections = swapdb_replica_loading(&mut ours);
    let mut raw = replica.raw();
    assert_eq!(raw.call(&[b"EXISTS", b"key:1"]), b":1\r\n");
    assert_eq!(raw.call(&[b"EXISTS", b"key:999"]), b":0\r\n");
    assert_eq!(info(&mut ours, "persistence", "async_loading"), "1");
    assert_eq!(info(&mut ours, "persistence", "loading"), "0");
    // Commands Redis flags no_async_loading wait for the swap.
    assert_eq!(
        raw.call(&[b"BGSAVE"]),
        b"-LOADING Redis is loading the dataset in memory\r\n"
    );
    // So do the options Redis flags DENY_LOADING_CONFIG; others may change.
    assert_eq!(
        raw.call(&[b"CONFIG", b"SET", b"appendonly", b"no"]),
        b"-LOADING Redis is loading the dataset in memory\r\n"
    );
    assert_eq!(raw.call(&[b"CONFIG", b"SET", b"hz", b"10"]), b"+OK\r\n");
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

/// `repl-diskless-load swapdb` of another history (a new replication ID): the payload loads
/// beside the old data, but clients get LOADING meanwhile (`loading:1`, `async_loading:0`),
/// as Redis 7.0 serves old data only from the same history.
#[test]
fn swapdb_of_another_history_loads_under_loading() {
    let replica = TestServer::start(
        BIN,
        &["--repl-diskless-load", "swapdb", NO_DUAL[0], NO_DUAL[1]],
    );
    let mut ours = replica.client();
    let () = redis::cmd("SET")
        .arg("old")
        .arg("1")
        .query(&mut ours)
        .unwrap();
    let connections = swapdb_replica_loading(&mut ours);
    let mut raw = replica.raw();
    assert_eq!(
        raw.call(&[b"GET", b"old"]),
        b"-LOADING Redis is loading the dataset in memory\r\n"
    );
    assert_eq!(info(&mut ours, "persistence", "async_loading"), "0");
    assert_eq!(info(&mut ours, "persistence", "loading"), "1");
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[test]
fn swapdb_drops_a_corrupt_payload_and_keeps_the_old_data() {
    let payload = rdb_with_bad_checksum(1000);
    let preamble = format!("${}\r\n", payload.len()).into_bytes();
    let (port, connections) = fake_primary(preamble, payload);
    let replica = TestServer::start(
        BIN,
        &["--repl-diskless-load", "swapdb", NO_DUAL[0], NO_DUAL[1]],
    );
    let mut ours = replica.client();
    let () = redis::cmd("SET")
        .arg("old")
        .arg("1")
        .query(&mut ours)
        .unwrap();
    let _: String = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(port)
        .query(&mut ours)
        .unwrap();
    assert!(
        replica
            .wait_for_log("Failed trying to load the MASTER synchronization DB from socket")
            .is_some()
    );
    assert!(wait_until(SYNC_TIMEOUT, || connections
        .load(Ordering::SeqCst)
        >= 2));
    let old: Option<String> = redis::cmd("GET").arg("old").query(&mut ours).unwrap();
    assert_eq!(old.as_deref(), Some("1"));
    let keys: Vec<String> = redis::cmd("KEYS").arg("key:*").query(&mut ours).unwrap();
    assert!(
        keys.is_empty(),
        "served keys of a corrupt payload: {}",
        keys.len()
    );
}

/// A chain redis-server -> forkless -> redis-server under writes of every type: forkless feeds
/// its master's bytes on verbatim, so the last replica counts the first primary's offsets
/// under its ID, and all three datasets are equal.
#[test]
fn a_chain_redis_forkless_redis_keeps_offsets_and_data() {
    let Some(primary) = Primary::start(&[
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
    ]) else {
        return;
    };
    let mut theirs = primary.client();
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    for _ in 0..20 {
        write_round(&mut theirs, &mut rng);
    }
    let middle = TestServer::start(
        BIN,
        &["--replicaof", "127.0.0.1", &primary.port.to_string()],
    );
    let mut ours = middle.client();
    wait_synced(&mut theirs, &mut ours);
    let middle_port = middle.addr.port().to_string();
    let Some(last) = Primary::start(&["--replicaof", "127.0.0.1", &middle_port]) else {
        return;
    };
    let mut end = last.client();
    let writer = Writer::start(&primary, 100);
    writer.wait_rounds(20);
    writer.stop();
    settle(&mut theirs, &mut ours);
    wait_synced(&mut ours, &mut end);
    // The same history all along the chain.
    let replid = info(&mut theirs, "replication", "master_replid");
    assert_eq!(info(&mut ours, "replication", "master_replid"), replid);
    assert_eq!(info(&mut end, "replication", "master_replid"), replid);
    assert_eq!(
        info(&mut end, "replication", "slave_repl_offset"),
        info(&mut theirs, "replication", "master_repl_offset")
    );
    assert_same_data(&mut theirs, &mut ours);
    assert_same_data(&mut theirs, &mut end);
}

/// forkless as a replica of forkless: full sync from an epoch cut, the stream, a resume.
#[test]
fn forkless_replicates_forkless() {
    let primary = TestServer::start(BIN, &["--repl-diskless-sync-delay", "0"]);
    let mut theirs = primary.client();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..20 {
        write_round(&mut theirs, &mut rng);
    }
    let replica = TestServer::start(
        BIN,
        &["--replicaof", "127.0.0.1", &primary.addr.port().to_string()],
    );
    let mut ours = replica.client();
    wait_synced(&mut theirs, &mut ours);
    for _ in 0..20 {
        write_round(&mut theirs, &mut rng);
    }
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("master")
        .query(&mut ours)
        .unwrap();
    assert_eq!(killed, 1);
    for _ in 0..5 {
        write_round(&mut theirs, &mut rng);
    }
    settle(&mut theirs, &mut ours);
    assert_same_data(&mut theirs, &mut ours);
    let stats = info_section(&mut theirs, "stats");
    assert_eq!(stats.get("sync_full").map(String::as_str), Some("1"));
    assert_eq!(stats.get("sync_partial_ok").map(String::as_str), Some("1"));
}

// ---------------------------------------------------------------------------------------------
// Dual-channel sync (forkless primary, forkless replica): the replica reads the stream on a
// second connection while the RDB loads, so the writes wait in its memory, not the primary's.

/// The primary's output limit for replicas in these tests: small, so the classic sync overruns
/// it under writes.
const SMALL_REPLICA_LIMIT: &str = "replica 4mb 2mb 1";

/// A forkless primary with ~50 MB in 1000-byte strings `big:<i>`.
fn big_primary(extra: &[&str]) -> TestServer {
    let mut args = vec!["--repl-diskless-sync-delay", "0"];
    args.extend_from_slice(extra);
    let primary = TestServer::start(BIN, &args);
    let mut conn = primary.client();
    let value = vec![b'v'; 1000];
    for batch in 0..500 {
        let mut pipe = redis::pipe();
        for i in 0..100 {
            pipe.cmd("SET")
                .arg(format!("big:{}", batch * 100 + i))
                .arg(&value)
                .ignore();
        }
        let () = pipe.query(&mut conn).unwrap();
    }
    primary
}

/// Overwrites random `big:<i>` keys with 1000-byte values in pipelines of 100 until stopped.
struct Overwriter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Overwriter {
    fn start(primary: &TestServer, seed: u64) -> Overwriter {
        let stop = Arc::new(AtomicBool::new(false));
        let mut conn = primary.client();
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                while !stop.load(Ordering::Relaxed) {
                    let mut pipe = redis::pipe();
                    for _ in 0..100 {
                        let value: Vec<u8> = (0..1000).map(|_| rng.random::<u8>()).collect();
                        pipe.cmd("SET")
                            .arg(format!("big:{}", rng.random_range(0..50_000)))
                            .arg(value)
                            .ignore();
                    }
                    // The primary stops at the test's end, maybe before this thread does.
                    if pipe.query::<()>(&mut conn).is_err() {
                        return;
                    }
                }
            }
        });
        Overwriter {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Overwriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn stat(conn: &mut redis::Connection, section: &str, field: &str) -> u64 {
    info(conn, section, field).parse().unwrap_or(0)
}

#[test]
fn a_dual_channel_sync_completes_where_the_primary_buffer_overflows() {
    let primary = big_primary(&["--client-output-buffer-limit", SMALL_REPLICA_LIMIT]);
    let mut theirs = primary.client();
    let writer = Overwriter::start(&primary, 11);
    let port = primary.addr.port().to_string();

    // The classic sync: the writes wait on the primary, pass 4 MB, the replica is dropped
    // and asks again.
    let classic = TestServer::start(
        BIN,
        &[
            "--repl-dual-channel",
            "no",
            "--replicaof",
            "127.0.0.1",
            &port,
        ],
    );
    let mut classic_conn = classic.client();
    assert!(wait_until(SYNC_TIMEOUT, || {
        stat(&mut classic_conn, "replication", "master_sync_in_progress") == 1
    }));
    // While it receives and loads, a burst of writes (on top of the writer's) waits on the
    // primary for it, whatever the machine's speed.
    let value = vec![b'w'; 1000];
    for burst in 0..16 {
        if stat(&mut theirs, "stats", "sync_full") >= 2 {
            break;
        }
        let mut pipe = redis::pipe();
        for i in 0..1000 {
            pipe.cmd("SET")
                .arg(format!("big:{}", (burst * 1000 + i) % 50_000))
                .arg(&value)
                .ignore();
        }
        let () = pipe.query(&mut theirs).unwrap();
    }
    assert!(
        wait_until(SYNC_TIMEOUT, || stat(&mut theirs, "stats", "sync_full")
            >= 2),
        "the classic sync was never dropped"
    );
    assert_eq!(
        stat(
            &mut classic_conn,
            "replication",
            "replica_dual_channel_syncs"
        ),
        0
    );
    drop(classic_conn);
    drop(classic);
    assert!(wait_until(SYNC_TIMEOUT, || {
        stat(&mut theirs, "replication", "connected_slaves") == 0
    }));

    // The dual-channel sync under the same writes and the same limit completes at once.
    let full_before = stat(&mut theirs, "stats", "sync_full");
    let replica = TestServer::start(BIN, &["--replicaof", "127.0.0.1", &port]);
    let mut ours = replica.client();
    let mut most_pending = 0;
    assert!(
        wait_until(SYNC_TIMEOUT, || {
            most_pending = most_pending.max(stat(&mut theirs, "memory", "mem_clients_slaves"));
            stat(&mut ours, "replication", "replica_dual_channel_syncs") == 1
                && info(&mut ours, "replication", "master_link_status") == "up"
        }),
        "the dual-channel sync did not complete"
    );
    writer.stop();
    wait_synced(&mut theirs, &mut ours);
    assert_same_data(&mut theirs, &mut ours);
    assert_eq!(stat(&mut theirs, "stats", "sync_full"), full_before + 1);
    // The writes during the sync waited in the replica's memory.
    assert!(
        stat(
            &mut ours,
            "replication",
            "replica_buffered_stream_peak_bytes"
        ) > 0
    );
    assert_eq!(
        stat(&mut ours, "replication", "replica_buffered_stream_bytes"),
        0
    );
    assert!(most_pending < 4 << 20, "primary held {most_pending} bytes");
    // One replica link remains (the RDB connection closed).
    assert!(wait_until(SYNC_TIMEOUT, || {
        stat(&mut theirs, "replication", "connected_slaves") == 1
    }));
}

/// A dual-channel replica reports `master_link_status:up` only once the stream it buffered
/// while the RDB loaded has been applied, as Redis reports its link up only after the load.
/// Guards the bug where the link was up (and `replica-serve-stale-data no` lifted) while the
/// buffered writes were still being applied: a client could read data older than the sync.
#[test]
fn a_dual_channel_replica_is_up_only_once_its_buffered_stream_is_applied() {
    let primary = TestServer::start(BIN, &["--repl-diskless-sync-delay", "0"]);
    let mut theirs = primary.client();
    forkless_tests::populate(&mut theirs, "seed:", 2000, 10);
    let port = primary.addr.port().to_string();
    // 2 ms per key: the load takes about 4 s, long enough to buffer the writes below.
    let replica = TestServer::start(
        BIN,
        &[
            "--repl-dual-channel",
            "yes",
            "--key-load-delay",
            "2000",
            "--replicaof",
            "127.0.0.1",
            &port,
        ],
    );
    let mut ours = replica.client();
    assert!(wait_until(SYNC_TIMEOUT, || {
        stat(&mut ours, "replication", "master_sync_in_progress") == 1
    }));
    for batch in 0..100 {
        let mut pipe = redis::pipe();
        for i in 0..1000 {
            pipe.cmd("INCR")
                .arg(format!("ctr:{}", (batch * 1000 + i) % 100))
                .ignore();
        }
        let () = pipe.query(&mut theirs).unwrap();
    }
    let written: u64 = info(&mut theirs, "replication", "master_repl_offset")
        .parse()
        .unwrap();
    assert_ne!(
        info(&mut ours, "replication", "master_link_status"),
        "up",
        "the load ended before the writes: the test proves nothing (make the load longer)"
    );
    let mut seen_up = false;
    assert!(wait_until(SYNC_TIMEOUT, || {
        let fields = info_section(&mut ours, "replication");
        if fields.get("master_link_status").map(String::as_str) != Some("up") {
            return false;
        }
        let applied: u64 = fields["slave_repl_offset"].parse().unwrap();
        assert!(
            applied >= written,
            "the link is up at offset {applied}, before the buffered stream up to {written}"
        );
        seen_up = true;
        true
    }));
    assert!(seen_up);
    assert_eq!(
        stat(&mut ours, "replication", "replica_dual_channel_syncs"),
        1
    );
    wait_synced(&mut theirs, &mut ours);
    assert_same_data(&mut theirs, &mut ours);
}

#[test]
fn a_dual_channel_sync_over_its_buffer_limit_fails_cleanly_and_retries() {
    let primary = big_primary(&[]);
    let mut theirs = primary.client();
    let writer = Overwriter::start(&primary, 12);
    let port = primary.addr.port().to_string();
    let replica = TestServer::start(
        BIN,
        &[
            "--repl-dual-channel-buffer-limit",
            "64kb",
            "--replicaof",
            "127.0.0.1",
            &port,
        ],
    );
    let mut ours = replica.client();
    // Each attempt passes the limit, drops both connections and starts over.
    assert!(
        wait_until(SYNC_TIMEOUT, || stat(&mut theirs, "stats", "sync_full")
            >= 2),
        "the sync over the limit was never retried"
    );
    assert_eq!(
        stat(&mut ours, "replication", "replica_dual_channel_syncs"),
        0
    );
    assert_eq!(info(&mut ours, "replication", "master_link_status"), "down");
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("repl-dual-channel-buffer-limit")
        .arg("0")
        .query(&mut ours)
        .unwrap();
    assert!(wait_until(SYNC_TIMEOUT, || {
        stat(&mut ours, "replication", "replica_dual_channel_syncs") == 1
    }));
    writer.stop();
    wait_synced(&mut theirs, &mut ours);
    assert_same_data(&mut theirs, &mut ours);
    // The primary freed what the failed attempts pinned: one link left.
    assert!(wait_until(SYNC_TIMEOUT, || {
        stat(&mut theirs, "replication", "connected_slaves") == 1
    }));
}

#[test]
fn a_dual_channel_sync_whose_stream_connection_drops_starts_over() {
    let primary = big_primary(&[]);
    let mut theirs = primary.client();
    let writer = Overwriter::start(&primary, 13);
    let port = primary.addr.port().to_string();
    let replica = TestServer::start(BIN, &["--replicaof", "127.0.0.1", &port]);
    let mut ours = replica.client();
    // Both connections up: the RDB one (older) and the stream one.
    let mut ids: Vec<u64> = Vec::new();
    assert!(wait_until(SYNC_TIMEOUT, || {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("replica")
            .query(&mut theirs)
            .unwrap();
        ids = list
            .lines()
            .filter_map(|line| line.strip_prefix("id=")?.split(' ').next()?.parse().ok())
            .collect();
        ids.len() == 2
    }));
    let stream_id = ids.iter().max().copied().unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(stream_id)
        .query(&mut theirs)
        .unwrap();
    assert_eq!(killed, 1);
    // The replica drops the RDB connection too and starts over; the second attempt completes.
    assert!(wait_until(SYNC_TIMEOUT, || {
        stat(&mut ours, "replication", "replica_dual_channel_syncs") == 1
    }));
    assert!(stat(&mut theirs, "stats", "sync_full") >= 2);
    writer.stop();
    wait_synced(&mut theirs, &mut ours);
    assert_same_data(&mut theirs, &mut ours);
    assert!(wait_until(SYNC_TIMEOUT, || {
        stat(&mut theirs, "replication", "connected_slaves") == 1
    }));
}
