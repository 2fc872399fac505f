//! SCAN's guarantee under concurrent growth, and atomicity of multi-key writes under concurrent
//! readers. Stress tests: bounded in iterations, no timing assumptions.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use forkless_storage::{Keyspace, Value};

fn full_scan(db: &forkless_storage::Db, count: usize) -> Vec<Bytes> {
    let mut cursor = 0;
    let mut out = Vec::new();
    loop {
        let (next, keys) = db.scan(cursor, count, 0, |_, _| true);
        out.extend(keys);
        if next == 0 {
            return out;
        }
        assert!(
            next > cursor,
            "cursor must move forward: {cursor} -> {next}"
        );
        cursor = next;
    }
}

#[test]
fn scan_returns_each_key_exactly_once() {
    let keyspace = Keyspace::new(1);
    let db = keyspace.db(0).unwrap();
    for i in 0..5_000 {
        let key = format!("key:{i}");
        db.write(&[key.as_bytes()], 0)
            .set(key.as_bytes(), Value::string(b"v"), None);
    }
    for count in [1, 10, 1000] {
        let keys = full_scan(db, count);
        let unique: HashSet<_> = keys.iter().collect();
        assert_eq!(keys.len(), 5_000, "count {count}");
        assert_eq!(unique.len(), 5_000, "count {count}");
    }
}

#[test]
fn scan_never_misses_a_key_present_for_the_whole_scan_while_the_map_grows() {
    let keyspace = Keyspace::new(1);
    let db = keyspace.db(0).unwrap();
    let stable: Vec<String> = (0..2_000).map(|i| format!("stable:{i}")).collect();
    for key in &stable {
        db.write(&[key.as_bytes()], 0)
            .set(key.as_bytes(), Value::string(b"v"), None);
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Grow the database from 2,000 to 52,000 keys while the scan runs.
            for i in 0..50_000 {
                let key = format!("grow:{i}");
                db.write(&[key.as_bytes()], 0)
                    .set(key.as_bytes(), Value::string(b"v"), None);
                if done.load(Ordering::Relaxed) && i > 1_000 {
                    break;
                }
            }
        });
        let seen: HashSet<Bytes> = full_scan(db, 5).into_iter().collect();
        done.store(true, Ordering::Relaxed);
        for key in &stable {
            assert!(seen.contains(key.as_bytes()), "SCAN missed {key}");
        }
    });
}

#[test]
fn multi_key_writes_are_never_seen_half_done() {
    let keyspace = Keyspace::new(1);
    let db = keyspace.db(0).unwrap();
    let names: Vec<String> = (0..16).map(|i| format!("group:{i}")).collect();
    let keys: Vec<&[u8]> = names.iter().map(String::as_bytes).collect();
    {
        let mut guard = db.write(&keys, 0);
        for key in &keys {
            guard.set(key, Value::string(b"0"), None);
        }
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for round in 1..=3_000u32 {
                let value = round.to_string();
                let mut guard = db.write(&keys, 0);
                for key in &keys {
                    guard.set(key, Value::string(value.as_bytes()), None);
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        let mut reads = 0;
        while !stop.load(Ordering::Relaxed) || reads == 0 {
            let guard = db.read(&keys, 0);
            let values: HashSet<Vec<u8>> = keys
                .iter()
                .map(|key| match guard.get(key).unwrap().value() {
                    Value::String(bytes) => bytes.to_vec(),
                    other => panic!("only strings are written here, got {other:?}"),
                })
                .collect();
            assert_eq!(values.len(), 1, "torn multi-key write observed: {values:?}");
            reads += 1;
        }
        writer.join().unwrap();
    });
}

#[test]
fn random_key_finds_the_only_key() {
    let keyspace = Keyspace::new(1);
    let db = keyspace.db(0).unwrap();
    assert_eq!(db.random_key(0), None);
    db.write(&[b"only"], 0)
        .set(b"only", Value::string(b"v"), None);
    assert_eq!(db.random_key(0).as_deref(), Some(&b"only"[..]));
    // Expired keys are never returned.
    db.write(&[b"only"], 0)
        .get_mut(b"only")
        .unwrap()
        .set_expire_at_ms(Some(5));
    assert_eq!(db.random_key(10), None);
}

/// RANDOMKEY over many keys: varied picks, and live keys only, even when most have expired.
#[test]
fn random_key_picks_varied_live_keys() {
    let keyspace = Keyspace::new(1);
    let db = keyspace.db(0).unwrap();
    for i in 0..2000 {
        let key = format!("k{i}").into_bytes();
        // Every key but the multiples of 100 expires at 5.
        let expiry = (i % 100 != 0).then_some(5);
        db.write(&[&key], 0).set(&key, Value::string(b"v"), expiry);
    }
    let picks: std::collections::HashSet<_> = (0..200).filter_map(|_| db.random_key(0)).collect();
    assert!(picks.len() > 50, "only {} distinct keys", picks.len());
    for _ in 0..200 {
        let key = db.random_key(10).expect("20 keys are live");
        let n: usize = std::str::from_utf8(&key[1..]).unwrap().parse().unwrap();
        assert_eq!(n % 100, 0, "an expired key: {n}");
    }
}
