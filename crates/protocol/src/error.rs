//! The one error type of this crate.
//!
//! Every variant's `Display` text is byte-for-byte what Redis 7.0 sends after `-ERR ` before it
//! closes the connection (see `processMultibulkBuffer` and `processInlineBuffer` in Redis's
//! `networking.c`), so the server can reply with `format!("ERR {err}")` and nothing else.

/// A request or reply that is not valid RESP. The connection that produced it cannot be resumed:
/// the decoder does not know where the next command starts.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ProtocolError {
    /// The count after `*` is not a strict decimal integer, or is above
    /// [`Limits::max_multibulk_len`](crate::Limits::max_multibulk_len).
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// The length after `$` is not a strict decimal integer, is negative, or is above
    /// [`Limits::max_bulk_len`](crate::Limits::max_bulk_len).
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// A client that must authenticate and has not sent a multibulk of more than 10 arguments
    /// ([`Limits::unauthenticated`](crate::Limits::unauthenticated)).
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    /// The same client sent a bulk string longer than 16 KiB.
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    /// Inside a multibulk request, a bulk header line starts with this byte instead of `$`.
    ///
    /// The byte is widened to a `char` (Latin-1), so a byte of 0x80 or above prints as two UTF-8
    /// bytes where Redis would print the raw byte.
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedDollar(char),
    /// An inline request line is longer than
    /// [`Limits::max_inline_len`](crate::Limits::max_inline_len).
    #[error("Protocol error: too big inline request")]
    TooBigInlineRequest,
    /// The `*<count>` line is longer than [`Limits::max_inline_len`](crate::Limits::max_inline_len).
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCountString,
    /// A `$<len>` line is longer than [`Limits::max_inline_len`](crate::Limits::max_inline_len).
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCountString,
    /// An inline request has an unterminated quote, or a closing quote followed by something
    /// other than a space.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A reply given to [`decode_frame`](crate::decode_frame) is malformed; the text says how.
    /// Never produced by [`RequestDecoder`](crate::RequestDecoder).
    #[error("Protocol error: {0}")]
    Invalid(&'static str),
}
