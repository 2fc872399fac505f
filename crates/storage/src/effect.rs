//! Effects: the sequence that orders every change to the keyspace, so that a log of them (the
//! append-only file, a replica's stream) replays the changes in the order the shards applied
//! them.
//!
//! # Units and their sequence numbers
//! A *unit* is what one command (or one transaction, or one visit of the active expiry cycle to
//! a shard) changed, applied atomically: every key it touched was locked for the whole unit, or
//! the command gate kept everything else out (a transaction). Each unit gets one [`Seq`] from the
//! keyspace's `SeqClock`, taken at the unit's first change **while the writer holds the shard
//! lock of what it changes** (in `WriteGuard` / `EntryMut`, where `dirty` is counted, and in the
//! active expiry cycle). Hence:
//! - Two units that touch the same key hold that key's shard lock one after the other, and the
//!   later one takes the larger number: ordering units by `Seq` never reorders two writes to
//!   one key.
//! - The snapshot cut (`Keyspace::begin_snapshot`) holds every shard lock while it reads the
//!   clock ([`crate::SnapshotCut::seq`]): a unit whose number is below the cut's applied wholly
//!   before the cut, and one at or above it wholly after. No unit is on both sides (a
//!   transaction cannot straddle the cut either: the cut is taken by a gate holder). A freeze
//!   (fork mode) records the same ([`crate::FrozenKeyspace::seq`]).
//!
//! The lock release/acquire pairs give the order, so the clock's own operations are relaxed.
//!
//! # Cost when nobody listens
//! The clock is consulted only while at least one consumer is attached
//! ([`crate::Keyspace::attach_effect_consumer`]): every change point first reads the consumer
//! count with a relaxed load, a shared cache line no writer stores to. With no consumer no
//! number is taken and nothing is recorded. The counter itself sits on its own cache line.
//!
//! # Density
//! The clock only advances when a unit takes a number, and every number taken is handed over
//! exactly once (below), so the numbers handed over are dense from [`Seq::FIRST`]: a consumer
//! that reorders them (the server's effect stream) knows which number comes next.
//!
//! # The per-thread recorder
//! Storage does not know the command that changes it; the server does. What storage knows (the
//! unit's number, the keys it removed because their TTL had passed, whether the command changed
//! anything itself) is noted in a recorder private to the writing thread, and the server takes it
//! after the command ([`take_step`], [`close_unit`]): commands run to completion on one thread,
//! so the recorder holds exactly the running command's unit. The active expiry cycle closes its
//! own units (one per shard visit) into the recorder's finished list, which the expiry thread
//! drains with [`take_finished`]. A thread that changes the keyspace while a consumer is attached
//! must drain its recorder, or the number it took is never handed over and a reordering consumer
//! waits for it forever.

use std::cell::{Cell, RefCell};

use bytes::Bytes;

use crate::sync::{AtomicU64, Ordering};

/// A unit's place in the order of changes. Newtype so it is never confused with an epoch or a
/// count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(u64);

impl Seq {
    /// The first number a keyspace hands out.
    pub const FIRST: Seq = Seq(1);

    /// The number, for logs and INFO.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The number after this one.
    #[must_use]
    pub fn next(self) -> Seq {
        Seq(self.0.saturating_add(1))
    }
}

/// The counter on a cache line of its own: while consumers are attached every write stores to
/// it, and it must not slow down the reads of the keyspace's hasher and epoch clock beside it.
#[derive(Debug)]
#[repr(align(128))]
struct NextSeq(AtomicU64);

/// The sequence clock shared by every database of a keyspace.
#[derive(Debug)]
pub(crate) struct SeqClock {
    /// Attached consumers. Writers read it (relaxed) at every change; only attach and detach
    /// store to it.
    consumers: AtomicU64,
    next: NextSeq,
}

impl Default for SeqClock {
    fn default() -> Self {
        SeqClock {
            consumers: AtomicU64::new(0),
            next: NextSeq(AtomicU64::new(Seq::FIRST.0)),
        }
    }
}

impl SeqClock {
    /// Returns true if and only if a consumer is attached, so changes must take numbers.
    #[inline]
    fn enabled(&self) -> bool {
        self.consumers.load(Ordering::Relaxed) != 0
    }

    /// Takes the next number. Called under the shard lock of what the unit changes.
    fn take(&self) -> Seq {
        Seq(self.next.0.fetch_add(1, Ordering::Relaxed))
    }

    /// The number the next unit will take. The cut calls this while holding every shard lock,
    /// so every unit below it is wholly before the cut.
    pub(crate) fn peek(&self) -> Seq {
        Seq(self.next.0.load(Ordering::Relaxed))
    }

    pub(crate) fn attach(&self) {
        self.consumers.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn detach(&self) {
        let previous = self.consumers.fetch_sub(1, Ordering::Relaxed);
        debug_assert!(previous > 0, "effect consumer detached twice");
    }
}

/// What a unit recorded since the server last took it: see [`take_step`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Keys removed because their TTL had passed, as (database, key), in the order removed.
    /// Each is a `DEL` that comes before the command's own effect: the command saw them absent.
    pub expired: Vec<(usize, Bytes)>,
    /// Returns true if and only if the command itself changed the keyspace.
    pub changed: bool,
}

/// A unit the active expiry cycle closed: the keys it removed from one shard.
#[derive(Debug, PartialEq, Eq)]
pub struct ExpiredUnit {
    /// The unit's number.
    pub seq: Seq,
    /// The keys removed, as (database, key).
    pub keys: Vec<(usize, Bytes)>,
}

#[derive(Debug)]
struct Recorder {
    step: Step,
    finished: Vec<ExpiredUnit>,
}

impl Recorder {
    const fn new() -> Recorder {
        Recorder {
            step: Step {
                expired: Vec::new(),
                changed: false,
            },
            finished: Vec::new(),
        }
    }
}

// The open unit's number lives apart from the rest of the recorder, in a `Cell` of a `Copy`
// type: the server asks for it after every command, and such a thread-local costs one load.
#[cfg(not(forkless_loom))]
std::thread_local! {
    static SEQ: Cell<Option<Seq>> = const { Cell::new(None) };
    static RECORDER: RefCell<Recorder> = const { RefCell::new(Recorder::new()) };
}
#[cfg(forkless_loom)]
loom::thread_local! {
    static SEQ: Cell<Option<Seq>> = Cell::new(None);
    static RECORDER: RefCell<Recorder> = RefCell::new(Recorder::new());
}

/// Opens this thread's unit if it is not open: takes its number.
fn open(clock: &SeqClock) {
    SEQ.with(|seq| {
        if seq.get().is_none() {
            seq.set(Some(clock.take()));
        }
    });
}

/// Notes a change by the running command. Called under the shard lock, where `dirty` is
/// counted. Inlined to one load and a branch when no consumer is attached.
#[inline]
pub(crate) fn changed(clock: &SeqClock) {
    if clock.enabled() {
        record_change(clock);
    }
}

#[inline(never)]
fn record_change(clock: &SeqClock) {
    open(clock);
    RECORDER.with(|recorder| recorder.borrow_mut().step.changed = true);
}

/// Notes that `key` of database `db` was removed because its TTL had passed. Called under the
/// shard lock.
#[inline]
pub(crate) fn expired(clock: &SeqClock, db: usize, key: &[u8]) {
    if clock.enabled() {
        record_expired(clock, db, key);
    }
}

#[inline(never)]
fn record_expired(clock: &SeqClock, db: usize, key: &[u8]) {
    open(clock);
    RECORDER.with(|recorder| {
        recorder
            .borrow_mut()
            .step
            .expired
            .push((db, Bytes::copy_from_slice(key)));
    });
}

/// Ends the unit of an active expiry visit: moves what it recorded to the finished list. Called
/// under the shard lock, so the next visit's keys make a unit of their own.
pub(crate) fn finish_expiry_unit() {
    let Some(seq) = SEQ.with(Cell::take) else {
        return;
    };
    RECORDER.with(|recorder| {
        let mut recorder = recorder.borrow_mut();
        let keys = std::mem::take(&mut recorder.step.expired);
        debug_assert!(
            !recorder.step.changed,
            "an expiry unit changes nothing else"
        );
        recorder.finished.push(ExpiredUnit { seq, keys });
    });
}

/// Returns true if and only if this thread's current unit has taken a number: its effect will be
/// handed over, so a command whose effect must be rewritten should say how. Inlined: the server
/// asks after every command.
#[inline]
pub fn unit_open() -> bool {
    SEQ.with(|seq| seq.get().is_some())
}

/// Takes what this thread's unit recorded since the last call (the keys it expired, whether the
/// command changed anything), leaving the unit open: a transaction takes one step per command
/// and closes the unit once, at EXEC's end.
pub fn take_step() -> Step {
    RECORDER.with(|recorder| std::mem::take(&mut recorder.borrow_mut().step))
}

/// Closes this thread's unit and returns its number, or None if it took none. Take its last
/// step first.
pub fn close_unit() -> Option<Seq> {
    debug_assert!(
        RECORDER.with(|recorder| recorder.borrow().step == Step::default()),
        "a unit closed with a step not taken"
    );
    SEQ.with(Cell::take)
}

/// Takes the units the active expiry cycle closed on this thread.
pub fn take_finished() -> Vec<ExpiredUnit> {
    RECORDER.with(|recorder| std::mem::take(&mut recorder.borrow_mut().finished))
}

impl crate::Keyspace {
    /// Attaches an effect consumer: from now on every change takes a number. A consumer that
    /// needs a starting point takes a snapshot cut after attaching and skips the units numbered
    /// below [`crate::SnapshotCut::seq`]; every unit from there on is handed over after this
    /// call.
    pub fn attach_effect_consumer(&self) {
        self.shared.effects.attach();
    }

    /// Detaches a consumer attached with [`crate::Keyspace::attach_effect_consumer`]. When the
    /// last one goes, changes stop taking numbers (a command already numbered finishes its unit).
    pub fn detach_effect_consumer(&self) {
        self.shared.effects.detach();
    }

    /// The number the next unit will take.
    pub fn next_seq(&self) -> Seq {
        self.shared.effects.peek()
    }
}

#[cfg(all(test, not(forkless_loom)))]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_taken_only_while_a_consumer_is_attached() {
        let clock = SeqClock::default();
        changed(&clock);
        assert!(!unit_open(), "no consumer: nothing recorded");
        clock.attach();
        expired(&clock, 3, b"gone");
        changed(&clock);
        changed(&clock);
        assert!(unit_open());
        let step = take_step();
        assert_eq!(step.expired, vec![(3, Bytes::from_static(b"gone"))]);
        assert!(step.changed);
        assert_eq!(close_unit(), Some(Seq::FIRST), "one number per unit");
        changed(&clock);
        let _ = take_step();
        assert_eq!(close_unit(), Some(Seq::FIRST.next()));
        assert_eq!(clock.peek(), Seq(3));
        clock.detach();
        changed(&clock);
        assert_eq!(close_unit(), None);
    }

    /// A guard's changes make one unit, a key it finds expired is recorded as such, and each
    /// active expiry visit to a shard closes a unit of its own.
    #[test]
    fn guards_and_the_expiry_cycle_record_units() {
        use crate::{Keyspace, Value};
        let keyspace = Keyspace::new(2);
        keyspace.attach_effect_consumer();
        let db = keyspace.db(1).expect("db 1");
        {
            let mut guard = db.write(&[b"a", b"b"], 10);
            guard.set(b"a", Value::string(b"1"), Some(20));
            guard.set(b"b", Value::string(b"2"), Some(20));
        }
        assert_eq!(
            take_step(),
            Step {
                expired: Vec::new(),
                changed: true
            }
        );
        assert_eq!(close_unit(), Some(Seq::FIRST));
        // At 30 both have expired: a write guard that touches `a` removes it, changing nothing
        // else.
        assert!(db.write(&[b"a"], 30).get(b"a").is_none());
        let step = take_step();
        assert_eq!(step.expired, vec![(1, Bytes::from_static(b"a"))]);
        assert!(!step.changed);
        assert_eq!(close_unit(), Some(Seq(2)));
        // The active cycle removes `b` in a unit of its own.
        let far = std::time::Instant::now() + std::time::Duration::from_secs(60);
        assert_eq!(keyspace.active_expire_cycle(30, far).removed, 1);
        assert_eq!(
            take_finished(),
            vec![ExpiredUnit {
                seq: Seq(3),
                keys: vec![(1, Bytes::from_static(b"b"))]
            }]
        );
        assert!(!unit_open());
        assert_eq!(keyspace.next_seq(), Seq(4));
        // A cut records where it splits the numbers.
        let cut = keyspace.begin_snapshot(30).expect("no snapshot running");
        assert_eq!(cut.seq(), Seq(4));
        keyspace.end_snapshot(cut);
        // So does a freeze (fork mode).
        assert_eq!(keyspace.freeze_all().seq(), Seq(4));
    }
}
