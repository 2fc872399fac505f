//! ACL LOG: denied commands, keys, channels and failed authentications, newest first, with
//! Redis 7.0's grouping of similar entries within a minute.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::catalog::CATALOG;
use super::{Context, Denied};
use crate::cmd::Client;
use crate::server::{Server, lock, unix_ms};

/// Entries within this many milliseconds of each other may be grouped.
const GROUPING_MAX_MS: u64 = 60_000;
/// How many of the newest entries a new one is compared with.
const GROUPING_SCAN: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Command,
    Key,
    Channel,
    Auth,
}

impl Reason {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Reason::Command => "command",
            Reason::Key => "key",
            Reason::Channel => "channel",
            Reason::Auth => "auth",
        }
    }
}

impl Context {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Context::Toplevel => "toplevel",
            Context::Multi => "multi",
            Context::Lua => "lua",
        }
    }
}

/// One ACL LOG entry.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) count: u64,
    pub(crate) reason: Reason,
    pub(crate) context: Context,
    pub(crate) object: Bytes,
    pub(crate) username: Bytes,
    /// When it last happened, ms since the Unix epoch.
    pub(crate) ctime_ms: u64,
    pub(crate) client_info: String,
}

/// The log. A std mutex: taken only when a command is denied or the log is read.
#[derive(Debug, Default)]
pub(crate) struct AclLog {
    entries: Mutex<VecDeque<Entry>>,
    /// `acllog-max-len`.
    pub(crate) max_len: AtomicU64,
}

impl AclLog {
    pub(crate) fn add(&self, entry: Entry) {
        let mut entries = lock(&self.entries);
        let matched = entries.iter().take(GROUPING_SCAN).position(|current| {
            current.reason == entry.reason
                && current.context == entry.context
                && current.ctime_ms.abs_diff(entry.ctime_ms) <= GROUPING_MAX_MS
                && current.object == entry.object
                && current.username == entry.username
        });
        if let Some(idx) = matched
            && let Some(mut current) = entries.remove(idx)
        {
            current.client_info = entry.client_info;
            current.ctime_ms = entry.ctime_ms;
            current.count += 1;
            entries.push_front(current);
            return;
        }
        entries.push_front(entry);
        let max = usize::try_from(self.max_len.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        entries.truncate(max);
    }

    /// The newest `count` entries.
    pub(crate) fn newest(&self, count: usize) -> Vec<Entry> {
        lock(&self.entries).iter().take(count).cloned().collect()
    }

    pub(crate) fn reset(&self) {
        lock(&self.entries).clear();
    }

    /// Applies a new `acllog-max-len`, dropping the oldest entries beyond it.
    pub(crate) fn set_max_len(&self, max: u64) {
        self.max_len.store(max, Ordering::Relaxed);
        lock(&self.entries).truncate(usize::try_from(max).unwrap_or(usize::MAX));
    }
}

/// Logs a denied command (`addACLLogEntry`).
pub(crate) fn record_denial(
    server: &Server,
    client: &Client,
    denied: Denied,
    id: usize,
    argv: &[Bytes],
    context: Context,
) {
    let (reason, object) = match denied {
        Denied::Command => (
            Reason::Command,
            Bytes::from_static(CATALOG.get(id).map_or("", |entry| entry.name).as_bytes()),
        ),
        Denied::Key(pos) => (Reason::Key, argv.get(pos).cloned().unwrap_or_default()),
        Denied::Channel(pos) => (Reason::Channel, argv.get(pos).cloned().unwrap_or_default()),
    };
    server.acl.log.add(Entry {
        count: 1,
        reason,
        context,
        object,
        username: client.acl.name(),
        ctime_ms: unix_ms(),
        client_info: client_info(client),
    });
}

/// Logs a failed AUTH or HELLO AUTH: the object is the command's name as sent.
pub(crate) fn record_auth_failure(
    server: &Server,
    client: &Client,
    argv: &[Bytes],
    username: &[u8],
) {
    let context = if client.multi.is_some() {
        Context::Multi
    } else {
        Context::Toplevel
    };
    server.acl.log.add(Entry {
        count: 1,
        reason: Reason::Auth,
        context,
        object: argv.first().cloned().unwrap_or_default(),
        username: Bytes::copy_from_slice(username),
        ctime_ms: unix_ms(),
        client_info: client_info(client),
    });
}

/// The CLIENT LIST line of the client (of the script's caller, for a script's commands).
fn client_info(client: &Client) -> String {
    match &client.acl_caller {
        Some(caller) => crate::cmd::client::handle_line(caller),
        None => crate::cmd::client::handle_line(&client.handle),
    }
}
