//! Pub/sub end to end: RESP2 and RESP3 subscribers, patterns, subscribed-mode rules, PUBSUB
//! introspection, and a slow subscriber that is disconnected at its output buffer limit while
//! the publisher never waits.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::time::Duration;

use forkless_tests::{RawConn, TestServer, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

fn text(reply: Vec<u8>) -> String {
    String::from_utf8(reply).unwrap()
}

fn publish(conn: &mut RawConn, channel: &str, message: &str) -> String {
    text(conn.call(&[b"PUBLISH", channel.as_bytes(), message.as_bytes()]))
}

#[test]
fn resp2_subscribers_get_messages_and_patterns_get_pmessages() {
    let server = TestServer::start(BIN, &[]);
    let mut sub = server.raw();
    assert_eq!(
        text(sub.call(&[b"SUBSCRIBE", b"news"])),
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    assert_eq!(
        text(sub.call(&[b"PSUBSCRIBE", b"n*"])),
        "*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:2\r\n"
    );
    let mut publisher = server.raw();
    assert_eq!(publish(&mut publisher, "news", "hello"), ":2\r\n");
    assert_eq!(publish(&mut publisher, "other", "nobody"), ":0\r\n");
    assert_eq!(
        text(sub.read_reply()),
        "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
    );
    assert_eq!(
        text(sub.read_reply()),
        "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
    );
    // Subscribed mode: only (un)subscribe, PING, QUIT, RESET.
    assert_eq!(
        text(sub.call(&[b"GET", b"k"])),
        "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET \
         are allowed in this context\r\n"
    );
    assert_eq!(text(sub.call(&[b"PING"])), "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    // Introspection from another connection.
    assert_eq!(
        text(publisher.call(&[b"PUBSUB", b"NUMSUB", b"news", b"none"])),
        "*4\r\n$4\r\nnews\r\n:1\r\n$4\r\nnone\r\n:0\r\n"
    );
    assert_eq!(text(publisher.call(&[b"PUBSUB", b"NUMPAT"])), ":1\r\n");
    assert_eq!(
        text(publisher.call(&[b"PUBSUB", b"CHANNELS", b"n*"])),
        "*1\r\n$4\r\nnews\r\n"
    );
    // Unsubscribing from everything leaves subscribed mode.
    assert_eq!(
        text(sub.call(&[b"UNSUBSCRIBE"])),
        "*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    assert_eq!(
        text(sub.call(&[b"PUNSUBSCRIBE"])),
        "*3\r\n$12\r\npunsubscribe\r\n$2\r\nn*\r\n:0\r\n"
    );
    assert_eq!(
        text(sub.call(&[b"UNSUBSCRIBE"])),
        "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"
    );
    assert_eq!(text(sub.call(&[b"GET", b"k"])), "$-1\r\n");
    assert_eq!(text(publisher.call(&[b"PUBSUB", b"NUMPAT"])), ":0\r\n");
}

#[test]
fn resp3_subscribers_get_push_messages_and_may_run_any_command() {
    let server = TestServer::start(BIN, &[]);
    let mut sub = server.raw();
    assert!(text(sub.call(&[b"HELLO", b"3"])).starts_with('%'));
    assert_eq!(
        text(sub.call(&[b"SUBSCRIBE", b"a"])),
        ">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
    );
    assert_eq!(text(sub.call(&[b"GET", b"k"])), "_\r\n");
    let mut publisher = server.raw();
    assert_eq!(publish(&mut publisher, "a", "x"), ":1\r\n");
    assert_eq!(
        text(sub.read_reply()),
        ">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nx\r\n"
    );
}

#[test]
fn a_subscriber_that_does_not_read_is_disconnected_and_publishers_never_wait() {
    let server = TestServer::start(BIN, &["--client-output-buffer-limit", "pubsub 1mb 0 0"]);
    let mut sub = server.raw();
    assert_eq!(
        text(sub.call(&[b"SUBSCRIBE", b"firehose"])).lines().next(),
        Some("*3")
    );
    let mut publisher = server.raw();
    let payload = vec![b'x'; 16 * 1024];
    // 64 MB published to a subscriber that never reads: far past its 1 MB limit and past what
    // socket buffers absorb. Every PUBLISH must still be answered.
    let mut dropped = false;
    for _ in 0..4096 {
        let reply = text(publisher.call(&[b"PUBLISH", b"firehose", &payload]));
        if reply == ":0\r\n" {
            dropped = true;
            break;
        }
        assert_eq!(reply, ":1\r\n");
    }
    assert!(dropped, "the slow subscriber was never disconnected");
    assert!(server.wait_for_log("output buffer limits").is_some());
    assert!(wait_until(Duration::from_secs(10), || {
        text(publisher.call(&[b"PUBSUB", b"NUMSUB", b"firehose"])).ends_with(":0\r\n")
    }));
}
