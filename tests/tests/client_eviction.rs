//! `maxmemory-clients` (Redis 7.0's client eviction, issue 17): when the clients' memory
//! (CLIENT LIST `tot-mem`, summed) reaches the limit, the largest clients are closed until it
//! is under, never one with CLIENT NO-EVICT on; the limit is absolute or a percentage of
//! `maxmemory`; INFO counts `evicted_clients`.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use forkless_tests::resp::cmd;
use forkless_tests::{RawConn, TestServer, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

const KIB: usize = 1024;

/// A connection that sent the start of a `SET k <len>` whose value never completes: `sent`
/// of its `len` bytes sit in the server's query buffer. The server may evict it before it has
/// sent them all (its buffer passes the limit part way through): the write then fails with a
/// reset or a broken pipe, which is the eviction the callers check for with [`closed`].
fn partial_set(server: &TestServer, len: usize, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${len}\r\n").as_bytes())
        .unwrap();
    if let Err(err) = stream
        .write_all(&vec![b'x'; sent])
        .and_then(|()| stream.flush())
    {
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
            "{err}"
        );
    }
    stream
}

/// Returns true if and only if the server closed `stream` (EOF or reset) within the timeout.
fn closed(stream: &mut TcpStream, timeout: Duration) -> bool {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// A connection that turned CLIENT NO-EVICT on.
fn no_evict_conn(server: &TestServer) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(b"*3\r\n$6\r\nCLIENT\r\n$8\r\nNO-EVICT\r\n$2\r\non\r\n")
        .unwrap();
    let mut reply = [0u8; 5];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"+OK\r\n");
    stream
}

/// INFO's `evicted_clients`, read on `admin` (a connection with CLIENT NO-EVICT on: while
/// a protected client keeps the total over the limit, every other client goes, as in Redis).
fn evicted_clients(admin: &mut RawConn) -> u64 {
    let info = String::from_utf8(admin.call(&[b"INFO", b"stats"])).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("evicted_clients:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The `tot-mem` CLIENT LIST shows for the client whose `qbuf` is at least `at_least`.
fn tot_mem_of_big(admin: &mut RawConn, at_least: u64) -> Option<u64> {
    let list = String::from_utf8(admin.call(&[b"CLIENT", b"LIST"])).unwrap();
    list.lines().find_map(|line| {
        let field = |name: &str| -> Option<u64> {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?
                .parse()
                .ok()
        };
        (field("qbuf")? >= at_least).then(|| field("tot-mem"))?
    })
}

#[test]
fn the_largest_client_is_evicted_first_and_only_until_under_the_limit() {
    let server = TestServer::start(BIN, &["--save", ""]);
    let mut raw = server.raw();
    assert_eq!(cmd(&mut raw, "CLIENT NO-EVICT on"), "+OK\r\n");
    let mut big = partial_set(&server, 1024 * KIB, 600 * KIB);
    let mut small = partial_set(&server, 256 * KIB, 200 * KIB);
    // Both query buffers show in CLIENT LIST (qbuf and tot-mem) before the limit is set.
    assert!(wait_until(Duration::from_secs(10), || {
        tot_mem_of_big(&mut raw, 500 * 1024).is_some()
    }));
    let big_mem = tot_mem_of_big(&mut raw, 500 * 1024).unwrap();
    assert!(big_mem >= 600 * 1024, "tot-mem {big_mem}");
    assert_eq!(evicted_clients(&mut raw), 0);
    // Over the limit with both; under it once the big one is gone.
    assert_eq!(
        cmd(&mut raw, "CONFIG SET maxmemory-clients 500kb"),
        "+OK\r\n"
    );
    assert!(closed(&mut big, Duration::from_secs(10)), "big not evicted");
    assert!(
        !closed(&mut small, Duration::from_millis(500)),
        "small evicted"
    );
    assert_eq!(evicted_clients(&mut raw), 1);
    assert_eq!(cmd(&mut raw, "PING"), "+PONG\r\n");
    // CONFIG RESETSTAT zeroes the count; 0 turns client eviction off.
    assert_eq!(cmd(&mut raw, "CONFIG RESETSTAT"), "+OK\r\n");
    assert_eq!(evicted_clients(&mut raw), 0);
    assert_eq!(cmd(&mut raw, "CONFIG SET maxmemory-clients 0"), "+OK\r\n");
    let mut third = partial_set(&server, 1024 * KIB, 600 * KIB);
    assert!(!closed(&mut third, Duration::from_millis(500)));
    assert_eq!(evicted_clients(&mut raw), 0);
}

#[test]
fn a_percentage_of_maxmemory_and_no_evict() {
    let server = TestServer::start(
        BIN,
        &[
            "--save",
            "",
            "--maxmemory",
            "100mb",
            "--maxmemory-clients",
            "1%",
        ],
    );
    let mut raw = server.raw();
    assert_eq!(
        cmd(&mut raw, "CONFIG GET maxmemory-clients"),
        "*2\r\n$17\r\nmaxmemory-clients\r\n$2\r\n1%\r\n"
    );
    assert_eq!(cmd(&mut raw, "CLIENT NO-EVICT on"), "+OK\r\n");
    // A NO-EVICT client and a plain one, each over 1% of 100 MiB on its own: only the plain
    // one goes, though the protected one alone keeps the clients over the limit.
    let mut protected = no_evict_conn(&server);
    protected
        .write_all(format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", 2048 * KIB).as_bytes())
        .unwrap();
    protected.write_all(&vec![b'v'; 1536 * KIB]).unwrap();
    let mut plain = partial_set(&server, 2048 * KIB, 1536 * KIB);
    assert!(closed(&mut plain, Duration::from_secs(10)));
    assert_eq!(evicted_clients(&mut raw), 1);
    assert!(!closed(&mut protected, Duration::from_millis(500)));
    assert_eq!(evicted_clients(&mut raw), 1);
    assert_eq!(cmd(&mut raw, "PING"), "+PONG\r\n");
}

#[test]
fn no_evict_protects_a_client_over_the_limit_until_it_turns_it_off() {
    let server = TestServer::start(BIN, &["--save", "", "--maxmemory-clients", "300kb"]);
    let mut raw = server.raw();
    assert_eq!(cmd(&mut raw, "CLIENT NO-EVICT on"), "+OK\r\n");
    // A client whose own query buffer is over the limit, with NO-EVICT on: kept.
    let mut stream = no_evict_conn(&server);
    stream
        .write_all(format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", 4 * 1024 * 1024).as_bytes())
        .unwrap();
    stream.write_all(&vec![b'x'; 400 * KIB]).unwrap();
    assert!(!closed(&mut stream, Duration::from_millis(700)));
    assert_eq!(evicted_clients(&mut raw), 0);
    // A partial command cannot turn it off; a new connection that turns it off goes at once.
    let mut other = TcpStream::connect(server.addr).unwrap();
    other
        .write_all(b"*3\r\n$6\r\nCLIENT\r\n$8\r\nNO-EVICT\r\n$3\r\noff\r\n")
        .unwrap();
    // The server may close it before it has written everything.
    let _ = other.write_all(b"*2\r\n$4\r\nECHO\r\n$1048576\r\n");
    let _ = other.write_all(&vec![b'y'; 400 * KIB]);
    assert!(closed(&mut other, Duration::from_secs(10)));
    assert_eq!(evicted_clients(&mut raw), 1);
    assert!(!closed(&mut stream, Duration::from_millis(300)));
}

#[test]
fn arguments_of_an_unfinished_command_count_and_show_as_argv_mem() {
    let server = TestServer::start(BIN, &["--save", ""]);
    let mut raw = server.raw();
    assert_eq!(cmd(&mut raw, "CLIENT NO-EVICT on"), "+OK\r\n");
    // 249 of 250 arguments of 1000 bytes: parsed and held, none of it in the query buffer.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.write_all(b"*250\r\n").unwrap();
    for _ in 0..249 {
        stream.write_all(b"$1000\r\n").unwrap();
        stream.write_all(&[b'x'; 1000]).unwrap();
        stream.write_all(b"\r\n").unwrap();
    }
    let argv_mem = || {
        let list = String::from_utf8(raw_list(&server)).unwrap();
        list.lines()
            .filter_map(|line| {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix("argv-mem="))?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(10), || argv_mem() >= 249 * 1000),
        "argv-mem {}",
        argv_mem()
    );
    assert_eq!(
        cmd(&mut raw, "CONFIG SET maxmemory-clients 200kb"),
        "+OK\r\n"
    );
    assert!(closed(&mut stream, Duration::from_secs(10)));
    assert_eq!(evicted_clients(&mut raw), 1);
}

/// CLIENT LIST on a fresh connection.
fn raw_list(server: &TestServer) -> Vec<u8> {
    server.raw().call(&[b"CLIENT", b"LIST"])
}
