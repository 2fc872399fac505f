//! The commit protocol's end (fsync, rename, directory fsync), the temp file's guard, and the
//! removal of temp files that dead processes left behind. Nothing here logs on the commit path,
//! so a fork child can run it (see `fork.rs`).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::{BackendError, Target, fault};

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
    // One fsync per fd, never retried (docs/CONTRIBUTING.md, "Errors"): after a failed fsync the kernel may have
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
pub(super) fn temp_file_pid(name: &str) -> Option<u32> {
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
