//! Regression tests for issue 20's access-control and connection defects, each probed the way an
//! operator found it: `protected-mode yes` reported but not enforced, the idle `timeout` closing
//! pub/sub subscribers, the query-buffer limit not applied while a client is blocked,
//! `maxclients` ignoring the descriptor limit (clients hung under `ulimit -n 256`), no
//! `tcp-backlog`, and `appendonly yes` / `maxmemory` silently accepted although nothing acted on
//! them.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers unwrap and index: a panic is a test failure"
)]

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use forkless_tests::resp::{self, cmd};
use forkless_tests::{RawConn, TestServer, info_section, unique_dir, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

/// 127.0.0.2 stands in for a remote client: Redis treats only 127.0.0.1 and ::1 as local.
const REMOTE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The start of Redis 7.0's reply to a remote client in protected mode.
const DENIED: &str = "-DENIED Redis is running in protected mode because protected mode is \
                      enabled and no password is set for the default user. In this mode \
                      connections are only accepted from the loopback interface.";

fn connected_clients(server: &TestServer) -> u64 {
    let mut conn = server.client();
    info_section(&mut conn, "clients")["connected_clients"]
        .parse()
        .unwrap()
}

/// Bug: `protected-mode yes` was stored and reported but not enforced, so a server reachable
/// from the network with no password accepted SET, FLUSHALL and CONFIG SET from anyone.
#[test]
fn protected_mode_refuses_remote_clients_until_a_password_is_set_or_it_is_off() {
    let server = TestServer::start(BIN, &[]);
    let mut remote = server.raw_from(REMOTE);
    remote.send_command(&[b"SET", b"k", b"v"]);
    let reply = String::from_utf8(remote.read_to_close()).unwrap();
    assert!(reply.starts_with(DENIED), "{reply}");
    assert!(
        reply.ends_with(
            "NOTE: You only need to do one of the above things in order for the server to start \
             accepting connections from the outside.\r\n"
        ),
        "{reply}"
    );
    // Local clients are served, and the remote write never happened.
    let mut local = server.raw();
    assert_eq!(cmd(&mut local, "EXISTS k"), resp::int(0));
    let rejected: u64 = info_section(&mut server.client(), "stats")["rejected_connections"]
        .parse()
        .unwrap();
    assert!(rejected >= 1);

    // With a password, remote clients may connect and must authenticate.
    assert_eq!(cmd(&mut local, "CONFIG SET requirepass s3cret"), "+OK\r\n");
    let mut remote = server.raw_from(REMOTE);
    assert_eq!(
        cmd(&mut remote, "PING"),
        resp::err("NOAUTH Authentication required.")
    );
    assert_eq!(cmd(&mut remote, "AUTH s3cret"), "+OK\r\n");
    assert_eq!(cmd(&mut remote, "PING"), "+PONG\r\n");

    // With protected mode off and no password, anyone is served (the operator's choice).
    assert_eq!(cmd(&mut local, "AUTH s3cret"), "+OK\r\n");
    assert_eq!(
        resp::call(&mut local, &[b"CONFIG", b"SET", b"requirepass", b""]),
        "+OK\r\n"
    );
    assert_eq!(cmd(&mut local, "CONFIG SET protected-mode no"), "+OK\r\n");
    let mut remote = server.raw_from(REMOTE);
    assert_eq!(cmd(&mut remote, "PING"), "+PONG\r\n");
}

/// Bug: with `timeout 1`, a subscriber that waited for messages was disconnected as idle, so a
/// later PUBLISH reached nobody. Redis exempts subscribers (and blocked clients) from the idle
/// timeout.
#[test]
fn idle_timeout_spares_subscribers_and_blocked_clients() {
    let server = TestServer::start(BIN, &["--timeout", "1"]);
    let mut subscriber = server.raw();
    let subscribed = subscriber.call(&[b"SUBSCRIBE", b"news"]);
    assert!(subscribed.starts_with(b"*3\r\n$9\r\nsubscribe\r\n"));
    let mut blocked = server.raw();
    blocked.send_command(&[b"BLPOP", b"queue", b"0"]);
    // An ordinary idle client, connected last, is closed by the timeout: once it is gone, the
    // other two have been idle longer than the timeout too.
    let mut idle = server.raw();
    let started = Instant::now();
    assert!(idle.read_to_close().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));

    let mut publisher = server.raw();
    assert_eq!(cmd(&mut publisher, "PUBLISH news hello"), resp::int(1));
    assert_eq!(
        subscriber.read_reply(),
        resp::bulks(&["message", "news", "hello"]).into_bytes()
    );
    assert_eq!(cmd(&mut publisher, "RPUSH queue job"), resp::int(1));
    assert_eq!(
        blocked.read_reply(),
        resp::bulks(&["queue", "job"]).into_bytes()
    );
}

/// Bug: the query-buffer limit was checked only between commands, never while a client was
/// blocked, so a client that sent `BLPOP nosuchlist 0` and then streamed pipelined commands
/// grew the server by hundreds of megabytes; Redis closes it at the limit.
#[test]
fn query_buffer_limit_closes_a_blocked_client_that_keeps_sending() {
    let server = TestServer::start(BIN, &["--client-query-buffer-limit", "1mb"]);
    let mut blocked = server.raw();
    blocked.send_command(&[b"BLPOP", b"nosuchlist", b"0"]);
    assert!(wait_until(Duration::from_secs(10), || {
        info_section(&mut server.client(), "clients")["blocked_clients"] == "1"
    }));
    let stream = blocked.stream();
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let command = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n".repeat(2000);
    let mut sent = 0;
    while sent < 8 << 20 {
        if stream.write_all(&command).is_err() {
            break;
        }
        sent += command.len();
    }
    // The blocked client is gone; only the one asking remains.
    assert!(
        wait_until(Duration::from_secs(10), || connected_clients(&server) == 1),
        "the blocked client kept its {sent} buffered bytes"
    );
    assert_eq!(cmd(&mut server.raw(), "EXISTS key"), resp::int(0));
}

/// The soft `RLIMIT_NOFILE` of process `pid`.
fn open_files_limit(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

fn maxclients(conn: &mut redis::Connection) -> u64 {
    let pair: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxclients")
        .query(conn)
        .unwrap();
    pair[1].parse().unwrap()
}

/// Starts the server under `ulimit -n <limit>` (soft and hard).
fn start_under_ulimit(limit: u32, args: &[&str]) -> TestServer {
    let dir = unique_dir("ulimit");
    let script = format!("ulimit -n {limit} && exec \"$0\" \"$@\"");
    let mut all = vec!["-c", &script, BIN, "--port", "0", "--dir"];
    let dir_text = dir.to_str().unwrap().to_owned();
    all.push(&dir_text);
    all.extend_from_slice(args);
    TestServer::start_raw("sh", &all, dir)
}

/// Bug: under `ulimit -n 256`, 300 connections left 56 hanging with no reply while the log
/// filled with "Too many open files", and `maxclients` still said 10000. The server must either
/// raise its descriptor limit to `maxclients` + 32 or lower `maxclients` to fit, and answer the
/// clients over it `-ERR max number of clients reached`.
#[test]
fn maxclients_fits_the_descriptor_limit_and_extra_clients_get_an_error() {
    let server = start_under_ulimit(256, &[]);
    let limit = open_files_limit(server.pid());
    let mut conn = server.client();
    let max = maxclients(&mut conn);
    assert!(
        max + 32 <= limit,
        "maxclients {max} does not fit in the descriptor limit {limit}"
    );
    drop(conn);
    // Every connection gets an answer: PONG, or the error once maxclients is reached.
    let mut conns: Vec<RawConn> = Vec::new();
    let (mut pongs, mut refused) = (0u64, 0u64);
    for _ in 0..300 {
        let mut conn = server.raw();
        conn.send_command(&[b"PING"]);
        let reply = String::from_utf8(conn.read_reply()).unwrap();
        match reply.as_str() {
            "+PONG\r\n" => pongs += 1,
            "-ERR max number of clients reached\r\n" => refused += 1,
            other => panic!("unexpected reply {other:?}"),
        }
        conns.push(conn);
    }
    assert_eq!(pongs + refused, 300);
    assert!(pongs <= max);
    assert_eq!(pongs, max.min(300), "refused {refused} below maxclients");
}

/// Part of the same bug: a `maxclients` the process can never have descriptors for is lowered
/// at startup (Redis: "maxclients has been reduced to ..."), not kept as a promise that fails.
#[test]
fn an_impossible_maxclients_is_reduced_to_the_descriptor_limit() {
    let server = TestServer::start(BIN, &["--maxclients", "4000000000"]);
    let limit = open_files_limit(server.pid());
    let max = maxclients(&mut server.client());
    assert!(max < 4_000_000_000);
    assert!(max + 32 <= limit, "maxclients {max}, limit {limit}");
    // CONFIG SET refuses it as Redis does, naming what the system allows.
    let mut conn = server.raw();
    let reply = cmd(&mut conn, "CONFIG SET maxclients 4000000000");
    let expected = "-ERR CONFIG SET failed (possibly related to argument 'maxclients') - The \
                    operating system is not able to handle the specified number of clients, try \
                    with ";
    assert!(reply.starts_with(expected), "{reply}");
    let suggested: u64 = reply[expected.len()..].trim_end().parse().unwrap();
    assert!(suggested + 32 <= open_files_limit(server.pid()));
    assert_eq!(maxclients(&mut server.client()), max);
    // What fits is accepted.
    assert_eq!(cmd(&mut conn, "CONFIG SET maxclients 100"), "+OK\r\n");
}

/// Bug: `tcp-backlog` did not exist (a redis.conf naming it failed to start) and forkless always
/// listened with its own backlog. The listening socket's queue length (ss's Send-Q) must be
/// the configured one.
#[test]
fn tcp_backlog_sets_the_listen_queue() {
    let server = TestServer::start(BIN, &["--tcp-backlog", "77"]);
    let mut conn = server.raw();
    assert_eq!(
        cmd(&mut conn, "CONFIG GET tcp-backlog"),
        resp::bulks(&["tcp-backlog", "77"])
    );
    assert!(cmd(&mut conn, "CONFIG SET tcp-backlog 100").contains("can't set immutable config"));
    let Some(ss) = forkless_tests::system_tool("ss") else {
        return;
    };
    let output = Command::new(ss)
        .args(["-ltnH", &format!("sport = :{}", server.port())])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let send_q: Vec<&str> = text
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .collect();
    assert_eq!(send_q, ["77"], "{text}");
}

/// Bug: `maxmemory` > 0 answered OK and did nothing, so a user who set a memory limit had
/// none; it was then refused until eviction existed. It is accepted at startup and by CONFIG
/// SET now, and enforced (tests/tests/maxmemory.rs).
#[test]
fn maxmemory_is_accepted_now_that_it_is_enforced() {
    let server = TestServer::start(BIN, &["--maxmemory", "100mb"]);
    let mut conn = server.raw();
    assert_eq!(
        cmd(&mut conn, "CONFIG GET maxmemory"),
        resp::bulks(&["maxmemory", "104857600"])
    );
    assert_eq!(cmd(&mut conn, "CONFIG SET maxmemory 1gb"), "+OK\r\n");
    assert_eq!(
        cmd(&mut conn, "CONFIG GET maxmemory"),
        resp::bulks(&["maxmemory", "1073741824"])
    );
    assert_eq!(cmd(&mut conn, "CONFIG SET maxmemory 0"), "+OK\r\n");
}

/// Bug: a password was compared with `==`, which returns at the first differing byte. The
/// comparison is now constant-time (SHA-256 of both, compared with `subtle`); what a test can
/// check end to end is that every near miss (a prefix, an extension, one byte off, the empty
/// string) is refused exactly as a wrong password and the right one still works.
#[test]
fn near_miss_passwords_are_refused() {
    let server = TestServer::start(BIN, &["--requirepass", "correct horse"]);
    let mut conn = server.raw();
    for guess in [
        &b"correct hors"[..],
        b"correct horse ",
        b"correct horsf",
        b"Correct horse",
        b"",
        b"correct horse\0",
    ] {
        assert_eq!(
            resp::call(&mut conn, &[b"AUTH", guess]),
            resp::err("WRONGPASS invalid username-password pair or user is disabled."),
            "{guess:?}"
        );
    }
    assert_eq!(
        resp::call(&mut conn, &[b"AUTH", b"default", b"correct horse"]),
        "+OK\r\n"
    );
}
