//! The effect stream: every change to the keyspace as a value, in the order the shards applied
//! it, for the consumers that log it (the append-only file) or propagate it (replicas).
//!
//! ```text
//!  WriteGuard / EntryMut / active expiry      cmd::dispatch, after the handler      EffectStream
//!  (storage: takes the unit's Seq under  ──►  after_command: DELs of expired keys ──► reorder by
//!   the shard lock, notes expired keys)       + argv (or the handler's rewrite)       Seq ──► each
//!                                             EXEC: one unit, closed at its end       EffectConsumer
//! ```
//!
//! An [`Effect`] is one unit (`forkless_storage::effect`): its number, and the commands that
//! replay it, each with the database it applies to. A command's own effect is its argv, unless
//! its handler set a deterministic rewrite with [`crate::cmd::Ctx::rewrite_effect`]: relative
//! expiries become absolute (`SET ... PXAT`, `PEXPIREAT`), INCRBYFLOAT becomes `SET ... KEEPTTL`,
//! SPOP becomes `SREM`, blocking pops their non-blocking form. Keys the command found expired
//! come first as `DEL`s; a transaction is one effect whose commands a consumer wraps in
//! MULTI/EXEC; the active expiry cycle's removals are effects of `DEL`s.
//!
//! Replaying the effects numbered below a snapshot cut's `seq()` into an empty keyspace, in
//! number order and with nothing expiring on its own (a replay client runs at time 0, see
//! `Client::replay`), gives the dataset at the cut; replaying them all gives the live one.
//!
//! Numbers are dense while consumers are attached, and the stream hands effects to consumers in
//! number order: [`EffectStream::publish`] holds back an effect until every lower number has
//! arrived. Consumers are called with the stream's lock held, one effect at a time: they must be
//! quick (append to a buffer) and never publish. A command that is a unit by itself (nearly
//! every write) goes through [`EffectStream::publish_command`] instead: its argv is lent to the
//! consumers, and copied into an [`Effect`] only if it must be held back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use forkless_storage::Keyspace;
use forkless_storage::effect::{self, Seq};

use crate::cmd::Client;
use crate::server::{Server, lock};

/// One command of an effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Op {
    /// The database the command applies to.
    pub(crate) db: usize,
    pub(crate) argv: Vec<Bytes>,
}

/// One unit of change: applied atomically, numbered once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Effect {
    pub(crate) seq: Seq,
    /// Returns true if and only if the effect is a transaction (EXEC): a log wraps its commands
    /// in MULTI ... EXEC so that replaying it is all or nothing.
    pub(crate) transaction: bool,
    pub(crate) ops: Vec<Op>,
}

impl Effect {
    /// The effect of one command outside a transaction: `argv` in database `db`.
    pub(crate) fn command(seq: Seq, db: usize, argv: &[Bytes]) -> Effect {
        Effect {
            seq,
            transaction: false,
            ops: vec![Op {
                db,
                argv: argv.to_vec(),
            }],
        }
    }
}

/// What consumes the stream: the append-only file, a replica's link.
pub(crate) trait EffectConsumer: Send + Sync {
    /// Takes the next effect, in number order. Called with the stream's lock held.
    fn consume(&self, effect: &Effect);

    /// Takes the next effect when it is one command, `argv` in database `db`, outside a
    /// transaction, borrowed from the connection that ran it
    /// ([`EffectStream::publish_command`]). Called with the stream's lock held. The default
    /// builds the owned [`Effect`]; a consumer that only renders the command overrides it and
    /// copies nothing.
    fn consume_command(&self, seq: Seq, db: usize, argv: &[Bytes]) {
        self.consume(&Effect::command(seq, db, argv));
    }
}

/// Identifies an attached consumer, to detach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConsumerId(u64);

/// The server's one effect stream: reorders effects by number and hands them to its consumers.
#[derive(Default)]
pub(crate) struct EffectStream {
    /// A std mutex: publishing is a map insertion and the consumers' quick appends, never an
    /// await. Only taken by commands that changed something while a consumer is attached (or
    /// whose number was taken just before the last one detached).
    state: Mutex<StreamState>,
}

impl std::fmt::Debug for EffectStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("EffectStream")
            .field("next", &state.next)
            .field("held_back", &state.held_back.len())
            .field("consumers", &state.consumers.len())
            .finish()
    }
}

struct StreamState {
    /// The number of the next effect to hand over.
    next: Seq,
    /// Effects that arrived before a lower number did.
    held_back: BTreeMap<Seq, Effect>,
    consumers: Vec<(ConsumerId, Arc<dyn EffectConsumer>)>,
    next_id: u64,
}

impl Default for StreamState {
    fn default() -> Self {
        StreamState {
            next: Seq::FIRST,
            held_back: BTreeMap::new(),
            consumers: Vec::new(),
            next_id: 0,
        }
    }
}

impl StreamState {
    /// Hands over the effects held back from `next` on, up to the first missing number.
    fn hand_over_held_back(&mut self) {
        while let Some(held) = self.held_back.remove(&self.next) {
            for (_, consumer) in &self.consumers {
                consumer.consume(&held);
            }
            self.next = held.seq.next();
        }
    }
}

impl EffectStream {
    /// Attaches `consumer`: it gets every effect handed over from now on, which includes every
    /// effect numbered at or above the `seq()` of a snapshot cut taken after this call (and
    /// maybe some below it, which a consumer starting from that cut skips).
    pub(crate) fn attach(
        &self,
        keyspace: &Keyspace,
        consumer: Arc<dyn EffectConsumer>,
    ) -> ConsumerId {
        let mut state = lock(&self.state);
        let id = ConsumerId(state.next_id);
        state.next_id += 1;
        state.consumers.push((id, consumer));
        // Enabled after the consumer is in the list, so it misses no effect numbered after this.
        keyspace.attach_effect_consumer();
        id
    }

    /// Detaches a consumer. Returns true if and only if it was attached.
    pub(crate) fn detach(&self, keyspace: &Keyspace, id: ConsumerId) -> bool {
        let mut state = lock(&self.state);
        let before = state.consumers.len();
        state.consumers.retain(|(held, _)| *held != id);
        let found = state.consumers.len() < before;
        if found {
            keyspace.detach_effect_consumer();
        }
        found
    }

    /// Takes an effect from any thread and hands over, in number order, every effect that is
    /// now complete up to the first missing number. Returns the effect if it was handed over
    /// at once (it is the caller's again: dropped or reused outside the lock), None if it
    /// waits for a lower number.
    pub(crate) fn publish(&self, effect: Effect) -> Option<Effect> {
        let mut state = lock(&self.state);
        debug_assert!(
            effect.seq >= state.next,
            "effect {:?} published twice",
            effect.seq
        );
        if effect.seq != state.next {
            state.held_back.insert(effect.seq, effect);
            return None;
        }
        for (_, consumer) in &state.consumers {
            consumer.consume(&effect);
        }
        state.next = effect.seq.next();
        state.hand_over_held_back();
        Some(effect)
    }

    /// [`EffectStream::publish`] for the effect of one command outside a transaction, `argv`
    /// in database `db`, borrowed: when its number is the next one (nearly always: it was
    /// taken moments ago), the consumers take it by reference
    /// ([`EffectConsumer::consume_command`]) and nothing is copied; otherwise it is copied and
    /// held back as any effect.
    pub(crate) fn publish_command(&self, seq: Seq, db: usize, argv: &[Bytes]) {
        let mut state = lock(&self.state);
        debug_assert!(seq >= state.next, "effect {seq:?} published twice");
        if seq != state.next {
            state.held_back.insert(seq, Effect::command(seq, db, argv));
            return;
        }
        for (_, consumer) in &state.consumers {
            consumer.consume_command(seq, db, argv);
        }
        state.next = seq.next();
        state.hand_over_held_back();
    }

    /// The number of the next effect to hand over: every lower one has been handed over.
    pub(crate) fn next(&self) -> Seq {
        lock(&self.state).next
    }
}

// ---------------------------------------------------------------------------------------------
// Building effects on the command path.

std::thread_local! {
    /// The commands of the unit the running thread has open: a command's until dispatch closes
    /// it, a transaction's until EXEC does.
    static OPEN: std::cell::RefCell<Vec<Op>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The number of the last unit a command on this thread published, for the connection to
    /// wait on with `appendfsync always` (0: none since the last take).
    static LAST_PUBLISHED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The number of the last effect a command published on this thread since the last call, if
/// any. `conn` calls it right after running a command, with no await in between.
pub(crate) fn take_last_published() -> Option<u64> {
    let seq = LAST_PUBLISHED.with(|last| last.replace(0));
    (seq != 0).then_some(seq)
}

/// An argv from its words.
pub(crate) fn argv(words: &[&[u8]]) -> Vec<Bytes> {
    words
        .iter()
        .map(|word| Bytes::copy_from_slice(word))
        .collect()
}

/// `DEL key` in database `db`: the effect of a key that expired.
fn del(db: usize, key: Bytes) -> Op {
    Op {
        db,
        argv: vec![Bytes::from_static(b"DEL"), key],
    }
}

/// Called by dispatch after every handler: adds what the command did to the thread's open unit
/// (the DELs of the keys it found expired, then its own effect if it changed anything: `rewrite`
/// or `argv` verbatim, applied to database `db`), and unless a transaction is running, closes
/// the unit and publishes it. Costs one thread-local read when the command took no number.
pub(crate) fn after_command(
    server: &Server,
    client: &Client,
    db: usize,
    argv: &[Bytes],
    rewrite: Option<Vec<Vec<Bytes>>>,
) {
    if !effect::unit_open() {
        return;
    }
    let step = effect::take_step();
    if step.changed
        && step.expired.is_empty()
        && rewrite.is_none()
        && !client.in_exec
        && OPEN.with(|open| open.borrow().is_empty())
    {
        // The common case, a command that is its own unit: published borrowed.
        if let Some(seq) = effect::close_unit() {
            LAST_PUBLISHED.with(|last| last.set(seq.get()));
            server.effects.publish_command(seq, db, argv);
        }
        return;
    }
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        open.extend(step.expired.into_iter().map(|(db, key)| del(db, key)));
        if step.changed {
            match rewrite {
                Some(argvs) => open.extend(argvs.into_iter().map(|argv| Op { db, argv })),
                None => open.push(Op {
                    db,
                    argv: argv.to_vec(),
                }),
            }
        }
    });
    if !client.in_exec {
        close_and_publish(server, false);
    }
}

/// After an eviction (`evict.rs`, before a command runs, outside any unit): publishes the
/// evicted key's DEL, with the DELs of keys found expired on the way, as a unit of its own.
pub(crate) fn after_eviction(server: &Server, db: usize, key: &[u8]) {
    if !effect::unit_open() {
        return;
    }
    let step = effect::take_step();
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        open.extend(step.expired.into_iter().map(|(db, key)| del(db, key)));
        if step.changed {
            open.push(del(db, Bytes::copy_from_slice(key)));
        }
    });
    close_and_publish(server, false);
}

/// After a writable replica removed a key its own client wrote with a TTL
/// (`replication/replica/local_expire.rs`, outside any unit): publishes its DEL as a unit.
pub(crate) fn after_replica_expiry(server: &Server) {
    if !effect::unit_open() {
        return;
    }
    let step = effect::take_step();
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        open.extend(step.expired.into_iter().map(|(db, key)| del(db, key)));
    });
    close_and_publish(server, false);
}

/// EXEC, after running its queue: publishes the transaction's commands as one unit.
pub(crate) fn end_transaction(server: &Server) {
    close_and_publish(server, true);
}

fn close_and_publish(server: &Server, transaction: bool) {
    let Some(seq) = effect::close_unit() else {
        debug_assert!(
            OPEN.with(|open| open.borrow().is_empty()),
            "ops without a unit"
        );
        return;
    };
    let ops = OPEN.with(|open| std::mem::take(&mut *open.borrow_mut()));
    LAST_PUBLISHED.with(|last| last.set(seq.get()));
    let handed_over = server.effects.publish(Effect {
        seq,
        transaction,
        ops,
    });
    // The unit's vector of commands serves the next unit (one allocation fewer per unit),
    // unless it grew big.
    if let Some(effect) = handed_over {
        let mut ops = effect.ops;
        if ops.capacity() <= REUSE_OPS_AT_MOST {
            ops.clear();
            OPEN.with(|open| *open.borrow_mut() = ops);
        }
    }
}

/// A unit's vector of commands is kept for the next unit up to this many commands.
const REUSE_OPS_AT_MOST: usize = 64;

/// One active expiry cycle: removes expired keys and publishes their DELs, one effect per shard
/// visit.
pub(crate) fn active_expire_cycle(
    server: &Server,
    now_ms: u64,
    deadline: std::time::Instant,
    expired: Option<&mut Vec<(usize, forkless_storage::CompactBytes)>>,
) -> forkless_storage::ExpireCycle {
    let cycle = server
        .keyspace
        .active_expire_cycle_collecting(now_ms, deadline, expired);
    for unit in effect::take_finished() {
        server.effects.publish(Effect {
            seq: unit.seq,
            transaction: false,
            ops: unit
                .keys
                .into_iter()
                .map(|(db, key)| del(db, key))
                .collect(),
        });
    }
    cycle
}

// ---------------------------------------------------------------------------------------------
// Rendering effects as a command stream.

/// Turns effects into the commands a log or a replica link carries, tracking the database the
/// stream has selected: a `SELECT` goes out only when an effect's database differs.
#[derive(Debug, Default)]
pub(crate) struct Renderer {
    selected: Option<usize>,
}

impl Renderer {
    /// The database the stream has selected, None before its first SELECT.
    pub(crate) fn selected(&self) -> Option<usize> {
        self.selected
    }

    /// Appends the commands that replay `effect` to `out`.
    pub(crate) fn render(&mut self, effect: &Effect, out: &mut Vec<Vec<Bytes>>) {
        self.render_each(effect, |argv| out.push(argv.to_vec()));
    }

    /// Calls `command` with each command that replays one command outside a transaction,
    /// `argv` in database `db` (a SELECT first if needed), copying nothing.
    pub(crate) fn render_command(
        &mut self,
        db: usize,
        argv: &[Bytes],
        mut command: impl FnMut(&[Bytes]),
    ) {
        self.select(db, &mut command);
        command(argv);
    }

    /// Calls `command` with each command that replays `effect`, in order, copying nothing.
    pub(crate) fn render_each(&mut self, effect: &Effect, mut command: impl FnMut(&[Bytes])) {
        let wrap = effect.transaction && effect.ops.len() > 1;
        if wrap {
            // MULTI goes out in the first command's database, as Redis 7.0 propagates it:
            // the SELECT, when one is needed, comes before it.
            if let Some(first) = effect.ops.first() {
                self.select(first.db, &mut command);
            }
            command(&[Bytes::from_static(b"MULTI")]);
        }
        for op in &effect.ops {
            self.select(op.db, &mut command);
            command(&op.argv);
        }
        if wrap {
            command(&[Bytes::from_static(b"EXEC")]);
        }
    }

    /// Sends a SELECT of `db` unless the stream has it selected.
    fn select(&mut self, db: usize, command: &mut impl FnMut(&[Bytes])) {
        if self.selected != Some(db) {
            command(&[Bytes::from_static(b"SELECT"), Bytes::from(db.to_string())]);
            self.selected = Some(db);
        }
    }
}

#[cfg(test)]
mod tests;
