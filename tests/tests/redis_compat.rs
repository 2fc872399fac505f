//! Differential replay: every command of `tests/cases/*.txt` goes to Debian's real
//! `redis-server` (7.0) and to forkless over raw RESP2, and the two replies must be identical,
//! type and value. This is the Rust form of the `resp-diff` tool the case files were written
//! for, so a reply that drifts from Redis's fails `cargo test` instead of waiting for someone to
//! rerun the tool by hand.
//!
//! Case-file lines are shlex-quoted words (Python's `shlex.split`, POSIX mode):
//!
//! - `CMD args...`: the replies must be identical;
//! - `~ CMD args...`: only the reply's type (and an array's length) must match;
//! - `sorted CMD args...`: arrays are compared as multisets;
//! - `# comment` lines and blank lines are ignored.
//!
//! One test per case file, each with its own pair of fresh servers and one connection to each,
//! replaying the lines in order. Every mismatch of a file is reported in one assertion. Without
//! `redis-server` on PATH the tests print a loud skip line and pass, unless
//! FORKLESS_REQUIRE_REDIS=1.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use forkless_protocol::{Frame, Limits, decode_frame};
use forkless_tests::{TestServer, redis_tool, unique_dir};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

/// The case files this test replays; [`every_case_file_is_replayed`] keeps it complete.
const CASE_FILES: [&str; 16] = [
    "strings.txt",
    "keys.txt",
    "server.txt",
    "lists.txt",
    "zsets.txt",
    "hashes.txt",
    "sets.txt",
    "bitmaps.txt",
    "sort.txt",
    "lcs.txt",
    "swapdb.txt",
    "encodings.txt",
    "hyperloglog.txt",
    "geo.txt",
    "streams.txt",
    "acl.txt",
];

/// How long one reply may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `redis-server` may take to answer PING.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How much of a reply a mismatch message shows.
const SHOW_CHARS: usize = 300;

#[test]
fn acl() {
    replay("acl.txt");
}

#[test]
fn strings() {
    replay("strings.txt");
}

#[test]
fn keys() {
    replay("keys.txt");
}

#[test]
fn server() {
    replay("server.txt");
}

#[test]
fn lists() {
    replay("lists.txt");
}

#[test]
fn zsets() {
    replay("zsets.txt");
}

#[test]
fn hashes() {
    replay("hashes.txt");
}

#[test]
fn sets() {
    replay("sets.txt");
}

#[test]
fn bitmaps() {
    replay("bitmaps.txt");
}

#[test]
fn sort() {
    replay("sort.txt");
}

#[test]
fn lcs() {
    replay("lcs.txt");
}

#[test]
fn swapdb() {
    replay("swapdb.txt");
}

#[test]
fn hyperloglog() {
    replay("hyperloglog.txt");
}

#[test]
fn geo() {
    replay("geo.txt");
}

#[test]
fn streams() {
    replay("streams.txt");
}

/// A new case file must get its own test above.
#[test]
fn every_case_file_is_replayed() {
    let mut found: Vec<String> = std::fs::read_dir(cases_dir())
        .expect("read tests/cases")
        .map(|entry| entry.expect("dir entry").file_name())
        .filter_map(|name| name.into_string().ok())
        .filter(|name| name.ends_with(".txt"))
        .collect();
    found.sort();
    let mut listed: Vec<&str> = CASE_FILES.to_vec();
    listed.sort_unstable();
    assert_eq!(found, listed, "tests/cases/*.txt and CASE_FILES differ");
}

/// Every line of every case file parses (the parse itself is checked against Python below).
#[test]
fn case_files_parse() {
    for file in CASE_FILES {
        let source = std::fs::read_to_string(cases_dir().join(file)).expect("read case file");
        let cases = parse_cases(file, &source);
        assert!(!cases.is_empty(), "{file} has no commands");
    }
}

/// Lines whose expected words come from Python 3.11's `shlex.split`.
#[test]
fn shlex_split_matches_python() {
    let ok: &[(&str, &[&str])] = &[
        (
            r#"SET "key with spaces" "value with\nnewline""#,
            &["SET", "key with spaces", r"value with\nnewline"],
        ),
        (r"KEYS 'x\\y'", &["KEYS", r"x\\y"]),
        (r"SET 'x\y' v", &["SET", r"x\y", "v"]),
        (r#"a"b c"d"#, &["ab cd"]),
        (r#"x "" '' y"#, &["x", "", "", "y"]),
        (r#"a\ b \"q\" \\ \n"#, &["a b", "\"q\"", "\\", "n"]),
        (r#"" \" \\ \$ ""#, &[r#" " \ \$ "#]),
        (r#"'it'"'"'s'"#, &["it's"]),
        ("tab\tsep  multi   space", &["tab", "sep", "multi", "space"]),
        (r#"'a"b' "a'b" "#, &["a\"b", "a'b"]),
        ("# not a comment", &["#", "not", "a", "comment"]),
        ("a#b", &["a#b"]),
        (r#"""''x"#, &["x"]),
        ("", &[]),
    ];
    for (line, words) in ok {
        let expected: Vec<String> = words.iter().map(|word| (*word).to_owned()).collect();
        assert_eq!(shlex_split(line), Ok(expected), "{line:?}");
    }
    for (line, error) in [
        ("\"open", "No closing quotation"),
        ("'open", "No closing quotation"),
        ("trail\\", "No escaped character"),
        ("\"trail\\", "No escaped character"),
    ] {
        assert_eq!(shlex_split(line), Err(error), "{line:?}");
    }
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cases")
}

/// Replays one case file against a fresh `redis-server` and a fresh forkless, and asserts that
/// no reply differs.
fn replay(file: &str) {
    let source = std::fs::read_to_string(cases_dir().join(file)).expect("read case file");
    let cases = parse_cases(file, &source);
    let Some(redis_server) = redis_tool("redis-server") else {
        return;
    };
    let reference = RedisServer::start(&redis_server);
    let forkless = TestServer::start(BIN, &["--save", ""]);
    let mut redis = Conn::new(reference.addr);
    let mut ours = Conn::new(forkless.addr);

    let mut passed = 0;
    let mut mismatches = Vec::new();
    for case in &cases {
        let a = redis.call(&case.words);
        let b = ours.call(&case.words);
        if replies_match(case.mode, &a, &b) {
            passed += 1;
        } else {
            let (a, b) = show_pair(&a, &b);
            mismatches.push(format!(
                "MISMATCH {file}:{}: {}\n   redis:    {a}\n   forkless: {b}",
                case.line_no, case.text
            ));
        }
    }
    let failed = mismatches.len();
    println!("{file}: {passed} passed, {failed} failed");
    assert!(
        mismatches.is_empty(),
        "{file}: {failed} of {} replies differ from redis-server's:\n{}\n{file}: {passed} passed, \
         {failed} failed",
        cases.len(),
        mismatches.join("\n")
    );
}

/// How a case's two replies are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Identical type and value.
    Exact,
    /// `~`: the same type, and for arrays the same length.
    Shape,
    /// `sorted`: arrays equal as multisets; anything else exactly.
    Sorted,
}

/// One command line of a case file.
#[derive(Debug)]
struct Case {
    /// 1-based line number in the file.
    line_no: usize,
    /// The line without its mode prefix, for messages.
    text: String,
    mode: Mode,
    words: Vec<String>,
}

/// Parses a case file; panics naming the line if one does not split.
fn parse_cases(file: &str, source: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for (index, raw) in source.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (mode, text) = if let Some(rest) = line.strip_prefix("~ ") {
            (Mode::Shape, rest)
        } else if let Some(rest) = line.strip_prefix("sorted ") {
            (Mode::Sorted, rest)
        } else {
            (Mode::Exact, line)
        };
        let line_no = index + 1;
        let words =
            shlex_split(text).unwrap_or_else(|error| panic!("{file}:{line_no}: {error}: {line}"));
        cases.push(Case {
            line_no,
            text: text.to_owned(),
            mode,
            words,
        });
    }
    cases
}

/// Splits `line` into words as Python's `shlex.split(line)` does (POSIX mode, no comments):
/// words end at unquoted space, tab, CR or LF; outside quotes a backslash takes the next
/// character literally; inside single quotes everything is literal; inside double quotes a
/// backslash escapes only `"` and `\` and is kept before anything else. Quotes join with their
/// neighbours into one word, and `""` alone is an empty word. The errors are Python's messages.
fn shlex_split(line: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Whether a word has started (so that `""` gives an empty word).
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().ok_or("No escaped character")?);
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next().ok_or("No closing quotation")? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next().ok_or("No closing quotation")? {
                        '"' => break,
                        '\\' => match chars.next().ok_or("No escaped character")? {
                            c @ ('"' | '\\') => word.push(c),
                            c => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        c => word.push(c),
                    }
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// What one side answered to one command.
enum Reply {
    Frame(Frame),
    /// The server closed the connection before replying.
    Closed,
    /// Writing, reading or decoding failed (a timeout, a malformed reply). Never matches.
    Failed(String),
}

fn replies_match(mode: Mode, a: &Reply, b: &Reply) -> bool {
    match (a, b) {
        (Reply::Frame(a), Reply::Frame(b)) => match mode {
            Mode::Exact => a == b,
            Mode::Shape => shape(a) == shape(b),
            Mode::Sorted => match (a, b) {
                (Frame::Array(a), Frame::Array(b)) => multiset(a) == multiset(b),
                _ => a == b,
            },
        },
        (Reply::Closed, Reply::Closed) => true,
        _ => false,
    }
}

/// A frame's type, and for an array its length.
fn shape(frame: &Frame) -> (std::mem::Discriminant<Frame>, Option<usize>) {
    let len = match frame {
        Frame::Array(items) => Some(items.len()),
        _ => None,
    };
    (std::mem::discriminant(frame), len)
}

/// An array's elements in a canonical order, as their debug text (as `resp-diff` sorts `repr`s).
fn multiset(items: &[Frame]) -> Vec<String> {
    let mut shown: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
    shown.sort();
    shown
}

/// The two replies of a mismatch as text, each cut to [`SHOW_CHARS`] characters; when they
/// agree for longer than that, both start a little before the first character that differs.
fn show_pair(a: &Reply, b: &Reply) -> (String, String) {
    let (a, b) = (show(a), show(b));
    let same = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let skip = (same + CONTEXT_CHARS).saturating_sub(SHOW_CHARS);
    (cut(&a, skip), cut(&b, skip))
}

/// Characters of common text kept before the first difference.
const CONTEXT_CHARS: usize = 60;

fn show(reply: &Reply) -> String {
    match reply {
        Reply::Frame(frame) => format!("{frame:?}"),
        Reply::Closed => "connection closed".to_owned(),
        Reply::Failed(error) => format!("failed: {error}"),
    }
}

/// `text` without its first `skip` characters, and at most [`SHOW_CHARS`] of the rest.
fn cut(text: &str, skip: usize) -> String {
    let rest: String = text.chars().skip(skip).collect();
    let head = if skip > 0 { "..." } else { "" };
    match rest.char_indices().nth(SHOW_CHARS) {
        Some((end, _)) => format!("{head}{}...", &rest[..end]),
        None => format!("{head}{rest}"),
    }
}

/// A raw RESP2 connection that reports failures as [`Reply`]s instead of panicking, and
/// reconnects on the next call after one.
struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    /// Bytes read but not yet decoded.
    buf: Vec<u8>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            stream: None,
            buf: Vec::new(),
        }
    }

    fn call(&mut self, words: &[String]) -> Reply {
        let reply = self.try_call(words);
        if !matches!(reply, Reply::Frame(_)) {
            self.stream = None;
            self.buf.clear();
        }
        reply
    }

    fn try_call(&mut self, words: &[String]) -> Reply {
        if self.stream.is_none() {
            match TcpStream::connect(self.addr) {
                Ok(stream) => {
                    if let Err(error) = stream.set_read_timeout(Some(REPLY_TIMEOUT)) {
                        return Reply::Failed(format!("set timeout: {error}"));
                    }
                    self.stream = Some(stream);
                }
                Err(error) => return Reply::Failed(format!("connect: {error}")),
            }
        }
        let Some(stream) = self.stream.as_mut() else {
            return Reply::Failed("not connected".to_owned());
        };
        let mut out = format!("*{}\r\n", words.len()).into_bytes();
        for word in words {
            out.extend_from_slice(format!("${}\r\n", word.len()).as_bytes());
            out.extend_from_slice(word.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if let Err(error) = stream.write_all(&out) {
            return Reply::Failed(format!("write: {error}"));
        }
        let limits = Limits::default();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match decode_frame(&self.buf, &limits) {
                Ok(Some((frame, used))) => {
                    self.buf.drain(..used);
                    return Reply::Frame(frame);
                }
                Ok(None) => {}
                Err(error) => {
                    return Reply::Failed(format!(
                        "bad reply ({error}): {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ));
                }
            }
            match stream.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return Reply::Closed,
                Ok(0) => {
                    return Reply::Failed(format!(
                        "closed mid-reply: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(error) => return Reply::Failed(format!("read: {error}")),
            }
        }
    }
}

/// Debian's `redis-server` on a free loopback port, with no persistence; killed when dropped.
struct RedisServer {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts `binary` and waits until it answers PING. A free port found by binding port 0 may
    /// be taken again before redis-server binds it, so a server that exits is retried on a new
    /// port.
    fn start(binary: &Path) -> RedisServer {
        const ATTEMPTS: usize = 3;
        let mut log = String::new();
        for _ in 0..ATTEMPTS {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|listener| listener.local_addr())
                .expect("find a free port")
                .port();
            let dir = unique_dir("redis-reference");
            let logfile = dir.join("redis.log");
            let child = Command::new(binary)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(&dir)
                .arg("--logfile")
                .arg(&logfile)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn redis-server");
            let mut server = RedisServer {
                child,
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                dir,
            };
            if server.wait_ready() {
                return server;
            }
            log = std::fs::read_to_string(&logfile).unwrap_or_default();
        }
        panic!("redis-server did not answer PING in {ATTEMPTS} attempts; last log:\n{log}");
    }

    /// Polls PING until it gives `+PONG`; false if the process exits or time runs out.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if self.child.try_wait().expect("poll redis-server").is_some() {
                return false;
            }
            let mut conn = Conn::new(self.addr);
            if let Reply::Frame(Frame::Simple(pong)) = conn.call(&["PING".to_owned()]) {
                if &pong[..] == b"PONG" {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
