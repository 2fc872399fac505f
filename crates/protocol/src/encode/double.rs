//! Redis 7.0's text for a double: C's `printf("%.17g")`, in pure Rust and without allocating.
//!
//! `%.17g` rounds to 17 significant digits, which is enough to read back the same `f64`. With
//! `X` the decimal exponent of the rounded value, it prints fixed notation when
//! `-4 <= X < 17` and scientific notation (`1.5e+20`, exponent at least two digits) otherwise,
//! then strips trailing zeros and a dangling decimal point. Rust's `{:.16e}` produces exactly
//! those 17 correctly rounded digits (ties to even, like glibc), so this module only reshapes
//! its output. Infinities print as `inf`/`-inf` (Redis special-cases them) and NaN as `nan`.

use std::fmt::Write as _;

/// Significant digits of `%.17g`.
const DIGITS: usize = 17;
/// Longer than any output: "-1.2345678901234567e-308" is 24 bytes, and fixed notation is at
/// most "-0.0001" plus 16 more digits.
const CAPACITY: usize = 32;

/// Redis 7.0's `"%.17g"` formatting of a double (what `ZSCORE` and RESP3 doubles print in Redis
/// 7.0): 17 significant digits, fixed notation for decimal exponents from -4 to 16 and
/// scientific notation (`1e+20`, `1.4999999999999999e-07`) otherwise, trailing zeros stripped;
/// `inf`, `-inf` and `nan` for the non-finite values. `-0.0` prints as `-0`.
#[must_use]
pub fn format_double(d: f64) -> String {
    DoubleText::new(d).as_str().to_owned()
}

/// One formatted double, held on the stack.
pub(super) struct DoubleText {
    bytes: [u8; CAPACITY],
    len: usize,
}

impl DoubleText {
    /// Formats `d` as `%.17g`.
    pub(super) fn new(d: f64) -> Self {
        let mut out = Self {
            bytes: [0; CAPACITY],
            len: 0,
        };
        if d.is_nan() {
            out.push_bytes(b"nan");
            return out;
        }
        if d.is_sign_negative() {
            out.push_bytes(b"-");
        }
        if d.is_infinite() {
            out.push_bytes(b"inf");
            return out;
        }
        let mut scientific = Self {
            bytes: [0; CAPACITY],
            len: 0,
        };
        // 32 bytes hold the longest `{:.16e}` text ("1.7976931348623157e308", 22 bytes), so
        // this write cannot fail.
        if write!(scientific, "{:.16e}", d.abs()).is_err() {
            debug_assert!(false, "{{:.16e}} overflowed {CAPACITY} bytes");
            return out;
        }
        let text = scientific.as_bytes();
        let (mantissa, exponent) = match text.iter().position(|&byte| byte == b'e') {
            Some(e) => (
                text.get(..e).unwrap_or_default(),
                text.get(e + 1..).unwrap_or_default(),
            ),
            None => (text, &b"0"[..]),
        };
        let mut digits = [b'0'; DIGITS];
        for (slot, &digit) in digits
            .iter_mut()
            .zip(mantissa.iter().filter(|byte| byte.is_ascii_digit()))
        {
            *slot = digit;
        }
        let exponent: i32 = std::str::from_utf8(exponent)
            .ok()
            .and_then(|exponent| exponent.parse().ok())
            .unwrap_or(0);

        if (-4..17).contains(&exponent) {
            if let Some(int_len) = usize::try_from(exponent).ok().map(|exponent| exponent + 1) {
                // 1 to 17 digits before the point.
                let (int_part, fraction) = digits.split_at(int_len.min(DIGITS));
                out.push_bytes(int_part);
                out.push_fraction(fraction);
            } else {
                // 0.000ddd: -exponent - 1 zeros after the point, then every digit.
                out.push_bytes(b"0.");
                for _ in 0..(-exponent - 1) {
                    out.push_bytes(b"0");
                }
                out.push_bytes(trim_trailing_zeros(&digits));
            }
        } else {
            let (first, fraction) = digits.split_at(1);
            out.push_bytes(first);
            out.push_fraction(fraction);
            out.push_bytes(if exponent < 0 { b"e-" } else { b"e+" });
            let magnitude = exponent.unsigned_abs();
            if magnitude < 10 {
                out.push_bytes(b"0");
            }
            let mut exponent_digits = itoa::Buffer::new();
            out.push_bytes(exponent_digits.format(magnitude).as_bytes());
        }
        out
    }

    /// The formatted text.
    pub(super) fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    /// The formatted text; it is always ASCII.
    fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// `.<fraction>` with trailing zeros removed, or nothing if no digit is left.
    fn push_fraction(&mut self, fraction: &[u8]) {
        let fraction = trim_trailing_zeros(fraction);
        if !fraction.is_empty() {
            self.push_bytes(b".");
            self.push_bytes(fraction);
        }
    }

    /// Appends as much of `bytes` as fits.
    fn push_bytes(&mut self, bytes: &[u8]) {
        let free = self.bytes.get_mut(self.len..).unwrap_or_default();
        let n = bytes.len().min(free.len());
        if let (Some(dst), Some(src)) = (free.get_mut(..n), bytes.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.len += n;
    }
}

impl std::fmt::Write for DoubleText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.len + s.len() > CAPACITY {
            return Err(std::fmt::Error);
        }
        self.push_bytes(s.as_bytes());
        Ok(())
    }
}

fn trim_trailing_zeros(digits: &[u8]) -> &[u8] {
    let kept = digits
        .iter()
        .rposition(|&digit| digit != b'0')
        .map_or(0, |last| last + 1);
    digits.get(..kept).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::format_double;

    /// Expected values are C's `printf("%.17g")` (glibc), as Redis 7.0 prints them.
    #[test]
    fn matches_printf_percent_17g() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (3.0, "3"),
            (-2.5, "-2.5"),
            (0.1, "0.10000000000000001"),
            (1.0 / 3.0, "0.33333333333333331"),
            (123_456.789, "123456.789"),
            (1e-4, "0.0001"),
            (0.000_123_45, "0.00012344999999999999"),
            (1e-5, "1.0000000000000001e-05"),
            (1.5e-7, "1.4999999999999999e-07"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (1e20, "1e+20"),
            (9_223_372_036_854_775_808.0, "9.2233720368547758e+18"),
            (1_000_000_000_000_000.2, "1000000000000000.2"),
            (5e-324, "4.9406564584124654e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (-f64::MAX, "-1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (1e100, "1e+100"),
            (6.022_140_76e23, "6.0221407599999999e+23"),
            (-123.456e-10, "-1.23456e-08"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for &(value, expected) in cases {
            assert_eq!(format_double(value), expected, "formatting {value:e}");
        }
    }

    #[test]
    fn ties_round_to_even_like_glibc() {
        // Both are exact in binary and sit exactly halfway at the 17th digit.
        assert_eq!(format_double(1e15 + 0.25), "1000000000000000.2");
        assert_eq!(format_double(1e15 + 0.75), "1000000000000000.8");
    }

    #[test]
    fn output_reads_back_as_the_same_double() {
        for value in [
            0.1,
            1.0 / 3.0,
            2.0f64.sqrt(),
            1e-300,
            6.02214076e23,
            -123.456e-10,
        ] {
            let text = format_double(value);
            assert_eq!(text.parse::<f64>().ok(), Some(value), "{text}");
        }
    }
}
