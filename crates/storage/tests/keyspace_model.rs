//! Model tests: random sequences of keyspace operations, with expiry under a controlled clock,
//! checked against a `BTreeMap` that does the same thing the obvious way.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use forkless_storage::{Keyspace, Value};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Set {
        key: u8,
        value: u8,
        ttl_ms: Option<u8>,
    },
    Remove {
        key: u8,
    },
    Get {
        key: u8,
    },
    Expire {
        key: u8,
        ttl_ms: Option<u8>,
    },
    Append {
        key: u8,
        value: u8,
    },
    Advance {
        ms: u8,
    },
    ActiveExpire,
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..24;
    prop_oneof![
        (key.clone(), any::<u8>(), proptest::option::of(1u8..50))
            .prop_map(|(key, value, ttl_ms)| Op::Set { key, value, ttl_ms }),
        key.clone().prop_map(|key| Op::Remove { key }),
        key.clone().prop_map(|key| Op::Get { key }),
        (key.clone(), proptest::option::of(1u8..50))
            .prop_map(|(key, ttl_ms)| Op::Expire { key, ttl_ms }),
        (key, any::<u8>()).prop_map(|(key, value)| Op::Append { key, value }),
        (1u8..40).prop_map(|ms| Op::Advance { ms }),
        Just(Op::ActiveExpire),
        Just(Op::Flush),
    ]
}

fn key_name(key: u8) -> Vec<u8> {
    format!("key:{key}").into_bytes()
}

/// The reference: key → (bytes, absolute deadline).
type Model = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

fn model_live(model: &Model, now: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    model
        .iter()
        .filter(|(_, (_, at))| at.is_none_or(|at| at > now))
        .map(|(k, (v, _))| (k.clone(), v.clone()))
        .collect()
}

fn as_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::String(bytes) => bytes.to_vec(),
        other => panic!("only strings are written here, got {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn keyspace_matches_btreemap(ops in proptest::collection::vec(op(), 1..120)) {
        let keyspace = Keyspace::new(2);
        let db = keyspace.db(1).unwrap();
        let mut model = Model::new();
        let mut now: u64 = 1_000_000;
        for op in ops {
            // A write guard touching a key removes it if it has expired (lazy expiry): mirror it.
            if let Op::Set { key, .. } | Op::Remove { key } | Op::Expire { key, .. } | Op::Append { key, .. } = &op {
                let name = key_name(*key);
                if model.get(&name).is_some_and(|(_, at)| at.is_some_and(|at| at <= now)) {
                    model.remove(&name);
                }
            }
            match op {
                Op::Set { key, value, ttl_ms } => {
                    let at = ttl_ms.map(|ttl| now + u64::from(ttl));
                    let name = key_name(key);
                    let mut guard = db.write(&[&name], now);
                    let old = guard.get(&name).map(|e| as_bytes(e.value()));
                    guard.set(&name, Value::string(&[value]), at);
                    drop(guard);
                    let expected_old = model_live(&model, now).get(&name).cloned();
                    prop_assert_eq!(old, expected_old);
                    model.insert(name, (vec![value], at));
                }
                Op::Remove { key } => {
                    let name = key_name(key);
                    let removed = db.write(&[&name], now).take(&name).map(|e| as_bytes(e.value()));
                    let expected = model_live(&model, now).get(&name).cloned();
                    model.remove(&name);
                    prop_assert_eq!(removed, expected);
                }
                Op::Get { key } => {
                    let name = key_name(key);
                    let got = db.read(&[&name], now).get(&name).map(|e| as_bytes(e.value()));
                    prop_assert_eq!(got, model_live(&model, now).get(&name).cloned());
                }
                Op::Expire { key, ttl_ms } => {
                    let name = key_name(key);
                    let at = ttl_ms.map(|ttl| now + u64::from(ttl));
                    let mut guard = db.write(&[&name], now);
                    let found = match guard.get_mut(&name) {
                        Some(mut entry) => { entry.set_expire_at_ms(at); true }
                        None => false,
                    };
                    let live = model_live(&model, now).contains_key(&name);
                    prop_assert_eq!(found, live);
                    if live {
                        if let Some(slot) = model.get_mut(&name) { slot.1 = at; }
                    }
                }
                Op::Append { key, value } => {
                    let name = key_name(key);
                    let mut guard = db.write(&[&name], now);
                    let appended = guard.get_mut(&name).map(|mut entry| {
                        let Value::String(old) = entry.value() else { panic!("only strings are written here") };
                        let mut bytes = old.to_vec();
                        bytes.push(value);
                        entry.replace_value(Value::string(&bytes));
                    }).is_some();
                    prop_assert_eq!(appended, model_live(&model, now).contains_key(&name));
                    if appended {
                        if let Some(slot) = model.get_mut(&name) { slot.0.push(value); }
                    }
                }
                Op::Advance { ms } => now += u64::from(ms),
                Op::ActiveExpire => {
                    let cycle = keyspace.active_expire_cycle(now, Instant::now() + Duration::from_secs(5));
                    prop_assert!(!cycle.timed_out);
                    model.retain(|_, (_, at)| at.is_none_or(|at| at > now));
                    // Everything due is gone: the key count is exact again.
                    prop_assert_eq!(db.len(), model.len());
                }
                Op::Flush => {
                    let flushed = keyspace.flush_all(now);
                    prop_assert!(flushed.n_keys() >= model_live(&model, now).len());
                    model.clear();
                    prop_assert!(db.is_empty());
                }
            }
            let keys: BTreeMap<Vec<u8>, Vec<u8>> = db
                .keys(now, |_| true)
                .into_iter()
                .map(|k| {
                    let value = db.read(&[&k], now).get(&k).map(|e| as_bytes(e.value())).unwrap_or_default();
                    (k.to_vec(), value)
                })
                .collect();
            prop_assert_eq!(keys, model_live(&model, now));
            let stats = db.stats(now);
            prop_assert_eq!(stats.expires, model.values().filter(|(_, at)| at.is_some()).count());
        }
        // The other database was never touched.
        prop_assert!(keyspace.db(0).unwrap().is_empty());
    }
}

#[test]
fn avg_ttl_is_exact() {
    let keyspace = Keyspace::new(1);
    let db = keyspace.db(0).unwrap();
    let now = 10_000;
    for (i, ttl) in [1_000u64, 3_000].iter().enumerate() {
        let key = format!("k{i}");
        db.write(&[key.as_bytes()], now)
            .set(key.as_bytes(), Value::string(b"v"), Some(now + ttl));
    }
    db.write(&[b"plain"], now)
        .set(b"plain", Value::string(b"v"), None);
    let stats = db.stats(now);
    assert_eq!((stats.keys, stats.expires, stats.avg_ttl_ms), (3, 2, 2_000));
}

#[test]
fn dirty_counts_each_change_once() {
    let keyspace = Keyspace::new(1);
    let db = keyspace.db(0).unwrap();
    let before = keyspace.dirty();
    let mut guard = db.write(&[b"a", b"b"], 1);
    guard.set(b"a", Value::string(b"1"), None);
    guard.set(b"b", Value::string(b"2"), None);
    // Reading through get_mut without changing anything is not a change.
    assert!(guard.get_mut(b"a").is_some());
    let mut entry = guard.get_mut(b"b").unwrap();
    entry.replace_value(Value::string(b"3"));
    entry.set_expire_at_ms(Some(100));
    drop(guard);
    assert_eq!(keyspace.dirty() - before, 3);
}

#[test]
fn every_write_is_stamped_with_the_current_epoch() {
    let keyspace = Keyspace::new(1);
    let db = keyspace.db(0).unwrap();
    db.write(&[b"k"], 1).set(b"k", Value::string(b"v"), None);
    let version = db.read(&[b"k"], 1).get(b"k").unwrap().version();
    assert_eq!(version, keyspace.epoch());
}
