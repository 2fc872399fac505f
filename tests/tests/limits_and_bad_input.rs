//! Limits and hostile input, end to end: every limit is a config option, going over it gives
//! Redis's error (or Redis's silent close) for that connection only, and nothing the client
//! sends can take the server down.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use forkless_tests::TestServer;
use proptest::prelude::*;

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

fn connect(server: &TestServer) -> TcpStream {
    let stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Everything the server sends until it closes the connection.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn assert_alive(server: &TestServer) {
    let mut conn = server.raw();
    assert_eq!(conn.call(&[b"PING"]), b"+PONG\r\n");
}

/// Sends `bytes` and returns everything the server answers before closing.
fn send_and_read_to_close(server: &TestServer, bytes: &[u8]) -> Vec<u8> {
    let mut stream = connect(server);
    // The server may close before it has read everything: a failed write is fine.
    let _ = stream.write_all(bytes);
    read_until_closed(&mut stream)
}

#[test]
fn protocol_errors_get_redis_error_text_and_close_only_that_connection() {
    let server = TestServer::start(BIN, &[]);
    let cases: [(&[u8], &[u8]); 5] = [
        (
            b"*abc\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\nfoo\r\n",
            b"-ERR Protocol error: expected '$', got 'f'\r\n",
        ),
        (
            b"*1\r\n$-5\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$abc\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"SET a \"unterminated\r\n",
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ];
    for (input, expected) in cases {
        let reply = send_and_read_to_close(&server, input);
        assert_eq!(
            String::from_utf8_lossy(&reply),
            String::from_utf8_lossy(expected),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
        assert_alive(&server);
    }
}

#[test]
fn bulk_longer_than_proto_max_bulk_len_is_refused() {
    let server = TestServer::start(BIN, &["--proto-max-bulk-len", "1mb"]);
    let reply = send_and_read_to_close(&server, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000000\r\n");
    assert_eq!(reply, b"-ERR Protocol error: invalid bulk length\r\n");
    // Exactly at the limit is fine.
    let mut conn = server.raw();
    let value = vec![b'v'; 1024 * 1024];
    assert_eq!(conn.call(&[b"SET", b"k", &value]), b"+OK\r\n");
    // CONFIG SET raises it for new commands.
    assert_eq!(
        conn.call(&[b"CONFIG", b"SET", b"proto-max-bulk-len", b"4mb"]),
        b"+OK\r\n"
    );
    let bigger = vec![b'v'; 2_000_000];
    assert_eq!(conn.call(&[b"SET", b"k", &bigger]), b"+OK\r\n");
}

#[test]
fn a_client_over_the_query_buffer_limit_is_closed_and_logged() {
    let server = TestServer::start(BIN, &["--client-query-buffer-limit", "1mb"]);
    let mut stream = connect(&server);
    // A 100 MB bulk is within proto-max-bulk-len; its first 3 MB overflow the 1 MB buffer.
    let _ = stream.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000000\r\n");
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..48 {
        if stream.write_all(&chunk).is_err() {
            break;
        }
    }
    assert!(
        read_until_closed(&mut stream).is_empty(),
        "Redis closes without a reply"
    );
    assert!(
        server
            .wait_for_log("Closing client that reached max query buffer length")
            .is_some()
    );
    assert_alive(&server);
}

/// Number of connected clients, from CLIENT LIST.
fn client_count(server: &TestServer) -> usize {
    let mut conn = server.raw();
    let reply = conn.call(&[b"CLIENT", b"LIST"]);
    String::from_utf8_lossy(&reply)
        .lines()
        .filter(|line| line.contains("id="))
        .count()
}

#[test]
fn a_reply_over_the_normal_hard_output_limit_closes_that_client() {
    let server = TestServer::start(BIN, &["--client-output-buffer-limit", "normal 1mb 0 0"]);
    let mut conn = server.raw();
    let big = vec![b'v'; 2_000_000];
    assert_eq!(conn.call(&[b"SET", b"big", &big]), b"+OK\r\n");
    assert_eq!(conn.call(&[b"SET", b"small", b"x"]), b"+OK\r\n");
    // Under the limit: served.
    assert_eq!(conn.call(&[b"GET", b"small"]), b"$1\r\nx\r\n");
    // Over it: closed without the reply, as Redis does.
    conn.send_command(&[b"GET", b"big"]);
    assert!(conn.read_to_close().is_empty(), "no reply is sent");
    assert!(
        server
            .wait_for_log("closed ASAP for overcoming of output buffer limits")
            .is_some()
    );
    assert_alive(&server);
    // The limit is live: lifted, the same reply goes through.
    let mut conn = server.raw();
    assert_eq!(
        conn.call(&[
            b"CONFIG",
            b"SET",
            b"client-output-buffer-limit",
            b"normal 0 0 0"
        ]),
        b"+OK\r\n"
    );
    assert_eq!(
        conn.call(&[b"GET", b"big"]).len(),
        "$2000000\r\n".len() + 2_000_000 + 2
    );
}

#[test]
fn a_client_that_stops_reading_over_the_soft_output_limit_is_closed() {
    let server = TestServer::start(BIN, &["--client-output-buffer-limit", "normal 0 1mb 1"]);
    let mut conn = server.raw();
    // Far more than the loopback socket buffers hold, so the write cannot finish.
    let big = vec![b'v'; 64_000_000];
    assert_eq!(conn.call(&[b"SET", b"big", &big]), b"+OK\r\n");
    let before = client_count(&server);
    let mut reader = connect(&server);
    reader
        .write_all(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n")
        .unwrap();
    assert!(
        forkless_tests::wait_until(Duration::from_secs(10), || client_count(&server)
            == before + 1),
        "the non-reading client is connected"
    );
    // It never reads: after the soft limit's second it is closed.
    assert!(
        server
            .wait_for_log("closed ASAP for overcoming of output buffer limits")
            .is_some()
    );
    assert!(forkless_tests::wait_until(Duration::from_secs(10), || {
        client_count(&server) == before
    }));
    assert_alive(&server);
}

/// Pipelines `GET k` on a new connection without reading a reply, until the server closes
/// it; returns how many were sent.
fn pipeline_gets_until_closed(server: &TestServer) -> u64 {
    let mut stream = connect(server);
    let batch = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".repeat(8);
    let mut sent = 0;
    while stream.write_all(&batch).is_ok() {
        sent += 8;
    }
    sent
}

/// Pipelined commands whose replies the client never reads: the server goes on running them
/// (as Redis does) and the replies pile up in the output buffer until the normal class's
/// hard limit closes the client. (Forkless once stopped reading such a client instead, so
/// neither limit was ever reached by many small replies.)
#[test]
fn pipelined_replies_never_read_reach_the_hard_output_limit() {
    let server = TestServer::start(BIN, &["--client-output-buffer-limit", "normal 2mb 0 0"]);
    let mut conn = server.raw();
    let value = vec![b'v'; 100_000];
    assert_eq!(conn.call(&[b"SET", b"k", &value]), b"+OK\r\n");
    let sent = pipeline_gets_until_closed(&server);
    assert!(sent > 0);
    assert!(
        server
            .wait_for_log("closed ASAP for overcoming of output buffer limits")
            .is_some()
    );
    assert_alive(&server);
}

/// The same with only a soft limit: the replies stay over it for its second, and the client
/// is closed.
#[test]
fn pipelined_replies_never_read_stay_over_the_soft_output_limit() {
    let server = TestServer::start(BIN, &["--client-output-buffer-limit", "normal 0 2mb 1"]);
    let mut conn = server.raw();
    let value = vec![b'v'; 100_000];
    assert_eq!(conn.call(&[b"SET", b"k", &value]), b"+OK\r\n");
    let started = std::time::Instant::now();
    let sent = pipeline_gets_until_closed(&server);
    assert!(sent > 0);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        server
            .wait_for_log("closed ASAP for overcoming of output buffer limits")
            .is_some()
    );
    assert_alive(&server);
}

#[test]
fn clients_that_have_not_authenticated_get_redis_small_request_limits() {
    let server = TestServer::start(BIN, &["--requirepass", "pw"]);
    // More than 10 arguments, or a bulk over 16 KiB, before AUTH: Redis's protocol errors.
    assert_eq!(
        send_and_read_to_close(&server, b"*11\r\n"),
        b"-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
    assert_eq!(
        send_and_read_to_close(&server, b"*2\r\n$3\r\nGET\r\n$16385\r\n"),
        b"-ERR Protocol error: unauthenticated bulk length\r\n"
    );
    // At the limits: parsed, and refused for want of AUTH only.
    let mut conn = server.raw();
    let big = vec![b'x'; 16_384];
    assert_eq!(
        conn.call(&[b"SET", b"k", &big]),
        b"-NOAUTH Authentication required.\r\n"
    );
    // AUTH lifts the limits for the very next command, even in the same pipeline.
    let bigger = vec![b'y'; 100_000];
    conn.send_command(&[b"AUTH", b"pw"]);
    conn.send_command(&[b"SET", b"k", &bigger]);
    assert_eq!(conn.read_reply(), b"+OK\r\n");
    assert_eq!(conn.read_reply(), b"+OK\r\n");
    assert_eq!(conn.call(&[b"STRLEN", b"k"]), b":100000\r\n");
    // Without requirepass nobody is held to them.
    let open = TestServer::start(BIN, &[]);
    let mut conn = open.raw();
    let args: Vec<&[u8]> = std::iter::once(&b"MSET"[..])
        .chain(std::iter::repeat_n(&b"a"[..], 12))
        .collect();
    assert_eq!(conn.call(&args), b"+OK\r\n");
}

#[test]
fn inline_commands_and_deep_pipelines_work() {
    let server = TestServer::start(BIN, &[]);
    let mut stream = connect(&server);
    stream
        .write_all(b"PING\r\nSET greeting \"hello world\"\nGET greeting\r\n")
        .unwrap();
    let mut conn_reply = vec![0u8; b"+PONG\r\n+OK\r\n$11\r\nhello world\r\n".len()];
    stream.read_exact(&mut conn_reply).unwrap();
    assert_eq!(conn_reply, b"+PONG\r\n+OK\r\n$11\r\nhello world\r\n");

    // 2,000 commands in one write: 2,000 replies, in order.
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..2000 {
        let value = i.to_string();
        batch.extend_from_slice(
            format!("*2\r\n$4\r\nECHO\r\n${}\r\n{value}\r\n", value.len()).as_bytes(),
        );
        expected.extend_from_slice(format!("${}\r\n{value}\r\n", value.len()).as_bytes());
    }
    stream.write_all(&batch).unwrap();
    let mut got = vec![0u8; expected.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(got, expected);
}

#[test]
fn unknown_commands_and_wrong_arity_keep_the_connection() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    assert_eq!(
        conn.call(&[b"NOSUCH", b"a", b"b"]),
        b"-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \r\n"
    );
    assert_eq!(
        conn.call(&[b"GET"]),
        b"-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert_eq!(conn.call(&[b"PING"]), b"+PONG\r\n");
}

/// Random bytes on fresh connections never take the server down.
#[test]
fn random_bytes_never_crash_the_server() {
    let server = TestServer::start(BIN, &["--client-query-buffer-limit", "1mb"]);
    let blobs = proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..512), 1..4);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    runner
        .run(&blobs, |blobs| {
            for blob in &blobs {
                let mut stream = connect(&server);
                let _ = stream.write_all(blob);
                // Half-close so an incomplete command does not wait for more bytes forever.
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let _ = read_until_closed(&mut stream);
            }
            let mut conn = server.raw();
            prop_assert_eq!(conn.call(&[b"PING"]), b"+PONG\r\n".to_vec());
            Ok(())
        })
        .unwrap();
}
