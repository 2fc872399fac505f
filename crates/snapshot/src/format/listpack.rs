//! Listpacks: the blob Redis 7.0 stores small hashes and sorted sets in, and each node of a list.
//!
//! ```text
//! +-------------+---------------+---------+---------+-----+------+
//! | total [4 LE]| n_elems [2 LE]| entry 1 | entry 2 | ... | 0xFF |
//! +-------------+---------------+---------+---------+-----+------+
//! entry: encoding [+ length] [data] backlen
//!
//! 0xxxxxxx                        7-bit unsigned integer
//! 10LLLLLL <L bytes>              string of up to 63 bytes
//! 110xxxxx xxxxxxxx               13-bit signed integer (two's complement, big-endian)
//! 1110LLLL LLLLLLLL <L bytes>     string of up to 4095 bytes (length big-endian)
//! 11110000 [4 LE] <L bytes>       string of up to 2^32-1 bytes
//! 11110001 [2 LE]                 16-bit signed integer
//! 11110010 [3 LE]                 24-bit signed integer
//! 11110011 [4 LE]                 32-bit signed integer
//! 11110100 [8 LE]                 64-bit signed integer
//! 11111111                        end of the listpack (not an entry)
//! ```
//! `backlen` is the size of encoding + length + data, written so that it can be read from right
//! to left: 7 bits per byte, most significant group first, every byte but the first with its top
//! bit set (Redis's `lpEncodeBacklen`). `n_elems` is 65535 when the count did not fit.
//!
//! The blob comes from an untrusted file. [`Listpack::new`] checks the header against the blob's
//! real length, and the iterator checks every entry as Redis's `lpValidateIntegrity` does (entry
//! inside the blob, backlen consistent, terminator exactly at the end, count as declared) before
//! yielding it. Nothing here allocates.

/// One listpack element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Element<'a> {
    /// A string element.
    Str(&'a [u8]),
    /// An integer element; as a Redis value it is its decimal string.
    Int(i64),
}

/// Bytes of the header: total length and element count.
const HEADER_SIZE: usize = 6;
/// The terminator byte.
const EOF: u8 = 0xff;
/// `n_elems` when the count is too large for 16 bits.
const COUNT_UNKNOWN: u16 = u16::MAX;

/// A checked walk over a listpack's elements. Yields `Err` (once, then `None`) at the first
/// malformed entry, or at the end if the declared count does not match.
#[derive(Debug, Clone)]
pub(crate) struct Listpack<'a> {
    blob: &'a [u8],
    /// Offset of the next entry.
    pos: usize,
    /// Elements yielded so far.
    index: usize,
    declared: u16,
    done: bool,
}

impl<'a> Listpack<'a> {
    /// Checks the header: at least header and terminator, the total-bytes field equal to the
    /// blob's length, and the last byte the terminator.
    pub(crate) fn new(blob: &'a [u8]) -> Result<Listpack<'a>, String> {
        let (Some(total), Some(declared), Some(&last)) = (
            blob.get(..4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes),
            blob.get(4..6)
                .and_then(|b| b.try_into().ok())
                .map(u16::from_le_bytes),
            blob.last(),
        ) else {
            return Err(format!(
                "listpack of {} bytes is shorter than its header",
                blob.len()
            ));
        };
        if blob.len() < HEADER_SIZE + 1 {
            return Err(format!(
                "listpack of {} bytes is shorter than its header",
                blob.len()
            ));
        }
        if u64::from(total) != blob.len() as u64 {
            return Err(format!(
                "listpack header says {total} bytes but the blob has {}",
                blob.len()
            ));
        }
        if last != EOF {
            return Err(format!(
                "listpack does not end with 0xff (last byte {last:#04x})"
            ));
        }
        Ok(Listpack {
            blob,
            pos: HEADER_SIZE,
            index: 0,
            declared,
            done: false,
        })
    }

    fn fail(&mut self, what: impl std::fmt::Display) -> Option<Result<Element<'a>, String>> {
        self.done = true;
        Some(Err(format!(
            "listpack entry {} at byte {} of {}: {what}",
            self.index,
            self.pos,
            self.blob.len()
        )))
    }

    /// `n` bytes starting `skip` bytes into the current entry, if they lie before the
    /// terminator.
    fn bytes_at(&self, skip: usize, n: usize) -> Option<&'a [u8]> {
        let start = self.pos.checked_add(skip)?;
        let end = start.checked_add(n)?;
        // The terminator is the last byte; no entry may cover it.
        if end >= self.blob.len() {
            return None;
        }
        self.blob.get(start..end)
    }
}

/// Sign-extends the low `bits` bits of `raw`.
fn sign_extend(raw: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((raw << shift) as i64) >> shift
}

/// Little-endian unsigned integer of up to 8 bytes.
fn le_uint(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte))
}

/// Bytes `lpEncodeBacklen` uses for an entry of `len` bytes (Redis's boundaries, off-by-one
/// ones included: 16383 takes three bytes).
fn backlen_size(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    }
}

/// Returns true if and only if `bytes` is `lpEncodeBacklen(len)`.
fn backlen_matches(bytes: &[u8], len: usize) -> bool {
    let len = len as u64;
    let n = bytes.len();
    bytes.iter().enumerate().all(|(i, &byte)| {
        let shifted = len >> (7 * (n - 1 - i));
        // The first (leftmost) byte holds every bit above the lower groups, top bit clear.
        let expected = if i == 0 {
            shifted
        } else {
            (shifted & 0x7f) | 0x80
        };
        u64::from(byte) == expected
    })
}

impl<'a> Iterator for Listpack<'a> {
    type Item = Result<Element<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let Some(&first) = self.blob.get(self.pos) else {
            return self.fail("past the end");
        };
        if first == EOF {
            self.done = true;
            if self.pos + 1 != self.blob.len() {
                return Some(Err(format!(
                    "listpack terminator at byte {} of {}",
                    self.pos,
                    self.blob.len()
                )));
            }
            if self.declared != COUNT_UNKNOWN && usize::from(self.declared) != self.index {
                return Some(Err(format!(
                    "listpack header says {} elements but it holds {}",
                    self.declared, self.index
                )));
            }
            return None;
        }
        // (bytes of encoding and length, bytes of data, element)
        let (header_len, data_len, int) = match first {
            0x00..=0x7f => (1, 0, Some(i64::from(first))),
            0x80..=0xbf => (1, usize::from(first & 0x3f), None),
            0xc0..=0xdf => {
                let Some(&[second]) = self.bytes_at(1, 1).map(<[u8]>::as_ref) else {
                    return self.fail("13-bit integer runs past the end");
                };
                let raw = (u64::from(first & 0x1f) << 8) | u64::from(second);
                (2, 0, Some(sign_extend(raw, 13)))
            }
            0xe0..=0xef => {
                let Some(&[second]) = self.bytes_at(1, 1).map(<[u8]>::as_ref) else {
                    return self.fail("12-bit string length runs past the end");
                };
                (
                    2,
                    (usize::from(first & 0x0f) << 8) | usize::from(second),
                    None,
                )
            }
            0xf0 => {
                let Some(len) = self.bytes_at(1, 4) else {
                    return self.fail("32-bit string length runs past the end");
                };
                let len = le_uint(len);
                let Ok(len) = usize::try_from(len) else {
                    return self.fail(format!("string of {len} bytes"));
                };
                (5, len, None)
            }
            0xf1..=0xf4 => {
                let width = match first {
                    0xf1 => 2,
                    0xf2 => 3,
                    0xf3 => 4,
                    _ => 8,
                };
                let Some(raw) = self.bytes_at(1, width) else {
                    return self.fail(format!("{}-bit integer runs past the end", width * 8));
                };
                (
                    1 + width,
                    0,
                    Some(sign_extend(le_uint(raw), 8 * width as u32)),
                )
            }
            _ => return self.fail(format!("unknown encoding {first:#04x}")),
        };
        let Some(entry_len) = header_len.checked_add(data_len) else {
            return self.fail(format!("string of {data_len} bytes"));
        };
        let n_backlen = backlen_size(entry_len);
        let Some(data) = self.bytes_at(header_len, data_len) else {
            return self.fail(format!(
                "string of {data_len} bytes runs past the end of the listpack"
            ));
        };
        let Some(backlen) = self.bytes_at(entry_len, n_backlen) else {
            return self.fail("back length runs past the end of the listpack");
        };
        if !backlen_matches(backlen, entry_len) {
            return self.fail(format!(
                "back length {backlen:02x?} does not encode the entry size {entry_len}"
            ));
        }
        self.pos += entry_len + n_backlen;
        self.index += 1;
        Some(Ok(match int {
            Some(value) => Element::Int(value),
            None => Element::Str(data),
        }))
    }
}

/// Appends `lpEncodeBacklen(len)`.
fn push_backlen(out: &mut Vec<u8>, len: usize) {
    let n = backlen_size(len);
    for i in 0..n {
        let shift = 7 * (n - 1 - i);
        let group = (len >> shift) as u8;
        out.push(if i == 0 { group } else { (group & 0x7f) | 0x80 });
    }
}

/// A listpack in the encodings Redis chooses (`lpEncodeString`, `lpEncodeIntegerGetType`),
/// which is how a stream's nodes are written.
pub(crate) fn build(elements: &[Element<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for element in elements {
        let start = body.len();
        match *element {
            Element::Int(v) if (0..=127).contains(&v) => body.push(v as u8),
            Element::Int(v) if (-4096..4096).contains(&v) => {
                let raw = (v as u16) & 0x1fff;
                body.push(0xc0 | (raw >> 8) as u8);
                body.push(raw as u8);
            }
            Element::Int(v) if i16::try_from(v).is_ok() => {
                body.push(0xf1);
                body.extend_from_slice(&(v as i16).to_le_bytes());
            }
            Element::Int(v) if (-(1 << 23)..(1 << 23)).contains(&v) => {
                body.push(0xf2);
                body.extend((v as i32).to_le_bytes().iter().take(3));
            }
            Element::Int(v) if i32::try_from(v).is_ok() => {
                body.push(0xf3);
                body.extend_from_slice(&(v as i32).to_le_bytes());
            }
            Element::Int(v) => {
                body.push(0xf4);
                body.extend_from_slice(&v.to_le_bytes());
            }
            Element::Str(s) if s.len() < 64 => {
                body.push(0x80 | s.len() as u8);
                body.extend_from_slice(s);
            }
            Element::Str(s) if s.len() < 4096 => {
                body.push(0xe0 | (s.len() >> 8) as u8);
                body.push(s.len() as u8);
                body.extend_from_slice(s);
            }
            Element::Str(s) => {
                body.push(0xf0);
                body.extend_from_slice(&(s.len() as u32).to_le_bytes());
                body.extend_from_slice(s);
            }
        }
        let entry_len = body.len() - start;
        push_backlen(&mut body, entry_len);
    }
    let total = (HEADER_SIZE + body.len() + 1) as u32;
    let count = u16::try_from(elements.len()).unwrap_or(COUNT_UNKNOWN);
    let mut out = total.to_le_bytes().to_vec();
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&body);
    out.push(EOF);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn parse(blob: &[u8]) -> Result<Vec<Element<'_>>, String> {
        Listpack::new(blob)?.collect()
    }

    #[test]
    fn every_encoding_round_trips() {
        let long = vec![b'x'; 5000];
        let mid = vec![b'y'; 200];
        let elements = [
            Element::Int(0),
            Element::Int(127),
            Element::Int(128),
            Element::Int(-1),
            Element::Int(-4096),
            Element::Int(4095),
            Element::Int(-4097),
            Element::Int(i64::from(i16::MAX)),
            Element::Int(-(1 << 23)),
            Element::Int((1 << 23) - 1),
            Element::Int(i64::from(i32::MIN)),
            Element::Int(i64::MAX),
            Element::Int(i64::MIN),
            Element::Str(b""),
            Element::Str(b"a"),
            Element::Str(&mid),
            Element::Str(&long),
        ];
        let blob = build(&elements);
        assert_eq!(parse(&blob).unwrap(), elements);
    }

    #[test]
    fn bytes_redis_7_0_wrote_parse() {
        // `RPUSH list a b 1`: the listpack node of redis-7.0-type-list.rdb.
        let blob = b"\x0f\x00\x00\x00\x03\x00\x81a\x02\x81b\x02\x01\x01\xff";
        assert_eq!(
            parse(blob).unwrap(),
            [Element::Str(b"a"), Element::Str(b"b"), Element::Int(1)]
        );
        assert_eq!(build(&parse(blob).unwrap()), blob);
    }

    #[test]
    fn backlen_boundaries_follow_redis() {
        for (len, size) in [
            (127, 1),
            (128, 2),
            (16382, 2),
            (16383, 3),
            (2_097_150, 3),
            (2_097_151, 4),
            (268_435_455, 5),
        ] {
            assert_eq!(backlen_size(len), size, "{len}");
            let mut out = Vec::new();
            push_backlen(&mut out, len);
            assert!(backlen_matches(&out, len), "{len}");
            assert!(!backlen_matches(&out, len + 1), "{len}");
        }
    }

    #[test]
    fn lies_and_truncations_are_refused() {
        let blob = build(&[Element::Str(b"hello"), Element::Int(-300)]);
        // Every truncation and every single-byte change either fails or still parses to
        // something (a change inside string data); none panics.
        for len in 0..blob.len() {
            assert!(parse(&blob[..len]).is_err(), "prefix {len}");
        }
        for pos in 0..blob.len() {
            for mask in [1u8, 0x10, 0x80, 0xff] {
                let mut bad = blob.clone();
                bad[pos] ^= mask;
                let _ = parse(&bad);
            }
        }
        // A total that lies.
        let mut bad = blob.clone();
        bad[0] += 1;
        assert!(parse(&bad).unwrap_err().contains("header says"));
        // A count that lies.
        let mut bad = blob.clone();
        bad[4] = 3;
        assert!(
            parse(&bad)
                .unwrap_err()
                .contains("3 elements but it holds 2")
        );
        // The unknown-count marker is accepted.
        let mut unknown = blob.clone();
        unknown[4..6].copy_from_slice(&[0xff, 0xff]);
        assert_eq!(parse(&unknown).unwrap().len(), 2);
        // A 32-bit string length of 4 GiB inside a 20-byte blob.
        let mut huge = vec![0u8; 6];
        huge.extend_from_slice(&[0xf0, 0xff, 0xff, 0xff, 0xff, 0xff]);
        huge.push(EOF);
        let total = huge.len() as u32;
        huge[..4].copy_from_slice(&total.to_le_bytes());
        assert!(parse(&huge).unwrap_err().contains("runs past the end"));
        // Unknown encodings.
        for first in 0xf5..=0xfe {
            let bad = [8, 0, 0, 0, 1, 0, first, EOF];
            assert!(
                parse(&bad).unwrap_err().contains("unknown encoding"),
                "{first:#x}"
            );
        }
        // A terminator before the end.
        let bad = [9, 0, 0, 0, 0, 0, EOF, 0, EOF];
        assert!(parse(&bad).unwrap_err().contains("terminator at byte 6"));
    }
}
