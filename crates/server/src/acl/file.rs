//! The ACL file (`aclfile`): loading, all or nothing, and ACL SAVE, which replaces the file
//! atomically (temp file, fsync, rename, fsync of the directory).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::user::{RuleError, User, has_spaces, merge_selector_args};

/// Redis's `ACLLoadFromFile`: the users the file at `path` defines (shown as `shown` in
/// errors), or every problem found in one line of text, ending with Redis's "no change"
/// warning. A missing default user is the caller's to add.
pub(crate) fn load(
    path: &Path,
    shown: &str,
    pubsub_default_all: bool,
) -> Result<BTreeMap<Bytes, Arc<User>>, String> {
    let text = std::fs::read(path).map_err(|err| {
        format!(
            "Error loading ACLs, opening file '{shown}': {}",
            crate::config::strerror(&err)
        )
    })?;
    parse(&text, shown, pubsub_default_all)
}

/// Parses an ACL file's text.
pub(crate) fn parse(
    text: &[u8],
    shown: &str,
    pubsub_default_all: bool,
) -> Result<BTreeMap<Bytes, Arc<User>>, String> {
    let mut users: BTreeMap<Bytes, Arc<User>> = BTreeMap::new();
    let mut errors = String::new();
    for (idx, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line_number = idx + 1;
        let line = trim(raw, b" \t\r\n");
        if line.is_empty() {
            continue;
        }
        let argv: Vec<Bytes> = line
            .split(|&b| b == b' ')
            .map(Bytes::copy_from_slice)
            .collect();
        if argv.first().map(|w| &w[..]) != Some(b"user") || argv.len() < 2 {
            errors.push_str(&format!(
                "{shown}:{line_number} should start with user keyword followed by the username. "
            ));
            continue;
        }
        let name = argv.get(1).cloned().unwrap_or_default();
        if has_spaces(&name) {
            errors.push_str(&format!(
                "'{shown}:{line_number}: username '{}' contains invalid characters. ",
                String::from_utf8_lossy(&name)
            ));
            continue;
        }
        if users.contains_key(&name) {
            errors.push_str(&format!(
                "WARNING: Duplicate user '{}' found on line {line_number}. ",
                String::from_utf8_lossy(&name)
            ));
            continue;
        }
        let mut user = User::new(name.clone(), pubsub_default_all);
        let rules = match merge_selector_args(argv.get(2..).unwrap_or_default()) {
            Ok(rules) => rules,
            Err(_) => {
                errors.push_str(&format!(
                    "{shown}:{line_number}: Unmatched parenthesis in selector definition."
                ));
                Vec::new()
            }
        };
        let mut syntax_error = false;
        for rule in rules {
            let rule = trim(&rule, b"\t\r\n");
            if let Err(err) = user.apply(rule, pubsub_default_all) {
                if err == RuleError::UnknownCommand {
                    errors.push_str(&format!(
                        "{shown}:{line_number}: Error in applying operation '{}': {err}. ",
                        String::from_utf8_lossy(rule)
                    ));
                } else if !syntax_error {
                    errors.push_str(&format!("{shown}:{line_number}: {err}. "));
                    syntax_error = true;
                }
            }
        }
        users.insert(name, Arc::new(user));
    }
    if errors.is_empty() {
        Ok(users)
    } else {
        errors.push_str(
            "WARNING: ACL errors detected, no change to the previously active ACL rules was \
             performed",
        );
        Err(errors)
    }
}

/// The ACL file's text for `users`: one `user <name> <rules>` line each, by name.
pub(crate) fn render(users: &[Arc<User>]) -> Vec<u8> {
    let mut text = Vec::new();
    for user in users {
        text.extend_from_slice(&user.line());
        text.push(b'\n');
    }
    text
}

/// ACL SAVE: writes `users` to `path` atomically.
pub(crate) fn save(path: &Path, users: &[Arc<User>]) -> std::io::Result<()> {
    crate::config::write_atomically(path, &render(users))
}

fn trim<'a>(bytes: &'a [u8], set: &[u8]) -> &'a [u8] {
    let start = bytes
        .iter()
        .position(|b| !set.contains(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !set.contains(b))
        .map_or(start, |end| end + 1);
    bytes.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_file_loads_back_the_same_users() {
        let mut alice = User::new(Bytes::from_static(b"alice"), false);
        for rule in [
            "on",
            ">pw",
            "~k*",
            "%R~r*",
            "&c",
            "+@read",
            "-get",
            "(+set ~s*)",
        ] {
            alice.apply(rule.as_bytes(), false).expect(rule);
        }
        let users = vec![Arc::new(alice), Arc::new(User::new_default())];
        let text = render(&users);
        let loaded = parse(&text, "users.acl", false).expect("loads");
        assert_eq!(loaded.len(), 2);
        for user in &users {
            assert_eq!(
                loaded.get(&user.name).map(|u| u.describe()),
                Some(user.describe())
            );
        }
    }

    #[test]
    fn errors_name_the_line_and_nothing_loads() {
        let text = b"user a on\n# comment\nuser b +nosuch\nuser a off\n";
        let err = parse(text, "f.acl", false).expect_err("errors");
        assert_eq!(
            err,
            "f.acl:2 should start with user keyword followed by the username. \
             f.acl:3: Error in applying operation '+nosuch': Unknown command or category name \
             in ACL. WARNING: Duplicate user 'a' found on line 4. WARNING: ACL errors detected, \
             no change to the previously active ACL rules was performed"
        );
    }
}
