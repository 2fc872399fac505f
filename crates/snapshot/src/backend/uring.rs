//! The io_uring writer: several 1 MiB writes in flight at increasing offsets.
//!
//! ```text
//! write(chunk) --copy--> filling buffer --full--> Write SQE at next_offset --> kernel
//!                            ^                                                  |
//!                            +------ free list <-- CQE (user_data = slot) <-----+
//! ```
//! The sink owns [`BUFFERS`] buffers of [`BUFFER_SIZE`] bytes in a slab (`slots`), indexed by
//! the SQE's `user_data`. Incoming chunks are copied into the one `filling` buffer; a full
//! buffer is submitted as one `IORING_OP_WRITE` and belongs to the kernel until its completion
//! is reaped, after which it returns to the free list. When no buffer is free, `write` waits
//! for a completion, which bounds the memory to 8 MiB and throttles the producer to the disk.
//!
//! # Buffers and `O_DIRECT`
//! The file is opened with `O_DIRECT` where the filesystem accepts it (see
//! [`open_temp`]), so the data bypasses the page cache: a snapshot of a large dataset does not
//! evict the working set of everything else, and the final fsync has little left to flush.
//! `O_DIRECT` needs offset, length and memory address aligned to the logical block size; the
//! writer aligns all three to 4096 ([`AlignedBuf`], shared with the blocking writer).
//!
//! The stream's length is rarely a multiple of 4096. `finish` writes the last buffer rounded up
//! to 4096 with zero padding, then `ftruncate`s the file to its real length before the fsync.
//! The alternative, clearing `O_DIRECT` with `fcntl(F_SETFL)` to write the tail through the
//! page cache, mixes direct and buffered I/O on one file and needs an extra `unsafe` libc call;
//! the padded write keeps every write on the same path, and the fsync covers the new size.
//!
//! A short write is resubmitted from where it stopped, rounded down to 4096 under `O_DIRECT`
//! (rewriting a few bytes with the same data), and fails if it made no progress.
//!
//! # Ownership of buffers and fd (docs/CONTRIBUTING.md, "Unsafe code")
//! The kernel is only ever given a pointer into a slab buffer and the raw fd of `file`, both
//! owned by the sink. A buffer with an op in flight is never written, moved or freed, and the
//! file is never closed while `in_flight > 0`; `Drop` (also reached from `abort` and from a
//! failed `finish`) reaps every completion first. If the ring itself fails so that completions
//! can no longer be awaited, the buffers and the fd are leaked rather than handed back while
//! the kernel may still use them.
//!
//! fsync is a plain `File::sync_all` once every write has completed: there is nothing left in
//! flight to overlap it with, so an `IORING_OP_FSYNC` would only add a round trip.

// docs/CONTRIBUTING.md, "Unsafe code": in `snapshot`, unsafe code is allowed here for SQE
// submission and in `fork.rs`.
#![expect(
    unsafe_code,
    reason = "pushing SQEs that lend buffers to the kernel is unsafe"
)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd};

use io_uring::{IoUring, Probe, opcode, types};

use super::fault::Faults;
use super::{
    ALIGN, AlignedBuf, BackendError, Progress, Sink, Target, TempGuard, commit, open_temp,
    padded_len, progress_after,
};

/// Bytes per write.
pub(crate) const BUFFER_SIZE: usize = 1 << 20;
/// Buffers in the slab: while the producer copies into one, up to `BUFFERS - 1` writes are in
/// flight; while it waits for a free buffer, all of them may be.
pub(crate) const BUFFERS: usize = 8;
/// Submission queue size: more than [`BUFFERS`], so that a push never finds the queue full.
const RING_ENTRIES: u32 = 16;
/// EINTR/EAGAIN completions tolerated for one write before it counts as failed.
const MAX_RETRIES: u32 = 64;

const _: () = assert!(BUFFER_SIZE % ALIGN == 0 && BUFFERS < RING_ENTRIES as usize);

/// Creates the ring and checks that the kernel supports `IORING_OP_WRITE` (Linux 5.6). The
/// error is what [`choose_writer`](super::choose_writer) classifies.
pub(crate) fn setup() -> io::Result<IoUring> {
    let ring = IoUring::new(RING_ENTRIES)?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    if !probe.is_supported(opcode::Write::CODE) {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    Ok(ring)
}

/// A write the kernel owns: bytes `start..len` of the slot's buffer go to `offset + start`.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// File offset of the buffer's first byte.
    offset: u64,
    /// Bytes to write, including `O_DIRECT` padding.
    len: usize,
    /// Bytes of real data (`len` minus padding); once these are on disk the write is done.
    data_len: usize,
    /// Where the current submission starts; advanced by short writes.
    start: usize,
    retries: u32,
}

struct Slot {
    buf: AlignedBuf,
    /// `Some` exactly while the kernel owns `buf`.
    op: Option<InFlight>,
}

/// What a completion means for its write.
enum Step {
    Done,
    Resubmit,
    Failed(BackendError),
}

/// See the module docs.
pub(crate) struct UringSink {
    ring: IoUring,
    /// Never resized after `create`: SQEs point into these buffers.
    slots: Vec<Slot>,
    /// Slots that are neither filling nor in flight; their buffers are empty.
    free: Vec<usize>,
    /// The slot chunks are being copied into.
    filling: Option<usize>,
    /// Slots whose `op` is `Some`.
    in_flight: usize,
    /// File offset of the next buffer to submit.
    next_offset: u64,
    /// Bytes accepted by `write`.
    accepted: u64,
    /// True if and only if the file is open with `O_DIRECT`.
    direct: bool,
    /// The first error of a completion that no caller has seen yet.
    pending_error: Option<BackendError>,
    /// `err_op` of the first error returned; set means every later call fails.
    poisoned: Option<&'static str>,
    /// True if and only if waiting on the ring failed, so in-flight writes cannot be awaited.
    ring_broken: bool,
    /// True if and only if the sink is being dropped: completions are only reaped, short
    /// writes are not resubmitted.
    discarding: bool,
    /// Scratch space for reaped completions: `(user_data, result)`.
    completions: Vec<(u64, i32)>,
    target: Target,
    faults: Faults,
    /// `None` once closed by `finish`. Closed only when nothing is in flight.
    file: Option<File>,
    /// Declared last so that it runs after the file is closed.
    temp: TempGuard,
}

impl UringSink {
    pub(crate) fn create(
        ring: IoUring,
        target: &Target,
        faults: Faults,
    ) -> Result<Self, BackendError> {
        let temp = TempGuard::new(target.temp_path());
        let (file, direct) = open_temp(&target.temp_path(), true)?;
        Ok(UringSink {
            ring,
            slots: (0..BUFFERS)
                .map(|_| Slot {
                    buf: AlignedBuf::new(BUFFER_SIZE),
                    op: None,
                })
                .collect(),
            free: (0..BUFFERS).rev().collect(),
            filling: None,
            in_flight: 0,
            next_offset: 0,
            accepted: 0,
            direct,
            pending_error: None,
            poisoned: None,
            ring_broken: false,
            discarding: false,
            completions: Vec::with_capacity(RING_ENTRIES as usize * 2),
            target: target.clone(),
            faults,
            file: Some(file),
            temp,
        })
    }

    fn write_inner(&mut self, chunk: &[u8]) -> Result<(), BackendError> {
        self.take_pending()?;
        let mut rest = chunk;
        while !rest.is_empty() {
            let idx = match self.filling {
                Some(idx) => idx,
                None => {
                    let idx = self.take_free()?;
                    self.filling = Some(idx);
                    idx
                }
            };
            let slot = self.slot_mut(idx)?;
            let consumed = slot.buf.fill_from(rest);
            let (data_len, full) = (slot.buf.len(), slot.buf.is_full());
            rest = rest.get(consumed..).unwrap_or_default();
            if full {
                self.filling = None;
                self.submit_buffer(idx, BUFFER_SIZE, data_len)?;
            }
        }
        self.accepted += chunk.len() as u64;
        Ok(())
    }

    fn slot_mut(&mut self, idx: usize) -> Result<&mut Slot, BackendError> {
        // Slot indices come from `free`, which only ever holds indices below BUFFERS.
        self.slots
            .get_mut(idx)
            .ok_or(BackendError::Poisoned { op: "write" })
    }

    /// A free slot, waiting for completions if there is none.
    fn take_free(&mut self) -> Result<usize, BackendError> {
        loop {
            self.take_pending()?;
            if let Some(idx) = self.free.pop() {
                return Ok(idx);
            }
            self.wait(1)?;
        }
    }

    fn take_pending(&mut self) -> Result<(), BackendError> {
        self.pending_error.take().map_or(Ok(()), Err)
    }

    /// Hands slot `idx`'s first `len` bytes (`data_len` of them data) to the kernel at the next
    /// offset.
    fn submit_buffer(
        &mut self,
        idx: usize,
        len: usize,
        data_len: usize,
    ) -> Result<(), BackendError> {
        let op = InFlight {
            offset: self.next_offset,
            len,
            data_len,
            start: 0,
            retries: 0,
        };
        self.next_offset += len as u64;
        self.submit(idx, op)
    }

    fn submit(&mut self, idx: usize, op: InFlight) -> Result<(), BackendError> {
        let Some(fd) = self.file.as_ref().map(AsRawFd::as_raw_fd) else {
            return Err(BackendError::Poisoned { op: "write" });
        };
        let Some(slot) = self.slots.get_mut(idx) else {
            return Err(BackendError::Poisoned { op: "write" });
        };
        debug_assert!(slot.op.is_none() && op.start < op.len && op.len <= BUFFER_SIZE);
        let remaining = u32::try_from(op.len - op.start).unwrap_or(u32::MAX);
        let entry = opcode::Write::new(
            types::Fd(fd),
            slot.buf.as_ptr().wrapping_add(op.start),
            remaining,
        )
        .offset(op.offset + op.start as u64)
        .build()
        .user_data(idx as u64);
        slot.op = Some(op);
        // SAFETY: the SQE lends the kernel `remaining` bytes at `start` of slot `idx`'s buffer
        // and the fd of `self.file`; both stay valid and unchanged until the CQE tagged `idx`
        // is reaped, which is what `push` requires:
        // - the buffer is a heap allocation owned by `self.slots`, which is never resized; it
        //   does not move when the sink moves, and `start + remaining <= BUFFER_SIZE`;
        // - nothing writes it meanwhile: only the `filling` slot is written, and a slot with
        //   `op: Some` (set just above) is neither filling nor on the free list;
        // - nothing frees it or closes the fd meanwhile: `finish` closes the file only after
        //   `drain` brought `in_flight` to 0, and `Drop` reaps every completion first, leaking
        //   buffers and fd instead if the ring can no longer be waited on.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        if pushed.is_err() {
            // Cannot happen: at most BUFFERS < RING_ENTRIES ops are in flight and every push is
            // followed by a submit. The slot was not lent; take it back.
            if let Some(slot) = self.slots.get_mut(idx) {
                slot.op = None;
                slot.buf.clear();
            }
            self.free.push(idx);
            return Err(BackendError::IoUringEnter {
                source: io::Error::from_raw_os_error(libc::EBUSY),
            });
        }
        self.in_flight += 1;
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // The SQE stays queued and the next `submit_and_wait` submits it.
                Err(err) if matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY)) => {
                    return Ok(());
                }
                Err(source) => {
                    self.ring_broken = true;
                    return Err(BackendError::IoUringEnter { source });
                }
            }
        }
    }

    /// Submits what is queued, waits until at least `want` completions are ready and
    /// processes every ready one. Errors of the writes go to `pending_error`; `Err` here means
    /// the ring itself failed.
    fn wait(&mut self, want: usize) -> Result<(), BackendError> {
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(_) => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    self.ring_broken = true;
                    return Err(BackendError::IoUringEnter { source });
                }
            }
        }
        let mut completions = std::mem::take(&mut self.completions);
        completions.extend(
            self.ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result())),
        );
        for &(user_data, result) in &completions {
            self.complete(user_data, result);
        }
        completions.clear();
        self.completions = completions;
        Ok(())
    }

    /// Takes back slot `user_data` from the kernel and acts on the write's result.
    fn complete(&mut self, user_data: u64, result: i32) {
        let Some((idx, mut op)) = usize::try_from(user_data)
            .ok()
            .and_then(|idx| Some((idx, self.slots.get_mut(idx)?.op.take()?)))
        else {
            tracing::error!(
                user_data,
                result,
                "io_uring completion for no write in flight"
            );
            return;
        };
        self.in_flight -= 1;
        let step = if self.discarding {
            Step::Done
        } else {
            progress(&mut op, result, self.direct, &self.faults)
        };
        match step {
            Step::Resubmit => {
                // `submit` either lent the slot to the kernel again or, failing, took it back.
                if let Err(err) = self.submit(idx, op) {
                    self.record(err);
                }
                return;
            }
            Step::Failed(err) => self.record(err),
            Step::Done => {}
        }
        if let Some(slot) = self.slots.get_mut(idx) {
            slot.buf.clear();
            self.free.push(idx);
        }
    }

    fn record(&mut self, err: BackendError) {
        if self.pending_error.is_none() && self.poisoned.is_none() {
            self.pending_error = Some(err);
        } else {
            tracing::debug!(error = %err, err_op = err.err_op(), "further snapshot write error");
        }
    }

    /// Waits until nothing is in flight; returns the first write error not yet reported.
    fn drain(&mut self) -> Result<(), BackendError> {
        while self.in_flight > 0 {
            self.wait(self.in_flight)?;
        }
        self.take_pending()
    }

    fn finish_inner(&mut self) -> Result<u64, BackendError> {
        if let Some(op) = self.poisoned {
            return Err(BackendError::Poisoned { op });
        }
        if let Some(idx) = self.filling.take() {
            let direct = self.direct;
            let slot = self.slot_mut(idx)?;
            let data_len = slot.buf.len();
            let write_len = padded_len(data_len, direct);
            slot.buf.pad_to(write_len);
            if data_len > 0 {
                self.submit_buffer(idx, write_len, data_len)?;
            } else {
                self.free.push(idx);
            }
        }
        self.drain()?;
        let len = self.accepted;
        let Some(file) = self.file.take() else {
            return Err(BackendError::Poisoned { op: "write" });
        };
        if self.next_offset != len {
            // O_DIRECT padding of the last block.
            file.set_len(len)
                .map_err(|source| BackendError::Truncate { len, source })?;
        }
        commit(file, &self.target, &self.faults, &mut self.temp)?;
        Ok(len)
    }
}

/// Advances `op` by a completion's `result` and says what to do next.
fn progress(op: &mut InFlight, result: i32, direct: bool, faults: &Faults) -> Step {
    let result = match faults.write_error(op.offset, op.data_len as u64) {
        Some(injected) => -injected.raw_os_error().unwrap_or(libc::EIO),
        None => result,
    };
    let failed_at = op.offset + op.start as u64;
    let Ok(written) = usize::try_from(result) else {
        let errno = result.saturating_neg();
        if matches!(errno, libc::EINTR | libc::EAGAIN) && op.retries < MAX_RETRIES {
            op.retries += 1;
            return Step::Resubmit;
        }
        return Step::Failed(BackendError::Write {
            offset: failed_at,
            source: io::Error::from_raw_os_error(errno),
        });
    };
    match progress_after(op.start, written, op.data_len, direct) {
        Progress::Done => Step::Done,
        Progress::Resume(resume) => {
            op.start = resume;
            Step::Resubmit
        }
        Progress::Stuck => Step::Failed(BackendError::ShortWrite {
            offset: failed_at,
            remaining: (op.len - op.start) as u64,
        }),
    }
}

impl Sink for UringSink {
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
        // On error, `Drop` waits for what is still in flight, closes the file and the armed
        // guard removes the temp file.
        self.finish_inner()
    }

    fn abort(self: Box<Self>) {
        tracing::debug!(
            path = %self.target.temp_path().display(),
            bytes = self.accepted,
            in_flight = self.in_flight,
            "snapshot aborted"
        );
    }
}

impl Drop for UringSink {
    fn drop(&mut self) {
        self.discarding = true;
        while self.in_flight > 0 && !self.ring_broken {
            if let Err(err) = self.wait(self.in_flight) {
                tracing::error!(error = %err, err_op = err.err_op(), "waiting for snapshot writes failed");
            }
        }
        if let Some(err) = self.pending_error.take() {
            tracing::debug!(error = %err, err_op = err.err_op(), "snapshot write error while abandoning");
        }
        if self.in_flight > 0 {
            tracing::error!(
                in_flight = self.in_flight,
                "cannot wait for in-flight snapshot writes: leaking their buffers and fd"
            );
            std::mem::forget(std::mem::take(&mut self.slots));
            if let Some(file) = self.file.take() {
                let _leaked_fd = file.into_raw_fd();
            }
        }
        // The fields drop next: the ring, the buffers, the file (closed), then the temp guard,
        // which removes the temp file unless it was renamed.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(len: usize, data_len: usize) -> InFlight {
        InFlight {
            offset: 1 << 20,
            len,
            data_len,
            start: 0,
            retries: 0,
        }
    }

    #[test]
    fn short_writes_resume_aligned_under_o_direct() {
        let faults = Faults::default();
        let mut write = op(BUFFER_SIZE, BUFFER_SIZE);
        assert!(matches!(
            progress(&mut write, 5000, true, &faults),
            Step::Resubmit
        ));
        assert_eq!(write.start, 4096);
        assert!(matches!(
            progress(&mut write, 100, true, &faults),
            Step::Failed(BackendError::ShortWrite { .. })
        ));
        let mut write = op(BUFFER_SIZE, BUFFER_SIZE);
        assert!(matches!(
            progress(&mut write, 5000, false, &faults),
            Step::Resubmit
        ));
        assert_eq!(write.start, 5000);
        assert!(matches!(
            progress(&mut write, 0, false, &faults),
            Step::Failed(BackendError::ShortWrite { .. })
        ));
        let mut write = op(BUFFER_SIZE, BUFFER_SIZE);
        assert!(matches!(
            progress(&mut write, BUFFER_SIZE as i32, true, &faults),
            Step::Done
        ));
    }

    #[test]
    fn padding_need_not_reach_the_disk() {
        let mut write = op(8192, 5000);
        assert!(matches!(
            progress(&mut write, 5000, false, &Faults::default()),
            Step::Done
        ));
    }

    #[test]
    fn negative_results_map_to_os_errors() {
        let faults = Faults::default();
        let mut write = op(BUFFER_SIZE, BUFFER_SIZE);
        write.start = 4096;
        let Step::Failed(err) = progress(&mut write, -libc::ENOSPC, true, &faults) else {
            panic!("expected a failure");
        };
        assert_eq!(
            err.to_string(),
            "write at offset 1052672: No space left on device (os error 28)"
        );
        assert!(matches!(
            progress(&mut write, -libc::EAGAIN, true, &faults),
            Step::Resubmit
        ));
        write.retries = MAX_RETRIES;
        assert!(matches!(
            progress(&mut write, -libc::EINTR, true, &faults),
            Step::Failed(_)
        ));
    }
}
