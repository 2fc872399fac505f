//! Regression tests for chained blocking moves. Redis serves every client a write woke, and
//! the clients that serving them woke in turn, before it replies to the write: after
//! `RPUSH list1 foo` returns, a chain `BLMOVE list1 list2` → `BLMOVE list2 list3` has moved
//! `foo` to list3. forkless replied to the RPUSH first and served the chain afterwards, so a
//! client reading right after its RPUSH could see `foo` halfway (Redis's "Linked LMOVEs" and
//! "Circular BRPOPLPUSH" tests failed in about one run of four). And a write woke only the
//! first client in line: when that one could not use it (an XREAD waiting for a later id) the
//! next one was never woken.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use forkless_tests::TestServer;
use forkless_tests::resp::{bulk, bulks, cmd, reply, send, wait_blocked};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

#[test]
fn a_chain_of_blocked_moves_is_served_before_the_write_replies() {
    let server = TestServer::start(BIN, &[]);
    let mut admin = server.raw();
    // Many rounds: the old order lost this race only now and then.
    for _ in 0..30 {
        let mut first = server.raw();
        let mut second = server.raw();
        send(&mut first, "BLMOVE list1 list2 RIGHT LEFT 0");
        wait_blocked(&mut admin, 1);
        send(&mut second, "BLMOVE list2 list3 LEFT RIGHT 0");
        wait_blocked(&mut admin, 2);
        assert_eq!(cmd(&mut admin, "RPUSH list1 foo"), ":1\r\n");
        assert_eq!(cmd(&mut admin, "LRANGE list1 0 -1"), "*0\r\n");
        assert_eq!(cmd(&mut admin, "LRANGE list2 0 -1"), "*0\r\n");
        assert_eq!(cmd(&mut admin, "LRANGE list3 0 -1"), bulks(&["foo"]));
        assert_eq!(reply(&mut first), bulk("foo"));
        assert_eq!(reply(&mut second), bulk("foo"));
        cmd(&mut admin, "DEL list3");
    }
}

#[test]
fn a_circle_of_blocked_moves_ends_where_redis_ends_it() {
    let server = TestServer::start(BIN, &[]);
    let mut admin = server.raw();
    for _ in 0..30 {
        let mut first = server.raw();
        let mut second = server.raw();
        send(&mut first, "BRPOPLPUSH list1 list2 0");
        wait_blocked(&mut admin, 1);
        send(&mut second, "BRPOPLPUSH list2 list1 0");
        wait_blocked(&mut admin, 2);
        cmd(&mut admin, "RPUSH list1 foo");
        assert_eq!(cmd(&mut admin, "LRANGE list1 0 -1"), bulks(&["foo"]));
        assert_eq!(cmd(&mut admin, "LRANGE list2 0 -1"), "*0\r\n");
        drop((first, second));
        wait_blocked(&mut admin, 0);
        cmd(&mut admin, "DEL list1");
    }
}

#[test]
fn a_write_the_first_waiter_cannot_use_reaches_the_next() {
    let server = TestServer::start(BIN, &[]);
    let mut admin = server.raw();
    cmd(&mut admin, "XADD s 5-1 f v");
    let mut later = server.raw();
    let mut any = server.raw();
    // Waits for an entry after 100-0: the XADD below does not serve it.
    send(&mut later, "XREAD BLOCK 0 STREAMS s 100-0");
    wait_blocked(&mut admin, 1);
    send(&mut any, "XREAD BLOCK 0 STREAMS s $");
    wait_blocked(&mut admin, 2);
    cmd(&mut admin, "XADD s 6-1 f v");
    let served = reply(&mut any);
    assert!(served.contains("6-1"), "{served}");
    wait_blocked(&mut admin, 1);
}
