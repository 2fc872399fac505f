//! MIGRATE end to end: forkless to forkless and forkless to Debian's redis-server 7.0 (every
//! option: COPY, REPLACE, KEYS, AUTH, AUTH2, the target database, TTLs), Redis's replies
//! (`+NOKEY`, BUSYKEY passed through, the `-IOERR` texts), the connection cache, the DEL a
//! replica receives, and the two properties a multi-threaded server adds: a MIGRATE waiting on
//! a silent target blocks no other client, and a key overwritten while its MIGRATE waits for
//! the target keeps the new value.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use forkless_tests::resp::{bulk, call, cmd, err, int};
use forkless_tests::{RawConn, TestDir, TestServer, redis_tool, start_real_redis_on, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");
const OK: &str = "+OK\r\n";
const NIL: &str = "$-1\r\n";

fn migrate(conn: &mut RawConn, args: &[&str]) -> String {
    let mut argv: Vec<&[u8]> = vec![b"MIGRATE"];
    argv.extend(args.iter().map(|arg| arg.as_bytes()));
    call(conn, &argv)
}

fn cached_sockets(conn: &mut RawConn) -> String {
    let info = cmd(conn, "INFO stats");
    info.lines()
        .find_map(|line| line.strip_prefix("migrate_cached_sockets:"))
        .unwrap_or("missing")
        .to_string()
}

#[test]
fn forkless_to_forkless_moves_copies_and_replaces() {
    let source = TestServer::start(BIN, &[]);
    let target = TestServer::start(BIN, &[]);
    let port = target.addr.port().to_string();
    let mut src = source.raw();
    let mut dst = target.raw();
    assert_eq!(cached_sockets(&mut src), "0");

    assert_eq!(cmd(&mut src, "SET key value"), OK);
    assert_eq!(cmd(&mut src, "PEXPIRE key 100000"), int(1));
    assert_eq!(
        migrate(&mut src, &["127.0.0.1", &port, "key", "9", "5000"]),
        OK
    );
    assert_eq!(cmd(&mut src, "EXISTS key"), int(0));
    assert_eq!(cmd(&mut dst, "SELECT 9"), OK);
    assert_eq!(cmd(&mut dst, "GET key"), bulk("value"));
    let pttl: i64 = cmd(&mut dst, "PTTL key")
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap();
    assert!(pttl > 90_000 && pttl <= 100_000, "{pttl}");
    assert_eq!(cached_sockets(&mut src), "1");

    // COPY keeps the source key; without REPLACE the target's copy is BUSYKEY.
    assert_eq!(cmd(&mut src, "RPUSH list a b c"), int(3));
    assert_eq!(
        migrate(&mut src, &["127.0.0.1", &port, "list", "9", "5000", "COPY"]),
        OK
    );
    assert_eq!(cmd(&mut src, "LLEN list"), int(3));
    assert_eq!(
        cmd(&mut dst, "LRANGE list 0 -1"),
        "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"
    );
    assert_eq!(
        migrate(&mut src, &["127.0.0.1", &port, "list", "9", "5000", "COPY"]),
        err("ERR Target instance replied with error: BUSYKEY Target key name already exists.")
    );
    assert_eq!(cmd(&mut src, "RPUSH list d"), int(4));
    assert_eq!(
        migrate(
            &mut src,
            &["127.0.0.1", &port, "list", "9", "5000", "REPLACE"]
        ),
        OK
    );
    assert_eq!(cmd(&mut src, "EXISTS list"), int(0));
    assert_eq!(cmd(&mut dst, "LLEN list"), int(4));

    // Big values (written from where they are) between small ones (copied with their
    // commands), with REPLACE after each payload.
    let big = forkless_tests::noise(3, 3 << 20);
    assert_eq!(call(&mut src, &[b"SET", b"big1", &big]), OK);
    assert_eq!(call(&mut src, &[b"SET", b"small", b"s"]), OK);
    assert_eq!(call(&mut src, &[b"SET", b"big2", &big[..20_000]]), OK);
    assert_eq!(
        migrate(
            &mut src,
            &[
                "127.0.0.1",
                &port,
                "",
                "0",
                "5000",
                "REPLACE",
                "KEYS",
                "big1",
                "small",
                "big2"
            ]
        ),
        OK
    );
    assert_eq!(cmd(&mut src, "EXISTS big1 small big2"), int(0));
    let mut check = target.client();
    let moved: Vec<u8> = redis::cmd("GET").arg("big1").query(&mut check).unwrap();
    assert!(moved == big);
    let moved: Vec<u8> = redis::cmd("GET").arg("big2").query(&mut check).unwrap();
    assert!(moved == big[..20_000]);
    assert_eq!(cmd(&mut dst, "SELECT 0"), OK);
    assert_eq!(cmd(&mut dst, "GET small"), bulk("s"));
    assert_eq!(cmd(&mut dst, "SELECT 9"), OK);

    // KEYS: only the keys that exist go; none at all is +NOKEY.
    assert_eq!(cmd(&mut src, "MSET a 1 b 2"), OK);
    assert_eq!(
        migrate(
            &mut src,
            &[
                "127.0.0.1",
                &port,
                "",
                "0",
                "5000",
                "KEYS",
                "nope",
                "a",
                "b"
            ]
        ),
        OK
    );
    assert_eq!(cmd(&mut src, "EXISTS a b"), int(0));
    assert_eq!(cmd(&mut dst, "SELECT 0"), OK);
    assert_eq!(cmd(&mut dst, "MGET a b"), "*2\r\n$1\r\n1\r\n$1\r\n2\r\n");
    assert_eq!(
        migrate(
            &mut src,
            &["127.0.0.1", &port, "", "0", "5000", "KEYS", "x", "y"]
        ),
        "+NOKEY\r\n"
    );
    assert_eq!(
        migrate(&mut src, &["127.0.0.1", &port, "nokey", "0", "5000"]),
        "+NOKEY\r\n"
    );
    assert_eq!(
        migrate(
            &mut src,
            &["127.0.0.1", &port, "a", "0", "5000", "KEYS", "b"]
        ),
        err("ERR When using MIGRATE KEYS option, the key argument must be set to the empty string")
    );
    assert_eq!(
        migrate(&mut src, &["127.0.0.1", &port, "a", "x", "5000"]),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(
        migrate(&mut src, &["127.0.0.1", &port, "a", "0", "5000", "AUTH"]),
        err("ERR syntax error")
    );
    // A database the target does not have: its SELECT error, and the key stays.
    assert_eq!(cmd(&mut src, "SET c 3"), OK);
    assert_eq!(
        migrate(&mut src, &["127.0.0.1", &port, "c", "99", "5000"]),
        err("ERR Target instance replied with error: ERR DB index is out of range")
    );
    assert_eq!(cmd(&mut src, "GET c"), bulk("3"));

    // CLIENT REPLY SKIP drops MIGRATE's reply, which comes after the exchange.
    assert_eq!(cmd(&mut src, "SET d 4"), OK);
    src.send_command(&[b"CLIENT", b"REPLY", b"SKIP"]);
    src.send_command(&[
        b"MIGRATE",
        b"127.0.0.1",
        port.as_bytes(),
        b"d",
        b"0",
        b"5000",
    ]);
    assert_eq!(cmd(&mut src, "EXISTS d"), int(0));

    // COMMAND GETKEYS finds the keys as Redis's migrateGetKeys does.
    assert_eq!(
        cmd(&mut src, "COMMAND GETKEYS MIGRATE h 1 k 0 5"),
        "*1\r\n$1\r\nk\r\n"
    );
    assert_eq!(
        call(
            &mut src,
            &[
                b"COMMAND", b"GETKEYS", b"MIGRATE", b"h", b"1", b"", b"0", b"5", b"AUTH2", b"KEYS",
                b"p", b"KEYS", b"x", b"y"
            ]
        ),
        "*2\r\n$1\r\nx\r\n$1\r\ny\r\n"
    );
    // KEYS with no key after it is not the keyword (its key specification searches from the
    // second-to-last argument): argv[3], the empty key, as Redis answers.
    assert_eq!(
        call(
            &mut src,
            &[
                b"COMMAND", b"GETKEYS", b"MIGRATE", b"h", b"1", b"", b"0", b"5", b"KEYS"
            ]
        ),
        "*1\r\n$0\r\n\r\n"
    );
}

/// The target is gone (connection refused): Redis's connect error, and nothing is deleted.
#[test]
fn unreachable_target_is_an_ioerr() {
    let source = TestServer::start(BIN, &[]);
    let mut src = source.raw();
    let port = forkless_tests::free_port().to_string();
    assert_eq!(cmd(&mut src, "SET key v"), OK);
    assert_eq!(
        migrate(&mut src, &["127.0.0.1", &port, "key", "0", "1000"]),
        err("IOERR error or timeout connecting to the client")
    );
    assert_eq!(cmd(&mut src, "GET key"), bulk("v"));
    assert_eq!(cached_sockets(&mut src), "0");
}

/// A target that accepts and never answers: the timeout ends the MIGRATE with Redis's read
/// error, the key stays, and while it waits other clients, on the same key too, are served.
#[test]
fn silent_target_times_out_without_blocking_other_clients() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let source = TestServer::start(BIN, &[]);
    let mut src = source.raw();
    assert_eq!(cmd(&mut src, "SET key v"), OK);
    let started = Instant::now();
    let waiting = std::thread::spawn(move || {
        let reply = migrate(&mut src, &["127.0.0.1", &port, "key", "0", "3000"]);
        (reply, started.elapsed(), src)
    });
    let (mut accepted, _) = listener.accept().unwrap();
    // While the MIGRATE waits for the silent target, another client reads and writes.
    let mut other = source.raw();
    assert_eq!(cmd(&mut other, "GET key"), bulk("v"));
    assert_eq!(cmd(&mut other, "SET other 1"), OK);
    assert!(
        !waiting.is_finished(),
        "the other client was served only once the MIGRATE was over"
    );
    let (reply, elapsed, mut src) = waiting.join().unwrap();
    assert_eq!(
        reply,
        err("IOERR error or timeout reading to target instance")
    );
    assert!(elapsed >= Duration::from_millis(2900), "{elapsed:?}");
    assert_eq!(cmd(&mut src, "GET key"), bulk("v"));
    // The source wrote its SELECT and RESTORE before it waited.
    accepted
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut request = [0u8; 256];
    let n = accepted.read(&mut request).unwrap();
    assert!(request[..n].windows(7).any(|w| w == b"RESTORE"));
    // A timed-out connection is not kept.
    assert_eq!(cached_sockets(&mut src), "0");
}

/// A target that never reads: writing a value bigger than the socket buffers times out with
/// Redis's write error.
#[test]
fn target_that_does_not_read_is_a_write_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let source = TestServer::start(BIN, &[]);
    let mut src = source.raw();
    let big = forkless_tests::noise(7, 32 << 20);
    assert_eq!(call(&mut src, &[b"SET", b"big", &big]), OK);
    let waiting = std::thread::spawn(move || {
        let reply = migrate(&mut src, &["127.0.0.1", &port, "big", "0", "1000"]);
        (reply, src)
    });
    let (_accepted, _) = listener.accept().unwrap();
    let (reply, mut src) = waiting.join().unwrap();
    assert_eq!(
        reply,
        err("IOERR error or timeout writing to target instance")
    );
    assert_eq!(cmd(&mut src, "STRLEN big"), int(32 << 20));
}

/// A hostile target that answers with an endless line: the source stops reading it past a
/// bound (Redis reads reply lines into 1 KiB) with Redis's read error, and keeps the key.
#[test]
fn endless_reply_line_is_a_read_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let source = TestServer::start(BIN, &[]);
    let mut src = source.raw();
    assert_eq!(cmd(&mut src, "SET key v"), OK);
    let waiting = std::thread::spawn(move || {
        let reply = migrate(&mut src, &["127.0.0.1", &port, "key", "0", "1000"]);
        (reply, src)
    });
    let (mut target, _) = listener.accept().unwrap();
    let _ = read_requests(&mut target, 2);
    let garbage = vec![b'x'; 1 << 20];
    // The source may close the connection before all of it is written. It then retries once
    // on a new connection (as Redis does after a socket error), which this target never
    // accepts: that attempt times out.
    let _ = target.write_all(&garbage);
    let (reply, mut src) = waiting.join().unwrap();
    assert_eq!(
        reply,
        err("IOERR error or timeout reading to target instance")
    );
    assert_eq!(cmd(&mut src, "GET key"), bulk("v"));
    assert_eq!(cached_sockets(&mut src), "0");
}

/// Reads whole RESP requests from `stream` until `count` have arrived; returns them.
fn read_requests(stream: &mut std::net::TcpStream, count: usize) -> Vec<Vec<u8>> {
    let limits = forkless_protocol::Limits::default();
    let mut buf = Vec::new();
    let mut requests = Vec::new();
    let mut chunk = [0u8; 4096];
    while requests.len() < count {
        if let Ok(Some((_, used))) = forkless_protocol::decode_frame(&buf, &limits) {
            let rest = buf.split_off(used);
            requests.push(std::mem::replace(&mut buf, rest));
            continue;
        }
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "source closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
    requests
}

/// Regression guard for the three-phase design: a key written by another client while its
/// MIGRATE waits for the target's reply must keep that write (the source deletes only a key
/// that still holds the value it sent).
#[test]
fn a_key_overwritten_during_the_exchange_is_not_deleted() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let source = TestServer::start(BIN, &[]);
    let mut src = source.raw();
    assert_eq!(cmd(&mut src, "SET key old"), OK);
    assert_eq!(cmd(&mut src, "RPUSH list a"), int(1));
    assert_eq!(cmd(&mut src, "SET kept same"), OK);
    let waiting = std::thread::spawn(move || {
        let reply = migrate(
            &mut src,
            &[
                "127.0.0.1",
                &port,
                "",
                "0",
                "5000",
                "KEYS",
                "key",
                "list",
                "kept",
            ],
        );
        (reply, src)
    });
    let (mut target, _) = listener.accept().unwrap();
    target
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // SELECT and three RESTOREs have arrived: the source holds nothing now.
    let requests = read_requests(&mut target, 4);
    assert!(requests[1].windows(7).any(|w| w == b"RESTORE"));
    let mut other = source.raw();
    assert_eq!(cmd(&mut other, "SET key new"), OK);
    assert_eq!(cmd(&mut other, "RPUSH list b"), int(2));
    target.write_all(b"+OK\r\n+OK\r\n+OK\r\n+OK\r\n").unwrap();
    let (reply, mut src) = waiting.join().unwrap();
    assert_eq!(reply, OK);
    assert_eq!(cmd(&mut src, "GET key"), bulk("new"));
    assert_eq!(cmd(&mut src, "LLEN list"), int(2));
    // The key nobody touched moved.
    assert_eq!(cmd(&mut src, "EXISTS kept"), int(0));
}

/// A replica of the source sees the MIGRATE as the DEL of the keys that moved.
#[test]
fn a_replica_receives_the_deletions() {
    let source = TestServer::start(BIN, &[]);
    let target = TestServer::start(BIN, &[]);
    let replica = TestServer::start(BIN, &[]);
    let mut src = source.raw();
    let mut rep = replica.raw();
    assert_eq!(
        cmd(
            &mut rep,
            &format!("REPLICAOF 127.0.0.1 {}", source.addr.port())
        ),
        OK
    );
    assert_eq!(cmd(&mut src, "MSET a 1 b 2 c 3"), OK);
    assert!(wait_until(Duration::from_secs(20), || {
        cmd(&mut rep, "DBSIZE") == int(3)
    }));
    let port = target.addr.port().to_string();
    assert_eq!(
        migrate(
            &mut src,
            &["127.0.0.1", &port, "", "0", "5000", "KEYS", "a", "b"]
        ),
        OK
    );
    assert!(wait_until(Duration::from_secs(20), || {
        cmd(&mut rep, "DBSIZE") == int(1)
    }));
    assert_eq!(cmd(&mut rep, "GET c"), bulk("3"));
    assert_eq!(cmd(&mut rep, "EXISTS a b"), int(0));
}

/// Inside MULTI/EXEC the exchange runs on the spot, and the transaction's other commands see
/// its result.
#[test]
fn migrate_inside_a_transaction() {
    let source = TestServer::start(BIN, &[]);
    let target = TestServer::start(BIN, &[]);
    let port = target.addr.port().to_string();
    let mut src = source.raw();
    assert_eq!(cmd(&mut src, "SET key v"), OK);
    assert_eq!(cmd(&mut src, "MULTI"), OK);
    assert_eq!(
        migrate(&mut src, &["127.0.0.1", &port, "key", "0", "5000"]),
        "+QUEUED\r\n"
    );
    assert_eq!(cmd(&mut src, "EXISTS key"), "+QUEUED\r\n");
    assert_eq!(cmd(&mut src, "EXEC"), "*2\r\n+OK\r\n:0\r\n");
    assert_eq!(cmd(&mut target.raw(), "GET key"), bulk("v"));
}

/// forkless to redis-server 7.0, with AUTH (requirepass) and AUTH2 (an ACL user): every type
/// moves; a wrong password is the target's error and nothing is deleted.
#[test]
fn forkless_to_redis_server_with_auth() {
    let Some(redis_server) = redis_tool("redis-server") else {
        return;
    };
    let dir = TestDir::new("migrate-redis");
    let (_guard, mut real) = start_real_redis_on(&redis_server, &dir.0);
    let real_port: u16 = {
        let info = forkless_tests::info_section(&mut real, "server");
        info["tcp_port"].trim().parse().unwrap()
    };
    let () = redis::cmd("ACL")
        .arg(&["SETUSER", "mover", "on", ">moverpass", "~*", "+@all"])
        .query(&mut real)
        .unwrap();
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "requirepass", "secret"])
        .query(&mut real)
        .unwrap();
    let port = real_port.to_string();
    let source = TestServer::start(BIN, &[]);
    let mut src = source.raw();
    assert_eq!(cmd(&mut src, "SET s hello"), OK);
    assert_eq!(cmd(&mut src, "HSET h f v"), int(1));
    assert_eq!(cmd(&mut src, "SADD set a b"), int(2));
    assert_eq!(cmd(&mut src, "ZADD z 1 a"), int(1));
    assert_eq!(cmd(&mut src, "XADD x 1-1 f v"), bulk("1-1"));
    assert_eq!(
        migrate(&mut src, &["127.0.0.1", &port, "s", "0", "5000"]),
        err("ERR Target instance replied with error: NOAUTH Authentication required.")
    );
    assert_eq!(cmd(&mut src, "EXISTS s"), int(1));
    assert_eq!(
        migrate(
            &mut src,
            &["127.0.0.1", &port, "s", "0", "5000", "AUTH", "wrong"]
        ),
        err(
            "ERR Target instance replied with error: WRONGPASS invalid username-password pair \
             or user is disabled."
        )
    );
    assert_eq!(cmd(&mut src, "EXISTS s"), int(1));
    assert_eq!(
        migrate(
            &mut src,
            &["127.0.0.1", &port, "s", "0", "5000", "AUTH", "secret"]
        ),
        OK
    );
    assert_eq!(
        migrate(
            &mut src,
            &[
                "127.0.0.1",
                &port,
                "",
                "3",
                "5000",
                "AUTH2",
                "mover",
                "moverpass",
                "KEYS",
                "h",
                "set",
                "z",
                "x",
            ]
        ),
        OK
    );
    assert_eq!(cmd(&mut src, "DBSIZE"), int(0));
    let mut check = RawConn::connect(format!("127.0.0.1:{real_port}").parse().unwrap());
    assert_eq!(cmd(&mut check, "AUTH secret"), OK);
    assert_eq!(cmd(&mut check, "GET s"), bulk("hello"));
    assert_eq!(cmd(&mut check, "SELECT 3"), OK);
    assert_eq!(cmd(&mut check, "HGET h f"), bulk("v"));
    assert_eq!(cmd(&mut check, "SCARD set"), int(2));
    assert_eq!(cmd(&mut check, "ZSCORE z a"), bulk("1"));
    assert_eq!(cmd(&mut check, "XLEN x"), int(1));
    assert_eq!(cmd(&mut check, "GET nothing"), NIL);
}

/// The deletion is a write like DEL's: it fires the `del` keyspace event and breaks a WATCH on
/// the key, as Redis's `signalModifiedKey` and `notifyKeyspaceEvent` after `dbDelete`.
#[test]
fn the_deletion_notifies_and_breaks_watch() {
    let source = TestServer::start(BIN, &["--notify-keyspace-events", "Eg"]);
    let target = TestServer::start(BIN, &[]);
    let port = target.addr.port().to_string();
    let mut src = source.raw();
    let mut watcher = source.raw();
    let mut subscriber = source.client();
    let mut pubsub = subscriber.as_pubsub();
    pubsub.subscribe("__keyevent@0__:del").unwrap();
    assert_eq!(cmd(&mut src, "SET key v"), OK);
    assert_eq!(cmd(&mut watcher, "WATCH key"), OK);
    assert_eq!(
        migrate(&mut src, &["127.0.0.1", &port, "key", "0", "5000"]),
        OK
    );
    assert_eq!(cmd(&mut watcher, "MULTI"), OK);
    assert_eq!(cmd(&mut watcher, "SET key mine"), "+QUEUED\r\n");
    assert_eq!(cmd(&mut watcher, "EXEC"), "*-1\r\n");
    pubsub
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let message = pubsub.get_message().unwrap();
    assert_eq!(message.get_channel_name(), "__keyevent@0__:del");
    assert_eq!(message.get_payload::<String>().unwrap(), "key");
}
