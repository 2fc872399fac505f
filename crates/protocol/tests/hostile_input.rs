//! Untrusted bytes never panic either decoder, whatever they are and however they are split,
//! and input that breaks the limits is rejected with the right error (the same checks the
//! `resp_decode` fuzz target makes, for machines without nightly).

use bytes::{Bytes, BytesMut};
use forkless_protocol::{
    Frame, Limits, Out, ProtocolError, RequestDecoder, RespVersion, decode_frame,
};
use proptest::collection::vec;
use proptest::prelude::*;

const SMALL: Limits = Limits {
    unauthenticated: false,
    max_bulk_len: 8,
    max_multibulk_len: 4,
    max_inline_len: 32,
};

/// Bytes drawn mostly from RESP's own alphabet, so that they get past the first byte.
fn resp_ish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        3 => prop::sample::select(b"*$\r\n0123456789-:+_,#(=!%~>|?\"' \\xtf".to_vec()),
        1 => any::<u8>(),
    ];
    vec(byte, 0..200)
}

fn any_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![resp_ish_bytes(), vec(any::<u8>(), 0..200)]
}

/// Feeds `input` in chunks of `chunk` bytes until an error, checking every accepted command
/// against `limits`. Returns the commands and the error, if any.
fn feed(input: &[u8], chunk: usize, limits: Limits) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
    let mut decoder = RequestDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(argv)) => {
                    let max_arg = usize::try_from(limits.max_bulk_len)
                        .unwrap_or(usize::MAX)
                        .max(limits.max_inline_len);
                    let max_args = usize::try_from(limits.max_multibulk_len)
                        .unwrap_or(usize::MAX)
                        .max(limits.max_inline_len);
                    assert!(argv.len() <= max_args, "{} arguments accepted", argv.len());
                    assert!(
                        argv.iter().all(|arg| arg.len() <= max_arg),
                        "oversized argument"
                    );
                    commands.push(argv);
                }
                Ok(None) => break,
                Err(err) => return (commands, Some(err)),
            }
        }
    }
    (commands, None)
}

fn multibulk(argv: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Out::new(RespVersion::Resp2);
    out.array_len(argv.len());
    argv.iter().for_each(|arg| out.bulk(arg));
    out.buf.to_vec()
}

proptest! {
    #[test]
    fn request_decoder_never_panics(input in any_input(), chunk in 1usize..64) {
        let (whole_commands, whole_error) = feed(&input, input.len(), Limits::default());
        let (commands, error) = feed(&input, chunk, Limits::default());
        // Chunking changes nothing, errors included.
        prop_assert_eq!(commands, whole_commands);
        prop_assert_eq!(error, whole_error);
        feed(&input, chunk, SMALL);
    }

    #[test]
    fn frame_decoder_never_panics(input in any_input()) {
        for limits in [Limits::default(), SMALL] {
            if let Ok(Some((_, used))) = decode_frame(&input, &limits) {
                prop_assert!(used > 0 && used <= input.len());
            }
        }
    }

    #[test]
    fn multibulk_limits_are_enforced(argv in vec(vec(any::<u8>(), 0..12), 1..7)) {
        let (commands, error) = feed(&multibulk(&argv), 5, SMALL);
        if argv.len() > 4 {
            prop_assert_eq!(error, Some(ProtocolError::InvalidMultibulkLength));
        } else if argv.iter().any(|arg| arg.len() > 8) {
            prop_assert_eq!(error, Some(ProtocolError::InvalidBulkLength));
        } else {
            prop_assert_eq!(error, None);
            prop_assert_eq!(commands.len(), 1);
        }
    }

    #[test]
    fn inline_limit_is_enforced(words in vec("[a-z]{1,10}", 1..8), chunk in 1usize..40) {
        let line = format!("{}\r\n", words.join(" "));
        let (commands, error) = feed(line.as_bytes(), chunk, SMALL);
        // The limit counts the line without its "\n"; the "\r" is part of it.
        if line.len() - 1 > 32 {
            prop_assert_eq!(error, Some(ProtocolError::TooBigInlineRequest));
        } else {
            prop_assert_eq!(error, None);
            prop_assert_eq!(commands.len(), 1);
        }
    }

    #[test]
    fn reply_bulk_limit_is_enforced(blobs in vec(vec(any::<u8>(), 0..12), 1..4)) {
        let frame = Frame::Array(blobs.iter().map(|blob| Frame::Bulk(blob.clone().into())).collect());
        let mut out = Out::new(RespVersion::Resp3);
        out.frame(&frame);
        let result = decode_frame(&out.buf, &SMALL);
        if blobs.iter().any(|blob| blob.len() > 8) {
            prop_assert_eq!(result, Err(ProtocolError::InvalidBulkLength));
        } else {
            prop_assert_eq!(result, Ok(Some((frame, out.buf.len()))));
        }
    }

    #[test]
    fn reply_count_limit_is_enforced(lens in vec(0usize..7, 1..4)) {
        let frame = Frame::Set(
            lens.iter().map(|&len| Frame::Array(vec![Frame::Integer(1); len])).collect(),
        );
        let mut out = Out::new(RespVersion::Resp3);
        out.frame(&frame);
        let result = decode_frame(&out.buf, &SMALL);
        if lens.len() > 4 || lens.iter().any(|&len| len > 4) {
            prop_assert_eq!(result, Err(ProtocolError::InvalidMultibulkLength));
        } else {
            prop_assert_eq!(result, Ok(Some((frame, out.buf.len()))));
        }
    }
}
