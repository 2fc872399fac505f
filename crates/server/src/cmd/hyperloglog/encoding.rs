//! Redis 7.0's HyperLogLog representation, byte for byte, so that an HLL moves between forkless
//! and redis-server (RDB files, DUMP payloads, GET/SET) and both estimate the same cardinality.
//!
//! # Layout
//!
//! A string of a 16-byte header followed by the registers:
//!
//! ```text
//! +------+---+-----+----------+--------------------------------+
//! | HYLL | E | N/U | Cardinal.| registers ...                  |
//! +------+---+-----+----------+--------------------------------+
//!   4      1   3     8 (little endian; bit 63 set = stale)
//! ```
//!
//! `E` is 0 for dense, 1 for sparse. 16384 registers of 6 bits each, addressed by the low 14
//! bits of the element's MurmurHash64A (seed `0xadc83b19`); a register keeps the longest run of
//! zeros (plus one) seen in the remaining 50 bits.
//!
//! * **Dense**: 12288 bytes, register `n` at bit `6n`, least significant bits first.
//! * **Sparse**: run-length opcodes: `00xxxxxx` ZERO (1-64 zero registers), `01xxxxxx
//!   yyyyyyyy` XZERO (1-16384 zero registers), `1vvvvvxx` VAL (1-4 registers of value 1-32).
//!   A sparse HLL turns dense when a register needs more than 32, or when an update would grow
//!   it past `hll-sparse-max-bytes`.
//!
//! Updates follow Redis's `hllSparseSet` step by step (split the opcode covering the register,
//! then merge equal VAL neighbours among the next few opcodes), because the exact bytes are
//! visible to clients through GET and DUMP. Every read is bounds-checked: a corrupt string gives
//! [`Corrupt`], never a panic.

/// The header's size in bytes.
pub(crate) const HDR_SIZE: usize = 16;
/// Number of registers.
pub(crate) const REGISTERS: usize = 1 << P;
/// A dense HLL's size in bytes.
pub(crate) const DENSE_SIZE: usize = HDR_SIZE + (REGISTERS * BITS).div_ceil(8);

/// Register index bits.
const P: usize = 14;
/// Hash bits left for the run of zeros.
const Q: usize = 64 - P;
const BITS: usize = 6;
const REGISTER_MAX: u8 = (1 << BITS) - 1;
const SEED: u64 = 0xadc8_3b19;

const ENCODING_OFFSET: usize = 4;
const CARD_OFFSET: usize = 8;
const DENSE: u8 = 0;
const SPARSE: u8 = 1;

const SPARSE_VAL_MAX_VALUE: u8 = 32;
const SPARSE_VAL_MAX_LEN: usize = 4;
const SPARSE_ZERO_MAX_LEN: usize = 64;
const SPARSE_XZERO_MAX_LEN: usize = 16384;

/// 0.5 / ln(2), the estimator's constant for an infinite number of registers.
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

/// The HLL's representation is corrupt (a sparse HLL whose opcodes do not cover exactly the
/// registers): Redis's `-INVALIDOBJ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corrupt;

/// How the registers are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Dense,
    Sparse,
}

impl Encoding {
    /// The name PFDEBUG ENCODING replies.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Encoding::Dense => "dense",
            Encoding::Sparse => "sparse",
        }
    }
}

/// Redis's `isHLLObjectOrReply` minus the type check: the encoding of `bytes` if they have an
/// HLL's header (and a dense one has exactly the dense size), else None.
pub(crate) fn check(bytes: &[u8]) -> Option<Encoding> {
    if bytes.len() < HDR_SIZE || bytes.get(..4) != Some(b"HYLL") {
        return None;
    }
    match bytes.get(ENCODING_OFFSET) {
        Some(&DENSE) if bytes.len() == DENSE_SIZE => Some(Encoding::Dense),
        Some(&SPARSE) => Some(Encoding::Sparse),
        _ => None,
    }
}

/// A new, empty HLL: sparse, its registers one XZERO opcode, the cached cardinality 0 (valid).
pub(crate) fn new_sparse() -> Vec<u8> {
    let mut bytes = vec![0u8; HDR_SIZE];
    if let Some(magic) = bytes.get_mut(..4) {
        magic.copy_from_slice(b"HYLL");
    }
    if let Some(encoding) = bytes.get_mut(ENCODING_OFFSET) {
        *encoding = SPARSE;
    }
    let mut left = REGISTERS;
    while left > 0 {
        let run = left.min(SPARSE_XZERO_MAX_LEN);
        bytes.extend_from_slice(&xzero(run));
        left -= run;
    }
    bytes
}

/// The cached cardinality, if the header says it is current.
pub(crate) fn cached_cardinality(bytes: &[u8]) -> Option<u64> {
    let card: [u8; 8] = bytes.get(CARD_OFFSET..HDR_SIZE)?.try_into().ok()?;
    let card = u64::from_le_bytes(card);
    (card >> 63 == 0).then_some(card)
}

/// Stores `card` as the cached cardinality.
pub(crate) fn set_cached_cardinality(bytes: &mut [u8], card: u64) {
    if let Some(slot) = bytes.get_mut(CARD_OFFSET..HDR_SIZE) {
        slot.copy_from_slice(&card.to_le_bytes());
    }
}

/// Marks the cached cardinality stale (the most significant bit of its last byte).
pub(crate) fn invalidate_cache(bytes: &mut [u8]) {
    if let Some(last) = bytes.get_mut(HDR_SIZE - 1) {
        *last |= 0x80;
    }
}

/// MurmurHash2, 64-bit version, as Redis has it: 8-byte words read little endian.
pub(crate) fn murmur64a(data: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    // Redis passes the length as an `int` and multiplies in 64 bits.
    let len = data.len() as u64;
    let mut h = seed ^ len.wrapping_mul(M);
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let mut k = word
            .iter()
            .rev()
            .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (idx, byte) in tail.iter().enumerate() {
            h ^= u64::from(*byte) << (8 * idx);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// Redis's `hllPatLen`: the register `element` hashes to, and the length of the run of zeros
/// (plus one) after the index bits, at most Q + 1.
pub(crate) fn pattern(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, SEED);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    let rest = (hash >> P) | (1u64 << Q);
    // `rest` has bit Q set, so the count is at most Q + 1 = 51.
    let count = rest.trailing_zeros() as u8 + 1;
    (index, count)
}

// ---------------------------------------------------------------------------------------------
// Dense registers.

/// Register `index` of dense `registers` (the bytes after the header). A byte past the end
/// reads as zero, as Redis reads the string's terminating NUL.
pub(crate) fn dense_get(registers: &[u8], index: usize) -> u8 {
    let byte = index * BITS / 8;
    let shift = (index * BITS) & 7;
    let low = registers.get(byte).copied().unwrap_or(0);
    let high = registers.get(byte + 1).copied().unwrap_or(0);
    let value = (u16::from(low) >> shift) | (u16::from(high) << (8 - shift));
    (value & u16::from(REGISTER_MAX)) as u8
}

/// Sets register `index` of dense `registers` to `value` (at most 63).
pub(crate) fn dense_set(registers: &mut [u8], index: usize, value: u8) {
    let byte = index * BITS / 8;
    let shift = (index * BITS) & 7;
    let value = u16::from(value & REGISTER_MAX) << shift;
    let mask = u16::from(REGISTER_MAX) << shift;
    if let Some(low) = registers.get_mut(byte) {
        *low = (*low & !(mask as u8)) | value as u8;
    }
    if let Some(high) = registers.get_mut(byte + 1) {
        *high = (*high & !((mask >> 8) as u8)) | (value >> 8) as u8;
    }
}

/// Raises register `index` to `count` if it is lower; returns true if and only if it changed.
fn dense_raise(registers: &mut [u8], index: usize, count: u8) -> bool {
    if count > dense_get(registers, index) {
        dense_set(registers, index, count);
        true
    } else {
        false
    }
}

// ---------------------------------------------------------------------------------------------
// Sparse opcodes.

/// One decoded sparse opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `run` zero registers, in a one-byte (ZERO) or two-byte (XZERO) opcode.
    Zero { run: usize, long: bool },
    /// `run` registers of `value`.
    Val { value: u8, run: usize },
}

impl Op {
    fn size(self) -> usize {
        match self {
            Op::Zero { long: true, .. } => 2,
            Op::Zero { long: false, .. } | Op::Val { .. } => 1,
        }
    }

    fn run(self) -> usize {
        match self {
            Op::Zero { run, .. } | Op::Val { run, .. } => run,
        }
    }
}

fn is_val(byte: u8) -> bool {
    byte & 0x80 != 0
}

/// The opcode at `pos` of `bytes`. The second byte of an XZERO cut off by the end reads as
/// zero, as in Redis (its terminating NUL).
fn op_at(bytes: &[u8], pos: usize) -> Option<Op> {
    let byte = *bytes.get(pos)?;
    Some(match byte & 0xc0 {
        0x00 => Op::Zero {
            run: usize::from(byte & 0x3f) + 1,
            long: false,
        },
        0x40 => Op::Zero {
            run: ((usize::from(byte & 0x3f) << 8)
                | usize::from(bytes.get(pos + 1).copied().unwrap_or(0)))
                + 1,
            long: true,
        },
        _ => Op::Val {
            value: ((byte >> 2) & 0x1f) + 1,
            run: usize::from(byte & 0x3) + 1,
        },
    })
}

fn val(value: u8, run: usize) -> u8 {
    0x80 | ((value - 1) << 2) | (run - 1) as u8
}

fn zero(run: usize) -> u8 {
    (run - 1) as u8
}

fn xzero(run: usize) -> [u8; 2] {
    let encoded = run - 1;
    [0x40 | (encoded >> 8) as u8, (encoded & 0xff) as u8]
}

/// Appends a zero run of `run` registers (1..=16384) as one opcode.
fn push_zero_run(seq: &mut Vec<u8>, run: usize) {
    if run > SPARSE_ZERO_MAX_LEN {
        seq.extend_from_slice(&xzero(run));
    } else {
        seq.push(zero(run));
    }
}

/// Calls `each(first_register, op)` for every opcode of the sparse `bytes` (header included),
/// and fails unless the opcodes cover exactly the 16384 registers (stopping at the first one
/// that would go past them, as Redis does).
fn for_each_op(bytes: &[u8], mut each: impl FnMut(usize, Op)) -> Result<(), Corrupt> {
    let mut pos = HDR_SIZE;
    let mut idx = 0;
    while let Some(op) = op_at(bytes, pos) {
        if idx + op.run() > REGISTERS {
            return Err(Corrupt);
        }
        each(idx, op);
        idx += op.run();
        pos += op.size();
    }
    if idx == REGISTERS {
        Ok(())
    } else {
        Err(Corrupt)
    }
}

/// Redis's `hllSparseToDense`: the dense form of the sparse HLL `bytes`, keeping the header's
/// cached cardinality.
pub(crate) fn sparse_to_dense(bytes: &[u8]) -> Result<Vec<u8>, Corrupt> {
    let mut dense = vec![0u8; DENSE_SIZE];
    let header = bytes.get(..HDR_SIZE).ok_or(Corrupt)?;
    let (head, registers) = dense.split_at_mut(HDR_SIZE);
    head.copy_from_slice(header);
    if let Some(encoding) = head.get_mut(ENCODING_OFFSET) {
        *encoding = DENSE;
    }
    for_each_op(bytes, |first, op| {
        if let Op::Val { value, run } = op {
            for idx in first..first + run {
                dense_set(registers, idx, value);
            }
        }
    })?;
    Ok(dense)
}

/// Register `index` of the HLL `bytes`, whatever its encoding.
pub(crate) fn register(bytes: &[u8], index: usize) -> Result<u8, Corrupt> {
    match check(bytes) {
        Some(Encoding::Dense) => Ok(dense_get(bytes.get(HDR_SIZE..).ok_or(Corrupt)?, index)),
        Some(Encoding::Sparse) => {
            let mut pos = HDR_SIZE;
            let mut first = 0;
            while let Some(op) = op_at(bytes, pos) {
                if index < first + op.run() {
                    return Ok(match op {
                        Op::Zero { .. } => 0,
                        Op::Val { value, .. } => value,
                    });
                }
                first += op.run();
                pos += op.size();
            }
            Err(Corrupt)
        }
        None => Err(Corrupt),
    }
}

/// What [`set_register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Set {
    /// The register already held at least the count.
    Unchanged,
    /// The register was raised.
    Raised,
}

/// Redis's `hllSparseSet` / `hllDenseSet`: raises register `index` of the HLL `bytes` to
/// `count` if it is lower, promoting a sparse HLL to dense when the value or the new size
/// needs it. Invalidates the cached cardinality on a change.
pub(crate) fn set_register(
    bytes: &mut Vec<u8>,
    index: usize,
    count: u8,
    sparse_max_bytes: u64,
) -> Result<Set, Corrupt> {
    let changed = match check(bytes) {
        Some(Encoding::Dense) => {
            let registers = bytes.get_mut(HDR_SIZE..).ok_or(Corrupt)?;
            dense_raise(registers, index, count)
        }
        Some(Encoding::Sparse) => sparse_set(bytes, index, count, sparse_max_bytes)?,
        None => return Err(Corrupt),
    };
    if changed {
        invalidate_cache(bytes);
        Ok(Set::Raised)
    } else {
        Ok(Set::Unchanged)
    }
}

/// Adds `element` to the HLL `bytes`: [`pattern`] then [`set_register`].
pub(crate) fn add(
    bytes: &mut Vec<u8>,
    element: &[u8],
    sparse_max_bytes: u64,
) -> Result<Set, Corrupt> {
    let (index, count) = pattern(element);
    set_register(bytes, index, count, sparse_max_bytes)
}

/// The sparse half of [`set_register`]; returns true if and only if the register changed.
fn sparse_set(
    bytes: &mut Vec<u8>,
    index: usize,
    count: u8,
    sparse_max_bytes: u64,
) -> Result<bool, Corrupt> {
    if count > SPARSE_VAL_MAX_VALUE {
        return promote(bytes, index, count);
    }
    // Step 1: find the opcode covering `index`, with the first register it covers and the
    // opcode before it.
    let mut pos = HDR_SIZE;
    let mut first = 0;
    let mut prev = None;
    let op = loop {
        let op = op_at(bytes, pos).ok_or(Corrupt)?;
        if index < first + op.run() {
            break op;
        }
        prev = Some(pos);
        pos += op.size();
        first += op.run();
    };
    let last = first + op.run() - 1;

    // Step 2: the cases that change the opcode in place, else the replacement sequence.
    match op {
        Op::Val { value, .. } if value >= count => return Ok(false),
        Op::Val { run: 1, .. }
        | Op::Zero {
            run: 1,
            long: false,
        } => {
            if let Some(byte) = bytes.get_mut(pos) {
                *byte = val(count, 1);
            }
        }
        _ => {
            let mut seq = Vec::with_capacity(5);
            match op {
                Op::Zero { .. } => {
                    if index != first {
                        push_zero_run(&mut seq, index - first);
                    }
                    seq.push(val(count, 1));
                    if index != last {
                        push_zero_run(&mut seq, last - index);
                    }
                }
                Op::Val { value, .. } => {
                    if index != first {
                        seq.push(val(value, index - first));
                    }
                    seq.push(val(count, 1));
                    if index != last {
                        seq.push(val(value, last - index));
                    }
                }
            }
            // Step 3: put the sequence in the opcode's place, unless that grows the HLL past
            // its sparse limit.
            let old_end = (pos + op.size()).min(bytes.len());
            let new_len = bytes.len() - (old_end - pos) + seq.len();
            if new_len > bytes.len() && new_len as u64 > sparse_max_bytes {
                return promote(bytes, index, count);
            }
            bytes.splice(pos..old_end, seq);
        }
    }

    // Step 4: merge equal VAL neighbours, scanning up to five opcodes from the one before.
    let mut pos = prev.unwrap_or(HDR_SIZE);
    let mut scan = 5;
    while pos < bytes.len() && scan > 0 {
        scan -= 1;
        let Some(op) = op_at(bytes, pos) else { break };
        let Op::Val { value, run } = op else {
            pos += op.size();
            continue;
        };
        if let Some(Op::Val {
            value: next_value,
            run: next_run,
        }) = bytes
            .get(pos + 1)
            .filter(|byte| is_val(**byte))
            .and_then(|_| op_at(bytes, pos + 1))
        {
            if next_value == value && run + next_run <= SPARSE_VAL_MAX_LEN {
                if let Some(byte) = bytes.get_mut(pos + 1) {
                    *byte = val(value, run + next_run);
                }
                bytes.remove(pos);
                continue;
            }
        }
        pos += 1;
    }
    Ok(true)
}

/// Turns the sparse HLL `bytes` dense and raises register `index` to `count` there.
fn promote(bytes: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, Corrupt> {
    let mut dense = sparse_to_dense(bytes)?;
    if let Some(registers) = dense.get_mut(HDR_SIZE..) {
        dense_raise(registers, index, count);
    }
    *bytes = dense;
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// Counting and merging.

/// Raises every register of `max` (one byte per register) to the HLL `bytes`'s: Redis's
/// `hllMerge`. The caller has checked the header with [`check`].
pub(crate) fn merge_into(max: &mut [u8; REGISTERS], bytes: &[u8]) -> Result<(), Corrupt> {
    match check(bytes) {
        Some(Encoding::Dense) => {
            let registers = bytes.get(HDR_SIZE..).ok_or(Corrupt)?;
            for (idx, slot) in max.iter_mut().enumerate() {
                *slot = (*slot).max(dense_get(registers, idx));
            }
            Ok(())
        }
        Some(Encoding::Sparse) => for_each_op(bytes, |first, op| {
            if let Op::Val { value, run } = op {
                for slot in max.iter_mut().skip(first).take(run) {
                    *slot = (*slot).max(value);
                }
            }
        }),
        None => Err(Corrupt),
    }
}

/// The estimated cardinality of the HLL `bytes` (dense or sparse), ignoring the cache: Redis's
/// `hllCount`.
pub(crate) fn count(bytes: &[u8]) -> Result<u64, Corrupt> {
    let mut histogram = [0u32; 64];
    match check(bytes) {
        Some(Encoding::Dense) => {
            let registers = bytes.get(HDR_SIZE..).ok_or(Corrupt)?;
            for idx in 0..REGISTERS {
                if let Some(slot) = histogram.get_mut(usize::from(dense_get(registers, idx))) {
                    *slot += 1;
                }
            }
        }
        Some(Encoding::Sparse) => for_each_op(bytes, |_, op| {
            let value = match op {
                Op::Zero { .. } => 0,
                Op::Val { value, .. } => usize::from(value),
            };
            if let Some(slot) = histogram.get_mut(value) {
                *slot += op.run() as u32;
            }
        })?,
        None => return Err(Corrupt),
    }
    Ok(estimate(&histogram))
}

/// The estimated cardinality of registers held one per byte (PFCOUNT of several keys).
pub(crate) fn count_raw(registers: &[u8; REGISTERS]) -> u64 {
    let mut histogram = [0u32; 64];
    for value in registers {
        if let Some(slot) = histogram.get_mut(usize::from(*value)) {
            *slot += 1;
        }
    }
    estimate(&histogram)
}

/// Otmar Ertl's estimator ("New cardinality estimation algorithms for HyperLogLog sketches",
/// arXiv:1702.01284) over the histogram of register values, computed in the same order of
/// floating-point operations as Redis so that the result is identical.
fn estimate(histogram: &[u32; 64]) -> u64 {
    let m = REGISTERS as f64;
    let at = |idx: usize| f64::from(histogram.get(idx).copied().unwrap_or(0));
    let mut z = m * tau((m - at(Q + 1)) / m);
    for idx in (1..=Q).rev() {
        z += at(idx);
        z *= 0.5;
    }
    z += m * sigma(at(0) / m);
    let estimate = (ALPHA_INF * m * m / z).round();
    // The estimate is finite and non-negative (at most about 2^64 for a register array of all
    // 51s); the conversion saturates like Redis's cast on x86-64 for the impossible rest.
    estimate as u64
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let z_prime = z;
        z += x * y;
        y += y;
        if z_prime == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let z_prime = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if z_prime == z {
            return z / 3.0;
        }
    }
}

/// PFDEBUG DECODE's text for a sparse HLL: `z:N` (ZERO), `Z:N` (XZERO), `v:VALUE,N` (VAL).
pub(crate) fn decode_sparse(bytes: &[u8]) -> String {
    let mut text = String::new();
    let mut pos = HDR_SIZE;
    while let Some(op) = op_at(bytes, pos) {
        if !text.is_empty() {
            text.push(' ');
        }
        match op {
            Op::Zero { run, long: false } => text.push_str(&format!("z:{run}")),
            Op::Zero { run, long: true } => text.push_str(&format!("Z:{run}")),
            Op::Val { value, run } => text.push_str(&format!("v:{value},{run}")),
        }
        pos += op.size();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The registers of an HLL, decoded whatever its encoding.
    fn registers(bytes: &[u8]) -> Vec<u8> {
        let mut max = [0u8; REGISTERS];
        merge_into(&mut max, bytes).unwrap();
        max.to_vec()
    }

    #[test]
    fn murmur_matches_reference_values() {
        // Computed with Redis's C MurmurHash64A and the HLL seed.
        assert_eq!(murmur64a(b"", SEED), 0xd8df_ea65_85bc_9732);
        assert_eq!(murmur64a(b"a", SEED), 0x53d2_470a_9b43_b1a7);
        assert_eq!(murmur64a(b"hello", SEED), 0x0f65_6f01_eecf_e400);
        assert_eq!(murmur64a(b"0123456789abcdef!", SEED), 0xb917_c99b_031f_7674);
    }

    #[test]
    fn dense_registers_round_trip_without_touching_neighbours() {
        let mut regs = vec![0u8; DENSE_SIZE - HDR_SIZE];
        let mut expected = vec![0u8; REGISTERS];
        let mut seed = 12345u64;
        for _ in 0..3 {
            for (idx, slot) in expected.iter_mut().enumerate() {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let value = (seed >> 33) as u8 & REGISTER_MAX;
                *slot = value;
                dense_set(&mut regs, idx, value);
            }
            for (idx, value) in expected.iter().enumerate() {
                assert_eq!(dense_get(&regs, idx), *value, "register {idx}");
            }
        }
    }

    #[test]
    fn new_hll_is_two_xzero_opcodes_and_counts_zero() {
        let hll = new_sparse();
        assert_eq!(hll.len(), HDR_SIZE + 2);
        assert_eq!(decode_sparse(&hll), "Z:16384");
        assert_eq!(check(&hll), Some(Encoding::Sparse));
        assert_eq!(cached_cardinality(&hll), Some(0));
        assert_eq!(count(&hll), Ok(0));
    }

    #[test]
    fn sparse_updates_split_and_merge_as_redis() {
        let mut hll = new_sparse();
        set_register(&mut hll, 0, 3, 3000).unwrap();
        assert_eq!(decode_sparse(&hll), "v:3,1 Z:16383");
        set_register(&mut hll, 1, 3, 3000).unwrap();
        assert_eq!(decode_sparse(&hll), "v:3,2 Z:16382");
        set_register(&mut hll, 100, 2, 3000).unwrap();
        assert_eq!(decode_sparse(&hll), "v:3,2 Z:98 v:2,1 Z:16283");
        assert_eq!(set_register(&mut hll, 100, 1, 3000), Ok(Set::Unchanged));
        assert_eq!(register(&hll, 1), Ok(3));
        assert_eq!(register(&hll, 99), Ok(0));
        assert_eq!(register(&hll, 100), Ok(2));
        assert_eq!(register(&hll, REGISTERS - 1), Ok(0));
        assert_eq!(register(&hll, REGISTERS), Err(Corrupt));
        assert_eq!(cached_cardinality(&hll), None);
        // A value above 32 promotes to dense.
        set_register(&mut hll, 7, 40, 3000).unwrap();
        assert_eq!(check(&hll), Some(Encoding::Dense));
        let regs = registers(&hll);
        assert_eq!(&regs[..3], &[3, 3, 0]);
        assert_eq!(regs[7], 40);
        assert_eq!(regs[100], 2);
    }

    #[test]
    fn sparse_promotes_past_the_size_limit() {
        let mut hll = new_sparse();
        let mut n = 0u64;
        while check(&hll) == Some(Encoding::Sparse) {
            add(&mut hll, &n.to_le_bytes(), 100).unwrap();
            assert!(check(&hll) == Some(Encoding::Dense) || hll.len() <= 100);
            n += 1;
        }
        assert_eq!(hll.len(), DENSE_SIZE);
    }

    #[test]
    fn sparse_and_dense_estimate_alike_and_within_error() {
        let mut sparse = new_sparse();
        let mut dense = sparse_to_dense(&new_sparse()).unwrap();
        for n in 0u64..20_000 {
            add(&mut sparse, &n.to_le_bytes(), 3000).unwrap();
            add(&mut dense, &n.to_le_bytes(), 3000).unwrap();
            if n == 999 {
                assert_eq!(check(&sparse), Some(Encoding::Sparse));
                assert_eq!(count(&sparse), count(&dense));
                let est = count(&dense).unwrap();
                assert!(est.abs_diff(1000) < 50, "{est}");
            }
        }
        assert_eq!(registers(&sparse), registers(&dense));
        let est = count(&dense).unwrap();
        assert!(est.abs_diff(20_000) < 20_000 * 5 / 100, "{est}");
    }

    #[test]
    fn truncated_or_overlong_sparse_is_corrupt() {
        let mut hll = new_sparse();
        hll.pop();
        assert_eq!(count(&hll), Err(Corrupt));
        let mut hll = new_sparse();
        hll.push(0x00);
        assert_eq!(count(&hll), Err(Corrupt));
        assert_eq!(sparse_to_dense(&hll), Err(Corrupt));
        let mut hll = new_sparse();
        hll.truncate(HDR_SIZE);
        assert_eq!(add(&mut hll, b"x", 3000), Err(Corrupt));
    }

    proptest! {
        /// Random bytes after a valid sparse or dense header never panic any operation.
        #[test]
        fn random_registers_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..200),
            dense in any::<bool>(),
            elements in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..20),
        ) {
            let mut hll = new_sparse();
            hll.truncate(HDR_SIZE);
            if dense {
                hll[ENCODING_OFFSET] = DENSE;
                let mut body = body.clone();
                body.resize(DENSE_SIZE - HDR_SIZE, 0x5a);
                hll.extend_from_slice(&body);
            } else {
                hll.extend_from_slice(&body);
            }
            let _ = count(&hll);
            let _ = decode_sparse(&hll);
            let _ = sparse_to_dense(&hll);
            let mut max = [0u8; REGISTERS];
            let _ = merge_into(&mut max, &hll);
            let _ = count_raw(&max);
            for element in &elements {
                if add(&mut hll, element, 3000).is_err() {
                    break;
                }
            }
            let _ = count(&hll);
        }
    }
}
