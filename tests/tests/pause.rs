//! CLIENT PAUSE WRITE regressions found by Redis 7.0's pause unit: a script command was judged
//! by its table flags only, so EVAL of a `no-writes` script, EVALSHA of one, FCALL of a
//! `no-writes` function and a transaction of such scripts were held back until the pause ended
//! (the unit hung), where Redis judges them by the script's declared flags; and keys expired
//! for real while writes were paused (the active cycle removed them, counting
//! `expired_keys`), where Redis expires nothing until the pause ends, and a read that found a
//! key expired did not remove it afterwards (reads could not remove keys at all).
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::time::Duration;

use forkless_tests::resp::{bulk, call, cmd, int};
use forkless_tests::{RawConn, TestServer, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

fn expired_keys(conn: &mut RawConn) -> u64 {
    let info = cmd(conn, "INFO stats");
    info.lines()
        .find_map(|line| line.strip_prefix("expired_keys:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn scripts_that_declare_no_writes_run_during_a_write_pause() {
    let server = TestServer::start(BIN, &[]);
    let mut admin = server.raw();
    cmd(&mut admin, "SET x y");
    call(
        &mut admin,
        &[
            b"FUNCTION",
            b"LOAD",
            b"#!lua name=f1\nredis.register_function{function_name='f1', callback=function() return 'hello' end, flags={'no-writes'}}",
        ],
    );
    let sha = call(
        &mut admin,
        &[b"SCRIPT", b"LOAD", b"#!lua flags=no-writes\nreturn 2"],
    );
    let sha = sha.lines().nth(1).unwrap().to_string();
    cmd(&mut admin, "CLIENT PAUSE 100000 WRITE");
    let mut conn = server.raw();
    // Each of these would hang until the pause ended.
    assert_eq!(
        call(
            &mut conn,
            &[b"EVAL", b"#!lua flags=no-writes\nreturn 'unique'", b"0"]
        ),
        bulk("unique")
    );
    assert_eq!(
        call(
            &mut conn,
            &[b"EVAL_RO", b"return redis.call('get', KEYS[1])", b"1", b"x"]
        ),
        bulk("y")
    );
    assert_eq!(call(&mut conn, &[b"EVALSHA", sha.as_bytes(), b"0"]), int(2));
    assert_eq!(cmd(&mut conn, "FCALL f1 0"), bulk("hello"));
    cmd(&mut conn, "MULTI");
    call(
        &mut conn,
        &[b"EVAL", b"#!lua flags=no-writes\nreturn 12", b"0"],
    );
    assert_eq!(cmd(&mut conn, "EXEC"), "*1\r\n:12\r\n");
    // A script that declares flags but not no-writes is held back, as a write.
    conn.send_command(&[b"EVAL", b"#!lua\nreturn 1", b"0"]);
    assert!(wait_until(Duration::from_secs(10), || {
        cmd(&mut admin, "INFO clients").contains("blocked_clients:1\r\n")
    }));
    cmd(&mut admin, "CLIENT UNPAUSE");
    assert_eq!(String::from_utf8(conn.read_reply()).unwrap(), int(1));
}

#[test]
fn nothing_expires_during_a_write_pause_and_reads_expire_after_it() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    let before = expired_keys(&mut conn);
    cmd(&mut conn, "MULTI");
    cmd(&mut conn, "SET foo bar PX 10");
    cmd(&mut conn, "SET bar foo PX 10");
    cmd(&mut conn, "CLIENT PAUSE 50000 WRITE");
    cmd(&mut conn, "EXEC");
    assert!(wait_until(Duration::from_secs(5), || {
        cmd(&mut conn, "GET foo") == "$-1\r\n" && cmd(&mut conn, "GET bar") == "$-1\r\n"
    }));
    // Several active expiry cycles' time: still nothing removed for real.
    let deadline = std::time::Instant::now() + Duration::from_millis(300);
    while std::time::Instant::now() < deadline {
        assert_eq!(expired_keys(&mut conn), before);
    }
    cmd(&mut conn, "CLIENT UNPAUSE");
    // Reads remove what they find expired, as Redis's lazy expiry does.
    cmd(&mut conn, "GET foo");
    cmd(&mut conn, "GET bar");
    assert_eq!(expired_keys(&mut conn), before + 2);
}
