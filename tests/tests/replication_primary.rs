//! forkless as a primary, with Debian's redis-server 7.0 as its replica: a full sync
//! (diskless, and disk-based) of a dataset bigger than the backlog while clients write every
//! type, in several databases, with TTLs and transactions, then the datasets compared key by
//! key (type, value, absolute expiry) once the offsets match; a dropped link that resumes with
//! `+CONTINUE`; WAIT; `min-replicas-to-write`; and bad peers (a replica that stops reading is
//! dropped at its output limit, one that sends garbage or disconnects mid-sync ends alone) that
//! never stall the primary.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use forkless_tests::replication::{assert_same_data, dataset, wait_synced};
use forkless_tests::{
    ChildGuard, TestDir, TestServer, free_port, info_section as info, noise, redis_tool, wait_until,
};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

/// Starts Debian's redis-server as a replica of `primary_port`, in `dir`.
fn start_replica(redis_server: &Path, dir: &Path, primary_port: u16) -> (ChildGuard, u16) {
    start_replica_on(redis_server, dir, primary_port, free_port(), "")
}

/// The same on a given port, with `save` as its save points ("" for none).
fn start_replica_on(
    redis_server: &Path,
    dir: &Path,
    primary_port: u16,
    port: u16,
    save: &str,
) -> (ChildGuard, u16) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("replica.log"))
        .unwrap();
    let child = Command::new(redis_server)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
        .arg(dir)
        .args([
            "--replicaof",
            "127.0.0.1",
            &primary_port.to_string(),
            "--save",
            save,
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ])
        .stdout(Stdio::from(log))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server");
    (ChildGuard(child), port)
}

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

fn field(conn: &mut redis::Connection, section: &str, name: &str) -> String {
    info(conn, section).remove(name).unwrap_or_default()
}

/// Seeds every type in databases 0 and 3, some keys with a TTL: about `n_strings` KiB.
fn seed(conn: &mut redis::Connection, n_strings: usize) {
    for start in (0..n_strings).step_by(500) {
        let mut mset = redis::cmd("MSET");
        for i in start..n_strings.min(start + 500) {
            mset.arg(format!("s{i}")).arg(noise(i as u64, 1024));
        }
        let () = mset.query(conn).unwrap();
    }
    for i in 0..50 {
        let () = redis::cmd("RPUSH")
            .arg(format!("l{i}"))
            .arg(&[b"a".to_vec(), noise(i, 100), b"17".to_vec()])
            .query(conn)
            .unwrap();
        let () = redis::cmd("HSET")
            .arg(format!("h{i}"))
            .arg(&["f1", "v1", "f2", "2"])
            .query(conn)
            .unwrap();
        let () = redis::cmd("SADD")
            .arg(format!("set{i}"))
            .arg(&["x", "y", "12"])
            .query(conn)
            .unwrap();
        let () = redis::cmd("ZADD")
            .arg(format!("z{i}"))
            .arg(&["1", "one", "2.5", "two"])
            .query(conn)
            .unwrap();
        let _: String = redis::cmd("XADD")
            .arg(format!("x{i}"))
            .arg("*")
            .arg(&["field", "value"])
            .query(conn)
            .unwrap();
        let () = redis::cmd("SET")
            .arg(format!("ttl{i}"))
            .arg("v")
            .arg("EX")
            .arg(1000 + i)
            .query(conn)
            .unwrap();
    }
    let () = redis::cmd("SELECT").arg(3).query(conn).unwrap();
    for i in 0..100 {
        let () = redis::cmd("SET")
            .arg(format!("db3-{i}"))
            .arg(i)
            .query(conn)
            .unwrap();
    }
    let () = redis::cmd("SELECT").arg(0).query(conn).unwrap();
}

/// A client writing every type until stopped: overwrites, pops and random removals (whose
/// effects are rewritten), expiries, transactions across databases.
fn spawn_writer(port: u16, stop: Arc<AtomicBool>, ops: Arc<AtomicU64>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut conn = connect(port);
        let mut i: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let k = i % 97;
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(format!("s{}", i % 3000))
                .arg(noise(i, 200));
            pipe.cmd("INCR").arg(format!("counter{k}"));
            pipe.cmd("INCRBYFLOAT").arg("float").arg("1.5");
            pipe.cmd("APPEND").arg(format!("app{k}")).arg("xy");
            pipe.cmd("LPUSH").arg(format!("l{k}")).arg(i);
            pipe.cmd("RPOP").arg(format!("l{}", (k + 1) % 97));
            pipe.cmd("HSET")
                .arg(format!("h{k}"))
                .arg(format!("f{}", i % 7))
                .arg(i);
            pipe.cmd("SADD").arg(format!("set{k}")).arg(i % 13);
            pipe.cmd("SPOP").arg(format!("set{}", (k + 3) % 97));
            pipe.cmd("ZINCRBY")
                .arg(format!("z{k}"))
                .arg(1)
                .arg(format!("m{}", i % 5));
            pipe.cmd("XADD")
                .arg(format!("x{k}"))
                .arg("MAXLEN")
                .arg(20)
                .arg("*")
                .arg("i")
                .arg(i);
            pipe.cmd("SET")
                .arg(format!("exp{k}"))
                .arg(i)
                .arg("PX")
                .arg(1 + i % 50);
            pipe.cmd("EXPIRE").arg(format!("s{}", i % 3000)).arg(500);
            pipe.cmd("DEL").arg(format!("app{}", (k + 5) % 97));
            pipe.cmd("MULTI");
            pipe.cmd("SELECT").arg(3);
            pipe.cmd("SET").arg(format!("db3-{}", i % 100)).arg(i);
            pipe.cmd("SELECT").arg(0);
            pipe.cmd("EXEC");
            if pipe.query::<redis::Value>(&mut conn).is_err() {
                return;
            }
            ops.fetch_add(1, Ordering::Relaxed);
        }
    })
}

fn assert_same_dataset(
    primary: &mut redis::Connection,
    replica: &mut redis::Connection,
    min_keys: usize,
) {
    // The writer's short-lived keys (TTL up to 50 ms) could expire between the two reads: wait
    // until the primary's expiry has removed them all and the replica has its DELs.
    assert!(wait_until(Duration::from_secs(20), || {
        let left: Vec<String> = redis::cmd("KEYS").arg("exp*").query(primary).unwrap();
        let counted: i64 = redis::cmd("DBSIZE").query(primary).unwrap();
        left.is_empty() && counted > 0
    }));
    wait_synced(primary, replica);
    let n_keys = dataset(primary).len();
    assert!(n_keys >= min_keys, "dataset too small: {n_keys}");
    assert_same_data(primary, replica);
}

/// The scenario shared by the diskless and disk-based tests.
fn full_sync_under_writes(diskless: &str, snapshot_mode: &str) {
    let Some(redis_server) = redis_tool("redis-server") else {
        return;
    };
    let server = TestServer::start(
        BIN,
        &[
            "--repl-diskless-sync",
            diskless,
            "--repl-diskless-sync-delay",
            "0",
            "--repl-backlog-size",
            "64kb",
            "--snapshot-mode",
            snapshot_mode,
        ],
    );
    let mut primary = server.client();
    seed(&mut primary, 3000);
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let writer = spawn_writer(server.port(), Arc::clone(&stop), Arc::clone(&ops));
    assert!(wait_until(Duration::from_secs(10), || ops
        .load(Ordering::Relaxed)
        > 10));
    let replica_dir = TestDir::new("replica");
    let (_replica_process, replica_port) =
        start_replica(&redis_server, &replica_dir.0, server.port());
    let mut replica = connect(replica_port);
    // Writes keep coming during the sync and after it.
    assert!(wait_until(Duration::from_secs(60), || {
        field(&mut replica, "replication", "master_link_status") == "up"
    }));
    let at_up = ops.load(Ordering::Relaxed);
    assert!(wait_until(Duration::from_secs(20), || ops
        .load(Ordering::Relaxed)
        > at_up + 50));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    wait_synced(&mut primary, &mut replica);
    let stats = info(&mut primary, "stats");
    assert_eq!(stats["sync_full"], "1");
    // Disk-based (and every fork-mode sync): the RDB went through dbfilename, as a BGSAVE;
    // diskless: no file.
    assert_eq!(
        server.dir.join("dump.rdb").exists(),
        diskless == "no" || snapshot_mode == "fork"
    );
    if snapshot_mode == "fork" {
        assert_eq!(field(&mut primary, "stats", "total_forks"), "1");
    }
    let replication = info(&mut primary, "replication");
    assert_eq!(replication["connected_slaves"], "1");
    assert!(replication["slave0"].contains("state=online"));
    // The dataset is bigger than the backlog, so the sync could not have been a replay.
    let backlog: u64 = replication["repl_backlog_size"].parse().unwrap();
    assert!(3000 * 1024 > 10 * backlog);
    assert_same_dataset(&mut primary, &mut replica, 3000);
    // WAIT counts the replica once it has acknowledged the last write.
    let () = redis::cmd("SET")
        .arg("waited")
        .arg(1)
        .query(&mut primary)
        .unwrap();
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query(&mut primary)
        .unwrap();
    assert_eq!(acked, 1);
    let acked: i64 = redis::cmd("WAIT")
        .arg(2)
        .arg(200)
        .query(&mut primary)
        .unwrap();
    assert_eq!(
        acked, 1,
        "WAIT for more replicas than exist times out with the count"
    );
    // CLIENT LIST shows it as a replica (flag S), and only under TYPE replica.
    let replicas: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("replica")
        .query(&mut primary)
        .unwrap();
    assert_eq!(replicas.lines().count(), 1, "{replicas}");
    assert!(replicas.contains(" flags=S "), "{replicas}");
    let normal: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("normal")
        .query(&mut primary)
        .unwrap();
    assert!(!normal.contains(" flags=S "), "{normal}");
    // ROLE lists it.
    let role: redis::Value = redis::cmd("ROLE").query(&mut primary).unwrap();
    let text = format!("{role:?}");
    assert!(
        text.contains("master") && text.contains(&replica_port.to_string()),
        "{text}"
    );
}

#[test]
fn diskless_full_sync_under_writes_gives_the_same_dataset() {
    full_sync_under_writes("yes", "epoch");
}

#[test]
fn disk_based_full_sync_under_writes_gives_the_same_dataset() {
    full_sync_under_writes("no", "epoch");
}

/// `snapshot-mode fork`: the sync forks as Redis does (a forked save to dbfilename, then the
/// file), with the freeze placed in the stream as the cut is.
#[test]
fn fork_mode_full_sync_under_writes_gives_the_same_dataset() {
    full_sync_under_writes("yes", "fork");
}

/// A replica whose link is killed reconnects with its cached master and continues from the
/// backlog: `+CONTINUE`, `sync_partial_ok`, and the writes made while it was away arrive.
#[test]
fn a_dropped_link_resumes_with_continue() {
    let Some(redis_server) = redis_tool("redis-server") else {
        return;
    };
    let server = TestServer::start(BIN, &["--repl-diskless-sync-delay", "0"]);
    let mut primary = server.client();
    seed(&mut primary, 500);
    let replica_dir = TestDir::new("replica-psync");
    let (_replica_process, replica_port) =
        start_replica(&redis_server, &replica_dir.0, server.port());
    let mut replica = connect(replica_port);
    wait_synced(&mut primary, &mut replica);
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query(&mut primary)
        .unwrap();
    assert_eq!(killed, 1);
    for i in 0..100 {
        let () = redis::cmd("SET")
            .arg(format!("while-away-{i}"))
            .arg(i)
            .query(&mut primary)
            .unwrap();
    }
    assert!(wait_until(Duration::from_secs(30), || {
        field(&mut primary, "stats", "sync_partial_ok") == "1"
    }));
    wait_synced(&mut primary, &mut replica);
    assert_eq!(field(&mut primary, "stats", "sync_full"), "1");
    let value: Option<i64> = redis::cmd("GET")
        .arg("while-away-99")
        .query(&mut replica)
        .unwrap();
    assert_eq!(value, Some(99));
    assert_same_dataset(&mut primary, &mut replica, 600);
}

fn raw(port: u16) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Connects as a replica that announces `capa eof psync2` and asks for a full sync
/// (`PSYNC ? -1`); its reply (`+FULLRESYNC ...`, or nothing yet while the sync is delayed) is
/// left to the caller.
fn raw_full_sync(port: u16) -> std::net::TcpStream {
    let mut stream = raw(port);
    stream
        .write_all(b"REPLCONF capa eof capa psync2\r\n")
        .unwrap();
    assert_eq!(read_line(&mut stream), "+OK");
    stream.write_all(b"PSYNC ? -1\r\n").unwrap();
    stream
}

fn read_line(stream: &mut std::net::TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        stream.read_exact(&mut byte).unwrap();
        if byte[0] == b'\n' {
            if line.is_empty() {
                // The keep-alive newlines before the reply.
                continue;
            }
            return String::from_utf8_lossy(&line).trim_end().to_string();
        }
        line.push(byte[0]);
    }
}

/// A replica that stops reading in the middle of its RDB is dropped when its pending stream
/// passes `client-output-buffer-limit replica`, with Redis's log line; the save that fed it
/// ends, the primary keeps serving, and the writes it missed are no longer held.
#[test]
fn a_replica_that_stops_reading_is_dropped_at_its_output_limit() {
    let server = TestServer::start(
        BIN,
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--client-output-buffer-limit",
            "replica 256kb 128kb 60",
        ],
    );
    let mut primary = server.client();
    // 16 MiB: more than the socket buffers take, so the save is still feeding it when it stops.
    for start in (0..4000).step_by(500) {
        let mut mset = redis::cmd("MSET");
        for i in start..start + 500 {
            mset.arg(format!("big{i}")).arg(noise(i as u64, 4096));
        }
        let () = mset.query(&mut primary).unwrap();
    }
    let mut stuck = raw_full_sync(server.port());
    assert!(read_line(&mut stuck).starts_with("+FULLRESYNC "));
    // It reads nothing more: the stream piles up for it until the hard limit drops it.
    assert!(wait_until(Duration::from_secs(30), || {
        let () = redis::cmd("SET")
            .arg("big")
            .arg(noise(1, 64 * 1024))
            .query(&mut primary)
            .unwrap();
        field(&mut primary, "replication", "connected_slaves") == "0"
    }));
    assert!(
        server
            .wait_for_log("scheduled to be closed ASAP for overcoming of output buffer limits")
            .is_some()
    );
    // The save that fed it ended (its sink dropped out) and the slot is free again.
    assert!(wait_until(Duration::from_secs(30), || {
        field(&mut primary, "persistence", "rdb_bgsave_in_progress") == "0"
    }));
    let reply: String = redis::cmd("BGSAVE").query(&mut primary).unwrap();
    assert_eq!(reply, "Background saving started");
    let held: u64 = field(&mut primary, "memory", "mem_clients_slaves")
        .parse()
        .unwrap();
    assert_eq!(held, 0);
    let pong: String = redis::cmd("PING").query(&mut primary).unwrap();
    assert_eq!(pong, "PONG");
}

/// A replica that sends garbage on its link is dropped alone; one that disconnects in the middle
/// of its sync ends its sink, and the save ends cleanly (the next BGSAVE can start).
#[test]
fn garbage_and_disconnects_mid_sync_end_only_that_link() {
    let server = TestServer::start(BIN, &["--repl-diskless-sync-delay", "0"]);
    let mut primary = server.client();
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut primary)
        .unwrap();
    // Garbage after the sync.
    let mut garbage = raw(server.port());
    garbage.write_all(b"PSYNC ? -1\r\n").unwrap();
    assert!(read_line(&mut garbage).starts_with("+FULLRESYNC "));
    assert!(wait_until(Duration::from_secs(10), || {
        field(&mut primary, "replication", "slave0").contains("state=online")
    }));
    garbage.write_all(b"*1\r\n$-5\r\n\x00\x01garbage").unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        field(&mut primary, "replication", "connected_slaves") == "0"
    }));
    // A disconnect as soon as the sync starts, with a dataset big enough to be mid-transfer.
    let mut value_idx = 0u64;
    for start in (0..4000).step_by(500) {
        let mut mset = redis::cmd("MSET");
        for i in start..start + 500 {
            value_idx += 1;
            mset.arg(format!("big{i}")).arg(noise(value_idx, 4096));
        }
        let () = mset.query(&mut primary).unwrap();
    }
    let mut quitter = raw(server.port());
    quitter.write_all(b"PSYNC ? -1\r\n").unwrap();
    assert!(read_line(&mut quitter).starts_with("+FULLRESYNC "));
    drop(quitter);
    assert!(wait_until(Duration::from_secs(30), || {
        field(&mut primary, "persistence", "rdb_bgsave_in_progress") == "0"
            && field(&mut primary, "replication", "connected_slaves") == "0"
    }));
    let reply: String = redis::cmd("BGSAVE").query(&mut primary).unwrap();
    assert_eq!(reply, "Background saving started");
    let pong: String = redis::cmd("PING").query(&mut primary).unwrap();
    assert_eq!(pong, "PONG");
}

/// `min-replicas-to-write` refuses writes with Redis's `-NOREPLICAS` while too few replicas
/// are connected; reads still work; REPLCONF's errors are Redis's.
#[test]
fn min_replicas_to_write_and_replconf_errors() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    assert_eq!(
        String::from_utf8_lossy(&conn.call(&[b"CONFIG", b"SET", b"min-replicas-to-write", b"1"])),
        "+OK\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&conn.call(&[b"SET", b"k", b"v"])),
        "-NOREPLICAS Not enough good replicas to write.\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&conn.call(&[b"GET", b"k"])),
        "$-1\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&conn.call(&[b"CONFIG", b"SET", b"min-replicas-to-write", b"0"])),
        "+OK\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&conn.call(&[b"SET", b"k", b"v"])),
        "+OK\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&conn.call(&[b"REPLCONF", b"listening-port"])),
        "-ERR syntax error\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&conn.call(&[b"REPLCONF", b"nope", b"1"])),
        "-ERR Unrecognized REPLCONF option: nope\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&conn.call(&[b"REPLCONF", b"listening-port", b"7000"])),
        "+OK\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&conn.call(&[b"WAIT", b"0", b"0"])),
        ":0\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&conn.call(&[b"WAIT", b"1", b"-1"])),
        "-ERR timeout is negative\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&conn.call(&[b"ROLE"])),
        "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"
    );
}

/// Replicas that arrive together share one cut: with `repl-diskless-sync-max-replicas 2` the
/// sync starts as soon as both wait (well before the delay), and one save feeds both sockets.
#[test]
fn replicas_that_arrive_together_share_one_cut() {
    let Some(redis_server) = redis_tool("redis-server") else {
        return;
    };
    let server = TestServer::start(
        BIN,
        &[
            "--repl-diskless-sync-delay",
            "60",
            "--repl-diskless-sync-max-replicas",
            "2",
        ],
    );
    let mut primary = server.client();
    seed(&mut primary, 200);
    let (dir_a, dir_b) = (TestDir::new("replica-a"), TestDir::new("replica-b"));
    let (_a, port_a) = start_replica(&redis_server, &dir_a.0, server.port());
    let (_b, port_b) = start_replica(&redis_server, &dir_b.0, server.port());
    let (mut replica_a, mut replica_b) = (connect(port_a), connect(port_b));
    wait_synced(&mut primary, &mut replica_a);
    wait_synced(&mut primary, &mut replica_b);
    assert!(
        server
            .wait_for_log("Diskless full sync streamed to 2 of 2 replicas")
            .is_some()
    );
    assert_eq!(field(&mut primary, "stats", "sync_full"), "2");
    assert_same_dataset(&mut primary, &mut replica_b, 300);
}

/// Regression: after a diskless RDB the primary sent the stream at once, so under writes the
/// bytes after the EOF mark reached the replica in the same read as the mark, and a Redis
/// replica, which recognises the end by the mark being the last bytes read, waited forever
/// ("receiving streamed RDB from master with EOF" under load). Nothing may follow the mark
/// until the replica's first REPLCONF ACK.
#[test]
fn nothing_follows_the_eof_mark_until_the_first_ack() {
    let server = TestServer::start(BIN, &["--repl-diskless-sync-delay", "0"]);
    let mut primary = server.client();
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut primary)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let writer = spawn_writer(server.port(), Arc::clone(&stop), Arc::clone(&ops));
    let mut replica = raw_full_sync(server.port());
    assert!(read_line(&mut replica).starts_with("+FULLRESYNC "));
    let header = read_line(&mut replica);
    let mark = header
        .strip_prefix("$EOF:")
        .expect("EOF framing")
        .as_bytes()
        .to_vec();
    let mut received = Vec::new();
    let mut buf = [0u8; 65536];
    while !received.ends_with(&mark) {
        let n = replica.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the mark");
        received.extend_from_slice(&buf[..n]);
        assert!(
            received
                .windows(mark.len())
                .filter(|w| *w == mark.as_slice())
                .count()
                <= 1,
            "bytes followed the mark"
        );
    }
    // Writes keep coming, yet nothing arrives while the replica has not acknowledged.
    let at_mark = ops.load(Ordering::Relaxed);
    assert!(wait_until(Duration::from_secs(10), || ops
        .load(Ordering::Relaxed)
        > at_mark + 20));
    replica
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let early = replica.read(&mut buf);
    assert!(
        matches!(&early, Err(err) if err.kind() == std::io::ErrorKind::WouldBlock
            || err.kind() == std::io::ErrorKind::TimedOut),
        "stream bytes before the first ACK: {early:?}"
    );
    replica
        .write_all(b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$1\r\n0\r\n")
        .unwrap();
    replica
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = replica.read(&mut buf).unwrap();
    assert!(n > 0 && buf[0] == b'*', "the stream follows the ACK");
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

/// The old SYNC: no `+FULLRESYNC` line, a disk-based RDB (`$<len>`, no EOF capability), then
/// the stream.
#[test]
fn sync_gets_a_length_prefixed_rdb_then_the_stream() {
    let server = TestServer::start(BIN, &[]);
    let mut primary = server.client();
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut primary)
        .unwrap();
    let mut replica = raw(server.port());
    replica.write_all(b"SYNC\r\n").unwrap();
    let header = read_line(&mut replica);
    let len: usize = header
        .strip_prefix('$')
        .expect("a bulk length")
        .parse()
        .unwrap();
    let mut rdb = vec![0u8; len];
    replica.read_exact(&mut rdb).unwrap();
    assert!(rdb.starts_with(b"REDIS0010"), "{:?}", &rdb[..9]);
    assert!(rdb.windows(2).any(|w| w == b"\x01k"), "the key is in it");
    let () = redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query(&mut primary)
        .unwrap();
    let mut buf = [0u8; 256];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("after") {
        let n = replica.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n"));
}

/// A replica restarted on its own files continues: Redis 7.0 saves its replication ID and
/// offset in the RDB it writes at shutdown, and on restart asks `PSYNC <replid> <offset+1>`,
/// which the backlog serves with `+CONTINUE`, including the writes made while it was down.
#[test]
fn a_restarted_replica_continues_from_the_backlog() {
    let Some(redis_server) = redis_tool("redis-server") else {
        return;
    };
    let server = TestServer::start(BIN, &["--repl-diskless-sync-delay", "0"]);
    let mut primary = server.client();
    seed(&mut primary, 200);
    let replica_dir = TestDir::new("replica-restart");
    let port = free_port();
    let (mut replica_process, _) =
        start_replica_on(&redis_server, &replica_dir.0, server.port(), port, "3600 1");
    let mut replica = connect(port);
    wait_synced(&mut primary, &mut replica);
    // A clean shutdown (SIGTERM, by its PID) saves the dataset with the replication state.
    let pid = replica_process.0.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    replica_process.0.wait().unwrap();
    for i in 0..50 {
        let () = redis::cmd("SET")
            .arg(format!("while-down-{i}"))
            .arg(i)
            .query(&mut primary)
            .unwrap();
    }
    let (_restarted, _) =
        start_replica_on(&redis_server, &replica_dir.0, server.port(), port, "3600 1");
    let mut replica = connect(port);
    wait_synced(&mut primary, &mut replica);
    let stats = info(&mut primary, "stats");
    assert_eq!(stats["sync_full"], "1", "{stats:?}");
    assert_eq!(stats["sync_partial_ok"], "1", "{stats:?}");
    let value: Option<i64> = redis::cmd("GET")
        .arg("while-down-49")
        .query(&mut replica)
        .unwrap();
    assert_eq!(value, Some(49));
    assert_same_dataset(&mut primary, &mut replica, 300);
}

/// A client blocked in WAIT with no timeout goes away cleanly when it disconnects (no waiting
/// task is left behind), and another is freed by CLIENT KILL.
#[test]
fn a_client_waiting_in_wait_can_leave() {
    let server = TestServer::start(BIN, &[]);
    let mut admin = server.client();
    let mut waiting = raw(server.port());
    waiting.write_all(b"WAIT 1 0\r\n").unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        field(&mut admin, "clients", "connected_clients") == "2"
    }));
    drop(waiting);
    assert!(wait_until(Duration::from_secs(10), || {
        field(&mut admin, "clients", "connected_clients") == "1"
    }));
    let mut killed = raw(server.port());
    killed.write_all(b"WAIT 1 0\r\n").unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        field(&mut admin, "clients", "connected_clients") == "2"
    }));
    let n: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query(&mut admin)
        .unwrap();
    assert_eq!(n, 1);
    assert!(wait_until(Duration::from_secs(10), || {
        field(&mut admin, "clients", "connected_clients") == "1"
    }));
}

/// WAIT counts only online replicas, as Redis's `replicationCountAcksByOffset`: before the
/// first write the offset to acknowledge is 0, which a replica still waiting for its full sync
/// already "has", yet it has none of the data. (Counted, WAIT returned 1 before the sync's cut
/// was taken, and writes made after it reached the replica through the cut.)
#[test]
fn wait_does_not_count_a_replica_waiting_for_its_full_sync() {
    // The delay keeps the new link waiting for its cut for the whole test.
    let server = TestServer::start(BIN, &["--repl-diskless-sync-delay", "60"]);
    let mut primary = server.client();
    // Kept open: the link stays in `wait_bgsave` for the whole test.
    let _replica = raw_full_sync(server.port());
    assert!(wait_until(Duration::from_secs(10), || {
        field(&mut primary, "replication", "connected_slaves") == "1"
    }));
    assert!(field(&mut primary, "replication", "slave0").contains("state=wait_bgsave"));
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(50)
        .query(&mut primary)
        .unwrap();
    assert_eq!(acked, 0);
    let mut multi = redis::pipe();
    multi.atomic().cmd("WAIT").arg(1).arg(0);
    let (in_exec,): (i64,) = multi.query(&mut primary).unwrap();
    assert_eq!(in_exec, 0);
}
