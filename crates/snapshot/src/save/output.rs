//! The save's output: chunk buffers and their pool, per-thread zstd frames, and the writer
//! side that chains the CRC, throttles, and feeds the same bytes to every sink.

use super::*;
use forkless_storage::CompactBytes;

/// Chunk buffers the writer has finished with, for the serializers to fill again. A fresh
/// allocation per chunk is mapped fresh by the allocator (glibc serves 1 MiB from `mmap` or
/// trims it back), which costs a page fault and a zeroed page per 4 KiB: a visible share of
/// the server's CPU during a save before buffers were reused (docs/benchmarks.md, "Figures
/// behind code decisions").
pub(super) struct BufferPool {
    pub(super) free: std::sync::Mutex<Vec<Vec<u8>>>,
    /// At most this many idle buffers are kept; the rest are freed.
    pub(super) keep: usize,
}

impl BufferPool {
    pub(super) fn new(keep: usize) -> BufferPool {
        BufferPool {
            free: std::sync::Mutex::new(Vec::new()),
            keep,
        }
    }

    /// An empty buffer of `CHUNK_CAPACITY`, reused when one is idle.
    pub(super) fn take(&self) -> Vec<u8> {
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(CHUNK_CAPACITY))
    }

    /// Hands back a spent buffer; small ones (headers, zstd frames) and ones that grew past
    /// twice the chunk capacity (an entry bigger than a chunk) are just freed, so that the
    /// pool never keeps more than its buffers' worth.
    pub(super) fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() < CHUNK_CAPACITY || buf.capacity() > 2 * CHUNK_CAPACITY {
            return;
        }
        buf.clear();
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if free.len() < self.keep {
            free.push(buf);
        }
    }
}
/// One chunk on its way to the writer.
pub(super) struct Chunk {
    /// What goes to disk: the RDB bytes, or their zstd frame.
    pub(super) bytes: Vec<u8>,
    /// CRC-64 of the RDB bytes (0 with `rdbchecksum no`), computed by the thread that made the
    /// chunk so that checksumming runs in parallel; the writer chains them in file order.
    pub(super) crc: u64,
    /// Length of the RDB bytes, for chaining the CRC.
    pub(super) plain_len: u64,
    /// A big string value that follows `bytes` in the stream, shared with the keyspace (a
    /// reference count, not a copy): the rest of the entry whose head ends `bytes`
    /// ([`Chunk::with_value`]).
    pub(super) tail: Option<CompactBytes>,
}
impl Chunk {
    /// Checksums `plain` and, with zstd, compresses it with `zstd` (handing the plain buffer
    /// back to `pool`).
    pub(super) fn new(
        plain: Vec<u8>,
        options: &SaveOptions,
        pool: &BufferPool,
        zstd: &mut FrameCompressor,
    ) -> Result<Chunk, SaveError> {
        let crc = if options.checksum {
            let mut checksum = Checksum::new();
            checksum.update(&plain);
            checksum.finish()
        } else {
            0
        };
        let plain_len = plain.len() as u64;
        let bytes = match options.compression {
            Compression::None => plain,
            Compression::Zstd { level } => {
                let frame = zstd.compress(&plain, level).map_err(SaveError::Compress)?;
                pool.give(plain);
                frame
            }
        };
        Ok(Chunk {
            bytes,
            crc,
            plain_len,
            tail: None,
        })
    }

    /// A chunk of whole entries whose last one is a big string written as its head (at the
    /// end of `plain`) and its `value`, which the chunk shares instead of copying: a 1 MiB
    /// value goes to the writer as it is, and no buffer grows to hold it. With zstd the value
    /// is compressed in pieces of [`CHUNK_BYTES`], a frame each, so the chunk holds its
    /// compressed frames (no plain copy).
    pub(super) fn with_value(
        plain: Vec<u8>,
        value: CompactBytes,
        options: &SaveOptions,
        pool: &BufferPool,
        zstd: &mut FrameCompressor,
    ) -> Result<Chunk, SaveError> {
        let crc = if options.checksum {
            let mut checksum = Checksum::new();
            checksum.update(&plain);
            checksum.update(&value);
            checksum.finish()
        } else {
            0
        };
        let plain_len = (plain.len() + value.len()) as u64;
        match options.compression {
            Compression::None => Ok(Chunk {
                bytes: plain,
                crc,
                plain_len,
                tail: Some(value),
            }),
            Compression::Zstd { level } => {
                let mut frames = zstd.compress(&plain, level).map_err(SaveError::Compress)?;
                pool.give(plain);
                for piece in value.chunks(CHUNK_BYTES) {
                    let frame = zstd.compress(piece, level).map_err(SaveError::Compress)?;
                    frames.extend_from_slice(&frame);
                }
                Ok(Chunk {
                    bytes: frames,
                    crc,
                    plain_len,
                    tail: None,
                })
            }
        }
    }
}

/// One thread's zstd context, made on first use and kept for every chunk after: a fresh
/// context per 1 MiB chunk (`zstd::bulk::compress`) allocated and initialised its tables each
/// time.
#[derive(Default)]
pub(super) struct FrameCompressor(Option<zstd::bulk::Compressor<'static>>);

impl FrameCompressor {
    /// One independent zstd frame holding `plain`.
    pub(super) fn compress(&mut self, plain: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
        let compressor = match &mut self.0 {
            Some(compressor) => compressor,
            empty => empty.insert(zstd::bulk::Compressor::new(level)?),
        };
        compressor.compress(plain)
    }
}

/// One sink of a save: the sink while it still takes the stream (None once it dropped out),
/// and why it dropped out.
pub(super) type SinkSlot = (Option<Box<dyn Sink>>, Option<BackendError>);

/// The writer side: checksum, throttle, and the sinks, each fed the same bytes.
pub(super) struct Output<'a> {
    pub(super) sinks: Vec<SinkSlot>,
    /// CRC-64 of the RDB bytes written so far.
    pub(super) crc: u64,
    pub(super) progress: &'a Progress,
    /// Where written chunks' buffers go back to.
    pub(super) pool: &'a BufferPool,
    pub(super) max_bytes_per_sec: u64,
    pub(super) started: Instant,
}

impl<'a> Output<'a> {
    pub(super) fn new(
        sinks: Vec<Box<dyn Sink>>,
        options: &SaveOptions,
        progress: &'a Progress,
        pool: &'a BufferPool,
    ) -> Output<'a> {
        Output {
            sinks: sinks.into_iter().map(|sink| (Some(sink), None)).collect(),
            crc: 0,
            progress,
            pool,
            max_bytes_per_sec: options.max_bytes_per_sec,
            started: Instant::now(),
        }
    }

    pub(super) fn write(&mut self, chunk: Chunk) -> Result<(), SaveError> {
        self.crc = Checksum::combine(self.crc, chunk.crc, chunk.plain_len);
        let mut len = chunk.bytes.len() as u64;
        self.write_to_sinks(&chunk.bytes)?;
        self.pool.give(chunk.bytes);
        if let Some(tail) = chunk.tail {
            len += tail.len() as u64;
            self.write_to_sinks(&tail)?;
        }
        self.progress
            .bytes_written
            .fetch_add(len, Ordering::Relaxed);
        self.throttle();
        Ok(())
    }

    /// Ends the stream: the EOF opcode and the CRC-64 of everything before it and of the opcode
    /// (zero with `rdbchecksum no`, as Redis writes it).
    pub(super) fn write_eof(&mut self, options: &SaveOptions) -> Result<(), SaveError> {
        let mut eof = Vec::new();
        format::write_eof(&mut eof);
        let crc = if options.checksum {
            let mut checksum = Checksum::new();
            checksum.update(&eof);
            Checksum::combine(self.crc, checksum.finish(), eof.len() as u64)
        } else {
            0
        };
        eof.extend_from_slice(&crc.to_le_bytes());
        // Written as is: the CRC covers the stream up to the opcode, not itself.
        let chunk = Chunk::new(eof, options, self.pool, &mut FrameCompressor::default())?;
        let len = chunk.bytes.len() as u64;
        self.write_to_sinks(&chunk.bytes)?;
        self.progress
            .bytes_written
            .fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Writes `bytes` to every sink still in. A sink that fails is aborted and drops out; when
    /// the last one does, its error is the stream's.
    pub(super) fn write_to_sinks(&mut self, bytes: &[u8]) -> Result<(), SaveError> {
        let mut left = 0;
        let mut last_failed = None;
        for (idx, (slot, dropped_out)) in self.sinks.iter_mut().enumerate() {
            let Some(sink) = slot else { continue };
            match sink.write(bytes) {
                Ok(()) => left += 1,
                Err(err) => {
                    if let Some(sink) = slot.take() {
                        sink.abort();
                    }
                    *dropped_out = Some(err);
                    last_failed = Some(idx);
                }
            }
        }
        if left > 0 {
            return Ok(());
        }
        let err = last_failed
            .and_then(|idx| self.sinks.get_mut(idx))
            .and_then(|(_, dropped_out)| dropped_out.take())
            .unwrap_or(BackendError::Poisoned { op: "write" });
        Err(err.into())
    }

    /// After the stream was written (`written` is Ok) finishes every sink still in (a file:
    /// fsync, rename, directory fsync) and returns each sink's outcome, its length or why it
    /// dropped out; otherwise aborts them all (temp files removed) and returns the error.
    pub(super) fn commit(
        self,
        written: Result<(), SaveError>,
    ) -> Result<Vec<Result<u64, BackendError>>, SaveError> {
        if let Err(err) = written {
            for sink in self.sinks.into_iter().filter_map(|(sink, _)| sink) {
                sink.abort();
            }
            return Err(err);
        }
        Ok(self
            .sinks
            .into_iter()
            .map(|(sink, dropped_out)| match (sink, dropped_out) {
                (Some(sink), _) => {
                    let bytes_written = sink.bytes_written();
                    sink.finish().map(|_| bytes_written)
                }
                (None, Some(err)) => Err(err),
                (None, None) => Err(BackendError::Poisoned { op: "write" }),
            })
            .collect())
    }

    /// Sleeps as long as the average rate is above `max_bytes_per_sec`.
    pub(super) fn throttle(&self) {
        if self.max_bytes_per_sec == 0 {
            return;
        }
        let written = self.progress.bytes_written.load(Ordering::Relaxed);
        let due = Duration::from_secs_f64(written as f64 / self.max_bytes_per_sec as f64);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}
