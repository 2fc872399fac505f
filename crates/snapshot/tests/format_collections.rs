//! Lists, sets, sorted sets and hashes in RDB files, in every encoding Redis 7.0 writes or loads:
//! golden files written by real Redis 7.0 load with exactly the contents Redis reported; our
//! encoder's collections load back identically (proptest) and load into real `redis-server`
//! (and pass `redis-check-rdb`); hand-built files in the older encodings (ziplists, quicklist of
//! ziplists, text scores) load the same into forkless and into Redis; corrupt collections
//! (truncated, flipped, lying listpack lengths, duplicates, NaN scores) are refused without
//! panicking, and empty ones are skipped and counted as Redis 7.0 skips them.

mod format_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use forkless_snapshot::format::{self, EncodeOptions, LoadError, LoadSummary, load};
use forkless_storage::Value;
use forkless_storage::types::{hash::Hash, list::List, set::Set, zset::ZSet};
use format_support::{
    RedisServer, Reply, TempDir, finish_rdb, have_redis_binaries, header, redis_check_rdb, testdata,
};
use proptest::prelude::*;

/// A collection in a canonical, comparable form.
#[derive(Debug, Clone, PartialEq)]
enum Coll {
    /// Only in corrupt files here (a flipped type byte).
    String(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
    /// Sorted by (score, member), as ZRANGE returns it.
    ZSet(Vec<(Vec<u8>, f64)>),
    Stream(forkless_storage::types::stream::Stream),
}

fn sorted_zset(mut entries: Vec<(Vec<u8>, f64)>) -> Coll {
    entries.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    Coll::ZSet(entries)
}

fn from_value(value: &Value) -> Coll {
    match value {
        Value::String(bytes) => Coll::String(bytes.to_vec()),
        Value::List(list) => Coll::List(list.iter().map(|item| item.to_vec()).collect()),
        Value::Set(set) => Coll::Set(set.iter().map(|member| member.to_vec()).collect()),
        Value::Hash(hash) => Coll::Hash(
            hash.iter()
                .map(|(field, value)| (field.to_vec(), value.to_vec()))
                .collect(),
        ),
        Value::ZSet(zset) => sorted_zset(
            zset.iter()
                .map(|(member, score)| (member.to_vec(), score))
                .collect(),
        ),
        Value::Stream(stream) => Coll::Stream((**stream).clone()),
    }
}

fn to_value(coll: &Coll) -> Value {
    match coll {
        Coll::String(bytes) => Value::string(bytes),
        Coll::List(items) => {
            let mut list = List::new();
            for item in items {
                list.push_back(item);
            }
            Value::List(Arc::new(list))
        }
        Coll::Set(members) => {
            let mut set = Set::new();
            for member in members {
                assert!(set.insert(member));
            }
            Value::Set(Arc::new(set))
        }
        Coll::Hash(fields) => {
            let mut hash = Hash::new();
            for (field, value) in fields {
                assert!(hash.insert(field, value));
            }
            Value::Hash(Arc::new(hash))
        }
        Coll::ZSet(entries) => {
            let mut zset = ZSet::new();
            for (member, score) in entries {
                assert!(zset.insert(member, *score));
            }
            Value::ZSet(Arc::new(zset))
        }
        Coll::Stream(stream) => Value::Stream(Arc::new(stream.clone())),
    }
}

/// `(db, key) → (collection, expiry)`.
type Colls = BTreeMap<(u32, Vec<u8>), (Coll, Option<u64>)>;

fn load_colls(bytes: &[u8]) -> Result<(Colls, LoadSummary), LoadError> {
    let mut out = Colls::new();
    let summary = load(bytes, "test.rdb", 0, |entry| {
        let previous = out.insert(
            (entry.db, entry.key.to_vec()),
            (from_value(&entry.value), entry.expire_at_ms),
        );
        if previous.is_some() {
            // Possible in a corrupt file: a server refuses it the same way.
            return Err(LoadError::rejected("duplicate key"));
        }
        Ok(())
    })?;
    Ok((out, summary))
}

/// Our encoder's file for `data`.
fn encode_colls(data: &Colls) -> Vec<u8> {
    let mut out = header();
    let mut current_db = None;
    for ((db, key), (coll, expire)) in data {
        if current_db != Some(*db) {
            let n_keys = data.keys().filter(|(d, _)| d == db).count() as u64;
            format::write_db_header(&mut out, *db, n_keys, 0);
            current_db = Some(*db);
        }
        format::write_entry(
            &mut out,
            key,
            &to_value(coll),
            *expire,
            &EncodeOptions::default(),
        );
    }
    finish_rdb(out)
}

// ---- Golden files written by Redis 7.0 -------------------------------------------------------

fn unhex(field: &str) -> Vec<u8> {
    let (pattern, count) = match field.split_once('*') {
        Some((pattern, count)) => (pattern, count.parse().expect("repeat count")),
        None => (field, 1),
    };
    let bytes: Vec<u8> = (0..pattern.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&pattern[i..i + 2], 16).expect("hex digits"))
        .collect();
    bytes.repeat(count)
}

/// `redis-7.0-types.txt`: file name → (key, contents as Redis reported them).
fn golden_expectations() -> BTreeMap<String, (Vec<u8>, Coll)> {
    let text =
        std::fs::read_to_string(testdata("redis-7.0-types.txt")).expect("sidecar is readable");
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, key, kind, elements] = fields[..] else {
            panic!("bad sidecar line {line:?}");
        };
        let elements: Vec<&str> = elements.split(',').collect();
        let pair = |element: &str| {
            let (a, b) = element.split_once('=').expect("a=b pair");
            (unhex(a), b.to_owned())
        };
        let coll = match kind {
            "list" => Coll::List(elements.iter().map(|e| unhex(e)).collect()),
            "set" => Coll::Set(elements.iter().map(|e| unhex(e)).collect()),
            "hash" => Coll::Hash(
                elements
                    .iter()
                    .map(|e| pair(e))
                    .map(|(f, v)| (f, unhex(&v)))
                    .collect(),
            ),
            "zset" => sorted_zset(
                elements
                    .iter()
                    .map(|e| pair(e))
                    .map(|(m, s)| (m, s.parse().expect("score")))
                    .collect(),
            ),
            other => panic!("unknown kind {other}"),
        };
        out.insert(format!("redis-7.0-type-{name}.rdb"), (unhex(key), coll));
    }
    out
}

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(testdata(name)).expect("golden file is readable")
}

/// The type byte of the only key of a golden file (after `SELECTDB 0`, `RESIZEDB 1 0`).
fn only_key_type(file: &[u8]) -> u8 {
    let at = file
        .windows(5)
        .position(|w| w == [0xfe, 0x00, 0xfb, 0x01, 0x00])
        .expect("SELECTDB 0 RESIZEDB 1 0");
    file[at + 5]
}

#[test]
fn every_collection_golden_file_loads_exactly() {
    let expected_codes: [(&str, u8); 15] = [
        ("list", 18),
        ("list-big", 18),
        ("list-plain", 18),
        ("set-intset", 11),
        ("set-intset-wide", 11),
        ("set", 2),
        ("set-big", 2),
        ("zset-listpack", 17),
        ("zset-listpack-scores", 17),
        ("zset-skiplist", 5),
        ("zset-skiplist-scores", 5),
        ("hash-listpack", 16),
        ("hash-listpack-ints", 16),
        ("hash", 4),
        ("hash-long-value", 4),
    ];
    let expectations = golden_expectations();
    assert_eq!(expectations.len(), expected_codes.len());
    for (name, code) in expected_codes {
        let file = format!("redis-7.0-type-{name}.rdb");
        let bytes = golden(&file);
        assert_eq!(
            only_key_type(&bytes),
            code,
            "{file}: Redis chose another encoding"
        );
        let (key, expected) = &expectations[&file];
        let (loaded, summary) = load_colls(&bytes).unwrap_or_else(|err| panic!("{err}"));
        assert!(summary.checksum_verified, "{file}");
        assert_eq!(summary.keys_loaded, 1, "{file}");
        assert_eq!(loaded.len(), 1, "{file}");
        let (coll, expire) = &loaded[&(0, key.clone())];
        assert_eq!(coll, expected, "{file}");
        assert_eq!(*expire, None);
    }
}

/// Reads an RDB length at `pos`; returns it and the position after it.
fn read_rdb_len(bytes: &[u8], pos: usize) -> (usize, usize) {
    let first = bytes[pos];
    match first >> 6 {
        0 => (usize::from(first & 0x3f), pos + 1),
        1 => (
            (usize::from(first & 0x3f) << 8) | usize::from(bytes[pos + 1]),
            pos + 2,
        ),
        _ if first == 0x80 => (
            u32::from_be_bytes(bytes[pos + 1..pos + 5].try_into().expect("4 bytes")) as usize,
            pos + 5,
        ),
        _ => panic!("length encoding {first:#x}"),
    }
}

/// The position after the RDB string (plain or LZF) at `pos`.
fn skip_rdb_string(bytes: &[u8], pos: usize) -> usize {
    if bytes[pos] == 0xc3 {
        let (compressed, next) = read_rdb_len(bytes, pos + 1);
        let (_, next) = read_rdb_len(bytes, next);
        next + compressed
    } else {
        let (len, next) = read_rdb_len(bytes, pos);
        next + len
    }
}

/// The container kinds of the nodes of the quicklist-2 key "list" in a golden file.
fn quicklist_containers(file: &[u8]) -> Vec<usize> {
    let at = file
        .windows(6)
        .position(|w| w == b"\x12\x04list")
        .expect("the key \"list\"")
        + 6;
    let (n_nodes, mut pos) = read_rdb_len(file, at);
    let mut containers = Vec::new();
    for _ in 0..n_nodes {
        let (container, next) = read_rdb_len(file, pos);
        containers.push(container);
        pos = skip_rdb_string(file, next);
    }
    assert_eq!(file[pos], 0xff, "EOF after the only key");
    containers
}

#[test]
fn golden_lists_cover_several_nodes_and_plain_nodes() {
    // list-big: a quicklist of many PACKED (2) listpack nodes; list-plain: 9 KB and 20 KB
    // elements in PLAIN (1) nodes between PACKED ones.
    let big = quicklist_containers(&golden("redis-7.0-type-list-big.rdb"));
    assert!(big.len() > 5 && big.iter().all(|&c| c == 2), "{big:?}");
    let plain = quicklist_containers(&golden("redis-7.0-type-list-plain.rdb"));
    assert_eq!(plain, [2, 1, 2, 1, 2]);
}

#[test]
fn golden_function_stays_refused() {
    let err = load_colls(&golden("redis-7.0-type-function.rdb")).unwrap_err();
    assert!(
        matches!(err, LoadError::Functions { opcode: 245, .. }),
        "{err}"
    );
}

#[test]
fn golden_collections_reencoded_by_us_load_identically() {
    for (file, (key, expected)) in golden_expectations() {
        let mut data = Colls::new();
        data.insert((0, key), (expected, None));
        let (loaded, _) = load_colls(&encode_colls(&data)).unwrap();
        assert_eq!(loaded, data, "{file}");
    }
}

#[test]
fn golden_collection_files_survive_truncation_and_flips() {
    for name in [
        "list-plain",
        "set-intset-wide",
        "zset-listpack-scores",
        "hash-listpack-ints",
    ] {
        let file = golden(&format!("redis-7.0-type-{name}.rdb"));
        for len in 0..file.len() {
            assert!(load_colls(&file[..len]).is_err(), "{name}: prefix {len}");
        }
        for pos in 0..file.len() {
            for mask in [0x01, 0x80, 0xff] {
                let mut bad = file.clone();
                bad[pos] ^= mask;
                // The CRC catches what the decoders do not; either way no panic, no Ok.
                assert!(load_colls(&bad).is_err(), "{name}: flip at {pos}");
            }
        }
    }
}

// ---- Hand-built files: old encodings, corruptions ---------------------------------------------

fn rdb_len(out: &mut Vec<u8>, len: usize) {
    if len < 64 {
        out.push(len as u8);
    } else if len < 16384 {
        out.extend_from_slice(&[0x40 | (len >> 8) as u8, len as u8]);
    } else {
        out.push(0x80);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

fn rdb_str(out: &mut Vec<u8>, bytes: &[u8]) {
    rdb_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// One key of type `code` whose value is `value`, as a whole file.
fn file_with_entry(code: u8, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = header();
    out.extend_from_slice(&[0xfe, 0, 0xfb, 1, 0, code]);
    rdb_str(&mut out, key);
    out.extend_from_slice(value);
    finish_rdb(out)
}

/// A listpack of strings (and 7-bit integers written as `Err(n)`), as `lpAppend` writes them.
fn listpack(elements: &[Result<&[u8], u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    for element in elements {
        let start = body.len();
        match element {
            Err(small) => body.push(*small & 0x7f),
            Ok(s) if s.len() < 64 => {
                body.push(0x80 | s.len() as u8);
                body.extend_from_slice(s);
            }
            Ok(s) => {
                assert!(s.len() < 4096);
                body.extend_from_slice(&[0xe0 | (s.len() >> 8) as u8, s.len() as u8]);
                body.extend_from_slice(s);
            }
        }
        let len = body.len() - start;
        if len < 128 {
            body.push(len as u8);
        } else {
            body.extend_from_slice(&[(len >> 7) as u8, (len & 0x7f) as u8 | 0x80]);
        }
    }
    let mut out = ((7 + body.len()) as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&(elements.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
    out.push(0xff);
    out
}

/// A ziplist of strings (and 0..=12 immediates written as `Err(n)`), as Redis 6 writes them.
fn ziplist(elements: &[Result<&[u8], u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut previous = 0usize;
    let mut tail = 10;
    for element in elements {
        let start = body.len();
        tail = 10 + start;
        if previous < 254 {
            body.push(previous as u8);
        } else {
            body.push(0xfe);
            body.extend_from_slice(&(previous as u32).to_le_bytes());
        }
        match element {
            Err(small) => body.push(0xf1 + small),
            Ok(s) if s.len() < 64 => {
                body.push(s.len() as u8);
                body.extend_from_slice(s);
            }
            Ok(s) => {
                assert!(s.len() < 16384);
                body.extend_from_slice(&[0x40 | (s.len() >> 8) as u8, s.len() as u8]);
                body.extend_from_slice(s);
            }
        }
        previous = body.len() - start;
    }
    let mut out = ((11 + body.len()) as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&(tail as u32).to_le_bytes());
    out.extend_from_slice(&(elements.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
    out.push(0xff);
    out
}

fn blob(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    rdb_str(&mut out, bytes);
    out
}

/// One file per older or alternative encoding, each with the key "k", and what it holds. Redis
/// 7.0 loads all of them (checked against `redis-server` below).
fn old_encoding_files() -> Vec<(&'static str, Vec<u8>, Coll)> {
    let long = vec![b'L'; 300];
    let mut files = Vec::new();
    let list = Coll::List(vec![
        b"a".to_vec(),
        long.clone(),
        b"7".to_vec(),
        b"z".to_vec(),
    ]);
    let elements: [Result<&[u8], u8>; 4] = [Ok(b"a"), Ok(&long), Err(7), Ok(b"z")];
    // 1: plain list.
    let mut value = Vec::new();
    rdb_len(&mut value, 4);
    for item in [&b"a"[..], &long, b"7", b"z"] {
        rdb_str(&mut value, item);
    }
    files.push(("list (1)", file_with_entry(1, b"k", &value), list.clone()));
    // 10: a ziplist.
    files.push((
        "list ziplist (10)",
        file_with_entry(10, b"k", &blob(&ziplist(&elements))),
        list.clone(),
    ));
    // 14: quicklist of ziplists, with an empty node in the middle, as Redis 6 could leave one.
    let mut value = Vec::new();
    rdb_len(&mut value, 3);
    value.extend(blob(&ziplist(&elements[..2])));
    value.extend(blob(&ziplist(&[])));
    value.extend(blob(&ziplist(&elements[2..])));
    files.push((
        "list quicklist (14)",
        file_with_entry(14, b"k", &value),
        list.clone(),
    ));
    // 18: quicklist 2, PACKED + PLAIN + PACKED.
    let mut value = Vec::new();
    rdb_len(&mut value, 3);
    value.push(2);
    value.extend(blob(&listpack(&elements[..1])));
    value.push(1);
    value.extend(blob(&long));
    value.push(2);
    value.extend(blob(&listpack(&elements[2..])));
    files.push((
        "list quicklist 2 (18)",
        file_with_entry(18, b"k", &value),
        list,
    ));
    // 3: sorted set with text scores, including the special lengths for infinities.
    let zset = sorted_zset(vec![
        (b"a".to_vec(), 1.5),
        (b"b".to_vec(), f64::INFINITY),
        (b"c".to_vec(), f64::NEG_INFINITY),
        (b"d".to_vec(), -2.0),
    ]);
    let mut value = Vec::new();
    rdb_len(&mut value, 4);
    for (member, score) in [
        (&b"a"[..], &b"\x031.5"[..]),
        (b"b", b"\xfe"),
        (b"c", b"\xff"),
        (b"d", b"\x02-2"),
    ] {
        rdb_str(&mut value, member);
        value.extend_from_slice(score);
    }
    files.push(("sorted set v1 (3)", file_with_entry(3, b"k", &value), zset));
    // 12: sorted set ziplist: member, score, ...
    let zs: [Result<&[u8], u8>; 4] = [Ok(b"m1"), Err(3), Ok(b"m2"), Ok(b"2.5")];
    files.push((
        "sorted set ziplist (12)",
        file_with_entry(12, b"k", &blob(&ziplist(&zs))),
        sorted_zset(vec![(b"m1".to_vec(), 3.0), (b"m2".to_vec(), 2.5)]),
    ));
    // 13: hash ziplist: field, value, ...
    let hs: [Result<&[u8], u8>; 4] = [Ok(b"f"), Ok(&long), Ok(b"g"), Err(0)];
    files.push((
        "hash ziplist (13)",
        file_with_entry(13, b"k", &blob(&ziplist(&hs))),
        Coll::Hash(BTreeMap::from([
            (b"f".to_vec(), long.clone()),
            (b"g".to_vec(), b"0".to_vec()),
        ])),
    ));
    files
}

#[test]
fn older_encodings_load() {
    for (what, file, expected) in old_encoding_files() {
        let (loaded, _) = load_colls(&file).unwrap_or_else(|err| panic!("{what}: {err}"));
        assert_eq!(loaded[&(0, b"k".to_vec())].0, expected, "{what}");
    }
}

fn load_err(file: &[u8]) -> LoadError {
    match load_colls(file) {
        Ok((data, _)) => panic!("loaded {data:?} from a bad file"),
        Err(err) => err,
    }
}

fn corrupted_reason(file: &[u8]) -> String {
    match load_err(file) {
        LoadError::Corrupted { reason, offset, .. } => {
            // The offset is the value's, right after the key "k".
            assert_eq!(offset as usize, header().len() + 6 + 2, "{reason}");
            reason
        }
        other => panic!("{other}"),
    }
}

#[test]
fn duplicates_and_nan_scores_are_refused() {
    let mut value = Vec::new();
    rdb_len(&mut value, 2);
    rdb_str(&mut value, b"x");
    rdb_str(&mut value, b"x");
    assert_eq!(
        corrupted_reason(&file_with_entry(2, b"k", &value)),
        "duplicate set member \"x\""
    );

    let mut value = Vec::new();
    rdb_len(&mut value, 2);
    for _ in 0..2 {
        rdb_str(&mut value, b"f");
        rdb_str(&mut value, b"v");
    }
    assert_eq!(
        corrupted_reason(&file_with_entry(4, b"k", &value)),
        "duplicate hash field \"f\""
    );

    let mut value = Vec::new();
    rdb_len(&mut value, 2);
    for score in [1.0f64, 2.0] {
        rdb_str(&mut value, b"m");
        value.extend_from_slice(&score.to_le_bytes());
    }
    assert_eq!(
        corrupted_reason(&file_with_entry(5, b"k", &value)),
        "duplicate sorted set member \"m\""
    );

    let mut value = Vec::new();
    rdb_len(&mut value, 1);
    rdb_str(&mut value, b"m");
    value.extend_from_slice(&f64::NAN.to_le_bytes());
    assert_eq!(
        corrupted_reason(&file_with_entry(5, b"k", &value)),
        "sorted set member \"m\" has a NaN score"
    );
    // Text score 253 is NaN.
    assert!(corrupted_reason(&file_with_entry(3, b"k", b"\x01\x01m\xfd")).contains("NaN"));
    assert!(
        corrupted_reason(&file_with_entry(3, b"k", b"\x01\x01m\x03abc")).contains("not a number")
    );

    // Inside listpacks: duplicate fields, duplicate members, odd counts, bad scores.
    let lp = listpack(&[Ok(b"f"), Ok(b"1"), Ok(b"f"), Ok(b"2")]);
    assert!(corrupted_reason(&file_with_entry(16, b"k", &blob(&lp))).contains("duplicate hash"));
    let lp = listpack(&[Ok(b"m"), Err(1), Ok(b"m"), Err(2)]);
    assert!(corrupted_reason(&file_with_entry(17, b"k", &blob(&lp))).contains("duplicate sorted"));
    let lp = listpack(&[Ok(b"f"), Ok(b"1"), Ok(b"g")]);
    assert!(corrupted_reason(&file_with_entry(16, b"k", &blob(&lp))).contains("odd number"));
    let lp = listpack(&[Ok(b"m"), Ok(b"nan")]);
    assert!(corrupted_reason(&file_with_entry(17, b"k", &blob(&lp))).contains("NaN"));
    let lp = listpack(&[Ok(b"m"), Ok(b"1.5x")]);
    assert!(corrupted_reason(&file_with_entry(17, b"k", &blob(&lp))).contains("not a number"));
    // Intsets: out of order (so duplicates too) and empty, as Redis refuses both.
    let intset = [&2u32.to_le_bytes()[..], &2u32.to_le_bytes(), &[5, 0, 5, 0]].concat();
    assert!(corrupted_reason(&file_with_entry(11, b"k", &blob(&intset))).contains("not above"));
    let intset = [&2u32.to_le_bytes()[..], &0u32.to_le_bytes()].concat();
    assert_eq!(
        corrupted_reason(&file_with_entry(11, b"k", &blob(&intset))),
        "intset is empty"
    );
    // A quicklist node container other than PLAIN (1) or PACKED (2).
    let mut value = vec![1, 3];
    value.extend(blob(b"x"));
    assert_eq!(
        corrupted_reason(&file_with_entry(18, b"k", &value)),
        "quicklist node 0 has unknown container 3"
    );
}

#[test]
fn a_listpack_with_a_lying_length_is_refused_fast() {
    let lp = listpack(&[Ok(b"field"), Ok(b"value")]);
    // The total-bytes field claims 4 GiB.
    let mut lying = lp.clone();
    lying[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    let started = Instant::now();
    let reason = corrupted_reason(&file_with_entry(16, b"k", &blob(&lying)));
    assert!(reason.contains("header says 4294967295 bytes"), "{reason}");
    // An entry claiming a 4 GiB string inside a 20-byte listpack.
    let mut lying = vec![0u8; 6];
    lying.extend_from_slice(&[0xf0, 0xff, 0xff, 0xff, 0xff, b'x', 0xff]);
    let total = lying.len() as u32;
    lying[..4].copy_from_slice(&total.to_le_bytes());
    let reason = corrupted_reason(&file_with_entry(16, b"k", &blob(&lying)));
    assert!(reason.contains("runs past the end"), "{reason}");
    // An element count that lies.
    let mut lying = lp;
    lying[4] = 200;
    let reason = corrupted_reason(&file_with_entry(16, b"k", &blob(&lying)));
    assert!(reason.contains("200 elements but it holds 2"), "{reason}");
    // A collection count of 2^62 with three bytes behind it.
    let mut value = vec![0x81];
    value.extend_from_slice(&(1u64 << 62).to_be_bytes());
    value.extend_from_slice(&[1, b'a']);
    // The loop runs into the EOF opcode and checksum, read as elements, and stops there.
    let err = load_err(&file_with_entry(1, b"k", &value));
    assert!(
        matches!(
            err,
            LoadError::UnexpectedEof { .. } | LoadError::Corrupted { .. }
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn empty_collections_are_skipped_and_counted() {
    // A zero count in each plain type, and a quicklist of empty nodes: Redis 7.0 logs
    // "skipping empty key" and loads the rest.
    let mut body = header();
    body.extend_from_slice(&[0xfe, 0, 0xfb, 6, 0]);
    for (code, key, value) in [
        (1u8, &b"list"[..], vec![0u8]),
        (2, b"set", vec![0]),
        (4, b"hash", vec![0]),
        (5, b"zset", vec![0]),
        (18, b"ql", [&[1u8, 2][..], &blob(&listpack(&[]))].concat()),
        (16, b"hlp", blob(&listpack(&[]))),
    ] {
        body.push(code);
        rdb_str(&mut body, key);
        body.extend_from_slice(&value);
    }
    body.push(0);
    rdb_str(&mut body, b"s");
    rdb_str(&mut body, b"v");
    let file = finish_rdb(body);
    let mut keys = Vec::new();
    let summary = load(&file[..], "t.rdb", 0, |entry| {
        keys.push(entry.key);
        Ok(())
    })
    .unwrap();
    assert_eq!(keys, [&b"s"[..]]);
    assert_eq!(summary.keys_empty_skipped, 6);
    assert_eq!(summary.keys_loaded, 1);
}

// ---- Our encoder: round trip, and real Redis ------------------------------------------------

fn element() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..20),
        any::<i64>().prop_map(|n| n.to_string().into_bytes()),
        (0u8..100).prop_map(|n| n.to_string().into_bytes()),
        (1usize..3000).prop_map(|n| vec![b'r'; n]),
    ]
}

fn score() -> impl Strategy<Value = f64> {
    prop_oneof![
        // -0.0 is left out: like Redis, a small (listpack) sorted set stores it as 0, so
        // whether a -0 score survives depends on the order members arrive, not on the file.
        any::<f64>().prop_filter("not NaN or -0", |s| !s.is_nan()
            && s.to_bits() != (-0.0f64).to_bits()),
        (-1000i64..1000).prop_map(|n| n as f64),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.1),
    ]
}

fn collection() -> impl Strategy<Value = Coll> {
    prop_oneof![
        proptest::collection::vec(element(), 1..40).prop_map(Coll::List),
        proptest::collection::btree_set(element(), 1..40).prop_map(Coll::Set),
        proptest::collection::btree_map(element(), element(), 1..40).prop_map(Coll::Hash),
        proptest::collection::btree_map(element(), score(), 1..40)
            .prop_map(|m| sorted_zset(m.into_iter().collect())),
    ]
}

fn dataset() -> impl Strategy<Value = Colls> {
    proptest::collection::btree_map(
        (0u32..4, proptest::collection::vec(any::<u8>(), 0..8)),
        (
            collection(),
            proptest::option::of(4_102_444_800_000u64..5_000_000_000_000),
        ),
        0..8,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn our_collections_load_back_identically(data in dataset()) {
        let file = encode_colls(&data);
        let (loaded, summary) = load_colls(&file).unwrap();
        prop_assert_eq!(summary.keys_loaded, data.len() as u64);
        prop_assert_eq!(loaded, data);
    }

    /// With the checksum zeroed (`rdbchecksum no`), corrupt blobs reach the decoders instead of
    /// failing at the footer: any outcome but a panic or a hang is fine.
    #[test]
    fn flipped_bytes_without_a_checksum_never_panic(
        name in prop::sample::select(&[
            "list-plain", "list-big", "set-intset-wide", "zset-listpack-scores",
            "hash-listpack-ints", "zset-skiplist-scores", "hash-long-value",
        ][..]),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        let mut file = golden(&format!("redis-7.0-type-{name}.rdb"));
        let len = file.len();
        file[len - 8..].fill(0);
        for (pos, mask) in flips {
            let pos = pos.index(len - 9);
            file[pos] ^= mask;
        }
        let _ = load_colls(&file);
    }

    #[test]
    fn truncated_collection_files_are_refused(data in dataset(), cut in any::<prop::sample::Index>()) {
        let file = encode_colls(&data);
        let len = cut.index(file.len());
        prop_assert!(load_colls(&file[..len]).is_err());
    }
}

/// Collections of every shape, big ones included (a 1000-field hash, a 20 KB element).
fn varied_collections() -> Colls {
    let mut data = Colls::new();
    let mut add = |db: u32, key: &str, coll: Coll, expire: Option<u64>| {
        data.insert((db, key.as_bytes().to_vec()), (coll, expire));
    };
    let items = |n: usize| -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| match i % 4 {
                0 => (i as i64 * 7919 - 100_000).to_string().into_bytes(),
                1 => format!("item-{i}").into_bytes(),
                2 => vec![i as u8; i % 70],
                _ => b"\x00\xff\r\n".to_vec(),
            })
            .collect()
    };
    add(0, "list:small", Coll::List(items(5)), None);
    add(
        0,
        "list:big",
        Coll::List(items(3000)),
        Some(4_102_444_800_123),
    );
    add(
        0,
        "list:huge-element",
        Coll::List(vec![b"a".to_vec(), vec![b'h'; 20_000]]),
        None,
    );
    add(
        1,
        "set:ints",
        Coll::Set(
            (0..100)
                .map(|i| (i * 3 - 50).to_string().into_bytes())
                .collect(),
        ),
        None,
    );
    add(
        1,
        "set:big",
        Coll::Set(items(2000).into_iter().collect()),
        None,
    );
    add(
        1,
        "hash:small",
        Coll::Hash(BTreeMap::from([
            (b"f".to_vec(), b"1".to_vec()),
            (Vec::new(), Vec::new()),
        ])),
        None,
    );
    add(
        2,
        "hash:big",
        Coll::Hash(
            (0..1000)
                .map(|i| (format!("f{i}").into_bytes(), items(1000)[i].clone()))
                .collect(),
        ),
        Some(4_102_444_800_456),
    );
    add(
        2,
        "zset:small",
        sorted_zset(vec![
            (b"a".to_vec(), 1.5),
            (b"inf".to_vec(), f64::INFINITY),
            (b"ninf".to_vec(), f64::NEG_INFINITY),
            (b"tenth".to_vec(), 0.1),
            (b"big".to_vec(), 1e300),
        ]),
        None,
    );
    add(
        3,
        "zset:big",
        sorted_zset(
            (0..1000)
                .map(|i| (format!("m{i}").into_bytes(), f64::from(i) / 7.0))
                .collect(),
        ),
        None,
    );
    data
}

/// Reads key `key` of the current database of `client` in canonical form.
fn read_from_redis(client: &mut format_support::Resp, key: &[u8]) -> Coll {
    let array = |reply: Reply| -> Vec<Vec<u8>> {
        let Reply::Array(items) = reply else {
            panic!("{reply:?}")
        };
        items
            .into_iter()
            .map(|item| match item {
                Reply::Bulk(Some(bytes)) => bytes,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let Reply::Simple(kind) = client.call(&[b"TYPE", key]) else {
        panic!("TYPE")
    };
    match kind.as_str() {
        "list" => Coll::List(array(client.call(&[b"LRANGE", key, b"0", b"-1"]))),
        "set" => Coll::Set(
            array(client.call(&[b"SMEMBERS", key]))
                .into_iter()
                .collect(),
        ),
        "hash" => {
            let flat = array(client.call(&[b"HGETALL", key]));
            Coll::Hash(
                flat.chunks(2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect(),
            )
        }
        "zset" => {
            let flat = array(client.call(&[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"]));
            sorted_zset(
                flat.chunks(2)
                    .map(|p| {
                        (
                            p[0].clone(),
                            std::str::from_utf8(&p[1])
                                .ok()
                                .and_then(|text| text.parse().ok())
                                .expect("a score"),
                        )
                    })
                    .collect(),
            )
        }
        other => panic!("type {other}"),
    }
}

/// Loads `file` into a real `redis-server` and reads back every key of `expected`.
fn assert_redis_loads(file: &[u8], expected: &Colls, what: &str) {
    let dir = TempDir::new("collections");
    std::fs::write(dir.path().join("ours.rdb"), file).expect("write file");
    let (ok, output) = redis_check_rdb(&dir.path().join("ours.rdb"));
    assert!(ok, "{what}: redis-check-rdb refused:\n{output}");
    let server = RedisServer::start(dir.path(), "ours.rdb");
    let mut client = server.client();
    let mut n_keys = 0;
    for db in 0..16u32 {
        client.call(&[b"SELECT", db.to_string().as_bytes()]);
        let Reply::Int(size) = client.call(&[b"DBSIZE"]) else {
            panic!("DBSIZE")
        };
        n_keys += size;
    }
    assert_eq!(
        n_keys as usize,
        expected.len(),
        "{what}:\n{}",
        server.log_text()
    );
    for ((db, key), (coll, expire)) in expected {
        client.call(&[b"SELECT", db.to_string().as_bytes()]);
        assert_eq!(
            &read_from_redis(&mut client, key),
            coll,
            "{what}: key {key:?}"
        );
        let want = expire.map_or(-1, |at| at as i64);
        assert_eq!(
            client.call(&[b"PEXPIRETIME", key]),
            Reply::Int(want),
            "{what}"
        );
    }
}

#[test]
fn redis_server_loads_our_collections() {
    if !have_redis_binaries(
        "redis_server_loads_our_collections",
        &["redis-server", "redis-check-rdb"],
    ) {
        return;
    }
    let data = varied_collections();
    let file = encode_colls(&data);
    assert_eq!(load_colls(&file).unwrap().0, data);
    assert_redis_loads(&file, &data, "our encoder");
}

#[test]
fn redis_server_loads_the_older_encodings_as_we_do() {
    // Checks the hand-built files (and so what `older_encodings_load` expects) against Redis.
    if !have_redis_binaries(
        "redis_server_loads_the_older_encodings",
        &["redis-server", "redis-check-rdb"],
    ) {
        return;
    }
    for (what, file, expected) in old_encoding_files() {
        let data = Colls::from([((0, b"k".to_vec()), (expected, None))]);
        assert_redis_loads(&file, &data, what);
    }
}
