//! Fork mode end to end (`snapshot-mode fork`, `BGSAVE FORK`): 200 forked saves under
//! concurrent writers on every type and MULTI/EXEC all complete (a child deadlocked on a lock
//! some other thread held at fork time would hang one of them: each save has a deadline); a
//! fork() failure (injected with `FORKLESS_FAULT_INJECT=fork_errno=12`) gets Redis's bare
//! `-ERR`, log line and `rdb_last_bgsave_status:err` while the server keeps serving; a child
//! killed with SIGKILL is a failed save whose temp file is removed and whose previous dump is
//! intact; a shutdown kills a running child and still writes the final dump; Redis's INFO fork
//! fields are present and sane; and the dump passes `redis-check-rdb` and loads into real
//! Redis with the same contents.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::BufReader;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use forkless_snapshot::format;
use forkless_tests::{
    ChildGuard, TestDir, TestServer, info_section as info, populate, redis_tool,
    start_real_redis_on, wait_until,
};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

fn persistence(conn: &mut redis::Connection, field: &str) -> String {
    info(conn, "persistence")
        .remove(field)
        .unwrap_or_else(|| panic!("INFO persistence has no {field}"))
}

fn number(conn: &mut redis::Connection, section: &str, field: &str) -> i64 {
    info(conn, section)[field]
        .parse()
        .unwrap_or_else(|_| panic!("{field} is not a number"))
}

/// Waits (up to `secs`) until no save is running; false if one still is.
fn save_done_within(conn: &mut redis::Connection, secs: u64) -> bool {
    wait_until(Duration::from_secs(secs), || {
        persistence(conn, "rdb_bgsave_in_progress") == "0"
    })
}

fn bgsave(conn: &mut redis::Connection, args: &[&str]) {
    let reply: String = redis::cmd("BGSAVE").arg(args).query(conn).expect("BGSAVE");
    assert_eq!(reply, "Background saving started");
}

/// Keys in the dump at `path`, by database.
fn dump_keys(path: &Path) -> HashMap<u32, u64> {
    let mut keys = HashMap::new();
    let file = File::open(path).expect("dump exists");
    format::load(BufReader::new(file), "dump.rdb", 0, |entry| {
        *keys.entry(entry.db).or_insert(0) += 1;
        Ok(())
    })
    .expect("dump loads");
    keys
}

/// One writer's command mix: every type, MULTI/EXEC, deletes, TTLs.
fn write_everything(conn: &mut redis::Connection, w: u64, n: u64) {
    let k = n % 50;
    let value = n.to_string();
    let result: redis::RedisResult<()> = match n % 8 {
        0 => redis::cmd("SET")
            .arg(format!("s{w}:{k}"))
            .arg(&value)
            .query(conn),
        1 => redis::pipe()
            .cmd("RPUSH")
            .arg(format!("l{w}:{}", k % 5))
            .arg(&value)
            .ignore()
            .cmd("LTRIM")
            .arg(format!("l{w}:{}", k % 5))
            .arg(-20)
            .arg(-1)
            .ignore()
            .query(conn),
        2 => redis::cmd("HSET")
            .arg(format!("h{w}:{}", k % 5))
            .arg(format!("f{k}"))
            .arg(&value)
            .query(conn),
        3 => redis::cmd("SADD")
            .arg(format!("set{w}:{}", k % 5))
            .arg(k)
            .query(conn),
        4 => redis::cmd("ZADD")
            .arg(format!("z{w}:{}", k % 5))
            .arg(n)
            .arg(format!("m{k}"))
            .query(conn),
        5 => redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(format!("tx{w}:a"))
            .arg(&value)
            .ignore()
            .cmd("HSET")
            .arg(format!("tx{w}:h"))
            .arg("n")
            .arg(&value)
            .ignore()
            .cmd("ZADD")
            .arg(format!("tx{w}:z"))
            .arg(n)
            .arg(&value)
            .ignore()
            .cmd("SREM")
            .arg(format!("set{w}:{}", k % 5))
            .arg(k)
            .ignore()
            .query(conn),
        6 => redis::cmd("SET")
            .arg(format!("ttl{w}:{k}"))
            .arg(&value)
            .arg("PX")
            .arg(50 + k * 10)
            .query(conn),
        _ => redis::cmd("DEL")
            .arg(format!("s{w}:{}", (k + 25) % 50))
            .query(conn),
    };
    result.expect("write");
}

#[test]
fn two_hundred_fork_bgsaves_under_writes_on_every_type_all_complete() {
    const WRITERS: u64 = 3;
    let server = TestServer::start(BIN, &["--save", "", "--snapshot-mode", "fork"]);
    let mut conn = server.client();
    populate(&mut conn, "bulk", 2000, 200);
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (stop, writes) = (Arc::clone(&stop), Arc::clone(&writes));
            let mut conn = server.client();
            std::thread::spawn(move || {
                let mut n = 0;
                // Bounded whatever happens.
                while !stop.load(Ordering::Relaxed) && n < 2_000_000 {
                    write_everything(&mut conn, w, n);
                    n += 1;
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    assert!(wait_until(Duration::from_secs(20), || writes
        .load(Ordering::Relaxed)
        > 500));
    let started = Instant::now();
    let mut writes_during_saves = 0;
    for round in 1..=200u64 {
        let before = writes.load(Ordering::Relaxed);
        bgsave(&mut conn, &[]);
        // A child stuck on a lock held at fork time never exits: fail instead of hanging.
        assert!(
            save_done_within(&mut conn, 30),
            "fork save {round} did not finish within 30 s (child pid {})",
            persistence(&mut conn, "snapshot_fork_child_pid")
        );
        writes_during_saves += writes.load(Ordering::Relaxed) - before;
        let fields = info(&mut conn, "persistence");
        assert_eq!(fields["rdb_last_bgsave_status"], "ok", "save {round}");
        assert_eq!(fields["rdb_last_bgsave_type"], "fork", "save {round}");
        assert_eq!(fields["rdb_saves"], round.to_string(), "save {round}");
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("writer");
    }
    assert_eq!(number(&mut conn, "stats", "total_forks"), 200);
    let keys = dump_keys(&server.dir.join("dump.rdb"));
    assert!(keys.get(&0).is_some_and(|&n| n >= 2000), "{keys:?}");
    eprintln!(
        "200 fork saves in {elapsed:?}; {} writes, {writes_during_saves} while a save ran; \
         latest_fork_usec {}",
        writes.load(Ordering::Relaxed),
        number(&mut conn, "stats", "latest_fork_usec")
    );
    assert!(
        writes_during_saves > 0,
        "no write overlapped any of the saves"
    );
}

#[test]
fn fork_failure_replies_err_logs_strerror_and_keeps_serving() {
    let server = TestServer::start_with_env(
        BIN,
        &["--save", "3600 1", "--snapshot-mode", "fork"],
        &[("FORKLESS_FAULT_INJECT", "fork_errno=12")],
    );
    let mut raw = server.raw();
    assert_eq!(raw.call(&[b"SET", b"k", b"v"]), b"+OK\r\n");
    assert_eq!(raw.call(&[b"BGSAVE"]), b"-ERR\r\n");
    let line = server
        .wait_for_log("Can't save in background: fork:")
        .expect("log line");
    assert!(
        line.ends_with("Can't save in background: fork: Cannot allocate memory"),
        "{line}"
    );
    let mut conn = server.client();
    let fields = info(&mut conn, "persistence");
    assert_eq!(fields["rdb_last_bgsave_status"], "err");
    assert_eq!(fields["rdb_bgsave_in_progress"], "0");
    assert_eq!(fields["rdb_saves"], "0");
    assert_eq!(number(&mut conn, "stats", "total_forks"), 0);
    assert!(!server.dir.join("dump.rdb").exists());
    // With a save point and stop-writes-on-bgsave-error (the default), writes are refused as
    // in Redis; reads go on.
    let misconf = raw.call(&[b"SET", b"k", b"w"]);
    assert!(misconf.starts_with(b"-MISCONF "), "{misconf:?}");
    assert_eq!(raw.call(&[b"GET", b"k"]), b"$1\r\nv\r\n");
    // An epoch save does not fork, so it succeeds and clears the error.
    assert_eq!(
        raw.call(&[b"BGSAVE", b"EPOCH"]),
        b"+Background saving started\r\n"
    );
    assert!(save_done_within(&mut conn, 30));
    assert_eq!(persistence(&mut conn, "rdb_last_bgsave_status"), "ok");
    assert_eq!(persistence(&mut conn, "rdb_last_bgsave_type"), "epoch");
    assert_eq!(raw.call(&[b"SET", b"k", b"w"]), b"+OK\r\n");
}

/// Starts a fork save slowed by the throttle and returns its child's pid once its temp file
/// exists.
fn start_slow_fork_save(server: &TestServer, dir: &TestDir) -> i32 {
    let mut conn = server.client();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("snapshot-max-bytes-per-sec")
        .arg("200000")
        .query(&mut conn)
        .expect("CONFIG SET");
    bgsave(&mut conn, &["FORK"]);
    let mut pid = -1;
    assert!(wait_until(Duration::from_secs(10), || {
        pid = persistence(&mut conn, "snapshot_fork_child_pid")
            .parse()
            .unwrap();
        pid > 0 && !dir.temp_files().is_empty()
    }));
    let fields = info(&mut conn, "persistence");
    assert_eq!(fields["rdb_current_bgsave_type"], "fork");
    assert_eq!(fields["rdb_bgsave_in_progress"], "1");
    assert!(fields["current_save_keys_total"].parse::<u64>().unwrap() >= 4000);
    let perc: f64 = fields["current_fork_perc"].parse().unwrap();
    assert!((0.0..=100.0).contains(&perc), "current_fork_perc {perc}");
    assert!(
        fields["rdb_current_bgsave_time_sec"]
            .parse::<i64>()
            .unwrap()
            >= 0
    );
    pid
}

fn process_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn killed_child_is_a_failed_save_and_leaves_the_previous_dump() {
    let dir = TestDir::new("fork-kill");
    let server = TestServer::start_in(BIN, &dir.0, &["--save", "", "--snapshot-mode", "fork"], &[]);
    let mut conn = server.client();
    populate(&mut conn, "k", 4000, 1000);
    bgsave(&mut conn, &[]);
    assert!(save_done_within(&mut conn, 30));
    assert_eq!(persistence(&mut conn, "rdb_last_bgsave_status"), "ok");
    let good = fs::read(dir.dump()).expect("first dump");
    populate(&mut conn, "more", 100, 10);

    let pid = start_slow_fork_save(&server, &dir);
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(
        server
            .wait_for_log("Background saving terminated by signal 9")
            .is_some()
    );
    assert!(save_done_within(&mut conn, 10));
    let fields = info(&mut conn, "persistence");
    assert_eq!(fields["rdb_last_bgsave_status"], "err");
    assert_eq!(fields["rdb_saves"], "1");
    assert_eq!(fields["snapshot_fork_child_pid"], "-1");
    assert!(dir.temp_files().is_empty(), "{:?}", dir.temp_files());
    assert!(
        fs::read(dir.dump()).expect("dump") == good,
        "previous dump changed"
    );
    assert!(!process_exists(pid), "child {pid} not reaped");
    // The server serves on, and the next save works.
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("snapshot-max-bytes-per-sec")
        .arg("0")
        .query(&mut conn)
        .expect("CONFIG SET");
    bgsave(&mut conn, &[]);
    assert!(save_done_within(&mut conn, 30));
    assert_eq!(persistence(&mut conn, "rdb_last_bgsave_status"), "ok");
    assert_eq!(dump_keys(&dir.dump())[&0], 4100);
}

#[test]
fn shutdown_kills_a_running_child_then_saves_in_the_foreground() {
    let dir = TestDir::new("fork-shutdown");
    let mut server = TestServer::start_in(
        BIN,
        &dir.0,
        &["--save", "3600 1", "--snapshot-mode", "fork"],
        &[],
    );
    let mut conn = server.client();
    populate(&mut conn, "k", 4000, 1000);
    let pid = start_slow_fork_save(&server, &dir);
    populate(&mut conn, "late", 10, 10);
    // The child keeps the throttle it was forked with; the final save runs at full speed.
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("snapshot-max-bytes-per-sec")
        .arg("0")
        .query(&mut conn)
        .expect("CONFIG SET");
    let mut raw = server.raw();
    raw.send_command(&[b"SHUTDOWN", b"SAVE"]);
    assert_eq!(raw.read_to_close(), b"");
    assert_eq!(server.wait_exit().code(), Some(0));
    assert!(
        server
            .wait_for_log("There is a child saving an .rdb. Killing it!")
            .is_some()
    );
    assert!(!process_exists(pid), "child {pid} still running");
    assert!(dir.temp_files().is_empty(), "{:?}", dir.temp_files());
    // The final save is the foreground epoch save of everything, including the late keys.
    assert_eq!(dump_keys(&dir.dump())[&0], 4010);
}

#[test]
fn fork_info_fields_are_sane_and_config_set_switches_the_mode() {
    let server = TestServer::start(BIN, &["--save", ""]);
    let mut conn = server.client();
    let fields = info(&mut conn, "persistence");
    for (field, value) in [
        ("snapshot_mode", "epoch"),
        ("rdb_last_bgsave_type", "none"),
        ("rdb_current_bgsave_type", "none"),
        ("rdb_last_cow_size", "0"),
        ("current_cow_size", "0"),
        ("current_cow_peak", "0"),
        ("current_cow_size_age", "0"),
        ("current_fork_perc", "0.00"),
        ("snapshot_fork_child_pid", "-1"),
    ] {
        assert_eq!(fields[field], value, "{field}");
    }
    assert_eq!(number(&mut conn, "stats", "latest_fork_usec"), 0);
    assert_eq!(number(&mut conn, "stats", "total_forks"), 0);
    populate(&mut conn, "k", 20_000, 100);

    // An epoch save forks nothing.
    bgsave(&mut conn, &[]);
    assert!(save_done_within(&mut conn, 30));
    assert_eq!(persistence(&mut conn, "rdb_last_bgsave_type"), "epoch");
    assert_eq!(number(&mut conn, "stats", "total_forks"), 0);
    // The pause of the cut (2048 shard locks) is measured, not left at 0.
    assert!(number(&mut conn, "persistence", "snapshot_last_cut_usec") > 0);

    // BGSAVE FORK forks whatever the mode says.
    bgsave(&mut conn, &["FORK"]);
    assert!(save_done_within(&mut conn, 30));
    let fields = info(&mut conn, "persistence");
    assert_eq!(fields["rdb_last_bgsave_status"], "ok");
    assert_eq!(fields["rdb_last_bgsave_type"], "fork");
    assert_eq!(fields["snapshot_mode"], "epoch");
    assert_eq!(fields["snapshot_last_keys_saved"], "20000");
    let cow: u64 = fields["rdb_last_cow_size"].parse().unwrap();
    // The child dirties at least its own stack and the pages malloc touches.
    assert!(cow > 0, "rdb_last_cow_size {cow}");
    let fork_usec = number(&mut conn, "stats", "latest_fork_usec");
    assert!(fork_usec > 0, "latest_fork_usec {fork_usec}");
    assert_eq!(number(&mut conn, "stats", "total_forks"), 1);
    // The fork pause (freeze + fork) includes the fork itself.
    assert!(number(&mut conn, "persistence", "snapshot_last_cut_usec") >= fork_usec);
    assert_eq!(dump_keys(&server.dir.join("dump.rdb"))[&0], 20_000);

    // CONFIG SET snapshot-mode fork makes plain BGSAVE fork; BGSAVE FORKLESS overrides it.
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("snapshot-mode")
        .arg("fork")
        .query(&mut conn)
        .expect("CONFIG SET");
    bgsave(&mut conn, &["SCHEDULE"]);
    assert!(save_done_within(&mut conn, 30));
    assert_eq!(persistence(&mut conn, "rdb_last_bgsave_type"), "fork");
    assert_eq!(number(&mut conn, "stats", "total_forks"), 2);
    bgsave(&mut conn, &["forkless", "schedule"]);
    assert!(save_done_within(&mut conn, 30));
    assert_eq!(persistence(&mut conn, "rdb_last_bgsave_type"), "epoch");
    assert_eq!(number(&mut conn, "stats", "total_forks"), 2);
    assert_eq!(persistence(&mut conn, "rdb_saves"), "4");

    // CONFIG RESETSTAT clears the fork counters, as in Redis.
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut conn)
        .expect("RESETSTAT");
    assert_eq!(number(&mut conn, "stats", "total_forks"), 0);
    assert_eq!(number(&mut conn, "stats", "latest_fork_usec"), 0);

    // Bad arguments are Redis's syntax error.
    let mut raw = server.raw();
    for args in [
        &[&b"BGSAVE"[..], b"FORK", b"EPOCH"][..],
        &[b"BGSAVE", b"FORK", b"FORK"],
        &[b"BGSAVE", b"SCHEDULE", b"SCHEDULE"],
        &[b"BGSAVE", b"NOW"],
    ] {
        assert_eq!(raw.call(args), b"-ERR syntax error\r\n", "{args:?}");
    }
}

#[test]
fn fork_zstd_dump_loads() {
    let server = TestServer::start(
        BIN,
        &[
            "--save",
            "",
            "--snapshot-mode",
            "fork",
            "--snapshot-compression",
            "zstd",
        ],
    );
    let mut conn = server.client();
    populate(&mut conn, "k", 3000, 300);
    bgsave(&mut conn, &[]);
    assert!(save_done_within(&mut conn, 30));
    assert_eq!(persistence(&mut conn, "rdb_last_bgsave_status"), "ok");
    let dump = server.dir.join("dump.rdb");
    let bytes = fs::read(&dump).expect("dump");
    assert_eq!(bytes.get(..4), Some(&format::ZSTD_MAGIC[..]));
    assert_eq!(dump_keys(&dump)[&0], 3000);
}

#[test]
fn real_redis_loads_a_fork_mode_dump_of_every_type() {
    let Some(redis_server) = redis_tool("redis-server") else {
        return;
    };
    let Some(check) = redis_tool("redis-check-rdb") else {
        return;
    };
    let dir = TestDir::new("fork-real-redis");
    let server = TestServer::start_in(BIN, &dir.0, &["--save", "", "--snapshot-mode", "fork"], &[]);
    let mut conn = server.client();
    for n in 0..4000 {
        write_everything(&mut conn, 0, n);
    }
    let () = redis::cmd("SET")
        .arg("long-ttl")
        .arg("v")
        .arg("EX")
        .arg(100_000)
        .query(&mut conn)
        .expect("SET");
    bgsave(&mut conn, &[]);
    assert!(save_done_within(&mut conn, 30));
    assert_eq!(persistence(&mut conn, "rdb_last_bgsave_status"), "ok");
    let output = Command::new(check)
        .arg(dir.dump())
        .output()
        .expect("run redis-check-rdb");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains("RDB looks OK"),
        "redis-check-rdb: {text}"
    );
    // Contents by type, as DUMP-independent summaries: every key's type and size.
    let summary = |conn: &mut redis::Connection| -> HashMap<String, (String, i64)> {
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(conn).expect("KEYS");
        keys.into_iter()
            .filter(|key| !key.starts_with("ttl"))
            .map(|key| {
                let kind: String = redis::cmd("TYPE").arg(&key).query(conn).expect("TYPE");
                let size: i64 = match kind.as_str() {
                    "string" => redis::cmd("STRLEN").arg(&key).query(conn),
                    "list" => redis::cmd("LLEN").arg(&key).query(conn),
                    "hash" => redis::cmd("HLEN").arg(&key).query(conn),
                    "set" => redis::cmd("SCARD").arg(&key).query(conn),
                    _ => redis::cmd("ZCARD").arg(&key).query(conn),
                }
                .expect("size");
                (key, (kind, size))
            })
            .collect()
    };
    let ours = summary(&mut conn);
    assert!(ours.len() > 20, "{ours:?}");
    drop(server);

    let (_redis, mut real) = start_real_redis_on(&redis_server, &dir.0);
    assert_eq!(summary(&mut real), ours);
    let ttl: i64 = redis::cmd("TTL")
        .arg("long-ttl")
        .query(&mut real)
        .expect("TTL");
    assert!(ttl > 99_000, "TTL {ttl}");
}

#[test]
fn save_points_fork_in_fork_mode() {
    let server = TestServer::start(BIN, &["--save", "1 1", "--snapshot-mode", "fork"]);
    let mut conn = server.client();
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut conn)
        .expect("SET");
    // The save point is due once more than a second has passed since startup with a change.
    assert!(
        wait_until(Duration::from_secs(20), || persistence(
            &mut conn,
            "rdb_saves"
        ) == "1"),
        "the save point did not save"
    );
    assert!(save_done_within(&mut conn, 10));
    assert_eq!(persistence(&mut conn, "rdb_last_bgsave_type"), "fork");
    assert_eq!(persistence(&mut conn, "rdb_changes_since_last_save"), "0");
    assert!(number(&mut conn, "stats", "total_forks") >= 1);
    assert_eq!(dump_keys(&server.dir.join("dump.rdb"))[&0], 1);
}

/// The lines a server prints up to its ready line; the server is killed afterwards.
fn startup_lines(args: &[&str]) -> Vec<String> {
    use std::io::BufRead;
    let dir = TestDir::new("startup");
    let mut child = ChildGuard(
        Command::new(BIN)
            .args(["--port", "0", "--save", "", "--dir"])
            .arg(&dir.0)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn forkless-server"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("read line");
        let ready = line.contains("Ready to accept connections");
        lines.push(line);
        if ready {
            break;
        }
    }
    assert!(
        lines.last().is_some_and(|l| l.contains("Ready")),
        "{lines:?}"
    );
    lines
}

#[test]
fn overcommit_warning_only_in_fork_mode() {
    const WARNING: &str = "WARNING Memory overcommit must be enabled! Without it, a background \
save or replication may fail under low memory condition. Being disabled, it can can also cause \
failures without low memory condition, see https://github.com/jemalloc/jemalloc/issues/1328. To \
fix this issue add 'vm.overcommit_memory = 1' to /etc/sysctl.conf and then reboot or run the \
command 'sysctl vm.overcommit_memory=1' for this to take effect.";
    let overcommit = fs::read_to_string("/proc/sys/vm/overcommit_memory").expect("sysctl");
    let warned = |lines: &[String]| lines.iter().any(|line| line.ends_with(WARNING));
    assert_eq!(
        warned(&startup_lines(&["--snapshot-mode", "fork"])),
        overcommit.trim() != "1",
        "vm.overcommit_memory = {}",
        overcommit.trim()
    );
    assert!(!warned(&startup_lines(&[])));
    if overcommit.trim() == "1" {
        eprintln!("!!!!! vm.overcommit_memory is 1 here: the warning's presence was not tested");
    }
}
