//! The command catalog ACL rules speak about: an id per command and per subcommand (the bits
//! of a selector's command bitmap), each one's categories as bits, its key specifications
//! with their access flags (Redis 7.0's `key_specs`, generated into `keyspecs.rs`) and its
//! channel arguments. Built once from the command table; a permission check reads it without
//! parsing a string.

use std::collections::HashMap;
use std::sync::LazyLock;

use bytes::Bytes;

use crate::cmd::meta::Flags;
use crate::cmd::subcommands::SUBCOMMANDS;
use crate::cmd::{all_commands, eq_ignore_case, parse_i64};

/// Redis 7.0's ACL categories, in Redis's order (ACL CAT, COMMAND INFO): bit `1 << index`.
pub(crate) const CATEGORIES: &[&str] = &[
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// The bit of category `name` (any case), or None for an unknown category.
pub(crate) fn category_bit(name: &[u8]) -> Option<u32> {
    CATEGORIES
        .iter()
        .position(|category| eq_ignore_case(name, category))
        .map(|idx| 1 << idx)
}

/// Key specification flags (Redis's `CMD_KEY_*`).
pub(crate) mod key_flag {
    pub(crate) const RO: u16 = 1 << 0;
    pub(crate) const RW: u16 = 1 << 1;
    pub(crate) const OW: u16 = 1 << 2;
    pub(crate) const RM: u16 = 1 << 3;
    pub(crate) const ACCESS: u16 = 1 << 4;
    pub(crate) const UPDATE: u16 = 1 << 5;
    pub(crate) const INSERT: u16 = 1 << 6;
    pub(crate) const DELETE: u16 = 1 << 7;
    pub(crate) const NOT_KEY: u16 = 1 << 8;
    pub(crate) const INCOMPLETE: u16 = 1 << 9;
    pub(crate) const VARIABLE_FLAGS: u16 = 1 << 10;
}

/// Where a key specification starts looking.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Begin {
    Index(i32),
    Keyword {
        keyword: &'static str,
        start_from: i32,
    },
    Unknown,
}

/// How a key specification finds its keys from where it began.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Find {
    Range { last: i32, step: i32, limit: i32 },
    Keynum { index: i32, first: i32, step: i32 },
    Unknown,
}

/// One of Redis 7.0's key specifications.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) flags: u16,
    pub(crate) begin: Begin,
    pub(crate) find: Find,
}

/// The commands whose keys Redis finds with a function of their own rather than their key
/// specifications (specifications with `VARIABLE_FLAGS`, or incomplete ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeysProc {
    None,
    /// SET: the key is read too when GET is given.
    Set,
    /// BITFIELD: read-only when only GET (and OVERFLOW) subcommands are given.
    Bitfield,
    /// SORT: the key, and the STORE destination.
    Sort,
    /// SORT_RO: the key.
    SortReadOnly,
    /// MIGRATE: the key, or those after KEYS.
    Migrate,
}

/// What a command does with channel arguments (Redis's `commands_with_channels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channels {
    None,
    /// Every argument is a channel to subscribe to (SUBSCRIBE, SSUBSCRIBE).
    Subscribe,
    /// Every argument is a pattern to subscribe to (PSUBSCRIBE): matched literally.
    SubscribePattern,
    /// argv[1] is a channel to publish to (PUBLISH, SPUBLISH).
    Publish,
}

/// Redis's channel table, by command name: resolved to ids once.
const CHANNEL_COMMANDS: &[(&str, Channels)] = &[
    ("subscribe", Channels::Subscribe),
    ("ssubscribe", Channels::Subscribe),
    ("psubscribe", Channels::SubscribePattern),
    ("publish", Channels::Publish),
    ("spublish", Channels::Publish),
];

/// One command or subcommand as ACL sees it.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Full lower-case name (`get`, `config|get`).
    pub(crate) name: &'static str,
    pub(crate) categories: u32,
    pub(crate) flags: Flags,
    /// The container's id, for a subcommand.
    pub(crate) parent: Option<usize>,
    /// The subcommands' ids, for a container.
    pub(crate) children: Vec<usize>,
    specs: &'static [Spec],
    keys_proc: KeysProc,
    pub(crate) channels: Channels,
}

impl Entry {
    /// Returns true if and only if the command may take keys (Redis's `doesCommandHaveKeys`).
    pub(crate) fn has_keys(&self) -> bool {
        self.keys_proc != KeysProc::None
            || self
                .specs
                .iter()
                .any(|spec| spec.flags & key_flag::NOT_KEY == 0)
    }
}

/// Every command and subcommand with an id: the top-level commands in table order, then the
/// subcommands in `SUBCOMMANDS` order.
#[derive(Debug)]
pub(crate) struct Catalog {
    pub(crate) entries: Vec<Entry>,
    by_name: HashMap<&'static str, usize>,
}

/// The bits a selector's command bitmap holds; the last one is reserved for "future
/// commands", set only by `+@all`/`allcommands`, as in Redis.
pub(crate) const COMMAND_BITS: usize = 1024;
pub(crate) const FUTURE_COMMANDS_BIT: usize = COMMAND_BITS - 1;

pub(crate) static CATALOG: LazyLock<Catalog> = LazyLock::new(Catalog::build);

fn categories_of(names: &[&str]) -> u32 {
    names
        .iter()
        .filter_map(|name| category_bit(name.as_bytes()))
        .fold(0, |bits, bit| bits | bit)
}

fn specs_of(name: &str) -> &'static [Spec] {
    super::keyspecs::KEY_SPECS
        .binary_search_by(|(row, _)| (*row).cmp(name))
        .ok()
        .and_then(|idx| super::keyspecs::KEY_SPECS.get(idx))
        .map_or(&[], |(_, specs)| *specs)
}

impl Catalog {
    fn build() -> Catalog {
        let commands = all_commands();
        let n_commands = commands.len();
        let mut entries: Vec<Entry> = commands
            .iter()
            .map(|command| Entry {
                name: command.name,
                categories: categories_of(command.categories),
                flags: command.flags,
                parent: None,
                children: Vec::new(),
                specs: specs_of(command.name),
                keys_proc: match command.name {
                    "set" => KeysProc::Set,
                    "bitfield" => KeysProc::Bitfield,
                    "sort" => KeysProc::Sort,
                    "sort_ro" => KeysProc::SortReadOnly,
                    "migrate" => KeysProc::Migrate,
                    _ => KeysProc::None,
                },
                channels: CHANNEL_COMMANDS
                    .iter()
                    .find(|(name, _)| *name == command.name)
                    .map_or(Channels::None, |(_, channels)| *channels),
            })
            .collect();
        let mut by_name: HashMap<&'static str, usize> = entries
            .iter()
            .enumerate()
            .map(|(id, entry)| (entry.name, id))
            .collect();
        for (row, sub) in SUBCOMMANDS.iter().enumerate() {
            let id = n_commands + row;
            let parent = by_name.get(sub.container()).copied();
            if let Some(parent) = parent.and_then(|parent| entries.get_mut(parent)) {
                parent.children.push(id);
            }
            entries.push(Entry {
                name: sub.name,
                categories: categories_of(sub.categories),
                flags: sub.flags,
                parent,
                children: Vec::new(),
                specs: specs_of(sub.name),
                keys_proc: KeysProc::None,
                channels: Channels::None,
            });
            by_name.insert(sub.name, id);
        }
        debug_assert!(
            entries.len() < FUTURE_COMMANDS_BIT,
            "too many commands for ACL bits"
        );
        Catalog { entries, by_name }
    }

    /// The id of a command or `container|sub` by name, any case.
    pub(crate) fn id_of(&self, name: &[u8]) -> Option<usize> {
        let lower = std::str::from_utf8(name).ok()?.to_ascii_lowercase();
        self.by_name.get(lower.as_str()).copied()
    }

    pub(crate) fn get(&self, id: usize) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// The id a command line runs under: the subcommand's when `argv[0]` is a container and
    /// `argv[1]` one of its subcommands, else the command's (`table_idx` is its index in the
    /// command table).
    pub(crate) fn id_for_call(&self, table_idx: usize, argv: &[Bytes]) -> usize {
        if let (Some(entry), Some(sub)) = (self.entries.get(table_idx), argv.get(1))
            && !entry.children.is_empty()
        {
            for &child in &entry.children {
                if let Some(child_entry) = self.entries.get(child)
                    && child_entry
                        .name
                        .split_once('|')
                        .is_some_and(|(_, name)| eq_ignore_case(sub, name))
                {
                    return child;
                }
            }
        }
        table_idx
    }
}

/// One key argument: its position in argv and its key specification's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyRef {
    pub(crate) pos: usize,
    pub(crate) flags: u16,
}

/// The key arguments of a call to `entry`, as Redis's `getKeysFromCommandWithSpecs` finds them
/// for ACL: from the key specifications when they are complete and their flags fixed, else
/// from the command's own function; none when neither can tell.
pub(crate) fn keys_of(entry: &Entry, argv: &[Bytes]) -> Vec<KeyRef> {
    let has_spec = entry
        .specs
        .iter()
        .any(|spec| spec.flags & key_flag::NOT_KEY == 0);
    let variable = entry
        .specs
        .iter()
        .any(|spec| spec.flags & key_flag::VARIABLE_FLAGS != 0);
    if has_spec
        && !variable
        && let Some(keys) = keys_from_specs(entry.specs, argv)
    {
        return keys;
    }
    match entry.keys_proc {
        KeysProc::None => Vec::new(),
        KeysProc::Set => set_keys(argv),
        KeysProc::Bitfield => bitfield_keys(argv),
        KeysProc::Sort => sort_keys(argv),
        KeysProc::SortReadOnly => vec![KeyRef {
            pos: 1,
            flags: key_flag::RO | key_flag::ACCESS,
        }],
        KeysProc::Migrate => migrate_key_positions(argv)
            .into_iter()
            .map(|pos| KeyRef {
                pos,
                flags: key_flag::RW | key_flag::ACCESS | key_flag::DELETE,
            })
            .collect(),
    }
}

/// Redis's `getKeysUsingKeySpecs`; None where a specification is unknown, incomplete or does
/// not fit the arguments.
fn keys_from_specs(specs: &[Spec], argv: &[Bytes]) -> Option<Vec<KeyRef>> {
    let argc = i64::try_from(argv.len()).ok()?;
    let mut keys = Vec::new();
    for spec in specs {
        if spec.flags & key_flag::NOT_KEY != 0 {
            continue;
        }
        let mut first: i64 = match spec.begin {
            Begin::Index(pos) => i64::from(pos),
            Begin::Keyword {
                keyword,
                start_from,
            } => {
                let start_from = i64::from(start_from);
                let start = if start_from > 0 {
                    start_from
                } else {
                    argc + start_from
                };
                let end = if start_from > 0 { argc - 1 } else { 1 };
                let mut found = 0;
                let mut idx = start;
                while idx != end {
                    if idx >= argc || idx < 1 {
                        break;
                    }
                    let arg = argv.get(usize::try_from(idx).ok()?)?;
                    if eq_ignore_case(arg, keyword) {
                        found = idx + 1;
                        break;
                    }
                    idx = if start <= end { idx + 1 } else { idx - 1 };
                }
                if found == 0 {
                    continue;
                }
                found
            }
            Begin::Unknown => return None,
        };
        let (last, step) = match spec.find {
            Find::Range { last, step, limit } => {
                let last = i64::from(last);
                let end = if last >= 0 {
                    first + last
                } else if limit == 0 {
                    argc + last
                } else {
                    first + ((argc - first) / i64::from(limit) + last)
                };
                (end, i64::from(step))
            }
            Find::Keynum {
                index,
                first: offset,
                step,
            } => {
                let count_arg = argv.get(usize::try_from(first + i64::from(index)).ok()?)?;
                let count = parse_i64(count_arg).filter(|count| *count >= 0)?;
                first += i64::from(offset);
                (first + count - 1, i64::from(step))
            }
            Find::Unknown => return None,
        };
        if last >= argc || last < first || first >= argc {
            return None;
        }
        let mut idx = first;
        while idx <= last {
            if let Ok(pos) = usize::try_from(idx)
                && pos < argv.len()
            {
                keys.push(KeyRef {
                    pos,
                    flags: spec.flags,
                });
            }
            idx += step.max(1);
        }
        if spec.flags & key_flag::INCOMPLETE != 0 {
            return None;
        }
    }
    Some(keys)
}

/// MIGRATE's key positions, as Redis's `migrateGetKeys` finds them: argv[3], or what follows
/// the first KEYS among the options (skipping AUTH's and AUTH2's arguments); none when KEYS
/// comes with a non-empty key argument (MIGRATE itself then replies a syntax error).
fn migrate_key_positions(argv: &[Bytes]) -> Vec<usize> {
    let (mut first, mut n_keys) = (3, 1);
    let mut idx = 6;
    while idx < argv.len() {
        let arg = argv.get(idx).map_or(&b""[..], |arg| arg);
        if eq_ignore_case(arg, "keys") {
            if argv.get(3).is_some_and(|key| !key.is_empty()) {
                n_keys = 0;
            } else {
                first = idx + 1;
                n_keys = argv.len() - first;
            }
            break;
        }
        if eq_ignore_case(arg, "auth") {
            idx += 1;
        } else if eq_ignore_case(arg, "auth2") {
            idx += 2;
        }
        idx += 1;
    }
    (first..first + n_keys)
        .filter(|&pos| pos < argv.len())
        .collect()
}

fn set_keys(argv: &[Bytes]) -> Vec<KeyRef> {
    let get = argv.iter().skip(3).any(|arg| eq_ignore_case(arg, "get"));
    let flags = if get {
        key_flag::RW | key_flag::ACCESS | key_flag::UPDATE
    } else {
        key_flag::OW | key_flag::UPDATE
    };
    vec![KeyRef { pos: 1, flags }]
}

fn bitfield_keys(argv: &[Bytes]) -> Vec<KeyRef> {
    let mut readonly = true;
    let mut idx = 2;
    while idx < argv.len() {
        let remaining = argv.len() - idx - 1;
        let arg = argv.get(idx).map_or(&b""[..], |arg| arg);
        if eq_ignore_case(arg, "get") && remaining >= 2 {
            idx += 3;
        } else if (eq_ignore_case(arg, "set") || eq_ignore_case(arg, "incrby")) && remaining >= 3 {
            readonly = false;
            break;
        } else if eq_ignore_case(arg, "overflow") && remaining >= 1 {
            idx += 2;
        } else {
            readonly = false;
            break;
        }
    }
    let flags = if readonly {
        key_flag::RO | key_flag::ACCESS
    } else {
        key_flag::RW | key_flag::ACCESS | key_flag::UPDATE
    };
    vec![KeyRef { pos: 1, flags }]
}

/// Redis's `sortGetKeys`: the sorted key, and the last STORE destination.
fn sort_keys(argv: &[Bytes]) -> Vec<KeyRef> {
    let mut keys = vec![KeyRef {
        pos: 1,
        flags: key_flag::RO | key_flag::ACCESS,
    }];
    let mut store = None;
    let mut idx = 2;
    while idx < argv.len() {
        let arg = argv.get(idx).map_or(&b""[..], |arg| arg);
        if eq_ignore_case(arg, "limit") {
            idx += 2;
        } else if eq_ignore_case(arg, "get") || eq_ignore_case(arg, "by") {
            idx += 1;
        } else if eq_ignore_case(arg, "store") && idx + 1 < argv.len() {
            store = Some(idx + 1);
        }
        idx += 1;
    }
    if let Some(pos) = store {
        keys.push(KeyRef {
            pos,
            flags: key_flag::OW | key_flag::UPDATE,
        });
    }
    keys
}

/// The channel arguments of a call: (position, is a pattern). Only subscribing and publishing
/// are checked, as in Redis.
pub(crate) fn channels_of(entry: &Entry, argv: &[Bytes]) -> Vec<(usize, bool)> {
    match entry.channels {
        Channels::None => Vec::new(),
        Channels::Subscribe => (1..argv.len()).map(|pos| (pos, false)).collect(),
        Channels::SubscribePattern => (1..argv.len()).map(|pos| (pos, true)).collect(),
        Channels::Publish => (argv.len() > 1).then_some((1, false)).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<Bytes> {
        words.iter().map(|w| Bytes::from(w.to_string())).collect()
    }

    fn keys(name: &str, words: &[&str]) -> Vec<(usize, u16)> {
        let id = CATALOG.id_of(name.as_bytes()).expect(name);
        let entry = CATALOG.get(id).expect("entry");
        keys_of(entry, &argv(words))
            .into_iter()
            .map(|key| (key.pos, key.flags))
            .collect()
    }

    #[test]
    fn keys_follow_redis_key_specs() {
        use key_flag::*;
        assert_eq!(keys("get", &["get", "k"]), vec![(1, RO | ACCESS)]);
        assert_eq!(
            keys("lmove", &["lmove", "a", "b", "left", "right"]),
            vec![(1, RW | ACCESS | DELETE), (2, RW | INSERT)]
        );
        assert_eq!(
            keys("mset", &["mset", "a", "1", "b", "2"]),
            vec![(1, OW | UPDATE), (3, OW | UPDATE)]
        );
        assert_eq!(keys("set", &["set", "k", "v"]), vec![(1, OW | UPDATE)]);
        // MIGRATE: argv[3] from the key specs; with KEYS, Redis's migrateGetKeys (skipping
        // AUTH's and AUTH2's arguments, so a password spelled KEYS is not the keyword).
        let moved = RW | ACCESS | DELETE;
        let migrate = |words: &[&str]| {
            let mut full = vec!["migrate", "h", "1"];
            full.extend_from_slice(words);
            keys("migrate", &full)
        };
        assert_eq!(migrate(&["k", "0", "5"]), vec![(3, moved)]);
        assert_eq!(
            migrate(&["", "0", "5", "KEYS", "a", "b"]),
            vec![(7, moved), (8, moved)]
        );
        assert_eq!(
            migrate(&["", "0", "5", "AUTH", "KEYS", "KEYS", "a"]),
            vec![(9, moved)]
        );
        assert_eq!(
            migrate(&["", "0", "5", "AUTH2", "KEYS", "p", "KEYS", "a"]),
            vec![(10, moved)]
        );
        assert_eq!(migrate(&["k", "0", "5", "KEYS", "a"]), vec![]);
        assert_eq!(
            keys("set", &["set", "k", "v", "get"]),
            vec![(1, RW | ACCESS | UPDATE)]
        );
        assert_eq!(
            keys("zunionstore", &["zunionstore", "d", "2", "a", "b"]),
            vec![(1, OW | UPDATE), (3, RO | ACCESS), (4, RO | ACCESS)]
        );
        assert_eq!(
            keys("sort", &["sort", "k", "limit", "0", "1", "store", "d"]),
            vec![(1, RO | ACCESS), (6, OW | UPDATE)]
        );
        let xread = keys(
            "xread",
            &["xread", "count", "1", "streams", "a", "b", "0", "0"],
        );
        assert_eq!(xread.iter().map(|k| k.0).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(
            keys("object|encoding", &["object", "encoding", "k"]),
            vec![(2, RO)]
        );
        assert_eq!(
            keys("bitfield", &["bitfield", "k", "get", "u8", "0"]),
            vec![(1, RO | ACCESS)]
        );
    }

    #[test]
    fn every_category_name_in_the_table_is_known() {
        for command in all_commands() {
            for category in command.categories {
                assert!(
                    category_bit(category.as_bytes()).is_some(),
                    "{}",
                    command.name
                );
            }
        }
        for sub in SUBCOMMANDS {
            for category in sub.categories {
                assert!(category_bit(category.as_bytes()).is_some(), "{}", sub.name);
            }
        }
    }
}
