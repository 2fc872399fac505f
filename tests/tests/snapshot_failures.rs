//! Snapshots that go wrong, end to end against the real binary: writer faults injected with
//! `FORKLESS_FAULT_INJECT` (ENOSPC on a write, EIO on fsync, EDQUOT on rename, with both
//! writers) must leave the previous dump byte-identical and no temp file, report
//! `rdb_last_bgsave_status:err` with the OS error in the log, and refuse writes with MISCONF
//! until `stop-writes-on-bgsave-error no`; the automatic writer choice must fall back to the
//! blocking writer when io_uring is disabled and say so; kill -9 at random moments of a BGSAVE
//! must always leave a dump the server restarts from; and corrupt or unsupported files must
//! stop startup with an error naming the file and an offset, leaving the file untouched.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use forkless_tests::{TestDir, TestServer, noise, populate, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

/// Redis 7.0's MISCONF reply, byte for byte.
const MISCONF: &str = "-MISCONF Redis is configured to save RDB snapshots, but it's currently \
unable to persist to disk. Commands that may modify the data set are disabled, because this \
instance is configured to report errors during writes if RDB snapshotting fails \
(stop-writes-on-bgsave-error option). Please check the Redis logs for details about the RDB \
error.\r\n";

/// Sends a command on a raw connection; returns the reply's bytes as text.
fn call(raw: &mut forkless_tests::RawConn, args: &[&[u8]]) -> String {
    String::from_utf8_lossy(&raw.call(args)).into_owned()
}

/// One field of INFO persistence, or None when the server does not print it.
fn info_field(conn: &mut redis::Connection, field: &str) -> Option<String> {
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query(conn)
        .expect("INFO");
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")).map(str::to_string))
}

/// Waits (up to 30 s) until no save is running.
fn wait_save_done(conn: &mut redis::Connection) {
    assert!(
        wait_until(Duration::from_secs(30), || info_field(
            conn,
            "rdb_bgsave_in_progress"
        )
        .as_deref()
            == Some("0")),
        "the background save did not finish"
    );
}

fn dbsize(conn: &mut redis::Connection) -> u64 {
    redis::cmd("DBSIZE").query(conn).expect("DBSIZE")
}

// ---------------------------------------------------------------------------------------------
// Injected writer faults.

/// Makes a good dump without faults, restarts on the same directory with `fault` injected,
/// and checks everything a failed BGSAVE must do. `writer` is None for the default (`auto`).
fn fault_case(writer: Option<&str>, fault: &str, op_text: &str, os_text: &str) {
    let dir = TestDir::new("fault");
    let mut args = vec!["--save", "3600 1"];
    if let Some(writer) = writer {
        args.extend(["--snapshot-writer", writer]);
    }
    let context = format!("writer {writer:?}, fault {fault}");
    {
        let server = TestServer::start_in(BIN, &dir.0, &args, &[]);
        let mut conn = server.client();
        populate(&mut conn, "k", 3000, 1000);
        let reply: String = redis::cmd("SAVE").query(&mut conn).expect("SAVE");
        assert_eq!(reply, "OK", "{context}");
    }
    let good = fs::read(dir.dump()).expect("the good dump");
    assert!(
        good.len() > 3_000_000,
        "{context}: dump is {} bytes",
        good.len()
    );

    let server = TestServer::start_in(BIN, &dir.0, &args, &[("FORKLESS_FAULT_INJECT", fault)]);
    let mut conn = server.client();
    assert_eq!(dbsize(&mut conn), 3000, "{context}");
    // A change, so that a new dump could not be byte-identical to the old one by chance.
    let () = redis::cmd("SET")
        .arg("changed")
        .arg("yes")
        .query(&mut conn)
        .expect("SET");
    let reply: String = redis::cmd("BGSAVE").query(&mut conn).expect("BGSAVE");
    assert_eq!(reply, "Background saving started", "{context}");
    wait_save_done(&mut conn);
    assert_eq!(
        info_field(&mut conn, "rdb_last_bgsave_status").as_deref(),
        Some("err"),
        "{context}"
    );
    let line = server
        .wait_for_log("Background saving error")
        .unwrap_or_else(|| panic!("{context}: no 'Background saving error' log line"));
    assert!(
        line.contains(op_text) && line.contains(os_text),
        "{context}: the log line should name {op_text:?} and {os_text:?}: {line}"
    );
    let last_error = info_field(&mut conn, "snapshot_last_error").unwrap_or_default();
    assert!(
        last_error.contains(os_text),
        "{context}: snapshot_last_error {last_error:?}"
    );
    assert_eq!(
        dir.files(),
        ["dump.rdb"],
        "{context}: the temp file must be removed"
    );
    assert!(
        fs::read(dir.dump()).expect("dump") == good,
        "{context}: the previous dump must be byte-identical"
    );
    assert_eq!(
        info_field(&mut conn, "snapshot_retained_bytes").as_deref(),
        Some("0"),
        "{context}"
    );

    // Writes are refused with Redis's exact MISCONF error; reads still work.
    let mut raw = server.raw();
    assert_eq!(
        call(&mut raw, &[b"SET", b"k0", b"other"]),
        MISCONF,
        "{context}"
    );
    assert_eq!(call(&mut raw, &[b"DEL", b"k1"]), MISCONF, "{context}");
    // Redis refuses PING too while writes are refused.
    assert_eq!(call(&mut raw, &[b"PING"]), MISCONF, "{context}");
    let value: Vec<u8> = redis::cmd("GET").arg("k0").query(&mut conn).expect("GET");
    assert!(
        value == noise(0, 1000),
        "{context}: GET k0 after the failure"
    );
    assert_eq!(call(&mut raw, &[b"DBSIZE"]), ":3001\r\n", "{context}");

    // `stop-writes-on-bgsave-error no` lets writes through again.
    assert_eq!(
        call(
            &mut raw,
            &[b"CONFIG", b"SET", b"stop-writes-on-bgsave-error", b"no"]
        ),
        "+OK\r\n",
        "{context}"
    );
    assert_eq!(
        call(&mut raw, &[b"SET", b"k0", b"other"]),
        "+OK\r\n",
        "{context}"
    );
    assert_eq!(
        call(&mut raw, &[b"GET", b"k0"]),
        "$5\r\nother\r\n",
        "{context}"
    );
    assert_eq!(call(&mut raw, &[b"PING"]), "+PONG\r\n", "{context}");
    assert_eq!(
        info_field(&mut conn, "rdb_last_bgsave_status").as_deref(),
        Some("err"),
        "{context}: the status stays err until a save succeeds"
    );
}

#[test]
fn a_panicking_serializer_fails_the_save_and_the_server_goes_on() {
    fault_case(None, "serializer_panic", "serializer", "panicked");
}

#[test]
fn enospc_on_write_keeps_previous_dump_and_refuses_writes() {
    for writer in [Some("blocking"), None] {
        fault_case(
            writer,
            "write_after=65536,errno=28",
            "write at offset",
            "No space left on device",
        );
    }
}

#[test]
fn eio_on_fsync_keeps_previous_dump_and_refuses_writes() {
    for writer in [Some("blocking"), None] {
        fault_case(writer, "fsync,errno=EIO", "fsync ", "Input/output error");
    }
}

#[test]
fn edquot_on_rename_keeps_previous_dump_and_refuses_writes() {
    for writer in [Some("blocking"), None] {
        fault_case(
            writer,
            "rename,errno=EDQUOT",
            "rename ",
            "Disk quota exceeded",
        );
    }
}

/// A failed foreground SAVE replies `-ERR` and is logged, but, as in Redis (whose `rdbSave`
/// leaves `lastbgsave_status` alone on error), it is not a failed *background* save: the status
/// stays ok and writes are not refused. A failed BGSAVE then does refuse them.
#[test]
fn failed_save_replies_err_but_does_not_refuse_writes() {
    let server = TestServer::start_with_env(
        BIN,
        &["--save", "3600 1"],
        &[("FORKLESS_FAULT_INJECT", "fsync,errno=EIO")],
    );
    let mut conn = server.client();
    let mut raw = server.raw();
    assert_eq!(call(&mut raw, &[b"SET", b"k", b"v"]), "+OK\r\n");
    assert_eq!(call(&mut raw, &[b"SAVE"]), "-ERR\r\n");
    let line = server
        .wait_for_log("Failed saving the DB")
        .expect("a log line for the failed SAVE");
    assert!(line.contains("Input/output error"), "{line}");
    let files = fs::read_dir(&server.dir).expect("read dir").count();
    assert_eq!(files, 0, "no dump and no temp file");
    assert_eq!(
        info_field(&mut conn, "rdb_last_bgsave_status").as_deref(),
        Some("ok")
    );
    assert_eq!(call(&mut raw, &[b"SET", b"k", b"w"]), "+OK\r\n");

    assert_eq!(
        call(&mut raw, &[b"BGSAVE"]),
        "+Background saving started\r\n"
    );
    wait_save_done(&mut conn);
    assert_eq!(
        info_field(&mut conn, "rdb_last_bgsave_status").as_deref(),
        Some("err")
    );
    assert_eq!(call(&mut raw, &[b"SET", b"k", b"x"]), MISCONF);
}

/// SIGTERM with save points while a BGSAVE runs: the BGSAVE is cancelled and a final save
/// runs; when that final save fails the server keeps running (Redis: "can't exit"), and since
/// neither the cancellation (Redis kills its child with SIGUSR1, which is no error) nor a
/// failed foreground save is a failed background save, writes are still accepted. SHUTDOWN
/// then fails the same way, and SHUTDOWN NOSAVE exits 0.
#[test]
fn failed_final_save_keeps_the_server_running() {
    let server = TestServer::start_with_env(
        BIN,
        &["--save", "3600 1", "--snapshot-max-bytes-per-sec", "1mb"],
        &[("FORKLESS_FAULT_INJECT", "fsync,errno=EIO")],
    );
    let mut conn = server.client();
    populate(&mut conn, "k", 1500, 1000);
    let mut raw = server.raw();
    assert_eq!(
        call(&mut raw, &[b"BGSAVE"]),
        "+Background saving started\r\n"
    );
    let status = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    server
        .wait_for_log("Error trying to save the DB, can't exit")
        .expect("the final save must fail");
    assert_eq!(call(&mut raw, &[b"ECHO", b"up"]), "$2\r\nup\r\n");
    assert_eq!(
        info_field(&mut conn, "rdb_bgsave_in_progress").as_deref(),
        Some("0")
    );
    assert_eq!(
        info_field(&mut conn, "rdb_last_bgsave_status").as_deref(),
        Some("ok")
    );
    assert_eq!(call(&mut raw, &[b"SET", b"k0", b"v"]), "+OK\r\n");
    assert_eq!(
        call(&mut raw, &[b"SHUTDOWN"]),
        "-ERR Errors trying to SHUTDOWN. Check logs.\r\n"
    );
    assert_eq!(call(&mut raw, &[b"ECHO", b"up"]), "$2\r\nup\r\n");
    let files = fs::read_dir(&server.dir).expect("read dir").count();
    assert_eq!(files, 0, "no dump and no temp file");
    raw.send_command(&[b"SHUTDOWN", b"NOSAVE"]);
    assert_eq!(raw.read_to_close(), b"");
    let mut server = server;
    assert_eq!(server.wait_exit().code(), Some(0));
}

// ---------------------------------------------------------------------------------------------
// Writer choice.

#[test]
fn auto_writer_falls_back_to_blocking_when_io_uring_is_disabled() {
    let server =
        TestServer::start_with_env(BIN, &["--save", ""], &[("FORKLESS_DISABLE_IO_URING", "1")]);
    let mut conn = server.client();
    // Probed at startup: INFO says it before any save.
    assert_eq!(
        info_field(&mut conn, "snapshot_writer").as_deref(),
        Some("blocking")
    );
    populate(&mut conn, "k", 1000, 100);
    let reply: String = redis::cmd("BGSAVE").query(&mut conn).expect("BGSAVE");
    assert_eq!(reply, "Background saving started");
    wait_save_done(&mut conn);
    assert_eq!(
        info_field(&mut conn, "rdb_last_bgsave_status").as_deref(),
        Some("ok")
    );
    assert_eq!(
        info_field(&mut conn, "snapshot_writer").as_deref(),
        Some("blocking")
    );
    assert_eq!(
        info_field(&mut conn, "snapshot_writer_fallback_reason").as_deref(),
        Some("io_uring_setup: Operation not permitted (os error 1) (FORKLESS_DISABLE_IO_URING=1)")
    );
    let line = server
        .wait_for_log("io_uring unavailable")
        .expect("a log line about the fallback");
    assert!(
        line.contains("blocking writer") && line.contains("FORKLESS_DISABLE_IO_URING=1"),
        "{line}"
    );
    assert!(server.dir.join("dump.rdb").exists());
}

#[test]
fn auto_writer_uses_io_uring_when_the_kernel_allows_it() {
    let server = TestServer::start_with_env(BIN, &["--save", ""], &[]);
    let mut conn = server.client();
    let probed_at_startup = info_field(&mut conn, "snapshot_writer");
    populate(&mut conn, "k", 1000, 100);
    let reply: String = redis::cmd("BGSAVE").query(&mut conn).expect("BGSAVE");
    assert_eq!(reply, "Background saving started");
    wait_save_done(&mut conn);
    assert_eq!(
        info_field(&mut conn, "rdb_last_bgsave_status").as_deref(),
        Some("ok")
    );
    let writer = info_field(&mut conn, "snapshot_writer");
    assert_eq!(
        probed_at_startup, writer,
        "startup probe and first save disagree"
    );
    let reason = info_field(&mut conn, "snapshot_writer_fallback_reason");
    // The kernel decides: this process probes io_uring the way the server does (the server's
    // environment has neither hook set; this one may, in which case only the weaker check
    // applies).
    let hooks_set = std::env::var_os("FORKLESS_DISABLE_IO_URING").is_some()
        || std::env::var_os("FORKLESS_FAULT_INJECT").is_some();
    match forkless_snapshot::backend::probe_io_uring() {
        Ok(()) if !hooks_set => {
            assert_eq!(writer.as_deref(), Some("io_uring"));
            assert_eq!(reason, None);
        }
        probe => {
            eprintln!("io_uring probe in the test process: {probe:?}");
            match writer.as_deref() {
                Some("io_uring") => assert_eq!(reason, None),
                Some("blocking") => {
                    let reason = reason.expect("a fallback reason with the blocking writer");
                    assert!(reason.starts_with("io_uring_setup: "), "{reason}");
                }
                other => panic!("snapshot_writer {other:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// kill -9 during a snapshot.

/// Keys in the base dataset of the kill test, 500 bytes each (10 MB).
const KILL_BASE_KEYS: usize = 20_000;
const KILL_ROUNDS: usize = 5;

#[test]
fn kill_9_at_random_moments_of_a_bgsave_leaves_a_loadable_dump() {
    use rand::Rng;
    let dir = TestDir::new("kill9");
    // 8 MB/s: a BGSAVE of the 10 MB dataset takes about 1.3 s.
    let args = ["--save", "", "--snapshot-max-bytes-per-sec", "8mb"];
    let mut server = TestServer::start_in(BIN, &dir.0, &args, &[]);
    let mut conn = server.client();
    populate(&mut conn, "base", KILL_BASE_KEYS, 500);
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "snapshot-max-bytes-per-sec", "0"])
        .query(&mut conn)
        .expect("CONFIG SET");
    let reply: String = redis::cmd("SAVE").query(&mut conn).expect("SAVE");
    assert_eq!(reply, "OK");
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "snapshot-max-bytes-per-sec", "8mb"])
        .query(&mut conn)
        .expect("CONFIG SET");
    let mut on_disk = KILL_BASE_KEYS as u64;
    let mut rng = rand::rng();
    let mut outcomes = Vec::new();
    for round in 1..=KILL_ROUNDS {
        // A distinct size per round: the restart tells which dump it loaded.
        populate(&mut conn, &format!("round{round}:"), 1 + round * 7, 500);
        let new_size = dbsize(&mut conn);
        assert_eq!(new_size, on_disk + 1 + round as u64 * 7);
        let reply: String = redis::cmd("BGSAVE").query(&mut conn).expect("BGSAVE");
        assert_eq!(reply, "Background saving started");
        // A deliberate random delay: kill anywhere from before the temp file exists to after
        // the rename.
        let delay = Duration::from_millis(rng.random_range(0..1700));
        std::thread::sleep(delay);
        let status = Command::new("kill")
            .args(["-9", &server.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let exit = server.wait_exit();
        assert!(!exit.success(), "killed server exited with {exit:?}");
        drop(conn);
        drop(server);
        // Must start (TestServer panics otherwise) and load one of the two complete dumps.
        server = TestServer::start_in(BIN, &dir.0, &args, &[]);
        conn = server.client();
        // The killed save's temp file, if it got that far, is removed at startup.
        let files = dir.files();
        assert!(
            !files.iter().any(|name| name.starts_with("temp-")),
            "round {round}: temp file left after the restart: {files:?}"
        );
        let loaded = dbsize(&mut conn);
        assert!(
            loaded == on_disk || loaded == new_size,
            "round {round}: killed after {delay:?}, loaded {loaded} keys; expected the previous \
             dump ({on_disk}) or the new one ({new_size})"
        );
        let round_key_exists: bool = redis::cmd("EXISTS")
            .arg(format!("round{round}:0"))
            .query(&mut conn)
            .expect("EXISTS");
        assert_eq!(round_key_exists, loaded == new_size, "round {round}");
        let value: Vec<u8> = redis::cmd("GET")
            .arg("base7")
            .query(&mut conn)
            .expect("GET");
        assert!(value == noise(7, 500), "round {round}: base7 differs");
        outcomes.push(format!(
            "{delay:?}: {}",
            if loaded == new_size {
                "new"
            } else {
                "previous"
            }
        ));
        on_disk = loaded;
    }
    eprintln!(
        "kill -9 rounds (delay: dump loaded): {outcomes:?}; files left: {:?}",
        dir.files()
    );
}

// ---------------------------------------------------------------------------------------------
// Corrupt files at startup.

/// A good dump of 300 keys whose values are 1000 × 'v', saved without LZF so that the middle of
/// the file is value bytes.
fn good_dump() -> Vec<u8> {
    let server = TestServer::start(BIN, &["--save", "", "--rdbcompression", "no"]);
    let mut conn = server.client();
    for start in (0..300).step_by(100) {
        let mut cmd = redis::cmd("MSET");
        for i in start..start + 100 {
            cmd.arg(format!("key:{i}")).arg("v".repeat(1000));
        }
        let () = cmd.query(&mut conn).expect("MSET");
    }
    let reply: String = redis::cmd("SAVE").query(&mut conn).expect("SAVE");
    assert_eq!(reply, "OK");
    fs::read(server.dir.join("dump.rdb")).expect("dump")
}

/// Starts the server on a directory holding `contents` as dump.rdb and expects it to exit by
/// itself with a non-zero status; returns its standard error. Checks that the file is left as
/// it was and that the server never became ready.
fn refused_at_startup(contents: &[u8]) -> String {
    let dir = TestDir::new("corrupt");
    fs::write(dir.dump(), contents).expect("write dump");
    let mut child = Command::new(BIN)
        .args(["--port", "0", "--dir"])
        .arg(&dir.0)
        .env_remove("FORKLESS_FAULT_INJECT")
        .env_remove("FORKLESS_DISABLE_IO_URING")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn forkless-server");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not exit on a corrupt dump");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("collect output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(
        !stdout.contains("Ready to accept connections"),
        "the server became ready: {stdout}"
    );
    let path = dir.dump().display().to_string();
    assert!(
        stderr.contains(&format!("Fatal error loading the DB: {path}: offset ")),
        "stderr must name the file {path}: {stderr}"
    );
    assert!(
        fs::read(dir.dump()).expect("dump") == contents,
        "the file must be left untouched"
    );
    assert_eq!(dir.files(), ["dump.rdb"]);
    stderr
}

/// The offset a load error names: the number after "offset ".
fn error_offset(stderr: &str) -> u64 {
    let after = stderr
        .split(": offset ")
        .nth(1)
        .unwrap_or_else(|| panic!("no offset in {stderr}"));
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().expect("offset digits")
}

#[test]
fn truncated_dump_is_refused_at_startup() {
    let good = good_dump();
    let half = &good[..good.len() / 2];
    let stderr = refused_at_startup(half);
    assert!(
        stderr.contains("unexpected end of file while reading"),
        "{stderr}"
    );
    let offset = error_offset(&stderr);
    assert!(
        offset > 9 && offset < half.len() as u64,
        "offset {offset} of a {}-byte file: {stderr}",
        half.len()
    );
}

#[test]
fn flipped_byte_is_refused_at_startup_by_the_checksum() {
    let mut dump = good_dump();
    // The value byte nearest the middle that has value bytes on both sides, so the flip
    // changes a value and nothing structural: only the CRC64 can tell.
    let mid = (dump.len() / 2..dump.len())
        .find(|&i| {
            dump.get(i - 40..i + 40)
                .is_some_and(|w| w.iter().all(|&b| b == b'v'))
        })
        .expect("a run of value bytes in the second half");
    dump[mid] ^= 0x01;
    let stderr = refused_at_startup(&dump);
    let footer = dump.len() - 8;
    assert!(
        stderr.contains(&format!("offset {footer}: bad CRC64 checksum")),
        "expected a checksum error at the footer (offset {footer}): {stderr}"
    );
}

#[test]
fn garbage_file_is_refused_at_startup() {
    let garbage = noise(42, 4096);
    let stderr = refused_at_startup(&garbage);
    assert!(
        stderr.contains("offset 0: not an RDB file (bad magic)"),
        "{stderr}"
    );
}

/// `XADD stream 1-1 field value` saved by Redis 7.0.15: the bytes of
/// `crates/snapshot/testdata/redis-7.0-type-stream.rdb`, inline because `*.rdb` is gitignored
/// (the golden files are not in the repository). A stream, not a list: lists, sets, hashes and
/// sorted sets are being made loadable, streams stay unsupported.
const REDIS_STREAM_RDB: &[u8] = &[
    0x52, 0x45, 0x44, 0x49, 0x53, 0x30, 0x30, 0x31, 0x30, 0xfa, 0x09, 0x72, 0x65, 0x64, 0x69, 0x73,
    0x2d, 0x76, 0x65, 0x72, 0x06, 0x37, 0x2e, 0x30, 0x2e, 0x31, 0x35, 0xfa, 0x0a, 0x72, 0x65, 0x64,
    0x69, 0x73, 0x2d, 0x62, 0x69, 0x74, 0x73, 0xc0, 0x40, 0xfa, 0x05, 0x63, 0x74, 0x69, 0x6d, 0x65,
    0xc2, 0xbe, 0x14, 0x06, 0x6b, 0xfa, 0x08, 0x75, 0x73, 0x65, 0x64, 0x2d, 0x6d, 0x65, 0x6d, 0xc2,
    0x38, 0xd0, 0x14, 0x00, 0xfa, 0x08, 0x61, 0x6f, 0x66, 0x2d, 0x62, 0x61, 0x73, 0x65, 0xc0, 0x00,
    0xfe, 0x00, 0xfb, 0x01, 0x00, 0x13, 0x06, 0x73, 0x74, 0x72, 0x65, 0x61, 0x6d, 0x01, 0x10, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x25,
    0x25, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x01, 0x01, 0x00, 0x01, 0x01, 0x01, 0x85, 0x66, 0x69, 0x65,
    0x6c, 0x64, 0x06, 0x00, 0x01, 0x02, 0x01, 0x00, 0x01, 0x00, 0x01, 0x85, 0x76, 0x61, 0x6c, 0x75,
    0x65, 0x06, 0x04, 0x01, 0xff, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0xff, 0xcd,
    0x45, 0xe5, 0x54, 0x58, 0x58, 0xbf, 0x5f,
];

/// Streams load now; a value type forkless cannot hold (a module's, type 7) is still refused
/// at startup, with the offset of its type byte.
#[test]
fn redis_dump_with_an_unsupported_type_is_refused_at_startup() {
    // The stream key: type 19 (stream listpacks 2), then the key "stream".
    let type_offset = REDIS_STREAM_RDB
        .windows(8)
        .position(|w| w == b"\x13\x06stream")
        .expect("the stream entry");
    assert_eq!(type_offset, 85);
    let mut module_dump = REDIS_STREAM_RDB.to_vec();
    module_dump[type_offset] = 7;
    let stderr = refused_at_startup(&module_dump);
    assert!(
        stderr.contains(&format!("offset {type_offset}: value type 7 (")),
        "expected type 7 at offset {type_offset}: {stderr}"
    );
    assert!(stderr.contains("is not supported"), "{stderr}");
}
