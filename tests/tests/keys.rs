//! Generic key commands end to end: exact replies and error strings of DEL UNLINK EXISTS TYPE
//! TOUCH RENAME RENAMENX COPY MOVE KEYS SCAN RANDOMKEY OBJECT, SCAN's guarantee under concurrent
//! inserts, and RENAME's atomicity as another client sees it.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use forkless_tests::resp::{call, cmd, err};
use forkless_tests::{RawConn, TestServer, wait_until};

fn server() -> TestServer {
    TestServer::start(env!("CARGO_BIN_EXE_forkless-server"), &[])
}

/// Parses a flat RESP array of bulk strings (KEYS) into its elements.
fn bulk_array(reply: &str) -> Vec<String> {
    let mut lines = reply.split("\r\n");
    let header = lines.next().expect("a header line");
    let n: usize = header
        .strip_prefix('*')
        .and_then(|n| n.parse().ok())
        .expect("an array header");
    let mut out = Vec::new();
    for _ in 0..n {
        let len = lines.next().expect("a length line");
        assert!(len.starts_with('$'), "not a bulk string: {len}");
        out.push(lines.next().expect("a bulk string").to_string());
    }
    out
}

fn sorted(mut keys: Vec<String>) -> Vec<String> {
    keys.sort();
    keys
}

/// One SCAN call through the redis crate: (next cursor, keys).
fn scan_step(con: &mut redis::Connection, cursor: u64, extra: &[&str]) -> (u64, Vec<String>) {
    let mut command = redis::cmd("SCAN");
    command.arg(cursor);
    for arg in extra {
        command.arg(*arg);
    }
    let (next, keys): (String, Vec<String>) = command.query(con).expect("SCAN reply");
    (next.parse().expect("a numeric cursor"), keys)
}

/// A full SCAN iteration; returns how many times each key was returned.
fn scan_all(con: &mut redis::Connection, extra: &[&str]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    let mut cursor = 0;
    loop {
        let (next, keys) = scan_step(con, cursor, extra);
        for key in keys {
            *seen.entry(key).or_insert(0) += 1;
        }
        if next == 0 {
            return seen;
        }
        cursor = next;
    }
}

#[test]
fn del_unlink_exists_touch_count_as_redis() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "SET a 1"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "SET b 2"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "SET c 3"), "+OK\r\n");
    // EXISTS and TOUCH count a key named twice twice.
    assert_eq!(cmd(&mut c, "EXISTS a a nokey b"), ":3\r\n");
    assert_eq!(cmd(&mut c, "TOUCH a a nokey"), ":2\r\n");
    assert_eq!(cmd(&mut c, "EXISTS nokey"), ":0\r\n");
    // DEL removes a key named twice once.
    assert_eq!(cmd(&mut c, "DEL a a nokey"), ":1\r\n");
    assert_eq!(cmd(&mut c, "EXISTS a"), ":0\r\n");
    assert_eq!(cmd(&mut c, "UNLINK b c c nokey"), ":2\r\n");
    assert_eq!(cmd(&mut c, "DEL b"), ":0\r\n");
    assert_eq!(cmd(&mut c, "DBSIZE"), ":0\r\n");
    assert_eq!(
        cmd(&mut c, "DEL"),
        err("ERR wrong number of arguments for 'del' command")
    );
    assert_eq!(
        cmd(&mut c, "UNLINK"),
        err("ERR wrong number of arguments for 'unlink' command")
    );
    assert_eq!(
        cmd(&mut c, "EXISTS"),
        err("ERR wrong number of arguments for 'exists' command")
    );
    assert_eq!(
        cmd(&mut c, "TOUCH"),
        err("ERR wrong number of arguments for 'touch' command")
    );
}

#[test]
fn del_of_many_keys_across_shards() {
    let server = server();
    let mut c = server.raw();
    let keys: Vec<String> = (0..500).map(|i| format!("key:{i}")).collect();
    let mut mset: Vec<&[u8]> = vec![b"MSET"];
    for key in &keys {
        mset.push(key.as_bytes());
        mset.push(b"v");
    }
    assert_eq!(call(&mut c, &mset), "+OK\r\n");
    let mut exists: Vec<&[u8]> = vec![b"EXISTS"];
    exists.extend(keys.iter().map(String::as_bytes));
    assert_eq!(call(&mut c, &exists), ":500\r\n");
    let mut del: Vec<&[u8]> = vec![b"DEL"];
    del.extend(keys.iter().map(String::as_bytes));
    del.push(b"key:0");
    assert_eq!(call(&mut c, &del), ":500\r\n");
    assert_eq!(cmd(&mut c, "DBSIZE"), ":0\r\n");
}

#[test]
fn type_names_the_value_or_none() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "TYPE nokey"), "+none\r\n");
    assert_eq!(cmd(&mut c, "SET s hello"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "TYPE s"), "+string\r\n");
    assert_eq!(
        cmd(&mut c, "TYPE s extra"),
        err("ERR wrong number of arguments for 'type' command")
    );
}

#[test]
fn rename_moves_value_and_ttl() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "RENAME nokey x"), err("ERR no such key"));
    assert_eq!(cmd(&mut c, "RENAMENX nokey x"), err("ERR no such key"));
    assert_eq!(cmd(&mut c, "RENAME nokey nokey"), err("ERR no such key"));
    assert_eq!(cmd(&mut c, "SET a 1"), "+OK\r\n");
    // Renaming a key to itself is a no-op that still checks the key exists.
    assert_eq!(cmd(&mut c, "RENAME a a"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "RENAMENX a a"), ":0\r\n");
    assert_eq!(cmd(&mut c, "GET a"), "$1\r\n1\r\n");
    assert_eq!(cmd(&mut c, "RENAME a b"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "EXISTS a"), ":0\r\n");
    assert_eq!(cmd(&mut c, "GET b"), "$1\r\n1\r\n");
    // Overwrite: the destination's own TTL goes, the source's (none) is kept.
    assert_eq!(cmd(&mut c, "SET c 3 EX 100"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "RENAME b c"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "GET c"), "$1\r\n1\r\n");
    assert_eq!(cmd(&mut c, "TTL c"), ":-1\r\n");
    // RENAMENX refuses an existing destination and leaves both keys alone.
    assert_eq!(cmd(&mut c, "SET d 4"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "RENAMENX c d"), ":0\r\n");
    assert_eq!(cmd(&mut c, "GET c"), "$1\r\n1\r\n");
    assert_eq!(cmd(&mut c, "GET d"), "$1\r\n4\r\n");
    assert_eq!(cmd(&mut c, "RENAMENX c e"), ":1\r\n");
    assert_eq!(cmd(&mut c, "GET e"), "$1\r\n1\r\n");
    assert_eq!(cmd(&mut c, "EXISTS c"), ":0\r\n");
    assert_eq!(
        cmd(&mut c, "RENAME e"),
        err("ERR wrong number of arguments for 'rename' command")
    );
}

#[test]
fn copy_within_and_across_databases() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "COPY nokey x"), ":0\r\n");
    assert_eq!(cmd(&mut c, "SET src v PX 100000"), "+OK\r\n");
    assert_eq!(
        cmd(&mut c, "COPY src src"),
        err("ERR source and destination objects are the same")
    );
    assert_eq!(
        cmd(&mut c, "COPY src src DB 0"),
        err("ERR source and destination objects are the same")
    );
    assert_eq!(cmd(&mut c, "COPY src dst"), ":1\r\n");
    assert_eq!(cmd(&mut c, "GET dst"), "$1\r\nv\r\n");
    let ttl: i64 = cmd(&mut c, "PTTL dst")
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap();
    assert!(
        ttl > 90_000 && ttl <= 100_000,
        "COPY keeps the TTL, got {ttl}"
    );
    assert_eq!(cmd(&mut c, "SET other x"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "COPY other dst"), ":0\r\n");
    assert_eq!(cmd(&mut c, "GET dst"), "$1\r\nv\r\n");
    assert_eq!(cmd(&mut c, "COPY other dst REPLACE"), ":1\r\n");
    assert_eq!(cmd(&mut c, "GET dst"), "$1\r\nx\r\n");
    assert_eq!(cmd(&mut c, "TTL dst"), ":-1\r\n");
    // The copy is independent of its source.
    assert_eq!(cmd(&mut c, "SET other y"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "GET dst"), "$1\r\nx\r\n");
    // Another database.
    assert_eq!(cmd(&mut c, "COPY src src DB 1"), ":1\r\n");
    assert_eq!(cmd(&mut c, "COPY src src db 1"), ":0\r\n");
    assert_eq!(cmd(&mut c, "COPY other src DB 1 REPLACE"), ":1\r\n");
    assert_eq!(cmd(&mut c, "SELECT 1"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "GET src"), "$1\r\ny\r\n");
    assert_eq!(cmd(&mut c, "COPY src back DB 0"), ":1\r\n");
    assert_eq!(cmd(&mut c, "SELECT 0"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "GET back"), "$1\r\ny\r\n");
    // Errors, in Redis's order: options are checked one by one, left to right.
    assert_eq!(
        cmd(&mut c, "COPY src x DB 99 FOO"),
        err("ERR DB index is out of range")
    );
    assert_eq!(
        cmd(&mut c, "COPY src x DB -1"),
        err("ERR DB index is out of range")
    );
    assert_eq!(
        cmd(&mut c, "COPY src x DB x"),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(
        cmd(&mut c, "COPY src x DB 2147483648"),
        err("ERR value is out of range, value must between -2147483648 and 2147483647")
    );
    assert_eq!(cmd(&mut c, "COPY src x DB"), err("ERR syntax error"));
    assert_eq!(cmd(&mut c, "COPY src x FOO"), err("ERR syntax error"));
    assert_eq!(cmd(&mut c, "COPY src x REPLACE REPLACE"), ":1\r\n");
}

#[test]
fn move_to_another_database() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(
        cmd(&mut c, "MOVE nokey 0"),
        err("ERR source and destination objects are the same")
    );
    assert_eq!(cmd(&mut c, "MOVE nokey 1"), ":0\r\n");
    assert_eq!(
        cmd(&mut c, "MOVE k 99"),
        err("ERR DB index is out of range")
    );
    assert_eq!(
        cmd(&mut c, "MOVE k x"),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(cmd(&mut c, "SET k v EX 100"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "MOVE k 2"), ":1\r\n");
    assert_eq!(cmd(&mut c, "EXISTS k"), ":0\r\n");
    assert_eq!(cmd(&mut c, "SELECT 2"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "GET k"), "$1\r\nv\r\n");
    let ttl: i64 = cmd(&mut c, "TTL k")
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap();
    assert!((99..=100).contains(&ttl), "MOVE keeps the TTL, got {ttl}");
    // The destination already has the key: nothing moves.
    assert_eq!(cmd(&mut c, "SELECT 0"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "SET k other"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "MOVE k 2"), ":0\r\n");
    assert_eq!(cmd(&mut c, "GET k"), "$5\r\nother\r\n");
}

#[test]
fn keys_patterns_follow_redis_glob() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "KEYS *"), "*0\r\n");
    for key in [
        "hello", "hallo", "hxllo", "hllo", "heeeello", "h*llo", "h?llo", "a[b", "A1", "x\\y",
    ] {
        assert_eq!(call(&mut c, &[b"SET", key.as_bytes(), b"v"]), "+OK\r\n");
    }
    let keys = |c: &mut RawConn, pattern: &str| {
        sorted(bulk_array(&call(c, &[b"KEYS", pattern.as_bytes()])))
    };
    assert_eq!(
        keys(&mut c, "h?llo"),
        ["h*llo", "h?llo", "hallo", "hello", "hxllo"]
    );
    assert_eq!(
        keys(&mut c, "h*llo"),
        [
            "h*llo", "h?llo", "hallo", "heeeello", "hello", "hllo", "hxllo"
        ]
    );
    assert_eq!(keys(&mut c, "h[ae]llo"), ["hallo", "hello"]);
    assert_eq!(
        keys(&mut c, "h[^e]llo"),
        ["h*llo", "h?llo", "hallo", "hxllo"]
    );
    assert_eq!(keys(&mut c, "h[a-b]llo"), ["hallo"]);
    assert_eq!(keys(&mut c, "h[b-a]llo"), ["hallo"]);
    // Escapes make metacharacters literal.
    assert_eq!(keys(&mut c, "h\\*llo"), ["h*llo"]);
    assert_eq!(keys(&mut c, "h\\?llo"), ["h?llo"]);
    assert_eq!(keys(&mut c, "a\\[b"), ["a[b"]);
    assert_eq!(keys(&mut c, "x\\\\y"), ["x\\y"]);
    // Case matters.
    assert_eq!(keys(&mut c, "a*"), ["a[b"]);
    assert_eq!(keys(&mut c, "A?"), ["A1"]);
    // A literal pattern is an exact lookup.
    assert_eq!(keys(&mut c, "hello"), ["hello"]);
    assert_eq!(keys(&mut c, "nosuch"), Vec::<String>::new());
    assert_eq!(keys(&mut c, "*").len(), 10);
    // `*` matches the empty key, which `**` (a real glob) does not.
    assert_eq!(call(&mut c, &[b"SET", b"", b"empty"]), "+OK\r\n");
    assert_eq!(keys(&mut c, "*").len(), 11);
    assert_eq!(keys(&mut c, "**").len(), 10);
    assert_eq!(call(&mut c, &[b"KEYS", b""]), "*1\r\n$0\r\n\r\n");
    // Expired keys are not listed.
    assert_eq!(cmd(&mut c, "PEXPIRE hello 1"), ":1\r\n");
    assert!(wait_until(Duration::from_secs(5), || cmd(
        &mut c,
        "PTTL hello"
    ) == ":-2\r\n"));
    assert_eq!(keys(&mut c, "h?llo"), ["h*llo", "h?llo", "hallo", "hxllo"]);
}

#[test]
fn scan_returns_every_key_once_with_match_count_type() {
    let server = server();
    let mut con = server.client();
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("SET").arg(format!("user:{i}")).arg(i).ignore();
        pipe.cmd("SET").arg(format!("item:{i}")).arg(i).ignore();
    }
    pipe.query::<()>(&mut con).unwrap();

    let all = scan_all(&mut con, &[]);
    assert_eq!(all.len(), 2000);
    assert!(all.values().all(|&n| n == 1), "a key was returned twice");

    for count in ["1", "7", "100", "5000"] {
        let users = scan_all(&mut con, &["MATCH", "user:*", "COUNT", count]);
        let expected: HashSet<String> = (0..1000).map(|i| format!("user:{i}")).collect();
        assert_eq!(
            users.keys().cloned().collect::<HashSet<_>>(),
            expected,
            "COUNT {count}"
        );
        assert!(users.values().all(|&n| n == 1));
    }

    assert_eq!(scan_all(&mut con, &["TYPE", "string"]).len(), 2000);
    assert_eq!(
        scan_all(&mut con, &["TYPE", "STRING", "MATCH", "item:1*"]).len(),
        111
    );
    assert_eq!(scan_all(&mut con, &["TYPE", "list"]).len(), 0);
    assert_eq!(scan_all(&mut con, &["TYPE", "nosuchtype"]).len(), 0);

    // A large COUNT returns everything in one call.
    let (next, keys) = scan_step(&mut con, 0, &["COUNT", "100000"]);
    assert_eq!((next, keys.len()), (0, 2000));
}

#[test]
fn scan_errors_and_reply_shape() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "SCAN 0"), "*2\r\n$1\r\n0\r\n*0\r\n");
    assert_eq!(cmd(&mut c, "SET k v"), "+OK\r\n");
    assert_eq!(
        cmd(&mut c, "SCAN 0 COUNT 100"),
        "*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n"
    );
    assert_eq!(
        call(&mut c, &[b"SCAN", b""]),
        "*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n"
    );
    assert_eq!(
        cmd(&mut c, "SCAN +0 COUNT 100"),
        "*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n"
    );
    // The largest cursor is past every key.
    assert_eq!(cmd(&mut c, "SCAN -1"), "*2\r\n$1\r\n0\r\n*0\r\n");
    assert_eq!(
        cmd(&mut c, "SCAN 18446744073709551615"),
        "*2\r\n$1\r\n0\r\n*0\r\n"
    );
    for bad in ["abc", "18446744073709551616", "1x", "-18446744073709551616"] {
        assert_eq!(
            cmd(&mut c, &format!("SCAN {bad}")),
            err("ERR invalid cursor"),
            "{bad}"
        );
    }
    assert_eq!(call(&mut c, &[b"SCAN", b" 0"]), err("ERR invalid cursor"));
    assert_eq!(cmd(&mut c, "SCAN 0 COUNT 0"), err("ERR syntax error"));
    assert_eq!(cmd(&mut c, "SCAN 0 COUNT -5"), err("ERR syntax error"));
    assert_eq!(
        cmd(&mut c, "SCAN 0 COUNT abc"),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(cmd(&mut c, "SCAN 0 MATCH"), err("ERR syntax error"));
    assert_eq!(cmd(&mut c, "SCAN 0 FOO bar"), err("ERR syntax error"));
    assert_eq!(cmd(&mut c, "SCAN abc FOO"), err("ERR invalid cursor"));
    assert_eq!(
        cmd(&mut c, "SCAN 0 MATCH nomatch* COUNT 100"),
        "*2\r\n$1\r\n0\r\n*0\r\n"
    );
    // The empty key: MATCH * returns it, MATCH ** (a real glob) does not.
    assert_eq!(call(&mut c, &[b"SET", b"", b"e"]), "+OK\r\n");
    assert_eq!(
        bulk_array_of_scan(&cmd(&mut c, "SCAN 0 MATCH * COUNT 100")).len(),
        2
    );
    assert_eq!(
        bulk_array_of_scan(&cmd(&mut c, "SCAN 0 MATCH ** COUNT 100")),
        ["k"]
    );
}

/// The keys of a one-step SCAN reply that finished (cursor 0).
fn bulk_array_of_scan(reply: &str) -> Vec<String> {
    let rest = reply
        .strip_prefix("*2\r\n$1\r\n0\r\n")
        .expect("a finished scan");
    sorted(bulk_array(rest))
}

/// SCAN's guarantee: a key present for the whole iteration is returned, however much the
/// database grows meanwhile. Another connection inserts many keys during the scan.
#[test]
fn scan_returns_every_preloaded_key_during_concurrent_inserts() {
    let server = server();
    let mut con = server.client();
    const N_PRELOADED: usize = 5000;
    let mut pipe = redis::pipe();
    for i in 0..N_PRELOADED {
        pipe.cmd("SET").arg(format!("pre:{i}")).arg("v").ignore();
    }
    pipe.query::<()>(&mut con).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let inserter = {
        let stop = Arc::clone(&stop);
        let mut con = server.client();
        std::thread::spawn(move || {
            let mut n_inserted = 0usize;
            while !stop.load(Ordering::Relaxed) && n_inserted < 200_000 {
                let mut pipe = redis::pipe();
                for i in n_inserted..n_inserted + 200 {
                    pipe.cmd("SET").arg(format!("new:{i}")).arg("v").ignore();
                }
                pipe.query::<()>(&mut con).unwrap();
                n_inserted += 200;
            }
            n_inserted
        })
    };
    // Let the inserter get going before the scan starts.
    assert!(wait_until(Duration::from_secs(10), || {
        redis::cmd("DBSIZE").query::<usize>(&mut con).unwrap() > N_PRELOADED + 1000
    }));
    let mut seen = HashSet::new();
    let mut cursor = 0;
    let mut n_calls = 0;
    loop {
        let (next, keys) = scan_step(&mut con, cursor, &["COUNT", "10"]);
        n_calls += 1;
        seen.extend(keys);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    stop.store(true, Ordering::Relaxed);
    let n_inserted = inserter.join().unwrap();
    let missing: Vec<String> = (0..N_PRELOADED)
        .map(|i| format!("pre:{i}"))
        .filter(|key| !seen.contains(key))
        .collect();
    assert!(
        missing.is_empty(),
        "{} preloaded keys missed, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert!(
        n_calls > 10,
        "the scan should have taken many steps, took {n_calls}"
    );
    assert!(n_inserted > 0);
}

/// RENAME is one atomic step to other clients: a reader asking `EXISTS a b` (one command over
/// both keys) always sees exactly one of them, while another client renames `a` to `b` and back.
/// A RENAME made of a separate delete and insert would show 0 or 2 now and then.
#[test]
fn rename_is_atomic_to_a_concurrent_reader() {
    let server = server();
    let mut setup = server.raw();
    assert_eq!(cmd(&mut setup, "SET a payload"), "+OK\r\n");
    let stop = Arc::new(AtomicBool::new(false));
    let renamer = {
        let stop = Arc::clone(&stop);
        let mut c = server.raw();
        std::thread::spawn(move || {
            let mut n_renames = 0;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(cmd(&mut c, "RENAME a b"), "+OK\r\n");
                assert_eq!(cmd(&mut c, "RENAME b a"), "+OK\r\n");
                n_renames += 2;
            }
            n_renames
        })
    };
    let mut reader = server.raw();
    let mut counts = HashMap::new();
    for _ in 0..5000 {
        *counts.entry(cmd(&mut reader, "EXISTS a b")).or_insert(0) += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let n_renames = renamer.join().unwrap();
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        [&":1\r\n".to_string()],
        "{counts:?}"
    );
    assert!(n_renames > 0);
    assert_eq!(cmd(&mut setup, "EXISTS a b"), ":1\r\n");
}

#[test]
fn randomkey_returns_a_live_key_or_null() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "RANDOMKEY"), "$-1\r\n");
    assert_eq!(cmd(&mut c, "SET only v"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "RANDOMKEY"), "$4\r\nonly\r\n");
    assert_eq!(cmd(&mut c, "SET other v"), "+OK\r\n");
    let mut seen = HashSet::new();
    assert!(wait_until(Duration::from_secs(10), || {
        seen.insert(cmd(&mut c, "RANDOMKEY"));
        seen.len() == 2
    }));
    assert!(cmd(&mut c, "HELLO 3").starts_with('%'));
    assert_eq!(cmd(&mut c, "FLUSHDB"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "RANDOMKEY"), "_\r\n");
    assert_eq!(
        cmd(&mut c, "RANDOMKEY x"),
        err("ERR wrong number of arguments for 'randomkey' command")
    );
}

#[test]
fn object_subcommands() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "SET int 12345"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "SET small 100"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "SET short hello"), "+OK\r\n");
    assert_eq!(call(&mut c, &[b"SET", b"long", &[b'x'; 45]]), "+OK\r\n");
    assert_eq!(cmd(&mut c, "OBJECT ENCODING int"), "$3\r\nint\r\n");
    assert_eq!(cmd(&mut c, "object encoding short"), "$6\r\nembstr\r\n");
    assert_eq!(cmd(&mut c, "OBJECT Encoding long"), "$3\r\nraw\r\n");
    assert_eq!(cmd(&mut c, "OBJECT ENCODING nokey"), "$-1\r\n");
    assert_eq!(cmd(&mut c, "OBJECT REFCOUNT short"), ":1\r\n");
    assert_eq!(cmd(&mut c, "OBJECT REFCOUNT int"), ":1\r\n");
    assert_eq!(cmd(&mut c, "OBJECT REFCOUNT small"), ":2147483647\r\n");
    assert_eq!(cmd(&mut c, "OBJECT REFCOUNT nokey"), "$-1\r\n");
    assert_eq!(cmd(&mut c, "OBJECT IDLETIME short"), ":0\r\n");
    assert_eq!(cmd(&mut c, "OBJECT IDLETIME nokey"), "$-1\r\n");
    assert_eq!(cmd(&mut c, "OBJECT FREQ nokey"), "$-1\r\n");
    let not_lfu = "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please \
                   note that when switching between policies at runtime LRU and LFU data will take \
                   some time to adjust.";
    assert_eq!(cmd(&mut c, "OBJECT FREQ short"), err(not_lfu));
    assert_eq!(
        cmd(&mut c, "CONFIG SET maxmemory-policy allkeys-lfu"),
        "+OK\r\n"
    );
    assert_eq!(cmd(&mut c, "OBJECT FREQ short"), ":0\r\n");
    let lfu = "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that \
               when switching between policies at runtime LRU and LFU data will take some time to \
               adjust.";
    assert_eq!(cmd(&mut c, "OBJECT IDLETIME short"), err(lfu));
    assert_eq!(
        cmd(&mut c, "CONFIG SET maxmemory-policy noeviction"),
        "+OK\r\n"
    );

    assert_eq!(
        cmd(&mut c, "OBJECT"),
        err("ERR wrong number of arguments for 'object' command")
    );
    assert_eq!(
        cmd(&mut c, "OBJECT foo"),
        err("ERR unknown subcommand 'foo'. Try OBJECT HELP.")
    );
    assert_eq!(
        cmd(&mut c, "OBJECT foo k"),
        err("ERR unknown subcommand 'foo'. Try OBJECT HELP.")
    );
    assert_eq!(
        cmd(&mut c, "OBJECT ENCODING"),
        err("ERR wrong number of arguments for 'object|encoding' command")
    );
    assert_eq!(
        cmd(&mut c, "OBJECT ENCODING a b"),
        err("ERR wrong number of arguments for 'object|encoding' command")
    );
    assert_eq!(
        cmd(&mut c, "OBJECT HELP x"),
        err("ERR wrong number of arguments for 'object|help' command")
    );
    let help = cmd(&mut c, "OBJECT help");
    assert!(
        help.starts_with(
            "*15\r\n+OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n"
        ),
        "{help}"
    );
    assert!(
        help.ends_with("+HELP\r\n+    Prints this help.\r\n"),
        "{help}"
    );

    assert!(cmd(&mut c, "HELLO 3").starts_with('%'));
    assert_eq!(cmd(&mut c, "OBJECT ENCODING nokey"), "_\r\n");
}

#[test]
fn command_info_describes_key_commands() {
    let server = server();
    let mut con = server.client();
    let info: redis::Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("rename")
        .query(&mut con)
        .unwrap();
    let text = format!("{info:?}");
    for needle in ["rename", "write", "@keyspace", "@slow"] {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut con).unwrap();
    assert!(count > 20);
}

/// Regression: TTL, TYPE and EXISTS counted as an access of the key (its LRU idle time went
/// back to 0, its LFU counter up), where Redis looks them up without touching the key
/// (`LOOKUP_NOTOUCH`; Redis's introspection-2 unit). Seen through the LFU counter, which a
/// real access raises deterministically from its initial value.
#[test]
fn ttl_type_and_exists_do_not_touch_the_key() {
    let server = server();
    let mut conn = server.raw();
    let run = |conn: &mut RawConn, args: &[&str]| cmd(conn, &args.join(" "));
    assert_eq!(
        run(
            &mut conn,
            &["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"]
        ),
        "+OK\r\n"
    );
    assert_eq!(run(&mut conn, &["SET", "foo", "bar"]), "+OK\r\n");
    assert_eq!(run(&mut conn, &["OBJECT", "FREQ", "foo"]), ":5\r\n");
    for command in [
        &["TTL", "foo"][..],
        &["PTTL", "foo"],
        &["EXPIRETIME", "foo"],
        &["TYPE", "foo"],
        &["EXISTS", "foo"],
    ] {
        run(&mut conn, command);
    }
    assert_eq!(run(&mut conn, &["OBJECT", "FREQ", "foo"]), ":5\r\n");
    assert_eq!(run(&mut conn, &["GET", "foo"]), "$3\r\nbar\r\n");
    assert_eq!(run(&mut conn, &["OBJECT", "FREQ", "foo"]), ":6\r\n");
    // TOUCH is an access (the first one past the initial counter always counts).
    assert_eq!(run(&mut conn, &["SET", "other", "v"]), "+OK\r\n");
    assert_eq!(run(&mut conn, &["TOUCH", "other", "missing"]), ":1\r\n");
    assert_eq!(run(&mut conn, &["OBJECT", "FREQ", "other"]), ":6\r\n");
}
