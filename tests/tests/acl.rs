//! ACL end to end: every command refused to a user without permission (reply for reply against
//! Debian's redis-server 7.0 when installed), key, channel, MULTI/EXEC and script checks, the
//! ACL log, the ACL file's save/load round trip, `user` lines in the config file and CONFIG
//! REWRITE, `requirepass` as the default user's password, and CLIENT LIST/KILL by user.
//! tests/cases/acl.txt replays the rule language and ACL's replies against redis-server too.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use forkless_tests::{
    ChildGuard, RawConn, TestDir, TestServer, free_port, redis_tool, unique_dir, wait_until,
};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

fn text(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply).into_owned()
}

fn call(conn: &mut RawConn, args: &[&str]) -> String {
    let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
    text(&conn.call(&args))
}

/// Starts Debian's redis-server on a free loopback port with `args`; None (after the loud
/// skip line) when it is not installed.
fn real_redis(args: &[&str]) -> Option<(ChildGuard, SocketAddr)> {
    let redis_server = redis_tool("redis-server")?;
    let port = free_port();
    let dir = unique_dir("acl-redis");
    let guard = ChildGuard(
        Command::new(redis_server)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(&dir)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server"),
    );
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    assert!(
        wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(addr).is_ok()
        }),
        "redis-server did not start on port {port}"
    );
    Some((guard, addr))
}

/// One entry of COMMAND's reply: full name, arity, flags, and its subcommands.
struct CommandInfo {
    name: String,
    arity: i64,
    flags: Vec<String>,
    subcommands: Vec<CommandInfo>,
}

fn parse_info(value: &redis::Value) -> Option<CommandInfo> {
    let redis::Value::Array(fields) = value else {
        return None;
    };
    let name = match fields.first()? {
        redis::Value::BulkString(name) => String::from_utf8_lossy(name).into_owned(),
        _ => return None,
    };
    let arity = match fields.get(1)? {
        redis::Value::Int(arity) => *arity,
        _ => return None,
    };
    let flags = match fields.get(2)? {
        redis::Value::Array(flags) | redis::Value::Set(flags) => flags
            .iter()
            .filter_map(|flag| match flag {
                redis::Value::SimpleString(flag) => Some(flag.clone()),
                redis::Value::BulkString(flag) => Some(String::from_utf8_lossy(flag).into()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let subcommands = match fields.get(9) {
        Some(redis::Value::Array(subs)) => subs.iter().filter_map(parse_info).collect(),
        _ => Vec::new(),
    };
    Some(CommandInfo {
        name,
        arity,
        flags,
        subcommands,
    })
}

/// An argv that satisfies `info`'s arity: its name (split at `|`), then `x`s.
fn argv_for(info: &CommandInfo) -> Vec<String> {
    let mut argv: Vec<String> = info.name.split('|').map(str::to_owned).collect();
    let needed = usize::try_from(info.arity.unsigned_abs()).unwrap();
    while argv.len() < needed {
        argv.push("x".to_owned());
    }
    argv
}

#[test]
fn every_command_is_refused_to_a_user_without_permission() {
    // DEBUG and MODULE's protected subcommands allowed, so that ACL is what refuses them.
    let protected = [
        "--enable-debug-command",
        "yes",
        "--enable-module-command",
        "yes",
    ];
    let server = TestServer::start(BIN, &protected);
    let mut admin = server.client();
    let all: redis::Value = redis::cmd("COMMAND").query(&mut admin).unwrap();
    let redis::Value::Array(entries) = all else {
        panic!("COMMAND: {all:?}")
    };
    let mut calls = Vec::new();
    for info in entries.iter().filter_map(parse_info) {
        if info.flags.iter().any(|flag| flag == "no_auth") {
            continue; // AUTH, HELLO, QUIT, RESET: ACL never refuses them.
        }
        if info.subcommands.is_empty() {
            calls.push((info.name.clone(), argv_for(&info)));
        } else {
            for sub in &info.subcommands {
                calls.push((sub.name.clone(), argv_for(sub)));
            }
        }
    }
    assert!(calls.len() > 250, "only {} commands", calls.len());

    let setup = |conn: &mut RawConn| {
        assert_eq!(
            call(
                conn,
                &[
                    "ACL", "SETUSER", "nobody", "on", "nopass", "-@all", "~*", "&*"
                ]
            ),
            "+OK\r\n"
        );
        assert_eq!(call(conn, &["AUTH", "nobody", "x"]), "+OK\r\n");
    };
    let mut conn = server.raw();
    setup(&mut conn);
    let real = real_redis(&protected);
    let mut real_conn = real.as_ref().map(|(_, addr)| RawConn::connect(*addr));
    if let Some(real_conn) = real_conn.as_mut() {
        setup(real_conn);
    }
    let mut mismatches = Vec::new();
    for (name, argv) in &calls {
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        let reply = call(&mut conn, &args);
        let mut expected =
            format!("-NOPERM this user has no permissions to run the '{name}' command\r\n");
        if name == "exec" {
            // A refused EXEC aborts the transaction, in or out of one.
            expected = format!(
                "-EXECABORT Transaction discarded because of: {}",
                &expected[1..]
            );
        }
        if reply != expected {
            mismatches.push(format!("{argv:?}: {reply:?}"));
        }
        if let Some(real_conn) = real_conn.as_mut() {
            let real_reply = call(real_conn, &args);
            if real_reply != reply {
                mismatches.push(format!(
                    "{argv:?}: redis {real_reply:?}, forkless {reply:?}"
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    // Every refusal went to the ACL log, grouped per command.
    let log: Vec<redis::Value> = redis::cmd("ACL")
        .arg("LOG")
        .arg("1000")
        .query(&mut admin)
        .unwrap();
    assert_eq!(log.len(), 128, "the log keeps acllog-max-len entries");
}

#[test]
fn keys_channels_transactions_and_scripts_are_checked() {
    let server = TestServer::start(BIN, &[]);
    let real = real_redis(&[]);
    let mut conns = vec![server.raw()];
    if let Some((_, addr)) = &real {
        conns.push(RawConn::connect(*addr));
    }
    let script: &[&[&str]] = &[
        &[
            "ACL",
            "SETUSER",
            "u",
            "on",
            ">p",
            "+@all",
            "-@dangerous",
            "resetkeys",
            "%R~r*",
            "%W~w*",
            "~rw*",
            "resetchannels",
            "&news.*",
        ],
        &["SET", "r1", "v"],
        &["AUTH", "u", "p"],
        &["GET", "r1"],
        &["SET", "r1", "v"],
        &["SET", "w1", "v"],
        &["GET", "w1"],
        &["SET", "w1", "v", "GET"],
        &["LMOVE", "rw1", "w2", "LEFT", "RIGHT"],
        &["COPY", "r1", "w3"],
        &["COPY", "w3", "r1"],
        &["PUBLISH", "news.x", "m"],
        &["PUBLISH", "other", "m"],
        &["MULTI"],
        &["SET", "w4", "v"],
        &["GET", "other"],
        &["EXEC"],
        &["MULTI"],
        &["SET", "w4", "v"],
        &["EXEC"],
        &["EVAL", "return redis.call('get', KEYS[1])", "1", "other"],
        &["EVAL", "return redis.call('get', 'other')", "0"],
        &["EVAL", "return redis.call('flushall')", "0"],
        &["EVAL", "return redis.pcall('publish', 'other', 'x')", "0"],
        &["EVAL", "return redis.call('set', 'w5', 'v')", "0"],
        &["SORT", "rw1", "BY", "w*"],
        &["SORT", "rw1", "GET", "#"],
        &["FLUSHALL"],
        &["EVAL", "return redis.acl_check_cmd('set', 'w9', 'v')", "0"],
        &["EVAL", "return redis.acl_check_cmd('set', 'r9', 'v')", "0"],
        &["EVAL", "return redis.acl_check_cmd('flushall')", "0"],
        &["EVAL", "return redis.acl_check_cmd('get', 'r1')", "0"],
        &["CONFIG", "SET", "maxclients", "100"],
        &["ACL", "WHOAMI"],
        &["AUTH", "default", "x"],
        &["ACL", "SETUSER", "u", "-set"],
        &["AUTH", "u", "p"],
        &["MULTI"],
        &["SET", "w6", "v"],
        &["AUTH", "default", "x"],
    ];
    let mut replies: Vec<Vec<String>> = Vec::new();
    for conn in &mut conns {
        replies.push(script.iter().map(|args| call(conn, args)).collect());
    }
    let forkless = &replies[0];
    assert_eq!(
        forkless[4],
        "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"
    );
    assert_eq!(
        forkless[12],
        "-NOPERM this user has no permissions to access one of the channels used as arguments\r\n"
    );
    assert_eq!(
        forkless[27],
        "-NOPERM this user has no permissions to run the 'flushall' command\r\n"
    );
    assert_eq!(
        (forkless[28].as_str(), forkless[29].as_str()),
        (":1\r\n", "$-1\r\n")
    );
    if let Some(redis) = replies.get(1) {
        for (idx, args) in script.iter().enumerate() {
            assert_eq!(forkless[idx], redis[idx], "{args:?}");
        }
    }
    // EXEC checks again what the ACL changed since queuing (the same connection, default user).
    let mut conn = server.raw();
    assert_eq!(
        call(
            &mut conn,
            &["ACL", "SETUSER", "v", "on", "nopass", "+@all", "~*"]
        ),
        "+OK\r\n"
    );
    assert_eq!(call(&mut conn, &["AUTH", "v", "x"]), "+OK\r\n");
    assert_eq!(call(&mut conn, &["MULTI"]), "+OK\r\n");
    assert_eq!(call(&mut conn, &["SET", "k", "v"]), "+QUEUED\r\n");
    let mut other = server.raw();
    assert_eq!(
        call(&mut other, &["ACL", "SETUSER", "v", "-set"]),
        "+OK\r\n"
    );
    assert_eq!(
        call(&mut conn, &["EXEC"]),
        "*1\r\n-NOPERM ACLs rules changed between the moment the transaction was accumulated \
         and the EXEC call. This command is no longer allowed for the following reason: no \
         permission to execute the command or subcommand\r\n"
    );
}

#[test]
fn the_acl_log_records_denials_with_redis_fields() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    call(
        &mut conn,
        &["ACL", "SETUSER", "u", "on", "nopass", "+get", "~a*"],
    );
    call(&mut conn, &["AUTH", "u", "x"]);
    call(&mut conn, &["GET", "b"]);
    call(&mut conn, &["GET", "b"]);
    call(&mut conn, &["SET", "a", "v"]);
    call(&mut conn, &["AUTH", "nobody", "pw"]);
    let mut admin = server.client();
    let log: Vec<Vec<redis::Value>> = redis::cmd("ACL").arg("LOG").query(&mut admin).unwrap();
    let fields = |entry: &Vec<redis::Value>| -> Vec<(String, String)> {
        entry
            .chunks(2)
            .map(|pair| {
                let show = |value: &redis::Value| match value {
                    redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    redis::Value::Int(n) => n.to_string(),
                    other => format!("{other:?}"),
                };
                (show(&pair[0]), show(&pair[1]))
            })
            .collect()
    };
    assert_eq!(log.len(), 3);
    let newest = fields(&log[0]);
    let names: Vec<&str> = newest.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "count",
            "reason",
            "context",
            "object",
            "username",
            "age-seconds",
            "client-info"
        ]
    );
    assert_eq!(newest[1].1, "auth");
    assert_eq!(newest[3].1, "AUTH");
    assert_eq!(newest[4].1, "nobody");
    let command = fields(&log[1]);
    assert_eq!(
        (command[1].1.as_str(), command[3].1.as_str()),
        ("command", "set")
    );
    let key = fields(&log[2]);
    assert_eq!(
        (
            key[0].1.as_str(),
            key[1].1.as_str(),
            key[2].1.as_str(),
            key[3].1.as_str()
        ),
        ("2", "key", "toplevel", "b")
    );
    assert!(key[6].1.contains(" user=u "), "{}", key[6].1);
    assert_eq!(call(&mut server.raw(), &["ACL", "LOG", "RESET"]), "+OK\r\n");
    let log: Vec<redis::Value> = redis::cmd("ACL").arg("LOG").query(&mut admin).unwrap();
    assert!(log.is_empty());
}

#[test]
fn acl_file_saves_atomically_and_loads_all_or_nothing() {
    let dir = TestDir::new("aclfile");
    let path = dir.0.join("users.acl");
    std::fs::write(
        &path,
        "user default on nopass ~* &* +@all\nuser alice on >pw ~a* +get\n",
    )
    .unwrap();
    let server = TestServer::start_in(BIN, &dir.0, &["--aclfile", "users.acl"], &[]);
    let mut conn = server.raw();
    assert_eq!(
        call(&mut conn, &["ACL", "USERS"]),
        "*2\r\n$5\r\nalice\r\n$7\r\ndefault\r\n"
    );
    assert_eq!(call(&mut conn, &["AUTH", "alice", "pw"]), "+OK\r\n");
    assert_eq!(call(&mut conn, &["AUTH", "default", "x"]), "+OK\r\n");
    assert_eq!(
        call(
            &mut conn,
            &[
                "ACL",
                "SETUSER",
                "bob",
                "on",
                "#5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
                "%R~b*",
                "&c",
                "+@read",
                "(+set ~s*)"
            ]
        ),
        "+OK\r\n"
    );
    assert_eq!(call(&mut conn, &["ACL", "SAVE"]), "+OK\r\n");
    let saved = std::fs::read_to_string(&path).unwrap();
    let alice_hash = "30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4";
    assert_eq!(
        saved,
        format!(
            "user alice on #{alice_hash} ~a* resetchannels -@all +get\n\
             user bob on #5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 \
             %R~b* resetchannels &c -@all +@read (~s* resetchannels -@all +set)\n\
             user default on nopass ~* &* +@all\n"
        )
    );
    assert!(dir.temp_files().is_empty(), "{:?}", dir.temp_files());

    // A bad file changes nothing, and names every problem.
    std::fs::write(&path, "user carol on +nosuch\n# comment\n").unwrap();
    assert_eq!(
        call(&mut conn, &["ACL", "LOAD"]),
        "-ERR users.acl:1: Error in applying operation '+nosuch': Unknown command or category \
         name in ACL. users.acl:2 should start with user keyword followed by the username. \
         WARNING: ACL errors detected, no change to the previously active ACL rules was \
         performed\r\n"
    );
    assert_eq!(
        call(&mut conn, &["ACL", "USERS"]),
        "*3\r\n$5\r\nalice\r\n$3\r\nbob\r\n$7\r\ndefault\r\n"
    );
    // A good one replaces every user, and closes the connections of the old ones.
    let mut alice = server.raw();
    assert_eq!(call(&mut alice, &["AUTH", "alice", "pw"]), "+OK\r\n");
    std::fs::write(&path, saved.replace("user alice", "user alicia")).unwrap();
    assert_eq!(call(&mut conn, &["ACL", "LOAD"]), "+OK\r\n");
    assert_eq!(
        call(&mut conn, &["ACL", "USERS"]),
        "*3\r\n$6\r\nalicia\r\n$3\r\nbob\r\n$7\r\ndefault\r\n"
    );
    assert!(alice.read_to_close().is_empty());
    drop(conn);
    server.terminate();

    // At startup a bad file stops the server.
    std::fs::write(&path, "user x +nosuch\n").unwrap();
    let status = Command::new(BIN)
        .args(["--port", "0", "--dir"])
        .arg(&dir.0)
        .args(["--aclfile", "users.acl"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!status.status.success());
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        output.contains("Aborting Redis startup because of ACL errors: users.acl:1: Error in applying operation '+nosuch'"),
        "{output}"
    );
}

#[test]
fn user_lines_in_the_config_file_load_and_config_rewrite_keeps_users() {
    let dir = TestDir::new("acl-conf");
    let conf = dir.0.join("redis.conf");
    std::fs::write(
        &conf,
        "user default on nopass ~* +@all -flushdb\nuser alice on >pw (~a* +get) +set ~s*\n",
    )
    .unwrap();
    let port = free_port().to_string();
    let conf_arg = conf.to_str().unwrap();
    let dir_arg = dir.0.to_str().unwrap();
    let server = TestServer::start_raw(
        BIN,
        &[conf_arg, "--port", &port, "--dir", dir_arg],
        dir.0.clone(),
    );
    let mut conn = server.raw();
    assert_eq!(
        call(&mut conn, &["FLUSHDB"]),
        "-NOPERM this user has no permissions to run the 'flushdb' command\r\n"
    );
    assert_eq!(call(&mut conn, &["AUTH", "alice", "pw"]), "+OK\r\n");
    assert_eq!(call(&mut conn, &["SET", "s1", "v"]), "+OK\r\n");
    assert_eq!(call(&mut conn, &["GET", "a1"]), "$-1\r\n");
    assert_eq!(call(&mut server.raw(), &["CONFIG", "REWRITE"]), "+OK\r\n");
    let rewritten = std::fs::read_to_string(&conf).unwrap();
    let pw_hash = "30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4";
    assert!(
        rewritten.starts_with(&format!(
            "user alice on #{pw_hash} ~s* resetchannels -@all +set (~a* resetchannels -@all +get)\n\
             user default on nopass sanitize-payload ~* resetchannels +@all -flushdb\n"
        )),
        "{rewritten}"
    );
    drop(conn);
    server.terminate();
    // The rewritten file starts the same users (the stopped server took its directory along).
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(&conf, &rewritten).unwrap();
    let server = TestServer::start_raw(
        BIN,
        &[conf_arg, "--port", &port, "--dir", dir_arg],
        dir.0.clone(),
    );
    let mut conn = server.raw();
    assert_eq!(call(&mut conn, &["AUTH", "alice", "pw"]), "+OK\r\n");
    assert_eq!(
        call(&mut conn, &["ACL", "WHOAMI"]),
        "-NOPERM this user has no permissions to run the 'acl|whoami' command\r\n"
    );

    // A user line with a bad rule stops startup, with Redis's words.
    std::fs::write(&conf, "user bob on #abc\n").unwrap();
    let output = Command::new(BIN)
        .arg(conf_arg)
        .args(["--port", "0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        all.contains(
            "Error in user declaration 'bob': The password hash must be exactly 64 characters"
        ),
        "{all}"
    );
}

#[test]
fn requirepass_is_the_default_users_password() {
    let server = TestServer::start(BIN, &["--requirepass", "s3cret"]);
    let mut conn = server.raw();
    assert_eq!(
        call(&mut conn, &["PING"]),
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(call(&mut conn, &["AUTH", "s3cret"]), "+OK\r\n");
    let list = call(&mut conn, &["ACL", "LIST"]);
    assert!(list.starts_with("*1\r\n$"), "{list}");
    assert!(list.contains("user default on #"), "{list}");
    assert!(list.ends_with(" ~* &* +@all\r\n"), "{list}");
    // CONFIG SET requirepass replaces the passwords; an empty one means nopass.
    assert_eq!(
        call(&mut conn, &["CONFIG", "SET", "requirepass", "other"]),
        "+OK\r\n"
    );
    let mut fresh = server.raw();
    assert_eq!(
        call(&mut fresh, &["AUTH", "s3cret"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(call(&mut fresh, &["AUTH", "default", "other"]), "+OK\r\n");
    assert_eq!(
        call(&mut conn, &["CONFIG", "SET", "requirepass", ""]),
        "+OK\r\n"
    );
    assert_eq!(
        call(&mut conn, &["ACL", "LIST"]),
        "*1\r\n$34\r\nuser default on nopass ~* &* +@all\r\n"
    );
    assert_eq!(call(&mut server.raw(), &["PING"]), "+PONG\r\n");
    // ACL SETUSER on the default user is what AUTH checks, as requirepass is.
    assert_eq!(
        call(
            &mut conn,
            &["ACL", "SETUSER", "default", "resetpass", ">p2"]
        ),
        "+OK\r\n"
    );
    let mut third = server.raw();
    assert_eq!(
        call(&mut third, &["GET", "x"]),
        "-NOAUTH Authentication required.\r\n"
    );
    assert!(call(&mut third, &["HELLO", "3", "AUTH", "default", "p2"]).starts_with("%7\r\n"));
    assert_eq!(call(&mut third, &["ACL", "WHOAMI"]), "$7\r\ndefault\r\n");
    // Turning the default user off leaves new connections unauthenticated.
    assert_eq!(
        call(&mut conn, &["ACL", "SETUSER", "default", "nopass", "off"]),
        "+OK\r\n"
    );
    assert_eq!(
        call(&mut server.raw(), &["PING"]),
        "-NOAUTH Authentication required.\r\n"
    );
}

#[test]
fn clients_show_and_lose_their_user() {
    let server = TestServer::start(BIN, &[]);
    let mut admin = server.raw();
    call(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "sub",
            "on",
            "nopass",
            "+@all",
            "~*",
            "resetchannels",
            "&news.*",
            "&lit",
        ],
    );
    let mut subscriber = server.raw();
    call(&mut subscriber, &["AUTH", "sub", "x"]);
    call(&mut subscriber, &["CLIENT", "SETNAME", "watcher"]);
    let list = call(&mut admin, &["CLIENT", "LIST"]);
    let line = list
        .lines()
        .find(|line| line.contains("name=watcher"))
        .unwrap();
    assert!(line.contains(" user=sub "), "{line}");
    assert!(call(&mut subscriber, &["SUBSCRIBE", "news.1"]).starts_with("*3\r\n"));
    // Keeping its channel keeps it; losing it closes it.
    assert_eq!(
        call(&mut admin, &["ACL", "SETUSER", "sub", "&more"]),
        "+OK\r\n"
    );
    assert_eq!(call(&mut admin, &["PUBLISH", "news.1", "still"]), ":1\r\n");
    assert_eq!(
        call(
            &mut admin,
            &["ACL", "SETUSER", "sub", "resetchannels", "&lit"]
        ),
        "+OK\r\n"
    );
    let _ = subscriber.read_to_close();
    assert!(wait_until(Duration::from_secs(5), || {
        call(&mut admin, &["PUBLISH", "news.1", "gone"]) == ":0\r\n"
    }));
    // CLIENT KILL USER, and DELUSER, close a user's connections.
    let mut a = server.raw();
    call(&mut a, &["AUTH", "sub", "x"]);
    assert_eq!(
        call(&mut admin, &["CLIENT", "KILL", "USER", "sub"]),
        ":1\r\n"
    );
    assert!(a.read_to_close().is_empty());
    assert_eq!(
        call(&mut admin, &["CLIENT", "KILL", "USER", "nobody"]),
        "-ERR No such user 'nobody'\r\n"
    );
    let mut b = server.raw();
    call(&mut b, &["AUTH", "sub", "x"]);
    assert_eq!(call(&mut admin, &["ACL", "DELUSER", "sub"]), ":1\r\n");
    assert!(b.read_to_close().is_empty());
    let names: BTreeSet<String> = call(&mut admin, &["ACL", "USERS"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(names.contains("default") && !names.contains("sub"));
}

/// DEBUG is a protected command: while `enable-debug-command` refuses it, the refusal comes
/// before authentication and ACL, as in Redis (forkless answered NOAUTH first).
#[test]
fn a_refused_debug_comes_before_authentication() {
    let server = TestServer::start(BIN, &["--requirepass", "p"]);
    let mut conns = vec![server.raw()];
    let real = real_redis(&["--requirepass", "p"]);
    if let Some((_, addr)) = &real {
        conns.push(RawConn::connect(*addr));
    }
    let replies: Vec<Vec<String>> = conns
        .iter_mut()
        .map(|conn| {
            vec![
                call(conn, &["DEBUG", "HELP"]),
                call(conn, &["DEBUG"]),
                call(conn, &["PING"]),
            ]
        })
        .collect();
    assert!(
        replies[0][0].starts_with("-ERR DEBUG command not allowed."),
        "{:?}",
        replies[0]
    );
    assert_eq!(replies[0][2], "-NOAUTH Authentication required.\r\n");
    if let Some(redis) = replies.get(1) {
        assert_eq!(&replies[0], redis);
    }
}

/// Every command and subcommand forkless has is in exactly Redis 7.0's ACL categories (ACL CAT
/// per category against redis-server's; the CLIENT container and MEMORY USAGE were in one too
/// many).
#[test]
fn categories_are_redis_categories() {
    let server = TestServer::start(BIN, &[]);
    let Some((_guard, addr)) = real_redis(&[]) else {
        return;
    };
    let mut forkless = server.client();
    let mut redis = redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let categories: Vec<String> = redis::cmd("ACL").arg("CAT").query(&mut redis).unwrap();
    let ours: Vec<String> = redis::cmd("ACL").arg("CAT").query(&mut forkless).unwrap();
    assert_eq!(categories, ours);
    let cat = |conn: &mut redis::Connection, category: &str| -> BTreeSet<String> {
        redis::cmd("ACL")
            .arg("CAT")
            .arg(category)
            .query(conn)
            .unwrap()
    };
    let mut known: BTreeSet<String> = redis::cmd("COMMAND")
        .arg("LIST")
        .query(&mut forkless)
        .unwrap();
    let per_category: Vec<(String, BTreeSet<String>, BTreeSet<String>)> = categories
        .iter()
        .map(|category| {
            let theirs = cat(&mut redis, category);
            let ours = cat(&mut forkless, category);
            known.extend(ours.iter().cloned());
            (category.clone(), theirs, ours)
        })
        .collect();
    let mut wrong = Vec::new();
    for (category, theirs, ours) in per_category {
        for name in ours.difference(&theirs) {
            wrong.push(format!("{name} is not in @{category} in Redis"));
        }
        for name in theirs.iter().filter(|name| known.contains(*name)) {
            if !ours.contains(name) {
                wrong.push(format!("{name} is missing from @{category}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
