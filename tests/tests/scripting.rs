//! Scripting end to end: FUNCTION, EVAL/EVALSHA, SCRIPT and FCALL with Redis 7.0's replies and
//! errors, the Lua environment Redis gives scripts, atomicity against other clients and busy
//! scripts.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use forkless_tests::TestServer;
use forkless_tests::resp::{NIL, bulk, bulks, call, cmd, err, int};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

/// Redis 7.0's own test harness sends `FUNCTION FLUSH` before every test block and aborts the
/// unit when it fails: forkless used to answer "unknown command".
#[test]
fn function_flush_answers_ok() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    assert_eq!(cmd(&mut conn, "FUNCTION FLUSH"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "function flush async"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "FUNCTION FLUSH SYNC"), "+OK\r\n");
    assert_eq!(
        cmd(&mut conn, "FUNCTION FLUSH LATER"),
        err("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")
    );
    assert_eq!(
        call(&mut conn, &[b"FUNCTION", b"FLUSH", b"SYNC", b"X"]),
        err("ERR unknown subcommand or wrong number of arguments for 'FLUSH'. Try FUNCTION HELP.")
    );
}

fn eval(conn: &mut forkless_tests::RawConn, script: &str, keys_and_args: &[&str]) -> String {
    let mut args: Vec<&[u8]> = vec![b"EVAL", script.as_bytes()];
    let numkeys = keys_and_args.first().copied().unwrap_or("0");
    args.push(numkeys.as_bytes());
    args.extend(keys_and_args.iter().skip(1).map(|a| a.as_bytes()));
    call(conn, &args)
}

#[test]
fn eval_converts_replies_both_ways_as_redis() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    assert_eq!(eval(&mut conn, "return 'hello'", &[]), bulk("hello"));
    assert_eq!(eval(&mut conn, "return 100.5", &[]), int(100));
    assert_eq!(eval(&mut conn, "return -3.9", &[]), int(-3));
    assert_eq!(eval(&mut conn, "return true", &[]), int(1));
    assert_eq!(eval(&mut conn, "return false", &[]), NIL);
    assert_eq!(eval(&mut conn, "return nil", &[]), NIL);
    assert_eq!(eval(&mut conn, "return {ok='fine'}", &[]), "+fine\r\n");
    assert_eq!(
        eval(&mut conn, "return {err='My Error'}", &[]),
        err("My Error")
    );
    assert_eq!(
        eval(&mut conn, "return redis.error_reply('MY_CODE oops')", &[]),
        err("MY_CODE oops")
    );
    assert_eq!(
        eval(&mut conn, "return redis.status_reply('DONE')", &[]),
        "+DONE\r\n"
    );
    // Arrays stop at the first nil.
    assert_eq!(
        eval(&mut conn, "return {1, 'two', {3}, nil, 5}", &[]),
        "*3\r\n:1\r\n$3\r\ntwo\r\n*1\r\n:3\r\n"
    );
    assert_eq!(
        eval(
            &mut conn,
            "return {KEYS[1], KEYS[2], ARGV[1]}",
            &["2", "a", "b", "c"]
        ),
        bulks(&["a", "b", "c"])
    );
    // Redis replies become Lua values: nil bulk is false, status is {ok=}, errors raise.
    assert_eq!(
        eval(
            &mut conn,
            "return redis.call('get', 'missing') == false",
            &[]
        ),
        int(1)
    );
    assert_eq!(
        eval(&mut conn, "return redis.call('set', 'k', 'v')['ok']", &[]),
        bulk("OK")
    );
    assert_eq!(
        eval(&mut conn, "return redis.call('incrby', 'n', 5) + 1", &[]),
        int(6)
    );
    assert_eq!(
        eval(&mut conn, "return redis.pcall('incr', 'k')", &[]),
        err("ERR value is not an integer or out of range")
    );
    let raised = eval(&mut conn, "return redis.call('incr', 'k')", &[]);
    assert!(
        raised.starts_with("-ERR value is not an integer or out of range script: ")
            && raised.ends_with(", on @user_script:1.\r\n"),
        "{raised}"
    );
    // Numbers given to redis.call are sent as %.17g.
    assert_eq!(
        eval(
            &mut conn,
            "redis.call('set', 'f', 0.1) return redis.call('get', 'f')",
            &[]
        ),
        bulk("0.10000000000000001")
    );
    assert_eq!(
        eval(&mut conn, "return redis.sha1hex('Pizza & Mandolino')", &[]),
        bulk("74822d82031af7493c20eefa13bd07ec4fada82f")
    );
}

#[test]
fn resp3_replies_with_setresp() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    cmd(&mut conn, "HSET h f v");
    assert_eq!(
        eval(
            &mut conn,
            "redis.setresp(3) return redis.call('hgetall', 'h')",
            &[]
        ),
        "*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    assert!(call(&mut conn, &[b"HELLO", b"3"]).starts_with('%'));
    assert_eq!(
        eval(
            &mut conn,
            "redis.setresp(3) return redis.call('hgetall', 'h')",
            &[]
        ),
        "%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    assert_eq!(
        eval(&mut conn, "redis.setresp(3) return true", &[]),
        "#t\r\n"
    );
    assert_eq!(eval(&mut conn, "return {double=3.5}", &[]), ",3.5\r\n");
    assert!(
        eval(&mut conn, "return redis.setresp(4)", &[])
            .starts_with("-ERR RESP version must be 2 or 3.")
    );
}

#[test]
fn the_sandbox_protects_globals_as_redis_7_does() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    let cases = [
        (
            "return a",
            "Script attempted to access nonexistent global variable 'a'",
        ),
        ("a = 10", "Attempt to modify a readonly table"),
        (
            "redis.call = function() end",
            "Attempt to modify a readonly table",
        ),
        ("setmetatable(_G, {})", "Attempt to modify a readonly table"),
        (
            "getmetatable('').__index = {}",
            "Attempt to modify a readonly table",
        ),
        ("cjson.encode = 1", "Attempt to modify a readonly table"),
        // What a protected table's metatable reads as its `__index` is read-only too: neither
        // the real globals nor a library's real table is reachable through it.
        (
            "getmetatable(_G).__index.x = 1",
            "Attempt to modify a readonly table",
        ),
        (
            "rawset(getmetatable(_G).__index, 'x', 1)",
            "Attempt to modify a readonly table",
        ),
        (
            "getmetatable(cjson).__index.encode = 1",
            "Attempt to modify a readonly table",
        ),
        (
            "rawset(getmetatable(string).__index, 'len', 1)",
            "Attempt to modify a readonly table",
        ),
        ("return loadfile", "nonexistent global variable 'loadfile'"),
        ("return dofile", "nonexistent global variable 'dofile'"),
        ("return os", "nonexistent global variable 'os'"),
        ("return io", "nonexistent global variable 'io'"),
        ("return require", "nonexistent global variable 'require'"),
        ("return print", "nonexistent global variable 'print'"),
    ];
    for (script, expected) in cases {
        let reply = eval(&mut conn, script, &[]);
        assert!(
            reply.starts_with("-ERR ") && reply.contains(expected),
            "{script}: {reply}"
        );
    }
    // A script that fails leaves nothing behind for the next one.
    assert!(eval(&mut conn, "return type(x)", &[]).contains("nonexistent"));
    // Bytecode does not load.
    assert!(
        eval(
            &mut conn,
            "return loadstring(string.dump(function() return 1 end))()",
            &[]
        )
        .contains("attempt to call a nil value")
    );
    assert_eq!(
        eval(&mut conn, "return loadstring('return 7')()", &[]),
        int(7)
    );
}

/// KEYS and ARGV are arrays the engine refills from one run to the next when the script left
/// them plain: whatever a script did to them (more items, other keys, a metatable, returning
/// or raising them) never shows in the next script's KEYS and ARGV, nor in the reply that
/// holds them.
#[test]
fn keys_and_argv_are_fresh_for_every_script() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    let shape = "return {#KEYS, #ARGV, KEYS[1] or 'nil', KEYS[2] or 'nil', KEYS[5] or 'nil', \
                 ARGV[1] or 'nil', ARGV[2] or 'nil', tostring(KEYS.foo), tostring(getmetatable(KEYS))}";
    let fresh = |keys: usize, k1: &str, k2: &str, a1: &str, a2: &str| {
        format!(
            "*9\r\n:{keys}\r\n:1\r\n{}{}$3\r\nnil\r\n{}{}$3\r\nnil\r\n$3\r\nnil\r\n",
            bulk(k1),
            bulk(k2),
            bulk(a1),
            bulk(a2)
        )
    };
    let spoilers = [
        "KEYS[5] = 'x'; ARGV[2] = 'y'",
        "KEYS.foo = 1",
        "setmetatable(KEYS, {__index = function() return 'z' end})",
        "KEYS[1] = nil; KEYS[3] = 'w'",
        "table.insert(ARGV, 'more')",
        "error(KEYS)",
    ];
    for spoiler in spoilers {
        eval(&mut conn, spoiler, &["2", "a", "b", "c"]);
        assert_eq!(
            eval(&mut conn, shape, &["2", "k1", "k2", "v1"]),
            fresh(2, "k1", "k2", "v1", "nil"),
            "after {spoiler}"
        );
        assert_eq!(
            eval(&mut conn, shape, &["1", "k1", "v1"]),
            fresh(1, "k1", "nil", "v1", "nil"),
            "after {spoiler}"
        );
    }
    // A reply that holds KEYS is read before the next script refills it.
    assert_eq!(
        eval(&mut conn, "return {KEYS, ARGV}", &["1", "a", "b"]),
        "*2\r\n*1\r\n$1\r\na\r\n*1\r\n$1\r\nb\r\n"
    );
    assert_eq!(
        eval(&mut conn, "return KEYS", &["1", "z"]),
        "*1\r\n$1\r\nz\r\n"
    );
}

#[test]
fn evalsha_and_the_script_cache() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    let sha = "b534286061d4b9e4026607613b95c06c06015ae8";
    assert_eq!(
        cmd(&mut conn, &format!("EVALSHA {sha} 0")),
        err("NOSCRIPT No matching script. Please use EVAL.")
    );
    assert_eq!(
        cmd(&mut conn, "EVALSHA short 0"),
        err("NOSCRIPT No matching script. Please use EVAL.")
    );
    assert_eq!(
        call(&mut conn, &[b"SCRIPT", b"LOAD", b"return 'loaded'"]),
        bulk(sha)
    );
    assert_eq!(cmd(&mut conn, &format!("EVALSHA {sha} 0")), bulk("loaded"));
    assert_eq!(
        cmd(&mut conn, &format!("EVALSHA {} 0", sha.to_uppercase())),
        bulk("loaded")
    );
    assert_eq!(
        cmd(
            &mut conn,
            &format!("SCRIPT EXISTS {sha} ffffffffffffffffffffffffffffffffffffffff")
        ),
        "*2\r\n:1\r\n:0\r\n"
    );
    assert_eq!(cmd(&mut conn, "SCRIPT FLUSH"), "+OK\r\n");
    assert_eq!(
        cmd(&mut conn, &format!("SCRIPT EXISTS {sha}")),
        "*1\r\n:0\r\n"
    );
    assert_eq!(
        cmd(&mut conn, "SCRIPT FLUSH LATER"),
        err("ERR SCRIPT FLUSH only support SYNC|ASYNC option")
    );
    assert!(
        call(&mut conn, &[b"SCRIPT", b"LOAD", b"return +"])
            .starts_with("-ERR Error compiling script (new function): user_script:1:")
    );
    assert_eq!(
        call(&mut conn, &[b"EVAL", b"return 1", b"x"]),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(
        call(&mut conn, &[b"EVAL", b"return 1", b"2", b"a"]),
        err("ERR Number of keys can't be greater than number of args")
    );
    assert_eq!(
        call(&mut conn, &[b"EVAL", b"return 1", b"-1"]),
        err("ERR Number of keys can't be negative")
    );
    assert_eq!(
        cmd(&mut conn, "SCRIPT KILL"),
        err("NOTBUSY No scripts in execution right now.")
    );
}

#[test]
fn read_only_scripts_and_refused_commands() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    cmd(&mut conn, "SET foo bar");
    assert_eq!(
        call(
            &mut conn,
            &[
                b"EVAL_RO",
                b"return redis.call('get', KEYS[1])",
                b"1",
                b"foo"
            ]
        ),
        bulk("bar")
    );
    let reply = call(
        &mut conn,
        &[
            b"EVAL_RO",
            b"return redis.call('del', KEYS[1])",
            b"1",
            b"foo",
        ],
    );
    assert!(
        reply.starts_with("-ERR Write commands are not allowed from read-only scripts."),
        "{reply}"
    );
    let reply = eval(
        &mut conn,
        "#!lua flags=no-writes\nreturn redis.call('set', 'x', 1)",
        &[],
    );
    assert!(
        reply.contains("Write commands are not allowed from read-only scripts."),
        "{reply}"
    );
    assert_eq!(
        call(&mut conn, &[b"EVAL_RO", b"#!lua\nreturn 1", b"0"]),
        err("ERR Can not execute a script with write flag using *_ro command.")
    );
    assert_eq!(
        eval(&mut conn, "#!nope\nreturn 1", &[]),
        err("ERR Unexpected engine in script shebang: #!nope")
    );
    for script in [
        "return redis.call('multi')",
        "return redis.call('eval', 'return 1', 0)",
        "return redis.call('script', 'flush')",
        "return redis.call('config', 'set', 'maxclients', '10')",
        // Blocking commands are refused inside scripts, as in Redis 7.0.
        "return redis.pcall('blpop', 'nolist', 0)",
    ] {
        let reply = eval(&mut conn, script, &[]);
        assert!(
            reply.contains("This Redis command is not allowed from script"),
            "{reply}"
        );
    }
    assert!(
        eval(&mut conn, "return redis.call('nosuch')", &[])
            .contains("Unknown Redis command called from script")
    );
    assert!(
        eval(&mut conn, "return redis.call('get')", &[])
            .contains("Wrong number of args calling Redis command from script")
    );
    assert!(
        eval(&mut conn, "return redis.call()", &[])
            .contains("Please specify at least one argument for this redis lib call")
    );
    assert!(
        eval(&mut conn, "return redis.call('get', {})", &[])
            .contains("Lua redis lib command arguments must be strings or integers")
    );
    // SELECT inside a script does not change the caller's database.
    assert_eq!(
        eval(
            &mut conn,
            "redis.call('select', 9) return redis.call('set', 'db9', 1)",
            &[]
        ),
        "+OK\r\n"
    );
    assert_eq!(cmd(&mut conn, "EXISTS db9"), int(0));
    assert_eq!(cmd(&mut conn, "SELECT 9"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "EXISTS db9"), int(1));
}

#[test]
fn bundled_libraries() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    assert_eq!(
        eval(&mut conn, "return cjson.encode({1, 'a/b', {x=true}})", &[]),
        bulk("[1,\"a\\/b\",{\"x\":true}]")
    );
    assert_eq!(
        eval(
            &mut conn,
            "return cjson.decode('{\"a\":[1,2,3]}').a[3]",
            &[]
        ),
        int(3)
    );
    assert_eq!(
        eval(
            &mut conn,
            "local e = cmsgpack.pack({1, 2, 'x'}) return #e",
            &[]
        ),
        int(5)
    );
    assert_eq!(
        eval(
            &mut conn,
            "return cmsgpack.unpack(cmsgpack.pack({a='b'})).a",
            &[]
        ),
        bulk("b")
    );
    assert_eq!(eval(&mut conn, "return bit.band(0xff, 0x0f)", &[]), int(15));
    assert_eq!(
        eval(&mut conn, "return bit.tohex(65535, -2147483648)", &[]),
        bulk("0000FFFF")
    );
    assert_eq!(
        eval(
            &mut conn,
            "return struct.unpack('<I2', struct.pack('<I2', 513))",
            &[]
        ),
        int(513)
    );
    // math.random is Redis's lrand48: the same sequence after the same seed.
    let first = eval(
        &mut conn,
        "math.randomseed(42) return math.random(1000000)",
        &[],
    );
    let again = eval(
        &mut conn,
        "math.randomseed(42) return math.random(1000000)",
        &[],
    );
    assert_eq!(first, again);
}

#[test]
fn functions_load_list_call_delete_dump_restore() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    let code = "#!lua name=mylib\n\
                redis.register_function('hello', function(keys, args) return 'hi ' .. args[1] end)\n\
                redis.register_function{function_name='getter', callback=function(keys) \
                return redis.call('get', keys[1]) end, flags={'no-writes'}, description='reads'}";
    assert_eq!(
        call(&mut conn, &[b"FUNCTION", b"LOAD", code.as_bytes()]),
        bulk("mylib")
    );
    assert_eq!(
        call(&mut conn, &[b"FUNCTION", b"LOAD", code.as_bytes()]),
        err("ERR Library 'mylib' already exists")
    );
    assert_eq!(
        call(
            &mut conn,
            &[b"FUNCTION", b"LOAD", b"REPLACE", code.as_bytes()]
        ),
        bulk("mylib")
    );
    assert_eq!(cmd(&mut conn, "FCALL hello 0 you"), bulk("hi you"));
    cmd(&mut conn, "SET k v");
    assert_eq!(cmd(&mut conn, "FCALL_RO getter 1 k"), bulk("v"));
    assert_eq!(
        cmd(&mut conn, "FCALL_RO hello 0 x"),
        err("ERR Can not execute a script with write flag using *_ro command.")
    );
    assert_eq!(
        cmd(&mut conn, "FCALL nosuch 0"),
        err("ERR Function not found")
    );
    assert_eq!(
        cmd(&mut conn, "FCALL hello x"),
        err("ERR Bad number of keys provided")
    );
    assert_eq!(
        cmd(&mut conn, "FUNCTION LIST"),
        "*1\r\n*6\r\n$12\r\nlibrary_name\r\n$5\r\nmylib\r\n$6\r\nengine\r\n$3\r\nLUA\r\n\
         $9\r\nfunctions\r\n*2\r\n\
         *6\r\n$4\r\nname\r\n$6\r\ngetter\r\n$11\r\ndescription\r\n$5\r\nreads\r\n\
         $5\r\nflags\r\n*1\r\n+no-writes\r\n\
         *6\r\n$4\r\nname\r\n$5\r\nhello\r\n$11\r\ndescription\r\n$-1\r\n$5\r\nflags\r\n*0\r\n"
    );
    assert_eq!(
        cmd(&mut conn, "FUNCTION LIST LIBRARYNAME nomatch*"),
        "*0\r\n"
    );
    // Library code runs with only register_function, log and the version in reach.
    let bad = "#!lua name=bad\nlocal x = math.floor(1)";
    assert!(
        call(&mut conn, &[b"FUNCTION", b"LOAD", bad.as_bytes()])
            .contains("Script attempted to access nonexistent global variable 'math'")
    );
    assert_eq!(
        call(
            &mut conn,
            &[b"FUNCTION", b"LOAD", b"#!lua name=empty\nreturn 1"]
        ),
        err("ERR No functions registered")
    );
    // A library whose code never ends is stopped after 500 ms, as in Redis.
    assert_eq!(
        call(
            &mut conn,
            &[b"FUNCTION", b"LOAD", b"#!lua name=x\nwhile true do end"]
        ),
        err("ERR Error registering functions: ERR FUNCTION LOAD timeout")
    );
    assert_eq!(cmd(&mut conn, "PING"), "+PONG\r\n");
    let dump = conn.call(&[b"FUNCTION", b"DUMP"]);
    let payload = {
        let header_end = dump.iter().position(|&b| b == b'\n').unwrap() + 1;
        dump[header_end..dump.len() - 2].to_vec()
    };
    assert_eq!(cmd(&mut conn, "FUNCTION DELETE mylib"), "+OK\r\n");
    assert_eq!(
        cmd(&mut conn, "FUNCTION DELETE mylib"),
        err("ERR Library not found")
    );
    assert_eq!(
        cmd(&mut conn, "FCALL hello 0 x"),
        err("ERR Function not found")
    );
    assert_eq!(
        call(&mut conn, &[b"FUNCTION", b"RESTORE", &payload]),
        "+OK\r\n"
    );
    assert_eq!(cmd(&mut conn, "FCALL hello 0 again"), bulk("hi again"));
    assert_eq!(
        call(&mut conn, &[b"FUNCTION", b"RESTORE", &payload]),
        err("ERR Library mylib already exists")
    );
    assert_eq!(
        call(&mut conn, &[b"FUNCTION", b"RESTORE", &payload, b"REPLACE"]),
        "+OK\r\n"
    );
    let mut corrupt = payload.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xFF;
    assert_eq!(
        call(&mut conn, &[b"FUNCTION", b"RESTORE", &corrupt]),
        err("ERR DUMP payload version or checksum are wrong")
    );
    assert!(cmd(&mut conn, "FUNCTION STATS").contains("libraries_count\r\n:1\r\n"));
    assert_eq!(cmd(&mut conn, "FUNCTION FLUSH"), "+OK\r\n");
    assert_eq!(cmd(&mut conn, "FUNCTION LIST"), "*0\r\n");
}

/// Polls PING on `conn` until the server answers `-BUSY` (the script passed
/// busy-reply-threshold), within 10 s.
fn wait_busy(conn: &mut forkless_tests::RawConn) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = cmd(conn, "PING");
        if reply.starts_with("-BUSY") {
            return reply;
        }
        assert_eq!(reply, "+PONG\r\n");
        assert!(Instant::now() < deadline, "the script never became busy");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_busy_script_is_reported_and_killed() {
    busy_script_is_reported_and_killed(&["--busy-reply-threshold", "50"]);
}

/// With one async worker, the script's thread is the only one reading sockets until the script
/// hands its worker over: SCRIPT KILL must still get through.
#[test]
fn a_busy_script_is_killed_with_a_single_worker_thread() {
    busy_script_is_reported_and_killed(&["--busy-reply-threshold", "50", "--worker-threads", "1"]);
}

fn busy_script_is_reported_and_killed(args: &[&str]) {
    let server = TestServer::start(BIN, args);
    let mut runner = server.raw();
    let mut other = server.raw();
    runner.send_command(&[b"EVAL", b"local i = 0 while true do i = i + 1 end", b"0"]);
    assert_eq!(
        wait_busy(&mut other),
        err(
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
        )
    );
    assert_eq!(
        cmd(&mut other, "FUNCTION KILL"),
        err(
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
        )
    );
    assert_eq!(cmd(&mut other, "SCRIPT KILL"), "+OK\r\n");
    let killed = String::from_utf8(runner.read_reply()).unwrap();
    assert!(
        killed.starts_with("-ERR Script killed by user with SCRIPT KILL... script: "),
        "{killed}"
    );
    assert_eq!(cmd(&mut other, "PING"), "+PONG\r\n");
    assert_eq!(cmd(&mut runner, "PING"), "+PONG\r\n");
    // A script cannot escape a kill with pcall.
    runner.send_command(&[
        b"EVAL",
        b"while true do pcall(function() while true do end end) end",
        b"0",
    ]);
    wait_busy(&mut other);
    assert_eq!(cmd(&mut other, "SCRIPT KILL"), "+OK\r\n");
    assert!(
        String::from_utf8(runner.read_reply())
            .unwrap()
            .contains("Script killed")
    );
    // Functions are killed with FUNCTION KILL.
    call(
        &mut other,
        &[
            b"FUNCTION",
            b"LOAD",
            b"#!lua name=spin\nredis.register_function('spin', function() while true do end end)",
        ],
    );
    runner.send_command(&[b"FCALL", b"spin", b"0"]);
    assert_eq!(
        wait_busy(&mut other),
        err(
            "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
        )
    );
    assert!(cmd(&mut other, "FUNCTION STATS").contains("spin"));
    assert_eq!(cmd(&mut other, "FUNCTION KILL"), "+OK\r\n");
    assert!(
        String::from_utf8(runner.read_reply())
            .unwrap()
            .contains("Script killed by user with FUNCTION KILL...")
    );
}

/// A command waiting for a transaction's exclusive hold of the gate, when a script takes the
/// gate as the transaction lets go (here the script is pipelined after the EXEC, so the same
/// thread takes the gate again at once), is answered -BUSY once the script is busy, not kept
/// waiting for the whole script: the script runs until SCRIPT KILL.
#[test]
fn a_command_waiting_behind_a_transaction_is_answered_while_a_script_runs() {
    let server = TestServer::start(
        BIN,
        &[
            "--busy-reply-threshold",
            "50",
            "--enable-debug-command",
            "yes",
        ],
    );
    let mut tx = server.raw();
    let mut waiter = server.raw();
    let mut killer = server.raw();
    assert_eq!(cmd(&mut tx, "MULTI"), "+OK\r\n");
    assert_eq!(cmd(&mut tx, "DEBUG SLEEP 0.3"), "+QUEUED\r\n");
    tx.send(b"*1\r\n$4\r\nEXEC\r\n*3\r\n$4\r\nEVAL\r\n$39\r\nlocal i = 0 while true do i = i + 1 end\r\n$1\r\n0\r\n");
    // Nothing can be asked while EXEC holds the gate (every command waits for it), so that
    // PING arrives during the sleep is only made likely by a pause; arriving earlier it is
    // answered PONG, which the test accepts too.
    std::thread::sleep(Duration::from_millis(50));
    let reply = cmd(&mut waiter, "PING");
    assert!(
        reply == "+PONG\r\n" || reply.starts_with("-BUSY"),
        "{reply}"
    );
    wait_busy(&mut killer);
    assert_eq!(cmd(&mut killer, "SCRIPT KILL"), "+OK\r\n");
    assert_eq!(tx.read_reply(), b"*1\r\n+OK\r\n");
    assert!(
        String::from_utf8(tx.read_reply())
            .unwrap()
            .contains("Script killed")
    );
}

#[test]
fn a_script_that_wrote_is_unkillable_and_ends_with_shutdown_nosave() {
    let mut server = TestServer::start(BIN, &["--busy-reply-threshold", "50"]);
    let mut runner = server.raw();
    let mut other = server.raw();
    runner.send_command(&[
        b"EVAL",
        b"redis.call('set', 'x', 1) while true do end",
        b"0",
    ]);
    wait_busy(&mut other);
    assert_eq!(
        cmd(&mut other, "SCRIPT KILL"),
        err(
            "UNKILLABLE Sorry the script already executed write commands against the dataset. \
             You can either wait the script termination or kill the server in a hard way using \
             the SHUTDOWN NOSAVE command."
        )
    );
    assert_eq!(
        cmd(&mut other, "SHUTDOWN"),
        err(
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
        )
    );
    other.send_command(&[b"SHUTDOWN", b"NOSAVE"]);
    assert!(server.wait_exit().success());
}

#[test]
fn other_clients_never_see_a_script_half_done() {
    let server = TestServer::start(BIN, &[]);
    assert_eq!(cmd(&mut server.raw(), "MSET a 0 b 0"), "+OK\r\n");
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut conn = server.raw();
        let stop = Arc::clone(&stop);
        readers.push(std::thread::spawn(move || {
            let mut checks = 0;
            while !stop.load(Ordering::Relaxed) {
                let reply = cmd(&mut conn, "MGET a b");
                let lines: Vec<&str> = reply.split("\r\n").collect();
                assert_eq!(lines.get(2), lines.get(4), "a and b differ: {reply}");
                checks += 1;
            }
            checks
        }));
    }
    let mut conn = server.raw();
    for _ in 0..300 {
        eval(
            &mut conn,
            "local n = redis.call('incr', 'a') for i = 1, 2000 do end redis.call('set', 'b', n)",
            &[],
        );
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
}

/// A script that allocates without bound gets an error; the server goes on.
#[test]
fn script_memory_is_limited() {
    let server = TestServer::start(BIN, &["--script-memory-limit", "32mb"]);
    let mut conn = server.raw();
    let reply = eval(
        &mut conn,
        "local t = {} for i = 1, 100000000 do t[i] = string.rep('x', 100) .. i end return #t",
        &[],
    );
    assert!(
        reply.starts_with("-") && reply.contains("not enough memory"),
        "{reply}"
    );
    assert_eq!(
        eval(&mut conn, "return 'still here'", &[]),
        bulk("still here")
    );
    // A result nested past the limit is cut, not a crash.
    assert!(
        eval(&mut conn, "local a = {} a[1] = a return a", &[])
            .ends_with("-ERR reached lua stack limit\r\n")
    );
}

/// Function libraries are part of the dataset: saved in the RDB (`FUNCTION2` records) and loaded
/// back at startup, from forkless's dumps and from Redis 7.0's.
#[test]
fn functions_survive_a_restart_through_the_rdb() {
    let dir = forkless_tests::unique_dir("functions-rdb");
    {
        let server = TestServer::start_in(BIN, &dir, &[], &[]);
        let mut conn = server.raw();
        let code = "#!lua name=keep\nredis.register_function('kept', function() return 'back' end)";
        assert_eq!(
            call(&mut conn, &[b"FUNCTION", b"LOAD", code.as_bytes()]),
            bulk("keep")
        );
        cmd(&mut conn, "SET k v");
        assert_eq!(cmd(&mut conn, "SAVE"), "+OK\r\n");
    }
    {
        let server = TestServer::start_in(BIN, &dir, &[], &[]);
        let mut conn = server.raw();
        assert_eq!(cmd(&mut conn, "FCALL kept 0"), bulk("back"));
        assert_eq!(cmd(&mut conn, "GET k"), bulk("v"));
    }
    // The dump Redis 7.0.15 wrote after FUNCTION LOAD of library `golden` (function `f`).
    std::fs::write(
        dir.join("dump.rdb"),
        include_bytes!("../../crates/snapshot/testdata/redis-7.0-type-function.rdb"),
    )
    .unwrap();
    {
        let server = TestServer::start_in(BIN, &dir, &[], &[]);
        let mut conn = server.raw();
        assert_eq!(cmd(&mut conn, "FCALL f 0"), int(1));
        assert!(cmd(&mut conn, "FUNCTION LIST").contains("golden"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_snapshot_never_splits_a_script() {
    let server = TestServer::start(BIN, &["--save", ""]);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut conn = server.raw();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut runs = 0u64;
            while !stop.load(Ordering::Relaxed) && runs < 100_000 {
                runs += 1;
                let reply = eval(
                    &mut conn,
                    "local n = redis.call('incr', 'x') redis.call('set', 'y', n) \
                     redis.call('set', 'z', n) return n",
                    &[],
                );
                assert!(reply.starts_with(':'), "{reply}");
            }
        })
    };
    let mut admin = server.raw();
    for _ in 0..10 {
        assert_eq!(cmd(&mut admin, "SAVE"), "+OK\r\n");
        let mut saved = std::collections::HashMap::new();
        let file = std::fs::File::open(server.dir.join("dump.rdb")).unwrap();
        forkless_snapshot::format::load(std::io::BufReader::new(file), "dump.rdb", 0, |entry| {
            if let forkless_storage::Value::String(bytes) = entry.value {
                saved.insert(entry.key.to_vec(), bytes.to_vec());
            }
            Ok(())
        })
        .unwrap();
        let values: Vec<Option<&Vec<u8>>> = ["x", "y", "z"]
            .iter()
            .map(|k| saved.get(k.as_bytes()))
            .collect();
        assert!(
            values.windows(2).all(|w| w[0] == w[1]),
            "a script was split by the cut: {values:?}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

/// redis-py's `Lock` and `Script` drive EVALSHA/EVAL with its own Lua (lock acquire, release,
/// extend, reacquire), falling back from NOSCRIPT to EVAL as every client library does. Needs
/// Debian's python3-redis; without it the test says so loudly, and fails when
/// FORKLESS_REQUIRE_REDIS=1 (CI).
#[test]
fn redis_py_lock_and_script_work_unchanged() {
    let python = "/usr/bin/python3";
    let has_redis_py = std::process::Command::new(python)
        .args(["-c", "import redis"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !has_redis_py {
        assert!(
            std::env::var("FORKLESS_REQUIRE_REDIS").as_deref() != Ok("1"),
            "python3-redis is required (apt-get install python3-redis)"
        );
        eprintln!(
            "SKIPPED redis_py_lock_and_script_work_unchanged: python3-redis is not installed"
        );
        return;
    }
    let server = TestServer::start(BIN, &[]);
    let program = r#"
import sys, redis
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]))
lock = r.lock("resource", timeout=10, blocking_timeout=0.1)
assert lock.acquire(), "first acquire"
other = r.lock("resource", timeout=10, blocking_timeout=0.1)
assert not other.acquire(), "a held lock is not acquired twice"
assert lock.owned() and lock.locked()
assert lock.extend(5)
assert lock.reacquire()
lock.release()
assert not lock.locked()
assert other.acquire(), "free again after release"
other.release()
try:
    lock.release()
    raise SystemExit("releasing an unowned lock must fail")
except redis.exceptions.LockError:
    pass
r.script_flush()
incr = r.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
assert incr(keys=["counter"], args=[5]) == 5
assert incr(keys=["counter"], args=[2]) == 7
print("ok")
"#;
    let out = std::process::Command::new(python)
        .args(["-c", program, &server.port().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A transaction whose commands arrive while a script is busy is aborted as a whole (the busy
/// check used to come after queuing, so a refused EXEC left the client in MULTI).
#[test]
fn a_busy_script_aborts_transactions_arriving_meanwhile() {
    let server = TestServer::start(BIN, &["--busy-reply-threshold", "50"]);
    let mut runner = server.raw();
    let mut other = server.raw();
    assert_eq!(cmd(&mut other, "SET xx 1"), "+OK\r\n");
    assert_eq!(cmd(&mut other, "MULTI"), "+OK\r\n");
    assert_eq!(cmd(&mut other, "INCR xx"), "+QUEUED\r\n");
    runner.send_command(&[b"EVAL", b"while true do end", b"0"]);
    let mut killer = server.raw();
    wait_busy(&mut killer);
    assert!(cmd(&mut other, "INCR xx").starts_with("-BUSY "));
    assert_eq!(
        cmd(&mut other, "EXEC"),
        err(
            "EXECABORT Transaction discarded because of: BUSY Redis is busy running a script. \
             You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
        )
    );
    assert_eq!(cmd(&mut killer, "SCRIPT KILL"), "+OK\r\n");
    assert!(
        String::from_utf8(runner.read_reply())
            .unwrap()
            .contains("Script killed")
    );
    assert_eq!(cmd(&mut other, "GET xx"), bulk("1"));
    assert_eq!(cmd(&mut other, "PING"), "+PONG\r\n");
}

/// SIGTERM while a script loops for ever: the server used to wait for the script and never
/// exit. The script now stops at its next hook.
#[test]
fn sigterm_ends_a_server_running_an_endless_script() {
    let server = TestServer::start(BIN, &["--busy-reply-threshold", "50", "--save", ""]);
    let mut runner = server.raw();
    let mut other = server.raw();
    runner.send_command(&[b"EVAL", b"while true do end", b"0"]);
    wait_busy(&mut other);
    assert!(server.terminate().success());
}

/// Regression: `unpack` with a range whose size overflows a C int (Redis's "table unpack with
/// invalid indexes" test) crashed a release build with a segfault inside Lua 5.1. It is Lua's
/// "too many results" error now, and the server goes on serving.
#[test]
fn unpack_with_huge_ranges_is_an_error_not_a_crash() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    for script in [
        "return {unpack({1,2,3}, -2, 2147483647)}",
        "return {unpack({1,2,3}, 0, 2147483647)}",
        "return {unpack({1,2,3}, -2147483648, -2)}",
        "return {unpack({1,2,3}, -2147483648, 2147483647)}",
    ] {
        let reply = eval(&mut conn, script, &[]);
        assert!(
            reply.starts_with('-') && reply.contains("too many results to unpack"),
            "{script}: {reply}"
        );
    }
    // Ordinary ranges still work, with unpack's defaults.
    assert_eq!(
        eval(&mut conn, "return {unpack({1,2,3})}", &[]),
        "*3\r\n:1\r\n:2\r\n:3\r\n"
    );
    assert_eq!(
        eval(&mut conn, "return {unpack({1,2,3}, 2)}", &[]),
        "*2\r\n:2\r\n:3\r\n"
    );
    // Regression: the range check passed unpack's two optional arguments on as nils, and
    // each took a slot of the C stack, so 7999 values (Redis's "Script check unpack with
    // massive arguments") were refused where Lua takes up to 7999 plus the table.
    assert_eq!(
        eval(
            &mut conn,
            "local a = {} for i=1,7999 do a[i] = 1 end return redis.call('lpush', 'l', unpack(a))",
            &[],
        ),
        ":7999\r\n"
    );
    assert_eq!(cmd(&mut conn, "PING"), "+PONG\r\n");
}

/// Regression: XREAD/XREADGROUP with BLOCK inside a script ran as a non-blocking read; Redis
/// refuses them ("Scripts can't run XREAD and XREADGROUP with BLOCK option").
#[test]
fn blocking_stream_reads_are_refused_in_scripts() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    cmd(&mut conn, "XGROUP CREATE s g $ MKSTREAM");
    assert_eq!(
        eval(
            &mut conn,
            "return redis.pcall('xread','BLOCK',0,'STREAMS','s','$')",
            &["1", "s"],
        ),
        err("ERR xread command is not allowed with BLOCK option from scripts")
    );
    assert_eq!(
        eval(
            &mut conn,
            "return redis.pcall('xreadgroup','group','g','c','BLOCK',0,'STREAMS','s','>')",
            &["1", "s"],
        ),
        err("ERR xreadgroup command is not allowed with BLOCK option from scripts")
    );
    // Without BLOCK they read as usual.
    assert_eq!(
        eval(
            &mut conn,
            "return redis.pcall('xread','STREAMS','s','0')",
            &["1", "s"],
        ),
        NIL
    );
}

/// Regression: SORT BY a constant (no sorting) of a set inside a script returned the set's
/// own order; Redis sorts it (ALPHA) so a script's result does not depend on the set's layout.
#[test]
fn sort_of_a_set_without_sorting_is_ordered_in_scripts() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    cmd(
        &mut conn,
        "SADD myset a b c d e f g h i l m n o p q r s t u v z aa aaa azz",
    );
    let reply = eval(
        &mut conn,
        "return redis.call('sort',KEYS[1],'by','_')",
        &["1", "myset"],
    );
    let expected: Vec<&str> = "a aa aaa azz b c d e f g h i l m n o p q r s t u v z"
        .split(' ')
        .collect();
    assert_eq!(reply, forkless_tests::resp::bulks(&expected));
}

/// Regression (Redis's "not enough good replicas"): with `min-replicas-to-write` unmet, a
/// script that declares flags without `no-writes` is refused before it runs, and a script
/// without a shebang gets NOREPLICAS at its first write; reads still run.
#[test]
fn scripts_obey_min_replicas_to_write() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    cmd(&mut conn, "SET x v");
    assert_eq!(
        cmd(&mut conn, "CONFIG SET min-replicas-to-write 1"),
        "+OK\r\n"
    );
    let refused = err("NOREPLICAS Not enough good replicas to write.");
    assert_eq!(
        eval(
            &mut conn,
            "#!lua flags=no-writes\nreturn redis.call('get','x')",
            &["1", "x"]
        ),
        bulk("v")
    );
    assert_eq!(
        eval(&mut conn, "return redis.call('get','x')", &["1", "x"]),
        bulk("v")
    );
    assert_eq!(
        eval(
            &mut conn,
            "#!lua\nreturn redis.call('get','x')",
            &["1", "x"]
        ),
        refused
    );
    let write = eval(&mut conn, "return redis.call('set','x','1')", &["1", "x"]);
    assert!(
        write.starts_with("-NOREPLICAS Not enough good replicas to write."),
        "{write}"
    );
    assert_eq!(cmd(&mut conn, "GET x"), bulk("v"));
}
