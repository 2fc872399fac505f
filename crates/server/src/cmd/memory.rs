//! MEMORY USAGE / STATS / DOCTOR / MALLOC-STATS / PURGE / HELP.
//!
//! MEMORY USAGE estimates what Redis 7.0 would report for the same key: the key's `sds` and
//! dictionary entry, the `robj`, and the value in Redis's encoding (an embedded or raw string,
//! or the collection's own size estimate), each allocation rounded up to jemalloc's size class
//! as Redis's `zmalloc_size` does. It is an estimate, as Redis's is for sampled collections.

use bytes::Bytes;
use forkless_storage::Value;

use super::meta::{Gate, KeySpec, flags};
use super::subcommands::{help_reply, run_subcommand};
use super::{Command, Ctx, eq_ignore_case, parse_i64, reply};

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "memory", arity: -2, flags: flags!(), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["slow"], summary: "A container for memory diagnostics commands", since: "4.0.0", group: "server", handler: memory },
];

/// Redis's `sizeof(robj)` and `sizeof(dictEntry)` on 64-bit.
const ROBJ: usize = 16;
const DICT_ENTRY: usize = 24;
/// Redis's `OBJ_ENCODING_EMBSTR_SIZE_LIMIT`.
const EMBSTR_MAX: usize = 44;

/// jemalloc's size class for an allocation of `n` bytes: 8, then steps of 16 up to 128, then
/// four classes per doubling.
pub(crate) fn size_class(n: usize) -> usize {
    if n <= 8 {
        return 8;
    }
    if n <= 128 {
        return n.div_ceil(16) * 16;
    }
    let log = n.next_power_of_two().trailing_zeros();
    // Classes between 2^(log-1) and 2^log are spaced by 2^(log-3).
    let step = 1usize << log.saturating_sub(3);
    n.div_ceil(step) * step
}

/// Redis's sds allocation for a string of `len` bytes: the smallest header that holds the
/// length, the bytes and the terminating zero.
fn sds_size(len: usize) -> usize {
    let header = match len {
        0..32 => 1,
        32..256 => 3,
        256..65_536 => 5,
        _ if u32::try_from(len).is_ok() => 9,
        _ => 17,
    };
    size_class(header + len + 1)
}

/// The bytes Redis would use for `key` holding `value`, as MEMORY USAGE reports them.
pub(crate) fn usage_of(key: &[u8], value: &Value) -> usize {
    let value_size = match value {
        Value::String(bytes) => {
            if bytes.len() <= 20 && forkless_storage::value::parse_canonical_i64(bytes).is_some() {
                ROBJ
            } else if bytes.len() <= EMBSTR_MAX {
                size_class(ROBJ + 3 + bytes.len() + 1)
            } else {
                ROBJ + sds_size(bytes.len())
            }
        }
        collection => ROBJ + collection.heap_size(),
    };
    value_size + sds_size(key.len()) + DICT_ENTRY
}

fn memory(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    run_subcommand(ctx, argv);
}

pub(super) fn memory_usage(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let Some((key, options)) = args.split_first() else {
        ctx.out.error(reply::SYNTAX);
        return;
    };
    // SAMPLES n is accepted and checked; the estimate reads the whole value (forkless's
    // collections keep their size).
    match options {
        [] => {}
        [option, count] if eq_ignore_case(option, "samples") => {
            if parse_i64(count).is_none_or(|count| count < 0) {
                ctx.out.error(reply::NOT_INTEGER);
                return;
            }
        }
        _ => {
            ctx.out.error(reply::SYNTAX);
            return;
        }
    }
    let guard = ctx.db().read(&[key], ctx.now_ms);
    let usage = guard.get(key).map(|entry| usage_of(key, entry.value()));
    drop(guard);
    match usage {
        Some(bytes) => ctx.out.int(i64::try_from(bytes).unwrap_or(i64::MAX)),
        None => ctx.out.null(),
    }
}

pub(super) fn memory_stats(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    let figures = crate::evict::figures(ctx.server);
    let n_keys: usize = ctx
        .server
        .keyspace
        .dbs()
        .iter()
        .map(forkless_storage::Db::len)
        .sum();
    let fields_int = |name: &'static str, value: u64| (name, value);
    let dataset = figures.dataset;
    let keys = u64::try_from(n_keys).unwrap_or(u64::MAX);
    let ints = [
        fields_int("peak.allocated", figures.peak),
        fields_int("total.allocated", figures.used),
        fields_int("startup.allocated", figures.startup),
        fields_int("replication.backlog", 0),
        fields_int("clients.slaves", 0),
        fields_int("clients.normal", figures.clients_normal),
        fields_int("cluster.links", 0),
        fields_int("aof.buffer", figures.aof_buffer),
        fields_int("lua.caches", 0),
        fields_int("functions.caches", 0),
        fields_int("overhead.total", figures.overhead),
        fields_int("keys.count", keys),
        fields_int(
            "keys.bytes-per-key",
            figures
                .used
                .saturating_sub(figures.startup)
                .checked_div(keys)
                .unwrap_or(0),
        ),
        fields_int("dataset.bytes", dataset),
    ];
    let tail_ints = [
        ("allocator.allocated", figures.allocator.allocated),
        ("allocator.active", figures.allocator.active),
        ("allocator.resident", figures.allocator.resident),
    ];
    ctx.out.map_len(ints.len() + 2 + tail_ints.len() + 7);
    for (name, value) in ints {
        ctx.out.bulk(name.as_bytes());
        ctx.out.int(i64::try_from(value).unwrap_or(i64::MAX));
    }
    ctx.out.bulk(b"dataset.percentage");
    ctx.out.double(figures.dataset_percent());
    ctx.out.bulk(b"peak.percentage");
    ctx.out.double(figures.peak_percent());
    for (name, value) in tail_ints {
        ctx.out.bulk(name.as_bytes());
        ctx.out.int(i64::try_from(value).unwrap_or(i64::MAX));
    }
    for (name, ratio) in [
        ("allocator-fragmentation.ratio", 1.0),
        ("allocator.rss-ratio", 1.0),
        ("rss-overhead.ratio", 1.0),
        ("fragmentation", 1.0),
    ] {
        ctx.out.bulk(name.as_bytes());
        ctx.out.double(ratio);
    }
    for name in [
        "allocator-fragmentation.bytes",
        "allocator.rss-bytes",
        "rss-overhead.bytes",
    ] {
        ctx.out.bulk(name.as_bytes());
        ctx.out.int(0);
    }
}

pub(super) fn memory_doctor(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    let report = "Hi Sam, I can't find any memory issue in your instance. I can only account \
                  for what occurs on this base.\n";
    ctx.out.verbatim(b"txt", report.as_bytes());
}

pub(super) fn memory_malloc_stats(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    ctx.out
        .verbatim(b"txt", b"Stats not supported for the current allocator");
}

pub(super) fn memory_purge(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    crate::limits::request_memory_release();
    ctx.out.ok();
}

pub(super) fn memory_help(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    help_reply(
        ctx.out,
        "MEMORY",
        &[
            "DOCTOR",
            "    Return memory problems reports.",
            "MALLOC-STATS",
            "    Return internal statistics report from the memory allocator.",
            "PURGE",
            "    Attempt to purge dirty pages for reclamation by the allocator.",
            "STATS",
            "    Return information about the memory usage of the server.",
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value. Nested values are",
            "    sampled up to <count> times (default: 5, 0 means sample all).",
            "HELP",
            "    Print this help.",
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_follow_jemalloc() {
        assert_eq!(size_class(1), 8);
        assert_eq!(size_class(9), 16);
        assert_eq!(size_class(17), 32);
        assert_eq!(size_class(129), 160);
        assert_eq!(size_class(257), 320);
        assert_eq!(size_class(1025), 1280);
    }

    #[test]
    fn short_string_usage_matches_redis() {
        // redis-server 7.0.15: SET foo bar; MEMORY USAGE foo -> 64 (an embedded string).
        assert_eq!(usage_of(b"foo", &Value::string(b"bar")), 64);
        // An integer is the robj alone: SET k 12345 -> 48.
        assert_eq!(usage_of(b"k", &Value::string(b"12345")), 48);
    }
}
