//! CLIENT TRACKING: server-assisted client-side caching, as Redis 7.0's tracking.c.
//!
//! In the default mode the keys a tracking client reads are remembered (the tracking table:
//! key → client ids, across databases as in Redis); the first write to such a key sends each of
//! those clients an `invalidate` message and forgets them. In BCAST mode a client names key
//! prefixes instead and is told about every write to a key under one of them. The message is a
//! RESP3 push, or, for a REDIRECT target on RESP2 that is subscribed, a message on the
//! `__redis__:invalidate` channel; it travels on the target's push channel
//! (`ClientHandle::push`), so it reaches the socket after the reply of the command running
//! there. Without a tracking client, the command path pays one relaxed load.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use forkless_protocol::{Out, RespVersion};

use super::meta::Flags;
use super::{Client, Command, Ctx, eq_ignore_case, parse_i64, reply};
use crate::server::{ClientHandle, Server, lock};

/// The channel RESP2 redirect targets receive invalidations on.
const CHANNEL: &[u8] = b"__redis__:invalidate";

/// A client's tracking options, as CLIENT TRACKING ON set them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Mode {
    /// The client receiving the invalidations, or 0 for the tracking client itself.
    redirect: u64,
    bcast: bool,
    optin: bool,
    optout: bool,
    noloop: bool,
    prefixes: Vec<Bytes>,
}

/// The connection's own tracking state.
#[derive(Debug, Default)]
pub(crate) struct ConnTracking {
    mode: Option<Mode>,
    /// CLIENT CACHING YES/NO was given for the next command.
    caching: bool,
    /// CLIENT CACHING ran in this very command: the flag is for the next one.
    caching_fresh: bool,
    /// On the client a script's commands run as: the id of the client running the script,
    /// the writer NOLOOP compares with (Redis's `server.current_client`).
    script_caller: u64,
    /// On the client a script's commands run as: a read-only command ran since the script
    /// started, so the script's caller tracks the keys the script declared.
    script_read: bool,
}

impl ConnTracking {
    /// Prepares the client a script's commands run as for a script run by client `caller`.
    pub(crate) fn start_script(&mut self, caller: u64) {
        self.script_caller = caller;
        self.script_read = false;
    }

    /// Returns true if and only if the script that just ran called a read-only command.
    pub(crate) fn script_read(&self) -> bool {
        self.script_read
    }
}

#[derive(Debug)]
struct Tracker {
    handle: Arc<ClientHandle>,
    redirect: u64,
    noloop: bool,
    bcast: bool,
}

#[derive(Debug, Default)]
struct Table {
    /// Default mode: key → ids of clients that read it since its last invalidation.
    keys: HashMap<Bytes, HashSet<u64>>,
    /// BCAST mode: prefix → ids of clients registered for it.
    prefixes: HashMap<Bytes, HashSet<u64>>,
    /// BCAST mode: prefix → the keys written under it since the last broadcast, each with its
    /// writer (for NOLOOP), sent as one message per prefix once the command is done.
    pending: HashMap<Bytes, Vec<(Bytes, u64)>>,
    clients: HashMap<u64, Tracker>,
}

/// The tracking table. A std mutex, taken only while some client tracks, never across an
/// await.
#[derive(Debug, Default)]
pub(crate) struct Tracking {
    active: AtomicBool,
    table: Mutex<Table>,
    /// Invalidation bytes sent to connections and not yet taken by them: not counted for
    /// eviction (`evict::not_counted`), or the invalidations of evicted keys, queued to many
    /// tracking clients, would evict more keys before the connections write them (Redis
    /// writes them in `beforeSleep`, before its next command).
    queued: AtomicU64,
}

impl Tracking {
    /// Returns true if and only if some client may have tracking on.
    pub(crate) fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// INFO's figures: (tracking clients, keys in the table, (key, client) items, prefixes).
    pub(crate) fn counts(&self) -> (usize, usize, usize, usize) {
        let table = lock(&self.table);
        let items = table.keys.values().map(HashSet::len).sum();
        (
            table.clients.len(),
            table.keys.len(),
            items,
            table.prefixes.len(),
        )
    }

    /// Invalidation bytes queued to connections, not yet taken by them.
    pub(crate) fn queued_bytes(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// A connection took `bytes` of pushes (invalidations or MONITOR lines) from its queue.
    pub(crate) fn taken(&self, bytes: usize) {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |queued| {
                Some(queued.saturating_sub(bytes))
            });
    }

    /// Queues `message` to `target`'s connection, counting it in [`Tracking::queued_bytes`].
    /// A target over its limit for queued pushes is closed instead
    /// ([`ClientHandle::send_push`]).
    fn push(&self, target: &ClientHandle, message: Bytes, limit: u64) {
        let len = u64::try_from(message.len()).unwrap_or(u64::MAX);
        self.queued.fetch_add(len, Ordering::Relaxed);
        if !target.send_push(message, limit) {
            self.taken(usize::try_from(len).unwrap_or(usize::MAX));
        }
    }

    /// Forgets client `id` (tracking off, RESET, disconnect).
    pub(crate) fn remove_client(&self, id: u64) {
        if !self.active() {
            return;
        }
        let mut table = lock(&self.table);
        table.clients.remove(&id);
        table.prefixes.retain(|_, ids| {
            ids.remove(&id);
            !ids.is_empty()
        });
        self.active
            .store(!table.clients.is_empty(), Ordering::Relaxed);
    }
}

/// One message for `target`: `keys`, or None for "everything" (a flush).
fn encode(target: &ClientHandle, keys: Option<&[&[u8]]>) -> Option<Bytes> {
    let resp3 = target.resp.load(Ordering::Relaxed) == 3;
    let mut out = Out::new(if resp3 {
        RespVersion::Resp3
    } else {
        RespVersion::Resp2
    });
    if resp3 {
        out.push_len(2);
        out.bulk(b"invalidate");
    } else if super::client::is_subscribed(target) {
        out.array_len(3);
        out.bulk(b"message");
        out.bulk(CHANNEL);
    } else {
        // RESP2 has no push: a client that is not subscribed cannot receive it (as Redis).
        return None;
    }
    match keys {
        Some(keys) => {
            out.array_len(keys.len());
            for key in keys {
                out.bulk(key);
            }
        }
        None => out.null(),
    }
    Some(out.buf.freeze())
}

/// Sends an invalidation for `keys` (None: all) to tracking client `tracker`, or to its
/// redirect target; a target that is gone gets the client a `tracking-redir-broken` push.
fn send(server: &Server, tracker: &Tracker, keys: Option<&[&[u8]]>) {
    let target = if tracker.redirect == 0 {
        Some(Arc::clone(&tracker.handle))
    } else {
        server.clients.get(tracker.redirect)
    };
    let Some(target) = target else {
        if tracker.handle.resp.load(Ordering::Relaxed) == 3 {
            let mut out = Out::new(RespVersion::Resp3);
            out.push_len(2);
            out.bulk(b"tracking-redir-broken");
            out.int(i64::try_from(tracker.redirect).unwrap_or(i64::MAX));
            server.tracking.push(
                &tracker.handle,
                out.buf.freeze(),
                server.tunables.push_limit(),
            );
        }
        return;
    };
    if let Some(message) = encode(&target, keys) {
        // A closed connection drops the message, as Redis drops a freed client's.
        server
            .tracking
            .push(&target, message, server.tunables.push_limit());
    }
}

/// Invalidates `keys`, written by client `writer`: for `cmd::dispatch` after a write command.
/// Default-mode readers are told at once; BCAST prefixes collect the keys until
/// [`broadcast`].
pub(crate) fn invalidate(server: &Server, writer: u64, keys: &[&[u8]]) {
    let mut table = lock(&server.tracking.table);
    let table = &mut *table;
    for key in keys {
        for (prefix, ids) in &table.prefixes {
            if key.starts_with(prefix) && !ids.is_empty() {
                table
                    .pending
                    .entry(prefix.clone())
                    .or_default()
                    .push((Bytes::copy_from_slice(key), writer));
            }
        }
        let Some(readers) = table.keys.remove(*key) else {
            continue;
        };
        for id in readers {
            // Keys read before a switch to BCAST mode are not reported (as Redis).
            let Some(tracker) = table.clients.get(&id).filter(|tracker| !tracker.bcast) else {
                continue;
            };
            if tracker.noloop && id == writer {
                continue;
            }
            send(server, tracker, Some(&[key]));
        }
    }
}

/// Sends the keys BCAST prefixes collected during the command that just ended: one message
/// per prefix and client, without a NOLOOP client's own keys (Redis's
/// `trackingBroadcastInvalidationMessages`, run before the event loop sleeps).
pub(crate) fn broadcast(server: &Server) {
    let mut table = lock(&server.tracking.table);
    limit_keys(server, &mut table);
    if table.pending.is_empty() {
        return;
    }
    let pending = std::mem::take(&mut table.pending);
    for (prefix, written) in &pending {
        let Some(ids) = table.prefixes.get(prefix) else {
            continue;
        };
        for id in ids {
            let Some(tracker) = table.clients.get(id) else {
                continue;
            };
            let keys: Vec<&[u8]> = written
                .iter()
                .filter(|(_, writer)| !(tracker.noloop && writer == id))
                .map(|(key, _)| &key[..])
                .collect();
            if !keys.is_empty() {
                send(server, tracker, Some(&keys));
            }
        }
    }
}

/// Holds the table to `tracking-table-max-keys` (0: no limit): keys beyond it are dropped
/// with an invalidation to their readers, as Redis's `trackingLimitUsedSlots` evicts them.
fn limit_keys(server: &Server, table: &mut Table) {
    let max = usize::try_from(
        server
            .tunables
            .tracking_table_max_keys
            .load(Ordering::Relaxed),
    )
    .unwrap_or(usize::MAX);
    if max == 0 {
        return;
    }
    while table.keys.len() > max {
        let Some(key) = table.keys.keys().next().cloned() else {
            break;
        };
        let readers = table.keys.remove(&key).unwrap_or_default();
        for id in readers {
            if let Some(tracker) = table.clients.get(&id).filter(|tracker| !tracker.bcast) {
                send(server, tracker, Some(&[&key[..]]));
            }
        }
    }
}

/// Keys the active expiry cycle removed: their trackers are told, as after a write by no
/// client (so NOLOOP hides none of them).
pub(crate) fn expired(server: &Server, keys: &[(usize, forkless_storage::CompactBytes)]) {
    let keys: Vec<&[u8]> = keys.iter().map(|(_, key)| &key[..]).collect();
    invalidate(server, 0, &keys);
    broadcast(server);
}

/// FLUSHDB / FLUSHALL: every tracking client is told that everything is invalid, and the
/// table of keys is emptied (Redis's `trackingInvalidateKeysOnFlush`).
pub(crate) fn flushed(server: &Server) {
    // The table is emptied even when no client tracks any more: keys a client read before it
    // turned tracking off stay in it until then (as in Redis), and a client that turns it on
    // again must not be told about them.
    let mut table = lock(&server.tracking.table);
    for tracker in table.clients.values() {
        send(server, tracker, None);
    }
    table.keys.clear();
}

/// After every command: remembers the keys a tracking client read (default mode, unless
/// OPTIN without CACHING YES or OPTOUT with CACHING NO), invalidates the keys a write touched,
/// and ages the CACHING flag.
pub(crate) fn after_command(
    server: &Server,
    client: &mut Client,
    command: &Command,
    argv: &[Bytes],
) {
    let script = client.is_script();
    if command.has_flag(Flags::WRITE) {
        let keys: Vec<&[u8]> = command.keys.keys(argv).collect();
        if !keys.is_empty() {
            let writer = if script {
                client.conn.tracking.script_caller
            } else {
                client.id
            };
            invalidate(server, writer, &keys);
        }
    }
    let state = &mut client.conn.tracking;
    if script {
        // The script's caller tracks the script's declared keys once it has read anything
        // (see `remember_script_keys`).
        state.script_read |= command.has_flag(Flags::READONLY);
        return;
    }
    if let Some(mode) = &state.mode {
        let wanted = !((mode.optin && !state.caching) || (mode.optout && state.caching));
        if command.has_flag(Flags::READONLY) && !mode.bcast && wanted {
            let mut table = lock(&server.tracking.table);
            for key in command.keys.keys(argv) {
                table
                    .keys
                    .entry(Bytes::copy_from_slice(key))
                    .or_default()
                    .insert(client.id);
            }
        }
    }
    // The flag holds for the one command after CLIENT CACHING (the whole of a transaction).
    if state.caching_fresh {
        state.caching_fresh = false;
    } else if client.multi.is_none() {
        state.caching = false;
    }
}

/// After a script that called a read-only command: its caller, if it tracks (default mode,
/// and OPTIN/OPTOUT allowing it), remembers the keys the script declared, as Redis 7.0 does
/// for scripts. A read-only script command (EVAL_RO, FCALL_RO) tracks nothing by itself.
pub(crate) fn remember_script_keys(server: &Server, client: &Client, keys: &[Bytes]) {
    let state = &client.conn.tracking;
    let Some(mode) = &state.mode else {
        return;
    };
    let wanted = !((mode.optin && !state.caching) || (mode.optout && state.caching));
    if mode.bcast || !wanted || keys.is_empty() {
        return;
    }
    let mut table = lock(&server.tracking.table);
    for key in keys {
        table.keys.entry(key.clone()).or_default().insert(client.id);
    }
}

/// CLIENT LIST's tracking figures: (on, bcast, redirect or -1).
pub(crate) fn list_figures(client: &Client) -> (bool, bool, i64) {
    client
        .conn
        .tracking
        .mode
        .as_ref()
        .map_or((false, false, -1), |mode| {
            (true, mode.bcast, i64::try_from(mode.redirect).unwrap_or(-1))
        })
}

/// What the client's BCAST prefixes cost it, for client eviction: each prefix's bytes and a
/// node (Redis counts the prefix tree's nodes, `numnodes * sizeof(raxNode) * sizeof(void *)`).
pub(crate) fn prefix_bytes(client: &Client) -> u64 {
    const PER_PREFIX: usize = 32;
    client.conn.tracking.mode.as_ref().map_or(0, |mode| {
        let bytes: usize = mode
            .prefixes
            .iter()
            .map(|prefix| prefix.len() + PER_PREFIX)
            .sum();
        u64::try_from(bytes).unwrap_or(u64::MAX)
    })
}

/// CLIENT TRACKING ON|OFF [REDIRECT id] [BCAST] [PREFIX p ...] [OPTIN] [OPTOUT] [NOLOOP].
pub(crate) fn client_tracking(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let Some((switch, options)) = args.split_first() else {
        ctx.out.error(reply::SYNTAX);
        return;
    };
    let mut new = Mode::default();
    let mut idx = 0;
    while let Some(option) = options.get(idx) {
        let value = options.get(idx + 1);
        if eq_ignore_case(option, "redirect") && value.is_some() {
            idx += 1;
            if new.redirect != 0 {
                ctx.out
                    .error("ERR A client can only redirect to a single other client");
                return;
            }
            let Some(id) = value.and_then(|v| parse_i64(v)) else {
                ctx.out.error(reply::NOT_INTEGER);
                return;
            };
            let found = u64::try_from(id)
                .ok()
                .filter(|id| ctx.server.clients.get(*id).is_some());
            let Some(id) = found else {
                ctx.out
                    .error("ERR The client ID you want redirect to does not exist");
                return;
            };
            new.redirect = id;
        } else if eq_ignore_case(option, "bcast") {
            new.bcast = true;
        } else if eq_ignore_case(option, "optin") {
            new.optin = true;
        } else if eq_ignore_case(option, "optout") {
            new.optout = true;
        } else if eq_ignore_case(option, "noloop") {
            new.noloop = true;
        } else if let (true, Some(prefix)) = (eq_ignore_case(option, "prefix"), value) {
            idx += 1;
            new.prefixes.push(prefix.clone());
        } else {
            ctx.out.error(reply::SYNTAX);
            return;
        }
        idx += 1;
    }
    if eq_ignore_case(switch, "off") {
        disable(ctx.server, ctx.client);
        ctx.out.ok();
        return;
    }
    if !eq_ignore_case(switch, "on") {
        ctx.out.error(reply::SYNTAX);
        return;
    }
    if let Err(msg) = check(ctx, &new) {
        ctx.out.error(&msg);
        return;
    }
    enable(ctx.server, ctx.client, new);
    ctx.out.ok();
}

/// Redis's checks before enabling, in Redis's order.
fn check(ctx: &Ctx<'_>, new: &Mode) -> Result<(), String> {
    if !new.bcast && !new.prefixes.is_empty() {
        return Err("ERR PREFIX option requires BCAST mode to be enabled".into());
    }
    let old = ctx.client.conn.tracking.mode.as_ref();
    if old.is_some_and(|old| old.bcast != new.bcast) {
        return Err(
            "ERR You can't switch BCAST mode on/off before disabling tracking for this \
                    client, and then re-enabling it with a different mode."
                .into(),
        );
    }
    if new.bcast && (new.optin || new.optout) {
        return Err("ERR OPTIN and OPTOUT are not compatible with BCAST".into());
    }
    if new.optin && new.optout {
        return Err("ERR You can't specify both OPTIN mode and OPTOUT mode".into());
    }
    if old.is_some_and(|old| (new.optin && old.optout) || (new.optout && old.optin)) {
        return Err(
            "ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this \
                    client, and then re-enabling it with a different mode."
                .into(),
        );
    }
    if new.bcast {
        let existing = old.map_or(&[][..], |old| old.prefixes.as_slice());
        for (idx, prefix) in new.prefixes.iter().enumerate() {
            let overlaps = |other: &Bytes| other.starts_with(prefix) || prefix.starts_with(other);
            if let Some(other) = existing
                .iter()
                .find(|other| *other != prefix && overlaps(other))
            {
                return Err(format!(
                    "ERR Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a \
                     single client must not overlap.",
                    String::from_utf8_lossy(prefix),
                    String::from_utf8_lossy(other)
                ));
            }
            let later = new.prefixes.get(idx + 1..).unwrap_or_default();
            if let Some(other) = later.iter().find(|other| overlaps(other)) {
                return Err(format!(
                    "ERR Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a \
                     single client must not overlap.",
                    String::from_utf8_lossy(prefix),
                    String::from_utf8_lossy(other)
                ));
            }
        }
    }
    Ok(())
}

fn enable(server: &Server, client: &mut Client, mut new: Mode) {
    if new.bcast && new.prefixes.is_empty() {
        new.prefixes.push(Bytes::new());
    }
    let state = &mut client.conn.tracking;
    // Enabling again adds prefixes and keeps the options already on, as Redis's enableTracking.
    if let Some(old) = &state.mode {
        new.optin |= old.optin;
        new.optout |= old.optout;
        // The old prefixes are distinct: only the new ones need looking up (a scan of the
        // growing list made each call quadratic in the client's prefixes; Redis's "client
        // evicted due to client tracking prefixes" adds about 4,500, one per call).
        let fresh: std::collections::HashSet<Bytes> = new.prefixes.iter().cloned().collect();
        for prefix in &old.prefixes {
            if !fresh.contains(prefix) {
                new.prefixes.push(prefix.clone());
            }
        }
    }
    let mut table = lock(&server.tracking.table);
    table.clients.insert(
        client.id,
        Tracker {
            handle: Arc::clone(&client.handle),
            redirect: new.redirect,
            noloop: new.noloop,
            bcast: new.bcast,
        },
    );
    if new.bcast {
        for prefix in &new.prefixes {
            table
                .prefixes
                .entry(prefix.clone())
                .or_default()
                .insert(client.id);
        }
    }
    server.tracking.active.store(true, Ordering::Relaxed);
    drop(table);
    state.mode = Some(new);
    state.caching = false;
}

/// Tracking off (CLIENT TRACKING OFF, RESET).
pub(crate) fn disable(server: &Server, client: &mut Client) {
    if client.conn.tracking.mode.take().is_some() {
        server.tracking.remove_client(client.id);
    }
    client.conn.tracking.caching = false;
}

/// CLIENT CACHING YES|NO.
pub(crate) fn client_caching(ctx: &mut Ctx<'_>, value: &[u8]) {
    let Some(mode) = ctx.client.conn.tracking.mode.as_ref() else {
        ctx.out.error(
            "ERR CLIENT CACHING can be called only when the client is in tracking mode with \
             OPTIN or OPTOUT mode enabled",
        );
        return;
    };
    if eq_ignore_case(value, "yes") {
        if !mode.optin {
            ctx.out.error(
                "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
            );
            return;
        }
    } else if eq_ignore_case(value, "no") {
        if !mode.optout {
            ctx.out.error(
                "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
            );
            return;
        }
    } else {
        ctx.out.error(reply::SYNTAX);
        return;
    }
    ctx.client.conn.tracking.caching = true;
    ctx.client.conn.tracking.caching_fresh = true;
    ctx.out.ok();
}

/// CLIENT TRACKINGINFO.
pub(crate) fn client_trackinginfo(ctx: &mut Ctx<'_>) {
    let state = &ctx.client.conn.tracking;
    let mut flags: Vec<&[u8]> = Vec::new();
    let redirect = match &state.mode {
        None => {
            flags.push(b"off");
            -1
        }
        Some(mode) => {
            flags.push(b"on");
            if mode.bcast {
                flags.push(b"bcast");
            }
            if mode.optin {
                flags.push(b"optin");
                if state.caching {
                    flags.push(b"caching-yes");
                }
            }
            if mode.optout {
                flags.push(b"optout");
                if state.caching {
                    flags.push(b"caching-no");
                }
            }
            if mode.noloop {
                flags.push(b"noloop");
            }
            if mode.redirect != 0 && ctx.server.clients.get(mode.redirect).is_none() {
                flags.push(b"broken_redirect");
            }
            i64::try_from(mode.redirect).unwrap_or(-1)
        }
    };
    let prefixes: Vec<Bytes> = state
        .mode
        .as_ref()
        .map(|mode| mode.prefixes.clone())
        .unwrap_or_default();
    ctx.out.map_len(3);
    ctx.out.bulk(b"flags");
    ctx.out.set_len(flags.len());
    for flag in flags {
        ctx.out.bulk(flag);
    }
    ctx.out.bulk(b"redirect");
    ctx.out.int(redirect);
    ctx.out.bulk(b"prefixes");
    ctx.out.array_len(prefixes.len());
    for prefix in &prefixes {
        ctx.out.bulk(prefix);
    }
}

/// CLIENT GETREDIR: the redirect target's id, 0 when tracking without redirection, -1 off.
pub(crate) fn client_getredir(ctx: &mut Ctx<'_>) {
    let redirect = ctx
        .client
        .conn
        .tracking
        .mode
        .as_ref()
        .map_or(-1, |mode| i64::try_from(mode.redirect).unwrap_or(-1));
    ctx.out.int(redirect);
}
