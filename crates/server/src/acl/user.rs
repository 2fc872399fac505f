//! Users and selectors, Redis 7.0's ACL rule language (`ACLSetUser`, `ACLSetSelector`), and
//! the canonical text ACL LIST and ACL SAVE write (`ACLDescribeUser`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::catalog::{CATALOG, CATEGORIES, COMMAND_BITS, FUTURE_COMMANDS_BIT, category_bit};

const WORDS: usize = COMMAND_BITS / 64;

/// Key pattern permissions (`%R~`, `%W~`, `~` = both).
pub(crate) const READ: u8 = 1;
pub(crate) const WRITE: u8 = 2;
pub(crate) const ALL: u8 = READ | WRITE;

/// Why a rule was refused; Display is Redis's `ACLSetUserStringError` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleError {
    /// EINVAL.
    Syntax,
    /// ENOENT.
    UnknownCommand,
    /// EEXIST.
    KeyAfterAll,
    /// EISDIR.
    ChannelAfterAll,
    /// ENODEV.
    NoSuchPassword,
    /// EBADMSG.
    BadHash,
    /// ECHILD.
    FirstArgOfSubcommand,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RuleError::Syntax => "Syntax error",
            RuleError::UnknownCommand => "Unknown command or category name in ACL",
            RuleError::KeyAfterAll => {
                "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and \
                 does not have any effect. Try 'resetkeys' to start with an empty list of \
                 patterns"
            }
            RuleError::ChannelAfterAll => {
                "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid \
                 and does not have any effect. Try 'resetchannels' to start with an empty list \
                 of channels"
            }
            RuleError::NoSuchPassword => {
                "The password you are trying to remove from the user does not exist"
            }
            RuleError::BadHash => {
                "The password hash must be exactly 64 characters and contain only lowercase \
                 hexadecimal characters"
            }
            RuleError::FirstArgOfSubcommand => {
                "Allowing first-arg of a subcommand is not supported"
            }
        })
    }
}

/// One key pattern with its permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyPattern {
    pub(crate) pattern: Vec<u8>,
    pub(crate) flags: u8,
}

/// A set of permissions: the root selector of a user, or one in parentheses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selector {
    pub(crate) allkeys: bool,
    pub(crate) allchannels: bool,
    pub(crate) allcommands: bool,
    commands: [u64; WORDS],
    /// Allowed first arguments of otherwise denied commands (`+select|0`), by command id.
    first_args: BTreeMap<usize, Vec<Vec<u8>>>,
    pub(crate) patterns: Vec<KeyPattern>,
    pub(crate) channels: Vec<Vec<u8>>,
}

impl Selector {
    /// An empty selector: no command, key or channel, except all channels when
    /// `acl-pubsub-default` is `allchannels`.
    pub(crate) fn new(pubsub_default_all: bool) -> Selector {
        Selector {
            allkeys: false,
            allchannels: pubsub_default_all,
            allcommands: false,
            commands: [0; WORDS],
            first_args: BTreeMap::new(),
            patterns: Vec::new(),
            channels: Vec::new(),
        }
    }

    pub(crate) fn command_bit(&self, id: usize) -> bool {
        self.commands
            .get(id / 64)
            .is_some_and(|word| word & (1 << (id % 64)) != 0)
    }

    fn set_command_bit(&mut self, id: usize, value: bool) {
        if let Some(word) = self.commands.get_mut(id / 64) {
            if value {
                *word |= 1 << (id % 64);
            } else {
                *word &= !(1 << (id % 64));
                self.allcommands = false;
            }
        }
    }

    /// Allows or denies a command and, for a container, every subcommand.
    fn change_command(&mut self, id: usize, allow: bool) {
        self.set_command_bit(id, allow);
        self.first_args.remove(&id);
        if let Some(entry) = CATALOG.get(id) {
            for &child in &entry.children {
                self.set_command_bit(child, allow);
            }
        }
    }

    fn change_category(&mut self, bit: u32, allow: bool) {
        for (id, entry) in CATALOG.entries.iter().enumerate() {
            if entry.categories & bit != 0 {
                self.change_command(id, allow);
            }
        }
    }

    /// The first arguments allowed for command `id` although it is denied.
    pub(crate) fn first_args(&self, id: usize) -> Option<&[Vec<u8>]> {
        self.first_args.get(&id).map(Vec::as_slice)
    }

    /// Applies one selector rule (`ACLSetSelector`).
    pub(crate) fn apply(&mut self, op: &[u8]) -> Result<(), RuleError> {
        let is = |word: &str| op.eq_ignore_ascii_case(word.as_bytes());
        if is("allkeys") || op == b"~*" {
            self.allkeys = true;
            self.patterns.clear();
        } else if is("resetkeys") {
            self.allkeys = false;
            self.patterns.clear();
        } else if is("allchannels") || op == b"&*" {
            self.allchannels = true;
            self.channels.clear();
        } else if is("resetchannels") {
            self.allchannels = false;
            self.channels.clear();
        } else if is("allcommands") || is("+@all") {
            self.commands = [u64::MAX; WORDS];
            self.allcommands = true;
            self.first_args.clear();
        } else if is("nocommands") || is("-@all") {
            self.commands = [0; WORDS];
            self.allcommands = false;
            self.first_args.clear();
        } else if let Some(first @ (b'~' | b'%')) = op.first() {
            if self.allkeys {
                return Err(RuleError::KeyAfterAll);
            }
            let mut flags = 0;
            let mut offset = 1;
            if *first == b'%' {
                // As Redis: the `~` may be missing at the end (`%R` is `%R~`, the empty
                // pattern), anything else is a syntax error.
                let mut ok = true;
                while let Some(byte) = op.get(offset) {
                    match byte.to_ascii_uppercase() {
                        b'R' if flags & READ == 0 => flags |= READ,
                        b'W' if flags & WRITE == 0 => flags |= WRITE,
                        b'~' => {
                            offset += 1;
                            break;
                        }
                        _ => {
                            ok = false;
                            break;
                        }
                    }
                    offset += 1;
                }
                if flags == 0 || !ok {
                    return Err(RuleError::Syntax);
                }
            } else {
                flags = ALL;
            }
            let pattern = op.get(offset..).unwrap_or_default();
            if has_spaces(pattern) {
                return Err(RuleError::Syntax);
            }
            match self.patterns.iter_mut().find(|p| p.pattern == pattern) {
                Some(existing) => existing.flags |= flags,
                None => self.patterns.push(KeyPattern {
                    pattern: pattern.to_vec(),
                    flags,
                }),
            }
            self.allkeys = false;
        } else if let Some(pattern) = op.strip_prefix(b"&") {
            if self.allchannels {
                return Err(RuleError::ChannelAfterAll);
            }
            if has_spaces(pattern) {
                return Err(RuleError::Syntax);
            }
            if !self.channels.iter().any(|c| c == pattern) {
                self.channels.push(pattern.to_vec());
            }
            self.allchannels = false;
        } else if let Some(category) = op.strip_prefix(b"+@") {
            let bit = category_bit(category).ok_or(RuleError::UnknownCommand)?;
            self.change_category(bit, true);
        } else if let Some(category) = op.strip_prefix(b"-@") {
            let bit = category_bit(category).ok_or(RuleError::UnknownCommand)?;
            self.change_category(bit, false);
        } else if let Some(name) = op.strip_prefix(b"+") {
            self.allow_command(name)?;
        } else if let Some(name) = op.strip_prefix(b"-") {
            let id = CATALOG.id_of(name).ok_or(RuleError::UnknownCommand)?;
            self.change_command(id, false);
        } else {
            return Err(RuleError::Syntax);
        }
        Ok(())
    }

    /// `+cmd`, `+container|sub`, or `+cmd|first-arg`.
    fn allow_command(&mut self, name: &[u8]) -> Result<(), RuleError> {
        let Some(bar) = name.iter().rposition(|&b| b == b'|') else {
            let id = CATALOG.id_of(name).ok_or(RuleError::UnknownCommand)?;
            self.change_command(id, true);
            return Ok(());
        };
        let (command, sub) = (
            name.get(..bar).unwrap_or_default(),
            name.get(bar + 1..).unwrap_or_default(),
        );
        let id = CATALOG.id_of(command).ok_or(RuleError::UnknownCommand)?;
        let entry = CATALOG.get(id).ok_or(RuleError::UnknownCommand)?;
        if entry.parent.is_some() {
            return Err(RuleError::FirstArgOfSubcommand);
        }
        if sub.is_empty() {
            return Err(RuleError::Syntax);
        }
        if !entry.children.is_empty() {
            let sub_id = CATALOG.id_of(name).ok_or(RuleError::UnknownCommand)?;
            self.change_command(sub_id, true);
        } else {
            tracing::warn!(
                "Deprecation warning: Allowing a first arg of an otherwise blocked command is \
                 a misuse of ACL and may get disabled in the future (offender: +{})",
                String::from_utf8_lossy(name)
            );
            let args = self.first_args.entry(id).or_default();
            if !args.iter().any(|arg| arg.eq_ignore_ascii_case(sub)) {
                args.push(sub.to_vec());
            }
        }
        Ok(())
    }

    /// The key patterns as ACL GETUSER's `keys` shows them.
    pub(crate) fn keys_text(&self) -> Vec<u8> {
        if self.allkeys {
            return b"~*".to_vec();
        }
        join(self.patterns.iter().map(pattern_text))
    }

    /// The channel patterns as ACL GETUSER's `channels` shows them.
    pub(crate) fn channels_text(&self) -> Vec<u8> {
        if self.allchannels {
            return b"&*".to_vec();
        }
        join(self.channels.iter().map(|channel| {
            let mut text = b"&".to_vec();
            text.extend_from_slice(channel);
            text
        }))
    }

    /// `ACLDescribeSelector`: keys, channels, then the command rules.
    pub(crate) fn describe(&self) -> Vec<u8> {
        let mut text = Vec::new();
        if self.allkeys {
            text.extend_from_slice(b"~* ");
        } else {
            for pattern in &self.patterns {
                text.extend_from_slice(&pattern_text(pattern));
                text.push(b' ');
            }
        }
        if self.allchannels {
            text.extend_from_slice(b"&* ");
        } else {
            text.extend_from_slice(b"resetchannels ");
            for channel in &self.channels {
                text.push(b'&');
                text.extend_from_slice(channel);
                text.push(b' ');
            }
        }
        text.extend_from_slice(&self.describe_commands());
        text
    }

    /// `ACLDescribeSelectorCommandRules`: `+@all` or `-@all`, then the categories that fit
    /// best, then single commands, replayed on a scratch selector as they are emitted so that
    /// the text rebuilds exactly this bitmap.
    pub(crate) fn describe_commands(&self) -> Vec<u8> {
        let mut rules = String::new();
        let mut fake = Selector::new(false);
        let additive = !self.command_bit(FUTURE_COMMANDS_BIT);
        if additive {
            rules.push_str("-@all ");
            fake.commands = [0; WORDS];
        } else {
            rules.push_str("+@all ");
            fake.commands = [u64::MAX; WORDS];
        }
        let mut temp = Selector::new(false);
        temp.commands = self.commands;
        let mut applied = [false; 32];
        loop {
            let mut best = None;
            let mut min_diff = usize::MAX;
            let mut max_same = 0;
            for (idx, _) in CATEGORIES.iter().enumerate() {
                if applied.get(idx).copied().unwrap_or(true) {
                    continue;
                }
                let bit = 1u32 << idx;
                let (mut on, mut off) = (0, 0);
                for (id, entry) in CATALOG.entries.iter().enumerate() {
                    if entry.categories & bit != 0 {
                        if temp.command_bit(id) {
                            on += 1;
                        } else {
                            off += 1;
                        }
                    }
                }
                let (diff, same) = if additive { (off, on) } else { (on, off) };
                if same > diff && (diff < min_diff || (diff == min_diff && same > max_same)) {
                    best = Some(idx);
                    min_diff = diff;
                    max_same = same;
                }
            }
            let Some(best) = best else { break };
            let bit = 1u32 << best;
            let name = CATEGORIES.get(best).copied().unwrap_or_default();
            fake.change_category(bit, additive);
            temp.change_category(bit, !additive);
            let _ = write!(rules, "{}@{name} ", if additive { '+' } else { '-' });
            if let Some(slot) = applied.get_mut(best) {
                *slot = true;
            }
        }
        for (id, entry) in CATALOG.entries.iter().enumerate() {
            let user_bit = self.command_bit(id);
            if user_bit != fake.command_bit(id) {
                let _ = write!(rules, "{}{} ", if user_bit { '+' } else { '-' }, entry.name);
                fake.change_command(id, user_bit);
            }
        }
        let mut text = rules.into_bytes();
        // First arguments come after the commands they belong to.
        for (id, args) in &self.first_args {
            if self.command_bit(*id) {
                continue;
            }
            let name = CATALOG.get(*id).map_or("", |entry| entry.name);
            for arg in args {
                text.push(b'+');
                text.extend_from_slice(name.as_bytes());
                text.push(b'|');
                text.extend_from_slice(arg);
                text.push(b' ');
            }
        }
        if text.last() == Some(&b' ') {
            text.pop();
        }
        text
    }
}

fn pattern_text(pattern: &KeyPattern) -> Vec<u8> {
    let mut text = match pattern.flags {
        READ => b"%R~".to_vec(),
        WRITE => b"%W~".to_vec(),
        _ => b"~".to_vec(),
    };
    text.extend_from_slice(&pattern.pattern);
    text
}

fn join(parts: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut text = Vec::new();
    for part in parts {
        if !text.is_empty() {
            text.push(b' ');
        }
        text.extend_from_slice(&part);
    }
    text
}

/// Returns true if and only if `bytes` holds a space or a control character Redis refuses in
/// names and patterns (`ACLStringHasSpaces`: space or NUL).
pub(crate) fn has_spaces(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b == b' ' || b == 0)
}

/// SHA-256 of a password, as lower-case hex (how Redis stores passwords).
pub(crate) fn hash_password(password: &[u8]) -> String {
    let digest = Sha256::digest(password);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

fn valid_hash(hash: &[u8]) -> bool {
    hash.len() == 64 && hash.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A user: flags, password hashes and selectors (the first is the root selector).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub(crate) name: Bytes,
    pub(crate) enabled: bool,
    pub(crate) nopass: bool,
    /// `skip-sanitize-payload` (Some(false)) / `sanitize-payload` (Some(true)); neither at
    /// creation.
    pub(crate) sanitize_payload: Option<bool>,
    pub(crate) passwords: Vec<String>,
    /// The root selector: the rules outside parentheses.
    pub(crate) root: Selector,
    /// The selectors in parentheses, in the order they were added.
    pub(crate) selectors: Vec<Selector>,
    /// The description, computed once (Redis's `acl_string`): finding the categories that fit
    /// best walks the command table once per category, and ACL LIST describes every user.
    /// [`User::apply`] clears it.
    description: std::sync::OnceLock<Vec<u8>>,
}

impl User {
    /// A new user as `ACLCreateUser` makes it: off, no password, no permission.
    pub(crate) fn new(name: Bytes, pubsub_default_all: bool) -> User {
        User {
            name,
            enabled: false,
            nopass: false,
            sanitize_payload: None,
            passwords: Vec::new(),
            root: Selector::new(pubsub_default_all),
            selectors: Vec::new(),
            description: std::sync::OnceLock::new(),
        }
    }

    /// The `default` user: `on nopass ~* &* +@all`.
    pub(crate) fn new_default() -> User {
        let mut user = User::new(Bytes::from_static(b"default"), false);
        for op in ["+@all", "~*", "&*", "on", "nopass"] {
            let _ = user.apply(op.as_bytes(), false);
        }
        user
    }

    /// The root selector, then the others.
    pub(crate) fn all_selectors(&self) -> impl Iterator<Item = &Selector> {
        std::iter::once(&self.root).chain(&self.selectors)
    }

    /// Returns true if and only if the user may run anything on anything: one selector with
    /// every command, key and channel (what dispatch skips the checks for).
    pub(crate) fn unrestricted(&self) -> bool {
        self.all_selectors()
            .any(|s| s.allcommands && s.allkeys && s.allchannels)
    }

    /// Applies one user rule (`ACLSetUser`).
    pub(crate) fn apply(&mut self, op: &[u8], pubsub_default_all: bool) -> Result<(), RuleError> {
        let is = |word: &str| op.eq_ignore_ascii_case(word.as_bytes());
        if op.is_empty() {
            return Ok(());
        }
        self.description = std::sync::OnceLock::new();
        if is("on") {
            self.enabled = true;
        } else if is("off") {
            self.enabled = false;
        } else if is("skip-sanitize-payload") {
            self.sanitize_payload = Some(false);
        } else if is("sanitize-payload") {
            self.sanitize_payload = Some(true);
        } else if is("nopass") {
            self.nopass = true;
            self.passwords.clear();
        } else if is("resetpass") {
            self.nopass = false;
            self.passwords.clear();
        } else if let Some(rest) = op.strip_prefix(b">") {
            let hash = hash_password(rest);
            if !self.passwords.contains(&hash) {
                self.passwords.push(hash);
            }
            self.nopass = false;
        } else if let Some(rest) = op.strip_prefix(b"#") {
            if !valid_hash(rest) {
                return Err(RuleError::BadHash);
            }
            let hash = String::from_utf8_lossy(rest).into_owned();
            if !self.passwords.contains(&hash) {
                self.passwords.push(hash);
            }
            self.nopass = false;
        } else if let Some(rest) = op.strip_prefix(b"<") {
            let hash = hash_password(rest);
            let before = self.passwords.len();
            self.passwords.retain(|p| *p != hash);
            if before == self.passwords.len() {
                return Err(RuleError::NoSuchPassword);
            }
        } else if let Some(rest) = op.strip_prefix(b"!") {
            if !valid_hash(rest) {
                return Err(RuleError::BadHash);
            }
            let before = self.passwords.len();
            self.passwords.retain(|p| p.as_bytes() != rest);
            if before == self.passwords.len() {
                return Err(RuleError::NoSuchPassword);
            }
        } else if op.first() == Some(&b'(') && op.last() == Some(&b')') {
            let inner = op.get(1..op.len() - 1).unwrap_or_default();
            let mut selector = Selector::new(pubsub_default_all);
            let words = crate::config::split_args(inner).ok_or(RuleError::Syntax)?;
            for word in words {
                selector.apply(&word)?;
            }
            self.selectors.push(selector);
        } else if is("clearselectors") {
            self.selectors.clear();
        } else if is("reset") {
            self.nopass = false;
            self.passwords.clear();
            let root = &mut self.root;
            root.allkeys = false;
            root.patterns.clear();
            root.allchannels = pubsub_default_all;
            root.channels.clear();
            self.enabled = false;
            self.sanitize_payload = Some(true);
            self.selectors.clear();
            self.root.apply(b"-@all")?;
        } else {
            self.root.apply(op)?;
        }
        Ok(())
    }

    /// Returns true if and only if `password` is one of the user's (or the user needs none),
    /// comparing SHA-256 hashes in constant time.
    pub(crate) fn password_matches(&self, password: &[u8]) -> bool {
        if self.nopass {
            return true;
        }
        let given = hash_password(password);
        let mut found = subtle::Choice::from(0);
        for stored in &self.passwords {
            found |= stored.as_bytes().ct_eq(given.as_bytes());
        }
        found.into()
    }

    /// The flags ACL GETUSER lists, in Redis's order.
    pub(crate) fn flag_names(&self) -> Vec<&'static str> {
        let mut flags = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            flags.push("nopass");
        }
        match self.sanitize_payload {
            Some(false) => flags.push("skip-sanitize-payload"),
            Some(true) => flags.push("sanitize-payload"),
            None => {}
        }
        flags
    }

    /// `ACLDescribeUser`: the rules that rebuild this user (ACL LIST, ACL SAVE, CONFIG
    /// REWRITE), without the `user <name>` prefix.
    pub(crate) fn describe(&self) -> Vec<u8> {
        self.description
            .get_or_init(|| self.describe_uncached())
            .clone()
    }

    fn describe_uncached(&self) -> Vec<u8> {
        let mut text = Vec::new();
        for flag in self.flag_names() {
            text.extend_from_slice(flag.as_bytes());
            text.push(b' ');
        }
        for hash in &self.passwords {
            text.push(b'#');
            text.extend_from_slice(hash.as_bytes());
            text.push(b' ');
        }
        text.extend_from_slice(&self.root.describe());
        for selector in &self.selectors {
            text.extend_from_slice(b" (");
            text.extend_from_slice(&selector.describe());
            text.push(b')');
        }
        text
    }

    /// `user <name> <rules>`: a line of ACL LIST and of the ACL file.
    pub(crate) fn line(&self) -> Vec<u8> {
        let mut line = b"user ".to_vec();
        line.extend_from_slice(&self.name);
        line.push(b' ');
        line.extend_from_slice(&self.describe());
        line
    }
}

/// `ACLMergeSelectorArguments`: joins a selector spread over several arguments (`(~x`,
/// `+get)`) into one. Err holds the argument that opened an unmatched parenthesis.
pub(crate) fn merge_selector_args(args: &[Bytes]) -> Result<Vec<Vec<u8>>, Bytes> {
    let mut merged = Vec::new();
    let mut open: Option<(Vec<u8>, &Bytes)> = None;
    for arg in args {
        if open.is_none() && arg.first() == Some(&b'(') && arg.last() != Some(&b')') {
            open = Some((arg.to_vec(), arg));
            continue;
        }
        if let Some((selector, _)) = open.as_mut() {
            selector.push(b' ');
            selector.extend_from_slice(arg);
            if arg.last() == Some(&b')') {
                if let Some((selector, _)) = open.take() {
                    merged.push(selector);
                }
            }
            continue;
        }
        merged.push(arg.to_vec());
    }
    match open {
        Some((_, start)) => Err(start.clone()),
        None => Ok(merged),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(rules: &[&str]) -> User {
        let mut user = User::new(Bytes::from_static(b"u"), false);
        for rule in rules {
            user.apply(rule.as_bytes(), false).expect(rule);
        }
        user
    }

    fn text(user: &User) -> String {
        String::from_utf8(user.describe()).expect("utf8")
    }

    #[test]
    fn new_user_and_default_user_describe_as_redis() {
        assert_eq!(text(&user(&[])), "off resetchannels -@all");
        assert_eq!(text(&User::new_default()), "on nopass ~* &* +@all");
        assert_eq!(
            text(&user(&[
                "on", ">p", "~k*", "%R~r*", "&ch", "+get", "+@hash"
            ])),
            format!(
                "on #{} ~k* %R~r* resetchannels &ch -@all +@hash +get",
                hash_password(b"p")
            )
        );
        assert_eq!(
            text(&user(&["+@all", "-@dangerous", "allkeys", "(~x +set)"])),
            "off ~* resetchannels +@all -@dangerous (~x resetchannels -@all +set)"
        );
        assert_eq!(
            text(&user(&["reset"])),
            "off sanitize-payload resetchannels -@all"
        );
    }

    #[test]
    fn describing_rebuilds_the_same_user() {
        let original = user(&[
            "on",
            "+@all",
            "-@write",
            "+set",
            "-config|set",
            "+select|0",
            "~a",
            "%W~b",
        ]);
        let mut rebuilt = User::new(Bytes::from_static(b"u"), false);
        let description = original.describe();
        for word in description.split(|&b| b == b' ') {
            rebuilt.apply(word, false).expect("rule");
        }
        assert_eq!(rebuilt.describe(), description);
        for id in 0..CATALOG.entries.len() {
            assert_eq!(rebuilt.root.command_bit(id), original.root.command_bit(id));
        }
    }

    #[test]
    fn rule_errors_are_redis_errors() {
        let mut u = user(&["allkeys"]);
        assert_eq!(u.apply(b"~x", false), Err(RuleError::KeyAfterAll));
        assert_eq!(u.apply(b"+nosuch", false), Err(RuleError::UnknownCommand));
        assert_eq!(u.apply(b"+@nosuch", false), Err(RuleError::UnknownCommand));
        assert_eq!(u.apply(b"#abc", false), Err(RuleError::BadHash));
        assert_eq!(u.apply(b"<nope", false), Err(RuleError::NoSuchPassword));
        assert_eq!(
            u.apply(b"+config|get|x", false),
            Err(RuleError::FirstArgOfSubcommand)
        );
        assert_eq!(u.apply(b"%X~a", false), Err(RuleError::KeyAfterAll));
        assert_eq!(u.apply(b"resetkeys", false), Ok(()));
        assert_eq!(u.apply(b"%X~a", false), Err(RuleError::Syntax));
        // As Redis: `%R` without `~` is the empty pattern.
        assert_eq!(u.apply(b"%R", false), Ok(()));
        assert_eq!(u.root.keys_text(), b"%R~".to_vec());
        assert_eq!(u.apply(b"bogus", false), Err(RuleError::Syntax));
        assert_eq!(u.apply(b"+select|", false), Err(RuleError::Syntax));
    }

    #[test]
    fn passwords_are_checked_by_hash() {
        let u = user(&[">secret", "on"]);
        assert!(u.password_matches(b"secret"));
        assert!(!u.password_matches(b"secreT"));
        assert!(user(&["nopass"]).password_matches(b"anything"));
    }

    #[test]
    fn selectors_spread_over_arguments_are_merged() {
        let args: Vec<Bytes> = ["on", "(~a", "+get)", "(+set)"]
            .iter()
            .map(|s| Bytes::from(s.to_string()))
            .collect();
        assert_eq!(
            merge_selector_args(&args).expect("merged"),
            vec![b"on".to_vec(), b"(~a +get)".to_vec(), b"(+set)".to_vec()]
        );
        let open: Vec<Bytes> = vec![Bytes::from_static(b"(~a")];
        assert_eq!(merge_selector_args(&open), Err(Bytes::from_static(b"(~a")));
    }
}
