use bytes::{Bytes, BytesMut};

use super::{Limits, RequestDecoder, parse_i64};
use crate::ProtocolError;

fn decoder() -> RequestDecoder {
    RequestDecoder::new(Limits::default())
}

fn argv(words: &[&[u8]]) -> Vec<Bytes> {
    words
        .iter()
        .map(|word| Bytes::copy_from_slice(word))
        .collect()
}

/// Decodes every complete command in `input` (fed at once) until the decoder wants more.
fn decode_all(input: &[u8]) -> (Vec<Vec<Bytes>>, Result<(), ProtocolError>, BytesMut) {
    let mut decoder = decoder();
    let mut buf = BytesMut::from(input);
    let mut commands = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(command)) => commands.push(command),
            Ok(None) => return (commands, Ok(()), buf),
            Err(err) => return (commands, Err(err), buf),
        }
    }
}

/// The error `input` produces, and the exact text the server will send after "-ERR ".
fn error_of(input: &[u8]) -> (ProtocolError, String) {
    let (_, result, _) = decode_all(input);
    let err = result.expect_err("input should be rejected");
    let text = err.to_string();
    (err, text)
}

#[test]
fn string2ll_is_strict() {
    assert_eq!(parse_i64(b"0"), Some(0));
    assert_eq!(parse_i64(b"123"), Some(123));
    assert_eq!(parse_i64(b"-1"), Some(-1));
    assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
    assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
    for bad in [
        &b""[..],
        b"-",
        b"-0",
        b"+1",
        b"01",
        b"00",
        b" 1",
        b"1 ",
        b"1a",
        b"9223372036854775808",
        b"-9223372036854775809",
        b"18446744073709551616",
        b"000000000000000000001",
    ] {
        assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn multibulk_command() {
    let (commands, result, rest) = decode_all(b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n");
    assert_eq!(result, Ok(()));
    assert_eq!(commands, vec![argv(&[b"SET", b"key", b"value"])]);
    assert!(rest.is_empty());
}

#[test]
fn pipelined_commands_in_one_buffer() {
    let input =
        b"*1\r\n$4\r\nPING\r\nECHO hi\r\n*2\r\n$3\r\nGET\r\n$0\r\n\r\n\n*0\r\n*2\r\n$3\r\nGET";
    let (commands, result, rest) = decode_all(input);
    assert_eq!(result, Ok(()));
    assert_eq!(
        commands,
        vec![
            argv(&[b"PING"]),
            argv(&[b"ECHO", b"hi"]),
            argv(&[b"GET", b""]),
            argv(&[]),
            argv(&[]),
        ]
    );
    // The unfinished command's header lines have been consumed into the decoder; only the
    // partial argument is left.
    assert_eq!(&rest[..], b"GET");
}

#[test]
fn empty_and_negative_counts_and_empty_lines_are_empty_commands() {
    let (commands, result, rest) = decode_all(b"*0\r\n*-1\r\n*-10\r\n\r\n\n   \r\n");
    assert_eq!(result, Ok(()));
    assert_eq!(commands, vec![argv(&[]); 6]);
    assert!(rest.is_empty());
}

#[test]
fn binary_safe_arguments() {
    let (commands, result, _) = decode_all(b"*2\r\n$3\r\na\r\n\r\n$2\r\n\0\xff\r\n");
    assert_eq!(result, Ok(()));
    assert_eq!(commands, vec![argv(&[b"a\r\n", b"\0\xff"])]);
}

#[test]
fn inline_commands() {
    let (commands, result, rest) =
        decode_all(b"SET k \"hello world\"\r\nGET k\nPING\r\r\n'a b' \"\\x41\"\n");
    assert_eq!(result, Ok(()));
    assert_eq!(
        commands,
        vec![
            argv(&[b"SET", b"k", b"hello world"]),
            argv(&[b"GET", b"k"]),
            // Only one '\r' before '\n' is the line end; the other separates nothing.
            argv(&[b"PING"]),
            argv(&[b"a b", b"A"]),
        ]
    );
    assert!(rest.is_empty());
}

#[test]
fn inline_without_newline_waits() {
    let (commands, result, rest) = decode_all(b"PING\r");
    assert_eq!(result, Ok(()));
    assert!(commands.is_empty());
    assert_eq!(&rest[..], b"PING\r");
}

#[test]
fn redis_does_not_check_line_ends_after_headers_and_data() {
    // Redis skips the byte after a header's '\r' and the two bytes after bulk data unread.
    let (commands, result, _) = decode_all(b"*2\rX$3\r?foo!!$1\r\nb\r\n");
    assert_eq!(result, Ok(()));
    assert_eq!(commands, vec![argv(&[b"foo", b"b"])]);
}

#[test]
fn invalid_multibulk_length() {
    for input in [
        &b"*abc\r\n"[..],
        b"*\r\n",
        b"*+1\r\n",
        b"*01\r\n",
        b"*-0\r\n",
        b"*1 \r\n",
        b"*3000000000\r\n",
        b"*99999999999999999999\r\n",
    ] {
        let (err, text) = error_of(input);
        assert_eq!(err, ProtocolError::InvalidMultibulkLength, "{input:?}");
        assert_eq!(text, "Protocol error: invalid multibulk length");
    }
}

#[test]
fn multibulk_count_limit_is_configurable() {
    let limits = Limits {
        max_multibulk_len: 2,
        ..Limits::default()
    };
    let mut decoder = RequestDecoder::new(limits);
    let mut buf = BytesMut::from(&b"*2\r\n$1\r\na\r\n$1\r\nb\r\n*3\r\n"[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(Some(argv(&[b"a", b"b"]))));
    assert_eq!(
        decoder.decode(&mut buf),
        Err(ProtocolError::InvalidMultibulkLength)
    );
}

#[test]
fn invalid_bulk_length() {
    for input in [
        &b"*1\r\n$-1\r\n"[..],
        b"*1\r\n$-10\r\n",
        b"*1\r\n$blabla\r\n",
        b"*1\r\n$\r\n",
        b"*1\r\n$+3\r\n",
        b"*1\r\n$03\r\n",
        b"*1\r\n$536870913\r\n",
        b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n",
    ] {
        let (err, text) = error_of(input);
        assert_eq!(err, ProtocolError::InvalidBulkLength, "{input:?}");
        assert_eq!(text, "Protocol error: invalid bulk length");
    }
}

#[test]
fn bulk_length_limit_is_configurable() {
    let mut decoder = decoder();
    decoder.set_limits(Limits {
        max_bulk_len: 3,
        ..Limits::default()
    });
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nabc\r\n$4\r\nabcd\r\n"[..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(ProtocolError::InvalidBulkLength)
    );
    // The accepted argument was consumed; the header that broke the limit was not.
    assert_eq!(&buf[..], b"$4\r\nabcd\r\n");
}

#[test]
fn expected_dollar() {
    let (err, text) = error_of(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n");
    assert_eq!(err, ProtocolError::ExpectedDollar('f'));
    assert_eq!(text, "Protocol error: expected '$', got 'f'");

    let (err, text) = error_of(b"*1\r\nfoo\r\n");
    assert_eq!(err, ProtocolError::ExpectedDollar('f'));
    assert_eq!(text, "Protocol error: expected '$', got 'f'");

    // An empty header line: the byte Redis reports is the '\r' itself.
    let (err, text) = error_of(b"*1\r\n\r\n");
    assert_eq!(err, ProtocolError::ExpectedDollar('\r'));
    assert_eq!(text, "Protocol error: expected '$', got '\r'");
}

#[test]
fn expected_dollar_waits_for_the_whole_line() {
    // Redis looks at the first byte only once the line's '\r' and one more byte are in.
    let (commands, result, rest) = decode_all(b"*1\r\nfoo\r");
    assert_eq!((commands.len(), result), (0, Ok(())));
    assert_eq!(&rest[..], b"foo\r");
}

#[test]
fn too_big_inline_request() {
    let limit = Limits::default().max_inline_len;
    let mut long_line = vec![b'a'; limit + 1];
    let (err, text) = error_of(&long_line);
    assert_eq!(err, ProtocolError::TooBigInlineRequest);
    assert_eq!(text, "Protocol error: too big inline request");

    // A line of exactly the limit is fine, with or without its '\r'; one more byte is not,
    // even when its '\n' has already arrived.
    long_line.truncate(limit);
    long_line.extend_from_slice(b"\n");
    let (commands, result, _) = decode_all(&long_line);
    assert_eq!((commands.len(), result), (1, Ok(())));
    long_line.insert(0, b'a');
    let (err, _) = error_of(&long_line);
    assert_eq!(err, ProtocolError::TooBigInlineRequest);

    // Up to the limit without a newline is just incomplete.
    let (commands, result, _) = decode_all(&vec![b'a'; limit]);
    assert_eq!((commands.len(), result), (0, Ok(())));
}

#[test]
fn too_big_count_strings() {
    let limit = Limits::default().max_inline_len;
    let mut input = vec![b'*'];
    input.resize(limit + 1, b'1');
    let (err, text) = error_of(&input);
    assert_eq!(err, ProtocolError::TooBigMultibulkCountString);
    assert_eq!(text, "Protocol error: too big mbulk count string");

    let mut input = b"*1\r\n$".to_vec();
    input.resize(4 + limit + 1, b'1');
    let (err, text) = error_of(&input);
    assert_eq!(err, ProtocolError::TooBigBulkCountString);
    assert_eq!(text, "Protocol error: too big bulk count string");
}

#[test]
fn unbalanced_quotes() {
    let (err, text) = error_of(b"set \"\"\"test-key\"\"\" test-value\r\nping\r\n");
    assert_eq!(err, ProtocolError::UnbalancedQuotes);
    assert_eq!(text, "Protocol error: unbalanced quotes in request");
    let (err, _) = error_of(b"GET 'key\r\n");
    assert_eq!(err, ProtocolError::UnbalancedQuotes);
}

#[test]
fn huge_declared_bulk_does_not_allocate_declared_size() {
    let mut decoder = decoder();
    // 512 MiB declared, 5 bytes sent.
    let mut buf = BytesMut::from(&b"*1\r\n$536870912\r\nhello"[..]);
    let capacity_before = buf.capacity();
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert!(
        buf.capacity() <= capacity_before,
        "decoder must not reserve the declared length"
    );
    // The connection is asked for at most 1 MiB ahead, not 512 MiB.
    assert_eq!(decoder.bytes_wanted(), 1024 * 1024);
    // Once more has arrived, it may ask for as much again, never for all the rest.
    buf.extend_from_slice(&vec![b'x'; 3 * 1024 * 1024]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(decoder.bytes_wanted(), 3 * 1024 * 1024 + 5);
}

#[test]
fn bytes_wanted_is_exact_for_small_bulks_and_zero_otherwise() {
    let mut decoder = decoder();
    let mut buf = BytesMut::from(&b"*1\r\n$10\r\nabc"[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(decoder.bytes_wanted(), 7 + 2);
    buf.extend_from_slice(b"defghij\r\n");
    assert_eq!(decoder.decode(&mut buf), Ok(Some(argv(&[b"abcdefghij"]))));
    assert_eq!(decoder.bytes_wanted(), 0);
    let mut buf = BytesMut::from(&b"*1\r\n$1"[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(decoder.bytes_wanted(), 0);
}

#[test]
fn huge_declared_count_does_not_allocate_declared_size() {
    let mut decoder = decoder();
    let mut buf = BytesMut::from(&b"*2147483647\r\n$1\r\na\r\n"[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert!(
        decoder.argv_capacity() <= 1024,
        "argv capacity {}",
        decoder.argv_capacity()
    );
}

#[test]
fn arguments_are_zero_copy_slices_of_the_buffer() {
    let mut decoder = decoder();
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"[..]);
    let start = buf.as_ptr() as usize;
    let end = start + buf.len();
    let command = decoder.decode(&mut buf).unwrap().unwrap();
    for arg in &command {
        let at = arg.as_ptr() as usize;
        assert!((start..end).contains(&at), "argument {arg:?} was copied");
    }
}

#[test]
fn partial_command_resumes_without_rescanning_consumed_bytes() {
    let mut decoder = decoder();
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$3\r\nke"[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    // Header and first argument are gone from the buffer; only the partial bulk remains.
    assert_eq!(&buf[..], b"ke");
    buf.extend_from_slice(b"y\r\n");
    assert_eq!(decoder.decode(&mut buf), Ok(Some(argv(&[b"GET", b"key"]))));
    assert!(buf.is_empty());
}

#[test]
fn decoder_is_reset_after_an_error() {
    let mut decoder = decoder();
    let mut buf = BytesMut::from(&b"*2\r\n$1\r\na\r\n!"[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    buf.extend_from_slice(b"\r\n");
    assert_eq!(
        decoder.decode(&mut buf),
        Err(ProtocolError::ExpectedDollar('!'))
    );
    let mut fresh = BytesMut::from(&b"PING\r\n"[..]);
    assert_eq!(decoder.decode(&mut fresh), Ok(Some(argv(&[b"PING"]))));
}

#[test]
fn nul_before_line_end_never_ends_the_line() {
    // Redis's "protocol desync" regression tests: each of these prefixes, followed by lines of
    // 'A', must end in a protocol error rather than be run as commands.
    for (prefix, expected) in [
        (&b"\x00"[..], ProtocolError::TooBigInlineRequest),
        (b"*\x00", ProtocolError::TooBigMultibulkCountString),
        (b"$\x00", ProtocolError::TooBigInlineRequest),
    ] {
        let mut decoder = decoder();
        let mut buf = BytesMut::from(prefix);
        let mut payload = vec![b'A'; 1024];
        payload.push(b'\n');
        let mut result = Ok(None);
        for _ in 0..100 {
            buf.extend_from_slice(&payload);
            result = decoder.decode(&mut buf);
            if result != Ok(None) {
                break;
            }
        }
        assert_eq!(result, Err(expected), "prefix {prefix:?}");
    }
}

#[test]
fn nul_in_header_line_waits_like_strchr() {
    let (commands, result, rest) = decode_all(b"*1\0\r\n$1\r\na\r\n");
    assert_eq!((commands.len(), result), (0, Ok(())));
    assert_eq!(rest.len(), 12, "nothing consumed");
    let (commands, result, _) = decode_all(b"*1\r\n$1\0\r\na\r\n");
    assert_eq!((commands.len(), result), (0, Ok(())));
    let (commands, result, _) = decode_all(b"GET a\0b\r\n");
    assert_eq!((commands.len(), result), (0, Ok(())));
}

#[test]
fn unauthenticated_clients_get_redis_small_limits() {
    let unauthenticated = Limits {
        unauthenticated: true,
        ..Limits::default()
    };
    // 10 arguments and 16 KiB bulks are fine...
    let mut decoder = RequestDecoder::new(unauthenticated);
    let mut buf = BytesMut::from(&b"*10\r\n"[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    let mut decoder = RequestDecoder::new(unauthenticated);
    let mut buf = BytesMut::from(&b"*1\r\n$16384\r\n"[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    // ...one more is Redis's protocol error.
    let mut decoder = RequestDecoder::new(unauthenticated);
    let mut buf = BytesMut::from(&b"*11\r\n"[..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(ProtocolError::UnauthenticatedMultibulkLength)
    );
    let mut decoder = RequestDecoder::new(unauthenticated);
    let mut buf = BytesMut::from(&b"*1\r\n$16385\r\n"[..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(ProtocolError::UnauthenticatedBulkLength)
    );
    assert_eq!(
        ProtocolError::UnauthenticatedBulkLength.to_string(),
        "Protocol error: unauthenticated bulk length"
    );
    // Authenticated (the default), the same requests parse.
    let mut decoder = RequestDecoder::new(Limits::default());
    let mut buf = BytesMut::from(&b"*11\r\n"[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
}

#[test]
fn pending_argv_bytes_counts_the_arguments_of_an_unfinished_command() {
    let mut decoder = decoder();
    let ptr = std::mem::size_of::<usize>();
    let mut buf = BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$5\r\nhello\r\n$10\r\nabc"[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(decoder.pending_argv_bytes(), 3 + 5 + 2 * ptr);
    buf.extend_from_slice(b"defghij\r\n");
    assert!(matches!(decoder.decode(&mut buf), Ok(Some(_))));
    assert_eq!(decoder.pending_argv_bytes(), 0);
    // An error forgets the arguments too.
    let mut buf = BytesMut::from(&b"*2\r\n$1\r\na\r\n$x\r\n"[..]);
    assert!(decoder.decode(&mut buf).is_err());
    assert_eq!(decoder.pending_argv_bytes(), 0);
}
