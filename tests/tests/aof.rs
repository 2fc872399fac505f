//! The append-only file (issue 18): Redis 7.0's multi-part layout written from the effect
//! stream, loaded at startup, rewritten from an epoch cut without fork, interchangeable with
//! redis-server 7.0 and redis-check-aof, and durable with `appendfsync always` across kill -9.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use forkless_tests::{TestDir, TestServer, redis_tool, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

fn aof_dir(dir: &TestDir) -> PathBuf {
    dir.0.join("appendonlydir")
}

fn manifest(dir: &TestDir) -> String {
    std::fs::read_to_string(aof_dir(dir).join("appendonly.aof.manifest")).expect("manifest")
}

fn kill9(server: &TestServer) {
    let status = Command::new("kill")
        .args(["-9", &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn info_field(conn: &mut redis::Connection, name: &str) -> String {
    let text: String = redis::cmd("INFO")
        .arg("persistence")
        .query(conn)
        .expect("INFO");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .to_owned()
}

/// Returns true if and only if no rewrite is running or scheduled: INFO's
/// `aof_rewrite_in_progress:0` and `aof_rewrite_scheduled:0`. A rewrite asked for shows as in
/// progress from the reply on (`aof_rewrites` counts it as it starts, as Redis), so after one
/// was asked for this is its end.
fn rewrite_finished(conn: &mut redis::Connection) -> bool {
    info_field(conn, "aof_rewrite_in_progress") == "0"
        && info_field(conn, "aof_rewrite_scheduled") == "0"
}

/// Every key of databases 0-3 with its type and content, in a form that compares.
fn dataset(conn: &mut redis::Connection) -> Vec<(i64, String, String, String)> {
    let mut all = Vec::new();
    for db in 0..4 {
        let _: () = redis::cmd("SELECT").arg(db).query(conn).expect("SELECT");
        let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(conn).expect("KEYS");
        keys.sort();
        for key in keys {
            let kind: String = redis::cmd("TYPE").arg(&key).query(conn).expect("TYPE");
            let content = match kind.as_str() {
                "string" => {
                    let value: Vec<u8> = redis::cmd("GET").arg(&key).query(conn).expect("GET");
                    String::from_utf8(value.clone()).unwrap_or_else(|_| format!("{value:?}"))
                }
                "list" => format!(
                    "{:?}",
                    redis::cmd("LRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .query::<Vec<String>>(conn)
                        .expect("LRANGE")
                ),
                "hash" => {
                    let mut pairs: Vec<(String, String)> = redis::cmd("HGETALL")
                        .arg(&key)
                        .query(conn)
                        .expect("HGETALL");
                    pairs.sort();
                    format!("{pairs:?}")
                }
                "set" => {
                    let mut members: Vec<String> = redis::cmd("SMEMBERS")
                        .arg(&key)
                        .query(conn)
                        .expect("SMEMBERS");
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
                        .query::<Vec<String>>(conn)
                        .expect("ZRANGE")
                ),
                // Entries, counters, groups and who owns what: everything but the clocks.
                "stream" => {
                    let query = |conn: &mut redis::Connection, words: &[&str]| {
                        let mut cmd = redis::cmd(words[0]);
                        for word in &words[1..] {
                            cmd.arg(*word);
                        }
                        format!(
                            "{:?}",
                            cmd.query::<redis::Value>(conn).expect("stream read")
                        )
                    };
                    let mut groups = Vec::new();
                    let names: Vec<Vec<(String, redis::Value)>> = redis::cmd("XINFO")
                        .arg("GROUPS")
                        .arg(&key)
                        .query(conn)
                        .expect("XINFO GROUPS");
                    for group in &names {
                        let name = group
                            .iter()
                            .find(|(field, _)| field == "name")
                            .map(|(_, value)| {
                                redis::from_redis_value::<String>(value.clone()).expect("name")
                            })
                            .expect("group name");
                        groups.push(format!("{group:?}"));
                        groups.push(query(conn, &["XPENDING", &key, &name]));
                        let consumers: Vec<Vec<(String, redis::Value)>> = redis::cmd("XINFO")
                            .arg("CONSUMERS")
                            .arg(&key)
                            .arg(&name)
                            .query(conn)
                            .expect("XINFO CONSUMERS");
                        for consumer in consumers {
                            let owned: Vec<String> = consumer
                                .into_iter()
                                .filter(|(field, _)| field == "name" || field == "pending")
                                .map(|(field, value)| format!("{field}={value:?}"))
                                .collect();
                            groups.push(owned.join(" "));
                        }
                    }
                    format!(
                        "{} {} {groups:?}",
                        query(conn, &["XRANGE", &key, "-", "+"]),
                        query(conn, &["XINFO", "STREAM", &key])
                    )
                }
                other => panic!("unexpected type {other}"),
            };
            all.push((db, key, kind, content));
        }
    }
    let _: () = redis::cmd("SELECT").arg(0).query(conn).expect("SELECT");
    all
}

/// Writes of every type, in several databases, in a transaction, with expiries.
fn write_mixed(conn: &mut redis::Connection, tag: &str) {
    let run = |conn: &mut redis::Connection, words: &[&str]| {
        let mut cmd = redis::cmd(words.first().expect("a command"));
        for word in words.get(1..).unwrap_or_default() {
            cmd.arg(*word);
        }
        cmd.query::<redis::Value>(conn)
            .unwrap_or_else(|err| panic!("{words:?}: {err}"));
    };
    let key = |name: &str| format!("{tag}:{name}");
    run(conn, &["SET", &key("s"), "v"]);
    run(conn, &["SET", &key("ttl"), "v", "EX", "1000"]);
    run(conn, &["INCRBYFLOAT", &key("f"), "1.25"]);
    run(conn, &["RPUSH", &key("l"), "a", "b", "c"]);
    run(conn, &["LPOP", &key("l")]);
    run(conn, &["HSET", &key("h"), "f1", "1", "f2", "2"]);
    run(conn, &["SADD", &key("set"), "x", "y", "z"]);
    run(conn, &["SPOP", &key("set")]);
    run(conn, &["ZADD", &key("z"), "1", "a", "2.5", "b"]);
    run(conn, &["SELECT", "2"]);
    run(conn, &["SET", &key("db2"), "two"]);
    run(conn, &["MULTI"]);
    run(conn, &["INCR", &key("counter")]);
    run(conn, &["SELECT", "3"]);
    run(conn, &["LPUSH", &key("db3"), "q"]);
    run(conn, &["EXEC"]);
    run(conn, &["SELECT", "0"]);
    run(conn, &["SET", &key("gone"), "v", "PX", "1"]);
    // Until the key has expired (the lookup that finds it expired logs its DEL).
    assert!(wait_until(Duration::from_secs(5), || {
        redis::cmd("EXISTS")
            .arg(key("gone"))
            .query::<i64>(conn)
            .expect("EXISTS")
            == 0
    }));
    run(conn, &["DEL", &key("nothing")]);
}

fn start(dir: &TestDir, args: &[&str]) -> TestServer {
    TestServer::start_in(BIN, &dir.0, args, &[])
}

/// Runs the server expecting it to refuse to start; returns its output.
fn refused(dir: &Path, args: &[&str]) -> String {
    let mut child = Command::new(BIN)
        .args(["--port", "0", "--dir"])
        .arg(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started on a bad AOF");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    assert_eq!(output.status.code(), Some(1));
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn writes_survive_kill_9_through_the_aof_and_dump_rdb_is_not_loaded() {
    let dir = TestDir::new("aof-restart");
    let server = start(&dir, &["--appendonly", "yes", "--appendfsync", "always"]);
    let mut conn = server.client();
    assert_eq!(info_field(&mut conn, "aof_enabled"), "1");
    write_mixed(&mut conn, "a");
    let before = dataset(&mut conn);
    assert!(before.len() >= 10, "{before:?}");
    assert_eq!(
        manifest(&dir),
        "file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n"
    );
    kill9(&server);
    drop(server);
    // A dump.rdb beside the AOF is not what loads with appendonly yes.
    std::fs::write(dir.dump(), b"not an rdb").expect("write");
    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    assert_eq!(dataset(&mut conn), before);
    let ttl: i64 = redis::cmd("TTL")
        .arg("a:ttl")
        .query(&mut conn)
        .expect("TTL");
    assert!(ttl > 900, "ttl {ttl}");
}

#[test]
fn a_truncated_last_command_is_loaded_or_refused_per_aof_load_truncated() {
    let dir = TestDir::new("aof-truncated");
    let server = start(&dir, &["--appendonly", "yes", "--appendfsync", "always"]);
    let mut conn = server.client();
    write_mixed(&mut conn, "t");
    let before = dataset(&mut conn);
    drop(conn);
    kill9(&server);
    drop(server);
    let incr = aof_dir(&dir).join("appendonly.aof.1.incr.aof");
    let valid = std::fs::metadata(&incr).expect("incr").len();
    let mut data = std::fs::read(&incr).expect("read");
    data.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$9\r\ntrunc");
    std::fs::write(&incr, &data).expect("write");

    let output = refused(
        &dir.0,
        &["--appendonly", "yes", "--aof-load-truncated", "no"],
    );
    assert!(
        output.contains("Unexpected end of file") && output.contains("redis-check-aof --fix"),
        "{output}"
    );

    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    assert_eq!(dataset(&mut conn), before);
    // The partial command is cut off (what follows `valid` now is only what this run logged,
    // such as the DEL of a key that expired meanwhile).
    let after = std::fs::read(&incr).expect("read");
    assert_eq!(after.get(..valid as usize), data.get(..valid as usize));
    assert!(!after.windows(5).any(|w| w == b"trunc"), "{after:?}");
}

#[test]
fn a_corrupt_incr_file_refuses_to_start_naming_file_offset_and_fix() {
    let dir = TestDir::new("aof-corrupt");
    let server = start(&dir, &["--appendonly", "yes", "--appendfsync", "always"]);
    let mut conn = server.client();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut conn)
        .expect("SET");
    drop(conn);
    kill9(&server);
    drop(server);
    let incr = aof_dir(&dir).join("appendonly.aof.1.incr.aof");
    let mut data = std::fs::read(&incr).expect("read");
    let offset = data.len();
    data.extend_from_slice(b"garbage\r\n*1\r\n$4\r\nPING\r\n");
    std::fs::write(&incr, &data).expect("write");
    let output = refused(&dir.0, &["--appendonly", "yes"]);
    assert!(
        output.contains("appendonly.aof.1.incr.aof")
            && output.contains(&format!("offset {offset}"))
            && output.contains("redis-check-aof --fix"),
        "{output}"
    );
    // Never overwritten.
    assert_eq!(std::fs::read(&incr).expect("read"), data);
}

#[test]
fn bgrewriteaof_makes_a_new_base_and_incr_and_deletes_history() {
    let dir = TestDir::new("aof-rewrite");
    let server = start(&dir, &["--appendonly", "yes", "--appendfsync", "always"]);
    let mut conn = server.client();
    write_mixed(&mut conn, "before");
    // Writers run through the rewrite.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let mut conn = server.client();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _: () = redis::cmd("SET")
                    .arg(format!("during:{}", i % 500))
                    .arg(i)
                    .query(&mut conn)
                    .expect("SET");
                i += 1;
            }
            i
        })
    };
    let reply: String = redis::cmd("BGREWRITEAOF")
        .query(&mut conn)
        .expect("BGREWRITEAOF");
    assert_eq!(reply, "Background append only file rewriting started");
    assert!(wait_until(Duration::from_secs(20), || rewrite_finished(
        &mut conn
    )));
    assert_eq!(info_field(&mut conn, "aof_last_bgrewrite_status"), "ok");
    assert_eq!(info_field(&mut conn, "aof_rewrites"), "1");
    write_mixed(&mut conn, "after");
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().expect("writer");
    assert!(written > 0);
    assert_eq!(info_field(&mut conn, "aof_last_bgrewrite_status"), "ok");
    assert_eq!(
        manifest(&dir),
        "file appendonly.aof.2.base.rdb seq 2 type b\nfile appendonly.aof.2.incr.aof seq 2 type i\n"
    );
    let mut files: Vec<String> = std::fs::read_dir(aof_dir(&dir))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "appendonly.aof.2.base.rdb",
            "appendonly.aof.2.incr.aof",
            "appendonly.aof.manifest"
        ]
    );
    let before = dataset(&mut conn);
    drop(conn);
    kill9(&server);
    drop(server);
    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    assert_eq!(dataset(&mut conn), before);
}

#[test]
fn config_set_appendonly_yes_writes_the_base_then_switches_on() {
    let dir = TestDir::new("aof-runtime");
    let server = start(&dir, &["--appendonly", "no", "--appendfsync", "always"]);
    let mut conn = server.client();
    write_mixed(&mut conn, "pre");
    assert_eq!(info_field(&mut conn, "aof_enabled"), "0");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendonly")
        .arg("yes")
        .query(&mut conn)
        .expect("CONFIG SET");
    // On at once (Redis's AOF_WAIT_REWRITE counts as on), durable once the rewrite is done.
    assert_eq!(info_field(&mut conn, "aof_enabled"), "1");
    assert!(wait_until(Duration::from_secs(20), || rewrite_finished(
        &mut conn
    )));
    assert_eq!(info_field(&mut conn, "aof_last_bgrewrite_status"), "ok");
    assert_eq!(info_field(&mut conn, "aof_rewrites"), "1");
    write_mixed(&mut conn, "post");
    let before = dataset(&mut conn);
    drop(conn);
    kill9(&server);
    drop(server);
    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    assert_eq!(dataset(&mut conn), before);
}

/// With `appendfsync always` a reply means the write is on disk: concurrent writers record
/// every acknowledged write, the server is killed with SIGKILL mid-stream (every other time
/// during a BGREWRITEAOF), and after each restart every acknowledged write is there.
#[test]
fn appendfsync_always_loses_no_acknowledged_write_across_kill_9() {
    acknowledged_writes_survive_kill_9("aof-kill9", &["always"; 6]);
}

/// With `appendfsync everysec` and `no`, as in Redis (which writes the AOF buffer before the
/// replies go out), a reply means the write has reached the file (write(2), not fsync), so a
/// kill -9 of the process loses no acknowledged write. Regression: the writer used to gather
/// effects for up to a millisecond while their replies had already gone out, and the last
/// acknowledged writes before the kill were missing after the restart.
#[test]
fn appendfsync_everysec_and_no_lose_no_acknowledged_write_across_kill_9() {
    acknowledged_writes_survive_kill_9(
        "aof-kill9-written",
        &["everysec", "no", "everysec", "no", "everysec", "everysec"],
    );
}

/// The connections write the AOF themselves with `everysec` and `no` (one leads each write,
/// the others wait for it): 32 connections sending pipelines of 1 to 8 SETs, each recording
/// the last value acknowledged, the server killed with SIGKILL while they run. Every
/// connection must keep being answered (a lost wakeup would stall it: the test fails at its
/// deadline), and after each restart every acknowledged write is there.
#[test]
fn many_pipelining_connections_lose_no_acknowledged_write_across_kill_9() {
    const WRITERS: u64 = 32;
    let dir = TestDir::new("aof-kill9-many");
    let mut acked: Vec<(String, u64)> = Vec::new();
    for (round, policy) in (0u64..).zip(["everysec", "no", "everysec", "no"]) {
        let server = start(&dir, &["--appendonly", "yes", "--appendfsync", policy]);
        {
            let mut conn = server.client();
            for (key, value) in &acked {
                let got: Option<u64> = redis::cmd("GET").arg(key).query(&mut conn).expect("GET");
                assert!(
                    got.is_some_and(|got| got >= *value),
                    "round {round} ({policy}): {key} acknowledged {value}, found {got:?}"
                );
            }
        }
        let answered: Arc<Vec<std::sync::atomic::AtomicU64>> =
            Arc::new((0..WRITERS).map(|_| Default::default()).collect());
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let mut conn = server.client();
                let answered = Arc::clone(&answered);
                std::thread::spawn(move || {
                    let key = format!("m{round}:w{w}");
                    let mut last = None;
                    let mut value = 0u64;
                    for batch in 0u64.. {
                        let mut pipe = redis::pipe();
                        for _ in 0..=(batch + w) % 8 {
                            value += 1;
                            pipe.cmd("SET").arg(&key).arg(value).ignore();
                        }
                        let ok: redis::RedisResult<()> = pipe.query(&mut conn);
                        if ok.is_err() {
                            break;
                        }
                        last = Some((key.clone(), value));
                        if let Some(count) = answered.get(usize::try_from(w).unwrap_or(0)) {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    last
                })
            })
            .collect();
        // Every connection is answered again and again: none waits forever for a write.
        for goal in [20, 60] {
            assert!(
                wait_until(Duration::from_secs(30), || answered
                    .iter()
                    .all(|count| count.load(Ordering::Relaxed) >= goal)),
                "round {round} ({policy}): a connection stopped being answered: {answered:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(round * 20));
        kill9(&server);
        for writer in writers {
            if let Some(last) = writer.join().expect("writer") {
                acked.push(last);
            }
        }
        drop(server);
    }
    assert_eq!(acked.len(), 4 * 32);
    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    for (key, value) in &acked {
        let got: Option<u64> = redis::cmd("GET").arg(key).query(&mut conn).expect("GET");
        // An unanswered pipeline may have reached the file before the kill.
        assert!(
            got.is_some_and(|got| got >= *value),
            "{key}: {value} vs {got:?}"
        );
    }
}

/// Concurrent writers record every acknowledged write; the server, with the `appendfsync`
/// policy of each round, is killed with SIGKILL mid-stream (every other round during a
/// BGREWRITEAOF); after each restart every acknowledged write is there.
fn acknowledged_writes_survive_kill_9(name: &str, policies: &[&str]) {
    let dir = TestDir::new(name);
    let mut acked: Vec<(String, u64)> = Vec::new();
    for (round, policy) in (0u64..).zip(policies) {
        let server = start(&dir, &["--appendonly", "yes", "--appendfsync", policy]);
        {
            let mut conn = server.client();
            for (key, value) in &acked {
                let got: Option<u64> = redis::cmd("GET").arg(key).query(&mut conn).expect("GET");
                assert!(
                    got.is_some_and(|got| got >= *value),
                    "round {round} ({policy}): {key} acknowledged {value}, found {got:?}"
                );
            }
        }
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let mut conn = server.client();
                std::thread::spawn(move || {
                    let mut last = None;
                    for i in 1.. {
                        let key = format!("r{round}:w{w}");
                        let ok: redis::RedisResult<()> =
                            redis::cmd("SET").arg(&key).arg(i).query(&mut conn);
                        if ok.is_err() {
                            break;
                        }
                        last = Some((key, i));
                    }
                    last
                })
            })
            .collect();
        if round % 2 == 1 {
            // This kill lands during (or just after) a rewrite: a new incr, the base, the
            // manifest replaced, history deleted.
            std::thread::sleep(Duration::from_millis(50));
            let mut conn = server.client();
            let _: String = redis::cmd("BGREWRITEAOF")
                .query(&mut conn)
                .expect("BGREWRITEAOF");
            std::thread::sleep(Duration::from_millis(round * 3));
        } else {
            std::thread::sleep(Duration::from_millis(150 + round * 70));
        }
        kill9(&server);
        for writer in writers {
            if let Some(last) = writer.join().expect("writer") {
                acked.push(last);
            }
        }
        drop(server);
    }
    assert!(acked.len() >= 8, "{acked:?}");
    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    for (key, value) in &acked {
        let got: Option<u64> = redis::cmd("GET").arg(key).query(&mut conn).expect("GET");
        assert!(
            got.is_some_and(|got| got >= *value),
            "{key}: {value} vs {got:?}"
        );
    }
}

#[test]
fn redis_check_aof_and_redis_server_accept_forklesss_aof_and_forkless_loads_redis_servers() {
    let (Some(check), Some(redis_server)) =
        (redis_tool("redis-check-aof"), redis_tool("redis-server"))
    else {
        return;
    };
    let dir = TestDir::new("aof-interchange");
    let server = start(&dir, &["--appendonly", "yes", "--appendfsync", "always"]);
    let mut conn = server.client();
    write_mixed(&mut conn, "fk");
    let before = dataset(&mut conn);
    drop(conn);
    kill9(&server);
    drop(server);
    let output = Command::new(&check)
        .arg(aof_dir(&dir).join("appendonly.aof.manifest"))
        .output()
        .expect("redis-check-aof");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains("All AOF files and manifest are valid"),
        "{text}"
    );

    // redis-server 7.0 on forkless's directory loads the same dataset, then writes some more.
    let port = forkless_tests::free_port();
    let real = forkless_tests::ChildGuard(
        Command::new(&redis_server)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(&dir.0)
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server"),
    );
    let url = format!("redis://127.0.0.1:{port}/");
    let mut rconn = None;
    assert!(wait_until(Duration::from_secs(20), || {
        let Ok(mut c) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection()) else {
            return false;
        };
        let ready = redis::cmd("PING").query::<String>(&mut c).is_ok();
        if ready {
            rconn = Some(c);
        }
        ready
    }));
    let mut rconn = rconn.expect("connected");
    assert_eq!(dataset(&mut rconn), before);
    write_mixed(&mut rconn, "redis");
    let reply: String = redis::cmd("BGREWRITEAOF")
        .query(&mut rconn)
        .expect("BGREWRITEAOF");
    assert!(reply.starts_with("Background append only file rewriting"));
    assert!(wait_until(Duration::from_secs(20), || {
        let text: String = redis::cmd("INFO")
            .arg("persistence")
            .query(&mut rconn)
            .expect("INFO");
        text.contains("aof_rewrite_in_progress:0") && text.contains("aof_rewrite_scheduled:0")
    }));
    write_mixed(&mut rconn, "redis2");
    let after = dataset(&mut rconn);
    drop(rconn);
    drop(real);

    // forkless on the directory redis-server wrote.
    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    assert_eq!(dataset(&mut conn), after);
}

#[test]
fn the_aof_is_rewritten_automatically_when_it_grows_past_the_percentage() {
    let dir = TestDir::new("aof-auto");
    let server = start(
        &dir,
        &[
            "--appendonly",
            "yes",
            "--auto-aof-rewrite-percentage",
            "100",
            "--auto-aof-rewrite-min-size",
            "64kb",
        ],
    );
    let mut conn = server.client();
    let value = "x".repeat(1000);
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{}", i % 10))
            .arg(&value)
            .query(&mut conn)
            .expect("SET");
    }
    assert!(
        wait_until(Duration::from_secs(20), || info_field(
            &mut conn,
            "aof_rewrites"
        ) != "0"
            && rewrite_finished(&mut conn)),
        "no automatic rewrite"
    );
    assert!(
        server
            .wait_for_log("Starting automatic rewriting of AOF")
            .is_some()
    );
    // Ten keys of 1000 bytes: the new base is small.
    let base: u64 = info_field(&mut conn, "aof_base_size")
        .parse()
        .expect("size");
    assert!(base < 30_000, "{base}");
}

#[test]
fn timestamp_annotations_are_written_and_skipped_on_load() {
    let dir = TestDir::new("aof-ts");
    let server = start(
        &dir,
        &[
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--aof-timestamp-enabled",
            "yes",
        ],
    );
    let mut conn = server.client();
    write_mixed(&mut conn, "ts");
    let before = dataset(&mut conn);
    drop(conn);
    kill9(&server);
    drop(server);
    let incr = std::fs::read(aof_dir(&dir).join("appendonly.aof.1.incr.aof")).expect("incr file");
    assert!(
        incr.starts_with(b"#TS:"),
        "{:?}",
        String::from_utf8_lossy(&incr)
    );
    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    assert_eq!(dataset(&mut conn), before);
}

#[test]
fn config_set_appendonly_no_stops_logging_and_info_follows() {
    let dir = TestDir::new("aof-off");
    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    assert_eq!(info_field(&mut conn, "aof_enabled"), "1");
    assert_eq!(info_field(&mut conn, "aof_last_write_status"), "ok");
    assert_eq!(info_field(&mut conn, "aof_rewrites"), "0");
    assert_eq!(info_field(&mut conn, "aof_last_rewrite_time_sec"), "-1");
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut conn)
        .expect("SET");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg("always")
        .query(&mut conn)
        .expect("CONFIG SET");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendonly")
        .arg("no")
        .query(&mut conn)
        .expect("CONFIG SET");
    assert_eq!(info_field(&mut conn, "aof_enabled"), "0");
    let incr = aof_dir(&dir).join("appendonly.aof.1.incr.aof");
    let size = std::fs::metadata(&incr).expect("incr").len();
    assert!(size > 0);
    let _: () = redis::cmd("SET")
        .arg("k2")
        .arg("v")
        .query(&mut conn)
        .expect("SET");
    assert_eq!(std::fs::metadata(&incr).expect("incr").len(), size);
}

/// Redis 7.0's aof.c: with `everysec`, a failed AOF write refuses writes with MISCONF (reads are
/// served) until a retry succeeds, then writes resume by themselves and nothing acknowledged is
/// lost; the short writes of the failures are cut off, so the file stays valid.
#[test]
fn a_failing_aof_write_refuses_writes_with_misconf_until_it_recovers() {
    let dir = TestDir::new("aof-enospc");
    let server = TestServer::start_in(
        BIN,
        &dir.0,
        &["--appendonly", "yes", "--appendfsync", "everysec"],
        // Each failed write leaves 7 bytes of a command behind, which must be cut off again.
        &[("FORKLESS_AOF_FAULT", "after=300,errno=28,times=15,short=7")],
    );
    let mut conn = server.client();
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..10_000 {
        let reply: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut conn);
        match reply {
            Ok(()) => acked.push(i),
            Err(err) => {
                refused = Some(err.to_string());
                break;
            }
        }
    }
    let refused = refused.expect("writes were never refused");
    assert!(
        refused.contains("MISCONF")
            && refused.contains("Errors writing to the AOF file: No space left on device"),
        "{refused}"
    );
    assert_eq!(info_field(&mut conn, "aof_last_write_status"), "err");
    assert!(
        server
            .wait_for_log("Short write while writing to the AOF file")
            .is_some()
    );
    let got: Option<u64> = redis::cmd("GET").arg("k0").query(&mut conn).expect("GET");
    assert_eq!(got, Some(0));
    assert!(wait_until(Duration::from_secs(20), || {
        redis::cmd("SET")
            .arg("after")
            .arg("1")
            .query::<()>(&mut conn)
            .is_ok()
    }));
    assert_eq!(info_field(&mut conn, "aof_last_write_status"), "ok");
    assert!(wait_until(Duration::from_secs(10), || info_field(
        &mut conn,
        "aof_buffer_length"
    ) == "0"));
    drop(conn);
    kill9(&server);
    drop(server);
    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    for i in &acked {
        let got: Option<u64> = redis::cmd("GET")
            .arg(format!("k{i}"))
            .query(&mut conn)
            .expect("GET");
        assert_eq!(got, Some(*i));
    }
    let after: Option<u64> = redis::cmd("GET")
        .arg("after")
        .query(&mut conn)
        .expect("GET");
    assert_eq!(after, Some(1));
}

/// Redis 7.0's aof.c: with `always`, a write that could not be persisted is never
/// acknowledged: the server exits.
#[test]
fn a_failing_aof_write_with_always_exits_without_acknowledging() {
    let dir = TestDir::new("aof-eio");
    let mut server = TestServer::start_in(
        BIN,
        &dir.0,
        &["--appendonly", "yes", "--appendfsync", "always"],
        &[("FORKLESS_AOF_FAULT", "after=0,errno=5")],
    );
    let mut conn = server.client();
    let reply: redis::RedisResult<()> = redis::cmd("SET").arg("k").arg("v").query(&mut conn);
    assert!(
        reply.is_err(),
        "a write the AOF could not persist was acknowledged"
    );
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(1));
}

#[test]
fn without_the_rdb_preamble_the_base_is_commands_that_load_back() {
    let dir = TestDir::new("aof-nopreamble");
    let server = start(
        &dir,
        &[
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--aof-use-rdb-preamble",
            "no",
        ],
    );
    let mut conn = server.client();
    assert_eq!(
        manifest(&dir),
        "file appendonly.aof.1.base.aof seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n"
    );
    write_mixed(&mut conn, "np");
    // A collection longer than one batch of 64.
    for i in 0..150 {
        let _: () = redis::cmd("RPUSH")
            .arg("np:long")
            .arg(i)
            .query(&mut conn)
            .expect("RPUSH");
        let _: () = redis::cmd("ZADD")
            .arg("np:zlong")
            .arg(f64::from(i) / 3.0)
            .arg(i)
            .query(&mut conn)
            .expect("ZADD");
    }
    // Streams: entries, a deleted entry, groups with pending entries and an idle consumer, and
    // an empty stream that still exists.
    for words in [
        &["XADD", "np:stream", "1-1", "a", "1"][..],
        &["XADD", "np:stream", "2-1", "b", "2", "c", "3"],
        &["XADD", "np:stream", "3-1", "d", "4"],
        &["XDEL", "np:stream", "2-1"],
        &["XGROUP", "CREATE", "np:stream", "g1", "0"],
        &[
            "XREADGROUP",
            "GROUP",
            "g1",
            "alice",
            "COUNT",
            "1",
            "STREAMS",
            "np:stream",
            ">",
        ],
        &["XGROUP", "CREATECONSUMER", "np:stream", "g1", "bob"],
        &["XGROUP", "CREATE", "np:stream", "g2", "$"],
        &["XADD", "np:empty", "5-5", "x", "y"],
        &["XDEL", "np:empty", "5-5"],
    ] {
        let mut cmd = redis::cmd(words[0]);
        for word in &words[1..] {
            cmd.arg(*word);
        }
        cmd.query::<redis::Value>(&mut conn)
            .unwrap_or_else(|err| panic!("{words:?}: {err}"));
    }
    let _: String = redis::cmd("BGREWRITEAOF")
        .query(&mut conn)
        .expect("BGREWRITEAOF");
    assert!(wait_until(Duration::from_secs(20), || rewrite_finished(
        &mut conn
    )));
    assert_eq!(info_field(&mut conn, "aof_last_bgrewrite_status"), "ok");
    assert_eq!(
        manifest(&dir),
        "file appendonly.aof.2.base.aof seq 2 type b\nfile appendonly.aof.2.incr.aof seq 2 type i\n"
    );
    let base = std::fs::read(aof_dir(&dir).join("appendonly.aof.2.base.aof")).expect("base");
    assert!(base.starts_with(b"*2\r\n$6\r\nSELECT\r\n"));
    let before = dataset(&mut conn);
    drop(conn);
    kill9(&server);
    drop(server);
    if let Some(check) = redis_tool("redis-check-aof") {
        let output = Command::new(&check)
            .arg(aof_dir(&dir).join("appendonly.aof.manifest"))
            .output()
            .expect("redis-check-aof");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && text.contains("All AOF files and manifest are valid"),
            "{text}"
        );
    }
    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    assert_eq!(dataset(&mut conn), before);
    let ttl: i64 = redis::cmd("TTL")
        .arg("np:ttl")
        .query(&mut conn)
        .expect("TTL");
    assert!(ttl > 900, "ttl {ttl}");
}

/// While a rewrite holds the keyspace's one cut, BGSAVE answers as Redis's does while its AOF
/// child runs (refused, or scheduled with SCHEDULE and run when the rewrite ends), and a
/// second BGREWRITEAOF is refused.
#[test]
fn bgsave_during_a_rewrite_is_refused_or_scheduled_as_redis() {
    let dir = TestDir::new("aof-bgsave");
    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    forkless_tests::populate(&mut conn, "k", 2000, 100);
    // Slow the base down so the rewrite is still running for the commands below.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("snapshot-max-bytes-per-sec")
        .arg("100kb")
        .query(&mut conn)
        .expect("CONFIG SET");
    let _: String = redis::cmd("BGREWRITEAOF")
        .query(&mut conn)
        .expect("BGREWRITEAOF");
    let again: redis::RedisResult<String> = redis::cmd("BGREWRITEAOF").query(&mut conn);
    let again = again.expect_err("a second rewrite").to_string();
    assert!(
        again.contains("Background append only file rewriting already in progress"),
        "{again}"
    );
    let refused: redis::RedisResult<String> = redis::cmd("BGSAVE").query(&mut conn);
    let refused = refused.expect_err("BGSAVE during a rewrite").to_string();
    assert!(
        refused.contains("Another child process is active (AOF?): can't BGSAVE right now"),
        "{refused}"
    );
    let scheduled: String = redis::cmd("BGSAVE")
        .arg("SCHEDULE")
        .query(&mut conn)
        .expect("BGSAVE SCHEDULE");
    assert_eq!(scheduled, "Background saving scheduled");
    assert_eq!(info_field(&mut conn, "aof_rewrite_in_progress"), "1");
    // Counted as it started, as Redis counts a rewrite (issue 18).
    assert_eq!(info_field(&mut conn, "aof_rewrites"), "1");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("snapshot-max-bytes-per-sec")
        .arg("0")
        .query(&mut conn)
        .expect("CONFIG SET");
    assert!(wait_until(Duration::from_secs(30), || {
        rewrite_finished(&mut conn) && info_field(&mut conn, "rdb_saves") == "1"
    }));
    assert!(dir.dump().exists());
}

/// BGREWRITEAOF while a BGSAVE holds the cut is scheduled, as Redis schedules it while its
/// RDB child runs, and runs when the save ends.
#[test]
fn bgrewriteaof_during_a_bgsave_is_scheduled() {
    let dir = TestDir::new("aof-scheduled");
    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    forkless_tests::populate(&mut conn, "k", 2000, 100);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("snapshot-max-bytes-per-sec")
        .arg("100kb")
        .query(&mut conn)
        .expect("CONFIG SET");
    let _: String = redis::cmd("BGSAVE").query(&mut conn).expect("BGSAVE");
    let reply: String = redis::cmd("BGREWRITEAOF")
        .query(&mut conn)
        .expect("BGREWRITEAOF");
    assert_eq!(reply, "Background append only file rewriting scheduled");
    // At once, as Redis's INFO shows it right after the reply.
    assert_eq!(info_field(&mut conn, "aof_rewrite_scheduled"), "1");
    let _: () = redis::cmd("SET")
        .arg("during")
        .arg("1")
        .query(&mut conn)
        .expect("SET");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("snapshot-max-bytes-per-sec")
        .arg("0")
        .query(&mut conn)
        .expect("CONFIG SET");
    assert!(wait_until(Duration::from_secs(30), || rewrite_finished(
        &mut conn
    )));
    assert_eq!(info_field(&mut conn, "aof_rewrites"), "1");
    let before = dataset(&mut conn);
    drop(conn);
    kill9(&server);
    drop(server);
    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    assert_eq!(dataset(&mut conn), before);
}

#[test]
fn aof_file_and_directory_names_must_be_plain_names() {
    let dir = TestDir::new("aof-names");
    let output = refused(&dir.0, &["--appendfilename", "sub/x.aof"]);
    assert!(
        output.contains("appendfilename can't be a path, just a filename"),
        "{output}"
    );
    let output = refused(&dir.0, &["--appenddirname", "/tmp/elsewhere"]);
    assert!(
        output.contains("appenddirname can't be a path, just a dirname"),
        "{output}"
    );
    let output = refused(&dir.0, &["--appendfilename", ""]);
    assert!(output.contains("appendfilename can't be empty"), "{output}");
    // Other names are used as given.
    let server = start(
        &dir,
        &[
            "--appendonly",
            "yes",
            "--appendfilename",
            "my.aof",
            "--appenddirname",
            "aofs",
        ],
    );
    drop(server.client());
    assert!(dir.0.join("aofs").join("my.aof.manifest").exists());
    assert!(dir.0.join("aofs").join("my.aof.1.incr.aof").exists());
}

/// Bug: SHUTDOWN during a rewrite failed its final save on the cut the rewrite held. It now
/// cancels the rewrite (as Redis kills its AOF child) and waits for it; the final save runs
/// and the AOF left behind loads the whole dataset.
#[test]
fn shutdown_during_a_rewrite_cancels_it_and_the_aof_stays_complete() {
    let dir = TestDir::new("aof-shutdown");
    let mut server = start(&dir, &["--appendonly", "yes", "--save", "60 1"]);
    let mut conn = server.client();
    forkless_tests::populate(&mut conn, "k", 2000, 100);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("snapshot-max-bytes-per-sec")
        .arg("50kb")
        .query(&mut conn)
        .expect("CONFIG SET");
    let _: String = redis::cmd("BGREWRITEAOF")
        .query(&mut conn)
        .expect("BGREWRITEAOF");
    let _: () = redis::cmd("SET")
        .arg("last")
        .arg("1")
        .query(&mut conn)
        .expect("SET");
    let before = dataset(&mut conn);
    // The running rewrite keeps its slow pace; the final save does not have it.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("snapshot-max-bytes-per-sec")
        .arg("0")
        .query(&mut conn)
        .expect("CONFIG SET");
    assert_eq!(info_field(&mut conn, "aof_rewrite_in_progress"), "1");
    let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut conn);
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}");
    drop(server);
    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    assert_eq!(dataset(&mut conn), before);
}

/// Bug: with `appendonly yes` and no dump.rdb the loading flag was never raised, so clients
/// could write while the AOF was being replayed. They get -LOADING until it is done.
#[test]
fn clients_get_loading_while_the_aof_replays() {
    use std::io::Write as _;

    let dir = TestDir::new("aof-loading");
    std::fs::create_dir_all(aof_dir(&dir)).expect("dir");
    let n = 300_000;
    {
        let file =
            std::fs::File::create(aof_dir(&dir).join("appendonly.aof.1.incr.aof")).expect("incr");
        let mut out = std::io::BufWriter::new(file);
        out.write_all(b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n")
            .expect("write");
        for i in 0..n {
            write!(out, "*3\r\n$3\r\nSET\r\n$10\r\nkey{i:07}\r\n$1\r\nv\r\n").expect("write");
        }
        out.flush().expect("flush");
    }
    std::fs::write(
        aof_dir(&dir).join("appendonly.aof.manifest"),
        "file appendonly.aof.1.incr.aof seq 1 type i\n",
    )
    .expect("manifest");
    let port = forkless_tests::free_port();
    let _server = forkless_tests::ChildGuard(
        Command::new(BIN)
            .args(["--port", &port.to_string(), "--dir"])
            .arg(&dir.0)
            .args(["--appendonly", "yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let url = format!("redis://127.0.0.1:{port}/");
    let mut conn = None;
    assert!(wait_until(Duration::from_secs(20), || {
        conn = redis::Client::open(url.as_str())
            .and_then(|client| client.get_connection())
            .ok();
        conn.is_some()
    }));
    let mut conn = conn.expect("connected");
    let refused: redis::RedisResult<()> = redis::cmd("SET").arg("early").arg("1").query(&mut conn);
    let refused = refused.expect_err("a write while loading").to_string();
    assert!(
        refused.contains("BusyLoading") || refused.contains("LOADING"),
        "{refused}"
    );
    assert!(wait_until(Duration::from_secs(60), || {
        redis::cmd("SET")
            .arg("late")
            .arg("1")
            .query::<()>(&mut conn)
            .is_ok()
    }));
    let size: i64 = redis::cmd("DBSIZE").query(&mut conn).expect("DBSIZE");
    assert_eq!(size, n + 1);
}

/// With `snapshot-mode fork`, BGREWRITEAOF forks as Redis does: a child writes the base from
/// the frozen keyspace while the writes after the freeze go to the new incr file. Every write,
/// including those acknowledged during the rewrite, is there after kill -9; INFO shows the
/// rewrite as Redis's fields do, and the fork in `total_forks`.
#[test]
fn a_fork_mode_rewrite_keeps_the_writes_made_while_the_child_runs() {
    let dir = TestDir::new("aof-fork-rewrite");
    let server = start(
        &dir,
        &[
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--snapshot-mode",
            "fork",
        ],
    );
    let mut conn = server.client();
    forkless_tests::populate(&mut conn, "k", 3000, 100);
    write_mixed(&mut conn, "before");
    // The child copies this throttle: its base takes about half a second.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("snapshot-max-bytes-per-sec")
        .arg("600kb")
        .query(&mut conn)
        .expect("CONFIG SET");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let mut conn = server.client();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _: () = redis::cmd("SET")
                    .arg(format!("during:{}", i % 500))
                    .arg(i)
                    .query(&mut conn)
                    .expect("SET");
                i += 1;
            }
            i
        })
    };
    let reply: String = redis::cmd("BGREWRITEAOF")
        .query(&mut conn)
        .expect("BGREWRITEAOF");
    assert_eq!(reply, "Background append only file rewriting started");
    assert_eq!(info_field(&mut conn, "aof_rewrite_in_progress"), "1");
    let refused: redis::RedisResult<String> = redis::cmd("BGSAVE").query(&mut conn);
    let refused = refused.expect_err("BGSAVE during a rewrite").to_string();
    assert!(
        refused.contains("Another child process is active (AOF?)"),
        "{refused}"
    );
    // Writes on this connection too, while the child runs.
    write_mixed(&mut conn, "during");
    assert!(wait_until(Duration::from_secs(30), || rewrite_finished(
        &mut conn
    )));
    assert_eq!(info_field(&mut conn, "aof_last_bgrewrite_status"), "ok");
    stop.store(true, Ordering::Relaxed);
    assert!(writer.join().expect("writer") > 0);
    write_mixed(&mut conn, "after");
    assert_eq!(info_field(&mut conn, "aof_last_bgrewrite_status"), "ok");
    assert_eq!(
        info_field(&mut conn, "aof_rewrites_consecutive_failures"),
        "0"
    );
    assert_eq!(info_field(&mut conn, "aof_current_rewrite_time_sec"), "-1");
    assert!(
        info_field(&mut conn, "aof_last_cow_size")
            .parse::<u64>()
            .is_ok()
    );
    let stats: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut conn)
        .expect("INFO stats");
    assert!(stats.contains("total_forks:1\r\n"), "{stats}");
    // The rewrite is no BGSAVE: no dump was written.
    assert_eq!(info_field(&mut conn, "rdb_saves"), "0");
    assert_eq!(
        manifest(&dir),
        "file appendonly.aof.2.base.rdb seq 2 type b\nfile appendonly.aof.2.incr.aof seq 2 type i\n"
    );
    let leftovers: Vec<String> = std::fs::read_dir(aof_dir(&dir))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("temp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let before = dataset(&mut conn);
    let keys: i64 = redis::cmd("DBSIZE").query(&mut conn).expect("DBSIZE");
    drop(conn);
    kill9(&server);
    drop(server);
    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    assert_eq!(dataset(&mut conn), before);
    let after: i64 = redis::cmd("DBSIZE").query(&mut conn).expect("DBSIZE");
    assert_eq!(after, keys);
}

/// `appendfsync everysec` fsyncs on its own thread, as Redis's bio job: while an fsync is
/// stuck the writes wait for it at most 2 s, then go ahead and count in `aof_delayed_fsync`;
/// clients are answered throughout, and INFO shows the running fsync in
/// `aof_pending_bio_fsync`. (`FORKLESS_AOF_FSYNC_DELAY_MS` makes every fsync take 2.5 s.)
#[test]
fn a_stuck_everysec_fsync_postpones_writes_for_two_seconds_then_counts_a_delayed_fsync() {
    let dir = TestDir::new("aof-delayed-fsync");
    let server = TestServer::start_in(
        BIN,
        &dir.0,
        &["--appendonly", "yes", "--appendfsync", "everysec"],
        &[("FORKLESS_AOF_FSYNC_DELAY_MS", "2500")],
    );
    let mut conn = server.client();
    assert_eq!(info_field(&mut conn, "aof_delayed_fsync"), "0");
    let mut i = 0u64;
    let mut saw_pending = false;
    let mut slowest = Duration::ZERO;
    let delayed = wait_until(Duration::from_secs(20), || {
        let started = Instant::now();
        let _: () = redis::cmd("SET")
            .arg(format!("k{}", i % 100))
            .arg(i)
            .query(&mut conn)
            .expect("SET");
        slowest = slowest.max(started.elapsed());
        i += 1;
        saw_pending |= info_field(&mut conn, "aof_pending_bio_fsync") == "1";
        info_field(&mut conn, "aof_delayed_fsync") != "0"
    });
    assert!(delayed, "no delayed fsync counted after {i} writes");
    assert!(saw_pending);
    // The writes were never held behind the fsync.
    assert!(slowest < Duration::from_secs(1), "a SET took {slowest:?}");
    assert_eq!(info_field(&mut conn, "aof_last_write_status"), "ok");
    // What was written reaches the file although the fsync is still stuck.
    let size: u64 = info_field(&mut conn, "aof_current_size")
        .parse()
        .expect("size");
    assert!(size > 0);
}

/// DEBUG LOADAOF, as Redis's: the dataset is emptied and loaded again from the AOF's files,
/// the same data comes back, and the AOF goes on logging (a write after it survives kill -9).
#[test]
fn debug_loadaof_reloads_the_dataset_from_the_aof_and_logging_goes_on() {
    let dir = TestDir::new("aof-loadaof");
    let server = start(
        &dir,
        &["--appendonly", "yes", "--enable-debug-command", "yes"],
    );
    let mut conn = server.client();
    write_mixed(&mut conn, "before");
    let before = dataset(&mut conn);
    let digest: String = redis::cmd("DEBUG")
        .arg("DIGEST")
        .query(&mut conn)
        .expect("DIGEST");
    let reply: String = redis::cmd("DEBUG")
        .arg("LOADAOF")
        .query(&mut conn)
        .expect("LOADAOF");
    assert_eq!(reply, "OK");
    let again: String = redis::cmd("DEBUG")
        .arg("DIGEST")
        .query(&mut conn)
        .expect("DIGEST");
    assert_eq!(again, digest);
    assert_eq!(dataset(&mut conn), before);
    assert_eq!(info_field(&mut conn, "aof_enabled"), "1");
    let _: () = redis::cmd("SET")
        .arg("after-loadaof")
        .arg("1")
        .query(&mut conn)
        .expect("SET");
    // The AOF is still the one file set: nothing was logged twice by the reload.
    assert_eq!(
        manifest(&dir),
        "file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n"
    );
    let after = dataset(&mut conn);
    assert!(wait_until(Duration::from_secs(10), || {
        info_field(&mut conn, "aof_buffer_length") == "0"
    }));
    drop(conn);
    kill9(&server);
    drop(server);
    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    assert_eq!(dataset(&mut conn), after);
}

/// A shutdown during a fork-mode rewrite stops the child (SIGUSR1, as a fork-mode BGSAVE's),
/// exits cleanly without waiting for the child's slow base, leaves no temp file, and the AOF
/// it leaves loads every write.
#[test]
fn shutdown_during_a_fork_mode_rewrite_stops_the_child_and_the_aof_stays_complete() {
    let dir = TestDir::new("aof-fork-shutdown");
    let mut server = start(&dir, &["--appendonly", "yes", "--snapshot-mode", "fork"]);
    let mut conn = server.client();
    forkless_tests::populate(&mut conn, "k", 2000, 100);
    // The child copies this pace: its base would take several seconds.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("snapshot-max-bytes-per-sec")
        .arg("50kb")
        .query(&mut conn)
        .expect("CONFIG SET");
    let _: String = redis::cmd("BGREWRITEAOF")
        .query(&mut conn)
        .expect("BGREWRITEAOF");
    let _: () = redis::cmd("SET")
        .arg("last")
        .arg("1")
        .query(&mut conn)
        .expect("SET");
    let before = dataset(&mut conn);
    // Once the child has its copy of the pace, the final save of the shutdown does not.
    assert!(wait_until(Duration::from_secs(10), || {
        let stats: String = redis::cmd("INFO")
            .arg("stats")
            .query(&mut conn)
            .expect("INFO stats");
        stats.contains("total_forks:1\r\n")
    }));
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("snapshot-max-bytes-per-sec")
        .arg("0")
        .query(&mut conn)
        .expect("CONFIG SET");
    assert_eq!(info_field(&mut conn, "aof_rewrite_in_progress"), "1");
    let started = Instant::now();
    let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut conn);
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(server);
    let leftovers: Vec<String> = std::fs::read_dir(aof_dir(&dir))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("temp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    assert_eq!(dataset(&mut conn), before);
}

/// GETSET is logged (and replicated) as SET, and SET ... GET without its GET, as Redis
/// propagates them: a replica's command stats count SETs, as Redis's replication unit checks.
#[test]
fn getset_and_set_get_are_logged_as_plain_sets() {
    let dir = TestDir::new("aof-getset");
    let server = start(&dir, &["--appendonly", "yes", "--appendfsync", "always"]);
    let mut conn = server.client();
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v1")
        .query(&mut conn)
        .unwrap();
    let old: String = redis::cmd("GETSET")
        .arg("k")
        .arg("v2")
        .query(&mut conn)
        .unwrap();
    assert_eq!(old, "v1");
    let old: String = redis::cmd("SET")
        .arg("k")
        .arg("v3")
        .arg("GET")
        .query(&mut conn)
        .unwrap();
    assert_eq!(old, "v2");
    let mut logged = Vec::new();
    for entry in std::fs::read_dir(aof_dir(&dir)).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".incr.aof") {
            logged.extend(std::fs::read(path).unwrap());
        }
    }
    let logged = String::from_utf8_lossy(&logged);
    assert!(
        logged.contains("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv2\r\n"),
        "{logged:?}"
    );
    assert!(
        logged.contains("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv3\r\n"),
        "{logged:?}"
    );
    assert!(
        !logged.to_ascii_uppercase().contains("GETSET"),
        "{logged:?}"
    );
    assert!(!logged.contains("$3\r\nGET\r\n"), "{logged:?}");
}

/// Redis 7.0's upgrade of a pre-7.0 AOF: a single `appendonly.aof` in `dir` and no AOF
/// directory is loaded and moved into the directory as base 1, with a first incr file, as
/// Redis's `aofUpgradePrepare`; later writes and a rewrite go on from there.
#[test]
fn an_old_style_single_aof_is_upgraded_into_the_directory() {
    let dir = TestDir::new("aof-upgrade");
    let mut old = Vec::new();
    for (key, value) in [("k1", "v1"), ("k2", "v2"), ("k3", "v3")] {
        old.extend_from_slice(
            format!("*3\r\n$3\r\nSET\r\n$2\r\n{key}\r\n$2\r\n{value}\r\n").as_bytes(),
        );
    }
    std::fs::write(dir.0.join("appendonly.aof"), &old).expect("write");
    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    for (key, value) in [("k1", "v1"), ("k2", "v2"), ("k3", "v3")] {
        let got: String = redis::cmd("GET").arg(key).query(&mut conn).expect("GET");
        assert_eq!(got, value);
    }
    assert!(!dir.0.join("appendonly.aof").exists());
    assert_eq!(
        std::fs::read(aof_dir(&dir).join("appendonly.aof")).expect("moved"),
        old
    );
    assert_eq!(
        manifest(&dir),
        "file appendonly.aof seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n"
    );
    let _: () = redis::cmd("SET")
        .arg("k4")
        .arg("v4")
        .query(&mut conn)
        .expect("SET");
    let _: String = redis::cmd("BGREWRITEAOF")
        .query(&mut conn)
        .expect("BGREWRITEAOF");
    assert!(wait_until(Duration::from_secs(20), || {
        manifest(&dir)
            == "file appendonly.aof.2.base.rdb seq 2 type b\n\
                file appendonly.aof.2.incr.aof seq 2 type i\n"
    }));
    kill9(&server);
    drop(server);
    let server = start(&dir, &["--appendonly", "yes"]);
    let mut conn = server.client();
    let got: String = redis::cmd("GET").arg("k4").query(&mut conn).expect("GET");
    assert_eq!(got, "v4");
}

/// As Redis 7.0's aof-multi-part unit: with `aof-disable-auto-gc yes` the old files stay as
/// history, listed as Redis lists them (old incrs, then the old base, ahead of older
/// history), and go once it is set back to no; a BGREWRITEAOF with the AOF off writes only a
/// base (no incr file); DEBUG LOADAOF with the AOF off opens none either, and switching the
/// AOF on then starts the incr numbering at 1.
#[test]
fn history_is_kept_per_auto_gc_and_a_rewrite_with_the_aof_off_writes_only_a_base() {
    let dir = TestDir::new("aof-history");
    let server = start(
        &dir,
        &["--appendonly", "yes", "--enable-debug-command", "yes"],
    );
    let mut conn = server.client();
    let run = |conn: &mut redis::Connection, args: &[&str]| -> redis::Value {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(conn).expect("command")
    };
    let rewrite = |conn: &mut redis::Connection| {
        let _ = run(conn, &["BGREWRITEAOF"]);
        assert!(wait_until(Duration::from_secs(20), || {
            info_field(conn, "aof_rewrite_in_progress") == "0"
                && info_field(conn, "aof_rewrite_scheduled") == "0"
        }));
    };
    run(&mut conn, &["SET", "k", "1"]);
    run(&mut conn, &["CONFIG", "SET", "aof-disable-auto-gc", "yes"]);
    rewrite(&mut conn);
    run(&mut conn, &["SET", "k", "2"]);
    rewrite(&mut conn);
    assert_eq!(
        manifest(&dir),
        "file appendonly.aof.3.base.rdb seq 3 type b\n\
         file appendonly.aof.2.incr.aof seq 2 type h\n\
         file appendonly.aof.2.base.rdb seq 2 type h\n\
         file appendonly.aof.1.incr.aof seq 1 type h\n\
         file appendonly.aof.1.base.rdb seq 1 type h\n\
         file appendonly.aof.3.incr.aof seq 3 type i\n"
    );
    assert!(aof_dir(&dir).join("appendonly.aof.1.base.rdb").exists());
    run(&mut conn, &["CONFIG", "SET", "aof-disable-auto-gc", "no"]);
    assert_eq!(
        manifest(&dir),
        "file appendonly.aof.3.base.rdb seq 3 type b\nfile appendonly.aof.3.incr.aof seq 3 type i\n"
    );
    assert!(!aof_dir(&dir).join("appendonly.aof.1.base.rdb").exists());
    run(&mut conn, &["CONFIG", "SET", "appendonly", "no"]);
    rewrite(&mut conn);
    assert_eq!(
        manifest(&dir),
        "file appendonly.aof.4.base.rdb seq 4 type b\n"
    );
    assert!(!aof_dir(&dir).join("appendonly.aof.3.incr.aof").exists());
    run(&mut conn, &["DEBUG", "LOADAOF"]);
    assert_eq!(
        manifest(&dir),
        "file appendonly.aof.4.base.rdb seq 4 type b\n"
    );
    let got: String = redis::cmd("GET").arg("k").query(&mut conn).expect("GET");
    assert_eq!(got, "2");
    run(&mut conn, &["CONFIG", "SET", "appendonly", "yes"]);
    assert!(wait_until(Duration::from_secs(20), || {
        manifest(&dir)
            == "file appendonly.aof.5.base.rdb seq 5 type b\n\
                file appendonly.aof.1.incr.aof seq 1 type i\n"
    }));
}

/// `CONFIG SET appendonly no` during a rewrite, in `snapshot_mode`: as Redis's
/// `stopAppendOnly` kills the rewrite's child (issue 18), the rewrite is over when the reply
/// comes, nothing of it is kept (the manifest still names the old base; no new base file is
/// left), and its end is neither a success nor a failure in INFO.
fn appendonly_no_discards_the_running_rewrite(snapshot_mode: &str) {
    let dir = TestDir::new(&format!("aof-off-during-rewrite-{snapshot_mode}"));
    let server = start(
        &dir,
        &["--appendonly", "yes", "--snapshot-mode", snapshot_mode],
    );
    let mut conn = server.client();
    forkless_tests::populate(&mut conn, "k", 3000, 100);
    let before = manifest(&dir);
    let files_before = std::fs::read_dir(aof_dir(&dir)).expect("dir").count();
    // The base then takes about half a second (a fork-mode child copies the throttle).
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("snapshot-max-bytes-per-sec")
        .arg("600kb")
        .query(&mut conn)
        .expect("CONFIG SET");
    let reply: String = redis::cmd("BGREWRITEAOF")
        .query(&mut conn)
        .expect("BGREWRITEAOF");
    assert_eq!(reply, "Background append only file rewriting started");
    assert_eq!(info_field(&mut conn, "aof_rewrite_in_progress"), "1");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendonly")
        .arg("no")
        .query(&mut conn)
        .expect("CONFIG SET appendonly no");
    assert_eq!(info_field(&mut conn, "aof_rewrite_in_progress"), "0");
    assert_eq!(info_field(&mut conn, "aof_rewrite_scheduled"), "0");
    assert_eq!(info_field(&mut conn, "aof_enabled"), "0");
    assert_eq!(info_field(&mut conn, "aof_last_bgrewrite_status"), "ok");
    assert_eq!(
        info_field(&mut conn, "aof_rewrites_consecutive_failures"),
        "0"
    );
    assert_eq!(info_field(&mut conn, "aof_rewrites"), "1");
    // Step 1's incr stays listed after the old base (as Redis's manifest keeps it); the old
    // base is still the base, and the only new file is that incr.
    let after = manifest(&dir);
    let base_line = |text: &str| {
        text.lines()
            .find(|line| line.contains("type b"))
            .map(str::to_owned)
    };
    assert_eq!(base_line(&after), base_line(&before), "{after}");
    let files_after: Vec<String> = std::fs::read_dir(aof_dir(&dir))
        .expect("dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(files_after.len(), files_before + 1, "{files_after:?}");
    assert!(
        files_after.iter().all(|name| !name.starts_with("temp-")),
        "{files_after:?}"
    );
    // The server goes on, and the AOF can be switched on again.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("snapshot-max-bytes-per-sec")
        .arg("0")
        .query(&mut conn)
        .expect("CONFIG SET");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendonly")
        .arg("yes")
        .query(&mut conn)
        .expect("CONFIG SET appendonly yes");
    assert!(wait_until(Duration::from_secs(30), || rewrite_finished(
        &mut conn
    )));
    assert_eq!(info_field(&mut conn, "aof_last_bgrewrite_status"), "ok");
    assert_eq!(info_field(&mut conn, "aof_enabled"), "1");
}

#[test]
fn appendonly_no_discards_the_running_rewrite_epoch() {
    appendonly_no_discards_the_running_rewrite("epoch");
}

#[test]
fn appendonly_no_discards_the_running_rewrite_fork() {
    appendonly_no_discards_the_running_rewrite("fork");
}
