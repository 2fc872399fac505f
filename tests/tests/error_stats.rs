//! INFO errorstats, `total_error_replies` and commandstats' `rejected_calls` / `failed_calls`,
//! as Redis 7.0 counts them. Regression: forkless had no `# Errorstats` section, counted a
//! script's error twice (once when the script's command replied it, once when the script
//! replied it), and counted a blocked command's every retry as a call, so the numbers Redis's
//! own suite checks (scripting, stream-cgroups) differed.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::HashMap;
use std::time::Duration;

use forkless_tests::{TestServer, info_section, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

fn errorstats(conn: &mut redis::Connection) -> HashMap<String, String> {
    info_section(conn, "errorstats")
}

/// `cmdstat_NAME` without its timing fields: `calls=N,rejected_calls=N,failed_calls=N`.
fn cmdstat(conn: &mut redis::Connection, name: &str) -> String {
    let stats = info_section(conn, "commandstats");
    let Some(line) = stats.get(&format!("cmdstat_{name}")) else {
        return String::new();
    };
    line.split(',')
        .filter(|part| !part.starts_with("usec"))
        .collect::<Vec<_>>()
        .join(",")
}

fn total_errors(conn: &mut redis::Connection) -> String {
    info_section(conn, "stats")
        .get("total_error_replies")
        .cloned()
        .unwrap()
}

fn reset(conn: &mut redis::Connection) {
    let () = redis::cmd("CONFIG").arg("RESETSTAT").query(conn).unwrap();
}

fn query_err(conn: &mut redis::Connection, cmd: &mut redis::Cmd) -> String {
    let err = cmd.query::<redis::Value>(conn).unwrap_err();
    let code = err.code().unwrap_or("").to_string();
    format!("{code} {}", err.detail().unwrap_or(""))
}

#[test]
fn errors_are_counted_by_code_and_reset() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut conn = server.client();
    reset(&mut conn);
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut conn)
        .unwrap();
    query_err(&mut conn, redis::cmd("LPUSH").arg("k").arg("a"));
    query_err(&mut conn, redis::cmd("LPUSH").arg("k").arg("a"));
    query_err(&mut conn, &mut redis::cmd("GET"));
    query_err(&mut conn, redis::cmd("NOSUCHCOMMAND").arg("x"));
    let stats = errorstats(&mut conn);
    assert_eq!(stats.get("errorstat_WRONGTYPE").unwrap(), "count=2");
    assert_eq!(stats.get("errorstat_ERR").unwrap(), "count=2");
    assert_eq!(total_errors(&mut conn), "4");
    assert_eq!(
        cmdstat(&mut conn, "lpush"),
        "calls=2,rejected_calls=0,failed_calls=2"
    );
    assert_eq!(
        cmdstat(&mut conn, "get"),
        "calls=0,rejected_calls=1,failed_calls=0"
    );
    // errorstats is one of INFO's default sections, as in Redis 7.0.
    let all: String = redis::cmd("INFO").query(&mut conn).unwrap();
    assert!(all.contains("# Errorstats\r\nerrorstat_ERR:count=2\r\n"));
    reset(&mut conn);
    assert!(errorstats(&mut conn).is_empty());
    assert_eq!(total_errors(&mut conn), "0");
}

#[test]
fn script_errors_are_counted_once() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut conn = server.client();

    // redis.call raising a command's error: the command's error counts; the script's reply
    // built from it does not count again, but EVAL failed.
    reset(&mut conn);
    let err = query_err(
        &mut conn,
        redis::cmd("EVAL")
            .arg("return redis.call('select',99)")
            .arg(0),
    );
    assert!(err.starts_with("ERR DB index is out of range"), "{err}");
    assert_eq!(
        errorstats(&mut conn).get("errorstat_ERR").unwrap(),
        "count=1"
    );
    assert_eq!(total_errors(&mut conn), "1");
    assert_eq!(
        cmdstat(&mut conn, "select"),
        "calls=1,rejected_calls=0,failed_calls=1"
    );
    assert_eq!(
        cmdstat(&mut conn, "eval"),
        "calls=1,rejected_calls=0,failed_calls=1"
    );

    // redis.pcall's error returned as the script's reply: counted once.
    reset(&mut conn);
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut conn)
        .unwrap();
    query_err(
        &mut conn,
        redis::cmd("EVAL")
            .arg("return redis.pcall('lpush','k','x')")
            .arg(0),
    );
    assert_eq!(
        errorstats(&mut conn).get("errorstat_WRONGTYPE").unwrap(),
        "count=1"
    );
    assert_eq!(total_errors(&mut conn), "1");

    // A write refused inside EVAL_RO is the command's rejected call.
    reset(&mut conn);
    query_err(
        &mut conn,
        redis::cmd("EVAL_RO")
            .arg("return redis.call('set','x','y')")
            .arg(1)
            .arg("x"),
    );
    assert_eq!(
        errorstats(&mut conn).get("errorstat_ERR").unwrap(),
        "count=1"
    );
    assert_eq!(total_errors(&mut conn), "1");
    assert_eq!(
        cmdstat(&mut conn, "set"),
        "calls=0,rejected_calls=1,failed_calls=0"
    );

    // redis.error_reply is the script's own error: counted under its code.
    reset(&mut conn);
    query_err(
        &mut conn,
        redis::cmd("EVAL")
            .arg("return redis.error_reply('MY_ERR_CODE custom msg')")
            .arg(0),
    );
    let stats = errorstats(&mut conn);
    assert_eq!(stats.get("errorstat_MY_ERR_CODE").unwrap(), "count=1");
    assert_eq!(stats.len(), 1);
}

#[test]
fn distinct_error_codes_are_bounded() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut conn = server.client();
    reset(&mut conn);
    for idx in 0..200 {
        query_err(
            &mut conn,
            redis::cmd("EVAL")
                .arg("return redis.error_reply(ARGV[1] .. ' my error message')")
                .arg(0)
                .arg(idx),
        );
    }
    let stats = errorstats(&mut conn);
    assert_eq!(stats.len(), 129, "128 codes and the marker");
    assert_eq!(
        stats.get("errorstat_ERRORSTATS_DISABLED").unwrap(),
        "count=1"
    );
    assert_eq!(total_errors(&mut conn), "200");
    reset(&mut conn);
    assert!(errorstats(&mut conn).is_empty());
}

#[test]
fn a_blocked_command_is_one_call() {
    let server = TestServer::start(BIN, &["--port", "0"]);
    let mut conn = server.client();
    reset(&mut conn);
    let () = redis::cmd("XADD")
        .arg("s")
        .arg("1-1")
        .arg("f")
        .arg("v")
        .query(&mut conn)
        .unwrap();
    let () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("s")
        .arg("g")
        .arg("$")
        .query(&mut conn)
        .unwrap();
    let mut blocked = server.raw();
    blocked.send_command(&[
        b"XREADGROUP",
        b"GROUP",
        b"g",
        b"c",
        b"BLOCK",
        b"0",
        b"STREAMS",
        b"s",
        b">",
    ]);
    assert!(wait_until(Duration::from_secs(10), || {
        info_section(&mut conn, "clients").get("blocked_clients") == Some(&"1".to_string())
    }));
    // A write to the key wakes the reader without serving it (nothing new for the group).
    let () = redis::cmd("XDEL")
        .arg("s")
        .arg("1-1")
        .query(&mut conn)
        .unwrap();
    let () = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg("s")
        .arg("g")
        .query(&mut conn)
        .unwrap();
    let reply = String::from_utf8(blocked.read_reply()).unwrap();
    assert!(reply.starts_with("-NOGROUP"), "{reply}");
    assert_eq!(
        errorstats(&mut conn).get("errorstat_NOGROUP").unwrap(),
        "count=1"
    );
    assert_eq!(
        cmdstat(&mut conn, "xreadgroup"),
        "calls=1,rejected_calls=0,failed_calls=1"
    );
}
