//! The link to the primary: connect, handshake, PSYNC, then the stream of commands, and the
//! reconnect loop around them. Redis 7.0's `connectWithMaster`, `syncWithMaster`,
//! `slaveTryPartialResynchronization` and the master client's read path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use forkless_protocol::{Limits, Out, RequestDecoder, RespVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{LinkState, MasterAddr};
use crate::cmd;
use crate::server::{Server, unix_ms};

/// The first wait before reconnecting after a failure, and the longest: the wait doubles from
/// one to the other while attempts fail, and starts over once a link came up. At most a
/// second, as Redis's replicationCron retries once a second: a replica whose syncs keep
/// failing (a primary restarting, a link cut mid-transfer) is never left waiting longer.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// REPLCONF ACK every second, as Redis's replicationCron.
const ACK_PERIOD: Duration = Duration::from_secs(1);
/// The longest reply line the handshake accepts from the primary.
const MAX_LINE: usize = 64 * 1024;
/// How often the stream looks again whether a busy script has ended.
const BUSY_SCRIPT_POLL: Duration = Duration::from_millis(10);
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;
/// While applying a long buffer (the stream a dual-channel sync read meanwhile), the socket
/// is read again after this many commands.
const FAIR_READ_COMMANDS: usize = 1024;
/// The most socket reads of one such turn.
const FAIR_READ_CHUNKS: usize = 16;

/// Runs the link to `master` until `cancel` is set (REPLICAOF to another primary, or NO ONE),
/// reconnecting with a backoff after each failure.
pub(crate) async fn run(server: Arc<Server>, master: MasterAddr, cancel: Arc<AtomicBool>) {
    let replica = &server.replication.replica;
    let mut backoff = FIRST_BACKOFF;
    tracing::info!("Connecting to MASTER {}:{}", master.host, master.port);
    loop {
        if !replica.is_current(&cancel) {
            return;
        }
        let mut linked = false;
        let result = session(&server, &master, &cancel, &mut linked).await;
        if !replica.is_current(&cancel) {
            return;
        }
        let reason = match result {
            Ok(()) => "connection closed".to_owned(),
            Err(reason) => reason,
        };
        if linked {
            tracing::warn!(
                "Connection with master lost ({reason}): caching the master for a partial \
                 resynchronization"
            );
            backoff = FIRST_BACKOFF;
        } else {
            tracing::warn!(
                "Replication with MASTER {}:{} failed: {reason}",
                master.host,
                master.port
            );
        }
        replica.link_down();
        tracing::info!(
            "Reconnecting to MASTER {}:{} in {} ms",
            master.host,
            master.port,
            backoff.as_millis()
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The primary's answer to PSYNC.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Psync {
    FullResync { replid: String, offset: u64 },
    Continue { new_replid: Option<String> },
}

/// Parses `+FULLRESYNC <replid> <offset>` and `+CONTINUE [<replid>]`; anything else is the
/// failure to log.
pub(crate) fn parse_psync_reply(line: &[u8]) -> Result<Psync, String> {
    let text = String::from_utf8_lossy(line);
    let mut words = text.split(' ');
    match words.next() {
        Some("+FULLRESYNC") => {
            let (Some(replid), Some(offset)) = (words.next(), words.next()) else {
                return Err(format!(
                    "Master replied with wrong +FULLRESYNC syntax: {text}"
                ));
            };
            let offset = offset.parse::<u64>().ok();
            match offset {
                Some(offset) if is_replid(replid) => Ok(Psync::FullResync {
                    replid: replid.to_owned(),
                    offset,
                }),
                _ => Err(format!(
                    "Master replied with wrong +FULLRESYNC syntax: {text}"
                )),
            }
        }
        Some("+CONTINUE") => match words.next() {
            Some(replid) if is_replid(replid) => Ok(Psync::Continue {
                new_replid: Some(replid.to_owned()),
            }),
            Some("") | None => Ok(Psync::Continue { new_replid: None }),
            Some(_) => Err(format!("Master replied with a wrong +CONTINUE: {text}")),
        },
        _ if text.starts_with("-NOMASTERLINK") || text.starts_with("-LOADING") => Err(format!(
            "Master is currently unable to PSYNC but should be in the future: {text}"
        )),
        _ => Err(format!("Unexpected reply to PSYNC from master: {text}")),
    }
}

fn is_replid(word: &str) -> bool {
    word.len() == 40 && word.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The connection to the primary with what has been read and not used yet.
pub(crate) struct Conn {
    pub(crate) socket: TcpStream,
    pub(crate) buf: BytesMut,
    /// `repl-timeout`: the longest the primary may stay silent.
    pub(crate) timeout: Duration,
    /// Notified when the other connection of a dual-channel sync failed: reads fail at once.
    pub(crate) abort: Option<Arc<tokio::sync::Notify>>,
}

impl Conn {
    /// Reads more bytes into the buffer; an error when the primary closed, failed or stayed
    /// silent past `repl-timeout`.
    pub(crate) async fn fill(&mut self, server: &Server) -> Result<usize, String> {
        self.buf.reserve(READ_CHUNK);
        let abort = self.abort.clone();
        let aborted = async {
            match abort {
                Some(abort) => abort.notified().await,
                None => std::future::pending().await,
            }
        };
        let read = tokio::select! {
            read = tokio::time::timeout(self.timeout, self.socket.read_buf(&mut self.buf)) => read,
            () = aborted => {
                return Err("the stream connection of the dual-channel sync failed".to_owned());
            }
        };
        match read {
            Err(_) => Err(format!(
                "Timeout connecting to the MASTER: no data for {} seconds",
                self.timeout.as_secs()
            )),
            Ok(Err(err)) => Err(format!("error reading from MASTER: {err}")),
            Ok(Ok(0)) => Err("the MASTER closed the connection".to_owned()),
            Ok(Ok(n)) => {
                server
                    .replication
                    .replica
                    .last_io_secs
                    .store(unix_ms() / 1000, Ordering::Relaxed);
                Ok(n)
            }
        }
    }

    /// One line, without its `\r\n` (or `\n`).
    pub(crate) async fn read_line(&mut self, server: &Server) -> Result<Vec<u8>, String> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line = self.buf.split_to(end + 1);
                let line = line.strip_suffix(b"\n").unwrap_or(&line);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                return Ok(line.to_vec());
            }
            if self.buf.len() > MAX_LINE {
                return Err("the MASTER sent a reply line longer than 64 KiB".to_owned());
            }
            self.fill(server).await?;
        }
    }

    async fn send(&mut self, args: &[&[u8]]) -> Result<(), String> {
        self.socket
            .write_all(&encode_command(args))
            .await
            .map_err(|err| format!("error writing to MASTER: {err}"))
    }

    /// Sends a command and reads its one-line reply.
    async fn command(&mut self, server: &Server, args: &[&[u8]]) -> Result<Vec<u8>, String> {
        self.send(args).await?;
        self.read_line(server).await
    }
}

/// A command as a RESP array of bulk strings.
pub(crate) fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One connection to the primary, from connect to the link's end. `linked` is set once the
/// stream is being applied (the link was up).
async fn session(
    server: &Arc<Server>,
    master: &MasterAddr,
    cancel: &Arc<AtomicBool>,
    linked: &mut bool,
) -> Result<(), String> {
    let replica = &server.replication.replica;
    let timeout = {
        let secs = server.config().stored_int("repl-timeout", 60);
        Duration::from_secs(u64::try_from(secs).unwrap_or(60).max(1))
    };
    replica.set_state(LinkState::Connecting);
    let mut conn = connect(server, master, timeout).await?;
    tracing::info!("MASTER <-> REPLICA sync started");
    replica.set_state(LinkState::Handshake);
    // A dual-channel sync is offered with a fresh token; the primary's +OK accepts it.
    let token = (server.config().stored_text("repl-dual-channel") == b"yes")
        .then(super::super::random_replid);
    let dual = handshake(
        server,
        &mut conn,
        token.as_deref().map_or(Dual::Off, Dual::Offer),
    )
    .await?
    .then_some(token)
    .flatten();
    let reply = psync(server, &mut conn).await?;
    match reply {
        Psync::FullResync { replid, offset } => {
            tracing::info!("Full resync from master: {replid}:{offset}");
            // The dataset is about to be replaced: until the load succeeds, no PSYNC.
            replica.psync_possible.store(false, Ordering::Release);
            match dual {
                None => super::transfer::full_sync(server, &mut conn, cancel, &replid).await?,
                Some(token) => {
                    conn = dual_full_sync(server, master, conn, cancel, &token, &replid, offset)
                        .await?;
                }
            }
            if !replica.is_current(cancel) {
                // REPLICAOF moved on while the load ran: the IDs are no longer this link's.
                return Ok(());
            }
            // The master's ID and offset become ours, the backlog restarts there and this
            // server's own replicas are dropped (their data is stale).
            server
                .replication
                .reset_after_full_sync(server, &replid, offset);
            replica.psync_possible.store(true, Ordering::Release);
            replica.master_db.store(0, Ordering::Relaxed);
            crate::replication::replica::transfer::after_full_sync(server);
            tracing::info!("MASTER <-> REPLICA sync: Finished with success");
        }
        Psync::Continue { new_replid } => {
            if let Some(new_replid) = new_replid
                && new_replid != server.replication.replid()
            {
                // Our ID becomes the second one; our own replicas reconnect to learn it.
                server.replication.shift_replid_to(&new_replid);
            }
            tracing::info!(
                "Successful partial resynchronization with master. MASTER <-> REPLICA sync: \
                 Master accepted a Partial Resynchronization."
            );
        }
    }
    if !replica.is_current(cancel) {
        return Ok(());
    }
    *linked = true;
    apply_stream(server, conn, cancel).await
}

/// Connects to the primary within `timeout`, from `bind-source-addr` when it is set.
async fn connect(server: &Server, master: &MasterAddr, timeout: Duration) -> Result<Conn, String> {
    let source = server.config().stored_text("bind-source-addr");
    let source = String::from_utf8_lossy(&source).into_owned();
    let socket = tokio::time::timeout(timeout, connect_from(&source, master))
        .await
        .map_err(|_| "Timeout connecting to the MASTER".to_owned())?
        .map_err(|err| format!("Unable to connect to MASTER: {err}"))?;
    let _ = socket.set_nodelay(true);
    Ok(Conn {
        socket,
        buf: BytesMut::with_capacity(READ_CHUNK),
        timeout,
        abort: None,
    })
}

/// Redis's `anetTcpGenericConnect`: each address of the primary in turn, the socket bound to
/// `source` first unless it is empty.
async fn connect_from(source: &str, master: &MasterAddr) -> std::io::Result<TcpStream> {
    if source.is_empty() {
        return TcpStream::connect((master.host.as_str(), master.port)).await;
    }
    let source: std::net::IpAddr = source.parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "bind-source-addr is not an IP address",
        )
    })?;
    let mut last_error = None;
    for addr in tokio::net::lookup_host((master.host.as_str(), master.port)).await? {
        if addr.is_ipv4() != source.is_ipv4() {
            continue;
        }
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(std::net::SocketAddr::new(source, 0))?;
        match socket.connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no address of the MASTER matches bind-source-addr's family",
        )
    }))
}

/// What the handshake says of a dual-channel sync (docs/replication.md).
#[derive(Debug, Clone, Copy)]
enum Dual<'a> {
    /// Not offered (`repl-dual-channel no`): Redis 7.0's handshake exactly.
    Off,
    /// Offered for the connection that takes the RDB, with this token.
    Offer(&'a str),
    /// The second connection, which takes the stream of the sync with this token.
    Stream(&'a str),
}

/// PING, AUTH, REPLCONF listening-port / ip-address, REPLCONF capa, as Redis 7.0's
/// `syncWithMaster` sends them; with a dual-channel offer, `forkless-dual <token>` after the
/// capabilities in the same REPLCONF (Redis answers an error for it, having taken the
/// capabilities before it). Returns true if and only if the primary accepted the offer.
async fn handshake(server: &Server, conn: &mut Conn, dual: Dual<'_>) -> Result<bool, String> {
    let reply = conn.command(server, &[b"PING"]).await?;
    if reply.first() == Some(&b'-')
        && !reply.starts_with(b"-NOAUTH")
        && !reply.starts_with(b"-NOPERM")
        && !reply.starts_with(b"-ERR operation not permitted")
    {
        return Err(format!(
            "Error reply to PING from master: '{}'",
            String::from_utf8_lossy(&reply)
        ));
    }
    tracing::info!("Master replied to PING, replication can continue...");
    let (user, pass, port, announce_ip) = {
        let config = server.config();
        let announce_port = config.stored_int("replica-announce-port", 0);
        let port = if announce_port > 0 {
            u16::try_from(announce_port).unwrap_or(config.port)
        } else {
            crate::server::lock(&server.local_addr).map_or(config.port, |addr| addr.port())
        };
        (
            config.stored_text("masteruser"),
            config.stored_text("masterauth"),
            port,
            config.stored_text("replica-announce-ip"),
        )
    };
    if !pass.is_empty() {
        let reply = if user.is_empty() {
            conn.command(server, &[b"AUTH", &pass]).await?
        } else {
            conn.command(server, &[b"AUTH", &user, &pass]).await?
        };
        if reply.first() == Some(&b'-') {
            return Err(format!(
                "Unable to AUTH to MASTER: {}",
                String::from_utf8_lossy(&reply)
            ));
        }
    }
    let port = port.to_string();
    let reply = conn
        .command(server, &[b"REPLCONF", b"listening-port", port.as_bytes()])
        .await?;
    if reply.first() == Some(&b'-') {
        tracing::info!(
            "(Non critical) Master does not understand REPLCONF listening-port: {}",
            String::from_utf8_lossy(&reply)
        );
    }
    if !announce_ip.is_empty() {
        let reply = conn
            .command(server, &[b"REPLCONF", b"ip-address", &announce_ip])
            .await?;
        if reply.first() == Some(&b'-') {
            tracing::info!(
                "(Non critical) Master does not understand REPLCONF ip-address: {}",
                String::from_utf8_lossy(&reply)
            );
        }
    }
    let mut capa: Vec<&[u8]> = vec![b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"];
    match dual {
        Dual::Off => {}
        Dual::Offer(token) => capa.extend([&b"forkless-dual"[..], token.as_bytes()]),
        Dual::Stream(token) => capa.extend([&b"forkless-dual-stream"[..], token.as_bytes()]),
    }
    let reply = conn.command(server, &capa).await?;
    let refused = reply.first() == Some(&b'-');
    match dual {
        Dual::Stream(_) if refused => {
            return Err(format!(
                "the MASTER refused the dual-channel stream connection: {}",
                String::from_utf8_lossy(&reply)
            ));
        }
        Dual::Offer(_) if refused => tracing::info!(
            "The master does not offer a dual-channel sync: a full sync buffers the stream on \
             the master ({})",
            String::from_utf8_lossy(&reply)
        ),
        Dual::Off if refused => tracing::info!(
            "(Non critical) Master does not understand REPLCONF capa: {}",
            String::from_utf8_lossy(&reply)
        ),
        _ => {}
    }
    Ok(!refused && !matches!(dual, Dual::Off))
}

/// A dual-channel full sync after `+FULLRESYNC <replid> <offset>` on `conn`: a second
/// connection asks for the stream from `offset` (`PSYNC <replid> <offset+1>` after `REPLCONF
/// forkless-dual-stream <token>`) and reads it into this server's memory while `conn`
/// receives and loads the RDB; if either fails, both are dropped. Returns the second
/// connection, with the stream read so far in its buffer, to apply as the master link.
async fn dual_full_sync(
    server: &Arc<Server>,
    master: &MasterAddr,
    mut conn: Conn,
    cancel: &Arc<AtomicBool>,
    token: &str,
    replid: &str,
    offset: u64,
) -> Result<Conn, String> {
    let mut stream_conn = connect(server, master, conn.timeout).await?;
    handshake(server, &mut stream_conn, Dual::Stream(token)).await?;
    let asked = (offset + 1).to_string();
    stream_conn
        .send(&[b"PSYNC", replid.as_bytes(), asked.as_bytes()])
        .await?;
    let line = loop {
        let line = stream_conn.read_line(server).await?;
        if !line.is_empty() {
            break line;
        }
    };
    if !matches!(parse_psync_reply(&line)?, Psync::Continue { .. }) {
        return Err(format!(
            "the MASTER did not continue the dual-channel stream: {}",
            String::from_utf8_lossy(&line)
        ));
    }
    tracing::info!("Dual-channel sync: reading the stream from offset {asked} while the RDB loads");
    let abort = Arc::new(tokio::sync::Notify::new());
    conn.abort = Some(Arc::clone(&abort));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let buffering = tokio::spawn(buffer_stream(
        Arc::clone(server),
        stream_conn,
        offset,
        stop_rx,
        abort,
    ));
    let loaded = super::transfer::full_sync(server, &mut conn, cancel, replid).await;
    let _ = stop_tx.send(());
    let buffered = buffering
        .await
        .unwrap_or_else(|err| Err(format!("the dual-channel stream task failed: {err}")));
    let replica = &server.replication.replica;
    replica.stream_buffered.store(0, Ordering::Relaxed);
    // The stream's failure first: it is why the RDB connection was aborted, if it was.
    let stream_conn = buffered?;
    loaded?;
    replica.dual_syncs.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        "Dual-channel sync: RDB loaded; applying {} buffered stream bytes",
        stream_conn.buf.len()
    );
    // The RDB connection closes here; the primary frees its link.
    drop(conn);
    Ok(stream_conn)
}

/// Reads the stream of a dual-channel sync into `conn.buf` until `stop` (the RDB loaded),
/// acknowledging `offset` every second so the primary keeps the link. Past
/// `repl-dual-channel-buffer-limit` bytes, or when the connection fails, notifies `abort`
/// (the RDB connection fails at once) and returns why.
async fn buffer_stream(
    server: Arc<Server>,
    mut conn: Conn,
    offset: u64,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    abort: Arc<tokio::sync::Notify>,
) -> Result<Conn, String> {
    let replica = &server.replication.replica;
    let limit = u64::try_from(
        server
            .config()
            .stored_int("repl-dual-channel-buffer-limit", 1 << 30),
    )
    .unwrap_or(0);
    replica.stream_buffered.store(0, Ordering::Relaxed);
    replica.stream_buffered_peak.store(0, Ordering::Relaxed);
    let mut ack = tokio::time::interval(ACK_PERIOD);
    let ack_command = encode_command(&[b"REPLCONF", b"ACK", offset.to_string().as_bytes()]);
    let result = loop {
        let held = conn.buf.len() as u64;
        replica.stream_buffered.store(held, Ordering::Relaxed);
        replica
            .stream_buffered_peak
            .fetch_max(held, Ordering::Relaxed);
        if limit > 0 && held > limit {
            break Err(format!(
                "the stream read during the dual-channel sync passed \
                 repl-dual-channel-buffer-limit ({held} > {limit} bytes)"
            ));
        }
        tokio::select! {
            _ = &mut stop => return Ok(conn),
            filled = conn.fill(&server) => {
                if let Err(reason) = filled {
                    break Err(format!("dual-channel stream connection: {reason}"));
                }
            }
            _ = ack.tick() => {
                if let Err(err) = conn.socket.write_all(&ack_command).await {
                    break Err(format!("error writing to MASTER: {err}"));
                }
            }
        }
    };
    abort.notify_one();
    result
}

/// Sends PSYNC <replid> <offset+1> when this server's dataset is a prefix of the primary's
/// history (after a sync, or as a former primary), else `PSYNC ? -1`, and reads the answer,
/// skipping the empty lines a primary sends to keep the link alive.
async fn psync(server: &Server, conn: &mut Conn) -> Result<Psync, String> {
    let replica = &server.replication.replica;
    let (replid, offset) = if replica.psync_possible.load(Ordering::Acquire) {
        let replid = server.replication.replid();
        let offset = (server.replication.offset() + 1).to_string();
        tracing::info!("Trying a partial resynchronization (request {replid}:{offset}).");
        (replid, offset)
    } else {
        tracing::info!("Partial resynchronization not possible (no cached master)");
        ("?".to_owned(), "-1".to_owned())
    };
    // A primary handing over with FAILOVER asks its target to promote itself
    // (`replication::failover`); any answer but +CONTINUE / +FULLRESYNC aborts the failover.
    let failover = server.replication.failover.in_progress();
    let mut args: Vec<&[u8]> = vec![b"PSYNC", replid.as_bytes(), offset.as_bytes()];
    if failover {
        args.push(b"FAILOVER");
    }
    if let Err(err) = conn.send(&args).await {
        if failover {
            crate::replication::failover::abort(server, "Write error to failover target");
        }
        return Err(err);
    }
    let reply = async {
        loop {
            let line = conn.read_line(server).await?;
            if !line.is_empty() {
                return parse_psync_reply(&line);
            }
        }
    }
    .await;
    if failover {
        crate::replication::failover::psync_answered(server, reply.is_ok());
    }
    reply
}

/// Removes the master client from the registry when the stream ends, however it ends.
struct Registered<'a> {
    server: &'a Server,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.server.clients.remove(self.id);
        let replica = &self.server.replication.replica;
        let _ = replica.master_client_id.compare_exchange(
            self.id,
            0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}

/// Applies the primary's stream until the link fails: each command through the command table
/// as the master client, its bytes added to the offset once it is outside a transaction (as
/// Redis's master client's `reploff`), REPLCONF GETACK answered, REPLCONF ACK every second.
async fn apply_stream(
    server: &Arc<Server>,
    conn: Conn,
    cancel: &Arc<AtomicBool>,
) -> Result<(), String> {
    let replica = &server.replication.replica;
    let Conn {
        socket,
        mut buf,
        timeout,
        abort: _,
    } = conn;
    let peer = socket
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let local = socket.local_addr().unwrap_or(peer);
    let (mut reader, mut writer) = socket.into_split();
    let mut client = crate::aof::load::replay_client_at(server, peer, local);
    client.db = replica.master_db.load(Ordering::Relaxed);
    client.handle.db.store(client.db, Ordering::Relaxed);
    let handle = Arc::clone(&client.handle);
    server.clients.insert(Arc::clone(&handle));
    let _registered = Registered {
        server,
        id: client.id,
    };
    replica.master_client_id.store(client.id, Ordering::Release);
    replica
        .last_io_secs
        .store(unix_ms() / 1000, Ordering::Relaxed);
    // The stream read before the link is up (a dual-channel sync's, held while the RDB
    // loaded) is applied first: only then is the link up (`master_link_status:up`), as Redis
    // reports it once the sync has loaded, not while the replica is still behind its load.
    let catch_up = buf.len() as u64;
    let mut up = false;
    if catch_up == 0 {
        link_up(replica);
        up = true;
    }
    // No limits on what the primary sends, as Redis exempts its master client.
    let mut decoder = RequestDecoder::new(Limits {
        max_bulk_len: u64::MAX,
        ..Limits::default()
    });
    let base = server.replication.offset();
    let read_offset = |received: u64| i64::try_from(base + received).unwrap_or(i64::MAX);
    replica.read_offset.store(read_offset(0), Ordering::Relaxed);
    // Bytes put in `buf` since the stream began, and bytes counted into the offset.
    let mut received = buf.len() as u64;
    let mut accounted = 0u64;
    // The stream's bytes as received, not yet fed on (the decoder takes `buf` apart), and
    // those of the commands applied but not yet fed, a transaction's until its EXEC.
    let mut raw = BytesMut::from(&buf[..]);
    let mut pending = BytesMut::new();
    let mut out = Out::new(RespVersion::Resp2);
    // Commands applied since the socket was last read: after a dual-channel sync the buffer
    // may hold much of the stream, and the primary's buffer must not grow meanwhile.
    let mut since_read = 0usize;
    send_ack(&mut writer, server.replication.offset()).await?;
    let mut ack = tokio::time::interval_at(tokio::time::Instant::now() + ACK_PERIOD, ACK_PERIOD);
    let result = loop {
        if !replica.is_current(cancel) || handle.killed.load(Ordering::Acquire) {
            break Err("the master client was killed".to_owned());
        }
        // Every whole command in the buffer.
        loop {
            if !up && accounted >= catch_up {
                link_up(replica);
                up = true;
            }
            since_read += 1;
            // Whatever the socket holds, up to FAIR_READ_CHUNKS reads, so the primary's
            // buffer for this replica stays small while a long buffer is applied.
            let mut fair_reads = if since_read >= FAIR_READ_COMMANDS {
                since_read = 0;
                FAIR_READ_CHUNKS
            } else {
                0
            };
            while fair_reads > 0 {
                fair_reads -= 1;
                buf.reserve(READ_CHUNK);
                match reader.try_read_buf(&mut buf) {
                    Ok(0) => return Err("the MASTER closed the connection".to_owned()),
                    Ok(n) => {
                        received += n as u64;
                        raw.extend_from_slice(
                            buf.get(buf.len().saturating_sub(n)..).unwrap_or_default(),
                        );
                        server
                            .stats
                            .net_input_bytes
                            .fetch_add(n as u64, Ordering::Relaxed);
                        replica
                            .read_offset
                            .store(read_offset(received), Ordering::Relaxed);
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(err) => return Err(format!("error reading from MASTER: {err}")),
                }
            }
            let argv = match decoder.decode(&mut buf) {
                Ok(Some(argv)) => argv,
                Ok(None) => break,
                Err(err) => return Err(format!("Protocol error from MASTER: {err}")),
            };
            let end = received - buf.len() as u64;
            let command = raw.split_to(usize::try_from(end - accounted).unwrap_or(usize::MAX));
            pending.extend_from_slice(&command);
            accounted = end;
            if is_getack(&argv) {
                // The ACK counts what came before GETACK, as Redis's.
                send_ack(&mut writer, server.replication.offset()).await?;
            } else if !argv.is_empty() {
                // A busy script (a client's EVAL on this replica) would refuse the command
                // with BUSY and the replica would silently diverge: the stream waits for the
                // script instead, as Redis's master client does.
                while server.scripting.run.busy() {
                    tokio::time::sleep(BUSY_SCRIPT_POLL).await;
                }
                out.buf.clear();
                // Applied and fed as one step, for the cut of a full sync this server gives
                // its own replicas (`Replication::apply_guard`).
                let _apply = server.replication.apply_guard();
                cmd::execute(server, &mut client, &mut out, &argv);
                client.blocked = None;
                if client.multi.is_none() {
                    feed(server, &mut pending);
                    // The stream's database at this offset, for a save's `repl-stream-db`.
                    replica.master_db.store(client.db, Ordering::Relaxed);
                }
                continue;
            }
            if client.multi.is_none() {
                feed(server, &mut pending);
            }
        }
        replica.master_db.store(client.db, Ordering::Relaxed);
        buf.reserve(READ_CHUNK);
        cmd::client::publish(&client, false, buf.len(), buf.capacity() - buf.len());
        cmd::client::mark_master(&handle);
        tokio::select! {
            read = tokio::time::timeout(timeout, reader.read_buf(&mut buf)) => match read {
                Err(_) => break Err(format!(
                    "MASTER timeout: no data nor PING received for {} seconds",
                    timeout.as_secs()
                )),
                Ok(Err(err)) => break Err(format!("error reading from MASTER: {err}")),
                Ok(Ok(0)) => break Err("the MASTER closed the connection".to_owned()),
                Ok(Ok(n)) => {
                    received += n as u64;
                    raw.extend_from_slice(buf.get(buf.len().saturating_sub(n)..).unwrap_or_default());
                    // CLIENT LIST's idle=, and INFO's net input, as for any client's read.
                    handle.last_interaction_ms.store(
                        u64::try_from(handle.created.elapsed().as_millis()).unwrap_or(u64::MAX),
                        Ordering::Relaxed,
                    );
                    server
                        .stats
                        .net_input_bytes
                        .fetch_add(n as u64, Ordering::Relaxed);
                    replica
                        .read_offset
                        .store(read_offset(received), Ordering::Relaxed);
                    replica.last_io_secs.store(unix_ms() / 1000, Ordering::Relaxed);
                }
            },
            _ = ack.tick() => send_ack(&mut writer, server.replication.offset()).await?,
            () = handle.kill.notified() => {}
        }
    };
    // A transaction cut by the link's end is dropped: its commands are resent after a PSYNC,
    // from the offset before its MULTI.
    client.multi = None;
    cmd::transaction::discard_all(server, &mut client);
    result
}

/// The link is up: INFO's `master_link_status:up`, the stale-data refusal lifted.
fn link_up(replica: &crate::replication::replica::Replica) {
    replica.down_since_secs.store(0, Ordering::Relaxed);
    replica.set_state(LinkState::Connected);
    tracing::info!("MASTER <-> REPLICA link is up: applying the stream");
}

/// The master's bytes, verbatim, advance the offset and go on to this server's own replicas
/// (Redis's replicationFeedStreamFromMasterStream): a chain keeps the master's offsets and ID.
/// The effects the master client published are not rendered again while this server is a
/// replica.
fn feed(server: &Server, pending: &mut BytesMut) {
    server.replication.feed_from_master(pending);
    pending.clear();
}

fn is_getack(argv: &[Bytes]) -> bool {
    matches!(argv, [name, sub, ..] if cmd::eq_ignore_case(name, "replconf")
        && cmd::eq_ignore_case(sub, "getack"))
}

async fn send_ack(writer: &mut tokio::net::tcp::OwnedWriteHalf, offset: u64) -> Result<(), String> {
    let offset = offset.to_string();
    writer
        .write_all(&encode_command(&[b"REPLCONF", b"ACK", offset.as_bytes()]))
        .await
        .map_err(|err| format!("error writing to MASTER: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psync_replies_parse_as_redis_sends_them() {
        let id = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            parse_psync_reply(format!("+FULLRESYNC {id} 42").as_bytes()),
            Ok(Psync::FullResync {
                replid: id.to_owned(),
                offset: 42
            })
        );
        assert_eq!(
            parse_psync_reply(b"+CONTINUE"),
            Ok(Psync::Continue { new_replid: None })
        );
        assert_eq!(
            parse_psync_reply(format!("+CONTINUE {id}").as_bytes()),
            Ok(Psync::Continue {
                new_replid: Some(id.to_owned())
            })
        );
        assert!(parse_psync_reply(b"+FULLRESYNC short 1").is_err());
        assert!(parse_psync_reply(format!("+FULLRESYNC {id} -3").as_bytes()).is_err());
        assert!(
            parse_psync_reply(b"-LOADING Redis is loading the dataset in memory")
                .is_err_and(|e| e.contains("should be in the future"))
        );
        assert!(parse_psync_reply(b"garbage").is_err());
    }

    #[test]
    fn commands_encode_as_resp_arrays() {
        assert_eq!(
            encode_command(&[b"REPLCONF", b"ACK", b"10"]),
            b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$2\r\n10\r\n".to_vec()
        );
    }
}
