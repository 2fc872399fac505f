//! Keyspace GET/SET through the storage guards, single-threaded: the per-command cost the
//! server adds on top of networking.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use forkless_storage::{Keyspace, Value};

fn keyspace_ops(c: &mut Criterion) {
    let keyspace = Keyspace::new(16);
    let Some(db) = keyspace.db(0) else { return };
    let keys: Vec<String> = (0..100_000).map(|i| format!("key:{i:012}")).collect();
    for key in &keys {
        db.write(&[key.as_bytes()], 0)
            .set(key.as_bytes(), Value::string(&[b'x'; 3]), None);
    }
    let mut group = c.benchmark_group("keyspace");
    group.throughput(Throughput::Elements(1));
    let mut idx = 0usize;
    group.bench_function("get_hit_100k_keys", |b| {
        b.iter(|| {
            idx = (idx + 7919) % keys.len();
            let key = keys[idx].as_bytes();
            let guard = db.read(&[key], 0);
            black_box(guard.get(key).map(|entry| entry.value().heap_size()))
        });
    });
    group.bench_function("set_overwrite_100k_keys", |b| {
        b.iter(|| {
            idx = (idx + 7919) % keys.len();
            let key = keys[idx].as_bytes();
            // The guard frees the overwritten value when it goes, inside the measured call.
            db.write(&[key], 0)
                .set(key, black_box(Value::string(b"abc")), None);
        });
    });
    group.finish();
}

criterion_group!(benches, keyspace_ops);
criterion_main!(benches);
