//! Snapshot writer backends: where the serialized byte stream goes, and how it becomes durable.
//!
//! # Layout
//! - `mod.rs` (this file): the [`Sink`] trait, [`open`], the choice between the writers, and
//!   what both writers share: the commit protocol, the temp-file guard, the 4096-aligned buffer
//!   type and the short-write rule.
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
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub mod fault;
pub mod fork;
// The blocking writer lives in `std.rs`: STYLE §2 names backends after their strategy, here
// plain `std::fs`. A module named `std` would shadow the standard library in every path of this
// file, so it is declared under the name `blocking`.
#[path = "std.rs"]
mod blocking;
mod uring;

pub use fault::{FaultPlan, open_faulty};

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

/// A failed step of writing a snapshot. `Display` names the failing operation and carries the
/// OS error text; [`BackendError::err_op`] gives the operation alone, for the `err_op` log field.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The [`Target`] is unusable.
    #[error("invalid snapshot target: {reason}")]
    InvalidTarget {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Creating the temp file failed.
    #[error("open {}: {source}", path.display())]
    Open {
        /// The temp file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// io_uring cannot be set up (and the blocking writer was not acceptable, or `Auto` met an
    /// error that is not one of the "unavailable" errors).
    #[error("io_uring_setup: {source}{}", blocked_by_suffix(*blocked_by))]
    IoUringSetup {
        /// The error setup returned, or would return.
        source: io::Error,
        /// The switch that forbids io_uring without asking the kernel, if any:
        /// `FORKLESS_DISABLE_IO_URING=1` or `kernel.io_uring_disabled=2`.
        blocked_by: Option<&'static str>,
    },
    /// Submitting to or waiting on the ring failed; in-flight writes can no longer be tracked.
    #[error("io_uring_enter: {source}")]
    IoUringEnter {
        /// The OS error.
        source: io::Error,
    },
    /// The blocking writer's thread could not be started.
    #[error("spawn snapshot writer thread: {source}")]
    SpawnWriter {
        /// The OS error.
        source: io::Error,
    },
    /// A write failed.
    #[error("write at offset {offset}: {source}")]
    Write {
        /// The file offset where the failed write started.
        offset: u64,
        /// The OS error.
        source: io::Error,
    },
    /// The kernel accepted none of a write's bytes without reporting an error.
    #[error("write at offset {offset}: no progress with {remaining} bytes left")]
    ShortWrite {
        /// The file offset the write could not get past.
        offset: u64,
        /// Bytes of that write still unwritten.
        remaining: u64,
    },
    /// Cutting the padding of the last `O_DIRECT` block failed.
    #[error("ftruncate to {len} bytes: {source}")]
    Truncate {
        /// The snapshot's real length.
        len: u64,
        /// The OS error.
        source: io::Error,
    },
    /// fsync of the temp file failed; the fd is closed, never synced again.
    #[error("fsync {}: {source}", path.display())]
    Fsync {
        /// The temp file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Renaming the temp file over the final name failed.
    #[error("rename {} to {}: {source}", from.display(), to.display())]
    Rename {
        /// The temp file.
        from: PathBuf,
        /// The final file.
        to: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// fsync of the directory after the rename failed.
    #[error("fsync directory {}: {source}", dir.display())]
    SyncDir {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// An earlier error (reported then) stopped this sink; the snapshot must be aborted.
    #[error("snapshot writer stopped by an earlier {op} error")]
    Poisoned {
        /// [`BackendError::err_op`] of the earlier error.
        op: &'static str,
    },
    /// `FORKLESS_FAULT_INJECT` (test-only) could not be parsed.
    #[error("invalid FORKLESS_FAULT_INJECT {spec:?}: {reason}")]
    FaultSpec {
        /// The variable's value.
        spec: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

fn blocked_by_suffix(blocked_by: Option<&'static str>) -> String {
    blocked_by.map_or_else(String::new, |switch| format!(" ({switch})"))
}

impl BackendError {
    /// The failing operation, for the `err_op` log field: `target`, `open`, `io_uring_setup`,
    /// `io_uring_enter`, `thread_spawn`, `write`, `ftruncate`, `fsync`, `rename`, `fsync_dir` or
    /// `fault_inject`.
    pub fn err_op(&self) -> &'static str {
        match self {
            BackendError::InvalidTarget { .. } => "target",
            BackendError::Open { .. } => "open",
            BackendError::IoUringSetup { .. } => "io_uring_setup",
            BackendError::IoUringEnter { .. } => "io_uring_enter",
            BackendError::SpawnWriter { .. } => "thread_spawn",
            BackendError::Write { .. } | BackendError::ShortWrite { .. } => "write",
            BackendError::Truncate { .. } => "ftruncate",
            BackendError::Fsync { .. } => "fsync",
            BackendError::Rename { .. } => "rename",
            BackendError::SyncDir { .. } => "fsync_dir",
            BackendError::Poisoned { op } => op,
            BackendError::FaultSpec { .. } => "fault_inject",
        }
    }

    /// The OS error behind this error, if there is one (e.g. to tell ENOSPC from EIO).
    pub fn os_error(&self) -> Option<&io::Error> {
        match self {
            BackendError::Open { source, .. }
            | BackendError::IoUringSetup { source, .. }
            | BackendError::IoUringEnter { source }
            | BackendError::SpawnWriter { source }
            | BackendError::Write { source, .. }
            | BackendError::Truncate { source, .. }
            | BackendError::Fsync { source, .. }
            | BackendError::Rename { source, .. }
            | BackendError::SyncDir { source, .. } => Some(source),
            BackendError::InvalidTarget { .. }
            | BackendError::ShortWrite { .. }
            | BackendError::Poisoned { .. }
            | BackendError::FaultSpec { .. } => None,
        }
    }
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
    /// This is the only place in the crate that reads the environment (STYLE §1 keeps env
    /// access in `server`; the contract for [`open`] asks for these two test hooks, and keeping
    /// them in one function lets the server take them over without touching the writers).
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

const IO_URING_DISABLED_SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

fn read_io_uring_disabled_sysctl() -> Option<String> {
    fs::read_to_string(IO_URING_DISABLED_SYSCTL).ok()
}

/// The outcome of [`choose_writer`].
#[derive(Debug)]
pub(crate) enum Choice<R> {
    /// Use io_uring with this ring.
    IoUring(R),
    /// Use the blocking writer; `fallback_reason` is set when io_uring was wanted (`Auto`) but
    /// is unavailable.
    Blocking { fallback_reason: Option<String> },
}

/// Decides which writer to use. Pure apart from calling `setup`, which it calls at most once
/// and only when io_uring is allowed: `disable_io_uring` is [`Overrides::disable_io_uring`],
/// `sysctl` the content of `/proc/sys/kernel/io_uring_disabled` (absent on older kernels).
///
/// `kernel.io_uring_disabled=2` disables io_uring for everyone, so setup is not even tried;
/// with `1` only privileged processes may use it, so setup is tried and an EPERM names the
/// sysctl.
pub(crate) fn choose_writer<R>(
    kind: WriterKind,
    disable_io_uring: bool,
    sysctl: Option<&str>,
    setup: impl FnOnce() -> io::Result<R>,
) -> Result<Choice<R>, BackendError> {
    if kind == WriterKind::Blocking {
        return Ok(Choice::Blocking {
            fallback_reason: None,
        });
    }
    let sysctl = sysctl.map(str::trim);
    let (result, blocked_by) = if disable_io_uring {
        (
            Err(io::Error::from_raw_os_error(libc::EPERM)),
            Some("FORKLESS_DISABLE_IO_URING=1"),
        )
    } else if sysctl == Some("2") {
        (
            Err(io::Error::from_raw_os_error(libc::EPERM)),
            Some("kernel.io_uring_disabled=2"),
        )
    } else {
        let result = setup();
        let restricted = sysctl == Some("1")
            && result.as_ref().err().and_then(io::Error::raw_os_error) == Some(libc::EPERM);
        (result, restricted.then_some("kernel.io_uring_disabled=1"))
    };
    let source = match result {
        Ok(ring) => return Ok(Choice::IoUring(ring)),
        Err(source) => source,
    };
    let unavailable = matches!(
        source.raw_os_error(),
        Some(libc::ENOSYS | libc::EPERM | libc::EACCES | libc::EINVAL | libc::ENOMEM)
    );
    let error = BackendError::IoUringSetup { source, blocked_by };
    if kind == WriterKind::Auto && unavailable {
        Ok(Choice::Blocking {
            fallback_reason: Some(error.to_string()),
        })
    } else {
        Err(error)
    }
}

/// The `O_DIRECT` flag, for callers that ask [`open_temp`] for it.
pub(crate) const O_DIRECT: i32 = libc::O_DIRECT;

/// Creates (or truncates) the temp file for writing, mode 0644, close-on-exec (std sets
/// `O_CLOEXEC` on every open). With `direct`, `O_DIRECT` is tried first and dropped if the
/// filesystem refuses it with EINVAL. Returns the file and whether `O_DIRECT` is on.
pub(crate) fn open_temp(path: &Path, direct: bool) -> Result<(File, bool), BackendError> {
    open_temp_with(path, direct, |path, flags| {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(flags)
            .open(path)
    })
}

/// [`open_temp`] with the `open(2)` call injected, so that the EINVAL fallback is testable on
/// filesystems that accept `O_DIRECT`.
fn open_temp_with(
    path: &Path,
    direct: bool,
    open: impl Fn(&Path, i32) -> io::Result<File>,
) -> Result<(File, bool), BackendError> {
    let open_error = |source| BackendError::Open {
        path: path.to_owned(),
        source,
    };
    if direct {
        match open(path, O_DIRECT) {
            Ok(file) => return Ok((file, true)),
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!(
                    path = %path.display(),
                    "filesystem refuses O_DIRECT, writing the snapshot through the page cache"
                );
            }
            Err(err) => return Err(open_error(err)),
        }
    }
    // The EINVAL above may come after the file was created; O_TRUNC makes that harmless, and
    // the caller's temp guard removes it if this open fails too.
    open(path, 0).map(|file| (file, false)).map_err(open_error)
}

/// Alignment of buffer addresses, write offsets and write lengths under `O_DIRECT`: 4096 covers
/// devices with 512-byte and 4 KiB logical blocks.
pub(crate) const ALIGN: usize = 4096;

/// A fixed-size heap buffer whose first byte is [`ALIGN`]-aligned, as `O_DIRECT` requires.
///
/// The "aligned Vec" trick: the allocation is [`ALIGN`] bytes larger than needed and the buffer
/// starts at the first aligned address inside it. It is all safe code, the storage is never
/// reallocated (so its address is stable while the kernel reads from it), and `vec![0; n]`
/// gets lazily zeroed pages from the allocator.
pub(crate) struct AlignedBuf {
    storage: Box<[u8]>,
    /// Offset of the aligned start in `storage`.
    start: usize,
    capacity: usize,
    /// Bytes filled, from the start.
    len: usize,
}

impl AlignedBuf {
    pub(crate) fn new(capacity: usize) -> Self {
        let storage = vec![0u8; capacity + ALIGN].into_boxed_slice();
        let addr = storage.as_ptr().addr();
        let start = addr.next_multiple_of(ALIGN) - addr;
        AlignedBuf {
            storage,
            start,
            capacity,
            len: 0,
        }
    }

    /// The whole buffer, `capacity` bytes from the aligned start.
    fn region_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.start, self.start + self.capacity);
        self.storage.get_mut(start..end).unwrap_or_default()
    }

    /// The filled bytes.
    pub(crate) fn filled(&self) -> &[u8] {
        self.storage
            .get(self.start..self.start + self.len)
            .unwrap_or_default()
    }

    /// Address of the aligned start: what the kernel is given.
    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.filled().as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == self.capacity
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Copies as much of `data` as fits; returns how much that was.
    pub(crate) fn fill_from(&mut self, data: &[u8]) -> usize {
        let len = self.len;
        let n = data.len().min(self.capacity - len);
        if let (Some(dst), Some(src)) = (self.region_mut().get_mut(len..len + n), data.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.len += n;
        n
    }

    /// Zero-fills from the end of the data up to `new_len` (at most the capacity): the bytes
    /// there may hold data of the buffer's previous use.
    pub(crate) fn pad_to(&mut self, new_len: usize) {
        let (len, new_len) = (self.len, new_len.min(self.capacity));
        if let Some(padding) = self.region_mut().get_mut(len..new_len) {
            padding.fill(0);
            self.len = new_len;
        }
    }
}

/// The length to write for a last buffer holding `data_len` bytes: rounded up to [`ALIGN`]
/// under `O_DIRECT`, where `finish` later truncates the padding away.
pub(crate) fn padded_len(data_len: usize, direct: bool) -> usize {
    if direct {
        data_len.next_multiple_of(ALIGN)
    } else {
        data_len
    }
}

/// What to do after a write that started at byte `start` of a buffer wrote `written` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// All `data_len` data bytes are written (padding beyond them need not be).
    Done,
    /// Write again from this byte of the buffer. Under `O_DIRECT` it is rounded down to
    /// [`ALIGN`], rewriting up to 4095 bytes with the same data.
    Resume(usize),
    /// No progress is possible: a zero-byte write, or less than one aligned block.
    Stuck,
}

pub(crate) fn progress_after(
    start: usize,
    written: usize,
    data_len: usize,
    direct: bool,
) -> Progress {
    let reached = start + written;
    if reached >= data_len {
        return Progress::Done;
    }
    let resume = if direct {
        reached - reached % ALIGN
    } else {
        reached
    };
    if resume > start {
        Progress::Resume(resume)
    } else {
        Progress::Stuck
    }
}

/// Removes the temp file when dropped while armed: every path that does not reach the rename
/// (error, abort, drop) ends with the temp file gone.
#[derive(Debug)]
pub(crate) struct TempGuard {
    path: PathBuf,
    armed: bool,
    /// Whether a removal (or a failure to remove) is logged: never in a fork child.
    logs: bool,
}

impl TempGuard {
    /// A guard for `path`, armed, that logs what it removes.
    pub(crate) fn new(path: PathBuf) -> Self {
        TempGuard {
            path,
            armed: true,
            logs: true,
        }
    }

    /// A guard for `path`, armed, that logs nothing (a fork child's: see `fork.rs`).
    pub(crate) fn silent(path: PathBuf) -> Self {
        TempGuard {
            path,
            armed: true,
            logs: false,
        }
    }

    /// The temp file has been renamed: nothing to remove any more.
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let removed = fs::remove_file(&self.path);
        if !self.logs {
            return;
        }
        match removed {
            Ok(()) => tracing::debug!(path = %self.path.display(), "removed snapshot temp file"),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => tracing::warn!(
                path = %self.path.display(),
                err_op = "unlink",
                error = %err,
                "could not remove snapshot temp file"
            ),
        }
    }
}

/// The end of the commit protocol, the one implementation for every writer (io_uring, blocking,
/// and the fork child's) once all data is written to `file`: fsync, close, rename, fsync the
/// directory. The temp file stays for `temp`'s owner to remove unless the rename happened. It
/// logs nothing, so a fork child may run it; callers report its errors.
pub(crate) fn commit(
    file: File,
    target: &Target,
    faults: &fault::Faults,
    temp: &mut TempGuard,
) -> Result<(), BackendError> {
    let temp_path = target.temp_path();
    // One fsync per fd, never retried (STYLE §3): after a failed fsync the kernel may have
    // dropped the dirty pages and marked them clean, so a second fsync could report success
    // for data that is gone.
    let synced = match faults.fsync_error() {
        Some(injected) => Err(injected),
        None => file.sync_all(),
    };
    drop(file);
    synced.map_err(|source| BackendError::Fsync {
        path: temp_path.clone(),
        source,
    })?;

    let final_path = target.final_path();
    let renamed = match faults.rename_error() {
        Some(injected) => Err(injected),
        None => fs::rename(&temp_path, &final_path),
    };
    renamed.map_err(|source| BackendError::Rename {
        from: temp_path,
        to: final_path,
        source,
    })?;
    temp.disarm();

    sync_dir(&target.dir).map_err(|source| BackendError::SyncDir {
        dir: target.dir.clone(),
        source,
    })
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The process id in a snapshot temp file's name: `temp-<pid>.rdb` (Redis's, and a fork child's)
/// or `temp-<pid>-<n>.rdb` (forkless's epoch saves). None for any other name.
fn temp_file_pid(name: &str) -> Option<u32> {
    let stem = name.strip_prefix("temp-")?.strip_suffix(".rdb")?;
    let (pid, counter) = match stem.split_once('-') {
        Some((pid, counter)) => (pid, Some(counter)),
        None => (stem, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || counter.is_some_and(|c| !digits(c)) {
        return None;
    }
    pid.parse().ok()
}

/// Removes the temp files that saves of dead processes left in `dir` (a `kill -9` during a
/// save leaves one behind): files named like [`temp_file_pid`] whose process is gone or is
/// this one (a new process cannot own a save yet). Files of live processes, which may be
/// another server's save in progress, are left alone. Returns the files removed; errors are
/// only logged, because a stale file costs disk space, not correctness.
pub fn remove_stale_temp_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let own = std::process::id();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_file_pid) else {
            continue;
        };
        let alive = pid != own && Path::new(&format!("/proc/{pid}")).exists();
        if alive || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed.push(entry.path()),
            Err(err) => tracing::warn!(
                "could not remove the stale snapshot temp file {}: {err}",
                entry.path().display()
            ),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    #[test]
    fn temp_file_names_are_recognised_by_their_pid() {
        assert_eq!(super::temp_file_pid("temp-123.rdb"), Some(123));
        assert_eq!(super::temp_file_pid("temp-123-7.rdb"), Some(123));
        for other in [
            "dump.rdb",
            "temp-.rdb",
            "temp-12a.rdb",
            "temp-1-.rdb",
            "temp-1-2-3.rdb",
            "temp-1.rdb.bak",
            "xtemp-1.rdb",
        ] {
            assert_eq!(super::temp_file_pid(other), None, "{other}");
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
