//! Linear hashing: which of a growing number of parts a hash belongs to, for the collections
//! cut into parts that a snapshot shares (`hash/table.rs`, the sorted set's member index).
//!
//! With `2^level + split` parts, a hash whose bits give `p = bits mod 2^level` belongs to part
//! `p`, or to part `bits mod 2^(level+1)` when `p < split` (that part was already split in this
//! round). Growing by one part splits part `split` alone: its entries whose bit `level` is set
//! move to the new part, appended at the end, and the others stay. So a collection grows one
//! part's worth of work at a time, never rehashing the whole. The bits are the hash's upper half:
//! hashbrown uses the lowest and highest bits inside a part, which this leaves varied.

/// The parts' count and split position.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LinearHash {
    level: u32,
    /// The next part to split; parts below it use `level + 1` bits.
    split: usize,
}

impl LinearHash {
    /// Number of parts (the collections keep their parts in a vector, which knows it too).
    #[cfg(test)]
    pub(crate) fn parts(self) -> usize {
        (1 << self.level) + self.split
    }

    /// The part of a hash: always below [`LinearHash::parts`].
    pub(crate) fn part_of(self, hash: u64) -> usize {
        let bits = hash >> 32;
        let mut part = bits & mask(self.level);
        if part < self.split as u64 {
            part = bits & mask(self.level + 1);
        }
        // Below 2^(level + 1), and a collection holds far fewer parts than usize::MAX.
        usize::try_from(part).unwrap_or(0)
    }

    /// The part the next split divides, and the test of a hash that moves to the new part.
    pub(crate) fn next_split(self) -> (usize, impl Fn(u64) -> bool) {
        let bit = 1u64 << (32 + self.level);
        (self.split, move |hash| hash & bit != 0)
    }

    /// Counts the split done: the part after the last one now exists.
    pub(crate) fn advance(&mut self) {
        self.split += 1;
        if self.split == 1 << self.level {
            self.level += 1;
            self.split = 0;
        }
    }
}

fn mask(bits: u32) -> u64 {
    (1 << bits) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every split sends each hash of the split part to that part or to the new one, and no
    /// other hash changes part.
    #[test]
    fn a_split_moves_only_the_split_parts_hashes_to_the_new_part() {
        let hashes: Vec<u64> = (0..2000u64)
            .map(|n| n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        let mut linear = LinearHash::default();
        for _ in 0..100 {
            let before: Vec<usize> = hashes.iter().map(|&h| linear.part_of(h)).collect();
            let (split, moves) = linear.next_split();
            let new_part = linear.parts();
            linear.advance();
            assert_eq!(linear.parts(), new_part + 1);
            for (&hash, &was) in hashes.iter().zip(&before) {
                let now = linear.part_of(hash);
                assert!(now < linear.parts());
                if was != split {
                    assert_eq!(now, was);
                } else if moves(hash) {
                    assert_eq!(now, new_part);
                } else {
                    assert_eq!(now, split);
                }
            }
        }
    }
}
