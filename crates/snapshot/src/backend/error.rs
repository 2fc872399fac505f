//! Why a snapshot writer failed: [`BackendError`], one variant per failing operation.

use std::io;
use std::path::PathBuf;

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
