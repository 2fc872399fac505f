//! Regression tests for issue 20's snapshot-file defects: a fork-mode save child that outlived a
//! `kill -9` of its server (it went on writing for seconds, and the restarted server removed
//! its temp file under it); a dump with two entries for one key that loaded silently (Redis 7.0
//! refuses it: "Duplicated key found in RDB file"); and a load error that printed the file's
//! path and the OS error twice.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers unwrap and index: a panic is a test failure"
)]

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use forkless_tests::{TestDir, TestServer, info_section, populate, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

/// Returns true if and only if process `pid` exists and is not a zombie.
fn process_alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name.
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    !state.starts_with('Z') && !state.starts_with('X')
}

fn signal(pid: i32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// The save child of a server this test started, killed by its pid if the test fails while it
/// is stopped, so that no stopped process is left behind.
struct StoppedChild(i32);

impl Drop for StoppedChild {
    fn drop(&mut self) {
        if process_alive(self.0) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

/// Bug: after `kill -9` of a fork-mode server, its save child went on writing (with a throttle,
/// for seconds), and a server restarted on the same directory removed the child's temp file
/// while the child still wrote it. The child must notice its server's death and stop, and
/// startup's cleanup must leave alone a temp file whose writer is alive.
#[test]
fn a_fork_child_dies_with_its_server_and_its_temp_file_is_left_to_it() {
    let dir = TestDir::new("orphan-child");
    let mut first =
        TestServer::start_in(BIN, &dir.0, &["--save", "", "--snapshot-mode", "fork"], &[]);
    let mut conn = first.client();
    populate(&mut conn, "k", 4000, 1000);
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("snapshot-max-bytes-per-sec")
        .arg("200000")
        .query(&mut conn)
        .unwrap();
    let started: String = redis::cmd("BGSAVE").query(&mut conn).unwrap();
    assert_eq!(started, "Background saving started");
    let mut child = 0;
    assert!(wait_until(Duration::from_secs(10), || {
        child = info_section(&mut conn, "persistence")["snapshot_fork_child_pid"]
            .parse()
            .unwrap();
        child > 0 && !dir.temp_files().is_empty()
    }));
    let temp_files = dir.temp_files();
    // Stopped, the child can neither finish nor notice anything until it is continued.
    signal(child, "STOP");
    let _guard = StoppedChild(child);
    signal(i32::try_from(first.pid()).unwrap(), "KILL");
    first.wait_exit();
    drop(conn);

    let second = TestServer::start_in(BIN, &dir.0, &["--save", ""], &[]);
    assert!(process_alive(child));
    assert_eq!(
        dir.temp_files(),
        temp_files,
        "the restarted server removed the live child's temp file"
    );
    assert!(
        temp_files[0].contains(&child.to_string()),
        "the child's temp file is named after the child: {temp_files:?}"
    );

    // Continued, the child finds its server gone, stops, and removes its own temp file.
    signal(child, "CONT");
    assert!(
        wait_until(Duration::from_secs(15), || !process_alive(child)),
        "the save child outlived its server"
    );
    assert!(dir.temp_files().is_empty(), "{:?}", dir.temp_files());
    assert!(!dir.dump().exists(), "the orphaned save was committed");
    let mut conn = second.client();
    let () = redis::cmd("PING").query(&mut conn).unwrap();
}

/// Runs the server on `dir` and expects it to refuse to start (exit status 1); returns the
/// standard error.
fn refused_on(dir: &Path) -> String {
    let mut child = Command::new(BIN)
        .args(["--port", "0", "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_until(Duration::from_secs(20), || {
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server started on {}", dir.display());
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    stderr
}

/// An RDB 10 stream of string entries in database 0, with a zero checksum (Redis's "not
/// computed", which loaders accept).
fn dump_of(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut out = b"REDIS0010".to_vec();
    out.extend_from_slice(&[0xFE, 0x00]);
    for (key, value) in entries {
        out.push(0); // A string.
        for text in [key, value] {
            out.push(u8::try_from(text.len()).unwrap());
            out.extend_from_slice(text.as_bytes());
        }
    }
    out.push(0xFF);
    out.extend_from_slice(&[0; 8]);
    out
}

/// Bug: a dump with two entries for one key loaded silently (the second won). Redis 7.0 refuses
/// such a file ("RDB has duplicated key ... Duplicated key found in RDB file").
#[test]
fn a_dump_with_a_duplicate_key_is_refused() {
    let dir = TestDir::new("duplicate-key");
    // The same bytes without the duplicate load: the refusal is about the duplicate alone.
    fs::write(dir.dump(), dump_of(&[("a", "1"), ("b", "2")])).unwrap();
    let server = TestServer::start_in(BIN, &dir.0, &["--save", ""], &[]);
    let keys: i64 = redis::cmd("DBSIZE").query(&mut server.client()).unwrap();
    assert_eq!(keys, 2);
    drop(server);

    let duplicate = dump_of(&[("a", "1"), ("dup", "x"), ("dup", "y")]);
    fs::write(dir.dump(), &duplicate).unwrap();
    let stderr = refused_on(&dir.0);
    assert!(
        stderr.contains("RDB has duplicated key 'dup' in DB 0")
            && stderr.contains("Duplicated key found in RDB file"),
        "{stderr}"
    );
    assert_eq!(fs::read(dir.dump()).unwrap(), duplicate, "the file is kept");
}

/// Bug: a dump that cannot be read printed its path twice and the OS error twice
/// ("... dump.rdb: dump.rdb: offset 0: I/O error: Is a directory (os error 21): Is a directory
/// (os error 21)").
#[test]
fn a_load_error_names_the_file_and_the_os_error_once() {
    let dir = TestDir::new("unreadable-dump");
    fs::create_dir(dir.dump()).unwrap();
    let stderr = refused_on(&dir.0);
    let line = stderr
        .lines()
        .find(|line| line.contains("Fatal error loading the DB"))
        .unwrap_or_else(|| panic!("no load error in {stderr}"));
    let path = dir.dump().display().to_string();
    assert_eq!(line.matches(&path).count(), 1, "{line}");
    assert_eq!(line.matches("(os error 21)").count(), 1, "{line}");
}
