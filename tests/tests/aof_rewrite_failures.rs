//! Failed AOF rewrites (issue 18), as Redis 7.0's `backgroundRewriteDoneHandler` and
//! `aofRewriteLimited` handle them: a failed rewrite keeps the old base and incrs in use and
//! loses nothing; each failure leaves the incr file it opened listed in the manifest (so
//! several failures open several incrs); `aof_rewrites_consecutive_failures` counts them; after
//! three in a row automatic rewrites are held back ("triggered the limit") while BGREWRITEAOF
//! still runs at once; while the AOF is being switched on, a failed first rewrite removes its
//! temp incr file (`temp-appendonly.aof.incr`), writes no manifest, and is tried again.
//!
//! Epoch mode makes its rewrites fail on a disk error (`FORKLESS_FAULT_INJECT`); fork mode
//! kills the rewrite's child, as Redis's own tests (aof-multi-part) do.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use forkless_tests::{TestDir, TestServer, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

fn aof_dir(dir: &TestDir) -> PathBuf {
    dir.0.join("appendonlydir")
}

/// The manifest's text, or None when there is none.
fn manifest(dir: &TestDir) -> Option<String> {
    std::fs::read_to_string(aof_dir(dir).join("appendonly.aof.manifest")).ok()
}

/// The manifest a base and the incrs `incrs` make.
fn listing(base: u64, incrs: std::ops::RangeInclusive<u64>) -> String {
    let mut text = format!("file appendonly.aof.{base}.base.rdb seq {base} type b\n");
    for seq in incrs {
        text.push_str(&format!(
            "file appendonly.aof.{seq}.incr.aof seq {seq} type i\n"
        ));
    }
    text
}

fn aof_files(dir: &TestDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(aof_dir(dir))
        .map(|entries| {
            entries
                .map(|entry| {
                    entry
                        .expect("entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn info_field(conn: &mut redis::Connection, name: &str) -> String {
    let text: String = redis::cmd("INFO").query(conn).expect("INFO");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .to_owned()
}

fn run(conn: &mut redis::Connection, args: &[&str]) -> redis::Value {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query(conn)
        .unwrap_or_else(|err| panic!("{args:?}: {err}"))
}

fn wait_rewrite_ended(conn: &mut redis::Connection) {
    assert!(wait_until(Duration::from_secs(30), || {
        info_field(conn, "aof_rewrite_in_progress") == "0"
    }));
}

/// The server's log, gathered as it comes, to count lines.
struct Log<'a> {
    server: &'a TestServer,
    lines: Vec<String>,
}

impl<'a> Log<'a> {
    fn of(server: &'a TestServer) -> Log<'a> {
        Log {
            server,
            lines: Vec::new(),
        }
    }

    fn count(&mut self, needle: &str) -> usize {
        self.lines.extend(self.server.drain_log());
        self.lines
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// Waits until at least `n` lines contain `needle`.
    fn wait_count(&mut self, needle: &str, n: usize) -> bool {
        wait_until(Duration::from_secs(30), || self.count(needle) >= n)
    }
}

/// The keys and values of database 0, sorted.
fn strings(conn: &mut redis::Connection) -> Vec<(String, String)> {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(conn).expect("KEYS");
    keys.sort();
    keys.into_iter()
        .map(|key| {
            let value: String = redis::cmd("GET").arg(&key).query(conn).expect("GET");
            (key, value)
        })
        .collect()
}

/// The fork children of `pid` (every thread's, from /proc).
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            found.extend(
                text.split_whitespace()
                    .filter_map(|pid| pid.parse::<u32>().ok()),
            );
        }
    }
    found
}

/// Kills the server's one fork child (the rewrite's) with SIGKILL, as Redis's tests do; waits
/// for it to appear first. Returns its pid.
fn kill_the_child(server: &TestServer) -> u32 {
    let mut child = None;
    assert!(wait_until(Duration::from_secs(10), || {
        child = children(server.pid()).first().copied();
        child.is_some()
    }));
    let child = child.expect("a child");
    let status = Command::new("kill")
        .args(["-9", &child.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    child
}

const FAULT: (&str, &str) = ("FORKLESS_FAULT_INJECT", "write_after=0,errno=ENOSPC");

#[test]
fn failed_rewrites_keep_the_old_files_open_an_incr_each_and_trigger_the_limit() {
    let dir = TestDir::new("aof-rewrite-fail");
    let args = [
        "--appendonly",
        "yes",
        "--save",
        "",
        "--auto-aof-rewrite-percentage",
        "0",
    ];
    let server = TestServer::start_in(BIN, &dir.0, &args, &[]);
    let mut conn = server.client();
    run(&mut conn, &["SET", "k0", "v0"]);
    drop(conn);
    assert_eq!(server.terminate().code(), Some(0));
    assert_eq!(manifest(&dir).as_deref(), Some(listing(1, 1..=1).as_str()));

    // Every save of this server fails on ENOSPC: its rewrites cannot write a base.
    let server = TestServer::start_in(BIN, &dir.0, &args, &[FAULT]);
    let mut log = Log::of(&server);
    let mut conn = server.client();
    for failure in 1..=3u64 {
        run(&mut conn, &["SET", &format!("k{failure}"), "before"]);
        assert_eq!(
            run(&mut conn, &["BGREWRITEAOF"]),
            redis::Value::SimpleString("Background append only file rewriting started".into())
        );
        run(&mut conn, &["SET", &format!("k{failure}"), "during"]);
        wait_rewrite_ended(&mut conn);
        assert_eq!(info_field(&mut conn, "aof_last_bgrewrite_status"), "err");
        assert_eq!(
            info_field(&mut conn, "aof_rewrites_consecutive_failures"),
            failure.to_string()
        );
        // The incr it opened stays: the next one is opened after it.
        assert_eq!(
            manifest(&dir).as_deref(),
            Some(listing(1, 1..=failure + 1).as_str())
        );
        run(&mut conn, &["SET", &format!("k{failure}"), "after"]);
    }
    // Counted as they started (each opened its incr), as Redis counts them.
    assert_eq!(info_field(&mut conn, "aof_rewrites"), "3");
    let temps: Vec<String> = aof_files(&dir)
        .into_iter()
        .filter(|name| name.starts_with("temp-"))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
    assert!(
        !aof_files(&dir).contains(&"appendonly.aof.2.base.rdb".to_owned()),
        "{:?}",
        aof_files(&dir)
    );

    // An automatic rewrite is now held back, once logged; the manifest does not move.
    run(
        &mut conn,
        &["CONFIG", "SET", "auto-aof-rewrite-min-size", "1024"],
    );
    run(
        &mut conn,
        &["CONFIG", "SET", "auto-aof-rewrite-percentage", "1"],
    );
    run(&mut conn, &["SET", "big", &"x".repeat(2048)]);
    assert!(
        log.wait_count("triggered the limit, will retry in 1 minutes", 1),
        "{:?}",
        log.lines
    );
    assert_eq!(info_field(&mut conn, "aof_rewrite_in_progress"), "0");
    assert_eq!(manifest(&dir).as_deref(), Some(listing(1, 1..=4).as_str()));
    // BGREWRITEAOF is not held back (and fails again here).
    run(
        &mut conn,
        &["CONFIG", "SET", "auto-aof-rewrite-percentage", "0"],
    );
    run(&mut conn, &["BGREWRITEAOF"]);
    wait_rewrite_ended(&mut conn);
    assert_eq!(
        info_field(&mut conn, "aof_rewrites_consecutive_failures"),
        "4"
    );
    assert_eq!(log.count("triggered the limit"), 1, "{:?}", log.lines);
    let before = strings(&mut conn);
    assert_eq!(before.len(), 5);
    drop(conn);
    drop(log);
    assert_eq!(server.terminate().code(), Some(0));

    // Nothing was lost: base 1 and incrs 1-5 load every write; a rewrite without the fault
    // makes them history.
    let server = TestServer::start_in(BIN, &dir.0, &args, &[]);
    let mut conn = server.client();
    assert_eq!(strings(&mut conn), before);
    run(&mut conn, &["BGREWRITEAOF"]);
    wait_rewrite_ended(&mut conn);
    assert_eq!(info_field(&mut conn, "aof_last_bgrewrite_status"), "ok");
    assert_eq!(manifest(&dir).as_deref(), Some(listing(2, 6..=6).as_str()));
    assert!(wait_until(Duration::from_secs(10), || {
        aof_files(&dir)
            == [
                "appendonly.aof.2.base.rdb",
                "appendonly.aof.6.incr.aof",
                "appendonly.aof.manifest",
            ]
    }));
    drop(conn);
    assert_eq!(server.terminate().code(), Some(0));
    let server = TestServer::start_in(BIN, &dir.0, &args, &[]);
    let mut conn = server.client();
    assert_eq!(strings(&mut conn), before);
}

#[test]
fn a_failed_rewrite_switching_the_aof_on_removes_its_temp_incr_and_is_tried_again() {
    let dir = TestDir::new("aof-switch-on-fail");
    let server = TestServer::start_in(BIN, &dir.0, &["--appendonly", "no", "--save", ""], &[FAULT]);
    let mut log = Log::of(&server);
    let mut conn = server.client();
    run(&mut conn, &["SET", "k", "v"]);
    run(&mut conn, &["CONFIG", "SET", "appendonly", "yes"]);
    // Redis's AOF_WAIT_REWRITE: each failure removes the temp incr and schedules another try,
    // until three failures in a row trigger the limit.
    assert!(
        log.wait_count(
            "Removing the temp incr aof file temp-appendonly.aof.incr",
            3
        ),
        "{:?}",
        log.lines
    );
    assert!(log.wait_count("triggered the limit", 1), "{:?}", log.lines);
    assert_eq!(info_field(&mut conn, "aof_enabled"), "1");
    assert_eq!(info_field(&mut conn, "aof_rewrite_scheduled"), "1");
    assert_eq!(info_field(&mut conn, "aof_rewrite_in_progress"), "0");
    assert_eq!(
        info_field(&mut conn, "aof_rewrites_consecutive_failures"),
        "3"
    );
    assert_eq!(log.count("Removing the temp incr aof file"), 3);
    assert_eq!(manifest(&dir), None);
    assert!(aof_files(&dir).is_empty(), "{:?}", aof_files(&dir));
    run(&mut conn, &["SET", "k", "w"]);
    // Switched off, nothing is scheduled any more.
    run(&mut conn, &["CONFIG", "SET", "appendonly", "no"]);
    assert_eq!(info_field(&mut conn, "aof_enabled"), "0");
    assert_eq!(info_field(&mut conn, "aof_rewrite_scheduled"), "0");
}

/// Fork mode, as Redis's aof-multi-part does it: `rdb-key-save-delay` keeps the rewrite's
/// child busy and the test kills it (the server's child, which this test made it fork).
#[test]
fn fork_mode_killed_rewrite_children_fail_as_in_redis_and_a_retry_switches_the_aof_on() {
    let dir = TestDir::new("aof-fork-kill");
    let server = TestServer::start_in(
        BIN,
        &dir.0,
        &[
            "--appendonly",
            "no",
            "--save",
            "",
            "--snapshot-mode",
            "fork",
            "--enable-debug-command",
            "yes",
        ],
        &[],
    );
    let mut log = Log::of(&server);
    let mut conn = server.client();
    for idx in 0..10 {
        run(&mut conn, &["SET", &format!("k{idx}"), "v"]);
    }
    run(
        &mut conn,
        &["CONFIG", "SET", "rdb-key-save-delay", "1000000"],
    );
    // The child is forked before the reply.
    run(&mut conn, &["CONFIG", "SET", "appendonly", "yes"]);
    assert_eq!(info_field(&mut conn, "aof_rewrite_in_progress"), "1");
    let first = kill_the_child(&server);
    assert!(log.wait_count("Removing the temp incr aof file", 1));
    assert_eq!(manifest(&dir), None);
    // Tried again at once (a new child), which is killed too once the delay is off.
    let mut second = first;
    assert!(wait_until(Duration::from_secs(10), || {
        second = children(server.pid()).first().copied().unwrap_or(first);
        second != first
    }));
    let forks: u64 = info_field(&mut conn, "total_forks")
        .parse()
        .expect("number");
    run(&mut conn, &["CONFIG", "SET", "rdb-key-save-delay", "0"]);
    kill_the_child(&server);
    assert!(wait_until(Duration::from_secs(30), || {
        info_field(&mut conn, "total_forks") == (forks + 1).to_string()
            && info_field(&mut conn, "aof_rewrite_in_progress") == "0"
    }));
    assert_eq!(log.count("Removing the temp incr aof file"), 2);
    assert_eq!(manifest(&dir).as_deref(), Some(listing(1, 1..=1).as_str()));
    assert_eq!(info_field(&mut conn, "aof_last_bgrewrite_status"), "ok");
    assert_eq!(
        info_field(&mut conn, "aof_rewrites_consecutive_failures"),
        "0"
    );

    // With the AOF on, each killed BGREWRITEAOF leaves the incr it opened.
    run(
        &mut conn,
        &["CONFIG", "SET", "rdb-key-save-delay", "1000000"],
    );
    for failure in 1..=2u64 {
        run(&mut conn, &["SET", &format!("f{failure}"), "v"]);
        run(&mut conn, &["BGREWRITEAOF"]);
        kill_the_child(&server);
        wait_rewrite_ended(&mut conn);
        assert_eq!(
            info_field(&mut conn, "aof_rewrites_consecutive_failures"),
            failure.to_string()
        );
        assert_eq!(
            manifest(&dir).as_deref(),
            Some(listing(1, 1..=failure + 1).as_str())
        );
    }
    run(&mut conn, &["CONFIG", "SET", "rdb-key-save-delay", "0"]);
    let before = strings(&mut conn);
    let digest: String = redis::cmd("DEBUG")
        .arg("DIGEST")
        .query(&mut conn)
        .expect("DIGEST");
    run(&mut conn, &["DEBUG", "LOADAOF"]);
    let reloaded: String = redis::cmd("DEBUG")
        .arg("DIGEST")
        .query(&mut conn)
        .expect("DIGEST");
    assert_eq!(digest, reloaded);
    assert_eq!(strings(&mut conn), before);
    run(&mut conn, &["BGREWRITEAOF"]);
    let ended = wait_until(Duration::from_secs(30), || {
        info_field(&mut conn, "aof_rewrite_in_progress") == "0"
    });
    log.count("");
    assert!(ended, "{:?}", log.lines);
    assert_eq!(manifest(&dir).as_deref(), Some(listing(2, 4..=4).as_str()));
}

/// Regression: after DEBUG LOADAOF the writer started from effect number 0, so a rewrite's
/// cut waited forever for the effects below it when no write came in between (the server's
/// effect numbers do not restart with the reload).
#[test]
fn a_rewrite_right_after_debug_loadaof_completes() {
    let dir = TestDir::new("aof-loadaof-rewrite");
    let server = TestServer::start_in(
        BIN,
        &dir.0,
        &[
            "--appendonly",
            "yes",
            "--save",
            "",
            "--enable-debug-command",
            "yes",
        ],
        &[],
    );
    let mut conn = server.client();
    for idx in 0..10 {
        run(&mut conn, &["SET", &format!("k{idx}"), "v"]);
    }
    run(&mut conn, &["DEBUG", "LOADAOF"]);
    run(&mut conn, &["BGREWRITEAOF"]);
    wait_rewrite_ended(&mut conn);
    assert_eq!(info_field(&mut conn, "aof_last_bgrewrite_status"), "ok");
    assert_eq!(manifest(&dir).as_deref(), Some(listing(2, 2..=2).as_str()));
    assert_eq!(strings(&mut conn).len(), 10);
}

/// A rewrite that cannot start (here fork() fails, fork mode) answers Redis's error and sets
/// `aof_last_bgrewrite_status:err` without counting a failure; the incr it opened and listed
/// (Redis opens it before forking too) stays, empty, after the one the writes go on to, so
/// nothing is lost or replayed twice.
#[test]
fn a_rewrite_whose_fork_fails_answers_redis_error_and_loses_nothing() {
    let dir = TestDir::new("aof-fork-fails");
    let args = [
        "--appendonly",
        "yes",
        "--save",
        "",
        "--snapshot-mode",
        "fork",
    ];
    let server = TestServer::start_in(
        BIN,
        &dir.0,
        &args,
        &[("FORKLESS_FAULT_INJECT", "fork_errno=12")],
    );
    let mut conn = server.client();
    run(&mut conn, &["SET", "a", "1"]);
    let err = redis::cmd("BGREWRITEAOF")
        .query::<String>(&mut conn)
        .expect_err("fork fails");
    assert!(
        err.to_string()
            .contains("Can't execute an AOF background rewriting. Please check the server logs"),
        "{err}"
    );
    assert_eq!(info_field(&mut conn, "aof_rewrite_in_progress"), "0");
    assert_eq!(info_field(&mut conn, "aof_last_bgrewrite_status"), "err");
    assert_eq!(
        info_field(&mut conn, "aof_rewrites_consecutive_failures"),
        "0"
    );
    assert_eq!(manifest(&dir).as_deref(), Some(listing(1, 1..=2).as_str()));
    run(&mut conn, &["SET", "b", "2"]);
    let before = strings(&mut conn);
    drop(conn);
    assert_eq!(server.terminate().code(), Some(0));
    let server = TestServer::start_in(BIN, &dir.0, &args, &[]);
    let mut conn = server.client();
    assert_eq!(strings(&mut conn), before);
    run(&mut conn, &["BGREWRITEAOF"]);
    wait_rewrite_ended(&mut conn);
    assert_eq!(manifest(&dir).as_deref(), Some(listing(2, 3..=3).as_str()));
}

/// `CONFIG SET appendonly yes` whose rewrite cannot start (fork() fails, fork mode) answers
/// Redis's "Unable to turn on AOF" and leaves `appendonly` as it was, as Redis's CONFIG SET
/// restores its values when an apply function fails; once the fork works it switches on.
#[test]
fn switching_the_aof_on_when_its_rewrite_cannot_start_answers_redis_error() {
    let dir = TestDir::new("aof-on-fork-fails");
    let args = [
        "--appendonly",
        "no",
        "--save",
        "",
        "--snapshot-mode",
        "fork",
    ];
    let server = TestServer::start_in(
        BIN,
        &dir.0,
        &args,
        &[("FORKLESS_FAULT_INJECT", "fork_errno=12")],
    );
    let mut conn = server.client();
    run(&mut conn, &["SET", "a", "1"]);
    let err = redis::cmd("CONFIG")
        .arg(&["SET", "appendonly", "yes"])
        .query::<String>(&mut conn)
        .expect_err("the rewrite cannot fork");
    assert!(
        err.to_string().contains(
            "CONFIG SET failed (possibly related to argument 'appendonly') - Unable to turn on \
             AOF. Check server logs."
        ),
        "{err}"
    );
    let appendonly: Vec<String> = redis::cmd("CONFIG")
        .arg(&["GET", "appendonly"])
        .query(&mut conn)
        .expect("CONFIG GET");
    assert_eq!(appendonly, ["appendonly", "no"]);
    assert_eq!(info_field(&mut conn, "aof_enabled"), "0");
    assert_eq!(info_field(&mut conn, "aof_rewrite_in_progress"), "0");
    assert_eq!(info_field(&mut conn, "aof_rewrite_scheduled"), "0");
    drop(conn);
    assert_eq!(server.terminate().code(), Some(0));

    let server = TestServer::start_in(BIN, &dir.0, &args, &[]);
    let mut conn = server.client();
    run(&mut conn, &["SET", "a", "1"]);
    run(&mut conn, &["CONFIG", "SET", "appendonly", "yes"]);
    wait_rewrite_ended(&mut conn);
    assert_eq!(info_field(&mut conn, "aof_enabled"), "1");
}
