//! Bitmap commands: SETBIT GETBIT BITCOUNT BITPOS BITOP BITFIELD BITFIELD_RO.
//!
//! A bitmap is a string value (Redis has no bitmap type): bit 0 is the most significant bit of
//! the first byte, and a string reads as if zero-padded on the right. Each command follows
//! Redis 7.0's `bitops.c` in the order of its checks, since that order is what a client sees:
//! SETBIT parses its offset before its bit, BITCOUNT and BITPOS answer a missing key before
//! looking at their range arguments, BITFIELD parses every operation before touching the key.
//!
//! Bit offsets are bounded by `proto-max-bulk-len` (in bytes), as in Redis, so no argument can
//! make the server allocate more than a string it would accept from a client. Writes go through
//! the same write guard as APPEND and SETRANGE, and a write that would leave every byte as it was
//! (SETBIT of a bit already so, BITFIELD SET of the same value) does not touch the entry, so its
//! version and WATCH stay as they were, as Redis does not signal such a key as modified.
//!
//! The bit arithmetic (population count, first-bit search, bitfields and their overflow rules)
//! lives in `bitmap/bits.rs`.

mod bits;

use crate::notify::{GENERIC, STRING, notify};
use std::sync::atomic::Ordering;

use bytes::Bytes;
use forkless_storage::{CompactBytes, Value, WriteGuard};

use self::bits::{Fit, OverflowMode, Overlay};
use super::meta::{Gate, KeySpec, flags};
use super::string::string_bytes;
use super::{Command, Ctx, eq_ignore_case, parse_i64, reply};

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "setbit", arity: 4, flags: flags!(WRITE, DENYOOM), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "bitmap", "slow"], summary: "Sets or clears the bit at offset in the string value stored at key", since: "2.2.0", group: "bitmap", handler: setbit },
    Command { name: "getbit", arity: 3, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "bitmap", "fast"], summary: "Returns the bit value at offset in the string value stored at key", since: "2.2.0", group: "bitmap", handler: getbit },
    Command { name: "bitcount", arity: -2, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "bitmap", "slow"], summary: "Count set bits in a string", since: "2.6.0", group: "bitmap", handler: bitcount },
    Command { name: "bitpos", arity: -3, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "bitmap", "slow"], summary: "Find first bit set or clear in a string", since: "2.8.7", group: "bitmap", handler: bitpos },
    Command { name: "bitop", arity: -4, flags: flags!(WRITE, DENYOOM), keys: KeySpec::new(2, -1, 1), gate: Gate::Shared, categories: &["write", "bitmap", "slow"], summary: "Perform bitwise operations between strings", since: "2.6.0", group: "bitmap", handler: bitop },
    Command { name: "bitfield", arity: -2, flags: flags!(WRITE, DENYOOM), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "bitmap", "slow"], summary: "Perform arbitrary bitfield integer operations on strings", since: "3.2.0", group: "bitmap", handler: bitfield },
    Command { name: "bitfield_ro", arity: -2, flags: flags!(READONLY, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "bitmap", "fast"], summary: "Perform arbitrary bitfield integer operations on strings. Read-only variant of BITFIELD", since: "6.0.0", group: "bitmap", handler: bitfield_ro },
];

const BAD_OFFSET: &str = "ERR bit offset is not an integer or out of range";
const BAD_BIT: &str = "ERR bit is not an integer or out of range";
const BAD_BITPOS_BIT: &str = "ERR The bit argument must be 1 or 0.";
const BAD_BITFIELD_TYPE: &str = "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";
const BAD_OVERFLOW: &str = "ERR Invalid OVERFLOW type specified";
const BITOP_NOT_ONE_KEY: &str = "ERR BITOP NOT must be called with a single source key.";
const RO_ONLY_GET: &str = "ERR BITFIELD_RO only supports the GET subcommand";

/// An error reply's text.
type Reply<T> = Result<T, &'static str>;

/// Redis's `getBitOffsetFromArgument`: a bit offset, non-negative and addressing a byte below
/// `proto-max-bulk-len`. With `field_bits` (BITFIELD), `#N` means `N * field_bits`; the
/// product wraps as Redis's does, and then fails the range check like any other offset.
fn parse_bit_offset(ctx: &Ctx<'_>, arg: &[u8], field_bits: Option<u32>) -> Reply<u64> {
    let (digits, multiplier) = match (arg.split_first(), field_bits) {
        (Some((b'#', rest)), Some(bits)) => (rest, i64::from(bits)),
        _ => (arg, 1),
    };
    let offset = parse_i64(digits)
        .ok_or(BAD_OFFSET)?
        .wrapping_mul(multiplier);
    let max_bytes = ctx
        .server
        .tunables
        .proto_max_bulk_len
        .load(Ordering::Relaxed);
    u64::try_from(offset)
        .ok()
        .filter(|offset| offset >> 3 < max_bytes)
        .ok_or(BAD_OFFSET)
}

/// The string at `key` for reading, counting a keyspace hit or miss as Redis's `lookupKeyRead`
/// does: None if absent, WRONGTYPE for another type.
fn read_string(ctx: &Ctx<'_>, key: &[u8]) -> Reply<Option<CompactBytes>> {
    let found = {
        let guard = ctx.db().read(&[key], ctx.now_ms);
        guard
            .get(key)
            .map(|entry| string_bytes(entry.value()).cloned())
    };
    ctx.hit_or_miss(found.is_some(), key);
    found.map(|bytes| bytes.ok_or(reply::WRONGTYPE)).transpose()
}

fn reply_int(ctx: &mut Ctx<'_>, value: Reply<i64>) {
    match value {
        Ok(n) => ctx.out.int(n),
        Err(msg) => ctx.out.error(msg),
    }
}

fn len_i64(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

/// Applies `changes` (byte index, new byte) to the string at `key`, first growing it with zero
/// bytes to `min_len`, or creates the key: Redis's `lookupStringForBitCommand` followed by the
/// writes. Touches nothing when the string is already long enough and nothing changes. The
/// caller has checked the type and bounded `min_len` by `proto-max-bulk-len`.
fn write_bytes(guard: &mut WriteGuard<'_>, key: &[u8], min_len: usize, changes: &[(u64, u8)]) {
    let apply = |buf: &mut [u8]| {
        for (idx, byte) in changes {
            if let Some(slot) = usize::try_from(*idx).ok().and_then(|idx| buf.get_mut(idx)) {
                *slot = *byte;
            }
        }
    };
    match guard.get_mut(key) {
        Some(mut entry) => {
            let len = string_bytes(entry.value()).map_or(0, |bytes| bytes.len());
            if len >= min_len && changes.is_empty() {
                return;
            }
            if let Value::String(bytes) = entry.value_mut() {
                bytes.edit(|buf| {
                    if buf.len() < min_len {
                        buf.resize(min_len, 0);
                    }
                    apply(buf);
                });
            }
        }
        None => {
            let mut buf = vec![0u8; min_len];
            apply(&mut buf);
            guard.set(key, Value::String(buf.into()), None);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SETBIT and GETBIT.

fn setbit(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, offset, value] = argv else {
        return;
    };
    let old = parse_bit_offset(ctx, offset, None).and_then(|offset| {
        let on = match parse_i64(value) {
            Some(0) => false,
            Some(1) => true,
            _ => return Err(BAD_BIT),
        };
        set_bit(ctx, key, offset, on)
    });
    reply_int(ctx, old.map(i64::from));
}

/// Sets bit `offset` of the string at `key` to `on`, growing or creating it, and returns the
/// bit's old value.
fn set_bit(ctx: &Ctx<'_>, key: &[u8], offset: u64, on: bool) -> Reply<bool> {
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let byte_idx = offset >> 3;
    let mask = 1u8 << (7 - (offset & 7));
    let old_byte = match guard.get(key) {
        Some(entry) => {
            let bytes = string_bytes(entry.value()).ok_or(reply::WRONGTYPE)?;
            usize::try_from(byte_idx)
                .ok()
                .and_then(|idx| bytes.get(idx))
                .copied()
                .unwrap_or(0)
        }
        None => 0,
    };
    let new_byte = if on {
        old_byte | mask
    } else {
        old_byte & !mask
    };
    let min_len = usize::try_from(byte_idx + 1).map_err(|_| BAD_OFFSET)?;
    let changes = if new_byte == old_byte {
        Vec::new()
    } else {
        vec![(byte_idx, new_byte)]
    };
    write_bytes(&mut guard, key, min_len, &changes);
    notify(ctx, STRING, "setbit", key);
    Ok(old_byte & mask != 0)
}

fn getbit(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, offset] = argv else { return };
    let bit = parse_bit_offset(ctx, offset, None).and_then(|offset| {
        let value = read_string(ctx, key)?.unwrap_or_default();
        let byte = usize::try_from(offset >> 3)
            .ok()
            .and_then(|idx| value.get(idx))
            .copied()
            .unwrap_or(0);
        Ok(i64::from((byte >> (7 - (offset & 7))) & 1))
    });
    reply_int(ctx, bit);
}

// ---------------------------------------------------------------------------------------------
// BITCOUNT and BITPOS.

/// A range of a string in bytes, with the bits of its first and last byte that lie outside a
/// BIT range (Redis's `first_byte_neg_mask` and `last_byte_neg_mask`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ByteRange {
    start: i64,
    end: i64,
    first_mask: u8,
    last_mask: u8,
}

/// Clamps `start..=end` (negative counts from the end; bits when `in_bits`) to a string of
/// `len` bytes, as BITCOUNT and BITPOS do. The result is empty when `start > end`.
fn clamp_range(len: usize, start: i64, end: i64, in_bits: bool) -> ByteRange {
    let mut total = len_i64(len);
    if in_bits {
        total = total.saturating_mul(8);
    }
    let mut start = if start < 0 { total + start } else { start }.max(0);
    let mut end = if end < 0 { total + end } else { end }.max(0);
    if end >= total {
        end = total - 1;
    }
    let mut range = ByteRange {
        start,
        end,
        first_mask: 0,
        last_mask: 0,
    };
    if in_bits && start <= end {
        range.first_mask = !((1u16 << (8 - (start & 7))) - 1) as u8;
        range.last_mask = ((1u16 << (7 - (end & 7))) - 1) as u8;
        start >>= 3;
        end >>= 3;
        range.start = start;
        range.end = end;
    }
    range
}

/// Parses an optional BIT|BYTE argument: true for BIT.
fn parse_unit(arg: Option<&Bytes>) -> Reply<bool> {
    match arg {
        None => Ok(false),
        Some(arg) if eq_ignore_case(arg, "bit") => Ok(true),
        Some(arg) if eq_ignore_case(arg, "byte") => Ok(false),
        Some(_) => Err(reply::SYNTAX),
    }
}

/// Byte `idx` of `bytes` (the range computations keep it in bounds).
fn byte_at(bytes: &[u8], idx: i64) -> u8 {
    usize::try_from(idx)
        .ok()
        .and_then(|idx| bytes.get(idx))
        .copied()
        .unwrap_or(0)
}

/// `bytes[start..start + len]`, or empty.
fn slice(bytes: &[u8], start: i64, len: i64) -> &[u8] {
    let (Ok(start), Ok(len)) = (usize::try_from(start), usize::try_from(len)) else {
        return &[];
    };
    bytes
        .get(start..start.saturating_add(len))
        .unwrap_or_default()
}

fn bitcount(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let count = bitcount_reply(ctx, argv);
    reply_int(ctx, count);
}

/// BITCOUNT key [start end [BIT|BYTE]].
fn bitcount_reply(ctx: &Ctx<'_>, argv: &[Bytes]) -> Reply<i64> {
    let Some(key) = argv.get(1) else {
        return Ok(0);
    };
    let Some(value) = read_string(ctx, key)? else {
        return Ok(0);
    };
    let range = match argv {
        [_, _] => ByteRange {
            start: 0,
            end: len_i64(value.len()) - 1,
            first_mask: 0,
            last_mask: 0,
        },
        [_, _, start, end, unit @ ..] if unit.len() <= 1 => {
            let start = parse_i64(start).ok_or(reply::NOT_INTEGER)?;
            let end = parse_i64(end).ok_or(reply::NOT_INTEGER)?;
            if start < 0 && end < 0 && start > end {
                return Ok(0);
            }
            clamp_range(value.len(), start, end, parse_unit(unit.first())?)
        }
        _ => return Err(reply::SYNTAX),
    };
    if range.start > range.end {
        return Ok(0);
    }
    let count = bits::popcount(slice(&value, range.start, range.end - range.start + 1));
    let outside = [
        byte_at(&value, range.start) & range.first_mask,
        byte_at(&value, range.end) & range.last_mask,
    ];
    let count = count - bits::popcount(&outside);
    Ok(i64::try_from(count).unwrap_or(i64::MAX))
}

fn bitpos(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let pos = bitpos_reply(ctx, argv);
    reply_int(ctx, pos);
}

/// BITPOS key bit [start [end [BIT|BYTE]]].
fn bitpos_reply(ctx: &Ctx<'_>, argv: &[Bytes]) -> Reply<i64> {
    let (Some(key), Some(bit)) = (argv.get(1), argv.get(2)) else {
        return Err(reply::SYNTAX);
    };
    let bit = match parse_i64(bit).ok_or(reply::NOT_INTEGER)? {
        0 => false,
        1 => true,
        _ => return Err(BAD_BITPOS_BIT),
    };
    let Some(value) = read_string(ctx, key)? else {
        // A missing key is an infinite run of zero bits.
        return Ok(if bit { -1 } else { 0 });
    };
    let (range, end_given) = match argv {
        [_, _, _] => (
            ByteRange {
                start: 0,
                end: len_i64(value.len()) - 1,
                first_mask: 0,
                last_mask: 0,
            },
            false,
        ),
        [_, _, _, start, rest @ ..] if rest.len() <= 2 => {
            let start = parse_i64(start).ok_or(reply::NOT_INTEGER)?;
            let in_bits = parse_unit(rest.get(1))?;
            let end = match rest.first() {
                Some(end) => Some(parse_i64(end).ok_or(reply::NOT_INTEGER)?),
                None => None,
            };
            let total = len_i64(value.len());
            let end_value = end.unwrap_or(if in_bits { total * 8 + 7 } else { total - 1 });
            (
                clamp_range(value.len(), start, end_value, in_bits),
                end.is_some(),
            )
        }
        _ => return Err(reply::SYNTAX),
    };
    if range.start > range.end {
        return Ok(-1);
    }
    Ok(find_bit(&value, range, bit, end_given))
}

/// The search of Redis's `bitposCommand` over a non-empty range: the first byte alone when part
/// of it lies outside a BIT range, then the whole bytes, then the last byte alone.
fn find_bit(value: &[u8], range: ByteRange, bit: bool, end_given: bool) -> i64 {
    let ByteRange {
        mut start,
        end,
        first_mask,
        last_mask,
    } = range;
    let mut n_bytes = end - start + 1;
    let masked = |byte: u8, mask: u8| if bit { byte & !mask } else { byte | mask };
    let pos = 'found: {
        if first_mask != 0 {
            let mut byte = masked(byte_at(value, start), first_mask);
            if last_mask != 0 && n_bytes == 1 {
                byte = masked(byte, last_mask);
            }
            let pos = bits::first_bit(&[byte], bit);
            if n_bytes == 1 || (pos != -1 && pos != 8) {
                break 'found pos;
            }
            start += 1;
            n_bytes -= 1;
        }
        let whole = n_bytes - i64::from(last_mask != 0);
        if whole > 0 {
            let pos = bits::first_bit(slice(value, start, whole), bit);
            if n_bytes == whole || (pos != -1 && pos != whole * 8) {
                break 'found pos;
            }
            start += whole;
            n_bytes -= whole;
        }
        bits::first_bit(&[masked(byte_at(value, end), last_mask)], bit)
    };
    // Looking for a 0 in an explicit range that holds none: the bit found is the first one past
    // the range, which the caller did not ask about.
    if end_given && !bit && pos == n_bytes * 8 {
        return -1;
    }
    if pos == -1 { -1 } else { pos + start * 8 }
}

// ---------------------------------------------------------------------------------------------
// BITOP.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BitOp {
    And,
    Or,
    Xor,
    Not,
}

fn bitop(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let len = bitop_reply(ctx, argv);
    reply_int(ctx, len);
}

/// BITOP op destkey key [key ...]: stores the result (or deletes `destkey` when every source
/// is empty or missing) and returns its length.
fn bitop_reply(ctx: &Ctx<'_>, argv: &[Bytes]) -> Reply<i64> {
    let [_, op, dest, sources @ ..] = argv else {
        return Err(reply::SYNTAX);
    };
    let op = [
        ("and", BitOp::And),
        ("or", BitOp::Or),
        ("xor", BitOp::Xor),
        ("not", BitOp::Not),
    ]
    .into_iter()
    .find_map(|(name, op_kind)| eq_ignore_case(op, name).then_some(op_kind))
    .ok_or(reply::SYNTAX)?;
    if op == BitOp::Not && sources.len() != 1 {
        return Err(BITOP_NOT_ONE_KEY);
    }
    let mut keys: Vec<&[u8]> = vec![dest];
    keys.extend(sources.iter().map(AsRef::as_ref));
    let mut guard = ctx.db().write(&keys, ctx.now_ms);
    let mut values = Vec::with_capacity(sources.len());
    for source in sources {
        let value = guard
            .get(source)
            .map(|entry| string_bytes(entry.value()).cloned().ok_or(reply::WRONGTYPE));
        ctx.hit_or_miss(value.is_some(), source);
        values.push(value.transpose()?.unwrap_or_default());
    }
    let result = combine(op, &values);
    let len = len_i64(result.len());
    if result.is_empty() {
        if guard.remove(dest) {
            notify(ctx, GENERIC, "del", dest);
        }
    } else {
        guard.set(dest, Value::String(result.into()), None);
        notify(ctx, STRING, "set", dest);
    }
    Ok(len)
}

/// The bitwise combination of `values`, as long as the longest; shorter ones count as
/// zero-padded.
fn combine(op: BitOp, values: &[CompactBytes]) -> Vec<u8> {
    let max_len = values.iter().map(|value| value.len()).max().unwrap_or(0);
    let Some((first, rest)) = values.split_first() else {
        return Vec::new();
    };
    let mut result = first.to_vec();
    result.resize(max_len, 0);
    match op {
        BitOp::Not => result.iter_mut().for_each(|byte| *byte = !*byte),
        BitOp::And => {
            for value in rest {
                for (idx, out) in result.iter_mut().enumerate() {
                    *out &= value.get(idx).copied().unwrap_or(0);
                }
            }
        }
        BitOp::Or | BitOp::Xor => {
            for value in rest {
                for (out, byte) in result.iter_mut().zip(value.iter()) {
                    if op == BitOp::Or {
                        *out |= byte;
                    } else {
                        *out ^= byte;
                    }
                }
            }
        }
    }
    result
}

// ---------------------------------------------------------------------------------------------
// BITFIELD and BITFIELD_RO.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldOpKind {
    Get,
    Set(i64),
    IncrBy(i64),
}

/// One BITFIELD operation, parsed.
#[derive(Debug, Clone, Copy)]
struct FieldOp {
    kind: FieldOpKind,
    offset: u64,
    bits: u32,
    signed: bool,
    overflow: OverflowMode,
}

/// Redis's `getBitfieldTypeFromArgument`: `i1`..`i64` or `u1`..`u63`.
fn parse_field_type(arg: &[u8]) -> Reply<(bool, u32)> {
    let (signed, digits) = match arg.split_first() {
        Some((b'i', rest)) => (true, rest),
        Some((b'u', rest)) => (false, rest),
        _ => return Err(BAD_BITFIELD_TYPE),
    };
    let max = if signed { 64 } else { 63 };
    parse_i64(digits)
        .filter(|bits| (1..=max).contains(bits))
        .and_then(|bits| u32::try_from(bits).ok())
        .map(|bits| (signed, bits))
        .ok_or(BAD_BITFIELD_TYPE)
}

/// Parses BITFIELD's operations in order, each taking the OVERFLOW mode in force where it
/// appears.
fn parse_field_ops(ctx: &Ctx<'_>, args: &[Bytes]) -> Reply<Vec<FieldOp>> {
    let mut ops = Vec::new();
    let mut overflow = OverflowMode::Wrap;
    let mut rest = args;
    while let Some((word, tail)) = rest.split_first() {
        if eq_ignore_case(word, "overflow") && !tail.is_empty() {
            let (mode, tail) = tail.split_first().ok_or(reply::SYNTAX)?;
            overflow = [
                ("wrap", OverflowMode::Wrap),
                ("sat", OverflowMode::Sat),
                ("fail", OverflowMode::Fail),
            ]
            .into_iter()
            .find_map(|(name, mode_kind)| eq_ignore_case(mode, name).then_some(mode_kind))
            .ok_or(BAD_OVERFLOW)?;
            rest = tail;
            continue;
        }
        let needed = if eq_ignore_case(word, "get") {
            2
        } else if eq_ignore_case(word, "set") || eq_ignore_case(word, "incrby") {
            3
        } else {
            return Err(reply::SYNTAX);
        };
        let operands = tail.get(..needed).ok_or(reply::SYNTAX)?;
        let [field_type, offset, value @ ..] = operands else {
            return Err(reply::SYNTAX);
        };
        let (signed, bits) = parse_field_type(field_type)?;
        let offset = parse_bit_offset(ctx, offset, Some(bits))?;
        let kind = match value.first() {
            None => FieldOpKind::Get,
            Some(value) => {
                let value = parse_i64(value).ok_or(reply::NOT_INTEGER)?;
                if eq_ignore_case(word, "set") {
                    FieldOpKind::Set(value)
                } else {
                    FieldOpKind::IncrBy(value)
                }
            }
        };
        ops.push(FieldOp {
            kind,
            offset,
            bits,
            signed,
            overflow,
        });
        rest = tail.get(needed..).unwrap_or_default();
    }
    Ok(ops)
}

fn bitfield(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    bitfield_generic(ctx, argv, false);
}

fn bitfield_ro(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    bitfield_generic(ctx, argv, true);
}

fn bitfield_generic(ctx: &mut Ctx<'_>, argv: &[Bytes], read_only: bool) {
    let [_, key, args @ ..] = argv else { return };
    let results = parse_field_ops(ctx, args).and_then(|ops| {
        if ops.iter().all(|op| op.kind == FieldOpKind::Get) {
            let value = read_string(ctx, key)?.unwrap_or_default();
            let overlay = Overlay::new(&value);
            Ok(ops.iter().map(|op| Some(get_field(&overlay, op))).collect())
        } else if read_only {
            Err(RO_ONLY_GET)
        } else {
            write_fields(ctx, key, &ops)
        }
    });
    match results {
        Ok(results) => {
            ctx.out.array_len(results.len());
            for result in results {
                match result {
                    Some(n) => ctx.out.int(n),
                    None => ctx.out.null(),
                }
            }
        }
        Err(msg) => ctx.out.error(msg),
    }
}

fn get_field(overlay: &Overlay<'_>, op: &FieldOp) -> i64 {
    if op.signed {
        overlay.get_signed(op.offset, op.bits)
    } else {
        // An unsigned field has at most 63 bits, so it fits.
        overlay.get_unsigned(op.offset, op.bits) as i64
    }
}

/// Runs BITFIELD operations of which at least one writes: the string grows to hold the
/// farthest field written, and each operation sees the ones before it.
fn write_fields(ctx: &Ctx<'_>, key: &[u8], ops: &[FieldOp]) -> Reply<Vec<Option<i64>>> {
    let highest_bit = ops
        .iter()
        .filter(|op| op.kind != FieldOpKind::Get)
        .map(|op| op.offset + u64::from(op.bits) - 1)
        .max()
        .unwrap_or(0);
    let min_len = usize::try_from((highest_bit >> 3) + 1).map_err(|_| BAD_OFFSET)?;
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let value = match guard.get(key) {
        Some(entry) => string_bytes(entry.value()).ok_or(reply::WRONGTYPE)?.clone(),
        None => CompactBytes::new(),
    };
    let mut overlay = Overlay::new(&value);
    let results: Vec<Option<i64>> = ops.iter().map(|op| apply_field(&mut overlay, op)).collect();
    let changes = overlay.into_changes();
    write_bytes(&mut guard, key, min_len, &changes);
    // Redis counts the SET and INCRBY operations that OVERFLOW FAIL did not refuse.
    let wrote = ops
        .iter()
        .zip(&results)
        .any(|(op, result)| op.kind != FieldOpKind::Get && result.is_some());
    if wrote {
        notify(ctx, STRING, "setbit", key);
    }
    Ok(results)
}

/// One BITFIELD operation on `overlay`: GET's value, SET's old value, INCRBY's new value, or
/// None when OVERFLOW FAIL refused the write.
fn apply_field(overlay: &mut Overlay<'_>, op: &FieldOp) -> Option<i64> {
    let (value, incr, returns_new) = match op.kind {
        FieldOpKind::Get => return Some(get_field(overlay, op)),
        FieldOpKind::Set(value) => (value, 0, false),
        FieldOpKind::IncrBy(incr) => (0, incr, true),
    };
    if op.signed {
        let old = overlay.get_signed(op.offset, op.bits);
        let base = if returns_new { old } else { value };
        let new = match bits::signed_fit(base, incr, op.bits, op.overflow) {
            Fit::Fits(new) | Fit::Overflowed(Some(new)) => new,
            Fit::Overflowed(None) => return None,
        };
        overlay.set_unsigned(op.offset, op.bits, new as u64);
        Some(if returns_new { new } else { old })
    } else {
        let old = overlay.get_unsigned(op.offset, op.bits);
        let base = if returns_new { old } else { value as u64 };
        let new = match bits::unsigned_fit(base, incr, op.bits, op.overflow) {
            Fit::Fits(new) | Fit::Overflowed(Some(new)) => new,
            Fit::Overflowed(None) => return None,
        };
        overlay.set_unsigned(op.offset, op.bits, new);
        // Both fit in 63 bits.
        Some(if returns_new { new as i64 } else { old as i64 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_clamp_like_bitcount() {
        let range = clamp_range(3, 0, -1, false);
        assert_eq!((range.start, range.end), (0, 2));
        let range = clamp_range(3, 5, 20, true);
        assert_eq!((range.start, range.end), (0, 2));
        assert_eq!(range.first_mask, 0b1111_1000);
        assert_eq!(range.last_mask, 0b0000_0111);
        let range = clamp_range(3, 5, 30, true);
        assert_eq!((range.end, range.last_mask), (2, 0));
        let range = clamp_range(0, 0, -1, false);
        assert!(range.start > range.end);
        let range = clamp_range(3, i64::MIN, i64::MAX, true);
        assert_eq!((range.start, range.end), (0, 2));
    }

    #[test]
    fn bitpos_finds_bits_inside_bit_ranges() {
        let value = [0xffu8, 0xf0, 0x00];
        let find = |bit, start, end| {
            let range = clamp_range(value.len(), start, end, true);
            find_bit(&value, range, bit, true)
        };
        assert_eq!(find(false, 0, -1), 12);
        assert_eq!(find(true, 9, 15), 9);
        assert_eq!(find(true, 12, 23), -1);
        assert_eq!(find(false, 0, 11), -1);
        assert_eq!(find(false, 7, 12), 12);
    }

    #[test]
    fn combine_pads_short_strings_with_zeros() {
        let values = [
            CompactBytes::from_slice(b"\xff\x0f"),
            CompactBytes::from_slice(b"\x01"),
        ];
        assert_eq!(combine(BitOp::And, &values), b"\x01\x00");
        assert_eq!(combine(BitOp::Or, &values), b"\xff\x0f");
        assert_eq!(combine(BitOp::Xor, &values), b"\xfe\x0f");
        assert_eq!(combine(BitOp::Not, &values[1..]), b"\xfe");
    }

    #[test]
    fn field_types_follow_redis() {
        assert_eq!(parse_field_type(b"i64"), Ok((true, 64)));
        assert_eq!(parse_field_type(b"u63"), Ok((false, 63)));
        for bad in [&b"u64"[..], b"i65", b"i0", b"u", b"x8", b"", b"i08", b"I8"] {
            assert_eq!(parse_field_type(bad), Err(BAD_BITFIELD_TYPE), "{bad:?}");
        }
    }
}
