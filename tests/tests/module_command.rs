//! MODULE as Redis 7.0 answers it with no module loaded: HELP, an empty LIST, and LOAD,
//! LOADEX and UNLOAD refused under `enable-module-command no` (the default) with Redis's text,
//! and failing as Redis's do when allowed (forkless cannot load C modules).
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use forkless_tests::TestServer;
use forkless_tests::resp::{cmd, err};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");
const REFUSED: &str = "ERR MODULE command not allowed. If the enable-module-command option is \
    set to \"local\", you can run it from a local connection, otherwise you need to set this \
    option in the configuration file, and then restart the server.";

#[test]
fn module_without_loadable_modules() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    assert_eq!(cmd(&mut conn, "MODULE LIST"), "*0\r\n");
    assert!(cmd(&mut conn, "MODULE HELP").starts_with(
        "*11\r\n+MODULE <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n+LIST\r\n"
    ));
    assert_eq!(cmd(&mut conn, "MODULE LOAD /tmp/x.so"), err(REFUSED));
    assert_eq!(cmd(&mut conn, "MODULE LOADEX /tmp/x.so"), err(REFUSED));
    assert_eq!(cmd(&mut conn, "MODULE UNLOAD x"), err(REFUSED));
    assert_eq!(
        cmd(&mut conn, "MODULE LIST x"),
        err("ERR wrong number of arguments for 'module|list' command")
    );
    assert_eq!(
        cmd(&mut conn, "MODULE nope"),
        err("ERR unknown subcommand 'nope'. Try MODULE HELP.")
    );

    let allowed = TestServer::start(BIN, &["--enable-module-command", "yes"]);
    let mut conn = allowed.raw();
    assert_eq!(
        cmd(&mut conn, "MODULE LOAD /tmp/x.so a b"),
        err("ERR Error loading the extension. Please check the server logs.")
    );
    assert_eq!(
        cmd(&mut conn, "MODULE LOADEX /tmp/x.so CONFIG a b"),
        err("ERR Error loading the extension. Please check the server logs.")
    );
    assert_eq!(
        cmd(&mut conn, "MODULE UNLOAD x"),
        err("ERR Error unloading module: no such module with that name")
    );

    let local = TestServer::start(
        BIN,
        &["--enable-module-command", "local", "--protected-mode", "no"],
    );
    assert_eq!(
        cmd(&mut local.raw(), "MODULE UNLOAD x"),
        err("ERR Error unloading module: no such module with that name")
    );
    let remote = local.raw_from("127.0.0.2".parse().unwrap());
    let mut remote = remote;
    assert_eq!(cmd(&mut remote, "MODULE UNLOAD x"), err(REFUSED));
}
