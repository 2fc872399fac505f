//! An existing redis.conf starts forkless: Redis 7.0.15's own source-tree redis.conf
//! (tests/data/redis-7.0.15.conf, BSD-3-Clause, see tests/data/README.md) and Debian's
//! /etc/redis/redis.conf, which daemonizes, writes a pid file and logs to a file. Before
//! issue 16, the first option either file set that forkless lacked (`always-show-logo`) was a
//! fatal config error.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use forkless_tests::{unique_dir, wait_until};

const BINARY: &str = env!("CARGO_BIN_EXE_forkless-server");

fn source_tree_conf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/redis-7.0.15.conf")
}

fn config_get(client: &mut redis::Connection, name: &str) -> String {
    let reply: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query(client)
        .expect("CONFIG GET");
    reply.get(1).cloned().unwrap_or_default()
}

/// Runs the binary in the foreground with `args`, returning the log lines printed up to the
/// ready line, the address, and the child.
fn start_foreground(args: &[&str]) -> (Vec<String>, std::net::SocketAddr, std::process::Child) {
    let mut child = Command::new(BINARY)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn forkless-server");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(addr) = line.split("Ready to accept connections tcp on ").nth(1) {
            let addr = addr.trim().parse().expect("ready line names an address");
            return (lines, addr, child);
        }
        lines.push(line);
    }
    let _ = child.kill();
    let status = child.wait();
    panic!("server did not become ready ({status:?}); it printed {lines:?}");
}

#[test]
fn redis_source_tree_conf_starts_forkless() {
    let dir = unique_dir("redis-conf");
    let pid_file = dir.join("redis.pid");
    let conf = source_tree_conf();
    let (lines, addr, mut child) = start_foreground(&[
        conf.to_str().unwrap(),
        "--port",
        "0",
        "--dir",
        dir.to_str().unwrap(),
        "--pidfile",
        pid_file.to_str().unwrap(),
        "--activedefrag",
        "yes",
    ]);
    // The one option set to other than Redis's default that forkless does not act on is named.
    assert!(
        lines
            .iter()
            .any(|line| line.contains("activedefrag yes: accepted, not in effect")),
        "{lines:?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|line| line.contains("accepted, not in effect"))
            .count(),
        1,
        "{lines:?}"
    );
    let mut client = redis::Client::open(format!("redis://{addr}/"))
        .and_then(|client| client.get_connection())
        .expect("connect");
    assert_eq!(config_get(&mut client, "hash-max-ziplist-entries"), "512");
    assert_eq!(config_get(&mut client, "oom-score-adj-values"), "0 200 800");
    assert_eq!(config_get(&mut client, "appenddirname"), "appendonlydir");
    assert_eq!(config_get(&mut client, "notify-keyspace-events"), "");
    assert_eq!(config_get(&mut client, "daemonize"), "no");
    let written = std::fs::read_to_string(&pid_file).expect("the pid file");
    assert_eq!(written.trim(), child.id().to_string());

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().expect("wait").success());
    assert!(!pid_file.exists(), "the pid file is removed at exit");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `always-show-logo yes` is the first line Redis's test harness writes into every config.
#[test]
fn redis_test_harness_first_line_is_accepted() {
    let dir = unique_dir("logo");
    let conf = dir.join("harness.conf");
    std::fs::write(&conf, "always-show-logo yes\nenable-debug-command yes\n").unwrap();
    let (_, addr, mut child) = start_foreground(&[
        conf.to_str().unwrap(),
        "--port",
        "0",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let mut client = redis::Client::open(format!("redis://{addr}/"))
        .and_then(|client| client.get_connection())
        .expect("connect");
    assert_eq!(config_get(&mut client, "always-show-logo"), "yes");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Debian's /etc/redis/redis.conf as installed: `daemonize yes`, a pid file, a log file and
/// `dir /var/lib/redis`. The command line moves the port, the files and the directory into a
/// scratch directory (as a second instance would), and keeps daemonizing.
#[test]
fn debian_conf_starts_forkless_as_a_daemon() {
    let debian = Path::new("/etc/redis/redis.conf");
    if std::fs::read(debian).is_err() {
        if std::env::var("FORKLESS_REQUIRE_REDIS").as_deref() == Ok("1") {
            panic!("/etc/redis/redis.conf is required (FORKLESS_REQUIRE_REDIS=1) but unreadable");
        }
        eprintln!(
            "!!!!! SKIPPING: /etc/redis/redis.conf is absent or unreadable \
             (apt-get install redis-server) !!!!!"
        );
        return;
    }
    let dir = unique_dir("debian-conf");
    let pid_file = dir.join("redis-server.pid");
    let log_file = dir.join("redis-server.log");
    let status = Command::new(BINARY)
        .args([
            debian.to_str().unwrap(),
            "--port",
            "0",
            "--dir",
            dir.to_str().unwrap(),
            "--pidfile",
            pid_file.to_str().unwrap(),
            "--logfile",
            log_file.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .status()
        .expect("run forkless-server");
    // The foreground process exits at once; the detached server writes its pid and logs.
    assert!(status.success(), "{status:?}");
    let mut addr = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while addr.is_none() && Instant::now() < deadline {
        let log = std::fs::read_to_string(&log_file).unwrap_or_default();
        addr = log
            .lines()
            .find_map(|line| line.split("Ready to accept connections tcp on ").nth(1))
            .map(|addr| {
                addr.trim()
                    .parse::<std::net::SocketAddr>()
                    .expect("an address")
            });
        if addr.is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let addr = addr.expect("the daemon logged its ready line");
    let pid = std::fs::read_to_string(&pid_file).expect("the pid file");
    let pid = pid.trim().to_owned();
    let mut client = redis::Client::open(format!("redis://{addr}/"))
        .and_then(|client| client.get_connection())
        .expect("connect");
    assert_eq!(config_get(&mut client, "daemonize"), "yes");
    assert_eq!(
        config_get(&mut client, "proc-title-template"),
        "{title} {listen-addr} {server-mode}"
    );
    let info: String = redis::cmd("INFO").arg("server").query(&mut client).unwrap();
    assert!(info.contains(&format!("process_id:{pid}\r\n")), "{info}");
    let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").arg("NOSAVE").query(&mut client);
    if !wait_until(Duration::from_secs(20), || !pid_file.exists()) {
        // Only the daemon this test started, by the pid it wrote.
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("the daemon did not exit and remove its pid file");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
