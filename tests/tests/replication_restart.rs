//! Restarts on a dump that carries the replication fields (`repl-stream-db`, `repl-id`,
//! `repl-offset`), as Redis 7.0 writes and restores them: a replica shut down and started
//! again on its dump resumes its primary's stream with `+CONTINUE` (no full sync), and a
//! primary restarted on its dump keeps its old ID as `master_replid2`, so its replicas resume
//! too. forkless on both sides, and Debian's redis-server 7.0 in either role.
//!
//! Guards the bug where a dump had no replication fields, so every restart cost a full sync.
//! Without `redis-server` on PATH the tests that need it print a loud skip line and pass,
//! unless FORKLESS_REQUIRE_REDIS=1.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use forkless_tests::replication::{
    SYNC_TIMEOUT, assert_same_data, info, settle, wait_synced, write_round,
};
use forkless_tests::{
    ChildGuard, TestDir, TestServer, free_port, info_section, redis_tool, unique_dir, wait_until,
};
use rand::SeedableRng;

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

/// A free port below the kernel's ephemeral range, for a server that restarts on the same
/// port: one from `free_port` could be taken meanwhile by a server another test starts on
/// port 0, and the replica would follow that one.
fn restart_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::rng();
    loop {
        let port = rng.random_range(12_000..20_000u16);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Sends SHUTDOWN SAVE (the connection drops) and waits for the exit.
fn shutdown_save(server: &mut TestServer) {
    let mut conn = server.client();
    let _ = redis::cmd("SHUTDOWN")
        .arg("SAVE")
        .query::<redis::Value>(&mut conn);
    assert!(server.wait_exit().success());
}

fn stat(conn: &mut redis::Connection, name: &str) -> String {
    info(conn, "stats", name)
}

/// A forkless server on a fixed port (so its replicas find it again after a restart), its
/// files in `dir`.
fn forkless_on(port: u16, dir: &Path, extra: &[&str]) -> TestServer {
    let port = port.to_string();
    let dir_arg = dir.to_str().unwrap();
    let mut args = vec![
        "--port",
        &port,
        "--dir",
        dir_arg,
        "--bind",
        "127.0.0.1",
        "--enable-debug-command",
        "yes",
    ];
    args.extend_from_slice(extra);
    // start_raw removes the directory it is given when dropped: give it a throwaway one.
    TestServer::start_raw(BIN, &args, unique_dir("restart-scratch"))
}

/// Debian's redis-server on `port` with its files in `dir`, killed on drop; None (after a
/// loud skip line) without it.
fn redis_on(port: u16, dir: &Path, extra: &[&str]) -> Option<(ChildGuard, redis::Connection)> {
    let redis_server = redis_tool("redis-server")?;
    let guard = ChildGuard(
        Command::new(redis_server)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(dir)
            .args(["--appendonly", "no", "--daemonize", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server"),
    );
    let url = format!("redis://127.0.0.1:{port}/");
    let mut conn = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            let Ok(mut c) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection())
            else {
                return false;
            };
            let ready = redis::cmd("PING").query::<String>(&mut c).is_ok();
            if ready {
                conn = Some(c);
            }
            ready
        }),
        "redis-server did not start on port {port}"
    );
    Some((guard, conn.unwrap()))
}

/// Stops a redis-server with SHUTDOWN SAVE and waits for its process to end.
fn redis_shutdown_save(mut guard: ChildGuard, mut conn: redis::Connection) {
    let _ = redis::cmd("SHUTDOWN")
        .arg("SAVE")
        .query::<redis::Value>(&mut conn);
    assert!(guard.0.wait().unwrap().success());
}

/// The replica's part: it is shut down with SHUTDOWN SAVE while the primary keeps its
/// backlog, the primary takes more writes, and the replica started again on its dump must
/// continue from its offset (`replica` keeps its files in `dir`).
fn replica_restart_continues(
    primary: &mut redis::Connection,
    mut replica: TestServer,
    dir: &Path,
    primary_port: u16,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    for _ in 0..20 {
        write_round(primary, &mut rng);
    }
    let mut ours = replica.client();
    settle(primary, &mut ours);
    let full_before: u64 = stat(primary, "sync_full").parse().unwrap();
    let partial_before: u64 = stat(primary, "sync_partial_ok").parse().unwrap();
    let offset = info(&mut ours, "replication", "master_repl_offset");
    drop(ours);
    shutdown_save(&mut replica);
    for _ in 0..5 {
        write_round(primary, &mut rng);
    }
    let restarted = TestServer::start_in(
        BIN,
        dir,
        &["--replicaof", "127.0.0.1", &primary_port.to_string()],
        &[],
    );
    let mut ours = restarted.client();
    settle(primary, &mut ours);
    assert_same_data(primary, &mut ours);
    assert_eq!(
        stat(primary, "sync_partial_ok"),
        (partial_before + 1).to_string(),
        "the restarted replica (dump at offset {offset}) did not continue partially"
    );
    assert_eq!(stat(primary, "sync_full"), full_before.to_string());
}

#[test]
fn a_restarted_forkless_replica_continues_from_its_dump() {
    let primary = TestServer::start(BIN, &["--repl-diskless-sync-delay", "0"]);
    let mut theirs = primary.client();
    let dir = TestDir::new("restart-replica");
    let port = primary.addr.port().to_string();
    let replica = TestServer::start_in(BIN, &dir.0, &["--replicaof", "127.0.0.1", &port], &[]);
    replica_restart_continues(&mut theirs, replica, &dir.0, primary.addr.port());
}

#[test]
fn a_restarted_forkless_replica_of_redis_continues_from_its_dump() {
    let primary_dir = TestDir::new("restart-redis-primary");
    let port = restart_port();
    let Some((_redis, mut theirs)) = redis_on(
        port,
        &primary_dir.0,
        &["--save", "", "--repl-diskless-sync-delay", "0"],
    ) else {
        return;
    };
    let dir = TestDir::new("restart-replica-of-redis");
    let replica = TestServer::start_in(
        BIN,
        &dir.0,
        &["--replicaof", "127.0.0.1", &port.to_string()],
        &[],
    );
    replica_restart_continues(&mut theirs, replica, &dir.0, port);
}

/// The primary's part: it is shut down with SHUTDOWN SAVE once its replica has everything,
/// started again on its dump, and the replica continues: the old ID is `master_replid2`,
/// valid up to the offset + 1, and the backlog starts there, as Redis 7.0 restores it.
fn primary_restart_continues(
    first: Started,
    restart: &dyn Fn() -> Started,
    replica: &mut redis::Connection,
) {
    let (guard, mut theirs) = first;
    wait_synced(&mut theirs, replica);
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    for _ in 0..20 {
        write_round(&mut theirs, &mut rng);
    }
    settle(&mut theirs, replica);
    let replid = info(&mut theirs, "replication", "master_replid");
    let offset: u64 = info(&mut theirs, "replication", "master_repl_offset")
        .parse()
        .unwrap();
    // NOW: Redis would otherwise send its replicas a REPLCONF GETACK first, which moves the
    // offset past what this test read.
    let _ = redis::cmd("SHUTDOWN")
        .arg("NOW")
        .arg("SAVE")
        .query::<redis::Value>(&mut theirs);
    drop(guard);
    let (guard, mut theirs) = restart();
    let fields = info_section(&mut theirs, "replication");
    assert_ne!(fields["master_replid"], replid);
    assert_eq!(fields["master_replid2"], replid);
    assert_eq!(fields["master_repl_offset"], offset.to_string());
    assert_eq!(fields["second_repl_offset"], (offset + 1).to_string());
    assert_eq!(fields["repl_backlog_active"], "1");
    assert_eq!(
        fields["repl_backlog_first_byte_offset"],
        (offset + 1).to_string()
    );
    // The replica may not have seen the link drop yet: wait for its PSYNC.
    assert!(wait_until(SYNC_TIMEOUT, || {
        stat(&mut theirs, "sync_partial_ok") != "0" || stat(&mut theirs, "sync_full") != "0"
    }));
    wait_synced(&mut theirs, replica);
    assert_eq!(stat(&mut theirs, "sync_partial_ok"), "1");
    assert_eq!(stat(&mut theirs, "sync_full"), "0");
    for _ in 0..5 {
        write_round(&mut theirs, &mut rng);
    }
    settle(&mut theirs, replica);
    assert_same_data(&mut theirs, replica);
    assert_eq!(stat(&mut theirs, "sync_full"), "0");
    let _ = redis::cmd("SHUTDOWN")
        .arg("NOSAVE")
        .query::<redis::Value>(&mut theirs);
    drop(guard);
}

/// A started primary: what stops it (waiting for its exit on drop) and a connection.
type Started = (Box<dyn std::any::Any>, redis::Connection);

/// A forkless primary on `port` in `dir` for [`primary_restart_continues`].
fn forkless_primary(port: u16, dir: &Path) -> Started {
    let server = forkless_on(
        port,
        dir,
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--repl-ping-replica-period",
            "3600",
        ],
    );
    let conn = server.client();
    (Box::new(ExitOnDrop(Some(server))), conn)
}

/// Waits for the server's exit when dropped (after SHUTDOWN), so the port is free again.
struct ExitOnDrop(Option<TestServer>);

impl Drop for ExitOnDrop {
    fn drop(&mut self) {
        if let Some(mut server) = self.0.take() {
            // After a failed assertion the server is still up: dropping it kills it.
            if !std::thread::panicking() {
                let _ = server.wait_exit();
            }
        }
    }
}

#[test]
fn a_restarted_forkless_primary_lets_its_forkless_replica_continue() {
    let dir = TestDir::new("restart-primary");
    let port = restart_port();
    let first = forkless_primary(port, &dir.0);
    let replica = TestServer::start(BIN, &["--replicaof", "127.0.0.1", &port.to_string()]);
    let mut ours = replica.client();
    primary_restart_continues(first, &|| forkless_primary(port, &dir.0), &mut ours);
}

#[test]
fn a_restarted_forkless_primary_lets_its_redis_replica_continue() {
    let Some(_) = redis_tool("redis-server") else {
        return;
    };
    let dir = TestDir::new("restart-primary-redis-replica");
    let port = restart_port();
    let first = forkless_primary(port, &dir.0);
    let replica_dir = TestDir::new("restart-redis-replica");
    let replica_args = ["--save", "", "--replicaof", "127.0.0.1", &port.to_string()];
    let (_redis, mut ours) = redis_on(free_port(), &replica_dir.0, &replica_args).unwrap();
    primary_restart_continues(first, &|| forkless_primary(port, &dir.0), &mut ours);
}

/// A redis-server 7.0 primary restarted on its dump lets a forkless replica continue: the
/// fields Redis wrote are the ones forkless reads, and the replica takes `+CONTINUE <newid>`.
#[test]
fn a_restarted_redis_primary_lets_its_forkless_replica_continue() {
    let Some(_) = redis_tool("redis-server") else {
        return;
    };
    let dir = TestDir::new("restart-redis-primary");
    let port = restart_port();
    let start = || -> Started {
        let (guard, conn) = redis_on(
            port,
            &dir.0,
            &[
                "--save",
                "",
                "--repl-diskless-sync-delay",
                "0",
                "--repl-ping-replica-period",
                "3600",
            ],
        )
        .unwrap();
        (Box::new(RedisExitOnDrop(guard)), conn)
    };
    let first = start();
    let replica = TestServer::start(BIN, &["--replicaof", "127.0.0.1", &port.to_string()]);
    let mut ours = replica.client();
    primary_restart_continues(first, &start, &mut ours);
}

/// Waits for redis-server's exit when dropped (after SHUTDOWN).
struct RedisExitOnDrop(ChildGuard);

impl Drop for RedisExitOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = self.0.0.wait();
        }
    }
}

/// A redis-server 7.0 replica restarted on its dump continues from a forkless primary (the
/// fields are restored by Redis; forkless answers its PSYNC with `+CONTINUE`).
#[test]
fn a_restarted_redis_replica_of_forkless_continues_from_its_dump() {
    let Some(_) = redis_tool("redis-server") else {
        return;
    };
    let primary = TestServer::start(BIN, &["--repl-diskless-sync-delay", "0"]);
    let mut theirs = primary.client();
    let port = primary.addr.port().to_string();
    let dir = TestDir::new("restart-redis-replica-of-forkless");
    let replica_port = restart_port();
    let replica_args = ["--save", "", "--replicaof", "127.0.0.1", &port];
    let (guard, mut ours) = redis_on(replica_port, &dir.0, &replica_args).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(29);
    for _ in 0..20 {
        write_round(&mut theirs, &mut rng);
    }
    settle(&mut theirs, &mut ours);
    redis_shutdown_save(guard, ours);
    for _ in 0..5 {
        write_round(&mut theirs, &mut rng);
    }
    let (_guard, mut ours) = redis_on(replica_port, &dir.0, &replica_args).unwrap();
    settle(&mut theirs, &mut ours);
    assert_same_data(&mut theirs, &mut ours);
    assert_eq!(stat(&mut theirs, "sync_full"), "1");
    assert_eq!(stat(&mut theirs, "sync_partial_ok"), "1");
}

/// Keys that expire between a primary's shutdown and its restart are not loaded, and a DEL for each goes into the
/// backlog it restores (as Redis feeds them while it loads), so a replica that continues
/// drops them too instead of keeping them until its next full sync.
#[test]
fn a_restarted_primary_sends_dels_for_the_keys_that_expired_in_its_dump() {
    let dir = TestDir::new("restart-primary-expired");
    let port = restart_port();
    let (guard, mut theirs) = forkless_primary(port, &dir.0);
    let replica = TestServer::start(BIN, &["--replicaof", "127.0.0.1", &port.to_string()]);
    let mut ours = replica.client();
    let () = redis::cmd("DEBUG")
        .arg("SET-ACTIVE-EXPIRE")
        .arg(0)
        .query(&mut theirs)
        .unwrap();
    let () = redis::cmd("SET")
        .arg("keep")
        .arg("v")
        .query(&mut theirs)
        .unwrap();
    for db in [0, 3] {
        let () = redis::cmd("SELECT").arg(db).query(&mut theirs).unwrap();
        for i in 0..50 {
            let () = redis::cmd("SET")
                .arg(format!("gone:{i}"))
                .arg("v")
                .arg("PX")
                .arg(3000)
                .query(&mut theirs)
                .unwrap();
        }
    }
    let () = redis::cmd("SELECT").arg(0).query(&mut theirs).unwrap();
    wait_synced(&mut theirs, &mut ours);
    let offset: u64 = info(&mut theirs, "replication", "master_repl_offset")
        .parse()
        .unwrap();
    // Saved while they live; expired by the time the primary loads the dump again.
    let expired_at = std::time::Instant::now() + Duration::from_millis(3100);
    let _ = redis::cmd("SHUTDOWN")
        .arg("NOW")
        .arg("SAVE")
        .query::<redis::Value>(&mut theirs);
    drop(guard);
    assert!(wait_until(Duration::from_secs(5), || {
        std::time::Instant::now() > expired_at
    }));
    let (guard, mut theirs) = forkless_primary(port, &dir.0);
    assert!(wait_until(SYNC_TIMEOUT, || stat(
        &mut theirs,
        "sync_partial_ok"
    ) == "1"));
    assert_eq!(
        info(&mut theirs, "persistence", "rdb_last_load_keys_expired"),
        "100"
    );
    // The DELs are in the backlog, after the restored offset.
    let restarted: u64 = info(&mut theirs, "replication", "master_repl_offset")
        .parse()
        .unwrap();
    assert!(restarted > offset, "{restarted} <= {offset}");
    wait_synced(&mut theirs, &mut ours);
    assert_eq!(stat(&mut theirs, "sync_partial_ok"), "1");
    let dbsize = |conn: &mut redis::Connection, db: u8| -> u64 {
        let () = redis::cmd("SELECT").arg(db).query(conn).unwrap();
        redis::cmd("DBSIZE").query(conn).unwrap()
    };
    assert_eq!(dbsize(&mut ours, 0), 1);
    assert_eq!(dbsize(&mut ours, 3), 0);
    let _ = redis::cmd("SHUTDOWN")
        .arg("NOSAVE")
        .query::<redis::Value>(&mut theirs);
    drop(guard);
}
