//! Pub/sub end to end: RESP2 and RESP3 subscribers, patterns, shard channels, subscribed-mode
//! rules, PUBSUB introspection, and a slow subscriber that is disconnected at its output buffer
//! limit while the publisher never waits.
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

/// Sharded pub/sub (Redis 7.0, without cluster mode): its own namespace, `smessage`, its own
/// subscription count. Replies checked byte for byte against redis-server 7.0.15.
#[test]
fn shard_channels_are_a_namespace_of_their_own() {
    let server = TestServer::start(BIN, &[]);
    let mut sub = server.raw();
    let mut psub = server.raw();
    let mut publisher = server.raw();
    sub.send_command(&[b"SSUBSCRIBE", b"a", b"b"]);
    assert_eq!(
        text(sub.read_reply()),
        "*3\r\n$10\r\nssubscribe\r\n$1\r\na\r\n:1\r\n"
    );
    assert_eq!(
        text(sub.read_reply()),
        "*3\r\n$10\r\nssubscribe\r\n$1\r\nb\r\n:2\r\n"
    );
    // Channel counts and shard channel counts are separate.
    assert_eq!(
        text(sub.call(&[b"SUBSCRIBE", b"c"])),
        "*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"
    );
    assert_eq!(
        text(sub.call(&[b"SSUBSCRIBE", b"a"])),
        "*3\r\n$10\r\nssubscribe\r\n$1\r\na\r\n:2\r\n"
    );
    assert_eq!(
        text(psub.call(&[b"PSUBSCRIBE", b"*"])),
        "*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:1\r\n"
    );
    // SPUBLISH reaches shard subscribers only; PUBLISH never reaches them.
    assert_eq!(text(publisher.call(&[b"SPUBLISH", b"a", b"x"])), ":1\r\n");
    assert_eq!(text(publisher.call(&[b"PUBLISH", b"a", b"y"])), ":1\r\n");
    assert_eq!(
        text(sub.read_reply()),
        "*3\r\n$8\r\nsmessage\r\n$1\r\na\r\n$1\r\nx\r\n"
    );
    assert_eq!(
        text(psub.read_reply()),
        "*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$1\r\na\r\n$1\r\ny\r\n"
    );
    let mut channels = text(publisher.call(&[b"PUBSUB", b"SHARDCHANNELS"]));
    channels = channels.replace("$1\r\nb\r\n$1\r\na\r\n", "$1\r\na\r\n$1\r\nb\r\n");
    assert_eq!(channels, "*2\r\n$1\r\na\r\n$1\r\nb\r\n");
    assert_eq!(
        text(publisher.call(&[b"PUBSUB", b"SHARDNUMSUB", b"a", b"z"])),
        "*4\r\n$1\r\na\r\n:1\r\n$1\r\nz\r\n:0\r\n"
    );
    assert_eq!(
        text(publisher.call(&[b"PUBSUB", b"CHANNELS"])),
        "*1\r\n$1\r\nc\r\n"
    );
    let stats = text(publisher.call(&[b"INFO", b"stats"]));
    for field in [
        "pubsub_channels:1",
        "pubsub_patterns:1",
        "pubsubshard_channels:2",
    ] {
        assert!(stats.contains(field), "{field} missing in {stats}");
    }
    // Subscribed mode holds while only shard channels are left.
    assert_eq!(
        text(sub.call(&[b"UNSUBSCRIBE"])),
        "*3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:0\r\n"
    );
    assert!(text(sub.call(&[b"GET", b"k"])).starts_with("-ERR Can't execute 'get'"));
    assert_eq!(
        text(sub.call(&[b"SUNSUBSCRIBE", b"a"])),
        "*3\r\n$12\r\nsunsubscribe\r\n$1\r\na\r\n:1\r\n"
    );
    assert_eq!(
        text(sub.call(&[b"SUNSUBSCRIBE"])),
        "*3\r\n$12\r\nsunsubscribe\r\n$1\r\nb\r\n:0\r\n"
    );
    assert_eq!(
        text(sub.call(&[b"SUNSUBSCRIBE"])),
        "*3\r\n$12\r\nsunsubscribe\r\n$-1\r\n:0\r\n"
    );
    // Out of subscribed mode: a plain PONG, and nobody left to receive.
    assert_eq!(text(sub.call(&[b"PING"])), "+PONG\r\n");
    assert_eq!(text(publisher.call(&[b"SPUBLISH", b"b", b"q"])), ":0\r\n");
}
