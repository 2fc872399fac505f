//! Snapshot writer backends: where the serialized byte stream goes, and how it becomes durable.
//!
//! # Layout
//! - `mod.rs` (this file): the [`Sink`] trait, [`Target`], the writer kinds, [`open`].
//! - `error.rs`: [`BackendError`].
//! - `choose.rs`: choosing a writer (io_uring or the blocking fallback).
//! - `direct.rs`: what both writers share for `O_DIRECT`: opening the temp file, the
//!   4096-aligned buffer type, padding, and the short-write rule.
//! - `commit.rs`: the commit protocol's one implementation (used by both writers and the fork
//!   child), the temp-file guard, and stale temp files.
//! - `uring.rs`: the io_uring writer. Chunks are copied into eight 4096-aligned 1 MiB buffers
//!   that are written at increasing offsets with several writes in flight, with `O_DIRECT` where
//!   the filesystem allows it.
//! - `std.rs`: the blocking writer, the fallback when io_uring is unavailable (module name
//!   `blocking`, see below): four 2 MiB aligned buffers and `O_DIRECT` as well, written with
//!   `pwrite(2)` by a writer thread while the caller fills the next buffer.
//! - `fork.rs`: fork mode: `fork()` with the keyspace frozen, the child's synchronous writer
//!   ([`fork::ForkSink`]), its report pipe, and reaping.
//! - `fault.rs`: fault injection for tests ([`FaultPlan`], [`open_faulty`],
//!   `FORKLESS_FAULT_INJECT`).
//!
//! # Commit protocol
//! ```text
//! open:    temp = open(dir/temp_name, O_CREAT|O_TRUNC|O_CLOEXEC[|O_DIRECT], 0644)
//! write:   append chunks to temp (up to 8 MiB queued or in flight)
//! finish:  wait for every write; [O_DIRECT: ftruncate away the padding of the last block]
//!          fsync(temp)                   -- fails: remove temp, never fsync this fd again
//!          close(temp)
//!          rename(temp, dir/final_name)  -- atomic: readers see the old file or the new one
//!          fsync(dir)                    -- makes the rename durable
//! abort, or any error before the rename: wait for in-flight writes, close, remove temp
//! ```
//! The previous final file is never opened, written or removed: until the rename it is the
//! snapshot on disk, and the rename replaces it in one step.
//!
//! # Not here
//! No serialization, compression or checksums (those are upstream in the byte stream), and no
//! retries: a failed snapshot is reported and the next one starts from scratch.

use std::ffi::OsStr;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

mod choose;
mod commit;
mod direct;
mod error;
pub mod fault;
pub mod fork;
// The blocking writer lives in `std.rs`: backends are named after their strategy, here
// plain `std::fs`. A module named `std` would shadow the standard library in every path of this
// file, so it is declared under the name `blocking`.
#[path = "std.rs"]
mod blocking;
mod uring;

pub use fault::{FaultPlan, open_faulty};

pub use commit::remove_stale_temp_files;
pub use error::BackendError;

use choose::read_io_uring_disabled_sysctl;
pub(crate) use choose::{Choice, choose_writer};
pub(crate) use commit::{TempGuard, commit};
pub(crate) use direct::{ALIGN, AlignedBuf, Progress, open_temp, padded_len, progress_after};

/// The writer the configuration asks for (`snapshot-writer auto|io_uring|blocking`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterKind {
    /// io_uring when the kernel and the sandbox allow it, otherwise the blocking writer.
    Auto,
    /// io_uring or an error.
    IoUring,
    /// The blocking writer.
    Blocking,
}

impl WriterKind {
    /// The configuration spelling: `auto`, `io_uring` or `blocking`.
    pub fn as_str(self) -> &'static str {
        match self {
            WriterKind::Auto => "auto",
            WriterKind::IoUring => "io_uring",
            WriterKind::Blocking => "blocking",
        }
    }
}

impl fmt::Display for WriterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WriterKind {
    type Err = ParseWriterKindError;

    /// Parses the configuration spelling, ignoring ASCII case as redis.conf does.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        [WriterKind::Auto, WriterKind::IoUring, WriterKind::Blocking]
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(value))
            .ok_or_else(|| ParseWriterKindError {
                value: value.to_owned(),
            })
    }
}

/// A `snapshot-writer` value that is not `auto`, `io_uring` or `blocking`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid snapshot-writer {value:?}: expected auto, io_uring or blocking")]
pub struct ParseWriterKindError {
    /// The rejected value.
    pub value: String,
}

/// The writer [`open`] actually chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterUsed {
    /// The io_uring writer.
    IoUring,
    /// The blocking writer.
    Blocking,
}

impl WriterUsed {
    /// The name shown in INFO and in the log: `io_uring` or `blocking`.
    pub fn as_str(self) -> &'static str {
        match self {
            WriterUsed::IoUring => "io_uring",
            WriterUsed::Blocking => "blocking",
        }
    }
}

impl fmt::Display for WriterUsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the snapshot goes: the final path (`dir/final_name`) and the temp file in the same
/// directory (`dir/temp_name`, e.g. `temp-<pid>-<n>.rdb`), so that the rename never crosses a
/// filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The directory that holds both files (`dir`).
    pub dir: PathBuf,
    /// The snapshot's name (`dbfilename`).
    pub final_name: String,
    /// The name the snapshot is written under until it is complete and durable.
    pub temp_name: String,
}

impl Target {
    /// A target in `dir`.
    pub fn new(
        dir: impl Into<PathBuf>,
        final_name: impl Into<String>,
        temp_name: impl Into<String>,
    ) -> Self {
        Target {
            dir: dir.into(),
            final_name: final_name.into(),
            temp_name: temp_name.into(),
        }
    }

    /// `dir/final_name`.
    pub fn final_path(&self) -> PathBuf {
        self.dir.join(&self.final_name)
    }

    /// `dir/temp_name`.
    pub fn temp_path(&self) -> PathBuf {
        self.dir.join(&self.temp_name)
    }

    /// Both names must be plain file names and differ: a temp name equal to the final name
    /// would make `abort` remove the previous snapshot.
    fn validate(&self) -> Result<(), BackendError> {
        let plain =
            |name: &str| !name.is_empty() && name != "." && name != ".." && !name.contains('/');
        if !plain(&self.final_name) {
            return Err(BackendError::InvalidTarget {
                reason: "final name is not a plain file name",
            });
        }
        if !plain(&self.temp_name) {
            return Err(BackendError::InvalidTarget {
                reason: "temp name is not a plain file name",
            });
        }
        if self.final_name == self.temp_name {
            return Err(BackendError::InvalidTarget {
                reason: "temp name equals the final name",
            });
        }
        Ok(())
    }
}

/// One snapshot file being written. Chunks arrive in stream order from a single thread.
///
/// Dropping a sink without calling [`Sink::finish`] or [`Sink::abort`] aborts it.
pub trait Sink: Send {
    /// Appends `chunk`. Ownership passes to the sink because io_uring needs owned buffers; the
    /// blocking writer just writes it.
    ///
    /// An error poisons the sink: later calls return [`BackendError::Poisoned`], and the caller
    /// must `abort` (or `finish`, which then fails and cleans up the same way). Errors of
    /// earlier asynchronous writes surface in a later `write` or in `finish`.
    fn write(&mut self, chunk: &[u8]) -> Result<(), BackendError>;

    /// Bytes accepted so far.
    fn bytes_written(&self) -> u64;

    /// Waits for everything in flight, fsyncs the file, renames temp over final and fsyncs the
    /// directory. Returns the file's length. On any error the temp file is removed and the
    /// previous final file is untouched, except when only the directory fsync fails: the rename
    /// has then happened and the new file is complete, but its durability is unknown, so the
    /// snapshot is still reported as failed. fsync is never retried on the same fd.
    fn finish(self: Box<Self>) -> Result<u64, BackendError>;

    /// Abandons the snapshot: waits for in-flight writes, closes and removes the temp file.
    /// Infallible: problems are logged.
    fn abort(self: Box<Self>);
}
/// Process-level switches that change what [`open`] does, normally read from the environment
/// by [`Overrides::from_env`]. Both are test and CI hooks, not configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// True if and only if io_uring setup must fail as if with EPERM
    /// (`FORKLESS_DISABLE_IO_URING=1`), so that `Auto` takes the fallback path.
    pub disable_io_uring: bool,
    /// Failures to inject into the writer (`FORKLESS_FAULT_INJECT`, test-only).
    pub faults: Option<FaultPlan>,
}

impl Overrides {
    /// Set to `1` to make io_uring setup fail as if with EPERM.
    pub const DISABLE_IO_URING_ENV: &'static str = "FORKLESS_DISABLE_IO_URING";
    /// Test-only: a [`FaultPlan`] spec such as `write_after=1048576,errno=28`; see
    /// [`FaultPlan::parse`].
    pub const FAULT_INJECT_ENV: &'static str = "FORKLESS_FAULT_INJECT";

    /// Reads [`Self::DISABLE_IO_URING_ENV`] and [`Self::FAULT_INJECT_ENV`].
    ///
    /// This is the only place in the crate that reads the environment (docs/CONTRIBUTING.md,
    /// "Layout and dependencies", keeps env access in `server`; the contract for [`open`] asks
    /// for these two test hooks, and keeping them in one function lets the server take them
    /// over without touching the writers).
    pub fn from_env() -> Result<Self, BackendError> {
        Self::from_values(
            std::env::var_os(Self::DISABLE_IO_URING_ENV).as_deref(),
            std::env::var_os(Self::FAULT_INJECT_ENV).as_deref(),
        )
    }

    /// Builds the overrides from the two variables' values (`None` when unset), so that tests
    /// need not mutate the process environment.
    pub fn from_values(
        disable_io_uring: Option<&OsStr>,
        fault_inject: Option<&OsStr>,
    ) -> Result<Self, BackendError> {
        let disable_io_uring = disable_io_uring.is_some_and(|value| value == "1");
        let faults = match fault_inject {
            None => None,
            Some(spec) if spec.is_empty() => None,
            Some(spec) => Some(FaultPlan::parse(&spec.to_string_lossy())?),
        };
        Ok(Overrides {
            disable_io_uring,
            faults,
        })
    }
}

/// What [`open`] returns: the sink, the writer it uses, and why io_uring was not used when
/// `Auto` fell back to the blocking writer.
pub type Opened = (Box<dyn Sink>, WriterUsed, Option<String>);

/// Opens the temp file with the requested writer. See the module docs for the protocol.
///
/// `Auto` tries io_uring and falls back to the blocking writer when setup fails with ENOSYS,
/// EPERM, EACCES, EINVAL or ENOMEM, or when `/proc/sys/kernel/io_uring_disabled` is 2; the
/// returned string is then the reason, for the log and INFO, e.g.
/// `io_uring_setup: Operation not permitted (os error 1)`. Forced `IoUring` that cannot be set
/// up is an error. The environment hooks of [`Overrides::from_env`] apply.
pub fn open(kind: WriterKind, target: &Target) -> Result<Opened, BackendError> {
    open_with(kind, target, &Overrides::from_env()?)
}

/// [`open`] with explicit [`Overrides`] instead of the environment's.
pub fn open_with(
    kind: WriterKind,
    target: &Target,
    overrides: &Overrides,
) -> Result<Opened, BackendError> {
    target.validate()?;
    let faults = fault::Faults::new(overrides.faults.clone());
    let sysctl = read_io_uring_disabled_sysctl();
    match choose_writer(
        kind,
        overrides.disable_io_uring,
        sysctl.as_deref(),
        uring::setup,
    )? {
        Choice::IoUring(ring) => {
            let sink = uring::UringSink::create(ring, target, faults)?;
            Ok((Box::new(sink), WriterUsed::IoUring, None))
        }
        Choice::Blocking { fallback_reason } => {
            if let Some(reason) = &fallback_reason {
                tracing::debug!(%reason, "io_uring unavailable, using the blocking snapshot writer");
            }
            let sink = blocking::StdSink::create(target, faults)?;
            Ok((Box::new(sink), WriterUsed::Blocking, fallback_reason))
        }
    }
}

/// Checks whether the io_uring writer can be set up in this process, honouring the
/// environment's [`Overrides`]. `Ok` means `open(WriterKind::IoUring, ..)` will not fail at
/// setup; the error is the one that forced `IoUring` would return.
pub fn probe_io_uring() -> Result<(), BackendError> {
    let overrides = Overrides::from_env()?;
    let sysctl = read_io_uring_disabled_sysctl();
    choose_writer(
        WriterKind::IoUring,
        overrides.disable_io_uring,
        sysctl.as_deref(),
        uring::setup,
    )
    .map(drop)
}
#[cfg(test)]
mod tests {
    use super::commit::temp_file_pid;
    use super::direct::{O_DIRECT, open_temp_with};
    use std::fs::{self, File};
    use std::io;

    #[test]
    fn temp_file_names_are_recognised_by_their_pid() {
        assert_eq!(temp_file_pid("temp-123.rdb"), Some(123));
        assert_eq!(temp_file_pid("temp-123-7.rdb"), Some(123));
        for other in [
            "dump.rdb",
            "temp-.rdb",
            "temp-12a.rdb",
            "temp-1-.rdb",
            "temp-1-2-3.rdb",
            "temp-1.rdb.bak",
            "xtemp-1.rdb",
        ] {
            assert_eq!(temp_file_pid(other), None, "{other}");
        }
    }

    #[test]
    fn stale_temp_files_of_dead_processes_are_removed() {
        let dir = std::env::temp_dir().join(format!(
            "forkless-stale-temp-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let own = std::process::id();
        // pid 1 is alive (init); a pid above pid_max is never alive.
        let names = [
            format!("temp-{own}-0.rdb"),
            "temp-4194305.rdb".to_string(),
            "temp-4194306-3.rdb".to_string(),
            "temp-1-0.rdb".to_string(),
            "dump.rdb".to_string(),
        ];
        for name in &names {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        let mut removed: Vec<String> = super::remove_stale_temp_files(&dir)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        removed.sort();
        let mut expected = names[..3].to_vec();
        expected.sort();
        assert_eq!(removed, expected);
        assert!(dir.join("temp-1-0.rdb").exists());
        assert!(dir.join("dump.rdb").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    use super::*;

    fn setup_err(errno: i32) -> impl FnOnce() -> io::Result<()> {
        move || Err(io::Error::from_raw_os_error(errno))
    }

    fn setup_never_called() -> impl FnOnce() -> io::Result<()> {
        || panic!("setup must not be called")
    }

    #[test]
    fn blocking_never_tries_io_uring() {
        let choice = choose_writer(WriterKind::Blocking, true, Some("2"), setup_never_called());
        assert!(matches!(
            choice,
            Ok(Choice::Blocking {
                fallback_reason: None
            })
        ));
    }

    #[test]
    fn auto_uses_io_uring_when_setup_works() {
        let choice = choose_writer(WriterKind::Auto, false, Some("0\n"), || Ok(7));
        assert!(matches!(choice, Ok(Choice::IoUring(7))));
        let choice = choose_writer(WriterKind::IoUring, false, None, || Ok(7));
        assert!(matches!(choice, Ok(Choice::IoUring(7))));
    }

    #[test]
    fn env_switch_forces_fallback_as_if_eperm() {
        let choice = choose_writer(WriterKind::Auto, true, Some("0"), setup_never_called());
        let Ok(Choice::Blocking {
            fallback_reason: Some(reason),
        }) = choice
        else {
            panic!("expected a fallback, got {choice:?}");
        };
        assert_eq!(
            reason,
            "io_uring_setup: Operation not permitted (os error 1) (FORKLESS_DISABLE_IO_URING=1)"
        );
    }

    #[test]
    fn env_switch_makes_forced_io_uring_fail() {
        let choice = choose_writer(WriterKind::IoUring, true, None, setup_never_called());
        let Err(err) = choice else {
            panic!("expected an error, got {choice:?}")
        };
        assert_eq!(err.err_op(), "io_uring_setup");
        assert_eq!(
            err.os_error().and_then(io::Error::raw_os_error),
            Some(libc::EPERM)
        );
    }

    #[test]
    fn sysctl_two_skips_setup() {
        let choice = choose_writer(WriterKind::Auto, false, Some("2\n"), setup_never_called());
        let Ok(Choice::Blocking {
            fallback_reason: Some(reason),
        }) = choice
        else {
            panic!("expected a fallback, got {choice:?}");
        };
        assert!(reason.ends_with("(kernel.io_uring_disabled=2)"), "{reason}");
    }

    #[test]
    fn sysctl_one_names_itself_on_eperm_only() {
        let choice = choose_writer(WriterKind::Auto, false, Some("1"), setup_err(libc::EPERM));
        let Ok(Choice::Blocking {
            fallback_reason: Some(reason),
        }) = choice
        else {
            panic!("expected a fallback, got {choice:?}");
        };
        assert!(reason.ends_with("(kernel.io_uring_disabled=1)"), "{reason}");
        let choice = choose_writer(WriterKind::Auto, false, Some("1"), setup_err(libc::ENOMEM));
        let Ok(Choice::Blocking {
            fallback_reason: Some(reason),
        }) = choice
        else {
            panic!("expected a fallback, got {choice:?}");
        };
        assert_eq!(
            reason,
            "io_uring_setup: Cannot allocate memory (os error 12)"
        );
    }

    #[test]
    fn auto_falls_back_on_each_unavailable_errno() {
        for errno in [
            libc::ENOSYS,
            libc::EPERM,
            libc::EACCES,
            libc::EINVAL,
            libc::ENOMEM,
        ] {
            let choice = choose_writer(WriterKind::Auto, false, None, setup_err(errno));
            let Ok(Choice::Blocking {
                fallback_reason: Some(reason),
            }) = choice
            else {
                panic!("errno {errno}: expected a fallback, got {choice:?}");
            };
            let os_text = io::Error::from_raw_os_error(errno).to_string();
            assert_eq!(reason, format!("io_uring_setup: {os_text}"));
        }
    }

    #[test]
    fn auto_reports_other_setup_errors() {
        let choice = choose_writer(WriterKind::Auto, false, None, setup_err(libc::EMFILE));
        let Err(err) = choice else {
            panic!("expected an error, got {choice:?}")
        };
        assert_eq!(
            err.os_error().and_then(io::Error::raw_os_error),
            Some(libc::EMFILE)
        );
    }

    #[test]
    fn forced_io_uring_does_not_fall_back() {
        for errno in [libc::ENOSYS, libc::EPERM] {
            let choice = choose_writer(WriterKind::IoUring, false, None, setup_err(errno));
            assert!(
                matches!(choice, Err(BackendError::IoUringSetup { .. })),
                "{choice:?}"
            );
        }
    }

    #[test]
    fn open_temp_drops_o_direct_on_einval_only() {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("forkless-open-temp-{}", std::process::id()));
        let calls = std::cell::RefCell::new(Vec::new());
        let (file, direct) = open_temp_with(&path, true, |path, flags| {
            calls.borrow_mut().push(flags);
            if flags & O_DIRECT != 0 {
                Err(io::Error::from_raw_os_error(libc::EINVAL))
            } else {
                File::create(path)
            }
        })
        .unwrap();
        drop(file);
        fs::remove_file(&path).unwrap();
        assert!(!direct);
        assert_eq!(*calls.borrow(), vec![O_DIRECT, 0]);

        let result = open_temp_with(&path, true, |_, _| {
            Err(io::Error::from_raw_os_error(libc::EACCES))
        });
        let Err(err) = result else {
            panic!("expected an error")
        };
        assert_eq!(err.err_op(), "open");
        assert!(err.to_string().contains("Permission denied"), "{err}");
    }

    #[test]
    fn aligned_buffers_fill_pad_and_stay_aligned() {
        for capacity in [4096, 10_000, 1 << 20] {
            let mut buf = AlignedBuf::new(capacity);
            assert_eq!(buf.as_ptr().addr() % ALIGN, 0);
            let data: Vec<u8> = (0..capacity + 10).map(|i| (i % 251) as u8).collect();
            assert_eq!(buf.fill_from(&data[..1]), 1);
            assert_eq!(buf.fill_from(&data[1..]), capacity - 1);
            assert!(buf.is_full());
            assert_eq!(buf.filled(), &data[..capacity]);
            assert_eq!(buf.fill_from(&data), 0);
        }
    }

    #[test]
    fn padding_is_zeroed_over_stale_data() {
        let mut buf = AlignedBuf::new(3 * ALIGN);
        buf.fill_from(&[0xAA; 3 * ALIGN]);
        buf.clear();
        buf.fill_from(&[1; 5]);
        buf.pad_to(padded_len(5, true));
        assert_eq!(buf.len(), ALIGN);
        assert_eq!(&buf.filled()[..5], &[1; 5]);
        assert!(buf.filled()[5..].iter().all(|&b| b == 0));
        buf.pad_to(3 * ALIGN + 1);
        assert_eq!(buf.len(), 3 * ALIGN, "padding stops at the capacity");
        assert_eq!(padded_len(5, false), 5);
        assert_eq!(padded_len(8192, true), 8192);
    }

    #[test]
    fn short_writes_resume_aligned_under_o_direct() {
        let mib = 1 << 20;
        assert_eq!(progress_after(0, 5000, mib, true), Progress::Resume(4096));
        assert_eq!(progress_after(4096, 100, mib, true), Progress::Stuck);
        assert_eq!(progress_after(0, 5000, mib, false), Progress::Resume(5000));
        assert_eq!(progress_after(5000, 0, mib, false), Progress::Stuck);
        assert_eq!(progress_after(4096, mib - 4096, mib, true), Progress::Done);
        // Padding beyond the data need not reach the disk.
        assert_eq!(progress_after(0, 5000, 5000, true), Progress::Done);
    }

    #[test]
    fn target_validation() {
        assert!(
            Target::new("/tmp", "dump.rdb", "temp-1-1.rdb")
                .validate()
                .is_ok()
        );
        for (final_name, temp_name) in [
            ("dump.rdb", "dump.rdb"),
            ("", "t"),
            ("d", ""),
            ("a/b", "t"),
            ("d", ".."),
            ("d", "x/y"),
        ] {
            let target = Target::new("/tmp", final_name, temp_name);
            assert!(
                matches!(target.validate(), Err(BackendError::InvalidTarget { .. })),
                "{target:?}"
            );
        }
    }

    #[test]
    fn writer_kind_round_trips_through_its_spelling() {
        for kind in [WriterKind::Auto, WriterKind::IoUring, WriterKind::Blocking] {
            assert_eq!(kind.as_str().parse::<WriterKind>(), Ok(kind));
        }
        assert_eq!("IO_URING".parse::<WriterKind>(), Ok(WriterKind::IoUring));
        let err = "uring".parse::<WriterKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid snapshot-writer \"uring\": expected auto, io_uring or blocking"
        );
        assert_eq!(WriterUsed::IoUring.as_str(), "io_uring");
        assert_eq!(WriterUsed::Blocking.as_str(), "blocking");
    }

    #[test]
    fn overrides_from_values() {
        let none = Overrides::from_values(None, None).unwrap();
        assert_eq!(none, Overrides::default());
        let off = Overrides::from_values(Some(OsStr::new("0")), Some(OsStr::new(""))).unwrap();
        assert_eq!(off, Overrides::default());
        let on = Overrides::from_values(
            Some(OsStr::new("1")),
            Some(OsStr::new("write_after=1048576,errno=28")),
        )
        .unwrap();
        assert!(on.disable_io_uring);
        let plan = on.faults.unwrap();
        assert_eq!(plan.fail_write_after_bytes, Some(1_048_576));
        assert_eq!(plan.errno, libc::ENOSPC);
        let bad = Overrides::from_values(None, Some(OsStr::new("write_after=lots")));
        assert!(
            matches!(bad, Err(BackendError::FaultSpec { .. })),
            "{bad:?}"
        );
    }
}
