//! Splitting an inline request into arguments, by the rules of Redis's `sdssplitargs`.
//!
//! - Arguments are separated by runs of C `isspace` bytes (space, `\t`, `\n`, `\v`, `\f`, `\r`).
//!   An unquoted argument, though, ends only at space, `\t`, `\n` or `\r`, so a `\v` or `\f`
//!   inside a word is part of it.
//! - `"…"` understands `\n \r \t \b \a`, `\xHH` (two hex digits) and `\<any>` for `<any>`.
//! - `'…'` understands only `\'`.
//! - A quote may open in the middle of a word (`a"b c"` is `ab c`), but a closing quote must be
//!   followed by whitespace or the end of the line; an unterminated quote is an error.
//! - Redis splits a C string, so a NUL byte ends the line: whatever follows it is ignored, and a
//!   quote still open there is unterminated. (The request decoder never passes a line with a
//!   NUL, as Redis's line search stops at NUL; the rule is kept so this function is `sdssplitargs`
//!   on its own.)

use bytes::Bytes;

/// Splits `line` (no line terminator) into arguments; `None` if its quotes are unbalanced.
pub(super) fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let line = match line.iter().position(|&byte| byte == 0) {
        Some(nul) => line.get(..nul).unwrap_or_default(),
        None => line,
    };
    let mut args = Vec::new();
    let mut pos = 0;
    loop {
        while line.get(pos).is_some_and(|&byte| is_c_space(byte)) {
            pos += 1;
        }
        if pos >= line.len() {
            return Some(args);
        }
        let mut current = Vec::new();
        let mut quote = Quote::None;
        loop {
            let byte = line.get(pos).copied();
            let next = line.get(pos + 1).copied();
            let mut done = false;
            match quote {
                Quote::Double => match byte {
                    None => return None,
                    Some(b'\\') if next == Some(b'x') => {
                        let high = line.get(pos + 2).copied().and_then(hex_value);
                        let low = line.get(pos + 3).copied().and_then(hex_value);
                        if let (Some(high), Some(low)) = (high, low) {
                            current.push(high * 16 + low);
                            pos += 3;
                        } else {
                            // `\x` without two hex digits is the plain escape of `x`.
                            current.push(b'x');
                            pos += 1;
                        }
                    }
                    Some(b'\\') if next.is_some() => {
                        current.push(match next {
                            Some(b'n') => b'\n',
                            Some(b'r') => b'\r',
                            Some(b't') => b'\t',
                            Some(b'b') => 0x08,
                            Some(b'a') => 0x07,
                            Some(other) => other,
                            None => b'\\',
                        });
                        pos += 1;
                    }
                    Some(b'"') => {
                        if next.is_some_and(|next| !is_c_space(next)) {
                            return None;
                        }
                        done = true;
                    }
                    Some(other) => current.push(other),
                },
                Quote::Single => match byte {
                    None => return None,
                    Some(b'\\') if next == Some(b'\'') => {
                        current.push(b'\'');
                        pos += 1;
                    }
                    Some(b'\'') => {
                        if next.is_some_and(|next| !is_c_space(next)) {
                            return None;
                        }
                        done = true;
                    }
                    Some(other) => current.push(other),
                },
                Quote::None => match byte {
                    None | Some(b' ' | b'\n' | b'\r' | b'\t') => done = true,
                    Some(b'"') => quote = Quote::Double,
                    Some(b'\'') => quote = Quote::Single,
                    Some(other) => current.push(other),
                },
            }
            // Like Redis, step past the byte just handled (the closing quote or separator
            // included) unless the line is over.
            if byte.is_some() {
                pos += 1;
            }
            if done {
                break;
            }
        }
        args.push(Bytes::from(current));
    }
}

/// Which quote the current argument is inside.
#[derive(Clone, Copy)]
enum Quote {
    None,
    Double,
    Single,
}

/// C's `isspace` in the "C" locale.
fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::split_args;

    fn split(line: &[u8]) -> Option<Vec<Vec<u8>>> {
        split_args(line).map(|args| args.into_iter().map(|arg| arg.to_vec()).collect())
    }

    fn words(words: &[&[u8]]) -> Option<Vec<Vec<u8>>> {
        Some(words.iter().map(|word| word.to_vec()).collect())
    }

    #[test]
    fn plain_words_split_on_runs_of_blanks() {
        assert_eq!(split(b"SET key value"), words(&[b"SET", b"key", b"value"]));
        assert_eq!(
            split(b"  SET \t key\r\rvalue  "),
            words(&[b"SET", b"key", b"value"])
        );
        assert_eq!(split(b""), words(&[]));
        assert_eq!(split(b" \t \x0b\x0c "), words(&[]));
    }

    #[test]
    fn vertical_tab_separates_only_between_words() {
        // Leading isspace bytes are skipped, but an unquoted word ends only at ' ', \t, \n, \r.
        assert_eq!(split(b"\x0bab\x0bc d"), words(&[b"ab\x0bc", b"d"]));
    }

    #[test]
    fn double_quotes_understand_escapes() {
        assert_eq!(
            split(br#"SET "a b" "\n\r\t\b\a\\\"\q""#),
            words(&[b"SET", b"a b", b"\n\r\t\x08\x07\\\"q"])
        );
        assert_eq!(split(br#""\x41\x7a\xFF\x00""#), words(&[b"Az\xff\x00"]));
        // \x without two hex digits is just an escaped 'x'.
        assert_eq!(split(br#""\x4" "\xg1""#), words(&[b"x4", b"xg1"]));
        assert_eq!(split(br#""""#), words(&[b""]));
    }

    #[test]
    fn single_quotes_understand_only_escaped_quote() {
        assert_eq!(split(br"'it\'s' '\n\x41'"), words(&[b"it's", br"\n\x41"]));
        assert_eq!(split(b"''"), words(&[b""]));
    }

    #[test]
    fn quote_can_open_mid_word() {
        assert_eq!(split(br#"a"b c"d"#), None);
        assert_eq!(split(br#"a"b c" d"#), words(&[b"ab c", b"d"]));
        assert_eq!(split(b"x'y z'"), words(&[b"xy z"]));
    }

    #[test]
    fn closing_quote_must_be_followed_by_space_or_end() {
        assert_eq!(split(br#""foo"bar"#), None);
        assert_eq!(split(br"'foo'bar"), None);
        assert_eq!(split(b"\"foo\"\x0bbar"), words(&[b"foo", b"bar"]));
        assert_eq!(split(br#"set """test-key""" test-value"#), None);
    }

    #[test]
    fn unterminated_quotes_are_unbalanced() {
        assert_eq!(split(br#"SET "key"#), None);
        assert_eq!(split(br"SET 'key"), None);
        assert_eq!(split(br#"SET "key\"#), None);
        assert_eq!(split(br#""\"#), None);
    }

    #[test]
    fn nul_ends_the_line() {
        assert_eq!(split(b"GET a\0b c"), words(&[b"GET", b"a"]));
        assert_eq!(split(b"GET \"a\0b\" c"), None);
        assert_eq!(split(b"GET \"a\"\0junk"), words(&[b"GET", b"a"]));
    }
}
