//! The blocking writer: `pwrite(2)` on a writer thread, with the same aligned buffers and
//! `O_DIRECT` as the io_uring writer.
//!
//! It is the fallback when io_uring is unavailable (seccomp profiles, old kernels,
//! `kernel.io_uring_disabled`) and the `snapshot-writer blocking` choice.
//!
//! ```text
//! write(chunk) --copy--> filling buffer --full--> jobs channel --> writer thread: pwrite
//!                            ^                                            |
//!                            +-------------- returned channel <-----------+
//! ```
//! [`BUFFERS`] buffers of [`BUFFER_SIZE`] circulate between the producer, which copies chunks
//! into one of them, and a thread named `snapshot-writer`, which writes full ones at increasing
//! offsets and hands them back. Serialization and disk writes overlap as with io_uring, with
//! one write in flight instead of eight. When every buffer is queued, `write` blocks until the
//! thread returns one, which bounds memory to 8 MiB.
//!
//! Why not a `BufWriter<File>` on the caller's thread: through the page cache this writer
//! measured 300-430 MB/s on the development VM against 1.0-1.5 GB/s for
//! `dd oflag=direct` (the dirty-page throttling of the kernel sets the pace), and a snapshot's
//! dirty pages count against a container's memory limit and evict the working set of a
//! server whose dataset already fills most of memory. With `O_DIRECT` and a writer thread it
//! reaches disk speed. Where the filesystem refuses `O_DIRECT` it writes through the page cache
//! on the same thread.
//!
//! The unaligned tail, short writes and the commit are handled as in `uring.rs`: the last
//! buffer is written padded to 4096 and the file truncated to its real length before fsync.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

use super::fault::Faults;
use super::{
    AlignedBuf, BackendError, Progress, Sink, Target, TempGuard, commit, open_temp, padded_len,
    progress_after,
};

/// Bytes per write.
const BUFFER_SIZE: usize = 2 << 20;
/// Buffers in circulation: one filling, the others queued or being written.
const BUFFERS: usize = 4;

/// A full buffer on its way to the writer thread.
struct Job {
    buf: AlignedBuf,
    /// File offset of the buffer's first byte.
    offset: u64,
    /// Bytes of real data; the buffer's length may be larger by the `O_DIRECT` padding.
    data_len: usize,
}

/// See the module docs.
pub(crate) struct StdSink {
    target: Target,
    faults: Faults,
    /// True if and only if the file is open with `O_DIRECT`.
    direct: bool,
    /// The buffer chunks are being copied into.
    filling: Option<AlignedBuf>,
    /// Empty buffers on the producer's side.
    spare: Vec<AlignedBuf>,
    /// `None` once closed, which tells the writer thread to finish.
    jobs: Option<SyncSender<Job>>,
    /// Buffers the writer thread is done with. It disconnects when the thread stops.
    returned: Receiver<AlignedBuf>,
    /// The writer thread; it gives the file back when all jobs are written. `None` once joined.
    writer: Option<JoinHandle<Result<File, BackendError>>>,
    /// Tells the writer thread to skip the remaining jobs (abort).
    cancel: Arc<AtomicBool>,
    /// File offset of the next buffer to queue.
    next_offset: u64,
    /// Bytes accepted by `write`.
    accepted: u64,
    /// `err_op` of the first error returned; set means every later call fails.
    poisoned: Option<&'static str>,
    /// Declared last so that it runs after the writer thread has closed the file.
    temp: TempGuard,
}

impl StdSink {
    pub(crate) fn create(target: &Target, faults: Faults) -> Result<Self, BackendError> {
        let temp = TempGuard::new(target.temp_path());
        let (file, direct) = open_temp(&target.temp_path(), true)?;
        // Every buffer can be queued at once, so `send` only blocks if the thread is gone.
        let (jobs, job_queue) = sync_channel(BUFFERS);
        let (give_back, returned) = channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let writer = {
            let (faults, cancel) = (faults.clone(), Arc::clone(&cancel));
            std::thread::Builder::new()
                .name("snapshot-writer".to_owned())
                .spawn(move || run_writer(file, direct, &faults, &cancel, &job_queue, &give_back))
                .map_err(|source| BackendError::SpawnWriter { source })?
        };
        Ok(StdSink {
            target: target.clone(),
            faults,
            direct,
            filling: None,
            spare: (0..BUFFERS).map(|_| AlignedBuf::new(BUFFER_SIZE)).collect(),
            jobs: Some(jobs),
            returned,
            writer: Some(writer),
            cancel,
            next_offset: 0,
            accepted: 0,
            poisoned: None,
            temp,
        })
    }

    fn write_inner(&mut self, chunk: &[u8]) -> Result<(), BackendError> {
        let mut rest = chunk;
        while !rest.is_empty() {
            let mut buf = match self.filling.take() {
                Some(buf) => buf,
                None => self.take_buffer()?,
            };
            let consumed = buf.fill_from(rest);
            rest = rest.get(consumed..).unwrap_or_default();
            if buf.is_full() {
                let data_len = buf.len();
                self.queue(buf, data_len)?;
            } else {
                self.filling = Some(buf);
            }
        }
        self.accepted += chunk.len() as u64;
        Ok(())
    }

    /// An empty buffer, waiting for the writer thread to return one if none is spare.
    fn take_buffer(&mut self) -> Result<AlignedBuf, BackendError> {
        if let Some(buf) = self.spare.pop() {
            return Ok(buf);
        }
        match self.returned.recv() {
            Ok(mut buf) => {
                buf.clear();
                Ok(buf)
            }
            Err(_) => Err(self.writer_stopped()),
        }
    }

    /// Hands a buffer holding `data_len` bytes of data to the writer thread.
    fn queue(&mut self, buf: AlignedBuf, data_len: usize) -> Result<(), BackendError> {
        let job = Job {
            offset: self.next_offset,
            data_len,
            buf,
        };
        self.next_offset += job.buf.len() as u64;
        let sent = self.jobs.as_ref().map(|jobs| jobs.send(job));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(self.writer_stopped()),
        }
    }

    /// The writer thread has gone, which it only does early after an error: join it and
    /// return that error.
    fn writer_stopped(&mut self) -> BackendError {
        self.jobs = None;
        match self.join_writer() {
            Some(Err(err)) => err,
            _ => BackendError::Poisoned { op: "write" },
        }
    }

    /// Closes the job queue and waits for the writer thread; `None` if it was already joined.
    /// A panic of the writer thread (a bug) is resumed here.
    fn join_writer(&mut self) -> Option<Result<File, BackendError>> {
        self.jobs = None;
        let writer = self.writer.take()?;
        match writer.join() {
            Ok(result) => Some(result),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    fn finish_inner(&mut self) -> Result<u64, BackendError> {
        if let Some(op) = self.poisoned {
            return Err(BackendError::Poisoned { op });
        }
        if let Some(mut buf) = self.filling.take() {
            let data_len = buf.len();
            buf.pad_to(padded_len(data_len, self.direct));
            self.queue(buf, data_len)?;
        }
        let file = match self.join_writer() {
            Some(result) => result?,
            None => return Err(BackendError::Poisoned { op: "write" }),
        };
        let len = self.accepted;
        if self.next_offset != len {
            // O_DIRECT padding of the last block.
            file.set_len(len)
                .map_err(|source| BackendError::Truncate { len, source })?;
        }
        commit(file, &self.target, &self.faults, &mut self.temp)?;
        Ok(len)
    }
}

/// The writer thread: writes each job's buffer at its offset and returns the buffer, until the
/// queue closes; then gives the file back. Stops at the first error, closing the file, or at
/// `cancel`.
fn run_writer(
    file: File,
    direct: bool,
    faults: &Faults,
    cancel: &AtomicBool,
    jobs: &Receiver<Job>,
    give_back: &Sender<AlignedBuf>,
) -> Result<File, BackendError> {
    for job in jobs {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        write_job(&file, &job, direct, faults)?;
        // The producer may be gone (abort); the buffer is then simply dropped.
        let _ = give_back.send(job.buf);
    }
    Ok(file)
}

/// Writes one buffer, retrying EINTR and continuing short writes.
fn write_job(file: &File, job: &Job, direct: bool, faults: &Faults) -> Result<(), BackendError> {
    if let Some(source) = faults.write_error(job.offset, job.data_len as u64) {
        return Err(BackendError::Write {
            offset: job.offset,
            source,
        });
    }
    let bytes = job.buf.filled();
    let mut start = 0;
    loop {
        let offset = job.offset + start as u64;
        let written = match file.write_at(bytes.get(start..).unwrap_or_default(), offset) {
            Ok(written) => written,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(BackendError::Write { offset, source }),
        };
        match progress_after(start, written, job.data_len, direct) {
            Progress::Done => return Ok(()),
            Progress::Resume(resume) => start = resume,
            Progress::Stuck => {
                return Err(BackendError::ShortWrite {
                    offset,
                    remaining: (bytes.len() - start) as u64,
                });
            }
        }
    }
}

impl Sink for StdSink {
    fn write(&mut self, chunk: &[u8]) -> Result<(), BackendError> {
        if let Some(op) = self.poisoned {
            return Err(BackendError::Poisoned { op });
        }
        self.write_inner(chunk)
            .inspect_err(|err| self.poisoned = Some(err.err_op()))
    }

    fn bytes_written(&self) -> u64 {
        self.accepted
    }

    fn finish(mut self: Box<Self>) -> Result<u64, BackendError> {
        // On error, `Drop` stops the writer thread and the armed guard removes the temp file.
        self.finish_inner()
    }

    fn abort(self: Box<Self>) {
        tracing::debug!(
            path = %self.target.temp_path().display(),
            bytes = self.accepted,
            "snapshot aborted"
        );
    }
}

impl Drop for StdSink {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.jobs = None;
        // Joining waits for the write in progress; the thread closes the file when it returns,
        // before the temp guard removes it.
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Err(err))) => tracing::debug!(
                error = %err,
                err_op = err.err_op(),
                "snapshot write error while abandoning"
            ),
            Some(Err(_panic)) => tracing::error!("snapshot writer thread panicked"),
            Some(Ok(Ok(_))) | None => {}
        }
    }
}
