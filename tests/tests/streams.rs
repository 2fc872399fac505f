//! Streams end to end: generated ids, blocking XREAD (`$` fixed at the time it blocked, COUNT,
//! timeouts, never blocking inside EXEC), TYPE / OBJECT ENCODING / SCAN TYPE, and a stream that
//! stays when its last entry goes. Replies compared with Redis 7.0 byte for byte are in
//! tests/cases/streams.txt.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::time::{Duration, Instant};

use forkless_tests::resp::{cmd, reply, send, wait_blocked};
use forkless_tests::{TestServer, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

/// The id in a bulk-string reply.
fn bulk_id(reply: &str) -> (u64, u64) {
    let text = reply.lines().nth(1).unwrap();
    let (ms, seq) = text.split_once('-').unwrap();
    (ms.parse().unwrap(), seq.parse().unwrap())
}

#[test]
fn generated_ids_increase_and_use_the_clock() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut last = (0, 0);
    for _ in 0..50 {
        let id = bulk_id(&cmd(&mut conn, "XADD s * f v"));
        assert!(id > last, "{id:?} after {last:?}");
        assert!(id.0 >= before);
        last = id;
    }
    // An id far in the future makes `*` continue its sequence.
    assert_eq!(
        cmd(&mut conn, "XADD s 99999999999999-5 f v"),
        "$16\r\n99999999999999-5\r\n"
    );
    assert_eq!(
        bulk_id(&cmd(&mut conn, "XADD s * f v")),
        (99_999_999_999_999, 6)
    );
    assert_eq!(
        bulk_id(&cmd(&mut conn, "XADD s 99999999999999-* f v")),
        (99_999_999_999_999, 7)
    );
    assert_eq!(cmd(&mut conn, "XLEN s"), ":53\r\n");
}

#[test]
fn xread_block_waits_for_entries_after_dollar() {
    let server = TestServer::start(BIN, &[]);
    let mut admin = server.raw();
    let mut reader = server.raw();
    assert_eq!(cmd(&mut admin, "XADD s 1-0 old 1"), "$3\r\n1-0\r\n");
    send(&mut reader, "XREAD BLOCK 0 STREAMS s $");
    wait_blocked(&mut admin, 1);
    // A write to another key does not serve it; the entry added after it blocked does, alone.
    cmd(&mut admin, "XADD other 1-0 f v");
    assert_eq!(cmd(&mut admin, "XADD s 2-0 new 2"), "$3\r\n2-0\r\n");
    assert_eq!(
        reply(&mut reader),
        "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n2-0\r\n*2\r\n$3\r\nnew\r\n$1\r\n2\r\n"
    );
    wait_blocked(&mut admin, 0);
    // A missing key blocks from 0-0, and several keys are served from whichever gets data.
    send(&mut reader, "XREAD COUNT 1 BLOCK 0 STREAMS missing s $ $");
    wait_blocked(&mut admin, 1);
    cmd(&mut admin, "XADD missing 5-0 a 1");
    assert_eq!(
        reply(&mut reader),
        "*1\r\n*2\r\n$7\r\nmissing\r\n*1\r\n*2\r\n$3\r\n5-0\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n"
    );
}

#[test]
fn xread_block_times_out_with_a_null_array() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    let started = Instant::now();
    assert_eq!(cmd(&mut conn, "XREAD BLOCK 150 STREAMS s $"), "*-1\r\n");
    assert!(started.elapsed() >= Duration::from_millis(150));
    // Inside EXEC it never blocks.
    assert_eq!(cmd(&mut conn, "MULTI"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "XREAD BLOCK 0 STREAMS s $"), "+QUEUED\r\n");
    assert_eq!(cmd(&mut conn, "EXEC"), "*1\r\n*-1\r\n");
    // Without BLOCK nothing to read is a null array at once.
    assert_eq!(cmd(&mut conn, "XREAD STREAMS s 0"), "*-1\r\n");
}

#[test]
fn xread_replies_a_map_in_resp3() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    cmd(&mut conn, "HELLO 3");
    cmd(&mut conn, "XADD s 1-0 f v");
    assert_eq!(
        cmd(&mut conn, "XREAD STREAMS s 0"),
        "%1\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
}

#[test]
fn streams_report_their_type_and_stay_when_emptied() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    cmd(&mut conn, "XADD s 1-0 f v");
    cmd(&mut conn, "SET str v");
    assert_eq!(cmd(&mut conn, "TYPE s"), "+stream\r\n");
    assert_eq!(cmd(&mut conn, "OBJECT ENCODING s"), "$6\r\nstream\r\n");
    assert_eq!(
        cmd(&mut conn, "SCAN 0 TYPE stream"),
        "*2\r\n$1\r\n0\r\n*1\r\n$1\r\ns\r\n"
    );
    assert_eq!(cmd(&mut conn, "XDEL s 1-0"), ":1\r\n");
    assert_eq!(cmd(&mut conn, "EXISTS s"), ":1\r\n");
    assert_eq!(cmd(&mut conn, "XLEN s"), ":0\r\n");
    // The last id survives the deletion: an older id is still refused.
    assert!(cmd(&mut conn, "XADD s 1-0 f v").starts_with("-ERR The ID specified in XADD"));
    assert_eq!(cmd(&mut conn, "DEL s"), ":1\r\n");
    assert_eq!(cmd(&mut conn, "XADD s 1-0 f v"), "$3\r\n1-0\r\n");
    assert!(cmd(&mut conn, "XADD str * f v").starts_with("-WRONGTYPE"));
}

#[test]
fn xreadgroup_block_is_served_by_new_entries_and_records_them_pending() {
    let server = TestServer::start(BIN, &[]);
    let mut admin = server.raw();
    let mut reader = server.raw();
    assert_eq!(cmd(&mut admin, "XGROUP CREATE s g $ MKSTREAM"), "+OK\r\n");
    send(&mut reader, "XREADGROUP GROUP g alice BLOCK 0 STREAMS s >");
    wait_blocked(&mut admin, 1);
    cmd(&mut admin, "XADD s 1-0 f v");
    assert_eq!(
        reply(&mut reader),
        "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    assert_eq!(
        cmd(&mut admin, "XPENDING s g"),
        "*4\r\n:1\r\n$3\r\n1-0\r\n$3\r\n1-0\r\n*1\r\n*2\r\n$5\r\nalice\r\n$1\r\n1\r\n"
    );
    // Timing out is a null array.
    assert_eq!(
        cmd(
            &mut reader,
            "XREADGROUP GROUP g alice BLOCK 100 STREAMS s >"
        ),
        "*-1\r\n"
    );
}

/// A client blocked in XREADGROUP is told when its stream or group goes, as Redis 7.0 does,
/// rather than waiting for an entry that can never be delivered.
#[test]
fn xreadgroup_block_ends_with_an_error_when_the_stream_or_group_goes() {
    let server = TestServer::start(BIN, &[]);
    let mut admin = server.raw();
    let mut reader = server.raw();
    cmd(&mut admin, "XGROUP CREATE s g $ MKSTREAM");
    send(&mut reader, "XREADGROUP GROUP g alice BLOCK 0 STREAMS s >");
    wait_blocked(&mut admin, 1);
    assert_eq!(cmd(&mut admin, "DEL s"), ":1\r\n");
    assert_eq!(
        reply(&mut reader),
        "-UNBLOCKED the stream key no longer exists\r\n"
    );
    cmd(&mut admin, "XGROUP CREATE s g $ MKSTREAM");
    send(&mut reader, "XREADGROUP GROUP g alice BLOCK 0 STREAMS s >");
    wait_blocked(&mut admin, 1);
    assert_eq!(cmd(&mut admin, "XGROUP DESTROY s g"), ":1\r\n");
    assert_eq!(
        reply(&mut reader),
        "-NOGROUP the consumer group this client was blocked on no longer exists\r\n"
    );
    wait_blocked(&mut admin, 0);
}

#[test]
fn lag_and_entries_read_follow_redis_7_0() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    for i in 1..=5 {
        cmd(&mut conn, &format!("XADD s {i}-0 f v"));
    }
    cmd(&mut conn, "XGROUP CREATE s g 0");
    cmd(&mut conn, "XREADGROUP GROUP g c COUNT 2 STREAMS s >");
    let groups = cmd(&mut conn, "XINFO GROUPS s");
    assert!(
        groups.ends_with("$12\r\nentries-read\r\n:2\r\n$3\r\nlag\r\n:3\r\n"),
        "{groups}"
    );
    // A deletion after the group's position makes the lag unknown until it is passed.
    cmd(&mut conn, "XDEL s 4-0");
    let groups = cmd(&mut conn, "XINFO GROUPS s");
    assert!(groups.ends_with("$3\r\nlag\r\n$-1\r\n"), "{groups}");
    cmd(&mut conn, "XREADGROUP GROUP g c STREAMS s >");
    let groups = cmd(&mut conn, "XINFO GROUPS s");
    assert!(
        groups.ends_with("$12\r\nentries-read\r\n:5\r\n$3\r\nlag\r\n:0\r\n"),
        "{groups}"
    );
}

#[test]
fn stream_node_max_entries_shapes_approximate_trims() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    assert_eq!(
        cmd(&mut conn, "CONFIG SET stream-node-max-entries 1"),
        "+OK\r\n"
    );
    for i in 1..=102 {
        cmd(&mut conn, &format!("XADD s {i}-0 f v"));
    }
    // One entry per node; `~` removes at most 100 nodes' worth (100 x 1) without LIMIT.
    assert_eq!(cmd(&mut conn, "XTRIM s MAXLEN ~ 1"), ":100\r\n");
    assert_eq!(cmd(&mut conn, "XLEN s"), ":2\r\n");
    assert_eq!(
        cmd(&mut conn, "CONFIG SET stream-node-max-entries 10"),
        "+OK\r\n"
    );
    cmd(&mut conn, "DEL s");
    for i in 1..=100 {
        cmd(&mut conn, &format!("XADD s {i}-0 f v"));
    }
    cmd(&mut conn, "XADD s MAXLEN ~ 55 LIMIT 30 101-0 f v");
    assert_eq!(cmd(&mut conn, "XLEN s"), ":71\r\n");
}

/// FLUSHALL wakes a client blocked in XREADGROUP with Redis's error, as `signalFlushedDb` does,
/// rather than leaving it blocked on a group that no longer exists.
#[test]
fn flushall_ends_a_blocked_xreadgroup() {
    let server = TestServer::start(BIN, &[]);
    let mut admin = server.raw();
    let mut reader = server.raw();
    cmd(&mut admin, "XGROUP CREATE s g $ MKSTREAM");
    send(&mut reader, "XREADGROUP GROUP g alice BLOCK 0 STREAMS s >");
    wait_blocked(&mut admin, 1);
    assert_eq!(cmd(&mut admin, "FLUSHALL"), "+OK\r\n");
    assert_eq!(
        reply(&mut reader),
        "-UNBLOCKED the stream key no longer exists\r\n"
    );
}

/// A stream with deleted entries, several nodes, groups, consumers and PELs, saved by SAVE and
/// by BGSAVE in both snapshot modes, comes back from a restart as it was: entries, counters and
/// everything XINFO STREAM FULL shows (delivery and seen times included).
#[test]
fn streams_survive_save_and_restart_in_both_snapshot_modes() {
    for (save, mode) in [("SAVE", "epoch"), ("BGSAVE", "epoch"), ("BGSAVE", "fork")] {
        let dir = forkless_tests::unique_dir("streams-snapshot");
        let args = ["--save", "", "--snapshot-mode", mode];
        let before = {
            let server = TestServer::start_in(BIN, &dir, &args, &[]);
            let mut conn = server.raw();
            for i in 1..=350 {
                cmd(&mut conn, &format!("XADD s {i}-1 a {i} b text{i}"));
            }
            cmd(&mut conn, "XADD s 351-0 other 1");
            cmd(&mut conn, "XDEL s 5-1 200-1");
            cmd(&mut conn, "XGROUP CREATE s g 0");
            cmd(&mut conn, "XREADGROUP GROUP g alice COUNT 3 STREAMS s >");
            cmd(&mut conn, "XREADGROUP GROUP g bob COUNT 2 STREAMS s >");
            cmd(&mut conn, "XACK s g 2-1");
            cmd(&mut conn, "XGROUP CREATE s g2 $");
            cmd(&mut conn, "XGROUP CREATECONSUMER s g2 carol");
            cmd(&mut conn, "XGROUP CREATE empty g 0 MKSTREAM");
            let full = cmd(&mut conn, "XINFO STREAM s FULL COUNT 0");
            let empty = cmd(&mut conn, "XINFO STREAM empty FULL");
            let reply = cmd(&mut conn, save);
            assert!(reply.starts_with('+'), "{save}: {reply}");
            if save == "BGSAVE" {
                assert!(
                    wait_until(Duration::from_secs(20), || {
                        cmd(&mut conn, "INFO persistence").contains("rdb_bgsave_in_progress:0\r\n")
                    }),
                    "BGSAVE never finished"
                );
                assert!(cmd(&mut conn, "INFO persistence").contains("rdb_last_bgsave_status:ok"));
            }
            (full, empty)
        };
        let server = TestServer::start_in(BIN, &dir, &args, &[]);
        let mut conn = server.raw();
        assert_eq!(
            cmd(&mut conn, "XINFO STREAM s FULL COUNT 0"),
            before.0,
            "{save} {mode}"
        );
        assert_eq!(cmd(&mut conn, "XINFO STREAM empty FULL"), before.1);
        assert_eq!(cmd(&mut conn, "XLEN s"), ":349\r\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The keyspace events of the stream commands carry Redis 7.0's names, in its order (checked
/// against redis-server 7.0.15).
#[test]
fn stream_commands_publish_redis_event_names() {
    let server = TestServer::start(BIN, &[]);
    let mut admin = server.raw();
    let mut sub = server.raw();
    cmd(&mut admin, "CONFIG SET notify-keyspace-events Et");
    cmd(&mut sub, "PSUBSCRIBE __keyevent@0__:*");
    for line in [
        "XADD s 1-0 a 1",
        "XADD s MAXLEN 1 2-0 a 1",
        "XDEL s 2-0",
        "XTRIM s MAXLEN 0",
        "XADD s 3-0 a 1",
        "XGROUP CREATE s g 0",
        "XGROUP CREATECONSUMER s g c",
        "XREADGROUP GROUP g d STREAMS s >",
        "XGROUP SETID s g 0",
        "XGROUP DELCONSUMER s g c",
        "XGROUP DESTROY s g",
        "XSETID s 5-0",
        "XGROUP CREATE m g 0 MKSTREAM",
    ] {
        cmd(&mut admin, line);
    }
    cmd(&mut admin, "PUBLISH __keyevent@0__:end x");
    let mut events = Vec::new();
    loop {
        let message = reply(&mut sub);
        let event = message
            .split("__keyevent@0__:")
            .nth(2)
            .and_then(|rest| rest.split("\r\n").next())
            .unwrap_or_default()
            .to_string();
        if event == "end" {
            break;
        }
        if !event.is_empty() {
            events.push(event);
        }
    }
    assert_eq!(
        events,
        [
            "xadd",
            "xadd",
            "xtrim",
            "xdel",
            "xadd",
            "xgroup-create",
            "xgroup-createconsumer",
            "xgroup-createconsumer",
            "xgroup-setid",
            "xgroup-delconsumer",
            "xgroup-destroy",
            "xsetid",
            "xgroup-create"
        ]
    );
}

/// DEBUG DIGEST-VALUE of a stream is redis-server 7.0.15's for the same entries.
#[test]
fn stream_digest_matches_redis() {
    let server = TestServer::start(BIN, &["--enable-debug-command", "yes"]);
    let mut conn = server.raw();
    cmd(&mut conn, "XADD s 1-1 a 1 b hello");
    cmd(&mut conn, "XADD s 2-0 c 3");
    assert_eq!(
        cmd(&mut conn, "DEBUG DIGEST-VALUE s"),
        "*1\r\n+74c8919b07474cb3ca6f3234c3c8ec1774a18e41\r\n"
    );
}
