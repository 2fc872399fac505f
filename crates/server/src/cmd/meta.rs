//! Typed command metadata: flags as bits, key positions as a value, the gate policy, and the
//! reasons a command is refused before it runs.
//!
//! Every behaviour dispatch chooses per command (authentication, MULTI queuing, subscribed
//! mode, MISCONF, the command gate, which keys to signal for blocked clients) is read from
//! these fields, never from the command's name, and testing a flag is one AND on the hot path.

use std::fmt;

use bytes::Bytes;

/// A set of command flags: Redis 7.0's flags (reported by COMMAND INFO in Redis's order, see
/// [`Flags::REPORTED`]) and forkless's own dispatch traits, which COMMAND INFO never shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Flags(u32);

/// Builds a [`Flags`] constant from flag names: `flags!(WRITE, DENYOOM, FAST)`.
macro_rules! flags {
    () => {
        $crate::cmd::meta::Flags::NONE
    };
    ($($flag:ident),+ $(,)?) => {
        $crate::cmd::meta::Flags::NONE$(.union($crate::cmd::meta::Flags::$flag))+
    };
}
pub(crate) use flags;

impl Flags {
    /// No flag.
    pub(crate) const NONE: Flags = Flags(0);
    /// The command may change the dataset.
    pub(crate) const WRITE: Flags = Flags(1 << 0);
    /// The command only reads the dataset.
    pub(crate) const READONLY: Flags = Flags(1 << 1);
    /// The command may grow memory use (refused over `maxmemory` in Redis).
    pub(crate) const DENYOOM: Flags = Flags(1 << 2);
    /// An administrative command.
    pub(crate) const ADMIN: Flags = Flags(1 << 3);
    /// A publish/subscribe command.
    pub(crate) const PUBSUB: Flags = Flags(1 << 4);
    /// Not allowed in scripts.
    pub(crate) const NOSCRIPT: Flags = Flags(1 << 5);
    /// The command may block the client.
    pub(crate) const BLOCKING: Flags = Flags(1 << 6);
    /// Allowed while the dataset is loading.
    pub(crate) const LOADING: Flags = Flags(1 << 7);
    /// Allowed on a replica with stale data.
    pub(crate) const STALE: Flags = Flags(1 << 8);
    /// Not logged in the slow log.
    pub(crate) const SKIP_SLOWLOG: Flags = Flags(1 << 9);
    /// O(1) or O(log N): never delays the server.
    pub(crate) const FAST: Flags = Flags(1 << 10);
    /// Allowed before authentication.
    pub(crate) const NO_AUTH: Flags = Flags(1 << 11);
    /// May replicate (Redis hides this flag from COMMAND INFO, and so does forkless).
    pub(crate) const MAY_REPLICATE: Flags = Flags(1 << 12);
    /// Available in Sentinel mode (hidden from COMMAND INFO, as in Redis).
    pub(crate) const SENTINEL: Flags = Flags(1 << 13);
    /// Not allowed during an asynchronous load.
    pub(crate) const NO_ASYNC_LOADING: Flags = Flags(1 << 14);
    /// Not allowed inside MULTI.
    pub(crate) const NO_MULTI: Flags = Flags(1 << 15);
    /// The key positions are not all given by the first/last/step triple.
    pub(crate) const MOVABLEKEYS: Flags = Flags(1 << 16);
    /// Allowed while a script is busy.
    pub(crate) const ALLOW_BUSY: Flags = Flags(1 << 17);
    /// Not shown to MONITOR clients (the script commands: their effects are).
    pub(crate) const SKIP_MONITOR: Flags = Flags(1 << 18);
    /// May be called without keys although it declares key positions (EVAL, FCALL).
    pub(crate) const NO_MANDATORY_KEYS: Flags = Flags(1 << 19);

    /// forkless: runs at once inside MULTI instead of being queued (Redis's list: EXEC,
    /// DISCARD, MULTI, WATCH, UNWATCH, QUIT, RESET).
    pub(crate) const RUNS_IN_MULTI: Flags = Flags(1 << 24);
    /// forkless: allowed in a RESP2 connection's subscribed mode.
    pub(crate) const IN_SUBSCRIBED_MODE: Flags = Flags(1 << 25);
    /// forkless: refused with MISCONF after a failed background save although it does not
    /// write (Redis refuses PING too, so that monitoring notices).
    pub(crate) const REFUSED_ON_MISCONF: Flags = Flags(1 << 26);
    /// forkless: Redis's `protected` commands (DEBUG): refused right after the arity check,
    /// before authentication and ACL, unless `enable-debug-command` lets this client in.
    pub(crate) const PROTECTED: Flags = Flags(1 << 27);
    /// forkless: runs the Lua script whose body or SHA1 is `argv[1]` (EVAL and its forms);
    /// whether it writes is the script's declared flags' to say (Redis's
    /// `evalGetCommandFlags`, see `scripting::declared_writes`).
    pub(crate) const RUNS_SCRIPT: Flags = Flags(1 << 28);
    /// forkless: calls the function named `argv[1]` (FCALL, FCALL_RO); as [`Flags::RUNS_SCRIPT`]
    /// with the function's flags.
    pub(crate) const RUNS_FUNCTION: Flags = Flags(1 << 29);
    /// A container some of whose subcommands are protected (MODULE: LOAD, LOADEX, UNLOAD):
    /// dispatch looks the subcommand up to apply `enable-module-command` before it runs.
    pub(crate) const PROTECTED_SUBCOMMANDS: Flags = Flags(1 << 30);

    /// The flags COMMAND INFO reports, in the order Redis 7.0 writes them
    /// (`addReplyCommandFlags`); the others are hidden.
    pub(crate) const REPORTED: &'static [(Flags, &'static str)] = &[
        (Flags::WRITE, "write"),
        (Flags::READONLY, "readonly"),
        (Flags::DENYOOM, "denyoom"),
        (Flags::ADMIN, "admin"),
        (Flags::PUBSUB, "pubsub"),
        (Flags::NOSCRIPT, "noscript"),
        (Flags::BLOCKING, "blocking"),
        (Flags::LOADING, "loading"),
        (Flags::STALE, "stale"),
        (Flags::SKIP_MONITOR, "skip_monitor"),
        (Flags::SKIP_SLOWLOG, "skip_slowlog"),
        (Flags::FAST, "fast"),
        (Flags::NO_AUTH, "no_auth"),
        (Flags::NO_ASYNC_LOADING, "no_async_loading"),
        (Flags::NO_MULTI, "no_multi"),
        (Flags::NO_MANDATORY_KEYS, "no_mandatory_keys"),
        (Flags::MOVABLEKEYS, "movablekeys"),
        (Flags::ALLOW_BUSY, "allow_busy"),
    ];

    /// Both sets together.
    pub(crate) const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// Returns true if and only if every flag of `other` is set.
    pub(crate) const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Returns true if and only if some flag of `other` is set.
    pub(crate) const fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }

    /// The names COMMAND INFO shows, in Redis's order.
    pub(crate) fn reported(self) -> impl Iterator<Item = &'static str> {
        Flags::REPORTED
            .iter()
            .filter(move |(flag, _)| self.contains(*flag))
            .map(|(_, name)| *name)
    }
}

/// How a command holds the command gate (`forkless_storage::CommandGate`) while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Dispatch holds the gate shared for the whole command: every ordinary command.
    Shared,
    /// The handler takes the gate exclusively itself, when it knows it will run (EXEC), so
    /// dispatch takes nothing.
    Exclusive,
}

/// Redis's legacy key positions: first key, last key (negative counts from the end of argv)
/// and step; a first key of 0 means no keys. Stated once per command, it serves COMMAND INFO,
/// COMMAND GETKEYS, waking blocked clients after a write, and the handlers themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeySpec {
    pub(crate) first: i32,
    pub(crate) last: i32,
    pub(crate) step: i32,
}

impl KeySpec {
    /// No keys.
    pub(crate) const NONE: KeySpec = KeySpec::new(0, 0, 0);
    /// One key, argv[1].
    pub(crate) const FIRST: KeySpec = KeySpec::new(1, 1, 1);
    /// Every argument after the name (DEL, EXISTS, MGET...).
    pub(crate) const ALL: KeySpec = KeySpec::new(1, -1, 1);

    pub(crate) const fn new(first: i32, last: i32, step: i32) -> KeySpec {
        KeySpec { first, last, step }
    }

    /// Returns true if and only if the command takes keys at fixed positions.
    pub(crate) const fn has_keys(self) -> bool {
        self.first > 0 && self.step > 0
    }

    /// The positions in an argv of `argc` arguments that hold keys, in order.
    pub(crate) fn positions(self, argc: usize) -> impl Iterator<Item = usize> {
        let first = usize::try_from(self.first).unwrap_or(0);
        let step = usize::try_from(self.step).unwrap_or(0);
        let end = if !self.has_keys() {
            0
        } else if self.last < 0 {
            // The last key is `-last` from the end: positions up to argc + last, inclusive.
            (argc + 1).saturating_sub(usize::try_from(self.last.unsigned_abs()).unwrap_or(0))
        } else {
            usize::try_from(self.last)
                .unwrap_or(0)
                .saturating_add(1)
                .min(argc)
        };
        (first..end).step_by(step.max(1))
    }

    /// The key arguments of `argv`, in order, without copying.
    pub(crate) fn keys(self, argv: &[Bytes]) -> impl Iterator<Item = &[u8]> {
        self.positions(argv.len())
            .filter_map(|pos| argv.get(pos).map(|key| &key[..]))
    }
}

/// Why a command is refused before its handler runs. Display gives Redis 7.0's error reply
/// text (without the leading `-`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The argument count does not fit the command's arity.
    WrongArity { command: &'static str },
    /// The default user needs a password (`requirepass`, ACL) and the client has not
    /// authenticated.
    NoAuth,
    /// A RESP2 client in subscribed mode sent a command other than (un)subscribe, PING, QUIT
    /// or RESET.
    SubscribedMode { command: &'static str },
    /// DEBUG while `enable-debug-command` does not let this client run it.
    DebugNotAllowed,
    /// MODULE LOAD/LOADEX/UNLOAD under `enable-module-command`.
    ModuleNotAllowed,
    /// The dataset is still loading.
    Loading,
    /// The command may not be queued inside MULTI.
    NotInMulti,
    /// A background save failed and `stop-writes-on-bgsave-error` refuses writes.
    Misconf,
    /// The client's ACL user may not run the command (`command` is its full name).
    NoPermCommand { command: &'static str },
    /// The client's ACL user may not access one of the keys.
    NoPermKey,
    /// The client's ACL user may not access one of the channels.
    NoPermChannel,
    /// The last write to the AOF failed (the OS error's number): writes are refused until one
    /// succeeds, as Redis 7.0 does.
    MisconfAof { errno: i32 },
    /// A replica's refusal to its own clients: READONLY or MASTERDOWN, Redis's text.
    Replica(&'static str),
    /// `min-replicas-to-write` replicas with a lag within `min-replicas-max-lag` are not there.
    NoReplicas,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::WrongArity { command } => {
                write!(f, "ERR wrong number of arguments for '{command}' command")
            }
            Refusal::NoAuth => f.write_str(super::reply::NOAUTH),
            Refusal::SubscribedMode { command } => write!(
                f,
                "ERR Can't execute '{command}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / \
                 QUIT / RESET are allowed in this context"
            ),
            Refusal::NoPermCommand { command } => write!(
                f,
                "NOPERM this user has no permissions to run the '{command}' command"
            ),
            Refusal::NoPermKey => f.write_str(
                "NOPERM this user has no permissions to access one of the keys used as arguments",
            ),
            Refusal::NoPermChannel => f.write_str(
                "NOPERM this user has no permissions to access one of the channels used as \
                 arguments",
            ),
            Refusal::DebugNotAllowed => f.write_str(super::debug::NOT_ALLOWED),
            Refusal::ModuleNotAllowed => f.write_str(super::module::NOT_ALLOWED),
            Refusal::Loading => f.write_str(crate::persistence::LOADING),
            Refusal::NotInMulti => f.write_str("ERR Command not allowed inside a transaction"),
            Refusal::Misconf => f.write_str(crate::persistence::MISCONF),
            Refusal::Replica(reply) => f.write_str(reply),
            Refusal::NoReplicas => f.write_str("NOREPLICAS Not enough good replicas to write."),
            Refusal::MisconfAof { errno } => write!(
                f,
                "MISCONF Errors writing to the AOF file: {}",
                crate::config::strerror(&std::io::Error::from_raw_os_error(*errno))
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(spec: KeySpec, argc: usize) -> Vec<usize> {
        spec.positions(argc).collect()
    }

    #[test]
    fn key_positions_follow_redis_rules() {
        assert_eq!(positions(KeySpec::NONE, 5), Vec::<usize>::new());
        assert_eq!(positions(KeySpec::FIRST, 2), vec![1]);
        assert_eq!(positions(KeySpec::FIRST, 1), Vec::<usize>::new());
        assert_eq!(positions(KeySpec::ALL, 4), vec![1, 2, 3]);
        // MSET k v k v: every other argument.
        assert_eq!(positions(KeySpec::new(1, -1, 2), 5), vec![1, 3]);
        // BLPOP k k timeout: all but the last.
        assert_eq!(positions(KeySpec::new(1, -2, 1), 4), vec![1, 2]);
        assert_eq!(positions(KeySpec::new(1, -2, 1), 1), Vec::<usize>::new());
        // RENAME src dst; OBJECT ENCODING key.
        assert_eq!(positions(KeySpec::new(1, 2, 1), 3), vec![1, 2]);
        assert_eq!(positions(KeySpec::new(2, 2, 1), 3), vec![2]);
        assert_eq!(positions(KeySpec::new(2, 2, 1), 2), Vec::<usize>::new());
    }

    #[test]
    fn flags_are_reported_in_redis_order_and_hidden_ones_are_not() {
        let flags = flags!(FAST, WRITE, SENTINEL, MAY_REPLICATE, RUNS_IN_MULTI, DENYOOM);
        assert_eq!(
            flags.reported().collect::<Vec<_>>(),
            ["write", "denyoom", "fast"]
        );
        assert!(flags.contains(Flags::WRITE));
        assert!(!flags.contains(Flags::READONLY));
        assert!(flags.intersects(Flags::READONLY.union(Flags::FAST)));
    }
}
