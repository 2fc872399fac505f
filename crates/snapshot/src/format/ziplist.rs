//! Ziplists: the blob of small lists, hashes and sorted sets before Redis 7.0 (codes 10, 12, 13)
//! and of each list node in Redis 3.2 to 6.2 (code 14). Redis 7.0 still loads them.
//!
//! ```text
//! +--------------+-------------+-------------+---------+-----+------+
//! | zlbytes [4LE]| zltail [4LE]| zllen [2LE] | entry 1 | ... | 0xFF |
//! +--------------+-------------+-------------+---------+-----+------+
//! entry: prevlen encoding [data]
//!
//! prevlen   < 254: 1 byte; else 0xFE [4 LE]      raw size of the previous entry
//! 00LLLLLL <L bytes>                             string of up to 63 bytes
//! 01LLLLLL LLLLLLLL <L bytes>                    string of up to 16383 bytes (big-endian)
//! 10xxxxxx [4 BE] <L bytes>                      string of up to 2^32-1 bytes
//! 11000000 [2 LE]   11010000 [4 LE]   11100000 [8 LE]   signed 16/32/64-bit integer
//! 11110000 [3 LE]   11111110 [1]                 signed 24/8-bit integer
//! 1111xxxx, xxxx in 0001..1101                   the integer xxxx - 1 (0 to 12)
//! ```
//! `zltail` is the offset of the last entry (the header size when empty); `zllen` is 65535 when
//! the count did not fit. The iterator checks what Redis's `ziplistValidateIntegrity` checks:
//! header against the blob's length, each entry inside the blob, each prevlen equal to the
//! previous entry's size, the terminator exactly at the end, `zltail` and `zllen`.

use super::listpack::Element;

/// Bytes of the header.
const HEADER_SIZE: usize = 10;
/// The terminator byte.
const END: u8 = 0xff;
/// `zllen` when the count is too large for 16 bits.
const COUNT_UNKNOWN: u16 = u16::MAX;

/// A checked walk over a ziplist's elements. Yields `Err` (once, then `None`) at the first
/// malformed entry, or at the end if `zltail` or `zllen` do not match.
#[derive(Debug, Clone)]
pub(crate) struct Ziplist<'a> {
    blob: &'a [u8],
    pos: usize,
    index: usize,
    declared: u16,
    tail: u32,
    /// Offset and raw size of the previous entry.
    previous: Option<(usize, usize)>,
    done: bool,
}

impl<'a> Ziplist<'a> {
    /// Checks the header against the blob: at least header and terminator, `zlbytes` equal to
    /// the blob's length, and the last byte the terminator.
    pub(crate) fn new(blob: &'a [u8]) -> Result<Ziplist<'a>, String> {
        let field = |range: std::ops::Range<usize>| blob.get(range).map(le_uint);
        let (Some(total), Some(tail), Some(declared), Some(&last)) =
            (field(0..4), field(4..8), field(8..10), blob.last())
        else {
            return Err(format!(
                "ziplist of {} bytes is shorter than its header",
                blob.len()
            ));
        };
        if blob.len() < HEADER_SIZE + 1 {
            return Err(format!(
                "ziplist of {} bytes is shorter than its header",
                blob.len()
            ));
        }
        if total != blob.len() as u64 {
            return Err(format!(
                "ziplist header says {total} bytes but the blob has {}",
                blob.len()
            ));
        }
        if last != END {
            return Err(format!(
                "ziplist does not end with 0xff (last byte {last:#04x})"
            ));
        }
        Ok(Ziplist {
            blob,
            pos: HEADER_SIZE,
            index: 0,
            declared: declared as u16,
            tail: tail as u32,
            previous: None,
            done: false,
        })
    }

    fn fail(&mut self, what: impl std::fmt::Display) -> Option<Result<Element<'a>, String>> {
        self.done = true;
        Some(Err(format!(
            "ziplist entry {} at byte {} of {}: {what}",
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
        if end >= self.blob.len() {
            return None;
        }
        self.blob.get(start..end)
    }

    fn finish(&mut self) -> Option<Result<Element<'a>, String>> {
        self.done = true;
        if self.pos + 1 != self.blob.len() {
            return Some(Err(format!(
                "ziplist terminator at byte {} of {}",
                self.pos,
                self.blob.len()
            )));
        }
        let last_offset = self.previous.map_or(HEADER_SIZE, |(offset, _)| offset);
        if u64::from(self.tail) != last_offset as u64 {
            return Some(Err(format!(
                "ziplist tail offset {} but its last entry is at byte {last_offset}",
                self.tail
            )));
        }
        if self.declared != COUNT_UNKNOWN && usize::from(self.declared) != self.index {
            return Some(Err(format!(
                "ziplist header says {} elements but it holds {}",
                self.declared, self.index
            )));
        }
        None
    }
}

/// Little-endian unsigned integer of up to 8 bytes.
fn le_uint(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte))
}

/// Little-endian signed integer of `bytes.len()` (1 to 8) bytes.
fn le_int(bytes: &[u8]) -> i64 {
    let shift = 64 - 8 * bytes.len() as u32;
    ((le_uint(bytes) << shift) as i64) >> shift
}

impl<'a> Iterator for Ziplist<'a> {
    type Item = Result<Element<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let Some(&first) = self.blob.get(self.pos) else {
            return self.fail("past the end");
        };
        if first == END {
            return self.finish();
        }
        let (prevlen_size, prevlen) = if first < 0xfe {
            (1, u64::from(first))
        } else {
            let Some(bytes) = self.bytes_at(1, 4) else {
                return self.fail("previous-entry length runs past the end");
            };
            (5, le_uint(bytes))
        };
        let previous_size = self.previous.map_or(0, |(_, size)| size);
        if prevlen != previous_size as u64 {
            return self.fail(format!(
                "previous-entry length {prevlen} but the previous entry has {previous_size} bytes"
            ));
        }
        let Some(&[encoding]) = self.bytes_at(prevlen_size, 1).map(<[u8]>::as_ref) else {
            return self.fail("encoding runs past the end");
        };
        // (bytes of encoding and length, bytes of data, integer width or 0 for a string)
        let (header_len, data_len, int_width) = match encoding >> 6 {
            0 => (1, usize::from(encoding & 0x3f), 0),
            1 => {
                let Some(&[low]) = self.bytes_at(prevlen_size + 1, 1).map(<[u8]>::as_ref) else {
                    return self.fail("14-bit string length runs past the end");
                };
                (2, (usize::from(encoding & 0x3f) << 8) | usize::from(low), 0)
            }
            2 => {
                let Some(len) = self.bytes_at(prevlen_size + 1, 4) else {
                    return self.fail("32-bit string length runs past the end");
                };
                let len = len.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
                let Ok(len) = usize::try_from(len) else {
                    return self.fail(format!("string of {len} bytes"));
                };
                (5, len, 0)
            }
            _ => match encoding {
                0xc0 => (1, 2, 2),
                0xd0 => (1, 4, 4),
                0xe0 => (1, 8, 8),
                0xf0 => (1, 3, 3),
                0xfe => (1, 1, 1),
                0xf1..=0xfd => (1, 0, 0),
                other => return self.fail(format!("unknown encoding {other:#04x}")),
            },
        };
        let data_start = prevlen_size + header_len;
        let Some(data) = self.bytes_at(data_start, data_len) else {
            return self.fail(format!(
                "entry of {data_len} bytes runs past the end of the ziplist"
            ));
        };
        let element = match (encoding, int_width) {
            (0xf1..=0xfd, _) => Element::Int(i64::from(encoding & 0x0f) - 1),
            (_, 0) => Element::Str(data),
            _ => Element::Int(le_int(data)),
        };
        let raw_size = data_start + data_len;
        self.previous = Some((self.pos, raw_size));
        self.pos += raw_size;
        self.index += 1;
        Some(Ok(element))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ziplist in the encodings Redis chooses (`zipTryEncoding`, `zipStoreEntryEncoding`).
    pub(crate) fn build(elements: &[Element<'_>]) -> Vec<u8> {
        let mut body = Vec::new();
        let mut previous_size = 0usize;
        let mut tail = HEADER_SIZE;
        for element in elements {
            let start = body.len();
            tail = HEADER_SIZE + start;
            if previous_size < 254 {
                body.push(previous_size as u8);
            } else {
                body.push(0xfe);
                body.extend_from_slice(&(previous_size as u32).to_le_bytes());
            }
            match *element {
                Element::Int(v) if (0..=12).contains(&v) => body.push(0xf1 + v as u8),
                Element::Int(v) if i8::try_from(v).is_ok() => body.extend([0xfe, v as u8]),
                Element::Int(v) if i16::try_from(v).is_ok() => {
                    body.push(0xc0);
                    body.extend_from_slice(&(v as i16).to_le_bytes());
                }
                Element::Int(v) if (-(1 << 23)..(1 << 23)).contains(&v) => {
                    body.push(0xf0);
                    body.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
                }
                Element::Int(v) if i32::try_from(v).is_ok() => {
                    body.push(0xd0);
                    body.extend_from_slice(&(v as i32).to_le_bytes());
                }
                Element::Int(v) => {
                    body.push(0xe0);
                    body.extend_from_slice(&v.to_le_bytes());
                }
                Element::Str(s) if s.len() < 64 => {
                    body.push(s.len() as u8);
                    body.extend_from_slice(s);
                }
                Element::Str(s) if s.len() < 16384 => {
                    body.push(0x40 | (s.len() >> 8) as u8);
                    body.push(s.len() as u8);
                    body.extend_from_slice(s);
                }
                Element::Str(s) => {
                    body.push(0x80);
                    body.extend_from_slice(&(s.len() as u32).to_be_bytes());
                    body.extend_from_slice(s);
                }
            }
            previous_size = body.len() - start;
        }
        let total = (HEADER_SIZE + body.len() + 1) as u32;
        let mut out = total.to_le_bytes().to_vec();
        out.extend_from_slice(&(tail as u32).to_le_bytes());
        let count = u16::try_from(elements.len()).unwrap_or(COUNT_UNKNOWN);
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&body);
        out.push(END);
        out
    }

    fn parse(blob: &[u8]) -> Result<Vec<Element<'_>>, String> {
        Ziplist::new(blob)?.collect()
    }

    #[test]
    fn every_encoding_round_trips() {
        let mid = vec![b'm'; 300];
        let long = vec![b'l'; 20_000];
        let elements = [
            Element::Int(0),
            Element::Int(12),
            Element::Int(13),
            Element::Int(-128),
            Element::Int(1000),
            Element::Int(-(1 << 23)),
            Element::Int(i64::from(i32::MAX)),
            Element::Int(i64::MIN),
            Element::Str(b""),
            Element::Str(b"field"),
            Element::Str(&mid),
            Element::Str(&long),
            Element::Str(b"after a long one: 5-byte prevlen"),
        ];
        let blob = build(&elements);
        assert_eq!(parse(&blob).unwrap(), elements);
        assert_eq!(parse(&build(&[])).unwrap(), []);
    }

    #[test]
    fn lies_and_truncations_are_refused() {
        let blob = build(&[Element::Str(b"a"), Element::Int(5), Element::Str(b"bc")]);
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
        let mut bad = blob.clone();
        bad[8] = 4;
        assert!(
            parse(&bad)
                .unwrap_err()
                .contains("4 elements but it holds 3")
        );
        let mut bad = blob.clone();
        bad[4] += 1;
        assert!(parse(&bad).unwrap_err().contains("tail offset"));
        // The second entry's prevlen says 2, the first entry has 3 bytes.
        let mut bad = blob.clone();
        bad[HEADER_SIZE + 3] = 2;
        assert!(parse(&bad).unwrap_err().contains("previous-entry length 2"));
        // A 32-bit string length of 4 GiB.
        let mut huge = build(&[Element::Str(b"abcdef")]);
        huge[HEADER_SIZE + 1..HEADER_SIZE + 2].copy_from_slice(&[0x80]);
        assert!(parse(&huge).is_err());
    }
}
