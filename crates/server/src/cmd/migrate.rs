//! MIGRATE host port key|"" destination-db timeout [COPY] [REPLACE] [AUTH password]
//! [AUTH2 username password] [KEYS key ...], as Redis 7.0's `migrateCommand`: each key goes to
//! the target as `RESTORE key ttl payload [REPLACE]` with DUMP's payload (`cmd::dump`'s format),
//! after AUTH and a SELECT when the cached connection is not on that database yet; the keys the
//! target acknowledged are then deleted here (unless COPY), and reach the AOF and replicas as
//! one `DEL`.
//!
//! # Three phases, no lock across the network
//!
//! Redis blocks its only thread for the whole exchange. Here a command never waits on the
//! network while it holds the command gate or a shard lock, so MIGRATE runs in three phases:
//!
//! 1. `migrate` (the handler, under the gate like any command): parses the arguments, clones
//!    each key's value and TTL out under its shard's read lock, and serializes the payloads
//!    after the lock is released. Missing keys are skipped (`+NOKEY` when none is left).
//! 2. [`transfer`] (async, on the connection's task, holding nothing): the exchange with the
//!    target, each write and each reply under the command's timeout, on a connection from the
//!    [`SocketCache`].
//! 3. [`finish`] (under the gate again, as a command of its own: `cmd::resume`): deletes each
//!    acknowledged key, but only if it still holds the very value phase 1 cloned
//!    ([`forkless_storage::Value::is_same_as`]: the same allocation, which the clone keeps
//!    alive, or the same inline bytes). A key another client wrote in between keeps its new
//!    value: that write is not lost, and the target holds the older one, as if MIGRATE had run
//!    with COPY for that key. A TTL changed in between counts as a write too.
//!
//! Inside MULTI/EXEC or a script the command cannot hand the I/O to its connection: there the
//! exchange runs on the spot (`block_in_place`), holding the gate as Redis holds its server.
//!
//! # Connection cache
//!
//! As Redis's `migrateGetSocket`: one connection per `host:port` string, at most 64 (a random
//! one is closed to make room), closed after 10 s unused (a task sweeps every second while any
//! is cached) and on any socket error; it remembers the database it last SELECTed. A connection
//! in use by one MIGRATE is out of the cache, so a concurrent MIGRATE to the same target opens
//! its own; the one returned last stays.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use forkless_protocol::Out;
use forkless_snapshot::format::{EncodeOptions, dump_payload};
use forkless_storage::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::meta::{Gate, KeySpec, flags};
use super::{Client, Command, Ctx, eq_ignore_case, parse_i64, reply};
use crate::notify::{GENERIC, notify};
use crate::server::Server;

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "migrate", arity: -6, flags: flags!(WRITE, MOVABLEKEYS), keys: KeySpec::new(3, 3, 1), gate: Gate::Shared, categories: &["keyspace", "write", "slow", "dangerous"], summary: "Atomically transfer a key from a Redis instance to another one.", since: "2.6.0", group: "generic", handler: migrate },
];

/// Redis's cap on cached connections (`MIGRATE_SOCKET_CACHE_ITEMS`).
const CACHE_ITEMS: usize = 64;
/// Redis closes a cached connection unused for more than this (`MIGRATE_SOCKET_CACHE_TTL`).
const CACHE_TTL: Duration = Duration::from_secs(10);
/// Redis writes the command buffer in chunks of this size, each under the timeout.
const WRITE_CHUNK: usize = 64 * 1024;
/// Payloads from this size on are written from where they are rather than copied into the
/// command buffer.
const BORROW_PAYLOAD_FROM: usize = 16 * 1024;
/// The longest reply line read from the target; a longer one is a socket error (Redis reads
/// its replies into 1 KiB buffers).
const MAX_REPLY_LINE: usize = 64 * 1024;

const KEYS_NOT_EMPTY: &str =
    "ERR When using MIGRATE KEYS option, the key argument must be set to the empty string";
const CONNECT_ERROR: &str = "IOERR error or timeout connecting to the client";
const WRITE_ERROR: &str = "IOERR error or timeout writing to target instance";
const READ_ERROR: &str = "IOERR error or timeout reading to target instance";
const NOT_HERE: &str = "ERR MIGRATE cannot run in this context";

/// One key on its way: its name, the value cloned in phase 1 (held so that phase 3 can tell
/// whether the key still holds it), the TTL sent and the payload.
struct Moving {
    key: Bytes,
    value: Value,
    expire_at_ms: Option<u64>,
    ttl_ms: i64,
    payload: Vec<u8>,
}

/// What phase 1 hands to the connection: everything the exchange and the deletions need.
pub(crate) struct MigrateRequest {
    /// `host:port` as given, the cache's key.
    target: String,
    host: String,
    port: u16,
    db_index: i64,
    timeout: Duration,
    copy: bool,
    replace: bool,
    /// AUTH's (None, password) or AUTH2's (Some(username), password).
    auth: Option<(Option<Bytes>, Bytes)>,
    /// The database the keys came from.
    source_db: usize,
    /// True if and only if CLIENT REPLY OFF or SKIP dropped the command's reply when it ran.
    reply_dropped: bool,
    keys: Vec<Moving>,
}

impl std::fmt::Debug for MigrateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No credentials, no payloads.
        f.debug_struct("MigrateRequest")
            .field("target", &self.target)
            .field("db_index", &self.db_index)
            .field("n_keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// The exchange's result: which keys the target acknowledged (by index in the request) and the
/// reply.
#[derive(Debug)]
pub(crate) struct Outcome {
    acked: Vec<bool>,
    reply: Result<(), String>,
}

/// Why a step of the exchange failed; a timeout is never retried (Redis's `ETIMEDOUT` test).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IoFail {
    Timeout,
    Broken,
}

/// MIGRATE's options, parsed as `migrateCommand` does.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    copy: bool,
    replace: bool,
    auth: Option<(Option<Bytes>, Bytes)>,
    /// Where the keys start in argv, and how many (3 and 1 without KEYS).
    first_key: usize,
    n_keys: usize,
}

fn parse_options(argv: &[Bytes]) -> Result<Options, &'static str> {
    let mut opts = Options {
        first_key: 3,
        n_keys: 1,
        ..Options::default()
    };
    let mut idx = 6;
    while let Some(word) = argv.get(idx) {
        let more = argv.len() - 1 - idx;
        if eq_ignore_case(word, "copy") {
            opts.copy = true;
        } else if eq_ignore_case(word, "replace") {
            opts.replace = true;
        } else if eq_ignore_case(word, "auth") {
            let password = argv.get(idx + 1).ok_or(reply::SYNTAX)?;
            opts.auth = Some((None, password.clone()));
            idx += 1;
        } else if eq_ignore_case(word, "auth2") {
            if more < 2 {
                return Err(reply::SYNTAX);
            }
            let (Some(user), Some(password)) = (argv.get(idx + 1), argv.get(idx + 2)) else {
                return Err(reply::SYNTAX);
            };
            opts.auth = Some((Some(user.clone()), password.clone()));
            idx += 2;
        } else if eq_ignore_case(word, "keys") {
            if argv.get(3).is_some_and(|key| !key.is_empty()) {
                return Err(KEYS_NOT_EMPTY);
            }
            opts.first_key = idx + 1;
            opts.n_keys = argv.len() - idx - 1;
            break;
        } else {
            return Err(reply::SYNTAX);
        }
        idx += 1;
    }
    Ok(opts)
}

/// Phase 1: the arguments, the values and their payloads.
fn migrate(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let opts = match parse_options(argv) {
        Ok(opts) => opts,
        Err(msg) => return ctx.out.error(msg),
    };
    // Redis parses the timeout, then the database, each with the integer error.
    let (Some(timeout_ms), Some(db_index)) = (
        argv.get(5).and_then(|arg| parse_i64(arg)),
        argv.get(4).and_then(|arg| parse_i64(arg)),
    ) else {
        return ctx.out.error(reply::NOT_INTEGER);
    };
    let timeout_ms = if timeout_ms <= 0 { 1000 } else { timeout_ms };
    let keys = argv
        .get(opts.first_key..opts.first_key + opts.n_keys)
        .unwrap_or_default();
    let mut moving = Vec::with_capacity(keys.len());
    for key in keys {
        let found = {
            let guard = ctx.db().read(&[key], ctx.now_ms);
            guard
                .get(key)
                .map(|entry| (entry.value().clone(), entry.expire_at_ms()))
        };
        ctx.hit_or_miss(found.is_some(), key);
        if let Some((value, expire_at_ms)) = found {
            // A key that expires in under a millisecond still goes, with 1 ms to live.
            let ttl_ms = expire_at_ms.map_or(0, |at| {
                i64::try_from(at.saturating_sub(ctx.now_ms))
                    .unwrap_or(i64::MAX)
                    .max(1)
            });
            moving.push(Moving {
                key: key.clone(),
                value,
                expire_at_ms,
                ttl_ms,
                payload: Vec::new(),
            });
        }
    }
    if moving.is_empty() {
        return ctx.out.simple(b"NOKEY");
    }
    let encode = EncodeOptions {
        compress_strings: ctx.server.config().rdbcompression,
    };
    for key in &mut moving {
        key.payload = dump_payload(&key.value, &encode);
    }
    let host = argv.get(1).map_or(&b""[..], |arg| arg);
    let port = argv.get(2).map_or(&b""[..], |arg| arg);
    let request = MigrateRequest {
        target: format!(
            "{}:{}",
            String::from_utf8_lossy(host),
            String::from_utf8_lossy(port)
        ),
        host: String::from_utf8_lossy(host).into_owned(),
        // Redis's atoi: a port that is not a number connects to port 0 and fails.
        port: std::str::from_utf8(port)
            .ok()
            .and_then(|port| port.parse().ok())
            .unwrap_or(0),
        db_index,
        timeout: Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(1000)),
        copy: opts.copy,
        replace: opts.replace,
        auth: opts.auth,
        source_db: ctx.client.db,
        reply_dropped: super::client::reply_dropped(ctx.client),
        keys: moving,
    };
    if ctx.client.in_exec || ctx.client.is_script() {
        return migrate_here(ctx, &request);
    }
    ctx.client.conn.migrate = Some(Box::new(request));
}

/// MIGRATE inside MULTI/EXEC or a script: the exchange runs on the spot, holding the gate (as
/// Redis blocks its server for it), on a thread the runtime lets block.
fn migrate_here(ctx: &mut Ctx<'_>, request: &MigrateRequest) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return ctx.out.error(NOT_HERE);
    };
    if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return ctx.out.error(NOT_HERE);
    }
    let cache = Arc::clone(&ctx.server.migrate_sockets);
    let outcome = tokio::task::block_in_place(|| runtime.block_on(transfer(&cache, request)));
    finish(ctx, request, outcome);
}

/// Phase 2 as the connection runs it, with nothing held while it waits.
pub(crate) async fn exchange(server: &Server, request: &MigrateRequest) -> Outcome {
    transfer(&server.migrate_sockets, request).await
}

/// Phase 3 as the connection runs it, once the exchange is over (and a CLIENT PAUSE that
/// holds writes back has ended): the deletions and the reply, which CLIENT REPLY OFF or SKIP,
/// as they stood when the command ran, drop.
pub(crate) fn complete(
    server: &Server,
    client: &mut Client,
    out: &mut Out,
    argv: &[Bytes],
    request: &MigrateRequest,
    outcome: Outcome,
) {
    let reply_start = out.len();
    super::resume(server, client, out, argv, |ctx| {
        finish(ctx, request, outcome);
    });
    if request.reply_dropped {
        super::client::drop_reply(out, reply_start);
    }
}

/// Phase 3: deletes the acknowledged keys that still hold what was sent (unless COPY), states
/// their DEL as the command's effect, and replies.
fn finish(ctx: &mut Ctx<'_>, request: &MigrateRequest, outcome: Outcome) {
    if !request.copy {
        let db = ctx.server.db(request.source_db);
        let mut deleted: Vec<Bytes> = Vec::new();
        for (moving, _) in request
            .keys
            .iter()
            .zip(&outcome.acked)
            .filter(|(_, acked)| **acked)
        {
            let key = &moving.key[..];
            let mut guard = db.write(&[key], ctx.now_ms);
            let unchanged = guard.get(key).is_some_and(|entry| {
                entry.value().is_same_as(&moving.value)
                    && entry.expire_at_ms() == moving.expire_at_ms
            });
            if unchanged && guard.remove(key) {
                drop(guard);
                notify(ctx, GENERIC, "del", key);
                deleted.push(moving.key.clone());
            }
        }
        if !deleted.is_empty() {
            if ctx.server.tracking.active() {
                let keys: Vec<&[u8]> = deleted.iter().map(|key| &key[..]).collect();
                super::tracking::invalidate(ctx.server, ctx.client.id, &keys);
            }
            ctx.rewrite_effect(|| {
                let mut del = Vec::with_capacity(deleted.len() + 1);
                del.push(Bytes::from_static(b"DEL"));
                del.extend(deleted);
                del
            });
        }
    }
    match outcome.reply {
        Ok(()) => ctx.out.ok(),
        Err(msg) => ctx.out.error(&msg),
    }
}

/// The request as the target reads it: AUTH, SELECT when `select`, one RESTORE per key, as a
/// list of pieces that borrows the big payloads, so that a big value is not copied once more
/// (small ones are copied with their commands, so that many small keys make few writes).
fn build_commands(request: &MigrateRequest, select: bool) -> Vec<Cow<'_, [u8]>> {
    let mut pieces = Vec::new();
    let mut head = Vec::new();
    match &request.auth {
        Some((Some(user), password)) => {
            push_command(&mut pieces, &mut head, &[b"AUTH", user, password], None);
        }
        Some((None, password)) => push_command(&mut pieces, &mut head, &[b"AUTH", password], None),
        None => {}
    }
    if select {
        let db_index = request.db_index.to_string();
        push_command(
            &mut pieces,
            &mut head,
            &[b"SELECT", db_index.as_bytes()],
            None,
        );
    }
    for key in &request.keys {
        let ttl = key.ttl_ms.to_string();
        let payload: &[u8] = &key.payload;
        let borrowed = (payload.len() >= BORROW_PAYLOAD_FROM).then_some(payload);
        let mut args: Vec<&[u8]> = vec![b"RESTORE", &key.key, ttl.as_bytes(), payload];
        if request.replace {
            args.push(b"REPLACE");
        }
        push_command(
            &mut pieces,
            &mut head,
            &args,
            borrowed.map(|payload| (3, payload)),
        );
    }
    pieces.push(Cow::Owned(head));
    pieces
}

/// Appends one command to `head`; the argument `borrowed` names (by index) becomes a piece of
/// its own, borrowed, after `head` so far.
fn push_command<'a>(
    pieces: &mut Vec<Cow<'a, [u8]>>,
    head: &mut Vec<u8>,
    args: &[&[u8]],
    borrowed: Option<(usize, &'a [u8])>,
) {
    head.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for (idx, arg) in args.iter().enumerate() {
        head.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        match borrowed {
            Some((at, bytes)) if at == idx => {
                pieces.push(Cow::Owned(std::mem::take(head)));
                pieces.push(Cow::Borrowed(bytes));
            }
            _ => head.extend_from_slice(arg),
        }
        head.extend_from_slice(b"\r\n");
    }
}

/// Phase 2: the exchange with the target, as `migrateCommand` runs it. On a socket error
/// before any RESTORE reply arrived (not a timeout) it reconnects and tries once more, since a
/// cached connection the target closed meanwhile is the common case.
pub(crate) async fn transfer(cache: &Arc<SocketCache>, request: &MigrateRequest) -> Outcome {
    let n_keys = request.keys.len();
    let mut acked = vec![false; n_keys];
    let mut may_retry = true;
    loop {
        let Some(mut conn) = cache.checkout(request).await else {
            return Outcome {
                acked,
                reply: Err(CONNECT_ERROR.to_string()),
            };
        };
        let select = conn.last_db != Some(request.db_index);
        let commands = build_commands(request, select);
        if let Err(fail) = write_pieces(&mut conn.stream, &commands, request.timeout).await {
            drop(conn);
            if fail != IoFail::Timeout && may_retry {
                may_retry = false;
                continue;
            }
            return Outcome {
                acked,
                reply: Err(WRITE_ERROR.to_string()),
            };
        }
        let mut preamble = Ok((None, None));
        if request.auth.is_some() || select {
            preamble = read_preamble(&mut conn, request, select).await;
        }
        let (auth_reply, select_reply) = match preamble {
            Ok(replies) => replies,
            Err(fail) => {
                drop(conn);
                if fail != IoFail::Timeout && may_retry {
                    may_retry = false;
                    continue;
                }
                return Outcome {
                    acked,
                    reply: Err(READ_ERROR.to_string()),
                };
            }
        };
        let preamble_error = [&auth_reply, &select_reply]
            .into_iter()
            .flatten()
            .find(|line: &&Vec<u8>| line.first() == Some(&b'-'))
            .cloned();
        let mut target_error: Option<String> = None;
        let mut socket_error = None;
        let mut n_read = 0;
        for slot in &mut acked {
            let line = match read_line(&mut conn, request.timeout).await {
                Ok(line) => line,
                Err(fail) => {
                    socket_error = Some(fail);
                    break;
                }
            };
            n_read += 1;
            let error = preamble_error
                .as_ref()
                .or((line.first() == Some(&b'-')).then_some(&line));
            match error {
                Some(error) => {
                    if target_error.is_none() {
                        conn.last_db = None;
                        target_error = Some(format!(
                            "ERR Target instance replied with error: {}",
                            String::from_utf8_lossy(error.get(1..).unwrap_or_default())
                        ));
                    }
                }
                None => *slot = true,
            }
        }
        if let Some(fail) = socket_error {
            drop(conn);
            if target_error.is_none() && n_read == 0 && may_retry && fail != IoFail::Timeout {
                may_retry = false;
                continue;
            }
            let reply = match target_error {
                Some(error) => Err(error),
                None => Err(READ_ERROR.to_string()),
            };
            return Outcome { acked, reply };
        }
        let reply = match target_error {
            Some(error) => Err(error),
            None => {
                conn.last_db = Some(request.db_index);
                Ok(())
            }
        };
        cache.checkin(conn);
        return Outcome { acked, reply };
    }
}

/// Reads the replies to AUTH and SELECT, those that were sent.
async fn read_preamble(
    conn: &mut Lease,
    request: &MigrateRequest,
    select: bool,
) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>), IoFail> {
    let auth = match request.auth {
        Some(_) => Some(read_line(conn, request.timeout).await?),
        None => None,
    };
    let select = match select {
        true => Some(read_line(conn, request.timeout).await?),
        false => None,
    };
    Ok((auth, select))
}

/// Writes `pieces` in chunks of at most [`WRITE_CHUNK`], each within `timeout`.
async fn write_pieces(
    stream: &mut TcpStream,
    pieces: &[Cow<'_, [u8]>],
    timeout: Duration,
) -> Result<(), IoFail> {
    for chunk in pieces.iter().flat_map(|piece| piece.chunks(WRITE_CHUNK)) {
        match tokio::time::timeout(timeout, stream.write_all(chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(IoFail::Broken),
            Err(_) => return Err(IoFail::Timeout),
        }
    }
    Ok(())
}

/// One reply line, without its CR LF, within `timeout`.
async fn read_line(conn: &mut Lease, timeout: Duration) -> Result<Vec<u8>, IoFail> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(end) = conn.input.iter().position(|&byte| byte == b'\n') {
            let line = conn.input.split_to(end + 1);
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            return Ok(line.to_vec());
        }
        if conn.input.len() > MAX_REPLY_LINE {
            return Err(IoFail::Broken);
        }
        conn.input.reserve(1024);
        let cached = &mut conn.cached;
        let read =
            tokio::time::timeout_at(deadline, cached.stream.read_buf(&mut cached.input)).await;
        match read {
            Ok(Ok(0) | Err(_)) => return Err(IoFail::Broken),
            Ok(Ok(_)) => {}
            Err(_) => return Err(IoFail::Timeout),
        }
    }
}

/// One connection to a target, and what Redis remembers with it.
#[derive(Debug)]
struct Cached {
    stream: TcpStream,
    /// Bytes read past the last reply line.
    input: BytesMut,
    /// The database last SELECTed on it, None when unknown (after an error).
    last_db: Option<i64>,
    last_use: Instant,
}

/// MIGRATE's connections to its targets. A std mutex, held only to take a connection out or
/// put it back, never across an await.
#[derive(Debug, Default)]
pub(crate) struct SocketCache {
    idle: Mutex<HashMap<String, Cached>>,
    /// Connections taken out by a running MIGRATE: counted in `migrate_cached_sockets` too.
    in_use: AtomicUsize,
    /// True while the task that closes idle connections runs.
    sweeping: AtomicBool,
}

/// A connection taken out of the cache (or just opened) by one MIGRATE.
struct Lease {
    target: String,
    cached: Cached,
    _in_use: InUse,
}

/// Counts a leased connection in `migrate_cached_sockets` while it lives.
struct InUse(Arc<SocketCache>);

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::ops::Deref for Lease {
    type Target = Cached;
    fn deref(&self) -> &Cached {
        &self.cached
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Cached {
        &mut self.cached
    }
}

impl SocketCache {
    fn idle(&self) -> MutexGuard<'_, HashMap<String, Cached>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `migrate_cached_sockets`: connections cached or in use, idle ones past their time closed
    /// first.
    pub(crate) fn count(&self) -> usize {
        let mut idle = self.idle();
        sweep(&mut idle, Instant::now());
        idle.len() + self.in_use.load(Ordering::Relaxed)
    }

    /// The cached connection to the request's target, or a new one (None when it cannot be
    /// opened within the timeout).
    async fn checkout(self: &Arc<Self>, request: &MigrateRequest) -> Option<Lease> {
        let cached = self.idle().remove(&request.target);
        let cached = match cached {
            Some(cached) => cached,
            None => {
                let connect = TcpStream::connect((request.host.as_str(), request.port));
                let stream = tokio::time::timeout(request.timeout, connect)
                    .await
                    .ok()?
                    .ok()?;
                let _ = stream.set_nodelay(true);
                Cached {
                    stream,
                    input: BytesMut::new(),
                    last_db: None,
                    last_use: Instant::now(),
                }
            }
        };
        self.in_use.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            target: request.target.clone(),
            cached,
            _in_use: InUse(Arc::clone(self)),
        })
    }

    /// Puts a healthy connection back, making room as Redis does, and starts the sweeper.
    fn checkin(self: &Arc<Self>, lease: Lease) {
        let Lease {
            target, mut cached, ..
        } = lease;
        cached.last_use = Instant::now();
        {
            let mut idle = self.idle();
            if !idle.contains_key(&target)
                && idle.len() >= CACHE_ITEMS
                && let Some(victim) = idle.keys().next().cloned()
            {
                // A HashMap's order is arbitrary: Redis drops a random entry.
                idle.remove(&victim);
            }
            idle.insert(target, cached);
        }
        if !self.sweeping.swap(true, Ordering::AcqRel) {
            let cache = Arc::clone(self);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let mut idle = cache.idle();
                    sweep(&mut idle, Instant::now());
                    if idle.is_empty() {
                        cache.sweeping.store(false, Ordering::Release);
                        break;
                    }
                }
            });
        }
    }
}

/// Closes the connections unused for longer than Redis keeps them.
fn sweep(idle: &mut HashMap<String, Cached>, now: Instant) {
    idle.retain(|_, cached| now.duration_since(cached.last_use) <= CACHE_TTL);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|word| Bytes::copy_from_slice(word.as_bytes()))
            .collect()
    }

    fn resp(commands: &[&[&[u8]]]) -> Vec<u8> {
        let mut out = Vec::new();
        for args in commands {
            out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for arg in *args {
                out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
                out.extend_from_slice(arg);
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }

    #[test]
    fn commands_borrow_big_payloads_and_spell_resp() {
        let moving = |key: &'static [u8], payload: Vec<u8>| Moving {
            key: Bytes::from_static(key),
            value: Value::string(b""),
            expire_at_ms: None,
            ttl_ms: 0,
            payload,
        };
        let big = vec![7u8; BORROW_PAYLOAD_FROM];
        let request = MigrateRequest {
            target: String::new(),
            host: String::new(),
            port: 0,
            db_index: 5,
            timeout: Duration::from_secs(1),
            copy: false,
            replace: true,
            auth: Some((Some(Bytes::from_static(b"u")), Bytes::from_static(b"p"))),
            source_db: 0,
            reply_dropped: false,
            keys: vec![moving(b"a", b"small".to_vec()), moving(b"b", big.clone())],
        };
        let pieces = build_commands(&request, true);
        let borrowed = pieces
            .iter()
            .filter(|piece| matches!(piece, Cow::Borrowed(_)))
            .count();
        assert_eq!(borrowed, 1);
        let joined: Vec<u8> = pieces.concat();
        let expected = resp(&[
            &[b"AUTH", b"u", b"p"],
            &[b"SELECT", b"5"],
            &[b"RESTORE", b"a", b"0", b"small", b"REPLACE"],
            &[b"RESTORE", b"b", b"0", &big, b"REPLACE"],
        ]);
        assert!(joined == expected);
        let without_select: Vec<u8> = build_commands(&request, false).concat();
        assert!(without_select.starts_with(b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$1\r\np\r\n*5\r\n"));
    }

    #[test]
    fn options_follow_migrate_command() {
        let opts = parse_options(&args(&["migrate", "h", "1", "k", "0", "10"])).unwrap();
        assert_eq!((opts.first_key, opts.n_keys, opts.copy), (3, 1, false));
        let opts = parse_options(&args(&[
            "migrate", "h", "1", "", "0", "10", "COPY", "replace", "AUTH2", "u", "p", "KEYS", "a",
            "b",
        ]))
        .unwrap();
        assert_eq!((opts.first_key, opts.n_keys), (12, 2));
        assert!(opts.copy && opts.replace);
        assert_eq!(
            opts.auth,
            Some((Some(Bytes::from_static(b"u")), Bytes::from_static(b"p")))
        );
        let keys_empty = parse_options(&args(&["migrate", "h", "1", "", "0", "10", "KEYS"]));
        assert_eq!(keys_empty.map(|opts| opts.n_keys), Ok(0));
        assert_eq!(
            parse_options(&args(&["migrate", "h", "1", "k", "0", "10", "KEYS", "a"])),
            Err(KEYS_NOT_EMPTY)
        );
        assert_eq!(
            parse_options(&args(&["migrate", "h", "1", "k", "0", "10", "AUTH"])),
            Err(reply::SYNTAX)
        );
        assert_eq!(
            parse_options(&args(&["migrate", "h", "1", "k", "0", "10", "AUTH2", "u"])),
            Err(reply::SYNTAX)
        );
        assert_eq!(
            parse_options(&args(&["migrate", "h", "1", "k", "0", "10", "bogus"])),
            Err(reply::SYNTAX)
        );
    }
}
