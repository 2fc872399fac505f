//! Hostile and malformed files: every truncation, every single-byte corruption, random bytes,
//! absurd lengths, and each construct the loader must refuse by name. The loader must return a
//! typed `Err` for all of them: never panic, never hang, never `Ok`.

mod format_support;

use std::io::{self, Read};
use std::time::{Duration, Instant};

use forkless_snapshot::format::{
    EncodeOptions, LoadError, LoadedEntry, RdbType, ZSTD_MAGIC, load, opcode,
};
use format_support::{Dataset, NOW_MS, encode_rdb, finish_rdb, header, load_into, zstd_two_frames};
use proptest::prelude::*;

/// A small file with every string encoding, expiries and two databases.
fn small_valid_file() -> Vec<u8> {
    let mut data = Dataset::new();
    data.insert((0, b"int8".to_vec()), (b"-5".to_vec(), None));
    data.insert((0, b"int16".to_vec()), (b"1000".to_vec(), Some(NOW_MS + 5)));
    data.insert((0, b"int32".to_vec()), (b"-100000".to_vec(), None));
    data.insert((0, b"lzf".to_vec()), (b"abc".repeat(30), Some(NOW_MS + 6)));
    data.insert((0, b"plain".to_vec()), (b"hello world".to_vec(), None));
    data.insert((3, b"".to_vec()), (b"".to_vec(), None));
    data.insert(
        (3, b"12".to_vec()),
        (vec![0, 255, 13, 10], Some(NOW_MS + 7)),
    );
    encode_rdb(&data, &EncodeOptions::default())
}

/// `header() + body`, then EOF and a valid CRC-64.
fn file_with(body: &[u8]) -> Vec<u8> {
    let mut file = header();
    file.extend_from_slice(body);
    finish_rdb(file)
}

fn load_err(bytes: &[u8]) -> LoadError {
    match load_into(bytes, NOW_MS) {
        Ok((data, summary)) => panic!("loaded {} keys from a bad file: {summary:?}", data.len()),
        Err(err) => err,
    }
}

#[test]
fn valid_small_file_loads() {
    let (data, summary) = load_into(&small_valid_file()[..], NOW_MS).unwrap();
    assert_eq!(data.len(), 7);
    assert!(summary.checksum_verified);
}

#[test]
fn every_truncation_is_an_unexpected_eof() {
    let file = small_valid_file();
    for len in 0..file.len() {
        let err = load_err(&file[..len]);
        assert!(
            matches!(err, LoadError::UnexpectedEof { .. }),
            "prefix of {len} bytes: {err}"
        );
        assert!(err.offset() <= len as u64, "prefix of {len} bytes: {err}");
    }
}

#[test]
fn every_truncation_of_a_zstd_stream_is_refused() {
    let compressed = zstd_two_frames(&small_valid_file(), 100);
    load_into(&compressed[..], NOW_MS).unwrap();
    for len in 0..compressed.len() {
        let err = load_err(&compressed[..len]);
        assert!(
            matches!(
                err,
                LoadError::UnexpectedEof { .. }
                    | LoadError::Decompress { .. }
                    | LoadError::BadMagic { .. }
            ),
            "prefix of {len} bytes: {err}"
        );
    }
}

#[test]
fn every_single_byte_corruption_is_refused() {
    let file = small_valid_file();
    for pos in 0..file.len() {
        for mask in [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff] {
            let mut corrupt = file.clone();
            corrupt[pos] ^= mask;
            let err = load_err(&corrupt);
            let _ = err.to_string();
        }
    }
}

#[test]
fn bytes_after_the_checksum_are_refused() {
    let mut file = small_valid_file();
    let end = file.len() as u64;
    file.push(0);
    let err = load_err(&file);
    assert!(
        matches!(err, LoadError::TrailingData { offset, .. } if offset == end),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_after_a_valid_header_are_refused(
        tail in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut file = header();
        file.extend_from_slice(&tail);
        prop_assert!(load_into(&file[..], NOW_MS).is_err());
    }

    #[test]
    fn random_files_are_refused(
        prefix in prop_oneof![
            Just(Vec::new()),
            Just(b"REDIS0010".to_vec()),
            Just(ZSTD_MAGIC.to_vec()),
        ],
        tail in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut file = prefix;
        file.extend_from_slice(&tail);
        prop_assert!(load_into(&file[..], NOW_MS).is_err());
    }

    /// Files before version 5 have no checksum, so random bytes may well form a valid file
    /// (a lone EOF opcode is one): only "no panic, no hang" can be asked.
    #[test]
    fn random_unchecksummed_files_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut file = b"REDIS0003".to_vec();
        file.extend_from_slice(&tail);
        let _ = load_into(&file[..], NOW_MS);
    }

    #[test]
    fn random_splices_into_a_valid_file_are_refused(
        start in any::<prop::sample::Index>(),
        garbage in proptest::collection::vec(any::<u8>(), 1..40),
        replace in 0usize..40,
    ) {
        let file = small_valid_file();
        let start = start.index(file.len());
        let end = (start + replace).min(file.len());
        let mut corrupt = file[..start].to_vec();
        corrupt.extend_from_slice(&garbage);
        corrupt.extend_from_slice(&file[end..]);
        prop_assume!(corrupt != file);
        prop_assert!(load_into(&corrupt[..], NOW_MS).is_err());
    }

    /// Structurally valid bodies made of random opcodes: with a correct CRC the loader gets far
    /// into the opcode loop, and must still only ever return typed errors or valid data.
    #[test]
    fn random_opcode_soup_with_valid_checksum_never_panics(
        body in proptest::collection::vec(
            prop_oneof![
                Just(vec![opcode::SELECTDB, 1]),
                Just(vec![opcode::RESIZEDB, 0x40, 0xff, 0x80]),
                Just(vec![opcode::EXPIRETIME_MS, 1, 2, 3, 4, 5, 6, 7, 8]),
                Just(vec![opcode::EXPIRETIME, 1, 2, 3, 4]),
                Just(vec![opcode::IDLE, 5]),
                Just(vec![opcode::FREQ, 5]),
                Just(vec![opcode::AUX, 1, b'a', 0xc0, 7]),
                Just(vec![0, 1, b'k', 0xc3, 3, 10, 0, b'x', 0xe0]),
                Just(vec![0, 1, b'k', 0xc1, 1]),
                Just(vec![0, 0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
                proptest::collection::vec(any::<u8>(), 1..6),
            ],
            0..20,
        ),
    ) {
        let file = file_with(&body.concat());
        let _ = load_into(&file[..], NOW_MS);
    }
}

#[test]
fn huge_lengths_fail_fast() {
    let cases: [(&str, Vec<u8>); 5] = [
        (
            "key of 2^63 bytes",
            [&[0u8, 0x81][..], &(1u64 << 63).to_be_bytes(), b"abc"].concat(),
        ),
        (
            "value of 2^64-1 bytes",
            [&[0u8, 1, b'k', 0x81][..], &[0xff; 8], b"abc"].concat(),
        ),
        (
            "aux name of 4 GiB",
            [&[opcode::AUX, 0x80][..], &[0xff; 4], b"abc"].concat(),
        ),
        (
            "LZF of 2^62 compressed bytes",
            [
                &[0u8, 1, b'k', 0xc3, 0x81][..],
                &(1u64 << 62).to_be_bytes(),
                &[0x40, 0x64],
            ]
            .concat(),
        ),
        (
            "LZF of 2^40 bytes from 10",
            [
                &[0u8, 1, b'k', 0xc3, 10, 0x81][..],
                &(1u64 << 40).to_be_bytes(),
                &[0; 10],
            ]
            .concat(),
        ),
    ];
    for (what, body) in cases {
        let mut file = header();
        file.extend_from_slice(&body);
        let started = Instant::now();
        let err = load_err(&file);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{what}: took {:?}",
            started.elapsed()
        );
        assert!(
            matches!(
                err,
                LoadError::UnexpectedEof { .. } | LoadError::Corrupted { .. }
            ),
            "{what}: {err}"
        );
    }
    // The impossible LZF length is named as such.
    let mut file = header();
    file.extend_from_slice(&[0, 1, b'k', 0xc3, 10, 0x81]);
    file.extend_from_slice(&(1u64 << 40).to_be_bytes());
    let err = load_err(&file);
    assert!(
        err.to_string()
            .contains("cannot come from 10 compressed bytes"),
        "{err}"
    );
}

#[test]
fn unknown_value_type_is_named() {
    let file = file_with(&[99, 1, b'k', 1, b'v']);
    let err = load_err(&file);
    let offset = header().len();
    assert!(
        matches!(err, LoadError::UnknownType { type_code: 99, .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("test.rdb: offset {offset}: unknown value type 99")
    );
    // Code 8 sits between module and zipmap codes and was never assigned.
    assert!(matches!(
        load_err(&file_with(&[8])),
        LoadError::UnknownType { type_code: 8, .. }
    ));
}

#[test]
fn every_unstorable_type_is_refused_not_skipped() {
    // Module values and pre-2.6 zipmaps; collections load (`format_collections.rs`), and so do
    // streams (`format_streams.rs`).
    let refused = [RdbType::ModulePreGa, RdbType::Module2, RdbType::HashZipmap];
    for rdb_type in refused {
        // Whatever follows the key, the loader must stop before delivering it.
        let file = file_with(&[rdb_type.code(), 1, b'k', 0, 0, 0, 0]);
        let mut delivered = 0;
        let err = load(&file[..], "dump.rdb", 0, |_| {
            delivered += 1;
            Ok(())
        })
        .unwrap_err();
        assert!(
            matches!(err, LoadError::UnsupportedType { type_code, .. } if type_code == rdb_type.code()),
            "{err}"
        );
        assert_eq!(delivered, 0);
        assert_eq!(
            err.to_string(),
            format!(
                "dump.rdb: offset {}: value type {} ({}) is not supported yet",
                header().len(),
                rdb_type.code(),
                rdb_type.name()
            )
        );
    }
}

#[test]
fn module_aux_and_functions_are_refused() {
    let err = load_err(&file_with(&[
        opcode::MODULE_AUX,
        0x81,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        1,
    ]));
    assert!(matches!(err, LoadError::ModuleAux { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("module auxiliary data (opcode 247) is not supported")
    );

    let err = load_err(&file_with(&[opcode::FUNCTION2, 3, b'l', b'u', b'a']));
    assert!(
        matches!(err, LoadError::Functions { opcode: 245, .. }),
        "{err}"
    );
    let err = load_err(&file_with(&[opcode::FUNCTION_PRE_GA, 0]));
    assert!(
        matches!(err, LoadError::Functions { opcode: 246, .. }),
        "{err}"
    );

    // An empty library carries nothing to run.
    let (data, _) = load_into(
        &file_with(&[opcode::FUNCTION2, 0, 0, 1, b'k', 1, b'v'])[..],
        0,
    )
    .unwrap();
    assert_eq!(data.len(), 1);
}

#[test]
fn header_problems_are_named() {
    let err = load_err(b"");
    assert!(matches!(err, LoadError::UnexpectedEof { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "test.rdb: offset 0: unexpected end of file while reading the RDB header"
    );
    assert!(matches!(load_err(b"REDI"), LoadError::UnexpectedEof { .. }));
    for bad in [
        &b"HELLO WORLD"[..],
        b"redis0010",
        b"REDIS001a",
        b"\x00",
        b"GET foo\r\n",
    ] {
        let err = load_err(bad);
        assert!(matches!(err, LoadError::BadMagic { .. }), "{bad:?}: {err}");
        assert_eq!(
            err.to_string(),
            "test.rdb: offset 0: not an RDB file (bad magic)"
        );
    }
    for (version, digits) in [(11u32, b"0011"), (0, b"0000"), (9999, b"9999")] {
        let mut file = b"REDIS".to_vec();
        file.extend_from_slice(digits);
        let err = load_err(&finish_rdb(file));
        assert!(matches!(err, LoadError::UnsupportedVersion { version: v, .. } if v == version));
        assert_eq!(
            err.to_string(),
            format!(
                "test.rdb: offset 5: unsupported RDB version {version} (versions 1 to 10 can be loaded)"
            )
        );
    }
}

#[test]
fn checksum_rules_follow_redis() {
    let file = small_valid_file();
    let crc_at = file.len() - 8;

    let mut bad = file.clone();
    bad[crc_at] ^= 1;
    let err = load_err(&bad);
    let LoadError::ChecksumMismatch {
        expected,
        got,
        offset,
        ..
    } = err
    else {
        panic!("{err}")
    };
    assert_eq!(offset, crc_at as u64);
    assert_eq!(
        expected,
        u64::from_le_bytes(file[crc_at..].try_into().unwrap())
    );
    assert_eq!(got, expected ^ 1);
    assert!(load_err(&bad).to_string().starts_with(&format!(
        "test.rdb: offset {crc_at}: bad CRC64 checksum (expected 0x"
    )),);

    // A zero footer means "checksum disabled": loaded, but not verified.
    let mut unchecked = file.clone();
    unchecked[crc_at..].fill(0);
    let (_, summary) = load_into(&unchecked[..], NOW_MS).unwrap();
    assert!(!summary.checksum_verified);

    // A zero footer still covers nothing else: a corrupt body is still caught where possible.
    unchecked[9] = b'!';
    assert!(load_into(&unchecked[..], NOW_MS).is_err());
}

#[test]
fn files_before_version_5_have_no_checksum() {
    let mut file = b"REDIS0004".to_vec();
    file.extend_from_slice(&[opcode::SELECTDB, 0, 0, 1, b'k', 1, b'v', opcode::EOF]);
    let (data, summary) = load_into(&file[..], 0).unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(summary.rdb_version, 4);
    assert!(!summary.checksum_verified);
    // A footer on such a file is trailing data.
    file.extend_from_slice(&[1; 8]);
    assert!(matches!(load_err(&file), LoadError::TrailingData { .. }));
}

#[test]
fn old_and_optional_key_opcodes_are_understood() {
    let mut body = vec![opcode::SELECTDB, 2];
    // EXPIRETIME in seconds (old files), then IDLE and FREQ before the key.
    body.push(opcode::EXPIRETIME);
    body.extend_from_slice(&2_000_000_000i32.to_le_bytes());
    body.extend_from_slice(&[opcode::IDLE, 0x40, 0x10, opcode::FREQ, 200]);
    body.extend_from_slice(&[0, 1, b'a', 1, b'1']);
    // FREQ then EXPIRETIME_MS: order among key prefixes does not matter.
    body.extend_from_slice(&[opcode::FREQ, 1, opcode::EXPIRETIME_MS]);
    body.extend_from_slice(&4_000_000_000_000i64.to_le_bytes());
    body.extend_from_slice(&[0, 1, b'b', 1, b'2']);
    // A negative expiry is long past: skipped.
    body.push(opcode::EXPIRETIME_MS);
    body.extend_from_slice(&(-5i64).to_le_bytes());
    body.extend_from_slice(&[0, 1, b'c', 1, b'3']);
    let (data, summary) = load_into(&file_with(&body)[..], NOW_MS).unwrap();
    assert_eq!(
        data.get(&(2, b"a".to_vec())),
        Some(&(b"1".to_vec(), Some(2_000_000_000_000)))
    );
    assert_eq!(
        data.get(&(2, b"b".to_vec())),
        Some(&(b"2".to_vec(), Some(4_000_000_000_000)))
    );
    assert_eq!(data.len(), 2);
    assert_eq!(summary.keys_expired_skipped, 1);
}

#[test]
fn malformed_encodings_are_corrupted_errors() {
    let cases: [(&str, Vec<u8>, &str); 7] = [
        (
            "length marker 0x82",
            vec![0, 0x82, 0, 0, 0, 1, b'k', 1, b'v'],
            "unknown length encoding 0x82",
        ),
        (
            "string encoding 4",
            vec![0, 0xc4, 1, b'v'],
            "unknown string encoding 4",
        ),
        (
            "encoded SELECTDB",
            vec![opcode::SELECTDB, 0xc0, 1],
            "a string encoding where a database number belongs",
        ),
        (
            "database beyond u32",
            [&[opcode::SELECTDB, 0x81][..], &(1u64 << 32).to_be_bytes()].concat(),
            "database number 4294967296 is out of range",
        ),
        (
            "LZF back reference",
            vec![0, 1, b'k', 0xc3, 2, 3, 0x20, 0],
            "LZF back reference before the start",
        ),
        (
            "LZF too short",
            vec![0, 1, b'k', 0xc3, 2, 9, 0, b'x'],
            "LZF data is shorter than its declared length",
        ),
        (
            "expiry then EOF",
            [&[opcode::EXPIRETIME_MS][..], &[0; 8]].concat(),
            "not followed by a key",
        ),
    ];
    for (what, body, reason) in cases {
        let err = load_err(&file_with(&body));
        assert!(matches!(err, LoadError::Corrupted { .. }), "{what}: {err}");
        assert!(err.to_string().contains(reason), "{what}: {err}");
    }
    let err = load_err(&file_with(&[opcode::FREQ, 1, opcode::SELECTDB, 1]));
    assert!(err.to_string().contains("not followed by a key"), "{err}");
}

#[test]
fn on_entry_errors_stop_the_load_with_the_entry_offset() {
    let mut body = vec![0, 1, b'a', 1, b'1'];
    let second = header().len() + body.len();
    body.push(opcode::EXPIRETIME_MS);
    body.extend_from_slice(&i64::MAX.to_le_bytes());
    body.extend_from_slice(&[0, 1, b'b', 1, b'2', 0, 1, b'c', 1, b'3']);
    let file = file_with(&body);
    let mut seen = Vec::new();
    let err = load(&file[..], "dump.rdb", 0, |entry: LoadedEntry| {
        seen.push(entry.key.clone());
        if entry.key == "b" {
            Err(LoadError::rejected("no room for key b"))
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    assert_eq!(seen, ["a", "b"]);
    assert_eq!(
        err.to_string(),
        format!("dump.rdb: offset {second}: entry refused: no room for key b")
    );
}

/// A reader that fails with an OS error after `ok_bytes` bytes.
struct FailingReader {
    data: Vec<u8>,
    ok_bytes: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ok_bytes == 0 {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let n = buf.len().min(self.ok_bytes).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data.drain(..n);
        self.ok_bytes -= n;
        Ok(n)
    }
}

#[test]
fn io_errors_carry_the_os_error() {
    let file = small_valid_file();
    let err = load_into(
        FailingReader {
            data: file.clone(),
            ok_bytes: 20,
        },
        NOW_MS,
    )
    .unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }), "{err}");
    assert!(err.to_string().starts_with("test.rdb: offset "), "{err}");
    assert!(
        err.to_string()
            .contains("I/O error: Input/output error (os error 5)"),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some());

    // Under zstd, a failing file is still an I/O error, not a decompression error.
    let compressed = zstd_two_frames(&file, 50);
    let err = load_into(
        FailingReader {
            data: compressed,
            ok_bytes: 30,
        },
        NOW_MS,
    )
    .unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }), "{err}");
    assert!(err.file().ends_with("(zstd-decompressed)"), "{err}");
}

#[test]
fn corrupt_zstd_is_a_decompression_error() {
    let mut file = ZSTD_MAGIC.to_vec();
    file.extend_from_slice(&[0xff; 64]);
    let err = load_err(&file);
    assert!(matches!(err, LoadError::Decompress { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("test.rdb (zstd-decompressed): offset 0: zstd decompression failed: "),
        "{err}"
    );
}
