//! One client connection: read bytes, decode commands, run them, write the replies.
//!
//! Replies to every command found in one read are written together, so a pipelined batch
//! costs one write. The socket is written without waiting for it: what it does not take stays
//! in the client's output buffer, and the connection goes on reading and running the client's
//! commands while the rest waits for the socket to become writable, as Redis does. The output
//! buffer is held to `client-output-buffer-limit normal` as in Redis: over the hard limit the
//! client is closed at once (the reply is not sent), and over the soft limit for longer than
//! its seconds, too; it counts in the client's memory, which `maxmemory-clients` bounds by
//! evicting the client. `client-output-buffer-backpressure` (forkless's own) bounds it when
//! neither does: with that much pending, the connection stops reading the client's commands
//! and waits until the client has read its replies.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use forkless_protocol::{Limits, Out, RequestDecoder, RespVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cmd::{self, Client};
use crate::listen::{ClientAddr, Stream};
use crate::server::{ClientHandle, Server};

/// Bytes asked of the socket per read, and the output size at which a long batch is flushed
/// before the rest of it runs.
const READ_CHUNK: usize = 16 * 1024;
const FLUSH_AT: usize = 64 * 1024;

/// Why a connection over its output buffer limit ends, and what the log says (Redis's words).
const OBUF_CLOSED: &str = "output buffer limit";
const OBUF_LOG: &str = "Client scheduled to be closed ASAP for overcoming of output buffer limits.";

/// The `normal` class's limits, for a client that is not subscribed (a subscriber's messages
/// are held to the `pubsub` class where they are queued, see `pubsub.rs`).
#[derive(Clone, Copy)]
struct ObufLimits {
    hard: u64,
    soft: u64,
    soft_secs: u64,
}

impl ObufLimits {
    /// No limit.
    const NONE: ObufLimits = ObufLimits {
        hard: 0,
        soft: 0,
        soft_secs: 0,
    };

    /// The limits for `client`'s replies: none while it is subscribed.
    fn of(server: &Server, client: &Client) -> ObufLimits {
        if client.subs.active() {
            ObufLimits::NONE
        } else {
            ObufLimits::normal(server)
        }
    }

    fn normal(server: &Server) -> ObufLimits {
        let tunables = &server.tunables;
        ObufLimits {
            hard: tunables.obuf_normal_hard.load(Ordering::Relaxed),
            soft: tunables.obuf_normal_soft.load(Ordering::Relaxed),
            soft_secs: tunables.obuf_normal_soft_secs.load(Ordering::Relaxed),
        }
    }

    /// Returns true if and only if `pending` bytes of replies are over the hard limit, or over
    /// the soft limit when that may not last at all.
    fn exceeded_now(self, pending: usize) -> bool {
        let pending = u64::try_from(pending).unwrap_or(u64::MAX);
        (self.hard > 0 && pending >= self.hard)
            || (self.soft > 0 && self.soft_secs == 0 && pending >= self.soft)
    }

    /// How long writing `pending` bytes may take before the soft limit closes the client.
    fn write_deadline(self, pending: usize) -> Option<Duration> {
        let pending = u64::try_from(pending).unwrap_or(u64::MAX);
        (self.soft > 0 && pending >= self.soft).then(|| Duration::from_secs(self.soft_secs))
    }

    /// Keeps `over_since`, when the output buffer went over the soft limit (None while it is
    /// under), up to date with `pending` bytes, as Redis's `obuf_soft_limit_reached_time`.
    /// Returns when the soft limit closes the client if it stays over.
    fn soft_deadline(self, over_since: &mut Option<Instant>, pending: usize) -> Option<Instant> {
        match self.write_deadline(pending) {
            Some(after) => Some(*over_since.get_or_insert_with(Instant::now) + after),
            None => {
                *over_since = None;
                None
            }
        }
    }
}

fn limits(server: &Server, client: &Client) -> Limits {
    Limits {
        max_bulk_len: server.tunables.proto_max_bulk_len.load(Ordering::Relaxed),
        unauthenticated: !client.authenticated,
        ..Limits::default()
    }
}

/// Serves one accepted connection until it closes.
pub(crate) async fn serve<S: Stream>(
    server: Arc<Server>,
    mut socket: S,
    addr: ClientAddr,
    local_addr: ClientAddr,
) {
    let id = server.clients.next_id();
    server
        .stats
        .total_connections_received
        .fetch_add(1, Ordering::Relaxed);
    if let Err(reply) = crate::limits::admission(&server, &addr) {
        // Best effort, as Redis: the client may already be gone.
        let _ = socket.write_all(reply).await;
        return;
    }
    let (push, pushes) = tokio::sync::mpsc::unbounded_channel();
    let handle = Arc::new(ClientHandle {
        id,
        addr: addr.clone(),
        local_addr,
        created: Instant::now(),
        last_interaction_ms: Default::default(),
        name: Default::default(),
        db: Default::default(),
        resp: 2.into(),
        last_command: Default::default(),
        killed: Default::default(),
        kill: Default::default(),
        fd: std::os::fd::AsRawFd::as_raw_fd(&socket),
        info: Default::default(),
        push,
        awaiting_seq: Default::default(),
        user: std::sync::Mutex::new(bytes::Bytes::from_static(b"default")),
    });
    server.clients.insert(Arc::clone(&handle));
    server.clients.watch_hangup(&socket, id);
    let auth_required = server
        .tunables
        .default_auth_required
        .load(Ordering::Relaxed);
    let mut client = Client {
        id,
        db: 0,
        authenticated: !auth_required,
        close_after_reply: false,
        handle: Arc::clone(&handle),
        subs: crate::pubsub::ClientSubscriptions::new(),
        multi: None,
        multi_failed: false,
        watched: cmd::transaction::Watched::default(),
        in_exec: false,
        blocked: None,
        block_retry: false,
        replay: false,
        conn: cmd::client::ConnState::new(pushes),
        acl: crate::acl::ClientAcl::default_user(&server),
        acl_caller: None,
    };
    let reason = run(&server, &mut socket, &mut client).await;
    // Closing: gone for CLIENT LIST from here on (as Redis frees it at once), and a catch-up
    // waiting for this connection ends.
    handle.killed.store(true, Ordering::Release);
    tracing::debug!(client = id, %addr, "client closed: {reason}");
    server.pubsub.remove_client(&mut client.subs, id);
    cmd::transaction::unwatch_all(&server, &mut client);
    server.tracking.remove_client(id);
    // Pushes queued to the closed connection are dropped: they no longer wait to be written.
    client.conn.pushes.close();
    while let Ok(dropped) = client.conn.pushes.try_recv() {
        server.tracking.taken(dropped.len());
    }
    handle.info.pushes_queued.store(0, Ordering::Relaxed);
    let unwritten = client
        .handle
        .info
        .pushes_unwritten
        .swap(0, Ordering::Relaxed);
    server
        .tracking
        .taken(usize::try_from(unwritten).unwrap_or(usize::MAX));
    server.clients.remove(id);
    // What the connection held is free now; see `limits::release_free_memory`.
    crate::limits::request_memory_release();
}

/// The read-execute-write loop. Returns why the connection ended.
async fn run<S: Stream>(server: &Server, socket: &mut S, client: &mut Client) -> String {
    // No query buffer until the client first sends (the read allocates it), as Redis creates
    // a client's query buffer empty: a connection that never sends costs no 16 KiB.
    let mut input = BytesMut::new();
    // The query buffer's allocation, as CLIENT LIST reports it (`qbuf` + `qbuf-free`, Redis's
    // `sdsalloc`): `input.capacity()` counts only from the first unread byte.
    let mut buffer_size: usize = 0;
    let mut decoder = RequestDecoder::new(limits(server, client));
    let mut authenticated = client.authenticated;
    let mut out = Out::new(RespVersion::Resp2);
    let handle = Arc::clone(&client.handle);
    // What a batch of script commands decoded after its last command and left to this loop.
    let mut read_ahead: Option<ReadAhead> = None;
    // Set when that batch ended at its bound: the loop yields before it goes on.
    let mut yield_after = false;
    // Since when the pending replies have been over the soft output buffer limit.
    let mut soft_over_since = None;
    loop {
        // The end of the command before, while nothing has been awaited since: the next
        // command's start (`crate::server::chain_clock`).
        let mut previous_end_us = None;
        // Run every complete command already buffered.
        loop {
            if handle.killed.load(Ordering::Acquire) {
                return "killed".into();
            }
            let (qbuf, decoded) = match read_ahead.take() {
                Some(ahead) => ahead,
                None => (input.len(), decoder.decode(&mut input)),
            };
            match decoded {
                Ok(Some(argv)) => {
                    if argv.is_empty() {
                        continue;
                    }
                    client.conn.qbuf = qbuf;
                    client.conn.qbuf_free = buffer_size.saturating_sub(qbuf);
                    if server.pause.maybe_active() {
                        previous_end_us = None;
                        if let Err(reason) =
                            wait_paused(server, socket, client, &mut out, &mut input, &argv).await
                        {
                            return reason;
                        }
                    }
                    if cmd::client::wants_catch_up(client, &argv) {
                        previous_end_us = None;
                        cmd::client::catch_up(server, &handle).await;
                    }
                    let script = crate::scripting::is_script_command(&argv);
                    // Scripts running for another connection are waited for as a task, so
                    // the interpreter stays on the thread that ends them.
                    if script
                        && client.multi.is_none()
                        && !crate::scripting::batch_held()
                        && crate::scripting::wait_for_scripts(server).await
                    {
                        previous_end_us = None;
                    }
                    crate::server::chain_clock(previous_end_us);
                    let argv = if script && client.multi.is_none() {
                        let (last, ahead, cut) = run_script_batch(
                            server,
                            client,
                            &mut out,
                            &mut decoder,
                            &mut input,
                            buffer_size,
                            argv,
                        );
                        read_ahead = ahead;
                        yield_after = cut;
                        last
                    } else {
                        cmd::execute(server, client, &mut out, &argv);
                        argv
                    };
                    previous_end_us = crate::server::unchain_clock();
                    note_published(&handle);
                    // Clients this command woke run their retries before it replies, as in
                    // Redis (see `crate::blocking`).
                    if let Some(woken) = crate::blocking::take_woken() {
                        previous_end_us = None;
                        woken.settled().await;
                    }
                    if client.authenticated != authenticated {
                        // AUTH/HELLO changed it: the next command parses under the new limits.
                        authenticated = client.authenticated;
                        decoder.set_limits(limits(server, client));
                    }
                    if ObufLimits::of(server, client).exceeded_now(out.len()) {
                        tracing::info!(client = client.id, addr = %handle.addr, "{OBUF_LOG}");
                        return OBUF_CLOSED.into();
                    }
                    if client.blocked.is_some() {
                        previous_end_us = None;
                        if let Err(reason) =
                            wait_blocked(server, socket, client, &mut out, &mut input, &argv).await
                        {
                            return reason;
                        }
                    }
                    if let Some(request) = client.conn.wait_replicas.take() {
                        previous_end_us = None;
                        // WAIT: the replies before it go out, then it waits for the ACKs.
                        if let Err(err) = write_out(
                            server,
                            socket,
                            &handle,
                            &mut out,
                            ObufLimits::of(server, client),
                        )
                        .await
                        {
                            return format!("write error: {err}");
                        }
                        // Bytes the client sends meanwhile wait in its query buffer, as a
                        // blocked client's do; its going away ends the wait.
                        let parked = cmd::client::Parked::new(&handle.info);
                        let acked = tokio::select! {
                            acked = crate::replication::primary::wait(server, request) => acked,
                            () = handle.kill.notified() => return "killed".into(),
                            reason = read_while_waiting(server, socket, client.id, &mut input) => {
                                return reason;
                            }
                        };
                        drop(parked);
                        out.int(acked);
                    }
                    if let Some(request) = client.conn.migrate.take() {
                        // MIGRATE: the exchange with its target runs here, holding no gate
                        // or lock; the client's being killed ends it (its keys stay here).
                        let outcome = tokio::select! {
                            outcome = crate::cmd::migrate::exchange(server, &request) => outcome,
                            () = handle.kill.notified() => return "killed".into(),
                        };
                        // The deletions are writes: a CLIENT PAUSE begun meanwhile holds
                        // them back, as it would the command.
                        if server.pause.maybe_active() {
                            if let Err(reason) =
                                wait_paused(server, socket, client, &mut out, &mut input, &argv)
                                    .await
                            {
                                return reason;
                            }
                        }
                        crate::cmd::migrate::complete(
                            server, client, &mut out, &argv, &request, outcome,
                        );
                    }
                    if let Some(handover) = client.conn.handover.take() {
                        // Replies still pending go out before the link's first bytes.
                        if let Err(err) = write_out(
                            server,
                            socket,
                            &handle,
                            &mut out,
                            ObufLimits::of(server, client),
                        )
                        .await
                        {
                            return format!("write error: {err}");
                        }
                        // PSYNC/SYNC: from here on the connection is a replica's link, which
                        // never takes its turn again: parked for CLIENT LIST's catch-up.
                        let _parked = cmd::client::Parked::new(&handle.info);
                        return crate::replication::primary::serve(
                            server, socket, client, &mut input, handover,
                        )
                        .await;
                    }
                    if client.close_after_reply {
                        // Gone before its last reply is out, as Redis frees the client right
                        // after writing it: a client that has read QUIT's +OK no longer finds
                        // it (a tracking redirect to it is broken).
                        server.clients.remove(client.id);
                        let _ = write_out(
                            server,
                            socket,
                            &handle,
                            &mut out,
                            ObufLimits::of(server, client),
                        )
                        .await;
                        return "quit".into();
                    }
                    if out.len() >= FLUSH_AT {
                        previous_end_us = None;
                        if let Err(err) = flush(
                            server,
                            socket,
                            &handle,
                            &mut out,
                            ObufLimits::of(server, client),
                        )
                        .await
                        {
                            return format!("write error: {err}");
                        }
                    }
                    if std::mem::take(&mut yield_after) {
                        // A batch of scripts cut at its bound, with more to run: the clients
                        // on this worker get their turn too (those on other workers got
                        // theirs in `let_waiters_in`).
                        previous_end_us = None;
                        tokio::task::yield_now().await;
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    let reply_start = out.len();
                    out.error(&format!("ERR {err}"));
                    cmd::count_error_reply(server, &out, reply_start);
                    let _ = write_out(
                        server,
                        socket,
                        &handle,
                        &mut out,
                        ObufLimits::of(server, client),
                    )
                    .await;
                    tracing::info!(
                        client = client.id,
                        addr = %handle.addr,
                        "Protocol error ({err}) from client: closing"
                    );
                    return format!("protocol error: {err}");
                }
            }
        }
        let obuf_limits = ObufLimits::of(server, client);
        if let Err(err) = flush(server, socket, &handle, &mut out, obuf_limits).await {
            return format!("write error: {err}");
        }
        let soft_deadline = obuf_limits.soft_deadline(&mut soft_over_since, out.len());
        if soft_deadline.is_some_and(|at| at <= Instant::now()) {
            tracing::info!(client = client.id, addr = %handle.addr, "{OBUF_LOG}");
            return OBUF_CLOSED.into();
        }
        if out.is_empty() {
            let written = handle.info.pushes_unwritten.swap(0, Ordering::Relaxed);
            if written != 0 {
                server
                    .tracking
                    .taken(usize::try_from(written).unwrap_or(usize::MAX));
            }
        }
        if server.shutting_down.load(Ordering::Acquire) {
            return "server shutting down".into();
        }
        if crate::limits::query_buffer_exceeded(server, input.len()) {
            return query_buffer_closed(client, input.len());
        }
        decoder.set_limits(limits(server, client));
        // Everything read has run: the next read starts at the buffer's beginning again, as
        // Redis's query buffer does, without allocating (a buffer an argument still shares
        // is left, and the reserve below allocates a fresh one).
        if input.is_empty() && input.capacity() < buffer_size {
            let _ = input.try_reclaim(buffer_size);
        }
        // A query buffer the cron freed (idle) stays unallocated until the client sends
        // again, as Redis's does.
        let parked = buffer_size == 0 && input.capacity() == 0;
        let missing = decoder.bytes_wanted();
        let wanted = missing.clamp(READ_CHUNK, 1 << 20);
        let spare = input.capacity() - input.len();
        if parked || (missing > 0 && spare >= missing) {
            // Nothing to allocate yet, or room for the rest of the argument being received.
        } else if missing > READ_CHUNK || (missing > 0 && input.len() >= READ_CHUNK) {
            // A big argument: room for exactly what it still needs, as Redis's non-greedy
            // growth of the query buffer (`reserve` would double the allocation, and the
            // client's memory with it).
            let mut exact = BytesMut::with_capacity(input.len() + missing);
            exact.extend_from_slice(&input);
            input = exact;
            buffer_size = input.capacity();
        } else if spare < wanted / 2 {
            input.reserve(wanted);
            buffer_size = input.capacity();
        }
        buffer_size = buffer_size.max(input.capacity());
        let subscribed = client.subs.active();
        let idle_timeout = crate::limits::idle_timeout(server, subscribed);
        // Replies the socket did not take: the connection waits for it to take more, reading
        // and running the client's next commands meanwhile.
        let pending = !out.is_empty();
        let oversized = !pending && crate::limits::oversized(&out);
        cmd::client::publish(
            client,
            false,
            input.len(),
            buffer_size.saturating_sub(input.len()),
        );
        let partial = decoder.pending_argv_bytes();
        client.handle.info.argv_mem.store(
            u64::try_from(partial).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        cmd::client::account_memory(server, &client.handle);
        cmd::client::turn_waiting(&handle.info);
        let resize = &client.handle.info.resize;
        let rx = &mut client.subs.rx;
        let pushes = &mut client.conn.pushes;
        let socket_ref = &*socket;
        let read = async {
            tokio::select! {
                read = async {
                    loop {
                        socket_ref.readable().await?;
                        if parked {
                            input.reserve(READ_CHUNK);
                        }
                        cmd::client::turn_reading(&handle.info);
                        match socket_ref.try_read_buf(&mut input) {
                            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                                cmd::client::turn_waiting(&handle.info);
                            }
                            read => break read,
                        }
                    }
                } => Some(Event::Read(read)),
                written = socket_ref.writable(), if pending => Some(Event::Writable(written)),
                () = async {
                    if let Some(at) = soft_deadline {
                        tokio::time::sleep_until(at.into()).await;
                    }
                }, if soft_deadline.is_some() => Some(Event::SoftLimit),
                () = handle.kill.notified() => None,
                () = resize.notified() => Some(Event::Resize),
                // Messages wait in the channel while replies are pending: there one copy is
                // shared by every subscriber (counted in each one's memory, bounded by the
                // pubsub class's limits), where the output buffer would hold a copy each.
                Some(message) = rx.recv(), if subscribed && !pending => {
                    Some(Event::Message(message))
                }
                Some(bytes) = pushes.recv() => Some(Event::Push(bytes)),
                // Reading is cancel-safe: nothing is lost when the idle shrink wins the race.
                () = tokio::time::sleep(crate::limits::SHRINK_IDLE_AFTER), if oversized => {
                    Some(Event::Idle)
                }
            }
        };
        let read = match idle_timeout {
            Some(after) => match tokio::time::timeout(after, read).await {
                Ok(read) => read,
                Err(_) => return "idle timeout".into(),
            },
            None => read.await,
        };
        match read {
            None => return "killed".into(),
            Some(Event::Writable(Ok(()))) => {}
            Some(Event::Writable(Err(err))) => return format!("write error: {err}"),
            Some(Event::SoftLimit) => {
                tracing::info!(client = client.id, addr = %handle.addr, "{OBUF_LOG}");
                return OBUF_CLOSED.into();
            }
            Some(Event::Idle) => crate::limits::shrink_idle(&mut out, READ_CHUNK),
            Some(Event::Resize) => {
                if let Some(target) = handle.info.take_resize() {
                    // Never below what is buffered, nor below the rest of an argument being
                    // read (Redis keeps the bulk's length).
                    let partial = if input.is_empty() {
                        0
                    } else {
                        decoder.bytes_wanted()
                    };
                    let new_size = target.max(input.len()).max(partial.min(1 << 20));
                    if new_size < buffer_size {
                        let mut smaller = BytesMut::with_capacity(new_size);
                        smaller.extend_from_slice(&input);
                        input = smaller;
                        buffer_size = new_size;
                        crate::limits::request_memory_release();
                    }
                }
            }
            Some(Event::Read(Ok(0))) => return "closed by peer".into(),
            Some(Event::Read(Ok(n))) => {
                buffer_size = buffer_size.max(input.capacity());
                handle.info.note_query_len(input.len());
                // Once per read, as Redis updates `lastinteraction` when it reads a query.
                handle.last_interaction_ms.store(
                    u64::try_from(handle.created.elapsed().as_millis()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                server
                    .stats
                    .net_input_bytes
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Some(Event::Read(Err(err))) => return format!("read error: {err}"),
            Some(Event::Push(bytes)) => {
                // Under `maxmemory`, with no replies pending, pushes go straight to the socket
                // while it takes them whole: copied into the output buffer, a burst (the
                // invalidations of evicted keys) would grow it, the grown buffer would count
                // in `used_memory` and feed more eviction (Redis's "client tracking don't
                // cause eviction feedback loop"). Otherwise a burst costs one write.
                let mut direct = server.tunables.maxmemory.load(Ordering::Relaxed) != 0;
                let mut written = 0;
                let mut taken = 0;
                let mut next = Some(bytes);
                while let Some(bytes) = next.take() {
                    client.handle.info.pushes_taken(bytes.len());
                    let mut sent = 0;
                    if direct && out.is_empty() {
                        sent = match socket.try_write(&bytes) {
                            Ok(n) => n,
                            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => 0,
                            Err(err) => return format!("write error: {err}"),
                        };
                        direct = sent == bytes.len();
                    }
                    written += sent;
                    out.buf
                        .extend_from_slice(bytes.get(sent..).unwrap_or_default());
                    taken += bytes.len() - sent;
                    if out.len() < FLUSH_AT {
                        // Drain what else is queued.
                        next = client.conn.pushes.try_recv().ok();
                    }
                }
                if written != 0 {
                    server.tracking.taken(written);
                    server
                        .stats
                        .net_output_bytes
                        .fetch_add(written as u64, Ordering::Relaxed);
                }
                // Counted as queued until written (below, after the write).
                client
                    .handle
                    .info
                    .pushes_unwritten
                    .fetch_add(u64::try_from(taken).unwrap_or(u64::MAX), Ordering::Relaxed);
                // Pushes grow the output buffer as replies do: the same hard limit applies.
                if ObufLimits::of(server, client).exceeded_now(out.len()) {
                    tracing::info!(client = client.id, addr = %handle.addr, "{OBUF_LOG}");
                    return OBUF_CLOSED.into();
                }
            }
            Some(Event::Message(message)) => {
                write_message(&mut out, &message);
                // Drain what else is queued, so a burst costs one write.
                let mut sizes = message.size();
                while let Ok(next) = client.subs.rx.try_recv() {
                    write_message(&mut out, &next);
                    sizes += next.size();
                    if out.len() >= FLUSH_AT {
                        break;
                    }
                }
                client.subs.queued.bytes.fetch_sub(sizes, Ordering::Relaxed);
                let counted = &client.handle.info.pubsub_queued;
                let _ = counted.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bytes| {
                    Some(bytes.saturating_sub(sizes))
                });
            }
        }
    }
}

/// The most script commands [`run_script_batch`] runs under one hold of the gate: past it
/// the waiting commands of other clients go first (Redis itself runs a client's whole read,
/// up to 16 KiB of commands, at once).
const SCRIPT_BATCH_MAX: usize = 64;

/// How long after its first command ended [`run_script_batch`] goes on holding the gate
/// before it lets the others in; a single script may run longer (until it is busy), but no
/// further one joins the batch.
const SCRIPT_BATCH_TIME_US: u64 = 1000;

/// A decoder result read ahead by [`run_script_batch`], with the query buffer's length before it.
type ReadAhead = (
    usize,
    Result<Option<Vec<bytes::Bytes>>, forkless_protocol::ProtocolError>,
);

/// Runs `argv`, a script command, and the script commands right behind it in the input
/// buffer, under one hold of the command gate (`crate::scripting::ScriptBatch`). Returns the
/// last command it ran, for the caller's bookkeeping after a command, what it decoded after
/// that command when that is not for the batch, and whether the batch ended at its bound with
/// more input to run (the caller then yields to the other tasks of its worker). The batch
/// ends before anything the caller must await for (a reply to write, woken clients, CLIENT
/// PAUSE), at the end of the buffer, or once it has run [`SCRIPT_BATCH_MAX`] commands or
/// [`SCRIPT_BATCH_TIME_US`] have passed since its first command ended, so one client's long
/// pipeline never keeps the others out for long: the gate is never held across an await.
fn run_script_batch(
    server: &Server,
    client: &mut Client,
    out: &mut Out,
    decoder: &mut RequestDecoder,
    input: &mut BytesMut,
    buffer_size: usize,
    argv: Vec<bytes::Bytes>,
) -> (Vec<bytes::Bytes>, Option<ReadAhead>, bool) {
    let Some(batch) = crate::scripting::ScriptBatch::begin(server, &argv) else {
        cmd::execute(server, client, out, &argv);
        return (argv, None, false);
    };
    let mut argv = argv;
    let mut n_run = 0usize;
    // Timed by its commands' own end times (each command reads the clock once already), from
    // the first one's: no clock reading of its own per command. A wall clock stepping back
    // reads as no time passed; SCRIPT_BATCH_MAX still bounds the batch.
    let mut first_end_us = None;
    loop {
        cmd::execute(server, client, out, &argv);
        n_run += 1;
        let end_us = crate::server::last_end_us().unwrap_or_else(crate::server::unix_us);
        let first_end_us = *first_end_us.get_or_insert(end_us);
        let within_bound =
            n_run < SCRIPT_BATCH_MAX && end_us.saturating_sub(first_end_us) < SCRIPT_BATCH_TIME_US;
        let free_to_go_on = !client.handle.killed.load(Ordering::Acquire)
            && !crate::blocking::has_woken()
            && client.blocked.is_none()
            && client.multi.is_none()
            && client.conn.wait_replicas.is_none()
            && client.conn.migrate.is_none()
            && client.conn.handover.is_none()
            && !client.close_after_reply
            && out.len() < FLUSH_AT
            && !ObufLimits::of(server, client).exceeded_now(out.len())
            && !server.pause.maybe_active();
        if !free_to_go_on {
            return (argv, None, false);
        }
        if !within_bound {
            drop(batch);
            if input.is_empty() {
                return (argv, None, false);
            }
            crate::scripting::let_waiters_in(server);
            return (argv, None, true);
        }
        let qbuf = input.len();
        match decoder.decode(input) {
            Ok(Some(next)) if crate::scripting::is_script_command(&next) => {
                batch.going_on();
                note_published(&client.handle);
                client.conn.qbuf = qbuf;
                client.conn.qbuf_free = buffer_size.saturating_sub(qbuf);
                // The next command starts when this one ended, as in the caller's loop.
                crate::server::chain_clock(crate::server::unchain_clock());
                argv = next;
            }
            other => return (argv, Some((qbuf, other)), false),
        }
    }
}

/// Keeps a blocked command (BLPOP...) waiting: registers for its keys, retries it whenever one
/// of them is written, and replies the timeout null when its deadline passes. Bytes the client
/// sends meanwhile are buffered, not run, as in Redis. Err is why the connection must end.
async fn wait_blocked<S: Stream>(
    server: &Server,
    socket: &mut S,
    client: &mut Client,
    out: &mut Out,
    input: &mut BytesMut,
    argv: &[bytes::Bytes],
) -> Result<(), String> {
    let Some(request) = client.blocked.take() else {
        return Ok(());
    };
    let handle = Arc::clone(&client.handle);
    write_out(server, socket, &handle, out, ObufLimits::of(server, client))
        .await
        .map_err(|err| format!("write error: {err}"))?;
    let waiter = Arc::new(crate::blocking::Waiter::default());
    // Registered before the retry below, so a write landing between the handler's look at
    // the keys and this registration is not missed.
    server.blocking.register(&request, &waiter);
    // From now on the client is blocked: a key that turns into another type does not end it.
    client.block_retry = true;
    let argv = request.retry_argv.as_deref().unwrap_or(argv);
    cmd::client::publish(client, true, input.len(), input.capacity() - input.len());
    let result = loop {
        // A retry woken by a command joins that command's group: whom it wakes in turn, the
        // command waits for too.
        let woken_by = waiter.take_group();
        if let Some(group) = &woken_by {
            crate::blocking::join_group(Arc::clone(group));
        }
        cmd::execute(server, client, out, argv);
        note_published(&client.handle);
        let served = client.blocked.take().is_none();
        if served {
            // What is left may be for the next client in line (now first in the queue).
            server.blocking.unregister(&request, &waiter);
            for key in &request.keys {
                server.blocking.signal(request.db, key);
            }
        } else if woken_by.is_some() {
            // Woken for a write this client cannot use (an XREAD after a later id, a key of
            // another type): it may be for the next in line, as Redis tries each waiter.
            for key in &request.keys {
                server.blocking.signal_next(request.db, key, &waiter);
            }
        }
        drop(crate::blocking::take_woken());
        if let Some(group) = woken_by {
            group.complete();
        }
        if served {
            break Ok(true);
        }
        let deadline = request.deadline;
        let timeout = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = waiter.notify.notified() => {
                // Commands that arrived before the write that woke this client and are ready
                // to run go first: they must not see its retry's change (Redis ran them
                // before that write).
                tokio::task::yield_now().await;
            }
            () = timeout => {
                match request.on_timeout {
                    crate::blocking::TimeoutReply::NullArray => out.null_array(),
                    crate::blocking::TimeoutReply::Null => out.null(),
                }
                break Ok(false);
            }
            () = handle.kill.notified() => break Err("killed".to_string()),
            () = handle.info.unblocked.notified() => match handle.info.take_unblock() {
                Some(cmd::client::Unblock::Error) => {
                    let reply_start = out.len();
                    out.error(cmd::client::UNBLOCKED_ERROR);
                    cmd::count_unblocked_error(server, out, reply_start, argv);
                    break Ok(false);
                }
                Some(cmd::client::Unblock::RoleChange) => {
                    let reply_start = out.len();
                    out.error(cmd::client::ROLE_CHANGE_ERROR);
                    cmd::count_unblocked_error(server, out, reply_start, argv);
                    client.close_after_reply = true;
                    break Ok(false);
                }
                Some(cmd::client::Unblock::Timeout) => {
                    match request.on_timeout {
                        crate::blocking::TimeoutReply::NullArray => out.null_array(),
                        crate::blocking::TimeoutReply::Null => out.null(),
                    }
                    break Ok(false);
                }
                // A request left over from an earlier block: keep waiting.
                None => {}
            },
            read = socket.read_buf(input) => match read {
                Ok(0) => break Err("closed by peer while blocked".to_string()),
                // What a blocked client sends waits in its query buffer, under the same limit.
                Ok(_) if crate::limits::query_buffer_exceeded(server, input.len()) => {
                    break Err(query_buffer_closed(client, input.len()));
                }
                Ok(_) => {}
                Err(err) => break Err(format!("read error: {err}")),
            },
        }
    };
    client.block_retry = false;
    cmd::client::publish(client, false, input.len(), input.capacity() - input.len());
    if result != Ok(true) {
        server.blocking.unregister(&request, &waiter);
    }
    // A wake-up that came after the last retry (or instead of it: a timeout, a kill) will not
    // be served here: its command must not wait for it.
    if let Some(group) = waiter.take_group() {
        group.complete();
    }
    result.map(drop)
}

/// Holds a command back while CLIENT PAUSE says so (Redis postpones the client; its command
/// waits, it does not fail): writes what is pending, then waits for the pause's end, an
/// UNPAUSE, or the client's end, buffering what it sends meanwhile. Err is why the connection
/// must end.
async fn wait_paused<S: Stream>(
    server: &Server,
    socket: &mut S,
    client: &mut Client,
    out: &mut Out,
    input: &mut BytesMut,
    argv: &[bytes::Bytes],
) -> Result<(), String> {
    let handle = Arc::clone(&client.handle);
    let mut counted = None;
    loop {
        // Registered before the check, so an UNPAUSE between the two is not missed.
        let changed = server.pause.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let Some(until) = cmd::client::pause_deadline(server, client, argv) else {
            return Ok(());
        };
        write_out(server, socket, &handle, out, ObufLimits::of(server, client))
            .await
            .map_err(|err| format!("write error: {err}"))?;
        cmd::client::publish(client, false, input.len(), input.capacity() - input.len());
        counted.get_or_insert_with(|| server.pause.wait());
        let _parked = cmd::client::Parked::new(&handle.info);
        tokio::select! {
            () = tokio::time::sleep_until(until.into()) => {}
            () = changed => {}
            () = handle.kill.notified() => return Err("killed".to_string()),
            read = socket.read_buf(input) => match read {
                Ok(0) => return Err("closed by peer while paused".to_string()),
                Ok(_) if crate::limits::query_buffer_exceeded(server, input.len()) => {
                    return Err(query_buffer_closed(client, input.len()));
                }
                Ok(_) => {}
                Err(err) => return Err(format!("read error: {err}")),
            },
        }
    }
}

/// Reads what a waiting client (WAIT) sends, keeping it for later, until the connection ends
/// or the query buffer limit is passed. Returns why the connection must end.
async fn read_while_waiting<S: Stream>(
    server: &Server,
    socket: &mut S,
    client_id: u64,
    input: &mut BytesMut,
) -> String {
    loop {
        match socket.read_buf(input).await {
            Ok(0) => return "closed by peer while waiting".into(),
            Ok(_) if crate::limits::query_buffer_exceeded(server, input.len()) => {
                tracing::warn!(
                    client = client_id,
                    qbuf = input.len(),
                    "Closing client that reached max query buffer length"
                );
                return "query buffer limit".into();
            }
            Ok(_) => {}
            Err(err) => return format!("read error: {err}"),
        }
    }
}

/// What woke the connection up.
enum Event {
    Read(std::io::Result<usize>),
    Message(crate::pubsub::Message),
    /// Bytes from the push channel: a MONITOR line, a tracking invalidation.
    Push(bytes::Bytes),
    /// The connection has been idle with an oversized reply buffer: time to shrink it.
    Idle,
    /// The query buffer cron asks for the query buffer to shrink (`ClientInfo::take_resize`).
    Resize,
    /// The socket may take more of the pending replies.
    Writable(std::io::Result<()>),
    /// The pending replies have been over the soft output buffer limit for its seconds.
    SoftLimit,
}

/// Logs and names the end of a client over `client-query-buffer-limit`.
fn query_buffer_closed(client: &Client, qbuf: usize) -> String {
    tracing::warn!(
        client = client.id,
        addr = %client.handle.addr,
        qbuf,
        "Closing client that reached max query buffer length"
    );
    "query buffer limit".into()
}

/// A published message as Redis sends it: `message`, `pmessage` or `smessage`, a push in RESP3.
fn write_message(out: &mut Out, message: &crate::pubsub::Message) {
    match &message.pattern {
        Some(pattern) => {
            out.push_len(4);
            out.bulk(b"pmessage");
            out.bulk(pattern);
        }
        None => {
            out.push_len(3);
            out.bulk(if message.shard {
                &b"smessage"[..]
            } else {
                b"message"
            });
        }
    }
    out.bulk(&message.channel);
    out.bulk(&message.payload);
}

/// Notes the effect the command just run published, if any, for [`write_out`] to wait on.
fn note_published(handle: &ClientHandle) {
    if let Some(seq) = crate::effects::take_last_published() {
        handle.awaiting_seq.store(seq, Ordering::Relaxed);
    }
}

/// Writes what the socket takes now of the pending replies, and waits for the client to read
/// them only when `client-output-buffer-backpressure` says so: then until all are written.
async fn flush<S: Stream>(
    server: &Server,
    socket: &mut S,
    handle: &ClientHandle,
    out: &mut Out,
    limits: ObufLimits,
) -> std::io::Result<()> {
    flush_now(server, socket, handle, out).await?;
    let backpressure = server.tunables.obuf_backpressure.load(Ordering::Relaxed);
    if backpressure != 0 && u64::try_from(out.len()).unwrap_or(u64::MAX) >= backpressure {
        write_out(server, socket, handle, out, limits).await?;
    }
    Ok(())
}

/// Writes what the socket takes now of the pending replies, without waiting for the client to
/// read; the rest stays in `out`, counted in the client's memory (which may evict it, see
/// `maxmemory-clients`).
async fn flush_now<S: Stream>(
    server: &Server,
    socket: &S,
    handle: &ClientHandle,
    out: &mut Out,
) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    // With `appendfsync always`, no reply leaves before the writes it acknowledges are on disk
    // (a wait on the server's disk, not on the client).
    let seq = handle.awaiting_seq.swap(0, Ordering::Relaxed);
    if seq != 0 {
        server.aof.wait_durable(seq).await;
    }
    let mut written = 0;
    while written < out.len() {
        match socket.try_write(&out.buf[written..]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    server
        .stats
        .net_output_bytes
        .fetch_add(written as u64, Ordering::Relaxed);
    let all = written == out.len();
    out.written(written);
    if all {
        release_written(server, out);
    }
    cmd::client::publish_pending_out(handle, pending_allocation(out));
    cmd::client::account_memory(server, handle);
    Ok(())
}

/// What the pending replies hold of memory, for the client's `omem` / `tot-mem` and so for
/// `maxmemory-clients`: the buffer's whole allocation, not only the bytes in it (as Redis
/// counts its reply list's blocks whole), written bytes it has not taken back included.
/// Counting the bytes alone, twenty clients that did not read held up to twice what client
/// eviction saw, and keys were evicted for it (Redis's "eviction due to output buffers of many
/// MGET clients, client eviction: true"); leaving out the written front, the same test still
/// saw keys evicted now and then (docs/compatibility.md, unit/maxmemory).
fn pending_allocation(out: &Out) -> usize {
    if out.is_empty() { 0 } else { out.allocation() }
}

/// A reply buffer that grew is given back once written, as Redis frees its reply list as it
/// writes it: past [`RELEASE_ALWAYS`] always (a pipeline of a million replies left 8 MB
/// allocated to an idle client until the idle shrink: Redis's "slave buffer are counted
/// correctly" measures it), and under `maxmemory` past the idle shrink's threshold: kept, it
/// would count in `used_memory` and make eviction pay for it (the invalidations of evicted
/// keys, written to many tracking clients, would drain the database). Below those, the
/// buffer is kept for the next batch (no allocation per batch).
fn release_written(server: &Server, out: &mut Out) {
    let capacity = out.allocation();
    if capacity > RELEASE_ALWAYS
        || (capacity > crate::limits::SHRINK_THRESHOLD
            && server.tunables.maxmemory.load(Ordering::Relaxed) != 0)
    {
        out.replace(BytesMut::with_capacity(READ_CHUNK));
    }
}

/// See [`release_written`]: an allocation this large is given back once written (its cost is
/// small beside writing that many bytes).
const RELEASE_ALWAYS: usize = 1 << 20;

/// Writes the pending replies. A client killed meanwhile (CLIENT KILL, or a subscriber over its
/// output buffer limit that has stopped reading) stops the write instead of blocking it forever.
async fn write_out<S: Stream>(
    server: &Server,
    socket: &mut S,
    handle: &ClientHandle,
    out: &mut Out,
    limits: ObufLimits,
) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    // With `appendfsync always`, no reply leaves before the writes it acknowledges are on disk.
    let seq = handle.awaiting_seq.swap(0, Ordering::Relaxed);
    if seq != 0 {
        server.aof.wait_durable(seq).await;
    }
    let soft_deadline = async {
        match limits.write_deadline(out.len()) {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    cmd::client::publish_pending_out(handle, pending_allocation(out));
    cmd::client::account_memory(server, handle);
    let parked = cmd::client::Parked::new(&handle.info);
    tokio::select! {
        written = socket.write_all(&out.buf) => written?,
        () = handle.kill.notified() => {
            return Err(std::io::Error::other("client killed"));
        }
        () = soft_deadline => {
            tracing::info!(client = handle.id, addr = %handle.addr, "{OBUF_LOG}");
            return Err(std::io::Error::other(OBUF_CLOSED));
        }
    }
    drop(parked);
    server
        .stats
        .net_output_bytes
        .fetch_add(out.len() as u64, Ordering::Relaxed);
    out.written(out.len());
    release_written(server, out);
    cmd::client::publish_pending_out(handle, 0);
    Ok(())
}
