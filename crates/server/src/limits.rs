//! Where the limits on clients are enforced: every check that protects the server from a
//! hostile client or a careless configuration lives in this module, and the connection loop
//! (`conn.rs`) and the listeners (`lib.rs`) call it.
//!
//! # Layout
//! - Admission, when a connection is accepted: `maxclients` ([`MAX_CLIENTS_REACHED`]) and
//!   `protected-mode` ([`DENIED`]), both as Redis's `acceptCommonHandler` and
//!   `clientAcceptHandler` apply them. See [`admission`].
//! - Memory a client can pin: [`query_buffer_exceeded`] (`client-query-buffer-limit`, applied
//!   wherever a connection reads, blocked or not) and [`shrink_idle`] (Redis's `clientsCron`
//!   resizing of idle reply buffers; query buffers: `ClientInfo::cron_resize_query_buffer`).
//! - Descriptors: [`adjust_open_files_limit`] (Redis's `adjustOpenFilesLimit`: raise
//!   `RLIMIT_NOFILE`, else lower `maxclients`), [`listen`] (`tcp-backlog`) and
//!   [`AcceptBackoff`] (accept errors back off and are logged at most once a second).
//! - The idle `timeout`: [`idle_timeout`], which exempts subscribers and blocked clients.
//!
//! The output buffer limits (`client-output-buffer-limit`) stay where replies are written and
//! messages queued (`conn.rs`, `pubsub.rs`), because they act on those buffers directly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use forkless_protocol::Out;

use crate::config::Config;
use crate::server::Server;

/// Redis's reply to a client over `maxclients`.
pub(crate) const MAX_CLIENTS_REACHED: &[u8] = b"-ERR max number of clients reached\r\n";

/// Redis 7.0's reply to a non-local client while protected mode is on and the default user has
/// no password (`clientAcceptHandler`), word for word.
pub(crate) const DENIED: &[u8] = b"-DENIED Redis is running in protected mode because protected \
mode is enabled and no password is set for the default user. In this mode connections are only \
accepted from the loopback interface. If you want to connect from external computers to Redis \
you may adopt one of the following solutions: 1) Just disable protected mode sending the command \
'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same \
host the server is running, however MAKE SURE Redis is not publicly accessible from internet if \
you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just \
disable the protected mode by editing the Redis configuration file, and setting the protected \
mode option to 'no', and then restarting the server. 3) If you started the server manually just \
for testing, restart it with the '--protected-mode no' option. 4) Setup a an authentication \
password for the default user. NOTE: You only need to do one of the above things in order for \
the server to start accepting connections from the outside.\r\n";

/// Descriptors kept for the server's own use beyond one per client (listeners, log file, the
/// dump being loaded or written, io_uring, the fork child's pipe): Redis's
/// `CONFIG_MIN_RESERVED_FDS`.
pub(crate) const RESERVED_FDS: u64 = 32;

/// Returns true if and only if `ip` is local as Redis's `islocalClient` sees it: exactly
/// 127.0.0.1 or ::1 (an IPv4-mapped 127.0.0.1 counts too), not the rest of 127.0.0.0/8.
pub(crate) fn is_local(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4 == Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
    }
}

/// Decides whether a newly accepted connection from `addr` may be served. Err is the reply to
/// send it before closing; the refusal is counted in `rejected_connections`.
pub(crate) fn admission(
    server: &Server,
    addr: &crate::listen::ClientAddr,
) -> Result<(), &'static [u8]> {
    let maxclients = server.tunables.maxclients.load(Ordering::Relaxed);
    let refusal = if u64::try_from(server.clients.len()).unwrap_or(u64::MAX) >= maxclients {
        Some(MAX_CLIENTS_REACHED)
    } else if server.tunables.protected_mode.load(Ordering::Relaxed)
        && !server.tunables.requirepass_set.load(Ordering::Relaxed)
        && !addr.is_local()
    {
        Some(DENIED)
    } else {
        None
    };
    match refusal {
        Some(reply) => {
            server
                .stats
                .rejected_connections
                .fetch_add(1, Ordering::Relaxed);
            Err(reply)
        }
        None => Ok(()),
    }
}

/// Returns true if and only if a query buffer of `len` bytes is at or over
/// `client-query-buffer-limit`: the client is then closed, as Redis does.
pub(crate) fn query_buffer_exceeded(server: &Server, len: usize) -> bool {
    let limit = server
        .tunables
        .client_query_buffer_limit
        .load(Ordering::Relaxed);
    u64::try_from(len).unwrap_or(u64::MAX) >= limit
}

/// The idle `timeout` of `client`, or None when it has none: none is configured, or the client
/// is subscribed (Redis exempts pub/sub clients, which may wait for messages forever).
/// Blocked clients wait in `conn::wait_blocked`, which applies no idle timeout at all.
pub(crate) fn idle_timeout(server: &Server, subscribed: bool) -> Option<Duration> {
    let secs = server.tunables.timeout_secs.load(Ordering::Relaxed);
    (secs > 0 && !subscribed).then(|| Duration::from_secs(secs))
}

/// Buffers bigger than this are given back when their connection is idle (Redis's
/// `PROTO_RESIZE_THRESHOLD` for the query buffer).
pub(crate) const SHRINK_THRESHOLD: usize = 32 * 1024;

/// Shrinks an idle connection's reply buffer, as Redis's `clientsCronResizeOutputBuffer`
/// does: a buffer that grew for one big reply keeps none of that memory once the connection
/// waits for the next command. It keeps at least `keep` bytes of capacity. (The query buffer
/// has its own cron, `ClientInfo::cron_resize_query_buffer`, with Redis's rules.)
pub(crate) fn shrink_idle(output: &mut Out, keep: usize) {
    if oversized(output) {
        let mut smaller = BytesMut::with_capacity(output.len().max(keep));
        smaller.extend_from_slice(&output.buf);
        output.replace(smaller);
        request_memory_release();
    }
}

/// Returns true if and only if `buffer` holds more than twice what it uses, and more than
/// [`SHRINK_THRESHOLD`]: what [`shrink_idle`] would give back.
pub(crate) fn oversized(buffer: &Out) -> bool {
    let allocation = buffer.allocation();
    allocation > SHRINK_THRESHOLD && allocation > buffer.len().saturating_mul(2)
}

/// How long a connection with oversized buffers waits for its next request before they are
/// shrunk (Redis's `clientsCron` shrinks the query buffer of a client idle for 2 seconds).
pub(crate) const SHRINK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Set when memory worth giving back to the system was freed (a big buffer shrunk, or a
/// connection closed); [`release_free_memory`] acts on it at most once a second.
static RELEASE_WANTED: AtomicBool = AtomicBool::new(false);

/// Asks for freed memory to be given back to the system soon.
pub(crate) fn request_memory_release() {
    RELEASE_WANTED.store(true, Ordering::Relaxed);
}

/// Gives memory freed by connections back to the operating system. glibc's allocator keeps
/// freed memory of its thread arenas mapped until `malloc_trim` is called, so RSS after a burst
/// of big requests stays at its peak although nothing uses it; forkless calls this from the
/// server cron after connections shrank or closed. This is the one place that knows about the
/// allocator; it does nothing where the C library is not glibc.
pub(crate) fn release_free_memory() {
    static LAST: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    if !RELEASE_WANTED.load(Ordering::Relaxed) {
        return;
    }
    let mut last = crate::server::lock(&LAST);
    let now = Instant::now();
    if last.is_some_and(|last| now.duration_since(last) < Duration::from_secs(1)) {
        return;
    }
    *last = Some(now);
    RELEASE_WANTED.store(false, Ordering::Relaxed);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    trim::malloc_trim();
}

/// The bytes the kernel holds on socket `fd` that the server has not read yet (`FIONREAD`);
/// 0 when it cannot tell.
#[allow(unsafe_code)]
pub(crate) fn unread_bytes(fd: i32) -> usize {
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one `c_int` through the pointer, which points at `unread`, live
    // for the call. `fd` is a client's socket; if it was closed (and its number reused) since,
    // the call fails or counts another descriptor's bytes, which only costs the caller a
    // short wait: nothing is read or changed.
    let result = unsafe { libc::ioctl(fd, libc::FIONREAD, &raw mut unread) };
    if result == 0 {
        usize::try_from(unread).unwrap_or(0)
    } else {
        0
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod trim {
    /// Calls glibc's `malloc_trim(0)`.
    pub(super) fn malloc_trim() {
        // SAFETY: `malloc_trim` takes no pointers and only returns unused pages of the
        // allocator's own heaps to the kernel; it is safe to call from any thread at any time.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Makes sure the process may open `maxclients` descriptors plus [`RESERVED_FDS`], as Redis's
/// `adjustOpenFilesLimit` does: the soft `RLIMIT_NOFILE` is raised where the hard limit (or the
/// privilege to raise it) allows; otherwise `maxclients` is lowered to what the limit leaves, with
/// Redis's warnings. Err when the limit is too low to run at all.
pub(crate) fn adjust_open_files_limit(config: &mut Config) -> Result<(), String> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let wanted = config.maxclients.saturating_add(RESERVED_FDS);
    let current = getrlimit(Resource::Nofile);
    let Some(old_limit) = current.current else {
        return Ok(()); // Unlimited.
    };
    if old_limit >= wanted {
        return Ok(());
    }
    // The full amount first; failing that, the largest amount the kernel grants, by bisection
    // between the current limit (granted) and the amount refused, so that even an absurd
    // `maxclients` costs a few dozen calls.
    let try_limit = |soft: u64| {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(soft),
                // An unlimited hard limit (None) stays unlimited.
                maximum: current.maximum.map(|hard| hard.max(soft)),
            },
        )
    };
    let mut last_error = None;
    let mut best = old_limit;
    match try_limit(wanted) {
        Ok(()) => best = wanted,
        Err(err) => {
            last_error = Some(err);
            let mut refused = wanted;
            while refused - best > 1 {
                let middle = best + (refused - best) / 2;
                match try_limit(middle) {
                    Ok(()) => best = middle,
                    Err(_) => refused = middle,
                }
            }
        }
    }
    let best = best.max(old_limit);
    if best >= wanted {
        tracing::info!(
            "Increased maximum number of open files to {wanted} (it was originally set to \
             {old_limit})."
        );
        return Ok(());
    }
    if best <= RESERVED_FDS {
        return Err(format!(
            "Your current 'ulimit -n' of {old_limit} is not enough for the server to start. \
             Please increase your open file limit to at least {wanted}. Exiting."
        ));
    }
    let requested = config.maxclients;
    config.maxclients = best - RESERVED_FDS;
    tracing::warn!(
        "You requested maxclients of {requested} requiring at least {wanted} max file descriptors."
    );
    let reason = last_error.map_or_else(|| "limit reached".to_owned(), |err| err.to_string());
    tracing::warn!(
        "Server can't set maximum open files to {wanted} because of OS error: {reason}."
    );
    tracing::warn!(
        "Current maximum open files is {best}. maxclients has been reduced to {} to compensate \
         for low ulimit. If you need higher maxclients increase 'ulimit -n'.",
        config.maxclients
    );
    Ok(())
}

/// CONFIG SET of a `maxclients` above `old`: as Redis's `updateMaxclients`, the descriptor
/// limit is raised for it, and when that is impossible the change is refused with the most the
/// system allows. The error is the CONFIG SET reply without the leading `-`.
pub(crate) fn check_maxclients_raise(old: u64, candidate: &Config) -> Result<(), String> {
    if candidate.maxclients <= old {
        return Ok(());
    }
    let failed = |reason: &str| {
        format!("ERR CONFIG SET failed (possibly related to argument 'maxclients') - {reason}")
    };
    let mut probe = candidate.clone();
    adjust_open_files_limit(&mut probe).map_err(|reason| failed(&reason))?;
    if probe.maxclients == candidate.maxclients {
        return Ok(());
    }
    Err(failed(&format!(
        "The operating system is not able to handle the specified number of clients, try with {}",
        probe.maxclients
    )))
}

/// Binds a listener on `addr` with `tcp-backlog` as its accept queue length (tokio's
/// `TcpListener::bind` always asks for 1024), with `SO_REUSEADDR` as Redis sets it.
pub(crate) fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Accept errors (EMFILE, ENFILE, ENOBUFS...) would otherwise spin the accept loop and flood
/// the log: each one waits a little longer than the last (up to a second), and the log gets at
/// most one line a second, with the count of the errors it stands for.
#[derive(Debug)]
pub(crate) struct AcceptBackoff {
    delay: Duration,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);
    const LOG_EVERY: Duration = Duration::from_secs(1);

    pub(crate) fn new() -> AcceptBackoff {
        AcceptBackoff {
            delay: Self::FIRST,
            last_log: None,
            unlogged: 0,
        }
    }

    /// An accept succeeded: the next error starts from a short pause again.
    pub(crate) fn reset(&mut self) {
        self.delay = Self::FIRST;
    }

    /// Logs `err` (rate-limited) and returns how long to wait before accepting again.
    pub(crate) fn failed(&mut self, err: &std::io::Error) -> Duration {
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|last| now.duration_since(last) >= Self::LOG_EVERY)
        {
            tracing::warn!(
                "Accepting client connection: {err} ({} such errors since the last report)",
                self.unlogged
            );
            self.last_log = Some(now);
            self.unlogged = 0;
        }
        let delay = self.delay;
        self.delay = (self.delay * 2).min(Self::MAX);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forkless_protocol::RespVersion;

    #[test]
    fn only_exact_loopback_addresses_are_local() {
        assert!(is_local("127.0.0.1".parse().unwrap()));
        assert!(is_local("::1".parse().unwrap()));
        assert!(is_local("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_local("127.0.0.2".parse().unwrap()));
        assert!(!is_local("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn accept_errors_back_off_up_to_a_second() {
        let mut backoff = AcceptBackoff::new();
        let err = std::io::Error::from_raw_os_error(24);
        let delays: Vec<Duration> = (0..12).map(|_| backoff.failed(&err)).collect();
        assert_eq!(delays.first(), Some(&AcceptBackoff::FIRST));
        assert!(delays.windows(2).all(|pair| pair[0] <= pair[1]));
        assert_eq!(delays.last(), Some(&AcceptBackoff::MAX));
        // Only the first error was logged; the rest wait for the next report.
        assert_eq!(backoff.unlogged, 11);
        backoff.reset();
        assert_eq!(backoff.failed(&err), AcceptBackoff::FIRST);
    }

    #[test]
    fn idle_reply_buffers_shrink_but_keep_what_is_pending() {
        let mut output = Out::with_capacity(RespVersion::Resp2, 1 << 20);
        output.ok();
        shrink_idle(&mut output, 16 * 1024);
        assert_eq!(&output.buf[..], b"+OK\r\n");
        assert!(output.allocation() < 64 * 1024);
    }
}
