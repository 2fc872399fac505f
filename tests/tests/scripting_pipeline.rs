//! Script commands pipelined on one connection run as a batch under one hold of the command
//! gate (`conn.rs`, `run_script_batch`). These tests guard what the batch must not change:
//! replies in order when scripts and other commands alternate, each script atomic for other
//! clients, blocked clients a script wakes are served, and a busy script in the middle of a
//! batch still gets other clients `-BUSY` and can be killed.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::time::{Duration, Instant};

use forkless_tests::TestServer;
use forkless_tests::resp::{bulk, call, cmd, err, int};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

/// The RESP of one command.
fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn reply(conn: &mut forkless_tests::RawConn) -> String {
    String::from_utf8(conn.read_reply()).unwrap()
}

#[test]
fn pipelined_scripts_and_other_commands_reply_in_order() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    let sha =
        String::from_utf8(conn.call(&[b"SCRIPT", b"LOAD", b"return redis.call('INCR', KEYS[1])"]))
            .unwrap();
    let sha = sha.lines().nth(1).unwrap().to_owned();
    call(
        &mut conn,
        &[
            b"FUNCTION",
            b"LOAD",
            b"#!lua name=lib\nredis.register_function('get', function(keys) return redis.call('GET', keys[1]) end)",
        ],
    );
    let mut batch = Vec::new();
    for _ in 0..3 {
        batch.extend(command(&[b"EVALSHA", sha.as_bytes(), b"1", b"n"]));
    }
    batch.extend(command(&[b"SET", b"s", b"v"]));
    batch.extend(command(&[
        b"EVAL",
        b"return ARGV[1] .. KEYS[1]",
        b"1",
        b"k",
        b"a",
    ]));
    batch.extend(command(&[b"FCALL", b"get", b"1", b"s"]));
    batch.extend(command(&[
        b"EVALSHA",
        b"0000000000000000000000000000000000000000",
        b"0",
    ]));
    batch.extend(command(&[b"GET", b"n"]));
    batch.extend(command(&[b"EVALSHA", sha.as_bytes(), b"1", b"n"]));
    batch.extend(command(&[b"PING"]));
    conn.send(&batch);
    for expected in [
        int(1),
        int(2),
        int(3),
        "+OK\r\n".to_owned(),
        bulk("ak"),
        bulk("v"),
    ] {
        assert_eq!(reply(&mut conn), expected);
    }
    assert_eq!(
        reply(&mut conn),
        err("NOSCRIPT No matching script. Please use EVAL.")
    );
    assert_eq!(reply(&mut conn), bulk("3"));
    assert_eq!(reply(&mut conn), int(4));
    assert_eq!(reply(&mut conn), "+PONG\r\n");
}

/// Each script of a pipelined batch adds 2 in two steps: another client never reads an odd
/// count.
#[test]
fn pipelined_scripts_stay_atomic_for_other_clients() {
    let server = TestServer::start(BIN, &[]);
    let mut writer = server.raw();
    let mut reader = server.raw();
    let script: &[u8] = b"redis.call('INCR', KEYS[1]) return redis.call('INCR', KEYS[1])";
    let rounds = 50;
    let per_batch = 40;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..rounds {
                let mut batch = Vec::new();
                for _ in 0..per_batch {
                    batch.extend(command(&[b"EVAL", script, b"1", b"counter"]));
                }
                writer.send(&batch);
                for _ in 0..per_batch {
                    assert!(reply(&mut writer).starts_with(':'));
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = cmd(&mut reader, "GET counter");
            let count: i64 = value.lines().nth(1).map_or(0, |text| text.parse().unwrap());
            assert_eq!(count % 2, 0, "read a script's intermediate state: {count}");
            if count == 2 * rounds * per_batch {
                break;
            }
            assert!(Instant::now() < deadline, "the scripts did not finish");
        }
    });
}

#[test]
fn a_pipelined_script_wakes_a_blocked_client() {
    let server = TestServer::start(BIN, &[]);
    let mut blocked = server.raw();
    let mut writer = server.raw();
    let mut observer = server.raw();
    blocked.send_command(&[b"BLPOP", b"queue", b"10"]);
    // BLPOP is registered once the server lists the client as blocked.
    assert!(forkless_tests::wait_until(Duration::from_secs(10), || {
        cmd(&mut observer, "CLIENT LIST").contains("cmd=blpop")
    }));
    let mut batch = Vec::new();
    batch.extend(command(&[
        b"EVAL",
        b"return redis.call('RPUSH', KEYS[1], 'job')",
        b"1",
        b"queue",
    ]));
    batch.extend(command(&[
        b"EVAL",
        b"return redis.call('LLEN', KEYS[1])",
        b"1",
        b"queue",
    ]));
    writer.send(&batch);
    assert_eq!(reply(&mut writer), int(1));
    // The blocked client took the job before the next script ran, as in Redis.
    assert_eq!(reply(&mut writer), int(0));
    assert_eq!(reply(&mut blocked), "*2\r\n$5\r\nqueue\r\n$3\r\njob\r\n");
}

#[test]
fn a_busy_script_inside_a_pipeline_is_reported_and_killed() {
    busy_script_inside_a_pipeline(&["--busy-reply-threshold", "50"]);
}

#[test]
fn a_busy_script_inside_a_pipeline_is_killed_with_a_single_worker_thread() {
    busy_script_inside_a_pipeline(&["--busy-reply-threshold", "50", "--worker-threads", "1"]);
}

fn busy_script_inside_a_pipeline(args: &[&str]) {
    let server = TestServer::start(BIN, args);
    let mut runner = server.raw();
    let mut other = server.raw();
    let mut batch = Vec::new();
    batch.extend(command(&[b"EVAL", b"return 1", b"0"]));
    batch.extend(command(&[
        b"EVAL",
        b"local i = 0 while true do i = i + 1 end",
        b"0",
    ]));
    batch.extend(command(&[b"EVAL", b"return 2", b"0"]));
    runner.send(&batch);
    // The replies of a batch read at once are written together, after the last: the first
    // script's reply comes with the others.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = cmd(&mut other, "PING");
        if answer.starts_with("-BUSY") {
            break;
        }
        assert_eq!(answer, "+PONG\r\n");
        assert!(Instant::now() < deadline, "the script never became busy");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(cmd(&mut other, "SCRIPT KILL"), "+OK\r\n");
    assert_eq!(reply(&mut runner), int(1));
    let killed = reply(&mut runner);
    assert!(
        killed.starts_with("-ERR Script killed by user with SCRIPT KILL..."),
        "{killed}"
    );
    assert_eq!(reply(&mut runner), int(2));
    assert_eq!(cmd(&mut other, "PING"), "+PONG\r\n");
}

/// A long pipeline of slow scripts read at once kept the other clients out until its end
/// while a batch ran every script command in the buffer (this test saw 150 of 150). A batch
/// now ends at its bound (64 scripts or 1 ms) and lets a waiting command in before the next
/// starts, so another client's GET sees the count early.
#[test]
fn a_long_pipeline_of_scripts_lets_other_clients_in() {
    for args in [&[][..], &["--worker-threads", "1"][..]] {
        let server = TestServer::start(BIN, args);
        let mut runner = server.raw();
        let mut other = server.raw();
        // About a millisecond each, whatever the build: it waits on the server's clock.
        let script: &[u8] = b"local function now() local t = redis.call('TIME') \
            return t[1] * 1000000 + t[2] end \
            local stop = now() + 1000 while now() < stop do end \
            return redis.call('INCR', KEYS[1])";
        let sha = String::from_utf8(runner.call(&[b"SCRIPT", b"LOAD", script])).unwrap();
        let sha = sha.lines().nth(1).unwrap().to_owned();
        // Small enough for one read of the server (16 KiB): one batch after another.
        let n_scripts = 150;
        let mut batch = Vec::new();
        for _ in 0..n_scripts {
            batch.extend(command(&[b"EVALSHA", sha.as_bytes(), b"1", b"count"]));
        }
        assert!(batch.len() < 16 * 1024);
        runner.send(&batch);
        let deadline = Instant::now() + Duration::from_secs(30);
        let seen = loop {
            let value = cmd(&mut other, "GET count");
            let count: i64 = value.lines().nth(1).map_or(0, |text| text.parse().unwrap());
            if count > 0 {
                break count;
            }
            assert!(Instant::now() < deadline, "the scripts never ran");
        };
        // The next GET waits at most for a batch.
        let value = cmd(&mut other, "GET count");
        let next: i64 = value.lines().nth(1).unwrap().parse().unwrap();
        assert!(
            seen < n_scripts / 2 && next < n_scripts / 2,
            "another client waited for most of the pipeline: saw {seen} then {next} of {n_scripts}"
        );
        for _ in 0..n_scripts {
            assert!(reply(&mut runner).starts_with(':'));
        }
    }
}
