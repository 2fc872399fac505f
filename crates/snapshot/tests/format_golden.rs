//! Golden files written by real Redis 7.0.15 (`testdata/generate.py`): the loader must read
//! Redis's strings in every encoding (including liblzf's output) exactly as the sidecar lists
//! them, and refuse streams and functions, which it cannot store, by name.

mod format_support;

use forkless_snapshot::format::{self, EncodeOptions, LoadError, RdbType, load};
use forkless_storage::Value;
use format_support::{
    Dataset, encode_rdb, live_at, load_into, read_sidecar, testdata, zstd_two_frames,
};

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(testdata(name)).expect("golden file is readable")
}

fn expected_strings() -> Dataset {
    read_sidecar(&testdata("redis-7.0-strings.txt"))
}

/// The expiry of the key "soon", which is in the past for any test run after generation.
fn soon_expiry(data: &Dataset) -> u64 {
    data.get(&(1, b"soon".to_vec()))
        .and_then(|entry| entry.1)
        .expect("the sidecar lists \"soon\" with a TTL")
}

#[test]
fn redis_strings_golden_loads_exactly() {
    let expected = expected_strings();
    assert!(expected.len() > 50, "sidecar lists {} keys", expected.len());
    let bytes = golden("redis-7.0-strings.rdb");
    let (loaded, summary) = load_into(&bytes[..], 0).unwrap();
    assert_eq!(
        loaded,
        expected,
        "{}",
        format_support::diff(&expected, &loaded)
    );
    assert!(summary.checksum_verified);
    assert_eq!(summary.rdb_version, 10);
    assert_eq!(summary.bytes_read, bytes.len() as u64);
    assert_eq!(summary.keys_expired_skipped, 0);
    let redis_ver = summary
        .aux
        .iter()
        .find(|(name, _)| name == "redis-ver")
        .unwrap();
    assert_eq!(redis_ver.1, b"7.0.15");
}

#[test]
fn redis_strings_golden_exercises_lzf() {
    // If Redis had not compressed anything, the LZF decoding above would be untested.
    let compressed = golden("redis-7.0-strings.rdb");
    let plain = golden("redis-7.0-strings-plain.rdb");
    assert!(
        compressed.len() + 30_000 < plain.len(),
        "{} vs {}",
        compressed.len(),
        plain.len()
    );
}

#[test]
fn redis_plain_golden_has_zero_checksum_and_loads_the_same() {
    let bytes = golden("redis-7.0-strings-plain.rdb");
    assert_eq!(
        bytes[bytes.len() - 8..],
        [0; 8],
        "saved with rdbchecksum no"
    );
    let (loaded, summary) = load_into(&bytes[..], 0).unwrap();
    assert_eq!(loaded, expected_strings());
    assert!(!summary.checksum_verified);
}

#[test]
fn keys_expired_at_load_time_are_skipped_and_counted() {
    let expected = expected_strings();
    let now_ms = soon_expiry(&expected) + 1;
    let (loaded, summary) = load_into(&golden("redis-7.0-strings.rdb")[..], now_ms).unwrap();
    assert_eq!(loaded, live_at(&expected, now_ms));
    assert!(!loaded.contains_key(&(1, b"soon".to_vec())));
    assert_eq!(summary.keys_expired_skipped, 1);
    assert_eq!(summary.keys_loaded, expected.len() as u64 - 1);
    // At exactly the expiry the key is still loaded (Redis skips only `expire < now`).
    let (loaded, _) =
        load_into(&golden("redis-7.0-strings.rdb")[..], soon_expiry(&expected)).unwrap();
    assert!(loaded.contains_key(&(1, b"soon".to_vec())));
}

#[test]
fn redis_golden_reencoded_by_us_loads_identically() {
    let expected = expected_strings();
    for compress in [true, false] {
        let ours = encode_rdb(
            &expected,
            &EncodeOptions {
                compress_strings: compress,
            },
        );
        let (loaded, _) = load_into(&ours[..], 0).unwrap();
        assert_eq!(loaded, expected);
    }
}

/// How many entries of `data`, encoded by us alone, occur byte for byte in `file`; returns
/// (identical, total) for entries with and without an LZF string.
fn entries_found_verbatim(
    data: &Dataset,
    file: &[u8],
    opts: &EncodeOptions,
) -> [(usize, usize); 2] {
    let mut counts = [(0, 0); 2];
    for ((_, key), (value, expire)) in data {
        let mut entry = Vec::new();
        format::write_entry(&mut entry, key, &Value::string(value), *expire, opts);
        let uses_lzf = opts.compress_strings && (key.len() > 20 || value.len() > 20);
        let count = &mut counts[usize::from(uses_lzf)];
        count.1 += 1;
        if file.windows(entry.len()).any(|window| window == entry) {
            count.0 += 1;
        }
    }
    counts
}

#[test]
fn our_entries_are_byte_identical_to_redis() {
    let expected = expected_strings();
    // Without compression every entry must match exactly: length forms, integer encodings,
    // expiry layout.
    let plain = golden("redis-7.0-strings-plain.rdb");
    let [(identical, total), _] = entries_found_verbatim(
        &expected,
        &plain,
        &EncodeOptions {
            compress_strings: false,
        },
    );
    assert_eq!(
        identical, total,
        "entries of ours not found in Redis's uncompressed dump"
    );

    // With compression, entries without LZF must match exactly too. Redis's liblzf keeps its
    // hash table in uninitialised stack memory, so its choice of matches can depend on what it
    // compressed before; ours starts from an empty table. On this file all match (checked when
    // it was generated); a regenerated file may legitimately differ in a few LZF strings.
    let compressed = golden("redis-7.0-strings.rdb");
    let [(identical, total), (lzf_identical, lzf_total)] =
        entries_found_verbatim(&expected, &compressed, &EncodeOptions::default());
    assert_eq!(
        identical, total,
        "non-LZF entries of ours not found in Redis's dump"
    );
    assert!(
        lzf_total >= 10,
        "the golden file has only {lzf_total} LZF entries"
    );
    assert!(
        lzf_identical * 10 >= lzf_total * 9,
        "only {lzf_identical} of {lzf_total} LZF entries are byte-identical to Redis's"
    );
}

#[test]
fn redis_golden_as_zstd_frames_loads_identically() {
    let bytes = golden("redis-7.0-strings.rdb");
    let compressed = zstd_two_frames(&bytes, 1000);
    let (loaded, summary) = load_into(&compressed[..], 0).unwrap();
    assert_eq!(loaded, expected_strings());
    assert_eq!(summary.bytes_read, bytes.len() as u64);
}

#[test]
fn redis_stream_file_loads() {
    // Collections load: `format_collections.rs` checks every `redis-7.0-type-*.rdb` file of a
    // list, set, sorted set or hash; `format_streams.rs` the streams with consumer groups.
    let file = "redis-7.0-type-stream.rdb";
    let mut loaded = Vec::new();
    load(&golden(file)[..], "dump.rdb", 0, |entry| {
        loaded.push(entry);
        Ok(())
    })
    .unwrap();
    let [entry] = &loaded[..] else {
        panic!("{file}: {} keys", loaded.len());
    };
    assert_eq!(&entry.key[..], b"stream");
    let Value::Stream(stream) = &entry.value else {
        panic!("{file}: a {}", entry.value.type_name());
    };
    let entries: Vec<(String, Vec<Vec<u8>>)> = stream
        .iter()
        .map(|(id, fields)| (id.to_string(), fields.map(<[u8]>::to_vec).collect()))
        .collect();
    assert_eq!(
        entries,
        [(
            "1-1".to_string(),
            vec![b"field".to_vec(), b"value".to_vec()]
        )]
    );
    assert!(golden(file).contains(&RdbType::StreamListpacks2.code()));
}

#[test]
fn redis_functions_are_refused() {
    let err = load(
        &golden("redis-7.0-type-function.rdb")[..],
        "f.rdb",
        0,
        |_| Ok(()),
    )
    .unwrap_err();
    assert!(
        matches!(err, LoadError::Functions { opcode: 245, .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "f.rdb: offset {}: Redis Functions (opcode 245) are not supported",
            err.offset()
        )
    );
}
