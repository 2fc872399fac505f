//! Encode → load round trips: random keys, values and expiries across databases, with LZF on
//! and off, plain and as concatenated zstd frames, read through every kind of short read.

mod format_support;

use std::io::{self, Read};

use forkless_snapshot::format::{
    EncodeOptions, FORKLESS_VERSION, RDB_VERSION, REDIS_VERSION_COMPAT,
};
use format_support::{
    Dataset, NOW_MS, encode_rdb, live_at, load_into, varied_dataset, zstd_two_frames,
};
use proptest::prelude::*;

fn bytes_of_any_shape() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..40),
        2 => any::<i64>().prop_map(|n| n.to_string().into_bytes()),
        2 => (-70_000i64..70_000).prop_map(|n| n.to_string().into_bytes()),
        1 => prop_oneof![Just(b"-0".to_vec()), Just(b"007".to_vec()), Just(b"+1".to_vec())],
        2 => (proptest::collection::vec(any::<u8>(), 1..6), 0usize..3000)
            .prop_map(|(pattern, len)| pattern.iter().copied().cycle().take(len).collect()),
        1 => proptest::collection::vec(any::<u8>(), 0..20_000),
    ]
}

fn expiry() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        3 => Just(None),
        2 => (NOW_MS..NOW_MS + (1u64 << 40)).prop_map(Some),
        1 => (0..NOW_MS).prop_map(Some), // already expired at NOW_MS: skipped on load
        1 => Just(Some(NOW_MS)),          // expires exactly now: still loaded, as in Redis
    ]
}

fn dataset() -> impl Strategy<Value = Dataset> {
    let db = prop_oneof![8 => 0u32..16, 1 => Just(63u32), 1 => Just(u32::MAX)];
    proptest::collection::btree_map(
        (db, bytes_of_any_shape()),
        (bytes_of_any_shape(), expiry()),
        0..60,
    )
}

/// A reader that hands out the input in the given chunk sizes (cycled), and fails with
/// `Interrupted` before every third chunk, as a signal-interrupted read may.
struct ChoppyReader<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    calls: usize,
}

impl Read for ChoppyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.calls % 3 == 0 {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        let size = self.sizes[self.calls % self.sizes.len()]
            .max(1)
            .min(buf.len());
        let n = size.min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_load_gives_back_every_live_entry(
        data in dataset(),
        compress in any::<bool>(),
        split in any::<prop::sample::Index>(),
    ) {
        let bytes = encode_rdb(&data, &EncodeOptions { compress_strings: compress });
        let expected = live_at(&data, NOW_MS);

        let (loaded, summary) = load_into(&bytes[..], NOW_MS).unwrap();
        prop_assert_eq!(&loaded, &expected);
        prop_assert_eq!(summary.keys_loaded, expected.len() as u64);
        prop_assert_eq!(summary.keys_expired_skipped, (data.len() - expected.len()) as u64);
        prop_assert_eq!(summary.bytes_read, bytes.len() as u64);
        prop_assert!(summary.checksum_verified);
        prop_assert_eq!(summary.rdb_version, RDB_VERSION);

        // The same stream as two independent zstd frames split anywhere.
        let compressed = zstd_two_frames(&bytes, split.index(bytes.len() + 1));
        let (from_zstd, zstd_summary) = load_into(&compressed[..], NOW_MS).unwrap();
        prop_assert_eq!(&from_zstd, &expected);
        prop_assert_eq!(zstd_summary, summary);

        // Loading at time 0 keeps every key.
        let (everything, _) = load_into(&bytes[..], 0).unwrap();
        prop_assert_eq!(everything, data);
    }

    #[test]
    fn short_and_interrupted_reads_load_the_same(
        data in dataset(),
        sizes in proptest::collection::vec(1usize..300, 1..8),
        zstd in any::<bool>(),
    ) {
        let mut bytes = encode_rdb(&data, &EncodeOptions::default());
        if zstd {
            bytes = zstd_two_frames(&bytes, bytes.len() / 2);
        }
        let reader = ChoppyReader { data: &bytes, sizes, calls: 0 };
        let (loaded, _) = load_into(reader, NOW_MS).unwrap();
        prop_assert_eq!(loaded, live_at(&data, NOW_MS));
    }
}

#[test]
fn compression_shrinks_compressible_data_and_both_settings_load_the_same() {
    let data = varied_dataset(7, 500, true);
    let compressed = encode_rdb(
        &data,
        &EncodeOptions {
            compress_strings: true,
        },
    );
    let plain = encode_rdb(
        &data,
        &EncodeOptions {
            compress_strings: false,
        },
    );
    assert!(
        compressed.len() * 10 < plain.len() * 9,
        "LZF saved too little: {} vs {} bytes",
        compressed.len(),
        plain.len()
    );
    let (from_compressed, _) = load_into(&compressed[..], NOW_MS).unwrap();
    let (from_plain, _) = load_into(&plain[..], NOW_MS).unwrap();
    assert_eq!(from_compressed, live_at(&data, NOW_MS));
    assert_eq!(from_plain, from_compressed);
}

#[test]
fn summary_reports_header_aux_fields() {
    let bytes = encode_rdb(&Dataset::new(), &EncodeOptions::default());
    let (loaded, summary) = load_into(&bytes[..], NOW_MS).unwrap();
    assert!(loaded.is_empty());
    let aux: Vec<(&str, &[u8])> = summary
        .aux
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_slice()))
        .collect();
    assert_eq!(
        aux,
        [
            ("redis-ver", REDIS_VERSION_COMPAT.as_bytes()),
            ("redis-bits", b"64".as_slice()),
            ("ctime", b"1700000000".as_slice()),
            ("used-mem", b"123456".as_slice()),
            ("aof-base", b"0".as_slice()),
            ("forkless-ver", FORKLESS_VERSION.as_bytes()),
        ]
    );
}

#[test]
fn encoding_is_deterministic_across_threads_and_history() {
    // The LZF table is per thread and never cleared; output must not depend on either.
    let data = varied_dataset(11, 300, false);
    let first = encode_rdb(&data, &EncodeOptions::default());
    let again = encode_rdb(&data, &EncodeOptions::default());
    let other_thread = std::thread::spawn(move || encode_rdb(&data, &EncodeOptions::default()))
        .join()
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(first, other_thread);
}
