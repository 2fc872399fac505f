//! Regression tests for issue 20's blocking defects. A client blocked in BLPOP was never woken
//! when MOVE (or COPY ... DB) brought data into its key from another database: it stayed
//! blocked while LLEN showed the list; every way a key gains data must wake its waiters. And a
//! key that turned into another type (`SET k str` while a client waited in `BLPOP k`) ended the
//! block with WRONGTYPE, where Redis keeps the client blocked and serves it once a list appears.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use forkless_tests::TestServer;
use forkless_tests::resp::{bulks, cmd, reply, send, wait_blocked};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

/// Blocks a client with `blocking` in database 0, runs `writes` on another connection, and
/// returns the blocked client's reply.
fn served_after(server: &TestServer, blocking: &str, writes: &[&str]) -> String {
    let mut waiter = server.raw();
    send(&mut waiter, blocking);
    let mut admin = server.raw();
    wait_blocked(&mut admin, 1);
    for line in writes {
        let answer = cmd(&mut admin, line);
        assert!(!answer.starts_with('-'), "{line}: {answer}");
    }
    let served = reply(&mut waiter);
    wait_blocked(&mut admin, 0);
    cmd(&mut admin, "FLUSHALL");
    served
}

#[test]
fn every_way_a_key_gains_data_wakes_its_waiters() {
    let server = TestServer::start(BIN, &[]);
    let list_served = bulks(&["k", "x"]);
    // MOVE from another database (the reported case), for a list and a sorted set.
    assert_eq!(
        served_after(
            &server,
            "BLPOP k 0",
            &["SELECT 2", "RPUSH k x", "MOVE k 0", "SELECT 0"]
        ),
        list_served
    );
    assert_eq!(
        served_after(
            &server,
            "BZPOPMIN k 0",
            &["SELECT 2", "ZADD k 1 m", "MOVE k 0", "SELECT 0"]
        ),
        bulks(&["k", "m", "1"])
    );
    // COPY into another database.
    assert_eq!(
        served_after(
            &server,
            "BLPOP k 0",
            &["SELECT 3", "RPUSH src x", "COPY src k DB 0", "SELECT 0"]
        ),
        list_served
    );
    // Within the database: RENAME, LMOVE, the *STORE commands, and a transaction.
    assert_eq!(
        served_after(&server, "BLPOP k 0", &["RPUSH src x", "RENAME src k"]),
        list_served
    );
    assert_eq!(
        served_after(
            &server,
            "BLPOP k 0",
            &["RPUSH src x", "LMOVE src k LEFT RIGHT"]
        ),
        list_served
    );
    assert_eq!(
        served_after(
            &server,
            "BRPOPLPUSH k dst 0",
            &["RPUSH src x", "RPOPLPUSH src k"]
        ),
        "$1\r\nx\r\n"
    );
    assert_eq!(
        served_after(
            &server,
            "BZPOPMAX k 0",
            &["ZADD src 2 m", "ZUNIONSTORE k 1 src"]
        ),
        bulks(&["k", "m", "2"])
    );
    assert_eq!(
        served_after(
            &server,
            "BZPOPMIN k 0",
            &["ZADD src 3 m", "ZRANGESTORE k src 0 -1"]
        ),
        bulks(&["k", "m", "3"])
    );
    assert_eq!(
        served_after(
            &server,
            "BLPOP k 0",
            &["MULTI", "RPUSH k x", "SET other 1", "EXEC"]
        ),
        list_served
    );
}

#[test]
fn a_key_of_another_type_does_not_end_a_block() {
    let server = TestServer::start(BIN, &[]);
    // The reported case: SET while BLPOP waits, then a list appears.
    assert_eq!(
        served_after(&server, "BLPOP k 0", &["SET k str", "DEL k", "RPUSH k x"]),
        bulks(&["k", "x"])
    );
    // A later key of the right type serves the client although an earlier one is a string.
    assert_eq!(
        served_after(&server, "BLPOP a b 0", &["SET a str", "RPUSH b y"]),
        bulks(&["b", "y"])
    );
    assert_eq!(
        served_after(
            &server,
            "BZPOPMIN z 0",
            &["RPUSH z not-a-zset", "DEL z", "ZADD z 5 m"]
        ),
        bulks(&["z", "m", "5"])
    );
    assert_eq!(
        served_after(
            &server,
            "BLMOVE src dst LEFT LEFT 0",
            &["SADD src member", "DEL src", "RPUSH src x"]
        ),
        "$1\r\nx\r\n"
    );
    assert_eq!(
        served_after(
            &server,
            "BLMPOP 0 1 k LEFT",
            &["HSET k f v", "DEL k", "RPUSH k x"]
        ),
        "*2\r\n$1\r\nk\r\n*1\r\n$1\r\nx\r\n"
    );
    // Before blocking, a key of another type is still an error at once, as in Redis.
    let mut conn = server.raw();
    assert_eq!(cmd(&mut conn, "SET s str"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "BLPOP s 0"), forkless_tests::resp::WRONGTYPE);
}
