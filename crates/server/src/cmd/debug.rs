//! DEBUG: the subcommands clients and test suites use (SLEEP, RELOAD, OBJECT, DIGEST,
//! DIGEST-VALUE, POPULATE, SET-ACTIVE-EXPIRE, QUICKLIST-PACKED-THRESHOLD, CHANGE-REPL-ID, LOG,
//! JMAP), behind `enable-debug-command` as in Redis 7.0.
//!
//! DIGEST and DIGEST-VALUE are Redis's `computeDatasetDigest` and `xorObjectDigest` (SHA-1,
//! xor for unordered parts, mixing for ordered ones), so the digests of two servers holding the
//! same data are equal whichever encodings they use.

use std::fs::File;
use std::io::BufReader;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use forkless_snapshot::format::{self, EncodeOptions, dump_payload};
use forkless_storage::Value;
use sha1::{Digest as _, Sha1};

use super::meta::{Gate, KeySpec, flags};
use super::{Command, Ctx, eq_ignore_case, parse_i64, reply};
use crate::config::ProtectedConfigs;
use crate::server::Server;

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "debug", arity: -2, flags: flags!(ADMIN, NOSCRIPT, LOADING, STALE, PROTECTED), keys: KeySpec::NONE, gate: Gate::Exclusive, categories: &["admin", "slow", "dangerous"], summary: "A container for debugging commands", since: "1.0.0", group: "server", handler: debug },
];

/// Redis's refusal when `enable-debug-command` does not allow this client.
pub(crate) const NOT_ALLOWED: &str = "ERR DEBUG command not allowed. If the enable-debug-command option is \
                           set to \"local\", you can run it from a local connection, otherwise \
                           you need to set this option in the configuration file, and then \
                           restart the server.";

/// A SHA-1 digest, as Redis's `unsigned char digest[20]`.
type Sha = [u8; 20];

fn sha1(bytes: &[u8]) -> Sha {
    Sha1::digest(bytes).into()
}

/// Redis's `xorDigest`: digest ^= SHA1(bytes). Order does not matter.
fn xor_digest(digest: &mut Sha, bytes: &[u8]) {
    for (d, h) in digest.iter_mut().zip(sha1(bytes)) {
        *d ^= h;
    }
}

/// Redis's `mixDigest`: digest = SHA1(digest ^ SHA1(bytes)). Order matters.
fn mix_digest(digest: &mut Sha, bytes: &[u8]) {
    xor_digest(digest, bytes);
    *digest = sha1(digest.as_slice());
}

/// Redis's object type codes (`OBJ_STRING` ...), which the digest mixes in.
fn type_code(value: &Value) -> u32 {
    match value {
        Value::String(_) => 0,
        Value::List(_) => 1,
        Value::Set(_) => 2,
        Value::ZSet(_) => 3,
        Value::Hash(_) => 4,
        Value::Stream(_) => 6,
    }
}

/// Redis's `xorObjectDigest`: mixes `value` (and whether it has an expiry) into `digest`.
fn object_digest(digest: &mut Sha, value: &Value, has_expiry: bool) {
    mix_digest(digest, &type_code(value).to_be_bytes());
    match value {
        Value::String(bytes) => mix_digest(digest, bytes),
        Value::List(list) => {
            for element in list.iter() {
                mix_digest(digest, &element);
            }
        }
        Value::Set(set) => {
            for member in set.iter() {
                xor_digest(digest, &member);
            }
        }
        Value::ZSet(zset) => {
            for (member, score) in zset.iter() {
                let mut element = [0u8; 20];
                mix_digest(&mut element, &member);
                mix_digest(
                    &mut element,
                    forkless_protocol::format_double(score).as_bytes(),
                );
                xor_digest(digest, &element);
            }
        }
        Value::Hash(hash) => {
            for (field, field_value) in hash.iter() {
                let mut element = [0u8; 20];
                mix_digest(&mut element, &field);
                mix_digest(&mut element, &field_value);
                xor_digest(digest, &element);
            }
        }
        // Entries only, each id as `ms.seq` and then its strings (groups are not digested).
        Value::Stream(stream) => {
            for (id, fields) in stream.iter() {
                mix_digest(digest, format!("{}.{}", id.ms, id.seq).as_bytes());
                for field in fields {
                    mix_digest(digest, field);
                }
            }
        }
    }
    if has_expiry {
        xor_digest(digest, b"!!expire!!");
    }
}

fn hex(digest: &Sha) -> String {
    use std::fmt::Write as _;
    digest
        .iter()
        .fold(String::with_capacity(40), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
}

/// Redis's `computeDatasetDigest`: per database with keys, its number mixed in, then the xor
/// of every key's digest (the key mixed, then its value). Keys past their TTL but not yet
/// reclaimed count, as in Redis.
fn dataset_digest(server: &Server) -> Sha {
    let frozen = server.keyspace.freeze_all();
    let mut total = [0u8; 20];
    for db_idx in 0..frozen.n_dbs() {
        let mut entries = frozen.entries(db_idx).peekable();
        if entries.peek().is_none() {
            continue;
        }
        let db_number = u32::try_from(db_idx).unwrap_or(u32::MAX);
        mix_digest(&mut total, &db_number.to_be_bytes());
        for (key, entry) in entries {
            let mut digest = [0u8; 20];
            mix_digest(&mut digest, key);
            object_digest(&mut digest, entry.value(), entry.expire_at_ms().is_some());
            xor_digest(&mut total, &digest);
        }
    }
    total
}

/// Returns true if and only if `enable-debug-command` lets this client run DEBUG.
fn allowed(ctx: &Ctx<'_>) -> bool {
    allowed_for(ctx.server, ctx.client)
}

/// Returns true if and only if `enable-debug-command` lets `client` run DEBUG.
pub(crate) fn allowed_for(server: &Server, client: &super::Client) -> bool {
    match server.config().enable_debug_command {
        ProtectedConfigs::Yes => true,
        ProtectedConfigs::Local => client.handle.addr.is_local(),
        ProtectedConfigs::No => false,
    }
}

/// DEBUG SLEEP seconds: strtod's reading, so what does not parse sleeps 0 seconds.
fn debug_sleep(ctx: &mut Ctx<'_>, seconds: &[u8]) {
    let seconds = std::str::from_utf8(seconds)
        .ok()
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs > 0.0)
        .unwrap_or(0.0);
    let pause = Duration::from_secs_f64(seconds.min(1e9));
    tokio::task::block_in_place(|| std::thread::sleep(pause));
    ctx.out.ok();
}

/// DEBUG's handler. Its row holds no gate (`Gate::Exclusive`): RELOAD and SLEEP take the gate
/// exclusively (SLEEP stalls every command as it stalls single-threaded Redis, which test suites
/// use to simulate a busy server), every other subcommand shared, and none when EXEC already
/// holds it.
fn debug(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    if !allowed(ctx) {
        ctx.out.error(NOT_ALLOWED);
        return;
    }
    let Some(sub) = argv.get(1) else { return };
    let sub = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let args = argv.get(2..).unwrap_or_default();
    let server = ctx.server;
    let gate = server.keyspace.gate();
    let in_exec = ctx.client.in_exec;
    if sub == "reload" {
        let _exclusive = (!in_exec).then(|| gate.exclusive());
        reload(ctx, args);
        return;
    }
    if let ("sleep", [seconds]) = (sub.as_str(), args) {
        let _exclusive = (!in_exec).then(|| gate.exclusive());
        debug_sleep(ctx, seconds);
        return;
    }
    if sub == "loadaof" && args.is_empty() {
        // The replay takes the gate shared per command: under EXEC's exclusive hold it would
        // wait for itself.
        if in_exec {
            ctx.out
                .error("ERR DEBUG LOADAOF can't run inside a transaction in forkless");
            return;
        }
        // Redis's DEBUG LOADAOF: the AOF flushed, the dataset emptied and loaded again from
        // the AOF's files (`aof::reload`); a failure ends the process, as Redis's exit(1).
        if let Err(err) = tokio::task::block_in_place(|| crate::aof::reload(server, ctx.now_ms)) {
            tracing::warn!("DEBUG LOADAOF: {err:#}");
            std::process::exit(1);
        }
        tracing::warn!("Append Only File loaded by DEBUG LOADAOF");
        ctx.out.ok();
        return;
    }
    let _shared = (!in_exec).then(|| gate.shared());
    match (sub.as_str(), args) {
        ("help", []) => help(ctx),
        ("object", [key]) => object(ctx, key),
        ("digest", []) => {
            let digest = dataset_digest(server);
            ctx.out.simple(hex(&digest).as_bytes());
        }
        ("digest-value", keys) => {
            ctx.out.array_len(keys.len());
            for key in keys {
                let guard = ctx.db().read(&[key], 0);
                let mut digest = [0u8; 20];
                if let Some(entry) = guard.get(key) {
                    object_digest(&mut digest, entry.value(), entry.expire_at_ms().is_some());
                }
                drop(guard);
                ctx.out.simple(hex(&digest).as_bytes());
            }
        }
        ("populate", [count, rest @ ..]) if rest.len() <= 2 => populate(ctx, count, rest),
        ("set-active-expire", [flag]) => {
            // atoi: anything but a non-zero number turns it off.
            let on = std::str::from_utf8(flag)
                .ok()
                .and_then(|text| text.trim().parse::<i64>().ok())
                .is_some_and(|n| n != 0);
            server.active_expire.store(on, Ordering::Relaxed);
            ctx.out.ok();
        }
        ("quicklist-packed-threshold", [size]) => {
            // Accepted and checked as Redis does; forkless's lists give an element bigger
            // than a chunk a chunk of its own whatever the threshold.
            let valid = crate::config::parse_memory(size).is_some_and(|bytes| bytes < (1u64 << 32));
            if valid {
                ctx.out.ok();
            } else {
                ctx.out.error(
                    "ERR argument must be a memory value bigger than 1 and smaller than 4gb",
                );
            }
        }
        ("aof-flush-sleep", [micros]) => {
            // atoi, as Redis: what does not parse is 0 (no sleep).
            let micros = std::str::from_utf8(micros)
                .ok()
                .and_then(|text| text.trim().parse::<i64>().ok())
                .unwrap_or(0);
            server
                .aof
                .shared
                .flush_sleep_us
                .store(u64::try_from(micros).unwrap_or(0), Ordering::Relaxed);
            ctx.out.ok();
        }
        ("change-repl-id", []) => {
            tracing::warn!("Changing replication IDs after receiving DEBUG change-repl-id");
            ctx.out.ok();
        }
        ("log", [message]) => {
            tracing::warn!("DEBUG LOG: {}", String::from_utf8_lossy(message));
            ctx.out.ok();
        }
        ("jmap", _) => ctx.out.ok(),
        ("pause-cron", [flag]) => {
            // atoi, as Redis: what does not parse is 0.
            let on = std::str::from_utf8(flag)
                .ok()
                .and_then(|text| text.trim().parse::<i64>().ok())
                .is_some_and(|n| n != 0);
            server.cron_paused.store(on, Ordering::Relaxed);
            ctx.out.ok();
        }
        ("replybuffer", [what, value]) => {
            // Forkless's reply buffer has no resize cron and no peak to reset (its 16 kB is
            // counted as a constant, see `client::total_memory`): the settings are checked
            // as Redis checks them and have nothing to act on.
            let what = String::from_utf8_lossy(what).to_ascii_lowercase();
            let value_lower = String::from_utf8_lossy(value).to_ascii_lowercase();
            match what.as_str() {
                "peak-reset-time"
                    if value_lower == "never"
                        || value_lower == "reset"
                        || parse_i64(value).is_some() =>
                {
                    ctx.out.ok();
                }
                "peak-reset-time" => ctx.out.error(reply::NOT_INTEGER),
                "resizing" => ctx.out.ok(),
                _ => ctx.out.error(&format!(
                    "ERR unknown subcommand or wrong number of arguments for '{}'. Try DEBUG HELP.",
                    String::from_utf8_lossy(argv.get(1).map_or(&b""[..], |sub| sub))
                )),
            }
        }
        _ => ctx.out.error(&format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try DEBUG HELP.",
            String::from_utf8_lossy(argv.get(1).map_or(&b""[..], |sub| sub))
        )),
    }
}

/// DEBUG POPULATE count [prefix] [size]: creates the string keys `<prefix>:<n>` (prefix `key`)
/// for n in 0..count that do not exist yet, each holding `value:<n>`, or with a size that
/// text cut to `size` bytes or padded with zero bytes, as Redis does. As in Redis they are not
/// propagated: the command's effect has no commands, so neither replicas nor the AOF get the
/// keys (a later full sync or rewrite carries them). `size` is bounded by
/// `proto-max-bulk-len` (no string may be longer).
fn populate(ctx: &mut Ctx<'_>, count: &[u8], rest: &[Bytes]) {
    const NOT_POSITIVE: &str = "ERR value is out of range, must be positive";
    let positive = |arg: &[u8]| parse_i64(arg).and_then(|n| u64::try_from(n).ok());
    let Some(count) = positive(count) else {
        ctx.out.error(NOT_POSITIVE);
        return;
    };
    let prefix = rest.first().map_or(&b"key"[..], |prefix| &prefix[..]);
    let size = match rest.get(1) {
        Some(size) => match positive(size) {
            Some(size) => size,
            None => {
                ctx.out.error(NOT_POSITIVE);
                return;
            }
        },
        None => 0,
    };
    let max_size = ctx.server.config().proto_max_bulk_len;
    let Some(size) = usize::try_from(size).ok().filter(|_| size <= max_size) else {
        ctx.out.error("ERR size is larger than proto-max-bulk-len");
        return;
    };
    for n in 0..count {
        let mut key = prefix.to_vec();
        key.extend_from_slice(format!(":{n}").as_bytes());
        let mut value = format!("value:{n}").into_bytes();
        if size > 0 {
            value.resize(size, 0);
        }
        let mut guard = ctx.db().write(&[&key[..]], ctx.now_ms);
        if guard.contains(&key) {
            continue;
        }
        guard.set(&key, Value::string(&value), None);
    }
    // Redis's dbAdd without propagation: the unit keeps its number, with nothing to replay.
    ctx.rewrite_effects(Vec::new);
    ctx.out.ok();
}

/// DEBUG OBJECT key: Redis's status line; `serializedlength` is the value's RDB encoding.
fn object(ctx: &mut Ctx<'_>, key: &[u8]) {
    let guard = ctx.db().read(&[key], 0);
    let Some((value, clock)) = guard
        .peek(key)
        .map(|entry| (entry.value().clone(), entry.access_clock()))
    else {
        drop(guard);
        ctx.out.error(reply::NO_SUCH_KEY);
        return;
    };
    drop(guard);
    let opts = EncodeOptions {
        compress_strings: ctx.server.config().rdbcompression,
    };
    // A DUMP payload is the type byte, the value, two bytes of version and eight of CRC.
    let serialized = dump_payload(&value, &opts).len().saturating_sub(11);
    let mut extra = String::new();
    if let Value::List(list) = &value {
        if value.encoding() == "quicklist" {
            let n_nodes = list.n_chunks().max(1);
            #[allow(clippy::cast_precision_loss, reason = "an average for display")]
            let avg = list.len() as f64 / n_nodes as f64;
            extra = format!(
                " ql_nodes:{n_nodes} ql_avg_node:{avg:.2} ql_listpack_max:-2 ql_compressed:0 \
                 ql_uncompressed_size:{}",
                value.heap_size()
            );
        }
    }
    let address = std::ptr::from_ref(&value) as usize;
    let line = format!(
        "Value at:0x{address:x} refcount:1 encoding:{} serializedlength:{serialized} lru:{clock} \
         lru_seconds_idle:{}{extra}",
        value.encoding(),
        forkless_storage::access::idle_secs(clock, ctx.now_ms)
    );
    ctx.out.simple(line.as_bytes());
}

/// DEBUG RELOAD [MERGE] [NOFLUSH] [NOSAVE]: save (SAVE's code), empty the dataset, load the
/// file back (the startup loader's decoder), with every other client held off by the gate.
fn reload(ctx: &mut Ctx<'_>, options: &[Bytes]) {
    let (mut save, mut flush, mut merge) = (true, true, false);
    for option in options {
        if eq_ignore_case(option, "merge") {
            merge = true;
        } else if eq_ignore_case(option, "noflush") {
            flush = false;
        } else if eq_ignore_case(option, "nosave") {
            save = false;
        } else {
            ctx.out
                .error("ERR DEBUG RELOAD only supports the MERGE, NOFLUSH and NOSAVE options.");
            return;
        }
    }
    let server = ctx.server;
    let result = tokio::task::block_in_place(|| {
        if save {
            crate::persistence::save_blocking(server)
                .map_err(|_| "ERR Error trying to save the DB".to_string())?;
        }
        if flush {
            drop(server.keyspace.flush_all(ctx.now_ms));
        }
        load(server, merge).map_err(|err| {
            tracing::warn!("DEBUG RELOAD: {err}");
            "ERR Error trying to load the RDB dump, check server logs.".to_string()
        })
    });
    match result {
        Ok(()) => {
            tracing::warn!("DB reloaded by DEBUG RELOAD");
            ctx.out.ok();
        }
        Err(msg) => ctx.out.error(&msg),
    }
}

/// Loads `dir/dbfilename` into the keyspace; with `merge` a key of the file replaces one in
/// memory, without it a key in both is an error (as Redis's RDBFLAGS_ALLOW_DUP).
fn load(server: &Server, merge: bool) -> Result<(), String> {
    let path = server.config().rdb_path();
    let file = File::open(&path).map_err(|err| format!("{}: {err}", path.display()))?;
    let name = path.display().to_string();
    format::load(
        BufReader::with_capacity(1 << 20, file),
        &name,
        crate::server::unix_ms(),
        |entry| {
            let db = usize::try_from(entry.db)
                .ok()
                .and_then(|idx| server.keyspace.db(idx))
                .ok_or_else(|| format::LoadError::rejected(format!("no database {}", entry.db)))?;
            let mut guard = db.write(&[&entry.key], 0);
            if !merge && guard.contains(&entry.key) {
                return Err(format::LoadError::rejected(format!(
                    "duplicated key '{}' in DB {}",
                    String::from_utf8_lossy(&entry.key),
                    entry.db
                )));
            }
            guard.set(&entry.key, entry.value, entry.expire_at_ms);
            Ok(())
        },
    )
    .map(drop)
    .map_err(|err| err.to_string())
}

fn help(ctx: &mut Ctx<'_>) {
    super::subcommands::help_reply(
        ctx.out,
        "DEBUG",
        &[
            "AOF-FLUSH-SLEEP <microsec>",
            "    Server will sleep before flushing the AOF, this is used for testing.",
            "CHANGE-REPL-ID",
            "    Change the replication IDs of the instance.",
            "    Dangerous: should be used only for testing the replication subsystem.",
            "DIGEST",
            "    Output a hex signature representing the current DB content.",
            "DIGEST-VALUE <key> [<key> ...]",
            "    Output a hex signature of the values of all the specified keys.",
            "LOADAOF",
            "    Flush the AOF buffers on disk and reload the AOF in memory.",
            "LOG <message>",
            "    Write <message> to the server log.",
            "PAUSE-CRON <0|1>",
            "    Stop periodic cron job processing.",
            "REPLYBUFFER PEAK-RESET-TIME <NEVER||RESET|time>",
            "    Sets the time (in milliseconds) to wait between client reply buffer peak resets.",
            "    In case NEVER is provided the last observed peak will never be reset",
            "    In case RESET is provided the peak reset time will be restored to the default value",
            "REPLYBUFFER RESIZING <0|1>",
            "    Enable or disable the reply buffer resize cron job",
            "OBJECT <key>",
            "    Show low level info about `key` and associated value.",
            "POPULATE <count> [<prefix>] [<size>]",
            "    Create <count> string keys named key:<num>. If <prefix> is specified then",
            "    it is used instead of the 'key' prefix. These are not propagated to",
            "    replicas. Cluster slots are not respected so keys not belonging to the",
            "    current node can be created in cluster mode.",
            "RELOAD [option ...]",
            "    Save the RDB on disk and reload it back to memory. Valid <option> values:",
            "    * MERGE: conflicting keys will be loaded from RDB.",
            "    * NOFLUSH: the existing database will not be removed before load, but",
            "      conflicting keys will generate an exception and kill the server.",
            "    * NOSAVE: the database will be loaded from an existing RDB file.",
            "SET-ACTIVE-EXPIRE <0|1>",
            "    Setting it to 0 disables expiring keys in background when they are not",
            "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
            "    default.",
            "QUICKLIST-PACKED-THRESHOLD <size>",
            "    Sets the threshold for elements to be inserted as plain vs packed nodes",
            "    Default value is 1GB, allows values up to 4GB. Setting to 0 restores to default.",
            "SLEEP <seconds>",
            "    Stop the server for <seconds>. Decimals allowed.",
            "HELP",
            "    Print this help.",
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_dataset_digest_is_zero() {
        assert_eq!(hex(&[0u8; 20]), "0".repeat(40));
    }

    #[test]
    fn mix_is_ordered_and_xor_is_not() {
        let (mut ab, mut ba) = ([0u8; 20], [0u8; 20]);
        mix_digest(&mut ab, b"a");
        mix_digest(&mut ab, b"b");
        mix_digest(&mut ba, b"b");
        mix_digest(&mut ba, b"a");
        assert_ne!(ab, ba);
        let (mut xab, mut xba) = ([0u8; 20], [0u8; 20]);
        xor_digest(&mut xab, b"a");
        xor_digest(&mut xab, b"b");
        xor_digest(&mut xba, b"b");
        xor_digest(&mut xba, b"a");
        assert_eq!(xab, xba);
    }
}
