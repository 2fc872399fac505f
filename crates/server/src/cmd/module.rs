//! MODULE HELP / LIST / LOAD / LOADEX / UNLOAD with the replies Redis 7.0 gives when no module
//! can be loaded: forkless does not load C modules (it would need Redis's module API), so LIST
//! is always empty, LOAD and LOADEX fail as a module that does not load fails in Redis, and
//! UNLOAD finds no module of that name.
//!
//! LOAD, LOADEX and UNLOAD are protected as in Redis (`enable-module-command`, `no` by
//! default: Redis's refusal text; `local`: loopback clients only): dispatch refuses them
//! before the command runs, where it checks DEBUG (the container's row carries
//! `PROTECTED_SUBCOMMANDS`, the subcommands' rows `PROTECTED`).

use bytes::Bytes;

use super::meta::{Gate, KeySpec, flags};
use super::subcommands::{help_reply, subcommand};
use super::{Client, Command, Ctx, eq_ignore_case};
use crate::server::Server;

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "module", arity: -2, flags: flags!(PROTECTED_SUBCOMMANDS), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["slow"], summary: "A container for module commands", since: "4.0.0", group: "server", handler: module },
];

pub(crate) const NOT_ALLOWED: &str = "ERR MODULE command not allowed. If the \
    enable-module-command option is set to \"local\", you can run it from a local connection, \
    otherwise you need to set this option in the configuration file, and then restart the \
    server.";
const LOAD_FAILED: &str = "ERR Error loading the extension. Please check the server logs.";
const NO_SUCH_MODULE: &str = "ERR Error unloading module: no such module with that name";

fn module(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(sub) = subcommand(ctx, argv) else {
        return;
    };
    match sub.name.trim_start_matches("module|") {
        "help" => help_reply(
            ctx.out,
            "MODULE",
            &[
                "LIST",
                "    Return a list of loaded modules.",
                "LOAD <path> [<arg> ...]",
                "    Load a module library from <path>, passing to it any optional arguments.",
                "LOADEX <path> [[CONFIG NAME VALUE] [CONFIG NAME VALUE]] [ARGS ...]",
                "    Load a module library from <path>, while passing it module configurations \
                 and optional arguments.",
                "UNLOAD <name>",
                "    Unload a module.",
                "HELP",
                "    Prints this help.",
            ],
        ),
        "list" => ctx.out.array_len(0),
        "load" | "loadex" => {
            let path = argv.get(2).map_or(&b""[..], |path| path);
            tracing::warn!(
                path = %String::from_utf8_lossy(path),
                "Module {} failed to load: forkless cannot load Redis modules",
                String::from_utf8_lossy(path)
            );
            ctx.out.error(LOAD_FAILED);
        }
        "unload" => ctx.out.error(NO_SUCH_MODULE),
        _ => super::unknown_subcommand(ctx, argv),
    }
}

/// Returns true if and only if `enable-module-command` lets `client` load and unload (checked
/// by dispatch, before authentication, as Redis's `processCommand` does).
pub(crate) fn allowed_for(server: &Server, client: &Client) -> bool {
    let setting = server.config().stored_text("enable-module-command");
    if eq_ignore_case(&setting, "yes") {
        true
    } else if eq_ignore_case(&setting, "local") {
        client.handle.addr.is_local()
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn refusal_names_the_module_option() {
        assert!(super::NOT_ALLOWED.starts_with("ERR MODULE command not allowed. If the enable-module-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server."));
    }
}
