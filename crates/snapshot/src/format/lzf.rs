//! LZF, the compression Redis applies to strings longer than 20 bytes in RDB files.
//!
//! A safe port of liblzf 3.6 (the version Redis vendors as `lzf_c.c`/`lzf_d.c`), format:
//! ```text
//! 000LLLLL <L+1 literal bytes>           literal run of 1..=32 bytes
//! LLLooooo oooooooo                      back reference, length L+2 (L in 1..=6)
//! 111ooooo LLLLLLLL oooooooo             back reference, length L+9 (up to 264)
//! ```
//! where the distance back is `o + 1` (at most 8192).
//!
//! Why not the `lzf` crate that `Cargo.toml` carries: its `compress` allocates and zero-fills a
//! fresh 512 KiB hash table plus an output `Vec` on every call, which at one call per string would
//! dominate encoding; it cannot write into a caller's buffer; its `decompress` zero-fills the full
//! claimed length up front, an allocation sized by an untrusted field; and the crate is
//! deprecated. This module keeps one hash table per [`Compressor`] and never clears it (see
//! [`Compressor::base`]), writes into any `&mut [u8]`, and decompresses into a `Vec` whose length
//! is bounded by the caller. Both directions are checked against real Redis in the tests
//! (`format_redis.rs`: Redis loads our LZF strings; `format_golden.rs`: we load Redis's, and
//! our output is byte-identical to Redis's for every string of its golden file).

/// Log2 of the hash table size. liblzf uses 16 (64 Ki slots), but its window is only 8 KiB, so
/// 16 Ki slots lose almost nothing in ratio while the 64 KiB table stays in L2 cache.
const HASH_LOG: u32 = 14;
const HASH_SIZE: usize = 1 << HASH_LOG;
/// Longest literal run one control byte can describe.
const MAX_LITERAL: usize = 1 << 5;
/// Farthest distance a back reference can reach.
const MAX_OFFSET: usize = 1 << 13;
/// Longest back reference: 7 + 255 + 2.
const MAX_REF: usize = (1 << 8) + (1 << 3);

/// An input whose first `GIVE_UP_AT` bytes compressed to no fewer bytes is given up on there
/// (stored raw by the caller) instead of at its end. liblzf gives up only when the output
/// outgrows its buffer, near the end of the input, so random or already-compressed values
/// (images, gzip, encrypted blobs) cost a full compression attempt each: 75% of the CPU of a
/// save of 1000-byte random values. Real text and JSON repeat within their first few dozen
/// bytes, so they are unaffected; what is lost is the compression of a value whose first 256
/// bytes do not repeat but whose rest does (it is then saved raw, as loadable as ever). This is
/// the one place where the output can differ from Redis's.
const GIVE_UP_AT: usize = 256;

/// The most bytes one compressed byte can expand to: a 3-byte back reference yields 264 bytes.
/// A compressed string whose claimed length exceeds `MAX_EXPANSION * compressed_len` is corrupt,
/// which lets the loader refuse absurd lengths before allocating for them.
pub(crate) const MAX_EXPANSION: u64 = 88;

/// An LZF compressor that keeps its hash table between calls (allocated on the first call).
#[derive(Debug, Clone, Default)]
pub(crate) struct Compressor {
    /// `HASH_SIZE` slots (allocated on first use), each `base + position` of the last input
    /// position whose next 3 bytes hashed there.
    table: Vec<u32>,
    /// Positions of the current call are stored as `base + position`. Every slot written by an
    /// earlier call is `< base`, and position 0 is never a valid reference (liblzf's rule), so
    /// "slot > base" means "written by this call" and the table never needs clearing: the output
    /// is the same as with a zeroed table, whatever was compressed before. Wraps by clearing.
    base: u32,
}

fn first_two(input: &[u8], pos: usize) -> u32 {
    (u32::from(input[pos]) << 8) | u32::from(input[pos + 1])
}

fn next_hash(hash: u32, input: &[u8], pos: usize) -> u32 {
    (hash << 8) | u32::from(input[pos + 2])
}

fn slot_of(hash: u32) -> usize {
    ((hash >> (3 * 8 - HASH_LOG)).wrapping_sub(hash.wrapping_mul(5)) as usize) & (HASH_SIZE - 1)
}

impl Compressor {
    /// Compresses `input` into `output` and returns the compressed length, or `None` if the
    /// result would not fit in `output` (the caller then stores the string uncompressed, as
    /// Redis does when `lzf_compress` returns 0) or `input` is shorter than 3 or longer than
    /// `u32::MAX` bytes.
    pub(crate) fn compress(&mut self, input: &[u8], output: &mut [u8]) -> Option<usize> {
        let in_len = input.len();
        let in_len_u32 = u32::try_from(in_len).ok()?;
        if in_len < 3 || output.is_empty() {
            return None;
        }
        if self.table.is_empty() {
            self.table = vec![0; HASH_SIZE];
        }
        let base = match self.base.checked_add(in_len_u32) {
            Some(next_base) => std::mem::replace(&mut self.base, next_base),
            None => {
                self.table.fill(0);
                self.base = in_len_u32;
                0
            }
        };
        let table = &mut self.table[..];
        let out_len = output.len();

        let mut ip = 0usize;
        // `output[op - lit - 1]` is the control byte of the literal run in progress.
        let mut op = 1usize;
        let mut lit = 0usize;
        let mut hash = first_two(input, 0);

        while ip + 2 < in_len {
            hash = next_hash(hash, input, ip);
            let slot = slot_of(hash);
            let previous = table[slot];
            // `ip < in_len <= u32::MAX - base`, so this cannot overflow.
            table[slot] = base + ip as u32;
            let reference = (previous > base).then(|| (previous - base) as usize);
            let matched = reference.filter(|&reference| {
                ip - reference - 1 < MAX_OFFSET
                    && input[reference..reference + 3] == input[ip..ip + 3]
            });
            if let Some(reference) = matched {
                let offset = ip - reference - 1;
                let max_len = (in_len - ip - 2).min(MAX_REF);
                // Room for the back reference (up to 3 bytes) and the next control byte.
                if op + 3 + 1 >= out_len && op - usize::from(lit == 0) + 3 + 1 >= out_len {
                    return None;
                }
                // Close the literal run, or take back its unused control byte.
                output[op - lit - 1] = (lit as u8).wrapping_sub(1);
                op -= usize::from(lit == 0);

                // Count the matching bytes. liblzf first compares up to 16 bytes without
                // checking `max_len` when `max_len > 16` (an unrolled loop), which can extend a
                // match up to 2 bytes further near the end of the input; done the same way so
                // that the output is byte-identical to Redis's. `max_len > 16` means at least
                // 19 bytes remain from `ip`, so index `ip + 18` is in bounds.
                let mut len = 2;
                let mut mismatched = false;
                if max_len > 16 {
                    for _ in 0..16 {
                        len += 1;
                        if input[reference + len] != input[ip + len] {
                            mismatched = true;
                            break;
                        }
                    }
                }
                if !mismatched {
                    loop {
                        len += 1;
                        if len >= max_len || input[reference + len] != input[ip + len] {
                            break;
                        }
                    }
                }
                len -= 2; // now the number of bytes matched minus 2
                ip += 1;
                if len < 7 {
                    output[op] = ((offset >> 8) + (len << 5)) as u8;
                    op += 1;
                } else {
                    output[op] = ((offset >> 8) + (7 << 5)) as u8;
                    output[op + 1] = (len - 7) as u8;
                    op += 2;
                }
                output[op] = offset as u8;
                op += 2; // the byte after is the next run's control byte
                lit = 0;
                ip += len + 1;
                if ip + 2 >= in_len {
                    break;
                }
                // Hash the last two positions of the match so that later data can refer to them.
                ip -= 2;
                hash = first_two(input, ip);
                hash = next_hash(hash, input, ip);
                table[slot_of(hash)] = base + ip as u32;
                ip += 1;
                hash = next_hash(hash, input, ip);
                table[slot_of(hash)] = base + ip as u32;
                ip += 1;
            } else {
                if op >= out_len || (ip == GIVE_UP_AT && op >= ip) {
                    return None;
                }
                lit += 1;
                output[op] = input[ip];
                op += 1;
                ip += 1;
                if lit == MAX_LITERAL {
                    output[op - lit - 1] = (lit - 1) as u8;
                    lit = 0;
                    op += 1;
                }
            }
        }

        // At most 2 literal bytes and one control byte remain.
        if op + 3 > out_len {
            return None;
        }
        while ip < in_len {
            lit += 1;
            output[op] = input[ip];
            op += 1;
            ip += 1;
            if lit == MAX_LITERAL {
                output[op - lit - 1] = (lit - 1) as u8;
                lit = 0;
                op += 1;
            }
        }
        output[op - lit - 1] = (lit as u8).wrapping_sub(1);
        op -= usize::from(lit == 0);
        Some(op)
    }
}

/// Why compressed data was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecompressError {
    /// A literal run or back reference is cut off by the end of the compressed data.
    Truncated,
    /// A back reference points before the start of the output.
    BadReference,
    /// The data decompresses to more bytes than declared.
    TooLong,
    /// The data decompresses to fewer bytes than declared.
    TooShort,
}

impl DecompressError {
    /// A description for error messages.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            DecompressError::Truncated => "LZF data ends inside an instruction",
            DecompressError::BadReference => "LZF back reference before the start of the string",
            DecompressError::TooLong => "LZF data is longer than its declared length",
            DecompressError::TooShort => "LZF data is shorter than its declared length",
        }
    }
}

/// Decompresses `input`, which must expand to exactly `expected_len` bytes, appending them to
/// `output` (which must be empty; capacity is reserved for `expected_len`, so the caller must
/// have bounded it, see [`MAX_EXPANSION`]).
pub(crate) fn decompress(
    input: &[u8],
    expected_len: usize,
    output: &mut Vec<u8>,
) -> Result<(), DecompressError> {
    debug_assert!(output.is_empty());
    output.reserve_exact(expected_len);
    let mut ip = 0usize;
    while let Some(&control) = input.get(ip) {
        ip += 1;
        let control = usize::from(control);
        if control < MAX_LITERAL {
            let run = control + 1;
            let literal = input.get(ip..ip + run).ok_or(DecompressError::Truncated)?;
            if output.len() + run > expected_len {
                return Err(DecompressError::TooLong);
            }
            output.extend_from_slice(literal);
            ip += run;
        } else {
            let mut len = control >> 5;
            if len == 7 {
                len += usize::from(*input.get(ip).ok_or(DecompressError::Truncated)?);
                ip += 1;
            }
            let low = usize::from(*input.get(ip).ok_or(DecompressError::Truncated)?);
            ip += 1;
            let distance = ((control & 0x1f) << 8) + low + 1;
            let total = len + 2;
            let start = output
                .len()
                .checked_sub(distance)
                .ok_or(DecompressError::BadReference)?;
            if output.len() + total > expected_len {
                return Err(DecompressError::TooLong);
            }
            // The source may overlap what is being written (distance < total): the output is
            // periodic with period `distance` from `start`, so copying from `start` in chunks no
            // longer than what already exists reproduces the byte-at-a-time semantics.
            let mut remaining = total;
            while remaining > 0 {
                let chunk = remaining.min(output.len() - start);
                output.extend_from_within(start..start + chunk);
                remaining -= chunk;
            }
        }
    }
    if output.len() == expected_len {
        Ok(())
    } else {
        Err(DecompressError::TooShort)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(compressor: &mut Compressor, data: &[u8]) -> Option<usize> {
        let mut compressed = vec![0; data.len().saturating_sub(4).max(1)];
        let compressed_len = compressor.compress(data, &mut compressed)?;
        assert!(compressed_len <= compressed.len());
        let mut output = Vec::new();
        decompress(&compressed[..compressed_len], data.len(), &mut output).unwrap();
        assert_eq!(output, data);
        Some(compressed_len)
    }

    /// `len` xorshift bytes from `seed`: nothing for LZF to find.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn compresses_repetitive_data_and_refuses_incompressible() {
        let mut compressor = Compressor::default();
        let compressible = vec![b'a'; 1000];
        let len = round_trip(&mut compressor, &compressible).unwrap();
        assert!(len < 30, "1000 x 'a' compressed to {len} bytes");
        assert_eq!(
            round_trip(&mut compressor, &noise(0x9E37_79B9_7F4A_7C15, 1000)),
            None
        );
    }

    #[test]
    fn gives_up_on_an_incompressible_start() {
        let mut compressor = Compressor::default();
        let mut out = vec![0; 8192];
        // Random bytes past GIVE_UP_AT, then a long repetitive tail that liblzf would have
        // compressed: given up on, so stored raw.
        let mut late = noise(1, GIVE_UP_AT + 64);
        late.extend_from_slice(&[b'z'; 4000]);
        assert_eq!(compressor.compress(&late, &mut out), None);
        // The same tail after random bytes shorter than GIVE_UP_AT still compresses.
        let mut early = noise(2, GIVE_UP_AT - 64);
        early.extend_from_slice(&[b'z'; 4000]);
        let len = round_trip(&mut compressor, &early).unwrap();
        assert!(
            len < GIVE_UP_AT + 100,
            "{} bytes compressed to {len}",
            early.len()
        );
        // Text that repeats within its first bytes compresses whatever its length.
        let text = br#"{"id":1,"name":"forkless","tags":["kv","redis"]},"#.repeat(100);
        assert!(round_trip(&mut compressor, &text).unwrap() < text.len() / 4);
    }

    #[test]
    fn output_does_not_depend_on_earlier_calls() {
        let data = b"abcabcabcabcabcabcabcabcXYZabcabcabcabc-the-end".repeat(3);
        let mut fresh = Compressor::default();
        let mut fresh_out = vec![0; data.len()];
        let fresh_len = fresh.compress(&data, &mut fresh_out).unwrap();
        let mut used = Compressor::default();
        let mut scratch = vec![0; 4096];
        for seed in 0..50u8 {
            let other: Vec<u8> = (0..300)
                .map(|i: u32| (i as u8).wrapping_mul(seed) ^ seed)
                .collect();
            let _ = used.compress(&other, &mut scratch);
        }
        let mut used_out = vec![0; data.len()];
        let used_len = used.compress(&data, &mut used_out).unwrap();
        assert_eq!(fresh_out[..fresh_len], used_out[..used_len]);
    }

    #[test]
    fn base_wraps_by_clearing_the_table() {
        let mut compressor = Compressor::default();
        let data = b"hello hello hello hello hello hello".to_vec();
        let expected = round_trip(&mut compressor, &data);
        compressor.base = u32::MAX - 10;
        assert_eq!(round_trip(&mut compressor, &data), expected);
        assert_eq!(round_trip(&mut compressor, &data), expected);
    }

    #[test]
    fn decompress_rejects_malformed_input() {
        let mut out = Vec::new();
        assert_eq!(
            decompress(&[5, b'a'], 6, &mut out),
            Err(DecompressError::Truncated)
        );
        out.clear();
        assert_eq!(
            decompress(&[0x20, 0x00], 3, &mut out),
            Err(DecompressError::BadReference)
        );
        out.clear();
        assert_eq!(
            decompress(&[0, b'a', 0xe0], 300, &mut out),
            Err(DecompressError::Truncated)
        );
        out.clear();
        assert_eq!(
            decompress(&[1, b'a', b'b'], 1, &mut out),
            Err(DecompressError::TooLong)
        );
        out.clear();
        assert_eq!(
            decompress(&[1, b'a', b'b'], 3, &mut out),
            Err(DecompressError::TooShort)
        );
        out.clear();
        // One literal then a maximal back reference of distance 1: 1 + 264 bytes from 4.
        assert_eq!(decompress(&[0, b'x', 0xe0, 255, 0], 265, &mut out), Ok(()));
        assert_eq!(out, vec![b'x'; 265]);
        assert!(265 <= MAX_EXPANSION as usize * 4);
    }

    fn repetitive_bytes() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec(any::<u8>(), 1..12),
            1usize..3000,
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..20),
        )
            .prop_map(|(pattern, len, edits)| {
                let mut data: Vec<u8> = pattern.iter().copied().cycle().take(len).collect();
                for (pos, byte) in edits {
                    let idx = pos % data.len();
                    data[idx] = byte;
                }
                data
            })
    }

    proptest! {
        #[test]
        fn round_trips_any_input(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut compressor = Compressor::default();
            round_trip(&mut compressor, &data);
        }

        #[test]
        fn round_trips_repetitive_input_in_tight_buffers(
            data in repetitive_bytes(),
            slack in 0usize..8,
        ) {
            let mut compressor = Compressor::default();
            round_trip(&mut compressor, &data);
            // Every output size down to 1 byte either fits or is refused, never overflows.
            let mut output = vec![0; data.len().saturating_sub(slack).max(1)];
            if let Some(len) = compressor.compress(&data, &mut output) {
                let mut back = Vec::new();
                decompress(&output[..len], data.len(), &mut back).unwrap();
                prop_assert_eq!(back, data);
            }
        }

        #[test]
        fn decompress_never_panics(
            input in proptest::collection::vec(any::<u8>(), 0..200),
            expected_len in 0usize..2000,
        ) {
            let mut output = Vec::new();
            if decompress(&input, expected_len, &mut output).is_ok() {
                prop_assert_eq!(output.len(), expected_len);
            }
        }
    }
}
