//! A full sync's RDB: its framing on the link (`$<len>` or `$EOF:<40-byte mark>`), and its
//! load on a thread of its own, from a temp file (`repl-diskless-load disabled`, and
//! `swapdb`, see docs/replication.md) or straight from the socket (`on-empty-db` when every
//! database is empty). The dataset is flushed just before the load and again if the load
//! fails, and clients get `-LOADING` meanwhile: no client ever sees half a dataset.

use std::io::{BufReader, Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::LinkState;
use super::link::Conn;
use crate::server::{Server, unix_ms};

/// The length of the EOF mark of diskless framing (`CONFIG_RUN_ID_SIZE`).
pub(crate) const EOF_MARK_LEN: usize = 40;
/// Why forwarding stops when the loading thread stopped first (its own error says why).
const LOADER_STOPPED: &str = "the replication loader stopped";
/// Chunks in flight between the link and the loading thread.
const CHANNEL_CHUNKS: usize = 16;

/// How the primary frames the RDB.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `$<len>`: exactly that many bytes.
    Length(u64),
    /// `$EOF:<mark>`: bytes until the 40-byte mark, which ends them.
    Eof([u8; EOF_MARK_LEN]),
}

/// Parses the line that announces the RDB (after empty keep-alive lines).
pub(crate) fn parse_preamble(line: &[u8]) -> Result<Framing, String> {
    if line.first() == Some(&b'-') {
        return Err(format!(
            "MASTER aborted replication with an error: {}",
            String::from_utf8_lossy(line.get(1..).unwrap_or_default())
        ));
    }
    let Some(rest) = line.strip_prefix(b"$") else {
        return Err(format!(
            "Bad protocol from MASTER, the first byte is not '$' (we received '{}'), are you \
             sure the host and port are right?",
            String::from_utf8_lossy(line)
        ));
    };
    if let Some(mark) = rest.strip_prefix(b"EOF:") {
        let mark: [u8; EOF_MARK_LEN] = mark.try_into().map_err(|_| {
            format!(
                "Bad EOF mark from MASTER: '{}'",
                String::from_utf8_lossy(line)
            )
        })?;
        return Ok(Framing::Eof(mark));
    }
    std::str::from_utf8(rest)
        .ok()
        .and_then(|len| len.parse::<u64>().ok())
        .map(Framing::Length)
        .ok_or_else(|| {
            format!(
                "Bad RDB length from MASTER: '{}'",
                String::from_utf8_lossy(line)
            )
        })
}

/// Finds the EOF mark at the end of what arrived without keeping the payload: the last 40
/// bytes are held back until more arrive, and the rest is passed on.
#[derive(Debug)]
pub(crate) struct EofScanner {
    mark: [u8; EOF_MARK_LEN],
    held: Vec<u8>,
}

impl EofScanner {
    pub(crate) fn new(mark: [u8; EOF_MARK_LEN]) -> EofScanner {
        EofScanner {
            mark,
            held: Vec::with_capacity(EOF_MARK_LEN * 2),
        }
    }

    /// Takes `data`, the next bytes of the stream: returns the payload bytes that are sure
    /// not to be the mark, and true when the stream now ends with the mark (the payload is
    /// then complete).
    pub(crate) fn push(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        self.held.extend_from_slice(data);
        if self.held.ends_with(&self.mark) {
            let payload_len = self.held.len() - EOF_MARK_LEN;
            self.held.truncate(payload_len);
            return (std::mem::take(&mut self.held), true);
        }
        let keep = self.held.len().min(EOF_MARK_LEN);
        let tail = self.held.split_off(self.held.len() - keep);
        (std::mem::replace(&mut self.held, tail), false)
    }
}

/// Where a full sync's payload goes (`repl-diskless-load`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// `disabled` (and `on-empty-db` with data): a temp file, then the load.
    Disk,
    /// `on-empty-db` with every database empty: loaded as it arrives.
    Socket,
    /// `swapdb`: loaded as it arrives into a sibling keyspace while the old data is served,
    /// then swapped in whole.
    Sibling,
}

/// What the link hands the loading thread.
enum Chunk {
    Data(Bytes),
    /// The payload is complete.
    End,
}

/// Receives the RDB after `+FULLRESYNC` and loads it. On success the dataset is the primary's
/// at the sync's offset; on failure it is empty (the load had begun) or untouched (the
/// transfer failed first), and the error says which step failed. `master_replid` is the
/// `+FULLRESYNC` ID: with `swapdb`, only a sync of this server's own history serves the old
/// data while it loads (Redis's async loading); another history's loads under `-LOADING`.
pub(crate) async fn full_sync(
    server: &Arc<Server>,
    conn: &mut Conn,
    cancel: &Arc<AtomicBool>,
    master_replid: &str,
) -> Result<(), String> {
    let serve_old = master_replid == server.replication.replid();
    let replica = &server.replication.replica;
    let line = loop {
        let line = conn.read_line(server).await?;
        if !line.is_empty() {
            break line;
        }
        // An empty line: the primary keeps the link alive while it prepares the RDB.
    };
    let framing = parse_preamble(&line)?;
    let size = match &framing {
        Framing::Length(len) => i64::try_from(*len).unwrap_or(i64::MAX),
        Framing::Eof(_) => -1,
    };
    replica.transfer_size.store(size, Ordering::Relaxed);
    replica.transfer_read.store(0, Ordering::Relaxed);
    replica
        .transfer_last_io_secs
        .store(unix_ms() / 1000, Ordering::Relaxed);
    replica.set_state(LinkState::Transfer);
    let mode = server.config().stored_text("repl-diskless-load");
    let target = if mode == b"swapdb" {
        Target::Sibling
    } else if mode == b"on-empty-db" && dataset_is_empty(server) {
        Target::Socket
    } else {
        Target::Disk
    };
    match (&framing, target) {
        (Framing::Length(len), Target::Disk) => {
            tracing::info!("MASTER <-> REPLICA sync: receiving {len} bytes from master to disk");
        }
        (Framing::Eof(_), Target::Disk) => {
            tracing::info!(
                "MASTER <-> REPLICA sync: receiving streamed RDB from master with EOF to disk"
            );
        }
        (_, Target::Socket) => {
            tracing::info!("MASTER <-> REPLICA sync: Loading DB in memory, from the socket");
        }
        (_, Target::Sibling) => tracing::info!(
            "MASTER <-> REPLICA sync: Loading DB in memory beside the one served (swapdb)"
        ),
    }
    let (chunks, receiver) = mpsc::channel::<Chunk>(CHANNEL_CHUNKS);
    let (done, loaded) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("forkless-repl-load".into())
        .spawn({
            let server = Arc::clone(server);
            let cancel = Arc::clone(cancel);
            move || {
                let result = match target {
                    Target::Socket => load_from_socket(&server, receiver, &cancel),
                    Target::Disk => receive_to_disk_then_load(&server, receiver, &cancel),
                    Target::Sibling => load_beside_then_swap(&server, receiver, &cancel, serve_old),
                };
                let _ = done.send(result);
            }
        });
    if let Err(err) = spawned {
        return Err(format!(
            "could not start the replication loader thread: {err}"
        ));
    }
    // The loader's verdict wins over the link's: when it stops early (a corrupt payload),
    // the channel closes and the forwarding stops with it.
    let forwarded = forward(server, conn, framing, &chunks).await;
    drop(chunks);
    let loaded = loaded
        .await
        .unwrap_or_else(|_| Err("the replication loader thread stopped".to_owned()));
    match (forwarded, loaded) {
        // The link failed first: its error is the cause (the loader only saw the channel
        // close).
        (Err(link), Err(_)) if link != LOADER_STOPPED => Err(link),
        (_, Err(err)) | (Err(err), Ok(())) => Err(err),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// Passes the payload from the link to the loading thread, and `Chunk::End` after its last
/// byte. What follows a `$<len>` payload stays in `conn.buf`: it is the stream.
async fn forward(
    server: &Server,
    conn: &mut Conn,
    framing: Framing,
    chunks: &mpsc::Sender<Chunk>,
) -> Result<(), String> {
    let replica = &server.replication.replica;
    let closed = || LOADER_STOPPED.to_owned();
    match framing {
        Framing::Length(mut left) => {
            while left > 0 {
                if conn.buf.is_empty() {
                    conn.fill(server).await?;
                }
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(conn.buf.len());
                let data = conn.buf.split_to(take).freeze();
                left -= take as u64;
                count(replica, take);
                chunks.send(Chunk::Data(data)).await.map_err(|_| closed())?;
            }
        }
        Framing::Eof(mark) => {
            let mut scanner = EofScanner::new(mark);
            loop {
                if conn.buf.is_empty() {
                    conn.fill(server).await?;
                }
                let data = conn.buf.split();
                count(replica, data.len());
                let (payload, ended) = scanner.push(&data);
                if !payload.is_empty() {
                    chunks
                        .send(Chunk::Data(Bytes::from(payload)))
                        .await
                        .map_err(|_| closed())?;
                }
                if ended {
                    break;
                }
            }
        }
    }
    chunks.send(Chunk::End).await.map_err(|_| closed())
}

fn count(replica: &super::Replica, n: usize) {
    replica.transfer_read.fetch_add(n as u64, Ordering::Relaxed);
    replica
        .transfer_last_io_secs
        .store(unix_ms() / 1000, Ordering::Relaxed);
}

fn dataset_is_empty(server: &Server) -> bool {
    server
        .keyspace
        .dbs()
        .iter()
        .all(forkless_storage::Db::is_empty)
}

/// Reads the chunks as one byte stream; the link failing before `End` is an I/O error, so
/// the loader never takes a cut payload for a whole one.
struct ChunkReader<'a> {
    receiver: mpsc::Receiver<Chunk>,
    current: Bytes,
    ended: bool,
    cancel: &'a AtomicBool,
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.ended {
                return Ok(0);
            }
            if self.cancel.load(Ordering::Acquire) {
                return Err(std::io::Error::other("replication was cancelled"));
            }
            match self.receiver.blocking_recv() {
                Some(Chunk::Data(data)) => self.current = data,
                Some(Chunk::End) => self.ended = true,
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the link to the MASTER was lost during the transfer",
                    ));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        let data = self.current.split_to(n);
        buf.get_mut(..n)
            .ok_or_else(|| std::io::Error::other("short buffer"))?
            .copy_from_slice(&data);
        Ok(n)
    }
}

/// `repl-diskless-load disabled`: the payload goes to a temp file in `dir`, fsynced; then the
/// dataset is flushed and the file loaded; on success the file becomes `dbfilename`, on
/// failure it is removed and the dataset is left empty.
fn receive_to_disk_then_load(
    server: &Server,
    receiver: mpsc::Receiver<Chunk>,
    cancel: &AtomicBool,
) -> Result<(), String> {
    let dir = server.config().dir.clone();
    let temp = dir.join(format!("temp-{}-{}.rdb", std::process::id(), unix_ms()));
    let received = receive_to_file(&temp, receiver, cancel);
    if let Err(err) = received {
        let _ = std::fs::remove_file(&temp);
        return Err(err);
    }
    let file = std::fs::File::open(&temp).map_err(|err| {
        let _ = std::fs::remove_file(&temp);
        format!(
            "Opening the temp file {} for loading: {err}",
            temp.display()
        )
    })?;
    let size = file.metadata().map_or(0, |metadata| metadata.len());
    let loaded = load(
        server,
        BufReader::with_capacity(1 << 20, file),
        size,
        cancel,
    );
    match loaded {
        Ok(()) => {
            let target = server.config().rdb_path();
            if let Err(err) = commit(&temp, &target) {
                // The dataset is loaded; only the copy on disk is missing.
                tracing::warn!(
                    "Failed trying to rename the temp DB {} into {}: {err}",
                    temp.display(),
                    target.display()
                );
                let _ = std::fs::remove_file(&temp);
            }
            Ok(())
        }
        Err(err) => {
            let _ = std::fs::remove_file(&temp);
            Err(format!(
                "Failed trying to load the MASTER synchronization DB from disk: {err}"
            ))
        }
    }
}

fn receive_to_file(
    path: &Path,
    mut receiver: mpsc::Receiver<Chunk>,
    cancel: &AtomicBool,
) -> Result<(), String> {
    let write_error = |err: std::io::Error| {
        format!(
            "Failed trying to write the temp DB {}: {err}",
            path.display()
        )
    };
    let mut file = std::fs::File::create(path).map_err(|err| {
        format!(
            "Opening the temp file needed for MASTER <-> REPLICA synchronization {}: {err}",
            path.display()
        )
    })?;
    loop {
        if cancel.load(Ordering::Acquire) {
            return Err("replication was cancelled".to_owned());
        }
        match receiver.blocking_recv() {
            Some(Chunk::Data(data)) => file.write_all(&data).map_err(write_error)?,
            Some(Chunk::End) => break,
            None => return Err("the link to the MASTER was lost during the transfer".to_owned()),
        }
    }
    file.sync_all().map_err(write_error)
}

/// Renames the loaded temp file over `dbfilename` and fsyncs the directory.
fn commit(temp: &Path, target: &PathBuf) -> std::io::Result<()> {
    std::fs::rename(temp, target)?;
    if let Some(dir) = target.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// `repl-diskless-load on-empty-db` with an empty dataset: loads as the bytes arrive.
fn load_from_socket(
    server: &Server,
    receiver: mpsc::Receiver<Chunk>,
    cancel: &AtomicBool,
) -> Result<(), String> {
    let mut reader = ChunkReader {
        receiver,
        current: Bytes::new(),
        ended: false,
        cancel,
    };
    let loaded = load(server, &mut reader, 0, cancel);
    match loaded {
        Ok(()) => drain(&mut reader),
        Err(err) => Err(format!(
            "Failed trying to load the MASTER synchronization DB from socket: {err}"
        )),
    }
}

/// `repl-diskless-load swapdb`: loads the payload as it arrives into a sibling keyspace
/// (`Keyspace::sibling`: same databases and key hasher) while clients keep reading the old
/// data, then swaps the two in one step (`Keyspace::swap_contents`, under the command gate
/// as a command) and replaces the function libraries with the payload's. A failed load
/// leaves the served data as it was. Unless `serve_old` (the sync continues this server's
/// history), clients get `-LOADING` meanwhile instead of the old data, as in Redis 7.0, whose
/// async loading needs the same replication ID.
fn load_beside_then_swap(
    server: &Server,
    receiver: mpsc::Receiver<Chunk>,
    cancel: &AtomicBool,
    serve_old: bool,
) -> Result<(), String> {
    let mut reader = ChunkReader {
        receiver,
        current: Bytes::new(),
        ended: false,
        cancel,
    };
    let sibling = server.keyspace.sibling();
    let mut libraries = Vec::new();
    let replica = &server.replication.replica;
    let loading = &server.persistence.loading;
    if serve_old {
        replica.async_loading.store(true, Ordering::Relaxed);
    } else {
        loading.total_bytes.store(0, Ordering::Relaxed);
        loading.loaded_bytes.store(0, Ordering::Relaxed);
        loading.keys_loaded.store(0, Ordering::Relaxed);
        loading
            .start_unix_secs
            .store(unix_ms() / 1000, Ordering::Relaxed);
        loading.active.store(true, Ordering::Release);
    }
    // `-LOADING` ends once the new data is in place, or the old one is left as it was.
    let _loading = ClearOnDrop((!serve_old).then_some(&loading.active));
    let loaded = crate::persistence::load_rdb_into(
        server,
        &sibling,
        Counting {
            inner: &mut reader,
            server,
        },
        "the MASTER's RDB",
        0,
        cancel,
        |code| {
            libraries.push(Bytes::from(code));
            Ok(())
        },
    );
    let drained = loaded
        .map_err(|err| {
            format!("Failed trying to load the MASTER synchronization DB from socket: {err:#}")
        })
        .and_then(|_| drain(&mut reader));
    replica.async_loading.store(false, Ordering::Relaxed);
    drained?;
    if cancel.load(Ordering::Acquire) {
        return Err("replication was cancelled".to_owned());
    }
    {
        let _gate = server.keyspace.gate().shared();
        if !server.keyspace.swap_contents(&sibling, unix_ms()) {
            return Err("the loaded dataset does not match this keyspace".to_owned());
        }
        server.scripting.flush_functions();
        for code in &libraries {
            if let Err(message) = server.scripting.load_library(server, code) {
                tracing::warn!("MASTER <-> REPLICA sync: a function library failed: {message}");
            }
        }
    }
    close_effect_unit(server);
    crate::cmd::tracking::flushed(server);
    server.replication.replica.local_expires.clear();
    let mut db = 0;
    while server.keyspace.db(db).is_some() {
        for key in server.blocking.waiting_keys(db) {
            server.blocking.signal(db, &key);
        }
        db += 1;
    }
    let mut state = server.persistence.state();
    state.dirty_at_last_save = server.keyspace.dirty();
    drop(state);
    tracing::info!("MASTER <-> REPLICA sync: Discarding the old data");
    // The old data, now in the sibling, is freed here, on this thread.
    drop(sibling);
    Ok(())
}

/// Clears its flag when dropped.
struct ClearOnDrop<'a>(Option<&'a AtomicBool>);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(flag) = self.0 {
            flag.store(false, Ordering::Release);
        }
    }
}

/// Reads off what the loader left of the payload (nothing, in a valid one), so the stream
/// starts where it should.
fn drain(reader: &mut ChunkReader<'_>) -> Result<(), String> {
    let mut rest = [0u8; 8192];
    loop {
        match reader.read(&mut rest) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(err) => return Err(format!("MASTER <-> REPLICA sync: {err}")),
        }
    }
}

/// Flushes the dataset and loads the RDB from `reader`, with `-LOADING` for clients
/// meanwhile; a failed load flushes what it had loaded. Keys already expired are loaded too:
/// a replica waits for the primary's DEL (Redis's rdbLoad does the same on a replica).
fn load(server: &Server, reader: impl Read, size: u64, cancel: &AtomicBool) -> Result<(), String> {
    let loading = &server.persistence.loading;
    loading.total_bytes.store(size, Ordering::Relaxed);
    loading.loaded_bytes.store(0, Ordering::Relaxed);
    loading.keys_loaded.store(0, Ordering::Relaxed);
    loading
        .start_unix_secs
        .store(unix_ms() / 1000, Ordering::Relaxed);
    loading.active.store(true, Ordering::Release);
    tracing::info!("MASTER <-> REPLICA sync: Flushing old data");
    flush(server);
    tracing::info!("MASTER <-> REPLICA sync: Loading DB in memory");
    let reader = Counting {
        inner: reader,
        server,
    };
    let result =
        crate::persistence::load_rdb_cancellable(server, reader, "the MASTER's RDB", 0, cancel);
    if result.is_err() {
        // Never half a dataset as if it were whole.
        flush(server);
    }
    {
        // Neither a load nor the flush around a failed one is a change: no save point fires
        // for them (after a failure, the last good dump stays).
        let mut state = server.persistence.state();
        state.dirty_at_last_save = server.keyspace.dirty();
    }
    close_effect_unit(server);
    loading.active.store(false, Ordering::Release);
    result.map(|_| ()).map_err(|err| format!("{err:#}"))
}

/// With an effect consumer attached (the AOF), the flush and the load took one effect number
/// on this thread, outside the command table: it is published with no commands, or the
/// stream would wait for it forever. What the load did reaches the AOF by the rewrite that
/// follows a sync (`after_full_sync`), as Redis restarts its AOF after one.
fn close_effect_unit(server: &Server) {
    let _ = forkless_storage::effect::take_step();
    if let Some(seq) = forkless_storage::effect::close_unit() {
        server.effects.publish(crate::effects::Effect {
            seq,
            transaction: false,
            ops: Vec::new(),
        });
    }
}

/// Counts the bytes loaded into INFO's `loading_loaded_bytes`.
struct Counting<'a, R> {
    inner: R,
    server: &'a Server,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.server
            .persistence
            .loading
            .loaded_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Empties every database and the function libraries (Redis's emptyData before a sync's
/// load), holding the command gate shared as FLUSHALL does.
fn flush(server: &Server) {
    let gate = server.keyspace.gate().shared();
    let flushed = server.keyspace.flush_all(0);
    drop(gate);
    drop(flushed);
    server.scripting.flush_functions();
    crate::cmd::tracking::flushed(server);
    server.replication.replica.local_expires.clear();
}

/// After a full sync's load: with the AOF on, its files describe the old dataset, so a
/// rewrite starts from the new one (Redis's restartAOFAfterSYNC).
pub(crate) fn after_full_sync(server: &Server) {
    if server.config().appendonly
        && let Err(err) =
            crate::aof::rewrite::start_background(server, crate::aof::rewrite::Caller::Background)
    {
        tracing::warn!("Could not rewrite the AOF after the sync with the MASTER: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preambles_parse_both_framings() {
        assert_eq!(parse_preamble(b"$1234"), Ok(Framing::Length(1234)));
        let mark = [b'a'; EOF_MARK_LEN];
        let mut line = b"$EOF:".to_vec();
        line.extend_from_slice(&mark);
        assert_eq!(parse_preamble(&line), Ok(Framing::Eof(mark)));
        assert!(parse_preamble(b"$EOF:short").is_err());
        assert!(parse_preamble(b"$-1").is_err());
        assert!(parse_preamble(b"+OK").is_err_and(|e| e.contains("first byte is not '$'")));
        assert!(parse_preamble(b"-ERR oops").is_err_and(|e| e.contains("aborted")));
    }

    #[test]
    fn the_eof_mark_is_found_however_the_stream_is_split() {
        let mark = *b"0123456789012345678901234567890123456789";
        let payload: Vec<u8> = (0..500u32).map(|i| (i % 251) as u8).collect();
        let mut stream = payload.clone();
        stream.extend_from_slice(&mark);
        for chunk_len in [1, 2, 7, 39, 40, 41, 100, stream.len()] {
            let mut scanner = EofScanner::new(mark);
            let mut got = Vec::new();
            let mut ended = false;
            for chunk in stream.chunks(chunk_len) {
                assert!(!ended, "bytes after the mark");
                let (data, end) = scanner.push(chunk);
                got.extend_from_slice(&data);
                ended = end;
            }
            assert!(ended, "chunk length {chunk_len}");
            assert_eq!(got, payload, "chunk length {chunk_len}");
        }
        // A payload that never ends with the mark is never complete, and keeps 40 bytes.
        let mut scanner = EofScanner::new(mark);
        let (data, ended) = scanner.push(&payload);
        assert!(!ended);
        assert_eq!(data.len(), payload.len() - EOF_MARK_LEN);
    }
}
