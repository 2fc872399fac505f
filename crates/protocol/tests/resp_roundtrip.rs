//! `decode_frame(encode(f)) == f` for RESP2 and RESP3, every strict prefix of an encoding is
//! incomplete (never an error), and RESP3-only frames written for a RESP2 client decode to the
//! RESP2 shape Redis 7.0 gives them.

use bytes::Bytes;
use forkless_protocol::{Frame, Limits, Out, RespVersion, decode_frame, format_double};
use proptest::collection::vec;
use proptest::prelude::*;

/// Bytes without CR or LF, for status and error lines.
fn line_bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..12).prop_map(|bytes| {
        bytes
            .into_iter()
            .filter(|&byte| byte != b'\r' && byte != b'\n')
            .collect::<Vec<_>>()
            .into()
    })
}

fn blob_bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn resp2_frame() -> impl Strategy<Value = Frame> {
    let leaf = prop_oneof![
        line_bytes().prop_map(Frame::Simple),
        line_bytes().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        blob_bytes().prop_map(Frame::Bulk),
        Just(Frame::Null),
        Just(Frame::NullArray),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| vec(inner, 0..6).prop_map(Frame::Array))
}

fn resp3_frame() -> impl Strategy<Value = Frame> {
    let leaf = prop_oneof![
        line_bytes().prop_map(Frame::Simple),
        line_bytes().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        blob_bytes().prop_map(Frame::Bulk),
        any::<f64>()
            .prop_filter("NaN never equals itself", |d| !d.is_nan())
            .prop_map(Frame::Double),
        any::<bool>().prop_map(Frame::Boolean),
        "-?[0-9]{1,40}".prop_map(|digits| Frame::BigNumber(Bytes::from(digits))),
        (any::<[u8; 3]>(), blob_bytes())
            .prop_map(|(format, data)| Frame::Verbatim { format, data }),
        blob_bytes().prop_map(Frame::BlobError),
        Just(Frame::Resp3Null),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Frame::Array),
            vec(inner.clone(), 0..6).prop_map(Frame::Set),
            vec(inner.clone(), 0..6).prop_map(Frame::Push),
            vec((inner.clone(), inner), 0..4).prop_map(Frame::Map),
        ]
    })
}

fn encode(frame: &Frame, version: RespVersion) -> Vec<u8> {
    let mut out = Out::new(version);
    out.frame(frame);
    out.buf.to_vec()
}

/// What a RESP2 client reads back for `frame` written by a RESP2 connection.
fn as_resp2(frame: &Frame) -> Frame {
    let bulk = |bytes: &[u8]| Frame::Bulk(Bytes::copy_from_slice(bytes));
    match frame {
        Frame::Array(elements) | Frame::Set(elements) | Frame::Push(elements) => {
            Frame::Array(elements.iter().map(as_resp2).collect())
        }
        Frame::Map(pairs) => Frame::Array(
            pairs
                .iter()
                .flat_map(|(key, value)| [as_resp2(key), as_resp2(value)])
                .collect(),
        ),
        Frame::Double(d) => bulk(format_double(*d).as_bytes()),
        Frame::Boolean(b) => Frame::Integer(i64::from(*b)),
        Frame::BigNumber(digits) => bulk(digits),
        Frame::Verbatim { data, .. } => bulk(data),
        Frame::BlobError(msg) => Frame::Error(
            msg.iter()
                .map(|&byte| {
                    if byte == b'\r' || byte == b'\n' {
                        b' '
                    } else {
                        byte
                    }
                })
                .collect(),
        ),
        Frame::Resp3Null => Frame::Null,
        other => other.clone(),
    }
}

fn assert_roundtrip(frame: &Frame, version: RespVersion) -> Result<(), TestCaseError> {
    let bytes = encode(frame, version);
    let limits = Limits::default();
    prop_assert_eq!(
        decode_frame(&bytes, &limits),
        Ok(Some((frame.clone(), bytes.len())))
    );
    for prefix_len in 0..bytes.len() {
        prop_assert_eq!(
            decode_frame(&bytes[..prefix_len], &limits),
            Ok(None),
            "prefix of {} bytes",
            prefix_len
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn resp2_frames_roundtrip(frame in resp2_frame()) {
        assert_roundtrip(&frame, RespVersion::Resp2)?;
    }

    #[test]
    fn resp3_frames_roundtrip(frame in resp3_frame()) {
        assert_roundtrip(&frame, RespVersion::Resp3)?;
    }

    #[test]
    fn resp3_frames_written_for_resp2_decode_to_resp2_shape(frame in resp3_frame()) {
        let bytes = encode(&frame, RespVersion::Resp2);
        prop_assert_eq!(
            decode_frame(&bytes, &Limits::default()),
            Ok(Some((as_resp2(&frame), bytes.len())))
        );
    }

    #[test]
    fn back_to_back_frames_decode_in_order(frames in vec(resp3_frame(), 1..6)) {
        let mut out = Out::new(RespVersion::Resp3);
        frames.iter().for_each(|frame| out.frame(frame));
        let bytes = out.buf.to_vec();
        let mut pos = 0;
        for frame in &frames {
            let (decoded, used) = decode_frame(&bytes[pos..], &Limits::default())
                .expect("valid")
                .expect("complete");
            prop_assert_eq!(&decoded, frame);
            pos += used;
        }
        prop_assert_eq!(pos, bytes.len());
    }

    #[test]
    fn doubles_survive_the_text_form(d in any::<f64>()) {
        let bytes = encode(&Frame::Double(d), RespVersion::Resp3);
        let decoded = decode_frame(&bytes, &Limits::default());
        match decoded {
            Ok(Some((Frame::Double(back), used))) => {
                prop_assert_eq!(used, bytes.len());
                if d.is_nan() {
                    prop_assert!(back.is_nan());
                } else {
                    prop_assert_eq!(back.to_bits(), d.to_bits());
                }
            }
            other => prop_assert!(false, "decoded {:?}", other),
        }
    }
}

#[test]
fn nan_roundtrips_as_nan() {
    for version in [RespVersion::Resp2, RespVersion::Resp3] {
        let bytes = encode(&Frame::Double(f64::NAN), version);
        let decoded = decode_frame(&bytes, &Limits::default()).unwrap().unwrap();
        match (version, decoded) {
            (RespVersion::Resp3, (Frame::Double(d), 6)) => assert!(d.is_nan()),
            (RespVersion::Resp2, (Frame::Bulk(text), 9)) => assert_eq!(&text[..], b"nan"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn nulls_collapse_to_resp3_null() {
    for frame in [Frame::Null, Frame::NullArray, Frame::Resp3Null] {
        let bytes = encode(&frame, RespVersion::Resp3);
        assert_eq!(
            decode_frame(&bytes, &Limits::default()),
            Ok(Some((Frame::Resp3Null, 3)))
        );
    }
}
