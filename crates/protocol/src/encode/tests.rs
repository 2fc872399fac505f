use bytes::Bytes;

use super::{Out, RespVersion};
use crate::Frame;

/// Runs `write` against a fresh RESP2 and a fresh RESP3 buffer and returns both encodings.
fn both(write: impl Fn(&mut Out)) -> (String, String) {
    let mut resp2 = Out::new(RespVersion::Resp2);
    let mut resp3 = Out::new(RespVersion::Resp3);
    write(&mut resp2);
    write(&mut resp3);
    let text = |out: Out| String::from_utf8(out.buf.to_vec()).unwrap();
    (text(resp2), text(resp3))
}

fn same(write: impl Fn(&mut Out), expected: &str) {
    assert_eq!(both(write), (expected.to_owned(), expected.to_owned()));
}

#[test]
fn version_independent_elements() {
    same(Out::ok, "+OK\r\n");
    same(|out| out.simple(b"PONG"), "+PONG\r\n");
    same(|out| out.error("ERR syntax error"), "-ERR syntax error\r\n");
    same(|out| out.int(0), ":0\r\n");
    same(|out| out.int(i64::MIN), ":-9223372036854775808\r\n");
    same(|out| out.bulk(b"hello"), "$5\r\nhello\r\n");
    same(|out| out.bulk(b""), "$0\r\n\r\n");
    same(|out| out.bulk_int(-42), "$3\r\n-42\r\n");
    same(
        |out| out.bulk_int(i64::MAX),
        "$19\r\n9223372036854775807\r\n",
    );
    same(|out| out.array_len(3), "*3\r\n");
    same(|out| out.array_len(0), "*0\r\n");
}

#[test]
fn error_text_is_sanitised() {
    same(
        |out| out.error("ERR bad\r\nthing\n"),
        "-ERR bad  thing \r\n",
    );
    // A caller that already added the dash does not get two.
    same(|out| out.error("-WRONGTYPE x"), "-WRONGTYPE x\r\n");
}

#[test]
fn nulls() {
    assert_eq!(both(Out::null), ("$-1\r\n".to_owned(), "_\r\n".to_owned()));
    assert_eq!(
        both(Out::null_array),
        ("*-1\r\n".to_owned(), "_\r\n".to_owned())
    );
}

#[test]
fn aggregates() {
    assert_eq!(
        both(|out| out.map_len(2)),
        ("*4\r\n".to_owned(), "%2\r\n".to_owned())
    );
    assert_eq!(
        both(|out| out.set_len(3)),
        ("*3\r\n".to_owned(), "~3\r\n".to_owned())
    );
    assert_eq!(
        both(|out| out.push_len(3)),
        ("*3\r\n".to_owned(), ">3\r\n".to_owned())
    );
}

#[test]
fn doubles() {
    assert_eq!(
        both(|out| out.double(0.1)),
        (
            "$19\r\n0.10000000000000001\r\n".to_owned(),
            ",0.10000000000000001\r\n".to_owned()
        )
    );
    assert_eq!(
        both(|out| out.double(3.0)),
        ("$1\r\n3\r\n".to_owned(), ",3\r\n".to_owned())
    );
    assert_eq!(
        both(|out| out.double(f64::INFINITY)),
        ("$3\r\ninf\r\n".to_owned(), ",inf\r\n".to_owned())
    );
    assert_eq!(
        both(|out| out.double(f64::NEG_INFINITY)),
        ("$4\r\n-inf\r\n".to_owned(), ",-inf\r\n".to_owned())
    );
    assert_eq!(
        both(|out| out.double(f64::NAN)),
        ("$3\r\nnan\r\n".to_owned(), ",nan\r\n".to_owned())
    );
}

#[test]
fn booleans_verbatim_and_big_numbers() {
    assert_eq!(
        both(|out| out.boolean(true)),
        (":1\r\n".to_owned(), "#t\r\n".to_owned())
    );
    assert_eq!(
        both(|out| out.boolean(false)),
        (":0\r\n".to_owned(), "#f\r\n".to_owned())
    );
    assert_eq!(
        both(|out| out.verbatim(b"txt", b"Some string")),
        (
            "$11\r\nSome string\r\n".to_owned(),
            "=15\r\ntxt:Some string\r\n".to_owned()
        )
    );
    assert_eq!(
        both(|out| out.big_number(b"-1234567999999999999999999999999999999")),
        (
            "$38\r\n-1234567999999999999999999999999999999\r\n".to_owned(),
            "(-1234567999999999999999999999999999999\r\n".to_owned()
        )
    );
}

#[test]
fn frames_map_resp3_types_onto_resp2() {
    let frame = Frame::Map(vec![
        (
            Frame::Bulk(Bytes::from_static(b"k")),
            Frame::Set(vec![Frame::Integer(1)]),
        ),
        (
            Frame::Simple(Bytes::from_static(b"s")),
            Frame::Push(vec![Frame::Boolean(true)]),
        ),
        (
            Frame::Resp3Null,
            Frame::BlobError(Bytes::from_static(b"ERR a\r\nb")),
        ),
        (Frame::Null, Frame::NullArray),
        (
            Frame::Double(1.5),
            Frame::Error(Bytes::from_static(b"ERR x")),
        ),
    ]);
    let (resp2, resp3) = both(|out| out.frame(&frame));
    assert_eq!(
        resp2,
        "*10\r\n$1\r\nk\r\n*1\r\n:1\r\n+s\r\n*1\r\n:1\r\n$-1\r\n-ERR a  b\r\n$-1\r\n*-1\r\n\
         $3\r\n1.5\r\n-ERR x\r\n"
    );
    assert_eq!(
        resp3,
        "%5\r\n$1\r\nk\r\n~1\r\n:1\r\n+s\r\n>1\r\n#t\r\n_\r\n!8\r\nERR a\r\nb\r\n_\r\n_\r\n\
         ,1.5\r\n-ERR x\r\n"
    );
}

#[test]
fn len_and_is_empty_track_the_buffer() {
    let mut out = Out::with_capacity(RespVersion::Resp2, 64);
    assert!(out.is_empty());
    assert_eq!(out.len(), 0);
    out.ok();
    assert!(!out.is_empty());
    assert_eq!(out.len(), 5);
}

#[test]
fn written_bytes_count_in_the_allocation_until_it_takes_them_back() {
    let mut out = Out::with_capacity(RespVersion::Resp2, 1000);
    let allocated = out.allocation();
    out.bulk(&[b'x'; 300]);
    let pending = out.len();
    // A partial write: the 100 bytes written are still in the allocation.
    out.written(100);
    assert_eq!(out.len(), pending - 100);
    assert_eq!(out.allocation(), allocated);
    assert!(out.buf.starts_with(&[b'x'; 10]));
    // Once the written front is at least as long as what is left, it is taken back: the
    // pending bytes move to the front, and the allocation is the same.
    out.written(out.len() - 90);
    assert_eq!(out.len(), 90);
    assert_eq!(out.buf.capacity(), allocated);
    assert_eq!(out.allocation(), allocated);
    assert!(out.buf.ends_with(b"x\r\n"));
    // Everything written: the whole allocation is room again.
    out.written(out.len());
    assert!(out.is_empty());
    assert_eq!(out.buf.capacity(), allocated);
    // A buffer replaced counts only itself.
    out.written(0);
    out.replace(bytes::BytesMut::with_capacity(64));
    assert_eq!(out.allocation(), out.buf.capacity());
}
