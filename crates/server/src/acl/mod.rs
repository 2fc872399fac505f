//! Access control as Redis 7.0's ACL: users, their rules, the permission check every command
//! goes through, the ACL log and the ACL file.
//!
//! # Layout
//! - `catalog.rs`: command ids, categories as bits, key specifications (`keyspecs.rs`,
//!   generated from Redis's `commands/*.json` by `gen_keyspecs.py`) and channel arguments.
//! - `user.rs`: `User` and `Selector`, the rule language, the canonical description.
//! - `log.rs`: ACL LOG.
//! - `file.rs`: `aclfile` loading (all or nothing) and ACL SAVE (atomic replace).
//! - `cmd/acl.rs` holds the ACL command itself.
//!
//! # The hot path
//! A client keeps its user (`ClientAcl`) with the registry's generation it read it at. A
//! command pays one relaxed load of the generation; when it is unchanged and the user may run
//! everything on everything (the `default` user as shipped), nothing else is checked. Any
//! change to any user bumps the generation, and each client re-reads its user before its next
//! command.

pub(crate) mod catalog;
pub(crate) mod file;
mod keyspecs;
pub(crate) mod log;
pub(crate) mod user;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use self::catalog::{CATALOG, KeyRef, channels_of, key_flag, keys_of};
use self::user::{READ, Selector, User, WRITE};
use crate::cmd::Client;
use crate::config::Config;
use crate::server::{Server, lock};

/// Why a command was denied (Redis's `ACL_DENIED_*`), with the argument at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Denied {
    Command,
    Key(usize),
    Channel(usize),
}

impl Denied {
    fn rank(self) -> (u8, usize) {
        match self {
            Denied::Command => (0, 0),
            Denied::Key(pos) => (1, pos),
            Denied::Channel(pos) => (2, pos),
        }
    }
}

/// The users, and what every client compares against to know its user is current.
#[derive(Debug)]
pub(crate) struct Acl {
    /// Users by name. A std reader-writer lock: read by a client only when the generation
    /// moved (or to authenticate), written by ACL SETUSER/DELUSER/LOAD and CONFIG SET
    /// requirepass; never held across an await or while a user's rules are parsed.
    users: RwLock<BTreeMap<Bytes, Arc<User>>>,
    /// Bumped on every change to any user.
    generation: AtomicU64,
    pub(crate) log: log::AclLog,
    /// `acl-pubsub-default allchannels`: new users and selectors get every channel.
    pub(crate) pubsub_default_all: AtomicBool,
}

impl Default for Acl {
    fn default() -> Acl {
        let default = User::new_default();
        let mut users = BTreeMap::new();
        users.insert(default.name.clone(), Arc::new(default));
        Acl {
            users: RwLock::new(users),
            generation: AtomicU64::new(1),
            log: log::AclLog::default(),
            pubsub_default_all: AtomicBool::new(false),
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Acl {
    pub(crate) fn pubsub_default_all(&self) -> bool {
        self.pubsub_default_all.load(Ordering::Relaxed)
    }

    pub(crate) fn get(&self, name: &[u8]) -> Option<Arc<User>> {
        read(&self.users).get(name).cloned()
    }

    /// Every user, by name.
    pub(crate) fn users(&self) -> Vec<Arc<User>> {
        read(&self.users).values().cloned().collect()
    }

    pub(crate) fn default_user(&self) -> Arc<User> {
        self.get(b"default")
            .unwrap_or_else(|| Arc::new(User::new_default()))
    }

    /// Replaces (or adds) a user, and refreshes what depends on the default user.
    pub(crate) fn put(&self, server: &Server, user: User) {
        write(&self.users).insert(user.name.clone(), Arc::new(user));
        self.changed(server);
    }

    /// Removes users; returns those that existed.
    pub(crate) fn remove(&self, server: &Server, names: &[Bytes]) -> Vec<Arc<User>> {
        let mut users = write(&self.users);
        let removed: Vec<Arc<User>> = names.iter().filter_map(|name| users.remove(name)).collect();
        drop(users);
        self.changed(server);
        removed
    }

    /// Replaces every user at once (ACL LOAD, startup); the default user is kept as it was
    /// when `users` has none.
    pub(crate) fn replace_all(&self, server: &Server, mut users: BTreeMap<Bytes, Arc<User>>) {
        users
            .entry(Bytes::from_static(b"default"))
            .or_insert_with(|| Arc::new(User::new_default()));
        *write(&self.users) = users;
        self.changed(server);
    }

    fn changed(&self, server: &Server) {
        self.changed_tunables(&server.tunables);
    }

    fn changed_tunables(&self, tunables: &crate::server::Tunables) {
        let default = self.default_user();
        tunables
            .requirepass_set
            .store(!default.nopass, Ordering::Relaxed);
        tunables
            .default_auth_required
            .store(!default.nopass || !default.enabled, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Startup: the options ACL reads, and `requirepass`.
    pub(crate) fn configure(&self, tunables: &crate::server::Tunables, config: &Config) {
        self.configure_options(config);
        let default = self.default_with_password(config.requirepass.as_deref());
        write(&self.users).insert(default.name.clone(), Arc::new(default));
        self.changed_tunables(tunables);
    }

    /// `acl-pubsub-default` and `acllog-max-len` (startup and CONFIG SET).
    pub(crate) fn configure_options(&self, config: &Config) {
        self.pubsub_default_all.store(
            config.stored_text("acl-pubsub-default") == b"allchannels",
            Ordering::Relaxed,
        );
        self.log
            .set_max_len(u64::try_from(config.stored_int("acllog-max-len", 128)).unwrap_or(0));
    }

    /// `requirepass`: the default user's passwords become this one (or `nopass` for none),
    /// as Redis's `ACLUpdateDefaultUserPassword`.
    pub(crate) fn set_default_password(&self, server: &Server, password: Option<&str>) {
        let default = self.default_with_password(password);
        self.put(server, default);
    }

    fn default_with_password(&self, password: Option<&str>) -> User {
        let mut default = (*self.default_user()).clone();
        let _ = default.apply(b"resetpass", false);
        match password {
            Some(password) => {
                let mut op = b">".to_vec();
                op.extend_from_slice(password.as_bytes());
                let _ = default.apply(&op, false);
            }
            None => {
                let _ = default.apply(b"nopass", false);
            }
        }
        default
    }

    /// Checks a username and password (`ACLCheckUserCredentials`): the user when they match
    /// and it is enabled.
    pub(crate) fn credentials(&self, username: &[u8], password: &[u8]) -> Option<Arc<User>> {
        let user = self.get(username)?;
        (user.enabled && user.password_matches(password)).then_some(user)
    }
}

/// A client's user as it last read it.
#[derive(Debug, Clone)]
pub(crate) struct ClientAcl {
    /// None for a client that may run anything (the AOF loader, as Redis's NULL user).
    user: Option<Arc<User>>,
    /// The registry generation `user` was read at.
    generation: u64,
    /// `user.unrestricted()`, cached.
    unrestricted: bool,
}

impl ClientAcl {
    /// A client that may run anything and is never checked.
    pub(crate) fn superuser() -> ClientAcl {
        ClientAcl {
            user: None,
            generation: 0,
            unrestricted: true,
        }
    }

    /// A new connection's: the default user.
    pub(crate) fn default_user(server: &Server) -> ClientAcl {
        ClientAcl::of(server, server.acl.default_user())
    }

    fn of(server: &Server, user: Arc<User>) -> ClientAcl {
        ClientAcl {
            unrestricted: user.unrestricted(),
            user: Some(user),
            generation: server.acl.generation.load(Ordering::Acquire),
        }
    }

    /// Returns true if and only if the user may run `argv` (whose command is at `table_idx`),
    /// without logging anything (`redis.acl_check_cmd`).
    pub(crate) fn allows(&self, table_idx: usize, argv: &[Bytes]) -> bool {
        match &self.user {
            None => true,
            Some(_) if self.unrestricted => true,
            Some(user) => check_user(user, CATALOG.id_for_call(table_idx, argv), argv).is_ok(),
        }
    }

    /// The user's name (`default` for a superuser client).
    pub(crate) fn name(&self) -> Bytes {
        self.user
            .as_ref()
            .map_or_else(|| Bytes::from_static(b"default"), |user| user.name.clone())
    }
}

/// Makes `user` the client's user after a successful AUTH or HELLO AUTH.
pub(crate) fn log_in(server: &Server, client: &mut Client, user: Arc<User>) {
    *lock(&client.handle.user) = user.name.clone();
    client.acl = ClientAcl::of(server, user);
    client.authenticated = true;
}

/// Back to the default user, unauthenticated unless it needs no password (RESET).
pub(crate) fn log_out(server: &Server, client: &mut Client) {
    *lock(&client.handle.user) = Bytes::from_static(b"default");
    client.acl = ClientAcl::default_user(server);
    client.authenticated = !server
        .tunables
        .default_auth_required
        .load(Ordering::Relaxed);
}

/// Re-reads the client's user when any user changed since it last did. A user that no longer
/// exists leaves the client unauthenticated as the default user (its connection is being
/// closed, as Redis's `ACLFreeUserAndKillClients`).
fn refresh(server: &Server, client: &mut Client) {
    let Some(user) = &client.acl.user else { return };
    match server.acl.get(&user.name) {
        Some(current) => client.acl = ClientAcl::of(server, current),
        None => {
            log_out(server, client);
            client.authenticated = false;
        }
    }
}

/// Where a check happens, for the ACL log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Toplevel,
    Multi,
    Lua,
}

/// Checks the client's permission to run `argv` (whose command is at `table_idx` in the
/// command table). A denial is logged in the ACL log; the caller replies.
pub(crate) fn check(
    server: &Server,
    client: &mut Client,
    table_idx: usize,
    argv: &[Bytes],
    context: Context,
) -> Result<(), (Denied, usize)> {
    if client.acl.user.is_none() {
        return Ok(());
    }
    if client.acl.generation != server.acl.generation.load(Ordering::Acquire) {
        refresh(server, client);
    }
    if client.acl.unrestricted {
        return Ok(());
    }
    let Some(user) = client.acl.user.clone() else {
        return Ok(());
    };
    let id = CATALOG.id_for_call(table_idx, argv);
    match check_user(&user, id, argv) {
        Ok(()) => Ok(()),
        Err(denied) => {
            log::record_denial(server, client, denied, id, argv, context);
            Err((denied, id))
        }
    }
}

/// `ACLCheckAllUserCommandPerm`: Ok when some selector allows the call; else the most relevant
/// denial (a command denial only when no selector allowed the command, else the key or
/// channel with the furthest position).
pub(crate) fn check_user(user: &User, id: usize, argv: &[Bytes]) -> Result<(), Denied> {
    let mut keys: Option<Vec<KeyRef>> = None;
    let mut relevant = Denied::Command;
    for selector in user.all_selectors() {
        match check_selector(selector, id, argv, &mut keys) {
            Ok(()) => return Ok(()),
            Err(denied) => {
                if denied.rank() > relevant.rank() {
                    relevant = denied;
                }
            }
        }
    }
    Err(relevant)
}

/// `ACLSelectorCheckCmd`.
fn check_selector(
    selector: &Selector,
    id: usize,
    argv: &[Bytes],
    keys: &mut Option<Vec<KeyRef>>,
) -> Result<(), Denied> {
    let Some(entry) = CATALOG.get(id) else {
        return Err(Denied::Command);
    };
    if !selector.allcommands
        && !entry.flags.contains(crate::cmd::meta::Flags::NO_AUTH)
        && !selector.command_bit(id)
    {
        let arg_idx = if entry.parent.is_some() { 2 } else { 1 };
        let allowed = selector.first_args(id).is_some_and(|args| {
            argv.get(arg_idx)
                .is_some_and(|arg| args.iter().any(|allowed| arg.eq_ignore_ascii_case(allowed)))
        });
        if argv.len() < 2 || !allowed {
            return Err(Denied::Command);
        }
    }
    if !selector.allkeys && entry.has_keys() {
        let keys = keys.get_or_insert_with(|| keys_of(entry, argv));
        for key in keys.iter() {
            let name = argv.get(key.pos).map_or(&b""[..], |arg| arg);
            if !key_allowed(selector, name, key.flags) {
                return Err(Denied::Key(key.pos));
            }
        }
    }
    if !selector.allchannels {
        for (pos, is_pattern) in channels_of(entry, argv) {
            let name = argv.get(pos).map_or(&b""[..], |arg| arg);
            if !channel_allowed(&selector.channels, name, is_pattern) {
                return Err(Denied::Channel(pos));
            }
        }
    }
    Ok(())
}

/// `ACLUserCheckCmdWithUnrestrictedKeyAccess` for reading: returns true if and only if some
/// selector of the client's user allows the call `argv` and may read every key (SORT's BY and
/// GET read keys that no argument names).
pub(crate) fn full_read_access(client: &Client, argv: &[Bytes]) -> bool {
    let Some(user) = &client.acl.user else {
        return true;
    };
    if client.acl.unrestricted {
        return true;
    }
    let Some((idx, _)) = argv.first().and_then(|name| crate::cmd::lookup(name)) else {
        return false;
    };
    let id = CATALOG.id_for_call(idx, argv);
    let mut keys = None;
    user.all_selectors().any(|selector| {
        check_selector(selector, id, argv, &mut keys).is_ok()
            && (selector.allkeys
                || selector
                    .patterns
                    .iter()
                    .any(|p| p.flags & READ != 0 && p.pattern == b"*"))
    })
}

/// `ACLSelectorCheckKey`: the permissions the key specification needs, against each pattern.
fn key_allowed(selector: &Selector, key: &[u8], spec_flags: u16) -> bool {
    if selector.allkeys {
        return true;
    }
    let mut needed = 0;
    if spec_flags & key_flag::ACCESS != 0 {
        needed |= READ;
    }
    if spec_flags & (key_flag::INSERT | key_flag::DELETE | key_flag::UPDATE) != 0 {
        needed |= WRITE;
    }
    selector.patterns.iter().any(|pattern| {
        pattern.flags & needed == needed
            && forkless_storage::pattern::glob_match(&pattern.pattern, key, false)
    })
}

/// `ACLCheckChannelAgainstList`: a channel matches a pattern; a pattern being subscribed to
/// must equal one literally.
pub(crate) fn channel_allowed(allowed: &[Vec<u8>], channel: &[u8], is_pattern: bool) -> bool {
    allowed.iter().any(|pattern| {
        if is_pattern {
            pattern == channel
        } else {
            forkless_storage::pattern::glob_match(pattern, channel, false)
        }
    })
}

/// `ACLKillPubsubClientsIfNeeded`: after `name`'s channels changed to `new`'s, closes its
/// subscribers whose subscriptions `new` no longer allows.
pub(crate) fn kill_pubsub_clients_if_needed(server: &Server, old: &User, new: &User) {
    if new.all_selectors().any(|s| s.allchannels) {
        return;
    }
    let upcoming: Vec<Vec<u8>> = new
        .all_selectors()
        .flat_map(|s| s.channels.iter().cloned())
        .collect();
    let superset = old
        .all_selectors()
        .all(|s| !s.allchannels && s.channels.iter().all(|channel| upcoming.contains(channel)));
    if superset {
        return;
    }
    for (handle, name, is_pattern) in server.pubsub.subscriptions() {
        if *lock(&handle.user) == old.name && !channel_allowed(&upcoming, &name, is_pattern) {
            handle.kill();
        }
    }
}

/// Closes every connection authenticated as one of `names` (deleted users), except `me`,
/// which closes after its reply. Returns true if and only if `me` was one of them.
pub(crate) fn kill_clients_of(server: &Server, names: &[Bytes], me: u64) -> bool {
    let mut mine = false;
    for handle in server.clients.all() {
        let user = lock(&handle.user).clone();
        if names.contains(&user) {
            if handle.id == me {
                mine = true;
            } else {
                handle.kill();
            }
        }
    }
    mine
}

/// Loads the users of the config file's `user` lines, then the `aclfile`, as Redis's
/// `ACLLoadUsersAtStartup`: any error stops the server from starting.
pub(crate) fn load_at_startup(server: &Server) -> anyhow::Result<()> {
    let (lines, aclfile, dir) = {
        let config = server.config();
        (
            config.acl_users.clone(),
            String::from_utf8_lossy(&config.stored_text("aclfile")).into_owned(),
            config.dir.clone(),
        )
    };
    if !aclfile.is_empty() && !lines.is_empty() {
        anyhow::bail!(
            "Configuring Redis with users defined in redis.conf and at the same setting an ACL \
             file path is invalid. This setup is very likely to lead to configuration errors \
             and security holes, please define either an ACL file or declare users directly \
             in your redis.conf, but not both."
        );
    }
    let pubsub_default_all = server.acl.pubsub_default_all();
    for line in &lines {
        let Some((name, rules)) = line.split_first() else {
            continue;
        };
        if user::has_spaces(name) {
            anyhow::bail!("Spaces not allowed in ACL usernames");
        }
        let mut user = match server.acl.get(name) {
            Some(existing) => {
                let mut user = (*existing).clone();
                let _ = user.apply(b"reset", pubsub_default_all);
                user
            }
            None => User::new(Bytes::copy_from_slice(name), pubsub_default_all),
        };
        for rule in rules {
            if let Err(err) = user.apply(rule, pubsub_default_all) {
                anyhow::bail!(
                    "Error loading ACL rule '{}' for the user named '{}': {err}",
                    String::from_utf8_lossy(rule),
                    String::from_utf8_lossy(name)
                );
            }
        }
        if !user.enabled {
            tracing::info!(
                "The user '{}' is disabled (there is no 'on' modifier in the user description). \
                 Make sure this is not a configuration error.",
                String::from_utf8_lossy(name)
            );
        }
        server.acl.put(server, user);
    }
    if !aclfile.is_empty() {
        let users =
            file::load(&dir.join(&aclfile), &aclfile, pubsub_default_all).map_err(|errors| {
                anyhow::anyhow!("Aborting Redis startup because of ACL errors: {errors}")
            })?;
        server.acl.replace_all(server, users);
    }
    Ok(())
}

/// Checks a config file's `user` line as Redis's `ACLAppendUserForLoading` does: every rule
/// but unknown commands must apply. Err is Redis's error text.
pub(crate) fn check_user_line(args: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, String> {
    let Some((name, rules)) = args.split_first() else {
        return Err("Error in user declaration".to_owned());
    };
    let rules: Vec<Bytes> = rules.iter().map(|r| Bytes::copy_from_slice(r)).collect();
    let merged = user::merge_selector_args(&rules).map_err(|start| {
        format!(
            "Error in user declaration '{}': Unmatched parenthesis",
            String::from_utf8_lossy(&start)
        )
    })?;
    let mut fake = User::new(Bytes::from_static(b"__fakeuser__"), false);
    for (idx, rule) in merged.iter().enumerate() {
        match fake.apply(rule, false) {
            Ok(()) | Err(user::RuleError::UnknownCommand) => {}
            Err(err) => {
                // Redis names the word at the rule's index in the whole line (`user` being
                // word 0), not the rule itself: the same word is named here.
                let word = match idx.checked_sub(1) {
                    None => &b"user"[..],
                    Some(at) => args.get(at).map_or(&b""[..], Vec::as_slice),
                };
                return Err(format!(
                    "Error in user declaration '{}': {err}",
                    String::from_utf8_lossy(word)
                ));
            }
        }
    }
    let mut line = vec![name.clone()];
    line.extend(merged);
    Ok(line)
}
