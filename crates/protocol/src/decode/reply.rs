//! [`decode_frame`]: a stateless RESP2 + RESP3 parser for replies.
//!
//! Unlike the request decoder it is strict about line ends (`\r` must be followed by `\n`, and
//! a blob's data by `\r\n`), since it exists to check what a server wrote. It recurses once per
//! nesting level and refuses more than [`MAX_FRAME_DEPTH`] levels, which also keeps the
//! recursive `Drop`, `PartialEq` and encoding of the frames it builds off the end of the stack.

use bytes::Bytes;

use super::{Limits, parse_i64};
use crate::{Frame, ProtocolError};

/// Deepest nesting of aggregates (arrays, maps, sets, pushes) that [`decode_frame`] accepts.
/// Redis 7.0's deepest replies (`COMMAND DOCS`, `XINFO STREAM FULL`) nest well under ten.
pub const MAX_FRAME_DEPTH: usize = 128;

/// Aggregate slots reserved up front, whatever count a header declares.
const PREALLOC: usize = 1024;

/// Full RESP2+RESP3 frame decoder for replies (used by clients, tests and proptests).
///
/// Returns the frame and how many bytes of `buf` it used, or `Ok(None)` if `buf` holds no
/// complete frame yet (any strict prefix of a valid frame gives `Ok(None)`).
///
/// `$-1` decodes to [`Frame::Null`], `*-1` to [`Frame::NullArray`] and `_` to
/// [`Frame::Resp3Null`]. Bulk lengths are checked against `limits.max_bulk_len`, aggregate
/// counts against `limits.max_multibulk_len` and line lengths against `limits.max_inline_len`.
///
/// # Errors
///
/// [`ProtocolError::InvalidBulkLength`] and [`ProtocolError::InvalidMultibulkLength`] for bad
/// or over-limit lengths, and [`ProtocolError::Invalid`] for everything else that is malformed.
pub fn decode_frame(buf: &[u8], limits: &Limits) -> Result<Option<(Frame, usize)>, ProtocolError> {
    let mut parser = Parser {
        buf,
        pos: 0,
        limits,
    };
    Ok(parser.frame(0)?.map(|frame| (frame, parser.pos)))
}

/// Unwraps `Ok(Some(x))` to `x`, and returns `Ok(None)` (incomplete) or the error otherwise.
macro_rules! ready {
    ($e:expr) => {
        match $e? {
            Some(value) => value,
            None => return Ok(None),
        }
    };
}

struct Parser<'a> {
    buf: &'a [u8],
    /// Where the next unread byte is.
    pos: usize,
    limits: &'a Limits,
}

impl<'a> Parser<'a> {
    fn frame(&mut self, depth: usize) -> Result<Option<Frame>, ProtocolError> {
        let Some(&kind) = self.buf.get(self.pos) else {
            return Ok(None);
        };
        match kind {
            b'+' | b'-' | b':' | b'$' | b'!' | b'=' | b'*' | b'~' | b'>' | b'%' | b',' | b'#'
            | b'(' | b'_' => {}
            b'|' => return Err(ProtocolError::Invalid("attributes are not supported")),
            _ => return Err(ProtocolError::Invalid("unknown frame type")),
        }
        self.pos += 1;
        let line = ready!(self.line());
        let frame = match kind {
            b'+' => Frame::Simple(Bytes::copy_from_slice(line)),
            b'-' => Frame::Error(Bytes::copy_from_slice(line)),
            b':' => {
                Frame::Integer(parse_i64(line).ok_or(ProtocolError::Invalid("invalid integer"))?)
            }
            b'$' => {
                if line == b"-1" {
                    Frame::Null
                } else {
                    Frame::Bulk(ready!(self.blob(line)))
                }
            }
            b'!' => Frame::BlobError(ready!(self.blob(line))),
            b'=' => {
                let blob = ready!(self.blob(line));
                match (blob.get(..3), blob.get(3)) {
                    (Some(&[a, b, c]), Some(b':')) => Frame::Verbatim {
                        format: [a, b, c],
                        data: blob.slice(4..),
                    },
                    _ => return Err(ProtocolError::Invalid("verbatim string without format")),
                }
            }
            b'*' => {
                if line == b"-1" {
                    Frame::NullArray
                } else {
                    Frame::Array(ready!(self.elements(line, depth)))
                }
            }
            b'~' => Frame::Set(ready!(self.elements(line, depth))),
            b'>' => Frame::Push(ready!(self.elements(line, depth))),
            b'%' => {
                let count = self.count(line, depth)?;
                let mut pairs = Vec::with_capacity(count.min(PREALLOC));
                for _ in 0..count {
                    let key = ready!(self.frame(depth + 1));
                    let value = ready!(self.frame(depth + 1));
                    pairs.push((key, value));
                }
                Frame::Map(pairs)
            }
            b',' => Frame::Double(parse_double(line)?),
            b'#' => match line {
                b"t" => Frame::Boolean(true),
                b"f" => Frame::Boolean(false),
                _ => return Err(ProtocolError::Invalid("invalid boolean")),
            },
            b'(' => {
                let digits = line.strip_prefix(b"-").unwrap_or(line);
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(ProtocolError::Invalid("invalid big number"));
                }
                Frame::BigNumber(Bytes::copy_from_slice(line))
            }
            b'_' => {
                if !line.is_empty() {
                    return Err(ProtocolError::Invalid("invalid null"));
                }
                Frame::Resp3Null
            }
            _ => return Err(ProtocolError::Invalid("unknown frame type")),
        };
        Ok(Some(frame))
    }

    /// Reads the rest of the current line, consuming its `\r\n`.
    fn line(&mut self) -> Result<Option<&'a [u8]>, ProtocolError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let max = self.limits.max_inline_len;
        let searched = rest
            .get(..rest.len().min(max.saturating_add(1)))
            .unwrap_or_default();
        let Some(cr) = searched.iter().position(|&byte| byte == b'\r') else {
            if rest.len() > max {
                return Err(ProtocolError::Invalid("line too long"));
            }
            return Ok(None);
        };
        match rest.get(cr + 1) {
            None => Ok(None),
            Some(b'\n') => {
                self.pos += cr + 2;
                Ok(rest.get(..cr))
            }
            Some(_) => Err(ProtocolError::Invalid("line not terminated by CRLF")),
        }
    }

    /// Reads the data of a blob whose length line was `len_line`, plus its `\r\n`.
    fn blob(&mut self, len_line: &[u8]) -> Result<Option<Bytes>, ProtocolError> {
        if len_line == b"?" {
            return Err(ProtocolError::Invalid("streamed strings are not supported"));
        }
        let len = parse_i64(len_line)
            .and_then(|len| u64::try_from(len).ok())
            .filter(|&len| len <= self.limits.max_bulk_len)
            .and_then(|len| usize::try_from(len).ok())
            .ok_or(ProtocolError::InvalidBulkLength)?;
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let (Some(data), Some(terminator)) =
            (rest.get(..len), rest.get(len..len.saturating_add(2)))
        else {
            return Ok(None);
        };
        if terminator != b"\r\n" {
            return Err(ProtocolError::Invalid("bulk string not terminated by CRLF"));
        }
        self.pos += len + 2;
        Ok(Some(Bytes::copy_from_slice(data)))
    }

    /// Parses an aggregate's count line, enforcing the limits and the nesting depth.
    fn count(&self, count_line: &[u8], depth: usize) -> Result<usize, ProtocolError> {
        if count_line == b"?" {
            return Err(ProtocolError::Invalid(
                "streamed aggregates are not supported",
            ));
        }
        if depth >= MAX_FRAME_DEPTH {
            return Err(ProtocolError::Invalid("frame nesting too deep"));
        }
        parse_i64(count_line)
            .and_then(|count| u64::try_from(count).ok())
            .filter(|&count| count <= self.limits.max_multibulk_len)
            .and_then(|count| usize::try_from(count).ok())
            .ok_or(ProtocolError::InvalidMultibulkLength)
    }

    /// Reads the elements of an array, set or push.
    fn elements(
        &mut self,
        count_line: &[u8],
        depth: usize,
    ) -> Result<Option<Vec<Frame>>, ProtocolError> {
        let count = self.count(count_line, depth)?;
        let mut elements = Vec::with_capacity(count.min(PREALLOC));
        for _ in 0..count {
            elements.push(ready!(self.frame(depth + 1)));
        }
        Ok(Some(elements))
    }
}

/// Parses a RESP3 double: `inf`, `-inf`, `nan` or a decimal number.
fn parse_double(line: &[u8]) -> Result<f64, ProtocolError> {
    let invalid = ProtocolError::Invalid("invalid double");
    let text = std::str::from_utf8(line).map_err(|_| invalid.clone())?;
    match text {
        "inf" | "+inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        "nan" | "-nan" => Ok(f64::NAN),
        _ => {
            // Rust also accepts "infinity" and "NaN" in any case; refuse those spellings so that
            // only what Redis writes is accepted.
            if text
                .bytes()
                .any(|byte| byte.is_ascii_alphabetic() && byte != b'e' && byte != b'E')
            {
                return Err(invalid);
            }
            text.parse().map_err(|_| invalid)
        }
    }
}
