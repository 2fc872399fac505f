//! `O_DIRECT` helpers shared by the writers: opening the temp file with `O_DIRECT` when the
//! filesystem allows it, 4096-aligned buffers, padding the last block, and resuming short
//! writes on an aligned offset.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::BackendError;

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
pub(super) fn open_temp_with(
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
