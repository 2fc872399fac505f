//! Request decoding: the server side of RESP, which Redis calls the query buffer.
//!
//! A request is either *multibulk* (`*<count>\r\n` then `count` times `$<len>\r\n<bytes>\r\n`),
//! which every client library sends, or *inline* (a line of space-separated words, for telnet),
//! chosen by whether its first byte is `*`. The rules mirror Redis 7.0's `processMultibulkBuffer`
//! and `processInlineBuffer` (`networking.c`), including their leniencies:
//!
//! - A `*`/`$` header line ends at the first `\r`; the byte after it is skipped unread, and so
//!   are the two bytes after a bulk argument's data. Redis checks none of them for `\n` / `\r\n`.
//! - A count of zero or below (`*0`, `*-1`) is an empty command; a negative bulk length is an
//!   error.
//! - An inline request ends at `\n`, with one `\r` before it stripped.
//! - Lines are found with C's `strchr`, which stops at NUL: a line with a NUL byte before its
//!   end never ends, and fails as too big once `max_inline_len` bytes are pending.
//!
//! Where Redis's error depends on how the bytes were split across `read(2)` calls (the "too
//! big" errors fire when 64 KiB have piled up without a line end), this decoder applies the
//! limit to the line itself, so the outcome is the same however the input is chunked.
//!
//! The reply parser, [`decode_frame`], lives in `decode/reply.rs`; inline splitting lives in
//! `decode/inline.rs`.

mod inline;
mod reply;

use bytes::{Buf, Bytes, BytesMut};

use crate::ProtocolError;

pub use reply::{MAX_FRAME_DEPTH, decode_frame};

/// Redis's default `proto-max-bulk-len`.
const DEFAULT_MAX_BULK_LEN: u64 = 512 * 1024 * 1024;
/// Redis 7.0 accepts up to `INT_MAX` arguments (the 1M cap of Redis 6 went in 7.0).
const DEFAULT_MAX_MULTIBULK_LEN: u64 = i32::MAX as u64;
/// Redis's `PROTO_INLINE_MAX_SIZE`.
const DEFAULT_MAX_INLINE_LEN: usize = 64 * 1024;
/// Argument slots reserved up front for a multibulk request, whatever count it declares; the
/// vector grows as arguments actually arrive. Redis reserves `min(count, 1024)` too.
const ARGV_PREALLOC: u64 = 1024;
/// [`RequestDecoder::bytes_wanted`] never exceeds the larger of this and what has already
/// arrived of the argument, so a lying length header costs at most 1 MiB or 2x what was sent.
const RESERVE_AHEAD: usize = 1024 * 1024;
/// What a client that has not authenticated yet may send (Redis 7.0's `processMultibulkBuffer`
/// when `requirepass` is set): at most 10 arguments, each at most 16 KiB.
const UNAUTHENTICATED_MAX_MULTIBULK_LEN: i64 = 10;
const UNAUTHENTICATED_MAX_BULK_LEN: u64 = 16 * 1024;

/// Size limits applied to untrusted input. Defaults are Redis 7.0's.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest accepted bulk string (`proto-max-bulk-len`): 512 MiB by default.
    pub max_bulk_len: u64,
    /// Most elements in one multibulk request or reply aggregate: `INT_MAX` by default, as in
    /// Redis 7.0.
    pub max_multibulk_len: u64,
    /// Longest inline request and longest `*`/`$` header line, in bytes, line end excluded:
    /// 64 KiB by default (`PROTO_INLINE_MAX_SIZE`).
    pub max_inline_len: usize,
    /// The client must authenticate and has not yet: multibulk requests are held to 10
    /// arguments of at most 16 KiB, as Redis 7.0 does. False by default.
    pub unauthenticated: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bulk_len: DEFAULT_MAX_BULK_LEN,
            max_multibulk_len: DEFAULT_MAX_MULTIBULK_LEN,
            max_inline_len: DEFAULT_MAX_INLINE_LEN,
            unauthenticated: false,
        }
    }
}

/// Where the decoder is between two calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a request.
    Idle,
    /// Inside a multibulk request whose `*` line has been consumed.
    Multibulk {
        /// Arguments still to come, at least 1.
        remaining: u64,
        /// The declared length of the next argument once its `$` line has been consumed.
        bulk_len: Option<usize>,
    },
}

/// Server-side incremental request decoder: one per connection.
///
/// Between calls the caller may only *append* to the buffer it passes to
/// [`decode`](Self::decode): the decoder remembers how far into it it has already looked.
/// After an error the connection must be closed; the decoder is reset, but the buffer is left
/// wherever the error was found.
#[derive(Debug)]
pub struct RequestDecoder {
    limits: Limits,
    state: State,
    /// Arguments of the multibulk request in progress.
    argv: Vec<Bytes>,
    /// The bytes of `argv`'s arguments plus a pointer each ([`pending_argv_bytes`]).
    ///
    /// [`pending_argv_bytes`]: Self::pending_argv_bytes
    argv_bytes: usize,
    /// Bytes at the front of the buffer already searched, in vain, for the end of the pending
    /// header or inline line; or the position of a line end found while waiting for the byte
    /// after it. Reset to 0 whenever bytes are taken off the front.
    scanned: usize,
    /// What [`bytes_wanted`](Self::bytes_wanted) reports.
    wanted: usize,
}

impl RequestDecoder {
    /// A decoder at the start of a connection.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: State::Idle,
            argv: Vec::new(),
            argv_bytes: 0,
            scanned: 0,
            wanted: 0,
        }
    }

    /// Replaces the limits (`CONFIG SET proto-max-bulk-len`); they apply from the next header
    /// parsed, so an argument whose length was already accepted is still read in full.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Takes one complete command off the front of `buf` and returns its argv.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold a whole command. Parts of it may have
    /// been consumed already (finished header lines and arguments are taken off `buf` and kept
    /// in the decoder), so the caller just appends what arrives next and calls again; every
    /// byte is looked at a bounded number of times, however the input is split.
    ///
    /// An empty inline line, `*0\r\n` and `*-1\r\n` return `Ok(Some(vec![]))`, which the
    /// server ignores, as Redis does. Multibulk arguments are zero-copy slices of `buf`;
    /// inline arguments are copied, since quoting rewrites them.
    ///
    /// # Errors
    ///
    /// Any [`ProtocolError`] but [`ProtocolError::Invalid`]; the caller should reply
    /// `-ERR <error>` and close the connection.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        self.wanted = 0;
        let result = self.decode_inner(buf);
        if result.is_err() {
            self.state = State::Idle;
            self.argv = Vec::new();
            self.scanned = 0;
        }
        if !matches!(result, Ok(None)) {
            self.argv_bytes = 0;
        }
        result
    }

    /// The arguments of a multibulk request received so far but not yet complete: their bytes
    /// plus a pointer each, as Redis's `argv_len_sum` (what a client that never finishes its
    /// command holds, for CLIENT LIST's `argv-mem` and client eviction).
    #[must_use]
    pub fn pending_argv_bytes(&self) -> usize {
        self.argv_bytes
    }

    /// How many more bytes the connection should make room for to finish the argument being
    /// received, after `decode` returned `Ok(None)`: the bytes still missing (its trailing
    /// `\r\n` included), but never more than 1 MiB or the amount of it already received,
    /// whichever is larger, so a hostile length header cannot make the server reserve memory
    /// the peer never sends. 0 when no argument is in progress.
    #[must_use]
    pub fn bytes_wanted(&self) -> usize {
        self.wanted
    }

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let (mut remaining, mut bulk_len) = match self.state {
            State::Multibulk {
                remaining,
                bulk_len,
            } => (remaining, bulk_len),
            State::Idle => {
                let Some(&first) = buf.first() else {
                    return Ok(None);
                };
                if first != b'*' {
                    return self.decode_inline(buf);
                }
                let Some(line_end) =
                    self.find_line_end(buf, b'\r', ProtocolError::TooBigMultibulkCountString)?
                else {
                    return Ok(None);
                };
                // Redis wants the byte after '\r' to be there, but does not look at it.
                if buf.len() < line_end + 2 {
                    return Ok(None);
                }
                let count = buf
                    .get(1..line_end)
                    .and_then(parse_i64)
                    .filter(|&count| {
                        u64::try_from(count)
                            .map_or(true, |count| count <= self.limits.max_multibulk_len)
                    })
                    .ok_or(ProtocolError::InvalidMultibulkLength)?;
                if self.limits.unauthenticated && count > UNAUTHENTICATED_MAX_MULTIBULK_LEN {
                    return Err(ProtocolError::UnauthenticatedMultibulkLength);
                }
                buf.advance(line_end + 2);
                self.scanned = 0;
                let count = match u64::try_from(count) {
                    Ok(count) if count > 0 => count,
                    _ => return Ok(Some(Vec::new())),
                };
                let prealloc = usize::try_from(count.min(ARGV_PREALLOC)).unwrap_or(0);
                self.argv = Vec::with_capacity(prealloc);
                (count, None)
            }
        };

        while remaining > 0 {
            let len = match bulk_len {
                Some(len) => len,
                None => match self.bulk_header(buf)? {
                    Some(len) => len,
                    None => {
                        self.state = State::Multibulk {
                            remaining,
                            bulk_len: None,
                        };
                        return Ok(None);
                    }
                },
            };
            let needed = len.saturating_add(2);
            if buf.len() < needed {
                let arrived = buf.len();
                self.wanted = (needed - arrived).min(arrived.max(RESERVE_AHEAD));
                self.state = State::Multibulk {
                    remaining,
                    bulk_len: Some(len),
                };
                return Ok(None);
            }
            let arg = buf.split_to(len).freeze();
            // Redis skips the two bytes after the data without checking they are "\r\n".
            buf.advance(2);
            self.argv_bytes = self
                .argv_bytes
                .saturating_add(arg.len() + std::mem::size_of::<usize>());
            self.argv.push(arg);
            remaining -= 1;
            bulk_len = None;
        }
        self.state = State::Idle;
        Ok(Some(std::mem::take(&mut self.argv)))
    }

    /// Parses and consumes a `$<len>\r\n` line, returning `len`, or `None` if the line is not
    /// complete yet.
    fn bulk_header(&mut self, buf: &mut BytesMut) -> Result<Option<usize>, ProtocolError> {
        let Some(line_end) =
            self.find_line_end(buf, b'\r', ProtocolError::TooBigBulkCountString)?
        else {
            return Ok(None);
        };
        if buf.len() < line_end + 2 {
            return Ok(None);
        }
        match buf.first() {
            Some(b'$') => {}
            Some(&other) => return Err(ProtocolError::ExpectedDollar(char::from(other))),
            None => return Ok(None),
        }
        let len = buf
            .get(1..line_end)
            .and_then(parse_i64)
            .and_then(|len| u64::try_from(len).ok())
            .filter(|&len| len <= self.limits.max_bulk_len)
            .and_then(|len| usize::try_from(len).ok())
            .ok_or(ProtocolError::InvalidBulkLength)?;
        if self.limits.unauthenticated && len as u64 > UNAUTHENTICATED_MAX_BULK_LEN {
            return Err(ProtocolError::UnauthenticatedBulkLength);
        }
        buf.advance(line_end + 2);
        self.scanned = 0;
        Ok(Some(len))
    }

    /// Decodes one inline request: a line ending at `\n`.
    fn decode_inline(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let Some(newline) = self.find_line_end(buf, b'\n', ProtocolError::TooBigInlineRequest)?
        else {
            return Ok(None);
        };
        let line = buf.get(..newline).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let argv = inline::split_args(line).ok_or(ProtocolError::UnbalancedQuotes)?;
        buf.advance(newline + 1);
        self.scanned = 0;
        Ok(Some(argv))
    }

    /// Finds the first `terminator` in the line at the front of `buf`, resuming where the last
    /// call stopped.
    ///
    /// A line whose terminator lies more than `max_inline_len` bytes in is `too_long`, whether
    /// or not the terminator has arrived yet: Redis only notices once that much has piled up
    /// unterminated, which is the same verdict for any split of the input.
    ///
    /// Redis finds line ends with `strchr`, which stops at a NUL byte, so a line with a NUL
    /// before its terminator never ends: it waits for more input until more than
    /// `max_inline_len` bytes are pending, then fails `too_long`. Redis's "protocol desync"
    /// tests rely on exactly that.
    fn find_line_end(
        &mut self,
        buf: &[u8],
        terminator: u8,
        too_long: ProtocolError,
    ) -> Result<Option<usize>, ProtocolError> {
        let max = self.limits.max_inline_len;
        let search_end = buf.len().min(max.saturating_add(1));
        let from = self.scanned.min(search_end);
        let found = buf
            .get(from..search_end)
            .and_then(|region| {
                region
                    .iter()
                    .position(|&byte| byte == terminator || byte == 0)
            })
            .map(|offset| from + offset);
        match found {
            Some(end) if buf.get(end) == Some(&terminator) => {
                self.scanned = end;
                return Ok(Some(end));
            }
            // A NUL: stay on it, so the next call finds it again without rescanning.
            Some(nul) => self.scanned = nul,
            None => self.scanned = search_end,
        }
        if buf.len() > max {
            return Err(too_long);
        }
        Ok(None)
    }

    /// The capacity of the argv being collected; lets tests check that a declared count is not
    /// trusted.
    #[cfg(test)]
    fn argv_capacity(&self) -> usize {
        self.argv.capacity()
    }
}

/// Redis's `string2ll`: a strict decimal `i64`. No sign but a leading `-`, no leading zeros
/// (except `0` itself), no spaces, at most 20 bytes, `-0` refused.
pub(crate) fn parse_i64(text: &[u8]) -> Option<i64> {
    // LONG_STR_SIZE is 21: Redis refuses 21 bytes or more before looking at them.
    if text.is_empty() || text.len() >= 21 {
        return None;
    }
    if text == b"0" {
        return Some(0);
    }
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (&first, rest) = digits.split_first()?;
    if !(b'1'..=b'9').contains(&first) {
        return None;
    }
    let mut magnitude = u64::from(first - b'0');
    for &byte in rest {
        if !byte.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(byte - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

#[cfg(test)]
mod tests;
