//! Client and server introspection end to end: RESET, CLIENT REPLY / INFO / LIST / PAUSE /
//! UNBLOCK / NO-EVICT / GETREDIR / TRACKINGINFO, SLOWLOG, LATENCY, MEMORY and MONITOR, against
//! Redis 7.0's replies.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::time::{Duration, Instant};

use forkless_tests::{TestServer, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

fn text(reply: Vec<u8>) -> String {
    String::from_utf8(reply).unwrap()
}

/// The value of `field=` in a CLIENT LIST line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}=");
    line.split(' ')
        .find_map(|part| part.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {name}= in {line}"))
}

#[test]
fn client_list_prints_every_redis_field_in_order() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut conn = server.raw();
    let reply = text(conn.call(&[b"CLIENT", b"LIST"]));
    let line = reply.split("\r\n").nth(1).unwrap();
    let names: Vec<&str> = line
        .split(' ')
        .map(|part| part.split_once('=').unwrap().0)
        .collect();
    assert_eq!(
        names,
        [
            "id",
            "addr",
            "laddr",
            "fd",
            "name",
            "age",
            "idle",
            "flags",
            "db",
            "sub",
            "psub",
            "ssub",
            "multi",
            "qbuf",
            "qbuf-free",
            "argv-mem",
            "multi-mem",
            "rbs",
            "rbp",
            "obl",
            "oll",
            "omem",
            "tot-mem",
            "events",
            "cmd",
            "user",
            "redir",
            "resp"
        ]
    );
    // As redis-server 7.0 prints for a plain client running CLIENT LIST: the query buffer
    // still holds the command (26 bytes), whose arguments are 10 bytes.
    assert_eq!(field(line, "flags"), "N");
    assert_eq!(field(line, "qbuf"), "26");
    assert_eq!(field(line, "argv-mem"), "10");
    assert_eq!(field(line, "multi"), "-1");
    assert_eq!(field(line, "cmd"), "client|list");
    assert_ne!(field(line, "fd"), "0");
    let info = text(conn.call(&[b"CLIENT", b"INFO"]));
    assert!(info.contains(" cmd=client|info "), "{info}");
}

#[test]
fn client_list_shows_other_clients_state() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut other = server.raw();
    let id = text(other.call(&[b"CLIENT", b"ID"]));
    let id = id.trim_start_matches(':').trim().to_owned();
    other.send_command(&[b"SUBSCRIBE", b"a", b"b"]);
    other.read_reply();
    other.read_reply();
    let mut conn = server.raw();
    let reply = text(conn.call(&[b"CLIENT", b"LIST", b"ID", id.as_bytes()]));
    let line = reply.split("\r\n").nth(1).unwrap();
    assert_eq!(field(line, "flags"), "P");
    assert_eq!(field(line, "sub"), "2");
    assert_eq!(field(line, "cmd"), "subscribe");

    let mut multi = server.raw();
    let multi_id = text(multi.call(&[b"CLIENT", b"ID"]));
    let multi_id = multi_id.trim_start_matches(':').trim().to_owned();
    multi.call(&[b"MULTI"]);
    multi.call(&[b"SET", b"k", b"v"]);
    let reply = text(conn.call(&[b"CLIENT", b"LIST", b"ID", multi_id.as_bytes()]));
    let line = reply.split("\r\n").nth(1).unwrap();
    assert_eq!(field(line, "flags"), "x");
    assert_eq!(field(line, "multi"), "1");
}

#[test]
fn client_reply_off_skip_on() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut conn = server.raw();
    conn.send_command(&[b"CLIENT", b"REPLY", b"OFF"]);
    conn.send_command(&[b"PING", b"silenced"]);
    conn.send_command(&[b"CLIENT", b"REPLY", b"ON"]);
    assert_eq!(text(conn.read_reply()), "+OK\r\n");
    conn.send_command(&[b"CLIENT", b"REPLY", b"SKIP"]);
    conn.send_command(&[b"PING", b"skipped"]);
    conn.send_command(&[b"PING", b"shown"]);
    assert_eq!(text(conn.read_reply()), "$5\r\nshown\r\n");
    // ON right after SKIP clears it and replies.
    conn.send_command(&[b"CLIENT", b"REPLY", b"SKIP"]);
    conn.send_command(&[b"CLIENT", b"REPLY", b"ON"]);
    assert_eq!(text(conn.read_reply()), "+OK\r\n");
    assert_eq!(
        text(conn.call(&[b"CLIENT", b"REPLY", b"MAYBE"])),
        "-ERR syntax error\r\n"
    );
}

/// Regression: CLIENT REPLY OFF dropped RESP3 pushes too (subscription confirmations), which
/// Redis always sends, and Redis's pubsub suite hung waiting for them.
#[test]
fn client_reply_off_keeps_resp3_pushes() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut conn = server.raw();
    conn.call(&[b"HELLO", b"3"]);
    conn.send_command(&[b"CLIENT", b"REPLY", b"OFF"]);
    conn.send_command(&[b"SUBSCRIBE", b"channel"]);
    assert_eq!(
        text(conn.read_reply()),
        ">3\r\n$9\r\nsubscribe\r\n$7\r\nchannel\r\n:1\r\n"
    );
    let mut other = server.raw();
    assert_eq!(text(other.call(&[b"PUBLISH", b"channel", b"hi"])), ":1\r\n");
    assert_eq!(
        text(conn.read_reply()),
        ">3\r\n$7\r\nmessage\r\n$7\r\nchannel\r\n$2\r\nhi\r\n"
    );
}

/// Regression: under CLIENT REPLY OFF a RESP2 client's PSUBSCRIBE confirmation was dropped, so
/// Redis's own pubsub unit hung waiting for it. Subscription confirmations are pushes in Redis
/// whatever the protocol, and go through REPLY OFF; other replies (PING, PUBLISH) do not.
#[test]
fn client_reply_off_keeps_resp2_subscription_confirmations() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut conn = server.raw();
    conn.send_command(&[b"CLIENT", b"REPLY", b"OFF"]);
    conn.send_command(&[b"PING"]);
    conn.send_command(&[b"PSUBSCRIBE", b"*"]);
    assert_eq!(
        text(conn.read_reply()),
        "*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:1\r\n"
    );
    let mut other = server.raw();
    assert_eq!(text(other.call(&[b"PUBLISH", b"channel", b"hi"])), ":1\r\n");
    assert_eq!(
        text(conn.read_reply()),
        "*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$7\r\nchannel\r\n$2\r\nhi\r\n"
    );
}

#[test]
fn reset_clears_connection_state() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut conn = server.raw();
    conn.call(&[b"SELECT", b"3"]);
    conn.call(&[b"CLIENT", b"SETNAME", b"someone"]);
    conn.call(&[b"CLIENT", b"NO-EVICT", b"ON"]);
    conn.call(&[b"MULTI"]);
    assert_eq!(text(conn.call(&[b"RESET"])), "+RESET\r\n");
    // Not in MULTI any more: EXEC fails, and the other state is back to its defaults.
    assert_eq!(text(conn.call(&[b"EXEC"])), "-ERR EXEC without MULTI\r\n");
    let info = text(conn.call(&[b"CLIENT", b"INFO"]));
    assert!(info.contains(" db=0 "), "{info}");
    assert!(info.contains(" name= "), "{info}");
    assert!(info.contains(" flags=N "), "{info}");
}

/// A RESP3 connection with tracking on, as `CLIENT TRACKING ON` plus `options`.
fn resp3_tracking(server: &TestServer, options: &[&[u8]]) -> forkless_tests::RawConn {
    let mut conn = server.raw();
    conn.call(&[b"HELLO", b"3"]);
    let mut argv: Vec<&[u8]> = vec![b"CLIENT", b"TRACKING", b"ON"];
    argv.extend_from_slice(options);
    assert_eq!(text(conn.call(&argv)), "+OK\r\n");
    conn
}

#[test]
fn tracking_invalidates_read_keys_after_the_reply() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut conn = resp3_tracking(&server, &[]);
    conn.call(&[b"SET", b"k", b"v"]);
    conn.call(&[b"GET", b"k"]);
    // Another client's write: the push arrives on its own.
    let mut other = server.raw();
    other.call(&[b"SET", b"k", b"w"]);
    assert_eq!(
        text(conn.read_reply()),
        ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"
    );
    // Its own write: the push comes after the reply.
    conn.call(&[b"HSET", b"h", b"f", b"1"]);
    conn.call(&[b"HGET", b"h", b"f"]);
    conn.send_command(&[b"HDEL", b"h", b"f"]);
    assert_eq!(text(conn.read_reply()), ":1\r\n");
    assert_eq!(
        text(conn.read_reply()),
        ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nh\r\n"
    );
    // A key is reported once per read: the second write says nothing.
    other.call(&[b"SET", b"k", b"x"]);
    other.call(&[b"GET", b"k"]);
    conn.call(&[b"GET", b"k"]);
    other.call(&[b"FLUSHALL"]);
    assert_eq!(text(conn.read_reply()), ">2\r\n$10\r\ninvalidate\r\n_\r\n");
}

#[test]
fn tracking_redirects_to_a_resp2_subscriber_and_broadcasts_prefixes() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut target = server.raw();
    let id = text(target.call(&[b"CLIENT", b"ID"]));
    let id = id.trim_start_matches(':').trim().to_owned();
    target.call(&[b"SUBSCRIBE", b"__redis__:invalidate"]);
    let mut conn = server.raw();
    assert_eq!(
        text(conn.call(&[
            b"CLIENT",
            b"TRACKING",
            b"on",
            b"BCAST",
            b"PREFIX",
            b"a:",
            b"PREFIX",
            b"b:",
            b"REDIRECT",
            id.as_bytes()
        ])),
        "+OK\r\n"
    );
    conn.call(&[b"MSET", b"a:1", b"1", b"c:1", b"1", b"a:2", b"2"]);
    // One message per prefix for the whole command, the keys of other prefixes left out.
    assert_eq!(
        text(target.read_reply()),
        "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*2\r\n$3\r\na:1\r\n$3\r\na:2\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"CLIENT", b"GETREDIR"])),
        format!(":{id}\r\n")
    );
    let info = text(conn.call(&[b"CLIENT", b"INFO"]));
    assert!(info.contains(" flags=tB "), "{info}");
    assert!(info.contains(&format!(" redir={id} ")), "{info}");
    assert_eq!(
        text(conn.call(&[b"CLIENT", b"TRACKING", b"on", b"PREFIX", b"x"])),
        "-ERR PREFIX option requires BCAST mode to be enabled\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"CLIENT", b"TRACKING", b"on", b"BCAST", b"PREFIX", b"a:b"])),
        "-ERR Prefix 'a:b' overlaps with an existing prefix 'a:'. Prefixes for a single client must not overlap.\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"CLIENT", b"TRACKING", b"on", b"REDIRECT", b"999999"])),
        "-ERR The client ID you want redirect to does not exist\r\n"
    );
}

#[test]
fn tracking_noloop_optin_and_caching() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut conn = resp3_tracking(&server, &[b"OPTIN", b"NOLOOP"]);
    let mut other = server.raw();
    other.call(&[b"SET", b"a", b"1"]);
    other.call(&[b"SET", b"b", b"1"]);
    // OPTIN: only the read after CLIENT CACHING YES is tracked.
    conn.call(&[b"GET", b"a"]);
    assert_eq!(text(conn.call(&[b"CLIENT", b"CACHING", b"YES"])), "+OK\r\n");
    conn.call(&[b"GET", b"b"]);
    // NOLOOP: its own write of b is not reported.
    conn.call(&[b"SET", b"b", b"2"]);
    conn.call(&[b"CLIENT", b"CACHING", b"YES"]);
    conn.call(&[b"GET", b"b"]);
    other.call(&[b"SET", b"a", b"2"]);
    other.call(&[b"SET", b"b", b"3"]);
    assert_eq!(
        text(conn.read_reply()),
        ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nb\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"CLIENT", b"TRACKINGINFO"])),
        "%3\r\n$5\r\nflags\r\n~3\r\n$2\r\non\r\n$5\r\noptin\r\n$6\r\nnoloop\r\n$8\r\nredirect\r\n:0\r\n$8\r\nprefixes\r\n*0\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"CLIENT", b"CACHING", b"NO"])),
        "-ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"CLIENT", b"TRACKING", b"off"])),
        "+OK\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"CLIENT", b"CACHING", b"YES"])),
        "-ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled\r\n"
    );
}

#[test]
fn client_no_evict_getredir_trackinginfo() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut conn = server.raw();
    assert_eq!(text(conn.call(&[b"CLIENT", b"NO-EVICT", b"ON"])), "+OK\r\n");
    let info = text(conn.call(&[b"CLIENT", b"INFO"]));
    assert!(info.contains(" flags=e "), "{info}");
    assert_eq!(text(conn.call(&[b"CLIENT", b"GETREDIR"])), ":-1\r\n");
    assert_eq!(
        text(conn.call(&[b"CLIENT", b"TRACKINGINFO"])),
        "*6\r\n$5\r\nflags\r\n*1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n"
    );
}

#[test]
fn client_pause_holds_writes_until_unpause() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut admin = server.raw();
    let mut writer = server.raw();
    assert_eq!(
        text(admin.call(&[b"CLIENT", b"PAUSE", b"100000", b"WRITE"])),
        "+OK\r\n"
    );
    // Reads go on; the write waits (it does not fail).
    assert_eq!(text(writer.call(&[b"GET", b"k"])), "$-1\r\n");
    // A command Redis refuses is answered at once.
    assert_eq!(
        text(writer.call(&[b"SET", b"k"])),
        "-ERR wrong number of arguments for 'set' command\r\n"
    );
    writer.send_command(&[b"SET", b"k", b"v"]);
    // The held-back client counts in INFO blocked_clients, as in Redis.
    assert!(wait_until(Duration::from_secs(5), || blocked_clients(
        &mut admin
    ) == "1"));
    writer
        .stream()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = std::io::Read::read(writer.stream(), &mut byte);
    assert!(early.is_err(), "the paused write replied early");
    writer
        .stream()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(text(admin.call(&[b"CLIENT", b"UNPAUSE"])), "+OK\r\n");
    assert_eq!(text(writer.read_reply()), "+OK\r\n");
    assert_eq!(text(admin.call(&[b"GET", b"k"])), "$1\r\nv\r\n");
}

#[test]
fn client_pause_ends_by_itself() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut conn = server.raw();
    assert_eq!(text(conn.call(&[b"CLIENT", b"PAUSE", b"300"])), "+OK\r\n");
    let started = Instant::now();
    assert_eq!(text(conn.call(&[b"PING"])), "+PONG\r\n");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(
        text(conn.call(&[b"CLIENT", b"PAUSE", b"10", b"SOME"])),
        "-ERR CLIENT PAUSE mode must be WRITE or ALL\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"CLIENT", b"PAUSE", b"-1"])),
        "-ERR timeout is negative\r\n"
    );
}

fn blocked_clients(conn: &mut forkless_tests::RawConn) -> String {
    let info = text(conn.call(&[b"INFO", b"clients"]));
    info.lines()
        .find_map(|line| line.strip_prefix("blocked_clients:"))
        .unwrap()
        .to_owned()
}

#[test]
fn client_unblock_timeout_and_error() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut admin = server.raw();
    let mut blocked = server.raw();
    let id = text(blocked.call(&[b"CLIENT", b"ID"]));
    let id = id.trim_start_matches(':').trim().to_owned();
    assert_eq!(
        text(admin.call(&[b"CLIENT", b"UNBLOCK", id.as_bytes()])),
        ":0\r\n"
    );
    blocked.send_command(&[b"BLPOP", b"list", b"0"]);
    assert!(wait_until(Duration::from_secs(5), || blocked_clients(
        &mut admin
    ) == "1"));
    assert_eq!(
        text(admin.call(&[b"CLIENT", b"UNBLOCK", id.as_bytes(), b"TIMEOUT"])),
        ":1\r\n"
    );
    assert_eq!(text(blocked.read_reply()), "*-1\r\n");
    blocked.send_command(&[b"BLPOP", b"list", b"0"]);
    assert!(wait_until(Duration::from_secs(5), || blocked_clients(
        &mut admin
    ) == "1"));
    assert_eq!(
        text(admin.call(&[b"CLIENT", b"UNBLOCK", id.as_bytes(), b"ERROR"])),
        ":1\r\n"
    );
    assert_eq!(
        text(blocked.read_reply()),
        "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"
    );
    assert_eq!(
        text(admin.call(&[b"CLIENT", b"UNBLOCK", id.as_bytes(), b"LATER"])),
        "-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR\r\n"
    );
}

#[test]
fn slowlog_logs_trims_and_resets() {
    let server = TestServer::start(BIN, &["--port", "0", "--slowlog-log-slower-than", "0"]);
    let mut conn = server.raw();
    conn.call(&[b"CLIENT", b"SETNAME", b"slowpoke"]);
    conn.call(&[b"SLOWLOG", b"RESET"]);
    let long = vec![b'A'; 129];
    conn.call(&[b"SADD", b"set", b"foo", &long]);
    let reply = text(conn.call(&[b"SLOWLOG", b"GET", b"1"]));
    let expected_arg = format!("{}... (1 more bytes)", "A".repeat(128));
    assert!(reply.contains(&expected_arg), "{reply}");
    assert!(reply.contains("$8\r\nslowpoke\r\n"), "{reply}");
    assert!(reply.starts_with("*1\r\n*6\r\n:"), "{reply}");
    let many: Vec<Vec<u8>> = (0..40).map(|n| n.to_string().into_bytes()).collect();
    let mut argv: Vec<&[u8]> = vec![b"SADD", b"s2"];
    argv.extend(many.iter().map(Vec::as_slice));
    conn.call(&argv);
    let reply = text(conn.call(&[b"SLOWLOG", b"GET", b"1"]));
    assert!(reply.contains("... (11 more arguments)"), "{reply}");
    assert_eq!(
        text(conn.call(&[b"SLOWLOG", b"GET", b"-2"])),
        "-ERR count should be greater than or equal to -1\r\n"
    );
    conn.call(&[b"CONFIG", b"SET", b"slowlog-max-len", b"3"]);
    for _ in 0..10 {
        conn.call(&[b"PING"]);
    }
    assert_eq!(text(conn.call(&[b"SLOWLOG", b"LEN"])), ":3\r\n");
    conn.call(&[b"CONFIG", b"SET", b"slowlog-log-slower-than", b"-1"]);
    conn.call(&[b"SLOWLOG", b"RESET"]);
    conn.call(&[b"PING"]);
    assert_eq!(text(conn.call(&[b"SLOWLOG", b"LEN"])), ":0\r\n");
    assert_eq!(
        text(conn.call(&[b"CONFIG", b"GET", b"slowlog-log-slower-than"])),
        "*2\r\n$23\r\nslowlog-log-slower-than\r\n$2\r\n-1\r\n"
    );
}

/// `used_memory` from INFO, over a raw connection.
fn used_memory(conn: &mut forkless_tests::RawConn) -> u64 {
    let info = text(conn.call(&[b"INFO", b"memory"]));
    field_of_info(&info, "used_memory").parse().unwrap()
}

fn field_of_info<'a>(info: &'a str, name: &str) -> &'a str {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {name} in {info}"))
}

/// Regression: a slow log entry kept its arguments as slices of the connection's read buffer,
/// so each entry logged from a connection that has since gone kept that connection's 16 KiB
/// buffer alive: megabytes of `used_memory` that no eviction could free.
#[test]
fn slowlog_entries_do_not_keep_read_buffers() {
    const CLIENTS: u64 = 64;
    let server = TestServer::start(
        BIN,
        &[
            "--port",
            "0",
            "--slowlog-log-slower-than",
            "0",
            "--slowlog-max-len",
            "100000",
        ],
    );
    let mut conn = server.raw();
    conn.call(&[b"SET", b"warm", b"up"]);
    conn.call(&[b"SLOWLOG", b"RESET"]);
    let before = used_memory(&mut conn);
    for idx in 0..CLIENTS {
        let mut client = server.raw();
        client.call(&[b"SET", format!("key:{idx}").as_bytes(), b"x"]);
    }
    assert!(
        wait_until(Duration::from_secs(10), || {
            text(conn.call(&[b"INFO", b"clients"])).contains("connected_clients:1\r\n")
        }),
        "the clients did not go"
    );
    let logged: u64 = text(conn.call(&[b"SLOWLOG", b"LEN"]))
        .trim_start_matches(':')
        .trim_end()
        .parse()
        .unwrap();
    assert!(logged > CLIENTS, "{logged} entries");
    let grown = used_memory(&mut conn).saturating_sub(before);
    // Small keys and entries of three short arguments: well under 1 KiB per client.
    assert!(grown < CLIENTS * 1024, "used_memory grew by {grown} bytes");
}

#[test]
fn slowlog_redacts_secrets() {
    let server = TestServer::start(BIN, &["--port", "0", "--slowlog-log-slower-than", "0"]);
    let mut conn = server.raw();
    conn.call(&[b"SLOWLOG", b"RESET"]);
    conn.call(&[b"AUTH", b"user", b"secret"]);
    let reply = text(conn.call(&[b"SLOWLOG", b"GET", b"1"]));
    assert!(
        reply.contains("$4\r\nauth\r\n$10\r\n(redacted)\r\n$10\r\n(redacted)\r\n")
            || reply.contains("$4\r\nAUTH\r\n$10\r\n(redacted)\r\n$10\r\n(redacted)\r\n"),
        "{reply}"
    );
    assert!(!reply.contains("secret"), "{reply}");
}

#[test]
fn latency_histogram_counts_commands_and_subcommands() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut conn = server.raw();
    conn.call(&[b"CONFIG", b"RESETSTAT"]);
    conn.call(&[b"SET", b"a", b"b"]);
    conn.call(&[b"SET", b"c", b"d"]);
    conn.call(&[b"CLIENT", b"ID"]);
    let reply = text(conn.call(&[b"LATENCY", b"HISTOGRAM", b"set", b"client", b"nosuch"]));
    assert!(
        reply
            .starts_with("*4\r\n$3\r\nset\r\n*4\r\n$5\r\ncalls\r\n:2\r\n$14\r\nhistogram_usec\r\n"),
        "{reply}"
    );
    assert!(
        reply.contains("$9\r\nclient|id\r\n*4\r\n$5\r\ncalls\r\n:1\r\n"),
        "{reply}"
    );
    assert_eq!(text(conn.call(&[b"LATENCY", b"LATEST"])), "*0\r\n");
    assert_eq!(
        text(conn.call(&[b"LATENCY", b"HISTORY", b"command"])),
        "*0\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"LATENCY", b"RESET", b"blabla"])),
        ":0\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"LATENCY", b"GRAPH", b"command"])),
        "-ERR No samples available for event 'command'\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"LATENCY", b"HELP", b"xxx"])),
        "-ERR wrong number of arguments for 'latency|help' command\r\n"
    );
    assert!(text(conn.call(&[b"LATENCY", b"DOCTOR"])).contains("Dave"));
}

#[test]
fn memory_usage_matches_redis_for_strings() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut conn = server.raw();
    // redis-server 7.0.15 replies 64, 48 and 144 for these three keys.
    conn.call(&[b"SET", b"foo", b"bar"]);
    conn.call(&[b"SET", b"k", b"12345"]);
    conn.call(&[b"SET", b"kk", &[b'a'; 80]]);
    assert_eq!(text(conn.call(&[b"MEMORY", b"USAGE", b"foo"])), ":64\r\n");
    assert_eq!(text(conn.call(&[b"MEMORY", b"USAGE", b"k"])), ":48\r\n");
    assert_eq!(
        text(conn.call(&[b"MEMORY", b"USAGE", b"kk", b"SAMPLES", b"5"])),
        ":144\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"MEMORY", b"USAGE", b"missing"])),
        "$-1\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"MEMORY", b"USAGE", b"foo", b"SAMPLES"])),
        "-ERR syntax error\r\n"
    );
    assert!(text(conn.call(&[b"MEMORY", b"STATS"])).contains("keys.count"));
    assert_eq!(text(conn.call(&[b"MEMORY", b"PURGE"])), "+OK\r\n");
    assert!(text(conn.call(&[b"MEMORY", b"DOCTOR"])).contains("Sam"));
}

#[test]
fn monitor_prints_commands_in_redis_format() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut monitor = server.raw();
    assert_eq!(text(monitor.call(&[b"MONITOR"])), "+OK\r\n");
    let mut conn = server.raw();
    conn.call(&[b"SELECT", b"2"]);
    conn.call(&[b"SET", b"foo", b"a \"quoted\"\n"]);
    conn.call(&[b"AUTH", b"secret"]);
    // CONFIG is an admin command: not shown.
    conn.call(&[b"CONFIG", b"GET", b"port"]);
    conn.call(&[b"GET", b"foo"]);
    let select = text(monitor.read_reply());
    let set = text(monitor.read_reply());
    let auth = text(monitor.read_reply());
    let get = text(monitor.read_reply());
    assert!(
        select.starts_with('+') && select.contains("] \"SELECT\" \"2\""),
        "{select}"
    );
    // +1339518083.107412 [2 127.0.0.1:60866] "SET" ...
    let (stamp, rest) = set.split_once(' ').unwrap();
    let (secs, usecs) = stamp.trim_start_matches('+').split_once('.').unwrap();
    assert!(secs.parse::<u64>().is_ok() && usecs.len() == 6, "{set}");
    assert!(rest.starts_with("[2 127.0.0.1:"), "{set}");
    assert!(
        set.ends_with("\"SET\" \"foo\" \"a \\\"quoted\\\"\\n\"\r\n"),
        "{set}"
    );
    assert!(auth.ends_with("\"AUTH\" \"(redacted)\"\r\n"), "{auth}");
    assert!(get.ends_with("\"GET\" \"foo\"\r\n"), "{get}");
}

/// Regression: MONITOR showed a script's commands before the EVAL or FCALL that ran them (the
/// call was shown after it finished), and as from the caller's address; Redis shows the call
/// first, then each command as from `lua` (Redis's introspection unit).
#[test]
fn monitor_shows_script_calls_before_their_commands() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut monitor = server.raw();
    assert_eq!(text(monitor.call(&[b"MONITOR"])), "+OK\r\n");
    let mut conn = server.raw();
    conn.call(&[
        b"EVAL",
        b"redis.call('set',KEYS[1],ARGV[1])",
        b"1",
        b"foo",
        b"bar",
    ]);
    let eval = text(monitor.read_reply());
    let inner = text(monitor.read_reply());
    assert!(eval.contains("] \"EVAL\" "), "{eval}");
    assert!(
        inner.ends_with(" [0 lua] \"set\" \"foo\" \"bar\"\r\n"),
        "{inner}"
    );
    conn.call(&[
        b"FUNCTION",
        b"LOAD",
        b"#!lua name=test\nredis.register_function('test', function() return redis.call('set', 'foo', 'bar') end)",
    ]);
    let load = text(monitor.read_reply());
    assert!(load.contains("] \"FUNCTION\" \"LOAD\" "), "{load}");
    conn.call(&[b"FCALL", b"test", b"0"]);
    let fcall = text(monitor.read_reply());
    let inner = text(monitor.read_reply());
    assert!(fcall.contains("] \"FCALL\" \"test\" \"0\""), "{fcall}");
    assert!(
        inner.ends_with(" [0 lua] \"set\" \"foo\" \"bar\"\r\n"),
        "{inner}"
    );
}

/// The dataset whose digests redis-server 7.0.15 gave (DEBUG DIGEST, DEBUG DIGEST-VALUE).
fn load_digest_dataset(conn: &mut forkless_tests::RawConn) {
    for command in [
        &[&b"SET"[..], b"foo", b"bar"][..],
        &[b"SET", b"n", b"12345"],
        &[b"RPUSH", b"l", b"a", b"b", b"3"],
        &[b"SADD", b"s", b"x", b"y", b"1", b"2"],
        &[b"SADD", b"si", b"1", b"2", b"3"],
        &[
            b"ZADD", b"z", b"1.5", b"a", b"2", b"b", b"-inf", b"c", b"3", b"42",
        ],
        &[b"HSET", b"h", b"f", b"v", b"g", b"7"],
        &[b"EXPIRE", b"foo", b"1000"],
        &[b"SELECT", b"3"],
        &[b"SET", b"k", b"v"],
        &[b"SELECT", b"0"],
    ] {
        conn.call(command);
    }
}

#[test]
fn debug_digest_equals_redis() {
    let server = TestServer::start(BIN, &["--port", "0", "--enable-debug-command", "yes"]);
    let mut conn = server.raw();
    assert_eq!(
        text(conn.call(&[b"DEBUG", b"DIGEST"])),
        format!("+{}\r\n", "0".repeat(40))
    );
    load_digest_dataset(&mut conn);
    assert_eq!(
        text(conn.call(&[b"DEBUG", b"DIGEST"])),
        "+a98f85091f44d29ac4b88b7b487c82155a46545e\r\n"
    );
    assert_eq!(
        text(conn.call(&[
            b"DEBUG",
            b"DIGEST-VALUE",
            b"foo",
            b"l",
            b"s",
            b"z",
            b"h",
            b"nokey"
        ])),
        "*6\r\n+8ec3828f7209dd3abdf6ee448de8b0c0bd53265f\r\n\
         +09eb1fc9381ee92790d59930ab462945f8cd948b\r\n\
         +d9a5e496512416d64a1c5e6d33afd9f2f9c366c5\r\n\
         +b9ad9188d25e6eea07f018cce00cccd97c54cf0d\r\n\
         +42e8aee1f7247f7f7997132f31f0ea5085e70d29\r\n\
         +0000000000000000000000000000000000000000\r\n"
    );
}

#[test]
fn debug_reload_keeps_the_dataset() {
    let dir = forkless_tests::TestDir::new("debug-reload");
    let dir_arg = dir.0.to_str().unwrap().to_owned();
    let server = TestServer::start(
        BIN,
        &[
            "--port",
            "0",
            "--enable-debug-command",
            "yes",
            "--dir",
            &dir_arg,
        ],
    );
    let mut conn = server.raw();
    load_digest_dataset(&mut conn);
    let before = text(conn.call(&[b"DEBUG", b"DIGEST"]));
    assert_eq!(text(conn.call(&[b"DEBUG", b"RELOAD"])), "+OK\r\n");
    assert_eq!(text(conn.call(&[b"DEBUG", b"DIGEST"])), before);
    assert!(dir.dump().exists());
    // A key added after the save is gone after a reload that does not save.
    conn.call(&[b"SET", b"later", b"x"]);
    assert_eq!(
        text(conn.call(&[b"DEBUG", b"RELOAD", b"NOSAVE"])),
        "+OK\r\n"
    );
    assert_eq!(text(conn.call(&[b"EXISTS", b"later"])), ":0\r\n");
    assert_eq!(text(conn.call(&[b"DEBUG", b"DIGEST"])), before);
}

/// DEBUG SLEEP stalls every client, as it stalls single-threaded Redis: suites use it to play a
/// busy server (Redis's "MIGRATE timeout actually works").
#[test]
fn debug_sleep_stalls_other_clients() {
    let server = TestServer::start(BIN, &["--port", "0", "--enable-debug-command", "yes"]);
    let mut sleeper = server.raw();
    let mut other = server.raw();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let handle = std::thread::spawn(move || {
        let reply = text(sleeper.call(&[b"DEBUG", b"SLEEP", b"1"]));
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        reply
    });
    // Some PING must wait out most of the sleep; had none waited before the sleeper's reply,
    // the sleep ran beside other clients.
    let stalled = loop {
        let sent = Instant::now();
        assert_eq!(text(other.call(&[b"PING"])), "+PONG\r\n");
        if sent.elapsed() >= Duration::from_millis(500) {
            break true;
        }
        if done.load(std::sync::atomic::Ordering::SeqCst) {
            break false;
        }
    };
    assert_eq!(handle.join().unwrap(), "+OK\r\n");
    assert!(stalled, "no PING waited for DEBUG SLEEP");
}

#[test]
fn debug_subcommands_reply_as_redis() {
    let server = TestServer::start(BIN, &["--port", "0", "--enable-debug-command", "yes"]);
    let mut conn = server.raw();
    let started = Instant::now();
    assert_eq!(text(conn.call(&[b"DEBUG", b"SLEEP", b"0.2"])), "+OK\r\n");
    assert!(started.elapsed() >= Duration::from_millis(190));
    conn.call(&[b"SET", b"foo", b"bar"]);
    let object = text(conn.call(&[b"DEBUG", b"OBJECT", b"foo"]));
    assert!(object.starts_with("+Value at:0x"), "{object}");
    assert!(
        object.contains(" refcount:1 encoding:embstr serializedlength:4 lru:"),
        "{object}"
    );
    assert_eq!(
        text(conn.call(&[b"DEBUG", b"OBJECT", b"nokey"])),
        "-ERR no such key\r\n"
    );
    for ok in [
        &[&b"DEBUG"[..], b"SET-ACTIVE-EXPIRE", b"0"][..],
        &[b"DEBUG", b"SET-ACTIVE-EXPIRE", b"1"],
        &[b"DEBUG", b"QUICKLIST-PACKED-THRESHOLD", b"100"],
        &[b"DEBUG", b"CHANGE-REPL-ID"],
        &[b"DEBUG", b"LOG", b"hello"],
    ] {
        assert_eq!(text(conn.call(ok)), "+OK\r\n");
    }
    assert_eq!(
        text(conn.call(&[b"DEBUG", b"QUICKLIST-PACKED-THRESHOLD", b"5gb"])),
        "-ERR argument must be a memory value bigger than 1 and smaller than 4gb\r\n"
    );
}

#[test]
fn debug_set_active_expire_stops_the_cycle() {
    let server = TestServer::start(BIN, &["--port", "0", "--enable-debug-command", "yes"]);
    let mut conn = server.raw();
    conn.call(&[b"DEBUG", b"SET-ACTIVE-EXPIRE", b"0"]);
    conn.call(&[b"SET", b"k", b"v", b"PX", b"1"]);
    std::thread::sleep(Duration::from_millis(300));
    // Nothing read the key, and the cycle is off: it is still counted.
    assert_eq!(text(conn.call(&[b"DBSIZE"])), ":1\r\n");
    conn.call(&[b"DEBUG", b"SET-ACTIVE-EXPIRE", b"1"]);
    assert!(wait_until(Duration::from_secs(5), || text(
        conn.call(&[b"DBSIZE"])
    ) == ":0\r\n"));
}

#[test]
fn debug_is_gated_by_enable_debug_command() {
    const REFUSED: &str = "-ERR DEBUG command not allowed. If the enable-debug-command option is \
                           set to \"local\", you can run it from a local connection, otherwise \
                           you need to set this option in the configuration file, and then \
                           restart the server.\r\n";
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut conn = server.raw();
    assert_eq!(text(conn.call(&[b"DEBUG", b"DIGEST"])), REFUSED);
    assert_eq!(
        text(conn.call(&[b"CONFIG", b"SET", b"enable-debug-command", b"yes"])),
        "-ERR CONFIG SET failed (possibly related to argument 'enable-debug-command') - can't \
         set immutable config\r\n"
    );
    drop(conn);
    drop(server);
    let server = TestServer::start(
        BIN,
        &[
            "--port",
            "0",
            "--bind",
            "127.0.0.1 127.0.0.2",
            "--enable-debug-command",
            "local",
            "--protected-mode",
            "no",
        ],
    );
    let mut local = server.raw();
    assert!(text(local.call(&[b"DEBUG", b"DIGEST"])).starts_with('+'));
    let mut remote = server.raw_from("127.0.0.2".parse().unwrap());
    assert_eq!(text(remote.call(&[b"DEBUG", b"DIGEST"])), REFUSED);
}

#[test]
fn tracking_reports_expired_keys_and_evicts_over_the_table_limit() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut conn = resp3_tracking(&server, &[b"BCAST", b"NOLOOP"]);
    // Its own write is hidden by NOLOOP; the expiry, by nobody, is not.
    conn.call(&[b"SET", b"mykey", b"v", b"PX", b"1"]);
    assert_eq!(
        text(conn.read_reply()),
        ">2\r\n$10\r\ninvalidate\r\n*1\r\n$5\r\nmykey\r\n"
    );
    let mut plain = resp3_tracking(&server, &[]);
    let mut other = server.raw();
    other.call(&[b"MSET", b"k1", b"1", b"k2", b"2"]);
    plain.call(&[b"MGET", b"k1", b"k2"]);
    let info = text(other.call(&[b"INFO", b"stats"]));
    assert!(info.contains("tracking_total_keys:2\r\n"), "{info}");
    assert!(info.contains("tracking_total_items:2\r\n"), "{info}");
    assert!(info.contains("tracking_total_prefixes:1\r\n"), "{info}");
    let clients = text(other.call(&[b"INFO", b"clients"]));
    assert!(clients.contains("tracking_clients:2\r\n"), "{clients}");
    // Over tracking-table-max-keys, a key is dropped and its reader told.
    other.call(&[b"CONFIG", b"SET", b"tracking-table-max-keys", b"1"]);
    other.call(&[b"PING"]);
    let evicted = text(plain.read_reply());
    assert!(
        evicted == ">2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\nk1\r\n"
            || evicted == ">2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\nk2\r\n",
        "{evicted}"
    );
}

/// DEBUG POPULATE count [prefix] [size] as redis-server 7.0.15 answers it (replies taken from
/// it): `<prefix>:<n>` keys holding `value:<n>`, cut or zero-padded to `size`, existing keys
/// left alone, Redis's errors. Redis's own Sentinel suite (12-master-reboot) and many of its
/// units fill a server with it.
#[test]
fn debug_populate_creates_keys_as_redis() {
    let server = TestServer::start(BIN, &["--port", "0", "--enable-debug-command", "yes"]);
    let mut conn = server.raw();
    conn.call(&[b"SET", b"key:1", b"old"]);
    assert_eq!(text(conn.call(&[b"DEBUG", b"POPULATE", b"3"])), "+OK\r\n");
    assert_eq!(
        text(conn.call(&[b"MGET", b"key:0", b"key:1", b"key:2", b"key:3"])),
        "*4\r\n$7\r\nvalue:0\r\n$3\r\nold\r\n$7\r\nvalue:2\r\n$-1\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"DEBUG", b"POPULATE", b"2", b"p", b"3"])),
        "+OK\r\n"
    );
    assert_eq!(text(conn.call(&[b"GET", b"p:1"])), "$3\r\nval\r\n");
    assert_eq!(
        text(conn.call(&[b"DEBUG", b"POPULATE", b"1", b"q", b"10"])),
        "+OK\r\n"
    );
    assert_eq!(
        conn.call(&[b"GET", b"q:0"]),
        b"$10\r\nvalue:0\0\0\0\r\n".to_vec()
    );
    assert_eq!(text(conn.call(&[b"DBSIZE"])), ":6\r\n");
    for bad in [
        &[&b"DEBUG"[..], b"POPULATE", b"-1"][..],
        &[b"DEBUG", b"POPULATE", b"x"],
        &[b"DEBUG", b"POPULATE", b"1", b"a", b"-1"],
    ] {
        assert_eq!(
            text(conn.call(bad)),
            "-ERR value is out of range, must be positive\r\n"
        );
    }
    for bad in [
        &[&b"DEBUG"[..], b"POPULATE"][..],
        &[b"DEBUG", b"POPULATE", b"1", b"a", b"1", b"1"],
    ] {
        assert_eq!(
            text(conn.call(bad)),
            "-ERR unknown subcommand or wrong number of arguments for 'POPULATE'. Try DEBUG HELP.\r\n"
        );
    }
    // forkless's bound: no string may be longer than proto-max-bulk-len.
    assert_eq!(
        text(conn.call(&[b"DEBUG", b"POPULATE", b"1", b"big", b"536870913"])),
        "-ERR size is larger than proto-max-bulk-len\r\n"
    );
    assert_eq!(text(conn.call(&[b"DBSIZE"])), ":6\r\n");
}

/// DEBUG POPULATE's keys are not propagated, as in Redis: a replica that has the write made
/// after them does not have them.
#[test]
fn debug_populate_is_not_propagated() {
    let primary = TestServer::start(
        BIN,
        &[
            "--port",
            "0",
            "--enable-debug-command",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
        ],
    );
    let replica = TestServer::start(
        BIN,
        &["--replicaof", "127.0.0.1", &primary.port().to_string()],
    );
    let mut ours = primary.raw();
    let mut theirs = replica.raw();
    assert!(wait_until(Duration::from_secs(20), || text(
        ours.call(&[b"WAIT", b"1", b"100"])
    ) == ":1\r\n"));
    assert_eq!(
        text(ours.call(&[b"DEBUG", b"POPULATE", b"100", b"pop"])),
        "+OK\r\n"
    );
    assert_eq!(text(ours.call(&[b"SET", b"after", b"1"])), "+OK\r\n");
    assert_eq!(text(ours.call(&[b"WAIT", b"1", b"5000"])), ":1\r\n");
    assert_eq!(text(ours.call(&[b"DBSIZE"])), ":101\r\n");
    assert_eq!(text(theirs.call(&[b"GET", b"after"])), "$1\r\n1\r\n");
    assert_eq!(text(theirs.call(&[b"DBSIZE"])), ":1\r\n");
}

/// `key-load-delay` (microseconds per key loaded) keeps a restarted server loading, and
/// answering -LOADING, long enough for a test to watch it: Redis's Sentinel suite reboots a
/// primary with it (12-master-reboot).
#[test]
fn key_load_delay_slows_the_load_at_startup() {
    let dir = forkless_tests::TestDir::new("key-load-delay");
    let dir_arg = dir.0.to_str().unwrap().to_owned();
    {
        let server = TestServer::start(
            BIN,
            &[
                "--port",
                "0",
                "--enable-debug-command",
                "yes",
                "--dir",
                &dir_arg,
            ],
        );
        let mut conn = server.raw();
        conn.call(&[b"DEBUG", b"POPULATE", b"500"]);
        assert_eq!(text(conn.call(&[b"SAVE"])), "+OK\r\n");
    }
    let port = forkless_tests::free_port();
    let started = Instant::now();
    let child = std::process::Command::new(BIN)
        .args(["--port", &port.to_string(), "--dir", &dir_arg])
        .args(["--save", "", "--key-load-delay", "4000"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _guard = forkless_tests::ChildGuard(child);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    assert!(wait_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect(addr).is_ok()
    }));
    let mut conn = forkless_tests::RawConn::connect(addr);
    // 500 keys at 4 ms each: the load lasts about 2 s, and the first command comes well
    // within it.
    assert_eq!(
        text(conn.call(&[b"GET", b"key:0"])),
        "-LOADING Redis is loading the dataset in memory\r\n"
    );
    assert!(wait_until(Duration::from_secs(30), || text(
        conn.call(&[b"DBSIZE"])
    ) == ":500\r\n"));
    assert!(started.elapsed() >= Duration::from_secs(2));
}

/// `qbuf + qbuf-free` of the client named `name`, as another client's CLIENT LIST shows it.
fn query_buffer_of(conn: &mut forkless_tests::RawConn, name: &str) -> u64 {
    let list = text(conn.call(&[b"CLIENT", b"LIST"]));
    let line = list
        .lines()
        .find(|line| line.contains(&format!(" name={name} ")))
        .unwrap_or_else(|| panic!("no client {name} in {list}"));
    let used: u64 = field(line, "qbuf").parse().unwrap();
    let free: u64 = field(line, "qbuf-free").parse().unwrap();
    used + free
}

/// Regression: CLIENT LIST's `qbuf-free` counted from the first unread byte, so a new client
/// showed less than the 16 KiB it reads into, and the query buffer never shrank as Redis's
/// `clientsCronResizeQueryBuffer` shrinks it: to nothing after 2 s idle, and to its recent
/// peak once a big request is past (Redis's querybuf unit).
#[test]
fn query_buffers_grow_shrink_and_go_idle_as_redis() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut observer = server.raw();
    let mut idle = server.raw();
    assert_eq!(idle.call(&[b"CLIENT", b"SETNAME", b"idle"]), b"+OK\r\n");
    let start = query_buffer_of(&mut observer, "idle");
    assert!((16_384..32_768).contains(&start), "{start}");
    // Idle for more than 2 s: the buffer is given back entirely.
    assert!(wait_until(Duration::from_secs(10), || query_buffer_of(
        &mut observer,
        "idle"
    ) == 0));
    // It still serves, reading into a fresh buffer.
    assert_eq!(idle.call(&[b"PING"]), b"+PONG\r\n");
    let again = query_buffer_of(&mut observer, "idle");
    assert!((16_384..32_768).contains(&again), "{again}");

    let mut busy = server.raw();
    assert_eq!(busy.call(&[b"CLIENT", b"SETNAME", b"busy"]), b"+OK\r\n");
    let big = vec![b'A'; 400_000];
    assert_eq!(busy.call(&[b"SET", b"x", &big]), b"+OK\r\n");
    let grown = query_buffer_of(&mut observer, "busy");
    assert!(grown > 32_768, "{grown}");
    // Small requests keep it busy; the cron shrinks it to the recent peak, not to nothing.
    let started = Instant::now();
    let shrunk = loop {
        assert_eq!(busy.call(&[b"SET", b"x", b"small"]), b"+OK\r\n");
        let size = query_buffer_of(&mut observer, "busy");
        if size < grown {
            break size;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never shrank from {grown}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(shrunk > 0 && shrunk < grown, "{shrunk}");
    assert_eq!(busy.call(&[b"GET", b"x"]), b"$5\r\nsmall\r\n");
}
