//! The listening sockets: TCP on `bind` × `port`, and the Unix socket at `unixsocket`.
//!
//! Every listener runs one accept loop that hands its connections to `conn::serve`, which is
//! generic over [`Stream`]: a Unix client runs the same connection code as a TCP one. Its
//! address is a [`ClientAddr`], shown as `/path:0` (Redis's form) and always local for
//! `protected-mode` and the `enable-*-command local` settings.
//!
//! As in Redis 7.0, the socket file is removed and re-created at startup, chmod-ed to
//! `unixsocketperm` (when not 0) and removed again at shutdown. CONFIG SET `port` and `bind`
//! rebind the TCP listeners at run time ([`rebind_tcp`]): the new listeners are bound before
//! the old ones close (the old accept loops are aborted: their sockets close as soon as the
//! runtime drops them, an instant after CONFIG SET replies), so a failure leaves the old ones serving and the CONFIG SET fails;
//! established connections are not touched either way.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, Interest};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::server::{Server, lock};

/// Where a client connected from (or to): CLIENT LIST's `addr` and `laddr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ClientAddr {
    Tcp(SocketAddr),
    /// The server's `unixsocket` path (a Unix client has no address of its own).
    Unix(Arc<str>),
}

impl ClientAddr {
    /// The IP address of a TCP peer; None for a Unix socket.
    pub(crate) fn ip(&self) -> Option<IpAddr> {
        match self {
            ClientAddr::Tcp(addr) => Some(addr.ip()),
            ClientAddr::Unix(_) => None,
        }
    }

    /// Returns true if and only if the client connected over a Unix socket.
    pub(crate) fn is_unix(&self) -> bool {
        matches!(self, ClientAddr::Unix(_))
    }

    /// Returns true if and only if the client is local as Redis's `islocalClient` sees it:
    /// a Unix socket, or TCP from 127.0.0.1 or ::1.
    pub(crate) fn is_local(&self) -> bool {
        match self {
            ClientAddr::Tcp(addr) => crate::limits::is_local(addr.ip()),
            ClientAddr::Unix(_) => true,
        }
    }

    /// The peer's host as Redis's `connPeerToString` gives it: the IP, or `/unixsocket`.
    pub(crate) fn host(&self) -> String {
        match self {
            ClientAddr::Tcp(addr) => addr.ip().to_string(),
            ClientAddr::Unix(_) => "/unixsocket".to_owned(),
        }
    }
}

impl From<SocketAddr> for ClientAddr {
    fn from(addr: SocketAddr) -> ClientAddr {
        ClientAddr::Tcp(addr)
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAddr::Tcp(addr) => addr.fmt(f),
            ClientAddr::Unix(path) => write!(f, "{path}:0"),
        }
    }
}

/// A connected client socket: what `conn` and replication's primary side need of it.
pub(crate) trait Stream:
    AsyncRead + AsyncWrite + AsRawFd + std::os::fd::AsFd + Unpin + Send + Sync + 'static
{
    /// Waits until the socket is readable (see `TcpStream::readable`).
    fn readable(&self) -> impl Future<Output = std::io::Result<()>> + Send;
    /// Waits until the socket may take more bytes (see `TcpStream::writable`).
    fn writable(&self) -> impl Future<Output = std::io::Result<()>> + Send;
    /// Writes what the socket takes now, without waiting: `WouldBlock` when it takes nothing
    /// (see `TcpStream::try_write`).
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize>;
    /// Reads what the socket has now into `buf`, without waiting: `WouldBlock` when it has
    /// nothing (see `TcpStream::try_read_buf`). A read that left room in `buf` drained the
    /// socket, so it also clears the socket's read readiness ([`read_draining`]).
    fn try_read_buf(&self, buf: &mut bytes::BytesMut) -> std::io::Result<usize>;
}

/// Reads with `read` (a `try_read_buf`) inside `try_io`, and when the read returned bytes but
/// fewer than `buf` had room for, reports `WouldBlock` to `try_io` so that it clears the
/// socket's read readiness, then returns the bytes read. A partial read shows the socket's
/// receive buffer drained (epoll is edge-triggered here), as tokio's own `poll_read` assumes:
/// the connection's next wait for bytes then goes to the reactor, instead of returning at once
/// and finding out with one more `recvfrom` that answers `EAGAIN` (one wasted system call per
/// batch of commands; Redis reads once per readiness event). tokio clears only the readiness
/// it saw: bytes that arrive after the read are a new event, so none is missed.
fn read_draining(
    try_io: impl FnOnce(&mut dyn FnMut() -> std::io::Result<usize>) -> std::io::Result<usize>,
    read: impl Fn(&mut bytes::BytesMut) -> std::io::Result<usize>,
    buf: &mut bytes::BytesMut,
) -> std::io::Result<usize> {
    let room = buf.capacity() - buf.len();
    let mut drained = 0;
    let outcome = try_io(&mut || {
        let n = read(buf)?;
        if n > 0 && n < room {
            drained = n;
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match outcome {
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock && drained > 0 => Ok(drained),
        outcome => outcome,
    }
}

impl Stream for TcpStream {
    fn readable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        TcpStream::readable(self)
    }

    fn writable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        TcpStream::writable(self)
    }

    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        TcpStream::try_write(self, buf)
    }

    fn try_read_buf(&self, buf: &mut bytes::BytesMut) -> std::io::Result<usize> {
        read_draining(
            |f| self.try_io(Interest::READABLE, f),
            |buf| TcpStream::try_read_buf(self, buf),
            buf,
        )
    }
}

impl Stream for UnixStream {
    fn readable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        UnixStream::readable(self)
    }

    fn writable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        UnixStream::writable(self)
    }

    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        UnixStream::try_write(self, buf)
    }

    fn try_read_buf(&self, buf: &mut bytes::BytesMut) -> std::io::Result<usize> {
        read_draining(
            |f| self.try_io(Interest::READABLE, f),
            |buf| UnixStream::try_read_buf(self, buf),
            buf,
        )
    }
}

/// The running accept loops. Held in [`Server::listeners`]; a std mutex held only to swap
/// handles (startup, CONFIG SET port/bind, shutdown), never across an await.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    /// Each TCP listener's bound address and accept loop.
    tcp: Vec<(SocketAddr, JoinHandle<()>)>,
    /// The socket file and its accept loop.
    unix: Option<(PathBuf, JoinHandle<()>)>,
}

/// Listeners bound at startup, not yet accepting (the accept loops start once loading is
/// prepared, see `lib.rs`).
pub(crate) struct Bound {
    tcp: Vec<TcpListener>,
    unix: Option<(PathBuf, UnixListener)>,
}

impl Bound {
    /// The first TCP listener's address (port 0 resolved), what INFO shows as `tcp_port`.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.first().and_then(|l| l.local_addr().ok())
    }
}

/// Binds every `bind` address on `port`, and the Unix socket when `unixsocket` is set, as
/// Redis's `initServer` does. The error is the line startup fails with.
pub(crate) fn bind_at_startup(config: &Config) -> Result<Bound, String> {
    let mut tcp = Vec::new();
    for host in &config.bind {
        // A leading `-` marks an address that may be missing; forkless binds it like any other.
        let host = host.trim_start_matches('-');
        let listener = bind_tcp(host, config.port, config.tcp_backlog).map_err(|err| {
            format!(
                "Could not create server TCP listening socket {host}:{}: {err}",
                config.port
            )
        })?;
        tcp.push(listener);
    }
    let unix = match unix_path(config) {
        Some(path) => {
            let perm = unix_perm(config);
            let listener = bind_unix(&path, perm)
                .map_err(|err| format!("Failed opening Unix socket: {err}"))?;
            Some((path, listener))
        }
        None => None,
    };
    Ok(Bound { tcp, unix })
}

/// Starts the accept loops of `bound`.
pub(crate) fn start(server: &Arc<Server>, bound: Bound) {
    let mut listeners = lock(&server.listeners);
    for listener in bound.tcp {
        let Ok(addr) = listener.local_addr() else {
            continue;
        };
        listeners.tcp.push((addr, spawn_tcp(server, listener)));
    }
    if let Some((path, listener)) = bound.unix {
        let shown: Arc<str> = Arc::from(path.to_string_lossy().as_ref());
        let task = tokio::spawn(accept_unix(Arc::clone(server), listener, shown));
        tracing::info!(
            "The server is now ready to accept connections at {}",
            path.display()
        );
        listeners.unix = Some((path, task));
    }
}

/// Stops accepting: ends every accept loop and removes the Unix socket's file, as Redis's
/// `closeListeningSockets` at shutdown. Established connections are not touched.
pub(crate) fn close(server: &Server) {
    let mut listeners = lock(&server.listeners);
    for (_, task) in listeners.tcp.drain(..) {
        task.abort();
    }
    if let Some((path, task)) = listeners.unix.take() {
        task.abort();
        tracing::info!("Removing the unix socket file.");
        if let Err(err) = std::fs::remove_file(&path) {
            tracing::warn!("Error removing the unix socket file: {err}");
        }
    }
}

/// CONFIG SET: rebinds the TCP listeners when `port` or `bind` changed (Redis's `updatePort`
/// and `updateBind` apply functions). The error is CONFIG SET's whole reply text, naming the
/// first of the two options given.
pub(crate) fn config_changed(
    server: &Server,
    config: &Config,
    changed: &[&'static str],
) -> Result<(), String> {
    let Some(first) = changed
        .iter()
        .find(|name| matches!(**name, "port" | "bind"))
    else {
        return Ok(());
    };
    let reason = if *first == "port" {
        "Unable to listen on this port. Check server logs."
    } else {
        "Failed to bind to specified addresses."
    };
    rebind_tcp(server, config, changed.contains(&"port")).map_err(|()| {
        format!("ERR CONFIG SET failed (possibly related to argument '{first}') - {reason}")
    })
}

/// CONFIG SET `port` / `bind`: listens on `config`'s addresses and port. A listener whose
/// address is unchanged keeps running; the others are bound first, and only once all have
/// bound are the old ones closed. On failure nothing changes and the error is Redis's text
/// (without the `ERR CONFIG SET failed ...` prefix). Must run on the tokio runtime.
fn rebind_tcp(server: &Server, config: &Config, port_changed: bool) -> Result<(), ()> {
    let Some(server_arc) = server.arc() else {
        return Err(());
    };
    // `port 0` took a free port at startup; a new `bind` list keeps using that one.
    let port = match (config.port, port_changed) {
        (0, false) => lock(&server.local_addr).map_or(0, |addr| addr.port()),
        (port, _) => port,
    };
    let mut listeners = lock(&server.listeners);
    let mut kept: Vec<(SocketAddr, JoinHandle<()>)> = Vec::new();
    let mut fresh: Vec<TcpListener> = Vec::new();
    let mut old = std::mem::take(&mut listeners.tcp);
    let mut result = Ok(());
    for host in &config.bind {
        let host = host.trim_start_matches('-');
        // An address already listened on, with the wanted port, stays as it is.
        let wanted = resolve(host, port);
        if port != 0 {
            if let Some(idx) = old.iter().position(|(addr, _)| wanted.contains(addr)) {
                kept.push(old.swap_remove(idx));
                continue;
            }
        }
        match bind_tcp(host, port, config.tcp_backlog) {
            Ok(listener) => fresh.push(listener),
            Err(err) => {
                tracing::warn!("Could not create server TCP listening socket {host}:{port}: {err}");
                result = Err(());
                break;
            }
        }
    }
    if result.is_err() {
        // The new listeners close as they drop; the old ones go on.
        old.append(&mut kept);
        listeners.tcp = old;
        return result;
    }
    for (_, task) in old {
        task.abort();
    }
    for listener in fresh {
        let Ok(addr) = listener.local_addr() else {
            continue;
        };
        kept.push((addr, spawn_tcp(&server_arc, listener)));
    }
    *lock(&server.local_addr) = kept.first().map(|(addr, _)| *addr);
    listeners.tcp = kept;
    Ok(())
}

fn resolve(host: &str, port: u16) -> Vec<SocketAddr> {
    use std::net::ToSocketAddrs as _;
    (host, port)
        .to_socket_addrs()
        .map(Iterator::collect)
        .unwrap_or_default()
}

/// Binds `host:port` with `tcp-backlog`, trying each address `host` resolves to until one
/// binds, as `TcpListener::bind` does.
fn bind_tcp(host: &str, port: u16, backlog: u32) -> std::io::Result<TcpListener> {
    let mut last_error = None;
    for addr in resolve(host, port) {
        match crate::limits::listen(addr, backlog) {
            Ok(listener) => return Ok(listener),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

/// `unixsocket`, when set.
fn unix_path(config: &Config) -> Option<PathBuf> {
    let path = config.stored_text("unixsocket");
    (!path.is_empty()).then(|| PathBuf::from(String::from_utf8_lossy(&path).into_owned()))
}

/// `unixsocketperm`, octal as CONFIG GET shows it; 0 leaves the file's mode to the umask.
fn unix_perm(config: &Config) -> u32 {
    let text = config.stored_text("unixsocketperm");
    u32::from_str_radix(&String::from_utf8_lossy(&text), 8).unwrap_or(0)
}

/// Redis's `anetUnixServer`: the old file removed, bound and listening, chmod-ed to `perm`
/// (unless 0). std binds and listens in one call, so the chmod follows the listen (Redis's
/// comes between the two) and the accept queue is std's, not `tcp-backlog`.
fn bind_unix(path: &Path, perm: u32) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    // Whatever was there (a stale socket of an earlier run) goes; a missing file is fine.
    let _ = std::fs::remove_file(path);
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    if perm != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(perm))?;
    }
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

fn spawn_tcp(server: &Arc<Server>, listener: TcpListener) -> JoinHandle<()> {
    tokio::spawn(accept_tcp(Arc::clone(server), listener))
}

async fn accept_tcp(server: Arc<Server>, listener: TcpListener) {
    let mut backoff = crate::limits::AcceptBackoff::new();
    loop {
        match listener.accept().await {
            Ok((socket, addr)) => {
                backoff.reset();
                let local = socket.local_addr().unwrap_or(addr);
                let _ = socket.set_nodelay(true);
                tokio::spawn(crate::conn::serve(
                    Arc::clone(&server),
                    socket,
                    ClientAddr::Tcp(addr),
                    ClientAddr::Tcp(local),
                ));
            }
            // EMFILE and friends: back off, keep serving existing clients.
            Err(err) => tokio::time::sleep(backoff.failed(&err)).await,
        }
    }
}

async fn accept_unix(server: Arc<Server>, listener: UnixListener, path: Arc<str>) {
    let mut backoff = crate::limits::AcceptBackoff::new();
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                backoff.reset();
                let addr = ClientAddr::Unix(Arc::clone(&path));
                tokio::spawn(crate::conn::serve(
                    Arc::clone(&server),
                    socket,
                    addr.clone(),
                    addr,
                ));
            }
            Err(err) => tokio::time::sleep(backoff.failed(&err)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Stream;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream, UnixStream};

    /// Whether the socket's readiness answers at once (one poll, no waiting).
    fn readable_now<S: Stream>(socket: &S) -> bool {
        let readable = pin!(socket.readable());
        matches!(
            readable.poll(&mut Context::from_waker(Waker::noop())),
            Poll::Ready(_)
        )
    }

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    /// A read that leaves room in the buffer drained the socket: the next wait for bytes does
    /// not answer at once (no read that would return `WouldBlock`), and bytes sent after it
    /// are still seen.
    async fn a_partial_read_clears_readiness_and_misses_nothing<S: Stream>(
        server: S,
        mut client: impl AsyncWriteExt + Unpin,
    ) {
        client.write_all(b"PING\r\n").await.unwrap();
        server.readable().await.unwrap();
        let mut buf = bytes::BytesMut::with_capacity(1024);
        assert_eq!(server.try_read_buf(&mut buf).unwrap(), 6);
        assert!(!readable_now(&server));
        client.write_all(b"ECHO\r\n").await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), server.readable())
            .await
            .expect("bytes sent after a draining read wake the reader")
            .unwrap();
        assert_eq!(server.try_read_buf(&mut buf).unwrap(), 6);
        assert_eq!(&buf[..], b"PING\r\nECHO\r\n");
        // Nothing more: `WouldBlock`, as before.
        let err = server.try_read_buf(&mut buf).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        // A read that fills the buffer may have left bytes: the readiness stays.
        client.write_all(&[b'x'; 100]).await.unwrap();
        server.readable().await.unwrap();
        let mut small = bytes::BytesMut::with_capacity(16);
        let room = small.capacity();
        assert_eq!(server.try_read_buf(&mut small).unwrap(), room);
        assert!(readable_now(&server));
        // The peer's close is seen after a draining read.
        let mut rest = bytes::BytesMut::with_capacity(1024);
        assert_eq!(server.try_read_buf(&mut rest).unwrap(), 100 - room);
        drop(client);
        server.readable().await.unwrap();
        assert_eq!(server.try_read_buf(&mut rest).unwrap(), 0);
    }

    #[tokio::test]
    async fn a_partial_tcp_read_clears_readiness_and_misses_nothing() {
        let (server, client) = tcp_pair().await;
        a_partial_read_clears_readiness_and_misses_nothing(server, client).await;
    }

    #[tokio::test]
    async fn a_partial_unix_read_clears_readiness_and_misses_nothing() {
        let (server, client) = UnixStream::pair().unwrap();
        a_partial_read_clears_readiness_and_misses_nothing(server, client).await;
    }
}
