//! FAILOVER, Redis 7.0's coordinated failover: a primary pauses writes, waits until its target
//! replica has acknowledged the whole stream, sends it `PSYNC <replid> <offset> FAILOVER` (the
//! target promotes itself and answers `+CONTINUE`) and becomes its replica. Tested with writes
//! flowing before and after (no acknowledged write lost, every server ends with the same
//! data, every resync partial), TIMEOUT's abort, FORCE, ABORT, the error replies, and both
//! directions with Debian's redis-server 7.0: forkless hands over to redis-server, and
//! redis-server hands over to forkless.
//!
//! A replica "that never catches up" is one stopped with SIGSTOP (by the PID of a process the
//! test started), as Redis's own `integration/failover` does.
//!
//! Without `redis-server` on PATH the interoperability tests print a loud skip line and pass,
//! unless FORKLESS_REQUIRE_REDIS=1.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use forkless_tests::replication::{SYNC_TIMEOUT, info, wait_synced};
use forkless_tests::resp::cmd;
use forkless_tests::{ChildGuard, TestServer, free_port, redis_tool, unique_dir, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

/// How long a failover may take (as long as a sync).
const TIMEOUT: Duration = SYNC_TIMEOUT;

fn connect(port: u16) -> redis::Connection {
    let url = format!("redis://127.0.0.1:{port}/");
    let mut conn = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            conn = redis::Client::open(url.as_str())
                .and_then(|client| client.get_connection())
                .ok();
            conn.is_some()
        }),
        "no connection to port {port}"
    );
    conn.unwrap()
}

/// A forkless server: diskless syncs start at once.
fn forkless() -> TestServer {
    TestServer::start(BIN, &["--repl-diskless-sync-delay", "0"])
}

/// Debian's redis-server on a free loopback port, persistence off.
fn redis_server() -> Option<(ChildGuard, u16)> {
    let binary = redis_tool("redis-server")?;
    let port = free_port();
    let dir = unique_dir("failover-redis");
    let child = Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
        .arg(&dir)
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--repl-diskless-sync-delay",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server");
    let guard = ChildGuard(child);
    let mut conn = connect(port);
    assert!(wait_until(Duration::from_secs(20), || {
        redis::cmd("PING").query::<String>(&mut conn).is_ok()
    }));
    Some((guard, port))
}

fn replicaof(conn: &mut redis::Connection, port: u16) {
    let _: String = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(port)
        .query(conn)
        .unwrap();
}

fn wait_failover_state(conn: &mut redis::Connection, state: &str) {
    let mut last = String::new();
    assert!(
        wait_until(TIMEOUT, || {
            last = info(conn, "replication", "master_failover_state");
            last == state
        }),
        "master_failover_state stayed {last}, expected {state}"
    );
}

fn role(conn: &mut redis::Connection) -> String {
    info(conn, "replication", "role")
}

/// Every string key with its value (the tests write strings only).
fn strings(conn: &mut redis::Connection) -> BTreeMap<String, String> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(conn).unwrap();
    keys.into_iter()
        .map(|key| {
            let value: String = redis::cmd("GET").arg(&key).query(conn).unwrap();
            (key, value)
        })
        .collect()
}

fn set_many(conn: &mut redis::Connection, prefix: &str, n: usize) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("SET").arg(format!("{prefix}:{i}")).arg(i).ignore();
    }
    let () = pipe.query(conn).unwrap();
}

/// SIGSTOP / SIGCONT to a process this test started.
fn signal(pid: u32, sig: &str) {
    assert!(pid > 0);
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

/// Keeps a stopped process going again when the test ends early, so its guard can end it.
struct Stopped(u32);

impl Stopped {
    fn stop(pid: u32) -> Stopped {
        signal(pid, "-STOP");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

/// A client writing `w:<i>` = i without pause, following the primary: on `-READONLY` it asks
/// ROLE where the primary is and goes on there. Returns the numbers whose `SET` got `+OK`.
struct Writer {
    stop: Arc<AtomicBool>,
    /// Writes acknowledged so far, and how many times the writer followed a new primary.
    acked: Arc<AtomicU64>,
    moved: Arc<AtomicU64>,
    thread: Option<JoinHandle<Vec<u64>>>,
}

impl Writer {
    fn start(port: u16) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let n_acked = Arc::new(AtomicU64::new(0));
        let moved = Arc::new(AtomicU64::new(0));
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            let n_acked = Arc::clone(&n_acked);
            let moved = Arc::clone(&moved);
            move || {
                let mut conn = connect(port);
                let mut acked = Vec::new();
                let mut next = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let result: redis::RedisResult<String> = redis::cmd("SET")
                        .arg(format!("w:{next}"))
                        .arg(next)
                        .query(&mut conn);
                    match result {
                        Ok(_) => {
                            acked.push(next);
                            n_acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(err) if err.code() == Some("READONLY") => {
                            let role: Vec<redis::Value> =
                                redis::cmd("ROLE").query(&mut conn).unwrap();
                            if let Some(redis::Value::Int(port)) = role.get(2) {
                                conn = connect(u16::try_from(*port).unwrap());
                                moved.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(err) => panic!("write w:{next} failed: {err}"),
                    }
                    next += 1;
                }
                acked
            }
        });
        Writer {
            stop,
            acked: n_acked,
            moved,
            thread: Some(thread),
        }
    }

    /// Waits until `n` more writes are acknowledged.
    fn wait_for_writes(&self, n: u64) {
        let from = self.acked.load(Ordering::Relaxed);
        assert!(
            wait_until(TIMEOUT, || self.acked.load(Ordering::Relaxed) >= from + n),
            "the writer stalled"
        );
    }

    /// Waits until the writer has moved to the new primary and got `n` writes through there.
    fn wait_moved_and_writing(&self, n: u64) {
        assert!(
            wait_until(TIMEOUT, || self.moved.load(Ordering::Relaxed) == 1),
            "the writer never saw READONLY"
        );
        self.wait_for_writes(n);
    }

    fn finish(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Every acknowledged write is on `conn` with its value.
fn assert_acked_present(conn: &mut redis::Connection, acked: &[u64]) {
    assert!(!acked.is_empty(), "the writer got no write through");
    let data = strings(conn);
    for i in acked {
        assert_eq!(
            data.get(&format!("w:{i}")).map(String::as_str),
            Some(i.to_string().as_str()),
            "acknowledged write w:{i} lost"
        );
    }
}

fn stat(conn: &mut redis::Connection, field: &str) -> u64 {
    info(conn, "stats", field).parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// forkless to forkless.

#[test]
fn a_failover_hands_over_under_writes_and_loses_no_acknowledged_write() {
    let node_a = forkless();
    let node_b = forkless();
    let node_c = forkless();
    let (mut a, mut b, mut c) = (node_a.client(), node_b.client(), node_c.client());
    set_many(&mut a, "before", 500);
    replicaof(&mut b, node_a.port());
    replicaof(&mut c, node_a.port());
    wait_synced(&mut a, &mut b);
    wait_synced(&mut a, &mut c);
    let full_b = stat(&mut b, "sync_full");
    let partial_b = stat(&mut b, "sync_partial_ok");

    let writer = Writer::start(node_a.port());
    writer.wait_for_writes(2000);
    let reply: String = redis::cmd("FAILOVER")
        .arg("TO")
        .arg("127.0.0.1")
        .arg(node_b.port())
        .query(&mut a)
        .unwrap();
    assert_eq!(reply, "OK");
    wait_failover_state(&mut a, "no-failover");
    assert_eq!(role(&mut a), "slave");
    assert_eq!(role(&mut b), "master");
    assert_eq!(
        info(&mut a, "replication", "master_port"),
        node_b.port().to_string()
    );
    // The writer goes on against B, the new primary.
    writer.wait_moved_and_writing(1000);
    let acked = writer.finish();

    replicaof(&mut c, node_b.port());
    wait_synced(&mut b, &mut a);
    wait_synced(&mut b, &mut c);
    assert_acked_present(&mut b, &acked);
    let data = strings(&mut b);
    assert_eq!(
        data.len(),
        500 + data.keys().filter(|k| k.starts_with("w:")).count()
    );
    assert_eq!(strings(&mut a), data);
    assert_eq!(strings(&mut c), data);
    // A and C both continued with B's history: two partial resyncs, no full one.
    assert_eq!(stat(&mut b, "sync_partial_ok"), partial_b + 2);
    assert_eq!(stat(&mut b, "sync_full"), full_b);
    let log = node_a.drain_log().join("\n");
    assert!(log.contains("is synced, failing over."), "{log}");
}

#[test]
fn failover_to_any_replica_picks_the_one_that_caught_up() {
    let node_a = forkless();
    let node_b = forkless();
    let node_c = forkless();
    let (mut a, mut b, mut c) = (node_a.client(), node_b.client(), node_c.client());
    replicaof(&mut b, node_a.port());
    replicaof(&mut c, node_a.port());
    wait_synced(&mut a, &mut b);
    wait_synced(&mut a, &mut c);
    // B never acknowledges what comes next: C is the one.
    let stopped = Stopped::stop(node_b.pid());
    set_many(&mut a, "k", 100);
    let reply: String = redis::cmd("FAILOVER").query(&mut a).unwrap();
    assert_eq!(reply, "OK");
    wait_failover_state(&mut a, "no-failover");
    drop(stopped);
    assert_eq!(role(&mut c), "master");
    assert_eq!(role(&mut a), "slave");
    assert_eq!(
        info(&mut a, "replication", "master_port"),
        node_c.port().to_string()
    );
    replicaof(&mut b, node_c.port());
    wait_synced(&mut c, &mut a);
    wait_synced(&mut c, &mut b);
    assert_eq!(strings(&mut c).len(), 100);
    assert_eq!(strings(&mut a), strings(&mut c));
    assert_eq!(strings(&mut b), strings(&mut c));
}

#[test]
fn failover_with_a_timeout_aborts_when_the_target_never_catches_up() {
    let node_a = forkless();
    let node_b = forkless();
    let (mut a, mut b) = (node_a.client(), node_b.client());
    replicaof(&mut b, node_a.port());
    wait_synced(&mut a, &mut b);
    let stopped = Stopped::stop(node_b.pid());
    let _: String = redis::cmd("SET").arg("case").arg(1).query(&mut a).unwrap();
    let reply: String = redis::cmd("FAILOVER")
        .arg("TO")
        .arg("127.0.0.1")
        .arg(node_b.port())
        .arg("TIMEOUT")
        .arg(500)
        .query(&mut a)
        .unwrap();
    assert_eq!(reply, "OK");
    assert_eq!(
        info(&mut a, "replication", "master_failover_state"),
        "waiting-for-sync"
    );
    // A write waits for the failover's end; after the abort it goes through.
    let writer = std::thread::spawn({
        let mut conn = node_a.client();
        move || {
            redis::cmd("SET")
                .arg("paused")
                .arg(1)
                .query::<String>(&mut conn)
        }
    });
    wait_failover_state(&mut a, "no-failover");
    assert_eq!(writer.join().unwrap().unwrap(), "OK");
    drop(stopped);
    assert_eq!(role(&mut a), "master");
    wait_synced(&mut a, &mut b);
    assert_eq!(strings(&mut a), strings(&mut b));
    let log = node_a.drain_log().join("\n");
    assert!(
        log.contains("aborted: Replica never caught up before timeout"),
        "{log}"
    );
}

#[test]
fn failover_abort_resumes_the_paused_writes() {
    let node_a = forkless();
    let node_b = forkless();
    let (mut a, mut b) = (node_a.client(), node_b.client());
    replicaof(&mut b, node_a.port());
    wait_synced(&mut a, &mut b);
    let stopped = Stopped::stop(node_b.pid());
    let _: String = redis::cmd("SET").arg("case").arg(2).query(&mut a).unwrap();
    let _: String = redis::cmd("FAILOVER")
        .arg("TO")
        .arg("127.0.0.1")
        .arg(node_b.port())
        .arg("TIMEOUT")
        .arg(60_000)
        .query(&mut a)
        .unwrap();
    assert_eq!(
        info(&mut a, "replication", "master_failover_state"),
        "waiting-for-sync"
    );
    // Reads are served; a write waits (counted as a blocked client).
    let value: String = redis::cmd("GET").arg("case").query(&mut a).unwrap();
    assert_eq!(value, "2");
    let writer = std::thread::spawn({
        let mut conn = node_a.client();
        move || {
            redis::cmd("SET")
                .arg("paused")
                .arg(1)
                .query::<String>(&mut conn)
        }
    });
    assert!(wait_until(TIMEOUT, || info(
        &mut a,
        "clients",
        "blocked_clients"
    ) == "1"));
    // CLIENT UNPAUSE does not end a failover's pause.
    let _: String = redis::cmd("CLIENT").arg("UNPAUSE").query(&mut a).unwrap();
    assert_eq!(info(&mut a, "clients", "blocked_clients"), "1");
    let reply: String = redis::cmd("FAILOVER").arg("ABORT").query(&mut a).unwrap();
    assert_eq!(reply, "OK");
    assert_eq!(
        info(&mut a, "replication", "master_failover_state"),
        "no-failover"
    );
    assert_eq!(writer.join().unwrap().unwrap(), "OK");
    drop(stopped);
    assert_eq!(role(&mut a), "master");
    wait_synced(&mut a, &mut b);
    assert_eq!(strings(&mut a), strings(&mut b));
    let log = node_a.drain_log().join("\n");
    assert!(log.contains("aborted: Failover manually aborted"), "{log}");
}

#[test]
fn failover_with_force_hands_over_after_the_timeout() {
    let node_a = forkless();
    let node_b = forkless();
    let (mut a, mut b) = (node_a.client(), node_b.client());
    replicaof(&mut b, node_a.port());
    wait_synced(&mut a, &mut b);
    let stopped = Stopped::stop(node_b.pid());
    let _: String = redis::cmd("SET").arg("case").arg(3).query(&mut a).unwrap();
    let _: String = redis::cmd("FAILOVER")
        .arg("TO")
        .arg("127.0.0.1")
        .arg(node_b.port())
        .arg("TIMEOUT")
        .arg(100)
        .arg("FORCE")
        .query(&mut a)
        .unwrap();
    // The timeout passes: A hands over anyway, and is already a replica while B is stopped.
    wait_failover_state(&mut a, "failover-in-progress");
    assert_eq!(role(&mut a), "slave");
    drop(stopped);
    wait_failover_state(&mut a, "no-failover");
    assert_eq!(role(&mut b), "master");
    assert_eq!(role(&mut a), "slave");
    wait_synced(&mut b, &mut a);
    assert_eq!(strings(&mut a), strings(&mut b));
    let log = node_a.drain_log().join("\n");
    assert!(log.contains("time out exceeded, failing over."), "{log}");
}

#[test]
fn failover_aborts_when_the_target_refuses_psync() {
    let node_a = forkless();
    let node_b = forkless();
    let (mut a, mut b) = (node_a.client(), node_b.client());
    replicaof(&mut b, node_a.port());
    wait_synced(&mut a, &mut b);
    let _: String = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("-psync")
        .query(&mut b)
        .unwrap();
    let _: String = redis::cmd("FAILOVER")
        .arg("TO")
        .arg("127.0.0.1")
        .arg(node_b.port())
        .query(&mut a)
        .unwrap();
    wait_failover_state(&mut a, "no-failover");
    let _: String = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("+psync")
        .query(&mut b)
        .unwrap();
    assert_eq!(role(&mut a), "master");
    assert_eq!(role(&mut b), "slave");
    let _: String = redis::cmd("SET").arg("after").arg(1).query(&mut a).unwrap();
    wait_synced(&mut a, &mut b);
    assert_eq!(strings(&mut a), strings(&mut b));
    let log = node_a.drain_log().join("\n");
    assert!(
        log.contains("aborted: Failover target rejected psync request"),
        "{log}"
    );
}

#[test]
fn failover_errors_as_redis() {
    let node_a = forkless();
    let node_b = forkless();
    let mut a = node_a.raw();
    let b_port = node_b.port().to_string();
    assert_eq!(
        cmd(&mut a, &format!("FAILOVER TO 127.0.0.1 {b_port}")),
        "-ERR FAILOVER requires connected replicas.\r\n"
    );
    assert_eq!(
        cmd(&mut a, "FAILOVER ABORT"),
        "-ERR No failover in progress.\r\n"
    );
    assert_eq!(
        cmd(
            &mut a,
            "PSYNC 0123456789012345678901234567890123456789 1 FAILOVER"
        ),
        "-ERR PSYNC FAILOVER can't be sent to a master.\r\n"
    );
    let mut b = node_b.client();
    let mut a_conn = node_a.client();
    replicaof(&mut b, node_a.port());
    wait_synced(&mut a_conn, &mut b);
    let cases = [
        (
            "FAILOVER TO invalidhost 1234",
            "-ERR FAILOVER target HOST and PORT is not a replica.\r\n",
        ),
        (
            "FAILOVER TO 127.0.0.1 invalidport",
            "-ERR value is not an integer or out of range\r\n",
        ),
        (
            "FAILOVER FORCE TIMEOUT 100",
            "-ERR FAILOVER with force option requires both a timeout and target HOST and IP.\r\n",
        ),
        (
            &format!("FAILOVER TO 127.0.0.1 {b_port} FORCE"),
            "-ERR FAILOVER with force option requires both a timeout and target HOST and IP.\r\n",
        ),
        (
            "FAILOVER TIMEOUT 0",
            "-ERR FAILOVER timeout must be greater than 0\r\n",
        ),
        (
            "FAILOVER TIMEOUT -5",
            "-ERR FAILOVER timeout must be greater than 0\r\n",
        ),
        (
            "FAILOVER TIMEOUT x",
            "-ERR value is not an integer or out of range\r\n",
        ),
        ("FAILOVER TO 127.0.0.1", "-ERR syntax error\r\n"),
        ("FAILOVER TIMEOUT 10 TIMEOUT 10", "-ERR syntax error\r\n"),
        ("FAILOVER FORCE FORCE", "-ERR syntax error\r\n"),
        ("FAILOVER ABORT TIMEOUT 10", "-ERR syntax error\r\n"),
        ("FAILOVER NOW", "-ERR syntax error\r\n"),
    ];
    for (command, expected) in cases {
        assert_eq!(cmd(&mut a, command), expected, "{command}");
    }
    let mut b_raw = node_b.raw();
    assert_eq!(
        cmd(&mut b_raw, &format!("FAILOVER TO 127.0.0.1 {b_port}")),
        "-ERR FAILOVER is not valid when server is a replica.\r\n"
    );
    assert_eq!(
        cmd(
            &mut b_raw,
            "PSYNC 0123456789012345678901234567890123456789 1 FAILOVER"
        ),
        "-ERR PSYNC FAILOVER replid must match my replid.\r\n"
    );
    // While a failover waits: a second one, REPLICAOF and syncs are refused.
    let stopped = Stopped::stop(node_b.pid());
    assert_eq!(
        cmd(
            &mut a,
            &format!("FAILOVER TO 127.0.0.1 {b_port} TIMEOUT 60000")
        ),
        "+OK\r\n"
    );
    assert_eq!(
        cmd(&mut a, "FAILOVER"),
        "-ERR FAILOVER already in progress.\r\n"
    );
    assert_eq!(
        cmd(&mut a, "REPLICAOF NO ONE"),
        "-ERR REPLICAOF not allowed while failing over.\r\n"
    );
    assert_eq!(
        cmd(&mut a, "PSYNC ? -1"),
        "-NOMASTERLINK Can't SYNC while failing over\r\n"
    );
    assert_eq!(cmd(&mut a, "FAILOVER ABORT"), "+OK\r\n");
    drop(stopped);
    assert_eq!(
        info(&mut a_conn, "replication", "master_failover_state"),
        "no-failover"
    );
}

// ---------------------------------------------------------------------------------------------
// With Debian's redis-server 7.0.

#[test]
fn forkless_hands_over_to_a_redis_replica() {
    let Some((_redis, redis_port)) = redis_server() else {
        return;
    };
    let node_a = forkless();
    let mut a = node_a.client();
    let mut r = connect(redis_port);
    set_many(&mut a, "before", 300);
    replicaof(&mut r, node_a.port());
    wait_synced(&mut a, &mut r);
    let writer = Writer::start(node_a.port());
    writer.wait_for_writes(1000);
    let _: String = redis::cmd("FAILOVER")
        .arg("TO")
        .arg("127.0.0.1")
        .arg(redis_port)
        .query(&mut a)
        .unwrap();
    wait_failover_state(&mut a, "no-failover");
    assert_eq!(role(&mut r), "master");
    assert_eq!(role(&mut a), "slave");
    writer.wait_moved_and_writing(500);
    let acked = writer.finish();
    wait_synced(&mut r, &mut a);
    assert_acked_present(&mut r, &acked);
    assert_eq!(strings(&mut a), strings(&mut r));
    assert_eq!(
        stat(&mut r, "sync_partial_ok"),
        1,
        "forkless continued partially"
    );
}

#[test]
fn a_redis_primary_hands_over_to_a_forkless_replica() {
    let Some((_redis, redis_port)) = redis_server() else {
        return;
    };
    let node_b = forkless();
    let mut b = node_b.client();
    let mut r = connect(redis_port);
    set_many(&mut r, "before", 300);
    replicaof(&mut b, redis_port);
    wait_synced(&mut r, &mut b);
    // redis-server puts a replica fed by a diskless sync online only once its cron sees the
    // save's child done (up to a tick after the replica loaded the data), and FAILOVER refuses
    // a target that is not online yet ("FAILOVER target replica is not online.").
    assert!(wait_until(SYNC_TIMEOUT, || {
        info(&mut r, "replication", "slave0").contains("state=online")
    }));
    let writer = Writer::start(redis_port);
    writer.wait_for_writes(1000);
    let _: String = redis::cmd("FAILOVER")
        .arg("TO")
        .arg("127.0.0.1")
        .arg(node_b.port())
        .query(&mut r)
        .unwrap();
    wait_failover_state(&mut r, "no-failover");
    assert_eq!(role(&mut b), "master");
    assert_eq!(role(&mut r), "slave");
    writer.wait_moved_and_writing(500);
    let acked = writer.finish();
    wait_synced(&mut b, &mut r);
    assert_acked_present(&mut b, &acked);
    assert_eq!(strings(&mut r), strings(&mut b));
    assert_eq!(
        stat(&mut b, "sync_partial_ok"),
        1,
        "redis-server continued partially"
    );
    assert_eq!(stat(&mut b, "sync_full"), 0);
}
