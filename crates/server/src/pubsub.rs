//! Pub/sub: the registry of channel and pattern subscriptions, and delivery.
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

/// One message on its way to a subscriber.
#[derive(Debug)]
pub(crate) struct Message {
    /// The pattern that matched, for pmessage.
    pub(crate) pattern: Option<Bytes>,
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
}

/// A connection's subscriptions and its receiving end.
#[derive(Debug)]
pub(crate) struct ClientSubscriptions {
    pub(crate) channels: HashSet<Bytes>,
    pub(crate) patterns: HashSet<Bytes>,
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
            tx,
            rx,
            queued: Arc::default(),
        }
    }

    /// Channels plus patterns: the count Redis puts in (un)subscribe replies.
    pub(crate) fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Returns true if and only if the connection is in subscribed mode.
    pub(crate) fn active(&self) -> bool {
        self.count() > 0
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

    /// Adds a channel (or pattern) subscription. Returns true if and only if it is new.
    pub(crate) fn subscribe(
        &self,
        subs: &mut ClientSubscriptions,
        handle: &Arc<ClientHandle>,
        name: &Bytes,
        pattern: bool,
    ) -> bool {
        let set = if pattern {
            &mut subs.patterns
        } else {
            &mut subs.channels
        };
        if !set.insert(name.clone()) {
            return false;
        }
        let subscriber = Registry::subscriber(subs, handle);
        let mut maps = lock(&self.inner);
        let map = if pattern {
            &mut maps.patterns
        } else {
            &mut maps.channels
        };
        map.entry(name.clone())
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
        pattern: bool,
    ) -> bool {
        let set = if pattern {
            &mut subs.patterns
        } else {
            &mut subs.channels
        };
        if !set.remove(name) {
            return false;
        }
        let mut maps = lock(&self.inner);
        let map = if pattern {
            &mut maps.patterns
        } else {
            &mut maps.channels
        };
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
        let channels: Vec<Bytes> = subs.channels.iter().cloned().collect();
        for channel in &channels {
            self.unsubscribe(subs, id, channel, false);
        }
        let patterns: Vec<Bytes> = subs.patterns.iter().cloned().collect();
        for pattern in &patterns {
            self.unsubscribe(subs, id, pattern, true);
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
                        channel: channel.clone(),
                        payload: payload.clone(),
                    };
                    receivers += usize::from(deliver(subscriber, message, limits));
                }
            }
        }
        receivers
    }

    /// Active channels matching `pattern` (all when None), for PUBSUB CHANNELS.
    pub(crate) fn channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let maps = lock(&self.inner);
        maps.channels
            .keys()
            .filter(|channel| {
                pattern.is_none_or(|p| forkless_storage::pattern::glob_match(p, channel, false))
            })
            .cloned()
            .collect()
    }

    /// Subscribers of `channel`, for PUBSUB NUMSUB.
    pub(crate) fn numsub(&self, channel: &[u8]) -> usize {
        lock(&self.inner)
            .channels
            .get(channel)
            .map_or(0, HashMap::len)
    }

    /// Patterns with at least one subscriber, for PUBSUB NUMPAT.
    pub(crate) fn numpat(&self) -> usize {
        lock(&self.inner).patterns.len()
    }
}

/// Queues a message for one subscriber, or disconnects it if its queue is over the limits.
/// Returns true if and only if the message was queued.
fn deliver(subscriber: &Subscriber, message: Message, limits: Limits) -> bool {
    let size = message.size();
    let queued = subscriber.queued.bytes.fetch_add(size, Ordering::Relaxed) + size;
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
