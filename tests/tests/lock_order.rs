//! Regression test for a lock-order inversion between BGSAVE, INFO and CONFIG SET.
//!
//! `persistence::begin` (and fork mode's BGSAVE) took the persistence state lock and then the
//! configuration lock, while INFO's persistence section took the configuration lock and then
//! the state lock. The configuration is a `std::sync::RwLock`, which lets no new reader in
//! while a writer waits, so with a CONFIG SET queued between them the three threads waited on
//! one another for ever and every later INFO, CONFIG or BGSAVE hung. The server now takes its
//! locks in the one order docs/ARCHITECTURE.md states; this test runs the three commands and
//! writes from several connections at once and checks that every command keeps being answered.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use forkless_tests::TestServer;

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

/// How long the mixed load runs.
const LOAD_FOR: Duration = Duration::from_secs(4);

/// A command that takes longer than this to be answered counts as a hang.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection whose every reply must come within [`REPLY_TIMEOUT`].
fn connect(server: &TestServer) -> redis::Connection {
    let conn = server.client();
    conn.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    conn.set_write_timeout(Some(REPLY_TIMEOUT)).unwrap();
    conn
}

/// Runs `step` on `conn` until `stop` is set, counting the answered commands in `answered`.
/// Returns the first transport error (a timeout is a hang), if any. The connection is made
/// before any loop starts: the client's own handshake has no timeout.
fn spawn_loop(
    mut conn: redis::Connection,
    stop: &Arc<AtomicBool>,
    answered: &Arc<AtomicU64>,
    mut step: impl FnMut(&mut redis::Connection, u64) -> redis::RedisResult<()> + Send + 'static,
) -> std::thread::JoinHandle<Result<(), String>> {
    let stop = Arc::clone(stop);
    let answered = Arc::clone(answered);
    std::thread::spawn(move || {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if let Err(err) = step(&mut conn, i) {
                // A server error reply (e.g. "already in progress") is an answer; a transport
                // error or a timeout is not.
                if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() {
                    return Err(format!("command {i} not answered: {err}"));
                }
            }
            answered.fetch_add(1, Ordering::Relaxed);
            i += 1;
        }
        Ok(())
    })
}

#[test]
fn bgsave_info_config_set_and_writes_together_never_hang() {
    // Many databases with a few keys each make every cut take many shard locks, which widens
    // the window in which BGSAVE holds the state lock. Eight worker threads let three commands
    // block at once however few cores the machine has (with one worker per core on a
    // two-core machine the inversion cannot close its cycle).
    let server = TestServer::start(
        BIN,
        &["--save", "", "--databases", "256", "--worker-threads", "8"],
    );
    let mut setup = connect(&server);
    for db in 0..256 {
        let () = redis::cmd("SELECT").arg(db).query(&mut setup).unwrap();
        for i in 0..10 {
            let () = redis::cmd("SET")
                .arg(format!("k{i}"))
                .arg("v")
                .query(&mut setup)
                .unwrap();
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let counts: Vec<Arc<AtomicU64>> = (0..4).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let [bgsaves, infos, config_sets, writes] = [0, 1, 2, 3].map(|i| Arc::clone(&counts[i]));
    let mut conns: Vec<redis::Connection> = (0..12).map(|_| connect(&server)).collect();
    let mut conn = move || conns.pop().unwrap();
    let mut after = connect(&server);
    let mut handles = Vec::new();
    for _ in 0..3 {
        // Epoch and fork-mode saves take the locks on different paths: alternate them.
        handles.push(spawn_loop(conn(), &stop, &bgsaves, |conn, i| {
            let kind = if i % 2 == 0 { "EPOCH" } else { "FORK" };
            redis::cmd("BGSAVE")
                .arg(kind)
                .query::<redis::Value>(conn)
                .map(drop)
        }));
        handles.push(spawn_loop(conn(), &stop, &infos, |conn, _| {
            redis::cmd("INFO")
                .arg("persistence")
                .query::<String>(conn)
                .map(drop)
        }));
        handles.push(spawn_loop(conn(), &stop, &config_sets, |conn, i| {
            let value = if i % 2 == 0 { "yes" } else { "no" };
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("rdbcompression")
                .arg(value)
                .query::<()>(conn)
        }));
        handles.push(spawn_loop(conn(), &stop, &writes, |conn, i| {
            redis::cmd("SET")
                .arg(format!("w{}", i % 1000))
                .arg(i)
                .query::<()>(conn)
        }));
    }
    let started = Instant::now();
    while started.elapsed() < LOAD_FOR && handles.iter().all(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = handles
        .into_iter()
        .filter_map(|handle| handle.join().unwrap().err())
        .collect();
    assert!(failures.is_empty(), "commands hung: {failures:?}");
    for (name, count) in ["BGSAVE", "INFO", "CONFIG SET", "SET"].iter().zip(&counts) {
        assert!(
            count.load(Ordering::Relaxed) > 0,
            "no {name} was answered during the load"
        );
    }

    // Afterwards, each of the commands involved is still answered on another connection.
    let text: String = redis::cmd("INFO")
        .arg("persistence")
        .query(&mut after)
        .unwrap();
    assert!(text.contains("rdb_bgsave_in_progress:"), "{text}");
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("rdbcompression")
        .arg("yes")
        .query(&mut after)
        .unwrap();
    let () = redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query(&mut after)
        .unwrap();
}
