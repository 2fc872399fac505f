//! The CRC-64 footer of an RDB file.
//!
//! Redis uses CRC-64/Jones (reflected, polynomial `0xad93d23594c935a9`, initial value 0, no final
//! xor; the check value of "123456789" is `0xe9c6d914c4b8d9ca`), which the `crc-fast` crate
//! ships as `CrcAlgorithm::Crc64Redis`, computed with carry-less multiplication (PCLMULQDQ on
//! x86_64, PMULL on aarch64) where the CPU has it: the checksum runs over every byte of every
//! snapshot and every load, and the SIMD path is about 5x the slice-by-16 table. The sum covers
//! every byte from the magic through the EOF opcode and is stored after it as 8 little-endian
//! bytes; a stored 0 means "checksum disabled" (`rdbchecksum no`).

use crc_fast::{CrcAlgorithm, Digest};

/// A running CRC-64/Jones over an RDB stream, fed in order.
#[derive(Clone)]
pub struct Checksum {
    digest: Digest,
}

impl Checksum {
    /// A checksum over zero bytes.
    pub fn new() -> Self {
        Checksum {
            digest: Digest::new(CrcAlgorithm::Crc64Redis),
        }
    }

    /// Feeds the next `bytes` of the stream.
    pub fn update(&mut self, bytes: &[u8]) {
        self.digest.update(bytes);
    }

    /// The checksum of everything fed so far; more bytes may still be fed afterwards.
    pub fn finish(&self) -> u64 {
        self.digest.finalize()
    }

    /// The checksum of `a || b` from the checksums of `a` and `b` and the length of `b`, in
    /// O(log len_b) time, without the bytes. Lets serializer threads checksum their own chunks in
    /// parallel and the writer chain them in file order.
    pub fn combine(crc_a: u64, crc_b: u64, len_b: u64) -> u64 {
        crc_fast::checksum_combine(CrcAlgorithm::Crc64Redis, crc_a, crc_b, len_b)
    }
}

impl Default for Checksum {
    fn default() -> Self {
        Checksum::new()
    }
}

impl std::fmt::Debug for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checksum")
            .field("so_far", &format_args!("{:#018x}", self.finish()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_redis_crc64_check_value() {
        // Redis's own self-test (crc64.c): crc64(0, "123456789") == 0xe9c6d914c4b8d9ca.
        let mut checksum = Checksum::new();
        checksum.update(b"123456789");
        assert_eq!(checksum.finish(), 0xe9c6_d914_c4b8_d9ca);
    }

    fn crc_of(bytes: &[u8]) -> u64 {
        let mut checksum = Checksum::new();
        checksum.update(bytes);
        checksum.finish()
    }

    #[test]
    fn combine_equals_checksum_of_the_concatenation() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        for split in [0, 1, 7, 8, 9, 255, 256, 1000, 4999, 5000] {
            let (a, b) = data.split_at(split);
            assert_eq!(
                Checksum::combine(crc_of(a), crc_of(b), b.len() as u64),
                crc_of(&data),
                "split at {split}"
            );
        }
        // Chaining many chunks, as a writer would.
        let mut running = 0;
        for chunk in data.chunks(333) {
            running = Checksum::combine(running, crc_of(chunk), chunk.len() as u64);
        }
        assert_eq!(running, crc_of(&data));
    }

    /// CRC-64/Jones bit by bit, as crc64.c defines it: the reference for the SIMD path.
    fn bitwise(bytes: &[u8]) -> u64 {
        const POLY_REFLECTED: u64 = 0x95ac_9329_ac4b_c9b5;
        let mut crc = 0u64;
        for &byte in bytes {
            crc ^= u64::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ POLY_REFLECTED
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    #[test]
    fn simd_path_matches_the_bitwise_definition_at_every_length_and_alignment() {
        let data: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        for (start, len) in [
            (0, 0),
            (1, 15),
            (3, 16),
            (5, 127),
            (0, 256),
            (7, 4097),
            (9, 69_000),
        ] {
            let slice = &data[start..start + len];
            assert_eq!(crc_of(slice), bitwise(slice), "offset {start}, {len} bytes");
        }
    }

    #[test]
    fn incremental_updates_equal_one_shot_and_finish_does_not_consume() {
        let data: Vec<u8> = (0..10_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut one_shot = Checksum::new();
        one_shot.update(&data);
        let mut pieces = Checksum::new();
        for chunk in data.chunks(7) {
            pieces.update(chunk);
            let _ = pieces.finish();
        }
        assert_eq!(pieces.finish(), one_shot.finish());
        assert_eq!(Checksum::new().finish(), 0);
    }
}
