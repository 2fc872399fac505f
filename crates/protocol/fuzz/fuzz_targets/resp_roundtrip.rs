//! Whatever `decode_frame` accepts re-encodes, for both protocol versions, to bytes that decode
//! to a frame that encodes to the very same bytes (a fixed point after one normalisation, since
//! RESP3 folds `$-1`, `*-1` and `_` into one null). Bytes are compared rather than frames so
//! that NaN doubles need no special case.
//!
//! `cargo +nightly fuzz run resp_roundtrip -- -dict=fuzz/resp.dict`
#![no_main]

use forkless_protocol::{Frame, Limits, Out, RespVersion, decode_frame};
use libfuzzer_sys::fuzz_target;

fn encode(frame: &Frame, version: RespVersion) -> Vec<u8> {
    let mut out = Out::new(version);
    out.frame(frame);
    out.buf.to_vec()
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let Ok(Some((frame, _))) = decode_frame(data, &limits) else {
        return;
    };
    for version in [RespVersion::Resp2, RespVersion::Resp3] {
        let first = encode(&frame, version);
        let (again, used) = decode_frame(&first, &limits)
            .expect("our own encoding is valid")
            .expect("our own encoding is complete");
        assert_eq!(used, first.len());
        assert_eq!(encode(&again, version), first, "not a fixed point");
    }
});
