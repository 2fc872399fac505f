//! Keyspace entries → RDB bytes, byte for byte as Redis 7.0's `rdbSave*` functions write them.
//!
//! Every function appends to a caller-owned `Vec<u8>` and allocates nothing beyond growing it;
//! the only scratch state is one LZF hash table per thread (see [`write_entry`]). The CRC-64
//! footer is the caller's: it feeds every byte it emits to a [`Checksum`](super::Checksum) and
//! appends `finish().to_le_bytes()` after [`write_eof`].

use std::cell::Cell;

use forkless_storage::Value;
use forkless_storage::value::parse_canonical_i64;

use super::lzf::Compressor;
use super::{
    FORKLESS_VERSION, RDB_MAGIC, RDB_VERSION, REDIS_VERSION_COMPAT, RdbType, encoding, opcode,
};

/// How entries are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// LZF-compress strings longer than 20 bytes when that saves at least 4 bytes (Redis's
    /// `rdbcompression`, on by default).
    pub compress_strings: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            compress_strings: true,
        }
    }
}

/// The replication position a dump was cut at, written as Redis 7.0's `repl-stream-db`,
/// `repl-id` and `repl-offset` AUX fields (`rdbSaveInfoAuxFields`), so that a server restarted
/// on the file can resume replication with a partial resync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplAux {
    /// The database the replication stream had selected at the cut.
    pub stream_db: u32,
    /// The 40-character replication ID.
    pub replid: String,
    /// The replication offset of the cut: every stream byte up to it is in the dump.
    pub offset: u64,
}

impl ReplAux {
    /// The replication fields of a loaded file's AUX fields, when all three are there and
    /// valid, as Redis's `loadDataFromDisk` requires before it restores them.
    #[must_use]
    pub fn from_aux(aux: &[(String, Vec<u8>)]) -> Option<ReplAux> {
        let field = |name: &str| {
            aux.iter()
                .rev()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_slice())
        };
        let number = |name: &str| std::str::from_utf8(field(name)?).ok()?.parse::<i64>().ok();
        let replid = std::str::from_utf8(field("repl-id")?).ok()?;
        if replid.len() != 40 || !replid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(ReplAux {
            stream_db: u32::try_from(number("repl-stream-db")?).ok()?,
            replid: replid.to_owned(),
            offset: u64::try_from(number("repl-offset")?).ok()?,
        })
    }
}

/// Writes the magic `REDIS0010` and the AUX fields Redis 7.0 writes, in its order: `redis-ver`,
/// `redis-bits`, `ctime`, `used-mem`, with `repl` the replication fields `repl-stream-db`,
/// `repl-id`, `repl-offset`, then `aof-base`, then forkless's own `forkless-ver` (Redis and
/// `redis-check-rdb` accept and ignore AUX fields they do not know; the tests check both).
pub fn write_header(
    out: &mut Vec<u8>,
    ctime_unix_secs: u64,
    used_mem: u64,
    repl: Option<&ReplAux>,
) {
    out.extend_from_slice(RDB_MAGIC);
    out.extend_from_slice(&version_digits(RDB_VERSION));
    write_aux(out, b"redis-ver", REDIS_VERSION_COMPAT.as_bytes());
    write_aux_u64(out, b"redis-bits", 64);
    write_aux_u64(out, b"ctime", ctime_unix_secs);
    write_aux_u64(out, b"used-mem", used_mem);
    if let Some(repl) = repl {
        write_aux_u64(out, b"repl-stream-db", u64::from(repl.stream_db));
        write_aux(out, b"repl-id", repl.replid.as_bytes());
        write_aux_u64(out, b"repl-offset", repl.offset);
    }
    write_aux_u64(out, b"aof-base", 0);
    write_aux(out, b"forkless-ver", FORKLESS_VERSION.as_bytes());
}

/// Writes one Redis Functions library (`FUNCTION2` and its code, the whole `#!lua name=...`
/// payload, as a plain string), as Redis writes them after the aux fields.
pub fn write_function(out: &mut Vec<u8>, code: &[u8]) {
    out.push(opcode::FUNCTION2);
    write_len(out, code.len() as u64);
    out.extend_from_slice(code);
}

/// Writes SELECTDB `db` and RESIZEDB with the number of keys and of keys with an expiry. Redis
/// writes this only for non-empty databases. The counts are hash-table sizing hints for the
/// loader, not checked against the entries that follow, so counts from the cut are fine.
pub fn write_db_header(out: &mut Vec<u8>, db: u32, n_keys: u64, n_expires: u64) {
    out.push(opcode::SELECTDB);
    write_len(out, u64::from(db));
    out.push(opcode::RESIZEDB);
    write_len(out, n_keys);
    write_len(out, n_expires);
}

/// Writes the EOF opcode. The caller appends the 8-byte little-endian CRC-64 of the whole stream,
/// this byte included.
pub fn write_eof(out: &mut Vec<u8>) {
    out.push(opcode::EOF);
}

thread_local! {
    /// The LZF compressor of this thread: its 64 KiB hash table is allocated on the first
    /// compressed string and then reused for every string this thread compresses, so that
    /// [`write_entry`] allocates nothing per entry. Taken out while in use and put back after,
    /// so there is no borrow to fail.
    static LZF: Cell<Option<Compressor>> = const { Cell::new(None) };
}

/// Writes one key: the EXPIRETIME_MS opcode and 8-byte little-endian expiry when there is one,
/// the type byte, the key and the value. Expiry times beyond `i64::MAX` ms are written as
/// `i64::MAX` (the field is signed in Redis).
///
/// Strings are written as Redis's `rdbSaveRawString` writes them: a canonical integer of at most
/// 11 characters that fits in 32 bits as INT8/16/32; else, with `opts.compress_strings`, an LZF
/// blob when the string is longer than 20 bytes and compresses to at most `len - 4` bytes; else
/// length + bytes. Keys follow the same rules. The LZF state is per thread (64 KiB, allocated
/// once), so call this from a few long-lived threads rather than many short-lived ones.
pub fn write_entry(
    out: &mut Vec<u8>,
    key: &[u8],
    value: &Value,
    expire_at_ms: Option<u64>,
    opts: &EncodeOptions,
) {
    if let Some(expire_at_ms) = expire_at_ms {
        out.push(opcode::EXPIRETIME_MS);
        let signed = i64::try_from(expire_at_ms).unwrap_or(i64::MAX);
        out.extend_from_slice(&signed.to_le_bytes());
    }
    if let Value::String(bytes) = value {
        out.reserve(key.len() + bytes.len() + 2 * MAX_LEN_BYTES + 1);
    }
    out.push(rdb_type_of(value).code());
    // Only a string entry compresses, its key as well as its value.
    let compress = opts.compress_strings
        && matches!(value, Value::String(bytes) if key.len() > 20 || bytes.len() > 20);
    with_lzf(compress, |mut lzf| {
        write_string(out, key, lzf.as_deref_mut());
        write_value_body(out, value, lzf);
    });
}

/// Writes what [`write_entry`] writes for a string entry up to the string's bytes: expiry,
/// type byte, key and the string's length. None, with `out` unchanged, when `write_entry`
/// would not write the value as plain bytes after its length (LZF with
/// `opts.compress_strings`, or an integer encoding): then the entry must go through
/// `write_entry`. Lets a big value be written from where it is, without a copy in the chunk.
pub fn write_string_entry_head(
    out: &mut Vec<u8>,
    key: &[u8],
    value: &[u8],
    expire_at_ms: Option<u64>,
    opts: &EncodeOptions,
) -> Option<()> {
    if opts.compress_strings || value.len() <= 11 {
        return None;
    }
    if let Some(expire_at_ms) = expire_at_ms {
        out.push(opcode::EXPIRETIME_MS);
        let signed = i64::try_from(expire_at_ms).unwrap_or(i64::MAX);
        out.extend_from_slice(&signed.to_le_bytes());
    }
    out.push(RdbType::String.code());
    write_plain_string(out, key);
    write_len(out, value.len() as u64);
    Some(())
}

/// Writes a value as DUMP serializes it (Redis's `rdbSaveObjectType` + `rdbSaveObject`): the
/// type byte and the value, without a key or expiry. Strings are compressed as in
/// [`write_entry`].
pub(crate) fn write_object(out: &mut Vec<u8>, value: &Value, opts: &EncodeOptions) {
    out.push(rdb_type_of(value).code());
    let compress =
        opts.compress_strings && matches!(value, Value::String(bytes) if bytes.len() > 20);
    with_lzf(compress, |lzf| write_value_body(out, value, lzf));
}

/// The type byte a value is written with.
fn rdb_type_of(value: &Value) -> RdbType {
    match value {
        Value::String(_) => RdbType::String,
        Value::List(_) => RdbType::List,
        Value::Set(_) => RdbType::Set,
        Value::Hash(_) => RdbType::Hash,
        Value::ZSet(_) => RdbType::Zset2,
        Value::Stream(_) => RdbType::StreamListpacks2,
    }
}

/// Runs `write` with this thread's LZF compressor when `compress`, else with none.
fn with_lzf(compress: bool, write: impl FnOnce(Option<&mut Compressor>)) {
    if !compress {
        write(None);
        return;
    }
    LZF.with(|slot| {
        let mut lzf = slot.take().unwrap_or_default();
        write(Some(&mut lzf));
        slot.set(Some(lzf));
    });
}

/// Writes a value after its type byte (and key): a string with `lzf` when given; collections
/// in the plain encodings every Redis since 2.x loads (7.0 included), a length and then each
/// element as an uncompressed RDB string.
fn write_value_body(out: &mut Vec<u8>, value: &Value, lzf: Option<&mut Compressor>) {
    match value {
        Value::String(bytes) => write_string(out, bytes, lzf),
        Value::List(list) => {
            write_len(out, list.len() as u64);
            for item in list.iter() {
                write_string(out, &item, None);
            }
        }
        Value::Set(set) => {
            write_len(out, set.len() as u64);
            for member in set.iter() {
                write_string(out, &member, None);
            }
        }
        Value::Hash(hash) => {
            write_len(out, hash.len() as u64);
            for (field, value) in hash.iter() {
                write_string(out, &field, None);
                write_string(out, &value, None);
            }
        }
        Value::ZSet(zset) => {
            write_len(out, zset.len() as u64);
            for (member, score) in zset.iter() {
                write_string(out, &member, None);
                out.extend_from_slice(&score.to_le_bytes());
            }
        }
        Value::Stream(stream) => super::stream::write_stream(out, stream),
    }
}

/// Writes a string: LZF-compressed when `lzf` is given, the string is longer than 20 bytes and
/// compressing saves at least 4 bytes; otherwise integer-encoded or plain.
fn write_string(out: &mut Vec<u8>, bytes: &[u8], lzf: Option<&mut Compressor>) {
    if let Some(lzf) = lzf {
        if bytes.len() > 20 && write_lzf(out, bytes, lzf) {
            return;
        }
    }
    write_plain_string(out, bytes);
}

/// Appends `bytes` LZF-compressed, or returns false (with `out` unchanged) if compressing does
/// not save at least 4 bytes.
fn write_lzf(out: &mut Vec<u8>, bytes: &[u8], lzf: &mut Compressor) -> bool {
    let len = bytes.len();
    // `rdbSaveLzfStringObject`: worth it only if the result is at most `len - 4` bytes.
    let Some(budget) = len.checked_sub(4) else {
        return false;
    };
    let start = out.len();
    // The compressed length needs no more length bytes than the original length.
    let header_room = 1 + 2 * len_bytes(len as u64);
    // Compress straight into `out` past room for the header, then slide the result down once
    // the compressed length, hence the header size, is known.
    out.resize(start + header_room + budget, 0);
    let Some(compressed_len) = lzf.compress(bytes, &mut out[start + header_room..]) else {
        out.truncate(start);
        return false;
    };
    let mut header = [0u8; 1 + 2 * MAX_LEN_BYTES];
    header[0] = (encoding::ENCVAL << 6) | encoding::ENC_LZF;
    let mut header_len = 1;
    header_len += encode_len(compressed_len as u64, &mut header[header_len..]);
    header_len += encode_len(len as u64, &mut header[header_len..]);
    out.copy_within(
        start + header_room..start + header_room + compressed_len,
        start + header_len,
    );
    out[start..start + header_len].copy_from_slice(&header[..header_len]);
    out.truncate(start + header_len + compressed_len);
    true
}

/// The most bytes a length takes: the `0x81` marker and 8 bytes.
const MAX_LEN_BYTES: usize = 9;

/// Writes a string with integer encoding when it applies, never compressed.
fn write_plain_string(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() <= 11 {
        if let Some(value) = parse_canonical_i64(bytes) {
            if write_int_encoded(out, value) {
                return;
            }
        }
    }
    write_len(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `rdbEncodeInteger`: INT8, INT16 or INT32 (little-endian two's complement), or false if
/// `value` needs more than 32 bits.
fn write_int_encoded(out: &mut Vec<u8>, value: i64) -> bool {
    let tag = encoding::ENCVAL << 6;
    if let Ok(small) = i8::try_from(value) {
        out.push(tag | encoding::ENC_INT8);
        out.extend_from_slice(&small.to_le_bytes());
    } else if let Ok(medium) = i16::try_from(value) {
        out.push(tag | encoding::ENC_INT16);
        out.extend_from_slice(&medium.to_le_bytes());
    } else if let Ok(large) = i32::try_from(value) {
        out.push(tag | encoding::ENC_INT32);
        out.extend_from_slice(&large.to_le_bytes());
    } else {
        return false;
    }
    true
}

/// Writes a string as its bytes (`rdbSaveRawString` without compression), for binary blobs
/// that must not be read as integers.
pub(crate) fn write_raw_string(out: &mut Vec<u8>, bytes: &[u8]) {
    write_len(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `rdbSaveLen`: 6-bit, 14-bit big-endian, or a marker byte and a 32/64-bit big-endian length.
pub(crate) fn write_len(out: &mut Vec<u8>, len: u64) {
    let mut buf = [0u8; MAX_LEN_BYTES];
    let n = encode_len(len, &mut buf);
    out.extend_from_slice(&buf[..n]);
}

/// How many bytes [`write_len`] uses for `len`.
fn len_bytes(len: u64) -> usize {
    if len < 1 << 6 {
        1
    } else if len < 1 << 14 {
        2
    } else if len <= u64::from(u32::MAX) {
        5
    } else {
        9
    }
}

/// Encodes `len` at the start of `buf` (at least [`MAX_LEN_BYTES`] long) and returns how many
/// bytes it took.
fn encode_len(len: u64, buf: &mut [u8]) -> usize {
    let n = len_bytes(len);
    match n {
        1 => buf[0] = (encoding::LEN_6BIT << 6) | len as u8,
        2 => {
            buf[0] = (encoding::LEN_14BIT << 6) | (len >> 8) as u8;
            buf[1] = len as u8;
        }
        5 => {
            buf[0] = encoding::LEN_32BIT;
            buf[1..5].copy_from_slice(&(len as u32).to_be_bytes());
        }
        _ => {
            buf[0] = encoding::LEN_64BIT;
            buf[1..9].copy_from_slice(&len.to_be_bytes());
        }
    }
    n
}

/// An AUX field: the opcode, then name and value as strings.
fn write_aux(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(opcode::AUX);
    write_plain_string(out, name);
    write_plain_string(out, value);
}

/// An AUX field with a decimal value (`rdbSaveAuxFieldStrInt`), which the string encoding turns
/// into an INT8/16/32 when it fits.
fn write_aux_u64(out: &mut Vec<u8>, name: &[u8], value: u64) {
    let mut digits = [0u8; 20];
    let len = decimal(value, &mut digits);
    write_aux(out, name, &digits[digits.len() - len..]);
}

/// Writes `value` in decimal at the end of `buf` and returns the number of digits.
fn decimal(mut value: u64, buf: &mut [u8; 20]) -> usize {
    let mut pos = buf.len();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return buf.len() - pos;
        }
    }
}

/// The four ASCII digits after the magic, zero-padded ("0010").
fn version_digits(version: u32) -> [u8; 4] {
    let mut digits = [b'0'; 4];
    let mut rest = version;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A big string entry written as its head and then its bytes, as the save writes one
    /// without copying it into a chunk, is byte for byte what `write_entry` writes.
    #[test]
    fn string_entry_head_then_bytes_is_write_entry() {
        let plain = EncodeOptions {
            compress_strings: false,
        };
        for (key, len, expiry) in [
            (&b"key:1"[..], 12, None),
            (&b"12345"[..], 70_000, Some(1_700_000_000_000)),
            (&[b'k'; 300][..], 1 << 20, Some(u64::MAX)),
        ] {
            let value: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut whole = Vec::new();
            write_entry(
                &mut whole,
                key,
                &Value::String(value.as_slice().into()),
                expiry,
                &plain,
            );
            let mut head = Vec::new();
            assert!(write_string_entry_head(&mut head, key, &value, expiry, &plain).is_some());
            head.extend_from_slice(&value);
            assert_eq!(head, whole);
        }
        let mut out = Vec::new();
        let lzf = EncodeOptions {
            compress_strings: true,
        };
        assert!(write_string_entry_head(&mut out, b"k", &[0; 100], None, &lzf).is_none());
        assert!(write_string_entry_head(&mut out, b"k", b"12345", None, &plain).is_none());
        assert!(out.is_empty());
    }

    fn encoded_string(compress: bool, bytes: &[u8]) -> Vec<u8> {
        let mut lzf = Compressor::default();
        let mut out = Vec::new();
        write_string(&mut out, bytes, compress.then_some(&mut lzf));
        // The entry path (thread-local compressor) writes the same bytes.
        let mut entry = Vec::new();
        let opts = EncodeOptions {
            compress_strings: compress,
        };
        write_entry(
            &mut entry,
            bytes,
            &Value::String(bytes.to_vec().into()),
            None,
            &opts,
        );
        let mut expected = vec![RdbType::String.code()];
        expected.extend_from_slice(&out);
        expected.extend_from_slice(&out);
        assert_eq!(entry, expected);
        out
    }

    #[test]
    fn lengths_use_redis_encodings() {
        let cases: [(u64, &[u8]); 8] = [
            (0, &[0x00]),
            (63, &[0x3f]),
            (64, &[0x40, 0x40]),
            (16_383, &[0x7f, 0xff]),
            (16_384, &[0x80, 0x00, 0x00, 0x40, 0x00]),
            (u64::from(u32::MAX), &[0x80, 0xff, 0xff, 0xff, 0xff]),
            (1 << 32, &[0x81, 0, 0, 0, 1, 0, 0, 0, 0]),
            (
                u64::MAX,
                &[0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
        ];
        for (len, expected) in cases {
            let mut out = Vec::new();
            write_len(&mut out, len);
            assert_eq!(out, expected, "length {len}");
            assert_eq!(len_bytes(len), expected.len());
        }
    }

    #[test]
    fn canonical_32_bit_integers_use_int_encodings() {
        let cases: [(&[u8], &[u8]); 12] = [
            (b"0", &[0xc0, 0x00]),
            (b"-1", &[0xc0, 0xff]),
            (b"127", &[0xc0, 0x7f]),
            (b"-128", &[0xc0, 0x80]),
            (b"128", &[0xc1, 0x80, 0x00]),
            (b"-32768", &[0xc1, 0x00, 0x80]),
            (b"32768", &[0xc2, 0x00, 0x80, 0x00, 0x00]),
            (b"2147483647", &[0xc2, 0xff, 0xff, 0xff, 0x7f]),
            (b"-2147483648", &[0xc2, 0x00, 0x00, 0x00, 0x80]),
            // Canonical but wider than 32 bits, or not canonical: plain strings.
            (b"2147483648", b"\x0a2147483648"),
            (b"007", b"\x03007"),
            (b"-0", b"\x02-0"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                encoded_string(true, input),
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(encoded_string(true, b""), [0x00]);
        assert_eq!(encoded_string(true, b" 1"), b"\x02 1");
    }

    #[test]
    fn lzf_only_above_20_bytes_and_when_it_saves_4_bytes() {
        let twenty = [b'a'; 20];
        assert_eq!(
            encoded_string(true, &twenty)[0],
            20,
            "20 bytes are never compressed"
        );
        let long = [b'a'; 100];
        let compressed = encoded_string(true, &long);
        assert_eq!(compressed[0], 0xc3);
        assert!(compressed.len() < 20, "{compressed:?}");
        // Compressed length, then the original length 100 as a 14-bit length.
        assert_eq!(compressed[2..4], [0x40, 100]);
        assert_eq!(usize::from(compressed[1]), compressed.len() - 4);
        // Redis 7.0.15 wrote exactly these bytes for `SET longkey <100 x 'a'>` (liblzf output:
        // 2 literals, one 96-byte back reference, 2 literals).
        assert_eq!(compressed, b"\xc3\x09\x40\x64\x01aa\xe0\x57\x00\x01aa");
        let mut plain = vec![0x40, 100];
        plain.extend_from_slice(&long);
        assert_eq!(encoded_string(false, &long), plain);
        // 21 distinct bytes cannot shrink by 4: stored verbatim.
        let distinct: Vec<u8> = (b'A'..b'A' + 21).collect();
        let mut expected = vec![21u8];
        expected.extend_from_slice(&distinct);
        assert_eq!(encoded_string(true, &distinct), expected);
    }

    #[test]
    fn lzf_header_handles_every_length_width() {
        // Original lengths of 1, 2 and 5 length bytes, compressed to 1, 2 and 5 length bytes.
        for len in [50usize, 5_000, 100_000, 3_000_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 / 16).collect();
            let encoded = encoded_string(true, &data);
            assert_eq!(encoded[0], 0xc3, "len {len}");
            let mut n = 1;
            let compressed_len = read_len_for_test(&encoded, &mut n);
            let original_len = read_len_for_test(&encoded, &mut n);
            assert_eq!(original_len, len as u64);
            assert_eq!(encoded.len() - n, compressed_len as usize);
            let mut back = Vec::new();
            crate::format::lzf::decompress(&encoded[n..], len, &mut back).unwrap();
            assert_eq!(back, data);
        }
    }

    fn read_len_for_test(buf: &[u8], pos: &mut usize) -> u64 {
        let first = buf[*pos];
        let (len, n) = match first >> 6 {
            0 => (u64::from(first & 0x3f), 1),
            1 => ((u64::from(first & 0x3f) << 8) | u64::from(buf[*pos + 1]), 2),
            _ if first == 0x80 => (
                u64::from(u32::from_be_bytes(
                    buf[*pos + 1..*pos + 5].try_into().unwrap(),
                )),
                5,
            ),
            _ => (
                u64::from_be_bytes(buf[*pos + 1..*pos + 9].try_into().unwrap()),
                9,
            ),
        };
        *pos += n;
        len
    }

    #[test]
    fn replication_aux_fields_follow_used_mem_as_redis_7_0_writes_them() {
        let repl = ReplAux {
            stream_db: 3,
            replid: "0123456789abcdef0123456789abcdef01234567".to_owned(),
            offset: 70_000,
        };
        let mut out = Vec::new();
        write_header(&mut out, 1_700_000_000, 1_000_000, Some(&repl));
        let mut expected = Vec::new();
        expected.extend_from_slice(b"\xfa\x08used-mem\xc2");
        expected.extend_from_slice(&1_000_000i32.to_le_bytes());
        expected.extend_from_slice(b"\xfa\x0erepl-stream-db\xc0\x03");
        expected.extend_from_slice(b"\xfa\x07repl-id\x28");
        expected.extend_from_slice(repl.replid.as_bytes());
        expected.extend_from_slice(b"\xfa\x0brepl-offset\xc2");
        expected.extend_from_slice(&70_000i32.to_le_bytes());
        expected.extend_from_slice(b"\xfa\x08aof-base");
        assert!(
            out.windows(expected.len())
                .any(|w| w == expected.as_slice()),
            "{out:?}"
        );

        let aux = |fields: &[(&str, &[u8])]| -> Vec<(String, Vec<u8>)> {
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
                .collect()
        };
        let id = repl.replid.as_bytes();
        assert_eq!(
            ReplAux::from_aux(&aux(&[
                ("repl-stream-db", b"3"),
                ("repl-id", id),
                ("repl-offset", b"70000"),
            ])),
            Some(repl.clone())
        );
        // Redis restores nothing unless all three are there and valid.
        assert_eq!(
            ReplAux::from_aux(&aux(&[("repl-id", id), ("repl-offset", b"1")])),
            None
        );
        assert_eq!(
            ReplAux::from_aux(&aux(&[
                ("repl-stream-db", b"-1"),
                ("repl-id", id),
                ("repl-offset", b"1"),
            ])),
            None
        );
        assert_eq!(
            ReplAux::from_aux(&aux(&[
                ("repl-stream-db", b"0"),
                ("repl-id", b"short"),
                ("repl-offset", b"1"),
            ])),
            None
        );
    }

    #[test]
    fn header_matches_redis_7_0_layout() {
        let mut out = Vec::new();
        write_header(&mut out, 1_700_000_000, 1_000_000, None);
        let mut expected = b"REDIS0010".to_vec();
        expected.extend_from_slice(b"\xfa\x09redis-ver\x067.0.15");
        expected.extend_from_slice(b"\xfa\x0aredis-bits\xc0\x40");
        expected.extend_from_slice(b"\xfa\x05ctime\xc2");
        expected.extend_from_slice(&1_700_000_000i32.to_le_bytes());
        expected.extend_from_slice(b"\xfa\x08used-mem\xc2");
        expected.extend_from_slice(&1_000_000i32.to_le_bytes());
        expected.extend_from_slice(b"\xfa\x08aof-base\xc0\x00");
        expected.extend_from_slice(b"\xfa\x0cforkless-ver");
        expected.push(FORKLESS_VERSION.len() as u8);
        expected.extend_from_slice(FORKLESS_VERSION.as_bytes());
        assert_eq!(out, expected);

        // Values beyond 32 bits are plain decimal strings.
        let mut out = Vec::new();
        write_aux_u64(&mut out, b"used-mem", u64::MAX);
        assert_eq!(out, b"\xfa\x08used-mem\x1418446744073709551615");
    }

    #[test]
    fn db_header_entry_and_eof_layout() {
        let mut out = Vec::new();
        write_db_header(&mut out, 3, 2, 1);
        assert_eq!(out, [0xfe, 3, 0xfb, 2, 1]);

        let opts = EncodeOptions::default();
        let mut out = Vec::new();
        write_entry(
            &mut out,
            b"k2",
            &Value::string(b"hello"),
            Some(0x0000_01a2_0f8e_aa99),
            &opts,
        );
        // The entry Redis 7.0.15 wrote for `SET k2 hello PX 100000`, taken from its dump.rdb.
        assert_eq!(
            out,
            b"\xfc\x99\xaa\x8e\x0f\xa2\x01\x00\x00\x00\x02k2\x05hello"
        );

        let mut out = Vec::new();
        write_entry(&mut out, b"a", &Value::string(b"1"), None, &opts);
        assert_eq!(out, b"\x00\x01a\xc0\x01");
        let mut out = Vec::new();
        write_entry(&mut out, b"a", &Value::string(b"1"), Some(u64::MAX), &opts);
        assert_eq!(out[1..9], i64::MAX.to_le_bytes());

        let mut out = Vec::new();
        write_eof(&mut out);
        assert_eq!(out, [0xff]);
        assert_eq!(version_digits(10), *b"0010");
        assert_eq!(version_digits(9), *b"0009");
    }
}
