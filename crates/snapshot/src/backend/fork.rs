//! Fork mode: the save runs in a child process made with `fork()`, as Redis's BGSAVE does.
//!
//! ```text
//! parent (the thread that runs BGSAVE, holding the command gate shared)
//!   frozen = keyspace.freeze_all()        every shard read-locked: no write is half done
//!   pipe2(O_CLOEXEC); pid = fork()        the child gets a copy of the address space
//!   drop(frozen)                           writers resume; pages are copied on write
//!   reaper thread: read reports until EOF, waitpid(pid), bookkeeping
//! child (one thread: the one that called fork)
//!   close the pipe's read end and every socket, SIGTERM/SIGINT/SIGUSR1 back to default
//!   save_frozen(frozen) ─► ForkSink: write(2) to temp, fsync, rename, fsync(dir)
//!   report progress and Private_Dirty over the pipe; _exit(0 | 1 | 2)
//! ```
//!
//! # Why the child may run this code
//! After `fork()` in a multi-threaded process only the calling thread exists in the child, and
//! any lock another thread held at that instant stays held forever there. The child therefore
//! never takes a lock:
//! - Keyspace data is read through the guards of [`FrozenKeyspace`], which the forking thread
//!   took before `fork()`; the child's copies are plain memory it already "holds". Nothing in
//!   the child unlocks or relocks them: it leaves with `_exit`, running no destructors.
//! - The allocator: glibc's `fork()` takes every malloc arena lock before forking and
//!   reinitialises them in the child (its atfork handlers), so `malloc` works in the child.
//!   The encoder, zstd and `std::fs` allocate freely. (A different global allocator would need
//!   the same guarantee; forkless uses the system one.)
//! - No `tracing`, no stdout/stderr: the subscriber and the std stream locks may have been held
//!   by another thread. The child reports over a pipe and through its exit status instead.
//! - No threads, no tokio, no io_uring: [`ForkSink`] writes with blocking `write(2)` calls on
//!   the child's only thread.
//!
//! Everything the child needs from configuration (target, options, injected faults) is
//! computed before `fork()`.
//!
//! # Reports
//! The child writes fixed-size records to the pipe (each well under `PIPE_BUF`, so atomic):
//! `Progress` about once a second (keys done, current `Private_Dirty`, Redis's
//! `current_cow_size`), then `Done` or `Failed` with the error text. EOF on the pipe means the
//! child has exited (or is exiting); the parent then reaps it with `waitpid`.

// docs/CONTRIBUTING.md, "Unsafe code": in `snapshot`, unsafe code is allowed in `uring.rs` and
// here (fork and the child).
#![expect(
    unsafe_code,
    reason = "fork, waitpid, kill, _exit and signal dispositions are libc calls"
)]

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use forkless_storage::FrozenKeyspace;

use super::fault::Faults;
use super::{BackendError, Overrides, Sink, Target, TempGuard, commit, open_temp};
use crate::save::{self, Progress, SaveError, SaveOptions};

/// How often the child reports progress and its copy-on-write size (Redis: once a second).
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Longest error text the child sends; records stay below `PIPE_BUF` (4096).
const MAX_MESSAGE: usize = 1024;
/// Exit status of a child whose save failed (the error was reported over the pipe).
pub const EXIT_SAVE_FAILED: i32 = 1;
/// Exit status of a child that panicked.
pub const EXIT_PANICKED: i32 = 2;

/// A save running in a child process, as [`spawn_save`] returns it to the parent.
#[derive(Debug)]
pub struct ForkedSave {
    /// The child's process id.
    pub pid: i32,
    /// How long `fork()` took in the parent, in microseconds (Redis's `latest_fork_usec`).
    pub fork_usec: u64,
    /// The read end of the report pipe.
    pub reports: File,
}

/// Why [`spawn_save`] did not start a child.
#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    /// `fork()` failed; nothing was started.
    #[error("fork: {0}")]
    Fork(#[source] io::Error),
    /// The report pipe could not be made.
    #[error("pipe: {0}")]
    Pipe(#[source] io::Error),
    /// The test-only environment hooks are invalid.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl ForkError {
    /// The OS error text alone, as Redis logs it after "fork: " (`strerror(errno)`), e.g.
    /// `Cannot allocate memory`.
    pub fn strerror(&self) -> String {
        let source = match self {
            ForkError::Fork(source) | ForkError::Pipe(source) => source,
            ForkError::Backend(err) => return err.to_string(),
        };
        strerror(source)
    }
}

/// `strerror(errno)` of an OS error, without std's " (os error N)" suffix.
pub fn strerror(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text.get(..at).unwrap_or(&text).to_owned(),
        None => text,
    }
}

/// One record from the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildReport {
    /// Periodic: keys serialized so far and the child's current `Private_Dirty` bytes.
    Progress {
        /// Keys written so far.
        keys_processed: u64,
        /// Copy-on-write bytes now.
        cow_bytes: u64,
    },
    /// The file is complete, fsynced and renamed over the final name.
    Done {
        /// Keys written.
        keys_saved: u64,
        /// Bytes in the file.
        bytes_written: u64,
        /// Copy-on-write bytes at the end.
        cow_bytes: u64,
    },
    /// The save failed; the temp file is removed and the previous file untouched.
    Failed {
        /// The error, as [`SaveError`]'s `Display` gives it.
        message: String,
        /// Copy-on-write bytes at the end.
        cow_bytes: u64,
    },
}

const KIND_PROGRESS: u8 = 1;
const KIND_DONE: u8 = 2;
const KIND_FAILED: u8 = 3;
/// kind, three u64, message length.
const HEADER_LEN: usize = 1 + 8 * 3 + 2;

impl ChildReport {
    fn encode(&self) -> Vec<u8> {
        let (kind, a, b, c, message): (u8, u64, u64, u64, &[u8]) = match self {
            ChildReport::Progress {
                keys_processed,
                cow_bytes,
            } => (KIND_PROGRESS, *keys_processed, *cow_bytes, 0, b""),
            ChildReport::Done {
                keys_saved,
                bytes_written,
                cow_bytes,
            } => (KIND_DONE, *keys_saved, *cow_bytes, *bytes_written, b""),
            ChildReport::Failed { message, cow_bytes } => {
                let bytes = message.as_bytes();
                let cut = bytes.get(..MAX_MESSAGE).unwrap_or(bytes);
                (KIND_FAILED, 0, *cow_bytes, 0, cut)
            }
        };
        let mut out = Vec::with_capacity(HEADER_LEN + message.len());
        out.push(kind);
        out.extend_from_slice(&a.to_le_bytes());
        out.extend_from_slice(&b.to_le_bytes());
        out.extend_from_slice(&c.to_le_bytes());
        out.extend_from_slice(&u16::try_from(message.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(message);
        out
    }

    /// Reads the next record; None at EOF or on a malformed record (the child is then gone or
    /// about to be, and its exit status tells the rest).
    pub fn read(reader: &mut impl Read) -> Option<ChildReport> {
        let mut header = [0u8; HEADER_LEN];
        reader.read_exact(&mut header).ok()?;
        let word = |at: usize| {
            header
                .get(at..at + 8)
                .and_then(|bytes| bytes.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        let (a, b, c) = (word(1), word(9), word(17));
        let len = header
            .get(25..27)
            .and_then(|bytes| bytes.try_into().ok())
            .map_or(0, u16::from_le_bytes);
        let mut message = vec![0u8; usize::from(len)];
        reader.read_exact(&mut message).ok()?;
        match header.first() {
            Some(&KIND_PROGRESS) => Some(ChildReport::Progress {
                keys_processed: a,
                cow_bytes: b,
            }),
            Some(&KIND_DONE) => Some(ChildReport::Done {
                keys_saved: a,
                cow_bytes: b,
                bytes_written: c,
            }),
            Some(&KIND_FAILED) => Some(ChildReport::Failed {
                message: String::from_utf8_lossy(&message).into_owned(),
                cow_bytes: b,
            }),
            _ => None,
        }
    }
}

/// Forks a child that saves `frozen` to `options.target` and exits; returns in the parent
/// only. The caller holds `frozen` across this call and drops it as soon as it returns: the
/// child reads through its own copy of the guards.
///
/// `overrides` are the test hooks (`FORKLESS_FAULT_INJECT`): `fork_errno=N` makes this return
/// [`ForkError::Fork`] with that errno without forking, and write/fsync/rename faults apply
/// in the child. `options.writer` and `options.threads` are ignored: the child writes with
/// [`ForkSink`] on its one thread.
pub fn spawn_save(
    frozen: &FrozenKeyspace<'_>,
    now_ms: u64,
    options: &SaveOptions,
    overrides: &Overrides,
) -> Result<ForkedSave, ForkError> {
    options.target.validate()?;
    let faults = Faults::new(overrides.faults.clone());
    if let Some(errno) = overrides.faults.as_ref().and_then(|plan| plan.fork_errno) {
        return Err(ForkError::Fork(io::Error::from_raw_os_error(errno)));
    }
    let (read_end, write_end) = pipe().map_err(ForkError::Pipe)?;
    // The child compares its parent with this to notice the server's death.
    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(libc::pid_t::MAX);
    let started = Instant::now();
    // SAFETY: fork has no memory-safety preconditions of its own; what makes it sound here is
    // what the child does afterwards: it runs `run_child`, which takes no lock, starts no
    // thread, touches only memory reachable from its arguments (the frozen guards are held by
    // this thread, so their data is consistent and stays valid in the child's copy), and
    // leaves with `_exit`, never returning into the caller's frames. See the module docs.
    let pid = unsafe { libc::fork() };
    let fork_usec = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    match pid {
        -1 => Err(ForkError::Fork(io::Error::last_os_error())),
        0 => {
            drop(read_end);
            run_child(
                frozen,
                now_ms,
                options,
                faults,
                File::from(write_end),
                parent,
            )
        }
        pid => {
            drop(write_end);
            Ok(ForkedSave {
                pid,
                fork_usec,
                reports: File::from(read_end),
            })
        }
    }
}

/// The name of the temp file a fork child with process id `pid` writes: `temp-<pid>.rdb`, as
/// Redis's child does. The parent's reaper removes it when the child dies without doing so.
pub fn child_temp_name(pid: libc::pid_t) -> String {
    format!("temp-{pid}.rdb")
}

/// Returns true if and only if `parent` is still this process's parent. When the server dies
/// the child is re-parented (to init or a subreaper), so it stops at its next chunk: it never
/// outlives the server by more than one chunk's write (or throttle pause).
///
/// `PR_SET_PDEATHSIG` is not used: it fires when the *thread* that forked exits, and the
/// server forks from tokio threads, which the runtime may retire while the process lives.
fn parent_alive(parent: libc::pid_t) -> bool {
    // SAFETY: getppid has no preconditions, cannot fail and is async-signal-safe.
    unsafe { libc::getppid() == parent }
}

/// A pipe with both ends close-on-exec: (read, write).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let [read, write] = fds;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(read), OwnedFd::from_raw_fd(write)) })
}

/// The child's whole life. Never returns.
fn run_child(
    frozen: &FrozenKeyspace<'_>,
    now_ms: u64,
    options: &SaveOptions,
    faults: Faults,
    mut reports: File,
    parent: libc::pid_t,
) -> ! {
    prepare_child();
    if !parent_alive(parent) {
        // The server died between fork() and here: nobody wants this save.
        // SAFETY: as at the end of this function; nothing has been started yet.
        unsafe { libc::_exit(EXIT_SAVE_FAILED) }
    }
    // The temp file carries the child's own pid (Redis's `temp-<pid>.rdb`), so that a server
    // restarted after its parent's death sees a live process behind it and leaves it alone.
    // SAFETY: getpid has no preconditions and cannot fail.
    let own_pid = unsafe { libc::getpid() };
    let target = Target {
        temp_name: child_temp_name(own_pid),
        ..options.target.clone()
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let progress = Progress::default();
        let mut last_report = Instant::now();
        let mut tick = |progress: &Progress| {
            if last_report.elapsed() >= REPORT_EVERY {
                last_report = Instant::now();
                let report = ChildReport::Progress {
                    keys_processed: progress
                        .keys_processed
                        .load(std::sync::atomic::Ordering::Relaxed),
                    cow_bytes: private_dirty_bytes().unwrap_or(0),
                };
                let _ = reports.write_all(&report.encode());
            }
        };
        let result = ForkSink::create(&target, faults, parent, options.fsync_every)
            .map_err(SaveError::from)
            .and_then(|sink| {
                save::save_frozen(
                    frozen,
                    now_ms,
                    options,
                    Box::new(sink),
                    &progress,
                    &mut tick,
                )
            });
        let cow_bytes = private_dirty_bytes().unwrap_or(0);
        let (report, code) = match result {
            Ok((keys_saved, bytes_written)) => (
                ChildReport::Done {
                    keys_saved,
                    bytes_written,
                    cow_bytes,
                },
                0,
            ),
            Err(err) => (
                ChildReport::Failed {
                    message: err.to_string(),
                    cow_bytes,
                },
                EXIT_SAVE_FAILED,
            ),
        };
        let _ = reports.write_all(&report.encode());
        code
    }));
    let code = outcome.unwrap_or(EXIT_PANICKED);
    // SAFETY: _exit ends the process at once, without running atexit handlers or destructors
    // (which could touch state shared with the parent's other threads, such as stdio buffers);
    // it is async-signal-safe and always sound to call.
    unsafe { libc::_exit(code) }
}

/// Puts the child's signal dispositions back to the defaults (the parent's handlers belong to
/// its runtime) and closes every socket it inherited, so that a connection the parent closes
/// really closes, and a parent that dies while the child runs does not keep its port bound.
fn prepare_child() {
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1] {
        // SAFETY: `signal` with SIG_DFL installs no handler code; it is async-signal-safe.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
        }
    }
    let Ok(dir) = fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        // SAFETY: `stat` is a plain out-parameter that fstat fills; an fd that is not open
        // (the read_dir descriptor, now closed) just makes fstat fail.
        let is_socket = unsafe {
            let mut stat: libc::stat = std::mem::zeroed();
            libc::fstat(fd, &raw mut stat) == 0 && stat.st_mode & libc::S_IFMT == libc::S_IFSOCK
        };
        if is_socket {
            // SAFETY: closing a socket this process inherited and never uses again; no Rust
            // object in the child will touch it (the child runs only `run_child`).
            unsafe {
                libc::close(fd);
            }
        }
    }
}

/// The process's copy-on-write cost: `Private_Dirty` summed over its mappings, in bytes, from
/// `/proc/self/smaps_rollup` (or `/proc/self/smaps` on kernels without it), as Redis's
/// `zmalloc_get_private_dirty` measures it. None if neither is readable.
pub fn private_dirty_bytes() -> Option<u64> {
    let text = fs::read_to_string("/proc/self/smaps_rollup")
        .or_else(|_| fs::read_to_string("/proc/self/smaps"))
        .ok()?;
    Some(sum_kib_field(&text, "Private_Dirty:") * 1024)
}

fn sum_kib_field(text: &str, name: &str) -> u64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(name))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// How a reaped child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    /// It called `_exit` (or `exit`) with this status.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

/// Waits for child `pid` to end and reaps it (`waitpid`, retried on EINTR). Blocks the calling
/// thread: call it from a thread of its own, never from the async runtime.
pub fn wait_child(pid: i32) -> io::Result<ChildExit> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid out-parameter; waitpid has no other preconditions.
        let rc = unsafe { libc::waitpid(pid, &raw mut status, 0) };
        if rc == pid {
            if libc::WIFSIGNALED(status) {
                return Ok(ChildExit::Signaled(libc::WTERMSIG(status)));
            }
            return Ok(ChildExit::Exited(libc::WEXITSTATUS(status)));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Sends `signal` to child `pid`. The caller must not have reaped it yet (its pid could be
/// reused otherwise).
pub fn signal_child(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The child's writer: blocking `write(2)` through the page cache on the calling thread, then
/// the usual commit (fsync, rename, fsync the directory). It logs nothing (see the module
/// docs); every failure is returned and the temp file removed.
pub struct ForkSink {
    /// The server process that forked this child; when it is gone, writing stops.
    parent: libc::pid_t,
    file: Option<File>,
    target: Target,
    faults: Faults,
    written: u64,
    /// See `SaveOptions::fsync_every`; 0: none before the commit.
    fsync_every: u64,
    /// `written` at the last of those fsyncs.
    synced_at: u64,
    poisoned: Option<&'static str>,
    /// Removes the temp file, without logging, unless the commit renamed it.
    temp: TempGuard,
}

impl ForkSink {
    fn create(
        target: &Target,
        faults: Faults,
        parent: libc::pid_t,
        fsync_every: u64,
    ) -> Result<ForkSink, BackendError> {
        let temp = TempGuard::silent(target.temp_path());
        let (file, _) = open_temp(&target.temp_path(), false)?;
        Ok(ForkSink {
            parent,
            file: Some(file),
            target: target.clone(),
            faults,
            written: 0,
            fsync_every,
            synced_at: 0,
            poisoned: None,
            temp,
        })
    }
}

impl Sink for ForkSink {
    fn write(&mut self, chunk: &[u8]) -> Result<(), BackendError> {
        if let Some(op) = self.poisoned {
            return Err(BackendError::Poisoned { op });
        }
        let offset = self.written;
        let len = chunk.len() as u64;
        let result = match (self.faults.write_error(offset, len), self.file.as_mut()) {
            // The server died (kill -9): the save fails, and the caller removes the temp file.
            _ if !parent_alive(self.parent) => Err(io::Error::other("the server process died")),
            (Some(injected), _) => Err(injected),
            (None, Some(file)) => file.write_all(chunk),
            (None, None) => Err(io::Error::from_raw_os_error(libc::EBADF)),
        };
        match result {
            Ok(()) => {
                self.written += len;
                if self.fsync_every > 0 && self.written - self.synced_at >= self.fsync_every {
                    self.synced_at = self.written;
                    let synced = match self.faults.fsync_error() {
                        Some(injected) => Some(Err(injected)),
                        None => self.file.as_ref().map(File::sync_data),
                    };
                    if let Some(Err(source)) = synced {
                        // Never fsync the same fd again after a failure.
                        self.poisoned = Some("fsync");
                        self.file = None;
                        return Err(BackendError::Fsync {
                            path: self.target.temp_path(),
                            source,
                        });
                    }
                }
                Ok(())
            }
            Err(source) => {
                self.poisoned = Some("write");
                Err(BackendError::Write { offset, source })
            }
        }
    }

    fn bytes_written(&self) -> u64 {
        self.written
    }

    fn finish(mut self: Box<Self>) -> Result<u64, BackendError> {
        // The temp guard removes the temp file on every error before the rename.
        if let Some(op) = self.poisoned {
            return Err(BackendError::Poisoned { op });
        }
        let Some(file) = self.file.take() else {
            return Err(BackendError::Poisoned { op: "write" });
        };
        commit(file, &self.target, &self.faults, &mut self.temp)?;
        Ok(self.written)
    }

    fn abort(self: Box<Self>) {
        // Dropping the temp guard removes the temp file.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fsync_every` (Redis's incremental fsync): the sink fsyncs as soon as that much is
    /// written, not only at the commit; a failed fsync fails that write and every later one.
    #[test]
    fn the_sink_fsyncs_every_fsync_every_bytes() {
        let dir = std::env::temp_dir().join(format!("forkless-fork-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let target = Target::new(&dir, "dump.rdb", "temp-sink.rdb");
        let parent = libc::pid_t::try_from(std::os::unix::process::parent_id()).expect("pid");
        let failing = || {
            Faults::new(Some(
                crate::backend::fault::FaultPlan::parse("fsync,errno=EIO").expect("plan"),
            ))
        };
        // Under the interval: no fsync before the commit, so the write succeeds.
        let mut sink = ForkSink::create(&target, failing(), parent, 8192).expect("sink");
        sink.write(&[7; 4096]).expect("a write under the interval");
        // Reaching it fsyncs, and the injected failure surfaces at once.
        let err = sink.write(&[7; 4096]).expect_err("the fsync fails");
        assert!(matches!(err, BackendError::Fsync { .. }), "{err}");
        assert!(sink.write(&[7; 1]).is_err());
        drop(sink);
        // Without the interval the same writes succeed (the fsync comes at the commit).
        let mut sink = ForkSink::create(&target, failing(), parent, 0).expect("sink");
        sink.write(&[7; 8192]).expect("no fsync before the commit");
        drop(sink);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reports_round_trip_through_a_byte_stream() {
        let reports = [
            ChildReport::Progress {
                keys_processed: 7,
                cow_bytes: 4096,
            },
            ChildReport::Failed {
                message: "write at offset 0: No space left on device (os error 28)".into(),
                cow_bytes: 1,
            },
            ChildReport::Done {
                keys_saved: u64::MAX,
                bytes_written: 123,
                cow_bytes: 0,
            },
        ];
        let bytes: Vec<u8> = reports.iter().flat_map(ChildReport::encode).collect();
        let mut reader = &bytes[..];
        for report in &reports {
            assert_eq!(ChildReport::read(&mut reader).as_ref(), Some(report));
        }
        assert_eq!(ChildReport::read(&mut reader), None);
        // A torn record reads as the end.
        let mut torn = &bytes[..HEADER_LEN - 1];
        assert_eq!(ChildReport::read(&mut torn), None);
    }

    #[test]
    fn long_error_texts_are_cut_below_pipe_buf() {
        let report = ChildReport::Failed {
            message: "x".repeat(10_000),
            cow_bytes: 0,
        };
        assert!(report.encode().len() < 4096);
    }

    #[test]
    fn private_dirty_sums_every_mapping() {
        let smaps = "7f00-7f01 rw-p\nPrivate_Dirty:        8 kB\nRss: 4 kB\n\
                     7f02-7f03 rw-p\nPrivate_Dirty:       12 kB\n";
        assert_eq!(sum_kib_field(smaps, "Private_Dirty:"), 20);
        assert!(private_dirty_bytes().is_some_and(|bytes| bytes > 0));
    }

    #[test]
    fn strerror_drops_the_os_error_suffix() {
        assert_eq!(
            strerror(&io::Error::from_raw_os_error(libc::ENOMEM)),
            "Cannot allocate memory"
        );
        assert_eq!(
            ForkError::Fork(io::Error::from_raw_os_error(libc::EAGAIN)).strerror(),
            "Resource temporarily unavailable"
        );
    }
}
