//! The real `redis-cli` and `redis-benchmark` (Debian's redis-tools) against forkless: one-shot
//! commands, `--no-raw`, `-n`, `--scan`, `--pipe`, an interactive session (which loads
//! COMMAND DOCS for its help and hints), and a short benchmark. Each test prints a loud skip
//! line and returns when the tool is missing, unless FORKLESS_REQUIRE_REDIS=1.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use forkless_tests::{TestServer, redis_tool};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

/// Runs `redis-cli -p PORT args...` with `stdin` as its input; asserts it succeeds and returns
/// its standard output.
fn cli_with_input(cli: &Path, server: &TestServer, args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new(cli)
        .args(["-p", &server.port().to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn redis-cli");
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&stdin));
    let output = child.wait_with_output().expect("redis-cli output");
    writer
        .join()
        .expect("stdin writer")
        .expect("write redis-cli stdin");
    assert!(
        output.status.success(),
        "redis-cli {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

fn cli(cli: &Path, server: &TestServer, args: &[&str]) -> String {
    cli_with_input(cli, server, args, b"")
}

#[test]
fn one_shot_commands() {
    let Some(redis_cli) = redis_tool("redis-cli") else {
        return;
    };
    let server = TestServer::start(BIN, &[]);
    assert_eq!(cli(&redis_cli, &server, &["ping"]), "PONG\n");
    assert_eq!(cli(&redis_cli, &server, &["set", "k", "v"]), "OK\n");
    assert_eq!(cli(&redis_cli, &server, &["get", "k"]), "v\n");
    assert_eq!(
        cli(&redis_cli, &server, &["--no-raw", "get", "k"]),
        "\"v\"\n"
    );
    assert_eq!(
        cli(&redis_cli, &server, &["--no-raw", "get", "missing"]),
        "(nil)\n"
    );
    assert_eq!(
        cli(&redis_cli, &server, &["--no-raw", "dbsize"]),
        "(integer) 1\n"
    );
    assert_eq!(
        cli(
            &redis_cli,
            &server,
            &["--no-raw", "config", "get", "maxclients"]
        ),
        "1) \"maxclients\"\n2) \"10000\"\n"
    );
    assert_eq!(
        cli(&redis_cli, &server, &["--no-raw", "flushdb", "bogus"]),
        "(error) ERR syntax error\n"
    );

    let info = cli(&redis_cli, &server, &["info", "server"]);
    assert!(
        info.starts_with("# Server\r\nredis_version:7.0.15\r\n"),
        "{info}"
    );
    assert!(
        info.contains(&format!("\r\ntcp_port:{}\r\n", server.port())),
        "{info}"
    );

    assert_eq!(
        cli(&redis_cli, &server, &["-n", "3", "set", "in3", "x"]),
        "OK\n"
    );
    assert_eq!(cli(&redis_cli, &server, &["-n", "3", "dbsize"]), "1\n");
    assert_eq!(cli(&redis_cli, &server, &["-n", "4", "dbsize"]), "0\n");
    assert_eq!(cli(&redis_cli, &server, &["dbsize"]), "1\n");
}

#[test]
fn scan_with_a_pattern() {
    let Some(redis_cli) = redis_tool("redis-cli") else {
        return;
    };
    let server = TestServer::start(BIN, &[]);
    let mut expected = Vec::new();
    let mut commands = String::new();
    for key_idx in 0..300 {
        commands.push_str(&format!("SET k{key_idx} v\nSET other{key_idx} v\n"));
        expected.push(format!("k{key_idx}"));
    }
    // Without a terminal, redis-cli reads one command per line from standard input.
    let replies = cli_with_input(&redis_cli, &server, &[], commands.as_bytes());
    assert_eq!(replies, "OK\n".repeat(600));

    let scanned = cli(&redis_cli, &server, &["--scan", "--pattern", "k*"]);
    let mut keys: Vec<String> = scanned.lines().map(str::to_string).collect();
    keys.sort();
    expected.sort();
    assert_eq!(keys, expected);
}

#[test]
fn pipe_mode_loads_many_commands() {
    let Some(redis_cli) = redis_tool("redis-cli") else {
        return;
    };
    let server = TestServer::start(BIN, &[]);
    let mut protocol = Vec::new();
    for key_idx in 0..10_000 {
        let key = format!("key:{key_idx}");
        let value = format!("value:{key_idx}");
        protocol.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                key.len(),
                value.len()
            )
            .as_bytes(),
        );
    }
    let report = cli_with_input(&redis_cli, &server, &["--pipe"], &protocol);
    assert!(report.contains("errors: 0, replies: 10000"), "{report}");
    assert_eq!(cli(&redis_cli, &server, &["dbsize"]), "10000\n");
    assert_eq!(
        cli(&redis_cli, &server, &["get", "key:9999"]),
        "value:9999\n"
    );
}

/// An interactive session through a pseudo-terminal made by `script` (util-linux). At startup
/// redis-cli fetches COMMAND DOCS and asserts on its shape; `help <command>` then shows what
/// it loaded.
#[test]
fn interactive_session_loads_command_docs() {
    let Some(redis_cli) = redis_tool("redis-cli") else {
        return;
    };
    let Some(script) = find_on_path("script") else {
        eprintln!("!!!!! SKIPPING: script (util-linux) not found on PATH !!!!!");
        return;
    };
    let server = TestServer::start(BIN, &[]);
    let shell_command = format!(
        "stty cols 200 rows 50; {} -p {}",
        redis_cli.display(),
        server.port()
    );
    let mut child = Command::new(script)
        .args(["-qec", &shell_command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn script");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut chunk) {
            if n == 0 || tx.send(chunk[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut terminal = Terminal {
        rx,
        seen: Vec::new(),
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    // linenoise discards typed-ahead input when it switches the terminal to raw mode, which it
    // does before printing each prompt: type only once the prompt is shown.
    let prompt = format!("127.0.0.1:{}> ", server.port());
    terminal.expect(&prompt);
    for (line, shown) in [
        (
            "help config get",
            "summary:\u{1b}[0m Get the values of configuration parameters",
        ),
        ("help dbsize", "group:\u{1b}[0m server"),
        ("set greeting hello", "\nOK"),
        ("get greeting", "\"hello\""),
        ("config get hz", "2) \"10\""),
    ] {
        stdin
            .write_all(format!("{line}\r").as_bytes())
            .expect("type a command");
        terminal.expect(shown);
        terminal.expect(&prompt);
    }
    stdin.write_all(b"quit\r").expect("type quit");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "redis-cli did not quit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

/// What a terminal session has printed, read as it arrives.
struct Terminal {
    rx: mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Terminal {
    /// Waits (up to 10 s) until `text` is printed, and forgets everything up to it.
    fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .seen
                .windows(text.len())
                .position(|window| window == text.as_bytes());
            if let Some(at) = found {
                self.seen.drain(..at + text.len());
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(chunk) => self.seen.extend_from_slice(&chunk),
                Err(_) => panic!(
                    "terminal never showed {text:?}; it shows {:?}",
                    String::from_utf8_lossy(&self.seen)
                ),
            }
        }
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
}

#[test]
fn benchmark_runs_set_and_get() {
    let Some(benchmark) = redis_tool("redis-benchmark") else {
        return;
    };
    let server = TestServer::start(BIN, &[]);
    let output = Command::new(benchmark)
        .args([
            "-p",
            &server.port().to_string(),
            "-t",
            "set,get",
            "-n",
            "2000",
            "-q",
        ])
        .output()
        .expect("run redis-benchmark");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = String::from_utf8_lossy(&output.stdout);
    // Lines look like "SET: 52631.58 requests per second, p50=0.463 msec"; the progress
    // updates before them are separated by carriage returns.
    for test in ["SET", "GET"] {
        let line = report
            .split(['\r', '\n'])
            .find(|line| {
                line.starts_with(&format!("{test}: ")) && line.contains("requests per second")
            })
            .unwrap_or_else(|| panic!("no {test} result in {report:?}"));
        let rps: f64 = line[test.len() + 2..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(rps > 0.0, "{line}");
    }
}
