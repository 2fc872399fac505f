//! RDB bytes (plain or zstd-compressed) → keyspace entries.
//!
//! ```text
//! load ─► zstd magic? ─► zstd::Decoder ─┐
//!                  └───────────────────┴─► Input (256 KiB buffer, offset, running CRC)
//!                                           └─► header ─► opcode loop ─► on_entry(LoadedEntry)
//!                                                                      └─► EOF ─► CRC ─► end
//! ```
//! The file is untrusted. A length is never used to size an allocation before the bytes it
//! announces have arrived: strings grow as they are read, so a 2^63 length in a 100-byte file
//! fails at the end of the file having allocated a few KiB, and an LZF length is checked against
//! what its compressed size can expand to first. Every read consumes at least one byte, so no
//! input can make the loop spin.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use bytes::Bytes;
use forkless_storage::Value;

use super::collection::read_value;
use super::crc::Checksum;
use super::error::LoadError;
use super::lzf::{self, MAX_EXPANSION};
use super::{MIN_RDB_VERSION, RDB_MAGIC, RDB_VERSION, RdbType, ZSTD_MAGIC, encoding, opcode};

/// One live key read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedEntry {
    /// The database (SELECTDB) the key belongs to; 0 until the file selects one. Not checked
    /// against a database count: that is the caller's configuration (`databases`).
    pub db: u32,
    /// The key.
    pub key: Bytes,
    /// The value.
    pub value: Value,
    /// Absolute expiry in milliseconds since the Unix epoch, at or after the `now_ms` given to
    /// [`load`].
    pub expire_at_ms: Option<u64>,
}

/// What [`load`] read, once the whole file checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadSummary {
    /// The version in the file's magic (1 to [`RDB_VERSION`]).
    pub rdb_version: u32,
    /// Entries handed to `on_entry`.
    pub keys_loaded: u64,
    /// Keys already expired at `now_ms`, skipped as a Redis master does on load.
    pub keys_expired_skipped: u64,
    /// Keys whose collection is empty (zero elements, or only empty quicklist nodes), skipped
    /// as Redis 7.0 skips them ("skipping empty key") rather than refusing the file: older
    /// Redis versions could write them.
    pub keys_empty_skipped: u64,
    /// AUX fields in file order, names lossily decoded as UTF-8 (`redis-ver`, `ctime`...).
    /// Integer-encoded values are given in decimal, as Redis reads them.
    pub aux: Vec<(String, Vec<u8>)>,
    /// Bytes of the RDB stream read, checksum included (for a zstd file, decompressed bytes).
    pub bytes_read: u64,
    /// True if and only if the file carried a non-zero CRC-64 and it matched. False for a file
    /// saved with `rdbchecksum no` (a zero checksum) or older than version 5 (no checksum).
    pub checksum_verified: bool,
}

/// Reads an RDB stream, calling `on_entry` for each live key.
///
/// Keys whose expiry is before `now_ms` are counted in
/// [`LoadSummary::keys_expired_skipped`] and not delivered, as a Redis master does on load; so
/// are empty collections, in [`LoadSummary::keys_empty_skipped`], as Redis 7.0 does. Every
/// collection encoding Redis 7.0 loads is read (see `collection.rs`). A
/// stream starting with the zstd magic (`28 B5 2F FD`) is decompressed on the fly; it may be any
/// number of concatenated frames. The CRC-64 footer is verified; a zero footer means the writer
/// disabled checksums, as in Redis.
///
/// Entries are delivered before the footer is verified, so the caller must load into a keyspace
/// it can throw away: on `Err` the file is refused as a whole, never partially loaded. An `Err`
/// from `on_entry` stops the load and is returned (a [`LoadError::rejected`] gets the file and
/// the entry's offset filled in). Duplicate keys are not detected here; the caller sees both.
///
/// # Errors
/// [`LoadError`] for a truncated or corrupt file (a malformed listpack, ziplist or intset, a
/// duplicate set member or hash field, a NaN score included), a file using features forkless
/// cannot store (streams, modules, functions, pre-2.6 zipmaps), an I/O error, or an error from
/// `on_entry`. Never
/// panics, and never returns `Ok` for a file that ends early or has bytes after its footer.
pub fn load<R: Read>(
    reader: R,
    source_name: &str,
    now_ms: u64,
    on_entry: impl FnMut(LoadedEntry) -> Result<(), LoadError>,
) -> Result<LoadSummary, LoadError> {
    load_with_functions(reader, source_name, now_ms, on_entry, |_| {
        Err(LoadError::Functions {
            file: String::new(),
            offset: 0,
            opcode: opcode::FUNCTION2,
        })
    })
}

/// [`load`] for a caller that keeps Redis Functions: each library's code (a `FUNCTION2`
/// record, the whole `#!lua name=...` payload) goes to `on_function` in file order, before the
/// keys. An `Err` from it stops the load (a [`LoadError::Functions`] gets the file and the
/// record's offset filled in). Libraries in the pre-GA format (opcode 246) are still refused.
///
/// # Errors
/// As [`load`], and whatever `on_function` returns.
pub fn load_with_functions<R: Read>(
    mut reader: R,
    source_name: &str,
    now_ms: u64,
    on_entry: impl FnMut(LoadedEntry) -> Result<(), LoadError>,
    on_function: impl FnMut(Vec<u8>) -> Result<(), LoadError>,
) -> Result<LoadSummary, LoadError> {
    let mut magic = [0u8; 4];
    let mut n_magic = 0;
    while n_magic < magic.len() {
        match reader.read(&mut magic[n_magic..]) {
            Ok(0) => break,
            Ok(n) => n_magic += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(LoadError::Io {
                    file: source_name.to_owned(),
                    offset: 0,
                    source,
                });
            }
        }
    }
    let peeked = io::Cursor::new(&magic[..n_magic]);
    if magic[..n_magic] == ZSTD_MAGIC {
        let source_failed = Rc::new(Cell::new(false));
        let source = TrackedSource {
            inner: peeked.chain(reader),
            failed: Rc::clone(&source_failed),
        };
        let file = format!("{source_name} (zstd-decompressed)");
        let decoder =
            zstd::stream::read::Decoder::new(source).map_err(|source| LoadError::Decompress {
                file: file.clone(),
                offset: 0,
                source,
            })?;
        let input = Input::new(decoder, &file, Some(source_failed));
        load_stream(input, now_ms, on_entry, on_function)
    } else {
        load_stream(
            Input::new(peeked.chain(reader), source_name, None),
            now_ms,
            on_entry,
            on_function,
        )
    }
}

/// The opcode loop over a (decompressed) RDB stream.
fn load_stream<R: Read>(
    mut input: Input<'_, R>,
    now_ms: u64,
    mut on_entry: impl FnMut(LoadedEntry) -> Result<(), LoadError>,
    mut on_function: impl FnMut(Vec<u8>) -> Result<(), LoadError>,
) -> Result<LoadSummary, LoadError> {
    let rdb_version = read_header(&mut input)?;
    let mut summary = LoadSummary {
        rdb_version,
        keys_loaded: 0,
        keys_expired_skipped: 0,
        keys_empty_skipped: 0,
        aux: Vec::new(),
        bytes_read: 0,
        checksum_verified: false,
    };
    let mut db = 0u32;
    // The expiry read for the next key, and where that key's opcodes started.
    let mut pending_expire: Option<i64> = None;
    let mut entry_start: Option<u64> = None;
    let mut scratch = Vec::new();

    loop {
        let at = input.offset();
        let code = input.read_u8(at, "an opcode or value type")?;
        let is_key_prefix = matches!(
            code,
            opcode::EXPIRETIME_MS | opcode::EXPIRETIME | opcode::IDLE | opcode::FREQ
        );
        if !is_key_prefix && RdbType::from_code(code).is_none() && entry_start.is_some() {
            return Err(input.corrupted(
                at,
                "an expiry time or LRU/LFU field is not followed by a key",
            ));
        }
        match code {
            opcode::EXPIRETIME_MS => {
                entry_start.get_or_insert(at);
                pending_expire = Some(i64::from_le_bytes(input.read_array(at, "an expiry time")?));
            }
            opcode::EXPIRETIME => {
                entry_start.get_or_insert(at);
                let seconds = i32::from_le_bytes(input.read_array(at, "an expiry time")?);
                pending_expire = Some(i64::from(seconds) * 1000);
            }
            opcode::IDLE => {
                entry_start.get_or_insert(at);
                input.read_len(at, "an LRU idle time")?;
            }
            opcode::FREQ => {
                entry_start.get_or_insert(at);
                input.read_u8(at, "an LFU frequency")?;
            }
            opcode::SELECTDB => {
                let id = input.read_len(at, "a database number")?;
                db = u32::try_from(id).map_err(|_| {
                    input.corrupted(at, format!("database number {id} is out of range"))
                })?;
            }
            opcode::RESIZEDB => {
                // Sizing hints only; never used to allocate.
                input.read_len(at, "a RESIZEDB key count")?;
                input.read_len(at, "a RESIZEDB expiry count")?;
            }
            opcode::AUX => {
                let name = input.read_string(at, "an AUX field name", &mut scratch)?;
                let value = input.read_string(at, "an AUX field value", &mut scratch)?;
                summary
                    .aux
                    .push((String::from_utf8_lossy(&name).into_owned(), value));
            }
            opcode::MODULE_AUX => {
                return Err(LoadError::ModuleAux {
                    file: input.file.to_owned(),
                    offset: at,
                });
            }
            opcode::FUNCTION2 => {
                // One string, a library's source code. An empty one carries nothing to run.
                let code = input.read_string(at, "a function library", &mut scratch)?;
                if !code.is_empty() {
                    on_function(code).map_err(|err| match err {
                        LoadError::Functions { .. } => {
                            functions_error(&input, at, opcode::FUNCTION2)
                        }
                        other => other.located(input.file, at),
                    })?;
                }
            }
            opcode::FUNCTION_PRE_GA => {
                return Err(functions_error(&input, at, opcode::FUNCTION_PRE_GA));
            }
            opcode::EOF => {
                summary.checksum_verified = read_footer(&mut input, rdb_version)?;
                let end = input.offset();
                if !input.at_end(end)? {
                    return Err(LoadError::TrailingData {
                        file: input.file.to_owned(),
                        offset: end,
                    });
                }
                summary.bytes_read = end;
                return Ok(summary);
            }
            type_code => {
                let Some(rdb_type) = RdbType::from_code(type_code) else {
                    return Err(LoadError::UnknownType {
                        file: input.file.to_owned(),
                        offset: at,
                        type_code,
                    });
                };
                let key = input.read_string(at, "a key", &mut scratch)?;
                let value = read_value(&mut input, rdb_type, at, &mut scratch)?;
                let entry_at = entry_start.take().unwrap_or(at);
                let expire = pending_expire.take();
                // Redis skips a key if `expire < now`; a negative expiry is long past.
                match (value, expire.map(u64::try_from)) {
                    (None, _) => summary.keys_empty_skipped += 1,
                    (Some(_), Some(Ok(expire_at_ms))) if expire_at_ms < now_ms => {
                        summary.keys_expired_skipped += 1;
                    }
                    (Some(_), Some(Err(_))) => summary.keys_expired_skipped += 1,
                    (Some(value), expire) => {
                        let expire_at_ms = expire.and_then(Result::ok);
                        let entry = LoadedEntry {
                            db,
                            key: Bytes::from(key),
                            value,
                            expire_at_ms,
                        };
                        on_entry(entry).map_err(|err| err.located(input.file, entry_at))?;
                        summary.keys_loaded += 1;
                    }
                }
            }
        }
    }
}

fn functions_error<R>(input: &Input<'_, R>, at: u64, opcode: u8) -> LoadError {
    LoadError::Functions {
        file: input.file.to_owned(),
        offset: at,
        opcode,
    }
}

/// Reads `REDIS` and the four version digits; returns the version.
fn read_header<R: Read>(input: &mut Input<'_, R>) -> Result<u32, LoadError> {
    let mut header = [0u8; 9];
    let mut n_read = 0;
    while n_read < header.len() {
        let Some(byte) = input.try_read_u8(0)? else {
            break;
        };
        header[n_read] = byte;
        n_read += 1;
    }
    let magic_seen = &header[..n_read.min(RDB_MAGIC.len())];
    if magic_seen != &RDB_MAGIC[..magic_seen.len()] {
        return Err(LoadError::BadMagic {
            file: input.file.to_owned(),
            offset: 0,
        });
    }
    if n_read < header.len() {
        return Err(input.eof(0, "the RDB header"));
    }
    let mut version = 0u32;
    for &digit in &header[RDB_MAGIC.len()..] {
        if !digit.is_ascii_digit() {
            return Err(LoadError::BadMagic {
                file: input.file.to_owned(),
                offset: 0,
            });
        }
        version = version * 10 + u32::from(digit - b'0');
    }
    if !(MIN_RDB_VERSION..=RDB_VERSION).contains(&version) {
        return Err(LoadError::UnsupportedVersion {
            file: input.file.to_owned(),
            offset: RDB_MAGIC.len() as u64,
            version,
        });
    }
    Ok(version)
}

/// Reads and checks the CRC-64 after the EOF opcode (version 5 and later). Returns true if and
/// only if a non-zero checksum matched.
fn read_footer<R: Read>(input: &mut Input<'_, R>, rdb_version: u32) -> Result<bool, LoadError> {
    if rdb_version < 5 {
        return Ok(false);
    }
    let expected = input.checksum_so_far();
    let at = input.offset();
    let got = u64::from_le_bytes(input.read_array(at, "the CRC64 checksum")?);
    if got == 0 {
        return Ok(false);
    }
    if got != expected {
        return Err(LoadError::ChecksumMismatch {
            file: input.file.to_owned(),
            offset: at,
            expected,
            got,
        });
    }
    Ok(true)
}

/// A length, or the special string encoding that stands in its place.
enum LenOrEncoding {
    Len(u64),
    Encoded(u8),
}

/// Size of the read buffer: large enough that a multi-GiB file costs few read calls, small
/// enough to stay in L2 cache. Callers need not add their own buffering.
const BUF_SIZE: usize = 256 * 1024;

/// Compressed LZF scratch space kept between strings; a larger one is freed after use.
const SCRATCH_KEEP: usize = 1 << 20;

/// A buffered reader that counts offsets and checksums what it consumes.
pub(super) struct Input<'f, R> {
    inner: R,
    file: &'f str,
    buf: Box<[u8]>,
    /// Next unread byte of `buf`.
    pos: usize,
    /// End of the valid bytes of `buf`.
    end: usize,
    /// `buf[digested..pos]` is consumed but not yet fed to `checksum`.
    digested: usize,
    /// Stream offset of `buf[0]`.
    buf_offset: u64,
    checksum: Checksum,
    /// For a zstd stream: set when the file itself (not the decoder) failed, to tell an I/O error
    /// from a decompression error.
    source_failed: Option<Rc<Cell<bool>>>,
}

impl<'f, R: Read> Input<'f, R> {
    fn new(inner: R, file: &'f str, source_failed: Option<Rc<Cell<bool>>>) -> Self {
        Self::with_buffer_size(inner, file, source_failed, BUF_SIZE)
    }

    /// An input reading `inner` through a buffer of `buf_size` bytes (at least 1): a small one
    /// for a small source, such as a DUMP payload already in memory.
    pub(super) fn with_buffer_size(
        inner: R,
        file: &'f str,
        source_failed: Option<Rc<Cell<bool>>>,
        buf_size: usize,
    ) -> Self {
        Input {
            inner,
            file,
            buf: vec![0; buf_size.clamp(1, BUF_SIZE)].into_boxed_slice(),
            pos: 0,
            end: 0,
            digested: 0,
            buf_offset: 0,
            checksum: Checksum::new(),
            source_failed,
        }
    }

    pub(super) fn offset(&self) -> u64 {
        self.buf_offset + self.pos as u64
    }

    /// Replaces the consumed buffer with the next bytes; returns false at end of stream.
    fn refill(&mut self, at: u64) -> Result<bool, LoadError> {
        debug_assert_eq!(self.pos, self.end);
        self.checksum.update(&self.buf[self.digested..self.pos]);
        self.buf_offset += self.end as u64;
        self.pos = 0;
        self.end = 0;
        self.digested = 0;
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(n) => {
                    self.end = n;
                    return Ok(n > 0);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(self.io_error(at, source)),
            }
        }
    }

    fn try_read_u8(&mut self, at: u64) -> Result<Option<u8>, LoadError> {
        if self.pos == self.end && !self.refill(at)? {
            return Ok(None);
        }
        let byte = self.buf[self.pos];
        self.pos += 1;
        Ok(Some(byte))
    }

    pub(super) fn read_u8(&mut self, at: u64, what: &'static str) -> Result<u8, LoadError> {
        self.try_read_u8(at)?.ok_or_else(|| self.eof(at, what))
    }

    pub(super) fn read_array<const N: usize>(
        &mut self,
        at: u64,
        what: &'static str,
    ) -> Result<[u8; N], LoadError> {
        let mut array = [0u8; N];
        let mut filled = 0;
        while filled < N {
            if self.pos == self.end && !self.refill(at)? {
                return Err(self.eof(at, what));
            }
            let n = (N - filled).min(self.end - self.pos);
            array[filled..filled + n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            filled += n;
        }
        Ok(array)
    }

    /// Appends exactly `len` bytes to `dst`, growing it only as bytes arrive.
    pub(super) fn read_into(
        &mut self,
        dst: &mut Vec<u8>,
        len: u64,
        at: u64,
        what: &'static str,
    ) -> Result<(), LoadError> {
        let buffered = (self.end - self.pos) as u64;
        let justified = usize::try_from(len.min(buffered + BUF_SIZE as u64)).unwrap_or(BUF_SIZE);
        dst.reserve_exact(justified);
        let mut remaining = len;
        while remaining > 0 {
            if self.pos == self.end && !self.refill(at)? {
                return Err(self.eof(at, what));
            }
            let n = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(self.end - self.pos);
            dst.extend_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            remaining -= n as u64;
        }
        Ok(())
    }

    /// True if and only if the stream has no more bytes.
    fn at_end(&mut self, at: u64) -> Result<bool, LoadError> {
        Ok(self.pos == self.end && !self.refill(at)?)
    }

    /// The checksum of every byte consumed so far.
    fn checksum_so_far(&mut self) -> u64 {
        self.checksum.update(&self.buf[self.digested..self.pos]);
        self.digested = self.pos;
        self.checksum.finish()
    }

    fn read_len_or_encoding(
        &mut self,
        at: u64,
        what: &'static str,
    ) -> Result<LenOrEncoding, LoadError> {
        let first = self.read_u8(at, what)?;
        Ok(match first >> 6 {
            encoding::LEN_6BIT => LenOrEncoding::Len(u64::from(first & 0x3f)),
            encoding::LEN_14BIT => {
                let second = self.read_u8(at, what)?;
                LenOrEncoding::Len((u64::from(first & 0x3f) << 8) | u64::from(second))
            }
            encoding::ENCVAL => LenOrEncoding::Encoded(first & 0x3f),
            _ if first == encoding::LEN_32BIT => {
                LenOrEncoding::Len(u64::from(u32::from_be_bytes(self.read_array(at, what)?)))
            }
            _ if first == encoding::LEN_64BIT => {
                LenOrEncoding::Len(u64::from_be_bytes(self.read_array(at, what)?))
            }
            _ => {
                return Err(self.corrupted(
                    at,
                    format!("unknown length encoding {first:#04x} in {what}"),
                ));
            }
        })
    }

    pub(super) fn read_len(&mut self, at: u64, what: &'static str) -> Result<u64, LoadError> {
        match self.read_len_or_encoding(at, what)? {
            LenOrEncoding::Len(len) => Ok(len),
            LenOrEncoding::Encoded(_) => {
                Err(self.corrupted(at, format!("a string encoding where {what} belongs")))
            }
        }
    }

    /// Reads a string in any of its encodings. `scratch` holds LZF data between calls.
    pub(super) fn read_string(
        &mut self,
        at: u64,
        what: &'static str,
        scratch: &mut Vec<u8>,
    ) -> Result<Vec<u8>, LoadError> {
        let int = match self.read_len_or_encoding(at, what)? {
            LenOrEncoding::Len(len) => {
                let mut bytes = Vec::new();
                self.read_into(&mut bytes, len, at, what)?;
                return Ok(bytes);
            }
            LenOrEncoding::Encoded(encoding::ENC_INT8) => {
                i64::from(i8::from_le_bytes(self.read_array(at, what)?))
            }
            LenOrEncoding::Encoded(encoding::ENC_INT16) => {
                i64::from(i16::from_le_bytes(self.read_array(at, what)?))
            }
            LenOrEncoding::Encoded(encoding::ENC_INT32) => {
                i64::from(i32::from_le_bytes(self.read_array(at, what)?))
            }
            LenOrEncoding::Encoded(encoding::ENC_LZF) => return self.read_lzf(at, what, scratch),
            LenOrEncoding::Encoded(other) => {
                return Err(
                    self.corrupted(at, format!("unknown string encoding {other} in {what}"))
                );
            }
        };
        Ok(decimal(int))
    }

    fn read_lzf(
        &mut self,
        at: u64,
        what: &'static str,
        scratch: &mut Vec<u8>,
    ) -> Result<Vec<u8>, LoadError> {
        let compressed_len = self.read_len(at, "an LZF compressed length")?;
        let len = self.read_len(at, "an LZF string length")?;
        let len_usize = usize::try_from(len)
            .ok()
            .filter(|_| len <= compressed_len.saturating_mul(MAX_EXPANSION));
        let Some(len_usize) = len_usize else {
            return Err(self.corrupted(
                at,
                format!(
                    "{what}: LZF length {len} cannot come from {compressed_len} compressed bytes"
                ),
            ));
        };
        scratch.clear();
        self.read_into(scratch, compressed_len, at, what)?;
        let mut bytes = Vec::new();
        let result = lzf::decompress(scratch, len_usize, &mut bytes);
        if scratch.capacity() > SCRATCH_KEEP {
            *scratch = Vec::new();
        }
        result.map_err(|err| self.corrupted(at, format!("{what}: {}", err.reason())))?;
        Ok(bytes)
    }

    /// The file name used in errors.
    pub(super) fn file(&self) -> &'f str {
        self.file
    }

    pub(super) fn eof(&self, at: u64, what: &'static str) -> LoadError {
        LoadError::UnexpectedEof {
            file: self.file.to_owned(),
            offset: at,
            what,
        }
    }

    pub(super) fn corrupted(&self, at: u64, reason: impl Into<String>) -> LoadError {
        LoadError::Corrupted {
            file: self.file.to_owned(),
            offset: at,
            reason: reason.into(),
        }
    }

    fn io_error(&self, at: u64, source: io::Error) -> LoadError {
        let file = self.file.to_owned();
        match &self.source_failed {
            Some(failed) if !failed.get() => LoadError::Decompress {
                file,
                offset: at,
                source,
            },
            _ => LoadError::Io {
                file,
                offset: at,
                source,
            },
        }
    }
}

/// The file under a zstd decoder, noting whether it (rather than the decoder) failed.
struct TrackedSource<R> {
    inner: R,
    failed: Rc<Cell<bool>>,
}

impl<R: Read> Read for TrackedSource<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|err| {
            if err.kind() != io::ErrorKind::Interrupted {
                self.failed.set(true);
            }
        })
    }
}

/// `value` in decimal, as Redis turns an integer-encoded string back into bytes.
pub(super) fn decimal(value: i64) -> Vec<u8> {
    let mut digits = [0u8; 20];
    let mut pos = digits.len();
    let mut magnitude = value.unsigned_abs();
    loop {
        pos -= 1;
        digits[pos] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    let mut out = Vec::with_capacity(digits.len() - pos + 1);
    if value < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[pos..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_matches_to_string() {
        for value in [
            0,
            1,
            -1,
            9,
            10,
            -128,
            32767,
            i64::from(i32::MIN),
            i64::MAX,
            i64::MIN,
        ] {
            assert_eq!(decimal(value), value.to_string().into_bytes());
        }
    }

    #[test]
    fn loads_the_dump_redis_7_0_15_wrote() {
        // `SET a 1`, `SET longkey <100 x 'a'>`, `SET k2 hello PX 100000`, then SAVE (the bytes
        // of that dump.rdb, see encode.rs for the entries).
        let dump: &[u8] = b"REDIS0010\xfa\x09redis-ver\x067.0.15\xfa\x0aredis-bits\xc0\x40\
            \xfa\x05ctime\xc2\x75\x07\x06\x6b\xfa\x08used-mem\xc2\x70\x56\x0e\x00\
            \xfa\x08aof-base\xc0\x00\xfe\x00\xfb\x03\x01\
            \x00\x07longkey\xc3\x09\x40\x64\x01aa\xe0\x57\x00\x01aa\
            \x00\x01a\xc0\x01\
            \xfc\x99\xaa\x8e\x0f\xa2\x01\x00\x00\x00\x02k2\x05hello\
            \xff\x73\x15\x03\xf2\x08\xa9\x80\x34";
        let mut entries = Vec::new();
        let summary = load(dump, "dump.rdb", 0, |entry| {
            entries.push(entry);
            Ok(())
        })
        .unwrap();
        assert!(summary.checksum_verified);
        assert_eq!(summary.rdb_version, 10);
        assert_eq!(summary.keys_loaded, 3);
        assert_eq!(summary.bytes_read, dump.len() as u64);
        assert_eq!(summary.aux[0], ("redis-ver".to_owned(), b"7.0.15".to_vec()));
        assert_eq!(summary.aux[1], ("redis-bits".to_owned(), b"64".to_vec()));
        assert_eq!(entries[0].key, &b"longkey"[..]);
        assert_eq!(entries[0].value, Value::string(&[b'a'; 100]));
        assert_eq!(entries[1].value, Value::string(b"1"));
        assert_eq!(entries[2].expire_at_ms, Some(0x0000_01a2_0f8e_aa99));
        assert_eq!(entries[2].value, Value::string(b"hello"));
    }
}
