//! Loom models of the snapshot protocol, run with
//! `RUSTFLAGS="--cfg forkless_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p forkless-storage --test loom --release`.
//! Under that cfg the keyspace uses loom's locks and atomics and has 2 shards per database, so
//! loom can explore every interleaving of:
//! - the epoch advance (the cut) racing a multi-key writer;
//! - the on-write retain hook racing the traversal taking shard images;
//! - the early taking of retained versions (the serializers' sweep) racing the retain hook;
//! - the stepwise traversal (one bucket per step) racing writers that overwrite and insert;
//! - the release of retained versions (image drop, end_snapshot) racing writers;
//! - a writer waiting for room in the retained budget racing the sweep and the end of the
//!   snapshot, which must let it go (it waits holding no lock);
//! - writers taking effect numbers under their shard locks racing the cut, which must split the
//!   numbers exactly where it splits the writes.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]
#![cfg(forkless_loom)]

use std::collections::BTreeMap;

use forkless_storage::effect::{self, Seq};
use forkless_storage::{Keyspace, N_SHARDS, SnapshotCut, Value};
use loom::sync::Arc;
use loom::thread;

fn set_all(keyspace: &Keyspace, keys: &[&[u8]], value: &[u8]) {
    let db = keyspace.db(0).unwrap();
    let mut guard = db.write(keys, 0);
    for key in keys {
        guard.set(key, Value::string(value), None);
    }
}

fn image_of(keyspace: &Keyspace, cut: &SnapshotCut) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut saved = BTreeMap::new();
    for shard in 0..N_SHARDS {
        let image = keyspace.take_shard_image(cut, 0, shard);
        for (key, entry) in image.entries() {
            let Value::String(bytes) = entry.value() else {
                panic!("only strings are written here")
            };
            saved.insert(key.to_vec(), bytes.to_vec());
        }
    }
    saved
}

/// Starts a writer thread running `write` with its own handle on the keyspace and copies of the
/// two keys.
fn spawn_writer(
    keyspace: &Arc<Keyspace>,
    a: &[u8],
    b: &[u8],
    write: fn(Arc<Keyspace>, Vec<u8>, Vec<u8>),
) -> thread::JoinHandle<()> {
    let (keyspace, a, b) = (Arc::clone(keyspace), a.to_vec(), b.to_vec());
    thread::spawn(move || write(keyspace, a, b))
}

/// Records a saved string, failing if its key was saved before.
fn save_once(saved: &mut BTreeMap<Vec<u8>, Vec<u8>>, key: &[u8], value: &Value) {
    let Value::String(bytes) = value else {
        panic!("only strings are written here")
    };
    assert!(
        saved.insert(key.to_vec(), bytes.to_vec()).is_none(),
        "{key:?} saved twice"
    );
}

/// Two keys in different shards, so a writer of both holds two shard locks.
fn two_keys_in_two_shards(keyspace: &Keyspace) -> (Vec<u8>, Vec<u8>) {
    let db = keyspace.db(0).unwrap();
    let first = b"key:0".to_vec();
    let other = (1..64)
        .map(|i| format!("key:{i}").into_bytes())
        .find(|key| db.shard_of_key(key) != db.shard_of_key(&first))
        .unwrap();
    (first, other)
}

#[test]
fn cut_racing_a_multi_key_writer_never_splits_it() {
    loom::model(|| {
        let keyspace = Arc::new(Keyspace::new(1));
        let (a, b) = two_keys_in_two_shards(&keyspace);
        set_all(&keyspace, &[&a, &b], b"old");
        let writer = spawn_writer(&keyspace, &a, &b, |keyspace, a, b| {
            set_all(&keyspace, &[&a, &b], b"new");
        });
        let cut = keyspace.begin_snapshot(0).unwrap();
        let saved = image_of(&keyspace, &cut);
        writer.join().unwrap();
        keyspace.end_snapshot(cut);
        let values: Vec<&Vec<u8>> = saved.values().collect();
        assert_eq!(values.len(), 2, "both keys are in the snapshot");
        assert_eq!(
            values[0], values[1],
            "a multi-key write was split by the cut: {saved:?}"
        );
        assert_eq!(keyspace.retained().bytes, 0, "retained bytes leaked");
    });
}

#[test]
fn retain_hook_racing_the_traversal_keeps_the_pre_cut_value() {
    loom::model(|| {
        let keyspace = Arc::new(Keyspace::new(1));
        let (a, b) = two_keys_in_two_shards(&keyspace);
        set_all(&keyspace, &[&a], b"before");
        set_all(&keyspace, &[&b], b"before");
        let cut = keyspace.begin_snapshot(0).unwrap();
        // After the cut: overwrite one key, delete the other, racing the traversal.
        let writer = spawn_writer(&keyspace, &a, &b, |keyspace, a, b| {
            set_all(&keyspace, &[&a], b"after");
            keyspace.db(0).unwrap().write(&[&b], 0).remove(&b);
        });
        let saved = image_of(&keyspace, &cut);
        writer.join().unwrap();
        keyspace.end_snapshot(cut);
        assert_eq!(saved.get(&a).map(Vec::as_slice), Some(&b"before"[..]));
        assert_eq!(saved.get(&b).map(Vec::as_slice), Some(&b"before"[..]));
        assert_eq!(keyspace.retained().versions, 0);
    });
}

#[test]
fn release_racing_writers_leaves_nothing_retained() {
    loom::model(|| {
        let keyspace = Arc::new(Keyspace::new(1));
        let (a, b) = two_keys_in_two_shards(&keyspace);
        set_all(&keyspace, &[&a, &b], b"v0");
        let cut = keyspace.begin_snapshot(0).unwrap();
        let writer = spawn_writer(&keyspace, &a, &b, |keyspace, a, b| {
            set_all(&keyspace, &[&a, &b], b"v1");
            set_all(&keyspace, &[&a], b"v2");
        });
        // The snapshot takes one shard and abandons the rest (an aborted save).
        drop(keyspace.take_shard_image(&cut, 0, 0));
        keyspace.end_snapshot(cut);
        writer.join().unwrap();
        let retained = keyspace.retained();
        assert_eq!((retained.versions, retained.bytes), (0, 0));
        assert!(
            keyspace.begin_snapshot(0).is_some(),
            "a new snapshot can start"
        );
    });
}

#[test]
fn early_take_of_retained_versions_racing_writers_saves_each_key_once() {
    loom::model(|| {
        let keyspace = Arc::new(Keyspace::new(1));
        let (a, b) = two_keys_in_two_shards(&keyspace);
        set_all(&keyspace, &[&a, &b], b"before");
        let cut = keyspace.begin_snapshot(0).unwrap();
        let writer = spawn_writer(&keyspace, &a, &b, |keyspace, a, b| {
            set_all(&keyspace, &[&a, &b], b"after");
            set_all(&keyspace, &[&b], b"later");
        });
        // The serializer: sweep every shard's retained versions, then take the images.
        let mut saved: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut keep = |image: forkless_storage::ShardImage| {
            for (key, entry) in image.entries() {
                save_once(&mut saved, key, entry.value());
            }
        };
        for shard in 0..N_SHARDS {
            keep(keyspace.take_retained(&cut, 0, shard));
        }
        for shard in 0..N_SHARDS {
            keep(keyspace.take_shard_image(&cut, 0, shard));
        }
        writer.join().unwrap();
        assert_eq!(cut.pending_retained_bytes(0), 0);
        keyspace.end_snapshot(cut);
        assert_eq!(saved.get(&a).map(Vec::as_slice), Some(&b"before"[..]));
        assert_eq!(saved.get(&b).map(Vec::as_slice), Some(&b"before"[..]));
        let retained = keyspace.retained();
        assert_eq!((retained.versions, retained.bytes), (0, 0));
    });
}

#[test]
fn writer_waiting_for_room_in_the_budget_is_let_go_by_the_sweep_or_the_end() {
    loom::model(|| {
        let keyspace = Arc::new(Keyspace::new(1));
        // One byte: every retained version fills the budget, so a write that retains one waits.
        keyspace.set_retained_budget(1);
        let (a, b) = two_keys_in_two_shards(&keyspace);
        set_all(&keyspace, &[&a, &b], b"before");
        let cut = keyspace.begin_snapshot(0).unwrap();
        let writer = spawn_writer(&keyspace, &a, &b, |keyspace, a, b| {
            // Retains a's pre-cut version, then waits (outside the lock) for room.
            set_all(&keyspace, &[&a], b"after");
            set_all(&keyspace, &[&b], b"after");
        });
        // The sweeper takes what was retained (the wait needs the shard lock to be free for
        // this), then the save ends, which frees the rest whatever the writer has done.
        let mut saved: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for shard in 0..N_SHARDS {
            for (key, entry) in keyspace.take_retained(&cut, 0, shard).entries() {
                save_once(&mut saved, key, entry.value());
            }
        }
        keyspace.end_snapshot(cut);
        writer.join().unwrap();
        for value in saved.values() {
            assert_eq!(value.as_slice(), b"before");
        }
        let retained = keyspace.retained();
        assert_eq!((retained.versions, retained.bytes), (0, 0));
    });
}

#[test]
fn stepwise_traversal_racing_writers_saves_each_pre_cut_entry_once() {
    loom::model(|| {
        let keyspace = Arc::new(Keyspace::new(1));
        let (a, b) = two_keys_in_two_shards(&keyspace);
        set_all(&keyspace, &[&a, &b], b"before");
        let cut = keyspace.begin_snapshot(0).unwrap();
        let writer = spawn_writer(&keyspace, &a, &b, |keyspace, a, b| {
            set_all(&keyspace, &[&a], b"after");
            // New keys grow the tables (a resize moves entries between buckets).
            set_all(&keyspace, &[b"n1", b"n2", b"n3"], b"new");
            set_all(&keyspace, &[&b], b"after");
        });
        let mut saved: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut keep = |key: &[u8], value: &Value| save_once(&mut saved, key, value);
        for shard in 0..N_SHARDS {
            let mut cursor = forkless_storage::ShardCursor::default();
            loop {
                let (later, done) =
                    keyspace.scan_shard(&cut, 0, shard, &mut cursor, 1, &mut |key, entry| {
                        keep(key, entry.value());
                        forkless_storage::Visit::Saved
                    });
                for (key, entry) in later.entries() {
                    keep(key, entry.value());
                }
                if done {
                    break;
                }
            }
        }
        writer.join().unwrap();
        keyspace.end_snapshot(cut);
        assert_eq!(saved.len(), 2, "exactly the pre-cut keys: {saved:?}");
        assert_eq!(saved.get(&a).map(Vec::as_slice), Some(&b"before"[..]));
        assert_eq!(saved.get(&b).map(Vec::as_slice), Some(&b"before"[..]));
        assert_eq!(keyspace.retained().bytes, 0);
    });
}

/// Writes `value` to `keys` under one guard and returns the unit's effect number, as the
/// server's dispatch takes it after a command.
fn numbered_write(keyspace: &Keyspace, keys: &[&[u8]], value: &[u8]) -> Seq {
    set_all(keyspace, keys, value);
    assert!(effect::take_step().changed);
    effect::close_unit().unwrap()
}

#[test]
fn effect_numbers_taken_under_the_shard_lock_are_split_exactly_by_the_cut() {
    loom::model(|| {
        let keyspace = Arc::new(Keyspace::new(1));
        keyspace.attach_effect_consumer();
        let (a, b) = two_keys_in_two_shards(&keyspace);
        let first = numbered_write(&keyspace, &[&a, &b], b"old");
        assert_eq!(first, Seq::FIRST);
        // Writer A changes both keys (two shard locks), writer B only `a`; both race the cut.
        let writer_a = {
            let (keyspace, a, b) = (Arc::clone(&keyspace), a.clone(), b.clone());
            thread::spawn(move || numbered_write(&keyspace, &[&a, &b], b"A"))
        };
        let writer_b = {
            let (keyspace, a) = (Arc::clone(&keyspace), a.clone());
            thread::spawn(move || numbered_write(&keyspace, &[&a], b"B"))
        };
        let cut = keyspace.begin_snapshot(0).unwrap();
        let saved = image_of(&keyspace, &cut);
        let seq_a = writer_a.join().unwrap();
        let seq_b = writer_b.join().unwrap();
        let cut_seq = cut.seq();
        keyspace.end_snapshot(cut);
        // Dense: the two writers took the two numbers after the first.
        let mut taken = [seq_a, seq_b];
        taken.sort();
        assert_eq!(taken, [first.next(), first.next().next()]);
        // Replaying the units numbered below the cut, in number order, gives the snapshot.
        let mut replayed: BTreeMap<Vec<u8>, Vec<u8>> =
            [(a.clone(), b"old".to_vec()), (b.clone(), b"old".to_vec())].into();
        let mut units = [(seq_a, b"A", vec![&a, &b]), (seq_b, b"B", vec![&a])];
        units.sort_by_key(|unit| unit.0);
        for (seq, value, keys) in &units {
            if *seq < cut_seq {
                for key in keys {
                    replayed.insert(key.to_vec(), value.to_vec());
                }
            }
        }
        assert_eq!(saved, replayed, "cut at {cut_seq:?}, units {units:?}");
        // And all of them, in number order, give the live keyspace.
        let last = &units[1];
        let live = keyspace
            .db(0)
            .unwrap()
            .read(&[&a], 0)
            .get(&a)
            .cloned()
            .unwrap();
        let Value::String(live) = live.value() else {
            panic!("only strings are written here")
        };
        assert_eq!(&live[..], &last.1[..], "the later number wrote `a` last");
        assert_eq!(keyspace.next_seq(), first.next().next().next());
    });
}
