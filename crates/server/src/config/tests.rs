use std::fs;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use super::lexer::{repr, split_args, trim};
use super::load::{LoadState, strerror};
use super::parse::{c_strtoll, format_memory, parse_int, parse_memory, parse_strict_i64};
use super::*;

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|&arg| arg.to_owned()).collect()
}

fn run(args: &[&str]) -> Config {
    match Config::from_args(&strings(args)) {
        Ok(Invocation::Run(config)) => config,
        other => panic!("{args:?} gave {other:?}"),
    }
}

fn fails(args: &[&str]) -> ConfigError {
    match Config::from_args(&strings(args)) {
        Err(err) => err,
        other => panic!("{args:?} gave {other:?}"),
    }
}

/// Loads config-file text on top of the defaults.
fn load(text: &str) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    config.load(text.as_bytes(), &mut LoadState::default())?;
    Ok(config)
}

fn value(config: &Config, name: &str) -> String {
    let found = config.get(&[name.as_bytes()]);
    assert_eq!(found.len(), 1, "{name}");
    found[0].1.clone()
}

fn set(config: &mut Config, pairs: &[(&str, &str)]) -> Result<Vec<&'static str>, String> {
    let pairs: Vec<(&[u8], &[u8])> = pairs
        .iter()
        .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
        .collect();
    config.set(&pairs)
}

/// A directory under the system temp dir, unique per test and process, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "forkless-config-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(fs::canonicalize(dir).unwrap())
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn defaults_render_as_redis_does() {
    let config = Config::default();
    let cwd = std::env::current_dir().unwrap();
    let expected: &[(&str, &str)] = &[
        ("bind", "127.0.0.1"),
        ("port", "6379"),
        ("protected-mode", "yes"),
        ("requirepass", ""),
        ("databases", "16"),
        ("dir", cwd.to_str().unwrap()),
        ("dbfilename", "dump.rdb"),
        ("maxclients", "10000"),
        ("timeout", "0"),
        ("tcp-keepalive", "300"),
        ("tcp-backlog", "511"),
        ("loglevel", "notice"),
        ("logfile", ""),
        ("daemonize", "no"),
        ("proto-max-bulk-len", "536870912"),
        ("client-query-buffer-limit", "1073741824"),
        ("hll-sparse-max-bytes", "3000"),
        ("save", "3600 1 300 100 60 10000"),
        ("rdbcompression", "yes"),
        ("rdbchecksum", "yes"),
        ("stop-writes-on-bgsave-error", "yes"),
        ("appendonly", "no"),
        ("appendfsync", "everysec"),
        ("hz", "10"),
        ("maxmemory", "0"),
        ("maxmemory-policy", "noeviction"),
        ("io-threads", "1"),
        (
            "client-output-buffer-limit",
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
        ),
        ("latency-tracking", "yes"),
        ("lazyfree-lazy-user-del", "no"),
        ("slowlog-log-slower-than", "10000"),
        ("slowlog-max-len", "128"),
        ("latency-monitor-threshold", "0"),
        ("tracking-table-max-keys", "1000000"),
        ("enable-debug-command", "no"),
        ("busy-reply-threshold", "5000"),
        ("script-memory-limit", "1073741824"),
        ("enable-protected-configs", "no"),
        ("snapshot-mode", "epoch"),
        ("snapshot-writer", "auto"),
        ("snapshot-compression", "none"),
        ("snapshot-compression-level", "1"),
        ("snapshot-max-bytes-per-sec", "0"),
        ("snapshot-threads", "0"),
        ("snapshot-nice", "0"),
        ("snapshot-idle-priority", "yes"),
        ("snapshot-max-retained-bytes", "16777216"),
        ("client-output-buffer-backpressure", "67108864"),
        ("snapshot-max-retained-percent", "1"),
        ("malloc-arena-max", "1"),
        ("worker-threads", "0"),
    ];
    let all = config.get(&[b"*"]);
    let all: Vec<(&str, &str)> = all.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    assert_eq!(all.get(..expected.len()), Some(expected));
    assert_eq!(config.rdb_path(), cwd.join("dump.rdb"));
}

/// Every option redis-server 7.0 lists in `CONFIG GET *` (old names included) exists with
/// Redis's default, except `bind` and `dir` (see the module docs); forkless adds only its own
/// `snapshot-*`, `worker-threads`, `malloc-arena-max`, `script-memory-limit` and `repl-dual-channel*`. The list is Debian's redis-server 7.0.15's reply.
#[test]
fn config_get_star_matches_redis_defaults() {
    let redis = include_str!("redis70_defaults.tsv");
    let config = Config::default();
    let ours: std::collections::HashMap<String, String> = config.get(&[b"*"]).into_iter().collect();
    let mut n_checked = 0;
    for line in redis.lines() {
        let (name, value) = line.split_once('\t').unwrap_or((line, ""));
        assert_eq!(ours.get(name).map(String::as_str), Some(value), "{name}");
        n_checked += 1;
    }
    assert_eq!(n_checked, 190);
    let extra: Vec<&String> = ours
        .keys()
        .filter(|name| {
            !redis
                .lines()
                .any(|line| line.split('\t').next() == Some(name.as_str()))
        })
        .filter(|name| !matches!(name.as_str(), "bind" | "dir"))
        .collect();
    assert!(
        extra.iter().all(|name| name.starts_with("snapshot-")
            || *name == "worker-threads"
            || *name == "malloc-arena-max"
            || *name == "client-output-buffer-backpressure"
            || *name == "script-memory-limit"
            || name.starts_with("repl-dual-channel")),
        "{extra:?}"
    );
    // Hidden options answer only to their exact name.
    assert!(!ours.contains_key("key-load-delay"));
    assert_eq!(
        config.get(&[b"key-load-delay"]),
        vec![("key-load-delay".to_owned(), "0".to_owned())]
    );
}

#[test]
fn every_option_round_trips_through_file_and_config_set() {
    let permissive = Config {
        enable_protected_configs: ProtectedConfigs::Yes,
        ..Config::default()
    };
    for spec in OPTIONS {
        let rendered = value(&Config::default(), spec.name);
        if spec.name == "replicaof" {
            // CONFIG GET shows no master as "", which is no valid value (as in Redis).
            assert_eq!(load("replicaof no one"), Ok(Config::default()));
            continue;
        }
        // As a config-file line, quoted so that empty and multi-word values survive.
        let line = format!(
            "{} {}",
            spec.name,
            String::from_utf8(repr(rendered.as_bytes())).unwrap()
        );
        assert_eq!(load(&line).unwrap(), Config::default(), "{line}");
        // Through CONFIG SET, for the options that allow it: nothing changes.
        if spec.flags & IMMUTABLE == 0 {
            let mut config = permissive.clone();
            assert_eq!(
                set(&mut config, &[(spec.name, &rendered)]),
                Ok(vec![]),
                "{}",
                spec.name
            );
            assert_eq!(config, permissive);
        }
    }
}

/// Memory values parse as Redis's `memtoull` does (through the parser: `maxmemory` itself
/// is refused while eviction does not exist).
#[test]
fn memory_values_parse_like_redis() {
    let cases: &[(&str, u64)] = &[
        ("1GB", 1_073_741_824),
        ("1g", 1_000_000_000),
        ("100k", 100_000),
        ("1Kb", 1024),
        ("1b", 1),
        ("01", 1),
        ("", 0),
        ("kb", 0),
        ("99999999999999999999", u64::MAX),
        ("9999999999gb", 10_737_418_238_926_258_176),
    ];
    for (text, expected) in cases {
        assert_eq!(
            parse_int(
                text.as_bytes(),
                super::table::Range::Unsigned(0, u64::MAX),
                true
            ),
            Ok(*expected),
            "{text}"
        );
    }
}

#[test]
fn values_parse_and_render_like_redis() {
    // (option, config-file arguments, CONFIG GET rendering)
    let cases: &[(&str, &str, &str)] = &[
        ("port", "0", "0"),
        ("port", "65535", "65535"),
        ("PORT", "7000", "7000"),
        ("proto-max-bulk-len", "1mb", "1048576"),
        ("client-query-buffer-limit", "2gb", "2147483648"),
        ("hz", "0", "1"),
        ("hz", "1000", "500"),
        ("hz", "100", "100"),
        ("loglevel", "VERBOSE", "verbose"),
        ("loglevel", "warning", "warning"),
        ("rdbcompression", "NO", "no"),
        ("appendonly", "no", "no"),
        ("save", "900 1", "900 1"),
        ("save", "\"900 1 300 10\"", "900 1 300 10"),
        ("save", "\"\"", ""),
        ("save", "+10 010", "10 10"),
        ("bind", "127.0.0.1 -::1", "127.0.0.1 -::1"),
        ("bind", "\"\"", ""),
        ("requirepass", "secret", "secret"),
        ("requirepass", "\"\"", ""),
        ("dbfilename", "x.rdb", "x.rdb"),
        ("dbfilename", "\"\"", ""),
        ("logfile", "forkless.log", "forkless.log"),
        ("databases", "1", "1"),
        ("timeout", "5", "5"),
        ("maxclients", "4294967295", "4294967295"),
        ("maxmemory-policy", "ALLKEYS-LRU", "allkeys-lru"),
        ("appendfsync", "always", "always"),
        ("enable-protected-configs", "local", "local"),
        ("snapshot-mode", "FORK", "fork"),
        ("snapshot-writer", "io_uring", "io_uring"),
        ("snapshot-writer", "blocking", "blocking"),
        ("snapshot-compression", "zstd", "zstd"),
        ("snapshot-compression-level", "22", "22"),
        ("snapshot-max-bytes-per-sec", "100mb", "104857600"),
        ("snapshot-threads", "4", "4"),
        ("snapshot-nice", "19", "19"),
        ("snapshot-nice", "0", "0"),
        ("snapshot-idle-priority", "no", "no"),
        ("snapshot-idle-priority", "YES", "yes"),
        ("snapshot-max-retained-bytes", "64mb", "67108864"),
        ("snapshot-max-retained-bytes", "0", "0"),
        ("client-output-buffer-backpressure", "1mb", "1048576"),
        ("client-output-buffer-backpressure", "0", "0"),
        ("snapshot-max-retained-percent", "5", "5"),
        (
            "client-output-buffer-limit",
            "replica 1mb 2 3",
            "normal 0 0 0 slave 1048576 2 3 pubsub 33554432 8388608 60",
        ),
        (
            "client-output-buffer-limit",
            "\"normal 1 2 3 pubsub 4 5 6\"",
            "normal 1 2 3 slave 268435456 67108864 60 pubsub 4 5 6",
        ),
        (
            "client-output-buffer-limit",
            "pubsub 1k 1kb 1k",
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 1000 1024 1",
        ),
    ];
    for (name, args, expected) in cases {
        let config = load(&format!("{name} {args}")).unwrap();
        assert_eq!(value(&config, name), *expected, "{name} {args}");
    }
}

#[test]
fn typed_fields() {
    let config = load(
        "port 7000\nsave 900 1\nsave 300 10\nsnapshot-mode fork\nsnapshot-writer io_uring\n\
         snapshot-compression zstd\nsnapshot-compression-level 3\nrequirepass pw\n\
         bind 127.0.0.1 ::1\nloglevel debug\nproto-max-bulk-len 2mb\nsnapshot-threads 8\n\
         client-output-buffer-limit pubsub 1mb 2mb 3\n",
    )
    .unwrap();
    assert_eq!(config.port, 7000);
    assert_eq!(
        config.save,
        vec![
            SavePoint {
                seconds: 900,
                changes: 1
            },
            SavePoint {
                seconds: 300,
                changes: 10
            }
        ]
    );
    assert_eq!(config.snapshot_mode, SnapshotMode::Fork);
    assert_eq!(config.snapshot_writer, SnapshotWriter::IoUring);
    assert_eq!(config.snapshot_compression, SnapshotCompression::Zstd);
    assert_eq!(config.snapshot_compression_level, 3);
    assert_eq!(config.requirepass.as_deref(), Some("pw"));
    assert_eq!(config.bind, vec!["127.0.0.1".to_owned(), "::1".to_owned()]);
    assert_eq!(config.loglevel, LogLevel::Debug);
    assert_eq!(config.proto_max_bulk_len, 2 << 20);
    assert_eq!(config.snapshot_threads, 8);
    assert_eq!(
        config.client_output_buffer_limit.pubsub,
        OutputBufferLimit {
            hard_limit_bytes: 1 << 20,
            soft_limit_bytes: 2 << 20,
            soft_limit_seconds: 3,
        }
    );
    assert_eq!(LogLevel::Verbose.to_string(), "verbose");
    assert_eq!(SnapshotWriter::NAMES, ["auto", "io_uring", "blocking"]);
}

#[test]
fn save_lines_accumulate_and_empty_clears() {
    let points = |text: &str| value(&load(text).unwrap(), "save");
    assert_eq!(points("save 900 1\nsave 300 10"), "900 1 300 10");
    assert_eq!(
        points("save 900 1 300 10\nsave 60 10000"),
        "900 1 300 10 60 10000"
    );
    assert_eq!(points("save \"\"\nsave 900 1"), "900 1");
    assert_eq!(points("save 900 1\nsave \"\""), "");
    assert_eq!(points("save"), "");
    assert_eq!(points("save 900 1\nsave"), "900 1");
    assert_eq!(points("port 1"), "3600 1 300 100 60 10000");
}

#[test]
fn bad_values_have_redis_messages() {
    let not_a_dir = TempDir::new("notadir");
    let file = not_a_dir.file("plain", "");
    let not_a_dir_line = format!("dir {}", file.display());
    let seventeen = format!(
        "bind {}",
        (1..=17)
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let cases: &[(&str, &str)] = &[
        (
            "port 99999",
            "argument must be between 0 and 65535 inclusive",
        ),
        ("port -1", "argument must be between 0 and 65535 inclusive"),
        ("port abc", "argument couldn't be parsed into an integer"),
        ("port 01", "argument couldn't be parsed into an integer"),
        ("port +1", "argument couldn't be parsed into an integer"),
        ("port 1k", "argument couldn't be parsed into an integer"),
        ("port -0", "argument couldn't be parsed into an integer"),
        ("port \"\"", "argument couldn't be parsed into an integer"),
        (
            "maxclients 0",
            "argument must be between 1 and 4294967295 inclusive",
        ),
        (
            "maxclients -1",
            "argument must be between 1 and 4294967295 inclusive",
        ),
        (
            "maxclients 4294967296",
            "argument must be between 1 and 4294967295 inclusive",
        ),
        (
            "timeout -1",
            "argument must be between 0 and 2147483647 inclusive",
        ),
        (
            "tcp-keepalive 2147483648",
            "argument must be between 0 and 2147483647 inclusive",
        ),
        (
            "databases 0",
            "argument must be between 1 and 2147483647 inclusive",
        ),
        (
            "hz -1",
            "argument must be between 0 and 2147483647 inclusive",
        ),
        (
            "io-threads 200",
            "argument must be between 1 and 128 inclusive",
        ),
        (
            "proto-max-bulk-len 100",
            "argument must be between 1048576 and 9223372036854775807 inclusive",
        ),
        (
            "proto-max-bulk-len 99999999999999999999",
            "argument must be between 1048576 and 9223372036854775807 inclusive",
        ),
        ("proto-max-bulk-len 1x", "argument must be a memory value"),
        ("proto-max-bulk-len -1", "argument must be a memory value"),
        (
            "client-query-buffer-limit 99999999999999999999",
            "argument must be between 1048576 and 9223372036854775807 inclusive",
        ),
        ("maxmemory -1", "argument must be a memory value"),
        ("maxmemory -0", "argument must be a memory value"),
        ("maxmemory +1", "argument must be a memory value"),
        ("maxmemory 1.5gb", "argument must be a memory value"),
        ("maxmemory 1t", "argument must be a memory value"),
        ("maxmemory 0x10", "argument must be a memory value"),
        ("maxmemory \" 1\"", "argument must be a memory value"),
        ("rdbcompression maybe", "argument must be 'yes' or 'no'"),
        ("rdbcompression 1", "argument must be 'yes' or 'no'"),
        (
            "loglevel nothing",
            "argument(s) must be one of the following: debug, verbose, notice, warning",
        ),
        (
            "maxmemory-policy x",
            "argument(s) must be one of the following: volatile-lru, volatile-lfu, \
             volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, \
             noeviction",
        ),
        (
            "appendfsync FOO",
            "argument(s) must be one of the following: everysec, always, no",
        ),
        (
            "enable-protected-configs foo",
            "argument(s) must be one of the following: no, yes, local",
        ),
        (
            "snapshot-mode cow",
            "argument(s) must be one of the following: epoch, fork",
        ),
        (
            "snapshot-writer uring",
            "argument(s) must be one of the following: auto, io_uring, blocking",
        ),
        (
            "snapshot-compression lz4",
            "argument(s) must be one of the following: none, zstd",
        ),
        (
            "snapshot-compression-level 0",
            "argument must be between 1 and 22 inclusive",
        ),
        (
            "snapshot-compression-level 23",
            "argument must be between 1 and 22 inclusive",
        ),
        (
            "snapshot-max-bytes-per-sec fast",
            "argument must be a memory value",
        ),
        (
            "snapshot-threads -1",
            "argument must be between 0 and 1024 inclusive",
        ),
        (
            "snapshot-nice 20",
            "argument must be between 0 and 19 inclusive",
        ),
        (
            "dbfilename a/b",
            "dbfilename can't be a path, just a filename",
        ),
        (
            "dbfilename a\\b",
            "dbfilename can't be a path, just a filename",
        ),
        (
            "dir /nonexistent-forkless-test-dir",
            "No such file or directory",
        ),
        ("dir \"\"", "No such file or directory"),
        (&not_a_dir_line, "Not a directory"),
        ("save 1 2 3", "Invalid save parameters"),
        ("save 0 1", "Invalid save parameters"),
        ("save 10 -1", "Invalid save parameters"),
        ("save 900 1x", "Invalid save parameters"),
        (&seventeen, "Too many bind addresses specified."),
        (
            "client-output-buffer-limit normal 1 2",
            "Wrong number of arguments in buffer limit configuration.",
        ),
        (
            "client-output-buffer-limit master 1 2 3",
            "Invalid client class specified in buffer limit configuration.",
        ),
        (
            "client-output-buffer-limit pubsub -1 2 3",
            "Error in hard, soft or soft_seconds setting in buffer limit configuration.",
        ),
        (
            "client-output-buffer-limit pubsub 1 2 x",
            "Error in hard, soft or soft_seconds setting in buffer limit configuration.",
        ),
        ("rdbcompression yes no", "wrong number of arguments"),
        ("requirepass", "wrong number of arguments"),
        ("daemonize", "wrong number of arguments"),
        ("foo bar", "Bad directive or wrong number of arguments"),
        ("include", "Bad directive or wrong number of arguments"),
        ("include a b", "Bad directive or wrong number of arguments"),
        (
            "port \"unbalanced",
            "Unbalanced quotes in configuration line",
        ),
        ("port \"7000\"x", "Unbalanced quotes in configuration line"),
        (
            "port 'unbalanced",
            "Unbalanced quotes in configuration line",
        ),
        (
            // Redis names the word at the failing rule's index in the whole line: `alice`.
            "user alice on #abc",
            "Error in user declaration 'alice': The password hash must be exactly 64 \
             characters and contain only lowercase hexadecimal characters",
        ),
        (
            "user alice ~a allkeys ~b",
            "Error in user declaration '~a': Adding a pattern after the * pattern (or the \
             'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start \
             with an empty list of patterns",
        ),
        (
            "rename-command CONFIG \"\"",
            "rename-command is not supported by forkless yet: the command would stay available \
             under its own name",
        ),
        (
            "tls-port 6380",
            "tls-port is not supported by forkless yet: TLS is not implemented, so the port \
             would not be served encrypted",
        ),
        (
            "cluster-enabled yes",
            "cluster-enabled yes is not supported by forkless yet: cluster mode is not \
             implemented",
        ),
        (
            "loadmodule /x.so",
            "loadmodule is not supported by forkless: modules are not implemented",
        ),
        (
            "notify-keyspace-events KEq",
            "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.",
        ),
        (
            "hash-max-ziplist-entries -1",
            "argument must be between 0 and 9223372036854775807 inclusive",
        ),
        (
            "unixsocketperm 800",
            "argument couldn't be parsed as an octal number",
        ),
        (
            "unixsocketperm 1000",
            "argument must be between 0 and 777 inclusive",
        ),
        (
            "maxmemory-clients 101%",
            "percentage argument must be less or equal to 100",
        ),
        (
            "shutdown-on-sigterm save nosave",
            "shutdown can't have both 'save' and 'nosave' flags",
        ),
        ("oom-score-adj-values 0 200", "wrong number of arguments"),
        (
            "oom-score-adj-values 0 200 3000",
            "Invalid oom-score-adj-values, elements must be between -2000 and 2000.",
        ),
        (
            "maxmemory-clients 5x",
            "argument must be a memory or percent value",
        ),
        (
            "supervised maybe",
            "argument(s) must be one of the following: upstart, systemd, auto, no",
        ),
    ];
    for (line, reason) in cases {
        let text = format!("# comment\n\n  {line}  \nport 1\n");
        assert_eq!(
            load(&text),
            Err(ConfigError::Directive {
                line_number: 3,
                line: (*line).to_owned(),
                reason: (*reason).to_owned()
            }),
            "{line}"
        );
    }
}

#[test]
fn fatal_errors_print_like_redis() {
    let err = fails(&["--port", "99999"]);
    assert_eq!(
        err.to_string(),
        format!(
            "\n*** FATAL CONFIG FILE ERROR (forkless {VERSION}) ***\n\
             Reading the configuration file, at line 2\n>>> 'port \"99999\"'\n\
             argument must be between 0 and 65535 inclusive"
        )
    );
    // A name and its value in one argument is copied verbatim, as by redis-server.
    let err = fails(&["--port 99999"]);
    assert!(err.to_string().contains(">>> 'port 99999'\n"), "{err}");
    let err = fails(&["/nonexistent-forkless-dir/forkless.conf"]);
    assert_eq!(
        err.to_string(),
        "Fatal error, can't open config file '/nonexistent-forkless-dir/forkless.conf': \
         No such file or directory"
    );
}

/// The directive a failing command line reports, as (line number, echoed line, reason).
fn directive_error(args: &[&str]) -> (usize, String, String) {
    match fails(args) {
        ConfigError::Directive {
            line_number,
            line,
            reason,
        } => (line_number, line, reason),
        other => panic!("{other:?}"),
    }
}

#[test]
fn command_line_options() {
    let config = run(&["--port", "0", "--save", ""]);
    assert_eq!((config.port, config.save.as_slice()), (0, &[][..]));
    assert_eq!(config.config_file, None);

    let config = run(&["--save", "900", "1", "--save", "300", "10"]);
    assert_eq!(value(&config, "save"), "900 1 300 10");
    assert_eq!(
        value(&run(&["--save", "900 1 300 10"]), "save"),
        "900 1 300 10"
    );
    // A bare --save, last or before another option, means --save "".
    assert_eq!(value(&run(&["--port", "1", "--save"]), "save"), "");
    let config = run(&["--save", "--port", "7000"]);
    assert_eq!((value(&config, "save").as_str(), config.port), ("", 7000));
    assert_eq!(value(&run(&["--SAVE"]), "save"), "");
    assert_eq!(
        value(&run(&["--save", "", "--save", "1", "1"]), "save"),
        "1 1"
    );
    assert_eq!(
        run(&["--bind", "127.0.0.1", "::1"]).bind,
        vec!["127.0.0.1", "::1"]
    );
    assert_eq!(
        run(&["--requirepass", "a \"b\"\n"]).requirepass.as_deref(),
        Some("a \"b\"\n")
    );
    assert_eq!(run(&["--LogLevel", "WARNING"]).loglevel, LogLevel::Warning);
    assert_eq!(
        run(&["--snapshot-mode", "fork"]).snapshot_mode,
        SnapshotMode::Fork
    );
    assert_eq!(run(&[]), Config::default());

    // Errors name the virtual config line, as redis-server does.
    assert_eq!(
        directive_error(&["--foo", "bar"]),
        (
            2,
            "foo \"bar\"".to_owned(),
            "Bad directive or wrong number of arguments".to_owned()
        )
    );
    // After a bare name the next argument is its value even when it starts with "--".
    assert_eq!(
        directive_error(&["--daemonize", "--port", "7780"]),
        (
            2,
            "daemonize \"--port\" \"7780\"".to_owned(),
            "wrong number of arguments".to_owned()
        )
    );
    assert_eq!(
        directive_error(&["--port", "7780", "--save", "1", "2", "3"]),
        (
            3,
            "save \"1\" \"2\" \"3\"".to_owned(),
            "Invalid save parameters".to_owned()
        )
    );
    assert_eq!(
        directive_error(&["--port", "7777", "--port"]),
        (3, "port".to_owned(), "wrong number of arguments".to_owned())
    );
    assert_eq!(
        directive_error(&["--port", "7780", "--save", "--port", "99999"]).0,
        4
    );
    assert_eq!(directive_error(&["--port", "1", "--version"]).1, "version");
    assert_eq!(
        directive_error(&["--port", "\"7780\""]).1,
        "port \"\\\"7780\\\"\""
    );
}

#[test]
fn version_and_help() {
    for (arg, expected) in [
        ("-v", Invocation::Version),
        ("--version", Invocation::Version),
        ("-h", Invocation::Help),
        ("--help", Invocation::Help),
    ] {
        assert_eq!(
            Config::from_args(&strings(&[arg, "--port", "x"])),
            Ok(expected)
        );
    }
    assert!(USAGE.starts_with("Usage: forkless-server"));
}

#[test]
fn config_file_then_command_line() {
    let dir = TempDir::new("file-cli");
    let path = dir.file("a.conf", "port 7000\nsave 900 1\nloglevel debug\n");
    let path_str = path.to_str().unwrap();
    let config = run(&[path_str, "--port", "7001", "--save", "60", "5"]);
    assert_eq!(config.config_file.as_deref(), Some(path.as_path()));
    assert_eq!(config.port, 7001);
    assert_eq!(config.loglevel, LogLevel::Debug);
    // As in Redis, command-line save points add to the file's.
    assert_eq!(value(&config, "save"), "900 1 60 5");

    // Command-line lines are numbered after the file's, plus the separating newline.
    assert_eq!(directive_error(&[path_str, "--port", "x"]).0, 5);
    let no_newline = dir.file("b.conf", "port 7000");
    assert_eq!(
        directive_error(&[no_newline.to_str().unwrap(), "--port", "x"]).0,
        2
    );
    // A value with no option name before it is a line of its own.
    assert_eq!(
        directive_error(&[path_str, "bar"]),
        (
            5,
            "\"bar\"".to_owned(),
            "Bad directive or wrong number of arguments".to_owned()
        )
    );
}

#[test]
fn include_directive() {
    let dir = TempDir::new("include");
    let inner = dir.file("inner.conf", "timeout 7\nport 7001\n");
    let outer = dir.file(
        "outer.conf",
        &format!("port 7000\ninclude {}\nhz 20\n", inner.display()),
    );
    let config = run(&[outer.to_str().unwrap()]);
    assert_eq!((config.port, config.timeout, config.hz), (7001, 7, 20));
    // Relative includes resolve against `dir` at that point, where Redis has chdir'ed.
    let relative = dir.file(
        "rel.conf",
        &format!("dir {}\ninclude inner.conf\n", dir.0.display()),
    );
    assert_eq!(run(&[relative.to_str().unwrap()]).timeout, 7);
    // Errors in an included file carry its own line numbers.
    let bad = dir.file("bad.conf", "port 1\nrdbcompression 1\n");
    let including = dir.file(
        "inc.conf",
        &format!("port 2\n\ninclude {}\n", bad.display()),
    );
    assert_eq!(directive_error(&[including.to_str().unwrap()]).0, 2);
    let missing = dir.file("missing.conf", "include /nonexistent-forkless.conf\n");
    assert!(matches!(
        fails(&[missing.to_str().unwrap()]),
        ConfigError::Open { .. }
    ));
    let looping = dir.0.join("loop.conf");
    fs::write(&looping, format!("include {}\n", looping.display())).unwrap();
    assert_eq!(
        directive_error(&[looping.to_str().unwrap()]).2,
        "too many nested include directives"
    );
}

#[test]
fn config_get_patterns() {
    let config = Config::default();
    let names = |patterns: &[&str]| -> Vec<String> {
        let patterns: Vec<&[u8]> = patterns.iter().map(|p| p.as_bytes()).collect();
        config
            .get(&patterns)
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    };
    assert_eq!(
        config.get(&[b"port"]),
        vec![("port".to_owned(), "6379".to_owned())]
    );
    // Exact names are echoed as typed; each option appears once.
    assert_eq!(names(&["PoRt"]), ["PoRt"]);
    assert_eq!(names(&["port", "PORT", "po*"]), ["port"]);
    assert_eq!(names(&["P*T"]), ["port"]);
    assert_eq!(names(&["p?rt", "bind"]), ["port", "bind"]);
    assert_eq!(names(&["nosuch"]), Vec::<String>::new());
    assert_eq!(names(&["nosuch*", "hz"]), ["hz"]);
    assert_eq!(
        names(&["zset-max-*", "hash-max-ziplist-*"]),
        [
            "zset-max-listpack-entries",
            "zset-max-listpack-value",
            "zset-max-ziplist-entries",
            "zset-max-ziplist-value",
            "hash-max-ziplist-entries",
            "hash-max-ziplist-value",
        ]
    );
    // An old name finds its option, and is echoed as typed.
    assert_eq!(
        config.get(&[b"list-max-ziplist-size"]),
        vec![("list-max-ziplist-size".to_owned(), "-2".to_owned())]
    );
    assert_eq!(
        names(&["[a-c]*"])[..5],
        [
            "bind",
            "client-query-buffer-limit",
            "appendonly",
            "appendfsync",
            "client-output-buffer-limit"
        ]
    );
    assert_eq!(names(&["snapshot-*"]).len(), 10);
    let hidden = OPTIONS
        .iter()
        .filter(|spec| spec.flags & HIDDEN != 0)
        .count();
    assert_eq!(
        names(&["*"]).len(),
        OPTIONS.len() - hidden + super::table::ALIASES.len()
    );
    // A backslash alone does not make a glob (Redis checks for `[*?` only).
    assert_eq!(names(&["por\\t"]), Vec::<String>::new());
}

#[test]
fn config_set_changes_and_reports() {
    let mut config = Config::default();
    assert_eq!(
        set(&mut config, &[("timeout", "5"), ("hz", "10")]),
        Ok(vec!["timeout"])
    );
    assert_eq!(config.timeout, 5);
    assert_eq!(set(&mut config, &[("TIMEOUT", "6")]), Ok(vec!["timeout"]));
    assert_eq!(set(&mut config, &[("save", "")]), Ok(vec!["save"]));
    assert!(config.save.is_empty());
    assert_eq!(
        set(&mut config, &[("save", "900 1 300 10")]),
        Ok(vec!["save"])
    );
    assert_eq!(value(&config, "save"), "900 1 300 10");
    assert_eq!(set(&mut config, &[("hz", "0")]), Ok(vec!["hz"]));
    assert_eq!(config.hz, 1);
    assert_eq!(
        set(&mut config, &[("requirepass", "pw")]),
        Ok(vec!["requirepass"])
    );
    assert_eq!(config.requirepass.as_deref(), Some("pw"));
    assert_eq!(
        set(&mut config, &[("requirepass", "")]),
        Ok(vec!["requirepass"])
    );
    assert_eq!(config.requirepass, None);
    assert_eq!(
        set(&mut config, &[("client-output-buffer-limit", "")]),
        Ok(vec![])
    );
    assert_eq!(
        set(
            &mut config,
            &[("client-output-buffer-limit", "normal 1mb 2mb 3")]
        ),
        Ok(vec!["client-output-buffer-limit"])
    );
    assert_eq!(
        config.client_output_buffer_limit.normal.hard_limit_bytes,
        1 << 20
    );
    assert_eq!(
        set(&mut config, &[("snapshot-mode", "fork")]),
        Ok(vec!["snapshot-mode"])
    );
    assert_eq!(config.snapshot_mode, SnapshotMode::Fork);
    // maxmemory acts now (evict.rs): accepted and shown in bytes, as Redis shows it.
    assert_eq!(
        set(&mut config, &[("maxmemory", "1gb")]),
        Ok(vec!["maxmemory"])
    );
    assert_eq!(value(&config, "maxmemory"), "1073741824");
}

#[test]
fn config_set_is_all_or_nothing() {
    let mut config = Config::default();
    let before = config.clone();
    assert_eq!(
        set(&mut config, &[("timeout", "5"), ("maxclients", "x")]),
        Err(
            "ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument \
             couldn't be parsed into an integer"
                .to_owned()
        )
    );
    assert_eq!(config, before);
    assert_eq!(
        set(
            &mut config,
            &[("save", "60 1"), ("PROTO-MAX-BULK-LEN", "100")]
        ),
        Err(
            "ERR CONFIG SET failed (possibly related to argument 'proto-max-bulk-len') - \
             argument must be between 1048576 and 9223372036854775807 inclusive"
                .to_owned()
        )
    );
    assert_eq!(config, before);
    // CONFIG SET splits multi-argument values on single spaces, unlike config files.
    assert_eq!(
        set(&mut config, &[("save", " 900 1 ")]),
        Err(
            "ERR CONFIG SET failed (possibly related to argument 'save') - Invalid save \
             parameters"
                .to_owned()
        )
    );
    assert_eq!(value(&load("save \" 900 1 \"").unwrap(), "save"), "900 1");
    assert_eq!(config, before);
}

#[test]
fn config_set_name_errors_come_first_in_argument_order() {
    let mut config = Config::default();
    let unknown = "ERR Unknown option or number of arguments for CONFIG SET - 'foo'";
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("foo", "1"), ("timeout", "5")], unknown),
        (&[("timeout", "5"), ("foo", "1")], unknown),
        (&[("timeout", "x"), ("foo", "1")], unknown),
        (&[("foo", "1"), ("databases", "1")], unknown),
        (
            &[("databases", "1"), ("foo", "1")],
            "ERR CONFIG SET failed (possibly related to argument 'databases') - can't set \
             immutable config",
        ),
        (
            &[("timeout", "5"), ("timeout", "6")],
            "ERR CONFIG SET failed (possibly related to argument 'timeout') - duplicate \
             parameter",
        ),
        (
            &[("TIMEOUT", "5"), ("Timeout", "6")],
            "ERR CONFIG SET failed (possibly related to argument 'Timeout') - duplicate \
             parameter",
        ),
        (
            &[("dir", "/tmp")],
            "ERR CONFIG SET failed (possibly related to argument 'dir') - can't set \
             protected config",
        ),
        (
            &[("DBFILENAME", "x.rdb")],
            "ERR CONFIG SET failed (possibly related to argument 'DBFILENAME') - can't set \
             protected config",
        ),
    ];
    for (pairs, expected) in cases {
        assert_eq!(
            set(&mut config, pairs),
            Err((*expected).to_owned()),
            "{pairs:?}"
        );
        assert_eq!(config, Config::default());
    }
    for name in [
        "unixsocket",
        "unixsocketperm",
        "databases",
        "logfile",
        "daemonize",
        "rdbchecksum",
        "io-threads",
        "enable-protected-configs",
    ] {
        assert_eq!(
            set(&mut config, &[(name, "1")]),
            Err(format!(
                "ERR CONFIG SET failed (possibly related to argument '{name}') - can't set \
                 immutable config"
            ))
        );
    }
}

#[test]
fn protected_options_follow_enable_protected_configs() {
    let dir = TempDir::new("protected");
    fs::create_dir(dir.0.join("sub")).unwrap();
    let mut config = Config {
        enable_protected_configs: ProtectedConfigs::Yes,
        ..Config::default()
    };
    let dir_str = dir.0.to_str().unwrap();
    assert_eq!(set(&mut config, &[("dir", dir_str)]), Ok(vec!["dir"]));
    // Relative to the current dir, like chdir.
    assert_eq!(set(&mut config, &[("dir", "sub")]), Ok(vec!["dir"]));
    assert_eq!(config.dir, dir.0.join("sub"));
    assert_eq!(set(&mut config, &[("dir", "..")]), Ok(vec!["dir"]));
    assert_eq!(config.dir, dir.0);
    assert_eq!(
        set(&mut config, &[("dir", "missing")]),
        Err(
            "ERR CONFIG SET failed (possibly related to argument 'dir') - No such file or \
             directory"
                .to_owned()
        )
    );
    assert_eq!(
        set(&mut config, &[("dbfilename", "a/b")]),
        Err(
            "ERR CONFIG SET failed (possibly related to argument 'dbfilename') - \
             dbfilename can't be a path, just a filename"
                .to_owned()
        )
    );
    assert_eq!(
        set(&mut config, &[("dbfilename", "x.rdb")]),
        Ok(vec!["dbfilename"])
    );
    assert_eq!(config.rdb_path(), dir.0.join("x.rdb"));

    config.enable_protected_configs = ProtectedConfigs::Local;
    assert_eq!(
        config.set_from_client(&[(b"dbfilename", b"y.rdb")], true),
        Ok(vec!["dbfilename"])
    );
    assert!(
        config
            .set_from_client(&[(b"dbfilename", b"z.rdb")], false)
            .is_err()
    );
    assert_eq!(config.dbfilename, "y.rdb");
}

#[test]
fn rewrite_needs_a_config_file() {
    assert_eq!(
        Config::default().rewrite(),
        Err("ERR The server is running without a config file".to_owned())
    );
}

#[test]
fn rewrite_round_trips_and_keeps_the_file() {
    let dir = TempDir::new("rewrite");
    let inner = dir.file("inner.conf", "timeout 7\n");
    let original = format!(
        "# My config\n\
         port 7000\n\
         \n\
         # Snapshots\n\
         save 900 1\n\
         save 300 10\n\
         include {}\n\
         LogLevel warning\n\
         snapshot-max-bytes-per-sec 100mb\n\
         client-output-buffer-limit pubsub 1mb 2mb 3\n\
         \n\
         \n\
         # trailing comment\n",
        inner.display()
    );
    let path = dir.file("forkless.conf", &original);
    let mut config = run(&[path.to_str().unwrap()]);
    assert_eq!(config.timeout, 7);
    let changed = set(
        &mut config,
        &[
            ("save", "60 5"),
            ("loglevel", "notice"),
            ("maxclients", "50"),
            ("requirepass", "p w\"x\n"),
            ("hz", "20"),
            ("proto-max-bulk-len", "3mb"),
        ],
    )
    .unwrap();
    assert_eq!(changed.len(), 6);
    config.rewrite().unwrap();

    let content = fs::read_to_string(&path).unwrap();
    let expected = format!(
        "# My config\n\
         port 7000\n\
         \n\
         # Snapshots\n\
         save 60 5\n\
         \n\
         include {}\n\
         loglevel notice\n\
         snapshot-max-bytes-per-sec 100mb\n\
         client-output-buffer-limit pubsub 1mb 2mb 3\n\
         \n\
         # trailing comment\n\
         # Generated by CONFIG REWRITE\n\
         dir \"{}\"\n\
         maxclients 50\n\
         timeout 7\n\
         proto-max-bulk-len 3mb\n\
         hz 20\n\
         requirepass \"p w\\\"x\\n\"\n",
        inner.display(),
        std::env::current_dir().unwrap().display()
    );
    // `requirepass` comes before `dir` in the table; compare as sets of appended lines.
    let sorted = |text: &str| {
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        lines.join("\n")
    };
    assert_eq!(sorted(&content), sorted(&expected));
    assert!(content.starts_with("# My config\nport 7000\n\n# Snapshots\nsave 60 5\n\ninclude "));
    assert_eq!(content.matches("# Generated by CONFIG REWRITE").count(), 1);

    // Loading the rewritten file gives the same configuration.
    assert_eq!(run(&[path.to_str().unwrap()]), config);

    // Lines edited in after startup that the loader would refuse become comments.
    let edited = format!("{content}bogus-directive 1\nport \"unbalanced\n");
    fs::write(&path, &edited).unwrap();
    config.rewrite().unwrap();
    let content = fs::read_to_string(&path).unwrap();
    assert!(
        content.ends_with("\n# ??? bogus-directive 1\n# ??? port \"unbalanced\n"),
        "{content}"
    );
    assert_eq!(run(&[path.to_str().unwrap()]), config);
    // A second rewrite changes nothing.
    config.rewrite().unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), content);

    // A deleted file is recreated from the running configuration.
    fs::remove_file(&path).unwrap();
    config.rewrite().unwrap();
    assert_eq!(run(&[path.to_str().unwrap()]), config);
    assert!(fs::read_dir(&dir.0).unwrap().all(|entry| {
        !entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".tmp-")
    }));
}

#[test]
fn rewrite_of_defaults_writes_only_dir_and_save() {
    let dir = TempDir::new("rewrite-defaults");
    let path = dir.file("empty.conf", "");
    let config = run(&[path.to_str().unwrap()]);
    config.rewrite().unwrap();
    let content = fs::read_to_string(&path).unwrap();
    assert_eq!(
        content,
        format!(
            "# Generated by CONFIG REWRITE\ndir \"{}\"\nsave 3600 1\nsave 300 100\n\
             save 60 10000\n",
            std::env::current_dir().unwrap().display()
        )
    );
    assert_eq!(run(&[path.to_str().unwrap()]), config);
    // save "" survives a rewrite.
    let mut config = config;
    set(&mut config, &[("save", "")]).unwrap();
    config.rewrite().unwrap();
    assert!(fs::read_to_string(&path).unwrap().contains("\nsave \"\"\n"));
    assert_eq!(run(&[path.to_str().unwrap()]), config);
}

#[test]
fn example_config_file_is_complete_and_loads_to_the_defaults() {
    let example = include_str!("../../../../config/forkless.conf");
    assert_eq!(load(example), Ok(Config::default()));
    for spec in OPTIONS {
        let documented = example.lines().any(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|name| name == spec.name)
        });
        assert!(
            documented,
            "config/forkless.conf does not set {}",
            spec.name
        );
    }
}

#[test]
fn lexer_matches_sdssplitargs() {
    let split = |line: &str| split_args(line.as_bytes());
    let words = |words: &[&str]| Some(words.iter().map(|w| w.as_bytes().to_vec()).collect());
    assert_eq!(split("  a  \"b c\" 'd e'\t"), words(&["a", "b c", "d e"]));
    assert_eq!(
        split("\"\\x41\\n\\t\\\"\" '\\'x'"),
        words(&["A\n\t\"", "'x"])
    );
    assert_eq!(split("ab\"cd\" \"\""), words(&["abcd", ""]));
    assert_eq!(split("\"\\xZZ\""), words(&["xZZ"]));
    assert_eq!(split(""), words(&[]));
    assert_eq!(split("\"a\"b"), None);
    assert_eq!(split("'a'b"), None);
    assert_eq!(split("\"a"), None);
    assert_eq!(split("'a"), None);
    let all_bytes: Vec<u8> = (1..=255).collect();
    assert_eq!(split_args(&repr(&all_bytes)), Some(vec![all_bytes]));
    assert_eq!(trim(b" \t a b \r\n"), b"a b");
    assert_eq!(trim(b" \t\r\n"), b"");
}

#[test]
fn numbers_parse_like_redis() {
    assert_eq!(parse_memory(b"512mb"), Some(512 << 20));
    assert_eq!(parse_memory(b"1GB"), Some(1 << 30));
    assert_eq!(parse_memory(b"1m"), Some(1_000_000));
    assert_eq!(parse_memory(b""), Some(0));
    assert_eq!(parse_memory(b"-1"), None);
    assert_eq!(parse_memory(&[b'1'; 128]), None);
    assert_eq!(format_memory(0), "0");
    assert_eq!(format_memory(512 << 20), "512mb");
    assert_eq!(format_memory(1 << 30), "1gb");
    assert_eq!(format_memory(3 << 10), "3kb");
    assert_eq!(format_memory(1000), "1000");
    assert_eq!(parse_strict_i64(b"-9223372036854775808"), Some(i64::MIN));
    assert_eq!(parse_strict_i64(b"9223372036854775807"), Some(i64::MAX));
    assert_eq!(parse_strict_i64(b"9223372036854775808"), None);
    assert_eq!(parse_strict_i64(b"-"), None);
    assert_eq!(c_strtoll(b" +12"), (12, true));
    assert_eq!(c_strtoll(b"12x"), (12, false));
    assert_eq!(c_strtoll(b""), (0, true));
    assert_eq!(c_strtoll(b" "), (0, false));
    assert_eq!(c_strtoll(b"-99999999999999999999"), (i64::MIN, true));
    assert_eq!(
        strerror(&io::Error::from_raw_os_error(2)),
        "No such file or directory"
    );
}

#[test]
fn old_names_set_the_new_options() {
    let mut config = Config::default();
    assert_eq!(
        set(&mut config, &[("hash-max-ziplist-entries", "16")]),
        Ok(vec!["hash-max-listpack-entries"])
    );
    assert_eq!(value(&config, "hash-max-listpack-entries"), "16");
    assert_eq!(config.stored_int("hash-max-ziplist-entries", 0), 16);
    // Setting an option under both names at once is a duplicate, as in Redis.
    assert_eq!(
        set(
            &mut config,
            &[
                ("list-max-ziplist-size", "1"),
                ("list-max-listpack-size", "2")
            ]
        ),
        Err(
            "ERR CONFIG SET failed (possibly related to argument 'list-max-listpack-size') - \
             duplicate parameter"
                .to_owned()
        )
    );
    assert_eq!(
        load("zset-max-ziplist-value 1kb").map(|c| value(&c, "zset-max-listpack-value")),
        Ok("1024".to_owned())
    );
}

#[test]
fn stored_options_check_and_render_like_redis() {
    // (config-file line, CONFIG GET name, rendering)
    let cases: &[(&str, &str, &str)] = &[
        ("activerehashing NO", "activerehashing", "no"),
        ("repl-backlog-size 2mb", "repl-backlog-size", "2097152"),
        ("maxmemory-clients 10%", "maxmemory-clients", "10%"),
        ("maxmemory-clients 1kb", "maxmemory-clients", "1024"),
        ("unixsocketperm 700", "unixsocketperm", "700"),
        ("oom-score-adj Relative", "oom-score-adj", "yes"),
        (
            "shutdown-on-sigint now save",
            "shutdown-on-sigint",
            "save now",
        ),
        (
            "shutdown-on-sigint default",
            "shutdown-on-sigint",
            "default",
        ),
        (
            "oom-score-adj-values 1 -2 3",
            "oom-score-adj-values",
            "1 -2 3",
        ),
        (
            "latency-tracking-info-percentiles 50.5 99",
            "latency-tracking-info-percentiles",
            "50.5 99",
        ),
        (
            "latency-tracking-info-percentiles \"\"",
            "latency-tracking-info-percentiles",
            "",
        ),
        (
            "notify-keyspace-events KEA",
            "notify-keyspace-events",
            "AKE",
        ),
        (
            "notify-keyspace-events Kgx$nm",
            "notify-keyspace-events",
            "g$xnKm",
        ),
        ("notify-keyspace-events \"\"", "notify-keyspace-events", ""),
        (
            "slowlog-log-slower-than -1",
            "slowlog-log-slower-than",
            "-1",
        ),
        ("list-max-listpack-size -5", "list-max-listpack-size", "-5"),
        (
            "proc-title-template \"{title}\"",
            "proc-title-template",
            "{title}",
        ),
        ("replicaof no one", "replicaof", ""),
        ("slaveof 127.0.0.1 6380", "replicaof", "127.0.0.1 6380"),
    ];
    for (line, name, rendered) in cases {
        let config = load(line).unwrap_or_else(|err| panic!("{line}: {err}"));
        assert_eq!(value(&config, name), *rendered, "{line}");
        // CONFIG REWRITE's line loads back to the same value.
        let spec = lookup(name.as_bytes()).unwrap();
        for rewritten in spec.lines(&config) {
            let again = load(&String::from_utf8(rewritten.clone()).unwrap()).unwrap();
            assert_eq!(
                value(&again, name),
                *rendered,
                "{}",
                String::from_utf8_lossy(&rewritten)
            );
        }
    }
    assert_eq!(
        load("notify-keyspace-events KEA")
            .unwrap()
            .notify_keyspace_events,
        notify_class::KEYSPACE | notify_class::KEYEVENT | notify_class::ALL
    );
}

/// Options that forkless stores without acting on are listed for the startup log only when
/// they differ from Redis's default.
#[test]
fn inert_settings_are_the_changed_unsupported_options() {
    assert_eq!(Config::default().inert_settings(), vec![]);
    let config =
        load("activedefrag yes\nhash-max-listpack-entries 4\nio-threads 4\nrepl-timeout 60")
            .unwrap();
    assert_eq!(
        config.inert_settings(),
        vec![
            ("io-threads", "4".to_owned()),
            ("activedefrag", "yes".to_owned())
        ]
    );
}

/// The first line Redis's test harness writes into every server's config used to be fatal.
#[test]
fn always_show_logo_loads() {
    let config = load("always-show-logo yes").unwrap();
    assert_eq!(value(&config, "always-show-logo"), "yes");
}

/// `malloc-arena-max` is immutable like `worker-threads` (below): glibc only caps arenas not
/// yet created, so it is set once, at startup.
#[test]
fn malloc_arena_max_accepts_its_current_value_only() {
    let mut config = load("malloc-arena-max 4").unwrap();
    assert_eq!(config.malloc_arena_max, 4);
    assert_eq!(set(&mut config, &[("malloc-arena-max", "4")]), Ok(vec![]));
    assert!(set(&mut config, &[("malloc-arena-max", "2")]).is_err());
    assert!(load("malloc-arena-max -1").is_err());
}

/// The retained budget: `snapshot-max-retained-bytes`, capped by a share of `maxmemory` when
/// both are set, never scaled below 1 MiB; either alone when the other is off.
#[test]
fn the_retained_budget_is_the_smaller_of_bytes_and_share() {
    let budget = |bytes: u64, percent: u64, maxmemory: u64| {
        let config = Config {
            snapshot_max_retained_bytes: bytes,
            snapshot_max_retained_percent: percent,
            maxmemory,
            ..Config::default()
        };
        config.snapshot_retained_budget()
    };
    const MIB: u64 = 1 << 20;
    assert_eq!(budget(16 * MIB, 1, 0), 16 * MIB);
    assert_eq!(budget(16 * MIB, 1, 200 * MIB), 2 * MIB);
    assert_eq!(budget(16 * MIB, 1, 8192 * MIB), 16 * MIB);
    assert_eq!(budget(16 * MIB, 1, 10 * MIB), MIB);
    assert_eq!(budget(MIB / 2, 1, 10 * MIB), MIB / 2);
    assert_eq!(budget(16 * MIB, 0, 200 * MIB), 16 * MIB);
    assert_eq!(budget(0, 1, 200 * MIB), 2 * MIB);
    assert_eq!(budget(0, 0, 200 * MIB), 0);
    assert_eq!(budget(0, 1, 0), 0);
}

/// `worker-threads` is forkless's own immutable option: Redis's "CONFIG SET every CONFIG GET *
/// value back" (introspection's CONFIG sanity) skips only Redis's immutable options, so setting
/// it to its current value is accepted, and any change is refused.
#[test]
fn worker_threads_accepts_its_current_value_only() {
    let mut config = Config::default();
    let current = config.get(&[b"worker-threads"])[0].1.clone();
    assert_eq!(
        set(&mut config, &[("worker-threads", &current)]),
        Ok(vec![])
    );
    let other = if current == "3" { "4" } else { "3" };
    assert_eq!(
        set(&mut config, &[("worker-threads", other)]),
        Err(
            "ERR CONFIG SET failed (possibly related to argument 'worker-threads') - can't set \
             immutable config"
                .to_owned()
        )
    );
    assert_eq!(config, Config::default());
}
