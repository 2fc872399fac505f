//! Harness for the end-to-end tests: starts the real `forkless-server` binary on a free port and
//! hands out clients.
//!
//! The binary is named by the test itself (`env!("CARGO_BIN_EXE_forkless-server")`, available in
//! this crate's integration tests) and passed to [`TestServer::start`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a server may take to say it is ready.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running server process; killed when dropped.
pub struct TestServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Lines the server printed after its ready line, for tests that check the log.
    log: mpsc::Receiver<String>,
    /// A private directory for its files, removed when dropped unless the caller owns it
    /// ([`TestServer::start_in`]).
    pub dir: PathBuf,
    /// Whether dropping this server removes `dir`.
    owns_dir: bool,
}

impl TestServer {
    /// Starts `binary --port 0 --dir <fresh dir> <args...>` and waits until it listens.
    pub fn start(binary: &str, args: &[&str]) -> TestServer {
        let dir = unique_dir("server");
        let mut command = Command::new(binary);
        command.args(["--port", "0", "--dir"]).arg(&dir).args(args);
        Self::spawn(command, dir)
    }

    /// Starts `binary` with exactly `args` (the caller controls `--port` and the config file);
    /// waits until it listens.
    pub fn start_raw(binary: &str, args: &[&str], dir: PathBuf) -> TestServer {
        let mut command = Command::new(binary);
        command.args(args);
        Self::spawn(command, dir)
    }

    /// Starts `binary --port 0 --dir <fresh dir> <args...>` with `envs` added to its
    /// environment (see [`TestServer::start_in`] for the writer hooks).
    pub fn start_with_env(binary: &str, args: &[&str], envs: &[(&str, &str)]) -> TestServer {
        let mut server = Self::start_in(binary, &unique_dir("server"), args, envs);
        server.owns_dir = true;
        server
    }

    /// Starts `binary --port 0 --dir <dir> <args...>` in an existing directory that the caller
    /// owns: it is not removed when the server is dropped, so a test can restart a server on
    /// the same files. `envs` are added to the environment; the writer hooks
    /// `FORKLESS_FAULT_INJECT` and `FORKLESS_DISABLE_IO_URING` are first removed from the
    /// inherited environment, so that only `envs` decides them.
    pub fn start_in(binary: &str, dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> TestServer {
        let mut command = Command::new(binary);
        command
            .env_remove("FORKLESS_FAULT_INJECT")
            .env_remove("FORKLESS_DISABLE_IO_URING")
            .envs(envs.iter().copied())
            .args(["--port", "0", "--dir"])
            .arg(dir)
            .args(args);
        let mut server = Self::spawn(command, dir.to_path_buf());
        server.owns_dir = false;
        server
    }

    /// The server's process id (for `kill -9`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn spawn(mut command: Command, dir: PathBuf) -> TestServer {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn forkless-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.split("Ready to accept connections tcp on ").nth(1) {
                        let addr = addr.trim().parse().expect("ready line names an address");
                        return TestServer {
                            child,
                            addr,
                            log: rx,
                            dir,
                            owns_dir: true,
                        };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    panic!("server did not become ready (exit status {status:?})");
                }
            }
        }
    }

    /// The `redis://` URL of this server.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// A connection through the `redis` crate.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .expect("connect to forkless-server")
    }

    /// A raw TCP connection, for exact-byte tests.
    pub fn raw(&self) -> RawConn {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set timeout");
        RawConn {
            stream,
            pending: Vec::new(),
        }
    }

    /// A raw TCP connection whose source address is `source` (127.0.0.2 stands in for a remote
    /// client: Redis treats only 127.0.0.1 and ::1 as local).
    pub fn raw_from(&self, source: std::net::IpAddr) -> RawConn {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(self.addr),
            socket2::Type::STREAM,
            None,
        )
        .expect("socket");
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .expect("bind the source address");
        socket.connect(&self.addr.into()).expect("connect");
        let stream: TcpStream = socket.into();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set timeout");
        RawConn {
            stream,
            pending: Vec::new(),
        }
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Waits (up to 10 s) for a log line containing `needle`, returning it.
    pub fn wait_for_log(&self, needle: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// The log lines printed since the last call (or the last [`TestServer::wait_for_log`]),
    /// for a failure message.
    pub fn drain_log(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }

    /// Sends SIGTERM and waits for the process to exit, returning its exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.wait_exit()
    }

    /// Waits (up to 20 s) for the process to exit on its own.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("server did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A fresh, empty directory under the system temp dir, unique per call.
pub fn unique_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("forkless-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    dir
}

/// A raw RESP connection.
pub struct RawConn {
    stream: TcpStream,
    /// Bytes read past the last reply returned (a pipelined or pushed reply that came with it).
    pending: Vec<u8>,
}

impl RawConn {
    /// Connects to any RESP server on `addr` (a real redis-server started by a test).
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set timeout");
        RawConn {
            stream,
            pending: Vec::new(),
        }
    }

    /// Writes bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends a command as a RESP array of bulk strings.
    pub fn send_command(&mut self, args: &[&[u8]]) {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        self.send(&out);
    }

    /// Reads exactly one reply frame and returns its raw bytes.
    pub fn read_reply(&mut self) -> Vec<u8> {
        let limits = forkless_protocol::Limits::default();
        let mut chunk = [0u8; 4096];
        loop {
            if let Ok(Some((_, used))) = forkless_protocol::decode_frame(&self.pending, &limits) {
                let rest = self.pending.split_off(used);
                return std::mem::replace(&mut self.pending, rest);
            }
            let n = self.stream.read(&mut chunk).expect("read reply");
            assert!(
                n > 0,
                "connection closed; got so far {:?}",
                String::from_utf8_lossy(&self.pending)
            );
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a command and returns the raw reply.
    pub fn call(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send_command(args);
        let reply = self.read_reply();
        assert!(
            self.pending.is_empty(),
            "more than one reply arrived: {:?} then {:?}",
            String::from_utf8_lossy(&reply),
            String::from_utf8_lossy(&self.pending)
        );
        reply
    }

    /// The underlying stream, for tests that need socket-level control.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Reads until the server closes the connection, returning everything it sent.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.pending);
        let _ = self.stream.read_to_end(&mut buf);
        buf
    }
}

/// Finds a Redis tool (redis-cli, redis-server, redis-check-rdb). When it is missing: with
/// FORKLESS_REQUIRE_REDIS=1 (set by CI) the test fails; otherwise it prints a loud skip line and
/// returns None.
pub fn redis_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| is_executable(path))
    });
    if found.is_none() {
        if std::env::var("FORKLESS_REQUIRE_REDIS").as_deref() == Ok("1") {
            panic!("{name} is required (FORKLESS_REQUIRE_REDIS=1) but not on PATH");
        }
        eprintln!(
            "!!!!! SKIPPING: {name} not found on PATH (apt-get install redis-tools redis-server) !!!!!"
        );
    }
    found
}

/// Finds a system tool (`ss`, from iproute2) on PATH. When it is missing: with
/// FORKLESS_REQUIRE_REDIS=1 (set by CI, which installs the test dependencies) the test fails;
/// otherwise it prints a loud skip line and returns None.
pub fn system_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| is_executable(path))
    });
    if found.is_none() {
        if std::env::var("FORKLESS_REQUIRE_REDIS").as_deref() == Ok("1") {
            panic!("{name} is required (FORKLESS_REQUIRE_REDIS=1) but not on PATH");
        }
        eprintln!("!!!!! SKIPPING: {name} not found on PATH !!!!!");
    }
    found
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Polls `condition` every 5 ms until it holds or `timeout` passes; returns whether it held.
/// For conditions that have no event to wait on (a key expiring in the server).
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A directory a test owns, so that servers can be restarted on the same files; removed on drop.
pub struct TestDir(pub PathBuf);

impl TestDir {
    /// A fresh, empty directory (see [`unique_dir`]).
    pub fn new(tag: &str) -> TestDir {
        TestDir(unique_dir(tag))
    }

    /// `dump.rdb` in it.
    pub fn dump(&self) -> PathBuf {
        self.0.join("dump.rdb")
    }

    /// The names of the files in it, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .expect("read dir")
            .map(|entry| {
                entry
                    .expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    /// The snapshot temp files (`temp-*`) in it.
    pub fn temp_files(&self) -> Vec<String> {
        self.files()
            .into_iter()
            .filter(|name| name.starts_with("temp-"))
            .collect()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (and reaped) when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// Deterministic incompressible bytes (xorshift64), so that a dump is as big as its data.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// Writes keys `<prefix><i>` for i in 0..n, each with `value_len` bytes of [`noise`] seeded by
/// `i`, with MSETs of 500 keys.
pub fn populate(conn: &mut redis::Connection, prefix: &str, n: usize, value_len: usize) {
    for start in (0..n).step_by(500) {
        let mut cmd = redis::cmd("MSET");
        for i in start..n.min(start + 500) {
            cmd.arg(format!("{prefix}{i}"))
                .arg(noise(i as u64, value_len));
        }
        let () = cmd.query(conn).expect("MSET");
    }
}

/// Every `field:value` line of one INFO section.
pub fn info_section(
    conn: &mut redis::Connection,
    section: &str,
) -> std::collections::HashMap<String, String> {
    let text: String = redis::cmd("INFO").arg(section).query(conn).expect("INFO");
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Starts Debian's `redis-server` (the binary at `redis_server`) on `dir/dump.rdb`, persistence
/// off, and waits until it has loaded the file and answers PING (it replies -LOADING before).
/// Returns the process (killed on drop) and a connection.
pub fn start_real_redis_on(redis_server: &Path, dir: &Path) -> (ChildGuard, redis::Connection) {
    let port = free_port();
    let guard = ChildGuard(
        Command::new(redis_server)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(dir)
            .args([
                "--dbfilename",
                "dump.rdb",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server"),
    );
    let url = format!("redis://127.0.0.1:{port}/");
    let mut real = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            let Ok(mut c) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection())
            else {
                return false;
            };
            let ready = redis::cmd("PING").query::<String>(&mut c).is_ok();
            if ready {
                real = Some(c);
            }
            ready
        }),
        "redis-server did not start on port {port}"
    );
    (guard, real.expect("connected"))
}

pub mod replication;

/// Raw-RESP helpers for the command tests: send a command, and spell the replies Redis gives.
pub mod resp {
    use crate::RawConn;

    /// Redis's reply to a command on a key of another type.
    pub const WRONGTYPE: &str =
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
    /// The RESP2 null bulk string.
    pub const NIL: &str = "$-1\r\n";

    /// Sends a command given as space-separated words and returns the raw reply as text.
    pub fn cmd(conn: &mut RawConn, line: &str) -> String {
        let args: Vec<&[u8]> = line.split_whitespace().map(str::as_bytes).collect();
        String::from_utf8_lossy(&conn.call(&args)).into_owned()
    }

    /// Sends a command given as byte arguments and returns the raw reply as text.
    pub fn call(conn: &mut RawConn, args: &[&[u8]]) -> String {
        String::from_utf8_lossy(&conn.call(args)).into_owned()
    }

    /// Sends a command given as space-separated words without reading its reply (a command
    /// that blocks, or one whose reply is read later with [`reply`]).
    pub fn send(conn: &mut RawConn, line: &str) {
        let args: Vec<&[u8]> = line.split_whitespace().map(str::as_bytes).collect();
        conn.send_command(&args);
    }

    /// Reads the next reply on the connection as text.
    pub fn reply(conn: &mut RawConn) -> String {
        String::from_utf8_lossy(&conn.read_reply()).into_owned()
    }

    /// Waits until the server reports `n` blocked clients (INFO clients), so a write sent next
    /// is sure to find them blocked; fails the test after 10 s.
    pub fn wait_blocked(admin: &mut RawConn, n: usize) {
        let needle = format!("blocked_clients:{n}\r\n");
        assert!(
            crate::wait_until(std::time::Duration::from_secs(10), || cmd(
                admin,
                "INFO clients"
            )
            .contains(&needle)),
            "never saw {n} blocked clients"
        );
    }

    /// A bulk string reply.
    pub fn bulk(value: &str) -> String {
        format!("${}\r\n{value}\r\n", value.len())
    }

    /// A RESP2 array of bulk strings.
    pub fn bulks(values: &[&str]) -> String {
        let mut out = format!("*{}\r\n", values.len());
        for value in values {
            out.push_str(&bulk(value));
        }
        out
    }

    /// An integer reply.
    pub fn int(n: i64) -> String {
        format!(":{n}\r\n")
    }

    /// An error reply with this text.
    pub fn err(msg: &str) -> String {
        format!("-{msg}\r\n")
    }
}
