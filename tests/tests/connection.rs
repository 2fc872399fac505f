//! Connection commands end to end: AUTH and requirepass, HELLO 2/3, CLIENT, SELECT, QUIT, RESET.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use forkless_tests::TestServer;

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

fn text(reply: Vec<u8>) -> String {
    String::from_utf8(reply).unwrap()
}

#[test]
fn requirepass_gates_everything_but_auth_hello_quit() {
    let server = TestServer::start(BIN, &["--requirepass", "s3cret"]);
    let mut conn = server.raw();
    assert_eq!(
        text(conn.call(&[b"GET", b"k"])),
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"PING"])),
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"AUTH", b"wrong"])),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    // Redis 7.0's words exactly (issue 20: forkless said "HELLO <proto> AUTH ...").
    assert_eq!(
        text(conn.call(&[b"HELLO", b"3"])),
        "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO \
         AUTH <user> <pass> option can be used to authenticate the client and select the RESP \
         protocol version at the same time\r\n"
    );
    assert_eq!(text(conn.call(&[b"AUTH", b"s3cret"])), "+OK\r\n");
    assert_eq!(text(conn.call(&[b"SET", b"k", b"v"])), "+OK\r\n");
    // HELLO with AUTH authenticates a fresh connection and switches protocol in one go.
    let mut other = server.raw();
    let hello = text(other.call(&[
        b"HELLO", b"3", b"AUTH", b"default", b"s3cret", b"SETNAME", b"app",
    ]));
    assert!(hello.starts_with("%7\r\n$6\r\nserver\r\n"), "{hello}");
    assert!(hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello}");
    assert_eq!(text(other.call(&[b"CLIENT", b"GETNAME"])), "$3\r\napp\r\n");
    assert_eq!(
        text(other.call(&[b"GET", b"missing"])),
        "_\r\n",
        "RESP3 null"
    );
    // RESET drops authentication again.
    assert_eq!(text(other.call(&[b"RESET"])), "+RESET\r\n");
    assert_eq!(
        text(other.call(&[b"GET", b"k"])),
        "-NOAUTH Authentication required.\r\n"
    );
    // CONFIG SET requirepass takes effect for new connections.
    assert_eq!(
        text(conn.call(&[b"CONFIG", b"SET", b"requirepass", b""])),
        "+OK\r\n"
    );
    let mut open = server.raw();
    assert_eq!(text(open.call(&[b"GET", b"k"])), "$1\r\nv\r\n");
}

#[test]
fn auth_without_a_password_configured_is_redis_error() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    assert_eq!(
        text(conn.call(&[b"AUTH", b"x"])),
        "-ERR AUTH <password> called without any password configured for the default user. Are \
         you sure your configuration is correct?\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"HELLO", b"4"])),
        "-NOPROTO unsupported protocol version\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"HELLO", b"x"])),
        "-ERR Protocol version is not an integer or out of range\r\n"
    );
}

#[test]
fn select_isolates_databases_and_checks_range() {
    let server = TestServer::start(BIN, &["--databases", "4"]);
    let mut conn = server.raw();
    assert_eq!(text(conn.call(&[b"SET", b"k", b"zero"])), "+OK\r\n");
    assert_eq!(text(conn.call(&[b"SELECT", b"3"])), "+OK\r\n");
    assert_eq!(text(conn.call(&[b"GET", b"k"])), "$-1\r\n");
    assert_eq!(
        text(conn.call(&[b"SELECT", b"4"])),
        "-ERR DB index is out of range\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"SELECT", b"-1"])),
        "-ERR DB index is out of range\r\n"
    );
    assert_eq!(
        text(conn.call(&[b"SELECT", b"x"])),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(text(conn.call(&[b"SELECT", b"0"])), "+OK\r\n");
    assert_eq!(text(conn.call(&[b"GET", b"k"])), "$4\r\nzero\r\n");
}

#[test]
fn client_commands_and_kill() {
    let server = TestServer::start(BIN, &[]);
    let mut me = server.raw();
    let mut victim = server.raw();
    let victim_id = text(victim.call(&[b"CLIENT", b"ID"]));
    let victim_id = victim_id.trim_start_matches(':').trim_end().to_string();
    assert_eq!(
        text(victim.call(&[b"CLIENT", b"SETNAME", b"victim"])),
        "+OK\r\n"
    );
    assert_eq!(
        text(me.call(&[b"CLIENT", b"SETNAME", b"has space"])),
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
    );
    let list = text(me.call(&[b"CLIENT", b"LIST"]));
    assert!(list.contains(&format!("id={victim_id} ")), "{list}");
    assert!(list.contains("name=victim"), "{list}");
    assert_eq!(
        text(me.call(&[b"CLIENT", b"KILL", b"ID", victim_id.as_bytes()])),
        ":1\r\n"
    );
    assert!(
        victim.read_to_close().is_empty(),
        "killed connection is closed"
    );
    assert_eq!(
        text(me.call(&[b"CLIENT", b"KILL", b"ID", victim_id.as_bytes()])),
        ":0\r\n"
    );
    assert_eq!(
        text(me.call(&[b"CLIENT", b"KILL", b"1.2.3.4:5"])),
        "-ERR No such client\r\n"
    );
}

/// Regression (issue 14, bug 4): CLIENT LIST showed `cmd=NULL` for every other client because
/// the last command was never recorded. These are the values Redis 7.0 shows.
#[test]
fn client_list_shows_each_clients_last_command() {
    let server = TestServer::start(BIN, &[]);
    let mut other = server.raw();
    let mut me = server.raw();
    let other_id = text(other.call(&[b"CLIENT", b"ID"]));
    let other_id = other_id.trim_start_matches(':').trim_end().to_string();
    let last_command_of_other = |me: &mut forkless_tests::RawConn| -> String {
        let list = text(me.call(&[b"CLIENT", b"LIST"]));
        let line = list
            .lines()
            .find(|line| line.contains(&format!("id={other_id} ")))
            .unwrap_or_else(|| panic!("no line for {other_id}: {list}"))
            .to_string();
        let cmd = line
            .split(' ')
            .find(|field| field.starts_with("cmd="))
            .unwrap();
        cmd.to_string()
    };
    assert_eq!(last_command_of_other(&mut me), "cmd=client|id");
    let cases: &[(&[&[u8]], &str)] = &[
        (&[b"GET", b"k"], "cmd=get"),
        (&[b"CONFIG", b"GET", b"port"], "cmd=config|get"),
        (&[b"NOSUCH"], "cmd=NULL"),
        (&[b"CONFIG", b"NOSUCH"], "cmd=NULL"),
        (&[b"CONFIG"], "cmd=config"),
        // Refused for its arity, but recorded all the same.
        (&[b"GET"], "cmd=get"),
        (&[b"MULTI"], "cmd=multi"),
        (&[b"SET", b"k", b"v"], "cmd=set"),
        (&[b"EXEC"], "cmd=exec"),
        (&[b"OBJECT", b"ENCODING", b"k"], "cmd=object|encoding"),
        (&[b"CLIENT", b"SETNAME", b"x"], "cmd=client|setname"),
    ];
    for (command, expected) in cases {
        other.call(command);
        assert_eq!(
            last_command_of_other(&mut me),
            *expected,
            "after {command:?}"
        );
    }
}

#[test]
fn quit_replies_ok_then_closes() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    conn.send_command(&[b"QUIT"]);
    assert_eq!(conn.read_to_close(), b"+OK\r\n");
}
