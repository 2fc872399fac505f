//! A valid stream of requests (multibulk, inline with quoting, empty commands) decodes to the
//! same argv sequence however it is split into reads: at once, split at every byte offset,
//! byte by byte, or in random chunks.

use bytes::{Bytes, BytesMut};
use forkless_protocol::{Limits, Out, RequestDecoder, RespVersion};
use proptest::collection::vec;
use proptest::prelude::*;

/// One request and the argv it must decode to.
#[derive(Debug, Clone)]
struct Request {
    wire: Vec<u8>,
    argv: Vec<Vec<u8>>,
}

fn multibulk() -> impl Strategy<Value = Request> {
    vec(vec(any::<u8>(), 0..20), 1..6).prop_map(|argv| {
        let mut out = Out::new(RespVersion::Resp2);
        out.array_len(argv.len());
        argv.iter().for_each(|arg| out.bulk(arg));
        Request {
            wire: out.buf.to_vec(),
            argv,
        }
    })
}

/// Renders `arg` the way a person at a telnet prompt might: bare when it is a plain word,
/// otherwise double-quoted with escapes, or single-quoted when that is possible.
fn render_inline_arg(arg: &[u8], style: u8) -> Vec<u8> {
    let plain = !arg.is_empty() && arg.iter().all(u8::is_ascii_alphanumeric);
    if plain && style % 3 == 0 {
        return arg.to_vec();
    }
    // A backslash right before the closing quote would escape it, so leave those to "...".
    let single_quotable = arg
        .iter()
        .all(|&byte| (byte.is_ascii_graphic() && byte != b'\\') || byte == b' ');
    if single_quotable && style % 3 == 1 {
        let mut out = vec![b'\''];
        for &byte in arg {
            if byte == b'\'' {
                out.extend_from_slice(b"\\'");
            } else {
                out.push(byte);
            }
        }
        out.push(b'\'');
        return out;
    }
    let mut out = vec![b'"'];
    for &byte in arg {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            byte if byte.is_ascii_alphanumeric() || byte == b' ' => out.push(byte),
            byte => out.extend_from_slice(format!("\\x{byte:02x}").as_bytes()),
        }
    }
    out.push(b'"');
    out
}

fn inline() -> impl Strategy<Value = Request> {
    let arg = (
        vec(any::<u8>(), 0..10),
        any::<u8>(),
        prop_oneof![Just(" "), Just("\t"), Just("  ")],
    );
    (vec(arg, 1..5), any::<bool>()).prop_map(|(args, crlf)| {
        let mut wire = Vec::new();
        let mut argv = Vec::new();
        for (arg_idx, (arg, style, separator)) in args.into_iter().enumerate() {
            if arg_idx > 0 {
                wire.extend_from_slice(separator.as_bytes());
            }
            wire.extend_from_slice(&render_inline_arg(&arg, style));
            argv.push(arg);
        }
        wire.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        Request { wire, argv }
    })
}

fn empty() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just("*0\r\n"),
        Just("*-1\r\n"),
        Just("\r\n"),
        Just("\n"),
        Just(" \t \r\n")
    ]
    .prop_map(|wire| Request {
        wire: wire.as_bytes().to_vec(),
        argv: Vec::new(),
    })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![4 => multibulk(), 2 => inline(), 1 => empty()]
}

/// Decodes `stream` delivered as `chunks` (consecutive slices covering it).
fn decode_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Vec<Bytes>> {
    let mut decoder = RequestDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(command) = decoder.decode(&mut buf).expect("valid stream") {
            commands.push(command);
        }
    }
    assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    assert_eq!(decoder.bytes_wanted(), 0);
    commands
}

proptest! {
    #[test]
    fn any_split_gives_the_same_commands(
        requests in vec(request(), 1..6),
        chunk_sizes in vec(1usize..16, 1..64),
    ) {
        let stream: Vec<u8> = requests.iter().flat_map(|request| request.wire.clone()).collect();
        let expected: Vec<Vec<Bytes>> = requests
            .iter()
            .map(|request| request.argv.iter().map(|arg| Bytes::copy_from_slice(arg)).collect())
            .collect();

        prop_assert_eq!(&decode_chunks([&stream[..]]), &expected);
        for split in 0..=stream.len() {
            let (head, tail) = stream.split_at(split);
            prop_assert_eq!(&decode_chunks([head, tail]), &expected, "split at {}", split);
        }
        prop_assert_eq!(&decode_chunks(stream.chunks(1)), &expected);

        let mut chunks = Vec::new();
        let mut rest = &stream[..];
        for &size in chunk_sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            chunks.push(chunk);
            rest = tail;
        }
        prop_assert_eq!(&decode_chunks(chunks), &expected);
    }
}

#[test]
fn large_argument_arriving_in_pieces_is_not_rescanned() {
    // 4 MiB argument in 4 KiB reads: every call after the header returns at once, and the
    // connection is never asked to reserve more than it has received (or 1 MiB).
    const ARG_LEN: usize = 4 * 1024 * 1024;
    let mut out = Out::new(RespVersion::Resp2);
    out.array_len(2);
    out.bulk(b"SET");
    out.bulk(&vec![b'v'; ARG_LEN]);
    let stream = out.buf.to_vec();

    let mut decoder = RequestDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut result = None;
    for chunk in stream.chunks(4096) {
        buf.extend_from_slice(chunk);
        if let Some(command) = decoder.decode(&mut buf).unwrap() {
            result = Some(command);
        } else {
            assert!(decoder.bytes_wanted() <= buf.len().max(1024 * 1024));
        }
    }
    let command = result.expect("command completes");
    assert_eq!(command.len(), 2);
    assert_eq!(command[1].len(), ARG_LEN);
}
