//! Keyspace notifications (Redis 7.0's `notify.c`): with `notify-keyspace-events` on, a write
//! publishes `<event>` on `__keyspace@<db>__:<key>` (class `K`) and `<key>` on
//! `__keyevent@<db>__:<event>` (class `E`), through the ordinary pub/sub registry, for the event
//! classes the option names.
//!
//! Command handlers call [`notify`] with the class and Redis's event name after their change,
//! in the order Redis's `t_*.c`/`db.c` do. The events only the write path sees go through the
//! storage crate's key-event sink ([`Sink`]): `new` (a key created where none was, from
//! `WriteGuard::set`, before the command's own event as Redis's `dbAdd`) and `expired` (lazy
//! expiry in a write guard, or the active expiry cycle).
//!
//! Cost when the option is empty: [`notify`] is one relaxed load of
//! `Tunables::notify_keyspace_events`, and a key creation or expiry one relaxed load of the
//! storage sink's mask; nothing is built or locked.

use std::sync::Weak;
use std::sync::atomic::Ordering;

use bytes::{BufMut as _, Bytes, BytesMut};
use forkless_storage::WriteGuard;

use crate::cmd::Ctx;
use crate::config::notify_class as class;
use crate::pubsub::Limits;
use crate::server::Server;

pub(crate) use crate::config::notify_class::{
    EXPIRED, GENERIC, HASH, KEY_MISS, LIST, NEW, SET, STREAM, STRING, ZSET,
};

/// Publishes the keyspace notification of `event` on `key` in the client's database, if
/// `notify-keyspace-events` enables class `class`.
#[inline]
pub(crate) fn notify(ctx: &Ctx<'_>, class: u32, event: &str, key: &[u8]) {
    notify_db(ctx.server, class, event, key, ctx.client.db);
}

/// [`notify`] for database `db` (MOVE's and COPY ... DB's destination, SWAPDB).
#[inline]
pub(crate) fn notify_db(server: &Server, class: u32, event: &str, key: &[u8], db: usize) {
    let flags = server
        .tunables
        .notify_keyspace_events
        .load(Ordering::Relaxed);
    if flags & class != 0 {
        publish(server, flags, event, key, db);
    }
}

/// After a change that may have emptied the collection at `key` (and so removed the key, as
/// `cmd::access` does), publishes `del` if the key is gone: Redis's `if (emptied) notify del`.
/// Looks nothing up unless class `g` is on.
pub(crate) fn notify_del_if_gone(ctx: &Ctx<'_>, guard: &mut WriteGuard<'_>, key: &[u8]) {
    if enabled(ctx.server, GENERIC) && !guard.contains(key) {
        notify(ctx, GENERIC, "del", key);
    }
}

/// Returns true if and only if notifications of `class` are on.
#[inline]
pub(crate) fn enabled(server: &Server, class: u32) -> bool {
    server
        .tunables
        .notify_keyspace_events
        .load(Ordering::Relaxed)
        & class
        != 0
}

/// The event names of a list end: `lpush`/`rpush` and `lpop`/`rpop`.
pub(crate) fn list_events(end: forkless_storage::types::list::End) -> (&'static str, &'static str) {
    match end {
        forkless_storage::types::list::End::Head => ("lpush", "lpop"),
        forkless_storage::types::list::End::Tail => ("rpush", "rpop"),
    }
}

#[cold]
fn publish(server: &Server, flags: u32, event: &str, key: &[u8], db: usize) {
    let limits = Limits {
        hard_bytes: server.tunables.obuf_pubsub_hard.load(Ordering::Relaxed),
        soft_bytes: server.tunables.obuf_pubsub_soft.load(Ordering::Relaxed),
        soft_seconds: server
            .tunables
            .obuf_pubsub_soft_secs
            .load(Ordering::Relaxed),
    };
    let event_bytes = Bytes::copy_from_slice(event.as_bytes());
    let key_bytes = Bytes::copy_from_slice(key);
    let mut db_text = itoa::Buffer::new();
    let db_text = db_text.format(db);
    if flags & class::KEYSPACE != 0 {
        let channel = channel(b"__keyspace@", db_text, key);
        server.pubsub.publish(&channel, &event_bytes, limits);
    }
    if flags & class::KEYEVENT != 0 {
        let channel = channel(b"__keyevent@", db_text, event.as_bytes());
        server.pubsub.publish(&channel, &key_bytes, limits);
    }
}

fn channel(prefix: &[u8], db: &str, suffix: &[u8]) -> Bytes {
    let mut channel = BytesMut::with_capacity(prefix.len() + db.len() + 3 + suffix.len());
    channel.put_slice(prefix);
    channel.put_slice(db.as_bytes());
    channel.put_slice(b"__:");
    channel.put_slice(suffix);
    channel.freeze()
}

/// The storage events the server wants for `flags`: expirations for class `x`, creations for
/// class `n`, and none without `K` or `E` (nothing would be published).
pub(crate) fn storage_mask(flags: u32) -> u8 {
    if flags & (class::KEYSPACE | class::KEYEVENT) == 0 {
        return 0;
    }
    let mut mask = 0;
    if flags & EXPIRED != 0 {
        mask |= forkless_storage::events::EXPIRED;
    }
    if flags & NEW != 0 {
        mask |= forkless_storage::events::CREATED;
    }
    mask
}

/// Applies the live `notify-keyspace-events` to the storage sink (startup and CONFIG SET).
pub(crate) fn configure(server: &Server) {
    let flags = server
        .tunables
        .notify_keyspace_events
        .load(Ordering::Relaxed);
    server.keyspace.want_key_events(storage_mask(flags));
}

/// The storage crate's key-event sink: publishes `expired` and `new`.
pub(crate) struct Sink(pub(crate) Weak<Server>);

impl forkless_storage::events::KeyEvents for Sink {
    fn expired(&self, db: usize, key: &[u8]) {
        if let Some(server) = self.0.upgrade() {
            notify_db(&server, EXPIRED, "expired", key, db);
        }
    }

    fn created(&self, db: usize, key: &[u8]) {
        if let Some(server) = self.0.upgrade() {
            notify_db(&server, NEW, "new", key, db);
        }
    }
}
