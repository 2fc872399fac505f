//! The snapshot `Sink` that feeds a replica's socket during a diskless full sync.
//!
//! The save thread hands each chunk to the replica's link task through a bounded channel
//! ([`QUEUE_CHUNKS`] chunks of about 1 MiB); the link task writes them to the socket. While the
//! queue is full the save waits: the link task bounds every socket write by `repl-timeout`,
//! and a link task that ends (the replica is gone, slow past the timeout, or over its output
//! limit) drops the receiver, so the next `write` fails and the save drops this sink and goes
//! on with the others.

use bytes::Bytes;
use forkless_snapshot::backend::{BackendError, Sink};
use tokio::sync::mpsc;

/// Chunks queued per replica: the memory a diskless sync holds per replica beyond the save's
/// own buffers.
pub(crate) const QUEUE_CHUNKS: usize = 4;

/// What the link task receives.
#[derive(Debug)]
pub(crate) enum Piece {
    /// The next bytes of the RDB.
    Chunk(Bytes),
    /// The RDB is complete.
    End,
}

/// A replica's socket, seen from the save.
pub(crate) struct SocketSink {
    tx: Option<mpsc::Sender<Piece>>,
    written: u64,
}

impl SocketSink {
    pub(crate) fn new(tx: mpsc::Sender<Piece>) -> SocketSink {
        SocketSink {
            tx: Some(tx),
            written: 0,
        }
    }
}

fn gone() -> BackendError {
    BackendError::Write {
        offset: 0,
        source: std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "the replica's link is closed",
        ),
    }
}

impl Sink for SocketSink {
    fn write(&mut self, chunk: &[u8]) -> Result<(), BackendError> {
        let tx = self.tx.as_ref().ok_or_else(gone)?;
        // A plain thread (the sync's), never a runtime worker: blocking here is allowed.
        tx.blocking_send(Piece::Chunk(Bytes::copy_from_slice(chunk)))
            .map_err(|_| {
                self.tx = None;
                gone()
            })?;
        self.written += chunk.len() as u64;
        Ok(())
    }

    fn bytes_written(&self) -> u64 {
        self.written
    }

    fn finish(mut self: Box<Self>) -> Result<u64, BackendError> {
        let tx = self.tx.take().ok_or_else(gone)?;
        tx.blocking_send(Piece::End).map_err(|_| gone())?;
        Ok(self.written)
    }

    fn abort(mut self: Box<Self>) {
        // Dropping the sender without `End` tells the link task the transfer failed.
        self.tx = None;
    }
}
