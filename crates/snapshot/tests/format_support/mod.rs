//! Helpers shared by the `format_*` integration tests: building whole RDB files, loading them
//! into a map, the golden sidecar format, and running real Redis binaries.
#![allow(dead_code, reason = "each test binary uses a subset of these helpers")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use forkless_snapshot::format::{
    self, Checksum, EncodeOptions, LoadError, LoadSummary, LoadedEntry,
};
use forkless_storage::Value;

/// `(db, key) → (value, expiry)`: what a file holds, in a canonical order.
pub type Dataset = BTreeMap<(u32, Vec<u8>), (Vec<u8>, Option<u64>)>;

/// A fixed "now" for tests that do not care about the clock: 2024-01-01T00:00:00Z.
pub const NOW_MS: u64 = 1_704_067_200_000;

/// Encodes `data` as a complete RDB file (header, one SELECTDB/RESIZEDB per database, entries,
/// EOF and CRC-64), as the snapshot writer does.
pub fn encode_rdb(data: &Dataset, opts: &EncodeOptions) -> Vec<u8> {
    let mut out = Vec::new();
    format::write_header(&mut out, 1_700_000_000, 123_456, None);
    // The map is ordered by database first, so each database's keys are contiguous.
    let mut counts: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for ((db, _), (_, expire)) in data {
        let (n_keys, n_expires) = counts.entry(*db).or_default();
        *n_keys += 1;
        *n_expires += u64::from(expire.is_some());
    }
    let mut current_db = None;
    for ((db, key), (value, expire)) in data {
        if current_db != Some(*db) {
            let (n_keys, n_expires) = counts[db];
            format::write_db_header(&mut out, *db, n_keys, n_expires);
            current_db = Some(*db);
        }
        format::write_entry(&mut out, key, &Value::string(value), *expire, opts);
    }
    finish_rdb(out)
}

/// Appends the EOF opcode and the CRC-64 of everything before it.
pub fn finish_rdb(mut body: Vec<u8>) -> Vec<u8> {
    format::write_eof(&mut body);
    let mut checksum = Checksum::new();
    checksum.update(&body);
    body.extend_from_slice(&checksum.finish().to_le_bytes());
    body
}

/// The header forkless writes, for hand-built files.
pub fn header() -> Vec<u8> {
    let mut out = Vec::new();
    format::write_header(&mut out, 1_700_000_000, 123_456, None);
    out
}

/// Loads `reader` into a map, refusing duplicate keys as a server would (a corrupt file can
/// repeat a key before its checksum is reached), and refusing collections.
pub fn load_into(reader: impl Read, now_ms: u64) -> Result<(Dataset, LoadSummary), LoadError> {
    let mut data = Dataset::new();
    let summary = format::load(reader, "test.rdb", now_ms, |entry: LoadedEntry| {
        // Collections load too (random bytes can form one); a `Dataset` holds strings only,
        // so the files these helpers read must refuse them (`format_collections.rs` has its
        // own map for collections).
        let Value::String(value) = entry.value else {
            return Err(LoadError::rejected(format!(
                "{} where a Dataset holds only strings",
                entry.value.type_name()
            )));
        };
        match data.entry((entry.db, entry.key.to_vec())) {
            std::collections::btree_map::Entry::Occupied(_) => Err(LoadError::rejected(format!(
                "duplicate key {:?}",
                entry.key
            ))),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert((value.to_vec(), entry.expire_at_ms));
                Ok(())
            }
        }
    })?;
    Ok((data, summary))
}

/// `data` without the keys expired at `now_ms` (expiry strictly before it), as a loader sees it.
pub fn live_at(data: &Dataset, now_ms: u64) -> Dataset {
    data.iter()
        .filter(|(_, (_, expire))| expire.is_none_or(|at| at >= now_ms))
        .map(|(key, entry)| (key.clone(), entry.clone()))
        .collect()
}

/// Compresses `bytes` as two independent zstd frames split at `split`, concatenated, the way
/// the snapshot writer emits one frame per chunk.
pub fn zstd_two_frames(bytes: &[u8], split: usize) -> Vec<u8> {
    let split = split.min(bytes.len());
    let mut out = zstd::encode_all(&bytes[..split], 1).expect("zstd compresses");
    out.extend(zstd::encode_all(&bytes[split..], 3).expect("zstd compresses"));
    out
}

/// Path of a file under `crates/snapshot/testdata`.
pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

/// Parses a golden sidecar: `db TAB key-hex TAB value-hex TAB expiry-or-"-" TAB comment`,
/// where a hex field may be `<hex>*<count>` for a repeated pattern; `#` lines are comments.
pub fn read_sidecar(path: &Path) -> Dataset {
    let text = std::fs::read_to_string(path).expect("sidecar is readable");
    let mut data = Dataset::new();
    for line in text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
    {
        let fields: Vec<&str> = line.split('\t').collect();
        assert!(fields.len() >= 4, "bad sidecar line {line:?}");
        let db = fields[0].parse().expect("db is a number");
        let expire = match fields[3] {
            "-" => None,
            ms => Some(ms.parse().expect("expiry is a number")),
        };
        let previous = data.insert((db, unhex(fields[1])), (unhex(fields[2]), expire));
        assert!(previous.is_none(), "duplicate sidecar line {line:?}");
    }
    data
}

fn unhex(field: &str) -> Vec<u8> {
    let (pattern, count) = match field.split_once('*') {
        Some((pattern, count)) => (pattern, count.parse().expect("repeat count")),
        None => (field, 1),
    };
    let bytes: Vec<u8> = (0..pattern.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&pattern[i..i + 2], 16).expect("hex digits"))
        .collect();
    bytes.repeat(count)
}

/// A deterministic generator for test data (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Strings of every shape the encoder distinguishes, as `(db, key, value, expiry)`, plus
/// `n_random` pseudo-random keys spread over databases 0 to 15. Expiries are far in the future
/// unless `with_expired`, which adds one key whose expiry is long past.
pub fn varied_dataset(seed: u64, n_random: usize, with_expired: bool) -> Dataset {
    const FAR_MS: u64 = 4_102_444_800_000; // 2100-01-01
    let mut data = Dataset::new();
    let mut add = |db: u32, key: &[u8], value: &[u8], expire: Option<u64>| {
        data.insert((db, key.to_vec()), (value.to_vec(), expire));
    };
    let fixed: [&[u8]; 18] = [
        b"0",
        b"-1",
        b"127",
        b"-128",
        b"128",
        b"32767",
        b"-32768",
        b"32768",
        b"2147483647",
        b"-2147483648",
        b"2147483648",
        b"-9223372036854775808",
        b"007",
        b"-0",
        b"",
        b" 1",
        b"1.5",
        b"\x00\xff\r\n",
    ];
    for (i, value) in fixed.iter().enumerate() {
        add(0, format!("fixed:{i}").as_bytes(), value, None);
    }
    add(0, b"12345", b"integer key", None);
    add(0, b"", b"empty key", None);
    add(0, b"a21", &[b'a'; 21], None);
    add(0, b"a20000", &[b'a'; 20_000], Some(FAR_MS + 1));
    add(0, &[b'k'; 300], b"long compressible key", Some(FAR_MS + 2));
    add(
        1,
        b"lorem",
        &b"Lorem ipsum dolor sit amet, ".repeat(100),
        Some(FAR_MS + 3),
    );
    add(2, b"all-bytes", &(0..=255).collect::<Vec<u8>>(), None);
    add(15, b"last-db", b"15", Some(FAR_MS));
    if with_expired {
        add(3, b"expired", b"long gone", Some(1_000));
    }
    let mut rng = Rng::new(seed);
    for i in 0..n_random {
        let db = rng.below(16) as u32;
        let key = format!("r:{i}:{}", rng.next()).into_bytes();
        let len = match rng.below(10) {
            0 => rng.below(70_000) as usize,
            1..=3 => rng.below(2_000) as usize,
            _ => rng.below(64) as usize,
        };
        let value = match rng.below(4) {
            0 => rng.bytes(len),
            1 => (rng.next() as i64 >> rng.below(64))
                .to_string()
                .into_bytes(),
            2 => {
                let pattern_len = 1 + rng.below(8) as usize;
                let pattern = rng.bytes(pattern_len);
                pattern.iter().copied().cycle().take(len).collect()
            }
            _ => {
                let words = [&b"alpha "[..], b"beta ", b"gamma ", b"delta "];
                let mut text = Vec::with_capacity(len + 6);
                while text.len() < len {
                    text.extend_from_slice(words[rng.below(4) as usize]);
                }
                text.truncate(len);
                text
            }
        };
        let expire = (rng.below(3) == 0).then(|| FAR_MS + rng.below(1 << 40));
        add(db, &key, &value, expire);
    }
    data
}

/// Wall-clock now in ms.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "forkless-{label}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// True if every binary is on PATH. Otherwise fails when FORKLESS_REQUIRE_REDIS=1 (CI), or
/// prints a loud skip line and returns false.
pub fn have_redis_binaries(test: &str, binaries: &[&str]) -> bool {
    let missing: Vec<&str> = binaries
        .iter()
        .copied()
        .filter(|binary| !on_path(binary))
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("FORKLESS_REQUIRE_REDIS").as_deref() == Ok("1") {
        panic!("{test}: FORKLESS_REQUIRE_REDIS=1 but {missing:?} not on PATH");
    }
    eprintln!(
        "!!!!!!!! SKIPPING {test}: {missing:?} not on PATH (install redis-server and redis-tools; \
         set FORKLESS_REQUIRE_REDIS=1 to make this a failure) !!!!!!!!"
    );
    false
}

fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()))
}

/// Runs `redis-check-rdb` on `path`; returns whether it succeeded and its output.
pub fn redis_check_rdb(path: &Path) -> (bool, String) {
    let output = Command::new("redis-check-rdb")
        .arg(path)
        .output()
        .expect("run redis-check-rdb");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (
        output.status.success() && text.contains("RDB looks OK"),
        text,
    )
}

/// A `redis-server` child on a free port, killed on drop.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` with `--dir dir --dbfilename dbfilename` (loading that file if it
    /// exists) on a free port, retrying with another port if the one picked was taken
    /// meanwhile, and waits until it answers PING.
    pub fn start(dir: &Path, dbfilename: &str) -> RedisServer {
        for _attempt in 0..5 {
            let port = free_port();
            let log = dir.join(format!("redis-{port}.log"));
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .arg("--dir")
                .arg(dir)
                .args([
                    "--dbfilename",
                    dbfilename,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(["--enable-debug-command", "yes", "--logfile"])
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            let mut server = RedisServer { child, port, log };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(log_text) if log_text.contains("Address already in use") => continue,
                Err(log_text) => panic!("redis-server failed to start:\n{log_text}"),
            }
        }
        panic!("redis-server: no free port after 5 attempts");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_status)) = self.child.try_wait() {
                return Err(self.log_text());
            }
            if let Ok(mut client) = Resp::connect(self.port) {
                if client.call(&[b"PING"]) == Reply::Simple("PONG".into()) {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("not ready after 20 s\n{}", self.log_text()))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn client(&self) -> Resp {
        Resp::connect(self.port).expect("connect to redis-server")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Picks a port that was free a moment ago by binding port 0 and releasing it.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

/// A tiny blocking RESP2 client.
pub struct Resp {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Resp {
    pub fn connect(port: u16) -> std::io::Result<Resp> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Resp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    pub fn call(&mut self, args: &[&[u8]]) -> Reply {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&request).expect("send command");
        self.read_reply()
    }

    fn read_reply(&mut self) -> Reply {
        let mut line = Vec::new();
        self.reader
            .read_until(b'\n', &mut line)
            .expect("read reply");
        assert!(line.ends_with(b"\r\n"), "truncated reply {line:?}");
        let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
        match line[0] {
            b'+' => Reply::Simple(text),
            b'-' => Reply::Error(text),
            b':' => Reply::Int(text.parse().expect("integer reply")),
            b'$' => {
                let len: i64 = text.parse().expect("bulk length");
                if len < 0 {
                    return Reply::Bulk(None);
                }
                let mut data = vec![0; len as usize + 2];
                self.reader.read_exact(&mut data).expect("read bulk");
                data.truncate(len as usize);
                Reply::Bulk(Some(data))
            }
            b'*' => {
                let len: i64 = text.parse().expect("array length");
                Reply::Array((0..len.max(0)).map(|_| self.read_reply()).collect())
            }
            other => panic!("unexpected reply type {other:?}"),
        }
    }

    /// Writes `data` into the server with SET and PEXPIREAT.
    pub fn write_dataset(&mut self, data: &Dataset) {
        for ((db, key), (value, expire)) in data {
            assert_eq!(self.call(&[b"SELECT", db.to_string().as_bytes()]), ok());
            assert_eq!(self.call(&[b"SET", key, value]), ok());
            if let Some(at) = expire {
                assert_eq!(
                    self.call(&[b"PEXPIREAT", key, at.to_string().as_bytes()]),
                    Reply::Int(1)
                );
            }
        }
    }

    /// Reads every key of every database back with SCAN, GET and PEXPIRETIME.
    pub fn read_dataset(&mut self) -> Dataset {
        let mut data = Dataset::new();
        for db in 0..16u32 {
            assert_eq!(self.call(&[b"SELECT", db.to_string().as_bytes()]), ok());
            let mut cursor = b"0".to_vec();
            loop {
                let Reply::Array(reply) = self.call(&[b"SCAN", &cursor, b"COUNT", b"1000"]) else {
                    panic!("SCAN failed");
                };
                let [Reply::Bulk(Some(next)), Reply::Array(keys)] = &reply[..] else {
                    panic!("bad SCAN reply {reply:?}");
                };
                for key in keys {
                    let Reply::Bulk(Some(key)) = key else {
                        panic!("bad key {key:?}")
                    };
                    let Reply::Bulk(Some(value)) = self.call(&[b"GET", key]) else {
                        panic!("GET {key:?} failed");
                    };
                    let expire = match self.call(&[b"PEXPIRETIME", key]) {
                        Reply::Int(-1) => None,
                        Reply::Int(at) if at >= 0 => Some(at as u64),
                        other => panic!("PEXPIRETIME {key:?}: {other:?}"),
                    };
                    data.insert((db, key.clone()), (value, expire));
                }
                if next == b"0" {
                    break;
                }
                cursor = next.clone();
            }
        }
        data
    }
}

pub fn ok() -> Reply {
    Reply::Simple("OK".into())
}

/// Describes how two datasets differ, for assertion messages that stay readable when a value
/// is 70 KB long.
pub fn diff(expected: &Dataset, actual: &Dataset) -> String {
    let mut out = String::new();
    for (key, entry) in expected {
        match actual.get(key) {
            None => out.push_str(&format!("missing {:?}\n", show_key(key))),
            Some(other) if other != entry => out.push_str(&format!(
                "differs {:?}: expected len {} expire {:?}, got len {} expire {:?}\n",
                show_key(key),
                entry.0.len(),
                entry.1,
                other.0.len(),
                other.1
            )),
            Some(_) => {}
        }
    }
    for key in actual.keys().filter(|key| !expected.contains_key(*key)) {
        out.push_str(&format!("unexpected {:?}\n", show_key(key)));
    }
    out
}

fn show_key(key: &(u32, Vec<u8>)) -> String {
    format!("db {} key {:?}", key.0, String::from_utf8_lossy(&key.1))
}
