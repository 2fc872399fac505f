//! Value parsers, in Redis's words.

use super::lexer::is_c_space;
use super::table::Range;

pub(super) fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

pub(super) fn parse_yes_no(arg: &[u8]) -> Result<bool, String> {
    if arg.eq_ignore_ascii_case(b"yes") {
        Ok(true)
    } else if arg.eq_ignore_ascii_case(b"no") {
        Ok(false)
    } else {
        Err("argument must be 'yes' or 'no'".to_owned())
    }
}

pub(super) fn parse_enum(arg: &[u8], names: &[&str]) -> Result<usize, String> {
    names
        .iter()
        .position(|name| name.as_bytes().eq_ignore_ascii_case(arg))
        .ok_or_else(|| {
            format!(
                "argument(s) must be one of the following: {}",
                names.join(", ")
            )
        })
}

/// Parses an integer option the way Redis 7.0's `numericParseString` and
/// `numericBoundaryCheck` do. Returns the value; the range guarantees it is non-negative.
pub(super) fn parse_int(arg: &[u8], range: Range, memory: bool) -> Result<u64, String> {
    let raw = if memory {
        parse_memory(arg).ok_or("argument must be a memory value")?
    } else {
        // Two's complement on purpose: an unsigned C option sees -1 as a huge number.
        parse_strict_i64(arg).ok_or("argument couldn't be parsed into an integer")? as u64
    };
    match range {
        Range::Signed(min, max) => {
            let value = raw as i64;
            if value < min || value > max {
                return Err(format!(
                    "argument must be between {min} and {max} inclusive"
                ));
            }
            Ok(raw)
        }
        Range::Unsigned(min, max) => {
            if raw < min || raw > max {
                return Err(format!(
                    "argument must be between {min} and {max} inclusive"
                ));
            }
            Ok(raw)
        }
    }
}

/// Redis 7.0's `memtoull`: decimal digits, then an optional case-insensitive unit `b`, `k`
/// (1000), `kb` (1024), `m`, `mb`, `g`, `gb`. No sign, no spaces. An empty number is 0, a
/// number too big for 64 bits saturates and the unit multiplication wraps, all as in Redis.
pub(crate) fn parse_memory(arg: &[u8]) -> Option<u64> {
    let digits_len = arg.iter().take_while(|b| b.is_ascii_digit()).count();
    let (digits, unit) = arg.split_at(digits_len);
    let multiplier: u64 = match unit.to_ascii_lowercase().as_slice() {
        b"" | b"b" => 1,
        b"k" => 1000,
        b"kb" => 1024,
        b"m" => 1000 * 1000,
        b"mb" => 1024 * 1024,
        b"g" => 1000 * 1000 * 1000,
        b"gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    if digits.len() >= 128 {
        return None;
    }
    let value = digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u64::from(d - b'0')))
    });
    Some(value.unwrap_or(u64::MAX).wrapping_mul(multiplier))
}

/// Renders bytes as CONFIG REWRITE does (`rewriteConfigFormatMemory`): the largest of gb, mb,
/// kb that divides the value exactly, else plain bytes.
pub(super) fn format_memory(bytes: u64) -> String {
    const GB: u64 = 1 << 30;
    const MB: u64 = 1 << 20;
    const KB: u64 = 1 << 10;
    match bytes {
        0 => "0".to_owned(),
        b if b % GB == 0 => format!("{}gb", b / GB),
        b if b % MB == 0 => format!("{}mb", b / MB),
        b if b % KB == 0 => format!("{}kb", b / KB),
        b => b.to_string(),
    }
}

/// Redis's `string2ll`: an optional `-`, then digits with no leading zero (except "0" itself),
/// nothing else, no overflow.
pub(super) fn parse_strict_i64(arg: &[u8]) -> Option<i64> {
    if arg == b"0" {
        return Some(0);
    }
    let (negative, digits) = match arg.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, arg),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let magnitude = digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u64::from(d - b'0')))
    })?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// C's `strtoll(s, &end, 10)`: leading whitespace, an optional sign, digits; saturates on
/// overflow. Returns the value and whether the whole string was consumed (`*end == '\0'`).
pub(super) fn c_strtoll(arg: &[u8]) -> (i64, bool) {
    let mut idx = arg.iter().take_while(|&&b| is_c_space(b)).count();
    let negative = match arg.get(idx) {
        Some(b'-') => {
            idx += 1;
            true
        }
        Some(b'+') => {
            idx += 1;
            false
        }
        _ => false,
    };
    let digits = arg.get(idx..).unwrap_or_default();
    let n_digits = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if n_digits == 0 {
        // No conversion: `end` is the start of the string.
        return (0, arg.is_empty());
    }
    let mut value: i64 = 0;
    for &d in digits.iter().take(n_digits) {
        let digit = i64::from(d - b'0');
        value = if negative {
            value.saturating_mul(10).saturating_sub(digit)
        } else {
            value.saturating_mul(10).saturating_add(digit)
        };
    }
    (value, idx + n_digits == arg.len())
}

pub(super) fn utf8(arg: &[u8]) -> Result<String, String> {
    String::from_utf8(arg.to_vec()).map_err(|_| "argument must be valid UTF-8".to_owned())
}
