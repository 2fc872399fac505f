//! Hand-written malformed input for both decoders, each with the exact error it must produce.
//! The request cases include every protocol-error case of Redis 7.0's `tests/unit/protocol.tcl`.

use bytes::BytesMut;
use forkless_protocol::{Frame, Limits, ProtocolError, RequestDecoder, decode_frame};

fn frame_error(input: &[u8]) -> ProtocolError {
    decode_frame(input, &Limits::default()).expect_err("malformed reply accepted")
}

fn invalid(reason: &'static str) -> ProtocolError {
    ProtocolError::Invalid(reason)
}

/// Decodes `input` as requests until an error, which it returns.
fn request_error(input: &[u8]) -> ProtocolError {
    let mut decoder = RequestDecoder::new(Limits::default());
    let mut buf = BytesMut::from(input);
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("no error for {:?}", String::from_utf8_lossy(input)),
            Err(err) => return err,
        }
    }
}

#[test]
fn lines_must_end_in_crlf() {
    assert_eq!(
        frame_error(b"+OK\rX"),
        invalid("line not terminated by CRLF")
    );
    assert_eq!(
        frame_error(b":1\r\r\n"),
        invalid("line not terminated by CRLF")
    );
    // A bare "\n" is not a line end: the line just goes on.
    assert_eq!(decode_frame(b"+OK\n", &Limits::default()), Ok(None));
}

#[test]
fn integers_are_strict() {
    for input in [
        &b":abc\r\n"[..],
        b":+1\r\n",
        b":01\r\n",
        b":\r\n",
        b":-0\r\n",
        b": 1\r\n",
    ] {
        assert_eq!(frame_error(input), invalid("invalid integer"), "{input:?}");
    }
    assert_eq!(
        frame_error(b":99999999999999999999\r\n"),
        invalid("invalid integer")
    );
}

#[test]
fn bulk_lengths() {
    assert_eq!(frame_error(b"$-2\r\n"), ProtocolError::InvalidBulkLength);
    assert_eq!(frame_error(b"$abc\r\n"), ProtocolError::InvalidBulkLength);
    assert_eq!(frame_error(b"$\r\n"), ProtocolError::InvalidBulkLength);
    assert_eq!(frame_error(b"!-1\r\n"), ProtocolError::InvalidBulkLength);
    assert_eq!(frame_error(b"=-1\r\n"), ProtocolError::InvalidBulkLength);
    assert_eq!(
        frame_error(b"$?\r\n"),
        invalid("streamed strings are not supported")
    );
    assert_eq!(
        frame_error(b"$3\r\nfooXY"),
        invalid("bulk string not terminated by CRLF")
    );
    assert_eq!(
        frame_error(b"$3\r\nfoo\r\r"),
        invalid("bulk string not terminated by CRLF")
    );
    assert_eq!(decode_frame(b"$3\r\nfoo\r", &Limits::default()), Ok(None));
}

#[test]
fn aggregate_counts() {
    for input in [
        &b"*-2\r\n"[..],
        b"*x\r\n",
        b"~-1\r\n",
        b">-1\r\n",
        b"%-1\r\n",
        b"%+1\r\n",
    ] {
        assert_eq!(
            frame_error(input),
            ProtocolError::InvalidMultibulkLength,
            "{input:?}"
        );
    }
    assert_eq!(
        frame_error(b"*?\r\n"),
        invalid("streamed aggregates are not supported")
    );
    // An element's error surfaces through its aggregate.
    assert_eq!(
        frame_error(b"*2\r\n:1\r\n:x\r\n"),
        invalid("invalid integer")
    );
}

#[test]
fn resp3_scalars() {
    for input in [
        &b",abc\r\n"[..],
        b",\r\n",
        b",infinity\r\n",
        b",NaN\r\n",
        b",1.5x\r\n",
    ] {
        assert_eq!(frame_error(input), invalid("invalid double"), "{input:?}");
    }
    for input in [&b"#x\r\n"[..], b"#\r\n", b"#tt\r\n", b"#T\r\n"] {
        assert_eq!(frame_error(input), invalid("invalid boolean"), "{input:?}");
    }
    for input in [
        &b"(12a\r\n"[..],
        b"(\r\n",
        b"(-\r\n",
        b"(+1\r\n",
        b"(1.5\r\n",
    ] {
        assert_eq!(
            frame_error(input),
            invalid("invalid big number"),
            "{input:?}"
        );
    }
    assert_eq!(frame_error(b"_x\r\n"), invalid("invalid null"));
    assert_eq!(
        frame_error(b"=3\r\ntxt\r\n"),
        invalid("verbatim string without format")
    );
    assert_eq!(
        frame_error(b"=4\r\ntxt;\r\n"),
        invalid("verbatim string without format")
    );
}

#[test]
fn unsupported_and_unknown_types_fail_on_their_first_byte() {
    assert_eq!(frame_error(b"|"), invalid("attributes are not supported"));
    assert_eq!(
        frame_error(b"|1\r\n+a\r\n+b\r\n:1\r\n"),
        invalid("attributes are not supported")
    );
    assert_eq!(frame_error(b"@"), invalid("unknown frame type"));
    assert_eq!(frame_error(b"\r\n"), invalid("unknown frame type"));
    assert_eq!(frame_error(b"*1\r\nX"), invalid("unknown frame type"));
}

#[test]
fn reply_limits() {
    let limits = Limits {
        max_bulk_len: 3,
        max_multibulk_len: 2,
        max_inline_len: 8,
        unauthenticated: false,
    };
    assert_eq!(
        decode_frame(b"$4\r\n", &limits),
        Err(ProtocolError::InvalidBulkLength)
    );
    assert_eq!(
        decode_frame(b"$3\r\nabc\r\n", &limits),
        Ok(Some((Frame::Bulk("abc".into()), 9)))
    );
    assert_eq!(
        decode_frame(b"*3\r\n", &limits),
        Err(ProtocolError::InvalidMultibulkLength)
    );
    assert_eq!(
        decode_frame(b"%3\r\n", &limits),
        Err(ProtocolError::InvalidMultibulkLength)
    );
    assert_eq!(
        decode_frame(b"+123456789", &limits),
        Err(invalid("line too long"))
    );
    assert_eq!(
        decode_frame(b"+123456789\r\n", &limits),
        Err(invalid("line too long"))
    );
    assert_eq!(
        decode_frame(b"+12345678\r\n", &limits),
        Ok(Some((Frame::Simple("12345678".into()), 11)))
    );
}

#[test]
fn nesting_depth_is_bounded() {
    let nested = |depth: usize| {
        let mut input = b"*1\r\n".repeat(depth);
        input.extend_from_slice(b":1\r\n");
        input
    };
    let limit = forkless_protocol::MAX_FRAME_DEPTH;
    let (frame, _) = decode_frame(&nested(limit), &Limits::default())
        .unwrap()
        .unwrap();
    let mut depth = 0;
    let mut current = &frame;
    while let Frame::Array(elements) = current {
        depth += 1;
        current = &elements[0];
    }
    assert_eq!(depth, limit);
    assert_eq!(
        decode_frame(&nested(limit + 1), &Limits::default()),
        Err(invalid("frame nesting too deep"))
    );
    // Hostile depth is refused long before the stack is in danger.
    assert_eq!(
        decode_frame(&nested(1_000_000), &Limits::default()),
        Err(invalid("frame nesting too deep"))
    );
}

#[test]
fn error_texts_are_redis_texts() {
    assert_eq!(
        invalid("invalid double").to_string(),
        "Protocol error: invalid double"
    );
    assert_eq!(
        ProtocolError::ExpectedDollar('x').to_string(),
        "Protocol error: expected '$', got 'x'"
    );
}

#[test]
fn redis_protocol_tcl_cases() {
    assert_eq!(
        request_error(b"*3000000000\r\n"),
        ProtocolError::InvalidMultibulkLength
    );
    assert_eq!(
        request_error(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n"),
        ProtocolError::ExpectedDollar('f')
    );
    assert_eq!(
        request_error(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n"),
        ProtocolError::InvalidBulkLength
    );
    assert_eq!(
        request_error(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n"),
        ProtocolError::InvalidBulkLength
    );
    assert_eq!(
        request_error(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n"),
        ProtocolError::InvalidBulkLength
    );
    assert_eq!(
        request_error(b"*1\r\nfoo\r\n"),
        ProtocolError::ExpectedDollar('f')
    );
    assert_eq!(
        request_error(b"set \"\"\"test-key\"\"\" test-value\r\nping\r\n"),
        ProtocolError::UnbalancedQuotes
    );
    // "Protocol desync regression test": a NUL, then lines of 'A' (here 64 of them at once).
    let payload = [&[b'A'; 1024][..], b"\n"].concat().repeat(65);
    for (prefix, expected) in [
        (&b"\x00"[..], ProtocolError::TooBigInlineRequest),
        (b"*\x00", ProtocolError::TooBigMultibulkCountString),
        (b"$\x00", ProtocolError::TooBigInlineRequest),
    ] {
        assert_eq!(request_error(&[prefix, &payload[..]].concat()), expected);
    }
}

#[test]
fn negative_and_empty_requests_are_not_errors() {
    // protocol.tcl's "Negative multibulk length" and "Handle an empty query": still usable.
    let mut decoder = RequestDecoder::new(Limits::default());
    let mut buf = BytesMut::from(&b"*-10\r\n\r\n*1\r\n$4\r\nPING\r\n"[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(Some(vec![])));
    assert_eq!(decoder.decode(&mut buf), Ok(Some(vec![])));
    assert_eq!(decoder.decode(&mut buf), Ok(Some(vec!["PING".into()])));
}
