//! Redis Sentinel (Debian's `redis-sentinel` 7.0) keeping forkless highly available: three
//! sentinels monitor a forkless primary with two forkless replicas. The primary is killed
//! (SIGKILL, by PID); the sentinels agree it is down, one of them promotes a replica (MULTI,
//! SLAVEOF NO ONE, CONFIG REWRITE, CLIENT KILL TYPE normal / pubsub, EXEC) and repoints the other
//! (the same transaction with SLAVEOF host port), while a client that asks a sentinel for the
//! primary keeps writing; every write that `WAIT 1` acknowledged is on the new primary and on
//! the remaining replica. A restarted old primary is turned into a replica of the new one by
//! Sentinel and converges to its data.
//!
//! Sentinel also needs, and these tests rely on: INFO's `run_id` (stable per process, unique
//! across processes), INFO replication's `role`, `master_host` / `master_port`,
//! `master_link_status`, `slave_priority`, `slave_repl_offset` and the primary's
//! `slaveN:ip=,port=,state=,offset=,lag=` lines (the replicas are found from them); and
//! PUBLISH / SUBSCRIBE on `__sentinel__:hello` carried between sentinels by the monitored
//! servers (the sentinels find each other through it).
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use forkless_tests::{
    ChildGuard, TestDir, TestServer, free_port, info_section as info, redis_tool, wait_until,
};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

/// The name the sentinels monitor the primary under.
const MASTER_NAME: &str = "mymaster";

/// How long the sentinels may take to find every replica and each other, and to fail over.
const SENTINEL_DEADLINE: Duration = Duration::from_secs(45);

/// One `redis-sentinel` process with its generated config file and log in a private directory.
struct Sentinel {
    _process: ChildGuard,
    port: u16,
    dir: TestDir,
}

impl Sentinel {
    /// Writes a config monitoring `primary_port` (quorum 2, down after 3 s) and starts the
    /// sentinel on a free loopback port; waits until it answers PING.
    ///
    /// Not down after 1 s: a sentinel that learns of a new primary opens a fresh link to it
    /// with a ping pending from that moment, and reconnects at most once per second
    /// (`sentinel_ping_period`), so on a busy machine the new primary's first PONG can come
    /// later than 1 s; two sentinels then agree it is down and fail over a second time (seen
    /// here under load). Redis's own Sentinel suite uses 2 s.
    fn start(binary: &Path, primary_port: u16) -> Sentinel {
        let dir = TestDir::new("sentinel");
        let port = free_port();
        let config = dir.0.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\n\
                 bind 127.0.0.1\n\
                 daemonize no\n\
                 dir {dir}\n\
                 logfile {dir}/sentinel.log\n\
                 sentinel resolve-hostnames no\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 3000\n\
                 sentinel failover-timeout {MASTER_NAME} 5000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir = dir.0.display()
            ),
        )
        .unwrap();
        let child = Command::new(binary)
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-sentinel");
        let sentinel = Sentinel {
            _process: ChildGuard(child),
            port,
            dir,
        };
        assert!(
            wait_until(Duration::from_secs(20), || sentinel
                .try_connect()
                .is_some_and(|mut conn| redis::cmd("PING")
                    .query::<String>(&mut conn)
                    .is_ok())),
            "redis-sentinel did not start on port {port}: {}",
            sentinel.log()
        );
        // A sentinel whose timer stalls for 2 s (a busy machine) enters TILT and takes no
        // action for `tilt-period`, 30 s by default: 5 s, as Redis's own Sentinel suite sets.
        let mut conn = sentinel.try_connect().unwrap();
        let () = redis::cmd("SENTINEL")
            .arg("DEBUG")
            .arg("tilt-period")
            .arg(5000)
            .query(&mut conn)
            .unwrap();
        sentinel
    }

    fn try_connect(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).ok()?;
        let conn = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        Some(conn)
    }

    /// `SENTINEL <subcommand> mymaster`, each instance's flat field list as a map.
    fn instances(&self, subcommand: &str) -> Vec<HashMap<String, String>> {
        let Some(mut conn) = self.try_connect() else {
            return Vec::new();
        };
        let rows: Vec<Vec<String>> = redis::cmd("SENTINEL")
            .arg(subcommand)
            .arg(MASTER_NAME)
            .query(&mut conn)
            .unwrap_or_default();
        rows.into_iter()
            .map(|fields| {
                fields
                    .chunks(2)
                    .filter_map(|pair| Some((pair.first()?.clone(), pair.get(1)?.clone())))
                    .collect()
            })
            .collect()
    }

    /// The primary this sentinel names (`SENTINEL get-master-addr-by-name`), as a port.
    fn primary_port(&self) -> Option<u16> {
        primary_port_from(self.port)
    }

    /// Whether this sentinel sees both replicas healthy (flags exactly `slave`, link to the
    /// primary up) and the two other sentinels.
    fn sees_everyone(&self, replica_ports: &[u16]) -> bool {
        let replicas = self.instances("replicas");
        let healthy = replica_ports.iter().all(|port| {
            replicas.iter().any(|replica| {
                replica.get("port") == Some(&port.to_string())
                    && replica.get("flags").map(String::as_str) == Some("slave")
                    && replica.get("master-link-status").map(String::as_str) == Some("ok")
            })
        });
        healthy && self.instances("sentinels").len() == 2
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("sentinel.log")).unwrap_or_default()
    }
}

/// Asks the sentinel on `sentinel_port` for the primary's address; None when it cannot answer.
fn primary_port_from(sentinel_port: u16) -> Option<u16> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{sentinel_port}/")).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(MASTER_NAME)
        .query(&mut conn)
        .ok()?;
    let (host, port) = addr?;
    assert_eq!(host, "127.0.0.1", "Sentinel names a non-loopback primary");
    Some(port)
}

/// A forkless primary, two forkless replicas of it, and three sentinels that see them all.
struct Cluster {
    primary: TestServer,
    /// The primary's directory (it outlives the process, for a restart on the same files).
    primary_dir: TestDir,
    replicas: Vec<TestServer>,
    sentinels: Vec<Sentinel>,
}

impl Cluster {
    /// Starts the servers, waits until both replicas are online, then starts the sentinels and
    /// waits until each one sees both replicas and the other sentinels. None when
    /// `redis-sentinel` is not installed (and FORKLESS_REQUIRE_REDIS is not set).
    fn start() -> Option<Cluster> {
        let sentinel_binary = redis_tool("redis-sentinel")?;
        let primary_dir = TestDir::new("sentinel-primary");
        let primary = TestServer::start_in(
            BIN,
            &primary_dir.0,
            &["--save", "", "--repl-diskless-sync-delay", "0"],
            &[],
        );
        let primary_port = primary.port().to_string();
        let replicas: Vec<TestServer> = (0..2)
            .map(|_| {
                TestServer::start(
                    BIN,
                    &[
                        "--save",
                        "",
                        "--repl-diskless-sync-delay",
                        "0",
                        "--replicaof",
                        "127.0.0.1",
                        &primary_port,
                    ],
                )
            })
            .collect();
        let mut conn = primary.client();
        assert!(
            wait_until(SENTINEL_DEADLINE, || {
                let replication = info(&mut conn, "replication");
                (0..2).all(|n| {
                    replication
                        .get(&format!("slave{n}"))
                        .is_some_and(|line| line.contains("state=online"))
                })
            }),
            "the replicas did not come online: {:?}",
            info(&mut conn, "replication")
        );
        let sentinels: Vec<Sentinel> = (0..3)
            .map(|_| Sentinel::start(&sentinel_binary, primary.port()))
            .collect();
        let replica_ports: Vec<u16> = replicas.iter().map(TestServer::port).collect();
        for sentinel in &sentinels {
            assert!(
                wait_until(SENTINEL_DEADLINE, || sentinel.sees_everyone(&replica_ports)),
                "sentinel {} does not see both replicas and two sentinels: replicas {:?}, \
                 sentinels {:?}\n{}",
                sentinel.port,
                sentinel.instances("replicas"),
                sentinel.instances("sentinels"),
                sentinel.log()
            );
        }
        Some(Cluster {
            primary,
            primary_dir,
            replicas,
            sentinels,
        })
    }

    /// Every sentinel's log and the replicas' log lines not read yet, for a failure message.
    fn logs(&self) -> String {
        let sentinels: String = self
            .sentinels
            .iter()
            .map(|sentinel| format!("--- sentinel {}\n{}", sentinel.port, sentinel.log()))
            .collect();
        let replicas: String = self
            .replicas
            .iter()
            .map(|replica| {
                format!(
                    "--- forkless {}\n{}\n",
                    replica.port(),
                    replica.drain_log().join("\n")
                )
            })
            .collect();
        sentinels + &replicas
    }

    /// Kills the primary (SIGKILL by its PID; the process is reaped) and waits until every
    /// sentinel names one of the replicas as the primary and that replica says it is a
    /// primary. Returns (the new primary's index in `replicas`, the old primary's port).
    fn kill_primary_and_wait_for_failover(&mut self) -> (usize, u16) {
        let old_port = self.primary.port();
        let pid = self.primary.pid().to_string();
        let killed = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
        assert!(killed.success(), "kill -KILL {pid} failed");
        self.primary.wait_exit();
        let mut promoted = None;
        let failed_over = wait_until(SENTINEL_DEADLINE, || {
            let named: Vec<Option<u16>> =
                self.sentinels.iter().map(Sentinel::primary_port).collect();
            let Some(Some(port)) = named.first().copied() else {
                return false;
            };
            if port == old_port || named.iter().any(|other| *other != Some(port)) {
                return false;
            }
            let Some(index) = self.replicas.iter().position(|r| r.port() == port) else {
                return false;
            };
            promoted = Some(index);
            try_info(port, "replication").is_some_and(|replication| {
                replication.get("role").map(String::as_str) == Some("master")
            })
        });
        assert!(failed_over, "Sentinel did not fail over\n{}", self.logs());
        (promoted.unwrap(), old_port)
    }
}

/// INFO `section` of the server on `port` over a fresh connection; None when it does not answer.
/// Sentinel's reconfigurations end with CLIENT KILL TYPE normal, which closes every ordinary
/// connection, so the polls below connect anew each time.
fn try_info(port: u16, section: &str) -> Option<HashMap<String, String>> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let text: String = redis::cmd("INFO").arg(section).query(&mut conn).ok()?;
    Some(
        text.lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// Waits until the server on `replica_port` follows the primary on `primary_port` with its
/// link up and its offset equal to the primary's; `logs` (the sentinels') go in the failure.
fn wait_replica_in_sync(primary_port: u16, replica_port: u16, logs: impl Fn() -> String) {
    let synced = wait_until(SENTINEL_DEADLINE, || {
        let (Some(replication), Some(primary)) = (
            try_info(replica_port, "replication"),
            try_info(primary_port, "replication"),
        ) else {
            return false;
        };
        replication.get("role").map(String::as_str) == Some("slave")
            && replication.get("master_port") == Some(&primary_port.to_string())
            && replication.get("master_link_status").map(String::as_str) == Some("up")
            && replication.get("slave_repl_offset") == primary.get("master_repl_offset")
    });
    assert!(
        synced,
        "the replica on port {replica_port} did not follow port {primary_port}: {:?}, \
         primary {:?}\n{}",
        try_info(replica_port, "replication"),
        try_info(primary_port, "replication"),
        logs()
    );
}

/// The writes a client made through Sentinel: which keys `WAIT 1` acknowledged, and on which
/// primary.
#[derive(Default)]
struct Acknowledged {
    /// (key index, the port of the primary that acknowledged it), in write order.
    keys: Vec<(u64, u16)>,
    /// Every primary the writer connected to, in order.
    primaries: Vec<u16>,
}

fn key(index: u64) -> String {
    format!("key:{index}")
}

fn value(index: u64) -> String {
    format!("value-{index}")
}

/// A client as Sentinel's client guidelines describe it: it asks a sentinel (the first that
/// answers) for the primary, connects, checks with ROLE that the server is a primary, then
/// writes `key:i` and runs `WAIT 1 500` after each write, recording what was acknowledged. Any
/// error (the primary died, a server that was demoted, a dropped connection) sends it back to
/// Sentinel. Stops when `stop` is set.
fn start_writer(
    sentinel_ports: Vec<u16>,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Acknowledged>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut next = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let Some(port) = sentinel_ports
                .iter()
                .find_map(|&port| primary_port_from(port))
            else {
                // No sentinel answered: poll again (there is no event to wait on).
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let Some(mut conn) = connect_to_primary(port) else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            acknowledged.lock().unwrap().primaries.push(port);
            while !stop.load(Ordering::SeqCst) {
                let written: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(key(next))
                    .arg(value(next))
                    .query(&mut conn);
                if written.is_err() {
                    break;
                }
                let index = next;
                next += 1;
                match redis::cmd("WAIT").arg(1).arg(500).query::<i64>(&mut conn) {
                    Ok(n) if n >= 1 => acknowledged.lock().unwrap().keys.push((index, port)),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
    })
}

/// Connects to `port` and returns the connection if and only if ROLE says it is a primary.
fn connect_to_primary(port: u16) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut conn).ok()?;
    match role.first() {
        Some(redis::Value::BulkString(name)) if name == b"master" => Some(conn),
        _ => None,
    }
}

/// Asserts that every acknowledged key holds its value on the server behind `conn`.
fn assert_has_every_key(conn: &mut redis::Connection, keys: &[u64], what: &str) {
    for chunk in keys.chunks(500) {
        let names: Vec<String> = chunk.iter().map(|&index| key(index)).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&names).query(conn).unwrap();
        for (&index, got) in chunk.iter().zip(values) {
            assert_eq!(
                got,
                Some(value(index)),
                "{what} lost {} that WAIT 1 acknowledged",
                key(index)
            );
        }
    }
}

#[test]
fn sentinel_fails_over_a_forkless_primary_without_losing_acknowledged_writes() {
    let Some(mut cluster) = Cluster::start() else {
        return;
    };

    // INFO's run_id: Sentinel detects a restart when it changes, so it is stable per process
    // and differs between processes.
    let run_ids: Vec<String> = std::iter::once(&cluster.primary)
        .chain(&cluster.replicas)
        .map(|server| {
            let mut conn = server.client();
            let first = info(&mut conn, "server").remove("run_id").unwrap();
            let second = info(&mut conn, "server").remove("run_id").unwrap();
            assert_eq!(first, second, "run_id changed between two INFO calls");
            assert_eq!(first.len(), 40, "run_id is 40 hex digits: {first}");
            first
        })
        .collect();
    assert!(
        run_ids[0] != run_ids[1] && run_ids[1] != run_ids[2] && run_ids[0] != run_ids[2],
        "run_id is not unique per process: {run_ids:?}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let sentinel_ports: Vec<u16> = cluster.sentinels.iter().map(|s| s.port).collect();
    let writer = start_writer(sentinel_ports, Arc::clone(&stop), Arc::clone(&acknowledged));
    let old_port = cluster.primary.port();
    let acked_on = |port: u16| {
        acknowledged
            .lock()
            .unwrap()
            .keys
            .iter()
            .filter(|(_, on)| *on == port)
            .count()
    };
    assert!(
        wait_until(SENTINEL_DEADLINE, || acked_on(old_port) >= 200),
        "the writer got no acknowledged writes from the first primary"
    );

    let (promoted, _) = cluster.kill_primary_and_wait_for_failover();
    let new_port = cluster.replicas[promoted].port();
    // The writer goes on through Sentinel: it reaches the new primary and WAIT 1 is
    // acknowledged there once the other replica follows it.
    let started = Instant::now();
    assert!(
        wait_until(SENTINEL_DEADLINE, || acked_on(new_port) >= 200),
        "the writer got no acknowledged writes from the new primary on port {new_port} \
         ({:?} after the failover): {:?}; the other replica: {:?}\n{}",
        started.elapsed(),
        try_info(new_port, "replication"),
        try_info(cluster.replicas[1 - promoted].port(), "replication"),
        cluster.logs()
    );
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();

    let acknowledged = acknowledged.lock().unwrap();
    assert_eq!(
        acknowledged.primaries.first(),
        Some(&old_port),
        "the writer started elsewhere than the first primary"
    );
    assert!(
        acknowledged.primaries.contains(&new_port),
        "the writer never reached the new primary: {:?}",
        acknowledged.primaries
    );
    let keys: Vec<u64> = acknowledged.keys.iter().map(|(index, _)| *index).collect();

    let other_port = cluster.replicas[1 - promoted].port();
    // Sentinel repointed the other replica at the new primary.
    wait_replica_in_sync(new_port, other_port, || cluster.logs());
    let mut new_primary = cluster.replicas[promoted].client();
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut new_primary).unwrap();
    assert_eq!(
        role.first(),
        Some(&redis::Value::BulkString(b"master".to_vec()))
    );
    assert_has_every_key(&mut new_primary, &keys, "the new primary");
    assert_has_every_key(
        &mut cluster.replicas[1 - promoted].client(),
        &keys,
        "the remaining replica",
    );

    // The promotion kept the old history (PSYNC2), so the other replica may continue.
    let replication = info(&mut new_primary, "replication");
    assert_ne!(
        replication.get("master_replid2").map(String::as_str),
        Some("0000000000000000000000000000000000000000"),
        "the promoted replica dropped the old replication ID: {replication:?}"
    );
}

#[test]
fn sentinel_turns_a_restarted_old_primary_into_a_replica_of_the_new_one() {
    let Some(mut cluster) = Cluster::start() else {
        return;
    };
    let mut old = cluster.primary.client();
    forkless_tests::populate(&mut old, "before:", 300, 100);
    // A dump the restarted old primary loads: its data from before the failover.
    let () = redis::cmd("SAVE").query(&mut old).unwrap();
    let acked: i64 = redis::cmd("WAIT").arg(2).arg(5000).query(&mut old).unwrap();
    assert_eq!(acked, 2);
    drop(old);

    let (promoted, old_port) = cluster.kill_primary_and_wait_for_failover();
    let new_port = cluster.replicas[promoted].port();
    // Both replicas had the whole stream when the primary died (WAIT 2), so the one Sentinel
    // repointed continues from the promoted one with a partial resynchronization (PSYNC2).
    wait_replica_in_sync(new_port, cluster.replicas[1 - promoted].port(), || {
        cluster.logs()
    });
    let mut new_primary = cluster.replicas[promoted].client();
    assert_eq!(
        info(&mut new_primary, "stats")
            .get("sync_partial_ok")
            .map(String::as_str),
        Some("1"),
        "the other replica did not resume with a partial resynchronization\n{}",
        cluster.logs()
    );
    forkless_tests::populate(&mut new_primary, "after:", 300, 100);

    // The old primary comes back on its port and files, believing it is a primary.
    let restarted = TestServer::start_in(
        BIN,
        &cluster.primary_dir.0,
        &[
            "--port",
            &old_port.to_string(),
            "--save",
            "",
            "--repl-diskless-sync-delay",
            "0",
        ],
        &[],
    );
    assert_eq!(
        redis::cmd("DBSIZE")
            .query::<i64>(&mut restarted.client())
            .unwrap(),
        300,
        "the old primary did not load its dump"
    );
    // Sentinel sends it SLAVEOF the new primary (+convert-to-slave, with CLIENT KILL TYPE
    // normal, so connections made before are closed) and it syncs.
    wait_replica_in_sync(new_port, old_port, || cluster.logs());
    let mut new_primary = cluster.replicas[promoted].client();
    let mut restarted_conn = restarted.client();
    let size: i64 = redis::cmd("DBSIZE").query(&mut restarted_conn).unwrap();
    assert_eq!(size, 600);
    for prefix in ["before:", "after:"] {
        for index in (0..300).step_by(37) {
            let name = format!("{prefix}{index}");
            let theirs: Vec<u8> = redis::cmd("GET")
                .arg(&name)
                .query(&mut new_primary)
                .unwrap();
            let ours: Vec<u8> = redis::cmd("GET")
                .arg(&name)
                .query(&mut restarted_conn)
                .unwrap();
            assert_eq!(ours, theirs, "{name} differs");
        }
    }
    let log = cluster.logs();
    assert!(
        log.contains(&format!("+convert-to-slave slave 127.0.0.1:{old_port}")),
        "no sentinel converted the old primary\n{log}"
    );
    // Both remaining servers follow the new primary.
    wait_replica_in_sync(new_port, cluster.replicas[1 - promoted].port(), || {
        cluster.logs()
    });
    let replicas = info(&mut new_primary, "replication");
    assert_eq!(
        replicas.get("connected_slaves").map(String::as_str),
        Some("2")
    );
}

/// The transactions Sentinel sends to promote a replica and to repoint one, as raw bytes;
/// returns the replies to `CLIENT SETNAME` through `EXEC`, then what a bystander normal client
/// and a subscriber read afterwards (both were killed: the connection is closed).
fn sentinel_transaction(addr: std::net::SocketAddr, slaveof: &[&[u8]]) -> (Vec<u8>, bool, bool) {
    use std::io::Read;
    let mut bystander = forkless_tests::RawConn::connect(addr);
    assert_eq!(bystander.call(&[b"PING"]), b"+PONG\r\n");
    let mut subscriber = forkless_tests::RawConn::connect(addr);
    subscriber.call(&[b"SUBSCRIBE", b"__sentinel__:hello"]);
    let mut sentinel = forkless_tests::RawConn::connect(addr);
    let mut replies = sentinel.call(&[b"CLIENT", b"SETNAME", b"sentinel-0123abcd-cmd"]);
    replies.extend(sentinel.call(&[b"MULTI"]));
    let mut slaveof_argv: Vec<&[u8]> = vec![b"SLAVEOF"];
    slaveof_argv.extend_from_slice(slaveof);
    for command in [
        &slaveof_argv[..],
        &[b"CONFIG", b"REWRITE"],
        &[b"CLIENT", b"KILL", b"TYPE", b"normal"],
        &[b"CLIENT", b"KILL", b"TYPE", b"pubsub"],
    ] {
        replies.extend(sentinel.call(command));
    }
    replies.extend(sentinel.call(&[b"EXEC"]));
    // The sentinel's own connection survives (CLIENT KILL skips the caller by default).
    assert_eq!(sentinel.call(&[b"PING"]), b"+PONG\r\n");
    let closed = |conn: &mut forkless_tests::RawConn| {
        let mut byte = [0u8; 1];
        match conn.stream().read(&mut byte) {
            Ok(n) => n == 0,
            Err(err) => err.kind() == std::io::ErrorKind::ConnectionReset,
        }
    };
    (replies, closed(&mut bystander), closed(&mut subscriber))
}

/// Sentinel's promotion (MULTI, SLAVEOF NO ONE, CONFIG REWRITE, CLIENT KILL TYPE normal and
/// pubsub, EXEC) and repointing (the same with SLAVEOF host port) get the replies redis-server
/// 7.0 gives, byte for byte, on a server started without a config file: CONFIG REWRITE fails
/// inside EXEC with Redis's error, which Sentinel ignores, and the other commands take effect.
/// Needs no redis-sentinel; with redis-server installed the same expectations are checked
/// against it.
#[test]
fn sentinels_transactions_reply_as_redis() {
    let expect_promotion = "+OK\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n\
                            *4\r\n+OK\r\n-ERR The server is running without a config file\r\n\
                            :1\r\n:1\r\n";
    let check = |addr: std::net::SocketAddr, primary_port: u16| {
        let (replies, bystander_closed, subscriber_closed) =
            sentinel_transaction(addr, &[b"NO", b"ONE"]);
        assert_eq!(String::from_utf8_lossy(&replies), expect_promotion);
        assert!(bystander_closed && subscriber_closed);
        let port = primary_port.to_string();
        let (replies, bystander_closed, subscriber_closed) =
            sentinel_transaction(addr, &[b"127.0.0.1", port.as_bytes()]);
        assert_eq!(String::from_utf8_lossy(&replies), expect_promotion);
        assert!(bystander_closed && subscriber_closed);
        let mut conn = forkless_tests::RawConn::connect(addr);
        let role = conn.call(&[b"ROLE"]);
        let role = String::from_utf8_lossy(&role);
        assert!(
            role.starts_with("*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n"),
            "{role}"
        );
        conn.call(&[b"SLAVEOF", b"NO", b"ONE"]);
    };
    let primary = TestServer::start(BIN, &["--save", ""]);
    let server = TestServer::start(BIN, &["--save", ""]);
    check(server.addr, primary.port());
    if let Some(redis_server) = redis_tool("redis-server") {
        let dir = TestDir::new("sentinel-redis");
        let (_guard, mut conn) = forkless_tests::start_real_redis_on(&redis_server, &dir.0);
        let port = info(&mut conn, "server")
            .remove("tcp_port")
            .unwrap()
            .parse()
            .unwrap();
        drop(conn);
        check(([127, 0, 0, 1], port).into(), primary.port());
    }
}
