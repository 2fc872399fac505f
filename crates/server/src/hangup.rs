//! Clients whose peer has closed the connection, seen from the kernel before their connections
//! have taken their turn to read the close.
//!
//! Redis reads every readable socket in one pass of its event loop before it runs the next
//! command, so the buffers of a client that has just closed its connection are freed before a
//! write decides whether the server is over `maxmemory`. Here each connection is a task that
//! reads the close in its own turn, later on a busy server, and until then its query buffer
//! and pending replies still count: a write right after clients holding megabytes went away
//! was refused (`-OOM`) or evicted keys to pay for them.
//!
//! So each accepted socket is also registered with one epoll instance ([`Hangups`]) that asks
//! only for the peer's hang-up: `EPOLLRDHUP` (the peer shut down its sending side) and the
//! `EPOLLHUP`/`EPOLLERR` that epoll always reports (a reset: the peer closed without reading
//! what it was sent), edge-triggered, so a live connection never shows up in it. The checks
//! that find the server over a memory limit (`evict.rs`: key eviction and `maxmemory-clients`)
//! read it without waiting ([`Hangups::take`]) and close the clients it names
//! (`Clients::close_hung_up`), whose memory then no longer counts, as that of a client
//! `maxmemory-clients` evicted (`Clients::note_dying`), until their connections are gone.
//!
//! # When a client that hung up is closed
//! Once its connection has run every command the client sent: it waits in its loop, with
//! nothing unread on the socket. Redis runs the commands it read before it reads the close
//! (0, or a reset) and frees the client. Until then the client is a suspect, looked at again
//! at each later check: a short list, of clients that are closing anyway.
//!
//! # Cost
//! One `epoll_ctl` per accepted connection, nothing per command, and one `epoll_wait` that does
//! not wait per check that finds the server over a limit. The kernel removes a socket from the
//! set when its last descriptor closes. An id the set names whose client is gone (its
//! descriptor was shared with a fork child that kept the socket open) is skipped.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::event::epoll;

/// Events read from the kernel per `epoll_wait`.
const BATCH: usize = 64;

/// The most `epoll_wait` calls one [`Hangups::take`] makes: the rest waits in the kernel's
/// ready list for the next check, so one command never pays for more than this many.
const MAX_BATCHES: usize = 16;

/// The epoll set of every connection's hang-up, and the clients that hung up while their
/// connections still had work of theirs to finish.
#[derive(Debug)]
pub(crate) struct Hangups {
    /// None when the kernel refused an epoll instance: clients are then only ever closed by
    /// their own connections, as before.
    epoll: Option<OwnedFd>,
    /// Clients that hung up while their connections still had commands of theirs to run, to
    /// look at again. A std mutex, a leaf (the clients are looked at after it is released): taken
    /// only by a check over a limit that finds `has_suspects` set or adds one, never across
    /// an await.
    suspects: Mutex<Vec<u64>>,
    has_suspects: AtomicBool,
}

impl Default for Hangups {
    fn default() -> Hangups {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)
            .inspect_err(|err| {
                tracing::warn!(
                    "epoll_create1 failed ({err}): the memory checks will not see clients that \
                     closed their connections before their connections do"
                );
            })
            .ok();
        Hangups {
            epoll,
            suspects: Mutex::new(Vec::new()),
            has_suspects: AtomicBool::new(false),
        }
    }
}

impl Hangups {
    /// Registers the socket of client `id`. Best effort: a socket the kernel does not take is
    /// only seen closed by its own connection.
    pub(crate) fn watch(&self, socket: impl AsFd, id: u64) {
        let Some(epoll) = &self.epoll else {
            return;
        };
        let flags = epoll::EventFlags::RDHUP | epoll::EventFlags::ET;
        if let Err(err) = epoll::add(epoll, socket, epoll::EventData::new_u64(id), flags) {
            tracing::debug!(client = id, "epoll_ctl(ADD) failed: {err}");
        }
    }

    /// Calls `found` with each client that hung up since the last call, without waiting, and
    /// with each suspect left from before. `found` returns true if and only if it is done with
    /// the client; one it is not done with stays a suspect.
    pub(crate) fn take(&self, mut found: impl FnMut(u64) -> bool) {
        let mut pending = Vec::new();
        if self.has_suspects.swap(false, Ordering::Relaxed) {
            let earlier = std::mem::take(&mut *crate::server::lock(&self.suspects));
            pending.extend(earlier.into_iter().filter(|&id| !found(id)));
        }
        if let Some(epoll) = &self.epoll {
            take_events(epoll, |id| {
                if !found(id) {
                    pending.push(id);
                }
            });
        }
        if !pending.is_empty() {
            let mut suspects = crate::server::lock(&self.suspects);
            for id in pending {
                // A socket reports a shutdown, then a reset, as two edges.
                if !suspects.contains(&id) {
                    suspects.push(id);
                }
            }
            self.has_suspects.store(true, Ordering::Relaxed);
        }
    }
}

/// Reads the hang-ups the kernel has for `epoll` without waiting, at most [`MAX_BATCHES`]
/// batches of them, and calls `found` with each.
fn take_events(epoll: &OwnedFd, mut found: impl FnMut(u64)) {
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    for _ in 0..MAX_BATCHES {
        let mut buffer = [MaybeUninit::<epoll::Event>::uninit(); BATCH];
        let Ok((events, _)) = epoll::wait(epoll, &mut buffer[..], Some(&zero)) else {
            return;
        };
        for event in events.iter() {
            let data = event.data;
            found(data.u64());
        }
        if events.len() < BATCH {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use super::Hangups;

    /// A loopback connection: the client's end and the server's.
    fn connection() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    /// The ids `take` names in one call; `done` is what the callback answers.
    fn take(hangups: &Hangups, done: bool) -> Vec<u64> {
        let mut ids = Vec::new();
        hangups.take(|id| {
            ids.push(id);
            done
        });
        ids.sort_unstable();
        ids
    }

    /// Takes until something is named (the peer's close travels through the loopback).
    fn take_soon(hangups: &Hangups, done: bool) -> Vec<u64> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ids = take(hangups, done);
            if !ids.is_empty() || Instant::now() > deadline {
                return ids;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn live_connections_are_never_named_and_a_closed_one_once() {
        let hangups = Hangups::default();
        let (client, server) = connection();
        let (mut talking, talking_server) = connection();
        hangups.watch(&server, 7);
        hangups.watch(&talking_server, 8);
        talking.write_all(b"PING\r\n").unwrap();
        assert!(take(&hangups, true).is_empty());
        drop(client);
        assert_eq!(take_soon(&hangups, true), [7]);
        assert!(take(&hangups, true).is_empty());
        // A reset (closed with unread bytes) is a hang-up too.
        let mut reply = talking_server.try_clone().unwrap();
        reply.write_all(b"+PONG\r\n").unwrap();
        drop(talking);
        assert_eq!(take_soon(&hangups, true), [8]);
    }

    #[test]
    fn a_client_not_done_with_is_named_again_until_it_is() {
        let hangups = Hangups::default();
        let (client, server) = connection();
        hangups.watch(&server, 3);
        drop(client);
        assert_eq!(take_soon(&hangups, false), [3]);
        assert_eq!(take(&hangups, false), [3]);
        assert_eq!(take(&hangups, true), [3]);
        assert!(take(&hangups, true).is_empty());
    }
}
