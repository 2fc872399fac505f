//! Reply encoding: [`Out`] writes each reply element straight into the connection's output
//! buffer, in the spelling of the client's protocol version, as Redis 7.0's `addReply*`
//! functions do.
//!
//! | element    | RESP3               | RESP2                        |
//! |------------|---------------------|------------------------------|
//! | null       | `_`                 | `$-1` (bulk) / `*-1` (array) |
//! | map        | `%n` + n pairs      | `*2n` + 2n elements          |
//! | set        | `~n`                | `*n`                         |
//! | push       | `>n`                | `*n`                         |
//! | double     | `,<%.17g>`          | bulk string of the same text |
//! | boolean    | `#t` / `#f`         | `:1` / `:0`                  |
//! | verbatim   | `=len` + `txt:data` | bulk string of `data`        |
//! | big number | `(digits`           | bulk string of the digits    |
//! | blob error | `!len` + bytes      | `-bytes`                     |
//!
//! Nothing here allocates except the output buffer's own growth: numbers go through `itoa`
//! and doubles through a stack buffer (`encode/double.rs`).

mod double;

use bytes::BytesMut;

use crate::Frame;

pub use double::format_double;

const CRLF: &[u8] = b"\r\n";

/// The protocol a connection speaks: RESP2 until the client sends `HELLO 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespVersion {
    /// RESP2, the default.
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

/// A connection's output buffer, and the protocol version its replies are written in.
#[derive(Debug, Clone)]
pub struct Out {
    /// Encoded replies not yet written to the socket.
    pub buf: BytesMut,
    /// The spelling to use for the elements whose RESP2 and RESP3 forms differ.
    pub version: RespVersion,
    /// Bytes written to the socket that `buf`'s allocation still holds before its first
    /// pending byte (see [`Out::written`]): they count in [`Out::allocation`].
    sent: usize,
}

impl Out {
    /// An empty output buffer; it allocates on first use.
    #[must_use]
    pub fn new(version: RespVersion) -> Self {
        Self {
            buf: BytesMut::new(),
            version,
            sent: 0,
        }
    }

    /// An empty output buffer with room for `capacity` bytes.
    #[must_use]
    pub fn with_capacity(version: RespVersion, capacity: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(capacity),
            version,
            sent: 0,
        }
    }

    /// Drops the first `n` pending bytes, written to the socket. Their room is taken back at
    /// once when nothing is left pending, and otherwise once they are at least as many as
    /// the bytes left (which are then moved to the front: a copy no longer than what was
    /// written); until then they still count in [`Out::allocation`].
    pub fn written(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        bytes::Buf::advance(&mut self.buf, n);
        self.sent += n;
        // One byte more than the spare room: `BytesMut` can give it only by taking the
        // written front back, which it does when that front is at least as long as the
        // bytes left (its amortised rule), and otherwise leaves the buffer as it is.
        let spare = self.buf.capacity() - self.buf.len();
        if self.sent > 0 && self.buf.try_reclaim(spare + 1) {
            self.sent = 0;
        }
    }

    /// What the buffer's allocation holds: its capacity and the written bytes before the
    /// pending ones that it has not taken back yet.
    #[must_use]
    pub fn allocation(&self) -> usize {
        self.buf.capacity() + self.sent
    }

    /// Replaces the buffer with `buf` (a smaller one, say), giving back the allocation.
    pub fn replace(&mut self, buf: BytesMut) {
        self.buf = buf;
        self.sent = 0;
    }

    /// Bytes waiting to be written.
    #[must_use]
    #[inline]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Returns true if and only if no bytes are waiting to be written.
    #[must_use]
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// `+OK`.
    #[inline]
    pub fn ok(&mut self) {
        self.buf.extend_from_slice(b"+OK\r\n");
    }

    /// `+<s>`, a status reply. The caller guarantees `s` holds no `\r` or `\n`.
    #[inline]
    pub fn simple(&mut self, s: &[u8]) {
        debug_assert!(
            !s.iter().any(|&byte| byte == b'\r' || byte == b'\n'),
            "status with CR/LF"
        );
        self.buf.extend_from_slice(b"+");
        self.buf.extend_from_slice(s);
        self.buf.extend_from_slice(CRLF);
    }

    /// `-<msg>`, an error reply. `msg` starts with its code (`ERR syntax error`,
    /// `WRONGTYPE …`); a leading `-` is not doubled. Any `\r` or `\n` in it becomes a space,
    /// as Redis does, so a message can never break the protocol.
    pub fn error(&mut self, msg: &str) {
        let msg = msg.strip_prefix('-').unwrap_or(msg);
        self.error_bytes(msg.as_bytes());
    }

    /// `:<n>`.
    #[inline]
    pub fn int(&mut self, n: i64) {
        self.header(b':', n);
    }

    /// `$<len>\r\n<b>\r\n`, a bulk string.
    #[inline]
    pub fn bulk(&mut self, b: &[u8]) {
        // One reservation for header, data and CRLF ("$" + 20 digits + 2 CRLFs).
        self.buf.reserve(b.len() + 25);
        self.header(b'$', b.len());
        self.buf.extend_from_slice(b);
        self.buf.extend_from_slice(CRLF);
    }

    /// A bulk string holding the decimal text of `n` (what `INCR`-family values look like as
    /// strings).
    pub fn bulk_int(&mut self, n: i64) {
        let mut digits = itoa::Buffer::new();
        self.bulk(digits.format(n).as_bytes());
    }

    /// The null bulk string: `$-1` in RESP2, `_` in RESP3.
    #[inline]
    pub fn null(&mut self) {
        self.buf.extend_from_slice(match self.version {
            RespVersion::Resp2 => b"$-1\r\n",
            RespVersion::Resp3 => b"_\r\n",
        });
    }

    /// The null array: `*-1` in RESP2, `_` in RESP3.
    #[inline]
    pub fn null_array(&mut self) {
        self.buf.extend_from_slice(match self.version {
            RespVersion::Resp2 => b"*-1\r\n",
            RespVersion::Resp3 => b"_\r\n",
        });
    }

    /// `*<n>`: an array of `n` elements follows.
    #[inline]
    pub fn array_len(&mut self, n: usize) {
        self.header(b'*', n);
    }

    /// A map of `n_pairs` key/value pairs follows: `%<n>` in RESP3, `*<2n>` in RESP2.
    pub fn map_len(&mut self, n_pairs: usize) {
        match self.version {
            RespVersion::Resp2 => self.header(b'*', n_pairs.saturating_mul(2)),
            RespVersion::Resp3 => self.header(b'%', n_pairs),
        }
    }

    /// A set of `n` elements follows: `~<n>` in RESP3, `*<n>` in RESP2.
    pub fn set_len(&mut self, n: usize) {
        self.aggregate_len(b'~', n);
    }

    /// A push message of `n` elements follows: `><n>` in RESP3, `*<n>` in RESP2.
    pub fn push_len(&mut self, n: usize) {
        self.aggregate_len(b'>', n);
    }

    /// A double in Redis 7.0's `%.17g` text ([`format_double`]): `,<text>` in RESP3, a bulk
    /// string in RESP2.
    pub fn double(&mut self, d: f64) {
        let text = double::DoubleText::new(d);
        match self.version {
            RespVersion::Resp2 => self.bulk(text.as_bytes()),
            RespVersion::Resp3 => {
                self.buf.extend_from_slice(b",");
                self.buf.extend_from_slice(text.as_bytes());
                self.buf.extend_from_slice(CRLF);
            }
        }
    }

    /// A double already formatted by the caller (Redis's `addReplyHumanLongDouble` text):
    /// `,<text>` in RESP3, a bulk string in RESP2.
    pub fn double_text(&mut self, text: &[u8]) {
        match self.version {
            RespVersion::Resp2 => self.bulk(text),
            RespVersion::Resp3 => {
                self.buf.extend_from_slice(b",");
                self.buf.extend_from_slice(text);
                self.buf.extend_from_slice(CRLF);
            }
        }
    }

    /// `#t` / `#f` in RESP3, `:1` / `:0` in RESP2.
    pub fn boolean(&mut self, b: bool) {
        self.buf.extend_from_slice(match (self.version, b) {
            (RespVersion::Resp2, true) => b":1\r\n",
            (RespVersion::Resp2, false) => b":0\r\n",
            (RespVersion::Resp3, true) => b"#t\r\n",
            (RespVersion::Resp3, false) => b"#f\r\n",
        });
    }

    /// Text for humans: `=<len>\r\n<format>:<data>` in RESP3, a bulk string of `data` in RESP2.
    pub fn verbatim(&mut self, format: &[u8; 3], data: &[u8]) {
        match self.version {
            RespVersion::Resp2 => self.bulk(data),
            RespVersion::Resp3 => {
                self.header(b'=', data.len().saturating_add(4));
                self.buf.extend_from_slice(format);
                self.buf.extend_from_slice(b":");
                self.buf.extend_from_slice(data);
                self.buf.extend_from_slice(CRLF);
            }
        }
    }

    /// An integer of any size, given as its decimal digits (with an optional leading `-`):
    /// `(<digits>` in RESP3, a bulk string in RESP2.
    pub fn big_number(&mut self, digits: &[u8]) {
        match self.version {
            RespVersion::Resp2 => self.bulk(digits),
            RespVersion::Resp3 => {
                self.buf.extend_from_slice(b"(");
                self.buf.extend_from_slice(digits);
                self.buf.extend_from_slice(CRLF);
            }
        }
    }

    /// Encodes any [`Frame`] for this connection's version, mapping RESP3-only frames onto
    /// RESP2 as the table in this module's docs says.
    pub fn frame(&mut self, f: &Frame) {
        match f {
            Frame::Simple(text) => self.simple(text),
            Frame::Error(msg) => self.error_bytes(msg),
            Frame::Integer(n) => self.int(*n),
            Frame::Bulk(data) => self.bulk(data),
            Frame::Null | Frame::Resp3Null => self.null(),
            Frame::NullArray => self.null_array(),
            Frame::Array(elements) => {
                self.array_len(elements.len());
                elements.iter().for_each(|element| self.frame(element));
            }
            Frame::Map(pairs) => {
                self.map_len(pairs.len());
                for (key, value) in pairs {
                    self.frame(key);
                    self.frame(value);
                }
            }
            Frame::Set(elements) => {
                self.set_len(elements.len());
                elements.iter().for_each(|element| self.frame(element));
            }
            Frame::Push(elements) => {
                self.push_len(elements.len());
                elements.iter().for_each(|element| self.frame(element));
            }
            Frame::Double(d) => self.double(*d),
            Frame::Boolean(b) => self.boolean(*b),
            Frame::BigNumber(digits) => self.big_number(digits),
            Frame::Verbatim { format, data } => self.verbatim(format, data),
            Frame::BlobError(msg) => match self.version {
                RespVersion::Resp2 => self.error_bytes(msg),
                RespVersion::Resp3 => {
                    self.header(b'!', msg.len());
                    self.buf.extend_from_slice(msg);
                    self.buf.extend_from_slice(CRLF);
                }
            },
        }
    }

    /// `<prefix><n>\r\n`.
    #[inline]
    fn header(&mut self, prefix: u8, n: impl itoa::Integer) {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(n).as_bytes();
        self.buf.reserve(digits.len() + 3);
        self.buf.extend_from_slice(&[prefix]);
        self.buf.extend_from_slice(digits);
        self.buf.extend_from_slice(CRLF);
    }

    /// `<resp3_prefix><n>` in RESP3, `*<n>` in RESP2.
    fn aggregate_len(&mut self, resp3_prefix: u8, n: usize) {
        match self.version {
            RespVersion::Resp2 => self.header(b'*', n),
            RespVersion::Resp3 => self.header(resp3_prefix, n),
        }
    }

    /// `-<msg>\r\n` with CR and LF in `msg` turned into spaces.
    fn error_bytes(&mut self, msg: &[u8]) {
        self.buf.reserve(msg.len() + 3);
        self.buf.extend_from_slice(b"-");
        if msg.iter().any(|&byte| byte == b'\r' || byte == b'\n') {
            self.buf.extend(msg.iter().map(|&byte| {
                if byte == b'\r' || byte == b'\n' {
                    b' '
                } else {
                    byte
                }
            }));
        } else {
            self.buf.extend_from_slice(msg);
        }
        self.buf.extend_from_slice(CRLF);
    }
}

#[cfg(test)]
mod tests;
