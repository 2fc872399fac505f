//! The environment hooks of `backend::open`: FORKLESS_DISABLE_IO_URING=1 (Auto falls back to
//! the blocking writer and says why) and FORKLESS_FAULT_INJECT (a real writer fails as told).
//!
//! Setting environment variables inside a multi-threaded test binary races with every other
//! test, so each parent test re-runs this binary as a child process with the variables set and
//! a filter that selects one `child_*` test. Without FORKLESS_BACKEND_ENV_CHILD the `child_*`
//! tests return at once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use forkless_snapshot::backend::{
    self, BackendError, Overrides, Sink, Target, WriterKind, WriterUsed,
};

const CHILD_ENV: &str = "FORKLESS_BACKEND_ENV_CHILD";
const CHILD_OK: &str = "backend_env child finished";
const PREVIOUS: &[u8] = b"previous snapshot";

struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        let path =
            std::env::temp_dir().join(format!("forkless-bk-env-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TestDir(path)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn target(dir: &Path, temp_name: &str) -> Target {
    Target::new(dir, "dump.rdb", temp_name)
}

/// Runs the test `child` of this binary with `envs` (plus the child marker naming `dir`) and
/// asserts that it ran and passed.
fn run_child(child: &str, dir: &Path, envs: &[(&str, &str)]) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([child, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env_remove(Overrides::DISABLE_IO_URING_ENV)
        .env_remove(Overrides::FAULT_INJECT_ENV);
    for (name, value) in envs {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "child {child} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(CHILD_OK),
        "child {child} did not run:\n{stdout}\n{stderr}"
    );
}

/// The directory the parent passed, if this process is a child.
fn child_dir() -> Option<PathBuf> {
    std::env::var_os(CHILD_ENV).map(PathBuf::from)
}

#[test]
fn disable_io_uring_env_makes_auto_fall_back_with_a_reason() {
    let dir = TestDir::new("disable");
    run_child(
        "child_auto_with_io_uring_disabled",
        &dir.0,
        &[("FORKLESS_DISABLE_IO_URING", "1")],
    );
    assert_eq!(
        fs::read(dir.0.join("dump.rdb")).unwrap(),
        b"written by the blocking writer"
    );
}

#[test]
fn child_auto_with_io_uring_disabled() {
    let Some(dir) = child_dir() else { return };
    let target = target(&dir, "temp-auto.rdb");
    let (mut sink, used, reason) = backend::open(WriterKind::Auto, &target).unwrap();
    assert_eq!(used, WriterUsed::Blocking);
    assert_eq!(
        reason.as_deref(),
        Some("io_uring_setup: Operation not permitted (os error 1) (FORKLESS_DISABLE_IO_URING=1)")
    );
    sink.write(b"written by the blocking writer").unwrap();
    sink.finish().unwrap();

    let Err(err) = backend::open(WriterKind::IoUring, &target) else {
        panic!("forced io_uring must fail under FORKLESS_DISABLE_IO_URING=1");
    };
    assert_eq!(err.err_op(), "io_uring_setup");
    assert!(backend::probe_io_uring().is_err());
    println!("{CHILD_OK}");
}

#[test]
fn fault_inject_env_makes_real_writers_fail_with_enospc() {
    let dir = TestDir::new("enospc");
    fs::write(dir.0.join("dump.rdb"), PREVIOUS).unwrap();
    run_child(
        "child_writers_with_injected_enospc",
        &dir.0,
        &[("FORKLESS_FAULT_INJECT", "write_after=1048576,errno=28")],
    );
    assert_eq!(fs::read(dir.0.join("dump.rdb")).unwrap(), PREVIOUS);
    let names: Vec<_> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["dump.rdb"]);
}

/// Writes 3 MiB and returns the first error, from a write or from `finish`.
fn write_three_mib(mut sink: Box<dyn Sink>) -> BackendError {
    for _ in 0..12 {
        if let Err(err) = sink.write(&[0x5A; 256 * 1024]) {
            sink.abort();
            return err;
        }
    }
    sink.finish()
        .expect_err("the injected ENOSPC must fail the snapshot")
}

#[test]
fn child_writers_with_injected_enospc() {
    let Some(dir) = child_dir() else { return };
    let mut kinds = vec![WriterKind::Blocking];
    match backend::probe_io_uring() {
        Ok(()) => kinds.push(WriterKind::IoUring),
        Err(err) => eprintln!("SKIPPING the io_uring writer: {err}"),
    }
    for kind in kinds {
        let (sink, _used, _reason) = backend::open(kind, &target(&dir, "temp-enospc.rdb")).unwrap();
        let err = write_three_mib(sink);
        assert_eq!(err.err_op(), "write", "{kind:?}: {err}");
        assert!(
            err.to_string()
                .ends_with("No space left on device (os error 28)"),
            "{kind:?}: {err}"
        );
        assert_eq!(fs::read(dir.join("dump.rdb")).unwrap(), PREVIOUS);
        assert!(
            !dir.join("temp-enospc.rdb").exists(),
            "{kind:?}: temp file left"
        );
    }
    println!("{CHILD_OK}");
}

#[test]
fn malformed_fault_inject_env_is_an_open_error() {
    let dir = TestDir::new("malformed");
    run_child(
        "child_malformed_fault_spec",
        &dir.0,
        &[("FORKLESS_FAULT_INJECT", "write_after=soon")],
    );
}

#[test]
fn child_malformed_fault_spec() {
    let Some(dir) = child_dir() else { return };
    let Err(err) = backend::open(WriterKind::Blocking, &target(&dir, "temp-bad.rdb")) else {
        panic!("a malformed FORKLESS_FAULT_INJECT must be refused");
    };
    assert_eq!(err.err_op(), "fault_inject");
    assert_eq!(
        err.to_string(),
        "invalid FORKLESS_FAULT_INJECT \"write_after=soon\": write_after is not a byte count"
    );
    assert!(
        fs::read_dir(&dir).unwrap().next().is_none(),
        "nothing may be created"
    );
    println!("{CHILD_OK}");
}
