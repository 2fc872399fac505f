//! Argument parsing shared by the sorted-set commands: scores as Redis reads them with
//! `strtod`, score ranges (`zslParseRange`) and lex ranges (`zslParseLexRange`).

use bytes::Bytes;
use forkless_storage::types::zset::ZSet;

/// The length of the longest prefix of `text` that C's `strtod` reads as a decimal number,
/// after any leading white space (`inf`, `infinity` and `nan` included, any case).
pub(crate) fn strtod_prefix(text: &[u8]) -> usize {
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace() && *b != 0x0b)
        .unwrap_or(text.len());
    let mut pos = start;
    if matches!(text.get(pos), Some(b'+' | b'-')) {
        pos += 1;
    }
    let rest = text.get(pos..).unwrap_or_default();
    let starts_with = |word: &[u8]| {
        rest.get(..word.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(word))
    };
    if starts_with(b"infinity") {
        return pos + 8;
    }
    if starts_with(b"inf") || starts_with(b"nan") {
        return pos + 3;
    }
    let digits = |from: usize| {
        text.get(from..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let int_digits = digits(pos);
    pos += int_digits;
    let mut frac_digits = 0;
    if text.get(pos) == Some(&b'.') {
        frac_digits = digits(pos + 1);
        if int_digits + frac_digits > 0 {
            pos += 1 + frac_digits;
        }
    }
    if int_digits + frac_digits == 0 {
        return 0;
    }
    if matches!(text.get(pos), Some(b'e' | b'E')) {
        let mut exp = pos + 1;
        if matches!(text.get(exp), Some(b'+' | b'-')) {
            exp += 1;
        }
        let exp_digits = digits(exp);
        if exp_digits > 0 {
            pos = exp + exp_digits;
        }
    }
    pos
}

/// The value of a `strtod` prefix, and whether it was out of range (`ERANGE`: a finite number
/// too large, or a non-zero number that rounds to zero).
pub(crate) fn strtod_value(number: &[u8]) -> Option<(f64, bool)> {
    let text = std::str::from_utf8(number).ok()?.trim_start();
    let value: f64 = text.parse().ok()?;
    let lower = text.to_ascii_lowercase();
    let literal_infinity = lower.contains("inf");
    let overflow = value.is_infinite() && !literal_infinity;
    let underflow = value == 0.0
        && lower
            .split(['e'])
            .next()
            .is_some_and(|mantissa| mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b)));
    Some((value, overflow || underflow))
}

/// Parses a score as Redis's `getDoubleFromObject` (`string2d`): the whole argument must be a
/// number, without leading space, not NaN and not out of range.
pub(crate) fn parse_score(arg: &[u8]) -> Option<f64> {
    let first = arg.first()?;
    if first.is_ascii_whitespace() || *first == 0x0b {
        return None;
    }
    if strtod_prefix(arg) != arg.len() {
        return None;
    }
    let (value, out_of_range) = strtod_value(arg)?;
    (!value.is_nan() && !out_of_range).then_some(value)
}

/// `strtod` as `zslParseRange` uses it: leading space allowed, the number may end at the end
/// of the argument or at a NUL byte, an empty number reads as 0, out of range saturates.
fn parse_range_number(arg: &[u8]) -> Option<f64> {
    let len = strtod_prefix(arg);
    if !matches!(arg.get(len), None | Some(0)) {
        return None;
    }
    let number = arg.get(..len).unwrap_or_default();
    let value = if len == 0 {
        0.0
    } else {
        strtod_value(number)?.0
    };
    (!value.is_nan()).then_some(value)
}

/// One end of a score range.
#[derive(Debug, Clone, Copy)]
pub(super) struct ScoreBound {
    pub(super) value: f64,
    pub(super) exclusive: bool,
}

impl ScoreBound {
    fn parse(arg: &[u8]) -> Option<ScoreBound> {
        match arg.split_first() {
            Some((b'(', rest)) => Some(ScoreBound {
                value: parse_range_number(rest)?,
                exclusive: true,
            }),
            _ => Some(ScoreBound {
                value: parse_range_number(arg)?,
                exclusive: false,
            }),
        }
    }
}

/// One end of a lex range.
#[derive(Debug, Clone)]
pub(super) enum LexBound {
    /// `-`.
    Min,
    /// `+`.
    Max,
    /// `[member`.
    Inclusive(Bytes),
    /// `(member`.
    Exclusive(Bytes),
}

impl LexBound {
    fn parse(arg: &[u8]) -> Option<LexBound> {
        match arg.split_first()? {
            (b'+', []) => Some(LexBound::Max),
            (b'-', []) => Some(LexBound::Min),
            (b'[', rest) => Some(LexBound::Inclusive(Bytes::copy_from_slice(rest))),
            (b'(', rest) => Some(LexBound::Exclusive(Bytes::copy_from_slice(rest))),
            _ => None,
        }
    }
}

/// A score or lex range, resolved against a set to ascending ranks `start..end`.
#[derive(Debug, Clone)]
pub(super) enum Range {
    Score(ScoreBound, ScoreBound),
    Lex(LexBound, LexBound),
}

pub(super) const SCORE_RANGE_ERR: &str = "ERR min or max is not a float";
pub(super) const LEX_RANGE_ERR: &str = "ERR min or max not valid string range item";

impl Range {
    pub(super) fn score(min: &[u8], max: &[u8]) -> Result<Range, &'static str> {
        match (ScoreBound::parse(min), ScoreBound::parse(max)) {
            (Some(min), Some(max)) => Ok(Range::Score(min, max)),
            _ => Err(SCORE_RANGE_ERR),
        }
    }

    pub(super) fn lex(min: &[u8], max: &[u8]) -> Result<Range, &'static str> {
        match (LexBound::parse(min), LexBound::parse(max)) {
            (Some(min), Some(max)) => Ok(Range::Lex(min, max)),
            _ => Err(LEX_RANGE_ERR),
        }
    }

    /// The ascending ranks of the members in range; empty (start >= end) when none.
    pub(super) fn ranks(&self, zset: &ZSet) -> (usize, usize) {
        match self {
            Range::Score(min, max) => (
                zset.count_score_below(min.value, min.exclusive),
                zset.count_score_below(max.value, !max.exclusive),
            ),
            Range::Lex(min, max) => {
                let start = match min {
                    LexBound::Min => 0,
                    LexBound::Max => zset.len(),
                    LexBound::Inclusive(m) => zset.count_member_below(m, false),
                    LexBound::Exclusive(m) => zset.count_member_below(m, true),
                };
                let end = match max {
                    LexBound::Min => 0,
                    LexBound::Max => zset.len(),
                    LexBound::Inclusive(m) => zset.count_member_below(m, true),
                    LexBound::Exclusive(m) => zset.count_member_below(m, false),
                };
                (start, end)
            }
        }
    }
}

/// Resolves Redis rank arguments (negative counts from the end) against `len` into ascending
/// ranks `start..end`, as `genericZrangebyrankCommand` and ZREMRANGEBYRANK do.
pub(super) fn rank_range(start: i64, end: i64, len: usize) -> (usize, usize) {
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    let start = if start < 0 {
        len_i.saturating_add(start)
    } else {
        start
    }
    .max(0);
    let end = if end < 0 {
        len_i.saturating_add(end)
    } else {
        end
    };
    if start > end || start >= len_i {
        return (0, 0);
    }
    let end = end.min(len_i - 1);
    let to_usize = |n: i64| usize::try_from(n).unwrap_or(0);
    (to_usize(start), to_usize(end) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_parse_as_string2d() {
        for (text, value) in [
            ("1", 1.0),
            ("-1.5", -1.5),
            ("+2", 2.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("1e3", 1000.0),
            ("inf", f64::INFINITY),
            ("+inf", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
            ("1e-310", 1e-310),
        ] {
            assert_eq!(parse_score(text.as_bytes()), Some(value), "{text}");
        }
        for bad in [
            "", " 1", "1 ", "nan", "abc", "1e400", "1e-400", "1e", "--1", ".", "e5", "1x",
        ] {
            assert_eq!(parse_score(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn range_numbers_parse_as_zsl_parse_range() {
        assert_eq!(parse_range_number(b""), Some(0.0));
        assert_eq!(parse_range_number(b" 5"), Some(5.0));
        assert_eq!(parse_range_number(b"1e400"), Some(f64::INFINITY));
        assert_eq!(parse_range_number(b"5\0x"), Some(5.0));
        assert_eq!(parse_range_number(b"nan"), None);
        assert_eq!(parse_range_number(b"5x"), None);
    }

    #[test]
    fn rank_ranges_clamp_as_redis() {
        assert_eq!(rank_range(0, -1, 3), (0, 3));
        assert_eq!(rank_range(-100, 100, 3), (0, 3));
        assert_eq!(rank_range(2, 1, 3), (0, 0));
        assert_eq!(rank_range(3, 5, 3), (0, 0));
        assert_eq!(rank_range(i64::MIN, i64::MAX, 3), (0, 3));
        assert_eq!(rank_range(0, -1, 0), (0, 0));
    }
}
