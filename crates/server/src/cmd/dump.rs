//! DUMP and RESTORE, with Redis 7.0's payload (the value as an RDB file holds it, the RDB
//! version and a CRC-64: `forkless_snapshot::format::dump_payload` / `restore_payload`), so
//! payloads move between forkless and redis-server in both directions.
//!
//! Serializing and decoding happen outside any shard lock: DUMP copies the value out (O(1)) and
//! encodes it after releasing the lock, and RESTORE decodes the payload before locking the key.
//! RESTORE's checks still answer in Redis's order (BUSYKEY, then the TTL, then the payload),
//! since each is decided up front and reported under the lock.
//!
//! IDLETIME and FREQ set the key's access clock as Redis's `objectSetLRUOrLFU` does: the one
//! the maxmemory policy keeps counts, the other is ignored.

use crate::notify::{GENERIC, notify};
use bytes::Bytes;
use forkless_snapshot::format::{DumpError, EncodeOptions, dump_payload, restore_payload};
use forkless_storage::Value;

use super::meta::{Gate, KeySpec, flags};
use super::{Command, Ctx, eq_ignore_case, parse_i64, reply};

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "dump", arity: 2, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["keyspace", "read", "slow"], summary: "Return a serialized version of the value stored at the specified key.", since: "2.6.0", group: "generic", handler: dump },
    Command { name: "restore", arity: -4, flags: flags!(WRITE, DENYOOM), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["keyspace", "write", "slow", "dangerous"], summary: "Create a key using the provided serialized value, previously obtained using DUMP.", since: "2.6.0", group: "generic", handler: restore },
];

const BUSYKEY: &str = "BUSYKEY Target key name already exists.";
const BAD_TTL: &str = "ERR Invalid TTL value, must be >= 0";
const BAD_IDLETIME: &str = "ERR Invalid IDLETIME value, must be >= 0";
const BAD_FREQ: &str = "ERR Invalid FREQ value, must be >= 0 and <= 255";
const BAD_PAYLOAD: &str = "ERR DUMP payload version or checksum are wrong";
const BAD_DATA: &str = "ERR Bad data format";

fn dump(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, key] = argv else { return };
    let value = {
        let guard = ctx.db().read(&[key], ctx.now_ms);
        guard.get(key).map(|entry| entry.value().clone())
    };
    ctx.hit_or_miss(value.is_some(), key);
    let Some(value) = value else {
        return ctx.out.null();
    };
    let opts = EncodeOptions {
        compress_strings: ctx.server.config().rdbcompression,
    };
    let payload = dump_payload(&value, &opts);
    // The copy is freed here, outside the lock, whatever its size.
    drop(value);
    ctx.out.bulk(&payload);
}

/// RESTORE's options.
#[derive(Debug, Default)]
struct RestoreOptions {
    replace: bool,
    absolute_ttl: bool,
    idle_secs: Option<u64>,
    freq: Option<u8>,
}

/// Parses RESTORE's options as `restoreCommand` does: IDLETIME and FREQ exclude each other
/// (the second is a syntax error).
fn parse_options(args: &[Bytes]) -> Result<RestoreOptions, &'static str> {
    let mut opts = RestoreOptions::default();
    let (mut idle_given, mut freq_given) = (false, false);
    let mut rest = args;
    while let Some((word, tail)) = rest.split_first() {
        rest = tail;
        if eq_ignore_case(word, "replace") {
            opts.replace = true;
        } else if eq_ignore_case(word, "absttl") {
            opts.absolute_ttl = true;
        } else if eq_ignore_case(word, "idletime")
            && !freq_given
            && let Some((value, tail)) = rest.split_first()
        {
            let idle = parse_i64(value).ok_or(reply::NOT_INTEGER)?;
            opts.idle_secs = Some(u64::try_from(idle).map_err(|_| BAD_IDLETIME)?);
            idle_given = true;
            rest = tail;
        } else if eq_ignore_case(word, "freq")
            && !idle_given
            && let Some((value, tail)) = rest.split_first()
        {
            let freq = parse_i64(value).ok_or(reply::NOT_INTEGER)?;
            opts.freq = Some(u8::try_from(freq).map_err(|_| BAD_FREQ)?);
            freq_given = true;
            rest = tail;
        } else {
            return Err(reply::SYNTAX);
        }
    }
    Ok(opts)
}

/// RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency].
fn restore(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let [_, _, ttl, payload, args @ ..] = argv else {
        return;
    };
    let opts = match parse_options(args) {
        Ok(opts) => opts,
        Err(msg) => return ctx.out.error(msg),
    };
    let ttl = match parse_i64(ttl) {
        None => Err(reply::NOT_INTEGER),
        Some(ttl) if ttl < 0 => Err(BAD_TTL),
        Some(ttl) => Ok(ttl),
    };
    // Decoded before the key is locked; reported after the checks Redis makes first.
    let value = restore_payload(payload).map_err(|err| match err {
        DumpError::VersionOrChecksum => BAD_PAYLOAD,
        _ => BAD_DATA,
    });
    match restore_key(ctx, argv, &opts, ttl, value) {
        Ok(()) => ctx.out.ok(),
        Err(msg) => ctx.out.error(msg),
    }
}

/// RESTORE under the key's lock, the TTL and payload already checked: BUSYKEY first, then
/// their errors, as Redis orders them.
fn restore_key(
    ctx: &mut Ctx<'_>,
    argv: &[Bytes],
    opts: &RestoreOptions,
    ttl: Result<i64, &'static str>,
    value: Result<Value, &'static str>,
) -> Result<(), &'static str> {
    let now_ms = ctx.now_ms;
    let key: &[u8] = argv.get(1).map_or(&[], |key| &key[..]);
    let mut guard = ctx.db().write(&[key], now_ms);
    if !opts.replace && guard.contains(key) {
        return Err(BUSYKEY);
    }
    let ttl = ttl?;
    let value = value?;
    let expire_at_ms = match ttl {
        0 => None,
        ttl if opts.absolute_ttl => Some(ttl),
        ttl => Some(ttl.saturating_add(i64::try_from(now_ms).unwrap_or(i64::MAX))),
    }
    .map(|at| u64::try_from(at).unwrap_or(0));
    let replaced = opts.replace && guard.remove(key);
    // A deadline already passed: the key is not created (but REPLACE has removed the old one).
    let created = expire_at_ms.is_none_or(|at| at > now_ms);
    if created {
        guard.set(key, value, expire_at_ms);
        if let Some(clock) = forkless_storage::access::clock_from(opts.idle_secs, opts.freq, now_ms)
        {
            guard.set_access_clock(key, clock);
        }
        notify(ctx, GENERIC, "restore", key);
    } else if replaced {
        notify(ctx, GENERIC, "del", key);
    }
    drop(guard);
    // The effect replays identically: a relative TTL becomes absolute (ABSTTL), and a
    // deadline already passed leaves only the removal, as Redis propagates RESTORE.
    match expire_at_ms {
        Some(_) if !created => ctx.rewrite_effect(|| crate::effects::argv(&[b"DEL", key])),
        Some(at) if !opts.absolute_ttl => ctx.rewrite_effect(|| {
            let mut effect = argv.to_vec();
            if let Some(ttl) = effect.get_mut(2) {
                *ttl = Bytes::from(at.to_string());
            }
            effect.push(Bytes::from_static(b"ABSTTL"));
            effect
        }),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<(bool, bool), &'static str> {
        let args: Vec<Bytes> = words
            .iter()
            .map(|word| Bytes::copy_from_slice(word.as_bytes()))
            .collect();
        parse_options(&args).map(|opts| (opts.replace, opts.absolute_ttl))
    }

    #[test]
    fn options_follow_restore_command() {
        assert_eq!(parse(&["REPLACE", "absttl"]), Ok((true, true)));
        assert_eq!(
            parse(&["IDLETIME", "10", "IDLETIME", "0"]),
            Ok((false, false))
        );
        assert_eq!(parse(&["FREQ", "255"]), Ok((false, false)));
        assert_eq!(parse(&["IDLETIME", "1", "FREQ", "1"]), Err(reply::SYNTAX));
        assert_eq!(parse(&["FREQ", "1", "IDLETIME", "1"]), Err(reply::SYNTAX));
        assert_eq!(parse(&["IDLETIME", "-1"]), Err(BAD_IDLETIME));
        assert_eq!(parse(&["FREQ", "256"]), Err(BAD_FREQ));
        assert_eq!(parse(&["FREQ", "x"]), Err(reply::NOT_INTEGER));
        assert_eq!(parse(&["IDLETIME"]), Err(reply::SYNTAX));
        assert_eq!(parse(&["bogus"]), Err(reply::SYNTAX));
    }
}
