//! Pub/sub: the registry of channel, pattern and shard channel subscriptions, and delivery.
//!
//! Shard channels (SSUBSCRIBE, SPUBLISH) are Redis 7.0's sharded pub/sub. Without cluster mode
//! they behave like ordinary channels in a namespace of their own: SPUBLISH reaches only
//! SSUBSCRIBE subscribers (never patterns), messages arrive as `smessage`, and their
//! subscribe/unsubscribe replies count shard channels only.
//!
//! PUBLISH never waits for a subscriber: each subscriber has an unbounded queue plus a count of
//! the bytes waiting in it. When that count passes the `pubsub` class of
//! `client-output-buffer-limit` (hard limit, or soft limit for longer than its seconds), the
//! subscriber is disconnected, as Redis does, so a slow reader costs the server a bounded
//! amount of memory and never slows a publisher.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::server::{ClientHandle, lock};

/// The three subscription namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// SUBSCRIBE / PUBLISH.
    Channel,
    /// PSUBSCRIBE, matched against PUBLISH's channel.
    Pattern,
    /// SSUBSCRIBE / SPUBLISH.
    Shard,
}

/// One message on its way to a subscriber.
#[derive(Debug)]
pub(crate) struct Message {
    /// The pattern that matched, for pmessage.
    pub(crate) pattern: Option<Bytes>,
    /// True for a shard channel's message (`smessage`).
    pub(crate) shard: bool,
    pub(crate) channel: Bytes,
    pub(crate) payload: Bytes,
}

impl Message {
    /// The bytes this message counts for against the output buffer limit.
    pub(crate) fn size(&self) -> u64 {
        let len =
            self.pattern.as_ref().map_or(0, Bytes::len) + self.channel.len() + self.payload.len();
        u64::try_from(len).unwrap_or(u64::MAX) + 64
    }
}

/// A subscriber's end of its queue, as seen by publishers.
#[derive(Debug, Clone)]
struct Subscriber {
    tx: mpsc::UnboundedSender<Message>,
    queued: Arc<Queued>,
    handle: Arc<ClientHandle>,
}

/// Bytes waiting in one subscriber's queue, and since when it has been over the soft limit.
#[derive(Debug, Default)]
pub(crate) struct Queued {
    pub(crate) bytes: AtomicU64,
    soft_since: Mutex<Option<Instant>>,
}

/// The `pubsub` output buffer limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) hard_bytes: u64,
    pub(crate) soft_bytes: u64,
    pub(crate) soft_seconds: u64,
}

/// Who listens to what. A std mutex: held for a map lookup and a few channel sends, never across
/// an await.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    inner: Mutex<Maps>,
}

#[derive(Debug, Default)]
struct Maps {
    channels: HashMap<Bytes, HashMap<u64, Subscriber>>,
    patterns: HashMap<Bytes, HashMap<u64, Subscriber>>,
    shard_channels: HashMap<Bytes, HashMap<u64, Subscriber>>,
}

impl Maps {
    fn of(&mut self, kind: Kind) -> &mut HashMap<Bytes, HashMap<u64, Subscriber>> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard_channels,
        }
    }
}

/// A connection's subscriptions and its receiving end.
#[derive(Debug)]
pub(crate) struct ClientSubscriptions {
    pub(crate) channels: HashSet<Bytes>,
    pub(crate) patterns: HashSet<Bytes>,
    pub(crate) shard_channels: HashSet<Bytes>,
    tx: mpsc::UnboundedSender<Message>,
    pub(crate) rx: mpsc::UnboundedReceiver<Message>,
    pub(crate) queued: Arc<Queued>,
}

impl ClientSubscriptions {
    pub(crate) fn new() -> ClientSubscriptions {
        let (tx, rx) = mpsc::unbounded_channel();
        ClientSubscriptions {
            channels: HashSet::new(),
            patterns: HashSet::new(),
            shard_channels: HashSet::new(),
            tx,
            rx,
            queued: Arc::default(),
        }
    }

    /// The subscriptions of one kind.
    pub(crate) fn of(&self, kind: Kind) -> &HashSet<Bytes> {
        match kind {
            Kind::Channel => &self.channels,
            Kind::Pattern => &self.patterns,
            Kind::Shard => &self.shard_channels,
        }
    }

    fn of_mut(&mut self, kind: Kind) -> &mut HashSet<Bytes> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard_channels,
        }
    }

    /// The count Redis puts in a (un)subscribe reply of this kind: channels plus patterns, or
    /// shard channels alone.
    pub(crate) fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Channel | Kind::Pattern => self.channels.len() + self.patterns.len(),
            Kind::Shard => self.shard_channels.len(),
        }
    }

    /// Returns true if and only if the connection is in subscribed mode.
    pub(crate) fn active(&self) -> bool {
        !(self.channels.is_empty() && self.patterns.is_empty() && self.shard_channels.is_empty())
    }
}

impl Registry {
    fn subscriber(subs: &ClientSubscriptions, handle: &Arc<ClientHandle>) -> Subscriber {
        Subscriber {
            tx: subs.tx.clone(),
            queued: Arc::clone(&subs.queued),
            handle: Arc::clone(handle),
        }
    }

    /// Adds a subscription. Returns true if and only if it is new.
    pub(crate) fn subscribe(
        &self,
        subs: &mut ClientSubscriptions,
        handle: &Arc<ClientHandle>,
        name: &Bytes,
        kind: Kind,
    ) -> bool {
        if !subs.of_mut(kind).insert(name.clone()) {
            return false;
        }
        let subscriber = Registry::subscriber(subs, handle);
        let mut maps = lock(&self.inner);
        maps.of(kind)
            .entry(name.clone())
            .or_default()
            .insert(handle.id, subscriber);
        true
    }

    /// Removes a subscription. Returns true if and only if it existed.
    pub(crate) fn unsubscribe(
        &self,
        subs: &mut ClientSubscriptions,
        id: u64,
        name: &Bytes,
        kind: Kind,
    ) -> bool {
        if !subs.of_mut(kind).remove(name) {
            return false;
        }
        let mut maps = lock(&self.inner);
        let map = maps.of(kind);
        if let Some(subscribers) = map.get_mut(name) {
            subscribers.remove(&id);
            if subscribers.is_empty() {
                map.remove(name);
            }
        }
        true
    }

    /// Drops every subscription of a connection (disconnect, RESET).
    pub(crate) fn remove_client(&self, subs: &mut ClientSubscriptions, id: u64) {
        for kind in [Kind::Channel, Kind::Pattern, Kind::Shard] {
            let names: Vec<Bytes> = subs.of(kind).iter().cloned().collect();
            for name in &names {
                self.unsubscribe(subs, id, name, kind);
            }
        }
    }

    /// Delivers `payload` to every subscriber of `channel` and of a matching pattern. Returns
    /// how many received it. Subscribers over their output limit are disconnected instead.
    pub(crate) fn publish(&self, channel: &Bytes, payload: &Bytes, limits: Limits) -> usize {
        let maps = lock(&self.inner);
        let mut receivers = 0;
        if let Some(subscribers) = maps.channels.get(channel) {
            for subscriber in subscribers.values() {
                let message = Message {
                    pattern: None,
                    shard: false,
                    channel: channel.clone(),
                    payload: payload.clone(),
                };
                receivers += usize::from(deliver(subscriber, message, limits));
            }
        }
        for (pattern, subscribers) in &maps.patterns {
            if forkless_storage::pattern::glob_match(pattern, channel, false) {
                for subscriber in subscribers.values() {
                    let message = Message {
                        pattern: Some(pattern.clone()),
                        shard: false,
                        channel: channel.clone(),
                        payload: payload.clone(),
                    };
                    receivers += usize::from(deliver(subscriber, message, limits));
                }
            }
        }
        receivers
    }

    /// Delivers `payload` to every subscriber of shard channel `channel` (SPUBLISH).
    pub(crate) fn publish_shard(&self, channel: &Bytes, payload: &Bytes, limits: Limits) -> usize {
        let maps = lock(&self.inner);
        let Some(subscribers) = maps.shard_channels.get(channel) else {
            return 0;
        };
        subscribers
            .values()
            .filter(|subscriber| {
                let message = Message {
                    pattern: None,
                    shard: true,
                    channel: channel.clone(),
                    payload: payload.clone(),
                };
                deliver(subscriber, message, limits)
            })
            .count()
    }

    /// Active channels (or shard channels) matching `pattern` (all when None), for PUBSUB
    /// CHANNELS and SHARDCHANNELS.
    pub(crate) fn channels(&self, kind: Kind, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let mut maps = lock(&self.inner);
        maps.of(kind)
            .keys()
            .filter(|channel| {
                pattern.is_none_or(|p| forkless_storage::pattern::glob_match(p, channel, false))
            })
            .cloned()
            .collect()
    }

    /// Every subscription: the subscriber, the channel or pattern, and whether it is a
    /// pattern (for ACL, which closes subscribers whose channels it no longer allows).
    pub(crate) fn subscriptions(&self) -> Vec<(Arc<ClientHandle>, Bytes, bool)> {
        let maps = lock(&self.inner);
        let mut all = Vec::new();
        for (map, is_pattern) in [
            (&maps.channels, false),
            (&maps.patterns, true),
            (&maps.shard_channels, false),
        ] {
            for (name, subscribers) in map {
                for subscriber in subscribers.values() {
                    all.push((Arc::clone(&subscriber.handle), name.clone(), is_pattern));
                }
            }
        }
        all
    }

    /// Subscribers of `channel` (or shard channel), for PUBSUB NUMSUB and SHARDNUMSUB.
    pub(crate) fn numsub(&self, kind: Kind, channel: &[u8]) -> usize {
        lock(&self.inner)
            .of(kind)
            .get(channel)
            .map_or(0, HashMap::len)
    }

    /// Channels and shard channels with at least one subscriber, for INFO stats.
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let maps = lock(&self.inner);
        (
            maps.channels.len(),
            maps.patterns.len(),
            maps.shard_channels.len(),
        )
    }

    /// Patterns with at least one subscriber, for PUBSUB NUMPAT.
    pub(crate) fn numpat(&self) -> usize {
        lock(&self.inner).patterns.len()
    }
}

/// Queues a message for one subscriber, or disconnects it if its queue is over the limits.
/// Returns true if and only if the message was queued.
fn deliver(subscriber: &Subscriber, message: Message, limits: Limits) -> bool {
    // A client being closed (killed, evicted, over its limits) gets nothing more: Redis has
    // freed it already, and what was queued to it would grow past what its eviction counted.
    if subscriber.handle.killed.load(Ordering::Acquire) {
        return false;
    }
    let size = message.size();
    let queued = subscriber.queued.bytes.fetch_add(size, Ordering::Relaxed) + size;
    subscriber
        .handle
        .info
        .pubsub_queued
        .fetch_add(size, Ordering::Relaxed);
    if over_limits(&subscriber.queued, queued, limits) {
        tracing::info!(
            client = subscriber.handle.id,
            addr = %subscriber.handle.addr,
            "Client scheduled to be closed ASAP for overcoming of output buffer limits."
        );
        subscriber.handle.kill();
        return false;
    }
    subscriber.tx.send(message).is_ok()
}

fn over_limits(queued: &Queued, bytes: u64, limits: Limits) -> bool {
    if limits.hard_bytes > 0 && bytes >= limits.hard_bytes {
        return true;
    }
    if limits.soft_bytes == 0 {
        return false;
    }
    let mut soft_since = lock(&queued.soft_since);
    if bytes < limits.soft_bytes {
        *soft_since = None;
        return false;
    }
    let since = *soft_since.get_or_insert_with(Instant::now);
    since.elapsed().as_secs() >= limits.soft_seconds
}
