//! End-to-end tests of the server commands (INFO, CONFIG, COMMAND, DBSIZE, FLUSHDB, FLUSHALL,
//! TIME, SHUTDOWN) against the real binary: exact replies where Redis 7.0 fixes them, and the
//! effects of CONFIG SET on live connections.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use forkless_tests::{RawConn, TestServer, unique_dir, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

fn start() -> TestServer {
    TestServer::start(BIN, &[])
}

/// The payload of a RESP2 bulk string or RESP3 verbatim string reply.
fn bulk_text(reply: &[u8]) -> String {
    let text = String::from_utf8(reply.to_vec()).expect("utf-8 reply");
    let (header, rest) = text.split_once("\r\n").expect("a header line");
    assert!(
        header.starts_with('$') || header.starts_with('='),
        "not a bulk reply: {text:?}"
    );
    let body = rest.strip_suffix("\r\n").expect("CRLF after the payload");
    let len: usize = header[1..].parse().expect("length");
    assert_eq!(body.len(), len, "length header matches");
    body.to_string()
}

fn info(conn: &mut RawConn, sections: &[&str]) -> String {
    let mut args: Vec<&[u8]> = vec![b"INFO"];
    args.extend(sections.iter().map(|s| s.as_bytes()));
    bulk_text(&conn.call(&args))
}

/// The `name:value` fields of an INFO text.
fn fields(info: &str) -> HashMap<String, String> {
    info.split("\r\n")
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line.split_once(':').expect("name:value");
            (name.to_string(), value.to_string())
        })
        .collect()
}

fn field_u64(fields: &HashMap<String, String>, name: &str) -> u64 {
    fields
        .get(name)
        .unwrap_or_else(|| panic!("INFO has no {name}"))
        .parse()
        .expect(name)
}

fn headers(info: &str) -> Vec<&str> {
    info.split("\r\n")
        .filter(|line| line.starts_with("# "))
        .collect()
}

#[test]
fn info_has_every_section_and_plausible_values() {
    let server = start();
    let mut conn = server.raw();
    let mut second = server.raw();
    // A reply proves the server has registered the connection.
    assert_eq!(second.call(&[b"PING"]), b"+PONG\r\n");
    let text = info(&mut conn, &[]);
    assert_eq!(
        headers(&text),
        [
            "# Server",
            "# Clients",
            "# Memory",
            "# Persistence",
            "# Stats",
            "# Replication",
            "# CPU",
            "# Modules",
            "# Errorstats",
            "# Cluster",
            "# Keyspace"
        ]
    );
    // Sections are separated by one empty line and every line ends in CRLF.
    assert!(text.ends_with("\r\n") && !text.ends_with("\r\n\r\n"));
    assert!(text.contains("\r\n\r\n# Clients\r\n"));
    let fields = fields(&text);
    assert_eq!(fields["redis_version"], "7.0.15");
    assert_eq!(fields["forkless_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(fields["redis_mode"], "standalone");
    assert_eq!(fields["arch_bits"], "64");
    assert_eq!(field_u64(&fields, "tcp_port"), u64::from(server.port()));
    assert_eq!(fields["run_id"].len(), 40);
    assert!(fields["run_id"].bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(field_u64(&fields, "process_id") > 0);
    assert!(field_u64(&fields, "uptime_in_seconds") < 600);
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    assert!(field_u64(&fields, "server_time_usec").abs_diff(now_us) < 60_000_000);
    assert_eq!(fields["hz"], "10");
    assert_eq!(fields["config_file"], "");
    assert!(fields["executable"].ends_with("forkless-server"));

    assert_eq!(field_u64(&fields, "connected_clients"), 2);
    assert_eq!(fields["maxclients"], "10000");
    assert_eq!(fields["blocked_clients"], "0");

    // used_memory is what the allocator handed out (an idle server: some hundred KiB, as
    // Redis's), less than the process's resident set, which includes the binary.
    let used = field_u64(&fields, "used_memory");
    assert!(
        used > 100 << 10,
        "a running server allocates more than 100 KiB: {used}"
    );
    assert!(field_u64(&fields, "used_memory_rss") > used);
    assert!(field_u64(&fields, "used_memory_peak") >= used);
    assert!(field_u64(&fields, "used_memory_startup") <= used);
    assert!(fields["used_memory_human"].ends_with(['K', 'M']));
    assert_eq!(fields["maxmemory"], "0");
    assert_eq!(fields["maxmemory_policy"], "noeviction");

    assert_eq!(fields["loading"], "0");
    assert_eq!(fields["rdb_changes_since_last_save"], "0");
    assert_eq!(fields["rdb_bgsave_in_progress"], "0");
    assert_eq!(fields["rdb_last_bgsave_status"], "ok");
    assert!(field_u64(&fields, "rdb_last_save_time").abs_diff(now_us / 1_000_000) < 600);
    assert_eq!(fields["aof_enabled"], "0");
    assert_eq!(fields["snapshot_mode"], "epoch");

    assert_eq!(field_u64(&fields, "total_connections_received"), 2);
    assert!(field_u64(&fields, "total_net_input_bytes") > 0);
    assert_eq!(fields["rejected_connections"], "0");
    assert_eq!(fields["expired_keys"], "0");
    assert!(fields.contains_key("instantaneous_ops_per_sec"));

    assert_eq!(fields["role"], "master");
    assert_eq!(fields["connected_slaves"], "0");
    assert_eq!(fields["master_replid"].len(), 40);
    let cpu: f64 = fields["used_cpu_user"].parse().unwrap();
    assert!(cpu >= 0.0);
    assert_eq!(fields["cluster_enabled"], "0");

    let everything = info(&mut conn, &["everything"]);
    assert_eq!(headers(&everything), headers(&info(&mut conn, &["all"])));
    assert!(headers(&everything).contains(&"# Commandstats"));
    // Several sections at once, any case, in Redis's order whatever the order asked.
    assert_eq!(
        headers(&info(&mut conn, &["KEYSPACE", "server"])),
        ["# Server", "# Keyspace"]
    );
    assert_eq!(info(&mut conn, &["nosuchsection"]), "");
}

#[test]
fn info_keyspace_follows_the_data() {
    let server = start();
    let mut conn = server.raw();
    assert_eq!(info(&mut conn, &["keyspace"]), "# Keyspace\r\n");
    assert_eq!(conn.call(&[b"SET", b"a", b"1"]), b"+OK\r\n");
    assert_eq!(conn.call(&[b"SET", b"b", b"2"]), b"+OK\r\n");
    assert_eq!(conn.call(&[b"SELECT", b"5"]), b"+OK\r\n");
    assert_eq!(conn.call(&[b"SET", b"c", b"3", b"EX", b"100"]), b"+OK\r\n");
    assert_eq!(conn.call(&[b"DBSIZE"]), b":1\r\n");
    let keyspace = info(&mut conn, &["keyspace"]);
    let lines: Vec<&str> = keyspace.split("\r\n").collect();
    assert_eq!(lines[..2], ["# Keyspace", "db0:keys=2,expires=0,avg_ttl=0"]);
    let avg_ttl: u64 = lines[2]
        .strip_prefix("db5:keys=1,expires=1,avg_ttl=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(avg_ttl > 90_000 && avg_ttl <= 100_000, "avg_ttl {avg_ttl}");
    assert_eq!(lines[3..], [""]);
    assert_eq!(
        field_u64(
            &fields(&info(&mut conn, &["persistence"])),
            "rdb_changes_since_last_save"
        ),
        3
    );

    assert_eq!(conn.call(&[b"FLUSHDB"]), b"+OK\r\n");
    assert_eq!(
        info(&mut conn, &["keyspace"]),
        "# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n"
    );
    assert_eq!(conn.call(&[b"FLUSHALL"]), b"+OK\r\n");
    assert_eq!(info(&mut conn, &["keyspace"]), "# Keyspace\r\n");
    assert_eq!(conn.call(&[b"SELECT", b"0"]), b"+OK\r\n");
    assert_eq!(conn.call(&[b"DBSIZE"]), b":0\r\n");
}

#[test]
fn commandstats_count_calls_rejections_and_failures() {
    let server = start();
    let mut conn = server.raw();
    assert_eq!(conn.call(&[b"CONFIG", b"RESETSTAT"]), b"+OK\r\n");
    for _ in 0..3 {
        assert_eq!(conn.call(&[b"PING"]), b"+PONG\r\n");
    }
    assert_eq!(
        conn.call(&[b"DBSIZE", b"extra"]),
        b"-ERR wrong number of arguments for 'dbsize' command\r\n"
    );
    assert_eq!(conn.call(&[b"FLUSHDB", b"bogus"]), b"-ERR syntax error\r\n");
    let text = info(&mut conn, &["commandstats"]);
    let stats = fields(&text);
    let calls = |name: &str| -> (u64, u64, u64) {
        let line = &stats[&format!("cmdstat_{name}")];
        let parts: HashMap<&str, &str> = line
            .split(',')
            .map(|kv| kv.split_once('=').unwrap())
            .collect();
        let usec: u64 = parts["usec"].parse().unwrap();
        let calls: u64 = parts["calls"].parse().unwrap();
        let per_call: f64 = parts["usec_per_call"].parse().unwrap();
        assert!(
            (per_call - usec as f64 / calls.max(1) as f64).abs() < 0.01,
            "{line}"
        );
        (
            calls,
            parts["rejected_calls"].parse().unwrap(),
            parts["failed_calls"].parse().unwrap(),
        )
    };
    assert_eq!(calls("ping"), (3, 0, 0));
    assert_eq!(calls("dbsize"), (0, 1, 0));
    assert_eq!(calls("flushdb"), (1, 0, 1));
    // The CONFIG RESETSTAT call itself finished after the reset.
    assert_eq!(calls("config"), (1, 0, 0));
    assert!(
        !stats.contains_key("cmdstat_get"),
        "commands never called are not listed"
    );

    let totals = fields(&info(&mut conn, &["stats"]));
    assert_eq!(
        field_u64(&totals, "total_commands_processed"),
        3 + 1 + 1 + 1
    );
    assert_eq!(field_u64(&totals, "total_error_replies"), 2);
}

#[test]
fn config_get_and_set_round_trip() {
    let server = start();
    let mut conn = server.raw();
    assert_eq!(
        conn.call(&[b"CONFIG", b"GET", b"maxclients"]),
        b"*2\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n"
    );
    // An exact name is echoed as given; unknown names are left out.
    assert_eq!(
        conn.call(&[b"CONFIG", b"GET", b"MAXCLIENTS", b"nosuch"]),
        b"*2\r\n$10\r\nMAXCLIENTS\r\n$5\r\n10000\r\n"
    );
    assert_eq!(
        conn.call(&[b"CONFIG", b"SET", b"maxclients", b"50", b"hz", b"20"]),
        b"+OK\r\n"
    );
    let mut client = server.client();
    let got: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("hz")
        .arg("maxclients")
        .query(&mut client)
        .unwrap();
    assert_eq!(
        got,
        HashMap::from([
            ("hz".into(), "20".into()),
            ("maxclients".into(), "50".into())
        ])
    );
    let glob: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("max*")
        .query(&mut client)
        .unwrap();
    assert_eq!(glob.get("maxclients").map(String::as_str), Some("50"));
    assert_eq!(glob.get("maxmemory").map(String::as_str), Some("0"));
    assert!(glob.keys().all(|name| name.starts_with("max")), "{glob:?}");
    // Patterns that match the same option list it once.
    let both: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("hz")
        .arg("h?")
        .query(&mut client)
        .unwrap();
    assert_eq!(both, ["hz", "20"]);
    let info_fields = fields(&info(&mut conn, &["server", "clients"]));
    assert_eq!(info_fields["hz"], "20");
    assert_eq!(info_fields["maxclients"], "50");

    // RESP3: a map.
    conn.call(&[b"HELLO", b"3"]);
    assert_eq!(
        conn.call(&[b"CONFIG", b"GET", b"hz"]),
        b"%1\r\n$2\r\nhz\r\n$2\r\n20\r\n"
    );
}

#[test]
fn config_set_loglevel_changes_the_live_logger() {
    let server = start();
    let mut conn = server.raw();
    // At the default `notice`, CONFIG SET's verbose-level line is not logged...
    assert_eq!(
        conn.call(&[b"CONFIG", b"SET", b"maxclients", b"1234"]),
        b"+OK\r\n"
    );
    // ...at `verbose` it is, starting with the CONFIG SET that changed the level.
    assert_eq!(
        conn.call(&[b"CONFIG", b"SET", b"loglevel", b"verbose"]),
        b"+OK\r\n"
    );
    let line = server
        .wait_for_log("CONFIG SET")
        .expect("a verbose line once the level is verbose");
    assert!(
        line.contains("loglevel") && !line.contains("maxclients"),
        "{line}"
    );
}

#[test]
fn config_set_is_all_or_nothing() {
    let server = start();
    let mut conn = server.raw();
    assert_eq!(
        conn.call(&[b"CONFIG", b"SET", b"maxclients", b"100", b"hz", b"abc"]),
        b"-ERR CONFIG SET failed (possibly related to argument 'hz') - argument couldn't be parsed into an integer\r\n"
    );
    assert_eq!(
        conn.call(&[b"CONFIG", b"GET", b"maxclients"]),
        b"*2\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n"
    );
    assert_eq!(
        conn.call(&[b"CONFIG", b"SET", b"nosuch", b"1"]),
        b"-ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'\r\n"
    );
    assert_eq!(
        conn.call(&[b"CONFIG", b"SET", b"hz", b"5", b"timeout"]),
        b"-ERR syntax error\r\n"
    );
    assert_eq!(
        conn.call(&[b"CONFIG", b"SET", b"hz"]),
        b"-ERR wrong number of arguments for 'config|set' command\r\n"
    );
    assert_eq!(
        conn.call(&[b"CONFIG", b"NOPE"]),
        b"-ERR unknown subcommand 'NOPE'. Try CONFIG HELP.\r\n"
    );
    assert_eq!(
        conn.call(&[b"CONFIG", b"GET", b"hz"]),
        b"*2\r\n$2\r\nhz\r\n$2\r\n10\r\n"
    );
    assert_eq!(
        conn.call(&[b"CONFIG", b"REWRITE"]),
        b"-ERR The server is running without a config file\r\n"
    );
}

#[test]
fn config_rewrite_survives_a_restart() {
    let conf_dir = unique_dir("conf");
    let conf = conf_dir.join("forkless.conf");
    // A private `dir`: with the default save points, SIGTERM writes a final dump into it (the
    // default `dir .` would put it in the source tree).
    let dump_dir = forkless_tests::TestDir::new("rewrite-dump");
    std::fs::write(
        &conf,
        format!(
            "# my settings\nport 0\nhz 10\ndir {}\n",
            dump_dir.0.display()
        ),
    )
    .unwrap();
    let conf_arg = conf.to_str().unwrap();

    let server = TestServer::start_raw(BIN, &[conf_arg], unique_dir("rewrite"));
    let mut conn = server.raw();
    let info_text = info(&mut conn, &["server"]);
    assert_eq!(fields(&info_text)["config_file"], conf_arg);
    assert_eq!(
        conn.call(&[b"CONFIG", b"SET", b"hz", b"42", b"maxclients", b"77"]),
        b"+OK\r\n"
    );
    assert_eq!(conn.call(&[b"CONFIG", b"REWRITE"]), b"+OK\r\n");
    let written = std::fs::read_to_string(&conf).unwrap();
    assert!(
        written.starts_with("# my settings\nport 0\nhz 42\n"),
        "{written}"
    );
    assert!(written.contains("\nmaxclients 77\n"), "{written}");
    assert!(server.terminate().success());
    assert!(
        dump_dir.dump().exists(),
        "the final save goes to the configured dir"
    );

    let server = TestServer::start_raw(BIN, &[conf_arg], unique_dir("rewrite"));
    let mut conn = server.raw();
    assert_eq!(
        conn.call(&[b"CONFIG", b"GET", b"hz"]),
        b"*2\r\n$2\r\nhz\r\n$2\r\n42\r\n"
    );
    assert_eq!(
        conn.call(&[b"CONFIG", b"GET", b"maxclients"]),
        b"*2\r\n$10\r\nmaxclients\r\n$2\r\n77\r\n"
    );
    drop(server);
    std::fs::remove_dir_all(conf_dir).unwrap();
}

#[test]
fn maxclients_rejects_the_next_connection() {
    let server = start();
    let mut conn = server.raw();
    assert_eq!(
        conn.call(&[b"CONFIG", b"SET", b"maxclients", b"1"]),
        b"+OK\r\n"
    );
    let mut second = server.raw();
    assert_eq!(
        second.read_to_close(),
        b"-ERR max number of clients reached\r\n"
    );
    let stats = fields(&info(&mut conn, &["stats", "clients"]));
    assert_eq!(stats["rejected_connections"], "1");
    assert_eq!(stats["connected_clients"], "1");
    // Raising the limit lets new clients in again.
    assert_eq!(
        conn.call(&[b"CONFIG", b"SET", b"maxclients", b"10"]),
        b"+OK\r\n"
    );
    assert_eq!(server.raw().call(&[b"PING"]), b"+PONG\r\n");
}

#[test]
fn timeout_closes_idle_clients() {
    let server = start();
    let mut admin = server.raw();
    assert_eq!(
        admin.call(&[b"CONFIG", b"SET", b"timeout", b"1"]),
        b"+OK\r\n"
    );
    let mut idle = server.raw();
    assert_eq!(idle.call(&[b"PING"]), b"+PONG\r\n");
    let started = Instant::now();
    // Blocks until the server closes the connection (the read timeout is 10 s).
    assert_eq!(idle.read_to_close(), b"");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(9),
        "not closed by the timeout: {waited:?}"
    );
    // timeout 0 turns it off again, for the connections read from now on.
    assert_eq!(
        server.raw().call(&[b"CONFIG", b"SET", b"timeout", b"0"]),
        b"+OK\r\n"
    );
}

#[test]
fn command_introspection() {
    let server = start();
    let mut client = server.client();
    let count: i64 = redis::cmd("COMMAND")
        .arg("COUNT")
        .query(&mut client)
        .unwrap();
    let all: Vec<redis::Value> = redis::cmd("COMMAND").query(&mut client).unwrap();
    assert_eq!(usize::try_from(count).unwrap(), all.len());
    let info_all: Vec<redis::Value> = redis::cmd("COMMAND")
        .arg("INFO")
        .query(&mut client)
        .unwrap();
    assert_eq!(info_all.len(), all.len());
    let names: Vec<String> = redis::cmd("COMMAND")
        .arg("LIST")
        .query(&mut client)
        .unwrap();
    for name in [
        "get",
        "set",
        "info",
        "config",
        "config|get",
        "command|docs",
        "client|list",
    ] {
        assert!(names.iter().any(|n| n == name), "COMMAND LIST lacks {name}");
    }

    let mut conn = server.raw();
    assert_eq!(
        conn.call(&[b"COMMAND", b"INFO", b"get", b"nosuch"]),
        b"*2\r\n*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n\
          *3\r\n+@read\r\n+@string\r\n+@fast\r\n*0\r\n*0\r\n*0\r\n$-1\r\n"
    );
    let config_get =
        b"*10\r\n$10\r\nconfig|get\r\n:-3\r\n*4\r\n+admin\r\n+noscript\r\n+loading\r\n\
        +stale\r\n:0\r\n:0\r\n:0\r\n*3\r\n+@admin\r\n+@slow\r\n+@dangerous\r\n*0\r\n*0\r\n*0\r\n";
    assert_eq!(
        conn.call(&[b"COMMAND", b"INFO", b"CONFIG|GET"]),
        [&b"*1\r\n"[..], config_get].concat()
    );
    assert_eq!(
        conn.call(&[b"COMMAND", b"GETKEYS", b"mset", b"a", b"1", b"b", b"2"]),
        b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    );
    assert_eq!(
        conn.call(&[b"COMMAND", b"GETKEYS", b"ping", b"x"]),
        b"-ERR The command has no key arguments\r\n"
    );
    assert_eq!(
        conn.call(&[b"COMMAND", b"LIST", b"FILTERBY", b"PATTERN", b"flush*"]),
        b"*2\r\n$7\r\nflushdb\r\n$8\r\nflushall\r\n"
    );
    assert_eq!(
        conn.call(&[b"COMMAND", b"DOCS", b"dbsize", b"nosuch"]),
        b"*2\r\n$6\r\ndbsize\r\n*6\r\n$7\r\nsummary\r\n$50\r\nReturn the number of keys in the \
          selected database\r\n$5\r\nsince\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$6\r\nserver\r\n"
    );
    // RESP3: flags, categories, tips and key specs are sets; docs are maps.
    conn.call(&[b"HELLO", b"3"]);
    assert_eq!(
        conn.call(&[b"COMMAND", b"INFO", b"dbsize"]),
        b"*1\r\n*10\r\n$6\r\ndbsize\r\n:1\r\n~2\r\n+readonly\r\n+fast\r\n:0\r\n:0\r\n:0\r\n\
          ~3\r\n+@keyspace\r\n+@read\r\n+@fast\r\n~0\r\n~0\r\n~0\r\n"
    );
    let docs = conn.call(&[b"COMMAND", b"DOCS", b"config"]);
    assert!(
        docs.starts_with(b"%1\r\n$6\r\nconfig\r\n%4\r\n$7\r\nsummary\r\n"),
        "{docs:?}"
    );
    assert!(
        docs.windows(15).any(|w| w == b"$10\r\nconfig|get"),
        "subcommand docs listed"
    );
}

/// Regression (issue 14): flags were string lists written out as given, so COMMAND INFO showed
/// flags Redis 7.0 hides (`sentinel`, `may_replicate`), QUIT's `allow_busy` twice, BZPOPMIN's
/// `fast` before `blocking`, and ECHO without `loading stale`. They are bits now, written in
/// Redis's order; these replies are Redis 7.0's.
#[test]
fn command_info_flags_are_redis_flags_in_redis_order() {
    let server = start();
    let mut conn = server.raw();
    // `*1 *10 $len name :arity *n flag...`: the flags are the n lines after the seventh.
    let mut flags = |name: &str| -> Vec<String> {
        let reply = conn.call(&[b"COMMAND", b"INFO", name.as_bytes()]);
        let text = String::from_utf8(reply).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[3], name, "{text:?}");
        let n: usize = lines[5].strip_prefix('*').unwrap().parse().unwrap();
        lines[6..6 + n].iter().map(ToString::to_string).collect()
    };
    assert_eq!(flags("ping"), ["+fast"]);
    let connection_flags = [
        "+noscript",
        "+loading",
        "+stale",
        "+fast",
        "+no_auth",
        "+allow_busy",
    ];
    assert_eq!(flags("quit"), connection_flags);
    assert_eq!(flags("hello"), connection_flags);
    assert_eq!(flags("publish"), ["+pubsub", "+loading", "+stale", "+fast"]);
    assert_eq!(
        flags("bzpopmin"),
        ["+write", "+noscript", "+blocking", "+fast"]
    );
    assert_eq!(flags("echo"), ["+loading", "+stale", "+fast"]);
    assert!(flags("client").is_empty());
}

#[test]
fn dbsize_time_and_flush_modes() {
    let server = start();
    let mut conn = server.raw();
    for key in [&b"a"[..], b"b", b"c"] {
        assert_eq!(conn.call(&[b"SET", key, b"v"]), b"+OK\r\n");
    }
    assert_eq!(conn.call(&[b"DBSIZE"]), b":3\r\n");
    assert_eq!(
        conn.call(&[b"FLUSHDB", b"sideways"]),
        b"-ERR syntax error\r\n"
    );
    assert_eq!(
        conn.call(&[b"FLUSHALL", b"ASYNC", b"SYNC"]),
        b"-ERR syntax error\r\n"
    );
    assert_eq!(conn.call(&[b"DBSIZE"]), b":3\r\n");

    let time = String::from_utf8(conn.call(&[b"TIME"])).unwrap();
    let parts: Vec<&str> = time.split("\r\n").collect();
    assert_eq!((parts[0], parts.len()), ("*2", 6), "{time:?}");
    let secs: u64 = parts[2].parse().unwrap();
    let micros: u64 = parts[4].parse().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(secs.abs_diff(now) <= 5 && micros < 1_000_000, "{time:?}");

    assert_eq!(conn.call(&[b"FLUSHDB", b"SYNC"]), b"+OK\r\n");
    assert_eq!(conn.call(&[b"DBSIZE"]), b":0\r\n");
}

#[test]
fn flushall_async_frees_in_the_background() {
    let server = start();
    let mut client = server.client();
    let mut pipe = redis::pipe();
    for key_idx in 0..5000 {
        pipe.cmd("SET")
            .arg(format!("key:{key_idx}"))
            .arg("value")
            .ignore();
    }
    pipe.cmd("SELECT")
        .arg(2)
        .ignore()
        .cmd("SET")
        .arg("other")
        .arg("db")
        .ignore();
    pipe.query::<()>(&mut client).unwrap();

    let mut conn = server.raw();
    assert_eq!(conn.call(&[b"FLUSHALL", b"ASYNC"]), b"+OK\r\n");
    assert_eq!(conn.call(&[b"DBSIZE"]), b":0\r\n");
    assert_eq!(info(&mut conn, &["keyspace"]), "# Keyspace\r\n");
    assert!(wait_until(Duration::from_secs(10), || {
        let memory = fields(&info(&mut conn, &["memory"]));
        memory["lazyfree_pending_objects"] == "0" && memory["lazyfreed_objects"] == "5001"
    }));
    // Regression: CONFIG RESETSTAT left `lazyfreed_objects` as it was (Redis's lazyfree unit,
    // "lazy free a stream with deleted cgroup", resets and expects 0).
    assert_eq!(conn.call(&[b"CONFIG", b"RESETSTAT"]), b"+OK\r\n");
    let memory = fields(&info(&mut conn, &["memory"]));
    assert_eq!(memory["lazyfreed_objects"], "0");
}

#[test]
fn info_is_a_verbatim_string_in_resp3() {
    let server = start();
    let mut conn = server.raw();
    conn.call(&[b"HELLO", b"3"]);
    let reply = conn.call(&[b"INFO", b"keyspace"]);
    assert_eq!(reply, b"=16\r\ntxt:# Keyspace\r\n\r\n");
    assert_eq!(conn.call(&[b"INFO", b"nosuch"]), b"=4\r\ntxt:\r\n");
}

#[test]
fn shutdown_nosave_exits_cleanly_without_a_reply() {
    let mut server = start();
    let mut conn = server.raw();
    assert_eq!(
        conn.call(&[b"SHUTDOWN", b"ABORT"]),
        b"-ERR No shutdown in progress.\r\n"
    );
    assert_eq!(
        conn.call(&[b"SHUTDOWN", b"NOSAVE", b"SAVE"]),
        b"-ERR syntax error\r\n"
    );
    assert_eq!(
        conn.call(&[b"PING"]),
        b"+PONG\r\n",
        "a refused SHUTDOWN keeps serving"
    );
    assert_eq!(conn.call(&[b"SET", b"k", b"v"]), b"+OK\r\n");
    conn.send_command(&[b"SHUTDOWN", b"NOSAVE"]);
    assert_eq!(conn.read_to_close(), b"");
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0));
    assert!(
        !server.dir.join("dump.rdb").exists(),
        "NOSAVE writes no snapshot"
    );
}

#[test]
fn shutdown_save_writes_a_snapshot_then_exits() {
    let mut server = start();
    let mut conn = server.raw();
    assert_eq!(conn.call(&[b"SET", b"k", b"v"]), b"+OK\r\n");
    conn.send_command(&[b"shutdown", b"save", b"now"]);
    assert_eq!(conn.read_to_close(), b"");
    assert_eq!(server.wait_exit().code(), Some(0));
    assert!(server.dir.join("dump.rdb").is_file());
}

#[test]
fn sigterm_exits_cleanly() {
    let server = start();
    assert_eq!(server.raw().call(&[b"PING"]), b"+PONG\r\n");
    let status = server.terminate();
    assert_eq!(status.code(), Some(0));
}

/// Names of the threads of process `pid`.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(|task| {
                    let comm = task.ok()?.path().join("comm");
                    std::fs::read_to_string(comm)
                        .ok()
                        .map(|name| name.trim().to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn worker_threads_sets_how_many_threads_serve_clients() {
    let workers = |server: &TestServer| {
        thread_names(server.pid())
            .iter()
            .filter(|name| *name == "forkless-worker")
            .count()
    };
    let one = TestServer::start(BIN, &["--worker-threads", "1"]);
    assert_eq!(workers(&one), 1);
    let three = TestServer::start(BIN, &["--worker-threads", "3"]);
    assert_eq!(workers(&three), 3);
    let mut conn = three.raw();
    assert_eq!(
        conn.call(&[b"CONFIG", b"GET", b"worker-threads"]),
        b"*2\r\n$14\r\nworker-threads\r\n$1\r\n3\r\n"
    );
    let reply = conn.call(&[b"CONFIG", b"SET", b"worker-threads", b"2"]);
    assert!(
        reply.starts_with(b"-ERR CONFIG SET failed"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
}

/// Regression: COMMAND GETKEYS read only the declared (first, last, step) positions, so the
/// keys that move with other arguments were missing or wrong (SORT ... STORE gave only the
/// sorted key, ZUNIONSTORE only the destination, XREAD "no key arguments"), and EVAL with no
/// keys was an error where Redis answers an empty list.
#[test]
fn command_getkeys_finds_movable_keys_as_redis() {
    let server = start();
    let mut conn = server.raw();
    let getkeys = |conn: &mut forkless_tests::RawConn, line: &str| -> String {
        let mut argv: Vec<&[u8]> = vec![b"COMMAND", b"GETKEYS"];
        argv.extend(line.split(' ').map(str::as_bytes));
        String::from_utf8(conn.call(&argv)).unwrap()
    };
    let keys = |names: &[&str]| forkless_tests::resp::bulks(names);
    for (line, expected) in [
        ("sort abc store def", keys(&["abc", "def"])),
        (
            "sort abc store invalid store stillbad store def",
            keys(&["abc", "def"]),
        ),
        ("sort abc limit 0 store by store get store", keys(&["abc"])),
        ("sort_ro abc store x", keys(&["abc"])),
        ("zunionstore t 2 a b", keys(&["t", "a", "b"])),
        ("zunion 2 a b", keys(&["a", "b"])),
        ("blmpop 0 2 a b left", keys(&["a", "b"])),
        ("xread count 2 streams a b 0 0", keys(&["a", "b"])),
        ("xreadgroup group g c streams a 0", keys(&["a"])),
        ("georadius k 0 0 1 km store d", keys(&["k", "d"])),
        ("eval x 0", "*0\r\n".to_string()),
        (
            "zunionstore t 3 a b",
            "-ERR Invalid arguments specified for command\r\n".to_string(),
        ),
    ] {
        assert_eq!(getkeys(&mut conn, line), expected, "{line}");
    }
    let mut many = vec!["zunionstore".to_string(), "target".into(), "260".into()];
    many.extend((1..=260).map(|idx| format!("key{idx}")));
    let reply = getkeys(&mut conn, &many.join(" "));
    assert!(
        reply.starts_with("*261\r\n$6\r\ntarget\r\n$4\r\nkey1\r\n"),
        "{reply}"
    );
}

/// Regression: COMMAND GETKEYSANDFLAGS was an unknown subcommand. Each key comes with its key
/// specification's flags, in Redis 7.0's order and words (introspection-2's cases).
#[test]
fn command_getkeysandflags_reports_key_spec_flags() {
    let server = start();
    let mut conn = server.raw();
    let call = |conn: &mut forkless_tests::RawConn, line: &str| -> String {
        let mut argv: Vec<&[u8]> = vec![b"COMMAND", b"GETKEYSANDFLAGS"];
        argv.extend(line.split(' ').map(str::as_bytes));
        String::from_utf8(conn.call(&argv)).unwrap()
    };
    let entry = |key: &str, flags: &[&str]| {
        let mut text = format!("*2\r\n${}\r\n{key}\r\n*{}\r\n", key.len(), flags.len());
        for flag in flags {
            text.push_str(&format!("+{flag}\r\n"));
        }
        text
    };
    for (line, expected) in [
        ("set k1 v1", vec![entry("k1", &["OW", "update"])]),
        (
            "set k1 v1 get",
            vec![entry("k1", &["RW", "access", "update"])],
        ),
        (
            "mset k1 v1 k2 v2",
            vec![
                entry("k1", &["OW", "update"]),
                entry("k2", &["OW", "update"]),
            ],
        ),
        (
            "LMOVE k1 k2 left right",
            vec![
                entry("k1", &["RW", "access", "delete"]),
                entry("k2", &["RW", "insert"]),
            ],
        ),
        (
            "sort k1 store k2",
            vec![
                entry("k1", &["RO", "access"]),
                entry("k2", &["OW", "update"]),
            ],
        ),
        ("object encoding k", vec![entry("k", &["RO"])]),
        ("bitfield k get u8 0", vec![entry("k", &["RO", "access"])]),
        ("del a", vec![entry("a", &["RM", "delete"])]),
    ] {
        let expected = format!("*{}\r\n{}", expected.len(), expected.concat());
        assert_eq!(call(&mut conn, line), expected, "{line}");
    }
    assert_eq!(call(&mut conn, "eval x 0"), "*0\r\n");
    assert_eq!(
        call(&mut conn, "ping x"),
        "-ERR The command has no key arguments\r\n"
    );
    assert_eq!(
        call(&mut conn, "nosuch k"),
        "-ERR Invalid command specified\r\n"
    );
    assert_eq!(
        call(&mut conn, "get a b"),
        "-ERR Invalid number of arguments specified for command\r\n"
    );
    conn.call(&[b"HELLO", b"3"]);
    // RESP3: the flags are a set.
    assert_eq!(
        call(&mut conn, "get k"),
        "*1\r\n*2\r\n$1\r\nk\r\n~2\r\n+RO\r\n+access\r\n"
    );
}

/// Regression: LOLWUT was an unknown command, and INFO lacked `migrate_cached_sockets` (Redis's
/// dump unit waits for it to read 0). LOLWUT answers Redis 7.0's own form, the version line.
#[test]
fn lolwut_and_migrate_cached_sockets() {
    let server = start();
    let mut conn = server.raw();
    let version_line = "=22\r\ntxt:Redis ver. 7.0.15\n\r\n";
    let resp3 = |conn: &mut forkless_tests::RawConn, args: &[&[u8]]| {
        String::from_utf8(conn.call(args)).unwrap()
    };
    conn.call(&[b"HELLO", b"3"]);
    assert_eq!(resp3(&mut conn, &[b"LOLWUT"]), version_line);
    assert_eq!(
        resp3(&mut conn, &[b"LOLWUT", b"VERSION", b"7"]),
        version_line
    );
    assert_eq!(
        resp3(&mut conn, &[b"LOLWUT", b"VERSION", b"x"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    let mut plain = server.raw();
    let text = info(&mut plain, &["stats"]);
    assert!(text.contains("\r\nmigrate_cached_sockets:0\r\n"), "{text}");
}

/// Regression: LOLWUT VERSION 5 and 6 answered the version line where Redis 7.0 draws its
/// art: Schotter (Braille squares, `columns squares-per-row squares-per-column`) and the
/// skyline (colored cells, `columns rows`). The random parts differ from run to run; the
/// shape, the straight top rows and the captions are Redis's.
#[test]
fn lolwut_versions_5_and_6_draw_redis_art() {
    let server = start();
    let mut conn = server.raw();
    let art = |conn: &mut forkless_tests::RawConn, args: &[&[u8]]| -> String {
        let reply = String::from_utf8(conn.call(args)).unwrap();
        let (header, body) = reply.split_once("\r\n").unwrap();
        let len: usize = header.strip_prefix('$').unwrap().parse().unwrap();
        assert_eq!(body.len(), len + 2, "{reply}");
        body.strip_suffix("\r\n").unwrap().to_string()
    };
    // 20 columns: 40 pixels, squares of 12 with padding 2, 3 rows of them: 40 pixels tall.
    let schotter = art(&mut conn, &[b"LOLWUT", b"VERSION", b"5", b"20", b"3", b"3"]);
    let lines: Vec<&str> = schotter.split('\n').collect();
    // Ten rows of Braille, each ending its line, then a blank line, the caption and the
    // final newline.
    assert_eq!(lines.len(), 10 + 3, "{schotter}");
    assert_eq!(lines[0], "⠀⡤⠤⠤⠤⠤⠤⡤⠤⠤⠤⠤⠤⡤⠤⠤⠤⠤⠤⡄");
    assert_eq!(lines[1], "⠀⡇⠀⠀⠀⠀⠀⡇⠀⠀⠀⠀⠀⡇⠀⠀⠀⠀⠀⡇");
    assert!(lines[..10].iter().all(|line| line.chars().count() == 20));
    assert_eq!(lines[10], "");
    assert_eq!(
        lines[11],
        "Georg Nees - schotter, plotter on paper, 1968. Redis ver. 7.0.15"
    );
    // The defaults: 66 columns, 8 squares per row, 12 rows of squares.
    let default = art(&mut conn, &[b"LOLWUT", b"VERSION", b"5"]);
    let lines: Vec<&str> = default.split('\n').collect();
    assert_eq!(lines.len(), 49 + 3);
    assert!(lines[..49].iter().all(|line| line.chars().count() == 66));
    let skyline = art(&mut conn, &[b"LOLWUT", b"VERSION", b"6", b"30", b"10"]);
    let lines: Vec<&str> = skyline.split('\n').collect();
    assert_eq!(lines.len(), 10 + 3);
    for line in &lines[..10] {
        assert_eq!(line.matches(" \x1b[0m").count(), 30, "{line:?}");
    }
    assert_eq!(
        lines[11],
        "Original 8 bit image from Plaguemon by hikikomori. Redis ver. 7.0.15"
    );
    // Parameters are clamped as in Redis, and must be integers.
    let tiny = art(&mut conn, &[b"LOLWUT", b"VERSION", b"6", b"-3", b"0"]);
    assert_eq!(
        tiny.split('\n').next().unwrap().matches(" \x1b[0m").count(),
        1
    );
    assert_eq!(
        conn.call(&[b"LOLWUT", b"VERSION", b"5", b"wide"]),
        b"-ERR value is not an integer or out of range\r\n"
    );
    // Redis reads the version as 32 bits unsigned: 2^32 + 5 is version 5.
    let wrapped = art(&mut conn, &[b"LOLWUT", b"VERSION", b"4294967301", b"20"]);
    assert!(wrapped.contains("schotter"), "{wrapped}");
    assert_eq!(
        art(&mut conn, &[b"LOLWUT", b"VERSION", b"4"]),
        "Redis ver. 7.0.15\n"
    );
}

/// Regression: UNLINK freed every value inline and never counted `lazyfreed_objects`, where
/// Redis frees a value that takes more than 64 allocations in the background (Redis's
/// lazyfree unit, "lazy free a stream with all types of metadata").
#[test]
fn unlink_frees_costly_values_in_the_background() {
    let server = start();
    let mut conn = server.raw();
    let mut sadd: Vec<Vec<u8>> = vec![b"SADD".to_vec(), b"big".to_vec()];
    sadd.extend((0..100).map(|idx| format!("member-{idx}").into_bytes()));
    let args: Vec<&[u8]> = sadd.iter().map(Vec::as_slice).collect();
    assert_eq!(conn.call(&args), b":100\r\n");
    conn.call(&[b"SET", b"small", b"v"]);
    conn.call(&[b"SADD", b"tiny", b"1", b"2"]);
    assert_eq!(conn.call(&[b"CONFIG", b"RESETSTAT"]), b"+OK\r\n");
    assert_eq!(
        conn.call(&[b"UNLINK", b"small", b"tiny", b"none"]),
        b":2\r\n"
    );
    assert_eq!(conn.call(&[b"UNLINK", b"big"]), b":1\r\n");
    assert!(wait_until(Duration::from_secs(10), || {
        let memory = fields(&info(&mut conn, &["memory"]));
        memory["lazyfree_pending_objects"] == "0" && memory["lazyfreed_objects"] == "1"
    }));
    assert_eq!(
        conn.call(&[b"EXISTS", b"big", b"small", b"tiny"]),
        b":0\r\n"
    );
}

/// Regression: the subcommands of SCRIPT and FUNCTION were missing from the command table, so
/// COMMAND LIST FILTERBY ACLCAT scripting had no `script|kill` (Redis's introspection-2 unit)
/// and COMMAND INFO script listed none.
#[test]
fn script_and_function_subcommands_are_in_the_command_table() {
    let server = start();
    let mut conn = server.raw();
    let list =
        String::from_utf8(conn.call(&[b"COMMAND", b"LIST", b"FILTERBY", b"ACLCAT", b"scripting"]))
            .unwrap();
    for name in [
        "eval",
        "script|kill",
        "script|load",
        "function|load",
        "fcall",
    ] {
        assert!(list.contains(&format!("\r\n{name}\r\n")), "{name}: {list}");
    }
    assert!(!list.contains("\r\nset\r\n"), "{list}");
    let info = String::from_utf8(conn.call(&[b"COMMAND", b"INFO", b"script"])).unwrap();
    assert!(info.contains("script|kill"), "{info}");
    assert!(info.contains("allow_busy"), "{info}");
    // The container handlers still parse their subcommands.
    assert_eq!(conn.call(&[b"FUNCTION", b"FLUSH"]), b"+OK\r\n");
    assert_eq!(
        conn.call(&[b"SCRIPT", b"KILL"]),
        b"-NOTBUSY No scripts in execution right now.\r\n"
    );
}
