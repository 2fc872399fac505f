//! RESP2 and RESP3, as spoken by Redis 7.0: bytes in, argv out; replies in, bytes out.
//!
//! # Layout
//!
//! ```text
//! socket bytes ──► decode::RequestDecoder ──► Vec<Bytes> argv      (server::cmd takes it from here)
//!                  ├─ multibulk  "*N\r\n$len\r\n…"      decode.rs
//!                  └─ inline     "SET k \"v\"\n"        decode/inline.rs (sdssplitargs)
//! reply ◄── encode::Out (RESP2 or RESP3) ◄── server::cmd       encode.rs, encode/double.rs
//! bytes ──► decode_frame ──► Frame                             decode/reply.rs (clients, tests)
//! ```
//!
//! - [`RequestDecoder`]: one per connection. Takes complete commands off the front of the read
//!   buffer, keeping partial-parse state so a large argument that arrives in pieces is scanned
//!   once. Arguments are zero-copy slices of the read buffer.
//! - [`Out`]: the connection's output buffer plus the client's protocol version. Each method
//!   writes one reply element directly, choosing the RESP2 or RESP3 spelling.
//! - [`decode_frame`] / [`Frame`]: a complete, stateless RESP2+RESP3 reply parser, for clients,
//!   tests, proptests and fuzzing.
//! - [`ProtocolError`]: every way input can be malformed, with Redis's exact error text.
//!
//! # Limits
//!
//! All three are in [`Limits`] and default to Redis 7.0's values:
//! `proto-max-bulk-len` (512 MiB) for one argument, `INT_MAX` arguments per command, and 64 KiB
//! (`PROTO_INLINE_MAX_SIZE`) for an inline request or a `*`/`$` header line. Nothing the peer
//! declares is allocated before it arrives: argv grows as arguments arrive (at most 1024 slots
//! are reserved up front), and [`RequestDecoder::bytes_wanted`] never asks for more than what
//! has arrived of the current argument, or 1 MiB, whichever is more. [`decode_frame`] refuses
//! replies nested deeper than [`MAX_FRAME_DEPTH`].
//!
//! # Non-goals
//!
//! - It does not know what a command means, and it has no idea of authentication: Redis's
//!   tighter limits for unauthenticated clients belong to the server.
//! - No I/O and no async runtime: callers hand it buffers.
//! - [`decode_frame`] does not support RESP3 attributes (`|`) or streamed strings and aggregates
//!   (`$?`, `*?`); Redis 7.0 sends none of them to ordinary clients. It is stateless, so a caller
//!   that retries it as bytes trickle in re-parses from the start each time.
//! - A retained argument [`Bytes`](bytes::Bytes) pins the read-buffer allocation it was split
//!   from; a store that keeps small values for long should copy them.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
#![deny(clippy::indexing_slicing)]

mod decode;
mod encode;
mod error;
mod frame;

pub use decode::{Limits, MAX_FRAME_DEPTH, RequestDecoder, decode_frame};
pub use encode::{Out, RespVersion, format_double};
pub use error::ProtocolError;
pub use frame::Frame;
