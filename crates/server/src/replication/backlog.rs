//! The replication stream's bytes, addressed by offset: the backlog and every replica's pending
//! output in one buffer, as Redis 7.0's shared replication buffer.
//!
//! The stream is one sequence of bytes numbered from 0 (byte `i` is Redis's offset `i + 1`).
//! [`Stream`] holds the bytes `[start, end)`, where `end` is `master_repl_offset`, in blocks of
//! at most [`BLOCK_BYTES`]. It keeps the last `backlog_size` bytes (what PSYNC can resume
//! from) and, beyond them, whatever an attached replica has not been sent yet: a replica
//! that loads a full sync, or reads slowly, pins the bytes from its position on, and nothing
//! else. So the memory of the writes that arrive during a full sync is `end - position` of the
//! slowest replica, bounded by `client-output-buffer-limit replica` (the caller drops a replica
//! over it, which unpins its bytes).

use std::collections::VecDeque;

/// The size of one block of the stream: appends fill the last block up to this.
pub(crate) const BLOCK_BYTES: usize = 16 * 1024;

/// Bytes `[start, end)` of the replication stream.
#[derive(Debug)]
pub(crate) struct Stream {
    /// Each block with the offset of its first byte; contiguous, in order.
    blocks: VecDeque<(u64, Vec<u8>)>,
    /// The offset of the first byte held.
    start: u64,
    /// One past the last byte: `master_repl_offset`.
    end: u64,
    /// `repl-backlog-size`: bytes kept for partial resyncs whatever the replicas need.
    backlog_size: u64,
}

/// A read that asked for bytes no longer held: the replica fell behind what was kept for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trimmed;

impl Stream {
    /// An empty stream whose next byte is `offset`.
    pub(crate) fn new(offset: u64, backlog_size: u64) -> Stream {
        Stream {
            blocks: VecDeque::new(),
            start: offset,
            end: offset,
            backlog_size,
        }
    }

    /// `master_repl_offset`: the offset one past the last byte.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// The first offset held.
    #[cfg(test)]
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    pub(crate) fn backlog_size(&self) -> u64 {
        self.backlog_size
    }

    pub(crate) fn set_backlog_size(&mut self, size: u64) {
        self.backlog_size = size.max(1);
    }

    /// The bytes of the backlog proper: `repl_backlog_histlen`.
    pub(crate) fn histlen(&self) -> u64 {
        (self.end - self.start).min(self.backlog_size)
    }

    /// The offset of the backlog's first byte (0-based; Redis's
    /// `repl_backlog_first_byte_offset` is this plus one).
    pub(crate) fn backlog_start(&self) -> u64 {
        self.end - self.histlen()
    }

    /// Bytes held, the backlog and what replicas still need.
    pub(crate) fn held(&self) -> u64 {
        self.end - self.start
    }

    /// The memory the stream takes beyond its backlog: what replicas pin, as Redis 7.0's
    /// `freeMemoryGetNotCountedMemory` leaves out of eviction: the blocks' allocations (each
    /// block is allocated whole, [`BLOCK_BYTES`], the last one partly filled, and the block
    /// list's own array grows with them) less `repl-backlog-size` and the list entries that
    /// many bytes take, Redis's formula. O(1): this runs before every write command under
    /// `maxmemory`.
    pub(crate) fn beyond_backlog(&self) -> u64 {
        let entry = std::mem::size_of::<(u64, Vec<u8>)>();
        let allocated = self
            .blocks
            .len()
            .saturating_mul(BLOCK_BYTES)
            .saturating_add(self.blocks.capacity().saturating_mul(entry));
        let backlog = usize::try_from(self.backlog_size).unwrap_or(usize::MAX);
        let counted = backlog.saturating_add(
            (backlog / BLOCK_BYTES)
                .saturating_add(1)
                .saturating_mul(entry),
        );
        u64::try_from(allocated.saturating_sub(counted)).unwrap_or(u64::MAX)
    }

    /// Appends `bytes` at the end.
    pub(crate) fn append(&mut self, mut bytes: &[u8]) {
        self.end += bytes.len() as u64;
        if let Some((_, last)) = self.blocks.back_mut() {
            let room = BLOCK_BYTES.saturating_sub(last.len()).min(bytes.len());
            let (now, rest) = bytes.split_at(room);
            last.extend_from_slice(now);
            bytes = rest;
        }
        while !bytes.is_empty() {
            let take = bytes.len().min(BLOCK_BYTES);
            let (now, rest) = bytes.split_at(take);
            let mut block = Vec::with_capacity(BLOCK_BYTES);
            block.extend_from_slice(now);
            let block_start = self.end - bytes.len() as u64;
            self.blocks.push_back((block_start, block));
            bytes = rest;
        }
    }

    /// Frees whole blocks that are outside the backlog and before `keep_from` (the lowest
    /// position of an attached replica, or `u64::MAX` for none).
    pub(crate) fn trim(&mut self, keep_from: u64) {
        let keep_from = keep_from.min(self.end.saturating_sub(self.backlog_size));
        while let Some((block_start, block)) = self.blocks.front() {
            let block_end = block_start + block.len() as u64;
            if block_end > keep_from || self.blocks.len() == 1 && block_end == self.end {
                break;
            }
            self.start = block_end;
            self.blocks.pop_front();
        }
        if self.blocks.is_empty() {
            self.start = self.end;
        }
        // A slow replica's blocks gone, the block list gives back its array too: without
        // replicas the stream is not looked at for eviction (`Replication::not_counted_for_evict`),
        // so what it keeps counts.
        if self.blocks.capacity() > 64 && self.blocks.len() < self.blocks.capacity() / 4 {
            self.blocks.shrink_to_fit();
        }
    }

    /// Copies up to `max` bytes from offset `from` into `out`. Ok(0) when `from` is the end.
    pub(crate) fn copy_from(
        &self,
        from: u64,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, Trimmed> {
        if from < self.start || from > self.end {
            return Err(Trimmed);
        }
        let mut at = from;
        let mut copied = 0;
        let first = self
            .blocks
            .partition_point(|(block_start, block)| block_start + block.len() as u64 <= from);
        for (block_start, block) in self.blocks.iter().skip(first) {
            if copied >= max {
                break;
            }
            let skip = usize::try_from(at - block_start).unwrap_or(usize::MAX);
            let Some(part) = block.get(skip..) else { break };
            let part = part.get(..part.len().min(max - copied)).unwrap_or(part);
            out.extend_from_slice(part);
            copied += part.len();
            at += part.len() as u64;
        }
        Ok(copied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(stream: &Stream, from: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = from;
        loop {
            let n = stream.copy_from(at, 1000, &mut out).unwrap();
            if n == 0 {
                return out;
            }
            at += n as u64;
        }
    }

    #[test]
    fn appends_and_reads_across_blocks() {
        let mut stream = Stream::new(10, 1 << 20);
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        stream.append(&data[..7]);
        stream.append(&data[7..40_000]);
        stream.append(&data[40_000..]);
        assert_eq!(stream.end(), 10 + 50_000);
        assert_eq!(read_all(&stream, 10), data);
        assert_eq!(read_all(&stream, 10 + 20_000), &data[20_000..]);
        assert_eq!(read_all(&stream, stream.end()), b"");
        assert_eq!(stream.copy_from(9, 10, &mut Vec::new()), Err(Trimmed));
        assert_eq!(
            stream.copy_from(stream.end() + 1, 10, &mut Vec::new()),
            Err(Trimmed)
        );
    }

    #[test]
    fn keeps_the_backlog_and_what_a_replica_needs() {
        let mut stream = Stream::new(0, 20_000);
        let data = vec![7u8; 100_000];
        stream.append(&data);
        // A replica at 5000 pins everything from there.
        stream.trim(5_000);
        assert!(stream.start() <= 5_000);
        assert_eq!(read_all(&stream, 5_000).len(), 95_000);
        // No replica: only the backlog (whole blocks) stays.
        stream.trim(u64::MAX);
        assert!(stream.start() <= 80_000 && stream.start() > 60_000);
        assert_eq!(stream.histlen(), 20_000);
        assert_eq!(stream.backlog_start(), 80_000);
    }
}
