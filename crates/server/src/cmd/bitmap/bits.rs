//! Bit arithmetic on byte strings, as Redis 7.0's `bitops.c` defines it: bit 0 is the most
//! significant bit of the first byte, and a string reads as if followed by infinitely many zero
//! bytes.

use std::collections::BTreeMap;

/// The number of set bits in `bytes`.
pub(crate) fn popcount(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let mut count: u64 = 0;
    for word in &mut words {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(word);
        count += u64::from(u64::from_ne_bytes(buf).count_ones());
    }
    count
        + words
            .remainder()
            .iter()
            .map(|byte| u64::from(byte.count_ones()))
            .sum::<u64>()
}

/// Redis's `redisBitpos`: the position of the first bit equal to `bit` in `bytes`. When there is
/// none, -1 for a 1 bit, and for a 0 bit the position just past the end (the string counts as
/// zero-padded on the right).
pub(crate) fn first_bit(bytes: &[u8], bit: bool) -> i64 {
    let skip_byte = if bit { 0 } else { u8::MAX };
    let skip_word = if bit { 0 } else { u64::MAX };
    let mut words = bytes.chunks_exact(8);
    let mut skipped: usize = 0;
    for word in &mut words {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(word);
        if u64::from_be_bytes(buf) != skip_word {
            break;
        }
        skipped += 8;
    }
    for (idx, &byte) in bytes.iter().enumerate().skip(skipped) {
        if byte != skip_byte {
            let within = if bit {
                byte.leading_zeros()
            } else {
                (!byte).leading_zeros()
            };
            return bit_index(idx) + i64::from(within);
        }
    }
    if bit { -1 } else { bit_index(bytes.len()) }
}

/// The index of the first bit of byte `idx`.
fn bit_index(idx: usize) -> i64 {
    i64::try_from(idx).unwrap_or(i64::MAX / 8).saturating_mul(8)
}

/// How BITFIELD treats a value that does not fit its type (Redis's `BFOVERFLOW_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverflowMode {
    Wrap,
    Sat,
    Fail,
}

/// What storing `value + incr` in a bitfield yields: the value itself when it fits, or the
/// overflow mode's answer (None for FAIL: nothing is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fit<T> {
    Fits(T),
    Overflowed(Option<T>),
}

/// Redis's `checkUnsignedBitfieldOverflow` for an unsigned field of `bits` (1..=63) bits, and
/// the value to store.
pub(crate) fn unsigned_fit(value: u64, incr: i64, bits: u32, mode: OverflowMode) -> Fit<u64> {
    let max = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    // The same two's-complement conversions as the C code: both may wrap, and are only
    // compared once `value <= max` holds.
    let max_incr = max.wrapping_sub(value) as i64;
    let min_incr = 0u64.wrapping_sub(value) as i64;
    let wrapped = || {
        let sum = value.wrapping_add(incr as u64);
        if bits >= 64 { sum } else { sum & max }
    };
    let saturated = if value > max || (incr > 0 && incr > max_incr) {
        max
    } else if incr < 0 && incr < min_incr {
        0
    } else {
        return Fit::Fits(value.wrapping_add(incr as u64));
    };
    Fit::Overflowed(match mode {
        OverflowMode::Wrap => Some(wrapped()),
        OverflowMode::Sat => Some(saturated),
        OverflowMode::Fail => None,
    })
}

/// Redis's `checkSignedBitfieldOverflow` for a signed field of `bits` (1..=64) bits, and the
/// value to store.
pub(crate) fn signed_fit(value: i64, incr: i64, bits: u32, mode: OverflowMode) -> Fit<i64> {
    let max = if bits >= 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let max_incr = (max as u64).wrapping_sub(value as u64) as i64;
    let min_incr = min.wrapping_sub(value);
    let wrapped = || {
        let mut sum = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let msb = 1u64 << (bits - 1);
            let mask = u64::MAX << bits;
            if sum & msb != 0 {
                sum |= mask;
            } else {
                sum &= !mask;
            }
        }
        sum as i64
    };
    let saturated = if value > max
        || (bits != 64 && incr > max_incr)
        || (value >= 0 && incr > 0 && incr > max_incr)
    {
        max
    } else if value < min
        || (bits != 64 && incr < min_incr)
        || (value < 0 && incr < 0 && incr < min_incr)
    {
        min
    } else {
        return Fit::Fits(value.wrapping_add(incr));
    };
    Fit::Overflowed(match mode {
        OverflowMode::Wrap => Some(wrapped()),
        OverflowMode::Sat => Some(saturated),
        OverflowMode::Fail => None,
    })
}

/// A string seen through the changes made to it so far, without copying it: BITFIELD runs all
/// its operations here first, so a command that changes nothing leaves the stored value (and
/// its version, and WATCH) untouched, and one that does copies the string at most once.
#[derive(Debug)]
pub(crate) struct Overlay<'a> {
    base: &'a [u8],
    changed: BTreeMap<u64, u8>,
}

impl<'a> Overlay<'a> {
    pub(crate) fn new(base: &'a [u8]) -> Overlay<'a> {
        Overlay {
            base,
            changed: BTreeMap::new(),
        }
    }

    /// Byte `idx`, 0 past the end of the string.
    fn byte(&self, idx: u64) -> u8 {
        if let Some(byte) = self.changed.get(&idx) {
            return *byte;
        }
        usize::try_from(idx)
            .ok()
            .and_then(|idx| self.base.get(idx))
            .copied()
            .unwrap_or(0)
    }

    fn set_byte(&mut self, idx: u64, byte: u8) {
        self.changed.insert(idx, byte);
    }

    /// Redis's `getUnsignedBitfield`: `bits` (1..=64) bits from bit `offset`, most significant
    /// first.
    pub(crate) fn get_unsigned(&self, offset: u64, bits: u32) -> u64 {
        let mut value = 0u64;
        for bit in offset..offset + u64::from(bits) {
            let byte = self.byte(bit >> 3);
            let bit_value = (byte >> (7 - (bit & 7))) & 1;
            value = (value << 1) | u64::from(bit_value);
        }
        value
    }

    /// Redis's `getSignedBitfield`: the field as a two's-complement integer of `bits` bits.
    pub(crate) fn get_signed(&self, offset: u64, bits: u32) -> i64 {
        let value = self.get_unsigned(offset, bits) as i64;
        if bits < 64 && value & (1i64 << (bits - 1)) != 0 {
            value | (-1i64 << bits)
        } else {
            value
        }
    }

    /// Redis's `setUnsignedBitfield`: stores the low `bits` bits of `value` from bit `offset`.
    pub(crate) fn set_unsigned(&mut self, offset: u64, bits: u32, value: u64) {
        for (idx, bit) in (offset..offset + u64::from(bits)).enumerate() {
            let shift = u64::from(bits) - 1 - idx as u64;
            let bit_value = u8::from((value >> shift) & 1 == 1);
            let byte_idx = bit >> 3;
            let pos = 7 - (bit & 7);
            let byte = (self.byte(byte_idx) & !(1 << pos)) | (bit_value << pos);
            self.set_byte(byte_idx, byte);
        }
    }

    /// The changed bytes that differ from the string, by index: empty when the operations left
    /// every byte as it was.
    pub(crate) fn into_changes(self) -> Vec<(u64, u8)> {
        let base = self.base;
        self.changed
            .into_iter()
            .filter(|(idx, byte)| {
                let old = usize::try_from(*idx)
                    .ok()
                    .and_then(|idx| base.get(idx))
                    .copied()
                    .unwrap_or(0);
                old != *byte
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popcount_counts_every_byte() {
        assert_eq!(popcount(b""), 0);
        assert_eq!(popcount(b"foobar"), 26);
        let long: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let expected: u64 = long.iter().map(|b| u64::from(b.count_ones())).sum();
        assert_eq!(popcount(&long), expected);
    }

    #[test]
    fn first_bit_follows_redis_bitpos() {
        assert_eq!(first_bit(b"", true), -1);
        assert_eq!(first_bit(b"", false), 0);
        assert_eq!(first_bit(&[0xff, 0xf0, 0x00], false), 12);
        assert_eq!(first_bit(&[0x00, 0x00, 0x01], true), 23);
        assert_eq!(first_bit(&[0xff; 3], false), 24);
        assert_eq!(first_bit(&[0x00; 3], true), -1);
        let mut long = vec![0u8; 100];
        long[77] = 0x10;
        assert_eq!(first_bit(&long, true), 77 * 8 + 3);
        let mut ones = vec![0xffu8; 100];
        ones[64] = 0xfe;
        assert_eq!(first_bit(&ones, false), 64 * 8 + 7);
    }

    #[test]
    fn overlay_reads_and_writes_fields_across_bytes() {
        let base = [0u8; 2];
        let mut overlay = Overlay::new(&base);
        // Redis's example: u5 = 23 at offset 7 gives 00000001|01110000.
        overlay.set_unsigned(7, 5, 23);
        assert_eq!(overlay.get_unsigned(7, 5), 23);
        assert_eq!(overlay.get_unsigned(0, 16), 0b0000_0001_0111_0000);
        assert_eq!(overlay.get_signed(7, 5), -9);
        overlay.set_unsigned(100, 64, u64::MAX);
        assert_eq!(overlay.get_signed(100, 64), -1);
        assert_eq!(overlay.get_unsigned(99, 1), 0);
        let changes = overlay.into_changes();
        assert_eq!(changes.first(), Some(&(0, 0x01)));
        assert_eq!(changes.get(1), Some(&(1, 0x70)));
    }

    #[test]
    fn unchanged_bytes_are_not_changes() {
        let base = [0xabu8, 0xcd];
        let mut overlay = Overlay::new(&base);
        overlay.set_unsigned(0, 16, 0xabcd);
        assert!(overlay.into_changes().is_empty());
    }

    #[test]
    fn unsigned_overflow_matches_redis() {
        use OverflowMode::{Fail, Sat, Wrap};
        assert_eq!(unsigned_fit(250, 5, 8, Wrap), Fit::Fits(255));
        assert_eq!(unsigned_fit(250, 10, 8, Wrap), Fit::Overflowed(Some(4)));
        assert_eq!(unsigned_fit(250, 10, 8, Sat), Fit::Overflowed(Some(255)));
        assert_eq!(unsigned_fit(250, 10, 8, Fail), Fit::Overflowed(None));
        assert_eq!(unsigned_fit(5, -10, 8, Sat), Fit::Overflowed(Some(0)));
        assert_eq!(unsigned_fit(5, -10, 8, Wrap), Fit::Overflowed(Some(251)));
        // SET of a negative value: the value itself is out of range.
        assert_eq!(
            unsigned_fit(u64::MAX, 0, 8, Sat),
            Fit::Overflowed(Some(255))
        );
        assert_eq!(
            unsigned_fit(u64::MAX, 0, 8, Wrap),
            Fit::Overflowed(Some(255))
        );
        assert_eq!(
            unsigned_fit(1, i64::MAX, 63, Sat),
            Fit::Overflowed(Some(i64::MAX as u64))
        );
    }

    #[test]
    fn signed_overflow_matches_redis() {
        use OverflowMode::{Fail, Sat, Wrap};
        assert_eq!(signed_fit(100, 27, 8, Wrap), Fit::Fits(127));
        assert_eq!(signed_fit(100, 28, 8, Wrap), Fit::Overflowed(Some(-128)));
        assert_eq!(signed_fit(100, 28, 8, Sat), Fit::Overflowed(Some(127)));
        assert_eq!(signed_fit(-100, -29, 8, Sat), Fit::Overflowed(Some(-128)));
        assert_eq!(signed_fit(-100, -29, 8, Wrap), Fit::Overflowed(Some(127)));
        assert_eq!(signed_fit(-100, -29, 8, Fail), Fit::Overflowed(None));
        assert_eq!(
            signed_fit(i64::MAX, 1, 64, Wrap),
            Fit::Overflowed(Some(i64::MIN))
        );
        assert_eq!(
            signed_fit(i64::MIN, -1, 64, Sat),
            Fit::Overflowed(Some(i64::MIN))
        );
        assert_eq!(signed_fit(-5, i64::MAX, 64, Sat), Fit::Fits(i64::MAX - 5));
        assert_eq!(signed_fit(200, 0, 8, Wrap), Fit::Overflowed(Some(-56)));
    }
}
