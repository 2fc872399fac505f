//! Key expiry end to end: lazy expiry on access, the active cycle reclaiming keys nobody
//! touches, the EXPIRE family's NX/XX/GT/LT rules and errors, TTL/PTTL/EXPIRETIME, PERSIST, and
//! how RENAME and SET treat a TTL.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use forkless_tests::resp::{cmd, err};
use forkless_tests::{RawConn, TestServer, wait_until};

fn server() -> TestServer {
    TestServer::start(env!("CARGO_BIN_EXE_forkless-server"), &[])
}

/// Sends a command whose reply is an integer and returns it.
fn int(conn: &mut RawConn, line: &str) -> i64 {
    let reply = cmd(conn, line);
    reply
        .strip_prefix(':')
        .and_then(|rest| rest.strip_suffix("\r\n"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}: not an integer reply: {reply:?}"))
}

fn unix_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_millis(),
    )
    .expect("a time in range")
}

#[test]
fn lazy_expiry_hides_the_key_once_its_time_passes() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "SET k v PX 50"), "+OK\r\n");
    let pttl = int(&mut c, "PTTL k");
    assert!(
        (1..=50).contains(&pttl),
        "PTTL right after SET PX 50: {pttl}"
    );
    assert!(wait_until(Duration::from_secs(5), || int(&mut c, "PTTL k") == -2));
    assert_eq!(cmd(&mut c, "EXISTS k"), ":0\r\n");
    assert_eq!(cmd(&mut c, "GET k"), "$-1\r\n");
    assert_eq!(cmd(&mut c, "TTL k"), ":-2\r\n");
    assert_eq!(cmd(&mut c, "TYPE k"), "+none\r\n");

    // The same through EXPIRE on an existing key, observed with EXISTS.
    assert_eq!(cmd(&mut c, "SET k2 v"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "PEXPIRE k2 50"), ":1\r\n");
    assert_eq!(cmd(&mut c, "EXISTS k2"), ":1\r\n");
    assert!(wait_until(Duration::from_secs(5), || cmd(
        &mut c,
        "EXISTS k2"
    ) == ":0\r\n"));
}

/// Keys nobody reads must still go: 10,000 keys with PX 100, never touched again, are reclaimed
/// by the active expiry cycle (hz 10) so DBSIZE reaches 0 and INFO keyspace drops db0.
#[test]
fn active_expiry_reclaims_untouched_keys() {
    let server = server();
    let mut con = server.client();
    let mut pipe = redis::pipe();
    for i in 0..10_000 {
        pipe.cmd("SET")
            .arg(format!("volatile:{i}"))
            .arg("value")
            .arg("PX")
            .arg(100)
            .ignore();
    }
    pipe.cmd("SET").arg("persistent").arg("stays").ignore();
    pipe.query::<()>(&mut con).unwrap();
    let dbsize = |con: &mut redis::Connection| redis::cmd("DBSIZE").query::<i64>(con).unwrap();
    assert!(dbsize(&mut con) > 1, "the keys should outlive the pipeline");

    assert!(
        wait_until(Duration::from_secs(10), || dbsize(&mut con) == 1),
        "active expiry left {} keys",
        dbsize(&mut con)
    );
    let info: String = redis::cmd("INFO").arg("keyspace").query(&mut con).unwrap();
    assert!(info.contains("db0:keys=1,expires=0,"), "{info}");
    let stats: String = redis::cmd("INFO").arg("stats").query(&mut con).unwrap();
    assert!(stats.contains("expired_keys:10000\r\n"), "{stats}");

    redis::cmd("DEL")
        .arg("persistent")
        .query::<i64>(&mut con)
        .unwrap();
    let info: String = redis::cmd("INFO").arg("keyspace").query(&mut con).unwrap();
    assert!(!info.contains("db0:"), "{info}");
}

#[test]
fn expire_options_nx_xx_gt_lt() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "EXPIRE nokey 100"), ":0\r\n");
    assert_eq!(cmd(&mut c, "EXPIRE nokey 100 NX"), ":0\r\n");
    assert_eq!(cmd(&mut c, "SET k v"), "+OK\r\n");
    // No TTL yet: XX and GT refuse (GT sees no TTL as infinite), NX and LT set it.
    assert_eq!(cmd(&mut c, "EXPIRE k 100 XX"), ":0\r\n");
    assert_eq!(cmd(&mut c, "EXPIRE k 100 GT"), ":0\r\n");
    assert_eq!(cmd(&mut c, "TTL k"), ":-1\r\n");
    assert_eq!(cmd(&mut c, "EXPIRE k 100 LT"), ":1\r\n");
    assert_eq!(cmd(&mut c, "TTL k"), ":100\r\n");
    assert_eq!(cmd(&mut c, "PERSIST k"), ":1\r\n");
    assert_eq!(cmd(&mut c, "EXPIRE k 100 NX"), ":1\r\n");
    assert_eq!(cmd(&mut c, "TTL k"), ":100\r\n");
    // With a TTL of 100 s.
    assert_eq!(cmd(&mut c, "EXPIRE k 200 NX"), ":0\r\n");
    assert_eq!(cmd(&mut c, "EXPIRE k 50 GT"), ":0\r\n");
    assert_eq!(cmd(&mut c, "EXPIRE k 200 LT"), ":0\r\n");
    assert_eq!(cmd(&mut c, "TTL k"), ":100\r\n");
    assert_eq!(cmd(&mut c, "EXPIRE k 200 GT"), ":1\r\n");
    assert_eq!(cmd(&mut c, "TTL k"), ":200\r\n");
    assert_eq!(cmd(&mut c, "EXPIRE k 150 LT"), ":1\r\n");
    assert_eq!(cmd(&mut c, "TTL k"), ":150\r\n");
    assert_eq!(cmd(&mut c, "EXPIRE k 300 XX GT"), ":1\r\n");
    assert_eq!(cmd(&mut c, "TTL k"), ":300\r\n");
    assert_eq!(cmd(&mut c, "EXPIRE k 250 xx lt"), ":1\r\n");
    assert_eq!(cmd(&mut c, "TTL k"), ":250\r\n");
    assert_eq!(cmd(&mut c, "EXPIRE k 250 XX"), ":1\r\n");
    // The same rules through the other three commands.
    let deadline = unix_ms() + 1_000_000;
    assert_eq!(cmd(&mut c, &format!("PEXPIREAT k {deadline} GT")), ":1\r\n");
    assert_eq!(int(&mut c, "PEXPIRETIME k"), deadline);
    assert_eq!(
        cmd(&mut c, &format!("PEXPIREAT k {} GT", deadline - 1)),
        ":0\r\n"
    );
    assert_eq!(
        cmd(&mut c, &format!("EXPIREAT k {} LT", deadline / 1000)),
        ":1\r\n"
    );
    assert_eq!(int(&mut c, "PEXPIRETIME k"), deadline / 1000 * 1000);
    assert_eq!(cmd(&mut c, "PEXPIRE k 5000 NX"), ":0\r\n");
    assert_eq!(cmd(&mut c, "PEXPIRE k 5000 LT"), ":1\r\n");
    assert!((4900..=5000).contains(&int(&mut c, "PTTL k")));

    // Option errors come before the time is even parsed.
    let nx_xx = err("ERR NX and XX, GT or LT options at the same time are not compatible");
    assert_eq!(cmd(&mut c, "EXPIRE k 10 NX XX"), nx_xx);
    assert_eq!(cmd(&mut c, "EXPIRE k 10 NX GT"), nx_xx);
    assert_eq!(cmd(&mut c, "PEXPIRE k 10 lt nx"), nx_xx);
    assert_eq!(cmd(&mut c, "EXPIRE k abc NX XX"), nx_xx);
    assert_eq!(
        cmd(&mut c, "EXPIRE k 10 GT LT"),
        err("ERR GT and LT options at the same time are not compatible")
    );
    assert_eq!(
        cmd(&mut c, "EXPIRE k 10 FOO"),
        err("ERR Unsupported option FOO")
    );
    assert_eq!(
        cmd(&mut c, "EXPIRE k abc foo"),
        err("ERR Unsupported option foo")
    );
    assert_eq!(cmd(&mut c, "EXPIRE k 10 NX NX"), ":0\r\n");
    assert_eq!(
        cmd(&mut c, "EXPIRE k abc"),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(
        cmd(&mut c, "EXPIRE k 1.5"),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(
        cmd(&mut c, "EXPIRE k"),
        err("ERR wrong number of arguments for 'expire' command")
    );
    // Overflow of the unit conversion or of the addition of the current time.
    assert_eq!(
        cmd(&mut c, "EXPIRE k 99999999999999999"),
        err("ERR invalid expire time in 'expire' command")
    );
    assert_eq!(
        cmd(&mut c, "EXPIRE k -99999999999999999"),
        err("ERR invalid expire time in 'expire' command")
    );
    assert_eq!(
        cmd(&mut c, "PEXPIRE k 9223372036854775807"),
        err("ERR invalid expire time in 'pexpire' command")
    );
    assert_eq!(
        cmd(&mut c, "EXPIREAT k 9223372036854775807"),
        err("ERR invalid expire time in 'expireat' command")
    );
    assert_eq!(cmd(&mut c, "PEXPIREAT k 9223372036854775807"), ":1\r\n");
    assert_eq!(cmd(&mut c, "PEXPIRETIME k"), ":9223372036854775807\r\n");
    assert_eq!(cmd(&mut c, "EXPIRETIME k"), ":9223372036854776\r\n");
}

#[test]
fn a_time_in_the_past_deletes_the_key() {
    let server = server();
    let mut c = server.raw();
    for line in [
        "EXPIRE k 0",
        "EXPIRE k -10",
        "PEXPIRE k -1",
        "EXPIREAT k 1",
        "PEXPIREAT k -5",
    ] {
        assert_eq!(cmd(&mut c, "SET k v"), "+OK\r\n");
        assert_eq!(cmd(&mut c, line), ":1\r\n", "{line}");
        assert_eq!(cmd(&mut c, "EXISTS k"), ":0\r\n", "{line}");
    }
    // The conditions still apply first: GT never passes on a key without TTL.
    assert_eq!(cmd(&mut c, "SET k v"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "EXPIRE k -1 GT"), ":0\r\n");
    assert_eq!(cmd(&mut c, "EXPIRE k -1 LT"), ":1\r\n");
    assert_eq!(cmd(&mut c, "EXISTS k"), ":0\r\n");
    assert_eq!(cmd(&mut c, "EXPIRE k -1"), ":0\r\n");
}

#[test]
fn ttl_pttl_expiretime_report_as_redis() {
    let server = server();
    let mut c = server.raw();
    for command in ["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"] {
        assert_eq!(cmd(&mut c, &format!("{command} nokey")), ":-2\r\n");
    }
    assert_eq!(cmd(&mut c, "SET k v"), "+OK\r\n");
    for command in ["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"] {
        assert_eq!(cmd(&mut c, &format!("{command} k")), ":-1\r\n");
    }
    // TTL rounds to the nearest second, as Redis does ((ms + 500) / 1000).
    assert_eq!(cmd(&mut c, "PEXPIRE k 10400"), ":1\r\n");
    assert_eq!(cmd(&mut c, "TTL k"), ":10\r\n");
    assert_eq!(cmd(&mut c, "PEXPIRE k 10900"), ":1\r\n");
    assert_eq!(cmd(&mut c, "TTL k"), ":11\r\n");
    assert_eq!(cmd(&mut c, "PEXPIREAT k 99999999999499"), ":1\r\n");
    assert_eq!(cmd(&mut c, "EXPIRETIME k"), ":99999999999\r\n");
    assert_eq!(cmd(&mut c, "PEXPIRETIME k"), ":99999999999499\r\n");
    assert_eq!(cmd(&mut c, "PEXPIREAT k 99999999999500"), ":1\r\n");
    assert_eq!(cmd(&mut c, "EXPIRETIME k"), ":100000000000\r\n");
    let at = unix_ms() / 1000 + 1000;
    assert_eq!(cmd(&mut c, &format!("EXPIREAT k {at}")), ":1\r\n");
    assert_eq!(int(&mut c, "EXPIRETIME k"), at);
    assert_eq!(int(&mut c, "PEXPIRETIME k"), at * 1000);
    assert!((998..=1000).contains(&int(&mut c, "TTL k")));
    assert_eq!(
        cmd(&mut c, "TTL"),
        err("ERR wrong number of arguments for 'ttl' command")
    );
    assert_eq!(
        cmd(&mut c, "EXPIRETIME k x"),
        err("ERR wrong number of arguments for 'expiretime' command")
    );
}

#[test]
fn persist_removes_the_ttl_only() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "PERSIST nokey"), ":0\r\n");
    assert_eq!(cmd(&mut c, "SET k v EX 100"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "PERSIST k"), ":1\r\n");
    assert_eq!(cmd(&mut c, "TTL k"), ":-1\r\n");
    assert_eq!(cmd(&mut c, "PERSIST k"), ":0\r\n");
    assert_eq!(cmd(&mut c, "GET k"), "$1\r\nv\r\n");
    // A persisted key no longer counts as volatile.
    let info = cmd(&mut c, "INFO keyspace");
    assert!(info.contains("db0:keys=1,expires=0,"), "{info}");
    // Persisting a key whose time has already passed finds nothing, and does not revive it.
    assert_eq!(cmd(&mut c, "SET gone v PX 20"), "+OK\r\n");
    assert!(wait_until(Duration::from_secs(5), || cmd(
        &mut c,
        "PTTL gone"
    ) == ":-2\r\n"));
    assert_eq!(cmd(&mut c, "PERSIST gone"), ":0\r\n");
    assert_eq!(cmd(&mut c, "EXISTS gone"), ":0\r\n");
}

#[test]
fn rename_and_copy_carry_the_ttl() {
    let server = server();
    let mut c = server.raw();
    let deadline = unix_ms() + 500_000;
    assert_eq!(cmd(&mut c, &format!("SET a v PXAT {deadline}")), "+OK\r\n");
    assert_eq!(cmd(&mut c, "RENAME a b"), "+OK\r\n");
    assert_eq!(int(&mut c, "PEXPIRETIME b"), deadline);
    assert_eq!(cmd(&mut c, "RENAMENX b c"), ":1\r\n");
    assert_eq!(int(&mut c, "PEXPIRETIME c"), deadline);
    assert_eq!(cmd(&mut c, "COPY c d"), ":1\r\n");
    assert_eq!(int(&mut c, "PEXPIRETIME d"), deadline);
    // A renamed key still expires, under its new name.
    assert_eq!(cmd(&mut c, "PEXPIRE c 30"), ":1\r\n");
    assert_eq!(cmd(&mut c, "RENAME c e"), "+OK\r\n");
    assert!(wait_until(Duration::from_secs(5), || cmd(
        &mut c, "EXISTS e"
    ) == ":0\r\n"));
    assert_eq!(cmd(&mut c, "EXISTS c"), ":0\r\n");
    // An expired source is no source at all.
    assert_eq!(cmd(&mut c, "SET f v PX 1"), "+OK\r\n");
    assert!(wait_until(Duration::from_secs(5), || cmd(
        &mut c,
        "RENAME f g"
    ) == err(
        "ERR no such key"
    )));
}

#[test]
fn set_without_keepttl_clears_the_ttl() {
    let server = server();
    let mut c = server.raw();
    assert_eq!(cmd(&mut c, "SET k v EX 100"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "SET k v2"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "TTL k"), ":-1\r\n");
    assert_eq!(cmd(&mut c, "SET k v EX 100"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "SET k v3 KEEPTTL"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "TTL k"), ":100\r\n");
    assert_eq!(cmd(&mut c, "GET k"), "$2\r\nv3\r\n");
    // An expired key does not pass its TTL on: SET KEEPTTL after expiry makes a persistent key.
    assert_eq!(cmd(&mut c, "PEXPIRE k 1"), ":1\r\n");
    assert!(wait_until(Duration::from_secs(5), || cmd(
        &mut c, "EXISTS k"
    ) == ":0\r\n"));
    assert_eq!(cmd(&mut c, "SET k v4 KEEPTTL"), "+OK\r\n");
    assert_eq!(cmd(&mut c, "TTL k"), ":-1\r\n");
}
