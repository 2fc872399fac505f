//! hash commands.

use super::Command;

pub(crate) const COMMANDS: &[Command] = &[];
