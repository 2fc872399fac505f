//! State shared by every connection: the keyspace, the live configuration, statistics and the
//! client registry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use forkless_storage::{Db, Keyspace};
use tokio::sync::Notify;

use crate::cmd;
use crate::config::Config;

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Microseconds since the Unix epoch.
pub(crate) fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A command's start time handed over from the end of the one before it (see
/// [`chain_clock`]), and the end time of the last command dispatched on this thread.
#[derive(Clone, Copy)]
struct ChainedClock {
    start_us: Option<u64>,
    last_end_us: Option<u64>,
}

std::thread_local! {
    static CLOCK: std::cell::Cell<ChainedClock> = const {
        std::cell::Cell::new(ChainedClock { start_us: None, last_end_us: None })
    };
}

/// Lets the next command dispatched on this thread start at `previous_end_us`, the end of the
/// command before it on the same connection with nothing awaited in between: one clock read
/// per pipelined command instead of two (docs/benchmarks.md, issue 14). The connection calls it
/// right before `cmd::execute` and [`unchain_clock`] right after, so no other task sees it.
pub(crate) fn chain_clock(previous_end_us: Option<u64>) {
    CLOCK.with(|clock| {
        clock.set(ChainedClock {
            start_us: previous_end_us,
            last_end_us: None,
        });
    });
}

/// Ends what [`chain_clock`] began: drops an unused start time and returns the end time of the
/// last command dispatched since.
pub(crate) fn unchain_clock() -> Option<u64> {
    CLOCK.with(|clock| {
        let last_end_us = clock.get().last_end_us;
        clock.set(ChainedClock {
            start_us: None,
            last_end_us: None,
        });
        last_end_us
    })
}

/// A command's start: the chained time if one is waiting (taken, so a nested command reads the
/// clock), else a clock reading.
pub(crate) fn command_start_us() -> u64 {
    CLOCK
        .with(|clock| {
            let mut state = clock.get();
            let start = state.start_us.take();
            if start.is_some() {
                clock.set(state);
            }
            start
        })
        .unwrap_or_else(unix_us)
}

/// The end time of the last command dispatched since [`chain_clock`], left in place for
/// [`unchain_clock`].
pub(crate) fn last_end_us() -> Option<u64> {
    CLOCK.with(|clock| clock.get().last_end_us)
}

/// A command's end: a clock reading, kept for [`unchain_clock`].
pub(crate) fn command_end_us() -> u64 {
    let end = unix_us();
    CLOCK.with(|clock| {
        let mut state = clock.get();
        state.last_end_us = Some(end);
        clock.set(state);
    });
    end
}

/// Locks a std mutex, ignoring poisoning: the data behind these mutexes (names, registries) is
/// valid after any panic, and a panic elsewhere must not take every connection down with it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Configuration values read on every command or every read. Copied out of [`Config`] into
/// atomics so the hot path never takes the config lock; `CONFIG SET` refreshes them.
#[derive(Debug, Default)]
pub(crate) struct Tunables {
    pub(crate) proto_max_bulk_len: AtomicU64,
    pub(crate) client_query_buffer_limit: AtomicU64,
    pub(crate) timeout_secs: AtomicU64,
    pub(crate) maxclients: AtomicU64,
    /// The default user has passwords (no `nopass`): protected mode then serves everyone,
    /// and AUTH <password> has something to check. Kept by `crate::acl`.
    pub(crate) requirepass_set: AtomicBool,
    /// A new connection must authenticate: the default user needs a password or is off
    /// (Redis's `authRequired`). Kept by `crate::acl`.
    pub(crate) default_auth_required: AtomicBool,
    pub(crate) protected_mode: AtomicBool,
    /// `client-output-buffer-limit normal <hard> <soft> <seconds>`.
    pub(crate) obuf_normal_hard: AtomicU64,
    pub(crate) obuf_normal_soft: AtomicU64,
    pub(crate) obuf_normal_soft_secs: AtomicU64,
    /// `client-output-buffer-backpressure`: pending replies at which a connection stops
    /// reading its client's commands; 0 never.
    pub(crate) obuf_backpressure: AtomicU64,
    /// `client-output-buffer-limit pubsub <hard> <soft> <seconds>`, for keyspace
    /// notifications published from inside a write (`notify.rs`), where the config lock must
    /// not be taken.
    pub(crate) obuf_pubsub_hard: AtomicU64,
    pub(crate) obuf_pubsub_soft: AtomicU64,
    pub(crate) obuf_pubsub_soft_secs: AtomicU64,
    /// `notify-keyspace-events` as `config::notify_class` bits: the one load a write pays for
    /// keyspace notifications when they are off (`notify.rs`).
    pub(crate) notify_keyspace_events: AtomicU32,
    pub(crate) hll_sparse_max_bytes: AtomicU64,
    /// `slowlog-log-slower-than` (microseconds, negative disables) and `slowlog-max-len`.
    pub(crate) slowlog_log_slower_than: AtomicI64,
    pub(crate) slowlog_max_len: AtomicU64,
    /// `latency-monitor-threshold` in milliseconds; 0 disables the latency monitor.
    pub(crate) latency_monitor_threshold: AtomicU64,
    /// `tracking-table-max-keys`; 0 is no limit.
    pub(crate) tracking_table_max_keys: AtomicU64,
    /// `maxmemory` (0: no limit), `maxmemory-policy` (its index in `MaxmemoryPolicy`),
    /// `maxmemory-samples` and `maxmemory-eviction-tenacity`, read by `evict.rs` before every
    /// command that may need memory.
    pub(crate) maxmemory: AtomicU64,
    pub(crate) maxmemory_policy: AtomicU8,
    pub(crate) maxmemory_samples: AtomicU64,
    pub(crate) maxmemory_eviction_tenacity: AtomicU64,
    /// `maxmemory-clients` in bytes (a percentage resolved against `maxmemory`); 0 is off.
    pub(crate) maxmemory_clients: AtomicU64,
    /// `replica-ignore-maxmemory`: a replica does not evict on its own.
    pub(crate) replica_ignore_maxmemory: AtomicBool,
    /// `replica-read-only` and `replica-serve-stale-data`, for the refusals on a replica.
    pub(crate) replica_read_only: AtomicBool,
    pub(crate) replica_serve_stale_data: AtomicBool,
    /// `min-replicas-to-write` and `min-replicas-max-lag`, read by every write command.
    pub(crate) min_replicas_to_write: AtomicU64,
    pub(crate) min_replicas_max_lag: AtomicU64,
    /// `rdb-key-save-delay` (a debugging option, microseconds per key saved), shared with
    /// running saves (`SaveOptions::key_delay`) so that a change acts on them at once.
    pub(crate) rdb_key_save_delay: Arc<AtomicI64>,
    /// `busy-reply-threshold` (ms) and `script-memory-limit` (bytes), read by every script
    /// run, which must not take the config lock for them.
    pub(crate) busy_reply_threshold: AtomicU64,
    pub(crate) script_memory_limit: AtomicU64,
}

impl Tunables {
    /// The most a connection may hold of queued pushes (MONITOR lines, tracking
    /// invalidations) plus pending replies ([`ClientHandle::send_push`]): the `normal`
    /// class's hard limit, or without one `client-output-buffer-backpressure` (the connection
    /// cannot stop those writers as it stops reading its own client); 0 with neither.
    pub(crate) fn push_limit(&self) -> u64 {
        match self.obuf_normal_hard.load(Ordering::Relaxed) {
            0 => self.obuf_backpressure.load(Ordering::Relaxed),
            hard => hard,
        }
    }

    pub(crate) fn refresh(&self, config: &Config) {
        self.proto_max_bulk_len
            .store(config.proto_max_bulk_len, Ordering::Relaxed);
        self.client_query_buffer_limit
            .store(config.client_query_buffer_limit, Ordering::Relaxed);
        self.timeout_secs.store(config.timeout, Ordering::Relaxed);
        self.maxclients.store(config.maxclients, Ordering::Relaxed);
        self.protected_mode
            .store(config.protected_mode, Ordering::Relaxed);
        let normal = &config.client_output_buffer_limit.normal;
        self.obuf_normal_hard
            .store(normal.hard_limit_bytes, Ordering::Relaxed);
        self.obuf_normal_soft
            .store(normal.soft_limit_bytes, Ordering::Relaxed);
        self.obuf_normal_soft_secs
            .store(normal.soft_limit_seconds, Ordering::Relaxed);
        self.obuf_backpressure
            .store(config.client_output_buffer_backpressure, Ordering::Relaxed);
        let size = |name: &str, default: i64| {
            usize::try_from(config.stored_int(name, default)).unwrap_or(usize::MAX)
        };
        forkless_storage::types::limits::ENCODING_LIMITS.set(
            forkless_storage::types::limits::Thresholds {
                hash_max_listpack_entries: size("hash-max-listpack-entries", 512),
                hash_max_listpack_value: size("hash-max-listpack-value", 64),
                zset_max_listpack_entries: size("zset-max-listpack-entries", 128),
                zset_max_listpack_value: size("zset-max-listpack-value", 64),
                set_max_intset_entries: size("set-max-intset-entries", 512),
                list_max_listpack_size: config.stored_int("list-max-listpack-size", -2),
                stream_node_max_entries: size("stream-node-max-entries", 100),
                stream_node_max_bytes: size("stream-node-max-bytes", 4096),
            },
        );
        self.notify_keyspace_events
            .store(config.notify_keyspace_events, Ordering::Relaxed);
        let pubsub = &config.client_output_buffer_limit.pubsub;
        self.obuf_pubsub_hard
            .store(pubsub.hard_limit_bytes, Ordering::Relaxed);
        self.obuf_pubsub_soft
            .store(pubsub.soft_limit_bytes, Ordering::Relaxed);
        self.obuf_pubsub_soft_secs
            .store(pubsub.soft_limit_seconds, Ordering::Relaxed);
        self.hll_sparse_max_bytes
            .store(config.hll_sparse_max_bytes, Ordering::Relaxed);
        self.slowlog_log_slower_than
            .store(config.slowlog_log_slower_than, Ordering::Relaxed);
        self.slowlog_max_len
            .store(config.slowlog_max_len, Ordering::Relaxed);
        self.latency_monitor_threshold
            .store(config.latency_monitor_threshold, Ordering::Relaxed);
        self.tracking_table_max_keys
            .store(config.tracking_table_max_keys, Ordering::Relaxed);
        self.maxmemory.store(config.maxmemory, Ordering::Relaxed);
        self.maxmemory_policy.store(
            crate::evict::policy_code(config.maxmemory_policy),
            Ordering::Relaxed,
        );
        let positive = |name: &str, default: i64| u64::try_from(config.stored_int(name, default));
        self.maxmemory_samples.store(
            positive("maxmemory-samples", 5).unwrap_or(5),
            Ordering::Relaxed,
        );
        self.maxmemory_eviction_tenacity.store(
            positive("maxmemory-eviction-tenacity", 10).unwrap_or(10),
            Ordering::Relaxed,
        );
        self.maxmemory_clients.store(
            crate::evict::client_eviction_limit(
                &config.stored_text("maxmemory-clients"),
                config.maxmemory,
            ),
            Ordering::Relaxed,
        );
        self.replica_ignore_maxmemory.store(
            config.stored_text("replica-ignore-maxmemory") != b"no",
            Ordering::Relaxed,
        );
        forkless_storage::access::set_policy(
            crate::evict::policy_is_lfu(config.maxmemory_policy),
            u32::try_from(config.stored_int("lfu-log-factor", 10)).unwrap_or(10),
            u32::try_from(config.stored_int("lfu-decay-time", 1)).unwrap_or(1),
        );
        self.replica_read_only.store(
            config.stored_text("replica-read-only") != b"no",
            Ordering::Relaxed,
        );
        self.replica_serve_stale_data.store(
            config.stored_text("replica-serve-stale-data") != b"no",
            Ordering::Relaxed,
        );
        self.busy_reply_threshold
            .store(config.busy_reply_threshold, Ordering::Relaxed);
        self.script_memory_limit
            .store(config.script_memory_limit, Ordering::Relaxed);
        let stored =
            |name: &str, default: i64| u64::try_from(config.stored_int(name, default)).unwrap_or(0);
        self.min_replicas_to_write
            .store(stored("min-replicas-to-write", 0), Ordering::Relaxed);
        self.min_replicas_max_lag
            .store(stored("min-replicas-max-lag", 10), Ordering::Relaxed);
        self.rdb_key_save_delay.store(
            config.stored_int("rdb-key-save-delay", 0),
            Ordering::Relaxed,
        );
    }
}

/// Counters for INFO stats. Relaxed atomics: each is an independent tally.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) total_connections_received: AtomicU64,
    pub(crate) total_commands_processed: AtomicU64,
    pub(crate) rejected_connections: AtomicU64,
    pub(crate) keyspace_hits: AtomicU64,
    pub(crate) keyspace_misses: AtomicU64,
    pub(crate) net_input_bytes: AtomicU64,
    pub(crate) net_output_bytes: AtomicU64,
    pub(crate) total_error_replies: AtomicU64,
    pub(crate) unexpected_error_replies: AtomicU64,
    /// Keys removed by eviction (`evict.rs`).
    pub(crate) evicted_keys: AtomicU64,
    /// Clients closed by `maxmemory-clients` (`evict.rs`).
    pub(crate) evicted_clients: AtomicU64,
    /// INFO errorstats: error replies by code.
    pub(crate) errors: crate::errorstats::ErrorStats,
}

impl Stats {
    /// Counts one error reply (`total_error_replies` and its code); `reply` is its wire text.
    pub(crate) fn count_error(&self, reply: &[u8]) {
        self.errors.count(&self.total_error_replies, reply);
    }
}

/// Per-command counters for INFO commandstats, indexed like the command table.
#[derive(Debug, Default)]
pub(crate) struct CommandStats {
    pub(crate) calls: AtomicU64,
    pub(crate) usec: AtomicU64,
    pub(crate) rejected_calls: AtomicU64,
    pub(crate) failed_calls: AtomicU64,
}

/// What other connections may see of, or do to, one client (CLIENT LIST / KILL / INFO).
#[derive(Debug)]
pub(crate) struct ClientHandle {
    pub(crate) id: u64,
    pub(crate) addr: crate::listen::ClientAddr,
    pub(crate) local_addr: crate::listen::ClientAddr,
    pub(crate) created: Instant,
    /// Milliseconds since `created` of the last command.
    pub(crate) last_interaction_ms: AtomicU64,
    pub(crate) name: Mutex<Option<Bytes>>,
    pub(crate) db: AtomicUsize,
    pub(crate) resp: AtomicU8,
    /// The last command the client sent, for CLIENT LIST's `cmd=`: its index in the command
    /// table plus one in the low 16 bits and, for a container's subcommand, its index in
    /// `SUBCOMMANDS` plus one in the high 16 bits; 0 before the first command. Written with
    /// one relaxed store per command, so the hot path neither allocates nor locks for it.
    pub(crate) last_command: AtomicU32,
    pub(crate) killed: AtomicBool,
    pub(crate) kill: Notify,
    /// The socket's file descriptor, for CLIENT LIST's `fd=`.
    pub(crate) fd: i32,
    /// What CLIENT LIST shows of the client to others, and CLIENT UNBLOCK's request.
    pub(crate) info: cmd::client::ClientInfo,
    /// Bytes for the client outside its replies (MONITOR lines, tracking invalidations): the
    /// connection writes them after the replies it has.
    pub(crate) push: tokio::sync::mpsc::UnboundedSender<Bytes>,
    /// The number of the last effect the client's commands published and whose reply is not
    /// written yet; 0 for none. With `appendfsync always` the reply waits for it to be on disk.
    pub(crate) awaiting_seq: AtomicU64,
    /// The name of the user the client is authenticated as, for CLIENT LIST `user=` and for
    /// closing the connections of a deleted user.
    pub(crate) user: Mutex<Bytes>,
}

impl ClientHandle {
    /// Asks the connection to close; it does so before reading its next command.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.kill.notify_one();
    }

    /// Queues `bytes` (a MONITOR line, a tracking invalidation) to the connection. Those
    /// bytes wait in the connection's queue while its client does not read (the connection
    /// is then writing out its replies): together with its pending replies they may not pass
    /// `limit` ([`Tunables::push_limit`], 0 for none), past which the client is closed, as
    /// Redis closes a client whose output buffer passes its limit. Returns false when the
    /// bytes were not queued (the connection is closed or closing).
    pub(crate) fn send_push(&self, bytes: Bytes, limit: u64) -> bool {
        if self.killed.load(Ordering::Acquire) {
            return false;
        }
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let queued = self.info.pushes_queued.fetch_add(len, Ordering::Relaxed) + len;
        if limit != 0 && queued.saturating_add(self.info.pending_out_bytes()) > limit {
            self.info.pushes_queued.fetch_sub(len, Ordering::Relaxed);
            tracing::warn!(
                client = self.id,
                addr = %self.addr,
                "Client closed for overcoming of output buffer limits (queued pushes)"
            );
            self.kill();
            return false;
        }
        if self.push.send(bytes).is_err() {
            self.info.pushes_queued.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// The registry of connected clients. A std mutex: it is taken on connect, disconnect and
/// CLIENT LIST/KILL only, never per command, and never held across an await.
#[derive(Debug, Default)]
pub(crate) struct Clients {
    by_id: Mutex<BTreeMap<u64, Arc<ClientHandle>>>,
    next_id: AtomicU64,
    /// The connected clients' memory as each last accounted it (`client::account_memory`).
    memory: AtomicU64,
    /// What clients evicted by `maxmemory-clients` (or closed by [`Clients::close_hung_up`])
    /// held when evicted, until their connections have closed: Redis frees an evicted client
    /// at once, so key eviction leaves it out.
    dying: AtomicU64,
    /// The clients' sockets, watched for their peers' hang-ups (`crate::hangup`).
    hangups: crate::hangup::Hangups,
}

impl Clients {
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn insert(&self, handle: Arc<ClientHandle>) {
        lock(&self.by_id).insert(handle.id, handle);
    }

    pub(crate) fn remove(&self, id: u64) {
        if let Some(handle) = lock(&self.by_id).remove(&id) {
            let counted = handle.info.counted.swap(0, Ordering::Relaxed);
            self.add_memory(0, counted);
            let dying = handle.info.dying.swap(0, Ordering::Relaxed);
            if dying != 0 {
                let _ = self
                    .dying
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |total| {
                        Some(total.saturating_sub(dying))
                    });
            }
        }
    }

    /// Notes that the client of `handle`, holding `memory`, was evicted and will free it once
    /// its connection has closed.
    pub(crate) fn note_dying(&self, handle: &ClientHandle, memory: u64) {
        let before = handle.info.dying.swap(memory, Ordering::Relaxed);
        self.add_dying(memory, before);
    }

    fn add_dying(&self, now: u64, before: u64) {
        let _ = self
            .dying
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |total| {
                Some(total.saturating_sub(before).saturating_add(now))
            });
    }

    /// Registers client `id`'s socket, so the memory checks see its peer's hang-up before its
    /// connection reads it (`crate::hangup`).
    pub(crate) fn watch_hangup(&self, socket: impl std::os::fd::AsFd, id: u64) {
        self.hangups.watch(socket, id);
    }

    /// Closes the clients whose peers have closed their connections since the last call while
    /// their connections have not read the close yet (`crate::hangup` says which and when):
    /// each is asked to close ([`ClientHandle::kill`]) and what it holds is left out of key
    /// eviction until its connection has gone ([`Clients::note_dying`]), as Redis, which reads
    /// every close before its next command, has freed it by then. Replication links are left
    /// to their own tasks. Called by the memory checks that find the server over a limit;
    /// costs one `epoll_wait` that does not wait when no client hung up. Returns true if and
    /// only if it closed a client.
    pub(crate) fn close_hung_up(&self) -> bool {
        let mut closed = false;
        self.hangups.take(|id| {
            let Some(handle) = self.get(id) else {
                return true;
            };
            if handle.killed.load(Ordering::Acquire) || cmd::client::is_replication_link(&handle) {
                return true;
            }
            if !cmd::client::ran_everything_sent(&handle) {
                return false;
            }
            let (memory, _) = cmd::client::eviction_figures(&handle);
            tracing::debug!(
                client = id,
                addr = %handle.addr,
                memory,
                "Client closed connection (seen by the memory check)"
            );
            handle.kill();
            self.note_dying(&handle, memory);
            closed = true;
            true
        });
        closed
    }

    /// What evicted clients whose connections have not closed yet still hold.
    pub(crate) fn dying_bytes(&self) -> u64 {
        self.dying.load(Ordering::Relaxed)
    }

    /// Replaces `before` with `now` in the clients' memory total; returns the new total.
    pub(crate) fn add_memory(&self, now: u64, before: u64) -> u64 {
        let update = |total: u64| Some(total.saturating_sub(before).saturating_add(now));
        let previous = self
            .memory
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, update)
            .unwrap_or_else(|total| total);
        previous.saturating_sub(before).saturating_add(now)
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.by_id).len()
    }

    /// The client with this id, if connected.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<ClientHandle>> {
        lock(&self.by_id).get(&id).cloned()
    }

    pub(crate) fn all(&self) -> Vec<Arc<ClientHandle>> {
        lock(&self.by_id).values().cloned().collect()
    }

    /// Up to `count` clients with ids after `after`, in id order, wrapping around to the
    /// lowest ids: a cron visits a share of the clients per tick, as Redis's `clientsCron`.
    pub(crate) fn batch_after(&self, after: u64, count: usize) -> Vec<Arc<ClientHandle>> {
        let by_id = lock(&self.by_id);
        let mut batch: Vec<Arc<ClientHandle>> = by_id
            .range(after.saturating_add(1)..)
            .take(count)
            .map(|(_, handle)| Arc::clone(handle))
            .collect();
        if batch.len() < count {
            let more = count - batch.len();
            batch.extend(
                by_id
                    .range(..=after)
                    .take(more)
                    .map(|(_, handle)| Arc::clone(handle)),
            );
        }
        batch
    }
}

/// Everything the connections share.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) keyspace: Keyspace,
    /// The live configuration. A std RwLock: read by INFO/CONFIG GET and written by CONFIG SET,
    /// never on the per-command path (see [`Tunables`]) and never held across an await.
    pub(crate) config: RwLock<Config>,
    pub(crate) tunables: Tunables,
    pub(crate) stats: Stats,
    pub(crate) command_stats: Box<[CommandStats]>,
    pub(crate) clients: Clients,
    pub(crate) started: Instant,
    pub(crate) run_id: String,
    /// The address the listener actually bound (port 0 resolved).
    pub(crate) local_addr: Mutex<Option<SocketAddr>>,
    /// The accept loops (see `listen.rs` for the lock's use).
    pub(crate) listeners: Mutex<crate::listen::Listeners>,
    /// Notified once when the server should stop (SIGTERM, SIGINT, SHUTDOWN).
    pub(crate) shutdown: Notify,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) persistence: crate::persistence::Persistence,
    pub(crate) pubsub: crate::pubsub::Registry,
    pub(crate) blocking: crate::blocking::Registry,
    /// The stream of write effects that the AOF and replicas consume.
    pub(crate) effects: crate::effects::EffectStream,
    /// CLIENT PAUSE.
    pub(crate) pause: cmd::client::Pause,
    /// MONITOR's attached clients.
    pub(crate) monitors: cmd::monitor::Monitors,
    pub(crate) slowlog: cmd::slowlog::SlowLog,
    /// The latency monitor and the per-command latency histograms.
    pub(crate) latency: cmd::latency::Latency,
    /// CLIENT TRACKING's table.
    pub(crate) tracking: cmd::tracking::Tracking,
    /// False after DEBUG SET-ACTIVE-EXPIRE 0: the active expiry cycle does not run.
    pub(crate) active_expire: AtomicBool,
    /// True after DEBUG PAUSE-CRON 1: the server's cron leaves clients alone (no client
    /// eviction, no query buffer resizing), so only what commands and connections do counts.
    pub(crate) cron_paused: AtomicBool,
    /// Lua: the interpreters, the script cache, and the running script's state.
    pub(crate) scripting: crate::scripting::Scripting,
    pub(crate) aof: crate::aof::Aof,
    /// ACL users, the ACL log.
    pub(crate) acl: crate::acl::Acl,
    /// Replication's shared state: IDs, offsets, the stream and its backlog, the replicas.
    pub(crate) replication: crate::replication::Replication,
    /// MIGRATE's cached connections to its targets.
    pub(crate) migrate_sockets: Arc<cmd::migrate::SocketCache>,
    /// Set when the exit needs no final save: SHUTDOWN NOSAVE, or SHUTDOWN already saved.
    pub(crate) skip_final_save: AtomicBool,
    /// This server's own `Arc`, for work that outlives a command (a BGSAVE thread).
    self_ref: Weak<Server>,
}

impl Server {
    pub(crate) fn new(config: Config) -> Arc<Server> {
        Arc::new_cyclic(|self_ref| Server::build(config, self_ref.clone()))
    }

    fn build(config: Config, self_ref: Weak<Server>) -> Server {
        let tunables = Tunables::default();
        tunables.refresh(&config);
        let acl = crate::acl::Acl::default();
        acl.configure(&tunables, &config);
        let keyspace = Keyspace::new(config.databases);
        keyspace.set_retained_budget(config.snapshot_retained_budget());
        keyspace.set_key_events(Box::new(crate::notify::Sink(self_ref.clone())));
        keyspace.want_key_events(crate::notify::storage_mask(config.notify_keyspace_events));
        let command_stats = (0..cmd::table_len())
            .map(|_| CommandStats::default())
            .collect();
        Server {
            keyspace,
            config: RwLock::new(config),
            tunables,
            stats: Stats::default(),
            command_stats,
            clients: Clients::default(),
            started: Instant::now(),
            run_id: random_run_id(),
            local_addr: Mutex::new(None),
            listeners: Mutex::default(),
            shutdown: Notify::new(),
            shutting_down: AtomicBool::new(false),
            persistence: crate::persistence::Persistence::new(unix_ms() / 1000),
            pubsub: crate::pubsub::Registry::default(),
            blocking: crate::blocking::Registry::default(),
            effects: crate::effects::EffectStream::default(),
            pause: cmd::client::Pause::default(),
            monitors: cmd::monitor::Monitors::default(),
            slowlog: cmd::slowlog::SlowLog::default(),
            latency: cmd::latency::Latency::default(),
            tracking: cmd::tracking::Tracking::default(),
            active_expire: AtomicBool::new(true),
            cron_paused: AtomicBool::new(false),
            scripting: crate::scripting::Scripting::default(),
            aof: crate::aof::Aof::default(),
            acl,
            replication: crate::replication::Replication::default(),
            migrate_sockets: Arc::default(),
            skip_final_save: AtomicBool::new(false),
            self_ref,
        }
    }

    /// This server's `Arc`, or None while it is being dropped.
    pub(crate) fn arc(&self) -> Option<Arc<Server>> {
        self.self_ref.upgrade()
    }

    /// Reads the configuration. Poisoning is ignored: CONFIG SET validates before it writes.
    pub(crate) fn config(&self) -> std::sync::RwLockReadGuard<'_, Config> {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn config_mut(&self) -> std::sync::RwLockWriteGuard<'_, Config> {
        self.config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Database `idx`; connections only ever hold indexes SELECT validated, and database 0
    /// always exists.
    pub(crate) fn db(&self, idx: usize) -> &Db {
        match self.keyspace.db(idx) {
            Some(db) => db,
            None => &self.keyspace.dbs()[0],
        }
    }

    /// Starts a clean shutdown: the accept loop stops and the process exits.
    pub(crate) fn request_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.shutdown.notify_waiters();
        self.shutdown.notify_one();
    }
}

fn random_run_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..40)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}
