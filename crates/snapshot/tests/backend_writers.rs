//! The snapshot writers against real files: content, the atomic replacement of the previous
//! snapshot, and cleanup on every failure path. Every scenario runs for both writers through
//! `for_each_writer` (io_uring is skipped with a loud line where the kernel or sandbox forbids
//! it, unless FORKLESS_REQUIRE_IO_URING=1).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use forkless_snapshot::backend::{
    self, BackendError, FaultPlan, Overrides, Sink, Target, WriterKind, WriterUsed, open_faulty,
};
use proptest::prelude::*;

const MIB: usize = 1 << 20;
const FINAL: &str = "dump.rdb";
const PREVIOUS: &[u8] = b"REDIS0011 previous snapshot that must survive every failure";

/// A fresh directory under the system temp dir, removed when dropped.
struct TestDir {
    path: PathBuf,
}

impl TestDir {
    fn new(name: &str) -> TestDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("forkless-bk-{}-{name}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TestDir { path }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn target(dir: &Path) -> Target {
    Target::new(dir, FINAL, format!("temp-{}-1.rdb", std::process::id()))
}

fn writer_name(kind: WriterKind) -> &'static str {
    kind.as_str()
}

/// Runs `body` once with the io_uring writer forced and once with the blocking writer.
fn for_each_writer(mut body: impl FnMut(WriterKind)) {
    match backend::probe_io_uring() {
        Ok(()) => body(WriterKind::IoUring),
        Err(err) if std::env::var_os("FORKLESS_REQUIRE_IO_URING").is_some_and(|v| v == "1") => {
            panic!("FORKLESS_REQUIRE_IO_URING=1 but io_uring is unavailable: {err}")
        }
        Err(err) => eprintln!("SKIPPING the io_uring writer in this test: {err}"),
    }
    body(WriterKind::Blocking);
}

/// Opens `kind` (never `Auto`) with `faults` injected inside the writer.
fn open_sink(kind: WriterKind, target: &Target, faults: Option<FaultPlan>) -> Box<dyn Sink> {
    let overrides = Overrides {
        disable_io_uring: false,
        faults,
    };
    let (sink, used, reason) = backend::open_with(kind, target, &overrides).unwrap();
    let expected = if kind == WriterKind::IoUring {
        WriterUsed::IoUring
    } else {
        WriterUsed::Blocking
    };
    assert_eq!(used, expected);
    assert_eq!(reason, None);
    sink
}

/// Deterministic bytes (xorshift), different for every seed.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

/// Chunk sizes from 0 bytes to 3 MiB, unaligned, totalling about 13 MiB, not a multiple of 4096.
fn mixed_chunk_sizes() -> Vec<usize> {
    let mut sizes = vec![
        1,
        7,
        0,
        4095,
        4096,
        4097,
        3 * MIB,
        100,
        MIB,
        MIB - 1,
        3 * MIB + 5,
        65_536,
    ];
    let mut state = 12_345u64;
    for _ in 0..40 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        sizes.push((state >> 33) as usize % 200_000);
    }
    sizes.push(3 * MIB);
    sizes.push(13);
    assert_ne!(sizes.iter().sum::<usize>() % 4096, 0);
    sizes
}

/// Writes `sizes` chunks of one random stream; returns the stream.
fn write_chunks(sink: &mut dyn Sink, sizes: &[usize], seed: u64) -> Vec<u8> {
    let stream = random_bytes(sizes.iter().sum(), seed);
    let mut at = 0;
    for &size in sizes {
        sink.write(&stream[at..at + size]).unwrap();
        at += size;
        assert_eq!(sink.bytes_written(), at as u64);
    }
    stream
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The previous snapshot is byte-identical and nothing else is left in the directory.
fn assert_previous_intact(target: &Target) {
    assert_eq!(
        fs::read(target.final_path()).unwrap(),
        PREVIOUS,
        "previous snapshot changed"
    );
    assert_eq!(
        dir_entries(&target.dir),
        vec![FINAL.to_owned()],
        "temp file left behind"
    );
}

fn with_previous(name: &str, kind: WriterKind) -> (TestDir, Target) {
    let dir = TestDir::new(&format!("{name}-{}", writer_name(kind)));
    let target = target(&dir.path);
    fs::write(target.final_path(), PREVIOUS).unwrap();
    (dir, target)
}

#[test]
fn mixed_chunks_land_byte_identical_and_replace_the_previous_file_by_rename() {
    for_each_writer(|kind| {
        let (_dir, target) = with_previous("roundtrip", kind);
        let mut sink = open_sink(kind, &target, None);
        let temp_inode = fs::metadata(target.temp_path()).unwrap().ino();
        let sizes = mixed_chunk_sizes();
        let stream = write_chunks(sink.as_mut(), &sizes, 1);
        assert_eq!(
            fs::read(target.final_path()).unwrap(),
            PREVIOUS,
            "final replaced before finish"
        );

        assert_eq!(sink.finish().unwrap(), stream.len() as u64);
        let written = fs::read(target.final_path()).unwrap();
        assert_eq!(written.len(), stream.len(), "{kind:?}: length");
        assert!(written == stream, "{kind:?}: content differs");
        assert_eq!(dir_entries(&target.dir), vec![FINAL.to_owned()]);
        // The final file is the temp file renamed, not a copy written over the old one.
        assert_eq!(fs::metadata(target.final_path()).unwrap().ino(), temp_inode);
        let mode = fs::metadata(target.final_path()).unwrap().mode() & 0o777;
        assert_eq!(mode & !0o644, 0, "{kind:?}: mode {mode:o}");
    });
}

#[test]
fn lengths_around_buffer_and_block_boundaries() {
    let lengths = [
        0,
        1,
        4095,
        4096,
        4097,
        MIB - 1,
        MIB,
        MIB + 1,
        8 * MIB,
        9 * MIB + 3,
    ];
    for_each_writer(|kind| {
        for (seed, &len) in lengths.iter().enumerate() {
            let dir = TestDir::new(&format!("lengths-{}", writer_name(kind)));
            let target = target(&dir.path);
            let mut sink = open_sink(kind, &target, None);
            let stream = random_bytes(len, seed as u64);
            sink.write(&stream).unwrap();
            assert_eq!(sink.finish().unwrap(), len as u64);
            let written = fs::read(target.final_path()).unwrap();
            assert!(
                written == stream,
                "{kind:?}: {len} bytes came back as {}",
                written.len()
            );
        }
    });
}

#[test]
fn a_target_without_a_previous_file_is_created() {
    for_each_writer(|kind| {
        let dir = TestDir::new(&format!("fresh-{}", writer_name(kind)));
        let target = target(&dir.path);
        let mut sink = open_sink(kind, &target, None);
        let stream = write_chunks(sink.as_mut(), &[10, 5000], 3);
        sink.finish().unwrap();
        assert_eq!(fs::read(target.final_path()).unwrap(), stream);
        assert_eq!(dir_entries(&target.dir), vec![FINAL.to_owned()]);
    });
}

#[test]
fn abort_with_writes_in_flight_removes_temp_and_keeps_previous() {
    for_each_writer(|kind| {
        let (_dir, target) = with_previous("abort", kind);
        let mut sink = open_sink(kind, &target, None);
        write_chunks(sink.as_mut(), &[MIB; 20], 4);
        assert!(target.temp_path().exists());
        sink.abort();
        assert_previous_intact(&target);
    });
}

#[test]
fn dropping_an_unfinished_sink_aborts_it() {
    for_each_writer(|kind| {
        let (_dir, target) = with_previous("drop", kind);
        let mut sink = open_sink(kind, &target, None);
        write_chunks(sink.as_mut(), &[3 * MIB, 17], 5);
        drop(sink);
        assert_previous_intact(&target);
    });
}

/// Writes 4 MiB in 64 KiB chunks into a sink whose writes fail past 1.5 MiB; returns the error
/// from the writes or from `finish`, after checking that later calls report the poisoning.
fn write_until_injected_failure(kind: WriterKind, target: &Target) -> BackendError {
    let plan = FaultPlan {
        fail_write_after_bytes: Some(3 * MIB as u64 / 2),
        ..FaultPlan::default()
    };
    let mut sink = open_sink(kind, target, Some(plan));
    let mut first_error = None;
    for chunk in 0..64 {
        match sink.write(&random_bytes(65_536, chunk)) {
            Ok(()) => assert!(first_error.is_none(), "write succeeded after a failure"),
            Err(err) if first_error.is_none() => first_error = Some(err),
            Err(err) => assert!(
                matches!(err, BackendError::Poisoned { op: "write" }),
                "{err}"
            ),
        }
    }
    match (first_error, sink.finish()) {
        (Some(err), Err(BackendError::Poisoned { op })) => {
            assert_eq!(op, err.err_op());
            err
        }
        (None, Err(err)) => err,
        (first, finished) => {
            panic!("{kind:?}: expected a write error, got {first:?} then {finished:?}")
        }
    }
}

#[test]
fn injected_write_failure_is_reported_and_cleaned_up_by_finish() {
    for_each_writer(|kind| {
        let (_dir, target) = with_previous("write-fault", kind);
        let err = write_until_injected_failure(kind, &target);
        assert_eq!(err.err_op(), "write");
        assert!(matches!(err, BackendError::Write { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.starts_with("write at offset "), "{message}");
        assert!(
            message.ends_with("Input/output error (os error 5)"),
            "{message}"
        );
        assert_previous_intact(&target);
    });
}

#[test]
fn injected_write_failure_surfaces_in_write_and_abort_cleans_up() {
    for_each_writer(|kind| {
        let (_dir, target) = with_previous("write-fault-abort", kind);
        // The blocking writer's 4 MiB buffer would only flush in finish: make chunks bigger.
        let plan = FaultPlan {
            fail_write_after_bytes: Some(MIB as u64),
            ..FaultPlan::default()
        };
        let mut sink = open_sink(kind, &target, Some(plan));
        let mut errors = (0..16).filter_map(|seed| sink.write(&random_bytes(MIB, seed)).err());
        let first = errors.next().expect("a write must fail");
        assert!(
            matches!(first, BackendError::Write { offset, .. } if offset <= MIB as u64),
            "{first:?}"
        );
        assert!(errors.all(|err| matches!(err, BackendError::Poisoned { op: "write" })));
        sink.abort();
        assert_previous_intact(&target);
    });
}

#[test]
fn injected_fsync_failure_is_reported_and_cleaned_up() {
    for_each_writer(|kind| {
        let (_dir, target) = with_previous("fsync-fault", kind);
        let plan = FaultPlan {
            fail_fsync: true,
            ..FaultPlan::default()
        };
        let mut sink = open_sink(kind, &target, Some(plan));
        write_chunks(sink.as_mut(), &[MIB + 3, 2 * MIB], 6);
        let err = sink.finish().unwrap_err();
        assert_eq!(err.err_op(), "fsync");
        let expected = format!(
            "fsync {}: Input/output error (os error 5)",
            target.temp_path().display()
        );
        assert_eq!(err.to_string(), expected);
        assert_previous_intact(&target);
    });
}

#[test]
fn injected_rename_failure_is_reported_and_cleaned_up() {
    for_each_writer(|kind| {
        let (_dir, target) = with_previous("rename-fault", kind);
        let plan = FaultPlan {
            fail_rename: true,
            errno: libc::EXDEV,
            ..FaultPlan::default()
        };
        let mut sink = open_sink(kind, &target, Some(plan));
        write_chunks(sink.as_mut(), &[5, 4091, MIB], 7);
        let err = sink.finish().unwrap_err();
        assert_eq!(err.err_op(), "rename");
        assert_eq!(
            err.os_error().and_then(io::Error::raw_os_error),
            Some(libc::EXDEV)
        );
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("rename {} to ", target.temp_path().display())),
            "{message}"
        );
        assert_previous_intact(&target);
    });
}

#[test]
fn missing_directory_is_an_open_error() {
    for_each_writer(|kind| {
        let dir = TestDir::new(&format!("missing-{}", writer_name(kind)));
        let target = target(&dir.path.join("no-such-dir"));
        let overrides = Overrides::default();
        let Err(err) = backend::open_with(kind, &target, &overrides) else {
            panic!("{kind:?}: opening in a missing directory succeeded");
        };
        assert_eq!(err.err_op(), "open");
        assert_eq!(
            err.to_string(),
            format!(
                "open {}: No such file or directory (os error 2)",
                target.temp_path().display()
            )
        );
        assert!(dir_entries(&dir.path).is_empty());
    });
}

#[test]
fn writers_use_o_direct_and_cloexec_where_the_filesystem_allows() {
    let dir = TestDir::new("odirect");
    let probe = dir.path.join("probe");
    let direct_ok = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags_direct()
        .open(&probe)
        .is_ok();
    let _ = fs::remove_file(&probe);
    if !direct_ok {
        eprintln!(
            "SKIPPING the O_DIRECT check: {} refuses O_DIRECT",
            dir.path.display()
        );
        return;
    }
    let target = target(&dir.path);
    for_each_writer(|kind| {
        let sink = open_sink(kind, &target, None);
        let flags = open_flags_of(&target.temp_path());
        assert_ne!(flags & libc::O_DIRECT, 0, "{kind:?}: flags {flags:o}");
        assert_ne!(flags & libc::O_CLOEXEC, 0, "{kind:?}: flags {flags:o}");
        sink.abort();
    });
}

trait DirectExt {
    fn custom_flags_direct(&mut self) -> &mut Self;
}

impl DirectExt for fs::OpenOptions {
    fn custom_flags_direct(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::custom_flags(self, libc::O_DIRECT)
    }
}

/// The `open(2)` flags of this process's fd for `path`, from /proc/self/fdinfo.
fn open_flags_of(path: &Path) -> i32 {
    for entry in fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        if fs::read_link(entry.path()).ok().as_deref() != Some(path) {
            continue;
        }
        let fd = entry.file_name().into_string().unwrap();
        let info = fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
        let flags = info
            .lines()
            .find_map(|line| line.strip_prefix("flags:"))
            .unwrap();
        return i32::from_str_radix(flags.trim(), 8).unwrap();
    }
    panic!("no open fd for {}", path.display());
}

#[test]
fn auto_falls_back_to_blocking_when_io_uring_is_disabled() {
    let (_dir, target) = with_previous("fallback", WriterKind::Auto);
    let overrides = Overrides {
        disable_io_uring: true,
        faults: None,
    };
    let (mut sink, used, reason) =
        backend::open_with(WriterKind::Auto, &target, &overrides).unwrap();
    assert_eq!(used, WriterUsed::Blocking);
    assert_eq!(
        reason.as_deref(),
        Some("io_uring_setup: Operation not permitted (os error 1) (FORKLESS_DISABLE_IO_URING=1)")
    );
    sink.write(b"fallback").unwrap();
    sink.finish().unwrap();
    assert_eq!(fs::read(target.final_path()).unwrap(), b"fallback");

    let Err(err) = backend::open_with(WriterKind::IoUring, &target, &overrides) else {
        panic!("forced io_uring must fail when disabled");
    };
    assert_eq!(err.err_op(), "io_uring_setup");
    assert_eq!(
        dir_entries(&target.dir),
        vec![FINAL.to_owned()],
        "nothing opened on failure"
    );

    let (sink, used, reason) =
        backend::open_with(WriterKind::Blocking, &target, &overrides).unwrap();
    assert_eq!((used, reason), (WriterUsed::Blocking, None));
    sink.abort();
}

#[test]
fn auto_uses_io_uring_when_available() {
    if let Err(err) = backend::probe_io_uring() {
        eprintln!("SKIPPING auto_uses_io_uring_when_available: {err}");
        return;
    }
    let dir = TestDir::new("auto");
    let (sink, used, reason) =
        backend::open_with(WriterKind::Auto, &target(&dir.path), &Overrides::default()).unwrap();
    assert_eq!((used, reason), (WriterUsed::IoUring, None));
    sink.abort();
}

#[test]
fn a_temp_name_equal_to_the_final_name_is_refused_before_touching_files() {
    let (_dir, mut target) = with_previous("same-name", WriterKind::Blocking);
    target.temp_name = FINAL.to_owned();
    let Err(err) = backend::open_with(WriterKind::Blocking, &target, &Overrides::default()) else {
        panic!("temp == final must be refused");
    };
    assert_eq!(err.err_op(), "target");
    assert_previous_intact(&target);
}

mod faulty_wrapper {
    use super::*;

    fn inner(target: &Target) -> Box<dyn Sink> {
        open_sink(WriterKind::Blocking, target, None)
    }

    #[test]
    fn write_limit_passes_the_head_through_then_fails() {
        let (_dir, target) = with_previous("wrap-write", WriterKind::Blocking);
        let plan = FaultPlan {
            fail_write_after_bytes: Some(10),
            errno: libc::ENOSPC,
            ..FaultPlan::default()
        };
        let mut sink = open_faulty(plan, inner(&target));
        sink.write(&[1; 6]).unwrap();
        let err = sink.write(&[2; 6]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "write at offset 10: No space left on device (os error 28)"
        );
        assert!(matches!(
            sink.write(&[3]),
            Err(BackendError::Poisoned { op: "write" })
        ));
        assert_eq!(sink.bytes_written(), 6);
        assert!(matches!(
            sink.finish(),
            Err(BackendError::Poisoned { op: "write" })
        ));
        assert_previous_intact(&target);
    }

    #[test]
    fn fsync_and_rename_failures_abort_the_inner_sink() {
        for (plan, op) in [
            (
                FaultPlan {
                    fail_fsync: true,
                    ..FaultPlan::default()
                },
                "fsync",
            ),
            (
                FaultPlan {
                    fail_rename: true,
                    ..FaultPlan::default()
                },
                "rename",
            ),
        ] {
            let (_dir, target) = with_previous("wrap-commit", WriterKind::Blocking);
            let mut sink = open_faulty(plan, inner(&target));
            sink.write(&[9; 5000]).unwrap();
            let err = sink.finish().unwrap_err();
            assert_eq!(err.err_op(), op);
            assert!(
                err.to_string().ends_with("Input/output error (os error 5)"),
                "{err}"
            );
            assert_previous_intact(&target);
        }
    }

    #[test]
    fn without_faults_the_wrapper_is_transparent() {
        let (_dir, target) = with_previous("wrap-none", WriterKind::Blocking);
        let mut sink = open_faulty(FaultPlan::default(), inner(&target));
        sink.write(&[4; 70_000]).unwrap();
        assert_eq!(sink.finish().unwrap(), 70_000);
        assert_eq!(fs::read(target.final_path()).unwrap(), vec![4; 70_000]);
    }
}

/// A tmpfs mounted for one test and unmounted when dropped.
struct SmallTmpfs {
    dir: TestDir,
    mount_point: PathBuf,
}

impl SmallTmpfs {
    /// Mounts a tmpfs of `size` (e.g. `1m`), or says why it cannot.
    fn mount(name: &str, size: &str) -> Result<SmallTmpfs, String> {
        let dir = TestDir::new(name);
        let mount_point = dir.path.join("mnt");
        fs::create_dir(&mount_point).unwrap();
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&mount_point)
            .output()
            .map_err(|err| format!("cannot run mount: {err}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(SmallTmpfs { dir, mount_point })
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let status = Command::new("umount").arg(&self.mount_point).status();
        if !status.is_ok_and(|status| status.success()) {
            // Lazy unmount so that the directory can still be removed.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mount_point)
                .status();
        }
        let _ = &self.dir;
    }
}

#[test]
fn a_full_filesystem_fails_with_enospc_and_keeps_the_previous_file() {
    for_each_writer(|kind| {
        let tmpfs = match SmallTmpfs::mount(&format!("enospc-{}", writer_name(kind)), "1m") {
            Ok(tmpfs) => tmpfs,
            Err(why) => {
                eprintln!(
                    "SKIPPING a_full_filesystem_fails_with_enospc_and_keeps_the_previous_file ({}): {why}",
                    writer_name(kind)
                );
                return;
            }
        };
        let target = target(&tmpfs.mount_point);
        fs::write(target.final_path(), PREVIOUS).unwrap();
        let mut sink = open_sink(kind, &target, None);
        let stream = random_bytes(2 * MIB, 8);
        let mut error = None;
        for chunk in stream.chunks(256 * 1024) {
            if let Err(err) = sink.write(chunk) {
                error = Some(err);
                break;
            }
        }
        let err = match error {
            Some(err) => {
                sink.abort();
                err
            }
            None => sink
                .finish()
                .expect_err("2 MiB cannot fit in a 1 MiB tmpfs"),
        };
        assert_eq!(err.err_op(), "write", "{kind:?}: {err}");
        assert!(
            err.to_string().contains("No space left on device"),
            "{kind:?}: {err}"
        );
        assert_eq!(
            err.os_error().and_then(io::Error::raw_os_error),
            Some(libc::ENOSPC)
        );
        assert_previous_intact(&target);
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Any split of a stream into chunks writes the same file.
    #[test]
    fn any_chunking_writes_the_stream(
        sizes in prop::collection::vec(
            prop_oneof![0usize..64, 4090usize..4100, 0usize..300_000, Just(3 * MIB)],
            0..24,
        ),
        seed in any::<u64>(),
    ) {
        for_each_writer(|kind| {
            let dir = TestDir::new(&format!("prop-{}", writer_name(kind)));
            let target = target(&dir.path);
            let mut sink = open_sink(kind, &target, None);
            let stream = write_chunks(sink.as_mut(), &sizes, seed);
            assert_eq!(sink.finish().unwrap(), stream.len() as u64);
            assert!(fs::read(target.final_path()).unwrap() == stream, "{kind:?}: {sizes:?}");
        });
    }
}
