//! Scripting commands: FUNCTION (and, as they land, EVAL, SCRIPT and FCALL).
//!
//! The Lua engine itself lives in `crate::scripting`; this file parses the commands and
//! writes their replies.

use bytes::Bytes;

use super::{Command, Ctx, eq_ignore_case, unknown_subcommand};

#[rustfmt::skip] // One row per command reads as a table.
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "function", arity: -2, flags: &[], keys: (0, 0, 0), categories: &["slow"], summary: "A container for function commands", since: "7.0.0", group: "scripting", handler: function },
];

fn function(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(sub) = argv.get(1) else {
        unknown_subcommand(ctx, argv);
        return;
    };
    if eq_ignore_case(sub, "flush") {
        function_flush(ctx, argv);
    } else {
        unknown_subcommand(ctx, argv);
    }
}

/// FUNCTION FLUSH [ASYNC|SYNC]: Redis's test harness sends it before every test block.
fn function_flush(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    match argv.get(2) {
        _ if argv.len() > 3 => ctx.out.error(&format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try FUNCTION HELP.",
            String::from_utf8_lossy(argv.get(1).map_or(&b""[..], |b| b))
        )),
        None => ctx.out.ok(),
        Some(mode) if eq_ignore_case(mode, "sync") || eq_ignore_case(mode, "async") => {
            ctx.out.ok();
        }
        Some(_) => ctx
            .out
            .error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option"),
    }
}
