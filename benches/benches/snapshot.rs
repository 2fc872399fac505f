//! The snapshot's moving parts, one at a time:
//!
//! - `serialize/<type>`: `format::write_entry` MB/s per value type (one thread), the cost a
//!   serializer thread pays per byte of output (strings with and without the LZF attempt of
//!   `rdbcompression yes`);
//! - `checksum/crc64_1MiB`: the RDB CRC-64 over one 1 MiB chunk, the checksum every
//!   serializer computes per chunk and every load computes over the file;
//! - `writer/<kind>`: 64 MiB of 1 MiB chunks through the io_uring writer, the blocking writer
//!   and, as the yardstick, a plain `write` + `fsync` of the same bytes: what the writers lose
//!   (or gain, with O_DIRECT) against the disk;
//! - `save/strings_1k`: a whole `save::save` of a 64 MiB keyspace (cut, parallel serializers,
//!   CRC, writer, fsync, rename) with one serializer thread and with one per core;
//! - `load/strings_1k`: `format::load` of that file into a fresh keyspace;
//! - `first_write_after_cut/<case>`: one write to a 1,000,000-element list, sorted set, set or
//!   hash while a snapshot holds its pre-cut version (the parts `Arc::make_mut` copies), and
//!   without a snapshot.
//!
//! Files go to `FORKLESS_BENCH_DIR` (default: the system temp dir); give it a directory on the
//! disk you care about. `cargo bench -p forkless-benches --bench snapshot`.

use std::hint::black_box;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use forkless_snapshot::backend::{self, Target, WriterKind};
use forkless_snapshot::format::{self, EncodeOptions};
use forkless_snapshot::save::{self, Compression, Progress, SaveOptions, TraversalPriority};
use forkless_storage::types::{hash::Hash, list::List, set::Set, zset::ZSet};
use forkless_storage::{Keyspace, Value};

/// Values of each type, the same shapes as `benches/memory_compare.py` uses.
fn values() -> Vec<(&'static str, Value)> {
    let list = |n: usize| {
        let mut list = List::new();
        for i in 0..n {
            list.push_back(Bytes::from(format!("element:{i:08}")));
        }
        Value::List(Arc::new(list))
    };
    let mut hash = Hash::new();
    for f in 0..50 {
        hash.insert(
            Bytes::from(format!("field:{f}")),
            Bytes::from(format!("v1234:{f}")),
        );
    }
    let mut intset = Set::new();
    for m in 0..50 {
        intset.insert(Bytes::from(m.to_string()));
    }
    let mut strset = Set::new();
    for m in 0..1000 {
        strset.insert(Bytes::from(format!("member:{m:06}")));
    }
    let mut zset = ZSet::new();
    for m in 0..50 {
        zset.insert(Bytes::from(format!("member:{m}")), f64::from(m) * 1.5);
    }
    vec![
        ("string_100B", Value::string(&[b'v'; 100])),
        ("string_1KB", Value::string(&noise(1000))),
        ("list_100", list(100)),
        ("list_10000", list(10_000)),
        ("hash_50", Value::Hash(Arc::new(hash))),
        ("set_intset_50", Value::Set(Arc::new(intset))),
        ("set_hashtable_1000", Value::Set(Arc::new(strset))),
        ("zset_50", Value::ZSet(Arc::new(zset))),
    ]
}

/// Incompressible bytes (LZF finds nothing), deterministic.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn serialize(c: &mut Criterion) {
    let lzf = EncodeOptions {
        compress_strings: true,
    };
    let plain = EncodeOptions {
        compress_strings: false,
    };
    let mut group = c.benchmark_group("serialize");
    for (name, value) in values() {
        let mut cases = vec![(name.to_string(), &lzf)];
        if matches!(value, Value::String(_)) {
            // rdbcompression no: what the LZF attempt costs.
            cases.push((format!("{name}_no_lzf"), &plain));
        }
        for (case, opts) in cases {
            let mut probe = Vec::new();
            format::write_entry(&mut probe, b"key:000000000001", &value, None, opts);
            group.throughput(Throughput::Bytes(probe.len() as u64));
            let mut out = Vec::with_capacity(probe.len() * 2);
            group.bench_function(case, |b| {
                b.iter(|| {
                    out.clear();
                    format::write_entry(&mut out, b"key:000000000001", &value, None, opts);
                    black_box(out.len())
                });
            });
        }
    }
    group.finish();
}

fn checksum(c: &mut Criterion) {
    let chunk = noise(1 << 20);
    let mut group = c.benchmark_group("checksum");
    group.throughput(Throughput::Bytes(chunk.len() as u64));
    group.bench_function("crc64_1MiB", |b| {
        b.iter(|| {
            let mut crc = format::Checksum::new();
            crc.update(black_box(&chunk));
            black_box(crc.finish())
        });
    });
    group.finish();
}

/// A fresh directory for this benchmark's files.
fn bench_dir(tag: &str) -> PathBuf {
    let base =
        std::env::var_os("FORKLESS_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = base.join(format!(
        "forkless-bench-{tag}-{}-{nanos}",
        std::process::id()
    ));
    if let Err(err) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {err}", dir.display());
    }
    dir
}

const WRITE_BYTES: usize = 64 << 20;
const CHUNK: usize = 1 << 20;

fn writers(c: &mut Criterion) {
    let dir = bench_dir("writer");
    let chunk = noise(CHUNK);
    let mut group = c.benchmark_group("writer");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(WRITE_BYTES as u64));
    for (name, kind) in [
        ("io_uring", WriterKind::IoUring),
        ("blocking", WriterKind::Blocking),
    ] {
        if kind == WriterKind::IoUring && backend::probe_io_uring().is_err() {
            eprintln!("writer/io_uring skipped: io_uring unavailable here");
            continue;
        }
        group.bench_function(name, |b| {
            b.iter(|| {
                let target = Target::new(&dir, "bench.rdb", "temp-bench.rdb");
                let (mut sink, _, _) = backend::open(kind, &target).expect("open the writer");
                for _ in 0..WRITE_BYTES / CHUNK {
                    sink.write(&chunk).expect("write");
                }
                black_box(sink.finish().expect("finish"))
            });
        });
    }
    group.bench_function("plain_write_fsync", |b| {
        b.iter(|| {
            let path = dir.join("plain.bin");
            let mut file = std::fs::File::create(&path).expect("create");
            for _ in 0..WRITE_BYTES / CHUNK {
                file.write_all(&chunk).expect("write");
            }
            file.sync_all().expect("fsync");
        });
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// 64 MiB of 1 KB strings.
fn strings_keyspace() -> (Keyspace, u64) {
    let keyspace = Keyspace::new(16);
    let value = noise(1000);
    let n = (64 << 20) / 1000;
    if let Some(db) = keyspace.db(0) {
        for i in 0..n {
            let key = format!("key:{i:012}");
            db.write(&[key.as_bytes()], 0)
                .set(key.as_bytes(), Value::string(&value), None);
        }
    }
    (keyspace, n as u64 * 1000)
}

fn save_options(dir: &std::path::Path, threads: usize) -> SaveOptions {
    SaveOptions {
        target: Target::new(dir, "dump.rdb", "temp-bench.rdb"),
        writer: WriterKind::Auto,
        compress_strings: false,
        checksum: true,
        compression: Compression::None,
        threads,
        max_bytes_per_sec: 0,
        fsync_every: 0,
        priority: TraversalPriority::Nice(0),
        activity: None,
        used_mem: 0,
        ctime_unix_secs: 0,
        functions: Vec::new(),
        repl: None,
        key_delay: None,
    }
}

fn save_and_load(c: &mut Criterion) {
    let dir = bench_dir("save");
    let (keyspace, payload) = strings_keyspace();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut group = c.benchmark_group("save");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(payload));
    for threads in [1, cores] {
        let options = save_options(&dir, threads);
        group.bench_function(format!("strings_1k/{threads}_threads"), |b| {
            b.iter(|| {
                let cut = keyspace.begin_snapshot(0).expect("no save running");
                let report =
                    save::save(&keyspace, cut, &options, &Progress::default()).expect("save");
                black_box(report.bytes_written)
            });
        });
    }
    group.finish();

    // One save of our own: with a filter, criterion may have skipped the ones above.
    let cut = keyspace.begin_snapshot(0).expect("no save running");
    save::save(
        &keyspace,
        cut,
        &save_options(&dir, cores),
        &Progress::default(),
    )
    .expect("save");
    let file = std::fs::read(dir.join("dump.rdb")).expect("the saved file");
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(file.len() as u64));
    group.bench_function("strings_1k", |b| {
        b.iter(|| {
            let keyspace = Keyspace::new(16);
            let summary = format::load(file.as_slice(), "bench", 0, |entry| {
                if let Some(db) = usize::try_from(entry.db).ok().and_then(|i| keyspace.db(i)) {
                    db.write(&[&entry.key], 0)
                        .set(&entry.key, entry.value, entry.expire_at_ms);
                }
                Ok(())
            })
            .expect("load");
            black_box(summary.keys_loaded)
        });
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The first write to a big collection after a cut, while the snapshot still holds the
/// collection's pre-cut version: `Arc::make_mut` copies the parts it touches (issue: the write path's added work
/// for big values). Only that write is timed; the cut, and dropping the retained copy at the end
/// of the snapshot, are not.
fn first_write_after_cut(c: &mut Criterion) {
    let mut group = c.benchmark_group("first_write_after_cut");
    group.sample_size(10);
    let n = 1_000_000usize;
    let mut list = List::new();
    let mut zset = ZSet::new();
    let mut set = Set::new();
    let mut hash = Hash::new();
    for i in 0..n {
        list.push_back(Bytes::from(format!("element:{i:08}")));
        zset.insert(Bytes::from(format!("member:{i:08}")), i as f64);
        set.insert(Bytes::from(format!("member:{i:08}")));
        hash.insert(
            Bytes::from(format!("field:{i:08}")),
            Bytes::from(format!("value:{i:08}")),
        );
    }
    let cases = [
        ("list_1m_rpush", Value::List(Arc::new(list))),
        ("zset_1m_zadd", Value::ZSet(Arc::new(zset))),
        ("set_1m_sadd", Value::Set(Arc::new(set))),
        ("hash_1m_hset", Value::Hash(Arc::new(hash))),
    ];
    for (name, value) in cases {
        let keyspace = Keyspace::new(1);
        let Some(db) = keyspace.db(0) else { return };
        db.write(&[b"big"], 0).set(b"big", value, None);
        // `cut_first`: a snapshot is running, and has not saved the key yet.
        let write = |cut_first: bool| {
            let cut = cut_first.then(|| keyspace.begin_snapshot(0).expect("no save running"));
            let started = std::time::Instant::now();
            let mut guard = db.write(&[b"big"], 0);
            if let Some(mut entry) = guard.get_mut(b"big") {
                match entry.value_mut() {
                    Value::List(list) => Arc::make_mut(list).push_back(Bytes::from_static(b"x")),
                    Value::ZSet(zset) => {
                        Arc::make_mut(zset).insert(Bytes::from_static(b"x"), 0.5);
                    }
                    Value::Set(set) => {
                        Arc::make_mut(set).insert(Bytes::from_static(b"x"));
                    }
                    Value::Hash(hash) => {
                        Arc::make_mut(hash)
                            .insert(Bytes::from_static(b"x"), Bytes::from_static(b"y"));
                    }
                    _ => {}
                }
            }
            drop(guard);
            let elapsed = started.elapsed();
            if let Some(cut) = cut {
                keyspace.end_snapshot(cut);
            }
            elapsed
        };
        group.bench_function(format!("{name}/during_snapshot"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| write(true)).sum());
        });
        group.bench_function(format!("{name}/no_snapshot"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| write(false)).sum());
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    serialize,
    checksum,
    writers,
    save_and_load,
    first_write_after_cut
);
criterion_main!(benches);
