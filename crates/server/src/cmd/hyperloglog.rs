//! HyperLogLog commands: PFADD PFCOUNT PFMERGE PFSELFTEST PFDEBUG.
//!
//! An HLL is a string value in Redis's own representation (`hyperloglog/encoding.rs`), so GET,
//! SET, DUMP/RESTORE and RDB files carry it unchanged between forkless and redis-server. Each
//! command follows Redis 7.0's `hyperloglog.c` in what it checks and in what it writes:
//!
//! * PFADD changes the key only when a register rises (or the key is new), so a PFADD that
//!   changes nothing leaves the entry's version and WATCH alone.
//! * PFCOUNT of one key answers the cached cardinality from the header, or computes it and
//!   writes it back into the string (as Redis does, a change to the value from a read-only
//!   command); PFCOUNT of several keys caches nothing.
//! * PFMERGE writes the destination even if nothing changes; it turns dense when any input is.
//! * Sparse HLLs turn dense beyond `hll-sparse-max-bytes`.

mod encoding;

use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use forkless_storage::{CompactBytes, Value};

use self::encoding::{Corrupt, Encoding, REGISTERS};
use super::access::Reply;
use super::meta::{Gate, KeySpec, flags};
use super::string::string_bytes;
use super::{Command, Ctx, reply};

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "pfadd", arity: -2, flags: flags!(WRITE, DENYOOM, FAST), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "hyperloglog", "fast"], summary: "Adds the specified elements to the specified HyperLogLog.", since: "2.8.9", group: "hyperloglog", handler: pfadd },
    Command { name: "pfcount", arity: -2, flags: flags!(READONLY, MAY_REPLICATE), keys: KeySpec::ALL, gate: Gate::Shared, categories: &["read", "hyperloglog", "slow"], summary: "Return the approximated cardinality of the set(s) observed by the HyperLogLog at key(s).", since: "2.8.9", group: "hyperloglog", handler: pfcount },
    Command { name: "pfmerge", arity: -2, flags: flags!(WRITE, DENYOOM), keys: KeySpec::ALL, gate: Gate::Shared, categories: &["write", "hyperloglog", "slow"], summary: "Merge N different HyperLogLogs into a single one.", since: "2.8.9", group: "hyperloglog", handler: pfmerge },
    Command { name: "pfselftest", arity: 1, flags: flags!(ADMIN), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["hyperloglog", "admin", "slow", "dangerous"], summary: "An internal command for testing HyperLogLog values", since: "2.8.9", group: "hyperloglog", handler: pfselftest },
    Command { name: "pfdebug", arity: 3, flags: flags!(WRITE, DENYOOM, ADMIN), keys: KeySpec::new(2, 2, 1), gate: Gate::Shared, categories: &["write", "hyperloglog", "admin", "slow", "dangerous"], summary: "Internal commands for debugging HyperLogLog values", since: "2.8.9", group: "hyperloglog", handler: pfdebug },
];

const INVALIDOBJ: &str = "INVALIDOBJ Corrupted HLL object detected";
const NOT_HLL: &str = "WRONGTYPE Key is not a valid HyperLogLog string value.";

impl From<Corrupt> for &'static str {
    fn from(_: Corrupt) -> &'static str {
        INVALIDOBJ
    }
}

/// `hll-sparse-max-bytes`.
fn sparse_max_bytes(ctx: &Ctx<'_>) -> u64 {
    ctx.server
        .tunables
        .hll_sparse_max_bytes
        .load(Ordering::Relaxed)
}

/// Redis's `isHLLObjectOrReply`: the HLL's encoding, WRONGTYPE for another type, or the
/// "not a valid HyperLogLog" error for a string without an HLL's header.
fn hll_of(value: &Value) -> Reply<(&CompactBytes, Encoding)> {
    let bytes = string_bytes(value).ok_or(reply::WRONGTYPE)?;
    let encoding = encoding::check(bytes).ok_or(NOT_HLL)?;
    Ok((bytes, encoding))
}

/// Runs `change` on the bytes of the string `value` holds, in place when this is the only
/// reference to them.
fn edit_string<T>(value: &mut Value, change: impl FnOnce(&mut Vec<u8>) -> T) -> Option<T> {
    let Value::String(bytes) = value else {
        return None;
    };
    let mut result = None;
    bytes.edit(|buf| {
        let mut vec: Vec<u8> = std::mem::take(buf).into();
        result = Some(change(&mut vec));
        *buf = BytesMut::from(Bytes::from(vec));
    });
    result
}

/// Returns true if and only if adding some of `elements` would raise a register of the HLL
/// `bytes` (or the HLL is corrupt, which the update then reports).
fn would_change(bytes: &[u8], elements: &[Bytes]) -> bool {
    elements.iter().any(|element| {
        let (index, count) = encoding::pattern(element);
        encoding::register(bytes, index).map_or(true, |current| count > current)
    })
}

// ---------------------------------------------------------------------------------------------
// PFADD, PFCOUNT, PFMERGE.

fn pfadd(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key, elements @ ..] = argv else {
        return;
    };
    let max_bytes = sparse_max_bytes(ctx);
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let updated = match guard.get_mut(key) {
        None => {
            let mut hll = encoding::new_sparse();
            let added = elements
                .iter()
                .try_for_each(|element| encoding::add(&mut hll, element, max_bytes).map(drop));
            added.map_err(<&str>::from).map(|()| {
                // A new key counts as an update, which stales the cache even with no element.
                encoding::invalidate_cache(&mut hll);
                guard.set(key, Value::String(hll.into()), None);
                true
            })
        }
        Some(mut entry) => match hll_of(entry.value()) {
            Err(msg) => Err(msg),
            Ok((bytes, _)) if !would_change(bytes, elements) => Ok(false),
            Ok(_) => edit_string(entry.value_mut(), |hll| {
                let mut raised = false;
                for element in elements {
                    raised |= encoding::add(hll, element, max_bytes)? == encoding::Set::Raised;
                }
                Ok(raised)
            })
            .unwrap_or(Err(reply::WRONGTYPE)),
        },
    };
    drop(guard);
    match updated {
        Ok(updated) => ctx.out.int(i64::from(updated)),
        Err(msg) => ctx.out.error(msg),
    }
}

fn pfcount(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let result = match argv {
        [_, key] => count_one(ctx, key),
        _ => count_union(ctx, &ctx.key_args(argv)),
    };
    match result {
        Ok(card) => ctx.out.int(i64::try_from(card).unwrap_or(i64::MAX)),
        Err(msg) => ctx.out.error(msg),
    }
}

/// PFCOUNT of one key: the cached cardinality, or a fresh count that is then cached.
fn count_one(ctx: &Ctx<'_>, key: &[u8]) -> Reply<u64> {
    // PFCOUNT reads (Redis's lookupKeyRead): on a replica an expired key reads as missing and
    // stays until the primary's DEL, which the write guard below would not wait for.
    if ctx.server.replication.replica.is_replica()
        && ctx.db().read(&[key], ctx.now_ms).peek(key).is_none()
    {
        ctx.miss(key);
        return Ok(0);
    }
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let Some(mut entry) = guard.get_mut(key) else {
        ctx.miss(key);
        return Ok(0);
    };
    ctx.hit();
    let (bytes, _) = hll_of(entry.value())?;
    if let Some(card) = encoding::cached_cardinality(bytes) {
        return Ok(card);
    }
    let card = encoding::count(bytes)?;
    edit_string(entry.value_mut(), |hll| {
        encoding::set_cached_cardinality(hll, card);
    });
    Ok(card)
}

/// PFCOUNT of several keys: the cardinality of their union (a missing key is an empty HLL).
fn count_union(ctx: &Ctx<'_>, keys: &[&[u8]]) -> Reply<u64> {
    let guard = ctx.db().read(keys, ctx.now_ms);
    let mut registers = Box::new([0u8; REGISTERS]);
    for key in keys {
        let value = guard.get(key).map(forkless_storage::Entry::value);
        ctx.hit_or_miss(value.is_some(), key);
        if let Some(value) = value {
            let (bytes, _) = hll_of(value)?;
            encoding::merge_into(&mut registers, bytes)?;
        }
    }
    Ok(encoding::count_raw(&registers))
}

fn pfmerge(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let keys = ctx.key_args(argv);
    let max_bytes = sparse_max_bytes(ctx);
    let result = merge(ctx, &keys, max_bytes);
    match result {
        Ok(()) => ctx.out.ok(),
        Err(msg) => ctx.out.error(msg),
    }
}

/// PFMERGE: the union of every key's registers (the destination's included) written to the
/// destination, the first key.
fn merge(ctx: &Ctx<'_>, keys: &[&[u8]], max_bytes: u64) -> Reply<()> {
    let Some(dest) = keys.first() else {
        return Ok(());
    };
    let mut guard = ctx.db().write(keys, ctx.now_ms);
    let mut registers = Box::new([0u8; REGISTERS]);
    let mut use_dense = false;
    for key in keys {
        let value = guard.get(key).map(forkless_storage::Entry::value);
        ctx.hit_or_miss(value.is_some(), key);
        if let Some(value) = value {
            let (bytes, encoding) = hll_of(value)?;
            use_dense |= encoding == Encoding::Dense;
            encoding::merge_into(&mut registers, bytes)?;
        }
    }
    let mut hll = guard
        .get(dest)
        .and_then(|entry| string_bytes(entry.value()))
        .map_or_else(encoding::new_sparse, |bytes| bytes.to_vec());
    if use_dense && encoding::check(&hll) == Some(Encoding::Sparse) {
        hll = encoding::sparse_to_dense(&hll)?;
    }
    for (index, count) in registers.iter().enumerate() {
        if *count != 0 {
            // Redis ignores a failure here: every input was validated by the merge above.
            let _ = encoding::set_register(&mut hll, index, *count, max_bytes);
        }
    }
    encoding::invalidate_cache(&mut hll);
    let value = Value::String(hll.into());
    match guard.get_mut(dest) {
        Some(mut entry) => {
            entry.replace_value(value);
        }
        None => {
            guard.set(dest, value, None);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// PFSELFTEST and PFDEBUG.

/// How many elements PFSELFTEST adds. Redis adds ten million; a million checks the same
/// checkpoints but the last, in a tenth of the time a client waits for the reply.
const SELF_TEST_ELEMENTS: u64 = 1_000_000;

fn pfselftest(ctx: &mut Ctx<'_>, _argv: &[Bytes]) {
    match self_test(SELF_TEST_ELEMENTS, sparse_max_bytes(ctx)) {
        Ok(()) => ctx.out.ok(),
        Err(msg) => ctx.out.error(&msg),
    }
}

/// Redis's PFSELFTEST: dense registers keep what is written to them without disturbing their
/// neighbours, and a dense and a sparse HLL fed the same `n_elements` unique elements agree,
/// within a few standard errors of the truth, at every power of ten.
fn self_test(n_elements: u64, max_bytes: u64) -> Result<(), String> {
    let mut dense = vec![0u8; encoding::DENSE_SIZE];
    let mut expected = vec![0u8; REGISTERS];
    // xorshift64: random enough to exercise every bit pattern, and cheap.
    let mut state = rand::random::<u64>() | 1;
    for _ in 0..1000 {
        let registers = dense.get_mut(encoding::HDR_SIZE..).unwrap_or_default();
        for (idx, slot) in expected.iter_mut().enumerate() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let value = (state & 63) as u8;
            *slot = value;
            encoding::dense_set(registers, idx, value);
        }
        for (idx, value) in expected.iter().enumerate() {
            let got = encoding::dense_get(registers, idx);
            if got != *value {
                return Err(format!(
                    "TESTFAILED Register {idx} should be {value} but is {got}"
                ));
            }
        }
    }

    let mut dense = encoding::sparse_to_dense(&encoding::new_sparse()).map_err(|_| INVALIDOBJ)?;
    let mut sparse = encoding::new_sparse();
    let relative_error = 1.04 / (REGISTERS as f64).sqrt();
    let seed: u64 = rand::random();
    let mut checkpoint = 1u64;
    for j in 1..=n_elements {
        let element = (j ^ seed).to_le_bytes();
        encoding::add(&mut dense, &element, max_bytes).map_err(|_| INVALIDOBJ)?;
        encoding::add(&mut sparse, &element, max_bytes).map_err(|_| INVALIDOBJ)?;
        if j != checkpoint {
            continue;
        }
        if j < max_bytes / 2 && encoding::check(&sparse) != Some(Encoding::Sparse) {
            return Err("TESTFAILED sparse encoding not used".to_owned());
        }
        let estimate = encoding::count(&dense).map_err(|_| INVALIDOBJ)?;
        if encoding::count(&sparse) != Ok(estimate) {
            return Err("TESTFAILED dense/sparse disagree".to_owned());
        }
        let max_error = if j == 10 {
            1
        } else {
            (relative_error * 6.0 * checkpoint as f64).ceil() as u64
        };
        let error = checkpoint.abs_diff(estimate);
        if error > max_error {
            return Err(format!(
                "TESTFAILED Too big error. card:{checkpoint} abserr:{error}"
            ));
        }
        checkpoint *= 10;
    }
    Ok(())
}

/// A PFDEBUG subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Debug {
    GetReg,
    Decode,
    Encoding,
    ToDense,
}

fn pfdebug(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, sub, key] = argv else { return };
    let mut guard = ctx.db().write(&[key], ctx.now_ms);
    let Some(mut entry) = guard.get_mut(key) else {
        drop(guard);
        return ctx.out.error("ERR The specified key does not exist");
    };
    let encoding = match hll_of(entry.value()) {
        Ok((_, encoding)) => encoding,
        Err(msg) => {
            drop(guard);
            return ctx.out.error(msg);
        }
    };
    let debug = match sub.to_ascii_lowercase().as_slice() {
        b"getreg" => Debug::GetReg,
        b"decode" => Debug::Decode,
        b"encoding" => Debug::Encoding,
        b"todense" => Debug::ToDense,
        _ => {
            drop(guard);
            return ctx.out.error(&format!(
                "ERR Unknown PFDEBUG subcommand '{}'",
                String::from_utf8_lossy(sub)
            ));
        }
    };
    let converted =
        if matches!(debug, Debug::GetReg | Debug::ToDense) && encoding == Encoding::Sparse {
            let dense = string_bytes(entry.value())
                .ok_or(Corrupt)
                .and_then(|bytes| encoding::sparse_to_dense(bytes));
            match dense {
                Ok(dense) => {
                    entry.replace_value(Value::String(dense.into()));
                    true
                }
                Err(_) => {
                    drop(guard);
                    return ctx.out.error(INVALIDOBJ);
                }
            }
        } else {
            false
        };
    let bytes = string_bytes(entry.value()).cloned().unwrap_or_default();
    drop(guard);
    match debug {
        Debug::GetReg => {
            let registers = bytes.get(encoding::HDR_SIZE..).unwrap_or_default();
            ctx.out.array_len(REGISTERS);
            for idx in 0..REGISTERS {
                ctx.out.int(i64::from(encoding::dense_get(registers, idx)));
            }
        }
        Debug::Decode if encoding == Encoding::Sparse => {
            ctx.out.bulk(encoding::decode_sparse(&bytes).as_bytes());
        }
        Debug::Decode => ctx.out.error("ERR HLL encoding is not sparse"),
        Debug::Encoding => ctx.out.simple(encoding.name().as_bytes()),
        Debug::ToDense => ctx.out.int(i64::from(converted)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_test_passes() {
        assert_eq!(self_test(100_000, 3000), Ok(()));
    }
}
