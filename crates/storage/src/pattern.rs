//! Redis glob-style pattern matching, as used by KEYS, SCAN MATCH, PSUBSCRIBE and CONFIG GET.
//!
//! The semantics are those of Redis 7.0's `stringmatchlen()` (`src/util.c`), byte for byte,
//! including what it does with malformed patterns:
//!
//! - `*` matches any run of bytes, `?` any single byte, `\x` the byte `x` literally.
//! - `[...]` matches one byte from a set; `[^...]` negates it. `a-z` is a range, and its ends may
//!   come in either order (`[z-a]` is `[a-z]`). Range ends compare as C `char`, which is signed
//!   on the platforms Redis ships on, so a byte >= 0x80 sorts *before* `'\0'` in a range. Inside
//!   a set `\x` is `x` compared case-sensitively even when matching without case.
//! - An unterminated set (`[abc` at the end of the pattern) is the set of what was read so far.
//!   An empty set (`[]`) matches nothing, and `]` right after `[` closes it.
//! - A trailing lone `\` matches a literal `\`.
//! - Case folding (`nocase`) is ASCII only, like `tolower()` in the C locale.
//! - An empty string matches only the empty pattern, even `*` does not match it: Redis's KEYS
//!   and SCAN short-circuit the exact pattern `*` before calling the matcher, and callers here
//!   must do the same to match Redis.
//! - Redis gives up (no match) when a pattern needs more than 1000 nested `*` (CVE-2022-36021);
//!   so does this module, at the same count.
//!
//! # Complexity
//! Redis matches by recursion with a "skip longer matches" cut. This module uses the classic
//! iterative algorithm with one saved `*` position instead: when the pattern after the latest
//! `*` fails, only that `*` is widened by one byte, never an earlier one. Every non-`*` token
//! matches exactly one byte, so widening an earlier `*` can only shift the later tokens right,
//! which the latest `*` already tried; the answer is therefore the same as full backtracking.
//! The cost is O(pattern × string) in the worst case and no recursion, so hostile patterns such
//! as `*a*a*a*a*b` cannot blow the stack or go exponential.

/// The most nested `*` that Redis 7.0 follows; a pattern whose match needs deeper nesting never
/// matches (`stringmatchlen_impl`'s "protection against abusive patterns").
const MAX_STAR_NESTING: usize = 1000;

/// Returns true if and only if `string` matches the Redis glob `pattern`, case-insensitively
/// (ASCII) when `nocase` is set. See the module documentation for the exact dialect.
///
/// ```
/// # use forkless_storage::pattern::glob_match;
/// assert!(glob_match(b"h?llo*", b"hello world", false));
/// assert!(glob_match(b"[^a]*", b"bob", false));
/// assert!(!glob_match(b"*", b"", false)); // as in Redis: KEYS special-cases "*" itself
/// ```
pub fn glob_match(pattern: &[u8], string: &[u8], nocase: bool) -> bool {
    // Redis's loop runs only while both pattern and string are non-empty.
    if string.is_empty() {
        return pattern.is_empty();
    }
    if too_deeply_nested(pattern) {
        return false;
    }

    let mut p = 0; // index of the next pattern token
    let mut s = 0; // index of the next string byte
    // After the latest `*`: the index of the token after it, and the string index at which the
    // rest of the pattern is being tried.
    let mut star: Option<(usize, usize)> = None;

    loop {
        if s == string.len() {
            // The string is used up: only `*` may be left in the pattern.
            while byte_at(pattern, p) == b'*' {
                p += 1;
            }
            return p >= pattern.len();
        }
        let advanced = match byte_at(pattern, p) {
            _ if p >= pattern.len() => None,
            b'*' => {
                while byte_at(pattern, p) == b'*' {
                    p += 1;
                }
                if p >= pattern.len() {
                    return true; // a trailing `*` swallows the rest
                }
                star = Some((p, s));
                continue;
            }
            _ => {
                let (matched, next) = single(pattern, p, byte_at(string, s), nocase);
                matched.then_some(next)
            }
        };
        match advanced {
            Some(next) => {
                p = next;
                s += 1;
            }
            None => match star {
                // Widen the latest `*` by one byte. The rest of the pattern needs at least one
                // byte, so once the retry point reaches the end there is no match.
                Some((after_star, retry)) if retry + 1 < string.len() => {
                    star = Some((after_star, retry + 1));
                    p = after_star;
                    s = retry + 1;
                }
                _ => return false,
            },
        }
    }
}

/// Returns true if and only if `pattern` has no glob metacharacter (`*`, `?`, `[`, `\`), so that
/// the only string it matches (case-sensitively) is `pattern` itself and KEYS may look the key
/// up directly instead of scanning.
pub fn is_literal(pattern: &[u8]) -> bool {
    !pattern
        .iter()
        .any(|&b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
}

/// The pattern byte at `idx`, or 0 past the end: Redis reads one byte past the pattern, where
/// its strings keep a NUL terminator, and this reproduces what it sees there.
fn byte_at(bytes: &[u8], idx: usize) -> u8 {
    bytes.get(idx).copied().unwrap_or(0)
}

/// Matches the single-byte token (anything but `*`) at `p` against `c`. Returns whether it
/// matched and the index of the next token; the index does not depend on `c`.
fn single(pattern: &[u8], p: usize, c: u8, nocase: bool) -> (bool, usize) {
    match byte_at(pattern, p) {
        b'?' => (true, p + 1),
        b'[' => class(pattern, p, c, nocase),
        b'\\' if pattern.len() - p >= 2 => (eq(byte_at(pattern, p + 1), c, nocase), p + 2),
        // A trailing lone backslash falls through to a literal comparison, as in Redis.
        literal => (eq(literal, c, nocase), p + 1),
    }
}

/// Matches the set starting with the `[` at `open` against `c`, walking it exactly as Redis's
/// `case '['` does (including its treatment of unterminated sets). Returns whether `c` is in the
/// set (after negation) and the index just past the set.
fn class(pattern: &[u8], open: usize, c: u8, nocase: bool) -> (bool, usize) {
    let len = pattern.len();
    let mut i = open + 1;
    let negated = byte_at(pattern, i) == b'^';
    if negated {
        i += 1;
    }
    let mut matched = false;
    loop {
        let remaining = len.saturating_sub(i);
        let here = byte_at(pattern, i);
        if here == b'\\' && remaining >= 2 {
            i += 1;
            // Escaped set members compare case-sensitively, as in Redis.
            if byte_at(pattern, i) == c {
                matched = true;
            }
        } else if here == b']' {
            break;
        } else if remaining == 0 {
            // Unterminated: step back so that the caller's "skip the closing `]`" lands on
            // the end of the pattern.
            i -= 1;
            break;
        } else if remaining >= 3 && byte_at(pattern, i + 1) == b'-' {
            let (mut start, mut end) = (signed(here), signed(byte_at(pattern, i + 2)));
            if start > end {
                std::mem::swap(&mut start, &mut end);
            }
            let mut value = signed(c);
            if nocase {
                start = lower_signed(start);
                end = lower_signed(end);
                value = lower_signed(value);
            }
            i += 2;
            if (start..=end).contains(&value) {
                matched = true;
            }
        } else if eq(here, c, nocase) {
            matched = true;
        }
        i += 1;
    }
    (matched != negated, i + 1)
}

/// Byte equality, ASCII case-insensitive when `nocase` is set.
fn eq(a: u8, b: u8, nocase: bool) -> bool {
    if nocase {
        a.eq_ignore_ascii_case(&b)
    } else {
        a == b
    }
}

/// A byte as C's (signed) `char`, which is how Redis compares range ends.
fn signed(b: u8) -> i16 {
    i16::from(i8::from_ne_bytes([b]))
}

/// `tolower()` in the C locale on a signed `char` value: only `A`-`Z` change.
fn lower_signed(v: i16) -> i16 {
    if (i16::from(b'A')..=i16::from(b'Z')).contains(&v) {
        v + 32
    } else {
        v
    }
}

/// Returns true if and only if matching `pattern` against a non-empty string would need more
/// than [`MAX_STAR_NESTING`] nested `*`, in which case Redis reports no match. Redis recurses
/// once for every run of `*` that has a token after it (a trailing run matches without
/// recursing), and a successful match passes through every such run.
fn too_deeply_nested(pattern: &[u8]) -> bool {
    // Cheap filter: a pattern with few `*` bytes cannot have many `*` tokens.
    if pattern.iter().filter(|&&b| b == b'*').count() <= MAX_STAR_NESTING {
        return false;
    }
    let mut p = 0;
    let mut nested_runs = 0;
    while p < pattern.len() {
        if byte_at(pattern, p) == b'*' {
            while byte_at(pattern, p) == b'*' {
                p += 1;
            }
            if p < pattern.len() {
                nested_runs += 1;
            }
        } else {
            p = single(pattern, p, 0, false).1;
        }
    }
    nested_runs > MAX_STAR_NESTING
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (pattern, string, nocase, expected). The malformed-pattern rows were checked against
    /// Redis 7.0.15's KEYS.
    const CASES: &[(&[u8], &[u8], bool, bool)] = &[
        // Plain and empty.
        (b"", b"", false, true),
        (b"", b"a", false, false),
        (b"a", b"", false, false),
        (b"*", b"", false, false),
        (b"**", b"", false, false),
        (b"abc", b"abc", false, true),
        (b"abc", b"abd", false, false),
        (b"abc", b"ab", false, false),
        (b"ab", b"abc", false, false),
        // Star.
        (b"*", b"anything", false, true),
        (b"**", b"x", false, true),
        (b"a*", b"a", false, true),
        (b"a**", b"a", false, true),
        (b"*a", b"a", false, true),
        (b"*a", b"ba", false, true),
        (b"*a", b"ab", false, false),
        (b"a*b*c", b"aXXbYYc", false, true),
        (b"a*b*c", b"aXXbYY", false, false),
        (b"*b*", b"abc", false, true),
        (b"*?", b"a", false, true),
        (b"*??", b"a", false, false),
        (b"h*llo", b"heeeello", false, true),
        (b"*llo*", b"hello world", false, true),
        (b"*.*", b"a.b.c", false, true),
        (b"*ab", b"aab", false, true),
        (b"*aab", b"aaab", false, true),
        (b"*abab", b"abaabab", false, true),
        // Question mark.
        (b"h?llo", b"hello", false, true),
        (b"h?llo", b"hllo", false, false),
        (b"?", b"", false, false),
        (b"??", b"a", false, false),
        // Sets.
        (b"h[ae]llo", b"hallo", false, true),
        (b"h[ae]llo", b"hillo", false, false),
        (b"h[^e]llo", b"hallo", false, true),
        (b"h[^e]llo", b"hello", false, false),
        (b"h[a-b]llo", b"hbllo", false, true),
        (b"h[a-b]llo", b"hcllo", false, false),
        (b"[z-a]", b"c", false, true),
        (b"[z-a]", b"A", false, false),
        (b"[A-Z]", b"q", true, true),
        (b"[a-z]", b"Q", true, true),
        (b"[abc]", b"B", true, true),
        (b"[abc]", b"B", false, false),
        (b"[\\]]", b"]", false, true),
        (b"[\\a]", b"A", true, false), // escaped members ignore nocase
        (b"[\\-]", b"-", false, true),
        (b"[-a]", b"-", false, true),
        (b"[-a]", b"a", false, true),
        (b"[a-]", b"a", false, true), // range 'a'..']'
        (b"[a-]", b"^", false, true),
        (b"[a-]", b"b", false, false),
        (b"[a-]", b"-", false, false),
        (b"[]]", b"]", false, false), // empty set then a literal ']'
        (b"[]]", b"]]", false, false),
        (b"[]a", b"a", false, false),
        (b"[^]a", b"xa", false, true),
        // Unterminated sets (Redis 7.0.15 KEYS agrees).
        (b"a[", b"a[", false, false),
        (b"a[", b"a", false, false),
        (b"a[b", b"ab", false, true),
        (b"a[b", b"a[", false, false),
        (b"a[^", b"ab", false, true),
        (b"a[^", b"a[", false, true),
        (b"a[^", b"a", false, false),
        (b"[^a", b"c", false, true),
        (b"[^a", b"a", false, false),
        (b"*[", b"x[", false, false),
        (b"a[b-", b"ab", false, true),
        (b"a[b-", b"a-", false, true),
        (b"a[b-]", b"ab", false, true),
        (b"a[b\\", b"a\\", false, true),
        // Escapes.
        (b"a\\*", b"a*", false, true),
        (b"a\\*", b"ab", false, false),
        (b"\\?", b"?", false, true),
        (b"\\?", b"x", false, false),
        (b"\\a", b"A", true, true), // top-level escapes do honour nocase
        (b"a\\", b"a\\", false, true), // trailing backslash is literal
        (b"a\\\\", b"a\\", false, true),
        (b"a*\\", b"ab\\", false, true),
        // Case folding.
        (b"HeLLo", b"hello", true, true),
        (b"HeLLo", b"hello", false, false),
        (b"*O", b"hello", true, true),
        // High bytes: ranges compare as signed char.
        (b"[a-\xff]", b"\xff", false, true),
        (b"[a-\xff]", b"A", false, true),
        (b"[a-\xff]", b"b", false, false),
        (b"[a-\xff]", b"\x80", false, false),
        (b"[\x80-\x90]", b"\x85", false, true),
        (b"\xc3\xa9*", b"\xc3\xa9t\xc3\xa9", false, true),
        // NUL bytes are ordinary bytes.
        (b"a\0b", b"a\0b", false, true),
        (b"a?b", b"a\0b", false, true),
    ];

    #[test]
    fn table() {
        for &(pattern, string, nocase, expected) in CASES {
            assert_eq!(
                glob_match(pattern, string, nocase),
                expected,
                "pattern {:?} string {:?} nocase {nocase}",
                String::from_utf8_lossy(pattern),
                String::from_utf8_lossy(string),
            );
        }
    }

    /// A direct transcription of Redis 7.0's recursive `stringmatchlen_impl`, used as an oracle
    /// for exhaustive comparison over small alphabets.
    fn reference(pattern: &[u8], string: &[u8], nocase: bool) -> bool {
        fn imp(
            pat: &[u8],
            mut p: usize,
            s: &[u8],
            mut i: usize,
            nocase: bool,
            skip: &mut bool,
            nesting: usize,
        ) -> bool {
            if nesting > MAX_STAR_NESTING {
                return false;
            }
            while p < pat.len() && i < s.len() {
                if pat[p] == b'*' {
                    while p < pat.len() && byte_at(pat, p + 1) == b'*' {
                        p += 1;
                    }
                    if pat.len() - p == 1 {
                        return true;
                    }
                    while i < s.len() {
                        if imp(pat, p + 1, s, i, nocase, skip, nesting + 1) {
                            return true;
                        }
                        if *skip {
                            return false;
                        }
                        i += 1;
                    }
                    *skip = true;
                    return false;
                }
                let (matched, next) = single(pat, p, s[i], nocase);
                if !matched {
                    return false;
                }
                // `single` returns the index after the token; Redis's loop tail adds the
                // final `pattern++`, which `next` already includes.
                p = next;
                i += 1;
                if i == s.len() {
                    while byte_at(pat, p) == b'*' {
                        p += 1;
                    }
                    break;
                }
            }
            p >= pat.len() && i == s.len()
        }
        let mut skip = false;
        imp(pattern, 0, string, 0, nocase, &mut skip, 0)
    }

    /// Every pattern up to length 4 over a small alphabet of metacharacters, against every
    /// string up to length 4, agrees with the recursive transcription of Redis.
    #[test]
    fn exhaustive_against_reference() {
        let pattern_alphabet: &[u8] = b"a*?[]^-\\";
        let string_alphabet: &[u8] = b"ab]-";
        let patterns = all_strings(pattern_alphabet, 4);
        let strings = all_strings(string_alphabet, 4);
        for pattern in &patterns {
            for string in &strings {
                assert_eq!(
                    glob_match(pattern, string, false),
                    reference(pattern, string, false),
                    "pattern {:?} string {:?}",
                    String::from_utf8_lossy(pattern),
                    String::from_utf8_lossy(string),
                );
            }
        }
    }

    fn all_strings(alphabet: &[u8], max_len: usize) -> Vec<Vec<u8>> {
        let mut out = vec![Vec::new()];
        let mut frontier = vec![Vec::new()];
        for _ in 0..max_len {
            let mut next = Vec::new();
            for prefix in &frontier {
                for &b in alphabet {
                    let mut s = prefix.clone();
                    s.push(b);
                    next.push(s);
                }
            }
            out.extend(next.iter().cloned());
            frontier = next;
        }
        out
    }

    /// The pathological pattern from the Redis issue tracker against a 10 KB string: a naive
    /// backtracking matcher takes exponential time here; this one answers at once.
    #[test]
    fn pathological_patterns_finish() {
        let string = vec![b'a'; 10 * 1024];
        assert!(!glob_match(b"*a*a*a*a*a*a*a*a*a*a*a*b", &string, false));
        assert!(glob_match(b"*a*a*a*a*a*a*a*a*a*a*a*a", &string, false));
        let mut with_b = string.clone();
        with_b.push(b'b');
        assert!(glob_match(b"*a*a*a*a*a*a*a*a*a*a*a*b", &with_b, false));
        assert!(!glob_match(b"*?*?*?*?*?*?*?*?*?*c", &with_b, false));
        assert!(!glob_match(b"*[a]*[a]*[a]*[a]*[a]*[b]*[a]", &with_b, false));
    }

    /// Redis 7.0.15 gives up beyond 1000 nested stars (checked with KEYS).
    #[test]
    fn star_nesting_limit() {
        let a1000 = vec![b'a'; 1000];
        let p1000 = b"*a".repeat(1000);
        let p1001 = b"*a".repeat(1001);
        assert!(glob_match(&p1000, &a1000, false));
        assert!(!glob_match(&p1001, &vec![b'a'; 1001], false));
        let mut p1000_trailing = p1000.clone();
        p1000_trailing.push(b'*');
        assert!(glob_match(&p1000_trailing, &a1000, false));
        let mut p1000_b = p1000_trailing.clone();
        p1000_b.push(b'b');
        let mut a1000_b = a1000.clone();
        a1000_b.push(b'b');
        assert!(!glob_match(&p1000_b, &a1000_b, false));
        // Escaped and bracketed stars are not nesting.
        assert!(glob_match(&b"\\*".repeat(1100), &vec![b'*'; 1100], false));
        assert!(glob_match(&b"[*]".repeat(1100), &vec![b'*'; 1100], false));
    }

    #[test]
    fn literal_patterns() {
        assert!(is_literal(b""));
        assert!(is_literal(b"user:1000"));
        assert!(is_literal(b"a]b^c-d"));
        assert!(!is_literal(b"user:*"));
        assert!(!is_literal(b"user:?"));
        assert!(!is_literal(b"user:[12]"));
        assert!(!is_literal(b"user\\:"));
        for key in [&b""[..], b"k", b"user:1000", b"a]b^c-d"] {
            assert!(glob_match(key, key, false));
            assert!(!glob_match(key, b"other", false) || key == b"other");
        }
    }
}
