//! Hostile bytes into both decoders: no panic, no unbounded allocation, accepted commands within
//! the limits, and the same outcome whether the input arrives at once or in pieces.
//!
//! `cargo +nightly fuzz run resp_decode -- -dict=fuzz/resp.dict`
#![no_main]

use bytes::{Bytes, BytesMut};
use forkless_protocol::{Limits, ProtocolError, RequestDecoder, decode_frame};
use libfuzzer_sys::fuzz_target;

/// Small limits so that the fuzzer reaches them.
const LIMITS: Limits = Limits {
    max_bulk_len: 64,
    max_multibulk_len: 16,
    max_inline_len: 128,
    unauthenticated: false,
};

fn feed(input: &[u8], chunk: usize) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
    let mut decoder = RequestDecoder::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(argv)) => {
                    assert!(argv.len() <= 128, "argv of {} accepted", argv.len());
                    assert!(
                        argv.iter().all(|arg| arg.len() <= 128),
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

fuzz_target!(|data: &[u8]| {
    // The first byte picks a chunk size; the rest is the stream.
    let Some((&chunk, input)) = data.split_first() else {
        return;
    };
    let whole = feed(input, input.len());
    let pieces = feed(input, usize::from(chunk % 32) + 1);
    assert_eq!(whole, pieces, "chunking changed the outcome");

    if let Ok(Some((_, used))) = decode_frame(input, &LIMITS) {
        assert!(used > 0 && used <= input.len());
    }
});
