//! [`Frame`]: one RESP2 or RESP3 value, as a tree.
//!
//! The server does not build replies as frames (it writes straight into [`Out`](crate::Out));
//! frames exist for [`decode_frame`](crate::decode_frame), for tests and for clients, and for
//! the rare reply that is easier to build as a value first.

use bytes::Bytes;

/// One RESP value. RESP2 has the first seven variants; the rest exist only in RESP3, and
/// [`Out::frame`](crate::Out::frame) maps each of them onto RESP2 the way Redis 7.0 does when
/// the client has not sent `HELLO 3`.
///
/// `PartialEq` compares [`Frame::Double`] with `f64`'s `==`, so a frame holding NaN is not equal
/// to itself.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+<text>\r\n`: a status reply such as `OK`. Never contains `\r` or `\n`.
    Simple(Bytes),
    /// `-<code> <text>\r\n`: an error reply, code included (`ERR syntax error`).
    Error(Bytes),
    /// `:<n>\r\n`.
    Integer(i64),
    /// `$<len>\r\n<bytes>\r\n`: a binary-safe string.
    Bulk(Bytes),
    /// RESP2's null bulk string, `$-1\r\n`.
    Null,
    /// RESP2's null array, `*-1\r\n`.
    NullArray,
    /// `*<n>\r\n` followed by `n` frames.
    Array(Vec<Frame>),
    /// RESP3 `%<n>\r\n` followed by `n` key/value pairs; RESP2 sends a flat array of `2n`.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~<n>\r\n`, an unordered collection; RESP2 sends an array.
    Set(Vec<Frame>),
    /// RESP3 `><n>\r\n`, an out-of-band message (pub/sub, invalidation); RESP2 sends an array.
    Push(Vec<Frame>),
    /// RESP3 `,<double>\r\n` written with [`format_double`](crate::format_double); RESP2 sends
    /// the same text as a bulk string.
    Double(f64),
    /// RESP3 `#t\r\n` / `#f\r\n`; RESP2 sends `:1` / `:0`.
    Boolean(bool),
    /// RESP3 `(<digits>\r\n`, an integer of any size; RESP2 sends the digits as a bulk string.
    BigNumber(Bytes),
    /// RESP3 `=<len>\r\n<fmt>:<data>\r\n`, text meant for humans (`txt`, `mkd`); RESP2 sends
    /// `data` as a bulk string.
    Verbatim {
        /// The three-byte format tag, e.g. `*b"txt"`.
        format: [u8; 3],
        /// The text after `<fmt>:`.
        data: Bytes,
    },
    /// RESP3 `!<len>\r\n<bytes>\r\n`, a binary-safe error; RESP2 sends it as `-<bytes>` with
    /// `\r` and `\n` replaced by spaces.
    BlobError(Bytes),
    /// RESP3 `_\r\n`, the one null of RESP3; RESP2 sends `$-1`.
    Resp3Null,
}
