//! The listeners as Redis 7.0 has them: the Unix socket (`unixsocket`, `unixsocketperm`) and
//! CONFIG SET `port` / `bind` rebinding at run time (issue 16: forkless ignored `unixsocket`
//! and refused both options as immutable).
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use forkless_tests::{RawConn, TestServer, unique_dir, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

fn text(reply: Vec<u8>) -> String {
    String::from_utf8(reply).unwrap()
}

/// A RESP client over a Unix socket.
struct UnixConn {
    stream: UnixStream,
    pending: Vec<u8>,
}

impl UnixConn {
    fn connect(path: &Path) -> UnixConn {
        let stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        UnixConn {
            stream,
            pending: Vec::new(),
        }
    }

    fn call(&mut self, args: &[&str]) -> String {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
        self.stream.write_all(&out).unwrap();
        let limits = forkless_protocol::Limits::default();
        let mut chunk = [0u8; 4096];
        loop {
            if let Ok(Some((_, used))) = forkless_protocol::decode_frame(&self.pending, &limits) {
                let reply: Vec<u8> = self.pending.drain(..used).collect();
                return text(reply);
            }
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed");
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The value of `field=` in a CLIENT INFO / CLIENT LIST line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in {line}"))
}

fn connect_refused(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
}

#[test]
fn unix_socket_serves_clients_as_local_and_is_removed_at_shutdown() {
    let dir = unique_dir("unixsock");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("forkless.sock");
    // A stale file where the socket goes is replaced, as Redis unlinks it first.
    std::fs::write(&path, b"stale").unwrap();
    let path_text = path.to_str().unwrap();
    let server = TestServer::start(
        BIN,
        &[
            "--unixsocket",
            path_text,
            "--unixsocketperm",
            "700",
            "--enable-debug-command",
            "local",
        ],
    );
    let metadata = std::fs::metadata(&path).unwrap();
    assert!(metadata.file_type().is_socket());
    assert_eq!(metadata.permissions().mode() & 0o777, 0o700);

    let mut unix = UnixConn::connect(&path);
    assert_eq!(unix.call(&["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(unix.call(&["GET", "k"]), "$1\r\nv\r\n");
    // The same dataset over TCP.
    let mut tcp = server.raw();
    assert_eq!(text(tcp.call(&[b"GET", b"k"])), "$1\r\nv\r\n");

    let info = unix.call(&["CLIENT", "INFO"]);
    let shown = format!("{path_text}:0");
    assert_eq!(field(&info, "addr"), shown);
    assert_eq!(field(&info, "laddr"), shown);
    assert_eq!(field(&info, "flags"), "U");
    let list = text(tcp.call(&[b"CLIENT", b"LIST"]));
    assert!(
        list.contains(&format!("addr={shown} laddr={shown} ")),
        "{list}"
    );
    assert_eq!(field(&text(tcp.call(&[b"CLIENT", b"INFO"])), "flags"), "N");

    // Local for `enable-debug-command local`, as Redis's islocalClient.
    assert_eq!(unix.call(&["DEBUG", "SLEEP", "0"]), "+OK\r\n");
    assert_eq!(
        unix.call(&["CONFIG", "GET", "unixsocket*"]),
        format!(
            "*4\r\n$10\r\nunixsocket\r\n${}\r\n{path_text}\r\n$14\r\nunixsocketperm\r\n$3\r\n700\r\n",
            path_text.len()
        )
    );
    // MONITOR names a Unix client `unix:<path>`, as Redis's replicationFeedMonitors.
    let mut monitor = server.raw();
    assert_eq!(text(monitor.call(&[b"MONITOR"])), "+OK\r\n");
    assert_eq!(unix.call(&["GET", "k"]), "$1\r\nv\r\n");
    let line = text(monitor.read_reply());
    assert!(
        line.ends_with(&format!(" [0 unix:{path_text}] \"GET\" \"k\"\r\n")),
        "{line}"
    );
    // CLIENT KILL finds it by the address CLIENT LIST shows.
    assert_eq!(
        text(tcp.call(&[b"CLIENT", b"KILL", b"ADDR", shown.as_bytes()])),
        ":1\r\n"
    );

    let mut unix = UnixConn::connect(&path);
    assert_eq!(unix.call(&["PING"]), "+PONG\r\n");
    drop(unix);
    assert!(server.terminate().success());
    assert!(!path.exists(), "the socket file outlived the server");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unix_clients_pass_protected_mode() {
    let dir = unique_dir("unixsock-protected");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let server = TestServer::start(
        BIN,
        &[
            "--unixsocket",
            path.to_str().unwrap(),
            "--protected-mode",
            "yes",
        ],
    );
    // 127.0.0.2 stands in for a remote client: refused without a password.
    let mut remote = server.raw_from("127.0.0.2".parse().unwrap());
    assert!(text(remote.read_to_close()).starts_with("-DENIED"));
    let mut unix = UnixConn::connect(&path);
    assert_eq!(unix.call(&["PING"]), "+PONG\r\n");
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_set_port_rebinds_and_keeps_existing_clients() {
    let server = TestServer::start(BIN, &[]);
    let old = server.addr;
    let mut existing = server.raw();
    let port = forkless_tests::free_port();
    assert_eq!(
        text(existing.call(&[b"CONFIG", b"SET", b"port", port.to_string().as_bytes()])),
        "+OK\r\n"
    );
    let new: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut fresh = RawConn::connect(new);
    assert_eq!(text(fresh.call(&[b"PING"])), "+PONG\r\n");
    assert!(
        wait_until(Duration::from_secs(10), || connect_refused(old)),
        "the old port still accepts"
    );
    assert_eq!(text(existing.call(&[b"PING"])), "+PONG\r\n");
    let info = text(fresh.call(&[b"INFO", b"server"]));
    assert!(info.contains(&format!("tcp_port:{port}\r\n")), "{info}");
    assert_eq!(
        text(fresh.call(&[b"CONFIG", b"GET", b"port"])),
        format!(
            "*2\r\n$4\r\nport\r\n${}\r\n{port}\r\n",
            port.to_string().len()
        )
    );
}

#[test]
fn config_set_port_on_a_taken_port_fails_and_rolls_back() {
    let server = TestServer::start(BIN, &[]);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let mut conn = server.raw();
    let before = text(conn.call(&[b"CONFIG", b"GET", b"maxmemory"]));
    assert_eq!(
        text(conn.call(&[
            b"CONFIG",
            b"SET",
            b"maxmemory",
            b"10000001",
            b"port",
            taken_port.as_bytes(),
            b"client-query-buffer-limit",
            b"10mb",
        ])),
        "-ERR CONFIG SET failed (possibly related to argument 'port') - Unable to listen on this \
         port. Check server logs.\r\n"
    );
    assert_eq!(text(conn.call(&[b"CONFIG", b"GET", b"maxmemory"])), before);
    assert_eq!(
        text(conn.call(&[b"CONFIG", b"GET", b"port"])),
        "*2\r\n$4\r\nport\r\n$1\r\n0\r\n"
    );
    // The old listener still serves.
    let mut fresh = server.raw();
    assert_eq!(text(fresh.call(&[b"PING"])), "+PONG\r\n");
}

#[test]
fn config_set_bind_adds_and_drops_addresses_on_the_same_port() {
    let server = TestServer::start(BIN, &[]);
    let port = server.port();
    let second = SocketAddr::from(([127, 0, 0, 3], port));
    let mut conn = server.raw();
    assert_eq!(
        text(conn.call(&[b"CONFIG", b"SET", b"bind", b"127.0.0.1 127.0.0.3"])),
        "+OK\r\n"
    );
    assert_eq!(text(RawConn::connect(second).call(&[b"PING"])), "+PONG\r\n");
    assert_eq!(text(server.raw().call(&[b"PING"])), "+PONG\r\n");

    // A bind that fails (the address is taken on this port) leaves both listening.
    let taken = TcpListener::bind(SocketAddr::from(([127, 0, 0, 4], port))).unwrap();
    assert_eq!(
        text(conn.call(&[b"CONFIG", b"SET", b"bind", b"127.0.0.1 127.0.0.4"])),
        "-ERR CONFIG SET failed (possibly related to argument 'bind') - Failed to bind to \
         specified addresses.\r\n"
    );
    drop(taken);
    assert_eq!(text(RawConn::connect(second).call(&[b"PING"])), "+PONG\r\n");
    assert_eq!(
        text(conn.call(&[b"CONFIG", b"GET", b"bind"])),
        "*2\r\n$4\r\nbind\r\n$19\r\n127.0.0.1 127.0.0.3\r\n"
    );

    assert_eq!(
        text(conn.call(&[b"CONFIG", b"SET", b"bind", b"127.0.0.3"])),
        "+OK\r\n"
    );
    assert!(
        wait_until(Duration::from_secs(10), || connect_refused(server.addr)),
        "127.0.0.1 still accepts"
    );
    assert_eq!(text(RawConn::connect(second).call(&[b"PING"])), "+PONG\r\n");
    // The connection made over 127.0.0.1 before stays.
    assert_eq!(text(conn.call(&[b"PING"])), "+PONG\r\n");
}

#[test]
fn a_replica_connects_from_bind_source_addr() {
    let primary = TestServer::start(BIN, &["--protected-mode", "no"]);
    let port = primary.port().to_string();
    let _replica = TestServer::start(
        BIN,
        &[
            "--bind-source-addr",
            "127.0.0.2",
            "--replicaof",
            "127.0.0.1",
            &port,
        ],
    );
    let mut conn = primary.raw();
    let mut list = String::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            list = text(conn.call(&[b"CLIENT", b"LIST", b"TYPE", b"replica"]));
            list.contains("addr=")
        }),
        "no replica connected"
    );
    assert!(list.contains("addr=127.0.0.2:"), "{list}");
}
