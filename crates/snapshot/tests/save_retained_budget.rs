//! A save under heavy overwrites of big values with a small retained budget
//! (`Keyspace::set_retained_budget`, `snapshot-max-retained-bytes`): what the snapshot retains
//! stays within the budget plus one value (one writer, so at most one version retained past
//! it before the writer waits), and the stream still holds exactly the keyspace at the cut.
//! Before the budget, retained versions piled up to 14% of a 1 GiB dataset of 64 KiB values
//! under full-speed overwrites (docs/benchmarks.md, "Big values"). Big strings also travel to
//! the writer shared rather than copied (`Chunk::with_value`): the stream must be byte-exact
//! with and without that path, zstd included.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use forkless_snapshot::backend::{BackendError, Sink, Target, WriterKind};
use forkless_snapshot::format;
use forkless_snapshot::save::{self, Compression, Progress, SaveOptions, TraversalPriority};
use forkless_storage::{Keyspace, Value};

/// A sink that keeps the stream in memory.
struct MemorySink(Arc<Mutex<Vec<u8>>>);

impl Sink for MemorySink {
    fn write(&mut self, chunk: &[u8]) -> Result<(), BackendError> {
        self.0.lock().unwrap().extend_from_slice(chunk);
        Ok(())
    }

    fn bytes_written(&self) -> u64 {
        self.0.lock().unwrap().len() as u64
    }

    fn finish(self: Box<Self>) -> Result<u64, BackendError> {
        Ok(self.0.lock().unwrap().len() as u64)
    }

    fn abort(self: Box<Self>) {}
}

fn options(compress_strings: bool, compression: Compression) -> SaveOptions {
    SaveOptions {
        target: Target::new(std::env::temp_dir(), "unused.rdb", "unused-temp.rdb"),
        writer: WriterKind::Blocking,
        compress_strings,
        checksum: true,
        compression,
        threads: 2,
        max_bytes_per_sec: 0,
        fsync_every: 0,
        priority: TraversalPriority::Nice(0),
        activity: None,
        used_mem: 0,
        ctime_unix_secs: 1_700_000_000,
        functions: Vec::new(),
        repl: None,
        key_delay: None,
    }
}

const SMALL: usize = 64 << 10;
const BIG: usize = 1 << 20;

/// Key `i`'s value of generation `generation`: 1 MiB for every 16th key, 64 KiB otherwise,
/// its bytes telling key and generation apart.
fn value(i: usize, generation: u64) -> Vec<u8> {
    let len = if i % 16 == 0 { BIG } else { SMALL };
    let mut value = vec![(i % 251) as u8; len];
    value[..8].copy_from_slice(&generation.to_le_bytes());
    value
}

fn key(i: usize) -> Vec<u8> {
    format!("key:{i:06}").into_bytes()
}

/// The keys and string values an RDB stream holds (zstd frames or plain).
fn load(bytes: &[u8]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let plain = if bytes.starts_with(b"REDIS") {
        bytes.to_vec()
    } else {
        zstd::stream::decode_all(bytes).unwrap()
    };
    let mut loaded = BTreeMap::new();
    format::load(plain.as_slice(), "memory", 0, |entry| {
        let Value::String(value) = entry.value else {
            panic!("only strings were saved");
        };
        loaded.insert(entry.key.to_vec(), value.as_bytes().to_vec());
        Ok(())
    })
    .unwrap();
    loaded
}

/// Saves a keyspace of 64 KiB and 1 MiB values while one writer overwrites them as fast as it
/// can, with a 2 MiB budget; returns the highest retained total anyone saw and the writes that
/// waited.
fn save_under_overwrites(compress_strings: bool, compression: Compression) -> (u64, u64) {
    const N_KEYS: usize = 256;
    const BUDGET: u64 = 2 << 20;
    let keyspace = Arc::new(Keyspace::new(1));
    keyspace.set_retained_budget(BUDGET);
    let db = keyspace.db(0).unwrap();
    for i in 0..N_KEYS {
        db.write(&[&key(i)], 0)
            .set(&key(i), Value::string(&value(i, 0)), None);
    }
    let at_cut: BTreeMap<Vec<u8>, Vec<u8>> = (0..N_KEYS).map(|i| (key(i), value(i, 0))).collect();
    let cut = keyspace.begin_snapshot(1).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let highest = Arc::new(AtomicU64::new(0));
    let writer = {
        let (keyspace, done, highest) = (
            Arc::clone(&keyspace),
            Arc::clone(&done),
            Arc::clone(&highest),
        );
        std::thread::spawn(move || {
            let db = keyspace.db(0).unwrap();
            let mut generation = 1;
            // Overwrites every key in turn, several times over, until the save is done.
            while !done.load(Ordering::Relaxed) {
                for i in (0..N_KEYS).map(|i| (i * 7) % N_KEYS) {
                    db.write(&[&key(i)], 0).set(
                        &key(i),
                        Value::string(&value(i, generation)),
                        None,
                    );
                    highest.fetch_max(keyspace.retained().bytes, Ordering::Relaxed);
                }
                generation += 1;
            }
        })
    };
    let stream = Arc::new(Mutex::new(Vec::new()));
    let sink: Box<dyn Sink> = Box::new(MemorySink(Arc::clone(&stream)));
    let report = save::save_to_sinks(
        &keyspace,
        cut,
        &options(compress_strings, compression),
        &Progress::default(),
        vec![sink],
    )
    .unwrap();
    done.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(report.keys_saved, N_KEYS as u64);
    let loaded = load(&stream.lock().unwrap());
    assert!(
        loaded == at_cut,
        "the stream is not the keyspace at the cut"
    );
    assert_eq!(keyspace.retained().bytes, 0);
    // One writer retains at most one version past the budget before it waits (plus the key
    // and the entry's own size, counted with it), and one more each time it waited the
    // longest a write waits and went on (a save starved of CPU on a loaded machine).
    let overruns = keyspace.retained_budget_overruns();
    let bound = BUDGET + (1 + overruns) * (BIG as u64 + 4096);
    let peak = keyspace.retained().peak_bytes;
    let highest = highest.load(Ordering::Relaxed);
    assert!(peak <= bound, "retained peak {peak} over {bound}");
    assert!(highest <= bound, "retained {highest} seen, over {bound}");
    (peak.max(highest), keyspace.retained_budget().1)
}

#[test]
fn big_values_overwritten_during_a_save_stay_within_the_budget_and_the_dump_is_the_cut() {
    let (peak, waited) = save_under_overwrites(false, Compression::None);
    eprintln!("retained peak {peak} B, {waited} writes waited");
}

#[test]
fn the_same_with_lzf_strings_and_zstd_frames() {
    save_under_overwrites(true, Compression::None);
    save_under_overwrites(false, Compression::Zstd { level: 1 });
}
