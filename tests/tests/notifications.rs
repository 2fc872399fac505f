//! Keyspace notifications (`notify-keyspace-events`): the events Redis 7.0 publishes, with its
//! names and in its order, on `__keyspace@<db>__:<key>` and `__keyevent@<db>__:<event>`, the
//! class masks, `new` and `expired`, and nothing at all while the option is empty.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use forkless_tests::{RawConn, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

/// A connection subscribed to every channel by pattern.
fn subscriber(server: &TestServer) -> RawConn {
    let mut sub = server.raw();
    let reply = sub.call(&[b"PSUBSCRIBE", b"*"]);
    assert!(reply.starts_with(b"*3\r\n$10\r\npsubscribe"), "{reply:?}");
    sub
}

/// The next message as `channel payload`.
fn next(sub: &mut RawConn) -> String {
    let reply = String::from_utf8(sub.read_reply()).unwrap();
    let lines: Vec<&str> = reply.split("\r\n").collect();
    assert_eq!(lines.get(2), Some(&"pmessage"), "{reply:?}");
    format!("{} {}", lines[6], lines[8])
}

/// Sends a command and checks it did not fail.
fn run(conn: &mut RawConn, words: &str) {
    let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
    let reply = conn.call(&args);
    assert_ne!(reply.first(), Some(&b'-'), "{words}: {reply:?}");
}

/// Publishes a marker and reads up to it: every event before it, in order.
fn events_until_marker(sub: &mut RawConn, conn: &mut RawConn) -> Vec<String> {
    run(conn, "PUBLISH marker end");
    let mut events = Vec::new();
    loop {
        let event = next(sub);
        if event == "marker end" {
            return events;
        }
        events.push(event);
    }
}

fn keyevents(sub: &mut RawConn, conn: &mut RawConn) -> Vec<String> {
    events_until_marker(sub, conn)
        .into_iter()
        .map(|event| event.replace("__keyevent@0__:", ""))
        .collect()
}

#[test]
fn every_type_publishes_redis_events_in_order() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    run(&mut conn, "CONFIG SET notify-keyspace-events EA");
    let mut sub = subscriber(&server);
    for command in [
        "SET s v EX 100",
        "APPEND s x",
        "SETRANGE s 0 y",
        "INCR n",
        "INCRBYFLOAT n 1.5",
        "GETDEL n",
        "SETBIT b 3 1",
        "EXPIRE s 50",
        "PERSIST s",
        "RENAME s s2",
        "RPUSH l a b",
        "LPUSH l c",
        "LSET l 0 d",
        "LINSERT l BEFORE a z",
        "LREM l 1 z",
        "LTRIM l 0 1",
        "LMOVE l l2 LEFT RIGHT",
        "RPOP l",
        "HSET h f 1",
        "HINCRBY h f 2",
        "HINCRBYFLOAT h f 0.5",
        "HDEL h f",
        "SADD set a b",
        "SREM set a",
        "SMOVE set set2 b",
        "ZADD z 1 a 2 b",
        "ZINCRBY z 1 a",
        "ZREM z a",
        "ZPOPMIN z",
        "SADD x 1 2",
        "SINTERSTORE y x",
        "DEL x y",
        "MSET m1 1 m2 2",
    ] {
        run(&mut conn, command);
    }
    assert_eq!(
        keyevents(&mut sub, &mut conn),
        [
            "set s",
            "expire s",
            "append s",
            "setrange s",
            "incrby n",
            "incrbyfloat n",
            "del n",
            "setbit b",
            "expire s",
            "persist s",
            "rename_from s",
            "rename_to s2",
            "rpush l",
            "lpush l",
            "lset l",
            "linsert l",
            "lrem l",
            "ltrim l",
            "rpush l2",
            "lpop l",
            "rpop l",
            "del l",
            "hset h",
            "hincrby h",
            "hincrbyfloat h",
            "hdel h",
            "del h",
            "sadd set",
            "srem set",
            "srem set",
            "del set",
            "sadd set2",
            "zadd z",
            "zincr z",
            "zrem z",
            "zpopmin z",
            "del z",
            "sadd x",
            "sinterstore y",
            "del x",
            "del y",
            "set m1",
            "set m2",
        ]
    );
}

#[test]
fn keyspace_and_keyevent_channels_and_class_masks() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    run(&mut conn, "SELECT 3");
    run(&mut conn, "CONFIG SET notify-keyspace-events KEl");
    let mut sub = subscriber(&server);
    run(&mut conn, "SET foo bar");
    run(&mut conn, "LPUSH mylist a");
    assert_eq!(
        events_until_marker(&mut sub, &mut conn),
        ["__keyspace@3__:mylist lpush", "__keyevent@3__:lpush mylist"]
    );
    // Only the generic class, keyspace channel only.
    run(&mut conn, "CONFIG SET notify-keyspace-events Kg");
    run(&mut conn, "LPUSH mylist b");
    run(&mut conn, "COPY foo foo2 DB 5");
    run(&mut conn, "MOVE foo 7");
    run(&mut conn, "DEL mylist nosuchkey");
    assert_eq!(
        events_until_marker(&mut sub, &mut conn),
        [
            "__keyspace@5__:foo2 copy_to",
            "__keyspace@3__:foo move_from",
            "__keyspace@7__:foo move_to",
            "__keyspace@3__:mylist del",
        ]
    );
}

/// `new` is published when a key is created, before the command's own event, and not when an
/// existing key is overwritten (Redis's `dbAdd`).
#[test]
fn new_keys_and_expirations() {
    let server = TestServer::start(BIN, &["--hz", "100"]);
    let mut conn = server.raw();
    run(&mut conn, "CONFIG SET notify-keyspace-events E$n");
    let mut sub = subscriber(&server);
    run(&mut conn, "SET foo bar");
    run(&mut conn, "SET foo baz");
    run(&mut conn, "SET bar bar");
    assert_eq!(
        keyevents(&mut sub, &mut conn),
        ["new foo", "set foo", "set foo", "new bar", "set bar"]
    );
    // RENAME and COPY ... REPLACE delete the destination first, so it is new again.
    run(&mut conn, "CONFIG SET notify-keyspace-events Egn");
    run(&mut conn, "RENAME foo bar");
    run(&mut conn, "SET foo again");
    run(&mut conn, "COPY foo bar REPLACE");
    assert_eq!(
        keyevents(&mut sub, &mut conn),
        [
            "new bar",
            "rename_from foo",
            "rename_to bar",
            "new foo",
            "new bar",
            "copy_to bar"
        ]
    );
    // Background expiry (the active cycle) publishes `expired`.
    run(&mut conn, "CONFIG SET notify-keyspace-events Ex");
    run(&mut conn, "PSETEX gone 50 1");
    assert_eq!(next(&mut sub), "__keyevent@0__:expired gone");
    // So does lazy expiry in a write: the key expires as SET finds it, and is new again.
    run(&mut conn, "CONFIG SET notify-keyspace-events Exn hz 1");
    run(&mut conn, "PSETEX lazy 1 1");
    // Waits out the 1 ms TTL itself: there is no event to wait on before the key expires.
    std::thread::sleep(std::time::Duration::from_millis(5));
    run(&mut conn, "SET lazy 2");
    let mut events = keyevents(&mut sub, &mut conn);
    // PSETEX creates the key, SET creates it again after it expired. The active cycle may take
    // the key before SET does; either way the three events come.
    events.sort();
    assert_eq!(events, ["expired lazy", "new lazy", "new lazy"]);
}

/// With the option empty (the default) nothing is published.
#[test]
fn nothing_is_published_by_default() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    let mut sub = subscriber(&server);
    for command in [
        "SET a 1",
        "LPUSH l x",
        "DEL a",
        "PSETEX e 1 1",
        "HSET h f v",
    ] {
        run(&mut conn, command);
    }
    assert_eq!(
        events_until_marker(&mut sub, &mut conn),
        Vec::<String>::new()
    );
    let reply =
        String::from_utf8(conn.call(&[b"CONFIG", b"GET", b"notify-keyspace-events"])).unwrap();
    assert_eq!(reply, "*2\r\n$22\r\nnotify-keyspace-events\r\n$0\r\n\r\n");
}

/// Regression: class `m` was accepted but nothing published `keymiss`: a read of a missing key
/// publishes it (Redis's `lookupKeyRead`), a read that finds the key does not, and `A` does not
/// include it.
#[test]
fn reads_of_missing_keys_publish_keymiss() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    let mut sub = subscriber(&server);
    run(&mut conn, "CONFIG SET notify-keyspace-events EA");
    run(&mut conn, "GET nosuch");
    assert!(keyevents(&mut sub, &mut conn).is_empty());
    run(&mut conn, "CONFIG SET notify-keyspace-events Em");
    run(&mut conn, "SET here v");
    run(&mut conn, "GET here");
    run(&mut conn, "GET nosuch");
    run(&mut conn, "LRANGE nolist 0 -1");
    run(&mut conn, "EXISTS here gone");
    assert_eq!(
        keyevents(&mut sub, &mut conn),
        ["keymiss nosuch", "keymiss nolist", "keymiss gone"]
    );
    run(&mut conn, "CONFIG SET notify-keyspace-events Km");
    run(&mut conn, "HGET nohash f");
    assert_eq!(
        events_until_marker(&mut sub, &mut conn),
        ["__keyspace@0__:nohash keymiss"]
    );
}
