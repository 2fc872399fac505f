//! A replica's link on the primary: PSYNC/SYNC, the full sync from an epoch cut, the stream,
//! ACKs, WAIT, and the replication cron.
//!
//! ```text
//!  conn.rs: PSYNC/SYNC ran ──► serve (this file), on the connection's task:
//!     partial: +CONTINUE <replid>, then the stream from the asked offset (backlog)
//!     full:    wait (newline each second) ──► FullStart from the sync thread
//!              ──► +FULLRESYNC <replid> <offset> ──► RDB ($EOF:<mark> ... <mark>, or $<len>)
//!              ──► the stream from <offset>
//!
//!  forkless-replsync thread (run_full_sync): hold effects ─► claim + cut (gate held)
//!     ─► release effects; the crossing (first byte after the cut) is <offset>
//!     ─► save_to_sinks: one SocketSink per diskless replica, or the dump file (disk-based)
//!  (fork mode, run_fork_sync: hold effects ─► forked BGSAVE, the freeze's number as the cut's
//!   ─► the file, opened by the reaper's hook before the save releases the slot)
//! ```
//!
//! The RDB is the dataset at the cut; the stream from `<offset>` holds exactly the effects
//! numbered at or above the cut's `seq()` (see `crate::effects`), so the replica's dataset
//! after loading and applying is the primary's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use forkless_protocol::{Limits, RequestDecoder};
use forkless_snapshot::backend::Sink;
use forkless_snapshot::save::{self, Compression, Progress, SaveError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::sink::{Piece, QUEUE_CHUNKS, SocketSink};
use super::{DETACHED, Link, LinkState};
use crate::cmd::{self, Client};
use crate::persistence::{self, Running, SaveKind};
use crate::server::{Server, lock, unix_ms};

/// What a connection declared with REPLCONF before PSYNC.
#[derive(Debug, Default, Clone)]
pub(crate) struct ReplConf {
    pub(crate) listening_port: u32,
    pub(crate) ip: Option<String>,
    pub(crate) capa_eof: bool,
    pub(crate) capa_psync2: bool,
    /// `REPLCONF forkless-dual <token>`: a forkless replica that takes the stream of a full
    /// sync on a second connection (dual-channel sync).
    pub(crate) dual_token: Option<String>,
    /// `REPLCONF forkless-dual-stream <token>`: this connection is that second connection.
    pub(crate) stream_of: Option<String>,
}

/// Set by PSYNC/SYNC: after the command, the connection becomes a replica link.
#[derive(Debug)]
pub(crate) enum Handover {
    /// `+CONTINUE`: stream from this offset (0-based). `dual_of`: the token of the
    /// dual-channel full sync whose stream this is (its RDB link stops pinning the stream).
    Continue { from: u64, dual_of: Option<String> },
    /// A full sync. `pre_psync`: the old SYNC, which gets no `+FULLRESYNC` line.
    Full { pre_psync: bool },
}

/// WAIT's request, served by the connection after the command.
#[derive(Debug)]
pub(crate) struct WaitRequest {
    pub(crate) numreplicas: u64,
    pub(crate) target: u64,
    pub(crate) deadline: Option<Instant>,
}

/// What the sync thread hands a waiting replica.
#[derive(Debug)]
pub(crate) struct FullStart {
    replid: String,
    offset: u64,
    payload: Payload,
}

#[derive(Debug)]
enum Payload {
    /// The RDB's chunks, straight from the save.
    Diskless(mpsc::Receiver<Piece>),
    /// The saved file (open, with its length), or None if the save failed.
    Disk(oneshot::Receiver<Option<(std::fs::File, u64)>>),
}

/// A replica waiting for its full sync.
#[derive(Debug)]
pub(crate) struct Waiting {
    link: Arc<Link>,
    start: oneshot::Sender<FullStart>,
}

/// Bytes copied out of the stream per socket write.
const STREAM_WRITE: usize = 64 * 1024;

/// The replication cron's period.
const CRON_PERIOD: Duration = Duration::from_millis(100);

/// `repl-timeout`.
fn repl_timeout(server: &Server) -> Duration {
    Duration::from_secs(
        u64::try_from(server.config().stored_int("repl-timeout", 60))
            .unwrap_or(60)
            .max(1),
    )
}

/// PSYNC's decision, before any reply: `Handover::Continue` if the backlog holds what
/// `replid`/`offset` (Redis's: the next byte wanted, 1-based) asks for, else a full sync.
pub(crate) fn decide_psync(server: &Server, replid: &[u8], offset: i64, name: &str) -> Handover {
    let replication = &server.replication;
    let state = replication.state();
    let asked = String::from_utf8_lossy(replid);
    let matches_id = asked.eq_ignore_ascii_case(&state.replid)
        || (asked.eq_ignore_ascii_case(&state.replid2) && offset <= state.second_repl_offset);
    if !matches_id {
        if asked != "?" {
            if !asked.eq_ignore_ascii_case(&state.replid)
                && !asked.eq_ignore_ascii_case(&state.replid2)
            {
                tracing::info!(
                    "Partial resynchronization not accepted: Replication ID mismatch (Replica \
                     asked for '{asked}', my replication IDs are '{}' and '{}')",
                    state.replid,
                    state.replid2
                );
            } else {
                tracing::info!(
                    "Partial resynchronization not accepted: Requested offset for second ID \
                     was {offset}, but I can reply up to {}",
                    state.second_repl_offset
                );
            }
            replication
                .shared
                .sync_partial_err
                .fetch_add(1, Ordering::Relaxed);
        } else {
            tracing::info!("Full resync requested by replica {name}");
        }
        return Handover::Full { pre_psync: false };
    }
    let first = state.stream.backlog_start() as i64 + 1;
    let last = state.stream.end() as i64 + 1;
    if !state.backlog_active || offset < first || offset > last {
        tracing::info!(
            "Unable to partial resync with replica {name} for lack of backlog (Replica request \
             was: {offset})."
        );
        if offset > state.stream.end() as i64 {
            tracing::warn!(
                "Warning: replica {name} tried to PSYNC with an offset that is greater than the \
                 master replication offset."
            );
        }
        replication
            .shared
            .sync_partial_err
            .fetch_add(1, Ordering::Relaxed);
        return Handover::Full { pre_psync: false };
    }
    let from = u64::try_from(offset - 1).unwrap_or(0);
    // Pinned from now: the bytes stay until the link task has sent them.
    drop(state);
    Handover::Continue {
        from,
        dual_of: None,
    }
}

/// PSYNC on the second connection of a dual-channel sync (`REPLCONF forkless-dual-stream
/// <token>`): continues from the crossing of the full sync whose RDB link announced `token`,
/// which pins the stream from there until this link takes over. Err is the reply.
pub(crate) fn decide_dual_stream(
    server: &Server,
    replid: &[u8],
    offset: i64,
    token: &str,
) -> Result<Handover, String> {
    let state = server.replication.state();
    if !String::from_utf8_lossy(replid).eq_ignore_ascii_case(&state.replid) {
        return Err("ERR forkless-dual-stream: replication ID mismatch".into());
    }
    let from = u64::try_from(offset.saturating_sub(1))
        .map_err(|_| "ERR forkless-dual-stream: bad offset".to_string())?;
    let pinned = state.replicas.iter().any(|link| {
        link.dual_token.as_deref() == Some(token)
            && !link.dropped.load(Ordering::Relaxed)
            && link.position.load(Ordering::Relaxed) == from
    });
    if !pinned {
        return Err("ERR forkless-dual-stream: no full sync waits at this offset".into());
    }
    Ok(Handover::Continue {
        from,
        dual_of: Some(token.to_owned()),
    })
}

/// Runs a replica's link on its connection until it ends. Returns why it ended.
pub(crate) async fn serve<S: crate::listen::Stream>(
    server: &Server,
    socket: &mut S,
    client: &mut Client,
    input: &mut BytesMut,
    handover: Handover,
) -> String {
    let conf = client.conn.replconf.clone();
    let ip = conf.ip.clone().unwrap_or_else(|| client.handle.addr.host());
    let name = format!("{ip}:{}", conf.listening_port);
    let link = Arc::new(Link {
        handle: Arc::clone(&client.handle),
        ip,
        listening_port: AtomicU32::new(conf.listening_port),
        state: AtomicU8::new(LinkState::WaitBgsave as u8),
        position: AtomicU64::new(DETACHED),
        ack_offset: AtomicU64::new(0),
        ack_unix_ms: AtomicU64::new(unix_ms()),
        soft_over_since_ms: AtomicU64::new(0),
        dropped: AtomicBool::new(false),
        capa_eof: conf.capa_eof,
        dual_token: conf.dual_token.clone(),
        pre_psync: matches!(handover, Handover::Full { pre_psync: true }),
        arrived: Instant::now(),
    });
    client.conn.replica = true;
    cmd::client::publish(client, false, input.len(), 0);
    ensure_cron(server);
    let replication = &server.replication;
    let mut decoder = RequestDecoder::new(Limits::default());
    let result = match handover {
        Handover::Continue { from, dual_of } => {
            let attached = {
                let mut state = replication.state();
                // The second connection of a dual-channel sync takes over the stream from
                // its RDB link in one step under the lock: the bytes from the crossing stay
                // pinned throughout, then only by this link.
                let rdb_link = dual_of.as_deref().map(|token| {
                    state
                        .replicas
                        .iter()
                        .find(|held| {
                            held.dual_token.as_deref() == Some(token)
                                && !held.dropped.load(Ordering::Relaxed)
                                && held.position.load(Ordering::Relaxed) == from
                        })
                        .cloned()
                });
                let attached = match rdb_link {
                    Some(None) => None,
                    Some(Some(rdb_link)) => {
                        rdb_link.position.store(DETACHED, Ordering::Relaxed);
                        Some(attach_continue(&mut state, &link, from, &conf))
                    }
                    None => Some(attach_continue(&mut state, &link, from, &conf)),
                };
                replication.replicas_changed(&state);
                attached
            };
            match attached {
                None => {
                    let _ = socket
                        .write_all(b"-ERR forkless-dual-stream: the full sync is gone\r\n")
                        .await;
                    Err("dual-channel stream without its full sync".into())
                }
                Some((reply, sending)) => {
                    if dual_of.is_some() {
                        tracing::info!(
                            "Dual-channel sync: replica {name} takes the stream from offset {} \
                             on a second connection ({sending} bytes waiting).",
                            from + 1
                        );
                    } else {
                        tracing::info!(
                            "Partial resynchronization request from {name} accepted. Sending \
                             {sending} bytes of backlog starting from offset {}.",
                            from + 1
                        );
                        replication
                            .shared
                            .sync_partial_ok
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    match socket.write_all(reply.as_bytes()).await {
                        Ok(()) => stream(server, socket, &link, input, &mut decoder).await,
                        Err(err) => Err(format!("write error: {err}")),
                    }
                }
            }
        }
        Handover::Full { pre_psync } => {
            replication.shared.sync_full.fetch_add(1, Ordering::Relaxed);
            replication.ensure_backlog(server);
            let (start_tx, start_rx) = oneshot::channel();
            replication.add_link(Arc::clone(&link));
            lock(&replication.shared.waiting).push(Waiting {
                link: Arc::clone(&link),
                start: start_tx,
            });
            maybe_start_sync(server);
            match full_sync(
                server,
                socket,
                &link,
                input,
                &mut decoder,
                start_rx,
                pre_psync,
            )
            .await
            {
                Ok(()) if link.dual_token.is_some() => {
                    tracing::info!(
                        "Dual-channel sync: RDB sent to replica {name}; its stream goes on \
                         its second connection"
                    );
                    wait_closed(socket, &link, input).await
                }
                Ok(()) => {
                    link.ack_unix_ms.store(unix_ms(), Ordering::Relaxed);
                    link.set_state(LinkState::Online);
                    tracing::info!("Synchronization with replica {name} succeeded");
                    stream(server, socket, &link, input, &mut decoder).await
                }
                Err(reason) => Err(reason),
            }
        }
    };
    replication.remove_link(&link);
    lock(&replication.shared.waiting).retain(|waiting| !Arc::ptr_eq(&waiting.link, &link));
    let reason = result.err().unwrap_or_else(|| "closed".into());
    tracing::info!("Connection with replica {name} lost ({reason}).");
    reason
}

/// Registers a replica that continues from `from`: its `+CONTINUE` reply and the bytes
/// waiting for it. Called with the state lock held.
fn attach_continue(
    state: &mut super::State,
    link: &Arc<Link>,
    from: u64,
    conf: &ReplConf,
) -> (String, u64) {
    link.position.store(from, Ordering::Relaxed);
    link.set_state(LinkState::Online);
    let reply = if conf.capa_psync2 {
        format!("+CONTINUE {}\r\n", state.replid)
    } else {
        "+CONTINUE\r\n".to_owned()
    };
    state.replicas.push(Arc::clone(link));
    state.no_replicas_since = None;
    (reply, state.stream.end().saturating_sub(from))
}

/// The RDB link of a dual-channel sync after its RDB: nothing more to send; reads (and
/// drops) what the replica sends until it closes the connection.
async fn wait_closed<S: crate::listen::Stream>(
    socket: &mut S,
    link: &Link,
    input: &mut BytesMut,
) -> Result<(), String> {
    link.set_state(LinkState::SendBulk);
    loop {
        input.clear();
        tokio::select! {
            read = socket.read_buf(input) => match read {
                Ok(0) => return Err("dual-channel RDB link closed by the replica".into()),
                Ok(_) => {}
                Err(err) => return Err(format!("read error: {err}")),
            },
            () = link.handle.kill.notified() => return Err("killed".into()),
        }
    }
}

/// Waits for the sync thread, then sends `+FULLRESYNC` and the RDB. Err is why the link ends.
async fn full_sync<S: crate::listen::Stream>(
    server: &Server,
    socket: &mut S,
    link: &Link,
    input: &mut BytesMut,
    decoder: &mut RequestDecoder,
    start: oneshot::Receiver<FullStart>,
    pre_psync: bool,
) -> Result<(), String> {
    let timeout = repl_timeout(server);
    let start = wait_with_newlines(socket, link, input, start).await?;
    if !pre_psync {
        let line = format!("+FULLRESYNC {} {}\r\n", start.replid, start.offset);
        write_timed(socket, link, line.as_bytes(), timeout).await?;
    }
    match start.payload {
        Payload::Diskless(mut chunks) => {
            // INFO says `wait_bgsave` while a diskless RDB streams, as Redis's
            // SLAVE_STATE_WAIT_BGSAVE_END (`send_bulk` is a file's transfer).
            let mark = super::random_replid();
            write_timed(socket, link, format!("$EOF:{mark}\r\n").as_bytes(), timeout).await?;
            loop {
                let piece = tokio::select! {
                    piece = chunks.recv() => piece,
                    () = link.handle.kill.notified() => return Err("killed".into()),
                };
                match piece {
                    Some(Piece::Chunk(bytes)) => {
                        write_timed(socket, link, &bytes, timeout).await?;
                        count_output(server, bytes.len());
                    }
                    Some(Piece::End) => break,
                    None => return Err("Diskless rdb transfer failed".into()),
                }
            }
            write_timed(socket, link, mark.as_bytes(), timeout).await?;
            // The replica finds the end of the RDB by the mark being the last bytes it read:
            // nothing may follow until it has loaded and acknowledged (Redis's
            // repl_start_cmd_stream_on_ack). Online meanwhile, so repl-timeout applies.
            link.ack_unix_ms.store(unix_ms(), Ordering::Relaxed);
            link.set_state(LinkState::Online);
            if !pre_psync && link.dual_token.is_none() {
                // (A SYNC client never acknowledges; a dual-channel replica acknowledges on
                // its stream connection.)
                wait_first_ack(server, socket, link, input, decoder).await?;
            }
        }
        Payload::Disk(file) => {
            let Some((file, len)) = wait_with_newlines(socket, link, input, file).await? else {
                return Err("the RDB for the full sync could not be saved".into());
            };
            link.set_state(LinkState::SendBulk);
            write_timed(socket, link, format!("${len}\r\n").as_bytes(), timeout).await?;
            let mut file = file;
            let mut buf = vec![0u8; STREAM_WRITE];
            let mut left = len;
            while left > 0 {
                let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                let Some(part) = buf.get_mut(..want) else {
                    break;
                };
                // A read from the page cache, just written: brief enough for this worker.
                let n = tokio::task::block_in_place(|| std::io::Read::read(&mut file, part))
                    .map_err(|err| format!("reading the RDB for the full sync: {err}"))?;
                if n == 0 {
                    return Err("the RDB for the full sync is shorter than its length".into());
                }
                write_timed(socket, link, buf.get(..n).unwrap_or_default(), timeout).await?;
                count_output(server, n);
                left -= n as u64;
            }
        }
    }
    if link.dropped.load(Ordering::Relaxed) {
        return Err("dropped".into());
    }
    Ok(())
}

/// Counts bytes written to a replica (`total_net_repl_output_bytes`: the RDB and the stream).
fn count_output(server: &Server, n: usize) {
    server
        .replication
        .shared
        .net_output_bytes
        .fetch_add(n as u64, Ordering::Relaxed);
}

/// After a diskless RDB: reads until the replica's first `REPLCONF ACK`.
async fn wait_first_ack<S: crate::listen::Stream>(
    server: &Server,
    socket: &mut S,
    link: &Link,
    input: &mut BytesMut,
    decoder: &mut RequestDecoder,
) -> Result<(), String> {
    loop {
        if handle_input(server, link, decoder, input)? > 0 {
            return Ok(());
        }
        tokio::select! {
            read = socket.read_buf(input) => match read {
                Ok(0) => return Err("closed by peer".into()),
                Ok(_) => {}
                Err(err) => return Err(format!("read error: {err}")),
            },
            () = link.handle.kill.notified() => return Err("killed".into()),
        }
    }
}

/// Waits for `rx` while keeping the replica's connection alive with a newline each second, as
/// Redis does before the RDB; notices the replica going away.
async fn wait_with_newlines<T, S: crate::listen::Stream>(
    socket: &mut S,
    link: &Link,
    input: &mut BytesMut,
    rx: oneshot::Receiver<T>,
) -> Result<T, String> {
    tokio::pin!(rx);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            got = &mut rx => return got.map_err(|_| "the full sync could not start".to_string()),
            _ = tick.tick() => {
                socket.write_all(b"\n").await.map_err(|err| format!("write error: {err}"))?;
            }
            () = link.handle.kill.notified() => return Err("killed".into()),
            read = socket.read_buf(input) => match read {
                Ok(0) => return Err("closed by peer".into()),
                Ok(_) => {
                    // What a replica sends before its sync (REPLCONF ACK) is read and dropped;
                    // too much of it is not a replica.
                    if input.len() > 64 * 1024 {
                        return Err("too much input while waiting for the sync".into());
                    }
                    input.clear();
                }
                Err(err) => return Err(format!("read error: {err}")),
            },
        }
    }
}

/// Writes `bytes` to the replica within `timeout` (`repl-timeout`), unless the link is killed
/// meanwhile (its output limit, CLIENT KILL): a replica that stops reading never holds its
/// link, or a save feeding it, longer than that.
async fn write_timed<S: crate::listen::Stream>(
    socket: &mut S,
    link: &Link,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), String> {
    tokio::select! {
        written = tokio::time::timeout(timeout, socket.write_all(bytes)) => match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(format!("write error: {err}")),
            Err(_) => Err("timeout writing to the replica".into()),
        },
        () = link.handle.kill.notified() => Err("killed".into()),
    }
}

/// Sends the stream from the link's position until the link ends, reading the replica's ACKs
/// meanwhile.
async fn stream<S: crate::listen::Stream>(
    server: &Server,
    socket: &mut S,
    link: &Link,
    input: &mut BytesMut,
    decoder: &mut RequestDecoder,
) -> Result<(), String> {
    let shared = &server.replication.shared;
    let timeout = repl_timeout(server);
    let (mut reader, mut writer) = tokio::io::split(&mut *socket);
    let mut buf = Vec::with_capacity(STREAM_WRITE);
    let _counted = StreamBuffer::new(shared, buf.capacity());
    // Whatever the replica sent before (its first ACK) is handled first.
    handle_input(server, link, decoder, input)?;
    loop {
        if link.dropped.load(Ordering::Relaxed) {
            return Err("dropped".into());
        }
        let grown = shared.grown.notified();
        tokio::pin!(grown);
        grown.as_mut().enable();
        let position = link.position.load(Ordering::Relaxed);
        if position == DETACHED {
            return Err("dropped".into());
        }
        buf.clear();
        let copied = server
            .replication
            .state()
            .stream
            .copy_from(position, STREAM_WRITE, &mut buf)
            .map_err(|_| "fell behind the stream".to_string())?;
        if copied > 0 {
            let mut done = 0;
            let deadline = tokio::time::Instant::now() + timeout;
            while done < buf.len() {
                let rest = buf.get(done..).unwrap_or_default();
                tokio::select! {
                    written = writer.write(rest) => match written {
                        Ok(0) => return Err("write error: zero bytes written".into()),
                        Ok(n) => done += n,
                        Err(err) => return Err(format!("write error: {err}")),
                    },
                    read = reader.read_buf(input) => {
                        on_read(server, link, decoder, input, read)?;
                    }
                    () = link.handle.kill.notified() => return Err("killed".into()),
                    () = tokio::time::sleep_until(deadline) => {
                        return Err("timeout writing to the replica".into());
                    }
                }
            }
            shared
                .net_output_bytes
                .fetch_add(copied as u64, Ordering::Relaxed);
            // Only moves forward, unless the link was dropped meanwhile (then it stays gone).
            let _ = link.position.compare_exchange(
                position,
                position + copied as u64,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            continue;
        }
        tokio::select! {
            () = &mut grown => {}
            read = reader.read_buf(input) => {
                on_read(server, link, decoder, input, read)?;
            }
            () = link.handle.kill.notified() => return Err("killed".into()),
        }
    }
}

/// Counts a link task's copy buffer in [`super::Shared::stream_buffers`] for as long as it
/// lives.
struct StreamBuffer<'a>(&'a super::Shared, u64);

impl<'a> StreamBuffer<'a> {
    fn new(shared: &'a super::Shared, capacity: usize) -> Self {
        let bytes = u64::try_from(capacity).unwrap_or(u64::MAX);
        shared.stream_buffers.fetch_add(bytes, Ordering::Relaxed);
        StreamBuffer(shared, bytes)
    }
}

impl Drop for StreamBuffer<'_> {
    fn drop(&mut self) {
        self.0.stream_buffers.fetch_sub(self.1, Ordering::Relaxed);
    }
}

fn on_read(
    server: &Server,
    link: &Link,
    decoder: &mut RequestDecoder,
    input: &mut BytesMut,
    read: std::io::Result<usize>,
) -> Result<usize, String> {
    match read {
        Ok(0) => Err("closed by peer".into()),
        Ok(_) => handle_input(server, link, decoder, input),
        Err(err) => Err(format!("read error: {err}")),
    }
}

/// The replica's commands on the link: `REPLCONF ACK <offset> [FACK <offset>]` records its
/// offset; other REPLCONF and PING are ignored; anything that is not RESP ends the link.
fn handle_input(
    server: &Server,
    link: &Link,
    decoder: &mut RequestDecoder,
    input: &mut BytesMut,
) -> Result<usize, String> {
    let mut acks = 0;
    loop {
        match decoder.decode(input) {
            Ok(Some(argv)) => {
                let is = |idx: usize, word: &str| {
                    argv.get(idx)
                        .is_some_and(|arg| arg.eq_ignore_ascii_case(word.as_bytes()))
                };
                if is(0, "replconf") && is(1, "ack") {
                    let offset = argv
                        .get(2)
                        .and_then(|arg| std::str::from_utf8(arg).ok())
                        .and_then(|text| text.parse::<u64>().ok());
                    if let Some(offset) = offset {
                        link.ack_offset.fetch_max(offset, Ordering::Relaxed);
                        link.ack_unix_ms.store(unix_ms(), Ordering::Relaxed);
                        server.replication.shared.acked.notify_waiters();
                        acks += 1;
                    }
                }
            }
            Ok(None) => {
                if input.len() > 1 << 20 {
                    return Err("query buffer of the replica too big".into());
                }
                return Ok(acks);
            }
            Err(err) => {
                tracing::warn!(
                    "Protocol error ({err}) from replica id={} addr={}: closing",
                    link.handle.id,
                    link.handle.addr
                );
                return Err(format!("protocol error: {err}"));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The full sync.

/// Starts a full sync for the replicas waiting, when it is due: one at a time, not while
/// another save holds the keyspace's cut, and with `repl-diskless-sync` after
/// `repl-diskless-sync-delay` seconds (or once `repl-diskless-sync-max-replicas` wait), so
/// replicas that arrive together share one cut, as Redis 7.0's replicationCron.
pub(crate) fn maybe_start_sync(server: &Server) {
    let shared = &server.replication.shared;
    if shared.sync_running.load(Ordering::Acquire) || server.keyspace.save_running() {
        return;
    }
    let config = server.config();
    let diskless_config = config.stored_text("repl-diskless-sync") == b"yes";
    let delay = Duration::from_secs(
        u64::try_from(config.stored_int("repl-diskless-sync-delay", 5)).unwrap_or(5),
    );
    let max_replicas =
        u64::try_from(config.stored_int("repl-diskless-sync-max-replicas", 0)).unwrap_or(0);
    drop(config);
    let taken = {
        let mut waiting = lock(&shared.waiting);
        waiting.retain(|waiting| !waiting.link.dropped.load(Ordering::Relaxed));
        if waiting.is_empty() {
            return;
        }
        let diskless = diskless_config && waiting.iter().all(|w| w.link.capa_eof);
        let oldest = waiting
            .iter()
            .map(|w| w.link.arrived.elapsed())
            .max()
            .unwrap_or_default();
        let count = waiting.len() as u64;
        let due = !diskless || oldest >= delay || (max_replicas > 0 && count >= max_replicas);
        if !due
            || shared
                .sync_running
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        (std::mem::take(&mut *waiting), diskless)
    };
    let Some(owner) = server.arc() else {
        shared.sync_running.store(false, Ordering::Release);
        return;
    };
    let (links, diskless) = taken;
    let spawned = std::thread::Builder::new()
        .name("forkless-replsync".into())
        .spawn(move || {
            run_full_sync(&owner, links, diskless);
            owner
                .replication
                .shared
                .sync_running
                .store(false, Ordering::Release);
        });
    if let Err(err) = spawned {
        tracing::warn!("Can't start the full sync thread: {err}");
        shared.sync_running.store(false, Ordering::Release);
    }
}

/// One full sync for `waiting`: the cut, the crossing, the save into each replica (diskless) or
/// into the dump file then each replica (disk-based).
fn run_full_sync(server: &Server, waiting: Vec<Waiting>, diskless: bool) {
    let replication = &server.replication;
    let config = server.config().clone();
    if config.snapshot_mode == crate::config::SnapshotMode::Fork {
        run_fork_sync(server, waiting);
        return;
    }
    let mut options = persistence::save_options(server, &config);
    // Redis must load it: plain RDB.
    options.compression = Compression::None;
    let progress = Arc::new(Progress::default());
    let record = Arc::new(Running {
        started: Instant::now(),
        progress: Arc::clone(&progress),
        dirty_at_cut: server.keyspace.dirty(),
        kind: SaveKind::Epoch,
        fork_pid: None,
    });
    let links: Vec<Arc<Link>> = waiting.iter().map(|w| Arc::clone(&w.link)).collect();
    // The cut. Effects wait meanwhile, so that none after the cut is rendered before the
    // crossing is set.
    let taken = loop {
        if server.shutting_down.load(Ordering::Relaxed)
            || links
                .iter()
                .all(|link| link.dropped.load(Ordering::Relaxed))
        {
            return;
        }
        let applying = replication.cut_guard();
        let gate = server.keyspace.gate().shared();
        replication.hold_effects();
        let claim = server.keyspace.claim_save(record.clone());
        let cut = claim.and_then(|claim| {
            let cut = server.keyspace.cut(&claim, unix_ms())?;
            Some((claim, cut))
        });
        drop(gate);
        match cut {
            Some((claim, cut)) => {
                replication.release_effects(Some((cut.seq(), links.clone())));
                if applying.is_some() {
                    replication.cross_at_end();
                }
                break (claim, cut);
            }
            None => {
                replication.release_effects(None);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    let (claim, cut) = taken;
    // Every effect below the cut was numbered before it and is published right after its
    // command: the crossing comes at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    let offset = loop {
        if let Some(offset) = replication.crossing(server.effects.next()) {
            break Some(offset);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let Some(offset) = offset else {
        tracing::warn!("Full sync abandoned: the effects before the cut did not arrive");
        replication.clear_boundary();
        server.keyspace.end_snapshot(cut);
        release_claim(server, claim);
        return;
    };
    replication.clear_boundary();
    let replid = replication.replid();
    // As Redis's: the replica's copy of the file (Redis's disk-based load keeps it as its
    // dump) carries the sync's ID and offset; the stream selects a database first thing.
    options.repl = Some(forkless_snapshot::format::ReplAux {
        stream_db: 0,
        replid: replid.clone(),
        offset,
    });
    tracing::info!(
        "Starting BGSAVE for SYNC with target: {}",
        if diskless { "replicas sockets" } else { "disk" }
    );
    if diskless {
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        for waiting in waiting {
            let (tx, rx) = mpsc::channel(QUEUE_CHUNKS);
            let start = FullStart {
                replid: replid.clone(),
                offset,
                payload: Payload::Diskless(rx),
            };
            if waiting.start.send(start).is_ok() {
                sinks.push(Box::new(SocketSink::new(tx)));
            }
        }
        if sinks.is_empty() {
            // Every replica left before its sync began: nothing to save.
            server.keyspace.end_snapshot(cut);
            release_claim(server, claim);
            return;
        }
        let result = save::save_to_sinks(&server.keyspace, cut, &options, &progress, sinks);
        match &result {
            Ok(report) => {
                let ok = report.sinks.iter().filter(|sink| sink.is_ok()).count();
                tracing::info!(
                    keys = report.keys_saved,
                    "Diskless full sync streamed to {ok} of {} replicas ({:.3} s)",
                    report.sinks.len(),
                    report.duration.as_secs_f64()
                );
            }
            Err(err) => tracing::warn!("Diskless full sync failed: {err}"),
        }
        release_claim(server, claim);
    } else {
        let mut files = Vec::new();
        for waiting in waiting {
            let (tx, rx) = oneshot::channel();
            let start = FullStart {
                replid: replid.clone(),
                offset,
                payload: Payload::Disk(rx),
            };
            if waiting.start.send(start).is_ok() {
                files.push(tx);
            }
        }
        let result = save::save(&server.keyspace, cut, &options, &progress);
        let path = options.target.final_path();
        // Opened before the claim goes, so a later save renaming over the file leaves these
        // handles on this one.
        for tx in files {
            let file = result.as_ref().ok().and_then(|report| {
                std::fs::File::open(&path)
                    .ok()
                    .map(|file| (file, report.bytes_written))
            });
            let _ = tx.send(file);
        }
        let mut state = server.persistence.state();
        match &result {
            Ok(report) => {
                persistence::record_success(
                    server,
                    &mut state,
                    record.dirty_at_cut,
                    report.writer.as_str(),
                    report.fallback_reason.clone(),
                    (report.bytes_written, report.keys_saved),
                );
                tracing::info!(
                    keys = report.keys_saved,
                    bytes = report.bytes_written,
                    "Background saving terminated with success"
                );
            }
            Err(err) => {
                if !matches!(err, SaveError::Cancelled) {
                    persistence::record_failure(server, &mut state, err.to_string());
                }
                tracing::warn!("Background saving error: {err}");
            }
        }
        drop(claim);
        server.persistence.finished.notify_all();
        drop(state);
    }
}

/// A full sync in fork mode, as Redis's disk-based one: a forked BGSAVE to `dbfilename`
/// (`fork_mode::bgsave_fork_with`), its freeze placed in the effect stream like a cut, then
/// the file to each replica. Diskless syncs are not forked: fork mode always goes through the
/// file.
fn run_fork_sync(server: &Server, waiting: Vec<Waiting>) {
    let replication = &server.replication;
    let links: Vec<Arc<Link>> = waiting.iter().map(|w| Arc::clone(&w.link)).collect();
    let path = {
        let config = server.config();
        config.dir.join(&config.dbfilename)
    };
    let n_files = waiting.len();
    let (files_tx, files_rx) = std::sync::mpsc::channel::<Vec<(std::fs::File, u64)>>();
    let seq = loop {
        if server.shutting_down.load(Ordering::Relaxed)
            || links
                .iter()
                .all(|link| link.dropped.load(Ordering::Relaxed))
        {
            return;
        }
        let frozen_seq = Arc::new(std::sync::Mutex::new(None));
        let hooks = crate::fork_mode::ForkHooks {
            frozen: {
                let frozen_seq = Arc::clone(&frozen_seq);
                Box::new(move |seq| *lock(&frozen_seq) = Some(seq))
            },
            saved: {
                let files_tx = files_tx.clone();
                let path = path.clone();
                Box::new(move |completed| {
                    // Opened while the save holds the slot: no later save has renamed over it.
                    let files = (0..n_files)
                        .filter(|_| completed)
                        .filter_map(|_| {
                            let file = std::fs::File::open(&path).ok()?;
                            let len = file.metadata().ok()?.len();
                            Some((file, len))
                        })
                        .collect();
                    let _ = files_tx.send(files);
                })
            },
        };
        let applying = replication.cut_guard();
        let gate = server.keyspace.gate().shared();
        replication.hold_effects();
        let forked = crate::fork_mode::bgsave_fork_with(server, Some(hooks));
        drop(gate);
        let seq = *lock(&frozen_seq);
        match (forked, seq) {
            (Ok(()), Some(seq)) => {
                replication.release_effects(Some((seq, links.clone())));
                if applying.is_some() {
                    replication.cross_at_end();
                }
                break seq;
            }
            (Err(err), _) if err == persistence::ALREADY_IN_PROGRESS => {
                replication.release_effects(None);
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => {
                replication.release_effects(None);
                tracing::warn!("Full sync abandoned: the fork for it failed");
                return;
            }
        }
    };
    drop(files_tx);
    let deadline = Instant::now() + Duration::from_secs(10);
    let offset = loop {
        if let Some(offset) = replication.crossing(server.effects.next()) {
            break Some(offset);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    replication.clear_boundary();
    let Some(offset) = offset else {
        tracing::warn!(
            "Full sync abandoned: the effects before the fork (number {seq:?}) did not arrive"
        );
        return;
    };
    tracing::info!("Starting BGSAVE for SYNC with target: disk (fork)");
    let replid = replication.replid();
    let mut senders = Vec::new();
    for waiting in waiting {
        let (tx, rx) = oneshot::channel();
        let start = FullStart {
            replid: replid.clone(),
            offset,
            payload: Payload::Disk(rx),
        };
        if waiting.start.send(start).is_ok() {
            senders.push(tx);
        }
    }
    // The reaper hands the opened files over when the child has finished.
    let mut files = files_rx.recv().unwrap_or_default().into_iter();
    for tx in senders {
        let _ = tx.send(files.next());
    }
}

fn release_claim(server: &Server, claim: forkless_storage::SaveClaim) {
    let state = server.persistence.state();
    drop(claim);
    server.persistence.finished.notify_all();
    drop(state);
}

// ---------------------------------------------------------------------------------------------
// WAIT and the cron.

/// WAIT: the number of replicas that acknowledged `target`, waiting for `numreplicas` of them
/// until the deadline. Asks every replica for an ACK first.
pub(crate) async fn wait(server: &Server, request: WaitRequest) -> i64 {
    let shared = &server.replication.shared;
    let count = || acked_at(server, request.target);
    server
        .replication
        .append_raw(b"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n");
    loop {
        let acked = shared.acked.notified();
        tokio::pin!(acked);
        acked.as_mut().enable();
        let now = count();
        if now >= request.numreplicas {
            return i64::try_from(now).unwrap_or(i64::MAX);
        }
        let timeout = async {
            match request.deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = acked => {}
            () = timeout => return i64::try_from(count()).unwrap_or(i64::MAX),
        }
    }
}

/// Online replicas that acknowledged `target` now. As Redis's `replicationCountAcksByOffset`,
/// a replica still waiting for or loading its full sync does not count, whatever its offset
/// (before the first write `target` is 0, which every new link's offset already is).
pub(crate) fn acked_at(server: &Server, target: u64) -> u64 {
    server
        .replication
        .state()
        .replicas
        .iter()
        .filter(|link| {
            link.state() == LinkState::Online && link.ack_offset.load(Ordering::Relaxed) >= target
        })
        .count() as u64
}

/// Starts the replication cron once (the first replica): PINGs, timeouts, the good-replica
/// count, the output limits, the delayed full sync and the backlog's TTL.
fn ensure_cron(server: &Server) {
    let shared = &server.replication.shared;
    if shared.cron_started.swap(true, Ordering::AcqRel) {
        return;
    }
    let Some(owner) = server.arc() else { return };
    let weak = Arc::downgrade(&owner);
    drop(owner);
    let spawned = std::thread::Builder::new()
        .name("forkless-repl".into())
        .spawn(move || {
            let mut last_ping = Instant::now();
            loop {
                std::thread::sleep(CRON_PERIOD);
                let Some(server) = weak.upgrade() else { return };
                if server.shutting_down.load(Ordering::Relaxed) {
                    return;
                }
                cron(&server, &mut last_ping);
            }
        });
    if let Err(err) = spawned {
        tracing::warn!("Can't start the replication cron thread: {err}");
        shared.cron_started.store(false, Ordering::Release);
    }
}

fn cron(server: &Server, last_ping: &mut Instant) {
    maybe_start_sync(server);
    let config = server.config();
    let ping_period = Duration::from_secs(
        u64::try_from(config.stored_int("repl-ping-replica-period", 10))
            .unwrap_or(10)
            .max(1),
    );
    let timeout_ms = u64::try_from(config.stored_int("repl-timeout", 60)).unwrap_or(60) * 1000;
    let max_lag_ms =
        u64::try_from(config.stored_int("min-replicas-max-lag", 10)).unwrap_or(10) * 1000;
    let ttl = u64::try_from(config.stored_int("repl-backlog-ttl", 3600)).unwrap_or(3600);
    let backlog_size =
        u64::try_from(config.stored_int("repl-backlog-size", 1 << 20)).unwrap_or(1 << 20);
    let limits = &config.client_output_buffer_limit.replica;
    let obuf = (
        limits.hard_limit_bytes,
        limits.soft_limit_bytes,
        limits.soft_limit_seconds,
    );
    drop(config);
    let replication = &server.replication;
    let now_ms = unix_ms();
    let (has_replicas, free_backlog) = {
        let mut state = replication.state();
        state.obuf_limits = obuf;
        if state.stream.backlog_size() != backlog_size {
            state.stream.set_backlog_size(backlog_size);
        }
        let mut good = 0;
        for link in &state.replicas {
            if link.state() != LinkState::Online || link.pre_psync {
                continue;
            }
            let since_ack = now_ms.saturating_sub(link.ack_unix_ms.load(Ordering::Relaxed));
            if since_ack > timeout_ms {
                tracing::warn!(
                    "Disconnecting timedout replica (streaming sync): {}:{}",
                    link.ip,
                    link.listening_port.load(Ordering::Relaxed)
                );
                super::drop_link(link);
            } else if since_ack <= max_lag_ms {
                good += 1;
            }
        }
        replication
            .shared
            .good_replicas
            .store(good, Ordering::Relaxed);
        let free = state.backlog_active
            && state.replicas.is_empty()
            && ttl > 0
            && state
                .no_replicas_since
                .is_some_and(|since| since.elapsed() >= Duration::from_secs(ttl));
        (!state.replicas.is_empty() && !state.role_replica, free)
    };
    // No PING while a FAILOVER waits for its target to acknowledge the stream's end (Redis
    // skips it during a failover's pause too): it would move the end it waits for.
    if has_replicas && last_ping.elapsed() >= ping_period && !replication.failover.active() {
        *last_ping = Instant::now();
        replication.append_raw(b"*1\r\n$4\r\nPING\r\n");
    }
    if free_backlog {
        replication.free_backlog(server, ttl);
    }
}

/// Returns true if and only if `min-replicas-to-write` refuses writes now (Redis's
/// `-NOREPLICAS`).
pub(crate) fn writes_refused(server: &Server) -> bool {
    let tunables = &server.tunables;
    let min = tunables.min_replicas_to_write.load(Ordering::Relaxed);
    if min == 0 || tunables.min_replicas_max_lag.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let state = server.replication.state();
    if state.role_replica {
        return false;
    }
    // Counted now, not at the cron's last pass: a CONFIG SET of the options, a replica that
    // just came online or just acknowledged counts at once, as Redis refreshes its count on
    // each of those.
    let max_lag_ms = tunables
        .min_replicas_max_lag
        .load(Ordering::Relaxed)
        .saturating_mul(1000);
    let now_ms = unix_ms();
    let good = state
        .replicas
        .iter()
        .filter(|link| {
            link.state() == LinkState::Online
                && !link.pre_psync
                && now_ms.saturating_sub(link.ack_unix_ms.load(Ordering::Relaxed)) <= max_lag_ms
        })
        .count() as u64;
    drop(state);
    server
        .replication
        .shared
        .good_replicas
        .store(good, Ordering::Relaxed);
    good < min
}
