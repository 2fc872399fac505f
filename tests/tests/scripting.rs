//! Scripting end to end: FUNCTION, EVAL/EVALSHA, SCRIPT and FCALL with Redis 7.0's replies and
//! errors, the Lua environment Redis gives scripts, atomicity against other clients and busy
//! scripts.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use forkless_tests::TestServer;
use forkless_tests::resp::{call, cmd, err};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

/// Redis 7.0's own test harness sends `FUNCTION FLUSH` before every test block and aborts the
/// unit when it fails: forkless used to answer "unknown command".
#[test]
fn function_flush_answers_ok() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    assert_eq!(cmd(&mut conn, "FUNCTION FLUSH"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "function flush async"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "FUNCTION FLUSH SYNC"), "+OK\r\n");
    assert_eq!(
        cmd(&mut conn, "FUNCTION FLUSH LATER"),
        err("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")
    );
    assert_eq!(
        call(&mut conn, &[b"FUNCTION", b"FLUSH", b"SYNC", b"X"]),
        err("ERR unknown subcommand or wrong number of arguments for 'FLUSH'. Try FUNCTION HELP.")
    );
}
