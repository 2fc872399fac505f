//! Streams in RDB files: the golden files Redis 7.0.15 wrote (`testdata/generate.py`,
//! STREAM_FILES: deleted entries, several listpack nodes, consumer groups, consumers and PELs)
//! load as Redis reported them (`redis-7.0-streams.txt`); our encoding of them loads back the
//! same, and real Redis (`redis-check-rdb`, `redis-server`) reads ours as it reads its own.
//! Truncated or flipped files are refused, never a panic.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers unwrap and index: a panic is a test failure"
)]

mod format_support;

use std::collections::BTreeMap;

use forkless_snapshot::format::{self, EncodeOptions, LoadedEntry, load};
use forkless_storage::Value;
use forkless_storage::types::stream::Stream;
use format_support::{
    RedisServer, Reply, TempDir, finish_rdb, have_redis_binaries, header, redis_check_rdb, testdata,
};

const FILES: [&str; 2] = ["stream-groups", "stream-empty"];

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(testdata(&format!("redis-7.0-type-{name}.rdb"))).unwrap()
}

/// The only key of `bytes` and its stream.
fn load_stream(bytes: &[u8]) -> (Vec<u8>, Stream) {
    let mut loaded: Vec<LoadedEntry> = Vec::new();
    load(bytes, "test.rdb", 0, |entry| {
        loaded.push(entry);
        Ok(())
    })
    .unwrap();
    assert_eq!(loaded.len(), 1);
    let entry = loaded.pop().unwrap();
    let Value::Stream(stream) = entry.value else {
        panic!("a {}", entry.value.type_name());
    };
    (entry.key.to_vec(), (*stream).clone())
}

/// A file holding `key` → `stream`, encoded by us.
fn encode(key: &[u8], stream: &Stream) -> Vec<u8> {
    let mut out = header();
    format::write_db_header(&mut out, 0, 1, 0);
    let value = Value::Stream(std::sync::Arc::new(stream.clone()));
    format::write_entry(&mut out, key, &value, None, &EncodeOptions::default());
    finish_rdb(out)
}

/// What the sidecar states of a stream: its counters, and per group its fields and PEL.
fn describe(key: &[u8], stream: &Stream) -> Vec<String> {
    let mut lines = vec![format!(
        "stream\t{}\tlength={},last-generated-id={},max-deleted-entry-id={},entries-added={}",
        String::from_utf8_lossy(key),
        stream.len(),
        stream.last_id(),
        stream.max_deleted_id(),
        stream.entries_added()
    )];
    for (name, group) in stream.groups() {
        let pel: Vec<String> = group
            .pending
            .iter()
            .map(|(id, p)| {
                format!(
                    "{id}:{}:{}",
                    String::from_utf8_lossy(&p.consumer),
                    p.delivery_count
                )
            })
            .collect();
        lines.push(format!(
            "group\t{}\tlast-delivered-id={},entries-read={}",
            String::from_utf8_lossy(name),
            group.last_id,
            group
                .entries_read
                .map_or("None".to_string(), |n| n.to_string()),
        ));
        lines.push(format!(
            "consumers={},pel={}",
            group.consumers.len(),
            pel.join(" ")
        ));
    }
    lines
}

/// The sidecar, in [`describe`]'s shape (lag is a command's computation, left out), per file.
fn sidecar() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(testdata("redis-7.0-streams.txt")).unwrap();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [file, kind, name, rest] = fields[..] else {
            panic!("bad sidecar line {line:?}");
        };
        let lines = out.entry(file.to_string()).or_default();
        if kind == "stream" {
            lines.push(format!("stream\t{name}\t{rest}"));
            continue;
        }
        let parts: BTreeMap<&str, &str> = rest
            .split(',')
            .map(|kv| kv.split_once('=').unwrap())
            .collect();
        lines.push(format!(
            "group\t{name}\tlast-delivered-id={},entries-read={}",
            parts["last-delivered-id"], parts["entries-read"]
        ));
        lines.push(format!(
            "consumers={},pel={}",
            parts["consumers"], parts["pel"]
        ));
    }
    out
}

/// The entries as (id, strings).
fn entries(stream: &Stream) -> Vec<(String, Vec<Vec<u8>>)> {
    stream
        .iter()
        .map(|(id, fields)| (id.to_string(), fields.map(<[u8]>::to_vec).collect()))
        .collect()
}

#[test]
fn golden_streams_load_as_redis_reported_them() {
    let expected = sidecar();
    for name in FILES {
        let (key, stream) = load_stream(&golden(name));
        assert_eq!(describe(&key, &stream), expected[name], "{name}");
    }
    // The entries of stream-groups as generate.py wrote them: 1-1, 2..=250 but the deleted 5
    // and 100, then 251 and 252 with other fields (integers among the values).
    let (_, stream) = load_stream(&golden("stream-groups"));
    let mut want: Vec<(String, Vec<Vec<u8>>)> = vec![(
        "1-1".into(),
        vec![
            b"a".to_vec(),
            b"1".to_vec(),
            b"b".to_vec(),
            b"hello".to_vec(),
        ],
    )];
    for i in (2..=250).filter(|i| *i != 5 && *i != 100) {
        want.push((
            format!("{i}-0"),
            vec![
                b"a".to_vec(),
                i.to_string().into_bytes(),
                b"b".to_vec(),
                format!("v{i}").into_bytes(),
            ],
        ));
    }
    want.push(("251-0".into(), vec![b"other".to_vec(), b"x".to_vec()]));
    want.push((
        "252-0".into(),
        vec![
            b"a".to_vec(),
            b"-5".to_vec(),
            b"b".to_vec(),
            b"99999999999".to_vec(),
        ],
    ));
    assert_eq!(entries(&stream), want);
    let g1 = stream.group(b"g1").unwrap();
    let alice = &g1.consumers[&bytes::Bytes::from_static(b"alice")];
    assert_eq!(alice.pending.len(), 1);
    assert!(alice.seen_time > 1_600_000_000_000);
}

#[test]
fn our_encoding_of_golden_streams_loads_back_the_same() {
    for name in FILES {
        let (key, stream) = load_stream(&golden(name));
        let (key2, again) = load_stream(&encode(&key, &stream));
        assert_eq!(key2, key);
        assert_eq!(entries(&again), entries(&stream), "{name}");
        assert_eq!(describe(&key, &again), describe(&key, &stream), "{name}");
        assert_eq!(again.groups(), stream.groups(), "{name}");
    }
}

#[test]
fn truncated_or_flipped_stream_files_never_panic() {
    for name in FILES {
        let file = golden(name);
        for len in 0..file.len() {
            assert!(
                load(&file[..len], "t.rdb", 0, |_| Ok(())).is_err(),
                "{name}: prefix {len}"
            );
        }
        // The checksum off, so that flips reach the stream parser.
        let mut unchecked = file.clone();
        let n = unchecked.len();
        unchecked[n - 8..].fill(0);
        for pos in 0..n - 9 {
            for mask in [0x01, 0x80, 0xff] {
                let mut flipped = unchecked.clone();
                flipped[pos] ^= mask;
                let _ = load(&flipped[..], "t.rdb", 0, |_| Ok(()));
            }
        }
    }
}

/// `XINFO STREAM key FULL` as a comparable value.
fn xinfo_full(server: &RedisServer, key: &[u8]) -> Reply {
    server.client().call(&[b"XINFO", b"STREAM", key, b"FULL"])
}

#[test]
fn redis_reads_our_streams_as_its_own() {
    if !have_redis_binaries(
        "redis_reads_our_streams_as_its_own",
        &["redis-server", "redis-check-rdb"],
    ) {
        return;
    }
    let dir = TempDir::new("streams");
    for name in FILES {
        let (key, stream) = load_stream(&golden(name));
        let ours = dir.path().join(format!("ours-{name}.rdb"));
        std::fs::write(&ours, encode(&key, &stream)).unwrap();
        let (ok, output) = redis_check_rdb(&ours);
        assert!(ok, "redis-check-rdb refused our {name}:\n{output}");
        let theirs = dir.path().join(format!("theirs-{name}.rdb"));
        std::fs::write(&theirs, golden(name)).unwrap();
        let from_ours = xinfo_full(
            &RedisServer::start(dir.path(), &format!("ours-{name}.rdb")),
            &key,
        );
        let from_theirs = xinfo_full(
            &RedisServer::start(dir.path(), &format!("theirs-{name}.rdb")),
            &key,
        );
        assert!(matches!(from_ours, Reply::Array(_)), "{from_ours:?}");
        assert_eq!(from_ours, from_theirs, "{name}");
    }
}
