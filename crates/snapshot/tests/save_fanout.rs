//! One cut feeding several sinks (`save::save_to_sinks`): one traversal, the same bytes to every
//! sink, a sink that fails dropping out without stopping the others, and the stream failing
//! only when every sink has dropped out.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use forkless_snapshot::backend::{BackendError, Sink, Target, WriterKind};
use forkless_snapshot::format;
use forkless_snapshot::save::{self, Compression, Progress, SaveOptions, TraversalPriority};
use forkless_storage::{Keyspace, Value};

/// What an in-memory sink was given and how it ended.
#[derive(Debug, Default)]
struct Received {
    bytes: Vec<u8>,
    finished: bool,
    aborted: bool,
}

/// A sink that keeps the stream in memory, and fails every write past `fail_after` bytes with
/// EPIPE (what a replica's socket reports when the replica went away).
struct MemorySink {
    received: Arc<Mutex<Received>>,
    fail_after: Option<usize>,
}

impl MemorySink {
    fn boxed(fail_after: Option<usize>) -> (Box<dyn Sink>, Arc<Mutex<Received>>) {
        let received = Arc::new(Mutex::new(Received::default()));
        let sink = MemorySink {
            received: Arc::clone(&received),
            fail_after,
        };
        (Box::new(sink), received)
    }
}

impl Sink for MemorySink {
    fn write(&mut self, chunk: &[u8]) -> Result<(), BackendError> {
        let mut received = self.received.lock().unwrap();
        if self
            .fail_after
            .is_some_and(|limit| received.bytes.len() + chunk.len() > limit)
        {
            return Err(BackendError::Write {
                offset: received.bytes.len() as u64,
                source: std::io::Error::from_raw_os_error(libc::EPIPE),
            });
        }
        received.bytes.extend_from_slice(chunk);
        Ok(())
    }

    fn bytes_written(&self) -> u64 {
        self.received.lock().unwrap().bytes.len() as u64
    }

    fn finish(self: Box<Self>) -> Result<u64, BackendError> {
        let mut received = self.received.lock().unwrap();
        received.finished = true;
        Ok(received.bytes.len() as u64)
    }

    fn abort(self: Box<Self>) {
        self.received.lock().unwrap().aborted = true;
    }
}

fn options(threads: usize) -> SaveOptions {
    SaveOptions {
        target: Target::new(std::env::temp_dir(), "unused.rdb", "unused-temp.rdb"),
        writer: WriterKind::Blocking,
        compress_strings: true,
        checksum: true,
        compression: Compression::None,
        threads,
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

/// A keyspace of `n` keys in databases 0 and 3, some big enough to be encoded off the lock.
fn keyspace(n: usize) -> Keyspace {
    let keyspace = Keyspace::new(4);
    for db_idx in [0, 3] {
        let db = keyspace.db(db_idx).unwrap();
        for i in 0..n {
            let key = format!("key:{db_idx}:{i}");
            let len = if i % 100 == 0 { 40_000 } else { 1 + i % 300 };
            let value = Value::string(&vec![b'a' + (i % 26) as u8; len]);
            db.write(&[key.as_bytes()], 0)
                .set(key.as_bytes(), value, None);
        }
    }
    keyspace
}

/// The keys and string values an RDB stream holds, by database.
fn load(bytes: &[u8]) -> BTreeMap<(u32, Vec<u8>), Vec<u8>> {
    let mut loaded = BTreeMap::new();
    format::load(bytes, "memory", 0, |entry| {
        let Value::String(value) = entry.value else {
            panic!("only strings were saved");
        };
        loaded.insert((entry.db, entry.key.to_vec()), value.as_bytes().to_vec());
        Ok(())
    })
    .unwrap();
    loaded
}

#[test]
fn one_cut_feeds_two_sinks_the_same_bytes() {
    let keyspace = keyspace(3_000);
    let cut = keyspace.begin_snapshot(1).unwrap();
    // Overwrites after the cut must not show in either stream.
    let db = keyspace.db(0).unwrap();
    for i in 0..500 {
        let key = format!("key:0:{i}");
        db.write(&[key.as_bytes()], 0)
            .set(key.as_bytes(), Value::string(b"after the cut"), None);
    }
    let (first, first_got) = MemorySink::boxed(None);
    let (second, second_got) = MemorySink::boxed(None);
    let report = save::save_to_sinks(
        &keyspace,
        cut,
        &options(2),
        &Progress::default(),
        vec![first, second],
    )
    .unwrap();
    assert_eq!(report.keys_saved, 6_000);
    let first_got = first_got.lock().unwrap();
    let second_got = second_got.lock().unwrap();
    assert!(first_got.finished && second_got.finished);
    assert!(!first_got.aborted && !second_got.aborted);
    assert_eq!(
        first_got.bytes, second_got.bytes,
        "the sinks got different bytes"
    );
    let lengths: Vec<u64> = report.sinks.into_iter().map(Result::unwrap).collect();
    assert_eq!(lengths, vec![first_got.bytes.len() as u64; 2]);

    let loaded = load(&first_got.bytes);
    assert_eq!(loaded.len(), 6_000);
    for i in [0usize, 1, 100, 499, 500, 2_999] {
        let len = if i % 100 == 0 { 40_000 } else { 1 + i % 300 };
        let expected = vec![b'a' + (i % 26) as u8; len];
        for db_idx in [0, 3] {
            let key = format!("key:{db_idx}:{i}").into_bytes();
            assert_eq!(loaded.get(&(db_idx, key)), Some(&expected), "key {i}");
        }
    }
    assert_eq!(keyspace.retained().versions, 0);
}

#[test]
fn a_failing_sink_drops_out_and_the_others_go_on() {
    let keyspace = keyspace(2_000);
    let cut = keyspace.begin_snapshot(1).unwrap();
    let (healthy, healthy_got) = MemorySink::boxed(None);
    let (failing, failing_got) = MemorySink::boxed(Some(64 << 10));
    let report = save::save_to_sinks(
        &keyspace,
        cut,
        &options(1),
        &Progress::default(),
        vec![failing, healthy],
    )
    .unwrap();
    let mut outcomes = report.sinks.into_iter();
    let failed = outcomes.next().unwrap().unwrap_err();
    assert_eq!(failed.err_op(), "write");
    let healthy_len = outcomes.next().unwrap().unwrap();
    let healthy_got = healthy_got.lock().unwrap();
    assert!(healthy_got.finished);
    assert_eq!(healthy_len, healthy_got.bytes.len() as u64);
    assert_eq!(load(&healthy_got.bytes).len(), 4_000);
    let failing_got = failing_got.lock().unwrap();
    assert!(failing_got.aborted && !failing_got.finished);
    assert!(healthy_got.bytes.starts_with(&failing_got.bytes));
}

#[test]
fn the_save_fails_when_every_sink_dropped_out() {
    let keyspace = keyspace(2_000);
    let cut = keyspace.begin_snapshot(1).unwrap();
    let (first, first_got) = MemorySink::boxed(Some(10 << 10));
    let (second, second_got) = MemorySink::boxed(Some(100 << 10));
    let result = save::save_to_sinks(
        &keyspace,
        cut,
        &options(2),
        &Progress::default(),
        vec![first, second],
    );
    let err = result.unwrap_err();
    assert!(err.to_string().contains("write at offset"), "{err}");
    assert!(first_got.lock().unwrap().aborted);
    assert!(second_got.lock().unwrap().aborted);
    // The snapshot was ended: a new one may begin.
    assert!(keyspace.begin_snapshot(2).is_some());
}
